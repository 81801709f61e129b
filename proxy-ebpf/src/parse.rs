//! Packet parsing: Ethernet (with up to two VLAN tags), IPv4/IPv6 (IPv4
//! options and IPv6 extension headers walked, not rejected), TCP/UDP/ICMP.
//!
//! Every read is bounds-checked against `data_end` right before it, the way
//! the verifier wants. Parsing never modifies the packet; it records the
//! offsets the rewrite code needs.

use aya_ebpf::{helpers::bpf_xdp_get_buff_len, programs::XdpContext};
use proxy_common::{family, proto};

pub const ETH_HDR_LEN: usize = 14;
const VLAN_HDR_LEN: usize = 4;
pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
pub const IPV4_MIN_HDR_LEN: usize = 20;
pub const IPV6_HDR_LEN: usize = 40;
const TCP_MIN_HDR_LEN: usize = 20;
const UDP_HDR_LEN: usize = 8;
const ICMP_HDR_LEN: usize = 8;
/// IPv4 flags/fragment-offset field: More Fragments bit plus the 13-bit offset.
const IPV4_MF_OR_OFFSET: u16 = 0x3FFF;
/// IP protocol numbers of ICMP and ICMPv6.
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_ICMPV6: u8 = 58;
/// IPv6 extension headers we walk (hop-by-hop, routing, destination options) and the fragment header.
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_DEST_OPTS: u8 = 60;
const IPV6_FRAGMENT: u8 = 44;
/// Most extension headers walked before giving up (bounded loop for the verifier).
const MAX_IPV6_EXT_HEADERS: usize = 4;

/// Why a packet could not be parsed. Such packets are passed untouched and counted.
#[derive(Clone, Copy)]
pub enum Malformed {
    /// Shorter than an Ethernet header, or a VLAN tag cut off.
    Ethernet,
    /// Truncated IP header, wrong version, IHL below 5, or a length past the packet.
    Ip,
    /// The TCP/UDP/ICMP header does not fit, or TCP data offset below 5.
    L4,
}

/// Offsets and fields of a parsed IP packet.
///
/// The addresses come first and the struct is 8-byte aligned, so LLVM
/// copies and clears them with 8-byte loads and stores (a byte-aligned
/// 16-byte array would become a call to a byte-at-a-time `memset`/`memcpy`
/// BPF subprogram).
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub struct Headers {
    /// Source address (IPv4 in the first 4 bytes).
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// Offset of the TCP/UDP/ICMP header.
    pub l4: usize,
    /// Source port, network byte order (ICMP: type, code).
    pub sport: u16,
    /// Destination port, network byte order (ICMP: 0).
    pub dport: u16,
    /// `family::V4` or `family::V6`.
    pub family: u8,
    /// IP protocol of the L4 header.
    pub proto: u8,
    /// One or two VLAN tags were present.
    pub vlan: bool,
    /// IPv4 options (IHL > 5) or IPv6 extension headers were present.
    pub ip_extras: bool,
    /// TCP flags byte (SYN, ACK, ...); 0 for other protocols.
    pub tcp_flags: u8,
}

/// What the parser found.
pub enum Parsed {
    /// An IPv4/IPv6 TCP, UDP or ICMP packet; its headers are in the `Headers` passed to `parse`.
    Ip,
    /// A fragment: no complete L4 header to classify on.
    Fragment { vlan: bool },
    /// IP, but neither TCP, UDP nor ICMP.
    OtherIp { vlan: bool },
    /// Not IP (ARP, LLDP, ...).
    NonIp { vlan: bool },
    /// Could not be parsed.
    Malformed(Malformed),
}

/// `ctx->data` and `ctx->data_end`, read with volatile loads.
///
/// Why volatile: for a function that is not inlined, LLVM would otherwise
/// pass the two fields as (zero-extended) scalars instead of the context
/// pointer, and the verifier refuses arithmetic on a zero-extended
/// `pkt_end`. Volatile loads are never hoisted into the caller.
#[inline(always)]
pub fn bounds(ctx: &XdpContext) -> (usize, usize) {
    // SAFETY: ctx.ctx is the program's context pointer, valid for the whole run.
    unsafe {
        (
            core::ptr::read_volatile(&(*ctx.ctx).data) as usize,
            core::ptr::read_volatile(&(*ctx.ctx).data_end) as usize,
        )
    }
}

#[inline(always)]
pub fn bytes_at<const N: usize>(ctx: &XdpContext, offset: usize) -> Option<[u8; N]> {
    let (start, end) = bounds(ctx);
    if start + offset + N > end {
        return None;
    }
    // SAFETY: the range [start+offset, start+offset+N) was checked against data_end above.
    Some(unsafe { core::ptr::read_unaligned((start + offset) as *const [u8; N]) })
}

/// N writable bytes at `offset`, bounds-checked.
///
/// The reference points into the packet: callers use it before any
/// `bpf_xdp_adjust_head` and do not hold two overlapping ones.
#[inline(always)]
pub fn mut_at<'a, const N: usize>(ctx: &'a XdpContext, offset: usize) -> Option<&'a mut [u8; N]> {
    let (start, end) = bounds(ctx);
    if start + offset + N > end {
        return None;
    }
    // SAFETY: the range is inside the packet (checked above), which is writable in XDP.
    Some(unsafe { &mut *((start + offset) as *mut [u8; N]) })
}

/// A 16-byte address field holding an IPv4 address (the rest zero).
#[inline(always)]
pub fn v4_addr(a: [u8; 4]) -> [u8; 16] {
    words_to_addr([u32::from_ne_bytes(a), 0, 0, 0])
}

/// Four native-order words as the 16 bytes they are in memory.
#[inline(always)]
pub fn words_to_addr(w: [u32; 4]) -> [u8; 16] {
    // SAFETY: [u32; 4] and [u8; 16] have the same size; every bit pattern is valid.
    unsafe { core::mem::transmute(w) }
}

/// The four native-order words of a 16-byte address, read as four word
/// loads. Every address this is used on sits at a 4-byte aligned offset
/// of a map value (map values are 8-byte aligned) or of `Headers`.
#[inline(always)]
pub fn addr_words(a: &[u8; 16]) -> [u32; 4] {
    let p = a.as_ptr().cast::<u32>();
    // SAFETY: 16 readable bytes; see above for the alignment (and BPF loads
    // from map values and the stack would be correct unaligned on x86-64 too).
    unsafe { [p.read(), p.add(1).read(), p.add(2).read(), p.add(3).read()] }
}

/// A pointer to a `T` at `offset` in the packet, bounds-checked, for word
/// loads and stores.
///
/// The pointer is typed, so LLVM emits one 2/4/8-byte load or store per
/// access instead of a byte at a time; the address may be unaligned in
/// the packet, which BPF allows for packet memory (the verifier enforces
/// packet alignment only under BPF_F_STRICT_ALIGNMENT, and the JITs of
/// x86-64 and arm64 do unaligned accesses natively).
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let (start, end) = bounds(ctx);
    if start + offset + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

#[inline(always)]
fn u16_at(ctx: &XdpContext, offset: usize) -> Option<u16> {
    bytes_at::<2>(ctx, offset).map(u16::from_be_bytes)
}

/// The whole frame's length, fragments included.
///
/// Both programs load as `xdp.frags`, so a frame bigger than a page (a
/// jumbo MTU) arrives as a linear head plus fragments, and `data_end`
/// bounds the head only. The helper is a call, so it is made only when
/// the headers say the frame is longer than its head.
#[inline(always)]
pub fn frame_len(ctx: &XdpContext) -> usize {
    // SAFETY: the helper only reads the program's own context.
    unsafe { bpf_xdp_get_buff_len(ctx.ctx) as usize }
}

/// Parses the packet up to the L4 ports, filling `h` for IP packets.
///
/// `bytes` is the frame's length as the caller knows it (the linear head);
/// for a multi-buffer frame (longer than its head) it is set to the whole
/// length. Headers always sit in the head: the kernel puts at least the
/// first 256 bytes (veth: a page) there.
///
/// Writes into `h`, a per-CPU scratch map value rather than the stack
/// (the whole inlined hot path shares one 512-byte frame).
#[inline(always)]
pub fn parse(ctx: &XdpContext, h: &mut Headers, bytes: &mut u64) -> Parsed {
    let Some(mut ether_type) = u16_at(ctx, 12) else {
        return Parsed::Malformed(Malformed::Ethernet);
    };
    let mut l3 = ETH_HDR_LEN;
    let mut vlan = false;
    // Up to two tags (802.1ad outer + 802.1Q inner): a bounded loop the verifier can unroll.
    for _ in 0..2 {
        if ether_type != ETH_P_8021Q && ether_type != ETH_P_8021AD {
            break;
        }
        vlan = true;
        let Some(inner) = u16_at(ctx, l3 + 2) else {
            return Parsed::Malformed(Malformed::Ethernet);
        };
        ether_type = inner;
        l3 += VLAN_HDR_LEN;
    }
    match ether_type {
        ETH_P_IPV4 => parse_ipv4(ctx, h, l3, bytes, vlan),
        ETH_P_IPV6 => parse_ipv6(ctx, h, l3, bytes, vlan),
        _ => {
            // Rare (ARP, LLDP): the exact length for the byte counters.
            *bytes = frame_len(ctx) as u64;
            Parsed::NonIp { vlan }
        }
    }
}

/// Whether an IP packet ending at `ip_end` fits the frame. A longer one is
/// either a multi-buffer frame (then `bytes` becomes its whole length) or
/// truncated.
#[inline(always)]
fn ip_fits(ctx: &XdpContext, ip_end: usize, bytes: &mut u64) -> bool {
    if ip_end as u64 <= *bytes {
        return true;
    }
    let whole = frame_len(ctx);
    *bytes = whole as u64;
    ip_end <= whole
}

#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, h: &mut Headers, l3: usize, bytes: &mut u64, vlan: bool) -> Parsed {
    let Some(hdr) = bytes_at::<IPV4_MIN_HDR_LEN>(ctx, l3) else {
        return Parsed::Malformed(Malformed::Ip);
    };
    let version = hdr[0] >> 4;
    let ihl = ((hdr[0] & 0x0F) as usize) * 4;
    let total_len = u16::from_be_bytes([hdr[2], hdr[3]]) as usize;
    if version != 4
        || ihl < IPV4_MIN_HDR_LEN
        || total_len < ihl
        || !ip_fits(ctx, l3 + total_len, bytes)
    {
        return Parsed::Malformed(Malformed::Ip);
    }
    if u16::from_be_bytes([hdr[6], hdr[7]]) & IPV4_MF_OR_OFFSET != 0 {
        return Parsed::Fragment { vlan };
    }
    h.l4 = l3 + ihl;
    h.family = family::V4;
    h.proto = hdr[9];
    h.vlan = vlan;
    h.ip_extras = ihl > IPV4_MIN_HDR_LEN;
    // Whole 16-byte values (aligned stores), IPv4 in the first 4 bytes.
    h.src = v4_addr([hdr[12], hdr[13], hdr[14], hdr[15]]);
    h.dst = v4_addr([hdr[16], hdr[17], hdr[18], hdr[19]]);
    parse_l4(ctx, h)
}

#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, h: &mut Headers, l3: usize, bytes: &mut u64, vlan: bool) -> Parsed {
    let Some(hdr) = bytes_at::<IPV6_HDR_LEN>(ctx, l3) else {
        return Parsed::Malformed(Malformed::Ip);
    };
    let payload_len = u16::from_be_bytes([hdr[4], hdr[5]]) as usize;
    if hdr[0] >> 4 != 6 || !ip_fits(ctx, l3 + IPV6_HDR_LEN + payload_len, bytes) {
        return Parsed::Malformed(Malformed::Ip);
    }
    let mut next = hdr[6];
    let mut l4 = l3 + IPV6_HDR_LEN;
    let mut extras = false;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        match next {
            IPV6_FRAGMENT => return Parsed::Fragment { vlan },
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS => {
                let Some(ext) = bytes_at::<2>(ctx, l4) else {
                    return Parsed::Malformed(Malformed::Ip);
                };
                extras = true;
                next = ext[0];
                l4 += (ext[1] as usize + 1) * 8;
            }
            _ => break,
        }
    }
    h.l4 = l4;
    h.family = family::V6;
    h.proto = next;
    h.vlan = vlan;
    h.ip_extras = extras;
    h.src.copy_from_slice(&hdr[8..24]);
    h.dst.copy_from_slice(&hdr[24..40]);
    parse_l4(ctx, h)
}

#[inline(always)]
fn parse_l4(ctx: &XdpContext, h: &mut Headers) -> Parsed {
    match h.proto {
        proto::TCP => {
            let Some(hdr) = bytes_at::<TCP_MIN_HDR_LEN>(ctx, h.l4) else {
                return Parsed::Malformed(Malformed::L4);
            };
            if ((hdr[12] >> 4) as usize) * 4 < TCP_MIN_HDR_LEN {
                return Parsed::Malformed(Malformed::L4);
            }
            // Kept in network byte order, as userspace stores them.
            h.sport = u16::from_ne_bytes([hdr[0], hdr[1]]);
            h.dport = u16::from_ne_bytes([hdr[2], hdr[3]]);
            h.tcp_flags = hdr[13];
        }
        proto::UDP => {
            let Some(hdr) = bytes_at::<UDP_HDR_LEN>(ctx, h.l4) else {
                return Parsed::Malformed(Malformed::L4);
            };
            h.sport = u16::from_ne_bytes([hdr[0], hdr[1]]);
            h.dport = u16::from_ne_bytes([hdr[2], hdr[3]]);
            h.tcp_flags = 0;
        }
        PROTO_ICMP | PROTO_ICMPV6 => {
            let Some(hdr) = bytes_at::<ICMP_HDR_LEN>(ctx, h.l4) else {
                return Parsed::Malformed(Malformed::L4);
            };
            h.sport = u16::from_ne_bytes([hdr[0], hdr[1]]);
            h.dport = 0;
            h.tcp_flags = 0;
        }
        _ => return Parsed::OtherIp { vlan: h.vlan },
    }
    Parsed::Ip
}
