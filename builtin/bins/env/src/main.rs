//! `confd-database-env`: the env backend as a standalone plugin executable (copy it next to
//! confd, e.g. as `confd-database-env-test`); it serves from the backend's one description.

fn main() {
    confd_sdk::serve(confd_builtin_env::DESCRIPTOR.serve_opts());
}
