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
//! - [`proxy`]: the L7 HTTP/1.1 proxy engine serving `mode http` frontends.
//! - [`relay`]: the TCP relay serving `mode tcp` frontends (and XDP fallback).
//! - [`origin`]: the built-in demo/test origin server (`weir origin`).

pub mod balance;
pub mod cli;
pub mod config;
pub mod health;
pub mod http;
pub mod l4;
pub mod net;
pub mod origin;
pub mod proxy;
pub mod relay;
pub mod runtime;
pub mod stats;
pub mod tls;
pub mod uring;
