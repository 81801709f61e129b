//! `http-request use-service prometheus-exporter`: the live statistics page
//! (counters, current sessions, in-flight requests, server state) served by
//! the proxy itself.

#[path = "support/l7.rs"]
mod l7;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use l7::{dead_addr, start_proxy, Client, Origin};

const DEFAULTS: &str = "defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n";

/// The samples of a page, `name{labels}` to value, after checking that
/// every line is a comment or a well-formed sample of a declared family.
fn parse(page: &str) -> HashMap<String, u64> {
    let mut declared = Vec::new();
    let mut samples = HashMap::new();
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(kind == "counter" || kind == "gauge", "{line}");
            declared.push(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample: series value");
        let name = series.split('{').next().unwrap();
        assert_eq!(declared.last().map(String::as_str), Some(name), "{line}");
        assert!(series.ends_with('}'), "labelled: {line}");
        let value: u64 = value.parse().unwrap_or_else(|_| panic!("integer: {line}"));
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "duplicate {line}"
        );
    }
    samples
}

async fn scrape(c: &mut Client) -> HashMap<String, u64> {
    c.send(b"GET /metrics HTTP/1.1\r\nHost: w\r\n\r\n").await;
    let r = c.response().await.expect("a metrics response");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    parse(&r.text())
}

/// Scrapes until `done` holds (every 20 ms, at most 5 s).
async fn scrape_until(
    c: &mut Client,
    done: impl Fn(&HashMap<String, u64>) -> bool,
) -> HashMap<String, u64> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = scrape(c).await;
        if done(&m) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "never reached the expected state: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_exporter_shows_counters_sessions_in_flight_and_server_state() {
    let o = Origin::start("s1").await;
    let dead = dead_addr().await;
    let cfg = format!(
        "{DEFAULTS}
frontend fe
    bind 127.0.0.1:1
    http-request use-service prometheus-exporter if {{ path /metrics }}
    default_backend b
backend b
    balance roundrobin
    server s1 {} maxconn 5
    server s2 {dead} check inter 100ms fall 1 rise 1
",
        o.addr
    );
    let proxy = start_proxy(&cfg).await;
    let mut scraper = Client::connect(proxy.addr).await;

    // s2 is never reachable: its check marks it DOWN.
    let m = scrape_until(&mut scraper, |m| {
        m[r#"weir_server_status{proxy="b",server="s2"}"#] == 0
    })
    .await;
    assert_eq!(m[r#"weir_server_status{proxy="b",server="s1"}"#], 1);
    assert_eq!(m[r#"weir_backend_up_servers{proxy="b"}"#], 1);
    let scrapes_so_far = proxy
        .frontend
        .counters
        .get(proxy_user::stats::Counter::Requests);

    let mut c = Client::connect(proxy.addr).await;
    for _ in 0..3 {
        assert_eq!(c.get("/").await.status, 200);
    }
    // One request stays in flight on s1 while we scrape.
    let mut slow = Client::connect(proxy.addr).await;
    slow.send(b"GET /slow/1500 HTTP/1.1\r\nHost: w\r\n\r\n")
        .await;
    let m = scrape_until(&mut scraper, |m| {
        m[r#"weir_server_current_sessions{proxy="b",server="s1"}"#] == 1
    })
    .await;
    // Three client connections are open: the scraper, c and slow.
    assert_eq!(m[r#"weir_frontend_current_sessions{proxy="fe"}"#], 3);
    assert_eq!(m[r#"weir_backend_current_sessions{proxy="b"}"#], 1);
    assert_eq!(
        m[r#"weir_server_current_sessions{proxy="b",server="s2"}"#],
        0
    );
    assert_eq!(m[r#"weir_server_limit_sessions{proxy="b",server="s1"}"#], 5);
    assert_eq!(m[r#"weir_server_current_queue{proxy="b",server="s1"}"#], 0);
    assert_eq!(m[r#"weir_backend_current_queue{proxy="b"}"#], 0);
    assert!(!m.contains_key(r#"weir_server_limit_sessions{proxy="b",server="s2"}"#));
    // The three finished requests and the slow one reached the backend; the
    // scrapes were answered by the frontend's rule and never did.
    assert_eq!(m[r#"weir_backend_requests_total{proxy="b"}"#], 4);
    assert_eq!(
        m[r#"weir_server_responses_2xx_total{proxy="b",server="s1"}"#],
        3
    );
    assert_eq!(
        m[r#"weir_server_responses_2xx_total{proxy="b",server="s2"}"#],
        0
    );
    let fe_requests = m[r#"weir_frontend_requests_total{proxy="fe"}"#];
    // scrapes_so_far + 3 + slow + the scrapes of the loop above (>= 1).
    assert!(
        fe_requests >= scrapes_so_far + 5,
        "{fe_requests} vs {scrapes_so_far}"
    );
    assert!(m[r#"weir_frontend_bytes_out_total{proxy="fe"}"#] > 0);
    assert!(m[r#"weir_server_check_failures_total{proxy="b",server="s2"}"#] >= 1);
    assert_eq!(
        m[r#"weir_server_down_transitions_total{proxy="b",server="s2"}"#],
        1
    );

    let r = slow.response().await.expect("the slow response");
    assert_eq!(r.status, 200);
    // The slow request took s1's pooled connection; it goes back to the
    // pool (idle) once its response has ended.
    let m = scrape_until(&mut scraper, |m| {
        m[r#"weir_server_idle_connections{proxy="b",server="s1"}"#] == 1
    })
    .await;
    assert_eq!(
        m[r#"weir_server_current_sessions{proxy="b",server="s1"}"#],
        0
    );
    assert_eq!(
        m[r#"weir_server_responses_2xx_total{proxy="b",server="s1"}"#],
        4
    );
}

#[tokio::test]
async fn an_unknown_service_is_a_config_error_naming_the_line() {
    let cfg = format!(
        "{DEFAULTS}
frontend fe
    bind 127.0.0.1:1
    http-request use-service prometheus if {{ path /metrics }}
"
    );
    let err = proxy_user::config::parse_str(&cfg, "svc.cfg")
        .expect_err("an error")
        .to_string();
    assert!(err.contains("svc.cfg:9"), "{err}");
    assert!(err.contains("unknown service 'prometheus'"), "{err}");
    assert!(err.contains("prometheus-exporter"), "{err}");
}
