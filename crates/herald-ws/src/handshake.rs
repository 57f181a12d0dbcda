//! The server side of the opening handshake (RFC 6455 §4.2): validates an HTTP upgrade request,
//! picks a subprotocol and the permessage-deflate parameters, and builds the `101` response.
//!
//! The HTTP parsing itself belongs to the HTTP server (hyper); this module only looks at the
//! parsed request, so the same WebSocket endpoint lives beside ordinary HTTP routes.

use std::sync::Arc;

use base64::Engine;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version, header};
use sha1::{Digest, Sha1};

use crate::deflate::{self, DeflateConfig, DeflateParams};

/// The GUID of RFC 6455 §1.3 that `Sec-WebSocket-Accept` is derived with.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Decides whether a browser page from `origin` may open a WebSocket (cross-site WebSocket
/// hijacking protection). Called only when the request has an `Origin` header.
pub type OriginCheck = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// What the server accepts in a handshake.
#[derive(Clone, Default)]
pub struct HandshakeConfig {
    /// Subprotocols the server speaks, in its order of preference.
    pub protocols: Vec<String>,
    /// permessage-deflate policy.
    pub deflate: DeflateConfig,
    /// Origin policy; `None` accepts every origin.
    pub origin: Option<OriginCheck>,
}

impl std::fmt::Debug for HandshakeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakeConfig")
            .field("protocols", &self.protocols)
            .field("deflate", &self.deflate)
            .field("origin", &self.origin.as_ref().map(|_| "<check>"))
            .finish()
    }
}

/// What was agreed with the client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Negotiated {
    /// The selected subprotocol, if the client offered one the server speaks.
    pub protocol: Option<String>,
    /// permessage-deflate parameters, if the extension is in use.
    pub deflate: Option<DeflateParams>,
}

/// A refused upgrade: an HTTP status and a message saying what was wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct HandshakeError {
    pub status: StatusCode,
    pub message: &'static str,
}

impl HandshakeError {
    const fn bad_request(message: &'static str) -> HandshakeError {
        HandshakeError {
            status: StatusCode::BAD_REQUEST,
            message,
        }
    }

    /// The HTTP response for this error, with a JSON body `{"error": "..."}` (and the
    /// `Sec-WebSocket-Version` header a 426 must carry).
    pub fn to_response(&self) -> Response<String> {
        let body = format!(
            "{{\"error\":{{\"code\":{},\"message\":\"{}\"}}}}\n",
            self.status.as_u16(),
            self.message
        );
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.status == StatusCode::UPGRADE_REQUIRED {
            headers.insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
            headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        }
        response
    }
}

/// Whether the request asks for a WebSocket upgrade at all (so a router can send plain HTTP
/// requests elsewhere).
pub fn is_upgrade_request<B>(req: &Request<B>) -> bool {
    header_has_token(req.headers(), header::UPGRADE, "websocket")
}

/// Validates a WebSocket upgrade request and returns the `101 Switching Protocols` response
/// to send plus what was negotiated.
pub fn accept<B>(
    req: &Request<B>,
    config: &HandshakeConfig,
) -> Result<(Response<()>, Negotiated), HandshakeError> {
    let headers = req.headers();
    if req.method() != Method::GET {
        return Err(HandshakeError::bad_request(
            "a WebSocket handshake must be a GET request",
        ));
    }
    if req.version() < Version::HTTP_11 {
        return Err(HandshakeError::bad_request(
            "a WebSocket handshake needs HTTP/1.1",
        ));
    }
    if !header_has_token(headers, header::UPGRADE, "websocket") {
        return Err(HandshakeError {
            status: StatusCode::UPGRADE_REQUIRED,
            message: "this endpoint speaks WebSocket: send 'Upgrade: websocket'",
        });
    }
    if !header_has_token(headers, header::CONNECTION, "upgrade") {
        return Err(HandshakeError::bad_request(
            "missing 'Connection: Upgrade' header",
        ));
    }
    match headers.get(header::SEC_WEBSOCKET_VERSION) {
        Some(v) if v.as_bytes() == b"13" => {}
        _ => {
            return Err(HandshakeError {
                status: StatusCode::UPGRADE_REQUIRED,
                message: "unsupported WebSocket version: only version 13 is supported",
            });
        }
    }
    let key = match headers
        .get_all(header::SEC_WEBSOCKET_KEY)
        .iter()
        .collect::<Vec<_>>()[..]
    {
        [key] if is_valid_key(key.as_bytes()) => key.as_bytes(),
        _ => {
            return Err(HandshakeError::bad_request(
                "Sec-WebSocket-Key must be one base64-encoded 16-byte value",
            ));
        }
    };
    if let (Some(check), Some(origin)) = (&config.origin, headers.get(header::ORIGIN)) {
        let allowed = origin.to_str().map(|o| check(o)).unwrap_or(false);
        if !allowed {
            return Err(HandshakeError {
                status: StatusCode::FORBIDDEN,
                message: "origin not allowed",
            });
        }
    }

    let protocol = select_protocol(headers, &config.protocols);
    let offers = deflate::parse_offers(
        headers
            .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
            .iter()
            .map(HeaderValue::as_bytes),
    );
    let deflate = deflate::negotiate(&offers, &config.deflate);

    let mut response = Response::new(());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let out = response.headers_mut();
    out.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    out.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    out.insert(header::SEC_WEBSOCKET_ACCEPT, accept_key(key));
    if let Some(p) = &protocol {
        if let Ok(value) = HeaderValue::from_str(p) {
            out.insert(header::SEC_WEBSOCKET_PROTOCOL, value);
        }
    }
    if let Some((params, offer)) = &deflate {
        if let Ok(value) = HeaderValue::from_str(&params.response_header(offer)) {
            out.insert(header::SEC_WEBSOCKET_EXTENSIONS, value);
        }
    }
    Ok((
        response,
        Negotiated {
            protocol,
            deflate: deflate.map(|(params, _)| params),
        },
    ))
}

/// `Sec-WebSocket-Accept` for a client key.
pub fn accept_key(key: &[u8]) -> HeaderValue {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(ACCEPT_GUID);
    let encoded = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
    // Base64 output is always a valid header value.
    HeaderValue::from_str(&encoded).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn is_valid_key(key: &[u8]) -> bool {
    key.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode(key)
            .is_ok_and(|k| k.len() == 16)
}

/// Whether a comma-separated header (in any of its occurrences) contains `token`,
/// case-insensitively.
fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

fn select_protocol(headers: &HeaderMap, supported: &[String]) -> Option<String> {
    let offered: Vec<&[u8]> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .collect();
    supported
        .iter()
        .find(|s| offered.contains(&s.as_bytes()))
        .cloned()
}

/// Parses a raw HTTP/1.1 request head (as read from a socket) into a request, for servers that
/// read the handshake themselves and for fuzzing `accept` end to end. Returns `None` when the
/// head is incomplete or malformed.
pub fn parse_request(raw: &[u8]) -> Option<Request<()>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    if !parsed.parse(raw).ok()?.is_complete() {
        return None;
    }
    let mut builder = Request::builder()
        .method(parsed.method?)
        .uri(parsed.path?)
        .version(match parsed.version? {
            0 => Version::HTTP_10,
            _ => Version::HTTP_11,
        });
    for h in parsed.headers.iter() {
        builder = builder.header(h.name, h.value);
    }
    builder.body(()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(extra: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder()
            .uri("/ws")
            .header("Host", "example")
            .header("Upgrade", "websocket")
            .header("Connection", "keep-alive, Upgrade")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn accepts_the_rfc_example() {
        let (resp, negotiated) = accept(&request(&[]), &HandshakeConfig::default()).unwrap();
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        // The example of RFC 6455 §1.3.
        assert_eq!(
            resp.headers()[header::SEC_WEBSOCKET_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(negotiated, Negotiated::default());
    }

    #[test]
    fn picks_a_subprotocol_and_deflate() {
        let config = HandshakeConfig {
            protocols: vec!["centrifuge-json".into()],
            ..HandshakeConfig::default()
        };
        let req = request(&[
            (
                "Sec-WebSocket-Protocol",
                "centrifuge-protobuf, centrifuge-json",
            ),
            (
                "Sec-WebSocket-Extensions",
                "permessage-deflate; client_max_window_bits",
            ),
        ]);
        let (resp, negotiated) = accept(&req, &config).unwrap();
        assert_eq!(negotiated.protocol.as_deref(), Some("centrifuge-json"));
        assert_eq!(
            resp.headers()[header::SEC_WEBSOCKET_PROTOCOL],
            "centrifuge-json"
        );
        assert!(negotiated.deflate.is_some());
        assert!(
            resp.headers()[header::SEC_WEBSOCKET_EXTENSIONS]
                .to_str()
                .unwrap()
                .starts_with("permessage-deflate")
        );
    }

    #[test]
    fn refuses_bad_upgrades_with_clear_statuses() {
        let config = HandshakeConfig {
            origin: Some(Arc::new(|o| o == "https://good.example")),
            ..HandshakeConfig::default()
        };
        let cases = [
            (
                request(&[("Origin", "https://evil.example")]),
                StatusCode::FORBIDDEN,
            ),
            (
                Request::builder()
                    .uri("/ws")
                    .header("Upgrade", "websocket")
                    .header("Connection", "Upgrade")
                    .header("Sec-WebSocket-Version", "8")
                    .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
                    .body(())
                    .unwrap(),
                StatusCode::UPGRADE_REQUIRED,
            ),
            (
                Request::builder()
                    .uri("/ws")
                    .header("Upgrade", "websocket")
                    .header("Connection", "Upgrade")
                    .header("Sec-WebSocket-Version", "13")
                    .header("Sec-WebSocket-Key", "short")
                    .body(())
                    .unwrap(),
                StatusCode::BAD_REQUEST,
            ),
            (
                Request::builder()
                    .method("POST")
                    .uri("/ws")
                    .body(())
                    .unwrap(),
                StatusCode::BAD_REQUEST,
            ),
        ];
        for (req, status) in cases {
            let err = accept(&req, &config).unwrap_err();
            assert_eq!(err.status, status, "{err}");
            let resp = err.to_response();
            assert_eq!(resp.status(), status);
            assert!(resp.body().contains(err.message));
        }
        assert!(accept(&request(&[("Origin", "https://good.example")]), &config).is_ok());
    }

    #[test]
    fn parses_a_raw_request_head() {
        let raw = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
                    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                    Sec-WebSocket-Version: 13\r\n\r\n";
        let req = parse_request(raw).unwrap();
        assert!(accept(&req, &HandshakeConfig::default()).is_ok());
        assert!(parse_request(&raw[..20]).is_none());
    }
}
