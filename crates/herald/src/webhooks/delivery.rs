//! Delivery: the task that POSTs the queue's events to `webhooks.endpoint`, a batch at a time,
//! in queue order, signed, with a deadline on each POST, retrying with back-off until the
//! backend answers 2xx — at least once, in order.
//!
//! The request:
//!
//! ```text
//! POST <endpoint>
//! Content-Type: application/json
//! X-Herald-Timestamp: <Unix seconds when this attempt was signed>
//! X-Herald-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>
//!
//! {"events":[{...},{...}]}
//! ```
//!
//! The timestamp is inside what is signed, so a backend that refuses timestamps older than a
//! few minutes refuses replays of a captured request.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use super::outbox::Outbox;
use crate::auth::jwks::error_chain;
use crate::config::WebhooksConfig;

/// The header with the signature.
pub const SIGNATURE_HEADER: &str = "x-herald-signature";
/// The header with the signing time.
pub const TIMESTAMP_HEADER: &str = "x-herald-timestamp";

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// `sha256=<hex>` of `timestamp.body` under `secret`.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256>>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// Why a POST did not deliver its batch.
#[derive(Debug, thiserror::Error)]
enum PostError {
    #[error("no answer within webhooks.timeout ({0:?})")]
    Timeout(Duration),
    #[error("{0}")]
    Exchange(String),
    #[error("the backend answered {0}")]
    Status(http::StatusCode),
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    #[error("cannot build the request: {0}")]
    Request(#[from] http::Error),
}

/// POSTs batches from one queue to one endpoint.
pub struct Delivery {
    endpoint: http::Uri,
    secret: Box<[u8]>,
    timeout: Duration,
    max_batch: usize,
    min_backoff: Duration,
    max_backoff: Duration,
    client: Result<HttpsClient, String>,
}

impl Delivery {
    /// Delivery as `config` says (validated: the endpoint parses).
    pub fn new(config: &WebhooksConfig) -> Result<Delivery, String> {
        let endpoint = super::check_endpoint(&config.endpoint)?;
        Ok(Delivery {
            endpoint,
            secret: config.secret.as_bytes().into(),
            timeout: config.timeout,
            max_batch: config.max_batch.max(1),
            min_backoff: config.retry_min_backoff,
            max_backoff: config.retry_max_backoff.max(config.retry_min_backoff),
            client: client(),
        })
    }

    /// Delivers until `stop`: waits for a batch (and, in a cluster, for this node's turn),
    /// POSTs it, drops it from the queue on 2xx, retries it after a growing wait otherwise.
    pub async fn run(self, outbox: Arc<dyn Outbox>, stop: CancellationToken) {
        let mut backoff = self.min_backoff;
        let mut failing_since: Option<std::time::Instant> = None;
        loop {
            let batch = tokio::select! {
                () = stop.cancelled() => break,
                batch = outbox.next(self.max_batch, self.timeout) => batch,
            };
            if batch.bodies.is_empty() {
                continue;
            }
            let mut body =
                Vec::with_capacity(16 + batch.bodies.iter().map(|b| b.len() + 1).sum::<usize>());
            body.extend_from_slice(b"{\"events\":[");
            for (i, event) in batch.bodies.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(event);
            }
            body.extend_from_slice(b"]}");
            let result = tokio::select! {
                () = stop.cancelled() => break,
                result = self.post(Bytes::from(body)) => result,
            };
            match result {
                Ok(()) => {
                    outbox.delivered(batch).await;
                    if let Some(since) = failing_since.take() {
                        tracing::info!(
                            "webhooks: {} accepts events again (after {}s)",
                            self.endpoint,
                            since.elapsed().as_secs()
                        );
                    }
                    backoff = self.min_backoff;
                }
                Err(e) => {
                    outbox.metrics().failed_posts.inc();
                    if failing_since.is_none() {
                        failing_since = Some(std::time::Instant::now());
                        tracing::warn!(
                            "webhooks: POST to {} failed: {e}; {} events wait and are retried \
                             (every {:?} at most) until it answers 2xx",
                            self.endpoint,
                            outbox.waiting(),
                            self.max_backoff
                        );
                    } else {
                        tracing::debug!("webhooks: POST to {} failed again: {e}", self.endpoint);
                    }
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(jitter(backoff)) => {}
                    }
                    backoff = (backoff * 2).min(self.max_backoff);
                }
            }
        }
        outbox.stopped().await;
    }

    async fn post(&self, body: Bytes) -> Result<(), PostError> {
        let client = self
            .client
            .as_ref()
            .map_err(|e| PostError::Tls(e.clone()))?;
        let timestamp = crate::time::unix_now();
        let request = http::Request::post(self.endpoint.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("herald/", env!("CARGO_PKG_VERSION")),
            )
            .header(TIMESTAMP_HEADER, timestamp)
            .header(SIGNATURE_HEADER, signature(&self.secret, timestamp, &body))
            .body(Full::new(body))?;
        let exchange = async {
            let response = client
                .request(request)
                .await
                .map_err(|e| PostError::Exchange(error_chain(&e)))?;
            let status = response.status();
            // Read (a bounded amount of) the answer so the connection can be reused.
            let _ = http_body_util::Limited::new(response.into_body(), 64 * 1024)
                .collect()
                .await;
            if status.is_success() {
                Ok(())
            } else {
                Err(PostError::Status(status))
            }
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| PostError::Timeout(self.timeout))?
    }
}

/// The wait `backoff`, give or take a fifth, so that nodes retrying together spread out.
fn jitter(backoff: Duration) -> Duration {
    let fifth = backoff / 5;
    backoff - fifth + fifth.mul_f64(2.0 * rand::random::<f64>())
}

fn client() -> Result<HttpsClient, String> {
    let connector = crate::auth::jwks::https_connector().map_err(|e| e.to_string())?;
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented example: anyone can check their verifier against it.
    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body_in_hex() {
        assert_eq!(
            signature(b"secret", 1700000000, br#"{"events":[]}"#),
            "sha256=".to_owned()
                + &{
                    let mut mac = <Hmac<Sha256>>::new_from_slice(b"secret").unwrap();
                    mac.update(br#"1700000000.{"events":[]}"#);
                    mac.finalize()
                        .into_bytes()
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                }
        );
        let s = signature(b"secret", 1, b"x");
        assert_eq!(s.len(), 7 + 64);
        assert_ne!(s, signature(b"other", 1, b"x"));
        assert_ne!(s, signature(b"secret", 2, b"x"));
    }
}
