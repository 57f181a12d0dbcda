//! The little of the Centrifugo v2 JSON protocol the bench needs, read without allocating:
//! a text frame holds one or more replies separated by `\n`; each is a ping (`{}`), a push
//! (`{"push":{"channel":..,"pub":{"data":{"ts":..,"seq":..}}}}`), or a reply to a command
//! (`{"id":N,...}` or `{"id":N,"error":{...}}`).

use std::sync::LazyLock;

use memchr::memmem;

/// The start of the bench's own data object inside a push, as the bench writes it (see
/// [`bench_data`]) and a server that copies `data` verbatim sends it back. Built once: a
/// searcher costs more to build than a search of a 200-byte line.
static BENCH_DATA: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(br#""data":{"ts":"#));

/// The start of the bench's data object itself, as a Protobuf client receives it: the JSON
/// bytes of `data` inside the binary push.
static BENCH_DATA_BYTES: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(br#"{"ts":"#));

/// `ts` and `seq` of the bench's data object found in `bytes` exactly as [`bench_data`]
/// writes it (`{"ts":N,"seq":M,…`): one search and two numbers, the Protobuf reader's fast
/// path as [`bench_publication`] is the JSON one's.
pub fn bench_numbers(bytes: &[u8]) -> Option<(u64, u64)> {
    let at = BENCH_DATA_BYTES.find(bytes)? + BENCH_DATA_BYTES.needle().len();
    let (ts, rest) = leading_number(&bytes[at..])?;
    let (seq, _) = leading_number(rest.strip_prefix(br#","seq":"#)?)?;
    Some((ts, seq))
}

/// What one reply line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// `{}`: a server ping; the client answers with `{}`.
    Ping,
    /// A publication carrying the bench's `ts` (send time, ns) and `seq`.
    Pub {
        /// Publisher's send time, monotonic ns.
        ts: u64,
        /// Message number.
        seq: u64,
    },
    /// A push that is not a bench publication (join, leave, unsubscribe, foreign data…).
    OtherPush,
    /// A reply to command `id`; `error` when it carries an error.
    Reply {
        /// The command id.
        id: u32,
        /// The reply has an `error` field.
        error: bool,
        /// The whole line, for messages.
        raw: &'a [u8],
    },
    /// Anything else (not produced by a conforming server).
    Unknown,
}

/// Splits a frame's payload into its non-empty lines.
pub fn lines(payload: &[u8]) -> impl Iterator<Item = &[u8]> {
    // memchr finds the separators with SIMD: most frames hold one line, and a byte-by-byte
    // split would scan all of it.
    let mut rest = Some(payload);
    std::iter::from_fn(move || {
        while let Some(text) = rest {
            let line = match memchr::memchr(b'\n', text) {
                Some(i) => {
                    rest = Some(&text[i + 1..]);
                    &text[..i]
                }
                None => {
                    rest = None;
                    text
                }
            };
            let mut line = trim(line);
            // An SSE event's field (`data: <json>`): the JSON is the line.
            if let Some(data) = line.strip_prefix(b"data:") {
                line = trim(data);
            }
            if !line.is_empty() {
                return Some(line);
            }
        }
        None
    })
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if first.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if last.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// Classifies one reply line.
pub fn classify(line: &[u8]) -> Line<'_> {
    let line = trim(line);
    if is_empty_object(line) {
        return Line::Ping;
    }
    if let Some(publication) = bench_publication(line) {
        return publication;
    }
    if let Some(push_at) = find_key(line, b"push") {
        let rest = &line[push_at..];
        if let Some(pub_at) = find_key(rest, b"pub") {
            let body = &rest[pub_at..];
            if let (Some(ts), Some(seq)) = (
                number_after_key(body, b"ts"),
                number_after_key(body, b"seq"),
            ) {
                return Line::Pub { ts, seq };
            }
        }
        return Line::OtherPush;
    }
    if let Some(id) = number_after_key(line, b"id") {
        let error = find_key(line, b"error").is_some();
        return Line::Reply {
            id: id as u32,
            error,
            raw: line,
        };
    }
    Line::Unknown
}

/// The fast path for the line the bench receives a million times a second: a push whose data is
/// exactly what [`bench_data`] wrote (`{"ts":N,"seq":M,…`). Anything else (other key order,
/// whitespace) is left to the general path of [`classify`].
fn bench_publication(line: &[u8]) -> Option<Line<'static>> {
    if !line.starts_with(br#"{"push":"#) {
        return None;
    }
    let at = BENCH_DATA.find(line)? + BENCH_DATA.needle().len();
    let (ts, rest) = leading_number(&line[at..])?;
    let (seq, _) = leading_number(rest.strip_prefix(br#","seq":"#)?)?;
    Some(Line::Pub { ts, seq })
}

/// The unsigned integer at the start of `s`, and what follows it.
fn leading_number(s: &[u8]) -> Option<(u64, &[u8])> {
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in &s[..digits] {
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some((v, &s[digits..]))
}

fn is_empty_object(line: &[u8]) -> bool {
    match line {
        [b'{', inner @ .., b'}'] => inner.iter().all(u8::is_ascii_whitespace),
        _ => false,
    }
}

/// Position just after `"key"` followed (after optional whitespace) by `:`.
pub fn find_key(hay: &[u8], key: &[u8]) -> Option<usize> {
    let mut buf = [0u8; 32];
    assert!(key.len() <= buf.len() - 2, "keys are short constants");
    buf[0] = b'"';
    buf[1..=key.len()].copy_from_slice(key);
    buf[key.len() + 1] = b'"';
    find_quoted(hay, &buf[..key.len() + 2])
}

/// `needle` starts with `"`: the candidates are the quotes of `hay` (found with SIMD), which
/// for short protocol lines is cheaper than building a substring searcher per call.
fn find_quoted(hay: &[u8], needle: &[u8]) -> Option<usize> {
    for i in memchr::memchr_iter(b'"', hay) {
        if !hay[i..].starts_with(needle) {
            continue;
        }
        let mut j = i + needle.len();
        while j < hay.len() && hay[j].is_ascii_whitespace() {
            j += 1;
        }
        if j < hay.len() && hay[j] == b':' {
            return Some(j + 1);
        }
    }
    None
}

/// The unsigned integer value of `"key": N` in `hay`.
pub fn number_after_key(hay: &[u8], key: &[u8]) -> Option<u64> {
    let mut i = find_key(hay, key)?;
    while i < hay.len() && hay[i].is_ascii_whitespace() {
        i += 1;
    }
    let start = i;
    let mut v: u64 = 0;
    while i < hay.len() && hay[i].is_ascii_digit() {
        v = v.checked_mul(10)?.checked_add(u64::from(hay[i] - b'0'))?;
        i += 1;
    }
    (i > start).then_some(v)
}

/// Builds the bench publication data object, padded with `x` so the JSON object is
/// `payload_size` bytes long (or as short as possible when that is smaller).
pub fn bench_data(out: &mut Vec<u8>, ts: u64, seq: u64, payload_size: usize) {
    use std::io::Write as _;
    out.clear();
    let _ = write!(out, r#"{{"ts":{ts},"seq":{seq},"pad":""#);
    let base = out.len() + 2; // closing `"}`
    let pad = payload_size.saturating_sub(base);
    out.resize(out.len() + pad, b'x');
    out.extend_from_slice(b"\"}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_batched_frames() {
        let p = b"{\"id\":1,\"connect\":{}}\n{}\n{\"push\":{\"channel\":\"c\",\"pub\":{\"data\":{\"ts\":5,\"seq\":7}}}}\n";
        let v: Vec<&[u8]> = lines(p).collect();
        assert_eq!(v.len(), 3);
        assert_eq!(
            classify(v[0]),
            Line::Reply {
                id: 1,
                error: false,
                raw: v[0]
            }
        );
        assert_eq!(classify(v[1]), Line::Ping);
        assert_eq!(classify(v[2]), Line::Pub { ts: 5, seq: 7 });
        assert_eq!(lines(b"").count(), 0);
        assert_eq!(lines(b"\n\n").count(), 0);
    }

    #[test]
    fn classifies_pushes_replies_and_pings() {
        assert_eq!(classify(b"{}"), Line::Ping);
        assert_eq!(classify(b" { } "), Line::Ping);
        let push = br#"{"push":{"channel":"bench","pub":{"data":{"ts":1234567890123,"seq":42,"pad":"xxxx"},"offset":9}}}"#;
        assert_eq!(
            classify(push),
            Line::Pub {
                ts: 1_234_567_890_123,
                seq: 42
            }
        );
        // Whitespace and key order do not matter.
        let spaced =
            br#"{ "push" : { "pub" : { "data" : { "seq" : 3 , "ts" : 10 } }, "channel":"c" } }"#;
        assert_eq!(classify(spaced), Line::Pub { ts: 10, seq: 3 });
        let join = br#"{"push":{"channel":"c","join":{"info":{"user":"u","client":"x"}}}}"#;
        assert_eq!(classify(join), Line::OtherPush);
        let foreign = br#"{"push":{"channel":"c","pub":{"data":{"text":"hi"}}}}"#;
        assert_eq!(classify(foreign), Line::OtherPush);
        let err = br#"{"id":2,"error":{"code":103,"message":"permission denied"}}"#;
        assert_eq!(
            classify(err),
            Line::Reply {
                id: 2,
                error: true,
                raw: err
            }
        );
        let ok = br#"{"id":2,"subscribe":{}}"#;
        assert_eq!(
            classify(ok),
            Line::Reply {
                id: 2,
                error: false,
                raw: ok
            }
        );
        assert_eq!(classify(b"[1,2]"), Line::Unknown);
        // The fast path gives way to the general one when the data is not the bench's own.
        let reordered = br#"{"push":{"channel":"c","pub":{"data":{"ts":5,"pad":"","seq":6}}}}"#;
        assert_eq!(classify(reordered), Line::Pub { ts: 5, seq: 6 });
        let no_seq = br#"{"push":{"channel":"c","pub":{"data":{"ts":5}}}}"#;
        assert_eq!(classify(no_seq), Line::OtherPush);
        // A value that merely contains the key text is not a key.
        assert_eq!(
            number_after_key(br#"{"a":"\"ts\"","ts":4}"#, b"ts"),
            Some(4)
        );
        assert_eq!(number_after_key(br#"{"ts":"x"}"#, b"ts"), None);
        assert_eq!(
            number_after_key(br#"{"ts":99999999999999999999999}"#, b"ts"),
            None
        );
    }

    #[test]
    fn bench_data_is_padded_json() {
        let mut out = Vec::new();
        bench_data(&mut out, 123_456_789_012, 17, 64);
        assert_eq!(out.len(), 64);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["ts"], 123_456_789_012u64);
        assert_eq!(v["seq"], 17);
        bench_data(&mut out, 1, 1, 0);
        assert_eq!(out, br#"{"ts":1,"seq":1,"pad":""}"#);
        bench_data(&mut out, 1, 1, 1000);
        assert_eq!(out.len(), 1000);
        let wrapped = format!(
            r#"{{"push":{{"channel":"c","pub":{{"data":{}}}}}}}"#,
            String::from_utf8(out.clone()).unwrap()
        );
        assert_eq!(classify(wrapped.as_bytes()), Line::Pub { ts: 1, seq: 1 });
    }
}
