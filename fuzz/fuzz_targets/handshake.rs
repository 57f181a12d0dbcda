//! Parses arbitrary bytes as an HTTP upgrade request and runs the server handshake on it,
//! and parses them as a `Sec-WebSocket-Extensions` header: no panic, and an accepted handshake
//! always yields a well-formed 101 response.
#![no_main]

use herald_ws::deflate::parse_offers;
use herald_ws::handshake::{HandshakeConfig, accept, parse_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_offers(std::iter::once(data));
    let config = HandshakeConfig {
        protocols: vec!["centrifuge-json".into(), "centrifuge-protobuf".into()],
        ..HandshakeConfig::default()
    };
    if let Some(request) = parse_request(data) {
        if let Ok((response, _)) = accept(&request, &config) {
            assert_eq!(response.status(), 101);
            assert!(response.headers().contains_key("sec-websocket-accept"));
        }
    }
});
