//! `confd-database-ssm`: the ssm backend as a standalone plugin executable (copy it next to
//! confd, e.g. as `confd-database-ssm-test`); it serves from the backend's one description.

fn main() {
    confd_sdk::serve(confd_builtin_ssm::DESCRIPTOR.serve_opts());
}
