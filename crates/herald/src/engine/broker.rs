//! [`Broker`]: how a publication, join or leave reaches every node that has subscribers of its
//! channel, and where a channel's history is kept — together, because a publication must be
//! stored and published atomically (offset and epoch assigned, idempotency key answered, stale
//! version suppressed) for subscribers to see offsets in order and recover what they missed.
//!
//! The node installs one [`BrokerEventHandler`] and from then on every publication, join and
//! leave — published on this node or another — reaches the hub through it, never straight from
//! the publisher. A broker that spans nodes (Redis, NATS) needs to know which channels this node
//! has subscribers in: the node calls [`Broker::subscribe`] when the hub reports a channel's
//! first local subscriber and [`Broker::unsubscribe`] after its last one left.

use std::sync::Arc;

use super::{AppendRequest, AppendResult, BoxFuture, EngineError, History};
use crate::protocol::{ClientInfo, Publication};

/// What a node does with what its broker delivers (implemented by the node: encode the push
/// once and hand it to the hub). Called in offset order per channel; a call must be quick and
/// must not block (it may run on an engine thread): queue, don't write.
pub trait BrokerEventHandler: Send + Sync + 'static {
    /// A publication in `channel` (with its offset when the channel keeps history). `delta`:
    /// the publish asked for delta compression ([`AppendRequest::delta`]).
    fn handle_publication(&self, channel: &str, publication: &Publication, delta: bool);
    /// A client subscribed to `channel` (on any node).
    fn handle_join(&self, channel: &str, info: &ClientInfo);
    /// A client unsubscribed from `channel` (on any node).
    fn handle_leave(&self, channel: &str, info: &ClientInfo);
    /// `channel`'s publications can no longer reach this node's subscribers without a gap (a
    /// multi-node broker missed some and cannot replay them, or the stream started a new
    /// epoch): its subscribers here must reconnect and recover (the node disconnects them with
    /// 3010 "insufficient state"). A single-node broker never calls it.
    fn handle_insufficient_state(&self, channel: &str) {
        let _ = channel;
    }
}

/// Publication fan-out between nodes plus the channels' history streams (the [`History`] half:
/// read, top, recover, remove). Shared as `Arc<dyn Broker>` by the node, its clients and the
/// server API. The embedded engine's is [`super::embedded::EmbeddedBroker`].
pub trait Broker: History {
    /// Installs the node's handler. Events before it is installed are dropped (a node installs
    /// it before it accepts connections).
    fn set_handler(&self, handler: Arc<dyn BrokerEventHandler>);

    /// Publishes a publication to every node subscribed to its channel. When
    /// `request.options` keeps a history ([`super::HistoryOptions::enabled`]) the publication is
    /// first appended to the channel's stream, atomically with its publication: the next offset
    /// and the epoch are assigned, a repeated `idempotency_key` is answered with the first
    /// result (`duplicate`, nothing delivered), a stale `version` is suppressed. Without
    /// history a repeated `idempotency_key` within the broker's window is a duplicate too.
    /// Resolves once the publication is durable and handed to the subscribed nodes.
    fn publish(&self, request: AppendRequest) -> BoxFuture<'_, Result<AppendResult, EngineError>>;

    /// Announces that a client subscribed to `channel` (to the join/leave subscribers of every
    /// node).
    fn publish_join<'a>(
        &'a self,
        channel: &'a str,
        info: &'a ClientInfo,
    ) -> BoxFuture<'a, Result<(), EngineError>>;

    /// Announces that a client unsubscribed from `channel`.
    fn publish_leave<'a>(
        &'a self,
        channel: &'a str,
        info: &'a ClientInfo,
    ) -> BoxFuture<'a, Result<(), EngineError>>;

    /// Starts delivering `channel`'s events to this node. Resolves once the subscription is in
    /// place: a publication made after that reaches the handler.
    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), EngineError>>;

    /// Stops delivering `channel`'s events to this node.
    fn unsubscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), EngineError>>;

    /// `Ok` while the broker can deliver; otherwise what is wrong (`/health` answers 503 with
    /// it). A broker with nothing outside the process to lose is always healthy.
    fn health(&self) -> Result<(), String> {
        Ok(())
    }
}
