//! Typed access to the XDP program's maps. Map names come from
//! `proxy_common::map_names`; nothing here types a map name by hand.

use std::net::SocketAddr;

use aya::maps::{HashMap, MapData, PerCpuArray};
use proxy_common::{
    family, map_names, verdict, FlowCounters, FrontendInfo, FrontendKey, PacketCounters,
    TrafficCounters,
};

use super::loader::L4Error;

/// The FRONTENDS key of a VIP, with address and port in network byte order.
pub fn frontend_key(addr: SocketAddr, proto: u8) -> FrontendKey {
    let mut key = FrontendKey {
        port: addr.port().to_be(),
        proto,
        ..FrontendKey::default()
    };
    match addr {
        SocketAddr::V4(a) => {
            key.family = family::V4;
            key.addr[..4].copy_from_slice(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            key.family = family::V6;
            key.addr = a.ip().octets();
        }
    }
    key
}

/// Sums of every per-CPU counter of the program at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Classification counters.
    pub packets: PacketCounters,
    /// Per verdict, indexed by `proxy_common::verdict`.
    pub verdicts: [TrafficCounters; verdict::COUNT as usize],
    /// Per frontend stats slot (only the slots in use are read).
    pub frontends: Vec<(u32, TrafficCounters)>,
}

/// Wraps a map error with the map's name.
pub fn map_error(name: &'static str) -> impl Fn(aya::maps::MapError) -> L4Error {
    move |source| L4Error::Map {
        name,
        source: Box::new(source),
    }
}

/// Replaces the frontend table with `entries`: stale keys are removed, the
/// others inserted or updated, so a running program never sees an empty table.
pub fn write_frontends(
    map: &mut HashMap<&mut MapData, FrontendKey, FrontendInfo>,
    entries: &[(FrontendKey, FrontendInfo)],
) -> Result<(), L4Error> {
    // The caller (XdpProgram::set_frontends) checked the count against MAX_FRONTENDS.
    let err = map_error(map_names::FRONTENDS);
    let stale: Vec<FrontendKey> = map
        .keys()
        .filter_map(Result::ok)
        .filter(|k| !entries.iter().any(|(e, _)| e == k))
        .collect();
    for key in stale {
        map.remove(&key).map_err(&err)?;
    }
    for (key, info) in entries {
        map.insert(key, info, 0).map_err(&err)?;
    }
    Ok(())
}

fn sum_traffic(values: &[TrafficCounters]) -> TrafficCounters {
    values
        .iter()
        .fold(TrafficCounters::default(), |acc, v| TrafficCounters {
            packets: acc.packets + v.packets,
            bytes: acc.bytes + v.bytes,
        })
}

/// Sums the per-CPU slot `index` of a traffic counter array.
pub fn read_traffic(
    map: &PerCpuArray<&MapData, TrafficCounters>,
    index: u32,
) -> Result<TrafficCounters, aya::maps::MapError> {
    Ok(sum_traffic(&map.get(&index, 0)?))
}

/// Sums the classification counters over CPUs.
pub fn read_packet_counters(
    map: &PerCpuArray<&MapData, PacketCounters>,
) -> Result<PacketCounters, aya::maps::MapError> {
    let per_cpu = map.get(&0, 0)?;
    let mut total = PacketCounters::default();
    for c in per_cpu.iter() {
        total.rx_packets += c.rx_packets;
        total.rx_bytes += c.rx_bytes;
        total.matched += c.matched;
        total.not_matched += c.not_matched;
        total.non_ip += c.non_ip;
        total.vlan_tagged += c.vlan_tagged;
        total.ip_fragments += c.ip_fragments;
        total.malformed_ethernet += c.malformed_ethernet;
        total.malformed_ip += c.malformed_ip;
        total.malformed_l4 += c.malformed_l4;
    }
    Ok(total)
}

/// Reads every counter of the program; `frontend_ids` are the stats slots in use.
pub fn snapshot(ebpf: &aya::Ebpf, frontend_ids: &[u32]) -> Result<CounterSnapshot, L4Error> {
    let get = |name: &'static str| ebpf.map(name).ok_or(L4Error::MissingMap { name });
    let pkt: PerCpuArray<_, PacketCounters> = PerCpuArray::try_from(get(map_names::PACKET_STATS)?)
        .map_err(map_error(map_names::PACKET_STATS))?;
    let verdicts_map: PerCpuArray<_, TrafficCounters> =
        PerCpuArray::try_from(get(map_names::VERDICT_STATS)?)
            .map_err(map_error(map_names::VERDICT_STATS))?;
    let fe_map: PerCpuArray<_, TrafficCounters> =
        PerCpuArray::try_from(get(map_names::FRONTEND_STATS)?)
            .map_err(map_error(map_names::FRONTEND_STATS))?;
    let mut snap = CounterSnapshot {
        packets: read_packet_counters(&pkt).map_err(map_error(map_names::PACKET_STATS))?,
        ..CounterSnapshot::default()
    };
    for (i, slot) in snap.verdicts.iter_mut().enumerate() {
        *slot =
            read_traffic(&verdicts_map, i as u32).map_err(map_error(map_names::VERDICT_STATS))?;
    }
    for &id in frontend_ids {
        snap.frontends.push((
            id,
            read_traffic(&fe_map, id).map_err(map_error(map_names::FRONTEND_STATS))?,
        ));
    }
    Ok(snap)
}

/// Reads every slot of a per-CPU [`FlowCounters`] array, summed over CPUs,
/// with `BPF_MAP_LOOKUP_BATCH`: one syscall per few thousand slots instead of
/// one per slot (the stats sync reads whole maps every second).
pub fn read_flow_counters_batch(
    map: &MapData,
    len: u32,
    cpus: usize,
) -> std::io::Result<Vec<FlowCounters>> {
    use std::os::fd::{AsFd, AsRawFd};
    /// BPF_MAP_LOOKUP_BATCH from include/uapi/linux/bpf.h.
    const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
    /// The `batch` member of `union bpf_attr`.
    #[repr(C)]
    #[derive(Default)]
    struct BatchAttr {
        in_batch: u64,
        out_batch: u64,
        keys: u64,
        values: u64,
        count: u32,
        map_fd: u32,
        elem_flags: u64,
        flags: u64,
        // bpf_attr is larger; the kernel wants the rest zeroed.
        _rest: [u64; 8],
    }
    const CHUNK: u32 = 1024;
    // Per-CPU values are rounded up to 8 bytes per CPU (FlowCounters already is).
    let stride = std::mem::size_of::<FlowCounters>() * cpus;
    let mut keys = vec![0u32; CHUNK as usize];
    let mut values = vec![0u8; stride * CHUNK as usize];
    let mut out = Vec::with_capacity(len as usize);
    let fd = map.fd().as_fd().as_raw_fd() as u32;
    let mut in_batch: u32 = 0;
    let mut out_batch: u32 = 0;
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                &in_batch as *const u32 as u64
            },
            out_batch: &mut out_batch as *mut u32 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: CHUNK,
            map_fd: fd,
            ..BatchAttr::default()
        };
        // SAFETY: every pointer in attr refers to a live buffer of the size
        // the kernel is told (count keys, count * stride value bytes).
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &mut attr as *mut BatchAttr,
                std::mem::size_of::<BatchAttr>() as u32,
            )
        };
        let err = (rc < 0).then(std::io::Error::last_os_error);
        let done = matches!(&err, Some(e) if e.raw_os_error() == Some(libc::ENOENT));
        if let Some(e) = err.filter(|_| !done) {
            return Err(e);
        }
        for i in 0..attr.count as usize {
            let cell = &values[i * stride..(i + 1) * stride];
            let mut sum = FlowCounters::default();
            for cpu in cell.chunks_exact(std::mem::size_of::<FlowCounters>()) {
                // SAFETY: FlowCounters is plain integers; the chunk is its size.
                let v: FlowCounters = unsafe { std::ptr::read_unaligned(cpu.as_ptr().cast()) };
                sum.packets += v.packets;
                sum.bytes += v.bytes;
                sum.new_flows += v.new_flows;
            }
            out.push(sum);
        }
        if done || out.len() >= len as usize {
            break;
        }
        in_batch = out_batch;
        first = false;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frontend_key_stores_ipv4_address_and_port_in_network_order() {
        let key = frontend_key("198.18.0.1:8080".parse().unwrap(), proxy_common::proto::TCP);
        assert_eq!(&key.addr[..4], &[198, 18, 0, 1]);
        assert_eq!(&key.addr[4..], &[0u8; 12]);
        assert_eq!(key.port.to_ne_bytes(), 8080u16.to_be_bytes());
        assert_eq!(key.family, family::V4);
    }

    #[test]
    fn frontend_key_stores_all_sixteen_ipv6_bytes() {
        let key = frontend_key("[fd00::1]:53".parse().unwrap(), proxy_common::proto::UDP);
        assert_eq!(key.addr[0], 0xfd);
        assert_eq!(key.addr[15], 1);
        assert_eq!(key.family, family::V6);
        assert_eq!(key.proto, 17);
    }
}
