//! confd-database-etcd
fn main() {}
