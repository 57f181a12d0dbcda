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
