//! Packet parsing: Ethernet (with up to two VLAN tags), IPv4/IPv6, TCP/UDP.
//!
//! Every read is bounds-checked against `data_end` right before it, the way
//! the verifier wants. Parsing never modifies the packet.

use aya_ebpf::programs::XdpContext;
use proxy_common::{family, proto, FrontendKey};

const ETH_HDR_LEN: usize = 14;
const VLAN_HDR_LEN: usize = 4;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
const IPV4_MIN_HDR_LEN: usize = 20;
const IPV6_HDR_LEN: usize = 40;
const TCP_MIN_HDR_LEN: usize = 20;
const UDP_HDR_LEN: usize = 8;
/// IPv4 flags/fragment-offset field: More Fragments bit plus the 13-bit offset.
const IPV4_MF_OR_OFFSET: u16 = 0x3FFF;
/// IPv6 Fragment extension header.
const IPV6_NEXT_FRAGMENT: u8 = 44;

/// Why a packet could not be parsed. Such packets are passed untouched and counted.
#[derive(Clone, Copy)]
pub enum Malformed {
    /// Shorter than an Ethernet header, or a VLAN tag cut off.
    Ethernet,
    /// Truncated IP header, wrong version, IHL below 5, or a length past the packet.
    Ip,
    /// The TCP or UDP header does not fit, or TCP data offset below 5.
    L4,
}

/// What the parser found.
pub enum Parsed {
    /// An IPv4/IPv6 TCP/UDP packet; the key is ready for the frontend lookup.
    L4 { key: FrontendKey, vlan: bool },
    /// A fragment: no complete L4 header to classify on.
    Fragment { vlan: bool },
    /// IP, but neither TCP nor UDP (ICMP, ...).
    OtherIp { vlan: bool },
    /// Not IP (ARP, LLDP, ...).
    NonIp { vlan: bool },
    /// Could not be parsed.
    Malformed(Malformed),
}

#[inline(always)]
fn bytes_at<const N: usize>(ctx: &XdpContext, offset: usize) -> Option<[u8; N]> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + N > end {
        return None;
    }
    // SAFETY: the range [start+offset, start+offset+N) was checked against data_end above.
    Some(unsafe { core::ptr::read_unaligned((start + offset) as *const [u8; N]) })
}

#[inline(always)]
fn u16_at(ctx: &XdpContext, offset: usize) -> Option<u16> {
    bytes_at::<2>(ctx, offset).map(u16::from_be_bytes)
}

/// Parses the packet up to the L4 ports.
#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Parsed {
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
    let packet_len = ctx.data_end() - ctx.data();
    match ether_type {
        ETH_P_IPV4 => parse_ipv4(ctx, l3, packet_len, vlan),
        ETH_P_IPV6 => parse_ipv6(ctx, l3, packet_len, vlan),
        _ => Parsed::NonIp { vlan },
    }
}

#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, l3: usize, packet_len: usize, vlan: bool) -> Parsed {
    let Some(hdr) = bytes_at::<IPV4_MIN_HDR_LEN>(ctx, l3) else {
        return Parsed::Malformed(Malformed::Ip);
    };
    let version = hdr[0] >> 4;
    let ihl = ((hdr[0] & 0x0F) as usize) * 4;
    let total_len = u16::from_be_bytes([hdr[2], hdr[3]]) as usize;
    if version != 4 || ihl < IPV4_MIN_HDR_LEN || total_len < ihl || l3 + total_len > packet_len {
        return Parsed::Malformed(Malformed::Ip);
    }
    if u16::from_be_bytes([hdr[6], hdr[7]]) & IPV4_MF_OR_OFFSET != 0 {
        return Parsed::Fragment { vlan };
    }
    let mut key = FrontendKey {
        family: family::V4,
        proto: hdr[9],
        ..FrontendKey::default()
    };
    key.addr[..4].copy_from_slice(&hdr[16..20]);
    parse_l4(ctx, key, l3 + ihl, vlan)
}

#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, l3: usize, packet_len: usize, vlan: bool) -> Parsed {
    let Some(hdr) = bytes_at::<IPV6_HDR_LEN>(ctx, l3) else {
        return Parsed::Malformed(Malformed::Ip);
    };
    let payload_len = u16::from_be_bytes([hdr[4], hdr[5]]) as usize;
    if hdr[0] >> 4 != 6 || l3 + IPV6_HDR_LEN + payload_len > packet_len {
        return Parsed::Malformed(Malformed::Ip);
    }
    if hdr[6] == IPV6_NEXT_FRAGMENT {
        return Parsed::Fragment { vlan };
    }
    let mut key = FrontendKey {
        family: family::V6,
        proto: hdr[6],
        ..FrontendKey::default()
    };
    key.addr.copy_from_slice(&hdr[24..40]);
    parse_l4(ctx, key, l3 + IPV6_HDR_LEN, vlan)
}

#[inline(always)]
fn parse_l4(ctx: &XdpContext, mut key: FrontendKey, l4: usize, vlan: bool) -> Parsed {
    match key.proto {
        proto::TCP => {
            let Some(hdr) = bytes_at::<TCP_MIN_HDR_LEN>(ctx, l4) else {
                return Parsed::Malformed(Malformed::L4);
            };
            if ((hdr[12] >> 4) as usize) * 4 < TCP_MIN_HDR_LEN {
                return Parsed::Malformed(Malformed::L4);
            }
            // Kept in network byte order, as userspace stores it.
            key.port = u16::from_ne_bytes([hdr[2], hdr[3]]);
        }
        proto::UDP => {
            let Some(hdr) = bytes_at::<UDP_HDR_LEN>(ctx, l4) else {
                return Parsed::Malformed(Malformed::L4);
            };
            key.port = u16::from_ne_bytes([hdr[2], hdr[3]]);
        }
        _ => return Parsed::OtherIp { vlan },
    }
    Parsed::L4 { key, vlan }
}
