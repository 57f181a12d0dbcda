//! [`RedisStore`]: the webhooks' shared state and durable queue in Redis, for a cluster on the
//! Redis engine — "the engine's store in a cluster". Every node writes into it, so who is
//! online (a channel occupied) is decided once for the cluster, and a node's crash loses no
//! event.
//!
//! # Keys (tag `T` = `{<engine.redis.prefix>.webhooks}`, one Redis Cluster slot)
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `T.user.<id>`, `T.channel.<name>` | hash | node → when its entry expires (Redis ms): the nodes where the user is connected (the channel has subscribers) |
//! | `T.users`, `T.channels` | sorted set | the users announced online (channels occupied), scored by when to look at them next |
//! | `T.events` | stream | the events waiting for the backend, in order; field `b`, the event's JSON |
//! | `T.bytes` | string | the bytes `T.events` holds (for `webhooks.max_queue_bytes`) |
//! | `T.lease` | string | the node delivering now (expires unless renewed) |
//!
//! # Who emits what
//!
//! Each script is atomic, so the decisions are made once for the cluster:
//!
//! * [`RedisStore::up`]: a node's first local connection of a user (and each refresh) sets the
//!   node's entry to expire after `engine.redis.presence_ttl`; if the user is not in `T.users`
//!   it is added there and `user_online` appended to `T.events` — in the same script, so
//!   exactly one node announces a user's first connection anywhere.
//! * [`RedisStore::down`]: the node's last local connection gone removes its entry; when no
//!   entry of another node is live, the user's score becomes now + `offline_grace`.
//! * [`RedisStore::sweep`] (every node, often): users whose score has passed are looked at
//!   again; with no live entry (the last one left and the grace passed, or the nodes holding
//!   the user crashed and stopped refreshing their entries) the user leaves `T.users` and
//!   `user_offline` is appended; with live entries the score moves to the latest expiry.
//!
//! Channels are the same with `channel_occupied` / `channel_vacated` and `vacated_grace`.
//!
//! # Delivery
//!
//! One node at a time holds `T.lease` ([`RedisStore::lease`]) and delivers the front of
//! `T.events` ([`RedisStore::front`]); a batch the backend acknowledged is deleted
//! ([`RedisStore::delivered`]). A node that dies with the lease is replaced once the lease
//! expires; the batch it was sending is sent again (at least once: the backend drops ids it
//! has seen).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use redis::Script;

use super::queue::QueueMetrics;
use crate::engine::EngineError;
use crate::engine::redis::{RedisShards, Shard, deadline};

/// Shared by the scripts: Redis's clock in ms (`now`), `live(h)` (drops a hash's expired node
/// entries, returns the latest expiry left or nil) and `emit(...)` (appends one event to the
/// stream within the queue's bounds). KEYS[2] is the stream, KEYS[3] the byte count.
const PRELUDE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function live(h)
  local flat = redis.call('HGETALL', h)
  local max = nil
  for i = 1, #flat, 2 do
    local e = tonumber(flat[i + 1])
    if not e or e <= now then redis.call('HDEL', h, flat[i])
    elseif not max or e > max then max = e end
  end
  return max
end
local function push(body, max_queue, max_bytes)
  local bytes = tonumber(redis.call('GET', KEYS[3]) or '0')
  if redis.call('XLEN', KEYS[2]) >= max_queue or bytes + #body > max_bytes then return 0 end
  redis.call('XADD', KEYS[2], '*', 'b', body)
  redis.call('INCRBY', KEYS[3], #body)
  return 1
end
local function emit(kind, field, key, id, max_queue, max_bytes)
  local body = '{"id":' .. cjson.encode(id) .. ',"type":"' .. kind .. '","time":' ..
    string.format('%d', now) .. ',"' .. field .. '":' .. cjson.encode(key) .. '}'
  return push(body, max_queue, max_bytes)
end
"#;

/// A node's entries up (first connection, or a refresh). KEYS: zset, stream, bytes. ARGV:
/// hash prefix, node, ttl ms, send (1/0), event type, field, max_queue, max_bytes, then
/// key, id pairs. Returns {emitted, dropped}.
static UP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PRELUDE}
local ttl = tonumber(ARGV[3])
local mq, mb = tonumber(ARGV[7]), tonumber(ARGV[8])
local emitted, dropped = 0, 0
for i = 9, #ARGV, 2 do
  local key, id = ARGV[i], ARGV[i + 1]
  local h = ARGV[1] .. key
  redis.call('HSET', h, ARGV[2], now + ttl)
  redis.call('PEXPIRE', h, ttl)
  local s = redis.call('ZSCORE', KEYS[1], key)
  if not s then
    if ARGV[4] == '1' then
      if emit(ARGV[5], ARGV[6], key, id, mq, mb) == 1 then emitted = emitted + 1
      else dropped = dropped + 1 end
    end
    redis.call('ZADD', KEYS[1], now + ttl, key)
  elseif tonumber(s) < now + ttl then
    redis.call('ZADD', KEYS[1], now + ttl, key)
  end
end
return {{emitted, dropped}}"
    ))
});

/// A node's entries down (its last local connection or subscriber gone). KEYS: zset, stream,
/// bytes (unused). ARGV: hash prefix, node, grace ms, then keys.
static DOWN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PRELUDE}
local grace = tonumber(ARGV[3])
for i = 4, #ARGV do
  local key = ARGV[i]
  local h = ARGV[1] .. key
  redis.call('HDEL', h, ARGV[2])
  if redis.call('ZSCORE', KEYS[1], key) and not live(h) then
    redis.call('ZADD', KEYS[1], now + grace, key)
  end
end
return 1"
    ))
});

/// Looks at the keys whose time has come. KEYS: zset, stream, bytes. ARGV: hash prefix, send,
/// event type, field, max_queue, max_bytes, then one id per key it may look at. Returns
/// {emitted, dropped, looked at}.
static SWEEP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PRELUDE}
local limit = #ARGV - 6
local mq, mb = tonumber(ARGV[5]), tonumber(ARGV[6])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)
local emitted, dropped = 0, 0
for i, key in ipairs(due) do
  local h = ARGV[1] .. key
  local max = live(h)
  if max then
    redis.call('ZADD', KEYS[1], max, key)
  else
    redis.call('ZREM', KEYS[1], key)
    redis.call('DEL', h)
    if ARGV[2] == '1' then
      if emit(ARGV[3], ARGV[4], key, ARGV[6 + i], mq, mb) == 1 then emitted = emitted + 1
      else dropped = dropped + 1 end
    end
  end
end
return {{emitted, dropped, #due}}"
    ))
});

/// Appends one event. KEYS: unused, stream, bytes. ARGV: max_queue, max_bytes, body.
static PUSH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PRELUDE}
return push(ARGV[3], tonumber(ARGV[1]), tonumber(ARGV[2]))"
    ))
});

/// Takes or renews the lease. KEYS: lease. ARGV: node, ms. Returns 1 when held.
static LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not holder then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0",
    )
});

/// Gives the lease back if held. KEYS: lease. ARGV: node.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1",
    )
});

/// Deletes delivered events. KEYS: stream, bytes. ARGV: their bytes, then their ids. Returns
/// the events left.
static DELIVERED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local ids = {}
for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
if #ids > 0 then redis.call('XDEL', KEYS[1], unpack(ids)) end
if redis.call('DECRBY', KEYS[2], ARGV[1]) < 0 then redis.call('SET', KEYS[2], 0) end
return redis.call('XLEN', KEYS[1])",
    )
});

/// Most keys in one script call (bounds its size and how long it holds Redis).
pub const BATCH: usize = 500;

/// Users or channels: which keys and events a script works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// Users: `user_online` / `user_offline`.
    User,
    /// Channels: `channel_occupied` / `channel_vacated`.
    Channel,
}

impl Subject {
    fn name(self) -> &'static str {
        match self {
            Subject::User => "user",
            Subject::Channel => "channel",
        }
    }

    fn events(self) -> (&'static str, &'static str) {
        match self {
            Subject::User => ("user_online", "user_offline"),
            Subject::Channel => ("channel_occupied", "channel_vacated"),
        }
    }
}

/// Events appended by a script, and events it dropped because the queue was full.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Emitted {
    /// Appended to the stream.
    pub emitted: u64,
    /// Not appended: `webhooks.max_queue` / `max_queue_bytes` reached.
    pub dropped: u64,
}

/// One event read from the stream.
#[derive(Debug, Clone)]
pub struct StreamEvent {
    /// Its stream entry id.
    pub id: String,
    /// Its JSON.
    pub body: Bytes,
}

/// The webhooks' Redis state of one node (see the module documentation).
pub struct RedisStore {
    shards: Arc<RedisShards>,
    /// `{<prefix>.webhooks}`: every key starts with it.
    tag: String,
    /// This node's name in the entries and the lease (a fresh UUID per start).
    node: String,
    ttl: Duration,
    max_queue: usize,
    max_bytes: usize,
    timeout: Duration,
    metrics: QueueMetrics,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("tag", &self.tag)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl RedisStore {
    /// The store over `shards` (its own connections), entries living `ttl` unless refreshed,
    /// the queue bounded by `max_queue` events and `max_bytes` bytes.
    pub fn new(
        shards: Arc<RedisShards>,
        ttl: Duration,
        max_queue: usize,
        max_bytes: usize,
        metrics: QueueMetrics,
    ) -> RedisStore {
        let tag = format!("{{{}.webhooks}}", shards.prefix());
        // A script may take two round trips (EVALSHA, then EVAL).
        let timeout = shards.io_timeout() * 2;
        RedisStore {
            shards,
            tag,
            node: uuid::Uuid::new_v4().to_string(),
            ttl: ttl.max(Duration::from_millis(1)),
            max_queue,
            max_bytes,
            timeout,
            metrics,
        }
    }

    /// The queue's metrics.
    pub fn metrics(&self) -> &QueueMetrics {
        &self.metrics
    }

    fn shard(&self) -> &Arc<Shard> {
        self.shards.for_key(&self.tag)
    }

    fn key(&self, name: &str) -> String {
        format!("{}.{name}", self.tag)
    }

    /// The zset, stream and byte-count keys of `subject`.
    fn keys(&self, subject: Subject) -> [String; 3] {
        [
            self.key(&format!("{}s", subject.name())),
            self.key("events"),
            self.key("bytes"),
        ]
    }

    fn hash_prefix(&self, subject: Subject) -> String {
        format!("{}.{}.", self.tag, subject.name())
    }

    async fn invoke<T: redis::FromRedisValue>(
        &self,
        what: &str,
        call: redis::ScriptInvocation<'_>,
    ) -> Result<T, EngineError> {
        let mut con = self.shard().conn().await?;
        deadline(self.timeout, what, call.invoke_async::<T>(&mut con)).await
    }

    fn count(&self, emitted: Emitted) -> Emitted {
        if emitted.dropped > 0 {
            self.metrics.dropped.inc_by(emitted.dropped);
            tracing::error!(
                dropped = emitted.dropped,
                "webhooks: the event queue in Redis is full (webhooks.max_queue / \
                 max_queue_bytes), events are being dropped: check that webhooks.endpoint is up \
                 and answers 2xx, or raise the limits"
            );
        }
        emitted
    }

    /// This node has `keys` (its first connection or subscriber, or a refresh): see the
    /// module documentation. `send`: whether the up event is sent (`webhooks.events`).
    pub async fn up(
        &self,
        subject: Subject,
        keys: &[&str],
        send: bool,
    ) -> Result<Emitted, EngineError> {
        let mut total = Emitted::default();
        for batch in keys.chunks(BATCH) {
            let mut call = UP.prepare_invoke();
            for key in self.keys(subject) {
                call.key(key);
            }
            call.arg(self.hash_prefix(subject))
                .arg(&self.node)
                .arg(ms(self.ttl))
                .arg(if send { "1" } else { "0" })
                .arg(subject.events().0)
                .arg(subject.name())
                .arg(self.max_queue)
                .arg(self.max_bytes);
            for key in batch {
                call.arg(*key).arg(uuid::Uuid::new_v4().to_string());
            }
            let (emitted, dropped): (u64, u64) = self.invoke("webhooks up", call).await?;
            total.emitted += emitted;
            total.dropped += dropped;
        }
        Ok(self.count(total))
    }

    /// This node no longer has `keys`; the down event becomes due after `grace` unless
    /// another node has them.
    pub async fn down(
        &self,
        subject: Subject,
        keys: &[&str],
        grace: Duration,
    ) -> Result<(), EngineError> {
        for batch in keys.chunks(BATCH) {
            let mut call = DOWN.prepare_invoke();
            for key in self.keys(subject) {
                call.key(key);
            }
            call.arg(self.hash_prefix(subject))
                .arg(&self.node)
                .arg(ms(grace));
            for key in batch {
                call.arg(*key);
            }
            self.invoke::<()>("webhooks down", call).await?;
        }
        Ok(())
    }

    /// Emits the down events that are due (any node may call it: each key goes down once).
    pub async fn sweep(&self, subject: Subject, send: bool) -> Result<Emitted, EngineError> {
        let mut total = Emitted::default();
        // Most sweeps find nothing due: the first call carries few ids (one is made per key it
        // may look at), the next ones a full batch.
        let mut size = 16;
        // Bounded: a backlog larger than this waits for the next sweep.
        for _ in 0..20 {
            let mut call = SWEEP.prepare_invoke();
            for key in self.keys(subject) {
                call.key(key);
            }
            call.arg(self.hash_prefix(subject))
                .arg(if send { "1" } else { "0" })
                .arg(subject.events().1)
                .arg(subject.name())
                .arg(self.max_queue)
                .arg(self.max_bytes);
            for _ in 0..size {
                call.arg(uuid::Uuid::new_v4().to_string());
            }
            let (emitted, dropped, looked): (u64, u64, usize) =
                self.invoke("webhooks sweep", call).await?;
            total.emitted += emitted;
            total.dropped += dropped;
            if looked < size {
                break;
            }
            size = BATCH;
        }
        Ok(self.count(total))
    }

    /// Appends `body` (an event's JSON) to the queue; false when it was full (counted).
    pub async fn push(&self, body: &[u8]) -> Result<bool, EngineError> {
        let mut call = PUSH.prepare_invoke();
        let [zset, stream, bytes] = self.keys(Subject::User);
        call.key(zset).key(stream).key(bytes);
        call.arg(self.max_queue).arg(self.max_bytes).arg(body);
        let pushed: u64 = self.invoke("webhooks push", call).await?;
        if pushed == 0 {
            self.count(Emitted {
                emitted: 0,
                dropped: 1,
            });
        }
        Ok(pushed == 1)
    }

    /// Takes or renews the delivery lease for `length`; whether this node holds it.
    pub async fn lease(&self, length: Duration) -> Result<bool, EngineError> {
        let mut call = LEASE.prepare_invoke();
        call.key(self.key("lease"))
            .arg(&self.node)
            .arg(ms(length).max(1));
        Ok(self.invoke::<u64>("webhooks lease", call).await? == 1)
    }

    /// Gives the lease back (at shutdown), so another node takes over at once.
    pub async fn release(&self) -> Result<(), EngineError> {
        let mut call = RELEASE.prepare_invoke();
        call.key(self.key("lease")).arg(&self.node);
        self.invoke::<()>("webhooks release", call).await
    }

    /// Up to `max` events from the front of the queue, in order.
    pub async fn front(&self, max: usize) -> Result<Vec<StreamEvent>, EngineError> {
        let mut con = self.shard().conn().await?;
        let entries: Vec<(String, Vec<Vec<u8>>)> = deadline(
            self.timeout,
            "webhooks read",
            redis::cmd("XRANGE")
                .arg(self.key("events"))
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(max.max(1))
                .query_async(&mut con),
        )
        .await?;
        Ok(entries
            .into_iter()
            .filter_map(|(id, fields)| {
                let body = fields
                    .chunks_exact(2)
                    .find(|pair| pair[0] == b"b")
                    .map(|pair| Bytes::from(pair[1].clone()))?;
                Some(StreamEvent { id, body })
            })
            .collect())
    }

    /// The backend acknowledged `events`: they leave the queue. Returns the events left.
    pub async fn delivered(&self, events: &[StreamEvent]) -> Result<u64, EngineError> {
        let mut call = DELIVERED.prepare_invoke();
        call.key(self.key("events")).key(self.key("bytes"));
        call.arg(events.iter().map(|e| e.body.len()).sum::<usize>());
        for event in events {
            call.arg(&event.id);
        }
        self.invoke("webhooks delivered", call).await
    }

    /// Events waiting in the queue.
    pub async fn len(&self) -> Result<u64, EngineError> {
        let mut con = self.shard().conn().await?;
        deadline(
            self.timeout,
            "webhooks XLEN",
            redis::cmd("XLEN")
                .arg(self.key("events"))
                .query_async(&mut con),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::redis::test_server::TestRedis;

    fn store(redis: &TestRedis, ttl: Duration, max_queue: usize) -> RedisStore {
        RedisStore::new(
            redis.shards(),
            ttl,
            max_queue,
            1 << 20,
            QueueMetrics::default(),
        )
    }

    /// `type subject` of every event in the queue, in order.
    async fn queued(store: &RedisStore) -> Vec<String> {
        store
            .front(1000)
            .await
            .unwrap()
            .iter()
            .map(|e| {
                let v: serde_json::Value = serde_json::from_slice(&e.body).unwrap();
                assert_eq!(v["id"].as_str().unwrap().len(), 36);
                assert!(v["time"].as_u64().unwrap() > 1_600_000_000_000);
                let subject = v["user"].as_str().or(v["channel"].as_str()).unwrap();
                format!("{} {subject}", v["type"].as_str().unwrap())
            })
            .collect()
    }

    /// Two nodes: a user's first connection anywhere is announced once; moving between the
    /// nodes makes nothing; offline only once the last node let go and the grace passed; a
    /// node that stops refreshing (crashed) takes its users offline after the TTL.
    #[tokio::test]
    async fn the_cluster_decides_each_event_once() {
        let redis = TestRedis::start();
        let ttl = Duration::from_millis(1500);
        let grace = Duration::from_millis(400);
        let (a, b) = (store(&redis, ttl, 100), store(&redis, ttl, 100));
        a.up(Subject::User, &["alice"], true).await.unwrap();
        b.up(Subject::User, &["alice"], true).await.unwrap();
        a.up(Subject::User, &["alice"], true).await.unwrap();
        a.down(Subject::User, &["alice"], grace).await.unwrap();
        tokio::time::sleep(grace * 2).await;
        a.sweep(Subject::User, true).await.unwrap();
        b.sweep(Subject::User, true).await.unwrap();
        assert_eq!(queued(&a).await, ["user_online alice"]);
        // The last node lets go; back on the other node within the grace: nothing.
        b.down(Subject::User, &["alice"], grace).await.unwrap();
        a.up(Subject::User, &["alice"], true).await.unwrap();
        tokio::time::sleep(grace * 2).await;
        b.sweep(Subject::User, true).await.unwrap();
        assert_eq!(queued(&a).await, ["user_online alice"]);
        // Gone for longer than the grace: offline, once, whoever sweeps.
        a.down(Subject::User, &["alice"], grace).await.unwrap();
        b.sweep(Subject::User, true).await.unwrap();
        assert_eq!(queued(&a).await.len(), 1, "not before the grace period");
        tokio::time::sleep(grace + Duration::from_millis(100)).await;
        let swept = [
            a.sweep(Subject::User, true).await.unwrap(),
            b.sweep(Subject::User, true).await.unwrap(),
        ];
        assert_eq!(swept.iter().map(|e| e.emitted).sum::<u64>(), 1);
        assert_eq!(
            queued(&a).await,
            ["user_online alice", "user_offline alice"]
        );
        // b "crashes" with bob connected: a keeps sweeping, bob goes offline after the TTL.
        b.up(Subject::User, &["bob"], true).await.unwrap();
        b.up(Subject::Channel, &["news"], true).await.unwrap();
        let crashed = std::time::Instant::now();
        let mut events = Vec::new();
        while events.len() < 5 {
            assert!(crashed.elapsed() < ttl * 3, "{events:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
            a.sweep(Subject::User, true).await.unwrap();
            a.sweep(Subject::Channel, true).await.unwrap();
            events = queued(&a).await;
        }
        assert!(crashed.elapsed() >= ttl - Duration::from_millis(100));
        assert_eq!(
            events[2..],
            [
                "user_online bob",
                "channel_occupied news",
                "user_offline bob",
                "channel_vacated news"
            ][..events.len() - 2]
        );
    }

    /// One sweep takes down every due key, beyond its first small call.
    #[tokio::test]
    async fn one_sweep_takes_down_a_backlog() {
        let redis = TestRedis::start();
        let a = store(&redis, Duration::from_secs(60), 10_000);
        let users: Vec<String> = (0..600).map(|i| format!("u{i}")).collect();
        let users: Vec<&str> = users.iter().map(String::as_str).collect();
        assert_eq!(
            a.up(Subject::User, &users, true).await.unwrap().emitted,
            600
        );
        a.down(Subject::User, &users, Duration::ZERO).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(a.sweep(Subject::User, true).await.unwrap().emitted, 600);
        assert_eq!(a.sweep(Subject::User, true).await.unwrap().emitted, 0);
        assert_eq!(a.len().await.unwrap(), 1200);
    }

    /// The queue is bounded (the state still changes), delivered events leave it, and only
    /// one node holds the lease until it gives it back.
    #[tokio::test]
    async fn the_queue_is_bounded_and_one_node_delivers() {
        let redis = TestRedis::start();
        let ttl = Duration::from_secs(60);
        let (a, b) = (store(&redis, ttl, 3), store(&redis, ttl, 3));
        for i in 0..2 {
            assert!(a.push(format!("{{\"n\":{i}}}").as_bytes()).await.unwrap());
        }
        let emitted = b.up(Subject::User, &["u1", "u2"], true).await.unwrap();
        assert_eq!((emitted.emitted, emitted.dropped), (1, 1));
        assert_eq!(b.metrics().dropped.get(), 1);
        assert!(!a.push(b"{}").await.unwrap());
        let front = a.front(10).await.unwrap();
        assert_eq!(front.len(), 3);
        assert_eq!(a.delivered(&front[..2]).await.unwrap(), 1);
        assert_eq!(b.len().await.unwrap(), 1);
        assert!(a.lease(Duration::from_secs(5)).await.unwrap());
        assert!(!b.lease(Duration::from_secs(5)).await.unwrap());
        assert!(a.lease(Duration::from_secs(5)).await.unwrap());
        a.release().await.unwrap();
        assert!(b.lease(Duration::from_secs(5)).await.unwrap());
    }
}
