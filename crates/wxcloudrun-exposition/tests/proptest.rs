//! Property tests.
//!
//! - Round trip: random valid families (every type, escapes, UTF-8, quoted names, NaN/±Inf,
//!   timestamps, `_created`, exemplars, CRLF, blanks, trailing commas, a blank before `{`, no
//!   blank after `}`, families split in two and reopened after the others, with or without their
//!   metadata again) are rendered as a page in either format and parsed back; the result must
//!   equal what was generated, bit for bit.
//! - Never panic: random bytes, a soup of syntax fragments, and random edits of valid pages are
//!   parsed (and grouped, and decoded); any outcome but a panic is fine, and an error must point at
//!   a line that exists.
//!
//! `PROPTEST_CASES=100000 cargo test -p wxcloudrun-exposition --release --test proptest` runs a
//! long campaign; the defaults keep `cargo test` quick.

use std::fmt::Write as _;

use proptest::prelude::*;
use proptest::test_runner::Config;
use wxcloudrun_exposition::{Format, MetricFamily, MetricType, decode_body, parse};

fn config(default_cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

// ---- the model that is rendered and expected back ------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Counter,
    Gauge,
    Untyped,
    Histogram,
    Summary,
}

#[derive(Debug, Clone)]
struct GenExemplar {
    trace_id: String,
    value: f64,
    timestamp_ms: Option<i64>,
}

#[derive(Debug, Clone)]
struct GenSeries {
    labels: Vec<(String, String)>,
    value: f64,
    timestamp_ms: Option<i64>,
    created_ms: Option<i64>,
    exemplar: Option<GenExemplar>,
    /// Histogram: (bound, cumulative count), bounds ascending, finite.
    buckets: Vec<(f64, u64)>,
    /// Histogram count (≥ the last bucket) and summary count.
    count: u64,
    /// Summary: (quantile, value), quantiles ascending.
    quantiles: Vec<(f64, f64)>,
    /// How to write numbers: 0 = `{:?}`, 1 = `{:e}`; and NaN/Inf spellings.
    style: u8,
}

#[derive(Debug, Clone)]
struct GenFamily {
    name: String,
    kind: Kind,
    help: Option<String>,
    series: Vec<GenSeries>,
}

/// What a parsed sample must look like.
#[derive(Debug, Clone, PartialEq)]
struct Expected {
    name: String,
    labels: Vec<(String, String)>,
    value_bits: u64,
    timestamp_ms: Option<i64>,
    created_ms: Option<i64>,
    exemplar: Option<ExpectedExemplar>,
}

/// An exemplar's labels, value bits and timestamp.
type ExpectedExemplar = (Vec<(String, String)>, u64, Option<i64>);

fn canonical_bits(value: f64) -> u64 {
    if value.is_nan() {
        f64::NAN.to_bits()
    } else {
        value.to_bits()
    }
}

// ---- strategies --------------------------------------------------------------------------------

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => any::<f64>(),
        2 => (-1000i32..1000).prop_map(f64::from),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(-0.0),
    ]
}

/// Label values: anything, with the characters that break naive parsers well represented.
fn label_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9]{0,6}",
        "[\\\\\"\n,}{=# \t\r:a-z微信é✓]{0,10}",
        any::<String>().prop_map(|s| s.chars().take(12).collect()),
    ]
}

fn label_name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,5}".prop_filter("reserved", |n| {
        !matches!(n.as_str(), "le" | "quantile" | "id")
    })
}

/// HELP text, leading blanks included (only the one blank after the name separates), without
/// a `\r` (a line ending) or a trailing blank before one in CRLF pages.
fn help() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("[a-zA-Z0-9\\\\\"\n#{}=,.微 \t]{0,12}")
}

fn series(kind: Kind, format: Format, id: usize) -> impl Strategy<Value = GenSeries> {
    let om = format == Format::OpenMetrics;
    (
        proptest::collection::vec((label_name(), label_value()), 0..4),
        value(),
        proptest::option::of(0i64..4_000_000_000_000),
        proptest::option::of(0i64..4_000_000_000_000),
        proptest::option::of((
            "[0-9a-f]{1,32}",
            value(),
            proptest::option::of(0i64..4_000_000_000_000),
        )),
        proptest::collection::vec((-100i32..100, 0u64..50), 0..5),
        0u64..20,
        proptest::collection::btree_set(0u32..=100, 0..4),
        0u8..4,
    )
        .prop_map(
            move |(mut labels, value, ts, created, exemplar, raw_buckets, extra, qs, style)| {
                let mut seen = std::collections::HashSet::new();
                labels.retain(|(n, _)| seen.insert(n.clone()));
                labels.push(("id".to_owned(), id.to_string()));
                // Buckets: distinct ascending bounds, non-decreasing cumulative counts.
                let mut bounds: Vec<i32> = raw_buckets.iter().map(|&(b, _)| b).collect();
                bounds.sort_unstable();
                bounds.dedup();
                let mut cumulative = 0;
                let buckets: Vec<(f64, u64)> = bounds
                    .iter()
                    .zip(&raw_buckets)
                    .map(|(&b, &(_, add))| {
                        cumulative += add;
                        (f64::from(b) / 8.0, cumulative)
                    })
                    .collect();
                let quantiles = qs
                    .iter()
                    .map(|&q| (f64::from(q) / 100.0, value * f64::from(q)))
                    .collect();
                let exemplar_ok = om && matches!(kind, Kind::Counter | Kind::Histogram);
                let has_created = matches!(kind, Kind::Counter | Kind::Histogram | Kind::Summary);
                GenSeries {
                    labels,
                    value,
                    // OpenMetrics timestamps are written in whole milliseconds of seconds here;
                    // the text format writes them as integers.
                    timestamp_ms: ts,
                    created_ms: created.filter(|_| om && has_created),
                    exemplar: exemplar
                        .filter(|_| exemplar_ok)
                        .map(|(trace_id, value, ts)| GenExemplar {
                            trace_id,
                            value,
                            timestamp_ms: ts,
                        }),
                    buckets,
                    count: cumulative + extra,
                    quantiles,
                    style,
                }
            },
        )
}

fn family(index: usize, format: Format) -> impl Strategy<Value = GenFamily> {
    (
        prop_oneof![
            Just(Kind::Counter),
            Just(Kind::Gauge),
            Just(Kind::Untyped),
            Just(Kind::Histogram),
            Just(Kind::Summary),
        ],
        "[a-z_:]{0,6}",
        any::<bool>(),
        help(),
    )
        .prop_flat_map(move |(kind, tail, dotted, help)| {
            // The index keeps names unique and never a suffix-variant of another family's name.
            let name = if dotted {
                format!("f{index}.{tail}")
            } else {
                format!("f{index}_{tail}")
            };
            let count = if kind == Kind::Untyped { 1..3 } else { 0..3 };
            proptest::collection::vec(Just(()), count).prop_flat_map(move |slots| {
                let series: Vec<_> = (0..slots.len())
                    .map(|id| series(kind, format, id))
                    .collect();
                let name = name.clone();
                let help = help.clone();
                series.prop_map(move |series| GenFamily {
                    name: name.clone(),
                    kind,
                    help: help.clone(),
                    series,
                })
            })
        })
}

fn page_model(format: Format) -> impl Strategy<Value = (Vec<GenFamily>, Layout)> {
    (0usize..6)
        .prop_flat_map(move |n| (0..n).map(|i| family(i, format)).collect::<Vec<_>>())
        .prop_flat_map(move |families| (Just(families), layout(format)))
}

/// Cosmetic choices that must not change the result.
#[derive(Debug, Clone)]
struct Layout {
    crlf: bool,
    trailing_comma: bool,
    wide_blanks: bool,
    blank_lines: bool,
    /// `name {…}` instead of `name{…}`.
    blank_before_brace: bool,
    /// `name{…}1` instead of `name{…} 1`.
    value_after_brace: bool,
    /// Each family's second half comes after every family's first half (interleaved).
    split: bool,
    /// The second halves repeat their family's `# HELP` and `# TYPE` (concatenated registries).
    repeat_metadata: bool,
}

fn layout(format: Format) -> impl Strategy<Value = Layout> {
    let text = format == Format::PrometheusText;
    (
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
    )
        .prop_map(
            move |((crlf, trailing_comma, wide, blank), (brace, tight, split, repeat))| Layout {
                crlf,
                trailing_comma,
                wide_blanks: wide && text,
                blank_lines: blank,
                blank_before_brace: brace,
                value_after_brace: tight,
                split,
                repeat_metadata: repeat,
            },
        )
}

// ---- rendering ---------------------------------------------------------------------------------

fn escape_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(help: &str, format: Format) -> String {
    let escaped = help.replace('\\', "\\\\").replace('\n', "\\n");
    match format {
        Format::OpenMetrics => escaped.replace('"', "\\\""),
        Format::PrometheusText => escaped,
    }
}

fn number(value: f64, style: u8, format: Format) -> String {
    let om = format == Format::OpenMetrics;
    if value.is_nan() {
        return if om && style % 2 == 1 { "nan" } else { "NaN" }.to_owned();
    }
    if value.is_infinite() {
        let sign = if value > 0.0 { "+" } else { "-" };
        return if om && style % 2 == 1 {
            format!("{sign}inf")
        } else {
            format!("{sign}Inf")
        };
    }
    if style >= 2 {
        format!("{value:e}")
    } else {
        format!("{value:?}")
    }
}

fn timestamp(ms: i64, format: Format) -> String {
    match format {
        Format::PrometheusText => ms.to_string(),
        Format::OpenMetrics => format!("{}.{:03}", ms / 1000, ms % 1000),
    }
}

struct Renderer<'l> {
    format: Format,
    layout: &'l Layout,
    out: String,
}

impl Renderer<'_> {
    fn sep(&self) -> &'static str {
        if self.layout.wide_blanks { " \t " } else { " " }
    }

    fn line(&mut self, line: &str) {
        self.out.push_str(line);
        self.out
            .push_str(if self.layout.crlf { "\r\n" } else { "\n" });
        if self.layout.blank_lines {
            self.out.push('\n');
        }
    }

    fn metric_name(name: &str) -> String {
        if name.contains('.') {
            format!("\"{name}\"")
        } else {
            name.to_owned()
        }
    }

    /// `name{labels}` (a dotted name goes inside the braces, quoted).
    fn series(&self, name: &str, labels: &[(String, String)]) -> String {
        let mut parts: Vec<String> = Vec::new();
        if name.contains('.') {
            parts.push(format!("\"{name}\""));
        }
        for (n, v) in labels {
            parts.push(format!("{n}=\"{}\"", escape_value(v)));
        }
        let comma = if self.layout.trailing_comma && !parts.is_empty() {
            ","
        } else {
            ""
        };
        let head = if name.contains('.') { "" } else { name };
        let blank = if self.layout.blank_before_brace && !head.is_empty() {
            " "
        } else {
            ""
        };
        format!("{head}{blank}{{{}{comma}}}", parts.join(","))
    }

    #[allow(clippy::too_many_arguments)]
    fn sample(
        &mut self,
        expected: &mut Vec<Expected>,
        name: &str,
        labels: &[(String, String)],
        value: f64,
        s: &GenSeries,
        timestamp_ms: Option<i64>,
        exemplar: Option<&GenExemplar>,
    ) {
        let sep = self.sep();
        let first = if self.layout.value_after_brace {
            ""
        } else {
            sep
        };
        let mut line = format!(
            "{}{first}{}",
            self.series(name, labels),
            number(value, s.style, self.format)
        );
        if let Some(ts) = timestamp_ms {
            write!(line, "{sep}{}", timestamp(ts, self.format)).unwrap();
        }
        if let Some(e) = exemplar {
            write!(
                line,
                " # {{trace_id=\"{}\"}} {}",
                e.trace_id,
                number(e.value, s.style, self.format)
            )
            .unwrap();
            if let Some(ts) = e.timestamp_ms {
                write!(line, " {}", timestamp(ts, Format::OpenMetrics)).unwrap();
            }
        }
        self.line(&line);
        expected.push(Expected {
            name: name.to_owned(),
            labels: labels.to_vec(),
            value_bits: canonical_bits(value),
            timestamp_ms,
            created_ms: s.created_ms,
            exemplar: exemplar.map(|e| {
                (
                    vec![("trace_id".to_owned(), e.trace_id.clone())],
                    canonical_bits(e.value),
                    e.timestamp_ms,
                )
            }),
        });
    }

    fn created(&mut self, name: &str, s: &GenSeries) {
        if let Some(ms) = s.created_ms {
            let line = format!(
                "{} {}",
                self.series(&format!("{name}_created"), &s.labels),
                timestamp(ms, Format::OpenMetrics)
            );
            self.line(&line);
        }
    }

    /// The family's metadata lines and its series `range` (all of them unless the layout splits
    /// families).
    fn family(
        &mut self,
        f: &GenFamily,
        range: std::ops::Range<usize>,
        metadata: bool,
    ) -> Vec<Expected> {
        let format = self.format;
        let om = format == Format::OpenMetrics;
        let type_token = match f.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Untyped => {
                if om {
                    "unknown"
                } else {
                    "untyped"
                }
            }
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
        };
        let quoted = Self::metric_name(&f.name);
        if let Some(help) = f.help.as_ref().filter(|_| metadata) {
            let line = format!("# HELP {quoted} {}", escape_help(help, format));
            self.line(&line);
        }
        if f.kind != Kind::Untyped && metadata {
            self.line(&format!("# TYPE {quoted} {type_token}"));
        }
        let mut expected = Vec::new();
        let name = f.name.as_str();
        for s in f.series.get(range).unwrap_or_default() {
            match f.kind {
                Kind::Gauge | Kind::Untyped => {
                    self.sample(
                        &mut expected,
                        name,
                        &s.labels,
                        s.value,
                        s,
                        s.timestamp_ms,
                        None,
                    );
                }
                Kind::Counter => {
                    let sample_name = if om {
                        format!("{name}_total")
                    } else {
                        name.to_owned()
                    };
                    self.sample(
                        &mut expected,
                        &sample_name,
                        &s.labels,
                        s.value,
                        s,
                        s.timestamp_ms,
                        s.exemplar.as_ref(),
                    );
                    self.created(name, s);
                }
                Kind::Histogram => {
                    let bucket_name = format!("{name}_bucket");
                    for (i, &(bound, cumulative)) in s.buckets.iter().enumerate() {
                        let mut labels = s.labels.clone();
                        labels.push(("le".to_owned(), number(bound, s.style, format)));
                        let exemplar = if i == 0 { s.exemplar.as_ref() } else { None };
                        #[allow(clippy::cast_precision_loss)]
                        self.sample(
                            &mut expected,
                            &bucket_name,
                            &labels,
                            cumulative as f64,
                            s,
                            None,
                            exemplar,
                        );
                    }
                    let mut labels = s.labels.clone();
                    labels.push(("le".to_owned(), "+Inf".to_owned()));
                    #[allow(clippy::cast_precision_loss)]
                    let count = s.count as f64;
                    self.sample(&mut expected, &bucket_name, &labels, count, s, None, None);
                    self.sample(
                        &mut expected,
                        &format!("{name}_count"),
                        &s.labels,
                        count,
                        s,
                        None,
                        None,
                    );
                    self.sample(
                        &mut expected,
                        &format!("{name}_sum"),
                        &s.labels,
                        s.value,
                        s,
                        None,
                        None,
                    );
                    self.created(name, s);
                }
                Kind::Summary => {
                    for &(q, v) in &s.quantiles {
                        let mut labels = s.labels.clone();
                        labels.push(("quantile".to_owned(), format!("{q:?}")));
                        self.sample(&mut expected, name, &labels, v, s, None, None);
                    }
                    #[allow(clippy::cast_precision_loss)]
                    let count = s.count as f64;
                    self.sample(
                        &mut expected,
                        &format!("{name}_sum"),
                        &s.labels,
                        s.value,
                        s,
                        None,
                        None,
                    );
                    self.sample(
                        &mut expected,
                        &format!("{name}_count"),
                        &s.labels,
                        count,
                        s,
                        None,
                        None,
                    );
                    self.created(name, s);
                }
            }
        }
        expected
    }
}

fn render(families: &[GenFamily], layout: &Layout, format: Format) -> (String, Vec<Vec<Expected>>) {
    let mut renderer = Renderer {
        format,
        layout,
        out: String::new(),
    };
    let halves: Vec<usize> = families
        .iter()
        .map(|f| {
            if layout.split {
                // At least one series first: an untyped family without HELP has no other line
                // that would place it.
                f.series.len().div_ceil(2)
            } else {
                f.series.len()
            }
        })
        .collect();
    let mut expected: Vec<Vec<Expected>> = families
        .iter()
        .zip(&halves)
        .map(|(f, &half)| renderer.family(f, 0..half, true))
        .collect();
    for ((f, &half), expected) in families.iter().zip(&halves).zip(&mut expected) {
        if half < f.series.len() {
            let rest = renderer.family(f, half..f.series.len(), layout.repeat_metadata);
            expected.extend(rest);
        }
    }
    if format == Format::OpenMetrics {
        renderer.out.push_str("# EOF\n");
    }
    (renderer.out, expected)
}

fn actual_samples(family: &MetricFamily<'_>) -> Vec<Expected> {
    family
        .samples
        .iter()
        .map(|s| Expected {
            name: s.name.to_string(),
            labels: s
                .labels
                .iter()
                .map(|l| (l.name.to_string(), l.value.to_string()))
                .collect(),
            value_bits: s.value.to_bits(),
            timestamp_ms: s.timestamp_ms.get(),
            created_ms: s.created_ms.get(),
            exemplar: s.exemplar.as_ref().map(|e| {
                (
                    e.labels
                        .iter()
                        .map(|l| (l.name.to_string(), l.value.to_string()))
                        .collect(),
                    e.value.to_bits(),
                    e.timestamp_ms,
                )
            }),
        })
        .collect()
}

fn expected_type(kind: Kind) -> MetricType {
    match kind {
        Kind::Counter => MetricType::Counter,
        Kind::Gauge => MetricType::Gauge,
        Kind::Untyped => MetricType::Unknown,
        Kind::Histogram => MetricType::Histogram,
        Kind::Summary => MetricType::Summary,
    }
}

/// The cumulative `(le, count)` buckets the page writes for `s`: its finite bounds, then `+Inf`
/// holding the count.
#[allow(clippy::cast_precision_loss)]
fn expected_buckets(s: &GenSeries) -> Vec<(f64, f64)> {
    s.buckets
        .iter()
        .map(|&(bound, cumulative)| (bound, cumulative as f64))
        .chain([(f64::INFINITY, s.count as f64)])
        .collect()
}

fn check_round_trip(
    families: &[GenFamily],
    layout: &Layout,
    format: Format,
) -> Result<(), TestCaseError> {
    let (page, expected) = render(families, layout, format);
    let parsed = match parse(&page, format) {
        Ok(parsed) => parsed,
        Err(e) => return Err(TestCaseError::fail(format!("{e}\npage:\n{page}"))),
    };
    prop_assert_eq!(parsed.duplicates, 0);
    prop_assert_eq!(parsed.families.len(), families.len(), "page:\n{}", page);
    for ((generated, parsed_family), expected) in
        families.iter().zip(&parsed.families).zip(&expected)
    {
        prop_assert_eq!(parsed_family.name.as_ref(), generated.name.as_str());
        prop_assert_eq!(parsed_family.metric_type, expected_type(generated.kind));
        prop_assert_eq!(
            parsed_family.help(),
            generated.help.as_deref(),
            "page:\n{}",
            page
        );
        prop_assert_eq!(&actual_samples(parsed_family), expected, "page:\n{}", page);
        match generated.kind {
            Kind::Histogram => {
                let points = parsed_family
                    .histogram_points()
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(points.len(), generated.series.len());
                for (point, s) in points.iter().zip(&generated.series) {
                    let buckets: Vec<(f64, f64)> = point
                        .buckets
                        .iter()
                        .map(|b| (b.upper_bound, b.cumulative_count))
                        .collect();
                    prop_assert_eq!(buckets, expected_buckets(s));
                    #[allow(clippy::cast_precision_loss)]
                    let count = s.count as f64;
                    prop_assert_eq!(point.count, Some(count));
                    prop_assert_eq!(point.sum.map(canonical_bits), Some(canonical_bits(s.value)));
                    prop_assert_eq!(point.created_ms, s.created_ms);
                }
            }
            Kind::Summary => {
                let points = parsed_family
                    .summary_points()
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(points.len(), generated.series.len());
                for (point, s) in points.iter().zip(&generated.series) {
                    let got: Vec<(f64, u64)> = point
                        .quantiles
                        .iter()
                        .map(|q| (q.quantile, canonical_bits(q.value)))
                        .collect();
                    let want: Vec<(f64, u64)> = s
                        .quantiles
                        .iter()
                        .map(|&(q, v)| (q, canonical_bits(v)))
                        .collect();
                    prop_assert_eq!(got, want);
                    #[allow(clippy::cast_precision_loss)]
                    let count = s.count as f64;
                    prop_assert_eq!(point.count, Some(count));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn text_round_trip((families, layout) in page_model(Format::PrometheusText)) {
        check_round_trip(&families, &layout, Format::PrometheusText)?;
    }

    #[test]
    fn openmetrics_round_trip((families, layout) in page_model(Format::OpenMetrics)) {
        check_round_trip(&families, &layout, Format::OpenMetrics)?;
    }
}

// ---- never panic ---------------------------------------------------------------------------------

/// Parses in both formats, groups whatever parsed, and checks that errors point at real lines.
fn exercise(page: &str) -> Result<(), TestCaseError> {
    let lines = page.split('\n').count();
    for format in [Format::PrometheusText, Format::OpenMetrics] {
        match parse(page, format) {
            Ok(exposition) => {
                for family in &exposition.families {
                    let _ = family.histogram_points();
                    let _ = family.summary_points();
                }
            }
            Err(e) => {
                prop_assert!(
                    e.line >= 1 && e.line <= lines + 1,
                    "{e} for a page of {lines} lines"
                );
                prop_assert!(e.column >= 1);
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }
    Ok(())
}

fn fragment() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(vec![
        "{",
        "}",
        "\"",
        "\\",
        "=",
        ",",
        "#",
        " ",
        "\t",
        "\n",
        "\r\n",
        "# TYPE ",
        "# HELP ",
        "# UNIT ",
        "# EOF",
        "# EOF\n",
        "a",
        "a_bucket",
        "a_total",
        "a_created",
        "a_sum",
        "a_count",
        "le",
        "quantile",
        "=\"",
        "\"}",
        "NaN",
        "+Inf",
        "-inf",
        "1",
        "0.5",
        "1e3",
        "1700000000.5",
        "counter",
        "gauge",
        "histogram",
        "summary",
        "info",
        "stateset",
        "gaugehistogram",
        "untyped",
        "微",
        "\"my.metric\"",
        " # {",
        "x=\"y\"",
    ])
}

fn mutation() -> impl Strategy<Value = (usize, u8, u8)> {
    (any::<usize>(), 0u8..3, any::<u8>())
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        exercise(&String::from_utf8_lossy(&bytes))?;
        let _ = decode_body(&bytes, 1 << 20);
        let mut gzip_looking = vec![0x1f, 0x8b];
        gzip_looking.extend_from_slice(&bytes);
        let _ = decode_body(&gzip_looking, 1 << 20);
    }

    #[test]
    fn syntax_soup_never_panics(parts in proptest::collection::vec(fragment(), 0..120)) {
        exercise(&parts.concat())?;
    }

    #[test]
    fn edited_valid_pages_never_panic(
        (families, layout) in page_model(Format::OpenMetrics),
        edits in proptest::collection::vec(mutation(), 1..8),
    ) {
        let (page, _) = render(&families, &layout, Format::OpenMetrics);
        let mut bytes = page.into_bytes();
        for (at, op, byte) in edits {
            let at = if bytes.is_empty() { 0 } else { at % bytes.len() };
            match op {
                0 if !bytes.is_empty() => { bytes.remove(at); }
                1 => bytes.insert(at, byte),
                _ if !bytes.is_empty() => bytes[at] = byte,
                _ => {}
            }
        }
        exercise(&String::from_utf8_lossy(&bytes))?;
    }
}
