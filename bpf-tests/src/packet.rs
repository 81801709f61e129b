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
    /// UDP.
    Udp,
}

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

    fn new(src: &str, sport: u16, dst: &str, dport: u16, l4: L4) -> Self {
        Self {
            src: src.parse().expect("fixture source address"),
            dst: dst.parse().expect("fixture destination address"),
            sport,
            dport,
            l4,
            vlans: Vec::new(),
            payload: Vec::new(),
        }
    }

    /// Adds an 802.1Q tag.
    pub fn vlan(mut self, id: u16) -> Self {
        self.vlans.push(id);
        self
    }

    /// The packet's bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut l4 = match self.l4 {
            L4::TcpSyn => {
                let mut h = vec![0u8; TCP_LEN];
                h[0..2].copy_from_slice(&self.sport.to_be_bytes());
                h[2..4].copy_from_slice(&self.dport.to_be_bytes());
                h[4..8].copy_from_slice(&1u32.to_be_bytes()); // sequence number
                h[12] = ((TCP_LEN / 4) as u8) << 4; // data offset, no options
                h[13] = 0x02; // SYN
                h[14..16].copy_from_slice(&65535u16.to_be_bytes()); // window
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
        let proto = match self.l4 {
            L4::TcpSyn => 6u8,
            L4::Udp => 17u8,
        };
        let csum_at = if proto == 6 { 16 } else { 6 };
        let (ip, ether_type) = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut pseudo = Vec::with_capacity(12);
                pseudo.extend_from_slice(&s.octets());
                pseudo.extend_from_slice(&d.octets());
                pseudo.extend_from_slice(&[0, proto]);
                pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
                let c = checksum(&[&pseudo, &l4]);
                l4[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
                let mut h = vec![0u8; IPV4_LEN];
                h[0] = 0x45; // version 4, IHL 5
                h[2..4].copy_from_slice(&((IPV4_LEN + l4.len()) as u16).to_be_bytes());
                h[6] = 0x40; // don't fragment
                h[8] = 64; // TTL
                h[9] = proto;
                h[12..16].copy_from_slice(&s.octets());
                h[16..20].copy_from_slice(&d.octets());
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
                h[4..6].copy_from_slice(&(l4.len() as u16).to_be_bytes());
                h[6] = proto;
                h[7] = 64; // hop limit
                h[8..24].copy_from_slice(&s.octets());
                h[24..40].copy_from_slice(&d.octets());
                (h, 0x86DDu16)
            }
            _ => panic!("fixture mixes IPv4 and IPv6 addresses"),
        };
        let mut frame =
            Vec::with_capacity(ETH_LEN + self.vlans.len() * VLAN_LEN + ip.len() + l4.len());
        frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02]); // destination MAC
        frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]); // source MAC
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
    fn vlan_tag_is_inserted_before_the_ethertype() {
        let p = Packet::udp("198.18.0.2", 1, "198.18.0.1", 2)
            .vlan(42)
            .build();
        assert_eq!(&p[12..14], &[0x81, 0x00]);
        assert_eq!(u16::from_be_bytes([p[14], p[15]]), 42);
        assert_eq!(&p[16..18], &[0x08, 0x00]);
    }
}
