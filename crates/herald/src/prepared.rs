//! [`Prepared`]: one push (a publication, a join, a leave…) on its way to the subscribers of a
//! channel, encoded at most once per [`Encoding`] and only for the encodings some recipient
//! speaks.
//!
//! Why: fan-out must not encode per recipient, yet recipients of one channel may speak
//! different encodings (JSON and, later, Protobuf). Each message is made on first use by a
//! subscriber of that encoding and then shared by reference with all the others — the same
//! design as centrifuge's prepared data, per (protocol, transport) there and per encoding
//! here (the transport frames the shared bytes).

use std::cell::OnceCell;
use std::sync::Arc;

use crate::protocol::{Encoding, Publication, Push};
use crate::ws::{FrameBuf, Message, OpCode};

/// What is to be encoded.
enum What<'a> {
    /// A publication push.
    Publication {
        channel: &'a str,
        publication: &'a Publication,
    },
    /// Any other push.
    Push(&'a Push),
    /// A message already encoded, the same for every encoding (tests that do not care about
    /// the content).
    #[cfg(test)]
    Encoded(Arc<Message>),
}

/// A push and its messages, one per encoding, each encoded on first use. Lives for one
/// fan-out, on the publishing thread (hence a `OnceCell`, not a lock).
pub struct Prepared<'a> {
    what: What<'a>,
    messages: [OnceCell<Option<Arc<Message>>>; Encoding::COUNT],
}

impl<'a> Prepared<'a> {
    /// The push of `publication` in `channel`.
    pub fn publication(channel: &'a str, publication: &'a Publication) -> Prepared<'a> {
        Prepared::of(What::Publication {
            channel,
            publication,
        })
    }

    /// `push` (for a publication, [`Prepared::publication`] skips the `Push` wrapper).
    pub fn push(push: &'a Push) -> Prepared<'a> {
        Prepared::of(What::Push(push))
    }

    /// `message`, sent as it is whatever the recipient's encoding.
    #[cfg(test)]
    pub fn encoded(message: Arc<Message>) -> Prepared<'a> {
        Prepared::of(What::Encoded(message))
    }

    fn of(what: What<'a>) -> Prepared<'a> {
        Prepared {
            what,
            messages: Default::default(),
        }
    }

    /// The message for recipients speaking `encoding`, encoded now if it is the first one;
    /// `None` if it cannot be encoded (logged once).
    #[inline]
    pub fn message(&self, encoding: Encoding) -> Option<&Arc<Message>> {
        self.messages[encoding.index()]
            .get_or_init(|| self.encode(encoding))
            .as_ref()
    }

    /// Whether the message for `encoding` has been made (tests).
    #[cfg(test)]
    pub fn is_encoded(&self, encoding: Encoding) -> bool {
        self.messages[encoding.index()].get().is_some()
    }

    /// The message for `encoding` (encoded now if it was not), owned: the tests count its
    /// references to see that recipients share it.
    #[cfg(test)]
    pub fn take(self, encoding: Encoding) -> Option<Arc<Message>> {
        self.message(encoding)?;
        let mut messages = self.messages;
        messages[encoding.index()].take().flatten()
    }

    fn encode(&self, encoding: Encoding) -> Option<Arc<Message>> {
        let encoded = match &self.what {
            What::Publication {
                channel,
                publication,
            } => publication_message(encoding, channel, publication),
            What::Push(push) => push_message(encoding, push),
            #[cfg(test)]
            What::Encoded(message) => return Some(message.clone()),
        };
        match encoded {
            Ok(message) => Some(message),
            Err(e) => {
                tracing::error!(?encoding, error = %e, "could not encode a push");
                None
            }
        }
    }
}

/// The frame type of `encoding`'s messages.
pub fn opcode(encoding: Encoding) -> OpCode {
    if encoding.is_binary() {
        OpCode::Binary
    } else {
        OpCode::Text
    }
}

/// Encodes the push of `publication` in `channel` once, as a frame ready for any number of
/// clients speaking `encoding`.
pub fn publication_message(
    encoding: Encoding,
    channel: &str,
    publication: &Publication,
) -> std::io::Result<Arc<Message>> {
    let data = publication.data.as_ref().map_or(0, |d| d.len());
    let mut buf = FrameBuf::with_capacity(64 + channel.len() + data);
    encoding.encode_publication_push(channel, publication, &mut buf)?;
    Ok(Arc::new(Message::from_frame_buf(buf, opcode(encoding))))
}

/// Encodes `push` once, as a frame ready for any number of clients speaking `encoding`.
pub fn push_message(encoding: Encoding, push: &Push) -> std::io::Result<Arc<Message>> {
    let mut buf = FrameBuf::with_capacity(64 + push.channel.len());
    encoding.encode_push(push, &mut buf)?;
    Ok(Arc::new(Message::from_frame_buf(buf, opcode(encoding))))
}
