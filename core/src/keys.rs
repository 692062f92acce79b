//! Key and prefix resolution: which store keys a resource asks for and what
//! the template sees. Path rules, not string rules, so `/app` never picks up
//! `/application` (a deliberate fix of confd's plain string prefix trim).

use std::collections::BTreeMap;

use confd_sdk::keys::{relative_to, rooted};

/// Joins the global prefix and a resource prefix as path segments:
/// `/g` + `/r` is `/g/r`, either may be empty, both empty is `/`.
pub fn join_prefix(global: &str, resource: &str) -> String {
    rooted(&format!("{global}/{resource}"))
}

/// The store key a resource key stands for under `prefix`
/// (`/prefix` + `/database/host/` is `/prefix/database/host`).
pub fn query_key(prefix: &str, key: &str) -> String {
    rooted(&format!("{prefix}/{key}"))
}

/// What the template of a resource sees: the backend's answer with every key cleaned as Go's
/// `path.Join("/", key)` does (the original confd cleans every key a backend returns: `/app/db/`
/// is `/app/db`, `/app//x` is `/app/x`; when two raw keys clean to the same path, the later in
/// key order wins, as the original's sequential `Set` does) and made relative to `prefix` by path
/// segments. A key outside the prefix is kept as it is (confd's string trim leaves it alone too).
/// Cleaning here, where every backend's answer passes, holds for third-party plugins as well.
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
            let key = rooted(key);
            let relative = relative_to(&key, prefix).unwrap_or(key);
            (relative, value.clone())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn store_keys_are_cleaned_like_go_path_join() {
        let values: BTreeMap<String, String> = [
            ("/p/app/db/", "trailing"),
            ("/p/app//x", "double"),
            ("/p/app/z/./y", "dot"),
            ("/p/app/db", "plain"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let got = store_values(&values, "/p");
        let want: BTreeMap<String, String> = [
            ("/app/db", "trailing"),
            ("/app/x", "double"),
            ("/app/z/y", "dot"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want, "the later raw key in key order wins");
    }
}
