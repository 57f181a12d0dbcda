//! Clients that send without reading: every ping and every command queues an answer, and a
//! client that never reads its answers must cost the server a bounded, small amount of memory,
//! be dropped once its output has stalled for `websocket.write_timeout`, and slow nobody else.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

use crate::common::*;
use crate::peak_rss_during;

/// How long each attack lasts, as the issue that found the flood asked.
const ATTACK: Duration = Duration::from_secs(10);
/// The most the server's RSS may grow during an attack.
const MAX_GROWTH_KIB: u64 = 10 * 1024;
/// Receive buffer the attacker asks for: an attacker keeps it small so that the server's
/// answers pile up at the server rather than in its own kernel.
const ATTACKER_RCVBUF: u32 = 4096;

/// A TCP connection to the server whose receive buffer is small, as an attacker's would be.
async fn attacker_socket(port: u16) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(ATTACKER_RCVBUF)
        .expect("SO_RCVBUF");
    tokio::time::timeout(STEP, socket.connect(([127, 0, 0, 1], port).into()))
        .await
        .expect("connect timed out")
        .expect("connect")
}

/// The server's count of clients it dropped as slow consumers.
async fn slow_consumers(server: &Server) -> f64 {
    server
        .metric("herald_client_slow_consumers_total")
        .await
        .unwrap_or(0.0)
}

/// Writes `chunk` again and again, never reading, until the server drops the connection or
/// `until`. Returns how long the connection lasted if the server dropped it.
///
/// The flooder cannot see a close frame (it reads nothing), and the server's drop reaches it
/// late: the kernel still holds the answers the server wrote, and sends them before its FIN.
/// So the server's own count of slow consumers tells when it gave up on the connection; a
/// failed write (the reset that follows) tells it too.
async fn flood(
    server: &Server,
    stream: &mut TcpStream,
    chunk: &[u8],
    until: Instant,
) -> Option<Duration> {
    let started = Instant::now();
    let dropped_before = slow_consumers(server).await;
    let write = async {
        loop {
            if stream.write_all(chunk).await.is_err() {
                return;
            }
        }
    };
    let watch = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if slow_consumers(server).await > dropped_before {
                return;
            }
        }
    };
    let left = until.saturating_duration_since(Instant::now());
    tokio::select! {
        () = write => Some(started.elapsed()),
        () = watch => Some(started.elapsed()),
        () = tokio::time::sleep(left) => None,
    }
}

/// Runs `attack` (one connection's flood, given the deadline; returns how long the connection
/// lasted if the server dropped it) again and again for [`ATTACK`], as an attacker that
/// reconnects would, while alice, subscribed to `news`, is sent a publication every 200 ms
/// and must receive each one. Returns the server's RSS growth (KiB) and how long each dropped
/// connection lasted.
async fn under_attack<F, Fut>(server: &Server, attack: F) -> (u64, Vec<Duration>)
where
    F: Fn(Instant) -> Fut,
    Fut: std::future::Future<Output = Option<Duration>>,
{
    let _turn = crate::one_attack_at_a_time().await;
    let mut alice = server.client("alice").await;
    alice.subscribe_ok("news").await;
    // Settle: the first connections touch code and allocator caches for the first time.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = crate::rss_kib(server.pid());
    let until = Instant::now() + ATTACK;

    let attacker = async {
        let mut dropped = Vec::new();
        while Instant::now() < until {
            match attack(until).await {
                Some(lasted) => dropped.push(lasted),
                None => break,
            }
        }
        dropped
    };
    let bystander = async {
        let mut n = 0;
        while Instant::now() < until {
            n += 1;
            server
                .api_ok("publish", json!({"channel": "news", "data": {"n": n}}))
                .await;
            let push = alice
                .next_push_within(STEP)
                .await
                .unwrap_or_else(|| panic!("alice got no publication {n} during the flood"));
            assert_eq!(push["push"]["pub"]["data"]["n"], n, "{push}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        n
    };
    let (peak, (dropped, published)) =
        peak_rss_during(server.pid(), async { tokio::join!(attacker, bystander) }).await;
    assert!(published >= 10, "only {published} publications checked");
    (peak.saturating_sub(before), dropped)
}

/// 64 KiB of empty, masked pings (6 bytes each).
fn pings() -> Vec<u8> {
    encode_client_frame(9, b"").repeat(64 * 1024 / 6)
}

/// Asserts what an attack may cost and that the server dropped the attacker within the attack.
/// How soon depends on the machine: the kernel's socket buffers take the answers until they
/// are full, then the write timeout (1 s by default) runs.
fn assert_bounded(server: &Server, growth_kib: u64, dropped: &[Duration]) {
    eprintln!("RSS growth {growth_kib} KiB; flooders dropped after {dropped:?}");
    assert!(
        growth_kib < MAX_GROWTH_KIB,
        "the server grew by {growth_kib} KiB during the flood; stderr:\n{}",
        server.stderr()
    );
    assert!(
        !dropped.is_empty(),
        "the flooder was never dropped in {ATTACK:?} (grew {growth_kib} KiB)"
    );
}

/// Empty pings, no token needed: each is answered with a pong the flooder never reads.
#[tokio::test]
async fn pings_without_reading_cost_little_and_the_flooder_is_dropped() {
    let server = Server::start(json!({})).await;
    let chunk = pings();
    let (growth, dropped) = under_attack(&server, |until| {
        let chunk = &chunk;
        let port = server.port;
        let server = &server;
        async move {
            let stream = attacker_socket(port).await;
            let (head, mut raw) = raw_handshake_on(stream, port, &[]).await;
            assert_eq!(head.status, 101, "{}", head.text);
            flood(server, &mut raw.stream, chunk, until).await
        }
    })
    .await;
    assert_bounded(&server, growth, &dropped);
}

/// Commands after connect, each answered with an error reply (RPC is not available) that the
/// flooder never reads.
#[tokio::test]
async fn commands_without_reading_cost_little_and_the_flooder_is_dropped() {
    let server = Server::start(json!({})).await;
    let mut chunk = Vec::new();
    for id in 2..2000u32 {
        let command = json!({"id": id, "rpc": {"method": "flood"}}).to_string();
        chunk.extend(encode_client_frame(1, command.as_bytes()));
    }
    let (growth, dropped) = under_attack(&server, |until| {
        let chunk = &chunk;
        let port = server.port;
        let server = &server;
        async move {
            let stream = attacker_socket(port).await;
            let (head, mut raw) = raw_handshake_on(stream, port, &[]).await;
            assert_eq!(head.status, 101, "{}", head.text);
            let connect = json!({"id": 1, "connect": {"token": token("mallory")}}).to_string();
            raw.send_frame(1, connect.as_bytes()).await;
            let (_, reply) = tokio::time::timeout(STEP, raw.read_frame())
                .await
                .expect("no connect reply")
                .expect("connection ended before the connect reply");
            assert!(
                String::from_utf8_lossy(&reply).contains("\"connect\""),
                "{}",
                String::from_utf8_lossy(&reply)
            );
            flood(server, &mut raw.stream, chunk, until).await
        }
    })
    .await;
    assert_bounded(&server, growth, &dropped);
}
