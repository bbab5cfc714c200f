//! One scrape's work in the sidecar on a 10,000-series page: parse, convert (labels, start
//! times, staleness), and encode for remote write (protobuf + snappy) and OTLP (protobuf); and the
//! same scrape replayed (the page's shape learned, only its values read); and a replayed scrape
//! with the sidecar's self-metrics and `up`, taken straight from the registry beside the text
//! round trip they used to make (rendered, parsed back), in the same run. Then the same page as
//! OpenMetrics with an exemplar on every bucket line, new ones each scrape, parsed and replayed.
//!
//! Run with `cargo bench -p wxcloudrun-sidecar --bench pipeline`. The whole pipeline runs on one
//! thread, so its time is the sidecar's CPU time per scrape.

mod page;
#[path = "../tests/support_remote_write/mod.rs"]
mod reference;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use prometheus::Encoder;
use prost::Message;
use wxcloudrun_exposition::{Format, Limits, parse};
use wxcloudrun_sidecar::export::{otlp, remote_write};
use wxcloudrun_sidecar::metrics::SelfMetrics;
use wxcloudrun_sidecar::pipeline::convert::{Converter, Source};
use wxcloudrun_sidecar::pipeline::replay::{Read, Replay};

fn labels() -> Vec<(String, String)> {
    vec![
        ("instance".to_owned(), "orders-001-abcde".to_owned()),
        ("wx_env".to_owned(), "prod-1abc".to_owned()),
        ("wx_service".to_owned(), "orders".to_owned()),
    ]
}

fn pipeline(c: &mut Criterion) {
    let text = page::page();
    let lines = text.lines().count() as u64;
    let mut converter = Converter::new(&labels(), Some(1_700_000_000_000));
    let mut timestamp = 1_700_000_000_000;
    // A whole replayed scrape as the sidecar makes it: the app's families with the self-metrics
    // (an exporter's series and the process collector included) and `up`.
    let metrics = SelfMetrics::new();
    let exporter = metrics.exporter("remote_write", 64 << 20);
    metrics.scrape("success", 0.004, Some(10_000));
    exporter.success.inc();
    let mut group = c.benchmark_group("scrape_10k_series");
    group.throughput(Throughput::Elements(lines));
    parse_and_encode(&mut group, &text, &mut converter, &mut timestamp);
    replayed(&mut group, &text, &mut converter, &mut timestamp, &metrics);
    group.finish();
    self_metrics(c, &metrics, &mut timestamp);
    with_exemplars(c, &mut timestamp);
}

/// The page as OpenMetrics with 8,500 exemplars that change every scrape: parsed and replayed,
/// converted and encoded for remote write.
fn with_exemplars(c: &mut Criterion, timestamp: &mut i64) {
    let pages: Vec<String> = (1..=3).map(page::page_with_exemplars).collect();
    let lines = pages[0].lines().count() as u64;
    let mut group = c.benchmark_group("scrape_10k_series_8500_exemplars");
    group.throughput(Throughput::Elements(lines));
    let mut converter = Converter::new(&labels(), Some(1_700_000_000_000));
    let relabel = remote_write::Relabel::default();
    let mut round = 0;
    group.bench_function("parse_convert_remote_write", |b| {
        b.iter(|| {
            *timestamp += 1000;
            round += 1;
            let page = parse(&pages[round % 3], Format::OpenMetrics).expect("valid page");
            remote_write::encode(
                &converter.convert([Source::Page(&page)], *timestamp),
                &relabel,
            )
        })
    });
    let mut replay = Replay::new();
    round += 1;
    let learned = read(
        &mut replay,
        &mut converter,
        &pages[round % 3],
        Format::OpenMetrics,
    );
    assert!(matches!(learned, Read::Learned(_)), "the page is learned");
    drop(learned);
    group.bench_function("replay_convert_remote_write", |b| {
        b.iter(|| {
            *timestamp += 1000;
            round += 1;
            let page = &pages[round % 3];
            let mut replayed = read(&mut replay, &mut converter, page, Format::OpenMetrics);
            assert!(matches!(replayed, Read::Replayed(_)), "same shape");
            let batch = converter.convert([replayed.source()], *timestamp);
            remote_write::encode(&batch, &relabel)
        })
    });
    group.finish();
}

/// `text` read through `replay` (learned or replayed), with the default limits.
fn read<'r>(
    replay: &'r mut Replay,
    converter: &mut Converter,
    text: &'r str,
    format: Format,
) -> Read<'r> {
    replay
        .read(text, format, &Limits::default(), converter)
        .expect("valid page")
}

/// Parse, convert and encode, each step alone and together.
fn parse_and_encode(
    group: &mut BenchmarkGroup<'_, WallTime>,
    text: &str,
    converter: &mut Converter,
    timestamp: &mut i64,
) {
    group.bench_function("parse", |b| {
        b.iter(|| parse(text, Format::PrometheusText).expect("valid page"))
    });

    group.bench_function("parse_convert", |b| {
        b.iter(|| {
            *timestamp += 1000;
            let page = parse(text, Format::PrometheusText).expect("valid page");
            converter.convert([Source::Page(&page)], *timestamp)
        })
    });

    // The encoders alone, on one converted batch: the direct writer beside the prost messages it
    // replaced (`timeseries` + `encode_to_vec` + snappy), measured in the same run.
    let page = parse(text, Format::PrometheusText).expect("valid page");
    let batch = converter.convert([Source::Page(&page)], *timestamp);
    drop(page);
    group.bench_function("remote_write_encode", |b| {
        b.iter(|| remote_write::encode(&batch, &remote_write::Relabel::default()))
    });
    group.bench_function("remote_write_encode_via_prost_messages", |b| {
        b.iter(|| {
            reference::requests(&batch, remote_write::BoundSpelling::default())
                .iter()
                .map(|request| reference::compress(request).len())
                .sum::<usize>()
        })
    });

    let resource = vec![("service.name".to_owned(), "orders".to_owned())];
    group.bench_function("parse_convert_remote_write", |b| {
        b.iter(|| {
            *timestamp += 1000;
            let page = parse(text, Format::PrometheusText).expect("valid page");
            remote_write::encode(
                &converter.convert([Source::Page(&page)], *timestamp),
                &remote_write::Relabel::default(),
            )
        })
    });
    group.bench_function("parse_convert_otlp", |b| {
        b.iter(|| {
            *timestamp += 1000;
            let page = parse(text, Format::PrometheusText).expect("valid page");
            otlp::encode(
                &converter.convert([Source::Page(&page)], *timestamp),
                &resource,
            )
            .into_iter()
            .map(|encoded| encoded.request.encode_to_vec().len())
            .sum::<usize>()
        })
    });
}

/// The scrape replayed once the page's shape is learned, alone and with the self-metrics and
/// `up` both ways.
fn replayed(
    group: &mut BenchmarkGroup<'_, WallTime>,
    text: &str,
    converter: &mut Converter,
    timestamp: &mut i64,
    metrics: &SelfMetrics,
) {
    // The same scrape once the page's shape is learned: values read, nothing parsed.
    let mut replay = Replay::new();
    let learned = read(&mut replay, converter, text, Format::PrometheusText);
    assert!(
        matches!(learned, Read::Learned(_)),
        "the bench page is learned"
    );
    drop(learned);
    group.bench_function("replay_convert_remote_write", |b| {
        b.iter(|| {
            *timestamp += 1000;
            let mut replayed = read(&mut replay, converter, text, Format::PrometheusText);
            assert!(matches!(replayed, Read::Replayed(_)), "same shape");
            let batch = converter.convert([replayed.source()], *timestamp);
            remote_write::encode(&batch, &remote_write::Relabel::default())
        })
    });

    group.bench_function("replay_scrape_self_metrics_via_text", |b| {
        b.iter(|| {
            *timestamp += 1000;
            let mut replayed = read(&mut replay, converter, text, Format::PrometheusText);
            // What the sidecar did before: render the registry, parse it and a text `up` back.
            let mut rendered = Vec::new();
            prometheus::TextEncoder::new()
                .encode(&metrics.registry().gather(), &mut rendered)
                .expect("renders");
            let own_text = String::from_utf8_lossy(&rendered).into_owned();
            let own = parse(&own_text, Format::PrometheusText).expect("valid page");
            let up_text = format!("# TYPE up gauge\nup {}\n", 1);
            let up = parse(&up_text, Format::PrometheusText).expect("valid page");
            let sources = [replayed.source(), Source::Page(&own), Source::Page(&up)];
            let batch = converter.convert(sources, *timestamp);
            remote_write::encode(&batch, &remote_write::Relabel::default())
        })
    });
    group.bench_function("replay_scrape_self_metrics_direct", |b| {
        b.iter(|| {
            *timestamp += 1000;
            let mut replayed = read(&mut replay, converter, text, Format::PrometheusText);
            let own = metrics.registry().gather();
            let sources = [replayed.source(), Source::Gathered(&own), Source::Up(true)];
            let batch = converter.convert(sources, *timestamp);
            remote_write::encode(&batch, &remote_write::Relabel::default())
        })
    });
}

/// The self-metrics and `up` alone, both ways, on a converter that knows them.
fn self_metrics(c: &mut Criterion, metrics: &SelfMetrics, timestamp: &mut i64) {
    let mut group = c.benchmark_group("self_metrics");
    let mut own_converter = Converter::new(&labels(), Some(1_700_000_000_000));
    group.bench_function("via_text", |b| {
        b.iter(|| {
            *timestamp += 1000;
            let mut rendered = Vec::new();
            prometheus::TextEncoder::new()
                .encode(&metrics.registry().gather(), &mut rendered)
                .expect("renders");
            let own_text = String::from_utf8_lossy(&rendered).into_owned();
            let own = parse(&own_text, Format::PrometheusText).expect("valid page");
            let up_text = format!("# TYPE up gauge\nup {}\n", 1);
            let up = parse(&up_text, Format::PrometheusText).expect("valid page");
            own_converter.convert([Source::Page(&own), Source::Page(&up)], *timestamp)
        })
    });
    group.bench_function("direct", |b| {
        b.iter(|| {
            *timestamp += 1000;
            let own = metrics.registry().gather();
            own_converter.convert([Source::Gathered(&own), Source::Up(true)], *timestamp)
        })
    });
    group.bench_function("gather_only", |b| b.iter(|| metrics.registry().gather()));
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
