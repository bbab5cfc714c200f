//! The remote-write encoder against a readable reference: the same batches written as `prost`
//! messages by `support_remote_write`'s own walk must give identical bytes, in both bound
//! spellings, with and without relabelling, on awkward labels and on varied random batches; and
//! what a receiver reads back: Go's float formatting, NaN and stale markers, requests split in order.

mod support_remote_write;

use std::sync::Arc;

use prost::Message;
use support_remote_write as reference;
use wxcloudrun_sidecar::export::remote_write::{
    self, BoundSpelling, Relabel, RelabelRule, TimeSeries, WriteRequest,
};
use wxcloudrun_sidecar::model::{
    Batch, BucketExemplars, Exemplar, Family, Histogram, Kind, Labels, Point, PointLabels,
    STALE_NAN_BITS, Summary, Value, stale_nan,
};

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (Arc::from(*k), Arc::from(*v)))
        .collect()
}

fn family(name: &str, kind: Kind, points: Vec<Point>) -> Family {
    Family {
        name: name.into(),
        help: "".into(),
        unit: "".into(),
        kind,
        points,
    }
}

fn number(name: &str, value: f64, pairs: &[(&str, &str)]) -> Point {
    Point {
        labels: labels(pairs).into(),
        start_ms: None,
        value: Value::Number {
            name: name.into(),
            value,
            exemplar: None,
        },
    }
}

#[test]
fn both_spellings_reach_every_le_and_quantile_on_both_paths() {
    let batch = Batch {
        timestamp_ms: 5,
        families: vec![
            family(
                "h",
                Kind::Histogram,
                vec![Point {
                    labels: labels(&[("a", "1")]).into(),
                    start_ms: None,
                    value: Value::Histogram(Box::new(Histogram {
                        count: 3.0,
                        sum: Some(1.0),
                        buckets: vec![(0.5, 1.0), (1.0, 2.0), (10.0, 3.0), (f64::INFINITY, 3.0)],
                        stale: false,
                        exemplars: Default::default(),
                    })),
                }],
            ),
            family(
                "s",
                Kind::Summary,
                vec![Point {
                    labels: Default::default(),
                    start_ms: None,
                    value: Value::Summary(Box::new(Summary {
                        count: 1.0,
                        sum: None,
                        quantiles: vec![(0.0, 1.0), (0.5, 1.0), (1.0, 2.0)],
                        stale: false,
                    })),
                }],
            ),
        ],
    };
    let keep_all = Relabel::new(vec![
        RelabelRule::new(Some("labeldrop"), vec![], None, Some("no_such_label")).unwrap(),
    ]);
    for (spelling, bounds) in [
        (
            BoundSpelling::Prometheus3,
            ["0.5", "1.0", "10.0", "+Inf", "0.0", "0.5", "1.0"],
        ),
        (
            BoundSpelling::Prometheus2,
            ["0.5", "1", "10", "+Inf", "0", "0.5", "1"],
        ),
    ] {
        let model = reference::timeseries(&batch, spelling);
        let written: Vec<&str> = model
            .iter()
            .flat_map(|series| &series.labels)
            .filter(|l| l.name == "le" || l.name == "quantile")
            .map(|l| l.value.as_str())
            .collect();
        assert_eq!(written, bounds, "{spelling:?}");
        let expected = vec![WriteRequest { timeseries: model }.encode_to_vec()];
        for relabel in [&Relabel::default(), &keep_all] {
            let raw: Vec<Vec<u8>> = remote_write::encode_spelled(&batch, relabel, spelling)
                .iter()
                .map(|e| snap::raw::Decoder::new().decompress_vec(&e.body).unwrap())
                .collect();
            assert_eq!(
                raw,
                expected,
                "{spelling:?}, relabelled: {}",
                !relabel.is_empty()
            );
        }
    }
    // The default is Prometheus 3's.
    assert_eq!(
        reference::sent(&batch),
        reference::timeseries(&batch, BoundSpelling::Prometheus3)
    );
}

#[test]
fn labels_are_sorted_deduplicated_and_never_empty() {
    let point = Point {
        labels: labels(&[
            ("Zone", "z"),
            ("a", "1"),
            ("empty", ""),
            ("le", "from-the-app"),
            ("zz", "2"),
        ])
        .into(),
        start_ms: None,
        value: Value::Histogram(Box::new(Histogram {
            count: 1.0,
            sum: None,
            buckets: vec![(0.5, 1.0), (f64::INFINITY, 1.0)],
            exemplars: BucketExemplars::default(),
            stale: false,
        })),
    };
    let batch = Batch {
        timestamp_ms: 1,
        families: vec![family("m", Kind::Histogram, vec![point])],
    };
    // Both the encoder and the reference: the expectation below is the rule itself.
    for series in [
        reference::sent(&batch),
        reference::timeseries(&batch, BoundSpelling::default()),
    ] {
        let got: Vec<_> = series[0]
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        // Byte order: upper case sorts before `_`, which sorts before lower case; our `le` wins.
        assert_eq!(
            got,
            [
                ("Zone", "z"),
                ("__name__", "m_bucket"),
                ("a", "1"),
                ("le", "0.5"),
                ("zz", "2"),
            ]
        );
    }
}

/// What `prost` writes for the reference, split like `encode` splits.
fn prost_bytes(batch: &Batch) -> Vec<Vec<u8>> {
    reference::requests(batch, BoundSpelling::default())
}

fn raw_bytes(batch: &Batch) -> Vec<Vec<u8>> {
    raw_bytes_relabeled(batch, &Relabel::default())
}

fn raw_bytes_relabeled(batch: &Batch, relabel: &Relabel) -> Vec<Vec<u8>> {
    remote_write::encode(batch, relabel)
        .iter()
        .map(|e| snap::raw::Decoder::new().decompress_vec(&e.body).unwrap())
        .collect()
}

#[test]
fn the_direct_writer_matches_prost_byte_for_byte_on_awkward_labels() {
    let awkward = labels(&[
        ("zz", "2"),
        ("Zone", "z"),
        ("__name__", "from-the-app"),
        ("a", "1"),
        ("a", "duplicate"),
        ("empty", ""),
        ("", "nameless"),
        ("le", "from-the-app"),
        ("quantile", "from-the-app"),
        ("long", &"x".repeat(300)),
        ("中文", "值"),
    ]);
    let point = |value| Point {
        labels: awkward.clone().into(),
        start_ms: None,
        value,
    };
    let batch = Batch {
        timestamp_ms: 0,
        families: vec![
            family(
                "h",
                Kind::Histogram,
                vec![point(Value::Histogram(Box::new(Histogram {
                    count: 0.0,
                    sum: Some(-0.0),
                    buckets: vec![(0.5, 0.0), (1e6, 1.0), (f64::INFINITY, 2.0)],
                    stale: false,
                    exemplars: {
                        let mut exemplars = BucketExemplars::default();
                        exemplars.push(0, page_exemplar(3));
                        exemplars.push(2, page_exemplar(0));
                        exemplars
                    },
                })))],
            ),
            family(
                "s",
                Kind::Summary,
                vec![point(Value::Summary(Box::new(Summary {
                    count: 3.0,
                    sum: None,
                    quantiles: vec![(0.99, f64::NAN)],
                    stale: false,
                })))],
            ),
            family("", Kind::Gauge, vec![number("", 1.0, &[])]),
            family(
                "g",
                Kind::Gauge,
                vec![point(Value::Number {
                    name: "g".into(),
                    value: stale_nan(),
                    exemplar: None,
                })],
            ),
            // The awkward labels beside shared ones that take some of their names (`a`, `le`,
            // `zz`): a point's labels are a set before any encoder sees them.
            family(
                "shared",
                Kind::Gauge,
                vec![Point {
                    labels: PointLabels::with_shared(
                        awkward.clone(),
                        Arc::new(labels(&[("zz", "ours"), ("le", "ours"), ("a", "ours")])),
                    ),
                    start_ms: None,
                    value: Value::Number {
                        name: "shared".into(),
                        value: 1.0,
                        exemplar: None,
                    },
                }],
            ),
        ],
    };
    assert_eq!(raw_bytes(&batch), prost_bytes(&batch));
    let shared = &batch.families.last().expect("the shared family").points[0].labels;
    assert_eq!(shared.get("a"), Some("ours"));
    assert_eq!(shared.get("zz"), Some("ours"));
    assert_eq!(shared.get("empty"), None);
    // The relabelling path writes the same bytes when its rules change nothing …
    let keep_all = Relabel::new(vec![
        RelabelRule::new(Some("labeldrop"), vec![], None, Some("no_such_label")).unwrap(),
    ]);
    assert_eq!(raw_bytes_relabeled(&batch, &keep_all), prost_bytes(&batch));
    // … and leaves out exactly the series a rule drops, `le` and suffixes included.
    let drop_buckets = Relabel::new(vec![
        RelabelRule::new(
            Some("drop"),
            vec!["__name__".into(), "le".into()],
            None,
            Some("h_bucket;(0.5|\\+Inf)"),
        )
        .unwrap(),
        RelabelRule::new(Some("labeldrop"), vec![], None, Some("zz|Zone")).unwrap(),
    ]);
    let expected: Vec<TimeSeries> = reference::timeseries(&batch, BoundSpelling::default())
        .into_iter()
        .filter(|series| {
            let get = |name: &str| {
                series
                    .labels
                    .iter()
                    .find(|l| l.name == name)
                    .map(|l| l.value.clone())
            };
            !(get("__name__").as_deref() == Some("h_bucket")
                && matches!(get("le").as_deref(), Some("0.5" | "+Inf")))
        })
        .map(|mut series| {
            series.labels.retain(|l| l.name != "zz" && l.name != "Zone");
            series
        })
        .collect();
    assert_eq!(
        expected.len(),
        reference::timeseries(&batch, BoundSpelling::default()).len() - 2
    );
    let expected = vec![
        WriteRequest {
            timeseries: expected,
        }
        .encode_to_vec(),
    ];
    assert_eq!(raw_bytes_relabeled(&batch, &drop_buckets), expected);
}

/// An exemplar of one of four forms: the layer's, one without a time, a value of zero at
/// time zero (fields prost leaves out), labels unsorted with an empty value and UTF-8.
fn page_exemplar(form: u64) -> Exemplar {
    let labels = |pairs: &[(&str, &str)]| {
        let pairs = pairs.iter();
        pairs.map(|(n, v)| (Box::from(*n), Box::from(*v))).collect()
    };
    match form {
        0 => Exemplar {
            labels: labels(&[
                ("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"),
                ("span_id", "00f067aa0ba902b7"),
            ]),
            value: 0.042,
            timestamp_ms: Some(1_700_000_000_123),
        },
        1 => Exemplar {
            labels: labels(&[("trace_id", "abc")]),
            value: f64::NAN,
            timestamp_ms: None,
        },
        2 => Exemplar {
            labels: Vec::new(),
            value: 0.0,
            timestamp_ms: Some(0),
        },
        _ => Exemplar {
            labels: labels(&[("zz", "1"), ("empty", ""), ("用户", "值"), ("a", "2")]),
            value: -1.5,
            timestamp_ms: Some(-5),
        },
    }
}

#[test]
fn the_direct_writer_matches_prost_byte_for_byte_on_varied_batches() {
    // A fixed xorshift: varied shapes, reproducible failures.
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move |below: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % below
    };
    for round in 0..200 {
        // The sidecar's labels, shared by the points that have them (`PointLabels`): their
        // names are not among a point's own.
        let mut shared: Labels = (0..next(4))
            .map(|l| {
                (
                    Arc::from(format!("l{}", next(20))),
                    Arc::from(format!("s{l}")),
                )
            })
            .collect();
        // Unsorted, maybe with a name twice: `with_shared` makes them a set.
        shared.reverse();
        let shared = Arc::new(shared);
        let mut families = Vec::new();
        for f in 0..next(6) {
            let points = (0..next(40))
                .map(|p| {
                    let pairs: Vec<(String, String)> = (0..next(12))
                        .map(|l| (format!("l{}", next(20)), format!("v{p}-{l}")))
                        .collect();
                    let pairs: Vec<(&str, &str)> =
                        pairs.iter().map(|(k, v)| (&**k, &**v)).collect();
                    let value = match next(3) {
                        0 => Value::Number {
                            name: format!("n{f}_total").into(),
                            value: next(3) as f64,
                            exemplar: (next(3) == 0).then(|| Box::new(page_exemplar(next(4)))),
                        },
                        1 => {
                            let buckets: Vec<(f64, f64)> = (0..next(20))
                                .map(|b| (b as f64 * 0.05, b as f64))
                                .chain([(f64::INFINITY, 99.0)])
                                .collect();
                            let mut exemplars = BucketExemplars::default();
                            for at in 0..buckets.len() {
                                if next(3) == 0 {
                                    exemplars.push(at, page_exemplar(next(4)));
                                }
                            }
                            Value::Histogram(Box::new(Histogram {
                                count: next(100) as f64,
                                sum: (next(2) == 0).then_some(0.25),
                                buckets,
                                stale: next(10) == 0,
                                exemplars,
                            }))
                        }
                        _ => Value::Summary(Box::new(Summary {
                            count: 1.0,
                            sum: Some(2.0),
                            quantiles: vec![(0.5, 1.0), (0.9, 0.0)],
                            stale: false,
                        })),
                    };
                    // Own names may be shared names too: the shared label wins.
                    let labels = if next(2) == 0 {
                        PointLabels::with_shared(labels(&pairs), Arc::clone(&shared))
                    } else {
                        labels(&pairs).into()
                    };
                    Point {
                        labels,
                        start_ms: None,
                        value,
                    }
                })
                .collect();
            families.push(family(&format!("f{f}"), Kind::Other, points));
        }
        let batch = Batch {
            timestamp_ms: round * 1_000_003,
            families,
        };
        assert_eq!(raw_bytes(&batch), prost_bytes(&batch), "round {round}");
        let keep_all = Relabel::new(vec![
            RelabelRule::new(Some("drop"), vec!["__name__".into()], None, Some("")).unwrap(),
        ]);
        assert_eq!(
            raw_bytes_relabeled(&batch, &keep_all),
            prost_bytes(&batch),
            "round {round}, relabelled"
        );
    }
}

fn names(series: &TimeSeries) -> Vec<(&str, &str)> {
    series
        .labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect()
}

#[test]
fn floats_are_formatted_like_go() {
    let cases = [
        (0.005, "0.005"),
        (0.01, "0.01"),
        (0.1, "0.1"),
        (0.25, "0.25"),
        (1.0, "1"),
        (2.5, "2.5"),
        (10.0, "10"),
        (60.0, "60"),
        (100_000.0, "100000"),
        (123_456.0, "123456"),
        (1e6, "1e+06"),
        (1_234_567.0, "1.234567e+06"),
        (1e21, "1e+21"),
        (0.0001, "0.0001"),
        (1e-5, "1e-05"),
        (2.5e-10, "2.5e-10"),
        (1.5e100, "1.5e+100"),
        (-0.5, "-0.5"),
        (0.0, "0"),
        (0.99, "0.99"),
        (0.999, "0.999"),
        (f64::INFINITY, "+Inf"),
        (f64::NEG_INFINITY, "-Inf"),
        (f64::NAN, "NaN"),
    ];
    for (value, expected) in cases {
        assert_eq!(remote_write::format_float(value), expected, "{value:e}");
    }
}

#[test]
fn bounds_are_spelled_as_prometheus_3_or_2() {
    // (bound, Prometheus 3 as it stores a scrape, the Go client's text format)
    let cases = [
        (1.0, "1.0", "1"),
        (0.0, "0.0", "0"),
        (-0.0, "0.0", "-0"),
        (-1.0, "-1.0", "-1"),
        (10.0, "10.0", "10"),
        (100_000.0, "100000.0", "100000"),
        (123_456.0, "123456.0", "123456"),
        (1e6, "1e+06", "1e+06"),
        (1e21, "1e+21", "1e+21"),
        (0.25, "0.25", "0.25"),
        (0.005, "0.005", "0.005"),
        (1e-5, "1e-05", "1e-05"),
        (2.5, "2.5", "2.5"),
        (0.99, "0.99", "0.99"),
        (f64::INFINITY, "+Inf", "+Inf"),
        (f64::NEG_INFINITY, "-Inf", "-Inf"),
        (f64::NAN, "NaN", "NaN"),
    ];
    for (bound, p3, p2) in cases {
        assert_eq!(BoundSpelling::Prometheus3.format(bound), p3, "{bound:e}");
        assert_eq!(BoundSpelling::Prometheus2.format(bound), p2, "{bound:e}");
    }
    assert_eq!(BoundSpelling::default(), BoundSpelling::Prometheus3);
    for spelling in BoundSpelling::ALL {
        assert_eq!(BoundSpelling::parse(spelling.as_str()), Some(spelling));
    }
    assert_eq!(
        BoundSpelling::parse(" Prometheus2 "),
        Some(BoundSpelling::Prometheus2)
    );
    assert_eq!(BoundSpelling::parse("go"), None);
}

#[test]
fn a_batch_round_trips_through_snappy_block_format() {
    let odd_nan = f64::from_bits(0x7ff8_0000_0000_0001);
    let batch = Batch {
        timestamp_ms: 1_700_000_000_123,
        families: vec![
            family(
                "requests_total",
                Kind::Counter,
                vec![number("requests_total", 7.0, &[("path", "/a")])],
            ),
            family("nan", Kind::Gauge, vec![number("nan", odd_nan, &[])]),
            family("gone", Kind::Gauge, vec![number("gone", stale_nan(), &[])]),
            family(
                "latency",
                Kind::Histogram,
                vec![Point {
                    labels: labels(&[("path", "/a")]).into(),
                    start_ms: Some(1),
                    value: Value::Histogram(Box::new(Histogram {
                        count: 10.0,
                        sum: Some(2.5),
                        buckets: vec![(0.1, 3.0), (0.5, 7.0), (f64::INFINITY, 10.0)],
                        stale: false,
                        exemplars: Default::default(),
                    })),
                }],
            ),
            family(
                "rpc",
                Kind::Summary,
                vec![Point {
                    labels: Default::default(),
                    start_ms: None,
                    value: Value::Summary(Box::new(Summary {
                        count: 4.0,
                        sum: None,
                        quantiles: vec![(0.5, 1.0), (0.99, 3.0)],
                        stale: true,
                    })),
                }],
            ),
        ],
    };
    let encoded = remote_write::encode(&batch, &Relabel::default());
    assert_eq!(encoded.len(), 1);
    assert_eq!(encoded[0].samples, batch.sample_count() as u64);
    let request = reference::decode(&encoded[0]);
    let series: Vec<_> = request.timeseries.iter().map(names).collect();
    assert_eq!(
        series,
        vec![
            vec![("__name__", "requests_total"), ("path", "/a")],
            vec![("__name__", "nan")],
            vec![("__name__", "gone")],
            vec![
                ("__name__", "latency_bucket"),
                ("le", "0.1"),
                ("path", "/a")
            ],
            vec![
                ("__name__", "latency_bucket"),
                ("le", "0.5"),
                ("path", "/a")
            ],
            vec![
                ("__name__", "latency_bucket"),
                ("le", "+Inf"),
                ("path", "/a")
            ],
            vec![("__name__", "latency_sum"), ("path", "/a")],
            vec![("__name__", "latency_count"), ("path", "/a")],
            vec![("__name__", "rpc"), ("quantile", "0.5")],
            vec![("__name__", "rpc"), ("quantile", "0.99")],
            vec![("__name__", "rpc_count")],
        ]
    );
    let bits: Vec<u64> = request
        .timeseries
        .iter()
        .map(|s| s.samples[0].value.to_bits())
        .collect();
    assert_eq!(bits[0], 7f64.to_bits());
    assert_eq!(bits[1], f64::NAN.to_bits(), "a real NaN is normalised");
    assert_eq!(
        bits[2], STALE_NAN_BITS,
        "the stale marker survives encoding"
    );
    assert_eq!(bits[3..8], [3f64, 7.0, 10.0, 2.5, 10.0].map(f64::to_bits));
    assert!(bits[8..].iter().all(|&b| b == STALE_NAN_BITS));
    assert!(
        request
            .timeseries
            .iter()
            .all(|s| s.samples.len() == 1 && s.samples[0].timestamp == batch.timestamp_ms)
    );
}

#[test]
fn large_batches_are_split_in_order() {
    let points = (0..4_500)
        .map(|i| number("up", f64::from(i), &[("i", &i.to_string())]))
        .collect();
    let batch = Batch {
        timestamp_ms: 1,
        families: vec![family("up", Kind::Gauge, points)],
    };
    let encoded = remote_write::encode(&batch, &Relabel::default());
    assert_eq!(encoded.len(), 3);
    assert_eq!(encoded.iter().map(|e| e.samples).sum::<u64>(), 4_500);
    assert!(
        encoded.iter().all(|e| e.body.capacity() == e.body.len()),
        "queued bodies hold no spare capacity the queue's byte bound would not see"
    );
    let values: Vec<f64> = encoded
        .iter()
        .flat_map(|e| reference::decode(e).timeseries)
        .map(|s| s.samples[0].value)
        .collect();
    assert_eq!(values, (0..4_500).map(f64::from).collect::<Vec<_>>());
    assert!(
        encoded
            .iter()
            .all(|e| reference::decode(e).timeseries.len() <= remote_write::MAX_SERIES_PER_REQUEST)
    );
}
