//! Prometheus remote write 1.0: a [`Batch`] becomes snappy-compressed `WriteRequest`s.
//!
//! Series are named and labelled as a direct scrape by Prometheus 3 stores them (`_bucket{le}`,
//! `_sum`, `_count`, `{quantile}`), so a backend cannot tell the sidecar from a scrape. The one
//! thing Prometheus versions disagree on is how `le` and `quantile` are spelled: Prometheus 3
//! normalises every bound, whatever the client wrote, to `le="1.0"`, `quantile="0.0"`, `le="0.25"`,
//! `le="1e+06"`, `le="+Inf"`; Prometheus 2 stored what the client wrote, which for the Go
//! client's text format is `le="1"`, `quantile="0"`. [`BoundSpelling`] picks one
//! (`--bound-spelling`, default Prometheus 3); mixing them splits a series in two. A series whose
//! sample has an exemplar carries it (`exemplar.rs`).

use prost::encoding::{encode_varint, encoded_len_varint};

use super::exemplar::Prepared;
use super::relabel::Relabel;
pub use super::spelling::{BoundSpelling, format_float};
use super::wire::{label_field_len, put_label_field};
use crate::model::{self, Batch, Point, PointLabels, Value, normalize_nan, stale_nan};

/// Series per request: small enough for any receiver's limits, large enough to keep requests few.
pub const MAX_SERIES_PER_REQUEST: usize = 2_000;

/// One compressed request body and the number of samples it carries.
#[derive(Clone, Debug)]
pub struct Encoded {
    /// The snappy (block format) compressed `WriteRequest`.
    pub body: Vec<u8>,
    /// Samples in it, for the dropped-samples counters.
    pub samples: u64,
}

/// One series of a point: its metric name, the extra label (`le` or `quantile`) with its bound,
/// the sample value, and its exemplar.
struct Series<'b> {
    name: &'b str,
    extra: Option<(&'static str, f64)>,
    value: f64,
    exemplar: Option<&'b model::Exemplar>,
}

/// Every series `batch` expands to, in exposition order, with the point it belongs to (a stale
/// point marks every series it expands to and has no exemplar; a real NaN never looks stale).
fn for_each_series<'b>(batch: &'b Batch, mut visit: impl FnMut(&'b Point, Series<'_>)) {
    for family in &batch.families {
        let base = &*family.name;
        // Formatted once per family, on its first histogram or summary point.
        let mut suffixed: Option<[String; 3]> = None;
        for point in &family.points {
            let stale = point.value.is_stale();
            let value = |v: f64| if stale { stale_nan() } else { normalize_nan(v) };
            let plain = |name, extra, v| Series {
                name,
                extra,
                value: value(v),
                exemplar: None,
            };
            match &point.value {
                Value::Number {
                    name,
                    value: v,
                    exemplar,
                } => {
                    let exemplar = exemplar.as_deref().filter(|_| !stale);
                    visit(
                        point,
                        Series {
                            exemplar,
                            ..plain(&**name, None, *v)
                        },
                    );
                }
                Value::Histogram(histogram) => {
                    let model::Histogram {
                        count,
                        sum,
                        buckets,
                        exemplars,
                        ..
                    } = &**histogram;
                    let [bucket, sum_name, count_name] =
                        suffixed.get_or_insert_with(|| suffixes(base));
                    for (at, &(le, cumulative)) in buckets.iter().enumerate() {
                        let exemplar = exemplars.of(at).filter(|_| !stale);
                        let series = plain(bucket.as_str(), Some(("le", le)), cumulative);
                        visit(point, Series { exemplar, ..series });
                    }
                    if let Some(sum) = sum {
                        visit(point, plain(sum_name.as_str(), None, *sum));
                    }
                    visit(point, plain(count_name.as_str(), None, *count));
                }
                Value::Summary(summary) => {
                    let model::Summary {
                        count,
                        sum,
                        quantiles,
                        ..
                    } = &**summary;
                    let [_, sum_name, count_name] = suffixed.get_or_insert_with(|| suffixes(base));
                    for &(quantile, v) in quantiles {
                        visit(point, plain(base, Some(("quantile", quantile)), v));
                    }
                    if let Some(sum) = sum {
                        visit(point, plain(sum_name.as_str(), None, *sum));
                    }
                    visit(point, plain(count_name.as_str(), None, *count));
                }
            }
        }
    }
}

fn suffixes(base: &str) -> [String; 3] {
    [
        format!("{base}_bucket"),
        format!("{base}_sum"),
        format!("{base}_count"),
    ]
}

/// The batch as compressed requests of at most [`MAX_SERIES_PER_REQUEST`] series each, bounds
/// in the default spelling ([`encode_spelled`] for the other).
///
/// The protobuf is written straight from the batch, byte for byte what `prost` would write for
/// the same series built as [`TimeSeries`](super::TimeSeries) messages (the tests hold the two to identical bytes,
/// against a reference in `tests/support_remote_write`): building those messages first cost one owned `String` per label per series
/// (about 200,000 allocations for a 10,000-series page) and most of a scrape's CPU time.
///
/// With `relabel` rules, each series' labels are gathered (borrowed, not copied), run through
/// the rules, and written as they came out; series a rule drops are left out.
pub fn encode(batch: &Batch, relabel: &Relabel) -> Vec<Encoded> {
    encode_spelled(batch, relabel, BoundSpelling::default())
}

/// [`encode`] with `le` and `quantile` in `spelling`.
pub fn encode_spelled(batch: &Batch, relabel: &Relabel, spelling: BoundSpelling) -> Vec<Encoded> {
    let mut writer = RequestWriter {
        spelling,
        ..RequestWriter::default()
    };
    if relabel.is_empty() {
        for_each_series(batch, |point, series| {
            writer.series(point, &series, batch.timestamp_ms);
        });
    } else {
        let mut joined = String::new();
        let mut bound = String::new();
        for_each_series(batch, |point, series| {
            let Series { name, extra, .. } = series;
            bound.clear();
            if let Some((_, le)) = extra {
                bound.push_str(formatted(&mut writer.bounds, le, writer.spelling));
            }
            let mut labels: Vec<(&str, &str)> = Vec::with_capacity(point.labels.len() + 2);
            labels.push(("__name__", name));
            if let Some((label, _)) = extra {
                labels.push((label, &bound));
            }
            labels.extend(point.labels.iter().map(|(k, v)| (&**k, &**v)));
            labels.retain(|(name, value)| !name.is_empty() && !value.is_empty());
            // Stable: among equal names the first pushed (ours) stays first and survives.
            labels.sort_by(|a, b| a.0.cmp(b.0));
            labels.dedup_by(|later, earlier| later.0 == earlier.0);
            if relabel.apply(&mut labels, &mut joined) {
                writer.series_with_labels(&labels, &series, batch.timestamp_ms);
            }
        });
    }
    writer.finish()
}

/// Writes `WriteRequest`s series by series, compressing one every
/// [`MAX_SERIES_PER_REQUEST`] series.
struct RequestWriter {
    /// The point whose labels are in `labels` (its address: a batch is borrowed, so points do not
    /// move), and the extra label name they were prepared for.
    prepared_for: Option<(usize, Option<&'static str>)>,
    /// The point's labels as encoded `TimeSeries.labels` fields, sorted, without `__name__` and the
    /// extra label (ours win).
    labels: Vec<u8>,
    /// Where in `labels` the `__name__` label goes, and where the extra label goes.
    name_at: usize,
    extra_at: usize,
    /// How `le` and `quantile` are spelled.
    spelling: BoundSpelling,
    /// `le` and `quantile` values already formatted, by the bound's bits.
    bounds: Vec<(u64, String)>,
    /// The `WriteRequest` being written, and how many series it holds.
    request: Vec<u8>,
    series: usize,
    snappy: snap::raw::Encoder,
    compressed: Vec<u8>,
    done: Vec<Encoded>,
}

const SAMPLES_FIELD: u8 = 0x12; // TimeSeries.samples (2, length-delimited)
const TIMESERIES_FIELD: u8 = 0x0A; // WriteRequest.timeseries (1, length-delimited)
const SAMPLE_VALUE_FIELD: u8 = 0x09; // Sample.value (1, 64-bit)
const SAMPLE_TIMESTAMP_FIELD: u8 = 0x10; // Sample.timestamp (2, varint)

impl Default for RequestWriter {
    fn default() -> Self {
        RequestWriter {
            prepared_for: None,
            labels: Vec::new(),
            name_at: 0,
            extra_at: 0,
            spelling: BoundSpelling::default(),
            bounds: Vec::new(),
            request: Vec::new(),
            series: 0,
            snappy: snap::raw::Encoder::new(),
            compressed: Vec::new(),
            done: Vec::new(),
        }
    }
}

impl RequestWriter {
    fn series(&mut self, point: &Point, series: &Series<'_>, timestamp_ms: i64) {
        let Series {
            name, extra, value, ..
        } = *series;
        let exemplar = series.exemplar.map(|e| Prepared::new(e, timestamp_ms));
        let extra_name = extra.map(|(label, _)| label);
        let key = (std::ptr::from_ref(point) as usize, extra_name);
        if self.prepared_for != Some(key) {
            self.prepare(&point.labels, extra_name);
            self.prepared_for = Some(key);
        }
        let (extra_label, extra_value) = match extra {
            Some((label, bound)) => (label, formatted(&mut self.bounds, bound, self.spelling)),
            None => ("", ""),
        };

        let sample_len = sample_len(value, timestamp_ms);
        let series_len = self.labels.len()
            + label_field_len("__name__", name)
            + label_field_len(extra_label, extra_value)
            + 1
            + encoded_len_varint(sample_len as u64)
            + sample_len
            + exemplar.as_ref().map_or(0, Prepared::field_len);

        let out = &mut self.request;
        if out.capacity() == 0 {
            // Sized once from the first series (requests are cleared, not freed, between
            // compressions) instead of growing through a dozen doublings.
            out.reserve(MAX_SERIES_PER_REQUEST * (series_len + series_len / 4 + 4));
        }
        out.push(TIMESERIES_FIELD);
        encode_varint(series_len as u64, out);
        out.extend_from_slice(&self.labels[..self.name_at]);
        put_label_field(out, "__name__", name);
        out.extend_from_slice(&self.labels[self.name_at..self.extra_at]);
        put_label_field(out, extra_label, extra_value);
        out.extend_from_slice(&self.labels[self.extra_at..]);
        put_sample(out, sample_len, value, timestamp_ms);
        if let Some(exemplar) = &exemplar {
            exemplar.put(out);
        }

        self.series += 1;
        if self.series == MAX_SERIES_PER_REQUEST {
            self.compress_request();
        }
    }

    /// One series with labels already sorted, unique and non-empty (the relabelling path).
    fn series_with_labels(
        &mut self,
        labels: &[(&str, &str)],
        series: &Series<'_>,
        timestamp_ms: i64,
    ) {
        // Whatever `series` prepared no longer describes `self.labels`.
        self.prepared_for = None;
        let value = series.value;
        let exemplar = series.exemplar.map(|e| Prepared::new(e, timestamp_ms));
        let sample_len = sample_len(value, timestamp_ms);
        let labels_len: usize = labels
            .iter()
            .map(|(name, value)| label_field_len(name, value))
            .sum();
        let series_len = labels_len
            + 1
            + encoded_len_varint(sample_len as u64)
            + sample_len
            + exemplar.as_ref().map_or(0, Prepared::field_len);
        let out = &mut self.request;
        out.push(TIMESERIES_FIELD);
        encode_varint(series_len as u64, out);
        for (name, value) in labels {
            put_label_field(out, name, value);
        }
        put_sample(out, sample_len, value, timestamp_ms);
        if let Some(exemplar) = &exemplar {
            exemplar.put(out);
        }
        self.series += 1;
        if self.series == MAX_SERIES_PER_REQUEST {
            self.compress_request();
        }
    }

    /// Encodes a point's labels once for all the series it expands to, with the same order and
    /// precedence for every series: `__name__`, then the extra label (`le`, `quantile`), then
    /// the point's, sorted by name, empty values dropped, and on a duplicate name ours wins.
    fn prepare(&mut self, labels: &PointLabels, extra: Option<&'static str>) {
        self.labels.clear();
        self.name_at = usize::MAX;
        self.extra_at = usize::MAX;
        let mut previous = None;
        for (name, value) in labels.iter().map(|(k, v)| (&**k, &**v)) {
            if name.is_empty()
                || value.is_empty()
                || name == "__name__"
                || Some(name) == extra
                || previous == Some(name)
            {
                continue;
            }
            previous = Some(name);
            if self.name_at == usize::MAX && name > "__name__" {
                self.name_at = self.labels.len();
            }
            if self.extra_at == usize::MAX && extra.is_some_and(|extra| name > extra) {
                self.extra_at = self.labels.len();
            }
            put_label_field(&mut self.labels, name, value);
        }
        // `__name__` sorts before `le` and `quantile`, so name_at <= extra_at <= labels.len():
        // the slices `series` takes are in bounds.
        self.name_at = self.name_at.min(self.labels.len());
        self.extra_at = self.extra_at.min(self.labels.len());
    }

    fn compress_request(&mut self) {
        if self.series == 0 {
            return;
        }
        // Compressed into a reused buffer and copied out at its exact size: `compress_vec` keeps
        // the worst-case capacity (~1.2x the raw request), which the queue would hold for every
        // body while counting only its length.
        self.compressed
            .resize(snap::raw::max_compress_len(self.request.len()), 0);
        // Only inputs over ~4 GiB fail; a request is far below that. Fall back to an empty body
        // (which the receiver rejects) rather than panic.
        let body = match self.snappy.compress(&self.request, &mut self.compressed) {
            Ok(len) => self.compressed[..len].to_vec(),
            Err(_) => Vec::new(),
        };
        self.done.push(Encoded {
            body,
            samples: self.series as u64,
        });
        self.request.clear();
        self.series = 0;
    }

    fn finish(mut self) -> Vec<Encoded> {
        self.compress_request();
        self.done
    }
}

/// The encoded size of a `Sample`: prost leaves out fields holding their default value; so does
/// this writer.
fn sample_len(value: f64, timestamp_ms: i64) -> usize {
    (if value == 0.0 { 0 } else { 9 })
        + if timestamp_ms == 0 {
            0
        } else {
            1 + encoded_len_varint(timestamp_ms as u64)
        }
}

/// The `TimeSeries.samples` field holding one sample.
fn put_sample(out: &mut Vec<u8>, sample_len: usize, value: f64, timestamp_ms: i64) {
    out.push(SAMPLES_FIELD);
    encode_varint(sample_len as u64, out);
    if value != 0.0 {
        out.push(SAMPLE_VALUE_FIELD);
        out.extend_from_slice(&value.to_bits().to_le_bytes());
    }
    if timestamp_ms != 0 {
        out.push(SAMPLE_TIMESTAMP_FIELD);
        encode_varint(timestamp_ms as u64, out);
    }
}

/// `bound` in `spelling`, from `cache` when an earlier point had the same bound (a writer has
/// one spelling, so the cache holds that one's).
fn formatted(cache: &mut Vec<(u64, String)>, bound: f64, spelling: BoundSpelling) -> &str {
    let bits = bound.to_bits();
    let at = match cache.iter().position(|(cached, _)| *cached == bits) {
        Some(at) => at,
        None => {
            // Pages share a handful of bucket layouts; a hostile one cannot make the search slow.
            if cache.len() == 64 {
                cache.clear();
            }
            cache.push((bits, spelling.format(bound)));
            cache.len() - 1
        }
    };
    cache.get(at).map_or("", |(_, text)| text.as_str())
}
