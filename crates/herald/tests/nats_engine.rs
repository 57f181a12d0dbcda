//! Several Herald nodes (real binaries) over one `nats-server -js` of the test's own: delivery
//! across nodes in offset order, client publishes, history and exact recovery on another node
//! through JetStream, API commands reaching a user on another node, the node list (and a node
//! killed with SIGKILL leaving it), and NATS restarted while publishing: errors answered, no
//! acknowledged publication lost, delivery resuming by itself.

mod common;

use std::time::{Duration, Instant};

use common::nats::Nats;
use common::*;
use serde_json::{Value, json};

/// A node's config: the NATS broker with JetStream history in the `chat` namespace, presence
/// (per node) in `room`.
fn node_config(nats: &Nats) -> Value {
    json!({
        "broker": {"enabled": true, "type": "nats",
                   "nats": {"url": nats.url(), "prefix": "it", "write_timeout": "2s",
                            "jetstream": {"enabled": true}}},
        "channel": {"namespaces": [
            {"name": "chat", "allow_subscribe_for_client": true, "allow_publish_for_client": true,
             "allow_history_for_client": true, "history_size": 1000, "history_ttl": "1h",
             "force_recovery": true, "join_leave": true, "force_push_join_leave": true},
            {"name": "room", "allow_subscribe_for_client": true, "presence": true}
        ]}
    })
}

/// Starts `n` nodes and waits until each is connected to NATS (`/health` 200).
async fn nodes(nats: &Nats, n: usize) -> Vec<Server> {
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(Server::start(node_config(nats)).await);
    }
    for node in &nodes {
        wait_until(
            || async { node.get("/health").await.status == 200 },
            "healthy",
        )
        .await;
    }
    nodes
}

/// Polls `check` every 50 ms for up to 15 s.
async fn wait_until<F, Fut>(check: F, what: &str)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "not {what} within 15 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn publish(node: &Server, channel: &str, n: u64) -> Value {
    node.api_ok("publish", json!({"channel": channel, "data": {"n": n}}))
        .await
}

/// The next `count` publication pushes' offsets (joins and leaves skipped).
async fn offsets_of(ws: &mut Ws, count: usize) -> Vec<u64> {
    let mut seen = Vec::new();
    while seen.len() < count {
        let push = ws.next_push().await;
        if let Some(offset) = push["push"]["pub"]["offset"].as_u64() {
            seen.push(offset);
        }
    }
    seen
}

fn offsets(publications: &Value) -> Vec<u64> {
    publications
        .as_array()
        .map(|list| list.iter().filter_map(|p| p["offset"].as_u64()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn three_nodes_deliver_in_order_and_a_client_recovers_on_another_node() {
    let nats = Nats::start();
    let nodes = nodes(&nats, 3).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let mut bob = b.client("bob").await;
    let reply = bob.subscribe("chat:1").await;
    assert_eq!(reply["subscribe"]["recoverable"], true, "{reply}");
    let epoch = reply["subscribe"]["epoch"].as_str().unwrap().to_owned();
    let mut carol = c.client("carol").await;
    carol.subscribe_ok("chat:1").await;
    // Bob sees his own join, then carol's, across nodes.
    let join = bob.next_push().await;
    assert_eq!(join["push"]["join"]["info"]["user"], "bob", "{join}");
    let join = bob.next_push().await;
    assert_eq!(join["push"]["join"]["info"]["user"], "carol", "{join}");

    // Publications on A reach B and C in offset order.
    for n in 1..=20 {
        let result = publish(a, "chat:1", n).await;
        assert_eq!(result["offset"], n);
        assert_eq!(result["epoch"], epoch.as_str());
    }
    assert_eq!(offsets_of(&mut bob, 20).await, (1..=20).collect::<Vec<_>>());
    assert_eq!(
        offsets_of(&mut carol, 20).await,
        (1..=20).collect::<Vec<_>>()
    );

    // Racing publishers on all three nodes: still every offset once, in order, everywhere.
    let tasks: Vec<_> = nodes
        .iter()
        .map(|node| {
            let port = node.port;
            tokio::spawn(async move {
                for n in 0..20 {
                    let body = json!({"channel": "chat:1", "data": {"n": n}}).to_string();
                    let response = http(
                        port,
                        "POST",
                        "/api/publish",
                        &[("X-API-Key", API_KEY), ("Content-Type", "application/json")],
                        Some(body.as_bytes()),
                    )
                    .await;
                    assert!(
                        response.json().get("result").is_some(),
                        "{}",
                        response.text()
                    );
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(
        offsets_of(&mut bob, 60).await,
        (21..=80).collect::<Vec<_>>()
    );
    assert_eq!(
        offsets_of(&mut carol, 60).await,
        (21..=80).collect::<Vec<_>>()
    );

    // A client publish on C reaches bob on B.
    let reply = carol.publish("chat:1", json!({"from": "carol"})).await;
    assert!(reply.get("publish").is_some(), "{reply}");
    let push = bob.next_push().await;
    assert_eq!(push["push"]["pub"]["data"], json!({"from": "carol"}));
    assert_eq!(push["push"]["pub"]["offset"], 81);
    assert_eq!(push["push"]["pub"]["info"]["user"], "carol");

    // Bob goes away; what is published meanwhile he recovers on another node, exactly.
    drop(bob);
    for n in 82..=86 {
        publish(a, "chat:1", n).await;
    }
    let history = c
        .api_ok(
            "history",
            json!({"channel": "chat:1", "limit": 3, "reverse": true}),
        )
        .await;
    assert_eq!(offsets(&history["publications"]), vec![86, 85, 84]);
    assert_eq!(history["epoch"], epoch.as_str());
    let mut bob = c.client("bob").await;
    let reply = bob
        .call(json!({"subscribe": {"channel": "chat:1", "recover": true, "offset": 81, "epoch": epoch}}))
        .await;
    let sub = &reply["subscribe"];
    assert_eq!(sub["recovered"], true, "{reply}");
    assert_eq!(offsets(&sub["publications"]), vec![82, 83, 84, 85, 86]);
    assert_eq!(sub["publications"][0]["data"], json!({"n": 82}));
    // And live ones follow, once each.
    publish(b, "chat:1", 87).await;
    assert_eq!(offsets_of(&mut bob, 1).await, vec![87]);
    let more = bob.next_push_within(Duration::from_millis(300)).await;
    assert!(
        more.as_ref().is_none_or(|p| p["push"]["pub"].is_null()),
        "{more:?}"
    );
}

#[tokio::test]
async fn api_commands_reach_other_nodes_and_info_lists_live_nodes() {
    let nats = Nats::start();
    let mut nodes = nodes(&nats, 3).await;
    let count = |info: &Value| info["nodes"].as_array().map_or(0, Vec::len);
    {
        let a = &nodes[0];
        wait_until(
            || async { count(&a.api_ok("info", json!({})).await) == 3 },
            "3 nodes in info",
        )
        .await;
        let info = a.api_ok("info", json!({})).await;
        let uids: std::collections::HashSet<_> = info["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["uid"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(uids.len(), 3, "{info}");
    }
    // Alice on C is disconnected through A's API.
    let mut alice = nodes[2].client("alice").await;
    nodes[0]
        .api_ok(
            "disconnect",
            json!({"user": "alice", "disconnect": {"code": 4001, "reason": "bye"}}),
        )
        .await;
    assert_eq!(alice.expect_close().await, (4001, "bye".into()));
    // Unsubscribed through B's API.
    let mut dave = nodes[2].client("dave").await;
    dave.subscribe_ok("room:x").await;
    nodes[1]
        .api_ok("unsubscribe", json!({"user": "dave", "channel": "room:x"}))
        .await;
    let push = dave.next_push().await;
    assert_eq!(push["push"]["channel"], "room:x", "{push}");
    assert!(push["push"]["unsubscribe"].is_object(), "{push}");
    // Subscribed by A's API on C, where dave is connected: the subscribe push reaches him, and
    // a publication through B follows it.
    nodes[0]
        .api_ok(
            "subscribe",
            json!({"user": "dave", "channel": "room:api", "data": {"welcome": true}}),
        )
        .await;
    let push = dave.next_push().await;
    assert_eq!(push["push"]["channel"], "room:api", "{push}");
    assert_eq!(
        push["push"]["subscribe"]["data"],
        json!({"welcome": true}),
        "{push}"
    );
    nodes[1]
        .api_ok("publish", json!({"channel": "room:api", "data": "hi"}))
        .await;
    let push = dave.next_push().await;
    assert_eq!(push["push"]["pub"]["data"], "hi", "{push}");
    // `channels` on A counts the subscribers of every node: dave on C, erin on B.
    let mut erin = nodes[1].client("erin").await;
    erin.subscribe_ok("room:api").await;
    let channels = nodes[0].api_ok("channels", json!({})).await;
    assert_eq!(
        channels["channels"]["room:api"]["num_clients"], 2,
        "{channels}"
    );

    // C killed with SIGKILL: it leaves the list after a few missed heartbeats.
    // SAFETY: kill(2) on a child process of this test.
    unsafe { libc::kill(nodes[2].pid() as i32, libc::SIGKILL) };
    nodes[2].wait_exit(Duration::from_secs(5)).await;
    let a = &nodes[0];
    wait_until(
        || async { count(&a.api_ok("info", json!({})).await) == 2 },
        "2 nodes in info",
    )
    .await;
    nodes.truncate(2);
}

#[tokio::test]
async fn nats_restarted_while_publishing_loses_no_acknowledged_publication() {
    let mut nats = Nats::start();
    let nodes = nodes(&nats, 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut bob = b.client("bob").await;
    bob.subscribe_ok("chat:r").await;

    let mut acknowledged = Vec::new();
    let mut failures = 0;
    let mut unhealthy = None;
    for n in 1..=60u64 {
        if n == 20 {
            nats.stop();
        }
        if n == 40 {
            nats.start_again();
            // Give the nodes time to reconnect (bounded).
            wait_until(
                || async { a.get("/health").await.status == 200 },
                "healthy again",
            )
            .await;
            wait_until(
                || async { b.get("/health").await.status == 200 },
                "healthy again",
            )
            .await;
        }
        if n == 30 {
            let health = a.get("/health").await;
            unhealthy = Some((health.status, health.text()));
        }
        let response = a
            .api("publish", json!({"channel": "chat:r", "data": {"n": n}}))
            .await;
        let body = response.json();
        match body.get("result") {
            Some(result) => acknowledged.push(result["offset"].as_u64().unwrap()),
            None => {
                assert!(body.get("error").is_some(), "{body}");
                failures += 1;
            }
        }
    }
    let (status, text) = unhealthy.unwrap();
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("nats"), "{text}");
    assert!(
        failures >= 15,
        "publishes while NATS was down must fail: {failures}"
    );
    assert!(acknowledged.len() >= 35, "{acknowledged:?}");
    // Every acknowledged publication is in the stream, and bob got each once, in order.
    let page = b
        .api_ok("history", json!({"channel": "chat:r", "limit": -1}))
        .await;
    let stored = offsets(&page["publications"]);
    for offset in &acknowledged {
        assert!(
            stored.contains(offset),
            "acknowledged {offset} not stored: {stored:?}"
        );
    }
    let top = *stored.last().unwrap();
    assert_eq!(stored, (1..=top).collect::<Vec<_>>());
    let mut seen = Vec::new();
    while seen.len() < top as usize {
        match bob.next_push_within(Duration::from_secs(10)).await {
            Some(push) => {
                if let Some(offset) = push["push"]["pub"]["offset"].as_u64() {
                    seen.push(offset);
                }
            }
            None => break,
        }
    }
    assert_eq!(seen, (1..=top).collect::<Vec<_>>());
}

#[tokio::test]
async fn tls_to_nats_verifies_the_server_against_the_configured_ca() {
    let certs = tempfile::tempdir().unwrap();
    let cert = common::tls::TestCert::generate(certs.path(), "nats");
    let (cert_file, key_file) = (cert.cert.to_str().unwrap(), cert.key.to_str().unwrap());
    let nats = Nats::start_with(&["--tls", "--tlscert", cert_file, "--tlskey", key_file]);
    let mut config = node_config(&nats);
    merge(
        &mut config,
        json!({"broker": {"nats": {"tls": {"enabled": true, "server_ca_pem_file": cert.ca}}}}),
    );
    let node = Server::start(config.clone()).await;
    wait_until(
        || async { node.get("/health").await.status == 200 },
        "healthy over TLS",
    )
    .await;
    assert_eq!(publish(&node, "chat:tls", 1).await["offset"], 1);

    // Another CA: the server is not trusted, so the node never connects.
    let other = common::tls::TestCert::generate(certs.path(), "other");
    merge(
        &mut config,
        json!({"broker": {"nats": {"tls": {"server_ca_pem_file": other.ca}}}}),
    );
    let untrusted = Server::start(config).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let health = untrusted.get("/health").await;
    assert_eq!(health.status, 503, "{}", health.text());
    let refused = untrusted
        .api("publish", json!({"channel": "chat:tls", "data": {}}))
        .await
        .json();
    assert!(refused.get("error").is_some(), "{refused}");
}

#[tokio::test]
async fn engine_type_nats_and_broker_type_nats_are_one_engine() {
    let nats = Nats::start();
    let broker = Server::start(node_config(&nats)).await;
    let engine = Server::start(json!({
        "engine": {"type": "nats", "nats": {"url": nats.url(), "prefix": "it",
                                            "jetstream": {"enabled": true}}},
        "channel": {"namespaces": [
            {"name": "chat", "allow_subscribe_for_client": true, "history_size": 1000,
             "history_ttl": "1h", "force_recovery": true}
        ]}
    }))
    .await;
    for node in [&broker, &engine] {
        wait_until(
            || async { node.get("/health").await.status == 200 },
            "healthy",
        )
        .await;
    }
    let mut ws = engine.client("eve").await;
    ws.subscribe_ok("chat:e").await;
    assert_eq!(publish(&broker, "chat:e", 1).await["offset"], 1);
    assert_eq!(offsets_of(&mut ws, 1).await, vec![1]);
    // The warning about per-node presence names the option and the settings in use.
    assert!(
        broker.stderr().contains("is per node with broker.nats"),
        "{}",
        broker.stderr()
    );
}

/// The users present in `channel`, as `node` answers `presence` (sorted).
async fn present_users(node: &Server, channel: &str) -> Vec<String> {
    let result = node.api_ok("presence", json!({"channel": channel})).await;
    let mut users: Vec<String> = result["presence"]
        .as_object()
        .map(|m| {
            m.values()
                .filter_map(|info| info["user"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    users.sort();
    users
}

/// The next join or leave push (`kind`) in `channel`, skipping other pushes: its user.
async fn next_user_push(ws: &mut Ws, channel: &str, kind: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let push = ws
            .next_push_within(left)
            .await
            .unwrap_or_else(|| panic!("no {kind} in {channel} within 10 s"));
        if push["push"]["channel"] == channel && push["push"].get(kind).is_some() {
            return push["push"][kind]["info"]["user"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
        }
    }
}

/// NATS carries publications, join/leave and control; a Redis presence manager
/// (`presence_manager.type: "redis"`, Centrifugo's names) holds presence for all three nodes,
/// and a node killed with SIGKILL takes its clients out of it within `presence_ttl`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_presence_manager_shares_presence_across_nats_nodes_and_forgets_a_killed_one() {
    let nats = Nats::start();
    let redis = common::redis::RedisServer::start();
    let ttl = Duration::from_secs(3);
    let mut config = node_config(&nats);
    merge(
        &mut config,
        json!({
            "presence_manager": {"enabled": true, "type": "redis",
                                 "redis": {"address": redis.url(), "prefix": "pm",
                                           "presence_ttl": "3s"}},
            "client": {"presence_update_interval": "1s"},
            "channel": {"namespaces": [
                {"name": "room", "allow_subscribe_for_client": true, "presence": true,
                 "join_leave": true, "force_push_join_leave": true,
                 "allow_presence_for_subscriber": true}
            ]}
        }),
    );
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Server::start(config.clone()).await);
    }
    for node in &nodes {
        wait_until(
            || async { node.get("/health").await.status == 200 },
            "healthy",
        )
        .await;
        assert!(!node.stderr().contains("is per node"), "{}", node.stderr());
    }
    let mut alice = nodes[0].client("alice").await;
    alice.subscribe_ok("room:1").await;
    let mut bob = nodes[1].client("bob").await;
    bob.subscribe_ok("room:1").await;
    let mut carol = nodes[2].client("carol").await;
    carol.subscribe_ok("room:1").await;

    // Joins cross the nodes through NATS.
    assert_eq!(next_user_push(&mut alice, "room:1", "join").await, "alice");
    assert_eq!(next_user_push(&mut alice, "room:1", "join").await, "bob");
    assert_eq!(next_user_push(&mut alice, "room:1", "join").await, "carol");

    // Every node answers with the whole cluster's presence, held in Redis.
    for node in &nodes {
        assert_eq!(
            present_users(node, "room:1").await,
            ["alice", "bob", "carol"]
        );
        let stats = node
            .api_ok("presence_stats", json!({"channel": "room:1"}))
            .await;
        assert_eq!(stats["num_clients"], 3, "{stats}");
        assert_eq!(stats["num_users"], 3, "{stats}");
    }
    // A client's own presence call is answered from Redis too.
    let reply = bob.call(json!({"presence": {"channel": "room:1"}})).await;
    assert_eq!(
        reply["presence"]["presence"].as_object().map(|m| m.len()),
        Some(3),
        "{reply}"
    );
    assert!(
        redis
            .cli(&["KEYS", "pm.presence.*"])
            .is_some_and(|k| k.contains("room:1"))
    );

    // Bob unsubscribes: alice on another node sees him leave, and presence forgets him.
    let reply = bob
        .call(json!({"unsubscribe": {"channel": "room:1"}}))
        .await;
    assert!(reply.get("error").is_none(), "{reply}");
    assert_eq!(next_user_push(&mut alice, "room:1", "leave").await, "bob");
    assert_eq!(present_users(&nodes[2], "room:1").await, ["alice", "carol"]);

    // Entries outlive several TTLs while their nodes refresh them.
    tokio::time::sleep(ttl * 2).await;
    assert_eq!(present_users(&nodes[1], "room:1").await, ["alice", "carol"]);

    // Carol's node killed with SIGKILL: nobody removes her entry, it expires.
    // SAFETY: kill(2) on the pid of our own child process.
    let rc = unsafe { libc::kill(nodes[2].pid() as libc::pid_t, libc::SIGKILL) };
    assert_eq!(rc, 0);
    let killed = Instant::now();
    nodes[2]
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("killed");
    drop(carol);
    let a = &nodes[0];
    wait_until(
        || async { present_users(a, "room:1").await == ["alice"] },
        "carol out of presence",
    )
    .await;
    let gone = killed.elapsed();
    // Within the TTL of its last refresh, plus slack for a loaded machine.
    assert!(gone <= ttl + Duration::from_secs(3), "{gone:?}");
    let stats = nodes[1]
        .api_ok("presence_stats", json!({"channel": "room:1"}))
        .await;
    assert_eq!(stats["num_clients"], 1, "{stats}");
    assert_eq!(stats["num_users"], 1, "{stats}");
    // NATS still delivers between the survivors.
    assert_eq!(
        nodes[1]
            .api_ok("publish", json!({"channel": "room:1", "data": {"n": 1}}))
            .await
            .get("offset"),
        None
    );
    let push = alice.next_push().await;
    assert_eq!(push["push"]["pub"]["data"], json!({"n": 1}), "{push}");
}
