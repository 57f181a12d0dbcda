//! What Herald puts in a NATS message: a publication, join or leave on a channel subject, or a
//! publication stored in a channel's JetStream stream.
//!
//! One layout for all: a 4-byte big-endian length, that many bytes of JSON metadata
//! ([`Meta`]), then the payload bytes verbatim. The payload stays out of the JSON because it
//! may be binary (Protobuf clients, `b64data`), and the metadata stays out of NATS headers
//! because client info is arbitrary JSON that a header line cannot always hold.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::engine::EngineError;
use crate::protocol::{ClientInfo, Payload, Publication};

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Kind {
    /// A publication (payload = its data).
    Pub,
    /// A client subscribed (no payload).
    Join,
    /// A client unsubscribed (no payload).
    Leave,
}

/// The metadata of a message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Meta {
    /// What it is (`pub` in a stream).
    pub kind: Kind,
    /// Offset in the channel's stream (0: none, or in a stream: its sequence).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offset: u64,
    /// The stream's epoch, with `offset`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub epoch: String,
    /// The publish asked for delta compression.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delta: bool,
    /// Publisher (client-side publishes), or who joined/left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<ClientInfo>,
    /// Publication tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// The publication's version (stored publications; for version suppression).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: u64,
    /// The epoch of `version`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version_epoch: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Meta {
    /// Metadata of a `kind` message with nothing else set.
    pub fn new(kind: Kind) -> Meta {
        Meta {
            kind,
            offset: 0,
            epoch: String::new(),
            delta: false,
            info: None,
            tags: BTreeMap::new(),
            version: 0,
            version_epoch: String::new(),
        }
    }

    /// The publication this message carries, with `data`.
    pub fn publication(&self, data: Payload) -> Publication {
        Publication {
            data: Some(data),
            info: self.info.clone(),
            offset: self.offset,
            tags: self.tags.clone(),
            ..Publication::default()
        }
    }
}

/// Encodes a message.
pub(super) fn encode(meta: &Meta, payload: &[u8]) -> Result<Bytes, EngineError> {
    let json = serde_json::to_vec(meta)
        .map_err(|e| EngineError::BadRequest(format!("cannot encode for NATS: {e}")))?;
    let len = u32::try_from(json.len())
        .map_err(|_| EngineError::BadRequest("publication metadata too large".into()))?;
    let mut out = BytesMut::with_capacity(4 + json.len() + payload.len());
    out.put_u32(len);
    out.put_slice(&json);
    out.put_slice(payload);
    Ok(out.freeze())
}

/// Decodes a message: its metadata and payload. Anything else on a Herald subject (another
/// program publishing there) is an error the caller logs and skips.
pub(super) fn decode(message: &Bytes) -> Result<(Meta, Payload), String> {
    let len_bytes: [u8; 4] = message
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or("shorter than its header")?;
    let end = 4usize.saturating_add(u32::from_be_bytes(len_bytes) as usize);
    let json = message.get(4..end).ok_or("metadata cut off")?;
    let meta: Meta = serde_json::from_slice(json).map_err(|e| format!("bad metadata: {e}"))?;
    Ok((meta, Payload::from_stored(message.slice(end..))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_with_binary_payloads() {
        let mut meta = Meta::new(Kind::Pub);
        meta.offset = 7;
        meta.epoch = "e".into();
        meta.info = Some(ClientInfo {
            user: "alice".into(),
            client: "c1".into(),
            conn_info: Some(Payload::from_json(r#"{"a":"x\r"}"#).unwrap()),
            chan_info: None,
        });
        meta.tags.insert("k".into(), "v".into());
        let bytes = encode(&meta, &[0, 159, 255]).unwrap();
        let (back, payload) = decode(&bytes).unwrap();
        assert_eq!(payload.as_bytes(), [0, 159, 255]);
        assert_eq!(
            (back.kind, back.offset, back.epoch.as_str()),
            (Kind::Pub, 7, "e")
        );
        assert_eq!(back.info.unwrap().user, "alice");
        assert_eq!(back.tags["k"], "v");
    }

    #[test]
    fn foreign_messages_are_errors_not_panics() {
        for junk in [&b""[..], b"\0\0", b"\xff\xff\xff\xff{}", b"\0\0\0\x02{x"] {
            assert!(decode(&Bytes::copy_from_slice(junk)).is_err());
        }
    }
}
