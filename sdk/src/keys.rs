//! Key-path helpers every backend needs: the `Database` contract says a requested key matches
//! itself and what lies below it as a path, and these keep that rule in one place.

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
    fn under_is_by_path_segment() {
        assert!(is_under("/app", "/app"));
        assert!(is_under("/app/x", "/app"));
        assert!(is_under("/app/x", "/app/"));
        assert!(!is_under("/application", "/app"));
        assert!(!is_under("/ap", "/app"));
        assert!(is_under("/anything", "/"));
        assert!(is_under("/anything", ""));
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
