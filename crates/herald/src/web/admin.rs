//! The admin UI's JSON endpoints, under `{admin}/api/` (`/admin/api/` by default):
//!
//! * `GET settings` → `{"insecure", "demo", "version"}` (no login needed: the page asks it
//!   whether to show the login form);
//! * `POST login {"password"}` → `{"token"}`: a session token (HS256 JWT signed with
//!   `admin.secret`, valid [`SESSION_TTL`], with an id of its own); a wrong password is 401;
//!   failed log-ins are rate limited per address and globally (429 with `Retry-After`, see
//!   [`super::admin_guard`]);
//! * `POST logout` with the session: the session is refused from then on (until it expires);
//! * with `Authorization: token <session token>` (not needed with `admin.insecure`):
//!   * `GET stats` → this node's `info` plus cumulative counters (publications, messages
//!     queued to clients, commands), which the UI turns into rates;
//!   * `GET users` → every connected user with their connections and channels;
//!   * `POST <method>` for the server API methods in [`METHODS`]: the same command code as
//!     `POST /api/<method>` ([`crate::api::cmd::Command`]), answered `{"result"}` or
//!     `{"error": {"code", "message"}}`.
//!
//! Without a valid session every endpoint but `settings` and `login` is 401. A session is valid
//! until its `exp`, to the second (no leeway), unless it was logged out.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
use crate::time::{unix_now, unix_now_ms};

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

/// The claims of an admin session token.
#[derive(Debug, Serialize, Deserialize)]
struct SessionClaims {
    sub: String,
    exp: u64,
    /// When it was issued (unix seconds).
    #[serde(default)]
    iat: u64,
    /// The session's id, which `logout` revokes; a token without one is refused.
    #[serde(default)]
    jti: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LoginRequest {
    password: String,
}

/// Answers `{admin}/api/<endpoint>` for the client at `addr`.
pub async fn handle<B>(
    node: &Arc<Node>,
    endpoint: &str,
    req: Request<B>,
    addr: IpAddr,
) -> HttpResponse
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let admin = &node.config().admin;
    match endpoint {
        "settings" => {
            return json_no_store(
                StatusCode::OK,
                serde_json::json!({
                    "insecure": admin.insecure,
                    "demo": node.config().demo,
                    "version": env!("CARGO_PKG_VERSION"),
                })
                .to_string(),
            );
        }
        "login" => return login(node, req, addr).await,
        _ => {}
    }
    let session = if admin.insecure {
        None
    } else {
        match check_session(node, req.headers()) {
            Ok(session) => Some(session),
            Err(message) => {
                let mut response = json_error(StatusCode::UNAUTHORIZED, message);
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("token"));
                return response;
            }
        }
    };
    match endpoint {
        "logout" => logout(node, req.method(), session),
        "stats" => stats(node).await,
        "users" => users(node),
        method if METHODS.contains(&method) => command(node, method, req).await,
        _ => json_error(StatusCode::NOT_FOUND, "no such admin endpoint"),
    }
}

async fn login<B>(node: &Arc<Node>, req: Request<B>, addr: IpAddr) -> HttpResponse
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let admin = &node.config().admin;
    let guard = &node.admin_guard();
    // Anyone may send a body here: their number is capped while it is read. (A request turned
    // away here sent no password, so it is no failed log-in.)
    let Some(_reading) = node.unauthenticated().try_enter() else {
        return node.unauthenticated().full_response();
    };
    if !admin.insecure {
        // Before anything is read: a locked-out client's password is not even looked at, and
        // this attempt counts as failed until its password proves right.
        if let Err(wait) = guard.begin_login(addr, Instant::now()) {
            schedule_summary(node);
            return too_many_logins(wait);
        }
    }
    let usage = "use POST with {\"password\": \"...\"}";
    let request: LoginRequest = match read_post_json(req, usage).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let password_ok = !admin.password.is_empty()
        && bool::from(request.password.as_bytes().ct_eq(admin.password.as_bytes()));
    if !admin.insecure {
        // Counted as failed by `begin_login` until now.
        schedule_summary(node);
        if !password_ok {
            return json_error(StatusCode::UNAUTHORIZED, "wrong password");
        }
        guard.login_succeeded(addr);
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

/// HTTP 429 for a log-in refused for `wait` (locked out, or over the global budget).
fn too_many_logins(wait: Duration) -> HttpResponse {
    // Whole seconds, rounded up, and at least 1.
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let seconds = seconds.max(1);
    let mut response = json_error(
        StatusCode::TOO_MANY_REQUESTS,
        &format!("too many failed log-ins: try again in {seconds} s"),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// Logs the failed log-ins' summary at the end of the window that just opened (once per
/// window, see [`super::admin_guard::AdminGuard::claim_summary`]).
fn schedule_summary(node: &Arc<Node>) {
    if !node.admin_guard().claim_summary() {
        return;
    }
    let node = node.clone();
    tokio::spawn(async move {
        tokio::time::sleep(super::admin_guard::SUMMARY_INTERVAL).await;
        if let Some(summary) = node.admin_guard().take_summary(Instant::now()) {
            tracing::warn!("{summary}");
        }
    });
}

/// `POST logout`: the session of the request is refused from now on.
fn logout(node: &Arc<Node>, method: &Method, session: Option<SessionClaims>) -> HttpResponse {
    if method != Method::POST {
        return json_error(StatusCode::METHOD_NOT_ALLOWED, "use POST");
    }
    if let Some(session) = session {
        node.admin_guard()
            .revoke_session(&session.jti, session.exp, unix_now());
    }
    json_no_store(StatusCode::OK, "{}".into())
}

/// A session token signed with `secret`.
pub fn session_token(secret: &str) -> Result<String, crate::auth::SignError> {
    let now = unix_now();
    let claims = SessionClaims {
        sub: SESSION_SUBJECT.to_owned(),
        exp: now + SESSION_TTL.as_secs(),
        iat: now,
        jti: uuid::Uuid::new_v4().simple().to_string(),
    };
    crate::auth::sign_hs256(&claims, secret)
}

/// Checks the `Authorization: token <session>` (or `Bearer`) header: signed with
/// `admin.secret`, not expired (to the second), not logged out.
fn check_session(node: &Node, headers: &HeaderMap) -> Result<SessionClaims, &'static str> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or("log in first: no Authorization header")?;
    let token = value
        .strip_prefix("token ")
        .or_else(|| value.strip_prefix("Bearer "))
        .ok_or("the Authorization header must be `token <session token>`")?
        .trim();
    let claims = verify_session(&node.config().admin.secret, token)?;
    if node.admin_guard().session_revoked(&claims.jti, claims.iat) {
        return Err("session logged out: log in again");
    }
    Ok(claims)
}

/// The claims of session `token` when it is signed with `secret`, for the admin, and not
/// expired: no leeway, a session ends at its `exp`.
fn verify_session(secret: &str, token: &str) -> Result<SessionClaims, &'static str> {
    if secret.is_empty() {
        return Err("no admin.secret configured");
    }
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    validation.leeway = 0;
    let data = jsonwebtoken::decode::<SessionClaims>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .map_err(|_| "session expired or invalid: log in again")?;
    // jsonwebtoken refuses `exp` < now; a session also ends at `exp` itself.
    if data.claims.sub != SESSION_SUBJECT
        || data.claims.jti.is_empty()
        || data.claims.exp <= unix_now()
    {
        return Err("session expired or invalid: log in again");
    }
    Ok(data.claims)
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

async fn stats(node: &Arc<Node>) -> HttpResponse {
    let info = match info::execute(node, info::InfoRequest {}).await {
        Ok(info) => info,
        Err(e) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.message),
    };
    let counters = counters(&node.metrics().render(node.hub()));
    let time_ms = unix_now_ms();
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
    for client in node.hub().all_clients() {
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
    node.metrics().api_call(name, started.elapsed());
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
        let claims = verify_session("s3cret", &token).expect("a fresh session");
        assert_eq!(claims.sub, SESSION_SUBJECT);
        assert_eq!(claims.jti.len(), 32);
        assert!(verify_session("other", &token).is_err());
        assert!(verify_session("", &token).is_err());
        assert!(verify_session("s3cret", "x.y.z").is_err());
        // Two sessions have different ids.
        let other = session_token("s3cret").unwrap();
        assert_ne!(verify_session("s3cret", &other).unwrap().jti, claims.jti);
        let sign = |claims: serde_json::Value| crate::auth::sign_hs256(&claims, "s3cret").unwrap();
        let now = unix_now();
        // No leeway: a second past `exp` is too late (jsonwebtoken allows 60 s by default).
        let expired =
            sign(serde_json::json!({"sub": "admin", "exp": now - 1, "iat": now - 10, "jti": "x"}));
        assert!(verify_session("s3cret", &expired).is_err());
        // Without an id, or for someone else, it is no session.
        let no_id = sign(serde_json::json!({"sub": "admin", "exp": now + 60, "iat": now}));
        assert!(verify_session("s3cret", &no_id).is_err());
        let other_sub =
            sign(serde_json::json!({"sub": "bob", "exp": now + 60, "iat": now, "jti": "y"}));
        assert!(verify_session("s3cret", &other_sub).is_err());
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
