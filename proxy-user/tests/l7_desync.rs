//! The http_desync_guardian request-smuggling corpus sent through the
//! running proxy to a recording origin.
//!
//! Severe and Ambiguous requests must never reach the origin: the proxy
//! answers them itself and the origin records nothing. Every request that
//! does reach the origin must arrive in an unambiguous form: it parses
//! under the strict codec with the same method, target and framing as the
//! proxy's own reading of the original.

#[path = "support/desync_corpus.rs"]
mod desync_corpus;
#[path = "support/l7.rs"]
mod l7;

use std::time::Duration;

use desync_corpus::Tier;
use l7::{start_proxy_with, Origin};
use proxy_user::http::{Limits, RequestHead};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn smuggling_corpus_never_reaches_the_origin_in_ambiguous_form() {
    let origin = Origin::start("o").await;
    let cfg = format!(
        "defaults\n    mode http\n    timeout connect 1s\n    timeout client 300ms\n    timeout http-request 300ms\n    timeout server 2s\n\
         frontend fe\n    bind 127.0.0.1:1\n    default_backend b\nbackend b\n    server s {}\n",
        origin.addr
    );
    // The corpus requests carry no Host field; the codec test runs the same way.
    let limits = Limits {
        require_host: false,
        ..Limits::default()
    };
    let proxy = start_proxy_with(&cfg, limits.clone()).await;
    let cases = desync_corpus::load();
    assert!(cases.len() > 150, "corpus loaded: {}", cases.len());
    let (mut rejected_bad, mut forwarded_good) = (0, 0);
    for case in &cases {
        origin.clear();
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        s.write_all(&case.request).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
        drop(s);
        let seen = origin.received();
        if case.tier.must_reject() {
            assert!(
                seen.is_empty(),
                "{} case {:?} ({}) reached the origin as {:?}",
                case.file,
                case.name,
                case.reason,
                String::from_utf8_lossy(&seen)
            );
            let text = String::from_utf8_lossy(&answer);
            assert!(
                text.starts_with("HTTP/1.1 4") || text.starts_with("HTTP/1.1 5"),
                "{:?}: proxy answered {text:?}",
                case.name
            );
            rejected_bad += 1;
        } else if !seen.is_empty() {
            let (original, _) = RequestHead::parse(&case.request, &limits)
                .expect("the proxy forwarded only what the codec accepts")
                .expect("a whole head");
            let (forwarded, _) = RequestHead::parse(&seen, &limits)
                .unwrap_or_else(|e| panic!("{:?}: forwarded form does not parse: {e}", case.name))
                .expect("a whole forwarded head");
            assert_eq!(
                forwarded.method_bytes(),
                original.method_bytes(),
                "{:?}",
                case.name
            );
            assert_eq!(forwarded.target(), original.target(), "{:?}", case.name);
            assert_eq!(forwarded.framing(), original.framing(), "{:?}", case.name);
            if case.tier == Tier::Compliant {
                forwarded_good += 1;
            }
        }
    }
    assert_eq!(rejected_bad, 116, "58 Severe + 58 Ambiguous cases");
    assert!(
        forwarded_good >= 25,
        "compliant requests reach the origin: {forwarded_good}"
    );
}
