//! [`Tracker`]: turns the hub's first/last reports for users (or channels) into online/offline
//! (occupied/vacated) events, holding each "last one gone" for a grace period so that a
//! reconnect (resubscribe) within it emits nothing at all.
//!
//! A key is `Up` once announced; its last connection going makes it `Leaving` with a deadline.
//! Coming back before the deadline makes it `Up` again, silently. At the deadline the
//! [`Liveness`] is asked whether the key is up anywhere (this node's hub): only if not is the
//! "down" event queued. This is the single-node tracker; across nodes (Redis engine),
//! [`super::cluster::ClusterTracker`] does the same over the shared state in Redis. Every grace is
//! the same length, so deadlines come in the order they were set and one FIFO holds them all;
//! one task serves it ([`Tracker::run`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Liveness;
use super::event::{Event, Kind};
use super::queue::{Queue, UpChange, UpKind};
use crate::sync::lock;

/// Where a key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Announced up.
    Up,
    /// Its last one went; `down` is due at the deadline of this generation.
    Leaving(u64),
}

#[derive(Debug, Default)]
struct Inner {
    states: HashMap<Box<str>, State>,
    /// Deadlines, oldest first: (when, key, generation).
    due: VecDeque<(Instant, Box<str>, u64)>,
    generation: u64,
}

/// Online/offline of users, or occupied/vacated of channels. See the module documentation.
pub struct Tracker {
    kind: UpKind,
    grace: Duration,
    /// Whether the up and the down event are sent (`webhooks.events`).
    send_up: bool,
    send_down: bool,
    inner: Mutex<Inner>,
    /// Rung when a deadline is added to an empty FIFO.
    wake: tokio::sync::Notify,
    queue: Arc<Queue>,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("kind", &self.kind)
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

impl Tracker {
    /// A tracker of `kind` queueing into `queue`, sending the up/down events it is told to.
    pub fn new(
        kind: UpKind,
        grace: Duration,
        send_up: bool,
        send_down: bool,
        queue: Arc<Queue>,
    ) -> Tracker {
        Tracker {
            kind,
            grace,
            send_up,
            send_down,
            inner: Mutex::new(Inner::default()),
            wake: tokio::sync::Notify::new(),
            queue,
        }
    }

    fn kinds(&self) -> (Kind, Kind) {
        match self.kind {
            UpKind::User => (Kind::UserOnline, Kind::UserOffline),
            UpKind::Channel => (Kind::ChannelOccupied, Kind::ChannelVacated),
        }
    }

    /// Queues the event of `key` going up or down, with the `up` change that records it.
    /// Called under the tracker's lock, so a key's events are queued in order.
    fn emit(&self, key: &str, up: bool) {
        let (up_kind, down_kind) = self.kinds();
        let (kind, send) = if up {
            (up_kind, self.send_up)
        } else {
            (down_kind, self.send_down)
        };
        let (user, channel) = match self.kind {
            UpKind::User => (Some(key), None),
            UpKind::Channel => (None, Some(key)),
        };
        let body = send.then(|| {
            Event {
                kind,
                user,
                channel,
                publication: None,
            }
            .to_json()
        });
        self.queue.push(
            body,
            Some(UpChange {
                kind: self.kind,
                key: key.into(),
                up,
            }),
        );
    }

    /// The first connection (subscriber) of `key` on this node.
    pub fn up(&self, key: &str) {
        let mut inner = lock(&self.inner);
        match inner.states.get_mut(key) {
            // Back within the grace period: nothing was announced, nothing is.
            Some(state) => *state = State::Up,
            None => {
                inner.states.insert(key.into(), State::Up);
                self.emit(key, true);
            }
        }
    }

    /// The last connection (subscriber) of `key` on this node is gone.
    pub fn down(&self, key: &str) {
        let mut inner = lock(&self.inner);
        self.leave(&mut inner, key);
    }

    fn leave(&self, inner: &mut Inner, key: &str) {
        inner.generation += 1;
        let generation = inner.generation;
        inner.states.insert(key.into(), State::Leaving(generation));
        let was_empty = inner.due.is_empty();
        inner
            .due
            .push_back((Instant::now() + self.grace, key.into(), generation));
        if was_empty {
            self.wake.notify_one();
        }
    }

    /// Keys announced up before a restart (the queue's `up` rows): none of them is connected
    /// now, so each is leaving, and goes down after the grace period unless it comes back.
    pub fn restore(&self, keys: impl IntoIterator<Item = String>) {
        let mut inner = lock(&self.inner);
        for key in keys {
            self.leave(&mut inner, &key);
        }
    }

    /// Serves the deadlines until `stop`: at each, asks `liveness` whether the key is up
    /// anywhere and queues the down event if not.
    pub async fn run(self: Arc<Self>, liveness: Arc<dyn Liveness>, stop: CancellationToken) {
        loop {
            let next = lock(&self.inner).due.front().map(|(at, _, _)| *at);
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => self.wake.notified().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = sleep => {}
            }
            let due = {
                let mut inner = lock(&self.inner);
                match inner.due.front() {
                    Some((at, _, _)) if *at <= Instant::now() => inner.due.pop_front(),
                    _ => None,
                }
            };
            let Some((_, key, generation)) = due else {
                continue;
            };
            let current =
                |inner: &Inner| inner.states.get(&key) == Some(&State::Leaving(generation));
            if !current(&lock(&self.inner)) {
                // Came back, or left again later (that later deadline decides).
                continue;
            }
            let elsewhere = match self.kind {
                UpKind::User => liveness.user_connected(&key).await,
                UpKind::Channel => liveness.channel_occupied(&key).await,
            };
            let mut inner = lock(&self.inner);
            if current(&inner) {
                inner.states.remove(&key);
                if elsewhere {
                    // Another node has it: this one owes no event any more.
                    self.queue.push(
                        None,
                        Some(UpChange {
                            kind: self.kind,
                            key: key.clone(),
                            up: false,
                        }),
                    );
                } else {
                    self.emit(&key, false);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::BoxFuture;
    use crate::webhooks::queue::{Budget, QueueMetrics};

    /// Nobody is live anywhere else.
    struct Nowhere;

    impl Liveness for Nowhere {
        fn user_connected<'a>(&'a self, _: &'a str) -> BoxFuture<'a, bool> {
            Box::pin(std::future::ready(false))
        }
        fn channel_occupied<'a>(&'a self, _: &'a str) -> BoxFuture<'a, bool> {
            Box::pin(std::future::ready(false))
        }
        fn user_subscribed<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, bool> {
            Box::pin(std::future::ready(false))
        }
    }

    /// The types of the events the queue holds, once the writer thread has written `n`.
    async fn written(queue: &Queue, n: usize) -> Vec<String> {
        // Up to 5 s.
        for _ in 0..1000 {
            let front = queue.front(100);
            if front.len() >= n {
                return front
                    .iter()
                    .map(|s| {
                        let v: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
                        format!(
                            "{} {}",
                            v["type"].as_str().unwrap(),
                            v["user"].as_str().unwrap()
                        )
                    })
                    .collect();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{n} events not written");
    }

    /// Back within the grace period: nothing; gone past it: offline; a key restored from a
    /// previous run goes offline after the grace period too.
    #[tokio::test]
    async fn a_return_within_the_grace_period_is_silent() {
        let dir = tempfile::tempdir().unwrap();
        let (queue, _) = Queue::open(
            dir.path(),
            Budget::new(100, 1 << 20),
            QueueMetrics::default(),
        )
        .unwrap();
        let grace = Duration::from_secs(1);
        let tracker = Arc::new(Tracker::new(UpKind::User, grace, true, true, queue.clone()));
        let stop = CancellationToken::new();
        tokio::spawn(tracker.clone().run(Arc::new(Nowhere), stop.clone()));
        tracker.up("alice");
        tracker.down("alice");
        tokio::time::sleep(Duration::from_millis(200)).await;
        tracker.up("alice");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(written(&queue, 1).await, ["user_online alice"]);
        let left = std::time::Instant::now();
        tracker.down("alice");
        tracker.restore(["bob".to_owned()]);
        assert_eq!(
            written(&queue, 3).await,
            [
                "user_online alice",
                "user_offline alice",
                "user_offline bob"
            ]
        );
        assert!(
            left.elapsed() >= Duration::from_millis(950),
            "not before the grace period"
        );
        stop.cancel();
    }
}
