//! `disconnect`: the backend closes a user's live connections (e.g. the user was banned or
//! logged out everywhere). Each connection is closed with a [`Disconnect`] code and reason
//! (on a WebSocket, its close frame's), by default 3503 "force disconnect", after which the
//! SDK does not reconnect.
//!
//! `POST /api/disconnect {"user": "42", "whitelist": ["<client id to keep>"],
//! "disconnect": {"code": 4000, "reason": "bye"}}` → `{"result": {}}`.

use serde::Deserialize;

use super::bad_request;
use crate::engine::ControlCommand;
use crate::node::Node;
use crate::protocol::{self, Disconnect, nullable, object};

/// Longest close reason that fits a WebSocket close frame.
const MAX_REASON_BYTES: usize = 123;

/// Request of `disconnect`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DisconnectRequest {
    /// User whose connections are closed. Required unless `client` is given.
    #[serde(deserialize_with = "nullable")]
    pub user: String,
    /// Only this connection (which must belong to `user`).
    #[serde(deserialize_with = "nullable")]
    pub client: String,
    /// Only the connection with this session id (the connect reply's `session`).
    #[serde(deserialize_with = "nullable")]
    pub session: String,
    /// Connection ids to keep open.
    #[serde(deserialize_with = "nullable")]
    pub whitelist: Vec<String>,
    /// Close code and reason; default 3503 "force disconnect".
    #[serde(deserialize_with = "object")]
    pub disconnect: Option<DisconnectSpec>,
}

/// The `disconnect` object of a request: how the connections are closed.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DisconnectSpec {
    /// WebSocket close code, 3000..=4999 (3500..=3999 and 4500..=4999 tell the SDK not to
    /// reconnect). 0 means 3503.
    #[serde(deserialize_with = "nullable")]
    pub code: u32,
    /// Close reason, at most 123 bytes; empty means the library reason of the code, if any.
    #[serde(deserialize_with = "nullable")]
    pub reason: String,
}

/// Result of `disconnect`: always `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DisconnectResult {}

/// Asks each targeted connection not in the whitelist to close, on whatever node it is
/// (through the engine's controller).
///
/// Errors: 107 for a missing user, a code outside 3000..=4999 or a reason over 123 bytes;
/// 100 when the command cannot reach the nodes. A `session` that names none of them is not an
/// error.
pub async fn execute(
    node: &Node,
    req: DisconnectRequest,
) -> Result<DisconnectResult, protocol::Error> {
    let (code, reason) = close_code_and_reason(req.disconnect)?;
    let target = super::target(req.user, req.client, req.session)?;
    let command = ControlCommand::Disconnect {
        target,
        whitelist: req.whitelist,
        code,
        reason,
    };
    super::send(node, command).await?;
    Ok(DisconnectResult {})
}

fn close_code_and_reason(spec: Option<DisconnectSpec>) -> Result<(u16, String), protocol::Error> {
    let default = Disconnect::FORCE_DISCONNECT;
    let Some(spec) = spec else {
        return Ok((default.code, default.reason.into_owned()));
    };
    let code = match spec.code {
        0 => default.code,
        c @ 3000..=4999 => c as u16,
        c => {
            return Err(bad_request(format!(
                "disconnect code {c} is outside 3000..=4999"
            )));
        }
    };
    if spec.reason.len() > MAX_REASON_BYTES {
        return Err(bad_request(format!(
            "disconnect reason is {} bytes, more than the {MAX_REASON_BYTES} a close frame holds",
            spec.reason.len()
        )));
    }
    let reason = if spec.reason.is_empty() {
        Disconnect::from_code(code)
            .map(|d| d.reason.into_owned())
            .unwrap_or_default()
    } else {
        spec.reason
    };
    Ok((code, reason))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    fn request(user: &str) -> DisconnectRequest {
        DisconnectRequest {
            user: user.into(),
            ..DisconnectRequest::default()
        }
    }

    #[tokio::test]
    async fn closes_the_users_connections_except_the_whitelist() {
        let node = node();
        let a1 = client(&node, "a1", "alice");
        let a2 = client(&node, "a2", "alice");
        let a3 = client(&node, "a3", "alice");
        let b = client(&node, "b", "bob");
        let mut req = request("alice");
        req.whitelist = vec!["a2".into()];
        execute(&node, req).await.unwrap();
        assert!(a1.outbox.is_closed() && a3.outbox.is_closed());
        assert!(!a2.outbox.is_closed());
        assert!(!b.outbox.is_closed());
        assert_eq!(drain(&a1).1, Some((3503, "force disconnect".into())));
    }

    #[tokio::test]
    async fn one_connection() {
        let node = node();
        let a1 = client(&node, "a1", "alice");
        let a2 = client(&node, "a2", "alice");
        let mut req = request("alice");
        req.client = "a1".into();
        req.disconnect = Some(DisconnectSpec {
            code: 4501,
            reason: "banned".into(),
        });
        execute(&node, req).await.unwrap();
        assert!(a1.outbox.is_closed() && !a2.outbox.is_closed());
        assert_eq!(drain(&a1).1, Some((4501, "banned".into())));
    }

    #[test]
    fn codes_and_reasons() {
        assert_eq!(
            close_code_and_reason(None).unwrap(),
            (3503, "force disconnect".into())
        );
        let spec = |code, reason: &str| {
            Some(DisconnectSpec {
                code,
                reason: reason.into(),
            })
        };
        assert_eq!(
            close_code_and_reason(spec(4000, "bye")).unwrap(),
            (4000, "bye".into())
        );
        assert_eq!(
            close_code_and_reason(spec(0, "")).unwrap(),
            (3503, "force disconnect".into())
        );
        assert_eq!(
            close_code_and_reason(spec(3001, "")).unwrap(),
            (3001, "shutdown".into())
        );
        assert_eq!(
            close_code_and_reason(spec(4999, "")).unwrap(),
            (4999, String::new())
        );
        for bad in [1000, 2999, 5000, 70000] {
            assert_eq!(close_code_and_reason(spec(bad, "")).unwrap_err().code, 107);
        }
        let long = "x".repeat(124);
        assert_eq!(
            close_code_and_reason(spec(4000, &long)).unwrap_err().code,
            107
        );
    }

    #[tokio::test]
    async fn errors() {
        let node = node();
        let a = client(&node, "a", "alice");
        assert_eq!(execute(&node, request("")).await.unwrap_err().code, 107);
        let mut req = request("alice");
        req.disconnect = Some(DisconnectSpec {
            code: 1000,
            reason: String::new(),
        });
        assert_eq!(execute(&node, req).await.unwrap_err().code, 107);
        assert!(!a.outbox.is_closed());
    }
}
