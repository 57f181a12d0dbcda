//! The web UI's endpoints on the real binary: the demo token endpoint exists only in demo mode,
//! the admin UI only when enabled, its JSON endpoints need a session from the right password,
//! and the admin's actions run the server API's commands. (The pages themselves are tested in
//! a browser: tests/browser.)

mod common;

use common::{STEP, Server, http};
use serde_json::{Value, json};

const ADMIN_PASSWORD: &str = "admin-password-for-tests";

fn admin_config() -> Value {
    json!({"admin": {"enabled": true, "password": ADMIN_PASSWORD, "secret": "admin-session-secret"}})
}

async fn post(
    server: &Server,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> common::HttpResponse {
    let body = body.to_string();
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    http(server.port, "POST", path, &all, Some(body.as_bytes())).await
}

async fn login(server: &Server) -> String {
    let response = post(
        server,
        "/admin/api/login",
        &[],
        &json!({"password": ADMIN_PASSWORD}),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()["token"]
        .as_str()
        .expect("a session token")
        .to_owned()
}

#[tokio::test]
async fn without_demo_and_admin_the_ui_is_not_there() {
    let server = Server::start(json!({})).await;
    for path in [
        "/",
        "/index.html",
        "/admin",
        "/admin/",
        "/admin/api/settings",
    ] {
        let response = server.get(path).await;
        assert_eq!(response.status, 404, "GET {path}: {}", response.text());
    }
    let response = post(&server, "/demo/token", &[], &json!({"name": "alice"})).await;
    assert_eq!(response.status, 404, "{}", response.text());
    let response = post(&server, "/admin/api/login", &[], &json!({"password": "x"})).await;
    assert_eq!(response.status, 404, "{}", response.text());
    // The rest of the server is unaffected.
    assert_eq!(server.get("/health").await.status, 200);
}

#[tokio::test]
async fn demo_serves_the_chat_and_signs_tokens() {
    let server = Server::start(json!({"demo": true})).await;
    let page = server.get("/").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("cache-control"), Some("no-cache"));

    // Hashed assets referenced by the page are served with a long cache lifetime.
    if herald::web::BUILT {
        let html = page.text();
        let asset = html
            .split('"')
            .find(|s| s.starts_with("/assets/") && s.ends_with(".js"))
            .unwrap_or_else(|| panic!("no script in the page: {html}"));
        let script = server.get(asset).await;
        assert_eq!(script.status, 200);
        assert_eq!(
            script.header("content-type"),
            Some("text/javascript; charset=utf-8")
        );
        assert!(
            script
                .header("cache-control")
                .unwrap_or("")
                .contains("immutable")
        );
    }
    assert_eq!(server.get("/assets/nope.js").await.status, 404);

    let response = post(&server, "/demo/token", &[], &json!({"name": "alice"})).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let body = response.json();
    assert_eq!(body["user"], "alice");
    let token = body["token"].as_str().expect("token");
    // The token connects as alice.
    let mut ws = server.ws().await;
    let reply = ws.connect(token).await;
    assert!(reply.get("connect").is_some(), "{reply}");

    // Demo namespaces: alice may subscribe to a room and to her own inbox, not to bob's.
    ws.subscribe_ok("rooms:general").await;
    ws.subscribe_ok("inbox:#alice").await;
    let reply = ws.subscribe("inbox:#bob").await;
    common::assert_error(&reply, 103);

    for (body, what) in [
        (json!({"name": ""}), "empty"),
        (json!({"name": "a,b"}), "separator"),
        (json!({"name": "a#b"}), "boundary"),
        (json!({"name": "x".repeat(40)}), "too long"),
        (json!({"name": 5}), "not a string"),
    ] {
        let response = post(&server, "/demo/token", &[], &body).await;
        assert_eq!(response.status, 400, "{what}: {}", response.text());
        assert!(response.json()["error"]["message"].is_string());
    }
    let response = http(server.port, "POST", "/demo/token", &[], Some(b"{not json")).await;
    assert_eq!(response.status, 400);
    assert_eq!(server.get("/demo/token").await.status, 405);

    // Demo without an admin password turns the admin UI on with a generated one, said in the
    // start-up banner with the chat's URL and the warning about /demo/token.
    assert_eq!(server.get("/admin/").await.status, 200);
    let stderr = log_with_banner(&server).await;
    let base = format!("http://127.0.0.1:{}", server.port);
    for line in [
        "DEMO MODE — not for production".to_owned(),
        format!("Chat:   {base}/\n"),
        format!("Admin:  {base}/admin/  password: "),
        "/demo/token signs a token for ANY name".to_owned(),
    ] {
        assert!(stderr.contains(&line), "no {line:?} in:\n{stderr}");
    }
}

/// The server's log once its demo banner is there: the banner follows the `listening on`
/// line that [`Server`] waits for, so a test reading the log at once could miss it.
async fn log_with_banner(server: &Server) -> String {
    let deadline = std::time::Instant::now() + STEP;
    loop {
        let stderr = server.stderr();
        if stderr.contains("/demo/token") || std::time::Instant::now() >= deadline {
            return stderr;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The admin password in the demo banner (`Admin: URL  password: X (kept in …)`).
fn banner_password(stderr: &str) -> String {
    let at = stderr
        .find("password: ")
        .unwrap_or_else(|| panic!("no admin password in the banner:\n{stderr}"));
    stderr[at + "password: ".len()..]
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn demo_secrets_persist_across_a_restart() {
    // `herald --demo` with no config, as the README's first command runs it.
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap().to_owned();
    let args = ["--demo", "--port", "0", "--data-dir", &data_dir];
    let first = Server::start_args(&args, tempfile::tempdir().unwrap()).await;
    let log = log_with_banner(&first).await;
    let password = banner_password(&log);
    assert!(log.contains("New demo secrets written to"), "{log}");
    let file = data.path().join("demo-secrets.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the secrets file is readable by others"
        );
    }
    let response = post(&first, "/demo/token", &[], &json!({"name": "alice"})).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let token = response.json()["token"].as_str().unwrap().to_owned();
    let response = post(
        &first,
        "/admin/api/login",
        &[],
        &json!({"password": password}),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let session = response.json()["token"].as_str().unwrap().to_owned();
    drop(first);

    let second = Server::start_args(&args, tempfile::tempdir().unwrap()).await;
    let stderr = log_with_banner(&second).await;
    assert_eq!(banner_password(&stderr), password, "{stderr}");
    assert!(!stderr.contains("New demo secrets written to"), "{stderr}");
    // The chat user's token and the admin's session from before the restart still work.
    let mut ws = second.ws().await;
    let reply = ws.connect(&token).await;
    assert!(reply.get("connect").is_some(), "old token refused: {reply}");
    let authorization = format!("token {session}");
    let stats = http(
        second.port,
        "GET",
        "/admin/api/stats",
        &[("Authorization", &authorization)],
        None,
    )
    .await;
    assert_eq!(
        stats.status,
        200,
        "old admin session refused: {}",
        stats.text()
    );
}

#[tokio::test]
async fn genconfig_config_with_demo_serves_the_admin_ui() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    let output = common::run_cli(&["genconfig", path.to_str().unwrap()], dir.path()).await;
    assert!(output.status.success(), "{output:?}");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        config["admin"]["enabled"], false,
        "genconfig writes the admin off"
    );
    common::merge(
        &mut config,
        json!({"demo": true, "http_server": {"address": "127.0.0.1", "port": 0},
               "data_dir": dir.path().join("data")}),
    );
    let password = config["admin"]["password"].as_str().unwrap().to_owned();
    let server = Server::start_exact(config).await;
    assert_eq!(server.get("/admin/").await.status, 200);
    let response = post(
        &server,
        "/admin/api/login",
        &[],
        &json!({"password": password}),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.text());
    // The banner says where the password is, without printing the config's secret.
    let stderr = log_with_banner(&server).await;
    assert!(stderr.contains("password: admin.password in "), "{stderr}");
    assert!(!stderr.contains(&password), "{stderr}");
    // The config has every secret: no demo secrets file is made.
    assert!(!dir.path().join("data").join("demo-secrets.json").exists());
}

#[tokio::test]
async fn admin_needs_the_password() {
    let server = Server::start(admin_config()).await;
    let page = server.get("/admin/").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(server.get("/admin").await.status, 308);
    // Demo is off: no chat, no token endpoint.
    assert_eq!(server.get("/").await.status, 404);

    let settings = server.get("/admin/api/settings").await.json();
    assert_eq!(settings["insecure"], false);

    // No session, a bad session, a wrong password: 401.
    let response = server.get("/admin/api/stats").await;
    assert_eq!(response.status, 401, "{}", response.text());
    let response = http(
        server.port,
        "GET",
        "/admin/api/users",
        &[("Authorization", "token not.a.jwt")],
        None,
    )
    .await;
    assert_eq!(response.status, 401);
    let response = post(
        &server,
        "/admin/api/publish",
        &[],
        &json!({"channel": "news", "data": {}}),
    )
    .await;
    assert_eq!(response.status, 401);
    let response = post(
        &server,
        "/admin/api/login",
        &[],
        &json!({"password": "wrong"}),
    )
    .await;
    assert_eq!(response.status, 401);
    assert!(response.json()["error"]["message"].is_string());
    let response = post(&server, "/admin/api/login", &[], &json!({})).await;
    assert_eq!(response.status, 401);
    let response = http(server.port, "POST", "/admin/api/login", &[], Some(b"[")).await;
    assert_eq!(response.status, 400);

    // The right password: a session that opens the other endpoints.
    let session = login(&server).await;
    let auth = format!("token {session}");
    let headers = [("Authorization", auth.as_str())];
    let mut ws = server.client("alice").await;
    ws.subscribe_ok("news").await;

    let stats = http(server.port, "GET", "/admin/api/stats", &headers, None).await;
    assert_eq!(stats.status, 200, "{}", stats.text());
    let stats = stats.json();
    assert_eq!(stats["nodes"][0]["num_clients"], 1);
    assert!(stats["counters"]["messages"].is_u64());

    let users = http(server.port, "GET", "/admin/api/users", &headers, None)
        .await
        .json();
    assert_eq!(users["users"][0]["user"], "alice");
    assert_eq!(users["users"][0]["clients"][0]["channels"], json!(["news"]));

    let channels = post(&server, "/admin/api/channels", &headers, &json!({}))
        .await
        .json();
    assert_eq!(channels["result"]["channels"]["news"]["num_clients"], 1);

    // Publish through the admin: alice gets it.
    let published = post(
        &server,
        "/admin/api/publish",
        &headers,
        &json!({"channel": "news", "data": {"text": "from admin"}}),
    )
    .await;
    assert_eq!(published.status, 200, "{}", published.text());
    assert!(published.json().get("result").is_some());
    let push = ws.next_push().await;
    assert_eq!(push["push"]["pub"]["data"]["text"], "from admin", "{push}");

    // Command errors come back as API errors; bad bodies as 400; unknown methods as 404.
    let error = post(
        &server,
        "/admin/api/publish",
        &headers,
        &json!({"channel": "nope:x", "data": {}}),
    )
    .await;
    assert_eq!(error.status, 200);
    assert_eq!(error.json()["error"]["code"], 102);
    let response = post(
        &server,
        "/admin/api/publish",
        &headers,
        &json!({"channel": 5}),
    )
    .await;
    assert_eq!(response.status, 400);
    let response = post(&server, "/admin/api/rpc", &headers, &json!({})).await;
    assert_eq!(response.status, 404);

    // Disconnect a user.
    let response = post(
        &server,
        "/admin/api/disconnect",
        &headers,
        &json!({"user": "alice"}),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.text());
    ws.expect_close().await;
}

#[tokio::test]
async fn admin_insecure_needs_no_login_and_admin_prefix_moves_it() {
    let server = Server::start(
        json!({"admin": {"enabled": true, "insecure": true, "handler_prefix": "/ops"}}),
    )
    .await;
    assert_eq!(server.get("/ops/").await.status, 200);
    assert_eq!(server.get("/admin/").await.status, 404);
    assert_eq!(server.get("/ops/api/stats").await.status, 200);
    assert_eq!(
        server.get("/ops/api/settings").await.json()["insecure"],
        true
    );
}
