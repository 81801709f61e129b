//! Allocation budget of the hot paths, measured with a counting global
//! allocator (its own test binary, so no other test is affected).
//!
//! * Parsing a head allocates a fixed number of times whatever the number of
//!   fields: no allocation per header.
//! * Decoding a body and encoding a head into a buffer with room allocate
//!   nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::BytesMut;
use proxy_user::http::{
    encode_request_head, BodyDecoder, Framing, HeadRewrite, Limits, RequestHead, Side,
};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Count only the allocations of the thread under measurement.
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ARMED.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations<R>(f: impl FnOnce() -> R) -> (usize, R) {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    ARMED.with(|a| a.set(true));
    let r = f();
    ARMED.with(|a| a.set(false));
    (ALLOCATIONS.load(Ordering::Relaxed) - before, r)
}

fn request_with_fields(n: usize) -> Vec<u8> {
    let mut req = b"POST /upload?id=7 HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n".to_vec();
    for i in 0..n {
        req.extend_from_slice(format!("X-Field-{i}: value number {i}\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    req
}

#[test]
fn allocation_budget() {
    let limits = Limits::default();

    // parse(): one copy of the head bytes + one span table.
    let small = request_with_fields(1);
    let large = request_with_fields(60);
    let (a_small, r) = allocations(|| RequestHead::parse(&small, &limits));
    assert!(r.unwrap().is_some());
    let (a_large, r) = allocations(|| RequestHead::parse(&large, &limits));
    let (head, _) = r.unwrap().unwrap();
    assert_eq!(head.headers().len(), 63);
    assert_eq!(
        a_small, a_large,
        "allocations must not grow with the field count"
    );
    assert!(a_small <= 2, "parse allocated {a_small} times");

    // parse_buf(): the head bytes are split off the read buffer, not copied.
    // The first split of a fresh BytesMut allocates once to make its storage
    // shared, so measure the second of two pipelined requests, as on a
    // long-lived connection.
    let mut buf = BytesMut::from(&[&small[..], &large[..]].concat()[..]);
    assert!(RequestHead::parse_buf(&mut buf, &limits).unwrap().is_some());
    let (a_buf, r) = allocations(|| RequestHead::parse_buf(&mut buf, &limits));
    assert!(r.unwrap().is_some());
    assert!(buf.is_empty());
    assert!(a_buf <= 1, "parse_buf allocated {a_buf} times");

    // Encoding into a buffer with room: no allocation, even with XFF.
    let rewrite = HeadRewrite {
        forwarded_for: Some("192.0.2.1".parse().unwrap()),
        forwarded_proto: Some("https"),
        body: head.framing().into(),
        ..HeadRewrite::default()
    };
    let mut out = BytesMut::with_capacity(64 * 1024);
    let (a_enc, ()) = allocations(|| encode_request_head(&head, &rewrite, &mut out));
    assert_eq!(a_enc, 0, "encoding allocated");
    assert!(out.starts_with(b"POST /upload?id=7 HTTP/1.1\r\nHost: example.com\r\nX-Field-0: "));
    assert!(out.ends_with(b"x-forwarded-proto: https\r\ntransfer-encoding: chunked\r\n\r\n"));

    // Decoding a chunked body: no allocation.
    let body = b"5\r\nhello\r\n3;a=\"b\"\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n";
    let mut dec = BodyDecoder::new(Framing::Chunked, Side::Client, &limits);
    let (a_dec, at) = allocations(|| {
        let mut at = 0;
        loop {
            let step = dec.decode(&body[at..]).unwrap();
            at += step.consumed;
            if step.done {
                break at;
            }
        }
    });
    assert_eq!(at, body.len());
    assert_eq!(a_dec, 0, "decoding allocated");
}
