//! The Go text/template engine: gotmpl (pinned) with confd's function table, plus the few fixes
//! gotmpl needs to behave like Go's engine for confd templates (see docs/templates.md):
//!
//! - unknown functions are reported at load time with their line (gotmpl finds them only when
//!   the action runs);
//! - values print like Go's `fmt.Print` (`1e+06` for a float64, `{key value}` for a pair),
//!   by piping every printed action through a hidden print function;
//! - methods with arguments (`datetime.Format "2006-01-02"`, `$t.Format ...`) are rewritten to a
//!   hidden method-call function, because gotmpl passes such arguments to the wrong callee;
//! - a comment with only a left trim marker (`{{- /* c */}}`) trims the text after it in gotmpl;
//!   Go trims only before it, so such comments are split into `{{- ""}}{{/* c */}}` first;
//! - each call site of a table function is registered under its own name carrying the line, so
//!   a failing function (a missing key, above all) is reported with its line.
//!
//! The store of the render is kept in a thread-local slot while the template executes: gotmpl
//! calls functions synchronously on the rendering thread, so concurrent renders of one template
//! on different threads each see their own store, and the function map can be built once.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use gotmpl::parse::{CommandNode, Expr, ListNode, Node, PipeNode, SmolStr};
use gotmpl::{Value, ValueFunc};

use crate::datetime::DateTime;
use crate::funcs::{FuncContext, FuncError, Function, function};
use crate::store::{KvPair, Store};
use crate::value::{Srv, Val, format_go_float};
use crate::{TemplateError, template_name};

/// Go text/template's builtin functions (all provided by gotmpl).
const BUILTINS: &[&str] = &[
    "and", "call", "html", "index", "slice", "js", "len", "not", "or", "print", "printf",
    "println", "urlquery", "eq", "ge", "gt", "le", "lt", "ne",
];

const PRINT_FN: &str = "confd:print";
const VERB_V_FN: &str = "confd:v";
const VERB_S_FN: &str = "confd:s";
const METHOD_FN: &str = "confd:method";
const TIME_MARKER: &str = "confd:time";

/// A parsed Go template.
pub(crate) struct GoTemplate {
    name: String,
    tmpl: gotmpl::Template,
}

impl std::fmt::Debug for GoTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoTemplate")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The state of the render running on this thread.
struct RenderState {
    store: Store,
    /// The first table function failure, with its line (gotmpl drops positions).
    error: Option<(FuncError, usize)>,
}

thread_local! {
    static CURRENT: RefCell<Vec<RenderState>> = const { RefCell::new(Vec::new()) };
}

/// Makes `store` the store of this thread's render until dropped.
struct StoreGuard;

impl StoreGuard {
    fn set(store: &Store) -> StoreGuard {
        CURRENT.with(|c| {
            c.borrow_mut().push(RenderState {
                store: store.clone(),
                error: None,
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

impl GoTemplate {
    /// Reads and parses a template file; the template's name is the file's base name.
    pub(crate) fn load(path: &Path) -> Result<GoTemplate, TemplateError> {
        let name = template_name(path);
        let src = std::fs::read_to_string(path).map_err(|e| {
            TemplateError::load(&name, None, format!("cannot read {}: {e}", path.display()))
        })?;
        Self::parse(&name, &src)
    }

    /// Parses template source text under `name`.
    pub(crate) fn parse(name: &str, src: &str) -> Result<GoTemplate, TemplateError> {
        let src = fix_left_trimmed_comments(src);
        let parsed = gotmpl::Template::new(name)
            .parse(&src)
            .map_err(|e| load_error(name, e))?;
        check_blocks(name, &src)?;
        let mut funcs: BTreeMap<String, ValueFunc> = BTreeMap::new();
        funcs.insert(PRINT_FN.to_string(), Arc::new(|args| Ok(go_print(args))));
        funcs.insert(METHOD_FN.to_string(), Arc::new(call_method));
        funcs.insert(VERB_V_FN.to_string(), Arc::new(|args| Ok(go_print(args))));
        funcs.insert(VERB_S_FN.to_string(), Arc::new(|args| Ok(go_print_s(args))));
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
            tmpl,
        })
    }

    /// Executes the template with dot = nil (as confd does) against `store`.
    pub(crate) fn render(&self, store: &Store) -> Result<String, TemplateError> {
        let guard = StoreGuard::set(store);
        let result = self
            .tmpl
            .execute_template_to_string(&self.name, &Value::Nil);
        let func_error = guard.take_error();
        drop(guard);
        result.map_err(|e| match func_error {
            Some((fe, line)) => TemplateError::render(&self.name, Some(line), &fe)
                .with_missing_key(fe.missing_key.clone()),
            None => TemplateError::render(&self.name, None, exec_message(&e)),
        })
    }
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
            wrap_printf_v_args(cmd);
            for arg in &mut cmd.args {
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
            Expr::Pipe(_, p) => self.pipe(p),
            Expr::Chain(_, inner, _) => self.expr(inner),
            _ => {}
        }
    }
}

/// Turns `X.F args...` (and a field receiving a piped value) into `confd:method X "F" args...`,
/// which calls the method the way Go does.
fn rewrite_method_call(cmd: &mut CommandNode, piped: bool) {
    let has_args = cmd.args.len() > 1 || piped;
    if !has_args {
        return;
    }
    let Some(first) = cmd.args.first() else {
        return;
    };
    let (receiver, fields, pos) = match first {
        Expr::Chain(pos, inner, fields) => {
            // `f.Field` where `f` is a function: gotmpl calls f with the arguments; Go calls the
            // method. Other chains (`(pipe).Field args`) are method calls too.
            ((**inner).clone(), fields.clone(), *pos)
        }
        Expr::Variable(pos, name, fields) if !fields.is_empty() => (
            Expr::Variable(*pos, name.clone(), Vec::new()),
            fields.clone(),
            *pos,
        ),
        Expr::Field(pos, fields) => (Expr::Dot(*pos), fields.clone(), *pos),
        _ => return,
    };
    let path: Vec<&str> = fields.iter().map(SmolStr::as_str).collect();
    let mut args = vec![
        Expr::Identifier(pos, SmolStr::new(METHOD_FN)),
        receiver,
        Expr::String(pos, Arc::from(path.join("."))),
    ];
    args.extend(cmd.args.drain(1..));
    cmd.args = args;
}

/// gotmpl's `printf` formats a float for `%v` with Rust's rules (`1000000`); Go prints `1e+06`,
/// and `%s` of a list or pair is an error marker where Go prints `[a b]`. When the format is a
/// literal, every argument that a `%v` or `%s` consumes is wrapped in a hidden function that
/// turns it into Go's text first.
fn wrap_printf_v_args(cmd: &mut CommandNode) {
    let (Some(Expr::Identifier(_, name)), Some(Expr::String(_, format))) =
        (cmd.args.first(), cmd.args.get(1))
    else {
        return;
    };
    if name.as_str() != "printf" {
        return;
    }
    let Some(verbs) = printf_verbs(format) else {
        return;
    };
    for (i, verb) in verbs.into_iter().enumerate() {
        let Some(arg) = cmd.args.get_mut(i + 2) else {
            break;
        };
        let wrapper = match verb {
            'v' => VERB_V_FN,
            's' => VERB_S_FN,
            _ => continue,
        };
        let pos = arg.pos();
        let inner = std::mem::replace(arg, Expr::Nil(pos));
        *arg = Expr::Pipe(
            pos,
            PipeNode {
                pos,
                decl: Vec::new(),
                commands: vec![CommandNode {
                    pos,
                    args: vec![Expr::Identifier(pos, SmolStr::new(wrapper)), inner],
                }],
                is_assign: false,
            },
        );
    }
}

/// The verbs of a printf format in argument order; `None` for formats that pick arguments by
/// index or take a width or precision from an argument (`%[2]v`, `%*d`), left as they are.
fn printf_verbs(format: &str) -> Option<Vec<char>> {
    let mut verbs = Vec::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            continue;
        }
        loop {
            match chars.next()? {
                '%' => break,
                '[' | '*' => return None,
                '+' | '-' | '#' | ' ' | '0'..='9' | '.' => {}
                verb => {
                    verbs.push(verb);
                    break;
                }
            }
        }
    }
    Some(verbs)
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
            let store = state.store.clone();
            drop(states);
            Ok::<_, gotmpl::TemplateError>(f.call(&FuncContext { store: &store }, &vals))
        })?;
        match result {
            Ok(v) => Ok(to_go(v)),
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

/// Converts a table value into a gotmpl value.
pub(crate) fn to_go(v: Val) -> Value {
    match v {
        Val::Nil => Value::Nil,
        Val::Bool(b) => Value::Bool(b),
        Val::Int(i) => Value::Int(i),
        Val::Float(f) => Value::Float(f),
        Val::Str(s) => Value::String(Arc::from(s)),
        Val::List(l) => Value::List(l.into_iter().map(to_go).collect()),
        Val::Map(m) => Value::Map(Arc::new(
            m.into_iter()
                .map(|(k, v)| (Arc::from(k), to_go(v)))
                .collect(),
        )),
        Val::Pair(p) => go_map([
            ("Key", Value::String(Arc::from(p.key))),
            ("Value", Value::String(Arc::from(p.value))),
        ]),
        Val::Srv(s) => go_map([
            ("Target", Value::String(Arc::from(s.target))),
            ("Port", Value::Int(i64::from(s.port))),
            ("Priority", Value::Int(i64::from(s.priority))),
            ("Weight", Value::Int(i64::from(s.weight))),
        ]),
        Val::Time(t) => time_to_go(&t),
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

/// A time as a map: its niladic methods as fields (`.Year`, `.Unix`, ...) and a marker from
/// which `.Format` and printing rebuild it.
fn time_to_go(t: &DateTime) -> Value {
    let num = |layout: &str| Value::Int(t.format(layout).trim().parse().unwrap_or(0));
    let s = |layout: &str| Value::String(Arc::from(t.format(layout)));
    go_map([
        (
            TIME_MARKER,
            Value::String(Arc::from(format!(
                "{} {} {} {}",
                t.unix, t.nanos, t.offset, t.zone
            ))),
        ),
        ("Year", num("2006")),
        ("Month", s("January")),
        ("Day", num("2")),
        ("Hour", num("15")),
        ("Minute", num("4")),
        ("Second", num("5")),
        ("Nanosecond", Value::Int(i64::from(t.nanos))),
        ("YearDay", num("__2")),
        ("Weekday", s("Monday")),
        ("Unix", Value::Int(t.unix)),
        (
            "UnixNano",
            Value::Int(t.unix.saturating_mul(1_000_000_000) + i64::from(t.nanos)),
        ),
        ("String", Value::String(Arc::from(t.to_string()))),
    ])
}

fn time_from_go(m: &BTreeMap<Arc<str>, Value>) -> Option<DateTime> {
    let Some(Value::String(s)) = m.get(TIME_MARKER) else {
        return None;
    };
    let mut parts = s.splitn(4, ' ');
    Some(DateTime {
        unix: parts.next()?.parse().ok()?,
        nanos: parts.next()?.parse().ok()?,
        offset: parts.next()?.parse().ok()?,
        zone: parts.next()?.to_string(),
    })
}

/// Converts a gotmpl value back into a table value (pairs, SRV records and times are maps with
/// exactly their fields).
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
            if let Some(t) = time_from_go(m) {
                return Val::Time(t);
            }
            if let Some(p) = pair_from_go(m) {
                return Val::Pair(p);
            }
            if let Some(s) = srv_from_go(m) {
                return Val::Srv(s);
            }
            Val::Map(m.iter().map(|(k, v)| (k.to_string(), from_go(v))).collect())
        }
        // Functions and other engine-only values have no table equivalent.
        _ => Val::Str(v.to_string()),
    }
}

fn pair_from_go(m: &BTreeMap<Arc<str>, Value>) -> Option<KvPair> {
    if m.len() != 2 {
        return None;
    }
    match (m.get("Key")?, m.get("Value")?) {
        (Value::String(k), Value::String(v)) => Some(KvPair {
            key: k.to_string(),
            value: v.to_string(),
        }),
        _ => None,
    }
}

fn srv_from_go(m: &BTreeMap<Arc<str>, Value>) -> Option<Srv> {
    if m.len() != 4 {
        return None;
    }
    let num = |k: &str| match m.get(k) {
        Some(Value::Int(i)) => u16::try_from(*i).ok(),
        _ => None,
    };
    match m.get("Target")? {
        Value::String(t) => Some(Srv {
            target: t.to_string(),
            port: num("Port")?,
            priority: num("Priority")?,
            weight: num("Weight")?,
        }),
        _ => None,
    }
}

/// The hidden print step of every printed action: Go's `fmt.Print` formatting for values gotmpl
/// prints differently. Strings and nil pass through (nil prints `<no value>`).
fn go_print(args: &[Value]) -> Value {
    let Some(v) = args.last() else {
        return Value::Nil;
    };
    match v {
        Value::Nil | Value::String(_) | Value::Bool(_) | Value::Int(_) | Value::Uint(_) => {
            v.clone()
        }
        Value::Function(_) => v.clone(),
        other => Value::String(Arc::from(go_format(other))),
    }
}

/// `%s` of a list, map or key/value pair prints Go's `%v` text (`[a b]`, `{/k v}`); gotmpl
/// would print `%!s(list=...)`. Scalars keep gotmpl's own `%s` handling.
fn go_print_s(args: &[Value]) -> Value {
    match args.last() {
        Some(v @ (Value::List(_) | Value::Map(_))) => Value::String(Arc::from(go_format(v))),
        Some(v) => v.clone(),
        None => Value::Nil,
    }
}

fn go_format(v: &Value) -> String {
    match v {
        Value::Float(f) => format_go_float(*f),
        Value::List(l) => {
            let items: Vec<String> = l.iter().map(go_format).collect();
            format!("[{}]", items.join(" "))
        }
        Value::Map(m) => {
            if let Some(t) = time_from_go(m) {
                return t.to_string();
            }
            if pair_from_go(m).is_some() || srv_from_go(m).is_some() {
                // Go prints a struct as `{field values...}` in field order.
                return from_go(v).to_string();
            }
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}:{}", go_format(v)))
                .collect();
            format!("map[{}]", items.join(" "))
        }
        other => other.to_string(),
    }
}

/// `confd:method receiver "F1.F2" args...`: a method call with arguments, as Go evaluates
/// `receiver.F1.F2 args...`.
fn call_method(args: &[Value]) -> gotmpl::Result<Value> {
    let (Some(receiver), Some(Value::String(path))) = (args.first(), args.get(1)) else {
        return Err(gotmpl::TemplateError::Exec(
            "internal error: malformed method call".into(),
        ));
    };
    let fields: Vec<&str> = path.split('.').collect();
    let (method, walk) = fields.split_last().unwrap_or((&"", &[]));
    let mut val = receiver.clone();
    for f in walk {
        val = match val.field(f) {
            Some(v) => v.clone(),
            None => Value::Nil,
        };
    }
    let rest = &args[2..];
    if let Value::Map(m) = &val
        && let Some(t) = time_from_go(m)
    {
        return match (*method, rest) {
            ("Format", [Value::String(layout)]) => Ok(Value::String(Arc::from(t.format(layout)))),
            ("Format", _) => Err(gotmpl::TemplateError::Exec(
                "wrong number or type of arguments for Format: want one layout string".into(),
            )),
            (m, _) => Err(gotmpl::TemplateError::Exec(format!(
                "can't give arguments to {m}: not a method with arguments of time.Time"
            ))),
        };
    }
    Err(gotmpl::TemplateError::Exec(format!(
        "can't give argument to non-function .{path}"
    )))
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
        assert!(printed.ends_with(" +0000 UTC"), "{printed}");
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
        assert_eq!(printf_verbs("a %v %% %-5.2f %d"), Some(vec!['v', 'f', 'd']));
        // `%s` of a list or a pair prints like `%v`, as Go does; scalars are untouched.
        assert_eq!(
            render(r#"{{printf "%s|%s|%s" (split "a,b" ",") (get "/app/name") "s"}}"#).as_deref(),
            Ok("[a b]|{/app/name web}|s")
        );
        assert_eq!(printf_verbs("%[1]v"), None);
        assert_eq!(printf_verbs("%*d"), None);
    }

    #[test]
    fn dot_is_nil() {
        assert_eq!(
            render("{{.}}|{{.Foo}}").as_deref(),
            Ok("<no value>|<no value>")
        );
    }
}
