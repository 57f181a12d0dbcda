//! [`Liveness`]: the one question webhooks ask that spans nodes — is this user connected, is
//! this channel occupied, is this user subscribed to this channel, *anywhere*. On one node the
//! hub answers ([`LocalLiveness`]); on the Redis engine, [`super::cluster::ClusterLiveness`]
//! answers over the shared presence, so that a user subscribed on another node gets no
//! `offline_publication`.

use std::sync::Weak;

use crate::engine::BoxFuture;
use crate::node::Node;

/// Whether users and channels are live on any node. An implementation that cannot tell (its
/// store is unreachable) answers `true`, and says so in the log: a missing offline event is
/// the lesser harm, where a false one would send a user a push notification for a message
/// they saw.
pub trait Liveness: Send + Sync {
    /// Whether `user` has a connection.
    fn user_connected<'a>(&'a self, user: &'a str) -> BoxFuture<'a, bool>;
    /// Whether `channel` has a subscriber.
    fn channel_occupied<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, bool>;
    /// Whether `user` has a subscription to `channel` (pending or active: a pending one gets
    /// the publication when it becomes active).
    fn user_subscribed<'a>(&'a self, user: &'a str, channel: &'a str) -> BoxFuture<'a, bool>;
}

/// This node's hub: the answer of a single-node Herald (the embedded engine).
pub struct LocalLiveness(pub Weak<Node>);

impl Liveness for LocalLiveness {
    fn user_connected<'a>(&'a self, user: &'a str) -> BoxFuture<'a, bool> {
        let answer = self
            .0
            .upgrade()
            .is_none_or(|node| !node.hub().user_clients(user).is_empty());
        Box::pin(std::future::ready(answer))
    }

    fn channel_occupied<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, bool> {
        let answer = self
            .0
            .upgrade()
            .is_none_or(|node| node.hub().num_subscribers(channel) > 0);
        Box::pin(std::future::ready(answer))
    }

    fn user_subscribed<'a>(&'a self, user: &'a str, channel: &'a str) -> BoxFuture<'a, bool> {
        let answer = self.0.upgrade().is_none_or(|node| {
            node.hub()
                .user_clients(user)
                .iter()
                .any(|client| client.is_subscribed(channel))
        });
        Box::pin(std::future::ready(answer))
    }
}
