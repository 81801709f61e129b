//! The L4 balancer's fixture suites (NAT, DSR, pass-through, drop
//! policies), each run once through the real program with
//! BPF_PROG_TEST_RUN inside its own network namespace: verdicts, exact
//! output frames with every checksum recomputed, then L4, per-service and
//! per-real counters. See `bpf_tests::runner`.

use bpf_tests::{fixtures, runner::run_l4_suite};

#[test]
fn nat_suite_rewrites_both_directions_with_valid_checksums_and_counts_flows() {
    if !bpf_tests::require_bpf(
        "nat_suite_rewrites_both_directions_with_valid_checksums_and_counts_flows",
    ) {
        return;
    }
    run_l4_suite(&fixtures::nat::suite());
}

#[test]
fn dsr_suite_encapsulates_to_the_flows_real_and_keeps_flows_across_table_changes() {
    if !bpf_tests::require_bpf(
        "dsr_suite_encapsulates_to_the_flows_real_and_keeps_flows_across_table_changes",
    ) {
        return;
    }
    run_l4_suite(&fixtures::dsr::suite());
}

#[test]
fn passthrough_suite_leaves_unusual_and_foreign_packets_to_the_kernel() {
    if !bpf_tests::require_bpf("passthrough_suite_leaves_unusual_and_foreign_packets_to_the_kernel")
    {
        return;
    }
    run_l4_suite(&fixtures::passthrough::suite());
}

#[test]
fn policy_suite_drops_fragments_options_and_extension_headers_when_configured() {
    if !bpf_tests::require_bpf(
        "policy_suite_drops_fragments_options_and_extension_headers_when_configured",
    ) {
        return;
    }
    run_l4_suite(&fixtures::passthrough::policy_suite());
}

#[test]
fn fixture_case_names_are_unique_snake_case() {
    for suite in [
        fixtures::nat::suite(),
        fixtures::dsr::suite(),
        fixtures::passthrough::suite(),
        fixtures::passthrough::policy_suite(),
    ] {
        let mut seen = std::collections::HashSet::new();
        for step in &suite.steps {
            if let fixtures::Step::Packet(c) = step {
                assert!(seen.insert(c.name), "{}: duplicate {}", suite.name, c.name);
                assert!(
                    c.name
                        .chars()
                        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_'),
                    "{}: {} is not snake_case",
                    suite.name,
                    c.name
                );
            }
        }
    }
}

/// Pins the kernel behaviour the benchmark depends on: BPF_PROG_TEST_RUN's
/// `repeat` reruns the program on the buffer the previous run left, so
/// only the first run of a forwarded frame is balanced; the others see
/// the rewritten frame (not for a VIP any more) and pass.
#[test]
fn repeat_measures_the_rewritten_frame_after_the_first_run() {
    if !bpf_tests::require_bpf("repeat_measures_the_rewritten_frame_after_the_first_run") {
        return;
    }
    let suite = fixtures::nat::suite();
    let mut h = bpf_tests::runner::Harness::new().expect("harness");
    h.provision(&suite).expect("provision");
    let frame = bpf_tests::packet::Packet::udp("198.18.64.2", 5353, bpf_tests::topology::VIP4, 53)
        .macs(
            bpf_tests::topology::CLIENT_ROUTER_MAC,
            bpf_tests::topology::CL_MAC,
        )
        .build();
    let (verdict, _) = h
        .run_repeat(fixtures::Side::Client, &frame, 100)
        .expect("test run");
    assert_eq!(
        verdict,
        fixtures::XdpAction::Pass as u32,
        "the last run passed"
    );
    let l4 = bpf_tests::counters::l4(&mut h.program);
    assert_eq!(l4.nat_forward, 1, "only the first of 100 runs was NAT-ed");
    assert_eq!(l4.lru_misses, 1);
}
