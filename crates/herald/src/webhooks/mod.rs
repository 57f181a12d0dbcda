//! Webhooks: events Herald POSTs to a backend — `user_online` / `user_offline` (a user's first
//! connection, and their last one gone for `webhooks.offline_grace`), `channel_occupied` /
//! `channel_vacated` (a channel's first subscriber, and its last one gone for
//! `webhooks.vacated_grace`), and `offline_publication` (a publication into a user-limited
//! channel, `dm:#alice,bob`, for each user it names who has no subscription to it: the signal
//! to send that user a mobile push notification).
//!
//! How an event travels:
//!
//! ```text
//!  hub (first/last connection or subscriber, under its lock) ──▶ Tracker (grace period)
//!  broker handler (every publication, in offset order) ──▶ resolver task (who is offline?)
//!        │                                                     │
//!        └───────────────────────▶ Queue (webhooks.db, durable, bounded) ◀┘
//!                                          │
//!                                          ▼
//!                               Delivery task: signed POSTs, retried with back-off
//! ```
//!
//! **One node** (the embedded engine): "is this user connected / subscribed, is this channel
//! occupied" is asked of this node's hub ([`LocalLiveness`]), and the queue is `webhooks.db`.
//!
//! **A cluster on the Redis engine**: the first/last reports go to the shared state in Redis
//! ([`cluster::ClusterTracker`] → [`redis_store::RedisStore`]), whose atomic scripts decide
//! each event once for the cluster and append it to a stream in Redis, the cluster's queue,
//! which one node at a time delivers ([`outbox::RedisOutbox`]). A crashed node's entries
//! expire after `engine.redis.presence_ttl`, and its users go offline then. An
//! `offline_publication` is decided by the node that published ([`Webhooks::published_here`]),
//! asking the channel's shared presence ([`cluster::ClusterLiveness`]). With NATS, webhooks
//! are refused at start-up ([`cluster::problems`]). See docs/architecture.md.
//!
//! In demo mode ([`crate::config::Config::demo`]) the resolver also tells the sender of a
//! private message in the demo chat that its recipient is offline ([`demo`]), whether or not
//! webhooks are enabled.

mod cluster;
mod delivery;
mod demo;
mod event;
mod liveness;
mod outbox;
mod queue;
mod redis_store;
mod tracker;

pub use cluster::problems as cluster_problems;
pub use delivery::{SIGNATURE_HEADER, TIMESTAMP_HEADER, signature};
pub use event::{Event, Kind, PublicationPart};
pub use liveness::{Liveness, LocalLiveness};
pub use queue::{FILE_NAME, QueueMetrics};

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::config::{Config, EngineType};
use crate::hub::HubObserver;
use crate::node::Node;
use crate::protocol::Publication;
use crate::sync::lock;
use cluster::{ClusterLiveness, ClusterTracker};
use delivery::Delivery;
use outbox::{Outbox, RedisOutbox};
use queue::{Budget, Queue, UpChange, UpKind};
use redis_store::{RedisStore, Subject};
use tracker::Tracker;

/// A publication into a user-limited channel, on its way to the resolver.
struct Candidate {
    channel: Box<str>,
    publication: Publication,
    /// What it holds of the candidates' budget.
    bytes: usize,
}

/// The webhooks of a node in a Redis-engine cluster: the shared state and queue, and this
/// node's trackers writing into it.
struct Cluster {
    store: Arc<RedisStore>,
    outbox: Arc<RedisOutbox>,
    users: Option<Arc<ClusterTracker>>,
    channels: Option<Arc<ClusterTracker>>,
    /// Every `client.presence_update_interval`, the trackers re-add this node's entries.
    refresh_every: std::time::Duration,
}

/// A node's webhooks: the trackers, the queue, and the tasks [`Webhooks::run`] starts.
pub struct Webhooks {
    /// The local queue (one node).
    queue: Option<Arc<Queue>>,
    /// The cluster's state and queue (Redis engine); the local queue and trackers are unused.
    cluster: Option<Cluster>,
    users: Option<Arc<Tracker>>,
    channels: Option<Arc<Tracker>>,
    /// `offline_publication` is sent.
    offline_publications: bool,
    /// The demo chat's offline notices are made.
    demo: bool,
    candidates: mpsc::UnboundedSender<Candidate>,
    /// Taken by [`Webhooks::run`].
    resolver_input: Mutex<Option<mpsc::UnboundedReceiver<Candidate>>>,
    /// Bounds the publications waiting for the resolver (it holds their data).
    candidate_budget: Budget,
    /// Taken by [`Webhooks::run`].
    delivery: Mutex<Option<Delivery>>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

/// Checks a `webhooks.endpoint` value: an absolute `http` or `https` URL with a host.
pub fn check_endpoint(endpoint: &str) -> Result<http::Uri, String> {
    let url: http::Uri = endpoint.trim().parse().map_err(|e| {
        format!(
            "\"{endpoint}\" is not a URL ({e}); write e.g. https://backend.example/herald/events"
        )
    })?;
    if !matches!(url.scheme_str(), Some("http" | "https")) || url.host().is_none_or(str::is_empty) {
        return Err(format!(
            "\"{endpoint}\" must be an http:// or https:// URL with a host"
        ));
    }
    Ok(url)
}

impl Webhooks {
    /// The webhooks `config` asks for (`None` when webhooks are off and it is no demo): opens
    /// the queue in `data_dir` (failing with a message that names the file) and restores what
    /// a previous run announced.
    pub fn new(config: &Config, metrics: QueueMetrics) -> Result<Option<Arc<Webhooks>>, String> {
        let w = &config.webhooks;
        if !w.enabled && !config.demo {
            return Ok(None);
        }
        let cluster = if w.enabled && config.engine.kind == EngineType::Redis {
            Some(Self::cluster(config, metrics.clone())?)
        } else {
            None
        };
        let (queue, users, channels) = if w.enabled && cluster.is_none() {
            let (queue, up) = Queue::open(
                &config.data_dir,
                Budget::new(w.max_queue, w.max_queue_bytes),
                metrics,
            )?;
            let tracker = |kind, grace, up: Kind, down: Kind| {
                let (up, down) = (w.sends(up.as_str()), w.sends(down.as_str()));
                (up || down).then(|| Arc::new(Tracker::new(kind, grace, up, down, queue.clone())))
            };
            let users = tracker(
                UpKind::User,
                w.offline_grace,
                Kind::UserOnline,
                Kind::UserOffline,
            );
            let channels = tracker(
                UpKind::Channel,
                w.vacated_grace,
                Kind::ChannelOccupied,
                Kind::ChannelVacated,
            );
            let mut restore = (Vec::new(), Vec::new());
            for (kind, key) in up {
                let (tracker, keys) = match kind {
                    UpKind::User => (&users, &mut restore.0),
                    UpKind::Channel => (&channels, &mut restore.1),
                };
                if tracker.is_some() {
                    keys.push(key);
                } else {
                    // Those events are no longer sent: nothing is owed.
                    queue.push(
                        None,
                        Some(UpChange {
                            kind,
                            key: key.into(),
                            up: false,
                        }),
                    );
                }
            }
            if let Some(users) = &users {
                users.restore(restore.0);
            }
            if let Some(channels) = &channels {
                channels.restore(restore.1);
            }
            (Some(queue), users, channels)
        } else {
            (None, None, None)
        };
        let delivery = if w.enabled {
            Some(Delivery::new(w)?)
        } else {
            None
        };
        let (candidates, resolver_input) = mpsc::unbounded_channel();
        Ok(Some(Arc::new(Webhooks {
            queue,
            cluster,
            users,
            channels,
            offline_publications: w.sends(Kind::OfflinePublication.as_str()),
            demo: config.demo,
            candidates,
            resolver_input: Mutex::new(Some(resolver_input)),
            candidate_budget: Budget::new(w.max_queue, w.max_queue_bytes),
            delivery: Mutex::new(delivery),
        })))
    }

    /// The cluster half of [`Webhooks::new`]: the store in Redis (its own connections to
    /// `engine.redis`) and the trackers writing to it.
    fn cluster(config: &Config, metrics: QueueMetrics) -> Result<Cluster, String> {
        let w = &config.webhooks;
        let redis = &config.engine.redis;
        let shards = crate::engine::redis::RedisShards::connect(redis)
            .map_err(|e| format!("webhooks (their queue in Redis): {e}"))?;
        let store = Arc::new(RedisStore::new(
            shards,
            redis.presence_ttl,
            w.max_queue,
            w.max_queue_bytes,
            metrics,
        ));
        let tracker = |subject, grace, up: Kind, down: Kind| {
            let (up, down) = (w.sends(up.as_str()), w.sends(down.as_str()));
            (up || down)
                .then(|| Arc::new(ClusterTracker::new(subject, grace, up, down, store.clone())))
        };
        Ok(Cluster {
            users: tracker(
                Subject::User,
                w.offline_grace,
                Kind::UserOnline,
                Kind::UserOffline,
            ),
            channels: tracker(
                Subject::Channel,
                w.vacated_grace,
                Kind::ChannelOccupied,
                Kind::ChannelVacated,
            ),
            outbox: Arc::new(RedisOutbox::new(store.clone())),
            store,
            refresh_every: config.client.presence_update_interval,
        })
    }

    /// Whether the hub's first/last reports are wanted ([`Hub::set_observer`](crate::hub::Hub::set_observer)).
    pub fn observes_hub(&self) -> bool {
        match &self.cluster {
            Some(cluster) => cluster.users.is_some() || cluster.channels.is_some(),
            None => self.users.is_some() || self.channels.is_some(),
        }
    }

    /// Events waiting for delivery (0 without a queue; in a cluster, the cluster's queue as
    /// last read).
    pub fn queued(&self) -> usize {
        match &self.cluster {
            Some(cluster) => cluster.outbox.waiting(),
            None => self.queue.as_ref().map_or(0, |q| q.len()),
        }
    }

    /// A publication was delivered in `channel` (called by the node's broker handler, in
    /// offset order): if the channel is user-limited, hands it to the resolver, which finds
    /// the users it names who have no subscription to it. Never waits. In a cluster this is
    /// [`Webhooks::published_here`]'s job instead (the handler runs on every node with a
    /// subscriber, and on none without).
    pub fn published(&self, node: &Node, channel: &str, publication: &Publication) {
        if self.cluster.is_none() {
            self.candidate(node, channel, publication);
        }
    }

    /// Whether [`Webhooks::published_here`] wants the publications of `channel` made by this
    /// node (in a cluster, a user-limited channel): the publisher then builds the publication.
    pub fn wants_published_here(&self, node: &Node, channel: &str) -> bool {
        self.cluster.is_some()
            && (self.offline_publications || self.demo)
            && node.resolve_channel(channel).is_ok_and(|(parsed, ns)| {
                parsed.is_user_limited() && ns.allow_user_limited_channels
            })
    }

    /// A publication this node published (`Node::publish`, once per publication in the
    /// cluster): in a cluster, it is checked for offline users here.
    pub fn published_here(&self, node: &Node, channel: &str, publication: &Publication) {
        if self.cluster.is_some() {
            self.candidate(node, channel, publication);
        }
    }

    /// Hands a publication of a user-limited channel to the resolver. Never waits.
    fn candidate(&self, node: &Node, channel: &str, publication: &Publication) {
        if !self.offline_publications && !self.demo {
            return;
        }
        let Ok((parsed, namespace)) = node.resolve_channel(channel) else {
            return;
        };
        if !parsed.is_user_limited() || !namespace.allow_user_limited_channels {
            return;
        }
        let bytes = channel.len() + publication.data.as_ref().map_or(0, |d| d.len()) + 256;
        if !self.candidate_budget.reserve(bytes) {
            if let Some(queue) = &self.queue {
                queue.metrics().dropped.inc();
            }
            if let Some(cluster) = &self.cluster {
                cluster.store.metrics().dropped.inc();
            }
            tracing::error!(
                channel,
                "webhooks: too many publications wait for the offline check \
                 (webhooks.max_queue / max_queue_bytes); this one gets no offline_publication"
            );
            return;
        }
        let candidate = Candidate {
            channel: channel.into(),
            publication: publication.clone(),
            bytes,
        };
        if self.candidates.send(candidate).is_err() {
            self.candidate_budget.release(1, bytes);
        }
    }

    /// Starts the tasks: the trackers' deadlines, the resolver, the delivery. Once (later
    /// calls do nothing); they end when the node shuts down.
    pub fn run(self: &Arc<Self>, node: &Arc<Node>) {
        let stop = node.shutdown().clone();
        let liveness: Arc<dyn Liveness> = if self.cluster.is_some() {
            Arc::new(ClusterLiveness(LocalLiveness(Arc::downgrade(node))))
        } else {
            Arc::new(LocalLiveness(Arc::downgrade(node)))
        };
        let Some(input) = lock(&self.resolver_input).take() else {
            return;
        };
        for tracker in [&self.users, &self.channels].into_iter().flatten() {
            tokio::spawn(tracker.clone().run(liveness.clone(), stop.clone()));
        }
        if let Some(cluster) = &self.cluster {
            for tracker in [&cluster.users, &cluster.channels].into_iter().flatten() {
                tokio::spawn(tracker.clone().run(cluster.refresh_every, stop.clone()));
            }
        }
        let outbox: Option<Arc<dyn Outbox>> = match (&self.cluster, &self.queue) {
            (Some(cluster), _) => Some(cluster.outbox.clone()),
            (None, Some(queue)) => Some(queue.clone()),
            (None, None) => None,
        };
        if let (Some(delivery), Some(outbox)) = (lock(&self.delivery).take(), outbox) {
            tokio::spawn(delivery.run(outbox, stop.clone()));
        }
        let this = self.clone();
        let node = Arc::downgrade(node);
        tokio::spawn(async move {
            let mut input = input;
            loop {
                let candidate = tokio::select! {
                    () = stop.cancelled() => return,
                    candidate = input.recv() => candidate,
                };
                let Some(candidate) = candidate else { return };
                let Some(node) = node.upgrade() else { return };
                this.resolve(&node, liveness.as_ref(), &candidate).await;
                this.candidate_budget.release(1, candidate.bytes);
            }
        });
    }

    /// Queues an `offline_publication` for each user `candidate`'s channel names who has no
    /// subscription to it (and, in demo mode, tells the sender).
    async fn resolve(&self, node: &Node, liveness: &dyn Liveness, candidate: &Candidate) {
        let channel = &*candidate.channel;
        let Ok((parsed, namespace)) = node.resolve_channel(channel) else {
            return;
        };
        let mut offline = Vec::new();
        let users: BTreeSet<&str> = parsed.users().filter(|u| !u.is_empty()).collect();
        for user in users {
            if !liveness.user_subscribed(user, channel).await {
                offline.push(user);
            }
        }
        if offline.is_empty() {
            return;
        }
        let publication = &candidate.publication;
        let epoch = match node.history() {
            Some(history) if publication.offset > 0 => history
                .top(channel, node.history_options(namespace))
                .await
                .map(|top| top.epoch)
                .unwrap_or_default(),
            _ => String::new(),
        };
        for user in offline {
            if self.offline_publications {
                let event = Event {
                    kind: Kind::OfflinePublication,
                    user: Some(user),
                    channel: Some(channel),
                    publication: Some(PublicationPart {
                        offset: publication.offset,
                        epoch: &epoch,
                        data: publication.data.as_ref(),
                        info: publication.info.as_ref(),
                        tags: &publication.tags,
                    }),
                };
                self.push(event.to_json()).await;
            }
            if self.demo {
                demo::notify_sender(node, parsed.namespace, user, publication).await;
            }
        }
    }
}

impl Webhooks {
    /// Queues one event made by the resolver: in the local queue, or the cluster's.
    async fn push(&self, body: Vec<u8>) {
        if let Some(cluster) = &self.cluster {
            match cluster.store.push(&body).await {
                Ok(true) => cluster.outbox.appended(),
                Ok(false) => {}
                Err(e) => {
                    cluster.store.metrics().dropped.inc();
                    tracing::error!("webhooks: cannot queue an event in Redis ({e}); it is lost");
                }
            }
        } else if let Some(queue) = &self.queue {
            queue.push(Some(body), None);
        }
    }
}

impl HubObserver for Webhooks {
    fn user_up(&self, user: &str) {
        if let Some(cluster) = &self.cluster {
            if let Some(users) = &cluster.users {
                users.up(user);
            }
        } else if let Some(users) = &self.users {
            users.up(user);
        }
    }

    fn user_down(&self, user: &str) {
        if let Some(cluster) = &self.cluster {
            if let Some(users) = &cluster.users {
                users.down(user);
            }
        } else if let Some(users) = &self.users {
            users.down(user);
        }
    }

    fn channel_up(&self, channel: &str) {
        if let Some(cluster) = &self.cluster {
            if let Some(channels) = &cluster.channels {
                channels.up(channel);
            }
        } else if let Some(channels) = &self.channels {
            channels.up(channel);
        }
    }

    fn channel_down(&self, channel: &str) {
        if let Some(cluster) = &self.cluster {
            if let Some(channels) = &cluster.channels {
                channels.down(channel);
            }
        } else if let Some(channels) = &self.channels {
            channels.down(channel);
        }
    }
}
