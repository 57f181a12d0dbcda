//! The demo chat's sign-in: `POST /demo/token {"name": "alice"}` → `{"user": "alice",
//! "token": "<JWT>"}`, a connection token (HS256 with `client.token.hmac_secret_key`, valid
//! [`TOKEN_TTL`]) for whatever name is asked. It exists only with `demo` on: anyone may be
//! anyone, which is what a demo is and what production must never be.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use hyper::body::Body;
use serde::Deserialize;

use super::{json_no_store, read_post_json};
use crate::node::Node;
use crate::server::{HttpResponse, json_error};

/// Path of the token endpoint.
pub const TOKEN_PATH: &str = "/demo/token";

/// How long a demo token is valid (the chat asks for a new one when it expires).
pub const TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);

/// Longest name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 32;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TokenRequest {
    name: String,
}

/// Checks a sign-in name: 1 to [`MAX_NAME_CHARS`] letters, digits, `_`, `-` or `.` (no
/// `,` or `#`, which would break user-limited channel names, and no spaces).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("name is required".into());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!("name must be at most {MAX_NAME_CHARS} characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!(
            "name may contain letters, digits, '_', '-' and '.', not {c:?}"
        ));
    }
    Ok(())
}

/// Answers `POST /demo/token`.
pub async fn token<B>(node: &Arc<Node>, req: Request<B>) -> HttpResponse
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // Anyone may send a body here: their number is capped while it is read.
    let Some(_reading) = node.unauthenticated.try_enter() else {
        return node.unauthenticated.full_response();
    };
    let usage = "use POST with {\"name\": \"...\"}";
    let request: TokenRequest = match read_post_json(req, usage).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let name = request.name.trim();
    if let Err(e) = check_name(name) {
        return json_error(StatusCode::BAD_REQUEST, &format!("bad request: {e}"));
    }
    let secret = &node.config.client.token.hmac_secret_key;
    if secret.is_empty() {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the demo signs tokens with client.token.hmac_secret_key, which is not set",
        );
    }
    let info = serde_json::json!({ "name": name });
    match crate::auth::generate_token(name, Some(TOKEN_TTL), secret, Some(&info)) {
        Ok(token) => json_no_store(
            StatusCode::OK,
            serde_json::json!({ "user": name, "token": token }).to_string(),
        ),
        Err(e) => {
            tracing::error!("demo token: {e}");
            json_error(StatusCode::INTERNAL_SERVER_ERROR, "cannot sign a token")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("alice").is_ok());
        assert!(check_name("Zoë_1.b-c").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a,b").is_err());
        assert!(check_name("a#b").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name(&"x".repeat(33)).is_err());
    }
}
