//! [`Payload`]: the application's bytes in a publication, a connection's or a subscription's
//! info, an RPC reply or a proxy's custom data.
//!
//! Why bytes and not parsed JSON: the server never looks inside a payload, it only carries it
//! — from a client or the server API into history and out to every subscriber, in whichever
//! encoding each subscriber speaks. So a payload is validated once, where it enters in a given
//! encoding (a JSON command, a JSON API body, a token claim: [`Payload::from_json`] and the
//! `Deserialize` impl), stored as the same bytes, and written back verbatim: the JSON codec
//! writes them as they are into the JSON message, and a Protobuf codec will write them as a
//! `bytes` field. Cloning one is a reference count, not a copy.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// The application's payload bytes, kept verbatim (see the module doc).
///
/// Payloads that entered as JSON are valid JSON without a raw `\n` byte: a `\n` can only be
/// insignificant whitespace in valid JSON, and the JSON codec uses it to separate the messages
/// of a frame, so it is dropped once on entry rather than on every encode.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Payload(Bytes);

impl Payload {
    /// Validates `json` as one JSON value and keeps it verbatim, minus raw `\n` bytes: the
    /// entry point of payloads that arrive as JSON text.
    pub fn from_json(json: impl Into<String>) -> Result<Payload, serde_json::Error> {
        RawValue::from_string(json.into()).map(Payload::from)
    }

    /// Payload bytes that were validated when they entered (e.g. read back from history,
    /// where only payloads that were accepted are ever written): kept as they are.
    pub fn from_stored(bytes: impl Into<Bytes>) -> Payload {
        Payload(bytes.into())
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes, shared.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes at all (never the case for a payload that entered as JSON).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The payload as text, the way the tests compare payloads with string literals (and
    /// `RawValue::get` gave it before payloads were bytes).
    #[cfg(test)]
    pub fn get(&self) -> &str {
        self.as_str().expect("a UTF-8 payload")
    }

    /// The bytes as text, if they are UTF-8 (always, for a payload that entered as JSON).
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
}

impl From<Box<RawValue>> for Payload {
    /// A parsed JSON value (e.g. a token claim), kept verbatim minus raw `\n` bytes (which
    /// costs a copy only when it has any).
    fn from(raw: Box<RawValue>) -> Payload {
        let text: Box<str> = raw.into();
        if text.contains('\n') {
            return Payload(Bytes::from(text.replace('\n', "")));
        }
        Payload(Bytes::from(text.into_boxed_bytes()))
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(text) => write!(f, "Payload({text})"),
            None => write!(f, "Payload({:?})", self.0),
        }
    }
}

/// serde_json's marker for a value written verbatim (`RawValue` serializes as a struct of
/// this name with one field of this name, and serde_json's serializers write that field's
/// string as it is). Writing a payload through it costs no parse; through `RawValue` it would
/// cost one per encode, since a `&RawValue` can only be made by parsing. The payload tests
/// (`protocol::tests::payload_*`) prove the bytes come out verbatim, so a serde_json that
/// changed this would fail them rather than corrupt output.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

impl Serialize for Payload {
    /// Writes the payload as JSON: its bytes verbatim, minus raw `\n` bytes should a payload
    /// that did not enter as JSON have any. Fails for bytes that are not UTF-8 (not JSON).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeStruct};
        let text = self
            .as_str()
            .ok_or_else(|| S::Error::custom("a binary payload cannot be written as JSON"))?;
        let stripped;
        let text = if text.contains('\n') {
            stripped = text.replace('\n', "");
            stripped.as_str()
        } else {
            text
        };
        let mut s = serializer.serialize_struct(RAW_VALUE_TOKEN, 1)?;
        s.serialize_field(RAW_VALUE_TOKEN, text)?;
        s.end()
    }
}

impl<'de> Deserialize<'de> for Payload {
    /// Reads one JSON value verbatim (validated by the parser), minus raw `\n` bytes.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Payload, D::Error> {
        Box::<RawValue>::deserialize(deserializer).map(Payload::from)
    }
}
