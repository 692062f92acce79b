//! Key and prefix resolution: which store keys a resource asks for and what
//! the template sees. Path rules, not string rules, so `/app` never picks up
//! `/application` (a deliberate fix of confd's plain string prefix trim).

use std::collections::BTreeMap;

/// Cleans a slash-separated path like Go's `path.Clean` on an absolute path:
/// `//` collapses, `.` segments go, `..` pops a segment (never above `/`) and a
/// trailing `/` is dropped. The result always starts with `/`; `*` and other
/// glob characters are kept as they are.
pub fn clean(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    if segments.is_empty() {
        "/".to_string()
    } else {
        let mut out = String::with_capacity(path.len() + 1);
        for s in segments {
            out.push('/');
            out.push_str(s);
        }
        out
    }
}

/// Joins the global prefix and a resource prefix as path segments:
/// `/g` + `/r` is `/g/r`, either may be empty, both empty is `/`.
pub fn join_prefix(global: &str, resource: &str) -> String {
    clean(&format!("{global}/{resource}"))
}

/// The store key a resource key stands for under `prefix`
/// (`/prefix` + `/database/host/` is `/prefix/database/host`).
pub fn query_key(prefix: &str, key: &str) -> String {
    clean(&format!("{prefix}/{key}"))
}

/// True when `key` equals `base` or lies below it as a path.
pub fn is_under(key: &str, base: &str) -> bool {
    if base == "/" {
        return key.starts_with('/');
    }
    match key.strip_prefix(base) {
        Some("") => true,
        Some(rest) => rest.starts_with('/'),
        None => false,
    }
}

/// `key` made relative to `prefix` by path segments (`/prefix/a/b` is `/a/b`,
/// `/prefix` itself is `/`), or `None` when it is not below the prefix.
pub fn relative_to(key: &str, prefix: &str) -> Option<String> {
    if prefix == "/" {
        return key.starts_with('/').then(|| key.to_string());
    }
    match key.strip_prefix(prefix) {
        Some("") => Some("/".to_string()),
        Some(rest) if rest.starts_with('/') => Some(rest.to_string()),
        _ => None,
    }
}

/// What the template of a resource sees: the backend's answer with every key
/// made relative to `prefix` by path segments. A key outside the prefix is
/// kept as it is (confd's string trim leaves it alone too).
///
/// Selecting keys (equal to a query key or below it as a path) is the
/// backend's job under the `Database::get_values` contract; it is not
/// repeated here because some backends map names lossily (env: key `/my_app`
/// reads `MY_APP_COLOR`, which comes back as `/my/app/color`, and confd shows
/// it to the template; the conformance set pins that).
pub fn store_values(values: &BTreeMap<String, String>, prefix: &str) -> BTreeMap<String, String> {
    values
        .iter()
        .map(|(key, value)| {
            let relative = relative_to(key, prefix).unwrap_or_else(|| key.clone());
            (relative, value.clone())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_handles_slashes_dots_and_globs() {
        assert_eq!(clean(""), "/");
        assert_eq!(clean("/"), "/");
        assert_eq!(clean("//disc//name/"), "/disc/name");
        assert_eq!(clean("a/./b/../c"), "/a/c");
        assert_eq!(clean("/../.."), "/");
        assert_eq!(clean("/upstream/*"), "/upstream/*");
    }

    #[test]
    fn prefixes_join_as_segments() {
        assert_eq!(join_prefix("", ""), "/");
        assert_eq!(join_prefix("/g", "/r"), "/g/r");
        assert_eq!(join_prefix("g/", "r/"), "/g/r");
        assert_eq!(join_prefix("/g", ""), "/g");
        assert_eq!(join_prefix("", "r"), "/r");
        assert_eq!(join_prefix("/", "/"), "/");
    }

    #[test]
    fn query_keys_join_prefix_and_key() {
        assert_eq!(
            query_key("/prefix", "/database/host"),
            "/prefix/database/host"
        );
        assert_eq!(
            query_key("/", "/services/zookeeper/"),
            "/services/zookeeper"
        );
        assert_eq!(query_key("/p", "/"), "/p");
        assert_eq!(query_key("/p", ""), "/p");
    }

    #[test]
    fn under_is_by_path_segment() {
        assert!(is_under("/app", "/app"));
        assert!(is_under("/app/x", "/app"));
        assert!(!is_under("/application", "/app"));
        assert!(!is_under("/application/x", "/app"));
        assert!(is_under("/anything", "/"));
    }

    #[test]
    fn relative_is_by_path_segment() {
        assert_eq!(
            relative_to("/prefix/a/b", "/prefix").as_deref(),
            Some("/a/b")
        );
        assert_eq!(relative_to("/prefix", "/prefix").as_deref(), Some("/"));
        assert_eq!(relative_to("/prefixed/a", "/prefix"), None);
        assert_eq!(relative_to("/a/b", "/").as_deref(), Some("/a/b"));
    }

    #[test]
    fn store_values_are_relative_to_the_prefix() {
        let values: BTreeMap<String, String> = [("/p/app/x", "1"), ("/p", "0"), ("/pq/y", "2")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let got = store_values(&values, "/p");
        let want: BTreeMap<String, String> = [("/app/x", "1"), ("/", "0"), ("/pq/y", "2")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);
        assert_eq!(store_values(&values, "/"), values);
    }
}
