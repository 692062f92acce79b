//! confd-core integration tests: resources loaded from a real confdir,
//! synced against an in-memory database.

#[path = "../support/mod.rs"]
mod support;
mod sync;
mod watch;
