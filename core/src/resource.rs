//! Template resources: discovery under `conf.d`, parsing of the `[template]`
//! table, and every check that can run before anything is written, so a bad
//! confdir fails as a whole (exit 2) instead of half-applying.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::engine::{EngineKind, Template, TemplateOptions};
use crate::keys;
use crate::options::RunOptions;

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
    mode: Option<u32>,
    check_cmd: Option<String>,
    reload_cmd: Option<String>,
    check_cmd_timeout: Duration,
    reload_cmd_timeout: Duration,
    backend: String,
    engine: EngineKind,
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
    /// The backend this resource reads (its `backend` key or the run's default).
    pub fn backend(&self) -> &str {
        &self.backend
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
    /// The template engine in use.
    pub fn engine(&self) -> EngineKind {
        self.engine
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
    /// What is wrong, for people.
    pub message: String,
}

impl fmt::Display for ResourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.message)
    }
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
    if errors.is_empty() {
        Ok(resources)
    } else {
        Err(LoadError { errors })
    }
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

const KNOWN_KEYS: &[&str] = &[
    "src",
    "dest",
    "keys",
    "prefix",
    "owner",
    "group",
    "uid",
    "gid",
    "mode",
    "check_cmd",
    "reload_cmd",
    "check_cmd_timeout",
    "reload_cmd_timeout",
    "engine",
    "trim_blocks",
    "lstrip_blocks",
    "backend",
];

fn load_one(
    file: &Path,
    opts: &RunOptions,
    templates_dir: &Path,
    cache: &mut TemplateCache,
) -> Result<Resource, Vec<ResourceError>> {
    let mut errors = Vec::new();
    let mut err = |message: String| {
        errors.push(ResourceError {
            file: file.to_path_buf(),
            message,
        })
    };
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            err(format!("cannot read: {e}"));
            return Err(errors);
        }
    };
    let doc: toml::Table = match toml::from_str(&text) {
        Ok(d) => d,
        Err(e) => {
            err(format!("invalid TOML: {}", e.to_string().trim_end()));
            return Err(errors);
        }
    };
    // confd decodes with BurntSushi/toml, which matches keys to fields
    // case-insensitively (`SRC`, `Dest` work); we keep that for drop-in use.
    let mut table = None;
    for (key, value) in &doc {
        if key.eq_ignore_ascii_case("template") {
            match value.as_table() {
                Some(t) if table.is_none() => table = Some(t),
                Some(_) => err("more than one [template] table".to_string()),
                None => err("`template` must be a table ([template])".to_string()),
            }
        } else if opts.strict_resource_keys {
            err(format!("unknown top-level key {key:?}"));
        } else {
            tracing::warn!("{}: ignoring unknown top-level key {key:?}", file.display());
        }
    }
    let Some(table) = table else {
        err("no [template] table".to_string());
        return Err(errors);
    };

    let mut fields: BTreeMap<&'static str, &toml::Value> = BTreeMap::new();
    for (key, value) in table {
        let lower = key.to_ascii_lowercase();
        match KNOWN_KEYS.iter().find(|k| **k == lower) {
            Some(known) => {
                if fields.insert(known, value).is_some() {
                    err(format!("key {known:?} given more than once"));
                }
            }
            None if opts.strict_resource_keys => err(format!("unknown key {key:?} in [template]")),
            None => tracing::warn!(
                "{}: ignoring unknown key {key:?} in [template]",
                file.display()
            ),
        }
    }

    let string = |name: &str, errs: &mut Vec<String>| -> Option<String> {
        match fields.get(name) {
            None => None,
            Some(toml::Value::String(s)) => Some(s.clone()),
            Some(other) => {
                errs.push(format!(
                    "`{name}` must be a string, found {}",
                    other.type_str()
                ));
                None
            }
        }
    };
    let boolean = |name: &str, errs: &mut Vec<String>| -> bool {
        match fields.get(name) {
            None => false,
            Some(toml::Value::Boolean(b)) => *b,
            Some(other) => {
                errs.push(format!(
                    "`{name}` must be true or false, found {}",
                    other.type_str()
                ));
                false
            }
        }
    };
    let id = |name: &str, errs: &mut Vec<String>| -> Option<u32> {
        match fields.get(name) {
            None => None,
            Some(toml::Value::Integer(i)) => match u32::try_from(*i) {
                Ok(v) => Some(v),
                Err(_) => {
                    errs.push(format!("`{name}` = {i} is not a valid id"));
                    None
                }
            },
            Some(other) => {
                errs.push(format!(
                    "`{name}` must be an integer, found {}",
                    other.type_str()
                ));
                None
            }
        }
    };
    let mut msgs: Vec<String> = Vec::new();

    let src = string("src", &mut msgs);
    let dest = string("dest", &mut msgs);
    let prefix = string("prefix", &mut msgs).unwrap_or_default();
    let owner = string("owner", &mut msgs);
    let group = string("group", &mut msgs);
    let uid = id("uid", &mut msgs);
    let gid = id("gid", &mut msgs);
    let mode_text = string("mode", &mut msgs);
    let check_cmd = string("check_cmd", &mut msgs).filter(|s| !s.trim().is_empty());
    let reload_cmd = string("reload_cmd", &mut msgs).filter(|s| !s.trim().is_empty());
    let check_timeout_text = string("check_cmd_timeout", &mut msgs);
    let reload_timeout_text = string("reload_cmd_timeout", &mut msgs);
    let engine_text = string("engine", &mut msgs);
    let trim_blocks = boolean("trim_blocks", &mut msgs);
    let lstrip_blocks = boolean("lstrip_blocks", &mut msgs);
    let backend = string("backend", &mut msgs);

    let keys: Vec<String> = match fields.get("keys") {
        None => Vec::new(),
        Some(toml::Value::Array(items)) => {
            let mut out = Vec::new();
            for item in items {
                match item.as_str() {
                    Some(s) => out.push(s.to_string()),
                    None => msgs.push(format!(
                        "`keys` must be a list of strings, found an item of type {}",
                        item.type_str()
                    )),
                }
            }
            out
        }
        Some(other) => {
            msgs.push(format!(
                "`keys` must be a list of strings, found {}",
                other.type_str()
            ));
            Vec::new()
        }
    };

    let mode = match &mode_text {
        Some(t) => parse_mode(t).map_err(|e| msgs.push(e)).ok(),
        None => None,
    };
    let duration =
        |text: &Option<String>, name: &str, default: Duration, msgs: &mut Vec<String>| match text {
            None => default,
            Some(t) => humantime::parse_duration(t).unwrap_or_else(|e| {
                msgs.push(format!("invalid `{name}` {t:?}: {e}"));
                default
            }),
        };
    let check_cmd_timeout = duration(
        &check_timeout_text,
        "check_cmd_timeout",
        opts.check_cmd_timeout,
        &mut msgs,
    );
    let reload_cmd_timeout = duration(
        &reload_timeout_text,
        "reload_cmd_timeout",
        opts.reload_cmd_timeout,
        &mut msgs,
    );

    // uid/gid win over owner/group (as in the confd fork); the names are
    // still checked so a typo does not hide behind a numeric id.
    let owner_uid = owner
        .as_deref()
        .and_then(|name| lookup_user(name, &mut msgs));
    let group_gid = group
        .as_deref()
        .and_then(|name| lookup_group(name, &mut msgs));
    let uid = uid.or(owner_uid);
    let gid = gid.or(group_gid);

    let engine = match &engine_text {
        Some(t) => match t.parse::<EngineKind>() {
            Ok(k) => Some(k),
            Err(e) => {
                msgs.push(format!("invalid `engine` {t:?}: {e}"));
                None
            }
        },
        None => None,
    };

    let src = match src {
        None => {
            msgs.push("missing `src` (the template file)".to_string());
            None
        }
        Some(s) if s.trim().is_empty() => {
            msgs.push("empty `src` template".to_string());
            None
        }
        Some(s) => Some(s),
    };
    let dest = match dest {
        None => {
            msgs.push("missing `dest` (the file to write)".to_string());
            None
        }
        Some(d) if d.trim().is_empty() => {
            msgs.push("empty `dest`".to_string());
            None
        }
        Some(d) => {
            let dest = PathBuf::from(d);
            let dir = match dest.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            if !dir.is_dir() {
                msgs.push(format!(
                    "the directory of dest {} does not exist (it is not created)",
                    dest.display()
                ));
            }
            if dest.is_dir() {
                msgs.push(format!("dest {} is a directory", dest.display()));
            }
            Some(dest)
        }
    };

    let template = match &src {
        Some(src) => {
            let kind = engine
                .or(opts.template_engine)
                .unwrap_or_else(|| EngineKind::from_extension(src));
            let key = (
                src.clone(),
                EngineKindKey::of(kind),
                trim_blocks,
                lstrip_blocks,
            );
            if let Some(t) = cache.parsed.get(&key) {
                Some((kind, t.clone()))
            } else if !templates_dir.join(src).is_file() {
                msgs.push(format!(
                    "missing template: {}",
                    templates_dir.join(src).display()
                ));
                None
            } else {
                let topts = TemplateOptions {
                    trim_blocks,
                    lstrip_blocks,
                };
                match Template::load(templates_dir, src, kind, &topts) {
                    Ok(t) => {
                        let t = Arc::new(t);
                        cache.parsed.insert(key, t.clone());
                        Some((kind, t))
                    }
                    Err(e) => {
                        msgs.push(format!("template {src}: {e}"));
                        None
                    }
                }
            }
        }
        None => None,
    };

    for m in msgs {
        err(m);
    }
    match (src, dest, template) {
        (Some(src), Some(dest), Some((engine, template))) if errors.is_empty() => {
            let prefix = keys::join_prefix(&opts.prefix, &prefix);
            let mut query_keys: Vec<String> =
                keys.iter().map(|k| keys::query_key(&prefix, k)).collect();
            query_keys.sort();
            query_keys.dedup();
            Ok(Resource {
                source_file: file.to_path_buf(),
                src,
                dest,
                prefix,
                keys,
                query_keys,
                uid,
                gid,
                mode,
                check_cmd,
                reload_cmd,
                check_cmd_timeout,
                reload_cmd_timeout,
                backend: backend.unwrap_or_else(|| opts.default_backend.clone()),
                engine,
                template,
            })
        }
        _ => Err(errors),
    }
}

fn lookup_user(name: &str, msgs: &mut Vec<String>) -> Option<u32> {
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => Some(u.uid.as_raw()),
        Ok(None) => {
            msgs.push(format!("unknown owner {name:?}"));
            None
        }
        Err(e) => {
            msgs.push(format!("cannot look up owner {name:?}: {e}"));
            None
        }
    }
}

fn lookup_group(name: &str, msgs: &mut Vec<String>) -> Option<u32> {
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Some(g.gid.as_raw()),
        Ok(None) => {
            msgs.push(format!("unknown group {name:?}"));
            None
        }
        Err(e) => {
            msgs.push(format!("cannot look up group {name:?}: {e}"));
            None
        }
    }
}

#[cfg(test)]
mod tests;
