//! confd-core: what confd does with a configuration directory, independent of
//! the command line and of how backends are reached.
//!
//! The host resolves its settings into [`RunOptions`], loads resources with
//! [`load_resources`] (every problem reported before anything is written),
//! and hands them with its [`Backends`] to [`run_once`], [`run_interval`] or
//! [`run_watch`]. The rules (prefixes, keys, sync steps, modes and where we
//! differ from confd) are in `docs/resources.md`.
//!
//! ```no_run
//! # async fn demo(backends: confd_core::Backends) -> Result<(), Box<dyn std::error::Error>> {
//! let opts = confd_core::RunOptions {
//!     confdir: "/etc/confd".into(),
//!     default_backend: "env".into(),
//!     ..Default::default()
//! };
//! let resources = confd_core::load_resources(&opts)?;
//! let summary = confd_core::run_once(&resources, &backends, &opts).await;
//! std::process::exit(if summary.failed > 0 { 1 } else { 0 });
//! # }
//! ```

mod command;
mod commit;
mod engine;
mod format;
pub mod keys;
pub mod metrics;
mod options;
mod preview;
mod progress;
mod resource;
mod run;
mod stage;
mod sync;
mod throttle;

pub use command::CommandError;
pub use format::{FormatError, OutputFormat};
pub use options::{FailureMode, RunOptions};
pub use preview::{Preview, preview};
pub use progress::{FirstPass, Shutdown, Totals};
pub use resource::{LoadError, Resource, ResourceError, load_resources, parse_mode};
pub use run::{Backends, Summary, WatchError, run_interval, run_once, run_pass, run_watch};
pub use sync::{Outcome, SyncError, sync_resource, unified_diff};
