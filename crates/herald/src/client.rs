//! One connected client: the Centrifugo client protocol's state machine on a transport —
//! connect, command dispatch, subscriptions, pongs and the timers that close a client that is
//! stale or expired.
//!
//! Each client runs in its own task. Replies to the commands of one frame are batched,
//! newline-separated, into one frame; publications reach the client through its outbox,
//! pushed there by the hub from whatever task published. Server pings come from the node's
//! [`PingWheel`](crate::keepalive::PingWheel), and the node's
//! [`AlarmClock`](crate::alarm::AlarmClock) wakes the client at its own deadlines, so an idle
//! connected client holds no timer.

use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::time::Instant;

use crate::auth::SubscribeOptions;
use crate::config::NamespaceOptions;
use crate::engine::StreamPosition;
use crate::hub::{ClientHandle, Selection, SubFlags};
use crate::node::{HistoryQuery, LiveConnection, Positioning, PublishOptions, ReplyRoom, unix_now};
use crate::policy::{ConnectContext, Credentials, Refusal, SubscribeGrant};
use crate::protocol::{
    self, Command, ConnectRequest, ConnectResult, Disconnect, Encoding, Error, HistoryRequest,
    HistoryResult, Method, Payload, PublishRequest, PublishResult, Push, RefreshRequest,
    RefreshResult, Reply, ReplyResult, RpcRequest, RpcResult, SubRefreshRequest, SubRefreshResult,
    SubscribeRequest, SubscribeResult, Unsubscribe, UnsubscribeRequest, UnsubscribeResult,
};
use crate::tags_filter;
use crate::transport::{Failure, Inbound, Transport};
use crate::ws::{FrameBuf, PackedInstant};

/// The server version reported in connect replies.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where a client is in the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting for `connect`.
    Connecting,
    /// `connect` failed with an error reply; the next frame closes the connection.
    Failed,
    Connected,
    /// A close was started; nothing more is processed.
    Closing,
}

/// What ends the processing of a frame early: close the connection with this code.
type Close = Disconnect;

/// A client connection's protocol state.
struct Client {
    /// The node, through the guard that counts this connection as live until the client is
    /// dropped (one pointer for the two).
    node: LiveConnection,
    state: State,
    /// Whether an alarm is pending on the node's clock for a time at or before
    /// [`Client::next_deadline`], so that none needs setting (see [`Client::set_alarm`]).
    /// Cleared when the earliest deadline may have moved earlier, and on every wake-up.
    alarm_set: bool,
    /// Set once connected; it also holds the user id.
    handle: Option<Arc<ClientHandle>>,
    /// What a client holds only for a while or only in rare cases (see [`Aside`]); allocated
    /// while some of it is there, `None` (the usual idle state) otherwise.
    aside: Option<Box<Aside>>,
    /// Until connected, when the connection is closed as stale; once connected, when it
    /// expires unless refreshed (with the close delay added). One field for the two: they
    /// never apply together, and every byte here is paid by every idle connection.
    deadline: PackedInstant,
    /// The encoding the client speaks, its transport's ([`Transport::protocol`]): how its
    /// commands are read and its replies written.
    encoding: Encoding,
}

/// What a client holds only for a while or only in rare cases: the replies being gathered
/// for the frame in process, and the subscriptions made with an expiring token. Boxed
/// together, and only while either is there: every byte of [`Client`] is paid by every idle
/// connection, and one pointer for the two is 8 bytes where two would be 16 (the box is
/// allocated per frame with replies, as the replies' own box was before, and kept between
/// frames only by a client with expiring subscriptions).
#[derive(Default)]
struct Aside {
    /// Replies to the frame being processed, sent as one frame when it is done; `None`
    /// between frames.
    replies: Option<FrameBuf>,
    /// Subscriptions whose token expires, and when (a short list: only channels subscribed
    /// with an expiring subscription token).
    sub_expiry: Vec<(String, Instant)>,
}

impl Aside {
    /// Whether nothing is held, so the box can go.
    fn is_empty(&self) -> bool {
        self.replies.is_none() && self.sub_expiry.is_empty()
    }
}

/// Serves one connection, over `transport`, until it ends; `live` counts it among the live
/// connections until then. Generic rather than over a `dyn Transport`: each transport gets
/// its own serve loop, with no indirect call on the hot path and nothing boxed per
/// connection.
///
/// Not an `async fn`: the future of one keeps its arguments twice (as arguments, and as the
/// locals they are moved into on the first poll), which for the WebSocket is half a KiB more
/// per connection. The state is made here and the `async` block uses it in place.
pub fn serve<T: Transport>(
    live: LiveConnection,
    mut transport: T,
) -> impl Future<Output = ()> + Send + 'static {
    live.metrics().connection_opened();
    let stale = live.config().client.stale_close_delay;
    let mut client = Client {
        state: State::Connecting,
        alarm_set: false,
        handle: None,
        aside: None,
        deadline: (Instant::now() + stale).into(),
        node: live,
        encoding: transport.protocol(),
    };
    async move {
        loop {
            client.set_alarm(&transport);
            // Shutdown reaches a connected client through the hub (`Server::run` closes every
            // client there), and one not in the hub (yet) through its alarm, which the node's
            // alarm clock rings for everyone when shutdown starts (the wake-up checks it, see
            // `on_timer`): no client keeps a cancellation future of its own. A client not yet
            // connected also checks here, after its alarm is set, so that a shutdown whose
            // ringing came before the alarm was set is seen. Only then: the check takes the
            // token's lock, which every connection shares.
            if matches!(client.state, State::Connecting | State::Failed)
                && client.node.shutdown().is_cancelled()
            {
                client.close(&transport, Disconnect::SHUTDOWN);
            }
            // `poll_recv` in place rather than `recv()`: this future is kept by every idle
            // connection, and a nested state machine would widen it. Only the frame is kept
            // across the await below, not the whole result: matched as a temporary, whose
            // room ends with this statement.
            let data = match std::future::poll_fn(|cx| transport.poll_recv(cx)).await {
                Ok(Some(Inbound::Commands(data))) => Received::Commands(data),
                Ok(Some(Inbound::Connect(request))) => Received::Connect(request),
                Ok(Some(Inbound::Wake)) => {
                    if let Some(close) = client.on_timer(&transport) {
                        client.close(&transport, close);
                    }
                    continue;
                }
                Ok(None) => break,
                Err(Failure::TooBig { reason }) => {
                    // The one close a well-behaved client still meets (a message it built
                    // too large): said at info, so that whoever runs the server sees it.
                    let (option, limit) = transport.message_size_limit(client.node.config());
                    tracing::info!(
                        client = %client.id(),
                        "{reason}: the client sent a message over {option} ({limit} bytes); \
                         raise that option if such messages are legitimate",
                    );
                    break;
                }
                Err(e) => {
                    tracing::debug!(client = %client.id(), "connection ended: {e}");
                    if matches!(e, Failure::WriteTimeout) {
                        // It stopped reading what it was sent: a slow consumer, dropped by
                        // its write timeout rather than by its queue's budget.
                        client.node.metrics().slow_consumers(1);
                    }
                    break;
                }
            };
            if client.state != State::Closing {
                // Boxed: the command futures (connect, subscribe with recovery…) are several
                // KiB, and kept inline they would make every idle connection's task that
                // large. One allocation per received frame instead, which the frame moves
                // into too.
                // One boxed future for either: two awaits here would each take room in
                // this future.
                if let Err(close) = Box::pin(client.on_received(data, &transport)).await {
                    client.close(&transport, close);
                }
            }
        }
        // Boxed, like the command futures: inline, the leave futures would widen this future
        // (they share its room with the serve loop's) by a few hundred bytes, for every
        // connection, for the one moment it ends. Only the box is kept across the await.
        let mut leave = client.handle.take().map(|handle| {
            let node = Arc::clone(&client.node);
            Box::pin(async move {
                for (channel, flags) in node.hub().remove_client(&handle) {
                    node.left(&channel, &handle, flags).await;
                }
            })
        });
        // Moved whole into what is awaited, not matched: a binding moved out of `leave` would
        // keep the room of both.
        std::future::poll_fn(move |cx| {
            leave
                .as_mut()
                .map_or(Poll::Ready(()), |f| f.as_mut().poll(cx))
        })
        .await;
        client
            .node
            .metrics()
            .connection_closed(transport.ended_with());
    }
}

/// What the serve loop got from its transport to process: commands, or the connect request
/// of a unidirectional transport (what is kept across the processing's await, so only this
/// and not the whole [`Inbound`] result).
enum Received {
    Commands(Bytes),
    Connect(Box<ConnectRequest>),
}

/// The disconnect that tells a unidirectional client why its connect was refused: it reads no
/// replies, so the connect error becomes the code of its `disconnect` push (whether to
/// reconnect included).
fn unidirectional_refusal(error: &Error) -> Disconnect {
    match error.code {
        c if c == Error::UNAUTHORIZED.code => Disconnect::INVALID_TOKEN,
        c if c == Error::TOKEN_EXPIRED.code => Disconnect::EXPIRED,
        c if c == Error::PERMISSION_DENIED.code => Disconnect::PERMISSION_DENIED,
        c if c == Error::LIMIT_EXCEEDED.code => Disconnect::CONNECTION_LIMIT,
        c if c == Error::BAD_REQUEST.code || c == Error::UNKNOWN_CHANNEL.code => {
            Disconnect::BAD_REQUEST
        }
        _ => Disconnect::INTERNAL,
    }
}

impl Client {
    /// The connection id, for logs and replies; empty before connect. Something to
    /// display, not a `&str`: the id is kept as a UUID (see [`crate::client_id::ClientId`]).
    fn id(&self) -> &dyn std::fmt::Display {
        match self.handle.as_deref() {
            Some(handle) => &handle.id,
            None => &"",
        }
    }

    /// The earliest timer, if any.
    fn next_deadline(&self) -> Option<Instant> {
        [self.deadline.get()]
            .into_iter()
            .flatten()
            .chain(self.sub_expiries().iter().map(|(_, at)| *at))
            .min()
    }

    /// Makes sure the node's alarm clock wakes this task (with [`Inbound::Wake`]) at its
    /// next deadline, unless an alarm is pending already ([`Client::alarm_set`]): one for
    /// that time or an earlier one is enough, since the wake-up it brings sets the next
    /// one. Only a flag is kept, not the alarm's time, so the flag is cleared wherever the
    /// earliest deadline may move earlier ([`Client::deadline_ahead`]) and on every wake-up
    /// (an alarm rang, or the server API asked; which of the two cannot be told apart). A
    /// deadline moved later keeps the earlier alarm, whose wake-up sets one for the later
    /// time.
    fn set_alarm(&mut self, transport: &impl Transport) {
        if self.alarm_set {
            return;
        }
        if let Some(next) = self.next_deadline() {
            self.node.alarms().set(next, transport.outbox());
            self.alarm_set = true;
        }
    }

    /// Notes that a deadline at `at` is about to be set: if it is earlier than every one so
    /// far, the pending alarm (if any) may come too late, and the next
    /// [`Client::set_alarm`] must set one.
    fn deadline_ahead(&mut self, at: Instant) {
        if self.next_deadline().is_none_or(|next| at < next) {
            self.alarm_set = false;
        }
    }

    /// Acts on timers that are due, on an expiry set through the server API, and on a
    /// shutdown (the alarm clock rings every client when one starts). Called on every
    /// wake-up.
    fn on_timer(&mut self, transport: &impl Transport) -> Option<Close> {
        // This wake-up may be the pending alarm's: from here on none is counted on, and the
        // next `set_alarm` sets one for the next deadline.
        self.alarm_set = false;
        let now = Instant::now();
        self.apply_api_refresh();
        if self.node.shutdown().is_cancelled() {
            return Some(Disconnect::SHUTDOWN);
        }
        if self.deadline.get().is_some_and(|t| t <= now) {
            return Some(if self.state == State::Connected {
                Disconnect::EXPIRED
            } else {
                Disconnect::STALE
            });
        }
        if self.sub_expiries().iter().any(|(_, at)| *at <= now) {
            self.expire_subscriptions(now, transport);
        }
        None
    }

    /// Takes a new expiry set through the server API's `refresh`, if any.
    fn apply_api_refresh(&mut self) {
        let Some(expiry) = self.handle.as_ref().and_then(|h| h.take_expiry()) else {
            return;
        };
        self.set_expiry(expiry);
    }

    /// Sets when the connection expires (unix seconds; `None`: never): it is closed
    /// `client.expired_close_delay` after that, unless refreshed.
    fn set_expiry(&mut self, at: Option<u64>) {
        let delay = self.node.config().client.expired_close_delay;
        let deadline = PackedInstant::from(at.map(|at| instant_of(at) + delay));
        if let Some(at) = deadline.get() {
            self.deadline_ahead(at);
        }
        self.deadline = deadline;
    }

    /// Starts closing the connection with a protocol disconnect code.
    fn close(&mut self, transport: &impl Transport, close: Close) {
        if self.state == State::Closing {
            return;
        }
        self.state = State::Closing;
        // No deadline is left, so no alarm is counted on either.
        self.deadline = PackedInstant::NONE;
        self.alarm_set = false;
        if let Some(aside) = &mut self.aside {
            aside.sub_expiry = Vec::new();
        }
        self.drop_aside_if_empty();
        transport.close(&close);
    }

    /// Processes one frame of newline-separated commands and sends the replies as one frame.
    async fn on_frame(&mut self, data: Bytes, transport: &impl Transport) -> Result<(), Close> {
        if self.state == State::Failed {
            return Err(Disconnect::BAD_REQUEST);
        }
        let mut count = 0;
        let mut result = Ok(());
        for command in self.encoding.decode_commands(&data) {
            count += 1;
            let Ok(command) = command else {
                tracing::debug!("bad request: a command that does not decode");
                result = Err(Disconnect::BAD_REQUEST);
                break;
            };
            if let Err(close) = self.dispatch(command, transport).await {
                result = Err(close);
                break;
            }
        }
        self.node.metrics().commands_in(count);
        self.flush_replies(transport);
        result
    }

    /// Processes what the transport handed over: commands, or a unidirectional connect.
    async fn on_received(
        &mut self,
        data: Received,
        transport: &impl Transport,
    ) -> Result<(), Close> {
        match data {
            Received::Commands(data) => self.on_frame(data, transport).await,
            Received::Connect(request) => self.on_unidirectional_connect(*request, transport).await,
        }
    }

    /// Processes the connect request of a unidirectional transport: answered with a connect
    /// push (then its server-side subscriptions' pushes), or refused with a disconnect.
    async fn on_unidirectional_connect(
        &mut self,
        request: ConnectRequest,
        transport: &impl Transport,
    ) -> Result<(), Close> {
        let started = std::time::Instant::now();
        let result = self.connect(0, request, transport).await;
        if let Err(close) = &result {
            // Refused with a disconnect rather than an error (a connection limit): told as
            // such. (A refusal with an error was told with the error's code.)
            transport.connect_refused(close.code.into(), &close.reason);
        }
        self.node.metrics().commands_in(1);
        self.node
            .metrics()
            .command(Method::Connect.as_str(), started.elapsed());
        self.flush_replies(transport);
        result
    }

    /// Refuses a connect with `error`: a reply to a bidirectional client (whose connection
    /// stays open, failed), the matching disconnect for a unidirectional one.
    fn refuse_connect(
        &mut self,
        id: u32,
        error: Error,
        transport: &impl Transport,
    ) -> Result<(), Close> {
        self.state = State::Failed;
        if transport.unidirectional() {
            transport.connect_refused(error.code, &error.message);
            let transforms = &self
                .node
                .config()
                .client
                .connect_code_to_unidirectional_disconnect;
            return Err(match transforms.disconnect_for(error.code) {
                Some(to) => Disconnect::custom(to.code, to.reason.clone()),
                None => unidirectional_refusal(&error),
            });
        }
        self.reply(&Reply::error(id, error));
        Ok(())
    }

    /// Drops the [`Aside`] box once it holds nothing.
    fn drop_aside_if_empty(&mut self) {
        if self.aside.as_deref().is_some_and(Aside::is_empty) {
            self.aside = None;
        }
    }

    /// Sends the replies gathered so far as one frame.
    fn flush_replies(&mut self, transport: &impl Transport) {
        let Some(replies) = self.aside.as_mut().and_then(|aside| aside.replies.take()) else {
            return;
        };
        self.drop_aside_if_empty();
        // A closed queue means the connection is going away; its replies do not matter. A full
        // one closes the connection as a slow consumer (3008).
        if let Err(crate::ws::PushError::Full) = transport.send_replies(replies) {
            self.node.metrics().slow_consumers(1);
        }
    }

    /// How many bytes of stored publications the replies still to be gathered for this frame
    /// may carry (see [`ReplyRoom`]).
    fn reply_room(&self, transport: &impl Transport) -> ReplyRoom {
        let gathered = self
            .aside
            .as_ref()
            .and_then(|aside| aside.replies.as_ref())
            .map_or(0, FrameBuf::payload_len);
        self.node
            .reply_room(transport.outbox().queued_bytes() + gathered)
    }

    fn reply(&mut self, reply: &Reply) {
        let encoding = self.encoding;
        let replies = self
            .aside
            .get_or_insert_with(Box::default)
            .replies
            .get_or_insert_with(FrameBuf::new);
        let before = replies.payload_len();
        let first = before == 0;
        if let Err(e) = encoding.append_reply(reply, first, replies) {
            // What was written of it goes (a half-written JSON message would break the whole
            // frame), and the command is answered with an internal error instead. The way to
            // get here: a payload that is not JSON (binary data from a Protobuf client) in a
            // reply to a JSON client, e.g. its history.
            replies.truncate_payload(replies.payload_len().saturating_sub(before));
            let fallback = Reply::error(reply.id, Error::INTERNAL);
            if reply.id != 0 && encoding.append_reply(&fallback, first, replies).is_err() {
                replies.truncate_payload(replies.payload_len().saturating_sub(before));
            }
            tracing::warn!(client = %self.id(), "could not encode a reply: {e}");
        }
    }

    fn reply_result(&mut self, id: u32, result: Result<impl ReplyResult, Error>) {
        let reply = match result {
            Ok(result) => Reply::result(id, result),
            Err(error) => Reply::error(id, error),
        };
        self.reply(&reply);
    }

    /// Applies the dispatch rules of the protocol (protocol.md §2) to one command.
    async fn dispatch(
        &mut self,
        command: Command,
        transport: &impl Transport,
    ) -> Result<(), Close> {
        let started = std::time::Instant::now();
        let method = command.method();
        if self.state == State::Connecting && method != Method::Connect {
            return Err(Disconnect::BAD_REQUEST);
        }
        if command.id == 0 {
            return match method {
                Method::Send => Err(Disconnect::NOT_AVAILABLE),
                _ if self.handle.as_ref().is_some_and(|h| h.pong_received()) => Ok(()),
                _ => {
                    tracing::debug!(
                        ?method,
                        "bad request: a command without an id that is not the pong of a ping"
                    );
                    Err(Disconnect::BAD_REQUEST)
                }
            };
        }
        let id = command.id;
        match method {
            Method::Connect => {
                let request = command.connect.unwrap_or_default();
                self.connect(id, request, transport).await?;
            }
            Method::Subscribe => {
                let request = command.subscribe.unwrap_or_default();
                self.subscribe(id, request, transport).await?;
            }
            Method::Unsubscribe => {
                let request = command.unsubscribe.unwrap_or_default();
                let result = self.unsubscribe(request).await?;
                self.reply_result(id, Ok(result));
            }
            Method::Publish => {
                let request = command.publish.unwrap_or_default();
                let result = self.publish(request).await?;
                self.reply_result(id, result);
            }
            Method::Refresh => {
                let request = command.refresh.unwrap_or_default();
                let result = self.refresh(request).await?;
                self.reply_result(id, result);
            }
            Method::History => {
                let request = command.history.unwrap_or_default();
                let room = self.reply_room(transport);
                let result = self.history(request, room).await?;
                self.reply_result(id, result);
            }
            Method::Presence => {
                let channel = command.presence.unwrap_or_default().channel;
                match self.check_presence(&channel)? {
                    Ok(()) => {
                        let result = self.node.channel_presence(&channel).await;
                        self.reply_result(id, result);
                    }
                    Err(error) => self.reply(&Reply::error(id, error)),
                }
            }
            Method::PresenceStats => {
                let channel = command.presence_stats.unwrap_or_default().channel;
                match self.check_presence(&channel)? {
                    Ok(()) => {
                        let result = self.node.channel_presence_stats(&channel).await;
                        self.reply_result(id, result);
                    }
                    Err(error) => self.reply(&Reply::error(id, error)),
                }
            }
            Method::SubRefresh => {
                let request = command.sub_refresh.unwrap_or_default();
                let result = self.sub_refresh(request).await?;
                self.reply_result(id, result);
            }
            Method::Rpc => {
                let request = command.rpc.unwrap_or_default();
                let result = self.rpc(request).await?;
                self.reply_result(id, result);
            }
            Method::Ping => {
                self.reply(&Reply::error(id, Error::NOT_AVAILABLE));
            }
            Method::Send => return Err(Disconnect::NOT_AVAILABLE),
            Method::None => return Err(Disconnect::BAD_REQUEST),
        }
        self.node
            .metrics()
            .command(method.as_str(), started.elapsed());
        Ok(())
    }

    async fn connect(
        &mut self,
        id: u32,
        request: ConnectRequest,
        transport: &impl Transport,
    ) -> Result<(), Close> {
        if self.state != State::Connecting {
            return Err(Disconnect::BAD_REQUEST);
        }
        let node = self.node.clone();
        let config = &node.config().client;
        let context = ConnectContext {
            transport: transport.name(),
            encoding: self.encoding,
            outbox: transport.outbox(),
        };
        let credentials = match node.policy().connect(&node, &request, context).await {
            Ok(credentials) => credentials,
            Err(Refusal::Error(error)) => return self.refuse_connect(id, error, transport),
            Err(Refusal::Disconnect(close)) => return Err(close),
        };
        let Credentials {
            user,
            expires_at,
            info: conn_info,
            subscriptions: mut channels,
            data,
        } = credentials;
        if config.user_connection_limit > 0
            && !user.is_empty()
            && node.hub().user_clients(&user).len() >= config.user_connection_limit
        {
            return Err(Disconnect::CONNECTION_LIMIT);
        }
        // The user's personal channel, when configured, is one more server-side subscription.
        let personal = &config.subscribe_to_user_personal_channel;
        if personal.enabled && !user.is_empty() {
            let channel = crate::channel::personal_channel(
                &personal.personal_channel_namespace,
                &user,
                node.config().channel.naming(),
            );
            if !channels.iter().any(|(c, _)| *c == channel) {
                channels.push((channel, SubscribeOptions::default()));
            }
        }
        // Server-side subscriptions must all be valid channels.
        for (channel, _) in &channels {
            if let Err(error) = node.resolve_channel(channel) {
                return self.refuse_connect(id, error, transport);
            }
        }

        let handle = Arc::new(
            ClientHandle::new(
                uuid::Uuid::new_v4().into(),
                user,
                conn_info,
                transport.outbox().clone(),
            )
            .with_encoding(self.encoding)
            .with_disconnect_push(transport.disconnect_push()),
        );
        node.hub().add_client(handle.clone());
        let mut result = ConnectResult {
            client: handle.id.to_string(),
            // Centrifugo gives one to connections of its HTTP-streaming, SSE and emulation
            // transports; Herald to every connection, so that the server API can target a
            // connection by it (`session`) on any transport.
            session: node.hub().session_of(&handle),
            version: VERSION.to_owned(),
            node: node.id().to_owned(),
            data,
            ..ConnectResult::default()
        };
        transport.connected(&result.session);
        // A connection the server refreshes (a refresh proxy) is not told that it expires: the
        // refresher asks the policy when it does, and the client's own deadline stays unset.
        let server_refresh = node.policy().refreshes_connections();
        if let Some(at) = expires_at.filter(|_| !server_refresh) {
            result.expires = true;
            result.ttl = ttl(at);
        }
        if config.connect_include_server_time {
            result.time = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        }
        // A unidirectional client is pinged (`{}`) but cannot answer: its connect push says the
        // interval, and no pong.
        let unidirectional = transport.unidirectional();
        if config.ping_interval > Duration::ZERO {
            result.ping = config.ping_interval.as_secs().max(1) as u32;
            result.pong = !unidirectional;
        }
        // Server-side subscriptions recover like client ones, from the positions the client
        // sends in `subs`; their publications follow the connect reply. All their recoveries
        // are in that one reply, so they share one room.
        let mut room = self.reply_room(transport);
        let mut joined = Vec::with_capacity(channels.len());
        for (channel, options) in channels {
            let mut sub = request.subs.get(&channel).cloned().unwrap_or_default();
            sub.channel = channel;
            // The client cannot ask for join/leave pushes of a subscription it did not make:
            // they come when the namespace sends them.
            let flags = match node.resolve_channel(&sub.channel) {
                Ok((_, ns)) => SubFlags::new(ns, options.override_.as_ref(), true),
                Err(_) => SubFlags::default(),
            };
            let mut sub_result = SubscribeResult {
                data: options.data.map(Payload::from),
                ..SubscribeResult::default()
            };
            let positioning = match node.resolve_channel(&sub.channel) {
                Ok((_, ns)) => Positioning::for_client(ns, &sub),
                Err(_) => Positioning::default(),
            };
            match node
                .subscribe_client(
                    &handle,
                    &sub.channel,
                    flags,
                    Selection::default(),
                    &positioning,
                    &mut sub_result,
                    &mut room,
                )
                .await
            {
                Ok(after) => {
                    result.subs.insert(sub.channel.clone(), sub_result);
                    let chan_info = options.info.map(Payload::from);
                    joined.push((sub.channel, after, flags, chan_info));
                }
                Err(error) => {
                    node.hub().remove_client(&handle);
                    return self.refuse_connect(id, error, transport);
                }
            }
        }
        self.handle = Some(handle.clone());
        self.state = State::Connected;
        // No longer stale-checked: pinged by the node's wheel instead, and closed when the
        // token expires (or refreshed by the server, see above).
        if server_refresh {
            self.set_expiry(None);
            if let Some(at) = expires_at {
                crate::policy::refresher::watch_connection(&node, &handle, at);
            }
        } else {
            self.set_expiry(expires_at);
        }
        if unidirectional {
            node.pings().add_unanswering(&handle);
        } else {
            node.pings().add(&handle);
        }
        let personal = &config.subscribe_to_user_personal_channel;
        if personal.enabled && personal.single_connection && !handle.user.is_empty() {
            // One connection per user (Centrifugo's single-connection mode): the newest wins,
            // the user's others are closed as over the connection limit, so their SDKs do not
            // reconnect and take the place back.
            for other in node.hub().user_clients(&handle.user) {
                if !Arc::ptr_eq(&other, &handle) {
                    other.disconnect(&Disconnect::CONNECTION_LIMIT);
                }
            }
        }
        if unidirectional {
            self.reply(&Reply::push(Push::connect(result)));
        } else {
            self.reply(&Reply::result(id, result));
        }
        if !joined.is_empty() {
            // Publications of server-side subscriptions must follow the connect reply.
            self.flush_replies(transport);
        }
        for (channel, after, flags, chan_info) in joined {
            let info = subscriber_info(&handle, chan_info);
            node.complete_subscription(&channel, &handle, after, 0, info, flags)
                .await;
        }
        Ok(())
    }

    async fn subscribe(
        &mut self,
        id: u32,
        request: SubscribeRequest,
        transport: &impl Transport,
    ) -> Result<(), Close> {
        if request.channel.is_empty() {
            return Err(Disconnect::BAD_REQUEST);
        }
        let node = self.node.clone();
        let Some(handle) = self.handle.clone() else {
            return Err(Disconnect::BAD_REQUEST);
        };
        if !request.delta.is_empty() && request.delta != "fossil" {
            // As Centrifugo: a delta type no server knows is a broken client.
            tracing::info!(client = %self.id(), delta = %request.delta, "unknown delta type in subscribe");
            return Err(Disconnect::BAD_REQUEST);
        }
        let grant = match self.check_subscribe(&request, &handle).await {
            Ok(grant) => grant,
            Err(Refusal::Error(error)) => {
                self.reply(&Reply::error(id, error));
                return Ok(());
            }
            Err(Refusal::Disconnect(close)) => return Err(close),
        };
        let mut result = SubscribeResult {
            data: grant.data,
            ..SubscribeResult::default()
        };
        // A subscription the server refreshes (a sub-refresh proxy) is not told that it
        // expires: the refresher asks the policy when it does.
        let server_refresh = node
            .policy()
            .refreshes_subscriptions(&node, &request.channel);
        if let Some(at) = grant.expires_at.filter(|_| !server_refresh) {
            result.expires = true;
            result.ttl = ttl(at);
        }
        let channel = request.channel.as_str();
        let (flags, selection, positioning) = match node.resolve_channel(channel) {
            Ok((_, ns)) => {
                let flags = SubFlags::new(ns, grant.override_.as_ref(), request.join_leave);
                match self.selection(&request, ns) {
                    Ok(selection) => (flags, selection, Positioning::for_client(ns, &request)),
                    Err(error) => {
                        self.reply(&Reply::error(id, error));
                        return Ok(());
                    }
                }
            }
            Err(_) => (
                SubFlags::default(),
                Selection::default(),
                Positioning::default(),
            ),
        };
        let mut room = self.reply_room(transport);
        let after = match node
            .subscribe_client(
                &handle,
                channel,
                flags,
                selection,
                &positioning,
                &mut result,
                &mut room,
            )
            .await
        {
            Ok(after) => after,
            Err(error) => {
                self.reply(&Reply::error(id, error));
                return Ok(());
            }
        };
        // A delta subscription can take deltas against the last publication of the reply.
        let base_offset = result.publications.last().map_or(0, |p| p.offset);
        // The reply goes out before any publication of the channel: those that arrived
        // meanwhile were held back and follow it now.
        self.reply(&Reply::result(id, result));
        self.flush_replies(transport);
        if server_refresh {
            if let Some(at) = grant.expires_at {
                crate::policy::refresher::watch_subscription(&node, &handle, channel, at);
            }
        } else {
            self.set_sub_expiry(channel, grant.expires_at);
        }
        let info = subscriber_info(&handle, grant.chan_info);
        node.complete_subscription(channel, &handle, after, base_offset, info, flags)
            .await;
        Ok(())
    }

    /// `history`: a page of the channel's stream (protocol.md §3), cut to the publications
    /// that fit in `room` (a shorter page is legal: the client continues from the last offset
    /// it got, `since` that offset, until it reaches the top the reply names).
    async fn history(
        &mut self,
        request: HistoryRequest,
        mut room: ReplyRoom,
    ) -> Result<Result<HistoryResult, Error>, Close> {
        if request.channel.is_empty() {
            return Err(Disconnect::BAD_REQUEST);
        }
        let node = self.node.clone();
        let Some(handle) = self.handle.as_deref() else {
            return Err(Disconnect::BAD_REQUEST);
        };
        let options = match node.history_namespace(&request.channel) {
            Ok(options) => options,
            Err(error) => return Ok(Err(error)),
        };
        if let Err(error) = node
            .policy()
            .history(&node, handle, &request.channel, options)
        {
            return Ok(Err(error));
        }
        let query = HistoryQuery {
            since: request
                .since
                .map(|p| StreamPosition::new(p.offset, p.epoch)),
            limit: i64::from(request.limit),
            reverse: request.reverse,
        };
        let page = match node.read_history(&request.channel, options, query).await {
            Ok(page) => page,
            Err(error) => return Ok(Err(error)),
        };
        let publications = room.take_prefix(&page.publications);
        if publications.is_empty()
            && let Some(first) = page.publications.first()
        {
            // Not even one fits: this client can never be sent this publication (nor could it
            // be delivered to it live). An error, not an empty page, which would read as the
            // end of the stream.
            tracing::info!(
                client = %self.id(),
                channel = %request.channel,
                offset = first.offset,
                "history: the publication is larger than client.queue_max_size leaves for a \
                 reply; answered 106 (raise client.queue_max_size to read it)"
            );
            return Ok(Err(Error::LIMIT_EXCEEDED));
        }
        Ok(Ok(HistoryResult {
            publications,
            epoch: page.position.epoch,
            offset: page.position.offset,
        }))
    }

    /// Whether the client may subscribe as it asks: the protocol's rules (a valid channel,
    /// a stream subscription, not subscribed yet, within `client.channel_limit`), then the
    /// node's policy, whose grant it returns.
    async fn check_subscribe(
        &self,
        request: &SubscribeRequest,
        handle: &ClientHandle,
    ) -> Result<SubscribeGrant, Refusal> {
        let node = &self.node;
        node.resolve_channel(&request.channel)?;
        if request.kind != 0 {
            // Map and shared-poll subscriptions (Centrifugo's newer subscription types) do
            // not exist in Herald: refused rather than served as a plain stream.
            tracing::debug!(
                client = %self.id(),
                channel = %request.channel,
                kind = request.kind,
                "subscribe: subscription type not available (only streams, type 0)"
            );
            return Err(Refusal::Error(Error::NOT_AVAILABLE));
        }
        if handle.is_subscribed(&request.channel) {
            return Err(Refusal::Error(Error::ALREADY_SUBSCRIBED));
        }
        let limit = node.config().client.channel_limit;
        if limit > 0 && handle.channels().len() >= limit {
            return Err(Refusal::Error(Error::LIMIT_EXCEEDED));
        }
        node.policy()
            .subscribe(node, handle, &request.channel, &request.token)
            .await
    }

    /// The tags filter and deltas a subscribe asks for, as the channel's namespace allows
    /// them: a `tf` where `allow_tags_filter` is off, or a malformed one, is refused with 107
    /// as Centrifugo does; a delta type the namespace does not list in `allowed_delta_types`
    /// is not negotiated (the reply says `delta: false`).
    fn selection(
        &self,
        request: &SubscribeRequest,
        options: &NamespaceOptions,
    ) -> Result<Selection, Error> {
        let tags_filter = match &request.tf {
            None => None,
            Some(_) if !options.allow_tags_filter => {
                tracing::info!(client = %self.id(), channel = %request.channel,
                    "tags filter not allowed (namespace allow_tags_filter is off)");
                return Err(Error::BAD_REQUEST);
            }
            Some(filter) => {
                if let Err(reason) = tags_filter::validate(filter) {
                    tracing::info!(client = %self.id(), channel = %request.channel,
                        "invalid tags filter: {reason}");
                    return Err(Error::BAD_REQUEST);
                }
                Some(Box::new(filter.clone()))
            }
        };
        let delta =
            !request.delta.is_empty() && options.allowed_delta_types.contains(&request.delta);
        Ok(Selection { tags_filter, delta })
    }

    async fn unsubscribe(
        &mut self,
        request: UnsubscribeRequest,
    ) -> Result<UnsubscribeResult, Close> {
        if request.channel.is_empty() {
            return Err(Disconnect::BAD_REQUEST);
        }
        self.set_sub_expiry(&request.channel, None);
        if let Some(handle) = self.handle.clone() {
            self.node
                .unsubscribe_client(&request.channel, &handle)
                .await;
        }
        Ok(UnsubscribeResult::default())
    }

    /// Records when a subscription expires (`None`: never), replacing what was recorded.
    fn set_sub_expiry(&mut self, channel: &str, expires_at: Option<u64>) {
        let at = expires_at.map(instant_of);
        if let Some(at) = at {
            self.deadline_ahead(at);
        }
        if let Some(aside) = &mut self.aside {
            aside.sub_expiry.retain(|(c, _)| c != channel);
        }
        if let Some(at) = at {
            self.aside
                .get_or_insert_with(Box::default)
                .sub_expiry
                .push((channel.to_owned(), at));
        }
        self.drop_aside_if_empty();
    }

    /// The subscriptions whose token expires, and when.
    fn sub_expiries(&self) -> &[(String, Instant)] {
        self.aside
            .as_deref()
            .map_or(&[], |aside| aside.sub_expiry.as_slice())
    }

    /// Ends the subscriptions whose token expired without a `sub_refresh`: each gets an
    /// unsubscribe push 2501, after which the SDK subscribes again with a new token.
    fn expire_subscriptions(&mut self, now: Instant, transport: &impl Transport) {
        let Some(aside) = &mut self.aside else {
            return;
        };
        let (expired, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut aside.sub_expiry)
            .into_iter()
            .partition(|(_, at)| *at <= now);
        aside.sub_expiry = kept;
        self.drop_aside_if_empty();
        let Some(handle) = self.handle.clone() else {
            return;
        };
        for (channel, _) in expired {
            let Some(flags) = self.node.hub().unsubscribe(&channel, &handle) else {
                continue;
            };
            let push = Push::unsubscribe(channel.as_str(), Unsubscribe::EXPIRED);
            self.reply(&Reply::push(push));
            self.flush_replies(transport);
            // Presence and the leave push need the engine; they must not wait for this timer.
            let node = self.node.clone();
            let handle = handle.clone();
            tokio::spawn(async move { node.left(&channel, &handle, flags).await });
        }
    }

    /// `sub_refresh`: a new subscription token for a subscription whose token expires.
    async fn sub_refresh(
        &mut self,
        request: SubRefreshRequest,
    ) -> Result<Result<SubRefreshResult, Error>, Close> {
        if request.channel.is_empty() || request.token.is_empty() {
            return Err(Disconnect::BAD_REQUEST);
        }
        let Some(handle) = self
            .handle
            .clone()
            .filter(|h| h.is_subscribed(&request.channel))
        else {
            return Ok(Err(Error::PERMISSION_DENIED));
        };
        let node = self.node.clone();
        let expires_at = match node
            .policy()
            .sub_refresh(&node, &handle, &request.channel, &request.token)
            .await
        {
            Ok(expires_at) => expires_at,
            Err(Refusal::Error(error)) => return Ok(Err(error)),
            Err(Refusal::Disconnect(close)) => return Err(close),
        };
        self.set_sub_expiry(&request.channel, expires_at);
        let mut result = SubRefreshResult::default();
        if let Some(at) = expires_at {
            result.expires = true;
            result.ttl = ttl(at);
        }
        Ok(Ok(result))
    }

    /// Whether the client may ask for the presence of `channel`: `Err` closes the connection
    /// (no channel), `Ok(Err)` is the error reply (108 presence off, 103 not allowed).
    fn check_presence(&self, channel: &str) -> Result<Result<(), Error>, Close> {
        if channel.is_empty() {
            return Err(Disconnect::BAD_REQUEST);
        }
        let Some(handle) = self.handle.as_deref() else {
            return Err(Disconnect::BAD_REQUEST);
        };
        Ok(self.node.presence_namespace(channel).and_then(|options| {
            self.node
                .policy()
                .presence(&self.node, handle, channel, options)
        }))
    }

    async fn publish(
        &mut self,
        request: PublishRequest,
    ) -> Result<Result<PublishResult, Error>, Close> {
        if request.channel.is_empty() {
            return Err(Disconnect::BAD_REQUEST);
        }
        let Some(data) = request.data else {
            return Ok(Err(Error::BAD_REQUEST));
        };
        let node = self.node.clone();
        let Some(handle) = self.handle.clone() else {
            return Err(Disconnect::BAD_REQUEST);
        };
        if let Err(error) = node.resolve_channel(&request.channel) {
            return Ok(Err(error));
        }
        let grant = match node
            .policy()
            .publish(&node, &handle, &request.channel, &data)
            .await
        {
            Ok(grant) => grant,
            Err(Refusal::Error(error)) => return Ok(Err(error)),
            Err(Refusal::Disconnect(close)) => return Err(close),
        };
        node.metrics().publication("client");
        let published = node
            .publish(
                &request.channel,
                grant.data.unwrap_or(data),
                PublishOptions {
                    info: Some(handle.info()),
                    skip_history: grant.skip_history,
                    idempotency_key: grant.idempotency_key,
                    tags: grant.tags,
                    delta: grant.delta,
                    version: grant.version,
                    version_epoch: grant.version_epoch,
                },
            )
            .await;
        Ok(published.map(|_| PublishResult::default()))
    }

    /// `rpc`: answered by the node's policy (by default 108, not available).
    async fn rpc(&mut self, request: RpcRequest) -> Result<Result<RpcResult, Error>, Close> {
        let node = self.node.clone();
        let Some(handle) = self.handle.clone() else {
            return Err(Disconnect::BAD_REQUEST);
        };
        match node.policy().rpc(&node, &handle, &request).await {
            Ok(result) => Ok(Ok(result)),
            Err(Refusal::Error(error)) => Ok(Err(error)),
            Err(Refusal::Disconnect(close)) => Err(close),
        }
    }

    async fn refresh(
        &mut self,
        request: RefreshRequest,
    ) -> Result<Result<RefreshResult, Error>, Close> {
        if request.token.is_empty() {
            return Err(Disconnect::BAD_REQUEST);
        }
        let node = self.node.clone();
        let Some(handle) = self.handle.clone() else {
            return Err(Disconnect::BAD_REQUEST);
        };
        let expires_at = match node.policy().refresh(&node, &handle, &request.token).await {
            Ok(expires_at) => expires_at,
            Err(Refusal::Error(error)) => return Ok(Err(error)),
            Err(Refusal::Disconnect(close)) => return Err(close),
        };
        let mut result = RefreshResult {
            client: self.id().to_string(),
            version: VERSION.to_owned(),
            ..RefreshResult::default()
        };
        if let Some(at) = expires_at {
            result.expires = true;
            result.ttl = ttl(at);
        }
        self.set_expiry(expires_at);
        Ok(Ok(result))
    }
}

/// Seconds from now until unix time `at` (0 when past), as the protocol's `ttl`.
fn ttl(at: u64) -> u32 {
    u32::try_from(at.saturating_sub(unix_now())).unwrap_or(u32::MAX)
}

/// The instant of unix time `at` (now when past).
fn instant_of(at: u64) -> Instant {
    Instant::now() + Duration::from_secs(at.saturating_sub(unix_now()))
}

/// The subscriber as presence and join/leave pushes show it.
fn subscriber_info(handle: &ClientHandle, chan_info: Option<Payload>) -> protocol::ClientInfo {
    protocol::ClientInfo {
        chan_info,
        ..handle.info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of what `f` returns, without calling it.
    fn size_of_output<A, B, R>(_: impl FnOnce(A, B) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    /// Every connection's task holds the serve future for its whole life, and tokio rounds a
    /// task up to a multiple of 128 bytes: its 32-byte header, the future plus 24 bytes, and
    /// a 48-byte trailer. At 152 bytes or less the task takes 256 bytes; one byte more and
    /// every idle connection pays 128 bytes more (as a `select!`, a named result kept across
    /// an await, or a field of `Client` or `WebSocket` easily does). The future is the
    /// transport (the WebSocket transport is the `WebSocket`: 96 bytes), the `Client` (40) and
    /// 16 bytes of its own (the await point, the state number). tokio's `TcpStream` is 8 bytes
    /// larger in a debug build, where this test usually runs: the budget is the release
    /// layout's, so that extra is taken off.
    #[test]
    fn the_serve_future_keeps_the_task_within_256_bytes() {
        let size = size_of_output(serve::<crate::transport::WebSocketTransport>);
        let debug_extra = std::mem::size_of::<tokio::net::TcpStream>().saturating_sub(32);
        assert!(
            size - debug_extra <= 152,
            "the serve future is {size} bytes ({debug_extra} of them debug-only)"
        );
    }

    /// A stream's task is its only one once the HTTP layer handed its writer over (boxed,
    /// so a pointer here): it stays within the same 256 bytes as a WebSocket's.
    #[test]
    fn a_streams_serve_future_keeps_the_task_within_256_bytes() {
        let size = size_of_output(serve::<crate::transport::HttpStreamTransport>);
        assert!(size <= 152, "the serve future is {size} bytes");
    }

    /// The client's share of the serve future's 152 bytes (see the test above).
    #[test]
    fn a_client_takes_at_most_40_bytes() {
        let size = std::mem::size_of::<Client>();
        assert!(
            size <= 40,
            "Client is {size} bytes, and every idle connection pays each of them"
        );
    }
}
