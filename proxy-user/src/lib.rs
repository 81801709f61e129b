//! Weir's userspace: the `weir` binary's library.
//!
//! # Layout
//! - [`l4`]: the XDP program (load, pins, attach, frontend table, counters).
//! - [`cli`]: command-line interface (clap).
//! - [`runtime`]: startup, the listeners, signals and clean shutdown.
//! - [`relay`]: the TCP relay a frontend runs until the L7 proxy serves it.
//! - [`origin`]: the built-in demo/test origin server (`weir origin`).

pub mod cli;
pub mod l4;
pub mod origin;
pub mod relay;
pub mod tls;
