//! `confd-database-vault`: the vault backend as a standalone plugin executable (copy it next to
//! confd, e.g. as `confd-database-vault-test`); it serves from the backend's one description.

fn main() {
    confd_sdk::serve(confd_builtin_vault::DESCRIPTOR.serve_opts());
}
