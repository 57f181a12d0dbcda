//! What encoding one publication costs the publishing side, per encoding: the JSON and the
//! Protobuf push of the same publication, made the way fan-out makes them (once per encoding
//! per publication, framed once for all the channel's subscribers of that encoding:
//! `prepared::publication_message`). It answers issue 21's "encoding cost per publication",
//! which the socket benchmark cannot separate from everything else a delivery costs.
//!
//! ```text
//! cargo run --release -p herald --example encode_cost -- [PUBLICATIONS] [DATA_BYTES]
//! ```
//!
//! The publication is the one `herald-bench fanout` makes (`{"ts":…,"seq":…,"pad":"…"}`,
//! 64 bytes by default, with an offset, published through the API so without client info),
//! and a second one with client info and two tags, as a client-side publish with tags carries.
//! Each encoding runs 5 rounds of PUBLICATIONS encodes, alternating; the median round is
//! printed in ns per publication, with the encoded frame's size.

use std::collections::BTreeMap;
use std::time::Instant;

use herald::prepared::publication_message;
use herald::protocol::{ClientInfo, Encoding, Payload, Publication};

fn publication(seq: u64, data_bytes: usize, rich: bool) -> Publication {
    let head = format!(
        r#"{{"ts":{},"seq":{seq},"pad":""#,
        1_000_000_000_000u64 + seq
    );
    let pad = data_bytes.saturating_sub(head.len() + 2);
    let data = format!("{head}{}\"}}", "x".repeat(pad));
    let mut p = Publication {
        data: Some(Payload::from_json(data).expect("valid JSON")),
        offset: seq,
        ..Publication::default()
    };
    if rich {
        p.info = Some(ClientInfo {
            user: "user-42".into(),
            client: "5f1c7a3e-2f4b-4c1e-9a0b-7d2e1f3c4b5a".into(),
            ..ClientInfo::default()
        });
        p.tags = BTreeMap::from([
            ("ticker".to_owned(), "BTC".to_owned()),
            ("source".to_owned(), "feed-1".to_owned()),
        ]);
    }
    p
}

/// ns per publication of one round, and the last frame's size.
fn round(encoding: Encoding, pubs: &[Publication]) -> (f64, usize) {
    let started = Instant::now();
    let mut size = 0;
    for p in pubs {
        let message = publication_message(encoding, "bench", p).expect("encodes");
        size = message.frame().len();
        std::hint::black_box(&message);
    }
    (
        started.elapsed().as_nanos() as f64 / pubs.len() as f64,
        size,
    )
}

fn main() {
    let mut args = std::env::args().skip(1);
    let count: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let data_bytes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    println!("{count} publications per round, {data_bytes}-byte data, median of 5 rounds");
    println!("| publication | encoding | ns per publication | frame bytes |");
    println!("|---|---|---:|---:|");
    for rich in [false, true] {
        let pubs: Vec<Publication> = (1..=count)
            .map(|seq| publication(seq, data_bytes, rich))
            .collect();
        let mut times = [Vec::new(), Vec::new()];
        let mut sizes = [0; 2];
        for _ in 0..5 {
            for (i, encoding) in [Encoding::Json, Encoding::Protobuf].into_iter().enumerate() {
                let (ns, size) = round(encoding, &pubs);
                times[i].push(ns);
                sizes[i] = size;
            }
        }
        for (i, name) in ["JSON", "Protobuf"].into_iter().enumerate() {
            times[i].sort_by(f64::total_cmp);
            println!(
                "| {} | {name} | {:.0} | {} |",
                if rich {
                    "with client info and 2 tags"
                } else {
                    "API publish (offset only)"
                },
                times[i][2],
                sizes[i]
            );
        }
    }
}
