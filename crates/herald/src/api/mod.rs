//! The server HTTP API (protocol.md §8): what an application's backend calls to publish, to
//! manage its users' subscriptions and connections, and to look at the node — compatible with
//! Centrifugo's, so that its server libraries (e.g. PyPI `cent`) work unchanged.
//!
//! * `POST {prefix}/<method>` with the method's request as the JSON body; answer
//!   `{"result": {…}}` or `{"error": {"code", "message"}}` with HTTP 200 (or, in the transport
//!   error mode, the bare error with a mapped HTTP status, see [`reply::http_status`]);
//!   `batch` answers `{"replies": […]}`.
//! * `POST {prefix}` (the legacy single endpoint): `{"method", "params"}` commands, see
//!   [`legacy`].
//! * Authentication by API key ([`auth`]); the request line, headers and body are checked
//!   before any command runs: 401 (no or wrong key, or no key configured), 404 (unknown
//!   method), 405 (not POST), 413 (body over [`MAX_BODY_BYTES`]), 408 (body not complete within
//!   `http_server.body_read_timeout`), 400 (malformed JSON) — each with a JSON error body saying
//!   what to do.
//!
//! The commands themselves live in [`cmd`], one file each.

pub mod auth;
pub mod cmd;
pub mod legacy;
pub mod reply;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{ALLOW, HeaderValue, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Body;

use crate::node::Node;
use cmd::Command;
use cmd::batch::{BatchRequest, method_not_found};
use reply::{ApiError, ErrorMode};

/// Largest request body accepted (10 MiB); larger bodies get 413.
pub const MAX_BODY_BYTES: usize = 10 << 20;

/// Answers one server API request: every request whose path starts with
/// `http_api.handler_prefix` is routed here, its body wrapped in a read deadline
/// ([`crate::http_guard::TimedBody`]; tests use in-memory bodies).
pub async fn handle_request<B>(node: &Arc<Node>, req: Request<B>) -> Response<Full<Bytes>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let config = &node.config().http_api;
    let mode = ErrorMode::of(&config.error_mode, req.headers());

    if let Err(refusal) = auth::authorize(config, req.headers(), req.uri().query()) {
        let mut response = reply::request_error(
            mode,
            StatusCode::UNAUTHORIZED,
            &ApiError::new(401, refusal.message()),
        );
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("apikey"));
        return response;
    }

    let Some(route) = Route::of(&config.handler_prefix, req.uri().path()) else {
        return reply::request_error(
            mode,
            StatusCode::NOT_FOUND,
            &ApiError::new(
                104,
                format!(
                    "method not found: use POST {}/<method>",
                    config.handler_prefix.trim_end_matches('/')
                ),
            ),
        );
    };

    if req.method() != Method::POST {
        let mut response = reply::request_error(
            mode,
            StatusCode::METHOD_NOT_ALLOWED,
            &ApiError::new(
                405,
                format!(
                    "method not allowed: the server API takes POST requests, not {}",
                    req.method()
                ),
            ),
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return response;
    }

    if node.shutdown().is_cancelled() {
        return reply::request_error(
            mode,
            StatusCode::SERVICE_UNAVAILABLE,
            &ApiError::new(503, "service unavailable: the node is shutting down"),
        );
    }

    let body = match read_body(req.into_body()).await {
        Ok(body) => body,
        Err((status, error)) => {
            let mut response = reply::request_error(mode, status, &error);
            if status == StatusCode::REQUEST_TIMEOUT {
                // The rest of the body is never read: the connection cannot be reused.
                crate::http_guard::close_after(&mut response);
            }
            return response;
        }
    };

    match route {
        Route::Legacy => match legacy::execute(node, &body).await {
            Ok(out) => reply::json(StatusCode::OK, out),
            Err(e) => bad_body(mode, e),
        },
        Route::Method(method) if method == "batch" => {
            let started = Instant::now();
            let request = match BatchRequest::decode(&body) {
                Ok(request) => request,
                Err(e) => return bad_body(mode, e),
            };
            let result = cmd::batch::execute(node, request).await;
            node.metrics().api_call("batch", started.elapsed());
            reply::serialized(StatusCode::OK, &result)
        }
        Route::Method(method) => {
            let command = match Command::decode(&method, &body) {
                Ok(Some(command)) => command,
                Ok(None) => {
                    return reply::request_error(
                        mode,
                        StatusCode::NOT_FOUND,
                        &method_not_found(&method),
                    );
                }
                Err(e) => return bad_body(mode, e),
            };
            let started = Instant::now();
            let name = command.method();
            let outcome = command.execute(node).await;
            node.metrics().api_call(name, started.elapsed());
            match outcome {
                Ok(result) => reply::result(&result),
                Err(e) => {
                    if e.code == 100 {
                        tracing::warn!(method = name, error = %e, "server API command failed");
                    } else {
                        tracing::debug!(method = name, error = %e, "server API command refused");
                    }
                    reply::command_error(mode, &ApiError::from(e))
                }
            }
        }
    }
}

/// Which endpoint a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    /// `{prefix}`: the legacy single endpoint.
    Legacy,
    /// `{prefix}/<method>`.
    Method(String),
}

impl Route {
    /// The endpoint of `path` under `prefix`, or `None` when the path names none.
    fn of(prefix: &str, path: &str) -> Option<Route> {
        let prefix = prefix.trim_end_matches('/');
        let rest = path.strip_prefix(prefix)?;
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() {
            return Some(Route::Legacy);
        }
        let method = rest.strip_prefix('/')?;
        if method.is_empty() || method.contains('/') {
            return None;
        }
        Some(Route::Method(method.to_owned()))
    }
}

/// Reads the whole body, refusing more than [`MAX_BODY_BYTES`].
async fn read_body<B>(body: B) -> Result<Bytes, (StatusCode, ApiError)>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::new(
                413,
                format!("payload too large: the request body is over {MAX_BODY_BYTES} bytes"),
            ),
        )
    };
    if body
        .size_hint()
        .exact()
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return Err(too_large());
    }
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(e) if crate::http_guard::timed_out(e.as_ref()).is_some() => Err((
            StatusCode::REQUEST_TIMEOUT,
            ApiError::new(
                408,
                format!("request timeout: {e}; send the whole body at once"),
            ),
        )),
        Err(e) => Err((
            StatusCode::BAD_REQUEST,
            ApiError::new(107, format!("bad request: could not read the body: {e}")),
        )),
    }
}

/// HTTP 400 for a body that does not decode.
fn bad_body(mode: ErrorMode, e: cmd::DecodeError) -> Response<Full<Bytes>> {
    reply::request_error(
        mode,
        StatusCode::BAD_REQUEST,
        &ApiError::new(107, e.message),
    )
}

#[cfg(test)]
mod tests;
