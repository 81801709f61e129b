//! End to end: the real `weir` binary on a config with an HTTP frontend on
//! loopback and two demo origins, in a network namespace of its own. Requests go through weir, the XDP program
//! attached to `lo` counts them (read with `bpftool map dump pinned`, as a
//! user would), and SIGTERM stops weir with exit 0 and its pins removed.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The weir binary `cargo xtask test` built (WEIR_BIN overrides).
fn weir_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("WEIR_BIN") {
        return p.into();
    }
    // target/debug/deps/weir_run-xxxx -> target/debug/weir
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .join("weir")
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the child on drop (the test may panic before SIGTERM is sent).
struct Weir(Child);

impl Drop for Weir {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn http_get(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to weir");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: weir.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read the response");
    out
}

/// Sums `packets` of one slot over CPUs from `bpftool -j map dump pinned`.
fn bpftool_frontend_packets(pin: &str, slot: u64) -> u64 {
    let out = Command::new("bpftool")
        .args(["-j", "map", "dump", "pinned", pin])
        .output()
        .expect("run bpftool");
    assert!(
        out.status.success(),
        "bpftool failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bpftool JSON");
    let entry = dump
        .as_array()
        .expect("array of entries")
        .iter()
        .find(|e| e["key"].as_u64() == Some(slot) || e["formatted"]["key"].as_u64() == Some(slot))
        .unwrap_or_else(|| panic!("slot {slot} in {dump}"));
    // With BTF, bpftool prints named fields under "formatted".
    let values = entry["formatted"]["values"]
        .as_array()
        .expect("BTF-formatted per-CPU values");
    values
        .iter()
        .map(|v| {
            v["value"]["packets"]
                .as_u64()
                .expect("named field `packets`")
        })
        .sum()
}

/// A temporary instance: config, ports, stats file; removed on drop.
struct Instance {
    name: String,
    dir: PathBuf,
    cfg: PathBuf,
    stats: PathBuf,
    port: u16,
}

impl Instance {
    fn new(tag: &str) -> Self {
        let (fe, o1, o2) = (free_port(), free_port(), free_port());
        let name = format!("{tag}-{}", std::process::id());
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("weir.cfg");
        let stats = PathBuf::from(format!("/dev/shm/weir-test-{name}"));
        std::fs::write(
            &cfg,
            format!(
                "global\n    instance {name}\n    shm-stats-file {}\n    stats-sync-interval 100ms\n\
                 demo-origin s1 127.0.0.1:{o1}\n    demo-origin s2 127.0.0.1:{o2}\n\
                 defaults\n    mode http\n    timeout connect 2s\n\
                 frontend web\n    guid web\n    bind 127.0.0.1:{fe} guid web.l1\n    default_backend demo\n\
                 backend demo\n    guid demo\n    server s1 127.0.0.1:{o1} guid demo.s1\n    server s2 127.0.0.1:{o2} guid demo.s2\n",
                stats.display()
            ),
        )
        .unwrap();
        Self {
            name,
            dir,
            cfg,
            stats,
            port: fe,
        }
    }

    /// Starts weir and waits (bounded) for its banner.
    fn start(&self) -> (Weir, String) {
        let mut weir = Weir(
            Command::new(weir_bin())
                .args(["run", "-f"])
                .arg(&self.cfg)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start weir"),
        );
        let mut stdout = BufReader::new(weir.0.stdout.take().unwrap());
        let mut banner = String::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !banner.contains("Stop with") {
            assert!(
                Instant::now() < deadline,
                "no banner from weir within 20 s: {banner}"
            );
            let mut line = String::new();
            if stdout.read_line(&mut line).unwrap() == 0 {
                panic!("weir exited early; banner so far: {banner}");
            }
            banner.push_str(&line);
        }
        (weir, banner)
    }

    /// One counter of one object, read with `weir stats --json`.
    fn counter(&self, guid: &str, counter: &str) -> u64 {
        let out = Command::new(weir_bin())
            .args(["stats", "--json", "--file"])
            .arg(&self.stats)
            .output()
            .expect("run weir stats");
        assert!(
            out.status.success(),
            "weir stats: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stats JSON");
        let obj = v["objects"]
            .as_array()
            .expect("objects")
            .iter()
            .find(|o| o["guid"] == guid)
            .unwrap_or_else(|| panic!("no object {guid} in {v}"));
        obj["counters"][counter]
            .as_u64()
            .unwrap_or_else(|| panic!("no counter {counter} in {obj}"))
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.stats);
        remove_pins(&self.name);
    }
}

/// Removes a test instance's pins (maps and the pinned XDP link, which
/// detaches it) when a failed test left them: another test needs `lo` free.
fn remove_pins(instance: &str) {
    let dir = PathBuf::from(format!("/sys/fs/bpf/weir/{instance}"));
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let _ = std::fs::remove_dir(&dir);
}

/// Sends SIGTERM and waits (bounded) for the exit status.
fn stop(weir: &mut Weir) -> std::process::ExitStatus {
    // SAFETY: kill(2) on the PID of a child we spawned and still own.
    unsafe { libc::kill(weir.0.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = weir.0.try_wait().unwrap() {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "weir did not stop within 10 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn reload_with_overlap_takes_over_xdp_and_keeps_every_counter() {
    if !bpf_tests::require_bpf("reload_with_overlap_takes_over_xdp_and_keeps_every_counter") {
        return;
    }
    let ns = bpf_tests::netns::NetNs::new("reload").expect("create netns");
    let _inside = ns.enter().expect("enter netns");
    let inst = Instance::new("reload");
    let (mut a, _) = inst.start();
    for _ in 0..6 {
        assert!(http_get(inst.port).starts_with("HTTP/1.1 200"));
    }
    std::thread::sleep(Duration::from_millis(400)); // > stats-sync-interval
    let sessions_a = inst.counter("web", "sessions");
    let packets_a = inst.counter("web", "packets_in");
    // Upstream connections are pooled: backends and servers count requests.
    let server_a = inst.counter("demo.s1", "requests") + inst.counter("demo.s2", "requests");
    assert_eq!(sessions_a, 6);
    assert_eq!(
        inst.counter("web.l1", "sessions"),
        6,
        "listener object counts its connections"
    );
    assert!(
        inst.counter("web.l1", "packets_in") >= 18,
        "listener gets its XDP packets"
    );
    assert!(packets_a >= 18, "XDP packets mirrored: {packets_a}");
    assert_eq!(server_a, 6);

    // B starts while A runs: it takes over the XDP link and adopts the objects.
    let (mut b, banner_b) = inst.start();
    assert!(banner_b.contains("xdp"), "{banner_b}");
    assert!(stop(&mut a).success(), "A exits 0");
    assert!(
        std::path::Path::new(&format!("/sys/fs/bpf/weir/{}/link_lo", inst.name)).exists(),
        "A left the pins to B"
    );
    for _ in 0..4 {
        assert!(http_get(inst.port).starts_with("HTTP/1.1 200"));
    }
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        inst.counter("web", "sessions"),
        10,
        "frontend continues, no reset"
    );
    assert_eq!(inst.counter("web.l1", "sessions"), 10, "listener continues");
    assert_eq!(
        inst.counter("web", "requests"),
        10,
        "frontend requests continue"
    );
    assert_eq!(inst.counter("demo", "requests"), 10, "backend continues");
    assert_eq!(
        inst.counter("demo.s1", "requests") + inst.counter("demo.s2", "requests"),
        10,
        "servers continue"
    );
    let packets_b = inst.counter("web", "packets_in");
    assert!(
        packets_b >= packets_a + 12,
        "XDP packets continue: {packets_a} -> {packets_b}"
    );
    assert!(stop(&mut b).success(), "B exits 0");
    assert!(
        !std::path::Path::new(&format!("/sys/fs/bpf/weir/{}", inst.name)).exists(),
        "the last process removes the pins"
    );
}

#[test]
fn weir_run_proxies_counts_in_xdp_and_stops_cleanly_on_sigterm() {
    if !bpf_tests::require_bpf("weir_run_proxies_counts_in_xdp_and_stops_cleanly_on_sigterm") {
        return;
    }
    // A namespace of its own: its `lo` is free for XDP whatever the host's
    // `lo` has attached, and weir (a child of this thread) starts in it.
    let ns = bpf_tests::netns::NetNs::new("run").expect("create netns");
    let _inside = ns.enter().expect("enter netns");
    let inst = Instance::new("e2e");
    let (mut weir, banner) = inst.start();
    assert!(banner.contains("xdp"), "XDP attached: {banner}");
    let pin_dir = format!("/sys/fs/bpf/weir/{}", inst.name);
    assert!(
        banner.contains(&format!("bpftool map dump pinned {pin_dir}/")),
        "{banner}"
    );
    let pin = format!("{pin_dir}/WEIR_FE_STATS");
    let before = bpftool_frontend_packets(&pin, 0);
    let mut origins = Vec::new();
    for _ in 0..10 {
        let reply = http_get(inst.port);
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        origins.push(reply.lines().last().unwrap_or_default().to_string());
    }
    assert!(origins.iter().any(|o| o == "hello from s1"), "{origins:?}");
    assert!(origins.iter().any(|o| o == "hello from s2"), "{origins:?}");
    // Each request is at least SYN, request, FIN, ACKs to the frontend port.
    let after = bpftool_frontend_packets(&pin, 0);
    assert!(
        after >= before + 30,
        "XDP counted {before} -> {after} packets for 10 requests"
    );
    let status = stop(&mut weir);
    assert!(status.success(), "weir exit status after SIGTERM: {status}");
    assert!(
        !std::path::Path::new(&pin_dir).exists(),
        "pin directory removed"
    );
}
