//! Weir's userspace: the `weir` binary's library.

pub mod stats;
