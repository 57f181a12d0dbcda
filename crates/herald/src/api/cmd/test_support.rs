//! Helpers for the command tests: a node with an API key and a `chat` namespace, and fake
//! connected clients whose outbound queue the tests inspect.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::config::{ChannelNamespace, Config, NamespaceOptions};
use crate::hub::ClientHandle;
use crate::node::Node;
use crate::protocol;
use crate::ws::{CloseCode, Message, Outbox, Outgoing};

/// The API key of [`node`].
pub const KEY: &str = "test-api-key";

/// A node with `http_api.key` = [`KEY`] and a `chat` namespace.
pub fn node() -> Arc<Node> {
    node_with(|_| {})
}

/// A node like [`node`], with `change` applied to its config.
pub fn node_with(change: impl FnOnce(&mut Config)) -> Arc<Node> {
    let mut config = Config::default();
    config.http_api.key = KEY.into();
    config.channel.namespaces.push(ChannelNamespace {
        name: "chat".into(),
        options: NamespaceOptions::default(),
    });
    change(&mut config);
    Node::new(config).expect("test node")
}

/// A fake client registered in the node's hub, with a 1 MiB outbound queue.
pub fn client(node: &Node, id: &str, user: &str) -> Arc<ClientHandle> {
    let handle = Arc::new(ClientHandle::new(
        id.into(),
        user.into(),
        None,
        Arc::new(Outbox::new(1 << 20, CloseCode(3008), "slow")),
    ));
    node.hub().add_client(handle.clone());
    handle
}

/// Size of the frame of a text message with `json` as payload: what one queued push of that
/// content adds to `Outbox::queued_bytes`.
pub fn frame_len(json: &str) -> usize {
    Message::text(json).frame().len()
}

/// A raw JSON value.
pub fn raw(json: &str) -> protocol::Payload {
    protocol::raw(json).expect("valid JSON")
}

/// Takes everything queued for `client`: the text payloads in order, and the close code and
/// reason if a close was requested.
pub fn drain(client: &ClientHandle) -> (Vec<String>, Option<(u16, String)>) {
    let mut queue = VecDeque::new();
    let close = client.outbox.drain_into(&mut queue);
    let texts = queue
        .iter()
        .map(|item| {
            let payload = match item {
                Outgoing::Shared(m) => m.payload(),
                Outgoing::Frame(f) => f.payload(),
            };
            String::from_utf8(payload.to_vec()).expect("text frame")
        })
        .collect();
    (texts, close.map(|c| (c.code.0, c.reason)))
}
