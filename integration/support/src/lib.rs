//! confd-test-support (placeholder until its issue lands).
