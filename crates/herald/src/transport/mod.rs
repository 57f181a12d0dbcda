//! The transport seam: how a client's commands come in and its replies, pushes and final
//! disconnect go out, apart from the protocol that [`crate::client`] speaks over it.
//!
//! A connection is served by [`crate::client::serve`], generic over a [`Transport`] (and
//! monomorphised per transport: nothing on the hot path goes through a `dyn`). The client
//! asks its transport for the next [`Inbound`] event, queues its replies with
//! [`Transport::send_replies`] and ends the connection with [`Transport::close`] and a
//! [`Disconnect`]; everything else reaches the connection through its [`Outbox`], which the
//! hub (publications), the ping wheel, the alarm clock, the server API and shutdown hold.
//!
//! The outbox is every transport's queue: it holds messages prepared once for all their
//! recipients (today `Arc<herald_ws::Message>`, a WebSocket frame whose payload is the encoded
//! message), replies for this connection only, and at most one close request. Each transport
//! drains it its own way: [`websocket`] writes the frames as they are, many per syscall, and a
//! close request as a close frame; a streaming transport (HTTP-streaming, SSE) will write the
//! payloads with its own delimiters and a close request as a `disconnect` push, then end the
//! stream. Whoever closes a connection from outside its task does it with
//! [`request_close`] (through [`ClientHandle::disconnect`] for a connected client), so the
//! same [`Disconnect`] becomes whatever the connection's transport says it as.
//!
//! Adding a transport is: an implementation of [`Transport`] in a file of this module, and
//! one registration of its path in [`Endpoints`] (see [`Endpoint`]) with the handler that
//! accepts its HTTP request in [`crate::server`].
//!
//! [`ClientHandle::disconnect`]: crate::hub::ClientHandle::disconnect

pub mod chunked;
pub mod emulation;
pub mod endpoints;
pub mod http_stream;
pub mod uni_websocket;
pub mod websocket;

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;

use crate::config::Config;
use crate::protocol::{ConnectRequest, Disconnect, Encoding, Push};
use crate::ws::{Budget, CloseCode, FrameBuf, Outbox, PushError};

pub use emulation::Emulation;
pub use endpoints::{Endpoint, Endpoints};
pub use http_stream::HttpStreamTransport;
pub use uni_websocket::UniWebSocketTransport;
pub use websocket::{Format, Json, Protobuf, WebSocketTransport};

/// What a transport hands its client.
#[derive(Debug)]
pub enum Inbound {
    /// One message of commands from the client (newline-delimited JSON).
    Commands(Bytes),
    /// The connection's outbox was notified ([`Outbox::notify`]): the alarm clock, the server
    /// API or shutdown want the client to look at its deadlines and state.
    Wake,
    /// The connect request of a unidirectional transport, which takes it from the HTTP request
    /// that opened the connection (a body, a `cf_connect` query parameter) instead of from a
    /// first command; the client answers it with a connect push rather than a reply, and a
    /// refusal with a disconnect (see `client::serve`). Yielded by the unidirectional
    /// HTTP-streaming and SSE transports ([`http_stream`]).
    Connect(Box<ConnectRequest>),
}

/// How a connection ended, other than cleanly.
#[derive(Debug)]
pub enum Failure {
    /// The client sent a message over the transport's size limit
    /// ([`Transport::message_size_limit`]): the one failure a well-behaved client still meets,
    /// so the client logs it where whoever runs the server sees it.
    TooBig {
        /// The transport's words for it (e.g. the close reason sent).
        reason: String,
    },
    /// The client stopped reading what it was sent, until the write timeout: a slow consumer.
    WriteTimeout,
    /// Anything else (I/O error, protocol violation, a peer that vanished).
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::TooBig { reason } => write!(f, "message too big: {reason}"),
            Failure::WriteTimeout => f.write_str("write timed out: the peer stopped reading"),
            Failure::Other(e) => e.fmt(f),
        }
    }
}

/// One connection's way of carrying the client protocol: what a transport implements so that
/// [`crate::client::serve`] can run the protocol over it.
///
/// The implementation is held in the connection's task for its whole life: its size is paid
/// by every idle connection (see the size tests in `client.rs`), so it keeps only what its
/// I/O needs and finds its settings in shared, per-server state.
pub trait Transport: Send + Sync + 'static {
    /// The transport's name, as Centrifugo names it (`websocket`, `http_stream`, `sse`,
    /// `uni_websocket`…): for logs and metrics.
    fn name(&self) -> &'static str;

    /// How the connection's messages are encoded (Centrifugo's protocol type), chosen by the
    /// transport from the request that opened it (a WebSocket subprotocol, a query parameter):
    /// the client reads its commands and writes its replies with this codec.
    fn protocol(&self) -> Encoding;

    /// Whether the client only receives (Centrifugo's unidirectional transports): it sends no
    /// commands, its connect request comes with the request that opened the connection
    /// ([`Inbound::Connect`]), and it is sent pushes, never replies. Herald speaks the
    /// protocol version 2 only, so a transport has no version to say.
    fn unidirectional(&self) -> bool;

    /// The connection's outbound queue: what the hub, the ping wheel, the alarm clock and the
    /// server API hold to reach the connection from other tasks.
    fn outbox(&self) -> &Arc<Outbox>;

    /// Queues the replies to one message of commands, already encoded (as the payload of
    /// `replies`), to be written before anything queued after them. A full queue closes the
    /// connection as a slow consumer ([`PushError::Full`]); a closed one drops them.
    fn send_replies(&self, replies: FrameBuf) -> Result<(), PushError>;

    /// Told by the client once it is connected, with the session id its connect reply gave:
    /// a transport whose commands come through the emulation endpoint registers it there
    /// ([`emulation`]). Nothing to do for the others.
    fn connected(&self, session: &str) {
        let _ = session;
    }

    /// Waits for the next event from the client or the outbox, writing queued output
    /// meanwhile. `Ok(None)` once the connection ended cleanly. A poll function rather than an
    /// `async fn`: the client's serve loop awaits it in place, and a nested future would
    /// widen every idle connection's task.
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Inbound>, Failure>>;

    /// Told by the client when it refuses a unidirectional connect, before it closes the
    /// connection, with the refusal's code (a connect error's, such as 101, or a
    /// disconnect's, such as 3504) and its message: a transport that answers refusals with an
    /// HTTP status (`connect_code_to_http_response`) takes them from here. Nothing to do for
    /// the others.
    fn connect_refused(&self, code: u32, message: &str) {
        let _ = (code, message);
    }

    /// Whether a disconnect is also said as a `disconnect` push, queued before the close
    /// request (the unidirectional WebSocket, whose client may read its pushes only). Whoever
    /// closes the connection from outside its task does it through the client's handle, which
    /// keeps this answer ([`crate::hub::ClientHandle::disconnect`]).
    fn disconnect_push(&self) -> bool {
        false
    }

    /// Ends the connection with `disconnect`, after what is already queued: the transport
    /// says it its way (a WebSocket close frame, a streaming transport's `disconnect` push and
    /// end of stream), then [`Transport::poll_recv`] reports the end.
    fn close(&self, disconnect: &Disconnect) {
        if self.disconnect_push() {
            request_close_with_push(self.outbox(), self.protocol(), disconnect);
        } else {
            request_close(self.outbox(), disconnect);
        }
    }

    /// The close code the connection ended with, for the metrics: the peer's, if it said one,
    /// else 1006 (ended without a close).
    fn ended_with(&self) -> u16;

    /// The option that bounds one inbound message on this transport and its value in
    /// `config`, for the advice logged with [`Failure::TooBig`].
    fn message_size_limit(&self, config: &Config) -> (&'static str, usize);
}

/// The byte budget every connection's outbox shares (`client.queue_max_size`): a connection
/// whose queue would go over it is closed with [`Disconnect::SLOW`], whatever its transport.
pub fn outbox_budget(max_bytes: usize) -> Budget {
    let slow = Disconnect::SLOW;
    Budget::new(
        max_bytes,
        CloseCode(slow.code),
        slow.fixed_reason().unwrap_or("slow"),
    )
}

/// Asks the connection of `outbox` to close with `disconnect`, from any task; false if it was
/// closing already. The outbox keeps the code and reason as its close request, which the
/// connection's transport writes its way (see the module documentation).
pub fn request_close(outbox: &Outbox, disconnect: &Disconnect) -> bool {
    outbox.close(CloseCode(disconnect.code), &disconnect.reason)
}

/// [`request_close`], after queueing `disconnect` as a push in `encoding` (for the transports
/// whose [`Transport::disconnect_push`] is true).
pub fn request_close_with_push(
    outbox: &Outbox,
    encoding: Encoding,
    disconnect: &Disconnect,
) -> bool {
    if !outbox.is_closed() {
        let push = Push::disconnect(disconnect.clone());
        // A push that does not fit the queue closes the connection as a slow consumer, which
        // is then what it learns; one that cannot be encoded was logged.
        if let Ok(message) = crate::prepared::push_message(encoding, &push) {
            let _ = outbox.push(message);
        }
    }
    request_close(outbox, disconnect)
}

#[cfg(test)]
mod tests;
