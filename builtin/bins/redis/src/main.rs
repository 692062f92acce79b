//! confd-database-redis
fn main() {}
