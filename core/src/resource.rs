//! Template resources: discovery under `conf.d`, parsing of the `[template]`
//! table, and every check that can run before anything is written, so a bad
//! confdir fails as a whole (exit 2) instead of half-applying.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::engine::{EngineKind, Template, TemplateOptions};
use crate::format::OutputFormat;
use crate::keys;
use crate::options::RunOptions;
use crate::throttle::ReloadGate;

/// One template resource, fully validated: everything a sync needs.
#[derive(Clone)]
pub struct Resource {
    source_file: PathBuf,
    src: String,
    dest: PathBuf,
    prefix: String,
    keys: Vec<String>,
    query_keys: Vec<String>,
    uid: Option<u32>,
    gid: Option<u32>,
    /// `owner` / `group` names that did not resolve at load time: looked up again at each
    /// write, as the account may be created later (by the package of the service).
    owner_name: Option<String>,
    group_name: Option<String>,
    mode: Option<u32>,
    check_cmd: Option<String>,
    reload_cmd: Option<String>,
    check_cmd_timeout: Duration,
    reload_cmd_timeout: Duration,
    /// `debounce` / `min_reload_interval`, and the state they keep across syncs.
    reload_gate: Arc<ReloadGate>,
    backend: String,
    /// The resource's `[backend]` table (the maintained fork's per-resource backend), keys as
    /// written (a plugin's own settings are case-sensitive); the host resolves it into a plugin and names it with [`Resource::route_to`].
    backend_table: Option<toml::Table>,
    engine: EngineKind,
    output_format: Option<OutputFormat>,
    template: Arc<Template>,
}

impl fmt::Debug for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resource")
            .field("source_file", &self.source_file)
            .field("src", &self.src)
            .field("dest", &self.dest)
            .field("backend", &self.backend)
            .field("prefix", &self.prefix)
            .field("query_keys", &self.query_keys)
            .finish_non_exhaustive()
    }
}

impl Resource {
    /// The backend this resource reads (its `backend` key or the run's default), or, once the
    /// host routed it, the name of the plugin that serves it.
    pub fn backend(&self) -> &str {
        &self.backend
    }
    /// The `[backend]` table, if the resource has one (`backend = "<name>"` and that backend's
    /// settings, as in confd.toml).
    pub fn backend_table(&self) -> Option<&toml::Table> {
        self.backend_table.as_ref()
    }
    /// Sends this resource to the database named `backend` in the run's
    /// [`Backends`](crate::Backends): the host's name for the plugin of its `[backend]` table.
    pub fn route_to(&mut self, backend: impl Into<String>) {
        self.backend = backend.into();
    }
    /// The destination file.
    pub fn dest(&self) -> &Path {
        &self.dest
    }
    /// The resource TOML file this resource came from.
    pub fn source_file(&self) -> &Path {
        &self.source_file
    }
    /// The template name, relative to `<confdir>/templates`.
    pub fn src(&self) -> &str {
        &self.src
    }
    /// The effective prefix (global and resource prefix joined), e.g. `/g/r` or `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    /// The `keys` as written in the resource.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }
    /// The store keys asked for: each key joined to the prefix, sorted, without duplicates.
    pub fn query_keys(&self) -> &[String] {
        &self.query_keys
    }
    /// The explicit file mode (permission and special bits), if set.
    pub fn mode(&self) -> Option<u32> {
        self.mode
    }
    /// The explicit owner (from `uid` or `owner`), if set.
    pub fn uid(&self) -> Option<u32> {
        self.uid
    }
    /// The explicit group (from `gid` or `group`), if set.
    pub fn gid(&self) -> Option<u32> {
        self.gid
    }
    /// The owner and group to write with, looking up the names that were unknown at load time;
    /// an error names the account still unknown (it fails this resource only).
    pub fn owner_ids(&self) -> Result<(Option<u32>, Option<u32>), String> {
        let uid = match (&self.uid, &self.owner_name) {
            (Some(uid), _) => Some(*uid),
            (None, Some(name)) => Some(find_user(name)?),
            (None, None) => None,
        };
        let gid = match (&self.gid, &self.group_name) {
            (Some(gid), _) => Some(*gid),
            (None, Some(name)) => Some(find_group(name)?),
            (None, None) => None,
        };
        Ok((uid, gid))
    }
    /// The check command, with `{{.src}}` still in it.
    pub fn check_cmd(&self) -> Option<&str> {
        self.check_cmd.as_deref()
    }
    /// The reload command.
    pub fn reload_cmd(&self) -> Option<&str> {
        self.reload_cmd.as_deref()
    }
    /// Time limit of `check_cmd`.
    pub fn check_cmd_timeout(&self) -> Duration {
        self.check_cmd_timeout
    }
    /// Time limit of `reload_cmd`.
    pub fn reload_cmd_timeout(&self) -> Duration {
        self.reload_cmd_timeout
    }
    /// `debounce`: a reload waits until writes have been quiet this long (zero: none).
    pub fn reload_debounce(&self) -> Duration {
        self.reload_gate.debounce()
    }
    /// `min_reload_interval`: the least time between two reloads (zero: none).
    pub fn min_reload_interval(&self) -> Duration {
        self.reload_gate.min_interval()
    }
    pub(crate) fn reload_gate(&self) -> &Arc<ReloadGate> {
        &self.reload_gate
    }
    /// The template engine in use.
    pub fn engine(&self) -> EngineKind {
        self.engine
    }
    /// What the rendered file must parse as before it replaces the destination.
    pub fn output_format(&self) -> Option<OutputFormat> {
        self.output_format
    }
    pub(crate) fn template(&self) -> &Template {
        &self.template
    }
}

/// One problem in one resource file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceError {
    /// The resource TOML file.
    pub file: PathBuf,
    /// The line of the resource file the problem is on (1-based), when it is about one key or
    /// a TOML syntax error.
    pub line: Option<usize>,
    /// What is wrong, for people.
    pub message: String,
}

impl fmt::Display for ResourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// A problem found while loading one file, with the `[template]` key it is about (whose line
/// is looked up once the file is done) or a line known already.
struct Problem {
    key: Option<String>,
    line: Option<usize>,
    message: String,
}

impl Problem {
    fn at(key: &str, message: impl Into<String>) -> Problem {
        Problem {
            key: Some(key.to_string()),
            line: None,
            message: message.into(),
        }
    }
}

impl From<String> for Problem {
    fn from(message: String) -> Problem {
        Problem {
            key: None,
            line: None,
            message,
        }
    }
}

impl From<&str> for Problem {
    fn from(message: &str) -> Problem {
        Problem::from(message.to_string())
    }
}

/// The line of each `[template]` key in `text`, keys lower-cased like the decoder's; empty
/// when the text does not parse (the syntax error has its own line).
fn key_lines(text: &str) -> BTreeMap<String, usize> {
    let Ok(doc) = toml::de::DeTable::parse(text) else {
        return BTreeMap::new();
    };
    let mut lines = BTreeMap::new();
    for (name, value) in doc.get_ref() {
        if !name.get_ref().eq_ignore_ascii_case("template") {
            continue;
        }
        if let toml::de::DeValue::Table(table) = value.get_ref() {
            for (key, _) in table {
                lines
                    .entry(key.get_ref().to_ascii_lowercase())
                    .or_insert_with(|| line_of(text, key.span().start));
            }
        }
    }
    lines
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Loading failed: every problem found, in file order, so one run shows them all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LoadError {
    /// One entry per problem (a file may appear more than once).
    pub errors: Vec<ResourceError>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(
            f,
            "{n} template resource error{}",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// Parses a mode string. Always octal, with or without a leading `0` or
/// `0o` (`"0644"`, `"644"`, `"0o644"`); special bits count (`"04755"` is
/// setuid). Anything else, or a value above `07777`, is an error.
pub fn parse_mode(text: &str) -> Result<u32, String> {
    let digits = text
        .strip_prefix("0o")
        .or_else(|| text.strip_prefix("0O"))
        .unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(format!(
            "invalid mode {text:?}: expected octal digits such as \"0644\""
        ));
    }
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o7777 => Ok(mode),
        _ => Err(format!("invalid mode {text:?}: above 07777")),
    }
}

/// Finds, parses and validates every resource under `<confdir>/conf.d`.
///
/// Files are those whose name ends in `.toml`, found recursively and taken
/// in sorted path order. A missing `conf.d` gives no resources (and a
/// warning), like confd. All problems are collected before returning.
///
/// When every resource loads (and not in `noop` mode), the stage files that
/// killed runs left beside their destinations are removed (see `stage`).
pub fn load_resources(opts: &RunOptions) -> Result<Vec<Resource>, LoadError> {
    let conf_d = opts.confdir.join("conf.d");
    let mut files = Vec::new();
    let mut errors = Vec::new();
    if !conf_d.is_dir() {
        tracing::warn!("{} does not exist: no template resources", conf_d.display());
        return Ok(Vec::new());
    }
    find_toml_files(&conf_d, 0, &mut files, &mut errors);
    files.sort();
    if files.is_empty() {
        tracing::warn!("found no template resources in {}", conf_d.display());
    }
    let templates_dir = opts.confdir.join("templates");
    let mut cache = TemplateCache::default();
    let mut resources = Vec::new();
    for file in files {
        match load_one(&file, opts, &templates_dir, &mut cache) {
            Ok(r) => resources.push(r),
            Err(mut errs) => errors.append(&mut errs),
        }
    }
    let mut writers: HashMap<&Path, &Path> = HashMap::new();
    for r in &resources {
        if let Some(first) = writers.insert(r.dest(), r.source_file()) {
            // Allowed (confd allows it) but the winner depends on timing.
            tracing::warn!(
                "{} is the dest of both {} and {}; the last write wins",
                r.dest().display(),
                first.display(),
                r.source_file().display()
            );
        }
    }
    if !errors.is_empty() {
        return Err(LoadError { errors });
    }
    crate::metrics::set_templates_loaded(resources.len());
    if !opts.noop {
        // Once per run, before any sync: what killed runs left beside these destinations.
        let removed: usize = writers
            .keys()
            .map(|dest| crate::stage::remove_stale(dest))
            .sum();
        if removed > 0 {
            tracing::info!("removed {removed} stage files left by interrupted runs");
        }
    }
    Ok(resources)
}

fn find_toml_files(
    dir: &Path,
    depth: usize,
    out: &mut Vec<PathBuf>,
    errors: &mut Vec<ResourceError>,
) {
    // Symlinks are followed (like the confd fork); the depth limit stops loops.
    if depth > 32 {
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(ResourceError {
                file: dir.to_path_buf(),
                line: None,
                message: format!("cannot read directory: {e}"),
            });
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            find_toml_files(&path, depth + 1, out, errors);
        } else if meta.is_file()
            && path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".toml"))
        {
            out.push(path);
        }
    }
}

/// Templates shared by several resources are parsed once.
#[derive(Default)]
struct TemplateCache {
    parsed: HashMap<(String, EngineKindKey, bool, bool), Arc<Template>>,
}

/// `EngineKind` as a hash key without requiring `Hash` from the template crate.
#[derive(PartialEq, Eq, Hash)]
struct EngineKindKey(bool);

impl EngineKindKey {
    fn of(kind: EngineKind) -> Self {
        EngineKindKey(matches!(kind, EngineKind::Jinja))
    }
}

impl TemplateCache {
    /// The parsed template `src`, parsed now unless an earlier resource already did.
    fn load(
        &mut self,
        templates_dir: &Path,
        src: &str,
        kind: EngineKind,
        options: &TemplateOptions,
    ) -> Result<Arc<Template>, String> {
        let key = (
            src.to_string(),
            EngineKindKey::of(kind),
            options.trim_blocks,
            options.lstrip_blocks,
        );
        if let Some(t) = self.parsed.get(&key) {
            return Ok(t.clone());
        }
        let path = templates_dir.join(src);
        if !path.is_file() {
            return Err(format!("missing template: {}", path.display()));
        }
        let template = Template::load(templates_dir, src, kind, options)
            .map(Arc::new)
            .map_err(|e| format!("template {src}: {e}"))?;
        self.parsed.insert(key, template.clone());
        Ok(template)
    }
}

/// A resource file as written, keys lower-cased: confd decodes with BurntSushi/toml, which
/// matches keys to fields case-insensitively (`SRC`, `Dest` work), and we keep that for drop-in
/// use. Unknown keys are collected to be warned about (or refused when strict), as confd ignores
/// them.
#[derive(Debug, Default, serde::Deserialize)]
struct ResourceFile {
    template: Option<RawTemplate>,
    backend: Option<toml::Table>,
    #[serde(flatten)]
    unknown: BTreeMap<String, toml::Value>,
}

/// The `[template]` table, each value of its documented type; nothing else is checked here.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct RawTemplate {
    src: Option<String>,
    dest: Option<String>,
    keys: Vec<String>,
    prefix: Option<String>,
    owner: Option<String>,
    group: Option<String>,
    uid: Option<i64>,
    gid: Option<i64>,
    mode: Option<String>,
    check_cmd: Option<String>,
    reload_cmd: Option<String>,
    check_cmd_timeout: Option<String>,
    reload_cmd_timeout: Option<String>,
    debounce: Option<String>,
    min_reload_interval: Option<String>,
    engine: Option<String>,
    output_format: Option<String>,
    trim_blocks: bool,
    lstrip_blocks: bool,
    backend: Option<String>,
    #[serde(flatten)]
    unknown: BTreeMap<String, toml::Value>,
}

/// Reads and decodes one resource file, then validates it.
fn load_one(
    file: &Path,
    opts: &RunOptions,
    templates_dir: &Path,
    cache: &mut TemplateCache,
) -> Result<Resource, Vec<ResourceError>> {
    let mut problems = Vec::new();
    let mut text = String::new();
    let resource = decode(file, opts, &mut text, &mut problems).and_then(|(raw, backend)| {
        let mut r = validate(raw, file, opts, templates_dir, cache, &mut problems)?;
        r.backend_table = backend;
        Some(r)
    });
    match resource {
        Some(r) if problems.is_empty() => Ok(r),
        _ => {
            let lines = if problems.iter().any(|p| p.key.is_some()) {
                key_lines(&text)
            } else {
                BTreeMap::new()
            };
            Err(problems
                .into_iter()
                .map(|p| ResourceError {
                    file: file.to_path_buf(),
                    line: p
                        .line
                        .or_else(|| p.key.as_ref().and_then(|k| lines.get(k).copied())),
                    message: p.message,
                })
                .collect())
        }
    }
}

/// The file's `[template]` table, or `None` with the problems that prevent reading it.
fn decode(
    file: &Path,
    opts: &RunOptions,
    text: &mut String,
    problems: &mut Vec<Problem>,
) -> Option<(RawTemplate, Option<toml::Table>)> {
    *text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            problems.push(format!("cannot read: {e}").into());
            return None;
        }
    };
    let doc: toml::Table = match toml::from_str(text) {
        Ok(d) => d,
        Err(e) => {
            problems.push(Problem {
                key: None,
                line: e.span().map(|span| line_of(text, span.start)),
                message: format!("invalid TOML: {}", e.to_string().trim_end()),
            });
            return None;
        }
    };
    let lowered = lower_case_keys(doc, "", problems);
    let parsed: ResourceFile = match toml::Value::Table(lowered).try_into() {
        Ok(p) => p,
        Err(e) => {
            // toml names the key path on a second line ("in `template.keys`").
            let message = e.to_string().trim_end().replace('\n', " ");
            problems.push(if message.contains("in `template`") {
                "`template` must be a table ([template])".into()
            } else if message.contains("in `backend`") {
                "`backend` must be a table ([backend] with `backend = \"<name>\"` and its settings)"
                    .into()
            } else {
                match message
                    .split_once("in `template.")
                    .and_then(|(_, rest)| rest.split_once('`'))
                {
                    Some((key, _)) => Problem::at(key, message.clone()),
                    None => message.into(),
                }
            });
            return None;
        }
    };
    let unknown = |key: &str, place: &str, problems: &mut Vec<Problem>| {
        if opts.strict_resource_keys {
            problems.push(Problem::at(key, format!("unknown key {key:?}{place}")));
        } else {
            tracing::warn!("{}: ignoring unknown key {key:?}{place}", file.display());
        }
    };
    for key in parsed.unknown.keys() {
        unknown(key, " at the top level", problems);
    }
    let Some(raw) = parsed.template else {
        problems.push("no [template] table".into());
        return None;
    };
    for key in raw.unknown.keys() {
        unknown(key, " in [template]", problems);
    }
    if parsed.backend.is_some() && raw.backend.is_some() {
        problems.push(Problem::at(
            "backend",
            "`backend` in [template] and a [backend] table: give the backend once",
        ));
    }
    Some((raw, parsed.backend))
}

/// `table` with every key lower-cased, recursively for `[template]`; two keys that differ only
/// in case are a problem, as confd would silently take one of them.
fn lower_case_keys(table: toml::Table, within: &str, problems: &mut Vec<Problem>) -> toml::Table {
    let mut out = toml::Table::new();
    for (key, value) in table {
        let lower = key.to_ascii_lowercase();
        let value = match value {
            toml::Value::Table(t)
                if within.is_empty() && (lower == "template" || lower == "backend") =>
            {
                toml::Value::Table(lower_case_keys(t, &lower, problems))
            }
            v => v,
        };
        if out.insert(lower.clone(), value).is_some() {
            problems.push(
                if within.is_empty() && (lower == "template" || lower == "backend") {
                    format!("more than one [{lower}] table").into()
                } else {
                    Problem::at(&lower, format!("key {lower:?} given more than once"))
                },
            );
        }
    }
    out
}

/// Every check that can run before anything is written, on a decoded `[template]` table; all
/// problems are collected so one run shows them all.
fn validate(
    raw: RawTemplate,
    file: &Path,
    opts: &RunOptions,
    templates_dir: &Path,
    cache: &mut TemplateCache,
    problems: &mut Vec<Problem>,
) -> Option<Resource> {
    let id = |name: &str, value: Option<i64>, problems: &mut Vec<Problem>| {
        value.and_then(|v| match u32::try_from(v) {
            Ok(id) => Some(id),
            Err(_) => {
                problems.push(Problem::at(
                    name,
                    format!("`{name}` = {v} is not a valid id"),
                ));
                None
            }
        })
    };
    let uid = id("uid", raw.uid, problems);
    let gid = id("gid", raw.gid, problems);
    let mode = raw.mode.as_deref().and_then(|t| {
        parse_mode(t)
            .map_err(|e| problems.push(Problem::at("mode", e)))
            .ok()
    });
    let duration =
        |name: &str, text: Option<&str>, default: Duration, problems: &mut Vec<Problem>| match text
        {
            None => default,
            Some(t) => humantime::parse_duration(t).unwrap_or_else(|e| {
                problems.push(Problem::at(name, format!("invalid `{name}` {t:?}: {e}")));
                default
            }),
        };
    let check_cmd_timeout = duration(
        "check_cmd_timeout",
        raw.check_cmd_timeout.as_deref(),
        opts.check_cmd_timeout,
        problems,
    );
    let reload_cmd_timeout = duration(
        "reload_cmd_timeout",
        raw.reload_cmd_timeout.as_deref(),
        opts.reload_cmd_timeout,
        problems,
    );
    let reload_debounce = duration(
        "debounce",
        raw.debounce.as_deref(),
        Duration::ZERO,
        problems,
    );
    let min_reload_interval = duration(
        "min_reload_interval",
        raw.min_reload_interval.as_deref(),
        Duration::ZERO,
        problems,
    );
    // uid/gid win over owner/group (as in the confd fork); the names are still checked so a
    // typo does not hide behind a numeric id.
    // An unknown name is looked up again at write time: it concerns this resource only.
    let owner_uid = raw.owner.as_deref().and_then(|n| lookup_user(n, file));
    let group_gid = raw.group.as_deref().and_then(|n| lookup_group(n, file));
    let owner_name = raw
        .owner
        .clone()
        .filter(|_| uid.is_none() && owner_uid.is_none());
    let group_name = raw
        .group
        .clone()
        .filter(|_| gid.is_none() && group_gid.is_none());
    let engine = raw.engine.as_deref().and_then(|t| {
        t.parse::<EngineKind>()
            .map_err(|e| {
                problems.push(Problem::at(
                    "engine",
                    format!("invalid `engine` {t:?}: {e}"),
                ))
            })
            .ok()
    });
    let output_format = raw.output_format.as_deref().and_then(|t| {
        t.parse::<OutputFormat>()
            .map_err(|e| problems.push(Problem::at("output_format", e)))
            .ok()
    });
    let src = match raw.src {
        None => {
            problems.push("missing `src` (the template file)".into());
            None
        }
        Some(s) if s.trim().is_empty() => {
            problems.push(Problem::at("src", "empty `src` template"));
            None
        }
        Some(s) => Some(s),
    };
    let dest = match raw.dest {
        None => {
            problems.push("missing `dest` (the file to write)".into());
            None
        }
        Some(d) if d.trim().is_empty() => {
            problems.push(Problem::at("dest", "empty `dest`"));
            None
        }
        Some(d) => check_dest(PathBuf::from(d), file, problems),
    };
    let template = src.as_deref().and_then(|src| {
        let options = TemplateOptions {
            trim_blocks: raw.trim_blocks,
            lstrip_blocks: raw.lstrip_blocks,
        };
        let kind = engine
            .or(opts.template_engine)
            .unwrap_or_else(|| EngineKind::from_extension(src));
        cache
            .load(templates_dir, src, kind, &options)
            .map_err(|e| problems.push(Problem::at("src", e)))
            .ok()
            .map(|t| (kind, t))
    });
    let (Some(src), Some(dest), Some((engine, template))) = (src, dest, template) else {
        return None;
    };
    if !problems.is_empty() {
        return None;
    }
    let prefix = keys::join_prefix(&opts.prefix, raw.prefix.as_deref().unwrap_or_default());
    let mut query_keys: Vec<String> = raw
        .keys
        .iter()
        .map(|k| keys::query_key(&prefix, k))
        .collect();
    query_keys.sort();
    query_keys.dedup();
    Some(Resource {
        source_file: file.to_path_buf(),
        src,
        dest,
        prefix,
        keys: raw.keys,
        query_keys,
        uid: uid.or(owner_uid),
        gid: gid.or(group_gid),
        owner_name,
        group_name,
        mode,
        check_cmd: raw.check_cmd.filter(|s| !s.trim().is_empty()),
        reload_cmd: raw.reload_cmd.filter(|s| !s.trim().is_empty()),
        check_cmd_timeout,
        reload_cmd_timeout,
        reload_gate: Arc::new(ReloadGate::new(reload_debounce, min_reload_interval)),
        backend: raw.backend.unwrap_or_else(|| opts.default_backend.clone()),
        backend_table: None,
        engine,
        output_format,
        template,
    })
}

/// The destination, unless it is a directory. A missing directory concerns this resource only
/// (it is often created later, by the package of the service that reads the file): a warning
/// here, and the resource fails at each write until the directory appears.
fn check_dest(dest: PathBuf, file: &Path, problems: &mut Vec<Problem>) -> Option<PathBuf> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let before = problems.len();
    if !dir.is_dir() {
        tracing::warn!(
            "{}: the directory of dest {} does not exist yet (it is not created); this resource fails until it does",
            file.display(),
            dest.display()
        );
    }
    if dest.is_dir() {
        problems.push(Problem::at(
            "dest",
            format!("dest {} is a directory", dest.display()),
        ));
    }
    (problems.len() == before).then_some(dest)
}

/// The uid of `name`, or `None` (with a warning) when it cannot be resolved now.
fn lookup_user(name: &str, file: &Path) -> Option<u32> {
    find_user(name)
        .map_err(|e| {
            tracing::warn!(
                "{}: {e}; this resource fails until the owner exists",
                file.display()
            )
        })
        .ok()
}

/// The gid of `name`, or `None` (with a warning) when it cannot be resolved now.
fn lookup_group(name: &str, file: &Path) -> Option<u32> {
    find_group(name)
        .map_err(|e| {
            tracing::warn!(
                "{}: {e}; this resource fails until the group exists",
                file.display()
            )
        })
        .ok()
}

fn find_user(name: &str) -> Result<u32, String> {
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => Ok(u.uid.as_raw()),
        Ok(None) => Err(format!("unknown owner {name:?}")),
        Err(e) => Err(format!("cannot look up owner {name:?}: {e}")),
    }
}

fn find_group(name: &str) -> Result<u32, String> {
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(format!("unknown group {name:?}")),
        Err(e) => Err(format!("cannot look up group {name:?}: {e}")),
    }
}

#[cfg(test)]
mod tests;
