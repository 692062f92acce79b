//! Go's `fmt` rules (`Sprintf`, `Sprint`, `Sprintln`) for the values a confd template can hold,
//! because `printf`/`print`/`println` in existing templates must print what Go prints: every verb,
//! flag, width and precision, `%!verb(type=value)` for a mismatch, lists and maps formatted per
//! element, structs with `%+v`/`%#v`, and Go's type names for `%T`. Written from the `fmt`
//! documentation and checked against real Go output (see the tests and
//! `template/tests/inputs/go/printf*.tmpl`).

use std::fmt::Write as _;

/// A value as Go's `fmt` sees it: its kind, its Go type name, and the methods fmt looks for.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum GoValue {
    /// A nil interface (`<nil>`).
    Nil,
    Bool(bool),
    /// A signed integer and its Go type (`int`, `time.Month` has a String method: see `Stringer`).
    Int(i64, &'static str),
    /// An unsigned integer and its Go type (`uint16` for SRV ports).
    Uint(u64, &'static str),
    Float(f64),
    Str(String),
    /// A slice; `nil` distinguishes Go's nil slice (`[]string(nil)` in `%#v`).
    Slice {
        ty: String,
        nil: bool,
        items: Vec<GoValue>,
        /// The address `%p` prints.
        addr: usize,
    },
    /// A map with string keys, in key order (as fmt sorts them).
    Map {
        ty: String,
        entries: Vec<(String, GoValue)>,
        addr: usize,
    },
    /// A struct, or a pointer to one (`*net.SRV`).
    Struct {
        ty: String,
        ptr: bool,
        fields: Vec<(&'static str, GoValue)>,
        addr: usize,
    },
    /// A value with a `String` method (`time.Time`, `time.Month`, ...); `go_string` is its
    /// `GoString` method if it has one, `inner` what fmt prints for verbs that do not use them.
    Stringer {
        ty: &'static str,
        string: String,
        go_string: Option<String>,
        inner: Box<GoValue>,
    },
}

impl GoValue {
    /// Go's name of the value's type (`%T`).
    pub(crate) fn type_name(&self) -> String {
        match self {
            GoValue::Nil => "<nil>".into(),
            GoValue::Bool(_) => "bool".into(),
            GoValue::Int(_, t) | GoValue::Uint(_, t) => (*t).into(),
            GoValue::Float(_) => "float64".into(),
            GoValue::Str(_) => "string".into(),
            GoValue::Slice { ty, .. } | GoValue::Map { ty, .. } => ty.clone(),
            GoValue::Struct { ty, ptr, .. } => {
                if *ptr {
                    format!("*{ty}")
                } else {
                    ty.clone()
                }
            }
            GoValue::Stringer { ty, .. } => (*ty).into(),
        }
    }

    fn is_string_kind(&self) -> bool {
        matches!(self, GoValue::Str(_))
    }
}

#[derive(Clone, Copy, Default, Debug)]
struct Flags {
    plus: bool,
    minus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    plus_v: bool,
    sharp_v: bool,
    wid: Option<usize>,
    prec: Option<usize>,
}

struct Printer {
    buf: String,
    f: Flags,
    erroring: bool,
}

/// Go `fmt.Sprintf`.
pub(crate) fn sprintf(format: &str, args: &[GoValue]) -> String {
    let mut p = Printer::new();
    p.do_printf(format, args);
    p.buf
}

/// Go `fmt.Sprint`: operands formatted with `%v`, a space between two operands when neither is
/// a string.
pub(crate) fn sprint(args: &[GoValue]) -> String {
    let mut p = Printer::new();
    let mut prev_string = false;
    for (i, arg) in args.iter().enumerate() {
        let is_string = arg.is_string_kind();
        if i > 0 && !is_string && !prev_string {
            p.buf.push(' ');
        }
        p.print_arg(arg, 'v');
        prev_string = is_string;
    }
    p.buf
}

/// Go `fmt.Sprintln`: operands formatted with `%v`, always separated by a space, then a newline.
pub(crate) fn sprintln(args: &[GoValue]) -> String {
    let mut p = Printer::new();
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            p.buf.push(' ');
        }
        p.print_arg(arg, 'v');
    }
    p.buf.push('\n');
    p.buf
}

/// Go's limit on a width or precision written in a format.
const TOO_LARGE: usize = 1_000_000;

fn parse_num(b: &[u8], mut i: usize, end: usize) -> (Option<usize>, usize) {
    if i >= end {
        return (None, end);
    }
    let mut num: usize = 0;
    let mut found = false;
    while i < end && b[i].is_ascii_digit() {
        if num > TOO_LARGE {
            return (None, end);
        }
        num = num * 10 + usize::from(b[i] - b'0');
        found = true;
        i += 1;
    }
    (found.then_some(num), i)
}

/// `[n]` at `i`: the 0-based index, the bytes it spans, and whether it is well formed.
fn parse_arg_number(b: &[u8], i: usize) -> (Option<usize>, usize, bool) {
    let rest = &b[i..];
    if rest.len() < 3 {
        return (None, 1, false);
    }
    for j in 1..rest.len() {
        if rest[j] == b']' {
            let (n, newi) = parse_num(rest, 1, j);
            return match n {
                Some(n) if newi == j => (n.checked_sub(1), j + 1, true),
                _ => (None, j + 1, false),
            };
        }
    }
    (None, 1, false)
}

impl Printer {
    fn new() -> Printer {
        Printer {
            buf: String::new(),
            f: Flags::default(),
            erroring: false,
        }
    }

    fn do_printf(&mut self, format: &str, a: &[GoValue]) {
        let b = format.as_bytes();
        let end = b.len();
        let mut arg_num = 0usize;
        let mut after_index;
        let mut reordered = false;
        let mut i = 0;
        while i < end {
            let mut good_arg_num = true;
            let last = i;
            while i < end && b[i] != b'%' {
                i += 1;
            }
            if i > last {
                self.buf.push_str(&format[last..i]);
            }
            if i >= end {
                break;
            }
            i += 1;
            self.f = Flags::default();
            while i < end {
                match b[i] {
                    b'#' => self.f.sharp = true,
                    b'0' => self.f.zero = !self.f.minus,
                    b'+' => self.f.plus = true,
                    b'-' => {
                        self.f.minus = true;
                        self.f.zero = false;
                    }
                    b' ' => self.f.space = true,
                    _ => break,
                }
                i += 1;
            }
            // An explicit argument index.
            let arg_number = |i: usize, arg_num: usize, good: &mut bool, reord: &mut bool| {
                if i >= end || b[i] != b'[' {
                    return (arg_num, i, false);
                }
                *reord = true;
                let (index, wid, ok) = parse_arg_number(b, i);
                match index {
                    Some(index) if ok && index < a.len() => (index, i + wid, true),
                    _ => {
                        *good = false;
                        (arg_num, i + wid, ok)
                    }
                }
            };
            (arg_num, i, after_index) = arg_number(i, arg_num, &mut good_arg_num, &mut reordered);
            // Width.
            if i < end && b[i] == b'*' {
                i += 1;
                let (n, next) = int_from_arg(a, arg_num);
                arg_num = next;
                match n {
                    Some(w) if w < 0 => {
                        self.f.wid = Some(w.unsigned_abs() as usize);
                        self.f.minus = true;
                        self.f.zero = false;
                    }
                    Some(w) => self.f.wid = Some(w as usize),
                    None => self.buf.push_str("%!(BADWIDTH)"),
                }
                after_index = false;
            } else {
                let (w, next) = parse_num(b, i, end);
                self.f.wid = w;
                i = next;
                if after_index && w.is_some() {
                    good_arg_num = false;
                }
            }
            // Precision.
            if i + 1 < end && b[i] == b'.' {
                i += 1;
                if after_index {
                    good_arg_num = false;
                }
                (arg_num, i, after_index) =
                    arg_number(i, arg_num, &mut good_arg_num, &mut reordered);
                if i < end && b[i] == b'*' {
                    i += 1;
                    let (n, next) = int_from_arg(a, arg_num);
                    arg_num = next;
                    match n {
                        Some(p) if p < 0 => self.f.prec = None,
                        Some(p) => self.f.prec = Some(p as usize),
                        None => {
                            self.f.prec = None;
                            self.buf.push_str("%!(BADPREC)");
                        }
                    }
                    after_index = false;
                } else {
                    let (p, next) = parse_num(b, i, end);
                    self.f.prec = Some(p.unwrap_or(0));
                    i = next;
                }
            }
            if !after_index {
                (arg_num, i, _) = arg_number(i, arg_num, &mut good_arg_num, &mut reordered);
            }
            if i >= end {
                self.buf.push_str("%!(NOVERB)");
                break;
            }
            let verb = format[i..].chars().next().unwrap_or('?');
            i += verb.len_utf8();
            if verb == '%' {
                self.buf.push('%');
            } else if !good_arg_num {
                self.buf.push_str("%!");
                self.buf.push(verb);
                self.buf.push_str("(BADINDEX)");
            } else if arg_num >= a.len() {
                self.buf.push_str("%!");
                self.buf.push(verb);
                self.buf.push_str("(MISSING)");
            } else {
                if verb == 'v' {
                    self.f.sharp_v = self.f.sharp;
                    self.f.sharp = false;
                    self.f.plus_v = self.f.plus;
                    self.f.plus = false;
                }
                self.print_arg(&a[arg_num], verb);
                arg_num += 1;
            }
        }
        if !reordered && arg_num < a.len() {
            self.f = Flags::default();
            self.buf.push_str("%!(EXTRA ");
            for (k, arg) in a[arg_num..].iter().enumerate() {
                if k > 0 {
                    self.buf.push_str(", ");
                }
                if *arg == GoValue::Nil {
                    self.buf.push_str("<nil>");
                } else {
                    self.buf.push_str(&arg.type_name());
                    self.buf.push('=');
                    self.print_arg(arg, 'v');
                }
            }
            self.buf.push(')');
        }
    }

    fn print_arg(&mut self, arg: &GoValue, verb: char) {
        if *arg == GoValue::Nil {
            match verb {
                'T' | 'v' => self.pad_string("<nil>"),
                _ => self.bad_verb(verb, arg),
            }
            return;
        }
        match verb {
            'T' => {
                let t = arg.type_name();
                self.fmt_s(&t);
                return;
            }
            'p' => {
                self.fmt_pointer(arg, 'p');
                return;
            }
            _ => {}
        }
        self.print_value(arg, verb);
    }

    /// Go's `handleMethods`: `GoString` for `%#v`, `String` for the string verbs.
    fn handle_methods(&mut self, v: &GoValue, verb: char) -> bool {
        if self.erroring {
            return false;
        }
        let GoValue::Stringer {
            string, go_string, ..
        } = v
        else {
            return false;
        };
        if self.f.sharp_v {
            if let Some(g) = go_string {
                let g = g.clone();
                self.fmt_s(&g);
                return true;
            }
            return false;
        }
        if matches!(verb, 'v' | 's' | 'x' | 'X' | 'q') {
            let s = string.clone();
            self.fmt_string(&s, verb, v);
            return true;
        }
        false
    }

    fn print_value(&mut self, v: &GoValue, verb: char) {
        if self.handle_methods(v, verb) {
            return;
        }
        match v {
            GoValue::Nil => {
                // A nil interface inside a list or map.
                if self.f.sharp_v {
                    self.buf.push_str("interface {}(nil)");
                } else {
                    self.buf.push_str("<nil>");
                }
            }
            GoValue::Bool(b) => match verb {
                't' | 'v' => self.pad_string(if *b { "true" } else { "false" }),
                _ => self.bad_verb(verb, v),
            },
            GoValue::Int(i, _) => self.fmt_integer(*i as u64, true, verb, v),
            GoValue::Uint(u, _) => self.fmt_integer(*u, false, verb, v),
            GoValue::Float(x) => self.fmt_float_verb(*x, verb, v),
            GoValue::Str(s) => self.fmt_string(s, verb, v),
            GoValue::Stringer { inner, .. } => {
                let inner = (**inner).clone();
                self.print_value(&inner, verb);
            }
            GoValue::Map { ty, entries, .. } => {
                if self.f.sharp_v {
                    self.buf.push_str(ty);
                    self.buf.push('{');
                } else {
                    self.buf.push_str("map[");
                }
                for (k, (key, val)) in entries.iter().enumerate() {
                    if k > 0 {
                        self.buf.push_str(if self.f.sharp_v { ", " } else { " " });
                    }
                    self.print_value(&GoValue::Str(key.clone()), verb);
                    self.buf.push(':');
                    self.print_value(val, verb);
                }
                self.buf.push(if self.f.sharp_v { '}' } else { ']' });
            }
            GoValue::Struct {
                ty, ptr, fields, ..
            } => {
                if *ptr {
                    self.buf.push('&');
                }
                if self.f.sharp_v {
                    self.buf.push_str(ty);
                }
                self.buf.push('{');
                for (k, (name, val)) in fields.iter().enumerate() {
                    if k > 0 {
                        self.buf.push_str(if self.f.sharp_v { ", " } else { " " });
                    }
                    if self.f.plus_v || self.f.sharp_v {
                        self.buf.push_str(name);
                        self.buf.push(':');
                    }
                    self.print_value(val, verb);
                }
                self.buf.push('}');
            }
            GoValue::Slice { ty, nil, items, .. } => {
                if self.f.sharp_v {
                    self.buf.push_str(ty);
                    if *nil {
                        self.buf.push_str("(nil)");
                        return;
                    }
                    self.buf.push('{');
                    for (k, item) in items.iter().enumerate() {
                        if k > 0 {
                            self.buf.push_str(", ");
                        }
                        self.print_value(item, verb);
                    }
                    self.buf.push('}');
                } else {
                    self.buf.push('[');
                    for (k, item) in items.iter().enumerate() {
                        if k > 0 {
                            self.buf.push(' ');
                        }
                        self.print_value(item, verb);
                    }
                    self.buf.push(']');
                }
            }
        }
    }

    fn bad_verb(&mut self, verb: char, arg: &GoValue) {
        self.erroring = true;
        self.buf.push_str("%!");
        self.buf.push(verb);
        self.buf.push('(');
        if *arg == GoValue::Nil {
            self.buf.push_str("<nil>");
        } else {
            self.buf.push_str(&arg.type_name());
            self.buf.push('=');
            // Go prints the value with %v and the flags in force.
            let saved = self.erroring;
            self.erroring = false;
            self.print_arg(arg, 'v');
            self.erroring = saved;
        }
        self.buf.push(')');
        self.erroring = false;
    }

    fn fmt_pointer(&mut self, v: &GoValue, verb: char) {
        let addr = match v {
            GoValue::Slice { addr, .. } | GoValue::Map { addr, .. } => *addr,
            GoValue::Struct {
                addr, ptr: true, ..
            } => *addr,
            GoValue::Stringer { ty, .. } if ty.starts_with('*') => 0xc000010000,
            _ => {
                self.bad_verb(verb, v);
                return;
            }
        };
        let saved = self.f;
        self.f.sharp = !self.f.sharp;
        self.fmt_integer_base(addr as u64, 16, false, 'v', false);
        self.f = saved;
    }

    fn fmt_integer(&mut self, u: u64, signed: bool, verb: char, v: &GoValue) {
        match verb {
            'v' if self.f.sharp_v && !signed => {
                let saved = self.f.sharp;
                self.f.sharp = true;
                self.fmt_integer_base(u, 16, false, 'v', false);
                self.f.sharp = saved;
            }
            'v' | 'd' => self.fmt_integer_base(u, 10, signed, verb, false),
            'b' => self.fmt_integer_base(u, 2, signed, verb, false),
            'o' | 'O' => self.fmt_integer_base(u, 8, signed, verb, false),
            'x' => self.fmt_integer_base(u, 16, signed, verb, false),
            'X' => self.fmt_integer_base(u, 16, signed, verb, true),
            'c' => {
                let c = char_of(u, signed);
                self.pad(&c.to_string());
            }
            'q' => {
                let c = char_of(u, signed);
                let q = quote_rune(c, self.f.plus);
                self.pad(&q);
            }
            'U' => self.fmt_unicode(u),
            _ => self.bad_verb(verb, v),
        }
    }

    fn fmt_integer_base(&mut self, u: u64, base: u32, signed: bool, verb: char, upper: bool) {
        let negative = signed && (u as i64) < 0;
        let mut mag = if negative {
            (u as i64).unsigned_abs()
        } else {
            u
        };
        let mut prec = 0usize;
        if let Some(p) = self.f.prec {
            prec = p;
            if p == 0 && mag == 0 {
                let z = self.f.zero;
                self.f.zero = false;
                self.write_padding(self.f.wid.unwrap_or(0));
                self.f.zero = z;
                return;
            }
        } else if self.f.zero
            && let Some(w) = self.f.wid
        {
            prec = w;
            if negative || self.f.plus || self.f.space {
                prec = prec.saturating_sub(1);
            }
        }
        let digits: &[u8] = if upper {
            b"0123456789ABCDEFX"
        } else {
            b"0123456789abcdefx"
        };
        let mut out: Vec<u8> = Vec::new();
        loop {
            out.push(digits[(mag % u64::from(base)) as usize]);
            mag /= u64::from(base);
            if mag == 0 {
                break;
            }
        }
        while out.len() < prec {
            out.push(b'0');
        }
        if self.f.sharp {
            match base {
                2 => out.extend_from_slice(b"b0"),
                8 if out.last() != Some(&b'0') => out.push(b'0'),
                16 => {
                    out.push(digits[16]);
                    out.push(b'0');
                }
                _ => {}
            }
        }
        if verb == 'O' {
            out.extend_from_slice(b"o0");
        }
        if negative {
            out.push(b'-');
        } else if self.f.plus {
            out.push(b'+');
        } else if self.f.space {
            out.push(b' ');
        }
        out.reverse();
        let s = String::from_utf8(out).unwrap_or_default();
        let z = self.f.zero;
        self.f.zero = false;
        self.pad(&s);
        self.f.zero = z;
    }

    fn fmt_unicode(&mut self, u: u64) {
        let mut prec = 4;
        if let Some(p) = self.f.prec
            && p > 4
        {
            prec = p;
        }
        let mut s = format!("U+{u:0prec$X}");
        if self.f.sharp
            && let Some(c) = u32::try_from(u).ok().and_then(char::from_u32)
            && is_print(c)
        {
            s.push_str(" '");
            s.push(c);
            s.push('\'');
        }
        let z = self.f.zero;
        self.f.zero = false;
        self.pad(&s);
        self.f.zero = z;
    }

    fn fmt_float_verb(&mut self, x: f64, verb: char, v: &GoValue) {
        match verb {
            'v' => self.fmt_float(x, 'g', None),
            'b' | 'g' | 'G' | 'x' | 'X' => self.fmt_float(x, verb, None),
            'f' | 'e' | 'E' | 'F' => self.fmt_float(x, verb, Some(6)),
            _ => self.bad_verb(verb, v),
        }
    }

    fn fmt_float(&mut self, x: f64, verb: char, default_prec: Option<usize>) {
        let prec = self.f.prec.or(default_prec);
        let mut num = format_float(x, verb, prec);
        if !num.starts_with(['-', '+']) {
            num.insert(0, '+');
        }
        if self.f.space && num.starts_with('+') && !self.f.plus {
            num.replace_range(0..1, " ");
        }
        let second = num[1..].chars().next().unwrap_or('0');
        if second == 'I' || second == 'N' {
            let z = self.f.zero;
            self.f.zero = false;
            if second == 'N' && !self.f.space && !self.f.plus {
                num.remove(0);
            }
            self.pad(&num);
            self.f.zero = z;
            return;
        }
        if self.f.sharp && verb != 'b' {
            let mut digits: i64 = 0;
            if matches!(verb, 'v' | 'g' | 'G' | 'x') {
                digits = prec.map_or(6, |p| p as i64);
            }
            let mut tail = String::new();
            let mut body: String = String::new();
            let mut has_point = false;
            let mut saw_nonzero = false;
            let chars: Vec<char> = num.chars().collect();
            body.push(chars[0]);
            let mut k = 1;
            while k < chars.len() {
                let c = chars[k];
                match c {
                    '.' => {
                        has_point = true;
                        body.push(c);
                    }
                    'p' | 'P' => {
                        tail = chars[k..].iter().collect();
                        break;
                    }
                    'e' | 'E' if verb != 'x' && verb != 'X' => {
                        tail = chars[k..].iter().collect();
                        break;
                    }
                    _ => {
                        if c != '0' {
                            saw_nonzero = true;
                        }
                        if saw_nonzero {
                            digits -= 1;
                        }
                        body.push(c);
                    }
                }
                k += 1;
            }
            if !has_point {
                if body.len() == 2 && body.ends_with('0') {
                    digits -= 1;
                }
                body.push('.');
            }
            while digits > 0 {
                body.push('0');
                digits -= 1;
            }
            body.push_str(&tail);
            num = body;
        }
        if self.f.plus || !num.starts_with('+') {
            if self.f.zero
                && !self.f.minus
                && let Some(w) = self.f.wid
                && w > num.chars().count()
            {
                let sign = num.remove(0);
                self.buf.push(sign);
                self.write_padding(w - num.chars().count() - 1);
                self.buf.push_str(&num);
                return;
            }
            self.pad(&num);
            return;
        }
        self.pad(&num[1..]);
    }

    fn fmt_string(&mut self, s: &str, verb: char, v: &GoValue) {
        match verb {
            'v' if self.f.sharp_v => self.fmt_q(s),
            'v' | 's' => self.fmt_s(s),
            'x' => self.fmt_sx(s, false),
            'X' => self.fmt_sx(s, true),
            'q' => self.fmt_q(s),
            _ => self.bad_verb(verb, v),
        }
    }

    fn truncate<'s>(&self, s: &'s str) -> &'s str {
        match self.f.prec {
            Some(n) => match s.char_indices().nth(n) {
                Some((i, _)) => &s[..i],
                None => s,
            },
            None => s,
        }
    }

    fn fmt_s(&mut self, s: &str) {
        let s = self.truncate(s).to_string();
        self.pad_string(&s);
    }

    fn fmt_q(&mut self, s: &str) {
        let s = self.truncate(s).to_string();
        if self.f.sharp && can_backquote(&s) {
            self.pad_string(&format!("`{s}`"));
            return;
        }
        let q = quote(&s, self.f.plus);
        self.pad(&q);
    }

    fn fmt_sx(&mut self, s: &str, upper: bool) {
        let digits: &[u8] = if upper {
            b"0123456789ABCDEFX"
        } else {
            b"0123456789abcdefx"
        };
        let bytes = s.as_bytes();
        let mut length = bytes.len();
        if let Some(p) = self.f.prec
            && p < length
        {
            length = p;
        }
        let mut width = 2 * length;
        if width > 0 {
            if self.f.space {
                if self.f.sharp {
                    width *= 2;
                }
                width += length - 1;
            } else if self.f.sharp {
                width += 2;
            }
        } else {
            if let Some(w) = self.f.wid {
                self.write_padding(w);
            }
            return;
        }
        if let Some(w) = self.f.wid
            && w > width
            && !self.f.minus
        {
            self.write_padding(w - width);
        }
        if self.f.sharp {
            self.buf.push('0');
            self.buf.push(digits[16] as char);
        }
        for (i, &c) in bytes[..length].iter().enumerate() {
            if self.f.space && i > 0 {
                self.buf.push(' ');
                if self.f.sharp {
                    self.buf.push('0');
                    self.buf.push(digits[16] as char);
                }
            }
            self.buf.push(digits[usize::from(c >> 4)] as char);
            self.buf.push(digits[usize::from(c & 0xf)] as char);
        }
        if let Some(w) = self.f.wid
            && w > width
            && self.f.minus
        {
            self.write_padding(w - width);
        }
    }

    fn write_padding(&mut self, n: usize) {
        let c = if self.f.zero { '0' } else { ' ' };
        for _ in 0..n {
            self.buf.push(c);
        }
    }

    fn pad(&mut self, s: &str) {
        let Some(w) = self.f.wid.filter(|w| *w > 0) else {
            self.buf.push_str(s);
            return;
        };
        let n = w.saturating_sub(s.chars().count());
        if self.f.minus {
            self.buf.push_str(s);
            self.write_padding(n);
        } else {
            self.write_padding(n);
            self.buf.push_str(s);
        }
    }

    fn pad_string(&mut self, s: &str) {
        self.pad(s);
    }
}

/// A width or precision taken from an argument (`%*d`): Go accepts any integer type.
fn int_from_arg(a: &[GoValue], arg_num: usize) -> (Option<i64>, usize) {
    let Some(arg) = a.get(arg_num) else {
        return (None, arg_num);
    };
    let n = match arg {
        GoValue::Int(i, _) => Some(*i),
        GoValue::Uint(u, _) => i64::try_from(*u).ok(),
        GoValue::Stringer { inner, .. } => match **inner {
            GoValue::Int(i, _) => Some(i),
            _ => None,
        },
        _ => None,
    };
    let n = n.filter(|n| n.unsigned_abs() <= TOO_LARGE as u64);
    (n, arg_num + 1)
}

fn char_of(u: u64, signed: bool) -> char {
    let v = if signed && (u as i64) < 0 {
        u64::MAX
    } else {
        u
    };
    u32::try_from(v)
        .ok()
        .and_then(char::from_u32)
        .unwrap_or('\u{FFFD}')
}

/// Go `strconv.FormatFloat(x, verb, prec, 64)` (`prec` `None` = shortest).
pub(crate) fn format_float(x: f64, verb: char, prec: Option<usize>) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    match verb {
        'b' => format_b(x),
        'x' | 'X' => format_hex(x, prec, verb == 'X'),
        'e' | 'E' => {
            let (neg, digits, exp) = decimal_digits(x, prec.map(|p| p + 1));
            let mut s = sci(&digits, exp, prec, verb == 'E');
            if neg {
                s.insert(0, '-');
            }
            s
        }
        'f' | 'F' => {
            let s = match prec {
                Some(p) => format!("{:.*}", p, x.abs()),
                None => {
                    let (_, digits, exp) = decimal_digits(x, None);
                    fixed(&digits, exp, None)
                }
            };
            if x.is_sign_negative() {
                format!("-{s}")
            } else {
                s
            }
        }
        _ => {
            // %g
            let upper = verb == 'G';
            let sig = prec.map(|p| p.max(1));
            let (neg, digits, exp) = decimal_digits(x, sig);
            let mut eprec = sig.unwrap_or(6) as i64;
            let nd = digits.len() as i64;
            let dp = exp + 1;
            if sig.is_some() && eprec > nd && nd >= dp {
                eprec = nd;
            }
            if sig.is_none() {
                eprec = 6;
            }
            let e = dp - 1;
            let mut s = if e < -4 || e >= eprec {
                let p = sig.map(|_| digits.len().saturating_sub(1));
                sci(
                    &digits,
                    exp,
                    p.or(Some(digits.len().saturating_sub(1))),
                    upper,
                )
            } else {
                fixed(&digits, exp, None)
            };
            if neg {
                s.insert(0, '-');
            }
            s
        }
    }
}

/// The decimal digits of |x| (no trailing zeros), rounded to `sig` significant digits when given
/// (shortest round-trip otherwise), and the decimal exponent of the first digit.
fn decimal_digits(x: f64, sig: Option<usize>) -> (bool, String, i64) {
    let neg = x.is_sign_negative();
    let a = x.abs();
    let s = match sig {
        Some(n) => format!("{:.*e}", n.saturating_sub(1), a),
        None => format!("{a:e}"),
    };
    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i64 = e.parse().unwrap_or(0);
    let mut digits: String = m.chars().filter(char::is_ascii_digit).collect();
    if a == 0.0 {
        return (neg, "0".into(), 0);
    }
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    (neg, digits, exp)
}

/// `d.ddde±XX` with `prec` digits after the point (padding with zeros), `None` = all digits.
fn sci(digits: &str, exp: i64, prec: Option<usize>, upper: bool) -> String {
    let mut s = String::new();
    s.push_str(&digits[..1]);
    let rest = &digits[1..];
    let p = prec.unwrap_or(rest.len());
    if p > 0 {
        s.push('.');
        for k in 0..p {
            s.push(rest.as_bytes().get(k).map_or('0', |b| *b as char));
        }
    }
    let exp = if digits == "0" { 0 } else { exp };
    s.push(if upper { 'E' } else { 'e' });
    s.push(if exp < 0 { '-' } else { '+' });
    let _ = write!(s, "{:02}", exp.unsigned_abs());
    s
}

/// Plain decimal notation of `0.digits × 10^(exp+1)`.
fn fixed(digits: &str, exp: i64, prec: Option<usize>) -> String {
    let dp = exp + 1;
    let mut s = String::new();
    if dp <= 0 {
        s.push('0');
    } else {
        for k in 0..dp as usize {
            s.push(digits.as_bytes().get(k).map_or('0', |b| *b as char));
        }
    }
    let frac_digits: String = if dp < 0 {
        "0".repeat(dp.unsigned_abs() as usize) + digits
    } else {
        digits.get(dp as usize..).unwrap_or("").to_string()
    };
    let p = prec.unwrap_or(frac_digits.len());
    if p > 0 {
        s.push('.');
        for k in 0..p {
            s.push(frac_digits.as_bytes().get(k).map_or('0', |b| *b as char));
        }
    }
    s
}

/// `%b` of a float64: `mantissa p exponent`, as strconv prints it.
fn format_b(x: f64) -> String {
    let bits = x.to_bits();
    let neg = bits >> 63 != 0;
    let mut exp = ((bits >> 52) & 0x7ff) as i64;
    let mut mant = bits & ((1u64 << 52) - 1);
    if exp == 0 {
        exp += 1;
    } else {
        mant |= 1u64 << 52;
    }
    exp += -1023 - 52;
    format!(
        "{}{}p{}{}",
        if neg { "-" } else { "" },
        mant,
        if exp >= 0 { "+" } else { "" },
        exp
    )
}

/// `%x` of a float64: `0x1.8p+01`, shortest or with `prec` hex digits.
fn format_hex(x: f64, prec: Option<usize>, upper: bool) -> String {
    let bits = x.to_bits();
    let neg = bits >> 63 != 0;
    let mut exp = ((bits >> 52) & 0x7ff) as i64;
    let mut mant = bits & ((1u64 << 52) - 1);
    if exp == 0 && mant == 0 {
        exp = 0;
    } else {
        if exp == 0 {
            exp = 1;
        } else {
            mant |= 1u64 << 52;
        }
        exp -= 1023;
        // Normalise so that bit 52 is the leading 1.
        while mant != 0 && mant & (1u64 << 52) == 0 {
            mant <<= 1;
            exp -= 1;
        }
    }
    // 52 fraction bits = 13 hex digits; shift left by 8 to round at hex digit boundaries.
    let mut frac = mant & ((1u64 << 52) - 1);
    let mut lead = (mant >> 52) as u8;
    if let Some(p) = prec
        && p < 13
    {
        let drop = (13 - p) * 4;
        let half = 1u64 << (drop - 1);
        let rem = frac & ((1u64 << drop) - 1);
        frac >>= drop;
        let odd = frac & 1 == 1;
        if rem > half || (rem == half && odd) {
            frac += 1;
            if frac >> (p * 4) != 0 {
                frac = 0;
                lead += 1;
                if lead == 2 {
                    lead = 1;
                    exp += 1;
                }
            }
        }
        frac <<= drop;
    }
    let mut hex = format!("{frac:013x}");
    match prec {
        None => {
            while hex.ends_with('0') {
                hex.pop();
            }
        }
        Some(p) if p <= 13 => hex.truncate(p),
        Some(p) => {
            while hex.len() < p {
                hex.push('0');
            }
        }
    }
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    s.push_str("0x");
    s.push((b'0' + lead) as char);
    if !hex.is_empty() {
        s.push('.');
        s.push_str(&hex);
    }
    s.push('p');
    s.push(if exp < 0 { '-' } else { '+' });
    let _ = write!(s, "{:02}", exp.unsigned_abs());
    if upper { s.to_uppercase() } else { s }
}

/// Go `strconv.IsPrint` for the characters that matter here: not a control character, not a
/// format or unassigned/surrogate code point, and not a space other than U+0020.
fn is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(c as u32,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F
        | 0x202A..=0x202E | 0x2060..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB
        | 0xE000..=0xF8FF | 0xF0000..=0x10FFFF | 0xFFFE | 0xFFFF)
}

/// Go `strconv.Quote` (or `QuoteToASCII` with `ascii`).
pub(crate) fn quote(s: &str, ascii: bool) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        push_quoted_char(&mut out, c, '"', ascii);
    }
    out.push('"');
    out
}

fn quote_rune(c: char, ascii: bool) -> String {
    let mut out = String::from("'");
    push_quoted_char(&mut out, c, '\'', ascii);
    out.push('\'');
    out
}

fn push_quoted_char(out: &mut String, c: char, q: char, ascii: bool) {
    if c == q || c == '\\' {
        out.push('\\');
        out.push(c);
        return;
    }
    if ascii {
        if (c as u32) < 0x80 && is_print(c) {
            out.push(c);
            return;
        }
    } else if is_print(c) {
        out.push(c);
        return;
    }
    match c {
        '\x07' => out.push_str("\\a"),
        '\x08' => out.push_str("\\b"),
        '\x0c' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\x0b' => out.push_str("\\v"),
        c if (c as u32) < 0x20 || c as u32 == 0x7f => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if (c as u32) < 0x10000 => {
            let _ = write!(out, "\\u{:04x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\U{:08x}", c as u32);
        }
    }
}

/// Go `strconv.CanBackquote`.
fn can_backquote(s: &str) -> bool {
    s.chars()
        .all(|c| c != '`' && c != '\u{FEFF}' && (c == '\t' || !c.is_control()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn i(n: i64) -> GoValue {
        GoValue::Int(n, "int")
    }

    fn s(x: &str) -> GoValue {
        GoValue::Str(x.into())
    }

    #[test]
    fn floats_like_strconv() {
        for (x, verb, prec, want) in [
            (1e6, 'g', None, "1e+06"),
            (123456.0, 'g', None, "123456"),
            (0.00001, 'g', None, "1e-05"),
            (1.5, 'e', Some(6), "1.500000e+00"),
            (1234.5678, 'f', Some(2), "1234.57"),
            (1.0, 'g', Some(3), "1"),
            (1234567.0, 'g', Some(3), "1.23e+06"),
            (100.0, 'g', Some(3), "100"),
            (1.0, 'b', None, "4503599627370496p-52"),
            (3.0, 'x', None, "0x1.8p+01"),
            (1.0, 'x', Some(2), "0x1.00p+00"),
            (0.0, 'e', Some(2), "0.00e+00"),
            (-0.0, 'g', None, "-0"),
            (1e21, 'f', None, "1000000000000000000000"),
            (0.000123, 'f', None, "0.000123"),
        ] {
            assert_eq!(format_float(x, verb, prec), want, "{x} {verb} {prec:?}");
        }
    }

    #[test]
    fn printf_basics() {
        assert_eq!(
            sprintf("%d|%5d|%-5d|%05d", &[i(1), i(2), i(3), i(-4)]),
            "1|    2|3    |-0004"
        );
        assert_eq!(sprintf("%d", &[GoValue::Float(1.5)]), "%!d(float64=1.5)");
        assert_eq!(sprintf("%d %d", &[i(1)]), "1 %!d(MISSING)");
        assert_eq!(sprintf("%d", &[i(1), s("x")]), "1%!(EXTRA string=x)");
        assert_eq!(sprintf("%[2]d %[1]d", &[i(1), i(2)]), "2 1");
        assert_eq!(sprintf("%*d|%-*d", &[i(3), i(1), i(3), i(2)]), "  1|2  ");
        assert_eq!(
            sprintf("%q %x % X %#x", &[s("a\"b"), s("hi"), s("hi"), i(255)]),
            "\"a\\\"b\" 6869 68 69 0xff"
        );
        assert_eq!(
            sprintf("%v %d", &[GoValue::Nil, GoValue::Nil]),
            "<nil> %!d(<nil>)"
        );
        assert_eq!(sprintf("%!", &[]), "%!!(MISSING)");
        assert_eq!(sprintf("%", &[]), "%!(NOVERB)");
    }

    #[test]
    fn sprint_spacing() {
        assert_eq!(
            sprint(&[
                GoValue::Nil,
                i(1),
                i(2),
                s("a"),
                s("b"),
                GoValue::Float(3.5),
                GoValue::Bool(true)
            ]),
            "<nil> 1 2ab3.5 true"
        );
        assert_eq!(sprintln(&[i(1), s("a"), i(2)]), "1 a 2\n");
    }
}
