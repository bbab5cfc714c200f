//! Duplicate series, found with one hash per sample: the canonical bytes of name and sorted label
//! set, hashed once, a hit confirmed by comparing the label sets (so a 64-bit collision costs a
//! comparison, never a wrongly dropped sample).

use std::cmp::Ordering;
use std::hash::BuildHasher;

use hashbrown::HashTable;

use crate::lexer::parse_float;
use crate::model::{Label, MetricFamily, Sample};

/// Orders label names as `str` does, deciding on the first eight bytes where they differ (most
/// neighbouring names do): a library `memcmp` call per comparison costs more than the comparison.
fn name_cmp(a: &str, b: &str) -> Ordering {
    // Zero-padded, big-endian: a word order is the byte order, and a shorter name's padding sorts
    // before any byte, as a proper prefix does. Equal words say nothing (padding vs a NUL byte).
    fn word(name: &[u8]) -> u64 {
        let mut word = [0u8; 8];
        let len = name.len().min(8);
        word[..len].copy_from_slice(&name[..len]);
        u64::from_be_bytes(word)
    }
    match word(a.as_bytes()).cmp(&word(b.as_bytes())) {
        Ordering::Equal => a.cmp(b),
        decided => decided,
    }
}

/// The bits of a `bound` label's value when it is a number (`-0` as `0`, every NaN alike), the
/// form two spellings of one bound share.
fn bound_number(label: &Label<'_>, bound: Option<&str>) -> Option<u64> {
    if bound != Some(label.name.as_ref()) {
        return None;
    }
    let value = parse_float(&label.value)?;
    Some(if value == 0.0 { 0 } else { value.to_bits() })
}

/// A label value in a series' identity: as written, or a bound's number.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum IdentityValue<'s> {
    Text(&'s str),
    Number(u64),
}

/// A series' labels as [`SeriesSet`] compares them: sorted, empty values left out, a bound by
/// its number.
fn identity<'s>(labels: &'s [Label<'_>], bound: Option<&str>) -> Vec<(&'s str, IdentityValue<'s>)> {
    let mut key: Vec<(&str, IdentityValue<'_>)> = labels
        .iter()
        .filter(|l| !l.value.is_empty())
        .map(|l| {
            let value = match bound_number(l, bound) {
                Some(bits) => IdentityValue::Number(bits),
                None => IdentityValue::Text(l.value.as_ref()),
            };
            (l.name.as_ref(), value)
        })
        .collect();
    key.sort_unstable();
    key
}

/// Where a sample is stored: its family piece and its place there. `u32`s: a set entry is then
/// 16 bytes with its hash, not 24 (1.1 MB less on a 100,000-series page).
#[derive(Clone, Copy)]
pub(super) struct SeriesRef {
    family: u32,
    sample: u32,
}

impl SeriesRef {
    /// Sample `sample` of piece `family`; `None` past `u32` (the page limits are far below).
    pub(super) fn new(family: usize, sample: usize) -> Option<SeriesRef> {
        Some(SeriesRef {
            family: u32::try_from(family).ok()?,
            sample: u32::try_from(sample).ok()?,
        })
    }
}

/// One series in [`SeriesSet`]: 32 bits of its hash, and where its first sample is. 12 bytes,
/// 13 a slot with its control byte, where a map from the 64-bit hash took 17 (0.5 MiB of the
/// 100,000-series page's parse, 8 MiB of a million-series one).
#[derive(Clone, Copy)]
struct Seen {
    tag: u32,
    at: SeriesRef,
}

/// The table's hash of a tag: the tag spread over 64 bits, so that the table finds its slot (from
/// the low bits) and its control byte (from the top seven) in the tag alone, and can move a slot
/// when it grows without hashing the series again.
fn spread(tag: u32) -> u64 {
    u64::from(tag).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The series seen so far, by a randomly seeded hash of name and sorted label set. A hit is
/// confirmed by comparing the label sets, so two series whose 32-bit tags collide cost a
/// comparison, never a wrongly dropped sample.
pub(super) struct SeriesSet {
    /// Seeded per parse. foldhash rather than SipHash: it reads the ~250-byte keys faster, and the
    /// page comes from the app in the same container, not from the internet; even colliding keys
    /// would cost time, never a sample.
    hasher: foldhash::quality::RandomState,
    seen: HashTable<Seen>,
    /// Reused buffer of label indices sorted by name.
    order: Vec<usize>,
    /// Reused buffer for the canonical bytes of a series.
    key: Vec<u8>,
}

impl SeriesSet {
    pub(super) fn new() -> SeriesSet {
        SeriesSet {
            hasher: foldhash::quality::RandomState::default(),
            seen: HashTable::new(),
            order: Vec::new(),
            key: Vec::new(),
        }
    }

    /// Records the series of `sample` (to be stored at `position`). `Ok(false)` if it was seen
    /// before; `Err(label)` if the label set names a label twice. The value of the `bound` label
    /// (`le` in a histogram, `quantile` in a summary) counts by its number when it is one:
    /// `le="1"` and `le="1.0"` are one series, as Prometheus 3 stores them (and as the sidecar
    /// writes them, in either spelling).
    pub(super) fn insert(
        &mut self,
        sample: &Sample<'_>,
        bound: Option<&str>,
        position: SeriesRef,
        families: &[MetricFamily<'_>],
    ) -> Result<bool, String> {
        self.write_key(sample, bound)?;
        let hash = self.hasher.hash_one(self.key.as_slice());

        let same_series = |seen: SeriesRef| {
            families
                .get(seen.family as usize)
                .and_then(|f| f.samples.get(seen.sample as usize))
                .is_some_and(|other| {
                    other.name == sample.name
                        && identity(&other.labels, bound) == identity(&sample.labels, bound)
                })
        };
        let tag = (hash >> 32) as u32;
        let slot = spread(tag);
        if self
            .seen
            .find(slot, |seen| seen.tag == tag && same_series(seen.at))
            .is_some()
        {
            return Ok(false);
        }
        self.seen
            .insert_unique(slot, Seen { tag, at: position }, |seen| spread(seen.tag));
        Ok(true)
    }

    /// Writes the canonical bytes of the series into `self.key`: name, then the non-empty labels
    /// sorted by name, each string closed by 0xff (a byte UTF-8 never contains), to be hashed in
    /// one `write`. A bound that is a number is 0xfe (never in UTF-8 either) and its eight bytes
    /// instead. `Err(label)` if the label set names a label twice.
    fn write_key(&mut self, sample: &Sample<'_>, bound: Option<&str>) -> Result<(), String> {
        let labels = &sample.labels;
        self.key.clear();
        self.key.extend_from_slice(sample.name.as_bytes());
        self.key.push(0xff);
        let mut append = |label: &Label<'_>| {
            if !label.value.is_empty() {
                self.key.extend_from_slice(label.name.as_bytes());
                self.key.push(0xff);
                match bound_number(label, bound) {
                    Some(bits) => {
                        self.key.push(0xfe);
                        self.key.extend_from_slice(&bits.to_le_bytes());
                    }
                    None => self.key.extend_from_slice(label.value.as_bytes()),
                }
                self.key.push(0xff);
            }
        };
        let less = |a: &Label<'_>, b: &Label<'_>| name_cmp(&a.name, &b.name) == Ordering::Less;
        let (last, init) = labels
            .split_last()
            .map_or((None, &labels[..]), |(l, i)| (Some(l), i));
        // Most clients write labels sorted by name, then there is nothing to sort and no
        // duplicate name either; histograms and summaries add `le` / `quantile` last.
        if init
            .windows(2)
            .all(|pair| matches!(pair, [a, b] if less(a, b)))
        {
            let at = last.map_or(0, |last| init.partition_point(|label| less(label, last)));
            if let (Some(last), Some(next)) = (last, init.get(at))
                && !less(last, next)
            {
                return Err(last.name.to_string());
            }
            init[..at].iter().for_each(&mut append);
            last.into_iter().for_each(&mut append);
            init[at..].iter().for_each(&mut append);
        } else {
            self.order.clear();
            self.order.extend(0..labels.len());
            let name_of = |i: usize| labels.get(i).map_or("", |l| l.name.as_ref());
            self.order
                .sort_unstable_by(|&a, &b| name_cmp(name_of(a), name_of(b)));
            let mut previous: Option<&str> = None;
            for label in self.order.iter().filter_map(|&i| labels.get(i)) {
                if previous == Some(label.name.as_ref()) {
                    return Err(label.name.to_string());
                }
                previous = Some(label.name.as_ref());
                append(label);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod name_order_tests {
    use super::name_cmp;

    #[test]
    fn name_order_is_str_order() {
        let names = [
            "",
            "a",
            "b",
            "le",
            "le_x",
            "quantile",
            "http_route",
            "http_request_method",
            "http_response_status_code",
            "http_re",
            "http_req",
            "http_reqa",
            "wx_appid",
            "wx_access_node",
            "abcdefgh",
            "abcdefgh\0",
            "abcdefghi",
            "abcdefg",
            "a\0",
            "a\0b",
            "微信",
            "微",
            "Z",
            "_",
            "__name__",
        ];
        for a in names {
            for b in names {
                assert_eq!(name_cmp(a, b), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
    }
}
