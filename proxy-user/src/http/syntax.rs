//! Byte classes of RFC 9110 §5.6 shared by the head parser, the chunked
//! decoder and the encoder.

/// `tchar` (RFC 9110 §5.6.2): the bytes of a `token`.
#[inline]
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// True when `s` is a non-empty `token`.
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// `field-vchar` or whitespace: what a field value may contain
/// (RFC 9110 §5.5: VCHAR, obs-text, SP, HTAB).
#[inline]
pub(crate) fn is_field_value_byte(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80
}

/// `qdtext` of a quoted-string (RFC 9110 §5.6.4).
#[inline]
pub(crate) fn is_qdtext(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e) || b >= 0x80
}

/// Byte allowed after a backslash in a quoted-pair (RFC 9110 §5.6.4).
#[inline]
pub(crate) fn is_quoted_pair_byte(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80
}

/// Strip optional whitespace (SP / HTAB) at both ends (RFC 9110 §5.6.3).
#[inline]
pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trim_ows_strips_both_ends() {
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
        assert_eq!(trim_ows(b""), b"");
    }

    #[test]
    fn token_classes() {
        assert!(is_token(b"chunked"));
        assert!(is_token(b"x-y_z.!#$%&'*+^`|~09"));
        assert!(!is_token(b""));
        assert!(!is_token(b"a b"));
        assert!(!is_token(b"a\"b"));
        assert!(!is_token(b"a;b"));
        assert!(is_qdtext(b'a') && !is_qdtext(b'"') && !is_qdtext(b'\\') && !is_qdtext(0));
        assert!(
            is_field_value_byte(0x80) && !is_field_value_byte(0x7f) && !is_field_value_byte(b'\r')
        );
    }
}
