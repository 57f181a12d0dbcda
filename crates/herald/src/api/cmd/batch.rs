//! `batch`: many commands in one HTTP request, to save round trips (e.g. a publish and a
//! disconnect together). Each command succeeds or fails on its own; replies come in command
//! order.
//!
//! `POST /api/batch {"commands": [{"publish": {…}}, {"broadcast": {…}}], "parallel": false}` →
//! `{"replies": [{"publish": {…}}, {"error": {…}}]}`. As in Centrifugo (and as the `cent`
//! client reads it), the batch response has no `result` wrapper.
//!
//! Commands run one after the other, or concurrently as separate tasks when `parallel` is set.
//! A command that is not valid JSON for its method makes the whole request a 400 (nothing
//! runs); an unknown method is an error 104 in its own reply.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

use super::{Command, DecodeError, decode};
use crate::api::reply::ApiError;
use crate::node::Node;
use crate::protocol::{self, nullable};

/// Method names in the order a command object is searched for its request (as Centrifugo's
/// `Command` message lists them).
const METHOD_ORDER: &[&str] = &[
    "publish",
    "broadcast",
    "subscribe",
    "unsubscribe",
    "disconnect",
    "presence",
    "presence_stats",
    "history",
    "history_remove",
    "info",
    "rpc",
    "refresh",
    "channels",
];

/// The request of `batch` as sent.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireRequest {
    #[serde(deserialize_with = "nullable")]
    commands: Vec<HashMap<String, Option<Box<RawValue>>>>,
    #[serde(deserialize_with = "nullable")]
    parallel: bool,
}

/// Request of `batch`, decoded.
#[derive(Debug, Default)]
pub struct BatchRequest {
    /// The commands, in order.
    pub commands: Vec<BatchCommand>,
    /// Run the commands concurrently.
    pub parallel: bool,
}

/// One command of a batch.
// Nearly every element is `Known`: boxing it would cost an allocation per command to save
// bytes only on the rare unknown one.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum BatchCommand {
    /// A command this server knows.
    Known(Command),
    /// An object naming no method Herald knows (the name, or empty): answered with 104.
    Unknown(String),
}

impl BatchRequest {
    /// Decodes a batch request body: each element of `commands` is an object with one field
    /// named after the method, holding that method's request.
    pub fn decode(json: &[u8]) -> Result<BatchRequest, DecodeError> {
        let wire: WireRequest = decode(json)?;
        let mut commands = Vec::with_capacity(wire.commands.len());
        for (i, object) in wire.commands.into_iter().enumerate() {
            let found = METHOD_ORDER
                .iter()
                .find_map(|m| object.get(*m).and_then(Option::as_ref).map(|r| (*m, r)));
            let command = match found {
                Some((method, request)) => {
                    match Command::decode(method, request.get().as_bytes())
                        .map_err(|e| e.within(&format!("commands[{i}].{method}")))?
                    {
                        Some(command) => BatchCommand::Known(command),
                        None => BatchCommand::Unknown(method.to_owned()),
                    }
                }
                None => BatchCommand::Unknown(object.into_keys().next().unwrap_or_default()),
            };
            commands.push(command);
        }
        Ok(BatchRequest {
            commands,
            parallel: wire.parallel,
        })
    }
}

/// Result of `batch` (sent as the whole response body, without `result`).
#[derive(Debug, Serialize)]
pub struct BatchResult {
    /// One reply per command, in command order.
    pub replies: Vec<BatchReply>,
}

/// The reply to one command of a batch: `{"<method>": <result>}` or `{"error": {…}}`.
#[derive(Debug)]
pub enum BatchReply {
    /// The command succeeded.
    Ok {
        /// Its method.
        method: &'static str,
        /// Its result.
        result: Box<RawValue>,
    },
    /// The command failed.
    Error(ApiError),
}

impl Serialize for BatchReply {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        match self {
            BatchReply::Ok { method, result } => map.serialize_entry(method, result)?,
            BatchReply::Error(error) => map.serialize_entry("error", error)?,
        }
        map.end()
    }
}

/// Runs every command of the batch and collects the replies in order.
pub async fn execute(node: &Arc<Node>, req: BatchRequest) -> BatchResult {
    let replies = if req.parallel && req.commands.len() > 1 {
        execute_parallel(node, req.commands).await
    } else {
        let mut replies = Vec::with_capacity(req.commands.len());
        for command in req.commands {
            replies.push(execute_one(node, command).await);
        }
        replies
    };
    BatchResult { replies }
}

async fn execute_one(node: &Arc<Node>, command: BatchCommand) -> BatchReply {
    match command {
        BatchCommand::Known(command) => {
            let started = Instant::now();
            let method = command.method();
            let outcome = command.execute(node).await;
            node.metrics().api_call(method, started.elapsed());
            match outcome {
                Ok(result) => BatchReply::Ok { method, result },
                Err(e) => BatchReply::Error(e.into()),
            }
        }
        BatchCommand::Unknown(name) => BatchReply::Error(method_not_found(&name)),
    }
}

async fn execute_parallel(node: &Arc<Node>, commands: Vec<BatchCommand>) -> Vec<BatchReply> {
    let count = commands.len();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, command) in commands.into_iter().enumerate() {
        let node = node.clone();
        tasks.spawn(async move { (i, execute_one(&node, command).await) });
    }
    let mut replies: Vec<Option<BatchReply>> = (0..count).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((i, reply)) => replies[i] = Some(reply),
            Err(e) => tracing::error!(error = %e, "a batch command task failed"),
        }
    }
    // A task that panicked left its slot empty.
    replies
        .into_iter()
        .map(|r| r.unwrap_or_else(|| BatchReply::Error(protocol::Error::INTERNAL.into())))
        .collect()
}

/// Error 104 for an unknown method name.
pub fn method_not_found(name: &str) -> ApiError {
    if name.is_empty() {
        ApiError::new(104, "method not found")
    } else {
        ApiError::new(104, format!("method not found: {name}"))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[tokio::test]
    async fn runs_commands_in_order() {
        let node = node();
        let a = client(&node, "a", "alice");
        node.hub().subscribe("news", &a);
        let req = BatchRequest::decode(
            br#"{"commands":[
                {"publish":{"channel":"news","data":{"n":1}}},
                {"broadcast":{"channels":["news","nope:x"],"data":2}},
                {"publish":{"channel":"nope:x","data":3}},
                {"frobnicate":{}},
                {},
                {"history":{"channel":"news"}},
                {"subscribe":{"user":"alice","channel":"chat:1"}},
                {"disconnect":{"user":"alice"}}
            ]}"#,
        )
        .unwrap();
        assert!(!req.parallel);
        let result = execute(&node, req).await;
        let json = serde_json::to_value(&result).unwrap();
        let replies = json["replies"].as_array().unwrap();
        assert_eq!(replies.len(), 8);
        assert_eq!(replies[0], serde_json::json!({"publish": {}}));
        assert_eq!(
            replies[1]["broadcast"]["responses"][0],
            serde_json::json!({"result": {}})
        );
        assert_eq!(
            replies[1]["broadcast"]["responses"][1]["error"]["code"],
            102
        );
        assert_eq!(replies[2]["error"]["code"], 102);
        assert_eq!(replies[3]["error"]["code"], 104);
        assert_eq!(
            replies[3]["error"]["message"],
            "method not found: frobnicate"
        );
        assert_eq!(replies[4]["error"]["code"], 104);
        assert_eq!(replies[5]["error"]["code"], 108);
        assert_eq!(replies[6], serde_json::json!({"subscribe": {}}));
        assert_eq!(replies[7], serde_json::json!({"disconnect": {}}));
        assert!(a.is_subscribed("chat:1"));
        assert!(a.outbox.is_closed());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_keeps_reply_order() {
        let node = node();
        let a = client(&node, "a", "alice");
        node.hub().subscribe("news", &a);
        let mut commands = Vec::new();
        for i in 0..50 {
            if i % 5 == 4 {
                commands.push(r#"{"publish":{"channel":"","data":1}}"#.to_owned());
            } else {
                commands.push(format!(r#"{{"publish":{{"channel":"news","data":{i}}}}}"#));
            }
        }
        let body = format!(r#"{{"commands":[{}],"parallel":true}}"#, commands.join(","));
        let req = BatchRequest::decode(body.as_bytes()).unwrap();
        assert!(req.parallel);
        let json = serde_json::to_value(execute(&node, req).await).unwrap();
        let replies = json["replies"].as_array().unwrap();
        assert_eq!(replies.len(), 50);
        for (i, reply) in replies.iter().enumerate() {
            if i % 5 == 4 {
                assert_eq!(reply["error"]["code"], 107, "{i}");
            } else {
                assert_eq!(*reply, serde_json::json!({"publish": {}}), "{i}");
            }
        }
        let one = frame_len(r#"{"push":{"channel":"news","pub":{"data":10}}}"#);
        // 40 publications of one- or two-digit data.
        assert!(a.outbox.queued_bytes() >= 40 * (one - 1));
    }

    #[test]
    fn a_malformed_command_refuses_the_whole_batch() {
        let e = BatchRequest::decode(
            br#"{"commands":[{"publish":{"channel":"a","data":1}},{"publish":{"channel":7}}]}"#,
        )
        .unwrap_err();
        assert!(
            e.message
                .starts_with("commands[1].publish: bad request: field channel:"),
            "{e}"
        );
        assert!(BatchRequest::decode(br#"{"commands":[1]}"#).is_err());
        assert!(BatchRequest::decode(br#"{"commands":{}}"#).is_err());
        assert!(BatchRequest::decode(b"{").is_err());
    }

    #[tokio::test]
    async fn empty_batch() {
        let node = node();
        for body in [
            &b"{}"[..],
            b"",
            br#"{"commands":null}"#,
            br#"{"commands":[]}"#,
        ] {
            let req = BatchRequest::decode(body).unwrap();
            let result = execute(&node, req).await;
            assert_eq!(serde_json::to_string(&result).unwrap(), r#"{"replies":[]}"#);
        }
    }

    #[test]
    fn nested_batch_is_unknown() {
        let req = BatchRequest::decode(br#"{"commands":[{"batch":{"commands":[]}}]}"#).unwrap();
        assert!(matches!(&req.commands[0], BatchCommand::Unknown(n) if n == "batch"));
    }
}
