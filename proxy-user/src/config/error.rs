//! Error and warning types produced while loading a configuration.
//!
//! Every diagnostic carries the file it came from and, when it is about a
//! specific place, a 1-based line (and column). The `Display` format is the
//! one operators see from `weir check`:
//!
//! ```text
//! configs/x.cfg:12: unknown keyword 'defualt_backend' in frontend 'web' (did you mean 'default_backend'?)
//! ```

use std::fmt;
use std::path::PathBuf;

/// One fatal problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// File the error was found in, as given to [`super::load`] / [`super::parse_str`].
    pub file: PathBuf,
    /// 1-based line number; `None` for problems with the file as a whole (e.g. unreadable).
    pub line: Option<usize>,
    /// 1-based column of the offending word, when known.
    pub column: Option<usize>,
    /// What is wrong, e.g. `unknown keyword 'x' in frontend 'web'`.
    pub message: String,
    /// How to fix it, e.g. `did you mean 'default_backend'?`. Shown in parentheses.
    pub hint: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_diagnostic(
            f,
            &self.file,
            self.line,
            &self.message,
            self.hint.as_deref(),
        )
    }
}

/// A non-fatal observation, e.g. an entity without a `guid`.
///
/// `Display` is `FILE:LINE: MESSAGE (HINT)` without a severity word; callers
/// print it as `warning: {w}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// File the warning is about.
    pub file: PathBuf,
    /// 1-based line number; `None` for warnings about the whole configuration.
    pub line: Option<usize>,
    /// What was noticed.
    pub message: String,
    /// Suggested change, if any.
    pub hint: Option<String>,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_diagnostic(
            f,
            &self.file,
            self.line,
            &self.message,
            self.hint.as_deref(),
        )
    }
}

fn write_diagnostic(
    f: &mut fmt::Formatter<'_>,
    file: &std::path::Path,
    line: Option<usize>,
    message: &str,
    hint: Option<&str>,
) -> fmt::Result {
    write!(f, "{}", file.display())?;
    if let Some(line) = line {
        write!(f, ":{line}")?;
    }
    write!(f, ": {message}")?;
    if let Some(hint) = hint {
        write!(f, " ({hint})")?;
    }
    Ok(())
}

/// All fatal errors found in one configuration, in line order.
///
/// `Display` prints one error per line followed by a count, e.g.
/// `2 errors in configs/x.cfg`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    /// The errors, sorted by line (file-level errors first). Never empty.
    pub errors: Vec<ConfigError>,
    /// Warnings found along the way; useful context when the errors are fixed.
    pub warnings: Vec<Warning>,
}

impl ConfigErrors {
    /// Builds the value from unsorted errors, sorting them by line so the
    /// report reads top to bottom regardless of which pass found them.
    pub(crate) fn new(mut errors: Vec<ConfigError>, warnings: Vec<Warning>) -> Self {
        errors.sort_by_key(|e| (e.line, e.column));
        ConfigErrors { errors, warnings }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.errors {
            writeln!(f, "{e}")?;
        }
        let n = self.errors.len();
        let file = self
            .errors
            .first()
            .map(|e| e.file.display().to_string())
            .unwrap_or_default();
        write!(f, "{n} error{} in {file}", if n == 1 { "" } else { "s" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(line: Option<usize>, message: &str, hint: Option<&str>) -> ConfigError {
        ConfigError {
            file: PathBuf::from("configs/x.cfg"),
            line,
            column: Some(3),
            message: message.to_string(),
            hint: hint.map(str::to_string),
        }
    }

    #[test]
    fn error_display_matches_the_documented_format() {
        let e = error(
            Some(12),
            "unknown keyword 'defualt_backend' in frontend 'web'",
            Some("did you mean 'default_backend'?"),
        );
        assert_eq!(
            e.to_string(),
            "configs/x.cfg:12: unknown keyword 'defualt_backend' in frontend 'web' (did you mean 'default_backend'?)"
        );
    }

    #[test]
    fn file_level_error_has_no_line_number() {
        let e = error(None, "cannot read file: not found", None);
        assert_eq!(e.to_string(), "configs/x.cfg: cannot read file: not found");
    }

    #[test]
    fn error_list_is_sorted_and_counted() {
        let errs = ConfigErrors::new(
            vec![error(Some(9), "b", None), error(Some(2), "a", None)],
            vec![],
        );
        assert_eq!(
            errs.to_string(),
            "configs/x.cfg:2: a\nconfigs/x.cfg:9: b\n2 errors in configs/x.cfg"
        );
    }

    #[test]
    fn warning_display_leaves_the_severity_to_the_caller() {
        let w = Warning {
            file: PathBuf::from("a.cfg"),
            line: Some(4),
            message: "backend 'x' has no server".into(),
            hint: None,
        };
        assert_eq!(w.to_string(), "a.cfg:4: backend 'x' has no server");
    }
}

/// An error about one line, before file/line are attached by the parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// 1-based column of the offending word (0 = unknown).
    pub col: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl Problem {
    pub(crate) fn new(col: usize, message: impl Into<String>) -> Self {
        Problem {
            col,
            message: message.into(),
            hint: None,
        }
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds a "did you mean" hint when a close candidate exists.
    pub(crate) fn suggest<'a>(
        mut self,
        word: &str,
        candidates: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        if let Some(s) = did_you_mean(word, candidates) {
            self.hint = Some(format!("did you mean '{s}'?"));
        }
        self
    }
}

/// The closest candidate to `word` by edit distance (with transpositions), if
/// it is close enough to be a plausible typo.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    // Long words are not typos of keywords; this also bounds the O(n*m) cost.
    const MAX_LEN: usize = 64;
    let len = word.chars().count();
    if len > MAX_LEN {
        return None;
    }
    let limit = (len / 3).max(1);
    candidates
        .into_iter()
        .filter(|c| c.len() <= MAX_LEN)
        .map(|c| {
            (
                edit_distance(&word.to_ascii_lowercase(), &c.to_ascii_lowercase()),
                c,
            )
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal-string-alignment distance: Levenshtein plus adjacent transpositions,
/// so `defualt` is one edit away from `default`.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let (n, m) = (a.len(), b.len());
    let mut d = vec![vec![0usize; m + 1]; n + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=n {
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[n][m]
}

#[cfg(test)]
mod suggest_tests {
    use super::*;

    #[test]
    fn transposed_letters_count_as_one_edit() {
        assert_eq!(edit_distance("defualt_backend", "default_backend"), 1);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn closest_plausible_candidate_is_suggested() {
        let cands = ["default_backend", "use_backend", "bind"];
        assert_eq!(
            did_you_mean("defualt_backend", cands),
            Some("default_backend")
        );
        assert_eq!(did_you_mean("bnd", cands), Some("bind"));
        assert_eq!(did_you_mean("zzzzzz", cands), None);
    }
}
