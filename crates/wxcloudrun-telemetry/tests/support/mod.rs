//! Helpers shared by the integration tests: a tiny reader for the rendered exposition text, and
//! the promtool locator that skips loudly outside CI.

#![allow(dead_code)]

pub(crate) mod otlp;
pub(crate) mod pki;

use std::path::PathBuf;

/// One sample line of the Prometheus text format.
#[derive(Debug)]
pub(crate) struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub(crate) fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the samples of text rendered by the `prometheus` crate (whose label values escape only
/// `\\`, `\"` and `\n`).
pub(crate) fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("sample line has a value");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (series, Vec::new()),
            };
            Sample {
                name: name.to_owned(),
                labels,
                value: value.parse().expect("numeric sample value"),
            }
        })
        .collect()
}

fn parse_labels(mut text: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    while let Some((name, rest)) = text.split_once("=\"") {
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let mut end = rest.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => {}
                },
                '"' => {
                    end = i + 1;
                    break;
                }
                other => value.push(other),
            }
        }
        labels.push((name.trim_start_matches(',').to_owned(), value));
        text = &rest[end..];
    }
    labels
}

/// The value of the one sample named `name` whose labels include all of `labels`; panics when
/// none or several match.
pub(crate) fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let matching: Vec<Sample> = find(text, name, labels);
    assert_eq!(
        matching.len(),
        1,
        "expected one {name}{labels:?}, found {matching:?} in\n{text}"
    );
    matching[0].value
}

/// Every sample named `name` whose labels include all of `labels`.
pub(crate) fn find(text: &str, name: &str, labels: &[(&str, &str)]) -> Vec<Sample> {
    samples(text)
        .into_iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(v)))
        .collect()
}

/// `promtool`, or `None` outside CI when it is not installed (a loud skip). Under `CI=true` a
/// missing binary fails the test.
pub(crate) fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("promtool"))
            .find(|candidate| candidate.is_file())
    });
    match found {
        Some(path) => Some(path),
        None if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("promtool is required under CI=true: apt-get install -y prometheus")
        }
        None => {
            eprintln!("SKIPPED: promtool not found on PATH (apt-get install -y prometheus)");
            None
        }
    }
}
