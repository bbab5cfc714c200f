//! The table of tricky cases: each page with the exact parse result (or error) expected,
//! rendered by `common::render` (its doc shows the form). `prometheus_accepts.rs` holds the
//! table of pages Prometheus's own parsers accept.

mod common;

use common::{OM, TEXT, run_table};
use wxcloudrun_exposition::{Format, Limits, parse, parse_with_limits};

/// (name, format, page, expected rendering)
const CASES: &[(&str, Format, &str, &str)] = &[
    ("empty text page", TEXT, "", "duplicates=0\n"),
    (
        "empty OpenMetrics page is truncated",
        OM,
        "",
        "error: line 1, column 1: missing \"# EOF\": the OpenMetrics page is truncated\n",
    ),
    (
        "OpenMetrics page with only EOF",
        OM,
        "# EOF\n",
        "duplicates=0\n",
    ),
    (
        "OpenMetrics EOF without final newline",
        OM,
        "a 1\n# EOF",
        "family a unknown\n  a{} 1.0\nduplicates=0\n",
    ),
    (
        "OpenMetrics without EOF is truncated (error on the line after the last)",
        OM,
        "# TYPE a gauge\na 1\n",
        "error: line 3, column 1: missing \"# EOF\": the OpenMetrics page is truncated\n",
    ),
    (
        "OpenMetrics without EOF or final newline",
        OM,
        "a 1",
        "error: line 2, column 1: missing \"# EOF\": the OpenMetrics page is truncated\n",
    ),
    (
        "OpenMetrics content after EOF",
        OM,
        "# EOF\na 1\n",
        "error: line 2, column 1: content after \"# EOF\"\n",
    ),
    (
        "OpenMetrics blank lines after EOF are tolerated",
        OM,
        "a 1\n# EOF\n\n \n",
        "family a unknown\n  a{} 1.0\nduplicates=0\n",
    ),
    (
        "text format: # EOF is just a comment",
        TEXT,
        "a 1\n# EOF\nb 2\n",
        "family a untyped\n  a{} 1.0\nfamily b untyped\n  b{} 2.0\nduplicates=0\n",
    ),
    (
        "label value escapes",
        TEXT,
        r#"m{a="x\\y",b="q\"uote",c="new\nline",d="\\n"} 1"#,
        "family m untyped\n  m{a=\"x\\\\y\",b=\"q\\\"uote\",c=\"new\\nline\",d=\"\\\\n\"} 1.0\nduplicates=0\n",
    ),
    (
        "unknown escape kept as written",
        TEXT,
        r#"m{a="tab\there"} 1"#,
        "family m untyped\n  m{a=\"tab\\\\there\"} 1.0\nduplicates=0\n",
    ),
    (
        ", } = # { and UTF-8 inside values",
        TEXT,
        r##"m{a="x,y=z",b="}",c="# not a comment",d="{ }",e="微信 ✓"} 1"##,
        "family m untyped\n  m{a=\"x,y=z\",b=\"}\",c=\"# not a comment\",d=\"{ }\",e=\"微信 ✓\"} 1.0\nduplicates=0\n",
    ),
    (
        "colons in metric names (recording rules)",
        TEXT,
        "job:http_requests:rate5m{job=\"api\"} 0.5\n:leading_colon 1\n",
        "family job:http_requests:rate5m untyped\n  job:http_requests:rate5m{job=\"api\"} 0.5\nfamily :leading_colon untyped\n  :leading_colon{} 1.0\nduplicates=0\n",
    ),
    (
        "trailing comma and blanks inside the label set",
        TEXT,
        "m{a=\"b\",} 1\nn{ a = \"b\" ,\tc=\"d\" , } 2\n",
        "family m untyped\n  m{a=\"b\"} 1.0\nfamily n untyped\n  n{a=\"b\",c=\"d\"} 2.0\nduplicates=0\n",
    ),
    (
        "empty label set",
        TEXT,
        "m{} 1\n",
        "family m untyped\n  m{} 1.0\nduplicates=0\n",
    ),
    (
        "quoted UTF-8 metric and label names (Prometheus 3)",
        TEXT,
        "# TYPE \"my.metric\" gauge\n{\"my.metric\", \"error.message\"=\"Not Found\"} 1\n{code=\"200\",\"my.metric\"} 2\n",
        "family my.metric gauge\n  my.metric{error.message=\"Not Found\"} 1.0\n  my.metric{code=\"200\"} 2.0\nduplicates=0\n",
    ),
    (
        "NaN and infinities in the text format",
        TEXT,
        "a NaN\nb +Inf\nc -Inf\nd 1e+00\ne -0.5e-3\n",
        "family a untyped\n  a{} NaN\nfamily b untyped\n  b{} inf\nfamily c untyped\n  c{} -inf\nfamily d untyped\n  d{} 1.0\nfamily e untyped\n  e{} -0.0005\nduplicates=0\n",
    ),
    (
        "OpenMetrics case-insensitive inf and nan",
        OM,
        "a nan\nb inf\nc -Infinity\nd +INF\n# EOF\n",
        "family a unknown\n  a{} NaN\nfamily b unknown\n  b{} inf\nfamily c unknown\n  c{} -inf\nfamily d unknown\n  d{} inf\nduplicates=0\n",
    ),
    (
        "text timestamps are milliseconds",
        TEXT,
        "a 1 1700000000123\nb 2 -5\n",
        "family a untyped\n  a{} 1.0 ts=1700000000123\nfamily b untyped\n  b{} 2.0 ts=-5\nduplicates=0\n",
    ),
    (
        "OpenMetrics timestamps are seconds, returned as milliseconds",
        OM,
        "a 1 1700000000.123\nb 2 1700000000\nc 3 1.7e9\n# EOF\n",
        "family a unknown\n  a{} 1.0 ts=1700000000123\nfamily b unknown\n  b{} 2.0 ts=1700000000000\nfamily c unknown\n  c{} 3.0 ts=1700000000000\nduplicates=0\n",
    ),
    (
        "a fractional timestamp is invalid in the text format",
        TEXT,
        "a 1 1700000000.123\n",
        "error: line 1, column 5: invalid timestamp \"1700000000.123\"\n",
    ),
    (
        "untyped families without TYPE, and a reopened family in the text format",
        TEXT,
        "a 1\nb{x=\"1\"} 2\na{x=\"1\"} 3\n",
        "family a untyped\n  a{} 1.0\n  a{x=\"1\"} 3.0\nfamily b untyped\n  b{x=\"1\"} 2.0\nduplicates=0\n",
    ),
    (
        "OpenMetrics: interleaved families are reopened, as Prometheus reads them",
        OM,
        "a 1\nb 2\na{x=\"1\"} 3\n# EOF\n",
        "family a unknown\n  a{} 1.0\n  a{x=\"1\"} 3.0\nfamily b unknown\n  b{} 2.0\nduplicates=0\n",
    ),
    (
        "HELP escapes: text unescapes \\\\ and \\n only",
        TEXT,
        "# HELP a x\\\\y\\nz \\\"q\\\" \\t\na 1\n",
        "family a untyped help=\"x\\\\y\\nz \\\\\\\"q\\\\\\\" \\\\t\"\n  a{} 1.0\nduplicates=0\n",
    ),
    (
        "HELP escapes: OpenMetrics also unescapes \\\"",
        OM,
        "# HELP a x\\\\y\\nz \\\"q\\\"\na 1\n# EOF\n",
        "family a unknown help=\"x\\\\y\\nz \\\"q\\\"\"\n  a{} 1.0\nduplicates=0\n",
    ),
    (
        "HELP without text, and a family with metadata but no samples",
        TEXT,
        "# HELP a\n# TYPE b counter\n",
        "family a untyped help=\"\"\nfamily b counter\nduplicates=0\n",
    ),
    (
        "CRLF line endings, blank lines, tabs and plain comments",
        TEXT,
        "# a comment\r\n#no space\r\n\r\n# TYPE a gauge\r\n\ta\t1\t123\r\n\n   \n",
        "family a gauge\n  a{} 1.0 ts=123\nduplicates=0\n",
    ),
    (
        "text counter declared with its _total name",
        TEXT,
        "# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\nhttp_requests_total{code=\"200\"} 1027\nhttp_requests_total{code=\"500\"} 3\n",
        "family http_requests_total counter help=\"Requests.\"\n  http_requests_total{code=\"200\"} 1027.0\n  http_requests_total{code=\"500\"} 3.0\nduplicates=0\n",
    ),
    (
        "text: a _created gauge is its own family",
        TEXT,
        "# TYPE a_total counter\na_total 1\n# TYPE a_created gauge\na_created 1.7e9\n",
        "family a_total counter\n  a_total{} 1.0\nfamily a_created gauge\n  a_created{} 1700000000.0\nduplicates=0\n",
    ),
    (
        "OpenMetrics counter: _created becomes the start time, exemplar kept",
        OM,
        "# TYPE rpc counter\n# UNIT rpc requests\n# HELP rpc Calls.\nrpc_total{a=\"1\"} 5 # {trace_id=\"abc\",span_id=\"01\"} 1 1700000000.5\nrpc_created{a=\"1\"} 1699990000.25\nrpc_total{a=\"2\"} 7\nrpc_created{a=\"2\"} 1699990001\n# EOF\n",
        "family rpc counter help=\"Calls.\" unit=\"requests\"\n  rpc_total{a=\"1\"} 5.0 created=1699990000250 # {trace_id=\"abc\",span_id=\"01\"} 1.0 ts=1700000000500\n  rpc_total{a=\"2\"} 7.0 created=1699990001000\nduplicates=0\n",
    ),
    (
        "exemplar without timestamp; the # after a sample is not a comment",
        OM,
        "# TYPE c counter\nc_total 1 # {trace_id=\"a#b\"} 0.5\nd 2 1700000000 # {} 3\n# EOF\n",
        "family c counter\n  c_total{} 1.0 # {trace_id=\"a#b\"} 0.5\nfamily d unknown\n  d{} 2.0 ts=1700000000000 # {} 3.0\nduplicates=0\n",
    ),
    (
        "a trailing comment after a sample is an error",
        TEXT,
        "a 1 # just a comment\n",
        "error: line 1, column 7: expected '{' to start the exemplar's labels\n",
    ),
    (
        "histogram grouping with interleaved label sets and le spellings",
        TEXT,
        "# TYPE h histogram\nh_bucket{m=\"a\",le=\"0.1\"} 3\nh_bucket{m=\"b\",le=\"1\"} 1\nh_bucket{le=\"0.5\",m=\"a\"} 7\nh_bucket{m=\"b\",le=\"1e+01\"} 2\nh_bucket{m=\"a\",le=\"+Inf\"} 10\nh_bucket{m=\"b\",le=\"+Inf\"} 2\nh_sum{m=\"b\"} 4\nh_count{m=\"b\"} 2\nh_sum{m=\"a\"} 2.5\nh_count{m=\"a\"} 10\n",
        "family h histogram\n  h_bucket{m=\"a\",le=\"0.1\"} 3.0\n  h_bucket{m=\"b\",le=\"1\"} 1.0\n  h_bucket{le=\"0.5\",m=\"a\"} 7.0\n  h_bucket{m=\"b\",le=\"1e+01\"} 2.0\n  h_bucket{m=\"a\",le=\"+Inf\"} 10.0\n  h_bucket{m=\"b\",le=\"+Inf\"} 2.0\n  h_sum{m=\"b\"} 4.0\n  h_count{m=\"b\"} 2.0\n  h_sum{m=\"a\"} 2.5\n  h_count{m=\"a\"} 10.0\n  point{m=\"a\"} buckets=[0.1:3.0,0.5:7.0,inf:10.0] count=Some(10.0) sum=Some(2.5)\n  point{m=\"b\"} buckets=[1.0:1.0,10.0:2.0,inf:2.0] count=Some(2.0) sum=Some(4.0)\nduplicates=0\n",
    ),
    (
        "histogram lines of one point in another label order, or with an empty label",
        TEXT,
        "# TYPE h histogram\nh_bucket{m=\"a\",n=\"x\",le=\"1\"} 1\nh_bucket{n=\"x\",m=\"a\",le=\"+Inf\"} 2\nh_sum{m=\"a\",e=\"\",n=\"x\"} 3\nh_count{m=\"a\",n=\"x\"} 2\nh_bucket{m=\"a\",n=\"y\",le=\"+Inf\"} 5\nh_count{m=\"a\",n=\"y\"} 5\n",
        "family h histogram\n  h_bucket{m=\"a\",n=\"x\",le=\"1\"} 1.0\n  h_bucket{n=\"x\",m=\"a\",le=\"+Inf\"} 2.0\n  h_sum{m=\"a\",e=\"\",n=\"x\"} 3.0\n  h_count{m=\"a\",n=\"x\"} 2.0\n  h_bucket{m=\"a\",n=\"y\",le=\"+Inf\"} 5.0\n  h_count{m=\"a\",n=\"y\"} 5.0\n  point{m=\"a\",n=\"x\"} buckets=[1.0:1.0,inf:2.0] count=Some(2.0) sum=Some(3.0)\n  point{m=\"a\",n=\"y\"} buckets=[inf:5.0] count=Some(5.0) sum=None\nduplicates=0\n",
    ),
    (
        "histogram without _count cannot become OTLP; without _sum it can",
        TEXT,
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\n# TYPE g histogram\ng_bucket{le=\"1\"} 1\ng_count 1\n",
        "family h histogram\n  h_bucket{le=\"1\"} 1.0\n  h_bucket{le=\"+Inf\"} 1.0\n  h_sum{} 1.0\n  point{} buckets=[1.0:1.0,inf:1.0] count=None sum=Some(1.0)\nfamily g histogram\n  g_bucket{le=\"1\"} 1.0\n  g_count{} 1.0\n  point{} buckets=[1.0:1.0] count=Some(1.0) sum=None\nduplicates=0\n",
    ),
    (
        "OpenMetrics histogram with _created and a bucket exemplar",
        OM,
        "# TYPE h histogram\nh_bucket{le=\"0.1\"} 3 # {trace_id=\"t\"} 0.05 1700000000.001\nh_bucket{le=\"+Inf\"} 4\nh_count 4\nh_sum 1.5\nh_created 1699999999.999\n# EOF\n",
        "family h histogram\n  h_bucket{le=\"0.1\"} 3.0 created=1699999999999 # {trace_id=\"t\"} 0.05 ts=1700000000001\n  h_bucket{le=\"+Inf\"} 4.0 created=1699999999999\n  h_count{} 4.0 created=1699999999999\n  h_sum{} 1.5 created=1699999999999\n  point{} buckets=[0.1:3.0,inf:4.0] count=Some(4.0) sum=Some(1.5) created=1699999999999\nduplicates=0\n",
    ),
    (
        "summary grouped by label set, NaN quantiles",
        TEXT,
        "# TYPE s summary\ns{quantile=\"0.5\",m=\"a\"} 1\ns{quantile=\"0.99\",m=\"a\"} NaN\ns_sum{m=\"a\"} 3\ns_count{m=\"a\"} 2\ns{m=\"b\",quantile=\"0.5\"} 4\n",
        "family s summary\n  s{quantile=\"0.5\",m=\"a\"} 1.0\n  s{quantile=\"0.99\",m=\"a\"} NaN\n  s_sum{m=\"a\"} 3.0\n  s_count{m=\"a\"} 2.0\n  s{m=\"b\",quantile=\"0.5\"} 4.0\n  point{m=\"a\"} quantiles=[0.5:1.0,0.99:NaN] count=Some(2.0) sum=Some(3.0)\n  point{m=\"b\"} quantiles=[0.5:4.0] count=None sum=None\nduplicates=0\n",
    ),
    (
        "OpenMetrics info, stateset and gaugehistogram",
        OM,
        "# TYPE build info\nbuild_info{version=\"1.2\"} 1\n# TYPE state stateset\nstate{state=\"on\"} 1\nstate{state=\"off\"} 0\n# TYPE q gaugehistogram\nq_bucket{le=\"1\"} 2\nq_bucket{le=\"+Inf\"} 3\nq_gcount 3\nq_gsum 2\n# EOF\n",
        "family build info\n  build_info{version=\"1.2\"} 1.0\nfamily state stateset\n  state{state=\"on\"} 1.0\n  state{state=\"off\"} 0.0\nfamily q gaugehistogram\n  q_bucket{le=\"1\"} 2.0\n  q_bucket{le=\"+Inf\"} 3.0\n  q_gcount{} 3.0\n  q_gsum{} 2.0\n  point{} buckets=[1.0:2.0,inf:3.0] count=Some(3.0) sum=Some(2.0)\nduplicates=0\n",
    ),
    (
        "duplicate series: first kept, order and empty labels ignored",
        TEXT,
        "a{x=\"1\",y=\"2\"} 1\na{y=\"2\",x=\"1\"} 2\nb 1\nb{z=\"\"} 2\nb{z=\"3\"} 3\n",
        "family a untyped\n  a{x=\"1\",y=\"2\"} 1.0\nfamily b untyped\n  b{} 1.0\n  b{z=\"3\"} 3.0\nduplicates=2\n",
    ),
    (
        "duplicate label name",
        TEXT,
        "m{a=\"1\",b=\"2\",a=\"3\"} 1\n",
        "error: line 1, column 1: duplicate label name \"a\"\n",
    ),
    (
        "duplicate label name in an unsorted set",
        TEXT,
        "m{b=\"1\",a=\"2\",b=\"3\"} 1\n",
        "error: line 1, column 1: duplicate label name \"b\"\n",
    ),
    (
        "duplicate label name next to each other",
        TEXT,
        "m{a=\"1\",a=\"2\",b=\"3\"} 1\n",
        "error: line 1, column 1: duplicate label name \"a\"\n",
    ),
    (
        "one series however its labels are ordered (last label first, middle, last)",
        TEXT,
        "m{a=\"1\",c=\"2\",b=\"3\"} 1\nm{b=\"3\",a=\"1\",c=\"2\"} 2\nm{c=\"2\",b=\"3\",a=\"1\"} 3\nm{b=\"3\",c=\"2\",a=\"1\"} 4\nm{a=\"1\",b=\"3\",c=\"2\",d=\"\"} 5\nm{a=\"1\",b=\"3\",c=\"4\"} 6\n",
        "family m untyped\n  m{a=\"1\",c=\"2\",b=\"3\"} 1.0\n  m{a=\"1\",b=\"3\",c=\"4\"} 6.0\nduplicates=4\n",
    ),
    (
        "unterminated label value",
        TEXT,
        "m{a=\"b} 1\n",
        "error: line 1, column 5: unterminated quoted string\n",
    ),
    (
        "unquoted label value",
        TEXT,
        "m{a=b} 1\n",
        "error: line 1, column 5: expected '\"' to start the label value\n",
    ),
    (
        "label without =",
        TEXT,
        "m{a} 1\n",
        "error: line 1, column 4: expected '=' after label name\n",
    ),
    (
        "empty label between commas",
        TEXT,
        "m{,} 1\n",
        "error: line 1, column 3: invalid label name\n",
    ),
    (
        "label set not closed",
        TEXT,
        "m{a=\"1\"\n",
        "error: line 1, column 8: expected ',' or '}' after a label\n",
    ),
    (
        "invalid metric name character",
        TEXT,
        "my-metric 1\n",
        "error: line 1, column 3: invalid character in metric name\n",
    ),
    (
        "missing metric name",
        TEXT,
        "{a=\"b\"} 1\n",
        "error: line 1, column 1: missing metric name\n",
    ),
    (
        "missing value",
        TEXT,
        "# TYPE a gauge\na\n",
        "error: line 2, column 2: missing sample value\n",
    ),
    (
        "invalid value",
        TEXT,
        "a 1,5\n",
        "error: line 1, column 3: invalid sample value \"1,5\"\n",
    ),
    (
        "text after the timestamp",
        TEXT,
        "a 1 2 3\n",
        "error: line 1, column 7: unexpected text after the sample\n",
    ),
    (
        "unknown type",
        TEXT,
        "# TYPE a countr\n",
        "error: line 1, column 10: unknown metric type \"countr\"\n",
    ),
    (
        "second TYPE line before any sample: the last one counts",
        TEXT,
        "# TYPE a gauge\n# TYPE a counter\n",
        "family a counter\nduplicates=0\n",
    ),
    (
        "TYPE after samples applies to what follows; an empty late family is left out",
        TEXT,
        "a 1\n# TYPE a gauge\n",
        "family a untyped\n  a{} 1.0\nduplicates=0\n",
    ),
    (
        "a sample named like a family whose type has no such sample is its own untyped family",
        TEXT,
        "# TYPE h histogram\nh 1\nh_bucket{le=\"+Inf\"} 1\nh_count 1\nh{x=\"2\"} 2\n",
        "family h histogram\n  h_bucket{le=\"+Inf\"} 1.0\n  h_count{} 1.0\n  point{} buckets=[inf:1.0] count=Some(1.0) sum=None\nfamily h untyped\n  h{} 1.0\n  h{x=\"2\"} 2.0\nduplicates=0\n",
    ),
    (
        "text after # EOF on its line",
        OM,
        "# EOF now\n",
        "error: line 1, column 7: unexpected text after \"# EOF\"\n",
    ),
    (
        "# UNIT is a comment in the text format",
        TEXT,
        "# UNIT a seconds\na 1\n",
        "family a untyped\n  a{} 1.0\nduplicates=0\n",
    ),
    (
        "OpenMetrics HELP after samples is accepted, as Prometheus does",
        OM,
        "a 1\n# HELP a late\n# EOF\n",
        "family a unknown help=\"late\"\n  a{} 1.0\nduplicates=0\n",
    ),
    (
        "text HELP after samples is accepted",
        TEXT,
        "a 1\n# HELP a late\n",
        "family a untyped help=\"late\"\n  a{} 1.0\nduplicates=0\n",
    ),
    (
        "OpenMetrics second UNIT: the last one counts",
        OM,
        "# UNIT a seconds\n# UNIT a bytes\n# EOF\n",
        "family a unknown unit=\"bytes\"\nduplicates=0\n",
    ),
    (
        "OpenMetrics metadata for an earlier family",
        OM,
        "# TYPE a gauge\n# TYPE b gauge\n# HELP a late\n# EOF\n",
        "family a gauge help=\"late\"\nfamily b gauge\nduplicates=0\n",
    ),
    (
        "quoted metric name twice",
        TEXT,
        "{\"a\",\"b\"} 1\n",
        "error: line 1, column 6: unexpected quoted metric name in this label set\n",
    ),
    (
        "quoted metric name after a bare one",
        TEXT,
        "a{\"b\"} 1\n",
        "error: line 1, column 3: unexpected quoted metric name in this label set\n",
    ),
    (
        "no blank between labels and value",
        TEXT,
        "a{b=\"c\"}1\n",
        "family a untyped\n  a{b=\"c\"} 1.0\nduplicates=0\n",
    ),
    (
        "a blank is still needed between a bare name and its value",
        TEXT,
        "a1\n",
        "error: line 1, column 3: missing sample value\n",
    ),
    (
        "error line numbers count CRLF lines and blank lines",
        TEXT,
        "a 1\r\n\r\n\r\nb{\n",
        "error: line 4, column 3: unterminated label set: expected '}'\n",
    ),
    (
        "exemplar timestamp must be a number",
        OM,
        "# TYPE a counter\na_total 1 # {a=\"b\"} 0.5 NaN\n# EOF\n",
        "error: line 2, column 25: invalid timestamp \"NaN\"\n",
    ),
    (
        "exemplar value needs a blank after the label set",
        OM,
        "# TYPE a histogram\na_bucket{le=\"+Inf\"} 1 # {}1\n# EOF\n",
        "error: line 2, column 27: expected the exemplar value after its labels\n",
    ),
    (
        "OpenMetrics HELP keeps unknown escapes, label values too",
        OM,
        "# TYPE a counter\n# HELP a he\\n\\\\l\\tp\na_total{foo=\"b\\\"a\\nr\"} 1\na_total{foo=\"b\\\\a\\z\"} 2\n# EOF\n",
        "family a counter help=\"he\\n\\\\l\\\\tp\"\n  a_total{foo=\"b\\\"a\\nr\"} 1.0\n  a_total{foo=\"b\\\\a\\\\z\"} 2.0\nduplicates=0\n",
    ),
    (
        "_created with no valid time gives no start time (Prometheus keeps the page)",
        OM,
        "# TYPE c counter\nc_total 1\nc_created NaN\nc_total{a=\"b\"} 2\nc_created{a=\"b\"} +Inf\n# EOF\n",
        "family c counter\n  c_total{} 1.0\n  c_total{a=\"b\"} 2.0\nduplicates=0\n",
    ),
];

#[test]
fn tricky_cases() {
    run_table(CASES);
}

#[test]
fn nan_is_never_the_stale_marker() {
    const STALE: u64 = 0x7ff0_0000_0000_0002;
    let page = "a NaN\nb nan\nc -NaN\n";
    let exposition = parse(page, TEXT).unwrap();
    for family in &exposition.families {
        let bits = family.samples[0].value.to_bits();
        assert_eq!(bits, f64::NAN.to_bits(), "{}", family.name);
        assert_ne!(bits, STALE);
    }
}

#[test]
fn values_borrow_from_the_page_unless_escaped() {
    let exposition = parse("m{a=\"plain\",b=\"esc\\\"aped\"} 1\n", TEXT).unwrap();
    let labels = &exposition.families[0].samples[0].labels;
    assert!(labels[0].value.is_borrowed() && labels[0].value == "plain");
    assert!(!labels[1].value.is_borrowed() && labels[1].value == "esc\"aped");
    assert!(labels[1].name.is_borrowed() && exposition.families[0].name.is_borrowed());
}

#[test]
fn limits_fail_with_clear_errors() {
    let limits = Limits {
        max_line_bytes: 16,
        max_labels_per_series: 2,
        max_samples: 3,
        max_families: 2,
        max_exemplar_label_chars: 8,
        max_body_bytes: 64,
    };
    let cases = [
        (
            "a{b=\"0123456789\"} 1\n",
            "line 1, column 1: line is longer than the limit of 16 bytes",
        ),
        (
            "a{b=\"\",c=\"\",d=\"\"} 1\n",
            "line 1, column 1: line is longer than the limit of 16 bytes",
        ),
        (
            "a{b=\"\",c=\"\",d=\"\"}\n",
            "line 1, column 1: line is longer than the limit of 16 bytes",
        ),
        (
            "a{x=\"1\"} 1\na{x=\"2\"} 1\na{x=\"3\"} 1\na{x=\"4\"} 1\n",
            "line 4, column 1: more than 3 samples in the page",
        ),
        (
            "a 1\nb 1\nc 1\n",
            "line 3, column 1: more than 2 metric families in the page",
        ),
        (
            &"a 1\n".repeat(17),
            "line 1, column 1: page is larger than the limit of 64 bytes",
        ),
    ];
    for (page, expected) in cases {
        let error = parse_with_limits(page, TEXT, &limits).unwrap_err();
        assert_eq!(error.to_string(), expected, "{page:?}");
    }
    let limits = Limits {
        max_labels_per_series: 2,
        max_exemplar_label_chars: 8,
        ..Limits::default()
    };
    let error = parse_with_limits("a{b=\"\",c=\"\",d=\"\"} 1\n", TEXT, &limits).unwrap_err();
    assert_eq!(
        error.to_string(),
        "line 1, column 13: more than 2 labels in one label set"
    );
    // An exemplar over its limit is dropped, its sample and the page kept.
    let page =
        parse_with_limits("c_total 1 # {trace_id=\"0123\"} 1\n# EOF\n", OM, &limits).unwrap();
    assert_eq!(page.families[0].samples[0].value, 1.0);
    assert!(page.families[0].samples[0].exemplar.is_none());
    assert_eq!(page.exemplars_dropped, 1);
}

#[test]
fn content_type_negotiation() {
    assert_eq!(
        Format::from_content_type("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        OM
    );
    assert_eq!(
        Format::from_content_type("Application/OpenMetrics-Text"),
        OM
    );
    assert_eq!(
        Format::from_content_type("text/plain; version=0.0.4; charset=utf-8"),
        TEXT
    );
    assert_eq!(Format::from_content_type("application/json"), TEXT);
    assert!(wxcloudrun_exposition::ACCEPT_HEADER.starts_with("application/openmetrics-text"));
}

#[test]
fn owned_copy_outlives_the_page() {
    let owned = {
        let page = String::from("m{a=\"x\\\\y\"} 1\n");
        parse(&page, TEXT).unwrap().into_owned()
    };
    assert_eq!(owned.families[0].samples[0].label("a"), Some("x\\y"));
    assert_eq!(owned.sample_count(), 1);
    assert!(owned.family("m").is_some());
}

#[test]
fn grouping_errors_are_reported() {
    use wxcloudrun_exposition::GroupError;

    fn family(page: &str) -> wxcloudrun_exposition::MetricFamily<'_> {
        parse(page, TEXT)
            .unwrap()
            .families
            .into_iter()
            .next()
            .unwrap()
    }
    let gauge = family("a 1\n");
    assert_eq!(
        gauge.histogram_points().unwrap_err(),
        GroupError::WrongType {
            family: "a".into(),
            expected: "histogram"
        }
    );
    assert_eq!(
        gauge.summary_points().unwrap_err().to_string(),
        "metric family \"a\" is not a summary"
    );
    // A bucket or quantile without a usable bound is left out of the points, not an error: the
    // rest of the family stays (Prometheus stores every sample of it).
    let no_le = family(
        "# TYPE h histogram\nh_bucket 1\nh_bucket{le=\"fast\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_count 2\n",
    );
    let points = no_le.histogram_points().unwrap();
    assert_eq!(points.len(), 1);
    assert_eq!(points[0].buckets.len(), 1);
    assert_eq!(points[0].count, Some(2.0));
    let left_out: Vec<Option<&str>> = no_le
        .samples_without_bound()
        .map(|s| s.label("le"))
        .collect();
    assert_eq!(left_out, [None, Some("fast")]);
    // NaN is a number to Prometheus (`le="NaN"` is stored normalised), so it is a bound here; no
    // OTLP bucket can hold it.
    let nan_le = family("# TYPE h histogram\nh_bucket{le=\"nan\"} 1\nh_count 1\n");
    assert!(nan_le.samples_without_bound().next().is_none());
    assert!(
        nan_le.histogram_points().unwrap()[0].buckets[0]
            .upper_bound
            .is_nan()
    );
    let bad_quantile =
        family("# TYPE s summary\ns{quantile=\"high\"} 1\ns{quantile=\"0.5\"} 2\ns 3\ns_count 4\n");
    let points = bad_quantile.summary_points().unwrap();
    assert_eq!(points.len(), 1);
    assert_eq!(points[0].quantiles.len(), 1);
    assert_eq!(points[0].count, Some(4.0));
    assert_eq!(bad_quantile.samples_without_bound().count(), 2);
    // Other types have no bounds to lack.
    assert_eq!(gauge.samples_without_bound().count(), 0);

    // Buckets stay as written, cumulative: what a decreasing count or an odd bound means is the
    // consumer's rule (the sidecar's OTLP exporter clamps a decrease to 0).
    let buckets = |page: &str| -> Vec<(f64, f64)> {
        family(page).histogram_points().unwrap()[0]
            .buckets
            .iter()
            .map(|b| (b.upper_bound, b.cumulative_count))
            .collect()
    };
    assert_eq!(
        buckets("# TYPE h histogram\nh_bucket{le=\"1\"} 5\nh_bucket{le=\"2\"} 4\nh_count 5\n"),
        [(1.0, 5.0), (2.0, 4.0)]
    );
    assert_eq!(
        buckets("# TYPE h histogram\nh_bucket{le=\"-Inf\"} 0\nh_bucket{le=\"1\"} 0.5\nh_count 1\n"),
        [(f64::NEG_INFINITY, 0.0), (1.0, 0.5)]
    );
    // `le="1"` and `le="1.0"` are one series: the second is a duplicate.
    let one_bound =
        family("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"1.0\"} 1\nh_count 1\n");
    assert_eq!(one_bound.histogram_points().unwrap()[0].buckets.len(), 1);
    let nan_count = family("# TYPE h histogram\nh_count NaN\n")
        .histogram_points()
        .unwrap();
    assert!(nan_count[0].count.unwrap().is_nan());
}

#[test]
fn histogram_without_buckets_is_a_point_with_count_and_sum() {
    let exposition = parse("# TYPE h histogram\nh_count 3\nh_sum 1\n", TEXT).unwrap();
    let point = &exposition.families[0].histogram_points().unwrap()[0];
    assert!(point.buckets.is_empty());
    assert_eq!((point.count, point.sum), (Some(3.0), Some(1.0)));
}

#[test]
fn exemplars_prometheus_would_not_store_are_dropped_and_their_samples_kept() {
    let exemplar_of = |page: &str| {
        let exposition = parse(page, OM).unwrap();
        let sample = &exposition.families[0].samples[0];
        assert_eq!(sample.value, 1.0, "{page}");
        (
            sample.exemplar.clone().map(|e| e.into_owned()),
            exposition.exemplars_dropped,
        )
    };
    let page = |labels: &str| {
        format!("# TYPE c counter\nc_total 1 # {{{labels}}} 1 1\nc_total{{x=\"y\"}} 1\n# EOF\n")
    };
    // 128 code points: name "a" (1) + a snowman (3 bytes, 1 code point) and 126 more.
    let value = format!("☃{}", "x".repeat(126));
    let (exemplar, dropped) = exemplar_of(&page(&format!("a=\"{value}\"")));
    let exemplar = exemplar.expect("kept at the limit");
    assert_eq!(exemplar.labels[0].value, value);
    assert_eq!((exemplar.timestamp_ms, dropped), (Some(1000), 0));
    // One more, or combining marks (code points of their own): dropped.
    assert_eq!(exemplar_of(&page(&format!("a=\"{value}x\""))), (None, 1));
    let marks = "e\u{301}".repeat(64);
    assert_eq!(exemplar_of(&page(&format!("a=\"{marks}\""))), (None, 1));
    // Labels with an empty value are not counted, as Prometheus leaves them out first.
    let (kept, dropped) = exemplar_of(&page(&format!("a=\"{value}\",{}=\"\"", "e".repeat(40))));
    assert_eq!((kept.map(|e| e.labels.len()), dropped), (Some(2), 0));
    // A label named twice (Prometheus: `label name "t" is not unique`), but not twice empty.
    assert_eq!(exemplar_of(&page("t=\"1\",t=\"2\"")), (None, 1));
    assert_eq!(exemplar_of(&page("t=\"1\",u=\"2\",t=\"1\"")), (None, 1));
    let (kept, dropped) = exemplar_of(&page("t=\"1\",u=\"\",u=\"\""));
    assert_eq!((kept.is_some(), dropped), (true, 0));
}

#[test]
fn a_realistic_openmetrics_page() {
    let page = "\
# HELP go_gc_duration_seconds A summary of the GC invocation durations.
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile=\"0.0\"} 0.0133
go_gc_duration_seconds{quantile=\"1.0\"} 0.0213
go_gc_duration_seconds_sum 56.12
go_gc_duration_seconds_count 7476.0
# TYPE batch_ms summary
batch_ms{quantile=\"0.5\"} NaN
batch_ms_sum 871.5
batch_ms_count 229.0
# TYPE process_cpu_seconds counter
# UNIT process_cpu_seconds seconds
process_cpu_seconds_total 29323.4
# TYPE process_virtual_memory_bytes gauge
process_virtual_memory_bytes 2.478268416e+09
# TYPE chunk_ops counter
chunk_ops_total{type=\"clone\"} 28.0
chunk_ops_total{type=\"drop\"} 1.345758e+06
# HELP foo histogram Testing histogram buckets
# TYPE foo histogram
foo_bucket{le=\"0.0\"} 0.0
foo_bucket{le=\"1e-05\"} 0.0
foo_bucket{le=\"0.1\"} 8.0
foo_bucket{le=\"1.0\"} 10.0
foo_bucket{le=\"1.55555555555552e+06\"} 17.0
foo_bucket{le=\"1e+23\"} 17.0
foo_bucket{le=\"+Inf\"} 17.0
foo_count 17.0
foo_sum 324789.3
foo_created 1.520430000123e+09
# EOF
";
    let exposition = parse(page, OM).unwrap();
    let names: Vec<&str> = exposition
        .families
        .iter()
        .map(|f| f.name.as_ref())
        .collect();
    assert_eq!(
        names,
        [
            "go_gc_duration_seconds",
            "batch_ms",
            "process_cpu_seconds",
            "process_virtual_memory_bytes",
            "chunk_ops",
            "foo"
        ]
    );
    let gc = exposition.families[0].summary_points().unwrap();
    assert_eq!(gc[0].quantiles.len(), 2);
    assert_eq!((gc[0].count, gc[0].sum), (Some(7476.0), Some(56.12)));
    let batch = exposition.families[1].summary_points().unwrap();
    assert!(batch[0].quantiles[0].value.is_nan());
    assert_eq!(exposition.families[2].unit(), Some("seconds"));
    assert_eq!(exposition.families[3].samples[0].value, 2_478_268_416.0);
    let foo = &exposition.families[5];
    assert_eq!(foo.help(), Some("histogram Testing histogram buckets"));
    let point = &foo.histogram_points().unwrap()[0];
    // `1.520430000123e+09` s has an exponent, so it goes through f64: 1520430000123 ms.
    assert_eq!(point.created_ms, Some(1_520_430_000_123));
    let buckets: Vec<(f64, f64)> = point
        .buckets
        .iter()
        .map(|b| (b.upper_bound, b.cumulative_count))
        .collect();
    assert_eq!(
        buckets,
        [
            (0.0, 0.0),
            (1e-5, 0.0),
            (0.1, 8.0),
            (1.0, 10.0),
            (1.55555555555552e6, 17.0),
            (1e23, 17.0),
            (f64::INFINITY, 17.0)
        ]
    );
    assert_eq!((point.count, point.sum), (Some(17.0), Some(324_789.3)));
}
