//! Micro-benchmark of the HTTP/1.1 codec's hot paths (no criterion: plain
//! timing loops, `harness = false`).
//!
//! ```text
//! cargo bench -p proxy-user --bench http_parse
//! ```
//!
//! Prints nanoseconds per request head (parse, and parse + re-encode for
//! forwarding) and the chunked decoder's throughput.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use proxy_user::http::{
    encode_request_head, BodyDecoder, Framing, HeadRewrite, Limits, RequestHead, ResponseHead, Side,
};

/// A typical browser request head: 12 fields, ~600 bytes.
const REQUEST: &[u8] = b"GET /static/js/app.4f9c2e.js?v=12 HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: */*\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: https://www.example.com/products/index.html\r\n\
Connection: keep-alive\r\n\
Cookie: session=6f1c9a0e5b2d4f7a8c3e1b0d9f2a4c6e; theme=dark; consent=1\r\n\
Sec-Fetch-Dest: script\r\n\
Sec-Fetch-Mode: no-cors\r\n\
Sec-Fetch-Site: same-origin\r\n\
If-None-Match: \"4f9c2e-1a2b\"\r\n\r\n";

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Date: Sat, 21 Nov 2026 07:00:00 GMT\r\n\
Server: origin\r\n\
Content-Type: application/javascript\r\n\
Content-Length: 48213\r\n\
Cache-Control: public, max-age=31536000, immutable\r\n\
ETag: \"4f9c2e-1a2b\"\r\n\
Vary: Accept-Encoding\r\n\r\n";

/// Run `f` for about `budget`, return nanoseconds per call.
fn time<F: FnMut()>(budget: Duration, mut f: F) -> f64 {
    // Warm up, and size the batch so that timer reads are negligible.
    for _ in 0..1_000 {
        f();
    }
    let mut iterations: u64 = 0;
    let start = Instant::now();
    while start.elapsed() < budget {
        for _ in 0..1_000 {
            f();
        }
        iterations += 1_000;
    }
    start.elapsed().as_nanos() as f64 / iterations as f64
}

fn main() {
    let limits = Limits::default();
    let budget = Duration::from_millis(700);

    // Reference: httparse alone, without our checks, framing and copy.
    let ns = time(budget, || {
        let mut fields = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut fields);
        black_box(req.parse(black_box(REQUEST)).unwrap());
    });
    println!("reference: httparse alone on the same head:    {ns:>8.0} ns/head");

    let ns = time(budget, || {
        let parsed = RequestHead::parse(black_box(REQUEST), &limits).unwrap();
        black_box(parsed);
    });
    println!(
        "request head parse ({} bytes, 13 fields):    {ns:>8.0} ns/head",
        REQUEST.len()
    );

    let (head, _) = RequestHead::parse(REQUEST, &limits).unwrap().unwrap();
    let rewrite = HeadRewrite {
        forwarded_for: Some("192.0.2.1".parse().unwrap()),
        forwarded_proto: Some("https"),
        body: head.framing().into(),
        ..HeadRewrite::default()
    };
    let mut out = BytesMut::with_capacity(4096);
    let ns = time(budget, || {
        out.clear();
        encode_request_head(black_box(&head), &rewrite, &mut out);
        black_box(&out);
    });
    println!("request head encode (xff, proto, hop-by-hop):  {ns:>8.0} ns/head");

    let ns = time(budget, || {
        let parsed = ResponseHead::parse(black_box(RESPONSE), &limits).unwrap();
        black_box(parsed);
    });
    println!(
        "response head parse ({} bytes, 7 fields):    {ns:>8.0} ns/head",
        RESPONSE.len()
    );

    // Chunked body: 64 chunks of 1 KiB, then 4 KiB of 16-byte chunks.
    let mut body = Vec::new();
    let mut payload = 0usize;
    for _ in 0..64 {
        body.extend_from_slice(b"400\r\n");
        body.extend(std::iter::repeat_n(b'x', 1024));
        body.extend_from_slice(b"\r\n");
        payload += 1024;
    }
    for _ in 0..256 {
        body.extend_from_slice(b"10;ext=1\r\n");
        body.extend(std::iter::repeat_n(b'y', 16));
        body.extend_from_slice(b"\r\n");
        payload += 16;
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let ns = time(budget, || {
        let mut dec = BodyDecoder::new(Framing::Chunked, Side::Client, &limits);
        let mut at = 0;
        loop {
            let step = dec.decode(black_box(&body[at..])).unwrap();
            at += step.consumed;
            if step.done {
                break;
            }
        }
        black_box(at);
    });
    println!(
        "chunked decode ({} KiB payload, 320 chunks):  {:>8.0} ns/body, {:.0} MiB/s",
        payload / 1024,
        ns,
        body.len() as f64 / (ns / 1e9) / (1024.0 * 1024.0)
    );
}
