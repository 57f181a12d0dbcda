//! [`AlarmClock`]: wakes connection tasks at their deadlines (a token's expiry, the stale
//! check before connect) from one task per node, instead of a timer in each connection.
//!
//! Most connections carry an expiring token, so a timer per connection would cost nearly
//! every idle connection a timer entry (over a hundred bytes, plus its allocation). An alarm
//! here is a deadline and a weak pointer in one heap. When it is due the clock only notifies
//! the connection's outbox ([`Outbox::notify`]); the connection task then checks its own
//! deadlines, so an alarm that is no longer wanted (the token was refreshed) costs one
//! spurious wake-up and nothing else.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::sync::lock;
use crate::ws::{Outbox, PackedInstant};

/// Below this many alarms the heap is never swept for connections that went away.
const SWEEP_MIN: usize = 1024;

/// The deadlines of the node's connections.
#[derive(Default)]
pub struct AlarmClock {
    alarms: Mutex<Alarms>,
    /// Tells the clock's task that an alarm earlier than all others was set.
    earlier: Notify,
}

impl std::fmt::Debug for AlarmClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlarmClock")
            .field("alarms", &lock(&self.alarms).heap.len())
            .finish()
    }
}

#[derive(Default)]
struct Alarms {
    heap: BinaryHeap<Reverse<Alarm>>,
    /// The heap's size after the last sweep: the next sweep comes when it has doubled, so
    /// alarms of connections that went away cost amortised constant time and at most half
    /// the heap.
    swept_len: usize,
}

impl Alarms {
    /// Shrinks the heap once it is at most half full. A burst of connections leaves it
    /// sized for two alarms each (the stale checks ring after a few seconds, the expiries
    /// stay), and an idle server should not keep the capacity of its busiest moment. A
    /// quarter is left spare, so a heap that grows again reallocates only after growing by a
    /// quarter: amortised constant time per alarm.
    fn give_back_memory(&mut self) {
        let (len, capacity) = (self.heap.len(), self.heap.capacity());
        if capacity > SWEEP_MIN && len <= capacity / 2 {
            self.heap.shrink_to(len + len / 4);
        }
    }
}

/// One deadline: the connection is notified then, if it is still there. 16 bytes (the
/// instant packed): a connection has one or two in the heap, its stale check and its expiry.
struct Alarm {
    at: PackedInstant,
    outbox: Weak<Outbox>,
}

impl PartialEq for Alarm {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}

impl Eq for Alarm {}

impl PartialOrd for Alarm {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Alarm {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.at.cmp(&other.at)
    }
}

impl AlarmClock {
    /// An empty clock; [`AlarmClock::run`] must run for alarms to ring.
    pub fn new() -> AlarmClock {
        AlarmClock::default()
    }

    /// Notifies `outbox` at `at` (at once if `at` has passed), unless the connection is gone
    /// by then.
    pub fn set(&self, at: Instant, outbox: &Arc<Outbox>) {
        let earliest = {
            let mut alarms = lock(&self.alarms);
            let before = alarms.heap.peek().and_then(|Reverse(a)| a.at.get());
            alarms.heap.push(Reverse(Alarm {
                at: at.into(),
                outbox: Arc::downgrade(outbox),
            }));
            if alarms.heap.len() >= SWEEP_MIN.max(2 * alarms.swept_len) {
                alarms.heap.retain(|Reverse(a)| a.outbox.strong_count() > 0);
                alarms.swept_len = alarms.heap.len();
            }
            before.is_none_or(|before| at < before)
        };
        if earliest {
            self.earlier.notify_one();
        }
    }

    /// Rings the alarms as they come due, until `shutdown` is cancelled; then rings them all.
    ///
    /// The final ringing is how shutdown reaches clients that are still connecting: they are
    /// not in the hub, which the server sweeps, but each has an alarm (its stale check), and a
    /// woken client that sees the shutdown closes itself. A client that sets its alarm after
    /// this ringing sees the shutdown when it checks right after setting it.
    pub async fn run(&self, shutdown: CancellationToken) {
        loop {
            if shutdown.is_cancelled() {
                self.ring_all();
                return;
            }
            let next = self.ring(Instant::now());
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = sleep => {}
                () = self.earlier.notified() => {}
            }
        }
    }

    /// Notifies the connections whose alarms are due at `now`; returns when the next one is.
    fn ring(&self, now: Instant) -> Option<Instant> {
        let mut due = Vec::new();
        let next = {
            let mut alarms = lock(&self.alarms);
            let now = PackedInstant::from(now);
            while alarms.heap.peek().is_some_and(|Reverse(a)| a.at <= now) {
                if let Some(Reverse(alarm)) = alarms.heap.pop() {
                    due.push(alarm.outbox);
                }
            }
            alarms.give_back_memory();
            alarms.heap.peek().and_then(|Reverse(a)| a.at.get())
        };
        // Outside the heap's lock: a notify takes the outbox's.
        for outbox in due.iter().filter_map(Weak::upgrade) {
            outbox.notify();
        }
        next
    }

    /// Notifies every connection with an alarm, due or not, and forgets the alarms.
    fn ring_all(&self) {
        let all = std::mem::take(&mut lock(&self.alarms).heap);
        for Reverse(alarm) in all {
            if let Some(outbox) = alarm.outbox.upgrade() {
                outbox.notify();
            }
        }
    }

    /// Alarms set and not rung (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.alarms).heap.len()
    }
}

#[cfg(test)]
mod tests {
    //! `run` is proven end to end by the client timer tests (stale, expiry, subscription
    //! expiry), which fail when no alarm rings.
    use std::time::Duration;

    use super::*;
    use crate::ws::CloseCode;

    fn outbox() -> Arc<Outbox> {
        Arc::new(Outbox::new(1 << 20, CloseCode(3008), "slow"))
    }

    #[test]
    fn rings_due_alarms_in_order_and_says_when_the_next_is() {
        let clock = AlarmClock::new();
        let now = Instant::now();
        let (a, b) = (outbox(), outbox());
        clock.set(now + Duration::from_secs(2), &b);
        clock.set(now + Duration::from_secs(1), &a);
        assert_eq!(clock.ring(now), Some(now + Duration::from_secs(1)));
        assert_eq!(clock.len(), 2, "nothing is due yet");
        assert_eq!(
            clock.ring(now + Duration::from_secs(1)),
            Some(now + Duration::from_secs(2))
        );
        assert_eq!(clock.ring(now + Duration::from_secs(5)), None);
        assert_eq!(clock.len(), 0);
    }

    #[test]
    fn the_heap_gives_back_what_a_burst_left_unused() {
        let clock = AlarmClock::new();
        let now = Instant::now();
        let outboxes: Vec<_> = (0..SWEEP_MIN * 4).map(|_| outbox()).collect();
        // Each connection's stale check (soon) and expiry (later), as after a connect storm.
        for o in &outboxes {
            clock.set(now + Duration::from_secs(1), o);
            clock.set(now + Duration::from_secs(3600), o);
        }
        let burst = lock(&clock.alarms).heap.capacity();
        clock.ring(now + Duration::from_secs(2));
        assert_eq!(clock.len(), outboxes.len(), "the expiries stay");
        let after = lock(&clock.alarms).heap.capacity();
        assert!(
            after <= outboxes.len() * 5 / 4,
            "capacity {after} after the stale checks rang (was {burst})"
        );
    }

    #[test]
    fn an_alarm_takes_16_bytes() {
        assert_eq!(std::mem::size_of::<Reverse<Alarm>>(), 16);
    }

    #[test]
    fn sweeps_alarms_of_connections_that_went_away() {
        let clock = AlarmClock::new();
        let later = Instant::now() + Duration::from_secs(3600);
        let kept = outbox();
        clock.set(later, &kept);
        for _ in 0..SWEEP_MIN * 4 {
            clock.set(later, &outbox());
        }
        assert!(
            clock.len() < SWEEP_MIN * 2,
            "gone connections' alarms are swept: {}",
            clock.len()
        );
        assert!(
            lock(&clock.alarms)
                .heap
                .iter()
                .any(|Reverse(a)| a.outbox.strong_count() > 0)
        );
    }
}
