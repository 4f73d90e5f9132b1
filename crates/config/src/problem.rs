//! [`Problem`]: one thing wrong with a cluster file, with its field and
//! what to do.

use std::fmt;

/// One thing wrong with a cluster file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: `replicas`, `[director] fall`, `[[store]] s2 url`...
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

impl Problem {
    pub(crate) fn new(field: &str, message: String, fix: &str) -> Self {
        Self {
            field: field.to_owned(),
            message,
            fix: fix.to_owned(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (fix: {})", self.field, self.message, self.fix)
    }
}

/// A serde or TOML message with its Rust type names in plain words
/// (`expected u32` becomes `expected a whole number`).
pub(crate) fn plain_words(message: &str) -> String {
    let mut text = message.to_owned();
    for (rust, plain) in [
        ("expected u64", "expected a whole number"),
        ("expected u32", "expected a whole number"),
        ("expected usize", "expected a whole number"),
        ("expected u16", "expected a whole number"),
        ("expected u8", "expected a whole number"),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected a boolean", "expected true or false"),
        ("expected a string", "expected a quoted string"),
        (
            "expected socket address",
            "expected an address such as \"127.0.0.1:8080\"",
        ),
        ("expected a sequence", "expected a list [...]"),
    ] {
        text = text.replace(rust, plain);
    }
    text
}

/// A TOML parse error as one line: where (line and key) and what, in
/// plain words. Never quotes the line's value (it may be a secret).
pub(crate) fn toml_error(e: &toml::de::Error, text: &str) -> String {
    let what = plain_words(e.message().trim());
    let Some(span) = e.span() else {
        return what;
    };
    let start = span.start.min(text.len());
    let line_no = text
        .get(..start)
        .map_or(0, |before| before.bytes().filter(|&b| b == b'\n').count())
        + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or_default();
    match line.split_once('=') {
        Some((key, _)) if !key.trim().is_empty() && !key.trim_start().starts_with('[') => {
            format!("line {line_no}, {}: {what}", key.trim())
        }
        _ => format!("line {line_no}: {what}"),
    }
}
