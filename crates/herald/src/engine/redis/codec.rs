//! The Redis engine's wire formats: PUB/SUB messages between nodes and stream entries.
//!
//! **PUB/SUB message**: one kind byte, then length-prefixed fields (`<decimal length>:<bytes>`,
//! binary-safe and simple to build in Lua, where publications are written by `publish.lua`):
//!
//! * `p` publication: offset, epoch, delta flag (`1`/`0`), time (Unix ms), data, publisher
//!   info (JSON, or empty), tags (JSON object, or empty);
//! * `j` join, `l` leave: the client's info (JSON).
//!
//! **Stream entry** (`publish.lua`): id `<offset>-0`, fields `d` data, `i` info, `t` tags,
//! `m` time — the same encodings as the message fields.

use std::collections::BTreeMap;
use std::sync::Arc;

use redis::Value;

use crate::engine::StoredPublication;
use crate::protocol::{ClientInfo, Payload};

/// One decoded PUB/SUB message.
#[derive(Debug)]
pub(super) enum Event {
    /// A publication (offset 0 and an empty epoch when its channel keeps no history).
    Publication {
        publication: Arc<StoredPublication>,
        epoch: String,
        delta: bool,
    },
    /// A client subscribed.
    Join(ClientInfo),
    /// A client unsubscribed.
    Leave(ClientInfo),
}

/// A message that is not one of ours (another writer on the same prefix, a newer format).
#[derive(Debug, thiserror::Error)]
#[error("undecodable Redis PUB/SUB message: {0}")]
pub(super) struct DecodeError(&'static str);

/// Encodes a publisher for a message or entry field (empty: none).
pub(super) fn encode_info(info: Option<&ClientInfo>) -> Vec<u8> {
    info.map(|i| serde_json::to_vec(i).unwrap_or_else(|_| b"{}".to_vec()))
        .unwrap_or_default()
}

/// Encodes tags for a message or entry field (empty: none).
pub(super) fn encode_tags(tags: &BTreeMap<String, String>) -> Vec<u8> {
    if tags.is_empty() {
        Vec::new()
    } else {
        serde_json::to_vec(tags).unwrap_or_else(|_| b"{}".to_vec())
    }
}

/// A join (`leave: false`) or leave message.
pub(super) fn encode_join_leave(info: &ClientInfo, leave: bool) -> Vec<u8> {
    let json = encode_info(Some(info));
    let mut out = Vec::with_capacity(json.len() + 8);
    out.push(if leave { b'l' } else { b'j' });
    field(&mut out, &json);
    out
}

fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(bytes.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(bytes);
}

/// Reads length-prefixed fields.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn next(&mut self) -> Result<&'a [u8], DecodeError> {
        let colon = self
            .0
            .iter()
            .position(|b| *b == b':')
            .ok_or(DecodeError("a field without its length"))?;
        let len: usize = std::str::from_utf8(&self.0[..colon])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(DecodeError("a field length that is not a number"))?;
        let rest = &self.0[colon + 1..];
        if rest.len() < len {
            return Err(DecodeError("a field longer than the message"));
        }
        let (value, rest) = rest.split_at(len);
        self.0 = rest;
        Ok(value)
    }

    fn number(&mut self) -> Result<u64, DecodeError> {
        std::str::from_utf8(self.next()?)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(DecodeError("a number field that is not a number"))
    }

    fn text(&mut self) -> Result<String, DecodeError> {
        String::from_utf8(self.next()?.to_vec())
            .map_err(|_| DecodeError("a text field not in UTF-8"))
    }
}

fn decode_info(bytes: &[u8]) -> Result<Option<ClientInfo>, DecodeError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(bytes)
        .map(Some)
        .map_err(|_| DecodeError("client info that is not its JSON"))
}

fn decode_tags(bytes: &[u8]) -> Result<BTreeMap<String, String>, DecodeError> {
    if bytes.is_empty() {
        return Ok(BTreeMap::new());
    }
    serde_json::from_slice(bytes).map_err(|_| DecodeError("tags that are not a JSON object"))
}

/// Decodes a PUB/SUB message.
pub(super) fn decode(message: &[u8]) -> Result<Event, DecodeError> {
    let (&kind, rest) = message.split_first().ok_or(DecodeError("empty"))?;
    let mut fields = Fields(rest);
    match kind {
        b'p' => {
            let offset = fields.number()?;
            let epoch = fields.text()?;
            let delta = fields.next()? == b"1";
            let time_ms = fields.number()? as i64;
            let data = Payload::from_stored(fields.next()?.to_vec());
            let info = decode_info(fields.next()?)?;
            let tags = decode_tags(fields.next()?)?;
            Ok(Event::Publication {
                publication: Arc::new(StoredPublication {
                    offset,
                    data,
                    info,
                    tags,
                    time_ms,
                }),
                epoch,
                delta,
            })
        }
        b'j' | b'l' => {
            let info = decode_info(fields.next()?)?.ok_or(DecodeError("a join without info"))?;
            Ok(if kind == b'j' {
                Event::Join(info)
            } else {
                Event::Leave(info)
            })
        }
        _ => Err(DecodeError("unknown kind")),
    }
}

/// Decodes one entry of an `XRANGE` reply (`[id, [field, value, …]]`).
pub(super) fn decode_entry(entry: &Value) -> Result<Arc<StoredPublication>, DecodeError> {
    let Value::Array(parts) = entry else {
        return Err(DecodeError("a stream entry that is not an array"));
    };
    let [Value::BulkString(id), Value::Array(fields)] = parts.as_slice() else {
        return Err(DecodeError("a stream entry without id and fields"));
    };
    let offset = std::str::from_utf8(id)
        .ok()
        .and_then(|id| id.split('-').next())
        .and_then(|o| o.parse().ok())
        .ok_or(DecodeError("a stream entry id that is not an offset"))?;
    let mut publication = StoredPublication {
        offset,
        data: Payload::from_stored(Vec::new()),
        info: None,
        tags: BTreeMap::new(),
        time_ms: 0,
    };
    for pair in fields.chunks(2) {
        let [Value::BulkString(name), Value::BulkString(value)] = pair else {
            return Err(DecodeError("a stream entry field that is not a string"));
        };
        match name.as_slice() {
            b"d" => publication.data = Payload::from_stored(value.clone()),
            b"i" => publication.info = decode_info(value)?,
            b"t" => publication.tags = decode_tags(value)?,
            b"m" => {
                publication.time_ms = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            }
            _ => {}
        }
    }
    Ok(Arc::new(publication))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `publish.lua` writes, built the same way.
    fn lua_like(fields: &[&[u8]]) -> Vec<u8> {
        let mut out = vec![b'p'];
        for f in fields {
            field(&mut out, f);
        }
        out
    }

    #[test]
    fn messages_round_trip_binary_data_and_all() {
        let info = ClientInfo {
            user: "u".into(),
            client: "c".into(),
            ..ClientInfo::default()
        };
        let tags = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let data: &[u8] = b"\x00\xff:12:{\"x\"}";
        let message = lua_like(&[
            b"7",
            b"ep0ch",
            b"1",
            b"1700000000000",
            data,
            &encode_info(Some(&info)),
            &encode_tags(&tags),
        ]);
        let Event::Publication {
            publication,
            epoch,
            delta,
        } = decode(&message).unwrap()
        else {
            panic!("a publication");
        };
        assert_eq!(publication.offset, 7);
        assert_eq!(epoch, "ep0ch");
        assert!(delta);
        assert_eq!(publication.time_ms, 1_700_000_000_000);
        assert_eq!(publication.data.as_bytes(), data);
        assert_eq!(publication.info.as_ref().unwrap().user, "u");
        assert_eq!(publication.tags, tags);
        let Event::Leave(back) = decode(&encode_join_leave(&info, true)).unwrap() else {
            panic!("a leave");
        };
        assert_eq!(back.client, "c");
        assert!(matches!(
            decode(&encode_join_leave(&info, false)).unwrap(),
            Event::Join(_)
        ));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"x",
            b"p",
            b"p5:abc",
            b"p99999999999999999999:",
            b"pnan:1",
            b"j0:",
            b"j2:{}",
        ] {
            assert!(
                decode(bad).is_err() || matches!(decode(bad), Ok(Event::Join(_))),
                "{bad:?}"
            );
        }
        assert!(decode_entry(&Value::Nil).is_err());
    }
}
