//! [`Controller`]: commands from one node to the connections of a user wherever they are
//! connected (API `disconnect`, `subscribe`, `unsubscribe`, `refresh`), the list of live nodes
//! (API `info`, the admin UI's nodes table) and the channels with subscribers on any node (API
//! `channels`).
//!
//! A command is sent to every node — this one included — and each applies it, once, to its
//! own connections through the [`ControlHandler`] the node installs. The embedded
//! [`LocalController`] has one node: it hands each command straight back to it; the Redis
//! engine's ([`super::redis::RedisController`]) carries them over a PUB/SUB channel.
//!
//! Commands are serde types because a multi-node controller sends them between processes;
//! payloads in them travel as base64, since they may be binary.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use super::emulation::EmulationOutcome;
use super::redis::client_info::b64;
use super::{BoxFuture, EngineError};
use crate::auth::SubscribeOverride;
use crate::protocol::{self, Payload};

/// A command for the connections of one user, on whatever node they are connected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlCommand {
    /// Close the targeted connections with a close code and reason.
    Disconnect {
        /// Which connections.
        target: Target,
        /// Connection ids to keep open.
        whitelist: Vec<String>,
        /// WebSocket close code (3000..=4999).
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// Unsubscribe the targeted connections from a channel, telling each one that was
    /// subscribed (unsubscribe push 2000).
    Unsubscribe {
        /// Which connections.
        target: Target,
        /// The channel.
        channel: String,
    },
    /// Set the targeted connections' expiry, or close them as expired.
    Refresh {
        /// Which connections.
        target: Target,
        /// Close them now with 3005 "connection expired".
        expired: bool,
        /// New expiry, Unix seconds; 0: they no longer expire.
        expire_at: u64,
    },
    /// Subscribe the targeted connections to a channel (a server-side subscription: API
    /// `subscribe`), positioned and recovered as the namespace and `override_` say.
    Subscribe(Box<ServerSubscribe>),
}

/// What API `subscribe` asks of the targeted connections, wherever they are.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerSubscribe {
    /// Which connections.
    pub target: Target,
    /// The channel (checked by the API: valid, in a configured namespace).
    pub channel: String,
    /// Channel info for presence and join/leave (`chan_info`).
    #[serde(with = "b64", skip_serializing_if = "Option::is_none")]
    pub info: Option<Payload>,
    /// Data for the `subscribe` push.
    #[serde(with = "b64", skip_serializing_if = "Option::is_none")]
    pub data: Option<Payload>,
    /// Position to recover from (see `api/cmd/subscribe.rs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recover_since: Option<protocol::StreamPosition>,
    /// Channel option overrides for these subscriptions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub override_: Option<SubscribeOverride>,
}

/// The connections a [`ControlCommand`] applies to: a user's, narrowed to one connection id
/// and/or one session id when those are not empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Target {
    /// The user (may be empty when `client` is given: an anonymous connection).
    pub user: String,
    /// Only this connection id.
    pub client: String,
    /// Only the connection with this session id.
    pub session: String,
}

/// One node's identity and load, as API `info` lists it (and as a node announces itself to
/// the others).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Node id (a UUID, new at each start).
    pub uid: String,
    /// Node name (host name and port).
    pub name: String,
    /// Herald version.
    pub version: String,
    /// Connected clients.
    pub num_clients: u32,
    /// Distinct connected users.
    pub num_users: u32,
    /// Channels with subscribers.
    pub num_channels: u32,
    /// Seconds since the node started.
    pub uptime: u32,
    /// Subscriptions.
    pub num_subs: u32,
    /// Process statistics.
    pub process: ProcessInfo,
}

/// CPU and memory of a node's process.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// CPU use in percent of one core, averaged since the previous `info` call (at least one
    /// second back) or since start.
    pub cpu: f64,
    /// Resident memory in bytes.
    pub rss: u64,
}

/// What a node does with the commands its controller receives, and how it describes itself
/// (implemented by the node).
pub trait ControlHandler: Send + Sync + 'static {
    /// Applies `command` to this node's own connections.
    fn handle_command(&self, command: ControlCommand) -> BoxFuture<'_, ()>;
    /// This node's identity and current load.
    fn node_info(&self) -> NodeInfo;
    /// This node's channels with subscribers whose name matches the glob `pattern` (empty:
    /// all; a malformed one: none), with their local subscriber counts.
    fn channels(&self, pattern: &str) -> Vec<(String, u32)>;
    /// Cancelled when the node starts shutting down, so that a multi-node controller can tell
    /// the others at once rather than let them notice the silence; `None`: never.
    fn shutdown_signal(&self) -> Option<tokio_util::sync::CancellationToken> {
        None
    }
    /// Hands `commands`, forwarded by another node's emulation endpoint, to this node's
    /// streaming connection with session id `session` (see [`super::emulation`]).
    fn emulate(&self, session: &str, commands: bytes::Bytes) -> EmulationOutcome {
        let _ = (session, commands);
        EmulationOutcome::NoSession
    }
}

/// Node-to-node control. Shared as `Arc<dyn Controller>` by the node and the server API.
pub trait Controller: Send + Sync + 'static {
    /// Installs the node's handler (before the node serves the API).
    fn set_handler(&self, handler: Arc<dyn ControlHandler>);

    /// Sends `command` to every node, this one included; resolves once it is applied here and
    /// handed to the others.
    fn send(&self, command: ControlCommand) -> BoxFuture<'_, Result<(), EngineError>>;

    /// Every live node, this one first.
    fn nodes(&self) -> BoxFuture<'_, Result<Vec<NodeInfo>, EngineError>>;

    /// The channels with subscribers on any node whose name matches the glob `pattern` (which
    /// the caller has checked), with their subscriber counts summed over the nodes. An error
    /// when some live node does not answer in time.
    fn channels<'a>(
        &'a self,
        pattern: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, u32>, EngineError>>;

    /// Forwards a streaming connection's commands to node `node`, which owns session
    /// `session` (see [`super::emulation`]), and resolves with its answer; an error when it
    /// does not answer within the engine's deadline. With one node there is no other node:
    /// no such session.
    fn emulate<'a>(
        &'a self,
        node: &'a str,
        session: &'a str,
        commands: bytes::Bytes,
    ) -> BoxFuture<'a, Result<EmulationOutcome, EngineError>> {
        let _ = (node, session, commands);
        Box::pin(std::future::ready(Ok(EmulationOutcome::NoSession)))
    }
}

/// Adds one node's channel list into `all`, summing the counts of channels several nodes have.
pub(crate) fn merge_channels(all: &mut BTreeMap<String, u32>, node: Vec<(String, u32)>) {
    for (channel, n) in node {
        let count = all.entry(channel).or_default();
        *count = count.saturating_add(n);
    }
}

/// The embedded engine's controller: one node, so each command goes straight back to it.
#[derive(Default)]
pub struct LocalController {
    handler: OnceLock<Arc<dyn ControlHandler>>,
}

impl std::fmt::Debug for LocalController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalController").finish_non_exhaustive()
    }
}

impl LocalController {
    /// A controller with no handler yet.
    pub fn new() -> Self {
        LocalController::default()
    }

    fn handler(&self) -> Result<&Arc<dyn ControlHandler>, EngineError> {
        self.handler
            .get()
            .ok_or_else(|| EngineError::Unavailable("the node is not started yet".into()))
    }
}

impl Controller for LocalController {
    fn set_handler(&self, handler: Arc<dyn ControlHandler>) {
        if self.handler.set(handler).is_err() {
            tracing::warn!("controller: the handler was already set; keeping the first");
        }
    }

    fn send(&self, command: ControlCommand) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(async move {
            self.handler()?.handle_command(command).await;
            Ok(())
        })
    }

    fn nodes(&self) -> BoxFuture<'_, Result<Vec<NodeInfo>, EngineError>> {
        let nodes = self.handler().map(|h| vec![h.node_info()]);
        Box::pin(std::future::ready(nodes))
    }

    fn channels<'a>(
        &'a self,
        pattern: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, u32>, EngineError>> {
        let channels = self.handler().map(|h| {
            let mut all = BTreeMap::new();
            merge_channels(&mut all, h.channels(pattern));
            all
        });
        Box::pin(std::future::ready(channels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<ControlCommand>>);

    impl ControlHandler for Recorder {
        fn handle_command(&self, command: ControlCommand) -> BoxFuture<'_, ()> {
            self.0.lock().unwrap().push(command);
            Box::pin(std::future::ready(()))
        }
        fn node_info(&self) -> NodeInfo {
            NodeInfo {
                uid: "n1".into(),
                name: "one".into(),
                version: String::new(),
                num_clients: 2,
                num_users: 1,
                num_channels: 0,
                uptime: 0,
                num_subs: 0,
                process: ProcessInfo { cpu: 0.0, rss: 0 },
            }
        }
        fn channels(&self, _pattern: &str) -> Vec<(String, u32)> {
            vec![("news".into(), 2)]
        }
    }

    #[tokio::test]
    async fn the_local_controller_hands_commands_back_to_this_node() {
        let controller = LocalController::new();
        let command = ControlCommand::Refresh {
            target: Target {
                user: "alice".into(),
                ..Target::default()
            },
            expired: true,
            expire_at: 0,
        };
        // Before the node installs its handler there is nobody to apply it: an error, not a
        // silent success.
        assert!(controller.send(command.clone()).await.is_err());
        assert!(controller.nodes().await.is_err());
        let recorder = Arc::new(Recorder::default());
        controller.set_handler(recorder.clone());
        controller.send(command.clone()).await.unwrap();
        assert_eq!(*recorder.0.lock().unwrap(), [command]);
        let nodes = controller.nodes().await.unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!((nodes[0].uid.as_str(), nodes[0].num_clients), ("n1", 2));
    }
}
