//! Values that must never reach a log line, a `Debug` dump or `--check-config`: passwords,
//! credentials, sensitive header values, URL userinfo.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

/// What a secret prints as.
pub const REDACTED: &str = "<secret>";

/// A secret string: `Debug` and `Display` print [`REDACTED`]; [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Whether the values of header `name` are secrets: `authorization`, `proxy-authorization`,
/// `cookie`, `set-cookie`, and any name containing `token`, `key`, `secret`, `password` or
/// `auth` (case-insensitive), such as `x-api-key` or `X-Auth-Token`.
pub fn is_sensitive_header(name: &str) -> bool {
    let name = name.trim().to_ascii_lowercase();
    matches!(
        name.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "set-cookie"
    ) || ["token", "key", "secret", "password", "auth"]
        .iter()
        .any(|word| name.contains(word))
}

/// What [`redact_url`] returns for input it cannot read as a URL.
pub const UNPARSABLE_URL: &str = "<unparsable URL>";

/// `url` without its userinfo (`https://u:p@h/x` → `https://h/x`), for logs. A scheme-less
/// `host:port` (a gRPC endpoint) is accepted too. Anything that does not parse as a URI once the
/// userinfo is gone becomes [`UNPARSABLE_URL`], so a garbled value never leaks.
pub fn redact_url(url: &str) -> String {
    let url = url.trim();
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host = match authority.rsplit_once('@') {
        Some((_userinfo, host)) => host,
        None => authority,
    };
    if host.is_empty() {
        return UNPARSABLE_URL.to_owned();
    }
    let redacted = match scheme {
        Some(scheme) => format!("{scheme}://{host}{tail}"),
        None => format!("{host}{tail}"),
    };
    match redacted.parse::<http::Uri>() {
        Ok(uri) if uri.host().is_some() => redacted,
        _ => UNPARSABLE_URL.to_owned(),
    }
}

/// What changed in a [`SecretFile`] since the previous look, reported once per change of state.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretFileEvent {
    /// The file changed and its new content is now in use.
    Reloaded,
    /// The file can no longer be read (or became empty): the last good value stays in use.
    /// Reported once until the file is readable again.
    Failing {
        /// Why, without the content.
        reason: String,
    },
    /// The file is readable again after [`SecretFileEvent::Failing`].
    Recovered,
}

/// A secret kept in a file (`password_file`, `credentials_file`), re-read when the file changes
/// (length, modification time or inode), so a rotated token is picked up without a restart.
/// A trailing newline is trimmed. A read error after a good read keeps the last value.
///
/// [`SecretFile::current`] costs one `metadata` call when nothing changed, and is safe to call
/// from any thread.
#[derive(Debug)]
pub struct SecretFile {
    path: PathBuf,
    state: Mutex<FileState>,
}

#[derive(Debug)]
struct FileState {
    value: Secret,
    stamp: Stamp,
    failing: bool,
}

/// What says "the file changed" without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

impl Stamp {
    fn of(metadata: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(metadata);
        #[cfg(not(unix))]
        let inode = 0;
        Stamp {
            len: metadata.len(),
            modified: metadata.modified().ok(),
            inode,
        }
    }
}

/// Reads the secret: content without the trailing line ending; empty is an error.
fn read_secret(path: &Path) -> Result<(Secret, Stamp), std::io::Error> {
    let metadata = std::fs::metadata(path)?;
    let bytes = std::fs::read(path)?;
    let text = String::from_utf8(bytes).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "the file is not UTF-8")
    })?;
    let value = text.strip_suffix('\n').unwrap_or(&text);
    let value = value.strip_suffix('\r').unwrap_or(value);
    if value.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the file is empty",
        ));
    }
    Ok((Secret::new(value), Stamp::of(&metadata)))
}

impl SecretFile {
    /// Reads `path` once; fails if it cannot be read or is empty (the error names the file).
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, std::io::Error> {
        let path = path.into();
        let (value, stamp) = read_secret(&path)
            .map_err(|err| std::io::Error::new(err.kind(), format!("{}: {err}", path.display())))?;
        Ok(SecretFile {
            path,
            state: Mutex::new(FileState {
                value,
                stamp,
                failing: false,
            }),
        })
    }

    /// The secret now: re-read if the file changed, else the value already held.
    pub fn current(&self) -> Secret {
        self.poll().0
    }

    /// [`SecretFile::current`], plus what changed since the previous call, if anything, so the
    /// caller can log a reload or a failure once (not on every request).
    pub fn poll(&self) -> (Secret, Option<SecretFileEvent>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let event = match std::fs::metadata(&self.path) {
            Ok(metadata) if Stamp::of(&metadata) == state.stamp => {
                // Unchanged. If it was failing (deleted, then restored as it was), it is fine now.
                std::mem::take(&mut state.failing).then_some(SecretFileEvent::Recovered)
            }
            Ok(_) => match read_secret(&self.path) {
                Ok((value, stamp)) => {
                    state.value = value;
                    state.stamp = stamp;
                    state.failing = false;
                    Some(SecretFileEvent::Reloaded)
                }
                Err(err) => state.fail(err),
            },
            Err(err) => state.fail(err),
        };
        (state.value.clone(), event)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl FileState {
    fn fail(&mut self, err: std::io::Error) -> Option<SecretFileEvent> {
        if self.failing {
            return None;
        }
        self.failing = true;
        Some(SecretFileEvent::Failing {
            reason: err.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let secret = Secret::from("hunter2".to_owned());
        assert_eq!(format!("{secret:?}"), REDACTED);
        assert_eq!(secret.to_string(), REDACTED);
        assert_eq!(format!("{:?}", Some(&secret)), "Some(<secret>)");
        assert_eq!(secret.expose(), "hunter2");
        assert_eq!(Secret::default().expose(), "");
        let parsed: Secret = serde_json::from_str("\"from-json\"").unwrap();
        assert_eq!(parsed.expose(), "from-json");
    }

    #[test]
    fn sensitive_header_names() {
        for name in [
            "Authorization",
            "proxy-authorization",
            "COOKIE",
            "x-api-key",
            "X-Auth-Token",
            "x-secret",
            "db-password",
            "api_key",
            "x-cloudbase-access-token",
        ] {
            assert!(is_sensitive_header(name), "{name}");
        }
        for name in [
            "content-type",
            "user-agent",
            "x-scope-orgid",
            "tenant",
            "accept",
        ] {
            assert!(!is_sensitive_header(name), "{name}");
        }
    }

    #[test]
    fn urls_lose_their_userinfo() {
        assert_eq!(redact_url("https://u:p@h/x"), "https://h/x");
        assert_eq!(
            redact_url("https://user:p%40ss@collector.example:4318/v1/traces?x=1"),
            "https://collector.example:4318/v1/traces?x=1"
        );
        assert_eq!(redact_url("http://collector:4317"), "http://collector:4317");
        assert_eq!(redact_url("token@collector:4317"), "collector:4317");
        assert_eq!(redact_url("http://[::1]:4317/"), "http://[::1]:4317/");
        // An `@` in the path is not userinfo.
        assert_eq!(redact_url("https://h/a@b"), "https://h/a@b");
        for garbled in ["", "https://", "https://u:p@", "http://a b/", "::::"] {
            assert_eq!(redact_url(garbled), UNPARSABLE_URL, "{garbled:?}");
        }
    }

    #[test]
    fn secret_files_are_trimmed_and_must_not_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\r\n").unwrap();
        assert_eq!(
            SecretFile::open(&path).unwrap().current().expose(),
            "s3cret"
        );
        // Only one line ending goes: inner newlines are part of the value.
        std::fs::write(&path, "a\nb\n\n").unwrap();
        assert_eq!(
            SecretFile::open(&path).unwrap().current().expose(),
            "a\nb\n"
        );
        std::fs::write(&path, "\n").unwrap();
        let err = SecretFile::open(&path).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        assert!(err.to_string().contains("token"), "{err}");
        let missing = SecretFile::open(dir.path().join("absent")).unwrap_err();
        assert!(missing.to_string().contains("absent"), "{missing}");
    }

    #[test]
    fn rotation_is_picked_up_and_a_deleted_file_keeps_the_last_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        std::fs::write(&path, "first\n").unwrap();
        let file = SecretFile::open(&path).unwrap();
        assert_eq!(file.path(), path);
        assert_eq!(file.poll(), (Secret::from("first"), None));

        std::fs::write(&path, "second-longer\n").unwrap();
        assert_eq!(
            file.poll(),
            (
                Secret::from("second-longer"),
                Some(SecretFileEvent::Reloaded)
            )
        );
        assert_eq!(file.current().expose(), "second-longer");

        // Rotation by rename (a new inode), as Kubernetes does with secret volumes.
        let staged = dir.path().join("staged");
        std::fs::write(&staged, "third\n").unwrap();
        std::fs::rename(&staged, &path).unwrap();
        assert_eq!(file.current().expose(), "third");

        std::fs::remove_file(&path).unwrap();
        let (value, event) = file.poll();
        assert_eq!(value.expose(), "third");
        assert!(
            matches!(&event, Some(SecretFileEvent::Failing { reason }) if !reason.contains("third")),
            "{event:?}"
        );
        // Reported once, not on every look.
        assert_eq!(file.poll(), (Secret::from("third"), None));

        std::fs::write(&path, "fourth\n").unwrap();
        assert_eq!(
            file.poll(),
            (Secret::from("fourth"), Some(SecretFileEvent::Reloaded))
        );

        // Emptied while running: the last value stays.
        std::fs::write(&path, "").unwrap();
        assert!(matches!(
            file.poll(),
            (value, Some(SecretFileEvent::Failing { .. })) if value.expose() == "fourth"
        ));
    }

    #[test]
    fn shared_between_threads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "t0").unwrap();
        let file = std::sync::Arc::new(SecretFile::open(&path).unwrap());
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let file = file.clone();
                std::thread::spawn(move || {
                    (0..200)
                        .map(|_| file.current().expose().to_owned())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        std::fs::write(&path, "t1-rotated").unwrap();
        for reader in readers {
            for value in reader.join().unwrap() {
                assert!(value == "t0" || value == "t1-rotated", "{value:?}");
            }
        }
        assert_eq!(file.current().expose(), "t1-rotated");
    }
}
