//! [`Event`]: one webhook event and its JSON form, the unit the queue stores and the backend
//! receives (in a batch: `{"events": [...]}`).

use base64::Engine as _;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::protocol::{ClientInfo, Payload};

/// What happened. The names are those of `webhooks.events` and of the `type` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A user's first connection.
    UserOnline,
    /// A user's last connection went, and none came back within `offline_grace`.
    UserOffline,
    /// A channel's first subscriber.
    ChannelOccupied,
    /// A channel's last subscriber went, and none came back within `vacated_grace`.
    ChannelVacated,
    /// A publication into a user-limited channel that a user it names has no subscription to.
    OfflinePublication,
}

impl Kind {
    /// The name in `webhooks.events` and in an event's `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::UserOnline => "user_online",
            Kind::UserOffline => "user_offline",
            Kind::ChannelOccupied => "channel_occupied",
            Kind::ChannelVacated => "channel_vacated",
            Kind::OfflinePublication => "offline_publication",
        }
    }
}

/// The publication an `offline_publication` event carries.
#[derive(Debug)]
pub struct PublicationPart<'a> {
    /// Its offset in the channel's stream (0 when the channel keeps no history).
    pub offset: u64,
    /// The stream's epoch (empty when the channel keeps no history).
    pub epoch: &'a str,
    /// Its payload.
    pub data: Option<&'a Payload>,
    /// Its publisher, for a client's publication.
    pub info: Option<&'a ClientInfo>,
    /// Its tags.
    pub tags: &'a std::collections::BTreeMap<String, String>,
}

/// One event, ready to be written as JSON.
#[derive(Debug)]
pub struct Event<'a> {
    /// What happened.
    pub kind: Kind,
    /// The user (online, offline, offline publication).
    pub user: Option<&'a str>,
    /// The channel (occupied, vacated, offline publication).
    pub channel: Option<&'a str>,
    /// The publication (offline publication).
    pub publication: Option<PublicationPart<'a>>,
}

/// The JSON of an event; field order is the documented one.
#[derive(Serialize)]
struct Wire<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    time: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    b64data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    info: Option<WireInfo<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<&'a std::collections::BTreeMap<String, String>>,
}

/// A publisher, with its infos as JSON when they are (they are bytes a Protobuf client may
/// have sent as anything).
#[derive(Serialize)]
struct WireInfo<'a> {
    user: &'a str,
    client: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    conn_info: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chan_info: Option<&'a RawValue>,
}

/// `bytes` as a JSON value, when they are one.
fn as_json(bytes: &[u8]) -> Option<&RawValue> {
    serde_json::from_slice::<&RawValue>(bytes).ok()
}

impl Event<'_> {
    /// The event as a JSON object with a fresh `id` (a UUID, for the backend to drop
    /// duplicates by: a batch is retried whole until the backend answers 2xx) and `time` (Unix
    /// milliseconds, when it happened).
    pub fn to_json(&self) -> Vec<u8> {
        let publication = self.publication.as_ref();
        let data = publication.and_then(|p| p.data).map(Payload::as_bytes);
        let json_data = data.and_then(as_json);
        let wire = Wire {
            id: uuid::Uuid::new_v4().to_string(),
            kind: self.kind.as_str(),
            time: crate::time::unix_now_ms(),
            user: self.user,
            channel: self.channel,
            offset: publication.map(|p| p.offset),
            epoch: publication.map(|p| p.epoch),
            data: json_data,
            // Bytes that are not JSON (a Protobuf client's payload) travel as base64.
            b64data: match (data, json_data) {
                (Some(bytes), None) => {
                    Some(base64::engine::general_purpose::STANDARD.encode(bytes))
                }
                _ => None,
            },
            info: publication.and_then(|p| p.info).map(|info| WireInfo {
                user: &info.user,
                client: &info.client,
                conn_info: info.conn_info.as_ref().and_then(|p| as_json(p.as_bytes())),
                chan_info: info.chan_info.as_ref().and_then(|p| as_json(p.as_bytes())),
            }),
            tags: publication.map(|p| p.tags).filter(|t| !t.is_empty()),
        };
        // Serializing strings, numbers and validated raw JSON into a Vec cannot fail.
        serde_json::to_vec(&wire).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_json_with_an_id_and_payloads_stay_what_they_were() {
        let json = Event {
            kind: Kind::UserOnline,
            user: Some("alice"),
            channel: None,
            publication: None,
        }
        .to_json();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["type"], "user_online");
        assert_eq!(v["user"], "alice");
        assert_eq!(v["id"].as_str().unwrap().len(), 36);
        assert!(v.get("channel").is_none());

        let data = Payload::from_json(r#"{"text":"hi"}"#).unwrap();
        let binary = Payload::from_stored(&b"\x00\xff"[..]);
        let info = ClientInfo {
            user: "bob".into(),
            client: "c1".into(),
            ..ClientInfo::default()
        };
        let tags = Default::default();
        for (payload, field, expected) in [
            (&data, "data", serde_json::json!({"text": "hi"})),
            (&binary, "b64data", serde_json::json!("AP8=")),
        ] {
            let json = Event {
                kind: Kind::OfflinePublication,
                user: Some("alice"),
                channel: Some("dm:#alice,bob"),
                publication: Some(PublicationPart {
                    offset: 7,
                    epoch: "e",
                    data: Some(payload),
                    info: Some(&info),
                    tags: &tags,
                }),
            }
            .to_json();
            let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
            assert_eq!(v[field], expected);
            assert_eq!(v["offset"], 7);
            assert_eq!(v["epoch"], "e");
            assert_eq!(v["info"]["user"], "bob");
        }
    }
}
