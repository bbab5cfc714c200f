//! Why a page (or a body) was rejected.

use std::fmt;

/// A page that cannot be parsed: where and why. One error fails the whole scrape.
///
/// Displays as `line 3, column 17: expected '=' after label name`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {kind}")]
pub struct ParseError {
    /// 1-based line number. For a missing `# EOF` it is the line after the last one.
    pub line: usize,
    /// 1-based byte column within the line (1 for errors about the whole line).
    pub column: usize,
    /// What went wrong.
    pub kind: ErrorKind,
}

/// The reason in a [`ParseError`]. Strings quoted from the page are cut to 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The line's syntax is wrong; the message says what was expected.
    #[error("{0}")]
    Syntax(&'static str),
    /// The value is not a float (Go `ParseFloat` syntax, `NaN`, `±Inf`).
    #[error("invalid sample value {0:?}")]
    InvalidValue(Snippet),
    /// The timestamp is not an integer in milliseconds (text) or a decimal in seconds
    /// (OpenMetrics), or does not fit in an `i64` of milliseconds.
    #[error("invalid timestamp {0:?}")]
    InvalidTimestamp(Snippet),
    /// The same label name twice in one label set, or `__name__` in a sample's label set (the
    /// metric name is one already).
    #[error("duplicate label name {0:?}")]
    DuplicateLabel(Snippet),
    /// `# TYPE` with a type no format defines.
    #[error("unknown metric type {0:?}")]
    UnknownType(Snippet),
    /// OpenMetrics: the page does not end with `# EOF`, so it was truncated.
    #[error("missing \"# EOF\": the OpenMetrics page is truncated")]
    MissingEof,
    /// OpenMetrics: something other than a final newline after `# EOF`.
    #[error("content after \"# EOF\"")]
    ContentAfterEof,
    /// A line longer than [`Limits::max_line_bytes`](crate::Limits::max_line_bytes).
    #[error("line is longer than the limit of {limit} bytes")]
    LineTooLong {
        /// The limit.
        limit: usize,
    },
    /// More labels than [`Limits::max_labels_per_series`](crate::Limits::max_labels_per_series).
    #[error("more than {limit} labels in one label set")]
    TooManyLabels {
        /// The limit.
        limit: usize,
    },
    /// More samples than [`Limits::max_samples`](crate::Limits::max_samples).
    #[error("more than {limit} samples in the page")]
    TooManySamples {
        /// The limit.
        limit: usize,
    },
    /// More families than [`Limits::max_families`](crate::Limits::max_families).
    #[error("more than {limit} metric families in the page")]
    TooManyFamilies {
        /// The limit.
        limit: usize,
    },
    /// A body larger than [`Limits::max_body_bytes`](crate::Limits::max_body_bytes).
    #[error("page is larger than the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit.
        limit: usize,
    },
}

/// A piece of the page quoted in an error, cut to 64 characters so a hostile page cannot make
/// error messages (and logs) huge.
#[derive(Clone, PartialEq, Eq)]
pub struct Snippet(String);

impl Snippet {
    const MAX_CHARS: usize = 64;

    pub(crate) fn new(text: &str) -> Snippet {
        match text.char_indices().nth(Self::MAX_CHARS) {
            Some((cut, _)) => Snippet(format!("{}…", &text[..cut])),
            None => Snippet(text.to_owned()),
        }
    }

    /// The quoted text (possibly cut, ending in `…`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Snippet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Snippet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A body that could not be turned into page text by [`decode_body`](crate::decode_body).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The (decompressed) body is larger than the limit.
    #[error("body is larger than the limit of {limit} bytes (after decompression)")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The body starts like gzip but does not decompress.
    #[error("invalid gzip body: {0}")]
    Gzip(#[source] std::io::Error),
    /// The page is not UTF-8 (outside comment lines, where invalid sequences are replaced).
    #[error("page is not valid UTF-8 (first bad byte at offset {offset})")]
    InvalidUtf8 {
        /// Byte offset of the first invalid sequence in the (decompressed) page.
        offset: usize,
    },
}
