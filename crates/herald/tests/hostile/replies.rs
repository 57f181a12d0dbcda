//! Replies made of stored content (a `history` page, a recovery) must never be larger than
//! the client's byte budget (`client.queue_max_size`): such a reply closed the client with
//! 3008, the SDK reconnected, got the same reply and was closed again — so anyone who could
//! publish into a channel could lock its subscribers out of it (issue 18, Medium-5).
//!
//! Each test fills a channel's history with large publications and checks that the history
//! pages, the recovery answers `recovered: false` when the missed publications do not fit, and
//! the client stays connected.

use serde_json::{Value, json};

use crate::common::{self, Frame, STEP, Server, Ws};

/// Bytes of each publication's text in the 64 KiB tests.
const TEN_KB: usize = 10_000;
/// The client byte budget of the small-budget tests.
const QUEUE: usize = 64 * 1024;

/// A server with a 64 KiB client queue and a namespace `inbox` of user-limited, recoverable
/// channels with history, as the demo's inboxes.
async fn small_queue_server() -> Server {
    Server::start(json!({
        "client": {
            "queue_max_size": QUEUE,
            "recovery_max_publication_limit": 1000,
            "history_max_publication_limit": 1000
        },
        "channel": {"namespaces": [{
            "name": "inbox",
            "allow_user_limited_channels": true,
            "allow_publish_for_client": true,
            "allow_history_for_subscriber": true,
            "history_size": 1000,
            "history_ttl": "720h",
            "force_recovery": true
        }]}
    }))
    .await
}

/// Publishes `count` publications of `len` bytes of text into `channel` through the server
/// API; returns the stream's epoch.
async fn fill(server: &Server, channel: &str, count: usize, len: usize) -> String {
    let mut epoch = String::new();
    for i in 0..count {
        let text = format!("{i:04}{}", "x".repeat(len - 4));
        let result = server
            .api_ok(
                "publish",
                json!({"channel": channel, "data": {"text": text}}),
            )
            .await;
        assert!(result["offset"].as_u64().is_some(), "not stored: {result}");
        epoch = result["epoch"].as_str().unwrap_or_default().to_owned();
    }
    epoch
}

/// Sends `command` with `id` and returns the reply and the length of the frame it came in;
/// fails if the connection is closed instead (3008 before the fix).
async fn call_sized(ws: &mut Ws, id: u32, mut command: Value) -> (Value, usize) {
    command["id"] = json!(id);
    ws.send(&command).await;
    loop {
        match ws.next_frame().await {
            Frame::Text(text) => {
                if let Some(reply) = common::split_values(&text)
                    .into_iter()
                    .find(|v| v["id"] == id)
                {
                    return (reply, text.len());
                }
            }
            other => panic!("waiting for the reply to {command}, got {other:?}"),
        }
    }
}

/// The offsets of a reply's publications.
fn offsets(publications: &Value) -> Vec<u64> {
    publications
        .as_array()
        .map(|p| p.iter().filter_map(|p| p["offset"].as_u64()).collect())
        .unwrap_or_default()
}

/// (a) `history` with a large limit on 200 KB of publications answers a shorter page that
/// fits the 64 KiB queue, and paging with `since` reads all 20, in order, once.
#[tokio::test]
async fn history_pages_instead_of_closing_the_client() {
    let server = small_queue_server().await;
    let channel = "inbox:#alice";
    let epoch = fill(&server, channel, 20, TEN_KB).await;
    let mut alice = server.client("alice").await;
    alice.subscribe_ok(channel).await;

    let mut seen = Vec::new();
    let mut since = json!(null);
    let mut pages = 0;
    let mut id = 100;
    while seen.last() != Some(&20) {
        pages += 1;
        assert!(pages <= 20, "no progress paging: {seen:?}");
        id += 1;
        let mut history = json!({"channel": channel, "limit": 1000});
        if !since.is_null() {
            history["since"] = since.clone();
        }
        let (reply, frame_len) = call_sized(&mut alice, id, json!({"history": history})).await;
        assert!(reply.get("error").is_none(), "{reply}");
        assert!(
            frame_len <= QUEUE,
            "a {frame_len}-byte reply for a {QUEUE}-byte queue"
        );
        let result = &reply["history"];
        assert_eq!(result["offset"], 20, "{result}");
        assert_eq!(result["epoch"], epoch.as_str());
        let page = offsets(&result["publications"]);
        assert!(!page.is_empty(), "an empty page before the top: {reply}");
        assert!(
            page.len() < 20,
            "the whole 200 KB in one page: {}",
            page.len()
        );
        seen.extend(&page);
        since = json!({"offset": page[page.len() - 1], "epoch": epoch});
    }
    assert_eq!(seen, (1..=20).collect::<Vec<u64>>());
    assert!(pages >= 4, "20 x 10 KB in {pages} pages of at most 32 KiB");
    alice.assert_alive().await;

    // Newest first, too: the page starts at the top.
    let (reply, _) = call_sized(
        &mut alice,
        999,
        json!({"history": {"channel": channel, "limit": -1, "reverse": true}}),
    )
    .await;
    let page = offsets(&reply["history"]["publications"]);
    assert!(!page.is_empty() && page.len() < 20, "{page:?}");
    assert_eq!(page[0], 20);
    alice.assert_alive().await;
}

/// (b) A subscribe recovering from offset 0 (all 20 publications, 200 KB) is answered
/// `recovered: false` with the stream's position, and the client stays connected; a recovery
/// that fits (two publications) is still answered in full.
#[tokio::test]
async fn a_recovery_that_does_not_fit_is_answered_unrecovered() {
    let server = small_queue_server().await;
    let channel = "inbox:#alice";
    let epoch = fill(&server, channel, 20, TEN_KB).await;
    let mut alice = server.client("alice").await;
    let (reply, _) = call_sized(
        &mut alice,
        10,
        json!({"subscribe": {"channel": channel, "recover": true, "offset": 0, "epoch": ""}}),
    )
    .await;
    let result = &reply["subscribe"];
    assert_eq!(result["was_recovering"], true, "{reply}");
    assert!(result.get("recovered").is_none(), "recovered: {reply}");
    assert_eq!(result["offset"], 20, "{reply}");
    assert_eq!(result["epoch"], epoch.as_str(), "{reply}");
    assert!(result.get("publications").is_none(), "{reply}");
    alice.assert_alive().await;
    // Live publications still arrive, from offset 21.
    server
        .api_ok("publish", json!({"channel": channel, "data": {"live": 1}}))
        .await;
    let push = alice.next_push().await;
    assert_eq!(push["push"]["pub"]["offset"], 21, "{push}");

    // Two missed publications (20 KB) fit, and are recovered.
    let mut again = server.client("alice").await;
    let (reply, _) = call_sized(
        &mut again,
        10,
        json!({"subscribe": {"channel": channel, "recover": true, "offset": 19, "epoch": epoch}}),
    )
    .await;
    let result = &reply["subscribe"];
    assert_eq!(result["recovered"], true, "{reply}");
    assert_eq!(offsets(&result["publications"]), vec![20, 21], "{reply}");
    again.assert_alive().await;
}

/// (b) The same for a server-side subscription recovering through `connect.subs`: the
/// connect reply says `recovered: false` instead of closing the client.
#[tokio::test]
async fn a_server_side_recovery_that_does_not_fit_is_answered_unrecovered() {
    let server = small_queue_server().await;
    let channel = "inbox:#alice";
    let epoch = fill(&server, channel, 20, TEN_KB).await;
    let token = herald::auth::sign_hs256(
        &json!({"sub": "alice", "channels": [channel]}),
        common::SECRET,
    )
    .expect("sign token");
    let mut alice = server.ws().await;
    let (reply, frame_len) = call_sized(
        &mut alice,
        1,
        json!({"connect": {"token": token, "subs": {channel: {"recover": true, "offset": 0, "epoch": ""}}}}),
    )
    .await;
    assert!(frame_len <= QUEUE, "{frame_len}");
    let sub = &reply["connect"]["subs"][channel];
    assert_eq!(sub["was_recovering"], true, "{reply}");
    assert!(sub.get("recovered").is_none(), "{reply}");
    assert_eq!(sub["offset"], 20, "{reply}");
    assert_eq!(sub["epoch"], epoch.as_str(), "{reply}");
    alice.assert_alive().await;
}

/// (c) The demo-style lockout: in demo mode any user may write into `inbox:#bob`; mallory
/// fills it with 20 publications of 60 KB (1.2 MB, over the default 1 MiB queue). Bob can
/// still subscribe the way the chat does (recover from offset 0, then a newest-first history
/// page), twice in a row, without being closed.
#[tokio::test]
async fn a_filled_inbox_cannot_lock_its_owner_out() {
    let server = Server::start(json!({"demo": true})).await;
    let inbox = "inbox:#bob";
    let mut mallory = server.client("mallory").await;
    let big = "m".repeat(60_000);
    for i in 0..20 {
        let reply = mallory.publish(inbox, json!({"text": big, "n": i})).await;
        assert!(reply.get("error").is_none(), "publish {i}: {reply}");
    }
    for attempt in 0..2 {
        let mut bob = server.client("bob").await;
        let (reply, frame_len) = call_sized(
            &mut bob,
            10,
            json!({"subscribe": {"channel": inbox, "recover": true, "offset": 0, "epoch": ""}}),
        )
        .await;
        assert!(reply.get("error").is_none(), "attempt {attempt}: {reply}");
        assert!(frame_len <= 1 << 20, "{frame_len}");
        assert_eq!(reply["subscribe"]["was_recovering"], true, "{reply}");
        assert!(reply["subscribe"].get("recovered").is_none(), "{reply}");
        assert_eq!(reply["subscribe"]["offset"], 20, "{reply}");
        let (reply, _) = call_sized(
            &mut bob,
            11,
            json!({"history": {"channel": inbox, "limit": 200, "reverse": true}}),
        )
        .await;
        let page = offsets(&reply["history"]["publications"]);
        assert!(
            !page.is_empty() && page.len() < 20 && page[0] == 20,
            "attempt {attempt}: {page:?} {}",
            reply.get("error").unwrap_or(&Value::Null)
        );
        bob.assert_alive().await;
        assert!(
            bob.next_frame_within(STEP / 10).await.is_none(),
            "bob got something more"
        );
    }
}

/// A publication larger than the whole 64 KiB budget can never be sent to this client: its
/// `history` is error 106 (not an empty page, which would read as the end of the stream),
/// the client stays connected, and the publications after it can still be read.
#[tokio::test]
async fn history_of_a_publication_over_the_budget_is_an_error_not_a_close() {
    let server = small_queue_server().await;
    let channel = "inbox:#alice";
    fill(&server, channel, 1, 70_000).await;
    let epoch = fill(&server, channel, 1, TEN_KB).await;
    let mut alice = server.client("alice").await;
    alice.subscribe_ok(channel).await;
    let (reply, _) = call_sized(
        &mut alice,
        20,
        json!({"history": {"channel": channel, "limit": 10}}),
    )
    .await;
    common::assert_error(&reply, 106);
    alice.assert_alive().await;
    let (reply, _) = call_sized(
        &mut alice,
        21,
        json!({"history": {"channel": channel, "limit": 10, "since": {"offset": 1, "epoch": epoch}}}),
    )
    .await;
    assert_eq!(
        offsets(&reply["history"]["publications"]),
        vec![2],
        "{reply}"
    );
}
