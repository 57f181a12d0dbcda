//! `subscribe`: the backend subscribes a user's live connections to a channel (a server-side
//! subscription). Each connection gets a `subscribe` push, so its SDK knows about the
//! subscription, and from then on the channel's publications.
//!
//! `POST /api/subscribe {"user": "42", "channel": "news"}` → `{"result": {}}`. The connections
//! live now are subscribed, on whatever node they are: the request is checked here and sent to
//! every node as a control command ([`ControlCommand::Subscribe`]), and each node subscribes its
//! own connections ([`apply`]). A user with none is not an error.
//!
//! In a namespace with history, the subscription is positioned and recoverable as the
//! namespace's (or the `override`'s) `force_positioning` / `force_recovery` say, as in
//! Centrifugo: the `subscribe` push carries the stream's `epoch` and `offset`. With
//! `recover_since` (and recovery on), the connections get what was published after that
//! position: the push carries that position and the missed publications follow it as
//! ordinary publication pushes, before any newer one, so the SDK's position moves through
//! them. When they cannot all be given (trimmed from the history, another epoch, more than
//! `client.recovery_max_publication_limit` or than half of `client.queue_max_size`), none
//! is, and the push carries the stream's top, as a client subscribe answered
//! `recovered: false` would. In a namespace with `force_recovery_mode: "cache"` the
//! connection gets the channel's latest publication instead, as a client would.
//!
//! The subscription is made by the node's subscribe operation
//! ([`Node::subscribe_client`]), the one a client's own subscribe uses: the two cannot
//! position or recover differently. A node that cannot read the stream's position logs it
//! (the API has answered by then: the request was valid).

use std::sync::Arc;

use serde::Deserialize;

use super::{binary_payload, check_channel, not_available, push_message, target_clients};
use crate::auth::SubscribeOverride;
use crate::engine::{ControlCommand, ServerSubscribe};
use crate::hub::{ClientHandle, Selection, SubFlags};
use crate::node::{Node, Positioning};
use crate::protocol::{self, ClientInfo, Payload, Push, SubscribePush, nullable};

/// Request of `subscribe`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SubscribeRequest {
    /// Channel to subscribe to. Required.
    #[serde(deserialize_with = "nullable")]
    pub channel: String,
    /// User whose connections are subscribed. Required unless `client` is given.
    #[serde(deserialize_with = "nullable")]
    pub user: String,
    /// Only this connection (which must belong to `user`).
    #[serde(deserialize_with = "nullable")]
    pub client: String,
    /// Only the connection with this session id (the connect reply's `session`).
    #[serde(deserialize_with = "nullable")]
    pub session: String,
    /// Subscription expiry: refused with 108 when set (not supported yet).
    #[serde(deserialize_with = "nullable")]
    pub expire_at: i64,
    /// Channel info for presence and join/leave pushes (`chan_info`).
    pub info: Option<Payload>,
    /// `info` as standard base64 bytes (wins over `info`); not base64 → 107.
    #[serde(deserialize_with = "nullable")]
    pub b64info: String,
    /// Data sent to the connections in the `subscribe` push.
    pub data: Option<Payload>,
    /// `data` as standard base64 bytes (wins over `data`); not base64 → 107.
    #[serde(deserialize_with = "nullable")]
    pub b64data: String,
    /// Position to recover from: the connections get the publications after it (when the
    /// subscription is recoverable; see the module documentation).
    pub recover_since: Option<protocol::StreamPosition>,
    /// Channel option overrides for these subscriptions: `presence`, `join_leave`,
    /// `force_push_join_leave`, `force_recovery` and `force_positioning`.
    #[serde(rename = "override")]
    pub override_: Option<SubscribeOverride>,
}

/// Result of `subscribe`: always `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SubscribeResult {}

/// Checks the request and has every node subscribe its targeted connections ([`apply`]),
/// this one included, through the engine's controller.
///
/// Errors: 107 for a missing user, a missing or malformed channel, or binary fields; 102 for
/// an unknown namespace; 108 for `expire_at`; 100 when the command cannot reach the nodes.
pub async fn execute(
    node: &Node,
    mut req: SubscribeRequest,
) -> Result<SubscribeResult, protocol::Error> {
    check_channel(node, &req.channel)?;
    // Binary info/data win over the JSON ones, as in Centrifugo.
    if let Some(info) = binary_payload("b64info", &req.b64info)? {
        req.info = Some(info);
    }
    if let Some(data) = binary_payload("b64data", &req.b64data)? {
        req.data = Some(data);
    }
    if req.expire_at > 0 {
        return Err(not_available(
            "subscription expiry (expire_at) is not supported yet",
        ));
    }
    let command = ServerSubscribe {
        target: super::target(req.user, req.client, req.session)?,
        channel: req.channel,
        info: req.info,
        data: req.data,
        recover_since: req.recover_since,
        override_: req.override_,
    };
    super::send(node, ControlCommand::Subscribe(Box::new(command))).await?;
    Ok(SubscribeResult {})
}

/// Subscribes this node's connections that `req` targets and queues a `subscribe` push to
/// each one that was not subscribed yet, through the node's subscribe operation (the one a
/// client's own subscribe uses), so the subscription is positioned and recovered as the
/// namespace says.
///
/// Errors: the channel's (a node configured without its namespace), or the engine's when the
/// stream's position cannot be read (the connections subscribed before that one stay
/// subscribed).
pub async fn apply(node: &Node, req: &ServerSubscribe) -> Result<(), protocol::Error> {
    let target = &req.target;
    let targets = target_clients(node, &target.user, &target.client, &target.session)?;
    if targets.is_empty() {
        return Ok(());
    }
    // The connections could not ask for join/leave pushes: they get them when the namespace
    // sends them.
    let (_, namespace) = node.resolve_channel(&req.channel)?;
    let flags = SubFlags::new(namespace, req.override_.as_ref(), true);
    let positioning = Positioning::for_server(
        namespace,
        req.override_.as_ref(),
        req.recover_since.as_ref(),
    );
    for client in targets {
        if !client.is_subscribed(&req.channel) {
            subscribe_one(node, req, client, flags, &positioning).await?;
        }
    }
    Ok(())
}

/// Subscribes one connection: publications are held back while its position is read (and
/// what it missed, when recovering), then it gets the `subscribe` push, the missed
/// publications as publication pushes, and what was held back after them.
async fn subscribe_one(
    node: &Node,
    req: &ServerSubscribe,
    client: Arc<ClientHandle>,
    flags: SubFlags,
    positioning: &Positioning,
) -> Result<(), protocol::Error> {
    let channel = req.channel.as_str();
    let mut result = protocol::SubscribeResult::default();
    // The missed publications go out as pushes rather than in a reply, but they must fit the
    // connection's queue as a client's own recovery must: the same room.
    let mut room = node.reply_room(client.outbox.queued_bytes());
    let after = match node
        .subscribe_client(
            &client,
            channel,
            flags,
            Selection::default(),
            positioning,
            &mut result,
            &mut room,
        )
        .await
    {
        Ok(after) => after,
        // Subscribed meanwhile: nothing to do for this connection.
        Err(error) if error.code == protocol::Error::ALREADY_SUBSCRIBED.code => return Ok(()),
        Err(error) => return Err(error),
    };
    // The push names the position the publications after it start from (the SDK's position
    // then moves through them): the one recovered from when there are any, else the top.
    let offset = result
        .publications
        .first()
        .map_or(result.offset, |first| first.offset.saturating_sub(1));
    let subscribe = SubscribePush {
        recoverable: result.recoverable,
        positioned: result.positioned,
        epoch: result.epoch,
        offset,
        data: req.data.clone(),
    };
    let mut messages = vec![push_message(
        client.encoding,
        &Push::subscribe(channel, subscribe),
    )?];
    for publication in result.publications {
        messages.push(push_message(
            client.encoding,
            &Push::publication(channel, publication),
        )?);
    }
    // The push first, then the missed publications, then (on completion) the newer ones. A
    // closed or overflowing queue means the connection is going away: leave it alone.
    let queued = messages
        .into_iter()
        .all(|message| client.outbox.push(message).is_ok());
    if !queued {
        node.hub().unsubscribe(channel, &client);
        return Ok(());
    }
    let info = ClientInfo {
        chan_info: req.info.clone(),
        ..client.info()
    };
    node.complete_subscription(channel, &client, after, 0, info, flags)
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    fn request(user: &str, channel: &str) -> SubscribeRequest {
        SubscribeRequest {
            user: user.into(),
            channel: channel.into(),
            ..SubscribeRequest::default()
        }
    }

    #[tokio::test]
    async fn subscribes_every_connection_of_the_user() {
        let node = node();
        let a1 = client(&node, "a1", "alice");
        let a2 = client(&node, "a2", "alice");
        let b = client(&node, "b", "bob");
        execute(&node, request("alice", "news")).await.unwrap();
        let push = frame_len(r#"{"push":{"channel":"news","subscribe":{}}}"#);
        assert_eq!(a1.outbox.queued_bytes(), push);
        assert_eq!(a2.outbox.queued_bytes(), push);
        assert_eq!(b.outbox.queued_bytes(), 0);
        assert!(a1.is_subscribed("news") && a2.is_subscribed("news"));
        assert_eq!(node.hub().num_subscribers("news"), 2);
        // Again: nothing new is queued.
        execute(&node, request("alice", "news")).await.unwrap();
        assert_eq!(a1.outbox.queued_bytes(), push);
        // Publications now reach them, after the subscribe push.
        node.publish("news", raw("1"), Default::default())
            .await
            .unwrap();
        assert_eq!(
            drain(&a1).0,
            [
                r#"{"push":{"channel":"news","subscribe":{}}}"#,
                r#"{"push":{"channel":"news","pub":{"data":1}}}"#
            ]
        );
    }

    #[tokio::test]
    async fn one_connection_with_data() {
        let node = node();
        let a1 = client(&node, "a1", "alice");
        let a2 = client(&node, "a2", "alice");
        let mut req = request("alice", "chat:1");
        req.client = "a2".into();
        req.data = Some(raw("{\"welcome\":\ntrue}"));
        req.info = Some(raw(r#"{"role":"admin"}"#));
        execute(&node, req).await.unwrap();
        assert_eq!(a1.outbox.queued_bytes(), 0);
        assert_eq!(
            a2.outbox.queued_bytes(),
            frame_len(r#"{"push":{"channel":"chat:1","subscribe":{"data":{"welcome":true}}}}"#)
        );
        assert!(a2.is_subscribed("chat:1") && !a1.is_subscribed("chat:1"));
        assert_eq!(
            drain(&a2).0,
            [r#"{"push":{"channel":"chat:1","subscribe":{"data":{"welcome":true}}}}"#]
        );
    }

    #[tokio::test]
    async fn no_live_connection_is_fine() {
        let node = node();
        assert_eq!(
            execute(&node, request("ghost", "news")).await,
            Ok(SubscribeResult {})
        );
        assert_eq!(node.hub().num_channels(), 0);
    }

    #[tokio::test]
    async fn closed_connections_are_skipped() {
        let node = node();
        let a = client(&node, "a", "alice");
        a.outbox.close(crate::ws::CloseCode(3001), "bye");
        execute(&node, request("alice", "news")).await.unwrap();
        assert!(!a.is_subscribed("news"));
    }

    #[tokio::test]
    async fn errors() {
        let node = node();
        let _a = client(&node, "a", "alice");
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
        let mut req = request("alice", "news");
        req.b64data = "AA=".into();
        assert_eq!(execute(&node, req).await.unwrap_err().code, 107);
        let mut req = request("alice", "news");
        req.b64info = "*".into();
        assert_eq!(execute(&node, req).await.unwrap_err().code, 107);
        let mut req = request("alice", "news");
        req.expire_at = 1;
        assert_eq!(execute(&node, req).await.unwrap_err().code, 108);
        // A session that names no connection subscribes nobody, and is no error.
        let mut req = request("alice", "news");
        req.session = "s".into();
        assert_eq!(execute(&node, req).await, Ok(SubscribeResult {}));
        assert_eq!(node.hub().num_subscriptions(), 0);
    }

    #[tokio::test]
    async fn the_override_turns_presence_on_for_these_subscriptions() {
        // `chat` keeps no presence; the override asks for it.
        let node = node();
        let alice = client(&node, "a1", "alice");
        let bob = client(&node, "b1", "bob");
        execute(&node, request("bob", "chat:room")).await.unwrap();
        let mut req = request("alice", "chat:room");
        req.override_ = Some(SubscribeOverride {
            presence: Some(crate::auth::BoolValue { value: true }),
            ..SubscribeOverride::default()
        });
        execute(&node, req).await.unwrap();
        assert!(alice.is_subscribed("chat:room") && bob.is_subscribed("chat:room"));
        let present = node.presence().presence("chat:room").await.unwrap();
        assert_eq!(
            present.keys().map(String::as_str).collect::<Vec<_>>(),
            ["a1"],
            "only the overridden subscription is in presence"
        );
    }

    #[tokio::test]
    async fn decodes_cent_requests() {
        let req: SubscribeRequest = super::super::decode(
            br#"{"user":"u","channel":"c","recover_since":{"offset":1,"epoch":"e"},
                 "override":{"presence":{"value":true}},"info":{"a":1}}"#,
        )
        .unwrap();
        assert_eq!((req.user.as_str(), req.channel.as_str()), ("u", "c"));
        assert!(req.recover_since.is_some() && req.override_.is_some());
    }
}
