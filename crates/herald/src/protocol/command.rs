//! Client → server: [`Command`] and its request types (protocol.md §2, §3), and
//! [`decode_commands`] for newline-batched JSON frames (§1).
//!
//! Decoding is tolerant the way the reference server is: unknown fields are ignored (newer SDKs
//! send extra fields), `null` reads as the field's default, and payloads (`data`) keep the
//! application JSON verbatim as a [`Payload`](super::Payload).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{Payload, is_default, nullable, object};

/// One client → server message. Exactly one request field is expected; the server handles the
/// first present one in the order of [`Command::method`].
///
/// `id` is chosen by the client (> 0) and echoed in the reply; `id == 0` without `send` is a pong
/// ([`Command::is_pong`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Command {
    /// Client-chosen id, echoed in the reply.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "is_default")]
    pub id: u32,
    /// `connect` request.
    #[serde(deserialize_with = "object", skip_serializing_if = "Option::is_none")]
    pub connect: Option<ConnectRequest>,
    /// `subscribe` request.
    #[serde(deserialize_with = "object", skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<SubscribeRequest>,
    /// `unsubscribe` request.
    #[serde(deserialize_with = "object", skip_serializing_if = "Option::is_none")]
    pub unsubscribe: Option<UnsubscribeRequest>,
    /// `publish` request.
    #[serde(deserialize_with = "object", skip_serializing_if = "Option::is_none")]
    pub publish: Option<PublishRequest>,
    /// `presence` request.
    #[serde(deserialize_with = "object", skip_serializing_if = "Option::is_none")]
    pub presence: Option<PresenceRequest>,
    /// `presence_stats` request.
    #[serde(deserialize_with = "object", skip_serializing_if = "Option::is_none")]
    pub presence_stats: Option<PresenceStatsRequest>,
    /// `history` request.
    #[serde(deserialize_with = "object", skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryRequest>,
    /// `ping` request (defined by the schema, not used by v2 SDKs).
    #[serde(deserialize_with = "object", skip_serializing_if = "Option::is_none")]
    pub ping: Option<PingRequest>,
    /// `send` request: fire-and-forget, no reply.
    #[serde(deserialize_with = "object", skip_serializing_if = "Option::is_none")]
    pub send: Option<SendRequest>,
    /// `rpc` request.
    #[serde(deserialize_with = "object", skip_serializing_if = "Option::is_none")]
    pub rpc: Option<RpcRequest>,
    /// `refresh` request (connection token renewal).
    #[serde(deserialize_with = "object", skip_serializing_if = "Option::is_none")]
    pub refresh: Option<RefreshRequest>,
    /// `sub_refresh` request (subscription token renewal).
    #[serde(deserialize_with = "object", skip_serializing_if = "Option::is_none")]
    pub sub_refresh: Option<SubRefreshRequest>,
}

/// Which request a [`Command`] carries, chosen by [`Command::method`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `connect`
    Connect,
    /// `ping`
    Ping,
    /// `subscribe`
    Subscribe,
    /// `unsubscribe`
    Unsubscribe,
    /// `publish`
    Publish,
    /// `presence`
    Presence,
    /// `presence_stats`
    PresenceStats,
    /// `history`
    History,
    /// `rpc`
    Rpc,
    /// `send`
    Send,
    /// `refresh`
    Refresh,
    /// `sub_refresh`
    SubRefresh,
    /// No request field present (an empty command: a pong when `id == 0`).
    None,
}

impl Method {
    /// The protocol field name (`"presence_stats"`…), `"none"` for [`Method::None`]; handy as a
    /// metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Connect => "connect",
            Method::Ping => "ping",
            Method::Subscribe => "subscribe",
            Method::Unsubscribe => "unsubscribe",
            Method::Publish => "publish",
            Method::Presence => "presence",
            Method::PresenceStats => "presence_stats",
            Method::History => "history",
            Method::Rpc => "rpc",
            Method::Send => "send",
            Method::Refresh => "refresh",
            Method::SubRefresh => "sub_refresh",
            Method::None => "none",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Command {
    /// The request this command carries: the first present field in the fixed order connect,
    /// ping, subscribe, unsubscribe, publish, presence, presence_stats, history, rpc, send,
    /// refresh, sub_refresh; [`Method::None`] when none is present.
    pub fn method(&self) -> Method {
        if self.connect.is_some() {
            Method::Connect
        } else if self.ping.is_some() {
            Method::Ping
        } else if self.subscribe.is_some() {
            Method::Subscribe
        } else if self.unsubscribe.is_some() {
            Method::Unsubscribe
        } else if self.publish.is_some() {
            Method::Publish
        } else if self.presence.is_some() {
            Method::Presence
        } else if self.presence_stats.is_some() {
            Method::PresenceStats
        } else if self.history.is_some() {
            Method::History
        } else if self.rpc.is_some() {
            Method::Rpc
        } else if self.send.is_some() {
            Method::Send
        } else if self.refresh.is_some() {
            Method::Refresh
        } else if self.sub_refresh.is_some() {
            Method::SubRefresh
        } else {
            Method::None
        }
    }

    /// Whether the reference server treats this command as a pong: `id == 0` and no `send`
    /// (centrifuge `isPong`). Any other field present in such a command is ignored there.
    pub fn is_pong(&self) -> bool {
        self.id == 0 && self.send.is_none()
    }
}

/// `connect`: authenticate the connection (token or proxy) and start the session.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectRequest {
    /// Connection JWT; empty for anonymous / connect-proxy connections.
    #[serde(
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub token: String,
    /// Custom payload (for the connect proxy), raw JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Payload>,
    /// Positions to recover for server-side subscriptions, by channel.
    #[serde(
        deserialize_with = "nullable",
        skip_serializing_if = "HashMap::is_empty"
    )]
    pub subs: HashMap<String, SubscribeRequest>,
    /// App/SDK name (≤ 16 chars by convention).
    #[serde(
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    /// App version (≤ 64 chars by convention).
    #[serde(
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub version: String,
    /// Header emulation for proxies.
    #[serde(
        deserialize_with = "nullable",
        skip_serializing_if = "HashMap::is_empty"
    )]
    pub headers: HashMap<String, String>,
    /// Connection feature bitmask the client supports (newer SDKs).
    #[serde(deserialize_with = "nullable", skip_serializing_if = "is_default")]
    pub flag: i64,
    /// Id of a compression dictionary the client holds (newer SDKs).
    #[serde(
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub dict: String,
    /// Application context hint (newer SDKs; untrusted).
    #[serde(
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub profile: String,
}

/// `subscribe` (also the value type of `ConnectRequest.subs`, where only the position fields
/// are used).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SubscribeRequest {
    /// Channel name (required).
    #[serde(
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub channel: String,
    /// Subscription JWT (private channels).
    #[serde(
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub token: String,
    /// Client asks to recover from `epoch` + `offset`.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "is_default")]
    pub recover: bool,
    /// Last known stream epoch.
    #[serde(
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub epoch: String,
    /// Last known stream offset.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "is_default")]
    pub offset: u64,
    /// Custom payload for the subscribe proxy, raw JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Payload>,
    /// Client asks for position tracking.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "is_default")]
    pub positioned: bool,
    /// Client asks for recovery.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "is_default")]
    pub recoverable: bool,
    /// Client wants join/leave pushes.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "is_default")]
    pub join_leave: bool,
    /// Requested delta type (e.g. `"fossil"`).
    #[serde(
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub delta: String,
    /// Server-side publication tags filter.
    #[serde(deserialize_with = "object", skip_serializing_if = "Option::is_none")]
    pub tf: Option<FilterNode>,
    /// Subscription feature bits (newer SDKs).
    #[serde(deserialize_with = "nullable", skip_serializing_if = "is_default")]
    pub flag: i64,
    /// Subscription type: 0 = plain stream; others are map / shared-poll extensions.
    #[serde(
        rename = "type",
        deserialize_with = "nullable",
        skip_serializing_if = "is_default"
    )]
    pub kind: i32,
}

/// A server-side filter on publication tags (`SubscribeRequest.tf`): a leaf comparison when
/// `op` is empty, otherwise `and` / `or` / `not` over `nodes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FilterNode {
    /// `""` (leaf), `"and"`, `"or"` or `"not"`.
    #[serde(
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub op: String,
    /// Tag key (leaf).
    #[serde(
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub key: String,
    /// Comparison (leaf): eq, neq, in, nin, ex, nex, sw, ew, ct, lt, lte, gt, gte.
    #[serde(
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub cmp: String,
    /// Single comparison value.
    #[serde(
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub val: String,
    /// Values for `in` / `nin`.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub vals: Vec<String>,
    /// Children of `and` / `or` / `not`.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<FilterNode>,
}

/// `unsubscribe`: leave a channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UnsubscribeRequest {
    /// Channel name.
    #[serde(
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub channel: String,
}

/// `publish`: client-side publish into a channel.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PublishRequest {
    /// Channel name (required).
    #[serde(
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub channel: String,
    /// Payload, raw JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Payload>,
    /// 0 = stream publish; 1 = map publish (newer extension).
    #[serde(
        rename = "type",
        deserialize_with = "nullable",
        skip_serializing_if = "is_default"
    )]
    pub kind: i32,
    /// Map publish key (newer extension).
    #[serde(
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub key: String,
    /// Map publish: remove `key` (newer extension).
    #[serde(deserialize_with = "nullable", skip_serializing_if = "is_default")]
    pub removed: bool,
}

/// `presence`: who is subscribed to a channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PresenceRequest {
    /// Channel name.
    #[serde(
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub channel: String,
}

/// `presence_stats`: how many clients / users are subscribed to a channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PresenceStatsRequest {
    /// Channel name.
    #[serde(
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub channel: String,
}

/// A position in a channel stream: `offset` within the stream incarnation `epoch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamPosition {
    /// Offset of the publication (1, 2, 3… per channel).
    #[serde(deserialize_with = "nullable", skip_serializing_if = "is_default")]
    pub offset: u64,
    /// Stream incarnation id.
    #[serde(
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub epoch: String,
}

/// `history`: read a channel's stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HistoryRequest {
    /// Channel name.
    #[serde(
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub channel: String,
    /// 0 → only the current position; −1 → as many as allowed; N → at most N.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "is_default")]
    pub limit: i32,
    /// Page from this position (exclusive).
    #[serde(deserialize_with = "object", skip_serializing_if = "Option::is_none")]
    pub since: Option<StreamPosition>,
    /// Page backwards (newest first).
    #[serde(deserialize_with = "nullable", skip_serializing_if = "is_default")]
    pub reverse: bool,
}

/// `ping`: defined by the schema (`{}`), answered with an error by v2 servers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingRequest {}

/// `send`: an asynchronous message to the server; no reply.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SendRequest {
    /// Payload, raw JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Payload>,
}

/// `rpc`: a request/response call to the application (RPC proxy).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RpcRequest {
    /// Payload, raw JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Payload>,
    /// RPC method name.
    #[serde(
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub method: String,
}

/// `refresh`: renew the connection with a fresh connection token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RefreshRequest {
    /// New connection JWT.
    #[serde(
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub token: String,
}

/// `sub_refresh`: renew a subscription with a fresh subscription token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubRefreshRequest {
    /// Channel name.
    #[serde(
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub channel: String,
    /// New subscription JWT.
    #[serde(
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub token: String,
    /// 0 = token refresh; 1 / 2 = shared-poll track / untrack (newer extension).
    #[serde(
        rename = "type",
        deserialize_with = "nullable",
        skip_serializing_if = "is_default"
    )]
    pub kind: i32,
}

/// Why a command frame could not be decoded. Any of them means "close with 3501 bad request".
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The frame has no bytes at all.
    #[error("empty frame")]
    EmptyFrame,
    /// An empty line between commands (two `\n` in a row, or two trailing `\n`).
    #[error("empty command at position {index}")]
    EmptyCommand {
        /// Zero-based position of the command in the frame.
        index: usize,
    },
    /// A command is not valid JSON or not a valid Command object.
    #[error("command at position {index}: {source}")]
    Json {
        /// Zero-based position of the command in the frame.
        index: usize,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A Protobuf command's varint length prefix is malformed or longer than the rest of
    /// the frame.
    #[error("command at position {index}: bad length prefix")]
    Length {
        /// Zero-based position of the command in the frame.
        index: usize,
    },
    /// A Protobuf command is not a valid Command message.
    #[error("command at position {index}: {source}")]
    Protobuf {
        /// Zero-based position of the command in the frame.
        index: usize,
        /// The Protobuf error.
        #[source]
        source: prost::DecodeError,
    },
}

/// Decodes one JSON command (a JSON object; arrays are rejected, as by the reference decoder).
pub fn decode_command(json: &[u8]) -> Result<Command, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let command = super::Object::<Command>::deserialize(&mut deserializer)?.0;
    deserializer.end()?;
    Ok(command)
}

/// Decodes a newline-batched JSON frame: commands separated by a single `\n`, with at most one
/// trailing `\n` (protocol.md §1).
///
/// Yields the commands in order; the first error is yielded once and ends the iteration (the
/// caller closes the connection with 3501; commands before it were well-formed). An empty frame
/// yields [`DecodeError::EmptyFrame`].
pub fn decode_commands(frame: &[u8]) -> Commands<'_> {
    Commands::new(frame)
}

/// Iterator over the commands of one frame; see [`decode_commands`].
#[derive(Debug, Clone)]
pub struct Commands<'a> {
    /// Bytes not yet decoded; `None` once finished (after the last command or an error).
    rest: Option<&'a [u8]>,
    index: usize,
}

impl<'a> Commands<'a> {
    fn new(frame: &'a [u8]) -> Commands<'a> {
        // At most one trailing `\n` is part of the framing; a second one leaves an empty line.
        let body = frame.strip_suffix(b"\n").unwrap_or(frame);
        Commands {
            rest: Some(body),
            index: 0,
        }
    }
}

impl Iterator for Commands<'_> {
    type Item = Result<Command, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest?;
        let index = self.index;
        self.index += 1;
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(pos) => (&rest[..pos], Some(&rest[pos + 1..])),
            None => (rest, None),
        };
        self.rest = next;
        if line.is_empty() {
            self.rest = None;
            return Some(Err(if index == 0 && next.is_none() {
                DecodeError::EmptyFrame
            } else {
                DecodeError::EmptyCommand { index }
            }));
        }
        match decode_command(line) {
            Ok(command) => Some(Ok(command)),
            Err(source) => {
                self.rest = None;
                Some(Err(DecodeError::Json { index, source }))
            }
        }
    }
}

impl std::iter::FusedIterator for Commands<'_> {}
