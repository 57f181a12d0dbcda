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
//! **Several nodes.** The connect reply also names the node (`node`), and the SDK sends it
//! with every request. A request that reaches another node than the session's (a load
//! balancer without sticky sessions) is forwarded by the endpoint to that node through the
//! engine's controller (`engine::Controller::emulate`: the Redis engine's control channels,
//! NATS request/reply), which hands it to the connection there ([`Emulation::deliver_to`]) and
//! answers; the endpoint answers the client once the owner did, within the engine's deadline.
//! Requests forwarded one after the other are queued on the connection in that order. A
//! forwarding node holds at most `engine::emulation::MAX_FORWARDED_BYTES` of requests waiting
//! for their answers (more is answered 503), each at most `emulation.max_request_body_size`.
//!
//! Answers: 204 once the commands are queued on the connection (wherever it is); 400 for a
//! body that is not an emulation request; 404 when no connection has the session (it ended,
//! or its node is gone) — Centrifugo answers 204 there and drops the commands, Herald says so,
//! which no SDK reads but a hand-written client may; 503 when the connection (or this node's
//! forwarding) has too much waiting, or the owning node did not answer in time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use serde::Deserialize;

use super::http_stream::Stream;
use crate::engine::emulation::EmulationOutcome;

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
    /// The node that owns the session.
    #[serde(default)]
    node: String,
    /// The commands, newline-delimited JSON, as a string.
    data: String,
}

/// An emulation request, read from its body (JSON or Protobuf).
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The connection's session id.
    pub session: String,
    /// The node that owns it (empty if the client did not say).
    pub node: String,
    /// The commands, as the connection reads them.
    pub data: Bytes,
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
    /// The node that owns the session could not be reached (or did not answer in time).
    #[error("the node of this session cannot be reached: {0}")]
    Unreachable(String),
}

/// Forwards `request` to the node that owns its session, through the engine's controller,
/// and says what became of it there.
pub async fn forward(node: &crate::node::Node, request: Parsed) -> Result<(), Refused> {
    let outcome = node
        .controller()
        .emulate(&request.node, &request.session, request.data)
        .await
        .map_err(|e| Refused::Unreachable(e.to_string()))?;
    match outcome {
        EmulationOutcome::Delivered => Ok(()),
        EmulationOutcome::NoSession => Err(Refused::NoSession),
        EmulationOutcome::Busy => Err(Refused::Busy),
    }
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

    /// Hands the commands of the emulation request `body` (JSON) to the connection it names,
    /// on this node.
    pub fn deliver(&self, body: &[u8]) -> Result<(), Refused> {
        let request = Emulation::parse(body, false)?;
        self.deliver_to(&request.session, request.data)
    }

    /// Reads an emulation request: JSON, or (`binary`) the Protobuf `EmulationRequest` the
    /// SDKs' Protobuf builds send, whose `data` is the varint-delimited commands.
    pub fn parse(body: &[u8], binary: bool) -> Result<Parsed, Refused> {
        if binary {
            let request =
                <crate::protocol::codec::EmulationRequest as prost::Message>::decode(body)
                    .map_err(|_| Refused::BadRequest)?;
            return Ok(Parsed {
                session: request.session,
                node: request.node,
                data: request.data,
            });
        }
        let request: Request = serde_json::from_slice(body).map_err(|_| Refused::BadRequest)?;
        Ok(Parsed {
            session: request.session,
            node: request.node,
            data: Bytes::from(request.data),
        })
    }

    /// What became of commands another node forwarded to this one's connection `session`.
    pub fn deliver_forwarded(&self, session: &str, commands: Bytes) -> EmulationOutcome {
        match self.deliver_to(session, commands) {
            Ok(()) => EmulationOutcome::Delivered,
            Err(Refused::Busy) => EmulationOutcome::Busy,
            Err(_) => EmulationOutcome::NoSession,
        }
    }

    /// Hands `commands` to this node's connection whose session id is `session`.
    pub fn deliver_to(&self, session: &str, commands: Bytes) -> Result<(), Refused> {
        let stream = self
            .lock()
            .get(session)
            .and_then(Weak::upgrade)
            .ok_or(Refused::NoSession)?;
        stream.deliver(commands, MAX_WAITING)
    }
}
