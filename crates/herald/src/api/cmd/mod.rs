//! Server API commands, one per file: each has its request type (JSON, unknown fields
//! ignored, `null` read as absent), its result type, and an `execute` function.
//!
//! [`Command`] is one decoded command of any method but `batch` (a batch is made of them, see
//! [`batch`]); [`Command::decode`] turns a method name and a JSON body into it and
//! [`Command::execute`] runs it and returns its JSON result.

pub mod batch;
pub mod broadcast;
pub mod channels;
pub mod disconnect;
pub mod history;
pub mod history_remove;
pub mod info;
pub mod presence;
pub mod presence_stats;
pub mod publish;
pub mod refresh;
pub mod subscribe;
pub mod unsubscribe;

#[cfg(test)]
pub(crate) mod test_support;

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::channel;
use crate::hub::ClientHandle;
use crate::node::Node;
pub use crate::node::push_message;
use crate::protocol::{self, Payload};

/// Methods of the Centrifugo server API that Herald does not implement yet: they answer
/// error 108 "not available", so that a client knows at once.
pub const NOT_YET_AVAILABLE: &[&str] = &["rpc"];

/// One decoded server API command (any method except `batch`).
#[derive(Debug)]
pub enum Command {
    /// `publish`: see [`publish`].
    Publish(publish::PublishRequest),
    /// `broadcast`: see [`broadcast`].
    Broadcast(broadcast::BroadcastRequest),
    /// `subscribe`: see [`subscribe`].
    Subscribe(subscribe::SubscribeRequest),
    /// `unsubscribe`: see [`unsubscribe`].
    Unsubscribe(unsubscribe::UnsubscribeRequest),
    /// `disconnect`: see [`disconnect`].
    Disconnect(disconnect::DisconnectRequest),
    /// `channels`: see [`channels`].
    Channels(channels::ChannelsRequest),
    /// `info`: see [`info`].
    Info(info::InfoRequest),
    /// `history`: see [`history`].
    History(history::HistoryRequest),
    /// `history_remove`: see [`history_remove`].
    HistoryRemove(history_remove::HistoryRemoveRequest),
    /// `presence`: see [`presence`].
    Presence(presence::PresenceRequest),
    /// `presence_stats`: see [`presence_stats`].
    PresenceStats(presence::PresenceRequest),
    /// `refresh`: see [`refresh`].
    Refresh(refresh::RefreshRequest),
    /// A known method that is not implemented yet (one of [`NOT_YET_AVAILABLE`]).
    NotAvailable(&'static str),
}

impl Command {
    /// Decodes the request of `method` from `json` (an empty body reads as `{}`).
    ///
    /// `Ok(None)` when there is no such method (the caller answers 104 "method not found");
    /// `Err` when the body is not valid JSON or does not fit the method's request.
    pub fn decode(method: &str, json: &[u8]) -> Result<Option<Command>, DecodeError> {
        Ok(Some(match method {
            "publish" => Command::Publish(decode(json)?),
            "broadcast" => Command::Broadcast(decode(json)?),
            "subscribe" => Command::Subscribe(decode(json)?),
            "unsubscribe" => Command::Unsubscribe(decode(json)?),
            "disconnect" => Command::Disconnect(decode(json)?),
            "channels" => Command::Channels(decode(json)?),
            "info" => Command::Info(decode(json)?),
            "history" => Command::History(decode(json)?),
            "history_remove" => Command::HistoryRemove(decode(json)?),
            "presence" => Command::Presence(decode(json)?),
            "presence_stats" => Command::PresenceStats(decode(json)?),
            "refresh" => Command::Refresh(decode(json)?),
            _ => match NOT_YET_AVAILABLE.iter().find(|m| **m == method) {
                Some(m) => Command::NotAvailable(m),
                None => return Ok(None),
            },
        }))
    }

    /// The method name (for replies and metrics).
    pub fn method(&self) -> &'static str {
        match self {
            Command::Publish(_) => "publish",
            Command::Broadcast(_) => "broadcast",
            Command::Subscribe(_) => "subscribe",
            Command::Unsubscribe(_) => "unsubscribe",
            Command::Disconnect(_) => "disconnect",
            Command::Channels(_) => "channels",
            Command::Info(_) => "info",
            Command::History(_) => "history",
            Command::HistoryRemove(_) => "history_remove",
            Command::Presence(_) => "presence",
            Command::PresenceStats(_) => "presence_stats",
            Command::Refresh(_) => "refresh",
            Command::NotAvailable(method) => method,
        }
    }

    /// Runs the command and returns its result as JSON.
    pub async fn execute(self, node: &Arc<Node>) -> Result<Box<RawValue>, protocol::Error> {
        match self {
            Command::Publish(req) => to_raw(&publish::execute(node, req).await?),
            Command::Broadcast(req) => to_raw(&broadcast::execute(node, req).await?),
            Command::Subscribe(req) => to_raw(&subscribe::execute(node, req).await?),
            Command::Unsubscribe(req) => to_raw(&unsubscribe::execute(node, req).await?),
            Command::Disconnect(req) => to_raw(&disconnect::execute(node, req).await?),
            Command::Channels(req) => to_raw(&channels::execute(node, req).await?),
            Command::Info(req) => to_raw(&info::execute(node, req).await?),
            Command::History(req) => to_raw(&history::execute(node, req).await?),
            Command::HistoryRemove(req) => to_raw(&history_remove::execute(node, req).await?),
            Command::Presence(req) => to_raw(&presence::execute(node, req).await?),
            Command::PresenceStats(req) => to_raw(&presence_stats::execute(node, req).await?),
            Command::Refresh(req) => to_raw(&refresh::execute(node, req).await?),
            Command::NotAvailable(method) => Err(protocol::Error::new(
                108,
                format!("not available: Herald does not support the {method} API method yet"),
            )),
        }
    }
}

/// A request body that cannot be decoded: answered with HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// What is wrong, naming the field when there is one.
    pub message: String,
}

impl DecodeError {
    /// Prefixes the message with where the body came from (e.g. `commands[2].publish`).
    #[must_use]
    pub fn within(self, place: &str) -> DecodeError {
        DecodeError {
            message: format!("{place}: {}", self.message),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DecodeError {}

/// Decodes a request object from `json`; blank input reads as `{}`. Arrays and other
/// non-objects are refused (serde would otherwise read an array positionally into a struct).
pub fn decode<T: DeserializeOwned>(json: &[u8]) -> Result<T, DecodeError> {
    let json: &[u8] = if json.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        json
    };
    let mut de = serde_json::Deserializer::from_slice(json);
    let value = serde_path_to_error::deserialize::<_, protocol::Object<T>>(&mut de)
        .map_err(|e| {
            let path = e.path().to_string();
            describe(e.inner(), &path)
        })?
        .0;
    de.end().map_err(|e| describe(&e, ""))?;
    Ok(value)
}

fn describe(error: &serde_json::Error, path: &str) -> DecodeError {
    use serde_json::error::Category;
    let message = match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => format!("malformed JSON: {error}"),
        Category::Data if path.is_empty() || path == "." => format!("bad request: {error}"),
        Category::Data => format!("bad request: field {path}: {error}"),
    };
    DecodeError { message }
}

/// A command result as raw JSON.
fn to_raw<T: Serialize>(result: &T) -> Result<Box<RawValue>, protocol::Error> {
    serde_json::value::to_raw_value(result).map_err(|e| {
        tracing::error!(error = %e, "encoding an API result failed");
        protocol::Error::INTERNAL
    })
}

/// Error 107 with details: `bad request: <detail>`.
pub fn bad_request(detail: impl fmt::Display) -> protocol::Error {
    protocol::Error::new(107, format!("bad request: {detail}"))
}

/// Error 108 with details: `not available: <detail>`.
pub fn not_available(detail: impl fmt::Display) -> protocol::Error {
    protocol::Error::new(108, format!("not available: {detail}"))
}

/// Checks a channel name from a request: empty → 107, malformed → 107, unknown namespace →
/// 102, each with a message saying which.
pub fn check_channel(node: &Node, name: &str) -> Result<(), protocol::Error> {
    if name.is_empty() {
        return Err(bad_request("channel is required"));
    }
    let channels = &node.config().channel;
    let parsed =
        channel::parse_with(name, channels.max_length, channels.naming()).map_err(bad_request)?;
    if node.config().namespace(parsed.namespace).is_none() {
        return Err(protocol::Error::new(
            102,
            format!(
                "unknown channel: namespace \"{}\" is not configured",
                parsed.namespace
            ),
        ));
    }
    Ok(())
}

/// The payload of a publication: the bytes of `b64data` when it is set, else `data` (JSON).
/// As in Centrifugo, `b64data` wins when both are set. Binary bytes reach Protobuf
/// subscribers as they are; JSON subscribers are not sent a payload that is not JSON (see
/// docs/protocol.md, "Protobuf format").
pub fn publication_data(data: Option<Payload>, b64data: &str) -> Result<Payload, protocol::Error> {
    if let Some(bytes) = binary_payload("b64data", b64data)? {
        return Ok(bytes);
    }
    data.ok_or_else(|| bad_request("data is required (a JSON value, or base64 bytes in b64data)"))
}

/// Decodes a binary (`b64…`) field of a request, standard base64 with padding, into payload
/// bytes: `None` when the field is empty, 107 naming the field when it is not base64.
pub fn binary_payload(field: &str, b64: &str) -> Result<Option<Payload>, protocol::Error> {
    if b64.is_empty() {
        return Ok(None);
    }
    let bytes = STANDARD.decode(b64).map_err(|e| {
        bad_request(format!(
            "{field} is not standard base64 ({e}): encode the bytes with the A-Z a-z 0-9 + / \
             alphabet and = padding"
        ))
    })?;
    Ok(Some(Payload::from_stored(bytes)))
}

/// The live clients a user-targeted command (subscribe, unsubscribe, disconnect, refresh)
/// acts on: the connection `client` when given (and only if it belongs to `user`), else every
/// connection of `user`; narrowed to the connection whose session id is `session` when that
/// is given (none matching is not an error: the command then acts on nothing, as in
/// Centrifugo). `user` may be empty only together with `client` (anonymous connections).
pub fn target_clients(
    node: &Node,
    user: &str,
    client: &str,
    session: &str,
) -> Result<Vec<Arc<ClientHandle>>, protocol::Error> {
    if user.is_empty() && client.is_empty() {
        return Err(bad_request("user is required"));
    }
    let mut targets = if client.is_empty() {
        node.hub().user_clients(user)
    } else {
        node.hub().client(user, client).into_iter().collect()
    };
    if !session.is_empty() {
        targets.retain(|c| node.hub().has_session(c, session));
    }
    Ok(targets)
}

/// The connections a control command targets: `user`'s, or the one connection `client`,
/// narrowed to `session`. Error 107 when neither a user nor a client is given.
pub fn target(
    user: String,
    client: String,
    session: String,
) -> Result<crate::engine::Target, protocol::Error> {
    if user.is_empty() && client.is_empty() {
        return Err(bad_request("user is required"));
    }
    Ok(crate::engine::Target {
        user,
        client,
        session,
    })
}

/// Sends a control command to every node (this one included) through the engine's
/// controller. Error 100 when it cannot reach them.
pub async fn send(
    node: &Node,
    command: crate::engine::ControlCommand,
) -> Result<(), protocol::Error> {
    node.controller().send(command).await.map_err(|e| {
        tracing::error!("cannot send a control command: {e}");
        e.to_protocol()
    })
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn decode_names_the_problem() {
        let e = Command::decode("publish", br#"{"channel": 5}"#).unwrap_err();
        assert!(e.message.starts_with("bad request: field channel:"), "{e}");
        assert!(e.message.contains("expected a string"), "{e}");
        let e = Command::decode("publish", b"{\"channel\": ").unwrap_err();
        assert!(e.message.starts_with("malformed JSON:"), "{e}");
        let e = Command::decode("publish", b"{} x").unwrap_err();
        assert!(e.message.starts_with("malformed JSON:"), "{e}");
        let e = Command::decode("publish", br#"["chan"]"#).unwrap_err();
        assert!(e.message.contains("expected a JSON object"), "{e}");
        let e = Command::decode("disconnect", br#"{"user":"u","disconnect":{"code":"x"}}"#)
            .unwrap_err();
        assert!(
            e.message.starts_with("bad request: field disconnect.code:"),
            "{e}"
        );
    }

    #[test]
    fn decode_tolerates_unknown_fields_nulls_and_empty_bodies() {
        let cmd = Command::decode(
            "publish",
            br#"{"channel":"news","data":{"a":1},"future_field":[1,2],"tags":null,"skip_history":null}"#,
        )
        .unwrap()
        .unwrap();
        let Command::Publish(req) = cmd else {
            panic!("{cmd:?}")
        };
        assert_eq!(req.channel, "news");
        assert_eq!(req.data.as_ref().map(Payload::get), Some(r#"{"a":1}"#));
        assert!(req.tags.is_empty());
        assert!(matches!(
            Command::decode("info", b"").unwrap(),
            Some(Command::Info(_))
        ));
        assert!(matches!(
            Command::decode("info", b" \n").unwrap(),
            Some(Command::Info(_))
        ));
    }

    #[test]
    fn methods() {
        assert!(Command::decode("nope", b"{}").unwrap().is_none());
        assert!(Command::decode("batch", b"{}").unwrap().is_none());
        for m in NOT_YET_AVAILABLE {
            let cmd = Command::decode(m, b"{}").unwrap().unwrap();
            assert_eq!(cmd.method(), *m);
        }
        for m in [
            "publish",
            "broadcast",
            "subscribe",
            "unsubscribe",
            "disconnect",
            "channels",
            "info",
            "presence",
            "presence_stats",
            "refresh",
        ] {
            assert_eq!(Command::decode(m, b"{}").unwrap().unwrap().method(), m);
        }
    }

    #[tokio::test]
    async fn not_yet_available_methods_answer_108() {
        let node = node();
        for m in NOT_YET_AVAILABLE {
            let e = Command::decode(m, br#"{"channel":"x"}"#)
                .unwrap()
                .unwrap()
                .execute(&node)
                .await
                .unwrap_err();
            assert_eq!(e.code, 108);
            assert!(e.message.starts_with("not available"), "{}", e.message);
            assert!(e.message.contains(m), "{}", e.message);
        }
    }

    #[test]
    fn channel_checks() {
        let node = node();
        assert_eq!(check_channel(&node, "").unwrap_err().code, 107);
        assert_eq!(check_channel(&node, "bad\nname").unwrap_err().code, 107);
        assert_eq!(
            check_channel(&node, &"x".repeat(300)).unwrap_err().code,
            107
        );
        let e = check_channel(&node, "nope:x").unwrap_err();
        assert_eq!(e.code, 102);
        assert!(e.message.contains("\"nope\""), "{}", e.message);
        assert_eq!(check_channel(&node, "news"), Ok(()));
        assert_eq!(check_channel(&node, "chat:room"), Ok(()));
    }

    #[test]
    fn targets() {
        let node = node();
        let a1 = client(&node, "a1", "alice");
        let _a2 = client(&node, "a2", "alice");
        let _b1 = client(&node, "b1", "bob");
        let _anon = client(&node, "x1", "");
        assert_eq!(target_clients(&node, "alice", "", "").unwrap().len(), 2);
        let one = target_clients(&node, "alice", "a1", "").unwrap();
        assert!(one.len() == 1 && Arc::ptr_eq(&one[0], &a1));
        // A client of another user is not touched.
        assert!(target_clients(&node, "alice", "b1", "").unwrap().is_empty());
        assert!(target_clients(&node, "carol", "", "").unwrap().is_empty());
        assert_eq!(target_clients(&node, "", "x1", "").unwrap().len(), 1);
        assert_eq!(target_clients(&node, "", "", "").unwrap_err().code, 107);
        // A session narrows to the connection it names; an unknown one matches nothing.
        let session = node.hub().session_of(&a1);
        let one = target_clients(&node, "alice", "", &session).unwrap();
        assert_eq!(one.len(), 1);
        assert!(Arc::ptr_eq(&one[0], &a1));
        assert_eq!(
            target_clients(&node, "alice", "a1", &session)
                .unwrap()
                .len(),
            1
        );
        assert!(
            target_clients(&node, "alice", "a2", &session)
                .unwrap()
                .is_empty()
        );
        assert!(target_clients(&node, "alice", "", "s").unwrap().is_empty());
    }
}
