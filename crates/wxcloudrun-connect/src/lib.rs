//! How wxcloudrun-telemetry's exporters reach a backend, shared by the sidecar and the telemetry
//! crate's `init()` so each rule lives once:
//!
//! - [`tls`]: which roots are trusted (the bundled webpki roots plus the system store when there
//!   is one; a missing store is never an error), a CA file, client certificates, `server_name`,
//!   `insecure_skip_verify`; ring only.
//! - [`grpc`]: a tonic channel with those rules (OTLP/gRPC).
//! - [`http`]: the rustls config for reqwest clients (OTLP/HTTP, remote write), and the
//!   backend's `Retry-After`.
//! - [`secret`]: values that print as `<secret>`, sensitive header names, URLs without userinfo,
//!   and credentials re-read from files when they rotate.
//! - [`otlp_env`]: the standard `OTEL_EXPORTER_OTLP_*` variables, `OTEL_RESOURCE_ATTRIBUTES`,
//!   the service name and `OTEL_<SIGNAL>_EXPORTER`.
//!
//! ```no_run
//! use std::time::Duration;
//! use wxcloudrun_connect::otlp_env::{OtlpEnv, Protocol, Signal};
//! use wxcloudrun_connect::{grpc, http, secret};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let env = OtlpEnv::read(Signal::Metrics, |name| std::env::var(name).ok())?;
//! let endpoint = env.endpoint.clone().unwrap_or("http://127.0.0.1:4318/v1/metrics".into());
//! println!("exporting to {}", secret::redact_url(&endpoint));
//! match env.protocol.unwrap_or_default() {
//!     Protocol::Grpc => {
//!         let channel = grpc::channel(&endpoint, &env.tls(), Duration::from_secs(5), "my-agent")?;
//!         # let _ = channel;
//!     }
//!     Protocol::HttpProtobuf => {
//!         // reqwest::Client::builder().tls_backend_preconfigured(config)
//!         let config = http::reqwest_tls(&env.tls())?;
//!         # let _ = config;
//!     }
//! }
//! # Ok(()) }
//! ```

pub mod grpc;
pub mod http;
pub mod otlp_env;
pub mod secret;
pub mod tls;

#[cfg(test)]
mod handshake_tests;

pub use crate::secret::{REDACTED, Secret, SecretFile};
pub use crate::tls::{TlsConfig, TlsError};
