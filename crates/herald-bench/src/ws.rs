//! A lean WebSocket client (RFC 6455) for holding many connections: a plain TCP socket
//! (optionally bound to a chosen local source address), a hand-written upgrade request, one
//! read buffer per connection parsed in place, and masked frames for what the client sends.
//! No permessage-deflate is offered, so the server sends plain frames.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};
use socket2::{Domain, Protocol, Socket, Type};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Largest message the client accepts (a misbehaving server cannot make it allocate more).
pub const MAX_MESSAGE: usize = 16 << 20;

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Final fragment.
    pub fin: bool,
    /// Opcode (0 continuation, 1 text, 2 binary, 8 close, 9 ping, 10 pong).
    pub opcode: u8,
    /// Masking key when the frame is masked (servers must not mask).
    pub mask: Option<[u8; 4]>,
    /// Payload length.
    pub len: usize,
    /// Header length in bytes.
    pub header_len: usize,
}

/// Parses a frame header at the start of `buf`; `Ok(None)` when more bytes are needed.
pub fn parse_header(buf: &[u8]) -> io::Result<Option<Header>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let b0 = buf[0];
    let b1 = buf[1];
    if b0 & 0x70 != 0 {
        return Err(bad("reserved bits set (no extension was negotiated)"));
    }
    let opcode = b0 & 0x0f;
    if !matches!(opcode, 0 | 1 | 2 | 8 | 9 | 10) {
        return Err(bad("unknown opcode"));
    }
    let fin = b0 & 0x80 != 0;
    let masked = b1 & 0x80 != 0;
    let (len, mut at) = match b1 & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        n => (n as u64, 2),
    };
    if opcode >= 8 && (len > 125 || !fin) {
        return Err(bad("invalid control frame"));
    }
    if len > MAX_MESSAGE as u64 {
        return Err(bad("frame too large"));
    }
    let mask = if masked {
        if buf.len() < at + 4 {
            return Ok(None);
        }
        let m = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
        at += 4;
        Some(m)
    } else {
        None
    };
    Ok(Some(Header {
        fin,
        opcode,
        mask,
        len: len as usize,
        header_len: at,
    }))
}

/// Appends a masked client frame to `out`.
pub fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | opcode);
    let n = payload.len();
    if n < 126 {
        out.push(0x80 | n as u8);
    } else if n <= u16::MAX as usize {
        out.push(0x80 | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    for (i, b) in out[start..].iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// When the bytes that completed a message came in (monotonic ns, as [`crate::sys::now_ns`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stamp {
    /// The socket read returned them to the bench.
    pub read_ns: u64,
    /// The kernel received the last segment of that read (its receive timestamp); the read
    /// time when the kernel gave none. `read_ns - arrival_ns` is how long the bytes waited
    /// for the bench: its own lag, not the server's.
    pub arrival_ns: u64,
}

impl Stamp {
    /// A read that returns now, of bytes the kernel received at `arrival` (never after now;
    /// unknown: now).
    pub(crate) fn read_now(arrival: Option<u64>) -> Stamp {
        let read_ns = crate::sys::now_ns();
        Stamp {
            read_ns,
            arrival_ns: arrival.map_or(read_ns, |at| at.min(read_ns)),
        }
    }
}

/// What [`WsClient::read_message`] returns.
#[derive(Debug)]
pub enum Message<'a> {
    /// A complete text (or binary) message, with when the socket read that completed it
    /// happened.
    Text(&'a [u8], Stamp),
    /// The server closed the connection with this code (1005 when none was given).
    Close(u16, String),
}

enum Raw {
    Text(usize, usize),
    Fragmented,
    Close(u16, String),
}

/// Where to connect and how.
#[derive(Debug, Clone)]
pub struct Target {
    /// Server socket address.
    pub addr: SocketAddr,
    /// `Host` header value.
    pub host: String,
    /// Request path (with query).
    pub path: String,
}

impl Target {
    /// Parses `ws://host:port/path` (or `http://…`, for the HTTP-streaming and SSE
    /// transports; no TLS: the bench measures the server, not a TLS stack).
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("ws://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| format!("{url}: only ws:// and http:// URLs are supported"))?;
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = resolve(hostport, 80)?;
        Ok(Target {
            addr,
            host: hostport.to_string(),
            path: path.to_string(),
        })
    }
}

/// Resolves `host[:port]` to one socket address.
pub fn resolve(hostport: &str, default_port: u16) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs as _;
    let with_port = if hostport
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !hostport.ends_with(']')
    {
        hostport.to_string()
    } else {
        format!("{hostport}:{default_port}")
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| format!("{hostport}: {e}"))?
        .next()
        .ok_or_else(|| format!("{hostport}: no address"))
}

/// One client connection.
pub struct WsClient {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    frag: Vec<u8>,
    in_fragment: bool,
    rng: u64,
    /// When the last read from the socket returned, and when its bytes arrived.
    pub last_read: Stamp,
}

impl WsClient {
    /// Opens a TCP connection (from `source` if given) and performs the WebSocket upgrade.
    pub async fn connect(
        target: &Target,
        source: Option<IpAddr>,
        read_buf: usize,
        seed: u64,
    ) -> io::Result<WsClient> {
        WsClient::connect_with(target, source, read_buf, seed, None).await
    }

    /// [`WsClient::connect`], asking for `subprotocol` (`centrifuge-protobuf` selects the
    /// Protobuf format); the server must accept it.
    pub async fn connect_with(
        target: &Target,
        source: Option<IpAddr>,
        read_buf: usize,
        seed: u64,
        subprotocol: Option<&str>,
    ) -> io::Result<WsClient> {
        let stream = tcp_connect(target.addr, source).await?;
        let mut rng = seed | 1;
        let mut key = [0u8; 16];
        for chunk in key.chunks_mut(8) {
            chunk.copy_from_slice(&xorshift(&mut rng).to_le_bytes()[..chunk.len()]);
        }
        let key = STANDARD.encode(key);
        let mut client = WsClient {
            stream,
            buf: vec![0; read_buf.max(512)],
            start: 0,
            end: 0,
            frag: Vec::new(),
            in_fragment: false,
            rng,
            last_read: Stamp::default(),
        };
        let protocol = subprotocol
            .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{protocol}\
             User-Agent: herald-bench\r\n\r\n",
            target.path, target.host
        );
        client.stream.write_all(req.as_bytes()).await?;
        client.read_upgrade_response(&key, subprotocol).await?;
        Ok(client)
    }

    async fn read_upgrade_response(&mut self, key: &str, protocol: Option<&str>) -> io::Result<()> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf[..self.end]) {
                Ok(httparse::Status::Complete(n)) => {
                    if resp.code != Some(101) {
                        return Err(io::Error::other(format!(
                            "upgrade refused: HTTP {} {}",
                            resp.code.unwrap_or(0),
                            resp.reason.unwrap_or("")
                        )));
                    }
                    let accept = resp
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
                        .map(|h| h.value)
                        .unwrap_or_default();
                    if accept != accept_key(key).as_bytes() {
                        return Err(bad("wrong Sec-WebSocket-Accept"));
                    }
                    if resp.headers.iter().any(|h| {
                        h.name.eq_ignore_ascii_case("sec-websocket-extensions")
                            && !h.value.is_empty()
                    }) {
                        return Err(bad("server negotiated an extension that was not offered"));
                    }
                    if let Some(protocol) = protocol {
                        let chosen = resp
                            .headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-protocol"))
                            .map(|h| h.value);
                        if chosen != Some(protocol.as_bytes()) {
                            return Err(bad(&format!(
                                "server did not accept subprotocol {protocol}"
                            )));
                        }
                    }
                    self.start = n;
                    return Ok(());
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => return Err(bad(&format!("bad upgrade response: {e}"))),
            }
            if self.end == self.buf.len() {
                return Err(bad("upgrade response too large"));
            }
            let n = self.stream.read(&mut self.buf[self.end..]).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.end += n;
            self.last_read = Stamp::read_now(None);
        }
    }

    /// Sends one text message (masked).
    pub async fn send_text(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send_frame(1, payload).await
    }

    /// Sends one binary message (masked).
    pub async fn send_binary(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send_frame(2, payload).await
    }

    async fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let mask = (xorshift(&mut self.rng) as u32).to_le_bytes();
        let mut out = Vec::with_capacity(payload.len() + 14);
        encode_frame(&mut out, opcode, payload, mask);
        self.stream.write_all(&out).await
    }

    /// Sends a close frame with `code` (best effort).
    pub async fn close(&mut self, code: u16) {
        let _ = self.send_frame(8, &code.to_be_bytes()).await;
    }

    /// Reads the next complete data message, answering WebSocket pings on the way. The
    /// returned slice lives in the connection's buffer until the next call.
    pub async fn read_message(&mut self) -> io::Result<Message<'_>> {
        Ok(match self.read_raw().await? {
            Raw::Text(s, e) => Message::Text(&self.buf[s..e], self.last_read),
            Raw::Fragmented => Message::Text(&self.frag, self.last_read),
            Raw::Close(code, reason) => Message::Close(code, reason),
        })
    }

    async fn read_raw(&mut self) -> io::Result<Raw> {
        loop {
            if let Some(h) = parse_header(&self.buf[self.start..self.end])? {
                let total = h.header_len + h.len;
                if self.end - self.start >= total {
                    let ps = self.start + h.header_len;
                    let pe = ps + h.len;
                    self.start += total;
                    if self.start == self.end {
                        self.start = 0;
                        self.end = 0;
                        // Borrowed payload bytes stay intact: only the indices were reset, and
                        // the next read happens after the caller is done with them.
                    }
                    if h.mask.is_some() {
                        return Err(bad("server frames must not be masked"));
                    }
                    match h.opcode {
                        1 | 2 if !self.in_fragment => {
                            if h.fin {
                                return Ok(Raw::Text(ps, pe));
                            }
                            self.in_fragment = true;
                            self.frag.clear();
                            self.frag.extend_from_slice(&self.buf[ps..pe]);
                        }
                        0 if self.in_fragment => {
                            if self.frag.len() + h.len > MAX_MESSAGE {
                                return Err(bad("message too large"));
                            }
                            self.frag.extend_from_slice(&self.buf[ps..pe]);
                            if h.fin {
                                self.in_fragment = false;
                                return Ok(Raw::Fragmented);
                            }
                        }
                        9 => {
                            let mut p = [0u8; 125];
                            let n = pe - ps;
                            p[..n].copy_from_slice(&self.buf[ps..pe]);
                            self.send_frame(10, &p[..n]).await?;
                        }
                        10 => {}
                        8 => {
                            let payload = &self.buf[ps..pe];
                            let (code, reason) = if payload.len() >= 2 {
                                (
                                    u16::from_be_bytes([payload[0], payload[1]]),
                                    String::from_utf8_lossy(&payload[2..]).into_owned(),
                                )
                            } else {
                                (1005, String::new())
                            };
                            let echo = if code == 1005 { 1000 } else { code };
                            self.close(echo).await;
                            return Ok(Raw::Close(code, reason));
                        }
                        _ => return Err(bad("unexpected frame sequence")),
                    }
                    continue;
                }
                if total > self.buf.len() {
                    // Grow for a message bigger than the buffer (bounded by MAX_MESSAGE).
                    let mut bigger = vec![0; total];
                    bigger[..self.end - self.start]
                        .copy_from_slice(&self.buf[self.start..self.end]);
                    self.end -= self.start;
                    self.start = 0;
                    self.buf = bigger;
                }
            }
            if self.start > 0 && self.end == self.buf.len() {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let (n, arrival) = self.fill().await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.last_read = Stamp::read_now(arrival);
            self.end += n;
        }
    }

    /// Reads what the socket has into the free end of the buffer: one `recv` per wake-up.
    ///
    /// A plain `read` leaves the socket marked readable after a successful read, so every
    /// message costs a second `recv` that fails with `EAGAIN`. A short read on a TCP socket
    /// means its receive queue is empty, so it is reported to tokio as "would block", which
    /// clears the readiness right away (tokio ignores the clear if an event came meanwhile).
    async fn fill(&mut self) -> io::Result<(usize, Option<u64>)> {
        let WsClient {
            stream, buf, end, ..
        } = self;
        recv_some(stream, &mut buf[*end..]).await
    }
}

/// Reads what `stream` has into `free`: one `recv` per wake-up (see [`WsClient::fill`]); 0 at
/// end of stream. With the bytes comes the kernel's arrival time of the last segment read,
/// when the socket has receive timestamps on ([`crate::sys::enable_receive_timestamps`]).
pub async fn recv_some(stream: &TcpStream, free: &mut [u8]) -> io::Result<(usize, Option<u64>)> {
    use std::os::fd::AsRawFd as _;
    let fd = stream.as_raw_fd();
    loop {
        stream.readable().await?;
        let mut short = None;
        let res = stream.try_io(tokio::io::Interest::READABLE, || {
            let (n, stamp) = crate::sys::recv_stamped(fd, &mut *free)?;
            if n > 0 && n < free.len() {
                short = Some((n, stamp));
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok((n, stamp))
        });
        match res {
            Ok(read) => return Ok(read),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Some(read) = short {
                    return Ok(read);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// The `Sec-WebSocket-Accept` value for a key.
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    STANDARD.encode(h.finalize())
}

fn xorshift(s: &mut u64) -> u64 {
    let mut x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    x
}

/// Connects a TCP socket to `addr`, bound first to `source` (port chosen at connect time, so
/// each source address has the whole ephemeral port range for each destination).
pub async fn tcp_connect(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    {
        use std::os::fd::AsRawFd as _;
        crate::sys::enable_receive_timestamps(socket.as_raw_fd())?;
    }
    if let Some(ip) = source {
        if ip.is_ipv4() {
            set_bind_address_no_port(&socket);
        }
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    let std_stream: std::net::TcpStream = socket.into();
    let socket = TcpSocket::from_std_stream(std_stream);
    socket.connect(addr).await
}

fn set_bind_address_no_port(socket: &Socket) {
    use std::os::fd::AsRawFd as _;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a c_int option value of the right size.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Runs `f` with a deadline.
pub async fn with_timeout<T>(
    d: Duration,
    f: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    match tokio::time::timeout(d, f).await {
        Ok(r) => r,
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_frame_headers() {
        assert_eq!(parse_header(&[0x81]).unwrap(), None);
        let h = parse_header(&[0x81, 5, b'h', b'e']).unwrap().unwrap();
        assert_eq!(
            h,
            Header {
                fin: true,
                opcode: 1,
                mask: None,
                len: 5,
                header_len: 2
            }
        );
        let h = parse_header(&[0x01, 126, 0x01, 0x00]).unwrap().unwrap();
        assert_eq!((h.fin, h.len, h.header_len), (false, 256, 4));
        assert_eq!(parse_header(&[0x82, 127, 0, 0, 0, 0]).unwrap(), None);
        let h = parse_header(&[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0])
            .unwrap()
            .unwrap();
        assert_eq!((h.opcode, h.len, h.header_len), (2, 65536, 10));
        let h = parse_header(&[0x89, 0x82, 1, 2, 3, 4]).unwrap().unwrap();
        assert_eq!((h.opcode, h.mask, h.header_len), (9, Some([1, 2, 3, 4]), 6));
        assert!(parse_header(&[0xC1, 0]).is_err(), "RSV1 without deflate");
        assert!(parse_header(&[0x83, 0]).is_err(), "reserved opcode");
        assert!(
            parse_header(&[0x09, 0]).is_err(),
            "fragmented control frame"
        );
        assert!(
            parse_header(&[0x89, 126, 0, 200]).is_err(),
            "long control frame"
        );
        assert!(
            parse_header(&[0x82, 127, 0xff, 0, 0, 0, 0, 0, 0, 0]).is_err(),
            "huge"
        );
    }

    #[test]
    fn encodes_masked_frames_that_unmask_to_the_payload() {
        for n in [0usize, 2, 125, 126, 300, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            let mut out = Vec::new();
            encode_frame(&mut out, 1, &payload, [9, 8, 7, 6]);
            let h = parse_header(&out).unwrap().unwrap();
            assert!(h.fin);
            assert_eq!(h.opcode, 1);
            assert_eq!(h.len, n);
            assert_eq!(h.mask, Some([9, 8, 7, 6]));
            let mut body = out[h.header_len..].to_vec();
            for (i, b) in body.iter_mut().enumerate() {
                *b ^= [9, 8, 7, 6][i & 3];
            }
            assert_eq!(body, payload);
        }
    }

    #[test]
    fn accept_key_matches_rfc6455_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn parses_targets() {
        let t = Target::parse("ws://127.0.0.1:8000/connection/websocket").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8000".parse().unwrap());
        assert_eq!(t.host, "127.0.0.1:8000");
        assert_eq!(t.path, "/connection/websocket");
        let t = Target::parse("ws://127.0.0.1").unwrap();
        assert_eq!(t.addr.port(), 80);
        assert_eq!(t.path, "/");
        assert!(Target::parse("wss://x/").is_err());
    }

    /// A scripted server over a real socket: batched and fragmented frames, a ping, a close.
    #[tokio::test]
    async fn reads_batched_fragmented_and_control_frames() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = vec![0u8; 2048];
            let mut n = 0;
            while !req[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                n += s.read(&mut req[n..]).await.unwrap();
            }
            let text = String::from_utf8_lossy(&req[..n]).to_string();
            let key = text
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .unwrap()
                .trim()
                .to_string();
            let mut out = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                accept_key(&key)
            )
            .into_bytes();
            // Two text frames in one write, then a fragmented message around a ping, then a
            // big frame, then a close.
            out.extend_from_slice(&[0x81, 2, b'{', b'}']);
            out.extend_from_slice(&[0x81, 3, b'a', b'\n', b'b']);
            out.extend_from_slice(&[0x01, 2, b'h', b'e']);
            out.extend_from_slice(&[0x89, 1, b'p']);
            out.extend_from_slice(&[0x80, 3, b'l', b'l', b'o']);
            out.extend_from_slice(&[0x81, 126, 0x27, 0x10]);
            out.extend_from_slice(&[b'z'; 10000]);
            out.extend_from_slice(&[0x88, 4, 0x0b, 0xb8, b'h', b'i']);
            s.write_all(&out).await.unwrap();
            // Expect the masked pong and the echoed close.
            let mut got = Vec::new();
            let mut b = [0u8; 64];
            while got.len() < 7 + 8 {
                let n = s.read(&mut b).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&b[..n]);
            }
            got
        });
        let target = Target {
            addr,
            host: addr.to_string(),
            path: "/connection/websocket".into(),
        };
        let mut c = WsClient::connect(&target, None, 512, 7).await.unwrap();
        assert!(matches!(
            c.read_message().await.unwrap(),
            Message::Text(b"{}", _)
        ));
        assert!(matches!(
            c.read_message().await.unwrap(),
            Message::Text(b"a\nb", _)
        ));
        assert!(matches!(
            c.read_message().await.unwrap(),
            Message::Text(b"hello", _)
        ));
        match c.read_message().await.unwrap() {
            Message::Text(t, _) => assert_eq!(t, &[b'z'; 10000][..]),
            other => panic!("{other:?}"),
        }
        match c.read_message().await.unwrap() {
            Message::Close(code, reason) => assert_eq!((code, reason.as_str()), (3000, "hi")),
            other => panic!("{other:?}"),
        }
        let got = server.await.unwrap();
        let pong = parse_header(&got).unwrap().unwrap();
        assert_eq!((pong.opcode, pong.len), (10, 1));
        let m = pong.mask.unwrap();
        assert_eq!(got[pong.header_len] ^ m[0], b'p');
        let close = parse_header(&got[pong.header_len + 1..]).unwrap().unwrap();
        assert_eq!((close.opcode, close.len), (8, 2));
    }
}
