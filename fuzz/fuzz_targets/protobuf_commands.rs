//! Feeds arbitrary bytes to the Protobuf command decoder (the bytes of a binary WebSocket
//! message from a `centrifuge-protobuf` client) and checks that it never panics, and that
//! every command it accepts survives a round trip through the client-side encoder: decoding
//! what was encoded gives the same command, so nothing a client sends is misread.
#![no_main]

use herald::protocol::{Codec, ProtobufCodec};
use libfuzzer_sys::fuzz_target;

/// The command's fields as sorted lines of its pretty `Debug`: map fields (connect `headers`)
/// are hash maps whose iteration order differs between two equal maps, so the lines are
/// compared as a multiset (the first run found exactly that false difference).
fn fields(command: &herald::protocol::Command) -> Vec<String> {
    let mut lines: Vec<String> = format!("{command:#?}")
        .lines()
        .map(|l| l.trim().trim_end_matches(',').to_owned())
        .collect();
    lines.sort();
    lines
}

fuzz_target!(|message: &[u8]| {
    for command in ProtobufCodec.decode_commands(message) {
        let Ok(command) = command else { break };
        let mut encoded = Vec::new();
        ProtobufCodec
            .encode_command(&command, &mut encoded)
            .expect("writing to a Vec cannot fail");
        let again: Vec<_> = ProtobufCodec.decode_commands(&encoded).collect();
        assert_eq!(
            again.len(),
            1,
            "one command encoded, {} decoded",
            again.len()
        );
        let again = again.into_iter().next().and_then(Result::ok);
        assert_eq!(
            again.as_ref().map(fields),
            Some(fields(&command)),
            "the command changed in a round trip"
        );
    }
});
