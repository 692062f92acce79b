//! `toJson` and `toPrettyJson` print what Go's `json.Marshal` and `json.MarshalIndent(v, "", "  ")`
//! print in abtreece/confd, which serde_json does not: Go writes `1000000` for the float 1e6 and
//! `1e+21` past 10^21, escapes `<`, `>`, `&`, U+2028 and U+2029, and encodes confd's Go values
//! (a pair as `{"Key":…,"Value":…}`, a time as an RFC 3339 string, a month as its number).

use std::fmt::Write as _;

use crate::gofmt;
use crate::value::Val;

/// `v` as Go's encoding/json writes it; `pretty` indents by two spaces like `MarshalIndent`.
pub(crate) fn marshal(v: &Val, pretty: bool) -> Result<String, String> {
    let mut out = String::new();
    write_value(&mut out, v, pretty.then_some(0))?;
    Ok(out)
}

/// Writes `v`; `depth` is the indentation level when pretty-printing.
fn write_value(out: &mut String, v: &Val, depth: Option<usize>) -> Result<(), String> {
    match v {
        Val::Nil => out.push_str("null"),
        Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Val::Int(i) | Val::Duration(i) => {
            let _ = write!(out, "{i}");
        }
        Val::Month(n) | Val::Weekday(n) => {
            let _ = write!(out, "{n}");
        }
        Val::Float(f) => out.push_str(&float(*f)?),
        Val::Str(s) => push_string(out, s),
        // time.Time's MarshalJSON: RFC 3339 with as many fraction digits as needed.
        Val::Time(t) => push_string(out, &t.format("2006-01-02T15:04:05.999999999Z07:00")),
        // *time.Location has only unexported fields.
        Val::Location(_) => out.push_str("{}"),
        Val::List(items) => {
            write_seq(out, items.iter(), depth, '[', ']', |out, item, d| {
                write_value(out, item, d)
            })?;
        }
        Val::Map(m) => write_object(out, m.iter().map(|(k, v)| (k.as_str(), v)), depth)?,
        Val::Pair(p) => {
            let (k, v) = (Val::Str(p.key.clone()), Val::Str(p.value.clone()));
            write_object(out, [("Key", &k), ("Value", &v)].into_iter(), depth)?;
        }
        Val::Srv(s) => {
            let fields = [
                Val::Str(s.target.clone()),
                Val::Int(i64::from(s.port)),
                Val::Int(i64::from(s.priority)),
                Val::Int(i64::from(s.weight)),
            ];
            let names = ["Target", "Port", "Priority", "Weight"];
            write_object(out, names.into_iter().zip(fields.iter()), depth)?;
        }
    }
    Ok(())
}

fn write_object<'a>(
    out: &mut String,
    entries: impl Iterator<Item = (&'a str, &'a Val)>,
    depth: Option<usize>,
) -> Result<(), String> {
    write_seq(out, entries, depth, '{', '}', |out, (k, v), d| {
        push_string(out, k);
        out.push(':');
        if d.is_some() {
            out.push(' ');
        }
        write_value(out, v, d)
    })
}

/// A JSON array or object: `open`, the items separated by commas (each on its own line when
/// pretty-printing), `close`; an empty one stays `[]` or `{}` as in Go.
fn write_seq<T>(
    out: &mut String,
    items: impl Iterator<Item = T>,
    depth: Option<usize>,
    open: char,
    close: char,
    mut item: impl FnMut(&mut String, T, Option<usize>) -> Result<(), String>,
) -> Result<(), String> {
    out.push(open);
    let inner = depth.map(|d| d + 1);
    let mut any = false;
    for x in items {
        if any {
            out.push(',');
        }
        any = true;
        newline(out, inner);
        item(out, x, inner)?;
    }
    if any {
        newline(out, depth);
    }
    out.push(close);
    Ok(())
}

fn newline(out: &mut String, depth: Option<usize>) {
    if let Some(d) = depth {
        out.push('\n');
        for _ in 0..d {
            out.push_str("  ");
        }
    }
}

/// Go's float64 encoding: the shortest digits, plain below 1e21 and from 1e-6 on, otherwise
/// exponent form with at least one exponent digit (`1e-7`, `1e+21`).
fn float(f: f64) -> Result<String, String> {
    if !f.is_finite() {
        return Err(format!(
            "json: unsupported value: {}",
            gofmt::format_float(f, 'g', None)
        ));
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = gofmt::format_float(f, 'e', None);
        // e-07 → e-7, as Go cleans it up.
        return Ok(match s.rsplit_once("e-0") {
            Some((m, d)) if d.len() == 1 => format!("{m}e-{d}"),
            _ => s,
        });
    }
    Ok(gofmt::format_float(f, 'f', None))
}

/// A JSON string as Go escapes it (with HTML escaping, Go's default; `\b` and `\f` as Go 1.22
/// and later write them).
fn push_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn json(v: &Val) -> String {
        marshal(v, false).expect("encodes")
    }

    #[test]
    fn floats_like_go() {
        for (f, want) in [
            (1e6, "1000000"),
            (8080.0, "8080"),
            (0.5, "0.5"),
            (-2.25, "-2.25"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (1.5e300, "1.5e+300"),
            (0.000001, "0.000001"),
            (0.0000001, "1e-7"),
            (1.2e-10, "1.2e-10"),
            (0.0, "0"),
        ] {
            assert_eq!(json(&Val::Float(f)), want, "{f}");
        }
        assert_eq!(
            marshal(&Val::Float(f64::NAN), false),
            Err("json: unsupported value: NaN".to_string())
        );
    }

    #[test]
    fn strings_escape_like_go() {
        assert_eq!(
            json(&Val::from("a\"b\\c\n\t<x>&\u{1}\u{7f}é\u{2028}\x08")),
            "\"a\\\"b\\\\c\\n\\t\\u003cx\\u003e\\u0026\\u0001\u{7f}é\\u2028\\b\""
        );
    }

    #[test]
    fn compact_and_pretty() {
        let v = Val::Map(BTreeMap::from([
            ("b".to_string(), Val::List(vec![Val::Int(1), Val::Nil])),
            ("a".to_string(), Val::Map(BTreeMap::new())),
            ("c".to_string(), Val::List(Vec::new())),
        ]));
        assert_eq!(json(&v), r#"{"a":{},"b":[1,null],"c":[]}"#);
        assert_eq!(
            marshal(&v, true).expect("encodes"),
            "{\n  \"a\": {},\n  \"b\": [\n    1,\n    null\n  ],\n  \"c\": []\n}"
        );
        assert_eq!(marshal(&Val::from("x"), true).expect("encodes"), "\"x\"");
    }

    #[test]
    fn go_structs() {
        assert_eq!(
            json(&crate::funcs::pair("/k", "v")),
            r#"{"Key":"/k","Value":"v"}"#
        );
        assert_eq!(
            json(&crate::funcs::srv("a.", 80, 1, 2)),
            r#"{"Target":"a.","Port":80,"Priority":1,"Weight":2}"#
        );
        assert_eq!(json(&Val::Month(3)), "3");
        assert_eq!(json(&Val::Duration(1_000_000_000)), "1000000000");
    }
}
