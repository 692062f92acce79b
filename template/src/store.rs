//! The key store templates read from: confd's `memkv` semantics over the keys of one resource.
//!
//! Keys are relative to the resource prefix and always start with `/`. The store is immutable once
//! built, so one render can share it between threads without locking.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use thiserror::Error;

/// A key/value pair as confd's `memkv.KVPair` exposes it to templates.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KvPair {
    /// The key, relative to the resource prefix (starts with `/`).
    pub key: String,
    /// The value.
    pub value: String,
}

/// Errors from store lookups; the messages are confd's.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreError {
    /// `get`/`getv` without default of a key that is not in the store.
    #[error("key does not exist: {0}")]
    KeyNotFound(String),
    /// `gets`/`getvs` with a malformed glob pattern.
    #[error("syntax error in pattern: {0}")]
    BadPattern(String),
}

/// The key store of one render. Cloning is cheap (the map is shared), so an engine can hold on
/// to the store for the length of a render.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Store {
    map: Arc<BTreeMap<String, String>>,
}

impl From<BTreeMap<String, String>> for Store {
    fn from(map: BTreeMap<String, String>) -> Self {
        Store::new(map)
    }
}

impl FromIterator<(String, String)> for Store {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Store::new(iter.into_iter().collect())
    }
}

impl Store {
    /// Builds a store from keys relative to the resource prefix.
    pub fn new(map: BTreeMap<String, String>) -> Self {
        Store { map: Arc::new(map) }
    }

    /// All keys and values, sorted by key.
    pub fn entries(&self) -> &BTreeMap<String, String> {
        &self.map
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// `exists`: the exact key is present.
    pub fn exists(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// `get`: the pair of an exact key.
    pub fn get(&self, key: &str) -> Result<KvPair, StoreError> {
        self.map
            .get_key_value(key)
            .map(|(k, v)| KvPair {
                key: k.clone(),
                value: v.clone(),
            })
            .ok_or_else(|| StoreError::KeyNotFound(key.to_string()))
    }

    /// `getv`: the value of an exact key, or `default` when it is missing.
    pub fn getv(&self, key: &str, default: Option<&str>) -> Result<String, StoreError> {
        match (self.map.get(key), default) {
            (Some(v), _) => Ok(v.clone()),
            (None, Some(d)) => Ok(d.to_string()),
            (None, None) => Err(StoreError::KeyNotFound(key.to_string())),
        }
    }

    /// `gets`: every pair whose key matches the Go `path.Match` glob, sorted by key.
    ///
    /// A malformed pattern is an error even on an empty store (confd only notices it when there
    /// is a key to match against; an error that depends on the data is a trap, so we always check).
    pub fn gets(&self, pattern: &str) -> Result<Vec<KvPair>, StoreError> {
        validate_pattern(pattern).map_err(|()| StoreError::BadPattern(pattern.to_string()))?;
        let mut out = Vec::new();
        for (k, v) in self.map.iter() {
            if path_match(pattern, k).map_err(|()| StoreError::BadPattern(pattern.to_string()))? {
                out.push(KvPair {
                    key: k.clone(),
                    value: v.clone(),
                });
            }
        }
        Ok(out)
    }

    /// `getvs`: the values of `gets(pattern)`, sorted by value.
    pub fn getvs(&self, pattern: &str) -> Result<Vec<String>, StoreError> {
        let mut values: Vec<String> = self.gets(pattern)?.into_iter().map(|p| p.value).collect();
        values.sort();
        Ok(values)
    }

    /// `ls`: sorted, unique names of the direct children of `path` (memkv `List`).
    ///
    /// A key equal to `path` contributes its own base name, as in memkv. Unlike memkv, `ls "/"`
    /// lists the top level like any other directory.
    pub fn ls(&self, path: &str) -> Vec<String> {
        let prefix = path_terms(path);
        // Borrowed names, sorted once at the end: `make bench` (million: 1,000 resources each
        // running `ls "/"` over 1,000 keys) spent most of its render time allocating a String per
        // key and per term and inserting into a set; this took the 100k one-shot's CPU from
        // 0.66 s to 0.43 s (host + plugin, `--noop`).
        let mut names: Vec<Cow<'_, str>> = Vec::new();
        for key in self.map.keys() {
            if key == path {
                names.push(Cow::Owned(confd_keys::base(key)));
                continue;
            }
            if dir_below(&prefix, key).is_some() {
                let stripped = strip_key(key, path);
                let first = stripped.split('/').next().unwrap_or_default();
                names.push(Cow::Borrowed(first));
            }
        }
        sorted_unique(names)
    }

    /// `lsdir`: like `ls`, but only children that have keys below them (memkv `ListDir`).
    pub fn lsdir(&self, path: &str) -> Vec<String> {
        let prefix = path_terms(path);
        let mut names: Vec<Cow<'_, str>> = Vec::new();
        for key in self.map.keys() {
            if !key.starts_with(path) {
                continue;
            }
            if let Some(Some(child)) = dir_below(&prefix, key) {
                names.push(child);
            }
        }
        sorted_unique(names)
    }
}

/// `names` sorted, without repeats. They come from sorted keys, so mostly in order already (a
/// pattern-defeating sort is then nearly linear).
fn sorted_unique(mut names: Vec<Cow<'_, str>>) -> Vec<String> {
    names.sort_unstable();
    names.dedup();
    names.into_iter().map(Cow::into_owned).collect()
}

/// Whether the terms of `path.Dir(key)` start with `prefix`: `None` when they do not, else the
/// term after `prefix` (if any). A key that is already clean and rooted, as every key read from
/// a backend is, is split in place; any other key goes through `path.Clean` as memkv does.
fn dir_below<'k>(prefix: &[String], key: &'k str) -> Option<Option<Cow<'k, str>>> {
    if is_clean_rooted(key) {
        // "/a/b/c" -> "/a/b" -> "", "a", "b"; "/c" and "/" -> "" -> one empty term (the root).
        let dir = &key[..key.rfind('/').unwrap_or(0)];
        let mut terms = dir.split('/');
        for p in prefix {
            if terms.next()? != p {
                return None;
            }
        }
        return Some(terms.next().map(Cow::Borrowed));
    }
    let target = path_terms(&confd_keys::dir(key));
    same_prefix_terms(prefix, &target).then(|| target.get(prefix.len()).cloned().map(Cow::Owned))
}

/// `key == path.Clean(key)` and it starts with `/`, checked without allocating.
fn is_clean_rooted(key: &str) -> bool {
    key == "/"
        || (key.starts_with('/')
            && !key.ends_with('/')
            && key[1..].split('/').all(|t| !matches!(t, "" | "." | "..")))
}

/// memkv's `stripKey`: the key without the raw `prefix` and a leading `/`.
fn strip_key<'a>(key: &'a str, prefix: &str) -> &'a str {
    let k = key.strip_prefix(prefix).unwrap_or(key);
    k.strip_prefix('/').unwrap_or(k)
}

/// memkv's `pathToTerms`, except that the root is one empty term (memkv splits `/` into two
/// empty terms, which is why its `ls "/"` misses every directory).
fn path_terms(p: &str) -> Vec<String> {
    let cleaned = confd_keys::clean(p);
    if cleaned == "/" {
        return vec![String::new()];
    }
    cleaned.split('/').map(str::to_string).collect()
}

fn same_prefix_terms(prefix: &[String], test: &[String]) -> bool {
    test.len() >= prefix.len() && prefix.iter().zip(test).all(|(a, b)| a == b)
}

/// Checks the whole pattern for syntax errors, as Go's `path.Match` does on its failure path.
fn validate_pattern(pattern: &str) -> Result<(), ()> {
    let mut rest = pattern;
    while !rest.is_empty() {
        let (_, chunk, r) = scan_chunk(rest);
        rest = r;
        match_chunk(chunk, "")?;
    }
    Ok(())
}

/// Go `path.Match`: `*` matches any run of non-`/` characters, `?` one non-`/` character,
/// `[...]` a class (`^` negates, `a-z` ranges), `\` escapes. `Err(())` is `ErrBadPattern`.
pub(crate) fn path_match(pattern: &str, name: &str) -> Result<bool, ()> {
    let mut pattern = pattern;
    let mut name = name;
    'pattern: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            return Ok(!name.contains('/'));
        }
        let res = match_chunk(chunk, name);
        if let Ok(Some(t)) = res
            && (t.is_empty() || !pattern.is_empty())
        {
            name = t;
            continue;
        }
        res?;
        if star {
            let bytes = name.as_bytes();
            let mut i = 0;
            while i < bytes.len() && bytes[i] != b'/' {
                // Go slices bytes here; only char boundaries can match a chunk, so skip the rest.
                if name.is_char_boundary(i + 1) {
                    match match_chunk(chunk, &name[i + 1..]) {
                        Ok(Some(t)) => {
                            if pattern.is_empty() && !t.is_empty() {
                                i += 1;
                                continue;
                            }
                            name = t;
                            continue 'pattern;
                        }
                        Ok(None) => {}
                        Err(()) => return Err(()),
                    }
                }
                i += 1;
            }
        }
        validate_pattern(pattern)?;
        return Ok(false);
    }
    Ok(name.is_empty())
}

fn scan_chunk(pattern: &str) -> (bool, &str, &str) {
    let bytes = pattern.as_bytes();
    let mut start = 0;
    let mut star = false;
    while start < bytes.len() && bytes[start] == b'*' {
        start += 1;
        star = true;
    }
    let mut inrange = false;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if i + 1 < bytes.len() => i += 1,
            b'[' => inrange = true,
            b']' => inrange = false,
            b'*' if !inrange => break,
            _ => {}
        }
        i += 1;
    }
    (star, &pattern[start..i], &pattern[i..])
}

/// Go `matchChunk`: `Ok(Some(rest))` on a match, `Ok(None)` on a mismatch (the chunk is still
/// checked for syntax), `Err(())` for a bad pattern.
fn match_chunk<'a>(chunk: &str, s: &'a str) -> Result<Option<&'a str>, ()> {
    let mut chunk = chunk;
    let mut s = s;
    let mut failed = false;
    while let Some(c) = chunk.chars().next() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match c {
            '[' => {
                let mut r = '\0';
                if !failed {
                    let ch = s.chars().next().unwrap_or('\0');
                    r = ch;
                    s = &s[ch.len_utf8()..];
                }
                chunk = &chunk[1..];
                let mut negated = false;
                if chunk.starts_with('^') {
                    negated = true;
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut nrange = 0;
                loop {
                    if chunk.starts_with(']') && nrange > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, rest) = get_esc(chunk)?;
                    chunk = rest;
                    let mut hi = lo;
                    if chunk.starts_with('-') {
                        let (h, rest) = get_esc(&chunk[1..])?;
                        hi = h;
                        chunk = rest;
                    }
                    if lo <= r && r <= hi {
                        matched = true;
                    }
                    nrange += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            '?' => {
                if !failed {
                    let ch = s.chars().next().unwrap_or('\0');
                    if ch == '/' {
                        failed = true;
                    }
                    s = &s[ch.len_utf8()..];
                }
                chunk = &chunk[1..];
            }
            _ => {
                let lit = if c == '\\' {
                    chunk = &chunk[1..];
                    chunk.chars().next().ok_or(())?
                } else {
                    c
                };
                if !failed {
                    if !s.starts_with(lit) {
                        failed = true;
                        // Go compares bytes and advances one; advancing a char keeps us on a
                        // boundary and the match has failed anyway.
                        let n = s.chars().next().map_or(0, char::len_utf8);
                        s = &s[n..];
                    } else {
                        s = &s[lit.len_utf8()..];
                    }
                }
                chunk = &chunk[lit.len_utf8()..];
            }
        }
    }
    Ok(if failed { None } else { Some(s) })
}

/// Go `getEsc`: one possibly escaped character of a class; the class must not end after it.
fn get_esc(chunk: &str) -> Result<(char, &str), ()> {
    let mut chunk = chunk;
    match chunk.chars().next() {
        None | Some('-') | Some(']') => return Err(()),
        Some('\\') => {
            chunk = &chunk[1..];
        }
        Some(_) => {}
    }
    let r = chunk.chars().next().ok_or(())?;
    let rest = &chunk[r.len_utf8()..];
    if rest.is_empty() {
        return Err(());
    }
    Ok((r, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(keys: &[(&str, &str)]) -> Store {
        keys.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sample() -> Store {
        store(&[
            ("/app/name", "web"),
            ("/app/port", "8080"),
            ("/upstream/b", "10.0.0.2"),
            ("/upstream/a", "10.0.0.3"),
            ("/upstream/c/deep", "x"),
            ("/services/api/host", "h1"),
            ("/services/api/port", "1"),
            ("/services/db/host", "h2"),
            ("/services/top", "t"),
            ("/top", "root"),
        ])
    }

    #[test]
    fn exists_is_exact() {
        let s = sample();
        assert!(s.exists("/app/name"));
        assert!(!s.exists("/app"));
        assert!(!s.exists("/app/name/"));
    }

    #[test]
    fn get_and_missing_key_message() {
        let s = sample();
        assert_eq!(
            s.get("/app/port"),
            Ok(KvPair {
                key: "/app/port".into(),
                value: "8080".into()
            })
        );
        assert_eq!(
            s.get("/nope").map_err(|e| e.to_string()),
            Err("key does not exist: /nope".to_string())
        );
    }

    #[test]
    fn getv_with_and_without_default() {
        let s = sample();
        assert_eq!(s.getv("/app/name", None).as_deref(), Ok("web"));
        assert_eq!(s.getv("/app/name", Some("d")).as_deref(), Ok("web"));
        assert_eq!(s.getv("/nope", Some("d")).as_deref(), Ok("d"));
        assert_eq!(
            s.getv("/nope", None),
            Err(StoreError::KeyNotFound("/nope".into()))
        );
    }

    #[test]
    fn gets_star_does_not_cross_slash_and_sorts_by_key() {
        let s = sample();
        let keys: Vec<String> = s
            .gets("/upstream/*")
            .expect("valid")
            .into_iter()
            .map(|p| p.key)
            .collect();
        assert_eq!(keys, ["/upstream/a", "/upstream/b"]);
        assert!(s.gets("/none/*").expect("valid").is_empty());
    }

    #[test]
    fn gets_classes_question_and_escapes() {
        let s = store(&[
            ("/a1", "1"),
            ("/a2", "2"),
            ("/b1", "3"),
            ("/*", "star"),
            ("/a/", "x"),
        ]);
        let keys = |p: &str| -> Vec<String> {
            s.gets(p)
                .expect("valid")
                .into_iter()
                .map(|p| p.key)
                .collect()
        };
        assert_eq!(keys("/[ab]1"), ["/a1", "/b1"]);
        assert_eq!(keys("/[^b]?"), ["/a1", "/a2"]);
        assert_eq!(keys("/a[1-1]"), ["/a1"]);
        assert_eq!(keys("/\\*"), ["/*"]);
        assert_eq!(keys("/a?"), ["/a1", "/a2"]);
        assert_eq!(keys("/?/"), ["/a/"]);
    }

    #[test]
    fn gets_bad_pattern_is_an_error_even_on_empty_store() {
        for p in ["/[", "/a[", "/[]", "/x\\", "/[a-]", "/*["] {
            assert!(
                matches!(sample().gets(p), Err(StoreError::BadPattern(_))),
                "{p}"
            );
            assert!(Store::default().gets(p).is_err(), "{p}");
        }
        assert_eq!(
            sample().gets("/[").map_err(|e| e.to_string()),
            Err("syntax error in pattern: /[".to_string())
        );
    }

    #[test]
    fn path_match_matches_go() {
        // Cases from Go's path.Match test table.
        let cases: &[(&str, &str, Result<bool, ()>)] = &[
            ("abc", "abc", Ok(true)),
            ("*", "abc", Ok(true)),
            ("*c", "abc", Ok(true)),
            ("a*", "a", Ok(true)),
            ("a*", "abc", Ok(true)),
            ("a*", "ab/c", Ok(false)),
            ("a*/b", "abc/b", Ok(true)),
            ("a*/b", "a/c/b", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Ok(false)),
            ("a*b?c*x", "abxbbxdbxebxczzx", Ok(true)),
            ("a*b?c*x", "abxbbxdbxebxczzy", Ok(false)),
            ("ab[c]", "abc", Ok(true)),
            ("ab[b-d]", "abc", Ok(true)),
            ("ab[e-g]", "abc", Ok(false)),
            ("ab[^c]", "abc", Ok(false)),
            ("ab[^b-d]", "abc", Ok(false)),
            ("ab[^e-g]", "abc", Ok(true)),
            ("a\\*b", "a*b", Ok(true)),
            ("a\\*b", "ab", Ok(false)),
            ("a?b", "a☺b", Ok(true)),
            ("a[^a]b", "a☺b", Ok(true)),
            ("a???b", "a☺b", Ok(false)),
            ("a[^a][^a][^a]b", "a☺b", Ok(false)),
            ("[a-ζ]*", "α", Ok(true)),
            ("*[a-ζ]", "A", Ok(false)),
            ("a?b", "a/b", Ok(false)),
            ("a*b", "a/b", Ok(false)),
            ("[\\]a]", "]", Ok(true)),
            ("[\\-]", "-", Ok(true)),
            ("[x\\-]", "x", Ok(true)),
            ("[x\\-]", "-", Ok(true)),
            ("[x\\-]", "z", Ok(false)),
            ("[\\-x]", "x", Ok(true)),
            ("[\\-x]", "-", Ok(true)),
            ("[\\-x]", "a", Ok(false)),
            ("[]a]", "]", Err(())),
            ("[-]", "-", Err(())),
            ("[x-]", "x", Err(())),
            ("[x-]", "-", Err(())),
            ("[x-]", "z", Err(())),
            ("[-x]", "x", Err(())),
            ("[-x]", "-", Err(())),
            ("[-x]", "a", Err(())),
            ("\\", "a", Err(())),
            ("[a-b-c]", "a", Err(())),
            ("[", "a", Err(())),
            ("[^", "a", Err(())),
            ("[^bc", "a", Err(())),
            ("a[", "a", Err(())),
            ("a[", "ab", Err(())),
            ("a[", "x", Err(())),
            ("a/b[", "x", Err(())),
            ("*x", "xxx", Ok(true)),
        ];
        for (p, n, want) in cases {
            assert_eq!(path_match(p, n), *want, "Match({p:?}, {n:?})");
        }
    }

    #[test]
    fn getvs_sorts_by_value() {
        let s = sample();
        assert_eq!(
            s.getvs("/upstream/*").expect("valid"),
            ["10.0.0.2", "10.0.0.3"]
        );
        let s = store(&[("/x/a", "zeta"), ("/x/b", "alpha")]);
        assert_eq!(s.getvs("/x/*").expect("valid"), ["alpha", "zeta"]);
    }

    #[test]
    fn ls_lists_direct_children() {
        let s = sample();
        assert_eq!(s.ls("/services"), ["api", "db", "top"]);
        assert_eq!(s.ls("/services/"), ["api", "db", "top"]);
        assert_eq!(s.ls("/upstream"), ["a", "b", "c"]);
        assert_eq!(s.ls("/app/name"), ["name"]);
        assert!(s.ls("/serv").is_empty());
        assert!(s.ls("/nothing").is_empty());
    }

    #[test]
    fn ls_root_lists_top_level() {
        assert_eq!(sample().ls("/"), ["app", "services", "top", "upstream"]);
    }

    #[test]
    fn lsdir_lists_only_directories() {
        let s = sample();
        assert_eq!(s.lsdir("/services"), ["api", "db"]);
        assert_eq!(s.lsdir("/upstream"), ["c"]);
        assert!(s.lsdir("/app").is_empty());
        assert_eq!(s.lsdir("/"), ["app", "services", "upstream"]);
    }

    #[test]
    fn dir_below_splits_clean_keys_as_path_clean_does() {
        let keys = [
            "/", "/a", "/a/b", "/a/b/c", "/ab/c", "a/b", "/a//b", "/a/./b", "/a/../b", "/a/b/",
            "//a", "/a/..", "/.",
        ];
        let prefixes = ["/", "/a", "/a/b", "/ab", "a", "/a/", "/.."];
        for key in keys {
            let slow = path_terms(&confd_keys::dir(key));
            for prefix in prefixes {
                let prefix = path_terms(prefix);
                let want =
                    same_prefix_terms(&prefix, &slow).then(|| slow.get(prefix.len()).cloned());
                let got = dir_below(&prefix, key).map(|c| c.map(Cow::into_owned));
                assert_eq!(got, want, "key {key:?} prefix {prefix:?}");
            }
        }
    }
}
