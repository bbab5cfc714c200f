//! Credentials on every export request, with Prometheus's `remote_write` field names:
//! `basic_auth { username, password | password_file }` and
//! `authorization { type, credentials | credentials_file }`. Files are re-read when they change,
//! so a rotated token is used from the next request on, without a restart.

use std::sync::Arc;

use base64::Engine as _;
use http::HeaderValue;
use wxcloudrun_connect::secret::{Secret, SecretFile};

/// A secret given inline or kept in a file.
#[derive(Clone, Debug)]
pub enum SecretSource {
    /// Given in the configuration.
    Inline(Secret),
    /// Read from a file, again whenever the file changes.
    File(Arc<SecretFile>),
}

impl SecretSource {
    /// The value now.
    pub fn current(&self) -> Secret {
        match self {
            SecretSource::Inline(secret) => secret.clone(),
            SecretSource::File(file) => file.current(),
        }
    }
}

/// How an exporter authenticates.
#[derive(Clone, Debug, Default)]
pub enum Auth {
    /// No credentials of its own (headers may still carry some).
    #[default]
    None,
    /// `Authorization: Basic base64(username:password)`.
    Basic {
        /// The user name (Tencent: the APPID or SecretId; Grafana Cloud: the instance id).
        username: String,
        /// The password or token.
        password: SecretSource,
    },
    /// `Authorization: <type> <credentials>`.
    Authorization {
        /// The scheme. Defaults to `Bearer`.
        scheme: String,
        /// The token.
        credentials: SecretSource,
    },
}

impl Auth {
    /// The `Authorization` value for the next request, marked sensitive (never printed by
    /// `Debug`); `None` without credentials or when they cannot be a header value.
    pub fn header_value(&self) -> Option<HeaderValue> {
        let text = match self {
            Auth::None => return None,
            Auth::Basic { username, password } => {
                let pair = format!("{username}:{}", password.current().expose());
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )
            }
            Auth::Authorization {
                scheme,
                credentials,
            } => format!("{scheme} {}", credentials.current().expose()),
        };
        let mut value = HeaderValue::try_from(text).ok()?;
        value.set_sensitive(true);
        Some(value)
    }

    /// Whether any credentials are configured.
    pub fn is_some(&self) -> bool {
        !matches!(self, Auth::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_and_bearer_values() {
        let basic = Auth::Basic {
            username: "1300000000".to_owned(),
            password: SecretSource::Inline(Secret::from("token".to_owned())),
        };
        let value = basic.header_value().unwrap();
        assert_eq!(value, "Basic MTMwMDAwMDAwMDp0b2tlbg==");
        assert!(value.is_sensitive());
        assert!(!format!("{value:?}").contains("MTMw"));
        let bearer = Auth::Authorization {
            scheme: "Bearer".to_owned(),
            credentials: SecretSource::Inline(Secret::from("abc".to_owned())),
        };
        assert_eq!(bearer.header_value().unwrap(), "Bearer abc");
        assert!(!format!("{bearer:?}").contains("abc"));
        assert_eq!(Auth::None.header_value(), None);
    }

    #[test]
    fn file_credentials_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let auth = Auth::Authorization {
            scheme: "Bearer".to_owned(),
            credentials: SecretSource::File(Arc::new(SecretFile::open(&path).unwrap())),
        };
        assert_eq!(auth.header_value().unwrap(), "Bearer first");
        std::fs::write(&path, "second-token\n").unwrap();
        assert_eq!(auth.header_value().unwrap(), "Bearer second-token");
    }
}
