//! The `env` database: confd keys read from the process environment, so a
//! container can be configured with nothing but environment variables.
//!
//! # Key mapping (as confd does it)
//!
//! A requested key becomes a variable-name prefix: drop the leading `/`,
//! replace every `/` with `_`, upper-case it (`/database/host` →
//! `DATABASE_HOST`). Every variable whose name is that prefix, or starts with
//! it followed by `_`, is returned under `/` + its lower-cased name with each
//! `_` turned into `/`, path-cleaned (`DATABASE_HOST_PORT` →
//! `/database/host/port`, `DB__X` → `/db/x`).
//!
//! The `_` boundary is this project's choice: confd matched a plain string
//! prefix, so `/database/host` also picked up `DATABASE_HOSTNAME`. The match is
//! made on variable names, not on the returned keys, because the mapping is
//! lossy: `/my_app` reads `MY_APP_COLOR` and returns it as `/my/app/color`,
//! which confd users rely on (conformance case 06). The key `/` returns every
//! variable. When several variables map to one key (`APP_DB_HOST`,
//! `APP_db_host`), the smallest name in byte order wins, which is the
//! canonical upper-case spelling when there is one.
//!
//! # Bytes that are not UTF-8
//!
//! A variable whose name is not UTF-8 cannot be asked for by any key and is
//! skipped. A value that is not UTF-8 fails the read with an error naming the
//! backend and the key (`confd_sdk::text`), never a silent U+FFFD.
//!
//! # Settings
//!
//! None. `configure` accepts an empty map and rejects any key.
//!
//! # Watching
//!
//! Not offered: the environment of a running process does not change, so
//! `watch_prefix` returns `Unimplemented` with a message telling the user to
//! use `--onetime` or `--interval`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use confd_sdk::{Config, Database, DatabaseInfo, Descriptor, Error, SrvNodes};

/// The name this database is registered under (`--backend env`).
pub const NAME: &str = "env";

/// Everything the host and the plugin executable know about this backend.
pub const DESCRIPTOR: Descriptor = Descriptor {
    name: NAME,
    aliases: &[],
    summary: "environment variables (/a/b is A_B); cannot watch",
    default_nodes: &[],
    settings: &[],
    capabilities: &[],
    srv_nodes: SrvNodes::None,
    version: env!("CARGO_PKG_VERSION"),
    database: confd_sdk::shared::<EnvDatabase>,
};

/// The message `watch_prefix` fails with.
pub const WATCH_UNSUPPORTED: &str = "the env backend cannot watch: environment variables do not \
                                     change while confd runs; use --onetime or --interval";

/// The settings map as the SDK decoder sees it: no keys at all.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {}

/// Where the variables come from: the live process environment, or a fixed
/// list (tests, and embedders that want to feed their own).
#[derive(Debug, Clone, Default)]
enum Source {
    #[default]
    Process,
    Fixed(Arc<Vars>),
}

/// One variable as the C environment holds it, `NAME=value`, with the length of the name
/// (a fixed list may hold names with `=` in them, which the environment cannot).
#[derive(Debug)]
struct Entry {
    text: Cow<'static, [u8]>,
    name_len: usize,
}

impl Entry {
    fn name(&self) -> &str {
        // Checked when the entry was made: names that are not UTF-8 are skipped.
        std::str::from_utf8(&self.text[..self.name_len]).unwrap_or_default()
    }
    fn value(&self) -> &[u8] {
        self.text.get(self.name_len + 1..).unwrap_or_default()
    }
}

/// Variables sorted by name (byte order), so the names under a prefix form
/// one contiguous run found by binary search. A run asks once per resource
/// group (hundreds of times) and a container may hold thousands of
/// variables: copying and sorting them on every request dominated a run.
/// The process environment is indexed where it lies, not copied: with
/// thousands of variables the copies were most of the plugin's memory.
/// Measured (`make bench`, one-shot 200 x 50 on env, 10,000 variables):
/// the plugin's PSS at the pair's peak is 0.7-0.9 MiB lower than with
/// `std::env::vars_os` (4.4 → 3.7 MiB); to check it still pays, build
/// with the std version (commit 5c82121) and compare in the oneshot bench
/// (`CONFD_BENCH_BASELINE`, docs/performance.md).
#[derive(Debug)]
struct Vars(Vec<Entry>);

impl Vars {
    fn new(mut vars: Vec<Entry>) -> Vars {
        // Stable: of two identical names the later one wins, as an
        // overwriting insert (or the C library's getenv) would have it.
        vars.sort_by(|a, b| a.text[..a.name_len].cmp(&b.text[..b.name_len]));
        vars.dedup_by(|later, earlier| {
            if later.text[..later.name_len] == earlier.text[..earlier.name_len] {
                std::mem::swap(later, earlier);
                true
            } else {
                false
            }
        });
        Vars(vars)
    }

    fn fixed(vars: Vec<(String, String)>) -> Vars {
        Vars::new(
            vars.into_iter()
                .map(|(name, value)| {
                    let name_len = name.len();
                    let mut text = name.into_bytes();
                    text.push(b'=');
                    text.extend_from_slice(value.as_bytes());
                    Entry {
                        text: Cow::Owned(text),
                        name_len,
                    }
                })
                .collect(),
        )
    }

    /// The process environment, indexed once: it does not change while confd
    /// runs (see the crate docs on watching).
    fn process() -> &'static Vars {
        static VARS: OnceLock<Vars> = OnceLock::new();
        VARS.get_or_init(|| {
            Vars::new(
                process_environment()
                    .into_iter()
                    .filter_map(|text| {
                        let name_len = text.iter().position(|b| *b == b'=')?;
                        if std::str::from_utf8(&text[..name_len]).is_err() {
                            // A name that is not UTF-8 cannot be asked for by any key.
                            tracing::debug!("skipping a variable whose name is not UTF-8");
                            return None;
                        }
                        Some(Entry {
                            text: Cow::Borrowed(text),
                            name_len,
                        })
                    })
                    .collect(),
            )
        })
    }

    /// Indices of the variables named `prefix` or `prefix_...`.
    fn matching(&self, prefix: &str, out: &mut Vec<usize>) {
        let start = self.0.partition_point(|e| e.name() < prefix);
        for (offset, entry) in self.0[start..].iter().enumerate() {
            let name = entry.name();
            if !name.starts_with(prefix) {
                break;
            }
            if name_matches(name, prefix) {
                out.push(start + offset);
            }
        }
    }
}

/// The `NAME=value` strings of the C environment, borrowed for the life of the process.
#[allow(unsafe_code)]
fn process_environment() -> Vec<&'static [u8]> {
    unsafe extern "C" {
        static environ: *const *const std::ffi::c_char;
    }
    let mut out = Vec::new();
    // SAFETY: `environ` is a null-terminated array of NUL-terminated strings. This process
    // never modifies its environment (a plugin process is started with the environment it
    // serves, and Rust's `set_var` is unsafe and unused here), so nothing changes the array while
    // it is read. The strings live for the rest of the process: the initial ones are on the
    // process stack, and the C library never frees a string it handed out through `environ`
    // while it is still in the array.
    unsafe {
        let mut cursor = environ;
        while !cursor.is_null() && !(*cursor).is_null() {
            out.push(std::ffi::CStr::from_ptr(*cursor).to_bytes());
            cursor = cursor.add(1);
        }
    }
    out
}

/// The `env` database. Cheap to create; holds no state besides its source.
#[derive(Debug, Clone, Default)]
pub struct EnvDatabase {
    source: Source,
}

/// Creates the database reading the process environment (what `serve` runs).
pub fn database() -> EnvDatabase {
    EnvDatabase::default()
}

impl EnvDatabase {
    /// A database that reads the given variables instead of the process
    /// environment.
    pub fn with_vars<I, K, V>(vars: I) -> EnvDatabase
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        EnvDatabase {
            source: Source::Fixed(Arc::new(Vars::fixed(
                vars.into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ))),
        }
    }

    fn vars(&self) -> &Vars {
        match &self.source {
            Source::Fixed(vars) => vars,
            Source::Process => Vars::process(),
        }
    }
}

#[confd_sdk::async_trait]
impl Database for EnvDatabase {
    async fn configure(&self, config: Config) -> Result<(), Error> {
        let Settings {} = confd_sdk::config::decode(&config)?;
        Ok(())
    }

    async fn get_values(&self, keys: &[String]) -> Result<BTreeMap<String, String>, Error> {
        lookup(self.vars(), keys)
    }

    async fn watch_prefix(
        &self,
        _prefix: &str,
        _keys: &[String],
        _wait_index: u64,
    ) -> Result<u64, Error> {
        Err(Error::unimplemented(WATCH_UNSUPPORTED))
    }

    async fn info(&self) -> Result<DatabaseInfo, Error> {
        Ok(DESCRIPTOR.info())
    }
}

/// Selects the variables the keys ask for and maps them to store keys. A value that is not
/// UTF-8 fails the read naming its key (`confd_sdk::text`).
fn lookup(vars: &Vars, keys: &[String]) -> Result<BTreeMap<String, String>, Error> {
    let mut hits = Vec::new();
    for key in keys {
        vars.matching(&key_to_name(key), &mut hits);
    }
    // Ascending name order, first insert kept: the smallest name mapping to a
    // key wins (see the crate docs), whichever key asked for it.
    hits.sort_unstable();
    hits.dedup();
    let mut out = BTreeMap::new();
    for i in hits {
        let entry = &vars.0[i];
        if let std::collections::btree_map::Entry::Vacant(slot) =
            out.entry(name_to_key(entry.name()))
        {
            let value = confd_sdk::text::value(NAME, slot.key(), entry.value())?;
            slot.insert(value.to_string());
        }
    }
    Ok(out)
}

/// `/database/host` → `DATABASE_HOST`. The key is normalised first: a
/// trailing `/*` or `/` is dropped and repeated slashes collapse, so `/db/`
/// and `/db/*` ask for `DB` like `/db` does.
pub fn key_to_name(key: &str) -> String {
    let key = key.strip_suffix("/*").unwrap_or(key);
    let cleaned = confd_sdk::keys::rooted(key);
    cleaned
        .strip_prefix('/')
        .unwrap_or(&cleaned)
        .replace('/', "_")
        .to_uppercase()
}

/// `DATABASE_HOST_PORT` → `/database/host/port` (confd's `clean`).
pub fn name_to_key(name: &str) -> String {
    confd_sdk::keys::rooted(&name.to_lowercase().replace('_', "/"))
}

/// Whether a variable is the prefix itself or lies below it (`_` boundary).
fn name_matches(name: &str, prefix: &str) -> bool {
    if prefix.is_empty() {
        return true;
    }
    match name.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('_'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    async fn get(vars: &[(&str, &str)], wanted: &[&str]) -> BTreeMap<String, String> {
        let db = EnvDatabase::with_vars(vars.iter().copied());
        db.configure(Config::new())
            .await
            .expect("empty settings are fine");
        db.get_values(&keys(wanted))
            .await
            .expect("UTF-8 values read")
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn keys_map_to_variable_names_as_confd_does() {
        assert_eq!(key_to_name("/database/host"), "DATABASE_HOST");
        assert_eq!(key_to_name("/myapp/database/url"), "MYAPP_DATABASE_URL");
        assert_eq!(key_to_name("/my_app"), "MY_APP");
        assert_eq!(key_to_name("/db/"), "DB");
        assert_eq!(key_to_name("/db/*"), "DB");
        assert_eq!(key_to_name("//disc//name/"), "DISC_NAME");
        assert_eq!(key_to_name("/"), "");
        assert_eq!(key_to_name(""), "");
    }

    #[test]
    fn names_map_back_to_lower_case_paths() {
        assert_eq!(name_to_key("UPSTREAM_APP1"), "/upstream/app1");
        assert_eq!(name_to_key("DB__DOUBLE"), "/db/double");
        assert_eq!(name_to_key("DB_TRAILING_"), "/db/trailing");
        assert_eq!(name_to_key("DB_Mixed_Case"), "/db/mixed/case");
        assert_eq!(name_to_key("PATH"), "/path");
    }

    /// The data and expectations of conformance case 06-env-key-mapping.
    #[tokio::test]
    async fn conformance_case_06_key_mapping() {
        let vars = [
            ("DB_HOST", "db.internal"),
            ("DB_PORT", "5432"),
            ("DB_PASSWORD", "p@ss=word with spaces"),
            ("DB_EMPTY", ""),
            ("DB_REPLICA_HOST", "replica.internal"),
            ("DB_REPLICA_PORT", "5433"),
            ("DB_Mixed_Case", "mixed"),
            ("DB__DOUBLE", "double underscore"),
            ("DB_TRAILING_", "trailing underscore"),
            ("db_lower", "lowercase names never match an upper-cased key"),
            ("Db_Host", "not matched either"),
            ("MY_APP_COLOR", "blue"),
            ("UNREQUESTED_KEY", "invisible"),
        ];
        let got = get(&vars, &["/db", "/my_app"]).await;
        assert_eq!(
            got,
            map(&[
                ("/db/double", "double underscore"),
                ("/db/empty", ""),
                ("/db/host", "db.internal"),
                ("/db/password", "p@ss=word with spaces"),
                ("/db/port", "5432"),
                ("/db/trailing", "trailing underscore"),
                ("/db/mixed/case", "mixed"),
                ("/db/replica/host", "replica.internal"),
                ("/db/replica/port", "5433"),
                ("/my/app/color", "blue"),
            ])
        );
    }

    /// Conformance case 07-env-root-key: `/` returns everything.
    #[tokio::test]
    async fn root_key_returns_every_variable() {
        let vars = [
            ("PATH", "/usr/bin:/bin"),
            ("HOSTNAME_OVERRIDE", "web-1"),
            ("APP_PORT", "80"),
            ("lower_case", "seen through key /"),
        ];
        assert_eq!(
            get(&vars, &["/"]).await,
            map(&[
                ("/path", "/usr/bin:/bin"),
                ("/app/port", "80"),
                ("/hostname/override", "web-1"),
                ("/lower/case", "seen through key /"),
            ])
        );
    }

    #[tokio::test]
    async fn a_key_never_matches_a_longer_name() {
        let vars = [
            ("DATABASE_HOST", "h"),
            ("DATABASE_HOSTNAME", "n"),
            ("APPLICATION_X", "a"),
            ("APP", "top"),
        ];
        assert_eq!(
            get(&vars, &["/database/host"]).await,
            map(&[("/database/host", "h")])
        );
        assert_eq!(get(&vars, &["/app"]).await, map(&[("/app", "top")]));
        assert_eq!(get(&vars, &["/nothing"]).await, BTreeMap::new());
    }

    #[tokio::test]
    async fn the_canonical_name_wins_a_collision() {
        let vars = [
            ("APP_db_host", "lower"),
            ("APP_DB_HOST", "canonical"),
            ("APP__DB_HOST", "double"),
        ];
        assert_eq!(
            get(&vars, &["/app"]).await,
            map(&[("/app/db/host", "canonical")])
        );
    }

    /// Overlapping keys (`/` and `/app`) still let the canonical name win,
    /// whichever key found it first.
    #[tokio::test]
    async fn overlapping_keys_keep_the_collision_rule() {
        let vars = [
            ("APP_db_host", "lower"),
            ("APP_DB_HOST", "canonical"),
            ("APP_DB", "db"),
            ("OTHER", "o"),
        ];
        let expected = map(&[
            ("/app/db/host", "canonical"),
            ("/app/db", "db"),
            ("/other", "o"),
        ]);
        assert_eq!(get(&vars, &["/app/db/host", "/", "/app"]).await, expected);
        assert_eq!(get(&vars, &["/app", "/app/db", "/"]).await, expected);
    }

    /// A fixed list naming a variable twice behaves like an environment built
    /// from it: the later definition wins.
    #[tokio::test]
    async fn a_repeated_name_in_a_fixed_list_takes_the_later_value() {
        let vars = [("A_X", "first"), ("B", "b"), ("A_X", "second")];
        assert_eq!(get(&vars, &["/a"]).await, map(&[("/a/x", "second")]));
    }

    /// Many variables, many prefixes sharing leading characters: every lookup
    /// finds exactly its own variables.
    #[tokio::test]
    async fn lookups_among_many_variables_find_only_their_own() {
        let mut vars = Vec::new();
        for r in 0..30 {
            for k in 0..5 {
                vars.push((format!("R{r}_K{k}"), format!("{r}-{k}")));
            }
        }
        let db = EnvDatabase::with_vars(vars);
        for r in [1, 3, 10, 29] {
            let got = db
                .get_values(&keys(&[&format!("/r{r}")]))
                .await
                .expect("UTF-8 values read");
            let expected: BTreeMap<String, String> = (0..5)
                .map(|k| (format!("/r{r}/k{k}"), format!("{r}-{k}")))
                .collect();
            assert_eq!(got, expected, "/r{r}");
        }
    }

    #[tokio::test]
    async fn unknown_settings_are_rejected_by_name() {
        let db = database();
        let err = db
            .configure(Config::from([("nodes".to_string(), "x".to_string())]))
            .await
            .expect_err("env takes no settings");
        assert_eq!(err.kind(), confd_sdk::ErrorKind::InvalidConfig);
        assert!(err.message().contains("\"nodes\""), "{err}");
    }

    #[tokio::test]
    async fn watch_is_refused_with_advice() {
        let err = database()
            .watch_prefix("/", &keys(&["/app"]), 0)
            .await
            .expect_err("env cannot watch");
        assert_eq!(err.kind(), confd_sdk::ErrorKind::Unimplemented);
        assert!(err.message().contains("--interval"), "{err}");
        let info = database().info().await.expect("info is offered");
        assert_eq!(info.name, "env");
        assert!(info.capabilities.is_empty());
    }

    /// The borrowed index holds exactly what std sees in the environment (UTF-8 names).
    #[test]
    fn the_process_index_matches_the_environment() {
        let mut expected: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into_owned())))
            .collect();
        expected.sort();
        expected.dedup_by(|a, b| a.0 == b.0);
        let got: Vec<(String, String)> = Vars::process()
            .0
            .iter()
            .map(|e| {
                let value = String::from_utf8_lossy(e.value()).into_owned();
                (e.name().to_string(), value)
            })
            .collect();
        assert_eq!(got, expected);
    }

    #[tokio::test]
    async fn reads_the_process_environment() {
        // PATH is set in every test environment this suite runs in.
        let path = std::env::var("PATH").expect("PATH is set");
        let got = database()
            .get_values(&keys(&["/path"]))
            .await
            .expect("UTF-8 values read");
        assert_eq!(got.get("/path"), Some(&path));
    }

    /// Set in the child process of `a_value_that_is_not_utf8_fails_naming_its_key`.
    const CHILD: &str = "CONFD_ENV_TEST_BAD_BYTES_CHILD";

    /// A value that is not UTF-8 can only come from the real process environment, so the check
    /// runs in a child of this test binary started with such a variable.
    #[test]
    fn a_value_that_is_not_utf8_fails_naming_its_key() {
        use std::os::unix::ffi::OsStrExt as _;
        let exe = std::env::current_exe().expect("test binary path");
        let output = std::process::Command::new(exe)
            .args(["--exact", "tests::child_reads_a_bad_value", "--nocapture"])
            .env(CHILD, "1")
            .env("BADBYTES_BLOB", std::ffi::OsStr::from_bytes(b"ab\xffcd"))
            .env("BADBYTES_FINE", "ok")
            .output()
            .expect("run the child test");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "child failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    #[tokio::test]
    async fn child_reads_a_bad_value() {
        if std::env::var_os(CHILD).is_none() {
            // Only meaningful in the child (see above).
            return;
        }
        let db = database();
        let err = db
            .get_values(&keys(&["/badbytes"]))
            .await
            .expect_err("a value that is not UTF-8 fails the read");
        assert_eq!(err.kind(), confd_sdk::ErrorKind::InvalidData);
        assert_eq!(
            err.message(),
            "env: the value of key \"/badbytes/blob\" is not UTF-8 text (byte 0xff at offset 2)"
        );
        let fine = db
            .get_values(&keys(&["/badbytes/fine"]))
            .await
            .expect("a key without bad bytes still reads");
        assert_eq!(fine, map(&[("/badbytes/fine", "ok")]));
    }
}
