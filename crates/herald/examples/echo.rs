//! An echo server on Herald's WebSocket layer, used to run the Autobahn conformance suite.
//!
//! ```text
//! cargo run --release --example echo -- 127.0.0.1:9001
//! ../shared/tools/autobahn ws://127.0.0.1:9001 --full
//! ```
//!
//! Every text and binary message is sent back unchanged. Limits are large enough for the
//! suite (messages up to 16 MiB, no fragment-count limit), and permessage-deflate runs with
//! server context takeover so both compression paths of the layer are exercised.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming as Body;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use herald::ws::{
    CloseCode, Config, DeflateConfig, HandshakeConfig, Incoming, Limits, Message, OpCode, Outbox,
    WebSocket, handshake,
};

const MAX_MESSAGE: usize = 16 << 20;

static HANDSHAKE: LazyLock<HandshakeConfig> = LazyLock::new(|| HandshakeConfig {
    deflate: DeflateConfig {
        server_no_context_takeover: false,
        min_size: 0,
        ..DeflateConfig::default()
    },
    ..HandshakeConfig::default()
});

static CONFIG: LazyLock<Arc<Config>> = LazyLock::new(|| {
    Arc::new(Config {
        limits: Limits {
            max_message_size: MAX_MESSAGE,
            max_frame_size: MAX_MESSAGE,
            max_fragments: 0,
        },
        read_timeout: Duration::from_secs(60),
        ..Config::default()
    })
});

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let listener = match TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("echo: cannot listen on {addr}: {e} (pass another ADDRESS:PORT)");
            std::process::exit(2);
        }
    };
    eprintln!("echo: listening on ws://{addr}");
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("echo: accept failed: {e}");
                continue;
            }
        };
        tokio::spawn(serve_http(stream, peer));
    }
}

async fn serve_http(stream: tokio::net::TcpStream, peer: SocketAddr) {
    let service = service_fn(move |req| upgrade(req, peer));
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    if let Err(e) = conn.await {
        eprintln!("echo: {peer}: http: {e}");
    }
}

async fn upgrade(
    mut req: Request<Body>,
    peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (response, negotiated) = match handshake::accept(&req, &HANDSHAKE) {
        Ok(accepted) => accepted,
        Err(e) => return Ok(e.to_response().map(|body| Full::new(Bytes::from(body)))),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => return eprintln!("echo: {peer}: upgrade failed: {e}"),
        };
        let outbox = Arc::new(Outbox::new(4 * MAX_MESSAGE, CloseCode(1008), "slow"));
        match WebSocket::from_upgraded(upgraded, &negotiated, CONFIG.clone(), outbox) {
            Ok(ws) => echo(ws).await,
            Err(e) => eprintln!("echo: {peer}: {e}"),
        }
    });
    Ok(response.map(|()| Full::new(Bytes::new())))
}

async fn echo(mut ws: WebSocket) {
    loop {
        let reply = match ws.recv().await {
            Ok(Some(Incoming::Text(text))) => Message::new(OpCode::Text, &text),
            Ok(Some(Incoming::Binary(data))) => Message::new(OpCode::Binary, &data),
            Ok(Some(Incoming::Pong(_) | Incoming::Wake)) => continue,
            Ok(None) => return,
            Err(_) => return,
        };
        if ws.send(Arc::new(reply)).is_err() {
            // The connection is closing; recv() finishes the close handshake.
            continue;
        }
    }
}
