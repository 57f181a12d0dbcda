//! The web UI embedded in the binary: the demo chat app at `/` (with `demo`) and the admin UI
//! at `/admin/` (with `admin.enabled`), both built from `web/` by `build.rs`.
//!
//! * `GET /`, `/index.html`: the chat app (demo only); `POST /demo/token`: a connection token
//!   for a name (demo only, see [`demo`]).
//! * `GET /admin/` (or `admin.handler_prefix` + `/`): the admin UI; `{admin}/api/...`: its
//!   JSON endpoints (see [`admin`]).
//! * `GET /assets/...`: the pages' scripts and styles (content-hashed names, cached for a year),
//!   when either UI is on.
//!
//! A path this module does not serve falls through to the server's 404.

pub mod admin;
pub mod admin_guard;
pub mod demo;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Body;
use serde::de::DeserializeOwned;

use crate::config::Config;
use crate::node::Node;
use crate::server::{HttpResponse, json, json_error};

mod assets {
    include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));
}

/// Largest JSON body the UI endpoints take.
const MAX_BODY: usize = 256 * 1024;

/// Whether the UI was built into this binary (false when built with `HERALD_SKIP_WEB=1`).
pub const BUILT: bool = assets::BUILT;

/// Where the admin UI lives: `admin.handler_prefix`, or `/admin` when that is empty.
pub fn admin_base(config: &Config) -> &str {
    match config.admin.handler_prefix.trim_end_matches('/') {
        "" => "/admin",
        prefix => prefix,
    }
}

/// Whether this module answers `path` under `config` (the server's router asks first).
pub fn handles(config: &Config, path: &str) -> bool {
    let demo = config.demo;
    let admin = config.admin.enabled;
    if demo && (path == "/" || path == "/index.html" || path == demo::TOKEN_PATH) {
        return true;
    }
    if (demo || admin) && (path.starts_with("/assets/") || path == "/favicon.svg") {
        return true;
    }
    if admin {
        let base = admin_base(config);
        if let Some(rest) = path.strip_prefix(base) {
            return rest.is_empty() || rest.starts_with('/');
        }
    }
    false
}

/// Answers a request for which [`handles`] is true, from the client at `peer`.
pub async fn handle<B>(node: &Arc<Node>, req: Request<B>, peer: SocketAddr) -> HttpResponse
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let config = node.config();
    let path = req.uri().path().to_owned();
    if config.demo && path == demo::TOKEN_PATH {
        return demo::token(node, req).await;
    }
    if config.admin.enabled {
        let base = admin_base(config);
        if let Some(rest) = path.strip_prefix(base) {
            if let Some(api) = rest.strip_prefix("/api/") {
                return admin::handle(node, api, req, peer.ip()).await;
            }
            if rest.is_empty() {
                // `/admin` → `/admin/`, so that the page's relative links resolve alike.
                let mut response = Response::new(Full::new(Bytes::new()));
                *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
                if let Ok(location) = HeaderValue::from_str(&format!("{base}/")) {
                    response.headers_mut().insert(header::LOCATION, location);
                }
                return response;
            }
            if rest == "/" || rest == "/index.html" {
                return page(req.method(), "/admin/index.html", "Admin");
            }
            return json_error(StatusCode::NOT_FOUND, "no such page");
        }
    }
    match path.as_str() {
        "/" | "/index.html" => page(req.method(), "/index.html", "Chat"),
        _ => static_file(req.method(), &path),
    }
}

/// An HTML page of the UI (never cached, so that a new build is picked up at once).
fn page(method: &Method, key: &str, what: &str) -> HttpResponse {
    if !BUILT {
        let body = format!(
            "<!doctype html><meta charset=utf-8><title>Herald: UI not built</title>\
             <body style=\"font-family:system-ui,sans-serif;max-width:36em;margin:4em auto\">\
             <h1>UI not built</h1><p>This herald binary was built with <code>HERALD_SKIP_WEB=1\
             </code>, so the {what} page is not in it. Build it with Node 20 installed and \
             without that variable to get the chat app and the admin UI.</p>"
        );
        return respond(
            method,
            StatusCode::OK,
            "text/html; charset=utf-8",
            "no-cache",
            Bytes::from(body),
        );
    }
    match find(key) {
        Some(bytes) => respond(
            method,
            StatusCode::OK,
            "text/html; charset=utf-8",
            "no-cache",
            Bytes::from_static(bytes),
        ),
        None => json_error(StatusCode::NOT_FOUND, "no such page"),
    }
}

fn static_file(method: &Method, path: &str) -> HttpResponse {
    if method != Method::GET && method != Method::HEAD {
        return json_error(StatusCode::METHOD_NOT_ALLOWED, "use GET");
    }
    match find(path) {
        Some(bytes) => {
            let cache = if path.starts_with("/assets/") {
                "public, max-age=31536000, immutable"
            } else {
                "public, max-age=3600"
            };
            respond(
                method,
                StatusCode::OK,
                content_type(path),
                cache,
                Bytes::from_static(bytes),
            )
        }
        None => json_error(StatusCode::NOT_FOUND, "no such file"),
    }
}

fn find(key: &str) -> Option<&'static [u8]> {
    assets::ASSETS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, bytes)| *bytes)
}

/// The content type of a file by its extension.
pub fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json" | "map") => "application/json",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn respond(
    method: &Method,
    status: StatusCode,
    content_type: &'static str,
    cache: &'static str,
    body: Bytes,
) -> HttpResponse {
    if method != Method::GET && method != Method::HEAD {
        return json_error(StatusCode::METHOD_NOT_ALLOWED, "use GET");
    }
    let length = body.len();
    let body = if method == Method::HEAD {
        Bytes::new()
    } else {
        body
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if content_type.starts_with("text/html") {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; \
                 style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
            ),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
    }
    response
}

/// Reads the JSON body of a POST request (at most [`MAX_BODY`] bytes; blank reads as `{}`)
/// into `T`, or answers with a JSON error: 405 with `usage` for another method, 400/413 for a
/// bad body, 408 for a body too slow to arrive.
async fn read_post_json<B, T>(req: Request<B>, usage: &str) -> Result<T, HttpResponse>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    T: DeserializeOwned,
{
    if req.method() != Method::POST {
        return Err(json_error(StatusCode::METHOD_NOT_ALLOWED, usage));
    }
    let bytes = read_body(req.into_body()).await?;
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &bytes
    };
    serde_json::from_slice(bytes).map_err(|e| {
        json_error(
            StatusCode::BAD_REQUEST,
            &format!("bad request: malformed JSON body: {e}"),
        )
    })
}

async fn read_body<B>(body: B) -> Result<Bytes, HttpResponse>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let e = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => return Ok(collected.to_bytes()),
        Err(e) => e,
    };
    if let Some(limit) = crate::http_guard::timed_out(e.as_ref()) {
        return Err(crate::http_guard::body_timeout_response(limit));
    }
    if e.downcast_ref::<LengthLimitError>().is_some() {
        return Err(json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the request body must be at most {MAX_BODY} bytes"),
        ));
    }
    Err(json_error(
        StatusCode::BAD_REQUEST,
        &format!("bad request: could not read the body: {e}"),
    ))
}

/// A JSON response with `no-store` (tokens and live numbers must not be cached).
fn json_no_store(status: StatusCode, body: String) -> HttpResponse {
    let mut response = json(status, body);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(demo: bool, admin: bool) -> Config {
        let mut c = Config {
            demo,
            ..Config::default()
        };
        c.admin.enabled = admin;
        c
    }

    #[test]
    fn routes_follow_the_config() {
        let off = config(false, false);
        for path in [
            "/",
            "/index.html",
            "/demo/token",
            "/assets/a.js",
            "/admin",
            "/admin/",
        ] {
            assert!(!handles(&off, path), "{path}");
        }
        let demo = config(true, false);
        assert!(handles(&demo, "/") && handles(&demo, "/demo/token"));
        assert!(handles(&demo, "/assets/chat-1234.js"));
        assert!(!handles(&demo, "/admin/") && !handles(&demo, "/api/publish"));
        let admin = config(false, true);
        assert!(!handles(&admin, "/") && !handles(&admin, "/demo/token"));
        assert!(handles(&admin, "/admin") && handles(&admin, "/admin/api/login"));
        assert!(!handles(&admin, "/administrator"));
        let mut prefixed = config(false, true);
        prefixed.admin.handler_prefix = "/ops/".into();
        assert_eq!(admin_base(&prefixed), "/ops");
        assert!(handles(&prefixed, "/ops/") && !handles(&prefixed, "/admin/"));
    }

    #[test]
    fn content_types() {
        assert_eq!(
            content_type("/assets/x.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("/assets/x.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("/index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("/favicon.svg"), "image/svg+xml");
        assert_eq!(content_type("/x"), "application/octet-stream");
    }
}
