//! [`Pacer`]: stretches write coalescing while many connections write, so that the server's
//! write system calls stay within a budget per second however many connections are busy.
//!
//! Why: on loopback (and largely on a real network) a `sendmsg` costs the server ~5–7 µs of
//! kernel time whatever it carries, and the reader a wake-up and a `read` of its own. Write
//! coalescing (`Config::write_coalesce`) bounds how often *one* connection writes, but the
//! cost that saturates a machine is how often *all of them together* do: 10,000 connections
//! sent 100 publications a second each, written every 5 ms at most, still make up to a
//! million writes a second, far more than two cores can make (or their clients read). The
//! server then falls behind, and its writes carry whatever piled up meanwhile, in an order the
//! scheduler decides: latency grows for everyone, unevenly. Measured with typical clients
//! (one tokio-tungstenite task each) at 10,000 × 100/s on two cores shared with the clients,
//! ~111,000 writes a second of 9 messages each gave a p50 of 170 ms and a p99 of 500–600 ms;
//! holding each busy connection's output so that writes stay within budget took the p99 to
//! 290–410 ms at the same median, and halved the p99 at 1,000 × 5,000/s with light clients
//! (see bench/RESULTS.md, issue 25).
//!
//! How: every connection that writes counts itself once per counting period (its previous
//! write was before the period began). At the end of a period the hold becomes
//! `writers / budget` seconds (at most `max_hold`): with that hold each busy connection writes
//! at most `1 / hold` times a second, all of them together at most `budget`. Fewer busy
//! connections, a shorter hold; below `budget × write_coalesce` writers, the configured
//! coalescing applies unchanged. Nothing is locked: one atomic add per connection per period,
//! and a relaxed load per hold.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::time::Instant;

/// How long writers are counted before the hold is recomputed. Longer than the longest hold
/// (so a busy connection, held that long, writes at least once in every period and is
/// counted), short enough to follow a change of load within a fraction of a second.
const PERIOD: Duration = Duration::from_millis(250);

/// The shared state of write pacing: one per server, shared by every connection's
/// [`Config`](crate::Config).
#[derive(Debug)]
pub struct Pacer {
    /// Writes per second that all connections together should stay under.
    budget: u64,
    /// The longest hold pacing may ask for, ns.
    max_hold_ns: u64,
    /// Connections that wrote in the current period.
    writers: AtomicU32,
    /// Start of the current period, ns after `base`.
    period_start: AtomicU64,
    /// The hold computed at the end of the last period, ns.
    hold_ns: AtomicU64,
    base: Instant,
}

impl Pacer {
    /// Pacing to at most `writes_per_second` writes a second over all connections, holding
    /// a connection's output at most `max_hold` (clamped to the counting period, 250 ms).
    pub fn new(writes_per_second: u64, max_hold: Duration) -> Pacer {
        Pacer {
            budget: writes_per_second.max(1),
            max_hold_ns: duration_ns(max_hold.min(PERIOD)),
            writers: AtomicU32::new(0),
            period_start: AtomicU64::new(0),
            hold_ns: AtomicU64::new(0),
            base: Instant::now(),
        }
    }

    /// How long a busy connection holds its output: `min` (the configured coalescing), or
    /// longer while many connections write.
    pub fn hold(&self, min: Duration) -> Duration {
        min.max(Duration::from_nanos(self.hold_ns.load(Relaxed)))
    }

    /// Records a write made `now` by a connection whose previous write was at `previous`.
    pub fn wrote(&self, previous: Option<Instant>, now: Instant) {
        let now_ns = self.ns(now);
        let start = self.period_start.load(Relaxed);
        let elapsed = now_ns.saturating_sub(start);
        if elapsed >= duration_ns(PERIOD)
            && self
                .period_start
                .compare_exchange(start, now_ns, Relaxed, Relaxed)
                .is_ok()
        {
            // This write is the first of the new period.
            let writers = u64::from(self.writers.swap(1, Relaxed));
            // After a quiet spell the count covers more than one period: it says nothing of
            // the current load, so pacing starts over.
            let hold = if elapsed < 2 * duration_ns(PERIOD) {
                (writers.saturating_mul(1_000_000_000) / self.budget).min(self.max_hold_ns)
            } else {
                0
            };
            self.hold_ns.store(hold, Relaxed);
            return;
        }
        if previous.is_none_or(|at| self.ns(at) < start) {
            self.writers.fetch_add(1, Relaxed);
        }
    }

    fn ns(&self, at: Instant) -> u64 {
        duration_ns(at.saturating_duration_since(self.base))
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each of `n` connections writes once at `at`, its first write (or the first after an
    /// earlier period).
    fn all_write(p: &Pacer, n: usize, at: Instant) {
        for _ in 0..n {
            p.wrote(None, at);
        }
    }

    #[test]
    fn the_hold_grows_with_the_number_of_writers_up_to_the_cap() {
        let p = Pacer::new(100_000, Duration::from_millis(100));
        let t0 = p.base + Duration::from_millis(1);
        let min = Duration::from_millis(5);
        assert_eq!(p.hold(min), min, "no writers counted yet");
        // 1,000 writers in a period: 1,000 / 100,000 per s = 10 ms.
        all_write(&p, 1_000, t0);
        all_write(&p, 1, t0 + PERIOD);
        assert_eq!(p.hold(min), Duration::from_millis(10));
        // Writing again in the same period does not count twice.
        for _ in 0..5_000 {
            p.wrote(Some(t0 + PERIOD), t0 + PERIOD + Duration::from_millis(2));
        }
        // 30,000 writers: 300 ms, capped at 100 ms.
        all_write(&p, 29_999, t0 + PERIOD + Duration::from_millis(3));
        all_write(&p, 1, t0 + 2 * PERIOD + Duration::from_millis(3));
        assert_eq!(p.hold(min), Duration::from_millis(100));
        // Few writers: the configured coalescing again.
        all_write(&p, 10, t0 + 2 * PERIOD + Duration::from_millis(4));
        all_write(&p, 1, t0 + 3 * PERIOD + Duration::from_millis(4));
        assert_eq!(p.hold(min), min);
    }

    #[test]
    fn a_quiet_spell_resets_the_hold() {
        let p = Pacer::new(10_000, Duration::from_millis(100));
        let t0 = p.base + Duration::from_millis(1);
        all_write(&p, 500, t0);
        all_write(&p, 1, t0 + PERIOD);
        assert_eq!(p.hold(Duration::ZERO), Duration::from_millis(50));
        // Nothing written for seconds: the next period's count starts from one writer, and
        // the stale count is not turned into a hold.
        all_write(&p, 1, t0 + 20 * PERIOD);
        assert_eq!(p.hold(Duration::ZERO), Duration::ZERO);
    }
}
