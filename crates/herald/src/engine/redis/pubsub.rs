//! [`PubSubLink`]: one node's PUB/SUB connection to one shard, kept alive: the channels it is
//! asked for are subscribed (requests that arrive together go out as one SUBSCRIBE or
//! UNSUBSCRIBE), a dropped connection is made again and everything resubscribed, and a link
//! that went silent is noticed within seconds.
//!
//! **Liveness.** A half-dead TCP connection (a peer that vanished without a reset) looks
//! healthy to the socket. So while the link is idle the node PUBLISHes a probe, every
//! [`PROBE_INTERVAL`], on its command connection to a PUB/SUB channel of its own that the link
//! is subscribed to; if nothing at all (probe or message) arrives for `io_timeout` (at least
//! two probes' worth), the link is dropped and made again.
//! On a Sentinel-managed master, the link is also dropped and made again (to the new master)
//! as soon as the sentinels name another master ([`Shard::master_changes`]).
//!
//! **A slow handler.** Messages are taken off the connection as they come, into a queue
//! bounded in bytes ([`MAX_BACKLOG`]), and handed to the handler one at a time from it, so the
//! liveness check keeps running while the handler is busy (repairing a gap from a stream).
//! redis-rs's own queue between the socket and this link is unbounded, but it is drained at
//! once, whatever the handler does; what waits is this link's queue. When that would pass its
//! bound, the link is dropped (and with it everything queued on it) and made again, as Redis
//! itself drops a PUB/SUB client whose output buffer passes `client-output-buffer-limit`: a
//! slow node never grows without limit, and what it lost is repaired after the reconnect like
//! any other outage (see below).
//!
//! **After a reconnect** the handler's [`PubSubHandler::on_resubscribed`] runs before any
//! message received on the new connection is handed over, so that an engine can repair what
//! was missed while the link was down (the broker compares each positioned channel's top with
//! the last offset it delivered) before it delivers newer messages.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};

use super::shards::{Lane, Shard};
use crate::engine::{BoxFuture, EngineError};

/// How often an idle link is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Channels per SUBSCRIBE / UNSUBSCRIBE command when many are (re)subscribed at once.
const BATCH: usize = 512;

/// The bytes of messages a link holds for a handler that has not taken them yet (payload and
/// channel name, plus [`MESSAGE_OVERHEAD`] each); one more and the link is dropped and made
/// again. 32 MiB, Redis's own default hard limit for a PUB/SUB client's output buffer.
pub const MAX_BACKLOG: usize = 32 << 20;

/// What a queued message costs besides its payload and channel name (its `Msg`, the queue).
const MESSAGE_OVERHEAD: usize = 128;

/// What a link hands its messages to (the broker, a controller). Calls are made in the order
/// the messages arrived, one at a time, from the link's task.
pub trait PubSubHandler: Send + Sync + 'static {
    /// A message on PUB/SUB channel `channel`. Awaited before the next one is taken, which
    /// keeps per-channel order; quick unless it repairs a gap.
    fn on_message<'a>(&'a self, channel: &'a str, payload: &'a [u8]) -> BoxFuture<'a, ()>;

    /// The link was (re)established and every wanted channel is subscribed again: whatever
    /// was published while it was down was missed.
    fn on_resubscribed(&self) -> BoxFuture<'_, ()>;
}

enum Request {
    Subscribe(String, oneshot::Sender<Result<(), EngineError>>),
    Unsubscribe(String),
}

/// Whether the link is up, for `/health`.
#[derive(Default)]
struct LinkState {
    up: bool,
    last_error: String,
}

/// A PUB/SUB connection to one shard, run by a task of its own; dropped, the task ends.
pub struct PubSubLink {
    requests: mpsc::UnboundedSender<Request>,
    state: Arc<Mutex<LinkState>>,
    describe: String,
}

impl std::fmt::Debug for PubSubLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PubSubLink({})", self.describe)
    }
}

impl PubSubLink {
    /// Starts the link's task (on the current tokio runtime). `probe_channel` must be unique
    /// to this node and link (it carries the liveness probes). The handler is held weakly: the
    /// owner of the link usually is the handler.
    pub fn start(
        shard: Arc<Shard>,
        probe_channel: String,
        io_timeout: Duration,
        handler: Weak<dyn PubSubHandler>,
    ) -> PubSubLink {
        Self::start_with_backlog(shard, probe_channel, io_timeout, handler, MAX_BACKLOG)
    }

    /// [`PubSubLink::start`] with another bound than [`MAX_BACKLOG`] on what waits for the
    /// handler (for tests).
    pub fn start_with_backlog(
        shard: Arc<Shard>,
        probe_channel: String,
        io_timeout: Duration,
        handler: Weak<dyn PubSubHandler>,
        max_backlog: usize,
    ) -> PubSubLink {
        let (requests, receiver) = mpsc::unbounded_channel();
        let state = Arc::new(Mutex::new(LinkState {
            up: false,
            last_error: "not connected yet".into(),
        }));
        let describe = shard.describe();
        let task = Task {
            shard,
            probe_channel,
            dead_after: io_timeout.max(PROBE_INTERVAL * 2),
            handler,
            requests: receiver,
            wanted: HashSet::new(),
            state: state.clone(),
            max_backlog,
        };
        tokio::spawn(task.run());
        PubSubLink {
            requests,
            state,
            describe,
        }
    }

    /// Subscribes the link to `channel`; resolves once Redis confirmed it (a message published
    /// after that is received), or with an error while the link is down.
    pub async fn subscribe(&self, channel: String) -> Result<(), EngineError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::Subscribe(channel, tx))
            .map_err(|_| EngineError::Unavailable("the Redis PUB/SUB link has stopped".into()))?;
        rx.await.unwrap_or_else(|_| {
            Err(EngineError::Unavailable(
                "the Redis PUB/SUB link has stopped".into(),
            ))
        })
    }

    /// Unsubscribes the link from `channel` (not waited for).
    pub fn unsubscribe(&self, channel: String) {
        let _ = self.requests.send(Request::Unsubscribe(channel));
    }

    /// `Ok` while the link is up; otherwise what is wrong, for `/health`.
    pub fn health(&self) -> Result<(), String> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.up {
            Ok(())
        } else {
            Err(format!(
                "Redis PUB/SUB link to {} is down: {}",
                self.describe, state.last_error
            ))
        }
    }
}

/// The link's task and what it keeps between connections.
struct Task {
    shard: Arc<Shard>,
    probe_channel: String,
    dead_after: Duration,
    handler: Weak<dyn PubSubHandler>,
    requests: mpsc::UnboundedReceiver<Request>,
    /// The channels the owner wants; resubscribed after every reconnect.
    wanted: HashSet<String>,
    state: Arc<Mutex<LinkState>>,
    /// The bound on queued messages' bytes ([`MAX_BACKLOG`]).
    max_backlog: usize,
}

/// The handler at work on one message; resolves to the bytes it took in the queue.
type Handling = Pin<Box<dyn Future<Output = usize> + Send>>;

/// Why a connection's loop ended.
enum End {
    /// The owner dropped the link.
    Stopped,
    /// The connection failed or went silent: reconnect.
    Lost(String),
}

impl Task {
    async fn run(mut self) {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.shard.pubsub().await {
                Ok(pubsub) => {
                    backoff = Duration::from_millis(50);
                    match self.serve(pubsub).await {
                        End::Stopped => return,
                        End::Lost(error) => {
                            tracing::warn!("{error}; reconnecting");
                            self.down(error);
                            // The command connection most likely went with it (Redis
                            // restarted, the network dropped): make it anew on next use
                            // rather than fail one command on it first.
                            self.shard.reset();
                        }
                    }
                }
                Err(e) => self.down(e.to_string()),
            }
            // Requests that come while the link is down fail at once (their subscribe
            // answers an error); unsubscribes just leave the wanted set.
            let wait = tokio::time::sleep(backoff);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = &mut wait => break,
                    request = self.requests.recv() => match request {
                        None => return,
                        Some(request) => self.refuse(request),
                    },
                }
            }
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    fn down(&self, error: String) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.up = false;
        state.last_error = error;
    }

    fn refuse(&mut self, request: Request) {
        match request {
            Request::Subscribe(_, tx) => {
                let error = self
                    .state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .last_error
                    .clone();
                let _ = tx.send(Err(EngineError::Unavailable(format!(
                    "Redis PUB/SUB link to {} is down: {error}",
                    self.shard.describe()
                ))));
            }
            Request::Unsubscribe(channel) => {
                self.wanted.remove(&channel);
            }
        }
    }

    /// Runs one connection until it fails, goes silent or the owner stops.
    async fn serve(&mut self, pubsub: redis::aio::PubSub) -> End {
        let (mut sink, mut stream) = pubsub.split();
        let describe = self.shard.describe();
        let lost = |what: &str, e: &dyn std::fmt::Display| {
            End::Lost(format!("Redis PUB/SUB link to {describe}: {what}: {e}"))
        };
        let timeout = self.dead_after;
        // A Sentinel-managed master that moves ends this connection (see `shards/sentinel.rs`);
        // a move before now was followed by the connection just made.
        let mut master = self.shard.master_changes();
        if let Some(master) = &mut master {
            master.borrow_and_update();
        }
        let mut everything: Vec<String> = vec![self.probe_channel.clone()];
        everything.extend(self.wanted.iter().cloned());
        for chunk in everything.chunks(BATCH) {
            match tokio::time::timeout(timeout, sink.subscribe(chunk)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return lost("SUBSCRIBE failed", &e),
                Err(_) => return lost("SUBSCRIBE", &"no answer in time"),
            }
        }
        let mut active: HashSet<String> = self.wanted.clone();
        self.shard.reachable();
        {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.up = true;
            state.last_error.clear();
        }
        tracing::info!(
            "Redis PUB/SUB link to {describe} is up ({} channels)",
            active.len()
        );
        if let Some(handler) = self.handler.upgrade() {
            handler.on_resubscribed().await;
        }
        let mut last_seen = Instant::now();
        let mut ticker = tokio::time::interval(PROBE_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Messages taken off the connection, waiting for the handler; their bytes (the one
        // being handled included).
        let mut queue: VecDeque<(redis::Msg, usize)> = VecDeque::new();
        let mut queued = 0usize;
        let mut handling: Option<Handling> = None;
        let end = loop {
            if handling.is_none()
                && let Some((message, size)) = queue.pop_front()
            {
                let Some(handler) = self.handler.upgrade() else {
                    break End::Stopped;
                };
                handling = Some(Box::pin(async move {
                    handler
                        .on_message(message.get_channel_name(), message.get_payload_bytes())
                        .await;
                    size
                }));
            }
            tokio::select! {
                message = stream.next() => {
                    let Some(message) = message else {
                        break lost("connection closed", &"by Redis or the network");
                    };
                    last_seen = Instant::now();
                    let channel = message.get_channel_name();
                    if channel == self.probe_channel {
                        continue;
                    }
                    let size = channel.len() + message.get_payload_bytes().len() + MESSAGE_OVERHEAD;
                    if queued + size > self.max_backlog {
                        break lost(
                            "the handler fell behind",
                            &format!(
                                "{queued} bytes of messages wait for it, the bound is {}; \
                                 what waited is dropped and repaired after the reconnect",
                                self.max_backlog
                            ),
                        );
                    }
                    queued += size;
                    queue.push_back((message, size));
                }
                size = async {
                    match handling.as_mut() {
                        Some(handled) => handled.await,
                        None => std::future::pending().await,
                    }
                }, if handling.is_some() => {
                    handling = None;
                    queued -= size;
                }
                request = self.requests.recv() => {
                    let Some(first) = request else { break End::Stopped };
                    let mut waiters = Vec::new();
                    let mut next = Some(first);
                    // Everything already queued goes out in the same commands.
                    while let Some(request) = next {
                        match request {
                            Request::Subscribe(channel, tx) => {
                                self.wanted.insert(channel);
                                waiters.push(tx);
                            }
                            Request::Unsubscribe(channel) => {
                                self.wanted.remove(&channel);
                            }
                        }
                        next = self.requests.try_recv().ok();
                    }
                    let gone: Vec<String> = active.difference(&self.wanted).cloned().collect();
                    let new: Vec<String> = self.wanted.difference(&active).cloned().collect();
                    let mut result = Ok(());
                    for chunk in gone.chunks(BATCH) {
                        match tokio::time::timeout(timeout, sink.unsubscribe(chunk)).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => result = Err(e.to_string()),
                            Err(_) => result = Err("UNSUBSCRIBE: no answer in time".into()),
                        }
                    }
                    for chunk in new.chunks(BATCH) {
                        match tokio::time::timeout(timeout, sink.subscribe(chunk)).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => result = Err(e.to_string()),
                            Err(_) => result = Err("SUBSCRIBE: no answer in time".into()),
                        }
                    }
                    match result {
                        Ok(()) => {
                            active = self.wanted.clone();
                            for tx in waiters {
                                let _ = tx.send(Ok(()));
                            }
                        }
                        Err(error) => {
                            // Their subscribers were answered an error: not wanted any more.
                            for channel in &new {
                                self.wanted.remove(channel);
                            }
                            let error = format!("Redis PUB/SUB link to {describe}: {error}");
                            for tx in waiters {
                                let _ = tx.send(Err(EngineError::Unavailable(error.clone())));
                            }
                            break End::Lost(error);
                        }
                    }
                }
                _ = master_moved(&mut master) => {
                    return lost("the sentinels name another master", &"following it");
                }
                _ = ticker.tick() => {
                    let silent = last_seen.elapsed();
                    if silent >= self.dead_after {
                        break lost(
                            "silent",
                            &format!("no probe came back for {silent:?}"),
                        );
                    }
                    if silent >= PROBE_INTERVAL {
                        self.probe();
                    }
                }
            }
        };
        // The connection (and redis-rs's queue on it) goes first; what waited in this link's
        // queue is dropped. The message being handled is let finish (it may be repairing a
        // gap): a handler is never cut off half-way.
        drop(stream);
        drop(sink);
        drop(queue);
        if let End::Lost(error) = &end {
            self.down(error.clone());
        }
        if let Some(handled) = handling {
            handled.await;
        }
        end
    }

    /// Publishes a probe to this link's own channel, on the command connection (not awaited:
    /// its echo, or its absence, is what counts).
    fn probe(&self) {
        let shard = self.shard.clone();
        let channel = self.probe_channel.clone();
        tokio::spawn(async move {
            if let Ok(mut conn) = shard.lane(Lane::Probe).await {
                let _: Result<i64, _> = redis::cmd("PUBLISH")
                    .arg(&channel)
                    .arg("")
                    .query_async(&mut conn)
                    .await;
            }
        });
    }
}

/// Resolves when the sentinels name another master (never for other shards).
async fn master_moved(master: &mut Option<tokio::sync::watch::Receiver<u64>>) {
    if let Some(master) = master
        && master.changed().await.is_ok()
    {
        return;
    }
    std::future::pending().await
}
