//! Request routing (`use_backend … if <cond>`, `default_backend`) and the
//! `http-request` rules (`set-header`, `add-header`, `del-header`, `deny`,
//! `return`).
//!
//! Conditions are evaluated by [`crate::config::Condition::matches`] against
//! [`RequestRef`], a borrowed view of a parsed [`RequestHead`].

use std::sync::Arc;

use crate::config::{
    Condition, HttpRequestAction, HttpRequestRule, LocalReply, RequestView, Service,
};
use crate::http::RequestHead;

use super::upstream::BackendCtx;

/// A parsed request as conditions see it.
pub struct RequestRef<'a> {
    head: &'a RequestHead,
}

impl<'a> RequestRef<'a> {
    /// A view of `head`.
    pub fn new(head: &'a RequestHead) -> Self {
        Self { head }
    }
}

/// The path of a request-target: origin-form up to `?`; absolute-form
/// without `scheme://authority`; `*` and authority-form as they are.
pub fn target_path(target: &[u8]) -> &[u8] {
    let mut t = target;
    if t.first() != Some(&b'/') {
        if let Some(p) = memchr::memmem::find(t, b"://") {
            let rest = &t[p + 3..];
            t = match memchr::memchr(b'/', rest) {
                Some(s) => &rest[s..],
                None => b"/",
            };
        }
    }
    match memchr::memchr(b'?', t) {
        Some(q) => &t[..q],
        None => t,
    }
}

impl RequestView for RequestRef<'_> {
    fn method(&self) -> &str {
        std::str::from_utf8(self.head.method_bytes()).unwrap_or("")
    }

    fn path(&self) -> &str {
        std::str::from_utf8(target_path(self.head.target())).unwrap_or("")
    }

    fn header_values(&self, name: &str) -> Vec<&str> {
        self.head
            .headers()
            .get_all(name)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .collect()
    }
}

/// One `use_backend` rule with its backend resolved.
pub struct Route {
    /// `None`: always.
    pub condition: Option<Condition>,
    /// Where matching requests go.
    pub backend: Arc<BackendCtx>,
}

/// The first matching `use_backend`, else `default_backend`, else `None`
/// (the caller answers 503).
pub fn choose_backend<'r>(
    routes: &'r [Route],
    default: Option<&'r Arc<BackendCtx>>,
    req: &RequestRef<'_>,
) -> Option<&'r Arc<BackendCtx>> {
    routes
        .iter()
        .find(|r| r.condition.as_ref().is_none_or(|c| c.matches(req)))
        .map(|r| &r.backend)
        .or(default)
}

/// What a final `http-request` action decided.
#[derive(Debug, Clone, Copy)]
pub enum Final<'a> {
    /// `deny`: rejected by the rules (counted as denied).
    Deny(&'a LocalReply),
    /// `return`: answered by the proxy.
    Return(&'a LocalReply),
    /// `use-service`: answered by a built-in service.
    Service(Service),
}

/// The header changes the matching rules asked for, in the form the head
/// encoder takes them. Kept by the session and cleared per request, so the
/// vectors are allocated once per connection.
#[derive(Debug, Default)]
pub struct HeaderEdits<'a> {
    /// `set-header`: received fields of the name dropped, this value written.
    pub set: Vec<(&'a str, &'a str)>,
    /// `add-header`: written after the received fields, which are kept.
    pub add: Vec<(&'a str, &'a str)>,
    /// `del-header`: received fields of the name dropped.
    pub del: Vec<&'a str>,
}

impl HeaderEdits<'_> {
    /// Forgets the previous request's edits, keeping the allocations.
    pub fn clear(&mut self) {
        self.set.clear();
        self.add.clear();
        self.del.clear();
    }
}

/// Applies `rules` in order, as HAProxy applies them to the message: a
/// `set-header` replaces what earlier rules added or set for that name, a
/// `del-header` removes it, an `add-header` comes on top. The first matching
/// `deny` or `return` stops the evaluation and is returned: the request is
/// then answered by the proxy, not forwarded.
pub fn apply_header_rules<'a>(
    rules: &'a [HttpRequestRule],
    req: &RequestRef<'_>,
    edits: &mut HeaderEdits<'a>,
) -> Option<Final<'a>> {
    for rule in rules {
        if !rule.condition.as_ref().is_none_or(|c| c.matches(req)) {
            continue;
        }
        let other_name = |n: &str, name: &str| !n.eq_ignore_ascii_case(name);
        match &rule.action {
            HttpRequestAction::Deny(r) => return Some(Final::Deny(r)),
            HttpRequestAction::Return(r) => return Some(Final::Return(r)),
            HttpRequestAction::UseService(s) => return Some(Final::Service(*s)),
            HttpRequestAction::SetHeader { name, value } => {
                edits.set.retain(|(n, _)| other_name(n, name));
                edits.add.retain(|(n, _)| other_name(n, name));
                edits.del.retain(|n| other_name(n, name));
                edits.set.push((name.as_str(), value.as_str()));
            }
            HttpRequestAction::AddHeader { name, value } => {
                edits.add.push((name.as_str(), value.as_str()));
            }
            HttpRequestAction::DelHeader { name } => {
                edits.set.retain(|(n, _)| other_name(n, name));
                edits.add.retain(|(n, _)| other_name(n, name));
                edits.del.push(name.as_str());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(action: HttpRequestAction) -> HttpRequestRule {
        HttpRequestRule {
            action,
            condition: None,
            line: 1,
        }
    }

    fn set(name: &str, value: &str) -> HttpRequestAction {
        HttpRequestAction::SetHeader {
            name: name.into(),
            value: value.into(),
        }
    }

    fn add(name: &str, value: &str) -> HttpRequestAction {
        HttpRequestAction::AddHeader {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn rules_combine_in_order_like_haproxy() {
        let head = RequestHead::parse(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", &Default::default())
            .unwrap()
            .unwrap()
            .0;
        let req = RequestRef::new(&head);
        let rules = [
            rule(add("X-A", "1")),
            rule(add("x-a", "2")),
            rule(set("X-B", "b")),
            rule(add("X-B", "extra")),
            rule(set("X-C", "c")),
            rule(HttpRequestAction::DelHeader { name: "x-c".into() }),
            rule(add("X-D", "d")),
            rule(set("x-d", "only")),
        ];
        let mut edits = HeaderEdits::default();
        assert!(apply_header_rules(&rules, &req, &mut edits).is_none());
        assert_eq!(edits.set, [("X-B", "b"), ("x-d", "only")]);
        assert_eq!(edits.add, [("X-A", "1"), ("x-a", "2"), ("X-B", "extra")]);
        assert_eq!(edits.del, ["x-c"]);
    }

    #[test]
    fn target_path_strips_query_and_authority() {
        assert_eq!(target_path(b"/a/b?x=1"), b"/a/b");
        assert_eq!(target_path(b"http://h:80/p?q"), b"/p");
        assert_eq!(target_path(b"http://h"), b"/");
        assert_eq!(target_path(b"*"), b"*");
    }
}
