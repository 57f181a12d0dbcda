//! [`NatsController`]: the NATS engine's [`Controller`]. Every node publishes its
//! [`NodeInfo`] on `P.node` every [`HEARTBEAT`] and lists the nodes it heard from within
//! [`GONE_AFTER`] heartbeats (so a node killed with `kill -9` drops out of `info` by itself);
//! commands (API `disconnect`, `unsubscribe`, `refresh`) are applied here and published on
//! `P.control` for the others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::NatsConnection;
use crate::engine::{
    BoxFuture, ControlCommand, ControlHandler, Controller, EngineError, NodeInfo, Target,
};

/// How often a node publishes its [`NodeInfo`].
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// Heartbeats a node may miss before it is taken for gone.
pub const GONE_AFTER: u32 = 3;

/// A command as it travels between nodes, with the sender (which applied it already).
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    from: String,
    command: WireCommand,
}

/// [`ControlCommand`] on the wire.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum WireCommand {
    Disconnect {
        user: String,
        client: String,
        session: String,
        whitelist: Vec<String>,
        code: u16,
        reason: String,
    },
    Unsubscribe {
        user: String,
        client: String,
        session: String,
        channel: String,
    },
    Refresh {
        user: String,
        client: String,
        session: String,
        expired: bool,
        expire_at: u64,
    },
}

impl From<ControlCommand> for WireCommand {
    fn from(command: ControlCommand) -> Self {
        match command {
            ControlCommand::Disconnect {
                target,
                whitelist,
                code,
                reason,
            } => WireCommand::Disconnect {
                user: target.user,
                client: target.client,
                session: target.session,
                whitelist,
                code,
                reason,
            },
            ControlCommand::Unsubscribe { target, channel } => WireCommand::Unsubscribe {
                user: target.user,
                client: target.client,
                session: target.session,
                channel,
            },
            ControlCommand::Refresh {
                target,
                expired,
                expire_at,
            } => WireCommand::Refresh {
                user: target.user,
                client: target.client,
                session: target.session,
                expired,
                expire_at,
            },
        }
    }
}

impl From<WireCommand> for ControlCommand {
    fn from(command: WireCommand) -> Self {
        let target = |user, client, session| Target {
            user,
            client,
            session,
        };
        match command {
            WireCommand::Disconnect {
                user,
                client,
                session,
                whitelist,
                code,
                reason,
            } => ControlCommand::Disconnect {
                target: target(user, client, session),
                whitelist,
                code,
                reason,
            },
            WireCommand::Unsubscribe {
                user,
                client,
                session,
                channel,
            } => ControlCommand::Unsubscribe {
                target: target(user, client, session),
                channel,
            },
            WireCommand::Refresh {
                user,
                client,
                session,
                expired,
                expire_at,
            } => ControlCommand::Refresh {
                target: target(user, client, session),
                expired,
                expire_at,
            },
        }
    }
}

/// The other nodes heard from, by id, with when.
type Peers = Arc<Mutex<HashMap<String, (NodeInfo, Instant)>>>;

/// Node control over NATS. See the module doc.
pub struct NatsController {
    connection: NatsConnection,
    handler: Arc<OnceLock<Arc<dyn ControlHandler>>>,
    peers: Peers,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for NatsController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsController")
            .field("connection", &self.connection)
            .finish_non_exhaustive()
    }
}

impl Drop for NatsController {
    fn drop(&mut self) {
        if let Some(task) = crate::sync::lock(&self.task).take() {
            task.abort();
        }
    }
}

impl NatsController {
    /// A controller over `connection`; it starts heartbeating once the node installs its
    /// handler.
    pub fn new(connection: NatsConnection) -> Self {
        NatsController {
            connection,
            handler: Arc::default(),
            peers: Arc::default(),
            task: Mutex::new(None),
        }
    }

    fn handler(&self) -> Result<&Arc<dyn ControlHandler>, EngineError> {
        self.handler
            .get()
            .ok_or_else(|| EngineError::Unavailable("the node is not started yet".into()))
    }
}

/// Heartbeats this node, listens to the others' heartbeats and applies their commands.
async fn run(connection: NatsConnection, handler: Arc<dyn ControlHandler>, peers: Peers) {
    let uid = handler.node_info().uid;
    let client = connection.client().clone();
    // While NATS is away the client queues these and sends them once connected (and again
    // after every reconnection).
    let (nodes, control) = match (
        client.subscribe(connection.node_subject()).await,
        client.subscribe(connection.control_subject()).await,
    ) {
        (Ok(nodes), Ok(control)) => (nodes, control),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(
                "nats: cannot listen to the other nodes, info and commands stay on this node: {e}"
            );
            return;
        }
    };
    let (mut nodes, mut control) = (nodes.fuse(), control.fuse());
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let gone = HEARTBEAT * GONE_AFTER;
                crate::sync::lock(&peers).retain(|_, (_, seen)| seen.elapsed() < gone);
                if connection.health().is_err() {
                    continue;
                }
                let info = handler.node_info();
                match serde_json::to_vec(&info) {
                    Ok(body) => {
                        let sent = connection
                            .deadline("heartbeat", client.publish(connection.node_subject(), body.into()))
                            .await;
                        if let Err(e) = sent {
                            tracing::debug!("nats: heartbeat not sent: {e}");
                        }
                    }
                    Err(e) => tracing::error!("nats: cannot encode this node's info: {e}"),
                }
            }
            Some(message) = nodes.next() => {
                match serde_json::from_slice::<NodeInfo>(&message.payload) {
                    Ok(info) if info.uid != uid => {
                        crate::sync::lock(&peers).insert(info.uid.clone(), (info, Instant::now()));
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("nats: skipping a node heartbeat that is not Herald's: {e}"),
                }
            }
            Some(message) = control.next() => {
                match serde_json::from_slice::<Envelope>(&message.payload) {
                    // The sender applied it to its own connections already.
                    Ok(envelope) if envelope.from == uid => {}
                    Ok(envelope) => handler.handle_command(envelope.command.into()).await,
                    Err(e) => tracing::warn!("nats: skipping a control message that is not Herald's: {e}"),
                }
            }
            else => return,
        }
    }
}

impl Controller for NatsController {
    fn set_handler(&self, handler: Arc<dyn ControlHandler>) {
        if self.handler.set(handler.clone()).is_err() {
            tracing::warn!("controller: the handler was already set; keeping the first");
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!("nats controller: no Tokio runtime; other nodes will not be heard");
            return;
        };
        let task = runtime.spawn(run(self.connection.clone(), handler, self.peers.clone()));
        *crate::sync::lock(&self.task) = Some(task);
    }

    fn send(&self, command: ControlCommand) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(async move {
            let handler = self.handler()?;
            let uid = handler.node_info().uid;
            handler.handle_command(command.clone()).await;
            self.connection.ready().await?;
            let envelope = Envelope {
                from: uid,
                command: command.into(),
            };
            let body = serde_json::to_vec(&envelope)
                .map_err(|e| EngineError::BadRequest(format!("cannot encode a command: {e}")))?;
            let client = self.connection.client();
            self.connection
                .deadline(
                    "publish command",
                    client.publish(self.connection.control_subject(), body.into()),
                )
                .await?;
            self.connection.deadline("flush", client.flush()).await
        })
    }

    fn nodes(&self) -> BoxFuture<'_, Result<Vec<NodeInfo>, EngineError>> {
        let nodes = self.handler().map(|handler| {
            let gone = HEARTBEAT * GONE_AFTER;
            let mut others: Vec<NodeInfo> = crate::sync::lock(&self.peers)
                .values()
                .filter(|(_, seen)| seen.elapsed() < gone)
                .map(|(info, _)| info.clone())
                .collect();
            others.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.uid.cmp(&b.uid)));
            let mut nodes = vec![handler.node_info()];
            nodes.extend(others);
            nodes
        });
        Box::pin(std::future::ready(nodes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_survive_the_wire() {
        let commands = [
            ControlCommand::Disconnect {
                target: Target {
                    user: "u".into(),
                    client: "c".into(),
                    session: "s".into(),
                },
                whitelist: vec!["w".into()],
                code: 4000,
                reason: "bye".into(),
            },
            ControlCommand::Unsubscribe {
                target: Target::default(),
                channel: "news".into(),
            },
            ControlCommand::Refresh {
                target: Target::default(),
                expired: true,
                expire_at: 9,
            },
        ];
        for command in commands {
            let envelope = Envelope {
                from: "n".into(),
                command: command.clone().into(),
            };
            let json = serde_json::to_vec(&envelope).unwrap();
            let back: Envelope = serde_json::from_slice(&json).unwrap();
            assert_eq!(ControlCommand::from(back.command), command);
        }
    }
}
