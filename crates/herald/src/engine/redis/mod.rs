//! The Redis engine (`engine.type: redis`): several Herald nodes behind a load balancer share
//! publications, history and (with `presence.rs` and `controller.rs`) presence and control
//! commands through Redis, as Centrifugo nodes do.
//!
//! # Modules
//!
//! * `shards.rs` — the connection layer: [`RedisShards`] (channels spread over the shards of
//!   `engine.redis.address` by a jump consistent hash of their name; or one Redis Cluster; or
//!   one Sentinel-managed master) and [`Shard`], with its command connection
//!   ([`Shard::conn`], a cloneable [`ShardConn`] implementing `redis::aio::ConnectionLike`)
//!   and fresh PUB/SUB connections ([`Shard::pubsub`]);
//! * `shards/sentinel.rs` — following a Sentinel-managed master through a failover: the
//!   sentinels are asked every second which master they name, and a move drops the shard's
//!   connections, which reconnect to the new master;
//! * `pubsub.rs` — [`PubSubLink`]: a kept-alive PUB/SUB connection to one shard, batching
//!   SUBSCRIBE/UNSUBSCRIBE, resubscribing after a reconnect and probing its own liveness,
//!   handing messages to a [`PubSubHandler`];
//! * `broker.rs` — [`RedisBroker`], the engine's `Broker` + `History`;
//! * `publish_batch.rs` — `PublishBatcher`: the publishes that queue on a shard while its
//!   previous `publish.lua` call is in flight go together in the next call;
//! * `codec.rs` — how publications, joins and leaves are written into PUB/SUB messages and
//!   stream entries;
//! * `presence.rs` — [`RedisPresence`], the engine's `PresenceManager`: expiring entries per
//!   channel, refreshed by the node that added them, so a crashed node's clients vanish within
//!   `engine.redis.presence_ttl`;
//! * `controller.rs` — [`RedisController`], the engine's `Controller`: control commands (API
//!   `disconnect`, `subscribe`, `unsubscribe`, `refresh`) to every node over PUB/SUB, node
//!   discovery for `info`, and the `channels` survey;
//! * `client_info.rs` — how a `ClientInfo` is written into Redis (presence), binary-safe;
//! * `tls.rs` — `engine.redis.tls`;
//! * `*.lua` — the scripts (publish, read, remove), loaded with `include_str!` and run by SHA.
//!
//! # Using the connection layer (presence, controller)
//!
//! ```text
//! let shards = RedisShards::connect(&config.engine.redis)?;     // parses; connects lazily
//! let shard = shards.for_key(channel);                          // or shards.all()
//! let mut conn = shard.conn().await?;                           // EngineError::Unavailable when down
//! redis::cmd("HSET").arg(key).arg(field).arg(value).query_async::<()>(&mut conn).await
//! let link = PubSubLink::start(shard.clone(), probe_channel, shards.io_timeout(), weak_handler);
//! link.subscribe(pubsub_channel).await?;                        // messages reach the handler
//! ```
//!
//! Keys carry the channel in a hash tag (`{channel}`) so that a channel's keys share one slot
//! of a Redis Cluster and a script can touch them together.
//!
//! # Keys (prefix `P` = `engine.redis.prefix`, default `herald`)
//!
//! | key | type | what |
//! | --- | --- | --- |
//! | `P.stream.{ch}` | stream | the channel's publications; entry id `<offset>-0`; fields `d` data, `i` publisher (JSON), `t` tags (JSON), `m` time (Unix ms); `MAXLEN` = `history_size`; expires `history_ttl` after the last publish |
//! | `P.meta.{ch}` | hash | `e` epoch, `s` top offset, `v`/`ve` last version and its epoch; expires `history_meta_ttl` after the last publish (never when 0) |
//! | `P.idem.{ch}.<key>` | string | the offset of the publication that used an `idempotency_key`; 5 minutes |
//! | PUB/SUB `P.ch.<ch>` | channel | the channel's publications, joins and leaves (see `codec.rs`) |
//! | PUB/SUB `P.probe.<node>.<shard>` | channel | this node's liveness probes |
//! | `P.presence.{data,expire,user,users}.{ch}` | hash, zset, hash, hash | presence (see `presence.rs`) |
//! | PUB/SUB `P.control`, `P.control.<node>` | channel | control messages to every node, and to one (see `controller.rs`) |
//!
//! **Why streams, not lists.** A stream reads a range by offset in either direction
//! (`XRANGE`/`XREVRANGE` from an entry id) and trims by length (`MAXLEN`), which is exactly
//! what `history`, recovery and `history_size` ask; a list would need index arithmetic against
//! a moving head. The entry id is the offset itself, so reading "after offset N" is one
//! `XRANGE` from `N+1`.

mod broker;
pub(crate) mod client_info;
mod codec;
mod controller;
mod presence;
mod publish_batch;
mod pubsub;
mod shards;
#[cfg(test)]
pub(crate) mod test_server;
mod tls;

pub use broker::RedisBroker;
pub use controller::RedisController;
pub use presence::RedisPresence;
pub use pubsub::{PROBE_INTERVAL, PubSubHandler, PubSubLink};
pub use shards::{Lane, RETRY_AFTER, RedisShards, Shard, ShardConn};

use super::EngineError;

/// Runs one Redis call of the presence manager or the controller with a deadline on top of the
/// connection's own `io_timeout` (which a script's EVALSHA-then-EVAL may spend twice): a Redis
/// that is down or slow gives a clear error, never a hang.
pub(crate) async fn deadline<T>(
    timeout: std::time::Duration,
    what: &str,
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, EngineError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(EngineError::Unavailable(format!(
            "Redis {what} failed: {e}; check that Redis is up and engine.redis points to it"
        ))),
        Err(_) => Err(EngineError::Unavailable(format!(
            "Redis {what}: no answer within {timeout:?}; check that Redis is up and reachable \
             (engine.redis.io_timeout)"
        ))),
    }
}

#[cfg(test)]
mod tests;
