//! Streaming connections across nodes: a client's HTTP-streaming or SSE connection is on one
//! node, and its emulation POSTs reach another (a load balancer without sticky sessions). The
//! receiving node forwards them to the node that owns the session — over the Redis engine's
//! control channels, or NATS — and the connection processes them, in order, as if they had
//! been posted to its own node. An unknown session or a gone node answers 404.

mod common;

use std::time::{Duration, Instant};

use common::nats::Nats;
use common::redis::RedisServer;
use common::streaming::{Kind, Stream, emulate};
use common::*;
use serde_json::{Value, json};

/// What every node serves: both streaming transports, and a namespace with history.
fn with_streaming(mut engine: Value) -> Value {
    merge(
        &mut engine,
        json!({
            "http_stream": {"enabled": true},
            "sse": {"enabled": true},
            "channel": {"namespaces": [{
                "name": "room",
                "allow_subscribe_for_client": true,
                "allow_publish_for_subscriber": true,
                "allow_presence_for_subscriber": true,
                "allow_history_for_subscriber": true,
                "presence": true,
                "history_size": 100,
                "history_ttl": "300s"
            }]}
        }),
    );
    engine
}

/// Starts `n` nodes of `config` and waits until each lists all of them.
async fn nodes(config: &Value, n: usize) -> Vec<Server> {
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(Server::start(config.clone()).await);
    }
    for node in &nodes {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let info = node.api_ok("info", json!({})).await;
            if info["nodes"].as_array().map_or(0, Vec::len) == n {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the nodes do not all see each other: {info}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    nodes
}

/// A session of `kind` on `home`, driven through the emulation endpoint of `other`.
async fn session_driven_through_another_node(
    kind: Kind,
    home: &Server,
    other: &Server,
    channel: &str,
) {
    let (mut stream, head) = Stream::open(
        kind,
        home.port,
        &json!({"id": 1, "connect": {"token": token("alice")}}),
    )
    .await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let connect = stream.next().await.expect("the connect reply");
    let session = connect["connect"]["session"]
        .as_str()
        .expect("a session")
        .to_owned();
    let node = connect["connect"]["node"]
        .as_str()
        .expect("a node id")
        .to_owned();

    let posted = emulate(
        other.port,
        &session,
        &node,
        &[json!({"id": 2, "subscribe": {"channel": channel}})],
    )
    .await;
    assert_eq!(posted.status, 204, "{}", posted.text());
    let subscribed = stream.next_where(|m| m["id"] == 2).await;
    assert!(subscribed.get("subscribe").is_some(), "{subscribed}");

    // Publishes posted one after the other to the other node are processed in that order:
    // their replies come in order, and so do their publications.
    for n in 3..=12u64 {
        let posted = emulate(
            other.port,
            &session,
            &node,
            &[json!({"id": n, "publish": {"channel": channel, "data": {"n": n}}})],
        )
        .await;
        assert_eq!(posted.status, 204, "{}", posted.text());
    }
    let mut replies = Vec::new();
    let mut published = Vec::new();
    while replies.len() < 10 || published.len() < 10 {
        let message = stream.next().await.expect("the stream ended early");
        if let Some(id) = message["id"].as_u64() {
            assert!(message.get("error").is_none(), "{message}");
            replies.push(id);
        } else if let Some(n) = message["push"]["pub"]["data"]["n"].as_u64() {
            published.push(n);
        }
    }
    assert_eq!(replies, (3..=12).collect::<Vec<_>>());
    assert_eq!(published, (3..=12).collect::<Vec<_>>());

    // Several commands in one request, through the other node too.
    let posted = emulate(
        other.port,
        &session,
        &node,
        &[
            json!({"id": 13, "presence": {"channel": channel}}),
            json!({"id": 14, "history": {"channel": channel, "limit": -1}}),
        ],
    )
    .await;
    assert_eq!(posted.status, 204, "{}", posted.text());
    let presence = stream.next_where(|m| m["id"] == 13).await;
    assert!(
        presence["presence"]["presence"]
            .as_object()
            .is_some_and(|p| p.len() == 1),
        "{presence}"
    );
    let history = stream.next_where(|m| m["id"] == 14).await;
    assert_eq!(
        history["history"]["publications"].as_array().map(Vec::len),
        Some(10),
        "{history}"
    );

    // A session that does not exist on its node, and a node that does not exist: 404.
    let unknown = emulate(
        other.port,
        "no-such-session",
        &node,
        &[json!({"id": 15, "presence": {"channel": channel}})],
    )
    .await;
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    let nowhere = emulate(
        other.port,
        &session,
        "no-such-node",
        &[json!({"id": 16, "presence": {"channel": channel}})],
    )
    .await;
    assert_eq!(nowhere.status, 404, "{}", nowhere.text());

    // Once the connection ended, its session answers 404 through the other node as well.
    home.api_ok(
        "disconnect",
        json!({"user": "alice", "disconnect": {"code": 4500, "reason": "bye"}}),
    )
    .await;
    let last = stream
        .next_where(|m| m["push"].get("disconnect").is_some())
        .await;
    assert_eq!(last["push"]["disconnect"]["code"], 4500, "{last}");
    let deadline = Instant::now() + STEP;
    loop {
        let gone = emulate(
            other.port,
            &session,
            &node,
            &[json!({"id": 17, "presence": {"channel": channel}})],
        )
        .await;
        if gone.status == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "{} {}", gone.status, gone.text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn emulation_posted_to_another_node_reaches_the_session_over_redis() {
    let redis = RedisServer::start();
    let config = with_streaming(json!({
        "engine": {"type": "redis", "redis": {"address": redis.url()}}
    }));
    let nodes = nodes(&config, 2).await;
    session_driven_through_another_node(Kind::HttpStream, &nodes[0], &nodes[1], "room:h").await;
    session_driven_through_another_node(Kind::Sse, &nodes[1], &nodes[0], "room:s").await;
}

#[tokio::test]
async fn emulation_posted_to_another_node_reaches_the_session_over_nats() {
    let nats = Nats::start();
    let config = with_streaming(json!({
        "broker": {"enabled": true, "type": "nats",
                   "nats": {"url": nats.url(), "prefix": "emu", "write_timeout": "2s",
                            "jetstream": {"enabled": true}}}
    }));
    let nodes = nodes(&config, 2).await;
    session_driven_through_another_node(Kind::HttpStream, &nodes[0], &nodes[1], "room:h").await;
    session_driven_through_another_node(Kind::Sse, &nodes[1], &nodes[0], "room:s").await;
}
