//! The connection over real loopback sockets, with a hand-written client: echo, ping/pong,
//! batched output, both close handshakes, protocol failures, timeouts and compression.

use std::sync::Arc;
use std::time::Duration;

use herald_ws::frame::{apply_mask, encode_header};
use herald_ws::handshake::{HandshakeConfig, accept, parse_request};
use herald_ws::{
    CloseCode, Config, DeflateConfig, Error, Frame, FrameHeader, Incoming, Limits, Message, OpCode,
    Outbox, WebSocket,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(10);

/// A masked client frame.
fn client_frame(fin: bool, rsv1: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 10];
    let n = encode_header(&mut header, fin, rsv1, opcode, payload.len());
    let mut out = header[..n].to_vec();
    out[1] |= 0x80;
    let key = [0xA1, 0xB2, 0xC3, 0xD4];
    out.extend_from_slice(&key);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], key, 0);
    out
}

/// Client side of a test connection.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("client write");
    }

    /// Reads one server frame: (fin, rsv1, opcode, payload). `None` on EOF.
    async fn frame(&mut self) -> Option<(bool, bool, OpCode, Vec<u8>)> {
        loop {
            if let Ok(Some((header, len))) = FrameHeader::parse(&self.buf) {
                let total = len + header.payload_len as usize;
                if self.buf.len() >= total {
                    let payload = self.buf[len..total].to_vec();
                    self.buf.drain(..total);
                    return Some((header.fin, header.rsv1, header.opcode, payload));
                }
            }
            let mut chunk = [0u8; 65536];
            let n = timeout(LIMIT, self.stream.read(&mut chunk))
                .await
                .expect("server answered in time")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn expect_eof(&mut self) {
        let mut chunk = [0u8; 1024];
        loop {
            match timeout(LIMIT, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(_)) => continue,
                Err(_) => panic!("server did not close the TCP connection"),
            }
        }
    }
}

/// Connects a client and a server-side `WebSocket` through a real handshake.
async fn pair(config: Config, extensions: Option<&str>) -> (Client, WebSocket) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut client = TcpStream::connect(addr).await.expect("connect");
    let (mut server, _) = listener.accept().await.expect("accept");
    let ext = extensions
        .map(|e| format!("Sec-WebSocket-Extensions: {e}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n"
    );
    client
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(server.read_u8().await.expect("read request"));
    }
    let req = parse_request(&head).expect("request parses");
    let handshake = HandshakeConfig {
        deflate: DeflateConfig {
            min_size: 0,
            ..DeflateConfig::default()
        },
        ..HandshakeConfig::default()
    };
    let (response, negotiated) = accept(&req, &handshake).expect("handshake accepted");
    let mut head = String::from("HTTP/1.1 101 Switching Protocols\r\n");
    for (name, value) in response.headers() {
        head.push_str(&format!("{}: {}\r\n", name, value.to_str().expect("ascii")));
    }
    head.push_str("\r\n");
    server
        .write_all(head.as_bytes())
        .await
        .expect("send response");
    let mut reply = Vec::new();
    while !reply.ends_with(b"\r\n\r\n") {
        reply.push(client.read_u8().await.expect("read response"));
    }
    let outbox = Arc::new(Outbox::new(1 << 20, CloseCode(3008), "slow"));
    let ws = WebSocket::from_stream(server, &[], &negotiated, Arc::new(config), outbox)
        .expect("websocket");
    (
        Client {
            stream: client,
            buf: Vec::new(),
        },
        ws,
    )
}

/// Runs the server side as an echo loop and returns how it ended.
fn echo(mut ws: WebSocket) -> tokio::task::JoinHandle<Result<(), Error>> {
    tokio::spawn(async move {
        loop {
            match ws.recv().await? {
                Some(Incoming::Text(t)) => {
                    let _ = ws.send(Arc::new(Message::new(OpCode::Text, &t)));
                }
                Some(Incoming::Binary(b)) => {
                    let _ = ws.send(Arc::new(Message::new(OpCode::Binary, &b)));
                }
                Some(Incoming::Pong(_) | Incoming::Wake) => {}
                None => return Ok(()),
            }
        }
    })
}

#[tokio::test]
async fn echoes_answers_pings_and_closes_cleanly() {
    let (mut client, ws) = pair(Config::default(), None).await;
    let server = echo(ws);
    client
        .send(&client_frame(true, false, OpCode::Text, b"hello"))
        .await;
    client
        .send(&client_frame(true, false, OpCode::Ping, b"are you there"))
        .await;
    assert_eq!(
        client.frame().await,
        Some((true, false, OpCode::Text, b"hello".to_vec()))
    );
    assert_eq!(
        client.frame().await,
        Some((true, false, OpCode::Pong, b"are you there".to_vec()))
    );
    let mut close = 1000u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"bye");
    client
        .send(&client_frame(true, false, OpCode::Close, &close))
        .await;
    let (_, _, opcode, payload) = client.frame().await.expect("close reply");
    assert_eq!(opcode, OpCode::Close);
    assert_eq!(&payload[..2], &1000u16.to_be_bytes());
    client.expect_eof().await;
    let result = timeout(LIMIT, server)
        .await
        .expect("server ended")
        .expect("no panic");
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn writes_a_backlog_in_order() {
    let (mut client, mut ws) = pair(Config::default(), None).await;
    let outbox = ws.outbox().clone();
    let messages: Vec<Arc<Message>> = (0..2000)
        .map(|i| Arc::new(Message::text(&format!("message {i}"))))
        .collect();
    for message in &messages {
        outbox.push(message.clone()).expect("queued");
    }
    let server = tokio::spawn(async move { ws.recv().await.map(|_| ()) });
    for i in 0..2000 {
        let (_, _, _, payload) = client.frame().await.expect("frame");
        assert_eq!(payload, format!("message {i}").into_bytes());
    }
    // The shared messages were written without copies: only the test still holds them.
    assert!(messages.iter().all(|m| Arc::strong_count(m) == 1));
    server.abort();
}

#[tokio::test]
async fn server_close_carries_code_and_reason() {
    let (mut client, ws) = pair(Config::default(), None).await;
    ws.close(CloseCode(3001), "shutdown");
    let server = echo(ws);
    let (_, _, opcode, payload) = client.frame().await.expect("close frame");
    assert_eq!(opcode, OpCode::Close);
    assert_eq!(&payload[..2], &3001u16.to_be_bytes());
    assert_eq!(&payload[2..], b"shutdown");
    client
        .send(&client_frame(true, false, OpCode::Close, &payload[..2]))
        .await;
    client.expect_eof().await;
    let result = timeout(LIMIT, server)
        .await
        .expect("ended")
        .expect("no panic");
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn protocol_errors_fail_the_connection_with_their_code() {
    for (bytes, code) in [
        (vec![0x81, 0x02, b'h', b'i'], 1002u16), // unmasked
        (client_frame(true, false, OpCode::Text, &[0xC3, 0x28]), 1007),
        (
            client_frame(true, false, OpCode::Binary, &[0u8; 2048]),
            1009,
        ),
    ] {
        let config = Config {
            limits: Limits {
                max_message_size: 1024,
                max_frame_size: 1024,
                max_fragments: 8,
            },
            ..Config::default()
        };
        let (mut client, ws) = pair(config, None).await;
        let server = echo(ws);
        client.send(&bytes).await;
        let (_, _, opcode, payload) = client.frame().await.expect("close frame");
        assert_eq!(opcode, OpCode::Close);
        assert_eq!(&payload[..2], &code.to_be_bytes());
        client.expect_eof().await;
        drop(client); // the server half-closed first and now sees our FIN
        let result = timeout(LIMIT, server)
            .await
            .expect("ended")
            .expect("no panic");
        assert!(matches!(result, Err(Error::Protocol(_))), "{result:?}");
    }
}

#[tokio::test]
async fn an_unfinished_frame_times_out() {
    let config = Config {
        read_timeout: Duration::from_millis(200),
        close_timeout: Duration::from_millis(200),
        ..Config::default()
    };
    let (mut client, ws) = pair(config, None).await;
    let server = echo(ws);
    let frame = client_frame(true, false, OpCode::Text, b"never finished");
    client.send(&frame[..5]).await;
    let (_, _, opcode, payload) = client.frame().await.expect("close frame");
    assert_eq!(opcode, OpCode::Close);
    assert_eq!(&payload[..2], &1008u16.to_be_bytes());
    let result = timeout(LIMIT, server)
        .await
        .expect("ended")
        .expect("no panic");
    assert!(matches!(result, Err(Error::ReadTimeout)), "{result:?}");
}

#[tokio::test]
async fn a_peer_that_stops_reading_times_out() {
    let config = Config {
        write_timeout: Duration::from_millis(300),
        ..Config::default()
    };
    let (client, mut ws) = pair(config, None).await;
    let outbox = ws.outbox().clone();
    let big = Arc::new(Message::binary(&vec![0u8; 60_000]));
    let server = tokio::spawn(async move { ws.recv().await.map(|_| ()) });
    // Keep the queue topped up until the kernel buffers are full and the writer stalls.
    let filler = tokio::spawn(async move {
        while outbox.push(big.clone()).is_ok() || !outbox.is_closed() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let result = timeout(LIMIT, server)
        .await
        .expect("ended")
        .expect("no panic");
    assert!(matches!(result, Err(Error::WriteTimeout)), "{result:?}");
    filler.abort();
    drop(client);
}

/// A peer that floods pings and never reads gets its input read no further once its pongs
/// wait (backpressure), so the server holds at most a backlog's worth of them; its write
/// timeout then fires although input keeps arriving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_floods_pings_without_reading_is_paused_then_times_out() {
    let config = Config {
        write_timeout: Duration::from_millis(300),
        ..Config::default()
    };
    let (mut client, ws) = pair(config, None).await;
    let outbox = ws.outbox().clone();
    let server = echo(ws);
    let pings = client_frame(true, false, OpCode::Ping, b"").repeat(10_000);
    let flooder = tokio::spawn(async move {
        // Until the server gives up on the connection (a write fails), or the test's limit.
        while timeout(LIMIT, client.stream.write_all(&pings))
            .await
            .is_ok_and(|r| r.is_ok())
        {}
    });
    let watch = tokio::spawn(async move {
        let mut most = 0;
        while !outbox.is_closed() {
            most = most.max(outbox.queued_bytes());
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        most
    });
    let result = timeout(LIMIT, server)
        .await
        .expect("the server kept reading a peer that does not read")
        .expect("no panic");
    assert!(matches!(result, Err(Error::WriteTimeout)), "{result:?}");
    let most = watch.await.expect("no panic");
    // Pongs are counted in whole batches of one write's worth (128 of 2 bytes) at most.
    assert!(most <= 64 * 1024 + 256, "{most} bytes queued");
    flooder.abort();
}

#[tokio::test]
async fn compresses_once_and_the_client_can_inflate() {
    let (mut client, ws) = pair(
        Config::default(),
        Some("permessage-deflate; client_no_context_takeover"),
    )
    .await;
    let text = "fan-out fan-out fan-out ".repeat(100);
    let message = Arc::new(Message::text(&text));
    ws.send(message.clone()).expect("queued");
    ws.send(message).expect("queued");
    let server = echo(ws);
    for _ in 0..2 {
        let (fin, rsv1, opcode, payload) = client.frame().await.expect("frame");
        assert!(fin && rsv1, "compressed frames have RSV1");
        assert_eq!(opcode, OpCode::Text);
        assert!(payload.len() < text.len() / 10);
        let mut inflater = flate2::Decompress::new(false);
        let mut input = payload.clone();
        input.extend_from_slice(&[0, 0, 0xFF, 0xFF]);
        let mut out = Vec::with_capacity(text.len() + 64);
        inflater
            .decompress_vec(&input, &mut out, flate2::FlushDecompress::Sync)
            .expect("valid deflate");
        assert_eq!(out, text.as_bytes());
    }
    // And a compressed message from the client is understood.
    let mut deflater = flate2::Compress::new(flate2::Compression::default(), false);
    let mut compressed = Vec::with_capacity(256);
    deflater
        .compress_vec(
            b"from the client",
            &mut compressed,
            flate2::FlushCompress::Sync,
        )
        .expect("deflate");
    compressed.truncate(compressed.len() - 4);
    client
        .send(&client_frame(true, true, OpCode::Text, &compressed))
        .await;
    let (_, _, _, payload) = client.frame().await.expect("echo");
    assert!(!payload.is_empty());
    server.abort();
}

/// A frame cut by the network arrives whole: what a read leaves of a header or a payload
/// is kept until the next read (the connection keeps reading state only between such reads).
#[tokio::test]
async fn a_frame_split_over_several_reads_arrives_whole() {
    let (mut client, ws) = pair(Config::default(), None).await;
    let server = echo(ws);
    let frame = client_frame(true, false, OpCode::Text, b"split across three reads");
    // Inside the header (after its first byte), then inside the payload.
    for part in [&frame[..1], &frame[1..9], &frame[9..]] {
        client.send(part).await;
        client.stream.flush().await.expect("flush");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let (_, _, opcode, payload) = client.frame().await.expect("echo");
    assert_eq!(opcode, OpCode::Text);
    assert_eq!(payload, b"split across three reads");
    // And the connection is at a frame boundary again: the next frame is read on its own.
    client
        .send(&client_frame(true, false, OpCode::Text, b"next"))
        .await;
    let (_, _, _, payload) = client.frame().await.expect("echo");
    assert_eq!(payload, b"next");
    server.abort();
}

/// A client that compresses with context takeover refers back to earlier messages: the
/// server's decompressor must outlive each read and message.
#[tokio::test]
async fn client_compression_with_context_takeover_spans_messages() {
    let (mut client, ws) = pair(Config::default(), Some("permessage-deflate")).await;
    let server = echo(ws);
    let mut deflater = flate2::Compress::new(flate2::Compression::default(), false);
    let text = "the same words again and again, ".repeat(8);
    for round in 0..3 {
        let mut compressed = Vec::with_capacity(1024);
        deflater
            .compress_vec(
                text.as_bytes(),
                &mut compressed,
                flate2::FlushCompress::Sync,
            )
            .expect("deflate");
        compressed.truncate(compressed.len() - 4);
        if round > 0 {
            // Mostly back-references into the window of the earlier messages.
            assert!(compressed.len() < 20, "{} bytes", compressed.len());
        }
        client
            .send(&client_frame(true, true, OpCode::Text, &compressed))
            .await;
        let (_, rsv1, _, payload) = client.frame().await.expect("echo");
        let payload = if rsv1 {
            let mut inflater = flate2::Decompress::new(false);
            let mut input = payload;
            input.extend_from_slice(&[0, 0, 0xFF, 0xFF]);
            let mut out = Vec::with_capacity(text.len() + 64);
            inflater
                .decompress_vec(&input, &mut out, flate2::FlushDecompress::Sync)
                .expect("valid deflate");
            out
        } else {
            payload
        };
        assert_eq!(payload, text.as_bytes(), "round {round}");
    }
    server.abort();
}

/// Whether a server frame arrives within `wait`.
/// Queues a text message shared like a publication.
fn publish(outbox: &Outbox, text: &str) {
    outbox.push(Arc::new(Message::text(text))).expect("queued");
}

/// The text of the next frame, if one comes within `wait`.
async fn text_within(client: &mut Client, wait: Duration) -> Option<String> {
    let (_, _, _, payload) = timeout(wait, client.frame()).await.ok().flatten()?;
    Some(String::from_utf8(payload).expect("a text frame"))
}

#[tokio::test]
async fn write_coalescing_holds_a_burst_after_a_write_and_never_the_first_message() {
    let window = Duration::from_millis(400);
    let config = Config {
        write_coalesce: window,
        ..Config::default()
    };
    let (mut client, mut ws) = pair(config, None).await;
    let outbox = ws.outbox().clone();
    let server = tokio::spawn(async move { ws.recv().await.map(|_| ()) });

    // After a quiet period the first message goes out at once.
    publish(&outbox, "first");
    assert_eq!(
        text_within(&mut client, LIMIT).await.as_deref(),
        Some("first")
    );
    // What follows within the window waits for its end, then leaves together, in order.
    for i in 0..3 {
        publish(&outbox, &format!("burst {i}"));
    }
    assert_eq!(
        text_within(&mut client, Duration::from_millis(150)).await,
        None,
        "a burst right after a write is held until the window ends"
    );
    for i in 0..3 {
        assert_eq!(
            text_within(&mut client, LIMIT).await,
            Some(format!("burst {i}"))
        );
    }
    // Still busy: what comes right after that write waits for the next window too.
    publish(&outbox, "busy");
    assert_eq!(
        text_within(&mut client, Duration::from_millis(150)).await,
        None,
        "a busy connection holds again after the write that ended its hold"
    );
    assert_eq!(
        text_within(&mut client, LIMIT).await.as_deref(),
        Some("busy")
    );
    // A reply to the peer (a frame for this connection only) is not held: it goes out at
    // once, together with what was queued before it, even right after a write.
    publish(&outbox, "queued before the reply");
    outbox
        .push_frame(Frame::new(OpCode::Text, b"reply"))
        .expect("queued");
    assert_eq!(
        text_within(&mut client, Duration::from_millis(150))
            .await
            .as_deref(),
        Some("queued before the reply"),
        "a reply ends the hold"
    );
    assert_eq!(
        text_within(&mut client, Duration::from_millis(150))
            .await
            .as_deref(),
        Some("reply")
    );
    // A window that ends with nothing queued ends the busy period: the connection waits for
    // its outbox again, and the next message after the quiet period goes out at once.
    tokio::time::sleep(window * 2).await;
    publish(&outbox, "after quiet");
    assert_eq!(
        text_within(&mut client, Duration::from_millis(150))
            .await
            .as_deref(),
        Some("after quiet"),
        "after a quiet period a message is written at once"
    );
    server.abort();
}

/// Write pacing: once the connections that write are more than the pacer's budget allows at
/// the configured coalescing, a busy connection holds its output longer (here one writer
/// against a budget of two writes a second: the hold grows from 20 ms to the 250 ms cap).
#[tokio::test]
async fn write_pacing_stretches_the_hold_when_writers_exceed_the_budget() {
    let pacer = Arc::new(herald_ws::Pacer::new(2, Duration::from_millis(250)));
    let config = Config {
        write_coalesce: Duration::from_millis(20),
        pacer: Some(pacer.clone()),
        ..Config::default()
    };
    let (mut client, mut ws) = pair(config, None).await;
    let outbox = ws.outbox().clone();
    let server = tokio::spawn(async move { ws.recv().await.map(|_| ()) });
    publish(&outbox, "first");
    assert_eq!(
        text_within(&mut client, LIMIT).await.as_deref(),
        Some("first")
    );
    assert_eq!(
        pacer.hold(Duration::from_millis(20)),
        Duration::from_millis(20)
    );
    // The next write, a counting period (250 ms) later, ends the period that counted one
    // writer: 1 writer / 2 writes per s = 500 ms, capped at 250 ms.
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish(&outbox, "second");
    assert_eq!(
        text_within(&mut client, LIMIT).await.as_deref(),
        Some("second")
    );
    assert_eq!(
        pacer.hold(Duration::from_millis(20)),
        Duration::from_millis(250)
    );
    // A message right after that write waits for the paced hold, not the 20 ms one.
    publish(&outbox, "paced");
    assert_eq!(
        text_within(&mut client, Duration::from_millis(150)).await,
        None,
        "held past write_coalesce while paced"
    );
    assert_eq!(
        text_within(&mut client, LIMIT).await.as_deref(),
        Some("paced")
    );
    server.abort();
}

#[tokio::test]
async fn without_write_coalescing_every_message_goes_out_at_once() {
    let config = Config {
        write_coalesce: Duration::ZERO,
        ..Config::default()
    };
    let (mut client, mut ws) = pair(config, None).await;
    let outbox = ws.outbox().clone();
    let server = tokio::spawn(async move { ws.recv().await.map(|_| ()) });
    for i in 0..3 {
        publish(&outbox, &format!("m {i}"));
        assert_eq!(
            text_within(&mut client, Duration::from_secs(2)).await,
            Some(format!("m {i}"))
        );
    }
    server.abort();
}

/// Runs the server side, reporting each [`Incoming::Wake`] on the channel.
fn report_wakes(mut ws: WebSocket) -> tokio::sync::mpsc::UnboundedReceiver<()> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(incoming)) = ws.recv().await {
            if incoming == Incoming::Wake && tx.send(()).is_err() {
                return;
            }
        }
    });
    rx
}

#[tokio::test]
async fn notify_wakes_the_application_after_queued_output_even_mid_hold() {
    let config = Config {
        write_coalesce: Duration::from_millis(400),
        ..Config::default()
    };
    let (mut client, ws) = pair(config, None).await;
    let outbox = ws.outbox().clone();
    let mut wakes = report_wakes(ws);

    publish(&outbox, "first");
    assert_eq!(
        text_within(&mut client, LIMIT).await.as_deref(),
        Some("first")
    );
    // Right after a write a publication is held (write coalescing); a notify ends the hold,
    // and the publication queued before it goes out before the application wakes.
    publish(&outbox, "held");
    outbox.notify();
    assert_eq!(
        text_within(&mut client, Duration::from_millis(150))
            .await
            .as_deref(),
        Some("held"),
        "a notify ends the hold"
    );
    assert!(timeout(LIMIT, wakes.recv()).await.ok().flatten().is_some());
    // Notifies made before the task runs merge into one wake-up.
    outbox.notify();
    outbox.notify();
    assert!(timeout(LIMIT, wakes.recv()).await.ok().flatten().is_some());
    assert!(
        timeout(Duration::from_millis(200), wakes.recv())
            .await
            .is_err(),
        "two notifies in a row make one wake-up"
    );
}

/// A connection upgraded by hyper on one runtime and handed to another with
/// `from_upgraded_on` is served there, and keeps working after the first runtime is gone (as
/// Herald serves HTTP on a thread of its own and connections on the workers).
#[test]
fn an_upgraded_connection_moves_to_another_runtime() {
    let workers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("workers runtime");
    let handle = workers.handle().clone();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (ws_tx, ws_rx) = std::sync::mpsc::channel::<WebSocket>();
    let http_thread = std::thread::spawn(move || {
        let http = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("http runtime");
        http.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            addr_tx
                .send(listener.local_addr().expect("addr"))
                .expect("send addr");
            let (stream, _) = listener.accept().await.expect("accept");
            let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
            let done_tx = std::sync::Mutex::new(Some(done_tx));
            let done_tx = Arc::new(done_tx);
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    let (handle, ws_tx, done_tx) = (handle.clone(), ws_tx.clone(), done_tx.clone());
                    async move {
                        let (response, negotiated) =
                            accept(&req, &HandshakeConfig::default()).expect("handshake");
                        let on_upgrade = hyper::upgrade::on(&mut req);
                        tokio::spawn(async move {
                            let upgraded = on_upgrade.await.expect("upgraded");
                            let outbox = Arc::new(Outbox::new(1 << 20, CloseCode(3008), "slow"));
                            let ws = WebSocket::from_upgraded_on(
                                &handle,
                                upgraded,
                                &negotiated,
                                Arc::new(Config::default()),
                                outbox,
                            )
                            .expect("moved");
                            ws_tx.send(ws).expect("send websocket");
                            if let Some(done) = done_tx.lock().expect("lock").take() {
                                let _ = done.send(());
                            }
                        });
                        Ok::<_, std::convert::Infallible>(response.map(|()| String::new()))
                    }
                },
            );
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .with_upgrades();
            tokio::spawn(conn);
            let _ = done_rx.await;
        });
        // The HTTP runtime, and its I/O driver, are dropped here.
    });
    let addr = addr_rx.recv().expect("address");
    workers.block_on(async move {
        let mut client = TcpStream::connect(addr).await.expect("connect");
        client
            .write_all(
                b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            )
            .await
            .expect("send request");
        let mut reply = Vec::new();
        while !reply.ends_with(b"\r\n\r\n") {
            reply.push(client.read_u8().await.expect("read response"));
        }
        assert!(
            reply.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&reply)
        );
        let ws = tokio::task::spawn_blocking(move || {
            let ws = ws_rx.recv().expect("websocket");
            http_thread.join().expect("http thread ended");
            ws
        })
        .await
        .expect("joined");
        let server = echo(ws);
        let mut client = Client {
            stream: client,
            buf: Vec::new(),
        };
        client
            .send(&client_frame(true, false, OpCode::Text, b"still here"))
            .await;
        let echoed = timeout(LIMIT, client.frame()).await.expect("echo in time");
        assert_eq!(
            echoed,
            Some((true, false, OpCode::Text, b"still here".to_vec()))
        );
        server.abort();
    });
}
