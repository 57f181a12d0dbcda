//! The legacy single endpoint `POST /api` of Centrifugo ≤ v4 and its server libraries: the body
//! holds one or more commands `{"id": 1, "method": "publish", "params": {…}}` (whitespace or
//! newline separated); the response holds one reply per command, newline separated:
//! `{"id": 1, "result": {…}}` or `{"id": 1, "error": {…}}`.
//!
//! `method` is a name (any case) or the number of Centrifugo's `MethodType` enum. Bad `params`
//! are an error 107 in that command's reply; a body that is not a sequence of JSON objects is
//! an HTTP 400.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use super::cmd::batch::method_not_found;
use super::cmd::{Command, DecodeError};
use super::reply::ApiError;
use crate::node::Node;
use crate::protocol::nullable;

/// Centrifugo's legacy `MethodType` numbers, by name (0..=12; 13 is unused, 14 and up are
/// PRO methods Herald does not have).
const LEGACY_METHODS: [&str; 13] = [
    "publish",
    "broadcast",
    "unsubscribe",
    "disconnect",
    "presence",
    "presence_stats",
    "history",
    "history_remove",
    "channels",
    "info",
    "rpc",
    "subscribe",
    "refresh",
];

/// A legacy `method`: a name, or a `MethodType` number.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MethodName {
    Name(String),
    Number(u64),
}

impl<'de> Deserialize<'de> for MethodName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Name(String),
            Number(u64),
        }
        Ok(match Wire::deserialize(d)? {
            Wire::Name(n) => MethodName::Name(n),
            Wire::Number(n) => MethodName::Number(n),
        })
    }
}

impl Default for MethodName {
    fn default() -> Self {
        // Absent `method` is 0, PUBLISH, as in the protobuf enum.
        MethodName::Number(0)
    }
}

impl MethodName {
    /// The API method name, lowercase, as the per-method endpoints spell it.
    fn resolve(&self) -> String {
        match self {
            MethodName::Name(name) => name.to_ascii_lowercase(),
            MethodName::Number(n) => usize::try_from(*n)
                .ok()
                .and_then(|i| LEGACY_METHODS.get(i))
                .map_or_else(|| format!("method {n}"), |m| (*m).to_owned()),
        }
    }
}

/// One legacy command.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LegacyCommand {
    #[serde(deserialize_with = "nullable")]
    id: u32,
    #[serde(deserialize_with = "nullable")]
    method: MethodName,
    params: Option<Box<RawValue>>,
}

/// One legacy reply.
#[derive(Debug, Serialize)]
struct LegacyReply {
    #[serde(skip_serializing_if = "is_zero")]
    id: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ApiError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Box<RawValue>>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Runs the commands of a legacy request body; returns the response body (replies separated
/// by `\n`), or why the body is not a sequence of commands.
pub async fn execute(node: &Arc<Node>, body: &[u8]) -> Result<Vec<u8>, DecodeError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(DecodeError {
            message: "bad request: empty body; send {\"method\": \"…\", \"params\": {…}}".into(),
        });
    }
    // Decode everything first: a malformed body runs nothing.
    let commands = serde_json::Deserializer::from_slice(body)
        .into_iter::<crate::protocol::Object<LegacyCommand>>()
        .map(|c| c.map(|c| c.0))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| DecodeError {
            message: format!("malformed JSON: {e}"),
        })?;
    let mut out = Vec::new();
    for (i, command) in commands.into_iter().enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        let reply = run(node, command).await;
        serde_json::to_writer(&mut out, &reply).map_err(|e| DecodeError {
            message: format!("encoding a reply failed: {e}"),
        })?;
    }
    Ok(out)
}

async fn run(node: &Arc<Node>, command: LegacyCommand) -> LegacyReply {
    let method = command.method.resolve();
    let params = command.params.as_deref().map_or("{}", RawValue::get);
    let outcome = match Command::decode(&method, params.as_bytes()) {
        Ok(Some(cmd)) => {
            let started = Instant::now();
            let name = cmd.method();
            let outcome = cmd.execute(node).await.map_err(ApiError::from);
            node.metrics().api_call(name, started.elapsed());
            outcome
        }
        Ok(None) => Err(method_not_found(&method)),
        Err(e) => Err(ApiError::new(107, e.message)),
    };
    match outcome {
        Ok(result) => LegacyReply {
            id: command.id,
            error: None,
            result: Some(result),
        },
        Err(error) => LegacyReply {
            id: command.id,
            error: Some(error),
            result: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::cmd::test_support::*;
    use super::*;

    async fn replies(node: &Arc<Node>, body: &str) -> Vec<serde_json::Value> {
        let out = execute(node, body.as_bytes()).await.unwrap();
        String::from_utf8(out)
            .unwrap()
            .split('\n')
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn commands_and_replies() {
        let node = node();
        let a = client(&node, "a", "alice");
        node.hub().subscribe("news", &a);
        let r = replies(
            &node,
            r#"{"method":"publish","params":{"channel":"news","data":{"x":1}}}
               {"id":7,"method":"BROADCAST","params":{"channels":["news"],"data":2}}
               {"id":8,"method":9}
               {"method":"presence","params":{"channel":"news"}}
               {"method":"batch","params":{}}
               {"method":40}
               {"method":"publish","params":{"channel":5}}"#,
        )
        .await;
        assert_eq!(r.len(), 7);
        assert_eq!(r[0], serde_json::json!({"result": {}}));
        assert_eq!(r[1]["id"], 7);
        assert_eq!(
            r[1]["result"]["responses"][0],
            serde_json::json!({"result": {}})
        );
        assert_eq!(r[2]["id"], 8);
        assert_eq!(r[2]["result"]["nodes"][0]["uid"], node.id());
        assert_eq!(r[3]["error"]["code"], 108);
        assert_eq!(r[4]["error"]["code"], 104);
        assert_eq!(r[5]["error"]["code"], 104);
        assert_eq!(r[6]["error"]["code"], 107);
        assert!(a.outbox.queued_bytes() > 0);
    }

    #[tokio::test]
    async fn malformed_bodies() {
        let node = node();
        assert!(execute(&node, b"").await.is_err());
        assert!(execute(&node, b"{\"method\":").await.is_err());
        assert!(execute(&node, b"[1]").await.is_err());
        assert!(
            execute(&node, br#"{"method":"info"} garbage"#)
                .await
                .is_err()
        );
    }

    #[test]
    fn legacy_method_numbers() {
        assert_eq!(MethodName::Number(0).resolve(), "publish");
        assert_eq!(MethodName::Number(11).resolve(), "subscribe");
        assert_eq!(MethodName::Number(12).resolve(), "refresh");
        assert_eq!(MethodName::Number(14).resolve(), "method 14");
        assert_eq!(
            MethodName::Name("Presence_Stats".into()).resolve(),
            "presence_stats"
        );
    }
}
