//! The quickstart's `app()` with `--no-traffic` semantics: serve it, send the simulated traffic
//! ourselves, and check what `/metrics` says.

use std::collections::HashSet;

use example_quickstart::{Summary, app, drive_traffic};

async fn serve() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app()).await.unwrap() });
    format!("http://{addr}")
}

async fn scrape(base_url: &str) -> String {
    let body = http_get(&format!("{base_url}/metrics")).await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    body
}

/// A bare HTTP/1.1 GET, to keep the test free of another client dependency.
async fn http_get(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!("GET /{path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn metrics_reflect_the_simulated_traffic() {
    let base_url = serve().await;
    let stats = drive_traffic(&base_url, 300, 7).await.unwrap();
    assert_eq!(stats.failed, 0, "{stats:?}");
    assert_eq!(stats.responses, 300);
    assert!(
        stats.client_errors > 0 && stats.server_errors > 0,
        "{stats:?}"
    );

    let text = scrape(&base_url).await;
    let count_lines: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("http_server_request_duration_seconds_count{"))
        .collect();
    let total: f64 = count_lines
        .iter()
        .map(|line| line.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum();
    assert_eq!(total, 300.0, "every response recorded once");

    for expected in [
        r#"http_route="/api/users/{id}""#,
        r#"http_route="/api/orders""#,
        r#"http_route="/api/flaky""#,
        r#"http_route="/api/slow""#,
        r#"http_route="unmatched""#,
        r#"wx_source="wx_client""#,
        r#"wx_source="wx_devtools""#,
        r#"wx_service="quickstart""#,
        r#"wx_access_node="10.8.0.11""#,
        r#"error_type="502""#,
        r#"http_response_status_code="201""#,
        r#"http_response_status_code="422""#,
    ] {
        assert!(
            count_lines.iter().any(|line| line.contains(expected)),
            "no series with {expected}"
        );
    }
    let appids: HashSet<&str> = count_lines
        .iter()
        .filter_map(|line| line.split("wx_appid=\"").nth(1)?.split('"').next())
        .collect();
    assert!(
        appids.contains("wx1b2c3d4e5f6a7b8c") && appids.contains(""),
        "{appids:?}"
    );
    assert!(
        !text.contains("oSimUser"),
        "OpenIDs must not reach /metrics"
    );
    assert!(
        !text.contains("wp-login"),
        "raw paths must not reach /metrics"
    );
    assert!(text.contains("wxcloudrun_cold_start_seconds{wx_service=\"quickstart\"}"));

    // The simulated Mini Programs reported their calls, each user within its budget.
    assert!(
        stats.reports_accepted > 0 && stats.reported_calls > 250,
        "{stats:?}"
    );
    assert_eq!(stats.reports_refused, 0, "{stats:?}");
    let client: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("wxcloudrun_client_request_duration_seconds_count{"))
        .collect();
    let reported: f64 = client
        .iter()
        .map(|line| line.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum();
    assert_eq!(
        reported, stats.reported_calls as f64,
        "every reported call counted once"
    );
    for expected in [
        // Joined by trace id: the route as the server knows it.
        r#"http_route="/api/users/{id}""#,
        r#"http_route="/api/slow""#,
        // The refused uploads never reached the service.
        r#"http_route="unknown""#,
        r#"wx_err_code="-606001""#,
        r#"wx_err_code="102002""#,
        r#"outcome="http_error""#,
    ] {
        assert!(
            client.iter().any(|line| line.contains(expected)),
            "no client series with {expected}"
        );
    }
    for node in ["10.8.0.11", "10.9.0.23"] {
        let overhead = format!("wx_access_node=\"{node}\"");
        assert!(
            text.lines().any(
                |line| line.starts_with("wxcloudrun_client_overhead_seconds_count{")
                    && line.contains(&overhead)
            ),
            "no overhead for {node}"
        );
    }
    assert!(text.contains(r#"wxcloudrun_client_reports_total{result="accepted"}"#));
}

#[tokio::test]
async fn summary_reads_percentiles_per_route() {
    let layer = example_quickstart::telemetry_layer();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = example_quickstart::app_with(&layer);
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    drive_traffic(&format!("http://{addr}"), 120, 3)
        .await
        .unwrap();

    let summary = Summary::from_registry(layer.registry());
    assert_eq!(summary.requests, 120);
    assert!(
        summary.error_ratio > 0.0 && summary.error_ratio < 0.5,
        "{summary:?}"
    );
    let slow = &summary.routes["/api/slow"];
    // /api/slow sleeps at least 20 ms on every call.
    assert!(slow.p50.value >= 0.02, "{slow:?}");
    assert!(slow.p99.value >= slow.p50.value);
    // The layer has no tracer: no sampled request, no exemplar.
    assert_eq!(
        Summary::from_layer(&layer).routes["/api/slow"].slowest,
        None
    );
    assert!(summary.to_string().contains("/api/users/{id}"));
}
