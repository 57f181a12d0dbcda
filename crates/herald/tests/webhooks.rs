//! Webhooks end to end: the real `herald` binary POSTing to a real backend process
//! (`tests/support/webhook_backend.py`, which checks each batch's signature and records its
//! events to a file before answering 200). Online/offline with the grace period,
//! occupied/vacated, offline publications, a backend down for 10 s, `kill -9` of Herald with
//! events queued, and a backend with another secret.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{STEP, Server};
use serde_json::{Value, json};

/// The secret Herald and the backend share.
const HOOK_SECRET: &str = "webhook-test-secret";

/// A running `webhook_backend.py`, killed when dropped.
struct Backend {
    child: Child,
    port: u16,
}

impl Backend {
    /// Starts the backend on `port` (0: any free one) recording into `record`, checking
    /// signatures with `secret`.
    fn start(secret: &str, record: &Path, port: u16) -> Backend {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/support/webhook_backend.py"
        );
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--secret", secret, "--port", &port.to_string()])
            .arg("--record")
            .arg(record)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs tests/support/webhook_backend.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("the backend says where it listens");
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("backend printed {line:?}"));
        Backend { child, port }
    }

    /// Stops the process (the backend is then down: connections are refused).
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Tells the backend to answer the next `n` batches with 503.
    async fn fail_next(&self, n: u32) {
        let body = json!({ "fail": n }).to_string();
        let response = common::http(
            self.port,
            "POST",
            "/control",
            &[("Content-Type", "application/json")],
            Some(body.as_bytes()),
        )
        .await;
        assert_eq!(response.status, 200);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every line the backend recorded so far.
fn recorded(record: &Path) -> Vec<Value> {
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits (bounded by `within`) until the recorded lines satisfy `done`; returns them.
async fn wait_recorded(
    record: &Path,
    within: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let lines = recorded(record);
        if done(&lines) {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "not recorded within {within:?}; the backend has: {lines:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The recorded events of `kind`, as `(type, subject)` pairs where subject is user or channel.
fn of<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

fn summary(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.get("type").is_some())
        .map(|e| {
            let subject = e["user"].as_str().or(e["channel"].as_str()).unwrap_or("");
            format!("{} {subject}", e["type"].as_str().unwrap())
        })
        .collect()
}

/// Herald's config: webhooks to `endpoint`, a `dm` namespace of user-limited channels with
/// history, everything under `data_dir`.
fn config(endpoint: &str, data_dir: &Path, webhooks: Value) -> Value {
    let mut hooks = json!({
        "enabled": true,
        "endpoint": endpoint,
        "secret": HOOK_SECRET,
        "timeout": "2s",
        "offline_grace": "2s",
        "retry_min_backoff": "100ms",
        "retry_max_backoff": "1s",
    });
    common::merge(&mut hooks, webhooks);
    json!({
        "data_dir": data_dir,
        "webhooks": hooks,
        "channel": {"namespaces": [{
            "name": "dm",
            "allow_user_limited_channels": true,
            "history_size": 1000,
            "history_ttl": "300s"
        }]}
    })
}

/// A user's connection within the grace period makes no event at all; one after it makes
/// `user_offline` (after the grace period) and then `user_online` again.
#[tokio::test]
async fn online_offline_with_a_reconnect_inside_and_outside_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("events.jsonl");
    let backend = Backend::start(HOOK_SECRET, &record, 0);
    let server = Server::start(config(&backend.endpoint(), dir.path(), json!({}))).await;

    let alice = server.client("alice").await;
    let second = server.client("alice").await;
    let user = |events: &[Value]| -> Vec<String> {
        summary(events)
            .into_iter()
            .filter(|e| e.starts_with("user_"))
            .collect()
    };
    wait_recorded(&record, STEP, |e| user(e) == ["user_online alice"]).await;
    // The second connection went first: alice is still online.
    drop(second);
    drop(alice);
    // Back within the 2 s grace period: nothing at all.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let alice = server.client("alice").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(user(&recorded(&record)), ["user_online alice"]);
    // Gone for longer than the grace period: offline, then online when back.
    let gone = Instant::now();
    drop(alice);
    let events = wait_recorded(&record, Duration::from_secs(6), |e| user(e).len() == 2).await;
    assert!(
        gone.elapsed() >= Duration::from_millis(1900),
        "offline came before the grace period"
    );
    assert_eq!(user(&events), ["user_online alice", "user_offline alice"]);
    let _alice = server.client("alice").await;
    let events = wait_recorded(&record, STEP, |e| user(e).len() == 3).await;
    assert_eq!(
        user(&events),
        [
            "user_online alice",
            "user_offline alice",
            "user_online alice"
        ]
    );
    // Every event has a unique id and a time.
    let ids: std::collections::HashSet<_> = events.iter().map(|e| e["id"].clone()).collect();
    assert_eq!(ids.len(), events.len());
    assert!(events.iter().all(|e| e["time"].as_u64().unwrap() > 0));
}

/// A channel's first subscriber makes `channel_occupied`, its last one leaving
/// `channel_vacated` (with `vacated_grace` 0, at once); subscribers in between make nothing.
#[tokio::test]
async fn occupied_on_the_first_subscriber_vacated_after_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("events.jsonl");
    let backend = Backend::start(HOOK_SECRET, &record, 0);
    let server = Server::start(config(
        &backend.endpoint(),
        dir.path(),
        json!({"events": ["channel_occupied", "channel_vacated"]}),
    ))
    .await;
    let mut alice = server.client("alice").await;
    let bob = {
        let mut bob = server.client("bob").await;
        bob.subscribe_ok("news").await;
        bob
    };
    alice.subscribe_ok("news").await;
    wait_recorded(&record, STEP, |e| summary(e) == ["channel_occupied news"]).await;
    let reply = alice
        .call(json!({"unsubscribe": {"channel": "news"}}))
        .await;
    assert!(reply.get("error").is_none(), "{reply}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(summary(&recorded(&record)), ["channel_occupied news"]);
    // The last subscriber goes with its connection.
    drop(bob);
    let events = wait_recorded(&record, STEP, |e| e.len() == 2).await;
    assert_eq!(
        summary(&events),
        ["channel_occupied news", "channel_vacated news"]
    );
    // Only the kinds asked for: no user events.
    assert!(of(&events, "user_online").is_empty());
}

/// A publication into `dm:#alice,bob` while alice is subscribed and bob is connected but not
/// subscribed: one `offline_publication`, for bob, with the publication's offset, epoch, data
/// and publisher.
#[tokio::test]
async fn a_publication_to_a_user_without_a_subscription_is_an_offline_publication() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("events.jsonl");
    let backend = Backend::start(HOOK_SECRET, &record, 0);
    let mut patch = config(
        &backend.endpoint(),
        dir.path(),
        json!({"events": ["offline_publication"]}),
    );
    common::merge(
        &mut patch,
        json!({"channel": {"namespaces": [{
            "name": "dm",
            "allow_user_limited_channels": true,
            "allow_publish_for_client": true,
            "history_size": 1000,
            "history_ttl": "300s"
        }]}}),
    );
    let server = Server::start(patch).await;
    let mut alice = server.client("alice").await;
    alice.subscribe_ok("dm:#alice,bob").await;
    let _bob = server.client("bob").await;
    let reply = alice
        .publish("dm:#alice,bob", json!({"text": "are you there?"}))
        .await;
    assert!(reply.get("error").is_none(), "{reply}");
    wait_recorded(&record, STEP, |e| !e.is_empty()).await;
    // Time for an event for alice, if one were (wrongly) made.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = recorded(&record);
    assert_eq!(events.len(), 1, "alice is subscribed: no event for her");
    let event = &events[0];
    assert_eq!(event["type"], "offline_publication");
    assert_eq!(event["user"], "bob");
    assert_eq!(event["channel"], "dm:#alice,bob");
    assert_eq!(event["offset"], 1);
    assert!(!event["epoch"].as_str().unwrap().is_empty());
    assert_eq!(event["data"], json!({"text": "are you there?"}));
    assert_eq!(event["info"]["user"], "alice");
}

/// Publishes `n` publications into `dm:#carol` (nobody subscribed) through the API.
async fn publish_to_carol(server: &Server, range: std::ops::RangeInclusive<u64>) {
    for i in range {
        server
            .api_ok("publish", json!({"channel": "dm:#carol", "data": {"n": i}}))
            .await;
    }
}

/// The offsets of the `offline_publication` events recorded, in order.
fn offsets(events: &[Value]) -> Vec<u64> {
    of(events, "offline_publication")
        .iter()
        .map(|e| e["offset"].as_u64().unwrap())
        .collect()
}

/// A backend down for 10 s, then failing three batches, then up: every event arrives, once,
/// in order.
#[tokio::test]
async fn a_backend_down_for_10s_gets_every_event_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("events.jsonl");
    let mut backend = Backend::start(HOOK_SECRET, &record, 0);
    let port = backend.port;
    backend.stop();
    let server = Server::start(config(
        &backend.endpoint(),
        dir.path(),
        json!({"events": ["offline_publication"], "max_batch": 7}),
    ))
    .await;
    publish_to_carol(&server, 1..=30).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(recorded(&record).is_empty());
    assert!(
        server
            .metric("herald_webhook_posts_failed_total")
            .await
            .unwrap()
            >= 3.0,
        "retried while down"
    );
    assert_eq!(
        server.metric("herald_webhook_events_queued").await,
        Some(30.0)
    );
    let backend = Backend::start(HOOK_SECRET, &record, port);
    backend.fail_next(3).await;
    publish_to_carol(&server, 31..=40).await;
    wait_recorded(&record, Duration::from_secs(15), |e| e.len() >= 40).await;
    // Time for a duplicate, if one were (wrongly) sent.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = recorded(&record);
    assert_eq!(offsets(&events), (1..=40).collect::<Vec<_>>());
    let ids: std::collections::HashSet<_> = events.iter().map(|e| e["id"].clone()).collect();
    assert_eq!(ids.len(), 40, "no event twice");
    assert_eq!(
        server.metric("herald_webhook_events_queued").await,
        Some(0.0)
    );
    assert_eq!(
        server.metric("herald_webhook_events_delivered_total").await,
        Some(40.0)
    );
}

/// Events queued while the backend is down survive `kill -9` of Herald; so does what Herald
/// owes for the users it announced online: after the restart, with the backend up, every
/// queued event arrives in order, then `user_offline` for the user who never came back.
#[tokio::test]
async fn events_queued_at_kill_9_are_delivered_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("events.jsonl");
    let mut backend = Backend::start(HOOK_SECRET, &record, 0);
    let port = backend.port;
    backend.stop();
    let data_dir = dir.path().join("data");
    let config = config(&backend.endpoint(), &data_dir, json!({}));
    let mut server = Server::start(config.clone()).await;
    let alice = server.client("alice").await;
    publish_to_carol(&server, 1..=25).await;
    // user_online alice + 25 publications, all in the queue file.
    let deadline = Instant::now() + STEP;
    while server.metric("herald_webhook_events_queued").await != Some(26.0) {
        assert!(Instant::now() < deadline, "events not queued");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // SAFETY: kill(2) on the pid of our own child process.
    assert_eq!(
        unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGKILL) },
        0
    );
    server.wait_exit(STEP).await.expect("herald died");
    drop(alice);
    let _backend = Backend::start(HOOK_SECRET, &record, port);
    let server = Server::start(config).await;
    let events = wait_recorded(&record, Duration::from_secs(10), |e| e.len() >= 27).await;
    let summary = summary(&events);
    assert_eq!(summary[0], "user_online alice");
    assert_eq!(offsets(&events), (1..=25).collect::<Vec<_>>());
    assert_eq!(summary[26], "user_offline alice");
    assert_eq!(events.len(), 27, "{summary:?}");
    drop(server);
}

/// A backend whose secret is not Herald's sees every batch's signature fail (and answers 401);
/// Herald counts the failed POSTs and keeps the events.
#[tokio::test]
async fn a_wrong_secret_is_detected_by_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("events.jsonl");
    let backend = Backend::start("not-the-secret", &record, 0);
    let server = Server::start(config(&backend.endpoint(), dir.path(), json!({}))).await;
    let _alice = server.client("alice").await;
    let lines = wait_recorded(&record, STEP, |e| e.len() >= 2).await;
    assert!(
        lines.iter().all(|l| l["rejected"] == "signature"),
        "{lines:?}"
    );
    // The backend records a rejection before it answers: Herald counts it a moment later.
    let deadline = Instant::now() + STEP;
    while server
        .metric("herald_webhook_posts_failed_total")
        .await
        .unwrap_or(0.0)
        < 2.0
    {
        assert!(Instant::now() < deadline, "failed POSTs not counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        server.metric("herald_webhook_events_queued").await,
        Some(1.0)
    );
}

/// A queue at `webhooks.max_queue` drops new events, counts them and says so in the log;
/// what it kept is delivered once the backend is back.
#[tokio::test]
async fn a_full_queue_drops_counts_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("events.jsonl");
    let mut backend = Backend::start(HOOK_SECRET, &record, 0);
    let port = backend.port;
    backend.stop();
    let server = Server::start(config(
        &backend.endpoint(),
        dir.path(),
        json!({"events": ["offline_publication"], "max_queue": 5}),
    ))
    .await;
    publish_to_carol(&server, 1..=8).await;
    let deadline = Instant::now() + STEP;
    while server.metric("herald_webhook_events_dropped_total").await != Some(3.0) {
        assert!(Instant::now() < deadline, "3 events not dropped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        server.metric("herald_webhook_events_queued").await,
        Some(5.0)
    );
    assert!(
        server.stderr().contains("the event queue is full"),
        "{}",
        server.stderr()
    );
    let _backend = Backend::start(HOOK_SECRET, &record, port);
    let events = wait_recorded(&record, Duration::from_secs(10), |e| e.len() >= 5).await;
    assert_eq!(offsets(&events), [1, 2, 3, 4, 5]);
}

/// Throughput of events in a reconnect storm: `HERALD_STORM_USERS` users (default 500)
/// connect at once, then all disconnect (`offline_grace` 0): the time until the backend has
/// every `user_online` and `user_offline`. A measurement, not a check: run it with
/// `cargo test -p herald --test webhooks -- --ignored --nocapture reconnect_storm`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn reconnect_storm_throughput() {
    let users: usize = std::env::var("HERALD_STORM_USERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(500)
        .min(5000);
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("events.jsonl");
    let backend = Backend::start(HOOK_SECRET, &record, 0);
    let server = Server::start(config(
        &backend.endpoint(),
        dir.path(),
        json!({"events": ["user_online", "user_offline"], "offline_grace": "0s"}),
    ))
    .await;
    let started = Instant::now();
    let mut clients = Vec::with_capacity(users);
    for i in 0..users {
        clients.push(server.client(&format!("user{i}")).await);
    }
    let connected = started.elapsed();
    let closing = Instant::now();
    drop(clients);
    wait_recorded(&record, Duration::from_secs(120), |e| e.len() >= 2 * users).await;
    let drained = closing.elapsed();
    let elapsed = started.elapsed();
    let events = recorded(&record);
    assert_eq!(of(&events, "user_online").len(), users);
    assert_eq!(of(&events, "user_offline").len(), users);
    let span = |kind: &str| {
        let times: Vec<u64> = of(&events, kind)
            .iter()
            .map(|e| e["time"].as_u64().unwrap())
            .collect();
        times.iter().max().unwrap() - times.iter().min().unwrap()
    };
    println!(
        "events made over: online {} ms, offline {} ms",
        span("user_online"),
        span("user_offline")
    );
    println!(
        "{users} users: connected one after the other in {connected:?}; all {} events \
         delivered {elapsed:?} after the first connect, {drained:?} after all disconnected \
         ({users} user_offline made and delivered in that time: {:.0} events/s)",
        2 * users,
        users as f64 / drained.as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// Across nodes: two or three Herald processes on the Redis engine over their own redis-server.

/// A node on the Redis engine at `redis` with webhooks to `endpoint`: presence entries live
/// `presence_ttl` 3 s (refreshed every second), `offline_grace` 2 s, and a `dm` namespace of
/// user-limited channels with history and presence (offline_publication needs it in a
/// cluster).
fn cluster_config(endpoint: &str, redis: &str, webhooks: Value) -> Value {
    let mut hooks = json!({
        "enabled": true,
        "endpoint": endpoint,
        "secret": HOOK_SECRET,
        "timeout": "2s",
        "offline_grace": "2s",
        "retry_min_backoff": "100ms",
        "retry_max_backoff": "1s",
    });
    common::merge(&mut hooks, webhooks);
    json!({
        "engine": {"type": "redis", "redis": {
            "address": redis, "presence_ttl": "3s", "io_timeout": "1s",
            "connect_timeout": "500ms"
        }},
        "client": {"presence_update_interval": "1s"},
        "webhooks": hooks,
        "channel": {"namespaces": [{
            "name": "dm",
            "allow_user_limited_channels": true,
            "allow_publish_for_client": true,
            "presence": true,
            "history_size": 1000,
            "history_ttl": "300s"
        }]}
    })
}

/// `kill -9` of a node.
async fn kill_9(server: &mut Server) {
    // SAFETY: kill(2) on the pid of our own child process.
    assert_eq!(
        unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGKILL) },
        0
    );
    server.wait_exit(STEP).await.expect("herald died");
}

/// The user events recorded, as `type user`.
fn user_events(events: &[Value]) -> Vec<String> {
    summary(events)
        .into_iter()
        .filter(|e| e.starts_with("user_"))
        .collect()
}

/// Every event's id is unique (each was delivered once).
fn assert_once_each(events: &[Value]) {
    let ids: std::collections::HashSet<_> = events.iter().map(|e| e["id"].clone()).collect();
    assert_eq!(ids.len(), events.len(), "an event came twice: {events:#?}");
}

/// Two nodes: a user's first connection on any node is announced once; moving to the other
/// node (and back, within the grace period) makes no event; offline comes once the last
/// connection on every node has been gone for the grace period. Then `kill -9` of a node:
/// its user goes offline once its presence expires (presence_ttl), and its channel is vacated.
#[tokio::test]
async fn across_nodes_online_offline_without_flapping_and_a_crashed_nodes_users_go_offline() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("events.jsonl");
    let backend = Backend::start(HOOK_SECRET, &record, 0);
    let redis = common::redis::RedisServer::start();
    let config = cluster_config(&backend.endpoint(), &redis.url(), json!({}));
    let a = Server::start(config.clone()).await;
    let mut b = Server::start(config).await;

    let on_a = a.client("alice").await;
    wait_recorded(&record, STEP, |e| user_events(e) == ["user_online alice"]).await;
    // Moves to b: connected there, then gone from a.
    let on_b = b.client("alice").await;
    drop(on_a);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Leaves b and comes back on a within the grace period.
    drop(on_b);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let on_a = a.client("alice").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(user_events(&recorded(&record)), ["user_online alice"]);
    // Gone everywhere for longer than the grace period: offline, once.
    let gone = Instant::now();
    drop(on_a);
    let events = wait_recorded(&record, Duration::from_secs(8), |e| {
        user_events(e).len() >= 2
    })
    .await;
    assert!(
        gone.elapsed() >= Duration::from_millis(1900),
        "offline came before the grace period"
    );
    assert_eq!(
        user_events(&events),
        ["user_online alice", "user_offline alice"]
    );

    // bob on b, subscribed to a channel; b crashes.
    let mut bob = b.client("bob").await;
    bob.subscribe_ok("news").await;
    wait_recorded(&record, STEP, |e| {
        summary(e).contains(&"channel_occupied news".to_owned()) && user_events(e).len() == 3
    })
    .await;
    // A refresh of b's entries happened (every second): they now expire up to 3 s after it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let crashed = Instant::now();
    kill_9(&mut b).await;
    let events = wait_recorded(&record, Duration::from_secs(10), |e| {
        user_events(e).len() >= 4 && summary(e).contains(&"channel_vacated news".to_owned())
    })
    .await;
    assert!(
        crashed.elapsed() >= Duration::from_millis(1000),
        "offline before the crashed node's presence could expire"
    );
    assert_eq!(
        user_events(&events),
        [
            "user_online alice",
            "user_offline alice",
            "user_online bob",
            "user_offline bob"
        ]
    );
    // Time for a duplicate, if one were (wrongly) sent.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let events = recorded(&record);
    assert_eq!(events.len(), 6, "{:?}", summary(&events));
    assert_once_each(&events);
    drop(bob);
}

/// The cluster's queue is in Redis: events made while the backend is down survive `kill -9` of
/// the node that made them, and another node delivers them, in order, once each, when the
/// backend is back (after refusing three batches). An offline publication is decided once, by
/// the publishing node, and not for a user subscribed on another node.
#[tokio::test]
async fn across_nodes_queued_events_survive_a_killed_node_and_arrive_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("events.jsonl");
    let mut backend = Backend::start(HOOK_SECRET, &record, 0);
    let port = backend.port;
    backend.stop();
    let redis = common::redis::RedisServer::start();
    let config = cluster_config(
        &backend.endpoint(),
        &redis.url(),
        json!({"events": ["offline_publication"], "max_batch": 7}),
    );
    let mut a = Server::start(config.clone()).await;
    let b = Server::start(config.clone()).await;
    let c = Server::start(config).await;
    // alice is subscribed to her channel on c: publications there are not offline for her.
    let mut alice = c.client("alice").await;
    alice.subscribe_ok("dm:#alice").await;
    // Presence is written right after the subscribe reply; give it a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 1..=20u64 {
        a.api_ok("publish", json!({"channel": "dm:#carol", "data": {"n": i}}))
            .await;
        a.api_ok("publish", json!({"channel": "dm:#alice", "data": {"n": i}}))
            .await;
    }
    // 20 offline_publication events wait in Redis (the gauge shows the cluster's queue).
    let deadline = Instant::now() + STEP;
    while b.metric("herald_webhook_events_queued").await != Some(20.0) {
        assert!(
            Instant::now() < deadline,
            "events not queued: {:?}",
            b.metric("herald_webhook_events_queued").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    kill_9(&mut a).await;
    let backend = Backend::start(HOOK_SECRET, &record, port);
    backend.fail_next(3).await;
    wait_recorded(&record, Duration::from_secs(20), |e| e.len() >= 20).await;
    // Time for a duplicate, if one were (wrongly) sent.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let events = recorded(&record);
    assert_eq!(offsets(&events), (1..=20).collect::<Vec<_>>());
    assert!(events.iter().all(|e| e["user"] == "carol"), "{events:#?}");
    assert_once_each(&events);
    assert_eq!(events.len(), 20);
    drop(alice);
}

/// On a Redis Cluster (the webhooks' keys share one slot): a channel with subscribers on two
/// nodes is occupied once and vacated only when its last subscriber on every node is gone;
/// a user on both nodes is online once and offline once.
#[tokio::test]
async fn across_nodes_on_a_redis_cluster_occupied_and_vacated_once() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("events.jsonl");
    let backend = Backend::start(HOOK_SECRET, &record, 0);
    let redis = common::redis::RedisCluster::start();
    let mut config = cluster_config(&backend.endpoint(), "", json!({"offline_grace": "500ms"}));
    config["engine"]["redis"]["address"] = json!([]);
    config["engine"]["redis"]["cluster_address"] = json!(redis.urls());
    let a = Server::start(config.clone()).await;
    let b = Server::start(config).await;
    let mut on_a = a.client("alice").await;
    on_a.subscribe_ok("news").await;
    wait_recorded(&record, STEP, |e| e.len() >= 2).await;
    let mut on_b = b.client("alice").await;
    on_b.subscribe_ok("news").await;
    drop(on_a);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Users and channels are in order each, not with each other.
    let mut both = summary(&recorded(&record));
    both.sort();
    assert_eq!(both, ["channel_occupied news", "user_online alice"]);
    let reply = on_b.call(json!({"unsubscribe": {"channel": "news"}})).await;
    assert!(reply.get("error").is_none(), "{reply}");
    wait_recorded(&record, STEP, |e| e.len() >= 3).await;
    drop(on_b);
    wait_recorded(&record, STEP, |e| e.len() >= 4).await;
    // Time for a duplicate, if one were (wrongly) sent.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let events = recorded(&record);
    assert_eq!(
        user_events(&events),
        ["user_online alice", "user_offline alice"]
    );
    let channel: Vec<String> = summary(&events)
        .into_iter()
        .filter(|e| e.starts_with("channel_"))
        .collect();
    assert_eq!(channel, ["channel_occupied news", "channel_vacated news"]);
    assert_eq!(events.len(), 4);
    assert_once_each(&events);
}
