//! Fetching the app's page: content negotiation, gzip, a size bound and a timeout. Parsing is the
//! caller's, so the parsed page can borrow the body instead of copying it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use wxcloudrun_exposition::{DecodeError, Format, Limits, decode_body_owned};

use super::budget::{BodyBound, Exceeded, LimitReason};

/// The scrape's `Accept`: OpenMetrics first, the text format 0.0.4 from targets that serve only
/// that — as Prometheus asks ([`wxcloudrun_exposition::ACCEPT_HEADER`]). OpenMetrics carries the
/// layer's exemplars, which the sidecar forwards; they change on every scrape, and replay reads
/// them as it reads values, so such a page still replays.
pub const SCRAPE_ACCEPT: &str = wxcloudrun_exposition::ACCEPT_HEADER;

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
    /// Given up on after this long: the shutdown budget left no more time.
    #[error("cancelled after {0:?}: the shutdown budget leaves no more time")]
    Cancelled(Duration),
    /// The body passed the memory budget's bound or `body_size_limit` (compressed or inflated):
    /// reading stopped there.
    #[error("{0}")]
    TooLarge(Exceeded),
}

impl ScrapeError {
    /// The `outcome` label of `wxcloudrun_sidecar_scrapes_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            ScrapeError::Timeout(_) | ScrapeError::Cancelled(_) => "timeout",
            _ => "error",
        }
    }
}

/// Fetches one URL.
#[derive(Debug, Clone)]
pub struct Scraper {
    client: reqwest::Client,
    url: String,
    max_body_bytes: usize,
    /// The `Accept-Encoding` sent: see [`accept_encoding`].
    accept_encoding: &'static str,
    /// The last body's size: the next buffer's capacity when no `Content-Length` is sent.
    last_body_len: Arc<AtomicUsize>,
}

impl Scraper {
    /// A scraper for `url`.
    pub fn new(url: &str) -> Result<Self, String> {
        // The same TLS rules as the exporters (an https:// target works in a slim image too).
        let tls =
            wxcloudrun_connect::http::reqwest_tls(&wxcloudrun_connect::tls::TlsConfig::default())
                .map_err(|err| err.to_string())?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .pool_max_idle_per_host(1)
            .user_agent(crate::export::USER_AGENT)
            .build()
            .map_err(|err| err.to_string())?;
        Ok(Scraper {
            client,
            url: url.to_owned(),
            max_body_bytes: Limits::default().max_body_bytes,
            accept_encoding: accept_encoding(url),
            last_body_len: Arc::default(),
        })
    }

    /// Fetches the page once into `buffer` (the last page's, given back: a multi-megabyte body
    /// then costs neither an allocation nor fresh pages every scrape), within `timeout`.
    pub async fn fetch_into(
        &self,
        buffer: Vec<u8>,
        timeout: Duration,
    ) -> Result<Page, ScrapeError> {
        let bound = BodyBound {
            bytes: self.max_body_bytes,
            reason: LimitReason::TooLarge,
        };
        self.fetch_bounded(buffer, timeout, bound).await
    }

    /// [`fetch_into`](Self::fetch_into), reading at most `bound` bytes of body (compressed, and
    /// again inflated): past it the scrape fails with [`ScrapeError::TooLarge`] without reading
    /// the rest. An endless or trickling body ends at the bound or at `timeout`.
    pub async fn fetch_bounded(
        &self,
        buffer: Vec<u8>,
        timeout: Duration,
        bound: BodyBound,
    ) -> Result<Page, ScrapeError> {
        let max_body_bytes = bound.bytes.min(self.max_body_bytes);
        let started = Instant::now();
        let request = self
            .client
            .get(&self.url)
            .header(http::header::ACCEPT, SCRAPE_ACCEPT)
            .header(http::header::ACCEPT_ENCODING, self.accept_encoding)
            .header(
                "X-Prometheus-Scrape-Timeout-Seconds",
                timeout.as_secs_f64().to_string(),
            )
            .send();
        let fetch = async {
            let mut response = request.await.map_err(transport_error)?;
            if response.status() != reqwest::StatusCode::OK {
                return Err(ScrapeError::Status(response.status().as_u16()));
            }
            let format = response
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map_or(Format::PrometheusText, Format::from_content_type);
            let too_large = || {
                ScrapeError::TooLarge(
                    BodyBound {
                        bytes: max_body_bytes,
                        ..bound
                    }
                    .exceeded(),
                )
            };
            // A length announced over the bound fails before a byte is read.
            if response
                .content_length()
                .is_some_and(|len| len > max_body_bytes as u64)
            {
                return Err(too_large());
            }
            let mut body = self.body_buffer(buffer, response.content_length(), max_body_bytes);
            while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
                if body.len() + chunk.len() > max_body_bytes {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            self.last_body_len.store(body.len(), Ordering::Relaxed);
            // Plain text keeps the buffer as the page text: no copy. A gzip body inflates into a
            // second buffer, under the same bound.
            let text = decode_body_owned(body, max_body_bytes).map_err(|err| match err {
                DecodeError::TooLarge { .. } => too_large(),
                err => ScrapeError::Body(err.to_string()),
            })?;
            Ok((text, format))
        };
        let (text, format) = tokio::time::timeout(timeout, fetch)
            .await
            .map_err(|_| ScrapeError::Timeout(timeout))??;
        Ok(Page {
            text,
            format,
            elapsed: started.elapsed(),
        })
    }

    /// The last page's `buffer`, emptied and sized for this body: the announced length, else the
    /// last body's, at most `max_body_bytes`. Sized up front: growing a multi-megabyte buffer by
    /// doubling leaves the old copies behind in the allocator, and resident memory is what the
    /// platform bills.
    fn body_buffer(
        &self,
        mut buffer: Vec<u8>,
        content_length: Option<u64>,
        max_body_bytes: usize,
    ) -> Vec<u8> {
        let expected = content_length
            .map_or(self.last_body_len.load(Ordering::Relaxed), |len| {
                usize::try_from(len).unwrap_or(usize::MAX)
            })
            .min(max_body_bytes);
        // A buffer much larger than this page is not kept: one huge page must not pin its
        // memory for good.
        if buffer.capacity() > expected.saturating_mul(2) {
            buffer = Vec::new();
        }
        buffer.clear();
        buffer.reserve(expected);
        buffer
    }
}

/// What to ask the target for: plain text over loopback, gzip elsewhere.
///
/// Over loopback (the app in the same container, the usual case) compression only burns the
/// CPU the app and the sidecar share: zlib at level 6 spends 6.4 ms on the 2.4 MB benchmark page
/// (Go's encoder, which `client_golang` uses when asked, is slower), and the sidecar would spend
/// more undoing it, to save copying bytes between two sockets. A gzip answer is decoded anyway.
fn accept_encoding(url: &str) -> &'static str {
    let host = reqwest::Url::parse(url)
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned))
        .unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback { "identity" } else { "gzip" }
}

fn transport_error(err: reqwest::Error) -> ScrapeError {
    if err.is_timeout() {
        ScrapeError::Transport(err.to_string())
    } else if err.is_connect() {
        ScrapeError::Refused(err.to_string())
    } else {
        ScrapeError::Transport(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn gzip_is_asked_for_only_off_loopback() {
        for url in [
            "http://127.0.0.1:8080/metrics",
            "http://127.1.2.3/metrics",
            "http://localhost:9464/metrics",
            "http://LOCALHOST/metrics",
            "http://[::1]:9464/metrics",
        ] {
            assert_eq!(accept_encoding(url), "identity", "{url}");
        }
        for url in [
            "http://10.0.0.5:8080/metrics",
            "http://[2001:db8::1]/metrics",
            "https://app.internal/metrics",
            "not a url",
        ] {
            assert_eq!(accept_encoding(url), "gzip", "{url}");
        }
    }

    /// A target on loopback that answers once and hands back the request head it received.
    async fn one_shot_target(answer: Vec<u8>) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/metrics", listener.local_addr().unwrap());
        let served = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.ends_with(b"\r\n\r\n") {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "the request ended early");
                head.extend_from_slice(&buf[..n]);
            }
            stream.write_all(&answer).await.unwrap();
            String::from_utf8(head).unwrap().to_ascii_lowercase()
        });
        (url, served)
    }

    /// Scrapes a one-shot loopback target answering `answer`: the page text and the request head
    /// the target received.
    async fn scrape_once(answer: Vec<u8>) -> (String, String) {
        let (url, served) = one_shot_target(answer).await;
        let page = Scraper::new(&url)
            .unwrap()
            .fetch_into(Vec::new(), Duration::from_secs(5))
            .await
            .unwrap();
        (page.text, served.await.unwrap())
    }

    #[tokio::test]
    async fn a_loopback_target_is_asked_for_plain_text_and_a_gzip_answer_still_decodes() {
        let (text, head) = scrape_once(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: 5\r\n\r\nup 1\n"
                .to_vec(),
        )
        .await;
        assert_eq!(text, "up 1\n");
        assert!(head.contains("accept-encoding: identity\r\n"));

        // A target that compresses regardless.
        let gzipped = {
            use std::io::Write;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(b"up 2\n").unwrap();
            let body = gz.finish().unwrap();
            let mut answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            answer.extend_from_slice(&body);
            answer
        };
        let (text, _) = scrape_once(gzipped).await;
        assert_eq!(text, "up 2\n");
    }

    #[tokio::test]
    async fn a_given_buffer_is_reused_unless_far_too_large() {
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nup 1\n".to_vec();
        let fetch = |buffer: Vec<u8>| {
            let answer = answer.clone();
            async move {
                let (url, served) = one_shot_target(answer).await;
                let scraper = Scraper::new(&url).unwrap();
                let page = scraper
                    .fetch_into(buffer, Duration::from_secs(5))
                    .await
                    .unwrap();
                served.await.unwrap();
                page.text
            }
        };
        let buffer = Vec::with_capacity(8);
        let address = buffer.as_ptr();
        let text = fetch(buffer).await;
        assert_eq!(text, "up 1\n");
        assert_eq!(text.as_ptr(), address, "the given buffer holds the page");
        // A buffer left from a huge page is not kept for a small one.
        let text = fetch(Vec::with_capacity(1 << 20)).await;
        assert_eq!(text, "up 1\n");
        assert!(text.capacity() < 1024, "kept {} bytes", text.capacity());
    }
}

#[cfg(test)]
mod bounded_tests {
    //! Hostile bodies: each must end at the bound or at the timeout, never take the memory.

    use super::*;
    use std::future::Future;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const MIB: usize = 1 << 20;

    fn bound(bytes: usize, reason: LimitReason) -> BodyBound {
        BodyBound { bytes, reason }
    }

    /// A loopback target that reads the request head, then runs `answer` on the stream.
    async fn target<F, Fut>(answer: F) -> String
    where
        F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/metrics", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.ends_with(b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                    _ => return,
                }
            }
            answer(stream).await;
        });
        url
    }

    async fn fetch(url: &str, timeout: Duration, bound: BodyBound) -> Result<Page, ScrapeError> {
        Scraper::new(url)
            .unwrap()
            .fetch_bounded(Vec::new(), timeout, bound)
            .await
    }

    fn reason(result: Result<Page, ScrapeError>) -> LimitReason {
        match result {
            Err(ScrapeError::TooLarge(exceeded)) => exceeded.reason,
            other => panic!("expected too large, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_gzip_body_that_inflates_past_the_bound_stops_there() {
        let body = {
            use std::io::Write;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            for _ in 0..(16 * MIB / 4) {
                gz.write_all(b"a 1\n").unwrap();
            }
            gz.finish().unwrap()
        };
        assert!(body.len() < MIB / 8, "a bomb: {} bytes", body.len());
        let url = target(move |mut stream| async move {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&body).await;
        })
        .await;
        let result = fetch(
            &url,
            Duration::from_secs(10),
            bound(MIB, LimitReason::TooLarge),
        )
        .await;
        assert_eq!(reason(result), LimitReason::TooLarge);
    }

    #[tokio::test]
    async fn body_size_limit_fails_an_announced_and_an_unannounced_body() {
        let page = "a 1\n".repeat(1000);
        let announced = page.clone();
        let url = target(move |mut stream| async move {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                announced.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(announced.as_bytes()).await;
        })
        .await;
        let limit = bound(1000, LimitReason::BodySizeLimit);
        let result = fetch(&url, Duration::from_secs(10), limit).await;
        assert_eq!(reason(result), LimitReason::BodySizeLimit);
        // Without a length (read to the close), the bound stops the read.
        let url = target(move |mut stream| async move {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n")
                .await;
            let _ = stream.write_all(page.as_bytes()).await;
        })
        .await;
        let result = fetch(&url, Duration::from_secs(10), limit).await;
        assert_eq!(reason(result), LimitReason::BodySizeLimit);
        // Under the limit, the page is read.
        let url = target(|mut stream| async move {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nup 1")
                .await;
        })
        .await;
        let page = fetch(&url, Duration::from_secs(10), limit).await.unwrap();
        assert_eq!(page.text, "up 1");
    }

    /// A chunked body that never ends (bounded here: 64 MiB at most), as fast as it can go or a
    /// chunk every `pause`.
    async fn endless(pause: Option<Duration>) -> String {
        target(move |mut stream| async move {
            let head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
            if stream.write_all(head).await.is_err() {
                return;
            }
            let line = "endless_series{i=\"0123456789\"} 1\n".repeat(64);
            let chunk = format!("{:x}\r\n{line}\r\n", line.len());
            for _ in 0..(64 * MIB / line.len()) {
                if stream.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
                if let Some(pause) = pause {
                    tokio::time::sleep(pause).await;
                }
            }
        })
        .await
    }

    #[tokio::test]
    async fn an_endless_page_ends_at_the_bound_or_at_the_timeout() {
        let url = endless(None).await;
        let result = fetch(
            &url,
            Duration::from_secs(30),
            bound(MIB, LimitReason::TooLarge),
        )
        .await;
        assert_eq!(reason(result), LimitReason::TooLarge);
        // Slower than the bound can be reached within the timeout.
        let url = endless(Some(Duration::from_millis(20))).await;
        let result = fetch(
            &url,
            Duration::from_millis(500),
            bound(32 * MIB, LimitReason::TooLarge),
        );
        assert!(matches!(result.await, Err(ScrapeError::Timeout(_))));
    }

    #[tokio::test]
    async fn a_page_that_trickles_a_byte_a_second_ends_at_the_timeout() {
        let url = target(|mut stream| async move {
            let head = b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n";
            if stream.write_all(head).await.is_err() {
                return;
            }
            for _ in 0..1000 {
                if stream.write_all(b"a").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
        .await;
        let result = fetch(
            &url,
            Duration::from_millis(1500),
            bound(MIB, LimitReason::TooLarge),
        );
        assert!(matches!(result.await, Err(ScrapeError::Timeout(_))));
    }
}
