//! Latency histograms (HdrHistogram, microseconds) and counters.
//!
//! Inside a worker each runtime thread records into its own histogram (found through a
//! thread-local, locked without contention); a snapshot merges them. Workers send their
//! histograms to the parent as V2-deflate serialized, base64-encoded text; the parent merges.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

/// Highest trackable latency: one hour in microseconds (values above are clamped).
const HIGHEST_US: u64 = 3_600_000_000;

/// A new latency histogram (1 µs .. 1 h, 3 significant digits).
pub fn new_hist() -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(1, HIGHEST_US, 3).expect("valid bounds");
    h.auto(true);
    h
}

/// Records a latency given in nanoseconds.
pub fn record_ns(h: &mut Histogram<u64>, ns: u64) {
    h.saturating_record((ns / 1000).clamp(1, HIGHEST_US));
}

/// Serializes a histogram as base64 of its V2 deflate encoding.
pub fn encode(h: &Histogram<u64>) -> String {
    let mut out = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut out)
        .expect("serializing to memory cannot fail");
    STANDARD.encode(out)
}

/// Decodes [`encode`]'s output.
pub fn decode(s: &str) -> Result<Histogram<u64>, String> {
    let bytes = STANDARD
        .decode(s)
        .map_err(|e| format!("histogram base64: {e}"))?;
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| format!("histogram: {e:?}"))?;
    Ok(h)
}

/// Merges `other` into `into`.
pub fn merge(into: &mut Histogram<u64>, other: &Histogram<u64>) {
    into.add(other)
        .expect("auto-resizing histograms accept any values");
}

/// Latency summary in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Maximum.
    pub max_ms: f64,
}

/// Percentiles of a microsecond histogram, in ms.
pub fn summarize(h: &Histogram<u64>) -> Summary {
    if h.is_empty() {
        return Summary::default();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    Summary {
        count: h.len(),
        mean_ms: h.mean() / 1000.0,
        p50_ms: ms(h.value_at_quantile(0.5)),
        p90_ms: ms(h.value_at_quantile(0.9)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
    }
}

/// What one runtime thread of a worker records.
pub struct Local {
    /// Delivery latency (publish send → the bench's read).
    pub delivery: Histogram<u64>,
    /// Arrival latency (publish send → the kernel's receive timestamp of the bytes): the
    /// delivery latency without the time the bytes waited for the bench to read them.
    pub arrival: Histogram<u64>,
    /// Bench publications received.
    pub received: u64,
    /// Publications whose `seq` was not above the previous one from the same publisher.
    pub out_of_order: u64,
    /// Server pings answered.
    pub pings: u64,
    /// Monotonic ns of the last publication received.
    pub last_recv_ns: u64,
    /// WebSocket upgrade latency (TCP connect + handshake).
    pub handshake: Histogram<u64>,
    /// `connect` command round trip.
    pub connect: Histogram<u64>,
    /// `subscribe` command round trip.
    pub subscribe: Histogram<u64>,
    /// The whole set-up of one client.
    pub setup: Histogram<u64>,
}

impl Local {
    fn new() -> Local {
        Local {
            delivery: new_hist(),
            arrival: new_hist(),
            received: 0,
            out_of_order: 0,
            pings: 0,
            last_recv_ns: 0,
            handshake: new_hist(),
            connect: new_hist(),
            subscribe: new_hist(),
            setup: new_hist(),
        }
    }
}

static REGISTRY: Mutex<Vec<Arc<Mutex<Local>>>> = Mutex::new(Vec::new());

thread_local! {
    static LOCAL: Arc<Mutex<Local>> = {
        let l = Arc::new(Mutex::new(Local::new()));
        REGISTRY.lock().unwrap_or_else(|e| e.into_inner()).push(l.clone());
        l
    };
}

/// Runs `f` on this thread's recorder.
pub fn with_local<R>(f: impl FnOnce(&mut Local) -> R) -> R {
    LOCAL.with(|l| f(&mut l.lock().unwrap_or_else(|e| e.into_inner())))
}

/// Sum of the counters of all threads: (received, out_of_order, pings).
pub fn counters() -> (u64, u64, u64) {
    let reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    reg.iter().fold((0, 0, 0), |acc, l| {
        let l = l.lock().unwrap_or_else(|e| e.into_inner());
        (acc.0 + l.received, acc.1 + l.out_of_order, acc.2 + l.pings)
    })
}

/// All threads' recorders merged into one.
pub fn snapshot() -> Local {
    let mut all = Local::new();
    let reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    for l in reg.iter() {
        let l = l.lock().unwrap_or_else(|e| e.into_inner());
        merge(&mut all.delivery, &l.delivery);
        merge(&mut all.arrival, &l.arrival);
        merge(&mut all.handshake, &l.handshake);
        merge(&mut all.connect, &l.connect);
        merge(&mut all.subscribe, &l.subscribe);
        merge(&mut all.setup, &l.setup);
        all.received += l.received;
        all.out_of_order += l.out_of_order;
        all.pings += l.pings;
        all.last_recv_ns = all.last_recv_ns.max(l.last_recv_ns);
    }
    all
}

/// Counts of labelled events (error kinds, close codes), shared by a process's tasks.
#[derive(Default)]
pub struct Tally(Mutex<BTreeMap<String, u64>>);

impl Tally {
    /// Adds one occurrence of `what` (labels are cut to 200 bytes; at most 100 labels).
    pub fn add(&self, what: impl Into<String>) {
        let mut what: String = what.into();
        if what.len() > 200 {
            let mut cut = 200;
            while !what.is_char_boundary(cut) {
                cut -= 1;
            }
            what.truncate(cut);
        }
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= 100 && !m.contains_key(&what) {
            what = "(other)".into();
        }
        *m.entry(what).or_insert(0) += 1;
    }

    /// The counts so far.
    pub fn get(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Adds tallies into `into`.
pub fn add_tallies(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_insert(0) += v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialized_histograms_merge_like_the_originals() {
        let mut a = new_hist();
        let mut b = new_hist();
        let mut both = new_hist();
        for i in 1..=10_000u64 {
            let ns = i * 1_000 + (i % 7) * 13;
            if i % 3 == 0 {
                record_ns(&mut a, ns);
            } else {
                record_ns(&mut b, ns);
            }
            record_ns(&mut both, ns);
        }
        record_ns(&mut a, 30_000_000_000); // 30 s outlier
        record_ns(&mut both, 30_000_000_000);
        let mut merged = new_hist();
        merge(&mut merged, &decode(&encode(&a)).unwrap());
        merge(&mut merged, &decode(&encode(&b)).unwrap());
        assert_eq!(merged.len(), both.len());
        assert_eq!(merged.max(), both.max());
        assert_eq!(summarize(&merged), summarize(&both));
        let s = summarize(&merged);
        assert_eq!(s.count, 10_001);
        assert!((s.p50_ms - 5.0).abs() < 0.01, "{s:?}");
        assert!((s.p99_ms - 9.9).abs() < 0.01, "{s:?}");
        assert!((s.max_ms - 30_000.0).abs() < 30.0, "{s:?}");
        assert!(decode("not base64!").is_err());
        assert_eq!(summarize(&new_hist()), Summary::default());
    }

    #[test]
    fn sub_microsecond_and_huge_values_are_clamped() {
        let mut h = new_hist();
        record_ns(&mut h, 0);
        record_ns(&mut h, u64::MAX);
        assert_eq!(h.len(), 2);
        assert_eq!(h.min(), 1);
    }

    #[test]
    fn thread_recorders_are_merged() {
        let t = std::thread::spawn(|| {
            with_local(|l| {
                l.received += 2;
                record_ns(&mut l.delivery, 5_000);
            })
        });
        t.join().unwrap();
        with_local(|l| {
            l.received += 1;
            record_ns(&mut l.delivery, 7_000);
        });
        let s = snapshot();
        // Other tests in this binary may record too; ours are included.
        assert!(s.received >= 3);
        assert!(s.delivery.len() >= 2);
        assert!(counters().0 >= 3);
    }

    #[test]
    fn tally_counts_and_caps() {
        let t = Tally::default();
        t.add("a");
        t.add("a");
        t.add("x".repeat(500));
        let m = t.get();
        assert_eq!(m["a"], 2);
        assert!(m.keys().all(|k| k.len() <= 200));
        for i in 0..200 {
            t.add(format!("k{i}"));
        }
        assert!(t.get().len() <= 101);
    }
}
