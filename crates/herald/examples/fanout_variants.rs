//! Fan-out cost of the per-subscriber selections, measured in process on the hub alone (no
//! sockets): plain subscribers, Fossil delta subscribers, and half the subscribers with a tags
//! filter, side by side. It answers "what do deltas and filters cost the publishing side, and
//! what do they save in bytes", which the socket benchmark (`herald-bench`) cannot: its
//! latency probe reads the publication data, which a delta hides.
//!
//! ```text
//! cargo run --release -p herald --example fanout_variants -- [SUBSCRIBERS] [PUBLICATIONS]
//! ```
//!
//! The stream is a ~1.8 KB JSON document of which each publication changes one field. Only
//! the fan-out calls are timed (the node's one encode per publication included); the queues
//! are drained between publications, outside the timing.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald::hub::{ClientHandle, Hub, Selection, SubFlags};
use herald::protocol::{FilterNode, Publication, raw};
use herald::ws::{CloseCode, Outbox, Outgoing};

/// One publication's document: 24 sensor rows, row `n % 24` changed.
fn document(n: u64) -> String {
    let rows: Vec<String> = (0..24u64)
        .map(|i| {
            let value = if i == n % 24 { 1000 + n } else { 20 + i };
            format!(
                r#"{{"id":{i},"name":"sensor-{i}","unit":"celsius","zone":"zone-{}","value":{value}}}"#,
                i % 4
            )
        })
        .collect();
    format!(
        r#"{{"updated":"counter","seq":{n},"rows":[{}]}}"#,
        rows.join(",")
    )
}

/// How a scenario's subscribers subscribe.
#[derive(Clone, Copy)]
enum Kind {
    Plain,
    Delta,
    /// Every other subscriber filters on `ticker == BTC`; publications alternate BTC / ETH.
    HalfFiltered,
}

struct Outcome {
    deliveries: u64,
    bytes: u64,
    elapsed: Duration,
}

fn run(kind: Kind, subscribers: usize, publications: u64) -> Outcome {
    let hub = Hub::new();
    let clients: Vec<Arc<ClientHandle>> = (0..subscribers)
        .map(|i| {
            let outbox = Arc::new(Outbox::new(64 << 20, CloseCode(3008), "slow"));
            let client = Arc::new(ClientHandle::new(
                format!("c{i}").as_str().into(),
                format!("u{i}"),
                None,
                outbox,
            ));
            hub.add_client(client.clone());
            client
        })
        .collect();
    let btc_filter = FilterNode {
        key: "ticker".into(),
        cmp: "eq".into(),
        val: "BTC".into(),
        ..FilterNode::default()
    };
    for (i, client) in clients.iter().enumerate() {
        let selection = match kind {
            Kind::Plain => Selection::default(),
            Kind::Delta => Selection {
                tags_filter: None,
                delta: true,
            },
            Kind::HalfFiltered if i % 2 == 0 => Selection {
                tags_filter: Some(Box::new(btc_filter.clone())),
                delta: false,
            },
            Kind::HalfFiltered => Selection::default(),
        };
        hub.subscribe_pending_selective("ch", client, SubFlags::default(), selection);
        hub.activate("ch", client, 0);
    }
    let mut drained = VecDeque::new();
    let mut outcome = Outcome {
        deliveries: 0,
        bytes: 0,
        elapsed: Duration::ZERO,
    };
    for n in 1..=publications {
        let mut tags = BTreeMap::new();
        let ticker = if n % 2 == 0 { "BTC" } else { "ETH" };
        tags.insert("ticker".to_string(), ticker.to_string());
        let data = raw(document(n)).expect("valid JSON");
        let started = Instant::now();
        let publication = Publication {
            data: Some(data),
            tags,
            offset: n,
            ..Publication::default()
        };
        let delivery = hub.broadcast_publication("ch", &publication, true);
        outcome.elapsed += started.elapsed();
        outcome.deliveries += delivery.delivered as u64;
        for client in &clients {
            client.outbox.drain_into(&mut drained);
            for item in drained.drain(..) {
                outcome.bytes += match item {
                    Outgoing::Shared(m) => m.payload().len() as u64,
                    Outgoing::Frame(f) => f.payload().len() as u64,
                };
            }
        }
    }
    outcome
}

fn main() {
    let mut args = std::env::args().skip(1);
    let subscribers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let publications: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    println!(
        "{subscribers} subscribers, {publications} publications of a {} B document",
        document(1).len()
    );
    println!("scenario        deliveries/s   ns/delivery   bytes/delivery");
    for (name, kind) in [
        ("plain", Kind::Plain),
        ("delta", Kind::Delta),
        ("tf on half", Kind::HalfFiltered),
    ] {
        // One warm-up round, then the measured one.
        run(kind, subscribers, publications / 10 + 1);
        let o = run(kind, subscribers, publications);
        let per_second = o.deliveries as f64 / o.elapsed.as_secs_f64();
        println!(
            "{name:<14} {per_second:>13.0} {:>13.1} {:>16.0}",
            o.elapsed.as_nanos() as f64 / o.deliveries as f64,
            o.bytes as f64 / o.deliveries as f64,
        );
    }
}
