//! A real Prometheus for the end-to-end tests: started on a free loopback port with a temporary
//! TSDB, killed when dropped (also when the test panics), queried over a bare HTTP/1.0 client.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A Prometheus process.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts `binary` with the configuration `config` returns; `config` gets the temporary
    /// directory to write any rule files into and the address Prometheus will listen on (to
    /// scrape itself). `extra_args` are added to the command line (e.g.
    /// `--web.enable-remote-write-receiver`).
    pub fn start(
        binary: &Path,
        config: impl FnOnce(&Path, SocketAddr) -> String,
        extra_args: &[&str],
    ) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        // A free loopback port: bind, read it, release it for Prometheus.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config(dir.path(), addr)).expect("write config");
        let log = dir.path().join("prometheus.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            // Otherwise SIGTERM hangs ~60 s when remote write is unreachable.
            .arg("--storage.remote.flush-deadline=5s")
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            addr,
            log,
            _dir: dir,
        }
    }

    /// The listen address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The last lines of Prometheus's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// `GET path` on the API; the body parsed as JSON when it is JSON.
    pub async fn get(&self, path: &str) -> Result<(u16, Value), String> {
        let (status, body) = http_get(self.addr, path).await.map_err(|e| e.to_string())?;
        Ok((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
    }

    /// An instant query at the current time; `data.result` on success.
    pub async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        match self
            .get(&format!("/api/v1/query?query={}", encode(expr)))
            .await?
        {
            (200, body) if body["status"] == "success" => Ok(body["data"]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default()),
            (status, body) => Err(format!("HTTP {status}: {}", body["error"])),
        }
    }

    /// Waits until `/-/ready` answers 200, at most until `deadline`.
    pub async fn wait_ready(&self, deadline: Instant) -> Result<(), String> {
        wait_for(deadline, || async {
            match self.get("/-/ready").await {
                Ok((200, _)) => Ok(()),
                other => Err(format!("not ready: {other:?}")),
            }
        })
        .await
        .map_err(|e| format!("{e}\n{}", self.log_tail()))
    }
}

/// A bare HTTP/1.0 GET (no chunked encoding, the server closes the connection), bounded in time.
pub async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        let response = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok((status, body.to_owned()))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "HTTP request timed out"))?
}

/// Percent-encodes a query parameter.
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Polls until `check` holds, at most until `deadline`; returns the last failure otherwise.
pub async fn wait_for<F, Fut>(deadline: Instant, mut check: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    loop {
        match check().await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// A Prometheus served over HTTPS behind a web configuration (`--web.config.file`: TLS, maybe a
/// required client certificate, maybe basic auth), with a client that gets through it. Killed when
/// dropped, like [`Prometheus`].
#[derive(Debug)]
pub struct SecurePrometheus {
    prometheus: Prometheus,
    client: crate::tls::HttpsClient,
    web_config: PathBuf,
    _web_dir: tempfile::TempDir,
}

impl SecurePrometheus {
    /// Starts `binary` like [`Prometheus::start`], serving HTTPS as `web` says; queries go
    /// through a client with `client`'s trust, identity and basic auth.
    pub fn start(
        binary: &Path,
        config: impl FnOnce(&Path, SocketAddr) -> String,
        extra_args: &[&str],
        web: &crate::web_config::WebConfig,
        client: &crate::tls::ClientSettings,
    ) -> Result<SecurePrometheus, String> {
        let web_dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let web_config = web_dir.path().join("web.yml");
        std::fs::write(&web_config, web.render()?).map_err(|e| format!("web config: {e}"))?;
        let flag = format!("--web.config.file={}", web_config.display());
        let mut args: Vec<&str> = extra_args.to_vec();
        args.push(&flag);
        let prometheus = Prometheus::start(binary, config, &args);
        let client = crate::tls::HttpsClient::new(prometheus.addr(), client)?;
        Ok(SecurePrometheus {
            prometheus,
            client,
            web_config,
            _web_dir: web_dir,
        })
    }

    /// The listen address.
    pub fn addr(&self) -> SocketAddr {
        self.prometheus.addr()
    }

    /// `https://127.0.0.1:PORT/api/v1/write` (or with the client's server name instead).
    pub fn write_url(&self) -> String {
        format!("{}/api/v1/write", self.client.base_url())
    }

    /// The web configuration file (Prometheus reads it again for each connection and request).
    pub fn web_config_file(&self) -> &Path {
        &self.web_config
    }

    /// The last lines of Prometheus's log, for failure messages.
    pub fn log_tail(&self) -> String {
        self.prometheus.log_tail()
    }

    /// A client for this Prometheus with other `settings` (e.g. no client certificate).
    pub fn client_with(
        &self,
        settings: &crate::tls::ClientSettings,
    ) -> Result<crate::tls::HttpsClient, String> {
        crate::tls::HttpsClient::new(self.addr(), settings)
    }

    /// `GET path` over HTTPS; the body parsed as JSON when it is JSON.
    pub async fn get(&self, path: &str) -> Result<(u16, Value), String> {
        let (status, body) = self.client.get(path).await?;
        Ok((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
    }

    /// An instant query at the current time; `data.result` on success.
    pub async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        match self
            .get(&format!("/api/v1/query?query={}", encode(expr)))
            .await?
        {
            (200, body) if body["status"] == "success" => Ok(body["data"]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default()),
            (status, body) => Err(format!("HTTP {status}: {}", body["error"])),
        }
    }

    /// Waits until `/-/ready` answers 200 over HTTPS, at most until `deadline`.
    pub async fn wait_ready(&self, deadline: Instant) -> Result<(), String> {
        wait_for(deadline, || async {
            match self.get("/-/ready").await {
                Ok((200, _)) => Ok(()),
                other => Err(format!("not ready: {other:?}")),
            }
        })
        .await
        .map_err(|e| format!("{e}\n{}", self.log_tail()))
    }
}
