//! `confd-database-etcd`: the etcd backend as a standalone plugin executable (copy it next to
//! confd, e.g. as `confd-database-etcd-test`); it serves from the backend's one description.

fn main() {
    confd_sdk::serve(confd_builtin_etcd::DESCRIPTOR.serve_opts());
}
