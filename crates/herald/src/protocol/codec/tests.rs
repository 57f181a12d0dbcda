//! Tests of the codec seam with the JSON codec: payload bytes pass through verbatim, and
//! invalid input fails as the JSON protocol always has.

use super::*;
use crate::protocol::{Method, Publication, PublishResult};

/// JSON whose exact bytes a parser would change: escapes, an escaped `/`, numbers beyond f64,
/// `-0.0` and `1E+300`, deep nesting, insignificant spaces.
const ODD: &str = r#"{ "s" : "caf\u00e9 \ud83d\ude00 \"q\" \\ \/ \t", "big":123456789012345678901234567890, "f":[-0.0,1E+300,0.10], "deep":{"a":[{"b":[[],{},null,true]}]} }"#;

#[test]
fn a_payload_goes_from_a_command_to_a_push_byte_for_byte() {
    let frame = format!(r#"{{"id":1,"publish":{{"channel":"ch","data":{ODD}}}}}"#);
    let mut commands = Encoding::Json.decode_commands(frame.as_bytes());
    let command = commands.next().unwrap().unwrap();
    assert!(commands.next().is_none());
    assert_eq!(command.method(), Method::Publish);
    let data = command.publish.unwrap().data.unwrap();
    assert_eq!(data.as_bytes(), ODD.as_bytes());

    let publication = Publication {
        data: Some(data),
        offset: 3,
        ..Publication::default()
    };
    let mut push = Vec::new();
    Encoding::Json
        .encode_publication_push("ch", &publication, &mut push)
        .unwrap();
    let expected = format!(r#"{{"push":{{"channel":"ch","pub":{{"data":{ODD},"offset":3}}}}}}"#);
    assert_eq!(String::from_utf8(push).unwrap(), expected);
}

#[test]
fn a_payload_with_raw_newlines_loses_them_once_on_entry() {
    // Not in a client frame, where `\n` ends the command, but in an API body or a token.
    let json = "{\"id\":1,\"rpc\":{\"data\":{\"a\":\r\n[1,\t2]}}}";
    let command = crate::protocol::decode_command(json.as_bytes()).unwrap();
    assert_eq!(
        command.rpc.unwrap().data.unwrap().as_bytes(),
        b"{\"a\":\r[1,\t2]}"
    );
}

#[test]
fn invalid_json_data_is_the_decode_error_it_always_was() {
    for bad in [
        r#"{"id":1,"publish":{"channel":"ch","data":{x}}}"#,
        r#"{"id":1,"publish":{"channel":"ch","data":}}"#,
        r#"{"id":1,"publish":{"channel":"ch","data":[1,]}}"#,
        r#"{"id":1,"publish":{"channel":"ch","data":"\x"}}"#,
    ] {
        let mut commands = Encoding::Json.decode_commands(bad.as_bytes());
        // The error the client is closed for as a bad request (3501), as before.
        assert!(
            matches!(
                commands.next(),
                Some(Err(DecodeError::Json { index: 0, .. }))
            ),
            "{bad}"
        );
        assert!(commands.next().is_none(), "decoding stops at the error");
    }
}

#[test]
fn replies_of_one_message_are_newline_separated() {
    let mut out = Vec::new();
    Encoding::Json
        .append_reply(&Reply::result(1, PublishResult {}), true, &mut out)
        .unwrap();
    Encoding::Json
        .append_reply(&Reply::result(2, PublishResult {}), false, &mut out)
        .unwrap();
    assert_eq!(out, b"{\"id\":1,\"publish\":{}}\n{\"id\":2,\"publish\":{}}");
    assert!(!Encoding::Json.is_binary());
}

#[test]
fn json_carries_delta_data_as_a_string() {
    let data = Encoding::Json.delta_data(br#"{"a":"b"}"#).unwrap();
    assert_eq!(data.as_bytes(), br#""{\"a\":\"b\"}""#);
    assert!(Encoding::Json.delta_data(&[0xff]).is_none(), "not UTF-8");
}

#[test]
fn a_binary_payload_is_refused_by_json_output_not_written_broken() {
    let publication = Publication {
        data: Some(Payload::from_stored(vec![0xff, 0x00])),
        ..Publication::default()
    };
    let mut push = Vec::new();
    assert!(
        Encoding::Json
            .encode_publication_push("ch", &publication, &mut push)
            .is_err()
    );
}
