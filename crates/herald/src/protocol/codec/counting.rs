//! Test only: [`CountingCodec`], the JSON codec with a counter of publication encodes, as a
//! second encoding in the tests that prove fan-out encodes each publication once per
//! encoding in use, never per subscriber.

use std::cell::Cell;
use std::io::{self, Write};

use super::{Codec, JsonCodec, JsonCommands};
use crate::protocol::{Payload, Publication, Push, Reply};

thread_local! {
    /// Publication pushes encoded by [`CountingCodec`] on this thread (fan-out encodes on the
    /// publishing thread, so a test sees only its own).
    static ENCODED: Cell<usize> = const { Cell::new(0) };
}

/// Publication pushes [`CountingCodec`] encoded on this thread so far.
pub(crate) fn encoded() -> usize {
    ENCODED.with(Cell::get)
}

/// JSON, with its pushes prefixed by `counting:` so a test can tell its messages
/// from JSON ones, and a count of the publication encodes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CountingCodec;

impl Codec for CountingCodec {
    type Commands<'a> = JsonCommands<'a>;

    const BINARY: bool = false;

    fn decode_commands<'a>(&self, message: &'a [u8]) -> JsonCommands<'a> {
        JsonCodec.decode_commands(message)
    }

    fn append_reply<W: Write + ?Sized>(
        &self,
        reply: &Reply,
        first: bool,
        w: &mut W,
    ) -> io::Result<()> {
        JsonCodec.append_reply(reply, first, w)
    }

    fn encode_push<W: Write + ?Sized>(&self, push: &Push, w: &mut W) -> io::Result<()> {
        w.write_all(b"counting:")?;
        JsonCodec.encode_push(push, w)
    }

    fn encode_publication_push<W: Write + ?Sized>(
        &self,
        channel: &str,
        publication: &Publication,
        w: &mut W,
    ) -> io::Result<()> {
        ENCODED.with(|n| n.set(n.get() + 1));
        w.write_all(b"counting:")?;
        JsonCodec.encode_publication_push(channel, publication, w)
    }

    fn delta_data(&self, data: &[u8]) -> Option<Payload> {
        JsonCodec.delta_data(data)
    }
}
