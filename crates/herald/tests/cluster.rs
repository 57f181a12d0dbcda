//! Three real `herald` processes on one Redis (`engine.type: "redis"`), each with its own
//! working and data directory, behind no load balancer: clients pick a node each. What a user
//! of a cluster relies on: publications reach every node's subscribers once and in order,
//! presence and join/leave span the nodes, a client recovers on another node, the server API
//! acts on a user wherever they are connected, `info` lists the nodes, and a node killed with
//! `kill -9` leaves `info` and presence by itself while its clients move on and recover.
//!
//! Every test starts its own `redis-server` on a free port (`common::redis`). Presence TTL is
//! 3 s here (refreshed every second), so a dead node's clients go within seconds.

mod common;

use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::*;
use serde_json::{Value, json};

/// Presence TTL of the test nodes.
const PRESENCE_TTL: Duration = Duration::from_secs(3);

/// Three nodes on one Redis; the Redis outlives the nodes (fields drop in order).
struct Cluster {
    nodes: Vec<Server>,
    redis: RedisServer,
}

fn node_config(redis: &RedisServer) -> Value {
    json!({
        "engine": {"type": "redis", "redis": {"address": redis.url(), "presence_ttl": "3s"}},
        "client": {"presence_update_interval": "1s"},
        "channel": {"namespaces": [{
            "name": "room",
            "presence": true,
            "join_leave": true,
            "force_push_join_leave": true,
            "allow_subscribe_for_client": true,
            "allow_publish_for_subscriber": true,
            "allow_presence_for_subscriber": true,
            "history_size": 1000,
            "history_ttl": "300s",
            "force_recovery": true
        }]}
    })
}

impl Cluster {
    /// Starts a Redis and three nodes, and waits until every node lists all three.
    async fn start() -> Cluster {
        let redis = RedisServer::start();
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(Server::start(node_config(&redis)).await);
        }
        let cluster = Cluster { nodes, redis };
        for node in &cluster.nodes {
            wait_for(
                Duration::from_secs(10),
                "every node lists three nodes",
                || async move { node_count(node).await == 3 },
            )
            .await;
        }
        cluster
    }

    /// Starts one more node on the same Redis.
    async fn add_node(&mut self) -> &Server {
        self.nodes
            .push(Server::start(node_config(&self.redis)).await);
        self.nodes.last().unwrap()
    }
}

async fn node_count(node: &Server) -> usize {
    node.api_ok("info", json!({})).await["nodes"]
        .as_array()
        .map_or(0, Vec::len)
}

/// Polls `check` every 50 ms until it holds, failing after `within`.
async fn wait_for<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next push of `kind` (`pub`, `join`, `leave`, …) in `channel`, skipping other pushes.
async fn next_push_of(ws: &mut Ws, channel: &str, kind: &str) -> Value {
    let deadline = Instant::now() + STEP;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let push = ws
            .next_push_within(left)
            .await
            .unwrap_or_else(|| panic!("no {kind} push in {channel} within {STEP:?}"));
        if push["push"]["channel"] == channel && push["push"].get(kind).is_some() {
            return push["push"][kind].clone();
        }
    }
}

/// The client ids in a `presence` result.
fn present(result: &Value) -> Vec<String> {
    let mut ids: Vec<String> = result["presence"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    ids.sort();
    ids
}

fn client_id(connect_reply: &Value) -> String {
    connect_reply["connect"]["client"]
        .as_str()
        .expect("client id in the connect reply")
        .to_owned()
}

async fn connect(node: &Server, user: &str) -> (Ws, String) {
    let mut ws = node.ws().await;
    let reply = ws.connect(&token(user)).await;
    (ws, client_id(&reply))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publication_reaches_the_subscribers_of_every_node_once_and_in_order() {
    let cluster = Cluster::start().await;
    let mut subscribers = Vec::new();
    for node in &cluster.nodes {
        let mut ws = node.client("reader").await;
        ws.subscribe_ok("news").await;
        subscribers.push(ws);
    }
    for i in 0..20 {
        cluster.nodes[0]
            .api_ok("publish", json!({"channel": "news", "data": {"n": i}}))
            .await;
    }
    for ws in &mut subscribers {
        for i in 0..20 {
            let publication = next_push_of(ws, "news", "pub").await;
            assert_eq!(publication["data"], json!({"n": i}));
        }
        assert!(
            ws.next_push_within(Duration::from_millis(300))
                .await
                .is_none(),
            "a publication arrived twice"
        );
    }
    // `channels` sums the subscribers of every node.
    let channels = cluster.nodes[2].api_ok("channels", json!({})).await;
    assert_eq!(channels["channels"]["news"]["num_clients"], 3, "{channels}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_publication_crosses_nodes() {
    let cluster = Cluster::start().await;
    let mut alice = cluster.nodes[0].client("alice").await;
    let mut bob = cluster.nodes[2].client("bob").await;
    alice.subscribe_ok("room:talk").await;
    bob.subscribe_ok("room:talk").await;
    let reply = alice.publish("room:talk", json!({"text": "hi"})).await;
    assert!(reply.get("error").is_none(), "{reply}");
    let publication = next_push_of(&mut bob, "room:talk", "pub").await;
    assert_eq!(publication["data"], json!({"text": "hi"}));
    assert_eq!(publication["info"]["user"], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_and_join_leave_span_the_nodes() {
    let cluster = Cluster::start().await;
    let (mut alice, alice_id) = connect(&cluster.nodes[0], "alice").await;
    alice.subscribe_ok("room:p").await;
    let (mut bob, bob_id) = connect(&cluster.nodes[1], "bob").await;
    bob.subscribe_ok("room:p").await;
    let (mut carol, carol_id) = connect(&cluster.nodes[2], "carol").await;
    carol.subscribe_ok("room:p").await;
    let (mut alice2, alice2_id) = connect(&cluster.nodes[2], "alice").await;
    alice2.subscribe_ok("room:p").await;
    // Alice on node 1 hears the others join on nodes 2 and 3.
    let mut joined = Vec::new();
    while joined.len() < 3 {
        let join = next_push_of(&mut alice, "room:p", "join").await;
        let client = join["info"]["client"].as_str().unwrap().to_owned();
        if client != alice_id {
            joined.push(client);
        }
    }
    joined.sort();
    let mut expected = vec![bob_id.clone(), carol_id.clone(), alice2_id.clone()];
    expected.sort();
    assert_eq!(joined, expected);
    // Any node answers for all of them; a client asks its own node.
    let mut everyone = vec![alice_id.clone(), bob_id.clone(), carol_id, alice2_id];
    everyone.sort();
    for node in &cluster.nodes {
        let result = node.api_ok("presence", json!({"channel": "room:p"})).await;
        assert_eq!(present(&result), everyone, "{result}");
    }
    let stats = cluster.nodes[1]
        .api_ok("presence_stats", json!({"channel": "room:p"}))
        .await;
    assert_eq!(
        (stats["num_clients"].clone(), stats["num_users"].clone()),
        (json!(4), json!(3))
    );
    let reply = bob
        .call(json!({"presence_stats": {"channel": "room:p"}}))
        .await;
    assert_eq!(reply["presence_stats"]["num_users"], 3, "{reply}");
    // Bob leaves (his connection closes): Alice hears it, presence forgets him everywhere.
    drop(bob);
    loop {
        let leave = next_push_of(&mut alice, "room:p", "leave").await;
        if leave["info"]["client"] == bob_id.as_str() {
            break;
        }
    }
    let (node, bob_id) = (&cluster.nodes[2], &bob_id);
    wait_for(STEP, "bob leaves presence", || async move {
        let result = node.api_ok("presence", json!({"channel": "room:p"})).await;
        !present(&result).contains(bob_id)
    })
    .await;
    let stats = cluster.nodes[0]
        .api_ok("presence_stats", json!({"channel": "room:p"}))
        .await;
    assert_eq!(
        (stats["num_clients"].clone(), stats["num_users"].clone()),
        (json!(3), json!(2))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_recovers_what_it_missed_on_another_node() {
    let cluster = Cluster::start().await;
    let mut ws = cluster.nodes[0].client("alice").await;
    let reply = ws.subscribe("room:h").await;
    let sub = &reply["subscribe"];
    assert_eq!(sub["recoverable"], true, "{reply}");
    let epoch = sub["epoch"].as_str().unwrap().to_owned();
    cluster.nodes[1]
        .api_ok("publish", json!({"channel": "room:h", "data": {"n": 0}}))
        .await;
    let seen = next_push_of(&mut ws, "room:h", "pub").await;
    let offset = seen["offset"].as_u64().unwrap();
    drop(ws);
    for i in 1..=5 {
        cluster.nodes[1]
            .api_ok("publish", json!({"channel": "room:h", "data": {"n": i}}))
            .await;
    }
    let mut ws = cluster.nodes[2].client("alice").await;
    let reply = ws
        .call(json!({"subscribe": {"channel": "room:h", "recover": true,
                                    "offset": offset, "epoch": epoch}}))
        .await;
    let sub = &reply["subscribe"];
    assert_eq!(sub["recovered"], true, "{reply}");
    let publications = sub["publications"].as_array().expect("publications");
    let got: Vec<(u64, Value)> = publications
        .iter()
        .map(|p| (p["offset"].as_u64().unwrap(), p["data"].clone()))
        .collect();
    let expected: Vec<(u64, Value)> = (1..=5).map(|i| (offset + i, json!({"n": i}))).collect();
    assert_eq!(got, expected);
    // And it is live on the new node.
    cluster.nodes[0]
        .api_ok("publish", json!({"channel": "room:h", "data": {"n": 6}}))
        .await;
    let live = next_push_of(&mut ws, "room:h", "pub").await;
    assert_eq!(live["offset"].as_u64(), Some(offset + 6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_api_acts_on_a_user_on_another_node() {
    let cluster = Cluster::start().await;
    let mut alice = cluster.nodes[2].client("alice").await;
    // subscribe, from node 1's API: the push reaches her on node 3, with the position.
    cluster.nodes[0]
        .api_ok(
            "subscribe",
            json!({"user": "alice", "channel": "room:api",
                                    "data": {"welcome": true}}),
        )
        .await;
    let subscribe = next_push_of(&mut alice, "room:api", "subscribe").await;
    assert_eq!(subscribe["data"], json!({"welcome": true}));
    assert_eq!(subscribe["recoverable"], true, "{subscribe}");
    assert!(
        subscribe["epoch"].as_str().is_some_and(|e| !e.is_empty()),
        "{subscribe}"
    );
    cluster.nodes[1]
        .api_ok("publish", json!({"channel": "room:api", "data": 1}))
        .await;
    assert_eq!(next_push_of(&mut alice, "room:api", "pub").await["data"], 1);
    // subscribe with recover_since, to another channel: the missed publications follow.
    let first = cluster.nodes[1]
        .api_ok("publish", json!({"channel": "room:rs", "data": "a"}))
        .await;
    cluster.nodes[1]
        .api_ok("publish", json!({"channel": "room:rs", "data": "b"}))
        .await;
    cluster.nodes[0]
        .api_ok(
            "subscribe",
            json!({"user": "alice", "channel": "room:rs",
            "recover_since": {"offset": first["offset"], "epoch": first["epoch"]}}),
        )
        .await;
    next_push_of(&mut alice, "room:rs", "subscribe").await;
    assert_eq!(
        next_push_of(&mut alice, "room:rs", "pub").await["data"],
        "b"
    );
    // unsubscribe
    cluster.nodes[1]
        .api_ok(
            "unsubscribe",
            json!({"user": "alice", "channel": "room:api"}),
        )
        .await;
    let unsubscribe = next_push_of(&mut alice, "room:api", "unsubscribe").await;
    assert_eq!(unsubscribe["code"], 2000, "{unsubscribe}");
    // refresh: Bob on node 2 expires at once when node 1 says so.
    let mut bob = cluster.nodes[1].client("bob").await;
    cluster.nodes[0]
        .api_ok("refresh", json!({"user": "bob", "expired": true}))
        .await;
    assert_close(&mut bob, 3005).await;
    // disconnect: Carol on node 3, from node 1, with a custom code.
    let mut carol = cluster.nodes[2].client("carol").await;
    cluster.nodes[0]
        .api_ok(
            "disconnect",
            json!({"user": "carol",
                                     "disconnect": {"code": 4000, "reason": "bye"}}),
        )
        .await;
    assert_close(&mut carol, 4000).await;
    // Alice's connection is untouched by all that.
    cluster.nodes[0]
        .api_ok("publish", json!({"channel": "room:rs", "data": "c"}))
        .await;
    assert_eq!(
        next_push_of(&mut alice, "room:rs", "pub").await["data"],
        "c"
    );
}

/// Reads frames until a close; asserts its code.
async fn assert_close(ws: &mut Ws, code: u16) {
    let deadline = Instant::now() + STEP;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match ws.next_frame_within(left).await {
            Some(Frame::Close(got, reason)) => {
                assert_eq!(got, code, "closed with {got} {reason:?}");
                return;
            }
            Some(Frame::Ended(why)) => panic!("ended without a close frame: {why}"),
            Some(Frame::Text(_)) => {}
            None => panic!("no close {code} within {STEP:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_with_sigkill_leaves_info_and_presence_and_its_clients_recover_elsewhere() {
    let mut cluster = Cluster::start().await;
    let (mut alice, alice_id) = connect(&cluster.nodes[0], "alice").await;
    alice.subscribe_ok("room:k").await;
    let (mut carol, _) = connect(&cluster.nodes[2], "carol").await;
    let reply = carol.subscribe("room:k").await;
    let epoch = reply["subscribe"]["epoch"].as_str().unwrap().to_owned();
    let offset = reply["subscribe"]["offset"].as_u64().unwrap_or(0);
    let before = cluster.nodes[0]
        .api_ok("presence", json!({"channel": "room:k"}))
        .await;
    assert_eq!(present(&before).len(), 2, "{before}");

    // SAFETY: kill(2) on the pid of our own child process.
    let rc = unsafe { libc::kill(cluster.nodes[2].pid() as libc::pid_t, libc::SIGKILL) };
    assert_eq!(rc, 0);
    let killed = Instant::now();
    cluster.nodes[2].wait_exit(STEP).await.expect("killed");
    drop(carol);
    for i in 1..=3 {
        cluster.nodes[0]
            .api_ok("publish", json!({"channel": "room:k", "data": {"n": i}}))
            .await;
    }

    // Its client leaves presence within the TTL (plus a refresh and a little slack)…
    let (node, alice_id) = (&cluster.nodes[1], &alice_id);
    wait_for(
        PRESENCE_TTL + Duration::from_secs(3),
        "carol leaves presence",
        || async move {
            let result = node.api_ok("presence", json!({"channel": "room:k"})).await;
            present(&result) == [alice_id.clone()]
        },
    )
    .await;
    // …and the node leaves `info` after three missed announcements (3 s each).
    let node = &cluster.nodes[0];
    wait_for(
        Duration::from_secs(15),
        "the killed node leaves info",
        || async move { node_count(node).await == 2 },
    )
    .await;
    assert!(killed.elapsed() >= PRESENCE_TTL.min(Duration::from_secs(2)));

    // Carol reconnects to a live node and recovers exactly what she missed.
    let mut carol = cluster.nodes[1].client("carol").await;
    let reply = carol
        .call(json!({"subscribe": {"channel": "room:k", "recover": true,
                                    "offset": offset, "epoch": epoch}}))
        .await;
    let sub = &reply["subscribe"];
    assert_eq!(sub["recovered"], true, "{reply}");
    let data: Vec<Value> = sub["publications"]
        .as_array()
        .expect("publications")
        .iter()
        .map(|p| p["data"].clone())
        .collect();
    assert_eq!(data, [json!({"n": 1}), json!({"n": 2}), json!({"n": 3})]);
    for i in 1..=3 {
        assert_eq!(
            next_push_of(&mut alice, "room:k", "pub").await["data"],
            json!({"n": i})
        );
    }
    // A node started now joins the list.
    let added = cluster.add_node().await;
    wait_for(
        Duration::from_secs(10),
        "a new node joins info",
        || async move { node_count(added).await == 3 },
    )
    .await;
    // A node stopped gracefully (SIGTERM) says goodbye: it leaves `info` at once, not after
    // three missed announcements.
    // SAFETY: kill(2) on the pid of our own child process.
    let rc = unsafe { libc::kill(cluster.nodes[3].pid() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let node = &cluster.nodes[0];
    wait_for(
        Duration::from_secs(2),
        "a stopped node leaves info at once",
        || async move { node_count(node).await == 2 },
    )
    .await;
}
