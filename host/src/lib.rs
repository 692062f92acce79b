//! The confd host as a library, so integration tests and main.rs share one implementation:
//! command line, settings resolution, backend resolution and the run glue.

pub mod backends;
pub mod cli;
pub mod logging;
pub mod observe;
pub mod run;
pub mod settings;
pub mod validate;
