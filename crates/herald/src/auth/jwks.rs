//! Verification keys from a JWKS endpoint (`client.token.jwks_public_endpoint`, RFC 7517).
//!
//! The key set is fetched in the background when the node starts and then every
//! [`REFRESH_INTERVAL`]; each key is cached under its `kid`. A token naming a `kid` that is not
//! cached makes Herald fetch the set again at once (that is how an identity provider's key
//! rotation reaches Herald), at most once per [`MIN_REFETCH_INTERVAL`] so that tokens with made-up
//! `kid`s cannot turn Herald into a load generator against the endpoint.
//!
//! When the endpoint is down the keys already cached keep working; a failed fetch is logged and
//! retried. A fetch that succeeds replaces the whole set, so a key the provider has withdrawn
//! stops working at the next refresh.
//!
//! Usable keys: `RSA` (`n`, `e`) for RS256/384/512, `EC` with `crv` `P-256` (ES256) or `P-384`
//! (ES384), and `OKP` with `crv` `Ed25519` (EdDSA). A key's `alg`, when present, restricts it to
//! that algorithm. Keys with `use` other than `sig`, symmetric (`oct`) keys, `P-521` keys (the JWT
//! library has no ES512) and keys without a `kid` are skipped.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::sync;

/// How often the key set is fetched again while nothing asks for it sooner.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(3600);
/// Least time between two fetches caused by tokens naming an unknown `kid`.
pub const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// Wait before the background task tries again after a failed fetch.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);
/// Bound on one fetch: connecting, the answer and its whole body.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest key set accepted (real ones are a few KiB).
const MAX_BODY: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

/// The kind of a usable JWK, which decides the algorithms it may verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// `kty: RSA`: RS256, RS384, RS512.
    Rsa,
    /// `kty: EC`, `crv: P-256`: ES256.
    P256,
    /// `kty: EC`, `crv: P-384`: ES384.
    P384,
    /// `kty: OKP`, `crv: Ed25519`: EdDSA.
    Ed25519,
}

impl KeyKind {
    fn accepts(self, alg: Algorithm) -> bool {
        matches!(
            (self, alg),
            (
                KeyKind::Rsa,
                Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512
            ) | (KeyKind::P256, Algorithm::ES256)
                | (KeyKind::P384, Algorithm::ES384)
                | (KeyKind::Ed25519, Algorithm::EdDSA)
        )
    }
}

/// One verification key of a JWKS.
#[derive(Clone)]
pub struct Jwk {
    /// What kind of key it is.
    pub kind: KeyKind,
    /// The only algorithm it may verify, when the JWK names one (`alg`).
    pub alg: Option<Algorithm>,
    /// The key itself.
    pub key: DecodingKey,
}

impl fmt::Debug for Jwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwk")
            .field("kind", &self.kind)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl Jwk {
    /// Whether this key may verify a token signed with `alg`.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.kind.accepts(alg) && self.alg.is_none_or(|a| a == alg)
    }
}

/// Why a JWKS answer is not a key set at all (a single unusable key is a [`KeyError`]).
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// Not JSON, or not an object.
    #[error("the answer is not a JSON object ({0})")]
    NotJson(#[source] serde_json::Error),
    /// An object without `keys`: likely the wrong URL.
    #[error("the answer has no \"keys\" array: is this a JWKS (RFC 7517) URL?")]
    NoKeys,
}

/// Why one key of a JWKS is skipped (logged; the other keys still work).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// `use` is not `sig` (an encryption key).
    #[error("use \"{0}\" is not for signatures")]
    NotForSignatures(String),
    /// A member the key type needs is absent.
    #[error("missing \"{0}\"")]
    Missing(&'static str),
    /// A member is not base64url.
    #[error("\"{0}\" is not base64url")]
    NotBase64(&'static str),
    /// An RSA modulus below 1024 bits.
    #[error("RSA modulus of {bits} bits is too short (at least 1024)")]
    RsaTooShort {
        /// The modulus's size.
        bits: usize,
    },
    /// An RSA key with an empty exponent.
    #[error("empty RSA exponent")]
    RsaEmptyExponent,
    /// ES512's curve.
    #[error("curve P-521 (ES512) is not supported by Herald")]
    P521,
    /// An EC curve other than P-256/P-384.
    #[error("unknown curve \"{0}\"")]
    UnknownCurve(String),
    /// EC coordinates of the wrong size for the curve.
    #[error("\"x\" and \"y\" must be {size} bytes each for {curve}")]
    EcPointSize {
        /// Bytes per coordinate the curve needs.
        size: usize,
        /// The curve.
        curve: String,
    },
    /// An OKP curve other than Ed25519.
    #[error("unsupported OKP curve \"{0}\"")]
    UnsupportedOkpCurve(String),
    /// An Ed25519 key that is not 32 bytes.
    #[error("\"x\" must be 32 bytes for Ed25519")]
    Ed25519Size,
    /// A shared secret: never taken from a URL.
    #[error("symmetric (oct) keys are never taken from a JWKS")]
    Symmetric,
    /// No `kty`.
    #[error("missing \"kty\"")]
    MissingKeyType,
    /// A `kty` Herald does not know.
    #[error("unknown key type \"{0}\"")]
    UnknownKeyType(String),
    /// An `alg` that the key type cannot verify.
    #[error("alg \"{alg}\" is not usable with a {kty} key here")]
    UnusableAlg {
        /// The key's `alg`.
        alg: String,
        /// The key's `kty`.
        kty: String,
    },
}

/// Why a `jwks_public_endpoint` value is refused.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// A Centrifugo template (`{{tenant}}`).
    #[error(
        "templated (per-tenant) JWKS endpoints are not supported by Herald; give one fixed URL"
    )]
    Templated,
    /// Not a URL at all.
    #[error("\"{endpoint}\" is not a URL ({source})")]
    NotAUrl {
        /// The value.
        endpoint: String,
        /// Why it does not parse.
        #[source]
        source: http::uri::InvalidUri,
    },
    /// Neither `https://` nor `http://`.
    #[error("\"{0}\" must start with https:// (or http:// on a trusted network)")]
    Scheme(String),
    /// No host after the scheme.
    #[error("\"{0}\" has no host")]
    NoHost(String),
}

/// Why fetching the key set failed (logged; keys cached earlier still work).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No TLS client could be built.
    #[error("cannot set up TLS: {0}")]
    Tls(#[source] rustls::Error),
    /// The request could not be built.
    #[error("cannot make the request: {0}")]
    Request(#[source] http::Error),
    /// Connecting or exchanging failed: the error chain, with a hint for certificate problems.
    #[error("{0}")]
    Exchange(String),
    /// A redirect, which is not followed.
    #[error(
        "answered HTTP {status}, redirecting to {to}: redirects are not followed, set \
         jwks_public_endpoint to the final address"
    )]
    Redirect {
        /// The status.
        status: http::StatusCode,
        /// The `Location`.
        to: String,
    },
    /// Any other status than success.
    #[error("answered HTTP {0}")]
    Status(http::StatusCode),
    /// The body could not be read (or is larger than allowed).
    #[error("reading the answer: {0}")]
    Body(String),
    /// No complete answer in time.
    #[error("no complete answer within {}s", FETCH_TIMEOUT.as_secs())]
    Timeout,
    /// The answer is not a key set.
    #[error(transparent)]
    Document(#[from] DocumentError),
}

/// The usable keys of a JWKS document by `kid`, and what was skipped and why (for the log).
#[derive(Debug, Default)]
pub struct ParsedSet {
    /// Usable keys by `kid`.
    pub keys: HashMap<String, Arc<Jwk>>,
    /// One line per skipped key.
    pub skipped: Vec<String>,
}

/// The fields of one JWK that Herald reads (all optional here; checked in [`parse_key`]).
#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// Parses a JWKS document (`{"keys": [...]}`). A document that is not a JWKS at all is an error;
/// a key Herald cannot use is skipped (listed in [`ParsedSet::skipped`]) so that one exotic key
/// (an encryption key, a P-521 key) does not take the others down.
pub fn parse_jwks(body: &[u8]) -> Result<ParsedSet, DocumentError> {
    #[derive(Deserialize)]
    struct RawSet {
        keys: Option<Vec<serde_json::Value>>,
    }
    let raw: RawSet = serde_json::from_slice(body).map_err(DocumentError::NotJson)?;
    let Some(keys) = raw.keys else {
        return Err(DocumentError::NoKeys);
    };
    let mut set = ParsedSet::default();
    for (i, value) in keys.into_iter().enumerate() {
        let raw: RawJwk = match serde_json::from_value(value) {
            Ok(raw) => raw,
            Err(e) => {
                set.skipped.push(format!("keys[{i}]: not a JWK ({e})"));
                continue;
            }
        };
        let kid = raw.kid.clone().unwrap_or_default();
        let at = if kid.is_empty() {
            format!("keys[{i}]")
        } else {
            format!("keys[{i}] (kid \"{kid}\")")
        };
        match parse_key(raw) {
            Ok(_) if kid.is_empty() => set
                .skipped
                .push(format!("{at}: has no kid, so no token can name it")),
            Ok(key) => match set.keys.entry(kid) {
                Entry::Occupied(_) => set.skipped.push(format!(
                    "{at}: same kid as an earlier key; the first one is used"
                )),
                Entry::Vacant(slot) => {
                    slot.insert(Arc::new(key));
                }
            },
            Err(reason) => set.skipped.push(format!("{at}: {reason}")),
        }
    }
    Ok(set)
}

fn parse_key(raw: RawJwk) -> Result<Jwk, KeyError> {
    if let Some(use_) = raw.use_.as_deref().filter(|u| *u != "sig") {
        return Err(KeyError::NotForSignatures(use_.to_owned()));
    }
    let b64 = |name: &'static str, value: Option<&String>| -> Result<Vec<u8>, KeyError> {
        let value = value.ok_or(KeyError::Missing(name))?;
        URL_SAFE_NO_PAD
            .decode(value.trim_end_matches('='))
            .map_err(|_| KeyError::NotBase64(name))
    };
    let kty = raw.kty.as_deref().unwrap_or("");
    let (kind, key) = match kty {
        "RSA" => {
            let n = b64("n", raw.n.as_ref())?;
            let e = b64("e", raw.e.as_ref())?;
            if n.len() < 128 {
                return Err(KeyError::RsaTooShort { bits: n.len() * 8 });
            }
            if e.is_empty() {
                return Err(KeyError::RsaEmptyExponent);
            }
            (KeyKind::Rsa, DecodingKey::from_rsa_raw_components(&n, &e))
        }
        "EC" => {
            let (kind, size) = match raw.crv.as_deref() {
                Some("P-256") => (KeyKind::P256, 32),
                Some("P-384") => (KeyKind::P384, 48),
                Some("P-521") => {
                    return Err(KeyError::P521);
                }
                Some(other) => return Err(KeyError::UnknownCurve(other.to_owned())),
                None => return Err(KeyError::Missing("crv")),
            };
            let x = b64("x", raw.x.as_ref())?;
            let y = b64("y", raw.y.as_ref())?;
            if x.len() != size || y.len() != size {
                return Err(KeyError::EcPointSize {
                    size,
                    curve: raw.crv.clone().unwrap_or_default(),
                });
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (kind, DecodingKey::from_ec_der(&point))
        }
        "OKP" => {
            match raw.crv.as_deref() {
                Some("Ed25519") => {}
                Some(other) => return Err(KeyError::UnsupportedOkpCurve(other.to_owned())),
                None => return Err(KeyError::Missing("crv")),
            }
            let x = b64("x", raw.x.as_ref())?;
            if x.len() != 32 {
                return Err(KeyError::Ed25519Size);
            }
            (KeyKind::Ed25519, DecodingKey::from_ed_der(&x))
        }
        "oct" => return Err(KeyError::Symmetric),
        "" => return Err(KeyError::MissingKeyType),
        other => return Err(KeyError::UnknownKeyType(other.to_owned())),
    };
    let alg = match raw.alg.as_deref() {
        None | Some("") => None,
        Some(name) => {
            let alg = name
                .parse::<Algorithm>()
                .ok()
                .filter(|alg| kind.accepts(*alg))
                .ok_or_else(|| KeyError::UnusableAlg {
                    alg: name.to_owned(),
                    kty: kty.to_owned(),
                })?;
            Some(alg)
        }
    };
    Ok(Jwk { kind, alg, key })
}

// ---------------------------------------------------------------------------------------------
// Fetching and caching
// ---------------------------------------------------------------------------------------------

type HttpsClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

struct Cached {
    keys: HashMap<String, Arc<Jwk>>,
    /// Bumped by every successful fetch.
    generation: u64,
}

/// Times of the fetches made on demand, behind the fetch lock.
#[derive(Default)]
struct FetchState {
    last_on_demand: Option<Instant>,
}

/// The key set of one JWKS endpoint: fetched, cached by `kid`, refreshed.
pub struct Jwks {
    url: http::Uri,
    client: OnceLock<Result<HttpsClient, rustls::Error>>,
    cached: RwLock<Cached>,
    /// Serialises fetches (background and on demand) and holds the rate limit.
    fetch: tokio::sync::Mutex<FetchState>,
    refresh_interval: Duration,
    min_refetch_interval: Duration,
    /// Stops the background refresh when the last verifier using this set is dropped.
    stop: CancellationToken,
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwks").field("url", &self.url).finish()
    }
}

impl Drop for Jwks {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Why a `kid` has no key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// The set (fetched again, or too recently fetched to fetch again) has no such key.
    UnknownKid,
    /// The key set could not be fetched and has no such key.
    Unavailable(String),
}

impl Jwks {
    /// A key set for `endpoint`, checked but not fetched yet (see [`Jwks::spawn_refresh`]).
    pub fn new(endpoint: &str) -> Result<Jwks, EndpointError> {
        let url = check_endpoint(endpoint)?;
        Ok(Jwks {
            url,
            client: OnceLock::new(),
            cached: RwLock::new(Cached {
                keys: HashMap::new(),
                generation: 0,
            }),
            fetch: tokio::sync::Mutex::new(FetchState::default()),
            refresh_interval: REFRESH_INTERVAL,
            min_refetch_interval: MIN_REFETCH_INTERVAL,
            stop: CancellationToken::new(),
        })
    }

    /// The endpoint.
    pub fn url(&self) -> &http::Uri {
        &self.url
    }

    fn cached(&self, kid: &str) -> (Option<Arc<Jwk>>, u64) {
        // A poisoned lock only means a panic elsewhere while swapping the map; the data is whole.
        let cached = sync::read(&self.cached);
        (cached.keys.get(kid).cloned(), cached.generation)
    }

    /// The key named `kid`: from the cache, or after fetching the set again when `kid` is unknown
    /// (at most once per [`MIN_REFETCH_INTERVAL`]).
    pub async fn key(&self, kid: &str) -> Result<Arc<Jwk>, LookupError> {
        let (found, generation) = self.cached(kid);
        if let Some(key) = found {
            return Ok(key);
        }
        let mut state = self.fetch.lock().await;
        // Another task may have fetched while this one waited for the lock.
        let (found, now_generation) = self.cached(kid);
        if let Some(key) = found {
            return Ok(key);
        }
        if now_generation != generation {
            return Err(LookupError::UnknownKid);
        }
        let now = Instant::now();
        if state
            .last_on_demand
            .is_some_and(|last| now.duration_since(last) < self.min_refetch_interval)
        {
            tracing::debug!(kid, jwks = %self.url, "unknown kid; JWKS fetched too recently to fetch again");
            return Err(LookupError::UnknownKid);
        }
        state.last_on_demand = Some(now);
        match self.fetch_and_store().await {
            Ok(()) => self.cached(kid).0.ok_or(LookupError::UnknownKid),
            Err(e) => {
                tracing::warn!(
                    "cannot fetch the JWKS from {} (asked for unknown kid \"{kid}\"): {e}; \
                     keys cached earlier still work",
                    self.url
                );
                Err(LookupError::Unavailable(e.to_string()))
            }
        }
    }

    /// Fetches the set now (waiting for a fetch under way) and replaces the cache on success.
    pub async fn refresh(&self) -> Result<(), FetchError> {
        let _state = self.fetch.lock().await;
        self.fetch_and_store().await
    }

    /// Starts the background task that fetches the set now and every [`REFRESH_INTERVAL`] after
    /// (every 30 s while fetching fails). Needs a tokio runtime; without one nothing is started
    /// and keys are fetched when a token first asks for them.
    pub fn spawn_refresh(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(self);
        let stop = self.stop.clone();
        runtime.spawn(async move {
            let mut ok_before = true;
            loop {
                let Some(jwks) = weak.upgrade() else { return };
                let wait = match jwks.refresh().await {
                    Ok(()) => {
                        ok_before = true;
                        jwks.refresh_interval
                    }
                    Err(e) => {
                        if ok_before {
                            tracing::warn!(
                                "cannot fetch the JWKS from {}: {e}; tokens signed with keys not \
                                 cached yet are refused until a fetch succeeds (retrying every \
                                 {}s; check jwks_public_endpoint and that the endpoint is \
                                 reachable from this host)",
                                jwks.url,
                                RETRY_AFTER_FAILURE.as_secs()
                            );
                        } else {
                            tracing::debug!("JWKS fetch from {} failed again: {e}", jwks.url);
                        }
                        ok_before = false;
                        RETRY_AFTER_FAILURE.min(jwks.refresh_interval)
                    }
                };
                drop(jwks);
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        });
    }

    async fn fetch_and_store(&self) -> Result<(), FetchError> {
        let set = self.fetch_set().await?;
        for skipped in &set.skipped {
            tracing::debug!("JWKS {}: skipped {skipped}", self.url);
        }
        let mut kids: Vec<&str> = set.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        let kids = kids.join(", ");
        let mut cached = sync::write(&self.cached);
        let mut before: Vec<&str> = cached.keys.keys().map(String::as_str).collect();
        before.sort_unstable();
        if before.join(", ") != kids || cached.generation == 0 {
            if set.keys.is_empty() {
                tracing::warn!(
                    "the JWKS at {} has no usable key ({} skipped: {}); every JWKS token is refused",
                    self.url,
                    set.skipped.len(),
                    set.skipped.join("; ")
                );
            } else {
                tracing::info!("JWKS {}: keys {kids}", self.url);
            }
        }
        cached.keys = set.keys;
        cached.generation += 1;
        Ok(())
    }

    fn client(&self) -> Result<&HttpsClient, FetchError> {
        self.client
            .get_or_init(|| Ok(Client::builder(TokioExecutor::new()).build(https_connector()?)))
            .as_ref()
            .map_err(|e| FetchError::Tls(e.clone()))
    }

    async fn fetch_set(&self) -> Result<ParsedSet, FetchError> {
        let client = self.client()?;
        let request = http::Request::get(self.url.clone())
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("herald/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::new())
            .map_err(FetchError::Request)?;
        let exchange = async {
            let response = client.request(request).await.map_err(|e| {
                let mut text = error_chain(&e);
                if text.contains("certificate") {
                    text.push_str(
                        " (Herald trusts the system's CA store; SSL_CERT_FILE or SSL_CERT_DIR \
                         can name another)",
                    );
                }
                FetchError::Exchange(text)
            })?;
            let status = response.status();
            if status.is_redirection() {
                let to = response
                    .headers()
                    .get(http::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("?")
                    .to_owned();
                return Err(FetchError::Redirect { status, to });
            }
            if !status.is_success() {
                return Err(FetchError::Status(status));
            }
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| FetchError::Body(e.to_string()))?
                .to_bytes();
            Ok(parse_jwks(&body)?)
        };
        tokio::time::timeout(FETCH_TIMEOUT, exchange)
            .await
            .map_err(|_| FetchError::Timeout)?
    }
}

/// The connector of Herald's outgoing HTTP clients (JWKS, backend proxies): `http` and
/// `https` (HTTP/1.1), verified against the system's CA store, or Mozilla's roots where the
/// system has none.
pub(crate) fn https_connector() -> Result<HttpsConnector<HttpConnector>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = match hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider.clone())
    {
        Ok(builder) => builder,
        // No system trust store (e.g. a minimal container): Mozilla's roots.
        Err(_) => {
            hyper_rustls::HttpsConnectorBuilder::new().with_provider_and_webpki_roots(provider)?
        }
    };
    Ok(builder.https_or_http().enable_http1().build())
}

/// An error and its causes, `a: b: c` (hyper's own message alone says little).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Checks a `jwks_public_endpoint` value: an absolute `http` or `https` URL with a host.
pub fn check_endpoint(endpoint: &str) -> Result<http::Uri, EndpointError> {
    let endpoint = endpoint.trim();
    if endpoint.contains("{{") {
        return Err(EndpointError::Templated);
    }
    let url: http::Uri = endpoint.parse().map_err(|source| EndpointError::NotAUrl {
        endpoint: endpoint.to_owned(),
        source,
    })?;
    match url.scheme_str() {
        Some("https" | "http") => {}
        _ => {
            return Err(EndpointError::Scheme(endpoint.to_owned()));
        }
    }
    if url.host().is_none_or(str::is_empty) {
        return Err(EndpointError::NoHost(endpoint.to_owned()));
    }
    Ok(url)
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn rsa_jwk(kid: &str) -> serde_json::Value {
        json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
               "n": b64(&[0xC5; 256]), "e": "AQAB"})
    }

    fn parse(value: serde_json::Value) -> ParsedSet {
        parse_jwks(value.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn rsa_ec_and_okp_keys_are_read_by_kid() {
        let set = parse(json!({"keys": [
            rsa_jwk("r1"),
            {"kty": "EC", "kid": "e256", "crv": "P-256", "x": b64(&[1; 32]), "y": b64(&[2; 32])},
            {"kty": "EC", "kid": "e384", "crv": "P-384", "alg": "ES384",
             "x": b64(&[1; 48]), "y": b64(&[2; 48])},
            {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": b64(&[3; 32])},
        ]}));
        assert!(set.skipped.is_empty(), "{:?}", set.skipped);
        assert_eq!(set.keys.len(), 4);
        let r1 = &set.keys["r1"];
        assert_eq!(r1.kind, KeyKind::Rsa);
        assert_eq!(r1.alg, Some(Algorithm::RS256));
        // alg pins the key to one algorithm.
        assert!(r1.accepts(Algorithm::RS256));
        assert!(!r1.accepts(Algorithm::RS512));
        assert!(!r1.accepts(Algorithm::HS256));
        let e256 = &set.keys["e256"];
        assert_eq!((e256.kind, e256.alg), (KeyKind::P256, None));
        assert!(e256.accepts(Algorithm::ES256));
        assert!(!e256.accepts(Algorithm::ES384));
        assert!(!e256.accepts(Algorithm::RS256));
        assert!(set.keys["e384"].accepts(Algorithm::ES384));
        assert!(set.keys["ed"].accepts(Algorithm::EdDSA));
        assert!(!set.keys["ed"].accepts(Algorithm::ES256));
        // Without alg an RSA key verifies every RS* algorithm, never HS*.
        let set =
            parse(json!({"keys": [{"kty": "RSA", "kid": "r", "n": b64(&[7; 256]), "e": "AQAB"}]}));
        let r = &set.keys["r"];
        for alg in [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512] {
            assert!(r.accepts(alg));
        }
        for alg in [Algorithm::HS256, Algorithm::PS256, Algorithm::ES256] {
            assert!(!r.accepts(alg));
        }
    }

    #[test]
    fn unusable_keys_are_skipped_not_fatal() {
        let set = parse(json!({"keys": [
            rsa_jwk("good"),
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": b64(&[1; 256]), "e": "AQAB"},
            {"kty": "oct", "kid": "sym", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "p521", "crv": "P-521", "x": b64(&[1; 66]), "y": b64(&[1; 66])},
            {"kty": "EC", "kid": "short", "crv": "P-256", "x": b64(&[1; 31]), "y": b64(&[2; 32])},
            {"kty": "EC", "kid": "nocrv", "x": b64(&[1; 32]), "y": b64(&[2; 32])},
            {"kty": "RSA", "kid": "noe", "n": b64(&[1; 256])},
            {"kty": "RSA", "kid": "tiny", "n": b64(&[1; 64]), "e": "AQAB"},
            {"kty": "RSA", "kid": "bad64", "n": "!!!", "e": "AQAB"},
            {"kty": "RSA", "kid": "ps", "alg": "PS256", "n": b64(&[1; 256]), "e": "AQAB"},
            {"kty": "RSA", "kid": "mixed", "alg": "ES256", "n": b64(&[1; 256]), "e": "AQAB"},
            {"kty": "RSA", "n": b64(&[1; 256]), "e": "AQAB"},
            {"kty": "XYZ", "kid": "what"},
            {"kid": "nokty"},
            "not an object",
            rsa_jwk("good"),
        ]}));
        assert_eq!(set.keys.len(), 1, "{:?}", set.keys.keys());
        assert!(set.keys.contains_key("good"));
        assert_eq!(set.skipped.len(), 15, "{:#?}", set.skipped);
        let all = set.skipped.join("\n");
        for needle in [
            "use \"enc\"",
            "oct",
            "P-521",
            "32 bytes",
            "missing \"crv\"",
            "missing \"e\"",
            "too short",
            "\"n\" is not base64url",
            "alg \"PS256\"",
            "alg \"ES256\"",
            "no kid",
            "unknown key type",
            "missing \"kty\"",
            "not a JWK",
            "same kid",
        ] {
            assert!(all.contains(needle), "{needle} not in:\n{all}");
        }
    }

    #[test]
    fn a_document_that_is_not_a_jwks_is_an_error() {
        for body in [&b"<html>"[..], b"[]", b"{}", b"{\"keys\": 5}"] {
            assert!(
                parse_jwks(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let err = parse_jwks(b"{\"issuer\": \"x\"}").unwrap_err();
        assert!(err.to_string().contains("\"keys\""), "{err}");
        // An empty set is a valid (if useless) JWKS.
        assert!(parse_jwks(b"{\"keys\": []}").unwrap().keys.is_empty());
        // Padded base64url is tolerated.
        let set = parse(
            json!({"keys": [{"kty": "RSA", "kid": "p", "n": b64(&[9; 256]) + "=", "e": "AQAB"}]}),
        );
        assert!(set.keys.contains_key("p"), "{:?}", set.skipped);
    }

    #[test]
    fn endpoints_are_checked() {
        assert!(check_endpoint("https://id.example.com/.well-known/jwks.json").is_ok());
        assert!(check_endpoint(" http://127.0.0.1:8080/jwks ").is_ok());
        for (bad, why) in [
            ("ftp://x/jwks", "https://"),
            ("/jwks", "https://"),
            ("not a url", "not a URL"),
            ("https://{{tenant}}.example.com/jwks", "templated"),
        ] {
            let err = check_endpoint(bad).unwrap_err();
            assert!(err.to_string().contains(why), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn unreachable_endpoint_is_unavailable_then_rate_limited() {
        // A port nothing listens on: bind, note the port, close.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let jwks = Jwks::new(&format!("http://127.0.0.1:{port}/jwks")).unwrap();
        let first = jwks.key("a").await.unwrap_err();
        assert!(matches!(first, LookupError::Unavailable(_)), "{first:?}");
        // Within the rate limit no second fetch is made.
        assert_eq!(jwks.key("b").await.unwrap_err(), LookupError::UnknownKid);
        assert!(jwks.refresh().await.is_err());
    }
}
