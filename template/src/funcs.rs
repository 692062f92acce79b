//! The one table of confd template functions. Both engine adapters (Go text/template and Jinja)
//! register every entry under its confd name, so a function behaves the same in either syntax.

use std::fmt;

use base64::Engine as _;
use thiserror::Error;

use crate::datetime::DateTime;
use crate::store::{KvPair, Store, go_base, go_dir};
use crate::value::{Srv, Val};

/// What a function may look at besides its arguments.
#[derive(Debug, Clone, Copy)]
pub struct FuncContext<'a> {
    /// The key store of the render.
    pub store: &'a Store,
}

/// A failed function call; the message names the function.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{func}: {message}")]
pub struct FuncError {
    /// The confd name of the function.
    pub func: &'static str,
    /// What went wrong, naming the bad argument.
    pub message: String,
    /// The missing key, when the error is a missing store key (so callers can report it).
    pub missing_key: Option<String>,
}

impl FuncError {
    fn new(func: &'static str, message: impl fmt::Display) -> Self {
        FuncError {
            func,
            message: message.to_string(),
            missing_key: None,
        }
    }
}

/// One confd template function.
#[derive(Debug, Clone, Copy)]
pub struct Function {
    /// The confd name (`getv`, `toUpper`, ...).
    pub name: &'static str,
    /// The fewest arguments it takes.
    pub min_args: usize,
    /// The most arguments it takes (`None`: any number).
    pub max_args: Option<usize>,
    /// The implementation; the argument count is checked by [`Function::call`] first.
    pub imp: fn(&Args<'_>) -> Result<Val, FuncError>,
}

impl Function {
    /// Checks the argument count, then runs the function.
    pub fn call(&self, ctx: &FuncContext<'_>, args: &[Val]) -> Result<Val, FuncError> {
        let n = args.len();
        let ok = n >= self.min_args && self.max_args.is_none_or(|m| n <= m);
        if !ok {
            let want = match self.max_args {
                Some(m) if m == self.min_args => format!("{m}"),
                Some(m) => format!("{} to {m}", self.min_args),
                None => format!("at least {}", self.min_args),
            };
            return Err(FuncError::new(
                self.name,
                format!("wrong number of arguments: want {want}, got {n}"),
            ));
        }
        (self.imp)(&Args {
            func: self.name,
            ctx,
            args,
        })
    }
}

/// The arguments of one call, with typed accessors whose errors name the function and argument.
#[derive(Debug)]
pub struct Args<'a> {
    func: &'static str,
    ctx: &'a FuncContext<'a>,
    args: &'a [Val],
}

impl Args<'_> {
    fn err(&self, message: impl fmt::Display) -> FuncError {
        FuncError::new(self.func, message)
    }

    fn bad(&self, i: usize, want: &str) -> FuncError {
        let got = &self.args[i];
        self.err(format!(
            "argument {} must be {want}, got {} {}",
            i + 1,
            got.type_name(),
            quote_val(got)
        ))
    }

    fn store(&self) -> &Store {
        self.ctx.store
    }

    fn str(&self, i: usize) -> Result<&str, FuncError> {
        match &self.args[i] {
            Val::Str(s) => Ok(s),
            _ => Err(self.bad(i, "a string")),
        }
    }

    fn opt_str(&self, i: usize) -> Result<Option<&str>, FuncError> {
        if i < self.args.len() {
            self.str(i).map(Some)
        } else {
            Ok(None)
        }
    }

    /// An integer; a float with an integral value is accepted (JSON numbers are floats).
    fn int(&self, i: usize) -> Result<i64, FuncError> {
        match &self.args[i] {
            Val::Int(n) => Ok(*n),
            Val::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(*f as i64),
            _ => Err(self.bad(i, "an integer")),
        }
    }

    fn list(&self, i: usize) -> Result<&[Val], FuncError> {
        match &self.args[i] {
            Val::List(l) => Ok(l),
            _ => Err(self.bad(i, "a list")),
        }
    }

    fn store_err(&self, e: crate::store::StoreError) -> FuncError {
        let missing = match &e {
            crate::store::StoreError::KeyNotFound(k) => Some(k.clone()),
            crate::store::StoreError::BadPattern(_) => None,
        };
        FuncError {
            func: self.func,
            message: e.to_string(),
            missing_key: missing,
        }
    }
}

fn quote_val(v: &Val) -> String {
    match v {
        Val::Str(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

macro_rules! f {
    ($name:literal, $min:expr, $max:expr, $imp:expr) => {
        Function {
            name: $name,
            min_args: $min,
            max_args: $max,
            imp: $imp,
        }
    };
}

static FUNCTIONS: &[Function] = &[
    // store functions
    f!("exists", 1, Some(1), |a| Ok(Val::Bool(a.store().exists(a.str(0)?)))),
    f!("get", 1, Some(1), |a| a
        .store()
        .get(a.str(0)?)
        .map(Val::Pair)
        .map_err(|e| a.store_err(e))),
    f!("gets", 1, Some(1), |a| a
        .store()
        .gets(a.str(0)?)
        .map(Val::from)
        .map_err(|e| a.store_err(e))),
    f!("getv", 1, Some(2), |a| a
        .store()
        .getv(a.str(0)?, a.opt_str(1)?)
        .map(Val::Str)
        .map_err(|e| a.store_err(e))),
    f!("getvs", 1, Some(1), |a| a
        .store()
        .getvs(a.str(0)?)
        .map(Val::from)
        .map_err(|e| a.store_err(e))),
    f!("ls", 1, Some(1), |a| Ok(Val::from(a.store().ls(a.str(0)?)))),
    f!("lsdir", 1, Some(1), |a| Ok(Val::from(a.store().lsdir(a.str(0)?)))),
    // paths and strings
    f!("base", 1, Some(1), |a| Ok(Val::Str(go_base(a.str(0)?)))),
    f!("dir", 1, Some(1), |a| Ok(Val::Str(go_dir(a.str(0)?)))),
    f!("split", 2, Some(2), |a| Ok(Val::from(go_split(a.str(0)?, a.str(1)?)))),
    f!("join", 2, Some(2), join),
    f!("toUpper", 1, Some(1), |a| Ok(Val::Str(go_to_upper(a.str(0)?)))),
    f!("toLower", 1, Some(1), |a| Ok(Val::Str(go_to_lower(a.str(0)?)))),
    f!("contains", 2, Some(2), |a| Ok(Val::Bool(a.str(0)?.contains(a.str(1)?)))),
    f!("replace", 4, Some(4), replace),
    f!("trimSuffix", 2, Some(2), |a| {
        let s = a.str(0)?;
        Ok(Val::Str(s.strip_suffix(a.str(1)?).unwrap_or(s).to_string()))
    }),
    // data
    f!("json", 1, Some(1), |a| {
        let decoded = decode_json(a, "map[string]interface {}")?;
        match decoded {
            Val::Map(_) => Ok(decoded),
            // Go's json.Unmarshal into a map accepts `null` and leaves the map nil.
            Val::Nil => Ok(Val::Map(Default::default())),
            other => Err(a.err(format!(
                "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                json_kind(&other)
            ))),
        }
    }),
    f!("jsonArray", 1, Some(1), |a| {
        let decoded = decode_json(a, "[]interface {}")?;
        match decoded {
            Val::List(_) => Ok(decoded),
            Val::Nil => Ok(Val::List(Vec::new())),
            other => Err(a.err(format!(
                "json: cannot unmarshal {} into Go value of type []interface {{}}",
                json_kind(&other)
            ))),
        }
    }),
    f!("map", 0, None, |a| {
        if a.args.len() % 2 != 0 {
            return Err(a.err("invalid map call"));
        }
        let mut m = std::collections::BTreeMap::new();
        for (i, pair) in a.args.chunks(2).enumerate() {
            let Val::Str(k) = &pair[0] else {
                return Err(a.err(format!(
                    "map keys must be strings (argument {} is {})",
                    2 * i + 1,
                    pair[0].type_name()
                )));
            };
            m.insert(k.clone(), pair[1].clone());
        }
        Ok(Val::Map(m))
    }),
    f!("getenv", 1, Some(2), |a| {
        let default = a.opt_str(1)?.unwrap_or("");
        match std::env::var(a.str(0)?) {
            Ok(v) if !v.is_empty() => Ok(Val::Str(v)),
            _ => Ok(Val::Str(default.to_string())),
        }
    }),
    f!("datetime", 0, Some(0), |_| Ok(Val::Time(DateTime::now()))),
    // network and files
    f!("lookupIP", 1, Some(1), |a| Ok(Val::from(lookup_ip(a.str(0)?)))),
    f!("lookupIPV4", 1, Some(1), |a| {
        let ips = lookup_ip(a.str(0)?).into_iter().filter(|ip| ip.contains('.'));
        Ok(Val::from(ips.collect::<Vec<_>>()))
    }),
    f!("lookupIPV6", 1, Some(1), |a| {
        let ips = lookup_ip(a.str(0)?).into_iter().filter(|ip| ip.contains(':'));
        Ok(Val::from(ips.collect::<Vec<_>>()))
    }),
    f!("lookupSRV", 3, Some(3), |a| {
        let mut records = crate::dns::lookup_srv(a.str(0)?, a.str(1)?, a.str(2)?);
        records.sort_by_cached_key(|s| format!("{}{}{}{}", s.target, s.port, s.priority, s.weight));
        Ok(Val::List(records.into_iter().map(Val::Srv).collect()))
    }),
    f!("fileExists", 1, Some(1), |a| Ok(Val::Bool(std::fs::metadata(a.str(0)?).is_ok()))),
    f!("base64Encode", 1, Some(1), |a| Ok(Val::Str(
        base64::engine::general_purpose::STANDARD.encode(a.str(0)?)
    ))),
    f!("base64Decode", 1, Some(1), |a| {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(a.str(0)?)
            .map_err(|e| a.err(format!("invalid base64 input {:?}: {e}", a.args[0].to_string())))?;
        Ok(Val::Str(String::from_utf8_lossy(&bytes).into_owned()))
    }),
    f!("parseBool", 1, Some(1), |a| match a.str(0)? {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(Val::Bool(true)),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(Val::Bool(false)),
        s => Err(a.err(format!("strconv.ParseBool: parsing {s:?}: invalid syntax"))),
    }),
    // lists
    f!("reverse", 1, Some(1), |a| Ok(match &a.args[0] {
        Val::List(l) => Val::List(l.iter().rev().cloned().collect()),
        other => other.clone(),
    })),
    f!("sortByLength", 1, Some(1), |a| {
        let mut items = a.list(0)?.to_vec();
        for (i, v) in items.iter().enumerate() {
            if !matches!(v, Val::Str(_)) {
                return Err(a.err(format!(
                    "argument 1 must be a list of strings, item {i} is {}",
                    v.type_name()
                )));
            }
        }
        // Stable, so equal lengths keep their order (confd's sort is unstable; ours is deterministic).
        items.sort_by_key(|v| v.as_str().map_or(0, str::len));
        Ok(Val::List(items))
    }),
    f!("sortKVByLength", 1, Some(1), |a| {
        let mut items = a.list(0)?.to_vec();
        for (i, v) in items.iter().enumerate() {
            if !matches!(v, Val::Pair(_)) {
                return Err(a.err(format!(
                    "argument 1 must be a list of key/value pairs, item {i} is {}",
                    v.type_name()
                )));
            }
        }
        items.sort_by_key(|v| match v {
            Val::Pair(p) => p.key.len(),
            _ => 0,
        });
        Ok(Val::List(items))
    }),
    f!("seq", 2, Some(2), |a| {
        let (first, last) = (a.int(0)?, a.int(1)?);
        if first > last {
            return Ok(Val::List(Vec::new()));
        }
        let len = last.saturating_sub(first).saturating_add(1);
        if len > 10_000_000 {
            return Err(a.err(format!("sequence {first}..{last} is too long")));
        }
        Ok(Val::List((first..=last).map(Val::Int).collect()))
    }),
    // numbers
    f!("atoi", 1, Some(1), |a| {
        let s = a.str(0)?;
        parse_go_int(s).map(Val::Int).map_err(|why| {
            a.err(format!("strconv.Atoi: parsing {s:?}: {why}"))
        })
    }),
    f!("add", 2, Some(2), |a| Ok(Val::Int(a.int(0)?.wrapping_add(a.int(1)?)))),
    f!("sub", 2, Some(2), |a| Ok(Val::Int(a.int(0)?.wrapping_sub(a.int(1)?)))),
    f!("mul", 2, Some(2), |a| Ok(Val::Int(a.int(0)?.wrapping_mul(a.int(1)?)))),
    f!("div", 2, Some(2), |a| {
        let (x, y) = (a.int(0)?, a.int(1)?);
        if y == 0 {
            return Err(a.err(format!("division by zero ({x} / 0)")));
        }
        Ok(Val::Int(x.wrapping_div(y)))
    }),
    f!("mod", 2, Some(2), |a| {
        let (x, y) = (a.int(0)?, a.int(1)?);
        if y == 0 {
            return Err(a.err(format!("modulo by zero ({x} % 0)")));
        }
        Ok(Val::Int(x.wrapping_rem(y)))
    }),
];

/// Every confd template function.
pub fn functions() -> &'static [Function] {
    FUNCTIONS
}

/// The function with this confd name.
pub fn function(name: &str) -> Option<&'static Function> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

fn join(a: &Args<'_>) -> Result<Val, FuncError> {
    let sep = a.str(1)?;
    let mut parts = Vec::new();
    for (i, v) in a.list(0)?.iter().enumerate() {
        match v {
            Val::Str(s) => parts.push(s.as_str()),
            other => {
                return Err(a.err(format!(
                    "argument 1 must be a list of strings, item {i} is {}",
                    other.type_name()
                )));
            }
        }
    }
    Ok(Val::Str(parts.join(sep)))
}

fn replace(a: &Args<'_>) -> Result<Val, FuncError> {
    let (s, old, new, n) = (a.str(0)?, a.str(1)?, a.str(2)?, a.int(3)?);
    // Go: n < 0 replaces every match.
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    if !old.is_empty() {
        return Ok(Val::Str(s.replacen(old, new, n)));
    }
    // Go: an empty `old` matches at the start and after every character.
    let mut out = String::new();
    let mut count = 0;
    let mut put = |out: &mut String| {
        if count < n {
            out.push_str(new);
            count += 1;
        }
    };
    put(&mut out);
    for c in s.chars() {
        out.push(c);
        put(&mut out);
    }
    Ok(Val::Str(out))
}

/// Go `strings.ToUpper`: per-character simple case mapping, so `ß` and `ﬁ` stay as they are
/// (Rust's full mapping would turn them into `SS` and `FI`).
fn go_to_upper(s: &str) -> String {
    s.chars()
        .map(|c| {
            let mut up = c.to_uppercase();
            match (up.next(), up.next()) {
                (Some(u), None) => u,
                _ => c,
            }
        })
        .collect()
}

/// Go `strings.ToLower`: per-character simple case mapping (no final sigma, `İ` becomes `i`).
fn go_to_lower(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c == '\u{130}' {
                return 'i';
            }
            let mut low = c.to_lowercase();
            match (low.next(), low.next()) {
                (Some(l), None) => l,
                _ => c,
            }
        })
        .collect()
}

/// Go `strings.Split`: an empty separator splits into characters; an empty string gives `[""]`.
fn go_split(s: &str, sep: &str) -> Vec<String> {
    if sep.is_empty() {
        return s.chars().map(String::from).collect();
    }
    s.split(sep).map(str::to_string).collect()
}

fn decode_json(a: &Args<'_>, go_type: &str) -> Result<Val, FuncError> {
    let s = a.str(0)?;
    let v: serde_json::Value = serde_json::from_str(s).map_err(|e| {
        a.err(format!(
            "cannot decode {s:?} as JSON into {go_type}: {e}"
        ))
    })?;
    Ok(Val::from_json(v))
}

fn json_kind(v: &Val) -> &'static str {
    match v {
        Val::Bool(_) => "bool",
        Val::Float(_) | Val::Int(_) => "number",
        Val::Str(_) => "string",
        Val::List(_) => "array",
        Val::Map(_) => "object",
        _ => "value",
    }
}

/// Go `strconv.Atoi` (base 10, optional sign, no underscores).
fn parse_go_int(s: &str) -> Result<i64, &'static str> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("invalid syntax");
    }
    s.parse::<i64>().map_err(|_| "value out of range")
}

/// All addresses of a host, as strings sorted ascending; empty when the lookup fails.
fn lookup_ip(host: &str) -> Vec<String> {
    use std::net::ToSocketAddrs;
    let Ok(addrs) = (host, 0u16).to_socket_addrs() else {
        return Vec::new();
    };
    let mut ips: Vec<String> = addrs.map(|a| a.ip().to_string()).collect();
    ips.sort();
    ips.dedup();
    ips
}

/// Builds a pair value; used by tests and adapters.
pub fn pair(key: &str, value: &str) -> Val {
    Val::Pair(KvPair {
        key: key.to_string(),
        value: value.to_string(),
    })
}

/// Builds an SRV value.
pub fn srv(target: &str, port: u16, priority: u16, weight: u16) -> Val {
    Val::Srv(Srv {
        target: target.to_string(),
        port,
        priority,
        weight,
    })
}
