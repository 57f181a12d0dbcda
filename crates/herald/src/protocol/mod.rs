//! The Centrifugo client protocol v2, JSON format (`/work/shared/protocol.md`).
//!
//! * [`command`]: client → server [`Command`]s and [`decode_commands`] for newline-batched
//!   frames;
//! * [`reply`]: server → client [`Reply`], results, [`Push`]es, [`Publication`],
//!   [`ClientInfo`];
//! * [`encode`]: writing replies and pushes into a frame buffer, including the once-per-
//!   publication [`encode_publication_push`];
//! * [`codes`]: [`Error`] reply codes, [`Disconnect`] close codes, [`Unsubscribe`] push codes.
//!
//! Raw payload fields (`data`, `info`, `conn_info`, `chan_info`) are [`Raw`] values: the
//! application's JSON kept verbatim, written back verbatim except that raw `\n` bytes are
//! stripped (they can only be insignificant whitespace in valid JSON, and `\n` separates
//! messages in a frame).

pub mod codes;
pub mod command;
pub mod encode;
pub mod reply;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

pub use codes::{Disconnect, Error, Unsubscribe};
pub use command::{
    Command, Commands, ConnectRequest, DecodeError, FilterNode, HistoryRequest, Method,
    PingRequest, PresenceRequest, PresenceStatsRequest, PublishRequest, RefreshRequest, RpcRequest,
    SendRequest, StreamPosition, SubRefreshRequest, SubscribeRequest, UnsubscribeRequest,
    decode_command, decode_commands,
};
pub use encode::{
    PING_REPLY, ReplyBatch, encode_bare_push, encode_publication_push,
    encode_publication_push_bare, encode_push, encode_replies, encode_reply, publication_len,
};
pub use reply::{
    ClientInfo, ConnectPush, ConnectResult, DisconnectPush, HistoryResult, JoinPush, LeavePush,
    MessagePush, PingResult, PresenceResult, PresenceStatsResult, Publication, PublishResult, Push,
    RefreshPush, RefreshResult, Reply, ReplyResult, RpcResult, SubRefreshResult, SubscribePush,
    SubscribeResult, UnsubscribePush, UnsubscribeResult,
};

/// A raw JSON payload kept verbatim (always valid JSON by construction).
pub type Raw = Box<RawValue>;

/// Parses and validates `json` as a [`Raw`] payload, stripping raw `\n` bytes so that encoding
/// it later never has to (see [`strip_newlines`]).
pub fn raw(json: impl Into<String>) -> Result<Raw, serde_json::Error> {
    let mut json: String = json.into();
    if json.contains('\n') {
        json.retain(|c| c != '\n');
    }
    RawValue::from_string(json)
}

/// Returns `value` without raw `\n` bytes (unchanged, without copying, when it has none).
///
/// Encoding strips them anyway; normalising once when a payload enters the server (e.g. before
/// storing it in history) keeps the per-publication encode on its fast path.
pub fn strip_newlines(value: Raw) -> Raw {
    if !value.get().contains('\n') {
        return value;
    }
    let stripped: String = value.get().chars().filter(|&c| c != '\n').collect();
    // Removing insignificant whitespace from valid JSON keeps it valid; keep the original if
    // that ever failed.
    RawValue::from_string(stripped).unwrap_or(value)
}

/// `skip_serializing_if` helper: the field equals its zero value.
pub(crate) fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// `deserialize_with` helper: JSON `null` reads as the field's default, like the reference
/// decoder.
pub(crate) fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Deserializes `T` only from a JSON object. Derived `Deserialize` impls also accept arrays
/// (`[1]` as a struct with its first field 1); the reference decoder does not.
pub(crate) struct Object<T>(pub(crate) T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(std::marker::PhantomData<T>);

        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for ObjectVisitor<T> {
            type Value = T;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }

        deserializer
            .deserialize_map(ObjectVisitor(std::marker::PhantomData))
            .map(Object)
    }
}

/// `deserialize_with` helper for optional nested messages: a JSON object, or `null` / absent
/// for `None`.
pub(crate) fn object<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Object<T>>::deserialize(deserializer)?.map(|object| object.0))
}

/// `serialize_with` helper for raw fields: verbatim, minus raw `\n` bytes.
pub(crate) fn ser_raw<S: Serializer>(
    value: &Option<Raw>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(raw) => ser_raw_value(raw, serializer),
        None => serializer.serialize_none(),
    }
}

fn ser_raw_value<S: Serializer>(raw: &RawValue, serializer: S) -> Result<S::Ok, S::Error> {
    let text = raw.get();
    if !text.contains('\n') {
        return raw.serialize(serializer);
    }
    let stripped: String = text.chars().filter(|&c| c != '\n').collect();
    RawValue::from_string(stripped)
        .map_err(serde::ser::Error::custom)?
        .serialize(serializer)
}
