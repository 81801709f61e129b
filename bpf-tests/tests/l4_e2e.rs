//! End to end through the XDP balancer, across network namespaces (see
//! `bpf_tests::lab`): the real `weir run` binary in the balancer namespace
//! with XDP services on its veths, `weir origin` in two real namespaces,
//! real TCP (HTTP) and UDP traffic from the client namespace to the VIPs,
//! in NAT mode and in DSR mode (the reals run `weir_decap`). Killing a
//! real moves its flows and leaves the others where they are, and the
//! counters in the pinned maps match the traffic sent.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream, UdpSocket},
    path::PathBuf,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use bpf_tests::{
    lab::{self, Lab, Spawned},
    netns::NetNs,
    rawbpf::RawProgram,
};

/// HTTP connections per address family and phase.
const CONNECTIONS: usize = 12;
/// UDP flows (client source ports).
const UDP_FLOWS: u16 = 16;
/// First UDP client port.
const UDP_PORT0: u16 = 30000;
/// Every process and thread of the scenario runs on this CPU, so each
/// flow stays on one CPU (conntrack is per CPU; see `Lab::spawn_on`).
const CPU: usize = 0;
/// Bound of every wait for a state change (health checks, failover); generous
/// because a loaded 2-core CI machine can delay checks by seconds.
const WAIT: Duration = Duration::from_secs(45);

/// The weir binary `cargo xtask test` built (WEIR_BIN overrides).
fn weir_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("WEIR_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .join("weir")
}

/// A UDP responder in a real's namespace: answers every datagram on port
/// 53 with `real<i>`. Stops when dropped.
struct UdpResponder {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpResponder {
    fn start(ns: &NetNs, name: String, bind: &'static str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let path = format!("/run/netns/{}", ns.name());
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let fd = std::fs::File::open(&path).expect("open real netns");
            // SAFETY: setns on this thread only, with a valid netns fd.
            let rc =
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&fd), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns into the real's namespace");
            bpf_tests::netns::pin_thread_to_cpu(CPU).expect("pin the responder");
            let sock = UdpSocket::bind(bind).expect("bind UDP 53 in the real");
            sock.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            ready_tx.send(()).unwrap();
            let mut buf = [0u8; 1500];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((_, peer)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(name.as_bytes(), peer);
                }
            }
        });
        ready_rx.recv_timeout(WAIT).expect("UDP responder ready");
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for UdpResponder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                eprintln!("warning: UDP responder thread panicked");
            }
        }
    }
}

/// Runs `f` on a thread inside `ns` (sockets it opens live there).
fn in_ns<T: Send + 'static>(ns: &NetNs, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{}", ns.name());
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).expect("open netns");
        // SAFETY: setns on this thread only, with a valid netns fd.
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&fd), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns");
        bpf_tests::netns::pin_thread_to_cpu(CPU).expect("pin the thread");
        f()
    })
    .join()
    .expect("thread in namespace")
}

/// One HTTP/1.1 GET on a new connection; returns the origin's name.
fn http_get(vip: SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&vip, Duration::from_secs(3))
        .map_err(|e| format!("connect {vip}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: vip\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .map_err(|e| format!("read from {vip}: {e}"))?;
    if !out.starts_with("HTTP/1.1 200") {
        return Err(format!("unexpected response: {out}"));
    }
    out.lines()
        .last()
        .and_then(|l| l.strip_prefix("hello from "))
        .map(str::to_string)
        .ok_or_else(|| format!("no origin name in {out}"))
}

/// Sends one datagram from each client port to `vip`; returns port -> real name.
fn udp_round(vip: SocketAddr) -> Result<BTreeMap<u16, String>, String> {
    let mut seen = BTreeMap::new();
    for port in UDP_PORT0..UDP_PORT0 + UDP_FLOWS {
        let bind: SocketAddr = if vip.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], port))
        } else {
            format!("[::]:{port}").parse().unwrap()
        };
        let sock = UdpSocket::bind(bind).map_err(|e| format!("bind {bind}: {e}"))?;
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        sock.send_to(b"which real?", vip)
            .map_err(|e| format!("send: {e}"))?;
        let mut buf = [0u8; 64];
        let (n, from) = sock
            .recv_from(&mut buf)
            .map_err(|e| format!("no UDP answer for client port {port}: {e}"))?;
        if from != vip {
            return Err(format!("answer from {from}, not from the VIP {vip}"));
        }
        seen.insert(port, String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    Ok(seen)
}

/// Sums named fields of a pinned per-CPU array slot with bpftool (as a user would).
fn pinned_sum(pin: &str, slot: u64, field: &str) -> u64 {
    let out = Command::new("bpftool")
        .args(["-j", "map", "dump", "pinned", pin])
        .output()
        .expect("run bpftool");
    assert!(
        out.status.success(),
        "bpftool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bpftool JSON");
    let entry = dump
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["formatted"]["key"].as_u64() == Some(slot))
        .unwrap_or_else(|| panic!("slot {slot} of {pin}"));
    entry["formatted"]["values"]
        .as_array()
        .expect("per-CPU values")
        .iter()
        .map(|v| {
            v["value"][field]
                .as_u64()
                .unwrap_or_else(|| panic!("field {field}"))
        })
        .sum()
}

fn attach_raw(ns: &NetNs, iface: &str, prog: &RawProgram, tag: &str) {
    lab::attach_raw(ns, iface, prog, tag).expect("attach raw program");
}

/// Starts weir in the balancer namespace and waits (bounded) for its banner.
fn start_weir(lab: &Lab, cfg: &std::path::Path) -> Spawned {
    let mut cmd = Command::new(weir_bin());
    cmd.args(["run", "-f"]).arg(cfg).stdout(Stdio::piped());
    let mut weir = Lab::spawn_on(&lab.balancer, cmd, Some(CPU)).expect("start weir");
    let mut stdout = BufReader::new(weir.child.stdout.take().expect("stdout"));
    let mut banner = String::new();
    let deadline = Instant::now() + WAIT;
    while !banner.contains("Stop with") {
        assert!(
            Instant::now() < deadline,
            "no banner within {WAIT:?}: {banner}"
        );
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap_or(0) == 0 {
            panic!("weir exited early; banner so far: {banner}");
        }
        banner.push_str(&line);
    }
    // Keep draining stdout so weir never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = stdout.read_to_string(&mut sink);
    });
    weir
}

fn config(instance: &str, forward: &str) -> String {
    let pool = |name: &str, port: u16, v6: bool, check: bool| {
        let mode = if port == 53 { "udp" } else { "tcp" };
        let mut s = format!("backend {name}\n    guid {name}\n    mode {mode}\n");
        for i in 0..2 {
            let addr = if v6 {
                format!("[{}]:{port}", lab::real6(i))
            } else {
                format!("{}:{port}", lab::real4(i))
            };
            let check = if check {
                " check inter 100ms fall 1 rise 1"
            } else {
                ""
            };
            s.push_str(&format!(
                "    server real{i} {addr}{check} guid {name}.real{i}\n"
            ));
        }
        s
    };
    format!(
        "global\n    instance {instance}\n\
         defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
         frontend web4\n    guid web4\n    mode tcp\n    bind {vip4}:80 interface b0\n    xdp strict forward {forward}\n    maglev-table-size 251\n    default_backend pool4\n\
         frontend web6\n    guid web6\n    mode tcp\n    bind [{vip6}]:80 interface b0\n    xdp strict forward {forward}\n    maglev-table-size 251\n    default_backend pool6\n\
         frontend dns4\n    guid dns4\n    mode udp\n    bind {vip4}:53 interface b0\n    xdp strict forward {forward}\n    maglev-table-size 251\n    default_backend udp4\n\
         frontend stats\n    guid stats\n    mode http\n    bind {STATS}\n    http-request use-service prometheus-exporter\n\
         {}{}{}",
        pool("pool4", 80, false, true),
        pool("pool6", 80, true, false),
        pool("udp4", 53, false, true),
        vip4 = lab::VIP4,
        vip6 = lab::VIP6,
    )
}

/// The metrics page (`use-service prometheus-exporter`), inside the
/// balancer namespace.
const STATS: &str = "127.0.0.1:8404";

/// The value of `series` on the metrics page, if listed.
fn scrape(series: &str) -> Result<Option<u64>, String> {
    let addr: SocketAddr = STATS.parse().unwrap();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: stats\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut page = String::new();
    s.read_to_string(&mut page)
        .map_err(|e| format!("read: {e}"))?;
    Ok(page.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|v| v.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    }))
}

/// The whole scenario for one forwarding mode.
fn scenario(forward: &str) {
    let dsr = forward == "dsr";
    let lab = Lab::new(2).expect("build the namespaces");
    // The client's veth receives redirected frames (NAT replies): it needs
    // an XDP program. Reals: NAT -> a counting pass program; DSR -> weir_decap.
    let client_sink = RawProgram::counting_sink(false).expect("sink");
    attach_raw(&lab.client, "c0", &client_sink, &format!("{forward}-c0"));
    let mut real_sinks = Vec::new();
    let mut decaps = Vec::new();
    for (i, real) in lab.reals.iter().enumerate() {
        if dsr {
            lab.vips_on_real_loopback(i).expect("VIPs on lo");
            // The real `weir decap` CLI, as an operator would run it.
            let instance = format!("decap-{}", real.name());
            let mut cmd = Command::new(weir_bin());
            cmd.args(["decap", "--iface", "r0", "--instance", &instance])
                .stdout(Stdio::piped());
            let mut decap = Lab::spawn_on(real, cmd, Some(CPU)).expect("start weir decap");
            let mut out = BufReader::new(decap.child.stdout.take().expect("stdout"));
            let mut line = String::new();
            out.read_line(&mut line).expect("weir decap banner");
            assert!(line.contains("weir decap: stripping"), "weir decap: {line}");
            decaps.push((decap, instance));
        } else {
            let sink = RawProgram::counting_sink(false).expect("sink");
            attach_raw(real, "r0", &sink, &format!("{forward}-r{i}"));
            real_sinks.push(sink);
        }
    }
    let mut origins = Vec::new();
    let mut responders = Vec::new();
    for (i, real) in lab.reals.iter().enumerate() {
        let mut cmd = Command::new(weir_bin());
        cmd.args([
            "origin",
            "--listen",
            "[::]:80",
            "--name",
            &format!("real{i}"),
        ])
        .stdout(Stdio::null());
        let mut check = Command::new(weir_bin());
        // The UDP service's health check connects to TCP port 53.
        check
            .args([
                "origin",
                "--listen",
                "[::]:53",
                "--name",
                &format!("real{i}-check"),
            ])
            .stdout(Stdio::null());
        origins.push(Some((
            Lab::spawn_on(real, cmd, Some(CPU)).expect("start origin"),
            Lab::spawn_on(real, check, Some(CPU)).expect("start check origin"),
        )));
        // With DSR the answer must come from the VIP: bind it (on lo), not
        // the wildcard, whose answers would leave from the real's address.
        let bind = if dsr { "198.18.100.1:53" } else { "0.0.0.0:53" };
        responders.push(UdpResponder::start(real, format!("real{i}"), bind));
    }
    let instance = format!("e2e-{forward}-{}", std::process::id());
    let dir = std::env::temp_dir().join(&instance);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("weir.cfg");
    std::fs::write(&cfg, config(&instance, forward)).unwrap();
    // Origins must be up before weir's health checks run.
    let deadline = Instant::now() + WAIT;
    for (i, port) in [(0, 80), (1, 80), (0, 53), (1, 53)] {
        let addr: SocketAddr = format!("{}:{port}", lab::real4(i)).parse().unwrap();
        while in_ns(&lab.balancer, move || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200))
        })
        .is_err()
        {
            assert!(Instant::now() < deadline, "origin real{i} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let mut weir = start_weir(&lab, &cfg);
    let pins = format!("/sys/fs/bpf/weir/{instance}");

    // Phase 1: HTTP over IPv4 and IPv6, UDP over IPv4.
    let vip4: SocketAddr = format!("{}:80", lab::VIP4).parse().unwrap();
    let vip6: SocketAddr = format!("[{}]:80", lab::VIP6).parse().unwrap();
    let dns4: SocketAddr = format!("{}:53", lab::VIP4).parse().unwrap();
    let (http4, http6, udp) = in_ns(&lab.client, move || {
        let http4: Vec<String> = (0..CONNECTIONS)
            .map(|_| http_get(vip4))
            .collect::<Result<_, _>>()?;
        let http6: Vec<String> = (0..CONNECTIONS)
            .map(|_| http_get(vip6))
            .collect::<Result<_, _>>()?;
        let udp = udp_round(dns4)?;
        Ok::<_, String>((http4, http6, udp))
    })
    .unwrap_or_else(|e| {
        for m in ["WEIR_L4_STATS", "WEIR_VERDICTS", "WEIR_PKT_STATS"] {
            let out = Command::new("bpftool")
                .args(["map", "dump", "pinned", &format!("{pins}/{m}")])
                .output()
                .unwrap();
            eprintln!("DEBUG {m}: {}", String::from_utf8_lossy(&out.stdout));
        }
        panic!("{forward}: traffic through the VIP failed: {e}")
    });
    for (what, names) in [("IPv4 HTTP", &http4), ("IPv6 HTTP", &http6)] {
        for i in 0..2 {
            assert!(
                names.iter().any(|n| *n == format!("real{i}")),
                "{forward}: {what} never reached real{i}: {names:?}"
            );
        }
    }
    let udp_reals: Vec<&String> = udp.values().collect();
    assert!(
        udp_reals.iter().any(|n| *n == "real0") && udp_reals.iter().any(|n| *n == "real1"),
        "{forward}: UDP flows spread over both reals: {udp:?}"
    );

    // Counters: one new flow per connection / UDP flow, per service and per real.
    let svc = |slot: u64, field: &str| pinned_sum(&format!("{pins}/WEIR_SVC_STATS"), slot, field);
    let l4 = |field: &str| pinned_sum(&format!("{pins}/WEIR_L4_STATS"), 0, field);
    let real_new = |id: u64| pinned_sum(&format!("{pins}/WEIR_REAL_STATS"), id, "new_flows");
    // Stats slots follow the frontends' order; reals are numbered in service order.
    assert_eq!(
        svc(0, "new_flows"),
        CONNECTIONS as u64,
        "{forward}: web4 new flows"
    );
    assert_eq!(
        svc(1, "new_flows"),
        CONNECTIONS as u64,
        "{forward}: web6 new flows"
    );
    assert_eq!(
        svc(2, "new_flows"),
        UDP_FLOWS as u64,
        "{forward}: dns4 new flows"
    );
    assert_eq!(
        svc(2, "packets"),
        UDP_FLOWS as u64 * if dsr { 1 } else { 2 },
        "{forward}: dns4 packets (NAT: requests and replies)"
    );
    for (ids, names) in [([0u64, 1], &http4), ([2, 3], &http6)] {
        for (k, id) in ids.iter().enumerate() {
            let sent = names.iter().filter(|n| **n == format!("real{k}")).count() as u64;
            assert_eq!(
                real_new(*id),
                sent,
                "{forward}: real id {id} new flows = connections it served"
            );
        }
    }
    for (k, id) in [4u64, 5].iter().enumerate() {
        let sent = udp.values().filter(|n| **n == format!("real{k}")).count() as u64;
        assert_eq!(real_new(*id), sent, "{forward}: UDP real id {id} new flows");
    }
    // The same counters on the L7 metrics page, once the sync task (every
    // second) has mirrored them from the BPF maps.
    let expect = [
        (
            "weir_l4_service_new_flows_total{proxy=\"web4\"}",
            CONNECTIONS as u64,
        ),
        (
            "weir_l4_service_new_flows_total{proxy=\"dns4\"}",
            UDP_FLOWS as u64,
        ),
    ];
    let deadline = Instant::now() + WAIT;
    loop {
        let got: Vec<Option<u64>> = expect
            .iter()
            .map(|(series, _)| {
                let series = series.to_string();
                in_ns(&lab.balancer, move || scrape(&series))
                    .unwrap_or_else(|e| panic!("{forward}: metrics page: {e}"))
            })
            .collect();
        if got
            .iter()
            .zip(&expect)
            .all(|(g, (_, want))| *g == Some(*want))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{forward}: metrics page {got:?}, want {expect:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let real0 = in_ns(&lab.balancer, || {
        scrape("weir_l4_real_new_flows_total{proxy=\"web4\",server=\"real0\"}")
    })
    .unwrap_or_else(|e| panic!("{forward}: metrics page: {e}"));
    assert_eq!(
        real0,
        Some(real_new(0)),
        "{forward}: real0 on the metrics page"
    );

    let flows = 2 * CONNECTIONS as u64 + UDP_FLOWS as u64;
    assert_eq!(
        l4("lru_misses"),
        flows,
        "{forward}: every flow balanced once"
    );
    if dsr {
        assert_eq!(l4("nat_forward"), 0);
        assert_eq!(
            l4("dsr_encap"),
            l4("lru_misses") + l4("lru_hits"),
            "{forward}: every balanced packet encapsulated"
        );
    } else {
        assert_eq!(l4("dsr_encap"), 0);
        assert!(
            l4("nat_reverse") >= 2 * (2 * CONNECTIONS as u64) + UDP_FLOWS as u64,
            "{forward}: replies translated back"
        );
        let delivered: u64 = real_sinks.iter().map(|s| s.count().unwrap()).sum();
        assert!(
            delivered >= l4("nat_forward"),
            "{forward}: the reals received every NAT-ed packet ({delivered} < {})",
            l4("nat_forward")
        );
    }

    // Phase 2: real0 dies. Its flows move to real1; real1's flows stay.
    drop(origins[0].take());
    drop(responders.remove(0));
    let before = udp.clone();
    let deadline = Instant::now() + WAIT;
    let after = loop {
        // Health checks (every 100 ms, one failure) take real0 out; until
        // then real0's UDP flows get no answer.
        let last = match in_ns(&lab.client, move || udp_round(dns4)) {
            Ok(map) => break map,
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "{forward}: real0's UDP flows never moved: {last}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for (port, was) in &before {
        assert_eq!(
            after[port], "real1",
            "{forward}: client port {port} (was on {was}) now on real1"
        );
    }
    let http_after = in_ns(&lab.client, move || {
        (0..CONNECTIONS)
            .map(|_| http_get(vip4))
            .collect::<Result<Vec<_>, _>>()
    })
    .unwrap_or_else(|e| panic!("{forward}: HTTP after real0 died: {e}"));
    assert!(
        http_after.iter().all(|n| n == "real1"),
        "{forward}: {http_after:?}"
    );

    if dsr {
        // What the reals' `weir decap` counted, from its pinned map.
        let decapped: u64 = decaps
            .iter()
            .map(|(_, instance)| {
                pinned_sum(
                    &format!("/sys/fs/bpf/weir/{instance}/WEIR_DECAP_STATS"),
                    0,
                    "packets",
                )
            })
            .sum();
        for (p, _) in decaps.iter_mut() {
            let status = p.terminate(Duration::from_secs(10));
            assert!(
                status.is_some_and(|s| s.success()),
                "weir decap exit: {status:?}"
            );
        }
        assert_eq!(
            decapped,
            l4("dsr_encap"),
            "{forward}: the reals decapsulated every encapsulated packet"
        );
    }
    let status = weir.terminate(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "{forward}: weir exit after SIGTERM: {status:?}"
    );
    assert!(
        !std::path::Path::new(&pins).exists(),
        "{forward}: pins removed"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nat_mode_carries_tcp_and_udp_through_the_vip_moves_a_dead_reals_flows_and_counts_them() {
    if !bpf_tests::require_bpf(
        "nat_mode_carries_tcp_and_udp_through_the_vip_moves_a_dead_reals_flows_and_counts_them",
    ) {
        return;
    }
    scenario("nat");
}

#[test]
fn dsr_mode_carries_tcp_and_udp_through_the_vip_moves_a_dead_reals_flows_and_counts_them() {
    if !bpf_tests::require_bpf(
        "dsr_mode_carries_tcp_and_udp_through_the_vip_moves_a_dead_reals_flows_and_counts_them",
    ) {
        return;
    }
    scenario("dsr");
}
