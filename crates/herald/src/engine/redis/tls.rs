//! TLS to Redis from `engine.redis.tls` (Centrifugo's TLS object): whether to speak TLS, whether
//! to skip verifying the server, and the PEM material, read once at start-up so that a missing
//! file or bad base64 stops the node with the option's name.

use base64::Engine as _;
use redis::{ClientTlsConfig, TlsCertificates};

use crate::config::TlsConfig;
use crate::engine::EngineError;

/// What the Redis connections need from `engine.redis.tls`.
#[derive(Clone, Debug, Default)]
pub(super) struct TlsSettings {
    /// Speak TLS to every address (as a `rediss://` URL does for its own).
    pub enabled: bool,
    /// `insecure_skip_verify`: accept any server certificate.
    pub insecure: bool,
    /// The CA to verify servers with, instead of the system's roots.
    root: Option<Vec<u8>>,
    /// A client certificate chain and its key (mutual TLS).
    client: Option<(Vec<u8>, Vec<u8>)>,
}

impl TlsSettings {
    /// Reads the PEM sources of `config` (file, then base64, then inline, as Centrifugo
    /// does), even when `enabled` is off: a `rediss://` address uses them too.
    pub(super) fn from_config(config: &TlsConfig) -> Result<TlsSettings, EngineError> {
        let at = "engine.redis.tls";
        let root = pem(
            at,
            "server_ca_pem",
            &config.server_ca_pem_file,
            &config.server_ca_pem_b64,
            &config.server_ca_pem,
        )?;
        let cert = pem(
            at,
            "cert_pem",
            &config.cert_pem_file,
            &config.cert_pem_b64,
            &config.cert_pem,
        )?;
        let key = pem(
            at,
            "key_pem",
            &config.key_pem_file,
            &config.key_pem_b64,
            &config.key_pem,
        )?;
        let client = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                return Err(EngineError::BadRequest(format!(
                    "{at}: a client certificate needs both cert_pem* and key_pem*; set both or \
                     neither"
                )));
            }
        };
        Ok(TlsSettings {
            enabled: config.enabled,
            insecure: config.insecure_skip_verify,
            root,
            client,
        })
    }

    /// The certificates to hand redis-rs, when any are configured.
    pub(super) fn certificates(&self) -> Option<TlsCertificates> {
        if self.root.is_none() && self.client.is_none() {
            return None;
        }
        Some(TlsCertificates {
            client_tls: self.client.as_ref().map(|(cert, key)| ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            }),
            root_cert: self.root.clone(),
        })
    }
}

/// The first PEM source set of `name` (`<name>_file`, `<name>_b64`, `<name>`).
fn pem(
    at: &str,
    name: &str,
    file: &str,
    b64: &str,
    inline: &str,
) -> Result<Option<Vec<u8>>, EngineError> {
    if !file.is_empty() {
        return std::fs::read(file).map(Some).map_err(|e| {
            EngineError::BadRequest(format!("{at}.{name}_file: cannot read {file:?}: {e}"))
        });
    }
    if !b64.is_empty() {
        return base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map(Some)
            .map_err(|e| {
                EngineError::BadRequest(format!("{at}.{name}_b64 is not valid base64: {e}"))
            });
    }
    Ok((!inline.is_empty()).then(|| inline.as_bytes().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_sources_are_read_and_their_errors_named() {
        let config = TlsConfig {
            enabled: true,
            server_ca_pem_b64: base64::engine::general_purpose::STANDARD.encode("CA"),
            ..TlsConfig::default()
        };
        let tls = TlsSettings::from_config(&config).unwrap();
        assert!(tls.enabled);
        assert_eq!(tls.certificates().unwrap().root_cert.unwrap(), b"CA");
        let missing = TlsSettings::from_config(&TlsConfig {
            cert_pem_file: "/nonexistent/cert.pem".into(),
            ..TlsConfig::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            missing.contains("engine.redis.tls.cert_pem_file"),
            "{missing}"
        );
        let half = TlsSettings::from_config(&TlsConfig {
            cert_pem: "x".into(),
            ..TlsConfig::default()
        })
        .unwrap_err()
        .to_string();
        assert!(half.contains("both"), "{half}");
        assert!(TlsSettings::default().certificates().is_none());
    }
}
