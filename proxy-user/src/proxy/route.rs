//! Request routing (`use_backend … if <cond>`, `default_backend`) and the
//! `http-request` rules (`set-header`, `del-header`, `deny`, `return`).
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

/// Applies `rules` in order: a later `set-header`/`del-header` of the same
/// name overrides an earlier one. The first matching `deny` or `return`
/// stops the evaluation and is returned: the request is then answered by
/// the proxy, not forwarded.
pub fn apply_header_rules<'a>(
    rules: &'a [HttpRequestRule],
    req: &RequestRef<'_>,
    set: &mut Vec<(&'a str, &'a str)>,
    del: &mut Vec<&'a str>,
) -> Option<Final<'a>> {
    for rule in rules {
        if !rule.condition.as_ref().is_none_or(|c| c.matches(req)) {
            continue;
        }
        match &rule.action {
            HttpRequestAction::Deny(r) => return Some(Final::Deny(r)),
            HttpRequestAction::Return(r) => return Some(Final::Return(r)),
            HttpRequestAction::UseService(s) => return Some(Final::Service(*s)),
            HttpRequestAction::SetHeader { name, value } => {
                set.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
                del.retain(|n| !n.eq_ignore_ascii_case(name));
                set.push((name.as_str(), value.as_str()));
            }
            HttpRequestAction::DelHeader { name } => {
                set.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
                del.push(name.as_str());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_path_strips_query_and_authority() {
        assert_eq!(target_path(b"/a/b?x=1"), b"/a/b");
        assert_eq!(target_path(b"http://h:80/p?q"), b"/p");
        assert_eq!(target_path(b"http://h"), b"/");
        assert_eq!(target_path(b"*"), b"*");
    }
}
