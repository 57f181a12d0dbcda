//! The server HTTP API (`/api/<method>`) against a running server with real WebSocket clients.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

async fn server() -> Server {
    Server::start(json!({
        "channel": {"namespaces": [{"name": "chat", "allow_subscribe_for_client": true}]}
    }))
    .await
}

#[tokio::test]
async fn api_without_key_is_401() {
    let server = server().await;
    let body = br#"{"channel":"news","data":{}}"#;
    let response = http(server.port, "POST", "/api/publish", &[], Some(body)).await;
    assert_eq!(response.status, 401, "{}", response.text());
}

#[tokio::test]
async fn api_with_wrong_key_is_401() {
    let server = server().await;
    let body = br#"{"channel":"news","data":{}}"#;
    for headers in [
        vec![("X-API-Key", "wrong")],
        vec![("Authorization", "apikey wrong")],
        vec![("X-API-Key", "")],
    ] {
        let response = http(server.port, "POST", "/api/publish", &headers, Some(body)).await;
        assert_eq!(response.status, 401, "{headers:?}: {}", response.text());
    }
    let response = http(
        server.port,
        "POST",
        "/api/publish?api_key=wrong",
        &[],
        Some(body),
    )
    .await;
    assert_eq!(response.status, 401, "{}", response.text());
}

#[tokio::test]
async fn api_key_in_header_authorization_or_query() {
    let server = server().await;
    let body = br#"{"channel":"news","data":{"n":1}}"#;
    let authorization = format!("apikey {API_KEY}");
    for (path, headers) in [
        ("/api/publish".to_owned(), vec![("X-API-Key", API_KEY)]),
        (
            "/api/publish".to_owned(),
            vec![("Authorization", authorization.as_str())],
        ),
        (format!("/api/publish?api_key={API_KEY}"), vec![]),
    ] {
        let response = http(server.port, "POST", &path, &headers, Some(body)).await;
        assert_eq!(
            response.status,
            200,
            "{path} {headers:?}: {}",
            response.text()
        );
        assert!(response.json()["result"].is_object(), "{}", response.text());
    }
}

#[tokio::test]
async fn api_malformed_json_is_400_with_json_body() {
    let server = server().await;
    let response = http(
        server.port,
        "POST",
        "/api/publish",
        &[("X-API-Key", API_KEY)],
        Some(b"{\"channel\": \"news\", "),
    )
    .await;
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(response.json().is_object(), "{}", response.text());
}

#[tokio::test]
async fn api_publish_reaches_subscriber() {
    let server = server().await;
    let mut ws = server.client("alice").await;
    ws.subscribe_ok("chat:1").await;
    let result = server
        .api_ok(
            "publish",
            json!({"channel": "chat:1", "data": {"text": "from api"}}),
        )
        .await;
    assert!(result.is_object(), "{result}");
    let push = ws.next_push().await;
    assert_eq!(push["push"]["channel"], "chat:1", "{push}");
    assert_eq!(
        push["push"]["pub"]["data"],
        json!({"text": "from api"}),
        "{push}"
    );
    assert!(
        push["push"]["pub"].get("info").is_none(),
        "API publications have no info: {push}"
    );
}

#[tokio::test]
async fn api_publish_to_unknown_namespace_is_error_102() {
    let server = server().await;
    let response = server
        .api("publish", json!({"channel": "nope:1", "data": {}}))
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["error"]["code"], 102, "{}", response.text());
}

#[tokio::test]
async fn api_broadcast_to_two_channels() {
    let server = server().await;
    let mut ws = server.client("alice").await;
    ws.subscribe_ok("chat:a").await;
    ws.subscribe_ok("chat:b").await;
    let result = server
        .api_ok(
            "broadcast",
            json!({"channels": ["chat:a", "chat:b"], "data": {"all": true}}),
        )
        .await;
    let responses = result["responses"].as_array().expect("responses");
    assert_eq!(responses.len(), 2, "{result}");
    for r in responses {
        assert!(r.get("error").is_none(), "{result}");
    }
    let mut channels = vec![
        ws.next_push().await["push"]["channel"]
            .as_str()
            .unwrap()
            .to_owned(),
        ws.next_push().await["push"]["channel"]
            .as_str()
            .unwrap()
            .to_owned(),
    ];
    channels.sort();
    assert_eq!(channels, ["chat:a", "chat:b"]);
}

#[tokio::test]
async fn api_channels_lists_num_clients() {
    let server = server().await;
    let mut a = server.client("alice").await;
    let mut b = server.client("bob").await;
    a.subscribe_ok("news").await;
    b.subscribe_ok("news").await;
    a.subscribe_ok("chat:1").await;
    let result = server.api_ok("channels", json!({})).await;
    assert_eq!(result["channels"]["news"]["num_clients"], 2, "{result}");
    assert_eq!(result["channels"]["chat:1"]["num_clients"], 1, "{result}");
    let result = server
        .api_ok("channels", json!({"pattern": "chat:*"}))
        .await;
    let names: Vec<&String> = result["channels"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["chat:1"], "{result}");
}

#[tokio::test]
async fn api_info_counts_clients() {
    let server = server().await;
    let _a = server.client("alice").await;
    let _b = server.client("bob").await;
    let result = server.api_ok("info", json!({})).await;
    let node = &result["nodes"][0];
    assert_eq!(node["num_clients"], 2, "{result}");
    assert_eq!(node["num_users"], 2, "{result}");
    assert!(node["uid"].is_string(), "{result}");
}

#[tokio::test]
async fn api_disconnect_user_closes_all_their_connections_3503() {
    let server = server().await;
    let mut alice1 = server.client("alice").await;
    let mut alice2 = server.client("alice").await;
    let mut bob = server.client("bob").await;
    let result = server.api_ok("disconnect", json!({"user": "alice"})).await;
    assert!(result.is_object(), "{result}");
    assert_eq!(
        alice1.expect_close().await,
        (3503, "force disconnect".into())
    );
    assert_eq!(alice2.expect_close().await.0, 3503);
    bob.assert_alive().await;
}

#[tokio::test]
async fn api_subscribe_pushes_subscribe_then_publications() {
    let server = server().await;
    let mut ws = server.client("alice").await;
    let mut other = server.client("bob").await;
    server
        .api_ok("subscribe", json!({"channel": "news", "user": "alice"}))
        .await;
    let push = ws.next_push().await;
    assert_eq!(push["push"]["channel"], "news", "{push}");
    assert!(push["push"]["subscribe"].is_object(), "{push}");
    server
        .api_ok("publish", json!({"channel": "news", "data": {"n": 1}}))
        .await;
    let push = ws.next_push().await;
    assert_eq!(push["push"]["pub"]["data"], json!({"n": 1}), "{push}");
    // Only alice was subscribed: bob's first push is the one of a channel he did subscribe
    // to, published after.
    other.subscribe_ok("other").await;
    server
        .api_ok("publish", json!({"channel": "other", "data": {"n": 2}}))
        .await;
    assert_eq!(other.next_push().await["push"]["channel"], "other");
    // The client now counts as subscribed: subscribing again is refused.
    assert_error(&ws.subscribe("news").await, 105);
}

#[tokio::test]
async fn api_unsubscribe_pushes_unsubscribe_2000() {
    let server = server().await;
    let mut ws = server.client("alice").await;
    ws.subscribe_ok("news").await;
    ws.subscribe_ok("chat:1").await;
    server
        .api_ok("unsubscribe", json!({"channel": "news", "user": "alice"}))
        .await;
    let push = ws.next_push().await;
    assert_eq!(push["push"]["channel"], "news", "{push}");
    assert_eq!(push["push"]["unsubscribe"]["code"], 2000, "{push}");
    assert_eq!(
        push["push"]["unsubscribe"]["reason"], "server unsubscribe",
        "{push}"
    );
    // No more publications from news: chat:1's comes first.
    server
        .api_ok("publish", json!({"channel": "news", "data": {"n": 1}}))
        .await;
    server
        .api_ok("publish", json!({"channel": "chat:1", "data": {"n": 2}}))
        .await;
    let push = ws.next_push().await;
    assert_eq!(push["push"]["channel"], "chat:1", "{push}");
}

#[tokio::test]
async fn api_batch() {
    let server = server().await;
    let mut ws = server.client("alice").await;
    ws.subscribe_ok("news").await;
    // As Centrifugo's: the batch answer is `{"replies": [...]}` itself, not under `result`.
    let response = server
        .api(
            "batch",
            json!({"commands": [
                {"publish": {"channel": "news", "data": {"n": 1}}},
                {"publish": {"channel": "nope:x", "data": {"n": 2}}},
                {"publish": {"channel": "news", "data": {"n": 3}}}
            ]}),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let result = response.json();
    let replies = result["replies"].as_array().expect("replies");
    assert_eq!(replies.len(), 3, "{result}");
    assert!(replies[0]["publish"].is_object(), "{result}");
    assert_eq!(replies[1]["error"]["code"], 102, "{result}");
    assert!(replies[2]["publish"].is_object(), "{result}");
    assert_eq!(ws.next_push().await["push"]["pub"]["data"], json!({"n": 1}));
    assert_eq!(ws.next_push().await["push"]["pub"]["data"], json!({"n": 3}));
}

#[tokio::test]
async fn api_disconnect_with_custom_code_and_client_filter() {
    let server = server().await;
    let mut alice1 = server.ws().await;
    let reply = alice1.connect(&token("alice")).await;
    let alice1_id = reply["connect"]["client"].as_str().unwrap().to_owned();
    let mut alice2 = server.client("alice").await;
    server
        .api_ok(
            "disconnect",
            json!({"user": "alice", "client": alice1_id, "disconnect": {"code": 4000, "reason": "bye"}}),
        )
        .await;
    assert_eq!(alice1.expect_close().await, (4000, "bye".into()));
    // Only the named connection of the user.
    alice2.assert_alive().await;
}

#[tokio::test]
async fn api_channels_forgets_channels_of_gone_clients() {
    let server = server().await;
    let mut a = server.client("alice").await;
    a.subscribe_ok("news").await;
    let result = server.api_ok("channels", json!({})).await;
    assert_eq!(result["channels"]["news"]["num_clients"], 1, "{result}");
    server.api_ok("disconnect", json!({"user": "alice"})).await;
    assert_eq!(a.expect_close().await.0, 3503);
    // The server forgets the client when its connection task ends: poll (bounded).
    let deadline = std::time::Instant::now() + STEP;
    loop {
        let channels = server.api_ok("channels", json!({})).await;
        let info = server.api_ok("info", json!({})).await;
        if channels["channels"].get("news").is_none() && info["nodes"][0]["num_clients"] == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still listed after disconnect: {channels} {info}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Connects `user` and returns the connection with its session id (the connect reply's
/// `session`).
async fn with_session(server: &Server, user: &str) -> (Ws, String) {
    let mut ws = server.ws().await;
    let reply = ws.connect(&token(user)).await;
    let session = reply["connect"]["session"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(!session.is_empty(), "no session in {reply}");
    (ws, session)
}

#[tokio::test]
async fn api_session_targets_one_connection() {
    let server = server().await;
    let (mut a, session_a) = with_session(&server, "alice").await;
    let (mut b, session_b) = with_session(&server, "alice").await;
    assert_ne!(session_a, session_b, "one session per connection");
    // A session that names no connection: `{}` and nothing happens (Centrifugo's answer).
    for method in ["subscribe", "unsubscribe", "disconnect", "refresh"] {
        let reply = server
            .api_ok(
                method,
                json!({"user": "alice", "channel": "news", "session": "no-such-session"}),
            )
            .await;
        assert_eq!(reply, json!({}), "{method}");
    }
    assert!(
        b.next_push_within(Duration::from_millis(200))
            .await
            .is_none()
    );
    // subscribe and unsubscribe reach only the connection of the session.
    server
        .api_ok(
            "subscribe",
            json!({"user": "alice", "channel": "news", "session": session_b}),
        )
        .await;
    assert!(b.next_push().await["push"]["subscribe"].is_object());
    server
        .api_ok(
            "unsubscribe",
            json!({"user": "alice", "channel": "news", "session": session_b}),
        )
        .await;
    assert_eq!(b.next_push().await["push"]["unsubscribe"]["code"], 2000);
    assert!(
        a.next_push_within(Duration::from_millis(200))
            .await
            .is_none()
    );
    // refresh with `expired` and disconnect close only that connection.
    server
        .api_ok(
            "refresh",
            json!({"user": "alice", "session": session_b, "expired": true}),
        )
        .await;
    assert_eq!(b.expect_close().await.0, 3005);
    let (mut c, session_c) = with_session(&server, "alice").await;
    server
        .api_ok("disconnect", json!({"user": "alice", "session": session_c}))
        .await;
    assert_eq!(c.expect_close().await.0, 3503);
    a.assert_alive().await;
    // Another user's session does not reach across users.
    server
        .api_ok("disconnect", json!({"user": "bob", "session": session_a}))
        .await;
    a.assert_alive().await;
}

#[tokio::test]
async fn api_subscribe_recover_since_delivers_what_was_missed() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(json!({
        "data_dir": data.path(),
        "channel": {"namespaces": [
            {"name": "feed", "history_size": 5, "history_ttl": "1h", "force_recovery": true},
            {"name": "plain", "history_size": 5, "history_ttl": "1h"}
        ]}
    }))
    .await;
    let mut epoch = String::new();
    for n in 1..=4 {
        let published = server
            .api_ok("publish", json!({"channel": "feed:1", "data": {"n": n}}))
            .await;
        epoch = published["epoch"].as_str().unwrap().to_owned();
    }
    let (mut ws, session) = with_session(&server, "alice").await;
    let reply = server
        .api_ok(
            "subscribe",
            json!({"user": "alice", "channel": "feed:1", "session": session,
                   "recover_since": {"offset": 2, "epoch": epoch}}),
        )
        .await;
    assert_eq!(reply, json!({}));
    // The subscribe push at the position recovered from, then the missed 3 and 4, then the
    // live ones.
    let push = ws.next_push().await;
    let sub = &push["push"]["subscribe"];
    assert_eq!(sub["recoverable"], true, "{push}");
    assert_eq!(sub["positioned"], true, "{push}");
    assert_eq!(sub["epoch"], epoch.as_str(), "{push}");
    assert_eq!(sub["offset"], 2, "{push}");
    server
        .api_ok("publish", json!({"channel": "feed:1", "data": {"n": 5}}))
        .await;
    for n in 3..=5 {
        let push = ws.next_push().await;
        assert_eq!(push["push"]["pub"]["offset"], n, "{push}");
        assert_eq!(push["push"]["pub"]["data"], json!({"n": n}), "{push}");
    }

    // A position trimmed from the history: nothing replayed, the push carries the top.
    for n in 6..=12 {
        server
            .api_ok("publish", json!({"channel": "feed:1", "data": {"n": n}}))
            .await;
    }
    let mut other = server.client("bob").await;
    server
        .api_ok(
            "subscribe",
            json!({"user": "bob", "channel": "feed:1",
                   "recover_since": {"offset": 1, "epoch": epoch}}),
        )
        .await;
    let push = other.next_push().await;
    assert_eq!(push["push"]["subscribe"]["offset"], 12, "{push}");
    assert!(
        other
            .next_push_within(Duration::from_millis(200))
            .await
            .is_none(),
        "no partial replay"
    );

    // Without recovery in the namespace, recover_since has nothing to act on; the override
    // turns it on.
    let mut carol = server.client("carol").await;
    server
        .api_ok(
            "subscribe",
            json!({"user": "carol", "channel": "plain:1",
                   "recover_since": {"offset": 0, "epoch": ""}}),
        )
        .await;
    let push = carol.next_push().await;
    assert_eq!(push["push"]["subscribe"], json!({}), "{push}");
    server
        .api_ok("publish", json!({"channel": "plain:2", "data": {"n": 1}}))
        .await;
    server
        .api_ok(
            "subscribe",
            json!({"user": "carol", "channel": "plain:2",
                   "recover_since": {"offset": 0, "epoch": ""},
                   "override": {"force_recovery": {"value": true}}}),
        )
        .await;
    let push = carol.next_push().await;
    assert_eq!(push["push"]["subscribe"]["recoverable"], true, "{push}");
    assert_eq!(push["push"]["subscribe"]["offset"], Value::Null, "{push}");
    let push = carol.next_push().await;
    assert_eq!(push["push"]["pub"]["data"], json!({"n": 1}), "{push}");
}

#[tokio::test]
async fn api_subscribe_recover_since_replays_nothing_when_the_gap_does_not_fit_the_queue() {
    // Half of client.queue_max_size is what a recovery may take, as for a client's own
    // subscribe: more would close the connection as slow (3008). Then nothing is replayed and
    // the push carries the top, so that the application reloads.
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(json!({
        "data_dir": data.path(),
        "client": {"queue_max_size": 8192},
        "channel": {"namespaces": [
            {"name": "feed", "history_size": 10, "history_ttl": "1h", "force_recovery": true}
        ]}
    }))
    .await;
    let text = "x".repeat(1500);
    let mut epoch = String::new();
    for n in 1..=4 {
        let published = server
            .api_ok(
                "publish",
                json!({"channel": "feed:big", "data": {"n": n, "text": text}}),
            )
            .await;
        epoch = published["epoch"].as_str().unwrap().to_owned();
    }
    let mut ws = server.client("alice").await;
    server
        .api_ok(
            "subscribe",
            json!({"user": "alice", "channel": "feed:big",
                   "recover_since": {"offset": 0, "epoch": epoch}}),
        )
        .await;
    let push = ws.next_push().await;
    assert_eq!(push["push"]["subscribe"]["offset"], 4, "{push}");
    assert!(
        ws.next_push_within(Duration::from_millis(200))
            .await
            .is_none(),
        "nothing replayed"
    );
    ws.assert_alive().await;
    // Two of them fit: replayed.
    let mut ws = server.client("bob").await;
    server
        .api_ok(
            "subscribe",
            json!({"user": "bob", "channel": "feed:big",
                   "recover_since": {"offset": 2, "epoch": epoch}}),
        )
        .await;
    assert_eq!(ws.next_push().await["push"]["subscribe"]["offset"], 2);
    for n in 3..=4 {
        assert_eq!(ws.next_push().await["push"]["pub"]["offset"], n);
    }
}

/// The server API's `subscribe` and a client's own `subscribe` are one node operation: from
/// the same position both give the same missed publications and the same position; from a
/// position that cannot be recovered both land at the stream's top with nothing replayed;
/// in a namespace recovering from the cache both get the latest publication.
#[tokio::test]
async fn api_subscribe_positions_like_a_client_subscribe() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(json!({
        "data_dir": data.path(),
        "channel": {"namespaces": [
            {"name": "feed", "history_size": 10, "history_ttl": "1h", "force_recovery": true,
             "allow_subscribe_for_client": true},
            {"name": "cached", "history_size": 10, "history_ttl": "1h", "force_recovery": true,
             "force_recovery_mode": "cache", "allow_subscribe_for_client": true}
        ]}
    }))
    .await;
    let mut epoch = String::new();
    for n in 1..=4 {
        let published = server
            .api_ok("publish", json!({"channel": "feed:1", "data": {"n": n}}))
            .await;
        epoch = published["epoch"].as_str().unwrap().to_owned();
    }
    let subscribe = |channel: &str, offset: u64, epoch: &str| {
        json!({"subscribe": {"channel": channel, "recover": true, "offset": offset,
                             "epoch": epoch}})
    };
    let api_subscribe = |user: &str, channel: &str, offset: u64, epoch: &str| {
        json!({"user": user, "channel": channel,
               "recover_since": {"offset": offset, "epoch": epoch}})
    };

    // From offset 2: 3 and 4, and the stream's top.
    let mut own = server.client("bob").await;
    let reply = own.call(subscribe("feed:1", 2, &epoch)).await;
    let sub = &reply["subscribe"];
    assert_eq!(sub["recovered"], true, "{reply}");
    assert_eq!(
        (sub["offset"].clone(), sub["epoch"].clone()),
        (json!(4), json!(epoch))
    );
    let recovered: Vec<Value> = sub["publications"].as_array().unwrap().clone();
    assert_eq!(recovered.len(), 2, "{reply}");
    let mut ws = server.client("alice").await;
    server
        .api_ok("subscribe", api_subscribe("alice", "feed:1", 2, &epoch))
        .await;
    let push = ws.next_push().await;
    assert_eq!(push["push"]["subscribe"]["offset"], 2, "{push}");
    assert_eq!(push["push"]["subscribe"]["epoch"], epoch.as_str(), "{push}");
    for publication in &recovered {
        let push = ws.next_push().await;
        assert_eq!(
            push["push"]["pub"]["offset"], publication["offset"],
            "{push}"
        );
        assert_eq!(push["push"]["pub"]["data"], publication["data"], "{push}");
    }

    // From another epoch: not recovered, at the top, nothing replayed.
    let mut own = server.client("bob").await;
    let reply = own.call(subscribe("feed:1", 2, "another-epoch")).await;
    let sub = &reply["subscribe"];
    assert_ne!(sub["recovered"], true, "{reply}");
    assert_eq!(sub["offset"], 4, "{reply}");
    assert!(sub.get("publications").is_none(), "{reply}");
    let mut ws = server.client("carol").await;
    server
        .api_ok(
            "subscribe",
            api_subscribe("carol", "feed:1", 2, "another-epoch"),
        )
        .await;
    let push = ws.next_push().await;
    assert_eq!(push["push"]["subscribe"]["offset"], 4, "{push}");
    assert!(
        ws.next_push_within(Duration::from_millis(200))
            .await
            .is_none(),
        "nothing replayed"
    );

    // Cache recovery: the latest publication only.
    for n in 1..=3 {
        let published = server
            .api_ok("publish", json!({"channel": "cached:1", "data": {"n": n}}))
            .await;
        epoch = published["epoch"].as_str().unwrap().to_owned();
    }
    let mut own = server.client("bob").await;
    let reply = own.call(subscribe("cached:1", 1, &epoch)).await;
    let sub = &reply["subscribe"];
    assert_eq!(sub["publications"][0]["data"], json!({"n": 3}), "{reply}");
    assert_eq!(sub["offset"], 3, "{reply}");
    let mut ws = server.client("dave").await;
    server
        .api_ok("subscribe", api_subscribe("dave", "cached:1", 1, &epoch))
        .await;
    let push = ws.next_push().await;
    assert_eq!(push["push"]["subscribe"]["offset"], 2, "{push}");
    let push = ws.next_push().await;
    assert_eq!(push["push"]["pub"]["offset"], 3, "{push}");
    assert_eq!(push["push"]["pub"]["data"], json!({"n": 3}), "{push}");
}
