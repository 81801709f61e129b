//! A small packet builder for fixtures: Ethernet (optionally VLAN-tagged),
//! IPv4 / IPv6, TCP / UDP, with correct lengths and checksums.
//!
//! Sizes, with the header arithmetic written out:
//! Ethernet 14 (+4 per VLAN tag) + IPv4 20 / IPv6 40 + TCP 20 / UDP 8 + payload.

use std::net::IpAddr;

/// Length of an Ethernet header without tags.
pub const ETH_LEN: usize = 14;
/// Length of one 802.1Q tag.
pub const VLAN_LEN: usize = 4;
/// IPv4 header without options.
pub const IPV4_LEN: usize = 20;
/// IPv6 fixed header.
pub const IPV6_LEN: usize = 40;
/// TCP header without options.
pub const TCP_LEN: usize = 20;
/// UDP header.
pub const UDP_LEN: usize = 8;

/// Transport of a built packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    /// TCP with the SYN flag.
    TcpSyn,
    /// TCP with these flags (e.g. 0x10 ACK, 0x12 SYN+ACK).
    Tcp(u8),
    /// UDP.
    Udp,
    /// ICMP (IPv4) or ICMPv6 (IPv6) with this type and code; the 4 bytes
    /// after the checksum and the payload follow (`rest`, `payload`).
    Icmp {
        /// ICMP type.
        ty: u8,
        /// ICMP code.
        code: u8,
        /// Bytes 4..8 of the ICMP header (echo id/sequence, MTU, ...).
        rest: [u8; 4],
    },
}

/// MAC address of the default source of built frames.
pub const DEFAULT_SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// MAC address of the default destination of built frames.
pub const DEFAULT_DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// IPv6 hop-by-hop options header (extension header type).
pub const IPV6_EXT_HOP_BY_HOP: u8 = 0;
/// IPv6 fragment header (extension header type).
pub const IPV6_EXT_FRAGMENT: u8 = 44;

/// A packet description; `build()` turns it into bytes.
#[derive(Debug, Clone)]
pub struct Packet {
    /// Source address (IPv4 and IPv6 must not be mixed with `dst`).
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Transport.
    pub l4: L4,
    /// 802.1Q VLAN ids to insert, outermost first.
    pub vlans: Vec<u16>,
    /// Payload bytes after the L4 header.
    pub payload: Vec<u8>,
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// IPv4 TTL / IPv6 hop limit.
    pub ttl: u8,
    /// IPv4 options (a multiple of 4 bytes; IHL grows with them).
    pub ipv4_options: Vec<u8>,
    /// IPv4 flags+fragment offset word (default 0x4000: don't fragment).
    pub ipv4_frag: u16,
    /// IPv6 extension headers (type of each 8-byte header), in order.
    pub ipv6_ext: Vec<u8>,
}

impl Packet {
    /// A TCP SYN from `src:sport` to `dst:dport`.
    pub fn tcp(src: &str, sport: u16, dst: &str, dport: u16) -> Self {
        Self::new(src, sport, dst, dport, L4::TcpSyn)
    }

    /// A UDP datagram with a 16-byte payload.
    pub fn udp(src: &str, sport: u16, dst: &str, dport: u16) -> Self {
        let mut p = Self::new(src, sport, dst, dport, L4::Udp);
        p.payload = b"weir-test-udp-16".to_vec();
        p
    }

    /// A TCP segment with these flags (0x10 = ACK) and a payload.
    pub fn tcp_flags(src: &str, sport: u16, dst: &str, dport: u16, flags: u8) -> Self {
        Self::new(src, sport, dst, dport, L4::Tcp(flags))
    }

    /// An ICMP echo request (ICMPv6 for IPv6 addresses) with a 16-byte payload.
    pub fn echo_request(src: &str, dst: &str) -> Self {
        let v6 = src.contains(':');
        let mut p = Self::new(
            src,
            0,
            dst,
            0,
            L4::Icmp {
                ty: if v6 { 128 } else { 8 },
                code: 0,
                rest: [0x12, 0x34, 0, 1], // identifier, sequence
            },
        );
        p.payload = b"weir-test-echo16".to_vec();
        p
    }

    /// An ICMP fragmentation-needed (IPv4, type 3 code 4) or ICMPv6
    /// packet-too-big (type 2) from `src` to `dst` quoting `quoted` (an
    /// IP packet without its Ethernet header, cut to what a router quotes).
    pub fn too_big(src: &str, dst: &str, mtu: u16, quoted: &[u8]) -> Self {
        let v6 = src.contains(':');
        let rest = if v6 {
            (mtu as u32).to_be_bytes()
        } else {
            let m = mtu.to_be_bytes();
            [0, 0, m[0], m[1]]
        };
        let (ty, code) = if v6 { (2, 0) } else { (3, 4) };
        let mut p = Self::new(src, 0, dst, 0, L4::Icmp { ty, code, rest });
        p.payload = quoted.to_vec();
        p
    }

    fn new(src: &str, sport: u16, dst: &str, dport: u16, l4: L4) -> Self {
        Self {
            src: src.parse().expect("fixture source address"),
            dst: dst.parse().expect("fixture destination address"),
            sport,
            dport,
            l4,
            vlans: Vec::new(),
            payload: Vec::new(),
            src_mac: DEFAULT_SRC_MAC,
            dst_mac: DEFAULT_DST_MAC,
            ttl: 64,
            ipv4_options: Vec::new(),
            ipv4_frag: 0x4000,
            ipv6_ext: Vec::new(),
        }
    }

    /// Sets the MAC addresses.
    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Self {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    /// Sets the TTL / hop limit.
    pub fn ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the payload.
    pub fn payload(mut self, payload: &[u8]) -> Self {
        self.payload = payload.to_vec();
        self
    }

    /// Adds IPv4 options (padded with end-of-options to a multiple of 4).
    pub fn ipv4_options(mut self, options: &[u8]) -> Self {
        self.ipv4_options = options.to_vec();
        while !self.ipv4_options.len().is_multiple_of(4) {
            self.ipv4_options.push(0);
        }
        self
    }

    /// Makes an IPv4 fragment: `offset` in 8-byte units, `more` = MF bit.
    /// Clears the IPv4 Don't Fragment bit (set by default, as TCP stacks do).
    pub fn may_fragment(mut self) -> Self {
        self.ipv4_frag &= !0x4000;
        self
    }

    pub fn ipv4_fragment(mut self, offset: u16, more: bool) -> Self {
        self.ipv4_frag = (offset & 0x1FFF) | if more { 0x2000 } else { 0 };
        self
    }

    /// Adds an 8-byte IPv6 extension header of this type.
    pub fn ipv6_ext(mut self, kind: u8) -> Self {
        self.ipv6_ext.push(kind);
        self
    }

    /// The IP packet (no Ethernet header).
    pub fn ip_packet(&self) -> Vec<u8> {
        let frame = self.build();
        frame[ETH_LEN + self.vlans.len() * VLAN_LEN..].to_vec()
    }

    /// Adds an 802.1Q tag.
    pub fn vlan(mut self, id: u16) -> Self {
        self.vlans.push(id);
        self
    }

    /// The packet's bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut l4 = match self.l4 {
            L4::TcpSyn | L4::Tcp(_) => {
                let mut h = vec![0u8; TCP_LEN];
                h[0..2].copy_from_slice(&self.sport.to_be_bytes());
                h[2..4].copy_from_slice(&self.dport.to_be_bytes());
                h[4..8].copy_from_slice(&1u32.to_be_bytes()); // sequence number
                h[12] = ((TCP_LEN / 4) as u8) << 4; // data offset, no options
                h[13] = match self.l4 {
                    L4::Tcp(flags) => flags,
                    _ => 0x02, // SYN
                };
                h[14..16].copy_from_slice(&65535u16.to_be_bytes()); // window
                h
            }
            L4::Icmp { ty, code, rest } => {
                let mut h = vec![ty, code, 0, 0];
                h.extend_from_slice(&rest);
                h
            }
            L4::Udp => {
                let mut h = vec![0u8; UDP_LEN];
                h[0..2].copy_from_slice(&self.sport.to_be_bytes());
                h[2..4].copy_from_slice(&self.dport.to_be_bytes());
                h[4..6].copy_from_slice(&((UDP_LEN + self.payload.len()) as u16).to_be_bytes());
                h
            }
        };
        l4.extend_from_slice(&self.payload);
        let v6 = self.src.is_ipv6();
        let proto = match self.l4 {
            L4::TcpSyn | L4::Tcp(_) => 6u8,
            L4::Udp => 17u8,
            L4::Icmp { .. } if v6 => 58u8,
            L4::Icmp { .. } => 1u8,
        };
        let csum_at = match proto {
            6 => 16,
            17 => 6,
            _ => 2,
        };
        let (ip, ether_type) = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut pseudo = Vec::with_capacity(12);
                pseudo.extend_from_slice(&s.octets());
                pseudo.extend_from_slice(&d.octets());
                pseudo.extend_from_slice(&[0, proto]);
                pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
                // ICMPv4's checksum covers the message only (RFC 792).
                let c = if proto == 1 {
                    checksum(&[&l4])
                } else {
                    checksum(&[&pseudo, &l4])
                };
                l4[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
                let hlen = IPV4_LEN + self.ipv4_options.len();
                let mut h = vec![0u8; IPV4_LEN];
                h[0] = 0x40 | (hlen / 4) as u8; // version 4, IHL
                h[2..4].copy_from_slice(&((hlen + l4.len()) as u16).to_be_bytes());
                h[6..8].copy_from_slice(&self.ipv4_frag.to_be_bytes());
                h[8] = self.ttl;
                h[9] = proto;
                h[12..16].copy_from_slice(&s.octets());
                h[16..20].copy_from_slice(&d.octets());
                h.extend_from_slice(&self.ipv4_options);
                let c = checksum(&[&h]);
                h[10..12].copy_from_slice(&c.to_be_bytes());
                (h, 0x0800u16)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let mut pseudo = Vec::with_capacity(40);
                pseudo.extend_from_slice(&s.octets());
                pseudo.extend_from_slice(&d.octets());
                pseudo.extend_from_slice(&(l4.len() as u32).to_be_bytes());
                pseudo.extend_from_slice(&[0, 0, 0, proto]);
                let c = checksum(&[&pseudo, &l4]);
                l4[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
                let mut h = vec![0u8; IPV6_LEN];
                h[0] = 0x60;
                let ext_len = self.ipv6_ext.len() * 8;
                h[4..6].copy_from_slice(&((ext_len + l4.len()) as u16).to_be_bytes());
                h[6] = self.ipv6_ext.first().copied().unwrap_or(proto);
                h[7] = self.ttl; // hop limit
                h[8..24].copy_from_slice(&s.octets());
                h[24..40].copy_from_slice(&d.octets());
                for (i, kind) in self.ipv6_ext.iter().enumerate() {
                    let next = self.ipv6_ext.get(i + 1).copied().unwrap_or(proto);
                    let mut ext = [0u8; 8];
                    ext[0] = next;
                    if *kind == IPV6_EXT_FRAGMENT {
                        ext[3] = 1; // offset 0, more fragments
                    } else {
                        ext[2] = 1; // a PadN option filling the header (RFC 8200 §4.2)
                        ext[3] = 4;
                    }
                    h.extend_from_slice(&ext);
                }
                (h, 0x86DDu16)
            }
            _ => panic!("fixture mixes IPv4 and IPv6 addresses"),
        };
        let mut frame =
            Vec::with_capacity(ETH_LEN + self.vlans.len() * VLAN_LEN + ip.len() + l4.len());
        frame.extend_from_slice(&self.dst_mac);
        frame.extend_from_slice(&self.src_mac);
        for id in &self.vlans {
            frame.extend_from_slice(&0x8100u16.to_be_bytes());
            frame.extend_from_slice(&(id & 0x0FFF).to_be_bytes());
        }
        frame.extend_from_slice(&ether_type.to_be_bytes());
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&l4);
        frame
    }
}

/// An ARP request frame (not IP).
pub fn arp_request() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f.extend_from_slice(&0x0806u16.to_be_bytes());
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]); // htype, ptype, hlen, plen, op=request
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01, 198, 18, 0, 2]);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&[198, 18, 0, 1]);
    f
}

/// What Weir's DSR encapsulation must produce: Ethernet (`src_mac` ->
/// `dst_mac`), then an outer IPv4 header (protocol 4, IPIP) or IPv6 header
/// (next header 41) from `outer_src` to `outer_dst` with TTL / hop limit 64,
/// no DF, id 0, TOS / traffic class 0, then `inner` (an IP packet) as is.
pub fn encapsulated(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    outer_src: IpAddr,
    outer_dst: IpAddr,
    inner: &[u8],
) -> Vec<u8> {
    let mut frame = Vec::with_capacity(ETH_LEN + IPV6_LEN + inner.len());
    frame.extend_from_slice(&dst_mac);
    frame.extend_from_slice(&src_mac);
    match (outer_src, outer_dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            frame.extend_from_slice(&0x0800u16.to_be_bytes());
            let mut h = [0u8; IPV4_LEN];
            h[0] = 0x45;
            h[2..4].copy_from_slice(&((IPV4_LEN + inner.len()) as u16).to_be_bytes());
            h[8] = 64;
            h[9] = 4; // IPIP
            h[12..16].copy_from_slice(&s.octets());
            h[16..20].copy_from_slice(&d.octets());
            let c = checksum(&[&h]);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            frame.extend_from_slice(&h);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            frame.extend_from_slice(&0x86DDu16.to_be_bytes());
            let mut h = [0u8; IPV6_LEN];
            h[0] = 0x60;
            h[4..6].copy_from_slice(&(inner.len() as u16).to_be_bytes());
            h[6] = 41; // IPv6-in-IPv6
            h[7] = 64;
            h[8..24].copy_from_slice(&s.octets());
            h[24..40].copy_from_slice(&d.octets());
            frame.extend_from_slice(&h);
        }
        _ => panic!("encapsulation mixes IPv4 and IPv6 addresses"),
    }
    frame.extend_from_slice(inner);
    frame
}

/// Verifies, from scratch, every checksum of an untagged Ethernet frame:
/// the IPv4 header checksum, the TCP / UDP / ICMP / ICMPv6 checksum, and
/// the same for the inner packet of an IPIP / IPv6-in-IPv6 encapsulation.
/// Also checks that the IP length fields match the frame.
pub fn verify_checksums(frame: &[u8]) -> Result<(), String> {
    if frame.len() < ETH_LEN {
        return Err(format!("{} bytes: no Ethernet header", frame.len()));
    }
    match u16::from_be_bytes([frame[12], frame[13]]) {
        0x0800 => verify_ip(&frame[ETH_LEN..], 4),
        0x86DD => verify_ip(&frame[ETH_LEN..], 6),
        other => Err(format!("ethertype {other:#06x} is not IP")),
    }
}

fn verify_ip(ip: &[u8], version: u8) -> Result<(), String> {
    let (proto, src, dst, l4) = if version == 4 {
        if ip.len() < IPV4_LEN || ip[0] >> 4 != 4 {
            return Err("bad IPv4 header".into());
        }
        let hlen = usize::from(ip[0] & 0x0F) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        if total != ip.len() || hlen > total {
            return Err(format!(
                "IPv4 total length {total}, {} bytes present",
                ip.len()
            ));
        }
        if checksum(&[&ip[..hlen]]) != 0 {
            return Err(format!(
                "IPv4 header checksum {:#06x} does not verify",
                u16::from_be_bytes([ip[10], ip[11]])
            ));
        }
        (ip[9], &ip[12..16], &ip[16..20], &ip[hlen..])
    } else {
        if ip.len() < IPV6_LEN || ip[0] >> 4 != 6 {
            return Err("bad IPv6 header".into());
        }
        let payload = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
        if IPV6_LEN + payload != ip.len() {
            return Err(format!(
                "IPv6 payload length {payload}, {} bytes present",
                ip.len() - IPV6_LEN
            ));
        }
        (ip[6], &ip[8..24], &ip[24..40], &ip[IPV6_LEN..])
    };
    let mut pseudo = Vec::with_capacity(40);
    pseudo.extend_from_slice(src);
    pseudo.extend_from_slice(dst);
    if version == 4 {
        pseudo.extend_from_slice(&[0, proto]);
        pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    } else {
        pseudo.extend_from_slice(&(l4.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, proto]);
    }
    let what = match proto {
        4 => return verify_ip(l4, 4),
        41 => return verify_ip(l4, 6),
        6 if l4.len() >= TCP_LEN => "TCP",
        17 if l4.len() >= UDP_LEN => {
            if version == 4 && l4[6..8] == [0, 0] {
                return Ok(()); // IPv4 UDP without checksum
            }
            "UDP"
        }
        1 if l4.len() >= 8 => {
            return match checksum(&[l4]) {
                0 => Ok(()),
                _ => Err("ICMP checksum does not verify".into()),
            }
        }
        58 if l4.len() >= 8 => "ICMPv6",
        _ => return Err(format!("protocol {proto} with {} bytes", l4.len())),
    };
    match checksum(&[&pseudo, l4]) {
        0 => Ok(()),
        _ => Err(format!("{what} checksum does not verify")),
    }
}

/// The Internet checksum (RFC 1071) over several byte slices taken as one.
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in *part {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_tcp_packet_has_the_documented_length_and_valid_checksums() {
        let p = Packet::tcp("198.18.0.2", 40000, "198.18.0.1", 80).build();
        assert_eq!(p.len(), ETH_LEN + IPV4_LEN + TCP_LEN);
        let ip = &p[ETH_LEN..ETH_LEN + IPV4_LEN];
        assert_eq!(checksum(&[ip]), 0, "IPv4 header checksum verifies to zero");
        let l4 = &p[ETH_LEN + IPV4_LEN..];
        let mut pseudo = ip[12..20].to_vec();
        pseudo.extend_from_slice(&[0, 6, 0, TCP_LEN as u8]);
        assert_eq!(checksum(&[&pseudo, l4]), 0, "TCP checksum verifies to zero");
    }

    #[test]
    fn ipv6_udp_packet_checksum_verifies() {
        let p = Packet::udp("fd00::2", 5353, "fd00::1", 53).build();
        assert_eq!(p.len(), ETH_LEN + IPV6_LEN + UDP_LEN + 16);
        let ip = &p[ETH_LEN..ETH_LEN + IPV6_LEN];
        let l4 = &p[ETH_LEN + IPV6_LEN..];
        let mut pseudo = ip[8..40].to_vec();
        pseudo.extend_from_slice(&(l4.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 17]);
        assert_eq!(checksum(&[&pseudo, l4]), 0);
    }

    #[test]
    fn checksum_verifier_accepts_built_packets_and_rejects_a_flipped_bit() {
        for p in [
            Packet::tcp("198.18.0.2", 40000, "198.18.0.1", 80).build(),
            Packet::udp("fd00::2", 5353, "fd00::1", 53).build(),
            Packet::echo_request("198.18.0.2", "198.18.0.1").build(),
            Packet::echo_request("fd00::2", "fd00::1").build(),
            Packet::tcp("198.18.0.2", 1, "198.18.0.1", 2)
                .ipv4_options(&[1, 1, 1, 1])
                .build(),
        ] {
            assert_eq!(verify_checksums(&p), Ok(()), "{p:02x?}");
            let mut bad = p.clone();
            let last = bad.len() - 1;
            bad[last] ^= 0x01;
            assert!(verify_checksums(&bad).is_err(), "flipped payload bit");
        }
    }

    #[test]
    fn encapsulated_ipv4_frame_has_a_valid_outer_header_and_the_inner_packet_intact() {
        let inner = Packet::tcp("198.18.64.2", 40000, "198.18.100.1", 80);
        let frame = encapsulated(
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            "198.18.1.1".parse().unwrap(),
            "198.18.1.10".parse().unwrap(),
            &inner.ip_packet(),
        );
        assert_eq!(frame.len(), ETH_LEN + IPV4_LEN + IPV4_LEN + TCP_LEN);
        assert_eq!(frame[ETH_LEN + 9], 4, "IPIP");
        assert_eq!(&frame[ETH_LEN + IPV4_LEN..], &inner.ip_packet()[..]);
        assert_eq!(verify_checksums(&frame), Ok(()));
    }

    #[test]
    fn ipv4_options_grow_the_header_length() {
        let p = Packet::udp("198.18.0.2", 1, "198.18.0.1", 2)
            .ipv4_options(&[1, 1, 1])
            .build();
        assert_eq!(p[ETH_LEN], 0x46, "IHL 6 with 4 bytes of options");
        assert_eq!(verify_checksums(&p), Ok(()));
    }

    #[test]
    fn vlan_tag_is_inserted_before_the_ethertype() {
        let p = Packet::udp("198.18.0.2", 1, "198.18.0.1", 2)
            .vlan(42)
            .build();
        assert_eq!(&p[12..14], &[0x81, 0x00]);
        assert_eq!(u16::from_be_bytes([p[14], p[15]]), 42);
        assert_eq!(&p[16..18], &[0x08, 0x00]);
    }
}
