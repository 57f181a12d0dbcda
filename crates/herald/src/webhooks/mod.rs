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
//! **Single node.** "Is this user connected / subscribed, is this channel occupied" is asked of
//! a [`Liveness`]; today that is this node's hub ([`LocalLiveness`]). The first/last reports
//! come from this node's hub too, so with several nodes each node would report its own users;
//! a cluster engine implements [`Liveness`] over its shared presence, and the events then
//! move to the node that sees a user's first connection anywhere (see docs/architecture.md).
//!
//! In demo mode ([`crate::config::Config::demo`]) the resolver also tells the sender of a
//! private message in the demo chat that its recipient is offline ([`demo`]), whether or not
//! webhooks are enabled.

mod delivery;
mod demo;
mod event;
mod liveness;
mod queue;
mod tracker;

pub use delivery::{SIGNATURE_HEADER, TIMESTAMP_HEADER, signature};
pub use event::{Event, Kind, PublicationPart};
pub use liveness::{Liveness, LocalLiveness};
pub use queue::{FILE_NAME, QueueMetrics};

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::config::Config;
use crate::hub::HubObserver;
use crate::node::Node;
use crate::protocol::Publication;
use crate::sync::lock;
use delivery::Delivery;
use queue::{Budget, Queue, UpChange, UpKind};
use tracker::Tracker;

/// A publication into a user-limited channel, on its way to the resolver.
struct Candidate {
    channel: Box<str>,
    publication: Publication,
    /// What it holds of the candidates' budget.
    bytes: usize,
}

/// A node's webhooks: the trackers, the queue, and the tasks [`Webhooks::run`] starts.
pub struct Webhooks {
    queue: Option<Arc<Queue>>,
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
        let (queue, users, channels) = if w.enabled {
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

    /// Whether the hub's first/last reports are wanted ([`Hub::set_observer`](crate::hub::Hub::set_observer)).
    pub fn observes_hub(&self) -> bool {
        self.users.is_some() || self.channels.is_some()
    }

    /// Events waiting for delivery (0 without a queue).
    pub fn queued(&self) -> usize {
        self.queue.as_ref().map_or(0, |q| q.len())
    }

    /// A publication was delivered in `channel` (called by the node's broker handler, in
    /// offset order): if the channel is user-limited, hands it to the resolver, which finds
    /// the users it names who have no subscription to it. Never waits.
    pub fn published(&self, node: &Node, channel: &str, publication: &Publication) {
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
        let liveness: Arc<dyn Liveness> = Arc::new(LocalLiveness(Arc::downgrade(node)));
        let Some(input) = lock(&self.resolver_input).take() else {
            return;
        };
        for tracker in [&self.users, &self.channels].into_iter().flatten() {
            tokio::spawn(tracker.clone().run(liveness.clone(), stop.clone()));
        }
        if let (Some(delivery), Some(queue)) = (lock(&self.delivery).take(), &self.queue) {
            tokio::spawn(delivery.run(queue.clone(), stop.clone()));
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
            if self.offline_publications
                && let Some(queue) = &self.queue
            {
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
                queue.push(Some(event.to_json()), None);
            }
            if self.demo {
                demo::notify_sender(node, parsed.namespace, user, publication).await;
            }
        }
    }
}

impl HubObserver for Webhooks {
    fn user_up(&self, user: &str) {
        if let Some(users) = &self.users {
            users.up(user);
        }
    }

    fn user_down(&self, user: &str) {
        if let Some(users) = &self.users {
            users.down(user);
        }
    }

    fn channel_up(&self, channel: &str) {
        if let Some(channels) = &self.channels {
            channels.up(channel);
        }
    }

    fn channel_down(&self, channel: &str) {
        if let Some(channels) = &self.channels {
            channels.down(channel);
        }
    }
}
