//! The confd host as a library, so integration tests and main.rs share one implementation:
//! command line, settings resolution, backend resolution, the clean-up of what killed runs left,
//! and the run glue.

pub mod backends;
pub mod cleanup;
pub mod cli;
pub mod generation;
pub mod logging;
pub mod notify;
pub mod observe;
pub mod routing;
pub mod run;
pub mod service;
pub mod settings;
pub mod validate;
