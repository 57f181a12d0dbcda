//! The JSON that Herald's HTTP proxies send and expect: Centrifugo v6's proxy format
//! (docs/protocol.md §11), so a backend written for Centrifugo's proxies answers Herald.
//!
//! Every request carries the connection's `client`, `transport`, `protocol` and `encoding`
//! ([`Base`]); payloads go as raw JSON in `data` (or base64 in `b64data` with
//! `binary_encoding`, or when the client's bytes are not JSON). Every response is one of
//! `result`, `error` (`code`, `message`, `temporary`) or `disconnect` (`code`, `reason`).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::auth::{SubscribeOptions, SubscribeOverride};
use crate::protocol::Payload;

/// What every request says of the connection.
#[derive(Serialize)]
pub struct Base<'a> {
    /// Connection id; empty in a connect request (not assigned yet).
    #[serde(skip_serializing_if = "str::is_empty")]
    pub client: &'a str,
    /// The transport's name (`websocket`, `http_stream`, `sse`…).
    pub transport: &'a str,
    /// The client's protocol: `json` or `protobuf`.
    pub protocol: &'a str,
    /// How payloads are sent: `json` (`data`) or `binary` (`b64data`).
    pub encoding: &'a str,
}

/// A payload as a request carries it: raw JSON in `data`, or base64 in `b64data`.
#[derive(Serialize, Default)]
pub struct Data<'a> {
    /// The payload, when it is JSON and the proxy does not ask for base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<&'a RawValue>,
    /// The payload in base64 otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b64data: Option<String>,
}

impl<'a> Data<'a> {
    /// `payload` as raw JSON unless `binary` or it is not JSON (a Protobuf client's bytes).
    pub fn of(payload: Option<&'a Payload>, binary: bool) -> Data<'a> {
        let Some(payload) = payload else {
            return Data::default();
        };
        if !binary
            && let Some(raw) = payload
                .as_str()
                .and_then(|text| serde_json::from_str::<&RawValue>(text).ok())
        {
            return Data {
                data: Some(raw),
                b64data: None,
            };
        }
        Data {
            data: None,
            b64data: Some(STANDARD.encode(payload.as_bytes())),
        }
    }
}

/// `connect` proxy request.
#[derive(Serialize)]
pub struct ConnectRequest<'a> {
    #[serde(flatten)]
    pub base: Base<'a>,
    #[serde(flatten)]
    pub data: Data<'a>,
    /// The SDK's `name`.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub name: &'a str,
    /// The SDK's `version`.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub version: &'a str,
}

/// The connection-level fields of the other requests.
#[derive(Serialize)]
pub struct Conn<'a> {
    #[serde(flatten)]
    pub base: Base<'a>,
    /// User id (empty: anonymous).
    pub user: &'a str,
    /// The connection's `meta` (from the connect proxy), with `include_connection_meta`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<&'a RawValue>,
}

/// `refresh` proxy request.
#[derive(Serialize)]
pub struct RefreshRequest<'a> {
    #[serde(flatten)]
    pub conn: Conn<'a>,
}

/// `subscribe` proxy request.
#[derive(Serialize)]
pub struct SubscribeRequest<'a> {
    #[serde(flatten)]
    pub conn: Conn<'a>,
    pub channel: &'a str,
    /// The subscription token the client sent, if any.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub token: &'a str,
}

/// `sub_refresh` proxy request.
#[derive(Serialize)]
pub struct SubRefreshRequest<'a> {
    #[serde(flatten)]
    pub conn: Conn<'a>,
    pub channel: &'a str,
}

/// `publish` proxy request.
#[derive(Serialize)]
pub struct PublishRequest<'a> {
    #[serde(flatten)]
    pub conn: Conn<'a>,
    pub channel: &'a str,
    #[serde(flatten)]
    pub data: Data<'a>,
}

/// `rpc` proxy request.
#[derive(Serialize)]
pub struct RpcRequest<'a> {
    #[serde(flatten)]
    pub conn: Conn<'a>,
    pub method: &'a str,
    #[serde(flatten)]
    pub data: Data<'a>,
}

/// Every proxy response: a result, an error, or a disconnect.
#[derive(Deserialize)]
#[serde(bound = "T: Deserialize<'de>")]
pub struct Response<T> {
    #[serde(default)]
    pub result: Option<T>,
    #[serde(default)]
    pub error: Option<WireError>,
    #[serde(default)]
    pub disconnect: Option<WireDisconnect>,
}

/// `error` of a response: the client's command gets it.
#[derive(Deserialize, Debug)]
pub struct WireError {
    pub code: u32,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub temporary: bool,
}

/// `disconnect` of a response: the connection is closed with it.
#[derive(Deserialize, Debug)]
pub struct WireDisconnect {
    pub code: u32,
    #[serde(default)]
    pub reason: String,
}

/// A payload as a response gives it: raw JSON `data`/`info`, or base64 in `b64data`/`b64info`
/// (which wins, as in Centrifugo).
pub fn payload(raw: Option<Box<RawValue>>, b64: &str) -> Result<Option<Payload>, String> {
    if !b64.is_empty() {
        return STANDARD
            .decode(b64)
            .map(|bytes| Some(Payload::from_stored(bytes)))
            .map_err(|e| format!("invalid base64: {e}"));
    }
    Ok(raw.filter(|r| r.get() != "null").map(Payload::from))
}

/// `result` of a connect response.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ConnectResult {
    pub user: String,
    pub expire_at: i64,
    pub info: Option<Box<RawValue>>,
    pub b64info: String,
    pub data: Option<Box<RawValue>>,
    pub b64data: String,
    pub channels: Vec<String>,
    pub subs: BTreeMap<String, SubscribeOptions>,
    pub meta: Option<Box<RawValue>>,
    /// Centrifugo's channel capabilities: not implemented, so a result with them is refused.
    pub caps: Option<serde_json::Value>,
}

/// `result` of a refresh or sub_refresh response.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct RefreshResult {
    pub expired: bool,
    pub expire_at: i64,
    pub info: Option<Box<RawValue>>,
    pub b64info: String,
    /// New connection `meta` (refresh only).
    pub meta: Option<Box<RawValue>>,
}

/// `result` of a subscribe response.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SubscribeResult {
    pub expire_at: i64,
    pub info: Option<Box<RawValue>>,
    pub b64info: String,
    pub data: Option<Box<RawValue>>,
    pub b64data: String,
    #[serde(rename = "override")]
    pub override_: Option<SubscribeOverride>,
}

/// `result` of a publish response.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PublishResult {
    pub data: Option<Box<RawValue>>,
    pub b64data: String,
    pub skip_history: bool,
    pub idempotency_key: String,
    pub tags: BTreeMap<String, String>,
    pub delta: bool,
    pub version: u64,
    pub version_epoch: String,
}

/// `result` of an RPC response.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct RpcResult {
    pub data: Option<Box<RawValue>>,
    pub b64data: String,
}
