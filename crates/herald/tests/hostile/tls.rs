//! The flood attacks over TLS (`wss://`): a client that sends pings without ever reading must
//! stay bounded there too, since the connection's output now passes through rustls's buffer
//! before the socket (see herald-ws's `tls` module), and backpressure has to reach through it.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::tls::TestCert;
use crate::common::{STEP, Server, Ws, encode_client_frame, token};
use crate::peak_rss_during;

/// How long the flood lasts.
const FLOOD: Duration = Duration::from_secs(10);
/// The most the server's RSS may grow during the flood.
const MAX_GROWTH_KIB: u64 = 10 * 1024;

/// Opens a `wss://` WebSocket by hand (handshake written and read raw over TLS), for a client
/// that then floods and never reads.
async fn raw_wss(
    port: u16,
    cert: &TestCert,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    // A small receive buffer, as an attacker would ask for, so that what the server sends
    // piles up at the server rather than in this process's kernel.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let tcp = tokio::time::timeout(STEP, socket.connect(([127, 0, 0, 1], port).into()))
        .await
        .expect("connect timed out")
        .expect("connect");
    let mut tls = crate::common::tls::connect_on(tcp, cert.client_config())
        .await
        .expect("TLS connection");
    let request = format!(
        "GET /connection/websocket HTTP/1.1\r\nHost: localhost:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    tokio::time::timeout(STEP, tls.write_all(request.as_bytes()))
        .await
        .expect("handshake write timed out")
        .expect("write the handshake");
    // Read the response head byte by byte: nothing past it may be consumed here.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = tokio::time::timeout(STEP, tls.read_u8())
            .await
            .expect("no handshake response in time")
            .expect("read the handshake response");
        head.push(byte);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    tls
}

#[tokio::test]
async fn a_ping_flood_over_tls_that_never_reads_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::generate(dir.path(), "flood");
    let server = Server::start(cert.server_config()).await;
    let mut good = Ws::open_tls(server.port, cert.client_config()).await;
    let reply = good.connect(&token("good")).await;
    assert!(reply.get("connect").is_some(), "{reply}");
    good.subscribe_ok("news").await;

    let _turn = crate::one_attack_at_a_time().await;
    let mut flooder = raw_wss(server.port, &cert).await;
    let pings: Vec<u8> = std::iter::repeat_n(encode_client_frame(0x9, b""), 10_000)
        .flatten()
        .collect();
    let before = crate::rss_kib(server.pid());
    let flood = async {
        let start = Instant::now();
        let (mut sent, mut at) = (0usize, 0usize);
        let mut ended = None;
        while start.elapsed() < FLOOD {
            // A write the server no longer takes (it stopped reading) waits here: that is the
            // backpressure. Bounded, so the flood keeps trying for its whole time; a partial
            // write goes on from where it stopped, so the frames stay whole.
            match tokio::time::timeout(Duration::from_millis(200), flooder.write(&pings[at..]))
                .await
            {
                Ok(Ok(0)) => {
                    ended = Some((start.elapsed(), "write returned 0".to_string()));
                    break;
                }
                Ok(Ok(n)) => {
                    sent += n;
                    at = (at + n) % pings.len();
                }
                Ok(Err(e)) => {
                    ended = Some((start.elapsed(), e.to_string()));
                    break;
                }
                Err(_) => {}
            }
        }
        (sent, ended)
    };
    let (peak, (sent, ended)) = peak_rss_during(server.pid(), flood).await;
    let growth = peak.saturating_sub(before);
    eprintln!(
        "TLS ping flood: {} MiB of pings taken, RSS {before} KiB -> peak {peak} KiB \
         (+{growth} KiB); flooder ended: {ended:?}",
        sent / (1024 * 1024)
    );
    assert!(
        growth < MAX_GROWTH_KIB,
        "RSS grew by {growth} KiB during a {FLOOD:?} ping flood over TLS (limit \
         {MAX_GROWTH_KIB} KiB)"
    );

    // The server gave up on the flooder (its write timeout), as on a plain connection; the
    // flooder may see it late (see `flood.rs`), so the server's own count says it.
    let deadline = Instant::now() + STEP;
    loop {
        let metrics = crate::common::tls::https(
            server.port,
            cert.client_config(),
            "GET",
            "/metrics",
            &[],
            None,
        )
        .await
        .text();
        let dropped = metrics
            .lines()
            .find_map(|l| l.strip_prefix("herald_client_slow_consumers_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if dropped >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the TLS flooder was not dropped as a slow consumer (ended: {ended:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The well-behaved client on the same server is still served.
    let published = crate::common::tls::api(
        server.port,
        cert.client_config(),
        "publish",
        json!({"channel": "news", "data": {"after": "flood"}}),
    )
    .await;
    assert_eq!(published.status, 200, "{}", published.text());
    let push = good.next_push().await;
    assert_eq!(push["push"]["pub"]["data"]["after"], "flood", "{push}");
    assert!(!server.stderr().contains("panicked"), "{}", server.stderr());
}

/// Connections that open TCP to the TLS port and never finish the handshake (a slowloris on
/// TLS) are closed after the handshake timeout (10 s), and others get in meanwhile.
#[tokio::test]
async fn a_handshake_that_never_finishes_is_closed_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::generate(dir.path(), "slow");
    let server = Server::start(cert.server_config()).await;
    let started = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..50 {
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
            .await
            .expect("connect");
        // The start of a TLS record header, and nothing more.
        tcp.write_all(&[0x16, 0x03, 0x01]).await.expect("write");
        idle.push(tcp);
    }
    // Meanwhile, a client that completes its handshake is served.
    let mut ws = Ws::open_tls(server.port, cert.client_config()).await;
    let reply = ws.connect(&token("good")).await;
    assert!(reply.get("connect").is_some(), "{reply}");
    for mut tcp in idle {
        let mut buf = [0u8; 64];
        let ended = tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(
            ended.is_ok(),
            "a stalled handshake was still open after 15 s"
        );
    }
    let lasted = started.elapsed();
    assert!(
        lasted >= Duration::from_secs(9),
        "stalled handshakes were closed after {lasted:?}, before the 10 s timeout"
    );
    ws.assert_alive().await;
}

/// A subscriber over TLS that stops reading while publications keep coming is dropped as a
/// slow consumer when its queue passes `client.queue_max_size`, long before its write
/// timeout: a connection whose TLS output is stalled takes nothing more from its queue, so
/// the queue's budget sees what waits, as on a plain connection.
#[tokio::test]
async fn a_tls_subscriber_that_stops_reading_is_dropped_by_its_queue_budget() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::generate(dir.path(), "slow-reader");
    let mut config = cert.server_config();
    // Long, so that only the queue's budget can drop the reader within the test.
    crate::common::merge(&mut config, json!({"websocket": {"write_timeout": "60s"}}));
    let server = Server::start(config).await;
    let _turn = crate::one_attack_at_a_time().await;
    let mut reader = raw_wss(server.port, &cert).await;
    for command in [
        json!({"id": 1, "connect": {"token": token("slow")}}),
        json!({"id": 2, "subscribe": {"channel": "news"}}),
    ] {
        let frame = encode_client_frame(1, command.to_string().as_bytes());
        reader.write_all(&frame).await.expect("write a command");
    }
    // Read until the subscribe reply, then never again.
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("\"subscribe\"") {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(STEP, reader.read(&mut buf))
            .await
            .expect("no subscribe reply in time")
            .expect("read the replies");
        assert!(n > 0, "connection ended before the subscribe reply");
        seen.extend_from_slice(&buf[..n]);
    }

    let slow = |metrics: String| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("herald_client_slow_consumers_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let metrics = || async {
        crate::common::tls::https(
            server.port,
            cert.client_config(),
            "GET",
            "/metrics",
            &[],
            None,
        )
        .await
        .text()
    };
    let before = slow(metrics().await);
    // 4 MB of publications (4 x the default queue budget), 64 KB each.
    let text = "p".repeat(64 * 1024);
    let started = Instant::now();
    for i in 0..64 {
        let published = crate::common::tls::api(
            server.port,
            cert.client_config(),
            "publish",
            json!({"channel": "news", "data": {"i": i, "text": text}}),
        )
        .await;
        assert_eq!(published.status, 200, "{}", published.text());
    }
    let deadline = Instant::now() + STEP;
    while slow(metrics().await) <= before {
        assert!(
            Instant::now() < deadline,
            "the TLS subscriber that stopped reading was not dropped by its queue budget \
             within {:?} of the first publication",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
