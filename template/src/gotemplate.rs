//! The Go text/template engine: gotmpl (pinned) with confd's function table, plus the few fixes
//! gotmpl needs to behave like Go's engine for confd templates (see docs/templates.md):
//!
//! - unknown functions are reported at load time with their line (gotmpl finds them only when
//!   the action runs);
//! - values print like Go's `fmt` prints them, and `print`, `printf`, `println`, `html`, `js`,
//!   `urlquery` are replaced by our implementation of Go's `fmt` rules (`gofmt.rs`): gotmpl has
//!   no Go types, so the Go type of each list or value it cannot tell apart (`[]string`,
//!   `memkv.KVPairs`, a pair, a `time.Time`, a `time.Month`) is kept beside the render, keyed by
//!   the address of the value's shared data;
//! - field chains (`.Key`, `$t.UTC.Year`) and method calls with arguments
//!   (`datetime.Format "2006-01-02"`, which gotmpl passes to the wrong callee) are rewritten to a
//!   hidden method-call function that follows Go's rules for maps, structs and `time.Time`;
//! - `-9223372036854775808` (which gotmpl's lexer refuses) is read as Go reads it;
//! - a comment with only a left trim marker (`{{- /* c */}}`) trims the text after it in gotmpl;
//!   Go trims only before it, so such comments are split into `{{- ""}}{{/* c */}}` first;
//! - each call site of a table function is registered under its own name carrying the line, so
//!   a failing function (a missing key, above all) is reported with its line.
//!
//! `include` parses the named template as a Go template (once per render) and executes it with the
//! data as dot, as a nested render on the same thread, one step further down the include chain.
//!
//! The store of the render is kept in a thread-local slot while the template executes: gotmpl
//! calls functions synchronously on the rendering thread, so concurrent renders of one template
//! on different threads each see their own store, and the function map can be built once.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use gotmpl::parse::{CommandNode, Expr, ListNode, Node, Number, PipeNode, SmolStr};
use gotmpl::{Value, ValueFunc};

use crate::funcs::{FuncContext, FuncError, Function, Include, function};
use crate::gofmt::{self, GoValue};
use crate::store::Store;
use crate::value::Val;
use crate::{TemplateError, template_name};

/// Go text/template's builtin functions (provided by gotmpl, some replaced below).
const BUILTINS: &[&str] = &[
    "and", "call", "html", "index", "slice", "js", "len", "not", "or", "print", "printf",
    "println", "urlquery", "eq", "ge", "gt", "le", "lt", "ne",
];

const PRINT_FN: &str = "confd:print";
const METHOD_FN: &str = "confd:method";

/// A parsed Go template.
pub(crate) struct GoTemplate {
    name: String,
    /// The path relative to the templates directory (`sub/a.tmpl`), for include chains.
    rel: String,
    tmpl: gotmpl::Template,
    /// Where `include` finds templates.
    templates_dir: Option<PathBuf>,
}

impl std::fmt::Debug for GoTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoTemplate")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The Go type of a value that gotmpl cannot tell apart by itself.
#[derive(Clone, Debug)]
enum Tag {
    /// A list whose Go type is not `[]interface {}` (`[]string`, `memkv.KVPairs`, ...), or a
    /// nil one.
    List { ty: &'static str, nil: bool },
    /// A pair, SRV record, time, month, weekday, location or duration.
    Val(Val),
}

/// The templates `include` parsed during one render (with its nested renders), by relative name:
/// a partial included in a loop is read and parsed once per render, and a changed partial is
/// seen by the next render.
type IncludeCache = Rc<RefCell<HashMap<String, Rc<GoTemplate>>>>;

/// The state of the render running on this thread.
struct RenderState {
    store: Store,
    templates_dir: Option<PathBuf>,
    /// The templates being rendered, the outermost first (this one last).
    chain: Rc<[String]>,
    includes: IncludeCache,
    /// The first table function failure, with its line (gotmpl drops positions).
    error: Option<(FuncError, usize)>,
    /// Go types of the lists and maps made during this render, by the address of their shared
    /// data (each entry keeps its value alive, so an address is never reused within a render).
    typed: HashMap<usize, (Value, Tag)>,
}

thread_local! {
    static CURRENT: RefCell<Vec<RenderState>> = const { RefCell::new(Vec::new()) };
}

/// Makes `store` the store of this thread's render until dropped.
struct StoreGuard;

impl StoreGuard {
    fn set(
        store: &Store,
        templates_dir: Option<&Path>,
        chain: Rc<[String]>,
        includes: IncludeCache,
    ) -> StoreGuard {
        CURRENT.with(|c| {
            c.borrow_mut().push(RenderState {
                store: store.clone(),
                templates_dir: templates_dir.map(Path::to_path_buf),
                chain,
                includes,
                error: None,
                typed: HashMap::new(),
            });
        });
        StoreGuard
    }

    fn take_error(&self) -> Option<(FuncError, usize)> {
        CURRENT.with(|c| c.borrow_mut().last_mut().and_then(|s| s.error.take()))
    }
}

impl Drop for StoreGuard {
    fn drop(&mut self) {
        CURRENT.with(|c| {
            c.borrow_mut().pop();
        });
    }
}

fn address(v: &Value) -> Option<usize> {
    match v {
        Value::List(l) => Some(Arc::as_ptr(l) as *const Value as usize),
        Value::Map(m) => Some(Arc::as_ptr(m) as usize),
        _ => None,
    }
}

fn register(v: &Value, tag: Tag) {
    if let Some(addr) = address(v) {
        CURRENT.with(|c| {
            if let Some(state) = c.borrow_mut().last_mut() {
                state.typed.insert(addr, (v.clone(), tag));
            }
        });
    }
}

fn tag_of(v: &Value) -> Option<Tag> {
    let addr = address(v)?;
    CURRENT.with(|c| {
        c.borrow()
            .last()
            .and_then(|s| s.typed.get(&addr).map(|(_, t)| t.clone()))
    })
}

impl GoTemplate {
    /// Reads and parses a template file; the template's name is the file's base name.
    pub(crate) fn load(path: &Path, templates_dir: &Path) -> Result<GoTemplate, TemplateError> {
        let name = template_name(path);
        let src = std::fs::read_to_string(path).map_err(|e| {
            TemplateError::load(&name, None, format!("cannot read {}: {e}", path.display()))
        })?;
        let mut t = Self::parse(&name, &src)?;
        t.templates_dir = Some(templates_dir.to_path_buf());
        if let Ok(rel) = path.strip_prefix(templates_dir) {
            t.rel = rel.to_string_lossy().into_owned();
        }
        Ok(t)
    }

    /// Parses template source text under `name`.
    pub(crate) fn parse(name: &str, src: &str) -> Result<GoTemplate, TemplateError> {
        let src = fix_left_trimmed_comments(src);
        let (src, min_ints) = fix_min_int_literals(&src);
        let parsed = gotmpl::Template::new(name)
            .parse(&src)
            .map_err(|e| load_error(name, e))?;
        check_blocks(name, &src)?;
        let mut funcs: BTreeMap<String, ValueFunc> = BTreeMap::new();
        funcs.insert(PRINT_FN.to_string(), Arc::new(|args| Ok(go_print(args))));
        funcs.insert(METHOD_FN.to_string(), Arc::new(call_method));
        add_builtin_overrides(&mut funcs);
        let mut trees = Vec::new();
        let defined: Vec<String> = parsed.templates().iter().map(|t| t.to_string()).collect();
        for tree_name in parsed.templates() {
            let Some(tree) = parsed.lookup(tree_name) else {
                continue;
            };
            let mut tree = tree.clone();
            let mut rw = Rewriter {
                funcs: &mut funcs,
                unknown: None,
                defined: &defined,
                undefined_template: None,
                min_ints: &min_ints,
            };
            rw.list(&mut tree);
            if let Some((func, line)) = rw.unknown {
                return Err(TemplateError::load(
                    name,
                    Some(line),
                    format!("function \"{func}\" not defined"),
                ));
            }
            if let Some((t, line)) = rw.undefined_template {
                return Err(TemplateError::load(
                    name,
                    Some(line),
                    format!("template \"{t}\" not defined"),
                ));
            }
            trees.push((tree_name.to_string(), tree));
        }
        let mut tmpl = gotmpl::Template::new(name).funcs(funcs);
        let mut has_main = false;
        for (tree_name, tree) in trees {
            has_main |= tree_name == name;
            tmpl = tmpl.add_parse_tree(&tree_name, tree);
        }
        if !has_main {
            // An empty file: Go renders nothing.
            let empty = ListNode {
                pos: gotmpl::parse::Pos::new(0, 1),
                nodes: Vec::new(),
            };
            tmpl = tmpl.add_parse_tree(name, empty);
        }
        Ok(GoTemplate {
            name: name.to_string(),
            rel: name.to_string(),
            tmpl,
            templates_dir: None,
        })
    }

    /// Executes the template with dot = nil (as confd does) against `store`.
    pub(crate) fn render(&self, store: &Store) -> Result<String, TemplateError> {
        let chain: Rc<[String]> = Rc::from(vec![self.rel.clone()]);
        self.render_with(store, None, chain, IncludeCache::default())
    }

    /// Executes the template with `dot` as dot (`include "x.tmpl" $data`), as the last of the
    /// include `chain`.
    fn render_with(
        &self,
        store: &Store,
        dot: Option<&Val>,
        chain: Rc<[String]>,
        includes: IncludeCache,
    ) -> Result<String, TemplateError> {
        let guard = StoreGuard::set(store, self.templates_dir.as_deref(), chain, includes);
        let dot = dot.map_or(Value::Nil, |d| to_go(d.clone()));
        let result = self.tmpl.execute_template_to_string(&self.name, &dot);
        let func_error = guard.take_error();
        drop(guard);
        result.map_err(|e| match func_error {
            Some((fe, line)) => TemplateError::render(&self.name, Some(line), &fe)
                .with_missing_key(fe.missing_key.clone()),
            None => TemplateError::render(&self.name, None, exec_message(&e)),
        })
    }
}

/// gotmpl's lexer refuses `-9223372036854775808` (the magnitude overflows i64 before the sign
/// is applied), which Go accepts. Such literals, in any base, get a `+` for their `-` (the same
/// length, so offsets and columns stay), and the offsets are returned so that the parse tree
/// walk turns the resulting unsigned 2^63 back into i64::MIN.
fn fix_min_int_literals(src: &str) -> (Cow<'_, str>, Vec<usize>) {
    let b = src.as_bytes();
    let mut flips = Vec::new();
    for span in scan_actions(src) {
        if span.comment {
            continue;
        }
        let mut j = span.body;
        let end = span.close.saturating_sub(2);
        let mut quote: Option<u8> = None;
        while j < end {
            let c = b[j];
            match quote {
                Some(q) => {
                    if c == b'\\' && q != b'`' {
                        j += 1;
                    } else if c == q {
                        quote = None;
                    }
                    j += 1;
                    continue;
                }
                None if matches!(c, b'"' | b'`' | b'\'') => {
                    quote = Some(c);
                    j += 1;
                    continue;
                }
                None => {}
            }
            let starts_token = j == 0
                || !(b[j - 1].is_ascii_alphanumeric() || matches!(b[j - 1], b'_' | b'.' | b'$'));
            if c == b'-' && starts_token && b.get(j + 1).is_some_and(u8::is_ascii_digit) {
                let mut k = j + 1;
                while k < end && (b[k].is_ascii_alphanumeric() || matches!(b[k], b'_' | b'.')) {
                    k += 1;
                }
                if is_two_pow_63(&src[j + 1..k]) {
                    flips.push(j);
                }
                j = k;
                continue;
            }
            j += 1;
        }
    }
    if flips.is_empty() {
        return (Cow::Borrowed(src), flips);
    }
    let mut out = src.as_bytes().to_vec();
    for &f in &flips {
        out[f] = b'+';
        // gotmpl misreads `+0b`/`+0o`: those become the zero-padded decimal of the same length.
        let base = out.get(f + 2).map(u8::to_ascii_lowercase);
        if out.get(f + 1) == Some(&b'0') && matches!(base, Some(b'b' | b'o')) {
            let mut k = f + 1;
            while k < out.len() && (out[k].is_ascii_alphanumeric() || out[k] == b'_') {
                k += 1;
            }
            let digits = format!("{:0>width$}", 1u64 << 63, width = k - f - 1);
            out[f + 1..k].copy_from_slice(digits.as_bytes());
        }
    }
    (
        Cow::Owned(String::from_utf8(out).unwrap_or_else(|_| src.to_string())),
        flips,
    )
}

/// Whether an unsigned integer literal (Go syntax: `0x`, `0o`, `0b`, legacy octal, `_`) is 2^63.
fn is_two_pow_63(lit: &str) -> bool {
    let clean: String = lit.chars().filter(|c| *c != '_').collect();
    let lower = clean.to_ascii_lowercase();
    let (digits, radix) = if let Some(d) = lower.strip_prefix("0x") {
        (d, 16)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (d, 8)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (d, 2)
    } else if lower.len() > 1
        && lower.starts_with('0')
        && lower.bytes().all(|c| (b'0'..=b'7').contains(&c))
    {
        (&lower[1..], 8)
    } else {
        (lower.as_str(), 10)
    };
    u64::from_str_radix(digits, radix) == Ok(1u64 << 63)
}

fn load_error(name: &str, e: gotmpl::TemplateError) -> TemplateError {
    match e {
        gotmpl::TemplateError::Parse {
            line, col, message, ..
        }
        | gotmpl::TemplateError::Lex {
            line, col, message, ..
        } => TemplateError::load(name, Some(line), format!("{message} (column {col})")),
        other => TemplateError::load(name, None, other),
    }
}

fn exec_message(e: &gotmpl::TemplateError) -> String {
    match e {
        gotmpl::TemplateError::Exec(m) => m.clone(),
        other => other.to_string(),
    }
}

/// One `{{ ... }}` action in the source, found by [`scan_actions`].
#[derive(Debug, Clone, Copy)]
struct ActionSpan {
    /// Offset of `{{`.
    open: usize,
    /// Offset of the body (after `{{`, the trim marker and spaces).
    body: usize,
    /// Offset just after `}}`.
    close: usize,
    left_trim: bool,
    right_trim: bool,
    comment: bool,
}

/// Finds the actions of a template source, stepping over quoted strings and comments; stops at
/// an unterminated action (the parser reports that).
fn scan_actions(src: &str) -> Vec<ActionSpan> {
    let b = src.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    while i + 1 < b.len() {
        if !(b[i] == b'{' && b[i + 1] == b'{') {
            i += 1;
            continue;
        }
        let open = i;
        let mut j = i + 2;
        let left_trim =
            b.get(j) == Some(&b'-') && b.get(j + 1).is_some_and(|c| c.is_ascii_whitespace());
        if left_trim {
            j += 1;
        }
        while b.get(j).is_some_and(|c| c.is_ascii_whitespace()) {
            j += 1;
        }
        let body = j;
        if b.get(j) == Some(&b'/') && b.get(j + 1) == Some(&b'*') {
            let Some(end) = src[j + 2..].find("*/").map(|e| j + 2 + e + 2) else {
                break;
            };
            let mut k = end;
            while b.get(k).is_some_and(|c| c.is_ascii_whitespace()) {
                k += 1;
            }
            let right_trim = k > end && src[k..].starts_with("-}}");
            let close = if right_trim { k + 3 } else { k + 2 };
            if !right_trim && !src[k..].starts_with("}}") {
                break;
            }
            spans.push(ActionSpan {
                open,
                body,
                close,
                left_trim,
                right_trim,
                comment: true,
            });
            i = close;
            continue;
        }
        let mut quote = None;
        while j < b.len() {
            match (quote, b[j]) {
                (Some(b'`'), b'`') => quote = None,
                (Some(q), b'\\') if q != b'`' => j += 1,
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, c @ (b'"' | b'`' | b'\'')) => quote = Some(c),
                (None, b'}') if b.get(j + 1) == Some(&b'}') => break,
                (None, _) => {}
            }
            j += 1;
        }
        if j >= b.len() {
            break;
        }
        let right_trim = j > body && b[j - 1] == b'-' && b[j - 2].is_ascii_whitespace();
        spans.push(ActionSpan {
            open,
            body,
            close: j + 2,
            left_trim,
            right_trim,
            comment: false,
        });
        i = j + 2;
    }
    spans
}

/// Rewrites `{{- /* c */}}` (trim on the left only) into `{{- ""}}{{/* c */}}`, which gotmpl
/// trims like Go trims the comment. Everything else, including line breaks, is kept.
fn fix_left_trimmed_comments(src: &str) -> std::borrow::Cow<'_, str> {
    let mut out = String::new();
    let mut copied = 0;
    for span in scan_actions(src) {
        if span.comment && span.left_trim && !span.right_trim {
            out.push_str(&src[copied..span.open]);
            out.push_str("{{- \"\"}}{{");
            out.push_str(&src[span.body..span.close]);
            copied = span.close;
        }
    }
    if copied == 0 {
        return std::borrow::Cow::Borrowed(src);
    }
    out.push_str(&src[copied..]);
    std::borrow::Cow::Owned(out)
}

/// Checks that `if`/`range`/`with`/`define`/`block` and `else`/`end` pair up, as Go's parser
/// does; gotmpl silently accepts a block left open at the end of the file and ignores
/// everything after a stray `{{end}}`.
fn check_blocks(name: &str, src: &str) -> Result<(), TemplateError> {
    let line_of = |offset: usize| src[..offset].matches('\n').count() + 1;
    let mut open: Vec<(&str, usize)> = Vec::new();
    for span in scan_actions(src) {
        if span.comment {
            continue;
        }
        let body = &src[span.body..span.close];
        let word: String = body
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let line = line_of(span.open);
        match word.as_str() {
            "if" | "range" | "with" | "define" | "block" => {
                let kw = match word.as_str() {
                    "if" => "if",
                    "range" => "range",
                    "with" => "with",
                    "define" => "define",
                    _ => "block",
                };
                open.push((kw, line));
            }
            // The guard pops the block an `{{end}}` closes; only an empty stack is an error.
            "end" if open.pop().is_none() => {
                return Err(TemplateError::load(name, Some(line), "unexpected {{end}}"));
            }
            "else" => match open.last() {
                Some(("if" | "range" | "with", _)) => {}
                _ => {
                    return Err(TemplateError::load(name, Some(line), "unexpected {{else}}"));
                }
            },
            _ => {}
        }
    }
    match open.pop() {
        Some((kw, line)) => Err(TemplateError::load(
            name,
            Some(line),
            format!("unexpected EOF: {{{{{kw}}}}} is never closed with {{{{end}}}}"),
        )),
        None => Ok(()),
    }
}

/// Walks a parse tree: checks function names, and applies the rewrites described at the top.
struct Rewriter<'a> {
    funcs: &'a mut BTreeMap<String, ValueFunc>,
    unknown: Option<(String, usize)>,
    /// The names `{{template}}` may call.
    defined: &'a [String],
    undefined_template: Option<(String, usize)>,
    /// Offsets of the literals [`fix_min_int_literals`] flipped.
    min_ints: &'a [usize],
}

impl Rewriter<'_> {
    fn list(&mut self, list: &mut ListNode) {
        for node in &mut list.nodes {
            self.node(node);
        }
    }

    fn node(&mut self, node: &mut Node) {
        match node {
            Node::List(l) => self.list(l),
            Node::Action(a) => {
                self.pipe(&mut a.pipe);
                if a.pipe.decl.is_empty() {
                    let pos = a.pipe.pos;
                    a.pipe.commands.push(CommandNode {
                        pos,
                        args: vec![Expr::Identifier(pos, SmolStr::new(PRINT_FN))],
                    });
                }
            }
            Node::If(b) | Node::Range(b) | Node::With(b) => {
                self.pipe(&mut b.pipe);
                self.list(&mut b.body);
                if let Some(e) = &mut b.else_body {
                    self.list(e);
                }
            }
            Node::Template(t) => {
                if !self.defined.iter().any(|d| d == t.name.as_str())
                    && self.undefined_template.is_none()
                {
                    self.undefined_template = Some((t.name.to_string(), t.pos.line));
                }
                if let Some(p) = &mut t.pipe {
                    self.pipe(p);
                }
            }
            Node::Define(d) => self.list(&mut d.body),
            Node::Text(_) | Node::Break(_) | Node::Continue(_) => {}
        }
    }

    fn pipe(&mut self, pipe: &mut PipeNode) {
        for (i, cmd) in pipe.commands.iter_mut().enumerate() {
            rewrite_method_call(cmd, i > 0);
            for arg in &mut cmd.args {
                rewrite_fields(arg);
                self.expr(arg);
            }
        }
    }

    fn expr(&mut self, expr: &mut Expr) {
        match expr {
            Expr::Identifier(pos, name) => {
                if let Some(f) = function(name) {
                    let site = format!("{}:{}", f.name, pos.line);
                    self.funcs
                        .entry(site.clone())
                        .or_insert_with(|| table_func(f, pos.line));
                    *name = SmolStr::new(site);
                } else if !BUILTINS.contains(&name.as_str())
                    && !name.starts_with("confd:")
                    && self.unknown.is_none()
                {
                    self.unknown = Some((name.to_string(), pos.line));
                }
            }
            Expr::Number(pos, n @ Number::Uint(_)) if self.min_ints.contains(&pos.offset) => {
                *n = Number::Int(i64::MIN);
            }
            Expr::Pipe(_, p) => self.pipe(p),
            Expr::Chain(_, inner, _) => self.expr(inner),
            _ => {}
        }
    }
}

/// A field chain and its receiver: `.A.B` (dot), `$x.A`, `(pipe).A`, `func.A`.
fn field_chain(expr: &Expr) -> Option<(Expr, &[SmolStr], gotmpl::parse::Pos)> {
    match expr {
        Expr::Chain(pos, inner, fields) => Some(((**inner).clone(), fields.as_slice(), *pos)),
        Expr::Variable(pos, name, fields) if !fields.is_empty() => Some((
            Expr::Variable(*pos, name.clone(), Vec::new()),
            fields.as_slice(),
            *pos,
        )),
        Expr::Field(pos, fields) => Some((Expr::Dot(*pos), fields.as_slice(), *pos)),
        _ => None,
    }
}

fn method_command(pos: gotmpl::parse::Pos, receiver: Expr, fields: &[SmolStr]) -> Vec<Expr> {
    let path: Vec<&str> = fields.iter().map(SmolStr::as_str).collect();
    vec![
        Expr::Identifier(pos, SmolStr::new(METHOD_FN)),
        receiver,
        Expr::String(pos, Arc::from(path.join("."))),
    ]
}

/// Turns `X.F args...` (and a field receiving a piped value) into `confd:method X "F" args...`,
/// which calls the method the way Go does.
fn rewrite_method_call(cmd: &mut CommandNode, piped: bool) {
    let has_args = cmd.args.len() > 1 || piped;
    if !has_args {
        return;
    }
    let Some((receiver, fields, pos)) = cmd.args.first().and_then(field_chain) else {
        return;
    };
    let fields = fields.to_vec();
    let mut args = method_command(pos, receiver, &fields);
    args.extend(cmd.args.drain(1..));
    cmd.args = args;
}

/// Turns every other field chain into `(confd:method X "A.B")`, so that fields and niladic
/// methods of confd's values (`datetime.UTC.Year`, `.Key`) are evaluated with Go's rules.
fn rewrite_fields(expr: &mut Expr) {
    let Some((mut receiver, fields, pos)) = field_chain(expr) else {
        return;
    };
    let fields = fields.to_vec();
    rewrite_fields(&mut receiver);
    *expr = Expr::Pipe(
        pos,
        PipeNode {
            pos,
            decl: Vec::new(),
            commands: vec![CommandNode {
                pos,
                args: method_command(pos, receiver, &fields),
            }],
            is_assign: false,
        },
    );
}

/// The Go type of the list a table function returns (what `%T` prints), and whether Go's
/// function returns a nil slice for it; `None` is Go's default `[]interface {}`.
fn result_list_type(name: &str, args: &[Value], result: &Val) -> Option<(&'static str, bool)> {
    let Val::List(items) = result else {
        return None;
    };
    let empty = items.is_empty();
    let input = || match args.first().map(tag_of) {
        Some(Some(Tag::List { ty, nil })) => Some((ty, nil)),
        _ => None,
    };
    Some(match name {
        "gets" => ("memkv.KVPairs", false),
        "sortKVByLength" => ("[]memkv.KVPair", input().is_some_and(|(_, n)| n)),
        "sortByLength" => ("[]string", input().is_some_and(|(_, n)| n)),
        "getvs" | "ls" | "lsdir" | "split" | "keys" => ("[]string", false),
        "lookupIP" | "lookupIPV4" | "lookupIPV6" => ("[]string", empty),
        "seq" => ("[]int", empty),
        "lookupSRV" => ("[]*net.SRV", false),
        "pluck" => ("[]interface {}", empty),
        "jsonArray" => (
            "[]interface {}",
            empty && matches!(args.first(), Some(Value::String(s)) if s.trim() == "null"),
        ),
        "reverse" => return input(),
        _ => return None,
    })
}

/// A gotmpl function for one call site of a table function.
fn table_func(f: &'static Function, line: usize) -> ValueFunc {
    Arc::new(move |args: &[Value]| {
        let vals: Vec<Val> = args.iter().map(from_go).collect();
        let result = CURRENT.with(|c| {
            let states = c.borrow();
            let state = states.last().ok_or_else(|| {
                gotmpl::TemplateError::Exec(format!("{}: called outside a render", f.name))
            })?;
            let include = GoInclude {
                store: state.store.clone(),
                templates_dir: state.templates_dir.clone(),
                chain: Rc::clone(&state.chain),
                includes: Rc::clone(&state.includes),
            };
            drop(states);
            let ctx = FuncContext {
                store: &include.store,
                include: Some(&include),
            };
            Ok::<_, gotmpl::TemplateError>(f.call(&ctx, &vals))
        })?;
        match result {
            Ok(v) => {
                let list = result_list_type(f.name, args, &v);
                Ok(to_go_typed(v, list))
            }
            Err(e) => {
                let msg = e.to_string();
                CURRENT.with(|c| {
                    if let Some(state) = c.borrow_mut().last_mut() {
                        state.error.get_or_insert((e, line));
                    }
                });
                Err(gotmpl::TemplateError::Exec(msg))
            }
        }
    })
}

/// `include` in a Go template: the named template, parsed as a Go template, rendered with the
/// data as dot by the same store, one step further down the include chain.
#[derive(Debug)]
struct GoInclude {
    store: Store,
    templates_dir: Option<PathBuf>,
    chain: Rc<[String]>,
    includes: IncludeCache,
}

impl Include for GoInclude {
    fn include(&self, name: &str, data: Option<&Val>) -> Result<String, FuncError> {
        let fail = |message: String| FuncError::new("include", message);
        let dir = self
            .templates_dir
            .as_deref()
            .ok_or_else(|| fail("this template has no templates directory".into()))?;
        let (rel, path) = crate::include::resolve(dir, name).map_err(fail)?;
        let chain = crate::include::enter(&self.chain, &rel).map_err(fail)?;
        // Where the included template went wrong, named by its path in the templates directory.
        let nested = |e: TemplateError| FuncError {
            missing_key: e.missing_key.clone(),
            ..fail(match e.line {
                Some(line) => format!("{rel}:{line}: {}", e.message),
                None => format!("{rel}: {}", e.message),
            })
        };
        let cached = self.includes.borrow().get(&rel).cloned();
        let tmpl = match cached {
            Some(t) => t,
            None => {
                let mut t = GoTemplate::load(&path, dir).map_err(nested)?;
                t.rel = rel.clone();
                let t = Rc::new(t);
                self.includes
                    .borrow_mut()
                    .insert(rel.clone(), Rc::clone(&t));
                t
            }
        };
        tmpl.render_with(
            &self.store,
            data,
            Rc::from(chain),
            Rc::clone(&self.includes),
        )
        .map_err(nested)
    }
}

/// Converts a table value into a gotmpl value.
pub(crate) fn to_go(v: Val) -> Value {
    to_go_typed(v, None)
}

fn to_go_typed(v: Val, list: Option<(&'static str, bool)>) -> Value {
    let tagged = |value: Value, v: Val| {
        register(&value, Tag::Val(v));
        value
    };
    match v {
        Val::Nil => Value::Nil,
        Val::Bool(b) => Value::Bool(b),
        Val::Int(i) => Value::Int(i),
        Val::Float(f) => Value::Float(f),
        Val::Str(s) => Value::String(Arc::from(s)),
        Val::List(l) => {
            let value = Value::List(l.into_iter().map(to_go).collect());
            if let Some((ty, nil)) = list
                && (ty != "[]interface {}" || nil)
            {
                register(&value, Tag::List { ty, nil });
            }
            value
        }
        Val::Map(m) => Value::Map(Arc::new(
            m.into_iter()
                .map(|(k, v)| (Arc::from(k), to_go(v)))
                .collect(),
        )),
        Val::Pair(p) => {
            let value = go_map([
                ("Key", Value::String(Arc::from(p.key.as_str()))),
                ("Value", Value::String(Arc::from(p.value.as_str()))),
            ]);
            tagged(value, Val::Pair(p))
        }
        Val::Srv(s) => {
            let value = go_map([
                ("Target", Value::String(Arc::from(s.target.as_str()))),
                ("Port", Value::Int(i64::from(s.port))),
                ("Priority", Value::Int(i64::from(s.priority))),
                ("Weight", Value::Int(i64::from(s.weight))),
            ]);
            tagged(value, Val::Srv(s))
        }
        // Opaque to gotmpl: a one-entry map (true in `if`, like a Go struct), or an empty one
        // for the zero month, weekday or duration (false in `if`, as in Go).
        other => {
            let zero = matches!(other, Val::Weekday(0) | Val::Duration(0) | Val::Month(0));
            let value = if zero {
                Value::Map(Arc::new(BTreeMap::new()))
            } else {
                go_map([("", Value::String(Arc::from(other.to_string())))])
            };
            tagged(value, other)
        }
    }
}

fn go_map<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Map(Arc::new(
        entries
            .into_iter()
            .map(|(k, v)| (Arc::from(k), v))
            .collect(),
    ))
}

/// Converts a gotmpl value back into a table value.
pub(crate) fn from_go(v: &Value) -> Val {
    match v {
        Value::Nil => Val::Nil,
        Value::Bool(b) => Val::Bool(*b),
        Value::Int(i) => Val::Int(*i),
        Value::Uint(u) => Val::Int(i64::try_from(*u).unwrap_or(i64::MAX)),
        Value::Float(f) => Val::Float(*f),
        Value::String(s) => Val::Str(s.to_string()),
        Value::List(l) => Val::List(l.iter().map(from_go).collect()),
        Value::Map(m) => {
            if let Some(Tag::Val(t)) = tag_of(v) {
                return t;
            }
            Val::Map(m.iter().map(|(k, v)| (k.to_string(), from_go(v))).collect())
        }
        // Functions and other engine-only values have no table equivalent.
        _ => Val::Str(v.to_string()),
    }
}

/// A value as Go's `fmt` sees it.
fn go_value(v: &Value) -> GoValue {
    match v {
        Value::Nil => GoValue::Nil,
        Value::Bool(b) => GoValue::Bool(*b),
        Value::Int(i) => GoValue::Int(*i, "int"),
        Value::Uint(u) => GoValue::Uint(*u, "uint"),
        Value::Float(f) => GoValue::Float(*f),
        Value::String(s) => GoValue::Str(s.to_string()),
        Value::List(l) => {
            let (ty, nil) = match tag_of(v) {
                Some(Tag::List { ty, nil }) => (ty, nil),
                _ => ("[]interface {}", false),
            };
            GoValue::Slice {
                ty: ty.to_string(),
                nil,
                items: l.iter().map(go_value).collect(),
                addr: address(v).unwrap_or(0),
            }
        }
        Value::Map(m) => match tag_of(v) {
            Some(Tag::Val(t)) => go_value_of(&t, address(v).unwrap_or(0)),
            _ => GoValue::Map {
                ty: "map[string]interface {}".into(),
                entries: m
                    .iter()
                    .map(|(k, v)| (k.to_string(), go_value(v)))
                    .collect(),
                addr: address(v).unwrap_or(0),
            },
        },
        other => GoValue::Str(other.to_string()),
    }
}

fn go_value_of(v: &Val, addr: usize) -> GoValue {
    let stringer = |ty: &'static str, inner: GoValue| GoValue::Stringer {
        ty,
        string: v.to_string(),
        go_string: None,
        inner: Box::new(inner),
    };
    match v {
        Val::Pair(p) => GoValue::Struct {
            ty: "memkv.KVPair".into(),
            ptr: false,
            fields: vec![
                ("Key", GoValue::Str(p.key.clone())),
                ("Value", GoValue::Str(p.value.clone())),
            ],
            addr,
        },
        Val::Srv(s) => GoValue::Struct {
            ty: "net.SRV".into(),
            ptr: true,
            fields: vec![
                ("Target", GoValue::Str(s.target.clone())),
                ("Port", GoValue::Uint(u64::from(s.port), "uint16")),
                ("Priority", GoValue::Uint(u64::from(s.priority), "uint16")),
                ("Weight", GoValue::Uint(u64::from(s.weight), "uint16")),
            ],
            addr,
        },
        Val::Time(t) => GoValue::Stringer {
            ty: "time.Time",
            string: t.to_string(),
            go_string: Some(t.go_string()),
            inner: Box::new(GoValue::Struct {
                ty: "time.Time".into(),
                ptr: false,
                fields: Vec::new(),
                addr,
            }),
        },
        Val::Month(m) => stringer("time.Month", GoValue::Int(i64::from(*m), "time.Month")),
        Val::Weekday(d) => stringer("time.Weekday", GoValue::Int(i64::from(*d), "time.Weekday")),
        Val::Duration(d) => stringer("time.Duration", GoValue::Int(*d, "time.Duration")),
        Val::Location(_) => stringer(
            "*time.Location",
            GoValue::Struct {
                ty: "time.Location".into(),
                ptr: true,
                fields: Vec::new(),
                addr,
            },
        ),
        Val::Nil => GoValue::Nil,
        Val::Bool(b) => GoValue::Bool(*b),
        Val::Int(i) => GoValue::Int(*i, "int"),
        Val::Float(f) => GoValue::Float(*f),
        Val::Str(s) => GoValue::Str(s.clone()),
        Val::List(l) => GoValue::Slice {
            ty: "[]interface {}".into(),
            nil: false,
            items: l.iter().map(|x| go_value_of(x, 0)).collect(),
            addr,
        },
        Val::Map(m) => GoValue::Map {
            ty: "map[string]interface {}".into(),
            entries: m
                .iter()
                .map(|(k, x)| (k.clone(), go_value_of(x, 0)))
                .collect(),
            addr,
        },
    }
}

/// Go's `printableValue`: what `{{ value }}` prints, the value with a top-level pointer
/// dereferenced (an SRV record prints `{...}`, not `&{...}`).
fn printable(v: &Value) -> GoValue {
    match go_value(v) {
        GoValue::Struct {
            ty, fields, addr, ..
        } => GoValue::Struct {
            ty,
            ptr: false,
            fields,
            addr,
        },
        other => other,
    }
}

/// The hidden print step of every printed action: Go's `fmt.Print` of the value. Strings pass
/// through, nil prints `<no value>`.
fn go_print(args: &[Value]) -> Value {
    let Some(v) = args.last() else {
        return Value::Nil;
    };
    match v {
        Value::Nil | Value::String(_) | Value::Function(_) => v.clone(),
        other => Value::String(Arc::from(gofmt::sprint(&[printable(other)]))),
    }
}

fn exec_err(msg: impl Into<String>) -> gotmpl::TemplateError {
    gotmpl::TemplateError::Exec(msg.into())
}

/// Replaces the gotmpl builtins whose results depend on Go's formatting or Go's types:
/// `print`, `printf`, `println`, `html`, `js`, `urlquery` (which format their arguments with
/// `fmt.Sprint`), the comparisons (a month is an integer to them) and `len`.
fn add_builtin_overrides(funcs: &mut BTreeMap<String, ValueFunc>) {
    let values = |args: &[Value]| args.iter().map(go_value).collect::<Vec<_>>();
    funcs.insert(
        "print".into(),
        Arc::new(move |args| Ok(Value::String(Arc::from(gofmt::sprint(&values(args)))))),
    );
    funcs.insert(
        "println".into(),
        Arc::new(move |args| Ok(Value::String(Arc::from(gofmt::sprintln(&values(args)))))),
    );
    funcs.insert(
        "printf".into(),
        Arc::new(move |args| {
            let Some((format, rest)) = args.split_first() else {
                return Err(exec_err(
                    "wrong number of args for printf: want at least 1 got 0",
                ));
            };
            let Value::String(format) = format else {
                return Err(exec_err(format!(
                    "wrong type for value; expected string; got {}",
                    go_value(format).type_name()
                )));
            };
            Ok(Value::String(Arc::from(gofmt::sprintf(
                format,
                &values(rest),
            ))))
        }),
    );
    for (name, escape) in [
        ("html", gotmpl::html_escape as fn(&str) -> String),
        ("js", gotmpl::js_escape),
        ("urlquery", gotmpl::url_encode),
    ] {
        funcs.insert(
            name.into(),
            Arc::new(move |args| Ok(Value::String(Arc::from(escape(&eval_args(args)))))),
        );
    }
    for name in ["eq", "ne", "lt", "le", "gt", "ge"] {
        funcs.insert(name.into(), Arc::new(move |args| compare(name, args)));
    }
    funcs.insert(
        "len".into(),
        Arc::new(|args| {
            let [v] = args else {
                return Err(exec_err(format!(
                    "wrong number of args for len: want 1 got {}",
                    args.len()
                )));
            };
            if let Some(Tag::Val(_)) = tag_of(v) {
                return Err(exec_err(format!("len of type {}", go_value(v).type_name())));
            }
            match v.len() {
                Some(n) => Ok(Value::Int(i64::try_from(n).unwrap_or(i64::MAX))),
                None => Err(exec_err(format!("len of type {}", go_value(v).type_name()))),
            }
        }),
    );
}

/// Go's `evalArgs` of the escaping builtins: one string as it is, anything else through
/// `fmt.Sprint` (nil as `<no value>`).
fn eval_args(args: &[Value]) -> String {
    if let [Value::String(s)] = args {
        return s.to_string();
    }
    let printable: Vec<GoValue> = args
        .iter()
        .map(|a| match a {
            Value::Nil => GoValue::Str("<no value>".into()),
            other => printable(other),
        })
        .collect();
    gofmt::sprint(&printable)
}

/// A value as Go's comparison builtins see it (`basicKind`).
#[derive(Debug)]
enum Basic {
    Nil,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(Arc<str>),
    /// A struct (pair, time, SRV record): comparable with `eq` only.
    Struct(Val),
    /// A list, map or function: not comparable.
    Other(String),
}

fn basic(v: &Value) -> Basic {
    match v {
        Value::Nil => Basic::Nil,
        Value::Bool(b) => Basic::Bool(*b),
        Value::Int(i) => Basic::Int(*i),
        Value::Uint(u) => Basic::Uint(*u),
        Value::Float(f) => Basic::Float(*f),
        Value::String(s) => Basic::Str(Arc::clone(s)),
        Value::Map(_) => match tag_of(v) {
            Some(Tag::Val(Val::Month(m) | Val::Weekday(m))) => Basic::Int(i64::from(m)),
            Some(Tag::Val(Val::Duration(d))) => Basic::Int(d),
            Some(Tag::Val(t)) => Basic::Struct(t),
            _ => Basic::Other(go_value(v).type_name()),
        },
        other => Basic::Other(go_value(other).type_name()),
    }
}

/// Go's `eq`, `ne`, `lt`, `le`, `gt`, `ge`.
fn compare(name: &'static str, args: &[Value]) -> gotmpl::Result<Value> {
    use std::cmp::Ordering;
    let bad = || exec_err("incompatible types for comparison");
    let bad_type = || exec_err("invalid type for comparison");
    if args.len() < 2 || (name != "eq" && args.len() != 2) {
        return Err(exec_err(format!(
            "wrong number of args for {name}: want 2 got {}",
            args.len()
        )));
    }
    let first = basic(&args[0]);
    let order = |a: &Basic, b: &Basic| -> gotmpl::Result<Option<Ordering>> {
        Ok(match (a, b) {
            (Basic::Int(x), Basic::Int(y)) => Some(x.cmp(y)),
            (Basic::Uint(x), Basic::Uint(y)) => Some(x.cmp(y)),
            (Basic::Int(x), Basic::Uint(y)) => Some(if *x < 0 {
                Ordering::Less
            } else {
                (*x as u64).cmp(y)
            }),
            (Basic::Uint(x), Basic::Int(y)) => Some(if *y < 0 {
                Ordering::Greater
            } else {
                x.cmp(&(*y as u64))
            }),
            (Basic::Float(x), Basic::Float(y)) => x.partial_cmp(y),
            (Basic::Str(x), Basic::Str(y)) => Some(x.cmp(y)),
            _ => return Err(bad()),
        })
    };
    let equal = |a: &Basic, b: &Basic| -> gotmpl::Result<bool> {
        match (a, b) {
            (Basic::Nil, Basic::Nil) => Ok(true),
            (Basic::Nil, _) | (_, Basic::Nil) => Ok(false),
            (Basic::Bool(x), Basic::Bool(y)) => Ok(x == y),
            (Basic::Struct(x), Basic::Struct(y)) => {
                if std::mem::discriminant(x) == std::mem::discriminant(y) {
                    Ok(x == y)
                } else {
                    Err(bad())
                }
            }
            (Basic::Other(t), _) | (_, Basic::Other(t)) => {
                Err(exec_err(format!("non-comparable type {t}")))
            }
            (x, y) => Ok(order(x, y)? == Some(Ordering::Equal)),
        }
    };
    let truth = match name {
        "eq" => {
            let mut any = false;
            for arg in &args[1..] {
                if equal(&first, &basic(arg))? {
                    any = true;
                    break;
                }
            }
            any
        }
        "ne" => !equal(&first, &basic(&args[1]))?,
        _ => {
            let second = basic(&args[1]);
            if matches!(
                first,
                Basic::Bool(_) | Basic::Nil | Basic::Struct(_) | Basic::Other(_)
            ) || matches!(
                second,
                Basic::Bool(_) | Basic::Nil | Basic::Struct(_) | Basic::Other(_)
            ) {
                return Err(bad_type());
            }
            let o = order(&first, &second)?;
            match (name, o) {
                (_, None) => false,
                ("lt", Some(o)) => o == Ordering::Less,
                ("le", Some(o)) => o != Ordering::Greater,
                ("gt", Some(o)) => o == Ordering::Greater,
                (_, Some(o)) => o != Ordering::Less,
            }
        }
    };
    Ok(Value::Bool(truth))
}

/// `confd:method receiver "F1.F2" args...`: Go's evaluation of `receiver.F1.F2 args...`: map
/// keys, struct fields and methods of confd's values, the last one called with the arguments.
fn call_method(args: &[Value]) -> gotmpl::Result<Value> {
    let (Some(receiver), Some(Value::String(path))) = (args.first(), args.get(1)) else {
        return Err(exec_err("internal error: malformed method call"));
    };
    let fields: Vec<&str> = path.split('.').collect();
    let rest = &args[2..];
    let mut val = receiver.clone();
    for (i, name) in fields.iter().enumerate() {
        let margs = if i + 1 == fields.len() { rest } else { &[] };
        val = access(&val, name, margs)?;
    }
    Ok(val)
}

fn access(v: &Value, name: &str, args: &[Value]) -> gotmpl::Result<Value> {
    if let Some(Tag::Val(tv)) = tag_of(v) {
        let exported = name.chars().next().is_some_and(char::is_uppercase);
        let vals: Vec<Val> = args.iter().map(from_go).collect();
        let found = if exported {
            tv.method(name, &vals).map_err(exec_err)?
        } else {
            None
        };
        return match found {
            Some(r) => Ok(to_go(r)),
            None => Err(exec_err(format!(
                "can't evaluate field {name} in type {}",
                go_value(v).type_name()
            ))),
        };
    }
    match v {
        Value::Map(m) => {
            if !args.is_empty() {
                return Err(exec_err(format!(
                    "{name} is not a method but has arguments"
                )));
            }
            Ok(m.get(name).cloned().unwrap_or(Value::Nil))
        }
        Value::Nil => Ok(Value::Nil),
        other => Err(exec_err(format!(
            "can't evaluate field {name} in type {}",
            go_value(other).type_name()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        [
            ("/app/name", "web"),
            ("/app/port", "8080"),
            ("/up/a", "10.0.0.1"),
            ("/up/b", "10.0.0.2"),
            (
                "/j",
                r#"{"port": 8080, "big": 1000000, "ratio": 1.5, "tags": ["a", "b"]}"#,
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn render(src: &str) -> Result<String, TemplateError> {
        GoTemplate::parse("t.tmpl", src)?.render(&store())
    }

    #[test]
    fn store_functions_and_pairs() {
        assert_eq!(
            render(r#"{{getv "/app/name"}} {{getv "/nope" "dflt"}}"#).as_deref(),
            Ok("web dflt")
        );
        assert_eq!(
            render(r#"{{range gets "/up/*"}}{{.Key}}={{.Value}};{{end}}"#).as_deref(),
            Ok("/up/a=10.0.0.1;/up/b=10.0.0.2;")
        );
        assert_eq!(
            render(r#"{{get "/app/name"}}"#).as_deref(),
            Ok("{/app/name web}")
        );
        assert_eq!(
            render(r#"{{getv "/app/name" | toUpper}}"#).as_deref(),
            Ok("WEB")
        );
    }

    #[test]
    fn json_numbers_print_like_go() {
        assert_eq!(
            render(r#"{{$d := json (getv "/j")}}{{$d.port}} {{$d.big}} {{$d.ratio}} {{$d.tags}}"#)
                .as_deref(),
            Ok("8080 1e+06 1.5 [a b]")
        );
        assert_eq!(
            render(r#"{{range $k, $v := json (getv "/j")}}{{$k}} {{end}}"#).as_deref(),
            Ok("big port ratio tags ")
        );
    }

    #[test]
    fn missing_key_names_key_template_and_line() {
        let e = render("line1\n{{getv \"/missing\"}}").expect_err("missing key");
        assert_eq!(e.missing_key.as_deref(), Some("/missing"));
        assert_eq!(e.line, Some(2));
        assert_eq!(e.template, "t.tmpl");
        assert!(
            e.to_string().contains("key does not exist: /missing"),
            "{e}"
        );
    }

    #[test]
    fn unknown_function_fails_at_load_even_in_dead_code() {
        let e = GoTemplate::parse("t.tmpl", "a\n\n{{if false}}{{nosuch 1}}{{end}}")
            .expect_err("unknown function");
        assert_eq!(e.line, Some(3));
        assert_eq!(
            e.to_string(),
            "cannot load template t.tmpl:3: function \"nosuch\" not defined"
        );
    }

    #[test]
    fn parse_error_has_line() {
        let e = GoTemplate::parse("t.tmpl", "ok\n{{if}}").expect_err("parse error");
        assert_eq!(e.line, Some(2));
    }

    #[test]
    fn datetime_format_and_fields() {
        let year = render(r#"{{datetime.Format "2006"}}"#).expect("renders");
        assert_eq!(year.len(), 4);
        assert!(year.starts_with("20"), "{year}");
        assert_eq!(
            render(r#"{{$t := datetime}}{{$t.Format "2006"}}|{{$t.Year}}|{{with datetime}}{{.Format "2006"}}{{end}}"#)
                .expect("renders"),
            format!("{year}|{year}|{year}")
        );
        let printed = render("{{datetime}}").expect("renders");
        assert!(printed.contains(" m=+"), "{printed}");
        let utc = render("{{datetime.UTC}}").expect("renders");
        assert!(utc.ends_with(" +0000 UTC"), "{utc}");
    }

    #[test]
    fn concurrent_renders_see_their_own_store() {
        let t = Arc::new(GoTemplate::parse("t.tmpl", r#"{{getv "/k"}}"#).expect("parses"));
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let t = Arc::clone(&t);
                std::thread::spawn(move || {
                    let s: Store = [("/k".to_string(), i.to_string())].into_iter().collect();
                    (0..200)
                        .map(|_| t.render(&s).expect("renders"))
                        .all(|out| out == i.to_string())
                })
            })
            .collect();
        for h in handles {
            assert!(h.join().expect("thread"));
        }
    }

    #[test]
    fn comment_trim_markers_follow_go() {
        assert_eq!(render("a \n{{- /* c */}}\n b").as_deref(), Ok("a\n b"));
        assert_eq!(render("a \n{{- /* c */ -}}\n b").as_deref(), Ok("ab"));
        assert_eq!(render("a \n{{/* c */ -}}\n b").as_deref(), Ok("a \nb"));
        assert_eq!(render("a {{/* c */}} b").as_deref(), Ok("a  b"));
        assert_eq!(
            render("{{ \"}}{{- /* x */}}\" }}\n{{- /* multi\nline */}}\n{{getv \"/nope\" \"d\"}}")
                .as_deref(),
            Ok("}}{{- /* x */}}\nd")
        );
        // Lines after a rewritten comment keep their numbers.
        let e = render("{{- /* a\nb */}}\n{{getv \"/missing\"}}").expect_err("missing");
        assert_eq!(e.line, Some(3));
    }

    #[test]
    fn unbalanced_blocks_are_load_errors() {
        let err = |src: &str| {
            GoTemplate::parse("t.tmpl", src)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            err("{{if true}}\nname"),
            Err("cannot load template t.tmpl:1: unexpected EOF: {{if}} is never closed with {{end}}".into())
        );
        assert_eq!(
            err("a\n{{end}}b"),
            Err("cannot load template t.tmpl:2: unexpected {{end}}".into())
        );
        assert_eq!(
            err("a\n{{else}}b"),
            Err("cannot load template t.tmpl:2: unexpected {{else}}".into())
        );
        assert_eq!(
            err(
                "{{range $i, $e := seq 1 2}}{{if $i}}{{else if eq $i 1}}{{else}}{{end}}{{end}}{{ \"{{end}}\" }}"
            ),
            Ok(())
        );
        assert_eq!(
            err("{{with $x := 1}}{{else with 2}}{{end}}{{block \"b\" .}}{{end}}"),
            Ok(())
        );
        assert_eq!(err("{{- if true -}}{{- end -}}{{/* {{end}} */}}"), Ok(()));
    }

    #[test]
    fn empty_and_define_only_files_render_nothing() {
        assert_eq!(render("").as_deref(), Ok(""));
        assert_eq!(render("{{define \"x\"}}unused{{end}}").as_deref(), Ok(""));
        assert_eq!(
            render("{{define \"x\"}}[{{.}}]{{end}}{{template \"x\" getv \"/app/name\"}}\n")
                .as_deref(),
            Ok("[web]\n")
        );
    }

    #[test]
    fn printf_v_formats_floats_like_go() {
        assert_eq!(
            render(r#"{{$d := json (getv "/j")}}{{printf "%v|%5v|%.1f|%d%%|%v|%s" $d.big $d.ratio $d.big 3 $d.tags "s"}}"#)
                .as_deref(),
            Ok("1e+06|  1.5|1000000.0|3%|[a b]|s")
        );
        // `%s` of a list or a pair prints like `%v`, as Go does; scalars are untouched.
        assert_eq!(
            render(r#"{{printf "%s|%s|%s" (split "a,b" ",") (get "/app/name") "s"}}"#).as_deref(),
            Ok("[a b]|{/app/name web}|s")
        );
        // Formats that are not literals, and indexed or starred arguments, follow Go too.
        assert_eq!(
            render(r#"{{$f := "%[2]v|%*d"}}{{$d := json (getv "/j")}}{{printf $f $d.big 5 1.5}}"#)
                .as_deref(),
            Ok("5|%!(BADWIDTH)%!d(MISSING)")
        );
    }

    #[test]
    fn dot_is_nil() {
        assert_eq!(
            render("{{.}}|{{.Foo}}").as_deref(),
            Ok("<no value>|<no value>")
        );
    }
}
