//! Pages the Prometheus server's own parsers accept (`model/textparse`: the text lexer, where
//! blanks may stand between any two tokens, and the OpenMetrics parser, which checks tokens but
//! never how a page's families are laid out), each with the exact families and samples this
//! parser must return. A page Prometheus keeps must never cost a scrape here.
//!
//! The pages are written for this table from the parsers' rules; where Prometheus's acceptance
//! is an accident that its own tests call unintended, the case says so and what is chosen. Then
//! the leniencies this parser keeps where Prometheus rejects, and the strictness it shares.
//!
//! Renderings: see `common/mod.rs`.

mod common;

use common::{OM, TEXT, run_table};
use wxcloudrun_exposition::{Format, MetricType, decode_body, parse};

/// (name, format, page, expected rendering): accepted by Prometheus, accepted here.
const ACCEPTED: &[(&str, Format, &str, &str)] = &[
    // ---- the text format: blanks and separators ------------------------------------------------
    (
        "blanks between the metric name and `{`",
        TEXT,
        "http_requests_total {code=\"200\"} 7\nhttp_requests_total\t\t{code=\"500\"} 1\n",
        "family http_requests_total untyped\n  http_requests_total{code=\"200\"} 7.0\n  http_requests_total{code=\"500\"} 1.0\nduplicates=0\n",
    ),
    (
        "blanks around every label token, a trailing comma after a blank",
        TEXT,
        "m{ a = \"x\" ,\tb= \"y\" , } 1\nm { c =\"z\"} 2\nm{ } 3\n",
        "family m untyped\n  m{a=\"x\",b=\"y\"} 1.0\n  m{c=\"z\"} 2.0\n  m{} 3.0\nduplicates=0\n",
    ),
    (
        "no blank between `}` and the value, with and without a timestamp",
        TEXT,
        "m{a=\"x\"}1\nm{a=\"y\"}2 1700000000000\nn{}3\nq {a=\"z\"}\t4\n",
        "family m untyped\n  m{a=\"x\"} 1.0\n  m{a=\"y\"} 2.0 ts=1700000000000\nfamily n untyped\n  n{} 3.0\nfamily q untyped\n  q{a=\"z\"} 4.0\nduplicates=0\n",
    ),
    (
        // Prometheus's test says "this appears to be unintended"; its reading is unambiguous (a
        // label value is quoted), so it is accepted here too, in the text format only.
        "labels without a comma between them (Prometheus: probably unintended; accepted)",
        TEXT,
        "m{a=\"x\" b=\"y\"} 1\nm{a=\"x\"c=\"z\"} 2\nm { a = \"1\" \"d.e\" = \"2\" } 3\n",
        "family m untyped\n  m{a=\"x\",b=\"y\"} 1.0\n  m{a=\"x\",c=\"z\"} 2.0\n  m{a=\"1\",d.e=\"2\"} 3.0\nduplicates=0\n",
    ),
    (
        "blanks and tabs around the value and the timestamp, a blank at the end",
        TEXT,
        "go_goroutines 33  \t123123\nup\t1 \nlast 2\t\n",
        "family go_goroutines untyped\n  go_goroutines{} 33.0 ts=123123\nfamily up untyped\n  up{} 1.0\nfamily last untyped\n  last{} 2.0\nduplicates=0\n",
    ),
    (
        "Go ParseFloat values",
        TEXT,
        "a .5\nb 5.\nc -0\nd 1E3\ne +Inf\nf inf\ng Infinity\nh -infinity\ni nan\nj NaN\nk 0007\n",
        "family a untyped\n  a{} 0.5\nfamily b untyped\n  b{} 5.0\nfamily c untyped\n  c{} -0.0\nfamily d untyped\n  d{} 1000.0\nfamily e untyped\n  e{} inf\nfamily f untyped\n  f{} inf\nfamily g untyped\n  g{} inf\nfamily h untyped\n  h{} -inf\nfamily i untyped\n  i{} NaN\nfamily j untyped\n  j{} NaN\nfamily k untyped\n  k{} 7.0\nduplicates=0\n",
    ),
    (
        "quoted UTF-8 names anywhere in the set, with escapes; metadata with a quoted name",
        TEXT,
        "# HELP \"http.server.duration\" Time.\n# TYPE \"http.server.duration\" gauge\n{\"http.server.duration\", \"url.path\"=\"/a\"} 1\n{ \"url.path\" = \"/b\" , \"http.server.duration\" } 2\n{\"with \\\"quotes\\\" and \\n\", \"k\\\\\"=\"v\"} 3\n",
        "family http.server.duration gauge help=\"Time.\"\n  http.server.duration{url.path=\"/a\"} 1.0\n  http.server.duration{url.path=\"/b\"} 2.0\nfamily with \"quotes\" and \n untyped\n  with \"quotes\" and \n{k\\=\"v\"} 3.0\nduplicates=0\n",
    ),
    (
        "an empty label value is no label (one series with the bare one)",
        TEXT,
        "m{a=\"\"} 1\nm 2\nm{a=\"\",b=\"1\"} 3\n",
        "family m untyped\n  m{a=\"\"} 1.0\n  m{a=\"\",b=\"1\"} 3.0\nduplicates=1\n",
    ),
    (
        "NUL bytes inside label values and help text",
        TEXT,
        "# HELP m foo\u{0}bar\nm{a=\"abc\u{0}\"} 1\n",
        "family m untyped help=\"foo\\0bar\"\n  m{a=\"abc\\0\"} 1.0\nduplicates=0\n",
    ),
    (
        // The text lexer reads NUL where a line starts as the end of its input: the page so far
        // is kept, the rest never read. Matched, not an error: the scrape is not lost.
        "a NUL byte where a line starts ends the page, as it ends Prometheus's",
        TEXT,
        "a 1\n\u{0}b 2\nthis is { not a sample\n",
        "family a untyped\n  a{} 1.0\nduplicates=0\n",
    ),
    // ---- the text format: comments and metadata ------------------------------------------------
    (
        "`# HELP` / `# TYPE` without a blank after the keyword are comments",
        TEXT,
        "# HELP\n# TYPE\n# HELPER text\n#HELP a b\n# Hrandom\n#\n#   \n# TYPEd\na 1\n",
        "family a untyped\n  a{} 1.0\nduplicates=0\n",
    ),
    (
        "HELP with no text, one trailing blank, or a text starting with a blank",
        TEXT,
        "# HELP nohelp1\n# HELP nohelp2 \n# HELP spaced   two blanks kept\n# HELP tabbed\ttab\n",
        "family nohelp1 untyped help=\"\"\nfamily nohelp2 untyped help=\"\"\nfamily spaced untyped help=\"  two blanks kept\"\nfamily tabbed untyped help=\"tab\"\nduplicates=0\n",
    ),
    (
        "blanks (spaces, tabs) between `#` and the keyword, and after it",
        TEXT,
        "#\tTYPE a gauge\n# \t HELP a  \tTime.\n#  TYPE\t b counter\na 1\nb 2\n",
        "family a gauge help=\" \\tTime.\"\n  a{} 1.0\nfamily b counter\n  b{} 2.0\nduplicates=0\n",
    ),
    (
        // Prometheus drops the one character after the name unread, whatever it is.
        "the character after a HELP name separates it from the text, whatever it is",
        TEXT,
        "# HELP name-with dash\n# HELP other{x\nname 1\n",
        "family name untyped help=\"with dash\"\n  name{} 1.0\nfamily other untyped help=\"x\"\nduplicates=0\n",
    ),
    (
        "HELP after TYPE, HELP after the samples, comments between samples",
        TEXT,
        "# TYPE c_total counter\n# HELP c_total Help after type.\nc_total{a=\"1\"} 1\n# a comment # TYPE x gauge\nc_total{a=\"2\"} 2\n# HELP c_total Help again, after the samples.\n",
        "family c_total counter help=\"Help again, after the samples.\"\n  c_total{a=\"1\"} 1.0\n  c_total{a=\"2\"} 2.0\nduplicates=0\n",
    ),
    (
        "two registries concatenated: the same families again, with their metadata",
        TEXT,
        "# HELP rpc_total Calls.\n# TYPE rpc_total counter\nrpc_total{lib=\"a\"} 1\n# HELP up Up.\n# TYPE up gauge\nup{lib=\"a\"} 1\n# HELP rpc_total Calls.\n# TYPE rpc_total counter\nrpc_total{lib=\"b\"} 2\n# HELP up Up.\n# TYPE up gauge\nup{lib=\"b\"} 1\n",
        "family rpc_total counter help=\"Calls.\"\n  rpc_total{lib=\"a\"} 1.0\n  rpc_total{lib=\"b\"} 2.0\nfamily up gauge help=\"Up.\"\n  up{lib=\"a\"} 1.0\n  up{lib=\"b\"} 1.0\nduplicates=0\n",
    ),
    (
        "two registries concatenated, exposing the same series: the first is kept",
        TEXT,
        "# TYPE process_open_fds gauge\nprocess_open_fds 9\n# TYPE process_open_fds gauge\nprocess_open_fds 10\n",
        "family process_open_fds gauge\n  process_open_fds{} 9.0\nduplicates=1\n",
    ),
    (
        "a histogram concatenated from two registries groups as one",
        TEXT,
        "# TYPE h histogram\nh_bucket{lib=\"a\",le=\"1\"} 1\nh_bucket{lib=\"a\",le=\"+Inf\"} 2\nh_count{lib=\"a\"} 2\n# TYPE g gauge\ng 0\n# TYPE h histogram\nh_bucket{lib=\"b\",le=\"1\"} 3\nh_bucket{lib=\"b\",le=\"+Inf\"} 3\nh_count{lib=\"b\"} 3\n",
        "family h histogram\n  h_bucket{lib=\"a\",le=\"1\"} 1.0\n  h_bucket{lib=\"a\",le=\"+Inf\"} 2.0\n  h_count{lib=\"a\"} 2.0\n  h_bucket{lib=\"b\",le=\"1\"} 3.0\n  h_bucket{lib=\"b\",le=\"+Inf\"} 3.0\n  h_count{lib=\"b\"} 3.0\n  point{lib=\"a\"} buckets=[1.0:1.0,inf:2.0] count=Some(2.0) sum=None\n  point{lib=\"b\"} buckets=[1.0:3.0,inf:3.0] count=Some(3.0) sum=None\nfamily g gauge\n  g{} 0.0\nduplicates=0\n",
    ),
    (
        "a family's samples interleaved with another's",
        TEXT,
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\n# TYPE other gauge\nother 5\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n",
        "family h histogram\n  h_bucket{le=\"1\"} 1.0\n  h_bucket{le=\"+Inf\"} 2.0\n  h_sum{} 3.0\n  h_count{} 2.0\n  point{} buckets=[1.0:1.0,inf:2.0] count=Some(2.0) sum=Some(3.0)\nfamily other gauge\n  other{} 5.0\nduplicates=0\n",
    ),
    (
        "a repeated TYPE with another type applies to what follows it",
        TEXT,
        "# TYPE x gauge\nx 1\n# TYPE x counter\nx{a=\"2\"} 2\n",
        "family x gauge\n  x{} 1.0\nfamily x counter\n  x{a=\"2\"} 2.0\nduplicates=0\n",
    ),
    (
        "a late TYPE: the samples before it stay untyped",
        TEXT,
        "y 1\n# TYPE y gauge\ny{a=\"2\"} 2\n",
        "family y untyped\n  y{} 1.0\nfamily y gauge\n  y{a=\"2\"} 2.0\nduplicates=0\n",
    ),
    (
        "`untyped` declared, and a type line twice before the samples (the last counts)",
        TEXT,
        "# TYPE a untyped\na 1\n# TYPE b gauge\n# TYPE b counter\nb 2\n",
        "family a untyped\n  a{} 1.0\nfamily b counter\n  b{} 2.0\nduplicates=0\n",
    ),
    (
        "a sample its family's type has no name for is stored as written",
        TEXT,
        "# TYPE h histogram\nh 1\nh_bucket{le=\"+Inf\"} 1\nh_count 1\nh_total 2\n",
        "family h histogram\n  h_bucket{le=\"+Inf\"} 1.0\n  h_count{} 1.0\n  point{} buckets=[inf:1.0] count=Some(1.0) sum=None\nfamily h untyped\n  h{} 1.0\nfamily h_total untyped\n  h_total{} 2.0\nduplicates=0\n",
    ),
    // ---- `le` and `quantile` ------------------------------------------------------------------
    (
        // Prometheus 3 stores `le="1.0"` for both: one series, the second a duplicate.
        "two spellings of one bound are one series in a histogram",
        TEXT,
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"1.0\"} 1\nh_bucket{le=\"1e0\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_bucket{le=\"inf\"} 2\nh_count 2\n",
        "family h histogram\n  h_bucket{le=\"1\"} 1.0\n  h_bucket{le=\"+Inf\"} 2.0\n  h_count{} 2.0\n  point{} buckets=[1.0:1.0,inf:2.0] count=Some(2.0) sum=None\nduplicates=3\n",
    ),
    (
        "two spellings of one quantile are one series in a summary",
        TEXT,
        "# TYPE s summary\ns{quantile=\"0\"} 1\ns{quantile=\"0.0\"} 1\ns{quantile=\"-0\"} 1\ns_count 1\n",
        "family s summary\n  s{quantile=\"0\"} 1.0\n  s_count{} 1.0\n  point{} quantiles=[0.0:1.0] count=Some(1.0) sum=None\nduplicates=2\n",
    ),
    (
        // Prometheus normalises `le` only under a histogram's TYPE, `quantile` under a summary's.
        "`le` and `quantile` of other types are labels like any other",
        TEXT,
        "testmetric{le=\"10\"} 1\ntestmetric{le=\"10.0\"} 2\n# TYPE c_total counter\nc_total{quantile=\"1\"} 3\nc_total{quantile=\"1.0\"} 4\n",
        "family testmetric untyped\n  testmetric{le=\"10\"} 1.0\n  testmetric{le=\"10.0\"} 2.0\nfamily c_total counter\n  c_total{quantile=\"1\"} 3.0\n  c_total{quantile=\"1.0\"} 4.0\nduplicates=0\n",
    ),
    (
        "a bucket or quantile without a usable bound is kept as a sample, outside the points",
        TEXT,
        "# TYPE h histogram\nh_bucket{le=\"fast\"} 1\nh_bucket 1\nh_bucket{le=\"+Inf\"} 2\nh_count 2\n# TYPE s summary\ns{quantile=\"p99\"} 1\ns 2\ns_count 2\n",
        "family h histogram\n  h_bucket{le=\"fast\"} 1.0\n  h_bucket{} 1.0\n  h_bucket{le=\"+Inf\"} 2.0\n  h_count{} 2.0\n  point{} buckets=[inf:2.0] count=Some(2.0) sum=None\n  no bound: h_bucket{le=\"fast\"}\n  no bound: h_bucket{}\nfamily s summary\n  s{quantile=\"p99\"} 1.0\n  s{} 2.0\n  s_count{} 2.0\n  point{} quantiles=[] count=Some(2.0) sum=None\n  no bound: s{quantile=\"p99\"}\n  no bound: s{}\nduplicates=0\n",
    ),
    // ---- OpenMetrics ---------------------------------------------------------------------------
    (
        "OpenMetrics: a family's lines interleaved with another's",
        OM,
        "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x=\"2\"} 2\nb{x=\"2\"} 2\n# EOF\n",
        "family a gauge\n  a{} 1.0\n  a{x=\"2\"} 2.0\nfamily b gauge\n  b{} 1.0\n  b{x=\"2\"} 2.0\nduplicates=0\n",
    ),
    (
        "OpenMetrics: other families' metadata between a family's samples",
        OM,
        "# TYPE go_gc_duration_seconds summary\ngo_gc_duration_seconds{quantile=\"0\"} 1\n# HELP nohelp1 \n# HELP help2 escape \\ \\n \\\\ \\\" \\x chars\n# UNIT nounit \ngo_gc_duration_seconds{quantile=\"1.0\"} 2\ngo_gc_duration_seconds_count 99\n# EOF\n",
        "family go_gc_duration_seconds summary\n  go_gc_duration_seconds{quantile=\"0\"} 1.0\n  go_gc_duration_seconds{quantile=\"1.0\"} 2.0\n  go_gc_duration_seconds_count{} 99.0\n  point{} quantiles=[0.0:1.0,1.0:2.0] count=Some(99.0) sum=None\nfamily nohelp1 unknown help=\"\"\nfamily help2 unknown help=\"escape \\\\ \\n \\\\ \\\" \\\\x chars\"\nfamily nounit unknown unit=\"\"\nduplicates=0\n",
    ),
    (
        "OpenMetrics: metadata repeated, and after the samples",
        OM,
        "# TYPE c counter\n# HELP c Calls.\nc_total{a=\"1\"} 1\nc_created{a=\"1\"} 1700000000\n# TYPE c counter\n# HELP c Calls.\nc_total{a=\"2\"} 2\n# UNIT c late\n# EOF\n",
        "family c counter help=\"Calls.\" unit=\"late\"\n  c_total{a=\"1\"} 1.0 created=1700000000000\n  c_total{a=\"2\"} 2.0\nduplicates=0\n",
    ),
    (
        "OpenMetrics: a late HELP between a counter's samples keeps them in the counter",
        OM,
        "# TYPE a counter\na_total{x=\"1\"} 1\n# HELP a late\na_total{x=\"2\"} 2\na_created{x=\"2\"} 1700000000\n# EOF\n",
        "family a counter help=\"late\"\n  a_total{x=\"1\"} 1.0\n  a_total{x=\"2\"} 2.0 created=1700000000000\nduplicates=0\n",
    ),
    (
        "a late HELP, then a TYPE with another type: the new type from there on, with that help",
        TEXT,
        "# HELP a first\n# TYPE a gauge\na 1\n# HELP a second\n# TYPE a counter\na{x=\"2\"} 2\n",
        "family a gauge help=\"first\"\n  a{} 1.0\nfamily a counter help=\"second\"\n  a{x=\"2\"} 2.0\nduplicates=0\n",
    ),
    (
        "OpenMetrics: `_created` that is no time (Prometheus does not read it as one either)",
        OM,
        "# TYPE c counter\nc_total 1\nc_created NaN\n# EOF\n",
        "family c counter\n  c_total{} 1.0\nduplicates=0\n",
    ),
    (
        "OpenMetrics: quoted names in exemplars, duplicate series",
        OM,
        "{\"http.status\",q=\"0.9\",a=\"b\"} 1\n{\"http.status\",q=\"0.9\",a=\"b\"} 1\n{q=\"0.9\",\"http.status\",a=\"b\"} 1\nqe_count 1 # {\"id.thing\"=\"t\",other=\"hello\"} 4\n# EOF\n",
        "family http.status unknown\n  http.status{q=\"0.9\",a=\"b\"} 1.0\nfamily qe_count unknown\n  qe_count{} 1.0 # {id.thing=\"t\",other=\"hello\"} 4.0\nduplicates=2\n",
    ),
    (
        "OpenMetrics: `# EOF` without a final newline",
        OM,
        "a 1\n# EOF",
        "family a unknown\n  a{} 1.0\nduplicates=0\n",
    ),
];

/// (name, format, page, expected rendering): Prometheus rejects the page, this parser keeps it.
/// Each is listed in the crate docs ("What it handles"). None can change what a page Prometheus
/// accepts yields.
const LENIENT: &[(&str, Format, &str, &str)] = &[
    (
        "CRLF line endings (Prometheus reads `1\\r` as a value)",
        TEXT,
        "# HELP a x\r\na 1\r\n",
        "family a untyped help=\"x\"\n  a{} 1.0\nduplicates=0\n",
    ),
    (
        "signed NaN and out-of-range values (Go's ParseFloat fails on them)",
        TEXT,
        "a -nan\nb +NaN\nc 1e400\n",
        "family a untyped\n  a{} NaN\nfamily b untyped\n  b{} NaN\nfamily c untyped\n  c{} inf\nduplicates=0\n",
    ),
    (
        "text timestamps with a sign (Prometheus: digits only)",
        TEXT,
        "a 1 -5\nb 2 +7\n",
        "family a untyped\n  a{} 1.0 ts=-5\nfamily b untyped\n  b{} 2.0 ts=7\nduplicates=0\n",
    ),
    (
        "blanks around a TYPE's type token",
        TEXT,
        "# TYPE a  counter \na 1\n",
        "family a counter\n  a{} 1.0\nduplicates=0\n",
    ),
    (
        "either format's type spellings in either format",
        TEXT,
        "# TYPE a unknown\na 1\n# TYPE b info\nb_info 1\n",
        "family a untyped\n  a{} 1.0\nfamily b info\n  b_info{} 1.0\nduplicates=0\n",
    ),
    (
        "an exemplar in the text format",
        TEXT,
        "a_total 1 # {trace_id=\"t\"} 1\n",
        "family a_total untyped\n  a_total{} 1.0 # {trace_id=\"t\"} 1.0\nduplicates=0\n",
    ),
    (
        "OpenMetrics: runs of blanks, tabs, blanks inside label sets and before `{`",
        OM,
        "a {b=\"c\", d=\"e\"}\t1  1700000000\n# EOF\n",
        "family a unknown\n  a{b=\"c\",d=\"e\"} 1.0 ts=1700000000000\nduplicates=0\n",
    ),
    (
        "OpenMetrics: blank lines, plain comments, `untyped`, blank lines after `# EOF`",
        OM,
        "\n# a comment\n# TYPE a untyped\na 1\n# EOF\n\n",
        "family a unknown\n  a{} 1.0\nduplicates=0\n",
    ),
    (
        "OpenMetrics: a HELP with no blank after the name, a UNIT that is no suffix of the name",
        OM,
        "# HELP a\n# UNIT a seconds\na 1\n# EOF\n",
        "family a unknown help=\"\" unit=\"seconds\"\n  a{} 1.0\nduplicates=0\n",
    ),
];

/// (name, format, page, expected error): rejected by Prometheus and here.
const STRICT: &[(&str, Format, &str, &str)] = &[
    (
        "a label value that is not quoted",
        TEXT,
        "a{b='c'} 1\n",
        "error: line 1, column 5: expected '\"' to start the label value\n",
    ),
    (
        "two commas",
        TEXT,
        "a{b=\"c\",,d=\"e\"} 1\n",
        "error: line 1, column 9: invalid label name\n",
    ),
    (
        "OpenMetrics: labels without a comma (Prometheus's OpenMetrics parser rejects them)",
        OM,
        "a{b=\"c\"d=\"e\"} 1\n# EOF\n",
        "error: line 1, column 8: expected ',' or '}' after a label\n",
    ),
    (
        "a quoted metric name needs a comma before the next label",
        TEXT,
        "{\"a\" b=\"c\"} 1\n",
        "error: line 1, column 6: expected ',' or '}' after a label\n",
    ),
    (
        "an empty quoted metric name (Prometheus: invalid metric name)",
        TEXT,
        "{\"\"} 1\n",
        "error: line 1, column 2: empty quoted name\n",
    ),
    (
        "an empty quoted label name",
        TEXT,
        "a{\"\"=\"x\"} 1\n",
        "error: line 1, column 3: empty quoted name\n",
    ),
    (
        "`__name__` in the label set (Prometheus: label name not unique)",
        TEXT,
        "a{__name__=\"b\"} 1\n",
        "error: line 1, column 3: duplicate label name \"__name__\"\n",
    ),
    (
        "a label named twice",
        TEXT,
        "a{b=\"1\",b=\"2\"} 1\n",
        "error: line 1, column 1: duplicate label name \"b\"\n",
    ),
    (
        "`# HELP` with a blank and no name",
        TEXT,
        "# HELP \n",
        "error: line 1, column 8: expected a metric name after the keyword\n",
    ),
    (
        "`# TYPE` with something other than a name",
        TEXT,
        "# TYPE #\n",
        "error: line 1, column 8: invalid metric name\n",
    ),
    (
        "an unknown type",
        TEXT,
        "# TYPE a counters\n",
        "error: line 1, column 10: unknown metric type \"counters\"\n",
    ),
    (
        "the type glued to the name by another character (Prometheus reads `bar counter`)",
        TEXT,
        "# TYPE foo-bar counter\n",
        "error: line 1, column 12: unknown metric type \"bar counter\"\n",
    ),
    (
        "hex floats",
        TEXT,
        "foo 0x1p-3\n",
        "error: line 1, column 5: invalid sample value \"0x1p-3\"\n",
    ),
    (
        "underscores in numbers",
        TEXT,
        "foo 1_2\n",
        "error: line 1, column 5: invalid sample value \"1_2\"\n",
    ),
    (
        "a value that is a word",
        TEXT,
        "a true\n",
        "error: line 1, column 3: invalid sample value \"true\"\n",
    ),
    (
        "a fractional text timestamp",
        TEXT,
        "a 1 1.5\n",
        "error: line 1, column 5: invalid timestamp \"1.5\"\n",
    ),
    (
        "three tokens after the series",
        TEXT,
        "a 1 2 3\n",
        "error: line 1, column 7: unexpected text after the sample\n",
    ),
    (
        "a comment after a sample",
        TEXT,
        "a 1 # done\n",
        "error: line 1, column 7: expected '{' to start the exemplar's labels\n",
    ),
    (
        // Prometheus's text lexer accepts a raw line break inside quotes (its OpenMetrics lexer
        // does not); no client writes one unescaped, and lines are the unit here: rejected.
        "a raw line break inside a quoted label value (Prometheus's text lexer: accepted)",
        TEXT,
        "a{b=\"x\ny\"} 1\n",
        "error: line 1, column 5: unterminated quoted string\n",
    ),
    (
        "a NUL byte inside a metric name",
        TEXT,
        "a\u{0}{b=\"c\"} 1\n",
        "error: line 1, column 2: invalid character in metric name\n",
    ),
    (
        "OpenMetrics: a page without `# EOF`",
        OM,
        "a 1\n",
        "error: line 2, column 1: missing \"# EOF\": the OpenMetrics page is truncated\n",
    ),
    (
        "OpenMetrics: a NUL byte where a line starts is no end of the page there",
        OM,
        "a 1\n\u{0}\n# EOF\n",
        "error: line 2, column 1: invalid metric name\n",
    ),
    (
        "OpenMetrics: a timestamp that is no number",
        OM,
        "a 1 NaN\n# EOF\n",
        "error: line 1, column 5: invalid timestamp \"NaN\"\n",
    ),
];

#[test]
fn pages_prometheus_accepts() {
    run_table(ACCEPTED);
}

#[test]
fn leniencies_beyond_prometheus() {
    run_table(LENIENT);
}

#[test]
fn pages_prometheus_rejects_too() {
    run_table(STRICT);
}

/// Prometheus never reads comments, so one in a legacy encoding (GBK, Latin-1) must not cost
/// the scrape; invalid UTF-8 anywhere else still does.
#[test]
fn invalid_utf8_only_inside_comments_is_accepted() {
    let page = b"# \xd6\xd0\xce\xc4 GBK comment\n#\xff\nup 1\n  # trailing \xc3\n";
    let text = decode_body(page, 1024).unwrap();
    assert_eq!(
        text,
        "# \u{fffd}\u{fffd}\u{fffd}\u{fffd} GBK comment\n#\u{fffd}\nup 1\n  # trailing \u{fffd}\n"
    );
    let exposition = parse(&text, TEXT).unwrap();
    assert_eq!(exposition.sample_count(), 1);
    assert_eq!(exposition.families[0].metric_type, MetricType::Unknown);
    let owned = wxcloudrun_exposition::decode_body_owned(page.to_vec(), 1024).unwrap();
    assert_eq!(owned, text);

    for (bad, offset) in [
        (&b"up{a=\"\xff\"} 1\n"[..], 6),
        (b"# HELP up \xff\n", 10),
        (b"# TYPE up\t\xff\n", 10),
        (b"# comment \xff\nup \xff\n", 15),
        (b"up 1 # {a=\"\xff\"} 1\n", 11),
    ] {
        let error = decode_body(bad, 1024).unwrap_err();
        assert!(
            matches!(error, wxcloudrun_exposition::DecodeError::InvalidUtf8 { offset: at } if at == offset),
            "{bad:?}: {error}"
        );
    }
}
