//! The L4 side of weir: loading the XDP program, its pinned maps, the
//! frontend table and the counters.
//!
//! - `bpffs`: makes sure /sys/fs/bpf is mounted (it is not on a fresh machine).
//! - `loader`: finds the eBPF object (embedded by `cargo xtask build`, or on
//!   disk), loads it with aya, pins the maps by name under
//!   `/sys/fs/bpf/weir/<instance>/`, attaches to interfaces, forwards aya-log
//!   records to weir's logger, and removes the pins when the last weir
//!   process of the instance stops.
//! - `maps`: typed access to the maps (frontend table, counter sums).
//!
//! The program never sits behind userspace: userspace only writes tables and
//! reads counters.

pub mod bpffs;
pub mod control;
pub mod iface;
pub mod inspect;
pub mod loader;
pub mod maps;
pub mod service;

pub use loader::{find_object, L4Error, LoadOptions, XdpProgram};
pub use maps::{frontend_key, CounterSnapshot};
