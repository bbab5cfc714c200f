//! The line loop and the family state machine.
//!
//! One pass over the page: each line is a comment/metadata line or a sample line. Samples go to
//! the current family when their name fits it (fast path), else to the family found by name
//! (families may be reopened, as Prometheus reads pages), else to a new untyped family.
//! Duplicate series are found with one hash per sample. Once the page is read, the pieces of a
//! reopened family are put together and OpenMetrics `_created` samples are folded into the other
//! samples' start times.
//!
//! Like Prometheus's parsers, nothing about a family's layout fails a page: metadata may come
//! twice, late, or between another family's lines. Metadata for a name whose family already has
//! samples starts a new piece of that family; pieces of one name and type are merged at the end,
//! so a family split over two concatenated registries comes back whole, while a later `# TYPE`
//! with another type applies only to what follows it (as Prometheus applies the last `# TYPE`).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use crate::error::{ErrorKind, ParseError, Snippet};
use crate::lexer::{Cursor, LabelSet, LineError, LineResult, parse_float, parse_ms, seconds_to_ms};
use crate::model::{Exemplar, Exposition, Format, Label, Limits, MetricFamily, MetricType, Sample};

/// Every suffix a sample name can add to its family's name, over all types.
const ALL_SUFFIXES: [&str; 8] = [
    "_bucket", "_count", "_sum", "_total", "_created", "_info", "_gcount", "_gsum",
];

/// Parses a page with the default [`Limits`].
///
/// ```
/// use wxcloudrun_exposition::{Format, MetricType, parse};
///
/// let page = "# TYPE http_requests_total counter\n\
///             http_requests_total{path=\"/a,b\"} 3 1700000000000\n";
/// let exposition = parse(page, Format::PrometheusText)?;
/// let family = &exposition.families[0];
/// assert_eq!(family.metric_type, MetricType::Counter);
/// assert_eq!(family.samples[0].label("path"), Some("/a,b"));
/// assert_eq!(family.samples[0].timestamp_ms, Some(1_700_000_000_000));
/// # Ok::<(), wxcloudrun_exposition::ParseError>(())
/// ```
pub fn parse(body: &str, format: Format) -> Result<Exposition<'_>, ParseError> {
    parse_with_limits(body, format, &Limits::default())
}

/// Parses a page, failing with a [`ParseError`] (line, column, reason) on the first problem.
pub fn parse_with_limits<'a>(
    body: &'a str,
    format: Format,
    limits: &Limits,
) -> Result<Exposition<'a>, ParseError> {
    if body.len() > limits.max_body_bytes {
        return Err(ParseError {
            line: 1,
            column: 1,
            kind: ErrorKind::BodyTooLarge {
                limit: limits.max_body_bytes,
            },
        });
    }
    let mut parser = Parser::new(format, limits);
    let mut last_line = 0;
    for (index, raw) in body.split('\n').enumerate() {
        last_line = index + 1;
        parser.line(raw).map_err(|e| ParseError {
            line: last_line,
            column: e.offset + 1,
            kind: e.kind,
        })?;
        if parser.stopped {
            break;
        }
    }
    if format == Format::OpenMetrics && !parser.eof_seen {
        // A body ending in "\n" has an empty last piece; the missing line is that one.
        let line = if body.is_empty() || body.ends_with('\n') {
            last_line
        } else {
            last_line + 1
        };
        return Err(ParseError {
            line,
            column: 1,
            kind: ErrorKind::MissingEof,
        });
    }
    Ok(parser.finish())
}

struct FamilyState<'a> {
    family: MetricFamily<'a>,
    /// A `# TYPE` line gave the type (else it is [`MetricType::Unknown`] by default).
    type_declared: bool,
    /// OpenMetrics `_created` samples are waiting in `family.samples` to be folded.
    has_created: bool,
}

/// What a `#` line declares.
#[derive(Clone, Copy)]
enum Metadata {
    Help,
    Type,
    Unit,
}

struct Parser<'a, 'l> {
    format: Format,
    limits: &'l Limits,
    /// The families as pieces, in order of appearance (merged in `finish`).
    families: Vec<FamilyState<'a>>,
    /// Each name's latest piece (pieces of samples that fit no family of their name are not
    /// here).
    by_name: HashMap<Cow<'a, str>, usize>,
    current: Option<usize>,
    /// A name has more than one piece: `finish` merges them.
    pieces: bool,
    series: SeriesSet,
    duplicates: usize,
    samples_seen: usize,
    eof_seen: bool,
    /// Text format: a line starting with a NUL byte ended the page, as it ends Prometheus's.
    stopped: bool,
    /// Labels of the line being parsed, moved into an exact-size `Vec` once the line is read.
    label_scratch: Vec<Label<'a>>,
}

impl<'a, 'l> Parser<'a, 'l> {
    fn new(format: Format, limits: &'l Limits) -> Parser<'a, 'l> {
        Parser {
            format,
            limits,
            families: Vec::new(),
            by_name: HashMap::new(),
            current: None,
            pieces: false,
            series: SeriesSet::new(),
            duplicates: 0,
            samples_seen: 0,
            eof_seen: false,
            stopped: false,
            label_scratch: Vec::new(),
        }
    }

    fn line(&mut self, raw: &'a str) -> LineResult<()> {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.len() > self.limits.max_line_bytes {
            return Err(LineError {
                offset: 0,
                kind: ErrorKind::LineTooLong {
                    limit: self.limits.max_line_bytes,
                },
            });
        }
        let mut cur = Cursor::new(line, 0);
        cur.skip_blanks();
        if self.eof_seen {
            return if cur.at_end() {
                Ok(())
            } else {
                Err(cur.error(ErrorKind::ContentAfterEof))
            };
        }
        match cur.peek() {
            // Blank lines are tolerated in both formats.
            None => Ok(()),
            Some(b'#') => self.comment_line(cur),
            // Prometheus's text lexer reads a NUL where a line starts as the end of the input.
            Some(0) if self.format == Format::PrometheusText => {
                self.stopped = true;
                Ok(())
            }
            Some(_) => self.sample_line(cur),
        }
    }

    // ---- `#` lines ---------------------------------------------------------------------------

    fn comment_line(&mut self, mut cur: Cursor<'a>) -> LineResult<()> {
        cur.bump(); // '#'
        if !cur.skip_blanks() {
            return Ok(()); // "#" or "#text": a comment
        }
        let keyword = cur.token()?;
        let om = self.format == Format::OpenMetrics;
        let what = match keyword {
            "HELP" => Metadata::Help,
            "TYPE" => Metadata::Type,
            "UNIT" if om => Metadata::Unit,
            "EOF" if om => {
                cur.skip_blanks();
                if !cur.at_end() {
                    return Err(cur.syntax("unexpected text after \"# EOF\""));
                }
                self.eof_seen = true;
                return Ok(());
            }
            // Any other comment (and `# EOF` / `# UNIT` in the text format, which has neither).
            _ => return Ok(()),
        };
        if !cur.skip_blanks() {
            // `# HELP` alone: the keyword needs a blank after it, else it is a comment.
            return Ok(());
        }
        if cur.at_end() {
            return Err(cur.syntax("expected a metric name after the keyword"));
        }
        let name_at = cur.pos();
        let name: Cow<'a, str> = if cur.peek() == Some(b'"') {
            cur.quoted()?
        } else {
            match cur.metric_name()? {
                Some(name) => Cow::Borrowed(name),
                None => return Err(cur.syntax("invalid metric name")),
            }
        };
        // The character after the name separates it from the text, whatever it is: Prometheus
        // drops it unread (`# HELP name text`; `# HELP name` has an empty text).
        let rest = cur.rest();
        let separator = rest.chars().next().map_or(0, char::len_utf8);
        let text = rest.get(separator..).unwrap_or("");
        let text_at = cur.pos() + separator;
        let at = |kind| LineError {
            offset: name_at,
            kind,
        };
        match what {
            Metadata::Type => {
                let token = text.trim_matches([' ', '\t']);
                let leading = text.len() - text.trim_start_matches([' ', '\t']).len();
                let metric_type = MetricType::from_type_token(token).ok_or(LineError {
                    offset: text_at + leading,
                    kind: ErrorKind::UnknownType(Snippet::new(token)),
                })?;
                let index = self.family_for_metadata(name).map_err(at)?;
                let state = self.family_mut(index).map_err(at)?;
                state.family.metric_type = metric_type;
                state.type_declared = true;
            }
            Metadata::Help => {
                let help = unescape_help(text, om);
                let index = self.family_for_metadata(name).map_err(at)?;
                self.family_mut(index).map_err(at)?.family.help = Some(help);
            }
            Metadata::Unit => {
                let unit = text.trim_matches([' ', '\t']);
                let index = self.family_for_metadata(name).map_err(at)?;
                self.family_mut(index).map_err(at)?.family.unit = Some(Cow::Borrowed(unit));
            }
        }
        Ok(())
    }

    /// The family piece a `# HELP`/`# TYPE`/`# UNIT` line is about; it becomes current. The
    /// name's latest piece while it has no samples (a later line of the same kind replaces an
    /// earlier one, as the last `# TYPE` is the one Prometheus applies); else a new piece, of the
    /// latest one's type until a `# TYPE` says otherwise (so that a late `# HELP` between a
    /// counter's samples keeps the next ones in the counter).
    fn family_for_metadata(&mut self, name: Cow<'a, str>) -> Result<usize, ErrorKind> {
        let latest = match self.current {
            Some(current) if self.families.get(current).map(|s| &s.family.name) == Some(&name) => {
                Some(current)
            }
            _ => self.by_name.get(name.as_ref()).copied(),
        };
        let mut inherited = MetricType::Unknown;
        if let Some(state) = latest.and_then(|index| self.families.get(index)) {
            if state.family.samples.is_empty() {
                self.current = latest;
                return latest.ok_or_else(internal_error);
            }
            inherited = state.family.metric_type;
            self.pieces = true;
        }
        let index = self.new_family(name, true)?;
        self.family_mut(index)?.family.metric_type = inherited;
        Ok(index)
    }

    /// A new family piece, current from now on; `register`: the name's latest piece.
    fn new_family(&mut self, name: Cow<'a, str>, register: bool) -> Result<usize, ErrorKind> {
        if self.families.len() >= self.limits.max_families {
            return Err(ErrorKind::TooManyFamilies {
                limit: self.limits.max_families,
            });
        }
        let index = self.families.len();
        if register {
            self.by_name.insert(name.clone(), index);
        }
        self.families.push(FamilyState {
            family: MetricFamily {
                name,
                metric_type: MetricType::Unknown,
                help: None,
                unit: None,
                samples: Vec::new(),
            },
            type_declared: false,
            has_created: false,
        });
        self.current = Some(index);
        Ok(index)
    }

    fn family_mut(&mut self, index: usize) -> Result<&mut FamilyState<'a>, ErrorKind> {
        self.families.get_mut(index).ok_or_else(internal_error)
    }

    // ---- sample lines ------------------------------------------------------------------------

    fn sample_line(&mut self, mut cur: Cursor<'a>) -> LineResult<()> {
        let line_start = cur.pos();
        let text_format = self.format == Format::PrometheusText;
        let mut name: Option<Cow<'a, str>> = cur.metric_name()?.map(Cow::Borrowed);
        if name.is_some() {
            // Blanks between the name and `{` (`name {a="b"} 1`), as Prometheus allows.
            cur.skip_blanks_before(b'{');
        }
        self.label_scratch.clear();
        match cur.peek() {
            Some(b'{') => {
                cur.bump();
                let max = self.limits.max_labels_per_series;
                let set = if name.is_some() {
                    LabelSet::Named
                } else {
                    LabelSet::Unnamed
                };
                let quoted = cur.label_set(&mut self.label_scratch, set, text_format, max)?;
                if let Some(quoted) = quoted {
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
            let ts = match self.format {
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
            Some(b'#') => Some(Box::new(self.exemplar(&mut cur)?)),
            Some(_) => return Err(cur.syntax("unexpected text after the sample")),
        };

        let at_line = |kind| LineError {
            offset: line_start,
            kind,
        };
        self.samples_seen += 1;
        if self.samples_seen > self.limits.max_samples {
            return Err(at_line(ErrorKind::TooManySamples {
                limit: self.limits.max_samples,
            }));
        }
        let index = self.family_for_sample(&name).map_err(at_line)?;
        let family = &self
            .families
            .get(index)
            .ok_or_else(internal_error)
            .map_err(at_line)?
            .family;
        let is_created = self.format == Format::OpenMetrics
            && family.metric_type.has_created()
            && name.strip_prefix(family.name.as_ref()) == Some("_created");
        // A `_created` sample's start time, parked on the sample until `finish` folds it. One
        // that is no time (NaN, ±Inf, out of range) gives no start time; Prometheus does not
        // fail the page for it either.
        let created_ms = if is_created {
            seconds_to_ms(value_token)
        } else {
            None
        };
        let sample = Sample {
            name,
            labels: self.label_scratch.drain(..).collect(),
            value,
            timestamp_ms,
            created_ms,
            exemplar,
        };
        self.add_sample(index, sample, is_created).map_err(at_line)
    }

    /// ` # {labels} value [timestamp]` at the `#`.
    fn exemplar(&mut self, cur: &mut Cursor<'a>) -> LineResult<Exemplar<'a>> {
        cur.bump(); // '#'
        if !cur.skip_blanks() {
            return Err(cur.syntax("expected a blank after the exemplar's '#'"));
        }
        if cur.peek() != Some(b'{') {
            return Err(cur.syntax("expected '{' to start the exemplar's labels"));
        }
        let set_at = cur.pos();
        cur.bump();
        let mut labels = Vec::new();
        let text_format = self.format == Format::PrometheusText;
        cur.label_set(
            &mut labels,
            LabelSet::Exemplar,
            text_format,
            self.limits.max_labels_per_series,
        )?;
        let chars: usize = labels
            .iter()
            .map(|l| l.name.chars().count() + l.value.chars().count())
            .sum();
        if chars > self.limits.max_exemplar_label_chars {
            return Err(LineError {
                offset: set_at,
                kind: ErrorKind::ExemplarTooLong {
                    limit: self.limits.max_exemplar_label_chars,
                },
            });
        }
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

    /// Stores a sample in family `index` unless its series was seen before.
    fn add_sample(
        &mut self,
        index: usize,
        sample: Sample<'a>,
        is_created: bool,
    ) -> Result<(), ErrorKind> {
        let state = self.families.get(index).ok_or_else(internal_error)?;
        let position = SeriesRef {
            family: index,
            sample: state.family.samples.len(),
        };
        let bound = bound_label(state.family.metric_type);
        match self.series.insert(&sample, bound, position, &self.families) {
            Ok(true) => {}
            Ok(false) => {
                self.duplicates += 1;
                return Ok(());
            }
            Err(label) => return Err(ErrorKind::DuplicateLabel(Snippet::new(&label))),
        }
        let state = self.family_mut(index)?;
        state.has_created |= is_created;
        state.family.samples.push(sample);
        Ok(())
    }

    /// The family a sample belongs to: the current one if the name fits (the common case), else
    /// the latest one found by name, else a new untyped family. A sample whose name is a family's
    /// but not one its type has (`foo` under `# TYPE foo histogram`) is its own untyped family,
    /// as Prometheus stores it.
    #[allow(clippy::ptr_arg)] // a `Cow` so that a new family can take it without copying
    fn family_for_sample(&mut self, name: &Cow<'a, str>) -> Result<usize, ErrorKind> {
        let format = self.format;
        if let Some(current) = self.current {
            if self
                .families
                .get(current)
                .is_some_and(|s| fits(&s.family, name, format))
            {
                return Ok(current);
            }
        }
        if let Some(index) = self.lookup_family(name) {
            self.current = Some(index);
            return Ok(index);
        }
        let taken = self.by_name.contains_key(name.as_ref());
        self.pieces |= taken;
        self.new_family(name.clone(), !taken)
    }

    fn lookup_family(&self, name: &str) -> Option<usize> {
        let fits_index = |index: usize| {
            self.families
                .get(index)
                .is_some_and(|s| fits(&s.family, name, self.format))
        };
        if let Some(&index) = self.by_name.get(name) {
            if fits_index(index) {
                return Some(index);
            }
        }
        ALL_SUFFIXES.iter().find_map(|suffix| {
            let base = name.strip_suffix(suffix)?;
            let index = *self.by_name.get(base)?;
            fits_index(index).then_some(index)
        })
    }

    // ---- the end -----------------------------------------------------------------------------

    fn finish(self) -> Exposition<'a> {
        let format = self.format;
        let pieces = if self.pieces {
            merge_pieces(self.families)
        } else {
            self.families
        };
        let families = pieces
            .into_iter()
            .map(|state| {
                let mut family = state.family;
                if state.has_created && format == Format::OpenMetrics {
                    fold_created(&mut family);
                }
                family
            })
            .collect();
        Exposition {
            families,
            duplicates: self.duplicates,
        }
    }
}

/// Puts the pieces of each family together: pieces of one name and type become one family at
/// the place of the first, samples in page order, the last `# HELP` and `# UNIT` given. A piece
/// of late `# HELP` / `# UNIT` lines alone (no type, no samples) belongs to the piece of that name
/// before it. A piece without samples is left out when its name has samples elsewhere (a late
/// `# TYPE` with another type, say).
fn merge_pieces(pieces: Vec<FamilyState<'_>>) -> Vec<FamilyState<'_>> {
    let mut merged: Vec<FamilyState<'_>> = Vec::with_capacity(pieces.len());
    let mut by_key: HashMap<(Cow<'_, str>, MetricType), usize> = HashMap::new();
    let mut latest: HashMap<Cow<'_, str>, usize> = HashMap::new();
    for piece in pieces {
        let metadata_only = !piece.type_declared && piece.family.samples.is_empty();
        let name = piece.family.name.clone();
        let into = match latest.get(&name) {
            Some(&at) if metadata_only => Some(at),
            _ => by_key
                .get(&(name.clone(), piece.family.metric_type))
                .copied(),
        };
        match into.and_then(|at| merged.get_mut(at).map(|into| (at, into))) {
            Some((at, into)) => {
                let FamilyState {
                    family,
                    has_created,
                    ..
                } = piece;
                into.family.samples.extend(family.samples);
                into.family.help = family.help.or(into.family.help.take());
                into.family.unit = family.unit.or(into.family.unit.take());
                into.has_created |= has_created;
                latest.insert(name, at);
            }
            None => {
                let at = merged.len();
                by_key.insert((name.clone(), piece.family.metric_type), at);
                latest.insert(name, at);
                merged.push(piece);
            }
        }
    }
    let with_samples: std::collections::HashSet<&str> = merged
        .iter()
        .filter(|s| !s.family.samples.is_empty())
        .map(|s| s.family.name.as_ref())
        .collect();
    let keep: Vec<bool> = merged
        .iter()
        .map(|s| !s.family.samples.is_empty() || !with_samples.contains(s.family.name.as_ref()))
        .collect();
    drop(with_samples);
    let mut keep = keep.into_iter();
    merged.retain(|_| keep.next().unwrap_or(true));
    merged
}

/// The label Prometheus 3 normalises in a family of this type (`le` of a histogram, `quantile`
/// of a summary): two spellings of one bound are one series.
fn bound_label(metric_type: MetricType) -> Option<&'static str> {
    match metric_type {
        MetricType::Histogram => Some("le"),
        MetricType::Summary => Some("quantile"),
        _ => None,
    }
}

/// Family indices come only from `new_family` and `by_name`, both in range; this error would be
/// a bug in this file, not something input can cause. It exists so that no indexing can panic.
fn internal_error() -> ErrorKind {
    ErrorKind::Syntax("internal error: metric family index out of range")
}

/// Whether `name` is a sample name of `family` (family name plus a suffix its type allows).
fn fits(family: &MetricFamily<'_>, name: &str, format: Format) -> bool {
    name.strip_prefix(family.name.as_ref())
        .is_some_and(|suffix| family.metric_type.sample_suffixes(format).contains(&suffix))
}

/// HELP text unescaping: `\\` and `\n` in the text format, also `\"` in OpenMetrics. Other
/// backslashes are kept. Borrowed when there is no backslash.
fn unescape_help(text: &str, om: bool) -> Cow<'_, str> {
    if !text.contains('\\') {
        return Cow::Borrowed(text);
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
    Cow::Owned(out)
}

/// Moves OpenMetrics `_created` samples out of `family.samples` and into `created_ms` of the
/// samples with the same label set (ignoring `le` and `quantile`).
fn fold_created(family: &mut MetricFamily<'_>) {
    let created_name_len = family.name.len() + "_created".len();
    let is_created = |s: &Sample<'_>| {
        s.name.len() == created_name_len
            && s.name.starts_with(family.name.as_ref())
            && s.name.ends_with("_created")
    };
    // Only a histogram's `le` and a summary's `quantile` are not part of the series its
    // `_created` belongs to; on any other type they are labels like the others.
    let ignored: &[&str] = match family.metric_type {
        MetricType::Histogram | MetricType::GaugeHistogram => &["le"],
        MetricType::Summary => &["quantile"],
        _ => &[],
    };
    let (created, mut rest): (Vec<_>, Vec<_>) = std::mem::take(&mut family.samples)
        .into_iter()
        .partition(is_created);
    let starts: HashMap<Vec<(&str, &str)>, i64> = created
        .iter()
        .filter_map(|s| Some((series_key(&s.labels, &[]), s.created_ms?)))
        .collect();
    let found: Vec<Option<i64>> = rest
        .iter()
        .map(|s| starts.get(&series_key(&s.labels, ignored)).copied())
        .collect();
    for (sample, start) in rest.iter_mut().zip(found) {
        sample.created_ms = start;
    }
    family.samples = rest;
}

/// A label set as a comparable key: sorted `(name, value)` pairs without empty values (which
/// Prometheus treats as absent) and without the `excluded` names.
pub(crate) fn series_key<'s>(
    labels: &'s [Label<'_>],
    excluded: &[&str],
) -> Vec<(&'s str, &'s str)> {
    let mut key: Vec<(&str, &str)> = labels
        .iter()
        .filter(|l| !l.value.is_empty() && !excluded.contains(&l.name.as_ref()))
        .map(|l| (l.name.as_ref(), l.value.as_ref()))
        .collect();
    key.sort_unstable();
    key
}

// ---- duplicate detection ---------------------------------------------------------------------

/// Orders label names as `str` does, deciding on the first eight bytes where they differ (most
/// neighbouring names do): a library `memcmp` call per comparison costs more than the comparison.
fn name_cmp(a: &str, b: &str) -> Ordering {
    // Zero-padded, big-endian: a word order is the byte order, and a shorter name's padding sorts
    // before any byte, as a proper prefix does. Equal words say nothing (padding vs a NUL byte).
    fn word(name: &[u8]) -> u64 {
        let mut word = [0u8; 8];
        let len = name.len().min(8);
        word[..len].copy_from_slice(&name[..len]);
        u64::from_be_bytes(word)
    }
    match word(a.as_bytes()).cmp(&word(b.as_bytes())) {
        Ordering::Equal => a.cmp(b),
        decided => decided,
    }
}

/// The bits of a `bound` label's value when it is a number (`-0` as `0`, every NaN alike), the
/// form two spellings of one bound share.
fn bound_number(label: &Label<'_>, bound: Option<&str>) -> Option<u64> {
    if bound != Some(label.name.as_ref()) {
        return None;
    }
    let value = parse_float(&label.value)?;
    Some(if value == 0.0 { 0 } else { value.to_bits() })
}

/// A label value in a series' identity: as written, or a bound's number.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum IdentityValue<'s> {
    Text(&'s str),
    Number(u64),
}

/// A series' labels as [`SeriesSet`] compares them: sorted, empty values left out, a bound by
/// its number.
fn identity<'s>(labels: &'s [Label<'_>], bound: Option<&str>) -> Vec<(&'s str, IdentityValue<'s>)> {
    let mut key: Vec<(&str, IdentityValue<'_>)> = labels
        .iter()
        .filter(|l| !l.value.is_empty())
        .map(|l| {
            let value = match bound_number(l, bound) {
                Some(bits) => IdentityValue::Number(bits),
                None => IdentityValue::Text(l.value.as_ref()),
            };
            (l.name.as_ref(), value)
        })
        .collect();
    key.sort_unstable();
    key
}

#[derive(Clone, Copy)]
struct SeriesRef {
    family: usize,
    sample: usize,
}

/// The series seen so far, by a randomly seeded hash of name and sorted label set. A hash hit is
/// confirmed by comparing the label sets, so a genuine 64-bit collision costs a comparison, never
/// a wrongly dropped sample.
struct SeriesSet {
    /// Seeded per parse. foldhash rather than SipHash: it reads the ~250-byte keys faster, and the
    /// page comes from the app in the same container, not from the internet; even colliding keys
    /// would cost time, never a sample.
    hasher: foldhash::quality::RandomState,
    first: HashMap<u64, SeriesRef, BuildHasherDefault<PrehashedHasher>>,
    /// Distinct series whose hash was already taken (practically never used).
    collisions: Vec<(u64, SeriesRef)>,
    /// Reused buffer of label indices sorted by name.
    order: Vec<usize>,
    /// Reused buffer for the canonical bytes of a series.
    key: Vec<u8>,
}

impl SeriesSet {
    fn new() -> SeriesSet {
        SeriesSet {
            hasher: foldhash::quality::RandomState::default(),
            first: HashMap::default(),
            collisions: Vec::new(),
            order: Vec::new(),
            key: Vec::new(),
        }
    }

    /// Records the series of `sample` (to be stored at `position`). `Ok(false)` if it was seen
    /// before; `Err(label)` if the label set names a label twice. The value of the `bound` label
    /// (`le` in a histogram, `quantile` in a summary) counts by its number when it is one:
    /// `le="1"` and `le="1.0"` are one series, as Prometheus 3 stores them (and as the sidecar
    /// writes them, in either spelling).
    fn insert(
        &mut self,
        sample: &Sample<'_>,
        bound: Option<&str>,
        position: SeriesRef,
        families: &[FamilyState<'_>],
    ) -> Result<bool, String> {
        // The canonical bytes of the series: name, then the non-empty labels sorted by name,
        // each string closed by 0xff (a byte UTF-8 never contains), hashed in one `write`. A
        // bound that is a number is 0xfe (never in UTF-8 either) and its eight bytes instead.
        let labels = &sample.labels;
        self.key.clear();
        self.key.extend_from_slice(sample.name.as_bytes());
        self.key.push(0xff);
        let mut append = |label: &Label<'_>| {
            if !label.value.is_empty() {
                self.key.extend_from_slice(label.name.as_bytes());
                self.key.push(0xff);
                match bound_number(label, bound) {
                    Some(bits) => {
                        self.key.push(0xfe);
                        self.key.extend_from_slice(&bits.to_le_bytes());
                    }
                    None => self.key.extend_from_slice(label.value.as_bytes()),
                }
                self.key.push(0xff);
            }
        };
        let less = |a: &Label<'_>, b: &Label<'_>| name_cmp(&a.name, &b.name) == Ordering::Less;
        let (last, init) = labels
            .split_last()
            .map_or((None, &labels[..]), |(l, i)| (Some(l), i));
        // Most clients write labels sorted by name, then there is nothing to sort and no
        // duplicate name either; histograms and summaries add `le` / `quantile` last.
        if init
            .windows(2)
            .all(|pair| matches!(pair, [a, b] if less(a, b)))
        {
            let at = last.map_or(0, |last| init.partition_point(|label| less(label, last)));
            if let (Some(last), Some(next)) = (last, init.get(at))
                && !less(last, next)
            {
                return Err(last.name.to_string());
            }
            init[..at].iter().for_each(&mut append);
            last.into_iter().for_each(&mut append);
            init[at..].iter().for_each(&mut append);
        } else {
            self.order.clear();
            self.order.extend(0..labels.len());
            let name_of = |i: usize| labels.get(i).map_or("", |l| l.name.as_ref());
            self.order
                .sort_unstable_by(|&a, &b| name_cmp(name_of(a), name_of(b)));
            let mut previous: Option<&str> = None;
            for label in self.order.iter().filter_map(|&i| labels.get(i)) {
                if previous == Some(label.name.as_ref()) {
                    return Err(label.name.to_string());
                }
                previous = Some(label.name.as_ref());
                append(label);
            }
        }
        let hash = self.hasher.hash_one(self.key.as_slice());

        let same_series = |seen: SeriesRef| {
            families
                .get(seen.family)
                .and_then(|f| f.family.samples.get(seen.sample))
                .is_some_and(|other| {
                    other.name == sample.name
                        && identity(&other.labels, bound) == identity(labels, bound)
                })
        };
        let seen = match self.first.entry(hash) {
            Entry::Vacant(slot) => {
                slot.insert(position);
                return Ok(true);
            }
            Entry::Occupied(slot) => *slot.get(),
        };
        match seen {
            seen if same_series(seen) => Ok(false),
            _ => {
                let seen_before = self
                    .collisions
                    .iter()
                    .any(|&(h, seen)| h == hash && same_series(seen));
                if !seen_before {
                    self.collisions.push((hash, position));
                }
                Ok(!seen_before)
            }
        }
    }
}

/// A `Hasher` for keys that already are hashes (of the series' canonical bytes).
#[derive(Default)]
struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; fold anything else so the hasher stays correct regardless.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8)) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod name_order_tests {
    use super::name_cmp;

    #[test]
    fn name_order_is_str_order() {
        let names = [
            "",
            "a",
            "b",
            "le",
            "le_x",
            "quantile",
            "http_route",
            "http_request_method",
            "http_response_status_code",
            "http_re",
            "http_req",
            "http_reqa",
            "wx_appid",
            "wx_access_node",
            "abcdefgh",
            "abcdefgh\0",
            "abcdefghi",
            "abcdefg",
            "a\0",
            "a\0b",
            "微信",
            "微",
            "Z",
            "_",
            "__name__",
        ];
        for a in names {
            for b in names {
                assert_eq!(name_cmp(a, b), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
    }
}
