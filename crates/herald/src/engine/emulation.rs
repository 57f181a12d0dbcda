//! Emulation requests across nodes: the commands a streaming connection's client POSTed to
//! the emulation endpoint of a node that does not hold the connection (a load balancer without
//! sticky sessions sends each request where it likes). The receiving node forwards them to the
//! node named by the request's `node` field ([`super::Controller::emulate`]), whose connection
//! processes them as if they had been posted there (see `transport/emulation.rs`).
//!
//! What travels: [`Forwarded`] (the session and its commands, at most
//! `emulation.max_request_body_size` bytes, checked by the endpoint) and an answer
//! ([`EmulationOutcome`]) back to the forwarding node, which waits for it within the engine's
//! deadline. [`Waiting`] is the forwarding node's side: the answers it waits on, and a byte
//! budget ([`MAX_FORWARDED_BYTES`]) of requests in flight, past which it answers busy at once
//! rather than hold more memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// Bytes of forwarded emulation requests a node waits on at once, at most.
pub const MAX_FORWARDED_BYTES: usize = 16 << 20;

/// What became of an emulation request on the node that owns (or owned) its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmulationOutcome {
    /// Queued for the connection, which processes it after what came before.
    Delivered,
    /// No connection there has that session (it ended, or the node is gone).
    NoSession,
    /// The connection has too many commands waiting (or the forwarding node too many
    /// requests in flight): retry later.
    Busy,
}

/// An emulation request on its way to the node that owns its session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forwarded {
    /// The session id the connection's connect reply gave.
    pub session: String,
    /// The commands, as the connection reads them (newline-delimited JSON, or
    /// varint-delimited Protobuf); base64 on the wire, since they may be binary.
    #[serde(with = "b64_bytes")]
    pub data: Vec<u8>,
}

/// The forwarding node's side: answers waited on, by request id, within a byte budget.
#[derive(Debug)]
pub struct Waiting {
    budget: Arc<Semaphore>,
    next: AtomicU64,
    answers: Arc<Mutex<HashMap<u64, oneshot::Sender<EmulationOutcome>>>>,
}

impl Default for Waiting {
    fn default() -> Self {
        Waiting {
            budget: Arc::new(Semaphore::new(MAX_FORWARDED_BYTES)),
            next: AtomicU64::new(1),
            answers: Arc::default(),
        }
    }
}

/// One forwarded request waiting for its answer: its id, and the answer to come. Dropped (the
/// answer came, or the deadline passed), it forgets the request and frees its bytes.
pub struct Wait {
    /// The request's id, sent with it and returned with the answer.
    pub id: u64,
    /// Resolves with the owning node's answer.
    pub answer: oneshot::Receiver<EmulationOutcome>,
    answers: Arc<Mutex<HashMap<u64, oneshot::Sender<EmulationOutcome>>>>,
    _bytes: OwnedSemaphorePermit,
}

impl Drop for Wait {
    fn drop(&mut self) {
        crate::sync::lock(&self.answers).remove(&self.id);
    }
}

impl Waiting {
    /// Registers a request of `bytes` about to be forwarded; `None` when the budget is spent
    /// (answer [`EmulationOutcome::Busy`]).
    pub fn start(&self, bytes: usize) -> Option<Wait> {
        let permits = u32::try_from(bytes.clamp(1, MAX_FORWARDED_BYTES)).unwrap_or(u32::MAX);
        let permit = self.budget.clone().try_acquire_many_owned(permits).ok()?;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, answer) = oneshot::channel();
        crate::sync::lock(&self.answers).insert(id, tx);
        Some(Wait {
            id,
            answer,
            answers: self.answers.clone(),
            _bytes: permit,
        })
    }

    /// Hands the answer to request `id` to whoever waits on it (if it still does).
    pub fn answer(&self, id: u64, outcome: EmulationOutcome) {
        if let Some(tx) = crate::sync::lock(&self.answers).remove(&id) {
            let _ = tx.send(outcome);
        }
    }
}

/// Bytes as a base64 string in JSON.
mod b64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_commands_survive_the_wire() {
        let forwarded = Forwarded {
            session: "s1".into(),
            data: vec![0, 255, b'\n', 7],
        };
        let json = serde_json::to_string(&forwarded).unwrap();
        assert_eq!(serde_json::from_str::<Forwarded>(&json).unwrap(), forwarded);
    }

    #[tokio::test]
    async fn answers_reach_their_request_and_the_budget_is_bounded() {
        let waiting = Waiting::default();
        let mut first = waiting.start(100).unwrap();
        let mut second = waiting.start(100).unwrap();
        assert_ne!(first.id, second.id);
        waiting.answer(second.id, EmulationOutcome::NoSession);
        waiting.answer(first.id, EmulationOutcome::Delivered);
        assert_eq!(
            (&mut first.answer).await.unwrap(),
            EmulationOutcome::Delivered
        );
        assert_eq!(
            (&mut second.answer).await.unwrap(),
            EmulationOutcome::NoSession
        );
        // A request over what is left of the budget is refused until bytes are freed.
        assert!(
            waiting.start(MAX_FORWARDED_BYTES).is_none(),
            "200 bytes are in flight"
        );
        drop((first, second));
        let big = waiting.start(MAX_FORWARDED_BYTES).unwrap();
        assert!(waiting.start(1).is_none());
        drop(big);
        assert!(waiting.start(1).is_some());
        // An answer to a request nobody waits on any more is dropped.
        waiting.answer(12345, EmulationOutcome::Busy);
        assert!(crate::sync::lock(&waiting.answers).is_empty());
    }
}
