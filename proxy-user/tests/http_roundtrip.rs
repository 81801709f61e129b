//! Deterministic mutation test: valid requests are mutated with bytes that
//! matter to HTTP framing (CR, LF, SP, HTAB, `:`, `,`, `;`, NUL, obs-text,
//! digits, framing field names), then:
//!
//! * parsing never panics, and gives the same verdict whole and split;
//! * an accepted head, re-encoded for forwarding, parses back with the same
//!   method, target, Host and framing: what the proxy forwards is framed
//!   exactly as the proxy understood it (no smuggling through the proxy);
//! * an accepted body decodes without panicking.
//!
//! `WEIR_MUTATION_SEED` and `WEIR_MUTATIONS` (default 20000) run other or
//! longer sequences.

use bytes::BytesMut;
use proxy_user::http::{encode_request_head, BodyDecoder, HeadRewrite, Limits, RequestHead, Side};

const SEEDS: &[&[u8]] = &[
    b"GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n",
    b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello",
    b"PUT /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3;e=1\r\nabc\r\n0\r\nT: v\r\n\r\n",
    b"POST / HTTP/1.0\r\nContent-Length: 2\r\nConnection: keep-alive, X-B\r\nX-B: b\r\n\r\nhi",
    b"OPTIONS * HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n",
    b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
];

const INTERESTING: &[&[u8]] = &[
    b"\r",
    b"\n",
    b"\r\n",
    b" ",
    b"\t",
    b":",
    b",",
    b";",
    b"\0",
    b"\x80",
    b"\xff",
    b"0",
    b"9",
    b"f",
    b"=",
    b"\"",
    b"\\",
    b"_",
    b"-",
    b"\r\n ",
    b"\r\n\r\n",
    b"chunked",
    b"\r\nTransfer-Encoding: chunked",
    b"\r\nContent-Length: 3",
    b"\r\nHost: x",
    b"\r\nContent_Length: 1",
    b", chunked",
    b"HTTP/1.1",
];

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(3) {
        let at = rng.below(out.len() + 1);
        match rng.below(4) {
            0 => {
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                out.splice(at..at, piece.iter().copied());
            }
            1 if at < out.len() => {
                out.remove(at);
            }
            2 if at < out.len() => {
                out[at] = INTERESTING[rng.below(INTERESTING.len())][0];
            }
            _ if at < out.len() => {
                out[at] = rng.next() as u8;
            }
            _ => {}
        }
    }
    out
}

#[test]
fn mutated_requests_never_forward_ambiguous_framing() {
    let limits = Limits::default();
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let mut rng = Rng(env("WEIR_MUTATION_SEED", 0x5eed_cafe_f00d_d00d) | 1);
    let rounds = env("WEIR_MUTATIONS", 20_000) as usize;
    let (mut accepted, mut rejected, mut partial) = (0, 0, 0);

    for i in 0..rounds {
        let seed = SEEDS[i % SEEDS.len()];
        let input = mutate(&mut rng, seed);

        let whole = RequestHead::parse(&input, &limits);
        // Same verdict with the bytes split at a random point.
        let at = rng.below(input.len() + 1);
        let mut buf = BytesMut::from(&input[..at]);
        let first = RequestHead::parse_buf(&mut buf, &limits);
        let split = match first {
            Ok(None) => {
                buf.extend_from_slice(&input[at..]);
                RequestHead::parse_buf(&mut buf, &limits)
            }
            other => other,
        };
        match (&whole, &split) {
            (Ok(Some(_)), Ok(Some(_))) | (Ok(None), Ok(None)) => {}
            (Err(a), Err(b)) => assert_eq!(
                a.status(),
                b.status(),
                "{:?}",
                String::from_utf8_lossy(&input)
            ),
            _ => panic!(
                "whole {:?} vs split at {at} {:?} for {:?}",
                whole.as_ref().map(|o| o.is_some()),
                split.as_ref().map(|o| o.is_some()),
                String::from_utf8_lossy(&input)
            ),
        }

        let (head, consumed) = match whole {
            Err(e) => {
                assert!(matches!(e.status(), 400 | 413 | 414 | 431 | 501));
                rejected += 1;
                continue;
            }
            Ok(None) => {
                partial += 1;
                continue;
            }
            Ok(Some(parsed)) => parsed,
        };
        accepted += 1;

        // Re-encode as the proxy forwards it, and parse that back.
        let mut out = BytesMut::new();
        let rewrite = HeadRewrite {
            forwarded_for: Some("192.0.2.9".parse().unwrap()),
            forwarded_proto: Some("http"),
            body: head.framing().into(),
            ..HeadRewrite::default()
        };
        encode_request_head(&head, &rewrite, &mut out);
        let strict = Limits {
            require_host: head.version() == proxy_user::http::Version::Http11,
            ..Limits::default()
        };
        let (again, n) = RequestHead::parse(&out, &strict)
            .unwrap_or_else(|e| {
                panic!(
                    "forwarded head rejected ({e}): {:?}\n from {:?}",
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&input)
                )
            })
            .expect("forwarded head is complete");
        assert_eq!(n, out.len());
        assert_eq!(
            again.framing(),
            head.framing(),
            "{:?}",
            String::from_utf8_lossy(&input)
        );
        assert_eq!(again.method_bytes(), head.method_bytes());
        assert_eq!(again.target(), head.target());
        assert_eq!(again.host(), head.host());

        // The body decodes (or fails cleanly) from what follows the head.
        let mut body = BodyDecoder::new(head.framing(), Side::Client, &limits);
        let _ = body.decode(&input[consumed..]);
    }

    println!("mutations: {accepted} accepted, {rejected} rejected, {partial} incomplete");
    assert!(
        accepted > 1_000 && rejected > 1_000,
        "mutations too weak: {accepted}/{rejected}"
    );
}
