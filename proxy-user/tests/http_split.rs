//! Every-split-point tests: each input is replayed with its bytes delivered in
//! two pieces at every position (like hyper's `all_async_cases`), and one byte
//! at a time; the codec must produce exactly the same events as when the
//! input arrives whole. The driver below uses only the public API, the way the
//! proxy's connection loop does.

use bytes::BytesMut;
use proxy_user::http::{
    response_framing_for, BodyDecoder, Framing, Limits, Method, ParseError, RequestHead,
    ResponseHead, Side,
};

/// What the codec reported, with body data merged across steps (chunk
/// boundaries legitimately depend on how the bytes arrived).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Head {
        start: String,
        framing: Framing,
        headers: Vec<(Vec<u8>, Vec<u8>)>,
    },
    Data(Vec<u8>),
    /// End of a message, with the wire bytes its body occupied.
    End {
        body_wire_len: usize,
    },
    Error(Side, ParseError),
}

#[derive(Clone, Copy)]
enum Role {
    /// Parse requests.
    Server,
    /// Parse responses to requests with this method.
    Client(Method),
}

enum State {
    Head,
    Body(BodyDecoder, usize),
}

fn push_data(events: &mut Vec<Event>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    if let Some(Event::Data(d)) = events.last_mut() {
        d.extend_from_slice(data);
    } else {
        events.push(Event::Data(data.to_vec()));
    }
}

/// Feed `pieces` in order, as successive socket reads, through the
/// head-parse / body-decode loop. Stops at the first error.
fn drive(role: Role, pieces: &[&[u8]], limits: &Limits) -> Vec<Event> {
    let mut events = Vec::new();
    let mut buf = BytesMut::new();
    let mut state = State::Head;
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match &mut state {
                State::Head => {
                    let parsed = match role {
                        Role::Server => RequestHead::parse_buf(&mut buf, limits).map(|h| {
                            h.map(|h| {
                                let start = format!(
                                    "{} {}",
                                    String::from_utf8_lossy(h.method_bytes()),
                                    String::from_utf8_lossy(h.target())
                                );
                                let headers = h
                                    .headers()
                                    .iter()
                                    .map(|f| (f.name.to_vec(), f.value.to_vec()))
                                    .collect();
                                (start, h.framing(), headers)
                            })
                        }),
                        Role::Client(method) => {
                            ResponseHead::parse_buf(&mut buf, limits).and_then(|h| match h {
                                None => Ok(None),
                                Some(h) => {
                                    let framing = response_framing_for(method, false, &h)?;
                                    let headers = h
                                        .headers()
                                        .iter()
                                        .map(|f| (f.name.to_vec(), f.value.to_vec()))
                                        .collect();
                                    Ok(Some((h.status().to_string(), framing, headers)))
                                }
                            })
                        }
                    };
                    match parsed {
                        Ok(None) => break,
                        Ok(Some((start, framing, headers))) => {
                            events.push(Event::Head {
                                start,
                                framing,
                                headers,
                            });
                            let side = match role {
                                Role::Server => Side::Client,
                                Role::Client(_) => Side::Server,
                            };
                            state = State::Body(BodyDecoder::new(framing, side, limits), 0);
                        }
                        Err(e) => {
                            events.push(Event::Error(e.side, e.kind));
                            return events;
                        }
                    }
                }
                State::Body(decoder, wire) => match decoder.decode(&buf) {
                    Ok(step) => {
                        push_data(&mut events, &buf[step.data.clone()]);
                        let _ = buf.split_to(step.consumed);
                        *wire += step.consumed;
                        if step.done {
                            events.push(Event::End {
                                body_wire_len: *wire,
                            });
                            state = State::Head;
                        } else if step.consumed == 0 {
                            break;
                        }
                    }
                    Err(e) => {
                        events.push(Event::Error(e.side, e.kind));
                        return events;
                    }
                },
            }
        }
    }
    events
}

/// Replay `input` whole, in two pieces at every split point, and one byte at
/// a time; all must agree. Returns the events of the whole delivery.
fn all_cases(role: Role, input: &[u8], limits: &Limits) -> Vec<Event> {
    let whole = drive(role, &[input], limits);
    for at in 0..=input.len() {
        let (a, b) = input.split_at(at);
        let split = drive(role, &[a, b], limits);
        assert_eq!(
            split,
            whole,
            "split at {at} of {:?}",
            String::from_utf8_lossy(input)
        );
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(
        drive(role, &bytes, limits),
        whole,
        "byte at a time: {:?}",
        String::from_utf8_lossy(input)
    );
    whole
}

fn requests(input: &[u8]) -> Vec<Event> {
    all_cases(Role::Server, input, &Limits::default())
}

fn heads(events: &[Event]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Head { start, .. } => Some(start.as_str()),
            _ => None,
        })
        .collect()
}

fn data(events: &[Event]) -> Vec<u8> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Data(d) => Some(d.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn error(events: &[Event]) -> Option<ParseError> {
    match events.last() {
        Some(Event::Error(_, kind)) => Some(*kind),
        _ => None,
    }
}

#[test]
fn simple_get_every_split() {
    let ev = requests(b"GET /index.html HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n");
    assert_eq!(heads(&ev), ["GET /index.html"]);
    assert_eq!(ev.last(), Some(&Event::End { body_wire_len: 0 }));
}

#[test]
fn pipelined_requests_every_split() {
    let ev = requests(
        b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: h\r\n\r\n\
          PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\n",
    );
    assert_eq!(heads(&ev), ["POST /a", "GET /b", "PUT /c"]);
    assert_eq!(data(&ev), b"helloabc");
    let ends: Vec<_> = ev
        .iter()
        .filter(|e| matches!(e, Event::End { .. }))
        .collect();
    assert_eq!(
        ends,
        [
            &Event::End { body_wire_len: 5 },
            &Event::End { body_wire_len: 0 },
            &Event::End { body_wire_len: 23 },
        ]
    );
}

#[test]
fn chunked_body_every_split() {
    let ev = requests(
        b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
          1a\r\nabcdefghijklmnopqrstuvwxyz\r\n00A;name=\"quoted \\\" value\"\r\n0123456789\r\n0\r\n\r\n",
    );
    assert_eq!(data(&ev), b"abcdefghijklmnopqrstuvwxyz0123456789");
    assert!(matches!(ev.last(), Some(Event::End { .. })));
}

#[test]
fn head_fields_survive_every_split() {
    let ev = requests(b"GET / HTTP/1.1\r\nHost: h\r\nX-Long:   some value with  spaces \t\r\nX-Obs: caf\xc3\xa9\r\n\r\n");
    let Some(Event::Head { headers, .. }) = ev.first() else {
        panic!("no head: {ev:?}");
    };
    assert_eq!(
        headers,
        &[
            (b"Host".to_vec(), b"h".to_vec()),
            (b"X-Long".to_vec(), b"some value with  spaces".to_vec()),
            (b"X-Obs".to_vec(), b"caf\xc3\xa9".to_vec()),
        ]
    );
}

#[test]
fn head_errors_are_the_same_at_every_split() {
    let cases: &[(&[u8], ParseError)] = &[
        (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", ParseError::ObsFold),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX : a\r\n\r\n", ParseError::WhitespaceBeforeColon),
        (b"GET / HTTP/1.1\r\nHost: h\rX: a\r\n\r\n", ParseError::BareCr),
        (b"GET / HTTP/1.1\r\nHost: h\nX: a\r\n\r\n", ParseError::BareLf),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\0\r\n\r\n", ParseError::NulByte),
        (b"G@T / HTTP/1.1\r\nHost: h\r\n\r\n", ParseError::InvalidMethod),
        (b"GET / HTTP/1.3\r\nHost: h\r\n\r\n", ParseError::InvalidVersion),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            ParseError::ContentLengthWithTransferEncoding,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            ParseError::MultipleContentLength,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            ParseError::ChunkedNotFinal,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer_Encoding: chunked\r\n\r\n",
            ParseError::SuspiciousFramingHeader,
        ),
    ];
    for (input, expected) in cases {
        let ev = requests(input);
        assert_eq!(
            error(&ev),
            Some(*expected),
            "{:?}",
            String::from_utf8_lossy(input)
        );
        assert!(heads(&ev).is_empty(), "rejected head must not be reported");
    }
}

#[test]
fn body_errors_are_the_same_at_every_split() {
    let cases: &[(&[u8], ParseError)] = &[
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
            ParseError::ChunkSizeOverflow,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nZ\r\n",
            ParseError::InvalidChunkSize,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
            ParseError::InvalidChunkDelimiter,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2;a b\r\nab\r\n",
            ParseError::InvalidChunkExtension,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX\r\n\r\n",
            ParseError::InvalidTrailer,
        ),
    ];
    for (input, expected) in cases {
        let ev = requests(input);
        assert_eq!(heads(&ev).len(), 1);
        assert_eq!(
            error(&ev),
            Some(*expected),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn limits_are_enforced_at_every_split() {
    let limits = Limits {
        max_request_line: 20,
        max_head_bytes: 60,
        ..Limits::default()
    };
    let long_line = b"GET /aaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: h\r\n\r\n";
    let ev = all_cases(Role::Server, long_line, &limits);
    assert_eq!(error(&ev), Some(ParseError::RequestLineTooLong));
    let big_head =
        b"GET / HTTP/1.1\r\nHost: h\r\nX: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let ev = all_cases(Role::Server, big_head, &limits);
    assert_eq!(error(&ev), Some(ParseError::HeadersTooLarge));
}

#[test]
fn responses_every_split() {
    let input = b"HTTP/1.1 100 Continue\r\n\r\n\
                  HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwxyz\r\n0\r\n\r\n\
                  HTTP/1.1 204 No Content\r\n\r\n\
                  HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
    let ev = all_cases(Role::Client(Method::Get), input, &Limits::default());
    assert_eq!(heads(&ev), ["100", "200", "204", "200"]);
    assert_eq!(data(&ev), b"wxyzabc");
    assert!(error(&ev).is_none());

    // A response to HEAD has no body whatever it announces.
    let ev = all_cases(
        Role::Client(Method::Head),
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
        &Limits::default(),
    );
    assert_eq!(heads(&ev).len(), 2);
}

#[test]
fn broken_responses_are_502_at_every_split() {
    for input in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nX\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        let ev = all_cases(Role::Client(Method::Get), input, &Limits::default());
        let Some(Event::Error(side, _)) = ev.last() else {
            panic!("accepted {:?}", String::from_utf8_lossy(input));
        };
        assert_eq!(*side, Side::Server);
    }
}
