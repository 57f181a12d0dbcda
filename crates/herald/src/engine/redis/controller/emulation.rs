//! Emulation requests between nodes over the control channels (see `engine/emulation.rs`): a
//! node forwards a request to the owning node's own channel (`<prefix>.control.<uid>`) and
//! waits for the answer on its own. The owning node hands the commands to the connection as
//! the message arrives, within the link's in-order delivery, so requests forwarded one after
//! the other reach the connection in that order.

use std::sync::Arc;

use bytes::Bytes;

use super::{Body, Inner};
use crate::engine::EngineError;
use crate::engine::emulation::{EmulationOutcome, Forwarded};

impl Inner {
    /// Sends `commands` to the node `node` and waits (bounded) for its answer.
    pub(super) async fn forward_emulation(
        &self,
        node: &str,
        session: &str,
        commands: Bytes,
    ) -> Result<EmulationOutcome, EngineError> {
        // A node not heard of is gone, and its connections with it.
        if !self.live_nodes().iter().any(|n| n.uid == node) {
            return Ok(EmulationOutcome::NoSession);
        }
        let Some(mut wait) = self.emulations.start(commands.len()) else {
            return Ok(EmulationOutcome::Busy);
        };
        let request = Forwarded {
            session: session.to_owned(),
            data: commands.to_vec(),
        };
        let id = wait.id;
        self.publish(self.node_channel(node), Body::Emulate { id, request })
            .await?;
        match tokio::time::timeout(self.timeout, &mut wait.answer).await {
            Ok(Ok(outcome)) => Ok(outcome),
            _ => Err(EngineError::Unavailable(format!(
                "node {node} did not answer an emulation request within {:?}",
                self.timeout
            ))),
        }
    }

    /// Hands a forwarded request to this node's connection and answers the sender.
    pub(super) fn emulate_here(self: &Arc<Self>, from: String, id: u64, request: Forwarded) {
        let Ok(handler) = self.handler() else { return };
        let outcome = handler.emulate(&request.session, Bytes::from(request.data));
        let inner = self.clone();
        tokio::spawn(async move {
            let reply = Body::EmulateReply { id, outcome };
            if let Err(e) = inner.publish(inner.node_channel(&from), reply).await {
                tracing::warn!("could not answer an emulation request of node {from}: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::engine::redis::RedisController;
    use crate::engine::redis::test_server::TestRedis;
    use crate::engine::{
        BoxFuture, ControlCommand, ControlHandler, Controller, NodeInfo, ProcessInfo,
    };

    /// A node with one streaming session, `s1`, recording what it is handed.
    struct Owner {
        uid: &'static str,
        handed: Mutex<Vec<Vec<u8>>>,
    }

    impl ControlHandler for Owner {
        fn handle_command(&self, _command: ControlCommand) -> BoxFuture<'_, ()> {
            Box::pin(std::future::ready(()))
        }
        fn node_info(&self) -> NodeInfo {
            NodeInfo {
                uid: self.uid.into(),
                name: self.uid.into(),
                version: "test".into(),
                num_clients: 0,
                num_users: 0,
                num_channels: 0,
                uptime: 0,
                num_subs: 0,
                process: ProcessInfo { cpu: 0.0, rss: 0 },
            }
        }
        fn channels(&self, _pattern: &str) -> Vec<(String, u32)> {
            Vec::new()
        }
        fn emulate(&self, session: &str, commands: Bytes) -> EmulationOutcome {
            if session != "s1" {
                return EmulationOutcome::NoSession;
            }
            crate::sync::lock(&self.handed).push(commands.to_vec());
            EmulationOutcome::Delivered
        }
    }

    /// Requests forwarded one after the other reach the owning node in that order, binary
    /// bytes intact; an unknown session or node is `NoSession`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forwarded_requests_reach_the_owner_in_order() {
        let redis = TestRedis::start();
        let nodes: Vec<(RedisController, Arc<Owner>)> = ["a", "b"]
            .into_iter()
            .map(|uid| {
                let controller =
                    RedisController::with_interval(&redis.shards(), Duration::from_millis(200));
                let owner = Arc::new(Owner {
                    uid,
                    handed: Mutex::new(Vec::new()),
                });
                controller.set_handler(owner.clone());
                (controller, owner)
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        while nodes[0].0.nodes().await.unwrap().len() < 2 {
            assert!(Instant::now() < deadline, "a does not see b");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (a, b) = (&nodes[0].0, &nodes[1].1);
        let sent: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i, 0, 255, b'\n']).collect();
        for commands in &sent {
            let outcome = a.emulate("b", "s1", Bytes::from(commands.clone())).await;
            assert_eq!(outcome.unwrap(), EmulationOutcome::Delivered);
        }
        assert_eq!(*crate::sync::lock(&b.handed), sent);
        let unknown = a.emulate("b", "s2", Bytes::from_static(b"x")).await;
        assert_eq!(unknown.unwrap(), EmulationOutcome::NoSession);
        let nowhere = a.emulate("z", "s1", Bytes::from_static(b"x")).await;
        assert_eq!(nowhere.unwrap(), EmulationOutcome::NoSession);
    }
}
