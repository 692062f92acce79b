//! confd-core (placeholder until its issue lands).
