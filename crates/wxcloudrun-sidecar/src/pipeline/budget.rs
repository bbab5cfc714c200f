//! Keeping a scrape inside the memory budget, and Prometheus's per-scrape limits.
//!
//! The budget bounds the sidecar's heap plus a fixed allowance for what is not heap (code,
//! stacks, the allocator's slack). A scrape is checked twice before it can cost much:
//!
//! 1. **Before the fetch**: the body may take at most half of what the heap has left (a gzip
//!    body and its inflated text live together), and no more than `body_size_limit`; reading
//!    stops there ([`BodyBound`]).
//! 2. **Before the read**: what reading the page will cost is estimated from one pass over its
//!    bytes (lines and `=` signs, each a sample or a label at most) and must fit in what is
//!    left: replaying it through the learned shape ([`REPLAY_COST_PER_LINE_BYTES`]) when there
//!    is one, parsing, converting and encoding it ([`COST_PER_LINE_BYTES`]) when it does not
//!    replay. A replay costs far less: its series are remembered already (the heap holds them)
//!    and nothing is parsed; charged a parse, a page admitted once would be refused on every
//!    later scrape at a budget it fits.
//!
//! What the heap holds at the start is read from the counting allocator the binary installs
//! (the series the converter remembers, the learned shape, the queued requests); without it
//! (tests, a library user), from the queues' bytes alone. A scrape that does not fit fails with
//! `too_large`: its series go stale like any failed scrape's, and the next scrape is tried
//! afresh.

use wxcloudrun_exposition::{ErrorKind, Exposition, Format, Limits, ParseError};

use crate::config::memory::ScrapeLimits;
use crate::pipeline::convert::Converter;
use crate::pipeline::replay::{Read, ReadError, Replay};

/// What the budget allows for memory that is not the heap (the binary's code, thread stacks,
/// the allocator's free lists), measured at ~9 MiB resident idle on the 10,000-series page.
pub const NON_HEAP_RESERVE_BYTES: u64 = 12 << 20;
/// Estimated heap one line costs through a parsed scrape at its fullest (the parsed sample, its
/// converted point, the converter's memory of a new series, the learned shape, its share of the
/// encoded requests), beyond its labels and text. `tests/budget_estimates.rs` holds every
/// estimate above what its page takes; the worst pages per line are those where every line is a
/// family of its own (learned: 0.68 of the estimate, 0.71 with an exemplar a line). Ordinary
/// pages take 0.36–0.45 of it, which errs on the side of the container. (750 until the parsed
/// page and the batch shrank, 2026-12-03.)
pub const COST_PER_LINE_BYTES: u64 = 720;
/// Estimated heap one label costs through the same scrape (parsed, converted, remembered). A
/// label whose value is new to the converter costs the most (the value is copied, interned and
/// remembered): a page of 40 such labels a line takes 0.81 of its estimate. (120 until
/// 2026-12-03, when that page took 0.93 of it.)
pub const COST_PER_LABEL_BYTES: u64 = 150;
/// Estimated heap one line costs through a replayed scrape at its fullest (its value, its
/// converted point, its share of the encoded requests), beyond its labels and text. The worst
/// page per line (`tests/budget_estimates.rs`) is again one family a line: ~300 bytes, 0.7 of
/// the estimate.
pub const REPLAY_COST_PER_LINE_BYTES: u64 = 340;
/// Estimated heap one label costs through a replayed scrape (its shared copy in the point, its
/// share of the encoded requests, and an exemplar's labels, which replay reads afresh: a page of
/// one counter and one exemplar a line takes ~0.8 of the estimate).
pub const REPLAY_COST_PER_LABEL_BYTES: u64 = 150;
/// What malloc uses beyond the bytes asked for, as a fraction of an estimate (the estimates are
/// of bytes asked for, the heap counted is what malloc uses): an eighth. The `pipeline_memory`
/// bench measured 4.5–7 % at the parsed peak of the issue-16 pages.
pub const MALLOC_MARGIN_DIVISOR: u64 = 8;
/// Each byte of text costs about this many more bytes again (copied keys and label values of
/// new series, the uncompressed request before snappy).
pub const COST_PER_TEXT_BYTE: u64 = 2;

/// What reading a page is estimated to cost in heap, beyond its text, before any of it is read:
/// from its size, its lines and its `=` signs (each a sample or a label at most).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadCost {
    /// Through a learned shape: the values read, the families filled, encoded.
    pub replay_bytes: u64,
    /// Parsed, its shape learned, converted (the converter remembering each new series), and
    /// encoded.
    pub parse_bytes: u64,
}

impl ReadCost {
    /// The estimates for `text`, as the budget makes them.
    pub fn of(text: &str) -> ReadCost {
        let estimate = Estimate::of(text);
        ReadCost {
            replay_bytes: estimate.cost(Path::Replay),
            parse_bytes: estimate.cost(Path::Parse),
        }
    }
}

/// Why a scrape was refused: the `reason` label of
/// `wxcloudrun_sidecar_scrapes_exceeded_limit_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitReason {
    /// The memory budget (or the parser's fixed bounds, which exist for memory too).
    TooLarge,
    /// Prometheus's `sample_limit`.
    SampleLimit,
    /// Prometheus's `label_limit`.
    LabelLimit,
    /// Prometheus's `label_name_length_limit`.
    LabelNameLengthLimit,
    /// Prometheus's `label_value_length_limit`.
    LabelValueLengthLimit,
    /// Prometheus's `body_size_limit`.
    BodySizeLimit,
}

impl LimitReason {
    /// Every reason, in the order the self-metric creates them.
    pub const ALL: [LimitReason; 6] = [
        LimitReason::TooLarge,
        LimitReason::SampleLimit,
        LimitReason::LabelLimit,
        LimitReason::LabelNameLengthLimit,
        LimitReason::LabelValueLengthLimit,
        LimitReason::BodySizeLimit,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            LimitReason::TooLarge => "too_large",
            LimitReason::SampleLimit => "sample_limit",
            LimitReason::LabelLimit => "label_limit",
            LimitReason::LabelNameLengthLimit => "label_name_length_limit",
            LimitReason::LabelValueLengthLimit => "label_value_length_limit",
            LimitReason::BodySizeLimit => "body_size_limit",
        }
    }
}

/// A scrape refused by the budget or a limit: which, and a message like Prometheus's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Exceeded {
    /// Which limit.
    pub reason: LimitReason,
    /// What was exceeded, by how much.
    pub message: String,
}

impl Exceeded {
    fn new(reason: LimitReason, message: String) -> Exceeded {
        Exceeded { reason, message }
    }
}

/// How much of the body a fetch may read, and which limit says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyBound {
    /// The most bytes, compressed or inflated.
    pub bytes: usize,
    /// The limit that set it.
    pub reason: LimitReason,
}

impl BodyBound {
    /// The error of a body over the bound.
    pub fn exceeded(self) -> Exceeded {
        let message = match self.reason {
            LimitReason::BodySizeLimit => {
                format!("body_size_limit exceeded (limit: {} bytes)", self.bytes)
            }
            _ => format!(
                "too_large: the body passed the {} bytes the memory budget leaves",
                self.bytes
            ),
        };
        Exceeded::new(self.reason, message)
    }
}

/// The budget and limits of every scrape.
#[derive(Clone, Debug)]
pub struct Budget {
    memory_limit_bytes: u64,
    limits: ScrapeLimits,
    /// The labels the converter adds (`instance`, `wx_service`, …): they count towards
    /// `label_limit` and the length limits, as target labels do in Prometheus.
    added: Vec<(String, String)>,
}

impl Budget {
    /// A budget of `memory_limit_bytes` with `limits`; `added`: the labels put on every series.
    pub fn new(memory_limit_bytes: u64, limits: ScrapeLimits, added: &[(String, String)]) -> Self {
        Budget {
            memory_limit_bytes,
            limits,
            added: added.to_vec(),
        }
    }

    /// No budget to speak of and no limits: what the pipeline had before there was one.
    pub fn unlimited() -> Self {
        Budget::new(u64::MAX, ScrapeLimits::default(), &[])
    }

    /// The budget in bytes.
    pub fn memory_limit_bytes(&self) -> u64 {
        self.memory_limit_bytes
    }

    /// What the heap may still grow by, given `queued_bytes` in the export queues.
    fn headroom(&self, queued_bytes: u64) -> u64 {
        let heap = crate::allocator::heap_bytes()
            .unwrap_or(0)
            .max(queued_bytes);
        self.memory_limit_bytes
            .saturating_sub(NON_HEAP_RESERVE_BYTES)
            .saturating_sub(heap)
    }

    /// The most a fetch may read now: half the headroom, the parser's bound and
    /// `body_size_limit`, whichever is least.
    pub fn body_bound(&self, queued_bytes: u64) -> BodyBound {
        let parser = Limits::default().max_body_bytes as u64;
        let budget = (self.headroom(queued_bytes) / 2).min(parser);
        let limit = self.limits.body_size_limit_bytes;
        let (bytes, reason) = if limit > 0 && limit <= budget {
            (limit, LimitReason::BodySizeLimit)
        } else {
            (budget, LimitReason::TooLarge)
        };
        BodyBound {
            bytes: usize::try_from(bytes).unwrap_or(usize::MAX),
            reason,
        }
    }

    /// Whether parsing `text` (already in the heap) fits in what is left: an estimate from its
    /// lines and `=` signs, made before any of it is parsed.
    pub fn admit(&self, text: &str, queued_bytes: u64) -> Result<(), Exceeded> {
        self.fits(&Estimate::of(text), Path::Parse, queued_bytes)
    }

    /// Whether reading a page of `estimate` along `path` fits in what is left.
    fn fits(&self, estimate: &Estimate, path: Path, queued_bytes: u64) -> Result<(), Exceeded> {
        let cost = estimate.cost(path);
        let headroom = self.headroom(queued_bytes);
        if cost > headroom {
            let Estimate {
                text,
                lines,
                labels,
            } = estimate;
            return Err(Exceeded::new(
                LimitReason::TooLarge,
                format!(
                    "too_large: reading the page ({text} bytes, {lines} lines, {labels} labels) \
                     would take ~{} MiB, {} MiB are left of the {} MiB memory limit",
                    cost >> 20,
                    headroom >> 20,
                    self.memory_limit_bytes >> 20
                ),
            ));
        }
        Ok(())
    }

    /// Reads `text` if the budget lets it: through `replay`'s learned shape if a replay fits and
    /// the page has the shape, else parsed if a parse fits, and checked against the label
    /// limits. `queued_bytes`: what the export queues hold.
    pub fn read<'t>(
        &self,
        replay: &'t mut Replay,
        converter: &mut Converter,
        (text, format): (&'t str, Format),
        queued_bytes: u64,
    ) -> Result<Read<'t>, ReadError<Exceeded>> {
        let estimate = Estimate::of(text);
        let limits = self.parse_limits();
        if self.fits(&estimate, Path::Replay, queued_bytes).is_ok()
            && let Some(values) = replay.replay(text, format, &limits, converter)
        {
            return Ok(Read::Replayed(replay.replayed(values)));
        }
        self.fits(&estimate, Path::Parse, queued_bytes)
            .map_err(ReadError::Check)?;
        replay.read_checked(text, format, &limits, converter, |page| {
            self.check_page(page)
        })
    }

    /// The parser's bounds for this budget: `sample_limit` as its sample bound when it is
    /// tighter than the parser's own.
    pub fn parse_limits(&self) -> Limits {
        let mut limits = Limits::default();
        let sample_limit = usize::try_from(self.limits.sample_limit).unwrap_or(usize::MAX);
        if sample_limit > 0 && sample_limit < limits.max_samples {
            limits.max_samples = sample_limit;
        }
        limits
    }

    /// The reason of a parse that failed on one of [`parse_limits`](Self::parse_limits)'
    /// bounds; `None` for any other parse error (the page is unparsable).
    pub fn parse_failure(&self, err: &ParseError) -> Option<Exceeded> {
        let reason = match err.kind {
            ErrorKind::TooManySamples { limit }
                if self.limits.sample_limit > 0 && limit as u64 == self.limits.sample_limit =>
            {
                return Some(Exceeded::new(
                    LimitReason::SampleLimit,
                    format!(
                        "sample_limit exceeded (limit: {limit}) at line {}",
                        err.line
                    ),
                ));
            }
            ErrorKind::TooManySamples { .. }
            | ErrorKind::TooManyFamilies { .. }
            | ErrorKind::TooManyLabels { .. }
            | ErrorKind::LineTooLong { .. }
            | ErrorKind::BodyTooLarge { .. } => LimitReason::TooLarge,
            _ => return None,
        };
        Some(Exceeded::new(reason, format!("too_large: {err}")))
    }

    /// Prometheus's label limits over a parsed page, each series counted with `__name__` and
    /// the labels the sidecar adds (an added label the page already has with the same value is
    /// one label, as the converter writes it).
    pub fn check_page(&self, page: &Exposition<'_>) -> Result<(), Exceeded> {
        let limits = &self.limits;
        if limits.label_limit == 0
            && limits.label_name_length_limit == 0
            && limits.label_value_length_limit == 0
        {
            return Ok(());
        }
        for (name, value) in &self.added {
            self.check_label(name, name, value)?;
        }
        for sample in page.families.iter().flat_map(|f| &f.samples) {
            self.check_label(&sample.name, "__name__", &sample.name)?;
            let mut count = 1 + self.added.len() as u64;
            for label in sample.labels.iter().filter(|l| !l.value.is_empty()) {
                let same_as_added = self
                    .added
                    .iter()
                    .any(|(name, value)| *name == label.name && *value == label.value);
                count += u64::from(!same_as_added);
                self.check_label(&sample.name, &label.name, &label.value)?;
            }
            if limits.label_limit > 0 && count > limits.label_limit {
                return Err(Exceeded::new(
                    LimitReason::LabelLimit,
                    format!(
                        "label_limit exceeded (metric: {}, number of labels: {count}, limit: {})",
                        cut(&sample.name),
                        limits.label_limit
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_label(&self, metric: &str, name: &str, value: &str) -> Result<(), Exceeded> {
        let limits = &self.limits;
        if limits.label_name_length_limit > 0 && name.len() as u64 > limits.label_name_length_limit
        {
            return Err(Exceeded::new(
                LimitReason::LabelNameLengthLimit,
                format!(
                    "label_name_length_limit exceeded (metric: {}, label name: {}, length: {}, limit: {})",
                    cut(metric),
                    cut(name),
                    name.len(),
                    limits.label_name_length_limit
                ),
            ));
        }
        if limits.label_value_length_limit > 0
            && value.len() as u64 > limits.label_value_length_limit
        {
            return Err(Exceeded::new(
                LimitReason::LabelValueLengthLimit,
                format!(
                    "label_value_length_limit exceeded (metric: {}, label name: {}, value: {}, length: {}, limit: {})",
                    cut(metric),
                    cut(name),
                    cut(value),
                    value.len(),
                    limits.label_value_length_limit
                ),
            ));
        }
        Ok(())
    }
}

/// The first 50 characters, as Prometheus quotes names in its limit errors.
fn cut(text: &str) -> &str {
    text.char_indices()
        .nth(50)
        .map_or(text, |(at, _)| &text[..at])
}

/// How a page is read.
#[derive(Clone, Copy)]
enum Path {
    /// Through the learned shape.
    Replay,
    /// Parsed, converted, learned.
    Parse,
}

/// What a page's size says of its cost, from one pass over its bytes.
struct Estimate {
    text: u64,
    /// Lines: each at most one sample.
    lines: u64,
    /// `=` signs: each at most one label.
    labels: u64,
}

impl Estimate {
    fn of(text: &str) -> Estimate {
        let mut lines = 1;
        let mut labels = 0;
        for &byte in text.as_bytes() {
            lines += u64::from(byte == b'\n');
            labels += u64::from(byte == b'=');
        }
        Estimate {
            text: text.len() as u64,
            lines,
            labels,
        }
    }

    /// The heap reading the page along `path` is estimated to take.
    fn cost(&self, path: Path) -> u64 {
        let (per_line, per_label) = match path {
            Path::Replay => (REPLAY_COST_PER_LINE_BYTES, REPLAY_COST_PER_LABEL_BYTES),
            Path::Parse => (COST_PER_LINE_BYTES, COST_PER_LABEL_BYTES),
        };
        let asked = self
            .text
            .saturating_mul(COST_PER_TEXT_BYTE)
            .saturating_add(self.lines.saturating_mul(per_line))
            .saturating_add(self.labels.saturating_mul(per_label));
        asked.saturating_add(asked / MALLOC_MARGIN_DIVISOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wxcloudrun_exposition::{Format, parse_with_limits};

    fn limits(f: impl FnOnce(&mut ScrapeLimits)) -> Budget {
        let mut limits = ScrapeLimits::default();
        f(&mut limits);
        let added = [("instance".to_owned(), "host-1".to_owned())];
        Budget::new(256 << 20, limits, &added)
    }

    fn check(budget: &Budget, page: &str) -> Result<(), Exceeded> {
        let limits = budget.parse_limits();
        match parse_with_limits(page, Format::PrometheusText, &limits) {
            Ok(parsed) => budget.check_page(&parsed),
            Err(err) => Err(budget
                .parse_failure(&err)
                .expect("a limit, not a syntax error")),
        }
    }

    #[test]
    fn each_prometheus_limit_fails_the_page_by_its_name() {
        let page = "a{b=\"12345\",c=\"x\"} 1\nlonger_name 2\n";
        let cases: [(Budget, LimitReason); 4] = [
            (limits(|l| l.sample_limit = 1), LimitReason::SampleLimit),
            // b, c, __name__ and instance: four labels.
            (limits(|l| l.label_limit = 3), LimitReason::LabelLimit),
            (
                limits(|l| l.label_name_length_limit = 7),
                LimitReason::LabelNameLengthLimit,
            ),
            // The metric name is `__name__`'s value: 11 bytes.
            (
                limits(|l| l.label_value_length_limit = 10),
                LimitReason::LabelValueLengthLimit,
            ),
        ];
        for (budget, reason) in cases {
            let err = check(&budget, page).unwrap_err();
            assert_eq!(err.reason, reason, "{err}");
            assert!(err.message.starts_with(reason.label()), "{err}");
        }
        // At the limits exactly, the page passes.
        let at = [
            limits(|l| l.sample_limit = 2),
            limits(|l| l.label_limit = 4),
            limits(|l| l.label_name_length_limit = 8),
            limits(|l| l.label_value_length_limit = 11),
        ];
        for budget in at {
            check(&budget, page).unwrap();
        }
    }

    #[test]
    fn an_added_label_the_page_repeats_counts_once() {
        let budget = limits(|l| l.label_limit = 2);
        check(&budget, "m{instance=\"host-1\"} 1\n").unwrap();
        let err = check(&budget, "m{instance=\"other\"} 1\n").unwrap_err();
        assert_eq!(err.reason, LimitReason::LabelLimit);
    }

    #[test]
    fn the_body_bound_is_the_tighter_of_the_budget_and_body_size_limit() {
        let budget = limits(|l| l.body_size_limit_bytes = 1000);
        assert_eq!(
            budget.body_bound(0),
            BodyBound {
                bytes: 1000,
                reason: LimitReason::BodySizeLimit
            }
        );
        let small = Budget::new(32 << 20, ScrapeLimits::default(), &[]);
        let bound = small.body_bound(4 << 20);
        assert_eq!(bound.reason, LimitReason::TooLarge);
        assert_eq!(
            bound.bytes as u64,
            ((32 << 20) - NON_HEAP_RESERVE_BYTES - (4 << 20)) / 2
        );
    }

    /// A page admitted once, whose series the converter now remembers (and the heap holds), is
    /// charged what replaying it costs, not a parse: at a tight budget it was otherwise refused
    /// on every scrape after the first.
    #[test]
    fn a_page_that_replays_is_charged_a_replay_not_a_parse() {
        use std::fmt::Write as _;
        let budget = Budget::new(64 << 20, ScrapeLimits::default(), &[]);
        let mut page = String::from("# TYPE m gauge\n");
        for i in 0..20_000 {
            writeln!(page, "m{{i=\"{i}\"}} 1").unwrap();
        }
        let mut converter = Converter::new(&[], None);
        let mut replay = Replay::new();
        let text = (page.as_str(), Format::PrometheusText);
        let mut read = budget.read(&mut replay, &mut converter, text, 0).unwrap();
        assert!(matches!(read, Read::Learned(_)));
        drop(converter.convert([read.source()], 1_000));
        // What the first scrape left in the heap, as the queues would hold it: enough that a
        // replay fits in what is left and a parse does not.
        let cost = ReadCost::of(&page);
        assert!(cost.replay_bytes < cost.parse_bytes, "{cost:?}");
        let between = (cost.replay_bytes + cost.parse_bytes) / 2;
        let held = (64 << 20) - NON_HEAP_RESERVE_BYTES - between;
        let read = budget.read(&mut replay, &mut converter, text, held);
        let refusal = read.as_ref().err().map(|err| format!("{err:?}"));
        assert!(matches!(read, Ok(Read::Replayed(_))), "{refusal:?}");
        // A page of another shape is parsed, and that does not fit.
        let changed = page.replace("m{i=\"7\"}", "m{i=\"new\"}");
        let text = (changed.as_str(), Format::PrometheusText);
        let refused = budget.read(&mut replay, &mut converter, text, held);
        assert!(
            matches!(&refused, Err(ReadError::Check(e)) if e.reason == LimitReason::TooLarge),
            "the changed page was read"
        );
    }

    #[test]
    fn a_page_whose_reading_would_not_fit_is_refused_before_parsing() {
        let budget = Budget::new(32 << 20, ScrapeLimits::default(), &[]);
        let page = "m{i=\"1\"} 1\n".repeat(100_000);
        let err = budget.admit(&page, 0).unwrap_err();
        assert_eq!(err.reason, LimitReason::TooLarge);
        budget.admit(&"m{i=\"1\"} 1\n".repeat(1000), 0).unwrap();
        // The queues count against the same budget.
        let err = budget.admit("m 1\n", 32 << 20).unwrap_err();
        assert_eq!(err.reason, LimitReason::TooLarge);
    }
}
