//! `confd-database-dynamodb`: the dynamodb backend as a standalone plugin executable (copy it next to
//! confd, e.g. as `confd-database-dynamodb-test`); it serves from the backend's one description.

fn main() {
    confd_sdk::serve(confd_builtin_dynamodb::DESCRIPTOR.serve_opts());
}
