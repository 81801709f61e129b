//! The kernel/user ABI of Weir, defined once and compiled by both sides.
//!
//! Everything a BPF map holds (keys, values), the map names, their sizes and
//! the flag values live here. The eBPF crate (`proxy-ebpf`, built for
//! `bpfel-unknown-none` by Debian's rustc) and the userspace crate
//! (`proxy-user`, with the `user` feature that adds `aya::Pod`) both depend on
//! this crate, so the two sides can never drift apart.
//!
//! Layout rules: every type is `#[repr(C)]`, padding is spelled out as
//! explicit `_pad` fields (the verifier and `bpftool` see the same bytes as
//! Rust does), byte order is stated on each field, and sizes are pinned by
//! compile-time assertions at the end of the file.
#![no_std]
#![deny(missing_docs)]

/// Names of the maps, as they appear in the object, under the pin directory
/// (`/sys/fs/bpf/weir/<instance>/<name>`) and in `bpftool map show`.
pub mod map_names {
    /// [`crate::FrontendKey`] -> [`crate::FrontendInfo`]: the configured L4 frontends (VIPs).
    pub const FRONTENDS: &str = "WEIR_FRONTENDS";
    /// Per-CPU array of [`crate::TrafficCounters`], indexed by [`crate::FrontendInfo::id`].
    pub const FRONTEND_STATS: &str = "WEIR_FE_STATS";
    /// Per-CPU array of [`crate::TrafficCounters`], indexed by XDP action (see [`crate::verdict`]).
    pub const VERDICT_STATS: &str = "WEIR_VERDICTS";
    /// Per-CPU array with one [`crate::PacketCounters`].
    pub const PACKET_STATS: &str = "WEIR_PKT_STATS";
    /// Array of [`crate::RealInfo`], indexed by real id.
    pub const REALS: &str = "WEIR_REALS";
    /// Per-CPU array of [`crate::FlowCounters`], indexed by real id.
    pub const REAL_STATS: &str = "WEIR_REAL_STATS";
    /// Per-CPU array of [`crate::FlowCounters`], indexed by frontend (service) id.
    pub const SERVICE_STATS: &str = "WEIR_SVC_STATS";
    /// Array of u32 real ids: the Maglev lookup tables of every XDP service
    /// (two halves per service, see [`crate::FrontendInfo::ring_base`]).
    pub const RINGS: &str = "WEIR_RINGS";
    /// LRU hash [`crate::FlowKey`] -> [`crate::FlowState`] (LRU lists per CPU): connection tracking.
    pub const CONNTRACK: &str = "WEIR_CT";
    /// LRU hash [`crate::FlowKey`] (the real's reply) -> [`crate::NatReverse`]: NAT return path.
    pub const NAT_REVERSE: &str = "WEIR_NAT_REV";
    /// Array with one [`crate::GlobalConfig`].
    pub const CONFIG: &str = "WEIR_CONFIG";
    /// Per-CPU array with one [`crate::L4Counters`].
    pub const L4_STATS: &str = "WEIR_L4_STATS";
    /// Per-CPU array with one [`crate::FloodState`]: the new-flow rate guard.
    pub const FLOOD: &str = "WEIR_FLOOD";
    /// Device map (ifindex -> ifindex) of the interfaces XDP may redirect to.
    pub const TX_PORTS: &str = "WEIR_TX_PORTS";
    /// Per-CPU array with one [`crate::TrafficCounters`]: what `weir_decap` decapsulated.
    pub const DECAP_STATS: &str = "WEIR_DECAP_STATS";
    /// Array of [`crate::ServiceSlot`], indexed by frontend id: the XDP
    /// services, checked on a conntrack hit. Derived from FRONTENDS by userspace.
    pub const SERVICES: &str = "WEIR_SERVICES";
    /// Array of [`crate::VIP_PORT_WORDS`] u64 words: bit `port` (the port's
    /// network-order u16 read as a native integer) is set when some TCP/UDP
    /// frontend uses that port. Derived from FRONTENDS by userspace.
    pub const VIP_PORTS: &str = "WEIR_VIP_PORTS";
    /// Array of [`crate::VIP_PORT_WORDS`] u64 words: bit [`crate::vip_addr_bit`]
    /// of every frontend address is set (a prefilter: a packet whose
    /// destination has no bit is not for a VIP). Derived from FRONTENDS by userspace.
    pub const VIP_ADDRS: &str = "WEIR_VIP_ADDRS";
}

/// Largest number of L4 frontends one instance can register (entries of FRONTENDS and FRONTEND_STATS).
pub const MAX_FRONTENDS: u32 = 1024;

/// IP protocol numbers used in [`FrontendKey::proto`].
pub mod proto {
    /// IPPROTO_TCP
    pub const TCP: u8 = 6;
    /// IPPROTO_UDP
    pub const UDP: u8 = 17;
}

/// Address families used in [`FrontendKey::family`].
pub mod family {
    /// IPv4: the address sits in the first 4 bytes of the 16-byte field, the rest is zero.
    pub const V4: u8 = 4;
    /// IPv6: all 16 bytes.
    pub const V6: u8 = 6;
}

/// XDP verdicts, which are also the indexes of the VERDICT_STATS array.
pub mod verdict {
    /// XDP_ABORTED: program error.
    pub const ABORTED: u32 = 0;
    /// XDP_DROP
    pub const DROP: u32 = 1;
    /// XDP_PASS: to the kernel stack.
    pub const PASS: u32 = 2;
    /// XDP_TX: back out of the receiving interface.
    pub const TX: u32 = 3;
    /// XDP_REDIRECT: to another interface or CPU.
    pub const REDIRECT: u32 = 4;
    /// Number of verdicts (size of VERDICT_STATS).
    pub const COUNT: u32 = 5;
    /// Display names, indexed by verdict.
    pub const NAMES: [&str; COUNT as usize] = ["aborted", "drop", "pass", "tx", "redirect"];
}

/// Key of the FRONTENDS map: what identifies an L4 frontend (a VIP).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FrontendKey {
    /// Destination address, network byte order. IPv4 uses the first 4 bytes, the rest is zero.
    pub addr: [u8; 16],
    /// Destination port, network byte order. 0 means "every port" (looked up after the exact port).
    pub port: u16,
    /// IP protocol ([`proto::TCP`] or [`proto::UDP`]).
    pub proto: u8,
    /// Address family ([`family::V4`] or [`family::V6`]).
    pub family: u8,
}

/// Value of the FRONTENDS map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FrontendInfo {
    /// Index of this frontend's slot in FRONTEND_STATS and SERVICE_STATS (0..MAX_FRONTENDS).
    pub id: u32,
    /// `FRONTEND_FLAG_*` bits.
    pub flags: u32,
    /// Index in RINGS of the first entry of this service's active Maglev
    /// table. Userspace writes a new table into the inactive half, then
    /// updates this field (one map update), so a packet sees either the old
    /// or the new table, never a mix.
    pub ring_base: u32,
    /// Entries of the Maglev table (a prime); 0 = no table yet (packets pass).
    pub ring_size: u32,
}

/// One slot of SERVICES: an XDP service's frontend key and info, so that a
/// conntrack hit can be checked without a FRONTENDS lookup. An empty slot
/// has `info.flags == 0`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceSlot {
    /// The service's TCP/UDP frontend (port 0 = all ports).
    pub key: FrontendKey,
    /// Its FRONTENDS value.
    pub info: FrontendInfo,
}

/// Words of the VIP_PORTS bitmap (one bit per port).
pub const VIP_PORT_WORDS: u32 = 65536 / 64;

/// The VIP_PORTS word and bit of a port as stored in [`FrontendKey::port`]
/// and read from packets (network byte order, taken as a native u16).
#[inline(always)]
pub fn vip_port_bit(port: u16) -> (u32, u64) {
    ((port >> 6) as u32, 1u64 << (port & 63))
}

/// The VIP_ADDRS bit of an address (16-byte form, IPv4 in the first 4
/// bytes): its last two bytes, as a native u16, pick the bit.
#[inline(always)]
pub fn vip_addr_bit(addr: &[u8; 16], fam: u8) -> (u32, u64) {
    let at = if fam == family::V4 { 2 } else { 14 };
    vip_port_bit(u16::from_ne_bytes([addr[at], addr[at + 1]]))
}

/// The frontend asked for XDP acceleration (`xdp` keyword); without it the program only counts.
pub const FRONTEND_FLAG_XDP: u32 = 1;
/// Forward by IPIP / IPv6-in-IPv6 encapsulation (direct server return) instead of NAT.
pub const FRONTEND_FLAG_DSR: u32 = 1 << 1;
/// Hash without the source port (a client sticks to one real).
pub const FRONTEND_FLAG_HASH_NO_SRC_PORT: u32 = 1 << 2;
/// Hash on the destination port only.
pub const FRONTEND_FLAG_HASH_DST_PORT: u32 = 1 << 3;
/// Answer ICMP/ICMPv6 echo requests to this VIP from XDP.
pub const FRONTEND_FLAG_ICMP_ECHO: u32 = 1 << 4;

/// Largest number of reals (entries of REALS and REAL_STATS).
pub const MAX_REALS: u32 = 4096;
/// Real id meaning "no real" in a Maglev table entry.
pub const NO_REAL: u32 = u32::MAX;

/// Value of the REALS array: where a real is and how to reach it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RealInfo {
    /// The real's address, network byte order (IPv4 in the first 4 bytes).
    pub addr: [u8; 16],
    /// Weir's own address toward the real: the NAT source address, and the
    /// outer source address of DSR encapsulation. Network byte order.
    pub local_addr: [u8; 16],
    /// Destination port on the real, network byte order; 0 = the VIP's port.
    pub port: u16,
    /// [`family::V4`] or [`family::V6`]; 0 = slot unused.
    pub family: u8,
    /// Reserved, zero.
    pub _pad: u8,
}

/// Connection-tracking key, and the key of NAT_REVERSE: a directional 5-tuple.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    /// Source address, network byte order.
    pub src: [u8; 16],
    /// Destination address, network byte order.
    pub dst: [u8; 16],
    /// Source port, network byte order.
    pub sport: u16,
    /// Destination port, network byte order.
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// Address family.
    pub family: u8,
    /// Reserved, zero (keeps the key free of implicit padding).
    pub _pad: [u8; 2],
}

/// Connection-tracking value.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowState {
    /// The real the flow is pinned to.
    pub real: u32,
    /// NAT only: the source port Weir uses toward the real, network byte order.
    pub nat_port: u16,
    /// `FLOW_STATE_*` bits.
    pub flags: u16,
    /// The service (frontend id) that balanced the flow. A packet that hits
    /// conntrack is checked against that service's [`ServiceSlot`] (still an
    /// XDP service, same VIP, protocol and port) instead of looking the
    /// frontend up again.
    pub service: u32,
}

/// Set in every conntrack entry the program writes; an entry without it is
/// a miss.
pub const FLOW_STATE_VALID: u16 = 1;

/// Value of NAT_REVERSE: how to turn a real's reply back into the VIP's.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NatReverse {
    /// The client's address, network byte order.
    pub client: [u8; 16],
    /// The VIP, network byte order.
    pub vip: [u8; 16],
    /// The client's port, network byte order.
    pub client_port: u16,
    /// The VIP's port, network byte order.
    pub vip_port: u16,
    /// The frontend (service) stats slot.
    pub service: u32,
}

/// Process-wide data-path settings (the single entry of CONFIG).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GlobalConfig {
    /// Seed of the flow hash (the same in every weir process of an instance,
    /// so a reload keeps flows where they are).
    pub hash_seed: u32,
    /// New flows per second per CPU above which new flows are balanced
    /// without a conntrack write (flood guard); 0 = no limit.
    pub max_new_flows_per_sec: u32,
    /// `POLICY_*` bits.
    pub policy: u32,
    /// Reserved, zero.
    pub _pad: u32,
}

/// Drop IP fragments addressed to an XDP service instead of passing them.
pub const POLICY_DROP_FRAGMENTS: u32 = 1;
/// Drop IPv4 packets with options addressed to an XDP service instead of passing them.
pub const POLICY_DROP_IP_OPTIONS: u32 = 1 << 1;
/// Drop IPv6 packets with extension headers addressed to an XDP service instead of passing them.
pub const POLICY_DROP_IPV6_EXT: u32 = 1 << 2;
/// Some service uses NAT: look non-VIP TCP/UDP packets up in NAT_REVERSE (replies from reals).
pub const POLICY_NAT_ACTIVE: u32 = 1 << 3;

/// No frontend uses port 0 (all ports): a TCP/UDP packet whose exact
/// (address, protocol, port) lookup misses is not for a VIP, and the
/// all-ports lookup is skipped (one hash lookup less for every packet that
/// is not for a VIP, NAT replies included). Userspace sets it only when it
/// holds; clear means "look", which is always correct.
pub const POLICY_NO_ALL_PORTS: u32 = 1 << 4;

/// Per-CPU state of the new-flow flood guard.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FloodState {
    /// Start of the current one-second window, ns of CLOCK_MONOTONIC.
    pub window_start_ns: u64,
    /// New flows seen in the window.
    pub new_flows: u64,
}

/// Packets, bytes and new flows: per service and per real.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowCounters {
    /// Packets forwarded.
    pub packets: u64,
    /// Bytes forwarded (as received, before any encapsulation).
    pub bytes: u64,
    /// New flows: a UDP (or other) packet not found in conntrack, or a TCP
    /// SYN. A mid-connection TCP packet that misses (seen on another CPU,
    /// evicted) is re-balanced but not counted here (see L4Counters::lru_misses).
    pub new_flows: u64,
}

/// L4 balancer counters (one per CPU): conntrack, guard, forwarding outcomes and drops by reason.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct L4Counters {
    /// Conntrack lookups that found the flow.
    pub lru_hits: u64,
    /// Conntrack lookups that missed (the flow was balanced with Maglev).
    pub lru_misses: u64,
    /// New flows balanced without a conntrack write because of the flood guard.
    pub flood_guarded: u64,
    /// Packets NAT-ed toward a real.
    pub nat_forward: u64,
    /// Replies from reals translated back to the VIP.
    pub nat_reverse: u64,
    /// Packets encapsulated toward a real (DSR).
    pub dsr_encap: u64,
    /// ICMP echo requests to a VIP answered.
    pub icmp_echo_replies: u64,
    /// ICMP fragmentation-needed / packet-too-big for a tracked flow, forwarded.
    pub icmp_too_big: u64,
    /// IPv4 packets with options addressed to an XDP service.
    pub ip_options: u64,
    /// IPv6 packets with extension headers addressed to an XDP service.
    pub ipv6_ext_headers: u64,
    /// Dropped: the service has no table yet, or every entry is empty (no healthy real).
    pub drop_no_real: u64,
    /// Dropped: no route to the real (bpf_fib_lookup failed).
    pub drop_no_route: u64,
    /// Dropped: NAT source port space exhausted for this real.
    pub drop_nat_ports: u64,
    /// Dropped: the packet could not be grown for encapsulation.
    pub drop_encap: u64,
    /// Dropped by policy (fragments, options, extension headers).
    pub drop_policy: u64,
    /// Passed to the kernel because the next hop's neighbour is unresolved.
    pub pass_no_neigh: u64,
    /// DSR packets too big for the real's link once encapsulated, answered
    /// with ICMP fragmentation-needed / ICMPv6 packet-too-big (the MTU less
    /// the 20 or 40 bytes Weir adds).
    pub icmp_too_big_sent: u64,
    /// Dropped: too big for the next hop's MTU and not answered (an IPv4
    /// packet without DF, or a NAT packet).
    pub drop_too_big: u64,
}

/// Packets and bytes, one cell of a per-CPU counter array.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TrafficCounters {
    /// Packets seen.
    pub packets: u64,
    /// Bytes seen, counted from the start of the Ethernet header.
    pub bytes: u64,
}

/// Global packet classification counters (one per CPU, summed by userspace).
///
/// Each field is one outcome of parsing; a packet bumps `rx_packets` and
/// exactly one of the classification fields `matched`, `not_matched`,
/// `non_ip` or one of the `malformed_*` reasons.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PacketCounters {
    /// Every packet the program saw.
    pub rx_packets: u64,
    /// Bytes of every packet the program saw.
    pub rx_bytes: u64,
    /// IPv4 or IPv6 packets for a configured frontend.
    pub matched: u64,
    /// Well-formed IP packets not for any frontend.
    pub not_matched: u64,
    /// Frames that are not IPv4/IPv6 (ARP, LLDP, ...): passed untouched.
    pub non_ip: u64,
    /// Frames that carried one or two VLAN tags (also counted in one of the fields above).
    pub vlan_tagged: u64,
    /// Non-first IP fragments or fragmented packets: no L4 header to classify, passed.
    pub ip_fragments: u64,
    /// Malformed: shorter than an Ethernet header (or a truncated VLAN tag).
    pub malformed_ethernet: u64,
    /// Malformed: truncated IPv4/IPv6 header, bad version or IPv4 IHL below 5 or past the packet.
    pub malformed_ip: u64,
    /// Malformed: the TCP/UDP header does not fit in the packet (or TCP data offset below 5).
    pub malformed_l4: u64,
}

/// One murmur3 round: mixes word `k` into the running hash `h`.
#[inline(always)]
pub fn hash_mix(h: u32, k: u32) -> u32 {
    let k = k
        .wrapping_mul(0xcc9e_2d51)
        .rotate_left(15)
        .wrapping_mul(0x1b87_3593);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

#[inline(always)]
fn addr_word(b: &[u8; 16], i: usize) -> u32 {
    u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// The flow hash the Maglev table is indexed with (`hash % ring_size`),
/// honouring a service's `FRONTEND_FLAG_HASH_*` option. Shared by the XDP
/// program and `weir l4 which`, so the simulator picks what the kernel picks.
#[inline(always)]
pub fn flow_hash(key: &FlowKey, flags: u32, seed: u32) -> u32 {
    let mut h = seed;
    if flags & FRONTEND_FLAG_HASH_DST_PORT != 0 {
        h = hash_mix(h, key.dport as u32);
    } else {
        for i in 0..4 {
            h = hash_mix(h, addr_word(&key.src, i * 4));
            h = hash_mix(h, addr_word(&key.dst, i * 4));
        }
        let sport = if flags & FRONTEND_FLAG_HASH_NO_SRC_PORT != 0 {
            0
        } else {
            key.sport
        };
        h = hash_mix(h, ((sport as u32) << 16) | key.dport as u32);
        h = hash_mix(h, key.proto as u32);
    }
    // murmur3 finaliser: spreads the last bits over the whole word.
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

// Pin the layouts: both compilers must see the same sizes.
const _: () = assert!(core::mem::size_of::<FrontendKey>() == 20);
const _: () = assert!(core::mem::size_of::<FrontendInfo>() == 16);
const _: () = assert!(core::mem::size_of::<RealInfo>() == 36);
const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);
const _: () = assert!(core::mem::size_of::<FlowState>() == 12);
const _: () = assert!(core::mem::size_of::<ServiceSlot>() == 36);
const _: () = assert!(core::mem::size_of::<NatReverse>() == 40);
const _: () = assert!(core::mem::size_of::<GlobalConfig>() == 16);
const _: () = assert!(core::mem::size_of::<FloodState>() == 16);
const _: () = assert!(core::mem::size_of::<FlowCounters>() == 24);
const _: () = assert!(core::mem::size_of::<L4Counters>() == 144);
const _: () = assert!(core::mem::size_of::<TrafficCounters>() == 16);
const _: () = assert!(core::mem::size_of::<PacketCounters>() == 80);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are #[repr(C)], made only of integers, with no implicit padding
    // (checked by the size assertions above), so every bit pattern is valid.
    unsafe impl aya::Pod for super::FrontendKey {}
    unsafe impl aya::Pod for super::FrontendInfo {}
    unsafe impl aya::Pod for super::TrafficCounters {}
    unsafe impl aya::Pod for super::PacketCounters {}
    unsafe impl aya::Pod for super::RealInfo {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowState {}
    unsafe impl aya::Pod for super::ServiceSlot {}
    unsafe impl aya::Pod for super::NatReverse {}
    unsafe impl aya::Pod for super::GlobalConfig {}
    unsafe impl aya::Pod for super::FloodState {}
    unsafe impl aya::Pod for super::FlowCounters {}
    unsafe impl aya::Pod for super::L4Counters {}
}
