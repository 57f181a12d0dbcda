//! [`Hub`]: who is connected on this node and who is subscribed to what, and fan-out of an
//! encoded message to every local subscriber of a channel.
//!
//! The hub never encodes per recipient and never awaits: fan-out takes one [`Prepared`] push,
//! which encodes it at most once per encoding in use in the channel, and pushes a reference to
//! the message in each subscriber's encoding into its outbound queue under a read lock. A subscriber whose queue is over budget is closed by its own queue (3008) and nobody
//! else notices.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use compact_str::CompactString;
use smallvec::SmallVec;

use crate::auth::{BoolValue, SubscribeOverride};
use crate::client_id::ClientId;
use crate::config::NamespaceOptions;
use crate::delta::Variants;
use crate::prepared::Prepared;
use crate::protocol::{ClientInfo, Encoding, FilterNode, Payload, Publication};
use crate::session::SessionKey;
use crate::sync::{lock, read, write};
use crate::ws::{Message, Outbox, PushError};

/// Channel maps are split into shards so that subscribes in one channel do not block fan-out in
/// another.
const SHARDS: usize = 64;

/// What the hub (and the server API) knows of one connected client: enough to deliver to it,
/// list it, and act on it from outside its own task.
pub struct ClientHandle {
    /// Connection id (a UUID), as sent in the connect reply. A [`ClientId`], not a string:
    /// the UUID is kept inline, which saves every connection an allocation, in the 16 bytes
    /// the `Box<str>` took.
    pub id: ClientId,
    /// User id; empty for anonymous connections. Kept inline when it is at most 24 bytes
    /// (most user ids: numbers, short names), which saves every such connection an
    /// allocation, in 8 bytes more than a `Box<str>` (the handle stays in its size class).
    pub user: CompactString,
    /// Connection info from the token, for presence and publication `info`. Boxed bytes, not
    /// a [`Payload`]: half the size in every handle, and [`ClientHandle::info`] copied it
    /// anyway.
    conn_info: Option<Box<[u8]>>,
    /// The connection's outbound queue.
    pub outbox: Arc<Outbox>,
    /// The channels this client is subscribed to. The client task and server-side operations
    /// (API subscribe/unsubscribe) both change it, each together with the hub's channel map.
    channels: Mutex<ChannelSet>,
    /// A new expiry set by the server API (`refresh`) for the client task to pick up: 0 when
    /// none is pending, [`NEVER`] for "no longer expires", else unix seconds.
    expiry: AtomicU64,
    /// A server ping went out and its pong has not come back ([`crate::keepalive`] sets it,
    /// the client task clears it).
    pong_due: AtomicBool,
    /// The encoding the client speaks: which of a publication's encoded messages it gets.
    pub encoding: Encoding,
}

/// [`ClientHandle::expiry`] value meaning "the connection no longer expires".
const NEVER: u64 = u64::MAX;

impl std::fmt::Debug for ClientHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHandle")
            .field("id", &self.id)
            .field("user", &self.user)
            .finish()
    }
}

impl ClientHandle {
    /// Asks the client's connection, from any task, to close with `disconnect` after what is
    /// already queued; false if it was closing already. Its transport says it its way (see
    /// [`crate::transport`]).
    pub fn disconnect(&self, disconnect: &crate::protocol::Disconnect) -> bool {
        crate::transport::request_close(&self.outbox, disconnect)
    }

    /// A handle for a newly connected client.
    pub fn new(
        id: ClientId,
        user: String,
        conn_info: Option<Payload>,
        outbox: Arc<Outbox>,
    ) -> Self {
        ClientHandle {
            id,
            user: CompactString::from(user),
            conn_info: conn_info.map(|info| Box::from(info.as_bytes())),
            outbox,
            channels: Mutex::new(ChannelSet::default()),
            expiry: AtomicU64::new(0),
            pong_due: AtomicBool::new(false),
            encoding: Encoding::Json,
        }
    }

    /// The handle speaking `encoding` (JSON unless set).
    pub fn with_encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// Sets a new expiry for the connection (unix seconds; `None`: never) and wakes its
    /// task to apply it.
    pub fn set_expiry(&self, at: Option<u64>) {
        let value = at.map_or(NEVER, |at| at.clamp(1, NEVER - 1));
        self.expiry.store(value, Ordering::Relaxed);
        self.outbox.notify();
    }

    /// Notes that a server ping is about to be queued.
    pub fn ping_sent(&self) {
        self.pong_due.store(true, Ordering::Relaxed);
    }

    /// Notes a pong from the client; returns whether a ping was waiting for it (a pong
    /// nobody asked for is a protocol error).
    pub fn pong_received(&self) -> bool {
        self.pong_due.swap(false, Ordering::Relaxed)
    }

    /// Whether the last ping is still unanswered.
    pub fn pong_overdue(&self) -> bool {
        self.pong_due.load(Ordering::Relaxed)
    }

    /// Takes the expiry set by [`ClientHandle::set_expiry`], if one is pending.
    pub fn take_expiry(&self) -> Option<Option<u64>> {
        match self.expiry.swap(0, Ordering::Relaxed) {
            0 => None,
            NEVER => Some(None),
            at => Some(Some(at)),
        }
    }

    /// The channels this client is subscribed to.
    pub fn channels(&self) -> MutexGuard<'_, ChannelSet> {
        lock(&self.channels)
    }

    /// Whether the client is subscribed to `channel`.
    pub fn is_subscribed(&self, channel: &str) -> bool {
        self.channels().contains(channel)
    }

    /// The client as others see it (presence, publication info).
    pub fn info(&self) -> ClientInfo {
        ClientInfo {
            user: self.user.to_string(),
            client: self.id.to_string(),
            conn_info: self
                .conn_info
                .as_deref()
                .map(|info| Payload::from_stored(info.to_vec())),
            chan_info: None,
        }
    }
}

/// The channels of one client: a sorted vector, not a hash set. Most clients have a channel or
/// two, and a hash set's smallest table (four buckets and their control bytes, about 128 bytes
/// on the heap) would cost every idle connection more than the channel names themselves;
/// lookups are binary searches, so a client with many channels stays fast. The names are the
/// hub's own (shared `Arc<str>`): a channel's subscribers do not each keep a copy of its name.
///
/// The first channel is kept inline (a `SmallVec` of one, in the 24 bytes a `Vec` takes): the
/// usual client with one subscription then costs no allocation for it.
#[derive(Debug, Default)]
pub struct ChannelSet {
    sorted: SmallVec<[Arc<str>; 1]>,
}

impl ChannelSet {
    /// Number of channels.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// Whether `channel` is in the set.
    pub fn contains(&self, channel: &str) -> bool {
        self.find(channel).is_ok()
    }

    /// Adds `channel`; false if it was there already.
    pub fn insert(&mut self, channel: Arc<str>) -> bool {
        match self.find(&channel) {
            Ok(_) => false,
            Err(at) => {
                self.sorted.insert(at, channel);
                true
            }
        }
    }

    /// Removes `channel`; false if it was not there.
    pub fn remove(&mut self, channel: &str) -> bool {
        match self.find(channel) {
            Ok(at) => {
                self.sorted.remove(at);
                if self.sorted.len() <= 1 {
                    // Back inline: a client that was in many channels keeps no heap for them.
                    self.sorted.shrink_to_fit();
                }
                true
            }
            Err(_) => false,
        }
    }

    /// The channels, in name order.
    pub fn iter(&self) -> std::slice::Iter<'_, Arc<str>> {
        self.sorted.iter()
    }

    /// Takes every channel out of the set.
    pub fn drain(&mut self) -> smallvec::IntoIter<[Arc<str>; 1]> {
        std::mem::take(&mut self.sorted).into_iter()
    }

    fn find(&self, channel: &str) -> Result<usize, usize> {
        self.sorted.binary_search_by(|c| (**c).cmp(channel))
    }
}

/// Declares `$name(Arc<ClientHandle>)`, a key of a hub table that is looked up by one of the
/// handle's fields (`$field`, borrowed as a `$key`): the table keeps no copy of it.
macro_rules! keyed_by {
    ($(#[$doc:meta])* $name:ident, $field:ident: $key:ty) => {
        $(#[$doc])*
        struct $name(Arc<ClientHandle>);

        impl Borrow<$key> for $name {
            fn borrow(&self) -> &$key {
                Borrow::<$key>::borrow(&self.0.$field)
            }
        }

        impl Hash for $name {
            fn hash<H: Hasher>(&self, state: &mut H) {
                // Must hash as the `$key` it borrows as.
                Borrow::<$key>::borrow(self).hash(state);
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                Borrow::<$key>::borrow(self) == Borrow::<$key>::borrow(other)
            }
        }

        impl Eq for $name {}
    };
}

keyed_by!(
    /// A client in the hub's table of clients, found by its id (one allocation less per
    /// connection, and 8-byte buckets).
    ById,
    id: ClientId
);

keyed_by!(
    /// The first connection of a user in the hub's table of users, found by its user id: a
    /// user with one connection costs the table no key string and no vector.
    ByUser,
    user: str
);

/// What a subscription does beyond receiving publications: set when it is made (from the
/// namespace options, the subscription's `override` and the client's `join_leave` flag) and
/// handed back when it ends, so that whoever ends it (the client, the server API, the
/// disconnect) can undo it the same way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubFlags {
    /// The subscriber gets the channel's join and leave pushes.
    pub push_join_leave: bool,
    /// The subscription has a presence entry.
    pub presence: bool,
    /// The subscription's join and leave are announced to the channel.
    pub join_leave: bool,
}

impl SubFlags {
    /// The settings of a subscription in a channel of namespace `options`, with the
    /// subscription's `override` (from its token) applied; `wants_join_leave`: the subscriber
    /// asked for join/leave pushes (server-side subscriptions cannot ask: pass `true`, so they
    /// get them whenever the namespace sends them).
    pub fn new(
        options: &NamespaceOptions,
        over: Option<&SubscribeOverride>,
        wants_join_leave: bool,
    ) -> SubFlags {
        let pick = |value: Option<&BoolValue>, default: bool| value.map_or(default, |v| v.value);
        let presence = pick(over.and_then(|o| o.presence.as_ref()), options.presence);
        let join_leave = pick(over.and_then(|o| o.join_leave.as_ref()), options.join_leave);
        let force_push = pick(
            over.and_then(|o| o.force_push_join_leave.as_ref()),
            options.force_push_join_leave,
        );
        SubFlags {
            presence,
            join_leave,
            push_join_leave: join_leave && (wants_join_leave || force_push),
        }
    }
}

/// Publications held back, with their offsets, while a subscription is being set up.
type Held = Mutex<Vec<(u64, Arc<Message>)>>;

/// What a subscription asks of fan-out beyond "every publication, as encoded for everybody":
/// a tags filter (`tf`), or Fossil deltas (`delta: "fossil"`). Such subscriptions are kept
/// apart from plain ones (see [`Specials`]), so that plain fan-out pays nothing for them.
#[derive(Debug, Default)]
pub struct Selection {
    /// Only publications whose tags pass this filter are sent (checked by
    /// [`crate::tags_filter::validate`] already).
    pub tags_filter: Option<Box<FilterNode>>,
    /// Publications are sent with their data as a JSON string, and as Fossil deltas against
    /// the previous one once the subscriber has it.
    pub delta: bool,
}

impl Selection {
    /// Whether the subscription is a plain one.
    fn is_plain(&self) -> bool {
        self.tags_filter.is_none() && !self.delta
    }
}

/// A subscription with a [`Selection`], as fan-out sees it.
struct Special {
    subscriber: Subscriber,
    selection: Selection,
    /// The subscriber has been sent the channel's last publication (fully or as a delta): the
    /// base the next delta applies to.
    has_base: AtomicBool,
}

impl Special {
    /// Whether `publication` passes the subscription's tags filter.
    fn wants(&self, publication: Option<&Publication>) -> bool {
        match (&self.selection.tags_filter, publication) {
            (Some(filter), Some(publication)) => {
                crate::tags_filter::matches(filter, &publication.tags)
            }
            _ => true,
        }
    }
}

/// The subscriptions of one channel that have a [`Selection`], and the channel's last
/// publication for their deltas.
#[derive(Default)]
struct Specials {
    active: Vec<Special>,
    /// Delta subscriptions, active and pending: while there are any, `base` follows the
    /// channel's publications.
    delta_subscribers: usize,
    /// The channel's last publication (the base of the next delta), while the channel has
    /// delta subscribers. Its lock is held through the fan-out of delta subscribers, so that
    /// concurrent publications reach them in the order their deltas were made.
    base: Mutex<Option<Base>>,
}

/// The channel's last publication, as the base of the next delta.
struct Base {
    /// Its offset in the channel's stream (0 without history).
    offset: u64,
    /// Its data (shared with the publication, not copied).
    data: bytes::Bytes,
}

/// One subscription of a channel, as fan-out sees it: 16 bytes, since every subscriber of a
/// big channel has one.
struct Subscriber {
    /// The subscriber's queue, pointed to directly rather than through its [`ClientHandle`]:
    /// fan-out then takes one cache miss per recipient to reach it, not two in a row. It also
    /// tells subscriptions apart (a client has one outbox).
    outbox: Arc<Outbox>,
    /// Join/leave and presence settings of the subscription.
    flags: SubFlags,
    /// The subscriber's encoding (in what would be padding: the subscriber stays 16 bytes).
    encoding: Encoding,
}

impl Subscriber {
    /// Whether this is `client`'s subscription.
    fn is(&self, client: &ClientHandle) -> bool {
        Arc::ptr_eq(&self.outbox, &client.outbox)
    }
}

/// Subscribers of one channel.
#[derive(Default)]
struct Subscribers {
    /// The active subscriptions. A vector: fan-out walks it front to back, which is what it
    /// is optimised for; removal is a linear search plus `swap_remove`.
    active: Vec<Subscriber>,
    /// Active subscriptions with a tags filter or deltas; boxed, and absent while there are
    /// none, so that a channel without them pays 8 bytes.
    special: Option<Box<Specials>>,
    /// Subscriptions being set up with a stream position (recovery): what is published
    /// meanwhile is held with its offset, and handed over by [`Hub::activate`] after the
    /// subscribe reply, without duplicates. Apart from the active ones, and boxed while
    /// there are any, so that neither fan-out nor an idle subscriber pays for the rare case.
    #[allow(clippy::box_collection)] // On purpose: 8 bytes per channel, not 24.
    pending: Option<Box<Vec<(Special, Held)>>>,
}

impl Subscribers {
    fn len(&self) -> usize {
        self.active.len()
            + self.special.as_ref().map_or(0, |s| s.active.len())
            + self.pending.as_ref().map_or(0, |p| p.len())
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes `client`'s subscription out, active or pending.
    fn remove(&mut self, client: &ClientHandle) -> Option<Subscriber> {
        // Identity, not id: a pointer comparison per subscriber instead of a string compare
        // (a mass disconnect from a big channel is quadratic in this search).
        if let Some(i) = self.active.iter().position(|s| s.is(client)) {
            return Some(self.active.swap_remove(i));
        }
        if let Some(special) = self.special.as_mut()
            && let Some(i) = special.active.iter().position(|s| s.subscriber.is(client))
        {
            let taken = special.active.swap_remove(i);
            self.forget_special(&taken);
            return Some(taken.subscriber);
        }
        let (taken, _) = self.take_pending(client)?;
        self.forget_special(&taken);
        Some(taken.subscriber)
    }

    /// Updates the delta bookkeeping for a subscription with a selection that is gone.
    fn forget_special(&mut self, gone: &Special) {
        let Some(special) = self.special.as_mut() else {
            return;
        };
        if gone.selection.delta {
            special.delta_subscribers -= 1;
            if special.delta_subscribers == 0 {
                // Nobody needs the base any more, and it would go stale.
                *lock(&special.base) = None;
            }
        }
        if special.active.is_empty() && special.delta_subscribers == 0 {
            self.special = None;
        }
    }

    /// Takes `client`'s pending subscription out, with what was held for it.
    fn take_pending(&mut self, client: &ClientHandle) -> Option<(Special, Held)> {
        let pending = self.pending.as_mut()?;
        let i = pending.iter().position(|(s, _)| s.subscriber.is(client))?;
        let taken = pending.swap_remove(i);
        if pending.is_empty() {
            self.pending = None;
        }
        Some(taken)
    }
}

/// The connected clients, found by user. Every user pays for a bucket of `first`, which is
/// why it holds only the user's first connection (8 bytes); the few users with several
/// connections keep the others, oldest first, in a second, small table. Anonymous connections
/// share the empty user id, so they have a table of their own, by connection id, where one is
/// found without a scan. There is no table of all clients by id: the server API names a
/// connection by user and id, so the user's connections are where to look, and a connection
/// costs one bucket, not two.
#[derive(Default)]
struct Users {
    first: HashSet<ByUser>,
    others: HashMap<Box<str>, Vec<Arc<ClientHandle>>>,
    anonymous: HashSet<ById>,
    /// Connections in all three tables.
    count: usize,
}

impl Users {
    fn add(&mut self, client: &Arc<ClientHandle>) {
        let user = client.user.as_str();
        if user.is_empty() {
            // A client id is unique (a fresh UUID): replacing would only happen for a handle
            // registered twice, and then it is the same client.
            if self.anonymous.replace(ById(client.clone())).is_some() {
                return;
            }
        } else if self.first.contains(user) {
            self.others
                .entry(Box::from(user))
                .or_default()
                .push(client.clone());
        } else {
            self.first.insert(ByUser(client.clone()));
        }
        self.count += 1;
    }

    fn remove(&mut self, client: &ClientHandle) {
        let user = client.user.as_str();
        let removed = if user.is_empty() {
            self.anonymous.remove(&client.id)
        } else if self
            .first
            .get(user)
            .is_some_and(|first| first.0.id == client.id)
        {
            self.first.remove(user);
            // The next oldest connection, if any, becomes the first.
            if let Some(others) = self.others.get_mut(user) {
                let next = others.remove(0);
                if others.is_empty() {
                    self.others.remove(user);
                }
                self.first.insert(ByUser(next));
            }
            true
        } else if let Some(others) = self.others.get_mut(user) {
            let before = others.len();
            others.retain(|c| c.id != client.id);
            let removed = others.len() < before;
            if others.is_empty() {
                self.others.remove(user);
            }
            removed
        } else {
            false
        };
        self.count -= usize::from(removed);
    }

    /// A named user's connections, oldest first.
    fn of(&self, user: &str) -> impl Iterator<Item = &Arc<ClientHandle>> {
        let others = self.others.get(user).map_or(&[][..], Vec::as_slice);
        self.first
            .get(user)
            .map(|first| &first.0)
            .into_iter()
            .chain(others)
    }

    fn all(&self) -> impl Iterator<Item = &Arc<ClientHandle>> {
        self.first
            .iter()
            .map(|c| &c.0)
            .chain(self.others.values().flatten())
            .chain(self.anonymous.iter().map(|c| &c.0))
    }
}

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

/// The node's registry of clients, users and channel subscriptions.
pub struct Hub {
    shards: Box<[RwLock<ChannelShard>]>,
    users: RwLock<Users>,
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

    /// Registers a connected client.
    pub fn add_client(&self, client: Arc<ClientHandle>) {
        write(&self.users).add(&client);
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
        write(&self.users).remove(client);
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
            std::collections::hash_map::Entry::Vacant(_) => Subscribed::First,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::CloseCode;

    fn client(id: &str, user: &str, budget: usize) -> Arc<ClientHandle> {
        Arc::new(ClientHandle::new(
            id.into(),
            user.into(),
            None,
            Arc::new(Outbox::new(budget, CloseCode(3008), "slow")),
        ))
    }

    /// A hub with three registered clients `a`, `b` and `c` of the given users.
    fn hub_with(users: [&str; 3]) -> (Hub, [Arc<ClientHandle>; 3]) {
        let hub = Hub::new();
        let clients = [("a", users[0]), ("b", users[1]), ("c", users[2])]
            .map(|(id, user)| client(id, user, 1 << 20));
        for c in &clients {
            hub.add_client(c.clone());
        }
        (hub, clients)
    }

    #[test]
    fn broadcast_reaches_subscribers_only_and_shares_the_frame() {
        let (hub, [a, b, c]) = hub_with(["u1", "u1", "u2"]);
        assert!(hub.subscribe("news", &a));
        assert!(hub.subscribe("news", &b));
        assert!(!hub.subscribe("news", &b));
        let message = Arc::new(Message::text("{\"x\":1}"));
        let delivery = hub.broadcast("news", &message, 0);
        assert_eq!(delivery.delivered, 2);
        // Two queues plus ours hold the same message: no copies were made.
        assert_eq!(Arc::strong_count(&message), 3);
        assert_eq!(c.outbox.queued_bytes(), 0);
        assert_eq!(hub.num_users(), 2);
        assert_eq!(hub.user_clients("u1").len(), 2);
        assert_eq!(
            hub.remove_client(&a),
            vec![(Arc::from("news"), SubFlags::default())]
        );
        assert_eq!(hub.num_subscribers("news"), 1);
        assert!(hub.unsubscribe("news", &b).is_some());
        assert_eq!(hub.num_channels(), 0);
    }

    #[test]
    fn the_first_subscriber_of_a_channel_is_reported_and_the_last_leaves_it_empty() {
        let (hub, [a, b, _]) = hub_with(["u1", "u2", "u3"]);
        let add = |c| hub.add_pending("ch", c, SubFlags::default(), Selection::default());
        assert_eq!(add(&a), Subscribed::First);
        assert_eq!(add(&b), Subscribed::Another);
        assert_eq!(add(&a), Subscribed::Already);
        // Subscribed elsewhere: still the first here.
        assert!(hub.subscribe("other", &b));
        assert_eq!(
            hub.add_pending("ch2", &b, SubFlags::default(), Selection::default()),
            Subscribed::First
        );
        assert!(hub.unsubscribe("ch", &a).is_some());
        assert_eq!(hub.num_subscribers("ch"), 1, "b is left");
        hub.remove_client(&b);
        assert_eq!(hub.num_subscribers("ch"), 0, "the last one left");
        // The channel is empty again: the next subscriber is its first.
        assert_eq!(add(&a), Subscribed::First);
    }

    #[test]
    fn anonymous_connections_are_found_by_id_and_count_as_one_user() {
        let (hub, [a, b, c]) = hub_with(["", "", "u"]);
        assert_eq!((hub.num_users(), hub.num_clients()), (2, 3));
        assert!(
            hub.client("", "b")
                .is_some_and(|found| Arc::ptr_eq(&found, &b))
        );
        assert!(hub.client("", "c").is_none(), "c is u's");
        assert!(hub.user_clients("").is_empty());
        assert_eq!(hub.all_clients().len(), 3);
        hub.remove_client(&a);
        hub.remove_client(&a);
        assert_eq!((hub.num_users(), hub.num_clients()), (2, 2));
        hub.remove_client(&b);
        assert_eq!((hub.num_users(), hub.num_clients()), (1, 1));
        assert!(Arc::ptr_eq(&hub.all_clients()[0], &c));
    }

    #[test]
    fn a_short_user_id_and_one_channel_take_no_allocation() {
        let c = client("a", "user-1234567890", 1 << 20);
        assert!(!c.user.is_heap_allocated());
        c.channels().insert("news".into());
        assert!(!c.channels().sorted.spilled());
    }

    #[test]
    fn a_users_connections_outlive_the_first_one() {
        let (hub, [a, b, c]) = hub_with(["u", "u", "u"]);
        let ids = |user: &str| -> Vec<String> {
            hub.user_clients(user)
                .iter()
                .map(|c| c.id.to_string())
                .collect()
        };
        assert_eq!(ids("u"), ["a", "b", "c"]);
        hub.remove_client(&a);
        assert_eq!(ids("u"), ["b", "c"]);
        assert!(hub.client("u", "a").is_none());
        assert!(hub.client("v", "b").is_none(), "b is u's, not v's");
        assert_eq!(
            hub.client("u", "b").map(|h| h.id.to_string()).as_deref(),
            Some("b")
        );
        hub.remove_client(&c);
        assert_eq!(ids("u"), ["b"]);
        assert!(
            read(&hub.users).others.is_empty(),
            "a lone connection needs no vector"
        );
        hub.remove_client(&b);
        assert!(ids("u").is_empty());
        assert_eq!((hub.num_users(), hub.num_clients()), (0, 0));
    }

    #[test]
    fn a_handle_stays_within_112_bytes() {
        // With the `Arc` counts, 128 bytes: jemalloc's 128-byte class. The id, a short user
        // id and one channel are inline (no allocation of their own) and must not widen the
        // handle past it.
        assert!(
            size_of::<ClientHandle>() <= 112,
            "{}",
            size_of::<ClientHandle>()
        );
    }

    #[test]
    fn a_client_with_a_uuid_id_is_found_by_its_exact_string() {
        let hub = Hub::new();
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        let c = Arc::new(ClientHandle::new(
            uuid::Uuid::try_parse(&id).expect("a UUID").into(),
            "u".into(),
            None,
            Arc::new(Outbox::new(1 << 20, CloseCode(3008), "slow")),
        ));
        hub.add_client(c.clone());
        assert_eq!(c.id.to_string(), id);
        assert_eq!(c.info().client, id);
        assert!(
            hub.client("u", &id)
                .is_some_and(|found| Arc::ptr_eq(&found, &c))
        );
        assert!(hub.client("u", &id.to_uppercase()).is_none());
        assert!(hub.client("u", &id.replace('-', "")).is_none());
        hub.remove_client(&c);
        assert!(hub.client("u", &id).is_none());
    }

    #[test]
    fn a_channel_set_stays_sorted_and_frees_its_memory() {
        let mut set = ChannelSet::default();
        assert!(set.insert("b".into()));
        assert!(set.insert("a".into()));
        assert!(!set.insert("b".into()));
        assert!(set.contains("a") && set.contains("b") && !set.contains("c"));
        assert_eq!(set.iter().map(|c| &**c).collect::<Vec<_>>(), ["a", "b"]);
        assert!(set.remove("a") && !set.remove("a"));
        assert!(set.remove("b"));
        assert!(set.is_empty());
        assert!(!set.sorted.spilled(), "the set went back inline");
        assert!(set.insert("c".into()));
        assert!(!set.sorted.spilled(), "one channel is kept inline");
    }

    #[test]
    fn a_slow_subscriber_is_cut_off_alone() {
        let hub = Hub::new();
        let (slow, fast) = (client("slow", "", 100), client("fast", "", 1 << 20));
        hub.subscribe("ch", &slow);
        hub.subscribe("ch", &fast);
        let message = Arc::new(Message::text(&"x".repeat(60)));
        assert_eq!(hub.broadcast("ch", &message, 0).overflowed, 0);
        let second = hub.broadcast("ch", &message, 0);
        assert_eq!((second.delivered, second.overflowed), (1, 1));
        assert!(slow.outbox.is_closed());
        assert!(!fast.outbox.is_closed());
    }

    #[test]
    fn a_subscriber_takes_16_bytes() {
        assert_eq!(size_of::<Subscriber>(), 16);
    }

    #[test]
    fn a_pending_subscription_can_end_before_it_is_activated() {
        let hub = Hub::new();
        let (a, b) = (client("a", "u", 1 << 20), client("b", "u", 1 << 20));
        assert!(hub.subscribe("ch", &a));
        assert!(hub.subscribe_pending("ch", &b, SubFlags::default()));
        assert_eq!(hub.num_subscribers("ch"), 2);
        assert!(!hub.subscribe("ch", &b), "already subscribed while pending");
        assert_eq!(
            hub.broadcast("ch", &Arc::new(Message::text("1")), 1)
                .delivered,
            1
        );
        assert!(hub.unsubscribe("ch", &b).is_some());
        assert_eq!(hub.num_subscribers("ch"), 1);
        hub.activate("ch", &b, 0);
        assert_eq!(
            b.outbox.queued_bytes(),
            0,
            "nothing is handed to a gone subscription"
        );
        assert!(hub.unsubscribe("ch", &a).is_some());
        assert_eq!(hub.num_channels(), 0);
    }

    #[test]
    fn a_pending_subscription_gets_what_came_after_its_position_once() {
        let hub = Hub::new();
        let c = client("c", "u", 1 << 20);
        assert!(hub.subscribe_pending("ch", &c, SubFlags::default()));
        for offset in 5..=8 {
            hub.broadcast("ch", &Arc::new(Message::text(&offset.to_string())), offset);
        }
        assert_eq!(c.outbox.queued_bytes(), 0, "held back until activated");
        // The subscribe reply carried offsets up to 6: 7 and 8 follow it.
        hub.activate("ch", &c, 6);
        hub.broadcast("ch", &Arc::new(Message::text("9")), 9);
        let mut queued = std::collections::VecDeque::new();
        c.outbox.drain_into(&mut queued);
        let payloads: Vec<Vec<u8>> = queued
            .iter()
            .map(|item| match item {
                crate::ws::Outgoing::Shared(m) => m.payload().to_vec(),
                crate::ws::Outgoing::Frame(f) => f.payload().to_vec(),
            })
            .collect();
        assert_eq!(payloads, vec![b"7".to_vec(), b"8".to_vec(), b"9".to_vec()]);
    }

    /// What `c` has been sent, as strings.
    fn sent(c: &ClientHandle) -> Vec<String> {
        let mut queued = std::collections::VecDeque::new();
        c.outbox.drain_into(&mut queued);
        queued
            .iter()
            .map(|item| match item {
                crate::ws::Outgoing::Shared(m) => m.payload().to_vec(),
                crate::ws::Outgoing::Frame(f) => f.payload().to_vec(),
            })
            .map(|p| String::from_utf8_lossy(&p).into_owned())
            .collect()
    }

    /// Publishes `data` with tags to `channel` the way the node does; returns the plain push.
    fn publish(
        hub: &Hub,
        channel: &str,
        data: &str,
        tags: &[(&str, &str)],
        delta: bool,
    ) -> (Arc<Message>, Delivery) {
        let publication = Publication {
            data: Some(crate::protocol::raw(data).unwrap()),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Publication::default()
        };
        // As `broadcast_publication`, keeping the JSON message for the caller.
        let prepared = Prepared::publication(channel, &publication);
        let delivery = hub.fan_out(channel, &prepared, 0, Some((&publication, delta)));
        (prepared.take(Encoding::Json).unwrap(), delivery)
    }

    fn selective(hub: &Hub, channel: &str, c: &Arc<ClientHandle>, selection: Selection) {
        assert!(hub.subscribe_pending_selective(channel, c, SubFlags::default(), selection));
        hub.activate(channel, c, 0);
    }

    fn filter(json: &str) -> Option<Box<FilterNode>> {
        Some(Box::new(serde_json::from_str(json).unwrap()))
    }

    #[test]
    fn a_tags_filter_decides_per_subscriber_and_shares_the_frame() {
        let hub = Hub::new();
        let (plain, btc, eth) = (
            client("p", "", 1 << 20),
            client("b", "", 1 << 20),
            client("e", "", 1 << 20),
        );
        assert!(hub.subscribe("ch", &plain));
        let tf = |v: &str| Selection {
            tags_filter: filter(&format!(r#"{{"key":"ticker","cmp":"eq","val":"{v}"}}"#)),
            delta: false,
        };
        selective(&hub, "ch", &btc, tf("BTC"));
        selective(&hub, "ch", &eth, tf("ETH"));
        assert_eq!(hub.num_subscribers("ch"), 3);
        let (message, delivery) = publish(&hub, "ch", "1", &[("ticker", "BTC")], false);
        assert_eq!(delivery.delivered, 2);
        // The plain subscriber's and BTC's queues hold the very same message.
        assert_eq!(Arc::strong_count(&message), 3);
        publish(&hub, "ch", "2", &[("ticker", "ETH")], false);
        publish(&hub, "ch", "3", &[], false);
        let data = |c: &ClientHandle| -> Vec<String> {
            sent(c)
                .iter()
                .map(|p| {
                    let v: serde_json::Value = serde_json::from_str(p).unwrap();
                    v["push"]["pub"]["data"].to_string()
                })
                .collect()
        };
        assert_eq!(data(&plain), ["1", "2", "3"]);
        assert_eq!(data(&btc), ["1"]);
        assert_eq!(data(&eth), ["2"]);
        assert!(hub.unsubscribe("ch", &btc).is_some());
        assert!(hub.unsubscribe("ch", &eth).is_some());
        assert!(
            read(hub.shard("ch"))["ch"].special.is_none(),
            "the channel's special list is gone with its last member"
        );
    }

    #[test]
    fn delta_subscribers_get_a_full_string_then_deltas_encoded_once() {
        let hub = Hub::new();
        let (a, b, plain) = (
            client("a", "", 1 << 20),
            client("b", "", 1 << 20),
            client("p", "", 1 << 20),
        );
        let delta = || Selection {
            tags_filter: None,
            delta: true,
        };
        hub.subscribe("ch", &plain);
        selective(&hub, "ch", &a, delta());
        let doc = |n: u32| format!(r#"{{"n":{n},"text":"{}"}}"#, "lorem ipsum ".repeat(20));
        publish(&hub, "ch", &doc(1), &[], true);
        selective(&hub, "ch", &b, delta());
        publish(&hub, "ch", &doc(2), &[], true);
        publish(&hub, "ch", &doc(3), &[], false);
        publish(&hub, "ch", &doc(4), &[], true);
        let pubs = |c: &ClientHandle| -> Vec<serde_json::Value> {
            sent(c)
                .iter()
                .map(|p| {
                    serde_json::from_str::<serde_json::Value>(p).unwrap()["push"]["pub"].clone()
                })
                .collect()
        };
        // Rebuild what a delta subscriber sees, as the SDK does.
        let rebuild = |pubs: &[serde_json::Value]| -> (Vec<String>, usize) {
            let mut prev = Vec::new();
            let mut deltas = 0;
            let docs = pubs
                .iter()
                .map(|p| {
                    let data = p["data"].as_str().expect("data is a JSON string");
                    prev = if p["delta"] == true {
                        deltas += 1;
                        fossil_delta::apply(&prev, data.as_bytes()).unwrap()
                    } else {
                        data.as_bytes().to_vec()
                    };
                    String::from_utf8(prev.clone()).unwrap()
                })
                .collect();
            (docs, deltas)
        };
        let (a_docs, a_deltas) = rebuild(&pubs(&a));
        assert_eq!(a_docs, [doc(1), doc(2), doc(3), doc(4)]);
        // 1: no base yet; 3: published without delta.
        assert_eq!(a_deltas, 2);
        let b_pubs = pubs(&b);
        let (b_docs, b_deltas) = rebuild(&b_pubs);
        assert_eq!(b_docs, [doc(2), doc(3), doc(4)]);
        assert_eq!(b_deltas, 1, "b's first publication is full: it had no base");
        assert!(
            b_pubs[2]["data"].as_str().unwrap().len() < 40,
            "a small delta"
        );
        // The plain subscriber gets plain JSON.
        let plain_pubs = pubs(&plain);
        assert_eq!(plain_pubs.len(), 4);
        assert!(
            plain_pubs
                .iter()
                .all(|p| p["data"]["n"].is_number() && p["delta"].is_null())
        );
    }

    #[test]
    fn one_delta_is_made_per_publication_for_all_subscribers() {
        let hub = Hub::new();
        let subs: Vec<_> = (0..5)
            .map(|i| client(&i.to_string(), "", 1 << 20))
            .collect();
        for c in &subs {
            selective(
                &hub,
                "ch",
                c,
                Selection {
                    tags_filter: None,
                    delta: true,
                },
            );
        }
        let doc = |n: u32| format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat(200));
        publish(&hub, "ch", &doc(1), &[], true);
        publish(&hub, "ch", &doc(2), &[], true);
        let mut deltas: Vec<Arc<Message>> = Vec::new();
        for c in &subs {
            let mut queued = std::collections::VecDeque::new();
            c.outbox.drain_into(&mut queued);
            assert_eq!(queued.len(), 2);
            match &queued[1] {
                crate::ws::Outgoing::Shared(m) => deltas.push(m.clone()),
                crate::ws::Outgoing::Frame(_) => panic!("a shared message expected"),
            }
        }
        assert!(
            deltas.windows(2).all(|w| Arc::ptr_eq(&w[0], &w[1])),
            "every subscriber got the same message"
        );
        assert!(
            deltas[0]
                .payload()
                .windows(12)
                .any(|w| w == b"\"delta\":true")
        );
    }

    #[test]
    fn a_pending_delta_subscriber_starts_from_a_full_publication() {
        let hub = Hub::new();
        let c = client("c", "", 1 << 20);
        let doc = |n: u32| format!(r#"{{"n":{n},"pad":"{}"}}"#, "y".repeat(100));
        assert!(hub.subscribe_pending_selective(
            "ch",
            &c,
            SubFlags::default(),
            Selection {
                tags_filter: None,
                delta: true
            }
        ));
        let publication = |n: u32| Publication {
            data: Some(crate::protocol::raw(doc(n)).unwrap()),
            offset: n as u64,
            ..Publication::default()
        };
        for n in 1..=2 {
            let p = publication(n);
            hub.broadcast_publication("ch", &p, true);
        }
        hub.activate("ch", &c, 1);
        let p = publication(3);
        hub.broadcast_publication("ch", &p, true);
        let got: Vec<serde_json::Value> = sent(&c)
            .iter()
            .map(|p| serde_json::from_str::<serde_json::Value>(p).unwrap()["push"]["pub"].clone())
            .collect();
        assert_eq!(got.len(), 2, "offset 1 came with the subscribe reply");
        assert_eq!(got[0]["data"], doc(2), "held back as a full string");
        assert_eq!(got[0]["offset"], 2);
        assert_eq!(got[1]["delta"], true, "then a delta against offset 2");
        let rebuilt = fossil_delta::apply(
            doc(2).as_bytes(),
            got[1]["data"].as_str().unwrap().as_bytes(),
        )
        .unwrap();
        assert_eq!(rebuilt, doc(3).as_bytes());
    }

    #[test]
    fn a_delta_subscriber_that_missed_a_publication_gets_the_next_in_full() {
        let hub = Hub::new();
        let c = client("c", "", 1 << 20);
        selective(
            &hub,
            "ch",
            &c,
            Selection {
                tags_filter: filter(r#"{"key":"k","cmp":"ex"}"#),
                delta: true,
            },
        );
        let doc = |n: u32| format!(r#"{{"n":{n},"pad":"{}"}}"#, "z".repeat(100));
        publish(&hub, "ch", &doc(1), &[("k", "")], true);
        publish(&hub, "ch", &doc(2), &[], true);
        publish(&hub, "ch", &doc(3), &[("k", "")], true);
        publish(&hub, "ch", &doc(4), &[("k", "")], true);
        let got: Vec<serde_json::Value> = sent(&c)
            .iter()
            .map(|p| serde_json::from_str::<serde_json::Value>(p).unwrap()["push"]["pub"].clone())
            .collect();
        let deltas: Vec<bool> = got.iter().map(|p| p["delta"] == true).collect();
        assert_eq!(
            deltas,
            [false, false, true],
            "3 is full: 2 was filtered out"
        );
        assert_eq!(got[1]["data"], doc(3));
    }

    #[test]
    fn the_delta_base_is_dropped_with_the_last_delta_subscriber() {
        let hub = Hub::new();
        let (a, keep) = (client("a", "", 1 << 20), client("k", "", 1 << 20));
        hub.subscribe("ch", &keep);
        let delta = || Selection {
            tags_filter: None,
            delta: true,
        };
        selective(&hub, "ch", &a, delta());
        publish(&hub, "ch", r#"{"v":1}"#, &[], true);
        assert!(hub.unsubscribe("ch", &a).is_some());
        assert!(read(hub.shard("ch"))["ch"].special.is_none());
        // Published while nobody kept a base: a new delta subscriber must not get a delta
        // against the stale one.
        publish(&hub, "ch", r#"{"v":2}"#, &[], true);
        selective(&hub, "ch", &a, delta());
        publish(&hub, "ch", r#"{"v":3}"#, &[], true);
        let got = sent(&a);
        assert!(
            got[got.len() - 1].contains(r#""data":"{\"v\":3}""#),
            "{got:?}"
        );
    }
    /// The messages queued for `c`, as the shared messages they are.
    fn shared(c: &ClientHandle) -> Vec<Arc<Message>> {
        let mut queued = std::collections::VecDeque::new();
        c.outbox.drain_into(&mut queued);
        queued
            .into_iter()
            .filter_map(|item| match item {
                crate::ws::Outgoing::Shared(m) => Some(m),
                crate::ws::Outgoing::Frame(_) => None,
            })
            .collect()
    }

    #[test]
    fn a_channel_with_two_encodings_encodes_each_publication_once_per_encoding() {
        use crate::protocol::codec::counting;
        let hub = Hub::new();
        let speaking = |id: &str, encoding: Encoding| {
            let outbox = Arc::new(Outbox::new(1 << 20, CloseCode(3008), "slow"));
            Arc::new(ClientHandle::new(id.into(), "".into(), None, outbox).with_encoding(encoding))
        };
        let json: Vec<_> = (0..3)
            .map(|i| speaking(&format!("j{i}"), Encoding::Json))
            .collect();
        let other: Vec<_> = (0..3)
            .map(|i| speaking(&format!("c{i}"), Encoding::Counting))
            .collect();
        for c in json.iter().chain(&other) {
            assert!(hub.subscribe("ch", c));
        }
        // One of the other encoding with a tags filter, two with deltas.
        let filtered = speaking("f", Encoding::Counting);
        let ticker = r#"{"key":"ticker","cmp":"eq","val":"BTC"}"#;
        let tf = Selection {
            tags_filter: filter(ticker),
            delta: false,
        };
        selective(&hub, "ch", &filtered, tf);
        let deltas: Vec<_> = (0..2)
            .map(|i| speaking(&format!("d{i}"), Encoding::Counting))
            .collect();
        for c in &deltas {
            let delta = Selection {
                tags_filter: None,
                delta: true,
            };
            selective(&hub, "ch", c, delta);
        }

        let before = counting::encoded();
        let doc = |n: u32| format!(r#"{{"n":{n},"text":"{}"}}"#, "lorem ipsum ".repeat(20));
        let (_, delivery) = publish(&hub, "ch", &doc(1), &[("ticker", "BTC")], true);
        assert_eq!(delivery.delivered, 9);
        // The other encoding: its plain push, and the full form for delta subscribers without
        // a base — once each for its six subscribers.
        assert_eq!(counting::encoded() - before, 2);
        let before = counting::encoded();
        publish(&hub, "ch", &doc(2), &[("ticker", "BTC")], true);
        // Its plain push and one delta for both delta subscribers.
        assert_eq!(counting::encoded() - before, 2);

        // JSON subscribers share one JSON message per publication.
        let first: Vec<_> = json.iter().map(|c| shared(c)).collect();
        for queued in &first {
            assert_eq!(queued.len(), 2);
            assert!(Arc::ptr_eq(&queued[0], &first[0][0]));
            assert!(Arc::ptr_eq(&queued[1], &first[0][1]));
            assert!(queued[0].payload().starts_with(b"{\"push\""));
        }
        // The other encoding's plain subscribers (and the filtered one) share theirs.
        let plain: Vec<_> = other.iter().chain([&filtered]).map(|c| shared(c)).collect();
        for queued in &plain {
            assert_eq!(queued.len(), 2);
            assert!(Arc::ptr_eq(&queued[0], &plain[0][0]));
            assert!(queued[0].payload().starts_with(b"counting:{\"push\""));
        }
        // Its delta subscribers share the full form, then the delta, in their encoding.
        let delta: Vec<_> = deltas.iter().map(|c| shared(c)).collect();
        assert!(Arc::ptr_eq(&delta[0][0], &delta[1][0]));
        assert!(Arc::ptr_eq(&delta[0][1], &delta[1][1]));
        let second = std::str::from_utf8(delta[0][1].payload()).unwrap();
        let second: serde_json::Value =
            serde_json::from_str(second.strip_prefix("counting:").unwrap()).unwrap();
        assert_eq!(second["push"]["pub"]["delta"], true, "{second}");
    }

    #[test]
    fn a_join_push_is_encoded_once_per_encoding() {
        let hub = Hub::new();
        let json = client("j", "", 1 << 20);
        let outbox = Arc::new(Outbox::new(1 << 20, CloseCode(3008), "slow"));
        let other = Arc::new(
            ClientHandle::new("c".into(), "".into(), None, outbox)
                .with_encoding(Encoding::Counting),
        );
        let flags = SubFlags {
            push_join_leave: true,
            ..SubFlags::default()
        };
        assert!(hub.subscribe_with("ch", &json, flags));
        assert!(hub.subscribe_with("ch", &other, flags));
        let push = crate::protocol::Push::join("ch", json.info());
        let prepared = Prepared::push(&push);
        assert_eq!(hub.broadcast_join_leave("ch", &prepared).delivered, 2);
        assert!(sent(&json)[0].starts_with(r#"{"push":{"channel":"ch","join""#));
        assert!(sent(&other)[0].starts_with(r#"counting:{"push":{"channel":"ch","join""#));
    }
    #[test]
    fn a_pending_subscriber_is_held_its_own_encoding() {
        let hub = Hub::new();
        let outbox = Arc::new(Outbox::new(1 << 20, CloseCode(3008), "slow"));
        let other = Arc::new(
            ClientHandle::new("c".into(), "".into(), None, outbox)
                .with_encoding(Encoding::Counting),
        );
        let json = client("j", "", 1 << 20);
        for c in [&json, &other] {
            assert!(hub.subscribe_pending("ch", c, SubFlags::default()));
        }
        let publication = Publication {
            data: Some(crate::protocol::raw("1").unwrap()),
            offset: 1,
            ..Publication::default()
        };
        hub.broadcast_publication("ch", &publication, false);
        for c in [&json, &other] {
            hub.activate("ch", c, 0);
        }
        assert_eq!(
            sent(&json),
            [r#"{"push":{"channel":"ch","pub":{"data":1,"offset":1}}}"#]
        );
        assert_eq!(
            sent(&other),
            [r#"counting:{"push":{"channel":"ch","pub":{"data":1,"offset":1}}}"#]
        );
    }
}
