//! Key paths: the one implementation of the path rules confd's stores, templates and resources
//! share. The original confd runs every key through Go's `path` package (`path.Join`,
//! `path.Clean`); matching a requested key against store keys is by path segment, so `/app`
//! covers `/app/x` and never `/application`.
//!
//! ```
//! use confd_keys::{clean, is_under, join, rooted};
//! assert_eq!(clean("/app//db/./x/"), "/app/db/x");
//! assert_eq!(rooted("app/db"), "/app/db");
//! assert_eq!(join("/app", "db/"), "/app/db");
//! assert!(is_under("/app/db", "/app"));
//! assert!(!is_under("/application", "/app"));
//! ```

/// The keys a watch covers: a watch given no keys covers its whole prefix. Every store's
/// `watch_prefix` reads its `keys` argument through this, so they agree on the empty case.
pub fn watched(prefix: &str, keys: &[String]) -> Vec<String> {
    if keys.is_empty() {
        vec![prefix.to_string()]
    } else {
        keys.to_vec()
    }
}

/// Go's `path.Clean`: `//` collapses, `.` segments go, `..` pops a segment (never above `/` in a
/// rooted path; kept at the front of a relative one), a trailing `/` is dropped, and the empty
/// path is `.`. Glob characters such as `*` are ordinary characters here.
pub fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let is_rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !is_rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    match (is_rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// `path.Clean("/" + key)`, i.e. Go's `path.Join("/", key)`, which the original confd applies to
/// keys: always starts with `/`, never ends with one (but for `/` itself), no `//`, `.` or `..`.
pub fn rooted(key: &str) -> String {
    let mut path = String::with_capacity(key.len() + 1);
    path.push('/');
    path.push_str(key);
    clean(&path)
}

/// Go's `path.Join(base, segment)`: empty elements add nothing and the result is cleaned.
pub fn join(base: &str, segment: &str) -> String {
    match (base.is_empty(), segment.is_empty()) {
        (true, true) => String::new(),
        (false, true) => clean(base),
        (true, false) => clean(segment),
        (false, false) => clean(&format!("{base}/{segment}")),
    }
}

/// Go's `path.Base`: the last element, `/` for the root and `.` for the empty path.
pub fn base(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/".to_string();
    }
    match trimmed.rfind('/') {
        Some(i) => trimmed[i + 1..].to_string(),
        None => trimmed.to_string(),
    }
}

/// Go's `path.Dir`: everything but the last element, cleaned.
pub fn dir(path: &str) -> String {
    let head = match path.rfind('/') {
        Some(i) => &path[..=i],
        None => "",
    };
    clean(head)
}

/// Whether store key `key` is `requested` or lies below it as a path: `/app` covers `/app` and
/// `/app/x`, never `/application`. A trailing `/` on `requested` is ignored, and `/` (or an
/// empty key) covers everything.
pub fn is_under(key: &str, requested: &str) -> bool {
    let base = requested.trim_end_matches('/');
    base.is_empty()
        || key == base
        || key
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// `key` made relative to `prefix` by path segments (`/prefix/a/b` is `/a/b`, `/prefix` itself is
/// `/`), or `None` when it is not below the prefix. A prefix of `/` keeps rooted keys as they are.
pub fn relative_to(key: &str, prefix: &str) -> Option<String> {
    let base = prefix.trim_end_matches('/');
    if base.is_empty() {
        return key.starts_with('/').then(|| key.to_string());
    }
    match key.strip_prefix(base) {
        Some("") => Some("/".to_string()),
        Some(rest) if rest.starts_with('/') => Some(rest.to_string()),
        _ => None,
    }
}

/// The longest common string prefix of `keys` (cut on a character boundary), for stores whose
/// watch or scan takes one prefix: one prefix covers every key, and results are then filtered
/// per key with [`is_under`]. Empty for no keys.
pub fn common_prefix(keys: &[String]) -> String {
    let Some(first) = keys.first() else {
        return String::new();
    };
    let mut len = first.len();
    for key in &keys[1..] {
        len = len.min(
            first
                .bytes()
                .zip(key.bytes())
                .take_while(|(a, b)| a == b)
                .count(),
        );
    }
    while !first.is_char_boundary(len) {
        len -= 1;
    }
    first[..len].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_without_keys_covers_its_prefix() {
        assert_eq!(watched("/app", &[]), ["/app"]);
        let keys = ["/app/a".to_string(), "/app/b".to_string()];
        assert_eq!(watched("/app", &keys), keys);
    }

    #[test]
    fn clean_follows_go() {
        // Cases from Go's path.Clean documentation and tests.
        for (input, want) in [
            ("", "."),
            ("/", "/"),
            ("abc", "abc"),
            ("abc/def", "abc/def"),
            ("a/b/c", "a/b/c"),
            (".", "."),
            ("..", ".."),
            ("../..", "../.."),
            ("../../abc", "../../abc"),
            ("/abc", "/abc"),
            ("abc/", "abc"),
            ("/abc/def/", "/abc/def"),
            ("//abc", "/abc"),
            ("abc//def//ghi", "abc/def/ghi"),
            ("abc/./def", "abc/def"),
            ("/./abc/def", "/abc/def"),
            ("abc/def/ghi/../jkl", "abc/def/jkl"),
            ("abc/def/../ghi/../jkl", "abc/jkl"),
            ("abc/..", "."),
            ("abc/../../..", "../.."),
            ("/abc/../../..", "/"),
            ("a/../..", ".."),
            ("/a//b/../c/", "/a/c"),
            ("/upstream/*", "/upstream/*"),
        ] {
            assert_eq!(clean(input), want, "clean({input:?})");
        }
    }

    #[test]
    fn rooted_is_join_with_the_root() {
        assert_eq!(rooted(""), "/");
        assert_eq!(rooted("/"), "/");
        assert_eq!(rooted("//disc//name/"), "/disc/name");
        assert_eq!(rooted("a/./b/../c"), "/a/c");
        assert_eq!(rooted("/../.."), "/");
        assert_eq!(rooted("app/db/"), "/app/db");
        assert_eq!(rooted("/app/z/./y"), "/app/z/y");
    }

    #[test]
    fn join_follows_go() {
        assert_eq!(join("/", "service"), "/service");
        assert_eq!(join("/service", "split/inside"), "/service/split/inside");
        assert_eq!(join("/service", ""), "/service");
        assert_eq!(join("", "a"), "a");
        assert_eq!(join("", ""), "");
        assert_eq!(join("/a", "b/"), "/a/b");
        assert_eq!(join("/a", ".."), "/");
        assert_eq!(join("/a", "dotted.name"), "/a/dotted.name");
    }

    #[test]
    fn base_and_dir_follow_go() {
        assert_eq!(base(""), ".");
        assert_eq!(base("/"), "/");
        assert_eq!(base("/a/b/"), "b");
        assert_eq!(base("a"), "a");
        assert_eq!(dir("/a/b"), "/a");
        assert_eq!(dir("a"), ".");
        assert_eq!(dir("/"), "/");
        assert_eq!(dir(""), ".");
    }

    #[test]
    fn under_is_by_path_segment() {
        assert!(is_under("/app", "/app"));
        assert!(is_under("/app/x", "/app"));
        assert!(is_under("/app/x", "/app/"));
        assert!(!is_under("/application", "/app"));
        assert!(!is_under("/application/x", "/app"));
        assert!(!is_under("/ap", "/app"));
        assert!(is_under("/anything", "/"));
        assert!(is_under("/anything", ""));
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
    fn common_prefix_of_keys() {
        let keys = ["/app/db".to_string(), "/app/dc/x".to_string()];
        assert_eq!(common_prefix(&keys), "/app/d");
        assert_eq!(common_prefix(&["/x".to_string()]), "/x");
        assert_eq!(common_prefix(&[]), "");
        let wide = ["/é1".to_string(), "/é2".to_string(), "/ê".to_string()];
        assert_eq!(common_prefix(&wide), "/");
    }
}
