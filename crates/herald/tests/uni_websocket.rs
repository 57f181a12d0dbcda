//! The unidirectional WebSocket (`/connection/uni_websocket`) with a plain WebSocket client:
//! the first message is the connect request (or the URL's `cf_connect`), then the server
//! sends bare pushes, one per frame, `{}` pings, and ends with a `disconnect` push and a close
//! frame of the same code.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn enabled(extra: Value) -> Value {
    let mut config = json!({"uni_websocket": {"enabled": true}});
    merge(&mut config, extra);
    config
}

fn uni_url(server: &Server) -> String {
    format!("ws://127.0.0.1:{}/connection/uni_websocket", server.port)
}

/// The next message of one frame: exactly one JSON value (a bare push), skipping pings (`{}`).
async fn next_push(ws: &mut Ws) -> Value {
    loop {
        let values = ws.next_values().await;
        assert_eq!(values.len(), 1, "one push per frame: {values:?}");
        let push = values.into_iter().next().expect("one value");
        if push != json!({}) {
            return push;
        }
    }
}

/// The next push that `what` accepts (a publication may come before a push asked for).
async fn next_push_where(ws: &mut Ws, what: impl Fn(&Value) -> bool) -> Value {
    loop {
        let push = next_push(ws).await;
        if what(&push) {
            return push;
        }
    }
}

/// Connect request as the first message; bare pushes for the token's channels and an API
/// subscription; the server API's `disconnect` is a `disconnect` push, then the close frame
/// with the same code and reason. What the client sends after its connect request is dropped.
#[tokio::test]
async fn a_uni_websocket_gets_bare_pushes_and_a_disconnect_push_then_the_close_frame() {
    let server = Server::start(enabled(json!({}))).await;
    let claims = json!({"sub": "dave", "channels": ["news"]});
    let token = herald::auth::sign_hs256(&claims, SECRET).expect("sign token");
    let mut ws = Ws::open(&uni_url(&server)).await;
    ws.send(&json!({"token": token})).await;
    let connect = next_push(&mut ws).await;
    assert!(connect["connect"]["client"].is_string(), "{connect}");
    assert!(
        connect["connect"]["subs"].get("news").is_some(),
        "{connect}"
    );
    assert_eq!(connect["connect"]["ping"], 25, "{connect}");
    assert!(connect["connect"].get("pong").is_none(), "{connect}");
    assert!(
        connect.get("id").is_none(),
        "a push, not a reply: {connect}"
    );

    // Anything more from the client is not a command: dropped, the connection stays.
    ws.send(&json!({"id": 1, "subscribe": {"channel": "other"}}))
        .await;
    server
        .api_ok("publish", json!({"channel": "news", "data": {"n": 1}}))
        .await;
    let publication = next_push(&mut ws).await;
    assert_eq!(
        publication,
        json!({"channel": "news", "pub": {"data": {"n": 1}}}),
        "a bare publication push"
    );

    server
        .api_ok("subscribe", json!({"user": "dave", "channel": "extra"}))
        .await;
    server
        .api_ok("publish", json!({"channel": "extra", "data": {"n": 2}}))
        .await;
    let publication = next_push_where(&mut ws, |p| p.get("pub").is_some()).await;
    assert_eq!(publication["channel"], "extra", "{publication}");
    assert_eq!(publication["pub"]["data"]["n"], 2, "{publication}");

    server
        .api_ok(
            "disconnect",
            json!({"user": "dave", "disconnect": {"code": 4502, "reason": "bye"}}),
        )
        .await;
    let last = next_push_where(&mut ws, |p| p.get("disconnect").is_some()).await;
    assert_eq!(last["disconnect"]["code"], 4502, "{last}");
    assert_eq!(last["disconnect"]["reason"], "bye", "{last}");
    assert_eq!(ws.expect_close().await, (4502, "bye".to_owned()));
}

/// `cf_connect` in the URL stands for the first message; a refused token is a disconnect
/// (3500, as for the unidirectional streams) said both ways; a first message that is not a
/// connect request closes with 3501; a `cf_connect` that is not one is refused with 400 before
/// the upgrade; `disable_disconnect_push` leaves the close frame alone.
#[tokio::test]
async fn cf_connect_refusals_and_a_bad_first_message() {
    let server = Server::start(enabled(json!({}))).await;
    let url = |connect: &Value| {
        let encoded: String = connect
            .to_string()
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        format!("{}?cf_connect={encoded}", uni_url(&server))
    };
    let mut ws = Ws::open(&url(&json!({"token": token("erin")}))).await;
    let connect = next_push(&mut ws).await;
    assert!(connect["connect"]["client"].is_string(), "{connect}");

    let mut refused = Ws::open(&url(&json!({"token": "not a token"}))).await;
    let last = next_push(&mut refused).await;
    assert_eq!(last["disconnect"]["code"], 3500, "{last}");
    assert_eq!(refused.expect_close().await.0, 3500);

    let mut bad = Ws::open(&uni_url(&server)).await;
    bad.send_text("{\"id\":1,\"connect\":").await;
    let last = next_push(&mut bad).await;
    assert_eq!(last["disconnect"]["code"], 3501, "{last}");
    assert_eq!(bad.expect_close().await.0, 3501);

    let answer = server
        .get("/connection/uni_websocket?cf_connect=%5B1%5D")
        .await;
    assert_eq!(answer.status, 400, "{}", answer.text());

    let server = Server::start(enabled(
        json!({"uni_websocket": {"disable_disconnect_push": true}}),
    ))
    .await;
    let mut quiet = Ws::open(&uni_url(&server)).await;
    quiet.send(&json!({"token": "not a token"})).await;
    match quiet.next_frame().await {
        Frame::Close(code, _) => assert_eq!(code, 3500),
        other => panic!("expected the close frame alone, got {other:?}"),
    }
}

/// Pings: `{}` every `client.ping_interval`, and a client that cannot answer them is not
/// closed for it (the bidirectional clients' pong timeout does not apply).
#[tokio::test]
async fn a_uni_websocket_is_pinged_and_never_expected_to_answer() {
    let server = Server::start(enabled(
        json!({"client": {"ping_interval": "1s", "pong_timeout": "500ms"}}),
    ))
    .await;
    let mut ws = Ws::open(&uni_url(&server)).await;
    ws.send(&json!({"token": token("fay")})).await;
    let connect = ws.next_values().await;
    assert_eq!(connect[0]["connect"]["ping"], 1, "{connect:?}");
    let mut pings = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(3500);
    while let Some(frame) = ws
        .next_frame_within(deadline.saturating_duration_since(tokio::time::Instant::now()))
        .await
    {
        match frame {
            Frame::Text(text) => {
                assert_eq!(text, "{}", "only pings come");
                pings += 1;
            }
            other => panic!("the connection must stay open, got {other:?}"),
        }
    }
    assert!((2..=4).contains(&pings), "{pings} pings in 3.5 s at 1 s");
}
