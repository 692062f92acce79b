//! The one table of confd template functions. Both engine adapters (Go text/template and Jinja)
//! register every entry under its confd name, so a function behaves the same in either syntax.

use std::fmt;

use base64::Engine as _;
use thiserror::Error;

use crate::datetime::DateTime;
use crate::extra;
use crate::store::{KvPair, Store};
use crate::value::{Srv, Val};

/// What a function may look at besides its arguments.
#[derive(Debug, Clone, Copy)]
pub struct FuncContext<'a> {
    /// The key store of the render.
    pub store: &'a Store,
    /// How the engine of the render runs `include` (`None`: `include` fails).
    pub include: Option<&'a dyn Include>,
}

/// The engine side of `include`: rendering another template of the templates directory. The
/// engines resolve the name and check the include chain with the rules in `include.rs`.
pub trait Include: fmt::Debug {
    /// Renders the template `name` with `data` (Go: dot; Jinja: the variables of a map).
    fn include(&self, name: &str, data: Option<&Val>) -> Result<String, FuncError>;
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
    pub(crate) fn new(func: &'static str, message: impl fmt::Display) -> Self {
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
    /// Which argument the input of a Jinja filter becomes (`x | f(a)`).
    pub filter_input: FilterInput,
}

/// Where a Jinja filter puts its input among the function's arguments. Go pipelines always pass
/// the value last, and the functions abtreece/confd added are written for that (`.x | default
/// "d"` is `default "d" .x`); confd's older functions take their subject first (`trimSuffix s
/// suffix`). A Jinja filter's input is the subject either way: `x | default("d")`,
/// `x | trimSuffix(".com")`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterInput {
    /// The first argument.
    First,
    /// The argument at this index (`regexReplaceAll(pattern, s, repl)`: 1).
    At(usize),
    /// The last argument.
    Last,
}

impl FilterInput {
    /// The full argument list of a filter call: `input` placed among `args`.
    pub fn place<T: Clone>(self, input: T, args: &[T]) -> Vec<T> {
        let at = match self {
            FilterInput::First => 0,
            FilterInput::At(i) => i.min(args.len()),
            FilterInput::Last => args.len(),
        };
        let mut all = Vec::with_capacity(args.len() + 1);
        all.extend_from_slice(&args[..at]);
        all.push(input);
        all.extend_from_slice(&args[at..]);
        all
    }
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

    fn bool(&self, i: usize) -> Result<bool, FuncError> {
        match &self.args[i] {
            Val::Bool(b) => Ok(*b),
            _ => Err(self.bad(i, "a bool")),
        }
    }

    fn map(&self, i: usize) -> Result<&std::collections::BTreeMap<String, Val>, FuncError> {
        match &self.args[i] {
            Val::Map(m) => Ok(m),
            _ => Err(self.bad(i, "a map")),
        }
    }

    fn regex(&self, i: usize) -> Result<regex::Regex, FuncError> {
        crate::goregex::compile(self.str(i)?).map_err(|e| self.err(e))
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

/// A value for an error message: strings quoted, anything else as Go prints it.
pub(crate) fn quote_val(v: &Val) -> String {
    match v {
        Val::Str(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

macro_rules! f {
    ($name:literal, $min:expr, $max:expr, $imp:expr) => {
        f!($name, $min, $max, $imp, FilterInput::First)
    };
    ($name:literal, $min:expr, $max:expr, $imp:expr, $input:expr) => {
        Function {
            name: $name,
            min_args: $min,
            max_args: $max,
            imp: $imp,
            filter_input: $input,
        }
    };
}

static FUNCTIONS: &[Function] = &[
    // store functions
    f!("exists", 1, Some(1), |a| Ok(Val::Bool(
        a.store().exists(a.str(0)?)
    ))),
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
    // Go's `getv(key string, v ...string)`: any number of defaults, the first one is used.
    f!("getv", 1, None, |a| {
        for i in 2..a.args.len() {
            a.str(i)?;
        }
        a.store()
            .getv(a.str(0)?, a.opt_str(1)?)
            .map(Val::Str)
            .map_err(|e| a.store_err(e))
    }),
    f!("getvs", 1, Some(1), |a| a
        .store()
        .getvs(a.str(0)?)
        .map(Val::from)
        .map_err(|e| a.store_err(e))),
    f!("ls", 1, Some(1), |a| Ok(Val::from(a.store().ls(a.str(0)?)))),
    f!("lsdir", 1, Some(1), |a| Ok(Val::from(
        a.store().lsdir(a.str(0)?)
    ))),
    // paths and strings
    f!("base", 1, Some(1), |a| Ok(Val::Str(confd_keys::base(
        a.str(0)?
    )))),
    f!("dir", 1, Some(1), |a| Ok(Val::Str(confd_keys::dir(
        a.str(0)?
    )))),
    f!("split", 2, Some(2), |a| Ok(Val::from(go_split(
        a.str(0)?,
        a.str(1)?
    )))),
    f!("join", 2, Some(2), join),
    f!("toUpper", 1, Some(1), |a| Ok(Val::Str(go_to_upper(
        a.str(0)?
    )))),
    f!("toLower", 1, Some(1), |a| Ok(Val::Str(go_to_lower(
        a.str(0)?
    )))),
    f!("contains", 2, Some(2), |a| Ok(Val::Bool(
        a.str(0)?.contains(a.str(1)?)
    ))),
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
    f!("map", 0, None, make_map),
    f!("getenv", 1, Some(2), |a| {
        let default = a.opt_str(1)?.unwrap_or("");
        match std::env::var(a.str(0)?) {
            Ok(v) if !v.is_empty() => Ok(Val::Str(v)),
            _ => Ok(Val::Str(default.to_string())),
        }
    }),
    f!("datetime", 0, Some(0), |_| Ok(Val::Time(DateTime::now()))),
    // network and files
    f!("lookupIP", 1, Some(1), |a| Ok(Val::from(lookup_ip(
        a.str(0)?
    )))),
    f!("lookupIPV4", 1, Some(1), |a| {
        let ips = lookup_ip(a.str(0)?)
            .into_iter()
            .filter(|ip| ip.contains('.'));
        Ok(Val::from(ips.collect::<Vec<_>>()))
    }),
    f!("lookupIPV6", 1, Some(1), |a| {
        let ips = lookup_ip(a.str(0)?)
            .into_iter()
            .filter(|ip| ip.contains(':'));
        Ok(Val::from(ips.collect::<Vec<_>>()))
    }),
    f!("lookupSRV", 3, Some(3), |a| {
        let mut records = lookup_srv(a.str(0)?, a.str(1)?, a.str(2)?);
        records.sort_by_cached_key(|s| format!("{}{}{}{}", s.target, s.port, s.priority, s.weight));
        Ok(Val::List(records.into_iter().map(Val::Srv).collect()))
    }),
    f!("fileExists", 1, Some(1), |a| Ok(Val::Bool(
        std::fs::metadata(a.str(0)?).is_ok()
    ))),
    f!("base64Encode", 1, Some(1), |a| Ok(Val::Str(
        base64::engine::general_purpose::STANDARD.encode(a.str(0)?)
    ))),
    f!("base64Decode", 1, Some(1), |a| {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(a.str(0)?)
            .map_err(|e| {
                a.err(format!(
                    "invalid base64 input {:?}: {e}",
                    a.args[0].to_string()
                ))
            })?;
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
        parse_go_int(s)
            .map(Val::Int)
            .map_err(|why| a.err(format!("strconv.Atoi: parsing {s:?}: {why}")))
    }),
    f!("add", 2, Some(2), |a| Ok(Val::Int(
        a.int(0)?.wrapping_add(a.int(1)?)
    ))),
    f!("sub", 2, Some(2), |a| Ok(Val::Int(
        a.int(0)?.wrapping_sub(a.int(1)?)
    ))),
    f!("mul", 2, Some(2), |a| Ok(Val::Int(
        a.int(0)?.wrapping_mul(a.int(1)?)
    ))),
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
    // abtreece/confd's additions: conditionals and defaults
    f!(
        "default",
        2,
        Some(2),
        |a| Ok(if extra::is_empty(&a.args[1]) {
            a.args[0].clone()
        } else {
            a.args[1].clone()
        }),
        FilterInput::Last
    ),
    f!(
        "ternary",
        3,
        Some(3),
        |a| Ok(if a.bool(2)? {
            a.args[0].clone()
        } else {
            a.args[1].clone()
        }),
        FilterInput::Last
    ),
    f!("coalesce", 0, None, |a| Ok(a
        .args
        .iter()
        .find(|v| !extra::is_empty(v))
        .cloned()
        .unwrap_or(Val::Nil))),
    f!("empty", 1, Some(1), |a| Ok(Val::Bool(extra::is_empty(
        &a.args[0]
    )))),
    // JSON
    f!("toJson", 1, Some(1), |a| crate::gojson::marshal(
        &a.args[0], false
    )
    .map(Val::Str)
    .map_err(|e| a.err(e))),
    f!("toPrettyJson", 1, Some(1), |a| crate::gojson::marshal(
        &a.args[0], true
    )
    .map(Val::Str)
    .map_err(|e| a.err(e))),
    f!("fromJson", 1, Some(1), |a| {
        let s = a.str(0)?;
        serde_json::from_str(s)
            .map(Val::from_json)
            .map_err(|e| a.err(format!("cannot decode {s:?} as JSON: {e}")))
    }),
    // formatting
    f!(
        "indent",
        2,
        Some(2),
        |a| Ok(Val::Str(extra::indent(a.int(0)?, a.str(1)?))),
        FilterInput::Last
    ),
    f!(
        "nindent",
        2,
        Some(2),
        |a| Ok(Val::Str(format!(
            "\n{}",
            extra::indent(a.int(0)?, a.str(1)?)
        ))),
        FilterInput::Last
    ),
    f!("quote", 1, Some(1), |a| Ok(Val::Str(crate::gofmt::quote(
        a.str(0)?,
        false
    )))),
    f!("squote", 1, Some(1), |a| Ok(Val::Str(extra::squote(
        a.str(0)?
    )))),
    // regular expressions (Go RE2 syntax)
    f!(
        "regexMatch",
        2,
        Some(2),
        |a| {
            let re = a.regex(0)?;
            Ok(Val::Bool(re.is_match(a.str(1)?)))
        },
        FilterInput::Last
    ),
    f!(
        "regexFind",
        2,
        Some(2),
        |a| {
            let re = a.regex(0)?;
            let s = a.str(1)?;
            Ok(Val::Str(
                re.find(s)
                    .map_or_else(String::new, |m| m.as_str().to_string()),
            ))
        },
        FilterInput::Last
    ),
    f!(
        "regexReplaceAll",
        3,
        Some(3),
        |a| {
            let re = a.regex(0)?;
            Ok(Val::Str(crate::goregex::replace_all(
                &re,
                a.str(1)?,
                a.str(2)?,
            )))
        },
        FilterInput::At(1)
    ),
    // strings
    f!("trimPrefix", 2, Some(2), |a| {
        let s = a.str(0)?;
        Ok(Val::Str(s.strip_prefix(a.str(1)?).unwrap_or(s).to_string()))
    }),
    f!(
        "repeat",
        2,
        Some(2),
        |a| {
            let (n, s) = (a.int(0)?, a.str(1)?);
            let n = usize::try_from(n).unwrap_or(0);
            if s.len().saturating_mul(n) > extra::MAX_REPEAT_BYTES {
                return Err(a.err(format!(
                    "{n} × {} bytes is more than {} MiB",
                    s.len(),
                    extra::MAX_REPEAT_BYTES >> 20
                )));
            }
            Ok(Val::Str(s.repeat(n)))
        },
        FilterInput::Last
    ),
    f!("nospace", 1, Some(1), |a| Ok(Val::Str(
        a.str(0)?.chars().filter(|c| !c.is_whitespace()).collect()
    ))),
    f!("snakecase", 1, Some(1), |a| Ok(Val::Str(extra::snakecase(
        a.str(0)?
    )))),
    f!("camelcase", 1, Some(1), |a| Ok(Val::Str(extra::camelcase(
        a.str(0)?
    )))),
    f!("kebabcase", 1, Some(1), |a| Ok(Val::Str(extra::kebabcase(
        a.str(0)?
    )))),
    // collections
    f!("dict", 0, None, make_map),
    f!("list", 0, None, |a| Ok(Val::List(a.args.to_vec()))),
    f!("hasKey", 2, Some(2), |a| {
        let m = a.map(0)?;
        Ok(Val::Bool(m.contains_key(a.str(1)?)))
    }),
    f!("keys", 1, Some(1), |a| Ok(Val::from(
        a.map(0)?.keys().cloned().collect::<Vec<_>>()
    ))),
    f!("values", 1, Some(1), |a| Ok(Val::List(
        a.map(0)?.values().cloned().collect()
    ))),
    f!("append", 2, Some(2), |a| {
        let mut l = a.list(0)?.to_vec();
        l.push(a.args[1].clone());
        Ok(Val::List(l))
    }),
    f!(
        "pluck",
        1,
        None,
        |a| {
            let key = a.str(0)?;
            let mut found = Vec::new();
            for i in 1..a.args.len() {
                if let Some(v) = a.map(i)?.get(key) {
                    found.push(v.clone());
                }
            }
            Ok(Val::List(found))
        },
        FilterInput::Last
    ),
    // hashing, the machine, other templates
    f!("sha256sum", 1, Some(1), |a| Ok(Val::Str(extra::sha256sum(
        a.str(0)?
    )))),
    f!("hostname", 0, Some(0), |a| extra::hostname()
        .map(Val::Str)
        .map_err(|e| a.err(e))),
    f!("lookupIfaceIPV4", 1, Some(1), |a| Ok(Val::Str(
        extra::interface_address(a.str(0)?, true)
    ))),
    f!("lookupIfaceIPV6", 1, Some(1), |a| Ok(Val::Str(
        extra::interface_address(a.str(0)?, false)
    ))),
    // Go's `include(name string, data ...interface{})`: the first data argument is the data.
    f!("include", 1, None, |a| {
        let name = a.str(0)?;
        let Some(engine) = a.ctx.include else {
            return Err(a.err("templates can only be included while rendering"));
        };
        engine.include(name, a.args.get(1)).map(Val::Str)
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

/// Go `net.LookupSRV(service, proto, name)`: queries `_service._proto.name` (or `name` when both
/// are empty). A failed lookup gives no records, as in confd.
fn lookup_srv(service: &str, proto: &str, name: &str) -> Vec<Srv> {
    let record = if service.is_empty() && proto.is_empty() {
        name.to_string()
    } else {
        format!("_{service}._{proto}.{name}")
    };
    confd_dns::lookup_srv_blocking(&record)
        .map(|targets| {
            targets
                .into_iter()
                .map(|t| Srv {
                    target: t.host,
                    port: t.port,
                    priority: t.priority,
                    weight: t.weight,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `map` and `dict`: keys and values alternate.
fn make_map(a: &Args<'_>) -> Result<Val, FuncError> {
    if !a.args.len().is_multiple_of(2) {
        return Err(a.err(format!(
            "invalid {} call: keys and values must alternate, got {} arguments",
            a.func,
            a.args.len()
        )));
    }
    let mut m = std::collections::BTreeMap::new();
    for (i, pair) in a.args.chunks(2).enumerate() {
        let Val::Str(k) = &pair[0] else {
            return Err(a.err(format!(
                "{} keys must be strings (argument {} is {})",
                a.func,
                2 * i + 1,
                pair[0].type_name()
            )));
        };
        m.insert(k.clone(), pair[1].clone());
    }
    Ok(Val::Map(m))
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
pub(crate) fn go_to_upper(s: &str) -> String {
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
pub(crate) fn go_to_lower(s: &str) -> String {
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
    let v: serde_json::Value = serde_json::from_str(s)
        .map_err(|e| a.err(format!("cannot decode {s:?} as JSON into {go_type}: {e}")))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        [
            ("/app/name", "web"),
            ("/app/port", "8080"),
            ("/up/b", "10.0.0.1"),
            ("/up/a", "10.0.0.2"),
            ("/up/c/x", "deep"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn call(name: &str, args: &[Val]) -> Result<Val, FuncError> {
        let s = store();
        let f = function(name).unwrap_or_else(|| panic!("no function {name}"));
        f.call(
            &FuncContext {
                store: &s,
                include: None,
            },
            args,
        )
    }

    fn ok(name: &str, args: &[Val]) -> Val {
        call(name, args).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn err(name: &str, args: &[Val]) -> String {
        match call(name, args) {
            Ok(v) => panic!("{name} should fail, gave {v}"),
            Err(e) => e.to_string(),
        }
    }

    fn s(x: &str) -> Val {
        Val::from(x)
    }

    fn strs(items: &[&str]) -> Val {
        Val::List(items.iter().map(|x| s(x)).collect())
    }

    fn ints(items: &[i64]) -> Val {
        Val::List(items.iter().map(|i| Val::Int(*i)).collect())
    }

    #[test]
    fn table_has_every_confd_function_once() {
        let want = [
            "exists",
            "get",
            "gets",
            "getv",
            "getvs",
            "ls",
            "lsdir",
            "base",
            "split",
            "join",
            "json",
            "jsonArray",
            "dir",
            "map",
            "getenv",
            "datetime",
            "toUpper",
            "toLower",
            "contains",
            "replace",
            "trimSuffix",
            "lookupIP",
            "lookupIPV4",
            "lookupIPV6",
            "lookupSRV",
            "fileExists",
            "base64Encode",
            "base64Decode",
            "parseBool",
            "reverse",
            "sortByLength",
            "sortKVByLength",
            "seq",
            "atoi",
            "add",
            "sub",
            "mul",
            "div",
            "mod",
            "default",
            "ternary",
            "coalesce",
            "empty",
            "toJson",
            "toPrettyJson",
            "fromJson",
            "indent",
            "nindent",
            "quote",
            "squote",
            "regexMatch",
            "regexFind",
            "regexReplaceAll",
            "trimPrefix",
            "repeat",
            "nospace",
            "snakecase",
            "camelcase",
            "kebabcase",
            "dict",
            "list",
            "hasKey",
            "keys",
            "values",
            "append",
            "pluck",
            "sha256sum",
            "hostname",
            "lookupIfaceIPV4",
            "lookupIfaceIPV6",
            "include",
        ];
        let mut names: Vec<&str> = functions().iter().map(|f| f.name).collect();
        names.sort_unstable();
        let mut sorted = want.to_vec();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
    }

    #[test]
    fn filter_input_goes_where_the_subject_is() {
        assert_eq!(FilterInput::First.place(0, &[1, 2]), [0, 1, 2]);
        assert_eq!(FilterInput::At(1).place(0, &[1, 2]), [1, 0, 2]);
        assert_eq!(FilterInput::At(5).place(0, &[1]), [1, 0]);
        assert_eq!(FilterInput::Last.place(0, &[1, 2]), [1, 2, 0]);
        let input = |name: &str| function(name).map(|f| f.filter_input);
        assert_eq!(input("trimSuffix"), Some(FilterInput::First));
        assert_eq!(input("default"), Some(FilterInput::Last));
        assert_eq!(input("regexReplaceAll"), Some(FilterInput::At(1)));
    }

    #[test]
    fn include_needs_an_engine() {
        assert_eq!(
            err("include", &[s("a.tmpl")]),
            "include: templates can only be included while rendering"
        );
        assert_eq!(
            err("include", &[Val::Int(1)]),
            "include: argument 1 must be a string, got int 1"
        );
    }

    #[test]
    fn arity_is_checked() {
        assert_eq!(
            err("getv", &[]),
            "getv: wrong number of arguments: want at least 1, got 0"
        );
        assert_eq!(
            err("add", &[Val::Int(1)]),
            "add: wrong number of arguments: want 2, got 1"
        );
        assert_eq!(
            err("datetime", &[s("x")]),
            "datetime: wrong number of arguments: want 0, got 1"
        );
    }

    #[test]
    fn store_functions() {
        assert_eq!(ok("exists", &[s("/app/name")]), Val::Bool(true));
        assert_eq!(ok("exists", &[s("/app")]), Val::Bool(false));
        assert_eq!(ok("get", &[s("/app/name")]), pair("/app/name", "web"));
        let e = call("get", &[s("/nope")]).expect_err("missing");
        assert_eq!(e.to_string(), "get: key does not exist: /nope");
        assert_eq!(e.missing_key.as_deref(), Some("/nope"));
        assert_eq!(
            ok("gets", &[s("/up/*")]),
            Val::List(vec![pair("/up/a", "10.0.0.2"), pair("/up/b", "10.0.0.1")])
        );
        assert_eq!(
            err("gets", &[s("/up/[")]),
            "gets: syntax error in pattern: /up/["
        );
        assert_eq!(ok("getv", &[s("/app/port")]), s("8080"));
        assert_eq!(ok("getv", &[s("/nope"), s("d")]), s("d"));
        // Go's variadic default: the first one counts, the rest are ignored (but typed).
        assert_eq!(ok("getv", &[s("/nope"), s("a"), s("b")]), s("a"));
        assert_eq!(ok("getv", &[s("/app/port"), s("a"), s("b")]), s("8080"));
        assert_eq!(
            err("getv", &[s("/nope"), s("a"), Val::Int(1)]),
            "getv: argument 3 must be a string, got int 1"
        );
        let e = call("getv", &[s("/nope")]).expect_err("missing");
        assert_eq!(e.missing_key.as_deref(), Some("/nope"));
        assert_eq!(
            err("getv", &[Val::Int(1)]),
            "getv: argument 1 must be a string, got int 1"
        );
        assert_eq!(ok("getvs", &[s("/up/*")]), strs(&["10.0.0.1", "10.0.0.2"]));
        assert_eq!(err("getvs", &[s("[")]), "getvs: syntax error in pattern: [");
        assert_eq!(ok("ls", &[s("/up")]), strs(&["a", "b", "c"]));
        assert_eq!(ok("lsdir", &[s("/up")]), strs(&["c"]));
        assert_eq!(ok("ls", &[s("/")]), strs(&["app", "up"]));
    }

    #[test]
    fn path_and_string_functions() {
        assert_eq!(ok("base", &[s("/a/b.conf")]), s("b.conf"));
        assert_eq!(ok("dir", &[s("/a/b.conf")]), s("/a"));
        assert_eq!(
            ok("split", &[s("a,b,,c"), s(",")]),
            strs(&["a", "b", "", "c"])
        );
        assert_eq!(ok("split", &[s(""), s(",")]), strs(&[""]));
        assert_eq!(ok("split", &[s("hé"), s("")]), strs(&["h", "é"]));
        assert_eq!(ok("join", &[strs(&["a", "b"]), s("-")]), s("a-b"));
        assert_eq!(
            err("join", &[ints(&[1]), s("-")]),
            "join: argument 1 must be a list of strings, item 0 is int"
        );
        assert_eq!(
            err("join", &[s("ab"), s("-")]),
            "join: argument 1 must be a list, got string \"ab\""
        );
        assert_eq!(ok("toUpper", &[s("straße ﬁx")]), s("STRAßE ﬁX"));
        assert_eq!(ok("toLower", &[s("ΣΑΣ İ")]), s("σασ i"));
        assert_eq!(ok("contains", &[s("abc"), s("b")]), Val::Bool(true));
        assert_eq!(ok("contains", &[s("abc"), s("")]), Val::Bool(true));
        assert_eq!(ok("contains", &[s("abc"), s("B")]), Val::Bool(false));
        let r = |a: &str, b: &str, c: &str, n: i64| ok("replace", &[s(a), s(b), s(c), Val::Int(n)]);
        assert_eq!(r("aaaa", "a", "b", -1), s("bbbb"));
        assert_eq!(r("aaaa", "a", "b", 2), s("bbaa"));
        assert_eq!(r("aaaa", "a", "b", 0), s("aaaa"));
        assert_eq!(r("abc", "", "-", -1), s("-a-b-c-"));
        assert_eq!(r("abc", "", "-", 2), s("-a-bc"));
        assert_eq!(r("", "", "-", -1), s("-"));
        assert_eq!(
            err("replace", &[s("a"), s("a"), s("b"), s("x")]),
            "replace: argument 4 must be an integer, got string \"x\""
        );
        assert_eq!(
            ok("trimSuffix", &[s("a.conf.conf"), s(".conf")]),
            s("a.conf")
        );
        assert_eq!(ok("trimSuffix", &[s("abc"), s("zz")]), s("abc"));
    }

    #[test]
    fn json_functions() {
        let m = ok("json", &[s(r#"{"port": 8080, "tags": ["a"], "n": null}"#)]);
        assert_eq!(m.to_string(), "map[n:<nil> port:8080 tags:[a]]");
        assert_eq!(m.field("port"), Some(Val::Float(8080.0)));
        assert_eq!(ok("json", &[s("null")]), Val::Map(Default::default()));
        assert_eq!(
            err("json", &[s("[1]")]),
            "json: json: cannot unmarshal array into Go value of type map[string]interface {}"
        );
        assert!(err("json", &[s("{")]).starts_with("json: cannot decode \"{\" as JSON"));
        assert_eq!(ok("jsonArray", &[s("[1, \"x\"]")]).to_string(), "[1 x]");
        assert_eq!(
            err("jsonArray", &[s("{}")]),
            "jsonArray: json: cannot unmarshal object into Go value of type []interface {}"
        );
    }

    #[test]
    fn map_function() {
        let m = ok("map", &[s("b"), Val::Int(1), s("a"), Val::Bool(true)]);
        assert_eq!(m.to_string(), "map[a:true b:1]");
        assert_eq!(ok("map", &[]), Val::Map(Default::default()));
        assert_eq!(
            err("map", &[s("a")]),
            "map: invalid map call: keys and values must alternate, got 1 arguments"
        );
        assert_eq!(
            err("map", &[Val::Int(1), s("a")]),
            "map: map keys must be strings (argument 1 is int)"
        );
    }

    #[test]
    fn getenv_uses_default_for_unset() {
        // Only variables that are certainly unset: tests must not change the environment.
        assert_eq!(ok("getenv", &[s("CONFD_TEMPLATE_SURELY_UNSET_VAR")]), s(""));
        assert_eq!(
            ok("getenv", &[s("CONFD_TEMPLATE_SURELY_UNSET_VAR"), s("d")]),
            s("d")
        );
        let path = std::env::var("PATH").unwrap_or_default();
        if !path.is_empty() {
            assert_eq!(ok("getenv", &[s("PATH"), s("d")]), s(&path));
        }
    }

    #[test]
    fn datetime_is_now() {
        let Val::Time(t) = ok("datetime", &[]) else {
            panic!("datetime gives a time");
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after epoch")
            .as_secs() as i64;
        assert!((t.unix - now).abs() <= 2);
    }

    #[test]
    fn lookups_and_files() {
        let ips = ok("lookupIP", &[s("localhost")]);
        let Val::List(ips) = ips else { panic!("list") };
        assert!(
            ips.iter()
                .any(|ip| *ip == s("127.0.0.1") || *ip == s("::1")),
            "{ips:?}"
        );
        assert_eq!(
            ok("lookupIP", &[s("no-such-host.invalid")]),
            Val::List(vec![])
        );
        assert_eq!(ok("lookupIPV4", &[s("127.0.0.1")]), strs(&["127.0.0.1"]));
        assert_eq!(ok("lookupIPV6", &[s("127.0.0.1")]), strs(&[]));
        assert_eq!(ok("lookupIPV6", &[s("::1")]), strs(&["::1"]));
        assert_eq!(
            ok("lookupSRV", &[s("http"), s("tcp"), s("bad..name")]),
            Val::List(vec![])
        );
        let dir = env!("CARGO_MANIFEST_DIR");
        assert_eq!(ok("fileExists", &[s(dir)]), Val::Bool(true));
        assert_eq!(
            ok("fileExists", &[s(&format!("{dir}/no-such-file"))]),
            Val::Bool(false)
        );
    }

    #[test]
    fn base64_and_parse_bool() {
        assert_eq!(ok("base64Encode", &[s("héllo")]), s("aMOpbGxv"));
        assert_eq!(
            ok("base64Decode", &[s("Y29uZmQ6czNjcjN0")]),
            s("confd:s3cr3t")
        );
        assert!(
            err("base64Decode", &[s("not*base64")]).starts_with("base64Decode: invalid base64")
        );
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(ok("parseBool", &[s(t)]), Val::Bool(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(ok("parseBool", &[s(f)]), Val::Bool(false), "{f}");
        }
        assert_eq!(
            err("parseBool", &[s("yes")]),
            "parseBool: strconv.ParseBool: parsing \"yes\": invalid syntax"
        );
    }

    #[test]
    fn list_functions() {
        let input = strs(&["a", "b", "c"]);
        assert_eq!(
            ok("reverse", std::slice::from_ref(&input)),
            strs(&["c", "b", "a"])
        );
        assert_eq!(input, strs(&["a", "b", "c"]), "reverse returns a copy");
        assert_eq!(ok("reverse", &[s("abc")]), s("abc"));
        assert_eq!(
            ok("sortByLength", &[strs(&["ccc", "a", "bb", "d"])]),
            strs(&["a", "d", "bb", "ccc"])
        );
        assert_eq!(
            err("sortByLength", &[ints(&[1])]),
            "sortByLength: argument 1 must be a list of strings, item 0 is int"
        );
        assert_eq!(
            ok(
                "sortKVByLength",
                &[Val::List(vec![pair("/long", "1"), pair("/a", "2")])]
            ),
            Val::List(vec![pair("/a", "2"), pair("/long", "1")])
        );
        assert_eq!(
            err("sortKVByLength", &[strs(&["x"])]),
            "sortKVByLength: argument 1 must be a list of key/value pairs, item 0 is string"
        );
        assert_eq!(ok("seq", &[Val::Int(1), Val::Int(3)]), ints(&[1, 2, 3]));
        assert_eq!(ok("seq", &[Val::Int(3), Val::Int(3)]), ints(&[3]));
        assert_eq!(ok("seq", &[Val::Int(3), Val::Int(1)]), ints(&[]));
        assert!(err("seq", &[Val::Int(0), Val::Int(i64::MAX)]).contains("too long"));
    }

    #[test]
    fn number_functions() {
        assert_eq!(ok("atoi", &[s("+5")]), Val::Int(5));
        assert_eq!(ok("atoi", &[s("-007")]), Val::Int(-7));
        assert_eq!(
            err("atoi", &[s("80a")]),
            "atoi: strconv.Atoi: parsing \"80a\": invalid syntax"
        );
        assert_eq!(
            err("atoi", &[s("")]),
            "atoi: strconv.Atoi: parsing \"\": invalid syntax"
        );
        assert_eq!(
            err("atoi", &[s("99999999999999999999")]),
            "atoi: strconv.Atoi: parsing \"99999999999999999999\": value out of range"
        );
        let two = |name: &str, a: i64, b: i64| ok(name, &[Val::Int(a), Val::Int(b)]);
        assert_eq!(two("add", 2, 3), Val::Int(5));
        assert_eq!(two("add", i64::MAX, 1), Val::Int(i64::MIN), "wraps like Go");
        assert_eq!(two("sub", 2, 5), Val::Int(-3));
        assert_eq!(two("mul", -7, 3), Val::Int(-21));
        assert_eq!(two("div", 20, 4), Val::Int(5));
        assert_eq!(two("div", -7, 2), Val::Int(-3));
        assert_eq!(two("mod", -7, 3), Val::Int(-1));
        assert_eq!(two("mod", 7, -3), Val::Int(1));
        assert_eq!(
            err("div", &[Val::Int(1), Val::Int(0)]),
            "div: division by zero (1 / 0)"
        );
        assert_eq!(
            err("mod", &[Val::Int(1), Val::Int(0)]),
            "mod: modulo by zero (1 % 0)"
        );
        // JSON numbers are floats; whole ones work as integers.
        assert_eq!(ok("add", &[Val::Float(2.0), Val::Int(1)]), Val::Int(3));
        assert_eq!(
            err("add", &[Val::Float(2.5), Val::Int(1)]),
            "add: argument 1 must be an integer, got float 2.5"
        );
        assert_eq!(
            err("add", &[s("1"), Val::Int(1)]),
            "add: argument 1 must be an integer, got string \"1\""
        );
    }
}
