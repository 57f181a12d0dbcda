//! The policy seam: who may connect, subscribe, publish, refresh, read history and presence,
//! and what an RPC answers. The client protocol ([`crate::client`]) asks the node's
//! [`Policy`] at each of these points and acts on the answer; it never decides them itself.
//!
//! [`ConfigPolicy`], the default, is the configuration's answer: connection and subscription
//! tokens (JWT), the namespaces' `allow_*` options, private and user-limited channels,
//! `client.insecure`, and RPC not available (108). [`ProxyPolicy`] asks backend proxies
//! (Centrifugo's connect, refresh, subscribe, publish, sub-refresh and RPC proxies, see
//! [`proxy`]) and falls back on [`ConfigPolicy`] where Centrifugo does (a connect with a
//! token, a subscribe with a subscription token, a namespace without a proxy); the node uses
//! it when the configuration turns a proxy on. Another policy can be set with
//! [`Node::set_policy`](crate::node::Node::set_policy).
//!
//! A policy may keep a connection's expiry, or a subscription's, itself (a refresh proxy
//! asked by the server, not a token sent by the client): [`Policy::refreshes_connections`]
//! and [`Policy::refreshes_subscriptions`] say so, and [`refresher`] then asks it when the
//! time comes.
//!
//! The checks that are protocol rules rather than policy stay with the client and the node
//! (a malformed command, an unknown namespace, an already subscribed channel, the channel
//! and connection limits), so every policy gets them.
//!
//! The methods that a proxy answers over the network return a boxed future: they run once
//! per command, not per publication, and the box keeps them out of the size of each idle
//! connection's task.

mod config;
pub mod proxy;
pub mod refresher;

pub use config::ConfigPolicy;
pub use proxy::ProxyPolicy;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::auth::{SubscribeOptions, SubscribeOverride};
use crate::config::NamespaceOptions;
use crate::hub::ClientHandle;
use crate::node::Node;
use crate::protocol::{
    ConnectRequest, Disconnect, Encoding, Error, Payload, RpcRequest, RpcResult,
};
use crate::ws::Outbox;

/// The future of a policy decision that may wait (on a token's keys, on a backend).
pub type PolicyFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a policy said no: an error reply to the command (the connection stays), or a
/// disconnect (the client misbehaves, e.g. presents a token made for someone else).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Answer the command with this error.
    Error(Error),
    /// Close the connection with this code.
    Disconnect(Disconnect),
}

impl From<Error> for Refusal {
    fn from(error: Error) -> Refusal {
        Refusal::Error(error)
    }
}

impl From<Disconnect> for Refusal {
    fn from(disconnect: Disconnect) -> Refusal {
        Refusal::Disconnect(disconnect)
    }
}

/// Who a connection is, as the policy established it at `connect`.
#[derive(Debug, Default)]
pub struct Credentials {
    /// User id; empty for an anonymous connection.
    pub user: String,
    /// When the connection expires unless refreshed (unix seconds); `None`: never.
    pub expires_at: Option<u64>,
    /// Connection info shown in presence, join/leave and client publications.
    pub info: Option<Payload>,
    /// Server-side subscriptions the connection gets, with their options.
    pub subscriptions: Vec<(String, SubscribeOptions)>,
    /// Data for the connect reply (the connect proxy's `data`).
    pub data: Option<Payload>,
}

/// What a policy knows of a connection at `connect` besides its request: the transport it
/// came over, and its outbox, which identifies the connection for as long as it lives (a
/// proxy keeps the connection's forwarded headers and `meta` by it).
#[derive(Clone, Copy)]
pub struct ConnectContext<'a> {
    /// The transport's name, as Centrifugo names it (`websocket`, `sse`…).
    pub transport: &'static str,
    /// The encoding the client speaks.
    pub encoding: Encoding,
    /// The connection's outbox.
    pub outbox: &'a Arc<Outbox>,
}

/// What the policy grants a subscription beyond the channel itself.
#[derive(Debug, Default)]
pub struct SubscribeGrant {
    /// When the subscription expires unless refreshed with `sub_refresh` (unix seconds).
    pub expires_at: Option<u64>,
    /// Data for the subscribe reply.
    pub data: Option<Payload>,
    /// Channel option overrides (presence, join/leave) for this subscription.
    pub override_: Option<SubscribeOverride>,
    /// Channel info for presence and join/leave (`chan_info`).
    pub chan_info: Option<Payload>,
}

/// How a publication allowed by the policy is made (the default: as the client sent it).
#[derive(Debug, Default)]
pub struct PublishGrant {
    /// Publish this data instead of the client's.
    pub data: Option<Payload>,
    /// Do not keep the publication in history.
    pub skip_history: bool,
    /// De-duplicate the publication by this key.
    pub idempotency_key: Option<String>,
    /// Tags of the publication (for subscribers' tags filters).
    pub tags: std::collections::BTreeMap<String, String>,
    /// Send it as a delta to subscribers that negotiated deltas.
    pub delta: bool,
    /// Version of the state it carries (0: none), and its epoch (see
    /// [`PublishOptions`](crate::node::PublishOptions)).
    pub version: u64,
    /// The epoch of `version`.
    pub version_epoch: String,
}

/// The decisions a client's commands depend on (see the module documentation). Each method
/// gets the node (configuration, token verifiers) and, once connected, the client's handle
/// (id, user, subscriptions).
pub trait Policy: Send + Sync + 'static {
    /// `connect`: who the connection is. A [`Refusal::Error`] is answered and the connection
    /// closed at the client's next frame; a [`Refusal::Disconnect`] closes it at once.
    fn connect<'a>(
        &'a self,
        node: &'a Node,
        request: &'a ConnectRequest,
        context: ConnectContext<'a>,
    ) -> PolicyFuture<'a, Result<Credentials, Refusal>>;

    /// `refresh`: the connection's new expiry (unix seconds; `None`: never) for `token`. When
    /// [`Policy::refreshes_connections`], the server asks this itself when the connection
    /// expires, with an empty token; a [`Refusal`] then ends the connection (an error as
    /// 3005, expired).
    fn refresh<'a>(
        &'a self,
        node: &'a Node,
        client: &'a ClientHandle,
        token: &'a str,
    ) -> PolicyFuture<'a, Result<Option<u64>, Refusal>>;

    /// `subscribe` to `channel` (a valid channel of a configured namespace, not subscribed
    /// yet) with subscription token `token` (may be empty).
    fn subscribe<'a>(
        &'a self,
        node: &'a Node,
        client: &'a ClientHandle,
        channel: &'a str,
        token: &'a str,
    ) -> PolicyFuture<'a, Result<SubscribeGrant, Refusal>>;

    /// `sub_refresh` of the client's subscription to `channel`: its new expiry for `token`.
    /// When [`Policy::refreshes_subscriptions`] for the channel, the server asks this itself
    /// when the subscription expires, with an empty token; a [`Refusal::Error`] then ends the
    /// subscription (unsubscribe 2501).
    fn sub_refresh<'a>(
        &'a self,
        node: &'a Node,
        client: &'a ClientHandle,
        channel: &'a str,
        token: &'a str,
    ) -> PolicyFuture<'a, Result<Option<u64>, Refusal>>;

    /// `publish` of `data` to `channel` (a valid channel of a configured namespace).
    fn publish<'a>(
        &'a self,
        node: &'a Node,
        client: &'a ClientHandle,
        channel: &'a str,
        data: &'a Payload,
    ) -> PolicyFuture<'a, Result<PublishGrant, Refusal>>;

    /// `rpc`: the answer to a call. The default: 108, no RPC is served.
    fn rpc<'a>(
        &'a self,
        _node: &'a Node,
        _client: &'a ClientHandle,
        _request: &'a RpcRequest,
    ) -> PolicyFuture<'a, Result<RpcResult, Refusal>> {
        Box::pin(std::future::ready(Err(Refusal::Error(
            Error::NOT_AVAILABLE,
        ))))
    }

    /// Whether connections' expiry is extended by the server asking [`Policy::refresh`]
    /// (Centrifugo's refresh proxy) rather than by the client's `refresh` command: the
    /// connect reply then does not tell the client that it expires.
    fn refreshes_connections(&self) -> bool {
        false
    }

    /// Whether subscriptions to `channel` are extended by the server asking
    /// [`Policy::sub_refresh`] (a namespace with a sub-refresh proxy) rather than by the
    /// client's `sub_refresh`: the subscribe reply then does not say that it expires.
    fn refreshes_subscriptions(&self, node: &Node, channel: &str) -> bool {
        let _ = (node, channel);
        false
    }

    /// The headers of the HTTP request that opened a connection (the WebSocket upgrade, the
    /// streaming request) that the policy needs later (lower-case names): the server hands
    /// them to [`Policy::keep_headers`]. None by default.
    fn wanted_headers(&self) -> &[http::HeaderName] {
        &[]
    }

    /// Keeps `headers` (those of [`Policy::wanted_headers`] the request had) for the
    /// connection whose outbox is `outbox`, before its `connect`.
    fn keep_headers(
        &self,
        outbox: &Arc<Outbox>,
        headers: Vec<(http::HeaderName, http::HeaderValue)>,
    ) {
        let _ = (outbox, headers);
    }

    /// `history` of `channel`, whose namespace `options` keeps history: may the client read
    /// it?
    fn history(
        &self,
        node: &Node,
        client: &ClientHandle,
        channel: &str,
        options: &NamespaceOptions,
    ) -> Result<(), Error>;

    /// `presence` and `presence_stats` of `channel`, whose namespace `options` keeps
    /// presence: may the client ask?
    fn presence(
        &self,
        node: &Node,
        client: &ClientHandle,
        channel: &str,
        options: &NamespaceOptions,
    ) -> Result<(), Error>;
}
