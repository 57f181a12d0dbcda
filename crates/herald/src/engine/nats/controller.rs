//! [`NatsController`]: the NATS engine's [`Controller`]. Every node publishes its
//! [`NodeInfo`] on `P.node` every [`HEARTBEAT`] and lists the nodes it heard from within
//! [`GONE_AFTER`] heartbeats (so a node killed with `kill -9` drops out of `info` by itself);
//! commands (API `disconnect`, `subscribe`, `unsubscribe`, `refresh`) are applied here and
//! published on `P.control` for the others; API `channels` surveys the live nodes on
//! `P.channels` (each answers its matching channels to the asker's inbox); an emulation
//! request for a streaming connection on another node is a NATS request to that node's
//! `P.emulation.<uid>`, answered with what became of it (see `engine/emulation.rs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::NatsConnection;
use crate::engine::controller::merge_channels;
use crate::engine::emulation::{EmulationOutcome, Forwarded};
use crate::engine::{BoxFuture, ControlCommand, ControlHandler, Controller, EngineError, NodeInfo};

/// How often a node publishes its [`NodeInfo`].
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// Heartbeats a node may miss before it is taken for gone.
pub const GONE_AFTER: u32 = 3;

/// A command as it travels between nodes, with the sender (which applied it already).
/// JSON: commands are rare (one per API call) and small, and readable with `nats sub`.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    from: String,
    command: ControlCommand,
}

/// A `channels` survey (API `channels`), published on `P.channels` with a reply inbox: every
/// other node answers with its matching channels in [`ChannelsPart`]s. Channel lists are never
/// broadcast unasked, so a node with a million channels costs nothing until someone asks.
#[derive(Debug, Serialize, Deserialize)]
struct ChannelsRequest {
    from: String,
    pattern: String,
}

/// One part of a node's answer to a [`ChannelsRequest`]; `last` ends the node's answer.
#[derive(Debug, Serialize, Deserialize)]
struct ChannelsPart {
    uid: String,
    channels: Vec<(String, u32)>,
    last: bool,
}

/// Bytes of channel names per [`ChannelsPart`], well under NATS's default 1 MiB payload.
const PART_BYTES: usize = 256 * 1024;
/// The most answer bytes one survey accepts before it fails (a bound on the asker's memory).
const SURVEY_BYTES: usize = 64 * 1024 * 1024;

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
    let (nodes, control, surveys, emulations) = match (
        client.subscribe(connection.node_subject()).await,
        client.subscribe(connection.control_subject()).await,
        client.subscribe(connection.channels_subject()).await,
        client.subscribe(emulation_subject(&connection, &uid)).await,
    ) {
        (Ok(nodes), Ok(control), Ok(surveys), Ok(emulations)) => {
            (nodes, control, surveys, emulations)
        }
        (Err(e), _, _, _) | (_, Err(e), _, _) | (_, _, Err(e), _) | (_, _, _, Err(e)) => {
            tracing::error!(
                "nats: cannot listen to the other nodes, info and commands stay on this node: {e}"
            );
            return;
        }
    };
    let (mut nodes, mut control, mut surveys) = (nodes.fuse(), control.fuse(), surveys.fuse());
    let mut emulations = emulations.fuse();
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
                    Ok(envelope) => handler.handle_command(envelope.command).await,
                    Err(e) => tracing::warn!("nats: skipping a control message that is not Herald's: {e}"),
                }
            }
            Some(message) = surveys.next() => {
                let (Some(reply), Ok(request)) = (
                    message.reply,
                    serde_json::from_slice::<ChannelsRequest>(&message.payload),
                ) else {
                    tracing::warn!("nats: skipping a channels survey that is not Herald's");
                    continue;
                };
                // The asker counts its own channels itself.
                if request.from != uid {
                    answer_survey(&connection, &uid, reply, handler.channels(&request.pattern)).await;
                }
            }
            // Handed to the connection here, in the order they arrive; answered at once.
            Some(message) = emulations.next() => {
                let (Some(reply), Ok(request)) = (
                    message.reply,
                    serde_json::from_slice::<Forwarded>(&message.payload),
                ) else {
                    tracing::warn!("nats: skipping an emulation request that is not Herald's");
                    continue;
                };
                let outcome = handler.emulate(&request.session, request.data.into());
                let Ok(body) = serde_json::to_vec(&outcome) else { continue };
                let sent = connection
                    .deadline("emulation answer", client.publish(reply, body.into()))
                    .await;
                if let Err(e) = sent {
                    tracing::warn!("nats: an emulation request went unanswered: {e}");
                }
            }
            else => return,
        }
    }
}

/// `P.emulation.<uid>`: where node `uid` takes emulation requests for its connections.
fn emulation_subject(connection: &NatsConnection, uid: &str) -> String {
    format!("{}.emulation.{uid}", connection.prefix)
}

/// Sends this node's `channels` to a survey's `reply` inbox in parts of at most
/// [`PART_BYTES`], the last one marked.
async fn answer_survey(
    connection: &NatsConnection,
    uid: &str,
    reply: async_nats::Subject,
    channels: Vec<(String, u32)>,
) {
    let mut parts = Vec::new();
    let mut part = Vec::new();
    let mut bytes = 0;
    for (channel, n) in channels {
        bytes += channel.len() + 16;
        part.push((channel, n));
        if bytes >= PART_BYTES {
            parts.push(std::mem::take(&mut part));
            bytes = 0;
        }
    }
    parts.push(part);
    let count = parts.len();
    for (i, channels) in parts.into_iter().enumerate() {
        let part = ChannelsPart {
            uid: uid.to_owned(),
            channels,
            last: i + 1 == count,
        };
        let Ok(body) = serde_json::to_vec(&part) else {
            return;
        };
        let client = connection.client();
        let sent = connection
            .deadline(
                "channels answer",
                client.publish(reply.clone(), body.into()),
            )
            .await;
        if let Err(e) = sent {
            tracing::warn!("nats: a channels survey went unanswered: {e}");
            return;
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
            let envelope = Envelope { from: uid, command };
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

    fn channels<'a>(
        &'a self,
        pattern: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, u32>, EngineError>> {
        Box::pin(async move {
            let handler = self.handler()?;
            let uid = handler.node_info().uid;
            let mut all = BTreeMap::new();
            merge_channels(&mut all, handler.channels(pattern));
            let gone = HEARTBEAT * GONE_AFTER;
            let mut waiting: HashMap<String, String> = crate::sync::lock(&self.peers)
                .iter()
                .filter(|(_, (_, seen))| seen.elapsed() < gone)
                .map(|(id, (info, _))| (id.clone(), info.name.clone()))
                .collect();
            if waiting.is_empty() {
                return Ok(all);
            }
            let connection = &self.connection;
            connection.ready().await?;
            let client = connection.client();
            let inbox = client.new_inbox();
            let mut answers = connection
                .deadline("channels survey", client.subscribe(inbox.clone()))
                .await?;
            let request = ChannelsRequest {
                from: uid,
                pattern: pattern.to_owned(),
            };
            let body = serde_json::to_vec(&request)
                .map_err(|e| EngineError::BadRequest(format!("cannot encode a survey: {e}")))?;
            connection
                .deadline(
                    "channels survey",
                    client.publish_with_reply(connection.channels_subject(), inbox, body.into()),
                )
                .await?;
            connection.deadline("flush", client.flush()).await?;
            let wait = connection.timeout * 2;
            let deadline = tokio::time::Instant::now() + wait;
            let mut received = 0usize;
            while !waiting.is_empty() {
                let Ok(Some(message)) = tokio::time::timeout_at(deadline, answers.next()).await
                else {
                    break;
                };
                received += message.payload.len();
                if received > SURVEY_BYTES {
                    return Err(EngineError::Unavailable(format!(
                        "channels: the nodes' answers pass {SURVEY_BYTES} bytes; narrow the pattern"
                    )));
                }
                let Ok(part) = serde_json::from_slice::<ChannelsPart>(&message.payload) else {
                    continue;
                };
                if waiting.contains_key(&part.uid) {
                    merge_channels(&mut all, part.channels);
                    if part.last {
                        waiting.remove(&part.uid);
                    }
                }
            }
            let _ = answers.unsubscribe().await;
            if !waiting.is_empty() {
                let mut missing: Vec<String> = waiting.into_values().collect();
                missing.sort();
                return Err(EngineError::Unavailable(format!(
                    "channels: no complete answer within {wait:?} from node(s) {}",
                    missing.join(", ")
                )));
            }
            Ok(all)
        })
    }

    fn emulate<'a>(
        &'a self,
        node: &'a str,
        session: &'a str,
        commands: bytes::Bytes,
    ) -> BoxFuture<'a, Result<EmulationOutcome, EngineError>> {
        Box::pin(async move {
            let gone = HEARTBEAT * GONE_AFTER;
            let live = crate::sync::lock(&self.peers)
                .get(node)
                .is_some_and(|(_, seen)| seen.elapsed() < gone);
            if !live {
                // A node not heard of is gone, and its connections with it.
                return Ok(EmulationOutcome::NoSession);
            }
            let request = Forwarded {
                session: session.to_owned(),
                data: commands.to_vec(),
            };
            let body = serde_json::to_vec(&request)
                .map_err(|e| EngineError::BadRequest(format!("cannot encode a request: {e}")))?;
            let connection = &self.connection;
            connection.ready().await?;
            let answer = connection
                .deadline(
                    "emulation request",
                    connection
                        .client()
                        .request(emulation_subject(connection, node), body.into()),
                )
                .await?;
            serde_json::from_slice(&answer.payload).map_err(|e| {
                EngineError::Unavailable(format!(
                    "node {node} answered an emulation request oddly: {e}"
                ))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Target;

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
                command: command.clone(),
            };
            let json = serde_json::to_vec(&envelope).unwrap();
            let back: Envelope = serde_json::from_slice(&json).unwrap();
            assert_eq!(back.command, command);
        }
    }
}
