//! The line loop and the family state machine.
//!
//! `comment` reads `#` lines and `sample` reads sample lines; this file gives what they read to
//! a family, `series` finds duplicate series, and `assemble` puts the page together at the end.
//! `family` is the piece of a family being built, which all of them share.
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

use crate::Text;

mod assemble;
mod comment;
mod family;
mod names;
mod sample;
mod series;

pub(crate) use assemble::series_key;
pub(crate) use sample::{exemplar_at, value_offset};

use crate::error::{ErrorKind, ParseError, Snippet};
use crate::lexer::{Cursor, LineError, LineResult, seconds_to_ms};
use crate::model::{Exposition, Format, Label, Limits, MetricFamily, MetricType, Sample};
use assemble::{fold_created, merge_pieces};
use comment::{Comment, Metadata, read_comment};
use family::{PieceFlags, bound_label, fits, internal_error};
use names::NameIndex;
use sample::read_sample;
use series::{SeriesRef, SeriesSet};

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
/// assert_eq!(family.samples[0].timestamp_ms.get(), Some(1_700_000_000_000));
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
    // memchr: a byte-by-byte count is ~2.6 instructions a byte, 5 % of a 10,000-series scrape.
    let lines = memchr::memchr_iter(b'\n', body.as_bytes()).count() + 1;
    let mut last_line = 0;
    for (index, raw) in body.split('\n').enumerate() {
        last_line = index + 1;
        parser.lines_after = lines - last_line;
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

struct Parser<'a, 'l> {
    format: Format,
    limits: &'l Limits,
    /// The families as pieces, in order of appearance (merged in `finish`).
    families: Vec<MetricFamily<'a>>,
    /// One for each of `families`.
    flags: Vec<PieceFlags>,
    /// Each name's latest piece (pieces of samples that fit no family of their name are not
    /// here).
    by_name: NameIndex,
    current: Option<usize>,
    /// A name has more than one piece: `finish` merges them.
    pieces: bool,
    series: SeriesSet,
    duplicates: usize,
    exemplars_dropped: usize,
    samples_seen: usize,
    eof_seen: bool,
    /// Text format: a line starting with a NUL byte ended the page, as it ends Prometheus's.
    stopped: bool,
    /// Labels of the line being parsed, moved into an exact-size `Vec` once the line is read.
    label_scratch: Vec<Label<'a>>,
    /// Lines of the page after the one being parsed: each adds at most one sample or family.
    lines_after: usize,
}

/// Room for one more item in `items`, which the current line adds: doubling as `Vec` grows, but
/// never past what the rest of the page could add. A family's sample list (and the family list)
/// reaches its last size in its last doubling, which would leave up to half of it empty at the
/// parse's peak: 2.4 MiB on the 100,000-series page, whose list is then exact.
fn reserve_one<T>(items: &mut Vec<T>, lines_after: usize) {
    if items.len() == items.capacity() {
        items.reserve_exact(items.capacity().clamp(1, lines_after.saturating_add(1)));
    }
}

impl<'a, 'l> Parser<'a, 'l> {
    fn new(format: Format, limits: &'l Limits) -> Parser<'a, 'l> {
        Parser {
            format,
            limits,
            families: Vec::new(),
            by_name: NameIndex::new(),
            current: None,
            pieces: false,
            series: SeriesSet::new(),
            duplicates: 0,
            exemplars_dropped: 0,
            samples_seen: 0,
            eof_seen: false,
            stopped: false,
            label_scratch: Vec::new(),
            lines_after: 0,
            flags: Vec::new(),
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

    fn comment_line(&mut self, cur: Cursor<'a>) -> LineResult<()> {
        let (name, name_at, metadata) = match read_comment(cur, self.format)? {
            Comment::Ignored => return Ok(()),
            Comment::Eof => {
                self.eof_seen = true;
                return Ok(());
            }
            Comment::Metadata {
                name,
                name_at,
                metadata,
            } => (name, name_at, metadata),
        };
        let at = |kind| LineError {
            offset: name_at,
            kind,
        };
        let index = self.family_for_metadata(name).map_err(at)?;
        let family = self.family_mut(index).map_err(at)?;
        match metadata {
            Metadata::Type(metric_type) => {
                family.metric_type = metric_type;
                self.flags_mut(index).map_err(at)?.type_declared = true;
            }
            Metadata::Help(help) => family.metadata_mut().help = Some(help),
            Metadata::Unit(unit) => family.metadata_mut().unit = Some(Text::borrowed(unit)),
        }
        Ok(())
    }

    /// The family piece a `# HELP`/`# TYPE`/`# UNIT` line is about; it becomes current. The
    /// name's latest piece while it has no samples (a later line of the same kind replaces an
    /// earlier one, as the last `# TYPE` is the one Prometheus applies); else a new piece, of the
    /// latest one's type until a `# TYPE` says otherwise (so that a late `# HELP` between a
    /// counter's samples keeps the next ones in the counter).
    fn family_for_metadata(&mut self, name: Text<'a>) -> Result<usize, ErrorKind> {
        let latest = match self.current {
            Some(current) if self.families.get(current).map(|f| &f.name) == Some(&name) => {
                Some(current)
            }
            _ => self.by_name.get(&name, &self.families),
        };
        let mut inherited = MetricType::Unknown;
        if let Some(family) = latest.and_then(|index| self.families.get(index)) {
            if family.samples.is_empty() {
                self.current = latest;
                return latest.ok_or_else(internal_error);
            }
            inherited = family.metric_type;
            self.pieces = true;
        }
        let index = self.new_family(name, true)?;
        self.family_mut(index)?.metric_type = inherited;
        Ok(index)
    }

    /// A new family piece, current from now on; `register`: the name's latest piece.
    fn new_family(&mut self, name: Text<'a>, register: bool) -> Result<usize, ErrorKind> {
        if self.families.len() >= self.limits.max_families {
            return Err(ErrorKind::TooManyFamilies {
                limit: self.limits.max_families,
            });
        }
        let index = self.families.len();
        if register {
            self.by_name
                .set(&name, index, &self.families)
                .ok_or(ErrorKind::TooManyFamilies {
                    limit: u32::MAX as usize,
                })?;
        }
        reserve_one(&mut self.families, self.lines_after);
        reserve_one(&mut self.flags, self.lines_after);
        self.families.push(MetricFamily {
            name,
            metric_type: MetricType::Unknown,
            metadata: None,
            samples: Vec::new(),
        });
        self.flags.push(PieceFlags::default());
        self.current = Some(index);
        Ok(index)
    }

    fn family_mut(&mut self, index: usize) -> Result<&mut MetricFamily<'a>, ErrorKind> {
        self.families.get_mut(index).ok_or_else(internal_error)
    }

    fn flags_mut(&mut self, index: usize) -> Result<&mut PieceFlags, ErrorKind> {
        self.flags.get_mut(index).ok_or_else(internal_error)
    }
    // ---- sample lines ------------------------------------------------------------------------

    fn sample_line(&mut self, mut cur: Cursor<'a>) -> LineResult<()> {
        let line_start = cur.pos();
        let line = read_sample(&mut cur, self.format, self.limits, &mut self.label_scratch)?;
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
        let index = self.family_for_sample(&line.name).map_err(at_line)?;
        let family = &self
            .families
            .get(index)
            .ok_or_else(internal_error)
            .map_err(at_line)?;
        let is_created = self.format == Format::OpenMetrics
            && family.metric_type.has_created()
            && line.name.strip_prefix(family.name.as_ref()) == Some("_created");
        // A `_created` sample's start time, parked on the sample until `finish` folds it. One
        // that is no time (NaN, ±Inf, out of range) gives no start time; Prometheus does not
        // fail the page for it either.
        let created_ms = if is_created {
            seconds_to_ms(line.value_token)
        } else {
            None
        };
        let mut exemplar = line.exemplar;
        if exemplar
            .as_ref()
            .is_some_and(|e| !e.is_storable(self.limits))
        {
            exemplar = None;
            self.exemplars_dropped += 1;
        }
        let sample = Sample {
            name: line.name,
            labels: self.label_scratch.drain(..).collect(),
            value: line.value,
            timestamp_ms: line.timestamp_ms.into(),
            created_ms: created_ms.into(),
            exemplar,
        };
        self.add_sample(index, sample, is_created).map_err(at_line)
    }

    /// Stores a sample in family `index` unless its series was seen before.
    fn add_sample(
        &mut self,
        index: usize,
        sample: Sample<'a>,
        is_created: bool,
    ) -> Result<(), ErrorKind> {
        let state = self.families.get(index).ok_or_else(internal_error)?;
        let position =
            SeriesRef::new(index, state.samples.len()).ok_or(ErrorKind::TooManySamples {
                limit: u32::MAX as usize,
            })?;
        let bound = bound_label(state.metric_type);
        match self.series.insert(&sample, bound, position, &self.families) {
            Ok(true) => {}
            Ok(false) => {
                self.duplicates += 1;
                return Ok(());
            }
            Err(label) => return Err(ErrorKind::DuplicateLabel(Snippet::new(&label))),
        }
        let lines_after = self.lines_after;
        self.flags_mut(index)?.has_created |= is_created;
        let samples = &mut self.family_mut(index)?.samples;
        // Room for one at first: a vector's first push makes room for four, and on a page of
        // one-sample families (100,000 of them is not rare) three empty samples a family
        // (288 bytes) would outweigh the page's text.
        reserve_one(samples, lines_after);
        samples.push(sample);
        Ok(())
    }

    /// The family a sample belongs to: the current one if the name fits (the common case), else
    /// the latest one found by name, else a new untyped family. A sample whose name is a family's
    /// but not one its type has (`foo` under `# TYPE foo histogram`) is its own untyped family,
    /// as Prometheus stores it.
    fn family_for_sample(&mut self, name: &Text<'a>) -> Result<usize, ErrorKind> {
        let format = self.format;
        if let Some(current) = self.current {
            if self
                .families
                .get(current)
                .is_some_and(|f| fits(f, name, format))
            {
                return Ok(current);
            }
        }
        if let Some(index) = self.lookup_family(name) {
            self.current = Some(index);
            return Ok(index);
        }
        let taken = self.by_name.contains(name, &self.families);
        self.pieces |= taken;
        self.new_family(name.clone(), !taken)
    }

    fn lookup_family(&self, name: &str) -> Option<usize> {
        let fits_index = |index: usize| {
            self.families
                .get(index)
                .is_some_and(|f| fits(f, name, self.format))
        };
        if let Some(index) = self.by_name.get(name, &self.families) {
            if fits_index(index) {
                return Some(index);
            }
        }
        ALL_SUFFIXES.iter().find_map(|suffix| {
            let base = name.strip_suffix(suffix)?;
            let index = self.by_name.get(base, &self.families)?;
            fits_index(index).then_some(index)
        })
    }

    // ---- the end -----------------------------------------------------------------------------

    fn finish(self) -> Exposition<'a> {
        let Parser {
            format,
            families,
            flags,
            pieces,
            duplicates,
            exemplars_dropped,
            by_name,
            series,
            label_scratch,
            ..
        } = self;
        // The indexes go before anything is merged: a page's peak is the page, not the page and
        // its indexes.
        drop((by_name, series, label_scratch));
        let (mut families, flags) = if pieces {
            merge_pieces(families, flags)
        } else {
            (families, flags)
        };
        for (family, flags) in families.iter_mut().zip(flags) {
            if flags.has_created && format == Format::OpenMetrics {
                fold_created(family);
            }
            // The slack of growing (up to half of a family's samples) is not kept.
            family.samples.shrink_to_fit();
        }
        families.shrink_to_fit();
        Exposition {
            families,
            duplicates,
            exemplars_dropped,
        }
    }
}
