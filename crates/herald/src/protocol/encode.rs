//! JSON encoding of replies and pushes into any [`io::Write`] — typically a WebSocket frame
//! buffer (`herald_ws::FrameBuf`) or a `Vec<u8>`. The writers are called with many small writes,
//! so hand them an in-memory buffer, not a socket.
//!
//! Several messages in one frame are separated by a single `\n` ([`ReplyBatch`]); raw payloads
//! never contain a raw `\n` after encoding, so the separator is unambiguous.

use std::io::{self, Write};

use serde::Serialize;

use super::{Publication, Push, Reply, is_default};

/// The empty reply `{}`: a server ping (and, from the client, a pong).
pub const PING_REPLY: &[u8] = b"{}";

/// Writes `value` as compact JSON.
fn write_json<W: Write + ?Sized, T: Serialize + ?Sized>(value: &T, w: &mut W) -> io::Result<()> {
    serde_json::to_writer(w, value).map_err(io::Error::from)
}

/// Writes one reply as compact JSON (no trailing newline).
pub fn encode_reply<W: Write + ?Sized>(reply: &Reply, w: &mut W) -> io::Result<()> {
    write_json(reply, w)
}

/// Writes `{"push":…}`: a push wrapped in a reply, for bidirectional transports.
pub fn encode_push<W: Write + ?Sized>(push: &Push, w: &mut W) -> io::Result<()> {
    write_json(&PushReply { push }, w)
}

/// Writes a bare push object, for unidirectional transports.
pub fn encode_bare_push<W: Write + ?Sized>(push: &Push, w: &mut W) -> io::Result<()> {
    write_json(push, w)
}

/// Writes `{"push":{"channel":…,"pub":{…}}}` — the fan-out hot path, encoded once per
/// publication for all subscribers of `channel`. `channel` is omitted when empty.
pub fn encode_publication_push<W: Write + ?Sized>(
    channel: &str,
    publication: &Publication,
    w: &mut W,
) -> io::Result<()> {
    write_json(
        &PushReply {
            push: PublicationPush {
                channel,
                publication,
            },
        },
        w,
    )
}

/// Writes `{"channel":…,"pub":{…}}`: the publication push for unidirectional transports.
pub fn encode_publication_push_bare<W: Write + ?Sized>(
    channel: &str,
    publication: &Publication,
    w: &mut W,
) -> io::Result<()> {
    write_json(
        &PublicationPush {
            channel,
            publication,
        },
        w,
    )
}

/// The length in bytes of `publication` encoded as JSON, as it appears in a reply's
/// `publications` list: what a history page or a recovery costs the client's queue.
pub fn publication_len(publication: &Publication) -> usize {
    /// A writer that only counts.
    struct Count(usize);
    impl Write for Count {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing into a counter cannot fail, and the types serialize infallibly.
    let _ = write_json(publication, &mut count);
    count.0
}

/// Writes `replies` newline-separated (no trailing newline); returns how many were written.
pub fn encode_replies<'a, W: Write + ?Sized>(
    replies: impl IntoIterator<Item = &'a Reply>,
    w: &mut W,
) -> io::Result<usize> {
    let mut batch = ReplyBatch::new(w);
    for reply in replies {
        batch.reply(reply)?;
    }
    Ok(batch.len())
}

/// Writes several messages into one frame, separated by a single `\n` (protocol.md §1).
///
/// ```
/// # use herald::protocol::{ReplyBatch, Reply, PublishResult, PING_REPLY};
/// let mut frame = Vec::new();
/// let mut batch = ReplyBatch::new(&mut frame);
/// batch.reply(&Reply::result(1, PublishResult {}))?;
/// batch.encoded(PING_REPLY)?;
/// assert_eq!(frame, b"{\"id\":1,\"publish\":{}}\n{}");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct ReplyBatch<'w, W: Write + ?Sized> {
    w: &'w mut W,
    count: usize,
}

impl<'w, W: Write + ?Sized> ReplyBatch<'w, W> {
    /// Starts an empty batch writing into `w`.
    pub fn new(w: &'w mut W) -> ReplyBatch<'w, W> {
        ReplyBatch { w, count: 0 }
    }

    fn separate(&mut self) -> io::Result<()> {
        if self.count > 0 {
            self.w.write_all(b"\n")?;
        }
        self.count += 1;
        Ok(())
    }

    /// Appends a reply.
    pub fn reply(&mut self, reply: &Reply) -> io::Result<()> {
        self.separate()?;
        encode_reply(reply, self.w)
    }

    /// Appends a push wrapped in a reply (`{"push":…}`).
    pub fn push(&mut self, push: &Push) -> io::Result<()> {
        self.separate()?;
        encode_push(push, self.w)
    }

    /// Appends an already encoded message (one JSON object without raw `\n`, e.g. a
    /// publication push encoded once for all subscribers, or [`PING_REPLY`]).
    pub fn encoded(&mut self, message: &[u8]) -> io::Result<()> {
        self.separate()?;
        self.w.write_all(message)
    }

    /// Number of messages written so far.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// `{"push": P}` borrowing its content.
#[derive(Serialize)]
struct PushReply<P> {
    push: P,
}

/// `{"channel":…,"pub":…}` borrowing its content.
#[derive(Serialize)]
struct PublicationPush<'a> {
    #[serde(skip_serializing_if = "is_default")]
    channel: &'a str,
    #[serde(rename = "pub")]
    publication: &'a Publication,
}
