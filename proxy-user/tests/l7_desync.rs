//! The http_desync_guardian request-smuggling corpus sent through the
//! running proxy to a recording origin.
//!
//! Severe and Ambiguous requests must never reach the origin: the proxy
//! answers them itself and the origin records nothing. The exceptions are
//! the GET/HEAD-with-a-body cases of
//! [`desync_corpus::AMBIGUOUS_FORWARDED_BY_DEFAULT`], forwarded by default
//! (like HAProxy) with one framing field, and never forwarded under
//! `option http-reject-get-body`. Every request that
//! does reach the origin must arrive in an unambiguous form: it parses
//! under the strict codec with the same method, target and framing as the
//! proxy's own reading of the original.

#[path = "support/desync_corpus.rs"]
mod desync_corpus;
#[path = "support/l7.rs"]
mod l7;

use std::time::Duration;

use desync_corpus::{Tier, AMBIGUOUS_FORWARDED_BY_DEFAULT};
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
    let (mut rejected_bad, mut forwarded_good, mut forwarded_get_body) = (0, 0, 0);
    for case in &cases {
        let forwarded_by_default = AMBIGUOUS_FORWARDED_BY_DEFAULT.contains(&case.name.as_str());
        origin.clear();
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        s.write_all(&case.request).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
        drop(s);
        let seen = origin.received();
        if case.tier.must_reject() && !forwarded_by_default {
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
            let framing_fields = forwarded.headers().get_all("content-length").count()
                + forwarded.headers().get_all("transfer-encoding").count();
            assert!(framing_fields <= 1, "{:?}: {framing_fields}", case.name);
            if forwarded_by_default {
                assert_eq!(framing_fields, 1, "{:?}", case.name);
                forwarded_get_body += 1;
            }
            if case.tier == Tier::Compliant {
                forwarded_good += 1;
            }
        }
    }
    assert_eq!(
        rejected_bad, 110,
        "58 Severe + 58 Ambiguous cases, minus the 6 GET/HEAD bodies"
    );
    assert_eq!(forwarded_get_body, AMBIGUOUS_FORWARDED_BY_DEFAULT.len());
    assert!(
        forwarded_good >= 25,
        "compliant requests reach the origin: {forwarded_good}"
    );
}

#[tokio::test]
async fn get_and_head_bodies_never_reach_the_origin_when_strict() {
    let origin = Origin::start("o").await;
    let cfg = format!(
        "defaults\n    mode http\n    timeout connect 1s\n    timeout client 300ms\n    timeout http-request 300ms\n    timeout server 2s\n\
         frontend fe\n    bind 127.0.0.1:1\n    option http-reject-get-body\n    default_backend b\nbackend b\n    server s {}\n",
        origin.addr
    );
    let limits = Limits {
        require_host: false,
        ..Limits::default()
    };
    let proxy = start_proxy_with(&cfg, limits).await;
    let cases = desync_corpus::load();
    let strict_cases: Vec<_> = cases
        .iter()
        .filter(|c| AMBIGUOUS_FORWARDED_BY_DEFAULT.contains(&c.name.as_str()))
        .collect();
    assert_eq!(strict_cases.len(), AMBIGUOUS_FORWARDED_BY_DEFAULT.len());
    for case in strict_cases {
        origin.clear();
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        s.write_all(&case.request).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with("HTTP/1.1 400"),
            "{:?}: {text:?}",
            case.name
        );
        assert!(
            origin.received().is_empty(),
            "{:?} reached the origin",
            case.name
        );
    }
}
