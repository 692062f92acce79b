//! confd-database-consul
fn main() {}
