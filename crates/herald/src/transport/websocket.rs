//! [`WebSocketTransport`]: the client protocol over a bidirectional WebSocket
//! (`/connection/websocket`), the one transport the SDKs use first.
//!
//! A thin layer: [`herald_ws::WebSocket`] already drains the outbox into vectored writes, runs
//! the close handshake and answers pings; this maps its events to the client's. A
//! [`Disconnect`] is the outbox's close request ([`Transport::close`]'s default), which the
//! WebSocket writes as a close frame with the same code and reason (the SDKs read their
//! reconnect advice from that code).
//!
//! The encoding is chosen at the handshake (the `centrifuge-protobuf` subprotocol, or
//! `?format=protobuf` / `?cf_protocol=protobuf`: see `server.rs`) and carried in the type,
//! [`WebSocketTransport<Json>`] or [`WebSocketTransport<Protobuf>`], rather than in a field:
//! a field would cost every idle connection (see below), a type parameter costs nothing.
//!
//! [`Disconnect`]: crate::protocol::Disconnect

use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::{Failure, Inbound, Transport};
use crate::config::Config;
use crate::protocol::Encoding;
use crate::ws::{self, CloseCode, FrameBuf, Incoming, Outbox, PushError, WebSocket};

/// The transport's name, as Centrifugo names it.
pub const NAME: &str = "websocket";

/// The encoding of a [`WebSocketTransport`], as a type: [`Json`] or [`Protobuf`].
pub trait Format: Send + 'static {
    /// The encoding the connection speaks.
    const ENCODING: Encoding;
}

/// JSON text frames (the default, and the `centrifuge-json` subprotocol).
#[derive(Debug)]
pub enum Json {}

impl Format for Json {
    const ENCODING: Encoding = Encoding::Json;
}

/// Protobuf binary frames (the `centrifuge-protobuf` subprotocol).
#[derive(Debug)]
pub enum Protobuf {}

impl Format for Protobuf {
    const ENCODING: Encoding = Encoding::Protobuf;
}

/// The client protocol over one upgraded WebSocket connection, in the encoding `F`.
///
/// Exactly a [`WebSocket`]: every idle connection's task holds one, and any field added here
/// would cost each of them 128 bytes (see the size tests in `client.rs`).
pub struct WebSocketTransport<F: Format = Json>(WebSocket, PhantomData<fn() -> F>);

impl<F: Format> WebSocketTransport<F> {
    /// Serves the client protocol over `socket` in the encoding `F`.
    pub fn new(socket: WebSocket) -> WebSocketTransport<F> {
        WebSocketTransport(socket, PhantomData)
    }
}

impl<F: Format> Transport for WebSocketTransport<F> {
    fn name(&self) -> &'static str {
        NAME
    }

    fn protocol(&self) -> Encoding {
        F::ENCODING
    }

    fn unidirectional(&self) -> bool {
        false
    }

    fn outbox(&self) -> &Arc<Outbox> {
        self.0.outbox()
    }

    fn send_replies(&self, replies: FrameBuf) -> Result<(), PushError> {
        self.0
            .outbox()
            .push_frame(replies.finish(crate::prepared::opcode(self.protocol())))
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Inbound>, Failure>> {
        loop {
            return Poll::Ready(match std::task::ready!(self.0.poll_recv(cx)) {
                // Either frame type carries commands: a client whose frames do not decode in
                // its encoding gets the same "bad request" as for any undecodable command.
                Ok(Some(Incoming::Text(data) | Incoming::Binary(data))) => {
                    Ok(Some(Inbound::Commands(data)))
                }
                Ok(Some(Incoming::Wake)) => Ok(Some(Inbound::Wake)),
                // Answers to the connection's own pings: nothing for the client.
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
        self.0
            .peer_close()
            .map_or(CloseCode::ABNORMAL.0, |(code, _)| code.0)
    }

    fn message_size_limit(&self, config: &Config) -> (&'static str, usize) {
        (
            "websocket.message_size_limit",
            config.websocket.message_size_limit,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Disconnect;
    use tokio::io::AsyncReadExt;

    /// A `Disconnect` goes out as a close frame with its code and reason, as the SDKs (and
    /// the JS, Python and browser tests) expect: 0x88, the length, the code big-endian, the
    /// reason. An application's own (the server API's `disconnect`) as much as the table's.
    #[tokio::test]
    async fn a_disconnect_becomes_a_close_frame_with_its_code_and_reason() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let mut peer = tokio::net::TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let socket = WebSocket::from_stream(
            server,
            &[],
            &ws::Negotiated::default(),
            Arc::new(ws::Config::default()),
            Arc::new(Outbox::new(1 << 20, CloseCode(3008), "slow")),
        )
        .expect("websocket");
        let mut transport = WebSocketTransport::<Json>::new(socket);
        transport.close(&Disconnect::custom(4000, String::from("bye")));
        // Drive the connection until it has written the close frame (it then waits for the
        // peer's, which never comes: the timeout below bounds the wait).
        let driven = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            std::future::poll_fn(|cx| transport.poll_recv(cx)),
        );
        let mut frame = [0; 2 + 2 + 3];
        let (_, read) = tokio::join!(driven, peer.read_exact(&mut frame));
        read.expect("a close frame");
        // FIN + close, payload of 5 bytes, 4000 big-endian, the reason.
        assert_eq!(frame, [0x88, 5, 0x0f, 0xa0, b'b', b'y', b'e']);
    }
}
