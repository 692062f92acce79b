//! The `Database` contract as checks any plugin can run: what the host relies on, written down
//! once instead of re-asserted (or forgotten) in each backend's tests.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;

use super::{InProcessPlugin, serve_in_process};
use crate::{Config, Database, Error, ErrorKind, ServeOpts};

/// Every check the suite runs, by the name [`Conformance::skip`] and [`Report`] use, with what
/// it asserts.
pub const CHECKS: &[(&str, &str)] = &[
    (
        "configure-unknown-key",
        "configure refuses an unknown setting with InvalidConfig, naming the key",
    ),
    (
        "configure-bad-setting",
        "configure refuses each `bad_setting` with InvalidConfig, naming the key",
    ),
    ("read-exact-key", "a key returns itself, with its value"),
    (
        "read-path-prefix",
        "a key returns what lies below it as a path: /app never returns /application, /apple or /app-x",
    ),
    (
        "read-trailing-slash",
        "a trailing slash on a requested key changes nothing",
    ),
    (
        "read-missing-key",
        "a key that is not there returns nothing",
    ),
    (
        "read-several-keys",
        "several (overlapping) keys return the union of what each returns",
    ),
    ("read-root", "the key / returns every key in the store"),
    (
        "read-values-exact",
        "values come back byte for byte: empty, multi-line, CRLF, non-ASCII, padded, symbols",
    ),
    (
        "read-concurrent",
        "32 reads at once each get their own, right answer",
    ),
    (
        "read-large-value",
        "a large value (1 MiB by default) comes back intact",
    ),
    (
        "read-many-keys",
        "many keys (2000 by default) under one prefix come back intact",
    ),
    (
        "watch-unimplemented",
        "a store that cannot watch answers watch_prefix with Unimplemented, at once",
    ),
    (
        "watch-index-zero",
        "watch_prefix with wait_index 0 returns at once with a non-zero index",
    ),
    (
        "watch-waits",
        "with nothing changed, watch_prefix at the current index keeps waiting",
    ),
    (
        "watch-change-before-call",
        "a change made after the index was taken wakes the next watch call at once, with a new index",
    ),
    (
        "watch-wakes",
        "a change under the keys wakes a waiting watch with a new index, and reads see the change",
    ),
    (
        "watch-index-grows",
        "the index a change wakes a watch with is larger than wait_index",
    ),
    (
        "watch-delete-wakes",
        "deleting a watched key wakes a waiting watch, and reads no longer return it",
    ),
    (
        "watch-ignores-unrelated",
        "changes outside the watched keys (/application, /apple, /app-x for /app) do not wake it",
    ),
    (
        "watch-cancel-clean",
        "dropped watches leave no task or store watcher behind, and the database keeps answering",
    ),
    (
        "served-shutdown",
        "the served plugin stops cleanly on Shutdown",
    ),
];

/// The setting name the unknown-key check adds to the fixture's settings.
const UNKNOWN_SETTING: &str = "conformanceUnknownSetting";
/// "At once" for calls that must not block (wait_index 0, a refused watch, reads after a cancel).
const AT_ONCE: Duration = Duration::from_secs(3);
/// Any read, including the large ones.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a change may take to wake a watch.
const WAKE: Duration = Duration::from_secs(10);
/// How long a watch with nothing to report must stay pending to count as waiting.
const QUIET: Duration = Duration::from_millis(500);
/// How long after unrelated changes a watch must still be pending: long enough for a
/// notification, a file watcher's settling and a re-read.
const UNRELATED_QUIET: Duration = Duration::from_millis(1500);
/// How long a watch is left running before a change, so that it is really waiting.
const PARK: Duration = Duration::from_millis(300);
/// How long cancelled watches get to release what they held.
const CLEANUP: Duration = Duration::from_secs(5);
const CANCELLED_WATCHES: usize = 8;
const CONCURRENT_READS: usize = 32;
/// Problems listed per check before the rest are only counted.
const MAX_PROBLEMS: usize = 6;

/// What a fixture's calls may fail with; any error type converts.
pub type FixtureError = Box<dyn std::error::Error + Send + Sync>;

/// The test's handle on the real store the plugin reads: the suite writes its data through it.
///
/// Keys are absolute paths under the suite's root (`/conformance` by default), made of
/// lower-case letters, digits and `-`, such as `/conformance/app/db/host`; map them to the
/// store's own form as the plugin maps them back.
#[async_trait::async_trait]
pub trait Fixture: Send + Sync + 'static {
    /// Settings that make a fresh database read this store; `configure` gets them.
    fn config(&self) -> Config;

    /// Sets `key` to `value` in the store.
    async fn put(&self, key: &str, value: &str) -> Result<(), FixtureError>;

    /// Removes `key` from the store.
    async fn delete(&self, key: &str) -> Result<(), FixtureError>;

    /// Sets many keys at once, before any database is made (the suite's data set, about 2000
    /// keys). The default calls [`Fixture::put`] for each; override it when the store has a
    /// faster way.
    async fn put_all(&self, entries: &[(String, String)]) -> Result<(), FixtureError> {
        for (key, value) in entries {
            self.put(key, value).await?;
        }
        Ok(())
    }
}

/// Which side a check ran on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// The database called directly.
    InProcess,
    /// A twin served through the plugin path and called through the host's client.
    Served,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Target::InProcess => "in-process",
            Target::Served => "served",
        })
    }
}

/// How one check went on one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    /// Not run: the store cannot do what it needs, or the test skipped it (with its reason).
    Skipped(String),
    /// What was wrong, one problem per line.
    Failed(String),
}

/// One check's verdict; `target` is `None` for checks that are not run per side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub check: &'static str,
    pub target: Option<Target>,
    pub verdict: Verdict,
}

/// Everything one conformance run found.
#[derive(Debug, Clone)]
pub struct Report {
    plugin: String,
    outcomes: Vec<Outcome>,
}

impl Report {
    /// Every verdict, in the order the checks ran.
    pub fn outcomes(&self) -> &[Outcome] {
        &self.outcomes
    }

    /// The failed checks.
    pub fn violations(&self) -> impl Iterator<Item = &Outcome> {
        self.outcomes
            .iter()
            .filter(|o| matches!(o.verdict, Verdict::Failed(_)))
    }

    /// Whether no check failed.
    pub fn is_ok(&self) -> bool {
        self.violations().next().is_none()
    }

    /// The verdict of `check` on `target` (`None` for a check not run per side), if it ran.
    pub fn verdict(&self, check: &str, target: Option<Target>) -> Option<&Verdict> {
        self.outcomes
            .iter()
            .find(|o| o.check == check && o.target == target)
            .map(|o| &o.verdict)
    }

    /// Panics with the whole report when a check failed.
    pub fn assert_ok(&self) {
        assert!(self.is_ok(), "{self}");
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count =
            |pick: fn(&Verdict) -> bool| self.outcomes.iter().filter(|o| pick(&o.verdict)).count();
        writeln!(
            f,
            "conformance of plugin {:?}: {} passed, {} skipped, {} failed",
            self.plugin,
            count(|v| matches!(v, Verdict::Passed)),
            count(|v| matches!(v, Verdict::Skipped(_))),
            count(|v| matches!(v, Verdict::Failed(_))),
        )?;
        let side = |o: &Outcome| o.target.map(|t| format!(" ({t})")).unwrap_or_default();
        for o in &self.outcomes {
            if let Verdict::Failed(problems) = &o.verdict {
                writeln!(f, "FAILED {}{}:", o.check, side(o))?;
                for line in problems.lines() {
                    writeln!(f, "    {line}")?;
                }
            }
        }
        // One line per check and reason, naming the sides it was skipped on.
        let mut skipped: Vec<(&str, &str, Vec<String>)> = Vec::new();
        for o in &self.outcomes {
            if let Verdict::Skipped(why) = &o.verdict {
                let target = o.target.map(|t| t.to_string());
                match skipped
                    .iter_mut()
                    .find(|(check, reason, _)| *check == o.check && reason == why)
                {
                    Some((_, _, sides)) => sides.extend(target),
                    None => skipped.push((o.check, why, target.into_iter().collect())),
                }
            }
        }
        for (check, why, sides) in skipped {
            let sides = if sides.is_empty() {
                String::new()
            } else {
                format!(" ({})", sides.join(", "))
            };
            writeln!(f, "skipped {check}{sides}: {why}")?;
        }
        Ok(())
    }
}

type Factory<D> = Arc<dyn Fn() -> D + Send + Sync>;
type WatcherProbe<D> = Arc<dyn Fn(&D) -> usize + Send + Sync>;
type ServeHook<D> = Box<dyn Fn(ServeOpts<Arc<D>>) -> ServeOpts<Arc<D>> + Send + Sync>;

/// The conformance suite for one plugin: build it, declare what the store cannot do, run it.
///
/// The suite stores its data set through the [`Fixture`] first, then makes two databases with
/// the factory: one it calls directly, and one it serves with [`serve_in_process`] and calls
/// through the host's client. Both get [`Fixture::config`]. Each check runs on both sides.
pub struct Conformance<D: Database, F: Fixture> {
    name: String,
    factory: Factory<D>,
    fixture: F,
    root: String,
    can_watch: bool,
    static_data: bool,
    tells_keys_apart: bool,
    max_value_bytes: usize,
    many_keys: usize,
    empty_values: bool,
    bad_settings: Vec<(String, String)>,
    watchers: Option<WatcherProbe<D>>,
    serve_hook: Option<ServeHook<D>>,
    skipped: BTreeMap<&'static str, String>,
}

impl<D: Database, F: Fixture> Conformance<D, F> {
    /// A suite for the databases `factory` makes (unconfigured, as `serve` would make them),
    /// reading the store `fixture` writes to.
    pub fn new(factory: impl Fn() -> D + Send + Sync + 'static, fixture: F) -> Self {
        Conformance {
            name: "plugin".to_string(),
            factory: Arc::new(factory),
            fixture,
            root: "/conformance".to_string(),
            can_watch: true,
            static_data: false,
            tells_keys_apart: true,
            max_value_bytes: 1 << 20,
            many_keys: 2000,
            empty_values: true,
            bad_settings: Vec::new(),
            watchers: None,
            serve_hook: None,
            skipped: BTreeMap::new(),
        }
    }

    /// The plugin's name, as given to `ServeOpts::new` (default `plugin`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Where the suite's keys live (default `/conformance`); the store may hold other keys
    /// elsewhere.
    pub fn root(mut self, root: impl Into<String>) -> Self {
        let root: String = root.into();
        self.root = format!("/{}", root.trim_matches('/'));
        self
    }

    /// The store cannot watch: the suite then checks that `watch_prefix` says `Unimplemented`.
    pub fn cannot_watch(mut self) -> Self {
        self.can_watch = false;
        self
    }

    /// The store's data cannot change once the database is made (the process environment): the
    /// checks that need a change are not run.
    pub fn static_data(mut self) -> Self {
        self.static_data = true;
        self
    }

    /// The store's watch wakes on any change, because it cannot tell which keys changed: the
    /// check that unrelated changes do not wake a watch is not run.
    pub fn watch_wakes_on_any_change(mut self) -> Self {
        self.tells_keys_apart = false;
        self
    }

    /// The store cannot hold an empty value (SSM Parameter Store refuses one): the data set
    /// leaves the empty value out, and the value checks do without it.
    pub fn no_empty_values(mut self) -> Self {
        self.empty_values = false;
        self
    }

    /// The largest value the store holds (the large-value check uses 1 MiB, or this if less).
    pub fn max_value_bytes(mut self, bytes: usize) -> Self {
        self.max_value_bytes = bytes;
        self
    }

    /// How many keys the many-keys check stores under one prefix (default 2000).
    pub fn many_keys(mut self, count: usize) -> Self {
        self.many_keys = count;
        self
    }

    /// A setting `configure` must refuse: `key = value` is added to the fixture's settings, and
    /// the error must be `InvalidConfig` and name `key`. An unknown key is always tried.
    pub fn bad_setting(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.bad_settings.push((key.into(), value.into()));
        self
    }

    /// How many watchers (threads, subscriptions, store-side watches) a database holds now;
    /// the cancel check then also requires this to return to where it was.
    pub fn watchers(mut self, count: impl Fn(&D) -> usize + Send + Sync + 'static) -> Self {
        self.watchers = Some(Arc::new(count));
        self
    }

    /// Adjusts the `ServeOpts` of the served twin, e.g. to add the plugin's `visit_values`.
    pub fn serve_options(
        mut self,
        adjust: impl Fn(ServeOpts<Arc<D>>) -> ServeOpts<Arc<D>> + Send + Sync + 'static,
    ) -> Self {
        self.serve_hook = Some(Box::new(adjust));
        self
    }

    /// Does not run `check`, and says why in the report. For a known violation that is not
    /// fixed yet: the reason should say what is wrong. Panics on a name not in [`CHECKS`].
    pub fn skip(mut self, check: &str, reason: impl Into<String>) -> Self {
        let Some((name, _)) = CHECKS.iter().find(|(name, _)| *name == check) else {
            let names: Vec<&str> = CHECKS.iter().map(|(name, _)| *name).collect();
            panic!(
                "there is no conformance check {check:?}; the checks are: {}",
                names.join(", ")
            );
        };
        self.skipped.insert(name, reason.into());
        self
    }

    /// Runs every check and panics with the report if any failed. The report is printed
    /// either way (`cargo test -- --nocapture` shows it for a passing run).
    pub async fn run(self) {
        let report = self.report().await;
        println!("{report}");
        report.assert_ok();
    }

    /// Runs every check and returns what it found.
    pub async fn report(self) -> Report {
        let mut run = Run {
            data: Data::new(
                &self.root,
                self.max_value_bytes,
                self.many_keys,
                self.empty_values,
            ),
            suite: &self,
            report: Report {
                plugin: self.name.clone(),
                outcomes: Vec::new(),
            },
        };
        run.all().await;
        run.report
    }
}

/// One side under test.
struct Side<'a, D> {
    target: Target,
    db: &'a dyn Database,
    instance: &'a Arc<D>,
}

/// The suite's data set: every key under `root`.
struct Data {
    root: String,
    entries: BTreeMap<String, String>,
}

/// Whether `requested` covers store key `key`: itself, or below it as a path. Written out here
/// rather than taken from `crate::keys`, because it is what backends built on those helpers
/// are checked against.
fn covers(requested: &str, key: &str) -> bool {
    let base = requested.trim_end_matches('/');
    base.is_empty() || key == base || (key.starts_with(base) && key[base.len()..].starts_with('/'))
}

impl Data {
    fn new(root: &str, max_value_bytes: usize, many_keys: usize, empty_values: bool) -> Data {
        let r = root;
        let mut entries: BTreeMap<String, String> = [
            ("app/port", "8080"),
            ("app/db/host", "db.internal"),
            ("app/db/user", "confd"),
            ("application/name", "a lookalike of /app"),
            ("apple", "a lookalike of /app"),
            ("app-x", "a lookalike of /app"),
            ("other/x", "x"),
            ("values/empty", ""),
            ("values/multiline", "first line\nsecond line\n"),
            ("values/crlf", "one\r\ntwo\r\n"),
            ("values/unicode", "grüße, ça va? 日本語 😀"),
            ("values/padded", "  padded both sides\t "),
            (
                "values/symbols",
                "a=b&c;d#e $HOME %s {{ .x }} \\ \"q\" 'q' <tag>",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (format!("{r}/{k}"), v.to_string()))
        .collect();
        entries.insert(
            format!("{r}/large/blob"),
            large_value(max_value_bytes.min(1 << 20)),
        );
        if !empty_values {
            entries.retain(|_, value| !value.is_empty());
        }
        for i in 0..many_keys {
            entries.insert(
                format!("{r}/many/k{i:05}"),
                format!("{i}: {}", "x".repeat(i % 40 + 1)),
            );
        }
        Data {
            root: root.to_string(),
            entries,
        }
    }

    fn key(&self, rest: &str) -> String {
        format!("{}/{rest}", self.root)
    }

    fn keys(&self, rest: &[&str]) -> Vec<String> {
        rest.iter().map(|r| self.key(r)).collect()
    }

    /// What a read of `requested` must return.
    fn select(&self, requested: &[String]) -> BTreeMap<String, String> {
        self.entries
            .iter()
            .filter(|(k, _)| requested.iter().any(|r| covers(r, k)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// `bytes` of lines of text, numbered so that a misplaced chunk shows.
fn large_value(bytes: usize) -> String {
    let mut out = String::with_capacity(bytes + 64);
    let mut line = 0;
    while out.len() < bytes {
        out.push_str(&format!(
            "line {line:07}: the quick brown fox jumps over the dog\n"
        ));
        line += 1;
    }
    out.truncate(bytes);
    out
}

/// A value for messages: short ones whole, long ones cut, always escaped.
fn show(value: &str) -> String {
    if value.len() <= 60 {
        format!("{value:?}")
    } else {
        let mut end = 40;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        format!("{:?}... ({} bytes)", &value[..end], value.len())
    }
}

fn show_keys(keys: &[String]) -> String {
    match keys {
        [] => "[]".to_string(),
        [one] => format!("[{one:?}]"),
        _ => format!("{keys:?}"),
    }
}

/// Where two values first differ, for values too long to print.
fn first_difference(want: &str, got: &str) -> String {
    let at = want
        .bytes()
        .zip(got.bytes())
        .position(|(a, b)| a != b)
        .unwrap_or(want.len().min(got.len()));
    format!(
        "{} bytes instead of {}, first difference at byte {at}",
        got.len(),
        want.len()
    )
}

/// Compares a read with what it must return, naming every difference.
fn compare(
    call: &str,
    requested: &[String],
    want: &BTreeMap<String, String>,
    got: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (key, value) in got {
        match want.get(key) {
            None => {
                let lookalike = requested.iter().find(|r| {
                    let base = r.trim_end_matches('/');
                    !base.is_empty() && key.starts_with(base) && !covers(r, key)
                });
                problems.push(match lookalike {
                    Some(r) => {
                        format!("{call} returned {key:?}, which is not {r:?} or below it as a path")
                    }
                    None => format!("{call} returned {key:?}, which it was not asked for"),
                });
            }
            Some(expected) if expected != value => {
                let detail = if expected.len() > 60 || value.len() > 60 {
                    first_difference(expected, value)
                } else {
                    format!("expected {}", show(expected))
                };
                problems.push(format!(
                    "{call} returned {key:?} = {}: {detail}",
                    show(value)
                ));
            }
            Some(_) => {}
        }
    }
    for key in want.keys().filter(|k| !got.contains_key(*k)) {
        problems.push(format!("{call} did not return {key:?}"));
    }
    problems
}

/// Keeps the first problems and counts the rest.
fn summarize(mut problems: Vec<String>) -> Vec<String> {
    if problems.len() > MAX_PROBLEMS {
        let more = problems.len() - MAX_PROBLEMS;
        problems.truncate(MAX_PROBLEMS);
        problems.push(format!("... and {more} more"));
    }
    problems
}

async fn read(db: &dyn Database, keys: &[String]) -> Result<BTreeMap<String, String>, String> {
    match tokio::time::timeout(READ_TIMEOUT, db.get_values(keys)).await {
        Ok(Ok(values)) => Ok(values),
        Ok(Err(err)) => Err(format!("get_values({}) failed: {err}", show_keys(keys))),
        Err(_) => Err(format!(
            "get_values({}) did not answer within {READ_TIMEOUT:?}",
            show_keys(keys)
        )),
    }
}

/// Runs `call`, failing when it takes longer than `limit`.
async fn within<T>(
    limit: Duration,
    what: &str,
    call: impl Future<Output = Result<T, Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(format!("{what} failed: {err}")),
        Err(_) => Err(format!("{what} did not return within {limit:?}")),
    }
}

/// Tasks alive on this runtime: a cancelled watch that leaves a task behind shows here.
fn alive_tasks() -> usize {
    tokio::runtime::Handle::try_current().map_or(0, |h| h.metrics().num_alive_tasks())
}

/// A running suite.
struct Run<'a, D: Database, F: Fixture> {
    suite: &'a Conformance<D, F>,
    data: Data,
    report: Report,
}

impl<D: Database, F: Fixture> Run<'_, D, F> {
    fn record(&mut self, check: &'static str, target: Option<Target>, problems: Vec<String>) {
        let verdict = if problems.is_empty() {
            Verdict::Passed
        } else {
            Verdict::Failed(summarize(problems).join("\n"))
        };
        self.report.outcomes.push(Outcome {
            check,
            target,
            verdict,
        });
    }

    fn skip(&mut self, check: &'static str, target: Option<Target>, why: &str) {
        self.report.outcomes.push(Outcome {
            check,
            target,
            verdict: Verdict::Skipped(why.to_string()),
        });
    }

    /// Whether to run `check` on `target`; records why not when it is skipped by the test.
    fn wanted(&mut self, check: &'static str, target: Option<Target>) -> bool {
        match self.suite.skipped.get(check) {
            Some(why) => {
                let why = why.clone();
                self.skip(check, target, &why);
                false
            }
            None => true,
        }
    }

    /// A problem that stops the run: the set-up failed.
    fn setup_failed(&mut self, target: Option<Target>, problem: String) {
        self.report.outcomes.push(Outcome {
            check: "setup",
            target,
            verdict: Verdict::Failed(problem),
        });
    }

    async fn all(&mut self) {
        let entries: Vec<(String, String)> = self
            .data
            .entries
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Err(err) = self.suite.fixture.put_all(&entries).await {
            self.setup_failed(
                None,
                format!("the fixture could not store the test data: {err}"),
            );
            return;
        }
        let local = Arc::new((self.suite.factory)());
        let twin = Arc::new((self.suite.factory)());
        let opts = ServeOpts::new(self.suite.name.clone(), {
            let twin = Arc::clone(&twin);
            move || twin
        });
        let opts = match &self.suite.serve_hook {
            Some(adjust) => adjust(opts),
            None => opts,
        };
        let served: Option<InProcessPlugin> = match serve_in_process(opts).await {
            Ok(served) => Some(served),
            Err(err) => {
                self.setup_failed(Some(Target::Served), format!("serving failed: {err}"));
                None
            }
        };
        let mut sides = vec![Side {
            target: Target::InProcess,
            db: local.as_ref() as &dyn Database,
            instance: &local,
        }];
        if let Some(served) = &served {
            sides.push(Side {
                target: Target::Served,
                db: served,
                instance: &twin,
            });
        }

        for side in &sides {
            self.configure_checks(side).await;
        }
        let mut configured = Vec::new();
        for side in sides {
            match within(
                READ_TIMEOUT,
                "configure with the fixture's settings",
                side.db.configure(self.suite.fixture.config()),
            )
            .await
            {
                Ok(()) => configured.push(side),
                Err(problem) => self.setup_failed(Some(side.target), problem),
            }
        }
        for side in &configured {
            self.read_checks(side).await;
        }
        for side in &configured {
            self.watch_checks(side).await;
        }
        if let Some(served) = served
            && self.wanted("served-shutdown", None)
        {
            let problems = match served.shutdown().await {
                Ok(()) => Vec::new(),
                Err(err) => vec![err.to_string()],
            };
            self.record("served-shutdown", None, problems);
        }
    }

    async fn configure_checks(&mut self, side: &Side<'_, D>) {
        let target = Some(side.target);
        let mut cases = Vec::new();
        if self.wanted("configure-unknown-key", target) {
            cases.push((
                "configure-unknown-key",
                UNKNOWN_SETTING.to_string(),
                "x".to_string(),
            ));
        }
        if self.suite.bad_settings.is_empty() {
            self.skip(
                "configure-bad-setting",
                target,
                "no bad_setting(..) was given",
            );
        } else if self.wanted("configure-bad-setting", target) {
            for (key, value) in &self.suite.bad_settings {
                cases.push(("configure-bad-setting", key.clone(), value.clone()));
            }
        }
        let mut problems: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
        for (check, key, value) in cases {
            let mut config = self.suite.fixture.config();
            config.insert(key.clone(), value.clone());
            let found = problems.entry(check).or_default();
            let call = format!("configure with {key:?} = {}", show(&value));
            match tokio::time::timeout(READ_TIMEOUT, side.db.configure(config)).await {
                Err(_) => found.push(format!("{call} did not return within {READ_TIMEOUT:?}")),
                Ok(Ok(())) => found.push(format!("{call} was accepted")),
                Ok(Err(err)) => {
                    // On the wire both kinds are gRPC InvalidArgument, so a served plugin's
                    // InvalidConfig arrives as InvalidArgument.
                    let kind_ok = match side.target {
                        Target::InProcess => err.kind() == ErrorKind::InvalidConfig,
                        Target::Served => matches!(
                            err.kind(),
                            ErrorKind::InvalidConfig | ErrorKind::InvalidArgument
                        ),
                    };
                    if !kind_ok {
                        found.push(format!(
                            "{call} failed with {:?}, not InvalidConfig: {err}",
                            err.kind()
                        ));
                    }
                    if !err.message().contains(&key) {
                        found.push(format!("{call} failed without naming {key:?}: {err}"));
                    }
                }
            }
        }
        for (check, found) in problems {
            self.record(check, target, found);
        }
    }

    async fn read_checks(&mut self, side: &Side<'_, D>) {
        let target = Some(side.target);
        let db = side.db;
        let cases: [(&'static str, Vec<String>); 6] = [
            ("read-exact-key", self.data.keys(&["app/port"])),
            ("read-path-prefix", self.data.keys(&["app"])),
            ("read-trailing-slash", self.data.keys(&["app/", "app/db/"])),
            (
                "read-missing-key",
                self.data.keys(&["missing", "app/missing"]),
            ),
            (
                "read-several-keys",
                self.data.keys(&[
                    "app/db",
                    "app",
                    "other",
                    "app/db/host",
                    "values/empty",
                    "missing",
                ]),
            ),
            ("read-values-exact", self.data.keys(&["values"])),
        ];
        for (check, keys) in cases {
            if !self.wanted(check, target) {
                continue;
            }
            let want = self.data.select(&keys);
            let call = format!("get_values({})", show_keys(&keys));
            let problems = match read(db, &keys).await {
                Ok(got) => compare(&call, &keys, &want, &got),
                Err(problem) => vec![problem],
            };
            self.record(check, target, problems);
        }

        if self.wanted("read-root", target) {
            let keys = vec!["/".to_string()];
            let problems = match read(db, &keys).await {
                Ok(mut got) => {
                    // Keys outside the suite's root belong to whoever else uses the store.
                    got.retain(|k, _| covers(&self.data.root, k));
                    compare("get_values([\"/\"])", &keys, &self.data.entries, &got)
                }
                Err(problem) => vec![problem],
            };
            self.record("read-root", target, problems);
        }

        if self.wanted("read-concurrent", target) {
            let sets: Vec<Vec<String>> = vec![
                self.data.keys(&["app"]),
                self.data.keys(&["app/db/host"]),
                self.data.keys(&["values", "other"]),
                self.data.keys(&["missing"]),
                self.data.keys(&["app/db", "application"]),
                self.data.keys(&["many"]),
            ];
            let calls = (0..CONCURRENT_READS).map(|i| {
                let keys = sets[i % sets.len()].clone();
                async move {
                    let got = read(db, &keys).await;
                    (keys, got)
                }
            });
            let answers = futures_util::future::join_all(calls).await;
            let mut problems = Vec::new();
            for (i, (keys, got)) in answers.into_iter().enumerate() {
                let call = format!("concurrent read {i}, get_values({})", show_keys(&keys));
                match got {
                    Ok(got) => {
                        problems.extend(compare(&call, &keys, &self.data.select(&keys), &got))
                    }
                    Err(problem) => problems.push(format!("concurrent read {i}: {problem}")),
                }
            }
            self.record("read-concurrent", target, problems);
        }

        for (check, keys) in [
            ("read-large-value", self.data.keys(&["large/blob"])),
            ("read-many-keys", self.data.keys(&["many"])),
        ] {
            if !self.wanted(check, target) {
                continue;
            }
            let want = self.data.select(&keys);
            let call = format!("get_values({})", show_keys(&keys));
            let problems = match read(db, &keys).await {
                Ok(got) => compare(&call, &keys, &want, &got),
                Err(problem) => vec![problem],
            };
            self.record(check, target, problems);
        }
    }

    async fn watch_checks(&mut self, side: &Side<'_, D>) {
        let target = Some(side.target);
        let db = side.db;
        let prefix = self.data.root.clone();
        let keys = self.data.keys(&["app"]);
        let watch_checks: Vec<&'static str> = CHECKS
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| name.starts_with("watch-") && *name != "watch-unimplemented")
            .collect();

        if !self.suite.can_watch {
            for check in &watch_checks {
                self.skip(check, target, "the store cannot watch (cannot_watch)");
            }
            if self.wanted("watch-unimplemented", target) {
                let problems = match tokio::time::timeout(
                    AT_ONCE,
                    db.watch_prefix(&prefix, &keys, 0),
                )
                .await
                {
                    Err(_) => vec![format!("watch_prefix did not return within {AT_ONCE:?}")],
                    Ok(Ok(index)) => vec![format!(
                        "watch_prefix returned index {index}; a store that cannot watch must answer Unimplemented"
                    )],
                    Ok(Err(err)) if err.kind() == ErrorKind::Unimplemented => Vec::new(),
                    Ok(Err(err)) => vec![format!(
                        "watch_prefix failed with {:?}, not Unimplemented: {err}",
                        err.kind()
                    )],
                };
                self.record("watch-unimplemented", target, problems);
            }
            return;
        }
        self.skip("watch-unimplemented", target, "the store can watch");

        let watch0 = || {
            within(
                AT_ONCE,
                "watch_prefix with wait_index 0",
                db.watch_prefix(&prefix, &keys, 0),
            )
        };
        let changes = !self.suite.static_data;
        // A key deleted by the other side's run is back, so its delete is a change again.
        if changes && let Err(problem) = self.put("app/db/user", "confd").await {
            self.setup_failed(target, problem);
            return;
        }

        if self.wanted("watch-index-zero", target) {
            let problems = match watch0().await {
                Ok(0) => vec!["watch_prefix with wait_index 0 returned index 0, which means \"no index yet\"; the host would never wait".to_string()],
                Ok(_) => Vec::new(),
                Err(problem) => vec![problem],
            };
            self.record("watch-index-zero", target, problems);
        }

        if self.wanted("watch-waits", target) {
            let problems = match watch0().await {
                Ok(index) => {
                    match tokio::time::timeout(QUIET, db.watch_prefix(&prefix, &keys, index)).await
                    {
                        Err(_) => Vec::new(),
                        Ok(Ok(next)) => vec![format!(
                            "watch_prefix at the current index {index} returned {next} within {QUIET:?} though nothing changed"
                        )],
                        Ok(Err(err)) => {
                            vec![format!("watch_prefix at index {index} failed: {err}")]
                        }
                    }
                }
                Err(problem) => vec![problem],
            };
            self.record("watch-waits", target, problems);
        }

        let index_checks = [
            "watch-change-before-call",
            "watch-wakes",
            "watch-index-grows",
            "watch-delete-wakes",
            "watch-ignores-unrelated",
        ];
        if !changes {
            for check in index_checks {
                self.skip(
                    check,
                    target,
                    "the store's data cannot change (static_data)",
                );
            }
        } else {
            self.change_checks(side, &prefix, &keys).await;
        }

        if self.wanted("watch-cancel-clean", target) {
            let problems = self.cancel_check(side, &prefix, &keys).await;
            self.record("watch-cancel-clean", target, problems);
        }
    }

    async fn put(&self, rest: &str, value: &str) -> Result<(), String> {
        let key = self.data.key(rest);
        self.suite
            .fixture
            .put(&key, value)
            .await
            .map_err(|e| format!("the fixture could not put {key:?}: {e}"))
    }

    async fn delete(&self, rest: &str) -> Result<(), String> {
        let key = self.data.key(rest);
        self.suite
            .fixture
            .delete(&key)
            .await
            .map_err(|e| format!("the fixture could not delete {key:?}: {e}"))
    }

    /// The checks that change the store; each needs the index of the one before, so they run
    /// in order, and a failure to get an index is reported once.
    async fn change_checks(&mut self, side: &Side<'_, D>, prefix: &str, keys: &[String]) {
        let target = Some(side.target);
        let db = side.db;
        let mut grows = Vec::new();
        let first = match within(
            AT_ONCE,
            "watch_prefix with wait_index 0",
            db.watch_prefix(prefix, keys, 0),
        )
        .await
        {
            Ok(index) => index,
            Err(problem) => {
                for check in [
                    "watch-change-before-call",
                    "watch-wakes",
                    "watch-index-grows",
                    "watch-delete-wakes",
                    "watch-ignores-unrelated",
                ] {
                    if self.wanted(check, target) {
                        self.record(
                            check,
                            target,
                            vec![format!("no index to start from: {problem}")],
                        );
                    }
                }
                return;
            }
        };
        let mut index = first;

        // A change between taking the index and the next call, as between confd's read and its
        // next watch call: it must not be lost.
        if self.wanted("watch-change-before-call", target) {
            let value = format!("8081 {}", side.target);
            let mut problems = Vec::new();
            match self.put("app/port", &value).await {
                Err(problem) => problems.push(problem),
                Ok(()) => match within(
                    WAKE,
                    "watch_prefix after a change",
                    db.watch_prefix(prefix, keys, index),
                )
                .await
                {
                    Ok(next) if next == index => problems.push(format!(
                        "watch_prefix returned wait_index {index} itself after a change"
                    )),
                    Ok(next) => {
                        grows.push((index, next));
                        index = next;
                        problems.extend(self.sees(db, "app/port", Some(&value)).await);
                    }
                    Err(problem) => problems.push(format!(
                        "after {:?} changed, {problem}",
                        self.data.key("app/port")
                    )),
                },
            }
            self.record("watch-change-before-call", target, problems);
        }

        if self.wanted("watch-wakes", target) {
            let value = format!("changed on the {} side", side.target);
            let mut problems = Vec::new();
            let (woke, put) = tokio::join!(
                within(
                    WAKE,
                    "watch_prefix_values",
                    db.watch_prefix_values(prefix, keys, index)
                ),
                async {
                    tokio::time::sleep(PARK).await;
                    self.put("app/db/host", &value).await
                }
            );
            if let Err(problem) = put {
                problems.push(problem);
            }
            match woke {
                Ok((next, _)) if next == index => problems.push(format!(
                    "the woken watch returned wait_index {index} itself"
                )),
                Ok((next, values)) => {
                    grows.push((index, next));
                    index = next;
                    // Values sent along must be a read made after the change.
                    if let Some(values) = values {
                        let key = self.data.key("app/db/host");
                        if values.get(&key) != Some(&value) {
                            problems.push(format!(
                                "the values sent with the watch answer have {key:?} = {}, not the new {}",
                                values.get(&key).map_or("nothing".to_string(), |v| show(v)),
                                show(&value)
                            ));
                        }
                    }
                    problems.extend(self.sees(db, "app/db/host", Some(&value)).await);
                }
                Err(problem) => problems.push(format!(
                    "a change to {:?} did not wake the watch: {problem}",
                    self.data.key("app/db/host")
                )),
            }
            self.record("watch-wakes", target, problems);
        }

        if self.wanted("watch-ignores-unrelated", target) {
            if self.suite.tells_keys_apart {
                let mut problems = Vec::new();
                let unrelated = ["application/name", "apple", "app-x", "other/x"];
                let (pending, puts) = tokio::join!(
                    tokio::time::timeout(UNRELATED_QUIET, db.watch_prefix(prefix, keys, index)),
                    async {
                        tokio::time::sleep(PARK).await;
                        let mut failed = Vec::new();
                        for rest in unrelated {
                            if let Err(problem) = self
                                .put(rest, &format!("changed by the {} side", side.target))
                                .await
                            {
                                failed.push(problem);
                            }
                        }
                        failed
                    }
                );
                problems.extend(puts);
                match pending {
                    Err(_) => {}
                    Ok(Ok(next)) => problems.push(format!(
                        "a watch on {} woke (index {index} -> {next}) when only {} changed",
                        show_keys(keys),
                        show_keys(&self.data.keys(&unrelated))
                    )),
                    Ok(Err(err)) => problems.push(format!("the watch failed: {err}")),
                }
                self.record("watch-ignores-unrelated", target, problems);
            } else {
                self.skip(
                    "watch-ignores-unrelated",
                    target,
                    "the store cannot tell which keys changed (watch_wakes_on_any_change)",
                );
            }
        }

        if self.wanted("watch-delete-wakes", target) {
            let mut problems = Vec::new();
            let (woke, deleted) = tokio::join!(
                within(WAKE, "watch_prefix", db.watch_prefix(prefix, keys, index)),
                async {
                    tokio::time::sleep(PARK).await;
                    self.delete("app/db/user").await
                }
            );
            if let Err(problem) = deleted {
                problems.push(problem);
            }
            match woke {
                Ok(next) if next == index => problems.push(format!(
                    "the woken watch returned wait_index {index} itself"
                )),
                Ok(next) => {
                    grows.push((index, next));
                    problems.extend(self.sees(db, "app/db/user", None).await);
                }
                Err(problem) => problems.push(format!(
                    "deleting {:?} did not wake the watch: {problem}",
                    self.data.key("app/db/user")
                )),
            }
            self.record("watch-delete-wakes", target, problems);
        }

        if self.wanted("watch-index-grows", target) {
            let problems = if grows.is_empty() {
                vec!["no watch woke, so no index could be compared".to_string()]
            } else {
                grows
                    .iter()
                    .filter(|(before, after)| after <= before)
                    .map(|(before, after)| {
                        format!("a change woke the watch at wait_index {before} with index {after}, which is not larger")
                    })
                    .collect()
            };
            self.record("watch-index-grows", target, problems);
        }
    }

    /// Problems if a read of `rest` does not show `value` (`None`: the key is gone).
    async fn sees(&self, db: &dyn Database, rest: &str, value: Option<&str>) -> Vec<String> {
        let keys = vec![self.data.key(rest)];
        match read(db, &keys).await {
            Ok(got) => {
                let now = got.get(&keys[0]).map(String::as_str);
                if now == value {
                    Vec::new()
                } else {
                    vec![format!(
                        "a read after the watch woke has {:?} = {}, not {}",
                        keys[0],
                        now.map_or("nothing".to_string(), show),
                        value.map_or("nothing".to_string(), show)
                    )]
                }
            }
            Err(problem) => vec![format!("reading after the watch woke: {problem}")],
        }
    }

    /// Watches dropped while waiting must release everything: runtime tasks, and the store's
    /// watchers when the test can count them. One round first lets lazily built, shared state
    /// (connection pools, subscriptions) settle; the rounds after it must add nothing.
    async fn cancel_check(
        &mut self,
        side: &Side<'_, D>,
        prefix: &str,
        keys: &[String],
    ) -> Vec<String> {
        let db = side.db;
        let probe = self.suite.watchers.clone();
        let instance = Arc::clone(side.instance);
        let watchers = move || probe.as_ref().map(|count| count(&instance));
        let mut problems = Vec::new();
        let index = match within(
            AT_ONCE,
            "watch_prefix with wait_index 0",
            db.watch_prefix(prefix, keys, 0),
        )
        .await
        {
            Ok(index) => index,
            Err(problem) => return vec![problem],
        };
        let cancel_round = || async {
            let mut pending: FuturesUnordered<_> = (0..CANCELLED_WATCHES)
                .map(|_| db.watch_prefix(prefix, keys, index))
                .collect();
            // Dropping `pending` when the time is up cancels every watch, as confd does.
            match tokio::time::timeout(PARK, pending.next()).await {
                Err(_) | Ok(None) => None,
                Ok(Some(Ok(next))) => Some(format!(
                    "a watch at the current index {index} returned {next} though nothing changed"
                )),
                Ok(Some(Err(err))) => Some(format!("a watch at index {index} failed: {err}")),
            }
        };
        if let Some(problem) = cancel_round().await {
            return vec![problem];
        }
        tokio::time::sleep(PARK).await;
        let baseline = (alive_tasks(), watchers());
        for round in 1..=2 {
            if let Some(problem) = cancel_round().await {
                problems.push(problem);
                break;
            }
            let deadline = Instant::now() + CLEANUP;
            let mut now = (alive_tasks(), watchers());
            while (now.0 > baseline.0 || now.1 > baseline.1) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
                now = (alive_tasks(), watchers());
            }
            if now.0 > baseline.0 {
                problems.push(format!(
                    "{CLEANUP:?} after round {round} of {CANCELLED_WATCHES} cancelled watches, {} runtime tasks are alive; {} were before",
                    now.0, baseline.0
                ));
            }
            if let (Some(after), Some(before)) = (now.1, baseline.1)
                && after > before
            {
                problems.push(format!(
                    "{CLEANUP:?} after round {round} of {CANCELLED_WATCHES} cancelled watches, the store holds {after} watchers; it held {before} before"
                ));
            }
            if !problems.is_empty() {
                break;
            }
        }
        // Still answering, and still watching.
        if let Err(problem) = within(
            AT_ONCE,
            "get_values after cancelled watches",
            db.get_values(keys),
        )
        .await
        {
            problems.push(problem);
        }
        match within(
            AT_ONCE,
            "watch_prefix with wait_index 0 after cancelled watches",
            db.watch_prefix(prefix, keys, 0),
        )
        .await
        {
            Err(problem) => problems.push(problem),
            Ok(index) if !self.suite.static_data => {
                let value = format!("after cancelled watches on the {} side", side.target);
                let (woke, put) = tokio::join!(
                    within(
                        WAKE,
                        "a watch after cancelled watches",
                        db.watch_prefix(prefix, keys, index)
                    ),
                    async {
                        tokio::time::sleep(PARK).await;
                        self.put("app/port", &value).await
                    }
                );
                if let Err(problem) = put.and(woke) {
                    problems.push(problem);
                }
            }
            Ok(_) => {}
        }
        problems
    }
}
