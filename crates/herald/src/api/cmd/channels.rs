//! `channels`: lists the channels that have subscribers on any node, with their subscriber
//! counts summed over the nodes, optionally filtered by a glob pattern — for dashboards and
//! debugging. Each node filters its own channels (through the engine's controller), so only
//! matching names cross the network.
//!
//! `POST /api/channels {"pattern": "chat:*"}` →
//! `{"result": {"channels": {"chat:1": {"num_clients": 2}}}}`.
//!
//! Patterns are [`Glob`]s: `*`, `?`, `[a-z]`, `[!abc]`, `\` escapes; an empty pattern
//! matches every channel.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::bad_request;
use crate::glob::Glob;
use crate::node::Node;
use crate::protocol::{self, nullable};

/// Request of `channels`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ChannelsRequest {
    /// Glob pattern the channel names must match; empty = all.
    #[serde(deserialize_with = "nullable")]
    pub pattern: String,
}

/// Result of `channels`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChannelsResult {
    /// Matching channels by name.
    pub channels: BTreeMap<String, ChannelInfo>,
}

/// What `channels` tells about one channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ChannelInfo {
    /// Connections subscribed to the channel, on all nodes.
    pub num_clients: u32,
}

/// Lists the channels with subscribers that match `req.pattern`, on every node.
///
/// Errors: 107 for a malformed pattern (an unclosed `[` or a trailing `\`); 100 when some
/// node does not answer.
pub async fn execute(node: &Node, req: ChannelsRequest) -> Result<ChannelsResult, protocol::Error> {
    Glob::new(&req.pattern).map_err(bad_request)?;
    let channels = node
        .controller()
        .channels(&req.pattern)
        .await
        .map_err(|e| {
            tracing::error!("channels: {e}");
            e.to_protocol()
        })?
        .into_iter()
        .map(|(name, num_clients)| (name, ChannelInfo { num_clients }))
        .collect();
    Ok(ChannelsResult { channels })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[tokio::test]
    async fn lists_matching_channels() {
        let node = node();
        let a = client(&node, "a", "alice");
        let b = client(&node, "b", "bob");
        node.hub().subscribe("chat:1", &a);
        node.hub().subscribe("chat:1", &b);
        node.hub().subscribe("chat:2", &a);
        node.hub().subscribe("news", &b);
        let all = execute(&node, ChannelsRequest::default()).await.unwrap();
        assert_eq!(all.channels.len(), 3);
        let chat = execute(
            &node,
            ChannelsRequest {
                pattern: "chat:*".into(),
            },
        )
        .await
        .unwrap();
        assert_eq!(
            serde_json::to_string(&chat).unwrap(),
            r#"{"channels":{"chat:1":{"num_clients":2},"chat:2":{"num_clients":1}}}"#
        );
        let e = execute(
            &node,
            ChannelsRequest {
                pattern: "[".into(),
            },
        )
        .await
        .unwrap_err();
        assert_eq!(e.code, 107);
    }
}
