//! The converted families of a learned page without their labels and values: what a replayed
//! page is filled into.

use std::sync::Arc;

use crate::model::{Family, Histogram, Kind, Point, Summary, Value};
use crate::pipeline::convert::Converter;

/// The families of a learned page, small: each point is the key of its series (whose labels
/// the converter remembers, as it remembers every series of the last scrape) and the form of its
/// value. A page's label sets are thus kept once, by the converter, not a second time here.
#[derive(Debug, Default)]
pub(super) struct Template {
    families: Vec<TemplateFamily>,
    points: Vec<TemplatePoint>,
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
    /// Its points, the next ones of [`Template::points`].
    points: usize,
}

#[derive(Debug)]
struct TemplatePoint {
    /// See [`Converter::remember_series`].
    key: (u64, u64),
    form: Form,
}

/// A value without its numbers.
#[derive(Debug)]
enum Form {
    Number(Arc<str>),
    /// Bucket bounds (shared by the points that have the same), and whether there is a sum.
    Histogram(Arc<[f64]>, bool),
    /// Quantiles, and whether there is a sum.
    Summary(Arc<[f64]>, bool),
}

impl Form {
    fn of(value: &Value, last: Option<&Form>) -> Form {
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
            Value::Number { name, .. } => Form::Number(name.clone()),
            Value::Histogram(h) => Form::Histogram(bounds(&h.buckets), h.sum.is_some()),
            Value::Summary(s) => Form::Summary(bounds(&s.quantiles), s.sum.is_some()),
        }
    }

    /// The value, every number NaN (replay writes them all), no exemplar (replay adds those read).
    fn value(&self) -> Value {
        let entries = |bounds: &[f64]| bounds.iter().map(|b| (*b, f64::NAN)).collect();
        match self {
            Form::Number(name) => Value::Number {
                name: name.clone(),
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
    pub(super) fn of(families: &[Family], converter: &mut Converter) -> Template {
        let mut template = Template {
            families: Vec::with_capacity(families.len()),
            points: Vec::with_capacity(families.iter().map(|f| f.points.len()).sum()),
            empty: Arc::from(""),
        };
        for family in families {
            let has_text = !family.help.is_empty() || !family.unit.is_empty();
            template.families.push(TemplateFamily {
                name: family.name.clone(),
                help_and_unit: has_text
                    .then(|| Box::new((family.help.clone(), family.unit.clone()))),
                kind: family.kind,
                points: family.points.len(),
            });
            for point in &family.points {
                let form = Form::of(&point.value, template.points.last().map(|p| &p.form));
                template.points.push(TemplatePoint {
                    key: converter.remember_series(&family.name, family.kind, point),
                    form,
                });
            }
        }
        template
    }

    /// The families, their labels from `converter`, every value NaN; `None` if a series is no
    /// longer remembered (a failed scrape in between forgot them).
    pub(super) fn families(&self, converter: &Converter) -> Option<Vec<Family>> {
        // Exact sizes, where `collect` into `Option<Vec<_>>` would guess: it starts a family's
        // points at room for four and doubles, and a page of one-point families would then hold
        // three empty points (312 bytes) per family.
        let mut families = Vec::with_capacity(self.families.len());
        let mut points = self.points.iter();
        for family in &self.families {
            let mut filled = Vec::with_capacity(family.points);
            for point in points.by_ref().take(family.points) {
                filled.push(Point {
                    labels: converter.remembered_labels(point.key)?,
                    start_ms: None,
                    value: point.form.value(),
                });
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
