//! Body decoding: an I/O-free state machine fed with whatever bytes arrived.
//!
//! [`BodyDecoder::decode`] looks at the start of the read buffer and returns a
//! [`DecodeStep`]:
//!
//! * `consumed`: how many bytes at the start of the buffer belong to this
//!   body and have been validated. The proxy drops them from its buffer; when
//!   it passes the body through unchanged it writes exactly those bytes to the
//!   peer (chunk sizes, extensions and trailers included).
//! * `data`: the payload bytes inside `buf[..consumed]` (for re-chunking, or
//!   for counting). At most one contiguous range per step.
//! * `done`: the body ended at `consumed`; anything after it is the next
//!   message on the connection.
//!
//! A step that neither consumes nor finishes needs more input. When the peer
//! closes the connection, call [`BodyDecoder::finish`]: only a
//! [`Framing::CloseDelimited`] (or tunnel) body may end that way.
//!
//! The chunked grammar is RFC 9112 §7.1:
//!
//! ```text
//! chunked-body   = *chunk last-chunk trailer-section CRLF
//! chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-size     = 1*HEXDIG
//! last-chunk     = 1*("0") [ chunk-ext ] CRLF
//! chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//! chunk-ext-val  = token / quoted-string
//! trailer-section = *( field-line CRLF )
//! ```
//!
//! Every CR must be followed by LF; whitespace is only allowed where BWS is.

use std::ops::Range;

use super::error::{Error, ParseError, Side};
use super::framing::Framing;
use super::limits::Limits;
use super::syntax::{is_field_value_byte, is_qdtext, is_quoted_pair_byte, is_tchar};

/// The result of one [`BodyDecoder::decode`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeStep {
    /// Bytes at the start of the input that belong to the body and were
    /// validated; remove them from the buffer.
    pub consumed: usize,
    /// Payload bytes inside `input[..consumed]`; empty when there are none.
    pub data: Range<usize>,
    /// The body is complete.
    pub done: bool,
}

impl DecodeStep {
    /// True when the step carries payload bytes.
    pub fn has_data(&self) -> bool {
        !self.data.is_empty()
    }
}

/// Decoder for one message body.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    kind: Kind,
    side: Side,
    /// Payload bytes seen so far.
    body_len: u64,
    max_body: Option<u64>,
    max_digits: usize,
    max_ext_bytes: usize,
    max_trailer_bytes: usize,
}

#[derive(Debug, Clone)]
enum Kind {
    Length { remaining: u64 },
    Chunked(Chunked),
    Eof,
    Done,
}

#[derive(Debug, Clone)]
struct Chunked {
    state: ChunkState,
    /// Size of the chunk being read (while in the size states), then the
    /// data bytes still to come (in `Data`).
    size: u64,
    digits: usize,
    ext_bytes: usize,
    trailer_bytes: usize,
}

/// Every state of the chunked grammar, down to single CR and LF bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting the first hex digit of a chunk size.
    SizeStart,
    /// In the hex digits of a chunk size.
    Size,
    /// Whitespace after the size: only `;` (an extension) may follow.
    SizeBws,
    /// After `;`: optional whitespace, then an extension name.
    ExtStart,
    /// In an extension name.
    ExtName,
    /// Whitespace after an extension name.
    ExtNameBws,
    /// After `=`: optional whitespace, then a token or quoted-string.
    ExtValueStart,
    /// In a token extension value.
    ExtToken,
    /// In a quoted-string extension value.
    ExtQuoted,
    /// After a backslash in a quoted-string.
    ExtQuotedEscape,
    /// After an extension value: whitespace, `;` or CR.
    ExtAfterValue,
    /// Read the CR ending the chunk-size line; expecting LF.
    SizeLf,
    /// In chunk data.
    Data,
    /// After chunk data; expecting CR.
    DataCr,
    /// After chunk data and CR; expecting LF.
    DataLf,
    /// At the start of a trailer field line, or of the final CRLF.
    TrailerLineStart,
    /// In a trailer field name.
    TrailerName,
    /// In a trailer field value.
    TrailerValue,
    /// Read the CR ending a trailer field line; expecting LF.
    TrailerLf,
    /// Read the CR of the final empty line; expecting LF.
    EndLf,
    /// The body is complete.
    Done,
}

impl BodyDecoder {
    /// A decoder for a body with `framing`, sent by `side` (which decides
    /// the error status: a client error is 4xx, a server error 502).
    ///
    /// [`Framing::Tunnel`] decodes like [`Framing::CloseDelimited`]: every
    /// byte is data until the connection closes.
    /// [`Limits::max_body`] applies to client bodies only.
    pub fn new(framing: Framing, side: Side, limits: &Limits) -> BodyDecoder {
        let kind = match framing {
            Framing::Empty | Framing::Length(0) => Kind::Done,
            Framing::Length(n) => Kind::Length { remaining: n },
            Framing::Chunked => Kind::Chunked(Chunked {
                state: ChunkState::SizeStart,
                size: 0,
                digits: 0,
                ext_bytes: 0,
                trailer_bytes: 0,
            }),
            Framing::CloseDelimited | Framing::Tunnel => Kind::Eof,
        };
        BodyDecoder {
            kind,
            side,
            body_len: 0,
            max_body: match side {
                Side::Client => limits.max_body,
                Side::Server => None,
            },
            max_digits: limits.max_chunk_size_digits,
            max_ext_bytes: limits.max_chunk_ext_bytes,
            max_trailer_bytes: limits.max_trailer_bytes,
        }
    }

    /// Decode from the start of `input`. See the module documentation.
    pub fn decode(&mut self, input: &[u8]) -> Result<DecodeStep, Error> {
        let step = match &mut self.kind {
            Kind::Done => DecodeStep {
                consumed: 0,
                data: 0..0,
                done: true,
            },
            Kind::Eof => DecodeStep {
                consumed: input.len(),
                data: 0..input.len(),
                done: false,
            },
            Kind::Length { remaining } => {
                let take = usize::try_from(*remaining)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                *remaining -= take as u64;
                let done = *remaining == 0;
                if done {
                    self.kind = Kind::Done;
                }
                DecodeStep {
                    consumed: take,
                    data: 0..take,
                    done,
                }
            }
            Kind::Chunked(chunked) => {
                let limits = ChunkLimits {
                    max_digits: self.max_digits,
                    max_ext_bytes: self.max_ext_bytes,
                    max_trailer_bytes: self.max_trailer_bytes,
                    max_body: self.max_body,
                };
                let step = chunked
                    .decode(input, &limits, self.body_len)
                    .map_err(|kind| Error::new(self.side, kind))?;
                if step.done {
                    self.kind = Kind::Done;
                }
                step
            }
        };
        self.body_len += step.data.len() as u64;
        Ok(step)
    }

    /// True once the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        matches!(self.kind, Kind::Done)
    }

    /// Payload bytes decoded so far.
    pub fn body_len(&self) -> u64 {
        self.body_len
    }

    /// The peer closed the connection. `Ok` if that ends the body (it was
    /// complete already, or is delimited by the close); otherwise the message
    /// was truncated: [`ParseError::IncompleteBody`].
    pub fn finish(&mut self) -> Result<(), Error> {
        match self.kind {
            Kind::Done => Ok(()),
            Kind::Eof => {
                self.kind = Kind::Done;
                Ok(())
            }
            Kind::Length { .. } | Kind::Chunked(_) => {
                Err(Error::new(self.side, ParseError::IncompleteBody))
            }
        }
    }
}

struct ChunkLimits {
    max_digits: usize,
    max_ext_bytes: usize,
    max_trailer_bytes: usize,
    max_body: Option<u64>,
}

impl Chunked {
    fn decode(
        &mut self,
        input: &[u8],
        limits: &ChunkLimits,
        body_len: u64,
    ) -> Result<DecodeStep, ParseError> {
        let mut i = 0;
        while i < input.len() {
            if self.state == ChunkState::Data {
                let take = usize::try_from(self.size)
                    .unwrap_or(usize::MAX)
                    .min(input.len() - i);
                self.size -= take as u64;
                if self.size == 0 {
                    self.state = ChunkState::DataCr;
                }
                return Ok(DecodeStep {
                    consumed: i + take,
                    data: i..i + take,
                    done: false,
                });
            }
            let b = input[i];
            i += 1;
            self.byte(b, limits, body_len)?;
            if self.state == ChunkState::Done {
                return Ok(DecodeStep {
                    consumed: i,
                    data: i..i,
                    done: true,
                });
            }
        }
        Ok(DecodeStep {
            consumed: i,
            data: i..i,
            done: false,
        })
    }

    /// Advance the state machine by one framing byte.
    fn byte(&mut self, b: u8, limits: &ChunkLimits, body_len: u64) -> Result<(), ParseError> {
        use ChunkState::*;
        use ParseError::{
            ChunkExtensionTooLong, ChunkSizeOverflow, InvalidChunkDelimiter, InvalidChunkExtension,
            InvalidChunkSize, InvalidTrailer, PayloadTooLarge, TrailersTooLarge,
        };
        let is_ws = b == b' ' || b == b'\t';
        if matches!(
            self.state,
            ExtStart
                | ExtName
                | ExtNameBws
                | ExtValueStart
                | ExtToken
                | ExtQuoted
                | ExtQuotedEscape
                | ExtAfterValue
        ) || (self.state == SizeBws && b == b';')
            || (self.state == Size && b == b';')
        {
            self.ext_bytes += 1;
            if self.ext_bytes > limits.max_ext_bytes {
                return Err(ChunkExtensionTooLong);
            }
        }
        if matches!(
            self.state,
            TrailerLineStart | TrailerName | TrailerValue | TrailerLf | EndLf
        ) {
            self.trailer_bytes += 1;
            if self.trailer_bytes > limits.max_trailer_bytes {
                return Err(TrailersTooLarge);
            }
        }
        self.state = match self.state {
            SizeStart => {
                let Some(v) = hex_value(b) else {
                    return Err(InvalidChunkSize);
                };
                self.size = u64::from(v);
                self.digits = 1;
                Size
            }
            Size => {
                if let Some(v) = hex_value(b) {
                    self.digits += 1;
                    if self.digits > limits.max_digits {
                        return Err(ChunkSizeOverflow);
                    }
                    self.size = self
                        .size
                        .checked_mul(16)
                        .map(|s| s | u64::from(v))
                        .ok_or(ChunkSizeOverflow)?;
                    Size
                } else {
                    match b {
                        b';' => ExtStart,
                        b'\r' => SizeLf,
                        _ if is_ws => SizeBws,
                        _ => return Err(InvalidChunkSize),
                    }
                }
            }
            SizeBws => match b {
                b';' => ExtStart,
                _ if is_ws => SizeBws,
                _ => return Err(InvalidChunkSize),
            },
            ExtStart => match b {
                _ if is_ws => ExtStart,
                _ if is_tchar(b) => ExtName,
                _ => return Err(InvalidChunkExtension),
            },
            ExtName => match b {
                _ if is_tchar(b) => ExtName,
                b'=' => ExtValueStart,
                b';' => ExtStart,
                b'\r' => SizeLf,
                _ if is_ws => ExtNameBws,
                _ => return Err(InvalidChunkExtension),
            },
            ExtNameBws => match b {
                b'=' => ExtValueStart,
                b';' => ExtStart,
                b'\r' => SizeLf,
                _ if is_ws => ExtNameBws,
                _ => return Err(InvalidChunkExtension),
            },
            ExtValueStart => match b {
                b'"' => ExtQuoted,
                _ if is_ws => ExtValueStart,
                _ if is_tchar(b) => ExtToken,
                _ => return Err(InvalidChunkExtension),
            },
            ExtToken => match b {
                _ if is_tchar(b) => ExtToken,
                b';' => ExtStart,
                b'\r' => SizeLf,
                _ if is_ws => ExtAfterValue,
                _ => return Err(InvalidChunkExtension),
            },
            ExtQuoted => match b {
                b'"' => ExtAfterValue,
                b'\\' => ExtQuotedEscape,
                _ if is_qdtext(b) => ExtQuoted,
                _ => return Err(InvalidChunkExtension),
            },
            ExtQuotedEscape => {
                if is_quoted_pair_byte(b) {
                    ExtQuoted
                } else {
                    return Err(InvalidChunkExtension);
                }
            }
            ExtAfterValue => match b {
                b';' => ExtStart,
                b'\r' => SizeLf,
                _ if is_ws => ExtAfterValue,
                _ => return Err(InvalidChunkExtension),
            },
            SizeLf => {
                if b != b'\n' {
                    return Err(InvalidChunkDelimiter);
                }
                if self.size == 0 {
                    TrailerLineStart
                } else {
                    if let Some(max) = limits.max_body {
                        if body_len.saturating_add(self.size) > max {
                            return Err(PayloadTooLarge);
                        }
                    }
                    Data
                }
            }
            DataCr => match b {
                b'\r' => DataLf,
                _ => return Err(InvalidChunkDelimiter),
            },
            DataLf => match b {
                b'\n' => {
                    self.size = 0;
                    self.digits = 0;
                    SizeStart
                }
                _ => return Err(InvalidChunkDelimiter),
            },
            TrailerLineStart => match b {
                b'\r' => EndLf,
                _ if is_tchar(b) => TrailerName,
                // SP/HT here would be obs-fold (RFC 9112 §5.2); LF a bare LF.
                _ => return Err(InvalidTrailer),
            },
            TrailerName => match b {
                b':' => TrailerValue,
                _ if is_tchar(b) => TrailerName,
                _ => return Err(InvalidTrailer),
            },
            TrailerValue => match b {
                b'\r' => TrailerLf,
                _ if is_field_value_byte(b) => TrailerValue,
                _ => return Err(InvalidTrailer),
            },
            TrailerLf => match b {
                b'\n' => TrailerLineStart,
                _ => return Err(InvalidTrailer),
            },
            EndLf => match b {
                b'\n' => Done,
                _ => return Err(InvalidChunkDelimiter),
            },
            // `decode` handles these without calling `byte`.
            Data | Done => unreachable!("chunk state {:?} has no byte transition", self.state),
        };
        Ok(())
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything a decoder produced for one input.
    #[derive(Debug, PartialEq, Eq)]
    struct Outcome {
        data: Vec<u8>,
        consumed: usize,
        done: bool,
    }

    /// Feed `pieces` one after the other, like reads from a socket: bytes not
    /// consumed stay in the buffer and are presented again with the next piece.
    fn feed(dec: &mut BodyDecoder, pieces: &[&[u8]]) -> Result<Outcome, Error> {
        let mut buf: Vec<u8> = Vec::new();
        let mut out = Outcome {
            data: Vec::new(),
            consumed: 0,
            done: false,
        };
        for piece in pieces {
            buf.extend_from_slice(piece);
            loop {
                let step = dec.decode(&buf)?;
                out.data.extend_from_slice(&buf[step.data.clone()]);
                assert!(step.data.end <= step.consumed);
                buf.drain(..step.consumed);
                out.consumed += step.consumed;
                if step.done {
                    out.done = true;
                    return Ok(out);
                }
                if step.consumed == 0 {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn chunked(limits: &Limits) -> BodyDecoder {
        BodyDecoder::new(Framing::Chunked, Side::Client, limits)
    }

    fn decode_chunked(input: &[u8]) -> Result<Outcome, ParseError> {
        feed(&mut chunked(&Limits::default()), &[input]).map_err(|e| e.kind)
    }

    /// Decode `input` whole, then split in two at every position, and check
    /// that all deliveries agree.
    fn all_splits(input: &[u8]) -> Result<Outcome, ParseError> {
        let whole = decode_chunked(input);
        for at in 0..=input.len() {
            let (a, b) = input.split_at(at);
            let split = feed(&mut chunked(&Limits::default()), &[a, b]).map_err(|e| e.kind);
            assert_eq!(
                split,
                whole,
                "split at {at} of {:?}",
                String::from_utf8_lossy(input)
            );
        }
        whole
    }

    #[test]
    fn length_body() {
        let mut dec = BodyDecoder::new(Framing::Length(5), Side::Client, &Limits::default());
        let step = dec.decode(b"abc").unwrap();
        assert_eq!(
            step,
            DecodeStep {
                consumed: 3,
                data: 0..3,
                done: false
            }
        );
        let step = dec.decode(b"deNEXT").unwrap();
        assert_eq!(
            step,
            DecodeStep {
                consumed: 2,
                data: 0..2,
                done: true
            }
        );
        assert!(dec.is_done());
        assert_eq!(dec.body_len(), 5);
        assert_eq!(dec.decode(b"NEXT").unwrap().consumed, 0);
    }

    #[test]
    fn empty_body_is_done_at_once() {
        let mut dec = BodyDecoder::new(Framing::Empty, Side::Client, &Limits::default());
        assert_eq!(
            dec.decode(b"GET").unwrap(),
            DecodeStep {
                consumed: 0,
                data: 0..0,
                done: true
            }
        );
        assert!(dec.finish().is_ok());
    }

    #[test]
    fn eof_body_ends_on_close() {
        let mut dec = BodyDecoder::new(Framing::CloseDelimited, Side::Server, &Limits::default());
        assert_eq!(
            dec.decode(b"abc").unwrap(),
            DecodeStep {
                consumed: 3,
                data: 0..3,
                done: false
            }
        );
        assert!(!dec.is_done());
        assert!(dec.finish().is_ok());
        assert!(dec.is_done());
    }

    #[test]
    fn truncated_bodies_are_errors_on_close() {
        let mut dec = BodyDecoder::new(Framing::Length(5), Side::Server, &Limits::default());
        dec.decode(b"abc").unwrap();
        let e = dec.finish().unwrap_err();
        assert_eq!((e.kind, e.status()), (ParseError::IncompleteBody, 502));
        let mut dec = chunked(&Limits::default());
        dec.decode(b"5\r\nab").unwrap();
        assert_eq!(dec.finish().unwrap_err().kind, ParseError::IncompleteBody);
    }

    #[test]
    fn chunked_body_every_split() {
        let out = all_splits(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").unwrap();
        assert_eq!(out.data, b"hello world");
        assert!(out.done);
        assert_eq!(out.consumed, 26);
    }

    #[test]
    fn chunked_stops_at_end_of_message() {
        let input = b"1\r\na\r\n0\r\n\r\nPOST / HTTP/1.1\r\n";
        let out = decode_chunked(input).unwrap();
        assert!(out.done);
        assert_eq!(out.consumed, 11);
    }

    #[test]
    fn chunked_with_extensions_every_split() {
        let out =
            all_splits(b"A;name=value;flag ; q=\"a \\\"b\\\" c\"\r\n0123456789\r\n0;last\r\n\r\n")
                .unwrap();
        assert_eq!(out.data, b"0123456789");
        assert!(out.done);
    }

    #[test]
    fn chunked_with_trailers_every_split() {
        let out = all_splits(b"3\r\nabc\r\n0\r\nExpires: never\r\nX-Sum:  12 \r\n\r\n").unwrap();
        assert_eq!(out.data, b"abc");
        assert!(out.done);
    }

    #[test]
    fn chunked_hex_sizes_and_leading_zeros() {
        let mut body = b"0000a\r\n".to_vec();
        body.extend_from_slice(&[b'x'; 10]);
        body.extend_from_slice(b"\r\n1F\r\n");
        body.extend_from_slice(&[b'y'; 31]);
        body.extend_from_slice(b"\r\n000\r\n\r\n");
        let out = all_splits(&body).unwrap();
        assert_eq!(out.data.len(), 41);
    }

    #[test]
    fn chunked_size_overflow_is_rejected() {
        assert_eq!(
            decode_chunked(b"10000000000000000\r\n"),
            Err(ParseError::ChunkSizeOverflow)
        );
        // 16 digits: the largest u64 is accepted syntactically.
        let out = decode_chunked(b"FFFFFFFFFFFFFFFF\r\nab").unwrap();
        assert_eq!(out.data, b"ab");
        let tight = Limits {
            max_chunk_size_digits: 4,
            ..Limits::default()
        };
        let e = feed(&mut chunked(&tight), &[b"00001\r\n"]).unwrap_err();
        assert_eq!((e.kind, e.status()), (ParseError::ChunkSizeOverflow, 400));
    }

    #[test]
    fn chunked_size_non_hex_or_empty_is_rejected() {
        for input in [
            &b"g\r\n"[..],
            b"\r\n",
            b";a\r\n",
            b" 5\r\n",
            b"-5\r\n",
            b"0x5\r\n",
            b"5 \r\n",
            b"+5\r\n",
        ] {
            assert_eq!(
                decode_chunked(input),
                Err(ParseError::InvalidChunkSize),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn chunked_bare_cr_or_lf_is_rejected() {
        assert_eq!(
            decode_chunked(b"5\rhello"),
            Err(ParseError::InvalidChunkDelimiter)
        );
        assert_eq!(
            decode_chunked(b"5\nhello"),
            Err(ParseError::InvalidChunkSize)
        );
        assert_eq!(
            decode_chunked(b"5\r\nhello\n"),
            Err(ParseError::InvalidChunkDelimiter)
        );
        assert_eq!(
            decode_chunked(b"5\r\nhello\r0"),
            Err(ParseError::InvalidChunkDelimiter)
        );
        assert_eq!(
            decode_chunked(b"5\r\nhelloX"),
            Err(ParseError::InvalidChunkDelimiter)
        );
        assert_eq!(
            decode_chunked(b"0\r\n\rX"),
            Err(ParseError::InvalidChunkDelimiter)
        );
        assert_eq!(decode_chunked(b"0\r\n\n"), Err(ParseError::InvalidTrailer));
    }

    #[test]
    fn invalid_chunk_extensions_are_rejected() {
        for input in [
            &b"1;\r\n"[..],
            b"1;=v\r\n",
            b"1;a=\r\n",
            b"1;a=\"x\r\n",
            b"1;a=\"\x01\"\r\n",
            b"1;a=b c\r\n",
            b"1;a\x00\r\n",
            b"1;a=\"x\"y\r\n",
            b"1;a\rb",
        ] {
            let r = decode_chunked(input);
            assert!(
                matches!(
                    r,
                    Err(ParseError::InvalidChunkExtension | ParseError::InvalidChunkDelimiter)
                ),
                "{:?} gave {r:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn chunk_extension_limit() {
        let tight = Limits {
            max_chunk_ext_bytes: 8,
            ..Limits::default()
        };
        assert!(feed(&mut chunked(&tight), &[b"1;abcdef\r\nx\r\n"]).is_ok());
        let e = feed(&mut chunked(&tight), &[b"1;abcdefgh\r\n"]).unwrap_err();
        assert_eq!(e.kind, ParseError::ChunkExtensionTooLong);
        // The budget is per message, not per chunk.
        let e = feed(&mut chunked(&tight), &[b"1;abcd\r\nx\r\n1;abcd\r\n"]).unwrap_err();
        assert_eq!(e.kind, ParseError::ChunkExtensionTooLong);
    }

    #[test]
    fn invalid_trailers_are_rejected() {
        for input in [
            &b"0\r\nX : y\r\n\r\n"[..],
            b"0\r\n y\r\n\r\n",
            b"0\r\nX: a\x00\r\n\r\n",
            b"0\r\nX: a\rb\r\n\r\n",
            b"0\r\nX\r\n\r\n",
            b"0\r\n:y\r\n\r\n",
        ] {
            assert_eq!(
                decode_chunked(input),
                Err(ParseError::InvalidTrailer),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn trailer_limit_is_431() {
        let tight = Limits {
            max_trailer_bytes: 10,
            ..Limits::default()
        };
        assert!(
            feed(&mut chunked(&tight), &[b"0\r\nA: 12\r\n\r\n"])
                .unwrap()
                .done
        );
        let e = feed(&mut chunked(&tight), &[b"0\r\nA: 1234567\r\n\r\n"]).unwrap_err();
        assert_eq!((e.kind, e.status()), (ParseError::TrailersTooLarge, 431));
    }

    #[test]
    fn chunked_body_over_max_body_is_413() {
        let l = Limits {
            max_body: Some(4),
            ..Limits::default()
        };
        let e = feed(&mut chunked(&l), &[b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"]).unwrap_err();
        assert_eq!((e.kind, e.status()), (ParseError::PayloadTooLarge, 413));
        assert!(
            feed(&mut chunked(&l), &[b"3\r\nabc\r\n1\r\nd\r\n0\r\n\r\n"])
                .unwrap()
                .done
        );
        // Server bodies are not limited.
        let mut dec = BodyDecoder::new(Framing::Chunked, Side::Server, &l);
        assert!(
            feed(&mut dec, &[b"9\r\n123456789\r\n0\r\n\r\n"])
                .unwrap()
                .done
        );
    }

    #[test]
    fn server_chunk_errors_are_502() {
        let mut dec = BodyDecoder::new(Framing::Chunked, Side::Server, &Limits::default());
        let e = dec.decode(b"zz\r\n").unwrap_err();
        assert_eq!((e.side, e.status()), (Side::Server, 502));
    }

    #[test]
    fn every_split_of_errors_gives_the_same_error() {
        for input in [
            &b"5\r\nhelloX\r\n"[..],
            b"1;a=\"x\r\n",
            b"0\r\nX : y\r\n\r\n",
            b"10000000000000000\r\n",
        ] {
            assert!(all_splits(input).is_err());
        }
    }

    #[test]
    fn large_data_in_one_piece() {
        let mut body = b"10000\r\n".to_vec();
        body.extend(std::iter::repeat_n(b'z', 0x10000));
        body.extend_from_slice(b"\r\n0\r\n\r\n");
        let mut dec = chunked(&Limits::default());
        let step = dec.decode(&body).unwrap();
        assert_eq!(step.data, 7..7 + 0x10000);
        let rest = &body[step.consumed..];
        let step = dec.decode(rest).unwrap();
        assert!(step.done && step.consumed == rest.len());
    }
}
