//! [`UniWebSocketTransport`]: Centrifugo's unidirectional WebSocket
//! (`/connection/uni_websocket`), for clients with no SDK (`wscat`, a browser's plain
//! `WebSocket`).
//!
//! The client's first message is its connect *request* (`{"token": …, "subs": …}`, no `id`,
//! no `connect` wrapper), unless the URL carried it in `cf_connect`; the server then sends
//! pushes only, each a bare push (`{"channel":…,"pub":{…}}`) in a text frame, and `{}` as its
//! ping every `client.ping_interval` (the client cannot answer, so nothing waits for a pong).
//! Whatever the client sends after its connect request is read and dropped, as Centrifugo
//! does (reading is still what takes its close frame and pongs).
//!
//! Pushes are bare in the connection's encoding, [`Encoding::UniJson`]: fan-out frames a
//! publication once for all the unidirectional WebSocket clients of a channel, as it does for
//! the bidirectional ones. A disconnect is said twice, as in Centrifugo: a `disconnect` push,
//! then the close frame with the same code and reason (`uni_websocket.disable_disconnect_push`
//! drops the push). A disconnect asked for from outside the connection's task (the server
//! API, the ping wheel, shutdown) finds the push to send in the client's handle
//! ([`crate::hub::ClientHandle::disconnect`], told by [`Transport::disconnect_push`]).

use std::sync::Arc;
use std::task::{Context, Poll};

use super::{Failure, Inbound, Transport};
use crate::config::{Config, UniWebSocketConfig};
use crate::protocol::{ConnectRequest, Disconnect, Encoding};
use crate::ws::{
    self, CloseCode, DeflateConfig, Frame, FrameBuf, HandshakeConfig, Incoming, Limits, OpCode,
    Outbox, PushError, WebSocket,
};

/// The transport's name, as Centrifugo names it.
pub const NAME: &str = "uni_websocket";

/// Default path of the endpoint (Centrifugo's).
pub const PATH: &str = "/connection/uni_websocket";

/// What every unidirectional WebSocket of a server shares, made once from its config.
#[derive(Debug)]
pub struct Settings {
    /// The handshake: no subprotocol (the transport speaks JSON only, as Centrifugo's), and
    /// `uni_websocket.compression*`.
    pub handshake: HandshakeConfig,
    /// The connection: `uni_websocket.message_size_limit`, `write_timeout`.
    pub connection: Arc<ws::Config>,
    /// Say a disconnect with a push before the close frame (not
    /// `uni_websocket.disable_disconnect_push`).
    pub disconnect_push: bool,
}

impl Settings {
    /// The settings `config` gives (write coalescing as `websocket.write_coalesce`, Herald's
    /// own option, which applies to every WebSocket, paced by the server's one `pacer`).
    pub fn from_config(config: &Config, pacer: Option<Arc<herald_ws::Pacer>>) -> Settings {
        let uni: &UniWebSocketConfig = &config.uni_websocket;
        let message_limit = uni.message_size_limit.max(1024);
        let decompressed_limit = match uni.decompressed_message_size_limit {
            0 => message_limit,
            limit => limit,
        };
        Settings {
            handshake: HandshakeConfig {
                protocols: Vec::new(),
                deflate: DeflateConfig {
                    enabled: uni.compression,
                    min_size: uni.compression_min_size,
                    level: uni.compression_level.clamp(1, 9),
                    ..DeflateConfig::default()
                },
                origin: None,
            },
            connection: Arc::new(ws::Config {
                limits: Limits {
                    max_message_size: decompressed_limit,
                    max_frame_size: message_limit,
                    max_fragments: 1024,
                },
                write_timeout: uni.write_timeout.max(std::time::Duration::from_millis(100)),
                write_coalesce: config.websocket.write_coalesce,
                pacer,
                ..ws::Config::default()
            }),
            disconnect_push: !uni.disable_disconnect_push,
        }
    }
}

/// Reads a connect request as the unidirectional transports take it: a JSON object, or `null`
/// for an empty one (as Centrifugo reads it); `None` if it is neither.
pub fn parse_connect(data: &[u8]) -> Option<ConnectRequest> {
    serde_json::from_slice::<Option<ConnectRequest>>(data)
        .ok()
        .map(Option::unwrap_or_default)
}

/// The client protocol over one upgraded unidirectional WebSocket.
pub struct UniWebSocketTransport {
    socket: WebSocket,
    /// The connect request from the URL (`cf_connect`), until the client takes it.
    connect: Option<Box<ConnectRequest>>,
    /// The next message from the client is its connect request.
    awaiting_connect: bool,
    /// See [`Settings::disconnect_push`].
    disconnect_push: bool,
}

impl UniWebSocketTransport {
    /// Serves a unidirectional client over `socket`; `connect` is the connect request its URL
    /// carried, if any (else its first message is).
    pub fn new(
        socket: WebSocket,
        connect: Option<Box<ConnectRequest>>,
        settings: &Settings,
    ) -> UniWebSocketTransport {
        UniWebSocketTransport {
            awaiting_connect: connect.is_none(),
            connect,
            socket,
            disconnect_push: settings.disconnect_push,
        }
    }
}

impl Transport for UniWebSocketTransport {
    fn name(&self) -> &'static str {
        NAME
    }

    fn protocol(&self) -> Encoding {
        Encoding::UniJson
    }

    fn unidirectional(&self) -> bool {
        true
    }

    fn outbox(&self) -> &Arc<Outbox> {
        self.socket.outbox()
    }

    /// Each push in a frame of its own, as a client that reads one push per message expects
    /// (the client gathers the pushes of one batch newline-separated, as for every transport).
    /// Centrifugo's `join_push_messages` would let them share a frame; Herald does not join
    /// (see the config audit), and publications are framed once for all their recipients.
    fn send_replies(&self, replies: FrameBuf) -> Result<(), PushError> {
        let outbox = self.socket.outbox();
        if !replies.payload().contains(&b'\n') {
            return outbox.push_frame(replies.finish(OpCode::Text));
        }
        for push in replies.payload().split(|&b| b == b'\n') {
            outbox.push_frame(Frame::new(OpCode::Text, push))?;
        }
        Ok(())
    }

    fn disconnect_push(&self) -> bool {
        self.disconnect_push
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Inbound>, Failure>> {
        if let Some(connect) = self.connect.take() {
            self.awaiting_connect = false;
            return Poll::Ready(Ok(Some(Inbound::Connect(connect))));
        }
        loop {
            return Poll::Ready(match std::task::ready!(self.socket.poll_recv(cx)) {
                Ok(Some(Incoming::Text(data) | Incoming::Binary(data))) => {
                    if !std::mem::take(&mut self.awaiting_connect) {
                        continue;
                    }
                    match parse_connect(&data) {
                        Some(request) => Ok(Some(Inbound::Connect(Box::new(request)))),
                        None => {
                            tracing::debug!(
                                "{NAME}: the first message is not a JSON connect request"
                            );
                            self.close(&Disconnect::BAD_REQUEST);
                            continue;
                        }
                    }
                }
                Ok(Some(Incoming::Wake)) => Ok(Some(Inbound::Wake)),
                Ok(Some(Incoming::Pong(_))) => continue,
                Ok(None) => Ok(None),
                Err(ws::Error::Protocol(p)) if p.code == CloseCode::TOO_BIG => {
                    Err(Failure::TooBig {
                        reason: format!("closed with 1009 ({})", p.reason),
                    })
                }
                Err(ws::Error::WriteTimeout) => Err(Failure::WriteTimeout),
                Err(e) => Err(Failure::Other(Box::new(e))),
            });
        }
    }

    fn ended_with(&self) -> u16 {
        self.socket
            .peer_close()
            .map_or(CloseCode::ABNORMAL.0, |(code, _)| code.0)
    }

    fn message_size_limit(&self, config: &Config) -> (&'static str, usize) {
        (
            "uni_websocket.message_size_limit",
            config.uni_websocket.message_size_limit,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connect_request_is_a_json_object_or_null() {
        let request = parse_connect(br#"{"token":"t","subs":{"a":{}}}"#).expect("parses");
        assert_eq!(request.token, "t");
        assert!(request.subs.contains_key("a"));
        assert!(parse_connect(b"null").expect("null").token.is_empty());
        assert!(parse_connect(b"[1]").is_none());
        assert!(parse_connect(b"{\"id\":1,\"connect\":").is_none());
    }
}
