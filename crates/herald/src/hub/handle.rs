//! [`ClientHandle`]: what the hub knows of one connection, and [`ChannelSet`], the channels it is
//! subscribed to.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use compact_str::CompactString;
use smallvec::SmallVec;

use super::*;

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
    pub(super) conn_info: Option<Box<[u8]>>,
    /// The connection's outbound queue.
    pub outbox: Arc<Outbox>,
    /// The channels this client is subscribed to. The client task and server-side operations
    /// (API subscribe/unsubscribe) both change it, each together with the hub's channel map.
    pub(super) channels: Mutex<ChannelSet>,
    /// A new expiry set by the server API (`refresh`) for the client task to pick up: 0 when
    /// none is pending, [`NEVER`] for "no longer expires", else unix seconds.
    pub(super) expiry: AtomicU64,
    /// A server ping went out and its pong has not come back ([`crate::keepalive`] sets it,
    /// the client task clears it).
    pub(super) pong_due: AtomicBool,
    /// The encoding the client speaks: which of a publication's encoded messages it gets.
    pub encoding: Encoding,
    /// Its transport also says a disconnect as a push before closing
    /// ([`crate::transport::Transport::disconnect_push`]): in what would be padding.
    pub(super) disconnect_push: bool,
}

/// [`ClientHandle::expiry`] value meaning "the connection no longer expires".
pub(super) const NEVER: u64 = u64::MAX;

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
        if self.disconnect_push {
            crate::transport::request_close_with_push(&self.outbox, self.encoding, disconnect)
        } else {
            crate::transport::request_close(&self.outbox, disconnect)
        }
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
            disconnect_push: false,
        }
    }

    /// The handle speaking `encoding` (JSON unless set).
    pub fn with_encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// The handle of a client whose transport says a disconnect as a push too
    /// ([`crate::transport::Transport::disconnect_push`]).
    pub fn with_disconnect_push(mut self, disconnect_push: bool) -> Self {
        self.disconnect_push = disconnect_push;
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
    pub(super) sorted: SmallVec<[Arc<str>; 1]>,
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

    pub(super) fn find(&self, channel: &str) -> Result<usize, usize> {
        self.sorted.binary_search_by(|c| (**c).cmp(channel))
    }
}
