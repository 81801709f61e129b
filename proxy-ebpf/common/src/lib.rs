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
    /// Index of this frontend's slot in FRONTEND_STATS (0..MAX_FRONTENDS).
    pub id: u32,
    /// `FRONTEND_FLAG_*` bits.
    pub flags: u32,
}

/// The frontend asked for XDP acceleration (`xdp` keyword); without it the program only counts.
pub const FRONTEND_FLAG_XDP: u32 = 1;

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

// Pin the layouts: both compilers must see the same sizes.
const _: () = assert!(core::mem::size_of::<FrontendKey>() == 20);
const _: () = assert!(core::mem::size_of::<FrontendInfo>() == 8);
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
}
