//! Reading the L4 counters of a loaded program, summed over CPUs.

use aya::maps::PerCpuArray;
use proxy_common::{map_names, FlowCounters, L4Counters};
use proxy_user::l4::XdpProgram;

/// Adds every field of `b` to `a` (the list is the whole struct: a field
/// added to `L4Counters` without being listed here fails to compile below).
fn add_l4(a: &mut L4Counters, b: &L4Counters) {
    let L4Counters {
        lru_hits,
        lru_misses,
        flood_guarded,
        nat_forward,
        nat_reverse,
        dsr_encap,
        icmp_echo_replies,
        icmp_too_big,
        ip_options,
        ipv6_ext_headers,
        drop_no_real,
        drop_no_route,
        drop_nat_ports,
        drop_encap,
        drop_policy,
        pass_no_neigh,
        icmp_too_big_sent,
        drop_too_big,
    } = *b;
    a.lru_hits += lru_hits;
    a.lru_misses += lru_misses;
    a.flood_guarded += flood_guarded;
    a.nat_forward += nat_forward;
    a.nat_reverse += nat_reverse;
    a.dsr_encap += dsr_encap;
    a.icmp_echo_replies += icmp_echo_replies;
    a.icmp_too_big += icmp_too_big;
    a.ip_options += ip_options;
    a.ipv6_ext_headers += ipv6_ext_headers;
    a.drop_no_real += drop_no_real;
    a.drop_no_route += drop_no_route;
    a.drop_nat_ports += drop_nat_ports;
    a.icmp_too_big_sent += icmp_too_big_sent;
    a.drop_too_big += drop_too_big;
    a.drop_encap += drop_encap;
    a.drop_policy += drop_policy;
    a.pass_no_neigh += pass_no_neigh;
}

/// The L4 counters, summed over CPUs.
pub fn l4(program: &mut XdpProgram) -> L4Counters {
    let map = program
        .ebpf_mut()
        .map(map_names::L4_STATS)
        .expect("L4 stats map");
    let array: PerCpuArray<_, L4Counters> = PerCpuArray::try_from(map).expect("per-CPU array");
    let mut total = L4Counters::default();
    for c in array.get(&0, 0).expect("read L4 stats").iter() {
        add_l4(&mut total, c);
    }
    total
}

/// Flow counters of slot `id` of a per-CPU FlowCounters map, summed over CPUs.
pub fn flows(program: &mut XdpProgram, map_name: &'static str, id: u32) -> FlowCounters {
    let map = program.ebpf_mut().map(map_name).expect("flow stats map");
    let array: PerCpuArray<_, FlowCounters> = PerCpuArray::try_from(map).expect("per-CPU array");
    array
        .get(&id, 0)
        .expect("read flow stats")
        .iter()
        .fold(FlowCounters::default(), |acc, c| FlowCounters {
            packets: acc.packets + c.packets,
            bytes: acc.bytes + c.bytes,
            new_flows: acc.new_flows + c.new_flows,
        })
}

/// Per-service flow counters (SERVICE_STATS).
pub fn service(program: &mut XdpProgram, id: u32) -> FlowCounters {
    flows(program, map_names::SERVICE_STATS, id)
}

/// Per-real flow counters (REAL_STATS).
pub fn real(program: &mut XdpProgram, id: u32) -> FlowCounters {
    flows(program, map_names::REAL_STATS, id)
}

/// Packets `weir_decap` decapsulated (DECAP_STATS), summed over CPUs.
pub fn decap_packets(program: &mut XdpProgram) -> u64 {
    let map = program
        .ebpf_mut()
        .map(map_names::DECAP_STATS)
        .expect("decap stats map");
    let array: PerCpuArray<_, proxy_common::TrafficCounters> =
        PerCpuArray::try_from(map).expect("per-CPU array");
    array
        .get(&0, 0)
        .expect("read decap stats")
        .iter()
        .map(|c| c.packets)
        .sum()
}
