//! How one secret becomes confd keys. A secret whose only field is a string `value` is that
//! string at its path (the original confd's rule, so `vault write secret/key value=x` reads as
//! `/secret/key`). Any other secret is its JSON at its path plus one key per field below it:
//! strings as they are, whole numbers without a fraction, booleans as `true`/`false`, arrays as
//! JSON, nested objects as their JSON and again field by field; null fields are left out.

use std::collections::BTreeMap;

use serde_json::Value;

/// Adds the keys of the secret `data` read at `path` to `out`.
pub fn secret(path: &str, data: &Value, out: &mut BTreeMap<String, String>) {
    if let Value::Object(fields) = data
        && fields.len() == 1
        && let Some(Value::String(value)) = fields.get("value")
    {
        out.insert(path.to_string(), value.clone());
        return;
    }
    node(path, data, out);
}

fn node(path: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Null => {}
        Value::String(s) => {
            out.insert(path.to_string(), s.clone());
        }
        Value::Bool(b) => {
            out.insert(path.to_string(), b.to_string());
        }
        Value::Number(n) => {
            out.insert(path.to_string(), number(n));
        }
        Value::Array(_) => {
            out.insert(path.to_string(), value.to_string());
        }
        Value::Object(fields) => {
            out.insert(path.to_string(), value.to_string());
            for (name, field) in fields {
                node(&format!("{path}/{name}"), field, out);
            }
        }
    }
}

/// A JSON number as people write it: `3306`, not `3306.0`.
fn number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    match n.as_f64() {
        Some(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15 => format!("{f:.0}"),
        _ => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn flat(data: Value) -> Vec<(String, String)> {
        let mut out = BTreeMap::new();
        secret("/kv/app", &data, &mut out);
        out.into_iter().collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_lone_value_field_is_the_secret_itself() {
        assert_eq!(flat(json!({"value": "x"})), pairs(&[("/kv/app", "x")]));
        // Not alone, or not a string: the general rule.
        assert_eq!(
            flat(json!({"value": 1})),
            pairs(&[("/kv/app", "{\"value\":1}"), ("/kv/app/value", "1")])
        );
    }

    #[test]
    fn fields_are_flattened_by_type() {
        let got = flat(json!({
            "host": "db", "port": 3306, "ratio": 0.5, "big": 1e3, "tls": true,
            "tags": ["a", "b"], "gone": null, "nested": {"user": "u", "deep": {"k": "v"}}
        }));
        let map: BTreeMap<_, _> = got.into_iter().collect();
        assert_eq!(map["/kv/app/host"], "db");
        assert_eq!(map["/kv/app/port"], "3306");
        assert_eq!(map["/kv/app/ratio"], "0.5");
        assert_eq!(map["/kv/app/big"], "1000");
        assert_eq!(map["/kv/app/tls"], "true");
        assert_eq!(map["/kv/app/tags"], "[\"a\",\"b\"]");
        assert!(!map.contains_key("/kv/app/gone"));
        assert_eq!(map["/kv/app/nested/user"], "u");
        assert_eq!(map["/kv/app/nested/deep/k"], "v");
        assert_eq!(map["/kv/app/nested/deep"], "{\"k\":\"v\"}");
        let whole: Value = serde_json::from_str(&map["/kv/app"]).expect("JSON at the path");
        assert_eq!(whole["port"], 3306);
    }
}
