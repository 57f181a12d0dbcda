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
//!
//! While the cores are overcommitted, the budget shrinks: at the end of each period the
//! thread that starts the next one samples how long it waited for a core
//! ([`crate::contention`]). Over [`CONTENDED`] of its runnable time, the budget in force drops
//! by [`STEP`] (down to [`MIN_SHARE`] of the configured one); under [`UNCONTENDED`] it grows
//! back. A server whose threads have the cores to themselves rarely waits that long, and keeps
//! its full budget.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::time::Instant;

/// How long writers are counted before the hold is recomputed. Longer than the longest hold
/// (so a busy connection, held that long, writes at least once in every period and is
/// counted), short enough to follow a change of load within a fraction of a second.
const PERIOD: Duration = Duration::from_millis(250);

/// The budget in force, in thousandths of the configured one, when nothing contends.
const FULL: u32 = 1000;

/// The least share of the configured budget that contention can leave (thousandths): at 40 %,
/// holds are at most 2.5 times as long as the budget alone would make them (and never longer
/// than `max_hold`).
const MIN_SHARE: u32 = 400;

/// How much of the configured budget (thousandths) one period of contention takes away, or
/// one uncontended period gives back: from full to the least share in 2.5 s.
const STEP: u32 = 60;

/// The share of a thread's runnable time spent waiting for a core above which the budget
/// shrinks. Measured at 10,000 × 100/s on two cores (bench/RESULTS.md, issue 25): 0.45–0.60
/// with co-located typical clients (whose wake-ups are what fewer writes spare), 0.30–0.45
/// with light ones. A server whose threads have the cores to themselves waits far less.
const CONTENDED: f64 = 0.45;

/// The share of waiting below which the budget grows back. Between the two, it stays: the
/// samples of one period are noisy (±0.1), and a budget that followed every one would swing.
const UNCONTENDED: f64 = 0.35;

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
    /// The share of `budget` in force, thousandths: below [`FULL`] while the cores are
    /// contended.
    share: AtomicU32,
    /// Samples the contention of the calling thread ([`crate::contention::sample`]; the tests
    /// put in their own).
    sample: fn() -> Option<f64>,
    base: Instant,
}

impl Pacer {
    /// Pacing to at most `writes_per_second` writes a second over all connections, holding
    /// a connection's output at most `max_hold` (clamped to the counting period, 250 ms).
    pub fn new(writes_per_second: u64, max_hold: Duration) -> Pacer {
        Pacer::with_contention(writes_per_second, max_hold, crate::contention::sample)
    }

    /// [`Pacer::new`], with `sample` telling how contended the calling thread is (0 to 1, or
    /// `None` to leave the budget as it is) instead of [`crate::contention::sample`]: for
    /// tests, and for platforms whose contention is measured another way.
    pub fn with_contention(
        writes_per_second: u64,
        max_hold: Duration,
        sample: fn() -> Option<f64>,
    ) -> Pacer {
        Pacer {
            budget: writes_per_second.max(1),
            max_hold_ns: duration_ns(max_hold.min(PERIOD)),
            writers: AtomicU32::new(0),
            period_start: AtomicU64::new(0),
            hold_ns: AtomicU64::new(0),
            share: AtomicU32::new(FULL),
            sample,
            base: Instant::now(),
        }
    }

    /// How long a busy connection holds its output: `min` (the configured coalescing), or
    /// longer while many connections write.
    pub fn hold(&self, min: Duration) -> Duration {
        min.max(Duration::from_nanos(self.hold_ns.load(Relaxed)))
    }

    /// The share of the configured budget in force, 0.4 to 1: below 1 while the cores are
    /// contended (see the module's doc).
    pub fn budget_share(&self) -> f64 {
        f64::from(self.share.load(Relaxed)) / f64::from(FULL)
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
            let writers = self.writers.swap(1, Relaxed);
            // After a quiet spell the count covers more than one period: it says nothing of
            // the current load, so pacing starts over.
            let fresh = elapsed < 2 * duration_ns(PERIOD);
            self.roll(writers, fresh, (self.sample)());
            return;
        }
        if previous.is_none_or(|at| self.ns(at) < start) {
            self.writers.fetch_add(1, Relaxed);
        }
    }

    /// Ends a period in which `writers` connections wrote: the share of the budget follows
    /// `contention`, and the hold follows both. `fresh` is false after a quiet spell, when
    /// pacing starts over.
    fn roll(&self, writers: u32, fresh: bool, contention: Option<f64>) {
        let share = if fresh {
            next_share(self.share.load(Relaxed), contention)
        } else {
            FULL
        };
        let before = self.share.swap(share, Relaxed);
        if share != before {
            tracing::debug!(
                share_pct = share / 10,
                waited = contention.unwrap_or_default(),
                "write pacing: the budget in force follows the threads' waits for a core"
            );
        }
        let hold = if fresh {
            // writers / (budget × share / FULL) seconds, in ns; u128 so that no factor can
            // overflow.
            let ns = u128::from(writers) * 1_000_000_000 * u128::from(FULL)
                / (u128::from(self.budget) * u128::from(share));
            u64::try_from(ns).unwrap_or(u64::MAX).min(self.max_hold_ns)
        } else {
            0
        };
        self.hold_ns.store(hold, Relaxed);
    }

    fn ns(&self, at: Instant) -> u64 {
        duration_ns(at.saturating_duration_since(self.base))
    }
}

/// The share of the budget (thousandths) for the next period, from the current one and the
/// contention just sampled (`None`: too little to say, unchanged).
fn next_share(share: u32, contention: Option<f64>) -> u32 {
    match contention {
        Some(c) if c > CONTENDED => share.saturating_sub(STEP).max(MIN_SHARE),
        Some(c) if c < UNCONTENDED => (share + STEP).min(FULL),
        _ => share,
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pacer whose threads never wait for a core, whatever the machine running the tests
    /// is doing.
    fn uncontended(writes_per_second: u64, max_hold: Duration) -> Pacer {
        Pacer::with_contention(writes_per_second, max_hold, || None)
    }

    /// Each of `n` connections writes once at `at`, its first write (or the first after an
    /// earlier period).
    fn all_write(p: &Pacer, n: usize, at: Instant) {
        for _ in 0..n {
            p.wrote(None, at);
        }
    }

    #[test]
    fn the_hold_grows_with_the_number_of_writers_up_to_the_cap() {
        let p = uncontended(100_000, Duration::from_millis(100));
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

    /// Sustained contention shrinks the budget step by step, so holds grow up to
    /// `max_hold`; once the waits end, the budget and the holds come back.
    #[test]
    fn contention_lengthens_the_hold_until_it_ends() {
        let p = Pacer::new(100_000, Duration::from_millis(200));
        // 10,000 writers against 100,000 writes/s: 100 ms.
        p.roll(10_000, true, None);
        assert_eq!(p.hold(Duration::ZERO), Duration::from_millis(100));
        // Waits between the two thresholds change nothing.
        p.roll(10_000, true, Some(0.40));
        assert_eq!(p.hold(Duration::ZERO), Duration::from_millis(100));
        // One contended period: 94 % of the budget, 106.4 ms.
        p.roll(10_000, true, Some(0.55));
        assert_eq!(p.hold(Duration::ZERO).as_micros(), 106_382);
        // Sustained: down to 40 % of the budget (250 ms), capped at 200 ms.
        for _ in 0..20 {
            p.roll(10_000, true, Some(0.55));
        }
        assert_eq!(p.budget_share(), 0.4);
        assert_eq!(p.hold(Duration::ZERO), Duration::from_millis(200));
        // A period without enough time to say keeps it.
        p.roll(10_000, true, None);
        assert_eq!(p.hold(Duration::ZERO), Duration::from_millis(200));
        // The waits end: back to the full budget in 10 periods.
        for _ in 0..10 {
            p.roll(10_000, true, Some(0.1));
        }
        assert_eq!(p.hold(Duration::ZERO), Duration::from_millis(100));
        // Contention with few writers only stretches their (short) holds in proportion.
        for _ in 0..20 {
            p.roll(1_000, true, Some(0.9));
        }
        assert_eq!(p.hold(Duration::ZERO), Duration::from_millis(25));
        // A quiet spell starts over at the full budget.
        p.roll(1_000, false, Some(0.9));
        p.roll(1_000, true, None);
        assert_eq!(p.hold(Duration::ZERO), Duration::from_millis(10));
    }

    #[test]
    fn a_quiet_spell_resets_the_hold() {
        let p = uncontended(10_000, Duration::from_millis(100));
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
