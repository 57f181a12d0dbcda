//! `broadcast`: the same message published to many channels in one call (e.g. one personal
//! channel per recipient). Each channel succeeds or fails on its own.
//!
//! `POST /api/broadcast {"channels": ["a", "b"], "data": {…}}` →
//! `{"result": {"responses": [{"result": {}}, {"error": {…}}]}}`, one response per channel,
//! in order.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::publish::{PublishResult, publish_one};
use super::{bad_request, check_channel, publication_data};
use crate::api::reply::ApiError;
use crate::node::{Node, PublishOptions};
use crate::protocol::{self, Payload, nullable};

/// Request of `broadcast`: `publish` with a list of channels.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct BroadcastRequest {
    /// Channels to publish to. At least one.
    #[serde(deserialize_with = "nullable")]
    pub channels: Vec<String>,
    /// The payload: any JSON value. Required.
    pub data: Option<Payload>,
    /// The payload as standard base64 bytes, for Protobuf subscribers: wins over `data`
    /// (as in Centrifugo); not base64 → 107.
    #[serde(deserialize_with = "nullable")]
    pub b64data: String,
    /// Do not keep the publications in history.
    #[serde(deserialize_with = "nullable")]
    pub skip_history: bool,
    /// Tags attached to every publication.
    #[serde(deserialize_with = "nullable")]
    pub tags: BTreeMap<String, String>,
    /// Per-channel de-duplication key. Accepted; not de-duplicated yet.
    #[serde(deserialize_with = "nullable")]
    pub idempotency_key: String,
    /// Send each publication as a Fossil delta to subscribers that negotiated deltas (see
    /// `publish`).
    #[serde(deserialize_with = "nullable")]
    pub delta: bool,
}

/// Result of `broadcast`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BroadcastResult {
    /// One response per requested channel, in request order.
    pub responses: Vec<PublishResponse>,
}

/// The outcome of publishing to one channel of a broadcast: `{"result": {…}}` or
/// `{"error": {…}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishResponse {
    /// Set when publishing to this channel failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
    /// Set when publishing to this channel succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<PublishResult>,
}

/// Publishes `req.data` to each of `req.channels`.
///
/// Errors for the whole call: 107 when there are no channels, or the data is missing or
/// `b64data` is not base64. A bad or unknown channel is an error in its own response only.
pub async fn execute(
    node: &Node,
    req: BroadcastRequest,
) -> Result<BroadcastResult, protocol::Error> {
    if req.channels.is_empty() {
        return Err(bad_request(
            "channels is required (a list of channel names)",
        ));
    }
    let data = publication_data(req.data, &req.b64data)?;
    let mut responses = Vec::with_capacity(req.channels.len());
    for channel in &req.channels {
        let outcome = match check_channel(node, channel) {
            Ok(()) => {
                let options = PublishOptions {
                    info: None,
                    tags: req.tags.clone(),
                    skip_history: req.skip_history,
                    idempotency_key: Some(req.idempotency_key.clone()).filter(|k| !k.is_empty()),
                    delta: req.delta,
                    ..PublishOptions::default()
                };
                publish_one(node, channel, data.clone(), options).await
            }
            Err(e) => Err(e),
        };
        responses.push(match outcome {
            Ok(result) => PublishResponse {
                error: None,
                result: Some(result),
            },
            Err(e) => PublishResponse {
                error: Some(e.into()),
                result: None,
            },
        });
    }
    Ok(BroadcastResult { responses })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[tokio::test]
    async fn publishes_to_each_channel_and_reports_each() {
        let node = node();
        let a = client(&node, "a", "alice");
        let b = client(&node, "b", "bob");
        node.hub().subscribe("personal#alice", &a);
        node.hub().subscribe("chat:b", &b);
        let result = execute(
            &node,
            BroadcastRequest {
                channels: vec![
                    "personal#alice".into(),
                    "nope:x".into(),
                    "chat:b".into(),
                    "".into(),
                ],
                data: Some(raw(r#"{"n":1}"#)),
                ..BroadcastRequest::default()
            },
        )
        .await
        .unwrap();
        let json = serde_json::to_value(&result).unwrap();
        assert_eq!(json["responses"].as_array().unwrap().len(), 4);
        assert_eq!(json["responses"][0], serde_json::json!({"result": {}}));
        assert_eq!(json["responses"][1]["error"]["code"], 102);
        assert_eq!(json["responses"][2], serde_json::json!({"result": {}}));
        assert_eq!(json["responses"][3]["error"]["code"], 107);
        assert_eq!(
            a.outbox.queued_bytes(),
            frame_len(r#"{"push":{"channel":"personal#alice","pub":{"data":{"n":1}}}}"#)
        );
        assert_eq!(
            b.outbox.queued_bytes(),
            frame_len(r#"{"push":{"channel":"chat:b","pub":{"data":{"n":1}}}}"#)
        );
    }

    #[tokio::test]
    async fn whole_call_errors() {
        let node = node();
        let e = execute(
            &node,
            BroadcastRequest {
                data: Some(raw("1")),
                ..BroadcastRequest::default()
            },
        )
        .await
        .unwrap_err();
        assert_eq!(e.code, 107);
        let e = execute(
            &node,
            BroadcastRequest {
                channels: vec!["a".into()],
                ..BroadcastRequest::default()
            },
        )
        .await
        .unwrap_err();
        assert_eq!(e.code, 107);
        let e = execute(
            &node,
            BroadcastRequest {
                channels: vec!["a".into()],
                data: Some(raw("1")),
                b64data: "A=A=".into(),
                ..BroadcastRequest::default()
            },
        )
        .await
        .unwrap_err();
        assert!(e.message.contains("b64data"), "{}", e.message);
    }
}
