//! `option forwardfor` for one request: whether the client address is
//! added, to which field, and whether `X-Forwarded-Proto` is written.
//!
//! The frontend's and the backend's options combine the way HAProxy
//! combines them: either one turns the header on; the backend's `header`
//! name wins when the backend has the option; a client in either `except`
//! network gets nothing added; `if-none` only holds when every proxy with
//! the option says `if-none`.

use std::net::IpAddr;

use crate::config::ForwardFor;
use crate::http::Headers;

/// What to add to one forwarded request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forwarding<'a> {
    /// Add the client address to this field; `None`: leave it as received.
    pub for_header: Option<&'a str>,
    /// Write `X-Forwarded-Proto` (replacing a received one).
    pub proto: bool,
}

impl Forwarding<'_> {
    /// Nothing added: no `option forwardfor`, or an excepted client.
    pub const NONE: Forwarding<'static> = Forwarding {
        for_header: None,
        proto: false,
    };
}

/// Decides [`Forwarding`] for a request from `client` with `headers`.
pub fn decide<'a>(
    frontend: Option<&'a ForwardFor>,
    backend: Option<&'a ForwardFor>,
    client: IpAddr,
    headers: Headers<'_>,
) -> Forwarding<'a> {
    let Some(effective) = backend.or(frontend) else {
        return Forwarding::NONE;
    };
    // An excepted client is a trusted proxy that already wrote both
    // fields: its X-Forwarded-Proto (say https) must not be overwritten
    // with the scheme of its own connection to us.
    let excepted = |ff: Option<&ForwardFor>| {
        ff.and_then(|f| f.except)
            .is_some_and(|net| net.contains(client))
    };
    if excepted(frontend) || excepted(backend) {
        return Forwarding::NONE;
    }
    let always = [frontend, backend]
        .into_iter()
        .flatten()
        .any(|f| !f.if_none);
    let header = effective.header.as_str();
    // `if-none` concerns the client-address field only; the scheme is
    // still the one of this hop.
    let for_header = (always || !headers.contains(header)).then_some(header);
    Forwarding {
        for_header,
        proto: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Network;
    use crate::http::{Limits, RequestHead};

    fn head(extra: &str) -> RequestHead {
        let raw = format!("GET / HTTP/1.1\r\nHost: a\r\n{extra}\r\n");
        RequestHead::parse(raw.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap()
            .0
    }

    fn ff(header: &str, except: Option<&str>, if_none: bool) -> ForwardFor {
        ForwardFor {
            header: header.to_string(),
            except: except.map(|n| Network::parse(n).unwrap()),
            if_none,
        }
    }

    const CLIENT: &str = "10.1.2.3";

    fn run(
        fe: Option<&ForwardFor>,
        be: Option<&ForwardFor>,
        extra: &str,
    ) -> (Option<String>, bool) {
        let h = head(extra);
        let d = decide(fe, be, CLIENT.parse().unwrap(), h.headers());
        (d.for_header.map(str::to_string), d.proto)
    }

    #[test]
    fn off_unless_a_proxy_has_the_option() {
        assert_eq!(run(None, None, ""), (None, false));
        let plain = ForwardFor::default();
        assert_eq!(
            run(Some(&plain), None, ""),
            (Some("X-Forwarded-For".into()), true)
        );
        assert_eq!(
            run(None, Some(&plain), ""),
            (Some("X-Forwarded-For".into()), true)
        );
    }

    #[test]
    fn the_backend_header_name_wins() {
        let fe = ff("X-Fe", None, false);
        let be = ff("X-Be", None, false);
        assert_eq!(run(Some(&fe), Some(&be), "").0.as_deref(), Some("X-Be"));
        assert_eq!(run(Some(&fe), None, "").0.as_deref(), Some("X-Fe"));
    }

    #[test]
    fn except_in_either_proxy_adds_nothing() {
        let trusted = ff("X-Forwarded-For", Some("10.0.0.0/8"), false);
        let other = ff("X-Forwarded-For", Some("192.168.0.0/16"), false);
        assert_eq!(run(Some(&trusted), None, ""), (None, false));
        assert_eq!(run(Some(&other), Some(&trusted), ""), (None, false));
        assert_eq!(
            run(Some(&other), None, "").0.as_deref(),
            Some("X-Forwarded-For")
        );
    }

    #[test]
    fn if_none_keeps_a_received_header_but_not_the_proto() {
        let if_none = ff("X-Forwarded-For", None, true);
        assert_eq!(
            run(Some(&if_none), None, "x-forwarded-for: 1.1.1.1\r\n"),
            (None, true)
        );
        assert_eq!(
            run(Some(&if_none), None, "").0.as_deref(),
            Some("X-Forwarded-For")
        );
        // Another proxy without if-none makes it "always" (HAProxy).
        let always = ForwardFor::default();
        assert_eq!(
            run(
                Some(&if_none),
                Some(&always),
                "x-forwarded-for: 1.1.1.1\r\n"
            )
            .0
            .as_deref(),
            Some("X-Forwarded-For")
        );
    }
}
