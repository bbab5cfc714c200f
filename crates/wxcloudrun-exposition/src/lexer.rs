//! Byte-level reading of one line: names, quoted strings, label sets, numbers.
//!
//! Every slice taken here starts and ends next to an ASCII byte, so it is on a char boundary;
//! slicing still goes through `str::get`, so a mistake would be an error, never a panic.

use crate::Text;

use crate::error::{ErrorKind, Snippet};
use crate::model::Label;

/// An error inside one line: the byte offset where it was found and why.
#[derive(Debug)]
pub(crate) struct LineError {
    pub(crate) offset: usize,
    pub(crate) kind: ErrorKind,
}

pub(crate) type LineResult<T> = Result<T, LineError>;

/// Whose labels a label set holds.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum LabelSet {
    /// A sample's, after its metric name.
    Named,
    /// A sample's without a name before the `{`: the name is quoted inside.
    Unnamed,
    /// An exemplar's.
    Exemplar,
}

/// A position in one line.
pub(crate) struct Cursor<'a> {
    line: &'a str,
    pos: usize,
}

const fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `[a-zA-Z0-9_:]`, the bytes after the first one of a metric name.
const NAME_TAIL: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'_' || c == b':';
        b += 1;
    }
    table
};

/// `[a-zA-Z0-9_]`, the bytes after the first one of a label name.
const LABEL_TAIL: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'_';
        b += 1;
    }
    table
};

/// The index of the first `"` or `\` in `bytes` at or after `from`.
///
/// Label values are most of a page's bytes, so this looks at eight bytes per step (the classic
/// "has zero byte" bit trick on `word ^ pattern`; the lowest flagged byte is exact).
fn find_quote_or_backslash(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const fn zero_bytes(x: u64) -> u64 {
        x.wrapping_sub(ONES) & !x & HIGHS
    }
    let rest = bytes.get(from..)?;
    let mut chunks = rest.chunks_exact(8);
    let mut offset = from;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let found = zero_bytes(word ^ (ONES * u64::from(b'"')))
            | zero_bytes(word ^ (ONES * u64::from(b'\\')));
        if found != 0 {
            return Some(offset + (found.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\')
        .map(|i| offset + i)
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(line: &'a str, pos: usize) -> Cursor<'a> {
        Cursor { line, pos }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.line.as_bytes().get(self.pos).copied()
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.line.len()
    }

    /// Steps over one byte the caller has peeked (always ASCII).
    pub(crate) fn bump(&mut self) {
        self.pos += 1;
    }

    pub(crate) fn error(&self, kind: ErrorKind) -> LineError {
        LineError {
            offset: self.pos,
            kind,
        }
    }

    pub(crate) fn syntax(&self, message: &'static str) -> LineError {
        self.error(ErrorKind::Syntax(message))
    }

    fn slice(&self, start: usize, end: usize) -> LineResult<&'a str> {
        self.line
            .get(start..end)
            .ok_or_else(|| self.syntax("internal error: slice off a char boundary"))
    }

    /// The rest of the line from the cursor.
    pub(crate) fn rest(&self) -> &'a str {
        self.line.get(self.pos..).unwrap_or("")
    }

    /// Skips spaces and tabs; says whether there were any.
    pub(crate) fn skip_blanks(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(is_blank) {
            self.pos += 1;
        }
        self.pos > start
    }

    /// Skips spaces and tabs only if `byte` follows them; says whether it does (cursor unmoved
    /// otherwise).
    pub(crate) fn skip_blanks_before(&mut self, byte: u8) -> bool {
        let start = self.pos;
        self.skip_blanks();
        if self.peek() == Some(byte) {
            return true;
        }
        self.pos = start;
        false
    }

    /// The bytes up to the next blank or the end of the line.
    pub(crate) fn token(&mut self) -> LineResult<&'a str> {
        let start = self.pos;
        while self.peek().is_some_and(|b| !is_blank(b)) {
            self.pos += 1;
        }
        self.slice(start, self.pos)
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*`, or `None` (cursor unmoved) if the first byte cannot start one.
    pub(crate) fn metric_name(&mut self) -> LineResult<Option<&'a str>> {
        match self.peek() {
            Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':' => {}
            _ => return Ok(None),
        }
        let start = self.pos;
        let bytes = self.line.as_bytes();
        self.pos += 1;
        while bytes
            .get(self.pos)
            .is_some_and(|&b| NAME_TAIL[usize::from(b)])
        {
            self.pos += 1;
        }
        self.slice(start, self.pos).map(Some)
    }

    /// `[a-zA-Z_][a-zA-Z0-9_]*`, or `None` (cursor unmoved).
    fn label_name(&mut self) -> LineResult<Option<&'a str>> {
        match self.peek() {
            Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
            _ => return Ok(None),
        }
        let start = self.pos;
        let bytes = self.line.as_bytes();
        self.pos += 1;
        while bytes
            .get(self.pos)
            .is_some_and(|&b| LABEL_TAIL[usize::from(b)])
        {
            self.pos += 1;
        }
        self.slice(start, self.pos).map(Some)
    }

    /// A `"…"` string at the cursor, unescaped: `\\`, `\"` and `\n`. Another escape is kept as
    /// written (backslash included), the lenient reading the specs advise. Borrowed unless an
    /// escape was present.
    pub(crate) fn quoted(&mut self) -> LineResult<Text<'a>> {
        if self.peek() != Some(b'"') {
            return Err(self.syntax("expected '\"'"));
        }
        let open = self.pos;
        let unterminated = LineError {
            offset: open,
            kind: ErrorKind::Syntax("unterminated quoted string"),
        };
        let bytes = self.line.as_bytes();
        self.pos += 1;
        let mut run_start = self.pos; // the unescaped run not yet copied
        let mut owned: Option<String> = None; // only once a backslash is seen
        loop {
            let Some(next) = find_quote_or_backslash(bytes, self.pos) else {
                return Err(unterminated);
            };
            let run = self.slice(run_start, next)?;
            if bytes.get(next) == Some(&b'"') {
                self.pos = next + 1;
                return Ok(match owned {
                    None => Text::borrowed(run),
                    Some(mut s) => {
                        s.push_str(run);
                        Text::from(s)
                    }
                });
            }
            // A backslash.
            let s = owned.get_or_insert_with(String::new);
            s.push_str(run);
            match bytes.get(next + 1) {
                Some(b'\\') => s.push('\\'),
                Some(b'"') => s.push('"'),
                Some(b'n') => s.push('\n'),
                // Unknown escape: keep the backslash, read what follows normally.
                Some(_) => {
                    s.push('\\');
                    self.pos = next + 1;
                    run_start = self.pos;
                    continue;
                }
                None => return Err(unterminated),
            }
            self.pos = next + 2;
            run_start = self.pos;
        }
    }

    /// A label set after its `{`, through the closing `}`. Labels are appended to `labels`.
    ///
    /// Accepts blanks around tokens, a trailing comma, quoted (UTF-8) label names, and — in a
    /// sample's set without a name before it — one quoted metric name without `=` (Prometheus 3:
    /// `{"my.metric", a="b"}`), which is returned. With `commas_optional` (the text format, as
    /// Prometheus's text parser reads it) a label may follow a value without a comma. A quoted
    /// name must not be empty, and `__name__` is not a label name in a sample's set: Prometheus
    /// fails the scrape on both.
    pub(crate) fn label_set(
        &mut self,
        labels: &mut Vec<Label<'a>>,
        set: LabelSet,
        commas_optional: bool,
        max_labels: usize,
    ) -> LineResult<Option<Text<'a>>> {
        let allow_name = set == LabelSet::Unnamed;
        let mut metric_name = None;
        let mut count = 0usize;
        loop {
            self.skip_blanks();
            let name_at = self.pos;
            let name: Text<'a> = match self.peek() {
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(metric_name);
                }
                None => return Err(self.syntax("unterminated label set: expected '}'")),
                Some(b'"') => {
                    let quoted = self.quoted()?;
                    if quoted.is_empty() {
                        return Err(LineError {
                            offset: name_at,
                            kind: ErrorKind::Syntax("empty quoted name"),
                        });
                    }
                    self.skip_blanks();
                    if self.peek() != Some(b'=') {
                        // A quoted name without a value is the metric name.
                        if !allow_name || metric_name.is_some() {
                            return Err(LineError {
                                offset: name_at,
                                kind: ErrorKind::Syntax(
                                    "unexpected quoted metric name in this label set",
                                ),
                            });
                        }
                        metric_name = Some(quoted);
                        // Prometheus, too, needs `,` or `}` after a quoted metric name.
                        if self.end_of_label(false)? {
                            return Ok(metric_name);
                        }
                        continue;
                    }
                    quoted
                }
                Some(_) => match self.label_name()? {
                    Some(name) => Text::borrowed(name),
                    None => return Err(self.syntax("invalid label name")),
                },
            };
            if set != LabelSet::Exemplar && name == "__name__" {
                return Err(LineError {
                    offset: name_at,
                    kind: ErrorKind::DuplicateLabel(Snippet::new("__name__")),
                });
            }
            self.skip_blanks();
            if self.peek() != Some(b'=') {
                return Err(self.syntax("expected '=' after label name"));
            }
            self.pos += 1;
            self.skip_blanks();
            if self.peek() != Some(b'"') {
                return Err(self.syntax("expected '\"' to start the label value"));
            }
            let value = self.quoted()?;
            count += 1;
            if count > max_labels {
                return Err(LineError {
                    offset: name_at,
                    kind: ErrorKind::TooManyLabels { limit: max_labels },
                });
            }
            labels.push(Label { name, value });
            if self.end_of_label(commas_optional)? {
                return Ok(metric_name);
            }
        }
    }

    /// After one label: blanks, then `,` or `}` (consumed). True when the set is closed. With
    /// `comma_optional`, the start of the next label name (left unconsumed) also ends the label.
    fn end_of_label(&mut self, comma_optional: bool) -> LineResult<bool> {
        self.skip_blanks();
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(false)
            }
            Some(b'}') => {
                self.pos += 1;
                Ok(true)
            }
            Some(b) if comma_optional && (b == b'"' || b == b'_' || b.is_ascii_alphabetic()) => {
                Ok(false)
            }
            _ => Err(self.syntax("expected ',' or '}' after a label")),
        }
    }
}

/// A float in Go `ParseFloat` syntax as the formats use it: decimals, exponents, `NaN`, `±Inf`,
/// case-insensitive `inf`/`infinity`/`nan`. Every NaN becomes the canonical `f64::NAN`.
pub(crate) fn parse_float(token: &str) -> Option<f64> {
    let value: f64 = token.parse().ok()?;
    Some(if value.is_nan() { f64::NAN } else { value })
}

/// An OpenMetrics timestamp (seconds, optional fraction) as whole milliseconds, truncated toward
/// zero. Plain decimals are converted exactly (`1690000000.123` is `1690000000123`, where float
/// arithmetic would give `…122`); other float syntax goes through `f64`. `None` when invalid,
/// non-finite, or out of `i64` range.
pub(crate) fn seconds_to_ms(token: &str) -> Option<i64> {
    let (negative, unsigned) = match token.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, token.strip_prefix('+').unwrap_or(token)),
    };
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !(int.is_empty() && frac.is_empty()) && all_digits(int) && all_digits(frac) {
        let mut ms: i64 = 0;
        for b in int.bytes() {
            ms = ms.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
        }
        ms = ms.checked_mul(1000)?;
        let mut scale = 100;
        for b in frac.bytes().take(3) {
            ms = ms.checked_add(i64::from(b - b'0') * scale)?;
            scale /= 10;
        }
        return Some(if negative { -ms } else { ms });
    }
    let seconds: f64 = token.parse().ok()?;
    let ms = (seconds * 1000.0).trunc();
    // i64::MAX is not exactly representable; stay strictly inside the range.
    if ms.is_finite() && ms.abs() < 9.2e18 {
        #[allow(clippy::cast_possible_truncation)]
        Some(ms as i64)
    } else {
        None
    }
}

/// A text-format timestamp: an integer number of milliseconds.
pub(crate) fn parse_ms(token: &str) -> Option<i64> {
    token.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_quotes_and_backslashes_in_any_position() {
        for len in 0..20 {
            for at in 0..len {
                for special in [b'"', b'\\'] {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = special;
                    for from in 0..=at {
                        assert_eq!(
                            find_quote_or_backslash(&bytes, from),
                            Some(at),
                            "{len} {at}"
                        );
                    }
                    assert_eq!(find_quote_or_backslash(&bytes, at + 1), None);
                }
            }
        }
        // Bytes next to the searched ones (0x21, 0x23, 0x5b, 0x5d) and high bytes never match.
        let noise = "!#[]\u{7f}é微\u{ff}".repeat(5);
        assert_eq!(find_quote_or_backslash(noise.as_bytes(), 0), None);
        assert_eq!(find_quote_or_backslash(b"", 0), None);
        assert_eq!(find_quote_or_backslash(b"ab", 5), None);
    }

    #[test]
    fn seconds_to_ms_is_exact_for_decimals() {
        assert_eq!(seconds_to_ms("1690000000.123"), Some(1_690_000_000_123));
        assert_eq!(seconds_to_ms("1690000000.1239"), Some(1_690_000_000_123));
        assert_eq!(seconds_to_ms("-1.5"), Some(-1500));
        assert_eq!(seconds_to_ms("+2"), Some(2000));
        assert_eq!(seconds_to_ms("2."), Some(2000));
        assert_eq!(seconds_to_ms(".5"), Some(500));
        assert_eq!(seconds_to_ms("1.6e9"), Some(1_600_000_000_000));
        assert_eq!(seconds_to_ms("."), None);
        assert_eq!(seconds_to_ms(""), None);
        assert_eq!(seconds_to_ms("-"), None);
        assert_eq!(seconds_to_ms("1.2.3"), None);
        assert_eq!(seconds_to_ms("NaN"), None);
        assert_eq!(seconds_to_ms("+Inf"), None);
        assert_eq!(seconds_to_ms("99999999999999999999"), None);
        assert_eq!(seconds_to_ms("1e300"), None);
    }

    #[test]
    fn parse_float_normalises_nan() {
        for token in ["NaN", "nan", "-nan", "+NaN"] {
            let v = parse_float(token).unwrap();
            assert_eq!(v.to_bits(), 0x7ff8_0000_0000_0000, "{token}");
        }
        assert_eq!(parse_float("-Inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_float("+inf"), Some(f64::INFINITY));
        assert_eq!(parse_float("Infinity"), Some(f64::INFINITY));
        assert_eq!(parse_float("1e+00"), Some(1.0));
        assert_eq!(parse_float(""), None);
        assert_eq!(parse_float("1,5"), None);
    }
}
