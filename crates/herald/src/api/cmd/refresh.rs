//! `refresh`: the backend extends or ends the life of a user's connections without a new token
//! from the client (e.g. the session was prolonged, or revoked).
//!
//! `POST /api/refresh {"user": "42", "expire_at": 1767225600}` → `{"result": {}}`: the
//! connections now expire at that time (0: never). `{"user": "42", "expired": true}` closes them
//! at once with 3005 "connection expired", after which the SDK reconnects with a fresh token.

use serde::Deserialize;

use super::not_available;
use crate::engine::ControlCommand;
use crate::node::Node;
use crate::protocol::{self, Payload, nullable};

/// Request of `refresh`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RefreshRequest {
    /// User whose connections are refreshed. Required unless `client` is given.
    #[serde(deserialize_with = "nullable")]
    pub user: String,
    /// Only this connection (which must belong to `user`).
    #[serde(deserialize_with = "nullable")]
    pub client: String,
    /// Only the connection with this session id (the connect reply's `session`).
    #[serde(deserialize_with = "nullable")]
    pub session: String,
    /// Close the connections now as expired.
    #[serde(deserialize_with = "nullable")]
    pub expired: bool,
    /// New expiry, unix seconds; 0 = the connections no longer expire.
    #[serde(deserialize_with = "nullable")]
    pub expire_at: u64,
    /// New connection info: refused with 108 (connection info is fixed at connect).
    pub info: Option<Payload>,
}

/// Result of `refresh`: always `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RefreshResult {}

/// Sets the expiry of the targeted connections, or closes them when `expired` (or when
/// `expire_at` is already past), on whatever node they are (through the engine's controller).
///
/// Errors: 107 for a missing user; 108 for `info`; 100 when the command cannot reach the
/// nodes.
pub async fn execute(node: &Node, req: RefreshRequest) -> Result<RefreshResult, protocol::Error> {
    if req.info.is_some() {
        return Err(not_available(
            "connection info can not be changed by refresh in Herald",
        ));
    }
    let command = ControlCommand::Refresh {
        target: super::target(req.user, req.client, req.session)?,
        expired: req.expired,
        expire_at: req.expire_at,
    };
    super::send(node, command).await?;
    Ok(RefreshResult {})
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::node::unix_now;

    #[tokio::test]
    async fn sets_expiry_or_closes_the_users_connections() {
        let node = node();
        let a = client(&node, "a", "alice");
        let b = client(&node, "b", "bob");
        let later = unix_now() + 3600;
        let req = RefreshRequest {
            user: "alice".into(),
            expire_at: later,
            ..RefreshRequest::default()
        };
        execute(&node, req).await.unwrap();
        assert_eq!(a.take_expiry(), Some(Some(later)));
        assert_eq!(a.take_expiry(), None, "taken once");
        assert_eq!(b.take_expiry(), None);
        assert!(!a.outbox.is_closed());

        let req = RefreshRequest {
            user: "alice".into(),
            expired: true,
            ..RefreshRequest::default()
        };
        execute(&node, req).await.unwrap();
        assert_eq!(drain(&a).1, Some((3005, "connection expired".into())));
        assert!(!b.outbox.is_closed());

        let req = RefreshRequest {
            user: "bob".into(),
            info: Some(raw("{}")),
            ..RefreshRequest::default()
        };
        assert_eq!(execute(&node, req).await.unwrap_err().code, 108);
        assert_eq!(
            execute(&node, RefreshRequest::default())
                .await
                .unwrap_err()
                .code,
            107
        );
    }
}
