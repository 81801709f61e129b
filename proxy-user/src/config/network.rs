//! IP networks as written in the configuration (`10.0.0.0/8`, `::1`), for
//! `option forwardfor except <network>`.

use std::fmt;
use std::net::IpAddr;

/// An address with a prefix length; a bare address is a /32 (or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `ADDR` or `ADDR/LEN`. Bits past the prefix must be zero
    /// (`10.0.0.1/8` is refused: it usually means a typo in the mask).
    /// IPv4 also takes a dotted mask, `10.0.0.0/255.0.0.0`, as HAProxy does.
    pub fn parse(s: &str) -> Result<Network, String> {
        let (addr_text, prefix_text) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| format!("'{addr_text}' is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => max,
            Some(p) => match (p.parse::<u8>(), addr, p.parse::<std::net::Ipv4Addr>()) {
                (Ok(n), _, _) if n <= max => n,
                (_, IpAddr::V4(_), Ok(mask)) => {
                    let bits = u32::from(mask);
                    if bits.leading_ones() + bits.trailing_zeros() != 32 {
                        return Err(format!("'{p}' is not a contiguous netmask"));
                    }
                    bits.leading_ones() as u8
                }
                _ => return Err(format!("prefix length '{p}' must be 0 to {max}")),
            },
        };
        let net = Network { addr, prefix };
        if net.masked(addr) != addr {
            return Err(format!(
                "'{s}' has bits set past the /{prefix} prefix (did you mean {}/{prefix}?)",
                net.masked(addr)
            ));
        }
        Ok(net)
    }

    /// True when `ip` is in this network. An IPv4-mapped IPv6 address
    /// (`::ffff:10.0.0.1`, as a dual-stack socket reports IPv4 peers)
    /// matches as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.addr.is_ipv4() && self.masked(ip) == self.addr
    }

    fn masked(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_match_their_addresses() {
        let n = Network::parse("10.1.0.0/16").unwrap();
        assert!(n.contains(ip("10.1.2.3")));
        assert!(!n.contains(ip("10.2.0.1")));
        assert!(n.contains(ip("::ffff:10.1.9.9")));
        assert!(!n.contains(ip("::1")));
        let host = Network::parse("127.0.0.1").unwrap();
        assert!(host.contains(ip("127.0.0.1")) && !host.contains(ip("127.0.0.2")));
        let all = Network::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(ip("192.0.2.1")));
        let v6 = Network::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8::1")) && !v6.contains(ip("2001:db9::1")));
        let mask = Network::parse("10.0.0.0/255.0.0.0").unwrap();
        assert_eq!(mask.to_string(), "10.0.0.0/8");
    }

    #[test]
    fn bad_networks_say_why() {
        assert!(Network::parse("10.0.0.1/8")
            .unwrap_err()
            .contains("10.0.0.0/8"));
        assert!(Network::parse("10.0.0.0/33")
            .unwrap_err()
            .contains("0 to 32"));
        assert!(Network::parse("10.0.0.0/255.0.255.0")
            .unwrap_err()
            .contains("contiguous"));
        assert!(Network::parse("web").unwrap_err().contains("not an IP"));
    }
}
