//! `info`: what this node is and how loaded it is — version, uptime, connections, users,
//! channels, subscriptions, CPU and memory — for dashboards and health checks.
//!
//! `POST /api/info {}` → `{"result": {"nodes": [{"uid": …, "name": …, "version": …,
//! "num_clients": …, "num_users": …, "num_channels": …, "num_subs": …, "uptime": …,
//! "process": {"cpu": …, "rss": …}}]}}`: every node the engine's controller knows (the
//! embedded engine: this one).

use serde::{Deserialize, Serialize};

pub use crate::engine::{NodeInfo, ProcessInfo};
use crate::node::Node;
use crate::protocol;

/// Request of `info`: no fields.
#[derive(Debug, Default, Deserialize)]
pub struct InfoRequest {}

/// Result of `info`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InfoResult {
    /// The nodes of the deployment, this one first.
    pub nodes: Vec<NodeInfo>,
}

/// Describes every node, as the engine's controller lists them.
///
/// Errors: 100 when the controller cannot list the nodes.
pub async fn execute(node: &Node, _req: InfoRequest) -> Result<InfoResult, protocol::Error> {
    let nodes = node.controller().nodes().await.map_err(|e| {
        tracing::error!("info: cannot list the nodes: {e}");
        e.to_protocol()
    })?;
    Ok(InfoResult { nodes })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[tokio::test]
    async fn describes_the_node() {
        let node = node();
        let a = client(&node, "a", "alice");
        let a2 = client(&node, "a2", "alice");
        let _b = client(&node, "b", "bob");
        node.hub().subscribe("news", &a);
        node.hub().subscribe("news", &a2);
        node.hub().subscribe("chat:1", &a);
        let info = execute(&node, InfoRequest {}).await.unwrap();
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
