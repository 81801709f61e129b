//! TLS handshake benchmark: full and resumed handshakes per second, and CPU
//! time per handshake, for ECDSA P-256 and RSA 2048 certificates, TLS 1.3
//! and 1.2. A rustls client and Weir's `TlsAcceptor` run in this process
//! over loopback on one thread, so "cpu/handshake" is client + server.
//!
//! `cargo bench -p proxy-user --bench tls [-- --json] [-- --secs N]`
//! (RSA keys are made with the `openssl` CLI.)

#[path = "../tests/tls_support/mod.rs"]
mod tls_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use proxy_user::tls::{TlsAcceptor, TlsServerSettings};
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use tls_support::{tempdir, KeyKind, TestCa};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Upper bound on handshakes per measurement, whatever the duration.
const MAX_HANDSHAKES: u64 = 200_000;

/// User + system CPU time of this process, from /proc/self/stat.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall, i.e. 12th and 13th after ")".
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / hz.max(1))
}

struct Result {
    key: &'static str,
    version: &'static str,
    mode: &'static str,
    handshakes: u64,
    wall: Duration,
    cpu: Duration,
}

async fn run(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
    resumed: bool,
    secs: f64,
) -> (u64, Duration, Duration) {
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = ServerName::try_from("bench.test").unwrap();
    let one = || async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut tls = connector
            .connect(name.clone(), tcp)
            .await
            .expect("handshake");
        // Read the server's byte: TLS 1.3 tickets arrive before it.
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await.unwrap();
        tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
    };
    if resumed {
        // Warm-up connection that obtains the first ticket / session id.
        one().await;
    }
    let deadline = Duration::from_secs_f64(secs);
    let (t0, c0) = (Instant::now(), cpu_time());
    let mut n = 0;
    while t0.elapsed() < deadline && n < MAX_HANDSHAKES {
        let was_resumed = one().await;
        assert_eq!(was_resumed, resumed, "unexpected handshake kind");
        n += 1;
    }
    (n, t0.elapsed(), cpu_time() - c0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json");
    let secs: f64 = args
        .iter()
        .position(|a| a == "--secs")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ca = TestCa::new("bench ca");
    let dir = tempdir();
    let mut results = Vec::new();
    for (key, kind) in [
        ("ecdsa-p256", KeyKind::EcdsaP256),
        ("rsa-2048", KeyKind::Rsa2048),
    ] {
        let crt = dir.path().join(format!("{key}.pem"));
        ca.leaf(&["bench.test"], kind).write_bundle(&ca, &crt);
        let acceptor = Arc::new(TlsAcceptor::new(TlsServerSettings::with_certs([&crt])).unwrap());
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move {
                loop {
                    let (tcp, _) = listener.accept().await.unwrap();
                    tcp.set_nodelay(true).unwrap();
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        if let Ok(mut tls) = acceptor.accept(tcp).await {
                            let _ = tls.write_all(b"x").await;
                            let _ = tls.shutdown().await;
                        }
                    });
                }
            });
            for (version, v) in [
                ("tls1.3", &rustls::version::TLS13),
                ("tls1.2", &rustls::version::TLS12),
            ] {
                for (mode, resumed) in [("full", false), ("resumed", true)] {
                    let mut cfg = ca.client_config_with(&[v], &[]);
                    if !resumed {
                        cfg.resumption = Resumption::disabled();
                    }
                    let (handshakes, wall, cpu) = run(addr, Arc::new(cfg), resumed, secs).await;
                    let r = Result {
                        key,
                        version,
                        mode,
                        handshakes,
                        wall,
                        cpu,
                    };
                    print_result(&r, json);
                    results.push(r);
                }
            }
            server.abort();
        });
    }
}

fn print_result(r: &Result, json: bool) {
    let per_sec = r.handshakes as f64 / r.wall.as_secs_f64();
    let cpu_us = r.cpu.as_secs_f64() * 1e6 / r.handshakes.max(1) as f64;
    if json {
        println!(
            "{{\"bench\":\"tls_handshake\",\"key\":\"{}\",\"version\":\"{}\",\"mode\":\"{}\",\"handshakes\":{},\"per_sec\":{:.1},\"cpu_us_per_handshake\":{:.1}}}",
            r.key, r.version, r.mode, r.handshakes, per_sec, cpu_us
        );
    } else {
        println!(
            "{:<11} {:<7} {:<8} {:>9.0} handshakes/s  {:>8.1} us cpu/handshake (client+server)  n={}",
            r.key, r.version, r.mode, per_sec, cpu_us, r.handshakes
        );
    }
}
