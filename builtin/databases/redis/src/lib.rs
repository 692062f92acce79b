//! confd-builtin-redis (placeholder until its issue lands).
