//! `confd-database-zookeeper`: the zookeeper backend as a standalone plugin executable (copy it
//! next to confd, e.g. as `confd-database-zookeeper-test`); it serves from the backend's one
//! description.

fn main() {
    confd_sdk::serve(confd_builtin_zookeeper::DESCRIPTOR.serve_opts());
}
