//! Splits configuration text into lines of words, HAProxy style.
//!
//! Rules:
//! - words are separated by spaces/tabs; indentation carries no meaning;
//! - an unquoted, unescaped `#` starts a comment that runs to the end of the line;
//! - `"..."` quotes a value that may contain spaces; inside it `\"`, `\\`,
//!   `\n`, `\r`, `\t` are escapes and any other `\x` stands for `x`;
//! - `'...'` quotes literally (no escapes inside);
//! - outside quotes `\x` stands for the character `x` (e.g. `\#`, `\ `);
//! - quoted and unquoted parts glue together: `a"b c"d` is the word `ab cd`.
//!
//! A line with an unterminated quote is reported and dropped entirely, so the
//! parser does not produce follow-up errors from half a line.

/// One word of a line, after quote and escape processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// The word's text with quotes removed and escapes applied.
    pub text: String,
    /// 1-based column (in characters) where the word starts.
    pub col: usize,
    /// True when any part of the word was quoted or escaped. Quoted words are
    /// never treated as operators (`{`, `}`, `!`, `||`, `or`, `if`, ...).
    pub quoted: bool,
}

impl Word {
    /// True when this is the unquoted operator/keyword `s`.
    pub fn is(&self, s: &str) -> bool {
        !self.quoted && self.text == s
    }
}

/// A non-empty line of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// 1-based line number in the file.
    pub number: usize,
    /// The words, at least one.
    pub words: Vec<Word>,
}

/// A problem found while splitting a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexError {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// What went wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

/// Splits `text` into non-empty lines of words; blank and comment-only lines
/// are skipped. Never panics.
pub fn tokenize(text: &str) -> (Vec<Line>, Vec<LexError>) {
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for (idx, raw) in text.split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        match split_line(raw, idx + 1) {
            Ok(words) if words.is_empty() => {}
            Ok(words) => lines.push(Line {
                number: idx + 1,
                words,
            }),
            Err(e) => errors.push(e),
        }
    }
    (lines, errors)
}

/// Current word being accumulated.
struct Pending {
    text: String,
    col: usize,
    quoted: bool,
}

fn split_line(raw: &str, number: usize) -> Result<Vec<Word>, LexError> {
    let mut words = Vec::new();
    let mut cur: Option<Pending> = None;
    let mut chars = raw.chars().enumerate().peekable();
    let err = |col: usize, message: &str, hint: &str| LexError {
        line: number,
        col,
        message: message.to_string(),
        hint: Some(hint.to_string()),
    };

    while let Some((i, c)) = chars.next() {
        let col = i + 1;
        match c {
            ' ' | '\t' => {
                if let Some(p) = cur.take() {
                    words.push(finish(p));
                }
            }
            '#' => break,
            '"' => {
                let p = cur.get_or_insert_with(|| new_word(col));
                p.quoted = true;
                let mut closed = false;
                while let Some((_, q)) = chars.next() {
                    match q {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => match chars.next() {
                            Some((_, 'n')) => p.text.push('\n'),
                            Some((_, 'r')) => p.text.push('\r'),
                            Some((_, 't')) => p.text.push('\t'),
                            Some((_, other)) => p.text.push(other),
                            None => break,
                        },
                        other => p.text.push(other),
                    }
                }
                if !closed {
                    return Err(err(
                        col,
                        "unterminated double quote",
                        "close the value with '\"'; write \\\" for a literal quote",
                    ));
                }
            }
            '\'' => {
                let p = cur.get_or_insert_with(|| new_word(col));
                p.quoted = true;
                let mut closed = false;
                for (_, q) in chars.by_ref() {
                    if q == '\'' {
                        closed = true;
                        break;
                    }
                    p.text.push(q);
                }
                if !closed {
                    return Err(err(
                        col,
                        "unterminated single quote",
                        "close the value with \"'\"",
                    ));
                }
            }
            '\\' => {
                let p = cur.get_or_insert_with(|| new_word(col));
                p.quoted = true;
                match chars.next() {
                    Some((_, next)) => p.text.push(next),
                    None => {
                        return Err(err(
                            col,
                            "backslash at end of line",
                            "lines cannot be continued; put the whole statement on one line",
                        ))
                    }
                }
            }
            other => cur.get_or_insert_with(|| new_word(col)).text.push(other),
        }
    }
    if let Some(p) = cur.take() {
        words.push(finish(p));
    }
    Ok(words)
}

fn new_word(col: usize) -> Pending {
    Pending {
        text: String::new(),
        col,
        quoted: false,
    }
}

fn finish(p: Pending) -> Word {
    Word {
        text: p.text,
        col: p.col,
        quoted: p.quoted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(line: &Line) -> Vec<&str> {
        line.words.iter().map(|w| w.text.as_str()).collect()
    }

    #[test]
    fn words_are_split_on_whitespace_regardless_of_indentation() {
        let (lines, errors) = tokenize("   bind\t 1.2.3.4:80   ssl\n");
        assert!(errors.is_empty());
        assert_eq!(lines.len(), 1);
        assert_eq!(texts(&lines[0]), ["bind", "1.2.3.4:80", "ssl"]);
        assert_eq!(lines[0].words[0].col, 4);
        assert_eq!(lines[0].words[1].col, 10);
    }

    #[test]
    fn comments_and_blank_lines_are_skipped_but_line_numbers_kept() {
        let (lines, _) = tokenize("# header\n\n  mode http # trailing\n");
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].number, 3);
        assert_eq!(texts(&lines[0]), ["mode", "http"]);
    }

    #[test]
    fn double_quotes_keep_spaces_and_process_escapes() {
        let (lines, errors) =
            tokenize(r#"http-request set-header X-Msg "hello \"big\" world\\ # not comment""#);
        assert!(errors.is_empty());
        let w = &lines[0].words[3];
        assert_eq!(w.text, r#"hello "big" world\ # not comment"#);
        assert!(w.quoted);
    }

    #[test]
    fn single_quotes_are_literal() {
        let (lines, _) = tokenize(r"x 'a\b c'");
        assert_eq!(lines[0].words[1].text, r"a\b c");
    }

    #[test]
    fn backslash_escapes_outside_quotes() {
        let (lines, _) = tokenize(r"x a\ b \#c");
        assert_eq!(texts(&lines[0]), ["x", "a b", "#c"]);
    }

    #[test]
    fn quoted_parts_glue_to_adjacent_text() {
        let (lines, _) = tokenize(r#"x pre"mid dle"post"#);
        assert_eq!(texts(&lines[0]), ["x", "premid dlepost"]);
    }

    #[test]
    fn empty_quotes_make_an_empty_word() {
        let (lines, _) = tokenize(r#"x """#);
        assert_eq!(texts(&lines[0]), ["x", ""]);
    }

    #[test]
    fn unterminated_quote_is_an_error_and_drops_the_line() {
        let (lines, errors) = tokenize("ok 1\nbad \"oops\nok 2");
        assert_eq!(lines.len(), 2);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 2);
        assert_eq!(errors[0].col, 5);
    }

    #[test]
    fn crlf_line_endings_are_accepted() {
        let (lines, _) = tokenize("a b\r\nc\r\n");
        assert_eq!(texts(&lines[0]), ["a", "b"]);
        assert_eq!(texts(&lines[1]), ["c"]);
    }

    #[test]
    fn quoted_operator_is_not_an_operator() {
        let (lines, _) = tokenize(r#"x "{" {"#);
        assert!(!lines[0].words[1].is("{"));
        assert!(lines[0].words[2].is("{"));
    }
}
