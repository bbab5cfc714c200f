//! Scrapes of a page whose series did not change, without parsing it again.
//!
//! An app's page is the same text scrape after scrape except for its values. Prometheus keeps a
//! cache from each series' text to its parsed form for this reason; here the sidecar learns the
//! *shape* of a page once — every line, and for each sample line where its value goes in the
//! converted families — and while a new page has exactly that shape, it only reads the values:
//! no labels lexed, no series hashed, no parsed page in memory.
//!
//! Correctness rests on three things:
//! - a page is replayed only if every line is the learned line: byte for byte up to the value for
//!   a line that holds a sample the parser kept, byte for byte whole for every other line (a
//!   comment, a dropped duplicate, a folded `_created`: the parser may read more of those than a
//!   value); checked with a 128-bit hash and the length of what is compared;
//! - the parser's and converter's structure depends on everything but the values, so an equal
//!   prefix means equal families, points and labels;
//! - a shape is only kept after a self-check: the values of the page it was learned from, put
//!   where the shape says, must give exactly the families the full path gave.
//!
//! Anything else — timestamps, exemplars, `_created`, a line that does not look like
//! `<series> <value>`, a value that does not parse — is left to the full path.

use std::hash::BuildHasher;

use wxcloudrun_exposition::{Exposition, Format, Limits, parse_value};

use crate::convert::Converter;
use crate::model::{Family, Value, normalize_nan};

/// Learning stops after this many scrapes in a row whose shape did not last one scrape; it is
/// tried again after a pause that doubles each time, up to this many scrapes.
const MAX_BACKOFF: u32 = 64;

/// The learned shape of the last page, and when to try learning again.
#[derive(Debug)]
pub struct Replay {
    enabled: bool,
    shape: Option<Shape>,
    /// Scrapes to wait before learning again.
    pause: u32,
    /// The pause to take after the next failed shape.
    next_pause: u32,
    /// Whether the current shape has been replayed at least once.
    used: bool,
}

#[derive(Debug)]
struct Shape {
    format: Format,
    hashers: (
        foldhash::quality::RandomState,
        foldhash::quality::RandomState,
    ),
    lines: Vec<LineShape>,
    /// Where each sample line's value goes (a line may feed two places: a histogram's `+Inf`
    /// bucket is also its count when `_count` is missing).
    slots: Vec<Slot>,
    /// The converted families of the learned page; their values are overwritten on replay.
    families: Vec<Family>,
    /// Samples in the page, as the parser counts them (duplicates excluded).
    sample_count: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LineShape {
    /// The hash of the line's text before the value (of the whole line, unless `sample`).
    hash: (u64, u64),
    /// Length of that text.
    prefix_len: u32,
    /// The line holds a sample the parser kept: its last token is read as the value.
    sample: bool,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    line: u32,
    family: u32,
    point: u32,
    component: Component,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Component {
    Number,
    Count,
    Sum,
    /// A histogram's bucket or a summary's quantile, by position.
    Entry(u32),
}

/// A replayed page: the app's families with this scrape's values (start times not yet set).
#[derive(Debug)]
pub struct Replayed {
    /// The families, in page order, as the full path would have converted them.
    pub families: Vec<Family>,
    /// Samples in the page, as [`Exposition::sample_count`] counts them.
    pub sample_count: usize,
}

/// A line of the page as replay sees it.
enum Line<'t> {
    /// A comment or an empty line: compared whole.
    Fixed,
    /// The text before the value (up to its last space), and the value token.
    Sample(&'t str, &'t str),
    /// Anything else that is not `<series> <value>` (a tab before the value, say): a page with a
    /// kept sample on such a line is not learned.
    Unreadable,
}

fn classify(line: &str) -> Line<'_> {
    if line.is_empty() || line.starts_with('#') {
        return Line::Fixed;
    }
    match line.rfind(' ') {
        Some(space) => Line::Sample(&line[..=space], &line[space + 1..]),
        None => Line::Unreadable,
    }
}

impl Shape {
    fn hash(&self, text: &str) -> (u64, u64) {
        (
            self.hashers.0.hash_one(text.as_bytes()),
            self.hashers.1.hash_one(text.as_bytes()),
        )
    }
}

impl Replay {
    /// `enabled: false` never learns: every page takes the full path.
    pub fn new(enabled: bool) -> Self {
        Replay {
            enabled,
            shape: None,
            pause: 0,
            next_pause: 0,
            used: false,
        }
    }

    /// The page's families if it has the learned shape, else `None` (and the shape is dropped
    /// when the page no longer matches it).
    pub fn replay(&mut self, text: &str, format: Format, limits: &Limits) -> Option<Replayed> {
        let shape = self.shape.as_ref()?;
        let replayed = shape.replay(text, format, limits);
        if replayed.is_some() {
            self.used = true;
            self.next_pause = 0;
        } else {
            // A shape that did not last a single scrape: the page changes all the time, and
            // learning it costs a second conversion; wait longer before the next try.
            if !self.used {
                self.next_pause = (self.next_pause * 2).clamp(1, MAX_BACKOFF);
            }
            self.pause = self.next_pause;
            self.shape = None;
        }
        replayed
    }

    /// Learns the shape of `text`, which the full path parsed into `page` and converted into
    /// `families` (the app's families only, in order). `converter` provides the sidecar's labels.
    /// Takes the page: learning relabels its values, and drops it before keeping anything.
    pub fn learn(
        &mut self,
        text: &str,
        format: Format,
        page: Exposition<'_>,
        families: &[Family],
        converter: &Converter,
    ) {
        if !self.enabled {
            return;
        }
        if self.pause > 0 {
            self.pause -= 1;
            return;
        }
        self.used = false;
        self.shape = Shape::learn(text, format, page, families, converter);
        if self.shape.is_none() {
            self.next_pause = (self.next_pause * 2).clamp(1, MAX_BACKOFF);
            self.pause = self.next_pause;
        }
    }

    /// Whether a shape is learned (for tests and benchmarks).
    pub fn has_shape(&self) -> bool {
        self.shape.is_some()
    }
}

impl Shape {
    fn learn(
        text: &str,
        format: Format,
        mut page: Exposition<'_>,
        families: &[Family],
        converter: &Converter,
    ) -> Option<Shape> {
        // Only what depends on the series alone: no timestamps (their token follows the value),
        // no exemplars, no `_created` (a start time the converter reads).
        let plain =
            page.families.iter().flat_map(|f| &f.samples).all(|s| {
                s.timestamp_ms.is_none() && s.exemplar.is_none() && s.created_ms.is_none()
            });
        if !plain {
            return None;
        }
        let mut shape = Shape {
            format,
            hashers: Default::default(),
            lines: Vec::new(),
            slots: Vec::new(),
            families: Vec::new(),
            sample_count: page.sample_count(),
        };
        let lines: Vec<&str> = text.split('\n').collect();
        let mut line_starts = Vec::with_capacity(lines.len());
        let mut start = 0;
        for line in &lines {
            line_starts.push(start);
            start += line.len() + 1;
        }
        // Each kept sample's value becomes the number of its line (found from where its name
        // sits in the page: names borrow from it); converted, these numbers show where each
        // line's value lands. Only those lines are read by value later: every other line —
        // comments, dropped duplicates, folded `_created` lines, whose last token the parser may
        // still read — must come back byte for byte.
        let mut line_values = vec![None; lines.len()];
        let base = text.as_ptr() as usize;
        for sample in page.families.iter_mut().flat_map(|f| &mut f.samples) {
            let offset = (sample.name.as_ptr() as usize).checked_sub(base)?;
            if offset >= text.len() {
                return None; // an unescaped copy of a quoted name: not in the page
            }
            let line = line_starts.partition_point(|&start| start <= offset) - 1;
            let Line::Sample(_, token) = classify(lines.get(line)?) else {
                return None; // no `<series> <value>` line: replay could not read it
            };
            *line_values.get_mut(line)? = Some(parse_value(token)?);
            sample.value = line as f64;
        }
        for (line, value) in lines.iter().zip(&line_values) {
            let (compared, sample) = match (value, classify(line)) {
                (Some(_), Line::Sample(prefix, _)) => (prefix, true),
                _ => (*line, false),
            };
            shape.lines.push(LineShape {
                hash: shape.hash(compared),
                prefix_len: u32::try_from(compared.len()).ok()?,
                sample,
            });
        }
        drop(lines);
        let line_values: Vec<f64> = line_values
            .into_iter()
            .map(|value| value.unwrap_or(f64::NAN))
            .collect();
        let template = converter.untracked().convert(&[&page], 0).families;
        drop(page);
        shape.slots = slots(&template, shape.lines.len())?;
        // Copied now that the page is gone, so that what is kept lands in the space it freed
        // rather than above it, where it would keep the allocator from returning memory.
        shape.families = template.clone();
        drop(template);
        drop(line_starts);
        shape.lines.shrink_to_fit();

        // The self-check: this page's own values, put where the shape says, must give what the
        // full path gave (start times aside: the converter sets them on every path).
        let mut filled = shape.families.clone();
        shape.fill(&mut filled, &line_values)?;
        same_but_start_times(&filled, families).then_some(shape)
    }

    fn replay(&self, text: &str, format: Format, limits: &Limits) -> Option<Replayed> {
        if format != self.format || text.len() > limits.max_body_bytes {
            return None;
        }
        let mut values = vec![f64::NAN; self.lines.len()];
        let mut lines = text.split('\n');
        for (expected, value) in self.lines.iter().zip(values.iter_mut()) {
            let line = lines.next()?;
            if line.len() > limits.max_line_bytes {
                return None;
            }
            let compared = match (expected.sample, classify(line)) {
                (true, Line::Sample(prefix, token)) => {
                    *value = normalize_nan(parse_value(token)?);
                    prefix
                }
                (true, _) => return None,
                (false, _) => line,
            };
            if compared.len() != expected.prefix_len as usize
                || self.hash(compared) != expected.hash
            {
                return None;
            }
        }
        if lines.next().is_some() {
            return None;
        }
        let mut families = self.families.clone();
        self.fill(&mut families, &values)?;
        Some(Replayed {
            families,
            sample_count: self.sample_count,
        })
    }

    /// Writes each slot's line value into `families`.
    fn fill(&self, families: &mut [Family], values: &[f64]) -> Option<()> {
        for slot in &self.slots {
            let value = normalize_nan(*values.get(slot.line as usize)?);
            let point = families
                .get_mut(slot.family as usize)?
                .points
                .get_mut(slot.point as usize)?;
            let target = match (&mut point.value, slot.component) {
                (Value::Number { value, .. }, Component::Number) => value,
                (
                    Value::Histogram { count, .. } | Value::Summary { count, .. },
                    Component::Count,
                ) => count,
                (Value::Histogram { sum, .. } | Value::Summary { sum, .. }, Component::Sum) => {
                    sum.as_mut()?
                }
                (
                    Value::Histogram {
                        buckets: entries, ..
                    }
                    | Value::Summary {
                        quantiles: entries, ..
                    },
                    Component::Entry(i),
                ) => &mut entries.get_mut(i as usize)?.1,
                _ => return None,
            };
            *target = value;
        }
        Some(())
    }
}

/// Where each tagged value of `families` came from. `None` if a value is not a line number of
/// the page (the tagging did not go as planned).
fn slots(families: &[Family], line_count: usize) -> Option<Vec<Slot>> {
    let mut slots = Vec::new();
    for (f, family) in families.iter().enumerate() {
        for (p, point) in family.points.iter().enumerate() {
            let mut add = |tag: f64, component| -> Option<()> {
                if !(tag >= 0.0 && tag.fract() == 0.0 && tag < line_count as f64) {
                    return None;
                }
                slots.push(Slot {
                    line: tag as u32,
                    family: u32::try_from(f).ok()?,
                    point: u32::try_from(p).ok()?,
                    component,
                });
                Some(())
            };
            match &point.value {
                Value::Number { value, .. } => add(*value, Component::Number)?,
                Value::Histogram {
                    count,
                    sum,
                    buckets: entries,
                    ..
                }
                | Value::Summary {
                    count,
                    sum,
                    quantiles: entries,
                    ..
                } => {
                    add(*count, Component::Count)?;
                    if let Some(sum) = sum {
                        add(*sum, Component::Sum)?;
                    }
                    for (i, (_, tag)) in entries.iter().enumerate() {
                        add(*tag, Component::Entry(u32::try_from(i).ok()?))?;
                    }
                }
            }
        }
    }
    Some(slots)
}

/// Whether two conversions agree in everything but start times, values compared bit for bit
/// (NaN is a value here, and equal to itself).
fn same_but_start_times(a: &[Family], b: &[Family]) -> bool {
    let bits = |values: &[(f64, f64)]| -> Vec<(u64, u64)> {
        values
            .iter()
            .map(|(x, y)| (x.to_bits(), y.to_bits()))
            .collect()
    };
    let value_eq = |a: &Value, b: &Value| match (a, b) {
        (
            Value::Number {
                name: n1,
                value: v1,
            },
            Value::Number {
                name: n2,
                value: v2,
            },
        ) => n1 == n2 && v1.to_bits() == v2.to_bits(),
        (
            Value::Histogram {
                count: c1,
                sum: s1,
                buckets: b1,
                stale: t1,
            },
            Value::Histogram {
                count: c2,
                sum: s2,
                buckets: b2,
                stale: t2,
            },
        )
        | (
            Value::Summary {
                count: c1,
                sum: s1,
                quantiles: b1,
                stale: t1,
            },
            Value::Summary {
                count: c2,
                sum: s2,
                quantiles: b2,
                stale: t2,
            },
        ) => {
            c1.to_bits() == c2.to_bits()
                && s1.map(f64::to_bits) == s2.map(f64::to_bits)
                && bits(b1) == bits(b2)
                && t1 == t2
        }
        _ => false,
    };
    a.len() == b.len()
        && a.iter().zip(b).all(|(fa, fb)| {
            (&fa.name, &fa.help, &fa.unit, fa.kind) == (&fb.name, &fb.help, &fb.unit, fb.kind)
                && fa.points.len() == fb.points.len()
                && fa
                    .points
                    .iter()
                    .zip(&fb.points)
                    .all(|(pa, pb)| pa.labels == pb.labels && value_eq(&pa.value, &pb.value))
        })
}
