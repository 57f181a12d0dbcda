//! The `tungstenite` client model: subscribers written the way a typical Rust client is.
//!
//! Why a second model: the default (`fast`) client reads each wake-up's bytes in one `recv`
//! and scans them for `ts` without building JSON, which is as cheap as a client can be and
//! so measures the server's write schedule under a client that never falls behind. A typical
//! client is a `tokio-tungstenite` connection per subscriber, one task each, that takes one
//! message at a time from the stream (`StreamExt::next`) with the library's default
//! configuration and parses every line with serde. Such a client wakes once per frame and
//! costs the shared CPUs more per message, which changes what the server's batching is worth;
//! issue 25 found Herald ahead on the fast model and behind on this one. Results of both are
//! reported side by side (`bench/run.sh`, `bench/compare.sh`).
//!
//! Latency is the time between the send timestamp in the payload (`ts`, `CLOCK_MONOTONIC`) and
//! the moment the task handles the publication. The socket reads also take the kernel's
//! receive timestamp (`recvmsg` with `SO_TIMESTAMPNS` instead of `read`: the same system call
//! cost, see [`Stamped`]), so the report splits each delivery into the time until the bytes
//! were in the client's socket (`arrival`: the server's share) and the time they waited there
//! for the client task (the client's own backlog). The arrival stamp is that of the last
//! segment of the read that completed the frame: for a message read from an earlier segment
//! it is slightly late, never early.
//!
//! It also carries the channel-feature modes of `fanout` (they need a client that reads
//! publications as a client library does):
//! * `--delta`: the subscribe asks for `delta: "fossil"`; every publication's data then comes
//!   as a JSON string, either the full JSON text (`delta: false`) or a Fossil delta against the
//!   previous publication's text (`delta: true`), which is applied with the `fossil-delta`
//!   crate (the one the server encodes with) before `ts` is read. The timestamp is therefore
//!   read from the reconstructed payload, as an application would see it.
//! * `--tags-filter F`: the subscribe carries a `tf` filter on the tag `bench`; a fraction `F`
//!   of the subscribers (spread evenly over the connection numbers) filter on the value the
//!   publisher sets, the others on a value it never sets.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};

use futures_util::{SinkExt as _, StreamExt as _};
use prost::Message as _;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::Format;
use crate::stats;
use crate::sys::now_ns;
use crate::worker::WorkerSpec;
use crate::ws::Target;

/// The tag every publication carries in the tags-filter mode, and the value of matching
/// filters (`--tags-filter`).
pub const TAG_KEY: &str = "bench";
/// See [`TAG_KEY`].
pub const TAG_VALUE: &str = "on";

/// Publications this process received as Fossil deltas (`delta: true`): proof that the delta
/// mode measured deltas, not full payloads.
pub static DELTAS: AtomicU64 = AtomicU64::new(0);

/// One typical client's connection.
pub type Conn = WebSocketStream<Stamped>;

/// A client's TCP stream whose reads keep the kernel's receive time of the last segment read
/// (the socket has `SO_TIMESTAMPNS` on): tokio-tungstenite reads through it exactly as through
/// a `TcpStream`, one `recvmsg` where it would make one `read`.
pub struct Stamped {
    stream: TcpStream,
    /// When the kernel received the last segment of the last read (monotonic ns).
    last_arrival: Option<u64>,
}

impl tokio::io::AsyncRead for Stamped {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        use std::os::fd::AsRawFd as _;
        let this = self.get_mut();
        loop {
            std::task::ready!(this.stream.poll_read_ready(cx))?;
            let fd = this.stream.as_raw_fd();
            let free = buf.initialize_unfilled();
            match this.stream.try_io(tokio::io::Interest::READABLE, || {
                crate::sys::recv_stamped(fd, free)
            }) {
                Ok((n, stamp)) => {
                    if stamp.is_some() {
                        this.last_arrival = stamp;
                    }
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl tokio::io::AsyncWrite for Stamped {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Whether subscriber `g`'s filter matches the publications when a fraction `f` of the
/// subscribers should receive them: spread evenly, `floor(n × f)` of the first `n` match.
pub fn filter_matches(g: usize, f: f64) -> bool {
    ((g + 1) as f64 * f).floor() > (g as f64 * f).floor()
}

/// A reply or push line, parsed the way a client library does (borrowing from the frame).
#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(default)]
    id: u32,
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
    #[serde(default, borrow)]
    push: Option<Push<'a>>,
}

#[derive(Deserialize)]
struct Push<'a> {
    #[serde(default, borrow, rename = "pub")]
    publication: Option<Pub<'a>>,
}

#[derive(Deserialize)]
struct Pub<'a> {
    #[serde(borrow)]
    data: &'a RawValue,
    #[serde(default)]
    delta: bool,
}

/// The bench's payload, `{"ts":…,"seq":…,"pad":"…"}`.
#[derive(Deserialize)]
struct BenchData {
    ts: u64,
    seq: u64,
}

/// Connects, upgrades with tokio-tungstenite (default configuration), sends `connect` and,
/// when asked, `subscribe` (with the delta or filter options of the run).
pub async fn setup(
    g: usize,
    spec: &WorkerSpec,
    target: &Target,
    source: Option<IpAddr>,
) -> Result<Conn, String> {
    let t0 = now_ns();
    let socket = if target.addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| format!("socket: {e}"))?;
    if let Some(ip) = source {
        socket
            .bind((ip, 0).into())
            .map_err(|e| format!("bind {ip}: {e}"))?;
    }
    {
        use std::os::fd::AsRawFd as _;
        crate::sys::enable_receive_timestamps(socket.as_raw_fd())
            .map_err(|e| format!("SO_TIMESTAMPNS: {e}"))?;
    }
    let stream = socket
        .connect(target.addr)
        .await
        .map_err(|e| format!("tcp connect: {e}"))?;
    let stream = Stamped {
        stream,
        last_arrival: None,
    };
    let url = format!("ws://{}{}", target.host, target.path);
    let mut request = url
        .into_client_request()
        .map_err(|e| format!("websocket request: {e}"))?;
    let protobuf = spec.format_of(g) == Format::Protobuf;
    if protobuf {
        request.headers_mut().insert(
            "sec-websocket-protocol",
            crate::pb::SUBPROTOCOL.parse().map_err(|e| format!("{e}"))?,
        );
    }
    let (mut ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .map_err(|e| format!("websocket: {e}"))?;
    let t1 = now_ns();
    if protobuf {
        // The Protobuf format: binary commands built with the generated types; a typical
        // client of it has no channel-feature options here (refused by `fanout`).
        ws.send(Message::binary(crate::pb::connect_command(
            1,
            spec.auth.token_for(g),
        )))
        .await
        .map_err(|e| format!("send: {e}"))?;
        wait_reply(&mut ws, 1)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let t2 = now_ns();
        if spec.subscribe {
            ws.send(Message::binary(crate::pb::subscribe_command(
                2,
                &spec.channel,
            )))
            .await
            .map_err(|e| format!("send: {e}"))?;
            wait_reply(&mut ws, 2)
                .await
                .map_err(|e| format!("subscribe: {e}"))?;
        }
        let t3 = now_ns();
        stats::with_local(|l| {
            stats::record_ns(&mut l.handshake, t1 - t0);
            stats::record_ns(&mut l.connect, t2 - t1);
            if spec.subscribe {
                stats::record_ns(&mut l.subscribe, t3 - t2);
            }
        });
        return Ok(ws);
    }
    let connect = match spec.auth.token_for(g) {
        Some(t) => serde_json::json!({"id": 1, "connect": {"token": t, "name": "herald-bench"}}),
        None => serde_json::json!({"id": 1, "connect": {"name": "herald-bench"}}),
    };
    send(&mut ws, connect.to_string()).await?;
    wait_reply(&mut ws, 1)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let t2 = now_ns();
    let mut t3 = t2;
    if spec.subscribe {
        let mut sub = serde_json::json!({"channel": spec.channel});
        if spec.delta {
            sub["delta"] = "fossil".into();
        }
        if let Some(f) = spec.tags_filter {
            let val = if filter_matches(g, f) {
                TAG_VALUE
            } else {
                "off"
            };
            sub["tf"] = serde_json::json!({"key": TAG_KEY, "cmp": "eq", "val": val});
        }
        send(
            &mut ws,
            serde_json::json!({"id": 2, "subscribe": sub}).to_string(),
        )
        .await?;
        wait_reply(&mut ws, 2)
            .await
            .map_err(|e| format!("subscribe: {e}"))?;
        t3 = now_ns();
    }
    stats::with_local(|l| {
        stats::record_ns(&mut l.handshake, t1 - t0);
        stats::record_ns(&mut l.connect, t2 - t1);
        if spec.subscribe {
            stats::record_ns(&mut l.subscribe, t3 - t2);
        }
    });
    Ok(ws)
}

async fn send(ws: &mut Conn, text: String) -> Result<(), String> {
    ws.send(Message::text(text))
        .await
        .map_err(|e| format!("send: {e}"))
}

/// Reads until the reply to command `id`, answering pings (`{}`, or in Protobuf the empty
/// Reply) on the way.
async fn wait_reply(ws: &mut Conn, id: u32) -> Result<(), String> {
    loop {
        let text = match ws.next().await {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Binary(b))) => {
                let mut pings = 0;
                let mut result = None;
                for m in crate::pb::messages(&b) {
                    let m = m.ok_or("malformed Protobuf frame")?;
                    let reply = crate::pb::pbt::Reply::decode(m).map_err(|e| e.to_string())?;
                    if reply.id == id {
                        result = Some(match reply.error {
                            Some(e) => Err(format!("error {} {}", e.code, e.message)),
                            None => Ok(()),
                        });
                    } else if m.is_empty() {
                        pings += 1;
                    }
                }
                for _ in 0..pings {
                    ws.send(Message::binary(crate::pb::PONG))
                        .await
                        .map_err(|e| format!("send: {e}"))?;
                }
                match result {
                    Some(r) => return r,
                    None => continue,
                }
            }
            Some(Ok(Message::Close(c))) => return Err(format!("closed {c:?}")),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("connection ended".into()),
        };
        let mut pings = 0;
        let mut result = None;
        for line in text.as_str().split('\n').filter(|l| !l.trim().is_empty()) {
            let msg: Incoming = serde_json::from_str(line).map_err(|e| format!("{e}: {line}"))?;
            if msg.id == id {
                result = Some(match msg.error {
                    Some(e) => Err(e.get().to_string()),
                    None => Ok(()),
                });
            } else if msg.id == 0 && msg.push.is_none() {
                pings += 1;
            }
        }
        for _ in 0..pings {
            send(ws, "{}".into()).await?;
        }
        if let Some(r) = result {
            return r;
        }
    }
}

/// What went wrong with one publication.
#[derive(Debug, PartialEq)]
enum Bad {
    /// Not JSON of the expected shape.
    Parse(String),
    /// A delta arrived without a previous publication to apply it to, or did not apply.
    Delta(String),
}

/// A subscriber's receiving state: the last payload (the base of the next delta) and the
/// last `seq` of each publisher.
pub struct Receiver {
    /// When the bytes of the message being handled came in (kernel receive time), if known.
    arrival_ns: Option<u64>,
    delta: bool,
    base: Vec<u8>,
    last_seq: Box<[u64]>,
}

impl Receiver {
    /// A receiver expecting fossil deltas when `delta` is set.
    pub fn new(delta: bool, publishers: usize) -> Receiver {
        Receiver {
            arrival_ns: None,
            delta,
            base: Vec::new(),
            last_seq: vec![0u64; publishers.clamp(1, 64)].into_boxed_slice(),
        }
    }

    /// Handles one line: a publication is recorded (`Ok(true)`), a ping is `Ok(false)` with
    /// `ping` set, anything else is `Ok(false)`.
    fn line(&mut self, line: &str, ping: &mut u32) -> Result<bool, Bad> {
        let msg: Incoming = serde_json::from_str(line).map_err(|e| Bad::Parse(e.to_string()))?;
        let is_ping = msg.id == 0 && msg.push.is_none() && msg.error.is_none();
        let Some(p) = msg.push.and_then(|p| p.publication) else {
            if is_ping {
                *ping += 1;
            }
            return Ok(false);
        };
        let data: BenchData = if self.delta {
            // Delta subscriptions get every payload as a JSON string.
            let text: String =
                serde_json::from_str(p.data.get()).map_err(|e| Bad::Parse(e.to_string()))?;
            if p.delta {
                if self.base.is_empty() {
                    return Err(Bad::Delta("a delta before any full publication".into()));
                }
                self.base = fossil_delta::apply(&self.base, text.as_bytes())
                    .map_err(|e| Bad::Delta(format!("{e:?}")))?;
                DELTAS.fetch_add(1, Relaxed);
            } else {
                self.base = text.into_bytes();
            }
            serde_json::from_slice(&self.base).map_err(|e| Bad::Parse(e.to_string()))?
        } else {
            serde_json::from_str(p.data.get()).map_err(|e| Bad::Parse(e.to_string()))?
        };
        self.record(data.ts, data.seq);
        Ok(true)
    }

    /// Handles one Protobuf Reply (after its length prefix), decoded into the generated types
    /// as a client library does: `Ok(true)` for a publication, `ping` counted for a ping.
    fn protobuf(&mut self, msg: &[u8], ping: &mut u32) -> Result<bool, Bad> {
        if msg.is_empty() {
            *ping += 1;
            return Ok(false);
        }
        match crate::pb::decode_publication(msg).map_err(|e| Bad::Parse(e.to_string()))? {
            Some((ts, seq)) => {
                self.record(ts, seq);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Records the delivery of publication `seq` sent at `ts`.
    fn record(&mut self, ts: u64, seq: u64) {
        let at = now_ns();
        let n = self.last_seq.len() as u64;
        let arrival = self.arrival_ns.map(|a| a.min(at));
        stats::with_local(|l| {
            stats::record_ns(&mut l.delivery, at.saturating_sub(ts));
            if let Some(arrival) = arrival {
                stats::record_ns(&mut l.arrival, arrival.saturating_sub(ts));
            }
            l.received += 1;
            l.last_recv_ns = l.last_recv_ns.max(at);
            let last = &mut self.last_seq[(seq.saturating_sub(1) % n) as usize];
            if seq <= *last {
                l.out_of_order += 1;
            } else {
                *last = seq;
            }
        });
    }
}

/// Receives until the connection ends, one message at a time; returns why it ended.
pub async fn read_loop(mut ws: Conn, delta: bool, publishers: usize) -> String {
    let mut rx = Receiver::new(delta, publishers);
    loop {
        let next = ws.next().await;
        rx.arrival_ns = ws.get_ref().last_arrival;
        let text = match next {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Binary(b))) => {
                let mut pings = 0;
                for m in crate::pb::messages(&b) {
                    let Some(m) = m else {
                        return "error: malformed Protobuf frame".into();
                    };
                    if let Err(e) = rx.protobuf(m, &mut pings) {
                        return format!("error: {e:?}");
                    }
                }
                stats::with_local(|l| l.pings += u64::from(pings));
                for _ in 0..pings {
                    if let Err(e) = ws.send(Message::binary(crate::pb::PONG)).await {
                        return format!("error answering ping: {e}");
                    }
                }
                continue;
            }
            Some(Ok(Message::Close(c))) => {
                return match c {
                    Some(c) => format!("closed {} {}", u16::from(c.code), c.reason),
                    None => "closed".into(),
                };
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return format!("error: {e}"),
            None => return "error: connection ended".into(),
        };
        let mut pings = 0;
        for line in text.as_str().split('\n').filter(|l| !l.is_empty()) {
            if let Err(e) = rx.line(line, &mut pings) {
                return format!("error: {e:?}");
            }
        }
        stats::with_local(|l| l.pings += u64::from(pings));
        for _ in 0..pings {
            if let Err(e) = ws.send(Message::text("{}")).await {
                return format!("error answering ping: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads through [`Stamped`] carry the kernel's receive time of the bytes: after the
    /// write, no later than the read.
    #[tokio::test]
    async fn stamped_reads_take_the_kernels_receive_time() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let socket = TcpSocket::new_v4().unwrap();
        {
            use std::os::fd::AsRawFd as _;
            crate::sys::enable_receive_timestamps(socket.as_raw_fd()).unwrap();
        }
        let stream = socket
            .connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let mut client = Stamped {
            stream,
            last_arrival: None,
        };
        // The kernel turns receive timestamps on machine-wide a moment after the first socket
        // asks (a deferred static key): the first bytes may come unstamped.
        server.write_all(b"warm").await.unwrap();
        let mut warm = [0u8; 4];
        client.read_exact(&mut warm).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let before = now_ns();
        server.write_all(b"hello").await.unwrap();
        // The bytes wait in the socket a while before they are read.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let mut buf = [0u8; 16];
        let n = client.read(&mut buf).await.unwrap();
        let after = now_ns();
        assert_eq!(&buf[..n], b"hello");
        let arrival = client.last_arrival.expect("a receive timestamp");
        assert!(
            arrival >= before,
            "arrived {arrival} before the write at {before}"
        );
        assert!(
            after - arrival >= 15_000_000,
            "the stamp is the arrival, not the read: {} ms before the read",
            (after - arrival) as f64 / 1e6
        );
    }

    fn matching(n: usize, f: f64) -> usize {
        (0..n).filter(|&g| filter_matches(g, f)).count()
    }

    #[test]
    fn filters_match_the_asked_fraction_evenly() {
        assert_eq!(matching(1000, 0.5), 500);
        assert_eq!(matching(1000, 0.0), 0);
        assert_eq!(matching(1000, 1.0), 1000);
        assert_eq!(matching(10, 0.25), 2);
        // Evenly spread: every other one at a half.
        assert!(!filter_matches(0, 0.5) && filter_matches(1, 0.5) && !filter_matches(2, 0.5));
    }

    fn push(data: &str, delta: bool) -> String {
        format!(r#"{{"push":{{"channel":"c","pub":{{"data":{data},"delta":{delta}}}}}}}"#)
    }

    #[test]
    fn reads_plain_publications_and_pings() {
        let mut rx = Receiver::new(false, 1);
        let mut pings = 0;
        assert_eq!(
            rx.line(&push(r#"{"ts":1,"seq":1,"pad":"x"}"#, false), &mut pings),
            Ok(true)
        );
        assert_eq!(rx.line("{}", &mut pings), Ok(false));
        assert_eq!(pings, 1);
        assert_eq!(rx.line(r#"{"id":3,"publish":{}}"#, &mut pings), Ok(false));
        assert_eq!(pings, 1);
        assert!(matches!(rx.line("{", &mut pings), Err(Bad::Parse(_))));
    }

    /// A delta stream as the server writes it: the full text first, then fossil deltas of
    /// each text against the one before; the receiver rebuilds each payload.
    #[test]
    fn applies_fossil_deltas_to_the_previous_payload() {
        let first = br#"{"ts":100,"seq":1,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;
        let second = br#"{"ts":200,"seq":2,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;
        let d = String::from_utf8(fossil_delta::delta(second, first)).unwrap();
        let as_json = |s: &str| serde_json::to_string(s).unwrap();
        let mut rx = Receiver::new(true, 1);
        let mut pings = 0;
        // A delta with no base is an error, not a silent skip.
        assert!(matches!(
            rx.line(&push(&as_json(&d), true), &mut pings),
            Err(Bad::Delta(_))
        ));
        let full = std::str::from_utf8(first).unwrap();
        assert_eq!(rx.line(&push(&as_json(full), false), &mut pings), Ok(true));
        assert_eq!(rx.line(&push(&as_json(&d), true), &mut pings), Ok(true));
        assert_eq!(rx.base, second.to_vec());
    }
}
