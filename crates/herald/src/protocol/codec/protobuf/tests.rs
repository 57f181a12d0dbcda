//! Tests of the Protobuf codec: the frame format (several messages per frame, the empty
//! message as ping/pong, malformed length prefixes and bodies close the connection), and a
//! table of every command, reply and push that must come back unchanged through the codec.

use std::collections::{BTreeMap, HashMap};

use super::*;
use crate::protocol::codec::Encoding;
use crate::protocol::{
    ClientInfo, ConnectRequest, ConnectResult, Disconnect, Error, FilterNode, HistoryRequest,
    HistoryResult, Method, PingRequest, PresenceRequest, PresenceResult, PresenceStatsRequest,
    PresenceStatsResult, PublishRequest, PublishResult, RefreshPush, RefreshRequest, RefreshResult,
    RpcRequest, RpcResult, SendRequest, StreamPosition, SubRefreshRequest, SubRefreshResult,
    SubscribePush, SubscribeRequest, SubscribeResult, Unsubscribe, UnsubscribeRequest,
    UnsubscribeResult,
};

fn json(text: &str) -> Option<Payload> {
    Some(Payload::from_json(text).unwrap())
}

/// Encodes `commands` into one frame, as a client does.
fn frame(commands: &[Command]) -> Vec<u8> {
    let mut frame = Vec::new();
    for command in commands {
        ProtobufCodec.encode_command(command, &mut frame).unwrap();
    }
    frame
}

/// A value's JSON form: how the table compares messages (they derive no `PartialEq`).
fn same<T: serde::Serialize>(a: &T, b: &T) -> bool {
    serde_json::to_value(a).unwrap() == serde_json::to_value(b).unwrap()
}

fn subscribe_request() -> SubscribeRequest {
    SubscribeRequest {
        channel: "news".into(),
        token: "sub-jwt".into(),
        recover: true,
        epoch: "ep".into(),
        offset: 41,
        data: json(r#"{"a":1}"#),
        positioned: true,
        recoverable: true,
        join_leave: true,
        delta: "fossil".into(),
        tf: Some(FilterNode {
            op: "and".into(),
            nodes: vec![
                FilterNode {
                    key: "k".into(),
                    cmp: "in".into(),
                    vals: vec!["a".into(), "b".into()],
                    ..FilterNode::default()
                },
                FilterNode {
                    key: "n".into(),
                    cmp: "gt".into(),
                    val: "3".into(),
                    ..FilterNode::default()
                },
            ],
            ..FilterNode::default()
        }),
        flag: 2,
        kind: 0,
    }
}

/// Every command with every field Herald reads set to something other than its default.
fn every_command() -> Vec<Command> {
    let with = |id, f: fn(&mut Command)| {
        let mut c = Command {
            id,
            ..Command::default()
        };
        f(&mut c);
        c
    };
    vec![
        with(1, |c| {
            c.connect = Some(ConnectRequest {
                token: "jwt".into(),
                data: json(r#"{"x":[1,2]}"#),
                subs: HashMap::from([("srv".into(), subscribe_request())]),
                name: "js".into(),
                version: "5.0".into(),
                headers: HashMap::from([("Cookie".into(), "a=b".into())]),
                flag: 1,
                dict: "d1".into(),
                profile: "chat".into(),
            })
        }),
        with(2, |c| c.subscribe = Some(subscribe_request())),
        with(3, |c| {
            c.unsubscribe = Some(UnsubscribeRequest {
                channel: "news".into(),
            })
        }),
        with(4, |c| {
            c.publish = Some(PublishRequest {
                channel: "news".into(),
                data: json(r#""text""#),
                ..PublishRequest::default()
            })
        }),
        with(5, |c| {
            c.presence = Some(PresenceRequest {
                channel: "news".into(),
            })
        }),
        with(6, |c| {
            c.presence_stats = Some(PresenceStatsRequest {
                channel: "news".into(),
            })
        }),
        with(7, |c| {
            c.history = Some(HistoryRequest {
                channel: "news".into(),
                limit: -1,
                since: Some(StreamPosition {
                    offset: 7,
                    epoch: "ep".into(),
                }),
                reverse: true,
            })
        }),
        with(8, |c| c.ping = Some(PingRequest {})),
        with(0, |c| {
            c.send = Some(SendRequest {
                data: json("[true]"),
            })
        }),
        with(9, |c| {
            c.rpc = Some(RpcRequest {
                data: json("{}"),
                method: "sum".into(),
            })
        }),
        with(10, |c| {
            c.refresh = Some(RefreshRequest {
                token: "new".into(),
            })
        }),
        with(11, |c| {
            c.sub_refresh = Some(SubRefreshRequest {
                channel: "news".into(),
                token: "new".into(),
                kind: 0,
            })
        }),
    ]
}

fn client_info() -> ClientInfo {
    ClientInfo {
        user: "u".into(),
        client: "c".into(),
        conn_info: json(r#"{"name":"n"}"#),
        chan_info: json("1"),
    }
}

fn publication() -> Publication {
    Publication {
        data: json(r#"{"text":"hi"}"#),
        info: Some(client_info()),
        offset: u64::MAX,
        tags: BTreeMap::from([("k".into(), "v".into())]),
        delta: true,
        time: 1_700_000_000_000,
        channel: "news:1".into(),
        key: "key".into(),
        removed: true,
        score: -5,
        epoch: "ep".into(),
        version: 3,
    }
}

fn subscribe_result() -> SubscribeResult {
    SubscribeResult {
        expires: true,
        ttl: 60,
        recoverable: true,
        epoch: "ep".into(),
        publications: vec![publication(), Publication::default()],
        recovered: true,
        offset: 9,
        positioned: true,
        data: json(r#"{"d":0}"#),
        was_recovering: true,
        delta: true,
        id: 4,
    }
}

/// Every reply and push Herald sends.
fn every_reply() -> Vec<Reply> {
    let connect = ConnectResult {
        client: "c".into(),
        version: "v".into(),
        expires: true,
        ttl: 30,
        data: json("{}"),
        subs: HashMap::from([("srv".into(), subscribe_result())]),
        ping: 25,
        pong: true,
        session: "s".into(),
        node: "n".into(),
        time: 5,
        flag: 0,
    };
    vec![
        Reply::ping(),
        Reply::error(1, Error::new(103, "permission denied")),
        // The result carries `flag`; the connect push has no such field.
        Reply::result(
            2,
            ConnectResult {
                flag: 3,
                ..connect.clone()
            },
        ),
        Reply::result(3, subscribe_result()),
        Reply::result(4, UnsubscribeResult {}),
        Reply::result(5, PublishResult {}),
        Reply::result(
            6,
            PresenceResult {
                presence: HashMap::from([("c".into(), client_info())]),
            },
        ),
        Reply::result(
            7,
            PresenceStatsResult {
                num_clients: 2,
                num_users: 1,
            },
        ),
        Reply::result(
            8,
            HistoryResult {
                publications: vec![publication()],
                epoch: "ep".into(),
                offset: 12,
            },
        ),
        Reply::result(9, RpcResult { data: json("[1]") }),
        Reply::result(
            10,
            RefreshResult {
                client: "c".into(),
                version: "v".into(),
                expires: true,
                ttl: 10,
            },
        ),
        Reply::result(
            11,
            SubRefreshResult {
                expires: true,
                ttl: 10,
            },
        ),
        Reply::push(Push::publication("news", publication())),
        Reply::push(Push::join("news", client_info())),
        Reply::push(Push::leave("news", client_info())),
        Reply::push(Push::unsubscribe("news", Unsubscribe::SERVER)),
        Reply::push(Push::message(json(r#""m""#).unwrap())),
        Reply::push(Push::subscribe(
            "srv",
            SubscribePush {
                recoverable: true,
                epoch: "ep".into(),
                offset: 3,
                positioned: true,
                data: json("2"),
            },
        )),
        Reply::push(Push::connect(connect)),
        Reply::push(Push::disconnect(Disconnect::SHUTDOWN)),
        Reply::push(Push::refresh(RefreshPush {
            expires: true,
            ttl: 3,
        })),
    ]
}

#[test]
fn every_command_round_trips_through_the_codec() {
    let commands = every_command();
    let frame = frame(&commands);
    let decoded: Vec<Command> = Encoding::Protobuf
        .decode_commands(&frame)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        decoded.len(),
        commands.len(),
        "several commands in one frame"
    );
    for (sent, got) in commands.iter().zip(&decoded) {
        assert!(same(sent, got), "{sent:?}\n  came back as\n{got:?}");
    }
    let methods: Vec<Method> = decoded.iter().map(Command::method).collect();
    assert_eq!(methods[0], Method::Connect);
    assert_eq!(methods[11], Method::SubRefresh);
}

#[test]
fn every_reply_and_push_round_trips_through_the_codec() {
    let replies = every_reply();
    let mut frame = Vec::new();
    for (i, reply) in replies.iter().enumerate() {
        Encoding::Protobuf
            .append_reply(reply, i == 0, &mut frame)
            .unwrap();
    }
    let decoded = ProtobufCodec.decode_replies(&frame).unwrap();
    assert_eq!(decoded.len(), replies.len(), "several replies in one frame");
    for (sent, got) in replies.iter().zip(&decoded) {
        assert!(same(sent, got), "{sent:?}\n  came back as\n{got:?}");
    }
}

#[test]
fn a_publication_push_is_the_same_message_as_the_push_it_stands_for() {
    let mut once = Vec::new();
    Encoding::Protobuf
        .encode_publication_push("news", &publication(), &mut once)
        .unwrap();
    let mut general = Vec::new();
    Encoding::Protobuf
        .encode_push(&Push::publication("news", publication()), &mut general)
        .unwrap();
    assert_eq!(once, general);
}

#[test]
fn binary_payloads_travel_verbatim() {
    let binary = Payload::from_stored(vec![0u8, 0xff, b'\n', 0x80, b'{']);
    let command = Command {
        id: 1,
        publish: Some(PublishRequest {
            channel: "bin".into(),
            data: Some(binary.clone()),
            ..PublishRequest::default()
        }),
        ..Command::default()
    };
    let got = Encoding::Protobuf
        .decode_commands(&frame(&[command]))
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(got.publish.unwrap().data.as_ref(), Some(&binary));

    let publication = Publication {
        data: Some(binary.clone()),
        ..Publication::default()
    };
    let mut push = Vec::new();
    Encoding::Protobuf
        .encode_publication_push("bin", &publication, &mut push)
        .unwrap();
    let replies = ProtobufCodec.decode_replies(&push).unwrap();
    let received = replies[0].push.as_ref().unwrap().publication.as_ref();
    assert_eq!(received.unwrap().data.as_ref(), Some(&binary));
    assert_eq!(
        Encoding::Protobuf.delta_data(&[0xff]).unwrap().as_bytes(),
        [0xff]
    );
}

#[test]
fn the_empty_message_is_ping_and_pong() {
    let mut ping = Vec::new();
    Encoding::Protobuf
        .append_reply(&Reply::ping(), true, &mut ping)
        .unwrap();
    assert_eq!(ping, [0], "a ping is the empty reply: its length, zero");
    let pong: Vec<_> = Encoding::Protobuf.decode_commands(&[0]).collect();
    assert_eq!(pong.len(), 1);
    let pong = pong.into_iter().next().unwrap().unwrap();
    assert!(pong.is_pong());
    assert_eq!(pong.method(), Method::None);
}

#[test]
fn a_frame_is_binary() {
    assert!(Encoding::Protobuf.is_binary());
    assert_eq!(
        crate::prepared::opcode(Encoding::Protobuf),
        herald_ws::OpCode::Binary
    );
}

/// Decodes `frame`: the well-formed commands before the first error, and that error.
fn decode(frame: &[u8]) -> (usize, Option<DecodeError>) {
    let mut ok = 0;
    for command in Encoding::Protobuf.decode_commands(frame) {
        match command {
            Ok(_) => ok += 1,
            Err(e) => return (ok, Some(e)),
        }
    }
    (ok, None)
}

#[test]
fn an_empty_frame_is_malformed() {
    assert!(matches!(decode(&[]), (0, Some(DecodeError::EmptyFrame))));
}

#[test]
fn a_bad_varint_ends_the_frame_after_the_good_commands() {
    let mut bad = frame(&every_command()[..2]);
    // Eleven continuation bytes: longer than any 64-bit varint.
    bad.extend([0xff; 11]);
    let (ok, error) = decode(&bad);
    assert_eq!(ok, 2);
    assert!(
        matches!(error, Some(DecodeError::Length { index: 2 })),
        "{error:?}"
    );
}

#[test]
fn a_length_past_the_end_of_the_frame_is_malformed() {
    let mut bad = frame(&every_command()[..1]);
    bad.extend([5, 8, 1]);
    assert!(matches!(
        decode(&bad),
        (1, Some(DecodeError::Length { index: 1 }))
    ));
    // A varint cut off by the end of the frame.
    assert!(matches!(
        decode(&[0x80]),
        (0, Some(DecodeError::Length { index: 0 }))
    ));
}

#[test]
fn a_malformed_body_is_a_protobuf_error() {
    // Length 2, then field 4 (connect) as length-delimited with a length past its end.
    let (ok, error) = decode(&[2, 0x22, 9]);
    assert_eq!(ok, 0);
    assert!(
        matches!(error, Some(DecodeError::Protobuf { index: 0, .. })),
        "{error:?}"
    );
    // Nothing is decoded after an error.
    let mut after = vec![2, 0x22, 9];
    after.extend(frame(&every_command()[..1]));
    let all: Vec<_> = Encoding::Protobuf.decode_commands(&after).collect();
    assert_eq!(all.len(), 1);
}

/// The field numbers on the wire are the SDKs' (Centrifugo's client.proto): bytes written by
/// hand from that schema decode, and a push encodes to the bytes it names.
#[test]
fn the_wire_bytes_are_the_sdks_field_numbers() {
    // One message of 11 bytes: Command{id(1)=1, publish(7)={channel(1)="c", data(2)="{}"}}.
    let publish = [11, 0x08, 1, 0x3a, 7, 0x0a, 1, b'c', 0x12, 2, b'{', b'}'];
    let command = Encoding::Protobuf
        .decode_commands(&publish)
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(command.id, 1);
    let publish = command.publish.unwrap();
    assert_eq!(publish.channel, "c");
    assert_eq!(publish.data.unwrap().as_bytes(), b"{}");

    // Reply{push(4)={channel(2)="c", pub(4)={data(4)="1", offset(6)=2}}}.
    let publication = Publication {
        data: json("1"),
        offset: 2,
        ..Publication::default()
    };
    let mut push = Vec::new();
    Encoding::Protobuf
        .encode_publication_push("c", &publication, &mut push)
        .unwrap();
    assert_eq!(
        push,
        [12, 0x22, 10, 0x12, 1, b'c', 0x22, 5, 0x22, 1, b'1', 0x30, 2]
    );
}

mod properties {
    //! Any publication, and any command of the kinds that carry free-form data, comes back
    //! unchanged through the codec (compared by their `Debug` form: they derive no
    //! `PartialEq`, and these hold no hash maps whose order would vary).

    use proptest::prelude::*;

    use super::*;

    fn payload() -> impl Strategy<Value = Option<Payload>> {
        // Empty bytes are "no payload" on the wire, so a payload has at least one byte.
        proptest::option::of(
            proptest::collection::vec(any::<u8>(), 1..64).prop_map(Payload::from_stored),
        )
    }

    fn client_info() -> impl Strategy<Value = ClientInfo> {
        (".{0,8}", ".{0,8}", payload(), payload()).prop_map(
            |(user, client, conn_info, chan_info)| ClientInfo {
                user,
                client,
                conn_info,
                chan_info,
            },
        )
    }

    prop_compose! {
        fn publication()(
            data in payload(),
            info in proptest::option::of(client_info()),
            offset in any::<u64>(),
            tags in proptest::collection::btree_map(".{0,6}", ".{0,6}", 0..4),
            delta in any::<bool>(),
            time in any::<i64>(),
            (channel, key, epoch) in (".{0,8}", ".{0,8}", ".{0,8}"),
            removed in any::<bool>(),
            score in any::<i64>(),
            version in any::<u64>(),
        ) -> Publication {
            Publication { data, info, offset, tags, delta, time, channel, key, removed, score,
                epoch, version }
        }
    }

    fn filter() -> impl Strategy<Value = FilterNode> {
        let leaf = (
            ".{0,4}",
            ".{0,4}",
            ".{0,4}",
            proptest::collection::vec(".{0,4}", 0..3),
        )
            .prop_map(|(key, cmp, val, vals)| FilterNode {
                key,
                cmp,
                val,
                vals,
                ..FilterNode::default()
            });
        leaf.prop_recursive(3, 12, 3, |inner| {
            ("and|or|not", proptest::collection::vec(inner, 0..3)).prop_map(|(op, nodes)| {
                FilterNode {
                    op,
                    nodes,
                    ..FilterNode::default()
                }
            })
        })
    }

    fn command() -> impl Strategy<Value = Command> {
        let publish =
            (any::<u32>(), ".{0,12}", payload()).prop_map(|(id, channel, data)| Command {
                id,
                publish: Some(PublishRequest {
                    channel,
                    data,
                    ..PublishRequest::default()
                }),
                ..Command::default()
            });
        let subscribe = (
            any::<u32>(),
            (".{0,12}", ".{0,12}", ".{0,8}", ".{0,8}"),
            (any::<u64>(), any::<[bool; 5]>(), any::<i64>()),
            payload(),
            proptest::option::of(filter()),
        )
            .prop_map(
                |(id, (channel, token, epoch, delta), (offset, flags, flag), data, tf)| Command {
                    id,
                    subscribe: Some(SubscribeRequest {
                        channel,
                        token,
                        recover: flags[0],
                        epoch,
                        offset,
                        data,
                        positioned: flags[1],
                        recoverable: flags[2],
                        join_leave: flags[3],
                        delta,
                        tf,
                        flag,
                        kind: i32::from(flags[4]),
                    }),
                    ..Command::default()
                },
            );
        let history = (
            any::<u32>(),
            ".{0,12}",
            any::<i32>(),
            proptest::option::of((any::<u64>(), ".{0,8}")),
            any::<bool>(),
        )
            .prop_map(|(id, channel, limit, since, reverse)| Command {
                id,
                history: Some(HistoryRequest {
                    channel,
                    limit,
                    since: since.map(|(offset, epoch)| StreamPosition { offset, epoch }),
                    reverse,
                }),
                ..Command::default()
            });
        prop_oneof![publish, subscribe, history]
    }

    proptest! {
        #[test]
        fn any_publication_push_round_trips(channel in ".{0,16}", publication in publication()) {
            let mut frame = Vec::new();
            Encoding::Protobuf
                .encode_publication_push(&channel, &publication, &mut frame)
                .unwrap();
            let replies = ProtobufCodec.decode_replies(&frame).unwrap();
            prop_assert_eq!(replies.len(), 1);
            let push = replies[0].push.as_ref().unwrap();
            prop_assert_eq!(&push.channel, &channel);
            prop_assert_eq!(
                format!("{:?}", push.publication.as_ref().unwrap()),
                format!("{publication:?}")
            );
        }

        /// The fan-out encoder writes the wrappers with prost's primitives: its bytes are
        /// exactly prost's encoding of the whole `Reply{push{channel, pub}}` message, the
        /// empty channel (left out by proto3) included.
        #[test]
        fn the_publication_push_is_prosts_own_encoding(channel in ".{0,16}", publication in publication()) {
            let mut fast = Vec::new();
            Encoding::Protobuf
                .encode_publication_push(&channel, &publication, &mut fast)
                .unwrap();
            let message = pb::Reply {
                push: Some(pb::Push {
                    channel: channel.clone(),
                    r#pub: Some(convert::publication(&publication)),
                    ..pb::Push::default()
                }),
                ..pb::Reply::default()
            };
            // Equal up to the order of the tags map, which prost writes in its HashMap's order:
            // decoded, the two are the same message.
            if publication.tags.len() <= 1 {
                prop_assert_eq!(&fast, &message.encode_length_delimited_to_vec());
            }
            let decoded = pb::Reply::decode_length_delimited(&fast[..]).unwrap();
            prop_assert_eq!(decoded, message);
        }

        #[test]
        fn any_commands_round_trip(commands in proptest::collection::vec(command(), 1..5)) {
            let decoded: Vec<Command> = Encoding::Protobuf
                .decode_commands(&frame(&commands))
                .collect::<Result<_, _>>()
                .unwrap();
            prop_assert_eq!(format!("{decoded:?}"), format!("{commands:?}"));
        }

        #[test]
        fn any_bytes_decode_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            for command in Encoding::Protobuf.decode_commands(&bytes) {
                if command.is_err() {
                    break;
                }
            }
        }
    }
}
