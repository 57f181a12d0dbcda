//! [`Outbox`]: where the delivery task takes its batches from — this node's durable queue
//! ([`Queue`], `webhooks.db`) on one node, or the cluster's queue in Redis ([`RedisOutbox`]),
//! which one node at a time delivers (the holder of the lease).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;

use super::queue::{Queue, QueueMetrics};
use super::redis_store::{RedisStore, StreamEvent};
use crate::engine::BoxFuture;

/// A batch of events to POST, in order.
#[derive(Debug, Default)]
pub struct Batch {
    /// The events' JSON.
    pub bodies: Vec<Bytes>,
    /// Their ids in the Redis stream (empty for the local queue).
    ids: Vec<String>,
}

/// The source of the delivery task's batches. `next` waits; `delivered` is told of a batch
/// the backend acknowledged.
pub trait Outbox: Send + Sync {
    /// The next batch (up to `max` events), once there is one and this node may deliver it;
    /// `post_timeout` (`webhooks.timeout`) bounds how long one delivery attempt holds it.
    fn next(&self, max: usize, post_timeout: Duration) -> BoxFuture<'_, Batch>;
    /// The backend answered 2xx to `batch`.
    fn delivered(&self, batch: Batch) -> BoxFuture<'_, ()>;
    /// The delivery task stops (the node shuts down).
    fn stopped(&self) -> BoxFuture<'_, ()>;
    /// The queue's metrics.
    fn metrics(&self) -> &QueueMetrics;
    /// Events waiting, as last known.
    fn waiting(&self) -> usize;
}

impl Outbox for Queue {
    fn next(&self, max: usize, _: Duration) -> BoxFuture<'_, Batch> {
        Box::pin(async move {
            self.wait().await;
            Batch {
                bodies: self.front(max).into_iter().map(|s| s.body).collect(),
                ids: Vec::new(),
            }
        })
    }

    fn delivered(&self, batch: Batch) -> BoxFuture<'_, ()> {
        Queue::delivered(self, batch.bodies.len());
        Box::pin(std::future::ready(()))
    }

    fn stopped(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }

    fn metrics(&self) -> &QueueMetrics {
        Queue::metrics(self)
    }

    fn waiting(&self) -> usize {
        self.len()
    }
}

/// How often the lease holder looks for new events when none of this node's own arrived
/// (another node's events are seen within this).
const IDLE_POLL: Duration = Duration::from_millis(200);
/// How often a node that does not hold the lease tries to take it.
const LEASE_POLL: Duration = Duration::from_millis(500);
/// The wait after Redis failed.
const FAILED_WAIT: Duration = Duration::from_secs(1);

/// The cluster's queue in Redis: the batches are this node's only while it holds the lease,
/// which it renews before each attempt for twice `webhooks.timeout` and a second (a node that
/// dies holding it is replaced after that).
pub struct RedisOutbox {
    store: Arc<RedisStore>,
    /// Rung when this node appended an event (others' are seen by polling).
    appended: tokio::sync::Notify,
    /// Redis failed on the last attempt (logged once per failing stretch).
    failing: AtomicBool,
}

impl std::fmt::Debug for RedisOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOutbox")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl RedisOutbox {
    /// The outbox of `store`.
    pub fn new(store: Arc<RedisStore>) -> RedisOutbox {
        RedisOutbox {
            store,
            appended: tokio::sync::Notify::new(),
            failing: AtomicBool::new(false),
        }
    }

    /// This node appended an event: the holder (if this node) looks at once.
    pub fn appended(&self) {
        self.appended.notify_one();
    }

    fn failed(&self, e: &dyn std::fmt::Display) {
        if !self.failing.swap(true, Ordering::AcqRel) {
            tracing::warn!("webhooks: cannot read the event queue in Redis: {e}; retrying");
        }
    }

    fn set_waiting(&self, n: u64) {
        self.store
            .metrics()
            .queued
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// One attempt: `Some(batch)` when this node holds the lease and events wait.
    async fn attempt(&self, max: usize, post_timeout: Duration) -> Result<Option<Batch>, bool> {
        let lease = post_timeout * 2 + Duration::from_secs(1);
        let held = self.store.lease(lease).await.map_err(|e| {
            self.failed(&e);
            true
        })?;
        let waiting = self.store.len().await.map_err(|e| {
            self.failed(&e);
            true
        })?;
        self.set_waiting(waiting);
        if !held {
            self.failing.store(false, Ordering::Release);
            return Err(false);
        }
        let events: Vec<StreamEvent> = self.store.front(max).await.map_err(|e| {
            self.failed(&e);
            true
        })?;
        self.failing.store(false, Ordering::Release);
        if events.is_empty() {
            return Ok(None);
        }
        let (ids, bodies) = events.into_iter().map(|e| (e.id, e.body)).unzip();
        Ok(Some(Batch { bodies, ids }))
    }
}

impl Outbox for RedisOutbox {
    fn next(&self, max: usize, post_timeout: Duration) -> BoxFuture<'_, Batch> {
        Box::pin(async move {
            loop {
                match self.attempt(max, post_timeout).await {
                    Ok(Some(batch)) => return batch,
                    Ok(None) => {
                        let _ = tokio::time::timeout(IDLE_POLL, self.appended.notified()).await;
                    }
                    Err(false) => tokio::time::sleep(LEASE_POLL).await,
                    Err(true) => tokio::time::sleep(FAILED_WAIT).await,
                }
            }
        })
    }

    fn delivered(&self, batch: Batch) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let events: Vec<StreamEvent> = batch
                .ids
                .into_iter()
                .zip(batch.bodies)
                .map(|(id, body)| StreamEvent { id, body })
                .collect();
            self.store.metrics().delivered.inc_by(events.len() as u64);
            match self.store.delivered(&events).await {
                Ok(left) => self.set_waiting(left),
                // Sent again by whoever delivers next: at least once, the ids tell.
                Err(e) => tracing::warn!(
                    "webhooks: {} delivered events could not be deleted from Redis ({e}); \
                     they will be sent again",
                    events.len()
                ),
            }
        })
    }

    fn stopped(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Err(e) = self.store.release().await {
                tracing::debug!("webhooks: cannot give the delivery lease back: {e}");
            }
        })
    }

    fn metrics(&self) -> &QueueMetrics {
        self.store.metrics()
    }

    fn waiting(&self) -> usize {
        usize::try_from(self.store.metrics().queued.get()).unwrap_or(0)
    }
}
