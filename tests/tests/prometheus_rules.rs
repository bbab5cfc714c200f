//! The Prometheus rules under `dashboards/prometheus/`: conventions (names, labels, annotations,
//! runbook links), the metrics they read, `promtool check rules` and the promtool unit tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use wxcloudrun_telemetry_tests::rules::{self, Rule};
use wxcloudrun_telemetry_tests::{
    contract, dashboards_dir, files_ending, promql, read, require_tool,
};

const RUNBOOK_URL: &str =
    "https://github.com/wxcloudrun-telemetry/wxcloudrun-telemetry/blob/main/dashboards/RUNBOOK.md";

fn alerts(rules: &[Rule]) -> Vec<&Rule> {
    rules.iter().filter(|r| r.alert.is_some()).collect()
}

/// `^([A-Z]+[a-z0-9]+)+$`: CamelCase words, each capitals then lower case or digits.
fn is_camel_case(name: &str) -> bool {
    let mut chars = name.chars().peekable();
    let mut words = 0;
    while chars.peek().is_some() {
        let upper = std::iter::from_fn(|| chars.next_if(char::is_ascii_uppercase)).count();
        let lower =
            std::iter::from_fn(|| chars.next_if(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
                .count();
        if upper == 0 || lower == 0 {
            return false;
        }
        words += 1;
    }
    words > 0
}

/// GitHub's anchor for a Markdown heading of plain words.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn rule_names_labels_and_annotations_follow_the_conventions() {
    let rules = rules::all_rules();
    assert!(!rules.is_empty(), "no rules under dashboards/prometheus/");
    let runbook = read(&dashboards_dir().join("RUNBOOK.md"));
    let sections: BTreeSet<String> = runbook
        .lines()
        .filter_map(|line| line.strip_prefix("## "))
        .map(anchor)
        .collect();
    let mut problems = Vec::new();
    for rule in &rules {
        if let Some(record) = &rule.record {
            // level:metric:operations
            let parts: Vec<&str> = record.split(':').collect();
            let ok = parts.len() == 3
                && parts.iter().all(|p| !p.is_empty())
                && parts[0].chars().all(|c| c.is_ascii_lowercase() || c == '_')
                && parts[1..].iter().all(|p| {
                    p.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                });
            if !ok {
                problems.push(format!("{record}: not level:metric:operations"));
            }
        }
        let Some(alert) = &rule.alert else { continue };
        let mut check = |ok: bool, what: &str| {
            if !ok {
                problems.push(format!("{alert}: {what}"));
            }
        };
        check(
            is_camel_case(alert) && alert.starts_with("WxCloudRun") && alert.len() <= 40,
            "name must be CamelCase, start with WxCloudRun, at most 40 chars",
        );
        let severity = rule.labels.get("severity").map(String::as_str);
        check(
            matches!(severity, Some("critical" | "warning" | "info")),
            "severity must be critical, warning or info",
        );
        let summary = rule
            .annotations
            .get("summary")
            .map(String::as_str)
            .unwrap_or_default();
        check(
            summary.starts_with(|c: char| c.is_ascii_uppercase())
                && summary.ends_with('.')
                && !summary.contains("{{"),
            "summary must be one static sentence",
        );
        let description = rule
            .annotations
            .get("description")
            .map(String::as_str)
            .unwrap_or_default();
        check(
            description.contains("{{ $"),
            "description must be templated",
        );
        let runbook_url = rule
            .annotations
            .get("runbook_url")
            .map(String::as_str)
            .unwrap_or_default();
        let section = runbook_url
            .strip_prefix(RUNBOOK_URL)
            .and_then(|rest| rest.strip_prefix('#'));
        check(
            section == Some(alert.to_lowercase().as_str()),
            "runbook_url must point at RUNBOOK.md#<alert name in lower case>",
        );
        check(
            section.is_some_and(|s| sections.contains(s)),
            "RUNBOOK.md has no section for it",
        );
    }
    let (groups, _) = rules::load(&rules::rule_files()[0]);
    for (group, _) in &groups {
        let size = rules.iter().filter(|r| &r.group == group).count();
        if group.len() > 40 || size > 20 {
            problems.push(format!(
                "group {group}: at most 40 chars and 20 rules ({size})"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "rule conventions:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn every_runbook_section_belongs_to_an_alert() {
    let names: BTreeSet<String> = alerts(&rules::all_rules())
        .iter()
        .map(|r| r.name().to_owned())
        .collect();
    let sections: BTreeSet<String> = read(&dashboards_dir().join("RUNBOOK.md"))
        .lines()
        .filter_map(|line| line.strip_prefix("## "))
        .map(|s| s.trim().to_owned())
        .collect();
    assert_eq!(sections, names, "RUNBOOK.md sections vs alerts");
}

#[test]
fn rules_read_only_contract_metrics_and_recordings() {
    let rules = rules::all_rules();
    let readme = read(&dashboards_dir().join("README.md"));
    let mut known = contract::all_series(&readme);
    known.extend(rules.iter().filter_map(|r| r.record.clone()));
    let mut problems = Vec::new();
    for rule in &rules {
        match promql::metric_names(&rule.expr) {
            Ok(names) => problems.extend(names.difference(&known).map(|name| {
                format!(
                    "{}: {name} is neither in the contract nor recorded",
                    rule.name()
                )
            })),
            Err(e) => problems.push(format!("{}: {e}", rule.name())),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The README's tuning table and the objective constants in the rules agree.
#[test]
fn readme_documents_every_objective_with_its_value() {
    let readme = read(&dashboards_dir().join("README.md"));
    let documented: BTreeMap<String, String> = readme
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells
                .get(1)?
                .strip_prefix("`wxcloudrun:")?
                .strip_suffix('`')?;
            let value = cells.get(2)?.strip_prefix('`')?.split('`').next()?;
            Some((format!("wxcloudrun:{name}"), value.to_owned()))
        })
        .collect();
    let recorded: BTreeMap<String, String> = rules::all_rules()
        .iter()
        .filter(|r| r.group == "wxcloudrun-objectives")
        .map(|r| {
            let value = r
                .expr
                .trim()
                .strip_prefix("vector(")
                .and_then(|v| v.strip_suffix(')'));
            let value =
                value.unwrap_or_else(|| panic!("{}: objectives are vector(<number>)", r.name()));
            (r.name().to_owned(), value.to_owned())
        })
        .collect();
    assert!(!recorded.is_empty());
    assert_eq!(
        documented, recorded,
        "README tuning table vs wxcloudrun-objectives"
    );
}

fn test_files() -> Vec<PathBuf> {
    files_ending(&dashboards_dir().join("prometheus/tests"), ".test.yml")
}

/// Every alert has a unit test where it fires and one where it stays quiet; every recording is
/// checked by value somewhere.
#[test]
fn every_rule_has_unit_tests() {
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    let mut read_by_tests = BTreeSet::new();
    for file in test_files() {
        let doc: serde_yaml::Value = serde_yaml::from_str(&read(&file)).expect("test file is YAML");
        for test in doc["tests"].as_sequence().into_iter().flatten() {
            for case in test["alert_rule_test"].as_sequence().into_iter().flatten() {
                let name = case["alertname"].as_str().unwrap_or_default().to_owned();
                match case["exp_alerts"].as_sequence() {
                    Some(alerts) if !alerts.is_empty() => fires.insert(name),
                    _ => quiet.insert(name),
                };
            }
            for case in test["promql_expr_test"].as_sequence().into_iter().flatten() {
                let expr = case["expr"].as_str().unwrap_or_default();
                read_by_tests.extend(promql::metric_names(expr).unwrap_or_default());
            }
        }
    }
    let rules = rules::all_rules();
    let mut problems = Vec::new();
    for rule in &rules {
        let name = rule.name();
        if rule.alert.is_some() {
            if !fires.contains(name) {
                problems.push(format!("{name}: no test where it fires"));
            }
            if !quiet.contains(name) {
                problems.push(format!("{name}: no test where it stays quiet"));
            }
        } else if !read_by_tests.contains(name) {
            problems.push(format!("{name}: no promql_expr_test reads it"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn run(tool: &PathBuf, args: &[&str], files: &[PathBuf]) {
    let output = Command::new(tool)
        .args(args)
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", tool.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{} {args:?} failed:\n{text}",
        tool.display()
    );
    eprintln!("{text}");
}

#[test]
fn promtool_check_rules() {
    let Some(promtool) = require_tool("promtool") else {
        return;
    };
    run(
        &promtool,
        &["check", "rules", "--lint=all", "--lint-fatal"],
        &rules::rule_files(),
    );
}

#[test]
fn promtool_unit_tests() {
    let Some(promtool) = require_tool("promtool") else {
        return;
    };
    let files = test_files();
    assert!(
        files.len() >= 4,
        "expected the SLO, platform and sidecar test files: {files:?}"
    );
    run(&promtool, &["test", "rules"], &files);
}
