//! Unit tests of the JSON protocol: the example session of protocol.md §11, omission rules,
//! raw payloads, newline handling and batch decoding.

use std::collections::BTreeMap;

use serde_json::Value;

use super::*;
use serde_json::value::RawValue;

fn enc(reply: &Reply) -> String {
    let mut out = Vec::new();
    encode_reply(reply, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn one(frame: &str) -> Command {
    let mut commands: Vec<_> = decode_commands(frame.as_bytes()).collect();
    assert_eq!(commands.len(), 1, "{frame}");
    commands.remove(0).unwrap()
}

/// A payload with the bytes of `text` as they are (raw `\n` included: the encoder must
/// strip them).
fn raw_of(text: &str) -> Payload {
    Payload::from_stored(text.to_owned())
}

// ---- §11 example session ----

#[test]
fn session_connect() {
    let cmd = one(r#"{"id":1,"connect":{"token":"<JWT>","name":"js"}}"#);
    assert_eq!(cmd.id, 1);
    assert_eq!(cmd.method(), Method::Connect);
    assert!(!cmd.is_pong());
    let connect = cmd.connect.unwrap();
    assert_eq!(connect.token, "<JWT>");
    assert_eq!(connect.name, "js");
    assert!(connect.data.is_none() && connect.subs.is_empty());

    let reply = Reply::result(
        1,
        ConnectResult {
            client: "x".into(),
            version: "1".into(),
            ping: 25,
            pong: true,
            ..Default::default()
        },
    );
    assert_eq!(
        enc(&reply),
        r#"{"id":1,"connect":{"client":"x","version":"1","ping":25,"pong":true}}"#
    );
    let reply = Reply::result(
        1,
        ConnectResult {
            client: "6f1c".into(),
            version: "6.9.1".into(),
            ping: 25,
            pong: true,
            ..Default::default()
        },
    );
    assert_eq!(
        enc(&reply),
        r#"{"id":1,"connect":{"client":"6f1c","version":"6.9.1","ping":25,"pong":true}}"#
    );
}

#[test]
fn session_subscribe_and_presence_stats_in_one_frame() {
    let frame = "{\"id\":2,\"subscribe\":{\"channel\":\"chat:1\",\"recoverable\":true,\"positioned\":true}}\n{\"id\":3,\"presence_stats\":{\"channel\":\"chat:1\"}}";
    let cmds: Vec<Command> = decode_commands(frame.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(cmds.len(), 2);
    assert_eq!((cmds[0].id, cmds[0].method()), (2, Method::Subscribe));
    let sub = cmds[0].subscribe.as_ref().unwrap();
    assert_eq!(sub.channel, "chat:1");
    assert!(sub.recoverable && sub.positioned && !sub.recover);
    assert_eq!((cmds[1].id, cmds[1].method()), (3, Method::PresenceStats));
    assert_eq!(cmds[1].presence_stats.as_ref().unwrap().channel, "chat:1");

    let replies = [
        Reply::result(
            2,
            SubscribeResult {
                recoverable: true,
                positioned: true,
                epoch: "dT9x".into(),
                offset: 7,
                ..Default::default()
            },
        ),
        Reply::result(
            3,
            PresenceStatsResult {
                num_clients: 2,
                num_users: 2,
            },
        ),
    ];
    let mut frame = Vec::new();
    assert_eq!(encode_replies(&replies, &mut frame).unwrap(), 2);
    let frame = String::from_utf8(frame).unwrap();
    // Schema field order (recoverable=3, epoch=6, offset=9, positioned=10).
    assert_eq!(
        frame,
        "{\"id\":2,\"subscribe\":{\"recoverable\":true,\"epoch\":\"dT9x\",\"offset\":7,\"positioned\":true}}\n{\"id\":3,\"presence_stats\":{\"num_clients\":2,\"num_users\":2}}"
    );
    let lines: Vec<&str> = frame.split('\n').collect();
    assert_eq!(
        json(lines[0]),
        json(
            r#"{"id":2,"subscribe":{"recoverable":true,"positioned":true,"epoch":"dT9x","offset":7}}"#
        )
    );
    assert_eq!(
        json(lines[1]),
        json(r#"{"id":3,"presence_stats":{"num_clients":2,"num_users":2}}"#)
    );
}

#[test]
fn session_publication_push_ping_pong() {
    let publication = Publication {
        data: Some(raw_of(r#"{"text":"hi"}"#)),
        offset: 8,
        ..Default::default()
    };
    let mut out = Vec::new();
    encode_publication_push("chat:1", &publication, &mut out).unwrap();
    assert_eq!(
        out,
        br#"{"push":{"channel":"chat:1","pub":{"data":{"text":"hi"},"offset":8}}}"#
    );
    // Same bytes as the general path.
    assert_eq!(
        enc(&Reply::push(Push::publication("chat:1", publication))),
        String::from_utf8(out).unwrap()
    );

    assert_eq!(PING_REPLY, b"{}");
    assert_eq!(enc(&Reply::ping()).as_bytes(), PING_REPLY);
    let pong = one("{}");
    assert_eq!(pong.id, 0);
    assert_eq!(pong.method(), Method::None);
    assert!(pong.is_pong());
}

#[test]
fn session_recovery() {
    let cmd = one(
        r#"{"id":2,"subscribe":{"channel":"chat:1","recover":true,"epoch":"dT9x","offset":8,"recoverable":true,"positioned":true}}"#,
    );
    let sub = cmd.subscribe.unwrap();
    assert!(sub.recover && sub.recoverable && sub.positioned);
    assert_eq!((sub.epoch.as_str(), sub.offset), ("dT9x", 8));

    let publications = (9..=10)
        .map(|offset| Publication {
            data: Some(raw_of(&format!(r#"{{"n":{offset}}}"#))),
            offset,
            ..Default::default()
        })
        .collect();
    let reply = Reply::result(
        2,
        SubscribeResult {
            recoverable: true,
            positioned: true,
            epoch: "dT9x".into(),
            offset: 10,
            publications,
            recovered: true,
            was_recovering: true,
            ..Default::default()
        },
    );
    let text = enc(&reply);
    assert_eq!(
        json(&text),
        json(
            r#"{"id":2,"subscribe":{"recoverable":true,"positioned":true,"epoch":"dT9x","offset":10,"publications":[{"data":{"n":9},"offset":9},{"data":{"n":10},"offset":10}],"recovered":true,"was_recovering":true}}"#
        )
    );
}

#[test]
fn session_error_reply() {
    let cmd = one(r#"{"id":4,"publish":{"channel":"nope:1","data":{}}}"#);
    assert_eq!(cmd.method(), Method::Publish);
    let publish = cmd.publish.unwrap();
    assert_eq!(publish.channel, "nope:1");
    assert_eq!(publish.data.unwrap().get(), "{}");
    assert_eq!(
        enc(&Reply::error(4, Error::UNKNOWN_CHANNEL)),
        r#"{"id":4,"error":{"code":102,"message":"unknown channel"}}"#
    );
}

// ---- omission rules ----

#[test]
fn zero_values_are_omitted() {
    assert_eq!(
        enc(&Reply::result(1, SubscribeResult::default())),
        r#"{"id":1,"subscribe":{}}"#
    );
    assert_eq!(
        enc(&Reply::result(1, ConnectResult::default())),
        r#"{"id":1,"connect":{}}"#
    );
    assert_eq!(
        enc(&Reply::result(5, UnsubscribeResult {})),
        r#"{"id":5,"unsubscribe":{}}"#
    );
    assert_eq!(
        enc(&Reply::result(5, PublishResult {})),
        r#"{"id":5,"publish":{}}"#
    );
    assert_eq!(
        enc(&Reply::result(5, PingResult {})),
        r#"{"id":5,"ping":{}}"#
    );
    assert_eq!(
        enc(&Reply::result(5, RpcResult::default())),
        r#"{"id":5,"rpc":{}}"#
    );
    assert_eq!(
        enc(&Reply::result(5, RefreshResult::default())),
        r#"{"id":5,"refresh":{}}"#
    );
    assert_eq!(
        enc(&Reply::result(5, SubRefreshResult::default())),
        r#"{"id":5,"sub_refresh":{}}"#
    );
    // id 0 omitted.
    assert_eq!(
        enc(&Reply::result(0, PublishResult {})),
        r#"{"publish":{}}"#
    );
    assert_eq!(
        enc(&Reply::push(Push::publication("", Publication::default()))),
        r#"{"push":{"pub":{}}}"#
    );
}

#[test]
fn always_emitted_fields() {
    assert_eq!(
        enc(&Reply::result(1, PresenceStatsResult::default())),
        r#"{"id":1,"presence_stats":{"num_clients":0,"num_users":0}}"#
    );
    assert_eq!(
        enc(&Reply::result(1, HistoryResult::default())),
        r#"{"id":1,"history":{"publications":[],"epoch":"","offset":0}}"#
    );
    assert_eq!(
        enc(&Reply::result(1, PresenceResult::default())),
        r#"{"id":1,"presence":{"presence":{}}}"#
    );
    assert_eq!(
        serde_json::to_string(&ClientInfo::default()).unwrap(),
        r#"{"user":"","client":""}"#
    );
    let mut presence = PresenceResult::default();
    presence.presence.insert(
        "c1".into(),
        ClientInfo {
            user: String::new(),
            client: "c1".into(),
            conn_info: Some(raw_of(r#"{"name":"A"}"#)),
            chan_info: None,
        },
    );
    assert_eq!(
        enc(&Reply::result(2, presence)),
        r#"{"id":2,"presence":{"presence":{"c1":{"user":"","client":"c1","conn_info":{"name":"A"}}}}}"#
    );
}

#[test]
fn publication_all_fields_in_schema_order() {
    let mut tags = BTreeMap::new();
    tags.insert("b".to_owned(), "2".to_owned());
    tags.insert("a".to_owned(), "1".to_owned());
    let publication = Publication {
        data: Some(raw_of("[1,2]")),
        info: Some(ClientInfo {
            user: "u".into(),
            client: "c".into(),
            conn_info: None,
            chan_info: Some(raw_of("true")),
        }),
        offset: 3,
        tags,
        delta: true,
        time: 1_700_000_000_000,
        channel: "news:#u".into(),
        key: "k".into(),
        removed: true,
        score: -5,
        epoch: "e".into(),
        version: 9,
    };
    assert_eq!(
        serde_json::to_string(&publication).unwrap(),
        r#"{"data":[1,2],"info":{"user":"u","client":"c","chan_info":true},"offset":3,"tags":{"a":"1","b":"2"},"delta":true,"time":1700000000000,"channel":"news:#u","key":"k","removed":true,"score":-5,"epoch":"e","version":9}"#
    );
    // Offsets are JSON numbers across the whole u64 range.
    let big = Publication {
        offset: u64::MAX,
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_string(&big).unwrap(),
        r#"{"offset":18446744073709551615}"#
    );
}

#[test]
fn push_bodies() {
    let info = ClientInfo {
        user: "bob".into(),
        client: "c2".into(),
        ..Default::default()
    };
    let cases: Vec<(Push, &str)> = vec![
        (
            Push::join("chat:1", info.clone()),
            r#"{"push":{"channel":"chat:1","join":{"info":{"user":"bob","client":"c2"}}}}"#,
        ),
        (
            Push::leave("chat:1", info),
            r#"{"push":{"channel":"chat:1","leave":{"info":{"user":"bob","client":"c2"}}}}"#,
        ),
        (
            Push::unsubscribe("chat:1", Unsubscribe::INSUFFICIENT_STATE),
            r#"{"push":{"channel":"chat:1","unsubscribe":{"code":2500,"reason":"insufficient state"}}}"#,
        ),
        (
            Push::message(raw_of(r#""hello""#)),
            r#"{"push":{"message":{"data":"hello"}}}"#,
        ),
        (
            Push::subscribe(
                "news",
                SubscribePush {
                    recoverable: true,
                    epoch: "e".into(),
                    offset: 4,
                    positioned: true,
                    data: Some(raw_of("{}")),
                },
            ),
            r#"{"push":{"channel":"news","subscribe":{"recoverable":true,"epoch":"e","offset":4,"positioned":true,"data":{}}}}"#,
        ),
        (
            Push::connect(ConnectPush {
                client: "c".into(),
                version: "v".into(),
                ping: 25,
                ..Default::default()
            }),
            r#"{"push":{"connect":{"client":"c","version":"v","ping":25}}}"#,
        ),
        (
            Push::disconnect(Disconnect::SHUTDOWN),
            r#"{"push":{"disconnect":{"code":3001,"reason":"shutdown","reconnect":true}}}"#,
        ),
        (
            Push::refresh(RefreshPush {
                expires: true,
                ttl: 60,
            }),
            r#"{"push":{"refresh":{"expires":true,"ttl":60}}}"#,
        ),
    ];
    for (push, expected) in cases {
        assert_eq!(enc(&Reply::push(push.clone())), expected);
        let mut out = Vec::new();
        encode_push(&push, &mut out).unwrap();
        assert_eq!(out, expected.as_bytes());
        // Bare push for unidirectional transports = the inner object.
        let mut bare = Vec::new();
        encode_bare_push(&push, &mut bare).unwrap();
        let inner = &expected[r#"{"push":"#.len()..expected.len() - 1];
        assert_eq!(bare, inner.as_bytes());
    }
}

#[test]
fn publication_push_bare_and_numeric_channel_id() {
    let publication = Publication {
        data: Some(raw_of("1")),
        ..Default::default()
    };
    let mut out = Vec::new();
    encode_publication_push_bare("a", &publication, &mut out).unwrap();
    assert_eq!(out, br#"{"channel":"a","pub":{"data":1}}"#);
    let push = Push {
        id: 7,
        publication: Some(publication),
        ..Default::default()
    };
    assert_eq!(
        enc(&Reply::push(push)),
        r#"{"push":{"id":7,"pub":{"data":1}}}"#
    );
}

#[test]
fn channel_is_json_escaped() {
    let mut out = Vec::new();
    encode_publication_push("a\"b\\c\u{1}é", &Publication::default(), &mut out).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "{\"push\":{\"channel\":\"a\\\"b\\\\c\\u0001é\",\"pub\":{}}}"
    );
}

// ---- raw payloads ----

#[test]
fn raw_data_is_kept_verbatim() {
    let payload = r#"{"b": 1 ,  "a":[1,2.50,1e3,"x\u00e9\n"], "z":null}"#;
    let frame = format!(r#"{{"id":9,"publish":{{"channel":"c","data":{payload}}}}}"#);
    let cmd = one(&frame);
    let data = cmd.publish.unwrap().data.unwrap();
    assert_eq!(data.get(), payload);

    let reply = Reply::push(Push::publication(
        "c",
        Publication {
            data: Some(data),
            ..Default::default()
        },
    ));
    assert_eq!(
        enc(&reply),
        format!(r#"{{"push":{{"channel":"c","pub":{{"data":{payload}}}}}}}"#)
    );

    // Scalars and strings as payloads.
    for payload in ["1", "\"s\"", "true", "null", "[]", "-0.5e-7"] {
        let frame = format!(r#"{{"id":1,"rpc":{{"method":"m","data":{payload}}}}}"#);
        let rpc = one(&frame).rpc.unwrap();
        if payload == "null" {
            // null reads as absent, like the reference decoder.
            assert!(rpc.data.is_none());
        } else {
            assert_eq!(rpc.data.unwrap().get(), payload);
        }
    }
}

#[test]
fn raw_newlines_are_stripped_on_encode() {
    let pretty = "{\n  \"text\": \"line1\\nline2\",\n  \"list\": [\n    1,\n    2\n  ]\n}";
    let publication = Publication {
        data: Some(raw_of(pretty)),
        info: Some(ClientInfo {
            user: "u".into(),
            client: "c".into(),
            conn_info: Some(raw_of("{\n\"a\":1}")),
            chan_info: Some(raw_of("[\n]")),
        }),
        offset: 1,
        ..Default::default()
    };
    let mut out = Vec::new();
    encode_publication_push("ch", &publication, &mut out).unwrap();
    assert!(!out.contains(&b'\n'));
    let text = String::from_utf8(out).unwrap();
    // Escaped newlines inside strings are not raw newlines and stay.
    assert_eq!(
        text,
        r#"{"push":{"channel":"ch","pub":{"data":{  "text": "line1\nline2",  "list": [    1,    2  ]},"info":{"user":"u","client":"c","conn_info":{"a":1},"chan_info":[]},"offset":1}}}"#
    );
    let value = json(&text);
    assert_eq!(value["push"]["pub"]["data"]["text"], "line1\nline2");

    // All raw fields of all types.
    let reply = Reply::result(
        1,
        ConnectResult {
            data: Some(raw_of("{\n}")),
            ..Default::default()
        },
    );
    assert_eq!(enc(&reply), r#"{"id":1,"connect":{"data":{}}}"#);
    let reply = Reply::result(
        1,
        RpcResult {
            data: Some(raw_of("[1,\n2]")),
        },
    );
    assert_eq!(enc(&reply), r#"{"id":1,"rpc":{"data":[1,2]}}"#);
    let push = Push::message(raw_of("\"a\"\n"));
    assert_eq!(
        enc(&Reply::push(push)),
        r#"{"push":{"message":{"data":"a"}}}"#
    );
}

#[test]
fn raw_helpers_normalise_newlines() {
    let value = raw("{\n\"a\": 1\n}").unwrap();
    assert_eq!(value.get(), "{\"a\": 1}");
    assert!(raw("{").is_err());
    assert!(raw("").is_err());
    // A parsed value (a token claim) and a decoded field are normalised the same way.
    let stripped = Payload::from(RawValue::from_string("[\n1\n]".into()).unwrap());
    assert_eq!(stripped.get(), "[1]");
    let untouched = Payload::from(RawValue::from_string("[1]".into()).unwrap());
    assert_eq!(untouched.get(), "[1]");
    let decoded: Payload = serde_json::from_str("[\n1\n]").unwrap();
    assert_eq!(decoded.get(), "[1]");
}

// ---- batch decoding ----

#[test]
fn trailing_newline_is_allowed() {
    let cmds: Vec<_> = decode_commands(b"{\"id\":1,\"ping\":{}}\n").collect();
    assert_eq!(cmds.len(), 1);
    assert_eq!(cmds[0].as_ref().unwrap().method(), Method::Ping);
    let cmds: Vec<_> = decode_commands(b"{\"id\":1}\n{\"id\":2}\n").collect();
    assert_eq!(cmds.len(), 2);
    assert!(cmds.iter().all(Result::is_ok));
}

#[test]
fn two_trailing_newlines_is_an_error() {
    let cmds: Vec<_> = decode_commands(b"{\"id\":1}\n\n").collect();
    assert_eq!(cmds.len(), 2);
    assert!(cmds[0].is_ok());
    assert!(matches!(
        cmds[1],
        Err(DecodeError::EmptyCommand { index: 1 })
    ));
}

#[test]
fn empty_line_in_the_middle_is_an_error() {
    let cmds: Vec<_> = decode_commands(b"{\"id\":1}\n\n{\"id\":2}").collect();
    assert_eq!(cmds.len(), 2, "decoding stops at the first error");
    assert!(cmds[0].is_ok());
    assert!(matches!(
        cmds[1],
        Err(DecodeError::EmptyCommand { index: 1 })
    ));
    let cmds: Vec<_> = decode_commands(b"\n{\"id\":1}").collect();
    assert_eq!(cmds.len(), 1);
    assert!(matches!(
        cmds[0],
        Err(DecodeError::EmptyCommand { index: 0 })
    ));
}

#[test]
fn empty_frames_are_errors() {
    for frame in [&b""[..], b"\n"] {
        let cmds: Vec<_> = decode_commands(frame).collect();
        assert_eq!(cmds.len(), 1);
        assert!(matches!(cmds[0], Err(DecodeError::EmptyFrame)));
    }
    let cmds: Vec<_> = decode_commands(b"\n\n").collect();
    assert!(matches!(
        cmds[..],
        [Err(DecodeError::EmptyCommand { index: 0 })]
    ));
}

#[test]
fn garbage_is_an_error_and_stops_decoding() {
    for frame in [
        &b"garbage"[..],
        b"{",
        b"{\"id\":1",
        b"[]",
        b"[1]",
        b"{\"id\":1,\"subscribe\":[\"chat\"]}",
        b"{\"id\":1,\"history\":{\"channel\":\"a\",\"since\":[1,\"e\"]}}",
        b"{\"id\":1,\"subscribe\":{\"channel\":\"a\",\"tf\":[]}}",
        b"{\"id\":1,\"subscribe\":\"chat\"}",
        b"1",
        b"null",
        b"\"str\"",
        b"{\"id\":1}{\"id\":2}",
        b"{\"id\":-1}",
        b"{\"id\":4294967296}",
        b"{\"id\":1.5}",
        b"{\"id\":\"1\"}",
        b"{\"id\":1,\"subscribe\":[]}",
        b"{\"id\":1,\"subscribe\":{\"channel\":5}}",
        b"{\"id\":1,\"publish\":{\"channel\":\"a\",\"data\":}}",
        b"{\"id\":1,\"publish\":{\"channel\":\"a\",\"data\":{\"x\":\"\xff\"}}}",
        b"{\"id\":1,\"subscribe\":{\"channel\":\"\xc3\"}}",
        b"{\"id\":1,\"connect\":{\"token\":\"a\nb\"}}",
    ] {
        let cmds: Vec<_> = decode_commands(frame).collect();
        assert!(
            cmds.iter().any(Result::is_err),
            "{:?} decoded as {cmds:?}",
            String::from_utf8_lossy(frame)
        );
        assert!(
            cmds.last().is_some_and(Result::is_err),
            "error ends the iteration"
        );
    }
    let mut it = decode_commands(b"{\"id\":1}\nnope\n{\"id\":3}");
    assert!(it.next().is_some_and(|c| c.is_ok()));
    assert!(matches!(
        it.next(),
        Some(Err(DecodeError::Json { index: 1, .. }))
    ));
    assert!(it.next().is_none());
    assert!(it.next().is_none());
}

#[test]
fn whitespace_around_a_command_is_accepted() {
    let cmds: Vec<_> = decode_commands(b" {\"id\":1} \r\n\t{\"id\":2}\r").collect();
    assert_eq!(cmds.len(), 2);
    assert!(cmds.iter().all(Result::is_ok));
}

#[test]
fn many_commands_in_one_frame() {
    let frame: Vec<String> = (1..=100)
        .map(|i| format!(r#"{{"id":{i},"presence":{{"channel":"c{i}"}}}}"#))
        .collect();
    let frame = frame.join("\n");
    let cmds: Vec<Command> = decode_commands(frame.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(cmds.len(), 100);
    for (i, cmd) in cmds.iter().enumerate() {
        assert_eq!(cmd.id as usize, i + 1);
        assert_eq!(
            cmd.presence.as_ref().unwrap().channel,
            format!("c{}", i + 1)
        );
    }
}

// ---- tolerance ----

#[test]
fn unknown_fields_are_tolerated() {
    let cmd = one(
        r#"{"id":1,"future_method":{"a":[1,{"b":null}]},"subscribe":{"channel":"a","brand_new":"x","tf":{"op":"and","nodes":[{"key":"k","cmp":"eq","val":"v","extra":1}]},"type":0,"flag":3,"cursor":"c","limit":5,"asc":true},"extra":true}"#,
    );
    assert_eq!(cmd.method(), Method::Subscribe);
    let sub = cmd.subscribe.unwrap();
    assert_eq!(sub.channel, "a");
    assert_eq!(sub.flag, 3);
    let tf = sub.tf.unwrap();
    assert_eq!(tf.op, "and");
    assert_eq!(tf.nodes[0].cmp, "eq");

    let cmd = one(
        r#"{"id":2,"connect":{"token":"t","data":{"x":1},"subs":{"news":{"recover":true,"epoch":"e","offset":5}},"name":"n","version":"v","headers":{"a":"b"},"flag":1,"dict":"d","profile":"p","unknown":[]}}"#,
    );
    let connect = cmd.connect.unwrap();
    assert_eq!(connect.data.unwrap().get(), r#"{"x":1}"#);
    let news = &connect.subs["news"];
    assert!(news.recover);
    assert_eq!((news.epoch.as_str(), news.offset), ("e", 5));
    assert_eq!(connect.headers["a"], "b");
    assert_eq!(
        (
            connect.flag,
            connect.dict.as_str(),
            connect.profile.as_str()
        ),
        (1, "d", "p")
    );
}

#[test]
fn nulls_read_as_defaults() {
    let cmd = one(
        r#"{"id":null,"subscribe":{"channel":null,"token":null,"recover":null,"offset":null,"epoch":null,"data":null,"tf":null}}"#,
    );
    assert_eq!(cmd.id, 0);
    let sub = cmd.subscribe.unwrap();
    assert!(sub.channel.is_empty() && sub.token.is_empty() && !sub.recover);
    assert_eq!(sub.offset, 0);
    assert!(sub.data.is_none() && sub.tf.is_none());
    let cmd = one(r#"{"id":3,"connect":null,"history":{"channel":"h","since":null,"limit":-1}}"#);
    assert_eq!(cmd.method(), Method::History);
    let history = cmd.history.unwrap();
    assert_eq!((history.limit, history.since), (-1, None));
}

#[test]
fn every_request_type_decodes() {
    let cases: [(&str, Method); 13] = [
        (r#"{"id":1,"connect":{}}"#, Method::Connect),
        (r#"{"id":1,"ping":{}}"#, Method::Ping),
        (r#"{"id":1,"subscribe":{"channel":"a"}}"#, Method::Subscribe),
        (
            r#"{"id":1,"unsubscribe":{"channel":"a"}}"#,
            Method::Unsubscribe,
        ),
        (
            r#"{"id":1,"publish":{"channel":"a","data":1}}"#,
            Method::Publish,
        ),
        (r#"{"id":1,"presence":{"channel":"a"}}"#, Method::Presence),
        (
            r#"{"id":1,"presence_stats":{"channel":"a"}}"#,
            Method::PresenceStats,
        ),
        (
            r#"{"id":1,"history":{"channel":"a","limit":10,"since":{"offset":3,"epoch":"e"},"reverse":true}}"#,
            Method::History,
        ),
        (r#"{"id":1,"rpc":{"method":"m","data":{}}}"#, Method::Rpc),
        (r#"{"send":{"data":{"x":1}}}"#, Method::Send),
        (r#"{"id":1,"refresh":{"token":"t"}}"#, Method::Refresh),
        (
            r#"{"id":1,"sub_refresh":{"channel":"a","token":"t"}}"#,
            Method::SubRefresh,
        ),
        (r#"{"id":1}"#, Method::None),
    ];
    for (text, method) in cases {
        let cmd = one(text);
        assert_eq!(cmd.method(), method, "{text}");
        // Commands serialize back to the same JSON (used by test clients and the bench tool).
        assert_eq!(
            json(&serde_json::to_string(&cmd).unwrap()),
            json(text),
            "{text}"
        );
    }
    let send = one(r#"{"send":{"data":{"x":1}}}"#);
    assert_eq!(send.id, 0);
    assert!(!send.is_pong(), "send with id 0 is not a pong");
    let history = one(cases[7].0).history.unwrap();
    assert_eq!(
        history.since,
        Some(StreamPosition {
            offset: 3,
            epoch: "e".into()
        })
    );
    assert!(history.reverse);
    assert_eq!(Method::PresenceStats.as_str(), "presence_stats");
    assert_eq!(Method::SubRefresh.to_string(), "sub_refresh");
}

#[test]
fn method_picks_first_field_in_fixed_order() {
    let cmd = one(r#"{"id":1,"sub_refresh":{},"subscribe":{"channel":"a"},"connect":{}}"#);
    assert_eq!(cmd.method(), Method::Connect);
    let cmd = one(r#"{"id":1,"subscribe":{"channel":"a"},"ping":{}}"#);
    assert_eq!(cmd.method(), Method::Ping);
    let cmd = one(r#"{"id":1,"send":{},"rpc":{}}"#);
    assert_eq!(cmd.method(), Method::Rpc);
    let cmd = one(r#"{"id":1,"history":{},"presence_stats":{},"publish":{}}"#);
    assert_eq!(cmd.method(), Method::Publish);
    let cmd = one(r#"{"id":1,"sub_refresh":{},"refresh":{}}"#);
    assert_eq!(cmd.method(), Method::Refresh);
    // id 0 without send is a pong even with another field (reference `isPong`).
    let cmd = one(r#"{"subscribe":{"channel":"a"}}"#);
    assert!(cmd.is_pong());
}

// ---- encoding helpers ----

#[test]
fn reply_batch_mixes_replies_pushes_and_pre_encoded_messages() {
    let mut publication_push = Vec::new();
    encode_publication_push(
        "c",
        &Publication {
            data: Some(raw_of("{}")),
            offset: 1,
            ..Default::default()
        },
        &mut publication_push,
    )
    .unwrap();

    let mut frame = Vec::new();
    let mut batch = ReplyBatch::new(&mut frame);
    assert!(batch.is_empty());
    batch.reply(&Reply::result(1, PublishResult {})).unwrap();
    batch.encoded(&publication_push).unwrap();
    batch
        .push(&Push::unsubscribe("c", Unsubscribe::SERVER))
        .unwrap();
    batch.encoded(PING_REPLY).unwrap();
    assert_eq!(batch.len(), 4);
    let text = String::from_utf8(frame).unwrap();
    assert_eq!(
        text,
        "{\"id\":1,\"publish\":{}}\n{\"push\":{\"channel\":\"c\",\"pub\":{\"data\":{},\"offset\":1}}}\n{\"push\":{\"channel\":\"c\",\"unsubscribe\":{\"code\":2000,\"reason\":\"server unsubscribe\"}}}\n{}"
    );
    assert_eq!(encode_replies(&[], &mut Vec::new()).unwrap(), 0);
}

#[test]
fn encodes_into_a_websocket_frame_buffer() {
    let mut buf = crate::ws::FrameBuf::new();
    encode_reply(&Reply::error(7, Error::PERMISSION_DENIED), &mut buf).unwrap();
    assert_eq!(
        buf.payload(),
        br#"{"id":7,"error":{"code":103,"message":"permission denied"}}"#
    );
}

#[test]
fn replies_deserialize_back() {
    let text = r#"{"id":2,"subscribe":{"recoverable":true,"epoch":"dT9x","offset":10,"publications":[{"data":{"n":9},"offset":9,"info":{"user":"u","client":"c","conn_info":[1]}}],"recovered":true,"future":1}}"#;
    let reply: Reply = serde_json::from_str(text).unwrap();
    let sub = reply.subscribe.as_ref().unwrap();
    assert_eq!(
        sub.publications[0].data.as_ref().unwrap().get(),
        r#"{"n":9}"#
    );
    assert_eq!(json(&enc(&reply)), {
        let mut v = json(text);
        v["subscribe"].as_object_mut().unwrap().remove("future");
        v
    });
    let text = r#"{"push":{"channel":"c","pub":{"data":"x","offset":3}}}"#;
    let reply: Reply = serde_json::from_str(text).unwrap();
    assert_eq!(
        reply
            .push
            .as_ref()
            .unwrap()
            .publication
            .as_ref()
            .unwrap()
            .offset,
        3
    );
    assert_eq!(enc(&reply), text);
    let reply: Reply =
        serde_json::from_str(r#"{"id":4,"error":{"code":102,"message":"unknown channel"}}"#)
            .unwrap();
    assert_eq!(reply.error, Some(Error::UNKNOWN_CHANNEL));
}
