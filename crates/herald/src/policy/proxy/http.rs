//! [`HttpProxy`]: one configured proxy endpoint and the POST that asks it — headers (the
//! connection's forwarded ones over `static_headers`), the deadline (`timeout`), a bounded
//! answer, and what a failure means for the client.
//!
//! All proxies share one HTTP client ([`shared_client`]), whose pool keeps connections to
//! each backend alive between calls.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::{ProxyConfig, StatusToCodeTransform};
use crate::policy::Refusal;
use crate::protocol::{Disconnect, Error};

/// The largest answer read from a backend: far above any sensible connect result or RPC
/// answer, and a bound on what a broken backend can make Herald buffer per call.
pub const MAX_RESPONSE: usize = 4 * 1024 * 1024;

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The one HTTP client of all proxies (made on first use).
fn shared_client() -> Result<&'static HttpClient, String> {
    static CLIENT: OnceLock<Result<HttpClient, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            crate::auth::jwks::https_connector()
                .map(|connector| {
                    Client::builder(TokioExecutor::new())
                        .pool_idle_timeout(Duration::from_secs(90))
                        .build(connector)
                })
                .map_err(|e| format!("TLS setup failed: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Why a call got no answer to read.
#[derive(Debug)]
pub enum CallError {
    /// No connection, or it broke (connection refused, reset, DNS).
    Unreachable(String),
    /// No answer within the proxy's `timeout`.
    Timeout(Duration),
    /// The backend answered with a status other than 200.
    Status(StatusCode),
    /// The answer was too large, cut short, or not the JSON expected.
    BadAnswer(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(e) => write!(f, "backend unreachable: {e}"),
            CallError::Timeout(t) => write!(
                f,
                "no answer within {} (the proxy's timeout)",
                crate::config::format_duration(*t)
            ),
            CallError::Status(s) => write!(f, "backend answered HTTP {s} (200 expected)"),
            CallError::BadAnswer(e) => write!(f, "backend's answer unusable: {e}"),
        }
    }
}

/// The longest close reason a WebSocket close frame holds.
const MAX_REASON_BYTES: usize = 123;

/// A disconnect a backend asked for (`code`, `reason`), as a close frame can carry it: a code
/// outside the application range 3000..=4999 becomes 3004 (internal server error, the SDK
/// reconnects) and is logged, a reason is cut to 123 bytes.
pub fn backend_disconnect(proxy: &str, code: u32, reason: &str) -> Disconnect {
    let Some(code) = u16::try_from(code)
        .ok()
        .filter(|c| (3000..=4999).contains(c))
    else {
        tracing::error!(
            proxy,
            code,
            "the backend asked for a disconnect code outside 3000..=4999, which a close frame \
             cannot carry: the client is closed with 3004 instead; answer a code in that range"
        );
        return Disconnect::INTERNAL;
    };
    let mut end = reason.len().min(MAX_REASON_BYTES);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Disconnect::custom(code, reason[..end].to_owned())
}

/// One proxy endpoint, ready to call.
#[derive(Debug)]
pub struct HttpProxy {
    /// Its name, for logs: `default` or a `proxies[]` name.
    pub name: String,
    endpoint: Uri,
    timeout: Duration,
    /// Static headers (lower-cased names), sent unless the connection has its own value.
    static_headers: HeaderMap,
    /// Connection headers to forward (lower-case).
    pub http_headers: Vec<HeaderName>,
    /// Emulated connect headers to forward (lower-case).
    pub emulated_headers: Vec<String>,
    /// Send payloads in base64.
    pub binary: bool,
    /// Send the connection's `meta`.
    pub include_meta: bool,
    transforms: Vec<StatusToCodeTransform>,
}

impl HttpProxy {
    /// The proxy of `config` (checked by config validation: an http(s) endpoint), named
    /// `name` in logs.
    pub fn new(name: &str, config: &ProxyConfig) -> Result<Arc<HttpProxy>, String> {
        let endpoint = crate::auth::jwks::check_endpoint(&config.endpoint)
            .map_err(|e| format!("proxy \"{name}\": endpoint: {e}"))?;
        let mut static_headers = HeaderMap::new();
        for (key, value) in &config.http.static_headers {
            let key = HeaderName::try_from(key.to_ascii_lowercase())
                .map_err(|e| format!("proxy \"{name}\": static header name \"{key}\": {e}"))?;
            let value = HeaderValue::try_from(value.as_str())
                .map_err(|e| format!("proxy \"{name}\": static header \"{key}\" value: {e}"))?;
            static_headers.insert(key, value);
        }
        let http_headers = config
            .http_headers
            .iter()
            .map(|h| {
                HeaderName::try_from(h.to_ascii_lowercase())
                    .map_err(|e| format!("proxy \"{name}\": http_headers entry \"{h}\": {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(HttpProxy {
            name: name.to_owned(),
            endpoint,
            timeout: config.timeout,
            static_headers,
            http_headers,
            emulated_headers: config
                .emulated_headers
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            binary: config.binary_encoding,
            include_meta: config.include_connection_meta,
            transforms: config.http.status_to_code_transforms.clone(),
        }))
    }

    /// The `encoding` field of this proxy's requests.
    pub fn encoding(&self) -> &'static str {
        if self.binary { "binary" } else { "json" }
    }

    /// POSTs `body` (JSON) with the connection's `headers` (those it forwards), and returns
    /// the answer's body: within the proxy's timeout, at most [`MAX_RESPONSE`] bytes, from a
    /// 200 answer.
    pub async fn call(
        &self,
        body: Vec<u8>,
        headers: &[(HeaderName, HeaderValue)],
    ) -> Result<Bytes, CallError> {
        let client = shared_client().map_err(CallError::Unreachable)?;
        let mut request = http::Request::post(self.endpoint.clone());
        let Some(map) = request.headers_mut() else {
            return Err(CallError::BadAnswer("request could not be built".into()));
        };
        map.extend(self.static_headers.clone());
        for (name, value) in headers {
            // The client's own value wins over a static one, as in Centrifugo.
            map.insert(name.clone(), value.clone());
        }
        map.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        map.insert(
            http::header::USER_AGENT,
            HeaderValue::from_static(concat!("herald/", env!("CARGO_PKG_VERSION"))),
        );
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| CallError::BadAnswer(format!("request could not be built: {e}")))?;
        let exchange = async {
            let response = client
                .request(request)
                .await
                .map_err(|e| CallError::Unreachable(crate::auth::jwks::error_chain(&e)))?;
            let status = response.status();
            if status != StatusCode::OK {
                return Err(CallError::Status(status));
            }
            Limited::new(response.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map(|body| body.to_bytes())
                .map_err(|e| CallError::BadAnswer(format!("reading the body: {e}")))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| CallError::Timeout(self.timeout))?
    }

    /// What a failed call means for the client's command: the `status_to_code_transforms`
    /// entry for the backend's status if there is one, else 100 (internal, temporary: the
    /// SDK tries again), as in Centrifugo. Logged, with what to do.
    pub fn refusal(&self, kind: &str, error: &CallError) -> Refusal {
        if let CallError::Status(status) = error
            && let Some(t) = self
                .transforms
                .iter()
                .find(|t| t.status_code == status.as_u16())
        {
            if t.to_error.code > 0 {
                return Refusal::Error(Error {
                    code: t.to_error.code,
                    message: t.to_error.message.clone().into(),
                    temporary: t.to_error.temporary,
                });
            }
            if t.to_disconnect.code > 0 {
                return Refusal::Disconnect(backend_disconnect(
                    &self.name,
                    t.to_disconnect.code,
                    &t.to_disconnect.reason,
                ));
            }
        }
        self.log_failure(
            kind,
            error,
            "the client's command is answered 100 (temporary: the SDK retries)",
        );
        Refusal::Error(Error::INTERNAL)
    }

    /// Logs a failed call at ERROR with the proxy's name, the event, the endpoint and what
    /// the client gets instead (`outcome`).
    pub fn log_failure(&self, kind: &str, error: &CallError, outcome: &str) {
        tracing::error!(
            proxy = %self.name,
            endpoint = %self.endpoint,
            "{kind} proxy call failed: {error}; {outcome}. Check that the backend is up and \
             answers within the proxy's timeout"
        );
    }
}
