//! The Redis engine (`engine.type: "redis"`): several Herald nodes share one Redis (or shards
//! of it), as Centrifugo nodes do.
//!
//! * [`RedisPresence`] (`presence.rs`): presence entries per channel in Redis, each with an
//!   expiry that the node which added it keeps pushing forward, so that a crashed node's
//!   clients vanish within `engine.redis.presence_ttl`;
//! * [`RedisController`] (`controller.rs`): control commands (API `disconnect`, `subscribe`,
//!   `unsubscribe`, `refresh`) over a Redis PUB/SUB channel to every node, node discovery for
//!   `info`, and the `channels` survey;
//! * `client_info.rs`: how a [`crate::protocol::ClientInfo`] is written into Redis, binary-safe.

pub(crate) mod client_info;
mod controller;
mod presence;
#[cfg(test)]
pub(crate) mod test_server;

pub use controller::{PubSubOpener, RedisController};
pub use presence::RedisPresence;

use std::future::Future;
use std::time::Duration;

use super::EngineError;

/// Runs one Redis call with a deadline: a Redis that is down or slow gives a clear error after
/// `timeout`, never a hang.
pub(crate) async fn deadline<T>(
    timeout: Duration,
    what: &str,
    call: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, EngineError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(EngineError::Unavailable(format!(
            "redis {what} failed: {e}; check that Redis is up and engine.redis points to it"
        ))),
        Err(_) => Err(EngineError::Unavailable(format!(
            "redis {what}: no answer within {timeout:?}; check that Redis is up and reachable \
             (engine.redis.io_timeout)"
        ))),
    }
}
