//! The node's presence operations: who is subscribed to a channel, and how many, for the
//! client protocol's `presence`/`presence_stats` and the server API's, which call the same
//! two methods. Who may ask is not decided here: the client asks its
//! [`Policy`](crate::policy::Policy) first, the server API is trusted.

use super::Node;
use crate::config::NamespaceOptions;
use crate::protocol::{self, PresenceResult, PresenceStatsResult};

impl Node {
    /// The namespace of `channel` when it keeps presence: the channel's error (102, 107)
    /// when it is not a valid channel, 108 when its namespace keeps no presence.
    pub fn presence_namespace<'a>(
        &'a self,
        channel: &'a str,
    ) -> Result<&'a NamespaceOptions, protocol::Error> {
        let (_, options) = self.resolve_channel(channel)?;
        if !options.presence {
            return Err(protocol::Error::NOT_AVAILABLE);
        }
        Ok(options)
    }

    /// The connections subscribed to `channel`, by client id (the caller has checked the
    /// channel with [`Node::presence_namespace`]).
    pub async fn channel_presence(&self, channel: &str) -> Result<PresenceResult, protocol::Error> {
        let presence = self
            .presence
            .presence(channel)
            .await
            .map_err(|e| e.to_protocol())?;
        Ok(PresenceResult { presence })
    }

    /// How many connections and distinct users are subscribed to `channel` (the caller has
    /// checked the channel with [`Node::presence_namespace`]).
    pub async fn channel_presence_stats(
        &self,
        channel: &str,
    ) -> Result<PresenceStatsResult, protocol::Error> {
        let stats = self
            .presence
            .stats(channel)
            .await
            .map_err(|e| e.to_protocol())?;
        Ok(PresenceStatsResult::from(stats))
    }
}
