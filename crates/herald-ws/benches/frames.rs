//! Micro-benchmarks of the frame layer: decoding client frames, encoding server frames and
//! messages (plain and compressed), and fan-out of one shared message to many connections'
//! queues, plus one `writev` of a batch against one `write` per frame.
//!
//! Run: `cargo bench -p herald-ws --bench frames`.

use std::collections::VecDeque;
use std::hint::black_box;
use std::io::{IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use herald_ws::deflate::{DeflateConfig, Offer, negotiate};
use herald_ws::frame::{apply_mask, encode_header};
use herald_ws::{CloseCode, Decoder, Frame, FrameBuf, Limits, Message, OpCode, Outbox};

/// A masked client frame, as a browser sends it.
fn client_frame(payload: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 10];
    let n = encode_header(&mut header, true, false, OpCode::Text, payload.len());
    let mut out = header[..n].to_vec();
    out[1] |= 0x80;
    let key = [0x37, 0xfa, 0x21, 0x3d];
    out.extend_from_slice(&key);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], key, 0);
    out
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for size in [64usize, 1024, 64 * 1024] {
        let payload = vec![b'a'; size];
        let frames: Vec<u8> = (0..(256 * 1024 / (size + 14)).max(1))
            .flat_map(|_| client_frame(&payload))
            .collect();
        let count = frames.len()
            / (size
                + if size < 126 {
                    6
                } else if size < 65536 {
                    8
                } else {
                    14
                });
        group.throughput(Throughput::Bytes(frames.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("text_frames", size),
            &frames,
            |b, frames| {
                let mut events = VecDeque::with_capacity(count);
                b.iter(|| {
                    let mut decoder = Decoder::new(Limits::default(), None);
                    decoder
                        .feed(black_box(frames), &mut events)
                        .unwrap_or_default();
                    events.clear();
                });
            },
        );
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    let json =
        br#"{"push":{"channel":"news","pub":{"data":{"text":"hello, world","n":12345678}}}}"#;
    group.throughput(Throughput::Elements(1));
    group.bench_function("frame_new_64B", |b| {
        b.iter(|| Frame::new(OpCode::Text, black_box(&json[..64])))
    });
    group.bench_function("frame_buf_in_place_64B", |b| {
        b.iter(|| {
            let mut buf = FrameBuf::with_capacity(64);
            buf.write_all(black_box(&json[..64])).unwrap_or_default();
            buf.finish(OpCode::Text)
        })
    });
    let text = "the quick brown fox jumps over the lazy dog ".repeat(24);
    let params = negotiate(&[Offer::default()], &DeflateConfig::default()).map(|(p, _)| p);
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("message_deflated_1KiB", |b| {
        b.iter(|| {
            let message = Message::text(black_box(&text));
            // The first connection with this window compresses; the rest reuse it.
            message.frame_for(params.as_ref()).len()
        })
    });
    group.finish();
}

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    for n in [1_000usize, 10_000] {
        let outboxes: Vec<Arc<Outbox>> = (0..n)
            .map(|_| Arc::new(Outbox::new(1 << 20, CloseCode(3008), "slow")))
            .collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(
            BenchmarkId::new("push_shared_message", n),
            &outboxes,
            |b, outboxes| {
                let message = Arc::new(Message::text(
                    r#"{"push":{"channel":"news","pub":{"data":{"x":1}}}}"#,
                ));
                let mut drained = VecDeque::new();
                b.iter(|| {
                    for outbox in outboxes {
                        let _ = outbox.push(message.clone());
                    }
                    // What each connection's writer does before its writev.
                    for outbox in outboxes {
                        outbox.drain_into(&mut drained);
                        drained.clear();
                    }
                });
            },
        );
    }
    group.finish();
}

/// One shared 64-byte frame written 64 times: one `writev` against 64 `write`s.
fn writev(c: &mut Criterion) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let reader = std::thread::spawn(move || {
        if let Ok((mut socket, _)) = listener.accept() {
            let mut buf = vec![0u8; 1 << 16];
            while matches!(socket.read(&mut buf), Ok(n) if n > 0) {}
        }
    });
    let mut socket = TcpStream::connect(addr).expect("connect loopback");
    socket.set_nodelay(true).unwrap_or_default();
    let frame = Frame::new(OpCode::Text, &[b'x'; 62]);
    let mut group = c.benchmark_group("write_64_frames");
    group.throughput(Throughput::Elements(64));
    group.bench_function("writev", |b| {
        let slices: Vec<IoSlice<'_>> = (0..64).map(|_| IoSlice::new(frame.as_bytes())).collect();
        b.iter(|| {
            let total = frame.len() * 64;
            let mut written = socket.write_vectored(&slices).unwrap_or(total);
            // Loopback takes it all at once in practice; finish the rest plainly if not.
            while written < total {
                let n = socket
                    .write(&frame.as_bytes()[written % frame.len()..])
                    .unwrap_or(total);
                written += n.max(1);
            }
        })
    });
    group.bench_function("write_each", |b| {
        b.iter(|| {
            for _ in 0..64 {
                socket.write_all(frame.as_bytes()).unwrap_or_default();
            }
        })
    });
    group.finish();
    drop(socket);
    let _ = reader.join();
}

criterion_group!(benches, decode, encode, fanout, writev);
criterion_main!(benches);
