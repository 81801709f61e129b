//! `weir l4 show` and `weir l4 which`: read the pinned maps of a running
//! (or crashed) instance, like Katran's simulator, without touching them.
//!
//! Names come from the config; everything else (tables, reals, counters,
//! conntrack) from `/sys/fs/bpf/weir/<instance>/`.

use std::{
    fmt::Write as _,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray};
use proxy_common::{
    flow_hash, map_names, proto, FlowCounters, FlowKey, FlowState, FrontendInfo, FrontendKey,
    GlobalConfig, RealInfo, FRONTEND_FLAG_DSR, FRONTEND_FLAG_HASH_DST_PORT,
    FRONTEND_FLAG_HASH_NO_SRC_PORT, NO_REAL,
};

use super::{frontend_key, loader::PIN_ROOT, service};
use crate::config::Config;

fn open(dir: &Path, name: &str) -> Result<Map> {
    let path = dir.join(name);
    let data = MapData::from_pin(&path).with_context(|| {
        format!(
            "cannot open {} (is weir running with this config, as root?)",
            path.display()
        )
    })?;
    Map::from_map_data(data).with_context(|| format!("{}: unexpected map type", path.display()))
}

fn pin_dir(cfg: &Config) -> PathBuf {
    Path::new(PIN_ROOT).join(&cfg.global.instance)
}

fn ip_of(bytes: &[u8; 16], fam: u8) -> IpAddr {
    if fam == proxy_common::family::V4 {
        IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        IpAddr::from(*bytes)
    }
}

fn sum_flow(map: &PerCpuArray<&MapData, FlowCounters>, i: u32) -> FlowCounters {
    map.get(&i, 0)
        .map(|v| {
            v.iter().fold(FlowCounters::default(), |a, c| FlowCounters {
                packets: a.packets + c.packets,
                bytes: a.bytes + c.bytes,
                new_flows: a.new_flows + c.new_flows,
            })
        })
        .unwrap_or_default()
}

/// `weir l4 show`: services, reals, weights, health (from the table fill),
/// table fill and counters.
pub fn show(cfg: &Config) -> Result<String> {
    let services = service::services_from_config(cfg, |_, _| Some(0)).map_err(|errs| {
        anyhow::anyhow!(
            "{}",
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })?;
    if services.is_empty() {
        bail!(
            "{}: no XDP service (a `mode tcp|udp` frontend with `xdp`)",
            cfg.source.display()
        );
    }
    let dir = pin_dir(cfg);
    let fe_map = open(&dir, map_names::FRONTENDS)?;
    let frontends: HashMap<_, FrontendKey, FrontendInfo> = HashMap::try_from(&fe_map)?;
    let rings_map = open(&dir, map_names::RINGS)?;
    let rings: Array<_, u32> = Array::try_from(&rings_map)?;
    let reals_map = open(&dir, map_names::REALS)?;
    let reals: Array<_, RealInfo> = Array::try_from(&reals_map)?;
    let svc_stats_map = open(&dir, map_names::SERVICE_STATS)?;
    let svc_stats: PerCpuArray<_, FlowCounters> = PerCpuArray::try_from(&svc_stats_map)?;
    let real_stats_map = open(&dir, map_names::REAL_STATS)?;
    let real_stats: PerCpuArray<_, FlowCounters> = PerCpuArray::try_from(&real_stats_map)?;
    let mut out = String::new();
    for svc in &services {
        let Some(&(vip, _)) = svc.vips.first() else {
            continue;
        };
        let info = frontends
            .get(&frontend_key(vip, svc.proto), 0)
            .with_context(|| {
                format!(
                    "service '{}' ({vip}) is not in the pinned FRONTENDS map",
                    svc.name
                )
            })?;
        let mut fill = vec![0u32; svc.reals.len()];
        let mut empty = 0u32;
        for i in 0..info.ring_size {
            match rings.get(&(info.ring_base + i), 0) {
                Ok(NO_REAL) | Err(_) => empty += 1,
                Ok(real) => {
                    if let Some(pos) = svc.reals.iter().position(|r| r.id == real) {
                        fill[pos] += 1;
                    }
                }
            }
        }
        let stats = sum_flow(&svc_stats, info.id);
        let _ = writeln!(
            out,
            "service {} {} {} ({}, hash {}) table {} slots, {} empty: {} packets, {} bytes, {} new flows",
            svc.name,
            if svc.proto == proto::UDP { "udp" } else { "tcp" },
            svc.vips.iter().map(|(v, _)| v.to_string()).collect::<Vec<_>>().join(","),
            if info.flags & FRONTEND_FLAG_DSR != 0 { "dsr" } else { "nat" },
            if info.flags & FRONTEND_FLAG_HASH_DST_PORT != 0 {
                "dst-port"
            } else if info.flags & FRONTEND_FLAG_HASH_NO_SRC_PORT != 0 {
                "no-src-port"
            } else {
                "5tuple"
            },
            info.ring_size,
            empty,
            stats.packets,
            stats.bytes,
            stats.new_flows,
        );
        let _ = writeln!(
            out,
            "  {:<12} {:<28} {:>6} {:>6} {:>8} {:>6} {:>12} {:>14} {:>10}",
            "real", "address", "weight", "state", "slots", "fill%", "packets", "bytes", "new_flows"
        );
        for (r, slots) in svc.reals.iter().zip(&fill) {
            let in_map = reals.get(&r.id, 0).map(|x| x.family != 0).unwrap_or(false);
            let state = if r.weight == 0 {
                "drain"
            } else if *slots > 0 && in_map {
                "up"
            } else {
                "down"
            };
            let c = sum_flow(&real_stats, r.id);
            let _ = writeln!(
                out,
                "  {:<12} {:<28} {:>6} {:>6} {:>8} {:>5.1}% {:>12} {:>14} {:>10}",
                r.name,
                r.addr.to_string(),
                r.weight,
                state,
                slots,
                100.0 * *slots as f64 / info.ring_size.max(1) as f64,
                c.packets,
                c.bytes,
                c.new_flows
            );
        }
    }
    Ok(out)
}

/// `weir l4 which PROTO SRC:PORT DST:PORT`: the real a flow goes to.
pub fn which(cfg: &Config, l4_proto: &str, src: SocketAddr, dst: SocketAddr) -> Result<String> {
    let p = match l4_proto.to_ascii_lowercase().as_str() {
        "tcp" => proto::TCP,
        "udp" => proto::UDP,
        other => bail!("protocol '{other}': use tcp or udp"),
    };
    if src.is_ipv4() != dst.is_ipv4() {
        bail!("{src} and {dst} are of different address families");
    }
    let dir = pin_dir(cfg);
    let fe_map = open(&dir, map_names::FRONTENDS)?;
    let frontends: HashMap<_, FrontendKey, FrontendInfo> = HashMap::try_from(&fe_map)?;
    let info = frontends
        .get(&frontend_key(dst, p), 0)
        .or_else(|_| frontends.get(&frontend_key(SocketAddr::new(dst.ip(), 0), p), 0))
        .map_err(|_| {
            anyhow::anyhow!(
                "{l4_proto} {dst} is not an XDP service of instance '{}'",
                cfg.global.instance
            )
        })?;
    if info.ring_size == 0 {
        bail!("{dst} is a counted frontend, not an XDP service: the kernel stack serves it");
    }
    let key = FlowKey {
        src: frontend_key(src, p).addr,
        dst: frontend_key(dst, p).addr,
        sport: src.port().to_be(),
        dport: dst.port().to_be(),
        proto: p,
        family: frontend_key(dst, p).family,
        _pad: [0; 2],
    };
    let config_map = open(&dir, map_names::CONFIG)?;
    let config: Array<_, GlobalConfig> = Array::try_from(&config_map)?;
    let seed = config.get(&0, 0).map(|c| c.hash_seed).unwrap_or(0);
    let hash = flow_hash(&key, info.flags, seed);
    let slot = info.ring_base + hash % info.ring_size;
    let rings_map = open(&dir, map_names::RINGS)?;
    let rings: Array<_, u32> = Array::try_from(&rings_map)?;
    let real = rings.get(&slot, 0).context("reading the Maglev table")?;
    let reals_map = open(&dir, map_names::REALS)?;
    let reals: Array<_, RealInfo> = Array::try_from(&reals_map)?;
    let name_of = |id: u32| -> String {
        let services = service::services_from_config(cfg, |_, _| Some(0)).unwrap_or_default();
        services
            .iter()
            .flat_map(|s| s.reals.iter())
            .find(|r| r.id == id)
            .map(|r| r.name.clone())
            .unwrap_or_else(|| format!("#{id}"))
    };
    let describe = |id: u32| -> String {
        match reals.get(&id, 0) {
            Ok(r) if r.family != 0 => {
                let port = u16::from_be(r.port);
                let port = if port == 0 { dst.port() } else { port };
                format!(
                    "{} {}",
                    name_of(id),
                    SocketAddr::new(ip_of(&r.addr, r.family), port)
                )
            }
            _ => format!("{} (removed)", name_of(id)),
        }
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{l4_proto} {src} -> {dst}: flow hash {hash:#010x}, Maglev slot {} of {}",
        hash % info.ring_size,
        info.ring_size
    );
    if real == NO_REAL {
        let _ = writeln!(out, "  new flow -> no real (every real is down): dropped");
    } else {
        let _ = writeln!(out, "  new flow -> {}", describe(real));
    }
    let ct_map = open(&dir, map_names::CONNTRACK)?;
    let ct: HashMap<_, FlowKey, FlowState> = HashMap::try_from(&ct_map)?;
    match ct.get(&key, 0) {
        Ok(state) => {
            let _ = writeln!(out, "  tracked (conntrack): {}", describe(state.real));
        }
        Err(_) => {
            let _ = writeln!(
                out,
                "  not tracked: the next packet is balanced as a new flow"
            );
        }
    }
    Ok(out)
}
