//! The Prometheus rule files under `dashboards/prometheus/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One recording or alerting rule.
#[derive(Clone, Debug, Default)]
pub struct Rule {
    /// The rule file it was read from.
    pub file: PathBuf,
    /// The name of its group.
    pub group: String,
    /// The series a recording rule writes.
    pub record: Option<String>,
    /// The name of an alerting rule.
    pub alert: Option<String>,
    /// Its PromQL expression.
    pub expr: String,
    /// The labels it adds.
    pub labels: BTreeMap<String, String>,
    /// An alert's annotations (summary, description, runbook).
    pub annotations: BTreeMap<String, String>,
}

impl Rule {
    /// The record or alert name.
    pub fn name(&self) -> &str {
        self.record
            .as_deref()
            .or(self.alert.as_deref())
            .unwrap_or_default()
    }
}

/// Copies of the rule files in `dir` with every group's interval set to 1 s, so recordings exist
/// within seconds in a test; returns the paths, for `rule_files:`.
pub fn fast_copies(dir: &Path) -> Vec<PathBuf> {
    rule_files()
        .into_iter()
        .map(|file| {
            let text = crate::read(&file)
                .lines()
                .map(|line| match line.trim_start().strip_prefix("interval: ") {
                    Some(_) => line.replace(line.trim_start(), "interval: 1s"),
                    None => line.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("\n");
            let path = dir.join(file.file_name().expect("a file name"));
            std::fs::write(&path, text).expect("write rules");
            path
        })
        .collect()
}

/// `dashboards/prometheus/*.rules.yml`.
pub fn rule_files() -> Vec<PathBuf> {
    crate::files_ending(&crate::dashboards_dir().join("prometheus"), ".rules.yml")
}

/// Rule groups as (name, group interval) pairs and their rules, from one file.
pub fn load(file: &Path) -> (Vec<(String, Option<String>)>, Vec<Rule>) {
    let doc: serde_yaml::Value = serde_yaml::from_str(&crate::read(file))
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let text = |v: &serde_yaml::Value| v.as_str().map(str::to_owned);
    let map = |v: &serde_yaml::Value| -> BTreeMap<String, String> {
        v.as_mapping()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((text(k)?, text(v)?)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut groups = Vec::new();
    let mut rules = Vec::new();
    for group in doc["groups"].as_sequence().expect("a groups list") {
        let name = text(&group["name"]).expect("every group has a name");
        groups.push((name.clone(), text(&group["interval"])));
        for rule in group["rules"].as_sequence().expect("a rules list") {
            rules.push(Rule {
                file: file.to_path_buf(),
                group: name.clone(),
                record: text(&rule["record"]),
                alert: text(&rule["alert"]),
                expr: text(&rule["expr"]).expect("every rule has an expr"),
                labels: map(&rule["labels"]),
                annotations: map(&rule["annotations"]),
            });
        }
    }
    (groups, rules)
}

/// Every rule of every rule file.
pub fn all_rules() -> Vec<Rule> {
    rule_files().iter().flat_map(|f| load(f).1).collect()
}
