//! `confd-database-imds`: the imds backend as a standalone plugin executable (copy it next to
//! confd, e.g. as `confd-database-imds-test`); it serves from the backend's one description.

fn main() {
    confd_sdk::serve(confd_builtin_imds::DESCRIPTOR.serve_opts());
}
