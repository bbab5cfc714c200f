//! Heap of one scrape's work, and the heap the sidecar keeps between scrapes (the series it
//! remembers for start times and staleness, the learned page shape), over the pages of issue 16:
//! the 10,000-series bench page, 100,000 series, ~1,000,000 tiny series, 100,000 distinct names,
//! 60,000 labels of ~450 bytes; and the 10,000-series page as OpenMetrics with an exemplar on
//! every bucket line (`10k-exemplars`). Counted by a wrapper around the system allocator (exact, and
//! fast enough for a million series, which dhat is not).
//!
//! Run with `cargo bench -p wxcloudrun-sidecar --bench pipeline_memory` (all pages), or name
//! pages: `cargo bench -p wxcloudrun-sidecar --bench pipeline_memory -- 10k 100k`.
//!
//! Per page: `kept` is the heap left once the page's series are remembered (text excluded), `parsed
//! peak` the heap's high-water mark during a parsed scrape (parse, convert, encode for remote
//! write; page text and kept state included), `learned peak` the same for the scrape that learns
//! the page's shape (what the sidecar does with a page it has not seen), `parse alone` the same for
//! the parse only (the parsed model, with the text and kept state), `replayed peak` the same for a
//! scrape read through the learned shape. `batch` is the converted batch alone (the page freed, the
//! remembered series not counted), what every exporter encodes from; the queues hold only the
//! encoded requests. `malloc` is what glibc uses for the parsed scrape's peak (each block's usable
//! size and chunk header, as the sidecar's own counting allocator counts it): a page of tiny series
//! is mostly small blocks, which cost more than they ask for. `in chunks` are the parsed and
//! replayed peaks of the same scrapes converted as the pipeline converts them: in chunks of
//! `CHUNK_SAMPLES`, each encoded and freed once full (the encoded requests kept, as the queue
//! keeps them); the other columns convert a scrape into one batch first.
//!
//! A second table holds the in-chunks peaks to issue 16's bound, 4 × text + 8 MiB, counted
//! without what is kept between scrapes (`kept` for the parsed scrape, `kept, shape learned` for
//! the replayed one), which is bounded on its own, per series.

mod page;
mod pages;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use wxcloudrun_exposition::{Format, Limits, parse};
use wxcloudrun_sidecar::export::remote_write;
use wxcloudrun_sidecar::pipeline::CHUNK_SAMPLES;
use wxcloudrun_sidecar::pipeline::convert::{Converter, Source};
use wxcloudrun_sidecar::pipeline::replay::{Read, Replay};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static USED: AtomicUsize = AtomicUsize::new(0);
static USED_PEAK: AtomicUsize = AtomicUsize::new(0);

/// What glibc uses for the live block at `ptr`.
#[allow(unsafe_code)]
fn used_by(ptr: *mut u8) -> usize {
    // SAFETY: `ptr` is a live block of the system allocator (glibc's malloc).
    unsafe { libc::malloc_usable_size(ptr.cast()) + size_of::<usize>() }
}

#[allow(unsafe_code)]
// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size(), used_by(ptr));
        }
        ptr
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        USED.fetch_sub(used_by(ptr), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = used_by(ptr);
        // SAFETY: the caller's contract is passed on.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
            USED.fetch_sub(old, Ordering::Relaxed);
            grew(new_size, used_by(new));
        }
        new
    }
}

fn grew(size: usize, used: usize) {
    let now = CURRENT.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(now, Ordering::Relaxed);
    let now = USED.fetch_add(used, Ordering::Relaxed) + used;
    USED_PEAK.fetch_max(now, Ordering::Relaxed);
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn current() -> usize {
    CURRENT.load(Ordering::Relaxed)
}

/// Starts a new high-water mark from what is allocated now.
fn reset_peak() {
    PEAK.store(current(), Ordering::Relaxed);
    USED_PEAK.store(USED.load(Ordering::Relaxed), Ordering::Relaxed);
}

fn used_peak() -> usize {
    USED_PEAK.load(Ordering::Relaxed)
}

fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// One page's numbers.
struct Row {
    series: usize,
    text: usize,
    kept: usize,
    parse_peak: usize,
    parsed_peak: usize,
    parsed_peak_used: usize,
    batch: usize,
    learned_peak: usize,
    replayed_peak: usize,
    kept_learned: usize,
    parsed_peak_chunked: usize,
    replayed_peak_chunked: usize,
}

/// A scrape as the pipeline does it: converted in chunks of [`CHUNK_SAMPLES`], each encoded for
/// remote write once full and kept encoded (as the export queue keeps it), then freed.
fn scrape_in_chunks(
    converter: &mut Converter,
    source: Source<'_>,
    timestamp_ms: i64,
    relabel: &remote_write::Relabel,
) -> Vec<remote_write::Encoded> {
    let mut encoded = Vec::new();
    let mut emit = |chunk| encoded.extend(remote_write::encode(&chunk, relabel));
    converter.convert_in_chunks([source], timestamp_ms, CHUNK_SAMPLES, &mut emit);
    encoded
}

fn measure(text: &str) -> Row {
    let labels = vec![
        ("instance".to_owned(), "orders-001-abcde".to_owned()),
        ("wx_service".to_owned(), "orders".to_owned()),
    ];
    let relabel = remote_write::Relabel::default();
    let format = match text.ends_with("# EOF\n") {
        true => Format::OpenMetrics,
        false => Format::PrometheusText,
    };
    let base = current();
    let used_base = USED.load(Ordering::Relaxed);
    let mut converter = Converter::new(&labels, Some(1_700_000_000_000));
    // A first scrape fills the converter's memory of the series.
    let page = parse(text, format).expect("valid page");
    let series = page.sample_count();
    drop(converter.convert([Source::Page(&page)], 1_700_000_001_000));
    drop(page);
    let kept = current() - base;

    reset_peak();
    drop(parse(text, Format::PrometheusText).expect("valid page"));
    let parse_peak = peak() - base + text.len();

    reset_peak();
    let mut batch_bytes = 0;
    for round in 0..2 {
        let page = parse(text, format).expect("valid page");
        let batch = converter.convert([Source::Parsed(page)], 1_700_000_002_000 + round * 1000);
        batch_bytes = current() - base - kept;
        let encoded = remote_write::encode(&batch, &relabel);
        std::hint::black_box((batch, encoded));
    }
    let parsed_peak = peak() - base + text.len();
    let parsed_peak_used = used_peak() - used_base + text.len();

    // The same parsed scrapes in chunks, as the pipeline makes them (no shape learned yet).
    reset_peak();
    for round in 0..2 {
        let page = parse(text, format).expect("valid page");
        let at = 1_700_000_005_000 + round * 1000;
        let encoded = scrape_in_chunks(&mut converter, Source::Parsed(page), at, &relabel);
        std::hint::black_box(encoded);
    }
    let parsed_peak_chunked = peak() - base + text.len();

    let mut replay = Replay::new();
    let limits = Limits::default();
    reset_peak();
    let mut read = replay
        .read(text, format, &limits, &mut converter)
        .expect("valid page");
    let batch = converter.convert([read.source()], 1_700_000_010_000);
    drop(read);
    std::hint::black_box(remote_write::encode(&batch, &relabel));
    drop(batch);
    let learned_peak = peak() - base + text.len();
    let kept_learned = current() - base;
    reset_peak();
    for round in 0..2 {
        let mut read = replay
            .read(text, format, &limits, &mut converter)
            .expect("valid page");
        let batch = converter.convert([read.source()], 1_700_000_020_000 + round * 1000);
        drop(read);
        let encoded = remote_write::encode(&batch, &relabel);
        std::hint::black_box((batch, encoded));
    }
    let replayed_peak = peak() - base + text.len();

    // The same replayed scrapes in chunks, as the pipeline makes them.
    reset_peak();
    for round in 0..2 {
        let read = replay
            .read(text, format, &limits, &mut converter)
            .expect("valid page");
        assert!(matches!(read, Read::Replayed(_)), "the shape stays learned");
        let at = 1_700_000_040_000 + round * 1000;
        let encoded = scrape_in_chunks(&mut converter, read.into_source(), at, &relabel);
        std::hint::black_box(encoded);
    }
    let replayed_peak_chunked = peak() - base + text.len();
    drop((replay, converter));
    Row {
        series,
        text: text.len(),
        kept,
        parse_peak,
        parsed_peak,
        parsed_peak_used,
        batch: batch_bytes,
        learned_peak,
        replayed_peak,
        kept_learned,
        parsed_peak_chunked,
        replayed_peak_chunked,
    }
}

/// A page of the run: its name on the command line and how to make it.
type PageMaker = (&'static str, fn() -> String);

fn main() {
    let all: [PageMaker; 6] = [
        ("10k", page::page),
        ("10k-exemplars", || page::page_with_exemplars(1)),
        ("100k", || pages::series(100_000)),
        ("1m", || pages::tiny_series(990_000)),
        ("100k-names", || pages::names(99_000)),
        ("60k-long", || pages::long_labels(60_000)),
    ];
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut bounds = Vec::new();
    println!(
        "| page | series | text MiB | kept MiB (B/series) | parse alone MiB | parsed peak MiB (× text) | malloc MiB | batch MiB (B/series) | learned peak MiB (× text) | kept, shape learned MiB (B/series) | replayed peak MiB (× text) | in chunks: parsed / replayed peak MiB (× text) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (name, make) in all {
        if !wanted.is_empty() && !wanted.iter().any(|w| w == name) {
            continue;
        }
        let text = make();
        let row = measure(&text);
        let per = |bytes: usize| bytes / row.series.max(1);
        println!(
            "| {name} | {} | {:.1} | {:.1} ({}) | {:.1} | {:.1} ({:.1}×) | {:.1} | {:.1} ({}) | {:.1} ({:.1}×) | {:.1} ({}) | {:.1} ({:.1}×) | {:.1} / {:.1} ({:.1}× / {:.1}×) |",
            row.series,
            mib(row.text),
            mib(row.kept),
            per(row.kept),
            mib(row.parse_peak),
            mib(row.parsed_peak),
            row.parsed_peak as f64 / row.text as f64,
            mib(row.parsed_peak_used),
            mib(row.batch),
            per(row.batch),
            mib(row.learned_peak),
            row.learned_peak as f64 / row.text as f64,
            mib(row.kept_learned),
            per(row.kept_learned),
            mib(row.replayed_peak),
            row.replayed_peak as f64 / row.text as f64,
            mib(row.parsed_peak_chunked),
            mib(row.replayed_peak_chunked),
            row.parsed_peak_chunked as f64 / row.text as f64,
            row.replayed_peak_chunked as f64 / row.text as f64,
        );
        let bound = 4 * row.text + (8 << 20);
        let above = |peak: usize, kept: usize| {
            let above = peak.saturating_sub(kept);
            let met = if above <= bound { "met" } else { "over" };
            format!("{:.2} ({met})", mib(above))
        };
        bounds.push(format!(
            "| {name} | {:.2} | {} | {} |",
            mib(bound),
            above(row.parsed_peak_chunked, row.kept),
            above(row.replayed_peak_chunked, row.kept_learned),
        ));
    }
    println!();
    println!(
        "| page | bound MiB | in chunks, parsed peak above kept MiB | replayed peak above kept (shape learned) MiB |"
    );
    println!("|---|---|---|---|");
    for line in bounds {
        println!("{line}");
    }
}
