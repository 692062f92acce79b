//! `confd-database-redis`: the redis backend as a standalone plugin
//! executable (copy it next to confd, e.g. as `confd-database-redis-test`).

fn main() {
    confd_sdk::serve(
        confd_sdk::ServeOpts::new(confd_builtin_redis::NAME, confd_builtin_redis::database)
            .version(env!("CARGO_PKG_VERSION"))
            .capabilities(["watch"]),
    );
}
