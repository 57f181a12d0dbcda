//! Client protocol over a real WebSocket: connect, authentication, dispatch rules and batching.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn connect_with_valid_token() {
    let server = Server::start(json!({})).await;
    let mut ws = server.ws().await;
    let reply = ws.connect(&token("alice")).await;
    assert_eq!(reply["id"], 1, "{reply}");
    assert!(reply.get("error").is_none(), "{reply}");
    let result = &reply["connect"];
    let client = result["client"].as_str().expect("client id");
    assert_eq!(client.len(), 36, "client id should be a UUID: {client}");
    assert!(
        result["version"].as_str().is_some_and(|v| !v.is_empty()),
        "{reply}"
    );
    assert!(result["ping"].as_u64().is_some_and(|p| p > 0), "{reply}");
    assert_eq!(result["pong"], true, "{reply}");
    // No exp in the token: the connection does not expire.
    assert!(result.get("expires").is_none(), "{reply}");
    assert!(result.get("ttl").is_none(), "{reply}");
}

#[tokio::test]
async fn connect_with_expiring_token_reports_expires_and_ttl() {
    let server = Server::start(json!({})).await;
    let mut ws = server.ws().await;
    let reply = ws.connect(&token_exp("alice", unix_now() + 600)).await;
    let result = &reply["connect"];
    assert_eq!(result["expires"], true, "{reply}");
    let ttl = result["ttl"].as_u64().expect("ttl");
    assert!((595..=600).contains(&ttl), "ttl {ttl}: {reply}");
}

#[tokio::test]
async fn command_before_connect_closes_3501() {
    let server = Server::start(json!({})).await;
    let mut ws = server.ws().await;
    ws.send(&json!({"id": 1, "subscribe": {"channel": "news"}}))
        .await;
    assert_eq!(ws.expect_close().await, (3501, "bad request".into()));
}

#[tokio::test]
async fn id_zero_command_that_is_not_a_pong_closes_3501() {
    let server = Server::start(json!({})).await;
    let mut ws = server.client("alice").await;
    ws.send(&json!({"subscribe": {"channel": "news"}})).await;
    assert_eq!(ws.expect_close().await.0, 3501);
}

#[tokio::test]
async fn unsolicited_pong_closes_3501() {
    let server = Server::start(json!({})).await;
    let mut ws = server.client("alice").await;
    ws.send_text("{}").await;
    assert_eq!(ws.expect_close().await.0, 3501);
}

#[tokio::test]
async fn unknown_command_closes_3501() {
    let server = Server::start(json!({})).await;
    let mut ws = server.client("alice").await;
    ws.send(&json!({"id": 7})).await;
    assert_eq!(ws.expect_close().await.0, 3501);
}

#[tokio::test]
async fn malformed_json_closes_3501() {
    let server = Server::start(json!({})).await;
    let mut ws = server.client("alice").await;
    ws.send_text("{\"id\":2,\"subscribe\":").await;
    assert_eq!(ws.expect_close().await.0, 3501);
}

#[tokio::test]
async fn malformed_json_before_connect_closes_3501() {
    let server = Server::start(json!({})).await;
    let mut ws = server.ws().await;
    ws.send_text("not json at all").await;
    assert_eq!(ws.expect_close().await.0, 3501);
}

#[tokio::test]
async fn empty_line_inside_batch_closes_3501() {
    let server = Server::start(json!({})).await;
    let mut ws = server.client("alice").await;
    ws.send_text("{\"id\":2,\"rpc\":{\"method\":\"a\"}}\n\n{\"id\":3,\"rpc\":{\"method\":\"b\"}}")
        .await;
    assert_eq!(ws.expect_close().await.0, 3501);
}

#[tokio::test]
async fn one_trailing_newline_is_allowed() {
    let server = Server::start(json!({})).await;
    let mut ws = server.client("alice").await;
    ws.send_text("{\"id\":2,\"rpc\":{\"method\":\"a\"}}\n")
        .await;
    let values = ws.next_values().await;
    assert_eq!(values.len(), 1);
    assert_eq!(values[0]["id"], 2);
    assert_error(&values[0], 108);
}

#[tokio::test]
async fn second_connect_closes_3501() {
    let server = Server::start(json!({})).await;
    let mut ws = server.client("alice").await;
    ws.send(&json!({"id": 2, "connect": {"token": token("alice")}}))
        .await;
    assert_eq!(ws.expect_close().await.0, 3501);
}

#[tokio::test]
async fn forged_token_closes_3500() {
    let server = Server::start(json!({})).await;
    let mut ws = server.ws().await;
    let forged = herald::auth::generate_token("alice", None, "some-other-secret", None).unwrap();
    ws.send(&json!({"id": 1, "connect": {"token": forged}}))
        .await;
    assert_eq!(ws.expect_close().await, (3500, "invalid token".into()));
}

#[tokio::test]
async fn alg_none_token_closes_3500() {
    let server = Server::start(json!({})).await;
    let mut ws = server.ws().await;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(br#"{"sub":"alice"}"#);
    for unsigned in [format!("{header}.{claims}."), format!("{header}.{claims}")] {
        let mut ws2 = server.ws().await;
        ws2.send(&json!({"id": 1, "connect": {"token": unsigned}}))
            .await;
        assert_eq!(ws2.expect_close().await.0, 3500, "token {unsigned}");
    }
    // A garbage token is invalid too.
    ws.send(&json!({"id": 1, "connect": {"token": "not.a.jwt"}}))
        .await;
    assert_eq!(ws.expect_close().await.0, 3500);
}

#[tokio::test]
async fn expired_token_answers_109_then_closes_3501() {
    let server = Server::start(json!({})).await;
    let mut ws = server.ws().await;
    let reply = ws.connect(&token_exp("alice", unix_now() - 60)).await;
    assert_eq!(reply["id"], 1);
    assert_error(&reply, 109);
    assert_eq!(reply["error"]["message"], "token expired");
    // The connection is now unusable: whatever comes next closes it.
    ws.send(&json!({"id": 2, "connect": {"token": token("alice")}}))
        .await;
    assert_eq!(ws.expect_close().await.0, 3501);
}

#[tokio::test]
async fn connect_without_token_closes_3501() {
    let server = Server::start(json!({})).await;
    let mut ws = server.ws().await;
    ws.send(&json!({"id": 1, "connect": {}})).await;
    assert_eq!(ws.expect_close().await.0, 3501);
}

#[tokio::test]
async fn anonymous_connect_without_token_when_allowed() {
    let server = Server::start(json!({
        "client": {"allow_anonymous_connect_without_token": true}
    }))
    .await;
    let mut ws = server.ws().await;
    let reply = ws.call(json!({"connect": {}})).await;
    assert!(reply.get("error").is_none(), "{reply}");
    assert!(reply["connect"]["client"].as_str().is_some(), "{reply}");
    ws.assert_alive().await;
}

#[tokio::test]
async fn batched_commands_get_batched_replies_in_one_frame() {
    let server = Server::start(json!({
        "channel": {"namespaces": [
            {"name": "chat", "allow_subscribe_for_client": true, "allow_publish_for_client": true}
        ]}
    }))
    .await;
    let mut ws = server.ws().await;
    let frame = [
        json!({"id": 1, "connect": {"token": token("alice")}}),
        json!({"id": 2, "publish": {"channel": "chat:1", "data": {"n": 1}}}),
        json!({"id": 3, "rpc": {"method": "x"}}),
        json!({"id": 4, "publish": {"channel": "nope:1", "data": {}}}),
        json!({"id": 5, "unsubscribe": {"channel": "chat:1"}}),
    ]
    .iter()
    .map(Value::to_string)
    .collect::<Vec<_>>()
    .join("\n");
    ws.send_text(&frame).await;
    let replies = ws.next_values().await;
    let ids: Vec<u64> = replies.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(
        ids,
        [1, 2, 3, 4, 5],
        "all replies in one frame, in order: {replies:?}"
    );
    assert!(replies[0]["connect"]["client"].is_string());
    assert_eq!(replies[1]["publish"], json!({}));
    assert_error(&replies[2], 108);
    assert_error(&replies[3], 102);
    assert_eq!(replies[4]["unsubscribe"], json!({}));
}

#[tokio::test]
async fn send_closes_3508() {
    let server = Server::start(json!({})).await;
    let mut ws = server.client("alice").await;
    ws.send(&json!({"send": {"data": {"hello": 1}}})).await;
    assert_eq!(ws.expect_close().await, (3508, "not available".into()));
}

#[tokio::test]
async fn rpc_answers_108() {
    let server = Server::start(json!({})).await;
    let mut ws = server.client("alice").await;
    let reply = ws
        .call(json!({"rpc": {"method": "sum", "data": {"a": 1}}}))
        .await;
    assert_error(&reply, 108);
    assert_eq!(reply["error"]["message"], "not available");
    ws.assert_alive().await;
}

#[tokio::test]
async fn ping_command_answers_108() {
    let server = Server::start(json!({})).await;
    let mut ws = server.client("alice").await;
    let reply = ws.call(json!({"ping": {}})).await;
    assert_error(&reply, 108);
    ws.assert_alive().await;
}

#[tokio::test]
async fn token_channels_are_server_side_subscriptions() {
    let server = Server::start(json!({})).await;
    let mut ws = server.ws().await;
    let token =
        herald::auth::sign_hs256(&json!({"sub": "alice", "channels": ["news"]}), SECRET).unwrap();
    let reply = ws.connect(&token).await;
    assert!(reply["connect"]["subs"]["news"].is_object(), "{reply}");
    // Already subscribed server-side.
    assert_error(&ws.subscribe("news").await, 105);
}

#[tokio::test]
async fn token_info_is_publication_conn_info() {
    let server = Server::start(json!({
        "channel": {"without_namespace": {"allow_publish_for_client": true}}
    }))
    .await;
    let mut ws = server.ws().await;
    let info = json!({"name": "Alice"});
    let token = herald::auth::generate_token("alice", None, SECRET, Some(&info)).unwrap();
    ws.connect(&token).await;
    ws.subscribe_ok("news").await;
    assert_eq!(
        ws.publish("news", json!({"n": 1})).await["publish"],
        json!({})
    );
    let push = ws.next_push().await;
    assert_eq!(push["push"]["pub"]["info"]["conn_info"], info, "{push}");
}
