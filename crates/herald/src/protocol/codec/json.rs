//! [`JsonCodec`]: the JSON format of the client protocol (protocol.md §1): one JSON object
//! per command or reply, several in one transport message separated by a single `\n`.
//!
//! The decoding and encoding themselves live in `protocol::command` and `protocol::encode`
//! (the serde types are the JSON schema); this is their face on the [`Codec`] seam.

use std::io::{self, Write};

use super::Codec;
use crate::protocol::{
    Payload, Publication, Push, Reply, command, encode_publication_push, encode_push, encode_reply,
};

/// The JSON codec.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonCodec;

/// The commands of one JSON message (see [`command::decode_commands`]).
pub type JsonCommands<'a> = command::Commands<'a>;

impl Codec for JsonCodec {
    type Commands<'a> = JsonCommands<'a>;

    const BINARY: bool = false;

    #[inline]
    fn decode_commands<'a>(&self, message: &'a [u8]) -> JsonCommands<'a> {
        command::decode_commands(message)
    }

    fn append_reply<W: Write + ?Sized>(
        &self,
        reply: &Reply,
        first: bool,
        w: &mut W,
    ) -> io::Result<()> {
        // Payloads hold no raw `\n` (see `Payload`), so the separator is unambiguous.
        if !first {
            w.write_all(b"\n")?;
        }
        encode_reply(reply, w)
    }

    fn encode_push<W: Write + ?Sized>(&self, push: &Push, w: &mut W) -> io::Result<()> {
        encode_push(push, w)
    }

    #[inline]
    fn encode_publication_push<W: Write + ?Sized>(
        &self,
        channel: &str,
        publication: &Publication,
        w: &mut W,
    ) -> io::Result<()> {
        encode_publication_push(channel, publication, w)
    }

    /// JSON carries delta-subscription data as a JSON string (what Centrifugo's JSON protocol
    /// does, and the SDKs parse back); only UTF-8 data can travel so.
    fn delta_data(&self, data: &[u8]) -> Option<Payload> {
        let text = std::str::from_utf8(data).ok()?;
        serde_json::value::to_raw_value(text)
            .ok()
            .map(Payload::from)
    }
}
