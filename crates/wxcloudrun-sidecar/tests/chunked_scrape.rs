//! A scrape converted in chunks (what the pipeline hands the exporters, a chunk at a time) must be
//! the scrape converted whole: two converters are fed the same scrapes, through the same steps
//! (`Replay::read`, then the conversion), one whole and one in chunks of a few samples, and the
//! chunks put back together must be the whole batch: every point, label, value, exemplar and start
//! time, on every path a page takes (learned, replayed, parsed, failed) and for the stale markers.

use std::collections::BTreeMap;

use wxcloudrun_exposition::{Format, Limits};
use wxcloudrun_sidecar::model::{Batch, Family};
use wxcloudrun_sidecar::pipeline::convert::Converter;
use wxcloudrun_sidecar::pipeline::replay::{Read, Replay};

/// An OpenMetrics page of every kind: a counter of `series` series with an exemplar on one, a
/// histogram of five series with an exemplar on a bucket, a summary, a gauge and ten families of
/// one sample each. `round` changes the values only.
fn page(series: usize, round: u32) -> String {
    let mut out = String::from("# TYPE c counter\n# HELP c Requests.\n");
    for i in 0..series {
        let exemplar = if i == 3 {
            format!(" # {{trace_id=\"t{round}\"}} 0.5")
        } else {
            String::new()
        };
        out.push_str(&format!(
            "c_total{{a=\"{i}\"}} {}{exemplar}\n",
            round * 10 + i as u32
        ));
    }
    out.push_str("# TYPE h histogram\n");
    for k in 0..5 {
        let exemplar = if k == 2 {
            " # {trace_id=\"b\"} 0.7"
        } else {
            ""
        };
        out.push_str(&format!(
            "h_bucket{{k=\"{k}\",le=\"0.1\"}} {round}\nh_bucket{{k=\"{k}\",le=\"1\"}} {}{exemplar}\n\
             h_bucket{{k=\"{k}\",le=\"+Inf\"}} {}\nh_sum{{k=\"{k}\"}} 1.5\nh_count{{k=\"{k}\"}} {}\n",
            round + 1,
            round + 2,
            round + 2
        ));
    }
    out.push_str(&format!(
        "# TYPE s summary\ns{{quantile=\"0.5\"}} 0.2\ns{{quantile=\"0.9\"}} 0.{round}\ns_sum 4\ns_count {round}\n\
         # TYPE g gauge\ng{{zone=\"z\"}} {round}\n"
    ));
    for n in 0..10 {
        out.push_str(&format!("# TYPE n_{n} unknown\nn_{n} {}\n", n + round));
    }
    out.push_str("# EOF\n");
    out
}

/// The families put together by name and kind (a family split between chunks is one again),
/// each one's points sorted by labels (stale markers come in no set order), as text.
fn canonical(families: impl IntoIterator<Item = Family>) -> BTreeMap<String, Vec<String>> {
    let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for family in families {
        let key = format!(
            "{} {:?} help={:?} unit={:?}",
            family.name, family.kind, family.help, family.unit
        );
        let points = by_name.entry(key).or_default();
        points.extend(family.points.iter().map(|p| format!("{p:?}")));
    }
    for points in by_name.values_mut() {
        points.sort();
    }
    by_name
}

/// One scrape of `text` (`None`: the scrape failed), whole.
fn whole(
    converter: &mut Converter,
    replay: &mut Replay,
    text: Option<&str>,
    at: i64,
) -> (Batch, &'static str) {
    let Some(text) = text else {
        return (converter.convert([], at), "failed");
    };
    let mut read = replay
        .read(text, Format::OpenMetrics, &Limits::default(), converter)
        .expect("the page parses");
    let path = path_of(&read);
    (converter.convert([read.source()], at), path)
}

fn path_of(read: &Read<'_>) -> &'static str {
    match read {
        Read::Replayed(_) => "replayed",
        Read::Learned(_) => "learned",
        Read::Parsed(_) => "parsed",
    }
}

/// The same scrape in chunks of `chunk_samples`.
fn chunked(
    converter: &mut Converter,
    replay: &mut Replay,
    text: Option<&str>,
    at: i64,
    chunk_samples: usize,
) -> (Vec<Batch>, &'static str) {
    let mut chunks = Vec::new();
    let mut emit = |chunk: Batch| chunks.push(chunk);
    let path = match text {
        None => {
            converter.convert_in_chunks([], at, chunk_samples, &mut emit);
            "failed"
        }
        Some(text) => {
            let mut read = replay
                .read(text, Format::OpenMetrics, &Limits::default(), converter)
                .expect("the page parses");
            let path = path_of(&read);
            converter.convert_in_chunks([read.source()], at, chunk_samples, &mut emit);
            path
        }
    };
    (chunks, path)
}

#[test]
fn a_scrape_in_chunks_is_the_scrape_whole_on_every_path() {
    let added = [("instance".to_owned(), "pod-1".to_owned())];
    // Learned, replayed twice, fewer series (the shape changed: learned again, and stale
    // markers), failed (every series stale), parsed (the shape, never used, had forgotten series:
    // learning pauses), learned, replayed.
    let scrapes: Vec<Option<String>> = vec![
        Some(page(40, 0)),
        Some(page(40, 1)),
        Some(page(40, 2)),
        Some(page(25, 3)),
        None,
        Some(page(25, 4)),
        Some(page(25, 5)),
        Some(page(25, 6)),
    ];
    for chunk_samples in [1, 3, 7, 50, 10_000] {
        let mut reference = (Converter::new(&added, Some(1_000)), Replay::new());
        let mut subject = (Converter::new(&added, Some(1_000)), Replay::new());
        let mut paths = Vec::new();
        for (round, text) in scrapes.iter().enumerate() {
            let at = 10_000 * (round as i64 + 1);
            let text = text.as_deref();
            let (batch, path) = whole(&mut reference.0, &mut reference.1, text, at);
            let (chunks, chunked_path) =
                chunked(&mut subject.0, &mut subject.1, text, at, chunk_samples);
            assert_eq!(path, chunked_path, "round {round}");
            paths.push(path);
            for chunk in &chunks {
                assert_eq!(chunk.timestamp_ms, at);
                assert!(chunk.families.iter().all(|f| !f.points.is_empty()));
                // Full once it reaches the size: only its last point may take it past.
                let last = chunk
                    .families
                    .last()
                    .and_then(|f| f.points.last())
                    .map_or(0, |p| p.sample_count());
                assert!(
                    chunk.sample_count() - last < chunk_samples,
                    "round {round} ({path}): a chunk of {} samples for chunks of {chunk_samples}: {:?}",
                    chunk.sample_count(),
                    chunk
                        .families
                        .iter()
                        .map(|f| (&f.name, f.points.len()))
                        .collect::<Vec<_>>()
                );
            }
            let pieces: usize = chunks.iter().map(|c| c.families.len()).sum();
            if chunk_samples == 10_000 {
                assert_eq!(chunks.len(), 1, "round {round}: a small page is one chunk");
            } else {
                assert!(pieces >= batch.families.len(), "round {round}");
            }
            let samples: usize = chunks.iter().map(Batch::sample_count).sum();
            assert_eq!(samples, batch.sample_count(), "round {round}");
            let put_together = chunks.into_iter().flat_map(|c| c.families);
            assert_eq!(
                canonical(put_together),
                canonical(batch.families),
                "round {round} ({path}), chunks of {chunk_samples}"
            );
        }
        assert_eq!(
            paths,
            [
                "learned", "replayed", "replayed", "learned", "failed", "parsed", "learned",
                "replayed"
            ],
            "chunks of {chunk_samples}"
        );
    }
}

/// The non-stale families of a scrape in chunks come in page order, a split family's pieces one
/// after the other: what the exporters see is the page as it was exposed.
#[test]
fn chunks_keep_the_page_order() {
    let mut converter = Converter::new(&[], None);
    let mut replay = Replay::new();
    let text = page(12, 0);
    for round in 0..3 {
        let at = 1_000 * (round + 1);
        let (chunks, _) = chunked(&mut converter, &mut replay, Some(&text), at, 4);
        let mut names: Vec<String> = chunks
            .into_iter()
            .flat_map(|c| c.families)
            .map(|f| f.name.to_string())
            .collect();
        names.dedup();
        let expected: Vec<String> = ["c", "h", "s", "g"]
            .into_iter()
            .map(str::to_owned)
            .chain((0..10).map(|n| format!("n_{n}")))
            .collect();
        assert_eq!(names, expected, "round {round}");
    }
}
