//! `info`: what this node is and how loaded it is — version, uptime, connections, users,
//! channels, subscriptions, CPU and memory — for dashboards and health checks.
//!
//! `POST /api/info {}` → `{"result": {"nodes": [{"uid": …, "name": …, "version": …,
//! "num_clients": …, "num_users": …, "num_channels": …, "num_subs": …, "uptime": …,
//! "process": {"cpu": …, "rss": …}}]}}`. A single-node deployment lists one node.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::metrics::{process_cpu_time, process_rss_bytes};
use crate::node::Node;
use crate::protocol;

/// Request of `info`: no fields.
#[derive(Debug, Default, Deserialize)]
pub struct InfoRequest {}

/// Result of `info`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InfoResult {
    /// The nodes of the deployment (this one).
    pub nodes: Vec<NodeInfo>,
}

/// One node's identity and load.
#[derive(Debug, Clone, PartialEq, Serialize)]
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

/// CPU and memory of the node's process.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ProcessInfo {
    /// CPU use in percent of one core, averaged since the previous `info` call (at least one
    /// second back) or since start.
    pub cpu: f64,
    /// Resident memory in bytes.
    pub rss: u64,
}

/// Describes this node.
pub fn execute(node: &Node, _req: InfoRequest) -> Result<InfoResult, protocol::Error> {
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    Ok(InfoResult {
        nodes: vec![NodeInfo {
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
        }],
    })
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

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn describes_the_node() {
        let node = node();
        let a = client(&node, "a", "alice");
        let a2 = client(&node, "a2", "alice");
        let _b = client(&node, "b", "bob");
        node.hub().subscribe("news", &a);
        node.hub().subscribe("news", &a2);
        node.hub().subscribe("chat:1", &a);
        let info = execute(&node, InfoRequest {}).unwrap();
        assert_eq!(info.nodes.len(), 1);
        let n = &info.nodes[0];
        assert_eq!(n.uid, node.id());
        assert_eq!(n.name, node.name());
        assert_eq!(n.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(
            (n.num_clients, n.num_users, n.num_channels, n.num_subs),
            (3, 2, 2, 3)
        );
        assert!(n.process.cpu >= 0.0 && n.process.cpu.is_finite());
        if cfg!(target_os = "linux") {
            assert!(n.process.rss > 0);
        }
        let json = serde_json::to_value(&info).unwrap();
        for field in [
            "uid",
            "name",
            "version",
            "num_clients",
            "num_users",
            "num_channels",
            "uptime",
            "num_subs",
            "process",
        ] {
            assert!(json["nodes"][0].get(field).is_some(), "{field}");
        }
        assert!(json["nodes"][0]["process"]["rss"].is_u64());
    }
}
