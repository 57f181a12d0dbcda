//! Client protocol over a real WebSocket: subscribe, publish, unsubscribe and their permissions.

mod common;

use common::*;
use serde_json::{Value, json};

/// Namespaces used across these tests.
fn channels_config() -> Value {
    json!({
        "channel": {"namespaces": [
            {"name": "chat", "allow_subscribe_for_client": true, "allow_publish_for_client": true},
            {"name": "closed"},
            {"name": "feed", "allow_subscribe_for_client": true},
            {"name": "room", "allow_subscribe_for_client": true, "allow_publish_for_subscriber": true},
            {"name": "inbox", "allow_user_limited_channels": true}
        ]}
    })
}

async fn server() -> Server {
    Server::start(channels_config()).await
}

#[tokio::test]
async fn subscribe_ok_then_again_105() {
    let server = server().await;
    let mut ws = server.client("alice").await;
    let reply = ws.subscribe("news").await;
    assert_eq!(reply["id"], 2);
    assert!(reply.get("error").is_none(), "{reply}");
    assert!(reply["subscribe"].is_object(), "{reply}");
    let again = ws.subscribe("news").await;
    assert_error(&again, 105);
    assert_eq!(again["error"]["message"], "already subscribed");
    ws.assert_alive().await;
}

#[tokio::test]
async fn subscribe_unknown_namespace_102() {
    let server = server().await;
    let mut ws = server.client("alice").await;
    assert_error(&ws.subscribe("nope:x").await, 102);
    ws.assert_alive().await;
}

#[tokio::test]
async fn subscribe_forbidden_namespace_103() {
    let server = server().await;
    let mut ws = server.client("alice").await;
    assert_error(&ws.subscribe("closed:x").await, 103);
    ws.assert_alive().await;
}

#[tokio::test]
async fn subscribe_over_channel_limit_106() {
    let mut config = channels_config();
    merge(&mut config, json!({"client": {"channel_limit": 2}}));
    let server = Server::start(config).await;
    let mut ws = server.client("alice").await;
    ws.subscribe_ok("a").await;
    ws.subscribe_ok("b").await;
    let reply = ws.subscribe("c").await;
    assert_error(&reply, 106);
    assert_eq!(reply["error"]["message"], "limit exceeded");
    ws.assert_alive().await;
}

#[tokio::test]
async fn user_limited_channel_admits_listed_users_only() {
    let server = server().await;
    let mut alice = server.client("alice").await;
    alice.subscribe_ok("inbox:#alice,bob").await;
    let mut carol = server.client("carol").await;
    assert_error(&carol.subscribe("inbox:#alice,bob").await, 103);
    carol.assert_alive().await;
}

#[tokio::test]
async fn private_channel_without_token_103() {
    let server = server().await;
    let mut ws = server.client("alice").await;
    // Channels without a namespace are open to clients in these tests: the `$` is the reason.
    ws.subscribe_ok("public").await;
    assert_error(&ws.subscribe("$secret").await, 103);
    ws.assert_alive().await;
}

#[tokio::test]
async fn too_long_channel_name_107() {
    let server = server().await;
    let mut ws = server.client("alice").await;
    let long = "x".repeat(256);
    assert_error(&ws.subscribe(&long).await, 107);
    ws.subscribe_ok(&"y".repeat(255)).await;
}

#[tokio::test]
async fn client_publish_reaches_other_subscribers() {
    let server = server().await;
    let mut bob = server.client("bob").await;
    bob.subscribe_ok("chat:1").await;
    let mut alice = server.ws().await;
    let connected = alice.connect(&token("alice")).await;
    let alice_id = connected["connect"]["client"].as_str().unwrap().to_owned();

    let reply = alice.publish("chat:1", json!({"text": "hi"})).await;
    assert_eq!(reply["id"], 2);
    assert_eq!(reply["publish"], json!({}), "{reply}");
    assert!(reply.get("error").is_none(), "{reply}");

    let push = bob.next_push().await;
    let p = &push["push"];
    assert_eq!(p["channel"], "chat:1", "{push}");
    assert_eq!(p["pub"]["data"], json!({"text": "hi"}), "{push}");
    assert_eq!(p["pub"]["info"]["user"], "alice", "{push}");
    assert_eq!(p["pub"]["info"]["client"], alice_id.as_str(), "{push}");
    assert!(push.get("id").is_none(), "pushes carry no id: {push}");
}

#[tokio::test]
async fn publish_without_permission_103() {
    let server = server().await;
    let mut ws = server.client("alice").await;
    // feed: subscribers welcome, publishing not allowed (not even to subscribers).
    ws.subscribe_ok("feed:1").await;
    let reply = ws.publish("feed:1", json!({"x": 1})).await;
    assert_error(&reply, 103);
    assert_eq!(reply["error"]["message"], "permission denied");
    assert_error(&ws.publish("closed:1", json!({"x": 1})).await, 103);
    assert_error(&ws.publish("nope:1", json!({"x": 1})).await, 102);
    ws.assert_alive().await;
}

#[tokio::test]
async fn publish_for_subscriber_needs_subscription() {
    let server = server().await;
    let mut ws = server.client("alice").await;
    assert_error(&ws.publish("room:1", json!({"x": 1})).await, 103);
    ws.subscribe_ok("room:1").await;
    let reply = ws.publish("room:1", json!({"x": 2})).await;
    assert_eq!(reply["publish"], json!({}), "{reply}");
    // The publisher is a subscriber, so it receives its own publication.
    let push = ws.next_push().await;
    assert_eq!(push["push"]["pub"]["data"], json!({"x": 2}), "{push}");
}

#[tokio::test]
async fn unsubscribe_stops_publications() {
    let server = server().await;
    let mut bob = server.client("bob").await;
    bob.subscribe_ok("chat:1").await;
    bob.subscribe_ok("chat:2").await;
    let mut alice = server.client("alice").await;

    alice.publish("chat:1", json!({"n": 1})).await;
    let push = bob.next_push().await;
    assert_eq!(push["push"]["pub"]["data"], json!({"n": 1}));

    let reply = bob
        .call(json!({"unsubscribe": {"channel": "chat:1"}}))
        .await;
    assert_eq!(reply["unsubscribe"], json!({}), "{reply}");
    assert!(reply.get("error").is_none(), "{reply}");

    // chat:1 is published before chat:2; per-connection order means that if bob still got
    // chat:1 it would arrive first.
    assert_eq!(
        alice.publish("chat:1", json!({"n": 2})).await["publish"],
        json!({})
    );
    assert_eq!(
        alice.publish("chat:2", json!({"n": 3})).await["publish"],
        json!({})
    );
    let push = bob.next_push().await;
    assert_eq!(push["push"]["channel"], "chat:2", "{push}");
    assert_eq!(push["push"]["pub"]["data"], json!({"n": 3}), "{push}");
}

#[tokio::test]
async fn unsubscribe_from_unknown_channel_is_ok() {
    let server = server().await;
    let mut ws = server.client("alice").await;
    let reply = ws
        .call(json!({"unsubscribe": {"channel": "never-subscribed"}}))
        .await;
    assert_eq!(reply["unsubscribe"], json!({}), "{reply}");
}

#[tokio::test]
async fn private_channel_with_subscription_token() {
    let server = server().await;
    let mut ws = server.client("alice").await;
    let sub_token = herald::auth::sign_hs256(
        &json!({"sub": "alice", "channel": "$secret", "exp": unix_now() + 600}),
        SECRET,
    )
    .unwrap();
    let reply = ws
        .call(json!({"subscribe": {"channel": "$secret", "token": sub_token}}))
        .await;
    assert!(reply.get("error").is_none(), "{reply}");
    assert_eq!(reply["subscribe"]["expires"], true, "{reply}");
    assert!(
        reply["subscribe"]["ttl"].as_u64().is_some_and(|t| t > 590),
        "{reply}"
    );
}

#[tokio::test]
async fn subscription_token_for_another_channel_closes_3500() {
    let server = server().await;
    let mut ws = server.client("alice").await;
    let sub_token =
        herald::auth::sign_hs256(&json!({"sub": "alice", "channel": "$other"}), SECRET).unwrap();
    ws.send(&json!({"id": 2, "subscribe": {"channel": "$secret", "token": sub_token}}))
        .await;
    assert_eq!(ws.expect_close().await.0, 3500);
}

#[tokio::test]
async fn anonymous_needs_allow_subscribe_for_anonymous() {
    let mut config = channels_config();
    merge(
        &mut config,
        json!({"client": {"allow_anonymous_connect_without_token": true},
        "channel": {"namespaces": [
            {"name": "chat", "allow_subscribe_for_client": true},
            {"name": "lobby", "allow_subscribe_for_client": true,
             "allow_subscribe_for_anonymous": true}
        ]}}),
    );
    let server = Server::start(config).await;
    let mut ws = server.ws().await;
    let reply = ws.call(json!({"connect": {}})).await;
    assert!(reply["connect"].is_object(), "{reply}");
    assert_error(&ws.subscribe("chat:1").await, 103);
    ws.subscribe_ok("lobby:1").await;
}

/// Namespaces for the delta and tags filter tests.
fn selective_config() -> Value {
    json!({
        "channel": {"namespaces": [
            {"name": "delta", "allow_subscribe_for_client": true,
             "allowed_delta_types": ["fossil"], "delta_publish": true},
            {"name": "tf", "allow_subscribe_for_client": true, "allow_tags_filter": true},
            {"name": "plain", "allow_subscribe_for_client": true}
        ]}
    })
}

#[tokio::test]
async fn delta_is_negotiated_where_allowed_and_an_unknown_type_closes_3501() {
    let server = Server::start(selective_config()).await;
    let mut ws = server.client("alice").await;
    let reply = ws
        .call(json!({"id": 2, "subscribe": {"channel": "delta:x", "delta": "fossil"}}))
        .await;
    assert_eq!(reply["subscribe"]["delta"], true, "{reply}");
    // Not allowed in the namespace: a plain subscription.
    let reply = ws
        .call(json!({"id": 3, "subscribe": {"channel": "plain:x", "delta": "fossil"}}))
        .await;
    assert!(reply["subscribe"].is_object(), "{reply}");
    assert!(reply["subscribe"].get("delta").is_none(), "{reply}");
    // The delta subscriber gets the data as a JSON string first, then a delta.
    let doc = |n: u32| json!({"n": n, "pad": "x".repeat(300)});
    server
        .api_ok("publish", json!({"channel": "delta:x", "data": doc(1)}))
        .await;
    server
        .api_ok("publish", json!({"channel": "delta:x", "data": doc(2)}))
        .await;
    let first = ws.next_push().await;
    assert_eq!(first["push"]["pub"]["data"], doc(1).to_string(), "{first}");
    assert!(first["push"]["pub"].get("delta").is_none(), "{first}");
    let second = ws.next_push().await;
    assert_eq!(second["push"]["pub"]["delta"], true, "{second}");
    assert!(
        second["push"]["pub"]["data"]
            .as_str()
            .is_some_and(|d| d.len() < 50),
        "{second}"
    );
    ws.send(&json!({"id": 4, "subscribe": {"channel": "delta:y", "delta": "zstd"}}))
        .await;
    assert_eq!(ws.expect_close().await.0, 3501);
}

#[tokio::test]
async fn a_tags_filter_is_refused_107_where_not_allowed_and_applied_where_allowed() {
    let server = Server::start(selective_config()).await;
    let mut ws = server.client("alice").await;
    let tf = json!({"key": "kind", "cmp": "eq", "val": "a"});
    let reply = ws
        .call(json!({"id": 2, "subscribe": {"channel": "plain:x", "tf": tf}}))
        .await;
    assert_error(&reply, 107);
    let malformed = json!({"key": "kind", "cmp": "eq"});
    let reply = ws
        .call(json!({"id": 3, "subscribe": {"channel": "tf:x", "tf": malformed}}))
        .await;
    assert_error(&reply, 107);
    let reply = ws
        .call(json!({"id": 4, "subscribe": {"channel": "tf:x", "tf": tf}}))
        .await;
    assert!(reply["subscribe"].is_object(), "{reply}");
    for (n, kind) in [(1, "b"), (2, "a")] {
        server
            .api_ok(
                "publish",
                json!({"channel": "tf:x", "data": {"n": n}, "tags": {"kind": kind}}),
            )
            .await;
    }
    let push = ws.next_push().await;
    assert_eq!(push["push"]["pub"]["data"]["n"], 2, "{push}");
    ws.assert_alive().await;
}
