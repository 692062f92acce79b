//! confd
fn main() {}
