//! Path arithmetic on store keys: Go's `path.Join`/`path.Clean` (which the
//! flattened keys must reproduce) and "at or below" selection.

use std::collections::BTreeMap;

/// Go's `path.Clean` for the rooted paths this backend produces.
pub(crate) fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            seg => parts.push(seg),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Go's `path.Join(base, seg)` with a rooted `base`; an empty segment adds
/// nothing.
pub(crate) fn join(base: &str, seg: &str) -> String {
    if seg.is_empty() {
        clean(base)
    } else {
        clean(&format!("{base}/{seg}"))
    }
}

/// A requested key as a rooted, clean path: a trailing `/*` is dropped (the
/// fork's fix for `keys = ["/app/*"]`), `app` means `/app`.
pub(crate) fn normalize(key: &str) -> String {
    let key = key.strip_suffix("/*").unwrap_or(key);
    clean(key)
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
        assert_eq!(clean("//a//b/"), "/a/b");
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
