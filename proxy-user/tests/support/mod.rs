//! Shared helpers for the integration tests (`mod support;` in a test crate).

pub mod desync_corpus;
