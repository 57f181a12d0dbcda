//! `publish`: the application's backend sends one message to a channel; every subscriber of
//! the channel receives it as a publication push.
//!
//! `POST /api/publish {"channel": "news", "data": {"text": "hi"}}` → `{"result": {}}` (with
//! `offset` and `epoch` when the channel keeps history).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{check_channel, publication_data};
use crate::node::{Node, PublishOptions};
use crate::protocol::{self, Payload, nullable};

/// Request of `publish`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PublishRequest {
    /// Channel to publish to. Required.
    #[serde(deserialize_with = "nullable")]
    pub channel: String,
    /// The payload: any JSON value. Required.
    pub data: Option<Payload>,
    /// The payload as standard base64 bytes, for Protobuf subscribers: wins over `data`
    /// (as in Centrifugo); not base64 → 107.
    #[serde(deserialize_with = "nullable")]
    pub b64data: String,
    /// Do not keep this publication in the channel's history.
    #[serde(deserialize_with = "nullable")]
    pub skip_history: bool,
    /// Tags attached to the publication and delivered to subscribers.
    #[serde(deserialize_with = "nullable")]
    pub tags: BTreeMap<String, String>,
    /// Per-channel de-duplication key for retries: within the idempotency window a repeated
    /// key returns the first publication's result and is not delivered again (channels with
    /// history).
    #[serde(deserialize_with = "nullable")]
    pub idempotency_key: String,
    /// Send the publication as a Fossil delta against the channel's previous one to the
    /// subscribers that negotiated deltas (as the namespace's `delta_publish` does for all).
    #[serde(deserialize_with = "nullable")]
    pub delta: bool,
    /// Version of the state the publication carries: in a channel with history, one not
    /// newer than the channel's last version (in the same `version_epoch`) is suppressed —
    /// not stored or delivered, and answered with the stream's current position. Ignored
    /// without history (as in Centrifugo).
    #[serde(deserialize_with = "nullable")]
    pub version: u64,
    /// Epoch of `version`: versions compare only within one epoch (empty: any).
    #[serde(deserialize_with = "nullable")]
    pub version_epoch: String,
}

/// Result of `publish`: the publication's stream position when the channel keeps history,
/// `{}` otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PublishResult {
    /// Offset of the publication in the channel's stream.
    #[serde(skip_serializing_if = "is_zero")]
    pub offset: u64,
    /// Epoch of the channel's stream.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub epoch: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Publishes `req.data` to `req.channel`.
///
/// Errors: 107 when the channel is missing or malformed, the data is missing or `b64data`
/// is not base64;
/// 102 when the channel's namespace is not configured.
pub async fn execute(node: &Node, req: PublishRequest) -> Result<PublishResult, protocol::Error> {
    check_channel(node, &req.channel)?;
    let data = publication_data(req.data, &req.b64data)?;
    let options = PublishOptions {
        info: None,
        tags: req.tags,
        skip_history: req.skip_history,
        idempotency_key: Some(req.idempotency_key).filter(|k| !k.is_empty()),
        delta: req.delta,
        version: req.version,
        version_epoch: req.version_epoch,
    };
    publish_one(node, &req.channel, data, options).await
}

/// Publishes one payload to one channel (shared with `broadcast`).
pub(super) async fn publish_one(
    node: &Node,
    channel: &str,
    data: Payload,
    options: PublishOptions,
) -> Result<PublishResult, protocol::Error> {
    let published = node.publish(channel, data, options).await?;
    node.metrics().publication("api");
    Ok(PublishResult {
        offset: published.offset,
        epoch: published.epoch,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    fn request(channel: &str, data: &str) -> PublishRequest {
        PublishRequest {
            channel: channel.into(),
            data: Some(raw(data)),
            ..PublishRequest::default()
        }
    }

    #[tokio::test]
    async fn publishes_to_subscribers_only() {
        let node = node();
        let a = client(&node, "a", "alice");
        let b = client(&node, "b", "bob");
        node.hub().subscribe("news", &a);
        let result = execute(&node, request("news", r#"{"text":"hi"}"#))
            .await
            .unwrap();
        assert_eq!(result, PublishResult::default());
        assert_eq!(serde_json::to_string(&result).unwrap(), "{}");
        assert_eq!(
            a.outbox.queued_bytes(),
            frame_len(r#"{"push":{"channel":"news","pub":{"data":{"text":"hi"}}}}"#)
        );
        assert_eq!(b.outbox.queued_bytes(), 0);
        // Nobody subscribed: still fine.
        assert!(execute(&node, request("chat:empty", "1")).await.is_ok());
    }

    #[tokio::test]
    async fn tags_reach_the_publication() {
        let node = node();
        let a = client(&node, "a", "alice");
        node.hub().subscribe("news", &a);
        let mut req = request("news", "1");
        req.tags.insert("k".into(), "v".into());
        execute(&node, req).await.unwrap();
        assert_eq!(
            a.outbox.queued_bytes(),
            frame_len(r#"{"push":{"channel":"news","pub":{"data":1,"tags":{"k":"v"}}}}"#)
        );
    }

    #[tokio::test]
    async fn errors() {
        let node = node();
        let e = execute(&node, request("", "1")).await.unwrap_err();
        assert_eq!(e.code, 107);
        assert!(e.message.contains("channel is required"), "{}", e.message);
        assert_eq!(
            execute(&node, request("nope:x", "1"))
                .await
                .unwrap_err()
                .code,
            102
        );
        let e = execute(
            &node,
            PublishRequest {
                channel: "news".into(),
                ..PublishRequest::default()
            },
        )
        .await
        .unwrap_err();
        assert_eq!(e.code, 107);
        assert!(e.message.contains("data is required"), "{}", e.message);
        let mut req = request("news", "1");
        req.b64data = "aGk".into();
        let e = execute(&node, req).await.unwrap_err();
        assert_eq!(e.code, 107);
        assert!(e.message.contains("b64data"), "{}", e.message);
    }

    #[tokio::test]
    async fn a_stale_version_is_suppressed_and_answered_with_the_stream_top() {
        let dir = tempfile::tempdir().unwrap();
        let node = node_with(|c| {
            c.data_dir = dir.path().into();
            let chat = &mut c.channel.namespaces[0].options;
            chat.history_size = 10;
            chat.history_ttl = std::time::Duration::from_secs(60);
        });
        let a = client(&node, "a", "alice");
        node.hub().subscribe("chat:x", &a);
        let versioned = |data: &str, version: u64| PublishRequest {
            version,
            version_epoch: "e".into(),
            ..request("chat:x", data)
        };
        let first = execute(&node, versioned("1", 2)).await.unwrap();
        assert_eq!(first.offset, 1);
        let stale = execute(&node, versioned("2", 2)).await.unwrap();
        assert_eq!(stale, first, "the stream's top, no offset used");
        let older = execute(&node, versioned("3", 1)).await.unwrap();
        assert_eq!(older, first);
        let next = execute(&node, versioned("4", 3)).await.unwrap();
        assert_eq!((next.offset, &next.epoch), (2, &first.epoch));
        let (pushes, _) = drain(&a);
        assert_eq!(
            pushes,
            [
                r#"{"push":{"channel":"chat:x","pub":{"data":1,"offset":1}}}"#,
                r#"{"push":{"channel":"chat:x","pub":{"data":4,"offset":2}}}"#
            ]
        );
    }

    #[tokio::test]
    async fn b64data_is_published_as_its_bytes_and_wins_over_data() {
        let dir = tempfile::tempdir().unwrap();
        let node = node_with(|c| {
            c.data_dir = dir.path().into();
            let chat = &mut c.channel.namespaces[0].options;
            chat.history_size = 10;
            chat.history_ttl = std::time::Duration::from_secs(60);
        });
        let mut req = request("chat:bin", r#"{"json":true}"#);
        req.b64data = "/wAKgA==".into();
        assert_eq!(execute(&node, req).await.unwrap().offset, 1);
        let options = node.history_options(node.history_namespace("chat:bin").unwrap());
        let filter = crate::engine::HistoryFilter {
            limit: -1,
            ..Default::default()
        };
        let history = node.history().expect("history is on");
        let page = history.read("chat:bin", filter, options).await.unwrap();
        let data: Vec<_> = page
            .publications
            .iter()
            .map(|p| p.data.as_bytes())
            .collect();
        assert_eq!(data, [[0xff_u8, 0, b'\n', 0x80].as_slice()]);
    }

    #[tokio::test]
    async fn result_shows_position_when_there_is_one() {
        let r = PublishResult {
            offset: 3,
            epoch: "xyz".into(),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"offset":3,"epoch":"xyz"}"#
        );
    }
}
