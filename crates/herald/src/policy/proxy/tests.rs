//! Unit tests of the proxy policy's parts: the payload encoding of requests, the answers'
//! payloads, and the table of connections.

use std::sync::Arc;

use super::connections::{ConnectionInfo, Connections};
use super::wire::{self, Data};
use crate::protocol::Payload;
use crate::ws::Outbox;

fn outbox() -> Arc<Outbox> {
    Arc::new(Outbox::sharing(Arc::new(crate::transport::outbox_budget(
        1024,
    ))))
}

#[test]
fn payloads_go_as_json_unless_binary_or_not_json() {
    let json = Payload::from_json(r#"{"a":1}"#).unwrap();
    let text = |d: Data| serde_json::to_string(&d).unwrap();
    assert_eq!(text(Data::of(Some(&json), false)), r#"{"data":{"a":1}}"#);
    assert_eq!(
        text(Data::of(Some(&json), true)),
        r#"{"b64data":"eyJhIjoxfQ=="}"#
    );
    let bytes = Payload::from_stored(vec![0xff, 0x00]);
    assert_eq!(text(Data::of(Some(&bytes), false)), r#"{"b64data":"/wA="}"#);
    assert_eq!(text(Data::of(None, false)), "{}");
}

#[test]
fn answers_b64_wins_and_null_is_nothing() {
    let raw = |s: &str| Some(serde_json::value::RawValue::from_string(s.into()).unwrap());
    assert_eq!(
        wire::payload(raw("1"), "Mg==").unwrap().unwrap().as_bytes(),
        b"2"
    );
    assert_eq!(wire::payload(raw("null"), "").unwrap(), None);
    assert!(wire::payload(None, "!!").is_err());
}

#[test]
fn connections_are_found_by_their_outbox_and_pruned_when_gone() {
    let table = Connections::default();
    let kept = outbox();
    table.insert(
        &kept,
        ConnectionInfo {
            transport: "websocket",
            ..ConnectionInfo::default()
        },
    );
    assert_eq!(table.get(&kept).unwrap().transport, "websocket");
    table.update(&kept, |info| info.transport = "sse");
    assert_eq!(table.get(&kept).unwrap().transport, "sse");
    for _ in 0..200 {
        let gone = outbox();
        table.insert(&gone, ConnectionInfo::default());
        assert!(table.get(&gone).is_some());
    }
    // Ended connections are pruned as the table grows: it stays within twice the live ones
    // (and a floor of 64).
    assert!(table.len() <= 65, "{}", table.len());
    assert!(table.get(&kept).is_some());
}

#[test]
fn a_backend_disconnect_fits_a_close_frame() {
    use super::http::backend_disconnect;
    let d = backend_disconnect("p", 4501, "banned");
    assert_eq!((d.code, d.reason.as_ref()), (4501, "banned"));
    assert_eq!(backend_disconnect("p", 1000, "x").code, 3004);
    assert_eq!(backend_disconnect("p", 70_000, "x").code, 3004);
    let long = "é".repeat(100);
    let d = backend_disconnect("p", 4000, &long);
    assert!(d.reason.len() <= 123 && long.starts_with(d.reason.as_ref()));
}
