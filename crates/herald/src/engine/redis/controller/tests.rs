//! The Redis controller between three "nodes" (controllers with recording handlers) on one
//! throwaway redis-server.

use super::*;
use crate::engine::redis::test_server::TestRedis;
use crate::engine::{ProcessInfo, ServerSubscribe, Target};
use crate::protocol::Payload;

/// A node that records the commands applied to it and has a fixed channel list.
struct FakeNode {
    uid: String,
    commands: Mutex<Vec<ControlCommand>>,
    channels: Vec<(String, u32)>,
    shutdown: CancellationToken,
}

impl ControlHandler for FakeNode {
    fn handle_command(&self, command: ControlCommand) -> BoxFuture<'_, ()> {
        lock(&self.commands).push(command);
        Box::pin(std::future::ready(()))
    }
    fn node_info(&self) -> NodeInfo {
        NodeInfo {
            uid: self.uid.clone(),
            name: format!("node-{}", self.uid),
            version: "test".into(),
            num_clients: 1,
            num_users: 1,
            num_channels: 0,
            uptime: 0,
            num_subs: 0,
            process: ProcessInfo { cpu: 0.0, rss: 0 },
        }
    }
    fn shutdown_signal(&self) -> Option<CancellationToken> {
        Some(self.shutdown.clone())
    }
    fn channels(&self, pattern: &str) -> Vec<(String, u32)> {
        let glob = crate::glob::Glob::new(pattern).unwrap();
        self.channels
            .iter()
            .filter(|(c, _)| glob.matches(c))
            .cloned()
            .collect()
    }
}

const INTERVAL: Duration = Duration::from_millis(200);

type Node = (RedisController, Arc<FakeNode>);

async fn start(redis: &TestRedis, uid: &str, channels: &[(&str, u32)]) -> Node {
    let controller = RedisController::with_interval(&redis.shards(), INTERVAL);
    let node = Arc::new(FakeNode {
        uid: uid.into(),
        commands: Mutex::new(Vec::new()),
        channels: channels.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
        shutdown: CancellationToken::new(),
    });
    controller.set_handler(node.clone());
    (controller, node)
}

/// Waits (bounded) until `controller` lists `n` nodes.
async fn wait_for_nodes(controller: &RedisController, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = controller.nodes().await.unwrap().len();
        if listed == n {
            return;
        }
        assert!(Instant::now() < deadline, "{listed} nodes listed, not {n}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_until(mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every node applies a command once — the sender too — in the order they were sent, and a
/// command with binary payloads arrives as it was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_is_applied_once_on_every_node() {
    let redis = TestRedis::start();
    let nodes = [
        start(&redis, "a", &[]).await,
        start(&redis, "b", &[]).await,
        start(&redis, "c", &[]).await,
    ];
    for (controller, _) in &nodes {
        wait_for_nodes(controller, 3).await;
    }
    let target = Target {
        user: "alice".into(),
        ..Target::default()
    };
    let refresh = ControlCommand::Refresh {
        target: target.clone(),
        expired: false,
        expire_at: 42,
    };
    let subscribe = ControlCommand::Subscribe(Box::new(ServerSubscribe {
        target,
        channel: "news".into(),
        info: Some(Payload::from_stored(vec![0u8, 159, 146, 150])),
        data: Some(Payload::from_json(r#"{"hello":1}"#).unwrap()),
        recover_since: Some(crate::protocol::StreamPosition {
            offset: 7,
            epoch: "e".into(),
        }),
        override_: None,
    }));
    nodes[1].0.send(refresh.clone()).await.unwrap();
    nodes[1].0.send(subscribe.clone()).await.unwrap();
    for (_, node) in &nodes {
        wait_until(|| lock(&node.commands).len() >= 2).await;
    }
    // Anything more would have arrived by now.
    tokio::time::sleep(INTERVAL).await;
    for (_, node) in &nodes {
        assert_eq!(
            *lock(&node.commands),
            [refresh.clone(), subscribe.clone()],
            "node {}",
            node.uid
        );
    }
}

/// `nodes` lists this node first, then the others; a node that stops (crashes) leaves the
/// list after three intervals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_come_and_go() {
    let redis = TestRedis::start();
    let a = start(&redis, "a", &[]).await;
    let b = start(&redis, "b", &[]).await;
    let c = start(&redis, "c", &[]).await;
    wait_for_nodes(&a.0, 3).await;
    wait_for_nodes(&b.0, 3).await;
    let listed: Vec<String> =
        b.0.nodes()
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.uid)
            .collect();
    assert_eq!(listed, ["b", "a", "c"]);
    drop(c);
    let gone = Instant::now();
    wait_for_nodes(&a.0, 2).await;
    assert!(gone.elapsed() >= INTERVAL * 2, "{:?}", gone.elapsed());
    assert!(gone.elapsed() < INTERVAL * (GONE_AFTER_INTERVALS + 3));
    let listed: Vec<String> =
        a.0.nodes()
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.uid)
            .collect();
    assert_eq!(listed, ["a", "b"]);
    // A node that shuts down says so: the others drop it at once, not after three intervals.
    b.1.shutdown.cancel();
    let stopped = Instant::now();
    wait_for_nodes(&a.0, 1).await;
    assert!(stopped.elapsed() < INTERVAL, "{:?}", stopped.elapsed());
    // And it no longer announces itself.
    tokio::time::sleep(INTERVAL * 2).await;
    assert_eq!(a.0.nodes().await.unwrap().len(), 1);
}

/// `channels` merges every node's matching channels, summing the counts; a node listed but
/// not answering makes it an error naming that node, within the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_are_surveyed_across_nodes() {
    let redis = TestRedis::start();
    let a = start(&redis, "a", &[("chat:1", 2), ("news", 1)]).await;
    let b = start(&redis, "b", &[("chat:1", 3), ("chat:2", 1)]).await;
    let many: Vec<(String, u32)> = (0..30_000).map(|i| (format!("big:{i:05}"), 1)).collect();
    let many_refs: Vec<(&str, u32)> = many.iter().map(|(c, n)| (c.as_str(), *n)).collect();
    let c = start(&redis, "c", &many_refs).await;
    wait_for_nodes(&a.0, 3).await;
    wait_for_nodes(&c.0, 3).await;
    let chat = a.0.channels("chat:*").await.unwrap();
    assert_eq!(
        chat.into_iter().collect::<Vec<_>>(),
        [("chat:1".to_string(), 5), ("chat:2".to_string(), 1)]
    );
    // A big list comes in several parts, all of it.
    let all = b.0.channels("").await.unwrap();
    assert_eq!(all.len(), 30_000 + 3);
    // A node that stops answering (here: its controller is gone but the others still list
    // it) fails the survey, naming it.
    wait_for_nodes(&b.0, 3).await;
    drop(c);
    let started = Instant::now();
    let e = a.0.channels("").await.unwrap_err().to_string();
    assert!(e.contains("c"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// With Redis gone, a command is still applied here and the caller gets an error saying the
/// others were not told, within the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_redis_is_an_error_not_a_hang() {
    let redis = TestRedis::start();
    let (controller, node) = start(&redis, "a", &[]).await;
    wait_for_nodes(&controller, 1).await;
    drop(redis);
    let command = ControlCommand::Refresh {
        target: Target {
            user: "u".into(),
            ..Target::default()
        },
        expired: true,
        expire_at: 0,
    };
    let started = Instant::now();
    let e = controller
        .send(command.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(e.contains("not sent to the others"), "{e}");
    assert_eq!(*lock(&node.commands), [command]);
    // The node list still answers: this node.
    assert_eq!(controller.nodes().await.unwrap().len(), 1);
}

#[test]
fn messages_are_compact_json() {
    let envelope = Envelope {
        from: "n1".into(),
        body: Body::Command(ControlCommand::Unsubscribe {
            target: Target {
                user: "42".into(),
                ..Target::default()
            },
            channel: "news".into(),
        }),
    };
    assert_eq!(
        serde_json::to_string(&envelope).unwrap(),
        r#"{"from":"n1","body":{"command":{"unsubscribe":{"target":{"user":"42","client":"","session":""},"channel":"news"}}}}"#
    );
}
