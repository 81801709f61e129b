//! Load-aware balancing through the running proxy: `leastconn` spreads
//! concurrent requests by weight, `random` (power of two choices) follows
//! the weights.

#[path = "support/l7.rs"]
mod l7;

use std::time::Duration;

use l7::{start_proxy, Client, Origin};

const DEFAULTS: &str = "defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n";

#[tokio::test]
async fn leastconn_spreads_concurrent_requests_by_weight() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let cfg = format!(
        "{DEFAULTS}
frontend fe
    bind 127.0.0.1:1
    default_backend least
backend least
    balance leastconn
    server a {} weight 1
    server b {} weight 3
",
        a.addr, b.addr
    );
    let proxy = start_proxy(&cfg).await;
    // Eight requests held at once: each pick sees the ones before it in
    // flight. Loads (active + 1) / weight end even at a = 2, b = 6 whatever
    // way the ties go.
    let mut clients = Vec::new();
    for _ in 0..8 {
        let mut c = Client::connect(proxy.addr).await;
        c.send(b"GET /slow/1500 HTTP/1.1\r\nHost: w\r\n\r\n").await;
        clients.push(c);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let mut by_origin = [0; 2];
    for c in &mut clients {
        let r = c.response().await.expect("a response");
        assert_eq!(r.status, 200);
        match r.header("x-origin").as_deref() {
            Some("a") => by_origin[0] += 1,
            Some("b") => by_origin[1] += 1,
            other => panic!("unexpected origin {other:?}"),
        }
    }
    assert_eq!(by_origin, [2, 6]);
    assert_eq!((a.max_concurrent(), b.max_concurrent()), (2, 6));
}

#[tokio::test]
async fn random_follows_the_weights() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let cfg = format!(
        "{DEFAULTS}
frontend fe
    bind 127.0.0.1:1
    default_backend rnd
backend rnd
    balance random
    server a {} weight 1
    server b {} weight 3
",
        a.addr, b.addr
    );
    let proxy = start_proxy(&cfg).await;
    // One request at a time: every server is idle at each pick, so the two
    // weighted draws decide. a's share is Binomial(400, 1/4): mean 100,
    // sd 8.7; 60..=140 is more than 4.5 sd either side.
    let mut c = Client::connect(proxy.addr).await;
    let mut to_a = 0;
    for _ in 0..400 {
        let r = c.get("/").await;
        assert_eq!(r.status, 200);
        if r.header("x-origin").as_deref() == Some("a") {
            to_a += 1;
        }
    }
    assert!((60..=140).contains(&to_a), "a got {to_a} of 400");
}
