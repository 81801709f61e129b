//! The balancer namespace the L4 fixtures run in.
//!
//! `bpf_fib_lookup` decides the output MACs and whether a packet leaves by
//! XDP_TX or XDP_REDIRECT, so the fixtures run inside a namespace with
//! fixed interfaces, MACs, routes and permanent neighbour entries:
//!
//! ```text
//!   clients 198.18.64.0/18, fd00:64::/64
//!      via router 198.18.0.2 / fd00:18::2 (CLIENT_ROUTER_MAC)
//!   [wcl0 198.18.0.1/24 fd00:18::1/64  CL_MAC]  <- packets from clients arrive here
//!      also: TX real 198.18.0.20 / fd00:18::20 (same interface: XDP_TX)
//!   [wrs0 198.18.1.1/24 fd00:19::1/64  RS_MAC]  -> reals 198.18.1.10-12, fd00:19::10-12
//!      198.18.1.99 / fd00:19::99: on-link, no neighbour entry (XDP_PASS)
//!   198.19.250.1: no route (dropped)
//! ```
//!
//! The peers (`wcl1`, `wrs1`) stay in the same namespace, up, without
//! addresses: they only give the veths a carrier.

use crate::netns::NetNs;

/// Client-facing interface (packets from clients arrive here).
pub const CL_IF: &str = "wcl0";
/// Real-facing interface.
pub const RS_IF: &str = "wrs0";
/// MAC of [`CL_IF`].
pub const CL_MAC: [u8; 6] = [0x02, 0xb0, 0, 0, 0, 0x01];
/// MAC of [`RS_IF`].
pub const RS_MAC: [u8; 6] = [0x02, 0xb0, 0, 0, 0, 0x02];
/// MAC of the router in front of the clients.
pub const CLIENT_ROUTER_MAC: [u8; 6] = [0x02, 0xc1, 0, 0, 0, 0x01];
/// Balancer address on the client side.
pub const CL_ADDR4: &str = "198.18.0.1";
/// Balancer address on the client side, IPv6.
pub const CL_ADDR6: &str = "fd00:18::1";
/// Balancer address on the real side (NAT source, DSR outer source).
pub const RS_ADDR4: &str = "198.18.1.1";
/// Balancer address on the real side, IPv6.
pub const RS_ADDR6: &str = "fd00:19::1";
/// IPv4 VIP of the fixtures.
pub const VIP4: &str = "198.18.100.1";
/// IPv6 VIP of the fixtures.
pub const VIP6: &str = "fd00:100::1";
/// An IPv4 real on the client-side interface (forwarded with XDP_TX).
pub const TX_REAL4: &str = "198.18.0.20";
/// An IPv6 real on the client-side interface.
pub const TX_REAL6: &str = "fd00:18::20";
/// An on-link real without a neighbour entry.
pub const NO_NEIGH_REAL4: &str = "198.18.1.99";
/// A real without a route.
pub const NO_ROUTE_REAL4: &str = "198.19.250.1";

/// The MAC of the real with this address suffix (its last address byte).
pub fn real_mac(suffix: u8) -> [u8; 6] {
    [0x02, 0xe0, 0, 0, 0, suffix]
}

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A real reached through a route with MTU 1500 (the links are jumbo).
pub const SMALL_MTU_REAL4: &str = "198.18.1.20";
/// Its IPv6 twin, through a route with MTU 1500 too.
pub const SMALL_MTU_REAL6: &str = "fd00:19::21";

/// MTU of the fixture links.
pub const JUMBO_MTU: u16 = 9000;

/// The provisioned balancer namespace; deleted on drop.
pub struct Topology {
    /// The namespace.
    pub ns: NetNs,
    /// ifindex of [`CL_IF`].
    pub cl_ifindex: u32,
    /// ifindex of [`RS_IF`].
    pub rs_ifindex: u32,
}

impl Topology {
    /// Creates and provisions the namespace.
    pub fn new() -> Result<Self, String> {
        let ns = NetNs::new("fx")?;
        for (a, b, mac) in [(CL_IF, "wcl1", CL_MAC), (RS_IF, "wrs1", RS_MAC)] {
            ns.ip(&["link", "add", a, "type", "veth", "peer", "name", b])?;
            ns.ip(&["link", "set", a, "address", &mac_str(mac)])?;
            // Jumbo links: multi-buffer (xdp.frags) cases send 9000-byte
            // frames, and bpf_fib_lookup checks the length against the MTU.
            ns.ip(&["link", "set", a, "mtu", &JUMBO_MTU.to_string()])?;
            ns.ip(&["link", "set", a, "up"])?;
            ns.ip(&["link", "set", b, "up"])?;
        }
        ns.sysctl(&["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"])?;
        let cmds: Vec<Vec<String>> = vec![
            vec!["addr", "add", "198.18.0.1/24", "dev", CL_IF],
            vec!["-6", "addr", "add", "fd00:18::1/64", "dev", CL_IF, "nodad"],
            vec!["addr", "add", "198.18.1.1/24", "dev", RS_IF],
            vec!["-6", "addr", "add", "fd00:19::1/64", "dev", RS_IF, "nodad"],
            vec!["route", "add", "198.18.64.0/18", "via", "198.18.0.2"],
            vec!["-6", "route", "add", "fd00:64::/64", "via", "fd00:18::2"],
            // A real whose path keeps the Ethernet MTU: DSR's 20 extra
            // bytes do not fit a full-size packet (ICMP too-big cases).
            vec![
                "route",
                "add",
                SMALL_MTU_REAL4,
                "dev",
                RS_IF,
                "mtu",
                "lock",
                "1500",
            ],
            vec![
                "-6",
                "route",
                "add",
                SMALL_MTU_REAL6,
                "dev",
                RS_IF,
                "mtu",
                "lock",
                "1500",
            ],
        ]
        .into_iter()
        .map(|v| v.into_iter().map(String::from).collect())
        .collect();
        let mut neigh = vec![
            ("198.18.0.2", CL_IF, CLIENT_ROUTER_MAC),
            ("fd00:18::2", CL_IF, CLIENT_ROUTER_MAC),
            (TX_REAL4, CL_IF, real_mac(20)),
            (TX_REAL6, CL_IF, real_mac(0x20)),
        ];
        neigh.push((SMALL_MTU_REAL4, RS_IF, real_mac(20)));
        neigh.push((SMALL_MTU_REAL6, RS_IF, real_mac(0x21)));
        let reals4 = ["198.18.1.10", "198.18.1.11", "198.18.1.12"];
        let reals6 = ["fd00:19::10", "fd00:19::11", "fd00:19::12"];
        for (i, (a4, a6)) in reals4.iter().zip(reals6).enumerate() {
            neigh.push((a4, RS_IF, real_mac(10 + i as u8)));
            neigh.push((a6, RS_IF, real_mac(0x10 + i as u8)));
        }
        for c in &cmds {
            let args: Vec<&str> = c.iter().map(String::as_str).collect();
            ns.ip(&args)?;
        }
        for (addr, dev, mac) in neigh {
            ns.ip(&[
                "neigh",
                "add",
                addr,
                "lladdr",
                &mac_str(mac),
                "dev",
                dev,
                "nud",
                "permanent",
            ])?;
        }
        let cl_ifindex = ns.ifindex(CL_IF)?;
        let rs_ifindex = ns.ifindex(RS_IF)?;
        Ok(Self {
            ns,
            cl_ifindex,
            rs_ifindex,
        })
    }
}
