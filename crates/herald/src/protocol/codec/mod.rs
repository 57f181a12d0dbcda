//! The encoding seam: how the protocol's messages become bytes and back.
//!
//! A [`Codec`] decodes the commands of one inbound transport message and encodes replies and
//! pushes into an outbound one. [`JsonCodec`] is the JSON format of the client protocol
//! (commands and replies as JSON objects, several per message separated by `\n`);
//! [`ProtobufCodec`] its Protobuf format (varint-length-prefixed messages, binary frames).
//! Each connection speaks one [`Encoding`], chosen when it connects (see
//! `docs/architecture.md`).
//!
//! Why an enum in front of the trait rather than `dyn Codec`: the codecs are few and known
//! at compile time, so a connection holds a one-byte [`Encoding`], fan-out indexes its
//! once-per-encoding messages by it (see `crate::prepared`), and every call is a `match` to
//! a statically dispatched, inlinable implementation — no vtable on the hot path.

mod json;
mod protobuf;
mod uni_json;

#[cfg(test)]
pub(crate) mod counting;
#[cfg(test)]
mod tests;

use std::io::{self, Write};

pub use json::{JsonCodec, JsonCommands};
pub use protobuf::{EmulationRequest, ProtobufCodec, ProtobufCommands};
pub use uni_json::UniJsonCodec;

use super::{Command, DecodeError, Payload, Publication, Push, Reply};

/// One wire format of the client protocol. The methods take `&self` so that a codec may carry
/// options; the ones here carry none.
pub trait Codec {
    /// The iterator over the commands of one inbound message.
    type Commands<'a>: Iterator<Item = Result<Command, DecodeError>>;

    /// Whether the format is binary (WebSocket binary frames) rather than text.
    const BINARY: bool;

    /// Decodes the commands of one inbound message, in order; the first error ends them (the
    /// connection is then closed as a bad request, after the commands before it).
    fn decode_commands<'a>(&self, message: &'a [u8]) -> Self::Commands<'a>;

    /// Appends `reply` to an outbound message, `first` in it or not (the format decides how
    /// the messages of one transport message are delimited).
    fn append_reply<W: Write + ?Sized>(
        &self,
        reply: &Reply,
        first: bool,
        w: &mut W,
    ) -> io::Result<()>;

    /// Writes `push` as a whole outbound message, wrapped in a reply as bidirectional
    /// transports carry it.
    fn encode_push<W: Write + ?Sized>(&self, push: &Push, w: &mut W) -> io::Result<()>;

    /// Writes the push of `publication` in `channel` as a whole outbound message: the fan-out
    /// hot path, called once per publication per encoding in use in the channel.
    fn encode_publication_push<W: Write + ?Sized>(
        &self,
        channel: &str,
        publication: &Publication,
        w: &mut W,
    ) -> io::Result<()>;

    /// How a delta subscription receives publication data (the full data, or a Fossil delta
    /// of it): as a JSON string in JSON, as the bytes themselves in a binary format. `None`
    /// if it cannot be represented.
    fn delta_data(&self, data: &[u8]) -> Option<Payload>;
}

/// The encodings a connection can speak, one byte each: what fan-out keys its encoded
/// messages by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Encoding {
    /// The JSON format ([`JsonCodec`]).
    #[default]
    Json = 0,
    /// The Protobuf format ([`ProtobufCodec`]).
    Protobuf = 1,
    /// JSON for unidirectional clients: bare pushes ([`UniJsonCodec`]).
    UniJson = 2,
    /// Test only: JSON that counts its publication encodes, to prove fan-out encodes once per
    /// encoding ([`counting::CountingCodec`]).
    #[cfg(test)]
    Counting = 3,
}

/// Runs `$body` with `$codec` bound to the codec of `$encoding`: the one place that maps an
/// [`Encoding`] to its implementation (a new codec adds its arm here).
macro_rules! with_codec {
    ($encoding:expr, $codec:ident => $body:expr) => {
        match $encoding {
            Encoding::Json => {
                let $codec = &JsonCodec;
                $body
            }
            Encoding::Protobuf => {
                let $codec = &ProtobufCodec;
                $body
            }
            Encoding::UniJson => {
                let $codec = &UniJsonCodec;
                $body
            }
            #[cfg(test)]
            Encoding::Counting => {
                let $codec = &counting::CountingCodec;
                $body
            }
        }
    };
}

impl Encoding {
    /// How many encodings there are: the size of a once-per-encoding cache.
    #[cfg(not(test))]
    pub const COUNT: usize = 3;
    /// How many encodings there are: the size of a once-per-encoding cache.
    #[cfg(test)]
    pub const COUNT: usize = 4;

    /// The encoding's index in a once-per-encoding cache (`0..COUNT`).
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Whether the encoding's messages are binary.
    pub fn is_binary(self) -> bool {
        with_codec!(self, _codec => codec_binary(_codec))
    }

    /// See [`Codec::decode_commands`].
    pub fn decode_commands(self, message: &[u8]) -> Commands<'_> {
        match self {
            Encoding::Json => Commands::Json(JsonCodec.decode_commands(message)),
            Encoding::Protobuf => Commands::Protobuf(ProtobufCodec.decode_commands(message)),
            Encoding::UniJson => Commands::Json(UniJsonCodec.decode_commands(message)),
            #[cfg(test)]
            Encoding::Counting => Commands::Json(JsonCodec.decode_commands(message)),
        }
    }

    /// See [`Codec::append_reply`].
    pub fn append_reply<W: Write + ?Sized>(
        self,
        reply: &Reply,
        first: bool,
        w: &mut W,
    ) -> io::Result<()> {
        with_codec!(self, codec => codec.append_reply(reply, first, w))
    }

    /// See [`Codec::encode_push`].
    pub fn encode_push<W: Write + ?Sized>(self, push: &Push, w: &mut W) -> io::Result<()> {
        with_codec!(self, codec => codec.encode_push(push, w))
    }

    /// See [`Codec::encode_publication_push`].
    pub fn encode_publication_push<W: Write + ?Sized>(
        self,
        channel: &str,
        publication: &Publication,
        w: &mut W,
    ) -> io::Result<()> {
        with_codec!(self, codec => codec.encode_publication_push(channel, publication, w))
    }

    /// See [`Codec::delta_data`].
    pub fn delta_data(self, data: &[u8]) -> Option<Payload> {
        with_codec!(self, codec => codec.delta_data(data))
    }

    /// Every encoding, in index order.
    pub fn all() -> impl Iterator<Item = Encoding> {
        [
            Encoding::Json,
            Encoding::Protobuf,
            Encoding::UniJson,
            #[cfg(test)]
            Encoding::Counting,
        ]
        .into_iter()
    }
}

/// [`Codec::BINARY`] of a codec given by reference.
fn codec_binary<C: Codec>(_codec: &C) -> bool {
    C::BINARY
}

/// The commands of one inbound message, whatever its encoding ([`Encoding::decode_commands`]).
#[derive(Debug)]
pub enum Commands<'a> {
    /// JSON commands.
    Json(JsonCommands<'a>),
    /// Protobuf commands.
    Protobuf(ProtobufCommands<'a>),
}

impl Iterator for Commands<'_> {
    type Item = Result<Command, DecodeError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Commands::Json(commands) => commands.next(),
            Commands::Protobuf(commands) => commands.next(),
        }
    }
}
