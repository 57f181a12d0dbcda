//! `unsubscribe`: the backend removes a user's live connections from a channel (e.g. the user
//! left a group). Each connection that was subscribed gets an `unsubscribe` push with code
//! 2000 "server unsubscribe", after which its SDK does not resubscribe.
//!
//! `POST /api/unsubscribe {"user": "42", "channel": "news"}` → `{"result": {}}`.

use serde::Deserialize;

use super::check_channel;
use crate::engine::ControlCommand;
use crate::node::Node;
use crate::protocol::{self, nullable};

/// Request of `unsubscribe`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct UnsubscribeRequest {
    /// Channel to unsubscribe from. Required.
    #[serde(deserialize_with = "nullable")]
    pub channel: String,
    /// User whose connections are unsubscribed. Required unless `client` is given.
    #[serde(deserialize_with = "nullable")]
    pub user: String,
    /// Only this connection (which must belong to `user`).
    #[serde(deserialize_with = "nullable")]
    pub client: String,
    /// Only the connection with this session id (the connect reply's `session`).
    #[serde(deserialize_with = "nullable")]
    pub session: String,
}

/// Result of `unsubscribe`: always `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct UnsubscribeResult {}

/// Unsubscribes the targeted connections and queues an `unsubscribe` push (2000) to each one
/// that was subscribed, on whatever node they are (through the engine's controller).
///
/// Errors: 107 for a missing user or a missing or malformed channel; 102 for an unknown
/// namespace; 100 when the command cannot reach the nodes. A `session` that names none of them
/// is not an error.
pub async fn execute(
    node: &Node,
    req: UnsubscribeRequest,
) -> Result<UnsubscribeResult, protocol::Error> {
    check_channel(node, &req.channel)?;
    let command = ControlCommand::Unsubscribe {
        target: super::target(req.user, req.client, req.session)?,
        channel: req.channel,
    };
    super::send(node, command).await?;
    Ok(UnsubscribeResult {})
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    fn request(user: &str, channel: &str) -> UnsubscribeRequest {
        UnsubscribeRequest {
            user: user.into(),
            channel: channel.into(),
            ..UnsubscribeRequest::default()
        }
    }

    #[tokio::test]
    async fn unsubscribes_and_tells_the_connection() {
        let node = node();
        let a1 = client(&node, "a1", "alice");
        let a2 = client(&node, "a2", "alice");
        let b = client(&node, "b", "bob");
        node.hub().subscribe("news", &a1);
        node.hub().subscribe("news", &b);
        execute(&node, request("alice", "news")).await.unwrap();
        assert!(!a1.is_subscribed("news"));
        assert_eq!(
            a1.outbox.queued_bytes(),
            frame_len(
                r#"{"push":{"channel":"news","unsubscribe":{"code":2000,"reason":"server unsubscribe"}}}"#
            )
        );
        // Not subscribed: nothing sent. Another user: untouched.
        assert_eq!(a2.outbox.queued_bytes(), 0);
        assert!(b.is_subscribed("news"));
        assert_eq!(b.outbox.queued_bytes(), 0);
        assert_eq!(node.hub().num_subscribers("news"), 1);
        // Publications no longer reach alice.
        node.publish("news", raw("1"), Default::default())
            .await
            .unwrap();
        assert_eq!(
            drain(&a1).0,
            [
                r#"{"push":{"channel":"news","unsubscribe":{"code":2000,"reason":"server unsubscribe"}}}"#
            ]
        );
    }

    #[tokio::test]
    async fn one_connection() {
        let node = node();
        let a1 = client(&node, "a1", "alice");
        let a2 = client(&node, "a2", "alice");
        node.hub().subscribe("chat:x", &a1);
        node.hub().subscribe("chat:x", &a2);
        let mut req = request("alice", "chat:x");
        req.client = "a2".into();
        execute(&node, req).await.unwrap();
        assert!(a1.is_subscribed("chat:x") && !a2.is_subscribed("chat:x"));
    }

    #[tokio::test]
    async fn errors() {
        let node = node();
        assert_eq!(
            execute(&node, request("", "news")).await.unwrap_err().code,
            107
        );
        assert_eq!(
            execute(&node, request("alice", "")).await.unwrap_err().code,
            107
        );
        assert_eq!(
            execute(&node, request("alice", "nope:x"))
                .await
                .unwrap_err()
                .code,
            102
        );
    }
}
