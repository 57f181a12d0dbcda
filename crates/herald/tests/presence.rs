//! Presence, join/leave pushes, subscription token expiry and refresh, the personal channel,
//! and the user-level server API (`presence`, `presence_stats`, `subscribe`, `refresh`,
//! `disconnect`), against the real binary.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// `room`: presence + join/leave, presence for subscribers; `lobby`: presence for any client;
/// `quiet`: no presence; `personal`: users' personal channels.
fn config() -> Value {
    json!({
        "channel": {"namespaces": [
            {"name": "room", "allow_subscribe_for_client": true, "presence": true,
             "join_leave": true, "allow_presence_for_subscriber": true},
            {"name": "lobby", "allow_subscribe_for_client": true, "presence": true,
             "allow_presence_for_client": true},
            {"name": "quiet", "allow_subscribe_for_client": true, "allow_presence_for_client": true},
            {"name": "personal", "allow_user_limited_channels": true, "presence": true}
        ]}
    })
}

/// Client ids → users of a `presence` result.
fn users(result: &Value) -> Vec<String> {
    let mut users: Vec<String> = result["presence"]
        .as_object()
        .unwrap_or_else(|| panic!("no presence map in {result}"))
        .values()
        .map(|info| info["user"].as_str().unwrap_or_default().to_owned())
        .collect();
    users.sort();
    users
}

/// Asks for presence over `ws` until it lists exactly `expected` users (bounded).
async fn wait_presence(ws: &mut Ws, channel: &str, expected: &[&str]) -> Value {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let reply = ws.call(json!({"presence": {"channel": channel}})).await;
        let result = &reply["presence"];
        if users(result) == expected {
            return result.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "presence of {channel} is {result}, expected users {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn presence_lists_exactly_the_subscribers_and_their_counts() {
    let server = Server::start(config()).await;
    let mut alice = server.client("alice").await;
    let mut alice2 = server.client("alice").await;
    let mut bob = server.client("bob").await;
    for ws in [&mut alice, &mut alice2, &mut bob] {
        ws.subscribe_ok("room:1").await;
    }
    let result = wait_presence(&mut alice, "room:1", &["alice", "alice", "bob"]).await;
    for (client, info) in result["presence"].as_object().unwrap() {
        assert_eq!(info["client"], client.as_str(), "{result}");
    }
    let stats = alice
        .call(json!({"presence_stats": {"channel": "room:1"}}))
        .await;
    assert_eq!(
        stats["presence_stats"],
        json!({"num_clients": 3, "num_users": 2})
    );
    // Unsubscribing removes the entry at once.
    alice2
        .call(json!({"unsubscribe": {"channel": "room:1"}}))
        .await;
    wait_presence(&mut bob, "room:1", &["alice", "bob"]).await;
    // The server API sees the same.
    let api = server
        .api_ok("presence", json!({"channel": "room:1"}))
        .await;
    assert_eq!(users(&api), ["alice", "bob"]);
    let api = server
        .api_ok("presence_stats", json!({"channel": "room:1"}))
        .await;
    assert_eq!(api, json!({"num_clients": 2, "num_users": 2}));
}

#[tokio::test]
async fn presence_forgets_a_client_whose_socket_dies_without_a_close_frame() {
    let server = Server::start(config()).await;
    let mut alice = server.client("alice").await;
    alice.subscribe_ok("room:1").await;
    let mut bob = server.client("bob").await;
    bob.subscribe_ok("room:1").await;
    wait_presence(&mut alice, "room:1", &["alice", "bob"]).await;
    // Bob's process dies: its socket is closed by the kernel, no close frame.
    drop(bob);
    wait_presence(&mut alice, "room:1", &["alice"]).await;
}

#[tokio::test]
async fn presence_forgets_a_client_that_stops_answering_pings() {
    let mut cfg = config();
    merge(
        &mut cfg,
        json!({"client": {"ping_interval": "1s", "pong_timeout": "900ms"}}),
    );
    let server = Server::start(cfg).await;
    let mut carol = server.client("carol").await;
    carol.subscribe_ok("lobby:x").await;
    // A silent client: it subscribes, then never reads nor answers again.
    let mut silent = server.client("mallory").await;
    silent.subscribe_ok("lobby:x").await;
    let stats = server
        .api_ok("presence_stats", json!({"channel": "lobby:x"}))
        .await;
    assert_eq!(stats["num_clients"], 2);
    // Carol answers pings (the harness does), mallory is closed with 3012 within ~2 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    loop {
        // Carol answers her pings.
        if let Some(Frame::Text(text)) = carol.next_frame_within(Duration::from_millis(100)).await
            && text == "{}"
        {
            carol.send_text("{}").await;
        }
        let stats = server
            .api_ok("presence_stats", json!({"channel": "lobby:x"}))
            .await;
        if stats["num_clients"] == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "mallory still present: {stats}"
        );
    }
    let result = server
        .api_ok("presence", json!({"channel": "lobby:x"}))
        .await;
    assert_eq!(users(&result), ["carol"]);
    assert_eq!(silent.expect_close().await.0, 3012);
}

#[tokio::test]
async fn presence_permissions_and_namespaces_without_presence() {
    let server = Server::start(config()).await;
    let mut alice = server.client("alice").await;
    // No presence in the namespace: 108.
    let reply = alice
        .call(json!({"presence": {"channel": "quiet:1"}}))
        .await;
    assert_error(&reply, 108);
    // Presence for subscribers only, and alice is not subscribed: 103.
    let reply = alice.call(json!({"presence": {"channel": "room:1"}})).await;
    assert_error(&reply, 103);
    let reply = alice
        .call(json!({"presence_stats": {"channel": "room:1"}}))
        .await;
    assert_error(&reply, 103);
    // Presence for any client: allowed without subscribing.
    let reply = alice
        .call(json!({"presence_stats": {"channel": "lobby:1"}}))
        .await;
    assert_eq!(
        reply["presence_stats"],
        json!({"num_clients": 0, "num_users": 0})
    );
    // A presence command without a channel is a protocol violation.
    alice.send(&json!({"id": 99, "presence": {}})).await;
    assert_eq!(alice.expect_close().await.0, 3501);
    // The server API: 108 without presence.
    let response = server.api("presence", json!({"channel": "quiet:1"})).await;
    assert_eq!(response.json()["error"]["code"], 108, "{}", response.text());
}

#[tokio::test]
async fn join_and_leave_pushes_arrive_once_each_for_clients_that_asked() {
    let server = Server::start(config()).await;
    let mut alice = server.client("alice").await;
    let reply = alice
        .call(json!({"subscribe": {"channel": "room:1", "join_leave": true}}))
        .await;
    assert!(reply.get("error").is_none(), "{reply}");
    // Alice learns of her own join, as Centrifugo does.
    let own = alice.next_push().await;
    assert_eq!(own["push"]["join"]["info"]["user"], "alice", "{own}");

    // Bob did not ask for join/leave pushes.
    let mut bob = server.client("bob").await;
    bob.subscribe_ok("room:1").await;
    let join = alice.next_push().await;
    assert_eq!(join["push"]["channel"], "room:1");
    assert_eq!(join["push"]["join"]["info"]["user"], "bob", "{join}");
    let bob_client = join["push"]["join"]["info"]["client"].clone();
    assert!(bob_client.is_string());

    bob.call(json!({"unsubscribe": {"channel": "room:1"}}))
        .await;
    let leave = alice.next_push().await;
    assert_eq!(leave["push"]["leave"]["info"]["user"], "bob", "{leave}");
    assert_eq!(leave["push"]["leave"]["info"]["client"], bob_client);

    // Bob subscribes again and disconnects abruptly: one join, one leave.
    bob.subscribe_ok("room:1").await;
    assert_eq!(
        alice.next_push().await["push"]["join"]["info"]["user"],
        "bob"
    );
    drop(bob);
    assert_eq!(
        alice.next_push().await["push"]["leave"]["info"]["user"],
        "bob"
    );
    // Nothing more: each arrived once.
    assert!(
        alice
            .next_push_within(Duration::from_millis(300))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn subscription_token_info_data_and_override() {
    let mut cfg = config();
    merge(
        &mut cfg,
        json!({"channel": {"namespaces": [
            {"name": "room", "allow_subscribe_for_client": true, "presence": true,
             "join_leave": true, "allow_presence_for_subscriber": true},
            {"name": "lobby", "allow_subscribe_for_client": true, "presence": true,
             "allow_presence_for_client": true},
            {"name": "quiet", "allow_subscribe_for_client": true, "allow_presence_for_client": true},
            {"name": "personal", "allow_user_limited_channels": true, "presence": true},
            {"name": "vip", "presence": true, "allow_presence_for_subscriber": true}
        ]}}),
    );
    let server = Server::start(cfg).await;
    let mut alice = server.client("alice").await;
    // `vip` refuses client subscriptions; a token grants one, with channel info and data.
    assert_error(&alice.subscribe("vip:1").await, 103);
    let token = herald::auth::sign_hs256(
        &json!({"sub": "alice", "channel": "vip:1", "info": {"role": "host"},
                "data": {"welcome": true}}),
        SECRET,
    )
    .unwrap();
    let reply = alice
        .call(json!({"subscribe": {"channel": "vip:1", "token": token}}))
        .await;
    assert_eq!(
        reply["subscribe"]["data"],
        json!({"welcome": true}),
        "{reply}"
    );
    // Bob's token overrides presence off for his subscription: he is not listed.
    let mut bob = server.client("bob").await;
    let token = herald::auth::sign_hs256(
        &json!({"sub": "bob", "channel": "vip:1", "override": {"presence": {"value": false}}}),
        SECRET,
    )
    .unwrap();
    let reply = bob
        .call(json!({"subscribe": {"channel": "vip:1", "token": token}}))
        .await;
    assert!(reply.get("error").is_none(), "{reply}");
    let result = wait_presence(&mut bob, "vip:1", &["alice"]).await;
    let info = result["presence"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap();
    assert_eq!(info["chan_info"], json!({"role": "host"}));
    // A token for another user closes with 3500.
    let token =
        herald::auth::sign_hs256(&json!({"sub": "bob", "channel": "vip:2"}), SECRET).unwrap();
    alice
        .send(&json!({"id": 50, "subscribe": {"channel": "vip:2", "token": token}}))
        .await;
    assert_eq!(alice.expect_close().await.0, 3500);
}

#[tokio::test]
async fn an_expiring_subscription_is_refreshed_or_ended_with_2501() {
    let server = Server::start(config()).await;
    let mut alice = server.client("alice").await;
    let sub_token = |channel: &str, exp: i64| {
        herald::auth::sign_hs256(
            &json!({"sub": "alice", "channel": channel, "exp": exp}),
            SECRET,
        )
        .unwrap()
    };
    let soon = unix_now() + 2;
    for channel in ["$a", "$b"] {
        let reply = alice
            .call(json!({"subscribe": {"channel": channel, "token": sub_token(channel, soon)}}))
            .await;
        assert_eq!(reply["subscribe"]["expires"], true, "{reply}");
        assert!(reply["subscribe"]["ttl"].as_u64().unwrap() <= 2, "{reply}");
    }
    // $a is refreshed; $b is not.
    let refreshed = alice
        .call(json!({"sub_refresh": {"channel": "$a", "token": sub_token("$a", unix_now() + 100)}}))
        .await;
    assert_eq!(refreshed["sub_refresh"]["expires"], true, "{refreshed}");
    assert!(refreshed["sub_refresh"]["ttl"].as_u64().unwrap() > 50);
    let push = alice
        .next_push_within(Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(push["push"]["channel"], "$b", "{push}");
    assert_eq!(push["push"]["unsubscribe"]["code"], 2501, "{push}");
    // $a still delivers; $b does not.
    server
        .api_ok("publish", json!({"channel": "$b", "data": {"n": 0}}))
        .await;
    server
        .api_ok("publish", json!({"channel": "$a", "data": {"n": 1}}))
        .await;
    let push = alice.next_push().await;
    assert_eq!(push["push"]["channel"], "$a", "{push}");
    // sub_refresh with a token for another channel closes with 3500.
    alice
        .send(&json!({"id": 77, "sub_refresh": {"channel": "$a", "token": sub_token("$b", unix_now() + 100)}}))
        .await;
    assert_eq!(alice.expect_close().await.0, 3500);
}

#[tokio::test]
async fn the_personal_channel_reaches_all_devices_of_one_user() {
    let mut cfg = config();
    merge(
        &mut cfg,
        json!({"client": {"subscribe_to_user_personal_channel":
            {"enabled": true, "personal_channel_namespace": "personal"}}}),
    );
    let server = Server::start(cfg).await;
    let mut phone = server.ws().await;
    let reply = phone.connect(&token("42")).await;
    assert!(
        reply["connect"]["subs"].get("personal:#42").is_some(),
        "{reply}"
    );
    let mut laptop = server.client("42").await;
    let mut other = server.client("7").await;
    server
        .api_ok(
            "publish",
            json!({"channel": "personal:#42", "data": {"text": "hi 42"}}),
        )
        .await;
    for ws in [&mut phone, &mut laptop] {
        let push = ws.next_push().await;
        assert_eq!(push["push"]["channel"], "personal:#42");
        assert_eq!(push["push"]["pub"]["data"]["text"], "hi 42");
    }
    assert!(
        other
            .next_push_within(Duration::from_millis(300))
            .await
            .is_none()
    );
    let stats = server
        .api_ok("presence_stats", json!({"channel": "personal:#42"}))
        .await;
    assert_eq!(stats, json!({"num_clients": 2, "num_users": 1}));
}

#[tokio::test]
async fn single_connection_mode_keeps_only_a_users_newest_connection() {
    let mut cfg = config();
    merge(
        &mut cfg,
        json!({"client": {"subscribe_to_user_personal_channel":
            {"enabled": true, "personal_channel_namespace": "personal",
             "single_connection": true}}}),
    );
    let server = Server::start(cfg).await;
    let mut phone = server.client("42").await;
    let mut other_user = server.client("7").await;
    let mut laptop = server.client("42").await;
    assert_eq!(
        phone.expect_close().await,
        (3504, "connection limit".into())
    );
    laptop.assert_alive().await;
    other_user.assert_alive().await;
    // The closed connection leaves the personal channel's presence once its task ends.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let stats = loop {
        let stats = server
            .api_ok("presence_stats", json!({"channel": "personal:#42"}))
            .await;
        if stats["num_clients"] == 1 || tokio::time::Instant::now() > deadline {
            break stats;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(stats, json!({"num_clients": 1, "num_users": 1}));
}

#[tokio::test]
async fn api_subscribe_adds_presence_and_delivers() {
    let server = Server::start(config()).await;
    let mut alice = server.client("alice").await;
    server
        .api_ok(
            "subscribe",
            json!({"user": "alice", "channel": "lobby:srv", "info": {"seat": 3}}),
        )
        .await;
    let push = alice.next_push().await;
    assert!(push["push"]["subscribe"].is_object(), "{push}");
    let result = server
        .api_ok("presence", json!({"channel": "lobby:srv"}))
        .await;
    let info = result["presence"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap();
    assert_eq!(info["user"], "alice");
    assert_eq!(info["chan_info"], json!({"seat": 3}));
    server
        .api_ok("publish", json!({"channel": "lobby:srv", "data": 1}))
        .await;
    assert_eq!(alice.next_push().await["push"]["pub"]["data"], 1);
    server
        .api_ok(
            "unsubscribe",
            json!({"user": "alice", "channel": "lobby:srv"}),
        )
        .await;
    assert_eq!(alice.next_push().await["push"]["unsubscribe"]["code"], 2000);
    let stats = server
        .api_ok("presence_stats", json!({"channel": "lobby:srv"}))
        .await;
    assert_eq!(stats["num_clients"], 0);
}

#[tokio::test]
async fn api_disconnect_by_user_closes_that_users_clients_only() {
    let server = Server::start(config()).await;
    let mut a1 = server.client("alice").await;
    let mut a2 = server.client("alice").await;
    let mut bob = server.client("bob").await;
    let kept = a2
        .call(json!({"presence_stats": {"channel": "lobby:1"}}))
        .await;
    assert!(kept.get("error").is_none());
    server.api_ok("disconnect", json!({"user": "alice"})).await;
    assert_eq!(a1.expect_close().await.0, 3503);
    assert_eq!(a2.expect_close().await.0, 3503);
    bob.assert_alive().await;
}

#[tokio::test]
async fn api_refresh_expires_or_extends_connections() {
    let server = Server::start(json!({"client": {"expired_close_delay": "0s"}})).await;
    // Alice's token expires in 2 s; the backend extends her connection.
    let mut alice = server.ws().await;
    let reply = alice.connect(&token_exp("alice", unix_now() + 2)).await;
    assert_eq!(reply["connect"]["expires"], true, "{reply}");
    server
        .api_ok(
            "refresh",
            json!({"user": "alice", "expire_at": unix_now() + 3600}),
        )
        .await;
    let mut bob = server.client("bob").await;
    // Past the token's expiry alice is still connected.
    tokio::time::sleep(Duration::from_secs(3)).await;
    alice.assert_alive().await;
    // Bob is marked expired: closed with 3005.
    server
        .api_ok("refresh", json!({"user": "bob", "expired": true}))
        .await;
    assert_eq!(bob.expect_close().await.0, 3005);
    alice.assert_alive().await;
}

#[tokio::test]
async fn api_refresh_gives_a_connection_without_expiry_one_that_ends_it_on_time() {
    // The connection's task learns of the new expiry at once (it is woken for it), not at its
    // next ping: with the default 25 s ping interval this expiry is over long before that.
    let server = Server::start(json!({"client": {"expired_close_delay": "0s"}})).await;
    let mut carol = server.client("carol").await;
    let started = std::time::Instant::now();
    server
        .api_ok(
            "refresh",
            json!({"user": "carol", "expire_at": unix_now() + 1}),
        )
        .await;
    assert_eq!(
        carol.expect_close_within(Duration::from_secs(6)).await,
        (3005, "connection expired".into())
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn user_connection_limit_closes_the_extra_connection_with_3504() {
    let server = Server::start(json!({"client": {"user_connection_limit": 2}})).await;
    let _a1 = server.client("alice").await;
    let _a2 = server.client("alice").await;
    let mut a3 = server.ws().await;
    a3.send(&json!({"id": 1, "connect": {"token": token("alice")}}))
        .await;
    assert_eq!(a3.expect_close().await.0, 3504);
    let mut bob = server.client("bob").await;
    bob.assert_alive().await;
}
