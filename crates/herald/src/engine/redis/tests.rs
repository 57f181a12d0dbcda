//! The Redis broker against a real `redis-server` (started by the integration tests' helper,
//! `tests/common/redis.rs`): what the embedded engine's unit tests check of its streams —
//! version suppression, TTL and size trimming, meta expiry, removal, idempotency — and what
//! only a multi-node broker does: filling a gap in its PUB/SUB delivery from the stream, and
//! telling the node when it cannot.

#[path = "../../../tests/common/redis.rs"]
#[allow(dead_code)]
mod redis_server;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{RedisBroker, RedisShards};
use crate::config::RedisConfig;
use crate::engine::{
    AppendRequest, AppendResult, BoxFuture, Broker, BrokerEventHandler, EngineError, History,
    HistoryFilter, HistoryOptions, StreamPosition,
};
use crate::protocol::{ClientInfo, Publication, raw};
use redis_server::RedisServer;

fn opts(size: usize) -> HistoryOptions {
    HistoryOptions {
        size,
        ttl: Duration::from_secs(3600),
        meta_ttl: Duration::from_secs(7200),
    }
}

fn broker(redis: &RedisServer) -> RedisBroker {
    let shards = RedisShards::connect(&RedisConfig {
        address: vec![redis.url()],
        ..RedisConfig::default()
    })
    .unwrap();
    RedisBroker::new(shards)
}

fn request(channel: &str, n: u64, o: HistoryOptions) -> AppendRequest {
    AppendRequest::new(channel, raw(format!(r#"{{"n":{n}}}"#)).unwrap(), o)
}

/// Records what the broker hands to the node.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl BrokerEventHandler for Recorder {
    fn handle_publication(&self, channel: &str, publication: &Publication, _delta: bool) {
        let line = format!("pub {channel} {}", publication.offset);
        self.0.lock().unwrap().push(line);
    }
    fn handle_join(&self, channel: &str, info: &ClientInfo) {
        self.0
            .lock()
            .unwrap()
            .push(format!("join {channel} {}", info.client));
    }
    fn handle_leave(&self, channel: &str, info: &ClientInfo) {
        self.0
            .lock()
            .unwrap()
            .push(format!("leave {channel} {}", info.client));
    }
    fn handle_insufficient_state(&self, channel: &str) {
        self.0
            .lock()
            .unwrap()
            .push(format!("insufficient {channel}"));
    }
}

impl Recorder {
    /// Waits (bounded) until `n` events were recorded; them.
    async fn wait(&self, n: usize) -> Vec<String> {
        for _ in 0..100 {
            if self.0.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.0.lock().unwrap().clone()
    }
}

async fn ready(broker: &RedisBroker) {
    for _ in 0..100 {
        if broker.health().is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the PUB/SUB link did not come up: {:?}", broker.health());
}

/// A broker whose PUB/SUB link is up, handing what it hears to the returned recorder.
async fn listening(redis: &RedisServer) -> (RedisBroker, Arc<Recorder>) {
    let b = broker(redis);
    let recorder = Arc::new(Recorder::default());
    b.set_handler(recorder.clone());
    ready(&b).await;
    (b, recorder)
}

#[tokio::test]
async fn a_stale_version_is_suppressed_without_using_an_offset() {
    let redis = RedisServer::start();
    let b = broker(&redis);
    let versioned = |n, version, epoch: &str| {
        let mut r = request("v", n, opts(100));
        r.version = version;
        r.version_epoch = epoch.into();
        r
    };
    let first = b.publish(versioned(1, 2, "")).await.unwrap();
    assert_eq!((first.position.offset, first.suppressed), (1, false));
    let stale = b.publish(versioned(2, 1, "")).await.unwrap();
    assert_eq!((stale.position.offset, stale.suppressed), (1, true));
    assert!(stale.publication.is_none());
    let same = b.publish(versioned(3, 2, "")).await.unwrap();
    assert!(same.suppressed);
    // Another version epoch restarts the versions.
    let other = b.publish(versioned(4, 1, "e2")).await.unwrap();
    assert_eq!((other.position.offset, other.suppressed), (2, false));
    let newer = b.publish(versioned(5, 3, "e2")).await.unwrap();
    assert_eq!(newer.position.offset, 3);
}

#[tokio::test]
async fn idempotency_keys_return_the_first_result() {
    let redis = RedisServer::start();
    let b = broker(&redis);
    let keyed = |n| AppendRequest {
        idempotency_key: Some("k".into()),
        ..request("i", n, opts(100))
    };
    let first = b.publish(keyed(1)).await.unwrap();
    let again = b.publish(keyed(2)).await.unwrap();
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!(again.position, first.position);
    let read = b
        .read("i", HistoryFilter::default(), opts(100))
        .await
        .unwrap();
    assert_eq!(read.publications.len(), 1);
    assert_eq!(read.publications[0].data.get(), r#"{"n":1}"#);
}

#[tokio::test]
async fn size_and_ttl_trim_and_an_idle_stream_gets_a_new_epoch() {
    let redis = RedisServer::start();
    let b = broker(&redis);
    for n in 1..=10 {
        b.publish(request("s", n, opts(3))).await.unwrap();
    }
    let read = b
        .read("s", HistoryFilter::default(), opts(3))
        .await
        .unwrap();
    let offsets: Vec<u64> = read.publications.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, [8, 9, 10]);
    let short = HistoryOptions {
        size: 100,
        ttl: Duration::from_millis(200),
        meta_ttl: Duration::from_millis(600),
    };
    let epoch = b
        .publish(request("t", 1, short))
        .await
        .unwrap()
        .position
        .epoch;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let read = b.read("t", HistoryFilter::default(), short).await.unwrap();
    assert!(read.publications.is_empty(), "expired");
    assert_eq!(read.position, StreamPosition::new(1, epoch.clone()));
    let gone = b
        .recover("t", StreamPosition::new(0, epoch.clone()), 10, short)
        .await;
    assert!(
        !gone.unwrap().recovered,
        "an expired publication cannot be recovered"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let top = b.top("t", short).await.unwrap();
    assert_eq!(top.offset, 0);
    assert_ne!(top.epoch, epoch, "the stream's meta expired: a new epoch");
}

#[tokio::test]
async fn removal_keeps_the_position_and_positions_before_it_do_not_recover() {
    let redis = RedisServer::start();
    let b = broker(&redis);
    for n in 1..=3 {
        b.publish(request("r", n, opts(100))).await.unwrap();
    }
    let epoch = b.top("r", opts(100)).await.unwrap().epoch;
    b.remove("r").await.unwrap();
    assert_eq!(
        b.top("r", opts(100)).await.unwrap(),
        StreamPosition::new(3, epoch.clone())
    );
    let before = b
        .recover("r", StreamPosition::new(1, epoch.clone()), 10, opts(100))
        .await
        .unwrap();
    assert!(!before.recovered);
    b.publish(request("r", 4, opts(100))).await.unwrap();
    let after = b
        .recover("r", StreamPosition::new(3, epoch.clone()), 10, opts(100))
        .await
        .unwrap();
    assert!(after.recovered);
    assert_eq!(after.publications[0].offset, 4);
}

/// The embedded engine's recovery and paging checks (`engine/embedded/tests.rs`), run against
/// the Redis broker: the same answers from either engine.
#[tokio::test]
async fn recovery_and_paging_answer_as_the_embedded_engine_does() {
    use crate::engine::embedded::tests::{check_paging, check_recovery};
    let redis = RedisServer::start();
    let b = broker(&redis);
    for n in 1..=10 {
        b.publish(request("r", n, opts(100))).await.unwrap();
    }
    let epoch = b.top("r", opts(100)).await.unwrap().epoch;
    check_recovery(&b, &epoch).await;
    for n in 1..=20 {
        b.publish(request("p", n, opts(100))).await.unwrap();
    }
    check_paging(&b).await;
}

/// Publishes publication `n` of `channel` the way `publish.lua` does, but to a PUB/SUB
/// channel nobody listens on: as if this node's link had dropped its message.
async fn publish_unheard(b: &RedisBroker, channel: &str, n: u64, o: HistoryOptions) {
    let inner = &b.inner;
    let mut conn = inner.shards.for_key(channel).conn().await.unwrap();
    let _: Vec<Vec<String>> = redis::Script::new(include_str!("publish.lua"))
        .key(inner.stream_key(channel))
        .key(inner.meta_key(channel))
        .key(inner.idempotency_key(channel, ""))
        .arg("nobody-listens")
        .arg(format!(r#"{{"n":{n}}}"#))
        .arg("")
        .arg("")
        .arg(o.size)
        .arg(o.ttl.as_millis() as u64)
        .arg(o.meta_ttl.as_millis() as u64)
        .arg("0")
        .arg(1000)
        .arg("epoch")
        .arg(0)
        .arg("")
        .arg("0")
        .invoke_async(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_gap_in_delivery_is_filled_from_the_stream_in_order() {
    let redis = RedisServer::start();
    let (b, recorder) = listening(&redis).await;
    b.subscribe("g").await.unwrap();
    b.publish(request("g", 1, opts(100))).await.unwrap();
    assert_eq!(recorder.wait(1).await, ["pub g 1"]);
    publish_unheard(&b, "g", 2, opts(100)).await;
    publish_unheard(&b, "g", 3, opts(100)).await;
    b.publish(request("g", 4, opts(100))).await.unwrap();
    assert_eq!(
        recorder.wait(4).await,
        ["pub g 1", "pub g 2", "pub g 3", "pub g 4"]
    );
    // Join and leave travel the same way.
    let info = ClientInfo {
        client: "c1".into(),
        ..ClientInfo::default()
    };
    b.publish_join("g", &info).await.unwrap();
    b.publish_leave("g", &info).await.unwrap();
    assert_eq!(recorder.wait(6).await[4..], ["join g c1", "leave g c1"]);
}

#[tokio::test]
async fn a_gap_that_cannot_be_filled_tells_the_node() {
    let redis = RedisServer::start();
    let (b, recorder) = listening(&redis).await;
    b.subscribe("h").await.unwrap();
    b.publish(request("h", 1, opts(1))).await.unwrap();
    assert_eq!(recorder.wait(1).await, ["pub h 1"]);
    // Offset 2 is missed and trimmed away (history_size 1) by the time 3 arrives.
    publish_unheard(&b, "h", 2, opts(1)).await;
    b.publish(request("h", 3, opts(1))).await.unwrap();
    assert_eq!(recorder.wait(2).await, ["pub h 1", "insufficient h"]);
}

/// `cmdstat_<name>:calls=N` of `INFO commandstats`.
fn calls(redis: &RedisServer, command: &str) -> u64 {
    redis
        .cli(&["INFO", "commandstats"])
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn many_subscriptions_at_once_go_out_in_few_commands_and_last_one_out_unsubscribes() {
    let redis = RedisServer::start();
    let b = broker(&redis);
    ready(&b).await;
    let before = calls(&redis, "subscribe");
    let channels: Vec<String> = (0..300).map(|i| format!("m{i}")).collect();
    let results = futures_util::future::join_all(channels.iter().map(|c| b.subscribe(c))).await;
    assert!(results.iter().all(Result::is_ok));
    let subscribes = calls(&redis, "subscribe") - before;
    assert!(
        subscribes < 30,
        "{subscribes} SUBSCRIBE commands for 300 channels"
    );
    let listed = redis
        .cli(&["PUBSUB", "CHANNELS", "herald.ch.*"])
        .unwrap_or_default();
    assert_eq!(listed.lines().count(), 300);
    for c in &channels {
        b.unsubscribe(c).await.unwrap();
    }
    for _ in 0..100 {
        let left = redis
            .cli(&["PUBSUB", "CHANNELS", "herald.ch.*"])
            .unwrap_or_default();
        if left.trim().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the node is still subscribed after its last subscriber left");
}

/// A PUB/SUB handler stuck on its first message until released; counts what it was handed and
/// how often the link (re)connected.
#[derive(Default)]
struct Stuck {
    release: tokio::sync::Notify,
    released: std::sync::atomic::AtomicBool,
    handled: std::sync::atomic::AtomicUsize,
    connected: std::sync::atomic::AtomicUsize,
}

impl super::PubSubHandler for Stuck {
    fn on_message<'a>(
        &'a self,
        _channel: &'a str,
        _payload: &'a [u8],
    ) -> crate::engine::BoxFuture<'a, ()> {
        Box::pin(async move {
            use std::sync::atomic::Ordering::SeqCst;
            self.handled.fetch_add(1, SeqCst);
            if !self.released.load(SeqCst) {
                self.release.notified().await;
            }
        })
    }
    fn on_resubscribed(&self) -> crate::engine::BoxFuture<'_, ()> {
        self.connected
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async {})
    }
}

#[tokio::test]
async fn a_handler_that_falls_behind_gets_its_link_cut_at_the_byte_bound_not_more_memory() {
    use std::sync::atomic::Ordering::SeqCst;
    let redis = RedisServer::start();
    let shards = RedisShards::connect(&RedisConfig {
        address: vec![redis.url()],
        ..RedisConfig::default()
    })
    .unwrap();
    let shard = shards.all()[0].clone();
    let stuck = Arc::new(Stuck::default());
    let weak: std::sync::Weak<dyn super::PubSubHandler> =
        Arc::downgrade(&(stuck.clone() as Arc<dyn super::PubSubHandler>));
    // Room for ~16 messages of 1 KiB.
    let link = super::PubSubLink::start_with_backlog(
        shard.clone(),
        "t.probe".into(),
        Duration::from_secs(4),
        weak,
        16 * (1024 + 200),
    );
    link.subscribe("t.ch".into()).await.unwrap();
    assert_eq!(stuck.connected.load(SeqCst), 1);
    let mut conn = shard.conn().await.unwrap();
    let payload = "x".repeat(1024);
    for _ in 0..200 {
        let _: i64 = redis::cmd("PUBLISH")
            .arg("t.ch")
            .arg(&payload)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    // The handler still sits on the first message: the link stops holding more than its
    // bound and is made again (its handler told, as after any outage)...
    for _ in 0..200 {
        if stuck.connected.load(SeqCst) >= 2 || link.health().is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        link.health().is_err() || stuck.connected.load(SeqCst) >= 2,
        "the link kept everything for a stuck handler"
    );
    // ...once the message in hand is done: the 199 that waited (or what passed the bound) are
    // dropped, never handed over.
    stuck.released.store(true, SeqCst);
    stuck.release.notify_one();
    for _ in 0..200 {
        if stuck.connected.load(SeqCst) >= 2 && link.health().is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stuck.connected.load(SeqCst), 2, "{:?}", link.health());
    let handled = stuck.handled.load(SeqCst);
    assert_eq!(handled, 1, "queued messages were handed over after the cut");
    // The new connection delivers again, to the same subscriptions.
    let _: i64 = redis::cmd("PUBLISH")
        .arg("t.ch")
        .arg("after")
        .query_async(&mut conn)
        .await
        .unwrap();
    for _ in 0..100 {
        if stuck.handled.load(SeqCst) > handled {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("nothing was delivered after the link was made again");
}

#[tokio::test]
async fn many_identical_recoveries_at_once_cost_a_few_reads() {
    let redis = RedisServer::start();
    let b = Arc::new(broker(&redis));
    ready(&b).await;
    for n in 1..=20 {
        b.publish(request("storm", n, opts(100))).await.unwrap();
    }
    let top = b.top("storm", opts(100)).await.unwrap();
    let since = StreamPosition::new(10, top.epoch.clone());
    let before = calls(&redis, "evalsha") + calls(&redis, "eval");
    let recoveries = futures_util::future::join_all((0..2000).map(|_| {
        let b = b.clone();
        let since = since.clone();
        async move { b.recover("storm", since, 100, opts(100)).await }
    }))
    .await;
    let reads = calls(&redis, "evalsha") + calls(&redis, "eval") - before;
    for r in &recoveries {
        let r = r.as_ref().unwrap();
        assert!(r.recovered);
        let offsets: Vec<u64> = r.publications.iter().map(|p| p.offset).collect();
        assert_eq!(offsets, (11..=20).collect::<Vec<_>>());
        assert_eq!(r.position, top);
    }
    assert!(reads <= 40, "{reads} reads for 2,000 identical recoveries");
    // A read that starts after a publication sees it (a joined read is never older than the
    // call that joined it).
    b.publish(request("storm", 21, opts(100))).await.unwrap();
    let r = b.recover("storm", since, 100, opts(100)).await.unwrap();
    assert_eq!(r.publications.len(), 11);
}

#[tokio::test]
async fn the_liveness_probe_has_a_connection_of_its_own() {
    let redis = RedisServer::start();
    let b = broker(&redis);
    ready(&b).await;
    b.publish(request("p", 1, opts(10))).await.unwrap();
    let _ = b.top("p", opts(10)).await.unwrap();
    // Let a probe go out (the link is idle).
    tokio::time::sleep(super::PROBE_INTERVAL * 2).await;
    // Publishes, reads, probes and PUB/SUB: four connections of this node.
    let clients = redis.cli(&["CLIENT", "LIST"]).unwrap_or_default();
    let connections = clients
        .lines()
        .filter(|l| !l.contains("cmd=client"))
        .count();
    assert_eq!(connections, 4, "{clients}");
}

/// `evalsha` + `eval` calls so far (the publish and read scripts).
fn script_calls(redis: &RedisServer) -> u64 {
    calls(redis, "evalsha") + calls(redis, "eval")
}

/// The publication numbers (`{"n":N}`) of a channel's history, in offset order, and whether
/// the offsets run 1, 2, 3, ….
async fn history_numbers(b: &RedisBroker, channel: &str) -> (Vec<u64>, bool) {
    let read = b
        .read(
            channel,
            HistoryFilter {
                limit: -1,
                ..HistoryFilter::default()
            },
            opts(1000),
        )
        .await
        .unwrap();
    let contiguous = read
        .publications
        .iter()
        .enumerate()
        .all(|(i, p)| p.offset == i as u64 + 1);
    let numbers = read
        .publications
        .iter()
        .map(|p| {
            let value: serde_json::Value = serde_json::from_str(p.data.get()).unwrap();
            value["n"].as_u64().unwrap()
        })
        .collect();
    (numbers, contiguous)
}

#[tokio::test]
async fn concurrent_publishes_share_calls_and_keep_each_channels_order() {
    let redis = RedisServer::start();
    let (b, recorder) = listening(&redis).await;
    let channels: Vec<String> = (0..8).map(|i| format!("c{i}")).collect();
    for channel in &channels {
        b.subscribe(channel).await.unwrap();
    }
    let per_channel = 40u64;
    // Submitted in this order (join_all polls them in order): round-robin over the channels,
    // so every call in flight has the next publications of every channel waiting behind it.
    let requests: Vec<(String, u64)> = (1..=per_channel)
        .flat_map(|n| channels.iter().map(move |c| (c.clone(), n)))
        .collect();
    let before = script_calls(&redis);
    let results = futures_util::future::join_all(
        requests
            .iter()
            .map(|(c, n)| b.publish(request(c, *n, opts(1000)))),
    )
    .await;
    let calls = script_calls(&redis) - before;
    for ((channel, n), result) in requests.iter().zip(&results) {
        let result = result.as_ref().unwrap();
        assert_eq!(
            result.position.offset, *n,
            "{channel}: offsets in submission order"
        );
        assert_eq!(result.publication.as_ref().unwrap().offset, *n);
    }
    assert!(
        calls <= requests.len() as u64 / 4,
        "{calls} script calls for {} publishes",
        requests.len()
    );
    for channel in &channels {
        let (numbers, contiguous) = history_numbers(&b, channel).await;
        assert!(contiguous, "{channel}");
        assert_eq!(numbers, (1..=per_channel).collect::<Vec<_>>(), "{channel}");
    }
    // Every publication reached this node's subscribers, in order per channel.
    let delivered = recorder.wait(requests.len()).await;
    assert_eq!(delivered.len(), requests.len());
    for channel in &channels {
        let offsets: Vec<u64> = delivered
            .iter()
            .filter_map(|line| line.strip_prefix(&format!("pub {channel} ")))
            .map(|o| o.parse().unwrap())
            .collect();
        assert_eq!(offsets, (1..=per_channel).collect::<Vec<_>>(), "{channel}");
    }
    assert!(!delivered.iter().any(|l| l.starts_with("insufficient")));
}

/// Publishes that go out alone at once and keep every call in flight busy, so that what is
/// published next waits and goes in one call. The script is loaded first (a first call is
/// answered NOSCRIPT and sent again, which `INFO commandstats` counts).
async fn fill_calls_in_flight(
    b: &RedisBroker,
) -> Vec<BoxFuture<'_, Result<AppendResult, EngineError>>> {
    b.publish(request("warm", 1, opts(10))).await.unwrap();
    (0..super::publish_batch::CALLS_IN_FLIGHT)
        .map(|i| b.publish(request(&format!("busy{i}"), 1, opts(10))))
        .collect()
}

#[tokio::test]
async fn an_idempotency_key_repeated_in_one_call_answers_the_first() {
    let redis = RedisServer::start();
    let b = broker(&redis);
    let keyed = |n| AppendRequest {
        idempotency_key: Some("k".into()),
        ..request("i", n, opts(100))
    };
    let mut publishes = fill_calls_in_flight(&b).await;
    let first = publishes.len();
    publishes.push(b.publish(keyed(1)));
    publishes.push(b.publish(request("i", 2, opts(100))));
    publishes.push(b.publish(keyed(3)));
    let before = script_calls(&redis);
    let results = futures_util::future::join_all(publishes).await;
    assert_eq!(
        script_calls(&redis) - before,
        first as u64 + 1,
        "the three publications of \"i\" went in one call"
    );
    let [keyed_1, plain, keyed_3] = [&results[first], &results[first + 1], &results[first + 2]]
        .map(|r| r.as_ref().unwrap().clone());
    assert!(!keyed_1.duplicate);
    assert_eq!(keyed_1.position.offset, 1);
    assert_eq!(plain.position.offset, 2);
    assert!(keyed_3.duplicate, "the same key: the first's result");
    assert_eq!(keyed_3.position, keyed_1.position);
    assert!(keyed_3.publication.is_none());
    assert_eq!(history_numbers(&b, "i").await, (vec![1, 2], true));
}

#[tokio::test]
async fn a_publication_that_fails_in_a_call_fails_alone() {
    let redis = RedisServer::start();
    let b = broker(&redis);
    // "bad"'s meta is a string: the script's HMGET on it fails with WRONGTYPE.
    redis
        .cli(&["SET", "herald.meta.{bad}", "not a hash"])
        .unwrap();
    let mut publishes = fill_calls_in_flight(&b).await;
    let first = publishes.len();
    publishes.push(b.publish(request("good", 1, opts(100))));
    publishes.push(b.publish(request("bad", 2, opts(100))));
    publishes.push(b.publish(request("other", 3, opts(100))));
    publishes.push(b.publish(request("good", 4, opts(100))));
    let before = script_calls(&redis);
    let results = futures_util::future::join_all(publishes).await;
    assert_eq!(
        script_calls(&redis) - before,
        first as u64 + 1,
        "the four went in one call"
    );
    let offsets: Vec<Option<u64>> = results[first..]
        .iter()
        .map(|r| r.as_ref().ok().map(|r| r.position.offset))
        .collect();
    assert_eq!(offsets, [Some(1), None, Some(1), Some(2)]);
    let error = results[first + 1].as_ref().unwrap_err().to_string();
    assert!(error.contains("WRONGTYPE"), "{error}");
    assert!(error.contains("Redis (shard 0 at"), "{error}");
    assert_eq!(history_numbers(&b, "good").await, (vec![1, 4], true));
    assert_eq!(history_numbers(&b, "other").await, (vec![3], true));
    assert_eq!(
        redis
            .cli(&["EXISTS", "herald.stream.{bad}"])
            .unwrap()
            .trim(),
        "0",
        "nothing of the failed publication was stored"
    );
}

#[tokio::test]
async fn a_call_that_fails_as_a_whole_fails_each_publication_in_it_clearly() {
    let mut redis = RedisServer::start();
    let b = broker(&redis);
    b.publish(request("w", 1, opts(10))).await.unwrap();
    redis.stop();
    let results = futures_util::future::join_all(
        (0..20).map(|i| b.publish(request(&format!("w{}", i % 3), i, opts(10)))),
    )
    .await;
    for r in results {
        match r {
            Err(EngineError::Unavailable(e)) => {
                assert!(e.contains("Redis") && e.contains(&redis.url()[8..]), "{e}")
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn publishes_batched_on_a_redis_cluster_carry_one_slot_per_call() {
    let cluster = redis_server::RedisCluster::start();
    let b = RedisBroker::new(
        RedisShards::connect(&RedisConfig {
            cluster_address: cluster.urls(),
            ..RedisConfig::default()
        })
        .unwrap(),
    );
    // Channels in many slots (and on all three masters).
    let channels: Vec<String> = (0..30).map(|i| format!("k{i}")).collect();
    let per_channel = 10u64;
    let requests: Vec<(String, u64)> = (1..=per_channel)
        .flat_map(|n| channels.iter().map(move |c| (c.clone(), n)))
        .collect();
    let results = futures_util::future::join_all(
        requests
            .iter()
            .map(|(c, n)| b.publish(request(c, *n, opts(100)))),
    )
    .await;
    for ((channel, n), result) in requests.iter().zip(&results) {
        let result = result.as_ref().unwrap_or_else(|e| panic!("{channel}: {e}"));
        assert_eq!(result.position.offset, *n, "{channel}");
    }
    for channel in &channels {
        let (numbers, contiguous) = history_numbers(&b, channel).await;
        assert!(contiguous, "{channel}");
        assert_eq!(numbers, (1..=per_channel).collect::<Vec<_>>(), "{channel}");
    }
    // Fewer calls than publications: they were batched (by slot).
    let calls: u64 = cluster
        .ports
        .iter()
        .map(|p| {
            redis_server::cli(*p, &["INFO", "commandstats"])
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
                .and_then(|rest| rest.split(',').next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum();
    assert!(
        calls < requests.len() as u64 + channels.len() as u64,
        "{calls} calls for {} publishes and {} reads",
        requests.len(),
        channels.len()
    );
}
