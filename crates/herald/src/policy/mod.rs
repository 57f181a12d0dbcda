//! The policy seam: who may connect, subscribe, publish, refresh, read history and presence,
//! and what an RPC answers. The client protocol ([`crate::client`]) asks the node's
//! [`Policy`] at each of these points and acts on the answer; it never decides them itself.
//!
//! [`ConfigPolicy`], the default, is the configuration's answer: connection and subscription
//! tokens (JWT), the namespaces' `allow_*` options, private and user-limited channels,
//! `client.insecure`, and RPC not available (108). A backend proxy (Centrifugo's connect,
//! subscribe, publish, refresh, sub-refresh and RPC proxies) is another implementation, set
//! on the node with [`Node::set_policy`](crate::node::Node::set_policy); it can fall back on
//! [`ConfigPolicy`] where Centrifugo does (a connect with a token, a subscribe with a
//! subscription token).
//!
//! The checks that are protocol rules rather than policy stay with the client and the node
//! (a malformed command, an unknown namespace, an already subscribed channel, the channel
//! and connection limits), so every policy gets them.
//!
//! The methods that a proxy answers over the network return a boxed future: they run once
//! per command, not per publication, and the box keeps them out of the size of each idle
//! connection's task.

mod config;

pub use config::ConfigPolicy;

use std::future::Future;
use std::pin::Pin;

use crate::auth::{SubscribeOptions, SubscribeOverride};
use crate::config::NamespaceOptions;
use crate::hub::ClientHandle;
use crate::node::Node;
use crate::protocol::{ConnectRequest, Disconnect, Error, Payload, RpcRequest, RpcResult};

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
    ) -> PolicyFuture<'a, Result<Credentials, Refusal>>;

    /// `refresh`: the connection's new expiry (unix seconds; `None`: never) for `token`.
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
