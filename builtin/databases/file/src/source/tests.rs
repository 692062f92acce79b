//! Unit tests: walk order, filters, override order and error messages of the file backend.

use super::*;

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    fs::create_dir_all(path.parent().expect("a file has a parent")).expect("mkdir");
    fs::write(path, text).expect("write");
}

fn testdata(dir: &str) -> PathBuf {
    PathBuf::from(format!("{}/testdata/{dir}", env!("CARGO_MANIFEST_DIR")))
}

fn pattern(p: &str) -> Pattern {
    Pattern::new(p).expect("valid test pattern")
}

/// File, directory, file: later values overwrite
/// earlier ones per leaf; the filter applies to walked names only.
#[test]
fn sources_apply_in_order_and_the_filter_applies_to_walked_names() {
    let data = testdata("sources");
    let paths = [
        data.join("base.yaml"),
        data.join("layers"),
        data.join("override.json"),
    ];
    let names: Vec<String> = plan(&paths, &pattern("*.yml"))
        .expect("case data exists")
        .iter()
        .map(|p| {
            p.strip_prefix(&data)
                .expect("under data")
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        [
            "base.yaml",
            "layers/00-first/a.yml",
            "layers/10-one.yml",
            "layers/20-two.yml",
            "layers/deep/30-deep.yml",
            "override.json",
        ]
    );
    let values = Cache::default()
        .load(&paths, &pattern("*.yml"))
        .expect("case data parses");
    let got: Vec<String> = values.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(
        got,
        [
            "/svc/dir_before_file=one",
            "/svc/items/0=k1",
            "/svc/items/1=k2",
            "/svc/items/2=i3",
            "/svc/on=true",
            "/svc/only_base=stays",
            "/svc/only_deep=deep",
            "/svc/port=9090",
            "/svc/tier=json",
            "/svc/walked=deep",
            "/svc/weight=2",
        ]
    );
}

/// The default filter reads dot files, JSON and
/// extension-less files; the last file in walk order wins.
#[test]
fn the_default_filter_reads_every_file() {
    let paths = [testdata("defaultfilter/conf")];
    let values = Cache::default()
        .load(&paths, &pattern("*"))
        .expect("case data parses");
    let got: Vec<String> = values.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(
        got,
        [
            "/opt/last=two.json",
            "/opt/via_dot=.dot.yaml",
            "/opt/via_inner=inner/four.yml",
            "/opt/via_json=two.json",
            "/opt/via_plain=three",
            "/opt/via_yaml=one.yaml",
        ]
    );
}

#[test]
fn a_missing_file_is_named() {
    let data = testdata("errors");
    let paths = [data.join("present.yaml"), data.join("absent.yaml")];
    let err = Cache::default()
        .load(&paths, &pattern("*"))
        .expect_err("absent.yaml is missing");
    assert!(err.message().contains("absent.yaml"), "{err}");
    assert!(err.message().contains("No such file"), "{err}");
}

#[test]
fn bad_yaml_names_the_file_and_line() {
    let data = testdata("errors");
    let err = Cache::default()
        .load(&[data.join("broken.yaml")], &pattern("*"))
        .expect_err("broken.yaml is invalid");
    let msg = err.message();
    assert!(msg.contains("broken.yaml line "), "{msg}");
}

#[test]
fn a_stray_extension_in_a_directory_is_an_error_unless_filtered() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write(tmp.path(), "a.yaml", "a: 1\n");
    write(tmp.path(), "notes.txt", "not: [yaml\n");
    let paths = [tmp.path().to_path_buf()];
    let err = Cache::default()
        .load(&paths, &pattern("*"))
        .expect_err("notes.txt has an unknown extension");
    assert!(err.message().contains("notes.txt"), "{err}");
    assert!(err.message().contains("\".txt\""), "{err}");
    let values = Cache::default()
        .load(&paths, &pattern("*.yaml"))
        .expect("the filter skips notes.txt");
    assert_eq!(values.get("/a").map(String::as_str), Some("1"));
}

#[test]
fn filters_are_globs_on_base_names() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write(tmp.path(), "app-1.yml", "a: 1\n");
    write(tmp.path(), "app-2.yaml", "b: 2\n");
    write(tmp.path(), "db.yml", "c: 3\n");
    write(tmp.path(), "app.d/x.json", "{\"d\": 4}\n");
    let paths = [tmp.path().to_path_buf()];
    let names = |p: &str| -> Vec<String> {
        plan(&paths, &pattern(p))
            .expect("readable")
            .iter()
            .map(|f| {
                f.strip_prefix(tmp.path())
                    .expect("under tmp")
                    .display()
                    .to_string()
            })
            .collect()
    };
    assert_eq!(names("app-*"), ["app-1.yml", "app-2.yaml"]);
    assert_eq!(names("*.y?l"), ["app-1.yml", "db.yml"]);
    assert_eq!(names("[ad]*.yml"), ["app-1.yml", "db.yml"]);
    // Directory names are never filtered; their files are.
    assert_eq!(names("x.*"), ["app.d/x.json"]);
}

#[test]
fn the_cache_notices_a_same_size_rewrite() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write(tmp.path(), "a.yaml", "k: 1\n");
    let cache = Cache::default();
    let paths = [tmp.path().join("a.yaml")];
    let first = cache.load(&paths, &pattern("*")).expect("parses");
    let again = cache.load(&paths, &pattern("*")).expect("parses");
    assert!(
        Arc::ptr_eq(&first, &again),
        "unchanged bytes reuse the parse"
    );
    write(tmp.path(), "a.yaml", "k: 2\n");
    let changed = cache.load(&paths, &pattern("*")).expect("parses");
    assert_eq!(changed.get("/k").map(String::as_str), Some("2"));
}

#[cfg(unix)]
#[test]
fn symlinked_files_are_read_and_symlinked_directories_skipped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write(tmp.path(), "real/a.yaml", "a: 1\n");
    std::os::unix::fs::symlink(tmp.path().join("real"), tmp.path().join("linkdir"))
        .expect("symlink");
    std::os::unix::fs::symlink(tmp.path().join("real/a.yaml"), tmp.path().join("b.yaml"))
        .expect("symlink");
    let files = plan(&[tmp.path().to_path_buf()], &pattern("*")).expect("readable");
    let names: Vec<String> = files
        .iter()
        .map(|f| {
            f.strip_prefix(tmp.path())
                .expect("under tmp")
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(names, ["b.yaml", "real/a.yaml"]);
}

/// Forgets the bytes the cache saw, so a re-read is visible as a new parse.
fn corrupt_cached_bytes(cache: &Cache) {
    let mut last = cache.last.lock().expect("not poisoned");
    let seen = last.as_mut().expect("loaded once");
    seen.contents[0].1.push(b'#');
}

#[test]
fn files_changed_just_before_the_read_are_read_again() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write(tmp.path(), "a.yaml", "k: 1\n");
    let cache = Cache::default();
    let paths = [tmp.path().join("a.yaml")];
    let first = cache.load(&paths, &pattern("*")).expect("parses");
    corrupt_cached_bytes(&cache);
    let again = cache.load(&paths, &pattern("*")).expect("parses");
    assert!(
        !Arc::ptr_eq(&first, &again),
        "a file written within the settling time must be read again"
    );
    assert_eq!(again.get("/k").map(String::as_str), Some("1"));
}

#[test]
fn settled_files_with_unchanged_metadata_are_not_read_again() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write(tmp.path(), "a.yaml", "k: 1\n");
    let cache = Cache::default();
    let paths = [tmp.path().join("a.yaml")];
    let first = cache.load(&paths, &pattern("*")).expect("parses");
    // As if the previous read happened long after the file's last change.
    cache
        .last
        .lock()
        .expect("not poisoned")
        .as_mut()
        .expect("loaded")
        .read_at = SystemTime::now() + SETTLED * 2;
    corrupt_cached_bytes(&cache);
    let again = cache.load(&paths, &pattern("*")).expect("parses");
    assert!(
        Arc::ptr_eq(&first, &again),
        "settled and unchanged: no read"
    );
    // Any change of the metadata (here a rewrite) forces the read again.
    write(tmp.path(), "a.yaml", "k: 22\n");
    let changed = cache.load(&paths, &pattern("*")).expect("parses");
    assert_eq!(changed.get("/k").map(String::as_str), Some("22"));
}

#[test]
fn settling_is_measured_on_the_change_time() {
    let stamp = |secs: i64| Stamp {
        dev: 1,
        ino: 2,
        len: 3,
        ctime: (secs, 0),
        mtime: (0, 0),
    };
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
    assert!(stamp(990).settled_before(at));
    assert!(!stamp(998).settled_before(at));
    assert!(
        !stamp(1005).settled_before(at),
        "a change time in the future"
    );
    assert!(!stamp(-5).settled_before(at), "a change time before 1970");
}

/// The one rule for bytes that are not UTF-8: the read fails naming the backend, the file, the
/// line and the key the bytes belong to; never a silent U+FFFD.
#[test]
fn bytes_that_are_not_utf8_fail_naming_file_line_and_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let load = |name: &str, bytes: &[u8]| {
        let path = tmp.path().join(name);
        fs::write(&path, bytes).expect("write");
        let err = Cache::default()
            .load(std::slice::from_ref(&path), &pattern("*"))
            .expect_err("not UTF-8");
        assert_eq!(err.kind(), confd_sdk::ErrorKind::InvalidData, "{err}");
        err.message().replace(&path.display().to_string(), name)
    };
    assert_eq!(
        load("value.yaml", b"app:\n  name: ok\n  blob: \"ab\xffcd\"\n"),
        "file: value.yaml line 3: the value of key \"/app/blob\" is not UTF-8 text \
         (byte 0xff at offset 27)"
    );
    assert_eq!(
        load("key.json", b"{\"a\": {\"k\xc3\": \"v\"}}"),
        "file: key.json line 1: key \"/a/k\u{fffd}\" (bad bytes shown as \u{fffd}) is not UTF-8 \
         text (byte 0xc3 at offset 9)"
    );
    assert_eq!(
        load("comment.yaml", b"a: 1\n# \xfe\n"),
        "file: comment.yaml line 2: the file is not UTF-8 text (byte 0xfe at offset 7)"
    );
    // Its own U+FFFD makes a replacement ambiguous: the file and line only.
    let mut own = "a: \u{fffd}\n".as_bytes().to_vec();
    own.extend_from_slice(b"b: \xff\n");
    assert_eq!(
        load("own.yaml", &own),
        "file: own.yaml line 2: the file is not UTF-8 text (byte 0xff at offset 10)"
    );
}
