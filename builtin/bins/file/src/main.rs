//! confd-database-file
fn main() {}
