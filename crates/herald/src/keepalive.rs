//! [`PingWheel`]: the server pings of every connected client, sent by one task per node
//! rather than by a timer in each connection.
//!
//! A timer per connection costs every idle connection a timer entry inside its task (over a
//! hundred bytes) and a wake-up of its task per ping. Here a connected client is one weak
//! pointer in a slot of a wheel that turns once per ping interval: each tick pings the clients
//! of one slot and closes those of the slot pinged a pong timeout earlier that did not answer.
//! An idle connection then holds no timer at all, and its task sleeps until it has traffic.
//!
//! Unidirectional clients are pinged too (`{}`, which is their ping push as much as the
//! bidirectional clients' ping reply), so that they can tell a live connection from a dead
//! one, but they cannot answer: they are kept in slots of their own that are never checked
//! for pongs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use rand::Rng;

use crate::hub::ClientHandle;
use crate::protocol::{self, Disconnect, Encoding};
use crate::sync::lock;
use crate::ws::{Message, OpCode};

/// The server ping, an empty reply, encoded once for every JSON client: `{}` in a text frame.
static PING: LazyLock<Arc<Message>> =
    LazyLock::new(|| Arc::new(Message::new(OpCode::Text, protocol::PING_REPLY)));

/// The server ping of every Protobuf client: the empty message, its length prefix (0) alone,
/// in a binary frame. A Protobuf client sent the JSON ping would read `{` as a length prefix,
/// and an SDK answer it with a pong that is not a Protobuf command.
static PROTOBUF_PING: LazyLock<Arc<Message>> =
    LazyLock::new(|| Arc::new(Message::new(OpCode::Binary, &[0])));

/// The ping of a client speaking `encoding`.
fn ping_for(encoding: Encoding) -> Arc<Message> {
    match encoding {
        Encoding::Protobuf => PROTOBUF_PING.clone(),
        _ => PING.clone(),
    }
}

/// About how long one slot of the wheel lasts: how late a ping or a pong check may be.
const TARGET_TICK: Duration = Duration::from_millis(250);
/// The shortest slot: a ping interval of a few milliseconds (a mistake, but a valid setting)
/// then pings a little less often than asked rather than spinning the wheel's task.
const MIN_TICK: Duration = Duration::from_millis(1);

/// The clients to ping, spread over the slots of one ping interval.
pub struct PingWheel {
    /// One list per tick of the interval. Weak: a client that went away is forgotten the next
    /// time its slot comes round, and keeps nothing of its own alive meanwhile.
    slots: Box<[Mutex<Vec<Weak<ClientHandle>>>]>,
    /// The same for unidirectional clients, pinged with their slot but never expected to
    /// answer.
    unanswering: Box<[Mutex<Vec<Weak<ClientHandle>>>]>,
    /// How long one slot lasts: the ping interval divided by the number of slots.
    tick: Duration,
    /// Ticks from a ping to the check of its pong: the pong timeout, rounded up.
    pong_ticks: usize,
    /// The number of ticks done; the next tick pings slot `turns % slots.len()`.
    turns: AtomicUsize,
}

impl std::fmt::Debug for PingWheel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PingWheel")
            .field("slots", &self.slots.len())
            .field("tick", &self.tick)
            .finish()
    }
}

impl PingWheel {
    /// A wheel pinging every `ping_interval` and closing a client whose pong has not come
    /// `pong_timeout` after the ping (which the configuration keeps shorter than the interval).
    /// A zero interval makes a wheel that pings nobody.
    pub fn new(ping_interval: Duration, pong_timeout: Duration) -> PingWheel {
        let slots = if ping_interval.is_zero() {
            1
        } else {
            (ping_interval.as_nanos() / TARGET_TICK.as_nanos()).clamp(8, 256) as usize
        };
        let tick = if ping_interval.is_zero() {
            Duration::ZERO
        } else {
            (ping_interval / slots as u32).max(MIN_TICK)
        };
        let pong_ticks = if tick.is_zero() {
            0
        } else {
            (pong_timeout.as_nanos().div_ceil(tick.as_nanos()) as usize).clamp(1, slots)
        };
        PingWheel {
            slots: (0..slots).map(|_| Mutex::new(Vec::new())).collect(),
            unanswering: (0..slots).map(|_| Mutex::new(Vec::new())).collect(),
            tick,
            pong_ticks,
            turns: AtomicUsize::new(0),
        }
    }

    /// Starts pinging a newly connected client. Its first ping comes at a random point of the
    /// second half of the interval, so that clients connected together are not pinged
    /// together.
    pub fn add(&self, client: &Arc<ClientHandle>) {
        self.add_to(&self.slots, client);
    }

    /// Starts pinging a newly connected unidirectional client, which cannot answer: as
    /// [`PingWheel::add`], without the pong check.
    pub fn add_unanswering(&self, client: &Arc<ClientHandle>) {
        self.add_to(&self.unanswering, client);
    }

    fn add_to(&self, slots: &[Mutex<Vec<Weak<ClientHandle>>>], client: &Arc<ClientHandle>) {
        if self.tick.is_zero() {
            return;
        }
        let n = slots.len();
        let next = self.turns.load(Ordering::Relaxed);
        let slot = (next + rand::rng().random_range(n / 2..n)) % n;
        lock(&slots[slot]).push(Arc::downgrade(client));
    }

    /// Turns the wheel every tick until `shutdown` is cancelled.
    pub async fn run(&self, shutdown: tokio_util::sync::CancellationToken) {
        if self.tick.is_zero() {
            return;
        }
        let mut ticks = tokio::time::interval(self.tick);
        // A late tick (a busy runtime) is not made up with a burst of pings.
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => self.tick(),
            }
        }
    }

    /// One tick: closes the clients pinged `pong_ticks` ago that have not answered, then pings
    /// the clients of the next slot. The check comes first, so that a pong timeout of almost
    /// the whole interval still checks a slot before pinging it again.
    pub fn tick(&self) {
        let n = self.slots.len();
        let turn = self.turns.fetch_add(1, Ordering::Relaxed);
        let pinged = (turn + n - self.pong_ticks % n) % n;
        if turn >= self.pong_ticks {
            for client in lock(&self.slots[pinged]).iter().filter_map(Weak::upgrade) {
                if client.pong_overdue() {
                    client.disconnect(&Disconnect::NO_PONG);
                }
            }
        }
        // Pushing under the slot's lock is a queue push per client; the lock only keeps a
        // client connecting now from being added to this slot meanwhile.
        lock(&self.slots[turn % n]).retain(|client| {
            let Some(client) = client.upgrade() else {
                return false;
            };
            // Marked before it is queued: a pong that comes back at once finds the mark.
            client.ping_sent();
            // A closed connection (or one whose full queue just closed it) is forgotten.
            client.outbox.push(ping_for(client.encoding)).is_ok()
        });
        lock(&self.unanswering[turn % n]).retain(|client| {
            client
                .upgrade()
                .is_some_and(|client| client.outbox.push(ping_for(client.encoding)).is_ok())
        });
    }

    /// Clients in the wheel, counting those gone and not yet forgotten (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots
            .iter()
            .chain(self.unanswering.iter())
            .map(|slot| lock(slot).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::{CloseCode, Outbox};

    fn client(id: &str) -> Arc<ClientHandle> {
        let outbox = Arc::new(Outbox::new(1 << 20, CloseCode(3008), "slow"));
        Arc::new(ClientHandle::new(id.into(), "u".into(), None, outbox))
    }

    /// What the client's outbox holds: the number of queued frames and the close code, if any.
    fn drained(client: &ClientHandle) -> (usize, Option<u16>) {
        let mut queue = std::collections::VecDeque::new();
        let close = client.outbox.drain_into(&mut queue);
        (queue.len(), close.map(|c| c.code.0))
    }

    #[test]
    fn pings_once_per_interval_in_the_second_half_of_the_first() {
        // 8 slots of 250 ms; the pong check 3 ticks after the ping.
        let wheel = PingWheel::new(Duration::from_secs(2), Duration::from_millis(600));
        assert_eq!((wheel.slots.len(), wheel.pong_ticks), (8, 3));
        let a = client("a");
        wheel.add(&a);
        let mut pinged_at = Vec::new();
        for turn in 0..24 {
            wheel.tick();
            let (pings, close) = drained(&a);
            assert_eq!(close, None, "an answered client is never closed");
            if pings > 0 {
                assert_eq!(pings, 1);
                pinged_at.push(turn);
                assert!(
                    a.pong_received(),
                    "the ping is marked as waiting for its pong"
                );
            }
        }
        assert_eq!(pinged_at.len(), 3, "{pinged_at:?}");
        assert!((4..8).contains(&pinged_at[0]), "{pinged_at:?}");
        assert_eq!(pinged_at[1] - pinged_at[0], 8);
        assert_eq!(pinged_at[2] - pinged_at[1], 8);
    }

    /// Each client is pinged in its own encoding: `{}` as text for JSON, the empty message
    /// (`0`, its length prefix) as binary for Protobuf, the same bytes a reply of
    /// `Reply::ping()` encodes to in each.
    #[test]
    fn a_protobuf_client_is_pinged_with_the_empty_protobuf_message() {
        let wheel = PingWheel::new(Duration::from_secs(2), Duration::from_millis(600));
        let outbox = Arc::new(Outbox::new(1 << 20, CloseCode(3008), "slow"));
        let pb = Arc::new(
            ClientHandle::new("p".into(), "u".into(), None, outbox)
                .with_encoding(Encoding::Protobuf),
        );
        let json = client("j");
        wheel.add(&pb);
        wheel.add(&json);
        for _ in 0..8 {
            wheel.tick();
        }
        for (client, encoding) in [(&pb, Encoding::Protobuf), (&json, Encoding::Json)] {
            let mut queue = std::collections::VecDeque::new();
            let _ = client.outbox.drain_into(&mut queue);
            assert_eq!(queue.len(), 1, "{encoding:?}: pinged once");
            let frame = match &queue[0] {
                crate::ws::Outgoing::Shared(message) => message.frame().clone(),
                crate::ws::Outgoing::Frame(frame) => frame.clone(),
            };
            let mut expected = Vec::new();
            encoding
                .append_reply(&protocol::Reply::ping(), true, &mut expected)
                .expect("a ping encodes");
            assert_eq!(frame.payload(), &expected[..], "{encoding:?}");
            assert_eq!(
                frame.as_bytes()[0] & 0x0f,
                crate::prepared::opcode(encoding) as u8,
                "{encoding:?}: the frame type"
            );
        }
    }

    #[test]
    fn an_unanswered_ping_closes_with_no_pong_after_the_pong_timeout() {
        let wheel = PingWheel::new(Duration::from_secs(2), Duration::from_millis(600));
        let a = client("a");
        wheel.add(&a);
        let mut turn = 0;
        while drained(&a).0 == 0 {
            wheel.tick();
            turn += 1;
            assert!(turn <= 8, "pinged within the interval");
        }
        // Not answered: still open until the pong timeout has passed (3 ticks).
        for _ in 0..2 {
            wheel.tick();
            assert_eq!(drained(&a), (0, None));
        }
        wheel.tick();
        assert_eq!(drained(&a), (0, Some(Disconnect::NO_PONG.code)));
    }

    #[test]
    fn a_unidirectional_client_is_pinged_and_never_closed_for_no_pong() {
        let wheel = PingWheel::new(Duration::from_secs(2), Duration::from_millis(600));
        let a = client("a");
        wheel.add_unanswering(&a);
        let mut pings = 0;
        for _ in 0..24 {
            wheel.tick();
            let (pinged, close) = drained(&a);
            assert_eq!(close, None, "nothing waits for its pong");
            pings += pinged;
        }
        assert_eq!(pings, 3, "once per interval");
        assert!(!a.pong_overdue());
        drop(a);
        for _ in 0..8 {
            wheel.tick();
        }
        assert_eq!(wheel.len(), 0, "forgotten once gone");
    }

    #[test]
    fn forgets_clients_that_went_away() {
        let wheel = PingWheel::new(Duration::from_secs(2), Duration::from_millis(500));
        let kept = client("kept");
        let gone = client("gone");
        let closed = client("closed");
        for c in [&kept, &gone, &closed] {
            wheel.add(c);
        }
        drop(gone);
        closed.outbox.close(CloseCode(3000), "bye");
        for _ in 0..8 {
            wheel.tick();
        }
        assert_eq!(wheel.len(), 1, "only the open client is kept");
    }

    #[test]
    fn slots_last_about_a_quarter_second_and_the_pong_check_fits_the_interval() {
        let default = PingWheel::new(Duration::from_secs(25), Duration::from_secs(8));
        assert_eq!(default.slots.len(), 100);
        assert_eq!(default.pong_ticks, 32);
        // A pong timeout just short of the interval is checked right before the next ping.
        let tight = PingWheel::new(Duration::from_secs(1), Duration::from_millis(990));
        assert_eq!(tight.pong_ticks, tight.slots.len());
        let tiny = PingWheel::new(Duration::from_millis(2), Duration::from_millis(1));
        assert_eq!((tiny.tick, tiny.pong_ticks), (MIN_TICK, 1));
        let off = PingWheel::new(Duration::ZERO, Duration::ZERO);
        let a = client("a");
        off.add(&a);
        off.tick();
        assert_eq!(drained(&a), (0, None), "a zero interval pings nobody");
    }
}
