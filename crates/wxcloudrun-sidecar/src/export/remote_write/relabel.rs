//! `write_relabel_configs`, as Prometheus applies them to each series before it is sent: the
//! rules run in order on the series' labels (`__name__` included, `le`/`quantile` too), and a
//! series a rule drops is not sent to that backend.
//!
//! Supported actions: `keep`, `drop` (on the joined `source_labels`), `labeldrop`, `labelkeep`
//! (on label names). Regexes are RE2 syntax and anchored at both ends, as in Prometheus.
//! `__name__` is never removed by `labeldrop`/`labelkeep`: a series without a name is refused
//! by every receiver.

use regex::Regex;

/// One rule.
#[derive(Clone, Debug)]
pub struct RelabelRule {
    action: Action,
    source_labels: Vec<String>,
    separator: String,
    regex: Regex,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Keep,
    Drop,
    LabelDrop,
    LabelKeep,
}

/// The default `regex`: everything.
pub const DEFAULT_REGEX: &str = "(.*)";
/// The default `separator` between joined source label values.
pub const DEFAULT_SEPARATOR: &str = ";";

impl RelabelRule {
    /// A rule from its configuration fields; the error names the field at fault.
    pub fn new(
        action: Option<&str>,
        source_labels: Vec<String>,
        separator: Option<&str>,
        regex: Option<&str>,
    ) -> Result<RelabelRule, String> {
        let action = match action.unwrap_or("replace") {
            "keep" => Action::Keep,
            "drop" => Action::Drop,
            "labeldrop" => Action::LabelDrop,
            "labelkeep" => Action::LabelKeep,
            other => {
                let default = if action.is_none() {
                    " (the default action)"
                } else {
                    ""
                };
                return Err(format!(
                    "action {other:?}{default} is not supported; use keep, drop, labeldrop or labelkeep"
                ));
            }
        };
        if matches!(action, Action::Keep | Action::Drop) && source_labels.is_empty() {
            return Err(format!(
                "action {action:?} needs source_labels",
                action = action.name()
            ));
        }
        let pattern = regex.unwrap_or(DEFAULT_REGEX);
        let regex = Regex::new(&format!("^(?:{pattern})$"))
            .map_err(|err| format!("regex {pattern:?}: {err}"))?;
        Ok(RelabelRule {
            action,
            source_labels,
            separator: separator.unwrap_or(DEFAULT_SEPARATOR).to_owned(),
            regex,
        })
    }
}

impl RelabelRule {
    /// The rule as the file writes it: `(action, source_labels, separator, regex)`, the regex
    /// without the anchors added here.
    pub fn parts(&self) -> (&'static str, &[String], &str, &str) {
        let anchored = self.regex.as_str();
        let pattern = anchored
            .strip_prefix("^(?:")
            .and_then(|p| p.strip_suffix(")$"))
            .unwrap_or(anchored);
        (
            self.action.name(),
            &self.source_labels,
            &self.separator,
            pattern,
        )
    }
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::LabelDrop => "labeldrop",
            Action::LabelKeep => "labelkeep",
        }
    }
}

/// The rules of one exporter.
#[derive(Clone, Debug, Default)]
pub struct Relabel {
    rules: Vec<RelabelRule>,
}

impl Relabel {
    /// The rules, in order.
    pub fn new(rules: Vec<RelabelRule>) -> Self {
        Relabel { rules }
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[RelabelRule] {
        &self.rules
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Runs the rules on one series' labels (sorted by name, `__name__` among them); `false`
    /// when the series is dropped.
    pub fn apply(&self, labels: &mut Vec<(&str, &str)>, joined: &mut String) -> bool {
        for rule in &self.rules {
            match rule.action {
                Action::Keep | Action::Drop => {
                    joined.clear();
                    for (i, name) in rule.source_labels.iter().enumerate() {
                        if i > 0 {
                            joined.push_str(&rule.separator);
                        }
                        let value = labels
                            .iter()
                            .find(|(label, _)| label == name)
                            .map_or("", |(_, value)| value);
                        joined.push_str(value);
                    }
                    let matched = rule.regex.is_match(joined);
                    if matched == (rule.action == Action::Drop) {
                        return false;
                    }
                }
                Action::LabelDrop => {
                    labels.retain(|(name, _)| *name == "__name__" || !rule.regex.is_match(name))
                }
                Action::LabelKeep => {
                    labels.retain(|(name, _)| *name == "__name__" || rule.regex.is_match(name))
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(action: &str, sources: &[&str], regex: &str) -> RelabelRule {
        RelabelRule::new(
            Some(action),
            sources.iter().map(|s| (*s).to_owned()).collect(),
            None,
            Some(regex),
        )
        .unwrap()
    }

    fn run(relabel: &Relabel, labels: &[(&'static str, &'static str)]) -> Option<Vec<String>> {
        let mut labels = labels.to_vec();
        let mut joined = String::new();
        relabel
            .apply(&mut labels, &mut joined)
            .then(|| labels.iter().map(|(k, v)| format!("{k}={v}")).collect())
    }

    #[test]
    fn keep_and_drop_match_the_whole_joined_value() {
        let drop = Relabel::new(vec![rule("drop", &["__name__"], "process_.*")]);
        assert_eq!(
            run(&drop, &[("__name__", "process_cpu_seconds_total")]),
            None
        );
        // Anchored: a name that only contains the pattern stays.
        assert!(run(&drop, &[("__name__", "my_process_cpu")]).is_some());
        let keep = Relabel::new(vec![rule(
            "keep",
            &["__name__", "route"],
            "http_.*;/api/.*",
        )]);
        assert!(run(&keep, &[("__name__", "http_x"), ("route", "/api/a")]).is_some());
        assert_eq!(run(&keep, &[("__name__", "http_x"), ("route", "/b")]), None);
        // A missing label joins as the empty string.
        assert_eq!(run(&keep, &[("__name__", "http_x")]), None);
        let keep_missing = Relabel::new(vec![rule("keep", &["tenant"], "")]);
        assert!(run(&keep_missing, &[("__name__", "x")]).is_some());
    }

    #[test]
    fn labeldrop_and_labelkeep_never_remove_the_name() {
        let relabel = Relabel::new(vec![rule("labeldrop", &[], "instance|__name__")]);
        assert_eq!(
            run(
                &relabel,
                &[("__name__", "up"), ("instance", "h"), ("job", "j")]
            ),
            Some(vec!["__name__=up".to_owned(), "job=j".to_owned()])
        );
        let relabel = Relabel::new(vec![rule("labelkeep", &[], "job")]);
        assert_eq!(
            run(
                &relabel,
                &[("__name__", "up"), ("instance", "h"), ("job", "j")]
            ),
            Some(vec!["__name__=up".to_owned(), "job=j".to_owned()])
        );
    }

    #[test]
    fn rules_run_in_order() {
        // After the labeldrop, the keep rule no longer sees `tier`.
        let relabel = Relabel::new(vec![
            rule("labeldrop", &[], "tier"),
            rule("keep", &["tier"], "web"),
        ]);
        assert_eq!(run(&relabel, &[("__name__", "x"), ("tier", "web")]), None);
    }

    #[test]
    fn bad_rules_name_what_is_wrong() {
        let err = RelabelRule::new(None, vec!["a".to_owned()], None, None).unwrap_err();
        assert!(err.contains("\"replace\" (the default action)"), "{err}");
        let err = RelabelRule::new(Some("hashmod"), vec![], None, None).unwrap_err();
        assert!(err.contains("hashmod"), "{err}");
        let err = RelabelRule::new(Some("drop"), vec![], None, Some("x")).unwrap_err();
        assert!(err.contains("source_labels"), "{err}");
        let err = RelabelRule::new(Some("drop"), vec!["a".into()], None, Some("(")).unwrap_err();
        assert!(err.contains("regex"), "{err}");
    }
}
