//! confd-template (placeholder until its issue lands).
