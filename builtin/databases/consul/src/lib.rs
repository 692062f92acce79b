//! confd-builtin-consul (placeholder until its issue lands).
