//! The L4 benchmark (`cargo xtask bench-l4`, binary `bench-l4`).
//!
//! Part 1, per-packet cost: the real program under BPF_PROG_TEST_RUN in
//! the fixture namespace, for the new-flow and conntrack-hit paths, IPv4
//! and IPv6, NAT and DSR.
//!
//! Why not `repeat`: the kernel runs the program `repeat` times on the
//! same buffer without restoring it (net/bpf/test_run.c, bpf_test_run), so
//! after the first run a NAT-ed or encapsulated frame is no longer
//! addressed to the VIP and the other runs measure the pass path (checked
//! by `repeat_measures_the_rewritten_frame_after_the_first_run` in
//! tests/l4_fixtures.rs). So each path is timed with the kernel's BPF
//! statistics (BPF_ENABLE_STATS: run time and run count of the program
//! itself, no syscall or test-run loop in it) over thousands of single
//! runs: one per distinct flow for new flows, then the same flows again
//! (conntrack hits, cold cache lines), then one flow many times
//! (conntrack hits, warm). `repeat` is valid for frames the program does
//! not change: the floor (a bare XDP_PASS program) and a packet that is
//! not for a VIP are measured that way.

use std::time::Duration;

use proxy_common::{proto, FRONTEND_FLAG_DSR, FRONTEND_FLAG_XDP, POLICY_NAT_ACTIVE};

use crate::{
    fixtures::{L4Suite, RealSpec, ServiceSpec, Side, RING_SIZE},
    packet::Packet,
    rawbpf::RawProgram,
    runner::Harness,
    topology::{CLIENT_ROUTER_MAC, CL_MAC, RS_ADDR4, RS_ADDR6},
};

/// Distinct flows per path.
pub const FLOWS: u32 = 8192;
/// Repeat count of the repeated measurements.
pub const REPEAT: u32 = 1_000_000;

/// One measured path (average program time per run, from BPF stats).
#[derive(Debug, Clone)]
pub struct PathCost {
    /// "v4 NAT", ...
    pub label: String,
    /// Runs that created a flow (one run per distinct flow).
    pub new_flow: Duration,
    /// Runs that hit conntrack, the same distinct flows again.
    pub hit_many: Duration,
    /// Runs that hit conntrack, one flow again and again (warm).
    pub hit_one: Duration,
}

/// Part 1's results.
#[derive(Debug, Clone)]
pub struct CostReport {
    /// Bare XDP_PASS, `REPEAT` runs (the test-run floor).
    pub floor_repeat: Duration,
    /// weir_xdp on a packet not for a VIP, `REPEAT` runs (frame unchanged).
    pub not_vip_repeat: Duration,
    /// The paths.
    pub paths: Vec<PathCost>,
}

/// Average program time per run over what `f` runs, from BPF stats.
fn timed(
    h: &mut Harness,
    f: impl FnOnce(&mut Harness) -> Result<(), String>,
) -> Result<Duration, String> {
    let info = |h: &mut Harness| -> Result<(Duration, u64), String> {
        let i = h
            .program
            .xdp()
            .map_err(|e| e.to_string())?
            .info()
            .map_err(|e| e.to_string())?;
        Ok((i.run_time(), i.run_count()))
    };
    let (t0, n0) = info(h)?;
    f(h)?;
    let (t1, n1) = info(h)?;
    let runs = n1.saturating_sub(n0).max(1);
    Ok((t1.saturating_sub(t0)) / runs as u32)
}

fn bench_suite() -> L4Suite {
    let real = |id, addr: &str, local: &str| RealSpec {
        id,
        addr: addr.parse().expect("real"),
        local: local.parse().expect("local"),
        port: 0,
    };
    let svc = |id, vip: &str, flags, reals| ServiceSpec {
        id,
        vip: vip.parse().expect("vip"),
        proto: proto::UDP,
        flags,
        reals,
        ring_size: RING_SIZE,
    };
    let dsr = FRONTEND_FLAG_XDP | FRONTEND_FLAG_DSR;
    L4Suite {
        name: "bench",
        reals: vec![
            real(0, "198.18.1.10", RS_ADDR4),
            real(1, "198.18.1.11", RS_ADDR4),
            real(2, "fd00:19::10", RS_ADDR6),
            real(3, "fd00:19::11", RS_ADDR6),
        ],
        services: vec![
            svc(0, "198.18.100.1:9", FRONTEND_FLAG_XDP, vec![0, 1]),
            svc(1, "[fd00:100::1]:9", FRONTEND_FLAG_XDP, vec![2, 3]),
            svc(2, "198.18.100.11:9", dsr, vec![0, 1]),
            svc(3, "[fd00:100::11]:9", dsr, vec![2, 3]),
        ],
        policy: POLICY_NAT_ACTIVE,
        steps: Vec::new(),
        expected: Default::default(),
    }
}

/// A 64-byte UDP frame (14 + 20 + 8 + 22 for IPv4; IPv6 adds 20).
fn frame(client: &str, port: u16, vip: &str) -> Vec<u8> {
    Packet::udp(client, port, vip, 9)
        .payload(&[0x5a; 22])
        .macs(CLIENT_ROUTER_MAC, CL_MAC)
        .build()
}

/// Runs part 1. Needs root.
pub fn cost() -> Result<CostReport, String> {
    let floor_prog = RawProgram::pass().map_err(|e| format!("load XDP_PASS: {e}"))?;
    let probe = frame("198.18.64.2", 1000, "198.18.100.1");
    let (_, floor_repeat) = floor_prog
        .test_run(&probe, None, REPEAT, 0, 0)
        .map_err(|e| e.to_string())?;

    let suite = bench_suite();
    let mut h = Harness::new()?;
    h.provision(&suite)?;
    let not_vip = frame("198.18.64.2", 1000, "198.18.100.200");
    let (verdict, not_vip_repeat) = h.run_repeat(Side::Client, &not_vip, REPEAT)?;
    if verdict != 2 {
        return Err(format!(
            "not-a-VIP packet: verdict {verdict}, expected XDP_PASS"
        ));
    }
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .map_err(|e| format!("BPF_ENABLE_STATS: {e}"))?;
    let paths = [
        ("v4 NAT", "198.18.64.", "198.18.100.1"),
        ("v6 NAT", "fd00:64::", "fd00:100::1"),
        ("v4 DSR", "198.18.64.", "198.18.100.11"),
        ("v6 DSR", "fd00:64::", "fd00:100::11"),
    ];
    let mut out = Vec::new();
    for (label, client_prefix, vip) in paths {
        let frames: Vec<Vec<u8>> = (0..FLOWS)
            .map(|i| {
                let client = if client_prefix.contains(':') {
                    format!("{client_prefix}{:x}", 2 + i / 4096)
                } else {
                    format!("{client_prefix}{}", 2 + i / 4096)
                };
                frame(&client, 1024 + (i % 4096) as u16 * 8, vip)
            })
            .collect();
        let run_all = |h: &mut Harness| -> Result<(), String> {
            for f in &frames {
                let (verdict, _) = h.run_repeat(Side::Client, f, 1)?;
                if verdict != 4 {
                    return Err(format!("{label}: verdict {verdict}, expected XDP_REDIRECT"));
                }
            }
            Ok(())
        };
        let new_flow = timed(&mut h, run_all)?;
        let hit_many = timed(&mut h, run_all)?;
        let hit_one = timed(&mut h, |h| {
            for _ in 0..FLOWS {
                h.run_repeat(Side::Client, &frames[0], 1)?;
            }
            Ok(())
        })?;
        out.push(PathCost {
            label: label.to_string(),
            new_flow,
            hit_many,
            hit_one,
        });
    }
    let l4 = crate::counters::l4(&mut h.program);
    let expected_misses = 4 * FLOWS as u64;
    if l4.lru_misses != expected_misses {
        return Err(format!(
            "expected {expected_misses} new flows, the program counted {} (conntrack full?)",
            l4.lru_misses
        ));
    }
    Ok(CostReport {
        floor_repeat,
        not_vip_repeat,
        paths: out,
    })
}

fn ns(d: Duration) -> String {
    format!("{}", d.as_nanos())
}

impl CostReport {
    /// The report as Markdown table rows.
    pub fn table(&self) -> String {
        let mut s = String::new();
        s.push_str("| per-packet cost (ns, BPF_PROG_TEST_RUN) | v4 NAT | v6 NAT | v4 DSR | v6 DSR | target |\n");
        s.push_str("|---|---|---|---|---|---|\n");
        let row = |name: &str, f: &dyn Fn(&PathCost) -> Duration, target: &str| {
            let cells: Vec<String> = self.paths.iter().map(|p| ns(f(p))).collect();
            format!("| {name} | {} | {target} |\n", cells.join(" | "))
        };
        s.push_str(&row(
            &format!("new flow ({FLOWS} distinct flows)"),
            &|p| p.new_flow,
            "< 150",
        ));
        s.push_str(&row(
            &format!("conntrack hit ({FLOWS} distinct flows again)"),
            &|p| p.hit_many,
            "< 60",
        ));
        s.push_str(&row(
            &format!("conntrack hit (one flow, {FLOWS} runs)"),
            &|p| p.hit_one,
            "< 60",
        ));
        s.push_str(&format!(
            "| not for a VIP, passed (repeat {REPEAT}, test-run time) | {} | | | | |\n",
            ns(self.not_vip_repeat)
        ));
        s.push_str(&format!(
            "| floor: bare XDP_PASS (repeat {REPEAT}, test-run time) | {} | | | | |\n",
            ns(self.floor_repeat)
        ));
        s
    }
}
