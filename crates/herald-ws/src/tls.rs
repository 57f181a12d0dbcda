//! TLS inside a [`WebSocket`](crate::WebSocket) (`wss://`), kept in the readiness model of
//! plain connections.
//!
//! A plain connection reads with `try_read` and writes with one vectored `sendmsg`, both on
//! the raw socket, and waits for readiness in between. A TLS connection does the same on the
//! same socket, with rustls's sans-I/O [`ServerConnection`] in the middle: [`Tls::read`] is a
//! `try_read` of plaintext (socket bytes → `read_tls` → `process_new_packets` → the
//! plaintext reader), and [`Tls::send`] a `sendmsg` of plaintext (frames → the connection's
//! plaintext writer, which encrypts them into its TLS buffer → `write_tls` to the socket).
//! Both say `WouldBlock` exactly when the socket does, so the connection's waiting, write
//! timeout and backpressure work unchanged.
//!
//! The TLS output buffer is bounded ([`SEND_BUFFER`]): a peer that stops reading makes
//! [`Tls::send`] take nothing more once it is full, as a full socket buffer does, and the
//! frames wait in the connection's queue, within its outbox budget. The state lives in the
//! connection's boxed `Cold` part, so a plain connection pays nothing for it.

use std::io::{self, IoSlice, Read, Write};

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use rustls::ServerConnection;
use tokio::net::TcpStream;

use crate::connection::SEND_FLAGS;
use crate::error::Error;

/// The most encrypted bytes a connection keeps waiting for the socket: rustls's default, set
/// explicitly since backpressure depends on it. Plaintext is taken only while the buffer has
/// room, so a connection's TLS output never holds more than this plus one record.
pub const SEND_BUFFER: usize = 64 * 1024;

/// The TLS session of one WebSocket connection (see the module documentation).
pub(crate) struct Tls {
    conn: ServerConnection,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("wants_write", &self.conn.wants_write())
            .finish_non_exhaustive()
    }
}

/// The TCP stream of an upgraded hyper connection, its TLS session if it was a TLS one
/// (`TokioIo<tokio_rustls::server::TlsStream<TcpStream>>`), and the bytes hyper read past
/// the request (plaintext).
pub(crate) fn upgraded_stream(
    upgraded: Upgraded,
) -> Result<(TcpStream, Option<Box<Tls>>, bytes::Bytes), Error> {
    let upgraded = match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => return Ok((parts.io.into_inner(), None, parts.read_buf)),
        Err(upgraded) => upgraded,
    };
    match upgraded.downcast::<TokioIo<tokio_rustls::server::TlsStream<TcpStream>>>() {
        Ok(parts) => {
            let (stream, conn) = parts.io.into_inner().into_inner();
            Ok((stream, Some(Tls::new(conn)), parts.read_buf))
        }
        Err(_) => Err(Error::Io(io::Error::other(
            "WebSocket upgrade on a transport other than TCP or TLS over TCP (tokio-rustls) \
             is not supported",
        ))),
    }
}

impl Tls {
    /// Takes over a session whose handshake is done.
    pub(crate) fn new(mut conn: ServerConnection) -> Box<Tls> {
        conn.set_buffer_limit(Some(SEND_BUFFER));
        Box::new(Tls { conn })
    }

    /// Reads plaintext into `buf`, as `try_read` on the socket would: `Ok(0)` at the end of
    /// the stream (the peer's close_notify, or its FIN), `WouldBlock` when the socket has
    /// nothing more. Plaintext already decrypted is handed out before the socket is read
    /// again, so `WouldBlock` (which clears the socket's readiness) is never returned while
    /// rustls still holds some.
    pub(crate) fn read(&mut self, stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                // The peer's FIN without close_notify: for a WebSocket, whose close handshake
                // says whether the end was clean, an end of stream like any other.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            // No plaintext waiting: read records from the socket.
            self.conn.read_tls(&mut Socket(stream))?;
            if let Err(e) = self.conn.process_new_packets() {
                // rustls queued an alert saying why; send it if the socket takes it.
                let _ = self.flush(stream);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }

    /// Writes plaintext from `slices`, as a vectored `sendmsg` on the socket would: returns how
    /// many bytes were taken (encrypted, and sent as far as the socket takes them), or
    /// `WouldBlock` when the TLS buffer is full and the socket takes nothing.
    pub(crate) fn send(&mut self, stream: &TcpStream, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        match self.flush(stream) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        let taken = self.conn.writer().write_vectored(slices)?;
        if taken == 0 && slices.iter().any(|s| !s.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        match self.flush(stream) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(taken)
    }

    /// Whether encrypted bytes wait for the socket.
    pub(crate) fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Writes waiting encrypted bytes to the socket. `Ok(())` once none wait; `WouldBlock`
    /// when the socket stops taking them first.
    pub(crate) fn flush(&mut self, stream: &TcpStream) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut Socket(stream)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Ends the session: queues a close_notify alert and sends what the socket takes now (the
    /// caller half-closes the socket next; a peer that misses the alert sees the FIN).
    pub(crate) fn close_notify(&mut self, stream: &TcpStream) {
        self.conn.send_close_notify();
        let _ = self.flush(stream);
    }
}

/// The socket as blocking-style `Read`/`Write` for rustls, without ever blocking: reads are
/// `try_read`, writes `sendmsg` (no SIGPIPE) through tokio's readiness, so `WouldBlock`
/// clears the readiness the connection then waits for.
struct Socket<'a>(&'a TcpStream);

impl Read for Socket<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for Socket<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_io(tokio::io::Interest::WRITABLE, || {
            socket2::SockRef::from(self.0).send_vectored_with_flags(bufs, SEND_FLAGS)
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
