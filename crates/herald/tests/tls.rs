//! TLS termination (`http_server.tls`) on the real binary: HTTPS for the API and health,
//! WSS for clients, a plain-HTTP client on the TLS port, certificate reload (SIGHUP and file
//! change) and refused configurations. Certificates are made for each test by `openssl`
//! (see `common::tls`).

mod common;

use std::time::{Duration, Instant};

use common::tls::{TestCert, https};
use common::{Server, Ws, token};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Waits (bounded by `wait`) until the server presents `cert` to a client that trusts it;
/// fails with `what` and the server's log otherwise.
async fn wait_until_presented(server: &Server, cert: &TestCert, wait: Duration, what: &str) {
    let deadline = Instant::now() + wait;
    loop {
        if presented(server.port, cert).await.ok().as_deref() == Some(cert.cert_der().as_ref()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}; stderr:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The certificate the server presents to a new connection that trusts `trusting`'s CA, or
/// the handshake error.
async fn presented(port: u16, trusting: &TestCert) -> Result<Vec<u8>, String> {
    let stream = common::tls::connect(port, trusting.client_config())
        .await
        .map_err(|e| e.to_string())?;
    let (_, conn) = stream.get_ref();
    let certs = conn.peer_certificates().ok_or("no certificate presented")?;
    Ok(certs[0].as_ref().to_vec())
}

/// Replaces the files of `live` with those of `new` (same paths), as a renewal does.
fn install(new: &TestCert, live: &TestCert) {
    std::fs::copy(&new.cert, &live.cert).expect("copy the new certificate");
    std::fs::copy(&new.key, &live.key).expect("copy the new key");
}

fn sighup(server: &Server) {
    // SAFETY: kill(2) on the child we started; no memory is involved.
    let rc = unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGHUP) };
    assert_eq!(rc, 0, "kill(SIGHUP): {}", std::io::Error::last_os_error());
}

#[tokio::test]
async fn the_api_and_health_answer_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::generate(dir.path(), "a");
    let server = Server::start(TestCert::server_config(&cert)).await;
    assert!(
        server.stderr().contains("listening on https://"),
        "{}",
        server.stderr()
    );
    let health = https(
        server.port,
        cert.client_config(),
        "GET",
        "/health",
        &[],
        None,
    )
    .await;
    assert_eq!(health.status, 200, "{}", health.text());
    let info = common::tls::api(server.port, cert.client_config(), "info", json!({})).await;
    assert_eq!(info.status, 200, "{}", info.text());
    assert!(info.json()["result"]["nodes"].is_array(), "{}", info.text());
}

#[tokio::test]
async fn inline_and_base64_pem_certificates_work() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::generate(dir.path(), "a");
    let server = Server::start(json!({"http_server": {"tls": {
        "enabled": true,
        "cert_pem": std::fs::read_to_string(&cert.cert).unwrap(),
        "key_pem": std::fs::read_to_string(&cert.key).unwrap(),
    }}}))
    .await;
    assert_eq!(
        presented(server.port, &cert).await.unwrap(),
        cert.cert_der().as_ref()
    );
    // Nothing to reload: a SIGHUP says so, and the server goes on.
    sighup(&server);
    let deadline = Instant::now() + common::STEP;
    while !server.stderr().contains("nothing to reload") {
        assert!(Instant::now() < deadline, "{}", server.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        presented(server.port, &cert).await.unwrap(),
        cert.cert_der().as_ref()
    );

    // The same, base64-encoded.
    use base64::Engine as _;
    let b64 = |path: &std::path::Path| {
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).unwrap())
    };
    let server = Server::start(json!({"http_server": {"tls": {
        "enabled": true,
        "cert_pem_b64": b64(&cert.cert),
        "key_pem_b64": b64(&cert.key),
    }}}))
    .await;
    assert_eq!(
        presented(server.port, &cert).await.unwrap(),
        cert.cert_der().as_ref()
    );
}

#[tokio::test]
async fn plain_http_on_the_tls_port_is_closed_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::generate(dir.path(), "a");
    let server = Server::start(TestCert::server_config(&cert)).await;
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    // The server answers at most a TLS alert and closes: never an HTTP response.
    let mut got = Vec::new();
    let read = tokio::time::timeout(common::STEP, tcp.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the connection was not closed within a step");
    assert!(
        !got.starts_with(b"HTTP/"),
        "plain HTTP was answered in clear: {:?}",
        String::from_utf8_lossy(&got)
    );
    let health = https(
        server.port,
        cert.client_config(),
        "GET",
        "/health",
        &[],
        None,
    )
    .await;
    assert_eq!(health.status, 200);
    assert!(!server.stderr().contains("panicked"), "{}", server.stderr());
}

#[tokio::test]
async fn sighup_reloads_the_certificate_for_new_connections_only() {
    let dir = tempfile::tempdir().unwrap();
    let old = TestCert::generate(dir.path(), "old");
    let new = TestCert::generate(dir.path(), "new");
    let server = Server::start(TestCert::server_config(&old)).await;
    assert_eq!(
        presented(server.port, &old).await.unwrap(),
        old.cert_der().as_ref()
    );
    // Connections made before the reload, used after it: HTTP, and a subscribed WebSocket.
    let before = common::tls::connect(server.port, old.client_config())
        .await
        .unwrap();
    let mut ws = Ws::open_tls(server.port, old.client_config()).await;
    let reply = ws.connect(&token("alice")).await;
    assert!(reply.get("connect").is_some(), "{reply}");
    ws.subscribe_ok("news").await;

    install(&new, &old);
    sighup(&server);
    wait_until_presented(
        &server,
        &new,
        common::STEP,
        "no new certificate after SIGHUP",
    )
    .await;
    assert!(
        presented(server.port, &old).await.is_err(),
        "a client that trusts only the old CA still got in"
    );
    let health = common::http_on(before, server.port, "GET", "/health", &[], None).await;
    assert_eq!(health.status, 200, "the connection made before the reload");
    assert!(server.stderr().contains("TLS certificate loaded again"));
    // The process is alive (SIGHUP did not end it), and the WebSocket opened with the old
    // certificate still receives.
    let published = common::tls::api(
        server.port,
        new.client_config(),
        "publish",
        json!({"channel": "news", "data": {"after": "reload"}}),
    )
    .await;
    assert_eq!(published.status, 200, "{}", published.text());
    let push = ws.next_push().await;
    assert_eq!(push["push"]["pub"]["data"]["after"], "reload", "{push}");
}

#[tokio::test]
async fn changed_files_are_picked_up_without_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let old = TestCert::generate(dir.path(), "old");
    let new = TestCert::generate(dir.path(), "new");
    let server = Server::start(TestCert::server_config(&old)).await;
    install(&new, &old);
    // The files are checked every 5 s.
    wait_until_presented(
        &server,
        &new,
        Duration::from_secs(15),
        "the changed files were not picked up",
    )
    .await;
}

#[tokio::test]
async fn a_bad_reload_keeps_the_certificate_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let old = TestCert::generate(dir.path(), "old");
    let other = TestCert::generate(dir.path(), "other");
    let server = Server::start(TestCert::server_config(&old)).await;
    // A key that is not the certificate's.
    std::fs::copy(&other.key, &old.key).unwrap();
    sighup(&server);
    let deadline = Instant::now() + common::STEP;
    while !server.stderr().contains("TLS certificate reload failed") {
        assert!(
            Instant::now() < deadline,
            "no reload failure logged; stderr:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        server
            .stderr()
            .contains("is not the key of the certificate"),
        "{}",
        server.stderr()
    );
    assert_eq!(
        presented(server.port, &old).await.unwrap(),
        old.cert_der().as_ref()
    );
}

/// Starts the binary with `patch` and returns its stderr, asserting that it refused to start.
async fn refused(patch: Value) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::base_config();
    common::merge(&mut config, patch);
    let path = dir.path().join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let out = common::run_cli(&["-c", path.to_str().unwrap()], dir.path()).await;
    assert!(!out.status.success(), "herald started with {config}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn unusable_tls_settings_stop_the_start_with_the_option_named() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::generate(dir.path(), "a");
    let missing = dir.path().join("missing.pem");
    let err = refused(json!({"http_server": {"tls": {
        "enabled": true, "cert_pem_file": missing, "key_pem_file": cert.key,
    }}}))
    .await;
    assert!(
        err.contains("http_server.tls.cert_pem_file") && err.contains("missing.pem"),
        "{err}"
    );
    // `checkconfig` reads the files as the server would.
    let config = dir.path().join("missing.json");
    let mut tree = common::base_config();
    common::merge(
        &mut tree,
        json!({"http_server": {"tls": {
            "enabled": true, "cert_pem_file": missing, "key_pem_file": cert.key,
        }}}),
    );
    std::fs::write(&config, tree.to_string()).unwrap();
    let out = common::run_cli(&["-c", config.to_str().unwrap(), "checkconfig"], dir.path()).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("missing.pem"),
        "{err}"
    );
    let mut tree = common::base_config();
    common::merge(&mut tree, TestCert::server_config(&cert));
    std::fs::write(&config, tree.to_string()).unwrap();
    let out = common::run_cli(&["-c", config.to_str().unwrap(), "checkconfig"], dir.path()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = refused(json!({"http_server": {"tls": {"enabled": true}}})).await;
    assert!(
        err.contains("http_server.tls.enabled needs a certificate"),
        "{err}"
    );
    let err = refused(json!({"http_server": {"tls": {
        "enabled": true, "cert_pem_file": cert.cert, "key_pem_file": cert.cert,
    }}}))
    .await;
    assert!(err.contains("http_server.tls.key_pem_file"), "{err}");
    let err = refused(json!({"http_server": {"tls": {
        "enabled": true, "cert_pem_file": cert.cert, "key_pem_file": cert.key,
        "client_ca_pem_file": cert.ca,
    }}}))
    .await;
    assert!(err.contains("http_server.tls.client_ca_pem_file"), "{err}");
    let err = refused(json!({"http_server": {"tls_autocert": {"enabled": true}}})).await;
    assert!(err.contains("http_server.tls_autocert"), "{err}");
}

#[tokio::test]
async fn a_client_over_wss_receives_a_publication_sent_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::generate(dir.path(), "a");
    let server = Server::start(TestCert::server_config(&cert)).await;
    let mut ws = Ws::open_tls(server.port, cert.client_config()).await;
    let reply = ws.connect(&token("alice")).await;
    assert!(reply.get("connect").is_some(), "{reply}");
    ws.subscribe_ok("news").await;
    let published = common::tls::api(
        server.port,
        cert.client_config(),
        "publish",
        json!({"channel": "news", "data": {"text": "over TLS"}}),
    )
    .await;
    assert_eq!(published.status, 200, "{}", published.text());
    let push = ws.next_push().await;
    assert_eq!(push["push"]["pub"]["data"]["text"], "over TLS", "{push}");
    ws.assert_alive().await;
}

#[tokio::test]
async fn herald_publish_says_it_cannot_reach_a_tls_server() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::generate(dir.path(), "a");
    let mut config = common::base_config();
    common::merge(&mut config, TestCert::server_config(&cert));
    let path = dir.path().join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let out = common::run_cli(
        &["-c", path.to_str().unwrap(), "publish", "news", "{}"],
        dir.path(),
    )
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("http_server.tls") && err.contains("https://"),
        "{err}"
    );
}

/// Messages larger than a TLS record (16 KiB) and than the connection's TLS buffer (64 KiB)
/// cross in both directions: reads that span records, and writes that the buffer limit cuts.
#[tokio::test]
async fn large_messages_cross_tls_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::generate(dir.path(), "a");
    let mut patch = TestCert::server_config(&cert);
    common::merge(
        &mut patch,
        json!({"channel": {"without_namespace": {"allow_publish_for_client": true}}}),
    );
    let server = Server::start(patch).await;
    let mut ws = Ws::open_tls(server.port, cert.client_config()).await;
    let reply = ws.connect(&token("alice")).await;
    assert!(reply.get("connect").is_some(), "{reply}");
    ws.subscribe_ok("big").await;

    // From the client: 50 KB in one WebSocket message (four TLS records).
    let from_client = "c".repeat(50_000);
    let reply = ws.publish("big", json!({"text": from_client})).await;
    assert!(reply.get("error").is_none(), "{reply}");
    let push = ws.next_push().await;
    assert_eq!(push["push"]["pub"]["data"]["text"], from_client.as_str());

    // From the server: 300 KB publications, several in a row (within client.queue_max_size).
    let from_api = "s".repeat(300_000);
    for i in 0..3 {
        let published = common::tls::api(
            server.port,
            cert.client_config(),
            "publish",
            json!({"channel": "big", "data": {"i": i, "text": from_api}}),
        )
        .await;
        assert_eq!(published.status, 200, "{}", published.text());
    }
    for i in 0..3 {
        let push = ws.next_push().await;
        assert_eq!(push["push"]["pub"]["data"]["i"], i);
        assert_eq!(push["push"]["pub"]["data"]["text"], from_api.as_str());
    }
    ws.assert_alive().await;
}
