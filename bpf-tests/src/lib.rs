//! Test support for Weir's BPF programs: a packet builder, fixture suites,
//! and the helpers that load the real eBPF object and decide whether a test
//! can run here.
//!
//! The tests themselves are in `tests/`: `prog_run.rs` drives the program
//! with BPF_PROG_TEST_RUN. They need root (CAP_BPF, CAP_NET_ADMIN); without
//! it they print why and skip, except under `CI=true`, where they fail.

pub mod bench;
pub mod counters;
pub mod fixtures;
pub mod lab;
pub mod netns;
pub mod packet;
pub mod pcap;
pub mod rawbpf;
pub mod runner;
pub mod topology;

use std::borrow::Cow;

/// Whether BPF tests can run here. `Err` carries the reason to print.
pub fn bpf_available() -> Result<(), String> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(
            "not running as root: loading BPF programs needs CAP_BPF and CAP_NET_ADMIN".into(),
        );
    }
    if let Err(e) = proxy_user::l4::find_object(None) {
        return Err(format!(
            "{e} (run the suite with `cargo xtask test`, which builds it)"
        ));
    }
    Ok(())
}

/// Returns true when the test may go on; otherwise prints why it skips.
/// Under CI=true a missing prerequisite fails the test instead.
pub fn require_bpf(test: &str) -> bool {
    match bpf_available() {
        Ok(()) => true,
        Err(reason) => {
            let ci = matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"));
            assert!(
                !ci,
                "{test}: CI=true requires the BPF tests to run, but {reason}"
            );
            eprintln!("SKIPPED {test}: {reason} (kernel {})", kernel_release());
            false
        }
    }
}

/// The running kernel's release string.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// The eBPF object `cargo xtask build` made (or the one embedded in weir).
pub fn object() -> Cow<'static, [u8]> {
    proxy_user::l4::find_object(None).unwrap_or_else(|e| {
        panic!("{e} (bpf-tests need the eBPF object: run them with `cargo xtask test`)")
    })
}
