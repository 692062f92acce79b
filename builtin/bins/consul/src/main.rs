//! `confd-database-consul`: the consul backend as a standalone plugin
//! executable (copy it next to confd, e.g. as `confd-database-consul-test`).

fn main() {
    confd_sdk::serve(
        confd_sdk::ServeOpts::new(confd_builtin_consul::NAME, confd_builtin_consul::database)
            .version(env!("CARGO_PKG_VERSION"))
            .capabilities(["watch"]),
    );
}
