//! Durable history through the real server: offsets and epochs on publish, the `history`
//! command and API, exact recovery after a disconnect and after a restart, the offline inbox,
//! ordered delivery under concurrent publishers, and idempotent publishes.
//!
//! Every test runs against both engines (`embedded::…` and `redis::…`, see [`both_engines!`]):
//! history, recovery and positioning must behave the same whichever keeps the streams.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// The engine a test runs against, with what it needs kept alive.
enum Engine {
    /// The embedded engine, its history in this directory.
    Embedded(tempfile::TempDir),
    /// The Redis engine on this Redis.
    Redis(common::redis::RedisServer),
}

impl Engine {
    fn embedded() -> Engine {
        Engine::Embedded(tempfile::tempdir().unwrap())
    }

    fn redis() -> Engine {
        Engine::Redis(common::redis::RedisServer::start())
    }

    /// `patch` (namespaces and the like) with this engine's settings.
    fn with(&self, mut patch: Value) -> Value {
        let engine = match self {
            Engine::Embedded(dir) => json!({"data_dir": dir.path()}),
            Engine::Redis(redis) => json!({"engine": {"type": "redis", "redis": {
                "address": redis.url(), "io_timeout": "2s"}}}),
        };
        merge(&mut patch, engine);
        patch
    }

    /// A config whose `chat` and `inbox` namespaces keep history.
    fn config(&self, history_size: u64) -> Value {
        self.with(json!({
            "channel": {"namespaces": [
                {"name": "chat", "allow_subscribe_for_client": true, "allow_publish_for_client": true,
                 "allow_history_for_client": true, "history_size": history_size,
                 "history_ttl": "1h", "force_recovery": true},
                {"name": "inbox", "allow_user_limited_channels": true, "allow_publish_for_client": true,
                 "history_size": 1000, "history_ttl": "720h", "force_recovery": true}
            ]}
        }))
    }
}

/// Runs each named test (an `async fn(Engine)`) once per engine, as `embedded::NAME` and
/// `redis::NAME`.
macro_rules! both_engines {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Engine::embedded()).await
            })*
        }
        mod redis {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Engine::redis()).await
            })*
        }
    };
}

async fn publish(server: &Server, channel: &str, n: u64) -> Value {
    server
        .api_ok("publish", json!({"channel": channel, "data": {"n": n}}))
        .await
}

fn offsets(publications: &Value) -> Vec<u64> {
    publications
        .as_array()
        .map(|list| {
            list.iter()
                .map(|p| p["offset"].as_u64().unwrap_or(0))
                .collect()
        })
        .unwrap_or_default()
}

async fn publish_assigns_offsets_and_history_returns_them(engine: Engine) {
    let server = Server::start(engine.config(100)).await;
    let first = publish(&server, "chat:1", 1).await;
    assert_eq!(first["offset"], 1, "{first}");
    let epoch = first["epoch"].as_str().unwrap().to_owned();
    assert!(!epoch.is_empty());
    for n in 2..=5 {
        let result = publish(&server, "chat:1", n).await;
        assert_eq!(result["offset"], n);
        assert_eq!(result["epoch"], epoch.as_str());
    }
    let page = server
        .api_ok("history", json!({"channel": "chat:1", "limit": -1}))
        .await;
    assert_eq!(offsets(&page["publications"]), vec![1, 2, 3, 4, 5]);
    assert_eq!(page["epoch"], epoch.as_str());
    assert_eq!(page["offset"], 5);
    let page = server
        .api_ok(
            "history",
            json!({"channel": "chat:1", "limit": 2, "since": {"offset": 2, "epoch": epoch}}),
        )
        .await;
    assert_eq!(offsets(&page["publications"]), vec![3, 4]);
    let reverse = server
        .api_ok(
            "history",
            json!({"channel": "chat:1", "limit": 2, "reverse": true}),
        )
        .await;
    assert_eq!(offsets(&reverse["publications"]), vec![5, 4]);
    // A wrong epoch is 112; a namespace without history is 108.
    let wrong = server
        .api(
            "history",
            json!({"channel": "chat:1", "since": {"offset": 1, "epoch": "nope"}}),
        )
        .await
        .json();
    assert_eq!(wrong["error"]["code"], 112, "{wrong}");
    let none = server
        .api("history", json!({"channel": "news"}))
        .await
        .json();
    assert_eq!(none["error"]["code"], 108, "{none}");

    // The client command sees the same stream.
    let mut ws = server.client("alice").await;
    let reply = ws
        .call(json!({"history": {"channel": "chat:1", "limit": 10}}))
        .await;
    assert_eq!(
        offsets(&reply["history"]["publications"]),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(reply["history"]["epoch"], epoch.as_str());
}

async fn a_reconnecting_client_recovers_exactly_what_it_missed(engine: Engine) {
    let server = Server::start(engine.config(100)).await;
    publish(&server, "chat:r", 1).await;
    let mut ws = server.client("bob").await;
    let reply = ws.subscribe("chat:r").await;
    let sub = &reply["subscribe"];
    assert_eq!(sub["recoverable"], true, "{reply}");
    assert_eq!(sub["offset"], 1);
    let epoch = sub["epoch"].as_str().unwrap().to_owned();
    drop(ws);
    for n in 2..=6 {
        publish(&server, "chat:r", n).await;
    }
    let mut ws = server.client("bob").await;
    let reply = ws
        .call(json!({"subscribe": {"channel": "chat:r", "recover": true, "offset": 1, "epoch": epoch}}))
        .await;
    let sub = &reply["subscribe"];
    assert_eq!(sub["recovered"], true, "{reply}");
    assert_eq!(sub["was_recovering"], true);
    assert_eq!(offsets(&sub["publications"]), vec![2, 3, 4, 5, 6]);
    assert_eq!(sub["publications"][0]["data"], json!({"n": 2}));
    // Live publications continue after the recovered ones, once each.
    publish(&server, "chat:r", 7).await;
    let push = ws.next_push().await;
    assert_eq!(push["push"]["pub"]["offset"], 7, "{push}");
    assert!(
        ws.next_push_within(Duration::from_millis(300))
            .await
            .is_none()
    );
}

async fn a_gap_larger_than_the_history_is_not_recovered(engine: Engine) {
    let server = Server::start(engine.config(3)).await;
    let first = publish(&server, "chat:g", 1).await;
    let epoch = first["epoch"].as_str().unwrap().to_owned();
    for n in 2..=10 {
        publish(&server, "chat:g", n).await;
    }
    let mut ws = server.client("bob").await;
    let reply = ws
        .call(json!({"subscribe": {"channel": "chat:g", "recover": true, "offset": 1, "epoch": epoch}}))
        .await;
    let sub = &reply["subscribe"];
    assert_eq!(
        sub["recovered"],
        Value::Null,
        "recovered is false (omitted): {reply}"
    );
    assert_eq!(sub["publications"], Value::Null, "no partial set: {reply}");
    assert_eq!(sub["offset"], 10);
    let page = server
        .api_ok("history", json!({"channel": "chat:g", "limit": -1}))
        .await;
    assert_eq!(offsets(&page["publications"]), vec![8, 9, 10]);
    // Paging on from a trimmed position is 112, not a page with a silent gap…
    let trimmed = server
        .api(
            "history",
            json!({"channel": "chat:g", "since": {"offset": 2, "epoch": epoch}, "limit": 5}),
        )
        .await
        .json();
    assert_eq!(trimmed["error"]["code"], 112, "{trimmed}");
    // …while from a retained one it works.
    let page = server
        .api_ok(
            "history",
            json!({"channel": "chat:g", "since": {"offset": 8, "epoch": epoch}, "limit": 5}),
        )
        .await;
    assert_eq!(offsets(&page["publications"]), vec![9, 10]);
}

async fn recovery_and_offsets_survive_a_restart(engine: Engine) {
    let config = engine.config(100);
    let mut server = Server::start(config.clone()).await;
    let first = publish(&server, "chat:s", 1).await;
    let epoch = first["epoch"].as_str().unwrap().to_owned();
    publish(&server, "chat:s", 2).await;
    // kill -9: acknowledged publications are on disk.
    unsafe { libc::kill(server.pid() as i32, libc::SIGKILL) };
    server.wait_exit(Duration::from_secs(10)).await;
    let server = Server::start(config).await;
    let third = publish(&server, "chat:s", 3).await;
    assert_eq!(third["offset"], 3, "offsets continue: {third}");
    assert_eq!(third["epoch"], epoch.as_str(), "same stream");
    let mut ws = server.client("bob").await;
    let reply = ws
        .call(json!({"subscribe": {"channel": "chat:s", "recover": true, "offset": 1, "epoch": epoch}}))
        .await;
    assert_eq!(reply["subscribe"]["recovered"], true, "{reply}");
    assert_eq!(offsets(&reply["subscribe"]["publications"]), vec![2, 3]);
}

async fn the_offline_inbox_delivers_everything_once_in_order(engine: Engine) {
    let server = Server::start(engine.config(100)).await;
    let mut alice = server.client("alice").await;
    for n in 1..=20 {
        let reply = alice.publish("inbox:#bob", json!({"text": n})).await;
        assert!(reply.get("error").is_none(), "{reply}");
    }
    // Only bob may read his inbox.
    assert_error(&alice.subscribe("inbox:#bob").await, 103);
    // Bob was never connected: he asks for everything since the start of the stream.
    let mut bob = server.client("bob").await;
    let reply = bob
        .call(json!({"subscribe": {"channel": "inbox:#bob", "recover": true, "offset": 0, "epoch": ""}}))
        .await;
    let sub = &reply["subscribe"];
    assert_eq!(sub["recovered"], true, "{reply}");
    assert_eq!(
        offsets(&sub["publications"]),
        (1..=20).collect::<Vec<u64>>()
    );
    assert_eq!(sub["publications"][19]["data"], json!({"text": 20}));
    assert_eq!(sub["publications"][0]["info"]["user"], "alice");
}

async fn concurrent_publishers_are_delivered_in_offset_order(engine: Engine) {
    let server = Server::start(engine.config(1000)).await;
    let mut ws = server.client("bob").await;
    ws.subscribe_ok("chat:o").await;
    let port = server.port;
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            tokio::spawn(async move {
                for n in 0..25 {
                    let body = json!({"channel": "chat:o", "data": {"t": t, "n": n}}).to_string();
                    let response = http(
                        port,
                        "POST",
                        "/api/publish",
                        &[("X-API-Key", API_KEY), ("Content-Type", "application/json")],
                        Some(body.as_bytes()),
                    )
                    .await;
                    assert!(response.json().get("result").is_some());
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let mut seen = Vec::new();
    while seen.len() < 200 {
        let push = ws.next_push().await;
        seen.push(push["push"]["pub"]["offset"].as_u64().unwrap());
    }
    assert_eq!(seen, (1..=200).collect::<Vec<u64>>());
}

async fn an_idempotent_retry_is_stored_and_delivered_once(engine: Engine) {
    let server = Server::start(engine.config(100)).await;
    let mut ws = server.client("bob").await;
    ws.subscribe_ok("chat:i").await;
    let body = json!({"channel": "chat:i", "data": {"n": 1}, "idempotency_key": "order-1"});
    let first = server.api_ok("publish", body.clone()).await;
    let retry = server.api_ok("publish", body).await;
    assert_eq!(first, retry);
    assert_eq!(ws.next_push().await["push"]["pub"]["offset"], 1);
    assert!(
        ws.next_push_within(Duration::from_millis(300))
            .await
            .is_none()
    );
}

async fn server_side_subscriptions_recover_through_connect(engine: Engine) {
    let server = Server::start(engine.config(100)).await;
    let token =
        herald::auth::sign_hs256(&json!({"sub": "carol", "channels": ["chat:srv"]}), SECRET)
            .unwrap();
    publish(&server, "chat:srv", 1).await;
    let mut ws = server.ws().await;
    let reply = ws.connect(&token).await;
    let sub = &reply["connect"]["subs"]["chat:srv"];
    assert_eq!(sub["recoverable"], true, "{reply}");
    assert_eq!(sub["offset"], 1);
    let epoch = sub["epoch"].as_str().unwrap().to_owned();
    drop(ws);
    for n in 2..=4 {
        publish(&server, "chat:srv", n).await;
    }
    let mut ws = server.ws().await;
    let reply = ws
        .call(json!({"connect": {"token": token, "subs": {
            "chat:srv": {"recover": true, "offset": 1, "epoch": epoch}
        }}}))
        .await;
    let sub = &reply["connect"]["subs"]["chat:srv"];
    assert_eq!(sub["recovered"], true, "{reply}");
    assert_eq!(offsets(&sub["publications"]), vec![2, 3, 4]);
    publish(&server, "chat:srv", 5).await;
    assert_eq!(ws.next_push().await["push"]["pub"]["offset"], 5);
}

async fn an_idempotent_retry_without_history_is_delivered_once(engine: Engine) {
    let server = Server::start(engine.config(100)).await;
    let mut ws = server.client("bob").await;
    ws.subscribe_ok("news").await;
    let body = json!({"channel": "news", "data": {"n": 1}, "idempotency_key": "k-1"});
    server.api_ok("publish", body.clone()).await;
    server.api_ok("publish", body).await;
    assert_eq!(ws.next_push().await["push"]["pub"]["data"], json!({"n": 1}));
    assert!(
        ws.next_push_within(Duration::from_millis(300))
            .await
            .is_none()
    );
}

async fn reject_unrecovered_answers_112_instead_of_recovered_false(engine: Engine) {
    // The SDKs' getState flow sets bit 2 of the subscribe flag (value 2): a position that
    // cannot be recovered is error 112, so that the SDK reloads its state and subscribes
    // again, instead of a subscription that silently misses publications.
    let server = Server::start(engine.config(3)).await;
    let first = publish(&server, "chat:g", 1).await;
    let epoch = first["epoch"].as_str().unwrap().to_owned();
    for n in 2..=10 {
        publish(&server, "chat:g", n).await;
    }
    let mut ws = server.client("bob").await;
    let subscribe = |offset: u64, epoch: &str, flag: u64| {
        json!({"subscribe": {"channel": "chat:g", "recover": true, "offset": offset,
                              "epoch": epoch, "flag": flag}})
    };
    // Trimmed away (offset 1 of 10 with 3 kept), with the flag (and with channel compaction,
    // bit 1, which the SDKs always set): 112, and not subscribed.
    let reply = ws.call(subscribe(1, &epoch, 3)).await;
    assert_error(&reply, 112);
    assert_eq!(reply["error"]["message"], "unrecoverable position");
    ws.assert_alive().await;
    // Another epoch is unrecoverable as well.
    assert_error(&ws.call(subscribe(9, "other-epoch", 2)).await, 112);
    // From the position the app reloaded (the top), the subscription works and gets what
    // follows.
    let reply = ws.call(subscribe(10, &epoch, 3)).await;
    assert_eq!(reply["subscribe"]["recovered"], true, "{reply}");
    publish(&server, "chat:g", 11).await;
    let push = ws.next_push().await;
    assert_eq!(push["push"]["pub"]["offset"], 11, "{push}");
    // Without the flag, the old answer: subscribed, recovered: false.
    let mut other = server.client("carol").await;
    let reply = other.call(subscribe(1, &epoch, 1)).await;
    assert!(reply["subscribe"].is_object(), "{reply}");
    assert_eq!(reply["subscribe"]["was_recovering"], true, "{reply}");
    assert_eq!(reply["subscribe"]["recovered"], Value::Null, "{reply}");
}

async fn cache_recovery_mode_sends_the_latest_publication(engine: Engine) {
    // force_recovery_mode "cache": a recovering subscriber gets the channel's latest
    // publication (its current state), not the stream of what it missed.
    let server = Server::start(engine.with(json!({
        "channel": {"namespaces": [
            {"name": "state", "allow_subscribe_for_client": true, "history_size": 10,
             "history_ttl": "1h", "force_recovery": true, "force_recovery_mode": "cache"}
        ]}
    })))
    .await;
    let mut ws = server.client("bob").await;
    // An empty channel: nothing to recover, not recovered.
    let reply = ws
        .call(json!({"subscribe": {"channel": "state:empty", "recover": true}}))
        .await;
    assert_eq!(reply["subscribe"]["was_recovering"], true, "{reply}");
    assert_eq!(reply["subscribe"]["recovered"], Value::Null, "{reply}");
    assert_eq!(reply["subscribe"]["publications"], Value::Null, "{reply}");
    let empty_epoch = reply["subscribe"]["epoch"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(!empty_epoch.is_empty(), "{reply}");
    let published = publish(&server, "state:empty", 1).await;
    assert_eq!(
        published["epoch"],
        empty_epoch.as_str(),
        "the epoch given out stays"
    );

    let first = publish(&server, "state:1", 1).await;
    let epoch = first["epoch"].as_str().unwrap().to_owned();
    for n in 2..=5 {
        publish(&server, "state:1", n).await;
    }
    // From the start, or from a position 3 behind: only the latest publication.
    for (offset, epoch) in [(0, ""), (2, epoch.as_str()), (2, "another-epoch")] {
        let mut ws = server.client("bob").await;
        let reply = ws
            .call(json!({"subscribe": {"channel": "state:1", "recover": true,
                                        "offset": offset, "epoch": epoch}}))
            .await;
        let sub = &reply["subscribe"];
        assert_eq!(sub["recovered"], true, "{reply}");
        assert_eq!(sub["was_recovering"], true, "{reply}");
        assert_eq!(offsets(&sub["publications"]), vec![5], "{reply}");
        assert_eq!(sub["publications"][0]["data"], json!({"n": 5}), "{reply}");
        assert_eq!(sub["offset"], 5, "{reply}");
    }
    // A client that has the latest already gets nothing again.
    let mut ws = server.client("bob").await;
    let reply = ws
        .call(json!({"subscribe": {"channel": "state:1", "recover": true,
                                    "offset": 5, "epoch": epoch}}))
        .await;
    assert_eq!(reply["subscribe"]["recovered"], true, "{reply}");
    assert_eq!(reply["subscribe"]["publications"], Value::Null, "{reply}");
    // Live publications follow as usual.
    publish(&server, "state:1", 6).await;
    assert_eq!(ws.next_push().await["push"]["pub"]["offset"], 6);
}

async fn auto_cache_recover_sends_the_latest_publication_without_being_asked(engine: Engine) {
    let server = Server::start(engine.with(json!({
        "channel": {"namespaces": [
            {"name": "state", "allow_subscribe_for_client": true, "history_size": 10,
             "history_ttl": "1h", "force_recovery": true, "force_recovery_mode": "cache",
             "auto_cache_recover": true}
        ]}
    })))
    .await;
    for n in 1..=3 {
        publish(&server, "state:1", n).await;
    }
    // A plain subscribe, as a client that knows no position makes it.
    let mut ws = server.client("bob").await;
    let reply = ws.subscribe("state:1").await;
    let sub = &reply["subscribe"];
    assert_eq!(sub["was_recovering"], true, "{reply}");
    assert_eq!(sub["recovered"], true, "{reply}");
    assert_eq!(offsets(&sub["publications"]), vec![3], "{reply}");
}

/// JSON whose exact bytes a parser would change: unicode and control escapes, an escaped `/`,
/// numbers beyond f64 (and -0.0, 1E+300), deep nesting, and insignificant spaces.
const ODD_JSON: &str = r#"{ "s" : "caf\u00e9 \ud83d\ude00 \"q\" \\ \/ \t", "big":123456789012345678901234567890, "f":[-0.0,1E+300,0.10], "deep":{"a":[{"b":[[],{},null,true]}]} }"#;

/// The publication data in a text frame, as its bytes: what follows `"data":` up to the
/// `"info"` or `"offset"` field that the server writes after it.
fn data_bytes(frame: &str) -> &str {
    let start = frame.find(r#""data":"#).expect("a publication") + 7;
    let rest = &frame[start..];
    let end = [r#","info":"#, r#","offset":"#]
        .iter()
        .filter_map(|next| rest.find(next))
        .min()
        .expect("a field after the data");
    &rest[..end]
}

async fn odd_but_valid_json_comes_back_byte_identical_live_from_history_and_after_a_restart(
    engine: Engine,
) {
    let config = engine.config(100);
    let mut server = Server::start(config.clone()).await;
    let mut reader = server.client("ann").await;
    reader.subscribe_ok("chat:odd").await;
    let mut writer = server.client("bob").await;
    writer
        .send_text(&format!(
            r#"{{"id":7,"publish":{{"channel":"chat:odd","data":{ODD_JSON}}}}}"#
        ))
        .await;
    assert_eq!(writer.reply_to(7).await["publish"], json!({}));

    // Live delivery.
    let Frame::Text(live) = reader.next_frame().await else {
        panic!("expected the publication");
    };
    assert_eq!(data_bytes(&live), ODD_JSON, "{live}");

    // History, through the client command.
    reader
        .send_text(r#"{"id":3,"history":{"channel":"chat:odd","limit":10}}"#)
        .await;
    let Frame::Text(page) = reader.next_frame().await else {
        panic!("expected the history reply");
    };
    assert_eq!(data_bytes(&page), ODD_JSON, "{page}");
    let epoch = split_values(&page)[0]["history"]["epoch"]
        .as_str()
        .unwrap()
        .to_owned();

    // Recovery, after a kill -9 and a restart: read back from the database.
    unsafe { libc::kill(server.pid() as i32, libc::SIGKILL) };
    server.wait_exit(Duration::from_secs(10)).await;
    let server = Server::start(config).await;
    let mut ws = server.client("ann").await;
    ws.send_text(&format!(
        r#"{{"id":4,"subscribe":{{"channel":"chat:odd","recover":true,"offset":0,"epoch":"{epoch}"}}}}"#
    ))
    .await;
    let Frame::Text(recovered) = ws.next_frame().await else {
        panic!("expected the subscribe reply");
    };
    assert_eq!(
        split_values(&recovered)[0]["subscribe"]["recovered"],
        true,
        "{recovered}"
    );
    assert_eq!(data_bytes(&recovered), ODD_JSON, "{recovered}");
}

both_engines!(
    publish_assigns_offsets_and_history_returns_them,
    a_reconnecting_client_recovers_exactly_what_it_missed,
    a_gap_larger_than_the_history_is_not_recovered,
    recovery_and_offsets_survive_a_restart,
    the_offline_inbox_delivers_everything_once_in_order,
    concurrent_publishers_are_delivered_in_offset_order,
    an_idempotent_retry_is_stored_and_delivered_once,
    server_side_subscriptions_recover_through_connect,
    an_idempotent_retry_without_history_is_delivered_once,
    reject_unrecovered_answers_112_instead_of_recovered_false,
    cache_recovery_mode_sends_the_latest_publication,
    auto_cache_recover_sends_the_latest_publication_without_being_asked,
    odd_but_valid_json_comes_back_byte_identical_live_from_history_and_after_a_restart,
);
