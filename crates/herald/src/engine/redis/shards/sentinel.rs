//! Following a Sentinel-managed master through a failover ([`Following`]).
//!
//! A shard on `engine.redis.sentinel_address` asks the sentinels where the master is each
//! time it connects. That alone is not enough: after `SENTINEL FAILOVER` (or a master that
//! the sentinels took for down while this node still reached it) the old master keeps
//! answering — as a master for a few seconds, until the sentinels reconfigure it, then as a
//! read-only replica — so connections that never broke would keep writing where nobody reads,
//! with `/health` green. So, while a shard is in use, a watcher asks the sentinels every
//! [`CHECK_INTERVAL`] which master they name (on one kept connection to a sentinel); when it
//! is not the one this node connected to, the shard drops its command connection and tells
//! its PUB/SUB links ([`Shard::master_changes`]), which reconnect — to the new master. A write
//! answered `READONLY` drops the command connection too (see `ShardConn::check`).

use std::sync::{Arc, Mutex as StdMutex, OnceLock, Weak};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::watch;

use super::{Shard, Target, lock};

/// How often the sentinels are asked whether the master moved.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// What a shard keeps to follow its Sentinel-managed master.
#[derive(Default)]
pub(super) struct Following {
    /// `host:port` of the master the sentinels named when this node last connected.
    named: StdMutex<Option<String>>,
    /// A connection to the sentinel that answered last (reused by the watcher).
    sentinel: StdMutex<Option<MultiplexedConnection>>,
    /// Bumped each time the master moved; its receivers are the shard's PUB/SUB links. Made
    /// (and the watcher started) by the first link.
    changes: OnceLock<watch::Sender<u64>>,
}

impl Shard {
    /// For a shard on a Sentinel-managed master: a receiver that changes each time the
    /// sentinels name another master than the one this node connected to (a PUB/SUB link
    /// then reconnects). Starts the watcher on first call (within a tokio runtime). `None`
    /// for other shards.
    pub fn master_changes(self: &Arc<Self>) -> Option<watch::Receiver<u64>> {
        if !matches!(self.target, Target::Sentinel { .. }) {
            return None;
        }
        let sender = self.following.changes.get_or_init(|| {
            tokio::spawn(watch_master(Arc::downgrade(self)));
            watch::channel(0).0
        });
        Some(sender.subscribe())
    }

    /// Asks the sentinels, the one that answered last first, for the master's `(host, port)`.
    pub(super) async fn ask_sentinels(&self) -> Result<(String, u16), String> {
        let Target::Sentinel { sentinels, master } = &self.target else {
            return Err("not a Sentinel shard".into());
        };
        let ask = |mut conn: MultiplexedConnection| async move {
            let answer: Option<(String, u16)> = redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(master)
                .query_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            answer
                .map(|a| (a, conn))
                .ok_or_else(|| format!("it knows no master named {master:?}"))
        };
        let kept = lock(&self.following.sentinel).clone();
        if let Some(conn) = kept {
            match ask(conn).await {
                Ok((answer, _)) => return Ok(answer),
                Err(_) => *lock(&self.following.sentinel) = None,
            }
        }
        let mut errors = Vec::new();
        for sentinel in sentinels {
            let asked = async { ask(self.open_single(sentinel.clone()).await?).await };
            match asked.await {
                Ok((answer, conn)) => {
                    *lock(&self.following.sentinel) = Some(conn);
                    return Ok(answer);
                }
                Err(e) => errors.push(e),
            }
        }
        Err(format!("no sentinel answered: {}", errors.join("; ")))
    }

    /// Remembers the master this node connects to (see [`Shard::master_changes`]).
    pub(super) fn connecting_to(&self, host: &str, port: u16) {
        *lock(&self.following.named) = Some(format!("{host}:{port}"));
    }
}

/// Asks the sentinels every [`CHECK_INTERVAL`] whether they still name the master this node
/// connected to, until the shard is dropped.
async fn watch_master(shard: Weak<Shard>) {
    let mut every = tokio::time::interval(CHECK_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(shard) = shard.upgrade() else { return };
        let Some(known) = lock(&shard.following.named).clone() else {
            continue; // not connected yet: the next connection asks anyway
        };
        let deadline = shard.settings.connect_timeout + shard.settings.io_timeout;
        let Ok(Ok((host, port))) = tokio::time::timeout(deadline, shard.ask_sentinels()).await
        else {
            continue; // no sentinel answered: keep what works
        };
        let now = format!("{host}:{port}");
        if now == known {
            continue;
        }
        tracing::warn!(
            "Redis Sentinel: {} moved from {known} to {now}; reconnecting to it",
            shard.describe()
        );
        *lock(&shard.following.named) = Some(now);
        shard.reset();
        if let Some(changes) = shard.following.changes.get() {
            changes.send_modify(|n| *n += 1);
        }
    }
}
