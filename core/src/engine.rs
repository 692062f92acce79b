//! The one place confd-core touches the template crate, so adapting to its
//! API stays a one-file edit.

pub use confd_template::{EngineKind, Store, Template, TemplateOptions};
