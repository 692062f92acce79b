//! `confd-database-file`: the file backend as a standalone plugin executable (copy it next to
//! confd, e.g. as `confd-database-file-test`); it serves from the backend's one description.

fn main() {
    confd_sdk::serve(confd_builtin_file::DESCRIPTOR.serve_opts());
}
