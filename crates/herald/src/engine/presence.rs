//! [`PresenceManager`]: who is subscribed to a channel, for the `presence` and `presence_stats`
//! commands and API methods, and [`MemoryPresence`], the embedded engine's store.
//!
//! The client and API code talk to the trait only. A shared store (Redis) keeps presence
//! across nodes: its entries expire after [`PresenceManager::ttl`] unless the node that added
//! them refreshes them ([`PresenceManager::refresh`], called by the node every
//! `client.presence_update_interval`), so a crashed node's clients vanish by themselves. The
//! embedded one keeps it in this node's memory, where an entry lives exactly as long as its
//! subscription — it is removed when the client unsubscribes or its connection ends for
//! whatever reason (close, reset, missed pongs) — so it needs neither.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::{BoxFuture, EngineError};
use crate::protocol::ClientInfo;

/// Channel maps are split into shards so that joins in one channel do not wait for a presence
/// listing of another.
const SHARDS: usize = 32;

/// Counts of a channel's presence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PresenceStats {
    /// Subscribed connections.
    pub num_clients: usize,
    /// Distinct subscribed users (anonymous connections count as one user).
    pub num_users: usize,
}

impl From<PresenceStats> for crate::protocol::PresenceStatsResult {
    fn from(stats: PresenceStats) -> Self {
        crate::protocol::PresenceStatsResult {
            num_clients: u32::try_from(stats.num_clients).unwrap_or(u32::MAX),
            num_users: u32::try_from(stats.num_users).unwrap_or(u32::MAX),
        }
    }
}

/// Where presence lives. Shared (`Arc<dyn PresenceManager>`) by every client task and the API.
pub trait PresenceManager: Send + Sync + 'static {
    /// Records (or replaces) `info.client`'s entry in `channel`.
    fn add<'a>(
        &'a self,
        channel: &'a str,
        info: ClientInfo,
    ) -> BoxFuture<'a, Result<(), EngineError>>;

    /// Removes `client`'s entry from `channel`; returns it if there was one.
    fn remove<'a>(
        &'a self,
        channel: &'a str,
        client: &'a str,
    ) -> BoxFuture<'a, Result<Option<ClientInfo>, EngineError>>;

    /// Every entry of `channel`, by client id.
    fn presence<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<HashMap<String, ClientInfo>, EngineError>>;

    /// Counts of `channel`'s entries.
    fn stats<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<PresenceStats, EngineError>>;

    /// How long an entry lives unless it is refreshed; `None` when entries live until removed
    /// (a store only this node writes to). With `Some`, the node calls [`Self::refresh`]
    /// periodically, well within the TTL.
    fn ttl(&self) -> Option<Duration> {
        None
    }

    /// `Ok` while presence works; otherwise what is wrong (`/health` answers 503 with it).
    /// Presence held in this process has nothing outside it to lose.
    fn health(&self) -> Result<(), String> {
        Ok(())
    }

    /// Extends the life of every entry this node added and has not removed, so that a shared
    /// store expires only the entries of nodes that stopped refreshing (crashed). Nothing to do
    /// for a store without [`Self::ttl`].
    fn refresh(&self) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// One channel's presence: entries by client id, and how many entries each user has (so that
/// `num_users` is a map length, not a scan).
#[derive(Default)]
struct ChannelPresence {
    clients: HashMap<String, ClientInfo>,
    users: HashMap<String, usize>,
}

impl ChannelPresence {
    fn add(&mut self, info: ClientInfo) {
        let user = info.user.clone();
        if let Some(old) = self.clients.insert(info.client.clone(), info) {
            self.forget_user(&old.user);
        }
        *self.users.entry(user).or_default() += 1;
    }

    fn remove(&mut self, client: &str) -> Option<ClientInfo> {
        let info = self.clients.remove(client)?;
        self.forget_user(&info.user);
        Some(info)
    }

    fn forget_user(&mut self, user: &str) {
        if let Some(count) = self.users.get_mut(user) {
            *count -= 1;
            if *count == 0 {
                self.users.remove(user);
            }
        }
    }
}

/// The embedded engine's presence: this node's subscribers, in memory.
pub struct MemoryPresence {
    shards: Box<[Mutex<HashMap<String, ChannelPresence>>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for MemoryPresence {
    fn default() -> Self {
        MemoryPresence::new()
    }
}

impl std::fmt::Debug for MemoryPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryPresence").finish_non_exhaustive()
    }
}

impl MemoryPresence {
    /// An empty store.
    pub fn new() -> Self {
        MemoryPresence {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn shard(&self, channel: &str) -> MutexGuard<'_, HashMap<String, ChannelPresence>> {
        let shard = &self.shards[(self.hasher.hash_one(channel) as usize) % SHARDS];
        // Each critical section is one map operation, so a poisoned lock is still consistent.
        shard.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn add_now(&self, channel: &str, info: ClientInfo) {
        self.shard(channel)
            .entry(channel.to_owned())
            .or_default()
            .add(info);
    }

    pub(crate) fn remove_now(&self, channel: &str, client: &str) -> Option<ClientInfo> {
        let mut shard = self.shard(channel);
        let presence = shard.get_mut(channel)?;
        let removed = presence.remove(client);
        if presence.clients.is_empty() {
            shard.remove(channel);
        }
        removed
    }

    fn presence_now(&self, channel: &str) -> HashMap<String, ClientInfo> {
        self.shard(channel)
            .get(channel)
            .map(|p| p.clients.clone())
            .unwrap_or_default()
    }

    /// Whether `client` has an entry in `channel`.
    pub(crate) fn contains(&self, channel: &str, client: &str) -> bool {
        self.shard(channel)
            .get(channel)
            .is_some_and(|p| p.clients.contains_key(client))
    }

    /// Every entry, by channel: what a shared store's refresh re-adds (see
    /// [`super::redis::RedisPresence`], which keeps its own node's entries here). Taken one
    /// shard at a time, so adds and removes in other shards go on meanwhile.
    pub(crate) fn snapshot(&self) -> Vec<(String, Vec<ClientInfo>)> {
        let mut all = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            all.extend(
                shard
                    .iter()
                    .map(|(channel, p)| (channel.clone(), p.clients.values().cloned().collect())),
            );
        }
        all
    }

    fn stats_now(&self, channel: &str) -> PresenceStats {
        self.shard(channel)
            .get(channel)
            .map(|p| PresenceStats {
                num_clients: p.clients.len(),
                num_users: p.users.len(),
            })
            .unwrap_or_default()
    }
}

impl PresenceManager for MemoryPresence {
    fn add<'a>(
        &'a self,
        channel: &'a str,
        info: ClientInfo,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        self.add_now(channel, info);
        Box::pin(std::future::ready(Ok(())))
    }

    fn remove<'a>(
        &'a self,
        channel: &'a str,
        client: &'a str,
    ) -> BoxFuture<'a, Result<Option<ClientInfo>, EngineError>> {
        let removed = self.remove_now(channel, client);
        Box::pin(std::future::ready(Ok(removed)))
    }

    fn presence<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<HashMap<String, ClientInfo>, EngineError>> {
        let presence = self.presence_now(channel);
        Box::pin(std::future::ready(Ok(presence)))
    }

    fn stats<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<PresenceStats, EngineError>> {
        let stats = self.stats_now(channel);
        Box::pin(std::future::ready(Ok(stats)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(user: &str, client: &str) -> ClientInfo {
        ClientInfo {
            user: user.into(),
            client: client.into(),
            conn_info: None,
            chan_info: None,
        }
    }

    #[tokio::test]
    async fn entries_and_counts_follow_adds_and_removes() {
        let p = MemoryPresence::new();
        p.add("room", info("alice", "a1")).await.unwrap();
        p.add("room", info("alice", "a2")).await.unwrap();
        p.add("room", info("bob", "b1")).await.unwrap();
        p.add("other", info("carol", "c1")).await.unwrap();
        let stats = p.stats("room").await.unwrap();
        assert_eq!((stats.num_clients, stats.num_users), (3, 2));
        let listed = p.presence("room").await.unwrap();
        let mut ids: Vec<_> = listed.keys().cloned().collect();
        ids.sort();
        assert_eq!(ids, ["a1", "a2", "b1"]);
        assert_eq!(listed["b1"].user, "bob");

        // Replacing an entry does not count its user twice.
        p.add("room", info("alice", "a1")).await.unwrap();
        assert_eq!(p.stats("room").await.unwrap().num_users, 2);

        assert_eq!(p.remove("room", "a1").await.unwrap().unwrap().user, "alice");
        assert!(p.remove("room", "a1").await.unwrap().is_none());
        let stats = p.stats("room").await.unwrap();
        assert_eq!((stats.num_clients, stats.num_users), (2, 2));
        p.remove("room", "a2").await.unwrap();
        p.remove("room", "b1").await.unwrap();
        assert_eq!(p.stats("room").await.unwrap(), PresenceStats::default());
        assert!(p.presence("room").await.unwrap().is_empty());
        assert_eq!(p.stats("other").await.unwrap().num_clients, 1);
    }
}
