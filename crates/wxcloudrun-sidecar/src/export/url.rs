//! [`HttpUrl`]: an `http://` or `https://` URL with a host, checked once where it is configured
//! and trusted everywhere after (the exporters, the scraper, the printed configuration).

use std::fmt;

use wxcloudrun_connect::secret::redact_url;

/// An `http://` or `https://` URL with a host. Userinfo in it (`https://user:pw@host/…`) is kept
/// for sending and never shown: `Debug` and [`HttpUrl::redacted`] replace it.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// As configured, without surrounding blanks: what gRPC dials and what is shown.
    text: String,
    /// The same, parsed: what HTTP requests go to.
    parsed: reqwest::Url,
}

impl HttpUrl {
    /// Checks `text`; the error says why and never repeats userinfo.
    pub fn parse(text: &str) -> Result<HttpUrl, String> {
        let text = text.trim();
        let shown = redact_url(text);
        let parsed =
            reqwest::Url::parse(text).map_err(|err| format!("{shown:?} is not a URL: {err}"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(format!(
                "{shown:?} must be an http:// or https:// URL with a host"
            ));
        }
        Ok(HttpUrl {
            text: text.to_owned(),
            parsed,
        })
    }

    /// The URL as configured, userinfo included.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The URL with its userinfo replaced, for logs and the printed configuration.
    pub fn redacted(&self) -> String {
        redact_url(&self.text)
    }

    /// The parsed URL.
    pub(crate) fn parsed(&self) -> &reqwest::Url {
        &self.parsed
    }
}

impl fmt::Debug for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_and_https_urls_with_a_host_are_accepted_as_written() {
        for text in [
            "http://127.0.0.1:9090/api/v1/write",
            "https://prom.example/api/v1/write",
            "http://collector:4317",
            " http://c:4318/v1/metrics\n",
        ] {
            let url = HttpUrl::parse(text).unwrap();
            assert_eq!(url.as_str(), text.trim());
            assert_eq!(url.parsed().as_str().trim_end_matches('/'), text.trim());
        }
    }

    #[test]
    fn anything_else_is_refused_saying_why() {
        for (text, why) in [
            ("not a url", "is not a URL"),
            ("localhost:4318", "must be an http:// or https:// URL"),
            ("ftp://host/write", "must be an http:// or https:// URL"),
            (
                "grpc://collector:4317",
                "must be an http:// or https:// URL",
            ),
            ("http://", "is not a URL"),
            ("", "is not a URL"),
        ] {
            let err = HttpUrl::parse(text).expect_err(text);
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }

    #[test]
    fn userinfo_is_sent_but_never_shown() {
        let url = HttpUrl::parse("https://u:pw-SECRET@prom.example/api/v1/write").unwrap();
        assert_eq!(url.parsed().password(), Some("pw-SECRET"));
        for shown in [url.redacted(), format!("{url:?}")] {
            assert!(!shown.contains("SECRET"), "{shown}");
            assert!(shown.contains("prom.example/api/v1/write"), "{shown}");
        }
        let err = HttpUrl::parse("ftp://u:pw-SECRET@host/").unwrap_err();
        assert!(!err.contains("SECRET"), "{err}");
    }
}
