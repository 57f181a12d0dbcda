//! The NATS engine: several Herald nodes share one NATS (`broker.type: "nats"` or
//! `engine.type: "nats"`). Core NATS carries publications, joins, leaves and node control;
//! JetStream keeps channel history (`broker.nats.jetstream.enabled`), so a cluster with exact
//! recovery and positioning runs on NATS alone. Presence stays per node ([`super::MemoryPresence`])
//! unless a Redis presence manager (`presence_manager.type: "redis"`) shares it (`super::build`).
//!
//! # Subjects and streams (`P` = `broker.nats.prefix`, `T` = [`channel_token`] of the channel)
//!
//! * `P.channel.T`: what reaches the nodes subscribed to the channel — publications (with
//!   their offset and epoch when the channel keeps history), joins and leaves
//!   ([`wire`]). A node subscribes on its first local subscriber and unsubscribes after its
//!   last ([`NatsBroker`]).
//! * `P.stream.T`: the only subject of the channel's JetStream stream `P_T`
//!   ([`JetStreamHistory`]). One stream per channel, because then the stream sequence *is*
//!   the channel's offset: consecutive 1, 2, 3… whichever node appends, assigned by JetStream
//!   itself, with no read-modify-write between nodes; a purge (`history_remove`) and expiry
//!   keep the sequence, as offsets must; and retention is the stream's own `max_msgs`
//!   (`history_size`) and `max_age` (`history_ttl`). The epoch is the stream's creation time,
//!   so a stream deleted and recreated starts a new epoch.
//! * `P.node`: every node's [`super::NodeInfo`] every [`controller::HEARTBEAT`];
//!   `P.control`: API `disconnect`/`unsubscribe`/`refresh` for every node ([`NatsController`]).
//!
//! A publication to a channel with history is appended to its stream first (JetStream's
//! acknowledgement gives the offset), then published on `P.channel.T`. Two appends acked in
//! one order can be published in the other, and a publish can be lost while NATS restarts, so
//! each node tracks the last offset it delivered per channel: a later one waits briefly for
//! the missing, then fetches them from the stream, and a node that reconnected to NATS reads
//! the streams of its channels for what it missed. What is no longer in the stream is
//! reported as insufficient state: the node closes the channel's local subscribers with 3010,
//! so their SDKs reconnect and recover (or learn they cannot).

mod broker;
mod controller;
mod history;
mod wire;

#[cfg(test)]
mod tests;

pub use broker::NatsBroker;
pub use controller::NatsController;
pub use history::JetStreamHistory;

use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use futures_util::FutureExt;
use tokio::sync::watch;

use super::EngineError;
use crate::config::NatsConfig;

/// One NATS connection shared by the broker, the history and the controller of a node.
#[derive(Clone)]
pub struct NatsConnection {
    client: async_nats::Client,
    prefix: Arc<str>,
    url: Arc<str>,
    timeout: Duration,
    dial_timeout: Duration,
    /// Bumped each time the connection is (re)established, so that the broker re-reads what
    /// it may have missed while disconnected.
    connects: watch::Receiver<u64>,
}

impl std::fmt::Debug for NatsConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConnection")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The most messages a NATS subscription queues before NATS counts this node as a slow
/// consumer (each message is at most the server's `max_payload`, 1 MiB by default).
const SUBSCRIPTION_CAPACITY: usize = 8192;

impl NatsConnection {
    /// Starts connecting to `config.url` in the background and returns at once: a node starts
    /// while NATS is down (unhealthy, publishes failing) and works as soon as NATS is up, and
    /// reconnects by itself whenever the connection drops. Must be called within a Tokio
    /// runtime.
    pub fn start(config: &NatsConfig, name: &str) -> Result<NatsConnection, EngineError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(EngineError::Unavailable(
                "nats: the engine must be started within a Tokio runtime".into(),
            ));
        }
        let (connected_tx, connects) = watch::channel(0u64);
        let url: Arc<str> = config.url.as_str().into();
        let logged_url = url.clone();
        let mut options = async_nats::ConnectOptions::new()
            .name(name)
            .retry_on_initial_connect()
            .connection_timeout(config.dial_timeout)
            .request_timeout(Some(config.write_timeout))
            .ping_interval(Duration::from_secs(5))
            .subscription_capacity(SUBSCRIPTION_CAPACITY)
            // Quick retries: a node without NATS can deliver nothing across nodes.
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis(100 * attempts.min(20) as u64)
            })
            .event_callback(move |event| {
                let connected_tx = connected_tx.clone();
                let url = logged_url.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!(url = %url, "nats: connected");
                            connected_tx.send_modify(|n| *n += 1);
                        }
                        async_nats::Event::Disconnected => tracing::warn!(
                            url = %url,
                            "nats: disconnected; publishes fail until it is back, reconnecting"
                        ),
                        other => tracing::warn!(url = %url, "nats: {other}"),
                    }
                }
            });
        if config.tls.enabled {
            options = options
                .require_tls(true)
                .tls_client_config(tls::client_config(&config.tls)?);
        }
        // With `retry_on_initial_connect` the client is made without waiting on the network:
        // the future is ready at its first poll.
        let client = options
            .connect(config.url.as_str())
            .now_or_never()
            .ok_or_else(|| EngineError::Unavailable("nats: the client did not start".into()))?
            .map_err(|e| EngineError::Unavailable(format!("nats {}: {e}", config.url)))?;
        Ok(NatsConnection {
            client,
            prefix: config.prefix.as_str().into(),
            url,
            timeout: config.write_timeout,
            dial_timeout: config.dial_timeout,
            connects,
        })
    }

    /// The client.
    fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// `Ok` while connected; otherwise what to tell the operator.
    pub fn health(&self) -> Result<(), String> {
        match self.client.connection_state() {
            State::Connected => Ok(()),
            State::Pending => Err(format!("nats: not connected to {} (connecting)", self.url)),
            State::Disconnected => Err(format!(
                "nats: disconnected from {} (reconnecting); check that nats-server is running",
                self.url
            )),
        }
    }

    /// [`Self::health`] as an engine error, for calls that must not be queued while NATS is
    /// away (a core publish would wait in the client's buffer and be reported as sent). Right
    /// after start-up, while the first connection is still being made, it waits for it up to
    /// `dial_timeout`; a connection that dropped fails at once.
    async fn ready(&self) -> Result<(), EngineError> {
        let deadline = tokio::time::Instant::now() + self.dial_timeout;
        while self.client.connection_state() == State::Pending
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.health().map_err(EngineError::Unavailable)
    }

    /// `P.channel.T`.
    fn channel_subject(&self, channel: &str) -> String {
        format!("{}.channel.{}", self.prefix, channel_token(channel))
    }

    /// `P.node`.
    fn node_subject(&self) -> String {
        format!("{}.node", self.prefix)
    }

    /// `P.control`.
    fn control_subject(&self) -> String {
        format!("{}.control", self.prefix)
    }

    /// `P.channels` (API `channels` surveys).
    fn channels_subject(&self) -> String {
        format!("{}.channels", self.prefix)
    }

    /// Runs `f` with the write deadline: a NATS that is down or slow is an error, never a hang.
    async fn deadline<T, E: std::fmt::Display>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, EngineError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(EngineError::Unavailable(format!("nats: {what}: {e}"))),
            Err(_) => Err(EngineError::Unavailable(format!(
                "nats: {what}: no answer within {:?} (broker.nats.write_timeout)",
                self.timeout
            ))),
        }
    }
}

/// A channel name as one subject token and stream-name part: ASCII letters, digits and `-`
/// as they are, every other byte as `_` and two hex digits. Injective (so two channels never
/// share a subject or a stream) and free of what subjects and stream names cannot hold (`.`,
/// `*`, `>`, spaces, path separators).
pub fn channel_token(channel: &str) -> String {
    let mut token = String::with_capacity(channel.len());
    for byte in channel.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' {
            token.push(byte as char);
        } else {
            token.push_str(&format!("_{byte:02X}"));
        }
    }
    token
}

/// Longest [`channel_token`] used as it is in a stream name: JetStream's file store makes a
/// directory per stream, and a file name has at most 255 bytes.
const MAX_STREAM_TOKEN: usize = 200;

/// A channel as the part of its stream's name: [`channel_token`] when it is short enough,
/// else `_H` and the SHA-256 of the channel in hex (which no escaped token can be: `_` is
/// always followed by two hex digits there).
pub fn stream_token(channel: &str) -> String {
    let token = channel_token(channel);
    if token.len() <= MAX_STREAM_TOKEN {
        return token;
    }
    format!("_H{}", hex_sha256(channel.as_bytes()))
}

/// SHA-256 in lowercase hex.
fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

mod tls {
    //! The rustls client config for `broker.nats.tls`.

    use std::sync::Arc;

    use base64::Engine as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

    use crate::config::TlsConfig;
    use crate::engine::EngineError;

    /// PEM text from one of an option's three forms (inline, base64, file); empty when unset.
    fn pem(at: &str, inline: &str, b64: &str, file: &str) -> Result<Vec<u8>, EngineError> {
        let bad = |e: String| EngineError::BadRequest(format!("broker.nats.tls.{at}: {e}"));
        if !file.is_empty() {
            return std::fs::read(file).map_err(|e| bad(format!("cannot read {file}: {e}")));
        }
        if !b64.is_empty() {
            return base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| bad(format!("not base64: {e}")));
        }
        Ok(inline.as_bytes().to_vec())
    }

    /// TLS to NATS: the server verified against `server_ca_pem*` (or, without one, the
    /// system's roots are not consulted: set the CA), a client certificate when `cert_pem*`
    /// and `key_pem*` are set.
    pub(super) fn client_config(tls: &TlsConfig) -> Result<rustls::ClientConfig, EngineError> {
        let bad =
            |at: &str, e: String| EngineError::BadRequest(format!("broker.nats.tls.{at}: {e}"));
        let ca = pem(
            "server_ca_pem",
            &tls.server_ca_pem,
            &tls.server_ca_pem_b64,
            &tls.server_ca_pem_file,
        )?;
        if ca.is_empty() {
            return Err(bad(
                "server_ca_pem",
                "TLS to NATS needs the CA that signed the NATS server's certificate: set \
                 server_ca_pem_file (or server_ca_pem, server_ca_pem_b64)"
                    .into(),
            ));
        }
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&ca) {
            let cert =
                cert.map_err(|e| bad("server_ca_pem", format!("not a PEM certificate: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| bad("server_ca_pem", e.to_string()))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad("enabled", e.to_string()))?
            .with_root_certificates(roots);
        let cert = pem(
            "cert_pem",
            &tls.cert_pem,
            &tls.cert_pem_b64,
            &tls.cert_pem_file,
        )?;
        let key = pem("key_pem", &tls.key_pem, &tls.key_pem_b64, &tls.key_pem_file)?;
        if cert.is_empty() != key.is_empty() {
            return Err(bad(
                "cert_pem",
                "a client certificate needs both cert_pem* and key_pem*".into(),
            ));
        }
        if cert.is_empty() {
            return Ok(builder.with_no_client_auth());
        }
        let chain = CertificateDer::pem_slice_iter(&cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad("cert_pem", format!("not a PEM certificate: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(&key)
            .map_err(|e| bad("key_pem", format!("not a PEM private key: {e}")))?;
        builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| bad("cert_pem", e.to_string()))
    }
}

/// Starts the NATS side of an engine: the connection, and its broker and controller.
pub fn start(
    config: &NatsConfig,
    keeps_history: bool,
) -> Result<(Arc<NatsBroker>, Arc<NatsController>), EngineError> {
    let connection = NatsConnection::start(config, "herald")?;
    let history = (keeps_history && config.jetstream.enabled)
        .then(|| Arc::new(JetStreamHistory::new(connection.clone())));
    let broker = Arc::new(NatsBroker::new(connection.clone(), history));
    let controller = Arc::new(NatsController::new(connection));
    Ok((broker, controller))
}
