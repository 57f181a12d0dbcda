//! Attacks on the HTTP side: request bodies sent a byte a second (to the server API and to the
//! admin log-in, which anyone may call), running the server out of file descriptors, and
//! guessing the admin password.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::common::{self, API_KEY, Server, http};

const ADMIN_PASSWORD: &str = "hostile-admin-password";
const ADMIN_SECRET: &str = "hostile-admin-session-secret";

/// What a slow-body connection got.
#[derive(Debug)]
struct Outcome {
    /// The response's status, if a response came before the connection ended.
    status: Option<u16>,
    /// The response's `Retry-After`, if any.
    retry_after: Option<String>,
    /// The response body, if any.
    body: String,
    /// How long after the headers were sent the connection ended.
    ended_after: Duration,
    /// Whether the server ended it (false: still open when the test gave up).
    ended: bool,
}

/// Sends `POST path` from `source` (any 127.x.y.z address reaches the server on 127.0.0.1)
/// with a 100-byte body announced, then one byte a second, until the server answers or closes
/// (bounded by `give_up`).
async fn slow_body(
    source: Ipv4Addr,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    give_up: Duration,
) -> Outcome {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((source, 0)))
        .unwrap_or_else(|e| panic!("bind {source}: {e}"));
    let stream = socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n"
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n{");
    writer.write_all(head.as_bytes()).await.expect("send head");
    let sent = Instant::now();
    let trickle = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if writer.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    let mut response = Vec::new();
    let read = tokio::time::timeout(give_up, async {
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => response.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    trickle.abort();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok());
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let retry_after = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("retry-after")
            .then(|| value.trim().to_owned())
    });
    Outcome {
        status,
        retry_after,
        body: body.to_owned(),
        ended_after: sent.elapsed(),
        ended: read.is_ok(),
    }
}

fn admin_config() -> Value {
    json!({"admin": {"enabled": true, "password": ADMIN_PASSWORD, "secret": ADMIN_SECRET}})
}

/// 100 connections each trickling a body to `/api/publish` (with the API key), to
/// `/admin/api/login` and to `/demo/token` (both open to anyone): every one is answered and
/// closed within the body read timeout plus slack — 408 when its body was too slow, 503 at once
/// past the cap on unauthorized body reads, 429 at once past the log-in's rate limits — and
/// while they are held a new WebSocket client connects and an authorized publish reaches it.
#[tokio::test]
async fn slow_bodies_are_cut_off_on_time_while_others_are_served() {
    const EACH: u32 = 100;
    const GATE: usize = 60;
    let timeout = Duration::from_secs(1);
    let slack = Duration::from_secs(3);
    let mut config = admin_config();
    common::merge(
        &mut config,
        json!({
            "demo": true,
            "http_server": {"body_read_timeout": "1s", "unauthenticated_request_limit": GATE}
        }),
    );
    let server = Server::start(config).await;
    let port = server.port;
    let give_up = timeout + slack + Duration::from_secs(5);
    let mut tasks = Vec::new();
    for n in 0..EACH {
        // Log-ins from addresses of their own, as a botnet would send them.
        let source = Ipv4Addr::new(127, 1, (n / 200) as u8, (n % 200 + 1) as u8);
        for (what, path) in [
            ("api", "/api/publish"),
            ("login", "/admin/api/login"),
            ("demo", "/demo/token"),
        ] {
            tasks.push((
                what,
                tokio::spawn(async move {
                    let key = [("X-API-Key", API_KEY)];
                    let headers: &[(&str, &str)] = if what == "api" { &key } else { &[] };
                    slow_body(source, port, path, headers, give_up).await
                }),
            ));
        }
    }
    // While they are held: a new client connects and an authorized publish reaches it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let mut ws = server.client("alice").await;
    ws.subscribe_ok("news").await;
    server
        .api_ok("publish", json!({"channel": "news", "data": {"n": 1}}))
        .await;
    let push = ws.next_push().await;
    assert_eq!(push["push"]["pub"]["data"]["n"], 1, "{push}");
    let served_in = started.elapsed();

    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for (what, task) in tasks {
        let outcome = task.await.expect("slow client task");
        assert!(
            outcome.ended && outcome.ended_after <= timeout + slack,
            "{what}: a slow body was held for {:?} (timeout {timeout:?}): {outcome:?}",
            outcome.ended_after
        );
        let error = || -> Value {
            serde_json::from_str(&outcome.body)
                .unwrap_or_else(|e| panic!("{what}: the error body is not JSON ({e}): {outcome:?}"))
        };
        match outcome.status {
            Some(408) => {
                assert_eq!(error()["error"]["code"], 408, "{outcome:?}");
                assert!(
                    outcome.ended_after >= timeout - Duration::from_millis(100),
                    "{what}: cut off before the timeout: {outcome:?}"
                );
            }
            Some(503) => {
                assert_ne!(what, "api", "the server API is not gated: {outcome:?}");
                assert_eq!(outcome.retry_after.as_deref(), Some("1"), "{outcome:?}");
                assert!(
                    error()["error"]["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("unauthenticated_request_limit")),
                    "{outcome:?}"
                );
            }
            Some(429) => {
                assert_eq!(what, "login", "{outcome:?}");
                assert!(outcome.retry_after.is_some(), "{outcome:?}");
                assert_eq!(error()["error"]["code"], 429, "{outcome:?}");
            }
            // Closed without a response is allowed (the response could not be sent).
            None => {}
            Some(other) => panic!("{what}: unexpected HTTP {other}: {outcome:?}"),
        }
        let key = format!("{what} {:?}", outcome.status);
        *statuses.entry(key).or_default() += 1;
    }
    eprintln!("slow bodies: {statuses:?}; a new client and a publish took {served_in:?}");
    let count = |key: &str| statuses.get(key).copied().unwrap_or(0);
    // Most answers are readable; the API's are all timeouts.
    assert!(count("api Some(408)") >= EACH as usize / 2, "{statuses:?}");
    assert_eq!(count("api Some(503)") + count("api Some(429)"), 0);
    // The cap turned some unauthorized body reads away at once, and let no more than it in.
    assert!(count("demo Some(503)") >= 1, "{statuses:?}");
    assert!(
        count("demo Some(408)") + count("login Some(408)") <= GATE,
        "{statuses:?}"
    );
    // The server is fine afterwards.
    ws.assert_alive().await;
}

/// The CPU time (user + system, in seconds) process `pid` has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/stat: {e}"));
    // Fields after the command name (which may contain spaces) start at field 3.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / per_second
}

/// How many descriptors process `pid` has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| dir.count())
        .unwrap_or_else(|e| panic!("cannot list /proc/{pid}/fd: {e}"))
}

/// With `RLIMIT_NOFILE` low, connections past it make `accept()` fail with EMFILE: the server
/// backs off (no core spinning), logs it once rather than per try, and serves new clients as
/// soon as descriptors are free again.
#[tokio::test]
async fn accept_failures_back_off_without_spinning_or_flooding_the_log() {
    const NOFILE: u64 = 64;
    let server = Server::start_with_fd_limit(json!({}), NOFILE).await;
    let pid = server.pid();
    let used = open_fds(pid);
    assert!(
        (used as u64) < NOFILE - 10,
        "herald already has {used} descriptors open"
    );
    // Enough connections to use up the rest, and 40 more that wait in the accept queue.
    let mut held = Vec::new();
    for _ in 0..(NOFILE as usize - used + 40) {
        held.push(
            TcpStream::connect(("127.0.0.1", server.port))
                .await
                .expect("connect (the kernel completes it even when accept fails)"),
        );
    }
    // Wait until the server is at its limit and accept fails.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.stderr().contains("accept failed") {
        assert!(
            Instant::now() < deadline,
            "no accept failure logged with {} connections held ({} descriptors open); stderr:\n{}",
            held.len(),
            open_fds(pid),
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Over 2 s of failing accepts: little CPU, and no line per try.
    let cpu_before = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = cpu_seconds(pid) - cpu_before;
    let log = server.stderr();
    let accept_lines = log.lines().filter(|l| l.contains("accept")).count();
    eprintln!(
        "EMFILE: {} descriptors open, server CPU {cpu:.2} s over 2 s, {accept_lines} accept log lines",
        open_fds(pid)
    );
    assert!(
        cpu < 0.2,
        "the server used {cpu:.2} s of CPU in 2 s while accept failed"
    );
    assert_eq!(
        accept_lines, 1,
        "one warning per episode, not one per try:\n{log}"
    );
    assert!(
        log.contains("Too many open files") && log.contains("ulimit"),
        "the warning says why and what to do:\n{log}"
    );

    // Descriptors free again: a new client is served.
    drop(held);
    let started = Instant::now();
    let mut ws = server.client("bob").await;
    ws.subscribe_ok("news").await;
    server
        .api_ok("publish", json!({"channel": "news", "data": {"n": 2}}))
        .await;
    let push = ws.next_push().await;
    assert_eq!(push["push"]["pub"]["data"]["n"], 2, "{push}");
    eprintln!(
        "served again {:?} after the connections closed",
        started.elapsed()
    );
    let deadline = Instant::now() + common::STEP;
    while !server.stderr().contains("accept works again after") {
        assert!(
            Instant::now() < deadline,
            "no recovery line:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn login(port: u16, password: &str) -> common::HttpResponse {
    let body = json!({ "password": password }).to_string();
    http(
        port,
        "POST",
        "/admin/api/login",
        &[("Content-Type", "application/json")],
        Some(body.as_bytes()),
    )
    .await
}

/// Guessing the admin password: 30 wrong guesses at once from one address get 5 × 401 and
/// then 429 with `Retry-After` (the password not even checked: the right one is refused too
/// while locked out), the right password works once the lockout is over, and the log has one
/// summary instead of a line per guess.
#[tokio::test]
async fn admin_password_guessing_is_locked_out_and_summarised() {
    let server = Server::start(admin_config()).await;
    let port = server.port;
    let guesses: Vec<_> = (0..30)
        .map(|n| tokio::spawn(async move { login(port, &format!("guess-{n}")).await }))
        .collect();
    let mut unauthorized = 0;
    let mut limited = 0;
    for guess in guesses {
        let response = guess.await.expect("guess task");
        match response.status {
            401 => unauthorized += 1,
            429 => {
                limited += 1;
                let retry: u64 = response
                    .header("retry-after")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("429 without Retry-After: {response:?}"));
                assert!((1..=2).contains(&retry), "Retry-After {retry}");
                assert_eq!(response.json()["error"]["code"], 429);
            }
            other => panic!("HTTP {other}: {}", response.text()),
        }
    }
    // Five, unless the machine is so slow that the 1 s lockout ran out during the burst.
    assert!(
        (5..=7).contains(&unauthorized) && unauthorized + limited == 30,
        "{unauthorized} × 401, {limited} × 429"
    );

    // Locked out: the right password is refused without being checked.
    let response = login(port, ADMIN_PASSWORD).await;
    assert_eq!(response.status, 429, "{}", response.text());
    let retry: u64 = response
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    // After the lockout, it works.
    tokio::time::sleep(Duration::from_secs(retry) + Duration::from_millis(100)).await;
    let response = login(port, ADMIN_PASSWORD).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(response.json()["token"].is_string());

    // No line per guess; one summary at the end of the 10 s window.
    let deadline = Instant::now() + Duration::from_secs(15);
    let summary = loop {
        let log = server.stderr();
        if let Some(line) = log.lines().find(|l| l.contains("admin login:")) {
            break line.to_owned();
        }
        assert!(Instant::now() < deadline, "no summary within 15 s:\n{log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let counted =
        format!("admin login: {unauthorized} failed attempts from 1 address in the last 10 s");
    let refused = format!("{} more refused with 429", limited + 1);
    assert!(
        summary.contains("WARN") && summary.contains(&counted) && summary.contains(&refused),
        "{summary}"
    );
    let log = server.stderr();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("admin login") || l.contains("password"))
            .count(),
        1,
        "{log}"
    );
}

/// Admin sessions end at their `exp` (no leeway) and at log-out.
#[tokio::test]
async fn admin_sessions_end_at_expiry_and_at_logout() {
    let server = Server::start(admin_config()).await;
    let port = server.port;
    let stats = |token: String| async move {
        let auth = format!("token {token}");
        http(
            port,
            "GET",
            "/admin/api/stats",
            &[("Authorization", &auth)],
            None,
        )
        .await
    };
    // Signed with the admin secret, expired 5 s ago (jsonwebtoken's default leeway is 60 s).
    let now = common::unix_now();
    let expired = herald::auth::sign_hs256(
        &json!({"sub": "admin", "exp": now - 5, "iat": now - 100, "jti": "an-old-session"}),
        ADMIN_SECRET,
    )
    .expect("sign");
    let response = stats(expired).await;
    assert_eq!(response.status, 401, "{}", response.text());
    // The same, still valid: accepted (so the 401 above was the expiry).
    let valid = herald::auth::sign_hs256(
        &json!({"sub": "admin", "exp": now + 60, "iat": now, "jti": "a-live-session"}),
        ADMIN_SECRET,
    )
    .expect("sign");
    assert_eq!(stats(valid.clone()).await.status, 200);

    // A real session works until it logs out, then is refused; another session is not.
    let session = login(port, ADMIN_PASSWORD).await.json()["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let other = login(port, ADMIN_PASSWORD).await.json()["token"]
        .as_str()
        .expect("token")
        .to_owned();
    assert_eq!(stats(session.clone()).await.status, 200);
    let auth = format!("token {session}");
    let response = http(
        port,
        "POST",
        "/admin/api/logout",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Some(b"{}"),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let response = stats(session.clone()).await;
    assert_eq!(response.status, 401, "{}", response.text());
    assert!(
        response.text().contains("logged out"),
        "{}",
        response.text()
    );
    let response = http(
        port,
        "POST",
        "/admin/api/publish",
        &[("Authorization", &auth)],
        Some(br#"{"channel": "news", "data": {}}"#),
    )
    .await;
    assert_eq!(response.status, 401);
    assert_eq!(stats(other).await.status, 200);
    assert_eq!(stats(valid).await.status, 200);
}
