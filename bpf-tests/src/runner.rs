//! Runs L4 fixture suites through the real XDP program with
//! BPF_PROG_TEST_RUN, inside the fixture namespace (`topology.rs`), and
//! checks verdicts, output frames (exact bytes, and every checksum
//! recomputed from scratch), then the suite's counters. Mismatching cases
//! are named in the panic message and written to
//! `target/bpf-tests/<suite>-mismatch.pcap` (input, output, expected).

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use aya::programs::{TestRun, TestRunOptions};
use proxy_common::{family, FlowCounters, FrontendInfo, GlobalConfig, RealInfo};
use proxy_user::l4::{self, LoadOptions, XdpProgram};

use crate::{
    counters,
    fixtures::{L4Case, L4Output, L4Suite, ServiceSpec, Side, Step, RING_SIZE},
    netns::{self, Entered},
    packet::verify_checksums,
    topology::Topology,
};

/// The program loaded inside a fresh fixture namespace, the calling thread
/// inside that namespace and pinned to one CPU (conntrack is per CPU).
pub struct Harness {
    /// The program (field order: dropped first, then the thread leaves the
    /// namespace, then the namespace is deleted).
    pub program: XdpProgram,
    _entered: Entered,
    /// The namespace and its interfaces.
    pub topology: Topology,
    /// Active RINGS half of each service (by stats slot).
    halves: Vec<u32>,
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

/// `xdp_md` as BPF_PROG_TEST_RUN takes it: data 0, data_end = frame length,
/// no metadata, the ingress ifindex, queue 0, no egress.
pub fn xdp_md(len: usize, ifindex: u32) -> [u8; 24] {
    let mut md = [0u8; 24];
    md[4..8].copy_from_slice(&(len as u32).to_ne_bytes());
    md[12..16].copy_from_slice(&ifindex.to_ne_bytes());
    md
}

impl Harness {
    /// Creates the namespace, enters it, pins this thread to CPU 0 and
    /// loads a private (unpinned) copy of the program.
    pub fn new() -> Result<Self, String> {
        let topology = Topology::new()?;
        let entered = topology.ns.enter()?;
        netns::pin_thread_to_cpu(0)?;
        let object = crate::object();
        let program = XdpProgram::load(
            &object,
            &LoadOptions {
                instance: format!("fixtures-{}", std::process::id()),
                log_level: log::LevelFilter::Off,
                pin: false,
                max_entries: Vec::new(),
            },
        )
        .map_err(|e| format!("load the XDP program: {e:?}"))?;
        Ok(Self {
            program,
            _entered: entered,
            topology,
            halves: Vec::new(),
        })
    }

    /// Writes config, reals, tables and frontends for `suite`.
    pub fn provision(&mut self, suite: &L4Suite) -> Result<(), String> {
        self.halves = provision_program(&mut self.program, suite)?;
        Ok(())
    }

    /// Writes the frontends of `services` (active table halves kept).
    pub fn write_frontends(&mut self, services: &[ServiceSpec]) -> Result<(), String> {
        write_frontends(&mut self.program, services, &self.halves)
    }

    fn keep_reals(&mut self, suite: &L4Suite, keep: &[u32]) -> Result<(), String> {
        write_reals(&mut self.program, suite, keep)
    }

    fn set_table(&mut self, suite: &L4Suite, service: u32, reals: &[u32]) -> Result<(), String> {
        let half = self.halves[service as usize] ^ 1;
        self.program
            .write_ring(
                ring_base(service, half),
                &crate::fixtures::maglev_table(reals),
            )
            .map_err(|e| format!("ring of service {service}: {e}"))?;
        self.halves[service as usize] = half;
        self.write_frontends(&suite.services)
    }

    /// The ingress interface of frames entering on `side`.
    pub fn ifindex(&self, side: Side) -> u32 {
        match side {
            Side::Client => self.topology.cl_ifindex,
            Side::Real => self.topology.rs_ifindex,
        }
    }

    /// Runs one frame entering on `side`; returns (verdict, output frame).
    #[expect(
        clippy::field_reassign_with_default,
        reason = "TestRunOptions is non-exhaustive: no struct literal"
    )]
    pub fn run(&mut self, side: Side, input: &[u8]) -> Result<(u32, Vec<u8>), String> {
        let md = xdp_md(input.len(), self.ifindex(side));
        let mut out = vec![0u8; input.len() + 256];
        let mut opts = TestRunOptions::default();
        opts.data_in = Some(input);
        opts.data_out = Some(&mut out);
        opts.ctx_in = Some(&md);
        let result = self
            .program
            .xdp()
            .map_err(|e| e.to_string())?
            .test_run(opts)
            .map_err(|e| format!("BPF_PROG_TEST_RUN: {e}"))?;
        out.truncate(result.data_size_out as usize);
        Ok((result.return_value, out))
    }

    /// Runs one frame `repeat` times; returns the verdict and the kernel's
    /// average time per run.
    #[expect(
        clippy::field_reassign_with_default,
        reason = "TestRunOptions is non-exhaustive: no struct literal"
    )]
    pub fn run_repeat(
        &mut self,
        side: Side,
        input: &[u8],
        repeat: u32,
    ) -> Result<(u32, Duration), String> {
        let md = xdp_md(input.len(), self.ifindex(side));
        let mut opts = TestRunOptions::default();
        opts.data_in = Some(input);
        opts.ctx_in = Some(&md);
        opts.repeat = repeat;
        let result = self
            .program
            .xdp()
            .map_err(|e| e.to_string())?
            .test_run(opts)
            .map_err(|e| format!("BPF_PROG_TEST_RUN: {e}"))?;
        Ok((result.return_value, result.duration))
    }
}

/// Writes config, reals, Maglev tables (half 0) and frontends for `suite`
/// into `program`; returns the active half of each service.
pub fn provision_program(program: &mut XdpProgram, suite: &L4Suite) -> Result<Vec<u32>, String> {
    program
        .set_config(&GlobalConfig {
            hash_seed: crate::fixtures::HASH_SEED,
            max_new_flows_per_sec: 0,
            // As weir's userspace does (l4::control): the all-ports lookup is
            // skipped when no service uses port 0.
            policy: suite.policy
                | if suite.services.iter().any(|s| s.vip.port() == 0) {
                    0
                } else {
                    proxy_common::POLICY_NO_ALL_PORTS
                },
            _pad: 0,
        })
        .map_err(|e| format!("config: {e}"))?;
    let all: Vec<u32> = suite.reals.iter().map(|r| r.id).collect();
    write_reals(program, suite, &all)?;
    let halves = vec![0; suite.services.iter().map(|s| s.id + 1).max().unwrap_or(0) as usize];
    for svc in &suite.services {
        program
            .write_ring(
                ring_base(svc.id, 0),
                &crate::fixtures::maglev_table(&svc.reals),
            )
            .map_err(|e| format!("ring of service {}: {e}", svc.id))?;
    }
    write_frontends(program, &suite.services, &halves)?;
    Ok(halves)
}

fn write_frontends(
    program: &mut XdpProgram,
    services: &[ServiceSpec],
    halves: &[u32],
) -> Result<(), String> {
    let mut entries = Vec::new();
    for svc in services {
        let info = FrontendInfo {
            id: svc.id,
            flags: svc.flags,
            ring_base: ring_base(svc.id, halves[svc.id as usize]),
            ring_size: svc.ring_size,
        };
        entries.push((l4::frontend_key(svc.vip, svc.proto), info));
        // As userspace does: ICMP to the VIP looks up port 0 of its protocol.
        let icmp = if svc.vip.is_ipv4() { 1 } else { 58 };
        entries.push((
            l4::frontend_key(SocketAddr::new(svc.vip.ip(), 0), icmp),
            info,
        ));
    }
    program
        .set_frontends(&entries)
        .map_err(|e| format!("frontends: {e}"))
}

fn write_reals(program: &mut XdpProgram, suite: &L4Suite, keep: &[u32]) -> Result<(), String> {
    let reals: Vec<(u32, RealInfo)> = suite
        .reals
        .iter()
        .filter(|r| keep.contains(&r.id))
        .map(|r| {
            let (addr, fam) = addr_bytes(r.addr);
            let (local, _) = addr_bytes(r.local);
            (
                r.id,
                RealInfo {
                    addr,
                    local_addr: local,
                    port: r.port.to_be(),
                    family: fam,
                    _pad: 0,
                },
            )
        })
        .collect();
    let clear_to = suite.reals.iter().map(|r| r.id + 1).max().unwrap_or(0);
    program
        .set_reals(&reals, clear_to)
        .map_err(|e| format!("reals: {e}"))
}

/// RINGS index of a service's half (regions of 2 x RING_SIZE by stats slot).
fn ring_base(service: u32, half: u32) -> u32 {
    (service * 2 + half) * RING_SIZE
}

/// Where mismatch pcaps go: `<target>/bpf-tests/`.
fn pcap_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("bpf-tests")
}

fn check_case(case: &L4Case, verdict: u32, out: &[u8]) -> Vec<String> {
    let mut problems = Vec::new();
    if verdict != case.verdict as u32 {
        problems.push(format!("verdict {verdict}, expected {:?}", case.verdict));
    }
    match &case.output {
        L4Output::Unchanged => {
            if out != case.input.as_slice() {
                problems.push(format!(
                    "output differs from the input\n    got      {out:02x?}\n    expected {:02x?}",
                    case.input
                ));
            }
        }
        L4Output::Exact(expected) => {
            if out != expected.as_slice() {
                problems.push(format!(
                    "output differs\n    got      {out:02x?}\n    expected {expected:02x?}"
                ));
            }
            if let Err(e) = verify_checksums(out) {
                problems.push(format!("output checksums: {e}"));
            }
        }
        L4Output::Discarded => {}
        L4Output::Predicate(check) => {
            if let Err(e) = check(out) {
                problems.push(format!("output: {e}\n    got {out:02x?}"));
            }
        }
    }
    problems
}

/// Runs an L4 suite once in a fresh namespace and program; panics naming
/// every failing case and counter.
pub fn run_l4_suite(suite: &L4Suite) {
    let mut h = Harness::new().unwrap_or_else(|e| panic!("suite {}: setup: {e}", suite.name));
    h.provision(suite)
        .unwrap_or_else(|e| panic!("suite {}: provisioning: {e}", suite.name));
    let mut names = std::collections::HashSet::new();
    let mut failures = Vec::new();
    let mut pcap_frames = Vec::new();
    let mut verdicts = [0u64; 5];
    let mut services: std::collections::BTreeMap<u32, FlowCounters> = Default::default();
    let mut reals: std::collections::BTreeMap<u32, FlowCounters> = Default::default();
    for svc in &suite.services {
        services.insert(svc.id, FlowCounters::default());
    }
    for r in &suite.reals {
        reals.insert(r.id, FlowCounters::default());
    }
    for step in &suite.steps {
        let case = match step {
            Step::Packet(case) => case,
            Step::SetTable { service, reals } => {
                h.set_table(suite, *service, reals)
                    .unwrap_or_else(|e| panic!("suite {}: {e}", suite.name));
                continue;
            }
            Step::KeepReals(keep) => {
                h.keep_reals(suite, keep)
                    .unwrap_or_else(|e| panic!("suite {}: {e}", suite.name));
                continue;
            }
            Step::OnCpu(cpu) => {
                netns::pin_thread_to_cpu(*cpu)
                    .unwrap_or_else(|e| panic!("suite {}: {e}", suite.name));
                continue;
            }
            Step::ReplaceServices(services) => {
                h.write_frontends(services)
                    .unwrap_or_else(|e| panic!("suite {}: {e}", suite.name));
                continue;
            }
        };
        assert!(
            names.insert(case.name),
            "suite {}: duplicate case name {}",
            suite.name,
            case.name
        );
        verdicts[case.verdict as usize] += 1;
        if let Some(f) = case.flow {
            let bytes = case.input.len() as u64;
            let add = |c: &mut FlowCounters, new: bool| {
                c.packets += 1;
                c.bytes += bytes;
                c.new_flows += new as u64;
            };
            // NAT replies count packets and bytes per service, never a new flow.
            add(services.entry(f.service).or_default(), f.new);
            if let Some(r) = f.real {
                add(reals.entry(r).or_default(), f.new);
            }
        }
        match h.run(case.ingress, &case.input) {
            Ok((verdict, out)) => {
                let problems = check_case(case, verdict, &out);
                if !problems.is_empty() {
                    failures.push(format!("{}: {}", case.name, problems.join("\n  ")));
                    pcap_frames.push(case.input.clone());
                    pcap_frames.push(out);
                    if let L4Output::Exact(e) = &case.output {
                        pcap_frames.push(e.clone());
                    }
                }
            }
            Err(e) => failures.push(format!("{}: {e}", case.name)),
        }
    }
    if !pcap_frames.is_empty() {
        let path = pcap_dir().join(format!("{}-mismatch.pcap", suite.name));
        match crate::pcap::write(&path, &pcap_frames) {
            Ok(()) => failures.push(format!(
                "mismatching frames (input, output, expected) written to {}",
                path.display()
            )),
            Err(e) => failures.push(format!("could not write {}: {e}", path.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "suite {}:\n{}",
        suite.name,
        failures.join("\n")
    );

    // Counters after the suite.
    let l4 = counters::l4(&mut h.program);
    assert_eq!(
        l4, suite.expected,
        "suite {}: L4 counters (left: program, right: expected)",
        suite.name
    );
    for (id, want) in &services {
        let got = counters::service(&mut h.program, *id);
        assert_eq!(
            &got, want,
            "suite {}: service {id} flow counters",
            suite.name
        );
    }
    for (id, want) in &reals {
        let got = counters::real(&mut h.program, *id);
        assert_eq!(&got, want, "suite {}: real {id} flow counters", suite.name);
    }
    let snap = h.program.snapshot(&[]).expect("read counters");
    let got: Vec<u64> = snap.verdicts.iter().map(|c| c.packets).collect();
    assert_eq!(got, verdicts, "suite {}: verdict counters", suite.name);
}
