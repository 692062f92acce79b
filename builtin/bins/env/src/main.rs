//! `confd-database-env`: the env database as a standalone plugin executable
//! (copy it next to confd, e.g. as `confd-database-env-test`).

fn main() {
    confd_sdk::serve(
        confd_sdk::ServeOpts::new(confd_builtin_env::NAME, confd_builtin_env::database)
            .version(env!("CARGO_PKG_VERSION")),
    );
}
