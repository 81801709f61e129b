//! The request-smuggling corpus of the `http_desync_guardian` crate.
//!
//! The crate (a dev-dependency pinned to [`GUARDIAN_VERSION`]) ships its test
//! cases as YAML under `tests/` in its package. Cargo downloads the package
//! into `$CARGO_HOME/registry/src/<index>/http_desync_guardian-<version>/`
//! when the tests are built, so [`corpus_dir`] looks for it there. Set
//! `WEIR_DESYNC_CORPUS_DIR` to a directory holding the YAML files to use
//! another copy.
//!
//! Each case describes one request (method, URI, version, field lines) and
//! the tier the guardian expects. [`load`] turns every case into the raw
//! bytes the guardian's own test suite builds:
//!
//! ```text
//! {method} {uri} {version}\r\n
//! {name}: {value}\r\n   (for each header)
//! \r\n
//! ```
//!
//! with the guardian's `\xHH` escape handling (an escaped byte 0x80..=0xFF
//! becomes the UTF-8 encoding of U+0080..=U+00FF, exactly as in the
//! guardian's tests).
//!
//! Use from a test crate:
//!
//! ```ignore
//! mod support;
//! for case in support::desync_corpus::load() { /* case.name, case.request, case.tier */ }
//! ```

use std::path::{Path, PathBuf};

/// Version of `http_desync_guardian` whose corpus we read. Must match the
/// `=` pin in `proxy-user/Cargo.toml`.
pub const GUARDIAN_VERSION: &str = "0.1.3";

/// The YAML files of the corpus, in the order the guardian runs them.
pub const CORPUS_FILES: &[&str] = &[
    "single-case.yaml",
    "edge-cases.yaml",
    "rfc-compliant.yaml",
    "acceptable.yaml",
    "ambiguous.yaml",
    "bad-header-characters.yaml",
    "more-compliant-tests.yaml",
    "severe.yaml",
    "uri-specific-test-cases.yaml",
    "real-life-test-cases.yaml",
];

/// The guardian's classification of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tier {
    /// RFC compliant: must be accepted.
    Compliant,
    /// Not compliant, but no known desync risk: accepting or rejecting are both fine.
    Acceptable,
    /// Implementations may disagree on the message boundaries: must be rejected.
    Ambiguous,
    /// Malformed or clearly malicious: must be rejected.
    Severe,
}

impl Tier {
    fn parse(s: &str) -> Tier {
        match s {
            "Compliant" => Tier::Compliant,
            "Acceptable" => Tier::Acceptable,
            "Ambiguous" => Tier::Ambiguous,
            "Severe" => Tier::Severe,
            other => panic!("unknown corpus tier {other:?}"),
        }
    }

    /// True for the tiers a strict proxy must reject.
    pub fn must_reject(self) -> bool {
        matches!(self, Tier::Ambiguous | Tier::Severe)
    }
}

/// Ambiguous-tier cases the default configuration forwards: a well-framed
/// body on GET or HEAD. The guardian calls them ambiguous because a server
/// that ignores the body of a GET would read it as the next request. RFC 9112
/// §6.3 decides a request's body length from Content-Length/Transfer-Encoding
/// whatever the method, HAProxy forwards these (search APIs such as
/// Elasticsearch send GET bodies), and what reaches the origin is not
/// ambiguous: one framing field, re-written by us, and the exact body. Servers
/// that ignore it are protected by `option http-reject-get-body`, under which
/// every one of these is rejected (asserted below).
pub const AMBIGUOUS_FORWARDED_BY_DEFAULT: &[&str] = &[
    "Get with a body and Content-Length",
    "Get with a body and Transfer-Encoding",
    "Head with a body and Content-Length",
    "Head with a body and Transfer-Encoding",
    "Has a CL in GET",
    "Has a TE in GET",
];

/// One corpus case.
#[derive(Debug, Clone)]
pub struct CorpusCase {
    /// The YAML file it came from.
    pub file: &'static str,
    /// The case's human-readable name (not unique across files).
    pub name: String,
    /// The raw request bytes (head only: the corpus has no bodies).
    pub request: Vec<u8>,
    /// The expected tier.
    pub tier: Tier,
    /// The guardian's reason, e.g. `BothTeClPresent`.
    pub reason: String,
}

/// Where the corpus YAML files are.
pub fn corpus_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WEIR_DESYNC_CORPUS_DIR") {
        return PathBuf::from(dir);
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .expect("neither CARGO_HOME nor HOME is set");
    let src = cargo_home.join("registry").join("src");
    let package = format!("http_desync_guardian-{GUARDIAN_VERSION}");
    let entries =
        std::fs::read_dir(&src).unwrap_or_else(|e| panic!("cannot list {}: {e}", src.display()));
    for index in entries.flatten() {
        let candidate = index.path().join(&package).join("tests");
        if candidate.join(CORPUS_FILES[0]).is_file() {
            return candidate;
        }
    }
    panic!(
        "{package} not found under {}; build the tests once (cargo fetches dev-dependencies) \
         or set WEIR_DESYNC_CORPUS_DIR",
        src.display()
    );
}

/// Every case of every corpus file.
pub fn load() -> Vec<CorpusCase> {
    let dir = corpus_dir();
    let mut cases = Vec::new();
    for &file in CORPUS_FILES {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let docs = yaml_rust2::YamlLoader::load_from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not valid yaml: {e}", path.display()));
        let list = docs[0]
            .as_vec()
            .unwrap_or_else(|| panic!("{} is not a list of cases", path.display()));
        for case in list {
            cases.push(build_case(file, case));
        }
    }
    cases
}

fn field(node: &yaml_rust2::Yaml, key: &str, case: &str) -> String {
    let v = &node[key];
    if let Some(s) = v.as_str() {
        unescape(s)
    } else if let Some(n) = v.as_i64() {
        n.to_string()
    } else {
        panic!("case {case:?} has no string field {key:?}")
    }
}

fn build_case(file: &'static str, case: &yaml_rust2::Yaml) -> CorpusCase {
    let name = case["name"]
        .as_str()
        .expect("case without a name")
        .to_string();
    let method = field(case, "method", &name);
    let uri = field(case, "uri", &name);
    let version = field(case, "version", &name);
    let mut raw = format!("{method} {uri} {version}\r\n");
    for header in case["headers"]
        .as_vec()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let hname = field(header, "name", &name);
        let hvalue = field(header, "value", &name);
        raw.push_str(&format!("{hname}: {hvalue}\r\n"));
    }
    raw.push_str("\r\n");
    let expected = &case["expected"];
    CorpusCase {
        file,
        tier: Tier::parse(expected["tier"].as_str().expect("case without a tier")),
        reason: expected["reason"].as_str().unwrap_or_default().to_string(),
        name,
        request: raw.into_bytes(),
    }
}

/// The guardian's `unescape_value`: `\xHH`, `\b`, `\f`, `\n`, `\r`, `\t`, and
/// `\<c>` for any other character.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                let v = u8::from_str_radix(&hex, 16)
                    .unwrap_or_else(|_| panic!("bad \\x escape in {s:?}"));
                out.push(char::from(v));
            }
            Some('b') => out.push('\x08'),
            Some('f') => out.push('\x0c'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => panic!("dangling backslash in {s:?}"),
        }
    }
    out
}
