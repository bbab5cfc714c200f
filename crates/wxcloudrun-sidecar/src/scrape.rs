//! Fetching the app's page: content negotiation, gzip, a size bound and a timeout. Parsing is the
//! caller's, so the parsed page can borrow the body instead of copying it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use wxcloudrun_exposition::{ACCEPT_HEADER, Format, Limits, decode_body_owned};

/// A fetched page, not yet parsed.
#[derive(Debug)]
pub struct Page {
    /// The body, decompressed.
    pub text: String,
    /// The format its content type announced.
    pub format: Format,
    /// How long the request took.
    pub elapsed: Duration,
}

/// Why a scrape failed.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// The target did not answer in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Nothing listens there (yet).
    #[error("connection refused: {0}")]
    Refused(String),
    /// The target answered with something other than 200.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The body was too large, not UTF-8, or broken gzip.
    #[error("unreadable body: {0}")]
    Body(String),
    /// Any other transport failure.
    #[error("request failed: {0}")]
    Transport(String),
}

impl ScrapeError {
    /// The `outcome` label of `wxcloudrun_sidecar_scrapes_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            ScrapeError::Timeout(_) => "timeout",
            _ => "error",
        }
    }
}

/// Fetches one URL.
#[derive(Debug, Clone)]
pub struct Scraper {
    client: reqwest::Client,
    url: String,
    timeout: Duration,
    max_body_bytes: usize,
    /// The last body's size: the next buffer's capacity when no `Content-Length` is sent.
    last_body_len: Arc<AtomicUsize>,
}

impl Scraper {
    /// A scraper for `url` with a per-scrape `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(1)
            .user_agent(concat!("wxcloudrun-sidecar/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| err.to_string())?;
        Ok(Scraper {
            client,
            url: url.to_owned(),
            timeout,
            max_body_bytes: Limits::default().max_body_bytes,
            last_body_len: Arc::default(),
        })
    }

    /// Fetches the page once.
    pub async fn fetch(&self) -> Result<Page, ScrapeError> {
        let started = Instant::now();
        let request = self
            .client
            .get(&self.url)
            .header(http::header::ACCEPT, ACCEPT_HEADER)
            .header(http::header::ACCEPT_ENCODING, "gzip")
            .header(
                "X-Prometheus-Scrape-Timeout-Seconds",
                self.timeout.as_secs_f64().to_string(),
            )
            .send();
        let fetch = async {
            let mut response = request.await.map_err(classify)?;
            if response.status() != reqwest::StatusCode::OK {
                return Err(ScrapeError::Status(response.status().as_u16()));
            }
            let format = response
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map_or(Format::PrometheusText, Format::from_content_type);
            // Sized up front: growing a multi-megabyte buffer by doubling leaves the old copies
            // behind in the allocator, and resident memory is what the platform bills.
            let expected = response
                .content_length()
                .map_or(self.last_body_len.load(Ordering::Relaxed), |len| {
                    usize::try_from(len).unwrap_or(usize::MAX)
                })
                .min(self.max_body_bytes);
            let mut body = Vec::with_capacity(expected);
            while let Some(chunk) = response.chunk().await.map_err(classify)? {
                if body.len() + chunk.len() > self.max_body_bytes {
                    return Err(ScrapeError::Body(format!(
                        "larger than {} bytes",
                        self.max_body_bytes
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            self.last_body_len.store(body.len(), Ordering::Relaxed);
            // Plain text keeps the buffer as the page text: no copy.
            let text = decode_body_owned(body, self.max_body_bytes)
                .map_err(|err| ScrapeError::Body(err.to_string()))?;
            Ok((text, format))
        };
        let (text, format) = tokio::time::timeout(self.timeout, fetch)
            .await
            .map_err(|_| ScrapeError::Timeout(self.timeout))??;
        Ok(Page {
            text,
            format,
            elapsed: started.elapsed(),
        })
    }
}

fn classify(err: reqwest::Error) -> ScrapeError {
    if err.is_timeout() {
        ScrapeError::Transport(err.to_string())
    } else if err.is_connect() {
        ScrapeError::Refused(err.to_string())
    } else {
        ScrapeError::Transport(err.to_string())
    }
}
