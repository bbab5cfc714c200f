//! The hostile pages of issue 16, for the memory benchmark (and `scripts/memory-target.py`
//! serves the same shapes): many series, many names, long labels.

use std::fmt::Write;

/// `n` counter series of one family with four labels (~100 bytes a line), the shape of a page
/// whose app put an id into a label.
pub(crate) fn series(n: usize) -> String {
    let mut out = String::with_capacity(n * 110);
    out.push_str("# TYPE app_requests_total counter\n");
    for i in 0..n {
        let _ = writeln!(
            out,
            "app_requests_total{{method=\"GET\",route=\"/api/v1/items/{{id}}\",status=\"200\",user=\"u{i:07}\"}} {}",
            i % 1000
        );
    }
    out
}

/// `n` series with one short label (~18 bytes a line): the most series per byte a real page has.
pub(crate) fn tiny_series(n: usize) -> String {
    let mut out = String::with_capacity(n * 20);
    out.push_str("# TYPE m gauge\n");
    for i in 0..n {
        let _ = writeln!(out, "m{{i=\"{i}\"}} 1");
    }
    out
}

/// `n` untyped families of one sample each, every one its own name.
pub(crate) fn names(n: usize) -> String {
    let mut out = String::with_capacity(n * 24);
    for i in 0..n {
        let _ = writeln!(out, "metric_name_{i:07} {}", i % 10);
    }
    out
}

/// `n` series whose one label value is ~450 bytes.
pub(crate) fn long_labels(n: usize) -> String {
    let filler = "x".repeat(440);
    let mut out = String::with_capacity(n * 470);
    for i in 0..n {
        let _ = writeln!(out, "long_label{{v=\"{i:07}{filler}\"}} 1");
    }
    out
}
