//! `#` lines: `# HELP`, `# TYPE`, OpenMetrics's `# UNIT` and `# EOF`, and plain comments. Read
//! here into a [`Comment`]; the line loop gives its metadata to a family.

use crate::Text;

use crate::error::{ErrorKind, Snippet};
use crate::lexer::{Cursor, LineError, LineResult};
use crate::model::{Format, MetricType};

/// What a `#` line says.
pub(super) enum Comment<'a> {
    /// A comment (or a keyword this format does not have, as `# EOF` in the text format).
    Ignored,
    /// OpenMetrics `# EOF`.
    Eof,
    /// `# HELP`, `# TYPE` or `# UNIT` about the family `name`, which starts at `name_at`.
    Metadata {
        name: Text<'a>,
        name_at: usize,
        metadata: Metadata<'a>,
    },
}

/// What a `# HELP`/`# TYPE`/`# UNIT` line declares.
pub(super) enum Metadata<'a> {
    /// The help text, unescaped.
    Help(Text<'a>),
    /// The type.
    Type(MetricType),
    /// The unit, trimmed.
    Unit(&'a str),
}

/// Reads a `#` line from its `#`.
pub(super) fn read_comment<'a>(mut cur: Cursor<'a>, format: Format) -> LineResult<Comment<'a>> {
    /// The keyword of a metadata line.
    enum Keyword {
        Help,
        Type,
        Unit,
    }
    cur.bump(); // '#'
    if !cur.skip_blanks() {
        return Ok(Comment::Ignored); // "#" or "#text": a comment
    }
    let keyword = cur.token()?;
    let om = format == Format::OpenMetrics;
    let keyword = match keyword {
        "HELP" => Keyword::Help,
        "TYPE" => Keyword::Type,
        "UNIT" if om => Keyword::Unit,
        "EOF" if om => {
            cur.skip_blanks();
            if !cur.at_end() {
                return Err(cur.syntax("unexpected text after \"# EOF\""));
            }
            return Ok(Comment::Eof);
        }
        // Any other comment (and `# EOF` / `# UNIT` in the text format, which has neither).
        _ => return Ok(Comment::Ignored),
    };
    if !cur.skip_blanks() {
        // `# HELP` alone: the keyword needs a blank after it, else it is a comment.
        return Ok(Comment::Ignored);
    }
    if cur.at_end() {
        return Err(cur.syntax("expected a metric name after the keyword"));
    }
    let name_at = cur.pos();
    let name: Text<'a> = if cur.peek() == Some(b'"') {
        cur.quoted()?
    } else {
        match cur.metric_name()? {
            Some(name) => Text::borrowed(name),
            None => return Err(cur.syntax("invalid metric name")),
        }
    };
    // The character after the name separates it from the text, whatever it is: Prometheus
    // drops it unread (`# HELP name text`; `# HELP name` has an empty text).
    let rest = cur.rest();
    let separator = rest.chars().next().map_or(0, char::len_utf8);
    let text = rest.get(separator..).unwrap_or("");
    let metadata = match keyword {
        Keyword::Type => {
            let token = text.trim_matches([' ', '\t']);
            let leading = text.len() - text.trim_start_matches([' ', '\t']).len();
            let metric_type = MetricType::from_type_token(token).ok_or(LineError {
                offset: cur.pos() + separator + leading,
                kind: ErrorKind::UnknownType(Snippet::new(token)),
            })?;
            Metadata::Type(metric_type)
        }
        Keyword::Help => Metadata::Help(unescape_help(text, om)),
        Keyword::Unit => Metadata::Unit(text.trim_matches([' ', '\t'])),
    };
    Ok(Comment::Metadata {
        name,
        name_at,
        metadata,
    })
}

/// HELP text unescaping: `\\` and `\n` in the text format, also `\"` in OpenMetrics. Other
/// backslashes are kept. Borrowed when there is no backslash.
fn unescape_help(text: &str, om: bool) -> Text<'_> {
    if !text.contains('\\') {
        return Text::borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.clone().next() {
            Some('\\') => {
                out.push('\\');
                chars.next();
            }
            Some('n') => {
                out.push('\n');
                chars.next();
            }
            Some('"') if om => {
                out.push('"');
                chars.next();
            }
            _ => out.push('\\'),
        }
    }
    Text::from(out)
}
