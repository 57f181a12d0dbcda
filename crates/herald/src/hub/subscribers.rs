//! A channel's local subscribers: plain ones, and the few with a tags filter, deltas or a
//! subscription still being set up ([`Subscribers`]), with what each subscription does
//! ([`SubFlags`], [`Selection`]).

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use super::*;

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
pub(super) type Held = Mutex<Vec<(u64, Arc<Message>)>>;

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
    pub(super) fn is_plain(&self) -> bool {
        self.tags_filter.is_none() && !self.delta
    }
}

/// A subscription with a [`Selection`], as fan-out sees it.
pub(super) struct Special {
    pub(super) subscriber: Subscriber,
    pub(super) selection: Selection,
    /// The subscriber has been sent the channel's last publication (fully or as a delta): the
    /// base the next delta applies to.
    pub(super) has_base: AtomicBool,
}

impl Special {
    /// Whether `publication` passes the subscription's tags filter.
    pub(super) fn wants(&self, publication: Option<&Publication>) -> bool {
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
pub(super) struct Specials {
    pub(super) active: Vec<Special>,
    /// Delta subscriptions, active and pending: while there are any, `base` follows the
    /// channel's publications.
    pub(super) delta_subscribers: usize,
    /// The channel's last publication (the base of the next delta), while the channel has
    /// delta subscribers. Its lock is held through the fan-out of delta subscribers, so that
    /// concurrent publications reach them in the order their deltas were made.
    pub(super) base: Mutex<Option<Base>>,
}

/// The channel's last publication, as the base of the next delta.
pub(super) struct Base {
    /// Its offset in the channel's stream (0 without history).
    pub(super) offset: u64,
    /// Its data (shared with the publication, not copied).
    pub(super) data: bytes::Bytes,
}

/// One subscription of a channel, as fan-out sees it: 16 bytes, since every subscriber of a
/// big channel has one.
pub(super) struct Subscriber {
    /// The subscriber's queue, pointed to directly rather than through its [`ClientHandle`]:
    /// fan-out then takes one cache miss per recipient to reach it, not two in a row. It also
    /// tells subscriptions apart (a client has one outbox).
    pub(super) outbox: Arc<Outbox>,
    /// Join/leave and presence settings of the subscription.
    pub(super) flags: SubFlags,
    /// The subscriber's encoding (in what would be padding: the subscriber stays 16 bytes).
    pub(super) encoding: Encoding,
}

impl Subscriber {
    /// Whether this is `client`'s subscription.
    pub(super) fn is(&self, client: &ClientHandle) -> bool {
        Arc::ptr_eq(&self.outbox, &client.outbox)
    }
}

/// Subscribers of one channel.
#[derive(Default)]
pub(super) struct Subscribers {
    /// The active subscriptions. A vector: fan-out walks it front to back, which is what it
    /// is optimised for; removal is a linear search plus `swap_remove`.
    pub(super) active: Vec<Subscriber>,
    /// Active subscriptions with a tags filter or deltas; boxed, and absent while there are
    /// none, so that a channel without them pays 8 bytes.
    pub(super) special: Option<Box<Specials>>,
    /// Subscriptions being set up with a stream position (recovery): what is published
    /// meanwhile is held with its offset, and handed over by [`Hub::activate`] after the
    /// subscribe reply, without duplicates. Apart from the active ones, and boxed while
    /// there are any, so that neither fan-out nor an idle subscriber pays for the rare case.
    #[allow(clippy::box_collection)] // On purpose: 8 bytes per channel, not 24.
    pub(super) pending: Option<Box<Vec<(Special, Held)>>>,
}

impl Subscribers {
    pub(super) fn len(&self) -> usize {
        self.active.len()
            + self.special.as_ref().map_or(0, |s| s.active.len())
            + self.pending.as_ref().map_or(0, |p| p.len())
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes `client`'s subscription out, active or pending.
    pub(super) fn remove(&mut self, client: &ClientHandle) -> Option<Subscriber> {
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
    pub(super) fn forget_special(&mut self, gone: &Special) {
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
    pub(super) fn take_pending(&mut self, client: &ClientHandle) -> Option<(Special, Held)> {
        let pending = self.pending.as_mut()?;
        let i = pending.iter().position(|(s, _)| s.subscriber.is(client))?;
        let taken = pending.swap_remove(i);
        if pending.is_empty() {
            self.pending = None;
        }
        Some(taken)
    }
}
