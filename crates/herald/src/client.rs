//! One connected client: the Centrifugo client protocol's state machine on a WebSocket —
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

use crate::auth::TokenError;
use crate::auth::{SubscribeOptions, SubscribeOverride};
use crate::config::{NamespaceOptions, RecoveryMode};
use crate::engine::{HistoryFilter, StoredPublication, StreamPosition};
use crate::hub::{ClientHandle, Selection, SubFlags};
use crate::node::{LiveConnection, PublishOptions, unix_now};
use crate::protocol::{
    self, Command, ConnectRequest, ConnectResult, Disconnect, Encoding, Error, HistoryRequest,
    HistoryResult, Method, Payload, PresenceResult, PresenceStatsResult, Publication,
    PublishRequest, PublishResult, Push, RefreshRequest, RefreshResult, Reply, ReplyResult,
    SubRefreshRequest, SubRefreshResult, SubscribeRequest, SubscribeResult, Unsubscribe,
    UnsubscribeRequest, UnsubscribeResult, publication_len,
};
use crate::tags_filter;
use crate::ws::{CloseCode, FrameBuf, Incoming, PackedInstant, WebSocket};

/// The subscribe `flag` bit with which a client asks for error 112 (unrecoverable position)
/// instead of a subscription answered `recovered: false` (the SDKs set it with `getState`).
const SUBSCRIBE_FLAG_REJECT_UNRECOVERED: i64 = 1 << 1;

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
    /// The encoding the client speaks, chosen when it connects (JSON; the WebSocket
    /// subprotocol will choose Protobuf): how its commands are read and its replies written.
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

/// Serves one upgraded WebSocket connection until it ends; `live` counts it among the live
/// connections until then.
///
/// Not an `async fn`: the future of one keeps its arguments twice (as arguments, and as the
/// locals they are moved into on the first poll), which for the WebSocket is half a KiB more
/// per connection. The state is made here and the `async` block uses it in place.
pub fn serve(live: LiveConnection, mut ws: WebSocket) -> impl Future<Output = ()> + Send + 'static {
    live.metrics.connection_opened();
    let stale = live.config.client.stale_close_delay;
    let mut client = Client {
        state: State::Connecting,
        alarm_set: false,
        handle: None,
        aside: None,
        deadline: (Instant::now() + stale).into(),
        node: live,
        encoding: Encoding::Json,
    };
    async move {
        loop {
            client.set_alarm(&ws);
            // Shutdown reaches a connected client through the hub (`Server::run` closes every
            // client there), and one not in the hub (yet) through its alarm, which the node's
            // alarm clock rings for everyone when shutdown starts (the wake-up checks it, see
            // `on_timer`): no client keeps a cancellation future of its own. A client not yet
            // connected also checks here, after its alarm is set, so that a shutdown whose
            // ringing came before the alarm was set is seen. Only then: the check takes the
            // token's lock, which every connection shares.
            if matches!(client.state, State::Connecting | State::Failed)
                && client.node.shutdown.is_cancelled()
            {
                client.close(&ws, Disconnect::SHUTDOWN);
            }
            // `poll_recv` in place rather than `recv()`: this future is kept by every idle
            // connection, and a nested state machine would widen it. Only the frame is kept
            // across the await below, not the whole result: matched as a temporary, whose
            // room ends with this statement.
            let data = match std::future::poll_fn(|cx| ws.poll_recv(cx)).await {
                Ok(Some(Incoming::Text(data) | Incoming::Binary(data))) => data,
                Ok(Some(Incoming::Wake)) => {
                    if let Some(close) = client.on_timer(&ws) {
                        client.close(&ws, close);
                    }
                    continue;
                }
                Ok(Some(Incoming::Pong(_))) => continue,
                Ok(None) => break,
                Err(e) => {
                    if let crate::ws::Error::Protocol(p) = &e
                        && p.code == crate::ws::CloseCode::TOO_BIG
                    {
                        // The one close a well-behaved client still meets (a message it built
                        // too large): said at info, so that whoever runs the server sees it.
                        tracing::info!(
                            client = %client.id(),
                            "closed with 1009 ({}): the client sent a message over \
                             websocket.message_size_limit ({} bytes); raise that option if \
                             such messages are legitimate",
                            p.reason,
                            client.node.config.websocket.message_size_limit
                        );
                    } else {
                        tracing::debug!(client = %client.id(), "connection ended: {e}");
                    }
                    if matches!(e, crate::ws::Error::WriteTimeout) {
                        // It stopped reading what it was sent: a slow consumer, dropped by
                        // its write timeout rather than by its queue's budget.
                        client.node.metrics.slow_consumers(1);
                    }
                    break;
                }
            };
            if client.state != State::Closing {
                // Boxed: the command futures (connect, subscribe with recovery…) are several
                // KiB, and kept inline they would make every idle connection's task that
                // large. One allocation per received frame instead, which the frame moves
                // into too.
                if let Err(close) = Box::pin(client.on_frame(data, &ws)).await {
                    client.close(&ws, close);
                }
            }
        }
        // Boxed, like the command futures: inline, the leave futures would widen this future
        // (they share its room with the serve loop's) by a few hundred bytes, for every
        // connection, for the one moment it ends. Only the box is kept across the await.
        let mut leave = client.handle.take().map(|handle| {
            let node = Arc::clone(&client.node);
            Box::pin(async move {
                for (channel, flags) in node.hub.remove_client(&handle) {
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
        let code = ws.peer_close().map_or(1006, |(code, _)| code.0);
        client.node.metrics.connection_closed(code);
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

    /// The user id; empty for an anonymous connection (and before connect).
    fn user(&self) -> &str {
        self.handle.as_deref().map_or("", |h| &*h.user)
    }

    /// The earliest timer, if any.
    fn next_deadline(&self) -> Option<Instant> {
        [self.deadline.get()]
            .into_iter()
            .flatten()
            .chain(self.sub_expiries().iter().map(|(_, at)| *at))
            .min()
    }

    /// Makes sure the node's alarm clock wakes this task (with [`Incoming::Wake`]) at its
    /// next deadline, unless an alarm is pending already ([`Client::alarm_set`]): one for
    /// that time or an earlier one is enough, since the wake-up it brings sets the next
    /// one. Only a flag is kept, not the alarm's time, so the flag is cleared wherever the
    /// earliest deadline may move earlier ([`Client::deadline_ahead`]) and on every wake-up
    /// (an alarm rang, or the server API asked; which of the two cannot be told apart). A
    /// deadline moved later keeps the earlier alarm, whose wake-up sets one for the later
    /// time.
    fn set_alarm(&mut self, ws: &WebSocket) {
        if self.alarm_set {
            return;
        }
        if let Some(next) = self.next_deadline() {
            self.node.alarms.set(next, ws.outbox());
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
    fn on_timer(&mut self, ws: &WebSocket) -> Option<Close> {
        // This wake-up may be the pending alarm's: from here on none is counted on, and the
        // next `set_alarm` sets one for the next deadline.
        self.alarm_set = false;
        let now = Instant::now();
        self.apply_api_refresh();
        if self.node.shutdown.is_cancelled() {
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
            self.expire_subscriptions(now, ws);
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
        let delay = self.node.config.client.expired_close_delay;
        let deadline = PackedInstant::from(at.map(|at| instant_of(at) + delay));
        if let Some(at) = deadline.get() {
            self.deadline_ahead(at);
        }
        self.deadline = deadline;
    }

    /// Starts closing the connection with a protocol disconnect code.
    fn close(&mut self, ws: &WebSocket, close: Close) {
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
        ws.close(CloseCode(close.code), close.reason);
    }

    /// Processes one frame of newline-separated commands and sends the replies as one frame.
    async fn on_frame(&mut self, data: Bytes, ws: &WebSocket) -> Result<(), Close> {
        if self.state == State::Failed {
            return Err(Disconnect::BAD_REQUEST);
        }
        let mut count = 0;
        let mut result = Ok(());
        for command in self.encoding.decode_commands(&data) {
            count += 1;
            let Ok(command) = command else {
                result = Err(Disconnect::BAD_REQUEST);
                break;
            };
            if let Err(close) = self.dispatch(command, ws).await {
                result = Err(close);
                break;
            }
        }
        self.node.metrics.commands_in(count);
        self.flush_replies(ws);
        result
    }

    /// Drops the [`Aside`] box once it holds nothing.
    fn drop_aside_if_empty(&mut self) {
        if self.aside.as_deref().is_some_and(Aside::is_empty) {
            self.aside = None;
        }
    }

    /// Sends the replies gathered so far as one frame.
    fn flush_replies(&mut self, ws: &WebSocket) {
        let Some(replies) = self.aside.as_mut().and_then(|aside| aside.replies.take()) else {
            return;
        };
        self.drop_aside_if_empty();
        // A closed queue means the connection is going away; its replies do not matter. A full
        // one closes the connection as a slow consumer (3008).
        if let Err(crate::ws::PushError::Full) = ws
            .outbox()
            .push_frame(replies.finish(crate::prepared::opcode(self.encoding)))
        {
            self.node.metrics.slow_consumers(1);
        }
    }

    /// How many bytes of stored publications the replies still to be gathered for this frame
    /// may carry (see [`ReplyRoom`]).
    fn reply_room(&self, ws: &WebSocket) -> ReplyRoom {
        // The connection's byte budget, as `server.rs` sets it from `client.queue_max_size`.
        let budget = self.node.config.client.queue_max_size.max(1024);
        let gathered = self
            .aside
            .as_ref()
            .and_then(|aside| aside.replies.as_ref())
            .map_or(0, FrameBuf::payload_len);
        ReplyRoom::new(budget, ws.outbox().queued_bytes() + gathered)
    }

    fn reply(&mut self, reply: &Reply) {
        let replies = self
            .aside
            .get_or_insert_with(Box::default)
            .replies
            .get_or_insert_with(FrameBuf::new);
        let first = replies.payload_len() == 0;
        if self.encoding.append_reply(reply, first, replies).is_err() {
            tracing::error!(client = %self.id(), "could not encode a reply");
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
    async fn dispatch(&mut self, command: Command, ws: &WebSocket) -> Result<(), Close> {
        let started = std::time::Instant::now();
        let method = command.method();
        if self.state == State::Connecting && method != Method::Connect {
            return Err(Disconnect::BAD_REQUEST);
        }
        if command.id == 0 {
            return match method {
                Method::Send => Err(Disconnect::NOT_AVAILABLE),
                _ if self.handle.as_ref().is_some_and(|h| h.pong_received()) => Ok(()),
                _ => Err(Disconnect::BAD_REQUEST),
            };
        }
        let id = command.id;
        match method {
            Method::Connect => {
                let request = command.connect.unwrap_or_default();
                self.connect(id, request, ws).await?;
            }
            Method::Subscribe => {
                let request = command.subscribe.unwrap_or_default();
                self.subscribe(id, request, ws).await?;
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
                let room = self.reply_room(ws);
                let result = self.history(request, room).await?;
                self.reply_result(id, result);
            }
            Method::Presence => {
                let channel = command.presence.unwrap_or_default().channel;
                match self.check_presence(&channel)? {
                    Ok(()) => {
                        let result = self.node.presence.presence(&channel).await;
                        let result = result
                            .map(|presence| PresenceResult { presence })
                            .map_err(|e| e.to_protocol());
                        self.reply_result(id, result);
                    }
                    Err(error) => self.reply(&Reply::error(id, error)),
                }
            }
            Method::PresenceStats => {
                let channel = command.presence_stats.unwrap_or_default().channel;
                match self.check_presence(&channel)? {
                    Ok(()) => {
                        let result = self.node.presence.stats(&channel).await;
                        let result = result
                            .map(PresenceStatsResult::from)
                            .map_err(|e| e.to_protocol());
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
            Method::Ping | Method::Rpc => {
                self.reply(&Reply::error(id, Error::NOT_AVAILABLE));
            }
            Method::Send => return Err(Disconnect::NOT_AVAILABLE),
            Method::None => return Err(Disconnect::BAD_REQUEST),
        }
        self.node
            .metrics
            .command(method.as_str(), started.elapsed());
        Ok(())
    }

    async fn connect(
        &mut self,
        id: u32,
        request: ConnectRequest,
        ws: &WebSocket,
    ) -> Result<(), Close> {
        if self.state != State::Connecting {
            return Err(Disconnect::BAD_REQUEST);
        }
        let node = self.node.clone();
        let config = &node.config.client;
        let mut user = String::new();
        let mut expires_at = None;
        let mut conn_info = None;
        let mut channels = Vec::new();
        if request.token.is_empty() {
            // `client.insecure` (development only) lets anyone in as an anonymous user.
            if !config.allow_anonymous_connect_without_token && !config.insecure {
                tracing::debug!("connect without a token refused");
                return Err(Disconnect::BAD_REQUEST);
            }
        } else {
            match node
                .tokens
                .verify_connection_token(&request.token, SystemTime::now())
                .await
            {
                Ok(claims) => {
                    if claims.sub.is_empty() && config.disallow_anonymous_connection_tokens {
                        return Err(Disconnect::INVALID_TOKEN);
                    }
                    // As in Centrifugo, insecure mode never expires a connection.
                    expires_at = claims.expires_at().filter(|_| !config.insecure);
                    user = claims.sub;
                    conn_info = claims.info.map(Payload::from);
                    channels = server_side_subscriptions(claims.channels, claims.subs);
                }
                Err(TokenError::Expired) => {
                    self.state = State::Failed;
                    self.reply(&Reply::error(id, Error::TOKEN_EXPIRED));
                    return Ok(());
                }
                Err(TokenError::Invalid(reason)) => {
                    tracing::info!("invalid connection token: {reason}");
                    return Err(Disconnect::INVALID_TOKEN);
                }
            }
        }
        if config.user_connection_limit > 0
            && !user.is_empty()
            && node.hub.user_clients(&user).len() >= config.user_connection_limit
        {
            return Err(Disconnect::CONNECTION_LIMIT);
        }
        // The user's personal channel, when configured, is one more server-side subscription.
        let personal = &config.subscribe_to_user_personal_channel;
        if personal.enabled && !user.is_empty() {
            let channel = crate::channel::personal_channel(
                &personal.personal_channel_namespace,
                &user,
                node.config.channel.naming(),
            );
            if !channels.iter().any(|(c, _)| *c == channel) {
                channels.push((channel, SubscribeOptions::default()));
            }
        }
        // Server-side subscriptions must all be valid channels.
        for (channel, _) in &channels {
            if let Err(error) = node.resolve_channel(channel) {
                self.state = State::Failed;
                self.reply(&Reply::error(id, error));
                return Ok(());
            }
        }

        let handle = Arc::new(
            ClientHandle::new(
                uuid::Uuid::new_v4().into(),
                user,
                conn_info,
                ws.outbox().clone(),
            )
            .with_encoding(self.encoding),
        );
        node.hub.add_client(handle.clone());
        let mut result = ConnectResult {
            client: handle.id.to_string(),
            // Centrifugo gives one to connections of its HTTP-streaming, SSE and emulation
            // transports; Herald to every connection, so that the server API can target a
            // connection by it (`session`) on any transport.
            session: node.hub.session_of(&handle),
            version: VERSION.to_owned(),
            node: node.id.clone(),
            ..ConnectResult::default()
        };
        if let Some(at) = expires_at {
            result.expires = true;
            result.ttl = ttl(at);
        }
        if config.connect_include_server_time {
            result.time = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        }
        if config.ping_interval > Duration::ZERO {
            result.ping = config.ping_interval.as_secs().max(1) as u32;
            result.pong = true;
        }
        // Server-side subscriptions recover like client ones, from the positions the client
        // sends in `subs`; their publications follow the connect reply. All their recoveries
        // are in that one reply, so they share one room.
        let mut room = self.reply_room(ws);
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
            match self
                .join(
                    &handle,
                    &sub,
                    flags,
                    Selection::default(),
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
                    node.hub.remove_client(&handle);
                    self.state = State::Failed;
                    self.reply(&Reply::error(id, error));
                    return Ok(());
                }
            }
        }
        self.handle = Some(handle.clone());
        self.state = State::Connected;
        // No longer stale-checked: pinged by the node's wheel instead, and closed when the
        // token expires.
        self.set_expiry(expires_at);
        node.pings.add(&handle);
        let personal = &config.subscribe_to_user_personal_channel;
        if personal.enabled && personal.single_connection && !handle.user.is_empty() {
            // One connection per user (Centrifugo's single-connection mode): the newest wins,
            // the user's others are closed as over the connection limit, so their SDKs do not
            // reconnect and take the place back.
            let limit = Disconnect::CONNECTION_LIMIT;
            for other in node.hub.user_clients(&handle.user) {
                if !Arc::ptr_eq(&other, &handle) {
                    other.outbox.close(CloseCode(limit.code), limit.reason);
                }
            }
        }
        self.reply(&Reply::result(id, result));
        if !joined.is_empty() {
            // Publications of server-side subscriptions must follow the connect reply.
            self.flush_replies(ws);
        }
        for (channel, after, flags, chan_info) in joined {
            node.hub.activate(&channel, &handle, after);
            node.joined(&channel, subscriber_info(&handle, chan_info), flags)
                .await;
        }
        Ok(())
    }

    async fn subscribe(
        &mut self,
        id: u32,
        request: SubscribeRequest,
        ws: &WebSocket,
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
        let (mut result, grant) = match self.check_subscribe(&request, &handle).await {
            Ok(checked) => checked,
            Err(SubscribeFailure::Error(error)) => {
                self.reply(&Reply::error(id, error));
                return Ok(());
            }
            Err(SubscribeFailure::Close(close)) => return Err(close),
        };
        let channel = request.channel.as_str();
        let (flags, selection) = match node.resolve_channel(channel) {
            Ok((_, ns)) => {
                let flags = SubFlags::new(ns, grant.override_.as_ref(), request.join_leave);
                match self.selection(&request, ns) {
                    Ok(selection) => (flags, selection),
                    Err(error) => {
                        self.reply(&Reply::error(id, error));
                        return Ok(());
                    }
                }
            }
            Err(_) => (SubFlags::default(), Selection::default()),
        };
        let mut room = self.reply_room(ws);
        let after = match self
            .join(&handle, &request, flags, selection, &mut result, &mut room)
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
        self.flush_replies(ws);
        node.hub
            .activate_with_base(channel, &handle, after, base_offset);
        self.set_sub_expiry(channel, grant.expires_at);
        node.joined(channel, subscriber_info(&handle, grant.chan_info), flags)
            .await;
        Ok(())
    }

    /// Adds the subscription to the hub with publications held back, and completes `result`
    /// with the stream position (and the missed publications, when recovering) if the
    /// namespace keeps history. Returns the offset after which held-back publications are
    /// new to the client; the caller queues the reply, then calls [`Hub::activate`] with it.
    ///
    /// Missed publications that do not fit in `room` are not sent at all: the subscription
    /// is answered `recovered: false` at the stream's top, as when too much was missed, so
    /// that the application reloads (with `history`, which pages) instead of the client being
    /// closed as too slow (3008) — and again on every reconnect, since the same recovery
    /// would follow.
    ///
    /// [`Hub::activate`]: crate::hub::Hub::activate
    ///
    /// `selection`: the subscription's tags filter and deltas ([`Client::selection`]); the
    /// missed publications are filtered, and given as JSON strings to a delta subscription.
    async fn join(
        &self,
        handle: &Arc<ClientHandle>,
        request: &SubscribeRequest,
        flags: SubFlags,
        selection: Selection,
        result: &mut SubscribeResult,
        room: &mut ReplyRoom,
    ) -> Result<u64, Error> {
        let node = &self.node;
        let encoding = self.encoding;
        let channel = request.channel.as_str();
        let stream = match node.resolve_channel(channel) {
            Ok((_, options)) if options.history_enabled() => node
                .history
                .clone()
                .map(|history| (history, node.history_options(options), options)),
            _ => None,
        };
        result.delta = selection.delta;
        let filter = selection.tags_filter.clone();
        node.hub
            .subscribe_pending_selective(channel, handle, flags, selection);
        let Some((history, history_options, options)) = stream else {
            return Ok(0);
        };
        result.recoverable =
            options.force_recovery || (options.allow_recovery && request.recoverable);
        result.positioned = result.recoverable
            || options.force_positioning
            || (options.allow_positioning && request.positioned);
        let cache = options.force_recovery_mode == RecoveryMode::Cache;
        // `auto_cache_recover`: in cache mode the latest publication comes on every
        // subscribe, also when the client does not ask to recover (as in Centrifugo).
        let position =
            if result.recoverable && cache && (request.recover || options.auto_cache_recover) {
                let top = self
                    .recover_cache(history.as_ref(), request, history_options, result, room)
                    .await;
                if let Some(filter) = &filter {
                    result
                        .publications
                        .retain(|p| tags_filter::matches(filter, &p.tags));
                }
                if result.delta {
                    let latest = std::mem::take(&mut result.publications);
                    result.publications = crate::delta::recovered_as_deltas(encoding, latest);
                }
                top
            } else if request.recover && result.recoverable {
                let since = StreamPosition::new(request.offset, request.epoch.clone());
                let limit = node.config.client.recovery_max_publication_limit;
                history
                    .recover(channel, since, limit, history_options)
                    .await
                    .map(|recovery| {
                        result.was_recovering = true;
                        result.recovered = recovery.recovered;
                        if recovery.recovered {
                            let mut missed = recovery.publications;
                            if let Some(filter) = &filter {
                                missed.retain(|p| tags_filter::matches(filter, &p.tags));
                            }
                            match room.take_all(&missed) {
                                Some(publications) if result.delta => {
                                    result.publications =
                                        crate::delta::recovered_as_deltas(encoding, publications);
                                }
                                Some(publications) => result.publications = publications,
                                None => {
                                    tracing::debug!(
                                        client = %self.id(),
                                        channel,
                                        missed = missed.len(),
                                        "recovery does not fit the client's queue \
                                         (client.queue_max_size): answered recovered: false"
                                    );
                                    result.recovered = false;
                                }
                            }
                        }
                        recovery.position
                    })
            } else {
                history.top(channel, history_options).await
            };
        let reject_unrecovered = request.flag & SUBSCRIBE_FLAG_REJECT_UNRECOVERED != 0 && !cache;
        if position.is_ok() && result.was_recovering && !result.recovered && reject_unrecovered {
            // The SDK's `getState` flow: it asked not to be subscribed without what it
            // missed, and reloads its state (then subscribes from the new position) on 112.
            node.hub.unsubscribe(channel, handle);
            return Err(Error::UNRECOVERABLE_POSITION);
        }
        match position {
            Ok(position) => {
                if result.positioned {
                    result.offset = position.offset;
                    result.epoch = position.epoch;
                }
                Ok(position.offset)
            }
            Err(e) => {
                node.hub.unsubscribe(channel, handle);
                Err(e.to_protocol())
            }
        }
    }

    /// Recovery in cache mode (`force_recovery_mode: "cache"`), as Centrifugo does it: the
    /// client gets the channel's latest publication instead of what it missed, unless it
    /// already has it (its position is the stream's top). `recovered` when the stream's
    /// latest publication is still held (or the client is at the top of a stream holding
    /// none); the epoch does not matter. Returns the stream's top.
    async fn recover_cache(
        &self,
        history: &dyn crate::engine::History,
        request: &SubscribeRequest,
        options: crate::engine::HistoryOptions,
        result: &mut SubscribeResult,
        room: &mut ReplyRoom,
    ) -> Result<StreamPosition, crate::engine::EngineError> {
        let latest = HistoryFilter {
            since: None,
            limit: 1,
            reverse: true,
        };
        let page = history.read(&request.channel, latest, options).await?;
        let top = if page.publications.is_empty() {
            // `top` makes the stream if there is none yet, so that the epoch given out here
            // is the one later publications get (as for a subscription without recovery).
            history.top(&request.channel, options).await?
        } else {
            page.position
        };
        let up_to_date =
            request.offset > 0 && request.offset == top.offset && request.epoch == top.epoch;
        result.was_recovering = true;
        result.recovered = match page.publications.first() {
            None => up_to_date,
            Some(latest) if latest.offset == top.offset && !up_to_date => {
                match room.take_all(std::slice::from_ref(latest)) {
                    Some(publications) => {
                        result.publications = publications;
                        true
                    }
                    None => false,
                }
            }
            Some(latest) => latest.offset == top.offset,
        };
        Ok(top)
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
        let (_, options) = match node.resolve_channel(&request.channel) {
            Ok(resolved) => resolved,
            Err(error) => return Ok(Err(error)),
        };
        let Some(history) = node.history.clone().filter(|_| options.history_enabled()) else {
            return Ok(Err(Error::NOT_AVAILABLE));
        };
        let subscribed = self
            .handle
            .as_ref()
            .is_some_and(|h| h.is_subscribed(&request.channel));
        let anonymous = self.user().is_empty();
        let allowed = ((options.allow_history_for_client
            || (options.allow_history_for_subscriber && subscribed))
            && (!anonymous || options.allow_history_for_anonymous))
            || node.config.client.insecure;
        if !allowed {
            return Ok(Err(Error::PERMISSION_DENIED));
        }
        let cap = node.config.client.history_max_publication_limit as i64;
        let limit = match i64::from(request.limit) {
            n if n < 0 => cap,
            n => n.min(cap),
        };
        let filter = HistoryFilter {
            since: request
                .since
                .map(|p| StreamPosition::new(p.offset, p.epoch)),
            limit,
            reverse: request.reverse,
        };
        let read = history
            .read(
                &request.channel,
                filter.clone(),
                node.history_options(options),
            )
            .await
            .and_then(|page| page.continuing(&filter));
        let page = match read {
            Ok(page) => page,
            Err(e) => return Ok(Err(e.to_protocol())),
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

    /// Whether the client may subscribe as it asks: the subscribe result to start from, and
    /// what a subscription token granted.
    async fn check_subscribe(
        &self,
        request: &SubscribeRequest,
        handle: &ClientHandle,
    ) -> Result<(SubscribeResult, Grant), SubscribeFailure> {
        let node = &self.node;
        let (channel, options) = node
            .resolve_channel(&request.channel)
            .map_err(SubscribeFailure::Error)?;
        if request.kind != 0 {
            // Map and shared-poll subscriptions (Centrifugo's newer subscription types) do
            // not exist in Herald: refused rather than served as a plain stream.
            tracing::debug!(
                client = %self.id(),
                channel = %request.channel,
                kind = request.kind,
                "subscribe: subscription type not available (only streams, type 0)"
            );
            return Err(SubscribeFailure::Error(Error::NOT_AVAILABLE));
        }
        if handle.is_subscribed(&request.channel) {
            return Err(SubscribeFailure::Error(Error::ALREADY_SUBSCRIBED));
        }
        let limit = node.config.client.channel_limit;
        if limit > 0 && handle.channels().len() >= limit {
            return Err(SubscribeFailure::Error(Error::LIMIT_EXCEEDED));
        }
        let anonymous = self.user().is_empty();
        let mut result = SubscribeResult::default();
        if !request.token.is_empty() {
            // A subscription token grants the channel (and is required for private ones).
            let claims = node
                .subscription_tokens
                .verify_subscription_token(&request.token, SystemTime::now())
                .await
                .map_err(|e| match e {
                    TokenError::Expired => SubscribeFailure::Error(Error::TOKEN_EXPIRED),
                    // As in Centrifugo: a token that is not valid (malformed, a bad
                    // signature, a wrong audience or issuer, no channel claim) only fails
                    // this subscribe; the connection stays.
                    TokenError::Invalid(reason) => {
                        tracing::info!(client = %self.id(), "invalid subscription token: {reason}");
                        SubscribeFailure::Error(Error::PERMISSION_DENIED)
                    }
                })?;
            // A valid token for another channel, user or connection is a client that
            // misbehaves: closed, as Centrifugo does.
            handle
                .id
                .with_str(|id| claims.check_for(&handle.user, &request.channel, id))
                .map_err(|e| {
                    tracing::info!(client = %self.id(), "subscription token mismatch: {e}");
                    SubscribeFailure::Close(Disconnect::INVALID_TOKEN)
                })?;
            let expires_at = claims.expires_at();
            if let Some(at) = expires_at {
                result.expires = true;
                result.ttl = ttl(at);
            }
            result.data = claims.data.map(Payload::from);
            let grant = Grant {
                override_: claims.override_,
                chan_info: claims.info.map(Payload::from),
                expires_at,
            };
            return Ok((result, grant));
        }
        if channel.private {
            return Err(SubscribeFailure::Error(Error::PERMISSION_DENIED));
        }
        // `client.insecure` (development only) opens every channel but private ones.
        let insecure = self.node.config.client.insecure;
        if options.allow_user_limited_channels && channel.is_user_limited() {
            return if channel.allows_user(self.user()) || insecure {
                Ok((result, Grant::default()))
            } else {
                Err(SubscribeFailure::Error(Error::PERMISSION_DENIED))
            };
        }
        // As in Centrifugo v6: `allow_subscribe_for_anonymous` extends
        // `allow_subscribe_for_client` to users without an id.
        let allowed = (options.allow_subscribe_for_client
            && (!anonymous || options.allow_subscribe_for_anonymous))
            || insecure;
        if !allowed {
            return Err(SubscribeFailure::Error(Error::PERMISSION_DENIED));
        }
        Ok((result, Grant::default()))
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
        if let Some(handle) = self.handle.clone()
            && let Some(flags) = self.node.hub.unsubscribe(&request.channel, &handle)
        {
            self.node.left(&request.channel, &handle, flags).await;
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
    fn expire_subscriptions(&mut self, now: Instant, ws: &WebSocket) {
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
            let Some(flags) = self.node.hub.unsubscribe(&channel, &handle) else {
                continue;
            };
            let push = Push::unsubscribe(channel.as_str(), Unsubscribe::EXPIRED);
            self.reply(&Reply::push(push));
            self.flush_replies(ws);
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
        let claims = match self
            .node
            .subscription_tokens
            .verify_subscription_token(&request.token, SystemTime::now())
            .await
        {
            Ok(claims) => claims,
            Err(TokenError::Expired) => return Ok(Err(Error::TOKEN_EXPIRED)),
            Err(TokenError::Invalid(reason)) => {
                tracing::info!(client = %self.id(), "invalid sub_refresh token: {reason}");
                return Err(Disconnect::INVALID_TOKEN);
            }
        };
        if handle
            .id
            .with_str(|id| claims.check_for(&handle.user, &request.channel, id))
            .is_err()
        {
            return Err(Disconnect::INVALID_TOKEN);
        }
        let expires_at = claims.expires_at();
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
        let options = match self.node.resolve_channel(channel) {
            Ok((_, options)) => options,
            Err(error) => return Ok(Err(error)),
        };
        if !options.presence {
            return Ok(Err(Error::NOT_AVAILABLE));
        }
        let subscribed = self
            .handle
            .as_ref()
            .is_some_and(|h| h.is_subscribed(channel));
        let anonymous = self.user().is_empty();
        let allowed = ((options.allow_presence_for_client
            || (options.allow_presence_for_subscriber && subscribed))
            && (!anonymous || options.allow_presence_for_anonymous))
            || self.node.config.client.insecure;
        Ok(if allowed {
            Ok(())
        } else {
            Err(Error::PERMISSION_DENIED)
        })
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
        let (channel, options) = match node.resolve_channel(&request.channel) {
            Ok(resolved) => resolved,
            Err(error) => return Ok(Err(error)),
        };
        let subscribed = self
            .handle
            .as_ref()
            .is_some_and(|h| h.is_subscribed(&request.channel));
        let anonymous = self.user().is_empty();
        // `allow_publish_for_anonymous` extends the other two to users without an id; a
        // private channel needs a subscription whatever the options say.
        let allowed = ((options.allow_publish_for_client
            || (options.allow_publish_for_subscriber && subscribed))
            && (!anonymous || options.allow_publish_for_anonymous)
            && (!channel.private || subscribed))
            || node.config.client.insecure;
        if !allowed {
            return Ok(Err(Error::PERMISSION_DENIED));
        }
        let info = self.handle.as_ref().map(|h| h.info());
        node.metrics.publication("client");
        let published = node
            .publish(
                &request.channel,
                data,
                PublishOptions {
                    info,
                    ..PublishOptions::default()
                },
            )
            .await;
        Ok(published.map(|_| PublishResult::default()))
    }

    async fn refresh(
        &mut self,
        request: RefreshRequest,
    ) -> Result<Result<RefreshResult, Error>, Close> {
        if request.token.is_empty() {
            return Err(Disconnect::BAD_REQUEST);
        }
        let claims = match self
            .node
            .tokens
            .verify_connection_token(&request.token, SystemTime::now())
            .await
        {
            Ok(claims) => claims,
            Err(TokenError::Expired) => return Ok(Err(Error::TOKEN_EXPIRED)),
            Err(TokenError::Invalid(reason)) => {
                tracing::info!(client = %self.id(), "invalid refresh token: {reason}");
                return Err(Disconnect::INVALID_TOKEN);
            }
        };
        if claims.sub != self.user() {
            return Err(Disconnect::INVALID_TOKEN);
        }
        let mut result = RefreshResult {
            client: self.id().to_string(),
            version: VERSION.to_owned(),
            ..RefreshResult::default()
        };
        let expires_at = claims.expires_at();
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

/// What a subscription token grants beyond the channel itself.
#[derive(Default)]
struct Grant {
    /// Namespace option overrides.
    override_: Option<SubscribeOverride>,
    /// Channel info for presence and join/leave (`chan_info`).
    chan_info: Option<Payload>,
    /// When the subscription expires (unix seconds).
    expires_at: Option<u64>,
}

/// The server-side subscriptions of a connection token: `channels` with namespace defaults,
/// and `subs` with options, which win for a channel in both.
fn server_side_subscriptions(
    channels: Vec<String>,
    subs: std::collections::BTreeMap<String, SubscribeOptions>,
) -> Vec<(String, SubscribeOptions)> {
    let mut all: Vec<(String, SubscribeOptions)> = channels
        .into_iter()
        .filter(|c| !subs.contains_key(c))
        .map(|c| (c, SubscribeOptions::default()))
        .collect();
    all.extend(subs);
    all
}

/// The subscriber as presence and join/leave pushes show it.
fn subscriber_info(handle: &ClientHandle, chan_info: Option<Payload>) -> protocol::ClientInfo {
    protocol::ClientInfo {
        chan_info,
        ..handle.info()
    }
}

/// The bytes of stored publications (a `history` page, a recovery) that replies may still
/// carry to one client without being closed as too slow.
///
/// Everything queued for a connection counts against its byte budget
/// (`client.queue_max_size`), and a reply over it closes the client with 3008. A reply made of
/// stored content would then close it again after every reconnect, since the same content
/// would follow: anyone who can publish into a channel could lock its subscribers out. So
/// replies with publications fill at most half of the budget (the rest is headroom for the
/// publications that arrive meanwhile), less what is already queued or gathered; a single
/// publication may use the whole budget, as its live delivery could.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ReplyRoom {
    /// Bytes the publications may take in all.
    shared: usize,
    /// Bytes one publication alone may take, when it is the first.
    single: usize,
}

impl ReplyRoom {
    /// Bytes kept for the rest of a reply (its id, epoch, offset, channel…).
    const REPLY_OVERHEAD: usize = 512;

    /// The room in a connection with a byte budget of `budget` of which `used` are taken.
    fn new(budget: usize, used: usize) -> ReplyRoom {
        let used = used + Self::REPLY_OVERHEAD;
        ReplyRoom {
            shared: (budget / 2).saturating_sub(used),
            single: budget.saturating_sub(used),
        }
    }

    /// The encoded size of a publication in a list, its separator included.
    fn cost(publication: &Publication) -> usize {
        publication_len(publication) + 1
    }

    /// Whether `len` bytes of `count` publications fit.
    fn fits(&self, len: usize, count: usize) -> bool {
        len <= self.shared || (count == 1 && len <= self.single)
    }

    fn consume(&mut self, len: usize) {
        self.shared = self.shared.saturating_sub(len);
        self.single = self.single.saturating_sub(len);
    }

    /// The first of `stored` (in their order) that fit: a page.
    fn take_prefix(&mut self, stored: &[Arc<StoredPublication>]) -> Vec<Publication> {
        let mut taken = Vec::new();
        for publication in stored {
            let publication = publication.to_publication();
            let len = Self::cost(&publication);
            if !self.fits(len, taken.len() + 1) {
                break;
            }
            self.consume(len);
            taken.push(publication);
        }
        taken
    }

    /// All of `stored`, or `None` (and nothing taken) if they do not fit together: a recovery,
    /// which is whole or not at all.
    fn take_all(&mut self, stored: &[Arc<StoredPublication>]) -> Option<Vec<Publication>> {
        let publications: Vec<Publication> = stored.iter().map(|p| p.to_publication()).collect();
        let len = publications.iter().map(Self::cost).sum();
        if !self.fits(len, publications.len()) {
            return None;
        }
        self.consume(len);
        Some(publications)
    }
}

/// How a subscribe attempt failed: an error reply, or a reason to close the connection.
enum SubscribeFailure {
    Error(Error),
    Close(Close),
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
    /// `WebSocket` (96 bytes), the `Client` (40) and 16 bytes of its own (the await point, the
    /// state number). tokio's `TcpStream` is 8 bytes larger in a debug build, where this test
    /// usually runs: the budget is the release layout's, so that extra is taken off.
    #[test]
    fn the_serve_future_keeps_the_task_within_256_bytes() {
        let size = size_of_output(serve);
        let debug_extra = std::mem::size_of::<tokio::net::TcpStream>().saturating_sub(32);
        assert!(
            size - debug_extra <= 152,
            "the serve future is {size} bytes ({debug_extra} of them debug-only)"
        );
    }

    fn stored(offset: u64, text_len: usize) -> Arc<StoredPublication> {
        let data = protocol::raw(format!("\"{}\"", "x".repeat(text_len))).expect("valid JSON");
        Arc::new(StoredPublication {
            offset,
            data,
            info: None,
            tags: Default::default(),
            time_ms: 0,
        })
    }

    /// A page takes the publications that fit in half the budget, and the first one alone
    /// up to the whole budget.
    #[test]
    fn a_reply_room_cuts_a_page_to_half_the_budget() {
        let cost = ReplyRoom::cost(&stored(1, 1000).to_publication());
        let page: Vec<_> = (1..=100).map(|i| stored(i, 1000)).collect();
        let budget = 64 * 1024;
        let mut room = ReplyRoom::new(budget, 0);
        let taken = room.take_prefix(&page);
        let expected = (budget / 2 - ReplyRoom::REPLY_OVERHEAD) / cost;
        assert_eq!(taken.len(), expected);
        assert_eq!(taken[0].offset, 1);
        // In the same frame, one more at most: alone, within what is left of the budget.
        assert_eq!(room.take_prefix(&page).len(), 1);
        // One publication of 40 KB: over half the budget, alone within it.
        let big = [stored(1, 40_000), stored(2, 10)];
        let taken = ReplyRoom::new(budget, 0).take_prefix(&big);
        assert_eq!(taken.len(), 1);
        // What is queued already counts.
        assert!(ReplyRoom::new(budget, 30_000).take_prefix(&big).is_empty());
    }

    /// A recovery is all or nothing, and takes nothing when it does not fit.
    #[test]
    fn a_reply_room_takes_a_recovery_whole_or_not_at_all() {
        let budget = 64 * 1024;
        let mut room = ReplyRoom::new(budget, 0);
        let missed: Vec<_> = (1..=4).map(|i| stored(i, 10_000)).collect();
        assert!(room.take_all(&missed).is_none());
        assert_eq!(room, ReplyRoom::new(budget, 0), "a failed take took room");
        assert_eq!(room.take_all(&missed[..3]).map(|p| p.len()), Some(3));
        assert!(room.take_all(&missed[..2]).is_none());
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
