//! ACL conditions: the AST, its parser and a pure evaluator.
//!
//! Grammar (HAProxy's, without parentheses):
//!
//! ```text
//! condition := and-group { ("or" | "||") and-group }
//! and-group := term { term }                      # implicit AND
//! term      := ["!"] ( ACLNAME | "{" test "}" )   # "!name" also accepted
//! test      := criterion [flags] value...
//! flags     := "-i" | "-m" (str|beg|end|sub|found) | "--"
//! ```
//!
//! AND binds tighter than OR; `!` applies to a single term. Braces must be
//! separate words, as in HAProxy. Named ACLs (`acl NAME test`) declared
//! several times are OR-ed together. References are resolved when the
//! condition is parsed, so [`Condition::Acl`] carries its definition and
//! evaluation needs no lookup table.
//!
//! Criteria: `method`, `path`, `path_beg`, `path_end`, `path_sub`,
//! `hdr(NAME)` / `req.hdr(NAME)`, `hdr_beg(NAME)`, `hdr_end(NAME)`,
//! `hdr_sub(NAME)`, `hdr_cnt(NAME)` / `req.hdr_cnt(NAME)` (integer matches:
//! `N`, `eq N`, `gt N`, `ge N`, `lt N`, `le N`). A header is present with
//! `hdr(NAME) -m found`.

use std::collections::{HashMap, HashSet};
use std::fmt;

use super::error::Problem;
use super::lexer::Word;

/// What a condition can look at in a request. Implemented by the HTTP proxy.
pub trait RequestView {
    /// Request method as received, e.g. `GET`.
    fn method(&self) -> &str;
    /// Request path without the query string, e.g. `/api/v1`.
    fn path(&self) -> &str;
    /// Values of every occurrence of header `name` (matched
    /// case-insensitively), in order; empty when absent.
    fn header_values(&self, name: &str) -> Vec<&str>;
}

/// A parsed `if`/`unless` condition or ACL body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// An anonymous `{ ... }` test, or one line of a named ACL.
    Test(Test),
    /// A reference to a named ACL, with its (OR-ed) definition inlined.
    Acl {
        /// ACL name as referenced.
        name: String,
        /// The ACL's definition.
        definition: Box<Condition>,
    },
    /// `!term`
    Not(Box<Condition>),
    /// Terms written next to each other: all must match.
    And(Vec<Condition>),
    /// Groups separated by `or`/`||`: any must match.
    Or(Vec<Condition>),
}

impl Condition {
    /// Evaluates the condition against a request. Pure: no I/O, no state.
    pub fn matches<R: RequestView + ?Sized>(&self, req: &R) -> bool {
        match self {
            Condition::Test(t) => t.matches(req),
            Condition::Acl { definition, .. } => definition.matches(req),
            Condition::Not(c) => !c.matches(req),
            Condition::And(cs) => cs.iter().all(|c| c.matches(req)),
            Condition::Or(cs) => cs.iter().any(|c| c.matches(req)),
        }
    }
}

/// One criterion test: fetch a sample from the request and match it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Test {
    /// What to look at.
    pub fetch: Fetch,
    /// How to match it.
    pub pattern: Pattern,
}

/// The request sample a [`Test`] looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetch {
    /// `method`
    Method,
    /// `path*` (path without query string)
    Path,
    /// `hdr*(NAME)`: each occurrence of the header; name stored lowercase.
    Header(String),
    /// `hdr_cnt(NAME)`: number of occurrences; name stored lowercase.
    HeaderCount(String),
}

/// How a sample is matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// String match: true if any sample matches any value.
    Str {
        /// Comparison kind.
        kind: StrMatch,
        /// `-i`: ASCII case-insensitive.
        ignore_case: bool,
        /// Accepted values (at least one).
        values: Vec<String>,
    },
    /// `-m found`: true if the sample exists (header present).
    Found,
    /// Integer comparisons (for `hdr_cnt`): true if any comparison holds.
    Int(Vec<IntTest>),
}

/// String comparison kinds (`-m str|beg|end|sub`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrMatch {
    /// Whole-string equality.
    Exact,
    /// Sample starts with the value.
    Prefix,
    /// Sample ends with the value.
    Suffix,
    /// Sample contains the value.
    Substring,
}

/// One integer comparison, e.g. `gt 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntTest {
    /// Operator.
    pub op: IntOp,
    /// Right-hand side.
    pub value: u64,
}

/// Integer operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntOp {
    /// `eq` (also a bare number)
    Eq,
    /// `gt`
    Gt,
    /// `ge`
    Ge,
    /// `lt`
    Lt,
    /// `le`
    Le,
}

impl Test {
    /// Evaluates the test against a request.
    pub fn matches<R: RequestView + ?Sized>(&self, req: &R) -> bool {
        let samples: Vec<&str> = match &self.fetch {
            Fetch::Method => vec![req.method()],
            Fetch::Path => vec![req.path()],
            Fetch::Header(name) => req.header_values(name),
            Fetch::HeaderCount(name) => {
                let n = req.header_values(name).len() as u64;
                return match &self.pattern {
                    Pattern::Int(tests) => tests.iter().any(|t| t.holds(n)),
                    Pattern::Found => true,
                    Pattern::Str { .. } => false,
                };
            }
        };
        match &self.pattern {
            Pattern::Found => !samples.is_empty(),
            Pattern::Int(_) => false,
            Pattern::Str {
                kind,
                ignore_case,
                values,
            } => samples
                .iter()
                .any(|s| values.iter().any(|v| str_match(*kind, *ignore_case, s, v))),
        }
    }
}

impl IntTest {
    fn holds(&self, n: u64) -> bool {
        match self.op {
            IntOp::Eq => n == self.value,
            IntOp::Gt => n > self.value,
            IntOp::Ge => n >= self.value,
            IntOp::Lt => n < self.value,
            IntOp::Le => n <= self.value,
        }
    }
}

fn str_match(kind: StrMatch, ignore_case: bool, sample: &str, value: &str) -> bool {
    if kind == StrMatch::Exact && ignore_case {
        return sample.eq_ignore_ascii_case(value);
    }
    let (s, v) = if ignore_case {
        (sample.to_ascii_lowercase(), value.to_ascii_lowercase())
    } else {
        (sample.to_string(), value.to_string())
    };
    match kind {
        StrMatch::Exact => s == v,
        StrMatch::Prefix => s.starts_with(&v),
        StrMatch::Suffix => s.ends_with(&v),
        StrMatch::Substring => s.contains(&v),
    }
}

/// Criterion names accepted in ACLs and `{ }` blocks, for suggestions and docs.
pub const CRITERIA: &[&str] = &[
    "method",
    "path",
    "path_beg",
    "path_end",
    "path_sub",
    "hdr",
    "req.hdr",
    "hdr_beg",
    "hdr_end",
    "hdr_sub",
    "hdr_cnt",
    "req.hdr_cnt",
];

/// Parses `criterion [flags] value...` (the body of `acl NAME ...` after the
/// name, or the inside of `{ ... }`).
pub(crate) fn parse_test(words: &[Word]) -> Result<Test, Problem> {
    let Some(first) = words.first() else {
        return Err(Problem::new(0, "missing ACL criterion")
            .hint(format!("criteria: {}", CRITERIA.join(", "))));
    };
    let (base, arg) = match first.text.split_once('(') {
        Some((base, rest)) => match rest.strip_suffix(')') {
            Some(arg) if !arg.is_empty() && !arg.contains(['(', ')']) => (base, Some(arg)),
            _ => {
                return Err(Problem::new(
                    first.col,
                    format!("malformed criterion '{}'", first.text),
                )
                .hint("write it as hdr(NAME), e.g. hdr(host)"))
            }
        },
        None => (first.text.as_str(), None),
    };
    let (fetch, default_kind) = match (base, arg) {
        ("method", None) => (Fetch::Method, Some(StrMatch::Exact)),
        ("path", None) => (Fetch::Path, Some(StrMatch::Exact)),
        ("path_beg", None) => (Fetch::Path, Some(StrMatch::Prefix)),
        ("path_end", None) => (Fetch::Path, Some(StrMatch::Suffix)),
        ("path_sub", None) => (Fetch::Path, Some(StrMatch::Substring)),
        ("hdr" | "req.hdr", Some(h)) => {
            (Fetch::Header(h.to_ascii_lowercase()), Some(StrMatch::Exact))
        }
        ("hdr_beg", Some(h)) => (
            Fetch::Header(h.to_ascii_lowercase()),
            Some(StrMatch::Prefix),
        ),
        ("hdr_end", Some(h)) => (
            Fetch::Header(h.to_ascii_lowercase()),
            Some(StrMatch::Suffix),
        ),
        ("hdr_sub", Some(h)) => (
            Fetch::Header(h.to_ascii_lowercase()),
            Some(StrMatch::Substring),
        ),
        ("hdr_cnt" | "req.hdr_cnt", Some(h)) => (Fetch::HeaderCount(h.to_ascii_lowercase()), None),
        ("method" | "path" | "path_beg" | "path_end" | "path_sub", Some(_)) => {
            return Err(
                Problem::new(first.col, format!("criterion '{base}' takes no argument"))
                    .hint(format!("write '{base}' without parentheses")),
            )
        }
        (b, None) if CRITERIA.contains(&b) => {
            return Err(
                Problem::new(first.col, format!("criterion '{b}' needs a header name"))
                    .hint(format!("write it as {b}(NAME), e.g. {b}(host)")),
            )
        }
        (b, _) => {
            return Err(
                Problem::new(first.col, format!("unknown ACL criterion '{b}'"))
                    .hint(format!("criteria: {}", CRITERIA.join(", ")))
                    .suggest(b, CRITERIA.iter().copied()),
            )
        }
    };

    // Flags come first; `--` ends them so a value may start with '-'.
    let mut ignore_case = false;
    let mut kind = default_kind;
    let mut found = false;
    let mut i = 1;
    while let Some(w) = words.get(i) {
        if w.quoted || !w.text.starts_with('-') {
            break;
        }
        match w.text.as_str() {
            "-i" => ignore_case = true,
            "--" => {
                i += 1;
                break;
            }
            "-m" => {
                let Some(m) = words.get(i + 1) else {
                    return Err(Problem::new(w.col, "'-m' needs a match method")
                        .hint("use -m str, beg, end, sub or found"));
                };
                match m.text.as_str() {
                    "found" => found = true,
                    "str" | "beg" | "end" | "sub" if kind.is_none() => {
                        return Err(Problem::new(m.col, "hdr_cnt compares integers")
                            .hint("write e.g. 'hdr_cnt(x-id) gt 0'"))
                    }
                    "str" => kind = Some(StrMatch::Exact),
                    "beg" => kind = Some(StrMatch::Prefix),
                    "end" => kind = Some(StrMatch::Suffix),
                    "sub" => kind = Some(StrMatch::Substring),
                    other => {
                        return Err(
                            Problem::new(m.col, format!("unknown match method '{other}'"))
                                .hint("use -m str, beg, end, sub or found"),
                        )
                    }
                }
                i += 1;
            }
            other => return Err(
                Problem::new(w.col, format!("unknown ACL flag '{other}'")).hint(
                    "flags are -i, -m METHOD and --; write '-- VALUE' for values starting with '-'",
                ),
            ),
        }
        i += 1;
    }
    let values = &words[i.min(words.len())..];

    let pattern = if found {
        if let Some(v) = values.first() {
            return Err(Problem::new(v.col, "'-m found' takes no values")
                .hint("remove the values, or drop '-m found' to compare them"));
        }
        Pattern::Found
    } else if let Some(kind) = kind {
        if values.is_empty() {
            return Err(Problem::new(
                first.col,
                format!("criterion '{}' needs at least one value", first.text),
            )
            .hint(format!(
                "e.g. '{} VALUE' or '{} -m found'",
                first.text, first.text
            )));
        }
        Pattern::Str {
            kind,
            ignore_case,
            values: values.iter().map(|w| w.text.clone()).collect(),
        }
    } else {
        Pattern::Int(parse_int_tests(first, values)?)
    };
    Ok(Test { fetch, pattern })
}

fn parse_int_tests(criterion: &Word, values: &[Word]) -> Result<Vec<IntTest>, Problem> {
    let usage = "e.g. 'hdr_cnt(x-id) gt 0'; operators: eq, gt, ge, lt, le";
    if values.is_empty() {
        return Err(Problem::new(
            criterion.col,
            format!("criterion '{}' needs a comparison", criterion.text),
        )
        .hint(usage));
    }
    let mut tests = Vec::new();
    let mut i = 0;
    while let Some(w) = values.get(i) {
        let op = match w.text.as_str() {
            "eq" => Some(IntOp::Eq),
            "gt" => Some(IntOp::Gt),
            "ge" => Some(IntOp::Ge),
            "lt" => Some(IntOp::Lt),
            "le" => Some(IntOp::Le),
            _ => None,
        };
        let num_word = if op.is_some() {
            i += 1;
            values.get(i).ok_or_else(|| {
                Problem::new(w.col, format!("'{}' needs a number", w.text)).hint(usage)
            })?
        } else {
            w
        };
        let value = num_word.text.parse::<u64>().map_err(|_| {
            Problem::new(
                num_word.col,
                format!("'{}' is not a non-negative integer", num_word.text),
            )
            .hint(usage)
        })?;
        tests.push(IntTest {
            op: op.unwrap_or(IntOp::Eq),
            value,
        });
        i += 1;
    }
    Ok(tests)
}

/// Parses a condition (the words after `if`/`unless`). `acls` maps the
/// section's ACL names to their definitions; names that are used are added
/// to `used`. Reports every unresolved name, not just the first.
pub(crate) fn parse_condition(
    words: &[Word],
    acls: &HashMap<String, Condition>,
    used: &mut HashSet<String>,
) -> Result<Condition, Vec<Problem>> {
    let mut groups: Vec<Vec<Condition>> = vec![Vec::new()];
    let mut problems = Vec::new();
    let mut i = 0;
    while let Some(w) = words.get(i) {
        if w.is("or") || w.is("||") {
            if groups.last().is_some_and(Vec::is_empty) {
                return Err(vec![Problem::new(
                    w.col,
                    format!("'{}' needs a condition on its left", w.text),
                )]);
            }
            groups.push(Vec::new());
            i += 1;
            continue;
        }
        let mut negate = false;
        let mut term = w;
        if term.is("!") {
            negate = true;
            i += 1;
            term = words.get(i).ok_or_else(|| {
                vec![Problem::new(w.col, "'!' at end of condition")
                    .hint("'!' negates the ACL or { } block after it")]
            })?;
        }
        let cond = if term.is("{") {
            let Some(close) = words[i..].iter().position(|w| w.is("}")).map(|p| p + i) else {
                return Err(vec![Problem::new(term.col, "'{' without matching '}'")
                    .hint("close the block with a separate '}' word")]);
            };
            let inner = &words[i + 1..close];
            if let Some(nested) = inner.iter().find(|w| w.is("{")) {
                return Err(vec![Problem::new(
                    nested.col,
                    "'{' blocks cannot be nested",
                )]);
            }
            i = close + 1;
            match parse_test(inner) {
                Ok(t) => Condition::Test(t),
                Err(mut p) => {
                    if p.col == 0 {
                        p.col = term.col;
                    }
                    problems.push(p);
                    // Keep the group non-empty so later terms are still checked.
                    Condition::And(Vec::new())
                }
            }
        } else if term.is("}") {
            return Err(vec![Problem::new(term.col, "'}' without matching '{'")]);
        } else {
            i += 1;
            let mut name = term.text.as_str();
            if !term.quoted {
                if let Some(rest) = name.strip_prefix('!').filter(|r| !r.is_empty()) {
                    negate = !negate;
                    name = rest;
                }
            }
            let glued_brace = !term.quoted && (name.starts_with('{') || name.ends_with('}'));
            match acls.get(name) {
                Some(def) => {
                    used.insert(name.to_string());
                    Condition::Acl {
                        name: name.to_string(),
                        definition: Box::new(def.clone()),
                    }
                }
                None => {
                    problems.push(if glued_brace {
                        Problem::new(term.col, format!("'{name}' is not an ACL name"))
                            .hint("braces must be separate words: '{ path_beg /api }'")
                    } else {
                        Problem::new(term.col, format!("acl '{name}' is not defined"))
                            .hint("declare it with 'acl NAME CRITERION VALUE...' in this section")
                            .suggest(name, acls.keys().map(String::as_str))
                    });
                    // Keep the group non-empty so later terms are still checked.
                    Condition::And(Vec::new())
                }
            }
        };
        let cond = if negate {
            Condition::Not(Box::new(cond))
        } else {
            cond
        };
        if let Some(g) = groups.last_mut() {
            g.push(cond);
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    if groups.last().is_some_and(Vec::is_empty) {
        let col = words.last().map_or(0, |w| w.col);
        let msg = if groups.len() > 1 {
            "'or' needs a condition on its right"
        } else {
            "empty condition"
        };
        return Err(vec![
            Problem::new(col, msg).hint("e.g. 'if is_api' or 'if { path_beg /api }'")
        ]);
    }
    let mut ors: Vec<Condition> = groups
        .into_iter()
        .map(|mut g| {
            if g.len() == 1 {
                g.remove(0)
            } else {
                Condition::And(g)
            }
        })
        .collect();
    Ok(if ors.len() == 1 {
        ors.remove(0)
    } else {
        Condition::Or(ors)
    })
}

impl fmt::Display for Condition {
    /// Renders HAProxy-like syntax; `Not` of a group is shown as `!( ... )`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::Test(t) => write!(f, "{{ {t} }}"),
            Condition::Acl { name, .. } => f.write_str(name),
            Condition::Not(c) => match **c {
                Condition::And(_) | Condition::Or(_) => write!(f, "!( {c} )"),
                _ => write!(f, "!{c}"),
            },
            Condition::And(cs) => join(f, cs, " "),
            Condition::Or(cs) => join(f, cs, " || "),
        }
    }
}

fn join(f: &mut fmt::Formatter<'_>, cs: &[Condition], sep: &str) -> fmt::Result {
    for (i, c) in cs.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        write!(f, "{c}")?;
    }
    Ok(())
}

impl fmt::Display for Test {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, arg) = match &self.fetch {
            Fetch::Method => ("method", None),
            Fetch::Path => ("path", None),
            Fetch::Header(h) => ("hdr", Some(h)),
            Fetch::HeaderCount(h) => ("hdr_cnt", Some(h)),
        };
        f.write_str(name)?;
        if let Some(a) = arg {
            write!(f, "({a})")?;
        }
        match &self.pattern {
            Pattern::Found => f.write_str(" -m found"),
            Pattern::Int(ts) => {
                for t in ts {
                    let op = match t.op {
                        IntOp::Eq => "eq",
                        IntOp::Gt => "gt",
                        IntOp::Ge => "ge",
                        IntOp::Lt => "lt",
                        IntOp::Le => "le",
                    };
                    write!(f, " {op} {}", t.value)?;
                }
                Ok(())
            }
            Pattern::Str {
                kind,
                ignore_case,
                values,
            } => {
                if *ignore_case {
                    f.write_str(" -i")?;
                }
                let m = match kind {
                    StrMatch::Exact => "str",
                    StrMatch::Prefix => "beg",
                    StrMatch::Suffix => "end",
                    StrMatch::Substring => "sub",
                };
                write!(f, " -m {m}")?;
                for v in values {
                    write!(f, " {v:?}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::lexer::tokenize;

    /// A request for tests: method, path and a header list.
    struct Req {
        method: &'static str,
        path: &'static str,
        headers: Vec<(&'static str, &'static str)>,
    }

    impl RequestView for Req {
        fn method(&self) -> &str {
            self.method
        }
        fn path(&self) -> &str {
            self.path
        }
        fn header_values(&self, name: &str) -> Vec<&str> {
            self.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
                .collect()
        }
    }

    fn req(
        method: &'static str,
        path: &'static str,
        headers: &[(&'static str, &'static str)],
    ) -> Req {
        Req {
            method,
            path,
            headers: headers.to_vec(),
        }
    }

    fn words(s: &str) -> Vec<Word> {
        tokenize(s).0.pop().map(|l| l.words).unwrap_or_default()
    }

    fn test(s: &str) -> Result<Test, Problem> {
        parse_test(&words(s))
    }

    fn cond_with(s: &str, acls: &[(&str, &str)]) -> Result<Condition, Vec<Problem>> {
        let table: HashMap<String, Condition> = acls
            .iter()
            .map(|(n, t)| (n.to_string(), Condition::Test(test(t).unwrap())))
            .collect();
        parse_condition(&words(s), &table, &mut HashSet::new())
    }

    fn cond(s: &str) -> Condition {
        cond_with(s, &[("is_api", "path_beg /api"), ("is_get", "method GET")]).unwrap()
    }

    #[test]
    fn host_equality_is_case_sensitive_unless_dash_i() {
        let r = req("GET", "/", &[("Host", "Example.com")]);
        assert!(!Condition::Test(test("hdr(host) example.com").unwrap()).matches(&r));
        assert!(Condition::Test(test("req.hdr(host) -i example.com").unwrap()).matches(&r));
    }

    #[test]
    fn path_beg_and_exact_path_differ() {
        let r = req("GET", "/api/v1", &[]);
        assert!(test("path_beg /api").unwrap().matches(&r));
        assert!(!test("path /api").unwrap().matches(&r));
        assert!(test("path /nope /api/v1").unwrap().matches(&r));
        assert!(test("path_end /v1").unwrap().matches(&r));
        assert!(test("path_sub i/v").unwrap().matches(&r));
    }

    #[test]
    fn match_method_flag_overrides_the_criterion_default() {
        let r = req("GET", "/api/v1", &[]);
        assert!(test("path -m beg /api").unwrap().matches(&r));
    }

    #[test]
    fn header_presence_via_found_or_count() {
        let with = req("GET", "/", &[("X-Id", "1"), ("x-id", "2")]);
        let without = req("GET", "/", &[]);
        let found = test("req.hdr(X-Id) -m found").unwrap();
        let count = test("hdr_cnt(x-id) gt 0").unwrap();
        assert!(found.matches(&with) && !found.matches(&without));
        assert!(count.matches(&with) && !count.matches(&without));
        assert!(test("hdr_cnt(x-id) 2").unwrap().matches(&with));
        assert!(!test("hdr_cnt(x-id) lt 2").unwrap().matches(&with));
    }

    #[test]
    fn header_equality_matches_any_occurrence() {
        let r = req("GET", "/", &[("X-Env", "dev"), ("X-Env", "prod")]);
        assert!(test("hdr(x-env) prod").unwrap().matches(&r));
        assert!(!test("hdr(x-env) staging").unwrap().matches(&r));
    }

    #[test]
    fn method_matches_listed_methods() {
        let t = test("method GET HEAD").unwrap();
        assert!(t.matches(&req("HEAD", "/", &[])));
        assert!(!t.matches(&req("POST", "/", &[])));
    }

    #[test]
    fn implicit_and_binds_tighter_than_or() {
        // is_api AND is_get, OR path /health
        let c = cond("is_api is_get || { path /health }");
        assert!(c.matches(&req("GET", "/api", &[])));
        assert!(!c.matches(&req("POST", "/api", &[])));
        assert!(c.matches(&req("POST", "/health", &[])));
        assert!(matches!(c, Condition::Or(ref v) if v.len() == 2));
    }

    #[test]
    fn negation_applies_to_one_term_in_both_spellings() {
        let a = cond("! is_get is_api");
        let b = cond("!is_get is_api");
        assert_eq!(a, b);
        assert!(a.matches(&req("POST", "/api", &[])));
        assert!(!a.matches(&req("GET", "/api", &[])));
        assert!(!a.matches(&req("POST", "/x", &[])));
    }

    #[test]
    fn or_keyword_and_pipes_are_equivalent() {
        assert_eq!(cond("is_api or is_get"), cond("is_api || is_get"));
    }

    #[test]
    fn undefined_acls_are_all_reported_with_suggestions() {
        let errs = cond_with("is_apii || missing", &[("is_api", "path /")]).unwrap_err();
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].hint.as_deref(), Some("did you mean 'is_api'?"));
        assert!(errs[1].message.contains("'missing'"));
    }

    #[test]
    fn malformed_conditions_are_rejected_not_panicking() {
        for bad in [
            "",
            "||",
            "is_api ||",
            "!",
            "{ path /",
            "}",
            "{ }",
            "{path_beg /x}",
            "{ { path / } }",
        ] {
            assert!(
                cond_with(bad, &[("is_api", "path /")]).is_err(),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn bad_tests_explain_themselves() {
        assert!(test("hdr")
            .unwrap_err()
            .message
            .contains("needs a header name"));
        assert!(test("path(x) /")
            .unwrap_err()
            .message
            .contains("takes no argument"));
        assert_eq!(
            test("path_bge /").unwrap_err().hint.as_deref(),
            Some("did you mean 'path_beg'?")
        );
        assert!(test("path")
            .unwrap_err()
            .message
            .contains("at least one value"));
        assert!(test("hdr(x) -m found y").is_err());
        assert!(test("hdr(x) -z y").is_err());
        assert!(test("hdr_cnt(x) gt").is_err());
        assert!(test("hdr_cnt(x) many").is_err());
        assert!(test("hdr(x").is_err());
    }

    #[test]
    fn double_dash_allows_values_starting_with_dash() {
        let t = test("hdr(x) -- -1").unwrap();
        assert!(t.matches(&req("GET", "/", &[("x", "-1")])));
    }

    #[test]
    fn display_renders_haproxy_like_syntax() {
        assert_eq!(
            cond("!is_get || { hdr(Host) -i a.b }").to_string(),
            "!is_get || { hdr(host) -i -m str \"a.b\" }"
        );
    }
}
