//! `confd-database-etcd`: the etcd backend as a standalone plugin
//! executable (copy it next to confd, e.g. as `confd-database-etcd-test`).

fn main() {
    confd_sdk::serve(
        confd_sdk::ServeOpts::new(confd_builtin_etcd::NAME, confd_builtin_etcd::database)
            .version(env!("CARGO_PKG_VERSION"))
            .capabilities(["watch"]),
    );
}
