//! Weir's configuration language: HAProxy-style sections parsed into a typed
//! model.
//!
//! ```text
//! global
//!     instance edge
//! defaults
//!     mode http
//!     timeout client 30s
//! frontend web
//!     bind :80
//!     acl is_api path_beg /api
//!     use_backend api if is_api
//!     default_backend app
//! backend app
//!     server s1 10.0.0.1:8080 check guid app-s1
//! ```
//!
//! Entry points: [`load`] reads a file, [`parse_str`] parses text. Both
//! return the [`Config`] plus non-fatal [`Warning`]s, or [`ConfigErrors`]
//! listing *every* error found (never just the first). Parsing never panics.
//!
//! Layout: [`lexer`] splits lines into words (quotes, escapes, comments),
//! `parser` (with submodules) maps keywords onto the [`model`], [`condition`] holds the ACL
//! AST and its evaluator, `validate` does whole-file checks (references,
//! duplicates), [`error`] the diagnostics. The grammar is documented in
//! `docs/config.md`.

pub mod condition;
pub mod error;
pub mod lexer;
pub mod model;
pub mod network;
mod parser;
mod validate;

use std::path::Path;

pub use condition::{Condition, RequestView};
pub use error::{ConfigError, ConfigErrors, Warning};
pub use model::*;
pub use network::Network;

/// Reads and parses the configuration file at `path`.
///
/// Invalid UTF-8 is reported as an error (with its line) but the rest of the
/// file is still checked, so all problems show up in one run.
pub fn load(path: impl AsRef<Path>) -> Result<(Config, Vec<Warning>), ConfigErrors> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| {
        ConfigErrors::new(
            vec![ConfigError {
                file: path.to_path_buf(),
                line: None,
                column: None,
                message: format!("cannot read configuration: {e}"),
                hint: None,
            }],
            vec![],
        )
    })?;
    match std::str::from_utf8(&bytes) {
        Ok(text) => parse_str(text, path),
        Err(e) => {
            let line = bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            let utf8_error = ConfigError {
                file: path.to_path_buf(),
                line: Some(line),
                column: None,
                message: "invalid UTF-8".into(),
                hint: Some("save the file as UTF-8".into()),
            };
            let text = String::from_utf8_lossy(&bytes);
            let (mut errors, warnings) = match parse_str(&text, path) {
                Ok((_, warnings)) => (vec![], warnings),
                Err(e) => (e.errors, e.warnings),
            };
            errors.push(utf8_error);
            Err(ConfigErrors::new(errors, warnings))
        }
    }
}

/// Parses configuration `text`; `path` is used in messages and to derive the
/// default [`Global::instance`] name.
pub fn parse_str(
    text: &str,
    path: impl AsRef<Path>,
) -> Result<(Config, Vec<Warning>), ConfigErrors> {
    let path = path.as_ref();
    let mut parsed = parser::parse(text, path);
    validate::validate(
        &parsed.config,
        &parsed.default_backend_lines,
        path,
        &mut parsed.errors,
        &mut parsed.warnings,
    );
    if parsed.errors.is_empty() {
        Ok((parsed.config, parsed.warnings))
    } else {
        Err(ConfigErrors::new(parsed.errors, parsed.warnings))
    }
}

#[cfg(test)]
mod tests;
