//! Lint of the Grafana dashboards under `dashboards/grafana/`: structure, panels, queries,
//! variables and links, the provisioning example, and (with promtool) a real parse of every query.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use wxcloudrun_telemetry_tests::dashboards::{self, Dashboard, macros, substitute};
use wxcloudrun_telemetry_tests::{contract, dashboards_dir, promql, read, require_tool, rules};

const PANEL_TYPES: &[&str] = &["timeseries", "stat", "table", "heatmap"];
/// Variables every dashboard has, and those of the dashboards on request metrics.
const COMMON_VARIABLES: &[&str] = &["datasource", "wx_service", "instance"];
const REQUEST_VARIABLES: &[&str] = &["wx_appid", "wx_source", "http_route"];
/// The layer's duration buckets (DESIGN.md).
const DURATION_BOUNDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 15.0, 30.0,
];

fn load() -> Vec<Dashboard> {
    let all = dashboards::load_all();
    assert!(
        all.len() >= 3,
        "expected the overview, route and sidecar dashboards"
    );
    all
}

fn fail_on(problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

/// Every string in a JSON value.
fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        Value::Object(map) => map.values().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn dashboards_are_valid_and_uniquely_identified() {
    let mut problems = Vec::new();
    let mut uids = BTreeSet::new();
    for d in load() {
        let file = d.file.display();
        let uid = d.uid();
        if uid.is_empty() || uid.len() > 40 || !uids.insert(uid.to_owned()) {
            problems.push(format!(
                "{file}: uid {uid:?} must be set, unique and at most 40 chars"
            ));
        }
        let title = d.json["title"].as_str().unwrap_or_default();
        if !title.starts_with("WeChat Cloud Run / ") {
            problems.push(format!(
                "{file}: title {title:?} must start with \"WeChat Cloud Run / \""
            ));
        }
        if d.json["schemaVersion"] != 39 {
            problems.push(format!("{file}: schemaVersion must be 39"));
        }
        // Import-only placeholders break file provisioning; ids and versions are Grafana's.
        for key in ["__inputs", "__requires", "version"] {
            if d.json.get(key).is_some() {
                problems.push(format!("{file}: no {key}"));
            }
        }
        if !d.json["id"].is_null() {
            problems.push(format!("{file}: id must be null or absent"));
        }
        if d.json["editable"] != false || d.json["graphTooltip"] != 1 {
            problems.push(format!(
                "{file}: editable false and a shared crosshair (graphTooltip 1)"
            ));
        }
        if !d.json["tags"]
            .as_array()
            .is_some_and(|t| t.contains(&Value::from("wxcloudrun")))
        {
            problems.push(format!(
                "{file}: the shared tag wxcloudrun links the dashboards"
            ));
        }
        let mut ids = BTreeSet::new();
        for panel in d.panels() {
            if !panel["id"].as_u64().is_some_and(|id| ids.insert(id)) {
                problems.push(format!(
                    "{file}: panel {:?} needs a unique id",
                    panel["title"]
                ));
            }
        }
    }
    fail_on(problems);
}

#[test]
fn panels_are_modern_with_unit_description_and_queries() {
    let mut problems = Vec::new();
    for d in load() {
        for panel in d.panels() {
            let kind = panel["type"].as_str().unwrap_or_default();
            if kind == "row" {
                continue;
            }
            let title = panel["title"].as_str().unwrap_or_default();
            let at = format!("{} / {title:?}", d.uid());
            let mut check = |ok: bool, what: &str| {
                if !ok {
                    problems.push(format!("{at}: {what}"));
                }
            };
            check(
                PANEL_TYPES.contains(&kind),
                "panel type must be timeseries, stat, table or heatmap",
            );
            check(!title.is_empty(), "title");
            check(
                panel["description"].as_str().is_some_and(|s| s.len() > 20),
                "description",
            );
            check(
                panel["fieldConfig"]["defaults"]["unit"]
                    .as_str()
                    .is_some_and(|u| !u.is_empty()),
                "unit",
            );
            check(
                panel["datasource"]["uid"] == "${datasource}",
                "datasource ${datasource}",
            );
            let targets = panel["targets"].as_array().cloned().unwrap_or_default();
            check(!targets.is_empty(), "at least one query");
            for target in &targets {
                check(
                    target["datasource"]["uid"] == "${datasource}",
                    "query datasource ${datasource}",
                );
                check(
                    target["expr"]
                        .as_str()
                        .is_some_and(|e| !e.trim().is_empty()),
                    "query expr",
                );
            }
        }
    }
    fail_on(problems);
}

#[test]
fn queries_read_only_contract_metrics_and_recordings() {
    let readme = read(&dashboards_dir().join("README.md"));
    let mut known = contract::all_series(&readme);
    known.extend(rules::all_rules().into_iter().filter_map(|r| r.record));
    let mut problems = Vec::new();
    let mut read_somewhere = BTreeSet::new();
    for d in load() {
        for q in d.queries() {
            match promql::metric_names(&q.expr) {
                Ok(names) if names.is_empty() => {
                    problems.push(format!("{}: reads no metric", q.id()))
                }
                Ok(names) => {
                    for name in names {
                        if !known.contains(&name) {
                            problems.push(format!(
                                "{}: {name} is neither in the contract nor recorded",
                                q.id()
                            ));
                        }
                        read_somewhere.insert(name);
                    }
                }
                Err(e) => problems.push(format!("{}: {e}\n    {}", q.id(), q.expr)),
            }
        }
    }
    // The sidecar dashboard shows every sidecar self-metric the contract defines.
    for (name, kind) in contract::sidecar(&readme) {
        let series = contract::series_names(&[(name.clone(), kind)]);
        if series.is_disjoint(&read_somewhere) {
            problems.push(format!("sidecar metric {name} is on no dashboard"));
        }
    }
    fail_on(problems);
}

/// `rate()` and friends use `$__rate_interval`; only instant queries (stats and tables over the
/// dashboard's time range) may use `$__range`. A fixed range like `[5m]` is empty or jagged at
/// other scrape intervals and zoom levels.
#[test]
fn ranges_use_grafana_interval_macros() {
    let mut problems = Vec::new();
    for d in load() {
        for q in d.queries() {
            let calls = match promql::range_calls(&q.expr) {
                Ok(calls) => calls,
                Err(e) => {
                    problems.push(format!("{}: {e}", q.id()));
                    continue;
                }
            };
            for (function, range) in calls {
                let ok = match function.as_str() {
                    "rate" | "irate" => range == "$__rate_interval",
                    _ => range == "$__rate_interval" || (range == "$__range" && q.instant),
                };
                if !ok {
                    problems.push(format!("{}: {function}(…[{range}])", q.id()));
                }
            }
            if q.expr.contains("rate(") && !q.expr.contains("$__rate_interval") {
                problems.push(format!("{}: rate() without $__rate_interval", q.id()));
            }
        }
    }
    fail_on(problems);
}

#[test]
fn variables_are_defined_and_all_matches_empty_labels() {
    let mut problems = Vec::new();
    for d in load() {
        let variables = d.variables();
        let uid = d.uid().to_owned();
        let mut required: Vec<&str> = COMMON_VARIABLES.to_vec();
        if d.queries()
            .iter()
            .any(|q| q.expr.contains("http_server_request_duration_seconds"))
        {
            required.extend(REQUEST_VARIABLES);
        }
        for name in required {
            if !variables.contains_key(name) {
                problems.push(format!("{uid}: variable {name} missing"));
            }
        }
        for (name, v) in &variables {
            let kind = v["type"].as_str().unwrap_or_default();
            if name == "datasource" {
                if kind != "datasource" || v["query"] != "prometheus" || v["label"] != "Data source"
                {
                    problems.push(format!("{uid}: datasource variable: type datasource, query prometheus, label \"Data source\""));
                }
                continue;
            }
            if kind != "query" || v["datasource"]["uid"] != "${datasource}" || v["refresh"] != 2 {
                problems.push(format!("{uid}: {name}: a query variable on ${{datasource}} refreshed on time range change"));
            }
            // AppID, source and route are empty for calls that did not come through WeChat:
            // "All" must match the empty value too.
            if REQUEST_VARIABLES.contains(&name.as_str())
                && v["includeAll"] == true
                && v["allValue"] != ".*"
            {
                problems.push(format!("{uid}: {name}: allValue must be .*"));
            }
        }
        // Every $name, ${name}, ${name:format} and [[name]] refers to a variable or a built-in.
        for text in strings(&d.json) {
            for name in dashboards::variable_refs(text) {
                let builtin = name.starts_with("__") || name.chars().all(|c| c.is_ascii_digit());
                if !builtin && !variables.contains_key(&name) {
                    problems.push(format!("{uid}: ${name} is not a variable"));
                }
            }
        }
    }
    fail_on(problems);
}

#[test]
fn links_point_at_existing_dashboards() {
    let all = load();
    let uids: BTreeSet<&str> = all.iter().map(Dashboard::uid).collect();
    let mut problems = Vec::new();
    let mut linked = 0;
    for d in &all {
        for text in strings(&d.json) {
            for rest in text.split("/d/").skip(1) {
                let target = rest.split(['/', '?']).next().unwrap_or_default();
                linked += 1;
                if !uids.contains(target) {
                    problems.push(format!("{}: link to unknown dashboard {target}", d.uid()));
                }
            }
        }
    }
    assert!(linked > 0, "the overview links to the route drill-down");
    fail_on(problems);
}

/// The latency threshold is one bucket bound everywhere: rules, dashboards and the recording
/// that documents it. Integer bounds are matched as a regex because Prometheus 3 writes `10.0`.
#[test]
fn le_matchers_are_bucket_bounds_and_agree_with_the_threshold() {
    let rules = rules::all_rules();
    let threshold = rules
        .iter()
        .find(|r| r.name() == "wxcloudrun:slo_latency_threshold:seconds")
        .and_then(|r| {
            r.expr
                .trim()
                .strip_prefix("vector(")?
                .strip_suffix(')')?
                .parse::<f64>()
                .ok()
        })
        .expect("the rules record wxcloudrun:slo_latency_threshold:seconds as vector(<number>)");
    assert!(
        DURATION_BOUNDS.contains(&threshold),
        "threshold {threshold} is not a bucket bound"
    );
    let mut exprs: Vec<(String, String)> = rules
        .iter()
        .map(|r| (r.name().to_owned(), r.expr.clone()))
        .collect();
    for d in load() {
        exprs.extend(d.queries().into_iter().map(|q| (q.id(), q.expr)));
    }
    let mut problems = Vec::new();
    let mut exact = 0;
    for (at, expr) in exprs {
        for (op, value) in promql::le_matchers(&expr).unwrap_or_default() {
            if op == "=" {
                exact += 1;
                if value.parse::<f64>().ok() != Some(threshold) || !value.contains('.') {
                    problems.push(format!(
                        "{at}: le=\"{value}\" must be the fractional threshold {threshold}"
                    ));
                }
            } else if op == "=~" {
                let bound = value.split('(').next().unwrap_or_default().parse::<f64>();
                if !bound.is_ok_and(|b| DURATION_BOUNDS.contains(&b)) {
                    problems.push(format!("{at}: le=~\"{value}\" is not a bucket bound"));
                }
            }
        }
    }
    assert!(
        exact >= 8,
        "the slow-ratio rules and the threshold panel use le=\"{threshold}\""
    );
    fail_on(problems);
}

/// The one histogram whose series carry exemplars (the layer's duration histogram).
const EXEMPLAR_HISTOGRAM: &str = "http_server_request_duration_seconds_bucket";

/// Time series of the duration histogram's quantiles ask for exemplars (a dot per sampled
/// request, linking to its trace); no other query does: stat and table panels cannot show them,
/// and no other family has any.
#[test]
fn latency_panels_ask_for_exemplars() {
    let mut problems = Vec::new();
    let mut latency_targets = BTreeMap::new();
    for d in load() {
        for panel in d.panels() {
            let title = panel["title"].as_str().unwrap_or_default();
            let timeseries = panel["type"] == "timeseries";
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap_or_default();
                let at = format!("{} / {title} / {}", d.uid(), target["refId"]);
                let reads = promql::metric_names(expr).unwrap_or_default();
                let latency = timeseries
                    && target["instant"].as_bool() != Some(true)
                    && expr.contains("histogram_quantile(")
                    && reads.contains(EXEMPLAR_HISTOGRAM);
                let asks = target["exemplar"].as_bool() == Some(true);
                if latency {
                    *latency_targets.entry(d.uid().to_owned()).or_insert(0) += 1;
                }
                match (latency, asks) {
                    (true, false) => problems.push(format!("{at}: set \"exemplar\": true")),
                    (false, true) => problems.push(format!(
                        "{at}: exemplars only on time series of {EXEMPLAR_HISTOGRAM} quantiles"
                    )),
                    _ => {}
                }
                if latency
                    && !panel["description"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("exemplar")
                {
                    problems.push(format!(
                        "{at}: the description should say what the dots are"
                    ));
                }
            }
        }
    }
    for uid in ["wxcloudrun-overview", "wxcloudrun-route"] {
        if latency_targets.get(uid).copied().unwrap_or(0) < 3 {
            problems.push(format!(
                "{uid}: expected its p50/p90/p99 panel to ask for exemplars"
            ));
        }
    }
    fail_on(problems);
}

/// The Prometheus data source links exemplars' `trace_id` to a tracing data source that the
/// example also provisions.
#[test]
fn provisioning_links_exemplars_to_a_tracing_data_source() {
    let path = dashboards_dir().join("grafana/provisioning/datasources/wxcloudrun.yml");
    let datasources: serde_yaml::Value = serde_yaml::from_str(&read(&path)).expect("YAML");
    let all = datasources["datasources"].as_sequence().expect("a list");
    let prometheus = &all[0];
    let destinations = prometheus["jsonData"]["exemplarTraceIdDestinations"]
        .as_sequence()
        .expect("exemplarTraceIdDestinations on the Prometheus data source");
    let link = destinations
        .iter()
        .find(|d| d["name"].as_str() == Some("trace_id"))
        .expect("a destination for the exemplar label trace_id");
    let uid = link["datasourceUid"].as_str().expect("datasourceUid");
    let tracing = all
        .iter()
        .find(|ds| ds["uid"].as_str() == Some(uid))
        .unwrap_or_else(|| panic!("no data source with uid {uid} in the example"));
    assert!(
        matches!(tracing["type"].as_str(), Some("tempo" | "jaeger")),
        "{uid} is a tracing data source: {:?}",
        tracing["type"]
    );
}

#[test]
fn provisioning_example_matches_the_dashboards() {
    let dir = dashboards_dir().join("grafana/provisioning");
    let datasources: serde_yaml::Value =
        serde_yaml::from_str(&read(&dir.join("datasources/wxcloudrun.yml"))).expect("YAML");
    let ds = &datasources["datasources"][0];
    let uid = ds["uid"]
        .as_str()
        .expect("the provisioned data source has a fixed uid");
    assert_eq!(ds["type"].as_str(), Some("prometheus"));
    assert!(
        ds["jsonData"]["timeInterval"].as_str().is_some(),
        "timeInterval = the scrape interval"
    );
    for d in load() {
        let current = &d.variables()["datasource"]["current"]["value"];
        assert_eq!(
            current,
            uid,
            "{}: the datasource variable defaults to the provisioned uid",
            d.uid()
        );
    }
    let providers: serde_yaml::Value =
        serde_yaml::from_str(&read(&dir.join("dashboards/wxcloudrun.yml"))).expect("YAML");
    let provider = &providers["providers"][0];
    assert_eq!(provider["type"].as_str(), Some("file"));
    assert!(
        provider["options"]["path"]
            .as_str()
            .is_some_and(|p| p.starts_with('/'))
    );
}

/// The lexer above is a lint; promtool parses every query for real (macros substituted as
/// Grafana would, variables as "All").
#[test]
fn every_query_parses_with_promtool() {
    let Some(promtool) = require_tool("promtool") else {
        return;
    };
    let mut rules = String::from("groups:\n  - name: dashboard-queries\n    rules:\n");
    let mut count = 0;
    for d in load() {
        let mut values: BTreeMap<String, String> = macros("1m", "1h");
        values.extend(d.all_values());
        for q in d.queries() {
            let expr = substitute(&q.expr, &values);
            let quoted = serde_json::to_string(&expr).expect("a string");
            rules.push_str(&format!(
                "      - record: dashboard:query_{count}:check\n        expr: {quoted}\n"
            ));
            count += 1;
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("queries.rules.yml");
    std::fs::write(&file, rules).expect("write");
    let output = std::process::Command::new(promtool)
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("run promtool");
    assert!(
        output.status.success(),
        "promtool rejects a dashboard query:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("promtool parsed {count} dashboard queries");
}
