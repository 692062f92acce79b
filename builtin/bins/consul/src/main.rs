//! `confd-database-consul`: the consul backend as a standalone plugin executable (copy it next to
//! confd, e.g. as `confd-database-consul-test`); it serves from the backend's one description.

fn main() {
    confd_sdk::serve(confd_builtin_consul::DESCRIPTOR.serve_opts());
}
