//! L4 services: what the XDP balancer serves, and writing it into the maps.
//!
//! A service is a `mode tcp`/`mode udp` frontend (or listen) with the `xdp`
//! keyword: its binds are VIPs, its default backend's servers are reals.
//! Each real gets a global real id (its slot in REALS and REAL_STATS); each
//! service gets two halves of RINGS for its Maglev table. Changing the real
//! set (health, weights) builds a new table into the inactive half and then
//! flips `FrontendInfo::ring_base` with one map update, so a packet sees
//! either the old table or the new one.

use std::net::{IpAddr, SocketAddr, UdpSocket};

use proxy_common::{
    family, proto, FrontendInfo, FrontendKey, GlobalConfig, RealInfo, FRONTEND_FLAG_DSR,
    FRONTEND_FLAG_HASH_DST_PORT, FRONTEND_FLAG_HASH_NO_SRC_PORT, FRONTEND_FLAG_ICMP_ECHO,
    FRONTEND_FLAG_XDP, MAX_REALS, NO_REAL, POLICY_NAT_ACTIVE,
};

use crate::balance::maglev::{MaglevReal, MaglevTable};
use crate::config::{
    model::{XdpForward, XdpHash},
    Config, Mode,
};

/// One real of a service.
#[derive(Debug, Clone)]
pub struct L4Real {
    /// Server name from the config.
    pub name: String,
    /// The server's guid, if any.
    pub guid: Option<String>,
    /// Where it is (port 0 = the VIP's port).
    pub addr: SocketAddr,
    /// Configured weight (0 = drained).
    pub weight: u32,
    /// Health: a real that is down gets no slots in the table.
    pub up: bool,
    /// Global real id (index in REALS / REAL_STATS).
    pub id: u32,
    /// Weir's own address toward the real (NAT source, DSR outer source).
    pub local_addr: IpAddr,
}

/// One XDP service.
#[derive(Debug, Clone)]
pub struct L4Service {
    /// Frontend name.
    pub name: String,
    /// Frontend guid.
    pub guid: Option<String>,
    /// VIPs (binds) with their FRONTEND_STATS slot.
    pub vips: Vec<(SocketAddr, u32)>,
    /// Interfaces to attach to (from `bind ... interface IF`).
    pub interfaces: Vec<String>,
    /// TCP or UDP.
    pub proto: u8,
    /// `FRONTEND_FLAG_*`.
    pub flags: u32,
    /// Maglev table size (prime).
    pub table_size: u32,
    /// `xdp strict`: failing to attach is an error.
    pub strict: bool,
    /// The reals, in config order.
    pub reals: Vec<L4Real>,
    /// Which RINGS half is active (0 or 1).
    active_half: u32,
    /// Index of this service among the XDP services (its RINGS region).
    slot: u32,
}

/// Errors building the services from a config.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The service's backend is missing or has no server.
    #[error(
        "{file}:{line}: xdp service '{service}' has no servers (default_backend missing or empty)"
    )]
    NoServers {
        /// Config file.
        file: String,
        /// Line of the frontend.
        line: usize,
        /// Service name.
        service: String,
    },
    /// A real cannot be used with this service.
    #[error("{file}:{line}: server '{server}' of xdp service '{service}': {why}")]
    BadReal {
        /// Config file.
        file: String,
        /// Line of the server.
        line: usize,
        /// Service name.
        service: String,
        /// Server name.
        server: String,
        /// What is wrong and what to do.
        why: String,
    },
    /// Too many reals.
    #[error("{count} reals configured for XDP services, the data path holds at most {MAX_REALS}")]
    TooManyReals {
        /// Configured count.
        count: usize,
    },
    /// The Maglev table cannot be built.
    #[error("service '{service}': {source}")]
    Maglev {
        /// Service name.
        service: String,
        /// Cause.
        #[source]
        source: crate::balance::maglev::MaglevError,
    },
}

/// The local address the kernel would use to reach `peer` (no packet is
/// sent: connecting a UDP socket only consults the routing table).
pub fn local_addr_toward(peer: IpAddr) -> std::io::Result<IpAddr> {
    let bind: SocketAddr = match peer {
        IpAddr::V4(_) => "0.0.0.0:0".parse().expect("literal"),
        IpAddr::V6(_) => "[::]:0".parse().expect("literal"),
    };
    let sock = UdpSocket::bind(bind)?;
    sock.connect(SocketAddr::new(peer, 9))?;
    Ok(sock.local_addr()?.ip())
}

fn addr_bytes(ip: IpAddr) -> ([u8; 16], u8) {
    let mut out = [0u8; 16];
    match ip {
        IpAddr::V4(a) => {
            out[..4].copy_from_slice(&a.octets());
            (out, family::V4)
        }
        IpAddr::V6(a) => (a.octets(), family::V6),
    }
}

impl L4Service {
    /// The REALS entries of this service: the reals that are up (a down
    /// real's slot is cleared, so flows tracked to it are re-balanced).
    pub fn real_infos(&self) -> Vec<(u32, RealInfo)> {
        self.reals
            .iter()
            .filter(|r| r.up)
            .map(|r| {
                let (addr, fam) = addr_bytes(r.addr.ip());
                let (local, _) = addr_bytes(r.local_addr);
                (
                    r.id,
                    RealInfo {
                        addr,
                        local_addr: local,
                        port: r.addr.port().to_be(),
                        family: fam,
                        _pad: 0,
                    },
                )
            })
            .collect()
    }

    /// Builds the Maglev table of the current real set, as global real ids
    /// (every slot NO_REAL when no real is up).
    pub fn table(&self) -> Result<Vec<u32>, ServiceError> {
        let ids: Vec<Vec<u8>> = self
            .reals
            .iter()
            .map(|r| r.addr.to_string().into_bytes())
            .collect();
        let reals: Vec<MaglevReal<'_>> = self
            .reals
            .iter()
            .zip(&ids)
            .map(|(r, id)| MaglevReal {
                id,
                weight: if r.up { r.weight } else { 0 },
            })
            .collect();
        match MaglevTable::build(&reals, self.table_size) {
            Ok(t) => Ok(t
                .entries()
                .iter()
                .map(|&i| self.reals[i as usize].id)
                .collect()),
            Err(crate::balance::maglev::MaglevError::NoReals) => {
                Ok(vec![NO_REAL; self.table_size as usize])
            }
            Err(source) => Err(ServiceError::Maglev {
                service: self.name.clone(),
                source,
            }),
        }
    }

    /// First RINGS index of `half`, given the largest table size.
    pub fn ring_base(&self, half: u32, stride: u32) -> u32 {
        (self.slot * 2 + half) * stride
    }

    /// The FRONTENDS entries of this service, pointing at the active half.
    pub fn frontend_entries(&self, stride: u32) -> Vec<(FrontendKey, FrontendInfo)> {
        let mut out = Vec::new();
        for &(vip, stats_id) in &self.vips {
            let info = FrontendInfo {
                id: stats_id,
                flags: self.flags,
                ring_base: self.ring_base(self.active_half, stride),
                ring_size: self.table_size,
            };
            out.push((super::frontend_key(vip, self.proto), info));
            // ICMP to the VIP (echo, too-big) looks up port 0 of its protocol.
            let icmp = if vip.is_ipv4() { 1 } else { 58 };
            out.push((
                super::frontend_key(SocketAddr::new(vip.ip(), 0), icmp),
                info,
            ));
        }
        out
    }

    /// Switches to the other half; returns the new half.
    pub fn flip(&mut self) -> u32 {
        self.active_half ^= 1;
        self.active_half
    }

    /// The inactive half (where the next table is written).
    pub fn inactive_half(&self) -> u32 {
        self.active_half ^ 1
    }

    /// Sets which half is active (after reading the pinned FRONTENDS map on a reload).
    pub fn set_active_half(&mut self, half: u32) {
        self.active_half = half & 1;
    }
}

/// The XDP services of a config. `stats_id_of` gives the FRONTEND_STATS
/// slot of each (frontend name, bind address).
pub fn services_from_config(
    cfg: &Config,
    stats_id_of: impl Fn(&str, SocketAddr) -> Option<u32>,
) -> Result<Vec<L4Service>, Vec<ServiceError>> {
    let file = cfg.source.display().to_string();
    let mut services = Vec::new();
    let mut errors = Vec::new();
    let mut next_real = 0u32;
    for fe in cfg.frontends.iter() {
        let Some(xdp) = fe.xdp else { continue };
        let proto = if fe.mode == Mode::Udp {
            proto::UDP
        } else {
            proto::TCP
        };
        let Some(backend) = fe
            .default_backend
            .as_deref()
            .and_then(|b| cfg.backend(b))
            .filter(|b| !b.servers.is_empty())
        else {
            errors.push(ServiceError::NoServers {
                file: file.clone(),
                line: fe.line,
                service: fe.name.clone(),
            });
            continue;
        };
        let mut flags = FRONTEND_FLAG_XDP | FRONTEND_FLAG_ICMP_ECHO;
        if xdp.forward == XdpForward::Dsr {
            flags |= FRONTEND_FLAG_DSR;
        }
        match xdp.hash {
            XdpHash::FiveTuple => {}
            XdpHash::NoSrcPort => flags |= FRONTEND_FLAG_HASH_NO_SRC_PORT,
            XdpHash::DstPort => flags |= FRONTEND_FLAG_HASH_DST_PORT,
        }
        let vips: Vec<(SocketAddr, u32)> = fe
            .binds
            .iter()
            .filter_map(|b| stats_id_of(&fe.name, b.addr).map(|id| (b.addr, id)))
            .collect();
        let mut interfaces: Vec<String> = fe
            .binds
            .iter()
            .filter_map(|b| b.interface.clone())
            .collect();
        interfaces.sort();
        interfaces.dedup();
        let mut reals = Vec::new();
        for s in &backend.servers {
            let bad = |why: String| ServiceError::BadReal {
                file: file.clone(),
                line: s.line,
                service: fe.name.clone(),
                server: s.name.clone(),
                why,
            };
            if let Some(&(vip, _)) = vips.iter().find(|(v, _)| v.is_ipv4() != s.addr.is_ipv4()) {
                errors.push(bad(format!(
                    "address family differs from the VIP {vip}; use a real of the same family"
                )));
                continue;
            }
            if xdp.forward == XdpForward::Dsr
                && s.addr.port() != 0
                && vips.iter().any(|(v, _)| v.port() != s.addr.port())
            {
                errors.push(bad(format!(
                    "direct server return cannot change the port ({}); write the server without a port or with the VIP's",
                    s.addr.port()
                )));
                continue;
            }
            let local_addr = match local_addr_toward(s.addr.ip()) {
                Ok(a) => a,
                Err(e) => {
                    errors.push(bad(format!("no route to {}: {e}", s.addr.ip())));
                    continue;
                }
            };
            reals.push(L4Real {
                name: s.name.clone(),
                guid: s.guid.as_ref().map(|g| g.to_string()),
                addr: s.addr,
                weight: s.weight,
                up: true,
                id: next_real,
                local_addr,
            });
            next_real += 1;
        }
        services.push(L4Service {
            name: fe.name.clone(),
            guid: fe.guid.as_ref().map(|g| g.to_string()),
            vips,
            interfaces,
            proto,
            flags,
            table_size: xdp.maglev_table_size,
            strict: xdp.strict,
            reals,
            active_half: 0,
            slot: services.len() as u32,
        });
    }
    if next_real > MAX_REALS {
        errors.push(ServiceError::TooManyReals {
            count: next_real as usize,
        });
    }
    if errors.is_empty() {
        Ok(services)
    } else {
        Err(errors)
    }
}

/// The data-path config for these services. The hash seed comes from the
/// instance name, so every weir process of an instance (a reload) hashes
/// flows the same way.
pub fn global_config(
    instance: &str,
    services: &[L4Service],
    max_new_flows_per_sec: u32,
) -> GlobalConfig {
    let seed = instance.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    });
    let nat = services.iter().any(|s| s.flags & FRONTEND_FLAG_DSR == 0);
    GlobalConfig {
        hash_seed: seed,
        max_new_flows_per_sec,
        policy: if nat { POLICY_NAT_ACTIVE } else { 0 },
        _pad: 0,
    }
}

/// RINGS entries needed: two halves of the largest table per service.
pub fn rings_len(services: &[L4Service]) -> (u32, u32) {
    let stride = services.iter().map(|s| s.table_size).max().unwrap_or(0);
    (stride, stride * 2 * services.len() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_address_toward_loopback_is_loopback() {
        assert!(local_addr_toward("127.0.0.1".parse().unwrap())
            .unwrap()
            .is_loopback());
    }
}
