//! The load generator: `connections` keep-alive HTTP/1.1 connections (hyper's client connection
//! API over `TcpStream`), each sending requests back to back — a closed loop at fixed
//! concurrency — for a warm-up and then a measured window.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, HOST, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::histogram::Histogram;
use crate::sys;

/// How many distinct user ids the requests cycle through (all match `/users/{id}`).
const DISTINCT_PATHS: usize = 64;

/// How long past the end of the window a connection may take to finish before it is abandoned.
const GRACE: Duration = Duration::from_secs(5);

/// The load to apply.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    /// Concurrent keep-alive connections.
    pub connections: usize,
    /// Load before the window, not counted.
    pub warmup: Duration,
    /// The measured window.
    pub measure: Duration,
}

/// What one run of the load generator against one server saw.
#[derive(Debug, Default)]
pub struct LoadResult {
    /// Requests completed inside the measured window.
    pub completed: u64,
    /// Requests completed at any time (warm-up included).
    pub total: u64,
    /// Failed connections, transport errors and non-200 responses.
    pub errors: u64,
    /// The first error seen, for the report.
    pub first_error: Option<String>,
    /// Latency of the requests completed inside the window.
    pub latency: Histogram,
    /// The window's actual length.
    pub window: Duration,
    /// CPU time used during the window by the server thread, this thread, the OTLP sink's
    /// thread and the whole process.
    pub server_cpu: Option<Duration>,
    /// This (the load generator's) thread (see `server_cpu`).
    pub client_cpu: Option<Duration>,
    /// The OTLP sink's thread (see `server_cpu`).
    pub sink_cpu: Option<Duration>,
    /// The whole process (see `server_cpu`).
    pub process_cpu: Option<Duration>,
    /// The server thread's CPU time split into user and kernel time (10 ms resolution).
    pub server_user_system: Option<(Duration, Duration)>,
    /// Share of the window the server's and the load generator's cores were busy, with anything
    /// (other processes included), when pinned.
    pub server_core_busy: Option<f64>,
    /// The load generator's core (see `server_core_busy`).
    pub loadgen_core_busy: Option<f64>,
}

impl LoadResult {
    /// Requests per second over the window.
    pub fn rps(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 {
            self.completed as f64 / secs
        } else {
            0.0
        }
    }

    fn absorb(&mut self, conn: ConnStats) {
        self.completed += conn.completed;
        self.total += conn.total;
        self.errors += conn.errors;
        if self.first_error.is_none() {
            self.first_error = conn.first_error;
        }
        self.latency.merge(&conn.latency);
    }
}

#[derive(Default)]
struct ConnStats {
    completed: u64,
    total: u64,
    errors: u64,
    first_error: Option<String>,
    latency: Histogram,
}

impl ConnStats {
    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what);
        }
    }
}

/// The headers the WeChat Cloud Run gateway hands a `wx.cloud.callContainer` request.
fn gateway_headers(addr: SocketAddr) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: &'static str| {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    };
    put("x-wx-source", "wx_client");
    put("x-wx-openid", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o");
    put("x-wx-appid", "wx1b2c3d4e5f6a7b8c");
    put("x-wx-env", "prod-4g8x2k1c0a9b7d3e");
    put("x-forwarded-for", "198.51.100.7, 10.8.0.11");
    headers.insert(
        USER_AGENT,
        HeaderValue::from_static(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 \
             (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI",
        ),
    );
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    if let Ok(host) = HeaderValue::from_str(&addr.to_string()) {
        headers.insert(HOST, host);
    }
    headers
}

/// The threads and cores whose CPU time is measured over the window.
#[derive(Clone, Copy, Debug, Default)]
pub struct Watch {
    /// Kernel ids of the serving thread and of the OTLP sink's.
    pub server_tid: Option<i32>,
    /// The OTLP sink's thread (see `server_tid`).
    pub sink_tid: Option<i32>,
    /// The server's and the load generator's CPUs, when pinned.
    pub cores: Option<(usize, usize)>,
}

/// Runs `load` against `addr` on the current (single-threaded) runtime, measuring the CPU time
/// of what `watch` names over the window.
pub async fn drive(addr: SocketAddr, load: Load, watch: Watch) -> LoadResult {
    let Watch {
        server_tid,
        sink_tid,
        cores,
    } = watch;
    let headers = gateway_headers(addr);
    let paths: Arc<[Uri]> = (0..DISTINCT_PATHS)
        .map(|i| Uri::try_from(format!("/users/{}", 1000 + i * 37)).expect("a valid path"))
        .collect();
    let start = Instant::now();
    let warmup_end = start + load.warmup;
    let end = warmup_end + load.measure;
    let tasks: Vec<_> = (0..load.connections.max(1))
        .map(|index| {
            let connection =
                connection(addr, headers.clone(), paths.clone(), index, warmup_end, end);
            tokio::spawn(async move {
                match tokio::time::timeout_at(end + GRACE, connection).await {
                    Ok(stats) => stats,
                    Err(_) => {
                        let mut stats = ConnStats::default();
                        stats.error("connection did not finish in time".into());
                        stats
                    }
                }
            })
        })
        .collect();

    let own_tid = sys::current_thread_id();
    let sample = || {
        (
            server_tid.and_then(sys::thread_cpu_time),
            own_tid.and_then(sys::thread_cpu_time),
            sys::process_cpu_time(),
            Instant::now(),
            cores.and_then(|(server, _)| sys::cpu_ticks(server)),
            cores.and_then(|(_, client)| sys::cpu_ticks(client)),
            sink_tid.and_then(sys::thread_cpu_time),
            server_tid.and_then(sys::thread_user_system_time),
        )
    };
    let busy = |after: Option<(u64, u64)>, before: Option<(u64, u64)>| {
        let ((busy_a, total_a), (busy_b, total_b)) = after.zip(before)?;
        let total = total_a.checked_sub(total_b).filter(|&t| t > 0)?;
        Some(busy_a.saturating_sub(busy_b) as f64 / total as f64)
    };
    tokio::time::sleep_until(warmup_end).await;
    let before = sample();
    tokio::time::sleep_until(end).await;
    let after = sample();

    let mut result = LoadResult {
        window: after.3 - before.3,
        server_cpu: after.0.zip(before.0).map(|(a, b)| a.saturating_sub(b)),
        client_cpu: after.1.zip(before.1).map(|(a, b)| a.saturating_sub(b)),
        process_cpu: after.2.zip(before.2).map(|(a, b)| a.saturating_sub(b)),
        sink_cpu: after.6.zip(before.6).map(|(a, b)| a.saturating_sub(b)),
        server_user_system: after
            .7
            .zip(before.7)
            .map(|((ua, sa), (ub, sb))| (ua.saturating_sub(ub), sa.saturating_sub(sb))),
        server_core_busy: busy(after.4, before.4),
        loadgen_core_busy: busy(after.5, before.5),
        ..LoadResult::default()
    };
    for task in tasks {
        match task.await {
            Ok(stats) => result.absorb(stats),
            Err(err) => {
                result.errors += 1;
                result
                    .first_error
                    .get_or_insert_with(|| format!("connection task failed: {err}"));
            }
        }
    }
    result
}

async fn connection(
    addr: SocketAddr,
    headers: HeaderMap,
    paths: Arc<[Uri]>,
    index: usize,
    warmup_end: Instant,
    end: Instant,
) -> ConnStats {
    let mut stats = ConnStats::default();
    let stream = match TcpStream::connect(addr).await {
        Ok(stream) => stream,
        Err(err) => {
            stats.error(format!("connect: {err}"));
            return stats;
        }
    };
    let _ = stream.set_nodelay(true);
    let (sender, conn) = match hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(
        TokioIo::new(stream),
    )
    .await
    {
        Ok(pair) => pair,
        Err(err) => {
            stats.error(format!("handshake: {err}"));
            return stats;
        }
    };
    // The connection is driven by this same task (not a spawned one): no cross-task wake-up per
    // request, which keeps the load generator cheap.
    let mut conn = std::pin::pin!(conn);
    let mut conn_result = None;
    {
        let requests =
            send_back_to_back(sender, &mut stats, paths, headers, index, warmup_end, end);
        let mut requests = std::pin::pin!(requests);
        loop {
            tokio::select! {
                biased;
                result = &mut conn, if conn_result.is_none() => conn_result = Some(result),
                () = &mut requests => break,
            }
        }
    }
    // The sender is gone: hyper closes the connection and the connection future ends.
    let conn_result = match conn_result {
        Some(result) => result,
        None => conn.await,
    };
    if let Err(err) = conn_result {
        stats.error(format!("connection: {err}"));
    }
    stats
}

async fn send_back_to_back(
    mut sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    stats: &mut ConnStats,
    paths: Arc<[Uri]>,
    headers: HeaderMap,
    index: usize,
    warmup_end: Instant,
    end: Instant,
) {
    let mut next = index;
    loop {
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        if let Err(err) = sender.ready().await {
            stats.error(format!("connection closed: {err}"));
            break;
        }
        let mut request = Request::new(Empty::new());
        *request.uri_mut() = paths[next % paths.len()].clone();
        *request.headers_mut() = headers.clone();
        next += 1;
        let response = match sender.send_request(request).await {
            Ok(response) => response,
            Err(err) => {
                stats.error(format!("request: {err}"));
                break;
            }
        };
        let status = response.status();
        // Read the body frame by frame, counting bytes, without collecting it.
        let mut body = response.into_body();
        let mut length = 0;
        let mut failed = None;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => length += frame.data_ref().map_or(0, Bytes::len),
                Err(err) => {
                    failed = Some(err);
                    break;
                }
            }
        }
        let done = Instant::now();
        if let Some(err) = failed {
            stats.error(format!("response body: {err}"));
            break;
        }
        if status == StatusCode::OK && length > 0 {
            stats.total += 1;
            if done >= warmup_end && done < end {
                stats.completed += 1;
                stats.latency.record(done - sent);
            }
        } else {
            stats.error(format!("status {status} with {length} body bytes"));
        }
    }
}
