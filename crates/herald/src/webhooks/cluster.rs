//! Webhooks across the nodes of a Redis-engine cluster: [`ClusterTracker`] turns this node's
//! first/last reports into writes to the shared state ([`RedisStore`]), which decides the
//! events once for the cluster; [`ClusterLiveness`] answers "is this user subscribed to this
//! channel anywhere" from the engine's shared presence; [`problems`] refuses, at start-up, the
//! configurations whose events would be silently wrong across nodes.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::redis_store::{RedisStore, Subject};
use super::{Liveness, LocalLiveness};
use crate::config::{Config, EngineType};
use crate::engine::BoxFuture;
use crate::sync::lock;

/// How often every node looks for down events that are due (a grace period that passed, a
/// crashed node's entries expired): the precision of `offline_grace` / `vacated_grace`.
pub const SWEEP_EVERY: Duration = Duration::from_millis(200);
/// The wait before a failed write to Redis is tried again.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// What this node holds and what it has not told Redis yet.
#[derive(Debug, Default)]
struct State {
    /// The keys this node has (its users connected, its channels subscribed): what a refresh
    /// re-adds.
    local: HashSet<Box<str>>,
    /// Changes not written yet: the latest state of each key (true: up). Bounded by the keys
    /// this node has and had since the last write, since a key's changes replace each other.
    dirty: HashMap<Box<str>, bool>,
}

/// Users or channels of this node in a cluster: records the hub's first/last reports without
/// waiting, and writes them to Redis from one task ([`ClusterTracker::run`]), which also
/// refreshes this node's entries and sweeps the due down events.
pub struct ClusterTracker {
    subject: Subject,
    grace: Duration,
    send_up: bool,
    send_down: bool,
    store: Arc<RedisStore>,
    state: Mutex<State>,
    wake: tokio::sync::Notify,
}

impl std::fmt::Debug for ClusterTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTracker")
            .field("subject", &self.subject)
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

impl ClusterTracker {
    /// A tracker of `subject` over `store`, sending the up/down events it is told to.
    pub fn new(
        subject: Subject,
        grace: Duration,
        send_up: bool,
        send_down: bool,
        store: Arc<RedisStore>,
    ) -> ClusterTracker {
        ClusterTracker {
            subject,
            grace,
            send_up,
            send_down,
            store,
            state: Mutex::new(State::default()),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// The first connection (subscriber) of `key` on this node. Never waits.
    pub fn up(&self, key: &str) {
        let mut state = lock(&self.state);
        state.local.insert(key.into());
        state.dirty.insert(key.into(), true);
        drop(state);
        self.wake.notify_one();
    }

    /// The last connection (subscriber) of `key` on this node is gone. Never waits.
    pub fn down(&self, key: &str) {
        let mut state = lock(&self.state);
        state.local.remove(key);
        state.dirty.insert(key.into(), false);
        drop(state);
        self.wake.notify_one();
    }

    /// Writes the changes, refreshes this node's entries every `refresh_every` and sweeps
    /// every [`SWEEP_EVERY`], until `stop`. At `stop` this node's keys are taken down (a
    /// graceful shutdown starts their grace periods at once, where a crash waits for the TTL).
    pub async fn run(self: Arc<Self>, refresh_every: Duration, stop: CancellationToken) {
        let mut refresh = tokio::time::interval(refresh_every.max(Duration::from_millis(100)));
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = self.wake.notified() => self.write().await,
                _ = refresh.tick() => self.refresh().await,
                _ = sweep.tick() => {
                    if let Err(e) = self.store.sweep(self.subject, self.send_down).await {
                        tracing::warn!("webhooks: cannot look for due {} events in Redis: {e}",
                            self.subject_name());
                    }
                }
            }
        }
        let keys: Vec<Box<str>> = lock(&self.state).local.drain().collect();
        let keys: Vec<&str> = keys.iter().map(|k| &**k).collect();
        if let Err(e) = self.store.down(self.subject, &keys, self.grace).await {
            tracing::warn!(
                "webhooks: cannot take this node's {}s down in Redis at shutdown ({e}); they \
                 go down when their entries expire (engine.redis.presence_ttl)",
                self.subject_name()
            );
        }
    }

    fn subject_name(&self) -> &'static str {
        match self.subject {
            Subject::User => "user",
            Subject::Channel => "channel",
        }
    }

    /// Writes the pending changes; on failure keeps those not replaced meanwhile for the
    /// next attempt.
    async fn write(&self) {
        let dirty = std::mem::take(&mut lock(&self.state).dirty);
        if dirty.is_empty() {
            return;
        }
        let (ups, downs): (Vec<_>, Vec<_>) = dirty.iter().partition(|(_, up)| **up);
        let ups: Vec<&str> = ups.into_iter().map(|(k, _)| &**k).collect();
        let downs: Vec<&str> = downs.into_iter().map(|(k, _)| &**k).collect();
        let mut result = self
            .store
            .up(self.subject, &ups, self.send_up)
            .await
            .map(drop);
        if result.is_ok() {
            result = self.store.down(self.subject, &downs, self.grace).await;
        }
        if let Err(e) = result {
            tracing::warn!(
                "webhooks: cannot record {} changes in Redis ({e}); retrying",
                self.subject_name()
            );
            {
                let mut state = lock(&self.state);
                for (key, up) in dirty {
                    state.dirty.entry(key).or_insert(up);
                }
            }
            tokio::time::sleep(RETRY_AFTER).await;
            self.wake.notify_one();
        }
    }

    /// Re-adds this node's entries before they expire (and brings back what a Redis that lost
    /// its data forgot).
    async fn refresh(&self) {
        let keys: Vec<Box<str>> = lock(&self.state).local.iter().cloned().collect();
        if keys.is_empty() {
            return;
        }
        let keys: Vec<&str> = keys.iter().map(|k| &**k).collect();
        if let Err(e) = self.store.up(self.subject, &keys, self.send_up).await {
            tracing::warn!(
                "webhooks: cannot refresh this node's {}s in Redis: {e}",
                self.subject_name()
            );
        }
    }
}

/// "Is this user subscribed to this channel" for the cluster: this node's hub, then the
/// engine's shared presence of the channel (which [`problems`] makes sure the namespaces of
/// user-limited channels keep).
pub struct ClusterLiveness(pub LocalLiveness);

impl Liveness for ClusterLiveness {
    fn user_connected<'a>(&'a self, user: &'a str) -> BoxFuture<'a, bool> {
        // Not asked in a cluster (the store decides online/offline): this node's answer.
        self.0.user_connected(user)
    }

    fn channel_occupied<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, bool> {
        self.0.channel_occupied(channel)
    }

    fn user_subscribed<'a>(&'a self, user: &'a str, channel: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            if self.0.user_subscribed(user, channel).await {
                return true;
            }
            let Some(node) = self.0.0.upgrade() else {
                return true;
            };
            match node.presence().presence(channel).await {
                Ok(present) => present.values().any(|info| info.user == user),
                Err(e) => {
                    tracing::warn!(
                        channel,
                        "webhooks: cannot read the channel's presence ({e}); no \
                         offline_publication for this publication"
                    );
                    true
                }
            }
        })
    }
}

/// Why `config`'s webhooks cannot run as configured across nodes (empty when they can): with
/// NATS, webhooks are refused (each node would report its own users); with Redis,
/// `offline_publication` needs the channel presence of the namespaces of user-limited
/// channels, where the other nodes' subscriptions are seen.
pub fn problems(config: &Config) -> Vec<String> {
    let w = &config.webhooks;
    if !w.enabled {
        return Vec::new();
    }
    let mut problems = Vec::new();
    if crate::engine::nats_config(config).is_some() {
        problems.push(
            "webhooks.enabled: webhooks are not implemented with the NATS engine yet (each node \
             would report only its own users and channels, and a crashed node's events would \
             be lost): use the Redis engine (engine.type: redis) or the embedded one for \
             webhooks, or turn webhooks off"
                .to_owned(),
        );
    } else if config.engine.kind == EngineType::Redis && w.sends("offline_publication") {
        let namespaces = std::iter::once(("channel", &config.channel.without_namespace)).chain(
            config
                .channel
                .namespaces
                .iter()
                .map(|ns| (ns.name.as_str(), &ns.options)),
        );
        for (i, (name, ns)) in namespaces.enumerate() {
            if ns.allow_user_limited_channels && !ns.presence {
                let option = if i == 0 {
                    "channel.without_namespace.presence".to_owned()
                } else {
                    format!("channel.namespaces[{}].presence (\"{name}\")", i - 1)
                };
                problems.push(format!(
                    "{option}: with the Redis engine, webhooks' offline_publication asks the \
                     channel's presence whether a user is subscribed on another node: set it to \
                     true in every namespace with allow_user_limited_channels, or remove \
                     offline_publication from webhooks.events"
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    /// Loads `json` as a config file; the validation error's text, if any.
    fn load(json: serde_json::Value) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, json.to_string()).unwrap();
        Config::load_with_env(Some(&path), Vec::new()).map_err(|e| e.to_string())
    }

    /// Start-up refuses webhooks with NATS, and offline_publication on Redis for a namespace
    /// of user-limited channels without presence, naming the option; the same on the embedded
    /// engine, or with presence on, starts.
    #[test]
    fn webhooks_that_would_be_wrong_across_nodes_are_refused_naming_the_option() {
        let hooks = serde_json::json!({
            "enabled": true, "endpoint": "http://127.0.0.1:9/h", "secret": "s"
        });
        let dm = |presence: bool| {
            serde_json::json!({"namespaces": [{
                "name": "dm", "allow_user_limited_channels": true, "presence": presence
            }]})
        };
        let error = load(serde_json::json!({
            "engine": {"type": "nats"}, "webhooks": hooks
        }))
        .unwrap_err();
        assert!(error.contains("webhooks.enabled: "), "{error}");
        assert!(error.contains("NATS"), "{error}");
        let redis = |channel| {
            serde_json::json!({
                "engine": {"type": "redis"}, "webhooks": hooks, "channel": channel
            })
        };
        let error = load(redis(dm(false))).unwrap_err();
        assert!(
            error.contains("channel.namespaces[0].presence (\"dm\")"),
            "{error}"
        );
        assert!(load(redis(dm(true))).is_ok());
        let mut without = redis(dm(false));
        without["webhooks"]["events"] = serde_json::json!(["user_online", "user_offline"]);
        assert!(load(without).is_ok());
        assert!(load(serde_json::json!({"webhooks": hooks, "channel": dm(false)})).is_ok());
    }
}
