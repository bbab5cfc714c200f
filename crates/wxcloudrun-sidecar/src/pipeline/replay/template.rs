//! The converted families of a learned page without their labels and values: what a replayed
//! page is filled into.

use std::sync::Arc;

use crate::model::{Family, Histogram, Kind, Point, Summary, Value};
use crate::pipeline::convert::Converter;

/// The families of a learned page, small: each point is the key of its series (whose labels
/// the converter remembers, as it remembers every series of the last scrape) and the form of its
/// value, kept once for each run of points that share it. A page's label sets are thus kept once,
/// by the converter, not a second time here, and a point costs the template 16 bytes.
#[derive(Debug, Default)]
pub(super) struct Template {
    families: Vec<TemplateFamily>,
    /// The key of each point's series, see [`Converter::remember_series`].
    keys: Vec<(u64, u64)>,
    /// The forms of the points, each with the number of the first point that has it: the points
    /// up to the next one's have it too. A family's points mostly share one (a sample name, or
    /// bucket bounds).
    forms: Vec<(usize, Form)>,
    /// The help and unit of the families without them.
    empty: Arc<str>,
}

#[derive(Debug)]
struct TemplateFamily {
    name: Arc<str>,
    /// `# HELP` and `# UNIT`, unless both are empty. Boxed: a page of many names has neither, and
    /// inline their two `Arc`s were half of each of its 64-byte families.
    help_and_unit: Option<Box<(Arc<str>, Arc<str>)>>,
    kind: Kind,
    /// Its points, the next ones of [`Template::keys`]. A `u32`: a family is 32 bytes, not 40
    /// (one a line on a page of many names).
    points: u32,
}

/// Where the next chunk of a template starts: a family, a point in it, that point's place among
/// all of the template's points, and the run of its form.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Cursor {
    family: usize,
    point_in_family: usize,
    point: usize,
    form: usize,
}

impl Cursor {
    /// The template's number of the next point.
    pub(super) fn point(&self) -> usize {
        self.point
    }
}

/// A value without its numbers.
#[derive(Debug)]
enum Form {
    /// A number, with its sample name.
    Number(Arc<str>),
    /// A number whose sample name is its family's (a gauge's, an untyped sample's): the form of
    /// every such point, whatever the family, so that a page of many names is one run.
    FamilyNumber,
    /// Bucket bounds (shared by the points that have the same), and whether there is a sum.
    Histogram(Arc<[f64]>, bool),
    /// Quantiles, and whether there is a sum.
    Summary(Arc<[f64]>, bool),
}

impl Form {
    /// Whether `self` and `other` give the same values (bounds are shared when equal, see
    /// [`Form::of`]).
    fn same(&self, other: &Form) -> bool {
        match (self, other) {
            (Form::Number(a), Form::Number(b)) => a == b,
            (Form::FamilyNumber, Form::FamilyNumber) => true,
            (Form::Histogram(a, s), Form::Histogram(b, t))
            | (Form::Summary(a, s), Form::Summary(b, t)) => Arc::ptr_eq(a, b) && s == t,
            _ => false,
        }
    }

    fn of(value: &Value, family: &str, last: Option<&Form>) -> Form {
        let bounds = |entries: &[(f64, f64)]| -> Arc<[f64]> {
            let shared = match last {
                Some(Form::Histogram(b, _) | Form::Summary(b, _)) => Some(b),
                _ => None,
            };
            match shared {
                Some(b)
                    if b.len() == entries.len()
                        && b.iter()
                            .zip(entries)
                            .all(|(a, e)| a.to_bits() == e.0.to_bits()) =>
                {
                    b.clone()
                }
                _ => entries.iter().map(|e| e.0).collect(),
            }
        };
        match value {
            Value::Number { name, .. } if **name == *family => Form::FamilyNumber,
            Value::Number { name, .. } => Form::Number(name.clone()),
            Value::Histogram(h) => Form::Histogram(bounds(&h.buckets), h.sum.is_some()),
            Value::Summary(s) => Form::Summary(bounds(&s.quantiles), s.sum.is_some()),
        }
    }

    /// The value, every number NaN (replay writes them all), no exemplar (replay adds those read).
    fn value(&self, family: &Arc<str>) -> Value {
        let entries = |bounds: &[f64]| bounds.iter().map(|b| (*b, f64::NAN)).collect();
        match self {
            Form::Number(name) => Value::Number {
                name: name.clone(),
                value: f64::NAN,
                exemplar: None,
            },
            Form::FamilyNumber => Value::Number {
                name: family.clone(),
                value: f64::NAN,
                exemplar: None,
            },
            Form::Histogram(bounds, sum) => Value::Histogram(Box::new(Histogram {
                count: f64::NAN,
                sum: sum.then_some(f64::NAN),
                buckets: entries(bounds),
                exemplars: Default::default(),
                stale: false,
            })),
            Form::Summary(bounds, sum) => Value::Summary(Box::new(Summary {
                count: f64::NAN,
                sum: sum.then_some(f64::NAN),
                quantiles: entries(bounds),
                stale: false,
            })),
        }
    }
}

impl Template {
    /// `None` if a family has more than `u32::MAX` points.
    pub(super) fn of(families: &[Family], converter: &mut Converter) -> Option<Template> {
        let mut template = Template {
            families: Vec::with_capacity(families.len()),
            keys: Vec::with_capacity(families.iter().map(|f| f.points.len()).sum()),
            forms: Vec::new(),
            empty: Arc::from(""),
        };
        for family in families {
            let has_text = !family.help.is_empty() || !family.unit.is_empty();
            template.families.push(TemplateFamily {
                name: family.name.clone(),
                help_and_unit: has_text
                    .then(|| Box::new((family.help.clone(), family.unit.clone()))),
                kind: family.kind,
                points: u32::try_from(family.points.len()).ok()?,
            });
            for point in &family.points {
                let last = template.forms.last().map(|(_, form)| form);
                let form = Form::of(&point.value, &family.name, last);
                if !last.is_some_and(|last| last.same(&form)) {
                    template.forms.push((template.keys.len(), form));
                }
                let key = converter.remember_series(&family.name, family.kind, point);
                template.keys.push(key);
            }
        }
        template.forms.shrink_to_fit();
        Some(template)
    }

    /// Whether the converter still remembers every series of the template (a failed scrape in
    /// between forgets them, and their labels with them).
    pub(super) fn all_remembered(&self, converter: &Converter) -> bool {
        self.keys.iter().all(|&key| converter.remembers(key))
    }

    /// The families from `cursor` on, about `max_samples` remote-write samples of them (a family
    /// split where they run out), their labels from `converter`, every value NaN; `cursor` moved
    /// past them. Empty at the end; `None` if a series is no longer remembered.
    pub(super) fn chunk(
        &self,
        converter: &Converter,
        cursor: &mut Cursor,
        max_samples: usize,
    ) -> Option<Vec<Family>> {
        // A family a sample at most.
        let left = self.families.len().saturating_sub(cursor.family);
        let mut families = Vec::with_capacity(left.min(max_samples));
        let mut samples = 0;
        while samples < max_samples
            && let Some(family) = self.families.get(cursor.family)
        {
            // Exact sizes, where `collect` would guess: it starts a family's points at room for
            // four and doubles, and a page of one-point families would then hold three empty
            // points (312 bytes) per family.
            let points = family.points as usize;
            let left = points - cursor.point_in_family;
            let mut filled = Vec::with_capacity(left.min(max_samples - samples));
            while cursor.point_in_family < points && samples < max_samples {
                let key = *self.keys.get(cursor.point)?;
                while self
                    .forms
                    .get(cursor.form + 1)
                    .is_some_and(|(first, _)| *first <= cursor.point)
                {
                    cursor.form += 1;
                }
                let (_, form) = self.forms.get(cursor.form)?;
                let filled_point = Point {
                    labels: converter.remembered_labels(key)?,
                    start_ms: None,
                    value: form.value(&family.name),
                };
                samples += filled_point.sample_count();
                filled.push(filled_point);
                cursor.point += 1;
                cursor.point_in_family += 1;
            }
            if cursor.point_in_family == points {
                cursor.family += 1;
                cursor.point_in_family = 0;
            }
            if filled.is_empty() {
                continue;
            }
            let (help, unit) = match family.help_and_unit.as_deref() {
                Some((help, unit)) => (help.clone(), unit.clone()),
                None => (self.empty.clone(), self.empty.clone()),
            };
            families.push(Family {
                name: family.name.clone(),
                help,
                unit,
                kind: family.kind,
                points: filled,
            });
        }
        Some(families)
    }
}
