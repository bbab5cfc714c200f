//! The parsed page: families, samples, labels, exemplars, and the knobs that bound parsing.

use crate::Text;

/// The two exposition formats the parser understands.
///
/// The differences that matter to a consumer: OpenMetrics timestamps are seconds (converted to
/// milliseconds here), an OpenMetrics page must end with `# EOF`, OpenMetrics counters are declared
/// without the `_total` suffix their samples carry, and OpenMetrics `_created` samples become
/// [`Sample::created_ms`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// The Prometheus text format 0.0.4 (`text/plain; version=0.0.4`).
    PrometheusText,
    /// OpenMetrics 1.0 (`application/openmetrics-text; version=1.0.0`).
    OpenMetrics,
}

/// An `Accept` header that prefers OpenMetrics and falls back to the text format, as Prometheus
/// sends it. Pair it with `Accept-Encoding: gzip` and [`decode_body`](crate::decode_body).
pub const ACCEPT_HEADER: &str =
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

impl Format {
    /// The format announced by a response's `Content-Type`.
    ///
    /// `application/openmetrics-text` (any parameters, any case) is OpenMetrics; everything else,
    /// including a missing or malformed header, is the Prometheus text format — the format every
    /// client library can produce, and what Prometheus itself falls back to.
    ///
    /// ```
    /// use wxcloudrun_exposition::Format;
    /// assert_eq!(
    ///     Format::from_content_type("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    ///     Format::OpenMetrics
    /// );
    /// assert_eq!(Format::from_content_type("text/plain; version=0.0.4"), Format::PrometheusText);
    /// assert_eq!(Format::from_content_type(""), Format::PrometheusText);
    /// ```
    pub fn from_content_type(content_type: &str) -> Format {
        let media_type = content_type.split(';').next().unwrap_or("").trim();
        if media_type.eq_ignore_ascii_case("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::PrometheusText
        }
    }
}

/// A family's declared type (`# TYPE`). Families without a `# TYPE` line are [`MetricType::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    /// `counter`.
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram`: `_bucket{le}`, `_sum`, `_count` (and `_created` in OpenMetrics).
    Histogram,
    /// `summary`: the bare name with a `quantile` label, `_sum`, `_count`.
    Summary,
    /// `untyped` in the text format, `unknown` in OpenMetrics, or no `# TYPE` line at all.
    Unknown,
    /// OpenMetrics `info` (samples named `<family>_info`).
    Info,
    /// OpenMetrics `stateset`.
    StateSet,
    /// OpenMetrics `gaugehistogram`: `_bucket{le}`, `_gsum`, `_gcount`.
    GaugeHistogram,
}

impl MetricType {
    /// Parses a `# TYPE` token. Both formats' spellings are accepted in both formats.
    pub fn from_type_token(token: &str) -> Option<MetricType> {
        Some(match token {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "summary" => MetricType::Summary,
            "untyped" | "unknown" => MetricType::Unknown,
            "info" => MetricType::Info,
            "stateset" => MetricType::StateSet,
            "gaugehistogram" => MetricType::GaugeHistogram,
            _ => return None,
        })
    }

    /// The `# TYPE` token for this type in `format` (`untyped` vs `unknown` is the only difference).
    pub fn as_str(self, format: Format) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::Summary => "summary",
            MetricType::Unknown => match format {
                Format::PrometheusText => "untyped",
                Format::OpenMetrics => "unknown",
            },
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::GaugeHistogram => "gaugehistogram",
        }
    }

    /// Suffixes a sample name may add to the family name for this type.
    ///
    /// Lenient on purpose: a text-format counter is usually declared with its `_total` name, an
    /// OpenMetrics one without; both spellings are accepted in both formats. `_created` belongs to
    /// the family only in OpenMetrics (in the text format it is an ordinary gauge family).
    pub(crate) fn sample_suffixes(self, format: Format) -> &'static [&'static str] {
        let om = format == Format::OpenMetrics;
        match self {
            MetricType::Counter if om => &["", "_total", "_created"],
            MetricType::Counter => &["", "_total"],
            MetricType::Histogram if om => &["_bucket", "_sum", "_count", "_created"],
            MetricType::Histogram => &["_bucket", "_sum", "_count"],
            MetricType::Summary if om => &["", "_sum", "_count", "_created"],
            MetricType::Summary => &["", "_sum", "_count"],
            MetricType::GaugeHistogram => &["_bucket", "_gsum", "_gcount"],
            MetricType::Info => &["", "_info"],
            MetricType::Gauge | MetricType::Unknown | MetricType::StateSet => &[""],
        }
    }

    /// Whether OpenMetrics `_created` samples of this type carry a start time.
    pub(crate) fn has_created(self) -> bool {
        matches!(
            self,
            MetricType::Counter | MetricType::Histogram | MetricType::Summary
        )
    }
}

/// One `name="value"` pair. Both halves borrow from the page unless they contained an escape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Label<'a> {
    /// The label name (quoted UTF-8 names are returned unquoted).
    pub name: Text<'a>,
    /// The unescaped label value. May be empty: Prometheus treats an empty value as an absent
    /// label (remote write requires dropping it); it is kept here as written.
    pub value: Text<'a>,
}

impl<'a> Label<'a> {
    /// A label borrowing both halves.
    pub fn new(name: &'a str, value: &'a str) -> Label<'a> {
        Label {
            name: Text::borrowed(name),
            value: Text::borrowed(value),
        }
    }

    /// Copies whatever is borrowed, so the label outlives the page.
    pub fn into_owned(self) -> Label<'static> {
        Label {
            name: self.name.into_owned(),
            value: self.value.into_owned(),
        }
    }
}

/// An OpenMetrics exemplar: `# {trace_id="…"} 0.67 1690000000.123` after a sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar<'a> {
    /// The exemplar's labels (typically `trace_id`, `span_id`).
    pub labels: Vec<Label<'a>>,
    /// The exemplar value. NaN is normalised like sample values.
    pub value: f64,
    /// The exemplar timestamp, converted from seconds to milliseconds.
    pub timestamp_ms: Option<i64>,
}

impl Exemplar<'_> {
    /// Whether Prometheus keeps this exemplar: no label named twice, and at most
    /// [`Limits::max_exemplar_label_chars`] characters of label names and values, counted as
    /// Prometheus counts them (in characters, labels with an empty value left out).
    ///
    /// Prometheus's parser reads any exemplar that is well formed; its storage (and its agent's,
    /// and a remote-write receiver's) then drops one that fails these checks and keeps the
    /// sample. The parser does the same: such an exemplar is left off its sample and counted in
    /// [`Exposition::exemplars_dropped`]; the page is not failed for it.
    ///
    /// ```
    /// use wxcloudrun_exposition::{Format, Limits, parse_exemplar};
    ///
    /// let limits = Limits::default();
    /// let read = |text| parse_exemplar(text, Format::OpenMetrics, &limits).unwrap();
    /// assert!(read("# {trace_id=\"4bf9\",empty=\"\"} 0.5").is_storable(&limits));
    /// assert!(!read("# {trace_id=\"4bf9\",trace_id=\"4bfa\"} 0.5").is_storable(&limits));
    /// let long = format!("# {{user=\"{}\"}} 1", "u".repeat(125));
    /// assert!(!read(&long).is_storable(&limits));
    /// ```
    pub fn is_storable(&self, limits: &Limits) -> bool {
        let mut chars = 0;
        let kept = || self.labels.iter().filter(|l| !l.value.is_empty());
        for (i, label) in kept().enumerate() {
            chars += label.name.chars().count() + label.value.chars().count();
            // The count first: it bounds the labels compared below to a few dozen.
            if chars > limits.max_exemplar_label_chars {
                return false;
            }
            if kept().take(i).any(|earlier| earlier.name == label.name) {
                return false;
            }
        }
        true
    }

    /// Copies whatever is borrowed.
    pub fn into_owned(self) -> Exemplar<'static> {
        Exemplar {
            labels: self.labels.into_iter().map(Label::into_owned).collect(),
            value: self.value,
            timestamp_ms: self.timestamp_ms,
        }
    }
}

/// A time in milliseconds since the epoch, or none: an `Option<i64>` in one word where the
/// `Option` takes two. Every sample has two of them and a page is held whole while it is
/// converted: one word less each is 1.5 MiB of a 100,000-series page. `i64::MIN` stands for none,
/// so a page that writes that very time (292 million years BC) is read one millisecond later.
///
/// ```
/// use wxcloudrun_exposition::Millis;
///
/// assert_eq!(Millis::new(Some(1_700_000_000_000)).get(), Some(1_700_000_000_000));
/// assert_eq!(Millis::NONE.get(), None);
/// assert_eq!(Millis::new(Some(i64::MIN)).get(), Some(i64::MIN + 1));
/// assert_eq!(size_of::<Millis>(), 8);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Millis(i64);

impl Millis {
    /// No time.
    pub const NONE: Millis = Millis(i64::MIN);

    /// `ms`, or none.
    pub const fn new(ms: Option<i64>) -> Millis {
        match ms {
            Some(ms) if ms == i64::MIN => Millis(i64::MIN + 1),
            Some(ms) => Millis(ms),
            None => Millis::NONE,
        }
    }

    /// The time, if there is one.
    pub const fn get(self) -> Option<i64> {
        if self.0 == i64::MIN {
            None
        } else {
            Some(self.0)
        }
    }

    /// Whether there is no time.
    pub const fn is_none(self) -> bool {
        self.0 == i64::MIN
    }
}

impl Default for Millis {
    fn default() -> Millis {
        Millis::NONE
    }
}

impl From<Option<i64>> for Millis {
    fn from(ms: Option<i64>) -> Millis {
        Millis::new(ms)
    }
}

impl std::fmt::Debug for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// The sample's metric name as written (`foo_bucket`, `foo_total`, …), not the family name.
    pub name: Text<'a>,
    /// Labels in page order (not sorted; remote write needs them sorted, with `__name__` added).
    /// A boxed slice: two words where a `Vec` takes three, on every sample of a page.
    pub labels: Box<[Label<'a>]>,
    /// The value. Every NaN (`NaN`, `nan`, `-nan`, …) is the canonical quiet NaN `f64::NAN`
    /// (bits `0x7ff8000000000000`), so a parsed value is never the remote-write stale marker
    /// `0x7ff0000000000002`. Compare bits, not `==`, when it matters.
    pub value: f64,
    /// The sample's own timestamp in milliseconds since the epoch (text: written in ms;
    /// OpenMetrics: written in seconds and converted). Most scrapers ignore it and use the scrape
    /// time.
    pub timestamp_ms: Millis,
    /// The series' start time in milliseconds, from the OpenMetrics `_created` sample of the same
    /// label set (minus `le`/`quantile`). Always none in the text format.
    pub created_ms: Millis,
    /// The exemplar after ` # `, if any. Boxed: exemplars are rare, and inline one would make
    /// every sample 40 bytes larger (a 10,000-series page is held whole while it is converted).
    pub exemplar: Option<Box<Exemplar<'a>>>,
}

impl Sample<'_> {
    /// The value of the label called `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.value.as_ref())
    }

    /// Copies whatever is borrowed.
    pub fn into_owned(self) -> Sample<'static> {
        Sample {
            name: self.name.into_owned(),
            labels: self.labels.into_iter().map(Label::into_owned).collect(),
            value: self.value,
            timestamp_ms: self.timestamp_ms,
            created_ms: self.created_ms,
            exemplar: self
                .exemplar
                .map(|exemplar| Box::new(exemplar.into_owned())),
        }
    }
}

/// A metric family: the samples of one name and type — those after its `# TYPE` (wherever they
/// are in the page: a family may be reopened), or, without `# TYPE`, those of one name.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricFamily<'a> {
    /// The family name as declared (`http_requests_total` in text, `http_requests` in OpenMetrics),
    /// or the sample name for families without `# TYPE`.
    pub name: Text<'a>,
    /// The declared type; [`MetricType::Unknown`] without `# TYPE`.
    pub metric_type: MetricType,
    /// `# HELP` and `# UNIT`, if either was given ([`help`](Self::help), [`unit`](Self::unit)).
    /// Boxed: inline they were half of a family's 96 bytes, and a page of 100,000 one-sample
    /// families (a name with an id in it) has neither.
    pub metadata: Option<Box<FamilyMetadata<'a>>>,
    /// The samples in page order, duplicates removed. OpenMetrics `_created` samples are not here:
    /// they are folded into [`Sample::created_ms`].
    pub samples: Vec<Sample<'a>>,
}

/// A family's `# HELP` and `# UNIT`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FamilyMetadata<'a> {
    /// The unescaped `# HELP` text (the last one given).
    pub help: Option<Text<'a>>,
    /// The OpenMetrics `# UNIT` (the last one given).
    pub unit: Option<Text<'a>>,
}

impl<'a> MetricFamily<'a> {
    /// The unescaped `# HELP` text (the last one given), if any.
    pub fn help(&self) -> Option<&str> {
        self.metadata.as_ref()?.help.as_deref()
    }

    /// The OpenMetrics `# UNIT` (the last one given), if any.
    pub fn unit(&self) -> Option<&str> {
        self.metadata.as_ref()?.unit.as_deref()
    }

    /// The metadata, made if there is none yet.
    pub(crate) fn metadata_mut(&mut self) -> &mut FamilyMetadata<'a> {
        self.metadata.get_or_insert_with(Box::default)
    }

    /// Copies whatever is borrowed.
    pub fn into_owned(self) -> MetricFamily<'static> {
        MetricFamily {
            name: self.name.into_owned(),
            metric_type: self.metric_type,
            metadata: self.metadata.map(|metadata| {
                Box::new(FamilyMetadata {
                    help: metadata.help.map(Text::into_owned),
                    unit: metadata.unit.map(Text::into_owned),
                })
            }),
            samples: self.samples.into_iter().map(Sample::into_owned).collect(),
        }
    }
}

/// A parsed page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition<'a> {
    /// The families in order of first appearance. A name appears twice only when a later
    /// `# TYPE` gave it another type.
    pub families: Vec<MetricFamily<'a>>,
    /// Samples dropped because the same series (name and label set, ignoring label order and
    /// empty-valued labels; a histogram's `le` and a summary's `quantile` by their number) already
    /// appeared earlier in the page. The first one is kept.
    pub duplicates: usize,
    /// Exemplars left off their samples because Prometheus would not store them (see
    /// [`Exemplar::is_storable`]).
    pub exemplars_dropped: usize,
}

impl Exposition<'_> {
    /// The number of samples kept, over all families.
    pub fn sample_count(&self) -> usize {
        self.families.iter().map(|f| f.samples.len()).sum()
    }

    /// The family called `name`, if any.
    pub fn family(&self, name: &str) -> Option<&MetricFamily<'_>> {
        self.families.iter().find(|f| f.name == name)
    }

    /// Copies whatever is borrowed, so the result outlives the page.
    pub fn into_owned(self) -> Exposition<'static> {
        Exposition {
            families: self
                .families
                .into_iter()
                .map(MetricFamily::into_owned)
                .collect(),
            duplicates: self.duplicates,
            exemplars_dropped: self.exemplars_dropped,
        }
    }
}

/// Bounds that keep hostile or broken pages from using unbounded memory. Exceeding one fails the
/// parse with a clear [`ErrorKind`](crate::ErrorKind).
///
/// The defaults are generous for real applications (a busy service exposes 10⁴–10⁵ series; the
/// 10,000-series benchmark page is 2 MB). Parsing costs about 140 bytes per sample (duplicate
/// tracking included) plus 32 bytes per label, so the worst case under the defaults (a 32 MiB
/// body made of one-character labels) stays within a few hundred MiB; lower `max_body_bytes` to
/// tighten it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest accepted line in bytes, line ending excluded. Default 64 KiB.
    pub max_line_bytes: usize,
    /// Most labels on one sample or exemplar. Default 128.
    pub max_labels_per_series: usize,
    /// Most samples (lines with a value, duplicates included) in one page. Default 1,000,000.
    pub max_samples: usize,
    /// Most metric families in one page. Default 100,000.
    pub max_families: usize,
    /// Longest exemplar label set, in characters of names plus values (the OpenMetrics limit,
    /// which Prometheus's storage enforces). An exemplar over it is dropped and its sample kept
    /// ([`Exemplar::is_storable`]), as Prometheus drops it. Default 128.
    pub max_exemplar_label_chars: usize,
    /// Largest body [`decode_body`](crate::decode_body) returns after gzip decompression, and the
    /// largest body [`parse_with_limits`](crate::parse_with_limits) accepts. Default 32 MiB.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_line_bytes: 64 * 1024,
            max_labels_per_series: 128,
            max_samples: 1_000_000,
            max_families: 100_000,
            max_exemplar_label_chars: 128,
            max_body_bytes: 32 * 1024 * 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parsed_page_stays_small() {
        // A page is held whole while it is converted: a sample, a label and a family each
        // count once per line of a hostile page. On 64-bit targets: 64, 32 and 56 bytes.
        let word = size_of::<usize>();
        let (sample, label, family) = (
            size_of::<Sample<'_>>(),
            size_of::<Label<'_>>(),
            size_of::<MetricFamily<'_>>(),
        );
        assert!(sample <= 8 * word, "{sample}");
        assert!(label <= 4 * word, "{label}");
        assert!(family <= 7 * word, "{family}");
    }
}
