//! `confd-database-secretsmanager`: the secretsmanager backend as a standalone plugin executable (copy it next to
//! confd, e.g. as `confd-database-secretsmanager-test`); it serves from the backend's one description.

fn main() {
    confd_sdk::serve(confd_builtin_secretsmanager::DESCRIPTOR.serve_opts());
}
