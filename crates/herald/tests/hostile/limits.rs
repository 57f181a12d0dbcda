//! `client.connection_limit` and `client.connection_rate_limit`: a flood of connections is
//! refused at the handshake with HTTP 503, as Centrifugo refuses it, and counted.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{STEP, Server, raw_handshake};

/// With `connection_limit: 50`, 50 WebSockets get in, the 51st gets 503 (and is counted), and
/// once one of the 50 leaves a new one gets in again.
#[tokio::test]
async fn the_connection_limit_refuses_the_51st_and_admits_after_one_leaves() {
    let server = Server::start(json!({"client": {"connection_limit": 50}})).await;
    let mut open = Vec::new();
    for i in 0..50 {
        let (head, ws) = raw_handshake(server.port, &[]).await;
        assert_eq!(head.status, 101, "connection {i}: {}", head.text);
        open.push(ws);
    }
    let (head, _) = raw_handshake(server.port, &[]).await;
    assert_eq!(head.status, 503, "the 51st: {}", head.text);
    assert_eq!(
        server
            .metric("herald_node_client_connection_limit_total")
            .await,
        Some(1.0)
    );

    // A well-behaved client is refused too, with the same answer.
    let refused = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(server.ws_url()))
        .await
        .expect("handshake timed out");
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 503)
        }
        other => panic!(
            "expected HTTP 503, got {:?}",
            other.map(|(_, r)| r.status())
        ),
    }

    // One leaves: the server notices the closed socket and a new client gets in.
    drop(open.pop());
    let deadline = Instant::now() + STEP;
    loop {
        let (head, ws) = raw_handshake(server.port, &[]).await;
        if head.status == 101 {
            open.push(ws);
            break;
        }
        assert_eq!(head.status, 503, "{}", head.text);
        assert!(
            Instant::now() < deadline,
            "no new client admitted within {STEP:?} after one left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And the limit holds again.
    let (head, _) = raw_handshake(server.port, &[]).await;
    assert_eq!(head.status, 503, "{}", head.text);
    assert!(
        server.stderr().contains("client.connection_limit"),
        "the refusal is logged: {}",
        server.stderr()
    );
}

/// With `connection_rate_limit: 5`, a burst of 60 handshakes admits 5 (plus what the bucket
/// refills while the burst lasts, 5 a second), refuses the rest with 503 and counts them;
/// a second later connections are admitted again.
#[tokio::test]
async fn the_connection_rate_limit_refuses_a_burst_beyond_the_rate() {
    let server = Server::start(json!({"client": {"connection_rate_limit": 5}})).await;
    let started = Instant::now();
    let burst = (0..60).map(|_| async {
        let (head, ws) = raw_handshake(server.port, &[]).await;
        (head.status, ws)
    });
    let results = futures_util::future::join_all(burst).await;
    let elapsed = started.elapsed();
    let admitted = results.iter().filter(|(status, _)| *status == 101).count();
    let refused = results.iter().filter(|(status, _)| *status == 503).count();
    assert_eq!(admitted + refused, 60, "only 101 and 503 expected");
    let most = 5 + (elapsed.as_secs_f64() * 5.0).ceil() as usize;
    assert!(
        (5..=most).contains(&admitted),
        "admitted {admitted} of 60 in {elapsed:?} (expected 5 to {most})"
    );
    assert_eq!(
        server
            .metric("herald_node_client_connection_rate_limit_total")
            .await,
        Some(refused as f64)
    );
    // The limit refused these, not the connection limit.
    assert_eq!(
        server
            .metric("herald_node_client_connection_limit_total")
            .await,
        Some(0.0)
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (head, _) = raw_handshake(server.port, &[]).await;
    assert_eq!(head.status, 101, "after a quiet second: {}", head.text);
}
