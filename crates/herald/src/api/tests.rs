//! Request-level tests of the server API: routing, authentication, status codes and bodies,
//! with in-memory requests (real HTTP is covered by the integration tests).

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};

use super::cmd::test_support::{KEY, client, node, node_with};
use super::{MAX_BODY_BYTES, Route, handle_request};
use crate::node::Node;

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

async fn call(node: &Arc<Node>, req: Request<Full<Bytes>>) -> Answer {
    let response = handle_request(node, req).await;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

fn post(path: &str) -> http::request::Builder {
    Request::post(path).header("x-api-key", KEY)
}

async fn api(node: &Arc<Node>, path: &str, body: &str) -> Answer {
    call(
        node,
        post(path)
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap(),
    )
    .await
}

#[test]
fn routes() {
    assert_eq!(Route::of("/api", "/api"), Some(Route::Legacy));
    assert_eq!(Route::of("/api", "/api/"), Some(Route::Legacy));
    assert_eq!(
        Route::of("/api", "/api/publish"),
        Some(Route::Method("publish".into()))
    );
    assert_eq!(
        Route::of("/api/", "/api/publish/"),
        Some(Route::Method("publish".into()))
    );
    assert_eq!(
        Route::of("/herald/api", "/herald/api/info"),
        Some(Route::Method("info".into()))
    );
    assert_eq!(Route::of("/api", "/apifoo"), None);
    assert_eq!(Route::of("/api", "/api/a/b"), None);
    assert_eq!(Route::of("/api", "/api//"), Some(Route::Legacy));
    assert_eq!(Route::of("/api", "/other"), None);
}

#[tokio::test]
async fn publish_end_to_end() {
    let node = node();
    let a = client(&node, "a", "alice");
    node.hub().subscribe("news", &a);
    let r = api(
        &node,
        "/api/publish",
        r#"{"channel":"news","data":{"x":1}}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, r#"{"result":{}}"#);
    assert_eq!(r.headers.get("content-type").unwrap(), "application/json");
    assert!(a.outbox.queued_bytes() > 0);
}

#[tokio::test]
async fn auth_is_checked_first() {
    let node = node();
    for req in [
        Request::post("/api/publish"),
        Request::post("/api/publish").header("x-api-key", "wrong"),
        Request::get("/api/nope"),
    ] {
        let r = call(&node, req.body(Full::new(Bytes::new())).unwrap()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.json()["error"]["code"], 401);
        assert!(
            r.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("X-API-Key")
        );
        assert_eq!(r.headers.get("www-authenticate").unwrap(), "apikey");
    }
    for req in [
        Request::post("/api/info").header("authorization", format!("apikey {KEY}")),
        Request::post(format!("/api/info?api_key={KEY}")),
    ] {
        let r = call(&node, req.body(Full::new(Bytes::new())).unwrap()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
}

#[tokio::test]
async fn no_key_configured_closes_the_api_unless_insecure() {
    let closed = node_with(|c| c.http_api.key.clear());
    let r = api(&closed, "/api/info", "{}").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("http_api.key"), "{}", r.body);

    let open = node_with(|c| {
        c.http_api.key.clear();
        c.http_api.insecure = true;
    });
    let r = call(
        &open,
        Request::post("/api/info")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn only_post() {
    let node = node();
    let r = call(
        &node,
        Request::get("/api/info")
            .header("x-api-key", KEY)
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers.get("allow").unwrap(), "POST");
    assert_eq!(r.json()["error"]["code"], 405);
}

#[tokio::test]
async fn unknown_method_is_404_with_104() {
    let node = node();
    for path in ["/api/frobnicate", "/api/a/b", "/api/batch/x"] {
        let r = api(&node, path, "{}").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.json()["error"]["code"], 104, "{path}");
    }
}

#[tokio::test]
async fn malformed_json_is_400_naming_the_problem() {
    let node = node();
    let r = api(&node, "/api/publish", r#"{"channel": "#).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"]["code"], 107);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("malformed JSON")
    );
    let r = api(&node, "/api/publish", r#"{"channel": ["x"]}"#).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("field channel"), "{}", r.body);
    let r = api(&node, "/api/batch", r#"{"commands": 5}"#).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn body_limit() {
    let node = node();
    let big = format!(
        r#"{{"channel":"news","data":"{}"}}"#,
        "x".repeat(MAX_BODY_BYTES)
    );
    let r = api(&node, "/api/publish", &big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.json()["error"]["code"], 413);
}

#[tokio::test]
async fn command_errors_are_200_unless_transport_mode() {
    let node = node();
    let r = api(&node, "/api/publish", "{}").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["error"]["code"], 107);

    let r = call(
        &node,
        post("/api/publish")
            .header("x-centrifugo-error-mode", "transport")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["code"], 107);
    assert!(r.json().get("error").is_none());

    let transport = node_with(|c| c.http_api.error_mode = "transport".into());
    let r = api(
        &transport,
        "/api/publish",
        r#"{"channel":"nope:x","data":1}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["code"], 102);
    let r = api(&transport, "/api/history", r#"{"channel":"x"}"#).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["code"], 108);
    // Success is unchanged.
    let r = api(&transport, "/api/publish", r#"{"channel":"x","data":1}"#).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, r#"{"result":{}}"#);
}

#[tokio::test]
async fn batch_has_no_result_wrapper() {
    let node = node();
    let r = api(
        &node,
        "/api/batch",
        r#"{"commands":[{"publish":{"channel":"a","data":1}},{"info":{}},{"presence":{"channel":"a"}}],"parallel":false}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let json = r.json();
    let replies = json["replies"].as_array().unwrap();
    assert_eq!(replies[0], serde_json::json!({"publish": {}}));
    assert_eq!(replies[1]["info"]["nodes"][0]["uid"], node.id());
    assert_eq!(replies[2]["error"]["code"], 108);
}

#[tokio::test]
async fn broadcast_channels_info_subscribe_unsubscribe_disconnect() {
    let node = node();
    let a = client(&node, "a", "alice");
    let r = api(
        &node,
        "/api/subscribe",
        r#"{"user":"alice","channel":"chat:1"}"#,
    )
    .await;
    assert_eq!(r.body, r#"{"result":{}}"#);
    assert!(a.is_subscribed("chat:1"));

    let r = api(&node, "/api/channels", r#"{"pattern":"chat:*"}"#).await;
    assert_eq!(
        r.body,
        r#"{"result":{"channels":{"chat:1":{"num_clients":1}}}}"#
    );

    let r = api(
        &node,
        "/api/broadcast",
        r#"{"channels":["chat:1","chat:2"],"data":{"t":1}}"#,
    )
    .await;
    assert_eq!(
        r.body,
        r#"{"result":{"responses":[{"result":{}},{"result":{}}]}}"#
    );

    let r = api(&node, "/api/info", "").await;
    assert_eq!(r.json()["result"]["nodes"][0]["num_subs"], 1);

    let r = api(
        &node,
        "/api/unsubscribe",
        r#"{"user":"alice","channel":"chat:1"}"#,
    )
    .await;
    assert_eq!(r.body, r#"{"result":{}}"#);
    assert!(!a.is_subscribed("chat:1"));

    let r = api(&node, "/api/disconnect", r#"{"user":"alice"}"#).await;
    assert_eq!(r.body, r#"{"result":{}}"#);
    assert!(a.outbox.is_closed());
}

#[tokio::test]
async fn legacy_endpoint() {
    let node = node();
    let r = api(
        &node,
        "/api",
        "{\"method\":\"publish\",\"params\":{\"channel\":\"x\",\"data\":1}}\n{\"method\":\"info\"}",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let lines: Vec<&str> = r.body.split('\n').collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0], r#"{"result":{}}"#);
    assert!(lines[1].starts_with(r#"{"result":{"nodes":"#));
    let r = api(&node, "/api", "").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"]["code"], 107);
}

#[tokio::test]
async fn shutting_down_is_503() {
    let node = node();
    node.shutdown().cancel();
    let r = api(&node, "/api/info", "{}").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn api_calls_are_measured() {
    let node = node();
    api(&node, "/api/publish", r#"{"channel":"x","data":1}"#).await;
    api(
        &node,
        "/api/batch",
        r#"{"commands":[{"publish":{"channel":"x","data":1}}]}"#,
    )
    .await;
    let text = node.metrics().render(node.hub());
    assert!(
        text.contains("herald_api_command_duration_seconds_count{method=\"publish\"} 2"),
        "{text}"
    );
    assert!(text.contains("herald_api_command_duration_seconds_count{method=\"batch\"} 1"));
    assert!(text.contains("herald_publications_total{source=\"api\"} 2"));
}
