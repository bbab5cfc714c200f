//! A family as the parser builds it, and the facts about a family's type the line loop and the
//! duplicate check both need.

use crate::error::ErrorKind;
use crate::model::{Format, MetricFamily, MetricType};

/// What the parser knows of a family piece beyond the family itself. Kept beside the list of
/// pieces, not in it: inside, its two bytes would make each piece 64 bytes, not 56 (0.7 MiB of a
/// page of 100,000 names).
#[derive(Clone, Copy, Default)]
pub(super) struct PieceFlags {
    /// A `# TYPE` line gave the type (else it is [`MetricType::Unknown`] by default).
    pub(super) type_declared: bool,
    /// OpenMetrics `_created` samples are waiting in the piece's samples to be folded.
    pub(super) has_created: bool,
}

/// The label Prometheus 3 normalises in a family of this type (`le` of a histogram, `quantile`
/// of a summary): two spellings of one bound are one series.
pub(super) fn bound_label(metric_type: MetricType) -> Option<&'static str> {
    match metric_type {
        MetricType::Histogram => Some("le"),
        MetricType::Summary => Some("quantile"),
        _ => None,
    }
}

/// Family indices come only from `new_family` and `by_name`, both in range; this error would be
/// a bug in the parser, not something input can cause. It exists so that no indexing can panic.
pub(super) fn internal_error() -> ErrorKind {
    ErrorKind::Syntax("internal error: metric family index out of range")
}

/// Whether `name` is a sample name of `family` (family name plus a suffix its type allows).
pub(super) fn fits(family: &MetricFamily<'_>, name: &str, format: Format) -> bool {
    name.strip_prefix(family.name.as_ref())
        .is_some_and(|suffix| family.metric_type.sample_suffixes(format).contains(&suffix))
}
