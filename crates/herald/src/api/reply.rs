//! What the server API answers: `{"result": …}` / `{"error": {code, message}}` bodies, the
//! HTTP status they travel with, and the transport error mode (protocol.md §8).

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::protocol;

/// Request header that switches one request to the transport error mode.
pub const ERROR_MODE_HEADER: &str = "x-centrifugo-error-mode";

/// An error as the server API reports it: `{"code": …, "message": …}` (no `temporary` flag,
/// unlike the client protocol).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    /// API error code (protocol.md §7), or the HTTP status for transport-level failures
    /// (401, 405, 413…).
    pub code: u32,
    /// Human-readable message; starts with the standard message of the code.
    pub message: Cow<'static, str>,
}

impl ApiError {
    /// An error with any code and message.
    pub fn new(code: u32, message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }
}

impl From<protocol::Error> for ApiError {
    fn from(e: protocol::Error) -> Self {
        ApiError {
            code: e.code,
            message: e.message,
        }
    }
}

impl From<&protocol::Error> for ApiError {
    fn from(e: &protocol::Error) -> Self {
        ApiError::from(e.clone())
    }
}

/// How command errors reach the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorMode {
    /// Centrifugo's default: HTTP 200 with `{"error": {…}}` in the body.
    Body,
    /// HTTP status mapped from the error code ([`http_status`]), body `{"code", "message"}`.
    Transport,
}

impl ErrorMode {
    /// The mode of one request: transport when `http_api.error_mode` is `transport` or the
    /// request carries `X-Centrifugo-Error-Mode: transport`.
    pub fn of(configured: &str, headers: &HeaderMap) -> ErrorMode {
        let header = headers
            .get(ERROR_MODE_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("transport"));
        if header || configured.trim().eq_ignore_ascii_case("transport") {
            ErrorMode::Transport
        } else {
            ErrorMode::Body
        }
    }
}

/// The HTTP status of an API error code in transport error mode: 100→500, 102/104→404,
/// 107/108→400, 112→416, 113→409, anything else→500.
pub fn http_status(code: u32) -> StatusCode {
    match code {
        100 => StatusCode::INTERNAL_SERVER_ERROR,
        102 | 104 => StatusCode::NOT_FOUND,
        107 | 108 => StatusCode::BAD_REQUEST,
        112 => StatusCode::RANGE_NOT_SATISFIABLE,
        113 => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A JSON response.
pub fn json(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `200 {"result": <result>}`.
pub fn result(result: &RawValue) -> Response<Full<Bytes>> {
    #[derive(Serialize)]
    struct Body<'a> {
        result: &'a RawValue,
    }
    serialized(StatusCode::OK, &Body { result })
}

/// A failed command: `200 {"error": …}`, or in transport mode the mapped status with the bare
/// error.
pub fn command_error(mode: ErrorMode, error: &ApiError) -> Response<Full<Bytes>> {
    match mode {
        ErrorMode::Body => wrapped_error(StatusCode::OK, error),
        ErrorMode::Transport => serialized(http_status(error.code), error),
    }
}

/// A request refused before any command ran (401, 404, 405, 413, malformed JSON…): `status`
/// with `{"error": …}`, or the bare error in transport mode.
pub fn request_error(
    mode: ErrorMode,
    status: StatusCode,
    error: &ApiError,
) -> Response<Full<Bytes>> {
    match mode {
        ErrorMode::Body => wrapped_error(status, error),
        ErrorMode::Transport => serialized(status, error),
    }
}

fn wrapped_error(status: StatusCode, error: &ApiError) -> Response<Full<Bytes>> {
    #[derive(Serialize)]
    struct Body<'a> {
        error: &'a ApiError,
    }
    serialized(status, &Body { error })
}

/// `value` as a JSON response; a value that cannot be serialized (it never happens with the
/// types used here) becomes a 500 with an error body.
pub fn serialized<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec(value) {
        Ok(body) => json(status, body),
        Err(e) => {
            tracing::error!(error = %e, "encoding an API response failed");
            json(
                StatusCode::INTERNAL_SERVER_ERROR,
                br#"{"error":{"code":100,"message":"internal server error"}}"#.to_vec(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body(r: Response<Full<Bytes>>) -> (StatusCode, String) {
        let status = r.status();
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[test]
    fn error_mode_mapping() {
        let expected = [
            (100, 500),
            (101, 500),
            (102, 404),
            (103, 500),
            (104, 404),
            (106, 500),
            (107, 400),
            (108, 400),
            (111, 500),
            (112, 416),
            (113, 409),
            (4000, 500),
        ];
        for (code, status) in expected {
            assert_eq!(http_status(code).as_u16(), status, "code {code}");
        }
    }

    #[test]
    fn error_mode_from_config_or_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(ErrorMode::of("", &headers), ErrorMode::Body);
        assert_eq!(ErrorMode::of("transport", &headers), ErrorMode::Transport);
        assert_eq!(ErrorMode::of("TRANSPORT", &headers), ErrorMode::Transport);
        headers.insert(
            "X-Centrifugo-Error-Mode",
            HeaderValue::from_static("transport"),
        );
        assert_eq!(ErrorMode::of("", &headers), ErrorMode::Transport);
        headers.insert("X-Centrifugo-Error-Mode", HeaderValue::from_static("body"));
        assert_eq!(ErrorMode::of("", &headers), ErrorMode::Body);
    }

    #[tokio::test]
    async fn bodies() {
        let raw = RawValue::from_string(r#"{"offset":1}"#.into()).unwrap();
        assert_eq!(
            body(result(&raw)).await,
            (StatusCode::OK, r#"{"result":{"offset":1}}"#.into())
        );
        let e = ApiError::from(protocol::Error::UNKNOWN_CHANNEL);
        assert_eq!(
            body(command_error(ErrorMode::Body, &e)).await,
            (
                StatusCode::OK,
                r#"{"error":{"code":102,"message":"unknown channel"}}"#.into()
            )
        );
        assert_eq!(
            body(command_error(ErrorMode::Transport, &e)).await,
            (
                StatusCode::NOT_FOUND,
                r#"{"code":102,"message":"unknown channel"}"#.into()
            )
        );
        // The temporary flag of the client protocol is not part of API errors.
        let e = ApiError::from(protocol::Error::INTERNAL);
        assert_eq!(
            body(command_error(ErrorMode::Body, &e)).await.1,
            r#"{"error":{"code":100,"message":"internal server error"}}"#
        );
        let e = ApiError::new(401, "no key");
        assert_eq!(
            body(request_error(ErrorMode::Body, StatusCode::UNAUTHORIZED, &e)).await,
            (
                StatusCode::UNAUTHORIZED,
                r#"{"error":{"code":401,"message":"no key"}}"#.into()
            )
        );
    }
}
