//! Peak heap of one scrape's work on a 10,000-series page (dhat's allocator), and the heap the
//! sidecar keeps between scrapes (the series it remembers for start times and staleness).
//!
//! Run with `cargo bench -p wxcloudrun-sidecar --bench pipeline_memory`.

mod page;

use wxcloudrun_exposition::{Format, Limits, parse};
use wxcloudrun_sidecar::export::{otlp, remote_write};
use wxcloudrun_sidecar::pipeline::convert::{Converter, Source};
use wxcloudrun_sidecar::pipeline::replay::{Read, Replay};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let text = page::page();
    let labels = vec![
        ("instance".to_owned(), "orders-001-abcde".to_owned()),
        ("wx_service".to_owned(), "orders".to_owned()),
    ];
    let resource = vec![("service.name".to_owned(), "orders".to_owned())];
    let mut converter = Converter::new(&labels, Some(1_700_000_000_000));
    // A first scrape fills the converter's memory of the series.
    let page = parse(&text, Format::PrometheusText).expect("valid page");
    drop(converter.convert([Source::Page(&page)], 1_700_000_001_000));
    drop(page);

    let before = dhat::HeapStats::get();
    let mut parsed_bytes = 0;
    let mut batch_bytes = 0;
    let mut remote_write_bytes = 0;
    for round in 0..3 {
        let start = dhat::HeapStats::get().curr_bytes;
        let page = parse(&text, Format::PrometheusText).expect("valid page");
        parsed_bytes = dhat::HeapStats::get().curr_bytes - start;
        let batch = converter.convert([Source::Page(&page)], 1_700_000_002_000 + round * 1000);
        batch_bytes = dhat::HeapStats::get().curr_bytes - start - parsed_bytes;
        drop(page);
        let encoded = remote_write::encode(&batch, &remote_write::Relabel::default());
        remote_write_bytes = encoded.iter().map(|e| e.body.capacity()).sum();
        let otlp_requests = otlp::encode(&batch, &resource).len();
        std::hint::black_box((encoded, otlp_requests));
    }
    let after = dhat::HeapStats::get();
    println!(
        "10,000-series page: {:.2} MiB of text, {} lines",
        mib(text.len()),
        text.lines().count()
    );
    println!(
        "heap kept between scrapes:  {:>7.2} MiB",
        mib(before.curr_bytes - text.len())
    );
    println!("parsed page (the model):    {:>7.2} MiB", mib(parsed_bytes));
    println!("converted batch:            {:>7.2} MiB", mib(batch_bytes));
    println!(
        "remote-write bodies:        {:>7.2} MiB (snappy)",
        mib(remote_write_bytes)
    );
    println!(
        "peak heap during a scrape:  {:>7.2} MiB (page text included)",
        mib(after.max_bytes)
    );

    // The same page replayed: learned once on a parsed scrape, then only its values are read.
    let mut replay = Replay::new();
    let limits = Limits::default();
    let learn_start = dhat::HeapStats::get();
    let mut learned = replay
        .read(&text, Format::PrometheusText, &limits, &mut converter)
        .expect("valid page");
    assert!(
        matches!(learned, Read::Learned(_)),
        "the bench page is learned"
    );
    // Learning happens on a parsed scrape: what it costs beyond the parsed page, if the scrape
    // set a new peak (dhat keeps one peak for the whole run).
    let learned_stats = dhat::HeapStats::get();
    let learning = (learned_stats.max_bytes > learn_start.max_bytes).then(|| {
        learned_stats
            .max_bytes
            .saturating_sub(learn_start.curr_bytes + parsed_bytes)
    });
    let batch = converter.convert([learned.source()], 1_700_000_010_000);
    drop((learned, batch));
    let kept = dhat::HeapStats::get().curr_bytes;
    // dhat's peak is for the whole run, so the fullest moment of a replayed scrape is sampled:
    // with the batch converted and encoded, everything of the scrape is alive at once.
    let mut replay_fullest = 0;
    for round in 0..3 {
        let mut replayed = replay
            .read(&text, Format::PrometheusText, &limits, &mut converter)
            .expect("valid page");
        assert!(matches!(replayed, Read::Replayed(_)), "same shape");
        let batch = converter.convert([replayed.source()], 1_700_000_020_000 + round * 1000);
        let encoded = remote_write::encode(&batch, &remote_write::Relabel::default());
        replay_fullest = replay_fullest.max(dhat::HeapStats::get().curr_bytes);
        std::hint::black_box((batch, encoded));
    }
    match learning {
        Some(bytes) => println!(
            "learning the page's shape:  {:>7.2} MiB more than the parsed page at its peak",
            mib(bytes)
        ),
        None => println!("learning the page's shape:  below the peak of a parsed scrape"),
    }
    println!(
        "heap kept, shape learned:   {:>7.2} MiB",
        mib(kept - text.len())
    );
    println!(
        "heap in a replayed scrape:  {:>7.2} MiB at its fullest (page text included)",
        mib(replay_fullest)
    );
}
