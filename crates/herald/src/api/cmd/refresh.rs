//! `refresh`: the backend extends or ends the life of a user's connections without a new token
//! from the client (e.g. the session was prolonged, or revoked).
//!
//! `POST /api/refresh {"user": "42", "expire_at": 1767225600}` → `{"result": {}}`: the
//! connections now expire at that time (0: never). `{"user": "42", "expired": true}` closes them
//! at once with 3005 "connection expired", after which the SDK reconnects with a fresh token.

use serde::Deserialize;

use super::{not_available, target_clients};
use crate::node::{Node, unix_now};
use crate::protocol::{self, Disconnect, Payload, nullable};
use crate::ws::CloseCode;

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
/// `expire_at` is already past).
///
/// Errors: 107 for a missing user; 108 for `info`.
pub fn execute(node: &Node, req: RefreshRequest) -> Result<RefreshResult, protocol::Error> {
    if req.info.is_some() {
        return Err(not_available(
            "connection info can not be changed by refresh in Herald",
        ));
    }
    let targets = target_clients(node, &req.user, &req.client, &req.session)?;
    let expired = req.expired || (req.expire_at > 0 && req.expire_at <= unix_now());
    for client in targets {
        if expired {
            let close = Disconnect::EXPIRED;
            client.outbox.close(CloseCode(close.code), close.reason);
        } else {
            client.set_expiry((req.expire_at > 0).then_some(req.expire_at));
        }
    }
    Ok(RefreshResult {})
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn sets_expiry_or_closes_the_users_connections() {
        let node = node();
        let a = client(&node, "a", "alice");
        let b = client(&node, "b", "bob");
        let later = unix_now() + 3600;
        let req = RefreshRequest {
            user: "alice".into(),
            expire_at: later,
            ..RefreshRequest::default()
        };
        execute(&node, req).unwrap();
        assert_eq!(a.take_expiry(), Some(Some(later)));
        assert_eq!(a.take_expiry(), None, "taken once");
        assert_eq!(b.take_expiry(), None);
        assert!(!a.outbox.is_closed());

        let req = RefreshRequest {
            user: "alice".into(),
            expired: true,
            ..RefreshRequest::default()
        };
        execute(&node, req).unwrap();
        assert_eq!(drain(&a).1, Some((3005, "connection expired".into())));
        assert!(!b.outbox.is_closed());

        let req = RefreshRequest {
            user: "bob".into(),
            info: Some(raw("{}")),
            ..RefreshRequest::default()
        };
        assert_eq!(execute(&node, req).unwrap_err().code, 108);
        assert_eq!(
            execute(&node, RefreshRequest::default()).unwrap_err().code,
            107
        );
    }
}
