//! One scrape's work in the sidecar on a 10,000-series page: parse, convert (labels, start
//! times, staleness), and encode for remote write (protobuf + snappy) and OTLP (protobuf); and the
//! same scrape replayed (the page's shape learned, only its values read).
//!
//! Run with `cargo bench -p wxcloudrun-sidecar --bench pipeline`. The whole pipeline runs on one
//! thread, so its time is the sidecar's CPU time per scrape.

mod page;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use wxcloudrun_exposition::{Format, Limits, parse};
use wxcloudrun_sidecar::convert::Converter;
use wxcloudrun_sidecar::export::{otlp, remote_write};
use wxcloudrun_sidecar::replay::Replay;

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
    let mut group = c.benchmark_group("scrape_10k_series");
    group.throughput(Throughput::Elements(lines));

    group.bench_function("parse", |b| {
        b.iter(|| parse(&text, Format::PrometheusText).expect("valid page"))
    });

    let mut converter = Converter::new(&labels(), Some(1_700_000_000_000));
    let mut timestamp = 1_700_000_000_000;
    group.bench_function("parse_convert", |b| {
        b.iter(|| {
            timestamp += 1000;
            let page = parse(&text, Format::PrometheusText).expect("valid page");
            converter.convert(&[&page], timestamp)
        })
    });

    // The encoders alone, on one converted batch: the direct writer beside the prost messages it
    // replaced (`timeseries` + `encode_to_vec` + snappy), measured in the same run.
    let batch = converter.convert(
        &[&parse(&text, Format::PrometheusText).expect("valid page")],
        timestamp,
    );
    group.bench_function("remote_write_encode", |b| {
        b.iter(|| remote_write::encode(&batch, &remote_write::Relabel::default()))
    });
    group.bench_function("remote_write_encode_via_prost_messages", |b| {
        b.iter(|| {
            remote_write::timeseries(&batch)
                .chunks(remote_write::MAX_SERIES_PER_REQUEST)
                .map(|chunk| {
                    let request = remote_write::WriteRequest {
                        timeseries: chunk.to_vec(),
                    };
                    remote_write::compress(&request.encode_to_vec()).len()
                })
                .sum::<usize>()
        })
    });

    let resource = vec![("service.name".to_owned(), "orders".to_owned())];
    group.bench_function("parse_convert_remote_write", |b| {
        b.iter(|| {
            timestamp += 1000;
            let page = parse(&text, Format::PrometheusText).expect("valid page");
            remote_write::encode(
                &converter.convert(&[&page], timestamp),
                &remote_write::Relabel::default(),
            )
        })
    });
    group.bench_function("parse_convert_otlp", |b| {
        b.iter(|| {
            timestamp += 1000;
            let page = parse(&text, Format::PrometheusText).expect("valid page");
            otlp::encode(&converter.convert(&[&page], timestamp), &resource)
                .into_iter()
                .map(|encoded| encoded.request.encode_to_vec().len())
                .sum::<usize>()
        })
    });

    // The same scrape once the page's shape is learned: values read, nothing parsed.
    let mut replay = Replay::new(true);
    let page = parse(&text, Format::PrometheusText).expect("valid page");
    let (batch, app_families) = converter.convert_with(Vec::new(), &[&page], timestamp);
    replay.learn(
        &text,
        Format::PrometheusText,
        page,
        &batch.families[..app_families],
        &converter,
    );
    assert!(replay.has_shape(), "the bench page is learned");
    group.bench_function("replay_convert_remote_write", |b| {
        b.iter(|| {
            timestamp += 1000;
            let replayed = replay
                .replay(&text, Format::PrometheusText, &Limits::default())
                .expect("same shape");
            let (batch, _) = converter.convert_with(replayed.families, &[], timestamp);
            remote_write::encode(&batch, &remote_write::Relabel::default())
        })
    });
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
