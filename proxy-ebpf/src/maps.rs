//! Every map of the XDP programs, with its purpose, key/value types and size.
//!
//! All maps are BTF-defined (`#[btf_map]`), so `bpftool map dump pinned
//! /sys/fs/bpf/weir/<instance>/<NAME>` prints field names. Userspace pins
//! them by name (see `proxy_common::map_names`), so a restarted weir finds
//! the same maps, tables and counters. Sizes marked "set at load" are
//! overridden by userspace from the config before the maps are created.

use crate::parse::Headers;
use aya_ebpf::{
    bindings::BPF_F_NO_COMMON_LRU,
    btf_maps::{Array, DevMapHash, HashMap, LruHashMap, PerCpuArray},
    macros::btf_map,
};
use proxy_common::{
    verdict, FloodState, FlowCounters, FlowKey, FlowState, FrontendInfo, FrontendKey, GlobalConfig,
    L4Counters, NatReverse, PacketCounters, RealInfo, ServiceSlot, TrafficCounters, MAX_FRONTENDS,
    MAX_REALS, VIP_PORT_WORDS,
};

/// The configured L4 frontends / services (VIP address, protocol, port),
/// written by userspace. A miss means "not ours": the packet is passed.
#[btf_map]
pub static WEIR_FRONTENDS: HashMap<FrontendKey, FrontendInfo, { MAX_FRONTENDS as usize }> =
    HashMap::new();

/// The XDP services by frontend id (key and info, as in FRONTENDS): a
/// conntrack hit is checked against its service here, an array lookup,
/// instead of a second hash lookup. Written by userspace with FRONTENDS.
#[btf_map]
pub static WEIR_SERVICES: Array<ServiceSlot, { MAX_FRONTENDS as usize }> = Array::new();

/// One bit per port used by a TCP/UDP frontend (see
/// `proxy_common::vip_port_bit`): when no frontend uses port 0, a packet
/// whose destination port has no bit is not for a VIP, known without a
/// hash lookup. Written by userspace with FRONTENDS.
#[btf_map]
pub static WEIR_VIP_PORTS: Array<u64, { VIP_PORT_WORDS as usize }> = Array::new();

/// One bit per frontend address (see `proxy_common::vip_addr_bit`): a
/// packet whose destination has no bit is not for a VIP. Written by
/// userspace with FRONTENDS.
#[btf_map]
pub static WEIR_VIP_ADDRS: Array<u64, { VIP_PORT_WORDS as usize }> = Array::new();

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

/// The reals, indexed by real id (family 0 = unused slot).
#[btf_map]
pub static WEIR_REALS: Array<RealInfo, { MAX_REALS as usize }> = Array::new();

/// Forwarded packets, bytes and new flows per real.
#[btf_map]
pub static WEIR_REAL_STATS: PerCpuArray<FlowCounters, { MAX_REALS as usize }> = PerCpuArray::new();

/// Forwarded packets, bytes and new flows per XDP service (indexed like WEIR_FE_STATS).
#[btf_map]
pub static WEIR_SVC_STATS: PerCpuArray<FlowCounters, { MAX_FRONTENDS as usize }> =
    PerCpuArray::new();

/// Maglev tables of every service: real ids. Each service owns two halves
/// of `ring_size` entries; `FrontendInfo::ring_base` names the active one.
/// Size set at load (2 x services x largest table); the default fits one
/// service with the default 65537-entry table.
#[btf_map]
pub static WEIR_RINGS: Array<u32, { 2 * 65537 }> = Array::new();

/// Connection tracking: flow -> real (and NAT port). One table shared by
/// all CPUs (a flow whose packets move to another CPU keeps its state),
/// with an LRU list per CPU (`BPF_F_NO_COMMON_LRU`: inserting a flow takes
/// no lock shared between CPUs; each CPU's list holds size / CPUs entries).
/// Size set at load (`conntrack-size`).
#[btf_map]
pub static WEIR_CT: LruHashMap<FlowKey, FlowState, 65536, { BPF_F_NO_COMMON_LRU as usize }> =
    LruHashMap::new();

/// NAT return path: the real's reply 5-tuple -> client and VIP. Shared by
/// all CPUs (replies may arrive on any CPU), LRU lists per CPU as for
/// WEIR_CT. Size set at load.
#[btf_map]
pub static WEIR_NAT_REV: LruHashMap<FlowKey, NatReverse, 65536, { BPF_F_NO_COMMON_LRU as usize }> =
    LruHashMap::new();

/// Data-path settings written by userspace (hash seed, flood guard, policy).
#[btf_map]
pub static WEIR_CONFIG: Array<GlobalConfig, 1> = Array::new();

/// L4 balancer counters.
#[btf_map]
pub static WEIR_L4_STATS: PerCpuArray<L4Counters, 1> = PerCpuArray::new();

/// New-flow rate guard state, per CPU.
#[btf_map]
pub static WEIR_FLOOD: PerCpuArray<FloodState, 1> = PerCpuArray::new();

/// Interfaces packets may be redirected to (ifindex -> ifindex).
#[btf_map]
pub static WEIR_TX_PORTS: DevMapHash<64> = DevMapHash::new();

/// Packets and bytes `weir_decap` decapsulated.
#[btf_map]
pub static WEIR_DECAP_STATS: PerCpuArray<TrafficCounters, 1> = PerCpuArray::new();

/// A cached `bpf_fib_lookup` result for the route toward one real.
/// Internal to the data path (not pinned, not read by userspace).
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub struct NextHop {
    /// Source address the lookup was made with (native-order words; IPv4: the first).
    pub src: [u32; 4],
    /// Destination address the lookup was made with.
    pub dst: [u32; 4],
    /// Destination MAC, then source MAC (as written into the frame).
    pub macs: [u16; 6],
    /// Largest IP total length the lookup accepted (its MTU check); 0 = empty entry.
    pub max_len: u16,
    /// Address family of the lookup.
    pub family: u8,
    /// Reserved.
    pub _pad: u8,
    /// Egress interface.
    pub ifindex: u32,
    /// Ingress interface the lookup was made from.
    pub ingress: u32,
    /// The entry is used until this time (jiffies).
    pub expires_jiffies: u64,
}

/// Next-hop cache: the last successful route lookup toward each real, per
/// CPU, indexed by real id. Lets forwarding skip `bpf_fib_lookup` for
/// packets to a real this CPU routed less than `NEXTHOP_TTL_JIFFIES` ago (see
/// `lb::forward` for when an entry is used). Never pinned: a reload starts empty.
#[btf_map]
pub static WEIR_NEXTHOP: PerCpuArray<NextHop, { MAX_REALS as usize }> = PerCpuArray::new();

/// Per-CPU scratch space for the large per-packet temporaries (parsed
/// headers, flow keys, the NAT reverse entry). BPF programs get a 512-byte
/// stack for the whole call chain; keeping these here leaves room. Never
/// pinned: its contents only live for one packet.
#[repr(C)]
pub struct Scratch {
    /// The parsed headers of the current packet.
    pub headers: Headers,
    /// The packet's flow (conntrack key).
    pub key: FlowKey,
    /// NAT: the reply 5-tuple being tried.
    pub rkey: FlowKey,
    /// NAT: the reverse entry being created.
    pub reverse: NatReverse,
    /// ICMP too-big: the service of the quoted flow.
    pub svc: FrontendInfo,
}

/// See [`Scratch`].
#[btf_map]
pub static WEIR_SCRATCH: PerCpuArray<Scratch, 1> = PerCpuArray::new();
