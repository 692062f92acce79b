//! confd-builtin-etcd (placeholder until its issue lands).
