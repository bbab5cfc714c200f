//! The Grafana dashboards under `dashboards/grafana/`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

/// One dashboard file.
#[derive(Debug)]
pub struct Dashboard {
    /// Where it was read from.
    pub file: PathBuf,
    /// The dashboard model, as Grafana imports it.
    pub json: Value,
}

/// One query of one panel.
#[derive(Clone, Debug)]
pub struct Query {
    /// The dashboard's uid.
    pub dashboard: String,
    /// The panel's title.
    pub panel: String,
    /// The target's `refId`.
    pub ref_id: String,
    /// The PromQL expression, dashboard variables still in it.
    pub expr: String,
    /// An instant query (stat and table panels over `$__range`); otherwise a range query.
    pub instant: bool,
}

impl Query {
    /// `dashboard uid / panel title / refId`, for messages and the expected-empty list.
    pub fn id(&self) -> String {
        format!("{} / {} / {}", self.dashboard, self.panel, self.ref_id)
    }
}

/// `dashboards/grafana/*.json`, parsed. Invalid JSON fails here, naming the file.
pub fn load_all() -> Vec<Dashboard> {
    crate::files_ending(&crate::dashboards_dir().join("grafana"), ".json")
        .into_iter()
        .map(|file| {
            let json = serde_json::from_str(&crate::read(&file))
                .unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", file.display()));
            Dashboard { file, json }
        })
        .collect()
}

impl Dashboard {
    /// The dashboard's `uid` (empty when it has none).
    pub fn uid(&self) -> &str {
        self.json["uid"].as_str().unwrap_or_default()
    }

    /// Every panel, including those nested in collapsed rows; rows themselves included.
    pub fn panels(&self) -> Vec<&Value> {
        fn walk<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
            for panel in panels.as_array().into_iter().flatten() {
                out.push(panel);
                walk(&panel["panels"], out);
            }
        }
        let mut out = Vec::new();
        walk(&self.json["panels"], &mut out);
        out
    }

    /// The template variables by name.
    pub fn variables(&self) -> BTreeMap<String, &Value> {
        self.json["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| Some((v["name"].as_str()?.to_owned(), v)))
            .collect()
    }

    /// Every Prometheus query of every panel.
    pub fn queries(&self) -> Vec<Query> {
        self.panels()
            .into_iter()
            .flat_map(|panel| {
                let title = panel["title"].as_str().unwrap_or_default().to_owned();
                panel["targets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(move |target| Query {
                        dashboard: self.uid().to_owned(),
                        panel: title.clone(),
                        ref_id: target["refId"].as_str().unwrap_or_default().to_owned(),
                        expr: target["expr"].as_str().unwrap_or_default().to_owned(),
                        instant: target["instant"].as_bool() == Some(true),
                    })
            })
            .collect()
    }

    /// What each variable means when "All" is selected: its `allValue`, else `.*` (Grafana
    /// then lists every value found, which matches the same series).
    pub fn all_values(&self) -> BTreeMap<String, String> {
        self.variables()
            .into_iter()
            .map(|(name, v)| {
                let all = v["allValue"].as_str().unwrap_or(".*").to_owned();
                (name, all)
            })
            .collect()
    }
}

/// A variable reference at the start of `after_dollar` (the text after a `$`): its name and
/// length (`name`, `{name}`, `{name:format}`, `{__data.fields.x}`).
fn variable_at(after_dollar: &str) -> Option<(&str, usize)> {
    match after_dollar.strip_prefix('{') {
        Some(inner) => {
            let close = inner.find('}')?;
            let name = inner[..close].split([':', '.']).next().unwrap_or_default();
            Some((name, close + 2))
        }
        None => {
            let end = after_dollar
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after_dollar.len());
            Some((&after_dollar[..end], end)).filter(|(name, _)| !name.is_empty())
        }
    }
}

/// The names of the variables `text` refers to as `$name`, `${name…}` or `[[name…]]`.
pub fn variable_refs(text: &str) -> Vec<String> {
    let dollar = text
        .split('$')
        .skip(1)
        .filter_map(variable_at)
        .map(|(name, _)| name);
    let brackets = text
        .split("[[")
        .skip(1)
        .filter_map(|s| s.split("]]").next())
        .map(|inner| inner.split(':').next().unwrap_or_default());
    dollar.chain(brackets).map(str::to_owned).collect()
}

/// Replaces Grafana's macros and variables (`$name`, `${name}`, `${name:format}`) in `expr`
/// from `values`; unknown names (such as `${1}` in `label_replace`) stay as they are.
pub fn substitute(expr: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        match variable_at(after).and_then(|(name, len)| Some((values.get(name)?, len))) {
            Some((value, len)) => {
                out.push_str(value);
                rest = &after[len..];
            }
            None => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Grafana's built-in macros with the values a test substitutes for them.
pub fn macros(rate_interval: &str, range: &str) -> BTreeMap<String, String> {
    [
        ("__rate_interval", rate_interval),
        ("__interval", rate_interval),
        ("__range", range),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_macros_and_variables_but_not_regex_groups() {
        let mut values = macros("1m", "5m");
        values.insert("wx_service".into(), ".+".into());
        let expr = r#"label_replace(rate(x{s=~"$wx_service", t=~"${wx_service:regex}"}[$__rate_interval]), "c", "${1}xx", "l", "(.)") offset $__range $unknown"#;
        assert_eq!(
            substitute(expr, &values),
            r#"label_replace(rate(x{s=~".+", t=~".+"}[1m]), "c", "${1}xx", "l", "(.)") offset 5m $unknown"#
        );
    }

    #[test]
    fn finds_variable_references_in_prose_and_urls() {
        let text = "The service's p99. /d/x?var-a=${a}&${b:queryparam}&x=${__data.fields.c} $d [[e:text]] costs $ 5";
        assert_eq!(variable_refs(text), ["a", "b", "__data", "d", "e"]);
    }
}
