//! Server-side refresh: a connection or subscription whose expiry the policy extends itself
//! (Centrifugo's refresh and sub-refresh proxies) rather than the client with a new token.
//!
//! When such a connection or subscription gets an expiry, [`watch_connection`] or
//! [`watch_subscription`] starts one task that sleeps until then and asks the policy
//! ([`Policy::refresh`](super::Policy::refresh), [`Policy::sub_refresh`](super::Policy::sub_refresh)
//! with an empty token): a new expiry sends it back to sleep, `None` ends the watch (no longer
//! expires), a refusal ends the connection (3005, or the policy's disconnect) or the
//! subscription (unsubscribe push 2501). The task holds the client weakly and stops once the
//! client is gone, unsubscribed from the channel, or the server shuts down; the client's own
//! task keeps no timer for it.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::Refusal;
use crate::hub::ClientHandle;
use crate::node::{Node, unix_now};
use crate::protocol::{Disconnect, Push, Unsubscribe};

/// Sleeps until unix time `at`; false if the node shut down meanwhile.
async fn sleep_until(node: &Node, at: u64) -> bool {
    let wait = Duration::from_secs(at.saturating_sub(unix_now()));
    tokio::select! {
        () = tokio::time::sleep(wait) => true,
        () = node.shutdown().cancelled() => false,
    }
}

/// The client, if it is still connected.
fn alive(client: &Weak<ClientHandle>) -> Option<Arc<ClientHandle>> {
    client.upgrade().filter(|c| !c.outbox.is_closed())
}

/// Refreshes `client`'s connection from unix time `at` on (see the module documentation).
pub fn watch_connection(node: &Arc<Node>, client: &Arc<ClientHandle>, at: u64) {
    let node = node.clone();
    let weak = Arc::downgrade(client);
    tokio::spawn(async move {
        let mut at = at;
        loop {
            if !sleep_until(&node, at).await {
                return;
            }
            let Some(client) = alive(&weak) else { return };
            match node.policy().refresh(&node, &client, "").await {
                Ok(Some(next)) => at = next,
                Ok(None) => return,
                Err(Refusal::Error(_)) => {
                    client.disconnect(&Disconnect::EXPIRED);
                    return;
                }
                Err(Refusal::Disconnect(disconnect)) => {
                    client.disconnect(&disconnect);
                    return;
                }
            }
        }
    });
}

/// Refreshes `client`'s subscription to `channel` from unix time `at` on (see the module
/// documentation).
pub fn watch_subscription(node: &Arc<Node>, client: &Arc<ClientHandle>, channel: &str, at: u64) {
    let node = node.clone();
    let weak = Arc::downgrade(client);
    let channel = channel.to_owned();
    tokio::spawn(async move {
        let mut at = at;
        loop {
            if !sleep_until(&node, at).await {
                return;
            }
            let Some(client) = alive(&weak) else { return };
            if !client.is_subscribed(&channel) {
                return;
            }
            match node
                .policy()
                .sub_refresh(&node, &client, &channel, "")
                .await
            {
                Ok(Some(next)) => at = next,
                Ok(None) => return,
                Err(Refusal::Error(_)) => {
                    expire(&node, &client, &channel).await;
                    return;
                }
                Err(Refusal::Disconnect(disconnect)) => {
                    client.disconnect(&disconnect);
                    return;
                }
            }
        }
    });
}

/// Ends `client`'s subscription to `channel` as expired: it leaves the channel first (so no
/// publication follows), then gets the unsubscribe push 2501, after which the SDK subscribes
/// again.
async fn expire(node: &Node, client: &ClientHandle, channel: &str) {
    let Some(flags) = node.hub().unsubscribe(channel, client) else {
        return;
    };
    let push = Push::unsubscribe(channel, Unsubscribe::EXPIRED);
    match crate::prepared::push_message(client.encoding, &push) {
        // A closed queue means the connection is going away anyway.
        Ok(message) => {
            let _ = client.outbox.push(message);
        }
        Err(e) => tracing::error!(channel, "encoding an unsubscribe push failed: {e}"),
    }
    node.left(channel, client, flags).await;
}
