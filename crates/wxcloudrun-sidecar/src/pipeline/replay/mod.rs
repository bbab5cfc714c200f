//! Scrapes of a page whose series did not change, without parsing it again.
//!
//! An app's page is the same text scrape after scrape except for its values and exemplars.
//! Prometheus keeps a cache from each series' text to its parsed form for this reason; here the
//! sidecar learns the *shape* of a page once — every line, and for each sample line where its
//! value goes in the converted families — and while a new page has exactly that shape, it only
//! reads the values and exemplars: no labels lexed, no series hashed, no parsed page in memory.
//!
//! A shape is learned from a parsed page in one conversion: each kept sample's value is replaced
//! by the number of its line, the page is converted into the template, and the numbers found in
//! the template say where each line's value goes. That scrape's own families are the template
//! filled with the page's values, as every replayed scrape's are.
//!
//! Correctness rests on four things:
//! - a page is replayed only if every line is the learned line: byte for byte up to the value for
//!   a line that holds a sample the parser kept, byte for byte whole for every other line (a
//!   comment, a dropped duplicate, a folded `_created`: the parser may read more of those than a
//!   value); checked with the length of what is compared on each line and a 128-bit hash of all
//!   of it, the page's lines in order;
//! - what follows the value on a kept sample's line is read as the parser reads it, or the page
//!   goes to the full parse: the value token up to the first blank, then nothing but blanks, or
//!   blanks and an exemplar read by the parser's own exemplar reader
//!   ([`parse_exemplar`](wxcloudrun_exposition::parse_exemplar)), which fails where the parser
//!   would fail the line; a timestamp, or anything else, is left to the full path. The parser
//!   reads the series from the bytes before the value, looking one byte further only to see that
//!   the series has ended, which the first byte of any value tells it;
//! - the parser's and converter's structure depends on everything but the values and exemplars,
//!   and the converter passes each value through as it is (NaN normalised) and each exemplar to
//!   the number or bucket of its line (none to a `_sum`, `_count` or quantile), so an equal
//!   prefix means equal families, points and labels, and a line number put in a value's place
//!   comes out where that value and its exemplar would;
//! - a shape is only learned when the value and exemplar replay reads on each sample's line are,
//!   bit for bit, those the parser read there, and every number found in the template is a line
//!   number.
//!
//! Anything else — timestamps, `_created`, a line that does not look like `<series> <value>`
//! with an optional exemplar, a value or exemplar that does not parse — is left to the full path.

mod line;
mod template;

use std::hash::{BuildHasher, Hasher};

use wxcloudrun_exposition::{Exposition, Format, Limits, ParseError, parse_with_limits};

use crate::model::{Exemplar, Family, Point, Value, normalize_nan};
use crate::pipeline::convert::{Chunks, Converter, Source};
use line::{read_tail, same_exemplar, value_start};
use template::{Cursor, Template};

/// Learning stops after this many scrapes in a row whose shape did not last one scrape; it is
/// tried again after a pause that doubles each time, up to this many scrapes.
const MAX_BACKOFF: u32 = 64;

/// The learned shape of the last page, and when to try learning again.
#[derive(Debug, Default)]
pub struct Replay {
    shape: Option<PageShape>,
    /// Scrapes to wait before learning again.
    pause: u32,
    /// The pause to take after the next failed shape.
    next_pause: u32,
    /// Whether the current shape has been replayed at least once.
    used: bool,
}

#[derive(Debug)]
struct PageShape {
    format: Format,
    hashers: (
        foldhash::quality::RandomState,
        foldhash::quality::RandomState,
    ),
    /// The hash of what is compared on every line ([`PageHash`]). One for the page, not one a
    /// line: a page that differs anywhere is parsed, whichever line it is.
    hash: (u64, u64),
    lines: Vec<LineShape>,
    /// Where each sample line's value goes (a line may feed two places: a histogram's `+Inf`
    /// bucket is also its count when `_count` is missing), in the order of the points.
    placements: Vec<Placement>,
    /// The converted families of the learned page, without their labels (the converter
    /// remembers those) or values (written on replay).
    template: Template,
    /// Samples in the page, as the parser counts them (duplicates excluded).
    sample_count: usize,
    /// Histogram and summary samples whose bound does not parse (left out of every point).
    without_bound: usize,
    /// [`Converter::forgotten`] when every series of the template was last known to be
    /// remembered.
    remembered_at: u64,
}

/// One line of a shape, in 4 bytes (a shape is kept for as long as the page has it, one per
/// line): the length of the text compared, which is the text before the value on a line that holds
/// a sample the parser kept (the top bit set), else the whole line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LineShape(u32);

impl LineShape {
    const SAMPLE: u32 = 1 << 31;

    /// `None` for a text of 2 GiB or more.
    fn new(compared_len: usize, sample: bool) -> Option<LineShape> {
        let len = u32::try_from(compared_len)
            .ok()
            .filter(|len| len & Self::SAMPLE == 0)?;
        Some(LineShape(if sample { len | Self::SAMPLE } else { len }))
    }

    fn compared_len(self) -> usize {
        (self.0 & !Self::SAMPLE) as usize
    }

    /// The line holds a sample the parser kept: its last token is read as the value.
    fn sample(self) -> bool {
        self.0 & Self::SAMPLE != 0
    }
}

/// What is compared on each line of a page, hashed in page order, each text after its length
/// (so that no two lists of texts run together into one): two keyed 64-bit hashes.
struct PageHash(
    foldhash::quality::FoldHasher<'static>,
    foldhash::quality::FoldHasher<'static>,
);

impl PageHash {
    fn line(&mut self, text: &str) {
        for hasher in [&mut self.0, &mut self.1] {
            hasher.write_usize(text.len());
            hasher.write(text.as_bytes());
        }
    }

    fn finish(&self) -> (u64, u64) {
        (self.0.finish(), self.1.finish())
    }
}

/// Where one line's value goes in the families: 12 bytes, one a sample line.
#[derive(Debug, Clone, Copy)]
struct Placement {
    line: u32,
    /// The point, numbered across the template's families.
    point: u32,
    /// A [`Component`], packed.
    component: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Component {
    Number,
    Count,
    Sum,
    /// A histogram's bucket or a summary's quantile, by position.
    Entry(u32),
}

impl Component {
    /// In 4 bytes: `Entry(i)` as `i + 3`; `None` past them.
    fn pack(self) -> Option<u32> {
        match self {
            Component::Number => Some(0),
            Component::Count => Some(1),
            Component::Sum => Some(2),
            Component::Entry(i) => i.checked_add(3),
        }
    }

    fn unpack(packed: u32) -> Component {
        match packed {
            0 => Component::Number,
            1 => Component::Count,
            2 => Component::Sum,
            entry => Component::Entry(entry - 3),
        }
    }
}

/// What a page read through its shape holds: the value and exemplar of each line.
#[derive(Debug)]
pub struct Values {
    values: Vec<f64>,
    /// One per line once a line has an exemplar; most pages have none.
    exemplars: Vec<Option<Exemplar>>,
}

/// A page read through its shape: its values, and the learned shape to fill them into, a chunk
/// at a time as the converter asks ([`Chunks`]), so that the page's batch is never whole in
/// memory (start times not set: the converter sets them).
#[derive(Debug)]
pub struct Replayed<'s> {
    replay: &'s Replay,
    values: Values,
    /// Where the next chunk starts, in the template and in its placements.
    cursor: Cursor,
    placed: usize,
}

impl Chunks for Replayed<'_> {
    fn next_chunk(&mut self, converter: &Converter, max_samples: usize) -> Option<Vec<Family>> {
        let shape = self.replay.shape.as_ref()?;
        let first_point = self.cursor.point();
        let mut families = shape
            .template
            .chunk(converter, &mut self.cursor, max_samples)?;
        let end = self.cursor.point();
        let rest = shape.placements.get(self.placed..)?;
        let count = rest.partition_point(|p| (p.point as usize) < end);
        let Values { values, exemplars } = &mut self.values;
        shape.fill(
            &mut families,
            first_point,
            &rest[..count],
            values,
            exemplars,
        )?;
        self.placed += count;
        Some(families)
    }
}

/// A page whose shape was just learned: its families, filled with its values.
#[derive(Debug)]
pub struct Learned {
    /// The families, in page order, as converting the parsed page would give them.
    pub families: Vec<Family>,
    sample_count: usize,
    without_bound: usize,
}

/// The app's page, read.
#[derive(Debug)]
pub enum Read<'t> {
    /// The page had the learned shape: only its values were read.
    Replayed(Replayed<'t>),
    /// The page was parsed and its shape learned: its families came through the new shape.
    Learned(Learned),
    /// The page was parsed; its shape was not learned (learning pauses, or the page has
    /// something replay does not read).
    Parsed(Exposition<'t>),
}

impl<'t> Read<'t> {
    /// Samples in the page, as [`Exposition::sample_count`] counts them.
    pub fn sample_count(&self) -> usize {
        match self {
            Read::Replayed(replayed) => {
                replayed.replay.shape.as_ref().map_or(0, |s| s.sample_count)
            }
            Read::Learned(learned) => learned.sample_count,
            Read::Parsed(page) => page.sample_count(),
        }
    }

    /// Histogram and summary samples of the page whose `le` / `quantile` is missing or no
    /// number: the converter puts them in no point (see [`samples_without_bound`]).
    pub fn samples_without_bound(&self) -> usize {
        match self {
            Read::Replayed(replayed) => replayed.replay.samples_without_bound(),
            Read::Learned(learned) => learned.without_bound,
            Read::Parsed(page) => samples_without_bound(page),
        }
    }

    /// The page as the converter takes it: it moves out of `self` (a parsed page is freed as it
    /// is converted, a replayed page filled as it is converted).
    pub fn source(&mut self) -> Source<'_> {
        match self {
            Read::Replayed(replayed) => Source::Chunked(Box::new(replayed)),
            Read::Learned(learned) => Source::Converted(std::mem::take(&mut learned.families)),
            Read::Parsed(page) => Source::Parsed(std::mem::take(page)),
        }
    }

    /// [`source`](Self::source), the read given up to it: what a replayed page holds (its
    /// values and exemplars) is freed as soon as the page is converted, before the scrape's
    /// last chunk is encoded.
    pub fn into_source(self) -> Source<'t> {
        match self {
            Read::Replayed(replayed) => Source::Chunked(Box::new(replayed)),
            Read::Learned(learned) => Source::Converted(learned.families),
            Read::Parsed(page) => Source::Parsed(page),
        }
    }
}

/// Why [`Replay::read_checked`] has no page to give.
#[derive(Debug)]
pub enum ReadError<E> {
    /// The page does not parse.
    Parse(ParseError),
    /// The parsed page failed the caller's check.
    Check(E),
}

/// Histogram and summary samples of `page` whose `le` / `quantile` is missing or no number: the
/// converter can put them in no point, so they are not exported.
pub fn samples_without_bound(page: &Exposition<'_>) -> usize {
    page.families
        .iter()
        .map(|family| family.samples_without_bound().count())
        .sum()
}

impl Replay {
    /// No shape learned yet.
    pub fn new() -> Self {
        Replay::default()
    }

    /// Reads the app's page: through the learned shape if it still has it, else parsed (and its
    /// shape learned, when it is time to). `converter` converts the page into the template of a
    /// new shape; it remembers nothing from that.
    pub fn read<'t>(
        &'t mut self,
        text: &'t str,
        format: Format,
        limits: &Limits,
        converter: &mut Converter,
    ) -> Result<Read<'t>, ParseError> {
        let unchecked = |_: &Exposition<'t>| Ok::<(), std::convert::Infallible>(());
        self.read_checked(text, format, limits, converter, unchecked)
            .map_err(|err| match err {
                ReadError::Parse(err) => err,
                ReadError::Check(never) => match never {},
            })
    }

    /// [`read`](Self::read), with `check` run on a parsed page before anything is learned or
    /// converted from it (a page replayed has the shape of one that passed it).
    pub fn read_checked<'t, E>(
        &'t mut self,
        text: &'t str,
        format: Format,
        limits: &Limits,
        converter: &mut Converter,
        check: impl FnOnce(&Exposition<'t>) -> Result<(), E>,
    ) -> Result<Read<'t>, ReadError<E>> {
        if let Some(values) = self.replay(text, format, limits, converter) {
            return Ok(Read::Replayed(self.replayed(values)));
        }
        let page = parse_with_limits(text, format, limits).map_err(ReadError::Parse)?;
        check(&page).map_err(ReadError::Check)?;
        match self.learn(text, (format, limits), page, converter) {
            Some(read) => Ok(read),
            // The template went wrong after it took the page: parsed again, as it was.
            None => parse_with_limits(text, format, limits)
                .map(Read::Parsed)
                .map_err(ReadError::Parse),
        }
    }

    /// [`samples_without_bound`] of the learned page (what a replayed or learned read leaves
    /// out); 0 without a shape.
    pub fn samples_without_bound(&self) -> usize {
        self.shape.as_ref().map_or(0, |shape| shape.without_bound)
    }

    /// The page's values if it has the learned shape, else `None` (and the shape is dropped
    /// when the page no longer matches it); [`replayed`](Self::replayed) makes them the page.
    pub fn replay(
        &mut self,
        text: &str,
        format: Format,
        limits: &Limits,
        converter: &Converter,
    ) -> Option<Values> {
        let shape = self.shape.as_mut()?;
        let replayed = shape.replay(text, format, limits, converter);
        if replayed.is_some() {
            self.used = true;
            self.next_pause = 0;
        } else {
            // A shape that did not last a single scrape: the page changes all the time, and
            // learning it costs a conversion into a template; wait longer before the next try.
            if !self.used {
                self.next_pause = (self.next_pause * 2).clamp(1, MAX_BACKOFF);
            }
            self.pause = self.next_pause;
            self.shape = None;
        }
        replayed
    }

    /// The page [`replay`](Self::replay) read `values` of, to be filled a chunk at a time.
    pub fn replayed(&self, values: Values) -> Replayed<'_> {
        Replayed {
            replay: self,
            values,
            cursor: Cursor::default(),
            placed: 0,
        }
    }

    /// Learns the shape of `text`, which parsed into `page`, unless learning pauses: the page's
    /// families through the new shape, or the page back as it was; `None` if the page was used
    /// up by a failed attempt.
    fn learn<'t>(
        &mut self,
        text: &str,
        (format, limits): (Format, &Limits),
        page: Exposition<'t>,
        converter: &mut Converter,
    ) -> Option<Read<'t>> {
        if self.pause > 0 {
            self.pause -= 1;
            return Some(Read::Parsed(page));
        }
        self.used = false;
        let learned = PageShape::learn(text, (format, limits), page, converter);
        if learned.is_err() {
            self.next_pause = (self.next_pause * 2).clamp(1, MAX_BACKOFF);
            self.pause = self.next_pause;
        }
        match learned {
            Ok((shape, learned)) => {
                self.shape = Some(shape);
                Some(Read::Learned(learned))
            }
            Err(Unlearned::Page(page)) => Some(Read::Parsed(page)),
            Err(Unlearned::Consumed) => None,
        }
    }
}

/// Why a page's shape was not learned.
enum Unlearned<'t> {
    /// Replay cannot read the page (or not exactly as the parser did): here it is as parsed.
    Page(Exposition<'t>),
    /// The template did not come out as the tagging planned, and the page went into it.
    Consumed,
}

/// Where each kept sample of a page sits: its line, where its value starts there, and the value
/// as replay reads it.
struct Tagging {
    /// On each line of a kept sample: the value replay reads there, and where it starts.
    line_values: Vec<Option<(f64, usize)>>,
    /// The samples' own values, in page order, to put back when learning fails.
    originals: Vec<f64>,
}

impl Tagging {
    /// Replaces each kept sample's value by its line number. `None` (and the page as it was) if a
    /// sample's value or exemplar cannot be read back from its line exactly as the parser read
    /// it.
    fn tag(
        text: &str,
        lines: &[&str],
        (format, limits): (Format, &Limits),
        page: &mut Exposition<'_>,
    ) -> Option<Tagging> {
        let mut line_starts = Vec::with_capacity(lines.len());
        let mut start = 0;
        for line in lines {
            line_starts.push(start);
            start += line.len() + 1;
        }
        let mut tagging = Tagging {
            line_values: vec![None; lines.len()],
            originals: Vec::with_capacity(page.sample_count()),
        };
        let base = text.as_ptr() as usize;
        let samples = page.families.iter_mut().flat_map(|f| &mut f.samples);
        for sample in samples {
            // Found from where its name sits in the page: names borrow from it.
            let line = (sample.name.as_ptr() as usize)
                .checked_sub(base)
                .filter(|offset| *offset < text.len()) // else an unescaped copy of a quoted name
                .map(|offset| line_starts.partition_point(|&start| start <= offset) - 1);
            let read = line.and_then(|line| {
                let text = lines.get(line)?;
                let exemplar = sample.exemplar.as_deref();
                let start = value_start(text, format, limits)?;
                let (value, read_exemplar) = read_tail(text.get(start..)?, format, limits)?;
                let same = value.to_bits() == normalize_nan(sample.value).to_bits()
                    && same_exemplar(read_exemplar.as_ref(), exemplar);
                same.then_some((line, value, start))
            });
            let Some((line, value, start)) = read else {
                tagging.restore(page);
                return None;
            };
            tagging.line_values[line] = Some((value, start));
            tagging.originals.push(sample.value);
            sample.value = line as f64;
        }
        Some(tagging)
    }

    /// The shape of each of the page's `lines`, and their hash (see [`PageShape::hash`]). Only
    /// the lines of kept samples are read by value later: every other line — comments, dropped
    /// duplicates, folded `_created` lines, whose last token the parser may still read — must
    /// come back byte for byte. `None` for a line of 2 GiB or more.
    fn line_shapes(
        &self,
        lines: &[&str],
        mut hash: PageHash,
    ) -> Option<(Vec<LineShape>, (u64, u64))> {
        let mut shapes = Vec::with_capacity(lines.len());
        for (line, value) in lines.iter().zip(&self.line_values) {
            let (compared, sample) = match value.and_then(|(_, start)| line.get(..start)) {
                Some(prefix) => (prefix, true),
                None => (*line, false),
            };
            hash.line(compared);
            shapes.push(LineShape::new(compared.len(), sample)?);
        }
        Some((shapes, hash.finish()))
    }

    /// Puts the samples' values back.
    fn restore(&self, page: &mut Exposition<'_>) {
        let samples = page.families.iter_mut().flat_map(|f| &mut f.samples);
        for (sample, original) in samples.zip(&self.originals) {
            sample.value = *original;
        }
    }
}

impl PageShape {
    fn page_hash(&self) -> PageHash {
        PageHash(self.hashers.0.build_hasher(), self.hashers.1.build_hasher())
    }

    /// The shape of `text`, which parsed into `page`, and the page's families through it; the
    /// page back as it was if it cannot be learned.
    fn learn<'t>(
        text: &str,
        (format, limits): (Format, &Limits),
        mut page: Exposition<'t>,
        converter: &mut Converter,
    ) -> Result<(PageShape, Learned), Unlearned<'t>> {
        // Only what depends on the series alone: no timestamps (their token follows the value),
        // no `_created` (a start time the converter reads).
        let plain = page
            .families
            .iter()
            .flat_map(|f| &f.samples)
            .all(|s| s.timestamp_ms.is_none() && s.created_ms.is_none());
        if !plain {
            return Err(Unlearned::Page(page));
        }
        let lines: Vec<&str> = text.split('\n').collect();
        let Some(tagging) = Tagging::tag(text, &lines, (format, limits), &mut page) else {
            return Err(Unlearned::Page(page));
        };
        let mut shape = PageShape {
            format,
            hashers: Default::default(),
            hash: (0, 0),
            lines: Vec::new(),
            placements: Vec::new(),
            template: Template::default(),
            sample_count: page.sample_count(),
            without_bound: samples_without_bound(&page),
            remembered_at: converter.forgotten(),
        };
        let Some((line_shapes, hash)) = tagging.line_shapes(&lines, shape.page_hash()) else {
            tagging.restore(&mut page);
            return Err(Unlearned::Page(page));
        };
        (shape.lines, shape.hash) = (line_shapes, hash);
        drop(lines);
        let values: Vec<f64> = tagging
            .line_values
            .iter()
            .map(|value| value.map_or(f64::NAN, |(value, _)| value))
            .collect();
        drop(tagging);
        // The page goes into the template as it is converted: page and template are never held
        // whole together. The template becomes this scrape's families, its line numbers
        // replaced by the values in place.
        let mut families = converter.template(page);
        // The template has the page's exemplars already (the same, see `Tagging::tag`).
        let placed = placements(&families, shape.lines.len()).and_then(|placements| {
            shape.fill(&mut families, 0, &placements, &values, &mut [])?;
            Some(placements)
        });
        // `None`: the tagging did not go as planned (a bug, not a page).
        shape.placements = placed.ok_or(Unlearned::Consumed)?;
        // Made now that the page is gone, so that what is kept lands in the space it freed
        // rather than above it, where it would keep the allocator from returning memory. Filling
        // changed only numbers; the template keeps names, bounds and series.
        shape.template = Template::of(&families, converter).ok_or(Unlearned::Consumed)?;
        shape.remembered_at = converter.forgotten();
        let learned = Learned {
            families,
            sample_count: shape.sample_count,
            without_bound: shape.without_bound,
        };
        Ok((shape, learned))
    }

    /// The values of `text` if it has this shape, and every series of the template is still
    /// remembered (the page is then filled from it chunk by chunk, which must not fail half way).
    fn replay(
        &mut self,
        text: &str,
        format: Format,
        limits: &Limits,
        converter: &Converter,
    ) -> Option<Values> {
        if format != self.format || text.len() > limits.max_body_bytes {
            return None;
        }
        let mut values = vec![f64::NAN; self.lines.len()];
        // One per line once a line has an exemplar; most pages have none.
        let mut exemplars: Vec<Option<Exemplar>> = Vec::new();
        let mut lines = text.split('\n');
        let mut hash = self.page_hash();
        for (at, expected) in self.lines.iter().enumerate() {
            let line = lines.next()?;
            if line.len() > limits.max_line_bytes {
                return None;
            }
            let compared = if expected.sample() {
                line.get(..expected.compared_len())?
            } else {
                line
            };
            if compared.len() != expected.compared_len() {
                return None;
            }
            hash.line(compared);
            if expected.sample() {
                let (value, exemplar) = read_tail(line.get(compared.len()..)?, format, limits)?;
                *values.get_mut(at)? = value;
                if let Some(exemplar) = exemplar {
                    if exemplars.is_empty() {
                        exemplars.resize_with(self.lines.len(), || None);
                    }
                    *exemplars.get_mut(at)? = Some(exemplar);
                }
            }
        }
        if lines.next().is_some() || hash.finish() != self.hash {
            return None;
        }
        if converter.forgotten() != self.remembered_at {
            if !self.template.all_remembered(converter) {
                return None;
            }
            self.remembered_at = converter.forgotten();
        }
        Some(Values { values, exemplars })
    }

    /// Writes each of `placements`' line value into `families`, and the line's exemplar (taken
    /// from `exemplars`, which may be empty) where the converter puts one: on a number or a
    /// histogram bucket. `families` are the template's from its point `first_point` on.
    fn fill(
        &self,
        families: &mut [Family],
        first_point: usize,
        placements: &[Placement],
        values: &[f64],
        exemplars: &mut [Option<Exemplar>],
    ) -> Option<()> {
        // The family of the next placement, and the template's number of its first point.
        let (mut family, mut family_start) = (0, first_point);
        for placement in placements {
            let line = placement.line as usize;
            let value = normalize_nan(*values.get(line)?);
            let exemplar = || exemplars.get_mut(line).and_then(Option::take);
            let mut point = (placement.point as usize).checked_sub(family_start)?;
            while point >= families.get(family)?.points.len() {
                let len = families.get(family)?.points.len();
                (family, family_start, point) = (family + 1, family_start + len, point - len);
            }
            let point = families.get_mut(family)?.points.get_mut(point)?;
            place(
                point,
                Component::unpack(placement.component),
                value,
                exemplar,
            )?;
        }
        Some(())
    }
}

/// Writes one line's `value` into `point` as `component`, and its exemplar where the converter
/// puts one.
fn place(
    point: &mut Point,
    component: Component,
    value: f64,
    mut exemplar: impl FnMut() -> Option<Exemplar>,
) -> Option<()> {
    match (&mut point.value, component) {
        (
            Value::Number {
                value: v,
                exemplar: e,
                ..
            },
            Component::Number,
        ) => {
            *v = value;
            if let Some(exemplar) = exemplar() {
                *e = Some(Box::new(exemplar));
            }
        }
        (Value::Histogram(h), Component::Count) => h.count = value,
        (Value::Summary(s), Component::Count) => s.count = value,
        (Value::Histogram(h), Component::Sum) => *h.sum.as_mut()? = value,
        (Value::Summary(s), Component::Sum) => *s.sum.as_mut()? = value,
        (Value::Histogram(h), Component::Entry(i)) => {
            h.buckets.get_mut(i as usize)?.1 = value;
            if let Some(exemplar) = exemplar() {
                h.exemplars.push(i as usize, exemplar);
            }
        }
        (Value::Summary(s), Component::Entry(i)) => {
            s.quantiles.get_mut(i as usize)?.1 = value;
        }
        _ => return None,
    }
    Some(())
}

/// Where each tagged value of `families` came from. `None` if a value is not a line number of
/// the page (the tagging did not go as planned).
fn placements(families: &[Family], line_count: usize) -> Option<Vec<Placement>> {
    let mut placements = Vec::new();
    let points = families.iter().flat_map(|family| &family.points);
    for (p, point) in points.enumerate() {
        let mut add = |tag: f64, component: Component| -> Option<()> {
            if !(tag >= 0.0 && tag.fract() == 0.0 && tag < line_count as f64) {
                return None;
            }
            placements.push(Placement {
                line: tag as u32,
                point: u32::try_from(p).ok()?,
                component: component.pack()?,
            });
            Some(())
        };
        let (count, sum, entries) = match &point.value {
            Value::Number { value, .. } => {
                add(*value, Component::Number)?;
                continue;
            }
            Value::Histogram(h) => (h.count, h.sum, &h.buckets),
            Value::Summary(s) => (s.count, s.sum, &s.quantiles),
        };
        add(count, Component::Count)?;
        if let Some(sum) = sum {
            add(sum, Component::Sum)?;
        }
        for (i, (_, tag)) in entries.iter().enumerate() {
            add(*tag, Component::Entry(u32::try_from(i).ok()?))?;
        }
    }
    placements.shrink_to_fit();
    Some(placements)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Batch;
    use wxcloudrun_exposition::parse;

    /// The batch as text, stale markers (in hash-map order) sorted; NaNs compare equal so.
    fn canonical(mut batch: Batch) -> String {
        for family in &mut batch.families {
            family.points.sort_by(|a, b| a.labels.cmp(&b.labels));
        }
        format!("{batch:?}")
    }

    /// A failed scrape between two equal pages makes the converter forget the page's series,
    /// whose labels the shape does not keep: the page is then read again, and its batch is the
    /// one parsing would give, start times included.
    #[test]
    fn a_page_after_a_failed_scrape_is_read_again_not_replayed_without_its_labels() {
        let text = "# TYPE c counter\nc_total{a=\"1\",instance=\"app\"} 1\nc_total{a=\"2\"} 2\n\
                    # TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n";
        let added = [("instance".to_owned(), "pod".to_owned())];
        let limits = Limits::default();
        let mut converter = Converter::new(&added, None);
        let mut reference = Converter::new(&added, None);
        let mut replay = Replay::new();
        let mut paths = Vec::new();
        for (round, fail) in [false, false, true, false, false].into_iter().enumerate() {
            let at = 1_000 * (i64::try_from(round).unwrap() + 1);
            if fail {
                let stale = canonical(converter.convert([], at));
                assert_eq!(stale, canonical(reference.convert([], at)));
                continue;
            }
            let mut read = replay
                .read(text, Format::PrometheusText, &limits, &mut converter)
                .unwrap();
            paths.push(match read {
                Read::Replayed(_) => "replayed",
                Read::Learned(_) => "learned",
                Read::Parsed(_) => "parsed",
            });
            let batch = converter.convert([read.source()], at);
            let page = parse(text, Format::PrometheusText).unwrap();
            let expected = reference.convert([Source::Page(&page)], at);
            assert_eq!(canonical(batch), canonical(expected), "round {round}");
        }
        assert_eq!(paths, ["learned", "replayed", "learned", "replayed"]);
    }

    /// A bucket whose `le` (a quantile whose `quantile`) is no number is left out of the batch and
    /// counted on every read, learned or replayed (the pipeline adds the count to
    /// `scrape_samples_dropped_total{reason="unparsable_bound"}`).
    #[test]
    fn samples_without_a_bound_are_counted_on_every_path() {
        let text = "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"soon\"} 1\n\
                    h_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n\
                    # TYPE s summary\ns{quantile=\"p99\"} 0.2\ns_sum 1\ns_count 4\n";
        let limits = Limits::default();
        let mut converter = Converter::new(&[], None);
        let mut replay = Replay::new();
        let mut paths = Vec::new();
        for round in 0..3 {
            let mut read = replay
                .read(text, Format::PrometheusText, &limits, &mut converter)
                .unwrap();
            let path = match &read {
                Read::Parsed(_) => "parsed",
                Read::Learned(_) => "learned",
                Read::Replayed(_) => "replayed",
            };
            let without_bound = read.samples_without_bound();
            paths.push(path);
            assert_eq!(without_bound, 2, "round {round} ({path})");
            let batch = converter.convert([read.source()], 1_000 * (round + 1));
            let text = format!("{batch:?}");
            assert!(!text.contains("soon") && !text.contains("p99"), "{text}");
        }
        assert_eq!(paths, ["learned", "replayed", "replayed"]);
    }
}
