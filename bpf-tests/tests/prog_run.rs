//! Drives the real XDP program with BPF_PROG_TEST_RUN: every fixture case's
//! verdict and output packet, then the counter totals of the suite.

use aya::programs::{TestRun, TestRunOptions};
use bpf_tests::fixtures::{self, Output, Suite};
use proxy_common::FrontendInfo;
use proxy_user::l4::{self, LoadOptions, XdpProgram};

/// Loads a private copy of the program (maps not pinned) provisioned for `suite`.
fn load_for(suite: &Suite) -> XdpProgram {
    let object = bpf_tests::object();
    let mut program = XdpProgram::load(
        &object,
        &LoadOptions {
            instance: format!("test-{}", std::process::id()),
            log_level: log::LevelFilter::Off,
            pin: false,
            max_entries: Vec::new(),
        },
    )
    .expect("load the XDP program");
    let table: Vec<_> = suite
        .frontends
        .iter()
        .enumerate()
        .map(|(id, f)| {
            (
                l4::frontend_key(f.addr, f.proto),
                FrontendInfo {
                    id: id as u32,
                    ..FrontendInfo::default()
                },
            )
        })
        .collect();
    program
        .set_frontends(&table)
        .expect("write the frontend table");
    program
}

/// Runs one frame through the program; returns (verdict, output frame).
#[expect(
    clippy::field_reassign_with_default,
    reason = "TestRunOptions is non-exhaustive: no struct literal"
)]
fn run_once(program: &mut XdpProgram, input: &[u8]) -> std::io::Result<(u32, Vec<u8>)> {
    let mut out = vec![0u8; input.len() + 256];
    let mut opts = TestRunOptions::default();
    opts.data_in = Some(input);
    opts.data_out = Some(&mut out);
    let result = program
        .xdp()
        .expect("program")
        .test_run(opts)
        .map_err(std::io::Error::other)?;
    out.truncate(result.data_size_out as usize);
    Ok((result.return_value, out))
}

fn run_suite(suite: Suite) {
    let mut program = load_for(&suite);
    let mut failures = Vec::new();
    for case in &suite.cases {
        let (verdict, out) = match run_once(&mut program, &case.input) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{}: BPF_PROG_TEST_RUN failed: {e}", case.name));
                continue;
            }
        };
        if verdict != case.verdict as u32 {
            failures.push(format!(
                "{}: verdict {verdict}, expected {:?}",
                case.name, case.verdict
            ));
        }
        let expected_out = match &case.output {
            Output::Unchanged => &case.input,
            Output::Exact(bytes) => bytes,
        };
        if &out != expected_out {
            failures.push(format!(
                "{}: output differs\n  got      {:02x?}\n  expected {:02x?}",
                case.name, out, expected_out
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "suite {}:\n{}",
        suite.name,
        failures.join("\n")
    );

    let ids: Vec<u32> = (0..suite.frontends.len() as u32).collect();
    let snap = program.snapshot(&ids).expect("read counters");
    assert_eq!(
        snap.packets, suite.expected.packets,
        "suite {}: packet counters",
        suite.name
    );
    let fe: Vec<u64> = snap.frontends.iter().map(|(_, c)| c.packets).collect();
    assert_eq!(
        fe, suite.expected.frontend_packets,
        "suite {}: per-frontend packets",
        suite.name
    );
    let fe_bytes: u64 = snap.frontends.iter().map(|(_, c)| c.bytes).sum();
    let matched_bytes: u64 = suite
        .cases
        .iter()
        .filter(|c| c.name.contains("for_frontend") || c.name.contains("for_all_ports"))
        .map(|c| c.input.len() as u64)
        .sum();
    assert_eq!(
        fe_bytes, matched_bytes,
        "suite {}: per-frontend bytes",
        suite.name
    );
    let verdicts: Vec<u64> = snap.verdicts.iter().map(|c| c.packets).collect();
    assert_eq!(
        verdicts, suite.expected.verdict_packets,
        "suite {}: verdicts",
        suite.name
    );
}

#[test]
fn classify_suite_verdicts_outputs_and_counters() {
    if !bpf_tests::require_bpf("classify_suite_verdicts_outputs_and_counters") {
        return;
    }
    run_suite(fixtures::classify::suite());
}

#[test]
fn zero_length_and_sub_ethernet_frames_are_refused_by_the_kernel_test_harness() {
    // The kernel's BPF_PROG_TEST_RUN refuses XDP input shorter than an
    // Ethernet header (net/bpf/test_run.c, bpf_prog_test_run_xdp: size <
    // ETH_HLEN is -EINVAL), and no driver hands XDP such a frame either, so
    // zero-length and 13-byte frames never reach the program. The program's
    // own "Ethernet cut short" path is exercised by `vlan_tag_cut_short` in
    // the classify suite; this test pins the kernel side.
    if !bpf_tests::require_bpf(
        "zero_length_and_sub_ethernet_frames_are_refused_by_the_kernel_test_harness",
    ) {
        return;
    }
    let suite = fixtures::classify::suite();
    let mut program = load_for(&suite);
    assert!(
        run_once(&mut program, &[]).is_err(),
        "an empty frame must be refused"
    );
    let short = bpf_tests::packet::Packet::tcp("198.18.1.2", 1, "198.18.0.1", 80).build();
    assert!(
        run_once(&mut program, &short[..13]).is_err(),
        "a 13-byte frame must be refused"
    );
    let snap = program.snapshot(&[]).expect("read counters");
    assert_eq!(snap.packets.rx_packets, 0, "nothing ran, nothing counted");
}

#[test]
#[expect(
    clippy::field_reassign_with_default,
    reason = "TestRunOptions is non-exhaustive: no struct literal"
)]
fn repeat_runs_the_program_n_times_and_counts_each() {
    if !bpf_tests::require_bpf("repeat_runs_the_program_n_times_and_counts_each") {
        return;
    }
    let suite = fixtures::classify::suite();
    let mut program = load_for(&suite);
    let input = bpf_tests::packet::Packet::tcp("198.18.1.2", 40000, "198.18.0.1", 80).build();
    let mut opts = TestRunOptions::default();
    opts.data_in = Some(&input);
    opts.repeat = 1000;
    let result = program.xdp().unwrap().test_run(opts).expect("test run");
    assert_eq!(result.return_value, fixtures::XdpAction::Pass as u32);
    let snap = program.snapshot(&[0]).unwrap();
    assert_eq!(snap.frontends[0].1.packets, 1000);
    assert_eq!(snap.frontends[0].1.bytes, 1000 * input.len() as u64);
    eprintln!(
        "classify+count: {} ns per packet (BPF_PROG_TEST_RUN, repeat 1000)",
        result.duration.as_nanos()
    );
}
