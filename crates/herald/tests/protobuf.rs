//! The Protobuf format over WebSocket, end to end against the binary: chosen by the
//! `centrifuge-protobuf` subprotocol, binary frames both ways, and Protobuf and JSON clients
//! in one channel seeing the same publications (live and from history).
//!
//! The Protobuf client here is Herald's own codec on a raw socket; the SDK's Protobuf build
//! is exercised by tests/js.

mod common;

use common::*;
use herald::protocol::{
    Command, ConnectRequest, HistoryRequest, PresenceRequest, ProtobufCodec, PublishRequest, Reply,
    SubscribeRequest,
};
use serde_json::json;

/// A Protobuf client on a raw WebSocket.
struct PbClient {
    raw: RawWs,
    /// Replies read but not yet asked for.
    pending: Vec<Reply>,
}

impl PbClient {
    /// Opens a connection offering only `centrifuge-protobuf`, as the SDKs' Protobuf builds do.
    async fn open(server: &Server) -> PbClient {
        let (head, raw) = raw_handshake(
            server.port,
            &[("Sec-WebSocket-Protocol", "centrifuge-protobuf")],
        )
        .await;
        assert_eq!(head.status, 101, "{}", head.text);
        assert!(
            head.text
                .to_ascii_lowercase()
                .contains("sec-websocket-protocol: centrifuge-protobuf"),
            "{}",
            head.text
        );
        PbClient {
            raw,
            pending: Vec::new(),
        }
    }

    async fn send(&mut self, commands: &[Command]) {
        let mut frame = Vec::new();
        for command in commands {
            ProtobufCodec.encode_command(command, &mut frame).unwrap();
        }
        self.raw.send_frame(2, &frame).await;
    }

    /// The next reply that `accept` takes, reading binary frames as needed.
    async fn next(&mut self, accept: impl Fn(&Reply) -> bool) -> Reply {
        let read = async {
            loop {
                if let Some(i) = self.pending.iter().position(&accept) {
                    return self.pending.remove(i);
                }
                let (opcode, payload) = self.raw.read_frame().await.expect("a frame");
                assert_eq!(
                    opcode,
                    2,
                    "Protobuf replies come in binary frames: {}",
                    String::from_utf8_lossy(&payload)
                );
                self.pending
                    .extend(ProtobufCodec.decode_replies(&payload).expect("replies"));
            }
        };
        tokio::time::timeout(STEP, read)
            .await
            .expect("no such reply in time")
    }

    async fn call(&mut self, command: Command) -> Reply {
        let id = command.id;
        self.send(&[command]).await;
        self.next(|r| r.id == id).await
    }
}

fn command(id: u32, fill: impl FnOnce(&mut Command)) -> Command {
    let mut command = Command {
        id,
        ..Command::default()
    };
    fill(&mut command);
    command
}

#[tokio::test]
async fn protobuf_and_json_clients_share_a_channel() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = Server::start(json!({
        "data_dir": data_dir.path(),
        "channel": {"namespaces": [
            {"name": "chat", "allow_subscribe_for_client": true, "allow_publish_for_client": true,
             "allow_history_for_client": true, "allow_presence_for_client": true,
             "presence": true, "history_size": 10, "history_ttl": "1h", "force_recovery": true}
        ]}
    }))
    .await;
    let mut pb = PbClient::open(&server).await;
    let connected = pb
        .call(command(1, |c| {
            c.connect = Some(ConnectRequest {
                token: token("alice"),
                ..ConnectRequest::default()
            })
        }))
        .await;
    let client_id = connected.connect.expect("a connect result").client;
    assert!(!client_id.is_empty());

    let subscribed = pb
        .call(command(2, |c| {
            c.subscribe = Some(SubscribeRequest {
                channel: "chat:room".into(),
                ..SubscribeRequest::default()
            })
        }))
        .await;
    assert!(subscribed.error.is_none(), "{subscribed:?}");
    assert!(subscribed.subscribe.unwrap().recoverable);

    let mut js = server.client("bob").await;
    js.subscribe_ok("chat:room").await;

    // A publication from the Protobuf client reaches the JSON one as JSON.
    let published = pb
        .call(command(3, |c| {
            c.publish = Some(PublishRequest {
                channel: "chat:room".into(),
                data: Some(herald::protocol::raw(r#"{"from":"pb"}"#).unwrap()),
                ..PublishRequest::default()
            })
        }))
        .await;
    assert!(published.publish.is_some(), "{published:?}");
    let push = js.next_push().await;
    assert_eq!(push["push"]["pub"]["data"], json!({"from": "pb"}), "{push}");
    assert_eq!(push["push"]["pub"]["info"]["user"], "alice", "{push}");

    // A publication from the API reaches the Protobuf one as a binary push, its bytes as sent.
    server
        .api_ok(
            "publish",
            json!({"channel": "chat:room", "data": {"from": "api"}}),
        )
        .await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let push = pb.next(|r| r.push.is_some()).await.push.unwrap();
        assert_eq!(push.channel, "chat:room");
        let publication = push.publication.expect("a publication push");
        seen.push((
            publication.offset,
            publication.data.unwrap().as_str().unwrap().to_owned(),
        ));
    }
    assert_eq!(
        seen,
        [
            (1, r#"{"from":"pb"}"#.to_owned()),
            (2, r#"{"from":"api"}"#.to_owned())
        ]
    );

    // History through Protobuf holds both, byte for byte as JSON's does.
    let history = pb
        .call(command(4, |c| {
            c.history = Some(HistoryRequest {
                channel: "chat:room".into(),
                limit: -1,
                ..HistoryRequest::default()
            })
        }))
        .await
        .history
        .expect("a history result");
    assert_eq!(history.offset, 2);
    let pb_data: Vec<_> = history
        .publications
        .iter()
        .map(|p| p.data.as_ref().unwrap().as_str().unwrap().to_owned())
        .collect();
    assert_eq!(pb_data, [r#"{"from":"pb"}"#, r#"{"from":"api"}"#]);
    let js_history = js
        .call(json!({"id": 9, "history": {"channel": "chat:room", "limit": -1}}))
        .await;
    let js_data: Vec<_> = js_history["history"]["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["data"].to_string())
        .collect();
    assert_eq!(js_data, pb_data);

    // Presence lists both kinds of client.
    let presence = pb
        .call(command(5, |c| {
            c.presence = Some(PresenceRequest {
                channel: "chat:room".into(),
            })
        }))
        .await
        .presence
        .expect("a presence result");
    assert_eq!(presence.presence.len(), 2);
    assert_eq!(presence.presence[&client_id].user, "alice");

    // Several commands in one frame are all answered.
    pb.send(&[
        command(7, |c| {
            c.presence = Some(PresenceRequest {
                channel: "chat:room".into(),
            })
        }),
        command(6, |c| {
            c.presence_stats = Some(herald::protocol::PresenceStatsRequest {
                channel: "chat:room".into(),
            })
        }),
    ])
    .await;
    let stats = pb.next(|r| r.id == 6).await.presence_stats.unwrap();
    assert_eq!((stats.num_clients, stats.num_users), (2, 2));
    assert!(pb.next(|r| r.id == 7).await.presence.is_some());
}

#[tokio::test]
async fn a_malformed_protobuf_frame_closes_as_a_bad_request() {
    let server = Server::start(json!({})).await;
    let mut pb = PbClient::open(&server).await;
    // A length prefix of eleven continuation bytes: no varint.
    pb.raw.send_frame(2, &[0xff; 11]).await;
    let close = pb.raw.read_close_within(STEP).await;
    assert_eq!(close.map(|c| c.0), Some(3501));
}

#[tokio::test]
async fn json_is_chosen_when_both_formats_are_offered() {
    let server = Server::start(json!({})).await;
    let (head, _) = raw_handshake(
        server.port,
        &[(
            "Sec-WebSocket-Protocol",
            "centrifuge-protobuf, centrifuge-json",
        )],
    )
    .await;
    assert_eq!(head.status, 101, "{}", head.text);
    assert!(
        head.text
            .to_ascii_lowercase()
            .contains("sec-websocket-protocol: centrifuge-json"),
        "{}",
        head.text
    );
}

/// Binary data from a Protobuf client reaches Protobuf subscribers byte for byte; a JSON
/// subscriber cannot be sent it as JSON: it gets the channel's next publication, and a history
/// page holding it is an error, not a broken message.
#[tokio::test]
async fn binary_data_goes_to_protobuf_subscribers_only() {
    let server = Server::start(json!({
        "channel": {"without_namespace": {
            "allow_subscribe_for_client": true, "allow_publish_for_client": true,
            "allow_history_for_client": true, "history_size": 10, "history_ttl": "1h",
            "force_recovery": true
        }}
    }))
    .await;
    let mut pb = PbClient::open(&server).await;
    pb.call(command(1, |c| {
        c.connect = Some(ConnectRequest {
            token: token("alice"),
            ..ConnectRequest::default()
        })
    }))
    .await;
    let subscribed = pb
        .call(command(2, |c| {
            c.subscribe = Some(SubscribeRequest {
                channel: "bin".into(),
                ..SubscribeRequest::default()
            })
        }))
        .await;
    assert!(subscribed.error.is_none(), "{subscribed:?}");
    let mut js = server.client("bob").await;
    js.subscribe_ok("bin").await;

    let binary = [0xff_u8, 0, b'\n', 0x80];
    for (id, data) in [(3, binary.to_vec()), (4, br#"{"n":2}"#.to_vec())] {
        let reply = pb
            .call(command(id, |c| {
                c.publish = Some(PublishRequest {
                    channel: "bin".into(),
                    data: Some(herald::protocol::Payload::from_stored(data)),
                    ..PublishRequest::default()
                })
            }))
            .await;
        assert!(reply.publish.is_some(), "{reply:?}");
    }
    let first = pb.next(|r| r.push.is_some()).await.push.unwrap();
    assert_eq!(
        first.publication.unwrap().data.unwrap().as_bytes(),
        binary.as_slice()
    );
    let push = js.next_push().await;
    assert_eq!(push["push"]["pub"]["offset"], 2, "{push}");
    assert_eq!(push["push"]["pub"]["data"], json!({"n": 2}), "{push}");
    // Its history holds a publication JSON cannot carry: the command fails with an internal
    // error (100) rather than a broken JSON message, and the connection stays.
    let history = js
        .call(json!({"id": 9, "history": {"channel": "bin", "limit": -1}}))
        .await;
    assert_eq!(history["error"]["code"], 100, "{history}");
    js.assert_alive().await;
    // The Protobuf client reads the same history whole.
    let history = pb
        .call(command(5, |c| {
            c.history = Some(HistoryRequest {
                channel: "bin".into(),
                limit: -1,
                ..HistoryRequest::default()
            })
        }))
        .await
        .history
        .expect("a history result");
    let data: Vec<_> = history
        .publications
        .iter()
        .map(|p| p.data.as_ref().unwrap().as_bytes().to_vec())
        .collect();
    assert_eq!(data, [binary.to_vec(), br#"{"n":2}"#.to_vec()]);
}

/// The server API's pushes to the connections it names (subscribe, unsubscribe) reach a
/// Protobuf client in Protobuf.
#[tokio::test]
async fn server_api_pushes_reach_a_protobuf_client_in_protobuf() {
    let server = Server::start(json!({})).await;
    let mut pb = PbClient::open(&server).await;
    pb.call(command(1, |c| {
        c.connect = Some(ConnectRequest {
            token: token("alice"),
            ..ConnectRequest::default()
        })
    }))
    .await;
    server
        .api_ok("subscribe", json!({"user": "alice", "channel": "srv"}))
        .await;
    let push = pb.next(|r| r.push.is_some()).await.push.unwrap();
    assert_eq!(push.channel, "srv");
    assert!(push.subscribe.is_some(), "{push:?}");
    server
        .api_ok("publish", json!({"channel": "srv", "data": {"n": 1}}))
        .await;
    let push = pb.next(|r| r.push.is_some()).await.push.unwrap();
    assert_eq!(
        push.publication.unwrap().data.unwrap().as_bytes(),
        br#"{"n":1}"#
    );
    server
        .api_ok("unsubscribe", json!({"user": "alice", "channel": "srv"}))
        .await;
    let push = pb.next(|r| r.push.is_some()).await.push.unwrap();
    assert_eq!(push.unsubscribe.unwrap().code, 2000);
}

/// The server API's `b64data` (publish, broadcast) delivers its decoded bytes to a Protobuf
/// subscriber exactly, and history keeps them: the client recovers the same bytes. Base64
/// that does not decode is refused with 107 and publishes nothing.
#[tokio::test]
async fn api_b64data_reaches_a_protobuf_client_as_bytes() {
    let server = Server::start(json!({
        "channel": {"without_namespace": {
            "allow_subscribe_for_client": true, "allow_history_for_client": true,
            "history_size": 10, "history_ttl": "1h"
        }}
    }))
    .await;
    let mut pb = PbClient::open(&server).await;
    pb.call(command(1, |c| {
        c.connect = Some(ConnectRequest {
            token: token("alice"),
            ..ConnectRequest::default()
        })
    }))
    .await;
    let subscribed = pb
        .call(command(2, |c| {
            c.subscribe = Some(SubscribeRequest {
                channel: "bin".into(),
                ..SubscribeRequest::default()
            })
        }))
        .await;
    assert!(subscribed.error.is_none(), "{subscribed:?}");

    // 0xff 0x00 '\n' 0x80 and 0x01 0x02 0x03: neither is UTF-8 JSON.
    server
        .api_ok("publish", json!({"channel": "bin", "b64data": "/wAKgA=="}))
        .await;
    server
        .api_ok(
            "broadcast",
            json!({"channels": ["bin"], "b64data": "AQID", "data": {"ignored": true}}),
        )
        .await;
    let refused = server
        .api(
            "publish",
            json!({"channel": "bin", "b64data": "not base64!"}),
        )
        .await
        .json();
    assert_eq!(refused["error"]["code"], 107, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("b64data")),
        "{refused}"
    );

    let expected = [vec![0xff_u8, 0, b'\n', 0x80], vec![1, 2, 3]];
    for bytes in &expected {
        let push = pb.next(|r| r.push.is_some()).await.push.unwrap();
        assert_eq!(
            push.publication.unwrap().data.unwrap().as_bytes(),
            bytes.as_slice()
        );
    }
    let history = pb
        .call(command(3, |c| {
            c.history = Some(HistoryRequest {
                channel: "bin".into(),
                limit: -1,
                ..HistoryRequest::default()
            })
        }))
        .await
        .history
        .expect("a history result");
    let data: Vec<_> = history
        .publications
        .iter()
        .map(|p| p.data.as_ref().unwrap().as_bytes().to_vec())
        .collect();
    assert_eq!(data, expected);
}

/// Server pings reach a Protobuf client as the empty Protobuf message (its length prefix, 0)
/// in a binary frame, not as JSON's `{}` in a text frame, and its pong (the empty command)
/// keeps it connected past the pong timeout: the next ping comes, not a 3012 close.
#[tokio::test]
async fn a_protobuf_client_is_pinged_in_protobuf_and_its_pongs_keep_it_connected() {
    let server = Server::start(json!({
        "client": {"ping_interval": "1s", "pong_timeout": "900ms"}
    }))
    .await;
    let mut pb = PbClient::open(&server).await;
    let reply = pb
        .call(command(1, |c| {
            c.connect = Some(ConnectRequest {
                token: token("alice"),
                ..ConnectRequest::default()
            })
        }))
        .await;
    assert!(reply.error.is_none(), "{reply:?}");
    for n in 0..3 {
        let (opcode, payload) = tokio::time::timeout(STEP, pb.raw.read_frame())
            .await
            .expect("a ping in time")
            .expect("a frame");
        assert_eq!(
            (opcode, payload.as_slice()),
            (2, &[0u8][..]),
            "ping {n}: {}",
            String::from_utf8_lossy(&payload)
        );
        pb.raw.send_frame(2, &[0]).await;
    }
}
