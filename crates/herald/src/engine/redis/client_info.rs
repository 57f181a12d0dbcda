//! How the Redis engine writes a [`ClientInfo`] (and other payloads) into Redis: JSON with the
//! payloads as base64.
//!
//! Why not the protocol's JSON: a payload may be binary (`b64info` in a token or the API),
//! which JSON cannot carry verbatim, and the protocol's serializer refuses it. Why JSON at
//! all: the values are small, written on subscribe and read on `presence`, and stay readable
//! with `redis-cli` (only the application's payloads are opaque).

use serde::{Deserialize, Serialize};

use crate::protocol::{ClientInfo, Payload};

/// A [`ClientInfo`] as stored: short field names, payloads as base64.
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(rename = "u", default)]
    user: String,
    #[serde(rename = "c", default)]
    client: String,
    #[serde(
        rename = "i",
        default,
        with = "b64",
        skip_serializing_if = "Option::is_none"
    )]
    conn_info: Option<Payload>,
    #[serde(
        rename = "ci",
        default,
        with = "b64",
        skip_serializing_if = "Option::is_none"
    )]
    chan_info: Option<Payload>,
}

/// `info` as stored in Redis.
pub(crate) fn encode(info: &ClientInfo) -> Vec<u8> {
    let stored = Stored {
        user: info.user.clone(),
        client: info.client.clone(),
        conn_info: info.conn_info.clone(),
        chan_info: info.chan_info.clone(),
    };
    // Strings and base64 strings only: serializing cannot fail.
    serde_json::to_vec(&stored).unwrap_or_default()
}

/// A [`ClientInfo`] read back from Redis; `None` for bytes this module did not write.
pub(crate) fn decode(bytes: &[u8]) -> Option<ClientInfo> {
    let stored: Stored = serde_json::from_slice(bytes).ok()?;
    Some(ClientInfo {
        user: stored.user,
        client: stored.client,
        conn_info: stored.conn_info,
        chan_info: stored.chan_info,
    })
}

/// serde adapter: an optional [`Payload`] as a standard base64 string, so binary payloads
/// cross Redis unchanged.
pub(crate) mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::protocol::Payload;

    pub(crate) fn serialize<S: Serializer>(
        payload: &Option<Payload>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match payload {
            Some(p) => serializer.serialize_str(&STANDARD.encode(p.as_bytes())),
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Payload>, D::Error> {
        let Some(text) = Option::<String>::deserialize(deserializer)? else {
            return Ok(None);
        };
        let bytes = STANDARD.decode(text).map_err(serde::de::Error::custom)?;
        Ok(Some(Payload::from_stored(bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_json_infos_round_trip() {
        let info = ClientInfo {
            user: "alice".into(),
            client: "c1".into(),
            conn_info: Some(Payload::from_json(r#"{"name":"Alice"}"#).unwrap()),
            chan_info: Some(Payload::from_stored(vec![0u8, 255, 10])),
        };
        let back = decode(&encode(&info)).unwrap();
        assert_eq!(back.user, "alice");
        assert_eq!(back.client, "c1");
        assert_eq!(back.conn_info.unwrap().as_bytes(), br#"{"name":"Alice"}"#);
        assert_eq!(back.chan_info.unwrap().as_bytes(), [0, 255, 10]);
        let bare = decode(&encode(&ClientInfo::default())).unwrap();
        assert!(bare.conn_info.is_none() && bare.chan_info.is_none());
        assert!(decode(b"not json").is_none());
    }
}
