//! [`UniJsonCodec`]: the JSON of Centrifugo's unidirectional protocol, where the client only
//! receives and every message is a bare push (`{"channel":…,"pub":{…}}`, `{"connect":{…}}`)
//! instead of a reply wrapping it (`{"push":{…}}`).
//!
//! Why an encoding of its own: a unidirectional WebSocket sends each push as a frame, and
//! fan-out frames a publication once per encoding for all the recipients that speak it
//! (`crate::prepared`), so the bare form must be a message of its own, not a rewrite of the
//! JSON one per connection. (The unidirectional HTTP streams need no such thing: they write
//! payloads, not frames, and send a slice of the JSON message without its wrapper.)

use std::io::{self, Write};

use super::{Codec, JsonCodec, JsonCommands};
use crate::protocol::{
    Payload, Publication, Push, Reply, encode_bare_push, encode_publication_push_bare, encode_reply,
};

/// The unidirectional JSON codec.
#[derive(Clone, Copy, Debug, Default)]
pub struct UniJsonCodec;

impl Codec for UniJsonCodec {
    type Commands<'a> = JsonCommands<'a>;

    const BINARY: bool = false;

    /// A unidirectional client sends no commands (its transport hands the client its connect
    /// request instead); should one be decoded, it is read as JSON.
    fn decode_commands<'a>(&self, message: &'a [u8]) -> JsonCommands<'a> {
        JsonCodec.decode_commands(message)
    }

    /// A push goes out bare. Anything else (a unidirectional client is sent no replies) is
    /// written as JSON would write it, so that nothing is lost if one ever is.
    fn append_reply<W: Write + ?Sized>(
        &self,
        reply: &Reply,
        first: bool,
        w: &mut W,
    ) -> io::Result<()> {
        if !first {
            w.write_all(b"\n")?;
        }
        match &reply.push {
            Some(push) if reply.id == 0 => encode_bare_push(push, w),
            _ => encode_reply(reply, w),
        }
    }

    fn encode_push<W: Write + ?Sized>(&self, push: &Push, w: &mut W) -> io::Result<()> {
        encode_bare_push(push, w)
    }

    #[inline]
    fn encode_publication_push<W: Write + ?Sized>(
        &self,
        channel: &str,
        publication: &Publication,
        w: &mut W,
    ) -> io::Result<()> {
        encode_publication_push_bare(channel, publication, w)
    }

    fn delta_data(&self, data: &[u8]) -> Option<Payload> {
        JsonCodec.delta_data(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Disconnect, Encoding};

    /// Pushes, alone or among the replies of one message, are written without the `{"push":…}`
    /// wrapper the bidirectional JSON gives them.
    #[test]
    fn pushes_are_bare() {
        let mut out = Vec::new();
        let disconnect = Push::disconnect(Disconnect::custom(4000, "bye".to_owned()));
        Encoding::UniJson
            .encode_push(&disconnect, &mut out)
            .expect("encode");
        assert_eq!(
            String::from_utf8_lossy(&out),
            r#"{"disconnect":{"code":4000,"reason":"bye","reconnect":true}}"#
        );
        out.clear();
        Encoding::UniJson
            .append_reply(&Reply::push(disconnect.clone()), true, &mut out)
            .expect("encode");
        Encoding::UniJson
            .append_reply(&Reply::push(disconnect), false, &mut out)
            .expect("encode");
        let text = String::from_utf8_lossy(&out);
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            text.lines().all(|l| l.starts_with(r#"{"disconnect""#)),
            "{text}"
        );
        assert!(!Encoding::UniJson.is_binary());
    }
}
