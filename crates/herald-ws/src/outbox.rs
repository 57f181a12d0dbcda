//! [`Outbox`]: a connection's bounded outbound queue, the one place other tasks hand it work.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Waker};

use crate::error::CloseCode;
use crate::frame::Frame;
use crate::message::Message;

/// Queued bytes at which a connection stops reading its peer's input, unless half its budget is
/// less (see [`Outbox::backlogged`]): enough for a burst of replies, small enough that a
/// client that never reads them costs little.
pub const BACKLOG_BYTES: u32 = 64 * 1024;

/// One queued item: a message shared with other connections, or a frame for this connection
/// only (control frames, per-connection replies).
#[derive(Clone, Debug)]
pub enum Outgoing {
    Shared(Arc<Message>),
    Frame(Frame),
}

impl Outgoing {
    /// Uncompressed size, used for the queue's byte budget.
    pub fn len(&self) -> usize {
        match self {
            Outgoing::Shared(m) => m.frame().len(),
            Outgoing::Frame(f) => f.len(),
        }
    }

    /// Never true (every frame has a header); provided for API completeness.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A queue of outgoing items that takes one pointer until it is first used: what a
/// connection's writer takes from its outbox ([`Outbox::drain_for_writer`]) and writes out,
/// whatever its transport (a WebSocket here, an HTTP stream in the server).
///
/// Every connection keeps two (its outbox's, and the one its task writes from), idle or not,
/// and an empty `VecDeque` inline would cost each 32 bytes. The box is allocated with the
/// first item; a busy connection keeps both boxes and swaps them (see [`Queue::append`]), so
/// steady traffic allocates nothing.
#[derive(Debug, Default)]
pub struct Queue(Option<Box<Items>>);

/// The inside of a [`Queue`] that holds a buffer.
#[derive(Debug, Default)]
pub(crate) struct Items {
    items: VecDeque<Outgoing>,
    /// Bytes of the front item already written: a writer's queue may start with a partly
    /// written item, an outbox's never does. Here rather than beside the queue because it
    /// means something only while there are items (and so a buffer).
    front_written: u32,
}

impl Queue {
    pub fn push_back(&mut self, item: Outgoing) {
        self.0
            .get_or_insert_with(Box::default)
            .items
            .push_back(item);
    }

    /// Removes the front item (the next one starts unwritten).
    pub fn pop_front(&mut self) -> Option<Outgoing> {
        let queue = self.0.as_mut()?;
        queue.front_written = 0;
        queue.items.pop_front()
    }

    pub fn front(&self) -> Option<&Outgoing> {
        self.0.as_ref()?.items.front()
    }

    /// Bytes of the front item already written.
    pub(crate) fn front_written(&self) -> u32 {
        self.0.as_ref().map_or(0, |queue| queue.front_written)
    }

    /// Records that `n` more bytes of the front item were written (less than what is left of
    /// it).
    pub(crate) fn front_wrote(&mut self, n: u32) {
        if let Some(queue) = &mut self.0 {
            queue.front_written += n;
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Outgoing> {
        self.0.iter().flat_map(|queue| queue.items.iter())
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Outgoing> {
        self.0.iter_mut().flat_map(|queue| queue.items.iter_mut())
    }

    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |queue| queue.items.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops all items, keeping the buffer.
    pub fn clear(&mut self) {
        if let Some(queue) = &mut self.0 {
            queue.items.clear();
            queue.front_written = 0;
        }
    }

    /// Keeps the first `len` items, and the buffer.
    pub(crate) fn truncate(&mut self, len: usize) {
        if len == 0 {
            self.clear();
        } else if let Some(queue) = &mut self.0 {
            queue.items.truncate(len);
        }
    }

    /// Drops the items and the buffer: the queue takes no memory but its pointer again.
    pub fn release(&mut self) {
        self.0 = None;
    }

    /// Whether the queue holds a buffer.
    pub(crate) fn is_allocated(&self) -> bool {
        self.0.is_some()
    }

    /// Moves every item of `other` to the end of this queue. When this one is empty the two
    /// are swapped whole: `other` gets this queue's (empty) buffer and no item is moved.
    pub(crate) fn append(&mut self, other: &mut Queue) {
        if self.is_empty() {
            std::mem::swap(self, other);
            other.clear();
        } else if let Some(queue) = &mut other.0 {
            let items = queue.items.drain(..);
            self.0.get_or_insert_with(Box::default).items.extend(items);
        }
    }

    /// The items, in order.
    pub(crate) fn into_items(self) -> impl Iterator<Item = Outgoing> {
        self.0.into_iter().flat_map(|queue| queue.items)
    }
}

/// What an outbox holds, as far as write coalescing is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Waiting {
    /// Nothing is queued.
    Nothing,
    /// Output that may wait for the end of a hold.
    Output,
    /// A reply or a close request: written at once.
    Urgent,
}

/// Why a push was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The connection is closing or closed; the item was dropped.
    #[error("connection is closed")]
    Closed,
    /// The queue would exceed its byte budget; the connection is now being closed with the
    /// code given to [`Outbox::new`] (a slow consumer must not hold memory for everyone).
    #[error("outbound queue full: connection closed as a slow consumer")]
    Full,
}

/// A request, from any task, to close the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseRequest {
    pub code: CloseCode,
    pub reason: String,
    /// Drop what is queued and not yet being written: set for a slow consumer, whose backlog
    /// would only delay the close frame that tells it why it is cut off.
    pub discard_queued: bool,
}

/// The bounded outbound queue of one connection.
///
/// Publishers push into it from any task or thread; the connection's own task drains all of it
/// at once and writes it with one vectored write. The byte budget protects the server from a
/// client that stops reading: going over it closes that connection with the budget's close
/// code, and nobody else waits. The lock is held only to push or swap the queue, never across
/// an await.
///
/// Every connection keeps one, so its size is paid per connection: the byte counts are 32-bit,
/// a close request is boxed and the budget is shared (see the size test).
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    budget: Arc<Budget>,
}

/// The byte budget of outboxes and what going over it does: one per server, shared by all its
/// connections' outboxes ([`Outbox::sharing`]) rather than copied into each.
#[derive(Debug)]
pub struct Budget {
    /// Clamped to 32 bits (see [`Budget::new`]).
    max_bytes: u32,
    overflow_code: CloseCode,
    /// Static: the reason is one of the application's fixed close reasons.
    overflow_reason: &'static str,
}

impl Budget {
    /// At most `max_bytes` queued per connection; a push over it closes the connection with
    /// `overflow_code` and `overflow_reason`.
    ///
    /// A budget over `u32::MAX` bytes (4 GiB) is clamped to it: a backlog that large for one
    /// connection makes no sense, and 32-bit counts keep every connection's queue smaller.
    pub fn new(
        max_bytes: usize,
        overflow_code: CloseCode,
        overflow_reason: &'static str,
    ) -> Budget {
        Budget {
            max_bytes: u32::try_from(max_bytes).unwrap_or(u32::MAX),
            overflow_code,
            overflow_reason,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    queue: Queue,
    /// Bytes queued for this connection and not yet written: what this outbox holds and what
    /// its connection took from it and has not written yet (the writer gives bytes back as it
    /// writes them, see [`Outbox::drain_for_writer`]). Never over the budget's `max_bytes`, so
    /// 32 bits hold it. Counting the writer's part too is what bounds a connection that does not
    /// read: were the count reset on every drain, each drain would open a fresh budget while
    /// the writer's queue grew without limit.
    bytes: u32,
    /// Boxed: a connection is closed once in its life, and inline the request (with its
    /// `String`) would cost every idle connection's queue 24 bytes more. Requesting a close
    /// allocates the reason anyway.
    close: Option<Box<CloseRequest>>,
    closed: bool,
    /// A frame for this connection only is queued (see [`Outbox::push_frame`]).
    urgent: bool,
    /// The connection holds its output (write coalescing): only urgent output or a close
    /// request wakes it, not the first queued publication.
    holding: bool,
    /// The application asked its connection task to wake up ([`Outbox::notify`]).
    notified: bool,
    /// The connection task, waiting for output: woken by the push that makes the queue
    /// non-empty (or a close request). Kept under the queue's own lock, so a push costs one
    /// lock and no wake-up is lost between "queue empty" and "waiting".
    waker: Option<Waker>,
}

impl State {
    /// Keeps the waker of `cx` (unless it is the one already kept) for the next wake-up.
    fn wake_later(&mut self, cx: &Context<'_>) {
        match &mut self.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
    }
}

impl Outbox {
    /// A queue with a budget of its own (see [`Budget::new`]). A server making one per
    /// connection shares one budget between them with [`Outbox::sharing`].
    pub fn new(
        max_bytes: usize,
        overflow_code: CloseCode,
        overflow_reason: &'static str,
    ) -> Outbox {
        Outbox::sharing(Arc::new(Budget::new(
            max_bytes,
            overflow_code,
            overflow_reason,
        )))
    }

    /// A queue under `budget`, which other queues share.
    pub fn sharing(budget: Arc<Budget>) -> Outbox {
        Outbox {
            state: Mutex::new(State::default()),
            budget,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue inconsistent (every critical
        // section is a single push or swap), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a message shared with other connections.
    pub fn push(&self, message: Arc<Message>) -> Result<(), PushError> {
        self.push_item(Outgoing::Shared(message))
    }

    /// Queues a frame for this connection only: a reply to the peer, which is written at once
    /// even while the connection holds its output for write coalescing (someone is waiting for
    /// it; coalescing is for what many connections are sent).
    pub fn push_frame(&self, frame: Frame) -> Result<(), PushError> {
        self.push_item(Outgoing::Frame(frame))
    }

    /// Queues an item, enforcing the byte budget.
    pub fn push_item(&self, item: Outgoing) -> Result<(), PushError> {
        let len = item.len();
        let urgent = matches!(item, Outgoing::Frame(_));
        let wake = {
            let mut state = self.lock();
            if state.closed || state.close.is_some() {
                return Err(PushError::Closed);
            }
            // `bytes` never exceeds `max_bytes`: the room left cannot underflow, and a length
            // that fits in it fits in 32 bits.
            let budget = &*self.budget;
            if len > (budget.max_bytes - state.bytes) as usize {
                state.close = Some(Box::new(CloseRequest {
                    code: budget.overflow_code,
                    reason: budget.overflow_reason.to_owned(),
                    discard_queued: true,
                }));
                let waker = state.waker.take();
                drop(state);
                if let Some(waker) = waker {
                    waker.wake();
                }
                return Err(PushError::Full);
            }
            state.bytes += len as u32;
            state.urgent |= urgent;
            state.queue.push_back(item);
            // The writer drains the whole queue per wake-up, so only the first item needs a
            // wake; while it holds its output, only a reply does.
            if urgent || (state.queue.len() == 1 && !state.holding) {
                state.waker.take()
            } else {
                None
            }
        };
        if let Some(waker) = wake {
            waker.wake();
        }
        Ok(())
    }

    /// Asks the connection to close with `code` and `reason` after what is already queued.
    /// Returns false if it was already closing.
    pub fn close(&self, code: CloseCode, reason: &str) -> bool {
        let wake = {
            let mut state = self.lock();
            if state.closed || state.close.is_some() {
                return false;
            }
            state.close = Some(Box::new(CloseRequest {
                code,
                reason: reason.to_owned(),
                discard_queued: false,
            }));
            state.waker.take()
        };
        if let Some(waker) = wake {
            waker.wake();
        }
        true
    }

    /// Wakes the connection's task, from any task, so that [`WebSocket::recv`] returns
    /// [`Incoming::Wake`] once what is queued was written: for the application to look at
    /// state other tasks changed (a new expiry set through an API, say) without a timer or a
    /// channel per connection. Wake-ups not yet delivered merge into one.
    ///
    /// [`WebSocket::recv`]: crate::WebSocket::recv
    /// [`Incoming::Wake`]: crate::Incoming::Wake
    pub fn notify(&self) {
        let wake = {
            let mut state = self.lock();
            if state.closed {
                return;
            }
            state.notified = true;
            state.waker.take()
        };
        if let Some(waker) = wake {
            waker.wake();
        }
    }

    /// Whether the connection is closing or closed (pushes are refused).
    pub fn is_closed(&self) -> bool {
        let state = self.lock();
        state.closed || state.close.is_some()
    }

    /// Whether anything is queued or a close was requested.
    pub fn has_pending(&self) -> bool {
        let state = self.lock();
        !state.queue.is_empty() || state.close.is_some()
    }

    /// What is waiting, for write coalescing: a frame for this connection only
    /// ([`Outbox::push_frame`]) or a close request must not be held.
    pub(crate) fn waiting(&self) -> Waiting {
        let state = self.lock();
        if state.urgent || state.close.is_some() || state.notified {
            Waiting::Urgent
        } else if state.queue.is_empty() {
            Waiting::Nothing
        } else {
            Waiting::Output
        }
    }

    /// Bytes queued and not yet written (in this outbox, and taken by the connection's writer
    /// but not yet written to the socket).
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes as usize
    }

    /// Whether so much output waits that the connection should stop taking input: at half the
    /// budget, or at [`BACKLOG_BYTES`] if that is less. A client that sends commands (or pings)
    /// without reading their answers is then read no further until its output moves, so what
    /// it costs the server stays bounded by the budget instead of growing with what it sends.
    pub(crate) fn backlogged(&self) -> bool {
        let state = self.lock();
        state.bytes >= (self.budget.max_bytes / 2).min(BACKLOG_BYTES)
    }

    /// Whether output or a close request is waiting; if not, the task of `cx` is woken when
    /// there is.
    pub fn poll_pending(&self, cx: &Context<'_>) -> bool {
        let mut state = self.lock();
        state.holding = false;
        if !state.queue.is_empty() || state.close.is_some() || state.notified {
            return true;
        }
        state.wake_later(cx);
        false
    }

    /// While the connection holds its output: whether a reply or a close request is waiting;
    /// if not, the task of `cx` is woken when one is (queued publications do not wake it).
    pub(crate) fn poll_urgent(&self, cx: &Context<'_>) -> bool {
        let mut state = self.lock();
        state.holding = true;
        if state.urgent || state.close.is_some() || state.notified {
            return true;
        }
        state.wake_later(cx);
        false
    }

    /// Moves everything queued to the end of `into` and returns a pending close request (for
    /// tests and tools that look at what a connection was sent). What is taken leaves the
    /// connection, so its bytes leave the budget.
    pub fn drain_into(&self, into: &mut VecDeque<Outgoing>) -> Option<CloseRequest> {
        let mut taken = Queue::default();
        let mut state = self.lock();
        let close = take_queued(&mut state, &mut taken);
        state.bytes = 0;
        drop(state);
        into.extend(taken.into_items());
        close
    }

    /// [`Outbox::drain_into`] for the connection itself, which also takes a pending
    /// [`Outbox::notify`] (returned as the second value): one lock for both. When `into` is
    /// empty the two queues are swapped ([`Queue::append`]), so a writer that keeps its
    /// buffer allocates nothing in steady state.
    ///
    /// Unlike [`Outbox::drain_into`], what the writer takes stays counted against the budget
    /// until it is written: `settle` is what the writer wrote (or dropped) since its last
    /// drain, given back to the budget, less what it queued on its own (its pongs), charged to
    /// it. Settling here, under the lock the drain takes anyway, costs the write path nothing.
    pub fn drain_for_writer(&self, into: &mut Queue, settle: i32) -> (Option<CloseRequest>, bool) {
        let mut state = self.lock();
        let max = i64::from(self.budget.max_bytes);
        // Clamped: a pong charged to a full budget may pass it (it is a few bytes, and the
        // writer pauses its reading long before), and the count must stay in 32 bits.
        state.bytes = (i64::from(state.bytes) - i64::from(settle)).clamp(0, max) as u32;
        let notified = std::mem::take(&mut state.notified);
        let close = take_queued(&mut state, into);
        (close, notified)
    }

    /// Marks the outbox closed and drops whatever is queued.
    pub(crate) fn shut(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.queue.release();
        state.bytes = 0;
        state.notified = false;
        state.waker = None;
    }
}

/// Moves what `state` has queued to the end of `into` (see [`Outbox::drain_into`]) and takes
/// its close request, if any.
fn take_queued(state: &mut State, into: &mut Queue) -> Option<CloseRequest> {
    if state.close.as_ref().is_some_and(|c| c.discard_queued) {
        state.queue.clear();
    } else {
        into.append(&mut state.queue);
    }
    state.urgent = false;
    state.close.take().map(|close| {
        state.closed = true;
        *close
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_budget_closes_with_the_overflow_code() {
        let outbox = Outbox::new(100, CloseCode(3008), "slow");
        let msg = Arc::new(Message::text(&"x".repeat(40)));
        outbox.push(msg.clone()).unwrap();
        outbox.push(msg.clone()).unwrap();
        assert_eq!(outbox.push(msg.clone()), Err(PushError::Full));
        assert_eq!(outbox.push(msg), Err(PushError::Closed));
        let mut drained = VecDeque::new();
        let close = outbox.drain_into(&mut drained).unwrap();
        assert_eq!(close.code, CloseCode(3008));
        // The backlog is dropped so the close frame goes out at once.
        assert!(close.discard_queued);
        assert!(drained.is_empty());
        assert!(outbox.is_closed());
    }

    /// Every connection holds an `Outbox` for its whole life, idle or not: each byte here is
    /// paid once per connection (×15,000 on a loaded server), so growth must be deliberate.
    /// 56 bytes and the `Arc`'s two counts make 72, which the allocator's 80-byte class holds;
    /// eight more would take the 96-byte one.
    #[test]
    fn outbox_stays_small() {
        assert!(
            std::mem::size_of::<Outbox>() <= 56,
            "Outbox is {} bytes",
            std::mem::size_of::<Outbox>()
        );
    }

    fn texts(queue: &Queue) -> Vec<String> {
        queue
            .iter()
            .map(|item| match item {
                Outgoing::Shared(m) => String::from_utf8_lossy(&m.frame().as_bytes()[2..]).into(),
                Outgoing::Frame(f) => String::from_utf8_lossy(&f.as_bytes()[2..]).into(),
            })
            .collect()
    }

    fn text(s: &str) -> Outgoing {
        Outgoing::Shared(Arc::new(Message::text(s)))
    }

    /// A queue nobody used takes its pointer and nothing else; one that was used keeps its
    /// buffer until released.
    #[test]
    fn a_queue_is_one_pointer_until_used() {
        assert_eq!(std::mem::size_of::<Queue>(), 8);
        let mut queue = Queue::default();
        assert!(!queue.is_allocated() && queue.is_empty());
        queue.push_back(text("a"));
        queue.clear();
        assert!(queue.is_allocated() && queue.is_empty());
        queue.release();
        assert!(!queue.is_allocated());
    }

    /// Appending to an empty queue swaps the two whole (the other keeps the empty buffer);
    /// appending to a non-empty one moves the items behind what is there, in order.
    #[test]
    fn appending_keeps_the_order_and_swaps_buffers_when_empty() {
        let mut writer = Queue::default();
        let mut outbox = Queue::default();
        outbox.push_back(text("1"));
        outbox.push_back(text("2"));
        writer.append(&mut outbox);
        assert_eq!(texts(&writer), ["1", "2"]);
        assert!(outbox.is_empty());
        outbox.push_back(text("3"));
        writer.append(&mut outbox);
        assert_eq!(texts(&writer), ["1", "2", "3"]);
        assert!(outbox.is_empty() && outbox.is_allocated());
        // Written out, the writer's empty buffer goes back to the outbox on the next swap.
        while writer.pop_front().is_some() {}
        outbox.push_back(text("4"));
        writer.append(&mut outbox);
        assert_eq!(texts(&writer), ["4"]);
        assert!(outbox.is_allocated() && outbox.is_empty());
    }

    /// The bytes already written of the front item belong to that item: kept while it stays
    /// in front, gone with it.
    #[test]
    fn the_written_part_of_the_front_item_goes_with_it() {
        let mut queue = Queue::default();
        assert_eq!(queue.front_written(), 0);
        queue.push_back(text("first"));
        queue.push_back(text("second"));
        queue.front_wrote(3);
        queue.front_wrote(1);
        assert_eq!(queue.front_written(), 4);
        queue.truncate(1);
        assert_eq!((queue.len(), queue.front_written()), (1, 4));
        queue.push_back(text("third"));
        queue.pop_front();
        assert_eq!(
            (texts(&queue)[0].as_str(), queue.front_written()),
            ("third", 0)
        );
        queue.front_wrote(2);
        queue.truncate(0);
        assert_eq!(queue.front_written(), 0);
    }

    /// A budget computed in `usize` (from a configuration, say) may exceed the 32-bit count:
    /// it must mean "no practical limit", not wrap to a small one.
    #[test]
    fn budgets_over_32_bits_are_clamped() {
        let outbox = Outbox::new(usize::MAX, CloseCode(3008), "slow");
        let msg = Arc::new(Message::text(&"x".repeat(60)));
        outbox.push(msg.clone()).unwrap();
        outbox.push(msg).unwrap();
        assert_eq!(outbox.queued_bytes(), 2 * 62);
    }

    /// What the connection's writer took and has not written yet still counts: otherwise a
    /// peer that never reads would get a fresh budget at every drain while the writer's queue
    /// grew without limit. Written bytes come back through the next drain's settlement.
    #[test]
    fn what_the_writer_has_not_written_stays_counted() {
        let outbox = Outbox::new(100, CloseCode(3008), "slow");
        let msg = Arc::new(Message::text(&"x".repeat(40)));
        let mut writer = Queue::default();
        outbox.push(msg.clone()).unwrap();
        outbox.drain_for_writer(&mut writer, 0);
        assert_eq!(outbox.queued_bytes(), 42);
        outbox.push(msg.clone()).unwrap();
        outbox.drain_for_writer(&mut writer, 0);
        assert_eq!(outbox.push(msg.clone()), Err(PushError::Full));

        let outbox = Outbox::new(100, CloseCode(3008), "slow");
        outbox.push(msg.clone()).unwrap();
        outbox.drain_for_writer(&mut writer, 0);
        // The writer wrote the 42 bytes: settled at the next drain, the room is back.
        outbox.drain_for_writer(&mut writer, 42);
        assert_eq!(outbox.queued_bytes(), 0);
        // A pong the writer queued itself is charged (a negative settlement).
        outbox.drain_for_writer(&mut writer, -2);
        assert_eq!(outbox.queued_bytes(), 2);
        outbox.push(msg.clone()).unwrap();
        outbox.push(msg.clone()).unwrap();
        assert_eq!(outbox.queued_bytes(), 86);
    }

    /// Input is paused at half the budget, or at `BACKLOG_BYTES` when that is less.
    #[test]
    fn backlogged_at_half_the_budget_or_the_backlog_limit() {
        let outbox = Outbox::new(1000, CloseCode(3008), "slow");
        let msg = Arc::new(Message::text(&"x".repeat(98)));
        for _ in 0..4 {
            outbox.push(msg.clone()).unwrap();
        }
        assert!(!outbox.backlogged(), "400 of 1000 bytes");
        outbox.push(msg.clone()).unwrap();
        assert!(outbox.backlogged(), "500 of 1000 bytes");

        let outbox = Outbox::new(1 << 20, CloseCode(3008), "slow");
        let msg = Arc::new(Message::text(&"x".repeat(1020)));
        for _ in 0..63 {
            outbox.push(msg.clone()).unwrap();
        }
        assert!(!outbox.backlogged(), "63 KiB");
        outbox.push(msg.clone()).unwrap();
        assert!(outbox.backlogged(), "64 KiB of a 1 MiB budget");
    }

    #[test]
    fn draining_resets_the_budget() {
        let outbox = Outbox::new(100, CloseCode(3008), "slow");
        let msg = Arc::new(Message::text(&"x".repeat(60)));
        let mut drained = VecDeque::new();
        for _ in 0..10 {
            outbox.push(msg.clone()).unwrap();
            assert!(outbox.drain_into(&mut drained).is_none());
            drained.clear();
        }
    }
}
