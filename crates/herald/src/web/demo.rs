//! The demo chat's sign-in: `POST /demo/token {"name": "alice"}` → `{"user": "alice",
//! "token": "<JWT>"}`, a connection token (HS256 with `client.token.hmac_secret_key`, valid
//! [`TOKEN_TTL`]) for whatever name is asked. It exists only with `demo` on: anyone may be
//! anyone, which is what a demo is and what production must never be.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use hyper::body::Body;
use serde::Deserialize;

use super::{json_no_store, read_post_json};
use crate::config::Config;
use crate::demo_secrets;
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

/// Why a demo sign-in name is refused (answered 400 with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// No name.
    #[error("name is required")]
    Empty,
    /// Over [`MAX_NAME_CHARS`] characters.
    #[error("name must be at most {MAX_NAME_CHARS} characters")]
    TooLong,
    /// A character other than letters, digits, `_`, `-` and `.`.
    #[error("name may contain letters, digits, '_', '-' and '.', not {0:?}")]
    Character(char),
}

/// Checks a sign-in name: 1 to [`MAX_NAME_CHARS`] letters, digits, `_`, `-` or `.` (no
/// `,` or `#`, which would break user-limited channel names, and no spaces).
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(NameError::TooLong);
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(NameError::Character(c));
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
    let Some(_reading) = node.unauthenticated().try_enter() else {
        return node.unauthenticated().full_response();
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
    let secret = &node.config().client.token.hmac_secret_key;
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

/// The demo's start-up banner, logged once after the server listens: where the chat and the
/// admin UI are, how to log into the admin, and — loudly — that [`TOKEN_PATH`] lets anyone
/// sign in as anyone, so a demo must never be reachable by people who should not be trusted.
/// `base_url` is how a browser on this machine reaches the server (`http://127.0.0.1:8000`).
pub fn banner(
    base_url: &str,
    config: &Config,
    secrets: Option<&demo_secrets::Used>,
    config_path: Option<&Path>,
) -> String {
    let admin = &config.admin;
    let from_file = secrets.filter(|s| s.filled.admin_password);
    let login = if admin.insecure {
        "no login (admin.insecure)".to_owned()
    } else if let Some(used) = from_file {
        format!(
            "password: {} (kept in {}; set admin.password to choose one)",
            admin.password,
            used.path.display()
        )
    } else {
        match config_path {
            Some(path) => format!("password: admin.password in {}", path.display()),
            None => "password: admin.password from the environment".to_owned(),
        }
    };
    let mut lines = vec![
        "DEMO MODE — not for production".to_owned(),
        format!("  Chat:   {base_url}/"),
        format!(
            "  Admin:  {base_url}{}/  {login}",
            super::admin_base(config)
        ),
    ];
    if let Some(used) = secrets.filter(|s| s.filled.api_key) {
        lines.push(format!(
            "  Server API key: {} (header X-API-Key; `herald --demo publish CHANNEL JSON` uses it)",
            config.http_api.key
        ));
        if used.created {
            lines.push(format!(
                "  New demo secrets written to {} (owner-only): restarts keep sessions and tokens",
                used.path.display()
            ));
        }
    }
    lines.push(format!(
        "  WARNING: {TOKEN_PATH} signs a token for ANY name it is asked: anyone who can reach \
         this port can sign in as any user and read their private messages. Keep the demo on \
         127.0.0.1 or a trusted network."
    ));
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banner_says_where_how_and_warns() {
        let mut config = Config {
            demo: true,
            ..Config::default()
        };
        let secrets = demo_secrets::DemoSecrets::generate();
        let filled = secrets.fill(&mut config);
        config.apply_demo();
        let used = demo_secrets::Used {
            path: "/d/demo-secrets.json".into(),
            created: true,
            filled,
        };
        let text = banner("http://127.0.0.1:8000", &config, Some(&used), None);
        assert!(text.contains("Chat:   http://127.0.0.1:8000/\n"), "{text}");
        assert!(
            text.contains("Admin:  http://127.0.0.1:8000/admin/"),
            "{text}"
        );
        assert!(text.contains(&secrets.admin_password), "{text}");
        assert!(text.contains(&secrets.http_api_key), "{text}");
        assert!(text.contains("/d/demo-secrets.json"), "{text}");
        assert!(text.contains("sign in as any user"), "{text}");

        // A config's own password is not printed, only where it is.
        let mut config = Config {
            demo: true,
            ..Config::default()
        };
        config.admin.password = "from-the-config".into();
        config.admin.secret = "s".into();
        config.apply_demo();
        let text = banner("http://h:1", &config, None, Some(Path::new("config.json")));
        assert!(!text.contains("from-the-config"), "{text}");
        assert!(text.contains("admin.password in config.json"), "{text}");
    }

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
