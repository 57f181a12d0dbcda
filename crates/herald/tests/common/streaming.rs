//! A client of the streaming transports over a raw HTTP/1.1 connection: an HTTP-streaming POST
//! (newline-delimited JSON) or an SSE GET (`data:` events), read from its chunked response, and
//! the POSTs of the emulation endpoint that carry the connection's commands.

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{HttpResponse, STEP, http};

/// Which streaming transport a [`Stream`] speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `/connection/http_stream`: a POST of the connect command, replies one JSON per line.
    HttpStream,
    /// `/connection/sse`: a GET with the connect command in `cf_connect`, replies as events.
    Sse,
}

/// One streaming connection.
pub struct Stream {
    kind: Kind,
    reader: BufReader<TcpStream>,
    /// Body bytes read and not yet split into lines.
    pending: Vec<u8>,
    ended: bool,
}

impl Stream {
    /// Opens a connection of `kind` on `port` with the `connect` command; the stream and the
    /// response's head (lower case).
    pub async fn open(kind: Kind, port: u16, connect: &Value) -> (Stream, String) {
        let socket = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        Stream::open_on(kind, socket, port, connect).await
    }

    /// [`Stream::open`] on a socket the test connected itself (e.g. with a small receive
    /// buffer).
    pub async fn open_on(
        kind: Kind,
        socket: TcpStream,
        port: u16,
        connect: &Value,
    ) -> (Stream, String) {
        let request = match kind {
            Kind::HttpStream => {
                let body = connect.to_string();
                format!(
                    "POST /connection/http_stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
                     Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            }
            Kind::Sse => sse_get("/connection/sse", connect),
        };
        Stream::request(kind, socket, &request).await
    }

    /// Sends `request` (whole, or the rest of one the test began) on `socket` and reads the
    /// response's head; the body is then read as `kind` says.
    pub async fn request(kind: Kind, mut socket: TcpStream, request: &str) -> (Stream, String) {
        socket.write_all(request.as_bytes()).await.expect("write");
        let mut reader = BufReader::new(socket);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            tokio::time::timeout(STEP, reader.read_line(&mut line))
                .await
                .expect("response head in time")
                .expect("read");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line);
        }
        let stream = Stream {
            kind,
            reader,
            pending: Vec::new(),
            ended: false,
        };
        (stream, head.to_ascii_lowercase())
    }

    /// The next message on the stream, `None` at its end.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            let line = self.next_line().await?;
            let json = match self.kind {
                Kind::HttpStream => line.as_str(),
                Kind::Sse if line.is_empty() => continue,
                Kind::Sse => line.strip_prefix("data: ").expect("a data: field"),
            };
            return Some(serde_json::from_str(json).expect("a JSON message"));
        }
    }

    /// The next message for which `what` holds (others skipped).
    pub async fn next_where(&mut self, what: impl Fn(&Value) -> bool) -> Value {
        loop {
            let message = self.next().await.expect("the stream ended early");
            if what(&message) {
                return message;
            }
        }
    }

    /// The next line of the body, without its newline; `None` at its end.
    async fn next_line(&mut self) -> Option<String> {
        loop {
            if let Some(at) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=at).collect();
                return Some(String::from_utf8(line[..at].to_vec()).expect("UTF-8"));
            }
            if self.ended {
                return None;
            }
            // One chunk: its size in hex, CRLF, the bytes, CRLF.
            let mut size = String::new();
            tokio::time::timeout(STEP, self.reader.read_line(&mut size))
                .await
                .expect("a chunk in time")
                .expect("read");
            let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
            let mut chunk = vec![0; size + 2];
            self.reader.read_exact(&mut chunk).await.expect("chunk");
            if size == 0 {
                self.ended = true;
            }
            self.pending.extend_from_slice(&chunk[..size]);
        }
    }
}

/// The GET request of an SSE stream at `path` (`/connection/sse`, `/connection/uni_sse`) with
/// `connect` URL-encoded in `cf_connect`, as an `EventSource` sends it.
pub fn sse_get(path: &str, connect: &Value) -> String {
    let encoded: String = connect
        .to_string()
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!(
        "GET {path}?cf_connect={encoded} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Accept: text/event-stream\r\n\r\n"
    )
}

/// POSTs `commands` for the connection of `session` (on node `node`) to the emulation
/// endpoint of the server on `port`.
pub async fn emulate(port: u16, session: &str, node: &str, commands: &[Value]) -> HttpResponse {
    let data: Vec<String> = commands.iter().map(Value::to_string).collect();
    let body = json!({"session": session, "node": node, "data": data.join("\n")}).to_string();
    http(
        port,
        "POST",
        "/emulation",
        &[("Content-Type", "application/json")],
        Some(body.as_bytes()),
    )
    .await
}
