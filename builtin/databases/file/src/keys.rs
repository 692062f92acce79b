//! Which flattened keys a request selects ("at or below", by path), with the
//! shared Go `path.Join` the flattened keys must reproduce.

use std::collections::BTreeMap;

pub(crate) use confd_sdk::keys::join;

/// A requested key as a rooted, clean path: a trailing `/*` is dropped (the
/// fork's fix for `keys = ["/app/*"]`), `app` means `/app`.
pub(crate) fn normalize(key: &str) -> String {
    let key = key.strip_suffix("/*").unwrap_or(key);
    confd_sdk::keys::rooted(key)
}

/// The entries equal to or below any requested key, as a path (`/app`
/// selects `/app` and `/app/x`, never `/application`).
pub(crate) fn select(all: &BTreeMap<String, String>, keys: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for key in keys {
        let key = normalize(key);
        if key == "/" {
            return all.clone();
        }
        for (k, v) in all.range(key.clone()..) {
            let Some(rest) = k.strip_prefix(key.as_str()) else {
                break;
            };
            if rest.is_empty() || rest.starts_with('/') {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_and_clean_follow_go() {
        assert_eq!(join("/", "service"), "/service");
        assert_eq!(join("/service", "split/inside"), "/service/split/inside");
        assert_eq!(join("/service", ""), "/service");
        assert_eq!(join("/a", "b/"), "/a/b");
        assert_eq!(join("/a", ".."), "/");
        assert_eq!(join("/a", "dotted.name"), "/a/dotted.name");
    }

    #[test]
    fn selection_is_by_path() {
        let all: BTreeMap<String, String> = [
            "/app",
            "/app/x",
            "/app/y/z",
            "/app-x",
            "/application/a",
            "/apple",
            "/b",
        ]
        .iter()
        .map(|k| (k.to_string(), format!("v{k}")))
        .collect();
        let sel = |keys: &[&str]| -> Vec<String> {
            let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
            select(&all, &keys).into_keys().collect()
        };
        assert_eq!(sel(&["/app"]), ["/app", "/app/x", "/app/y/z"]);
        assert_eq!(sel(&["/app/*"]), ["/app", "/app/x", "/app/y/z"]);
        assert_eq!(sel(&["/app/"]), ["/app", "/app/x", "/app/y/z"]);
        assert_eq!(sel(&["/app/x"]), ["/app/x"]);
        assert_eq!(sel(&["app/y", "/b"]), ["/app/y/z", "/b"]);
        assert_eq!(sel(&["/ap"]), Vec::<String>::new());
        assert_eq!(sel(&["/"]).len(), all.len());
        assert_eq!(sel(&[]), Vec::<String>::new());
    }
}
