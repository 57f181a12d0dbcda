//! JWT authentication against the real server: every algorithm with keys generated here, PEM
//! public keys, a JWKS served by a local HTTP server (with key rotation and an endpoint that is
//! down, or slow while shutdown starts), `aud`/`iss`, and the tokens that must be refused (expired → error 109; not yet valid →
//! 109; forged, `alg: none`, key confusion, wrong audience/issuer → close 3500).
//!
//! ES512 is not tested as accepted: the JWT library (jsonwebtoken 10) has no P-521, so Herald
//! refuses ES512 tokens (tested) and skips P-521 JWKS keys.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use common::*;
use http_body_util::Full;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Keys, generated once per test run
// ---------------------------------------------------------------------------------------------

/// A key pair made by this test: how to sign, the public key as PEM, and as a JWK (no `kid`).
struct TestKey {
    signing: EncodingKey,
    public_pem: String,
    jwk: Value,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn rsa_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(new_rsa_key)
}

/// A second RSA key, for rotation.
fn rsa_key_2() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(new_rsa_key)
}

fn new_rsa_key() -> TestKey {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    use rsa::traits::PublicKeyParts;
    let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("RSA key");
    let public = private.to_public_key();
    let private_pem = private.to_pkcs8_pem(LineEnding::LF).unwrap();
    TestKey {
        signing: EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap(),
        public_pem: public.to_public_key_pem(LineEnding::LF).unwrap(),
        jwk: json!({"kty": "RSA", "use": "sig",
                    "n": b64(&public.n().to_bytes_be()), "e": b64(&public.e().to_bytes_be())}),
    }
}

/// An EC test key of curve crate `$curve` (named `$name` in JWKs), made once per test run.
macro_rules! ec_key {
    ($fn_name:ident, $curve:ident, $name:literal) => {
        fn $fn_name() -> &'static TestKey {
            static KEY: OnceLock<TestKey> = OnceLock::new();
            KEY.get_or_init(|| {
                use $curve::elliptic_curve::sec1::ToEncodedPoint;
                use $curve::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
                let secret = $curve::SecretKey::random(&mut rsa::rand_core::OsRng);
                let public = secret.public_key();
                let point = public.to_encoded_point(false);
                TestKey {
                    signing: EncodingKey::from_ec_pem(
                        secret.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
                    )
                    .unwrap(),
                    public_pem: public.to_public_key_pem(LineEnding::LF).unwrap(),
                    jwk: json!({"kty": "EC", "crv": $name,
                                "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())}),
                }
            })
        }
    };
}

ec_key!(p256_key, p256, "P-256");
ec_key!(p384_key, p384, "P-384");

fn ed25519_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let seed: [u8; 32] = rand::random();
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        let der = signing.to_pkcs8_der().unwrap();
        TestKey {
            signing: EncodingKey::from_ed_der(der.as_bytes()),
            public_pem: String::new(),
            jwk: json!({"kty": "OKP", "crv": "Ed25519",
                        "x": b64(signing.verifying_key().as_bytes())}),
        }
    })
}

/// `key`'s JWK with `kid` (and `alg` when given).
fn jwk(key: &TestKey, kid: &str, alg: Option<&str>) -> Value {
    let mut jwk = key.jwk.clone();
    jwk["kid"] = json!(kid);
    if let Some(alg) = alg {
        jwk["alg"] = json!(alg);
    }
    jwk
}

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).expect("sign")
}

/// Claims for `user`, valid for ten minutes.
fn claims(user: &str) -> Value {
    json!({"sub": user, "exp": unix_now() + 600})
}

fn hmac(alg: Algorithm, secret: &str, claims: &Value) -> String {
    sign(
        alg,
        None,
        &EncodingKey::from_secret(secret.as_bytes()),
        claims,
    )
}

/// What a connect with a token came to.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// Connected (the reply's `connect` result).
    Connected,
    /// Answered with this error code.
    Error(u64),
    /// Closed with this code.
    Closed(u16),
}

async fn connect(server: &Server, token: &str) -> Outcome {
    let mut ws = server.ws().await;
    ws.send(&json!({"id": 1, "connect": {"token": token}}))
        .await;
    match ws.next_frame().await {
        Frame::Text(text) => {
            let reply = &split_values(&text)[0];
            if reply.get("connect").is_some() {
                Outcome::Connected
            } else if let Some(code) = reply["error"]["code"].as_u64() {
                Outcome::Error(code)
            } else {
                panic!("unexpected reply {reply}")
            }
        }
        Frame::Close(code, _) => Outcome::Closed(code),
        Frame::Ended(why) => panic!("connection ended without a close frame: {why}"),
    }
}

async fn assert_connects(server: &Server, token: &str, what: &str) {
    let outcome = connect(server, token).await;
    assert_eq!(
        outcome,
        Outcome::Connected,
        "{what}; server log:\n{}",
        server.stderr()
    );
}

async fn assert_closed_3500(server: &Server, token: &str, what: &str) {
    let outcome = connect(server, token).await;
    assert_eq!(outcome, Outcome::Closed(3500), "{what}");
}

/// A server whose only key is `token` (merged into `client.token`, HMAC secret removed).
async fn server_with(token: Value) -> Server {
    let mut config = base_config();
    config["client"]["token"] = token;
    Server::start_exact(config).await
}

// ---------------------------------------------------------------------------------------------
// A local JWKS endpoint
// ---------------------------------------------------------------------------------------------

/// A JWKS served over HTTP on 127.0.0.1: its document can be swapped, made to fail, or made
/// to answer late.
struct JwksServer {
    addr: SocketAddr,
    /// `Some(body)` → 200 with it; `None` → 503.
    body: Arc<Mutex<Option<Value>>>,
    /// How long each answer waits.
    delay: Arc<Mutex<Duration>>,
    fetches: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    async fn start(keys: Vec<Value>) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let body = Arc::new(Mutex::new(Some(json!({"keys": keys}))));
        let fetches = Arc::new(AtomicUsize::new(0));
        let delay = Arc::new(Mutex::new(Duration::ZERO));
        let (shared, count, wait) = (body.clone(), fetches.clone(), delay.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (shared, count, wait) = (shared.clone(), count.clone(), wait.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_request| {
                        count.fetch_add(1, Ordering::SeqCst);
                        let body = shared.lock().unwrap().clone();
                        let wait = *wait.lock().unwrap();
                        async move {
                            tokio::time::sleep(wait).await;
                            let response = match body {
                                Some(doc) => hyper::Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(doc.to_string()))),
                                None => hyper::Response::builder()
                                    .status(503)
                                    .body(Full::new(Bytes::from_static(b"down"))),
                            };
                            Ok::<_, Infallible>(response.unwrap())
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        JwksServer {
            addr,
            body,
            delay,
            fetches,
            task,
        }
    }

    /// Makes every answer from now on wait `delay`.
    fn answer_after(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    fn url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }

    fn serve(&self, keys: Vec<Value>) {
        *self.body.lock().unwrap() = Some(json!({"keys": keys}));
    }

    fn go_down(&self) {
        *self.body.lock().unwrap() = None;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until the endpoint has been fetched at least `n` times.
    async fn wait_fetches(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + STEP;
        while self.fetches() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "JWKS fetched {} times, expected {n}",
                self.fetches()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits (bounded) until the server log contains `needle`.
async fn wait_log(server: &Server, needle: &str) {
    let deadline = tokio::time::Instant::now() + STEP;
    while !server.stderr().contains(needle) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {needle:?} in the server log:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Algorithms with configured keys
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn hs256_hs384_hs512_with_the_hmac_secret() {
    let server = Server::start(json!({})).await;
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        assert_connects(
            &server,
            &hmac(alg, SECRET, &claims("u")),
            &format!("{alg:?}"),
        )
        .await;
        let forged = hmac(alg, "another-secret", &claims("u"));
        assert_closed_3500(&server, &forged, &format!("{alg:?} with a wrong secret")).await;
    }
}

#[tokio::test]
async fn rs256_rs384_rs512_with_an_rsa_public_key_pem() {
    let key = rsa_key();
    let server = server_with(json!({"rsa_public_key": key.public_pem})).await;
    for alg in [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512] {
        let token = sign(alg, None, &key.signing, &claims("u"));
        assert_connects(&server, &token, &format!("{alg:?}")).await;
    }
    // Signed by another RSA key.
    let other = sign(Algorithm::RS256, None, &rsa_key_2().signing, &claims("u"));
    assert_closed_3500(&server, &other, "RS256 by another key").await;
    // An HS256 token: no HMAC secret is configured.
    assert_closed_3500(
        &server,
        &hmac(Algorithm::HS256, SECRET, &claims("u")),
        "HS256",
    )
    .await;
}

#[tokio::test]
async fn es256_and_es384_with_ecdsa_public_key_pems() {
    for (key, alg, other) in [
        (p256_key(), Algorithm::ES256, p384_key()),
        (p384_key(), Algorithm::ES384, p256_key()),
    ] {
        let server = server_with(json!({"ecdsa_public_key": key.public_pem})).await;
        assert_connects(&server, &sign(alg, None, &key.signing, &claims("u")), "ES").await;
        // The other curve's key (and so the other algorithm) does not verify.
        let other_alg = if alg == Algorithm::ES256 {
            Algorithm::ES384
        } else {
            Algorithm::ES256
        };
        let token = sign(other_alg, None, &other.signing, &claims("u"));
        assert_closed_3500(&server, &token, "ES by the other curve's key").await;
        // An RS256 token: no RSA key configured.
        let token = sign(Algorithm::RS256, None, &rsa_key().signing, &claims("u"));
        assert_closed_3500(&server, &token, "RS256 with only an ECDSA key").await;
    }
}

#[tokio::test]
async fn es512_is_refused_with_3500() {
    let key = p256_key();
    let server = server_with(json!({"ecdsa_public_key": key.public_pem})).await;
    // jsonwebtoken cannot sign ES512: relabel a genuine ES256 token.
    let token = sign(Algorithm::ES256, None, &key.signing, &claims("u"));
    let parts: Vec<&str> = token.split('.').collect();
    let relabeled = format!(
        "{}.{}.{}",
        b64(br#"{"alg":"ES512","typ":"JWT"}"#),
        parts[1],
        parts[2]
    );
    assert_closed_3500(&server, &relabeled, "ES512").await;
}

// ---------------------------------------------------------------------------------------------
// Refused tokens
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn alg_none_is_refused_with_3500() {
    let key = rsa_key();
    let server = server_with(json!({
        "hmac_secret_key": SECRET, "rsa_public_key": key.public_pem,
    }))
    .await;
    let payload = b64(claims("admin").to_string().as_bytes());
    for alg in ["none", "None", "NONE"] {
        let header = b64(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes());
        assert_closed_3500(&server, &format!("{header}.{payload}."), alg).await;
        assert_closed_3500(&server, &format!("{header}.{payload}.c2ln"), alg).await;
    }
}

#[tokio::test]
async fn rsa_public_key_as_hmac_secret_is_refused_with_3500() {
    let key = rsa_key();
    // The attack: sign HS256 with the (public!) RSA key PEM as the HMAC secret.
    let forged: Vec<String> = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512]
        .into_iter()
        .map(|alg| hmac(alg, &key.public_pem, &claims("admin")))
        .collect();
    // Only the RSA key configured.
    let server = server_with(json!({"rsa_public_key": key.public_pem})).await;
    for token in &forged {
        assert_closed_3500(&server, token, "HS* with the RSA PEM, RSA only").await;
    }
    // HMAC and RSA both configured: HS* tokens are checked with the HMAC secret only.
    let server = server_with(json!({
        "hmac_secret_key": SECRET, "rsa_public_key": key.public_pem,
    }))
    .await;
    for token in &forged {
        assert_closed_3500(&server, token, "HS* with the RSA PEM, HMAC and RSA").await;
    }
    // Both genuine kinds still work on that server.
    assert_connects(
        &server,
        &hmac(Algorithm::HS256, SECRET, &claims("h")),
        "HS256",
    )
    .await;
    let rs = sign(Algorithm::RS256, None, &key.signing, &claims("r"));
    assert_connects(&server, &rs, "RS256").await;
    // An RS256 signature relabelled HS256.
    let parts: Vec<&str> = rs.split('.').collect();
    let relabeled = format!("{}.{}.{}", b64(br#"{"alg":"HS256"}"#), parts[1], parts[2]);
    assert_closed_3500(&server, &relabeled, "RS256 relabelled HS256").await;
}

#[tokio::test]
async fn expired_token_answers_109_not_a_close() {
    let key = rsa_key();
    let server = server_with(json!({"rsa_public_key": key.public_pem})).await;
    let expired = sign(
        Algorithm::RS256,
        None,
        &key.signing,
        &json!({"sub": "u", "exp": unix_now() - 30}),
    );
    let mut ws = server.ws().await;
    let reply = ws.connect(&expired).await;
    assert_error(&reply, 109);
    assert_eq!(reply["error"]["message"], "token expired", "{reply}");
}

#[tokio::test]
async fn not_yet_valid_token_is_refused() {
    let key = rsa_key();
    let server = server_with(json!({"rsa_public_key": key.public_pem})).await;
    let early = sign(
        Algorithm::RS256,
        None,
        &key.signing,
        &json!({"sub": "u", "nbf": unix_now() + 300, "exp": unix_now() + 600}),
    );
    // Centrifugo treats a future nbf like an expired token: error 109, the SDK gets a new one.
    assert_eq!(connect(&server, &early).await, Outcome::Error(109));
    let ready = sign(
        Algorithm::RS256,
        None,
        &key.signing,
        &json!({"sub": "u", "nbf": unix_now() - 5, "exp": unix_now() + 600}),
    );
    assert_connects(&server, &ready, "nbf in the past").await;
}

#[tokio::test]
async fn wrong_audience_or_issuer_closes_3500() {
    let server = Server::start(json!({"client": {"token": {
        "audience": "herald", "issuer": "https://id.example.com",
    }}}))
    .await;
    let token = |aud: Value, iss: Value| {
        let mut c = claims("u");
        if !aud.is_null() {
            c["aud"] = aud;
        }
        if !iss.is_null() {
            c["iss"] = iss;
        }
        hmac(Algorithm::HS256, SECRET, &c)
    };
    let iss = json!("https://id.example.com");
    assert_connects(
        &server,
        &token(json!("herald"), iss.clone()),
        "right aud/iss",
    )
    .await;
    assert_connects(
        &server,
        &token(json!(["x", "herald"]), iss.clone()),
        "aud list",
    )
    .await;
    for (aud, iss, what) in [
        (json!("other"), iss.clone(), "wrong aud"),
        (Value::Null, iss.clone(), "no aud"),
        (
            json!("herald"),
            json!("https://evil.example.com"),
            "wrong iss",
        ),
        (json!("herald"), Value::Null, "no iss"),
    ] {
        assert_closed_3500(&server, &token(aud, iss), what).await;
    }
}

#[tokio::test]
async fn audience_and_issuer_regexes() {
    let server = Server::start(json!({"client": {"token": {
        "audience_regex": "^herald-(eu|us)$", "issuer_regex": "^https://[a-z]+\\.example\\.com/$",
    }}}))
    .await;
    let token = |aud: &str, iss: &str| {
        let mut c = claims("u");
        c["aud"] = json!(aud);
        c["iss"] = json!(iss);
        hmac(Algorithm::HS256, SECRET, &c)
    };
    assert_connects(
        &server,
        &token("herald-eu", "https://acme.example.com/"),
        "match",
    )
    .await;
    assert_closed_3500(
        &server,
        &token("herald-asia", "https://acme.example.com/"),
        "aud",
    )
    .await;
    assert_closed_3500(
        &server,
        &token("herald-us", "https://acme.example.org/"),
        "iss",
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// JWKS
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn jwks_keys_of_every_type_verify_by_kid() {
    let jwks = JwksServer::start(vec![
        jwk(rsa_key(), "rsa-1", None),
        jwk(p256_key(), "ec-256", Some("ES256")),
        jwk(p384_key(), "ec-384", None),
        jwk(ed25519_key(), "ed-1", Some("EdDSA")),
    ])
    .await;
    let server = server_with(json!({"jwks_public_endpoint": jwks.url()})).await;
    for alg in [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512] {
        let token = sign(alg, Some("rsa-1"), &rsa_key().signing, &claims("u"));
        assert_connects(&server, &token, &format!("{alg:?}")).await;
    }
    let cases = [
        (Algorithm::ES256, "ec-256", p256_key()),
        (Algorithm::ES384, "ec-384", p384_key()),
        (Algorithm::EdDSA, "ed-1", ed25519_key()),
    ];
    for (alg, kid, key) in cases {
        let token = sign(alg, Some(kid), &key.signing, &claims("u"));
        assert_connects(&server, &token, &format!("{alg:?}")).await;
    }
    // A kid naming a key of another type, or a key signed by someone else under a real kid.
    let token = sign(
        Algorithm::ES256,
        Some("rsa-1"),
        &p256_key().signing,
        &claims("u"),
    );
    assert_closed_3500(&server, &token, "ES256 token naming an RSA kid").await;
    let token = sign(
        Algorithm::RS256,
        Some("rsa-1"),
        &rsa_key_2().signing,
        &claims("u"),
    );
    assert_closed_3500(&server, &token, "RS256 by another key under a known kid").await;
    // HS256 with the JWK's own modulus as a secret: no HMAC secret configured.
    let token = hmac(Algorithm::HS256, &rsa_key().public_pem, &claims("u"));
    assert_closed_3500(&server, &token, "HS256 against a JWKS").await;
    // No kid: a JWKS token must name its key.
    let token = sign(Algorithm::RS256, None, &rsa_key().signing, &claims("u"));
    assert_closed_3500(&server, &token, "RS256 without kid").await;
    // Expired with a JWKS key: the expired path.
    let expired = json!({"sub": "u", "exp": unix_now() - 10});
    let token = sign(
        Algorithm::RS256,
        Some("rsa-1"),
        &rsa_key().signing,
        &expired,
    );
    assert_eq!(connect(&server, &token).await, Outcome::Error(109));
}

#[tokio::test]
async fn jwks_key_rotation() {
    let (a, b) = (rsa_key(), rsa_key_2());
    let jwks = JwksServer::start(vec![jwk(a, "key-a", Some("RS256"))]).await;
    let server = server_with(json!({"jwks_public_endpoint": jwks.url()})).await;
    // The set is fetched at startup.
    jwks.wait_fetches(1).await;
    wait_log(&server, "keys key-a").await;
    let token_a = sign(Algorithm::RS256, Some("key-a"), &a.signing, &claims("u"));
    assert_connects(&server, &token_a, "kid A").await;

    // The provider rotates: only key B is published now.
    jwks.serve(vec![jwk(b, "key-b", Some("RS256"))]);
    let before = jwks.fetches();
    let token_b = sign(Algorithm::RS256, Some("key-b"), &b.signing, &claims("u"));
    assert_connects(&server, &token_b, "kid B after the unknown-kid refetch").await;
    assert_eq!(
        jwks.fetches(),
        before + 1,
        "one refetch for the unknown kid"
    );
    // Key A is gone from the set, so its tokens are refused (no new fetch: rate-limited).
    assert_closed_3500(&server, &token_a, "kid A after rotation").await;
    // Made-up kids do not make Herald hammer the endpoint.
    for i in 0..5 {
        let token = sign(
            Algorithm::RS256,
            Some(&format!("made-up-{i}")),
            &b.signing,
            &claims("u"),
        );
        assert_closed_3500(&server, &token, "unknown kid").await;
    }
    assert_eq!(jwks.fetches(), before + 1, "refetches are rate-limited");
    assert_connects(&server, &token_b, "kid B still").await;
}

#[tokio::test]
async fn jwks_endpoint_down_at_startup_then_up_then_down() {
    let key = p256_key();
    let jwks = JwksServer::start(vec![]).await;
    jwks.go_down();
    let server = server_with(json!({"jwks_public_endpoint": jwks.url()})).await;
    // The server runs and says why JWKS tokens will fail.
    wait_log(&server, "cannot fetch the JWKS").await;
    assert!(server.stderr().contains("503"), "{}", server.stderr());
    assert!(server.stderr().contains(&jwks.url()), "{}", server.stderr());

    // The endpoint comes back: the first token with its kid makes Herald fetch the set.
    jwks.serve(vec![jwk(key, "ec", None)]);
    let token = sign(Algorithm::ES256, Some("ec"), &key.signing, &claims("u"));
    assert_connects(&server, &token, "after the endpoint came up").await;

    // Down again: the cached key keeps working.
    jwks.go_down();
    assert_connects(&server, &token, "cached key while the endpoint is down").await;
}

/// A client whose `connect` is still waiting for the JWKS when shutdown starts is not in the
/// hub when the server closes the clients there: it learns of the shutdown from the alarm
/// clock, which rings every client when shutdown starts, once its connect is done, and gets
/// its reply and then the 3001 close frame like everyone else.
#[tokio::test]
async fn a_connect_waiting_for_the_jwks_when_shutdown_starts_still_gets_3001() {
    let key = rsa_key();
    let jwks = JwksServer::start(vec![]).await;
    let mut server = server_with(json!({"jwks_public_endpoint": jwks.url()})).await;
    jwks.wait_fetches(1).await;
    // The token's kid is not in the set fetched at startup: its connect refetches, and the
    // endpoint takes its time to answer.
    jwks.serve(vec![jwk(key, "late", Some("RS256"))]);
    jwks.answer_after(Duration::from_millis(1500));
    let token = sign(Algorithm::RS256, Some("late"), &key.signing, &claims("u"));
    let mut ws = server.ws().await;
    ws.send(&json!({"id": 1, "connect": {"token": token}}))
        .await;
    jwks.wait_fetches(2).await;
    // SAFETY: kill(2) on the pid of our own child process.
    unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGTERM) };
    match ws.next_frame().await {
        Frame::Text(text) => assert!(text.contains(r#""connect""#), "{text}"),
        other => panic!("expected the connect reply, got {other:?}"),
    }
    assert_eq!(ws.expect_close().await, (3001, "shutdown".into()));
    server
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("herald still running 10 s after SIGTERM");
}

#[tokio::test]
async fn jwks_endpoint_never_reachable_refuses_tokens_with_3500() {
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/jwks");
    let server = server_with(json!({"jwks_public_endpoint": url})).await;
    wait_log(&server, "cannot fetch the JWKS").await;
    let token = sign(
        Algorithm::RS256,
        Some("k"),
        &rsa_key().signing,
        &claims("u"),
    );
    assert_closed_3500(&server, &token, "JWKS unreachable").await;
}

#[tokio::test]
async fn jwks_together_with_hmac_and_aud_iss() {
    let jwks = JwksServer::start(vec![jwk(rsa_key(), "r", None)]).await;
    let server = server_with(json!({
        "hmac_secret_key": SECRET, "jwks_public_endpoint": jwks.url(),
        "audience": "herald", "issuer": "idp",
    }))
    .await;
    let mut good = claims("u");
    good["aud"] = json!("herald");
    good["iss"] = json!("idp");
    assert_connects(&server, &hmac(Algorithm::HS256, SECRET, &good), "HS256").await;
    let rs = |claims: &Value| sign(Algorithm::RS256, Some("r"), &rsa_key().signing, claims);
    assert_connects(&server, &rs(&good), "RS256 from the JWKS").await;
    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = json!("someone-else");
    assert_closed_3500(&server, &rs(&wrong_aud), "JWKS token, wrong aud").await;
    let mut wrong_iss = good.clone();
    wrong_iss["iss"] = json!("other-idp");
    assert_closed_3500(&server, &rs(&wrong_iss), "JWKS token, wrong iss").await;
}

#[tokio::test]
async fn subscription_tokens_from_their_own_jwks() {
    let jwks = JwksServer::start(vec![jwk(p384_key(), "sub-key", Some("ES384"))]).await;
    let server = Server::start(json!({"client": {"subscription_token": {
        "enabled": true, "jwks_public_endpoint": jwks.url(),
    }}}))
    .await;
    let mut ws = server.client("alice").await;
    let sub_token = |channel: &str, user: &str| {
        sign(
            Algorithm::ES384,
            Some("sub-key"),
            &p384_key().signing,
            &json!({"sub": user, "channel": channel, "exp": unix_now() + 600}),
        )
    };
    let reply = ws
        .call(json!({"subscribe": {"channel": "news", "token": sub_token("news", "alice")}}))
        .await;
    assert!(reply.get("subscribe").is_some(), "{reply}");
    // An HS256 subscription token signed with the connection secret: subscription tokens use
    // their own settings, which have no HMAC secret.
    let hs = hmac(
        Algorithm::HS256,
        SECRET,
        &json!({"sub": "alice", "channel": "other"}),
    );
    // Not a valid subscription token: the subscribe fails with 103, the connection stays.
    assert_error(
        &ws.call(json!({"subscribe": {"channel": "other", "token": hs}}))
            .await,
        103,
    );
    ws.assert_alive().await;
    // A JWKS-signed token for another channel.
    ws.send(&json!({"id": 10, "subscribe": {"channel": "b", "token": sub_token("a", "alice")}}))
        .await;
    assert_eq!(ws.expect_close().await.0, 3500);
}
