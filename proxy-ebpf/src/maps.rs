//! Every map of the XDP program, with its purpose, key/value types and size.
//!
//! All maps are BTF-defined (`#[btf_map]`), so `bpftool map dump pinned
//! /sys/fs/bpf/weir/<instance>/<NAME>` prints field names. Userspace pins
//! them by name (see `proxy_common::map_names`), so a restarted weir finds
//! the same maps and the counters in them.

use aya_ebpf::{
    btf_maps::{HashMap, PerCpuArray},
    macros::btf_map,
};
use proxy_common::{
    verdict, FrontendInfo, FrontendKey, PacketCounters, TrafficCounters, MAX_FRONTENDS,
};

/// The configured L4 frontends (VIP address, protocol, port), written by
/// userspace at start. A miss means "not ours": the packet is passed.
#[btf_map]
pub static WEIR_FRONTENDS: HashMap<FrontendKey, FrontendInfo, { MAX_FRONTENDS as usize }> =
    HashMap::new();

/// Packets and bytes per frontend, indexed by `FrontendInfo::id`.
#[btf_map]
pub static WEIR_FE_STATS: PerCpuArray<TrafficCounters, { MAX_FRONTENDS as usize }> =
    PerCpuArray::new();

/// Packets and bytes per final verdict, indexed by the XDP action number.
#[btf_map]
pub static WEIR_VERDICTS: PerCpuArray<TrafficCounters, { verdict::COUNT as usize }> =
    PerCpuArray::new();

/// One set of classification counters (see `PacketCounters`).
#[btf_map]
pub static WEIR_PKT_STATS: PerCpuArray<PacketCounters, 1> = PerCpuArray::new();
