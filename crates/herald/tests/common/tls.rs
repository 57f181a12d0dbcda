//! TLS for the integration tests: certificates made with the `openssl` command for the test
//! (a CA and a `localhost`/`127.0.0.1` server certificate it signs), rustls client configs
//! that trust one such CA only, and HTTPS and WSS clients on top of them.
//!
//! Every wait is bounded by [`super::STEP`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::{HttpResponse, STEP, Ws};

/// A test CA and the server certificate and key it signed, as PEM files in a directory.
pub struct TestCert {
    /// The CA certificate (what clients trust).
    pub ca: PathBuf,
    /// The server certificate (leaf), PEM.
    pub cert: PathBuf,
    /// The server's private key, PEM (PKCS#8).
    pub key: PathBuf,
}

impl TestCert {
    /// The config patch that serves this certificate: `http_server.tls` on, with its files.
    pub fn server_config(&self) -> serde_json::Value {
        serde_json::json!({"http_server": {"tls": {
            "enabled": true,
            "cert_pem_file": self.cert,
            "key_pem_file": self.key,
        }}})
    }

    /// Makes a CA named `name` and a server certificate for `localhost` and `127.0.0.1`
    /// signed by it, in `dir` (files `NAME-ca.pem`, `NAME-cert.pem`, `NAME-key.pem`).
    pub fn generate(dir: &Path, name: &str) -> TestCert {
        let at = |suffix: &str| dir.join(format!("{name}-{suffix}"));
        let (ca_key, ca, key, csr, cert, ext) = (
            at("ca-key.pem"),
            at("ca.pem"),
            at("key.pem"),
            at("csr.pem"),
            at("cert.pem"),
            at("ext.cnf"),
        );
        std::fs::write(
            &ext,
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write the extensions file");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(&[
            &["req", "-x509"][..],
            &ec,
            &["-days", "2", "-subj", &format!("/CN=Herald test CA {name}")],
            &["-keyout", s(&ca_key), "-out", s(&ca)],
        ]);
        openssl(&[
            &["req"][..],
            &ec,
            &[
                "-subj",
                "/CN=localhost",
                "-keyout",
                s(&key),
                "-out",
                s(&csr),
            ],
        ]);
        openssl(&[&[
            "x509",
            "-req",
            "-in",
            s(&csr),
            "-CA",
            s(&ca),
            "-CAkey",
            s(&ca_key),
            "-set_serial",
            "2",
            "-days",
            "2",
            "-extfile",
            s(&ext),
            "-out",
            s(&cert),
        ][..]]);
        TestCert { ca, cert, key }
    }

    /// The server certificate's DER (to compare with what a server presents).
    pub fn cert_der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_file(&self.cert).expect("parse the test certificate")
    }

    /// A rustls client config that trusts this CA only.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(&self.ca).expect("parse the test CA"))
            .expect("add the test CA");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
}

fn s(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

/// Runs `openssl` with the arguments, panicking with its output when it fails.
fn openssl(args: &[&[&str]]) {
    let args: Vec<&str> = args.iter().flat_map(|a| a.iter().copied()).collect();
    let out = Command::new("openssl")
        .args(&args)
        .output()
        .expect("run openssl (the TLS tests make their certificates with it: install openssl)");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Opens a TLS connection to `127.0.0.1:port` as `localhost`, verifying with `config`.
pub async fn connect(
    port: u16,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = tokio::time::timeout(STEP, TcpStream::connect(("127.0.0.1", port)))
        .await
        .expect("connect timed out")?;
    connect_on(tcp, config).await
}

/// [`connect`] over a TCP connection already open (e.g. one with a small receive buffer).
pub async fn connect_on(
    tcp: TcpStream,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from("localhost").expect("a valid name");
    tokio::time::timeout(
        STEP,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .expect("TLS handshake timed out")
}

/// One HTTPS request (`Connection: close`) over a fresh connection trusting `config`.
pub async fn https(
    port: u16,
    config: Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> HttpResponse {
    let stream = connect(port, config).await.expect("TLS connection");
    super::http_on(stream, port, method, path, headers, body).await
}

/// `POST /api/<method>` over HTTPS with the test API key.
pub async fn api(
    port: u16,
    config: Arc<rustls::ClientConfig>,
    method: &str,
    body: serde_json::Value,
) -> HttpResponse {
    let body = body.to_string();
    https(
        port,
        config,
        "POST",
        &format!("/api/{method}"),
        &[
            ("X-API-Key", super::API_KEY),
            ("Content-Type", "application/json"),
        ],
        Some(body.as_bytes()),
    )
    .await
}

impl Ws {
    /// Opens a WebSocket over TLS to `wss://localhost:PORT/connection/websocket`, trusting
    /// `config`.
    pub async fn open_tls(port: u16, config: Arc<rustls::ClientConfig>) -> Ws {
        let url = format!("wss://localhost:{port}/connection/websocket");
        let tcp = tokio::time::timeout(STEP, TcpStream::connect(("127.0.0.1", port)))
            .await
            .expect("connect timed out")
            .expect("connect");
        let (stream, response) = tokio::time::timeout(
            STEP,
            tokio_tungstenite::client_async_tls_with_config(
                url,
                tcp,
                None,
                Some(tokio_tungstenite::Connector::Rustls(config)),
            ),
        )
        .await
        .expect("WebSocket handshake timed out")
        .expect("WebSocket handshake failed");
        assert_eq!(response.status().as_u16(), 101);
        Ws::from_stream(stream)
    }
}
