//! The in-memory side of the embedded engine, shared by the writer, the syncers and the
//! readers:
//!
//! * per channel, the durable stream meta (epoch, top) and the most recent publications, so
//!   that `top`, most recoveries and "latest N" history reads never touch the disk;
//! * per channel, the offsets that are committed but not yet durable ("pending"), so that a
//!   reader going to disk never hands out a publication before its publisher got the ack.
//!
//! Everything the writer commits reaches the cache as [`Effect`]s, applied in commit order once
//! durable. A channel's cached publications are always a contiguous run ending at `top`: the
//! cache holds every retained publication with an offset above `covers_from`.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::engine::StoredPublication;
use crate::sync;

const SHARDS: usize = 64;

/// What a commit changed, for the cache.
#[derive(Debug)]
pub(super) enum Effect {
    /// Publications appended to a channel (ascending, contiguous), ending at `top` (unless
    /// some were removed again in the same commit).
    Append {
        channel: String,
        epoch: String,
        top: u64,
        meta_expires_at: i64,
        /// Most publications the cache may keep for this channel (its `history_size`).
        size: usize,
        publications: Vec<(Arc<StoredPublication>, i64)>,
    },
    /// A stream exists with this meta (created, or loaded by the writer).
    Stream {
        channel: String,
        epoch: String,
        top: u64,
        meta_expires_at: i64,
    },
    /// The channel's publications were removed (`history_remove`); meta kept.
    Clear { channel: String },
    /// The stream is gone (meta expired).
    Drop { channel: String },
}

/// One channel's cached state; reflects only durable commits.
#[derive(Debug)]
pub(super) struct ChannelState {
    pub epoch: String,
    pub top: u64,
    pub meta_expires_at: i64,
    /// Every retained publication with an offset above this is in `publications`.
    pub covers_from: u64,
    /// Offsets `covers_from + 1 ..= top`, each with its expiry (Unix ms).
    pub publications: VecDeque<(Arc<StoredPublication>, i64)>,
    bytes: usize,
    last_used: u32,
}

impl ChannelState {
    fn new(epoch: String, top: u64, meta_expires_at: i64) -> Self {
        ChannelState {
            epoch,
            top,
            meta_expires_at,
            covers_from: top,
            publications: VecDeque::new(),
            bytes: 0,
            last_used: 0,
        }
    }

    /// Whether the stream meta has expired at `now_ms`.
    pub fn expired(&self, now_ms: i64) -> bool {
        self.meta_expires_at > 0 && self.meta_expires_at <= now_ms
    }
}

/// Committed but not yet durable offsets of a channel.
#[derive(Debug)]
struct Pending {
    epoch: String,
    /// The lowest offset not yet durable.
    first: u64,
    /// The last batch that added to it.
    last_seq: u64,
}

#[derive(Default)]
pub(super) struct Shard {
    pub states: HashMap<String, ChannelState>,
    pending: HashMap<String, Pending>,
    /// Bumped on every applied change: a reader that loaded meta from disk inserts it only
    /// if nothing changed in the shard since it started.
    pub generation: u64,
}

/// Limits of the cache.
#[derive(Clone, Copy, Debug)]
pub(super) struct CacheLimits {
    /// Total bytes of cached publications (approximate).
    pub max_bytes: usize,
    /// Cached publications per channel (also bounded by the channel's `history_size`).
    pub per_channel: usize,
    /// Channels whose meta is kept.
    pub max_channels: usize,
}

/// Counters, for tests, benchmarks and metrics.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub appends: AtomicU64,
    pub duplicates: AtomicU64,
    pub transactions: AtomicU64,
    pub syncs: AtomicU64,
    pub max_batch: AtomicU64,
    pub cache_hits: AtomicU64,
    pub disk_reads: AtomicU64,
    pub swept_publications: AtomicU64,
    pub expired_streams: AtomicU64,
    pub checkpoints: AtomicU64,
    pub wal_restarts: AtomicU64,
}

/// The shared state.
pub(super) struct Shared {
    shards: Box<[Mutex<Shard>]>,
    limits: CacheLimits,
    bytes: AtomicUsize,
    channels: AtomicUsize,
    evict_cursor: AtomicUsize,
    started: Instant,
    pub counters: Counters,
    /// Set when durability can no longer be guaranteed (a failed fsync): every later write is
    /// refused.
    pub failed: AtomicBool,
    /// Frames in the WAL as last seen by the checkpointer.
    pub wal_frames: AtomicU64,
    /// Where durable publications go, in commit order ([`crate::engine::History::set_delivery`]).
    pub delivery: std::sync::OnceLock<crate::engine::Delivery>,
}

impl Shared {
    pub fn new(limits: CacheLimits) -> Self {
        Shared {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            limits,
            bytes: AtomicUsize::new(0),
            channels: AtomicUsize::new(0),
            evict_cursor: AtomicUsize::new(0),
            started: Instant::now(),
            counters: Counters::default(),
            failed: AtomicBool::new(false),
            delivery: std::sync::OnceLock::new(),
            wal_frames: AtomicU64::new(0),
        }
    }

    fn shard_index(channel: &str) -> usize {
        let mut h = DefaultHasher::new();
        channel.hash(&mut h);
        (h.finish() as usize) % SHARDS
    }

    /// Locks the shard of `channel`.
    pub fn shard(&self, channel: &str) -> MutexGuard<'_, Shard> {
        self.lock(Self::shard_index(channel))
    }

    fn lock(&self, i: usize) -> MutexGuard<'_, Shard> {
        // Every critical section leaves the shard consistent, so a poisoned lock is usable.
        sync::lock(&self.shards[i])
    }

    fn tick(&self) -> u32 {
        self.started.elapsed().as_secs() as u32
    }

    /// Marks `state` as used now.
    pub fn touch(&self, state: &mut ChannelState) {
        state.last_used = self.tick();
    }

    /// The generation of `channel`'s shard (see [`Shard::generation`]).
    pub fn generation(&self, channel: &str) -> u64 {
        self.shard(channel).generation
    }

    /// The highest offset of `channel` a reader may hand out, given the `epoch` and `top` it
    /// read from disk: committed offsets that are not yet durable are hidden.
    pub fn visible_top(shard: &Shard, channel: &str, epoch: &str, top: u64) -> u64 {
        match shard.pending.get(channel) {
            Some(p) if p.epoch == epoch => top.min(p.first.saturating_sub(1)),
            _ => top,
        }
    }

    /// Records what a reader loaded from disk (meta already clamped to what is durable, plus
    /// optionally the newest publications: ascending, contiguous, ending at `top`), unless the
    /// cache changed for the shard since `generation` or already knows the channel.
    pub fn insert_loaded(
        &self,
        channel: &str,
        generation: u64,
        epoch: &str,
        top: u64,
        meta_expires_at: i64,
        mut publications: Vec<(Arc<StoredPublication>, i64)>,
    ) {
        let contiguous = publications.last().is_none_or(|(p, _)| p.offset == top)
            && publications
                .windows(2)
                .all(|w| w[1].0.offset == w[0].0.offset + 1);
        if !contiguous {
            publications.clear();
        }
        if publications.len() > self.limits.per_channel {
            publications.drain(..publications.len() - self.limits.per_channel);
        }
        let mut shard = self.shard(channel);
        if shard.generation != generation || shard.states.contains_key(channel) {
            return;
        }
        shard.generation += 1;
        let mut state = ChannelState::new(epoch.to_string(), top, meta_expires_at);
        state.last_used = self.tick();
        if let Some((first, _)) = publications.first() {
            state.covers_from = first.offset - 1;
        }
        state.bytes = publications.iter().map(|(p, _)| p.approx_size()).sum();
        let bytes = state.bytes;
        state.publications = publications.into();
        shard.states.insert(channel.to_string(), state);
        drop(shard);
        let over_bytes =
            self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes > self.limits.max_bytes;
        let over_channels =
            self.channels.fetch_add(1, Ordering::Relaxed) + 1 > self.limits.max_channels;
        if over_bytes || over_channels {
            self.evict();
        }
    }

    /// Before committing batch `seq`: offsets from `first` of `channel` will be committed and
    /// are not durable until the batch is acknowledged.
    pub fn add_pending(&self, channel: &str, epoch: &str, first: u64, seq: u64) {
        let mut shard = self.shard(channel);
        match shard.pending.get_mut(channel) {
            Some(p) if p.epoch == epoch => p.last_seq = seq,
            _ => {
                shard.pending.insert(
                    channel.to_string(),
                    Pending {
                        epoch: epoch.to_string(),
                        first,
                        last_seq: seq,
                    },
                );
            }
        }
    }

    /// Batch `seq` is durable: offsets up to `last` of `channel` are no longer pending.
    pub fn clear_pending(&self, channel: &str, last: u64, seq: u64) {
        let mut shard = self.shard(channel);
        if let Some(p) = shard.pending.get_mut(channel) {
            if p.last_seq <= seq {
                shard.pending.remove(channel);
            } else {
                p.first = p.first.max(last + 1);
            }
        }
    }

    /// Applies the effects of one durable commit.
    pub fn apply(&self, effects: Vec<Effect>) {
        let mut channels_added = 0usize;
        let mut bytes_added = 0isize;
        for effect in effects {
            match effect {
                Effect::Append {
                    channel,
                    epoch,
                    top,
                    meta_expires_at,
                    size,
                    publications,
                } => {
                    let first = publications.first().map_or(top + 1, |(p, _)| p.offset);
                    let cap = size.min(self.limits.per_channel);
                    let mut shard = self.shard(&channel);
                    shard.generation += 1;
                    let state = match shard.states.get_mut(&channel) {
                        Some(s) => s,
                        None => {
                            channels_added += 1;
                            shard.states.entry(channel).or_insert_with(|| {
                                ChannelState::new(epoch.clone(), first - 1, meta_expires_at)
                            })
                        }
                    };
                    if state.epoch != epoch {
                        bytes_added -= state.bytes as isize;
                        *state = ChannelState::new(epoch, first - 1, meta_expires_at);
                    }
                    state.meta_expires_at = meta_expires_at;
                    state.last_used = self.tick();
                    for (publication, expires_at) in publications {
                        let offset = publication.offset;
                        if offset <= state.top {
                            continue; // already reflected (meta loaded from disk later)
                        }
                        if offset != state.top + 1 {
                            // A gap: what is cached no longer ends at top.
                            bytes_added -= state.bytes as isize;
                            state.publications.clear();
                            state.bytes = 0;
                            state.covers_from = offset - 1;
                        }
                        let n = publication.approx_size();
                        state.bytes += n;
                        bytes_added += n as isize;
                        state.publications.push_back((publication, expires_at));
                        state.top = offset;
                    }
                    if state.top < top {
                        // The newest were removed in the same commit: nothing cached is known
                        // to be retained.
                        bytes_added -= state.bytes as isize;
                        state.publications.clear();
                        state.bytes = 0;
                        state.top = top;
                        state.covers_from = top;
                    }
                    while state.publications.len() > cap {
                        if let Some((p, _)) = state.publications.pop_front() {
                            let n = p.approx_size();
                            state.bytes -= n;
                            bytes_added -= n as isize;
                            state.covers_from = p.offset;
                        }
                    }
                }
                Effect::Stream {
                    channel,
                    epoch,
                    top,
                    meta_expires_at,
                } => {
                    let mut shard = self.shard(&channel);
                    shard.generation += 1;
                    match shard.states.get_mut(&channel) {
                        Some(state) if state.epoch == epoch && state.top == top => {
                            state.meta_expires_at = meta_expires_at;
                        }
                        Some(state) => {
                            bytes_added -= state.bytes as isize;
                            *state = ChannelState::new(epoch, top, meta_expires_at);
                            state.last_used = self.tick();
                        }
                        None => {
                            channels_added += 1;
                            let mut state = ChannelState::new(epoch, top, meta_expires_at);
                            state.last_used = self.tick();
                            shard.states.insert(channel, state);
                        }
                    }
                }
                Effect::Clear { channel } => {
                    let mut shard = self.shard(&channel);
                    shard.generation += 1;
                    if let Some(state) = shard.states.get_mut(&channel) {
                        bytes_added -= state.bytes as isize;
                        state.publications.clear();
                        state.bytes = 0;
                        state.covers_from = state.top;
                    }
                }
                Effect::Drop { channel } => {
                    let mut shard = self.shard(&channel);
                    shard.generation += 1;
                    if let Some(state) = shard.states.remove(&channel) {
                        bytes_added -= state.bytes as isize;
                        self.channels.fetch_sub(1, Ordering::Relaxed);
                    }
                }
            }
        }
        if channels_added > 0 {
            self.channels.fetch_add(channels_added, Ordering::Relaxed);
        }
        let bytes = if bytes_added >= 0 {
            self.bytes
                .fetch_add(bytes_added as usize, Ordering::Relaxed)
                .saturating_add(bytes_added as usize)
        } else {
            let d = bytes_added.unsigned_abs();
            self.bytes.fetch_sub(d, Ordering::Relaxed).saturating_sub(d)
        };
        if bytes > self.limits.max_bytes
            || self.channels.load(Ordering::Relaxed) > self.limits.max_channels
        {
            self.evict();
        }
    }

    /// Frees memory until under 90 % of the limits: the publications of the least recently
    /// used channels first, then (over the channel limit) their meta. Never forgets a channel
    /// with pending offsets (readers need the pending marks, not the meta, so only `states`
    /// are evicted).
    fn evict(&self) {
        let byte_goal = self.limits.max_bytes / 10 * 9;
        let channel_goal = self.limits.max_channels / 10 * 9;
        for _ in 0..SHARDS {
            let over_bytes = self.bytes.load(Ordering::Relaxed) > byte_goal;
            let over_channels = self.channels.load(Ordering::Relaxed) > channel_goal;
            if !over_bytes && !over_channels {
                return;
            }
            let i = self.evict_cursor.fetch_add(1, Ordering::Relaxed) % SHARDS;
            let mut shard = self.lock(i);
            shard.generation += 1;
            let mut by_age: Vec<(u32, String)> = shard
                .states
                .iter()
                .map(|(k, s)| (s.last_used, k.clone()))
                .collect();
            by_age.sort_unstable();
            // The older half of this shard.
            let n = by_age.len().div_ceil(2);
            for (_, channel) in by_age.into_iter().take(n) {
                if over_channels {
                    if let Some(state) = shard.states.remove(&channel) {
                        self.bytes.fetch_sub(state.bytes, Ordering::Relaxed);
                        self.channels.fetch_sub(1, Ordering::Relaxed);
                    }
                } else if let Some(state) = shard.states.get_mut(&channel) {
                    self.bytes.fetch_sub(state.bytes, Ordering::Relaxed);
                    state.publications.clear();
                    state.bytes = 0;
                    state.covers_from = state.top;
                }
            }
        }
    }

    /// Cached publication bytes and channels.
    pub fn usage(&self) -> (usize, usize) {
        (
            self.bytes.load(Ordering::Relaxed),
            self.channels.load(Ordering::Relaxed),
        )
    }
}
