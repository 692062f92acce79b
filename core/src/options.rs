//! The run settings the host hands to confd-core, resolved from flags,
//! environment and confd.toml before anything here runs.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use crate::engine::EngineKind;
use crate::progress::{FirstPass, Shutdown, Totals};

/// Everything confd-core needs from the command line and confd.toml.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The configuration directory; resources are `<confdir>/conf.d/**/*.toml`,
    /// templates live in `<confdir>/templates`.
    pub confdir: PathBuf,
    /// The global prefix, joined in front of every resource prefix.
    pub prefix: String,
    /// Render and compare only; write nothing and run no command.
    pub noop: bool,
    /// With `noop`: print a unified diff of each out-of-sync destination to stdout.
    pub diff: bool,
    /// Write destinations but run neither `check_cmd` nor `reload_cmd`.
    pub sync_only: bool,
    /// Keep the stage file next to the destination after a sync.
    pub keep_stage_file: bool,
    /// The backend of every resource that does not name its own.
    pub default_backend: String,
    /// Engine for templates whose resource has no `engine` key; `None` picks
    /// by file extension (`.j2`, `.jinja`, `.jinja2` are Jinja, the rest Go).
    pub template_engine: Option<EngineKind>,
    /// Default time limit for `check_cmd` (a resource may override it).
    pub check_cmd_timeout: Duration,
    /// Default time limit for `reload_cmd` (a resource may override it).
    pub reload_cmd_timeout: Duration,
    /// Interval mode: time between two passes over all resources.
    pub interval: Duration,
    /// Watch mode: a burst of changes is rendered once it has been quiet this
    /// long (zero renders on every wake-up).
    pub debounce: Duration,
    /// Treat an unknown key in a resource's `[template]` table as a load error
    /// instead of a warning. Off by default because confd ignores them (and
    /// the conformance set pins that).
    pub strict_resource_keys: bool,
    /// Raised once every resource has been processed once (the host's readiness probe).
    pub first_pass: FirstPass,
    /// What all passes did so far (shared by the generations of one process).
    pub totals: Totals,
    /// Raised by the host at shutdown: no new command, no new resource.
    pub shutdown: Shutdown,
    /// What a failed resource does to the rest of its pass.
    pub failure_mode: FailureMode,
    /// Watch mode: the longest a steady stream of changes can postpone a render.
    pub debounce_max: Duration,
    /// Watch mode: backends (by their name in [`Backends`](crate::Backends)) that cannot
    /// watch; their resources are read again every `interval` while the others watch.
    pub poll_backends: BTreeSet<String>,
}

/// What one failed resource does to the others (`--failure-mode`, the maintained fork's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailureMode {
    /// Every resource is attempted; failures are counted and reported at the end.
    #[default]
    BestEffort,
    /// The pass stops at the first failed resource: no further resource of it is started
    /// (those in progress finish). A one-shot run exits 1; interval mode tries again on the
    /// next pass; in watch mode each change still renders its own resources.
    FailFast,
}

impl std::str::FromStr for FailureMode {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "best-effort" | "best_effort" => Ok(FailureMode::BestEffort),
            "fail-fast" | "fail_fast" => Ok(FailureMode::FailFast),
            _ => Err(format!(
                "invalid failure mode {text:?}: expected best-effort or fail-fast"
            )),
        }
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            confdir: PathBuf::from("/etc/confd"),
            prefix: String::new(),
            noop: false,
            diff: false,
            sync_only: false,
            keep_stage_file: false,
            default_backend: String::new(),
            template_engine: None,
            check_cmd_timeout: Duration::from_secs(30),
            reload_cmd_timeout: Duration::from_secs(60),
            interval: Duration::from_secs(600),
            debounce: Duration::from_millis(50),
            strict_resource_keys: false,
            first_pass: FirstPass::default(),
            totals: Totals::default(),
            shutdown: Shutdown::default(),
            failure_mode: FailureMode::BestEffort,
            debounce_max: Duration::from_secs(1),
            poll_backends: BTreeSet::new(),
        }
    }
}
