//! TLS termination for the listener (`http_server.tls`): so that `https://` and `wss://` work
//! without a proxy in front of Herald.
//!
//! [`Terminator`] holds the rustls server configuration (ring provider, TLS 1.2 and 1.3, ALPN
//! `http/1.1`) and performs the handshake of each accepted connection, bounded by
//! [`HANDSHAKE_TIMEOUT`]. The certificate is not baked into that configuration: a resolver
//! hands out the current one, so that a reload ([`Terminator::watch`]: on SIGHUP, and when the
//! files' modification time or size changes, checked every [`POLL_INTERVAL`]) applies to every
//! new connection at once while connections already open keep the session they have. A reload
//! that fails (a key that does not match the certificate, a half-written file) keeps the
//! certificate in use and says why in the log.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::config::TlsConfig;

/// How long a client may take to complete the TLS handshake (as long as the HTTP header read
/// timeout: a connection that holds the handshake open is a slowloris like any other).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the certificate and key files are checked for changes.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Why TLS could not be set up or a certificate loaded. Each message names the option (and the
/// file) at fault and what to give instead.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Only one of `cert_pem_file` and `key_pem_file` is set.
    #[error(
        "http_server.tls: cert_pem_file and key_pem_file go together: set both (or give the \
         certificate and key inline with cert_pem and key_pem)"
    )]
    UnpairedFiles,
    /// A certificate or key file cannot be read.
    #[error("http_server.tls.{option}: cannot read {}: {source}", .path.display())]
    Read {
        /// `cert_pem_file` or `key_pem_file`.
        option: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it cannot be read.
        #[source]
        source: std::io::Error,
    },
    /// `cert_pem_b64` or `key_pem_b64` is not base64.
    #[error("http_server.tls.{what}_pem_b64: not valid base64 ({source})")]
    Base64 {
        /// `cert` or `key`.
        what: &'static str,
        /// The decoder's complaint.
        #[source]
        source: base64::DecodeError,
    },
    /// The certificate text is not a PEM certificate chain.
    #[error("{at}: not a valid PEM certificate chain: {source}")]
    Chain {
        /// The option (and file) the chain came from.
        at: String,
        /// The PEM parser's complaint.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The certificate text holds no certificate.
    #[error("{at}: no certificate found (expected a PEM \"BEGIN CERTIFICATE\" block)")]
    NoCertificate {
        /// The option (and file) the chain came from.
        at: String,
    },
    /// The key text holds no private key rustls can use.
    #[error(
        "{at}: no usable private key ({source}); expected a PEM \"BEGIN PRIVATE KEY\", \
         \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\" block"
    )]
    NoKey {
        /// The option (and file) the key came from.
        at: String,
        /// The PEM parser's complaint.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The key is not the certificate's.
    #[error("{key_at} is not the key of the certificate in {cert_at}: give the matching pair")]
    Mismatch {
        /// Where the key came from.
        key_at: String,
        /// Where the certificate came from.
        cert_at: String,
    },
    /// rustls refuses the pair for another reason.
    #[error("{key_at}: cannot use the key with {cert_at}: {source}")]
    Unusable {
        /// Where the key came from.
        key_at: String,
        /// Where the certificate came from.
        cert_at: String,
        /// rustls's reason.
        #[source]
        source: rustls::Error,
    },
    /// rustls cannot be configured with the crypto provider (a build problem, not a config one).
    #[error("http_server.tls: cannot set up TLS: {0}")]
    Setup(#[source] rustls::Error),
}

/// The TLS side of the listener: the acceptor, and the certificate it serves.
#[derive(Clone)]
pub struct Terminator {
    acceptor: tokio_rustls::TlsAcceptor,
    certs: Arc<Certs>,
}

impl std::fmt::Debug for Terminator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminator")
            .field("certs", &self.certs)
            .finish()
    }
}

/// Where the certificate and key come from.
#[derive(Debug)]
enum Source {
    /// Files, reloaded when they change.
    Files { cert: PathBuf, key: PathBuf },
    /// PEM given in the config itself (inline or base64): fixed for the process's life.
    Inline { cert: Vec<u8>, key: Vec<u8> },
}

/// The certificate in use, and how to load it again. Also the rustls certificate resolver.
struct Certs {
    current: RwLock<Arc<CertifiedKey>>,
    source: Source,
    provider: Arc<CryptoProvider>,
    /// The files' modification times and sizes at the last load attempt (successful or not:
    /// a bad pair is not retried, and logged, until one of the files changes again).
    stamps: Mutex<Option<[FileStamp; 2]>>,
}

/// What tells that a file changed.
type FileStamp = Option<(SystemTime, u64)>;

impl std::fmt::Debug for Certs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certs")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(crate::sync::read(&self.current).clone())
    }
}

impl Terminator {
    /// The terminator for `config`, or `None` when TLS is off. Fails, with a message naming
    /// the option and the file, when the certificate or key cannot be read or do not match.
    pub fn from_config(config: &TlsConfig) -> Result<Option<Terminator>, TlsError> {
        if !config.enabled {
            return Ok(None);
        }
        let source = if !config.cert_pem_file.is_empty() || !config.key_pem_file.is_empty() {
            if config.cert_pem_file.is_empty() || config.key_pem_file.is_empty() {
                return Err(TlsError::UnpairedFiles);
            }
            Source::Files {
                cert: PathBuf::from(&config.cert_pem_file),
                key: PathBuf::from(&config.key_pem_file),
            }
        } else {
            Source::Inline {
                cert: inline_pem("cert", &config.cert_pem, &config.cert_pem_b64)?,
                key: inline_pem("key", &config.key_pem, &config.key_pem_b64)?,
            }
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let stamps = source.stamps();
        let first = source.load(&provider)?;
        let certs = Arc::new(Certs {
            current: RwLock::new(Arc::new(first)),
            source,
            provider: provider.clone(),
            stamps: Mutex::new(stamps),
        });
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?
            .with_no_client_auth()
            .with_cert_resolver(certs.clone());
        // HTTP/2 for the streaming transports and the API; HTTP/1.1 for WebSocket upgrades (a
        // browser opens its WebSocket on an HTTP/1.1 connection of its own when the server
        // does not offer WebSockets over HTTP/2).
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Some(Terminator {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            certs,
        }))
    }

    /// Performs the server side of the TLS handshake on an accepted connection, within
    /// [`HANDSHAKE_TIMEOUT`].
    pub async fn accept(
        &self,
        stream: TcpStream,
    ) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(stream)).await {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            )),
        }
    }

    /// Reloads the certificate on SIGHUP (always) and when the files change (checked every
    /// [`POLL_INTERVAL`]), until `shutdown`. A certificate given inline has nothing to reload:
    /// a SIGHUP then only says so in the log. Must run on a tokio runtime; the SIGHUP handler
    /// is installed before this returns its future, so a SIGHUP sent after start-up never
    /// ends the process.
    pub fn watch(
        &self,
        shutdown: CancellationToken,
    ) -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
        let certs = self.certs.clone();
        let files = matches!(certs.source, Source::Files { .. });
        #[cfg(unix)]
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        Ok(async move {
            let mut poll = tokio::time::interval(POLL_INTERVAL);
            poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                #[cfg(unix)]
                let hup = hangup.recv();
                #[cfg(not(unix))]
                let hup = std::future::pending::<Option<()>>();
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    Some(()) = hup => {
                        if files {
                            tracing::info!("SIGHUP: reloading the TLS certificate");
                            certs.reload(true);
                        } else {
                            tracing::info!(
                                "SIGHUP: the TLS certificate is given inline in the config \
                                 (http_server.tls.cert_pem): nothing to reload"
                            );
                        }
                    }
                    _ = poll.tick(), if files => {
                        certs.reload(false);
                    }
                }
            }
        })
    }
}

impl Certs {
    /// Reloads the certificate if its files changed since the last load (or always, with
    /// `force`), and logs the outcome. Returns whether a new certificate is in use.
    fn reload(&self, force: bool) -> bool {
        let stamps = self.source.stamps();
        {
            let mut last = crate::sync::lock(&self.stamps);
            if !force && *last == stamps {
                return false;
            }
            *last = stamps;
        }
        match self.source.load(&self.provider) {
            Ok(certified) => {
                *crate::sync::write(&self.current) = Arc::new(certified);
                tracing::info!(
                    "TLS certificate loaded again from {}: new connections use it",
                    self.source
                );
                true
            }
            Err(e) => {
                tracing::warn!(
                    "TLS certificate reload failed, still serving the previous one: {e}"
                );
                false
            }
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Files { cert, key } => write!(f, "{} and {}", cert.display(), key.display()),
            Source::Inline { .. } => f.write_str("the config"),
        }
    }
}

impl Source {
    /// The files' current stamps (`None` for inline PEM).
    fn stamps(&self) -> Option<[FileStamp; 2]> {
        match self {
            Source::Files { cert, key } => Some([stamp(cert), stamp(key)]),
            Source::Inline { .. } => None,
        }
    }

    /// Reads and parses the certificate chain and key, and checks that they belong together.
    fn load(&self, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
        let (cert, key, cert_at, key_at) = match self {
            Source::Files { cert, key } => (
                read_file(cert, "cert_pem_file")?,
                read_file(key, "key_pem_file")?,
                format!("http_server.tls.cert_pem_file ({})", cert.display()),
                format!("http_server.tls.key_pem_file ({})", key.display()),
            ),
            Source::Inline { cert, key } => (
                cert.clone(),
                key.clone(),
                "http_server.tls.cert_pem".to_string(),
                "http_server.tls.key_pem".to_string(),
            ),
        };
        let chain = CertificateDer::pem_slice_iter(&cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| TlsError::Chain {
                at: cert_at.clone(),
                source,
            })?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate { at: cert_at });
        }
        let key = PrivateKeyDer::from_pem_slice(&key).map_err(|source| TlsError::NoKey {
            at: key_at.clone(),
            source,
        })?;
        CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::Mismatch { key_at, cert_at },
            source => TlsError::Unusable {
                key_at,
                cert_at,
                source,
            },
        })
    }
}

/// A file's modification time and size, if it can be read.
fn stamp(path: &Path) -> FileStamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn read_file(path: &Path, option: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        option,
        path: path.to_path_buf(),
        source,
    })
}

/// The PEM given inline (`cert_pem`/`key_pem`) or as base64 (`*_pem_b64`).
fn inline_pem(what: &'static str, pem: &str, b64: &str) -> Result<Vec<u8>, TlsError> {
    if !pem.is_empty() {
        return Ok(pem.as_bytes().to_vec());
    }
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|source| TlsError::Base64 { what, source })
}
