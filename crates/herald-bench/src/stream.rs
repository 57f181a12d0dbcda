//! The HTTP-streaming and SSE clients (`--transport http-stream`, `--transport sse`): the
//! fallbacks of the Centrifugo SDKs, written as leanly as the WebSocket client of `ws.rs`.
//!
//! A connection is one plain HTTP/1.1 request whose response never ends: HTTP-streaming POSTs
//! its connect command (`/connection/http_stream`) and reads newline-delimited JSON replies;
//! SSE GETs `/connection/sse?cf_connect=<connect command>` and reads `data: <json>` events.
//! Either response comes with `Transfer-Encoding: chunked` (its length is unknown), which
//! [`Dechunker`] undoes. The client's later commands (the subscribe, the pongs) go as POSTs to
//! the emulation endpoint (`/emulation`), naming the connection by the `session` (and `node`)
//! of its connect reply, each over a short-lived connection of its own.

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::ws::{Message, Stamp, Target, recv_some, tcp_connect};

/// Where the emulation endpoint is (Centrifugo's default `emulation.handler_prefix`).
pub const EMULATION_PATH: &str = "/emulation";

/// Deadline of one emulation POST (connect, send, 204).
const EMULATION_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest amount of undelivered stream data held (a misbehaving server cannot make the
/// client allocate more).
const MAX_PENDING: usize = 16 << 20;

/// Which streaming transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/connection/http_stream`: POST, newline-delimited JSON.
    HttpStream,
    /// `/connection/sse`: GET with `cf_connect`, `text/event-stream`.
    Sse,
}

/// Undoes `Transfer-Encoding: chunked` incrementally: raw bytes in, body bytes appended to
/// an output buffer.
#[derive(Debug, Default)]
pub struct Dechunker {
    state: ChunkState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    #[default]
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(usize),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// The last chunk came: the body ended.
    Done,
}

impl Dechunker {
    /// Consumes what it can of `raw`, appending body bytes to `out`; returns how many bytes of
    /// `raw` it consumed (the rest is an incomplete chunk-size line or CRLF: give it again
    /// with more bytes after it).
    pub fn feed(&mut self, raw: &[u8], out: &mut Vec<u8>) -> io::Result<usize> {
        let mut at = 0;
        loop {
            let rest = &raw[at..];
            match self.state {
                ChunkState::Size => {
                    let Some(nl) = memchr::memmem::find(rest, b"\r\n") else {
                        if rest.len() > 1024 {
                            return Err(bad("chunk-size line too long"));
                        }
                        return Ok(at);
                    };
                    let line = &rest[..nl];
                    let hex = line.split(|&b| b == b';').next().unwrap_or_default();
                    let text = std::str::from_utf8(hex).map_err(|_| bad("bad chunk size"))?;
                    let size = usize::from_str_radix(text.trim(), 16)
                        .map_err(|_| bad("bad chunk size"))?;
                    at += nl + 2;
                    self.state = if size == 0 {
                        ChunkState::Done
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    if rest.is_empty() {
                        return Ok(at);
                    }
                    let n = left.min(rest.len());
                    out.extend_from_slice(&rest[..n]);
                    at += n;
                    self.state = if n == left {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - n)
                    };
                }
                ChunkState::DataEnd => {
                    if rest.len() < 2 {
                        return Ok(at);
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(bad("chunk data not followed by CRLF"));
                    }
                    at += 2;
                    self.state = ChunkState::Size;
                }
                // The trailer after the last chunk carries nothing the bench reads.
                ChunkState::Done => return Ok(raw.len()),
            }
        }
    }

    /// Whether the last chunk came.
    pub fn done(&self) -> bool {
        self.state == ChunkState::Done
    }
}

/// One streaming connection.
pub struct StreamClient {
    stream: TcpStream,
    target: Target,
    source: Option<IpAddr>,
    /// Raw bytes from the socket: `raw[..raw_end]`, of which the head may be an incomplete
    /// chunk line.
    raw: Vec<u8>,
    raw_end: usize,
    /// `None` when the response is not chunked (the body is the rest of the connection).
    chunks: Option<Dechunker>,
    /// Body bytes not yet handed out; the first `consumed` of them were handed out by the
    /// last [`StreamClient::read_message`].
    body: Vec<u8>,
    consumed: usize,
    /// The connection's session and node (from its connect reply), for emulation requests.
    session: String,
    node: String,
    /// When the last read from the socket returned.
    pub last_read: Stamp,
}

impl StreamClient {
    /// Opens the stream: sends the request carrying `connect` (a JSON connect command) and
    /// reads the response head (200 expected).
    pub async fn connect(
        kind: Kind,
        target: &Target,
        source: Option<IpAddr>,
        read_buf: usize,
        connect: &[u8],
    ) -> io::Result<StreamClient> {
        let mut stream = tcp_connect(target.addr, source).await?;
        let request = match kind {
            Kind::HttpStream => {
                let mut r = format!(
                    "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nUser-Agent: herald-bench\r\n\r\n",
                    target.path,
                    target.host,
                    connect.len()
                )
                .into_bytes();
                r.extend_from_slice(connect);
                r
            }
            Kind::Sse => {
                let sep = if target.path.contains('?') { '&' } else { '?' };
                format!(
                    "GET {}{sep}cf_connect={} HTTP/1.1\r\nHost: {}\r\n\
                     Accept: text/event-stream\r\nUser-Agent: herald-bench\r\n\r\n",
                    target.path,
                    percent_encode(connect),
                    target.host
                )
                .into_bytes()
            }
        };
        stream.write_all(&request).await?;
        let mut client = StreamClient {
            stream,
            target: target.clone(),
            source,
            raw: vec![0; read_buf.max(512)],
            raw_end: 0,
            chunks: None,
            body: Vec::new(),
            consumed: 0,
            session: String::new(),
            node: String::new(),
            last_read: Stamp::default(),
        };
        client.read_head().await?;
        Ok(client)
    }

    async fn read_head(&mut self) -> io::Result<()> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.raw[..self.raw_end]) {
                Ok(httparse::Status::Complete(n)) => {
                    if resp.code != Some(200) {
                        let body = String::from_utf8_lossy(&self.raw[n..self.raw_end]);
                        return Err(io::Error::other(format!(
                            "stream refused: HTTP {} {} {body}",
                            resp.code.unwrap_or(0),
                            resp.reason.unwrap_or(""),
                        )));
                    }
                    let chunked = resp.headers.iter().any(|h| {
                        h.name.eq_ignore_ascii_case("transfer-encoding")
                            && h.value.eq_ignore_ascii_case(b"chunked")
                    });
                    self.chunks = chunked.then(Dechunker::default);
                    self.raw.copy_within(n..self.raw_end, 0);
                    self.raw_end -= n;
                    return self.take_raw();
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => return Err(bad(&format!("bad response head: {e}"))),
            }
            if self.raw_end == self.raw.len() {
                return Err(bad("response head too large"));
            }
            let n = self.stream.read(&mut self.raw[self.raw_end..]).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.raw_end += n;
        }
    }

    /// Moves what it can of the raw bytes into the body.
    fn take_raw(&mut self) -> io::Result<()> {
        let used = match &mut self.chunks {
            Some(d) => d.feed(&self.raw[..self.raw_end], &mut self.body)?,
            None => {
                self.body.extend_from_slice(&self.raw[..self.raw_end]);
                self.raw_end
            }
        };
        self.raw.copy_within(used..self.raw_end, 0);
        self.raw_end -= used;
        if self.body.len() > MAX_PENDING {
            return Err(bad("a message larger than the client accepts"));
        }
        Ok(())
    }

    /// Reads until the stream holds at least one complete line, and returns all complete
    /// lines (newline-delimited JSON; for SSE, `data: <json>` lines and the blank lines between
    /// events, which the line reader skips). The slice lives until the next call.
    pub async fn read_message(&mut self) -> io::Result<Message<'_>> {
        if self.consumed > 0 {
            self.body.drain(..self.consumed);
            self.consumed = 0;
        }
        loop {
            if let Some(last) = memchr::memrchr(b'\n', &self.body) {
                self.consumed = last + 1;
                return Ok(Message::Text(&self.body[..=last], self.last_read));
            }
            if self.chunks.as_ref().is_some_and(Dechunker::done) {
                return Ok(Message::Close(1000, "the stream ended".into()));
            }
            let (n, arrival) = recv_some(&self.stream, &mut self.raw[self.raw_end..]).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.last_read = Stamp::read_now(arrival);
            self.raw_end += n;
            self.take_raw()?;
            if self.raw_end == self.raw.len() {
                // Only an over-long chunk-size line fills the buffer without being consumed.
                return Err(bad("unparseable chunked stream"));
            }
        }
    }

    /// Remembers the session and node of the connect reply `reply` (a JSON line).
    pub fn set_session(&mut self, reply: &[u8]) -> Result<(), String> {
        let v: serde_json::Value =
            serde_json::from_slice(reply).map_err(|e| format!("connect reply: {e}"))?;
        let result = &v["connect"];
        self.session = result["session"]
            .as_str()
            .ok_or("the connect reply has no session (is this a streaming connection?)")?
            .to_owned();
        self.node = result["node"].as_str().unwrap_or_default().to_owned();
        Ok(())
    }

    /// Sends `commands` (newline-delimited JSON) to the connection through the emulation
    /// endpoint, over a connection of their own; `Ok` on 204.
    pub async fn send_commands(&mut self, commands: &[u8]) -> io::Result<()> {
        let text = std::str::from_utf8(commands).map_err(|_| bad("commands are not UTF-8"))?;
        let body = serde_json::json!({
            "session": self.session,
            "node": self.node,
            "data": text,
        })
        .to_string();
        let target = &self.target;
        let source = self.source;
        crate::ws::with_timeout(EMULATION_TIMEOUT, async move {
            let mut s = tcp_connect(target.addr, source).await?;
            let req = format!(
                "POST {EMULATION_PATH} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\nUser-Agent: herald-bench\r\n\r\n{body}",
                target.host,
                body.len()
            );
            s.write_all(req.as_bytes()).await?;
            let mut buf = [0u8; 1024];
            let mut n = 0;
            loop {
                let mut headers = [httparse::EMPTY_HEADER; 16];
                let mut resp = httparse::Response::new(&mut headers);
                if let Ok(httparse::Status::Complete(_)) = resp.parse(&buf[..n]) {
                    return match resp.code {
                        Some(200 | 204) => Ok(()),
                        code => Err(io::Error::other(format!(
                            "emulation request refused: HTTP {}",
                            code.unwrap_or(0)
                        ))),
                    };
                }
                if n == buf.len() {
                    return Err(bad("emulation response head too large"));
                }
                let got = s.read(&mut buf[n..]).await?;
                if got == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                n += got;
            }
        })
        .await
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters (for `cf_connect`).
pub fn percent_encode(s: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunks split anywhere (inside a size line, inside the data, inside the CRLF) dechunk to
    /// the same body.
    #[test]
    fn dechunks_whatever_the_split() {
        let raw = b"5\r\nhello\r\n7;ext=1\r\n world\n\r\n0\r\n\r\n";
        for split in 0..raw.len() {
            let mut d = Dechunker::default();
            let mut out = Vec::new();
            let mut pending = raw[..split].to_vec();
            let used = d.feed(&pending, &mut out).unwrap();
            pending.drain(..used);
            pending.extend_from_slice(&raw[split..]);
            let used = d.feed(&pending, &mut out).unwrap();
            assert_eq!(used, pending.len(), "split at {split}");
            assert_eq!(out, b"hello world\n", "split at {split}");
            assert!(d.done());
        }
        let mut d = Dechunker::default();
        assert!(d.feed(b"zz\r\n", &mut Vec::new()).is_err());
        let mut d = Dechunker::default();
        assert!(d.feed(b"1\r\nabc", &mut Vec::new()).is_err());
    }

    #[test]
    fn percent_encodes_json() {
        assert_eq!(percent_encode(br#"{"id":1}"#), "%7B%22id%22%3A1%7D");
    }

    /// A scripted server: the stream's lines (SSE events split over chunks) come out whole,
    /// and an emulation request is a POST naming the session of the connect reply.
    #[tokio::test]
    async fn reads_a_chunked_event_stream_and_posts_commands() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = vec![0u8; 4096];
            let mut n = 0;
            while !req[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                n += s.read(&mut req[n..]).await.unwrap();
            }
            let head = String::from_utf8_lossy(&req[..n]).to_string();
            assert!(
                head.starts_with("GET /connection/sse?cf_connect=%7B"),
                "{head}"
            );
            let event = b"data: {\"id\":1,\"connect\":{\"session\":\"s1\",\"node\":\"n1\"}}\n\n";
            let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            out.extend_from_slice(format!("{:x}\r\n", 10).as_bytes());
            out.extend_from_slice(&event[..10]);
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(format!("{:x}\r\n", event.len() - 10).as_bytes());
            out.extend_from_slice(&event[10..]);
            out.extend_from_slice(b"\r\n");
            s.write_all(&out).await.unwrap();
            // The emulation POST, on a second connection.
            let (mut e, _) = listener.accept().await.unwrap();
            let mut req = vec![0u8; 4096];
            let mut n = 0;
            loop {
                n += e.read(&mut req[n..]).await.unwrap();
                let text = String::from_utf8_lossy(&req[..n]).to_string();
                if text.ends_with('}') {
                    break;
                }
            }
            e.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                .await
                .unwrap();
            let post = String::from_utf8_lossy(&req[..n]).to_string();
            s.write_all(b"0\r\n\r\n").await.unwrap();
            post
        });
        let target = Target {
            addr,
            host: addr.to_string(),
            path: "/connection/sse".into(),
        };
        let mut c = StreamClient::connect(Kind::Sse, &target, None, 512, br#"{"id":1}"#)
            .await
            .unwrap();
        let line = match c.read_message().await.unwrap() {
            Message::Text(t, _) => t.to_vec(),
            Message::Close(..) => panic!("closed"),
        };
        let json = line.strip_prefix(b"data: ").unwrap();
        let json = &json[..json.iter().position(|&b| b == b'\n').unwrap()];
        c.set_session(json).unwrap();
        c.send_commands(b"{}").await.unwrap();
        assert!(matches!(
            c.read_message().await.unwrap(),
            Message::Close(1000, _)
        ));
        let post = server.await.unwrap();
        assert!(post.starts_with("POST /emulation HTTP/1.1"), "{post}");
        assert!(
            post.ends_with(r#"{"data":"{}","node":"n1","session":"s1"}"#),
            "{post}"
        );
    }
}
