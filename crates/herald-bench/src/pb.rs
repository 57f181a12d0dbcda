//! The Protobuf format of the client protocol (`--format protobuf`, WebSocket subprotocol
//! `centrifuge-protobuf`): each Command and Reply is a message of Herald's schema
//! (crates/herald/proto/client.proto, Centrifugo's field numbers) prefixed with its length as a
//! varint, several per binary frame; the empty Reply is a ping and the empty Command the pong.
//!
//! Commands are built with the prost-generated types ([`pbt`]). Replies are read two ways, as
//! the JSON side of the bench reads them: the `fast` client model walks the wire with prost's
//! field primitives to the publication's `data` without building a message (no allocation per
//! delivery, like [`crate::proto::classify`] for JSON); the `tungstenite` model decodes each
//! Reply into the generated types, as a client library does ([`decode_publication`]).

use prost::Message as _;
use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};

use crate::proto::Line;

/// The Rust types generated from the schema by build.rs.
#[allow(missing_docs, clippy::all, clippy::pedantic, dead_code)]
pub mod pbt {
    include!(concat!(env!("OUT_DIR"), "/herald.client.rs"));
}

/// The WebSocket subprotocol that selects the Protobuf format.
pub const SUBPROTOCOL: &str = "centrifuge-protobuf";

/// The pong: an empty Command, length-prefixed.
pub const PONG: &[u8] = &[0];

/// A `connect` command (id 1), length-prefixed.
pub fn connect_command(id: u32, token: Option<String>) -> Vec<u8> {
    pbt::Command {
        id,
        connect: Some(pbt::ConnectRequest {
            token: token.unwrap_or_default(),
            name: "herald-bench".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_length_delimited_to_vec()
}

/// A `subscribe` command to `channel`, length-prefixed.
pub fn subscribe_command(id: u32, channel: &str) -> Vec<u8> {
    pbt::Command {
        id,
        subscribe: Some(pbt::SubscribeRequest {
            channel: channel.to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_length_delimited_to_vec()
}

/// Splits a binary frame into its length-prefixed messages; a malformed prefix ends the
/// iteration with `None` in place of the message.
pub fn messages(payload: &[u8]) -> impl Iterator<Item = Option<&[u8]>> {
    let mut rest = Some(payload);
    std::iter::from_fn(move || {
        let mut buf = rest?;
        if buf.is_empty() {
            rest = None;
            return None;
        }
        let len = decode_varint(&mut buf)
            .ok()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n <= buf.len());
        let Some(len) = len else {
            rest = None;
            return Some(None);
        };
        let (msg, next) = buf.split_at(len);
        rest = Some(next);
        Some(Some(msg))
    })
}

/// The fields of one message: (field number, wire type, the field's bytes for a
/// length-delimited field or its value for a varint). `None` on malformed input.
fn fields(mut buf: &[u8]) -> impl Iterator<Item = Option<(u32, Field<'_>)>> {
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || buf.is_empty() {
            return None;
        }
        let parsed = (|| {
            let (tag, wire) = decode_key(&mut buf).ok()?;
            match wire {
                WireType::Varint => Some((tag, Field::Varint(decode_varint(&mut buf).ok()?))),
                WireType::LengthDelimited => {
                    let len = usize::try_from(decode_varint(&mut buf).ok()?).ok()?;
                    if len > buf.len() {
                        return None;
                    }
                    let (bytes, next) = buf.split_at(len);
                    buf = next;
                    Some((tag, Field::Bytes(bytes)))
                }
                other => {
                    skip_field(other, tag, &mut buf, DecodeContext::default()).ok()?;
                    Some((tag, Field::Other))
                }
            }
        })();
        if parsed.is_none() {
            failed = true;
        }
        Some(parsed)
    })
}

/// One field's value as [`fields`] gives it.
#[derive(Clone, Copy)]
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Other,
}

/// The bytes of field `number` (length-delimited) of a message, the last one if repeated.
fn bytes_field(msg: &[u8], number: u32) -> Option<&[u8]> {
    let mut found = None;
    for field in fields(msg) {
        match field? {
            (n, Field::Bytes(b)) if n == number => found = Some(b),
            _ => {}
        }
    }
    found
}

/// The key byte of `Reply.push` (field 4, length-delimited).
const PUSH_KEY: u8 = (4 << 3) | 2;

/// Classifies one Reply message (the bytes after its length prefix) the way
/// [`crate::proto::classify`] classifies a JSON line: a ping (empty), a bench publication (its
/// `ts` and `seq` read from the JSON `data` bytes), another push, or a reply to a command.
pub fn classify(msg: &[u8]) -> Line<'_> {
    if msg.is_empty() {
        return Line::Ping;
    }
    // The fast path, for the message the bench receives millions of times a second: a push
    // (a Reply opening with field 4, no id) carrying the bench's data as the bench wrote it.
    // Anything else goes through the field walk below.
    if msg.first() == Some(&PUSH_KEY)
        && let Some((ts, seq)) = crate::proto::bench_numbers(msg)
    {
        return Line::Pub { ts, seq };
    }
    let mut id = 0u64;
    let mut error = false;
    let mut push = None;
    for field in fields(msg) {
        match field {
            Some((1, Field::Varint(v))) => id = v,
            Some((2, Field::Bytes(_))) => error = true,
            Some((4, Field::Bytes(b))) => push = Some(b),
            Some(_) => {}
            None => return Line::Unknown,
        }
    }
    if let Some(push) = push {
        // Push.pub = 4, Publication.data = 4.
        let data = bytes_field(push, 4).and_then(|publication| bytes_field(publication, 4));
        return match data.and_then(bench_ts_seq) {
            Some((ts, seq)) => Line::Pub { ts, seq },
            None => Line::OtherPush,
        };
    }
    if id > 0 {
        return Line::Reply {
            id: id as u32,
            error,
            raw: msg,
        };
    }
    Line::Unknown
}

/// `ts` and `seq` of the bench's JSON data object (`{"ts":N,"seq":M,…}`), as a Protobuf
/// client receives it: the JSON bytes themselves.
fn bench_ts_seq(data: &[u8]) -> Option<(u64, u64)> {
    let ts = crate::proto::number_after_key(data, b"ts")?;
    let seq = crate::proto::number_after_key(data, b"seq")?;
    Some((ts, seq))
}

/// A Reply decoded into the generated types, as a client library does: the bench
/// publication's `ts` and `seq` if it is one (the `tungstenite` model's reader).
pub fn decode_publication(msg: &[u8]) -> Result<Option<(u64, u64)>, prost::DecodeError> {
    let reply = pbt::Reply::decode(msg)?;
    Ok(reply
        .push
        .and_then(|p| p.r#pub)
        .and_then(|p| bench_ts_seq(&p.data)))
}

/// A readable description of an error reply (for set-up failures).
pub fn describe_error(msg: &[u8]) -> String {
    match pbt::Reply::decode(msg) {
        Ok(pbt::Reply { error: Some(e), .. }) => format!("error {} {}", e.code, e.message),
        Ok(other) => format!("{other:?}"),
        Err(e) => format!("undecodable reply: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delimited(reply: pbt::Reply) -> Vec<u8> {
        reply.encode_length_delimited_to_vec()
    }

    fn publication(ts: u64, seq: u64) -> pbt::Reply {
        let mut data = Vec::new();
        crate::proto::bench_data(&mut data, ts, seq, 64);
        pbt::Reply {
            push: Some(pbt::Push {
                channel: "bench".into(),
                r#pub: Some(pbt::Publication {
                    data: data.into(),
                    offset: 7,
                    info: Some(pbt::ClientInfo {
                        user: "u".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The fast path takes the bench's own data; data in another shape (keys in another
    /// order) is still read, by the field walk.
    #[test]
    fn a_publication_is_read_by_the_fast_path_or_the_field_walk() {
        let fast = delimited(publication(11, 12));
        let fast = messages(&fast).next().unwrap().unwrap();
        assert_eq!(fast[0], PUSH_KEY);
        assert!(crate::proto::bench_numbers(fast).is_some());
        assert_eq!(classify(fast), Line::Pub { ts: 11, seq: 12 });
        let mut other = publication(0, 0);
        if let Some(p) = other.push.as_mut().and_then(|p| p.r#pub.as_mut()) {
            p.data = br#"{"seq":14,"ts":13}"#.to_vec().into();
        }
        let other = delimited(other);
        let other = messages(&other).next().unwrap().unwrap();
        assert!(crate::proto::bench_numbers(other).is_none());
        assert_eq!(classify(other), Line::Pub { ts: 13, seq: 14 });
    }

    /// The wire scan agrees with prost's full decode on every kind of reply, several per frame.
    #[test]
    fn the_fast_scan_reads_what_prost_decodes() {
        let mut frame = Vec::new();
        frame.extend(delimited(pbt::Reply {
            id: 1,
            connect: Some(pbt::ConnectResult {
                client: "c".into(),
                ..Default::default()
            }),
            ..Default::default()
        }));
        frame.extend(delimited(pbt::Reply::default()));
        frame.extend(delimited(publication(1_234_567_890_123, 42)));
        frame.extend(delimited(pbt::Reply {
            id: 2,
            error: Some(pbt::Error {
                code: 103,
                message: "permission denied".into(),
                temporary: false,
            }),
            ..Default::default()
        }));
        frame.extend(delimited(pbt::Reply {
            push: Some(pbt::Push {
                channel: "bench".into(),
                join: Some(pbt::Join::default()),
                ..Default::default()
            }),
            ..Default::default()
        }));
        let lines: Vec<Line<'_>> = messages(&frame).map(|m| classify(m.unwrap())).collect();
        assert!(matches!(
            lines[0],
            Line::Reply {
                id: 1,
                error: false,
                ..
            }
        ));
        assert_eq!(lines[1], Line::Ping);
        assert_eq!(
            lines[2],
            Line::Pub {
                ts: 1_234_567_890_123,
                seq: 42
            }
        );
        assert!(matches!(
            lines[3],
            Line::Reply {
                id: 2,
                error: true,
                ..
            }
        ));
        assert_eq!(lines[4], Line::OtherPush);
        assert_eq!(lines.len(), 5);
        let publication = delimited(publication(5, 6));
        let body = messages(&publication).next().unwrap().unwrap();
        assert_eq!(decode_publication(body).unwrap(), Some((5, 6)));
        assert!(describe_error(messages(&frame).nth(3).unwrap().unwrap()).contains("103"));
    }

    #[test]
    fn malformed_frames_end_the_iteration() {
        // A length longer than what follows.
        let v: Vec<_> = messages(&[5, 1, 2]).collect();
        assert_eq!(v, vec![None]);
        assert_eq!(classify(&[0xff]), Line::Unknown);
        assert_eq!(messages(&[]).count(), 0);
    }

    #[test]
    fn commands_round_trip_through_prost() {
        let c = connect_command(1, Some("tok".into()));
        let body = messages(&c).next().unwrap().unwrap();
        let cmd = pbt::Command::decode(body).unwrap();
        assert_eq!(cmd.id, 1);
        assert_eq!(cmd.connect.unwrap().token, "tok");
        let s = subscribe_command(2, "bench");
        let cmd = pbt::Command::decode(messages(&s).next().unwrap().unwrap()).unwrap();
        assert_eq!(cmd.subscribe.unwrap().channel, "bench");
        assert_eq!(messages(PONG).next(), Some(Some(&[][..])));
    }
}
