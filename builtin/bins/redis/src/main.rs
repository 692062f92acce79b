//! `confd-database-redis`: the redis backend as a standalone plugin executable (copy it next to
//! confd, e.g. as `confd-database-redis-test`); it serves from the backend's one description.

fn main() {
    confd_sdk::serve(confd_builtin_redis::DESCRIPTOR.serve_opts());
}
