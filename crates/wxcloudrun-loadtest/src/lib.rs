//! Loopback load test: the end-to-end throughput and tail latency of `wxcloudrun-telemetry`'s
//! layer against a bare axum service and the popular alternatives.
//!
//! Each variant is the same axum 0.8 `Router` (`GET /users/{id}` → a small JSON body) with one
//! layer added through `Router::layer`, served by a current-thread runtime on a thread pinned to
//! one core. A load generator of its own (hyper's HTTP/1.1 client connections, keep-alive, a
//! fixed number of connections sending back to back) runs on a second core, also current-thread.
//! Variants are interleaved over several rounds, the order rotated each round, and each variant's
//! median over the rounds is reported.
//!
//! Variants:
//! - `bare`: no layer;
//! - `wx_metrics`: `WxTelemetryLayer`, metrics only;
//! - `wx_sampled_out`: `WxTelemetryLayer` with the tracer `Telemetry::new` makes without an
//!   endpoint: every span sampled out, ids only;
//! - `wx_traces_dropped`: `WxTelemetryLayer` with an always-on tracer whose batch processor hands
//!   spans to an exporter that drops them (the cost of recording and batching, no encoding);
//! - `wx_traces`: `WxTelemetryLayer` with an always-on tracer from `Telemetry::new`, spans batched
//!   over OTLP/HTTP to an in-process sink (the server span the layer's own, encoded as it
//!   records; the span processor and exporter the layer's own);
//! - `wx_traces_sdk_spans`: the same with SDK server spans, encoded as they end by the layer's
//!   span processor (what `wx_traces` was before its server span was its own);
//! - `wx_traces_sdk_batch`: SDK spans and the SDK's `BatchSpanProcessor` in front of the same
//!   exporter (what `wx_traces` was before its span processor was ours);
//! - `wx_traces_otlp_crate`: the same layer, always on, its spans batched to opentelemetry-otlp's
//!   HTTP exporter and the same sink (what `wx_traces` was before its exporter was ours);
//! - `axum_prometheus`: `axum_prometheus::PrometheusMetricLayer::pair()`;
//! - `trace_otel`: tower-http's `TraceLayer::new_for_http()` under a `tracing-opentelemetry`
//!   subscriber (thread-local to the server thread), always on, batched over OTLP/HTTP to the
//!   same sink.
//!
//! No variant logs: there is no global `tracing` subscriber. No variant is scraped.
//!
//! Threads: the exporters' threads (batch span processors, the OTLP HTTP client) are started by
//! the server thread and so share its core by default (`--exporter-threads anywhere` lets them
//! roam). The OTLP sink has a thread of its own on the load generator's core: on the load
//! generator's runtime each export would stall every connection and idle the server.
//!
//! Besides the result lines, `# detail` lines give each variant's CPU shares (server thread,
//! exporter threads, load generator, sink, and each pinned core as a whole, other processes
//! included), the server thread's user and kernel CPU per request, and for the traced variants
//! the spans received per request served (below 1 when spans were dropped).

pub mod client;
pub mod histogram;
pub mod server;
pub mod sink;
pub mod sys;
mod variant;

use std::fmt::Write as _;
use std::time::Duration;

use tokio::sync::oneshot;

pub use crate::variant::Variant;

use crate::client::{Load, LoadResult};

/// The settings of a run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Rounds; each runs every variant once, interleaved, so drift hits them all alike.
    pub rounds: usize,
    /// The measured window per variant per round.
    pub seconds: Duration,
    /// Load before the window, not counted.
    pub warmup: Duration,
    /// Concurrent keep-alive connections of the load generator.
    pub connections: usize,
    /// The servers to compare, in the order run.
    pub variants: Vec<Variant>,
    /// Pin the server and the load generator to one core each (when there are two).
    pub pin: bool,
    /// Where the exporter threads run when pinned.
    pub exporters: server::ExporterThreads,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            rounds: 5,
            seconds: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            connections: 32,
            variants: Variant::ALL.to_vec(),
            pin: true,
            exporters: server::ExporterThreads::ServerCore,
        }
    }
}

/// One variant in one round.
#[derive(Debug)]
pub struct Sample {
    /// The round it ran in (from 0).
    pub round: usize,
    /// What the load generator measured.
    pub load: LoadResult,
    /// Spans the sink received for this run (after the variant's flush).
    pub spans: u64,
}

/// Everything a run measured, per variant in the order asked for.
#[derive(Debug)]
pub struct Report {
    /// The settings it ran with.
    pub options: Options,
    /// `(server CPU, load generator CPU)` when pinned.
    pub pinned: Option<(usize, usize)>,
    /// Each variant's samples, one per round.
    pub results: Vec<(Variant, Vec<Sample>)>,
    /// Export requests the OTLP sink could not decode (0 unless an exporter is broken).
    pub sink_rejected: u64,
}

/// The median of `values` (mean of the middle two for an even count); `None` when empty.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 0 {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

/// A variant's summary over the rounds.
#[derive(Clone, Debug)]
pub struct Summary {
    /// The variant summarised.
    pub variant: Variant,
    /// Median requests per second over the rounds.
    pub rps: f64,
    /// `rps / bare rps`, when `bare` ran.
    pub ratio: Option<f64>,
    /// Median 99th-percentile latency over the rounds, µs.
    pub p99_us: f64,
    /// Median median latency over the rounds, µs.
    pub p50_us: f64,
    /// Errors over all rounds.
    pub errors: u64,
    /// Requests completed in the measured windows of all rounds.
    pub completed: u64,
    /// Median share of the window the server thread, the load generator thread, the OTLP sink's
    /// thread and the other threads (the exporters') were on a CPU.
    pub server_cpu: Option<f64>,
    /// The load generator thread's share (see `server_cpu`).
    pub client_cpu: Option<f64>,
    /// The OTLP sink thread's share (see `server_cpu`).
    pub sink_cpu: Option<f64>,
    /// The other threads' share, the exporters' (see `server_cpu`).
    pub other_cpu: Option<f64>,
    /// Median share of the window each pinned core was busy with anything (other processes too).
    pub server_core_busy: Option<f64>,
    /// The load generator's core (see `server_core_busy`).
    pub loadgen_core_busy: Option<f64>,
    /// Median server-thread CPU per request in the window, user space and kernel, in µs.
    pub server_user_us_per_request: Option<f64>,
    /// The kernel part (see `server_user_us_per_request`).
    pub server_kernel_us_per_request: Option<f64>,
    /// Spans received ÷ requests served, for the variants that export.
    pub spans_per_request: Option<f64>,
    /// Requests per second of each round, in order.
    pub rounds_rps: Vec<f64>,
}

impl Report {
    /// Per-variant medians over the rounds.
    pub fn summaries(&self) -> Vec<Summary> {
        let share = |cpu: Option<Duration>, s: &Sample| {
            cpu.map(|cpu| cpu.as_secs_f64() / s.load.window.as_secs_f64().max(1e-9))
        };
        let mut out: Vec<Summary> = self
            .results
            .iter()
            .map(|(variant, samples)| {
                let quantile_us =
                    |q| {
                        median(samples.iter().filter_map(|s| {
                            s.load.latency.quantile(q).map(|d| d.as_secs_f64() * 1e6)
                        }))
                        .unwrap_or(f64::NAN)
                    };
                let spans: u64 = samples.iter().map(|s| s.spans).sum();
                let served: u64 = samples.iter().map(|s| s.load.total).sum();
                Summary {
                    variant: *variant,
                    rps: median(samples.iter().map(|s| s.load.rps())).unwrap_or(0.0),
                    ratio: None,
                    p99_us: quantile_us(0.99),
                    p50_us: quantile_us(0.50),
                    errors: samples.iter().map(|s| s.load.errors).sum(),
                    completed: samples.iter().map(|s| s.load.completed).sum(),
                    server_cpu: median(samples.iter().filter_map(|s| share(s.load.server_cpu, s))),
                    client_cpu: median(samples.iter().filter_map(|s| share(s.load.client_cpu, s))),
                    sink_cpu: median(samples.iter().filter_map(|s| share(s.load.sink_cpu, s))),
                    other_cpu: median(samples.iter().filter_map(|s| {
                        let rest = s
                            .load
                            .process_cpu?
                            .saturating_sub(s.load.server_cpu?)
                            .saturating_sub(s.load.client_cpu?)
                            .saturating_sub(s.load.sink_cpu?);
                        share(Some(rest), s)
                    })),
                    server_core_busy: median(
                        samples.iter().filter_map(|s| s.load.server_core_busy),
                    ),
                    loadgen_core_busy: median(
                        samples.iter().filter_map(|s| s.load.loadgen_core_busy),
                    ),
                    server_user_us_per_request: median(samples.iter().filter_map(|s| {
                        let (user, _) = s.load.server_user_system?;
                        (s.load.completed > 0)
                            .then(|| user.as_secs_f64() * 1e6 / s.load.completed as f64)
                    })),
                    server_kernel_us_per_request: median(samples.iter().filter_map(|s| {
                        let (_, system) = s.load.server_user_system?;
                        (s.load.completed > 0)
                            .then(|| system.as_secs_f64() * 1e6 / s.load.completed as f64)
                    })),
                    spans_per_request: (variant.exports_spans() && served > 0)
                        .then(|| spans as f64 / served as f64),
                    rounds_rps: samples.iter().map(|s| s.load.rps()).collect(),
                }
            })
            .collect();
        let bare = out
            .iter()
            .find(|s| s.variant == Variant::Bare)
            .map(|s| s.rps)
            .filter(|&rps| rps > 0.0);
        for summary in &mut out {
            summary.ratio = bare.map(|bare| summary.rps / bare);
        }
        out
    }

    /// The result lines: `variant=<name> rps=<median> ratio=<rps / bare rps> p99_us=<…>`, one per
    /// variant, then the details and the goals.
    pub fn render(&self) -> String {
        let summaries = self.summaries();
        let mut out = String::new();
        for s in &summaries {
            let ratio = s.ratio.map_or("n/a".to_owned(), |r| format!("{r:.3}"));
            let _ = writeln!(
                out,
                "variant={} rps={:.0} ratio={ratio} p99_us={:.0}",
                s.variant.name(),
                s.rps,
                s.p99_us
            );
        }
        let _ = writeln!(out);
        let us = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.2}"));
        let pct = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{:.0}%", v * 100.0));
        for s in &summaries {
            let rounds: Vec<String> = s.rounds_rps.iter().map(|r| format!("{r:.0}")).collect();
            let spans = s
                .spans_per_request
                .map_or(String::new(), |r| format!(" spans_per_request={r:.3}"));
            let _ = writeln!(
                out,
                "# detail variant={} p50_us={:.0} rounds_rps=[{}] server_thread_cpu={} \
                 exporter_threads_cpu={} server_core_busy={} loadgen_thread_cpu={} \
                 sink_thread_cpu={} loadgen_core_busy={} server_user_us_per_req={} \
                 server_kernel_us_per_req={} requests_in_windows={} errors={}{spans}",
                s.variant.name(),
                s.p50_us,
                rounds.join(","),
                pct(s.server_cpu),
                pct(s.other_cpu),
                pct(s.server_core_busy),
                pct(s.client_cpu),
                pct(s.sink_cpu),
                pct(s.loadgen_core_busy),
                us(s.server_user_us_per_request),
                us(s.server_kernel_us_per_request),
                s.completed,
                s.errors,
            );
        }
        if self.sink_rejected > 0 {
            let _ = writeln!(
                out,
                "# warning: the OTLP sink rejected {} export requests",
                self.sink_rejected
            );
        }
        let ratio_of = |v: Variant| summaries.iter().find(|s| s.variant == v)?.ratio;
        let goal = |out: &mut String, v: Variant, target: f64| {
            if let Some(ratio) = ratio_of(v) {
                let verdict = if ratio >= target { "met" } else { "NOT met" };
                let _ = writeln!(
                    out,
                    "# goal {} >= {target:.2} x bare: {verdict} ({ratio:.3})",
                    v.name()
                );
            }
        };
        goal(&mut out, Variant::WxMetrics, 0.95);
        // Issue 14: always on, batched and dropped, as an outside harness measures peers.
        goal(&mut out, Variant::WxTracesDropped, 0.85);
        goal(&mut out, Variant::WxTraces, 0.85);
        let _ = writeln!(
            out,
            "# published baseline (2 cores): axum_prometheus ~0.78, trace_otel ~0.59 of bare"
        );
        out
    }
}

/// The header of a run: the machine and the settings.
pub fn describe(options: &Options) -> String {
    let mut out = String::new();
    let cpus = sys::usable_cpus();
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".to_owned());
    let _ = writeln!(
        out,
        "# machine: cpu=\"{}\" cores={} usable_cpus={:?} loadavg=\"{load}\"",
        sys::cpu_model(),
        sys::cpu_count(),
        cpus
    );
    let names: Vec<&str> = options.variants.iter().map(|v| v.name()).collect();
    let _ = writeln!(
        out,
        "# settings: rounds={} seconds={} warmup={} connections={} variants={} \
         (HTTP/1.1 keep-alive, closed loop, loopback; logs off; nothing scraped)",
        options.rounds,
        options.seconds.as_secs_f64(),
        options.warmup.as_secs_f64(),
        options.connections,
        names.join(",")
    );
    let _ = match pinning(options) {
        Ok((server, client)) => {
            let exporters = match options.exporters {
                server::ExporterThreads::ServerCore => format!("CPU {server}"),
                server::ExporterThreads::Anywhere => "any CPU".to_owned(),
            };
            writeln!(
                out,
                "# pinning: server runtime (current-thread) -> CPU {server}; its exporter threads \
                 (batch span processors, OTLP HTTP client) -> {exporters}; load generator \
                 (current-thread) and the OTLP sink -> CPU {client}"
            )
        }
        Err(why) => writeln!(out, "# pinning: none ({why})"),
    };
    out
}

/// The CPUs to pin the server and the load generator to, or why not.
fn pinning(options: &Options) -> Result<(usize, usize), String> {
    if !options.pin {
        return Err("pinning disabled".into());
    }
    match sys::usable_cpus()[..] {
        [server, client, ..] => Ok((server, client)),
        _ => Err(format!(
            "fewer than 2 usable CPUs ({} in the machine)",
            sys::cpu_count()
        )),
    }
}

/// Runs every round and returns the measurements. Progress goes to `progress` (one line per
/// variant per round). Everything runs on two threads of its own; the caller's thread only waits.
pub fn run(
    options: Options,
    progress: impl FnMut(&str) + Send + 'static,
) -> Result<Report, String> {
    if options.variants.is_empty() {
        return Err("no variant to run".into());
    }
    let pinned = match pinning(&options) {
        Ok(pair) => Some(pair),
        Err(why) => {
            eprintln!("warning: running unpinned: {why}; numbers are less comparable");
            None
        }
    };
    std::thread::Builder::new()
        .name("loadtest-client".into())
        .spawn(move || {
            let pinned = match pinned {
                Some((server, client)) => match sys::pin_current_thread(client) {
                    Ok(()) => Some((server, client)),
                    Err(err) => {
                        eprintln!("warning: running unpinned: {err}");
                        None
                    }
                },
                None => None,
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|err| format!("load generator runtime: {err}"))?;
            runtime.block_on(drive_rounds(options, pinned, progress))
        })
        .map_err(|err| format!("cannot start the load generator thread: {err}"))?
        .join()
        .map_err(|_| "the load generator thread panicked".to_owned())?
}

/// Serves `variant` once and drives it with `load`: what the load generator saw and the spans
/// the sink received for it (after the server drained and flushed).
async fn run_variant(
    server: &server::ServerThread,
    sink: &sink::Sink,
    variant: Variant,
    load: Load,
    pinned: Option<(usize, usize)>,
) -> Result<(LoadResult, u64), String> {
    let stopped = || "the server thread stopped".to_owned();
    let spans_before = sink.counts.spans();
    let (ready_tx, ready) = oneshot::channel();
    let (stop, stop_rx) = oneshot::channel();
    let (done_tx, done) = oneshot::channel();
    let command = server::Serve {
        variant,
        ready: ready_tx,
        stop: stop_rx,
        done: done_tx,
    };
    server.commands.send(command).map_err(|_| stopped())?;
    let addr = ready
        .await
        .map_err(|_| stopped())?
        .map_err(|err| format!("{}: {err}", variant.name()))?;
    let watch = client::Watch {
        server_tid: server.tid,
        sink_tid: sink.tid,
        cores: pinned,
    };
    let result = client::drive(addr, load, watch).await;
    let _ = stop.send(());
    // The server drains, then flushes the variant's spans to the sink (bounded by the
    // exporters' own timeouts).
    let _ = tokio::time::timeout(Duration::from_secs(20), done).await;
    Ok((result, sink.counts.spans() - spans_before))
}

async fn drive_rounds(
    options: Options,
    pinned: Option<(usize, usize)>,
    mut progress: impl FnMut(&str),
) -> Result<Report, String> {
    let sink = sink::Sink::start()?;
    let server = server::spawn(
        pinned.map(|(server, _)| server),
        options.exporters,
        options.variants.clone(),
        sink.endpoint.clone(),
    )?;
    let pinned = pinned.filter(|_| server.pinned.is_some());
    let load = Load {
        connections: options.connections,
        warmup: options.warmup,
        measure: options.seconds,
    };
    let mut results: Vec<(Variant, Vec<Sample>)> =
        options.variants.iter().map(|v| (*v, Vec::new())).collect();
    let n = options.variants.len();
    let mut outcome = Ok(());
    'rounds: for round in 0..options.rounds {
        for i in 0..n {
            let slot = (i + round) % n;
            let variant = options.variants[slot];
            let (result, spans) = match run_variant(&server, &sink, variant, load, pinned).await {
                Ok(measured) => measured,
                Err(err) => {
                    outcome = Err(err);
                    break 'rounds;
                }
            };
            let p99 = result
                .latency
                .quantile(0.99)
                .map_or(f64::NAN, |d| d.as_secs_f64() * 1e6);
            progress(&format!(
                "# round {}/{} variant={} rps={:.0} p99_us={p99:.0} errors={}",
                round + 1,
                options.rounds,
                variant.name(),
                result.rps(),
                result.errors
            ));
            results[slot].1.push(Sample {
                round,
                load: result,
                spans,
            });
        }
    }
    // Closing the channel ends the server thread, which shuts the exporters down (their last
    // spans still reach the sink, which keeps running until then).
    let server::ServerThread {
        commands,
        finished,
        handle,
        ..
    } = server;
    drop(commands);
    let _ = tokio::time::timeout(Duration::from_secs(30), finished).await;
    let sink_rejected = sink.counts.rejected();
    sink.stop().await;
    if handle.is_finished() {
        let _ = handle.join();
    }
    outcome?;
    Ok(Report {
        options,
        pinned,
        results,
        sink_rejected,
    })
}
