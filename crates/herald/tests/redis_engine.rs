//! The Redis engine with real processes: several Herald nodes on one Redis, channels sharded
//! over two Redis servers, a Redis Cluster, a Sentinel-managed master, and faults — Redis
//! paused while publishing, Redis restarted empty, a Sentinel failover (the master killed, or
//! moved with `SENTINEL FAILOVER`). (History and recovery on one node run
//! against both engines in `tests/history.rs`.)

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::redis::{RedisCluster, RedisSentinel, RedisServer, SENTINEL_MASTER, SentinelGroup};
use common::*;
use serde_json::{Value, json};

/// A node config on the Redis engine with `redis` settings (`address`, …); the `chat`
/// namespace keeps history and recovers.
fn node_config(redis: Value) -> Value {
    let mut redis_settings = json!({"io_timeout": "1s", "connect_timeout": "500ms"});
    merge(&mut redis_settings, redis);
    json!({
        "engine": {"type": "redis", "redis": redis_settings},
        "channel": {"namespaces": [
            {"name": "chat", "allow_subscribe_for_client": true, "allow_publish_for_client": true,
             "allow_history_for_client": true, "history_size": 1000, "history_ttl": "1h",
             "force_recovery": true, "join_leave": true, "force_push_join_leave": true}
        ]}
    })
}

async fn publish(server: &Server, channel: &str, n: u64) -> Value {
    server
        .api_ok("publish", json!({"channel": channel, "data": {"n": n}}))
        .await
}

fn offsets(publications: &Value) -> Vec<u64> {
    publications
        .as_array()
        .map(|l| l.iter().filter_map(|p| p["offset"].as_u64()).collect())
        .unwrap_or_default()
}

/// The offsets of the next `n` publication pushes (other pushes skipped).
async fn next_offsets(ws: &mut Ws, n: usize) -> Vec<u64> {
    let mut seen = Vec::new();
    while seen.len() < n {
        let push = ws.next_push().await;
        if let Some(offset) = push["push"]["pub"]["offset"].as_u64() {
            seen.push(offset);
        }
    }
    seen
}

/// Waits (bounded) until `/health` answers `status`; its body.
async fn wait_health(server: &Server, status: u16, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let response = server.get("/health").await;
        if response.status == status {
            return response.json();
        }
        assert!(
            Instant::now() < deadline,
            "/health did not answer {status} within {within:?}: {} {}",
            response.status,
            response.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn two_nodes_share_publications_history_and_recovery() {
    let redis = RedisServer::start();
    let config = node_config(json!({"address": redis.url()}));
    let a = Server::start(config.clone()).await;
    let b = Server::start(config).await;
    wait_health(&a, 200, STEP).await;
    wait_health(&b, 200, STEP).await;

    // A subscriber on B gets what is published through A's API, once each, in order.
    let mut on_b = b.client("bob").await;
    on_b.subscribe_ok("chat:x").await;
    for n in 1..=20 {
        let result = publish(&a, "chat:x", n).await;
        assert_eq!(result["offset"], n, "{result}");
    }
    assert_eq!(
        next_offsets(&mut on_b, 20).await,
        (1..=20).collect::<Vec<_>>()
    );

    // A client on A publishes; the subscriber on B gets it, with the publisher's info; a
    // join from A's subscriber reaches B too.
    let mut on_a = a.client("alice").await;
    on_a.subscribe_ok("chat:x").await;
    let join = on_b.next_push().await;
    assert_eq!(join["push"]["join"]["info"]["user"], "alice", "{join}");
    let reply = on_a.publish("chat:x", json!({"from": "a"})).await;
    assert!(reply.get("error").is_none(), "{reply}");
    let push = on_b.next_push().await;
    assert_eq!(push["push"]["pub"]["offset"], 21, "{push}");
    assert_eq!(push["push"]["pub"]["info"]["user"], "alice", "{push}");

    // History read on B holds what A published.
    let page = b
        .api_ok("history", json!({"channel": "chat:x", "limit": -1}))
        .await;
    assert_eq!(offsets(&page["publications"]), (1..=21).collect::<Vec<_>>());
    let epoch = page["epoch"].as_str().unwrap().to_owned();

    // A client of A that goes away and comes back on B recovers exactly what it missed.
    let reply = on_a
        .call(json!({"history": {"channel": "chat:x", "limit": 0}}))
        .await;
    let seen = reply["history"]["offset"].as_u64().unwrap();
    drop(on_a);
    for n in 1..=5 {
        publish(&b, "chat:x", 100 + n).await;
    }
    let mut back = b.client("alice").await;
    let reply = back
        .call(json!({"subscribe": {"channel": "chat:x", "recover": true, "offset": seen, "epoch": epoch}}))
        .await;
    let sub = &reply["subscribe"];
    assert_eq!(sub["recovered"], true, "{reply}");
    assert_eq!(offsets(&sub["publications"]), (22..=26).collect::<Vec<_>>());
    // And live delivery continues on B from publications made on A.
    publish(&a, "chat:x", 200).await;
    assert_eq!(next_offsets(&mut back, 1).await, [27]);
}

#[tokio::test]
async fn channels_are_sharded_over_several_redis_servers() {
    let one = RedisServer::start();
    let two = RedisServer::start();
    let config = node_config(json!({"address": [one.url(), two.url()]}));
    let a = Server::start(config.clone()).await;
    let b = Server::start(config).await;
    let mut ws = b.client("bob").await;
    let channels: Vec<String> = (0..16).map(|i| format!("chat:s{i}")).collect();
    for channel in &channels {
        ws.subscribe_ok(channel).await;
    }
    for channel in &channels {
        for n in 1..=3 {
            publish(&a, channel, n).await;
        }
    }
    let mut got: BTreeSet<(String, u64)> = BTreeSet::new();
    while got.len() < channels.len() * 3 {
        let push = ws.next_push().await;
        if let Some(offset) = push["push"]["pub"]["offset"].as_u64() {
            got.insert((push["push"]["channel"].as_str().unwrap().to_owned(), offset));
        }
    }
    for channel in &channels {
        let page = b
            .api_ok("history", json!({"channel": channel, "limit": -1}))
            .await;
        assert_eq!(offsets(&page["publications"]), [1, 2, 3], "{channel}");
    }
    // Both servers hold some of the streams, and none holds all.
    let count = |r: &RedisServer| {
        r.cli(&["--scan", "--pattern", "herald.meta.*"])
            .unwrap_or_default()
            .lines()
            .count()
    };
    let (c1, c2) = (count(&one), count(&two));
    assert_eq!(c1 + c2, channels.len(), "{c1} + {c2}");
    assert!(c1 > 0 && c2 > 0, "{c1} / {c2}");
}

/// Publish, subscribe and history through two nodes on one Redis deployment.
async fn check_two_nodes(config: Value) {
    let a = Server::start(config.clone()).await;
    let b = Server::start(config).await;
    wait_health(&a, 200, Duration::from_secs(10)).await;
    wait_health(&b, 200, Duration::from_secs(10)).await;
    let mut ws = b.client("bob").await;
    let channels = ["chat:c1", "chat:c2", "chat:c3", "chat:c4"];
    for channel in channels {
        ws.subscribe_ok(channel).await;
    }
    for channel in channels {
        for n in 1..=3 {
            let result = publish(&a, channel, n).await;
            assert_eq!(result["offset"], n, "{result}");
        }
    }
    let mut got = BTreeSet::new();
    while got.len() < 12 {
        let push = ws.next_push().await;
        if let Some(offset) = push["push"]["pub"]["offset"].as_u64() {
            got.insert((push["push"]["channel"].as_str().unwrap().to_owned(), offset));
        }
    }
    for channel in channels {
        let page = b
            .api_ok("history", json!({"channel": channel, "limit": -1}))
            .await;
        assert_eq!(offsets(&page["publications"]), [1, 2, 3], "{channel}");
    }
}

#[tokio::test]
async fn a_redis_cluster_carries_publications_and_history() {
    let cluster = RedisCluster::start();
    check_two_nodes(node_config(json!({"cluster_address": cluster.urls()}))).await;
}

#[tokio::test]
async fn a_sentinel_managed_master_carries_publications_and_history() {
    let sentinel = RedisSentinel::start();
    check_two_nodes(node_config(json!({
        "sentinel_address": [format!("127.0.0.1:{}", sentinel.sentinel_port)],
        "sentinel_master_name": SENTINEL_MASTER,
    })))
    .await;
    // The streams are on the master the sentinel named.
    assert!(
        sentinel
            .master
            .cli(&["EXISTS", "herald.stream.{chat:c1}"])
            .is_some_and(|o| o.trim() == "1")
    );
}

/// A node config on the master of `group`; the first sentinel address listed is dead, so the
/// nodes have to try the next.
fn sentinel_config(group: &SentinelGroup) -> Value {
    node_config(json!({
        "sentinel_address": [
            format!("127.0.0.1:{}", common::redis::free_port()),
            format!("127.0.0.1:{}", group.sentinel_port),
        ],
        "sentinel_master_name": SENTINEL_MASTER,
    }))
}

/// Reads pushes until the subscriber `ws` has every offset up to `top` after `seen`, in order;
/// or, if its node tells it (3010) that it cannot, recovers the rest on `server` — never a
/// silent gap. Returns the offsets seen and whether the recovery said the position was lost
/// (`recovered: false`: the client is told, and `seen` restarts from the top it was given).
async fn complete_up_to(
    ws: &mut Ws,
    server: &Server,
    channel: &str,
    mut seen: Vec<u64>,
    top: u64,
    epoch: &str,
) -> (Vec<u64>, bool) {
    let mut told = false;
    while seen.last() != Some(&top) {
        match ws.next_frame_within(Duration::from_secs(15)).await {
            Some(Frame::Text(text)) => {
                for value in split_values(&text) {
                    if let Some(offset) = value["push"]["pub"]["offset"].as_u64() {
                        seen.push(offset);
                    }
                }
            }
            Some(Frame::Close(code, _)) => {
                assert_eq!(code, 3010, "only an insufficient-state close is acceptable");
                let mut again = server.client("bob").await;
                let last = *seen.last().unwrap();
                let reply = again
                    .call(json!({"subscribe": {"channel": channel, "recover": true,
                                               "offset": last, "epoch": epoch}}))
                    .await;
                if reply["subscribe"]["recovered"] == true {
                    seen.extend(offsets(&reply["subscribe"]["publications"]));
                } else {
                    assert_eq!(reply["subscribe"]["was_recovering"], true, "{reply}");
                    told = true;
                    seen = vec![reply["subscribe"]["offset"].as_u64().unwrap_or(0)];
                }
                *ws = again;
            }
            other => panic!("the subscriber stopped at {seen:?} of {top}: {other:?}"),
        }
    }
    (seen, told)
}

#[tokio::test]
async fn a_sentinel_failover_after_the_master_died_is_followed_without_a_restart() {
    let mut group = SentinelGroup::start();
    let config = sentinel_config(&group);
    let a = Server::start(config.clone()).await;
    let b = Server::start(config).await;
    wait_health(&a, 200, STEP).await;
    wait_health(&b, 200, STEP).await;
    let mut ws = b.client("bob").await;
    ws.subscribe_ok("chat:k").await;
    let first = publish(&a, "chat:k", 1).await;
    let epoch = first["epoch"].as_str().unwrap().to_owned();
    for n in 2..=3 {
        publish(&a, "chat:k", n).await;
    }
    assert_eq!(next_offsets(&mut ws, 3).await, [1, 2, 3]);
    // The replica has them (replication is asynchronous: what it lacks is lost in a failover).
    assert_eq!(
        group
            .master
            .cli(&["WAIT", "1", "5000"])
            .map(|o| o.trim().to_owned()),
        Some("1".into())
    );

    group.master.stop(); // kill -9
    // While no master answers, the nodes say so and publishes fail with an error.
    let unhealthy = wait_health(&a, 503, Duration::from_secs(5)).await;
    assert!(
        unhealthy["error"]
            .as_str()
            .is_some_and(|e| e.contains("Redis")),
        "{unhealthy}"
    );
    let refused = a
        .api("publish", json!({"channel": "chat:k", "data": {"n": 0}}))
        .await
        .json();
    assert!(
        refused.get("error").is_some(),
        "a publish without a master fails: {refused}"
    );

    // The sentinel promotes the replica; both nodes follow it without a restart.
    wait_health(&a, 200, Duration::from_secs(30)).await;
    wait_health(&b, 200, Duration::from_secs(30)).await;
    assert_eq!(group.named_master_port(), Some(group.replica.port));
    for n in 4..=6 {
        let result = publish(&a, "chat:k", n).await;
        assert_eq!(result["offset"], n, "{result}");
        assert_eq!(result["epoch"], epoch.as_str(), "{result}");
    }
    let (seen, told) = complete_up_to(&mut ws, &b, "chat:k", vec![1, 2, 3], 6, &epoch).await;
    assert!(!told, "nothing was lost: the replica had every publication");
    assert_eq!(seen, (1..=6).collect::<Vec<_>>(), "complete and in order");
    let page = b
        .api_ok("history", json!({"channel": "chat:k", "limit": -1}))
        .await;
    assert_eq!(offsets(&page["publications"]), (1..=6).collect::<Vec<_>>());
    // A client publishing on B reaches a subscriber on A through the new master.
    let mut on_a = a.client("alice").await;
    on_a.subscribe_ok("chat:k").await;
    let reply = ws.publish("chat:k", json!({"from": "b"})).await;
    assert!(reply.get("error").is_none(), "{reply}");
    assert_eq!(next_offsets(&mut on_a, 1).await, [7]);
}

#[tokio::test]
async fn a_manual_sentinel_failover_is_followed_while_the_old_master_still_answers() {
    let group = SentinelGroup::start();
    let config = sentinel_config(&group);
    let a = Server::start(config.clone()).await;
    let b = Server::start(config).await;
    wait_health(&a, 200, STEP).await;
    wait_health(&b, 200, STEP).await;
    let mut ws = b.client("bob").await;
    ws.subscribe_ok("chat:m").await;
    let first = publish(&a, "chat:m", 1).await;
    let epoch = first["epoch"].as_str().unwrap().to_owned();
    assert_eq!(next_offsets(&mut ws, 1).await, [1]);
    assert_eq!(
        group
            .master
            .cli(&["WAIT", "1", "5000"])
            .map(|o| o.trim().to_owned()),
        Some("1".into())
    );

    // The old master stays up, and a master, until the sentinel reconfigures it seconds
    // later: connections to it do not break by themselves.
    // Refused (NOGOODSLAVE) while the sentinel's last look at the replica is not recent
    // enough, which a busy machine delays: asked again until it starts.
    let asked = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = group.sentinel(&["SENTINEL", "FAILOVER", SENTINEL_MASTER]);
        if answer.as_deref().is_some_and(|o| o.contains("OK")) {
            break;
        }
        assert!(Instant::now() < asked, "SENTINEL FAILOVER: {answer:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while group.named_master_port() != Some(group.replica.port) {
        assert!(Instant::now() < deadline, "the sentinel did not fail over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Within a few seconds the nodes publish to the new master, while the old one would
    // still take the writes.
    let moved = Instant::now();
    let stream = "herald.stream.{chat:m}";
    let mut n = 2;
    loop {
        let result = a
            .api("publish", json!({"channel": "chat:m", "data": {"n": n}}))
            .await
            .json();
        n += 1;
        let on_new = group
            .replica
            .cli(&["XLEN", stream])
            .and_then(|o| o.trim().parse::<u64>().ok());
        if result["result"]["offset"].as_u64().is_some()
            && on_new == result["result"]["offset"].as_u64()
        {
            break;
        }
        assert!(
            moved.elapsed() < Duration::from_secs(4),
            "publications still go to the old master {:?} after {:?}: {result}",
            group.master.port,
            moved.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_health(&a, 200, STEP).await;
    wait_health(&b, 200, STEP).await;
    // From now on everything goes through the new master, and the subscriber ends complete.
    let mut top = 0;
    for _ in 0..3 {
        let result = publish(&a, "chat:m", n).await;
        n += 1;
        top = result["offset"].as_u64().unwrap();
    }
    let page = b
        .api_ok("history", json!({"channel": "chat:m", "limit": -1}))
        .await;
    assert_eq!(page["offset"].as_u64(), Some(top));
    let stored = offsets(&page["publications"]);
    let (seen, told) = complete_up_to(&mut ws, &b, "chat:m", vec![1], top, &epoch).await;
    // A publication the old master acknowledged in the moment between the promotion and the
    // node's switch is lost with it (replication is asynchronous), and its offset is given
    // again by the new master: a subscriber that saw it is told its position is lost.
    let first = if told { seen[0] + 1 } else { 1 };
    let seen: BTreeSet<u64> = seen.into_iter().collect();
    for offset in stored.iter().filter(|o| **o >= first) {
        assert!(
            seen.contains(offset),
            "{offset} stored but never seen: {seen:?}"
        );
    }
}

/// After a failover that lost writes, the new master's stream is behind what a node already
/// delivered, in the same epoch: its subscribers are told (3010), never left with offsets that
/// will be given again. (Simulated: the last two publications are removed from the stream
/// and its meta, then the node's PUB/SUB connection is cut so that it reconnects and checks.)
#[tokio::test]
async fn a_stream_found_behind_what_was_delivered_tells_subscribers() {
    let redis = RedisServer::start();
    let config = node_config(json!({"address": redis.url()}));
    let a = Server::start(config.clone()).await;
    let b = Server::start(config).await;
    let mut ws = b.client("bob").await;
    ws.subscribe_ok("chat:r").await;
    for n in 1..=3 {
        publish(&a, "chat:r", n).await;
    }
    assert_eq!(next_offsets(&mut ws, 3).await, [1, 2, 3]);
    redis
        .cli(&["XDEL", "herald.stream.{chat:r}", "2-0", "3-0"])
        .unwrap();
    redis
        .cli(&["HSET", "herald.meta.{chat:r}", "s", "1"])
        .unwrap();
    redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]).unwrap();
    let (code, _) = ws.expect_close_within(Duration::from_secs(10)).await;
    assert_eq!(code, 3010, "the subscriber is told its position is lost");
}

#[tokio::test]
async fn redis_paused_while_publishing_fails_publishes_reports_unhealthy_and_loses_nothing() {
    let redis = RedisServer::start();
    let pid = redis
        .cli(&["INFO", "server"])
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("process_id:").map(|p| p.trim().to_owned()))
        })
        .unwrap();
    let kill = |sig: &str| {
        let status = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(&pid)
            .status()
            .unwrap();
        assert!(status.success());
    };
    let config = node_config(json!({"address": redis.url()}));
    let a = Server::start(config.clone()).await;
    let b = Server::start(config).await;
    let mut ws = b.client("bob").await;
    ws.subscribe_ok("chat:f").await;
    publish(&a, "chat:f", 0).await;
    assert_eq!(next_offsets(&mut ws, 1).await, [1]);

    // Publish every 100 ms for ~9 s; Redis is paused (SIGSTOP) from 1 s to 6 s.
    let port = a.port;
    let publisher = tokio::spawn(async move {
        let mut results: Vec<Option<u64>> = Vec::new();
        let started = Instant::now();
        for n in 1..=90u64 {
            let body = json!({"channel": "chat:f", "data": {"n": n}}).to_string();
            let response = tokio::time::timeout(
                Duration::from_secs(10),
                http(
                    port,
                    "POST",
                    "/api/publish",
                    &[("X-API-Key", API_KEY), ("Content-Type", "application/json")],
                    Some(body.as_bytes()),
                ),
            )
            .await
            .expect("a publish answers within its deadline, never hangs");
            let reply = response.json();
            let offset = reply["result"]["offset"].as_u64();
            if offset.is_none() {
                assert!(reply.get("error").is_some(), "{reply}");
            }
            results.push(offset);
            let next = started + Duration::from_millis(100 * n);
            tokio::time::sleep_until(next.into()).await;
        }
        results
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    kill("STOP");
    let unhealthy = wait_health(&a, 503, Duration::from_secs(4)).await;
    assert!(
        unhealthy["error"]
            .as_str()
            .is_some_and(|e| e.contains("Redis")),
        "{unhealthy}"
    );
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(Duration::from_secs(1))).await;
    kill("CONT");
    wait_health(&a, 200, Duration::from_secs(10)).await;
    wait_health(&b, 200, Duration::from_secs(10)).await;
    let results = publisher.await.unwrap();
    assert!(
        results.iter().any(Option::is_none),
        "publishes during the pause fail"
    );
    assert!(
        results.iter().rev().take(5).all(Option::is_some),
        "publishes succeed again after it: {results:?}"
    );
    let acknowledged: Vec<u64> = results.into_iter().flatten().collect();

    // Every acknowledged publication is in the stream.
    let page = a
        .api_ok("history", json!({"channel": "chat:f", "limit": -1}))
        .await;
    let stored: BTreeSet<u64> = offsets(&page["publications"]).into_iter().collect();
    for offset in &acknowledged {
        assert!(stored.contains(offset), "{offset} acknowledged, not stored");
    }
    let top = page["offset"].as_u64().unwrap();
    let epoch = page["epoch"].as_str().unwrap().to_owned();
    // The subscriber stayed connected and ends with a complete state: every offset up to the
    // top, in order, with no gap — or, if its node could not fill a gap, it was told to
    // reconnect (3010) and recovers the rest.
    let mut seen = vec![1u64];
    loop {
        if seen.last() == Some(&top) {
            break;
        }
        match ws.next_frame_within(STEP).await {
            Some(Frame::Text(text)) => {
                for value in split_values(&text) {
                    if let Some(offset) = value["push"]["pub"]["offset"].as_u64() {
                        seen.push(offset);
                    }
                }
            }
            Some(Frame::Close(code, _)) => {
                assert_eq!(code, 3010, "only an insufficient-state close is acceptable");
                let mut again = b.client("bob").await;
                let last = *seen.last().unwrap();
                let reply = again
                    .call(json!({"subscribe": {"channel": "chat:f", "recover": true,
                                               "offset": last, "epoch": epoch}}))
                    .await;
                assert_eq!(reply["subscribe"]["recovered"], true, "{reply}");
                seen.extend(offsets(&reply["subscribe"]["publications"]));
                break;
            }
            other => panic!("the subscriber stopped at {seen:?} of {top}: {other:?}"),
        }
    }
    assert_eq!(seen, (1..=top).collect::<Vec<_>>(), "complete and in order");
}

#[tokio::test]
async fn redis_restarted_empty_changes_the_epoch_and_subscribers_are_told() {
    let mut redis = RedisServer::start();
    let config = node_config(json!({"address": redis.url()}));
    let a = Server::start(config.clone()).await;
    let b = Server::start(config).await;
    let mut live = b.client("bob").await;
    live.subscribe_ok("chat:e").await;
    let mut first = None;
    for n in 1..=3 {
        first.get_or_insert(publish(&a, "chat:e", n).await);
    }
    assert_eq!(next_offsets(&mut live, 3).await, [1, 2, 3]);
    let old_epoch = first.unwrap()["epoch"].as_str().unwrap().to_owned();

    redis.stop();
    wait_health(&b, 503, Duration::from_secs(5)).await;
    redis.restart();
    wait_health(&a, 200, Duration::from_secs(10)).await;
    wait_health(&b, 200, Duration::from_secs(10)).await;

    // The stream is gone: the next publication starts a new epoch (offset 1 is never reused
    // with the old one).
    let after = publish(&a, "chat:e", 4).await;
    assert_eq!(after["offset"], 1, "{after}");
    assert_ne!(after["epoch"], old_epoch.as_str(), "{after}");

    // The live subscriber's position is gone: it is told to reconnect and recover (3010).
    let (code, _) = live.expect_close_within(Duration::from_secs(10)).await;
    assert_eq!(code, 3010);

    // A client recovering from the old epoch hears that it cannot.
    let mut ws = b.client("bob").await;
    let reply = ws
        .call(json!({"subscribe": {"channel": "chat:e", "recover": true, "offset": 3, "epoch": old_epoch}}))
        .await;
    let sub = &reply["subscribe"];
    assert_eq!(sub["recovered"], Value::Null, "recovered: false: {reply}");
    assert_eq!(sub["was_recovering"], true, "{reply}");
    assert_eq!(sub["epoch"], after["epoch"], "{reply}");
}

#[tokio::test]
async fn a_redis_down_at_start_up_is_waited_for() {
    // Nothing listens there yet: the node starts, says so on /health, and refuses publishes
    // with an error; once Redis is up, everything works without a restart.
    let port = common::redis::free_port();
    let config = node_config(json!({"address": format!("redis://127.0.0.1:{port}")}));
    let node = Server::start(config).await;
    let body = wait_health(&node, 503, STEP).await;
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains(&port.to_string())),
        "{body}"
    );
    let refused = node
        .api("publish", json!({"channel": "chat:d", "data": {}}))
        .await
        .json();
    assert!(refused.get("error").is_some(), "{refused}");
    let _redis = RedisServer::start_on(port);
    wait_health(&node, 200, Duration::from_secs(10)).await;
    let mut ws = node.client("bob").await;
    ws.subscribe_ok("chat:d").await;
    publish(&node, "chat:d", 1).await;
    assert_eq!(next_offsets(&mut ws, 1).await, [1]);
}

#[tokio::test]
async fn tls_to_redis_verifies_the_server_with_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let cert = common::tls::TestCert::generate(dir.path(), "redis");
    let tls_port = common::redis::free_port();
    let path = |p: &std::path::Path| p.display().to_string();
    let redis = RedisServer::start_with(&[
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        &path(&cert.cert),
        "--tls-key-file",
        &path(&cert.key),
        "--tls-ca-cert-file",
        &path(&cert.ca),
        "--tls-auth-clients",
        "no",
    ]);
    let node = Server::start(node_config(json!({
        "address": format!("rediss://localhost:{tls_port}"),
        "tls": {"server_ca_pem_file": cert.ca},
    })))
    .await;
    wait_health(&node, 200, Duration::from_secs(10)).await;
    let mut ws = node.client("bob").await;
    ws.subscribe_ok("chat:tls").await;
    publish(&node, "chat:tls", 1).await;
    assert_eq!(next_offsets(&mut ws, 1).await, [1]);
    assert!(
        redis
            .cli(&["EXISTS", "herald.stream.{chat:tls}"])
            .is_some_and(|o| o.trim() == "1")
    );
    // Without the CA, the server's certificate is not trusted: unhealthy, naming the shard.
    let untrusting = Server::start(node_config(json!({
        "address": format!("rediss://localhost:{tls_port}"),
    })))
    .await;
    let body = wait_health(&untrusting, 503, STEP).await;
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains(&tls_port.to_string())),
        "{body}"
    );
}
