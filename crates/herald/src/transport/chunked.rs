//! [`ChunkedWriter`]: a stream's output written to its HTTP/1.1 connection as chunks, by
//! whichever task polls it — the client's own, once the HTTP layer hands the socket over.
//!
//! Why a stream is written from the client's task: a WebSocket connection is one task (its
//! `client::serve`, which reads and writes the socket in [`super::Transport::poll_recv`]), and
//! an idle one costs ~1.1 KiB. A stream served by the HTTP layer was two — the HTTP
//! connection's task polling the [`StreamBody`], and the client's — and the first alone (a
//! future sized for the whole HTTP request handling) cost an idle stream ~4 KiB. So over plain
//! HTTP/1.1 (`server/http1_stream.rs`), once the response head is decided, the socket, the
//! head and the body go to the client's transport ([`super::http_stream::Stream::hand_over`])
//! and the HTTP task ends: the stream is then one task, as a WebSocket is. hyper's paths (TLS,
//! HTTP/2, a request that did not arrive whole) keep their own writer, hyper polling the body.
//!
//! What it does, each poll: writes what is pending (the head first), then takes the body's
//! ready output (up to [`MAX_BATCH`]) as one chunk (`Transfer-Encoding: chunked`) in a buffer
//! freed once written, so an idle stream holds none; watches for the peer closing (the client
//! sends nothing more on this connection: readable means closed); and keeps the write
//! deadline (`client`'s write timeout): output that the peer has not taken for that long ends
//! the connection as a write timeout. At the body's end it writes the last chunk and shuts the
//! socket's write side.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Body as _;
use tokio::io::AsyncWrite as _;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::Failure;
use super::http_stream::StreamBody;

/// The largest batch of output written as one chunk.
pub const MAX_BATCH: usize = 256 * 1024;

/// Room for a chunk-size line (`ffffffff\r\n`) in front of a batch.
const CHUNK_ROOM: usize = 10;

/// The chunk that ends a chunked body.
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// A stream's socket, head and body, written as an HTTP/1.1 chunked response (see the module
/// documentation).
pub struct ChunkedWriter {
    socket: TcpStream,
    body: StreamBody,
    /// Bytes to write before taking more from the body (the head, a chunk), and how many of
    /// them went out: empty, without a buffer, while the stream is idle.
    pending: Vec<u8>,
    written: usize,
    /// The body ended: `pending` holds (or held) the last chunk.
    ended: bool,
    /// Since when output has waited for the peer, and the timer of its deadline (made only
    /// while one is waiting).
    blocked_since: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
    write_timeout: Duration,
}

impl std::fmt::Debug for ChunkedWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkedWriter")
            .field("pending", &(self.pending.len() - self.written))
            .field("ended", &self.ended)
            .field("blocked_since", &self.blocked_since)
            .finish_non_exhaustive()
    }
}

impl ChunkedWriter {
    /// A writer of `head` (the response head, ending with the blank line, announcing
    /// `Transfer-Encoding: chunked`) and then of `body`, to `socket`, moved to `runtime`'s I/O
    /// driver (the runtime of the task that will poll it).
    pub fn new(
        socket: TcpStream,
        runtime: &tokio::runtime::Handle,
        head: Vec<u8>,
        body: StreamBody,
        write_timeout: Duration,
    ) -> std::io::Result<ChunkedWriter> {
        // Deregistered from the runtime it was accepted on, registered with `runtime`.
        let socket = socket.into_std()?;
        let socket = {
            let _on_runtime = runtime.enter();
            TcpStream::from_std(socket)?
        };
        // Each write is a whole batch: nothing is gained by waiting to fill a packet.
        socket.set_nodelay(true)?;
        Ok(ChunkedWriter {
            socket,
            body,
            pending: head,
            written: 0,
            ended: false,
            blocked_since: None,
            timer: None,
            write_timeout,
        })
    }

    /// Writes what it can. `Ready(Ok(()))` once the stream is over: its last chunk written, or
    /// the peer gone; `Ready(Err(WriteTimeout))` when output waited for the peer past the write
    /// timeout; `Pending` otherwise, with the task woken when there is more to do.
    pub fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Failure>> {
        if self.peer_closed(cx) {
            return Poll::Ready(Ok(()));
        }
        loop {
            while self.written < self.pending.len() {
                match Pin::new(&mut self.socket).poll_write(cx, &self.pending[self.written..]) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                    Poll::Ready(Ok(n)) => self.written += n,
                    Poll::Pending => return self.wait_for_peer(cx),
                }
            }
            self.blocked_since = None;
            self.timer = None;
            if self.ended {
                let _ = Pin::new(&mut self.socket).poll_shutdown(cx);
                return Poll::Ready(Ok(()));
            }
            // Freed rather than kept: an idle stream holds no buffer.
            self.pending = Vec::new();
            self.written = 0;
            if !self.next_chunk(cx) {
                return Poll::Pending;
            }
        }
    }

    /// Output waits for the peer: `Pending` until it takes it, or the write timeout's error
    /// once it has waited that long.
    fn wait_for_peer(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Failure>> {
        let since = *self.blocked_since.get_or_insert_with(Instant::now);
        let deadline = since + self.write_timeout;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Failure::WriteTimeout)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Whether the peer closed its side (or the connection failed). The client sends nothing
    /// more on this connection, so anything it does send is read and dropped.
    fn peer_closed(&mut self, cx: &mut Context<'_>) -> bool {
        let mut scratch = [0u8; 64];
        loop {
            match self.socket.poll_read_ready(cx) {
                Poll::Pending => return false,
                Poll::Ready(Err(_)) => return true,
                Poll::Ready(Ok(())) => {}
            }
            match self.socket.try_read(&mut scratch) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return true,
            }
        }
    }

    /// Takes the body's ready output (up to [`MAX_BATCH`]) into `pending` as one chunk, with
    /// the last chunk after it if the body ended; false when the body has nothing yet.
    fn next_chunk(&mut self, cx: &mut Context<'_>) -> bool {
        let mut out: Vec<u8> = Vec::new();
        loop {
            match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        append(&mut out, &data);
                    }
                    if out.len() >= MAX_BATCH {
                        break;
                    }
                }
                Poll::Ready(Some(Err(never))) => match never {},
                Poll::Ready(None) => {
                    self.ended = true;
                    break;
                }
                Poll::Pending if out.is_empty() => return false,
                Poll::Pending => break,
            }
        }
        let start = if out.is_empty() {
            0
        } else {
            frame_chunk(&mut out)
        };
        if self.ended {
            out.extend_from_slice(LAST_CHUNK);
        }
        self.pending = out;
        self.written = start;
        true
    }
}

/// Appends `data` to a batch, leaving [`CHUNK_ROOM`] bytes in front of the first.
fn append(out: &mut Vec<u8>, data: &Bytes) {
    if out.is_empty() {
        out.reserve(CHUNK_ROOM + data.len() + 64);
        out.resize(CHUNK_ROOM, 0);
    }
    out.extend_from_slice(data);
}

/// Makes a batch (its data after [`CHUNK_ROOM`] bytes of room) one chunk: its size line in
/// front, its CRLF after; returns where the chunk starts. The size line is right-aligned in the
/// room: what is left of the room in front of it is skipped, not written.
fn frame_chunk(out: &mut Vec<u8>) -> usize {
    let len = out.len() - CHUNK_ROOM;
    let size = format!("{len:x}\r\n");
    let start = CHUNK_ROOM - size.len();
    out[start..CHUNK_ROOM].copy_from_slice(size.as_bytes());
    out.extend_from_slice(b"\r\n");
    start
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Disconnect;
    use crate::transport::Transport as _;
    use crate::transport::http_stream::{Framing, open_watched};
    use crate::ws::{CloseCode, FrameBuf, Outbox};
    use std::sync::Arc;
    use tokio::io::AsyncReadExt as _;

    /// A connected pair of sockets: the server's side and the peer's.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let peer = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (server, peer)
    }

    fn outbox(max: usize) -> Arc<Outbox> {
        Arc::new(Outbox::new(max, CloseCode(3008), "slow"))
    }

    /// The head, then each batch as a chunk, then on a close the `disconnect` push and the
    /// last chunk; the writer is then over, and the peer reads the end of the connection.
    #[tokio::test]
    async fn the_head_then_chunks_then_the_last_chunk() {
        let (server, mut peer) = pair().await;
        let outbox = outbox(1 << 20);
        let (transport, body, _) =
            open_watched(Framing::Lines, bytes::Bytes::new(), outbox, Arc::default());
        let mut writer = ChunkedWriter::new(
            server,
            &tokio::runtime::Handle::current(),
            b"HTTP/1.1 200 OK\r\n\r\n".to_vec(),
            body,
            Duration::from_secs(5),
        )
        .expect("writer");
        let mut replies = FrameBuf::new();
        std::io::Write::write_all(&mut replies, b"{\"id\":1}").expect("write");
        transport.send_replies(replies).expect("queued");
        transport.close(&Disconnect::custom(4000, "bye"));
        let over = std::future::poll_fn(|cx| writer.poll_write(cx)).await;
        assert!(over.is_ok());
        drop(writer);
        let mut out = String::new();
        peer.read_to_string(&mut out).await.expect("read");
        let disconnect =
            "{\"push\":{\"disconnect\":{\"code\":4000,\"reason\":\"bye\",\"reconnect\":true}}}\n";
        let data = format!("{{\"id\":1}}\n{disconnect}");
        assert_eq!(
            out,
            format!(
                "HTTP/1.1 200 OK\r\n\r\n{:x}\r\n{data}\r\n0\r\n\r\n",
                data.len()
            )
        );
    }

    /// Idle, the writer holds no buffer; the peer closing its side ends the writer.
    #[tokio::test]
    async fn an_idle_writer_holds_no_buffer_and_ends_when_the_peer_closes() {
        let (server, mut peer) = pair().await;
        let (_transport, body, _) = open_watched(
            Framing::Sse,
            bytes::Bytes::new(),
            outbox(1 << 20),
            Arc::default(),
        );
        let mut writer = ChunkedWriter::new(
            server,
            &tokio::runtime::Handle::current(),
            b"HTTP/1.1 200 OK\r\n\r\n".to_vec(),
            body,
            Duration::from_secs(5),
        )
        .expect("writer");
        // The head goes out (once the socket is writable), and then the writer waits.
        let mut head = [0u8; 19];
        tokio::select! {
            read = peer.read_exact(&mut head) => { read.expect("the head"); }
            over = std::future::poll_fn(|cx| writer.poll_write(cx)) => panic!("ended: {over:?}"),
        }
        let idle = std::future::poll_fn(|cx| Poll::Ready(writer.poll_write(cx))).await;
        assert!(idle.is_pending());
        assert_eq!(
            writer.pending.capacity(),
            0,
            "an idle writer keeps a buffer"
        );
        drop(peer);
        let over = tokio::time::timeout(
            Duration::from_secs(5),
            std::future::poll_fn(|cx| writer.poll_write(cx)),
        )
        .await
        .expect("the writer saw the peer close");
        assert!(over.is_ok());
    }

    /// A peer that stops reading: once output has waited for it a write timeout, the writer
    /// ends with a write timeout.
    #[tokio::test]
    async fn output_the_peer_does_not_take_times_out() {
        let (server, _peer) = pair().await;
        let outbox = outbox(64 << 20);
        let (_transport, body, _) = open_watched(
            Framing::Lines,
            bytes::Bytes::new(),
            outbox.clone(),
            Arc::default(),
        );
        let mut writer = ChunkedWriter::new(
            server,
            &tokio::runtime::Handle::current(),
            Vec::new(),
            body,
            Duration::from_millis(200),
        )
        .expect("writer");
        // More than the socket buffers of both ends hold.
        let message = Arc::new(crate::ws::Message::text(&"x".repeat(64 * 1024)));
        for _ in 0..256 {
            outbox.push(message.clone()).expect("room");
        }
        let started = std::time::Instant::now();
        let over = tokio::time::timeout(
            Duration::from_secs(5),
            std::future::poll_fn(|cx| writer.poll_write(cx)),
        )
        .await
        .expect("the writer gave up");
        assert!(matches!(over, Err(Failure::WriteTimeout)), "{over:?}");
        assert!(started.elapsed() >= Duration::from_millis(200));
    }
}
