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
//! assert_eq!(sample.created_ms, Some(1_699_990_000_250)); // from `_created`, in ms
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
//! Escapes in label values (`\\`, `\"`, `\n`; `,` `}` `=` `#` and any UTF-8 inside quotes), `:` in
//! metric names, quoted UTF-8 names (`{"my.metric", "a.b"="c"} 1`, Prometheus 3), trailing commas
//! in label sets, `NaN`/`+Inf`/`-Inf` (and OpenMetrics' case-insensitive spellings), optional
//! timestamps (milliseconds in the text format, seconds in OpenMetrics — both returned in ms),
//! untyped families without `# TYPE`, OpenMetrics `_created` (returned as
//! [`Sample::created_ms`]), exemplars (the `#` after a sample is not a comment), `# EOF`
//! (mandatory in OpenMetrics: a page without it was truncated), CRLF line endings, blank lines
//! and duplicate series (the first is kept, the rest counted in [`Exposition::duplicates`]).
//! [`decode_body`] undoes gzip with a bound on the decompressed size.
//! [`MetricFamily::histogram_points`] and [`MetricFamily::summary_points`] merge a family's
//! samples per label set, and [`HistogramPoint::to_otlp`] converts cumulative buckets to OTLP's
//! per-bucket counts.
//!
//! Real NaN values are always the canonical quiet NaN, never the remote-write stale marker
//! (`0x7ff0000000000002`). Labels stay in page order and empty values are kept; remote write needs
//! them sorted and without empty values.
//!
//! # Guarantees
//!
//! - **No panics** on any input: no unchecked indexing or `unwrap` on input-derived values;
//!   property tests and a `cargo fuzz` target (`fuzz/` at the repository root) check it.
//! - **Bounded memory**: [`Limits`] caps the body, line length, labels per series, samples and
//!   families; exceeding one is a [`ParseError`], never an allocation spree.
//! - **Fast and linear**: one pass over the bytes, no regex, no backtracking; names and values
//!   borrow from the page ([`std::borrow::Cow`]) and only a value with a backslash is copied.
//!   Duplicate detection uses a keyed hash, so no page can make it quadratic.
//!   `cargo bench -p wxcloudrun-exposition` parses a realistic 10,000-series page; the goal is at
//!   least 2 million lines per second per core.
//! - **Clear failures**: a page that cannot be parsed fails with the line, the column and the
//!   reason (`line 3, column 17: expected '=' after label name`).
//!
//! # Strict where data is at stake, lenient elsewhere
//!
//! A failed parse loses a whole scrape, so only what makes the data ambiguous or truncated is an
//! error: bad syntax inside a sample line, a label named twice, metadata given twice, `# TYPE`
//! (and in OpenMetrics any metadata) after the family's samples, interleaved OpenMetrics
//! families, a missing `# EOF`, an exceeded [`Limits`] bound. Tolerated in both formats: blank
//! lines, comments other than `# HELP`/`# TYPE`/`# UNIT`, runs of spaces or tabs, blanks inside
//! label sets, `untyped` and `unknown` alike, counters declared with or without `_total`,
//! exemplars in the text format, and unknown escapes (kept as written).
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

pub use decode::{decode_body, decode_body_owned};
pub use error::{DecodeError, ErrorKind, ParseError, Snippet};
pub use group::{
    Bucket, BucketError, GroupError, HistogramPoint, OtlpHistogram, Quantile, SummaryPoint,
};
pub use model::{
    ACCEPT_HEADER, Exemplar, Exposition, Format, Label, Limits, MetricFamily, MetricType, Sample,
};
pub use parser::{parse, parse_with_limits};

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
