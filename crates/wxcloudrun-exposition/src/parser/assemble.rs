//! Once the page is read: the pieces of a reopened family put back together, and OpenMetrics
//! `_created` samples folded into the other samples' start times.

use crate::Text;
use std::collections::HashMap;

use super::family::PieceFlags;
use crate::model::{Label, MetricFamily, MetricType, Sample};

/// Puts the pieces of each family together: pieces of one name and type become one family at
/// the place of the first, samples in page order, the last `# HELP` and `# UNIT` given. A piece
/// of late `# HELP` / `# UNIT` lines alone (no type, no samples) belongs to the piece of that name
/// before it. A piece without samples is left out when its name has samples elsewhere (a late
/// `# TYPE` with another type, say).
pub(super) fn merge_pieces<'a>(
    pieces: Vec<MetricFamily<'a>>,
    flags: Vec<PieceFlags>,
) -> (Vec<MetricFamily<'a>>, Vec<PieceFlags>) {
    let mut merged: Vec<(MetricFamily<'a>, PieceFlags)> = Vec::with_capacity(pieces.len());
    let mut by_key: HashMap<(Text<'_>, MetricType), usize> = HashMap::new();
    let mut latest: HashMap<Text<'_>, usize> = HashMap::new();
    for (piece, piece_flags) in pieces.into_iter().zip(flags) {
        let metadata_only = !piece_flags.type_declared && piece.samples.is_empty();
        let name = piece.name.clone();
        let into = match latest.get(&name) {
            Some(&at) if metadata_only => Some(at),
            _ => by_key.get(&(name.clone(), piece.metric_type)).copied(),
        };
        match into.and_then(|at| merged.get_mut(at).map(|into| (at, into))) {
            Some((at, (into, into_flags))) => {
                into.samples.extend(piece.samples);
                if let Some(later) = piece.metadata {
                    let into = into.metadata_mut();
                    into.help = later.help.or(into.help.take());
                    into.unit = later.unit.or(into.unit.take());
                }
                into_flags.has_created |= piece_flags.has_created;
                latest.insert(name, at);
            }
            None => {
                let at = merged.len();
                by_key.insert((name.clone(), piece.metric_type), at);
                latest.insert(name, at);
                merged.push((piece, piece_flags));
            }
        }
    }
    let with_samples: std::collections::HashSet<&str> = merged
        .iter()
        .filter(|(f, _)| !f.samples.is_empty())
        .map(|(f, _)| f.name.as_ref())
        .collect();
    let keep: Vec<bool> = merged
        .iter()
        .map(|(f, _)| !f.samples.is_empty() || !with_samples.contains(f.name.as_ref()))
        .collect();
    drop(with_samples);
    let mut keep = keep.into_iter();
    merged.retain(|_| keep.next().unwrap_or(true));
    merged.into_iter().unzip()
}

/// Moves OpenMetrics `_created` samples out of `family.samples` and into `created_ms` of the
/// samples with the same label set (ignoring `le` and `quantile`).
pub(super) fn fold_created(family: &mut MetricFamily<'_>) {
    let created_name_len = family.name.len() + "_created".len();
    let is_created = |s: &Sample<'_>| {
        s.name.len() == created_name_len
            && s.name.starts_with(family.name.as_ref())
            && s.name.ends_with("_created")
    };
    // Only a histogram's `le` and a summary's `quantile` are not part of the series its
    // `_created` belongs to; on any other type they are labels like the others.
    let ignored: &[&str] = match family.metric_type {
        MetricType::Histogram | MetricType::GaugeHistogram => &["le"],
        MetricType::Summary => &["quantile"],
        _ => &[],
    };
    let (created, mut rest): (Vec<_>, Vec<_>) = std::mem::take(&mut family.samples)
        .into_iter()
        .partition(is_created);
    let starts: HashMap<Vec<(&str, &str)>, i64> = created
        .iter()
        .filter_map(|s| Some((series_key(&s.labels, &[]), s.created_ms.get()?)))
        .collect();
    let found: Vec<Option<i64>> = rest
        .iter()
        .map(|s| starts.get(&series_key(&s.labels, ignored)).copied())
        .collect();
    for (sample, start) in rest.iter_mut().zip(found) {
        sample.created_ms = start.into();
    }
    family.samples = rest;
}

/// A label set as a comparable key: sorted `(name, value)` pairs without empty values (which
/// Prometheus treats as absent) and without the `excluded` names.
pub(crate) fn series_key<'s>(
    labels: &'s [Label<'_>],
    excluded: &[&str],
) -> Vec<(&'s str, &'s str)> {
    let mut key: Vec<(&str, &str)> = labels
        .iter()
        .filter(|l| !l.value.is_empty() && !excluded.contains(&l.name.as_ref()))
        .map(|l| (l.name.as_ref(), l.value.as_ref()))
        .collect();
    key.sort_unstable();
    key
}
