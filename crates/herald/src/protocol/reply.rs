//! Server → client: [`Reply`], the result types of §3, [`Push`] and its bodies (§4), and the
//! shared [`Publication`] / [`ClientInfo`] (§5).
//!
//! Serialization follows the omission rules of protocol.md §1: zero / false / empty fields are
//! left out, except `ClientInfo.user` / `client`, `PresenceResult.presence`,
//! `PresenceStatsResult.num_clients` / `num_users` and `HistoryResult.publications` / `epoch` /
//! `offset`, which are always emitted. Payload payloads are written verbatim minus raw `\n` bytes.
//! Field order follows the schema's field numbers, like the reference encoder.
//!
//! `Deserialize` is derived too (tolerant, unknown fields ignored) for tests, the load
//! generator and other Rust clients.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::{Error, Payload, is_default};

/// One server → client message: the answer to a command (`id` > 0 with `error` or one
/// result), an asynchronous [`Push`] (`id` 0), or — when empty — a server ping (`{}`).
///
/// Build it with [`Reply::result`], [`Reply::error`] or [`Reply::push`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Reply {
    /// Id of the command answered; 0 (omitted) for pushes and pings.
    #[serde(skip_serializing_if = "is_default")]
    pub id: u32,
    /// Set only on failed replies (then no result).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Error>,
    /// Asynchronous event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<Push>,
    /// Result of `connect`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect: Option<ConnectResult>,
    /// Result of `subscribe`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<SubscribeResult>,
    /// Result of `unsubscribe`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsubscribe: Option<UnsubscribeResult>,
    /// Result of `publish`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish: Option<PublishResult>,
    /// Result of `presence`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence: Option<PresenceResult>,
    /// Result of `presence_stats`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_stats: Option<PresenceStatsResult>,
    /// Result of `history`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryResult>,
    /// Result of `ping`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ping: Option<PingResult>,
    /// Result of `rpc`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpc: Option<RpcResult>,
    /// Result of `refresh`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh: Option<RefreshResult>,
    /// Result of `sub_refresh`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_refresh: Option<SubRefreshResult>,
}

/// A command result type that knows its [`Reply`] field; used by [`Reply::result`].
pub trait ReplyResult {
    /// Stores `self` in its field of `reply`.
    fn put_into(self, reply: &mut Reply);
}

macro_rules! reply_result {
    ($($ty:ty => $field:ident),* $(,)?) => {
        $(impl ReplyResult for $ty {
            fn put_into(self, reply: &mut Reply) {
                reply.$field = Some(self);
            }
        })*
    };
}

reply_result! {
    ConnectResult => connect,
    SubscribeResult => subscribe,
    UnsubscribeResult => unsubscribe,
    PublishResult => publish,
    PresenceResult => presence,
    PresenceStatsResult => presence_stats,
    HistoryResult => history,
    PingResult => ping,
    RpcResult => rpc,
    RefreshResult => refresh,
    SubRefreshResult => sub_refresh,
}

impl Reply {
    /// A successful reply to command `id`: `Reply::result(3, PresenceStatsResult { .. })`.
    pub fn result(id: u32, result: impl ReplyResult) -> Reply {
        let mut reply = Reply {
            id,
            ..Reply::default()
        };
        result.put_into(&mut reply);
        reply
    }

    /// A failed reply to command `id`.
    pub fn error(id: u32, error: Error) -> Reply {
        Reply {
            id,
            error: Some(error),
            ..Reply::default()
        }
    }

    /// An asynchronous push (`id` 0).
    pub fn push(push: Push) -> Reply {
        Reply {
            push: Some(push),
            ..Reply::default()
        }
    }

    /// The empty reply `{}`: a server ping.
    pub fn ping() -> Reply {
        Reply::default()
    }
}

/// `connect` result; also the body of the `connect` push on unidirectional transports.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectResult {
    /// Connection id (UUID).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub client: String,
    /// Server version string.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// The connection expires: the client must `refresh` within `ttl`.
    #[serde(skip_serializing_if = "is_default")]
    pub expires: bool,
    /// Seconds until expiry.
    #[serde(skip_serializing_if = "is_default")]
    pub ttl: u32,
    /// Custom data (from the connect proxy), raw JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Payload>,
    /// Server-side subscriptions by channel.
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub subs: HashMap<String, SubscribeResult>,
    /// Server ping interval, seconds.
    #[serde(skip_serializing_if = "is_default")]
    pub ping: u32,
    /// The client must answer pings with pongs.
    #[serde(skip_serializing_if = "is_default")]
    pub pong: bool,
    /// Session id (for `/emulation`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub session: String,
    /// Node id (for `/emulation`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// Server time, Unix milliseconds (only when enabled).
    #[serde(skip_serializing_if = "is_default")]
    pub time: i64,
    /// Connection features the server enabled (bitmask, same bits as the request's `flag`).
    #[serde(skip_serializing_if = "is_default")]
    pub flag: i64,
}

/// Body of the `connect` push (unidirectional transports): the same fields as
/// [`ConnectResult`].
pub type ConnectPush = ConnectResult;

/// `subscribe` result; also the value type of `ConnectResult.subs`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SubscribeResult {
    /// The subscription expires: the client must `sub_refresh` within `ttl`.
    #[serde(skip_serializing_if = "is_default")]
    pub expires: bool,
    /// Seconds until the subscription expires.
    #[serde(skip_serializing_if = "is_default")]
    pub ttl: u32,
    /// Recovery is on for this subscription.
    #[serde(skip_serializing_if = "is_default")]
    pub recoverable: bool,
    /// Current stream epoch.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub epoch: String,
    /// Missed publications when recovering, oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub publications: Vec<Publication>,
    /// Recovery succeeded with no gap.
    #[serde(skip_serializing_if = "is_default")]
    pub recovered: bool,
    /// Current stream top offset.
    #[serde(skip_serializing_if = "is_default")]
    pub offset: u64,
    /// Position tracking is on.
    #[serde(skip_serializing_if = "is_default")]
    pub positioned: bool,
    /// Custom data (subscribe proxy / token `data`), raw JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Payload>,
    /// The client asked to recover (`was_recovering && !recovered` ⇒ reload state).
    #[serde(skip_serializing_if = "is_default")]
    pub was_recovering: bool,
    /// Delta compression negotiated for this subscription.
    #[serde(skip_serializing_if = "is_default")]
    pub delta: bool,
    /// Optional numeric channel id used instead of the name in later pushes.
    #[serde(skip_serializing_if = "is_default")]
    pub id: i64,
}

/// `unsubscribe` result: `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnsubscribeResult {}

/// `publish` result: `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishResult {}

/// `ping` result: `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingResult {}

/// `presence` result: connected clients by client id (always emitted, `{}` when empty).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PresenceResult {
    /// Client id → client info.
    pub presence: HashMap<String, ClientInfo>,
}

/// `presence_stats` result (both counts always emitted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PresenceStatsResult {
    /// Number of subscribed connections.
    pub num_clients: u32,
    /// Number of distinct subscribed users.
    pub num_users: u32,
}

/// `history` result (all fields always emitted).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct HistoryResult {
    /// Publications of the requested page.
    pub publications: Vec<Publication>,
    /// Stream epoch.
    pub epoch: String,
    /// Top offset of the stream.
    pub offset: u64,
}

/// `rpc` result.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RpcResult {
    /// Response payload, raw JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Payload>,
}

/// `refresh` result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RefreshResult {
    /// Connection id.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub client: String,
    /// Server version.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// The connection still expires.
    #[serde(skip_serializing_if = "is_default")]
    pub expires: bool,
    /// Seconds until expiry.
    #[serde(skip_serializing_if = "is_default")]
    pub ttl: u32,
}

/// `sub_refresh` result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubRefreshResult {
    /// The subscription still expires.
    #[serde(skip_serializing_if = "is_default")]
    pub expires: bool,
    /// Seconds until expiry.
    #[serde(skip_serializing_if = "is_default")]
    pub ttl: u32,
}

/// An asynchronous server → client event about `channel` (inside `Reply.push`, or bare on
/// unidirectional transports). Exactly one body is set; build it with the constructors.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Push {
    /// Optional numeric channel id (replaces `channel` when negotiated).
    #[serde(skip_serializing_if = "is_default")]
    pub id: i64,
    /// Channel the event is about (empty for connection-level pushes).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub channel: String,
    /// `pub`: a publication in the channel.
    #[serde(rename = "pub", skip_serializing_if = "Option::is_none")]
    pub publication: Option<Publication>,
    /// `join`: someone subscribed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join: Option<JoinPush>,
    /// `leave`: someone unsubscribed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leave: Option<LeavePush>,
    /// `unsubscribe`: the server removed this client from the channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsubscribe: Option<UnsubscribePush>,
    /// `message`: an asynchronous message to this connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<MessagePush>,
    /// `subscribe`: a server-side subscription was added.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<SubscribePush>,
    /// `connect`: first push on unidirectional transports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect: Option<ConnectPush>,
    /// `disconnect`: unidirectional transports only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disconnect: Option<DisconnectPush>,
    /// `refresh`: the connection was refreshed (unidirectional transports).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh: Option<RefreshPush>,
}

impl Push {
    fn on(channel: impl Into<String>) -> Push {
        Push {
            channel: channel.into(),
            ..Push::default()
        }
    }

    /// A publication in `channel`.
    pub fn publication(channel: impl Into<String>, publication: Publication) -> Push {
        Push {
            publication: Some(publication),
            ..Push::on(channel)
        }
    }

    /// `info` subscribed to `channel`.
    pub fn join(channel: impl Into<String>, info: ClientInfo) -> Push {
        Push {
            join: Some(JoinPush { info }),
            ..Push::on(channel)
        }
    }

    /// `info` unsubscribed from `channel`.
    pub fn leave(channel: impl Into<String>, info: ClientInfo) -> Push {
        Push {
            leave: Some(LeavePush { info }),
            ..Push::on(channel)
        }
    }

    /// The server removed this client from `channel`.
    pub fn unsubscribe(channel: impl Into<String>, unsubscribe: super::Unsubscribe) -> Push {
        Push {
            unsubscribe: Some(unsubscribe.to_push()),
            ..Push::on(channel)
        }
    }

    /// An asynchronous message to this connection (no channel).
    pub fn message(data: Payload) -> Push {
        Push {
            message: Some(MessagePush { data: Some(data) }),
            ..Push::default()
        }
    }

    /// A server-side subscription to `channel` was added.
    pub fn subscribe(channel: impl Into<String>, subscribe: SubscribePush) -> Push {
        Push {
            subscribe: Some(subscribe),
            ..Push::on(channel)
        }
    }

    /// First push on unidirectional transports.
    pub fn connect(connect: ConnectPush) -> Push {
        Push {
            connect: Some(connect),
            ..Push::default()
        }
    }

    /// Disconnect notice on unidirectional transports.
    pub fn disconnect(disconnect: super::Disconnect) -> Push {
        Push {
            disconnect: Some(disconnect.to_push()),
            ..Push::default()
        }
    }

    /// Connection refreshed (unidirectional transports).
    pub fn refresh(refresh: RefreshPush) -> Push {
        Push {
            refresh: Some(refresh),
            ..Push::default()
        }
    }
}

/// Who a client is: in presence, join/leave pushes and on client-side publications.
/// `user` and `client` are always emitted (`user` may be `""` for anonymous).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientInfo {
    /// User id (may be empty).
    pub user: String,
    /// Connection id.
    pub client: String,
    /// Connection info (connection token `info` / proxy), raw JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conn_info: Option<Payload>,
    /// Channel info (subscription token `info` / proxy), raw JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chan_info: Option<Payload>,
}

/// One message in a channel, as sent in `pub` pushes, recovery and history.
///
/// The broker-internal `prev_data` field of the schema is deliberately absent.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Publication {
    /// Payload, raw JSON (or a Fossil delta when `delta`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Payload>,
    /// Publisher (client-side publishes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<ClientInfo>,
    /// Stream offset (epoch is in the subscribe / history result).
    #[serde(skip_serializing_if = "is_default")]
    pub offset: u64,
    /// Publication tags.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// `data` is a delta against the previous publication.
    #[serde(skip_serializing_if = "is_default")]
    pub delta: bool,
    /// Publish time, Unix milliseconds.
    #[serde(skip_serializing_if = "is_default")]
    pub time: i64,
    /// Concrete channel (wildcard subscriptions).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub channel: String,
    /// Key (map extension).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub key: String,
    /// Removal of `key` (map extension).
    #[serde(skip_serializing_if = "is_default")]
    pub removed: bool,
    /// Ordering score (map extension).
    #[serde(skip_serializing_if = "is_default")]
    pub score: i64,
    /// Epoch (sent with the first publication when the subscribe reply had none).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub epoch: String,
    /// Version (map extension).
    #[serde(skip_serializing_if = "is_default")]
    pub version: u64,
}

/// Body of a `join` push.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct JoinPush {
    /// The client that subscribed.
    pub info: ClientInfo,
}

/// Body of a `leave` push.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LeavePush {
    /// The client that unsubscribed.
    pub info: ClientInfo,
}

/// Body of an `unsubscribe` push; build it from [`super::Unsubscribe`] codes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UnsubscribePush {
    /// Unsubscribe code (≥ 2500 ⇒ the SDK resubscribes).
    #[serde(skip_serializing_if = "is_default")]
    pub code: u32,
    /// Human-readable reason.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// Body of a `message` push.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MessagePush {
    /// Payload, raw JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Payload>,
}

/// Body of a `subscribe` push (server-side subscription added after connect).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SubscribePush {
    /// Recovery is on.
    #[serde(skip_serializing_if = "is_default")]
    pub recoverable: bool,
    /// Stream epoch.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub epoch: String,
    /// Stream top offset.
    #[serde(skip_serializing_if = "is_default")]
    pub offset: u64,
    /// Position tracking is on.
    #[serde(skip_serializing_if = "is_default")]
    pub positioned: bool,
    /// Custom data, raw JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Payload>,
}

/// Body of a `disconnect` push (unidirectional transports); build it with
/// [`super::Disconnect::to_push`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DisconnectPush {
    /// Disconnect code.
    #[serde(skip_serializing_if = "is_default")]
    pub code: u32,
    /// Human-readable reason.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Whether the client should reconnect.
    #[serde(skip_serializing_if = "is_default")]
    pub reconnect: bool,
}

/// Body of a `refresh` push (unidirectional transports).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RefreshPush {
    /// The connection still expires.
    #[serde(skip_serializing_if = "is_default")]
    pub expires: bool,
    /// Seconds until expiry.
    #[serde(skip_serializing_if = "is_default")]
    pub ttl: u32,
}
