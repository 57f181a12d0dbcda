//! Feeds arbitrary bytes to the frame decoder, whole and in pieces, with and without
//! permessage-deflate, and checks that it never panics and that how the bytes are split never
//! changes what is decoded.
#![no_main]

use std::collections::VecDeque;

use herald_ws::deflate::{DeflateConfig, Offer, negotiate};
use herald_ws::{Decoder, Limits};
use libfuzzer_sys::fuzz_target;

fn decode(data: &[u8], chunk: usize, deflate: bool) -> (Vec<herald_ws::Event>, Option<herald_ws::ProtocolError>) {
    let params = deflate.then(|| {
        let config = DeflateConfig { client_no_context_takeover: false, ..DeflateConfig::default() };
        negotiate(&[Offer::default()], &config).map(|(p, _)| p)
    }).flatten();
    let limits = Limits { max_message_size: 1 << 16, max_frame_size: 1 << 15, max_fragments: 64 };
    let mut decoder = Decoder::new(limits, params);
    let mut events = VecDeque::new();
    for piece in data.chunks(chunk.max(1)) {
        if let Err(e) = decoder.feed(piece, &mut events) {
            return (events.into(), Some(e));
        }
    }
    (events.into(), None)
}

fuzz_target!(|input: &[u8]| {
    let Some((&control, data)) = input.split_first() else { return };
    let deflate = control & 1 == 1;
    let chunk = usize::from(control >> 1) + 1;
    let whole = decode(data, data.len(), deflate);
    let pieces = decode(data, chunk, deflate);
    assert_eq!(whole, pieces, "splitting the input into {chunk}-byte reads changed the result");
});
