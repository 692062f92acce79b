//! confd-builtin-env (placeholder until its issue lands).
