//! [`Hub`]: who is connected on this node and who is subscribed to what, and fan-out of an
//! encoded message to every local subscriber of a channel.
//!
//! The hub never encodes per recipient and never awaits: fan-out takes one [`Prepared`] push,
//! which encodes it at most once per encoding in use in the channel, and pushes a reference to
//! the message in each subscriber's encoding into its outbound queue under a read lock. A subscriber whose queue is over budget is closed by its own queue (3008) and nobody
//! else notices.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::auth::{BoolValue, SubscribeOverride};
use crate::client_id::ClientId;
use crate::config::NamespaceOptions;
use crate::delta::Variants;
use crate::prepared::Prepared;
use crate::protocol::{ClientInfo, Encoding, FilterNode, Payload, Publication};
use crate::session::SessionKey;
use crate::sync::{lock, read, write};
use crate::ws::{Message, Outbox, PushError};

mod handle;
mod subscribers;
#[cfg(test)]
mod tests;
mod users;

pub use handle::{ChannelSet, ClientHandle};
use subscribers::*;
pub use subscribers::{Selection, SubFlags};
use users::Users;

/// Channel maps are split into shards so that subscribes in one channel do not block fan-out in
/// another.
const SHARDS: usize = 64;

/// One shard of the channel table: channel name → subscribers. The name is kept once, here,
/// and shared with the subscribers' [`ChannelSet`]s.
type ChannelShard = HashMap<Arc<str>, Subscribers>;

/// What a subscribe did to a channel's local subscribers: a broker spanning nodes delivers a
/// channel to this node only while it has local subscribers, so the node subscribes itself to
/// the channel on [`Subscribed::First`] (and unsubscribes when the last one is gone, see
/// [`Hub::num_subscribers`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subscribed {
    /// The client was subscribed already: nothing changed.
    Already,
    /// The channel's first local subscriber.
    First,
    /// One more subscriber of a channel that had some.
    Another,
}

/// Told when a named user's first connection on this node arrives and its last one goes, and
/// when a channel gets its first local subscriber (pending or active) and loses its last one:
/// what webhooks ([`crate::webhooks`]) turn into online/offline and occupied/vacated events.
/// Called under the hub's lock of the user table or of the channel's shard, so the calls for
/// one user or channel come in the order the changes happened; an observer must not call the
/// hub back, and must return quickly (it holds up that shard).
pub trait HubObserver: Send + Sync {
    /// `user` (never empty: anonymous connections are nobody's) has its first connection.
    fn user_up(&self, user: &str);
    /// `user`'s last connection is gone.
    fn user_down(&self, user: &str);
    /// `channel` has its first local subscriber.
    fn channel_up(&self, channel: &str);
    /// `channel`'s last local subscriber is gone.
    fn channel_down(&self, channel: &str);
}

/// The node's registry of clients, users and channel subscriptions.
pub struct Hub {
    shards: Box<[RwLock<ChannelShard>]>,
    users: RwLock<Users>,
    /// Told of first/last connections and subscribers, when set ([`Hub::set_observer`]).
    observer: std::sync::OnceLock<Arc<dyn HubObserver>>,
    hasher: std::collections::hash_map::RandomState,
    /// The key of the connections' session ids (see [`crate::session`]).
    sessions: SessionKey,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("clients", &self.num_clients())
            .finish()
    }
}

/// Result of delivering one message to a channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Subscribers the message was queued for.
    pub delivered: usize,
    /// Subscribers closed because their queue was over budget.
    pub overflowed: usize,
}

impl Delivery {
    /// Queues `message` for one subscriber and counts the outcome (a closed queue belongs to
    /// a connection that is going away and counts as neither).
    #[inline]
    fn queue(&mut self, outbox: &Outbox, message: Option<&Arc<Message>>) {
        // A message that could not be encoded was logged when it failed.
        let Some(message) = message else {
            return;
        };
        match outbox.push(message.clone()) {
            Ok(()) => self.delivered += 1,
            Err(PushError::Full) => self.overflowed += 1,
            Err(PushError::Closed) => {}
        }
    }
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Hub {
        Hub {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            users: RwLock::new(Users::default()),
            observer: std::sync::OnceLock::new(),
            hasher: std::collections::hash_map::RandomState::new(),
            sessions: SessionKey::random(),
        }
    }

    /// The session id of a connected client (the connect reply's `session`).
    pub fn session_of(&self, client: &ClientHandle) -> String {
        self.sessions.session_of(&client.id)
    }

    /// Whether `session` is the session id of `client`.
    pub fn has_session(&self, client: &ClientHandle, session: &str) -> bool {
        self.sessions.matches(&client.id, session)
    }

    fn shard(&self, channel: &str) -> &RwLock<ChannelShard> {
        &self.shards[(self.hasher.hash_one(channel) as usize) % SHARDS]
    }

    /// Installs the observer of first/last connections and subscribers (once; before the
    /// node serves). Gives it back when one was set already.
    pub fn set_observer(&self, observer: Arc<dyn HubObserver>) -> Result<(), Arc<dyn HubObserver>> {
        self.observer.set(observer)
    }

    /// Registers a connected client.
    pub fn add_client(&self, client: Arc<ClientHandle>) {
        let mut users = write(&self.users);
        if users.add(&client)
            && let Some(observer) = self.observer.get()
        {
            observer.user_up(&client.user);
        }
    }

    /// Removes a client and all its subscriptions; returns the channels it was in, with the
    /// settings of each subscription.
    pub fn remove_client(&self, client: &ClientHandle) -> Vec<(Arc<str>, SubFlags)> {
        let channels: Vec<Arc<str>> = client.channels().drain().collect();
        let channels = channels
            .into_iter()
            .map(|channel| {
                let flags = self.remove_subscriber(&channel, client).unwrap_or_default();
                (channel, flags)
            })
            .collect();
        let mut users = write(&self.users);
        if users.remove(client)
            && let Some(observer) = self.observer.get()
        {
            observer.user_down(&client.user);
        }
        channels
    }

    /// Subscribes a client to a channel. Returns false if it already was.
    pub fn subscribe(&self, channel: &str, client: &Arc<ClientHandle>) -> bool {
        self.add_subscriber(channel, client, None, SubFlags::default())
    }

    /// Subscribes a client with join/leave and presence settings. Returns false if it
    /// already was.
    pub fn subscribe_with(
        &self,
        channel: &str,
        client: &Arc<ClientHandle>,
        flags: SubFlags,
    ) -> bool {
        self.add_subscriber(channel, client, None, flags)
    }

    /// Subscribes a client whose subscribe reply is not sent yet: publications are held back
    /// until [`Hub::activate`]. Returns false if it was already subscribed.
    pub fn subscribe_pending(
        &self,
        channel: &str,
        client: &Arc<ClientHandle>,
        flags: SubFlags,
    ) -> bool {
        self.subscribe_pending_selective(channel, client, flags, Selection::default())
    }

    /// [`Hub::subscribe_pending`] for a subscription with a tags filter or deltas.
    pub fn subscribe_pending_selective(
        &self,
        channel: &str,
        client: &Arc<ClientHandle>,
        flags: SubFlags,
        selection: Selection,
    ) -> bool {
        self.add_subscriber(channel, client, Some(selection), flags)
    }

    /// [`Hub::subscribe_pending_selective`], saying whether it is the channel's first local
    /// subscription: then the node subscribes itself to the channel at its broker before the
    /// subscription reads the stream's top ([`crate::node::Node::subscribe_pending`]).
    pub fn add_pending(
        &self,
        channel: &str,
        client: &Arc<ClientHandle>,
        flags: SubFlags,
        selection: Selection,
    ) -> Subscribed {
        self.add(channel, client, Some(selection), flags)
    }

    /// Adds a subscription: active when `pending` is `None`, else pending with that selection.
    fn add_subscriber(
        &self,
        channel: &str,
        client: &Arc<ClientHandle>,
        pending: Option<Selection>,
        flags: SubFlags,
    ) -> bool {
        self.add(channel, client, pending, flags) != Subscribed::Already
    }

    /// [`Hub::add_subscriber`], saying whether the channel had local subscribers before.
    fn add(
        &self,
        channel: &str,
        client: &Arc<ClientHandle>,
        pending: Option<Selection>,
        flags: SubFlags,
    ) -> Subscribed {
        // The hub's copy of the name, if the channel has subscribers already.
        let known = read(self.shard(channel))
            .get_key_value(channel)
            .map(|(name, _)| name.clone());
        let name = known.unwrap_or_else(|| Arc::from(channel));
        if !client.channels().insert(name.clone()) {
            return Subscribed::Already;
        }
        let subscriber = Subscriber {
            outbox: client.outbox.clone(),
            flags,
            encoding: client.encoding,
        };
        let mut shard = write(self.shard(channel));
        let entry = shard.entry(name);
        let added = match entry {
            std::collections::hash_map::Entry::Vacant(_) => {
                if let Some(observer) = self.observer.get() {
                    observer.channel_up(channel);
                }
                Subscribed::First
            }
            std::collections::hash_map::Entry::Occupied(_) => Subscribed::Another,
        };
        let subscribers = entry.or_default();
        match pending {
            Some(selection) => {
                if selection.delta {
                    subscribers
                        .special
                        .get_or_insert_default()
                        .delta_subscribers += 1;
                }
                let special = Special {
                    subscriber,
                    selection,
                    has_base: AtomicBool::new(false),
                };
                subscribers
                    .pending
                    .get_or_insert_default()
                    .push((special, Held::default()));
            }
            None => subscribers.active.push(subscriber),
        }
        added
    }

    /// Ends the set-up of a [`Hub::subscribe_pending`] subscription: queues what was held back
    /// with an offset above `after` (the client already has the rest from its subscribe
    /// reply), then lets publications through directly.
    pub fn activate(&self, channel: &str, client: &ClientHandle, after: u64) {
        self.activate_with_base(channel, client, after, 0);
    }

    /// [`Hub::activate`] for a subscription whose subscribe reply carried publications, the
    /// last at offset `base_offset` (0: none): a delta subscription can take deltas against
    /// it right away if it is still the channel's last publication (as Centrifugo does after
    /// a successful recovery).
    pub fn activate_with_base(
        &self,
        channel: &str,
        client: &ClientHandle,
        after: u64,
        base_offset: u64,
    ) {
        let mut shard = write(self.shard(channel));
        let Some(subscribers) = shard.get_mut(channel) else {
            return;
        };
        let Some((special, held)) = subscribers.take_pending(client) else {
            return;
        };
        // Under the shard's write lock: no publication passes between the held ones and
        // the subscription becoming active.
        // Whether the client has the channel's last publication (the base of the next delta):
        // the last one held back goes out now, or the subscribe reply ended with it.
        let reply_has_base = base_offset > 0
            && subscribers.special.as_ref().is_some_and(|special| {
                lock(&special.base)
                    .as_ref()
                    .is_some_and(|base| base.offset == base_offset)
            });
        let mut got_last = false;
        for (offset, message) in std::mem::take(&mut *lock(&held)) {
            got_last = offset == 0 || offset > after;
            if got_last {
                // A full queue closes the connection by itself.
                let _ = client.outbox.push(message);
            }
        }
        let got_last = got_last || reply_has_base;
        if special.selection.is_plain() {
            subscribers.active.push(special.subscriber);
        } else {
            // The last publication held (the channel's last) went out in full: deltas
            // against it apply. Otherwise the next publication goes out in full.
            special.has_base.store(got_last, Ordering::Relaxed);
            subscribers
                .special
                .get_or_insert_default()
                .active
                .push(special);
        }
    }

    /// Unsubscribes a client from a channel. Returns the subscription's settings, or `None` if
    /// it was not subscribed.
    pub fn unsubscribe(&self, channel: &str, client: &ClientHandle) -> Option<SubFlags> {
        if !client.channels().remove(channel) {
            return None;
        }
        Some(self.remove_subscriber(channel, client).unwrap_or_default())
    }

    fn remove_subscriber(&self, channel: &str, client: &ClientHandle) -> Option<SubFlags> {
        let mut shard = write(self.shard(channel));
        let subscribers = shard.get_mut(channel)?;
        let flags = subscribers.remove(client).map(|s| s.flags);
        if subscribers.is_empty() {
            shard.remove(channel);
            if let Some(observer) = self.observer.get() {
                observer.channel_down(channel);
            }
        }
        flags
    }

    /// Queues `message`, an encoded publication push without tags (the publication at
    /// `offset` of the channel's stream, 0 without history), for every local subscriber of
    /// `channel`, as it is, whatever its encoding. The tests' shortcut: publications go through
    /// [`Hub::broadcast_publication`], which a delta subscription needs.
    #[cfg(test)]
    pub fn broadcast(&self, channel: &str, message: &Arc<Message>, offset: u64) -> Delivery {
        self.fan_out(channel, &Prepared::encoded(message.clone()), offset, None)
    }

    /// Queues `publication` for every local subscriber of `channel`, encoded at most once per
    /// encoding in use ([`Prepared`]). A subscription with a tags filter gets it only if its
    /// tags pass; a delta subscription gets the data in its encoding's delta form, or — when
    /// `delta` (the publish asked for one) and it has the channel's previous publication — as
    /// a Fossil delta against it. Each variant is encoded at most once per encoding
    /// ([`Variants`]): only the choice is made per subscriber.
    pub fn broadcast_publication(
        &self,
        channel: &str,
        publication: &Publication,
        delta: bool,
    ) -> Delivery {
        let prepared = Prepared::publication(channel, publication);
        self.fan_out(
            channel,
            &prepared,
            publication.offset,
            Some((publication, delta)),
        )
    }

    fn fan_out(
        &self,
        channel: &str,
        prepared: &Prepared<'_>,
        offset: u64,
        publication: Option<(&Publication, bool)>,
    ) -> Delivery {
        let shard = read(self.shard(channel));
        let Some(subscribers) = shard.get(channel) else {
            return Delivery::default();
        };
        let mut delivery = Delivery::default();
        for subscriber in &subscribers.active {
            delivery.queue(&subscriber.outbox, prepared.message(subscriber.encoding));
        }
        let Some(special) = &subscribers.special else {
            for (sub, held) in subscribers.pending.iter().flat_map(|p| p.iter()) {
                if let Some(message) = prepared.message(sub.subscriber.encoding) {
                    lock(held).push((offset, message.clone()));
                }
            }
            return delivery;
        };
        let data = publication.and_then(|(p, _)| p.data.as_ref());
        // With delta subscribers, the base is locked through their fan-out (see `Specials`).
        let mut base = (special.delta_subscribers > 0).then(|| lock(&special.base));
        {
            let prev = match (publication, &base) {
                (Some((_, true)), Some(base)) => base.as_ref().map(|b| &b.data[..]),
                _ => None,
            };
            let variants = publication.map(|(p, _)| Variants::new(channel, p, prev));
            // The message a delta subscriber speaking `encoding` gets: with a base or without.
            let for_delta = |encoding: Encoding, has_base: bool| -> Option<&Arc<Message>> {
                let chosen = variants.as_ref().and_then(|v| {
                    if has_base {
                        v.for_subscriber_with_base(encoding)
                    } else {
                        v.full_string(encoding)
                    }
                });
                chosen.or_else(|| prepared.message(encoding))
            };
            let plain = publication.map(|(p, _)| p);
            for sub in &special.active {
                if !sub.wants(plain) {
                    // It misses this publication: a delta against it would not apply.
                    sub.has_base.store(false, Ordering::Relaxed);
                    continue;
                }
                let encoding = sub.subscriber.encoding;
                if sub.selection.delta {
                    let has_base = sub.has_base.swap(true, Ordering::Relaxed);
                    delivery.queue(&sub.subscriber.outbox, for_delta(encoding, has_base));
                } else {
                    delivery.queue(&sub.subscriber.outbox, prepared.message(encoding));
                }
            }
            for (sub, held) in subscribers.pending.iter().flat_map(|p| p.iter()) {
                if !sub.wants(plain) {
                    continue;
                }
                let encoding = sub.subscriber.encoding;
                let chosen = if sub.selection.delta {
                    for_delta(encoding, false)
                } else {
                    prepared.message(encoding)
                };
                if let Some(chosen) = chosen {
                    lock(held).push((offset, chosen.clone()));
                }
            }
        }
        if let Some(base) = base.as_mut() {
            **base = data.map(|data| Base {
                offset,
                data: data.bytes().clone(),
            });
        }
        delivery
    }

    /// Queues a join or leave push of `channel` (encoded at most once per encoding in use) for
    /// every active subscriber that asked for them (a subscription still being set up gets
    /// none: its client learns who is there from presence).
    pub fn broadcast_join_leave(&self, channel: &str, push: &Prepared<'_>) -> Delivery {
        let shard = read(self.shard(channel));
        let Some(subscribers) = shard.get(channel) else {
            return Delivery::default();
        };
        let mut delivery = Delivery::default();
        for subscriber in &subscribers.active {
            if subscriber.flags.push_join_leave {
                delivery.queue(&subscriber.outbox, push.message(subscriber.encoding));
            }
        }
        delivery
    }

    /// Closes the connection of every local subscriber of `channel` (active or being set up)
    /// with `disconnect`, through their outboxes; how many. For a channel whose stream this
    /// node can no longer deliver without a gap: the SDKs reconnect and recover.
    pub fn disconnect_channel(
        &self,
        channel: &str,
        disconnect: &crate::protocol::Disconnect,
    ) -> usize {
        let shard = read(self.shard(channel));
        let Some(subscribers) = shard.get(channel) else {
            return 0;
        };
        let mut closed = 0;
        let special = subscribers.special.iter().flat_map(|s| s.active.iter());
        let pending = subscribers
            .pending
            .iter()
            .flat_map(|p| p.iter())
            .map(|(s, _)| s);
        for outbox in subscribers
            .active
            .iter()
            .map(|s| &s.outbox)
            .chain(special.map(|s| &s.subscriber.outbox))
            .chain(pending.map(|s| &s.subscriber.outbox))
        {
            crate::transport::request_close(outbox, disconnect);
            closed += 1;
        }
        closed
    }

    /// Number of local subscribers of `channel`.
    pub fn num_subscribers(&self, channel: &str) -> usize {
        read(self.shard(channel))
            .get(channel)
            .map_or(0, Subscribers::len)
    }

    /// Every channel with at least one local subscriber, with its subscriber count.
    pub fn channels(&self) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            out.extend(
                read(shard)
                    .iter()
                    .map(|(name, subs)| (name.to_string(), subs.len())),
            );
        }
        out
    }

    /// Number of channels with local subscribers.
    pub fn num_channels(&self) -> usize {
        self.shards.iter().map(|s| read(s).len()).sum()
    }

    /// Total number of subscriptions on this node.
    pub fn num_subscriptions(&self) -> usize {
        self.shards
            .iter()
            .map(|s| read(s).values().map(Subscribers::len).sum::<usize>())
            .sum()
    }

    /// Number of connected clients.
    pub fn num_clients(&self) -> usize {
        read(&self.users).count
    }

    /// Number of distinct users connected (anonymous counts as one user, as in Centrifugo).
    pub fn num_users(&self) -> usize {
        let users = read(&self.users);
        users.first.len() + usize::from(!users.anonymous.is_empty())
    }

    /// The connection `id` of `user` (empty for an anonymous one), by exact string match.
    /// `id` is made a [`ClientId`] first: free for a UUID in canonical form, a boxed copy
    /// for any other string (which no real connection has).
    pub fn client(&self, user: &str, id: &str) -> Option<Arc<ClientHandle>> {
        let id = ClientId::new(id);
        let users = read(&self.users);
        if user.is_empty() {
            users.anonymous.get(&id).map(|c| c.0.clone())
        } else {
            users.of(user).find(|c| c.id == id).cloned()
        }
    }

    /// The connected clients of a named user, oldest first (none for the empty user id:
    /// anonymous connections are not one user's).
    pub fn user_clients(&self, user: &str) -> Vec<Arc<ClientHandle>> {
        read(&self.users).of(user).cloned().collect()
    }

    /// Every connected client (for shutdown).
    pub fn all_clients(&self) -> Vec<Arc<ClientHandle>> {
        read(&self.users).all().cloned().collect()
    }
}
