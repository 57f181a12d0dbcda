//! [`WebSocket`]: one server-side connection on a TCP socket — reading into a buffer shared by
//! the thread, answering pings, the close handshake, timeouts, and writing everything queued in
//! its [`Outbox`] with vectored writes.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use flate2::Compress;
use hyper::upgrade::Upgraded;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::decoder::{Decoder, Event, Limits};
use crate::deflate::{self, DeflateParams};
use crate::error::{CloseCode, Error, ProtocolError};
use crate::frame::{Frame, OpCode};
use crate::handshake::Negotiated;
use crate::instant::PackedInstant;
use crate::message::{Incoming, Message};
use crate::outbox::{Outbox, Outgoing, Queue, Waiting};
use crate::pacer::Pacer;
use crate::tls::Tls;

/// Size of the per-thread read buffer.
const READ_BUF: usize = 64 * 1024;
/// Most frames handed to one `sendmsg`.
const MAX_IOVECS: usize = 128;
/// A peer that is gone must give this connection an error, not the process a SIGPIPE.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
/// Elsewhere there is no such flag; Rust programs ignore SIGPIPE from the start anyway.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) const SEND_FLAGS: libc::c_int = 0;

thread_local! {
    /// The read buffer shared by every connection on this thread. A connection reads into it
    /// and decodes at once, before any await, so it never needs one of its own.
    static READ_BUFFER: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; READ_BUF].into_boxed_slice());
}

/// Connection settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// What the peer may send.
    pub limits: Limits,
    /// Time a peer has to finish a frame (or fragmented message) it started.
    pub read_timeout: Duration,
    /// Time the socket may stay unwritable while output is waiting; then the connection is
    /// dropped, since the peer stopped reading.
    pub write_timeout: Duration,
    /// Time to wait for the peer's close frame, and then for its TCP close, after ours.
    pub close_timeout: Duration,
    /// Hand pong frames to the application (for WebSocket-level keepalive).
    pub deliver_pongs: bool,
    /// Write coalescing: output queued within this long after the connection's previous write
    /// waits until this long after it, so that a busy connection writes at most about once
    /// per interval, many frames per system call, instead of once per message. The first
    /// message after a quiet period is written at once. Zero writes every wake-up at once.
    pub write_coalesce: Duration,
    /// Write pacing, shared by the server's connections: while many of them write, the hold
    /// of write coalescing grows so that their writes together stay within a budget (see
    /// [`Pacer`]). Only with a non-zero `write_coalesce`.
    pub pacer: Option<Arc<Pacer>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            limits: Limits::default(),
            read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(3),
            deliver_pongs: false,
            write_coalesce: Duration::from_millis(5),
            pacer: None,
        }
    }
}

/// Where the connection is in its life. One byte, compared on every poll: the deadlines of
/// the closing phases are kept in [`Cold::close_deadline`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Open,
    /// We sent a close frame; waiting for the peer's until the close deadline.
    CloseSent,
    /// Close frames went both ways (or the connection failed); flushing, then half-closing
    /// and waiting for the peer to close TCP.
    Closing,
    /// Our side is shut; reading until EOF or the close deadline.
    Draining,
    Closed,
}

/// What a connection needs only once something unusual happened — a frame left unfinished by a
/// read, a socket that stopped taking output, the close handshake, a failure — or when it
/// compresses (permessage-deflate, off by default). Boxed in [`WebSocket::cold`] and allocated
/// the first time one of them happens (then kept: it is never allocated twice), so that the
/// many idle connections of a push server do not each carry the bytes they never use.
#[derive(Default)]
struct Cold {
    /// The negotiated permessage-deflate state, if any: set when the connection starts.
    deflate: Option<Deflate>,
    /// Since when the socket refuses output that is waiting (the write timeout runs from it).
    stalled_since: Option<Instant>,
    /// Since when a started frame (or fragmented message) is unfinished. Here rather than
    /// inline because a read rarely ends inside a frame on a push connection; the first
    /// time it does costs the one allocation of this box.
    partial_since: Option<Instant>,
    /// When [`Phase::CloseSent`] or [`Phase::Draining`] gives up: always set in those phases.
    close_deadline: Option<Instant>,
    peer_close: Option<(CloseCode, String)>,
    /// A protocol error found while decoding, acted on once the messages decoded before it
    /// were handed out (so a peer's valid messages are answered before the connection fails).
    decode_error: Option<ProtocolError>,
    failure: Option<Error>,
    /// The TLS session of a `wss://` connection: set when the connection starts, so a TLS
    /// connection always has its `Cold` part.
    tls: Option<Box<Tls>>,
}

impl std::fmt::Debug for Cold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cold")
            .field("deflate", &self.deflate.as_ref().map(|d| d.params))
            .field("stalled_since", &self.stalled_since)
            .field("partial_since", &self.partial_since)
            .field("close_deadline", &self.close_deadline)
            .field("peer_close", &self.peer_close)
            .field("decode_error", &self.decode_error)
            .field("failure", &self.failure)
            .field("tls", &self.tls)
            .finish()
    }
}

/// permessage-deflate state, in [`Cold`]: most connections do not compress (compression is
/// off by default), and inline the parameters and compressor would cost each of them bytes
/// it never uses. A compressing connection pays one pointer more to reach its parameters when
/// it writes.
struct Deflate {
    params: DeflateParams,
    /// Compressor with context takeover, only when the client allowed it and the server chose
    /// it. Boxed on its own (it is large) so that connections sharing compression, the
    /// default, allocate only the parameters.
    compressor: Option<Box<Compress>>,
}

/// What reading keeps between reads: the decoder of a frame or message a read cut off, and
/// decoded events the application has not taken yet. Boxed in [`WebSocket::inbound`] only
/// while it holds something: on a push connection incoming frames are rare and small, most
/// reads end on a frame boundary, and a decoder at rest is made again for the next read
/// rather than kept by every idle connection.
struct Inbound {
    decoder: Decoder,
    events: VecDeque<Event>,
}

/// A server-side WebSocket connection.
///
/// Drive it with [`WebSocket::recv`], which also writes what other tasks queue in its
/// [`Outbox`]; to send, push into the outbox (from anywhere) or call [`WebSocket::send`].
///
/// Every connection keeps one inline in its task for its whole life, so its size is paid per
/// connection: what the write path uses on every wake-up is inline, what only unusual moments
/// need is boxed (closing, failures, compression, reads that leave something), and a test
/// keeps it so.
pub struct WebSocket {
    stream: TcpStream,
    config: Arc<Config>,
    /// What reading keeps between reads, only while it keeps something (see [`Inbound`]).
    inbound: Option<Box<Inbound>>,
    outbox: Arc<Outbox>,
    /// Items taken from the outbox and not yet fully written (the first maybe partly).
    writing: Queue,
    /// What only unusual moments (and compression) need (see [`Cold`]); allocated on first
    /// use.
    cold: Option<Box<Cold>>,
    phase: Phase,
    /// When the last write that sent bytes happened (for write coalescing). While the
    /// connection holds its output ([`Flags::HOLDING`]), the hold ends `write_coalesce` after
    /// it: no write happens during a hold, so the end needs no field of its own.
    last_write: PackedInstant,
    /// The timer of the earliest timeout or write hold, while one applies.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Items moved from the outbox by the last drain that found any (saturating: only "at
    /// most two" matters, see [`WebSocket::flush`]).
    last_batch: u8,
    flags: Flags,
    /// Bytes to settle with the outbox's budget at the next drain: what was written (or
    /// shrunk by compression) since the last one, less the pongs queued here, which count
    /// against the budget like everything else sent to the peer (see
    /// [`Outbox::drain_for_writer`]). In what would otherwise be the struct's padding.
    settle: i32,
}

/// The connection's yes/no states, in one byte: every byte of a [`WebSocket`] is paid by
/// every idle connection, and one more here would cost each of their tasks 128.
#[derive(Clone, Copy, Debug, Default)]
struct Flags(u8);

impl Flags {
    /// The last hold ran out (write coalescing): if the flush that follows writes anything,
    /// the connection is busy and the next hold starts right away (see [`WebSocket::holding`]).
    const HOLD_EXPIRED: u8 = 1;
    /// An [`Incoming::Wake`] is due (the outbox was notified).
    const WAKE: u8 = 2;
    /// The peer will send nothing more (end of stream read).
    const EOF: u8 = 4;
    /// Queued output waits (write coalescing) until `write_coalesce` after the last write,
    /// unless something forces a flush.
    const HOLDING: u8 = 8;

    fn get(self, flag: u8) -> bool {
        self.0 & flag != 0
    }

    fn set(&mut self, flag: u8, on: bool) {
        if on {
            self.0 |= flag;
        } else {
            self.0 &= !flag;
        }
    }
}

impl std::fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        /// The phase, with its deadline for the closing phases (kept apart, in [`Cold`]): when
        /// a closing connection gives up is what one looks for in its debug output.
        struct PhaseDebug<'a>(&'a WebSocket);
        impl std::fmt::Debug for PhaseDebug<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let name = match self.0.phase {
                    Phase::CloseSent => "CloseSent",
                    Phase::Draining => "Draining",
                    phase => return phase.fmt(f),
                };
                match self.0.close_deadline() {
                    Some(deadline) => f.debug_struct(name).field("deadline", &deadline).finish(),
                    None => f.write_str(name),
                }
            }
        }
        f.debug_struct("WebSocket")
            .field("peer", &self.stream.peer_addr().ok())
            .field("phase", &PhaseDebug(self))
            .finish()
    }
}

impl WebSocket {
    /// Takes over the socket of an upgraded hyper connection. `Upgraded` must wrap a
    /// `TokioIo<TcpStream>` (hyper's own server over tokio) or, for `wss://`, a
    /// `TokioIo<tokio_rustls::server::TlsStream<TcpStream>>`; bytes hyper read past the
    /// request are decoded first.
    pub fn from_upgraded(
        upgraded: Upgraded,
        negotiated: &Negotiated,
        config: Arc<Config>,
        outbox: Arc<Outbox>,
    ) -> Result<WebSocket, Error> {
        let (stream, tls, already_read) = crate::tls::upgraded_stream(upgraded)?;
        WebSocket::start(stream, tls, &already_read, negotiated, config, outbox)
    }

    /// As [`WebSocket::from_upgraded`], with the socket moved to `runtime`'s I/O driver: the
    /// connection must then be served by a task on `runtime`. A server that serves HTTP on
    /// one runtime and connections on another hands each one over this way.
    pub fn from_upgraded_on(
        runtime: &tokio::runtime::Handle,
        upgraded: Upgraded,
        negotiated: &Negotiated,
        config: Arc<Config>,
        outbox: Arc<Outbox>,
    ) -> Result<WebSocket, Error> {
        let (stream, tls, already_read) = crate::tls::upgraded_stream(upgraded)?;
        // Deregistered from the runtime it was accepted on, registered with `runtime`.
        let stream = stream.into_std()?;
        let _on_runtime = runtime.enter();
        let stream = TcpStream::from_std(stream)?;
        WebSocket::start(stream, tls, &already_read, negotiated, config, outbox)
    }

    /// Wraps a TCP stream whose handshake is done; `already_read` holds bytes read past it.
    pub fn from_stream(
        stream: TcpStream,
        already_read: &[u8],
        negotiated: &Negotiated,
        config: Arc<Config>,
        outbox: Arc<Outbox>,
    ) -> Result<WebSocket, Error> {
        WebSocket::start(stream, None, already_read, negotiated, config, outbox)
    }

    /// [`WebSocket::from_stream`], over TLS when `tls` is given.
    fn start(
        stream: TcpStream,
        tls: Option<Box<Tls>>,
        already_read: &[u8],
        negotiated: &Negotiated,
        config: Arc<Config>,
        outbox: Arc<Outbox>,
    ) -> Result<WebSocket, Error> {
        // Latency matters more than packet count here; batching is done by vectored sends.
        stream.set_nodelay(true)?;
        let deflate = negotiated.deflate.map(|params| Deflate {
            params,
            compressor: (!params.shares_compression()).then(|| {
                Box::new(deflate::new_compressor(
                    params.server_max_window_bits,
                    params.level,
                ))
            }),
        });
        let cold = (deflate.is_some() || tls.is_some()).then(|| {
            Box::new(Cold {
                deflate,
                tls,
                ..Cold::default()
            })
        });
        let mut ws = WebSocket {
            stream,
            config,
            inbound: None,
            outbox,
            writing: Queue::default(),
            cold,
            phase: Phase::Open,
            last_write: PackedInstant::NONE,
            timer: None,
            last_batch: 0,
            flags: Flags::default(),
            settle: 0,
        };
        if !already_read.is_empty() {
            ws.decode(already_read);
        }
        Ok(ws)
    }

    /// The connection's outbound queue, to hand to publishers.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// Queues a message (see [`Outbox::push`]).
    pub fn send(&self, message: Arc<Message>) -> Result<(), crate::outbox::PushError> {
        self.outbox.push(message)
    }

    /// Starts the close handshake after what is already queued.
    pub fn close(&self, code: CloseCode, reason: &str) {
        self.outbox.close(code, reason);
    }

    /// The code and reason of the peer's close frame, once received.
    pub fn peer_close(&self) -> Option<&(CloseCode, String)> {
        self.cold.as_ref()?.peer_close.as_ref()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.stream.peer_addr()
    }

    /// Waits for the next message, writing queued output meanwhile.
    ///
    /// Returns `Ok(None)` once the connection closed cleanly (close handshake done), and an
    /// error when it ended any other way. Cancel-safe: it can sit in a `select!` and be dropped
    /// at any await without losing a message.
    pub async fn recv(&mut self) -> Result<Option<Incoming>, Error> {
        // All state lives in `self`: the future is a pointer, so a connection task that awaits
        // it stays small, and dropping it at any point loses nothing.
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// [`WebSocket::recv`] as a poll function.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Incoming>, Error>> {
        loop {
            if let Some(message) = self.next_event() {
                return Poll::Ready(Ok(Some(message)));
            }
            if let Some(error) = self.cold.as_mut().and_then(|c| c.decode_error.take()) {
                self.fail(Error::Protocol(error));
            }
            if self.phase == Phase::Closed {
                self.timer = None;
                return Poll::Ready(match self.cold.as_mut().and_then(|c| c.failure.take()) {
                    Some(error) => Err(error),
                    None => Ok(None),
                });
            }
            if self.flags.get(Flags::EOF) && self.phase == Phase::Open {
                self.fail(Error::ClosedAbnormally);
                continue;
            }
            let mut holding = self.holding();
            let flushed = if holding {
                true
            } else {
                let wrote_before = self.last_write;
                match self.flush() {
                    Ok(flushed) => {
                        if flushed
                            && self.flags.get(Flags::HOLD_EXPIRED)
                            && self.last_write != wrote_before
                        {
                            holding = self.hold_again();
                        }
                        flushed
                    }
                    Err(e) => {
                        self.fail(e);
                        continue;
                    }
                }
            };
            if self.flags.get(Flags::WAKE) && self.phase == Phase::Open {
                // After the flush: what was queued before the wake-up is on its way first.
                self.flags.set(Flags::WAKE, false);
                return Poll::Ready(Ok(Some(Incoming::Wake)));
            }
            if flushed && self.has_events() && self.phase == Phase::Open {
                // Input waited for this output (see `input_paused`), which is now written.
                continue;
            }
            if flushed && self.phase == Phase::Closing {
                self.shut_write();
                continue;
            }
            if self.flags.get(Flags::EOF)
                && matches!(self.phase, Phase::Draining | Phase::CloseSent)
            {
                self.phase = Phase::Closed;
                continue;
            }
            let mut deadline = self.deadline(flushed);
            if holding {
                let until = self.hold_until();
                deadline = deadline.min(until).or(until);
            }
            // Deadlines before input: a peer whose input never stops must not keep its
            // timeouts (above all the write timeout of one that does not read) from firing.
            if deadline.is_some_and(|at| Instant::now() >= at) {
                self.on_deadline(flushed);
                continue;
            }
            // No reading while output is stalled or decoded input waits for it to move
            // (backpressure, see `input_paused`): the peer's input then waits in the socket's
            // buffers, not in this process.
            let reading = matches!(self.phase, Phase::Open | Phase::CloseSent | Phase::Draining)
                && !self.flags.get(Flags::EOF)
                && flushed
                && !self.has_events();
            let accepting = self.phase == Phase::Open;
            // Each source registers this task's waker; the first one ready is handled and the
            // loop starts over (the order: input, output space, queued output, timers).
            if reading {
                match self.stream.poll_read_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        if let Err(e) = self.read_ready() {
                            self.fail(e);
                        }
                        continue;
                    }
                    Poll::Ready(Err(e)) => {
                        self.fail(Error::Io(e));
                        continue;
                    }
                    Poll::Pending => {}
                }
            }
            if !flushed {
                match self.stream.poll_write_ready(cx) {
                    Poll::Ready(Ok(())) => continue,
                    Poll::Ready(Err(e)) => {
                        self.fail(Error::Io(e));
                        continue;
                    }
                    Poll::Pending => {}
                }
            }
            if flushed && accepting && !holding && self.outbox.poll_pending(cx) {
                continue;
            }
            if accepting && holding && self.outbox.poll_urgent(cx) {
                continue;
            }
            match deadline {
                Some(deadline) => {
                    let timer = self
                        .timer
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                    if timer.deadline() != deadline {
                        timer.as_mut().reset(deadline);
                    }
                    if timer.as_mut().poll(cx).is_ready() {
                        self.on_deadline(flushed);
                        continue;
                    }
                }
                // No timeout applies: an idle connection holds no timer.
                None => self.timer = None,
            }
            return Poll::Pending;
        }
    }

    /// Handles decoded events until one is a message for the application, or until the
    /// output they caused is more than should wait (see [`WebSocket::input_paused`]).
    fn next_event(&mut self) -> Option<Incoming> {
        // The outbox is asked once per call, not per event: only the writer's own queue grows
        // while events are handled here (by pongs), and a message handed out comes back here
        // after the application queued its replies.
        let backlogged = self.has_events() && self.phase == Phase::Open && self.outbox.backlogged();
        while self.has_events() && !backlogged && !self.input_paused() {
            let Some(event) = self
                .inbound
                .as_mut()
                .and_then(|inbound| inbound.events.pop_front())
            else {
                break;
            };
            match event {
                Event::Message(message) => {
                    if self.phase == Phase::Open {
                        return Some(message);
                    }
                }
                Event::Ping(payload) => {
                    if self.phase == Phase::Open {
                        let pong = Frame::pong(&payload);
                        // At most 127 bytes: a control frame's payload is at most 125.
                        self.settle = self.settle.saturating_sub(pong.len() as i32);
                        self.writing.push_back(Outgoing::Frame(pong));
                    }
                }
                Event::Pong(payload) => {
                    if self.config.deliver_pongs && self.phase == Phase::Open {
                        return Some(Incoming::Pong(payload));
                    }
                }
                Event::Close(close) => self.on_peer_close(close),
            }
        }
        // Incoming frames are rare on a push connection: an idle one keeps nothing of reading
        // (unless events wait for their output to move).
        if self
            .inbound
            .as_ref()
            .is_some_and(|inbound| inbound.decoder.at_rest() && inbound.events.is_empty())
        {
            self.inbound = None;
        }
        None
    }

    /// Whether decoded events wait to be handled.
    fn has_events(&self) -> bool {
        self.inbound
            .as_ref()
            .is_some_and(|inbound| !inbound.events.is_empty())
    }

    /// Whether the peer's input waits until its output moves: more items wait to be written
    /// than one system call takes, or the outbox is backlogged ([`Outbox::backlogged`], which
    /// [`WebSocket::next_event`] asks once per call). Only while open: a closing connection
    /// answers nothing, so its input costs nothing.
    ///
    /// This is the backpressure that bounds a client that sends without reading: each of its
    /// pings or commands queues an answer, and it gets no more of them read while its answers
    /// wait. Its socket's buffers fill, TCP stops it, and if it still does not read, the write
    /// timeout ends the connection.
    fn input_paused(&self) -> bool {
        self.phase == Phase::Open && self.writing.len() >= MAX_IOVECS
    }

    fn on_peer_close(&mut self, close: Option<(CloseCode, String)>) {
        match self.phase {
            Phase::Open => {
                // Echo the code (RFC 6455 §5.5.1); queued data is dropped, partly written
                // frames are finished first so the stream stays well formed.
                self.truncate_queue();
                let reply = match &close {
                    Some((code, _)) => Frame::close(*code, ""),
                    None => Frame::new(OpCode::Close, &[]),
                };
                self.writing.push_back(Outgoing::Frame(reply));
                self.outbox.shut();
                self.phase = Phase::Closing;
            }
            Phase::CloseSent => self.phase = Phase::Closing,
            _ => {}
        }
        self.cold_mut().peer_close = close;
        if let Some(inbound) = &mut self.inbound {
            inbound.events.clear();
        }
    }

    /// The state of unusual moments, allocated the first time one needs it.
    fn cold_mut(&mut self) -> &mut Cold {
        self.cold.get_or_insert_with(Box::default)
    }

    /// The deadline of [`Phase::CloseSent`] and [`Phase::Draining`].
    fn close_deadline(&self) -> Option<Instant> {
        self.cold.as_ref()?.close_deadline
    }

    /// Since when a started frame (or fragmented message) is unfinished, if one is.
    fn partial_since(&self) -> Option<Instant> {
        self.cold.as_ref()?.partial_since
    }

    /// The negotiated permessage-deflate parameters, if any.
    fn deflate_params(&self) -> Option<&DeflateParams> {
        deflate_params(&self.cold)
    }

    /// When the current write hold ends (see [`Flags::HOLDING`]).
    fn hold_until(&self) -> Option<Instant> {
        if !self.flags.get(Flags::HOLDING) {
            return None;
        }
        self.last_write.get().map(|at| at + self.hold_interval())
    }

    /// How long a busy connection holds its output now: `write_coalesce`, stretched by the
    /// pacer while many connections write (zero when coalescing is off).
    fn hold_interval(&self) -> Duration {
        let min = self.config.write_coalesce;
        match &self.config.pacer {
            Some(pacer) if !min.is_zero() => pacer.hold(min),
            _ => min,
        }
    }

    /// Drops queued items that have not started to be written.
    fn truncate_queue(&mut self) {
        let keep = usize::from(self.writing.front_written() > 0);
        self.writing.truncate(keep);
    }

    /// Sends a close frame and waits for the peer's.
    fn start_close(&mut self, code: CloseCode, reason: &str) {
        if self.phase != Phase::Open {
            return;
        }
        self.writing
            .push_back(Outgoing::Frame(Frame::close(code, reason)));
        self.outbox.shut();
        self.phase = Phase::CloseSent;
        let deadline = Instant::now() + self.config.close_timeout;
        self.cold_mut().close_deadline = Some(deadline);
    }

    /// Ends the connection because of `error`. A protocol error is answered with a close frame
    /// carrying its code; the socket is then half-closed without waiting for the peer's reply
    /// (RFC 6455 §7.1.7, "fail the WebSocket connection").
    fn fail(&mut self, error: Error) {
        if self.phase == Phase::Draining {
            // The close handshake already happened; a reset now changes nothing.
            self.phase = Phase::Closed;
            return;
        }
        let answered = match &error {
            Error::Protocol(ProtocolError { code, reason }) if self.phase == Phase::Open => {
                // What the application queued before the failure still goes out first.
                self.drain_outbox();
                if self.phase == Phase::Open {
                    self.writing
                        .push_back(Outgoing::Frame(Frame::close(*code, reason)));
                }
                self.phase = Phase::Closing;
                true
            }
            _ => false,
        };
        self.cold_mut().failure.get_or_insert(error);
        self.outbox.shut();
        if !answered {
            self.phase = Phase::Closed;
        }
    }

    /// Reads what the socket has into the thread's buffer and decodes it.
    fn read_ready(&mut self) -> Result<(), Error> {
        loop {
            let read = READ_BUFFER.with(|cell| {
                let mut buf = cell.borrow_mut();
                let read = match self.cold.as_deref_mut().and_then(|c| c.tls.as_deref_mut()) {
                    Some(tls) => tls.read(&self.stream, &mut buf[..]),
                    None => self.stream.try_read(&mut buf[..]),
                };
                match read {
                    Ok(0) => Ok(0),
                    Ok(n) => {
                        self.decode(&buf[..n]);
                        Ok(n)
                    }
                    Err(e) => Err(e),
                }
            });
            match read {
                Ok(0) => {
                    self.flags.set(Flags::EOF, true);
                    return Ok(());
                }
                // A short read means the socket is (almost certainly) empty: stop before a
                // system call that would only say "would block".
                Ok(n) if n < READ_BUF => return Ok(()),
                Ok(_) => {
                    let failed = self.cold.as_ref().is_some_and(|c| c.decode_error.is_some());
                    let events = self.inbound.as_ref().is_some_and(|i| !i.events.is_empty());
                    if failed || events {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Io(e)),
            }
        }
    }

    fn decode(&mut self, data: &[u8]) {
        let inbound = self.inbound.get_or_insert_with(|| {
            Box::new(Inbound {
                decoder: Decoder::new(
                    self.config.limits.clone(),
                    deflate_params(&self.cold).copied(),
                ),
                events: VecDeque::new(),
            })
        });
        let result = inbound.decoder.feed(data, &mut inbound.events);
        let in_progress = inbound.decoder.in_progress();
        if inbound.events.is_empty() && inbound.decoder.at_rest() {
            self.inbound = None;
        }
        if let Err(e) = result {
            self.cold_mut().decode_error = Some(e);
        }
        if in_progress {
            self.cold_mut()
                .partial_since
                .get_or_insert_with(Instant::now);
        } else if let Some(cold) = &mut self.cold {
            cold.partial_since = None;
        }
    }

    /// Whether queued output should wait (write coalescing): new output was signalled within
    /// `write_coalesce` of the previous write, and nothing is half written.
    ///
    /// A connection that had output waiting when its hold ran out is busy: after that flush it
    /// holds again at once ([`WebSocket::hold_again`]) and does not ask its outbox for a
    /// wake-up, so a steady stream costs one wake-up (the timer's) per interval instead of two
    /// (a publication's, then the timer's). A hold that runs out with nothing queued ends it:
    /// the connection waits for its outbox again, and the next message after the quiet
    /// period is written at once.
    fn holding(&mut self) -> bool {
        let interval = self.hold_interval();
        // Input waiting for output to move (see `input_paused`) must not wait for a hold too,
        // nor encrypted bytes a TLS connection still holds.
        let tls_waiting = || {
            let tls = self.cold.as_ref().and_then(|c| c.tls.as_ref());
            tls.is_some_and(|tls| tls.wants_write())
        };
        if interval.is_zero()
            || self.phase != Phase::Open
            || !self.writing.is_empty()
            || self.has_events()
            || tls_waiting()
        {
            self.flags.set(Flags::HOLDING, false);
            self.flags.set(Flags::HOLD_EXPIRED, false);
            return false;
        }
        if let Some(until) = self.hold_until() {
            self.flags.set(Flags::HOLDING, false);
            if Instant::now() < until {
                if self.outbox.waiting() != Waiting::Urgent {
                    self.flags.set(Flags::HOLDING, true);
                    return true;
                }
                // A reply (or a close) was queued: it and everything before it go now, and
                // the busy period ends.
                return false;
            }
            self.flags.set(Flags::HOLD_EXPIRED, true);
            return false;
        }
        self.flags.set(Flags::HOLD_EXPIRED, false);
        // Only queued output starts a hold (a wake-up whose output already went out with the
        // previous write must not). Whether the output was found in this poll or woke the
        // parked task makes no difference: the parked-then-woken case is the fan-out one.
        // The clock is read before the outbox: a connection that wrote long ago (each
        // connection of a loaded server writes once per round) takes no lock here.
        let Some(until) = self.last_write.get().map(|at| at + interval) else {
            return false;
        };
        if Instant::now() >= until || self.outbox.waiting() != Waiting::Output {
            return false;
        }
        self.flags.set(Flags::HOLDING, true);
        true
    }

    /// Starts the next hold right after a flush that a hold's end released (see
    /// [`WebSocket::holding`]); returns whether the connection now holds.
    fn hold_again(&mut self) -> bool {
        self.flags.set(Flags::HOLD_EXPIRED, false);
        let holding = self.last_write.is_some() && self.phase == Phase::Open;
        self.flags.set(Flags::HOLDING, holding);
        holding
    }

    /// Moves the outbox into the write queue.
    fn drain_outbox(&mut self) {
        if self.phase != Phase::Open {
            return;
        }
        let start = self.writing.len();
        let settle = std::mem::take(&mut self.settle);
        let (close, notified) = self.outbox.drain_for_writer(&mut self.writing, settle);
        if notified {
            self.flags.set(Flags::WAKE, true);
        }
        if self.writing.len() > start {
            self.last_batch = u8::try_from(self.writing.len() - start).unwrap_or(u8::MAX);
        }
        if let Some(Deflate {
            params,
            compressor: Some(compress),
        }) = self.cold.as_deref_mut().and_then(|c| c.deflate.as_mut())
        {
            // Context takeover: each message must be compressed in order, by this connection.
            for item in self.writing.iter_mut().skip(start) {
                if let Outgoing::Shared(message) = item {
                    if message.needs_own_compression(Some(params)) {
                        let counted = message.frame().len();
                        let compressed = message.compress_with(compress);
                        // Counted against the budget as queued; given back as written.
                        let shrunk = counted as i64 - compressed.len() as i64;
                        *item = Outgoing::Frame(compressed);
                        self.settle = (i64::from(self.settle) + shrunk)
                            .clamp(i64::from(i32::MIN), i64::from(i32::MAX))
                            as i32;
                    }
                }
            }
        }
        if let Some(close) = close {
            if close.discard_queued {
                self.truncate_queue();
            }
            self.start_close(close.code, &close.reason);
        }
    }

    /// Writes as much as the socket takes. Returns whether everything was written.
    fn flush(&mut self) -> Result<bool, Error> {
        loop {
            self.drain_outbox();
            if self.writing.is_empty() {
                if !self.flush_tls()? {
                    return Ok(false);
                }
                self.unstall();
                // A connection that wrote only a frame or two keeps no write buffer (its next
                // swap hands the outbox an unallocated queue): idle connections hold no queue
                // memory, while a busy one, writing many frames per call, keeps its buffer.
                if self.writing.is_allocated() && self.last_batch <= 2 {
                    self.writing.release();
                }
                return Ok(true);
            }
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            let deflate = self.deflate_params();
            for item in self.writing.iter().take(MAX_IOVECS) {
                let bytes: &Bytes = match item {
                    Outgoing::Shared(message) => message.frame_for(deflate).as_bytes(),
                    Outgoing::Frame(frame) => frame.as_bytes(),
                };
                let bytes = if count == 0 {
                    &bytes[self.writing.front_written() as usize..]
                } else {
                    &bytes[..]
                };
                slices[count] = IoSlice::new(bytes);
                count += 1;
            }
            // sendmsg rather than writev: the same bytes, without the file layer writev goes
            // through first (position lock, permission and notification hooks), which on a
            // loopback fan-out profile was ~5 % of the server's time in the kernel.
            let sent = match self.cold.as_deref_mut().and_then(|c| c.tls.as_deref_mut()) {
                Some(tls) => tls.send(&self.stream, &slices[..count]),
                None => self.stream.try_io(tokio::io::Interest::WRITABLE, || {
                    socket2::SockRef::from(&self.stream)
                        .send_vectored_with_flags(&slices[..count], SEND_FLAGS)
                }),
            };
            match sent {
                Ok(0) => return Err(Error::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    self.unstall();
                    if !self.config.write_coalesce.is_zero() {
                        let now = Instant::now();
                        if let Some(pacer) = &self.config.pacer {
                            pacer.wrote(self.last_write.get(), now);
                        }
                        self.last_write = now.into();
                    }
                    self.advance(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.cold_mut()
                        .stalled_since
                        .get_or_insert_with(Instant::now);
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Io(e)),
            }
        }
    }

    /// Sends the encrypted bytes a TLS connection still holds (none on a plain one). Returns
    /// whether none are left; if some are, the write timeout runs from now.
    fn flush_tls(&mut self) -> Result<bool, Error> {
        let Some(tls) = self.cold.as_deref_mut().and_then(|c| c.tls.as_deref_mut()) else {
            return Ok(true);
        };
        match tls.flush(&self.stream) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.cold_mut()
                    .stalled_since
                    .get_or_insert_with(Instant::now);
                Ok(false)
            }
            Err(e) => Err(Error::Io(e)),
        }
    }

    /// The socket took output: the write timeout no longer runs.
    fn unstall(&mut self) {
        if let Some(cold) = &mut self.cold {
            cold.stalled_since = None;
        }
    }

    /// Since when the socket refuses output that is waiting, if it does.
    fn stalled_since(&self) -> Option<Instant> {
        self.cold.as_ref()?.stalled_since
    }

    /// Drops `n` written bytes from the front of the write queue.
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.writing.front() else {
                return;
            };
            let len = match front {
                Outgoing::Shared(message) => message.frame_for(self.deflate_params()).len(),
                Outgoing::Frame(frame) => frame.len(),
            } - self.writing.front_written() as usize;
            if n >= len {
                n -= len;
                if let Some(item) = self.writing.pop_front() {
                    // Written: its bytes go back to the budget at the next drain.
                    let counted = i32::try_from(item.len()).unwrap_or(i32::MAX);
                    self.settle = self.settle.saturating_add(counted);
                }
            } else {
                // Less than the item's remaining length, which fits in 32 bits.
                self.writing.front_wrote(n as u32);
                n = 0;
            }
        }
    }

    /// Half-closes the socket after the close handshake, then waits for the peer's FIN.
    fn shut_write(&mut self) {
        if let Some(tls) = self.cold.as_deref_mut().and_then(|c| c.tls.as_deref_mut()) {
            tls.close_notify(&self.stream);
        }
        let _ = socket2::SockRef::from(&self.stream).shutdown(std::net::Shutdown::Write);
        self.phase = Phase::Draining;
        let deadline = Instant::now() + self.config.close_timeout;
        self.cold_mut().close_deadline = Some(deadline);
    }

    /// The earliest moment a timeout fires, if any applies.
    fn deadline(&self, flushed: bool) -> Option<Instant> {
        let mut deadline = match self.phase {
            Phase::CloseSent | Phase::Draining => self.close_deadline(),
            _ => None,
        };
        let mut earliest = |t: Instant| {
            deadline = Some(deadline.map_or(t, |d| d.min(t)));
        };
        if !flushed {
            if let Some(since) = self.stalled_since() {
                earliest(since + self.config.write_timeout);
            }
        }
        if self.phase == Phase::Open {
            if let Some(since) = self.partial_since() {
                earliest(since + self.config.read_timeout);
            }
        }
        deadline
    }

    fn on_deadline(&mut self, flushed: bool) {
        let now = Instant::now();
        if !flushed
            && self
                .stalled_since()
                .is_some_and(|since| now >= since + self.config.write_timeout)
        {
            self.cold_mut().failure.get_or_insert(Error::WriteTimeout);
            self.phase = Phase::Closed;
            self.outbox.shut();
            return;
        }
        match self.phase {
            Phase::CloseSent | Phase::Draining
                if self
                    .close_deadline()
                    .is_some_and(|deadline| now >= deadline) =>
            {
                self.phase = Phase::Closed;
            }
            Phase::Open
                if self
                    .partial_since()
                    .is_some_and(|since| now >= since + self.config.read_timeout) =>
            {
                self.cold_mut().failure = Some(Error::ReadTimeout);
                self.start_close(CloseCode::POLICY, "read timeout");
            }
            _ => {}
        }
    }
}

/// The negotiated permessage-deflate parameters kept in `cold`, if any (a function of the
/// field, not of the connection, so that it can be read while another field is borrowed).
fn deflate_params(cold: &Option<Box<Cold>>) -> Option<&DeflateParams> {
    cold.as_ref()?.deflate.as_ref().map(|d| &d.params)
}

impl Drop for WebSocket {
    fn drop(&mut self) {
        self.outbox.shut();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every connection keeps its `WebSocket` inline in its task for its whole life, idle or
    /// not: each byte here is paid once per connection (×15,000 on a loaded server), so growth
    /// must be deliberate (state that is not needed on every wake-up belongs in `Cold`,
    /// `Inbound` or another box allocated only when needed). The bound is a cliff, not a
    /// budget: Herald's connection task holds this and its protocol state, and tokio rounds
    /// a task up to a multiple of 128 bytes; at 96 bytes here (release build) the task takes
    /// 256, and eight bytes more would make it 384 (see Herald's
    /// `the_serve_future_keeps_the_task_within_256_bytes`). Measured beside the socket, which
    /// mio makes eight bytes larger in debug builds: 32 + 64 in release.
    #[test]
    fn connection_state_stays_small() {
        use std::mem::size_of;
        let own = size_of::<WebSocket>() - size_of::<TcpStream>();
        assert!(own <= 64, "WebSocket is {} bytes beside its socket", own);
        assert!(
            size_of::<Decoder>() <= 64,
            "Decoder is {} bytes",
            size_of::<Decoder>()
        );
    }
}
