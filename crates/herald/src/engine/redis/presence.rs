//! [`RedisPresence`]: presence shared by every node through Redis, with entries that expire
//! unless the node that added them keeps refreshing them — so a node that crashed (`kill -9`,
//! a lost host) takes its clients out of presence within `engine.redis.presence_ttl`, and only
//! its own.
//!
//! # Layout
//!
//! Four keys per channel, all with the channel in a `{…}` hash tag so that they land in one
//! Redis Cluster slot and one script can touch them all:
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `<prefix>.presence.data.{ch}` | hash | client id → its [`ClientInfo`] (`client_info.rs`) |
//! | `<prefix>.presence.expire.{ch}` | sorted set | client id, scored by when it expires (ms) |
//! | `<prefix>.presence.user.{ch}` | hash | client id → user id |
//! | `<prefix>.presence.users.{ch}` | hash | user id → how many of its clients are present |
//!
//! Every operation is one Lua script, so it is atomic, and each script first drops the
//! entries whose expiry has passed (by Redis's clock, so nodes' clocks need not agree). The
//! users hash makes `presence_stats`' distinct users a `HLEN`, not a scan. Each add also
//! pushes the four keys' own expiry to the TTL, so a channel whose nodes all died leaves
//! nothing behind.
//!
//! # Refresh
//!
//! The node keeps its own entries in memory ([`MemoryPresence`]) and [`RedisPresence::refresh`]
//! re-adds them all (one script call per channel, a bounded number in flight), which the node
//! does every `client.presence_update_interval`. An entry removed while a refresh was
//! re-adding it is removed again right after, so a refresh cannot resurrect a client that
//! left.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use redis::Script;

use super::{RedisShards, ShardConn, client_info, deadline};
use crate::engine::{BoxFuture, EngineError, MemoryPresence, PresenceManager, PresenceStats};
use crate::protocol::ClientInfo;
use crate::sync::lock;

/// Drops the expired entries of a channel; shared by every script (prepended to each).
/// KEYS: data, expire, user, users. Defines `now` (ms, Redis's clock) and `drop(client)`.
const PRELUDE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function forget_user(u)
  if redis.call('HINCRBY', KEYS[4], u, -1) <= 0 then redis.call('HDEL', KEYS[4], u) end
end
local function drop(c)
  local u = redis.call('HGET', KEYS[3], c)
  if u then forget_user(u) end
  redis.call('HDEL', KEYS[1], c)
  redis.call('HDEL', KEYS[3], c)
  redis.call('ZREM', KEYS[2], c)
end
for _, c in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do drop(c) end
";

/// Adds or refreshes entries. ARGV: ttl (ms), then (client, user, info) triples.
static ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PRELUDE}
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV, 3 do
  local c, u = ARGV[i], ARGV[i + 1]
  local old = redis.call('HGET', KEYS[3], c)
  if old ~= u then
    if old then forget_user(old) end
    redis.call('HINCRBY', KEYS[4], u, 1)
    redis.call('HSET', KEYS[3], c, u)
  end
  redis.call('HSET', KEYS[1], c, ARGV[i + 2])
  redis.call('ZADD', KEYS[2], now + ttl, c)
end
for k = 1, 4 do
  if redis.call('EXISTS', KEYS[k]) == 1 then redis.call('PEXPIRE', KEYS[k], ttl) end
end
return 1"
    ))
});

/// Removes entries. ARGV: client ids.
static REMOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PRELUDE}
for _, c in ipairs(ARGV) do drop(c) end
return 1"
    ))
});

/// Every entry: a flat list client, info, client, info…
static LIST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PRELUDE}
return redis.call('HGETALL', KEYS[1])"
    ))
});

/// Counts: {clients, distinct users}.
static STATS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PRELUDE}
return {{redis.call('HLEN', KEYS[1]), redis.call('HLEN', KEYS[4])}}"
    ))
});

/// Most entries of one channel re-added by one script call (bounds a call's size).
const REFRESH_BATCH: usize = 500;
/// Script calls in flight during a refresh (they are pipelined on the connection).
const REFRESH_CONCURRENCY: usize = 32;

/// Presence in Redis, shared by every node (see the module documentation). A channel's
/// entries live on the shard that holds the channel ([`RedisShards::for_key`]).
pub struct RedisPresence {
    shards: Arc<RedisShards>,
    ttl: Duration,
    timeout: Duration,
    /// This node's own entries: what [`PresenceManager::refresh`] re-adds.
    local: MemoryPresence,
    /// The error of the last Redis call, cleared by the next that succeeds: what `/health`
    /// reports (a node whose presence writes fail must not look healthy to a load balancer).
    failing: Mutex<Option<String>>,
}

impl std::fmt::Debug for RedisPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPresence")
            .field("shards", &self.shards)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl RedisPresence {
    /// Presence over `shards`, keys under their prefix (`engine.redis.prefix`), entries living
    /// `ttl` (`engine.redis.presence_ttl`) unless refreshed, every Redis call bounded by twice
    /// `engine.redis.io_timeout` (a script may take two round trips: EVALSHA, then EVAL).
    pub fn new(shards: Arc<RedisShards>, ttl: Duration) -> Self {
        let timeout = shards.io_timeout() * 2;
        RedisPresence {
            shards,
            ttl,
            timeout,
            local: MemoryPresence::new(),
            failing: Mutex::new(None),
        }
    }

    /// Records how a Redis call ended, for [`PresenceManager::health`], and passes it on.
    fn noted<T>(&self, result: Result<T, EngineError>) -> Result<T, EngineError> {
        let mut failing = lock(&self.failing);
        match &result {
            Ok(_) => *failing = None,
            Err(e) => *failing = Some(e.to_string()),
        }
        result
    }

    /// The connection of the shard that holds `channel`.
    async fn shard(&self, channel: &str) -> Result<ShardConn, EngineError> {
        self.shards.for_key(channel).conn().await
    }

    /// The channel's four keys (see the module documentation).
    fn keys(&self, channel: &str) -> [String; 4] {
        let p = self.shards.prefix();
        ["data", "expire", "user", "users"].map(|kind| format!("{p}.presence.{kind}.{{{channel}}}"))
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Adds (or refreshes) `infos` in `channel` in Redis.
    async fn add_remote(&self, channel: &str, infos: &[ClientInfo]) -> Result<(), EngineError> {
        let mut call = ADD.prepare_invoke();
        for key in self.keys(channel) {
            call.key(key);
        }
        call.arg(self.ttl_ms());
        for info in infos {
            call.arg(&info.client)
                .arg(&info.user)
                .arg(client_info::encode(info));
        }
        let result = async {
            let mut con = self.shard(channel).await?;
            deadline(
                self.timeout,
                "presence add",
                call.invoke_async::<()>(&mut con),
            )
            .await
        };
        self.noted(result.await)
    }

    async fn remove_remote(&self, channel: &str, clients: &[&str]) -> Result<(), EngineError> {
        let mut call = REMOVE.prepare_invoke();
        for key in self.keys(channel) {
            call.key(key);
        }
        call.arg(clients);
        let result = async {
            let mut con = self.shard(channel).await?;
            deadline(
                self.timeout,
                "presence remove",
                call.invoke_async::<()>(&mut con),
            )
            .await
        };
        self.noted(result.await)
    }

    /// Re-adds one channel's entries, then removes again any that left meanwhile.
    async fn refresh_channel(
        &self,
        channel: &str,
        infos: &[ClientInfo],
    ) -> Result<(), EngineError> {
        for batch in infos.chunks(REFRESH_BATCH) {
            self.add_remote(channel, batch).await?;
            let gone: Vec<&str> = batch
                .iter()
                .filter(|info| !self.local.contains(channel, &info.client))
                .map(|info| info.client.as_str())
                .collect();
            if !gone.is_empty() {
                self.remove_remote(channel, &gone).await?;
            }
        }
        Ok(())
    }
}

impl PresenceManager for RedisPresence {
    fn add<'a>(
        &'a self,
        channel: &'a str,
        info: ClientInfo,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(async move {
            // Kept locally first: should Redis fail now, the next refresh adds it.
            self.local.add_now(channel, info.clone());
            self.add_remote(channel, std::slice::from_ref(&info)).await
        })
    }

    fn remove<'a>(
        &'a self,
        channel: &'a str,
        client: &'a str,
    ) -> BoxFuture<'a, Result<Option<ClientInfo>, EngineError>> {
        Box::pin(async move {
            let removed = self.local.remove_now(channel, client);
            self.remove_remote(channel, &[client]).await?;
            Ok(removed)
        })
    }

    fn presence<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<HashMap<String, ClientInfo>, EngineError>> {
        Box::pin(async move {
            let mut call = LIST.prepare_invoke();
            for key in self.keys(channel) {
                call.key(key);
            }
            let flat: Vec<Vec<u8>> = self.noted(
                async {
                    let mut con = self.shard(channel).await?;
                    deadline(self.timeout, "presence", call.invoke_async(&mut con)).await
                }
                .await,
            )?;
            let mut presence = HashMap::with_capacity(flat.len() / 2);
            for pair in flat.chunks_exact(2) {
                match client_info::decode(&pair[1]) {
                    Some(info) => {
                        presence.insert(String::from_utf8_lossy(&pair[0]).into_owned(), info);
                    }
                    None => tracing::warn!(
                        channel,
                        "a presence entry in Redis is not Herald's; skipped (another program \
                         writes under engine.redis.prefix?)"
                    ),
                }
            }
            Ok(presence)
        })
    }

    fn stats<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<PresenceStats, EngineError>> {
        Box::pin(async move {
            let mut call = STATS.prepare_invoke();
            for key in self.keys(channel) {
                call.key(key);
            }
            let (num_clients, num_users): (usize, usize) = self.noted(
                async {
                    let mut con = self.shard(channel).await?;
                    deadline(self.timeout, "presence stats", call.invoke_async(&mut con)).await
                }
                .await,
            )?;
            Ok(PresenceStats {
                num_clients,
                num_users,
            })
        })
    }

    fn ttl(&self) -> Option<Duration> {
        Some(self.ttl)
    }

    fn health(&self) -> Result<(), String> {
        match lock(&self.failing).as_deref() {
            None => Ok(()),
            Some(e) => Err(format!(
                "presence in Redis is failing ({e}); healthy again at the next presence call \
                 that succeeds"
            )),
        }
    }

    fn refresh(&self) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(async move {
            let channels = self.local.snapshot();
            let total = channels.len();
            let results: Vec<Result<(), EngineError>> = futures_util::stream::iter(channels)
                .map(|(channel, infos)| async move { self.refresh_channel(&channel, &infos).await })
                .buffer_unordered(REFRESH_CONCURRENCY)
                .collect()
                .await;
            let failed = results.iter().filter(|r| r.is_err()).count();
            match results.into_iter().find_map(Result::err) {
                None => Ok(()),
                Some(first) => Err(EngineError::Unavailable(format!(
                    "{failed} of {total} channels not refreshed; the first error: {first}"
                ))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_server::TestRedis;
    use super::*;
    use crate::protocol::Payload;

    fn info(user: &str, client: &str) -> ClientInfo {
        ClientInfo {
            user: user.into(),
            client: client.into(),
            conn_info: None,
            chan_info: None,
        }
    }

    async fn presence(redis: &TestRedis, ttl: Duration) -> RedisPresence {
        RedisPresence::new(redis.shards(), ttl)
    }

    /// Two nodes share a channel's presence: entries, distinct users (anonymous ones as one
    /// user), replacing an entry, removing one, binary channel info.
    #[tokio::test]
    async fn nodes_share_presence_and_counts() {
        let redis = TestRedis::start();
        let one = presence(&redis, Duration::from_secs(60)).await;
        let two = presence(&redis, Duration::from_secs(60)).await;
        one.add("room", info("alice", "a1")).await.unwrap();
        two.add("room", info("alice", "a2")).await.unwrap();
        let mut bob = info("bob", "b1");
        bob.chan_info = Some(Payload::from_stored(vec![0u8, 1, 2]));
        two.add("room", bob).await.unwrap();
        one.add("room", info("", "x1")).await.unwrap();
        two.add("room", info("", "x2")).await.unwrap();
        one.add("other", info("carol", "c1")).await.unwrap();
        let stats = one.stats("room").await.unwrap();
        assert_eq!((stats.num_clients, stats.num_users), (5, 3));
        let listed = two.presence("room").await.unwrap();
        let mut ids: Vec<_> = listed.keys().cloned().collect();
        ids.sort();
        assert_eq!(ids, ["a1", "a2", "b1", "x1", "x2"]);
        assert_eq!(listed["b1"].user, "bob");
        assert_eq!(
            listed["b1"].chan_info.as_ref().unwrap().as_bytes(),
            [0, 1, 2]
        );
        // Re-adding (a refresh) and replacing an entry do not count a user twice.
        one.add("room", info("alice", "a1")).await.unwrap();
        one.refresh().await.unwrap();
        assert_eq!(two.stats("room").await.unwrap().num_users, 3);
        one.add("room", info("dave", "a1")).await.unwrap();
        let stats = two.stats("room").await.unwrap();
        assert_eq!((stats.num_clients, stats.num_users), (5, 4));

        assert_eq!(
            one.remove("room", "a1").await.unwrap().unwrap().user,
            "dave"
        );
        assert!(one.remove("room", "a1").await.unwrap().is_none());
        two.remove("room", "b1").await.unwrap();
        let stats = one.stats("room").await.unwrap();
        assert_eq!((stats.num_clients, stats.num_users), (3, 2));
        for (p, c) in [(&two, "a2"), (&one, "x1"), (&two, "x2")] {
            p.remove("room", c).await.unwrap();
        }
        assert_eq!(one.stats("room").await.unwrap(), PresenceStats::default());
        assert!(one.presence("room").await.unwrap().is_empty());
        assert_eq!(one.stats("other").await.unwrap().num_clients, 1);
        // Nothing is left behind for the emptied channel.
        let mut con = redis.manager().await;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("herald.presence.*{room}")
            .query_async(&mut con)
            .await
            .unwrap();
        assert!(keys.is_empty(), "{keys:?}");
    }

    /// A node that stops refreshing (crashed) loses its entries after the TTL; the entries of
    /// a node that refreshes stay.
    #[tokio::test]
    async fn entries_of_a_node_that_stops_refreshing_expire() {
        let redis = TestRedis::start();
        let ttl = Duration::from_millis(600);
        let alive = presence(&redis, ttl).await;
        let crashed = presence(&redis, ttl).await;
        alive.add("room", info("alice", "a1")).await.unwrap();
        crashed.add("room", info("bob", "b1")).await.unwrap();
        crashed.add("room", info("bob", "b2")).await.unwrap();
        assert_eq!(alive.stats("room").await.unwrap().num_clients, 3);
        for _ in 0..4 {
            tokio::time::sleep(ttl / 3).await;
            alive.refresh().await.unwrap();
        }
        let listed = alive.presence("room").await.unwrap();
        assert_eq!(listed.keys().collect::<Vec<_>>(), ["a1"]);
        let stats = crashed.stats("room").await.unwrap();
        assert_eq!((stats.num_clients, stats.num_users), (1, 1));
        // With no node refreshing, the channel's keys themselves go.
        tokio::time::sleep(ttl * 2).await;
        let mut con = redis.manager().await;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("herald.presence.*")
            .query_async(&mut con)
            .await
            .unwrap();
        assert!(keys.is_empty(), "{keys:?}");
    }

    /// A Redis that lost its data (restarted empty) gets this node's entries back at the next
    /// refresh.
    #[tokio::test]
    async fn a_refresh_restores_what_redis_lost() {
        let redis = TestRedis::start();
        let p = presence(&redis, Duration::from_secs(60)).await;
        p.add("room", info("alice", "a1")).await.unwrap();
        p.add("hall", info("bob", "b1")).await.unwrap();
        let mut con = redis.manager().await;
        redis::cmd("FLUSHALL")
            .query_async::<()>(&mut con)
            .await
            .unwrap();
        assert!(p.presence("room").await.unwrap().is_empty());
        p.refresh().await.unwrap();
        assert_eq!(p.presence("room").await.unwrap()["a1"].user, "alice");
        let stats = p.stats("hall").await.unwrap();
        assert_eq!((stats.num_clients, stats.num_users), (1, 1));
    }

    /// A client that leaves while a refresh re-adds it is not resurrected by the refresh.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refresh_racing_removes_resurrects_nobody() {
        let redis = TestRedis::start();
        let p = std::sync::Arc::new(presence(&redis, Duration::from_secs(60)).await);
        for i in 0..200 {
            p.add("room", info("u", &format!("c{i}"))).await.unwrap();
        }
        let refresher = {
            let p = p.clone();
            tokio::spawn(async move {
                for _ in 0..5 {
                    p.refresh().await.unwrap();
                }
            })
        };
        for i in 0..200 {
            p.remove("room", &format!("c{i}")).await.unwrap();
        }
        refresher.await.unwrap();
        assert_eq!(p.stats("room").await.unwrap(), PresenceStats::default());
    }

    /// A Redis that does not answer gives an error naming the problem within the timeout.
    #[tokio::test]
    async fn a_dead_redis_is_an_error_not_a_hang() {
        let redis = TestRedis::start();
        let p = presence(&redis, Duration::from_secs(60)).await;
        p.add("room", info("b", "b1")).await.unwrap();
        assert_eq!(p.health(), Ok(()));
        drop(redis);
        let started = std::time::Instant::now();
        let error = p.add("room", info("a", "a1")).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(error.to_string().contains("Redis"), "{error}");
        assert!(p.stats("room").await.is_err());
        // It is still this node's entry: a refresh adds it once Redis is back.
        assert!(p.local.contains("room", "a1"));
        // `/health` says so until a call succeeds again.
        let unhealthy = p.health().unwrap_err();
        assert!(
            unhealthy.contains("presence in Redis is failing"),
            "{unhealthy}"
        );
        p.noted(Ok::<(), EngineError>(())).unwrap();
        assert_eq!(p.health(), Ok(()));
    }
}
