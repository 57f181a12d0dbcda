//! The WebSocket transport and the plain HTTP endpoints: size limits, UTF-8, slow consumers,
//! origins, bad handshakes, health, metrics.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tokio::net::TcpSocket;

#[tokio::test]
async fn oversize_message_closes_1009() {
    let server = Server::start(json!({"websocket": {"message_size_limit": 1024}})).await;
    let mut ws = server.client("alice").await;
    // Under the limit is fine.
    let small = json!({"id": 2, "rpc": {"method": "m", "data": {"pad": "x".repeat(500)}}});
    ws.send(&small).await;
    assert_error(&ws.reply_to(2).await, 108);
    let big = json!({"id": 3, "rpc": {"method": "m", "data": {"pad": "x".repeat(2000)}}});
    assert!(big.to_string().len() > 2000);
    ws.send(&big).await;
    assert_eq!(ws.expect_close().await.0, 1009);
    // Whoever runs the server is told, once, which option to raise.
    let expected = "the client sent a message over websocket.message_size_limit (1024 bytes)";
    let deadline = std::time::Instant::now() + STEP;
    while !server.stderr().contains(expected) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = server.stderr();
    assert_eq!(log.matches(expected).count(), 1, "{log}");
    assert!(log.contains("closed with 1009 (frame too big)"), "{log}");
}

#[tokio::test]
async fn invalid_utf8_text_frame_closes_1007() {
    let server = Server::start(json!({})).await;
    let (head, mut raw) = raw_handshake(server.port, &[]).await;
    assert_eq!(head.status, 101, "{}", head.text);
    raw.send_frame(1, b"{\"id\":1,\"connect\":{\"token\":\"\xff\xfe\"}}")
        .await;
    let close = raw.read_close_within(STEP).await;
    assert_eq!(close.map(|c| c.0), Some(1007));
}

/// A subscriber that never reads is closed once its queue passes `client.queue_max_size`,
/// while a subscriber that keeps up gets every publication.
#[tokio::test]
async fn slow_consumer_is_closed_and_fast_one_gets_everything() {
    let server = Server::start(json!({
        "client": {"queue_max_size": 65536},
        // Long enough that the queue overflows before a stalled write times out, even on a
        // slow machine: the overflow is what is tested.
        "websocket": {"write_timeout": "30s"},
        "channel": {"without_namespace": {"allow_publish_for_client": true}}
    }))
    .await;

    // The slow subscriber: a raw socket with a small receive buffer that stops reading after
    // its subscribe reply, so that the kernel buffers fill and the server-side queue grows.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = tokio::time::timeout(STEP, socket.connect(([127, 0, 0, 1], server.port).into()))
        .await
        .unwrap()
        .unwrap();
    let (head, mut slow) = raw_handshake_on(stream, server.port, &[]).await;
    assert_eq!(head.status, 101, "{}", head.text);
    let commands = format!(
        "{}\n{}",
        json!({"id": 1, "connect": {"token": token("slow")}}),
        json!({"id": 2, "subscribe": {"channel": "flood"}})
    );
    slow.send_frame(1, commands.as_bytes()).await;
    let mut replies = Vec::new();
    while replies.len() < 2 {
        let (opcode, payload) = tokio::time::timeout(STEP, slow.read_frame())
            .await
            .expect("slow client: no replies")
            .expect("slow client: connection ended");
        assert_eq!(opcode, 1);
        replies.extend(split_values(std::str::from_utf8(&payload).unwrap()));
    }
    assert!(replies[1]["subscribe"].is_object(), "{replies:?}");

    let mut fast = server.client("fast").await;
    fast.subscribe_ok("flood").await;
    let mut publisher = server.client("publisher").await;

    let pad = "x".repeat(10 * 1024);
    let mut closed = false;
    let mut sent = 0;
    for i in 0..4000u64 {
        // Lockstep with the fast subscriber, so its own queue never holds more than one.
        let reply = publisher
            .publish("flood", json!({"i": i, "pad": pad}))
            .await;
        assert_eq!(reply["publish"], json!({}), "publish {i}: {reply}");
        let push = fast.next_push().await;
        assert_eq!(
            push["push"]["pub"]["data"]["i"], i,
            "fast subscriber missed one"
        );
        sent = i + 1;
        if i % 25 == 24 {
            let slow_consumers = server
                .metric("herald_client_slow_consumers_total")
                .await
                .unwrap_or(0.0);
            let clients = server.metric("herald_clients").await.unwrap_or(3.0);
            if slow_consumers >= 1.0 || clients <= 2.0 {
                closed = true;
                break;
            }
        }
    }
    assert!(
        closed,
        "the slow subscriber was not closed after {sent} publications of 10 KiB"
    );
    eprintln!("slow consumer closed after {sent} publications");
    // The fast subscriber is unaffected and still gets publications.
    publisher.publish("flood", json!({"i": "last"})).await;
    assert_eq!(fast.next_push().await["push"]["pub"]["data"]["i"], "last");
    fast.assert_alive().await;

    // Now read the slow socket: everything buffered, then close 3008 or the end of the stream.
    let close = slow.read_close_within(Duration::from_secs(20)).await;
    eprintln!("slow consumer read: {close:?}");
    // Closed without a close frame (None) is acceptable too.
    if let Some((code, reason)) = close {
        assert_eq!((code, reason.as_str()), (3008, "slow"));
    }
    assert!(
        server
            .metric("herald_client_slow_consumers_total")
            .await
            .unwrap_or(0.0)
            >= 1.0,
        "herald_client_slow_consumers_total should count the slow subscriber"
    );
}

#[tokio::test]
async fn allowed_origins() {
    let server =
        Server::start(json!({"client": {"allowed_origins": ["https://good.example"]}})).await;
    let (head, _) = raw_handshake(server.port, &[("Origin", "https://evil.example")]).await;
    assert_eq!(head.status, 403, "{}", head.text);
    let (head, _) = raw_handshake(server.port, &[("Origin", "https://good.example")]).await;
    assert_eq!(head.status, 101, "{}", head.text);
    // Non-browser clients send no Origin and are always welcome.
    let (head, _) = raw_handshake(server.port, &[]).await;
    assert_eq!(head.status, 101, "{}", head.text);
}

#[tokio::test]
async fn forbidden_origin_body_is_json() {
    let server =
        Server::start(json!({"client": {"allowed_origins": ["https://good.example"]}})).await;
    let response = http(
        server.port,
        "GET",
        "/connection/websocket",
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Origin", "https://evil.example"),
        ],
        None,
    )
    .await;
    assert_eq!(response.status, 403);
    assert!(
        response.json()["error"]["message"].is_string(),
        "{}",
        response.text()
    );
}

#[tokio::test]
async fn plain_get_on_websocket_endpoint_is_426() {
    let server = Server::start(json!({})).await;
    let response = server.get("/connection/websocket").await;
    assert_eq!(response.status, 426, "{}", response.text());
    assert_eq!(response.header("sec-websocket-version"), Some("13"));
    let body = response.json();
    assert_eq!(body["error"]["code"], 426, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

#[tokio::test]
async fn bad_websocket_key_is_400() {
    let server = Server::start(json!({})).await;
    let (head, _) = raw_handshake(server.port, &[("Sec-WebSocket-Key", "short")]).await;
    assert_eq!(head.status, 400, "{}", head.text);
}

#[tokio::test]
async fn health_is_200() {
    let server = Server::start(json!({})).await;
    let response = server.get("/health").await;
    assert_eq!(response.status, 200);
    assert!(response.json().is_object());
}

#[tokio::test]
async fn metrics_is_200_text() {
    let server = Server::start(json!({})).await;
    let _client = server.client("alice").await;
    let response = server.get("/metrics").await;
    assert_eq!(response.status, 200);
    let content_type = response.header("content-type").unwrap_or_default();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = response.text();
    assert!(
        text.contains("herald_client_connections_opened_total 1"),
        "{text}"
    );
    assert!(text.contains("herald_clients 1"), "{text}");
}

#[tokio::test]
async fn unknown_path_is_404_json() {
    let server = Server::start(json!({})).await;
    let response = server.get("/no/such/thing").await;
    assert_eq!(response.status, 404);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.json()["error"]["code"], 404);
}

#[tokio::test]
async fn a_handshake_without_a_subprotocol_is_accepted() {
    let server = Server::start(json!({})).await;
    // No subprotocol, as the JS SDK's JSON codec connects: accepted. (Protobuf, and the
    // choice between the two, are tested in tests/protobuf.rs.)
    let (head, _) = raw_handshake(server.port, &[]).await;
    assert_eq!(head.status, 101, "{}", head.text);
}
