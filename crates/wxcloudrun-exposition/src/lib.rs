//! A parser for the Prometheus text exposition format 0.0.4 and OpenMetrics 1.0, as the
//! `wxcloudrun-sidecar` scrapes them from an application's `/metrics`.
//!
//! ```
//! use wxcloudrun_exposition::{Format, MetricType, parse};
//!
//! let page = "\
//! ## HELP http_requests Requests served.
//! ## TYPE http_requests counter
//! http_requests_total{route=\"/a,b}\",code=\"200\",} 1027 # {trace_id=\"4bf9\"} 1 1700000000.5
//! http_requests_created{route=\"/a,b}\",code=\"200\"} 1699990000.25
//! job:request_rate:5m NaN
//! ## EOF
//! ";
//! let exposition = parse(page, Format::from_content_type("application/openmetrics-text"))?;
//!
//! let requests = &exposition.families[0];
//! assert_eq!(requests.metric_type, MetricType::Counter);
//! let sample = &requests.samples[0];
//! assert_eq!(sample.name, "http_requests_total");
//! assert_eq!(sample.label("route"), Some("/a,b}"));
//! assert_eq!(sample.value, 1027.0);
//! assert_eq!(sample.created_ms.get(), Some(1_699_990_000_250)); // from `_created`, in ms
//! assert_eq!(sample.exemplar.as_ref().unwrap().timestamp_ms, Some(1_700_000_000_500));
//!
//! let rate = &exposition.families[1]; // no `# TYPE`: its own untyped family
//! assert_eq!(rate.name, "job:request_rate:5m");
//! assert_eq!(rate.metric_type, MetricType::Unknown);
//! assert!(rate.samples[0].value.is_nan());
//! # Ok::<(), wxcloudrun_exposition::ParseError>(())
//! ```
//!
//! # What it handles
//!
//! Every page the Prometheus server's own text and OpenMetrics parsers accept
//! (`model/textparse`), with the samples Prometheus reads from it: a page a direct scrape keeps
//! must not cost the sidecar its scrape. `tests/prometheus_accepts.rs` holds a page for each
//! item, the leniencies and the strictness below.
//!
//! - **Names and labels**: `:` in metric names; quoted UTF-8 names anywhere in the braces
//!   (`{"my.metric", "a.b"="c"} 1`, Prometheus 3); escapes in label values (`\\`, `\"`, `\n`;
//!   any other backslash is kept as written) and `,` `}` `=` `#`, NUL and any UTF-8 inside
//!   quotes; a trailing comma; empty label values (kept as written, but `m{a=""}` is the series
//!   `m`, as in Prometheus).
//! - **Blanks**: runs of spaces and tabs between any two tokens — before the name, between the
//!   name and `{`, around `=` and `,`, around the value and timestamp, at the end of the line —
//!   and none between `}` and the value (`m{a="b"}1`). In the text format, labels without a comma
//!   between them (`{a="x" b="y"}`): Prometheus's own tests call that acceptance "unintended";
//!   it is unambiguous (values are quoted), so it is accepted too. OpenMetrics needs the comma,
//!   as in Prometheus.
//! - **Values and times**: Go `ParseFloat` syntax (`1`, `.5`, `5.`, `1E3`, `+Inf`, `inf`,
//!   `Infinity`, `NaN`, `nan`, …); optional timestamps (milliseconds in the text format, seconds
//!   in OpenMetrics — both returned in ms; OpenMetrics decimals are converted exactly, where
//!   Prometheus multiplies a float and may land a millisecond lower); OpenMetrics `_created`
//!   (returned as [`Sample::created_ms`]; one that is no time gives none, and Prometheus does not
//!   fail the page for it either); exemplars (the `#` after a sample is not a comment); `# EOF`
//!   (mandatory in OpenMetrics: a page without it was truncated).
//! - **Comments and metadata**: any comment, with invalid UTF-8 too ([`decode_body`]: Prometheus
//!   never reads comments); `# HELP` / `# TYPE` are metadata only with a blank after the keyword
//!   (`# HELP` alone is a comment, as for Prometheus); the one character after the name separates
//!   it from the text, whatever it is, and the rest is the text: `# HELP name` has an empty help,
//!   `# HELP name  x` the help ` x`, `# HELP name-x y` is `name`'s help `x y` (all as Prometheus
//!   reads them).
//! - **Families laid out any way**: families without `# TYPE` (each name its own untyped
//!   family); metadata repeated, late, or between another family's samples; a family's samples
//!   interleaved with another's — in both formats, as Prometheus's OpenMetrics parser does not
//!   check either. Two concatenated registries give one family per name and type, samples in page
//!   order. A later `# TYPE` with another type applies to what follows it (a new family of the
//!   same name), as Prometheus applies the last `# TYPE` line; samples before it keep their
//!   family. A repeated `# HELP` or `# UNIT`: the last one counts. A sample whose name its
//!   family's type has no place for (`foo` under `# TYPE foo histogram`) is its own untyped
//!   family: Prometheus stores it as written.
//! - **Duplicate series**: the first is kept, the rest counted in [`Exposition::duplicates`]. A
//!   histogram's `le` and a summary's `quantile` count by their number: `le="1"` and `le="1.0"`
//!   are one series, as Prometheus 3 normalises them (and as the sidecar writes them).
//! - **The end of a text page at a NUL byte** where a line starts: Prometheus's lexer reads it as
//!   the end of its input, so the page so far is kept and the rest is not read.
//! - CRLF line endings and blank lines.
//!
//! [`decode_body`] undoes gzip with a bound on the decompressed size.
//! [`MetricFamily::histogram_points`] and [`MetricFamily::summary_points`] merge a family's
//! samples per label set (buckets stay cumulative, as written: what a consumer does with a
//! decreasing count is its own rule — the sidecar's OTLP exporter clamps it to 0). A bucket or quantile whose `le` / `quantile` is missing or not a number
//! cannot be part of a point: it is left out of them (the rest of the family is not) and listed
//! by [`MetricFamily::samples_without_bound`], for the caller to keep as written or count (the
//! sidecar counts them, `wxcloudrun_sidecar_scrape_samples_dropped_total{reason="unparsable_bound"}`,
//! and exports the rest of the family).
//!
//! Real NaN values are always the canonical quiet NaN, never the remote-write stale marker
//! (`0x7ff0000000000002`). Labels stay in page order and empty values are kept; remote write needs
//! them sorted and without empty values.
//!
//! # Leniencies: accepted here, rejected by Prometheus
//!
//! None can change what a page Prometheus accepts yields; each only keeps a scrape that a direct
//! scrape would lose.
//!
//! - Both formats: CRLF line endings (Prometheus reads `1\r` as the value); `+NaN` / `-NaN` and
//!   out-of-range numbers (`1e400` is `+Inf`), which Go's `ParseFloat` rejects; blanks around a
//!   `# TYPE`'s type token; either format's type names (`untyped` and `unknown`, `info`, …).
//! - The text format: exemplars; timestamps with a sign.
//! - OpenMetrics: runs of blanks, tabs, blanks inside label sets and before `{`; blank lines and
//!   plain comments before `# EOF`, blanks and blank lines after it; `# HELP name` without the
//!   blank; a `# UNIT` that is not a suffix of the name.
//!
//! # Strictness
//!
//! A failed parse loses a whole scrape, so only what Prometheus rejects too, or what would make
//! the data ambiguous or unbounded, is an error: bad syntax inside a sample line (an unquoted or
//! unterminated value, `{,`, `,,`, a missing `=`, a second quoted metric name, a quoted metric
//! name not followed by `,` or `}`), a value that is no number (hex floats, `_` in numbers), a
//! fractional text timestamp or a non-finite OpenMetrics one, text after the timestamp other than
//! an exemplar, a label named twice or `__name__` in a series' label set, an empty quoted name, `# TYPE`
//! with an unknown type, `# HELP ` / `# TYPE ` with a blank but no name, a missing `# EOF` or
//! text after it in OpenMetrics, invalid UTF-8 outside comments, and an exceeded [`Limits`] bound.
//!
//! An exemplar that is well formed but that Prometheus would not store — a label named twice, a
//! label set over 128 characters — fails nothing: Prometheus's parser reads it and its storage
//! drops it, keeping the sample. Here it is left off its sample and counted
//! ([`Exemplar::is_storable`], [`Exposition::exemplars_dropped`]).
//!
//! Chosen where Prometheus accepts:
//! - A raw line break inside a quoted string fails the page: Prometheus's text lexer accepts one
//!   (its OpenMetrics lexer does not); no client writes one unescaped, and lines are the unit of
//!   this parser.
//! - The type that normalises `le` / `quantile` is the sample's own family's. Prometheus applies
//!   the last `# TYPE` line seen, whoever's it was: after a histogram's, an untyped
//!   `wind_speed{le="5"}` would be stored as `le="5.0"`, and a histogram's bucket that follows
//!   another family's `# TYPE` would not be normalised. Its tests call the first "knowingly
//!   broken"; here neither happens.
//!
//! # Guarantees
//!
//! - **No panics** on any input: no unchecked indexing or `unwrap` on input-derived values;
//!   property tests and a `cargo fuzz` target (`fuzz/` at the repository root) check it.
//! - **Bounded memory**: [`Limits`] caps the body, line length, labels per series, samples and
//!   families; exceeding one is a [`ParseError`], never an allocation spree.
//! - **Fast and linear**: one pass over the bytes, no regex, no backtracking; names and values
//!   borrow from the page ([`Text`], two words) and only a value with a backslash is copied.
//!   Duplicate detection uses a keyed hash, so no page can make it quadratic.
//!   `cargo bench -p wxcloudrun-exposition` parses a realistic 10,000-series page; the goal is at
//!   least 2 million lines per second per core.
//! - **Clear failures**: a page that cannot be parsed fails with the line, the column and the
//!   reason (`line 3, column 17: expected '=' after label name`).
//!
//! # Why not an existing crate
//!
//! Evaluated for this project (versions current in 2026); none is fit for scraping arbitrary
//! applications:
//!
//! - `prometheus-parse` 0.2.5 matches each line with a regex (`\w+` names; labels split on `,`
//!   and `=`) and does no unescaping: `m{a="x,y=z"}` yields the bogus labels `a=x`, `y=z`; `\"`
//!   stays escaped; `m{a="}"}`, recording-rule names such as `job:req:rate5m` and quoted UTF-8
//!   names are silently dropped. Losing series without an error is the worst failure a scraper
//!   can have.
//! - `openmetrics-parser` 0.5.1 is correct on escapes and exemplars but quadratic per family
//!   (8,000 series take half a second, a 48,000-line page over four seconds — a sidecar with a
//!   small CPU share would spend its scrape interval parsing), rejects valid untyped text without
//!   `# TYPE` (`a 1\nb 2`), and is LGPL-3.0, awkward for the statically linked sidecar.
//! - The rest are immature, or are encoders rather than parsers.
//!
//! The formats are line-based and simple enough that a hand-written single-pass parser (a byte
//! cursor per line plus a small family state machine) is shorter than the workarounds would be,
//! and it can promise what a sidecar needs: no panics, bounded memory, linear time.

mod decode;
mod error;
mod group;
mod lexer;
mod model;
mod parser;
mod text;

pub use decode::{decode_body, decode_body_owned};
pub use error::{DecodeError, ErrorKind, ParseError, Snippet};
pub use group::{Bucket, GroupError, HistogramPoint, Quantile, SummaryPoint};
pub use model::{
    ACCEPT_HEADER, Exemplar, Exposition, FamilyMetadata, Format, Label, Limits, MetricFamily,
    MetricType, Millis, Sample,
};
pub use parser::{parse, parse_with_limits};
pub use text::Text;

/// A sample value token (`1`, `-0.5e3`, `+Inf`, `NaN`, …) as the parser reads it: every NaN is the
/// canonical quiet NaN (see [`Sample::value`]). `None` when it is not a number.
///
/// ```
/// assert_eq!(wxcloudrun_exposition::parse_value("+Inf"), Some(f64::INFINITY));
/// assert_eq!(wxcloudrun_exposition::parse_value("-nan").map(f64::to_bits), Some(f64::NAN.to_bits()));
/// assert_eq!(wxcloudrun_exposition::parse_value("1 2"), None);
/// ```
pub fn parse_value(token: &str) -> Option<f64> {
    lexer::parse_float(token)
}

/// Where the parser reads the value of a sample line (`name{labels} value …`, without its line
/// break): the value token's byte offset, or `None` when `line` is no sample line the parser
/// accepts. For a caller that reads the values of a page it parsed before without parsing it
/// again (the sidecar's replay): the text before that offset is the series.
///
/// ```
/// use wxcloudrun_exposition::{Format, Limits, sample_value_offset};
///
/// let line = "h_bucket{le=\"1\"} 3 # {trace_id=\"4bf9\"} 0.5 1700000000.5";
/// let at = sample_value_offset(line, Format::OpenMetrics, &Limits::default());
/// assert_eq!(at, Some(17));
/// assert_eq!(sample_value_offset("h_bucket{le=", Format::OpenMetrics, &Limits::default()), None);
/// ```
pub fn sample_value_offset(line: &str, format: Format, limits: &Limits) -> Option<usize> {
    parser::value_offset(line, format, limits)
}

/// An exemplar exactly as the parser reads it after a sample's value and the blanks after it:
/// `text` starts at the `#` and runs to the end of the line (without its line break). `None`
/// where the parser would fail the line for it (bad syntax, a value or timestamp that is no
/// number, text after the timestamp). The parser keeps it on its sample only if it
/// [`is_storable`](Exemplar::is_storable).
///
/// ```
/// use wxcloudrun_exposition::{Format, Limits, parse_exemplar};
///
/// let limits = Limits::default();
/// let exemplar = parse_exemplar("# {trace_id=\"4bf9\"} 0.5 1700000000.5", Format::OpenMetrics, &limits);
/// assert_eq!(exemplar.unwrap().timestamp_ms, Some(1_700_000_000_500));
/// assert!(parse_exemplar("# {trace_id=\"4bf9\"} fast", Format::OpenMetrics, &limits).is_none());
/// ```
pub fn parse_exemplar<'a>(text: &'a str, format: Format, limits: &Limits) -> Option<Exemplar<'a>> {
    parser::exemplar_at(text, format, limits)
}
