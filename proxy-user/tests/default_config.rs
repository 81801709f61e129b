//! The default configuration, `configs/weir.cfg` (what `cargo xtask run`
//! runs), through the real `weir` binary: the frontend balances between
//! the two demo origins, the stats frontend serves the live metrics, and
//! the counters reach the shm-stats-file.
//!
//! The file is used as shipped except for its addresses, its instance name
//! and its shm-stats-file path, which are replaced by free ports and a
//! temporary path, so the test neither collides with a running instance
//! nor needs root (`--no-xdp`: the XDP part is tested in bpf-tests).

#[path = "support/weir_process.rs"]
mod weir_process;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use weir_process::{free_port, Weir};

use proxy_user::stats::{read_snapshot, Counter, ObjectType};

/// `text` with `from` replaced by `to`, which must occur in it.
fn replace(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "configs/weir.cfg no longer contains {from:?}: update this test"
    );
    text.replace(from, to)
}

/// One HTTP/1.1 request on a new connection (`Connection: close`); the
/// whole response as text. Bounded by a 10 s socket timeout.
fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: weir\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read the response");
    out
}

#[test]
fn the_default_config_balances_over_its_demo_origins_and_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/weir.cfg"))
            .expect("read configs/weir.cfg");
    let (web, s1, s2, stats) = (free_port(), free_port(), free_port(), free_port());
    let shm = dir.path().join("weir-stats");
    let mut cfg = replace(&shipped, "127.0.0.1:8080", &format!("127.0.0.1:{web}"));
    cfg = replace(&cfg, "127.0.0.1:9001", &format!("127.0.0.1:{s1}"));
    cfg = replace(&cfg, "127.0.0.1:9002", &format!("127.0.0.1:{s2}"));
    cfg = replace(&cfg, "127.0.0.1:8404", &format!("127.0.0.1:{stats}"));
    cfg = replace(&cfg, "/dev/shm/weir-stats", shm.to_str().unwrap());
    cfg = replace(
        &cfg,
        "instance weir\n",
        &format!("instance default-cfg-{}\n", std::process::id()),
    );
    let path = dir.path().join("weir.cfg");
    std::fs::write(&path, cfg).unwrap();

    let _weir = Weir::start(&path);

    // Round robin over the two demo origins.
    let web: SocketAddr = format!("127.0.0.1:{web}").parse().unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let r = get(web, "/");
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        let body = r.split("\r\n\r\n").nth(1).unwrap_or("");
        seen.push(body.split_whitespace().nth(2).unwrap_or("").to_string());
    }
    seen.sort();
    assert_eq!(seen, ["s1", "s1", "s2", "s2"], "origins seen");

    // The live metrics of the stats frontend.
    let stats: SocketAddr = format!("127.0.0.1:{stats}").parse().unwrap();
    let m = get(stats, "/metrics");
    assert!(m.starts_with("HTTP/1.1 200"), "{m}");
    for sample in [
        "weir_backend_requests_total{proxy=\"demo\"} 4\n",
        "weir_server_responses_2xx_total{proxy=\"demo\",server=\"s1\"} 2\n",
        "weir_server_responses_2xx_total{proxy=\"demo\",server=\"s2\"} 2\n",
        "weir_server_status{proxy=\"demo\",server=\"s1\"} 1\n",
        "weir_frontend_current_sessions{proxy=\"stats\"} 1\n",
    ] {
        assert!(m.contains(sample), "missing {sample:?} in:\n{m}");
    }

    // The same counters in the shm-stats-file, by GUID.
    let snap = read_snapshot(&shm).expect("read the shm-stats-file");
    let count = |guid: &str, ty: ObjectType, c: Counter| {
        snap.find(guid, ty)
            .unwrap_or_else(|| panic!("{guid} not in the file"))
            .get(c)
    };
    assert_eq!(count("demo", ObjectType::Backend, Counter::Requests), 4);
    assert_eq!(
        count("demo.s1", ObjectType::Server, Counter::Responses2xx),
        2
    );
    assert_eq!(
        count("demo.s2", ObjectType::Server, Counter::Responses2xx),
        2
    );
    assert_eq!(count("web", ObjectType::Frontend, Counter::Requests), 4);
    assert!(count("web", ObjectType::Frontend, Counter::BytesOut) > 0);
}
