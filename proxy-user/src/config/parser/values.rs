//! Value parsers shared by the keyword handlers: argument counts, names,
//! numbers, choices, durations and socket addresses. Each returns a
//! [`Problem`] pointing at the offending word.

use super::*;

/// Returns the arguments (words after the keyword), checking their count.
pub(super) fn args(line: &Line, min: usize, max: usize) -> Result<&[Word], Problem> {
    let key = &line.words[0];
    let a = &line.words[1..];
    if a.len() >= min && a.len() <= max {
        return Ok(a);
    }
    let usage = usage(&key.text);
    let expected = match (min, max) {
        (m, n) if m == n => format!("{m} argument{}", if m == 1 { "" } else { "s" }),
        (m, usize::MAX) => format!("at least {m} argument{}", if m == 1 { "" } else { "s" }),
        (m, n) => format!("{m} to {n} arguments"),
    };
    let col = a.get(max).map_or(key.col, |w| w.col);
    Err(Problem::new(
        col,
        format!("'{}' expects {expected}, got {}", key.text, a.len()),
    )
    .hint(format!("usage: {usage}")))
}

/// Usage line of a keyword (empty for unknown ones).
pub(super) fn usage(keyword: &str) -> &'static str {
    KEYWORDS
        .iter()
        .find(|k| k.name == keyword)
        .map_or("", |k| k.usage)
}

/// Section, server and backend names: `[A-Za-z0-9_.:-]+`.
pub(super) fn check_name(w: &Word) -> Result<(), Problem> {
    if !w.text.is_empty()
        && w.text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
    {
        Ok(())
    } else {
        Err(Problem::new(w.col, format!("invalid name '{}'", w.text))
            .hint("names use letters, digits, '_', '.', ':', '-'"))
    }
}

pub(super) fn check_header_name(w: &Word) -> Result<(), Problem> {
    // RFC 9110 token characters.
    let ok = !w.text.is_empty()
        && w.text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c));
    if ok {
        Ok(())
    } else {
        Err(
            Problem::new(w.col, format!("invalid header name '{}'", w.text))
                .hint("header names are tokens such as X-Forwarded-Proto"),
        )
    }
}

/// An HTTP method: an RFC 9110 token.
pub(super) fn check_method(w: &Word) -> Result<String, Problem> {
    if !w.text.is_empty()
        && w.text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
    {
        Ok(w.text.clone())
    } else {
        Err(
            Problem::new(w.col, format!("invalid HTTP method '{}'", w.text))
                .hint("e.g. GET, HEAD or OPTIONS"),
        )
    }
}

/// A health-check request target: no spaces or control characters, which
/// would break the request line (or smuggle headers).
pub(super) fn check_uri(w: &Word) -> Result<String, Problem> {
    if !w.text.is_empty() && !w.text.chars().any(|c| c <= ' ' || c == '\u{7f}') {
        Ok(w.text.clone())
    } else {
        Err(
            Problem::new(w.col, format!("invalid check URI '{}'", w.text))
                .hint("a request target without spaces, e.g. /health"),
        )
    }
}

/// Parses an unsigned integer within `min..=max`.
pub(super) fn number(w: &Word, what: &str, min: u64, max: u64) -> Result<u64, Problem> {
    match w.text.parse::<u64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        Ok(_) => Err(
            Problem::new(w.col, format!("{what} {} is out of range", w.text))
                .hint(format!("allowed: {min} to {max}")),
        ),
        Err(_) => Err(
            Problem::new(w.col, format!("invalid number '{}' for {what}", w.text))
                .hint(format!("expected an integer from {min} to {max}")),
        ),
    }
}

/// Picks one of the listed spellings, with a suggestion on typos.
pub(super) fn choice<T: Clone>(w: &Word, what: &str, options: &[(&str, T)]) -> Result<T, Problem> {
    if let Some((_, v)) = options.iter().find(|(name, _)| *name == w.text) {
        return Ok(v.clone());
    }
    let names: Vec<&str> = options.iter().map(|o| o.0).collect();
    Err(
        Problem::new(w.col, format!("invalid value '{}' for {what}", w.text))
            .hint(format!("expected one of: {}", names.join(", ")))
            .suggest(&w.text, names.iter().copied()),
    )
}

/// A size in bytes: an integer with an optional `k`, `m` or `g` suffix
/// (1024-based, as HAProxy reads sizes), within `min..=max`.
pub(super) fn size(w: &Word, what: &str, min: u64, max: u64) -> Result<u64, Problem> {
    let text = w.text.as_str();
    let (digits, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c.to_ascii_lowercase()),
        _ => (text, 'b'),
    };
    let multiplier: u64 = match unit {
        'b' => 1,
        'k' => 1 << 10,
        'm' => 1 << 20,
        'g' => 1 << 30,
        _ => 0,
    };
    let value = digits
        .parse::<u64>()
        .ok()
        .filter(|_| multiplier > 0)
        .and_then(|n| n.checked_mul(multiplier));
    match value {
        Some(v) if (min..=max).contains(&v) => Ok(v),
        Some(_) => Err(
            Problem::new(w.col, format!("{what} {text} is out of range"))
                .hint(format!("allowed: {min} to {max} bytes")),
        ),
        None => Err(
            Problem::new(w.col, format!("invalid size '{text}' for {what}"))
                .hint("a number of bytes, optionally with a k, m or g suffix, e.g. 16k"),
        ),
    }
}

/// Why a header cannot be the target of `http-request set-header` /
/// `del-header` or `option forwardfor header`: Weir writes these fields
/// itself from the message framing and the connection state (it forwards
/// bodies as they are, without re-framing), so a rule touching them would
/// make the server read the body or the connection differently. `None`
/// for every other name.
pub(super) fn reserved_header_reason(name: &str) -> Option<&'static str> {
    let is = |n: &str| name.eq_ignore_ascii_case(n);
    if is("content-length") || is("transfer-encoding") {
        Some("it delimits the request body, which Weir forwards with the client's framing")
    } else if is("connection")
        || is("keep-alive")
        || is("proxy-connection")
        || is("te")
        || is("trailer")
        || is("upgrade")
    {
        Some("it is a hop-by-hop field that Weir writes itself for each connection")
    } else {
        None
    }
}

/// A field value from the configuration: no CR, LF, NUL or other control
/// character but HTAB (RFC 9110 §5.5). A CR or LF (the lexer turns `\r`,
/// `\n` in double quotes into them) would end the field early and inject
/// header lines of the value's choosing.
pub(super) fn check_header_value(w: &Word) -> Result<(), Problem> {
    match w.text.char_indices().find(|&(_, c)| c.is_ascii_control() && c != '\t') {
        None => Ok(()),
        Some((i, c)) => Err(Problem::new(
            w.col,
            format!("header value contains the control character {c:?} at byte {i}"),
        )
        .hint("CR, LF and NUL would split or end the header line; remove them (\\r \\n \\0 escapes included)")),
    }
}

pub(super) fn duration(w: &Word) -> Result<Duration, Problem> {
    parse_duration(&w.text).map_err(|m| {
        Problem::new(w.col, m).hint("e.g. 500ms, 5s, 1m; a bare number is milliseconds")
    })
}

/// Parses an HAProxy duration: digits with an optional unit `us`, `ms`, `s`,
/// `m`, `h` or `d`; a bare number is milliseconds.
pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits);
    if num.is_empty() {
        return Err(format!("invalid duration '{s}'"));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("duration '{s}' is too large"))?;
    let per_unit_us: u64 = match unit {
        "us" => 1,
        "" | "ms" => 1_000,
        "s" => 1_000_000,
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        _ => return Err(format!("invalid duration unit '{unit}' in '{s}'")),
    };
    n.checked_mul(per_unit_us)
        .map(Duration::from_micros)
        .ok_or_else(|| format!("duration '{s}' is too large"))
}

/// Parses `ADDR:PORT` forms: `1.2.3.4:80`, `[::1]:80`, `:80` / `*:80` (any
/// IPv4), `:::80` (any IPv6, the last colon separates the port), with an
/// optional `ipv4@` / `ipv6@` prefix. With `port_optional`, a bare address
/// gets port 0.
pub(super) fn parse_addr(w: &Word, port_optional: bool) -> Result<SocketAddr, Problem> {
    let text = w.text.as_str();
    let bad = |msg: String| Problem::new(w.col, msg);
    let ip_hint =
        "use an IP address such as 10.0.0.1:80 or [2001:db8::1]:80; host names are not resolved";
    let (family, rest) = if let Some(r) = text.strip_prefix("ipv4@") {
        (Some(4), r)
    } else if let Some(r) = text.strip_prefix("ipv6@") {
        (Some(6), r)
    } else if let Some((prefix, _)) = text.split_once('@') {
        return Err(bad(format!(
            "unsupported address family '{prefix}@' in '{text}'"
        ))
        .hint("only ipv4@ and ipv6@ are supported"));
    } else {
        (None, text)
    };
    let (host, port): (&str, Option<&str>) = if let Some(inner) = rest.strip_prefix('[') {
        let Some((h, after)) = inner.split_once(']') else {
            return Err(bad(format!("missing ']' in address '{text}'"))
                .hint("write IPv6 addresses as [2001:db8::1]:80"));
        };
        match after {
            "" => (h, None),
            _ => match after.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None => {
                    return Err(bad(format!("unexpected '{after}' after ']' in '{text}'"))
                        .hint("write [ADDR]:PORT"))
                }
            },
        }
    } else if port_optional && rest.parse::<IpAddr>().is_ok() {
        (rest, None)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None if port_optional => (rest, None),
            None => {
                return Err(bad(format!("address '{text}' has no port"))
                    .hint("write ADDR:PORT, e.g. :80 or 10.0.0.1:443"))
            }
        }
    };
    let ip: IpAddr = match host {
        "" | "*" => {
            if family == Some(6) {
                IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            } else {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            }
        }
        h => h
            .parse()
            .map_err(|_| bad(format!("'{h}' is not an IP address")).hint(ip_hint))?,
    };
    match (family, ip) {
        (Some(4), IpAddr::V6(_)) | (Some(6), IpAddr::V4(_)) => {
            return Err(
                bad(format!("address family prefix does not match '{host}'"))
                    .hint("drop the ipv4@/ipv6@ prefix"),
            );
        }
        _ => {}
    }
    let port = match port {
        None if port_optional => 0,
        None => return Err(bad(format!("address '{text}' has no port")).hint("write [ADDR]:PORT")),
        Some(p) => p.parse::<u16>().map_err(|_| {
            bad(format!("invalid port '{p}' in '{text}'")).hint("ports are 1 to 65535")
        })?,
    };
    Ok(SocketAddr::new(ip, port))
}

pub(super) fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let n = u64::from(n);
    let mut d = 2u64;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}

pub(super) fn next_prime(n: u32) -> u32 {
    (n..=u32::MAX).find(|&c| is_prime(c)).unwrap_or(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(s: &str) -> Word {
        Word {
            text: s.into(),
            col: 1,
            quoted: false,
        }
    }

    fn addr(s: &str) -> Result<SocketAddr, Problem> {
        parse_addr(&word(s), false)
    }

    #[test]
    fn durations_use_haproxy_units_and_bare_numbers_are_milliseconds() {
        assert_eq!(parse_duration("250"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_duration("5ms"), Ok(Duration::from_millis(5)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
    }

    #[test]
    fn bad_durations_are_rejected() {
        for bad in [
            "",
            "s",
            "5x",
            "1.5s",
            "-1s",
            "99999999999999999999",
            "18446744073709551615d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ipv4_ipv6_and_wildcard_addresses_parse() {
        assert_eq!(addr("10.0.0.1:80").unwrap(), "10.0.0.1:80".parse().unwrap());
        assert_eq!(addr("[::1]:443").unwrap(), "[::1]:443".parse().unwrap());
        assert_eq!(addr(":80").unwrap(), "0.0.0.0:80".parse().unwrap());
        assert_eq!(addr("*:80").unwrap(), "0.0.0.0:80".parse().unwrap());
        assert_eq!(addr(":::80").unwrap(), "[::]:80".parse().unwrap());
        assert_eq!(addr("ipv6@:80").unwrap(), "[::]:80".parse().unwrap());
        assert_eq!(
            addr("ipv4@1.2.3.4:9").unwrap(),
            "1.2.3.4:9".parse().unwrap()
        );
        assert_eq!(
            addr("2001:db8::1:8080").unwrap(),
            "[2001:db8::1]:8080".parse().unwrap()
        );
    }

    #[test]
    fn bad_addresses_are_rejected_with_reasons() {
        assert!(addr("10.0.0.1").unwrap_err().message.contains("no port"));
        assert!(addr("example.com:80")
            .unwrap_err()
            .message
            .contains("not an IP address"));
        assert!(addr("1.2.3.4:70000")
            .unwrap_err()
            .message
            .contains("invalid port"));
        assert!(addr("[::1:80").is_err());
        assert!(addr("[::1]x").is_err());
        assert!(addr("unix@/tmp/s").is_err());
        assert!(addr("ipv4@[::1]:80").is_err());
    }

    #[test]
    fn server_addresses_may_omit_the_port() {
        assert_eq!(parse_addr(&word("10.0.0.1"), true).unwrap().port(), 0);
        assert_eq!(
            parse_addr(&word("::1"), true).unwrap(),
            "[::1]:0".parse().unwrap()
        );
        assert_eq!(parse_addr(&word("[::1]"), true).unwrap().port(), 0);
    }

    #[test]
    fn sizes_take_binary_suffixes_and_ranges() {
        assert_eq!(size(&word("16384"), "x", 1, u64::MAX).unwrap(), 16384);
        assert_eq!(size(&word("16k"), "x", 1, u64::MAX).unwrap(), 16384);
        assert_eq!(size(&word("2M"), "x", 1, u64::MAX).unwrap(), 2 << 20);
        assert_eq!(size(&word("1g"), "x", 1, u64::MAX).unwrap(), 1 << 30);
        assert!(size(&word("3k"), "x", 4096, 8192)
            .unwrap_err()
            .message
            .contains("out of range"));
        for bad in ["", "k", "1.5k", "12q", "-1", "99999999999999999999g"] {
            assert!(
                size(&word(bad), "x", 0, u64::MAX)
                    .unwrap_err()
                    .message
                    .contains("invalid size"),
                "{bad}"
            );
        }
    }

    #[test]
    fn framing_and_hop_by_hop_headers_are_reserved() {
        for name in [
            "Content-Length",
            "transfer-encoding",
            "Connection",
            "UPGRADE",
            "TE",
            "Keep-Alive",
            "Proxy-Connection",
            "Trailer",
        ] {
            assert!(reserved_header_reason(name).is_some(), "{name}");
        }
        for name in ["Host", "X-Forwarded-For", "Content-Type", "Expect"] {
            assert!(reserved_header_reason(name).is_none(), "{name}");
        }
    }

    #[test]
    fn header_values_refuse_control_characters() {
        assert!(check_header_value(&word("a b\tc")).is_ok());
        for bad in ["a\r\nX-Injected: 1", "a\nb", "a\0b", "a\x7fb"] {
            assert!(check_header_value(&word(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn primes_are_recognized_for_maglev() {
        assert!(is_prime(65537) && is_prime(3) && !is_prime(65536) && !is_prime(1));
        assert_eq!(next_prime(1000), 1009);
    }
}
