//! The seam itself: the client protocol runs on a transport that is not a WebSocket.
//!
//! [`FakeTransport`] keeps commands in a channel and output in a plain outbox, and records
//! the [`Disconnect`] the client closes it with: a test drives `client::serve` through
//! connect, subscribe, a publication and a disconnect with no socket anywhere.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;

use super::*;
use crate::node::{LiveConnection, Node};
use crate::ws::Outgoing;

/// An in-memory transport: commands come from a channel, output stays in the outbox for
/// the test to take, and a close is recorded as the [`Disconnect`] it was given.
struct FakeTransport {
    outbox: Arc<Outbox>,
    inbound: mpsc::UnboundedReceiver<Inbound>,
    /// What the client closed the connection with, once it did.
    closed: Arc<Mutex<Option<Disconnect>>>,
    /// Whether it plays a unidirectional transport.
    uni: bool,
}

impl Transport for FakeTransport {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn protocol(&self) -> Encoding {
        Encoding::Json
    }

    fn unidirectional(&self) -> bool {
        self.uni
    }

    fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    fn send_replies(&self, replies: FrameBuf) -> Result<(), PushError> {
        self.outbox
            .push_frame(replies.finish(crate::prepared::opcode(self.protocol())))
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Inbound>, Failure>> {
        // Closed by the client, or asked to close from outside (a real transport's writer is
        // woken by the outbox; here the test sends a wake-up): the connection ends.
        if self.closed_with().is_some() || self.outbox.is_closed() {
            return Poll::Ready(Ok(None));
        }
        self.inbound.poll_recv(cx).map(Ok)
    }

    fn close(&self, disconnect: &Disconnect) {
        *self.closed.lock().expect("not poisoned") = Some(disconnect.clone());
    }

    fn ended_with(&self) -> u16 {
        self.closed_with().map_or(1006, |d| d.code)
    }

    fn message_size_limit(&self, _: &Config) -> (&'static str, usize) {
        ("fake.message_size_limit", usize::MAX)
    }
}

impl FakeTransport {
    fn closed_with(&self) -> Option<Disconnect> {
        self.closed.lock().expect("not poisoned").clone()
    }
}

/// The test's side of a [`FakeTransport`].
struct Peer {
    commands: mpsc::UnboundedSender<Inbound>,
    outbox: Arc<Outbox>,
    closed: Arc<Mutex<Option<Disconnect>>>,
}

impl Peer {
    fn send(&self, json: &str) {
        self.commands
            .send(Inbound::Commands(bytes::Bytes::copy_from_slice(
                json.as_bytes(),
            )))
            .expect("the client is running");
    }

    /// The next message written to the connection, waiting up to two seconds for it.
    async fn next(&self, queued: &mut VecDeque<String>) -> String {
        for _ in 0..400 {
            let mut items = VecDeque::new();
            self.outbox.drain_into(&mut items);
            queued.extend(items.iter().map(|item| {
                let payload = match item {
                    Outgoing::Shared(m) => m.payload(),
                    Outgoing::Frame(f) => f.payload(),
                };
                String::from_utf8_lossy(payload).into_owned()
            }));
            if let Some(message) = queued.pop_front() {
                return message;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("nothing was written to the connection in 2 s");
    }
}

/// A node letting anonymous clients in, a client served on a fake transport, and the test's
/// side of it.
fn start() -> (Arc<Node>, Peer, tokio::task::JoinHandle<()>) {
    start_with(false)
}

/// [`start`], the fake transport unidirectional if `uni`.
fn start_with(uni: bool) -> (Arc<Node>, Peer, tokio::task::JoinHandle<()>) {
    let mut config = Config::default();
    config.client.insecure = true;
    let node = Node::new(config).expect("test node");
    let (commands, inbound) = mpsc::unbounded_channel();
    let outbox = Arc::new(Outbox::new(1 << 20, CloseCode(3008), "slow"));
    let closed = Arc::new(Mutex::new(None));
    let transport = FakeTransport {
        outbox: outbox.clone(),
        inbound,
        closed: closed.clone(),
        uni,
    };
    let task = tokio::spawn(crate::client::serve(
        LiveConnection::new(node.clone()),
        transport,
    ));
    let peer = Peer {
        commands,
        outbox,
        closed,
    };
    (node, peer, task)
}

/// Connect, subscribe, a publication, a disconnect: the whole life of a client, on a
/// transport that is not a WebSocket.
#[tokio::test]
async fn the_client_runs_on_any_transport() {
    let (node, peer, task) = start();
    let mut queued = VecDeque::new();

    peer.send(r#"{"id":1,"connect":{}}"#);
    let reply = peer.next(&mut queued).await;
    let reply: serde_json::Value = serde_json::from_str(&reply).expect("a JSON reply");
    let client = reply["connect"]["client"].as_str().expect("a client id");
    assert_eq!(reply["id"], 1);
    assert_eq!(node.hub().num_clients(), 1);

    peer.send(r#"{"id":2,"subscribe":{"channel":"news"}}"#);
    assert_eq!(peer.next(&mut queued).await, r#"{"id":2,"subscribe":{}}"#);

    // Published by the client itself: its own publication reaches it through the hub and the
    // outbox, as any subscriber's does.
    peer.send(r#"{"id":3,"publish":{"channel":"news","data":{"text":"hi"}}}"#);
    let mut got = vec![peer.next(&mut queued).await, peer.next(&mut queued).await];
    got.sort();
    assert_eq!(
        got,
        [
            r#"{"id":3,"publish":{}}"#,
            format!(
                r#"{{"push":{{"channel":"news","pub":{{"data":{{"text":"hi"}},"info":{{"user":"","client":"{client}"}}}}}}}}"#
            )
            .as_str(),
        ]
    );

    // A second connect breaks the protocol: the client closes its transport with the
    // disconnect (not a WebSocket close frame), and its task ends.
    peer.send(r#"{"id":4,"connect":{}}"#);
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("the client ends once its transport is closed")
        .expect("the client task did not panic");
    assert_eq!(
        *peer.closed.lock().expect("not poisoned"),
        Some(Disconnect::BAD_REQUEST)
    );
    assert_eq!(node.hub().num_clients(), 0, "the client left the hub");
    assert_eq!(node.live_connections(), 0);
}

/// A disconnect from outside the client's task (the server API, keepalive, shutdown) goes
/// through the outbox as the disconnect's code and reason, whatever the transport.
#[tokio::test]
async fn a_disconnect_from_the_hub_reaches_the_transport_through_the_outbox() {
    let (node, peer, task) = start();
    let mut queued = VecDeque::new();
    peer.send(r#"{"id":1,"connect":{}}"#);
    peer.next(&mut queued).await;

    let clients = node.hub().all_clients();
    assert_eq!(clients.len(), 1);
    assert!(clients[0].disconnect(&Disconnect::custom(4000, "bye".to_owned())));
    assert!(
        !clients[0].disconnect(&Disconnect::SHUTDOWN),
        "the first close wins"
    );
    let mut items = VecDeque::new();
    let request = peer.outbox.drain_into(&mut items).expect("a close request");
    assert_eq!((request.code.0, request.reason.as_str()), (4000, "bye"));

    // The fake transport's writer, woken, sees the close and ends the connection.
    peer.commands
        .send(Inbound::Wake)
        .expect("the client is running");
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("the client ends once its connection is closed")
        .expect("the client task did not panic");
    assert_eq!(node.hub().num_clients(), 0);
}

/// A unidirectional transport's connect request is answered with a connect push (no reply
/// id, no pings asked for: its client cannot answer them), and the client is connected.
#[tokio::test]
async fn a_unidirectional_connect_is_answered_with_a_connect_push() {
    let (node, peer, _task) = start_with(true);
    peer.commands
        .send(Inbound::Connect(Box::default()))
        .expect("the client is running");
    let mut queued = VecDeque::new();
    let first: serde_json::Value =
        serde_json::from_str(&peer.next(&mut queued).await).expect("JSON");
    let connect = &first["push"]["connect"];
    assert!(connect["client"].is_string(), "{first}");
    assert!(first.get("id").is_none(), "{first}");
    assert!(connect.get("pong").is_none(), "{first}");
    assert_eq!(node.hub().num_clients(), 1);
}
