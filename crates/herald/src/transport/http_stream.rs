//! [`HttpStreamTransport`]: the client protocol over HTTP-streaming
//! (`/connection/http_stream`), the fallback of the SDKs where a WebSocket cannot get through.
//!
//! The client POSTs its connect command; the response is a stream that never ends while the
//! connection lives, carrying its replies and pushes as newline-delimited JSON. Its later
//! commands come as separate POSTs to the emulation endpoint ([`super::emulation`]), which
//! hands them to the connection by its session id.
//!
//! The response's body ([`StreamBody`]) is the connection's writer, draining the outbox as the
//! WebSocket's writer does (what it took and has not handed to the HTTP connection stays
//! counted against the outbox's budget, so a client that stops reading is closed with 3008).
//! Who polls it depends on the HTTP connection. Over plain HTTP/1.1 (the usual case), the HTTP
//! layer hands the socket, the response head and the body to the client's own task
//! ([`Stream::hand_over`], [`super::chunked`]), which then writes the stream itself in
//! [`HttpStreamTransport`]'s `poll_recv`, as a WebSocket's task does: one task per stream.
//! Over TLS or HTTP/2, hyper's connection task polls the body, and the client's task
//! ([`crate::client::serve`]) only waits in [`HttpStreamTransport`] for commands and for the
//! wake-ups the outbox passes on. Either way the client's commands are the connect command,
//! then the emulation endpoint's. A close request is written as a `disconnect` push and then
//! the stream ends, where a WebSocket would send a close frame; when the stream ends for any
//! reason (the client went away too), the client's task learns it and the connection ends.
//!
//! The same transport serves the unidirectional streams (`/connection/uni_http_stream`,
//! `/connection/uni_sse`; [`Framing::UniLines`], [`Framing::UniSse`]): the request carries a
//! connect *request*, handed to the client as [`Inbound::Connect`], no command follows, and
//! the writer sends each push bare, as a slice of the shared `{"push":…}` bytes.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use hyper::body::Frame;

use super::chunked::ChunkedWriter;
use super::emulation::{Emulation, Refused};
use super::{Failure, Inbound, Transport};
use crate::config::Config;
use crate::protocol::{Disconnect, Encoding, Push, Reply};
use crate::ws::{CloseCode, FrameBuf, Outbox, Outgoing, PushError, Queue};

/// The transport's name, as Centrifugo names it.
pub const NAME: &str = "http_stream";

/// Default path of the endpoint (Centrifugo's).
pub const PATH: &str = "/connection/http_stream";

/// The SSE transport's name, as Centrifugo names it.
pub const SSE_NAME: &str = "sse";

/// Default path of the SSE endpoint (Centrifugo's).
pub const SSE_PATH: &str = "/connection/sse";

/// The unidirectional HTTP-streaming transport's name, as Centrifugo names it.
pub const UNI_NAME: &str = "uni_http_stream";

/// Default path of the unidirectional HTTP-streaming endpoint (Centrifugo's).
pub const UNI_PATH: &str = "/connection/uni_http_stream";

/// The unidirectional SSE transport's name, as Centrifugo names it.
pub const UNI_SSE_NAME: &str = "uni_sse";

/// Default path of the unidirectional SSE endpoint (Centrifugo's).
pub const UNI_SSE_PATH: &str = "/connection/uni_sse";

/// How every push starts in the JSON the hub prepares for all its recipients
/// (`{"push":{…}}`): a unidirectional stream sends what is inside, as Centrifugo sends its
/// unidirectional clients bare pushes.
const PUSH_PREFIX: &[u8] = b"{\"push\":";

/// What ends each message on an HTTP stream.
const NEWLINE: Bytes = Bytes::from_static(b"\n");

/// What starts each SSE event (one per JSON message).
const SSE_DATA: Bytes = Bytes::from_static(b"data: ");

/// What ends each SSE event.
const SSE_END: Bytes = Bytes::from_static(b"\n\n");

/// How a stream delimits its messages (the difference between HTTP-streaming and SSE), and
/// whether it is unidirectional (pushes only, sent bare).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Newline-delimited JSON (`/connection/http_stream`).
    Lines,
    /// Protobuf (`/connection/http_stream` POSTed as `application/octet-stream`, what the SDKs'
    /// Protobuf builds send): the varint-length-prefixed replies and pushes one after the
    /// other, as they are in a WebSocket binary message.
    Binary,
    /// Server-sent events, one `data:` event per JSON message (`/connection/sse`).
    Sse,
    /// Newline-delimited bare pushes (`/connection/uni_http_stream`).
    UniLines,
    /// Server-sent events of bare pushes (`/connection/uni_sse`).
    UniSse,
}

impl Framing {
    /// Whether messages are SSE events.
    pub fn sse(self) -> bool {
        matches!(self, Framing::Sse | Framing::UniSse)
    }

    /// The encoding of the stream's messages.
    pub fn encoding(self) -> Encoding {
        match self {
            Framing::Binary => Encoding::Protobuf,
            _ => Encoding::Json,
        }
    }

    /// Whether the stream is unidirectional: its request carries the connect request and the
    /// stream carries bare pushes.
    pub fn unidirectional(self) -> bool {
        matches!(self, Framing::UniLines | Framing::UniSse)
    }
}

/// What the writer (the response body), the client's task and the emulation endpoint share
/// of one streaming connection.
#[derive(Debug)]
pub struct Stream {
    outbox: Arc<Outbox>,
    state: Mutex<Shared>,
    /// Messages the writer handed to the HTTP connection so far, and whether it is waiting
    /// for output (rather than for the HTTP connection to take what it has): what
    /// [`Stream::stalled`] looks at.
    handed: AtomicU64,
    idle: AtomicBool,
}

#[derive(Debug, Default)]
struct Shared {
    /// Commands from the emulation endpoint, for the client's task, in order.
    commands: VecDeque<Bytes>,
    /// The outbox was notified: the client's task is to look at its deadlines.
    woken: bool,
    /// The stream ended (written to its end, or dropped with its HTTP connection).
    ended: bool,
    /// The close code the stream ended with, once it wrote one.
    closed_with: Option<u16>,
    /// The HTTP connection was cut for a write that missed its deadline.
    cut: bool,
    /// The session id the connection registered with the emulation endpoint.
    session: Option<String>,
    /// Where the connect's outcome goes while the request that opened a unidirectional stream
    /// waits for it (`connect_code_to_http_response`): see [`HttpStreamTransport::await_connect`].
    outcome: Option<tokio::sync::oneshot::Sender<ConnectOutcome>>,
    /// The stream's socket and body, handed over by the HTTP layer for the client's task to
    /// write ([`Stream::hand_over`]), until that task takes them.
    handed_over: Option<Box<ChunkedWriter>>,
    /// The client's task is gone (its transport dropped): nobody would take a hand-over.
    transport_gone: bool,
    /// The client's task, waiting for one of the above.
    task: Option<Waker>,
}

impl Stream {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        // Every critical section is a few field updates: a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the shared state with `change` and wakes the client's task.
    fn tell_task(&self, change: impl FnOnce(&mut Shared)) {
        let task = {
            let mut state = self.lock();
            change(&mut state);
            state.task.take()
        };
        if let Some(task) = task {
            task.wake();
        }
    }

    /// A probe of the write deadline, taken by the HTTP connection every write timeout: the
    /// number of messages handed over so far, or `None` while the writer waits for output
    /// (nothing is late). Two probes a write timeout apart that give the same number mean the
    /// HTTP connection took nothing in that time: its peer stopped reading.
    pub fn progress(&self) -> Option<u64> {
        if self.idle.load(Ordering::Acquire) {
            return None;
        }
        Some(self.handed.load(Ordering::Acquire))
    }

    /// Ends the connection whose HTTP connection was cut (a write deadline passed): its task
    /// reports a write timeout.
    pub fn cut(&self) {
        self.tell_task(|state| {
            state.ended = true;
            state.cut = true;
        });
    }

    /// Hands the stream's writer (its socket, response head and body) to the client's task,
    /// which writes the stream from then on; given back when that task has ended already, for
    /// the caller to write what it left.
    pub fn hand_over(&self, writer: Box<ChunkedWriter>) -> Result<(), Box<ChunkedWriter>> {
        let task = {
            let mut state = self.lock();
            if state.transport_gone {
                return Err(writer);
            }
            state.handed_over = Some(writer);
            state.task.take()
        };
        if let Some(task) = task {
            task.wake();
        }
        Ok(())
    }

    /// Queues commands from the emulation endpoint for the client's task; refused when
    /// `max_waiting` are already waiting or the stream ended.
    pub(crate) fn deliver(&self, commands: Bytes, max_waiting: usize) -> Result<(), Refused> {
        let task = {
            let mut state = self.lock();
            if state.ended {
                return Err(Refused::NoSession);
            }
            if state.commands.len() >= max_waiting {
                return Err(Refused::Busy);
            }
            state.commands.push_back(commands);
            state.task.take()
        };
        if let Some(task) = task {
            task.wake();
        }
        Ok(())
    }
}

/// How the connect of a unidirectional stream ended, for the request that waits for it: the
/// connect push was queued, or the connect was refused with this code and message.
pub type ConnectOutcome = Result<(), (u32, String)>;

/// Opens a streaming connection whose connect command is `connect`: the transport for the
/// client's task, and the body of the response that carries its output.
pub fn open(
    connect: Bytes,
    outbox: Arc<Outbox>,
    emulation: Arc<Emulation>,
) -> (HttpStreamTransport, StreamBody) {
    let (transport, body, _) = open_watched(Framing::Lines, connect, outbox, emulation);
    (transport, body)
}

/// [`open`], with the [`Stream`] the HTTP connection watches for its write deadline.
pub fn open_watched(
    framing: Framing,
    connect: Bytes,
    outbox: Arc<Outbox>,
    emulation: Arc<Emulation>,
) -> (HttpStreamTransport, StreamBody, Arc<Stream>) {
    let stream = Arc::new(Stream {
        outbox,
        state: Mutex::new(Shared::default()),
        handed: AtomicU64::new(0),
        idle: AtomicBool::new(false),
    });
    let body = StreamBody {
        stream: stream.clone(),
        queue: Queue::default(),
        settle: 0,
        framing,
        pieces: VecDeque::new(),
        last: None,
        done: false,
        last_batch: 0,
    };
    let transport = HttpStreamTransport {
        stream: stream.clone(),
        framing,
        connect: Some(connect),
        emulation,
        writer: None,
    };
    (transport, body, stream)
}

/// The response that carries the stream (newline-delimited JSON, or `text/event-stream`), with
/// the headers that keep browsers and proxies from caching or buffering it (a buffered push
/// arrives late or never).
pub fn response<B>(framing: Framing, body: B) -> Response<B> {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    let content_type = match framing {
        Framing::Sse | Framing::UniSse => "text/event-stream; charset=utf-8",
        Framing::Binary => "application/octet-stream",
        Framing::Lines | Framing::UniLines => "application/json",
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache, no-store, must-revalidate, max-age=0"),
    );
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(header::EXPIRES, HeaderValue::from_static("0"));
    // nginx buffers responses unless told not to.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// The client protocol over one HTTP stream: the client's side of a [`Stream`].
pub struct HttpStreamTransport {
    stream: Arc<Stream>,
    framing: Framing,
    /// The connect command from the request's body, until the client takes it.
    connect: Option<Bytes>,
    emulation: Arc<Emulation>,
    /// The stream's writer, once the HTTP layer handed it over (plain HTTP/1.1): boxed, so an
    /// idle connection's task pays a pointer for it.
    writer: Option<Box<ChunkedWriter>>,
}

impl HttpStreamTransport {
    /// Makes the connect's outcome known to whoever holds the receiver: `Ok` when the connect
    /// push is queued, the refusal's code and message when it is refused (the receiver sees
    /// the sender dropped if the connection ends before either). For
    /// `connect_code_to_http_response`, whose response waits for it.
    pub fn await_connect(&self) -> tokio::sync::oneshot::Receiver<ConnectOutcome> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        self.stream.lock().outcome = Some(sender);
        receiver
    }

    /// Sends the connect's outcome to the request waiting for it, if one is.
    fn tell_outcome(&self, outcome: ConnectOutcome) {
        if let Some(sender) = self.stream.lock().outcome.take() {
            let _ = sender.send(outcome);
        }
    }
}

impl Drop for HttpStreamTransport {
    fn drop(&mut self) {
        // The connection ended: no command can reach it any more, and no writer either.
        let (session, handed_over) = {
            let mut state = self.stream.lock();
            state.transport_gone = true;
            (state.session.take(), state.handed_over.take())
        };
        // Dropped out of the lock: dropping a body tells the stream it ended, which locks.
        drop(handed_over);
        if let Some(session) = session {
            self.emulation.unregister(&session);
        }
    }
}

impl Transport for HttpStreamTransport {
    fn name(&self) -> &'static str {
        match self.framing {
            Framing::Lines | Framing::Binary => NAME,
            Framing::Sse => SSE_NAME,
            Framing::UniLines => UNI_NAME,
            Framing::UniSse => UNI_SSE_NAME,
        }
    }

    fn protocol(&self) -> Encoding {
        self.framing.encoding()
    }

    fn unidirectional(&self) -> bool {
        self.framing.unidirectional()
    }

    fn outbox(&self) -> &Arc<Outbox> {
        &self.stream.outbox
    }

    fn send_replies(&self, replies: FrameBuf) -> Result<(), PushError> {
        // Framed as a WebSocket frame, like every outbox item; the writer sends the payload.
        let queued = self
            .stream
            .outbox
            .push_frame(replies.finish(crate::prepared::opcode(self.protocol())));
        if self.framing.unidirectional() {
            // A unidirectional client is sent nothing before its connect push.
            self.tell_outcome(Ok(()));
        }
        queued
    }

    fn connect_refused(&self, code: u32, message: &str) {
        self.tell_outcome(Err((code, message.to_owned())));
    }

    fn connected(&self, session: &str) {
        self.stream.lock().session = Some(session.to_owned());
        self.emulation.register(session, &self.stream);
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Inbound>, Failure>> {
        if let Some(connect) = self.connect.take() {
            if !self.framing.unidirectional() {
                return Poll::Ready(Ok(Some(Inbound::Commands(connect))));
            }
            // The server checked it parses before it opened the stream.
            return Poll::Ready(match serde_json::from_slice(&connect) {
                Ok(request) => Ok(Some(Inbound::Connect(Box::new(request)))),
                Err(e) => Err(Failure::Other(Box::new(e))),
            });
        }
        loop {
            // Written before commands are looked at, as a WebSocket's task does: replies and
            // pushes queued since the last poll go out first.
            if let Some(writer) = &mut self.writer {
                match writer.poll_write(cx) {
                    Poll::Pending => {}
                    // Over (the last chunk written, or the peer gone): dropping the body
                    // marks the stream ended.
                    Poll::Ready(Ok(())) => self.writer = None,
                    Poll::Ready(Err(failure)) => return Poll::Ready(Err(failure)),
                }
            }
            let mut state = self.stream.lock();
            if let Some(writer) = state.handed_over.take() {
                drop(state);
                self.writer = Some(writer);
                continue;
            }
            if let Some(commands) = state.commands.pop_front() {
                if state.commands.is_empty() {
                    // Commands come a POST at a time, seldom: no buffer kept between them.
                    state.commands = VecDeque::new();
                }
                return Poll::Ready(Ok(Some(Inbound::Commands(commands))));
            }
            if std::mem::take(&mut state.woken) {
                return Poll::Ready(Ok(Some(Inbound::Wake)));
            }
            if state.cut {
                return Poll::Ready(Err(Failure::WriteTimeout));
            }
            // A writer of its own still writing the stream's end is waited for.
            if state.ended && self.writer.is_none() {
                return Poll::Ready(Ok(None));
            }
            match &mut state.task {
                Some(task) if task.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
    }

    fn ended_with(&self) -> u16 {
        self.stream
            .lock()
            .closed_with
            .unwrap_or(CloseCode::ABNORMAL.0)
    }

    fn message_size_limit(&self, config: &Config) -> (&'static str, usize) {
        body_limit(config, self.framing)
    }
}

/// The largest request (connect command, or connect request) a stream of `framing` accepts,
/// and the option that sets it.
pub fn body_limit(config: &Config, framing: Framing) -> (&'static str, usize) {
    match framing {
        Framing::Lines | Framing::Binary => (
            "http_stream.max_request_body_size",
            config.http_stream.max_request_body_size,
        ),
        Framing::Sse => (
            "sse.max_request_body_size",
            config.sse.max_request_body_size,
        ),
        Framing::UniLines => (
            "uni_http_stream.max_request_body_size",
            config.uni_http_stream.max_request_body_size,
        ),
        Framing::UniSse => (
            "uni_sse.max_request_body_size",
            config.uni_sse.max_request_body_size,
        ),
    }
}

/// The body of a streaming response: the connection's writer (see the module documentation).
pub struct StreamBody {
    stream: Arc<Stream>,
    /// What was taken from the outbox and not yet handed to the HTTP connection.
    queue: Queue,
    /// Bytes handed to the HTTP connection since the last drain, given back to the budget at
    /// the next one.
    settle: i32,
    framing: Framing,
    /// What to hand over before the next message: the pieces of the current one (its
    /// delimiters, and for SSE its lines), all slices of shared bytes.
    pieces: VecDeque<Bytes>,
    /// The `disconnect` push to write last.
    last: Option<Bytes>,
    /// The close request was taken: the stream ends after `queue` and `last`.
    done: bool,
    /// How many messages the last drain of the outbox took.
    last_batch: usize,
}

impl StreamBody {
    /// Queues the pieces of one message (one or more JSON lines) as the stream frames it.
    fn frame_message(&mut self, mut message: Bytes) {
        if self.framing == Framing::Binary {
            // Delimited already: each message is its own length prefix and bytes.
            self.pieces.push_back(message);
            return;
        }
        if self.framing == Framing::Lines {
            self.pieces.push_back(message);
            self.pieces.push_back(NEWLINE);
            return;
        }
        // One JSON message per line: an SSE `data:` field ends at a newline, so each is an
        // event of its own (JSON text has no raw newline inside a message), and a
        // unidirectional stream unwraps each push of its own.
        while !message.is_empty() {
            let mut line = match message.iter().position(|&b| b == b'\n') {
                Some(at) => {
                    let line = message.split_to(at);
                    message = message.slice(1..);
                    line
                }
                None => std::mem::take(&mut message),
            };
            if line.is_empty() {
                continue;
            }
            if self.framing.unidirectional() {
                line = bare_push(line);
            }
            if self.framing.sse() {
                self.pieces.push_back(SSE_DATA);
                self.pieces.push_back(line);
                self.pieces.push_back(SSE_END);
            } else {
                self.pieces.push_back(line);
                self.pieces.push_back(NEWLINE);
            }
        }
    }

    /// Marks the stream ended and tells the client's task.
    fn end(&self) {
        self.stream.tell_task(|state| state.ended = true);
    }
}

impl Drop for StreamBody {
    fn drop(&mut self) {
        self.stream.idle.store(true, Ordering::Release);
        self.end();
    }
}

/// The payload of an outbox item: the bytes after its WebSocket frame header (a cheap
/// reference to them, never a copy).
fn payload(item: &Outgoing) -> Bytes {
    let frame = match item {
        Outgoing::Shared(message) => message.frame(),
        Outgoing::Frame(frame) => frame,
    };
    let header = frame.len() - frame.payload().len();
    frame.as_bytes().slice(header..)
}

/// What a unidirectional client is sent of a JSON message: the push inside `{"push":…}`, a
/// slice of the shared bytes rather than a copy (a ping, `{}`, stays as it is).
fn bare_push(message: Bytes) -> Bytes {
    if message.len() > PUSH_PREFIX.len() + 1
        && message.starts_with(PUSH_PREFIX)
        && message.ends_with(b"}")
    {
        return message.slice(PUSH_PREFIX.len()..message.len() - 1);
    }
    message
}

/// A `disconnect` push in `encoding`, as the stream's last message.
fn disconnect_push(encoding: Encoding, code: CloseCode, reason: &str) -> Bytes {
    let push = Reply::push(Push::disconnect(Disconnect::custom(
        code.0,
        reason.to_owned(),
    )));
    let mut out = Vec::new();
    // Writing to a Vec cannot fail, and a disconnect push always encodes.
    if encoding.append_reply(&push, true, &mut out).is_err() {
        out.clear();
    }
    Bytes::from(out)
}

impl hyper::body::Body for StreamBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let frame = this.next_frame(cx);
        let stream = &this.stream;
        // Waiting for output, or ended: nothing the HTTP connection owes a write for.
        let idle = matches!(frame, Poll::Pending | Poll::Ready(None));
        stream.idle.store(idle, Ordering::Release);
        if !idle {
            stream.handed.fetch_add(1, Ordering::AcqRel);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        false
    }
}

impl StreamBody {
    /// The next piece of the stream (see [`hyper::body::Body::poll_frame`]).
    fn next_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self;
        loop {
            if let Some(piece) = this.pieces.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(piece))));
            }
            if let Some(item) = this.queue.pop_front() {
                let len = i32::try_from(item.len()).unwrap_or(i32::MAX);
                this.settle = this.settle.saturating_add(len);
                this.frame_message(payload(&item));
                continue;
            }
            if let Some(last) = this.last.take() {
                this.frame_message(last);
                continue;
            }
            if this.done {
                this.end();
                return Poll::Ready(None);
            }
            let outbox = &this.stream.outbox;
            if !outbox.poll_pending(cx) {
                // Idle until the outbox has more. A stream that took only a message or two
                // keeps no buffers (its next message allocates them again), as a WebSocket
                // does: idle streams hold none, while a busy one keeps its own.
                if this.last_batch <= 2 {
                    this.queue.release();
                    this.pieces = VecDeque::new();
                }
                return Poll::Pending;
            }
            let settle = std::mem::take(&mut this.settle);
            let (close, notified) = outbox.drain_for_writer(&mut this.queue, settle);
            this.last_batch = this.queue.len();
            if notified {
                this.stream.tell_task(|state| state.woken = true);
            }
            if let Some(close) = close {
                if close.discard_queued {
                    // A slow consumer: its backlog would only delay the push saying why.
                    this.queue.clear();
                }
                this.stream.lock().closed_with = Some(close.code.0);
                this.last = Some(disconnect_push(
                    this.framing.encoding(),
                    close.code,
                    &close.reason,
                ));
                this.done = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;
    use std::sync::Arc;

    fn outbox(max: usize) -> Arc<Outbox> {
        Arc::new(Outbox::new(max, CloseCode(3008), "slow"))
    }

    /// Replies and shared messages go out as their payloads, each ended by a newline; a
    /// close request becomes a `disconnect` push and the end of the stream, which the client's
    /// task then sees as the end of the connection.
    #[tokio::test]
    async fn output_is_newline_delimited_and_a_close_is_a_disconnect_push_then_the_end() {
        let outbox = outbox(1 << 20);
        let (mut transport, mut body) = open(
            Bytes::from_static(b"{\"id\":1,\"connect\":{}}"),
            outbox.clone(),
            Arc::default(),
        );
        let first = std::future::poll_fn(|cx| transport.poll_recv(cx)).await;
        assert!(
            matches!(first, Ok(Some(Inbound::Commands(c))) if &c[..] == b"{\"id\":1,\"connect\":{}}")
        );
        let mut replies = FrameBuf::new();
        std::io::Write::write_all(&mut replies, b"{\"id\":1,\"connect\":{}}").expect("write");
        transport.send_replies(replies).expect("queued");
        outbox
            .push(Arc::new(crate::ws::Message::text("{\"push\":{}}")))
            .expect("queued");
        transport.close(&Disconnect::custom(4000, "bye"));
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            out.extend_from_slice(frame.expect("infallible").data_ref().expect("data"));
        }
        assert_eq!(
            String::from_utf8_lossy(&out),
            "{\"id\":1,\"connect\":{}}\n{\"push\":{}}\n\
             {\"push\":{\"disconnect\":{\"code\":4000,\"reason\":\"bye\",\"reconnect\":true}}}\n"
        );
        let end = std::future::poll_fn(|cx| transport.poll_recv(cx)).await;
        assert!(matches!(end, Ok(None)));
        assert_eq!(transport.ended_with(), 4000);
    }

    /// SSE: each JSON line of a message is a `data:` event of its own, the close included.
    #[tokio::test]
    async fn sse_sends_one_event_per_json_line() {
        let outbox = outbox(1 << 20);
        let (transport, mut body, _) =
            open_watched(Framing::Sse, Bytes::new(), outbox.clone(), Arc::default());
        let mut replies = FrameBuf::new();
        std::io::Write::write_all(&mut replies, b"{\"id\":1}\n{\"id\":2}").expect("write");
        transport.send_replies(replies).expect("queued");
        transport.close(&Disconnect::custom(4000, "bye"));
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            out.extend_from_slice(frame.expect("infallible").data_ref().expect("data"));
        }
        assert_eq!(
            String::from_utf8_lossy(&out),
            "data: {\"id\":1}\n\ndata: {\"id\":2}\n\n\
             data: {\"push\":{\"disconnect\":{\"code\":4000,\"reason\":\"bye\",\"reconnect\":true}}}\n\n"
        );
    }

    /// Unidirectional: each push goes out bare (`{"push":X}` as `X`), a ping (`{}`) as it is,
    /// one per line (or per SSE event), and the close as a bare `disconnect` push.
    #[tokio::test]
    async fn a_unidirectional_stream_sends_bare_pushes() {
        for (framing, start, end) in [
            (Framing::UniLines, "", "\n"),
            (Framing::UniSse, "data: ", "\n\n"),
        ] {
            let outbox = outbox(1 << 20);
            let (transport, mut body, _) =
                open_watched(framing, Bytes::new(), outbox.clone(), Arc::default());
            assert!(transport.unidirectional());
            let mut replies = FrameBuf::new();
            std::io::Write::write_all(
                &mut replies,
                b"{\"push\":{\"connect\":{}}}\n{\"push\":{\"channel\":\"a\"}}",
            )
            .expect("write");
            transport.send_replies(replies).expect("queued");
            outbox
                .push(Arc::new(crate::ws::Message::text("{}")))
                .expect("queued");
            transport.close(&Disconnect::custom(4000, "bye"));
            let mut out = Vec::new();
            while let Some(frame) = body.frame().await {
                out.extend_from_slice(frame.expect("infallible").data_ref().expect("data"));
            }
            let expected: String = [
                "{\"connect\":{}}",
                "{\"channel\":\"a\"}",
                "{}",
                "{\"disconnect\":{\"code\":4000,\"reason\":\"bye\",\"reconnect\":true}}",
            ]
            .iter()
            .map(|m| format!("{start}{m}{end}"))
            .collect();
            assert_eq!(String::from_utf8_lossy(&out), expected, "{framing:?}");
        }
    }

    /// The connect request of a unidirectional stream reaches the client as one, not as
    /// commands.
    #[tokio::test]
    async fn a_unidirectional_stream_yields_its_connect_request() {
        let (mut transport, _body, _) = open_watched(
            Framing::UniLines,
            Bytes::from_static(b"{\"token\":\"t\"}"),
            outbox(1 << 20),
            Arc::default(),
        );
        let first = std::future::poll_fn(|cx| transport.poll_recv(cx)).await;
        assert!(matches!(first, Ok(Some(Inbound::Connect(c))) if c.token == "t"));
    }

    /// A client that does not read: what the writer took and did not hand over stays
    /// counted, so the outbox fills to its budget and the connection is closed with 3008.
    #[tokio::test]
    async fn a_stream_nobody_reads_is_closed_as_a_slow_consumer() {
        let outbox = outbox(1000);
        let (_transport, mut body) = open(Bytes::new(), outbox.clone(), Arc::default());
        let message = Arc::new(crate::ws::Message::text(&"x".repeat(98)));
        let mut pushed = 0;
        // The HTTP connection takes one frame and then stops polling (its peer stopped
        // reading): the writer has drained the queue once.
        outbox.push(message.clone()).expect("room");
        let _ = body.frame().await;
        while outbox.push(message.clone()).is_ok() {
            pushed += 1;
            assert!(pushed < 100, "the budget never filled");
        }
        assert!(
            pushed <= 10,
            "{pushed} messages queued past a 1000-byte budget"
        );
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            out.extend_from_slice(frame.expect("infallible").data_ref().expect("data"));
        }
        let text = String::from_utf8_lossy(&out);
        assert!(text.ends_with("{\"push\":{\"disconnect\":{\"code\":3008,\"reason\":\"slow\",\"reconnect\":true}}}\n"), "{text}");
    }

    /// Commands posted to the emulation endpoint reach the connection's task by its session,
    /// until the connection ends.
    #[tokio::test]
    async fn emulation_requests_reach_the_connection_by_its_session() {
        let emulation = Arc::new(Emulation::default());
        let (mut transport, body) = open(Bytes::new(), outbox(1 << 20), emulation.clone());
        let _ = std::future::poll_fn(|cx| transport.poll_recv(cx)).await;
        assert_eq!(
            emulation.deliver(br#"{"session":"s1","node":"n","data":"{\"id\":2}"}"#),
            Err(Refused::NoSession)
        );
        transport.connected("s1");
        emulation
            .deliver(br#"{"session":"s1","node":"n","data":"{\"id\":2}"}"#)
            .expect("delivered");
        let next = std::future::poll_fn(|cx| transport.poll_recv(cx)).await;
        assert!(matches!(next, Ok(Some(Inbound::Commands(c))) if &c[..] == b"{\"id\":2}"));
        assert_eq!(emulation.deliver(b"{}"), Err(Refused::BadRequest));
        drop(body);
        assert!(matches!(
            std::future::poll_fn(|cx| transport.poll_recv(cx)).await,
            Ok(None)
        ));
        drop(transport);
        assert!(emulation.is_empty());
    }
}
