//! The HTTP-streaming transport over real HTTP: a POST of the connect command opens a stream
//! of newline-delimited replies and pushes, its commands come through `/emulation`, and it
//! ends with a `disconnect` push where a WebSocket gets a close frame.

mod common;

use std::time::Duration;

use common::streaming::{self, Kind, Stream, sse_get};
use common::*;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// POSTs commands for the connection of `session` to the emulation endpoint.
async fn emulate(port: u16, session: &str, commands: &[Value]) -> HttpResponse {
    streaming::emulate(port, session, "", commands).await
}

fn enabled() -> Value {
    json!({"http_stream": {"enabled": true}})
}

/// Connect, subscribe through the emulation endpoint, receive a publication, then the server
/// API's `disconnect`: a `disconnect` push with its code, then the end of the stream.
#[tokio::test]
async fn a_streaming_connection_is_served_and_ends_with_a_disconnect_push() {
    let server = Server::start(enabled()).await;
    let (mut stream, head) = Stream::open(
        Kind::HttpStream,
        server.port,
        &json!({"id": 1, "connect": {"token": token("alice")}}),
    )
    .await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(head.contains("x-accel-buffering: no"), "{head}");
    assert!(head.contains("cache-control: private, no-cache"), "{head}");
    let connect = stream.next().await.expect("the connect reply");
    assert_eq!(connect["id"], 1, "{connect}");
    let session = connect["connect"]["session"]
        .as_str()
        .expect("a session id")
        .to_owned();
    assert!(connect["connect"]["node"].is_string(), "{connect}");

    let posted = emulate(
        server.port,
        &session,
        &[json!({"id": 2, "subscribe": {"channel": "news"}})],
    )
    .await;
    assert_eq!(posted.status, 204, "{}", posted.text());
    let subscribed = stream.next_where(|m| m["id"] == 2).await;
    assert!(subscribed.get("subscribe").is_some(), "{subscribed}");

    server
        .api_ok("publish", json!({"channel": "news", "data": {"n": 1}}))
        .await;
    let publication = stream.next_where(|m| m.get("push").is_some()).await;
    assert_eq!(publication["push"]["channel"], "news", "{publication}");
    assert_eq!(publication["push"]["pub"]["data"]["n"], 1, "{publication}");

    server
        .api_ok(
            "disconnect",
            json!({"user": "alice", "disconnect": {"code": 4500, "reason": "bye"}}),
        )
        .await;
    let last = stream
        .next_where(|m| m["push"].get("disconnect").is_some())
        .await;
    assert_eq!(last["push"]["disconnect"]["code"], 4500, "{last}");
    assert_eq!(
        stream.next().await,
        None,
        "the stream ends after the disconnect push"
    );

    // The connection is gone: its session reaches nothing any more.
    let mut gone = emulate(
        server.port,
        &session,
        &[json!({"id": 3, "presence": {"channel": "news"}})],
    )
    .await;
    for _ in 0..50 {
        if gone.status == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        gone = emulate(
            server.port,
            &session,
            &[json!({"id": 3, "presence": {"channel": "news"}})],
        )
        .await;
    }
    assert_eq!(gone.status, 404, "{}", gone.text());
}

/// A client that opens a stream and then reads nothing: the server cuts it off once its
/// outbox is over budget and its writes stall, and stays within bounded memory meanwhile
/// (every publication after the cut is refused, not queued).
#[tokio::test]
async fn a_stream_nobody_reads_is_cut_off() {
    let server = Server::start(json!({
        "http_stream": {"enabled": true},
        "client": {"queue_max_size": 65536},
        "websocket": {"write_timeout": "500ms"},
        "channel": {"without_namespace": {"allow_subscribe_for_client": true}}
    }))
    .await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let socket = socket
        .connect(([127, 0, 0, 1], server.port).into())
        .await
        .expect("connect");
    let (mut stream, _) = Stream::open_on(
        Kind::HttpStream,
        socket,
        server.port,
        &json!({"id": 1, "connect": {"token": token("slow")}}),
    )
    .await;
    let connect = stream.next().await.expect("the connect reply");
    let session = connect["connect"]["session"]
        .as_str()
        .expect("session")
        .to_owned();
    emulate(
        server.port,
        &session,
        &[json!({"id": 2, "subscribe": {"channel": "firehose"}})],
    )
    .await;
    stream.next_where(|m| m["id"] == 2).await;
    // From here on the client reads nothing.
    // Large enough that the kernel buffers on both sides fill within a few hundred.
    let data = "x".repeat(32 * 1024);
    let mut gone = false;
    for _ in 0..400 {
        server
            .api_ok(
                "publish",
                json!({"channel": "firehose", "data": {"pad": data}}),
            )
            .await;
        let info = server.api_ok("info", json!({})).await;
        if info["nodes"][0]["num_clients"] == 0 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let info = server.api_ok("info", json!({})).await;
    assert!(
        gone,
        "the client that reads nothing is still connected: {info}"
    );
    let slow = server
        .metric("herald_client_slow_consumers_total")
        .await
        .unwrap_or_default();
    assert!(slow >= 1.0, "counted as a slow consumer: {slow}");
}

/// SSE: an EventSource GET with the connect command in `cf_connect`; each message a `data:`
/// event; the server API's `disconnect` ends it with a `disconnect` push.
#[tokio::test]
async fn an_sse_connection_is_served_from_cf_connect_and_ends_with_a_disconnect_push() {
    let server = Server::start(json!({"sse": {"enabled": true}})).await;
    let connect = json!({"id": 1, "connect": {"token": token("carol")}});
    let (mut stream, head) = Stream::open(Kind::Sse, server.port, &connect).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    let connect = stream.next().await.expect("the connect reply");
    assert_eq!(connect["id"], 1, "{connect}");
    assert!(connect["connect"]["session"].is_string(), "{connect}");
    server
        .api_ok(
            "disconnect",
            json!({"user": "carol", "disconnect": {"code": 4501, "reason": "bye"}}),
        )
        .await;
    let last = stream.next().await.expect("the disconnect push");
    assert_eq!(last["push"]["disconnect"]["code"], 4501, "{last}");
    assert_eq!(stream.next().await, None, "the stream ends");
}

/// The streaming endpoints check `client.allowed_origins` and answer CORS preflights for
/// the origins it allows.
#[tokio::test]
async fn origins_are_checked_and_preflights_answered() {
    let server = Server::start(json!({
        "http_stream": {"enabled": true},
        "client": {"allowed_origins": ["https://app.example"]}
    }))
    .await;
    let preflight = http(
        server.port,
        "OPTIONS",
        "/emulation",
        &[
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        None,
    )
    .await;
    assert_eq!(preflight.status, 204, "{}", preflight.text());
    let header = |name: &str| {
        preflight
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        header("access-control-allow-origin").as_deref(),
        Some("https://app.example")
    );
    assert_eq!(
        header("access-control-allow-headers").as_deref(),
        Some("content-type")
    );
    let refused = http(
        server.port,
        "POST",
        "/connection/http_stream",
        &[("Origin", "https://evil.example")],
        Some(b"{}"),
    )
    .await;
    assert_eq!(refused.status, 403, "{}", refused.text());
}

/// Without `http_stream.enabled` neither endpoint is served.
#[tokio::test]
async fn the_endpoints_are_off_by_default() {
    let server = Server::start(json!({})).await;
    let response = http(
        server.port,
        "POST",
        "/connection/http_stream",
        &[],
        Some(b"{}"),
    )
    .await;
    assert_eq!(response.status, 404);
    assert_eq!(emulate(server.port, "s", &[]).await.status, 404);
}

/// Pings on a stream: the server's `{}` comes on the stream, the client's pong through the
/// emulation endpoint keeps the connection; a ping left unanswered ends it with a 3012
/// `disconnect` push and the end of the stream.
#[tokio::test]
async fn pings_go_out_on_the_stream_and_pongs_come_through_emulation() {
    let server = Server::start(json!({
        "http_stream": {"enabled": true},
        "client": {"ping_interval": "1s", "pong_timeout": "900ms"}
    }))
    .await;
    let (mut stream, _) = Stream::open(
        Kind::HttpStream,
        server.port,
        &json!({"id": 1, "connect": {"token": token("dave")}}),
    )
    .await;
    let connect = stream.next().await.expect("the connect reply");
    let session = connect["connect"]["session"]
        .as_str()
        .expect("session")
        .to_owned();
    for _ in 0..2 {
        let ping = stream.next().await.expect("a ping");
        assert_eq!(ping, json!({}), "a server ping");
        let pong = emulate(server.port, &session, &[json!({})]).await;
        assert_eq!(pong.status, 204, "{}", pong.text());
    }
    // The third ping is not answered.
    assert_eq!(stream.next().await, Some(json!({})));
    let last = stream.next().await.expect("the disconnect push");
    assert_eq!(last["push"]["disconnect"]["code"], 3012, "{last}");
    assert_eq!(stream.next().await, None, "the stream ends");
}

/// Unidirectional HTTP-streaming, as `curl -N -d '{"token":…}'` uses it: the POST body is the
/// connect request; the stream carries bare pushes, the connect push first, then the
/// publications of the server-side subscriptions (token `channels`, API `subscribe`), and the
/// server API's `disconnect` ends it with a bare `disconnect` push.
#[tokio::test]
async fn a_uni_http_stream_gets_bare_pushes_and_ends_with_a_disconnect_push() {
    let server = Server::start(json!({"uni_http_stream": {"enabled": true}})).await;
    let claims = json!({"sub": "dave", "channels": ["news"]});
    let token = herald::auth::sign_hs256(&claims, SECRET).expect("sign token");
    let body = json!({"token": token}).to_string();
    let socket = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("connect");
    let request = format!(
        "POST /connection/uni_http_stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (mut stream, head) = Stream::request(Kind::HttpStream, socket, &request).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let connect = stream.next().await.expect("the connect push");
    assert!(connect["connect"]["client"].is_string(), "{connect}");
    assert!(
        connect["connect"]["subs"].get("news").is_some(),
        "{connect}"
    );
    assert!(
        connect.get("id").is_none(),
        "a push, not a reply: {connect}"
    );

    server
        .api_ok("publish", json!({"channel": "news", "data": {"n": 1}}))
        .await;
    let publication = stream.next_where(|m| m.get("pub").is_some()).await;
    assert_eq!(publication["channel"], "news", "{publication}");
    assert_eq!(publication["pub"]["data"]["n"], 1, "{publication}");

    server
        .api_ok("subscribe", json!({"user": "dave", "channel": "extra"}))
        .await;
    server
        .api_ok("publish", json!({"channel": "extra", "data": {"n": 2}}))
        .await;
    let publication = stream
        .next_where(|m| m.get("pub").is_some() && m["channel"] == "extra")
        .await;
    assert_eq!(publication["pub"]["data"]["n"], 2, "{publication}");

    server
        .api_ok(
            "disconnect",
            json!({"user": "dave", "disconnect": {"code": 4502, "reason": "bye"}}),
        )
        .await;
    let last = stream.next_where(|m| m.get("disconnect").is_some()).await;
    assert_eq!(last["disconnect"]["code"], 4502, "{last}");
    assert_eq!(stream.next().await, None, "the stream ends");
}

/// Unidirectional SSE, as a plain `EventSource` uses it: the connect request in `cf_connect`;
/// bare pushes as `data:` events; a refused token ends the stream with a disconnect push
/// saying so (3500, no reconnect) rather than an error reply nobody reads.
#[tokio::test]
async fn a_uni_sse_stream_is_served_from_cf_connect_and_a_bad_token_is_a_disconnect() {
    let server = Server::start(json!({"uni_sse": {"enabled": true}})).await;
    let (mut stream, head) = open_uni_sse(server.port, &json!({"token": token("erin")})).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    let connect = stream.next().await.expect("the connect push");
    assert!(connect["connect"]["client"].is_string(), "{connect}");
    server
        .api_ok("subscribe", json!({"user": "erin", "channel": "news"}))
        .await;
    server
        .api_ok("publish", json!({"channel": "news", "data": {"n": 3}}))
        .await;
    let publication = loop {
        let event = stream.next().await.expect("the publication");
        if event.get("pub").is_some() {
            break event;
        }
    };
    assert_eq!(publication["channel"], "news", "{publication}");
    server
        .api_ok(
            "disconnect",
            json!({"user": "erin", "disconnect": {"code": 4503, "reason": "bye"}}),
        )
        .await;
    let last = loop {
        let event = stream.next().await.expect("the disconnect push");
        if event.get("disconnect").is_some() {
            break event;
        }
    };
    assert_eq!(last["disconnect"]["code"], 4503, "{last}");
    assert_eq!(stream.next().await, None, "the stream ends");

    let (mut refused, _) = open_uni_sse(server.port, &json!({"token": "not a token"})).await;
    let last = refused.next().await.expect("the disconnect push");
    assert_eq!(last["disconnect"]["code"], 3500, "{last}");
    assert_eq!(refused.next().await, None, "the stream ends");
}

/// The GET of a unidirectional SSE stream with `cf_connect` (URL-encoded).
async fn open_uni_sse(port: u16, connect: &Value) -> (Stream, String) {
    let socket = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    Stream::request(Kind::Sse, socket, &sse_get("/connection/uni_sse", connect)).await
}

/// `uni_sse.connect_code_to_http_response`: the response waits for the connect; a refusal
/// whose code has a transform is that status (and its body, or the refusal's message), one
/// without is 500; an accepted connect is the 200 stream as ever. Whole bodies, so read with
/// the plain HTTP helper.
#[tokio::test]
async fn connect_code_to_http_response_answers_refusals_with_a_status() {
    let server = Server::start(json!({
        "uni_sse": {"enabled": true, "connect_code_to_http_response": {"enabled": true, "transforms": [
            {"code": 3500, "to": {"status_code": 401}},
            {"code": 109, "to": {"status_code": 403, "body": "expired: sign in again"}}
        ]}},
        "uni_http_stream": {"enabled": true, "connect_code_to_http_response": {"enabled": true}}
    }))
    .await;
    let get = |connect: Value| {
        let port = server.port;
        async move {
            let query: String = connect
                .to_string()
                .bytes()
                .map(|b| format!("%{b:02X}"))
                .collect();
            http(
                port,
                "GET",
                &format!("/connection/uni_sse?cf_connect={query}"),
                &[],
                None,
            )
            .await
        }
    };
    let refused = get(json!({"token": "not a token"})).await;
    // A token that does not verify is refused with the disconnect 3500 (as in Centrifugo),
    // its reason the body.
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert_eq!(refused.text(), "invalid token");
    let expired = get(json!({"token": token_exp("erin", unix_now() - 10)})).await;
    assert_eq!(expired.status, 403, "{}", expired.text());
    assert_eq!(expired.text(), "expired: sign in again");

    // No transform on uni_http_stream: 500, as Centrifugo answers.
    let refused = http(
        server.port,
        "POST",
        "/connection/uni_http_stream",
        &[("Content-Type", "application/json")],
        Some(b"{\"token\":\"not a token\"}"),
    )
    .await;
    assert_eq!(refused.status, 500, "{}", refused.text());
    assert_eq!(refused.text(), "Internal Server Error");

    // Accepted: the stream, its connect push first.
    let (mut stream, head) = open_uni_sse(server.port, &json!({"token": token("erin")})).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let connect = stream.next().await.expect("the connect push");
    assert!(connect["connect"]["client"].is_string(), "{connect}");
}

/// `client.connect_code_to_unidirectional_disconnect`: a refused connect's error code becomes
/// the configured disconnect instead of the built-in one (109 token expired → 3005).
#[tokio::test]
async fn connect_code_to_unidirectional_disconnect_chooses_the_disconnect() {
    let server = Server::start(json!({
        "uni_sse": {"enabled": true},
        "client": {"connect_code_to_unidirectional_disconnect": {"enabled": true, "transforms": [
            {"code": 109, "to": {"code": 4901, "reason": "sign in again"}}
        ]}}
    }))
    .await;
    let expired = token_exp("gus", unix_now() - 10);
    let (mut refused, _) = open_uni_sse(server.port, &json!({"token": expired})).await;
    let last = refused.next().await.expect("the disconnect push");
    assert_eq!(
        last["disconnect"],
        json!({"code": 4901, "reason": "sign in again"}),
        "{last}"
    );
    assert_eq!(refused.next().await, None, "the stream ends");
}

/// A unidirectional stream is pinged with `{}` every ping interval (its connect push says the
/// interval, and no pong), and is not closed for not answering.
#[tokio::test]
async fn a_uni_stream_is_pinged_and_stays_open() {
    let server = Server::start(json!({
        "uni_sse": {"enabled": true},
        "client": {"ping_interval": "1s", "pong_timeout": "500ms"}
    }))
    .await;
    let (mut stream, _) = open_uni_sse(server.port, &json!({"token": token("gus")})).await;
    let connect = stream.next().await.expect("the connect push");
    assert_eq!(connect["connect"]["ping"], 1, "{connect}");
    assert!(connect["connect"].get("pong").is_none(), "{connect}");
    for _ in 0..3 {
        assert_eq!(stream.next().await, Some(json!({})), "a ping");
    }
}

/// A stream whose request arrives whole is served by the lean HTTP/1.1 path (no buffers held
/// while idle; its response has no `date` header, which hyper adds); one whose head arrives in
/// two pieces is left to hyper. Both carry the same stream: connect reply, publication,
/// disconnect push, end.
#[tokio::test]
async fn a_stream_is_served_the_same_whether_its_head_arrives_whole_or_split() {
    let server = Server::start(json!({"sse": {"enabled": true}})).await;
    for (user, split) in [("dave", false), ("erin", true)] {
        let connect = json!({"id": 1, "connect": {"token": token(user)}});
        let mut socket = TcpStream::connect(("127.0.0.1", server.port))
            .await
            .expect("connect");
        let request = sse_get("/connection/sse", &connect);
        let rest = if split {
            let (first, rest) = request.split_at(40);
            socket.write_all(first.as_bytes()).await.expect("write");
            tokio::time::sleep(Duration::from_millis(100)).await;
            rest
        } else {
            request.as_str()
        };
        let (mut stream, head) = Stream::request(Kind::Sse, socket, rest).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains("content-type: text/event-stream"), "{head}");
        assert_eq!(
            head.contains("date:"),
            split,
            "served by hyper: {split}; {head}"
        );
        let connect = stream.next().await.expect("the connect reply");
        assert!(connect["connect"]["session"].is_string(), "{connect}");
        server
            .api_ok(
                "disconnect",
                json!({"user": user, "disconnect": {"code": 4501, "reason": "bye"}}),
            )
            .await;
        let last = stream.next().await.expect("the disconnect push");
        assert_eq!(last["push"]["disconnect"]["code"], 4501, "{last}");
        assert_eq!(stream.next().await, None, "the stream ends");
    }
}
