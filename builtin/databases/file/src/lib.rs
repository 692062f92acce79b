//! confd-builtin-file (placeholder until its issue lands).
