//! confd-database-memory
fn main() {}
