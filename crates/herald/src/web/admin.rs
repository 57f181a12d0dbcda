//! The admin UI's JSON endpoints, under `{admin}/api/` (`/admin/api/` by default):
//!
//! * `GET settings` → `{"insecure", "demo", "version"}` (no login needed: the page asks it
//!   whether to show the login form);
//! * `POST login {"password"}` → `{"token"}`: a session token (HS256 JWT signed with
//!   `admin.secret`, valid [`SESSION_TTL`]); a wrong password is 401;
//! * with `Authorization: token <session token>` (not needed with `admin.insecure`):
//!   * `GET stats` → this node's `info` plus cumulative counters (publications, messages
//!     queued to clients, commands), which the UI turns into rates;
//!   * `GET users` → every connected user with their connections and channels;
//!   * `POST <method>` for the server API methods in [`METHODS`]: the same command code as
//!     `POST /api/<method>` ([`crate::api::cmd::Command`]), answered `{"result"}` or
//!     `{"error": {"code", "message"}}`.
//!
//! Without a valid session every endpoint but `settings` and `login` is 401.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, StatusCode};
use hyper::body::Body;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::{json_no_store, read_body, read_post_json};
use crate::api::cmd::{Command, info};
use crate::node::Node;
use crate::server::{HttpResponse, json_error};

/// How long an admin session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(24 * 3600);

/// Server API methods the admin UI may call.
pub const METHODS: &[&str] = &[
    "publish",
    "broadcast",
    "disconnect",
    "unsubscribe",
    "subscribe",
    "channels",
    "info",
    "history",
    "history_remove",
    "presence",
    "presence_stats",
];

/// The `sub` claim of admin session tokens.
const SESSION_SUBJECT: &str = "admin";

#[derive(Debug, Serialize, Deserialize)]
struct SessionClaims {
    sub: String,
    exp: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LoginRequest {
    password: String,
}

/// Answers `{admin}/api/<endpoint>`.
pub async fn handle<B>(node: &Arc<Node>, endpoint: &str, req: Request<B>) -> HttpResponse
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let admin = &node.config.admin;
    match endpoint {
        "settings" => {
            return json_no_store(
                StatusCode::OK,
                serde_json::json!({
                    "insecure": admin.insecure,
                    "demo": node.config.demo,
                    "version": env!("CARGO_PKG_VERSION"),
                })
                .to_string(),
            );
        }
        "login" => return login(node, req).await,
        _ => {}
    }
    if !admin.insecure {
        if let Err(message) = check_session(&admin.secret, req.headers()) {
            let mut response = json_error(StatusCode::UNAUTHORIZED, message);
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("token"));
            return response;
        }
    }
    match endpoint {
        "stats" => stats(node),
        "users" => users(node),
        method if METHODS.contains(&method) => command(node, method, req).await,
        _ => json_error(StatusCode::NOT_FOUND, "no such admin endpoint"),
    }
}

async fn login<B>(node: &Arc<Node>, req: Request<B>) -> HttpResponse
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let usage = "use POST with {\"password\": \"...\"}";
    let request: LoginRequest = match read_post_json(req, usage).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let admin = &node.config.admin;
    let password_ok = !admin.password.is_empty()
        && bool::from(request.password.as_bytes().ct_eq(admin.password.as_bytes()));
    if !(admin.insecure || password_ok) {
        tracing::info!("admin login refused: wrong password");
        // Slows down guessing.
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        return json_error(StatusCode::UNAUTHORIZED, "wrong password");
    }
    match session_token(&admin.secret) {
        Ok(token) => json_no_store(
            StatusCode::OK,
            serde_json::json!({ "token": token }).to_string(),
        ),
        Err(e) => {
            tracing::error!("admin session token: {e}");
            json_error(StatusCode::INTERNAL_SERVER_ERROR, "cannot sign a session")
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A session token signed with `secret`.
pub fn session_token(secret: &str) -> Result<String, crate::auth::SignError> {
    let claims = SessionClaims {
        sub: SESSION_SUBJECT.to_owned(),
        exp: unix_now() + SESSION_TTL.as_secs(),
    };
    crate::auth::sign_hs256(&claims, secret)
}

/// Checks the `Authorization: token <session>` (or `Bearer`) header.
fn check_session(secret: &str, headers: &HeaderMap) -> Result<(), &'static str> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or("log in first: no Authorization header")?;
    let token = value
        .strip_prefix("token ")
        .or_else(|| value.strip_prefix("Bearer "))
        .ok_or("the Authorization header must be `token <session token>`")?
        .trim();
    if secret.is_empty() {
        return Err("no admin.secret configured");
    }
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    let data = jsonwebtoken::decode::<SessionClaims>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .map_err(|_| "session expired or invalid: log in again")?;
    if data.claims.sub != SESSION_SUBJECT {
        return Err("session expired or invalid: log in again");
    }
    Ok(())
}

#[derive(Debug, Default, Serialize)]
struct Counters {
    /// Publications made (API and clients).
    publications: u64,
    /// Messages queued to client connections (fan-out included).
    messages: u64,
    /// Commands received from clients.
    commands: u64,
    /// Client connections accepted.
    connections_opened: u64,
}

/// Sums the counters the UI graphs out of the Prometheus exposition (the metrics keep their
/// counters private; this reads what `/metrics` shows).
fn counters(text: &str) -> Counters {
    let mut c = Counters::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let metric = name.split('{').next().unwrap_or(name);
        let slot = match metric {
            "herald_publications_total" => &mut c.publications,
            "herald_client_messages_queued_total" => &mut c.messages,
            "herald_client_commands_received_total" => &mut c.commands,
            "herald_client_connections_opened_total" => &mut c.connections_opened,
            _ => continue,
        };
        // Counters are non-negative integers well below 2^53.
        *slot += value.max(0.0) as u64;
    }
    c
}

fn stats(node: &Arc<Node>) -> HttpResponse {
    let info = match info::execute(node, info::InfoRequest {}) {
        Ok(info) => info,
        Err(e) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.message),
    };
    let counters = counters(&node.metrics.render(&node.hub));
    let time_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    json_no_store(
        StatusCode::OK,
        serde_json::json!({
            "time_ms": time_ms,
            "nodes": info.nodes,
            "counters": counters,
        })
        .to_string(),
    )
}

#[derive(Debug, Serialize)]
struct UserConnections {
    user: String,
    clients: Vec<ClientSummary>,
}

#[derive(Debug, Serialize)]
struct ClientSummary {
    client: String,
    channels: Vec<String>,
}

fn users(node: &Arc<Node>) -> HttpResponse {
    let mut by_user: BTreeMap<String, Vec<ClientSummary>> = BTreeMap::new();
    for client in node.hub.all_clients() {
        let mut channels: Vec<String> = client.channels().iter().map(|c| c.to_string()).collect();
        channels.sort();
        by_user
            .entry(client.user.to_string())
            .or_default()
            .push(ClientSummary {
                client: client.id.to_string(),
                channels,
            });
    }
    let users: Vec<UserConnections> = by_user
        .into_iter()
        .map(|(user, clients)| UserConnections { user, clients })
        .collect();
    json_no_store(
        StatusCode::OK,
        serde_json::json!({ "users": users }).to_string(),
    )
}

async fn command<B>(node: &Arc<Node>, method: &str, req: Request<B>) -> HttpResponse
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if req.method() != Method::POST {
        return json_error(StatusCode::METHOD_NOT_ALLOWED, "use POST");
    }
    let body = match read_body(req.into_body()).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let command = match Command::decode(method, &body) {
        Ok(Some(command)) => command,
        Ok(None) => return json_error(StatusCode::NOT_FOUND, "no such method"),
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e.message),
    };
    let started = std::time::Instant::now();
    let name = command.method();
    let outcome = command.execute(node).await;
    node.metrics.api_call(name, started.elapsed());
    let body = match outcome {
        Ok(result) => format!("{{\"result\":{}}}", result.get()),
        Err(e) => serde_json::json!({"error": {"code": e.code, "message": e.message}}).to_string(),
    };
    json_no_store(StatusCode::OK, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions() {
        let token = session_token("s3cret").unwrap();
        let mut headers = HeaderMap::new();
        assert!(check_session("s3cret", &headers).is_err());
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("token {token}")).unwrap(),
        );
        assert_eq!(check_session("s3cret", &headers), Ok(()));
        assert!(check_session("other", &headers).is_err());
        assert!(check_session("", &headers).is_err());
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("token x.y.z"),
        );
        assert!(check_session("s3cret", &headers).is_err());
    }

    #[test]
    fn counters_from_metrics_text() {
        let text = "# HELP x\nherald_publications_total{source=\"api\"} 3\n\
                    herald_publications_total{source=\"client\"} 4\n\
                    herald_client_messages_queued_total 10\nherald_other_total 99\n";
        let c = counters(text);
        assert_eq!((c.publications, c.messages, c.commands), (7, 10, 0));
    }
}
