//! The timers of a client connection: server ping/pong, stale connections, connection expiry
//! and refresh.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// A 1 s ping interval. The pong timeout must be shorter than the interval (the server refuses
/// `pong_timeout >= ping_interval` at startup, as Centrifugo does), hence 900 ms.
fn ping_config() -> serde_json::Value {
    json!({"client": {"ping_interval": "1s", "pong_timeout": "900ms"}})
}

#[tokio::test]
async fn answered_pings_keep_the_connection_alive() {
    let server = Server::start(ping_config()).await;
    let mut ws = server.ws().await;
    let reply = ws.connect(&token("alice")).await;
    assert_eq!(reply["connect"]["ping"], 1, "{reply}");
    assert_eq!(reply["connect"]["pong"], true, "{reply}");
    let started = Instant::now();
    let mut pings = 0;
    while pings < 3 {
        match ws.next_frame_within(Duration::from_secs(3)).await {
            Some(Frame::Text(text)) if text == "{}" => {
                pings += 1;
                ws.send_text("{}").await;
            }
            other => panic!("expected a server ping, got {other:?}"),
        }
    }
    // Three pings at a 1 s interval, each answered: well past the pong timeout.
    assert!(
        started.elapsed() >= Duration::from_millis(2000),
        "{:?}",
        started.elapsed()
    );
    ws.assert_alive().await;
}

/// One pong per ping, as Centrifugo counts them: a second pong for the same ping is a pong
/// nobody asked for, and closes the connection with 3501 like an unsolicited one
/// (client_connect.rs). The SDKs answer each ping once and never pong on their own.
#[tokio::test]
async fn a_second_pong_for_one_ping_closes_3501() {
    let server = Server::start(ping_config()).await;
    let mut ws = server.client("alice").await;
    match ws.next_frame().await {
        Frame::Text(text) => assert_eq!(text, "{}"),
        other => panic!("expected a server ping, got {other:?}"),
    }
    ws.send_text("{}").await;
    ws.assert_alive().await;
    ws.send_text("{}").await;
    assert_eq!(ws.expect_close().await, (3501, "bad request".into()));
}

#[tokio::test]
async fn unanswered_ping_closes_3012() {
    let server = Server::start(ping_config()).await;
    let mut ws = server.client("alice").await;
    match ws.next_frame().await {
        Frame::Text(text) => assert_eq!(text, "{}"),
        other => panic!("expected a server ping, got {other:?}"),
    }
    assert_eq!(ws.expect_close().await, (3012, "no pong".into()));
}

#[tokio::test]
async fn no_connect_within_stale_delay_closes_3502() {
    let server = Server::start(json!({"client": {"stale_close_delay": "1s"}})).await;
    let mut ws = server.ws().await;
    let started = Instant::now();
    assert_eq!(ws.expect_close().await, (3502, "stale".into()));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn connect_in_time_is_not_stale() {
    let server = Server::start(json!({"client": {"stale_close_delay": "1s"}})).await;
    let mut ws = server.client("alice").await;
    assert!(
        ws.next_frame_within(Duration::from_millis(1800))
            .await
            .is_none(),
        "a connected client must not be closed as stale"
    );
    ws.assert_alive().await;
}

#[tokio::test]
async fn connection_expires_without_refresh_3005() {
    let server = Server::start(json!({"client": {"expired_close_delay": "1s"}})).await;
    let mut ws = server.ws().await;
    let reply = ws.connect(&token_exp("alice", unix_now() + 2)).await;
    assert_eq!(reply["connect"]["expires"], true, "{reply}");
    let ttl = reply["connect"]["ttl"].as_u64().expect("ttl");
    assert!(ttl <= 2, "{reply}");
    assert_eq!(
        ws.expect_close_within(Duration::from_secs(8)).await,
        (3005, "connection expired".into())
    );
}

#[tokio::test]
async fn refresh_before_expiry_keeps_the_connection() {
    let server = Server::start(json!({"client": {"expired_close_delay": "1s"}})).await;
    let mut ws = server.ws().await;
    let first_exp = unix_now() + 2;
    let reply = ws.connect(&token_exp("alice", first_exp)).await;
    assert_eq!(reply["connect"]["expires"], true, "{reply}");
    let client_id = reply["connect"]["client"].clone();

    let refreshed = ws
        .call(json!({"refresh": {"token": token_exp("alice", unix_now() + 60)}}))
        .await;
    assert!(refreshed.get("error").is_none(), "{refreshed}");
    let result = &refreshed["refresh"];
    assert_eq!(result["expires"], true, "{refreshed}");
    let ttl = result["ttl"].as_u64().expect("ttl");
    assert!((55..=60).contains(&ttl), "{refreshed}");
    assert_eq!(result["client"], client_id, "{refreshed}");

    // Past the first expiry plus the close delay (at most 3 s from connect), still open.
    let wait_until = std::time::UNIX_EPOCH + Duration::from_secs(first_exp as u64 + 2);
    let wait = wait_until
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default()
        + Duration::from_millis(500);
    assert!(
        ws.next_frame_within(wait).await.is_none(),
        "the refreshed connection must stay open"
    );
    ws.assert_alive().await;
}

#[tokio::test]
async fn refresh_with_another_users_token_closes_3500() {
    let server = Server::start(json!({})).await;
    let mut ws = server.ws().await;
    ws.connect(&token_exp("alice", unix_now() + 60)).await;
    ws.send(&json!({"id": 2, "refresh": {"token": token_exp("mallory", unix_now() + 60)}}))
        .await;
    assert_eq!(ws.expect_close().await.0, 3500);
}

#[tokio::test]
async fn refresh_with_expired_token_answers_109() {
    let server = Server::start(json!({})).await;
    let mut ws = server.ws().await;
    ws.connect(&token_exp("alice", unix_now() + 60)).await;
    let reply = ws
        .call(json!({"refresh": {"token": token_exp("alice", unix_now() - 10)}}))
        .await;
    assert_error(&reply, 109);
    ws.assert_alive().await;
}

#[tokio::test]
async fn a_token_expiring_in_the_far_future_connects_and_stays() {
    // Any `exp` a token can carry must work: one beyond what a clock can represent is as good
    // as never, not a crash of the connection.
    let server = Server::start(json!({})).await;
    let far = (unix_now() + 400 * 365 * 24 * 3600) as u64;
    for exp in [u64::MAX, i64::MAX as u64, far] {
        let token = herald::auth::sign_hs256(&json!({"sub": "alice", "exp": exp}), SECRET)
            .expect("sign token");
        let mut ws = server.ws().await;
        let reply = ws.connect(&token).await;
        assert_eq!(reply["connect"]["expires"], true, "{reply}");
        ws.assert_alive().await;
        let pong = ws
            .call(json!({"presence_stats": {"channel": "nothing"}}))
            .await;
        assert!(
            pong.get("id").is_some(),
            "the connection still answers: {pong}"
        );
    }
}
