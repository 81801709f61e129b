//! Runs the `http_desync_guardian` request-smuggling corpus (about 159 cases)
//! through our request parser.
//!
//! * Severe and Ambiguous cases must be rejected, except the GET/HEAD-with-a-
//!   body cases in [`AMBIGUOUS_FORWARDED_BY_DEFAULT`]: by default they are
//!   forwarded like HAProxy does, with their framing rewritten to exactly one
//!   Content-Length or Transfer-Encoding (checked here), and rejected under
//!   `option http-reject-get-body` (also checked here).
//! * Compliant cases must be accepted, except the ones in
//!   [`COMPLIANT_BUT_REJECTED`], which violate RFC 9112 and are rejected on
//!   purpose (each with its reason).
//! * Acceptable cases (RFC violations without a known desync risk) may go
//!   either way; we pin our verdict: only [`ACCEPTABLE_ACCEPTED`] are accepted.
//!
//! As a cross-check of the loader, every case that the guardian's own raw
//! analyser (`analyze_raw_request`) classifies Severe or Ambiguous must also
//! be rejected by us.
//!
//! Run with `--nocapture` to see the per-case table and the summary.

mod support;

use std::collections::BTreeMap;

use bytes::BytesMut;
use http_desync_guardian::request_analyzer::HttpRequestData;
use http_desync_guardian::RequestSafetyTier;
use proxy_user::http::{
    encode_request_head, BodyDecoder, Error, HeadRewrite, Limits, RequestHead, Side,
};
use support::desync_corpus::{self, CorpusCase, Tier, AMBIGUOUS_FORWARDED_BY_DEFAULT};

/// Compliant-tier cases we reject, with the rule that makes them invalid.
const COMPLIANT_BUT_REJECTED: &[(&str, &str)] = &[(
    "Empty URI",
    "RFC 9112 §3: request-line = method SP request-target SP HTTP-version; an empty \
     request-target (\"GET  HTTP/1.1\") is not one of the four target forms",
)];

/// Acceptable-tier cases we accept; every other Acceptable case is rejected
/// (invalid bytes in names/values, HTTP/0.9 or 1.2, spaces in the request line).
const ACCEPTABLE_ACCEPTED: &[&str] = &["Get with a body and Content-Length:0"];

/// The corpus requests have no Host field; Host checking is not what the
/// corpus is about (and a missing Host is no desync risk), so it is off here.
/// Everything else is the default, strict configuration.
fn corpus_limits() -> Limits {
    Limits {
        require_host: false,
        ..Limits::default()
    }
}

/// [`corpus_limits`] with `option http-reject-get-body`.
fn strict_limits() -> Limits {
    Limits {
        reject_body_without_semantics: true,
        ..corpus_limits()
    }
}

/// A case forwarded by default: what we send on must carry exactly one
/// framing field, saying the same length the client's head said.
fn check_forwarded_form(case: &CorpusCase, limits: &Limits) -> Result<(), String> {
    let (head, _) = RequestHead::parse(&case.request, limits)
        .map_err(|e| format!("{:?}: {e}", case.name))?
        .ok_or_else(|| format!("{:?}: incomplete head", case.name))?;
    let mut out = BytesMut::new();
    let rewrite = HeadRewrite {
        body: head.framing().into(),
        ..HeadRewrite::default()
    };
    encode_request_head(&head, &rewrite, &mut out);
    let (sent, _) = RequestHead::parse(&out, limits)
        .map_err(|e| format!("{:?}: forwarded head rejected: {e}", case.name))?
        .ok_or_else(|| format!("{:?}: forwarded head incomplete", case.name))?;
    let framing_fields = sent.headers().get_all("content-length").count()
        + sent.headers().get_all("transfer-encoding").count();
    if sent.framing() != head.framing() || framing_fields != 1 {
        return Err(format!(
            "{:?}: forwarded as {:?} with {framing_fields} framing field(s): {:?}",
            case.name,
            sent.framing(),
            String::from_utf8_lossy(&out)
        ));
    }
    Ok(())
}

#[derive(Debug)]
enum Verdict {
    /// Every complete message in the bytes was accepted.
    Accepted { messages: usize },
    /// Some message was rejected.
    Rejected(Error),
}

/// Parse `bytes` the way the proxy would: head, then body, then the next
/// pipelined head, until the bytes run out or an error occurs.
fn verdict(bytes: &[u8], limits: &Limits) -> Verdict {
    let mut buf = BytesMut::from(bytes);
    let mut messages = 0;
    loop {
        let head = match RequestHead::parse_buf(&mut buf, limits) {
            Err(e) => return Verdict::Rejected(e),
            Ok(None) => return Verdict::Accepted { messages },
            Ok(Some(head)) => head,
        };
        messages += 1;
        let mut body = BodyDecoder::new(head.framing(), Side::Client, limits);
        loop {
            match body.decode(&buf) {
                Err(e) => return Verdict::Rejected(e),
                Ok(step) => {
                    let _ = buf.split_to(step.consumed);
                    if step.done {
                        break;
                    }
                    if step.consumed == 0 {
                        // Waiting for the rest of the body.
                        return Verdict::Accepted { messages };
                    }
                }
            }
        }
    }
}

fn guardian_tier(request: &[u8]) -> Tier {
    match HttpRequestData::analyze_raw_request(request).tier {
        RequestSafetyTier::Compliant => Tier::Compliant,
        RequestSafetyTier::Acceptable => Tier::Acceptable,
        RequestSafetyTier::Ambiguous => Tier::Ambiguous,
        RequestSafetyTier::Severe => Tier::Severe,
    }
}

fn describe(v: &Verdict) -> String {
    match v {
        Verdict::Accepted { messages } => format!("accepted ({messages} message(s))"),
        Verdict::Rejected(e) => format!("rejected {} ({})", e.status(), e.kind),
    }
}

#[test]
fn desync_corpus() {
    let cases: Vec<CorpusCase> = desync_corpus::load();
    assert!(
        cases.len() >= 150,
        "corpus looks truncated: {} cases",
        cases.len()
    );
    let limits = corpus_limits();

    let mut failures = Vec::new();
    // (tier, accepted?) -> count
    let mut summary: BTreeMap<(Tier, bool), usize> = BTreeMap::new();

    for case in &cases {
        let v = verdict(&case.request, &limits);
        // Every corpus request is a complete head: "needs more bytes" would
        // mean we neither forwarded nor rejected it.
        if matches!(v, Verdict::Accepted { messages: 0 }) {
            failures.push(format!("case {:?} was left incomplete", case.name));
        }
        let accepted = matches!(v, Verdict::Accepted { messages } if messages > 0);
        *summary.entry((case.tier, accepted)).or_default() += 1;
        println!(
            "{:<10} {:<32} {:<70} [{}] -> {}",
            format!("{:?}", case.tier),
            case.file,
            case.name,
            case.reason,
            describe(&v)
        );

        let forwarded_by_default = AMBIGUOUS_FORWARDED_BY_DEFAULT.contains(&case.name.as_str());
        if forwarded_by_default {
            if let Err(e) = check_forwarded_form(case, &limits) {
                failures.push(e);
            }
            if !matches!(
                verdict(&case.request, &strict_limits()),
                Verdict::Rejected(_)
            ) {
                failures.push(format!(
                    "{:?} is not rejected under option http-reject-get-body",
                    case.name
                ));
            }
        }
        let expected_accept = match case.tier {
            Tier::Ambiguous if forwarded_by_default => true,
            Tier::Severe | Tier::Ambiguous => false,
            Tier::Compliant => !COMPLIANT_BUT_REJECTED.iter().any(|(n, _)| *n == case.name),
            Tier::Acceptable => ACCEPTABLE_ACCEPTED.contains(&case.name.as_str()),
        };
        if accepted != expected_accept {
            failures.push(format!(
                "{:?} case {:?} ({}) was {}; expected {}\n  request: {:?}",
                case.tier,
                case.name,
                case.file,
                describe(&v),
                if expected_accept {
                    "accepted"
                } else {
                    "rejected"
                },
                String::from_utf8_lossy(&case.request)
            ));
        }
        // Rejections are always 4xx/501 client errors, never 502.
        if let Verdict::Rejected(e) = &v {
            assert_eq!(e.side, Side::Client);
            assert!(matches!(e.status(), 400 | 413 | 414 | 431 | 501));
        }
        // Loader cross-check with the guardian's own raw analyser.
        let oracle = guardian_tier(&case.request);
        if oracle.must_reject() && accepted && !forwarded_by_default {
            failures.push(format!(
                "guardian's raw analyser says {oracle:?} for {:?} but we accepted it",
                case.name
            ));
        }
    }

    println!("\n{} corpus cases:", cases.len());
    for tier in [
        Tier::Severe,
        Tier::Ambiguous,
        Tier::Acceptable,
        Tier::Compliant,
    ] {
        let rejected = summary.get(&(tier, false)).copied().unwrap_or(0);
        let accepted = summary.get(&(tier, true)).copied().unwrap_or(0);
        println!(
            "  {:<10} {:>3} cases: {:>3} rejected, {:>3} accepted",
            format!("{tier:?}"),
            rejected + accepted,
            rejected,
            accepted
        );
    }
    for (name, why) in COMPLIANT_BUT_REJECTED {
        println!("  rejected Compliant case {name:?}: {why}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_listed_exception_exists_in_the_corpus() {
    let cases = desync_corpus::load();
    for (name, _) in COMPLIANT_BUT_REJECTED {
        assert!(
            cases
                .iter()
                .any(|c| c.name == *name && c.tier == Tier::Compliant),
            "{name:?} is not a Compliant corpus case"
        );
    }
    for name in AMBIGUOUS_FORWARDED_BY_DEFAULT {
        assert!(
            cases
                .iter()
                .any(|c| c.name == *name && c.tier == Tier::Ambiguous),
            "{name:?} is not an Ambiguous corpus case"
        );
    }
    for name in ACCEPTABLE_ACCEPTED {
        assert!(
            cases
                .iter()
                .any(|c| c.name == *name && c.tier == Tier::Acceptable),
            "{name:?} is not an Acceptable corpus case"
        );
    }
}
