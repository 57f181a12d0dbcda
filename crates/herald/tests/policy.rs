//! The policy seam, end to end: a node given a policy of the test's own (as a backend proxy
//! would be given one) answers a real WebSocket client's `subscribe`, `publish` and `rpc` with
//! that policy's decisions, not the configuration's. The server runs in this process, since
//! a policy is code, not configuration.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use herald::config::Config;
use herald::hub::ClientHandle;
use herald::node::Node;
use herald::policy::{
    ConfigPolicy, ConnectContext, Credentials, Policy, PolicyFuture, PublishGrant, Refusal,
    SubscribeGrant,
};
use herald::protocol::{self, ConnectRequest, Error, Payload, RpcRequest, RpcResult};
use herald::server::Server as HeraldServer;
use serde_json::json;

/// The configuration's policy, except that channels named `vault:…` are refused with an
/// error of its own, publications to `shout` are rewritten, and RPC echoes its data. Counts
/// the subscribes it is asked about.
struct TestPolicy {
    subscribes: Arc<AtomicUsize>,
}

impl Policy for TestPolicy {
    fn connect<'a>(
        &'a self,
        node: &'a Node,
        request: &'a ConnectRequest,
        context: ConnectContext<'a>,
    ) -> PolicyFuture<'a, Result<Credentials, Refusal>> {
        ConfigPolicy.connect(node, request, context)
    }

    fn refresh<'a>(
        &'a self,
        node: &'a Node,
        client: &'a ClientHandle,
        token: &'a str,
    ) -> PolicyFuture<'a, Result<Option<u64>, Refusal>> {
        ConfigPolicy.refresh(node, client, token)
    }

    fn subscribe<'a>(
        &'a self,
        node: &'a Node,
        client: &'a ClientHandle,
        channel: &'a str,
        token: &'a str,
    ) -> PolicyFuture<'a, Result<SubscribeGrant, Refusal>> {
        self.subscribes.fetch_add(1, Ordering::SeqCst);
        if channel.starts_with("vault:") {
            let refused = Refusal::Error(Error::new(4403, "the vault is closed"));
            return Box::pin(std::future::ready(Err(refused)));
        }
        ConfigPolicy.subscribe(node, client, channel, token)
    }

    fn sub_refresh<'a>(
        &'a self,
        node: &'a Node,
        client: &'a ClientHandle,
        channel: &'a str,
        token: &'a str,
    ) -> PolicyFuture<'a, Result<Option<u64>, Refusal>> {
        ConfigPolicy.sub_refresh(node, client, channel, token)
    }

    fn publish<'a>(
        &'a self,
        node: &'a Node,
        client: &'a ClientHandle,
        channel: &'a str,
        data: &'a Payload,
    ) -> PolicyFuture<'a, Result<PublishGrant, Refusal>> {
        if channel == "shout" {
            let grant = PublishGrant {
                data: protocol::raw(r#"{"rewritten":true}"#).ok(),
                ..PublishGrant::default()
            };
            return Box::pin(std::future::ready(Ok(grant)));
        }
        ConfigPolicy.publish(node, client, channel, data)
    }

    fn rpc<'a>(
        &'a self,
        _node: &'a Node,
        _client: &'a ClientHandle,
        request: &'a RpcRequest,
    ) -> PolicyFuture<'a, Result<RpcResult, Refusal>> {
        let result = RpcResult {
            data: request.data.clone(),
        };
        Box::pin(std::future::ready(Ok(result)))
    }

    fn history(
        &self,
        node: &Node,
        client: &ClientHandle,
        channel: &str,
        options: &herald::config::NamespaceOptions,
    ) -> Result<(), Error> {
        ConfigPolicy.history(node, client, channel, options)
    }

    fn presence(
        &self,
        node: &Node,
        client: &ClientHandle,
        channel: &str,
        options: &herald::config::NamespaceOptions,
    ) -> Result<(), Error> {
        ConfigPolicy.presence(node, client, channel, options)
    }
}

/// A node on a free local port whose config lets anyone in and subscribe or publish
/// anywhere (`client.insecure`), with `policy` set when given; returns its WebSocket URL.
async fn start(policy: Option<Box<dyn Policy>>) -> (Arc<Node>, String) {
    let mut config = Config::default();
    config.http_server.address = "127.0.0.1".into();
    config.http_server.port = 0;
    config.client.insecure = true;
    config
        .channel
        .namespaces
        .push(herald::config::ChannelNamespace {
            name: "vault".into(),
            options: herald::config::NamespaceOptions::default(),
        });
    let node = Node::new(config).expect("node");
    if let Some(policy) = policy {
        assert!(node.set_policy(policy).is_ok(), "a policy was set already");
    }
    let server = HeraldServer::bind(node.clone()).await.expect("bind");
    let url = format!(
        "ws://{}{}",
        server.local_addr().expect("address"),
        herald::server::websocket_path(node.config())
    );
    tokio::spawn(server.run());
    (node, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_asks_the_nodes_policy() {
    let subscribes = Arc::new(AtomicUsize::new(0));
    let policy = TestPolicy {
        subscribes: subscribes.clone(),
    };
    let (node, url) = start(Some(Box::new(policy))).await;
    let mut ws = Ws::open(&url).await;
    let reply = ws.connect("").await;
    assert!(reply.get("connect").is_some(), "{reply}");

    // The configuration (insecure) would allow it; the policy refuses, with its own error.
    let reply = ws.subscribe("vault:gold").await;
    assert_eq!(
        reply["error"],
        json!({"code": 4403, "message": "the vault is closed"}),
        "{reply}"
    );
    ws.subscribe_ok("news").await;
    assert_eq!(subscribes.load(Ordering::SeqCst), 2, "each subscribe asks");

    // The policy rewrites a publication, and answers RPC.
    ws.subscribe_ok("shout").await;
    let reply = ws.publish("shout", json!({"text": "hi"})).await;
    assert!(reply.get("error").is_none(), "{reply}");
    let push = ws.next_push().await;
    assert_eq!(
        push["push"]["pub"]["data"],
        json!({"rewritten": true}),
        "{push}"
    );
    let reply = ws
        .call(json!({"rpc": {"method": "echo", "data": {"n": 1}}}))
        .await;
    assert_eq!(reply["rpc"]["data"], json!({"n": 1}), "{reply}");
    node.shutdown().cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_policy_the_configuration_decides() {
    let (node, url) = start(None).await;
    let mut ws = Ws::open(&url).await;
    ws.connect("").await;
    ws.subscribe_ok("vault:gold").await;
    // RPC: no policy serves it.
    let reply = ws.call(json!({"rpc": {"method": "echo"}})).await;
    assert_error(&reply, 108);
    // A policy is set once: the node keeps the first.
    let second = TestPolicy {
        subscribes: Arc::default(),
    };
    assert!(node.set_policy(Box::new(ConfigPolicy)).is_ok());
    assert!(node.set_policy(Box::new(second)).is_err());
    node.shutdown().cancel();
}
