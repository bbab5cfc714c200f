//! The memory budget admits a page on an estimate made before any of it is read
//! ([`ReadCost`]); if the estimate is low, a page that "fits" can take the container over its
//! limit. Here the heap is counted (the binary's own counting allocator) while pages of each
//! shape issue 16 named go through the scrape's work — read through the budget, converted and
//! encoded for remote write a chunk at a time, as the pipeline does — and the high-water mark above the starting heap must stay under
//! the estimate: for the first scrape (parsed, its shape learned, every series new to the
//! converter) and for the next (replayed).
#![cfg(all(target_os = "linux", target_env = "gnu"))]

use std::fmt::Write as _;

use wxcloudrun_exposition::Format;
use wxcloudrun_sidecar::allocator::{
    CountingAllocator, heap_bytes, heap_peak_bytes, reset_heap_peak,
};
use wxcloudrun_sidecar::export::remote_write;
use wxcloudrun_sidecar::pipeline::CHUNK_SAMPLES;
use wxcloudrun_sidecar::pipeline::budget::{Budget, ReadCost};
use wxcloudrun_sidecar::pipeline::convert::Converter;
use wxcloudrun_sidecar::pipeline::replay::{Read, Replay};

// The bench's hostile pages: many names, tiny series, four labels, long labels.
#[path = "../benches/pages/mod.rs"]
mod pages;
use pages::{long_labels, names, series, tiny_series};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Every line its own family, with a timestamp (replay leaves those to the parser: every scrape
/// of it is parsed and converted).
fn names_with_timestamps(n: usize) -> String {
    let mut out = String::new();
    for i in 0..n {
        let _ = writeln!(out, "metric_name_{i:07} {} 1700000000000", i % 10);
    }
    out
}

/// OpenMetrics counters, each its own family with an exemplar (the most heap per line with
/// exemplars: every one is its own family, point and exemplar).
fn counters_with_exemplars(n: usize) -> String {
    let mut out = String::new();
    for i in 0..n {
        let _ = writeln!(
            out,
            "c{i}_total {i} # {{trace_id=\"{:032x}\",span_id=\"{:016x}\"}} 1",
            i + 1,
            i + 1
        );
    }
    out.push_str("# EOF\n");
    out
}

/// OpenMetrics histograms of a dozen buckets, an exemplar on every bucket line.
fn histograms_with_exemplars(n: usize) -> String {
    let bounds = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
    ];
    let mut out = String::from("# TYPE rpc_seconds histogram\n");
    for i in 0..n {
        for (b, le) in bounds.iter().enumerate() {
            let _ = writeln!(
                out,
                "rpc_seconds_bucket{{route=\"/r{i}\",le=\"{le}\"}} {b} # {{trace_id=\"{:032x}\",span_id=\"{:016x}\"}} 0.{b} 1700000000.{b:03}",
                i * 16 + b + 1,
                i * 16 + b + 1,
            );
        }
        let _ = writeln!(out, "rpc_seconds_sum{{route=\"/r{i}\"}} 1.5");
        let _ = writeln!(out, "rpc_seconds_count{{route=\"/r{i}\"}} 11");
    }
    out.push_str("# EOF\n");
    out
}

/// One family of series with `labels` labels each, every value new (the most heap per label:
/// each value is a new string to the converter, and remembered).
fn unique_labels(n: usize, labels: usize) -> String {
    let mut out = String::new();
    for i in 0..n {
        out.push_str("m{");
        for l in 0..labels {
            let _ = write!(out, "l{l}=\"v{i}_{l}\",");
        }
        out.push_str("} 1\n");
    }
    out
}

/// The heap one scrape of `text` grows by at its fullest, above where it started: read through
/// `budget`, converted, encoded. Also what it was read as.
fn scrape(
    text: &str,
    format: Format,
    (budget, replay, converter): (&Budget, &mut Replay, &mut Converter),
    at: i64,
) -> (u64, &'static str) {
    let relabel = remote_write::Relabel::default();
    let before = heap_bytes().expect("the counting allocator is installed");
    reset_heap_peak();
    let read = budget
        .read(replay, converter, (text, format), 0)
        .expect("the page is read");
    let path = match &read {
        Read::Replayed(_) => "replayed",
        Read::Learned(_) => "learned",
        Read::Parsed(_) => "parsed",
    };
    // As the pipeline does it: in chunks, each encoded once full and kept encoded, as the
    // export queue keeps it.
    let mut encoded = Vec::new();
    let mut emit = |chunk| encoded.extend(remote_write::encode(&chunk, &relabel));
    converter.convert_in_chunks([read.into_source()], at, CHUNK_SAMPLES, &mut emit);
    drop(encoded);
    let peak = heap_peak_bytes().expect("the counting allocator is installed");
    (peak.saturating_sub(before), path)
}

#[test]
fn no_page_takes_more_heap_than_the_budget_charged_for_it() {
    let text = Format::PrometheusText;
    let pages: [(&str, String, Format); 9] = [
        ("one family a line", names(20_000), text),
        ("8 unique labels a line", unique_labels(10_000, 8), text),
        ("40 unique labels a line", unique_labels(2_000, 40), text),
        ("with timestamps", names_with_timestamps(20_000), text),
        ("tiny series", tiny_series(50_000), text),
        ("four labels a line", series(20_000), text),
        ("450-byte labels", long_labels(5_000), text),
        (
            "histograms with exemplars",
            histograms_with_exemplars(1_000),
            Format::OpenMetrics,
        ),
        (
            "a family and an exemplar a line",
            counters_with_exemplars(10_000),
            Format::OpenMetrics,
        ),
    ];
    let added = [
        ("instance".to_owned(), "orders-001-abcde".to_owned()),
        ("wx_service".to_owned(), "orders".to_owned()),
    ];
    let budget = Budget::unlimited();
    let mut report = Vec::new();
    for (name, text, format) in &pages {
        let cost = ReadCost::of(text);
        let mut replay = Replay::new();
        let mut converter = Converter::new(&added, Some(1_700_000_000_000));
        let state = (&budget, &mut replay, &mut converter);
        let (first, first_path) = scrape(text, *format, state, 1_700_000_001_000);
        let state = (&budget, &mut replay, &mut converter);
        let (next, next_path) = scrape(text, *format, state, 1_700_000_002_000);
        let expected = match text.contains(" 1700000000000") {
            true => ("parsed", "parsed"),
            false => ("learned", "replayed"),
        };
        assert_eq!((first_path, next_path), expected, "{name}: read as");
        // A page that is parsed every time is charged a parse every time.
        let next_charged = match next_path {
            "replayed" => cost.replay_bytes,
            _ => cost.parse_bytes,
        };
        report.push(format!(
            "{name}: {} lines, {first_path} {first} B of {} charged ({:.2}), {next_path} {next} B of {next_charged} ({:.2})",
            text.lines().count(),
            cost.parse_bytes,
            first as f64 / cost.parse_bytes as f64,
            next as f64 / next_charged as f64,
        ));
        assert!(
            first <= cost.parse_bytes && next <= next_charged,
            "{name}: the heap grew past what the budget charged:\n{}",
            report.join("\n")
        );
    }
    println!("{}", report.join("\n"));
}
