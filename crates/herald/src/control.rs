//! What this node does with a control command ([`ControlCommand`]) its engine's controller
//! delivers — sent by the server API of this node or of another — how it describes itself in
//! the node list, and which channels it has for the `channels` API. The API validates a
//! request and sends the command; this module finds the targeted connections among this
//! node's own and acts on them.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::api::cmd::target_clients;
use crate::engine::emulation::EmulationOutcome;
use crate::engine::{BoxFuture, ControlCommand, ControlHandler, NodeInfo, ProcessInfo, Target};
use crate::glob::Glob;
use crate::hub::ClientHandle;
use crate::metrics::{process_cpu_time, process_rss_bytes};
use crate::node::{Node, unix_now};
use crate::prepared::Prepared;
use crate::protocol::{Disconnect, Push, Unsubscribe};

/// The node as its controller's command handler. Weak, so that the engine does not keep a
/// stopped node alive.
pub(crate) struct NodeControl(pub(crate) Weak<Node>);

impl ControlHandler for NodeControl {
    fn handle_command(&self, command: ControlCommand) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(node) = self.0.upgrade() {
                apply(&node, command).await;
            }
        })
    }

    fn channels(&self, pattern: &str) -> Vec<(String, u32)> {
        let Some(node) = self.0.upgrade() else {
            return Vec::new();
        };
        // The asking node checked the pattern; one that does not parse here matches nothing.
        let Ok(glob) = Glob::new(pattern) else {
            tracing::warn!(
                pattern,
                "a channels request with a malformed pattern; answered empty"
            );
            return Vec::new();
        };
        node.hub()
            .channels()
            .into_iter()
            .filter(|(name, _)| glob.matches(name))
            .map(|(name, n)| (name, u32::try_from(n).unwrap_or(u32::MAX)))
            .collect()
    }

    fn shutdown_signal(&self) -> Option<tokio_util::sync::CancellationToken> {
        self.0.upgrade().map(|node| node.shutdown().clone())
    }

    fn emulate(&self, session: &str, commands: bytes::Bytes) -> EmulationOutcome {
        match self.0.upgrade() {
            Some(node) => node.emulation().deliver_forwarded(session, commands),
            None => EmulationOutcome::NoSession,
        }
    }

    fn node_info(&self) -> NodeInfo {
        match self.0.upgrade() {
            Some(node) => node_info(&node),
            None => NodeInfo {
                uid: String::new(),
                name: String::new(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                num_clients: 0,
                num_users: 0,
                num_channels: 0,
                uptime: 0,
                num_subs: 0,
                process: ProcessInfo { cpu: 0.0, rss: 0 },
            },
        }
    }
}

/// This node's connections that `target` names.
fn targets(node: &Node, target: &Target) -> Vec<Arc<ClientHandle>> {
    // The API checked the target (a user or a client id) before sending the command.
    target_clients(node, &target.user, &target.client, &target.session).unwrap_or_default()
}

/// Applies `command` to this node's connections.
pub async fn apply(node: &Node, command: ControlCommand) {
    match command {
        ControlCommand::Disconnect {
            target,
            whitelist,
            code,
            reason,
        } => {
            let disconnect = Disconnect::custom(code, reason);
            for client in targets(node, &target) {
                if whitelist.iter().any(|w| client.id == **w) {
                    continue;
                }
                client.disconnect(&disconnect);
            }
        }
        ControlCommand::Unsubscribe { target, channel } => {
            let push = Push::unsubscribe(channel.as_str(), Unsubscribe::SERVER);
            // Encoded at most once per encoding among the targets.
            let prepared = Prepared::push(&push);
            for client in targets(node, &target) {
                // Leave the channel first, so that no publication follows the unsubscribe push.
                let Some(flags) = node.hub().unsubscribe(&channel, &client) else {
                    continue;
                };
                let Some(message) = prepared.message(client.encoding) else {
                    tracing::error!(channel = %channel, "encoding an unsubscribe push failed");
                    return;
                };
                // A closed queue means the connection is going away anyway.
                let _ = client.outbox.push(message.clone());
                node.left(&channel, &client, flags).await;
            }
        }
        ControlCommand::Refresh {
            target,
            expired,
            expire_at,
        } => {
            let expired = expired || (expire_at > 0 && expire_at <= unix_now());
            for client in targets(node, &target) {
                if expired {
                    client.disconnect(&Disconnect::EXPIRED);
                } else {
                    client.set_expiry((expire_at > 0).then_some(expire_at));
                }
            }
        }
        ControlCommand::Subscribe(subscribe) => {
            if let Err(e) = crate::api::cmd::subscribe::apply(node, &subscribe).await {
                tracing::warn!(
                    channel = %subscribe.channel,
                    user = %subscribe.target.user,
                    "server-side subscribe failed on this node: {}", e.message
                );
            }
        }
    }
}

/// This node's identity and load.
pub fn node_info(node: &Node) -> NodeInfo {
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    NodeInfo {
        uid: node.id().to_owned(),
        name: node.name().to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        num_clients: count(node.hub().num_clients()),
        num_users: count(node.hub().num_users()),
        num_channels: count(node.hub().num_channels()),
        uptime: u32::try_from(node.uptime_secs()).unwrap_or(u32::MAX),
        num_subs: count(node.hub().num_subscriptions()),
        process: ProcessInfo {
            cpu: cpu_percent(node.started()),
            rss: process_rss_bytes().unwrap_or(0),
        },
    }
}

/// The previous CPU sample: when, CPU time used then, and the percentage computed then.
static CPU_SAMPLE: Mutex<Option<(Instant, Duration, f64)>> = Mutex::new(None);

/// Shortest interval a CPU percentage is computed over; calls closer together repeat the
/// previous value.
const MIN_CPU_INTERVAL: Duration = Duration::from_secs(1);

fn cpu_percent(started: Instant) -> f64 {
    let Some(cpu) = process_cpu_time() else {
        return 0.0;
    };
    let now = Instant::now();
    // Each critical section is a read and a write of one value: a poisoned lock is still
    // consistent.
    let mut sample = CPU_SAMPLE.lock().unwrap_or_else(|e| e.into_inner());
    let (since, cpu_then) = match *sample {
        Some((at, _, percent)) if now.duration_since(at) < MIN_CPU_INTERVAL => return percent,
        Some((at, cpu_then, _)) => (at, cpu_then),
        None => (started, Duration::ZERO),
    };
    let wall = now.duration_since(since).as_secs_f64();
    let percent = if wall > 0.0 {
        cpu.saturating_sub(cpu_then).as_secs_f64() / wall * 100.0
    } else {
        0.0
    };
    *sample = Some((now, cpu, percent));
    percent
}
