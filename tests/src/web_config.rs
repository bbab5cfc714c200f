//! Prometheus's web configuration (`--web.config.file`, the exporter-toolkit format): serving
//! HTTPS, requiring and verifying client certificates, basic auth with bcrypt-hashed passwords.

use std::path::{Path, PathBuf};

use base64::Engine;

/// bcrypt's cheapest cost: the tests want speed, not protection.
const BCRYPT_COST: u32 = 4;

/// A web configuration to render into the file Prometheus reads.
#[derive(Clone, Debug)]
pub struct WebConfig {
    /// The server certificate (`tls_server_config.cert_file`).
    pub cert_file: PathBuf,
    /// Its key (`tls_server_config.key_file`).
    pub key_file: PathBuf,
    /// When set, `client_auth_type: RequireAndVerifyClientCert` with this `client_ca_file`.
    pub client_ca_file: Option<PathBuf>,
    /// Users and their plain-text passwords (`basic_auth_users`, hashed when rendered).
    pub basic_auth_users: Vec<(String, String)>,
}

impl WebConfig {
    /// HTTPS with this certificate, no client certificate, no basic auth.
    pub fn tls(cert_file: &Path, key_file: &Path) -> WebConfig {
        WebConfig {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            client_ca_file: None,
            basic_auth_users: Vec::new(),
        }
    }

    /// Also requires a client certificate signed by `ca_file`.
    pub fn require_client_cert(mut self, ca_file: &Path) -> WebConfig {
        self.client_ca_file = Some(ca_file.to_path_buf());
        self
    }

    /// Also lets `user` in with `password` (basic auth becomes required).
    pub fn basic_auth(mut self, user: &str, password: &str) -> WebConfig {
        self.basic_auth_users
            .push((user.to_owned(), password.to_owned()));
        self
    }

    /// The YAML file's text. Strings are written as JSON strings, which YAML reads as
    /// double-quoted scalars, so no path or hash needs escaping by hand.
    pub fn render(&self) -> Result<String, String> {
        let quote = |text: &str| serde_json::Value::from(text).to_string();
        let path = |path: &Path| quote(&path.to_string_lossy());
        let mut yaml = format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
            path(&self.cert_file),
            path(&self.key_file)
        );
        if let Some(ca_file) = &self.client_ca_file {
            yaml.push_str(&format!(
                "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n",
                path(ca_file)
            ));
        }
        if !self.basic_auth_users.is_empty() {
            yaml.push_str("basic_auth_users:\n");
            for (user, password) in &self.basic_auth_users {
                let hash = bcrypt::hash(password, BCRYPT_COST)
                    .map_err(|e| format!("bcrypt {user}: {e}"))?;
                yaml.push_str(&format!("  {}: {}\n", quote(user), quote(&hash)));
            }
        }
        Ok(yaml)
    }
}

/// The `Authorization` value for basic auth: `Basic base64(user:password)`.
pub fn basic_auth_header(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_tls_client_auth_and_verifiable_hashes() {
        let config = WebConfig::tls(Path::new("/p/server.pem"), Path::new("/p/key.pem"))
            .require_client_cert(Path::new("/p/ca.pem"))
            .basic_auth("sidecar", "s3cret");
        let yaml = config.render().unwrap();
        let parsed: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        let tls = &parsed["tls_server_config"];
        assert_eq!(tls["cert_file"].as_str(), Some("/p/server.pem"));
        assert_eq!(tls["key_file"].as_str(), Some("/p/key.pem"));
        assert_eq!(
            tls["client_auth_type"].as_str(),
            Some("RequireAndVerifyClientCert")
        );
        assert_eq!(tls["client_ca_file"].as_str(), Some("/p/ca.pem"));
        let hash = parsed["basic_auth_users"]["sidecar"].as_str().unwrap();
        assert!(hash.starts_with("$2"), "{hash}");
        assert!(bcrypt::verify("s3cret", hash).unwrap());
        assert!(!bcrypt::verify("wrong", hash).unwrap());
        assert!(!yaml.contains("s3cret"), "no plain-text password:\n{yaml}");
    }

    #[test]
    fn plain_tls_has_neither_client_auth_nor_users() {
        let yaml = WebConfig::tls(Path::new("/c.pem"), Path::new("/k.pem"))
            .render()
            .unwrap();
        assert!(!yaml.contains("client_auth_type"), "{yaml}");
        assert!(!yaml.contains("basic_auth_users"), "{yaml}");
    }

    #[test]
    fn basic_auth_header_is_base64_of_user_colon_password() {
        assert_eq!(
            basic_auth_header("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }
}
