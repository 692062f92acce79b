//! confd-database-env
fn main() {}
