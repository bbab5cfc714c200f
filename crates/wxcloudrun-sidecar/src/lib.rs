//! The sidecar: scrapes the app's `/metrics` inside a WeChat Cloud Run container and pushes it to
//! a real backend (Prometheus remote write, OTLP), because a pull-based Prometheus cannot reach
//! instances that scale to zero. Normally the container's entrypoint, wrapping the app:
//!
//! ```text
//! ENTRYPOINT ["wxcloudrun-sidecar", "--remote-write-url", "https://prom.example/api/v1/write", "--", "./server"]
//! ```
//!
//! On SIGTERM it scrapes one last time, passes the signal to the app, waits for it, sends stale
//! markers and flushes every queue — all within `--shutdown-budget`, counted from the signal.
//!
//! [`run`] keeps the loop, [`pipeline`] does each scrape (fetch → replay | parse → convert →
//! batch), [`export`] delivers batches, `shutdown` ends it all inside the budget; `signals` is what
//! the loop and the shutdown both listen to.

#![warn(missing_docs, unreachable_pub)]

pub mod admin;
pub mod allocator;
pub mod config;
pub mod export;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod run;
mod shutdown;
mod signals;
pub mod supervisor;
