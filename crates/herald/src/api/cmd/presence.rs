//! `presence`: who is subscribed to a channel now, for backends that show "who is here".
//!
//! `POST /api/presence {"channel": "chat:1"}` →
//! `{"result": {"presence": {"<client id>": {"user": "42", "client": "<client id>",
//! "conn_info": {…}, "chan_info": {…}}}}}`.

use serde::Deserialize;

use super::check_channel;
use crate::node::Node;
use crate::protocol::{self, PresenceResult, nullable};

/// Request of `presence` (and of `presence_stats`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PresenceRequest {
    /// Channel whose presence to list. Required.
    #[serde(deserialize_with = "nullable")]
    pub channel: String,
}

/// Lists the channel's presence.
///
/// Errors: 107 for a missing or malformed channel, 102 for an unknown namespace, 108 when the
/// namespace keeps no presence.
pub async fn execute(node: &Node, req: PresenceRequest) -> Result<PresenceResult, protocol::Error> {
    check_presence(node, &req.channel)?;
    node.channel_presence(&req.channel).await
}

/// Checks that `channel` is valid and its namespace keeps presence.
pub fn check_presence(node: &Node, channel: &str) -> Result<(), protocol::Error> {
    check_channel(node, channel)?;
    match node.presence_namespace(channel) {
        Ok(_) => Ok(()),
        Err(error) if error.code == protocol::Error::NOT_AVAILABLE.code => {
            Err(protocol::Error::new(
                108,
                "not available: the channel's namespace keeps no presence (set presence: true)",
            ))
        }
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::hub::SubFlags;

    #[tokio::test]
    async fn lists_subscribers_of_presence_channels_only() {
        let node = node_with(|config| {
            config.channel.namespaces[0].options.presence = true;
        });
        let a = client(&node, "a", "alice");
        let flags = SubFlags {
            presence: true,
            ..SubFlags::default()
        };
        node.hub().subscribe_with("chat:1", &a, flags);
        node.joined("chat:1", a.info(), flags).await;
        let request = |channel: &str| PresenceRequest {
            channel: channel.into(),
        };
        let result = execute(&node, request("chat:1")).await.unwrap();
        assert_eq!(result.presence.len(), 1);
        assert_eq!(result.presence["a"].user, "alice");
        assert_eq!(execute(&node, request("news")).await.unwrap_err().code, 108);
        assert_eq!(execute(&node, request("")).await.unwrap_err().code, 107);
        assert_eq!(
            execute(&node, request("nope:1")).await.unwrap_err().code,
            102
        );
        let flags = node.hub().unsubscribe("chat:1", &a).unwrap();
        node.left("chat:1", &a, flags).await;
        assert!(
            execute(&node, request("chat:1"))
                .await
                .unwrap()
                .presence
                .is_empty()
        );
    }
}
