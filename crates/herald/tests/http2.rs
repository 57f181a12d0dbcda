//! HTTP/2 for the streaming transports: with prior knowledge over plain TCP (h2c) and with
//! ALPN `h2` over TLS, an SSE stream and an HTTP-streaming connection are served, carry their
//! pushes, and share one connection with server API calls; HTTP/1.1 clients (WebSocket
//! upgrades) are served on the same port as before.

mod common;

use bytes::Bytes;
use common::tls::TestCert;
use common::*;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

type Sender = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

/// An HTTP/2 connection over `io` (its handshake done, its driver spawned).
async fn h2<I>(io: I) -> Sender
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = tokio::time::timeout(
        STEP,
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io)),
    )
    .await
    .expect("HTTP/2 handshake in time")
    .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    sender
}

async fn send(
    sender: &mut Sender,
    request: http::Request<Full<Bytes>>,
) -> http::Response<Incoming> {
    tokio::time::timeout(STEP, sender.send_request(request))
        .await
        .expect("response in time")
        .expect("response")
}

/// The next complete message of a streaming body: SSE `data:` events or JSON lines, read frame
/// by frame, skipping pings (`{}`).
struct Messages {
    body: Incoming,
    buffer: Vec<u8>,
}

impl Messages {
    async fn next(&mut self) -> Value {
        loop {
            if let Some(at) = self.buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=at).collect();
                let text = String::from_utf8(line).expect("UTF-8");
                let text = text.trim().trim_start_matches("data: ");
                if text.is_empty() || text == "{}" {
                    continue;
                }
                return serde_json::from_str(text).expect("JSON");
            }
            let frame = tokio::time::timeout(STEP, self.body.frame())
                .await
                .expect("a frame in time")
                .expect("the stream goes on")
                .expect("a frame");
            if let Some(data) = frame.data_ref() {
                self.buffer.extend_from_slice(data);
            }
        }
    }
}

fn encoded(value: &Value) -> String {
    value
        .to_string()
        .bytes()
        .map(|b| format!("%{b:02X}"))
        .collect()
}

/// What both tests check on one HTTP/2 connection (`authority` for the requests' URIs): a
/// uni SSE stream and an HTTP-streaming connection, multiplexed with API calls.
async fn streams_over(mut sender: Sender, authority: &str) {
    let connect = json!({"token": token("hana")});
    let request = http::Request::get(format!(
        "{authority}/connection/uni_sse?cf_connect={}",
        encoded(&connect)
    ))
    .body(Full::new(Bytes::new()))
    .expect("request");
    let response = send(&mut sender, request).await;
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()[http::header::CONTENT_TYPE],
        "text/event-stream; charset=utf-8"
    );
    let mut sse = Messages {
        body: response.into_body(),
        buffer: Vec::new(),
    };
    assert!(sse.next().await["connect"]["client"].is_string());

    let command = json!({"id": 1, "connect": {"token": token("hana")}}).to_string();
    let request = http::Request::post(format!("{authority}/connection/http_stream"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(command)))
        .expect("request");
    let response = send(&mut sender, request).await;
    assert_eq!(response.status(), 200);
    let mut stream = Messages {
        body: response.into_body(),
        buffer: Vec::new(),
    };
    let reply = stream.next().await;
    assert_eq!(reply["id"], 1, "{reply}");

    // The server API on the same connection, while both streams are open.
    let request = http::Request::post(format!("{authority}/api/subscribe"))
        .header("X-API-Key", API_KEY)
        .body(Full::new(Bytes::from(
            json!({"user": "hana", "channel": "news"}).to_string(),
        )))
        .expect("request");
    let answer = send(&mut sender, request).await;
    assert_eq!(answer.status(), 200);
    let request = http::Request::post(format!("{authority}/api/publish"))
        .header("X-API-Key", API_KEY)
        .body(Full::new(Bytes::from(
            json!({"channel": "news", "data": {"n": 1}}).to_string(),
        )))
        .expect("request");
    assert_eq!(send(&mut sender, request).await.status(), 200);

    let publication = loop {
        let message = sse.next().await;
        if message.get("pub").is_some() {
            break message;
        }
    };
    assert_eq!(publication["pub"]["data"]["n"], 1, "{publication}");
    let publication = loop {
        let message = stream.next().await;
        if message["push"].get("pub").is_some() {
            break message;
        }
    };
    assert_eq!(publication["push"]["channel"], "news", "{publication}");
}

fn enabled() -> Value {
    json!({"uni_sse": {"enabled": true}, "http_stream": {"enabled": true}})
}

#[tokio::test]
async fn h2c_with_prior_knowledge_carries_the_streams() {
    let server = Server::start(enabled()).await;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("connect");
    let sender = h2(tcp).await;
    streams_over(sender, &format!("http://127.0.0.1:{}", server.port)).await;
    // HTTP/1.1 still works on the same port, WebSocket upgrades included.
    assert_eq!(server.get("/health").await.status, 200);
    let mut ws = server.client("ida").await;
    ws.assert_alive().await;
}

#[tokio::test]
async fn tls_with_alpn_h2_carries_the_streams() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cert = TestCert::generate(dir.path(), "h2");
    let mut config = enabled();
    merge(&mut config, cert.server_config());
    let server = Server::start(config).await;
    let mut client = (*cert.client_config()).clone();
    client.alpn_protocols = vec![b"h2".to_vec()];
    let tls = common::tls::connect(server.port, std::sync::Arc::new(client))
        .await
        .expect("TLS");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let sender = h2(tls).await;
    streams_over(sender, &format!("https://localhost:{}", server.port)).await;
}
