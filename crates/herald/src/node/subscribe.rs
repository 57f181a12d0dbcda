//! The node's `subscribe` operation: a connection joins a channel, positioned in the
//! channel's stream and given what it missed when it recovers. The client protocol's
//! `subscribe` (and the server-side subscriptions of `connect`) and the server API's
//! `subscribe` both go through [`Node::subscribe_client`] and
//! [`Node::complete_subscription`], so a subscription made either way is positioned,
//! recovered and announced the same way. Who may subscribe is not decided here: the client
//! asks its [`Policy`](crate::policy::Policy) first, the server API is trusted.
//!
//! A subscription is made in two steps because its first message (the subscribe reply, or
//! the `subscribe` push) must reach the connection before any publication of the channel:
//! [`Node::subscribe_client`] adds it with publications held back and reads its position;
//! the caller queues that first message; [`Node::complete_subscription`] releases what was
//! held back (after the position, so nothing is lost or doubled) and announces the join.

use std::sync::Arc;

use super::{Node, ReplyRoom};
use crate::auth::SubscribeOverride;
use crate::config::{NamespaceOptions, RecoveryMode};
use crate::engine::{History, HistoryFilter, HistoryOptions, StreamPosition};
use crate::hub::{ClientHandle, Selection, SubFlags};
use crate::protocol::{self, ClientInfo, Error, SubscribeRequest, SubscribeResult};
use crate::tags_filter;

/// The subscribe `flag` bit with which a client asks for error 112 (unrecoverable position)
/// instead of a subscription answered `recovered: false` (the SDKs set it with `getState`).
const SUBSCRIBE_FLAG_REJECT_UNRECOVERED: i64 = 1 << 1;

/// How a subscription is placed in its channel's stream (in a namespace with history; in
/// others there is no stream, and this is not looked at).
#[derive(Clone, Debug, Default)]
pub struct Positioning {
    /// The subscription is recoverable: its subscriber may later ask for what it missed.
    pub recoverable: bool,
    /// The subscriber is told the stream position (epoch and offset).
    pub positioned: bool,
    /// Recover from [`Positioning::since`] (only when recoverable).
    pub recover: bool,
    /// The position the subscriber had.
    pub since: StreamPosition,
    /// The subscriber wants error 112 rather than a subscription that did not recover.
    pub reject_unrecovered: bool,
}

impl Positioning {
    /// As a client's subscribe asks, within what its namespace allows (`force_*` and
    /// `allow_*` options).
    pub fn for_client(options: &NamespaceOptions, request: &SubscribeRequest) -> Positioning {
        let recoverable = options.force_recovery || (options.allow_recovery && request.recoverable);
        Positioning {
            recoverable,
            positioned: recoverable
                || options.force_positioning
                || (options.allow_positioning && request.positioned),
            recover: request.recover,
            since: StreamPosition::new(request.offset, request.epoch.clone()),
            reject_unrecovered: request.flag & SUBSCRIBE_FLAG_REJECT_UNRECOVERED != 0,
        }
    }

    /// As the server API's `subscribe` asks: the namespace's `force_recovery` and
    /// `force_positioning` (or the request's `override` of them), recovering from
    /// `recover_since` when given.
    pub fn for_server(
        options: &NamespaceOptions,
        over: Option<&SubscribeOverride>,
        recover_since: Option<&protocol::StreamPosition>,
    ) -> Positioning {
        let pick = |value: Option<&crate::auth::BoolValue>, default: bool| {
            value.map_or(default, |v| v.value)
        };
        let recoverable = pick(
            over.and_then(|o| o.force_recovery.as_ref()),
            options.force_recovery,
        );
        let positioned = recoverable
            || pick(
                over.and_then(|o| o.force_positioning.as_ref()),
                options.force_positioning,
            );
        Positioning {
            recoverable,
            positioned,
            recover: recover_since.is_some(),
            since: recover_since
                .map(|p| StreamPosition::new(p.offset, p.epoch.clone()))
                .unwrap_or_default(),
            reject_unrecovered: false,
        }
    }
}

impl Node {
    /// Adds the subscription of `handle` to `channel` with publications held back, and
    /// completes `result` with the stream position (and the missed publications, when
    /// recovering) if the namespace keeps history. Returns the offset after which held-back
    /// publications are new to the subscriber: the caller queues the subscription's first
    /// message, then calls [`Node::complete_subscription`] with it. On an error the
    /// subscription is removed again; 105 (already subscribed) when the connection is
    /// subscribed to the channel already, a subscription this leaves alone.
    ///
    /// Missed publications that do not fit in `room` are not sent at all: the subscription
    /// is answered `recovered: false` at the stream's top, as when too much was missed, so
    /// that the application reloads (with `history`, which pages) instead of the connection
    /// being closed as too slow (3008) — and again on every reconnect, since the same
    /// recovery would follow.
    ///
    /// `selection`: the subscription's tags filter and deltas; the missed publications are
    /// filtered, and given as JSON strings to a delta subscription.
    #[allow(clippy::too_many_arguments)]
    pub async fn subscribe_client(
        &self,
        handle: &Arc<ClientHandle>,
        channel: &str,
        flags: SubFlags,
        selection: Selection,
        positioning: &Positioning,
        result: &mut SubscribeResult,
        room: &mut ReplyRoom,
    ) -> Result<u64, Error> {
        let stream = match self.resolve_channel(channel) {
            Ok((_, options)) if options.history_enabled() => self
                .history
                .clone()
                .map(|history| (history, self.history_options(options), options)),
            _ => None,
        };
        result.delta = selection.delta;
        let filter = selection.tags_filter.clone();
        // Returns once the broker delivers the channel to this node: what is published from
        // now on is held back for the subscriber, so the stream top read below loses nothing.
        self.subscribe_pending(channel, handle, flags, selection)
            .await?;
        let Some((history, history_options, options)) = stream else {
            return Ok(0);
        };
        result.recoverable = positioning.recoverable;
        result.positioned = positioning.positioned;
        let cache = options.force_recovery_mode == RecoveryMode::Cache;
        // `auto_cache_recover`: in cache mode the latest publication comes on every
        // subscribe, also when the subscriber does not ask to recover (as in Centrifugo).
        let position =
            if result.recoverable && cache && (positioning.recover || options.auto_cache_recover) {
                let top = recover_cache(
                    history.as_ref(),
                    channel,
                    &positioning.since,
                    history_options,
                    result,
                    room,
                )
                .await;
                if let Some(filter) = &filter {
                    result
                        .publications
                        .retain(|p| tags_filter::matches(filter, &p.tags));
                }
                if result.delta {
                    let latest = std::mem::take(&mut result.publications);
                    result.publications =
                        crate::delta::recovered_as_deltas(handle.encoding, latest);
                }
                top
            } else if positioning.recover && result.recoverable {
                let limit = self.config.client.recovery_max_publication_limit;
                history
                    .recover(channel, positioning.since.clone(), limit, history_options)
                    .await
                    .map(|recovery| {
                        result.was_recovering = true;
                        result.recovered = recovery.recovered;
                        if recovery.recovered {
                            let mut missed = recovery.publications;
                            if let Some(filter) = &filter {
                                missed.retain(|p| tags_filter::matches(filter, &p.tags));
                            }
                            match room.take_all(&missed) {
                                Some(publications) if result.delta => {
                                    result.publications = crate::delta::recovered_as_deltas(
                                        handle.encoding,
                                        publications,
                                    );
                                }
                                Some(publications) => result.publications = publications,
                                None => {
                                    tracing::debug!(
                                        client = %handle.id,
                                        channel,
                                        missed = missed.len(),
                                        "recovery does not fit the client's queue \
                                         (client.queue_max_size): answered recovered: false"
                                    );
                                    result.recovered = false;
                                }
                            }
                        }
                        recovery.position
                    })
            } else {
                history.top(channel, history_options).await
            };
        let reject_unrecovered = positioning.reject_unrecovered && !cache;
        if position.is_ok() && result.was_recovering && !result.recovered && reject_unrecovered {
            // The SDK's `getState` flow: it asked not to be subscribed without what it
            // missed, and reloads its state (then subscribes from the new position) on 112.
            self.cancel_subscribe(channel, handle).await;
            return Err(Error::UNRECOVERABLE_POSITION);
        }
        match position {
            Ok(position) => {
                if result.positioned {
                    result.offset = position.offset;
                    result.epoch = position.epoch;
                }
                Ok(position.offset)
            }
            Err(e) => {
                self.cancel_subscribe(channel, handle).await;
                Err(e.to_protocol())
            }
        }
    }

    /// Completes a subscription started with [`Node::subscribe_client`] once its first
    /// message is queued: publications held back since then, after offset `after`, follow it
    /// (a delta subscription takes deltas against `base_offset`, the last publication it was
    /// given); then its presence entry and join push (`info`: the subscriber as they show it).
    pub async fn complete_subscription(
        &self,
        channel: &str,
        handle: &ClientHandle,
        after: u64,
        base_offset: u64,
        info: ClientInfo,
        flags: SubFlags,
    ) {
        self.hub
            .activate_with_base(channel, handle, after, base_offset);
        self.joined(channel, info, flags).await;
    }

    /// Removes the subscription of `handle` to `channel`, if it has one: its presence entry
    /// and leave push go with it.
    pub async fn unsubscribe_client(&self, channel: &str, handle: &ClientHandle) {
        if let Some(flags) = self.hub.unsubscribe(channel, handle) {
            self.left(channel, handle, flags).await;
        }
    }
}

/// Recovery in cache mode (`force_recovery_mode: "cache"`), as Centrifugo does it: the
/// subscriber gets the channel's latest publication instead of what it missed, unless it
/// already has it (its position `since` is the stream's top). `recovered` when the stream's
/// latest publication is still held (or the subscriber is at the top of a stream holding
/// none); the epoch does not matter. Returns the stream's top.
async fn recover_cache(
    history: &dyn History,
    channel: &str,
    since: &StreamPosition,
    options: HistoryOptions,
    result: &mut SubscribeResult,
    room: &mut ReplyRoom,
) -> Result<StreamPosition, crate::engine::EngineError> {
    let latest = HistoryFilter {
        since: None,
        limit: 1,
        reverse: true,
    };
    let page = history.read(channel, latest, options).await?;
    let top = if page.publications.is_empty() {
        // `top` makes the stream if there is none yet, so that the epoch given out here
        // is the one later publications get (as for a subscription without recovery).
        history.top(channel, options).await?
    } else {
        page.position
    };
    let up_to_date = since.offset > 0 && since.offset == top.offset && since.epoch == top.epoch;
    result.was_recovering = true;
    result.recovered = match page.publications.first() {
        None => up_to_date,
        Some(latest) if latest.offset == top.offset && !up_to_date => {
            match room.take_all(std::slice::from_ref(latest)) {
                Some(publications) => {
                    result.publications = publications;
                    true
                }
                None => false,
            }
        }
        Some(latest) => latest.offset == top.offset,
    };
    Ok(top)
}
