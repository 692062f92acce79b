//! `confd-database-file`: the file database as a standalone plugin
//! executable (copy it next to confd, e.g. as `confd-database-file-test`).

fn main() {
    confd_sdk::serve(
        confd_sdk::ServeOpts::new(confd_builtin_file::NAME, confd_builtin_file::database)
            .version(env!("CARGO_PKG_VERSION"))
            .capabilities(["watch"]),
    );
}
