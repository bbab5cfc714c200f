//! Sample lines: `name{labels} value [timestamp] [# {exemplar labels} value [timestamp]]`. Read
//! here into a [`SampleLine`]; the line loop finds its family and stores it.

use crate::Text;

use crate::error::{ErrorKind, Snippet};
use crate::lexer::{Cursor, LabelSet, LineError, LineResult, parse_float, parse_ms, seconds_to_ms};
use crate::model::{Exemplar, Format, Label, Limits};

/// A sample line as read, before it has a family; its labels are in the caller's buffer.
pub(super) struct SampleLine<'a> {
    /// The sample name (from before `{`, or the quoted name inside it).
    pub(super) name: Text<'a>,
    pub(super) value: f64,
    /// The value as written: an OpenMetrics `_created` sample's start time is read from it.
    pub(super) value_token: &'a str,
    pub(super) timestamp_ms: Option<i64>,
    pub(super) exemplar: Option<Box<Exemplar<'a>>>,
}

/// Reads a sample line from its first byte, its labels into `labels` (cleared first).
pub(super) fn read_sample<'a>(
    cur: &mut Cursor<'a>,
    format: Format,
    limits: &Limits,
    labels: &mut Vec<Label<'a>>,
) -> LineResult<SampleLine<'a>> {
    let line_start = cur.pos();
    let text_format = format == Format::PrometheusText;
    let mut name: Option<Text<'a>> = cur.metric_name()?.map(Text::borrowed);
    if name.is_some() {
        // Blanks between the name and `{` (`name {a="b"} 1`), as Prometheus allows.
        cur.skip_blanks_before(b'{');
    }
    labels.clear();
    match cur.peek() {
        Some(b'{') => {
            cur.bump();
            let max = limits.max_labels_per_series;
            let set = if name.is_some() {
                LabelSet::Named
            } else {
                LabelSet::Unnamed
            };
            if let Some(quoted) = cur.label_set(labels, set, text_format, max)? {
                name = Some(quoted);
            }
        }
        Some(b' ' | b'\t') | None => {}
        Some(_) if name.is_some() => return Err(cur.syntax("invalid character in metric name")),
        Some(_) => return Err(cur.syntax("invalid metric name")),
    }
    let Some(name) = name else {
        return Err(LineError {
            offset: line_start,
            kind: ErrorKind::Syntax("missing metric name"),
        });
    };
    // After `}` the value may follow without a blank (`name{a="b"}1`), as Prometheus allows;
    // after a bare name a blank is there (checked above).
    cur.skip_blanks();
    if cur.at_end() {
        return Err(cur.syntax("missing sample value"));
    }
    let value_at = cur.pos();
    let value_token = cur.token()?;
    let value = parse_float(value_token).ok_or(LineError {
        offset: value_at,
        kind: ErrorKind::InvalidValue(Snippet::new(value_token)),
    })?;

    let mut timestamp_ms = None;
    cur.skip_blanks();
    if !cur.at_end() && cur.peek() != Some(b'#') {
        let ts_at = cur.pos();
        let token = cur.token()?;
        let ts = match format {
            Format::PrometheusText => parse_ms(token),
            Format::OpenMetrics => seconds_to_ms(token),
        };
        timestamp_ms = Some(ts.ok_or(LineError {
            offset: ts_at,
            kind: ErrorKind::InvalidTimestamp(Snippet::new(token)),
        })?);
        cur.skip_blanks();
    }
    let exemplar = match cur.peek() {
        None => None,
        Some(b'#') => Some(Box::new(read_exemplar(cur, format, limits)?)),
        Some(_) => return Err(cur.syntax("unexpected text after the sample")),
    };
    Ok(SampleLine {
        name,
        value,
        value_token,
        timestamp_ms,
        exemplar,
    })
}

/// ` # {labels} value [timestamp]` at the `#`.
fn read_exemplar<'a>(
    cur: &mut Cursor<'a>,
    format: Format,
    limits: &Limits,
) -> LineResult<Exemplar<'a>> {
    cur.bump(); // '#'
    if !cur.skip_blanks() {
        return Err(cur.syntax("expected a blank after the exemplar's '#'"));
    }
    if cur.peek() != Some(b'{') {
        return Err(cur.syntax("expected '{' to start the exemplar's labels"));
    }
    cur.bump();
    let mut labels = Vec::new();
    let text_format = format == Format::PrometheusText;
    // Read whatever its length: Prometheus's parser does, and its storage drops one too long
    // (see `Exemplar::is_storable`), keeping the sample and the page.
    cur.label_set(
        &mut labels,
        LabelSet::Exemplar,
        text_format,
        limits.max_labels_per_series,
    )?;
    if !cur.skip_blanks() || cur.at_end() {
        return Err(cur.syntax("expected the exemplar value after its labels"));
    }
    let value_at = cur.pos();
    let token = cur.token()?;
    let value = parse_float(token).ok_or(LineError {
        offset: value_at,
        kind: ErrorKind::InvalidValue(Snippet::new(token)),
    })?;
    let mut timestamp_ms = None;
    cur.skip_blanks();
    if !cur.at_end() {
        let ts_at = cur.pos();
        let token = cur.token()?;
        timestamp_ms = Some(seconds_to_ms(token).ok_or(LineError {
            offset: ts_at,
            kind: ErrorKind::InvalidTimestamp(Snippet::new(token)),
        })?);
        cur.skip_blanks();
        if !cur.at_end() {
            return Err(cur.syntax("unexpected text after the exemplar"));
        }
    }
    Ok(Exemplar {
        labels,
        value,
        timestamp_ms,
    })
}

/// Where [`read_sample`] finds the value token of `line` (a whole line, without its line break):
/// its byte offset, or `None` if the line is no sample line the parser accepts.
pub(crate) fn value_offset(line: &str, format: Format, limits: &Limits) -> Option<usize> {
    let mut cur = Cursor::new(line, 0);
    cur.skip_blanks();
    let read = read_sample(&mut cur, format, limits, &mut Vec::new()).ok()?;
    (read.value_token.as_ptr() as usize).checked_sub(line.as_ptr() as usize)
}

/// An exemplar as [`read_sample`] reads it after a sample's value and the blanks after it:
/// `text` starts at the `#` and ends where the line does.
pub(crate) fn exemplar_at<'a>(
    text: &'a str,
    format: Format,
    limits: &Limits,
) -> Option<Exemplar<'a>> {
    let mut cur = Cursor::new(text, 0);
    if cur.peek() != Some(b'#') {
        return None;
    }
    read_exemplar(&mut cur, format, limits).ok()
}
