//! Weir's userspace: the `weir` binary's library.
//!
//! # Layout
//! - [`config`]: the HAProxy-style configuration language (parser, model, validation).
//! - [`balance`], [`health`]: load-balancing algorithms (incl. Maglev) and health checks.
//! - [`l4`]: the XDP program (load, pins, attach, tables, counters) and L4 services.
//! - [`http`]: the strict HTTP/1.1 codec (heads, RFC 9112 framing, bodies, encoding).
//! - [`stats`]: the GUID-keyed shm-stats-file (shared counters, clock, readers).
//! - [`tls`]: rustls termination (SNI, reload) and origination.
//! - [`cli`]: command-line interface (clap).
//! - [`runtime`]: startup, the listeners, signals and clean shutdown.
//! - [`relay`]: the TCP relay a frontend runs until the L7 proxy serves it.
//! - [`origin`]: the built-in demo/test origin server (`weir origin`).

pub mod balance;
pub mod cli;
pub mod config;
pub mod health;
pub mod http;
pub mod l4;
pub mod net;
pub mod origin;
pub mod relay;
pub mod runtime;
pub mod stats;
pub mod tls;
