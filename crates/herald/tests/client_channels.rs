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

#[tokio::test]
async fn an_invalid_subscription_token_answers_103_and_keeps_the_connection() {
    // As in Centrifugo: a token that does not verify only fails the subscribe; a valid token
    // for another channel, user or connection closes the connection (3500).
    const SUB_SECRET: &str = "subscription-secret";
    let mut config = channels_config();
    merge(
        &mut config,
        json!({"client": {"subscription_token": {
            "enabled": true, "hmac_secret_key": SUB_SECRET, "audience": "herald"
        }}}),
    );
    let server = Server::start(config).await;
    let mut ws = server.client("alice").await;
    let sign = |claims: Value, secret: &str| herald::auth::sign_hs256(&claims, secret).unwrap();
    let invalid = [
        ("malformed", "not-a-jwt".to_owned()),
        (
            "bad signature",
            sign(
                json!({"sub": "alice", "channel": "$s", "aud": "herald"}),
                "wrong",
            ),
        ),
        (
            "wrong audience",
            sign(
                json!({"sub": "alice", "channel": "$s", "aud": "other"}),
                SUB_SECRET,
            ),
        ),
        (
            "no channel claim",
            sign(json!({"sub": "alice", "aud": "herald"}), SUB_SECRET),
        ),
    ];
    for (what, token) in invalid {
        let reply = ws
            .call(json!({"subscribe": {"channel": "$s", "token": token}}))
            .await;
        assert_eq!(reply["error"]["code"], 103, "{what}: {reply}");
        ws.assert_alive().await;
    }
    // The same connection subscribes with a good token afterwards.
    let good = sign(
        json!({"sub": "alice", "channel": "$s", "aud": "herald"}),
        SUB_SECRET,
    );
    let reply = ws
        .call(json!({"subscribe": {"channel": "$s", "token": good}}))
        .await;
    assert!(reply["subscribe"].is_object(), "{reply}");

    // Valid tokens for another user or another connection close with 3500.
    let mismatches = [
        json!({"sub": "bob", "channel": "$t", "aud": "herald"}),
        json!({"sub": "alice", "channel": "$t", "aud": "herald", "client": "someone-else"}),
    ];
    for claims in mismatches {
        let mut ws = server.client("alice").await;
        let token = sign(claims.clone(), SUB_SECRET);
        ws.send(&json!({"id": 5, "subscribe": {"channel": "$t", "token": token}}))
            .await;
        assert_eq!(ws.expect_close().await.0, 3500, "{claims}");
    }
}

#[tokio::test]
async fn map_and_shared_poll_subscriptions_answer_108() {
    let server = server().await;
    let mut ws = server.client("alice").await;
    for kind in [1, 2, 3, 4] {
        let reply = ws
            .call(json!({"subscribe": {"channel": "news", "type": kind}}))
            .await;
        assert_error(&reply, 108);
    }
    ws.assert_alive().await;
    // Not subscribed by the refused attempts: a plain subscribe succeeds, and type 0 is a
    // plain stream too.
    ws.subscribe_ok("news").await;
    let reply = ws
        .call(json!({"subscribe": {"channel": "feed:1", "type": 0}}))
        .await;
    assert!(reply["subscribe"].is_object(), "{reply}");
}

/// `channel.private_prefix: "secret-"`: `secret-payroll` needs a subscription token (103
/// without one, even where `allow_subscribe_for_client` is on), and `$` is ordinary text.
#[tokio::test]
async fn a_custom_private_prefix_needs_a_subscription_token() {
    let server = Server::start(json!({"channel": {"private_prefix": "secret-"}})).await;
    let mut ws = server.client("alice").await;
    assert_error(&ws.subscribe("secret-payroll").await, 103);
    let sub_token = herald::auth::sign_hs256(
        &json!({"sub": "alice", "channel": "secret-payroll"}),
        SECRET,
    )
    .unwrap();
    let reply = ws
        .call(json!({"subscribe": {"channel": "secret-payroll", "token": sub_token}}))
        .await;
    assert!(reply["subscribe"].is_object(), "{reply}");
    // `$` no longer marks a private channel: the namespace's permissions decide.
    let reply = ws.subscribe("$open").await;
    assert!(reply["subscribe"].is_object(), "{reply}");
    // Publishing into a private channel needs a subscription, as with `$`.
    let mut bob = server.client("bob").await;
    let server_publish = json!({"publish": {"channel": "secret-x", "data": {}}});
    assert_error(&bob.call(server_publish).await, 103);
}

/// `channel.namespace_boundary: "/"`: `chat/room` is in namespace `chat` (for clients and the
/// server API alike), and `closed:room` is a channel of the default namespace.
#[tokio::test]
async fn a_custom_namespace_boundary_selects_the_namespace() {
    let mut config = channels_config();
    merge(&mut config, json!({"channel": {"namespace_boundary": "/"}}));
    let server = Server::start(config).await;
    let mut ws = server.client("alice").await;
    assert!(ws.subscribe("chat/room").await["subscribe"].is_object());
    assert_error(&ws.subscribe("closed/room").await, 103);
    assert_error(&ws.subscribe("nowhere/room").await, 102);
    // `:` is ordinary text now: the default namespace, open to subscribers in these tests.
    assert!(ws.subscribe("closed:room").await["subscribe"].is_object());
    let response = server
        .api("publish", json!({"channel": "nowhere/x", "data": {}}))
        .await;
    assert_eq!(response.json()["error"]["code"], 102, "{}", response.text());
    server
        .api_ok("publish", json!({"channel": "chat/room", "data": {"n": 1}}))
        .await;
    let push = ws.next_push().await;
    assert_eq!(push["push"]["channel"], "chat/room");
}

/// `channel.user_boundary: "@"` and `user_separator: "+"`: `inbox:@alice+bob` admits alice
/// and bob only, `inbox:#carol` limits nobody (and the namespace does not let clients in), and
/// the personal channel is built with the same strings.
#[tokio::test]
async fn custom_user_boundary_and_separator_limit_subscribers() {
    let mut config = channels_config();
    merge(
        &mut config,
        json!({
            "channel": {"user_boundary": "@", "user_separator": "+"},
            "client": {"subscribe_to_user_personal_channel":
                {"enabled": true, "personal_channel_namespace": "inbox"}}
        }),
    );
    let server = Server::start(config).await;
    for user in ["alice", "bob"] {
        let mut ws = server.client(user).await;
        let reply = ws.subscribe("inbox:@alice+bob").await;
        assert!(reply["subscribe"].is_object(), "{user}: {reply}");
    }
    let mut carol = server.ws().await;
    let reply = carol.connect(&token("carol")).await;
    assert!(
        reply["connect"]["subs"].get("inbox:@carol").is_some(),
        "the personal channel uses the configured boundary: {reply}"
    );
    assert_error(&carol.subscribe("inbox:@alice+bob").await, 103);
    assert_error(&carol.subscribe("inbox:@alice").await, 103);
    // With `#` no longer the boundary, `inbox:#carol` is not carol's.
    assert_error(&carol.subscribe("inbox:#carol").await, 103);
    // A list written with `,` is one user id `alice,carol`, which carol is not.
    assert_error(&carol.subscribe("inbox:@alice,carol").await, 103);
}

/// `client.insecure: true` (development mode, as in Centrifugo): a client connects without a
/// token as an anonymous user and may subscribe, publish, and read presence and history in
/// channels whose namespace allows none of it — but not subscribe to a private channel
/// without a subscription token. The start-up log warns about it.
#[tokio::test]
async fn insecure_mode_lets_anonymous_clients_do_everything_but_private_channels() {
    let server = Server::start(json!({
        "client": {"insecure": true},
        "channel": {"namespaces": [
            {"name": "closed", "presence": true, "history_size": 10, "history_ttl": "60s"},
            {"name": "inbox", "allow_user_limited_channels": true}
        ]}
    }))
    .await;
    assert!(
        server
            .stderr()
            .lines()
            .any(|l| l.contains("WARN") && l.contains("INSECURE client mode (client.insecure)")),
        "{}",
        server.stderr()
    );
    let mut ws = server.ws().await;
    let reply = ws.connect("").await;
    assert!(reply["connect"].is_object(), "{reply}");
    assert!(reply["connect"].get("expires").is_none(), "{reply}");
    assert!(ws.subscribe("closed:room").await["subscribe"].is_object());
    assert!(ws.subscribe("inbox:#bob").await["subscribe"].is_object());
    let reply = ws
        .call(json!({"publish": {"channel": "closed:room", "data": {"n": 1}}}))
        .await;
    assert!(reply.get("error").is_none(), "{reply}");
    let reply = ws
        .call(json!({"presence": {"channel": "closed:room"}}))
        .await;
    assert!(reply["presence"].is_object(), "{reply}");
    let reply = ws
        .call(json!({"history": {"channel": "closed:room", "limit": 10}}))
        .await;
    assert_eq!(
        reply["history"]["publications"].as_array().map(Vec::len),
        Some(1),
        "{reply}"
    );
    // Private channels still need a subscription token; unknown namespaces stay unknown.
    assert_error(&ws.subscribe("$secret").await, 103);
    assert_error(&ws.subscribe("nowhere:x").await, 102);
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
