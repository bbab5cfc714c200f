//! Peak heap of one scrape's work on a 10,000-series page (dhat's allocator), and the heap the
//! sidecar keeps between scrapes (the series it remembers for start times and staleness).
//!
//! Run with `cargo bench -p wxcloudrun-sidecar --bench pipeline_memory`.

mod page;

use wxcloudrun_exposition::{Format, parse};
use wxcloudrun_sidecar::convert::Converter;
use wxcloudrun_sidecar::export::{otlp, remote_write};

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
    drop(converter.convert(&[&page], 1_700_000_001_000));
    drop(page);

    let before = dhat::HeapStats::get();
    let mut parsed_bytes = 0;
    let mut batch_bytes = 0;
    let mut remote_write_bytes = 0;
    for round in 0..3 {
        let start = dhat::HeapStats::get().curr_bytes;
        let page = parse(&text, Format::PrometheusText).expect("valid page");
        parsed_bytes = dhat::HeapStats::get().curr_bytes - start;
        let batch = converter.convert(&[&page], 1_700_000_002_000 + round * 1000);
        batch_bytes = dhat::HeapStats::get().curr_bytes - start - parsed_bytes;
        drop(page);
        let encoded = remote_write::encode(&batch);
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
}
