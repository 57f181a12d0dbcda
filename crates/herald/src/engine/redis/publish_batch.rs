//! [`PublishBatcher`]: concurrent publishes of a shard go to Redis together, as one call of
//! `publish.lua` that publishes each of them in turn.
//!
//! Why: every call has a cost of its own besides its publications' work: in Redis (a call of
//! one publication ~11 µs, against ~8.5 µs a publication in a call of 8 or more) and in the
//! node (a command to encode and write, a reply to read and hand over). So publishes that
//! queue while calls are in flight share the next call, as auto-pipelining does with commands:
//!
//! * **No added latency when idle.** A publish that finds fewer than [`CALLS_IN_FLIGHT`] calls
//!   in flight on its queue goes out at once, alone. Only what queued behind calls in flight is
//!   batched, up to [`MAX_BATCH`] publications and [`MAX_BATCH_BYTES`] of payload a call.
//! * **Order per channel.** A channel's publications wait in their own queue, and a channel has
//!   at most one call in flight: its next publications go in the call after that one is
//!   answered, and in submission order inside a call. Nothing relies on Redis running two
//!   calls in the order they were written (which a NOSCRIPT retry or a cluster redirect would
//!   not keep).
//! * **Failures stay apart.** The script runs each publication under `pcall`: one that fails
//!   (a key of the wrong type) gets its own error, the others are published. A call that fails
//!   as a whole (connection down, no answer in time) fails every publication in it with the
//!   same [`EngineError::Unavailable`] a lone publish would get.
//! * **Redis Cluster.** A script's keys must share one hash slot: a call of a cluster shard
//!   carries publications of one slot only (the slot of the channel's `{channel}` hash tag).
//!
//! The calls are sent from tasks of their own (spawned on the publisher's runtime, see
//! [`Lane`]): a publisher that goes away (its client disconnected) does not take the others'
//! publications with it. A publication whose publisher went away before it was sent is
//! dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use redis::Script;
use redis::cluster_routing::Slot;
use tokio::sync::oneshot;

use super::shards::{Lane, RedisShards, Shard, ShardConn};
use crate::engine::{BoxFuture, EngineError};

/// Publications in one call at most.
pub(super) const MAX_BATCH: usize = 128;

/// Payload bytes (data, publisher info, tags) in one call at most; a larger publication goes
/// alone.
pub(super) const MAX_BATCH_BYTES: usize = 1 << 20;

/// Calls one queue (one shard, one lane) has in flight at most: a few, so that calls still
/// pipeline on the connection; what comes meanwhile waits and goes in the next call.
pub(super) const CALLS_IN_FLIGHT: usize = 4;

/// Bytes of publications one queue holds waiting at most (what they will send, and their
/// bookkeeping): a Redis that takes calls but answers slowly must not let publishes pile up in
/// the node without bound. A publish beyond it fails at once (Redis is not keeping up).
pub(super) const MAX_QUEUED_BYTES: usize = 64 << 20;

/// What a waiting publication costs besides its keys and arguments (its entry, its reply
/// channel, the argument vectors), counted against [`MAX_QUEUED_BYTES`].
const WAITING_OVERHEAD: usize = 256;

/// Keys per publication in `publish.lua` (stream, meta, idempotency key).
const KEYS_PER: usize = 3;

/// Arguments per publication in `publish.lua`.
pub(super) const ARGS_PER: usize = 13;

/// One publication's answer from `publish.lua`: status, offset, epoch, time (ms).
pub(super) type Reply = Result<[String; 4], EngineError>;

/// One publication for `publish.lua`: its keys and arguments (in the script's order), and
/// where its answer goes.
pub(super) struct Job {
    /// The channel, whose publications keep their order.
    pub channel: String,
    /// Stream, meta and idempotency key.
    pub keys: [String; KEYS_PER],
    /// The script's [`ARGS_PER`] arguments.
    pub args: Vec<Vec<u8>>,
    /// Payload bytes, counted against [`MAX_BATCH_BYTES`].
    pub bytes: usize,
}

/// A waiting [`Job`] and its publisher.
struct Waiting {
    job: Job,
    reply: oneshot::Sender<Reply>,
    /// What it counts against [`MAX_QUEUED_BYTES`] while it waits.
    cost: usize,
}

impl Job {
    /// What the job holds, in bytes (see [`Waiting::cost`]).
    fn cost(&self) -> usize {
        let keys: usize = self.keys.iter().map(String::len).sum();
        let args: usize = self.args.iter().map(Vec::len).sum();
        keys + args + WAITING_OVERHEAD
    }
}

/// One channel's waiting publications.
struct ChannelQueue {
    waiting: VecDeque<Waiting>,
    /// A call with publications of this channel is in flight.
    busy: bool,
    /// The channel's hash slot (a cluster shard only).
    slot: Option<Slot>,
}

/// What a queue holds, under its lock.
#[derive(Default)]
struct State {
    channels: HashMap<String, ChannelQueue>,
    /// Channels with waiting publications and no call in flight, oldest first.
    ready: VecDeque<String>,
    /// Calls in flight.
    in_flight: usize,
    /// What the waiting publications cost (see [`Waiting::cost`]), at most
    /// [`MAX_QUEUED_BYTES`].
    queued_bytes: usize,
}

/// The publications of one call.
struct Batch {
    items: Vec<Waiting>,
    /// Its channels (each marked busy until the call is answered).
    channels: Vec<String>,
}

/// The publishes of one shard through one lane: the unit that batches.
struct Queue {
    shard: Arc<Shard>,
    lane: Lane,
    /// A cluster shard: one slot per call.
    cluster: bool,
    script: Arc<Script>,
    /// The deadline of a call (EVALSHA, then SCRIPT LOAD and EVALSHA again after a NOSCRIPT).
    deadline: Duration,
    state: Mutex<State>,
}

/// Batches a broker's publishes per shard (see the module's doc). One queue per shard and
/// command lane ([`Lane::Commands`], [`Lane::Http`]), so that the server API's publishes keep
/// their connection driven by the API's runtime.
pub(super) struct PublishBatcher {
    shards: Arc<RedisShards>,
    /// Per shard: the queues of [`Lane::Commands`] and [`Lane::Http`].
    queues: Vec<[Arc<Queue>; 2]>,
}

impl PublishBatcher {
    /// A batcher over `shards`, running `script` (`publish.lua`).
    pub fn new(shards: Arc<RedisShards>, script: Script) -> PublishBatcher {
        let script = Arc::new(script);
        let deadline = shards.io_timeout() * 3;
        let queues = shards
            .all()
            .iter()
            .map(|shard| {
                [Lane::Commands, Lane::Http].map(|lane| {
                    Arc::new(Queue {
                        shard: shard.clone(),
                        lane,
                        cluster: shard.is_cluster(),
                        script: script.clone(),
                        deadline,
                        state: Mutex::new(State::default()),
                    })
                })
            })
            .collect();
        PublishBatcher { shards, queues }
    }

    /// Publishes `job` (with the next call of its channel's shard) and waits for its answer.
    pub async fn publish(&self, job: Job) -> Reply {
        let shard = self.shards.for_key(&job.channel);
        let lane = shard.command_lane();
        let queue = &self.queues[shard.index()][usize::from(lane == Lane::Http)];
        let (tx, rx) = oneshot::channel();
        let batch = {
            let mut state = queue.lock();
            let slot = queue.cluster.then(|| Slot::for_key(&job.keys[0]));
            if !state.push(job, tx, slot) {
                return Err(EngineError::Unavailable(format!(
                    "Redis ({}): {} MiB of publishes already wait for it (it is not keeping \
                     up); publish again later",
                    queue.shard.describe(),
                    MAX_QUEUED_BYTES >> 20
                )));
            }
            state.take(queue.cluster)
        };
        if let Some(batch) = batch {
            tokio::spawn(queue.clone().run(batch));
        }
        // Waiting behind calls in flight, then for its own call: as long as a call may take,
        // as a lone publish's EVALSHA-then-EVAL could. A publication still waiting then is
        // dropped unsent (its receiver is gone, see `State::take`).
        let deadline = queue.deadline;
        match tokio::time::timeout(deadline, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(EngineError::Unavailable(format!(
                "Redis ({}): the publish was abandoned",
                queue.shard.describe()
            ))),
            Err(_) => Err(EngineError::Unavailable(format!(
                "Redis ({}): no answer to a publish within {deadline:?}",
                queue.shard.describe()
            ))),
        }
    }
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain collections, consistent between statements: a panic elsewhere cannot leave
        // them half-changed.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `batch`, answers it, and goes on with what queued meanwhile (more calls, if
    /// more are ready, on tasks of their own).
    ///
    /// Boxed with its type spelled out: it spawns itself, which an `async fn`'s inferred type
    /// cannot prove `Send` through.
    fn run(self: Arc<Self>, mut batch: Batch) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            loop {
                let Batch { items, channels } = batch;
                let in_flight = InFlight {
                    queue: &self,
                    channels,
                };
                self.send(items).await;
                drop(in_flight);
                let mut next = self.lock().take_all(self.cluster);
                let Some(first) = next.pop() else {
                    return;
                };
                for other in next {
                    tokio::spawn(self.clone().run(other));
                }
                batch = first;
            }
        })
    }

    /// One `publish.lua` call for `items`; every one of them is answered, but those whose
    /// publisher gave up before the call could go, which are dropped unsent.
    async fn send(&self, mut items: Vec<Waiting>) {
        let conn = match self.shard.lane(self.lane).await {
            Ok(conn) => conn,
            Err(e) => {
                for item in items {
                    let _ = item.reply.send(Err(e.clone()));
                }
                return;
            }
        };
        // Connecting may have taken long (a Sentinel failover): a publisher that gave up
        // meanwhile was told it failed, so its publication must not be made now.
        items.retain(|item| !item.reply.is_closed());
        if items.is_empty() {
            return;
        }
        match self.call(conn, &items).await {
            Ok(replies) => {
                for (item, reply) in items.into_iter().zip(replies) {
                    let _ = item.reply.send(reply);
                }
            }
            Err(e) => {
                for item in items {
                    let _ = item.reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// Runs the script over `items`: one answer per item, or the failure of the whole call.
    async fn call(
        &self,
        mut conn: ShardConn,
        items: &[Waiting],
    ) -> Result<Vec<Reply>, EngineError> {
        let failed = |e: &dyn std::fmt::Display| {
            EngineError::Unavailable(format!("Redis ({}): {e}", self.shard.describe()))
        };
        let mut invocation = self.script.prepare_invoke();
        for Waiting { job, .. } in items {
            for key in &job.keys {
                invocation.key(key.as_str());
            }
            for arg in &job.args {
                invocation.arg(arg.as_slice());
            }
        }
        let reply: Vec<Vec<String>> =
            match tokio::time::timeout(self.deadline, invocation.invoke_async(&mut conn)).await {
                Ok(reply) => reply.map_err(|e| failed(&e))?,
                Err(_) => {
                    return Err(failed(&format!(
                        "no answer to a publish within {:?}",
                        self.deadline
                    )));
                }
            };
        if reply.len() != items.len() {
            return Err(failed(&format!(
                "{} answers to {} publications",
                reply.len(),
                items.len()
            )));
        }
        Ok(reply.into_iter().map(|r| self.answer(r)).collect())
    }

    /// One publication's answer, as the broker reads it.
    fn answer(&self, reply: Vec<String>) -> Reply {
        match <[String; 4]>::try_from(reply) {
            Ok([status, error, _, _]) if status == "error" => Err(EngineError::Unavailable(
                format!("Redis ({}): {error}", self.shard.describe()),
            )),
            Ok(reply) => Ok(reply),
            Err(reply) => Err(EngineError::Unavailable(format!(
                "Redis: unexpected answer to publish: {reply:?}"
            ))),
        }
    }
}

/// A call in flight. When it ends — answered, or its task cancelled with its runtime — its
/// channels may go again and the queue may send another call: a call that vanished must not
/// hold its channels or its place among [`CALLS_IN_FLIGHT`] for ever.
struct InFlight<'a> {
    queue: &'a Queue,
    channels: Vec<String>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.queue.lock().done(&self.channels);
    }
}

impl State {
    /// Queues a publication behind its channel's; false (and nothing queued) when the queue
    /// holds [`MAX_QUEUED_BYTES`] already, even without the publications whose publishers
    /// went away.
    fn push(&mut self, job: Job, reply: oneshot::Sender<Reply>, slot: Option<Slot>) -> bool {
        let cost = job.cost();
        if self.queued_bytes + cost > MAX_QUEUED_BYTES {
            self.drop_abandoned();
            if self.queued_bytes + cost > MAX_QUEUED_BYTES {
                return false;
            }
        }
        self.queued_bytes += cost;
        let channel = job.channel.clone();
        let queue = self
            .channels
            .entry(channel.clone())
            .or_insert_with(|| ChannelQueue {
                waiting: VecDeque::new(),
                busy: false,
                slot,
            });
        queue.waiting.push_back(Waiting { job, reply, cost });
        // Not busy with others already waiting: it is in `ready` already.
        if !queue.busy && queue.waiting.len() == 1 {
            self.ready.push_back(channel);
        }
        true
    }

    /// Forgets the waiting publications whose publishers went away (they are never sent), and
    /// the channels that are left with none and no call in flight.
    fn drop_abandoned(&mut self) {
        let queued = &mut self.queued_bytes;
        self.channels.retain(|_, queue| {
            queue.waiting.retain(|w| {
                let wanted = !w.reply.is_closed();
                if !wanted {
                    *queued -= w.cost;
                }
                wanted
            });
            queue.busy || !queue.waiting.is_empty()
        });
        let channels = &self.channels;
        self.ready.retain(|channel| channels.contains_key(channel));
    }

    /// The next call, if one may go ([`CALLS_IN_FLIGHT`]) and publications are ready: the
    /// ready channels' publications, oldest channel first, within [`MAX_BATCH`] and
    /// [`MAX_BATCH_BYTES`], of one slot on a cluster. Counts it in flight.
    fn take(&mut self, cluster: bool) -> Option<Batch> {
        if self.in_flight >= CALLS_IN_FLIGHT {
            return None;
        }
        let mut batch = Batch {
            items: Vec::new(),
            channels: Vec::new(),
        };
        let mut bytes = 0;
        let mut slot = None;
        // Ready channels of another slot, put back in their order.
        let mut other_slots = Vec::new();
        let mut full = false;
        while !full && let Some(channel) = self.ready.pop_front() {
            let Some(queue) = self.channels.get_mut(&channel) else {
                continue;
            };
            if cluster {
                if slot.is_some() && queue.slot != slot {
                    other_slots.push(channel);
                    // A bound on the look for one slot among many channels.
                    if other_slots.len() >= MAX_BATCH {
                        break;
                    }
                    continue;
                }
                slot = queue.slot;
            }
            let mut took = false;
            while let Some(next) = queue.waiting.front() {
                if next.reply.is_closed() {
                    // Its publisher went away before it was sent: never sent.
                    self.queued_bytes -= next.cost;
                    queue.waiting.pop_front();
                    continue;
                }
                if batch.items.len() >= MAX_BATCH
                    || (!batch.items.is_empty() && bytes + next.job.bytes > MAX_BATCH_BYTES)
                {
                    full = true;
                    break;
                }
                bytes += next.job.bytes;
                self.queued_bytes -= next.cost;
                if let Some(item) = queue.waiting.pop_front() {
                    batch.items.push(item);
                }
                took = true;
            }
            if took {
                queue.busy = true;
                batch.channels.push(channel);
            } else if queue.waiting.is_empty() {
                self.channels.remove(&channel);
            } else {
                // Nothing of it fit: first in line for the next call.
                self.ready.push_front(channel);
            }
        }
        for channel in other_slots.into_iter().rev() {
            self.ready.push_front(channel);
        }
        if batch.items.is_empty() {
            return None;
        }
        self.in_flight += 1;
        Some(batch)
    }

    /// Every call that may go now (see [`State::take`]).
    fn take_all(&mut self, cluster: bool) -> Vec<Batch> {
        std::iter::from_fn(|| self.take(cluster)).collect()
    }

    /// A call of `channels` was answered: they may go again.
    fn done(&mut self, channels: &[String]) {
        self.in_flight = self.in_flight.saturating_sub(1);
        for channel in channels {
            let Some(queue) = self.channels.get_mut(channel) else {
                continue;
            };
            queue.busy = false;
            if queue.waiting.is_empty() {
                self.channels.remove(channel);
            } else {
                self.ready.push_back(channel.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(channel: &str, bytes: usize) -> Job {
        Job {
            channel: channel.into(),
            keys: [
                format!("s.{{{channel}}}"),
                format!("m.{{{channel}}}"),
                format!("i.{{{channel}}}."),
            ],
            args: Vec::new(),
            bytes,
        }
    }

    /// Queues `jobs` on `state`; the receivers (kept, so the jobs count as wanted).
    fn push(
        state: &mut State,
        jobs: &[(&str, usize)],
        cluster: bool,
    ) -> Vec<oneshot::Receiver<Reply>> {
        jobs.iter()
            .map(|(channel, bytes)| {
                let (tx, rx) = oneshot::channel();
                let job = job(channel, *bytes);
                let slot = cluster.then(|| Slot::for_key(&job.keys[0]));
                state.push(job, tx, slot);
                rx
            })
            .collect()
    }

    fn names(batch: &Batch) -> Vec<&str> {
        batch.items.iter().map(|w| w.job.channel.as_str()).collect()
    }

    #[test]
    fn an_idle_queue_sends_at_once_and_batches_what_queued_behind_calls_in_flight() {
        let mut state = State::default();
        let _a = push(&mut state, &[("a", 1)], false);
        let first = state.take(false).unwrap();
        assert_eq!(names(&first), ["a"], "alone, at once");
        let _rest = push(&mut state, &[("b", 1), ("a", 1), ("c", 1), ("b", 1)], false);
        // "a" is in flight: its next publication waits for that call's answer.
        let second = state.take(false).unwrap();
        assert_eq!(names(&second), ["b", "b", "c"]);
        assert!(state.take(false).is_none(), "a is busy, nothing else ready");
        state.done(&first.channels);
        let third = state.take(false).unwrap();
        assert_eq!(names(&third), ["a"]);
        state.done(&second.channels);
        state.done(&third.channels);
        assert!(state.channels.is_empty() && state.ready.is_empty());
        assert_eq!(state.in_flight, 0);
    }

    #[test]
    fn calls_in_flight_count_and_bytes_are_bounded() {
        let mut state = State::default();
        let mut keep = Vec::new();
        for i in 0..CALLS_IN_FLIGHT {
            keep.push(push(&mut state, &[(&format!("c{i}"), 1)], false));
            assert!(state.take(false).is_some());
        }
        let many: Vec<(String, usize)> = (0..MAX_BATCH + 5).map(|i| (format!("x{i}"), 1)).collect();
        let many: Vec<(&str, usize)> = many.iter().map(|(c, b)| (c.as_str(), *b)).collect();
        keep.push(push(&mut state, &many, false));
        assert!(
            state.take(false).is_none(),
            "{CALLS_IN_FLIGHT} calls in flight"
        );
        state.done(&[]);
        let full = state.take(false).unwrap();
        assert_eq!(full.items.len(), MAX_BATCH);
        state.done(&full.channels);
        assert_eq!(state.take(false).unwrap().items.len(), 5);

        let mut state = State::default();
        let half = MAX_BATCH_BYTES / 2;
        let _big = push(
            &mut state,
            &[
                ("a", half),
                ("b", half),
                ("c", 1),
                ("d", MAX_BATCH_BYTES * 2),
            ],
            false,
        );
        assert_eq!(names(&state.take(false).unwrap()), ["a", "b"]);
        assert_eq!(names(&state.take(false).unwrap()), ["c"]);
        assert_eq!(
            names(&state.take(false).unwrap()),
            ["d"],
            "too large alone still goes"
        );
    }

    #[test]
    fn a_channels_publications_stay_in_order_when_they_do_not_all_fit() {
        let mut state = State::default();
        let jobs: Vec<(&str, usize)> = (0..MAX_BATCH + 3).map(|_| ("a", 1)).collect();
        let _keep = push(&mut state, &jobs, false);
        let first = state.take(false).unwrap();
        assert_eq!(first.items.len(), MAX_BATCH);
        assert!(
            state.take(false).is_none(),
            "the rest waits for the first call"
        );
        state.done(&first.channels);
        assert_eq!(state.take(false).unwrap().items.len(), 3);
    }

    #[test]
    fn a_cluster_call_carries_one_slot() {
        let channels: Vec<String> = (0..40).map(|i| format!("ch{i}")).collect();
        let slot = |c: &str| Slot::for_key(format!("s.{{{c}}}"));
        let mut state = State::default();
        let jobs: Vec<(&str, usize)> = channels.iter().map(|c| (c.as_str(), 1)).collect();
        let _keep = push(&mut state, &jobs, true);
        let mut seen = 0;
        while let Some(batch) = state.take(true) {
            let first = slot(&batch.items[0].job.channel);
            assert!(batch.items.iter().all(|w| slot(&w.job.channel) == first));
            seen += batch.items.len();
            state.done(&batch.channels);
        }
        assert_eq!(seen, 40, "every channel went");
        // Without a cluster, one call takes them all.
        let mut state = State::default();
        let _keep = push(&mut state, &jobs, false);
        assert_eq!(state.take(false).unwrap().items.len(), 40);
    }

    #[test]
    fn the_slot_is_the_crc16_of_the_hash_tag() {
        // Known values (Redis's CLUSTER KEYSLOT): "foo" 12182, "bar" 5061; only the tag counts.
        assert_eq!(Slot::for_key("x.{foo}.y"), Slot::for_key("foo"));
        assert_eq!(
            Slot::for_key("herald.stream.{bar}"),
            Slot::for_key("herald.meta.{bar}")
        );
        assert_eq!(Slot::for_key("foo"), Slot::new(12182).unwrap());
        assert_eq!(Slot::for_key("bar"), Slot::new(5061).unwrap());
    }

    /// Publications waiting on a queue hold at most `MAX_QUEUED_BYTES`: beyond, a publish is
    /// refused, until what waits is sent or its publishers go away.
    #[test]
    fn waiting_publications_are_bounded_in_bytes() {
        let mut state = State::default();
        let per = job("a", 0).cost() + 1_000_000;
        let fit = MAX_QUEUED_BYTES / per;
        let mut kept = Vec::new();
        let mut refused = 0;
        for _ in 0..fit + 5 {
            let (tx, rx) = oneshot::channel();
            let mut j = job("a", 1_000_000);
            j.args.push(vec![0; 1_000_000]);
            if state.push(j, tx, None) {
                kept.push(rx);
            } else {
                refused += 1;
            }
        }
        assert_eq!(kept.len(), fit, "as many as fit");
        assert_eq!(refused, 5);
        assert!(
            state.queued_bytes <= MAX_QUEUED_BYTES,
            "{}",
            state.queued_bytes
        );
        // Their publishers gone, they make room (and are never sent).
        kept.clear();
        let (tx, _b) = oneshot::channel();
        let mut j = job("b", 1_000_000);
        j.args.push(vec![0; 1_000_000]);
        assert!(state.push(j, tx, None), "room made by the abandoned ones");
        assert_eq!(state.queued_bytes, per);
        let batch = state.take(false).expect("b's call");
        assert_eq!(names(&batch), ["b"]);
        assert_eq!(state.queued_bytes, 0);
        assert!(
            state.take(false).is_none(),
            "nothing of `a` is left to send"
        );
    }

    #[test]
    fn an_abandoned_publication_is_not_sent() {
        let mut state = State::default();
        let receivers = push(&mut state, &[("a", 1), ("a", 1)], false);
        let mut receivers = receivers.into_iter();
        drop(receivers.next());
        let batch = state.take(false).unwrap();
        assert_eq!(batch.items.len(), 1);
    }
}
