//! The relay over real loopback sockets, spliced (plain TCP both sides) and
//! copied (`with_splice(false)`): payloads arrive byte for byte, half-close
//! is passed on, a reset ends the relay, the byte counters are exact.

use std::{
    net::SocketAddr,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    time::timeout,
};

use super::{Relay, RelayServer, SPLICED};
use crate::stats::{Counter, ObjectType, StatsStore};

/// Every test is bounded by this.
const LIMIT: Duration = Duration::from_secs(60);

/// Payload byte `i` is `PATTERN[i % len]`; the prime length keeps the
/// pattern out of step with any buffer or pipe size.
fn pattern() -> Vec<u8> {
    (0..65_521u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

/// Writes `len` pattern bytes starting at pattern offset `seed`.
async fn send(w: &mut (impl AsyncWrite + Unpin), len: usize, seed: usize) {
    let p = pattern();
    let mut off = seed % p.len();
    let mut left = len;
    while left > 0 {
        let n = left.min(p.len() - off);
        w.write_all(&p[off..off + n]).await.unwrap();
        left -= n;
        off = (off + n) % p.len();
    }
}

/// Reads to EOF, checking every byte against the pattern; returns the count.
async fn receive(r: &mut (impl AsyncRead + Unpin), seed: usize) -> usize {
    let p = pattern();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0usize;
    loop {
        let n = r.read(&mut buf).await.unwrap();
        if n == 0 {
            return total;
        }
        let mut i = 0;
        while i < n {
            let off = (seed + total + i) % p.len();
            let m = (n - i).min(p.len() - off);
            assert!(
                buf[i..i + m] == p[off..off + m],
                "payload differs near byte {}",
                total + i
            );
            i += m;
        }
        total += n;
    }
}

/// A relay to `server`, listening on a fresh loopback port.
async fn relay_to(server: SocketAddr, splice: bool) -> (Arc<Relay>, SocketAddr) {
    let (store, _) = StatsStore::open(None, 0, Default::default()).unwrap();
    let local = || store.register(None, ObjectType::Server);
    let relay = Arc::new(
        Relay::new(
            "fe".into(),
            vec![RelayServer {
                name: "s".into(),
                addr: server,
                counters: local(),
                tls: None,
            }],
            Duration::from_secs(1),
            local(),
            local(),
        )
        .with_splice(splice),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(relay.clone().run(listener, 4, None, None));
    (relay, addr)
}

/// Waits until the relay has counted `(in, out)` bytes on all three
/// entities (they are added when the relay ends, after the client is done).
async fn counted(relay: &Relay, bytes_in: u64, bytes_out: u64) {
    let server = &relay.servers[0].counters;
    let want = |c: &crate::stats::EntityCounters| {
        c.get(Counter::BytesIn) == bytes_in && c.get(Counter::BytesOut) == bytes_out
    };
    for _ in 0..500 {
        if [&relay.frontend, &relay.backend, server]
            .into_iter()
            .all(want)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for c in [&relay.frontend, &relay.backend, server] {
        assert_eq!(c.get(Counter::BytesIn), bytes_in);
        assert_eq!(c.get(Counter::BytesOut), bytes_out);
    }
}

/// Client sends `up` bytes, server sends `down` bytes, both at once; both
/// check what they get and close their write side when done.
async fn large_both_ways(splice: bool) {
    const UP: usize = 64 << 20;
    const DOWN: usize = (64 << 20) + 12_345;
    let origin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin_addr = origin.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (s, _) = origin.accept().await.unwrap();
        let (mut r, mut w) = s.into_split();
        let writer = tokio::spawn(async move {
            send(&mut w, DOWN, 7).await;
            w.shutdown().await.unwrap();
        });
        let got = receive(&mut r, 0).await;
        writer.await.unwrap();
        got
    });
    let (relay, addr) = relay_to(origin_addr, splice).await;
    let spliced = SPLICED.load(Ordering::Relaxed);
    let c = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = c.into_split();
    let writer = tokio::spawn(async move {
        send(&mut w, UP, 0).await;
        w.shutdown().await.unwrap();
    });
    assert_eq!(receive(&mut r, 7).await, DOWN);
    writer.await.unwrap();
    assert_eq!(server.await.unwrap(), UP);
    counted(&relay, UP as u64, DOWN as u64).await;
    if splice {
        assert!(SPLICED.load(Ordering::Relaxed) > spliced, "not spliced");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splice_carries_64_mib_both_ways_byte_exact() {
    timeout(LIMIT, large_both_ways(true)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_carries_64_mib_both_ways_byte_exact() {
    timeout(LIMIT, large_both_ways(false)).await.unwrap();
}

/// The client shuts down its write side; the server sees EOF, still
/// answers, then closes; the client gets the answer and then EOF.
async fn half_close(splice: bool) {
    let origin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin_addr = origin.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = origin.accept().await.unwrap();
        let mut req = Vec::new();
        s.read_to_end(&mut req).await.unwrap(); // EOF: the client's FIN came through
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.write_all(b"answer to ").await.unwrap();
        s.write_all(&req).await.unwrap();
        // Dropping closes.
    });
    let (relay, addr) = relay_to(origin_addr, splice).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"question").await.unwrap();
    c.shutdown().await.unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).await.unwrap();
    assert_eq!(out, b"answer to question");
    server.await.unwrap();
    counted(&relay, 8, 18).await;
}

#[tokio::test]
async fn splice_passes_half_close_on() {
    timeout(LIMIT, half_close(true)).await.unwrap();
}

#[tokio::test]
async fn copy_passes_half_close_on() {
    timeout(LIMIT, half_close(false)).await.unwrap();
}

/// The server resets the connection while the client is still sending:
/// the relay ends and closes the client.
async fn server_reset(splice: bool) {
    let origin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin_addr = origin.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = origin.accept().await.unwrap();
        let mut buf = vec![0u8; 1 << 20];
        s.read_exact(&mut buf).await.unwrap();
        s.write_all(b"partial").await.unwrap();
        s.set_zero_linger().unwrap();
        drop(s); // RST
    });
    let (_relay, addr) = relay_to(origin_addr, splice).await;
    let c = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = c.into_split();
    // Send until the relay gives up on us (the write then fails).
    let writer = tokio::spawn(async move {
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..(1 << 14) {
            if w.write_all(&chunk).await.is_err() {
                return true;
            }
        }
        false
    });
    // The client's read side ends: EOF or reset, not a hang.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    assert!(b"partial".starts_with(&got), "{got:?}");
    server.await.unwrap();
    assert!(
        writer.await.unwrap(),
        "the relay kept reading after the reset"
    );
}

#[tokio::test]
async fn splice_ends_on_server_reset() {
    timeout(LIMIT, server_reset(true)).await.unwrap();
}

#[tokio::test]
async fn copy_ends_on_server_reset() {
    timeout(LIMIT, server_reset(false)).await.unwrap();
}
