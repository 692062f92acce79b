//! confd-integration (placeholder until its issue lands).
