//! The confd binary's integration tests: one test executable, a module per area.

mod common;

mod bad_input;
mod checks;
mod cli;
mod docs;
mod e2e;
mod observe;
mod symbol_order;
