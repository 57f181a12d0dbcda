//! `presence_stats`: how many connections and distinct users are subscribed to a channel —
//! cheaper than listing them.
//!
//! `POST /api/presence_stats {"channel": "chat:1"}` →
//! `{"result": {"num_clients": 3, "num_users": 2}}`.

use super::presence::{PresenceRequest, check_presence};
use crate::node::Node;
use crate::protocol::{self, PresenceStatsResult};

/// Counts the channel's presence.
///
/// Errors: as for `presence`.
pub async fn execute(
    node: &Node,
    req: PresenceRequest,
) -> Result<PresenceStatsResult, protocol::Error> {
    check_presence(node, &req.channel)?;
    node.channel_presence_stats(&req.channel).await
}
