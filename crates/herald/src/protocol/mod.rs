//! The Centrifugo client protocol v2: its messages, and their JSON format (docs/protocol.md).
//!
//! * [`command`]: client → server [`Command`]s and [`decode_commands`] for newline-batched
//!   frames;
//! * [`reply`]: server → client [`Reply`], results, [`Push`]es, [`Publication`],
//!   [`ClientInfo`];
//! * [`encode`]: writing replies and pushes into a frame buffer, including the once-per-
//!   publication [`encode_publication_push`];
//! * [`codes`]: [`Error`] reply codes, [`Disconnect`] close codes, [`Unsubscribe`] push codes.
//! * [`payload`]: [`Payload`], the application's bytes in `data`, `info`, `conn_info`,
//!   `chan_info`: validated as JSON where they enter as JSON, written back verbatim (minus raw
//!   `\n` bytes, dropped once on entry: insignificant whitespace in valid JSON, and the JSON
//!   format's message separator);
//! * [`codec`]: the encoding seam — the [`Codec`] trait, the [`Encoding`] a connection speaks,
//!   and [`JsonCodec`], the JSON format built from the serde types of this module.

pub mod codec;
pub mod codes;
pub mod command;
pub mod encode;
pub mod payload;
pub mod reply;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Deserializer};

pub use codec::{Codec, Encoding, JsonCodec, ProtobufCodec};
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
pub use payload::Payload;
pub use reply::{
    ClientInfo, ConnectPush, ConnectResult, DisconnectPush, HistoryResult, JoinPush, LeavePush,
    MessagePush, PingResult, PresenceResult, PresenceStatsResult, Publication, PublishResult, Push,
    RefreshPush, RefreshResult, Reply, ReplyResult, RpcResult, SubRefreshResult, SubscribePush,
    SubscribeResult, UnsubscribePush, UnsubscribeResult,
};

/// Parses and validates `json` (JSON text) as a [`Payload`]: [`Payload::from_json`].
pub fn raw(json: impl Into<String>) -> Result<Payload, serde_json::Error> {
    Payload::from_json(json)
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
