//! Backend proxies end to end: the real `herald` binary asks a real HTTP backend process
//! (`tests/support/proxy_backend.py`, answering per a scenario file and recording every request)
//! for connect, refresh, subscribe, publish, sub_refresh and RPC decisions, as Centrifugo's
//! HTTP proxies do. Each test checks what the backend was sent (the JSON and the forwarded
//! headers) and what the client got, including the backend's errors and disconnects, a backend
//! that is down and one that is slower than the proxy's timeout.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// The backend process: answers by `scenario.json`, records to `requests.jsonl`; killed on
/// drop.
struct Backend {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Backend {
    /// Starts the backend with `scenario` (request path → action, see the script's doc).
    fn start(scenario: Value) -> Backend {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut backend = Backend {
            child: Command::new("python3")
                .arg(script())
                .arg("--scenario")
                .arg(dir.path().join("scenario.json"))
                .arg("--log")
                .arg(dir.path().join("requests.jsonl"))
                .arg("--port-file")
                .arg(dir.path().join("port"))
                .stdout(Stdio::null())
                .spawn()
                .expect("start python3 tests/support/proxy_backend.py"),
            port: 0,
            dir,
        };
        backend.set(scenario);
        let deadline = Instant::now() + Duration::from_secs(10);
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(backend.dir.path().join("port"))
                && let Ok(port) = text.trim().parse::<u16>()
            {
                break port;
            }
            assert!(Instant::now() < deadline, "the proxy backend did not start");
            std::thread::sleep(Duration::from_millis(20));
        };
        backend.port = port;
        backend
    }

    /// Replaces the scenario (read again by the backend on every request).
    fn set(&self, scenario: Value) {
        let tmp = self.dir.path().join("scenario.tmp");
        std::fs::write(&tmp, scenario.to_string()).expect("write scenario");
        std::fs::rename(&tmp, self.dir.path().join("scenario.json")).expect("install scenario");
    }

    /// The URL of `path` on the backend.
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The requests received so far on `path`, oldest first: `{path, headers, body}`.
    fn requests(&self, path: &str) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("requests.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("a JSON log line"))
            .filter(|r| r["path"] == path)
            .collect()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/support/proxy_backend.py")
}

/// A proxy section for `endpoint` with a short timeout.
fn proxy(endpoint: String) -> Value {
    json!({"endpoint": endpoint, "timeout": "500ms"})
}

/// Waits (bounded) until the server's log has `text`: its stderr is read by another thread.
async fn wait_for_log(server: &Server, text: &str) {
    let deadline = Instant::now() + STEP;
    while !server.stderr().contains(text) {
        assert!(
            Instant::now() < deadline,
            "the log never said {text:?}: {}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn connect_proxy_decides_who_connects_without_a_token() {
    let backend = Backend::start(json!({
        "/connect": {"by": "data.who", "cases": {
            "alice": {"body": {"result": {
                "user": "alice", "info": {"role": "admin"}, "data": {"welcome": true},
                "channels": ["news"], "meta": {"tenant": 7}}}},
            "refused": {"body": {"error": {"code": 4403, "message": "go away"}}},
            "kicked": {"body": {"disconnect": {"code": 4501, "reason": "banned"}}},
            "nothing": {"body": {}},
            "teapot": {"status": 418, "body": {}},
            "limited": {"status": 429, "body": {}},
            "broken": {"raw": "not json"}
        }}
    }));
    let mut connect = proxy(backend.url("/connect"));
    connect["enabled"] = json!(true);
    connect["http_headers"] = json!(["X-Forwarded-User", "Cookie"]);
    connect["emulated_headers"] = json!(["X-Emulated", "X-Forwarded-User"]);
    connect["http"] = json!({
        "static_headers": {"X-Static": "static", "Cookie": "static-cookie"},
        "status_to_code_transforms": [
            {"status_code": 418, "to_disconnect": {"code": 4418, "reason": "teapot"}},
            {"status_code": 429, "to_error": {"code": 111, "message": "slow down", "temporary": true}}
        ]
    });
    let server = Server::start(json!({"client": {"proxy": {"connect": connect}}})).await;

    let mut ws = Ws::open_with_headers(
        &server.ws_url(),
        &[
            ("X-Forwarded-User", "alice@example"),
            ("Cookie", "session=1"),
            ("X-Other", "no"),
        ],
    )
    .await;
    let reply = ws
        .call(
            json!({"connect": {"data": {"who": "alice"}, "name": "js", "version": "5.0.0",
            "headers": {"X-Emulated": "from-sdk", "X-Forwarded-User": "forged", "X-Nope": "no"}}}),
        )
        .await;
    let result = &reply["connect"];
    assert_eq!(result["data"], json!({"welcome": true}), "{reply}");
    assert!(result.get("expires").is_none(), "{reply}");
    assert!(
        result["subs"].get("news").is_some(),
        "server-side channel: {reply}"
    );
    let sent = &backend.requests("/connect")[0];
    let body = &sent["body"];
    assert_eq!(body["transport"], "websocket");
    assert_eq!(body["protocol"], "json");
    assert_eq!(body["encoding"], "json");
    assert_eq!(body["data"], json!({"who": "alice"}));
    assert_eq!(body["name"], "js");
    assert_eq!(body["version"], "5.0.0");
    let headers = &sent["headers"];
    assert_eq!(headers["x-forwarded-user"], "alice@example");
    assert_eq!(
        headers["cookie"], "session=1",
        "the client's header wins over a static one"
    );
    assert_eq!(headers["x-static"], "static");
    assert_eq!(headers["content-type"], "application/json");
    assert!(
        headers.get("x-other").is_none(),
        "only http_headers are forwarded"
    );
    assert_eq!(
        headers["x-emulated"], "from-sdk",
        "emulated_headers are forwarded"
    );
    assert!(
        headers.get("x-nope").is_none(),
        "only emulated_headers are forwarded"
    );
    assert_eq!(
        headers["x-forwarded-user"], "alice@example",
        "a transport header wins over an emulated one"
    );
    // No RPC proxy is configured: RPC stays 108.
    ws.assert_alive().await;

    // A connection with a token does not ask the backend.
    let before = backend.requests("/connect").len();
    let mut with_token = server.ws().await;
    let reply = with_token.connect(&token("bob")).await;
    assert!(reply.get("connect").is_some(), "{reply}");
    assert_eq!(backend.requests("/connect").len(), before);

    // The backend's error, disconnect, empty answer, status transforms and broken answer.
    let mut ws = server.ws().await;
    let reply = ws
        .call(json!({"connect": {"data": {"who": "refused"}}}))
        .await;
    assert_eq!(reply["error"], json!({"code": 4403, "message": "go away"}));
    let mut ws = server.ws().await;
    ws.send(&json!({"id": 1, "connect": {"data": {"who": "kicked"}}}))
        .await;
    assert_eq!(ws.expect_close().await, (4501, "banned".to_string()));
    let mut ws = server.ws().await;
    ws.send(&json!({"id": 1, "connect": {"data": {"who": "nothing"}}}))
        .await;
    assert_eq!(ws.expect_close().await.0, 3501);
    let mut ws = server.ws().await;
    ws.send(&json!({"id": 1, "connect": {"data": {"who": "teapot"}}}))
        .await;
    assert_eq!(ws.expect_close().await, (4418, "teapot".to_string()));
    let mut ws = server.ws().await;
    let reply = ws
        .call(json!({"connect": {"data": {"who": "limited"}}}))
        .await;
    assert_eq!(
        reply["error"],
        json!({"code": 111, "message": "slow down", "temporary": true})
    );
    let mut ws = server.ws().await;
    let reply = ws
        .call(json!({"connect": {"data": {"who": "broken"}}}))
        .await;
    assert_eq!(reply["error"]["code"], 100, "{reply}");
    assert_eq!(reply["error"]["temporary"], true, "{reply}");
}

#[tokio::test]
async fn a_backend_that_is_down_or_slow_is_a_temporary_error_not_a_hang() {
    let backend = Backend::start(json!({"/slow": {"delay": 3, "body": {"result": {"user": "x"}}}}));
    let down = format!("http://127.0.0.1:{}/connect", closed_port());
    let server = Server::start(json!({
        "client": {"proxy": {"connect": {"enabled": true, "endpoint": down, "timeout": "500ms"}}},
        "rpc": {"proxy": {"endpoint": backend.url("/slow"), "timeout": "300ms"},
                "without_namespace": {"proxy_enabled": true}}
    }))
    .await;
    let mut ws = server.ws().await;
    let started = Instant::now();
    let reply = ws.call(json!({"connect": {}})).await;
    assert_eq!(reply["error"]["code"], 100, "{reply}");
    assert_eq!(reply["error"]["temporary"], true, "{reply}");
    assert!(started.elapsed() < Duration::from_secs(2));
    wait_for_log(&server, "connect proxy call failed: backend unreachable").await;

    let mut ws = server.ws().await;
    assert!(ws.connect(&token("u")).await.get("connect").is_some());
    let started = Instant::now();
    let reply = ws.call(json!({"rpc": {"method": "m", "data": {}}})).await;
    let took = started.elapsed();
    assert_eq!(reply["error"]["code"], 100, "{reply}");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "answered after the 300ms timeout, not the backend's 3s: {took:?}"
    );
    wait_for_log(&server, "no answer within 300ms").await;
}

/// A client connected through the connect proxy (with `meta`), in namespaces whose subscribe,
/// publish and sub_refresh go to proxies.
async fn channel_setup(backend: &Backend) -> Server {
    let mut connect = proxy(backend.url("/connect"));
    connect["enabled"] = json!(true);
    connect["http_headers"] = json!(["Authorization"]);
    let mut subscribe = proxy(backend.url("/subscribe"));
    subscribe["include_connection_meta"] = json!(true);
    subscribe["http_headers"] = json!(["Authorization"]);
    Server::start(json!({
        "client": {"proxy": {"connect": connect}},
        "channel": {
            "proxy": {"subscribe": subscribe, "sub_refresh": proxy(backend.url("/sub_refresh"))},
            "namespaces": [
                {"name": "sp", "subscribe_proxy_enabled": true, "sub_refresh_proxy_enabled": true},
                {"name": "pp", "publish_proxy_enabled": true, "publish_proxy_name": "pub",
                 "allow_subscribe_for_client": true},
                {"name": "open", "allow_subscribe_for_client": true}
            ]
        },
        "proxies": [{"name": "pub", "endpoint": backend.url("/publish"), "timeout": "500ms",
                     "binary_encoding": true}]
    }))
    .await
}

fn connect_scenario() -> Value {
    json!({"body": {"result": {"user": "$req.data.user", "meta": {"plan": "gold"}}}})
}

#[tokio::test]
async fn subscribe_proxy_decides_and_sends_meta_and_headers() {
    let backend = Backend::start(json!({
        "/connect": connect_scenario(),
        "/subscribe": {"by": "channel", "cases": {
            "sp:open": {"body": {"result": {"data": {"hello": 1}, "info": {"seat": 3}}}},
            "sp:closed": {"body": {"error": {"code": 103, "message": "permission denied"}}},
            "sp:bye": {"body": {"disconnect": {"code": 4000, "reason": "bye"}}}
        }}
    }));
    let server = channel_setup(&backend).await;
    let mut ws = Ws::open_with_headers(&server.ws_url(), &[("Authorization", "Bearer abc")]).await;
    let reply = ws
        .call(json!({"connect": {"data": {"user": "carol"}}}))
        .await;
    assert!(reply.get("connect").is_some(), "{reply}");

    let reply = ws.subscribe("sp:open").await;
    assert_eq!(reply["subscribe"]["data"], json!({"hello": 1}), "{reply}");
    let sent = &backend.requests("/subscribe")[0];
    assert_eq!(sent["body"]["channel"], "sp:open");
    assert_eq!(sent["body"]["user"], "carol");
    assert_eq!(sent["body"]["meta"], json!({"plan": "gold"}));
    assert_eq!(sent["body"]["transport"], "websocket");
    assert!(
        sent["body"]["client"]
            .as_str()
            .is_some_and(|c| c.len() == 36)
    );
    assert_eq!(sent["headers"]["authorization"], "Bearer abc");

    let reply = ws.subscribe("sp:closed").await;
    assert_error(&reply, 103);
    // A namespace without a subscribe proxy is the configuration's to decide.
    let reply = ws.subscribe("open:x").await;
    assert!(reply.get("subscribe").is_some(), "{reply}");
    assert_eq!(backend.requests("/subscribe").len(), 2);
    ws.send(&json!({"id": 99, "subscribe": {"channel": "sp:bye"}}))
        .await;
    assert_eq!(ws.expect_close().await, (4000, "bye".to_string()));
}

#[tokio::test]
async fn publish_proxy_decides_and_rewrites() {
    let backend = Backend::start(json!({
        "/connect": connect_scenario(),
        "/publish": {"by": "channel", "cases": {
            "pp:rewrite": {"body": {"result": {"data": {"text": "rewritten"}}}},
            "pp:b64": {"body": {"result": {"b64data": "eyJiIjo2NH0="}}},
            "pp:no": {"body": {"error": {"code": 4100, "message": "moderated"}}}
        }}
    }));
    let server = channel_setup(&backend).await;
    let mut ws = server.ws().await;
    ws.call(json!({"connect": {"data": {"user": "dave"}}}))
        .await;
    ws.subscribe_ok("pp:rewrite").await;
    ws.subscribe_ok("pp:b64").await;

    let reply = ws.publish("pp:rewrite", json!({"text": "original"})).await;
    assert!(reply.get("publish").is_some(), "{reply}");
    let push = ws.next_push().await;
    assert_eq!(
        push["push"]["pub"]["data"],
        json!({"text": "rewritten"}),
        "{push}"
    );
    let sent = &backend.requests("/publish")[0]["body"];
    assert_eq!(
        sent["encoding"], "binary",
        "binary_encoding of the named proxy"
    );
    assert_eq!(sent["b64data"], "eyJ0ZXh0Ijoib3JpZ2luYWwifQ==");
    assert_eq!(sent["user"], "dave");

    ws.publish("pp:b64", json!({"a": 1})).await;
    let push = ws.next_push().await;
    assert_eq!(push["push"]["pub"]["data"], json!({"b": 64}), "{push}");
    let reply = ws.publish("pp:no", json!({})).await;
    assert_eq!(
        reply["error"],
        json!({"code": 4100, "message": "moderated"})
    );
}

#[tokio::test]
async fn rpc_goes_to_the_proxy_of_its_namespace() {
    let backend = Backend::start(json!({
        "/rpc": {"body": {"result": {"data": {"echo": "$req.data", "method": "$req.method"}}}},
        "/named": {"by": "method", "cases": {
            "admin:fail": {"body": {"error": {"code": 4004, "message": "no", "temporary": true}}},
            "admin:kick": {"body": {"disconnect": {"code": 4005, "reason": "kick"}}}
        }, "default": {"body": {"result": {}}}}
    }));
    let server = Server::start(json!({
        "rpc": {
            "proxy": proxy(backend.url("/rpc")),
            "without_namespace": {"proxy_enabled": true},
            "namespaces": [
                {"name": "admin", "proxy_enabled": true, "proxy_name": "adm"},
                {"name": "off"}
            ]
        },
        "proxies": [{"name": "adm", "endpoint": backend.url("/named"), "timeout": "1s"}]
    }))
    .await;
    let mut ws = server.client("erin").await;
    let reply = ws
        .call(json!({"rpc": {"method": "sum", "data": {"a": 1}}}))
        .await;
    assert_eq!(
        reply["rpc"]["data"],
        json!({"echo": {"a": 1}, "method": "sum"}),
        "{reply}"
    );
    assert_eq!(backend.requests("/rpc")[0]["body"]["user"], "erin");
    let reply = ws.call(json!({"rpc": {"method": "admin:ok"}})).await;
    assert_eq!(reply["rpc"], json!({}), "{reply}");
    let reply = ws.call(json!({"rpc": {"method": "admin:fail"}})).await;
    assert_eq!(
        reply["error"],
        json!({"code": 4004, "message": "no", "temporary": true})
    );
    let reply = ws.call(json!({"rpc": {"method": "off:x"}})).await;
    assert_error(&reply, 108);
    let reply = ws.call(json!({"rpc": {"method": "nowhere:x"}})).await;
    assert_error(&reply, 104);
    ws.send(&json!({"id": 50, "rpc": {"method": "admin:kick"}}))
        .await;
    assert_eq!(ws.expect_close().await, (4005, "kick".to_string()));
}

#[tokio::test]
async fn refresh_proxy_extends_a_connection_then_expires_it() {
    let backend = Backend::start(json!({
        "/connect": {"body": {"result": {"user": "frank", "expire_at": unix_now() + 2}}},
        "/refresh": {"body": {"result": {"expire_at": unix_now() + 2}}}
    }));
    let mut connect = proxy(backend.url("/connect"));
    connect["enabled"] = json!(true);
    let mut refresh = proxy(backend.url("/refresh"));
    refresh["enabled"] = json!(true);
    let server =
        Server::start(json!({"client": {"proxy": {"connect": connect, "refresh": refresh}}})).await;
    // Expiries from now on: starting the server may take a while on a busy machine.
    backend.set(json!({
        "/connect": {"body": {"result": {"user": "frank", "expire_at": unix_now() + 2}}},
        "/refresh": {"body": {"result": {"expire_at": unix_now() + 4}}}
    }));
    let mut ws = server.ws().await;
    let reply = ws.call(json!({"connect": {}})).await;
    assert!(reply.get("connect").is_some(), "{reply}");
    assert!(
        reply["connect"].get("expires").is_none(),
        "the server refreshes, not the client: {reply}"
    );
    // The first refresh (at about 1 s) extends it; the next answer says expired.
    let deadline = Instant::now() + Duration::from_secs(5);
    while backend.requests("/refresh").is_empty() {
        assert!(Instant::now() < deadline, "the refresh proxy was not asked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let asked = &backend.requests("/refresh")[0]["body"];
    assert_eq!(asked["user"], "frank");
    backend.set(json!({"/refresh": {"body": {"result": {"expired": true}}}}));
    ws.assert_alive().await;
    let (code, _) = ws.expect_close_within(Duration::from_secs(6)).await;
    assert_eq!(code, 3005);
}

#[tokio::test]
async fn sub_refresh_proxy_extends_a_subscription_then_ends_it() {
    let backend = Backend::start(json!({
        "/connect": connect_scenario(),
        "/subscribe": {"body": {"result": {"expire_at": unix_now() + 2}}},
        "/sub_refresh": {"body": {"result": {"expire_at": unix_now() + 2}}}
    }));
    let server = channel_setup(&backend).await;
    backend.set(json!({
        "/connect": connect_scenario(),
        "/subscribe": {"body": {"result": {"expire_at": unix_now() + 2}}},
        "/sub_refresh": {"body": {"result": {"expire_at": unix_now() + 4}}}
    }));
    let mut ws = server.ws().await;
    ws.call(json!({"connect": {"data": {"user": "gina"}}}))
        .await;
    let reply = ws.subscribe("sp:timed").await;
    assert!(reply.get("subscribe").is_some(), "{reply}");
    assert!(reply["subscribe"].get("expires").is_none(), "{reply}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while backend.requests("/sub_refresh").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the sub_refresh proxy was not asked"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let asked = &backend.requests("/sub_refresh")[0]["body"];
    assert_eq!(asked["channel"], "sp:timed");
    assert_eq!(asked["user"], "gina");
    backend.set(json!({"/sub_refresh": {"body": {"result": {"expired": true}}}}));
    let push = ws
        .next_push_within(Duration::from_secs(6))
        .await
        .expect("an unsubscribe push");
    assert_eq!(push["push"]["channel"], "sp:timed", "{push}");
    assert_eq!(push["push"]["unsubscribe"]["code"], 2501, "{push}");
    ws.assert_alive().await;
}

#[tokio::test]
async fn a_proxy_named_nowhere_or_over_grpc_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        json!({
            "channel": {"namespaces": [{"name": "a", "subscribe_proxy_enabled": true,
                                        "subscribe_proxy_name": "ghost"}]},
            "client": {"proxy": {"connect": {"enabled": true, "endpoint": "backend:10000"}}},
            "rpc": {"proxy": {"endpoint": "http://127.0.0.1:1/rpc", "grpc": {"tls": {"enabled": true}}}}
        })
        .to_string(),
    )
    .unwrap();
    let out = run_cli(&["-c", config.to_str().unwrap(), "checkconfig"], dir.path()).await;
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("channel.namespaces[0].subscribe_proxy_enabled: no proxy named \"ghost\""),
        "{text}"
    );
    assert!(text.contains("client.proxy.connect.endpoint"), "{text}");
    assert!(text.contains("rpc.proxy.grpc"), "{text}");
}

#[tokio::test]
async fn a_refresh_proxy_that_is_down_gives_the_connection_more_time() {
    let backend = Backend::start(json!({}));
    let mut connect = proxy(backend.url("/connect"));
    connect["enabled"] = json!(true);
    let down = format!("http://127.0.0.1:{}/refresh", closed_port());
    let server = Server::start(json!({"client": {"proxy": {
        "connect": connect,
        "refresh": {"enabled": true, "endpoint": down, "timeout": "300ms"}
    }}}))
    .await;
    backend.set(json!({
        "/connect": {"body": {"result": {"user": "hana", "expire_at": unix_now() + 2}}}
    }));
    let mut ws = server.ws().await;
    let reply = ws.call(json!({"connect": {}})).await;
    assert!(reply.get("connect").is_some(), "{reply}");
    wait_for_log(&server, "refresh proxy call failed").await;
    assert!(
        server.stderr().contains("the connection lives 60 s more"),
        "{}",
        server.stderr()
    );
    // Past its expiry, and still served.
    tokio::time::sleep(Duration::from_millis(500)).await;
    ws.assert_alive().await;
}

#[tokio::test]
async fn a_streaming_connection_forwards_its_request_headers_too() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let backend = Backend::start(json!({"/connect": {"body": {"result": {"user": "ivy"}}}}));
    let mut connect = proxy(backend.url("/connect"));
    connect["enabled"] = json!(true);
    connect["http_headers"] = json!(["X-Forwarded-User"]);
    let server = Server::start(json!({
        "client": {"proxy": {"connect": connect}},
        "uni_http_stream": {"enabled": true}
    }))
    .await;
    let body = json!({"data": {"via": "stream"}}).to_string();
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let request = format!(
        "POST /connection/uni_http_stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         X-Forwarded-User: ivy@example\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    // The connect push comes on the stream once the backend said who it is.
    let mut received = Vec::new();
    let deadline = Instant::now() + STEP;
    while !String::from_utf8_lossy(&received).contains("\"connect\"") {
        assert!(Instant::now() < deadline, "no connect push: {received:?}");
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(STEP, socket.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "the stream ended: {}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&chunk[..n]);
    }
    let sent = &backend.requests("/connect")[0];
    assert_eq!(sent["body"]["transport"], "uni_http_stream");
    assert_eq!(sent["body"]["data"], json!({"via": "stream"}));
    assert_eq!(sent["headers"]["x-forwarded-user"], "ivy@example");
}
