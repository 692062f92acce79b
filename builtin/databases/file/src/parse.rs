//! Turns one YAML or JSON document into flat `/a/b/0` keys exactly as Go
//! confd did, so existing data files render the same bytes.
//!
//! Go confd decoded with yaml.v2, which implements YAML 1.1: `yes`, `on`, `y`
//! are booleans, `0755` is octal, `1_000` is a thousand. A YAML 1.2 reader
//! would give different values for the same file, so this module resolves
//! plain scalars itself, following yaml.v2's `resolve` function step by step,
//! on top of the event stream of `granit-parser` (which keeps each scalar's
//! source style, so `"0042"` stays text while `0042` is octal).
//!
//! Choices where yaml.v2 crashed or was random (recorded in the conformance
//! notes): map keys are always their source text (`on:` is the key `on`, not
//! a panic); a complex key (a mapping or list used as a key) is an error; a
//! key repeated in one mapping keeps its last value. Of several documents in
//! one file only the first is read, as yaml.v2's Unmarshal did. Anchors, aliases and `<<` merge
//! keys work as in yaml.v2.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use granit_parser::{Event, Parser, ScalarStyle, Tag};

/// A decoded value before flattening.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// `null`, `~`, empty: produces no key.
    Null,
    /// A value yaml.v2 decoded into a type confd's flattener ignored
    /// (an integer that fits only `uint64`): produces no key either.
    Dropped,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

/// A parse failure; the caller adds the file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseError {
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    pub message: String,
}

impl ParseError {
    fn at(line: usize, column: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            line: Some(line),
            column: Some(column),
            message: message.into(),
        }
    }
}

/// How a file's content is read, chosen by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Yaml,
    Json,
}

impl Format {
    /// `.json` → JSON; `.yaml`, `.yml` or no extension → YAML; anything else
    /// is `Err(extension)`. Case-insensitive; a dot file such as `.hidden`
    /// has no extension.
    pub fn for_path(path: &Path) -> Result<Format, String> {
        match path.extension() {
            None => Ok(Format::Yaml),
            Some(ext) => {
                let ext = ext.to_string_lossy();
                match ext.to_ascii_lowercase().as_str() {
                    "yaml" | "yml" => Ok(Format::Yaml),
                    "json" => Ok(Format::Json),
                    _ => Err(ext.into_owned()),
                }
            }
        }
    }
}

/// Parses `text` and flattens it into `out` (later keys overwrite earlier).
pub(crate) fn flatten_into(
    format: Format,
    text: &str,
    out: &mut BTreeMap<String, String>,
) -> Result<(), ParseError> {
    let docs = match format {
        Format::Yaml => parse_yaml(text)?,
        Format::Json => vec![parse_json(text)?],
    };
    for doc in docs {
        match doc {
            Node::Map(_) | Node::Seq(_) | Node::Null => flatten(&doc, "/", out),
            _ => {
                return Err(ParseError {
                    line: None,
                    column: None,
                    message: "the top level is a single value; expected a mapping or a list"
                        .to_string(),
                });
            }
        }
    }
    Ok(())
}

/// confd's `nodeWalk`: map key `k` → `<path>/k`, list item `i` → `<path>/i`,
/// joined with Go's `path.Join` (so `a/b` as a key is two segments).
pub(crate) fn flatten(node: &Node, path: &str, out: &mut BTreeMap<String, String>) {
    match node {
        Node::Null | Node::Dropped => {}
        Node::Bool(b) => {
            out.insert(path.to_string(), b.to_string());
        }
        Node::Int(i) => {
            out.insert(path.to_string(), i.to_string());
        }
        Node::Float(f) => {
            out.insert(path.to_string(), format_float(*f));
        }
        Node::Str(s) => {
            out.insert(path.to_string(), s.clone());
        }
        Node::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                flatten(item, &crate::keys::join(path, &i.to_string()), out);
            }
        }
        Node::Map(entries) => {
            for (k, v) in entries {
                flatten(v, &crate::keys::join(path, k), out);
            }
        }
    }
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`: shortest round-trip digits,
/// never an exponent. Rust's `Display` for `f64` is exactly that, except for
/// the spelling of the non-finite values.
pub(crate) fn format_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_string()
    } else if f.is_infinite() {
        if f > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        f.to_string()
    }
}

fn parse_json(text: &str) -> Result<Node, ParseError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| ParseError {
        line: Some(e.line()),
        column: Some(e.column()),
        message: format!("invalid JSON: {e}"),
    })?;
    Ok(json_node(value))
}

/// JSON values map like the same text read as YAML (Go confd read `.json`
/// files with its YAML decoder), so a file's keys do not depend on its
/// extension: `1.0` is `1`, an integer only `uint64` can hold is dropped.
fn json_node(value: serde_json::Value) -> Node {
    use serde_json::Value;
    match value {
        Value::Null => Node::Null,
        Value::Bool(b) => Node::Bool(b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Node::Int(i)
            } else if n.as_u64().is_some() {
                Node::Dropped
            } else {
                n.as_f64().map_or(Node::Dropped, Node::Float)
            }
        }
        Value::String(s) => Node::Str(s),
        Value::Array(items) => Node::Seq(items.into_iter().map(json_node).collect()),
        Value::Object(map) => Node::Map(map.into_iter().map(|(k, v)| (k, json_node(v))).collect()),
    }
}

/// Alias expansion copies nodes; this caps the copies so a "billion laughs"
/// file fails instead of eating the memory.
const MAX_ALIAS_NODES: usize = 1_000_000;

/// What a mapping is waiting for next.
#[derive(Debug)]
enum KeySlot {
    /// The next node is a key.
    Empty,
    /// The next node is the value of this key.
    Key(String),
    /// The next node is the value of a `<<` merge key.
    Merge,
}

#[derive(Debug)]
enum Frame {
    Seq {
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        anchor: usize,
        entries: Vec<(String, Node)>,
        merges: Vec<Node>,
        slot: KeySlot,
        line: usize,
        column: usize,
    },
}

#[derive(Debug, Default)]
struct Builder {
    stack: Vec<Frame>,
    docs: Vec<Node>,
    anchors: HashMap<usize, Node>,
    /// Source text of anchored scalars, for aliases used as map keys.
    anchor_texts: HashMap<usize, String>,
    alias_budget: usize,
}

fn parse_yaml(text: &str) -> Result<Vec<Node>, ParseError> {
    let mut builder = Builder::default();
    for item in Parser::new_from_str(text) {
        let (event, span) =
            item.map_err(|e| ParseError::at(e.marker().line(), e.marker().col() + 1, e.info()))?;
        let (line, column) = (span.start.line(), span.start.col() + 1);
        match event {
            Event::Scalar(value, style, anchor, tag) => {
                builder.scalar(&value, style, anchor, tag.as_deref(), line, column)?;
            }
            Event::SequenceStart(_, anchor, _) => {
                builder.expect_value(line, column)?;
                builder.stack.push(Frame::Seq {
                    anchor,
                    items: Vec::new(),
                });
            }
            Event::MappingStart(_, anchor, _) => {
                builder.expect_value(line, column)?;
                builder.stack.push(Frame::Map {
                    anchor,
                    entries: Vec::new(),
                    merges: Vec::new(),
                    slot: KeySlot::Empty,
                    line,
                    column,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let node = match builder.stack.pop() {
                    Some(Frame::Seq { anchor, items }) => (Node::Seq(items), anchor),
                    Some(Frame::Map {
                        anchor,
                        entries,
                        merges,
                        line,
                        column,
                        ..
                    }) => (merge_entries(entries, merges, line, column)?, anchor),
                    None => {
                        return Err(ParseError::at(line, column, "unbalanced YAML events"));
                    }
                };
                builder.value(node.0, node.1);
            }
            Event::Alias(id) => builder.alias(id, line, column)?,
            // Documents are collected as they complete; comments, anchors
            // metadata and stream markers carry no data.
            _ => {}
        }
        if !builder.docs.is_empty() {
            // yaml.v2's Unmarshal, which Go confd used, decodes the first
            // document of a stream and never looks at the rest (not even for
            // syntax errors): later documents must not override its keys.
            break;
        }
    }
    Ok(builder.docs)
}

impl Builder {
    /// Fails when a collection starts where a mapping key is expected.
    fn expect_value(&self, line: usize, column: usize) -> Result<(), ParseError> {
        if let Some(Frame::Map {
            slot: KeySlot::Empty,
            ..
        }) = self.stack.last()
        {
            return Err(ParseError::at(
                line,
                column,
                "a mapping or list used as a mapping key is not supported",
            ));
        }
        Ok(())
    }

    fn scalar(
        &mut self,
        text: &str,
        style: ScalarStyle,
        anchor: usize,
        tag: Option<&Tag>,
        _line: usize,
        _column: usize,
    ) -> Result<(), ParseError> {
        if anchor != 0 {
            self.anchor_texts.insert(anchor, text.to_string());
        }
        if let Some(Frame::Map { slot, .. }) = self.stack.last_mut()
            && matches!(slot, KeySlot::Empty)
        {
            *slot = if style == ScalarStyle::Plain && tag.is_none() && text == "<<" {
                KeySlot::Merge
            } else {
                KeySlot::Key(text.to_string())
            };
            if anchor != 0 {
                self.anchors.insert(anchor, scalar_node(text, style, tag));
            }
            return Ok(());
        }
        self.value(scalar_node(text, style, tag), anchor);
        Ok(())
    }

    fn alias(&mut self, id: usize, line: usize, column: usize) -> Result<(), ParseError> {
        if let Some(Frame::Map { slot, .. }) = self.stack.last_mut()
            && matches!(slot, KeySlot::Empty)
        {
            let Some(text) = self.anchor_texts.get(&id) else {
                return Err(ParseError::at(
                    line,
                    column,
                    "an alias of a mapping or list used as a mapping key is not supported",
                ));
            };
            *slot = KeySlot::Key(text.clone());
            return Ok(());
        }
        let Some(node) = self.anchors.get(&id) else {
            return Err(ParseError::at(line, column, "alias of an unknown anchor"));
        };
        self.alias_budget += node_count(node);
        if self.alias_budget > MAX_ALIAS_NODES {
            return Err(ParseError::at(
                line,
                column,
                format!("aliases expand to more than {MAX_ALIAS_NODES} nodes"),
            ));
        }
        let node = node.clone();
        self.value(node, 0);
        Ok(())
    }

    /// A complete node: store its anchor and hand it to its parent.
    fn value(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                merges,
                slot,
                ..
            }) => match std::mem::replace(slot, KeySlot::Empty) {
                KeySlot::Key(key) => entries.push((key, node)),
                KeySlot::Merge => merges.push(node),
                // Keys are consumed in `scalar`/`alias`; collections as keys
                // are rejected in `expect_value`.
                KeySlot::Empty => {}
            },
        }
    }
}

/// A mapping's final entries: merged maps first (so explicit keys win when
/// flattening overwrites), earlier merge sources beating later ones, and a
/// repeated key keeping only its last value, as yaml.v2 does.
fn merge_entries(
    entries: Vec<(String, Node)>,
    merges: Vec<Node>,
    line: usize,
    column: usize,
) -> Result<Node, ParseError> {
    let mut merged: Vec<(String, Node)> = Vec::new();
    let push_first_wins = |merged: &mut Vec<(String, Node)>, k: String, v: Node| {
        if !merged.iter().any(|(mk, _)| *mk == k) {
            merged.push((k, v));
        }
    };
    for source in merges {
        match source {
            Node::Map(items) => {
                for (k, v) in items {
                    push_first_wins(&mut merged, k, v);
                }
            }
            Node::Seq(maps) => {
                for map in maps {
                    let Node::Map(items) = map else {
                        return Err(ParseError::at(
                            line,
                            column,
                            "a `<<` merge list may contain only mappings",
                        ));
                    };
                    for (k, v) in items {
                        push_first_wins(&mut merged, k, v);
                    }
                }
            }
            _ => {
                return Err(ParseError::at(
                    line,
                    column,
                    "the value of a `<<` merge key must be a mapping or a list of mappings",
                ));
            }
        }
    }
    let mut out: Vec<(String, Node)> = Vec::with_capacity(merged.len() + entries.len());
    for (k, v) in merged {
        if !entries.iter().any(|(ek, _)| *ek == k) {
            out.push((k, v));
        }
    }
    for (k, v) in entries {
        out.retain(|(ok, _)| *ok != k);
        out.push((k, v));
    }
    Ok(Node::Map(out))
}

fn node_count(node: &Node) -> usize {
    match node {
        Node::Seq(items) => 1 + items.iter().map(node_count).sum::<usize>(),
        Node::Map(entries) => 1 + entries.iter().map(|(_, v)| node_count(v)).sum::<usize>(),
        _ => 1,
    }
}

/// A scalar's value: quoted and block scalars and `!!str` are text; plain
/// scalars (and `!!int`/`!!float`/`!!bool`) resolve as yaml.v2 does; other
/// tags keep the text.
fn scalar_node(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Node {
    match tag.map(|t| t.core_suffix()) {
        Some(Some("null")) => Node::Null,
        Some(Some("bool" | "int" | "float")) => resolve_plain(text),
        Some(_) => Node::Str(text.to_string()),
        None if style == ScalarStyle::Plain => resolve_plain(text),
        None => Node::Str(text.to_string()),
    }
}

/// yaml.v2's `resolve` for an untagged plain scalar, into the Go types
/// confd's flattener distinguished.
pub(crate) fn resolve_plain(text: &str) -> Node {
    let hint = match text.as_bytes().first() {
        None => b'M',
        Some(b'+' | b'-') => b'S',
        Some(b'0'..=b'9') => b'D',
        Some(b'y' | b'Y' | b'n' | b'N' | b't' | b'T' | b'f' | b'F' | b'o' | b'O' | b'~') => b'M',
        Some(b'.') => b'.',
        Some(_) => return Node::Str(text.to_string()),
    };
    if let Some(node) = resolve_word(text) {
        return node;
    }
    match hint {
        b'.' => {
            if is_dot_float(text)
                && let Ok(f) = text.parse::<f64>()
                && f.is_finite()
            {
                return Node::Float(f);
            }
        }
        b'D' | b'S' => {
            // yaml.v2 tries timestamps here but hands them back as the
            // original text, which is what the fall-through below does.
            let plain = text.replace('_', "");
            match go_parse_int(&plain) {
                Ok(i) => return Node::Int(i),
                Err(_) => {
                    if go_parse_uint(&plain).is_ok() {
                        return Node::Dropped;
                    }
                }
            }
            // Go's ParseFloat fails on overflow, so a value that rounds to
            // infinity stays text.
            if is_yaml_style_float(&plain)
                && let Ok(f) = plain.parse::<f64>()
                && f.is_finite()
            {
                return Node::Float(f);
            }
        }
        _ => {}
    }
    Node::Str(text.to_string())
}

/// yaml.v2's `resolveMap`: the YAML 1.1 booleans, nulls and special floats.
fn resolve_word(text: &str) -> Option<Node> {
    Some(match text {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            Node::Bool(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            Node::Bool(false)
        }
        "" | "~" | "null" | "Null" | "NULL" => Node::Null,
        ".nan" | ".NaN" | ".NAN" => Node::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => Node::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Node::Float(f64::NEG_INFINITY),
        _ => return None,
    })
}

/// `^\.[0-9]+([eE][-+]?[0-9]+)?$`: the floats Go's ParseFloat accepts after
/// a leading dot.
fn is_dot_float(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('.') else {
        return false;
    };
    let digits = leading_digits(rest);
    digits > 0 && is_exponent_or_empty(&rest[digits..])
}

/// yaml.v2's `yamlStyleFloat`:
/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_yaml_style_float(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let rest = if let Some(frac) = s.strip_prefix('.') {
        let n = leading_digits(frac);
        if n == 0 {
            return false;
        }
        &frac[n..]
    } else {
        let n = leading_digits(s);
        if n == 0 {
            return false;
        }
        let after = &s[n..];
        match after.strip_prefix('.') {
            Some(frac) => &frac[leading_digits(frac)..],
            None => after,
        }
    };
    is_exponent_or_empty(rest)
}

fn is_exponent_or_empty(s: &str) -> bool {
    if s.is_empty() {
        return true;
    }
    let Some(exp) = s.strip_prefix(['e', 'E']) else {
        return false;
    };
    let exp = exp.strip_prefix(['-', '+']).unwrap_or(exp);
    let n = leading_digits(exp);
    n > 0 && n == exp.len()
}

fn leading_digits(s: &str) -> usize {
    s.bytes().take_while(u8::is_ascii_digit).count()
}

/// Why a Go integer parse failed (only the distinction matters to callers).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum IntError {
    Syntax,
    Range,
}

/// Go's `strconv.ParseInt(s, 0, 64)` for input without underscores: optional
/// sign, then `0x`/`0o`/`0b` prefixes or a leading `0` for octal.
pub(crate) fn go_parse_int(s: &str) -> Result<i64, IntError> {
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let magnitude = go_parse_uint(digits)?;
    const CUTOFF: u64 = 1 << 63;
    if neg {
        if magnitude > CUTOFF {
            return Err(IntError::Range);
        }
        // -(2^63) is representable; wrapping_neg maps it onto i64::MIN.
        Ok((magnitude as i64).wrapping_neg())
    } else if magnitude >= CUTOFF {
        Err(IntError::Range)
    } else {
        Ok(magnitude as i64)
    }
}

/// Go's `strconv.ParseUint(s, 0, 64)` for input without underscores.
pub(crate) fn go_parse_uint(s: &str) -> Result<u64, IntError> {
    if s.is_empty() {
        return Err(IntError::Syntax);
    }
    let bytes = s.as_bytes();
    let (base, digits) = if bytes[0] == b'0' {
        match bytes.get(1).map(u8::to_ascii_lowercase) {
            Some(b'b') if bytes.len() >= 3 => (2, &s[2..]),
            Some(b'o') if bytes.len() >= 3 => (8, &s[2..]),
            Some(b'x') if bytes.len() >= 3 => (16, &s[2..]),
            _ => (8, &s[1..]),
        }
    } else {
        (10, s)
    };
    let mut value: u64 = 0;
    let mut overflow = false;
    for c in digits.chars() {
        let d = c.to_digit(base).ok_or(IntError::Syntax)?;
        match value
            .checked_mul(u64::from(base))
            .and_then(|v| v.checked_add(u64::from(d)))
        {
            Some(v) => value = v,
            None => overflow = true,
        }
    }
    if overflow {
        Err(IntError::Range)
    } else {
        Ok(value)
    }
}

#[cfg(test)]
mod tests;
