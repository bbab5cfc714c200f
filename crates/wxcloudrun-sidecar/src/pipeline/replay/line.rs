//! A kept sample's line as replay reads it: the series (compared with the learned one), then the
//! value and, where there is one, the exemplar.

use wxcloudrun_exposition::{Format, Limits, parse_exemplar, parse_value, sample_value_offset};

use crate::model::{Exemplar, normalize_nan};

/// The blanks of the exposition formats.
const BLANKS: [char; 2] = [' ', '\t'];

/// Where the value of a kept sample's line starts, as the parser reads it: after the last space
/// when the line has no `#` (checked when the value is read back), else where the parser finds
/// it. Decided by the text, not by the parsed sample: an exemplar the parser dropped (one
/// Prometheus would not store) is still on the line, and its last token is no value.
pub(super) fn value_start(line: &str, format: Format, limits: &Limits) -> Option<usize> {
    if line.contains('#') {
        sample_value_offset(line, format, limits)
    } else {
        line.rfind(' ').map(|space| space + 1)
    }
}

/// What follows the series on a kept sample's line, read as the parser reads it: the value up to
/// the first blank, then blanks only, or blanks and an exemplar. `None` for anything else (a
/// timestamp, which only the full path reads, or text the parser would reject).
///
/// The parser reads the same: after the value token (the bytes up to a blank), it skips blanks;
/// at the end of the line it is done; at a `#` it reads the exemplar with the code
/// [`parse_exemplar`] runs; before anything else it reads a timestamp.
pub(super) fn read_tail(
    tail: &str,
    format: Format,
    limits: &Limits,
) -> Option<(f64, Option<Exemplar>)> {
    let (token, rest) = tail.split_at(tail.find(BLANKS).unwrap_or(tail.len()));
    let value = normalize_nan(parse_value(token)?);
    let rest = rest.trim_start_matches(BLANKS);
    if rest.is_empty() {
        return Some((value, None));
    }
    if !rest.starts_with('#') {
        return None;
    }
    let exemplar = parse_exemplar(rest, format, limits)?;
    // One Prometheus would not store is read, and dropped, as the parser drops it.
    let kept = exemplar
        .is_storable(limits)
        .then(|| Exemplar::of(&exemplar));
    Some((value, kept))
}

/// Whether `read` (the model's copy of what replay read) is `parsed` (what the parser read), bit
/// for bit.
pub(super) fn same_exemplar(
    read: Option<&Exemplar>,
    parsed: Option<&wxcloudrun_exposition::Exemplar<'_>>,
) -> bool {
    match (read, parsed) {
        (None, None) => true,
        (Some(read), Some(parsed)) => {
            let labels = parsed.labels.iter().map(|l| (&*l.name, &*l.value));
            read.labels.iter().map(|(n, v)| (&**n, &**v)).eq(labels)
                && read.value.to_bits() == normalize_nan(parsed.value).to_bits()
                && read.timestamp_ms == parsed.timestamp_ms
        }
        _ => false,
    }
}
