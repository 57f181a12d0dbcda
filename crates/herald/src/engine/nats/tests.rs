//! The NATS engine against a real `nats-server -js` of each test's own (the integration
//! tests' helper): the embedded engine's history checks on JetStream, offsets under racing
//! appenders on two connections, idempotency, versions, removal, and delivery between two
//! brokers in offset order with a missing publication read back from the stream.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::config::NatsConfig;
use crate::engine::embedded::tests::{check_paging, check_recovery};
use crate::engine::{
    AppendRequest, Broker, BrokerEventHandler, History, HistoryFilter, HistoryOptions,
};
use crate::engine::{AppendResult, EngineError, StreamPosition};
use crate::protocol::{ClientInfo, Payload, Publication, raw};

#[path = "../../../tests/common/nats.rs"]
mod server;

fn opts(size: usize) -> HistoryOptions {
    HistoryOptions {
        size,
        ttl: Duration::from_secs(3600),
        meta_ttl: Duration::ZERO,
    }
}

fn payload(i: u64) -> Payload {
    raw(format!(r#"{{"n":{i}}}"#)).unwrap()
}

/// A connection to `nats`, waited for (bounded).
async fn connect(nats: &server::Nats) -> NatsConnection {
    let config = NatsConfig {
        url: nats.url(),
        prefix: "t".into(),
        write_timeout: Duration::from_secs(5),
        ..NatsConfig::default()
    };
    let connection = NatsConnection::start(&config, "test").unwrap();
    for _ in 0..250 {
        if connection.health().is_ok() {
            return connection;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not connected to {}: {:?}", nats.url(), connection.health());
}

async fn append(h: &JetStreamHistory, channel: &str, i: u64, o: HistoryOptions) -> AppendResult {
    h.append(&AppendRequest::new(channel, payload(i), o))
        .await
        .unwrap()
}

#[tokio::test]
async fn the_embedded_history_checks_pass_on_jetstream() {
    let nats = server::Nats::start();
    let h = JetStreamHistory::new(connect(&nats).await);
    for i in 1..=10 {
        let r = append(&h, "r", i, opts(100)).await;
        assert_eq!(r.position.offset, i);
        assert_eq!(r.publication.unwrap().data.get(), payload(i).get());
    }
    let epoch = h.top("r", opts(100)).await.unwrap().epoch;
    assert!(!epoch.is_empty());
    check_recovery(&h, &epoch).await;
    for i in 1..=20 {
        append(&h, "p", i, opts(100)).await;
    }
    check_paging(&h).await;
    // Another channel: its own stream, offsets and epoch.
    let other = append(&h, "chat:a.b c", 1, opts(100)).await;
    assert_eq!(other.position.offset, 1);
    assert_ne!(other.position.epoch, epoch);
}

#[tokio::test]
async fn racing_appenders_on_two_nodes_get_gapless_offsets() {
    let nats = server::Nats::start();
    let a = Arc::new(JetStreamHistory::new(connect(&nats).await));
    let b = Arc::new(JetStreamHistory::new(connect(&nats).await));
    let tasks: Vec<_> = (0..8u64)
        .map(|t| {
            let h = if t % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let mut offsets = Vec::new();
                for i in 0..25 {
                    offsets.push(
                        append(&h, "race", t * 100 + i, opts(1000))
                            .await
                            .position
                            .offset,
                    );
                }
                offsets
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (1..=200).collect::<Vec<_>>());
    let read = a
        .read("race", HistoryFilter::default(), opts(1000))
        .await
        .unwrap();
    assert_eq!(read.publications.len(), 200);
}

#[tokio::test]
async fn idempotency_versions_and_removal() {
    let nats = server::Nats::start();
    let h = JetStreamHistory::new(connect(&nats).await);
    let keyed = |key: &str, i| {
        let mut r = AppendRequest::new("i", payload(i), opts(100));
        r.idempotency_key = Some(key.into());
        r
    };
    let first = h.append(&keyed("k1", 1)).await.unwrap();
    let again = h.append(&keyed("k1", 2)).await.unwrap();
    assert!(again.duplicate && again.publication.is_none());
    assert_eq!(again.position, first.position);
    assert_eq!(h.append(&keyed("k2", 3)).await.unwrap().position.offset, 2);

    let versioned = |i, version, epoch: &str| {
        let mut r = AppendRequest::new("v", payload(i), opts(100));
        r.version = version;
        r.version_epoch = epoch.into();
        r
    };
    let outcome = |r: AppendResult| (r.position.offset, r.suppressed);
    assert_eq!(
        outcome(h.append(&versioned(1, 2, "")).await.unwrap()),
        (1, false)
    );
    assert_eq!(
        outcome(h.append(&versioned(2, 1, "")).await.unwrap()),
        (1, true)
    );
    assert_eq!(
        outcome(h.append(&versioned(3, 2, "")).await.unwrap()),
        (1, true)
    );
    assert_eq!(
        outcome(h.append(&versioned(4, 3, "e1")).await.unwrap()),
        (2, false)
    );
    assert_eq!(
        outcome(h.append(&versioned(5, 3, "e1")).await.unwrap()),
        (2, true)
    );
    assert_eq!(
        outcome(h.append(&versioned(6, 1, "e2")).await.unwrap()),
        (3, false)
    );
    // Racing versions: exactly one of the same version gets in.
    let requests: Vec<_> = (0..5).map(|i| versioned(10 + i, 7, "e2")).collect();
    let racing = futures_util::future::join_all(requests.iter().map(|r| h.append(r))).await;
    let fresh = racing
        .iter()
        .filter(|r| !r.as_ref().unwrap().suppressed)
        .count();
    assert_eq!(fresh, 1);

    // Removal keeps the epoch and the offset.
    let top = h.top("i", opts(100)).await.unwrap();
    History::remove(&h, "i").await.unwrap();
    let read = h
        .read("i", HistoryFilter::default(), opts(100))
        .await
        .unwrap();
    assert!(read.publications.is_empty());
    assert_eq!(read.position, top);
    let next = append(&h, "i", 9, opts(100)).await;
    assert_eq!(next.position.offset, top.offset + 1);
    assert_eq!(next.position.epoch, top.epoch);
    // A recovery from before the removal is not complete; from after it is.
    let r = h
        .recover("i", StreamPosition::new(1, &top.epoch), 100, opts(100))
        .await
        .unwrap();
    assert!(!r.recovered);
    let r = h.recover("i", top.clone(), 100, opts(100)).await.unwrap();
    assert!(r.recovered && r.publications.len() == 1);
}

/// Records what a broker hands to its node.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl BrokerEventHandler for Recorder {
    fn handle_publication(&self, channel: &str, publication: &Publication, _delta: bool) {
        let data = publication.data.as_ref().map_or("", |d| d.get());
        let line = format!("pub {channel} {} {data}", publication.offset);
        self.0.lock().unwrap().push(line);
    }
    fn handle_join(&self, channel: &str, info: &ClientInfo) {
        let line = format!("join {channel} {}", info.client);
        self.0.lock().unwrap().push(line);
    }
    fn handle_leave(&self, channel: &str, info: &ClientInfo) {
        let line = format!("leave {channel} {}", info.client);
        self.0.lock().unwrap().push(line);
    }
    fn handle_insufficient_state(&self, channel: &str) {
        self.0.lock().unwrap().push(format!("gap {channel}"));
    }
}

impl Recorder {
    async fn wait_for(&self, n: usize) -> Vec<String> {
        for _ in 0..250 {
            let seen = self.0.lock().unwrap().clone();
            if seen.len() >= n {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.0.lock().unwrap().clone()
    }
}

fn broker(connection: NatsConnection) -> (Arc<NatsBroker>, Arc<Recorder>) {
    let history = Arc::new(JetStreamHistory::new(connection.clone()));
    let broker = Arc::new(NatsBroker::new(connection, Some(history)));
    let recorder = Arc::new(Recorder::default());
    broker.set_handler(recorder.clone());
    (broker, recorder)
}

#[tokio::test]
async fn brokers_deliver_across_nodes_in_offset_order_and_fill_gaps_from_the_stream() {
    let nats = server::Nats::start();
    let (a, _) = broker(connect(&nats).await);
    let (b, seen) = broker(connect(&nats).await);
    b.subscribe("ch").await.unwrap();
    let info = ClientInfo {
        user: "u".into(),
        client: "c1".into(),
        ..ClientInfo::default()
    };
    a.publish_join("ch", &info).await.unwrap();
    for i in 1..=3 {
        a.publish(AppendRequest::new("ch", payload(i), opts(100)))
            .await
            .unwrap();
    }
    // Stored but never published to the nodes (as when NATS drops between the two): the next
    // publication reveals the gap and the node reads it from the stream.
    a.history_for_tests()
        .unwrap()
        .append(&AppendRequest::new("ch", payload(4), opts(100)))
        .await
        .unwrap();
    a.publish(AppendRequest::new("ch", payload(5), opts(100)))
        .await
        .unwrap();
    assert_eq!(seen.wait_for(6).await.len(), 6);
    // Without history: no offset, delivered as is.
    a.publish(AppendRequest::new(
        "ch",
        payload(6),
        HistoryOptions::default(),
    ))
    .await
    .unwrap();
    a.publish_leave("ch", &info).await.unwrap();
    let got = seen.wait_for(8).await;
    assert_eq!(
        got,
        [
            "join ch c1",
            r#"pub ch 1 {"n":1}"#,
            r#"pub ch 2 {"n":2}"#,
            r#"pub ch 3 {"n":3}"#,
            r#"pub ch 4 {"n":4}"#,
            r#"pub ch 5 {"n":5}"#,
            r#"pub ch 0 {"n":6}"#,
            "leave ch c1",
        ]
    );
    // Unsubscribed: nothing more arrives.
    b.unsubscribe("ch").await.unwrap();
    a.publish(AppendRequest::new("ch", payload(7), opts(100)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(seen.0.lock().unwrap().len(), 8);
}

#[tokio::test]
async fn a_gap_the_stream_no_longer_holds_is_reported() {
    let nats = server::Nats::start();
    let (a, _) = broker(connect(&nats).await);
    let (b, seen) = broker(connect(&nats).await);
    b.subscribe("g").await.unwrap();
    a.publish(AppendRequest::new("g", payload(1), opts(2)))
        .await
        .unwrap();
    seen.wait_for(1).await;
    // Three stored without reaching the nodes, in a stream keeping 2: offset 2 is gone.
    for i in 2..=4 {
        a.history_for_tests()
            .unwrap()
            .append(&AppendRequest::new("g", payload(i), opts(2)))
            .await
            .unwrap();
    }
    a.publish(AppendRequest::new("g", payload(5), opts(2)))
        .await
        .unwrap();
    let got = seen.wait_for(3).await;
    assert_eq!(got, [r#"pub g 1 {"n":1}"#, "gap g", r#"pub g 5 {"n":5}"#]);
}

#[tokio::test]
async fn nats_down_is_an_error_not_a_hang_and_it_recovers() {
    let mut nats = server::Nats::start();
    let connection = connect(&nats).await;
    let (a, _) = broker(connection.clone());
    nats.stop();
    let started = std::time::Instant::now();
    let mut failed = false;
    for _ in 0..100 {
        if connection.health().is_err() {
            failed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(failed, "health still ok with NATS stopped");
    let e = a
        .publish(AppendRequest::new("d", payload(1), opts(10)))
        .await
        .unwrap_err();
    assert!(matches!(e, EngineError::Unavailable(_)), "{e}");
    assert!(a.health().unwrap_err().contains(&nats.url()[7..]));
    assert!(started.elapsed() < Duration::from_secs(10));
    nats.start_again();
    for _ in 0..250 {
        if connection.health().is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = a
        .publish(AppendRequest::new("d", payload(2), opts(10)))
        .await
        .unwrap();
    assert_eq!(r.position.offset, 1);
}

#[test]
fn channel_tokens_are_injective_and_safe() {
    assert_eq!(channel_token("news"), "news");
    assert_eq!(channel_token("chat:room-1"), "chat_3Aroom-1");
    assert_eq!(channel_token("a.b *>"), "a_2Eb_20_2A_3E");
    // `_` itself is escaped, so "a_3A" (a channel) and "a:" never meet.
    assert_ne!(channel_token("a_3A"), channel_token("a:"));
    assert_eq!(channel_token("é"), "_C3_A9");
}

#[test]
fn long_channels_get_hashed_stream_names_that_fit_a_file_name() {
    assert_eq!(stream_token("news"), "news");
    let long = ":".repeat(100);
    let token = stream_token(&long);
    assert!(token.starts_with("_H") && token.len() == 66, "{token}");
    assert_ne!(token, stream_token(&":".repeat(101)));
    // Short enough: as it is.
    assert_eq!(stream_token(&"a".repeat(200)), "a".repeat(200));
}

#[tokio::test]
async fn a_long_channel_and_a_key_with_line_breaks_work() {
    let nats = server::Nats::start();
    let h = JetStreamHistory::new(connect(&nats).await);
    let channel = format!("chat:{}", "é".repeat(100));
    let keyed = |i| {
        let mut r = AppendRequest::new(channel.as_str(), payload(i), opts(10));
        r.idempotency_key = Some("line\r\nNats-Expected-Stream: x".into());
        r
    };
    let first = h.append(&keyed(1)).await.unwrap();
    assert_eq!(first.position.offset, 1);
    assert!(h.append(&keyed(2)).await.unwrap().duplicate);
    let read = h
        .read(&channel, HistoryFilter::default(), opts(10))
        .await
        .unwrap();
    assert_eq!(read.publications.len(), 1);
}
