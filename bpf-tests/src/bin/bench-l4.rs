//! `bench-l4`: Weir's L4 benchmark. Run it through `cargo xtask bench-l4`,
//! which builds the eBPF object first. Needs root.

fn main() {
    if let Err(reason) = bpf_tests::bpf_available() {
        eprintln!("bench-l4 needs root: {reason}");
        std::process::exit(2);
    }
    let what: Vec<String> = std::env::args().skip(1).collect();
    let all = what.is_empty() || what.iter().any(|w| w == "all");
    let want = |name: &str| all || what.iter().any(|w| w == name);
    if want("cost") {
        match bpf_tests::bench::cost() {
            Ok(report) => println!("{}", report.table()),
            Err(e) => {
                eprintln!("bench-l4 cost: {e}");
                std::process::exit(1);
            }
        }
    }
    if want("pps") {
        match bpf_tests::bench::pps() {
            Ok(rows) => println!("{}", bpf_tests::bench::pps_table(&rows)),
            Err(e) => {
                eprintln!("bench-l4 pps: {e}");
                std::process::exit(1);
            }
        }
    }
    if want("iperf") {
        match bpf_tests::bench::iperf() {
            Ok(rows) => println!("{}", bpf_tests::bench::iperf_table(&rows)),
            Err(e) => {
                eprintln!("bench-l4 iperf: {e}");
                std::process::exit(1);
            }
        }
    }
}
