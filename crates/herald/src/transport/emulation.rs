//! [`Emulation`]: the endpoint (`emulation.handler_prefix`, default `/emulation`) through which
//! a streaming connection's client sends its commands.
//!
//! An HTTP stream carries output only: the SDK sends each batch of commands as a separate POST
//! of `{"session": …, "node": …, "data": "<commands>"}` (JSON; `data` is the newline-delimited
//! commands as a string; the Protobuf builds POST an `EmulationRequest` message instead, whose
//! `data` is the varint-delimited commands), naming the connection by the `session` id its
//! connect reply gave.
//! The connection's transport registered that session here when the client connected
//! ([`super::Transport::connected`]); the request's commands are handed to it and the
//! connection's own task processes them, in order, as if they had come over its stream. The
//! replies go out on the stream, so the POST is answered with 204 at once.
//!
//! Sessions are looked up on this node only: with one node that is all there is. Routing a
//! request to the node that owns the session (the `node` field) waits for a multi-node engine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use serde::Deserialize;

use super::http_stream::Stream;

/// Default path of the emulation endpoint (Centrifugo's).
pub const PATH: &str = "/emulation";

/// Commands a connection may have waiting before its emulation requests are refused: a client
/// that posts faster than its connection processes them is told to slow down (503) rather than
/// queue memory without bound.
const MAX_WAITING: usize = 32;

/// The streaming connections of this node, by session id.
#[derive(Debug, Default)]
pub struct Emulation {
    /// Weak: a connection's transport owns its stream, and removes its entry when it ends.
    sessions: Mutex<HashMap<String, Weak<Stream>>>,
}

/// An emulation request, as centrifuge-js sends it.
#[derive(Debug, Deserialize)]
struct Request {
    session: String,
    /// The node that owns the session: ignored on a single node.
    #[serde(default)]
    #[allow(dead_code)]
    node: String,
    /// The commands, newline-delimited JSON, as a string.
    data: String,
}

/// Why an emulation request was not delivered, with what to tell the client.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The body is not an emulation request.
    #[error("bad request: expected {{\"session\",\"node\",\"data\"}} with data a string")]
    BadRequest,
    /// No connection of this node has that session (it ended, or never was).
    #[error("no such session: the connection ended; reconnect")]
    NoSession,
    /// The connection has too many commands waiting.
    #[error("too many commands waiting for this connection: retry later")]
    Busy,
}

impl Emulation {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Weak<Stream>>> {
        // Every critical section is one map operation: a poisoned map is still consistent.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers the stream of the connection whose session id is `session`.
    pub(crate) fn register(&self, session: &str, stream: &Arc<Stream>) {
        self.lock()
            .insert(session.to_owned(), Arc::downgrade(stream));
    }

    /// Forgets `session` (its connection ended).
    pub(crate) fn unregister(&self, session: &str) {
        self.lock().remove(session);
    }

    /// How many sessions are registered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hands the commands of the emulation request `body` (JSON) to the connection it names.
    pub fn deliver(&self, body: &[u8]) -> Result<(), Refused> {
        let request: Request = serde_json::from_slice(body).map_err(|_| Refused::BadRequest)?;
        self.deliver_to(&request.session, Bytes::from(request.data))
    }

    /// Hands the commands of the Protobuf emulation request `body` (an `EmulationRequest`,
    /// whose `data` is the varint-delimited commands, as the SDKs' Protobuf builds send it) to
    /// the connection it names.
    pub fn deliver_protobuf(&self, body: &[u8]) -> Result<(), Refused> {
        let request = <crate::protocol::codec::EmulationRequest as prost::Message>::decode(body)
            .map_err(|_| Refused::BadRequest)?;
        self.deliver_to(&request.session, request.data)
    }

    fn deliver_to(&self, session: &str, commands: Bytes) -> Result<(), Refused> {
        let stream = self
            .lock()
            .get(session)
            .and_then(Weak::upgrade)
            .ok_or(Refused::NoSession)?;
        stream.deliver(commands, MAX_WAITING)
    }
}
