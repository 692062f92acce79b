//! The Jinja engine (minijinja): loads templates from the templates directory, configures Jinja
//! for config files (strict undefined, no auto-escaping, `true`/`false`, final newline kept) and
//! registers every function of the shared confd table through one generic adapter, so a Jinja
//! template and a Go template call the very same implementations.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Enumerator, Kwargs, Object, ObjectRepr, Rest, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State, UndefinedBehavior, Value};

use crate::funcs::{FuncContext, FuncError, Function, Include, functions};
use crate::store::Store;
use crate::value::Val;
use crate::{TemplateError, TemplateOptions};

/// The global through which the function adapter finds the store of the current render. Globals
/// are visible from every template of a render (includes, imported macros), unlike context
/// variables, and each render gets its own copy of the environment, so renders never share it.
const STORE_GLOBAL: &str = "__confd_store";

/// The variable through which a template rendered by the `include` function knows the include
/// chain above it (a list of template names, the outermost first).
const CHAIN_VAR: &str = "__confd_includes";

/// Builtin Jinja filters whose names clash with confd functions. Jinja users know these filters
/// (`items|join(",")`, `s|replace("a", "b")`, `xs|map(attribute="x")`), so they keep their
/// Jinja meaning as filters; the confd functions of the same names are still callable as
/// functions (`join(xs, ",")`). A test checks this list against minijinja's builtins.
const JINJA_FILTERS_KEPT: &[&str] = &[
    "default", "indent", "join", "list", "map", "replace", "reverse", "split",
];

/// A loaded Jinja template: an environment holding the compiled template, ready to render many
/// times.
pub(crate) struct JinjaTemplate {
    env: Environment<'static>,
    name: String,
    /// The templates directory (canonical), where the `include` function looks.
    root: Arc<Path>,
}

impl fmt::Debug for JinjaTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JinjaTemplate")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Loads `<templates_dir>/<src>` and compiles it, so syntax errors surface at load time with the
/// template name and line. Templates it includes, imports or extends are loaded from the same
/// directory when rendering.
pub(crate) fn load(
    templates_dir: &Path,
    src: &str,
    opts: &TemplateOptions,
) -> Result<JinjaTemplate, TemplateError> {
    let name = normalize_name(src).ok_or_else(|| {
        TemplateError::load(
            src,
            None,
            "the template path leaves the templates directory",
        )
    })?;
    let root = templates_dir.canonicalize().map_err(|e| {
        TemplateError::load(
            &name,
            None,
            format!(
                "cannot open templates directory {}: {e}",
                templates_dir.display()
            ),
        )
    })?;
    let env = environment(root.clone(), opts).map_err(|e| convert_error(&e, &name, Phase::Load))?;
    if let Err(e) = env.get_template(&name) {
        return Err(convert_error(&e, &name, Phase::Load));
    }
    Ok(JinjaTemplate {
        env,
        name,
        root: Arc::from(root),
    })
}

impl JinjaTemplate {
    /// Renders with `store` behind the store functions.
    pub(crate) fn render(&self, store: &Store) -> Result<String, TemplateError> {
        let mut env = self.env.clone();
        env.add_global(
            STORE_GLOBAL,
            Value::from_object(StoreHandle {
                store: store.clone(),
                root: Arc::clone(&self.root),
            }),
        );
        let tmpl = env
            .get_template(&self.name)
            .map_err(|e| convert_error(&e, &self.name, Phase::Render))?;
        tmpl.render(())
            .map_err(|e| convert_error(&e, &self.name, Phase::Render))
    }
}

/// Builds the environment every Jinja template of confd renders in: a clone of the shared base
/// for `opts`, with a loader for `root`.
fn environment(root: PathBuf, opts: &TemplateOptions) -> Result<Environment<'static>, Error> {
    let mut env = base_environment(opts)?;
    env.set_loader(loader(root));
    Ok(env)
}

/// The part of the environment that does not depend on the templates directory, built once per
/// set of options. minijinja keeps filters, tests and globals behind reference counts, so every
/// template's environment cloned from the base shares the ~170 registrations instead of holding
/// its own (a confdir of hundreds of Jinja templates spent megabytes on them).
fn base_environment(opts: &TemplateOptions) -> Result<Environment<'static>, Error> {
    type Bases = Vec<((bool, bool), Environment<'static>)>;
    static BASES: Mutex<Bases> = Mutex::new(Vec::new());
    let key = (opts.trim_blocks, opts.lstrip_blocks);
    // A panic while holding the lock cannot leave a half-built entry: entries are pushed whole.
    let mut bases = BASES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, env)) = bases.iter().find(|(k, _)| *k == key) {
        return Ok(env.clone());
    }
    let env = build_base_environment(opts)?;
    bases.push((key, env.clone()));
    Ok(env)
}

fn build_base_environment(opts: &TemplateOptions) -> Result<Environment<'static>, Error> {
    let mut env = Environment::new();
    env.set_syntax(
        SyntaxConfig::builder()
            .trim_blocks(opts.trim_blocks)
            .lstrip_blocks(opts.lstrip_blocks)
            // Config files end with a newline; Jinja would drop the template's last one.
            .keep_trailing_newline(true)
            .build()?,
    );
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // minijinja escapes `.html`/`.xml` for HTML and `.json`/`.yaml` for JSON by default: a
    // `config.yaml.j2` would print `"value"` with quotes. Config files want values verbatim.
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_formatter(|out, _state, value| {
        if let Some(s) = value.as_str() {
            return out.write_str(s).map_err(Error::from);
        }
        out.write_str(&config_string(value)?).map_err(Error::from)
    });
    // The main template is compiled once per load (a changed file is picked up by loading the
    // resource again); included ones are read by each render.
    env.set_auto_reload(false);
    env.set_path_join_callback(join_path);
    // `|string` would print Python's `True`; keep it consistent with `{{ value }}`.
    env.add_filter("string", |value: Value| config_string(&value));
    for f in functions() {
        if f.name == "dict" {
            // Jinja's own `dict(a=1)` and `dict(m, a=1)` keep working beside confd's pairs.
            env.add_function(
                f.name,
                move |state: &State, args: Rest<Value>, kwargs: Kwargs| {
                    call_dict(f, state, &args, kwargs)
                },
            );
        } else {
            env.add_function(f.name, move |state: &State, args: Rest<Value>| {
                call_confd(f, state, &args)
            });
        }
        // A filter's input is the function's subject (`FilterInput`): `getv("/a") | toUpper`
        // is `toUpper(getv("/a"))`, `x | ternary("a", "b")` is `ternary("a", "b", x)`. A
        // function without arguments makes no filter.
        if f.max_args != Some(0) && !JINJA_FILTERS_KEPT.contains(&f.name) {
            env.add_filter(
                f.name,
                move |state: &State, input: Value, args: Rest<Value>| {
                    call_confd(f, state, &f.filter_input.place(input, &args))
                },
            );
        }
    }
    Ok(env)
}

/// The one adapter between minijinja and the shared function table.
fn call_confd(f: &'static Function, state: &State, args: &[Value]) -> Result<Value, Error> {
    let handle = state.lookup(STORE_GLOBAL).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidOperation,
            "confd functions are only available while rendering",
        )
    })?;
    let Some(handle) = handle.downcast_object_ref::<StoreHandle>() else {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("{STORE_GLOBAL} is reserved for confd"),
        ));
    };
    let args: Vec<Val> = args.iter().map(to_val).collect();
    let include = JinjaInclude { state, handle };
    let ctx = FuncContext {
        store: &handle.store,
        include: Some(&include),
    };
    match f.call(&ctx, &args) {
        Ok(v) => Ok(from_val(v)),
        Err(e) => Err(Error::new(ErrorKind::InvalidOperation, e.to_string()).with_source(e)),
    }
}

/// `dict`: confd's alternating keys and values, Jinja's keyword arguments, or both; a single
/// map argument is Jinja's `dict(m, a=1)` (a copy of `m` with the keywords added).
fn call_dict(
    f: &'static Function,
    state: &State,
    args: &[Value],
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let base = match args {
        [m] if m.kind() == ValueKind::Map => to_val(m),
        _ => to_val(&call_confd(f, state, args)?),
    };
    let mut map = match base {
        Val::Map(m) => m,
        other => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!(
                    "dict: a single argument must be a map, got {} {}",
                    other.type_name(),
                    crate::funcs::quote_val(&other)
                ),
            ));
        }
    };
    for key in kwargs.args() {
        let value: Value = kwargs.get(key)?;
        map.insert(key.to_string(), to_val(&value));
    }
    kwargs.assert_all_used()?;
    Ok(from_val(Val::Map(map)))
}

/// What the functions of one render reach through [`STORE_GLOBAL`]: the store, and the templates
/// directory for `include`.
#[derive(Debug)]
struct StoreHandle {
    store: Store,
    root: Arc<Path>,
}

impl Object for StoreHandle {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<confd store of {} keys>", self.store.len())
    }
}

/// The `include` function in a Jinja template: the named template, loaded as Jinja from the
/// templates directory and rendered in this render's environment (same store, same functions),
/// with the entries of the data map as its variables.
struct JinjaInclude<'a, 'b, 'c> {
    state: &'a State<'b, 'c>,
    handle: &'a StoreHandle,
}

impl fmt::Debug for JinjaInclude<'_, '_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JinjaInclude")
            .field("template", &self.state.name())
            .finish_non_exhaustive()
    }
}

impl Include for JinjaInclude<'_, '_, '_> {
    fn include(&self, name: &str, data: Option<&Val>) -> Result<String, FuncError> {
        let fail = |message: String| FuncError::new("include", message);
        let (rel, _) = crate::include::resolve(&self.handle.root, name).map_err(fail)?;
        let chain: Vec<String> = match self.state.lookup(CHAIN_VAR) {
            Some(v) => match v.try_iter() {
                Ok(items) => items.map(|i| i.to_string()).collect(),
                Err(_) => vec![self.state.name().to_string()],
            },
            None => vec![self.state.name().to_string()],
        };
        let chain = crate::include::enter(&chain, &rel).map_err(fail)?;
        let mut vars: BTreeMap<String, Value> = match data {
            None | Some(Val::Nil) => BTreeMap::new(),
            Some(Val::Map(m)) => m
                .iter()
                .map(|(k, v)| (k.clone(), from_val(v.clone())))
                .collect(),
            Some(other) => {
                return Err(fail(format!(
                    "the data of a Jinja include must be a map (its entries become the \
                     template's variables), got {} {}",
                    other.type_name(),
                    crate::funcs::quote_val(other)
                )));
            }
        };
        vars.insert(CHAIN_VAR.to_string(), Value::from(chain));
        // Where the included template went wrong, named by its path in the templates directory.
        let nested = |e: Error| {
            let e = convert_error(&e, &rel, Phase::Render);
            FuncError {
                missing_key: e.missing_key.clone(),
                ..fail(match e.line {
                    Some(line) => format!("{}:{line}: {}", e.template, e.message),
                    None => format!("{}: {}", e.template, e.message),
                })
            }
        };
        let tmpl = self.state.env().get_template(&rel).map_err(nested)?;
        tmpl.render(Value::from(vars)).map_err(nested)
    }
}

/// A confd value with no Jinja counterpart (a key/value pair, an SRV record, a time), kept whole
/// so that handing it back to a confd function (`reverse(gets("/a/*"))`) gives the same value.
#[derive(Debug)]
struct Native(Val);

impl Object for Native {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        match self.0 {
            Val::Pair(_) | Val::Srv(_) => ObjectRepr::Map,
            _ => ObjectRepr::Plain,
        }
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.0.field(key.as_str()?).map(from_val)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match self.0 {
            Val::Pair(_) => Enumerator::Str(&["key", "value"]),
            Val::Srv(_) => Enumerator::Str(&["target", "port", "priority", "weight"]),
            _ => Enumerator::NonEnumerable,
        }
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        if matches!(self.0, Val::Pair(_) | Val::Srv(_)) {
            return Err(Error::from(ErrorKind::UnknownMethod));
        }
        // Go's method names; `format` and `unix` as Jinja users spell them work too.
        let mut go_name: String = method
            .chars()
            .take(1)
            .flat_map(char::to_uppercase)
            .collect();
        go_name.push_str(&method[method.chars().next().map_or(0, char::len_utf8)..]);
        let args: Vec<Val> = args.iter().map(to_val).collect();
        match self.0.method(&go_name, &args) {
            Ok(Some(v)) => Ok(from_val(v)),
            Ok(None) => Err(Error::from(ErrorKind::UnknownMethod)),
            Err(e) => Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("{method}: {e}"),
            )),
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        write_native(&mut s, &self.0, true)?;
        f.write_str(&s)
    }
}

/// Converts a confd value for Jinja. JSON numbers are floats in confd (as in Go); those without a
/// fraction become integers here, as in Python's `json.loads`, so `{{ cfg.port }}` prints `8080`
/// and `range(cfg.workers)` works.
fn from_val(v: Val) -> Value {
    // 2^53: beyond it a float no longer holds every integer exactly.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    match v {
        Val::Nil => Value::from(()),
        Val::Bool(b) => Value::from(b),
        Val::Int(i) => Value::from(i),
        Val::Float(f) if f.fract() == 0.0 && f.abs() < EXACT => Value::from(f as i64),
        Val::Float(f) => Value::from(f),
        Val::Str(s) => Value::from(s),
        Val::List(items) => Value::from(items.into_iter().map(from_val).collect::<Vec<_>>()),
        Val::Map(m) => Value::from(
            m.into_iter()
                .map(|(k, v)| (k, from_val(v)))
                .collect::<BTreeMap<String, Value>>(),
        ),
        native @ (Val::Pair(_)
        | Val::Srv(_)
        | Val::Time(_)
        | Val::Month(_)
        | Val::Weekday(_)
        | Val::Location(_)
        | Val::Duration(_)) => Value::from_object(Native(native)),
    }
}

/// Converts a Jinja value for a confd function.
fn to_val(v: &Value) -> Val {
    if let Some(Native(native)) = v.downcast_object_ref::<Native>() {
        return native.clone();
    }
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => Val::Nil,
        ValueKind::Bool => Val::Bool(v.is_true()),
        ValueKind::Number if v.is_integer() => match v.as_i64() {
            Some(i) => Val::Int(i),
            // u64/i128 beyond i64: confd's integers are Go ints, so it can only be a float.
            None => f64::try_from(v.clone()).map_or_else(|_| Val::Str(v.to_string()), Val::Float),
        },
        ValueKind::Number => {
            f64::try_from(v.clone()).map_or_else(|_| Val::Str(v.to_string()), Val::Float)
        }
        ValueKind::String => Val::Str(v.as_str().unwrap_or_default().to_string()),
        ValueKind::Bytes => {
            Val::Str(String::from_utf8_lossy(v.as_bytes().unwrap_or_default()).into())
        }
        ValueKind::Seq | ValueKind::Iterable => match v.try_iter() {
            Ok(items) => Val::List(items.map(|item| to_val(&item)).collect()),
            Err(_) => Val::Str(v.to_string()),
        },
        ValueKind::Map => match v.try_iter() {
            Ok(keys) => Val::Map(
                keys.map(|k| {
                    let item = v.get_item(&k).unwrap_or_default();
                    let key = k.as_str().map_or_else(|| k.to_string(), str::to_string);
                    (key, to_val(&item))
                })
                .collect(),
            ),
            Err(_) => Val::Str(v.to_string()),
        },
        _ => Val::Str(v.to_string()),
    }
}

/// A value as `{{ value }}` prints it.
fn config_string(value: &Value) -> Result<String, Error> {
    let mut s = String::new();
    write_config(&mut s, value, true)?;
    Ok(s)
}

/// Writes a value the way a config file wants it: strings verbatim, `true`/`false`, none as
/// nothing; inside lists and maps everything is JSON (`["a", "b"]`, `{"k": true, "n": null}`),
/// which TOML, YAML and JSON files all read.
fn write_config(out: &mut String, v: &Value, top: bool) -> Result<(), Error> {
    use std::fmt::Write as _;
    if let Some(Native(native)) = v.downcast_object_ref::<Native>() {
        return write_native(out, native, top).map_err(Error::from);
    }
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => {
            if !top {
                out.push_str("null");
            }
        }
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::String | ValueKind::Bytes => {
            let s = match v.as_str() {
                Some(s) => Cow::Borrowed(s),
                None => String::from_utf8_lossy(v.as_bytes().unwrap_or_default()),
            };
            if top {
                out.push_str(&s);
            } else {
                push_json_str(out, &s);
            }
        }
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            for (i, item) in v.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_config(out, &item, false)?;
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            for (i, k) in v.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let key = k.as_str().map_or_else(|| k.to_string(), str::to_string);
                push_json_str(out, &key);
                out.push_str(": ");
                write_config(out, &v.get_item(&k)?, false)?;
            }
            out.push('}');
        }
        _ => write!(out, "{v}").map_err(Error::from)?,
    }
    Ok(())
}

fn write_native(out: &mut String, v: &Val, top: bool) -> fmt::Result {
    use std::fmt::Write as _;
    match v {
        Val::Time(t) if top => write!(out, "{t}"),
        Val::Time(t) => {
            push_json_str(out, &t.to_string());
            Ok(())
        }
        Val::Pair(p) => {
            out.push_str("{\"key\": ");
            push_json_str(out, &p.key);
            out.push_str(", \"value\": ");
            push_json_str(out, &p.value);
            out.push('}');
            Ok(())
        }
        Val::Srv(s) => {
            out.push_str("{\"target\": ");
            push_json_str(out, &s.target);
            write!(
                out,
                ", \"port\": {}, \"priority\": {}, \"weight\": {}}}",
                s.port, s.priority, s.weight
            )
        }
        other => write!(out, "{other}"),
    }
}

fn push_json_str(out: &mut String, s: &str) {
    // Serializing a string to JSON cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// Resolves the name in an `include`/`import`/`extends`: `./x` and `../x` are relative to the
/// including template's directory, anything else to the templates directory. A name that climbs
/// out of the templates directory is left as it is, and the loader refuses it.
fn join_path<'s>(name: &'s str, parent: &'s str) -> Cow<'s, str> {
    let joined = if name.starts_with("./") || name.starts_with("../") {
        match parent.rsplit_once('/') {
            Some((dir, _)) => format!("{dir}/{name}"),
            None => name.to_string(),
        }
    } else {
        name.to_string()
    };
    match normalize_name(&joined) {
        Some(n) if n == name => Cow::Borrowed(name),
        Some(n) => Cow::Owned(n),
        None => Cow::Borrowed(name),
    }
}

/// A template name as a clean path relative to the templates directory (`a/b.j2`), or `None`
/// when `..` climbs above it. A leading `/` is relative to the directory, as confd joins `src`.
fn normalize_name(name: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for seg in name.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    if parts.is_empty() {
        return None;
    }
    Some(parts.join("/"))
}

/// Loads templates from `root` (canonical), refusing names and symlinks that lead outside it.
fn loader(root: PathBuf) -> impl Fn(&str) -> Result<Option<String>, Error> + Send + Sync + 'static {
    move |name| {
        let outside = || {
            // Not TemplateNotFound: `include` would hide the reason behind "non-existing template".
            Error::new(
                ErrorKind::InvalidOperation,
                format!("template {name:?} is outside the templates directory"),
            )
        };
        let rel = normalize_name(name).ok_or_else(outside)?;
        if rel.contains('\\') {
            return Err(outside());
        }
        let path = root.join(&rel);
        let real = match path.canonicalize() {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("cannot open template {}: {e}", path.display()),
                ));
            }
        };
        if !real.starts_with(&root) {
            return Err(outside());
        }
        match std::fs::read_to_string(&real) {
            Ok(source) => Ok(Some(source)),
            Err(e) => Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("cannot read template {}: {e}", real.display()),
            )),
        }
    }
}

#[derive(Clone, Copy)]
enum Phase {
    Load,
    Render,
}

/// Turns a minijinja error into ours: the message without minijinja's `(in name:line)` suffix
/// (the template and line are fields), a confd function's own message as it is, and the innermost
/// template's name and line when the error happened in an included one.
fn convert_error(e: &Error, fallback_name: &str, phase: Phase) -> TemplateError {
    // Errors in included templates arrive wrapped; the innermost one knows where it happened.
    let mut inner = e;
    let mut func: Option<&FuncError> = None;
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(me) = s.downcast_ref::<Error>()
            && me.name().is_some()
        {
            inner = me;
        }
        if let Some(fe) = s.downcast_ref::<FuncError>() {
            func = Some(fe);
        }
        source = s.source();
    }
    let name = inner.name().or(e.name()).unwrap_or(fallback_name);
    let line = inner.line().or(e.line());
    let message = match func {
        Some(fe) => fe.to_string(),
        // "invalid operation" adds nothing to our own messages (reading files, methods).
        None => match (inner.kind(), inner.detail()) {
            (ErrorKind::InvalidOperation, Some(detail)) => detail.to_string(),
            (kind, Some(detail)) => format!("{kind}: {detail}"),
            (kind, None) => kind.to_string(),
        },
    };
    let err = match phase {
        Phase::Load => TemplateError::load(name, line, message),
        Phase::Render => TemplateError::render(name, line, message),
    };
    err.with_missing_key(func.and_then(|fe| fe.missing_key.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside_the_directory() {
        assert_eq!(normalize_name("a.j2").as_deref(), Some("a.j2"));
        assert_eq!(normalize_name("/a/./b.j2").as_deref(), Some("a/b.j2"));
        assert_eq!(normalize_name("a/../b.j2").as_deref(), Some("b.j2"));
        assert_eq!(normalize_name("../b.j2"), None);
        assert_eq!(normalize_name("a/../../b.j2"), None);
        assert_eq!(normalize_name(""), None);
    }

    #[test]
    fn relative_includes_resolve_against_the_parent() {
        assert_eq!(join_path("./p.j2", "sub/app.j2"), "sub/p.j2");
        assert_eq!(join_path("../p.j2", "sub/app.j2"), "p.j2");
        assert_eq!(join_path("p.j2", "sub/app.j2"), "p.j2");
        assert_eq!(join_path("./p.j2", "app.j2"), "p.j2");
        // Climbing out stays unresolved so that the loader refuses it.
        assert_eq!(join_path("../../p.j2", "sub/app.j2"), "../../p.j2");
    }

    /// The confd names kept as Jinja filters must be exactly the builtin filters that clash.
    #[test]
    fn kept_jinja_filters_are_exactly_the_clashing_builtins() {
        let env = Environment::new();
        let mut clashing: Vec<&str> = functions()
            .iter()
            .map(|f| f.name)
            .filter(|name| {
                let src = format!("{{{{ none|{name} }}}}");
                !matches!(
                    env.render_str(&src, ()),
                    Err(e) if e.kind() == ErrorKind::UnknownFilter
                )
            })
            .collect();
        clashing.sort_unstable();
        assert_eq!(clashing, JINJA_FILTERS_KEPT);
    }

    /// SRV records (no store key can make one) expose their fields in both spellings.
    #[test]
    fn srv_fields_and_printing() {
        let mut env = environment(PathBuf::from("/nonexistent"), &TemplateOptions::default())
            .expect("environment");
        env.add_global(
            "srvs",
            from_val(Val::List(vec![crate::funcs::srv(
                "db.example.",
                5432,
                10,
                5,
            )])),
        );
        let out = env
            .render_str(
                "{% for s in srvs %}{{ s.Target }}:{{ s.port }} {{ s.Priority }}/{{ s.weight }} {{ s }}{% endfor %}",
                (),
            )
            .expect("renders");
        assert_eq!(
            out,
            r#"db.example.:5432 10/5 {"target": "db.example.", "port": 5432, "priority": 10, "weight": 5}"#
        );
    }

    #[test]
    fn values_round_trip_through_jinja() {
        let vals = [
            Val::Nil,
            Val::Bool(true),
            Val::Int(-3),
            Val::Float(2.5),
            Val::Str("s".into()),
            Val::List(vec![Val::Int(1), Val::Str("x".into())]),
            Val::Map(BTreeMap::from([("a".to_string(), Val::Bool(false))])),
            crate::funcs::pair("/k", "v"),
            crate::funcs::srv("a.example.", 80, 1, 2),
        ];
        for v in vals {
            assert_eq!(to_val(&from_val(v.clone())), v);
        }
        // Integral JSON floats become Jinja integers.
        assert_eq!(to_val(&from_val(Val::Float(8080.0))), Val::Int(8080));
    }
}
