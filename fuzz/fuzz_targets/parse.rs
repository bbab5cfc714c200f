//! Any bytes: decode (gzip or not; invalid UTF-8 in comments repaired), parse in both formats,
//! group histograms and summaries, list the samples without a bound, convert to OTLP buckets.
//! The only failure is a panic (or a sanitizer finding).

#![no_main]

use libfuzzer_sys::fuzz_target;
use wxcloudrun_exposition::{Format, Limits, decode_body, parse_with_limits};

fuzz_target!(|data: &[u8]| {
    // Small limits so the fuzzer also walks the limit paths.
    let limits = Limits {
        max_line_bytes: 4096,
        max_labels_per_series: 16,
        max_samples: 2000,
        max_families: 500,
        max_exemplar_label_chars: 128,
        max_body_bytes: 1 << 20,
    };
    if let Ok(decoded) = decode_body(data, limits.max_body_bytes) {
        // What decoding returns is what the sidecar parses.
        let _ = parse_with_limits(&decoded, Format::PrometheusText, &limits);
    }
    let text = String::from_utf8_lossy(data);
    for format in [Format::PrometheusText, Format::OpenMetrics] {
        let Ok(exposition) = parse_with_limits(&text, format, &limits) else {
            continue;
        };
        for family in &exposition.families {
            let _ = family.histogram_points();
            let _ = family.summary_points();
            let _ = family.samples_without_bound().count();
        }
        let _ = exposition.into_owned();
    }
});
