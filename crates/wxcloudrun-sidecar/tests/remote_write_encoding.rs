//! The remote-write encoder against a readable reference: the same batches written as `prost`
//! messages by `support_remote_write`'s own walk must give identical bytes, in both bound
//! spellings, with and without relabelling, on awkward labels and on varied random batches.

mod support_remote_write;

use std::sync::Arc;

use prost::Message;
use support_remote_write as reference;
use wxcloudrun_sidecar::export::remote_write::{
    self, BoundSpelling, Relabel, RelabelRule, TimeSeries, WriteRequest,
};
use wxcloudrun_sidecar::model::{
    Batch, BucketExemplars, Exemplar, Family, Kind, Labels, Point, Value, stale_nan,
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
        labels: labels(pairs),
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
                    labels: labels(&[("a", "1")]),
                    start_ms: None,
                    value: Value::Histogram {
                        count: 3.0,
                        sum: Some(1.0),
                        buckets: vec![(0.5, 1.0), (1.0, 2.0), (10.0, 3.0), (f64::INFINITY, 3.0)],
                        stale: false,
                        exemplars: Default::default(),
                    },
                }],
            ),
            family(
                "s",
                Kind::Summary,
                vec![Point {
                    labels: Vec::new(),
                    start_ms: None,
                    value: Value::Summary {
                        count: 1.0,
                        sum: None,
                        quantiles: vec![(0.0, 1.0), (0.5, 1.0), (1.0, 2.0)],
                        stale: false,
                    },
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
        ]),
        start_ms: None,
        value: Value::Histogram {
            count: 1.0,
            sum: None,
            buckets: vec![(0.5, 1.0), (f64::INFINITY, 1.0)],
            exemplars: BucketExemplars::default(),
            stale: false,
        },
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
        labels: awkward.clone(),
        start_ms: None,
        value,
    };
    let batch = Batch {
        timestamp_ms: 0,
        families: vec![
            family(
                "h",
                Kind::Histogram,
                vec![point(Value::Histogram {
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
                })],
            ),
            family(
                "s",
                Kind::Summary,
                vec![point(Value::Summary {
                    count: 3.0,
                    sum: None,
                    quantiles: vec![(0.99, f64::NAN)],
                    stale: false,
                })],
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
        ],
    };
    assert_eq!(raw_bytes(&batch), prost_bytes(&batch));
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
                            Value::Histogram {
                                count: next(100) as f64,
                                sum: (next(2) == 0).then_some(0.25),
                                buckets,
                                stale: next(10) == 0,
                                exemplars,
                            }
                        }
                        _ => Value::Summary {
                            count: 1.0,
                            sum: Some(2.0),
                            quantiles: vec![(0.5, 1.0), (0.9, 0.0)],
                            stale: false,
                        },
                    };
                    Point {
                        labels: labels(&pairs),
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
