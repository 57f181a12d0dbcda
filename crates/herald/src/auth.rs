//! Authentication: connection and subscription JWTs (protocol.md §9) and the server API key.
//!
//! Connection tokens are verified the way Centrifugo verifies them, so tokens minted by an
//! application's backend (or an identity provider) for Centrifugo work unchanged:
//!
//! * the token's `alg` picks the key type: HS256/384/512 use `client.token.hmac_secret_key`
//!   (and the previous key during a rotation), RS256/384/512 and ES256/384 use the key with the
//!   token's `kid` from `client.token.jwks_public_endpoint` when one is configured and the token
//!   has a `kid`, else `rsa_public_key` / `ecdsa_public_key`; EdDSA works through the JWKS only.
//!   `alg: none`, or an algorithm without a configured key, is refused — so an RSA public key can
//!   never be used as an HMAC secret, and a JWKS key never verifies an algorithm of another
//!   family (ES512 is not supported: the JWT library has no P-521);
//! * a bad signature, a malformed token, an unknown `kid`, a wrong `aud`/`iss` (exact, or
//!   `audience_regex` / `issuer_regex`), or a connection token carrying a `channel` claim is
//!   [`TokenError::Invalid`] (the server disconnects with 3500);
//! * an `exp` in the past, or an `nbf` in the future, is [`TokenError::Expired`] (the server
//!   answers error 109 so that the client SDK fetches a fresh token).
//!
//! Build one [`TokenVerifier`] at startup (it parses the keys once and owns the JWKS cache, see
//! [`jwks`]); the free functions [`verify_connection_token`] and [`verify_subscription_token`]
//! are conveniences that build one per call.

pub mod jwks;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use regex::Regex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use subtle::ConstantTimeEq;

use self::jwks::Jwks;
use crate::config::TokenConfig;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token is genuine but its `exp` has passed (or its `nbf` has not come yet): the client
    /// should get a new token. Protocol error 109 "token expired".
    #[error("token expired")]
    Expired,
    /// The token is malformed, forged, of a refused algorithm or carries refused claims: the
    /// client is disconnected with 3500 "invalid token". The reason is for logs, not clients.
    #[error("invalid token: {0}")]
    Invalid(String),
}

impl TokenError {
    fn invalid(reason: impl Into<String>) -> Self {
        TokenError::Invalid(reason.into())
    }
}

/// A token setting that cannot be used (bad PEM, unsupported option). Raised when the
/// [`TokenVerifier`] is built, i.e. at startup / config validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{option}: {message}")]
pub struct TokenConfigError {
    /// The option at fault, relative to the token section (e.g. `rsa_public_key`).
    pub option: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

// ---------------------------------------------------------------------------------------------
// Claims
// ---------------------------------------------------------------------------------------------

/// The `aud` claim: one string or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// `"aud": "x"`.
    One(String),
    /// `"aud": ["x", "y"]`.
    Many(Vec<String>),
}

impl Audience {
    /// Whether `aud` names `audience`.
    pub fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(a) => a == audience,
            Audience::Many(list) => list.iter().any(|a| a == audience),
        }
    }

    /// Whether some value of `aud` satisfies `f`.
    pub fn any(&self, mut f: impl FnMut(&str) -> bool) -> bool {
        match self {
            Audience::One(a) => f(a),
            Audience::Many(list) => list.iter().any(|a| f(a)),
        }
    }
}

/// A channel-option override in a token: `{"value": true}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoolValue {
    /// The overriding value.
    pub value: bool,
}

/// The `override` object of a subscription (in `subs` of a connection token, or in a
/// subscription token): per-subscription replacements for namespace options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscribeOverride {
    /// Override `presence`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence: Option<BoolValue>,
    /// Override `join_leave`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_leave: Option<BoolValue>,
    /// Override `force_push_join_leave`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_push_join_leave: Option<BoolValue>,
    /// Override `force_recovery`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_recovery: Option<BoolValue>,
    /// Override `force_positioning`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_positioning: Option<BoolValue>,
}

/// One entry of a connection token's `subs`: a server-side subscription with options.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SubscribeOptions {
    /// Channel info (JSON) attached to the subscriber's ClientInfo `chan_info`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<Box<RawValue>>,
    /// Channel info as base64 (binary alternative to `info`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b64info: Option<String>,
    /// Data sent to the client in the subscribe push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Box<RawValue>>,
    /// Data as base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b64data: Option<String>,
    /// Namespace option overrides.
    #[serde(default, rename = "override", skip_serializing_if = "Option::is_none")]
    pub override_: Option<SubscribeOverride>,
}

/// The claims of a verified connection token (protocol.md §9).
///
/// `Serialize` is there so tests and tools can mint tokens with the same type.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConnectionClaims {
    /// User id; `""` is an anonymous user.
    #[serde(default)]
    pub sub: String,
    /// Token expiry (unix seconds); also the connection's expiry unless `expire_at` is given.
    #[serde(
        default,
        deserialize_with = "numeric_date",
        skip_serializing_if = "Option::is_none"
    )]
    pub exp: Option<i64>,
    /// Explicit connection expiry (unix seconds); `Some(0)` = the connection never expires, even
    /// when `exp` is set. See [`ConnectionClaims::expires_at`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_at: Option<i64>,
    /// Connection info (JSON), shown to others as ClientInfo `conn_info`. Kept raw: never parsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<Box<RawValue>>,
    /// Connection info as base64 (binary alternative to `info`; wins when both are set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b64info: Option<String>,
    /// Channels to subscribe server-side on connect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// Server-side subscriptions with options; wins over `channels` for the same channel.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subs: BTreeMap<String, SubscribeOptions>,
    /// Server-side metadata: kept with the connection, never sent to clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Box<RawValue>>,
    /// Audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Not valid before (unix seconds).
    #[serde(
        default,
        deserialize_with = "numeric_date",
        skip_serializing_if = "Option::is_none"
    )]
    pub nbf: Option<i64>,
    /// Issued at (unix seconds).
    #[serde(
        default,
        deserialize_with = "numeric_date",
        skip_serializing_if = "Option::is_none"
    )]
    pub iat: Option<i64>,
    /// Token id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Must be absent or empty: a connection token with a `channel` is refused (it is a
    /// subscription token used in the wrong place).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

impl ConnectionClaims {
    /// When the connection expires (unix seconds), or `None` if it never does: `expire_at` wins
    /// over `exp`, and a non-positive `expire_at` (Centrifugo: `0`) means never.
    pub fn expires_at(&self) -> Option<u64> {
        expiry(self.expire_at, self.exp)
    }

    /// The connection info bytes: `b64info` decoded when set, else the raw `info` JSON.
    pub fn info_bytes(&self) -> Option<Vec<u8>> {
        info_bytes(self.b64info.as_deref(), self.info.as_deref())
    }
}

/// The claims of a verified subscription token (protocol.md §9).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SubscriptionClaims {
    /// Must equal the subscribing connection's user id.
    #[serde(default)]
    pub sub: String,
    /// The channel this token grants; required.
    #[serde(default)]
    pub channel: String,
    /// When set, only the connection with this client id may use the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// Token expiry (unix seconds); also the subscription's expiry unless `expire_at` is given.
    #[serde(
        default,
        deserialize_with = "numeric_date",
        skip_serializing_if = "Option::is_none"
    )]
    pub exp: Option<i64>,
    /// Explicit subscription expiry; `Some(0)` = never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_at: Option<i64>,
    /// Channel info → ClientInfo `chan_info`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<Box<RawValue>>,
    /// Channel info as base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b64info: Option<String>,
    /// Data returned in the subscribe result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Box<RawValue>>,
    /// Data as base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b64data: Option<String>,
    /// Namespace option overrides for this subscription.
    #[serde(default, rename = "override", skip_serializing_if = "Option::is_none")]
    pub override_: Option<SubscribeOverride>,
    /// Audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Not valid before (unix seconds).
    #[serde(
        default,
        deserialize_with = "numeric_date",
        skip_serializing_if = "Option::is_none"
    )]
    pub nbf: Option<i64>,
    /// Issued at (unix seconds).
    #[serde(
        default,
        deserialize_with = "numeric_date",
        skip_serializing_if = "Option::is_none"
    )]
    pub iat: Option<i64>,
    /// Token id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

impl SubscriptionClaims {
    /// When the subscription expires (unix seconds), or `None` if never (`expire_at` wins over
    /// `exp`; non-positive `expire_at` = never).
    pub fn expires_at(&self) -> Option<u64> {
        expiry(self.expire_at, self.exp)
    }

    /// The channel info bytes: `b64info` decoded when set, else the raw `info` JSON.
    pub fn info_bytes(&self) -> Option<Vec<u8>> {
        info_bytes(self.b64info.as_deref(), self.info.as_deref())
    }

    /// Checks that this token is for `channel`, user `user` and (when the token names one)
    /// connection `client`: a mismatch is [`TokenError::Invalid`] (3500), as in Centrifugo.
    pub fn check_for(&self, user: &str, channel: &str, client: &str) -> Result<(), TokenError> {
        if self.channel != channel {
            return Err(TokenError::invalid(format!(
                "subscription token is for channel \"{}\", not \"{channel}\"",
                self.channel
            )));
        }
        if self.sub != user {
            return Err(TokenError::invalid(
                "subscription token is for another user",
            ));
        }
        if let Some(c) = self.client.as_deref().filter(|c| !c.is_empty())
            && c != client
        {
            return Err(TokenError::invalid(
                "subscription token is for another connection",
            ));
        }
        Ok(())
    }
}

fn expiry(expire_at: Option<i64>, exp: Option<i64>) -> Option<u64> {
    match expire_at {
        Some(at) => u64::try_from(at).ok().filter(|at| *at > 0),
        None => exp.and_then(|e| u64::try_from(e).ok()).filter(|e| *e > 0),
    }
}

fn info_bytes(b64: Option<&str>, raw: Option<&RawValue>) -> Option<Vec<u8>> {
    match b64.filter(|s| !s.is_empty()) {
        Some(b64) => STANDARD.decode(b64).ok(),
        None => raw.map(|r| r.get().as_bytes().to_vec()),
    }
}

/// JWT NumericDate: an integer or a fractional number of seconds (fraction dropped), or null.
fn numeric_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        Int(i64),
        Float(f64),
    }
    Ok(match Option::<Num>::deserialize(d)? {
        None => None,
        Some(Num::Int(i)) => Some(i),
        Some(Num::Float(f)) if f.is_finite() => Some(f as i64),
        Some(Num::Float(_)) => {
            return Err(serde::de::Error::custom("a date must be a finite number"));
        }
    })
}

/// Claims every token has, checked the same way for both kinds.
trait CommonClaims {
    fn aud(&self) -> Option<&Audience>;
    fn iss(&self) -> Option<&str>;
    fn set_sub(&mut self, sub: String);
    fn base64_fields(&self) -> Vec<(&'static str, &str)>;
}

impl CommonClaims for ConnectionClaims {
    fn aud(&self) -> Option<&Audience> {
        self.aud.as_ref()
    }
    fn iss(&self) -> Option<&str> {
        self.iss.as_deref()
    }
    fn set_sub(&mut self, sub: String) {
        self.sub = sub;
    }
    fn base64_fields(&self) -> Vec<(&'static str, &str)> {
        let mut out: Vec<(&'static str, &str)> = Vec::new();
        if let Some(b) = self.b64info.as_deref() {
            out.push(("b64info", b));
        }
        for opts in self.subs.values() {
            if let Some(b) = opts.b64info.as_deref() {
                out.push(("subs.b64info", b));
            }
            if let Some(b) = opts.b64data.as_deref() {
                out.push(("subs.b64data", b));
            }
        }
        out
    }
}

impl CommonClaims for SubscriptionClaims {
    fn aud(&self) -> Option<&Audience> {
        self.aud.as_ref()
    }
    fn iss(&self) -> Option<&str> {
        self.iss.as_deref()
    }
    fn set_sub(&mut self, sub: String) {
        self.sub = sub;
    }
    fn base64_fields(&self) -> Vec<(&'static str, &str)> {
        let mut out: Vec<(&'static str, &str)> = Vec::new();
        if let Some(b) = self.b64info.as_deref() {
            out.push(("b64info", b));
        }
        if let Some(b) = self.b64data.as_deref() {
            out.push(("b64data", b));
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------------------------

/// Verifies connection and subscription tokens against one token configuration
/// (`client.token`, or `client.subscription_token` when enabled). Keys are parsed once, in
/// [`TokenVerifier::new`]; verifying is then cheap (`Send + Sync`, clone it or share it in an
/// `Arc`; clones share one JWKS cache). Verification is `async` only because a token naming an
/// unknown JWKS `kid` makes the verifier fetch the key set again.
#[derive(Clone)]
pub struct TokenVerifier {
    hmac: Option<DecodingKey>,
    hmac_previous: Option<DecodingKey>,
    hmac_previous_valid_until: i64,
    rsa: Option<DecodingKey>,
    ecdsa: Option<DecodingKey>,
    jwks: Option<Arc<Jwks>>,
    audience: String,
    audience_regex: Option<Regex>,
    issuer: String,
    issuer_regex: Option<Regex>,
    user_id_claim: String,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("TokenVerifier")
            .field("hmac", &self.hmac.is_some())
            .field("hmac_previous", &self.hmac_previous.is_some())
            .field("rsa", &self.rsa.is_some())
            .field("ecdsa", &self.ecdsa.is_some())
            .field("jwks", &self.jwks.as_ref().map(|j| j.url().to_string()))
            .field("audience", &self.audience)
            .field(
                "audience_regex",
                &self.audience_regex.as_ref().map(Regex::as_str),
            )
            .field("issuer", &self.issuer)
            .field(
                "issuer_regex",
                &self.issuer_regex.as_ref().map(Regex::as_str),
            )
            .field("user_id_claim", &self.user_id_claim)
            .finish()
    }
}

fn non_empty(s: &str) -> Option<&str> {
    Some(s.trim()).filter(|s| !s.is_empty())
}

/// Where the key for a token comes from.
enum KeySource<'a> {
    /// Configured keys (PEM, HMAC secrets), tried in order.
    Static(Vec<&'a DecodingKey>),
    /// The JWKS key with this `kid`.
    Jwks(&'a Jwks, &'a str),
}

impl TokenVerifier {
    /// Parses the keys of `cfg` and checks its options: a key that is not valid PEM, a JWKS
    /// endpoint that is not an http(s) URL, a regex that does not compile, or both `audience`
    /// and `audience_regex` (`issuer` and `issuer_regex`) set is an error. Nothing is fetched
    /// here: call [`TokenVerifier::start_background_refresh`] in the server.
    pub fn new(cfg: &TokenConfig) -> Result<TokenVerifier, TokenConfigError> {
        let rsa = non_empty(&cfg.rsa_public_key)
            .map(|pem| {
                DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| TokenConfigError {
                    option: "rsa_public_key",
                    message: format!("not an RSA public key in PEM format ({e})"),
                })
            })
            .transpose()?;
        let ecdsa = non_empty(&cfg.ecdsa_public_key)
            .map(|pem| {
                DecodingKey::from_ec_pem(pem.as_bytes()).map_err(|e| TokenConfigError {
                    option: "ecdsa_public_key",
                    message: format!("not a P-256 or P-384 ECDSA public key in PEM format ({e})"),
                })
            })
            .transpose()?;
        let jwks = non_empty(&cfg.jwks_public_endpoint)
            .map(|url| {
                Jwks::new(url).map(Arc::new).map_err(|e| TokenConfigError {
                    option: "jwks_public_endpoint",
                    message: e.to_string(),
                })
            })
            .transpose()?;
        let regex = |option: &'static str, exact: &'static str, value: &str, exact_value: &str| {
            let Some(pattern) = non_empty(value) else {
                return Ok(None);
            };
            if non_empty(exact_value).is_some() {
                return Err(TokenConfigError {
                    option,
                    message: format!("set either {exact} or {option}, not both"),
                });
            }
            Regex::new(pattern).map(Some).map_err(|e| TokenConfigError {
                option,
                message: format!("not a valid regular expression: {e}"),
            })
        };
        let audience_regex = regex(
            "audience_regex",
            "audience",
            &cfg.audience_regex,
            &cfg.audience,
        )?;
        let issuer_regex = regex("issuer_regex", "issuer", &cfg.issuer_regex, &cfg.issuer)?;
        let secret = |s: &str| (!s.is_empty()).then(|| DecodingKey::from_secret(s.as_bytes()));
        Ok(TokenVerifier {
            hmac: secret(&cfg.hmac_secret_key),
            hmac_previous: secret(&cfg.hmac_previous_secret_key),
            hmac_previous_valid_until: cfg.hmac_previous_secret_key_valid_until,
            rsa,
            ecdsa,
            jwks,
            audience: cfg.audience.clone(),
            audience_regex,
            issuer: cfg.issuer.clone(),
            issuer_regex,
            user_id_claim: cfg.user_id_claim.clone(),
        })
    }

    /// Whether any key is configured; without one every token is refused.
    pub fn has_key(&self) -> bool {
        self.hmac.is_some() || self.rsa.is_some() || self.ecdsa.is_some() || self.jwks.is_some()
    }

    /// With `jwks_public_endpoint`: fetches the key set now, in the background, and again every
    /// hour (every 30 s while that fails, with a warning in the log). Call it once, inside the
    /// tokio runtime, when the server starts; clones share the task. Without it keys are fetched
    /// when a token first names them.
    pub fn start_background_refresh(&self) {
        if let Some(jwks) = &self.jwks {
            jwks.spawn_refresh();
        }
    }

    /// Verifies a connection token at time `now`: signature, algorithm, `aud`/`iss`, no
    /// `channel` claim, then `exp`/`nbf` ([`TokenError::Expired`]).
    pub async fn verify_connection_token(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<ConnectionClaims, TokenError> {
        let claims = self.decode_connection_token(token, now).await?;
        check_time(claims.exp, claims.nbf, now)?;
        Ok(claims)
    }

    /// Everything [`TokenVerifier::verify_connection_token`] checks except `exp`/`nbf`: for tools
    /// (`herald checktoken`) that want to show who an expired token was for. Never use it to
    /// admit a connection.
    pub async fn decode_connection_token(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<ConnectionClaims, TokenError> {
        let claims: ConnectionClaims = self.decode(token, now).await?;
        if claims.channel.as_deref().is_some_and(|c| !c.is_empty()) {
            return Err(TokenError::invalid(
                "a connection token can not contain a channel claim (that is a subscription token)",
            ));
        }
        Ok(claims)
    }

    /// Verifies a subscription token at time `now`: signature, algorithm, `aud`/`iss`,
    /// `exp`/`nbf`, and a non-empty `channel`. The caller then checks the token against the
    /// subscribe request with [`SubscriptionClaims::check_for`].
    pub async fn verify_subscription_token(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<SubscriptionClaims, TokenError> {
        let claims: SubscriptionClaims = self.decode(token, now).await?;
        check_time(claims.exp, claims.nbf, now)?;
        if claims.channel.is_empty() {
            return Err(TokenError::invalid(
                "a subscription token needs a channel claim",
            ));
        }
        Ok(claims)
    }

    /// Which keys may verify a token with this `alg` and `kid`. The algorithm family picks the
    /// key type, so a key of one type is never used for another algorithm (an RSA public key can
    /// not become an HMAC secret). RS/ES tokens with a `kid` use the JWKS when one is configured;
    /// without a `kid` they use the configured PEM key.
    fn key_source<'a>(
        &'a self,
        alg: Algorithm,
        kid: Option<&'a str>,
        now: SystemTime,
    ) -> Result<KeySource<'a>, TokenError> {
        let (pem, option) = match alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                let mut keys: Vec<&DecodingKey> = self.hmac.iter().collect();
                let previous_valid = self.hmac_previous_valid_until <= 0
                    || unix_seconds(now) <= self.hmac_previous_valid_until;
                if previous_valid {
                    keys.extend(self.hmac_previous.iter());
                }
                if keys.is_empty() {
                    return Err(TokenError::invalid(format!(
                        "token is signed with {alg:?} but no hmac_secret_key is configured"
                    )));
                }
                return Ok(KeySource::Static(keys));
            }
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => {
                (self.rsa.as_ref(), "rsa_public_key")
            }
            Algorithm::ES256 | Algorithm::ES384 => (self.ecdsa.as_ref(), "ecdsa_public_key"),
            Algorithm::EdDSA => (None, "jwks_public_endpoint"),
            other => {
                return Err(TokenError::invalid(format!(
                    "algorithm {other:?} is not accepted (use HS256/384/512, RS256/384/512, \
                     ES256/384, or EdDSA through a JWKS)"
                )));
            }
        };
        match (&self.jwks, kid, pem) {
            (Some(jwks), Some(kid), _) => Ok(KeySource::Jwks(jwks, kid)),
            (_, _, Some(pem)) => Ok(KeySource::Static(vec![pem])),
            (Some(_), None, None) => Err(TokenError::invalid(format!(
                "token is signed with {alg:?} but has no kid header: with jwks_public_endpoint \
                 a token must name its key"
            ))),
            (None, _, None) => {
                let option = if alg == Algorithm::EdDSA {
                    option
                } else {
                    &format!("{option} or jwks_public_endpoint")
                };
                Err(TokenError::invalid(format!(
                    "token is signed with {alg:?} but no {option} is configured"
                )))
            }
        }
    }

    /// Signature, algorithm and claim-format checks shared by both token kinds.
    async fn decode<T: DeserializeOwned + CommonClaims>(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<T, TokenError> {
        let header = parse_header(token)?;
        let alg = header.alg;
        let jwk;
        let keys = match self.key_source(alg, header.kid.as_deref(), now)? {
            KeySource::Static(keys) => keys,
            KeySource::Jwks(jwks, kid) => {
                jwk = jwks.key(kid).await.map_err(|e| match e {
                    jwks::LookupError::UnknownKid => TokenError::invalid(format!(
                        "kid \"{kid}\" is not in the JWKS at {}",
                        jwks.url()
                    )),
                    jwks::LookupError::Unavailable(why) => TokenError::invalid(format!(
                        "kid \"{kid}\" is not cached and the JWKS at {} cannot be fetched: {why}",
                        jwks.url()
                    )),
                })?;
                if !jwk.accepts(alg) {
                    return Err(TokenError::invalid(format!(
                        "JWKS key \"{kid}\" ({:?}{}) can not verify a {alg:?} token",
                        jwk.kind,
                        jwk.alg.map(|a| format!(", alg {a:?}")).unwrap_or_default()
                    )));
                }
                vec![&jwk.key]
            }
        };
        let payload = verify_signature(token, alg, &keys)?;
        let mut claims: T = serde_json::from_str(payload.get())
            .map_err(|e| TokenError::invalid(format!("malformed claims: {e}")))?;

        if let Some(path) = non_empty(&self.user_id_claim) {
            let all: serde_json::Value = serde_json::from_str(payload.get())
                .map_err(|e| TokenError::invalid(format!("malformed claims: {e}")))?;
            let found = path.split('.').try_fold(&all, |v, key| v.get(key));
            let user = match found {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                _ => String::new(),
            };
            claims.set_sub(user);
        }
        if let Some(audience) = non_empty(&self.audience)
            && !claims.aud().is_some_and(|aud| aud.contains(audience))
        {
            return Err(TokenError::invalid(
                "aud does not match the configured audience",
            ));
        }
        if let Some(re) = &self.audience_regex
            && !claims.aud().is_some_and(|aud| aud.any(|a| re.is_match(a)))
        {
            return Err(TokenError::invalid("aud does not match audience_regex"));
        }
        if let Some(issuer) = non_empty(&self.issuer)
            && claims.iss() != Some(issuer)
        {
            return Err(TokenError::invalid(
                "iss does not match the configured issuer",
            ));
        }
        if let Some(re) = &self.issuer_regex
            && !claims.iss().is_some_and(|iss| re.is_match(iss))
        {
            return Err(TokenError::invalid("iss does not match issuer_regex"));
        }
        for (name, value) in claims.base64_fields() {
            if !value.is_empty() && STANDARD.decode(value).is_err() {
                return Err(TokenError::invalid(format!("{name} is not valid base64")));
            }
        }
        Ok(claims)
    }
}

/// Checks the signature of `token` (signed with `alg`) with each key in turn and returns the raw
/// claims of the first that matches. Time, audience and issuer are checked by the caller, against
/// its `now` and the Centrifugo rules, not jsonwebtoken's clock.
fn verify_signature(
    token: &str,
    alg: Algorithm,
    keys: &[&DecodingKey],
) -> Result<Box<RawValue>, TokenError> {
    let mut validation = Validation::new(alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    validation.leeway = 0;

    let mut last_error = None;
    for key in keys {
        match jsonwebtoken::decode::<Box<RawValue>>(token, key, &validation) {
            Ok(data) => return Ok(data.claims),
            Err(e) => last_error = Some(e),
        }
    }
    let reason = match last_error {
        Some(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature) => {
            "signature does not match".to_string()
        }
        Some(e) => e.to_string(),
        None => "cannot be verified".to_string(),
    };
    Err(TokenError::Invalid(reason))
}

/// The parts of a token's header that choose its key.
struct TokenHeader {
    alg: Algorithm,
    kid: Option<String>,
}

/// The `alg` and `kid` of a token's header, refusing `none` and unknown algorithms with a clear
/// reason.
fn parse_header(token: &str) -> Result<TokenHeader, TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::invalid(
            "not a JWT (expected three base64url parts separated by dots)",
        ));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| TokenError::invalid("token header is not base64url"))?;
    #[derive(Deserialize)]
    struct RawHeader {
        alg: Option<String>,
        kid: Option<String>,
    }
    let raw: RawHeader = serde_json::from_slice(&bytes)
        .map_err(|e| TokenError::invalid(format!("token header is not a JSON object ({e})")))?;
    let Some(alg) = raw.alg else {
        return Err(TokenError::invalid("token header has no alg"));
    };
    if alg.eq_ignore_ascii_case("none") {
        return Err(TokenError::invalid(
            "unsigned tokens (alg \"none\") are not accepted",
        ));
    }
    let alg = alg
        .parse::<Algorithm>()
        .map_err(|_| TokenError::invalid(format!("unknown algorithm \"{alg}\"")))?;
    Ok(TokenHeader {
        alg,
        kid: raw.kid.filter(|k| !k.is_empty()),
    })
}

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// `exp` passed (now ≥ exp) or `nbf` not reached (now < nbf) → [`TokenError::Expired`], as in
/// Centrifugo (both give error 109 so the client refreshes its token).
fn check_time(exp: Option<i64>, nbf: Option<i64>, now: SystemTime) -> Result<(), TokenError> {
    let at = |secs: i64| {
        u64::try_from(secs)
            .ok()
            .map(|s| UNIX_EPOCH + Duration::from_secs(s))
    };
    if let Some(exp) = exp {
        // A negative exp is long past.
        if at(exp).is_none_or(|exp| now >= exp) {
            return Err(TokenError::Expired);
        }
    }
    if let Some(nbf) = nbf
        && at(nbf).is_some_and(|nbf| now < nbf)
    {
        return Err(TokenError::Expired);
    }
    Ok(())
}

/// Verifies a connection token against `cfg` at time `now` (builds a [`TokenVerifier`] per call,
/// with its own JWKS cache: prefer one built at startup). An unusable key configuration gives
/// [`TokenError::Invalid`].
pub async fn verify_connection_token(
    token: &str,
    cfg: &TokenConfig,
    now: SystemTime,
) -> Result<ConnectionClaims, TokenError> {
    TokenVerifier::new(cfg)
        .map_err(|e| TokenError::Invalid(format!("server token settings: {e}")))?
        .verify_connection_token(token, now)
        .await
}

/// Verifies a subscription token against `cfg` at time `now` (see
/// [`verify_connection_token`]).
pub async fn verify_subscription_token(
    token: &str,
    cfg: &TokenConfig,
    now: SystemTime,
) -> Result<SubscriptionClaims, TokenError> {
    TokenVerifier::new(cfg)
        .map_err(|e| TokenError::Invalid(format!("server token settings: {e}")))?
        .verify_subscription_token(token, now)
        .await
}

// ---------------------------------------------------------------------------------------------
// Minting and API keys
// ---------------------------------------------------------------------------------------------

/// A token could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot make a token: {0}")]
pub struct SignError(pub String);

/// Signs any claims as an HS256 JWT with `secret` (tests, tools, the demo app).
pub fn sign_hs256<T: Serialize>(claims: &T, secret: &str) -> Result<String, SignError> {
    if secret.is_empty() {
        return Err(SignError(
            "no HMAC secret: set client.token.hmac_secret_key (`herald genconfig` makes one)"
                .into(),
        ));
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| SignError(e.to_string()))
}

/// Makes an HS256 connection token for `user` (`""` = anonymous), valid for `ttl` from now
/// (`None` = no `exp`), with optional connection `info`: what `herald gentoken` prints and what
/// tests connect with.
pub fn generate_token(
    user: &str,
    ttl: Option<Duration>,
    secret: &str,
    info: Option<&serde_json::Value>,
) -> Result<String, SignError> {
    let now = unix_seconds(SystemTime::now());
    let exp = ttl
        .map(|ttl| {
            i64::try_from(ttl.as_secs())
                .ok()
                .and_then(|t| now.checked_add(t))
                .ok_or_else(|| SignError("ttl is too large".into()))
        })
        .transpose()?;
    let info = info
        .map(serde_json::value::to_raw_value)
        .transpose()
        .map_err(|e| SignError(format!("info: {e}")))?;
    let claims = ConnectionClaims {
        sub: user.to_string(),
        exp,
        iat: Some(now),
        info,
        ..ConnectionClaims::default()
    };
    sign_hs256(&claims, secret)
}

/// Whether the API key a request `provided` equals the `configured` one, compared in constant
/// time (the length may leak; the content does not). An empty configured key matches nothing:
/// an unset key never opens the API (use `http_api.insecure` for that).
pub fn api_key_matches(provided: &str, configured: &str) -> bool {
    if configured.is_empty() {
        return false;
    }
    provided.as_bytes().ct_eq(configured.as_bytes()).into()
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Runs a future to completion on a fresh current-thread runtime (the tests are sync).
    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// Blocking forms of the async verification methods.
    trait Blocking {
        fn verify_connection_token_blocking(
            &self,
            token: &str,
            now: SystemTime,
        ) -> Result<ConnectionClaims, TokenError>;
        fn decode_connection_token_blocking(
            &self,
            token: &str,
            now: SystemTime,
        ) -> Result<ConnectionClaims, TokenError>;
    }

    impl Blocking for TokenVerifier {
        fn verify_connection_token_blocking(
            &self,
            token: &str,
            now: SystemTime,
        ) -> Result<ConnectionClaims, TokenError> {
            block_on(self.verify_connection_token(token, now))
        }
        fn decode_connection_token_blocking(
            &self,
            token: &str,
            now: SystemTime,
        ) -> Result<ConnectionClaims, TokenError> {
            block_on(self.decode_connection_token(token, now))
        }
    }

    fn blocking_verify_connection_token(
        token: &str,
        cfg: &TokenConfig,
        now: SystemTime,
    ) -> Result<ConnectionClaims, TokenError> {
        block_on(verify_connection_token(token, cfg, now))
    }

    fn blocking_verify_subscription_token(
        token: &str,
        cfg: &TokenConfig,
        now: SystemTime,
    ) -> Result<SubscriptionClaims, TokenError> {
        block_on(verify_subscription_token(token, cfg, now))
    }

    const SECRET: &str = "test-secret-please-change";

    /// Key pairs made for these tests only (`openssl genpkey`); they protect nothing.
    const TEST_RSA_PRIVATE: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQCMzUXBHjzvpTI4\n\
4AwcVnYq9w86kfNAv5jgeODhA7Uc5dkEWtF0lKukT2KyN08v1KDGtieJK9vGQVMJ\n\
kiwXVeJEZM4WlqJqqO/Qq50uelfCVlltwKLwS/kUh2qXHsISOddYPzo+cBEBb+GU\n\
PcxtWST9BWj6IOqcuKnr2FTNCHOtLjtqQkRjojjR5qTc6548lrsr3MSSC02YZDok\n\
g2xWhewnNsyzENBqFc+KmA3AFxl/7vFHOyAaumUlL4svQszU3KfJXFPPNOvbXwaz\n\
shEzbzXuRhfC06/0zB7c69gJ4Uqe/rBfPxrTd2W+plbFak2n1fl+ZSN4bUZbqMEb\n\
5JjaeJr3AgMBAAECggEAAkHGFPbhnivFNtEskIW4Ri8IoPU283o+vpZhcGnpTMnI\n\
ZT/5bId3it405EtrqwYa/6Rq1NGNp8tjQ9uCdmtLgbIl9Ym7l78WfP9LOTP/1R8i\n\
NtaoJfbpyrDy/fIhxT4FHCaDTf3o39+Fu6UT8krEA4RDLwM5D4MMQjoI/fJdPFDj\n\
zx/1z0ja9s4HGWSyTXMpdgcoj+WlMNx7DGY3AkBTt9nBHoMyuZkO3qoxgjWmo5rs\n\
nMkfJrQFjl9xHSXQmzmmv+hFdUinoJ26sg9yOdZChky+glu593uB3p/W3nIxVx7N\n\
k3udDXBcY6aPmogEEpEB049/u6A5FYBIhZ/vr8RcAQKBgQDDYwARcbN3OQ91lcC0\n\
ooA5n4lWOiErUmaPOgYeQ6ungCHEmxMkoFWsvyzWOWEoWW9wAdFGwv/lq+zr0GDS\n\
bi0RslSXbtHt8sqnIAjscutj+2+HnsoFyNA1VMYVPjiNM6nN9RG9Pqjwct+KaKpC\n\
OIBKbG1wtd22xEibz3T41+k+9wKBgQC4e1AbAOErr7/vcxUN4GbyVPp2AZi4BX3+\n\
iDeCWqkMroWA5pDN1UHJ6fyo3gkzQDE58I0T/l9qTEyeAiy66MFhzaxiMk0Uv+ru\n\
MFIyc6ISZBcRB5cMseZho//eQ2thl6YbvCJE1WgG5mmGCMTFeYzoE/WtXkqqljB/\n\
fNHB9KiEAQKBgFEuazLUSTr6LGAwzpa/BgPrM4buNCXp4M8VzsD4YPQBmwYzYKrR\n\
K4fRDvIbeTDoqBKjzq5WCzkETDZWqEQGnxdBP0CEPRlezbDO8KY9wWwTZm21Hj91\n\
Bn2CMaNV7O1OT/lRIAO/azYspJC/mC5Xh4Zksrwn9G0h9QE4G2PhYfpVAoGAKlHP\n\
bIJlJRpqE0n5GHfT5d9snUl8eSp5Xrxsz3Bwu0IFyi4aJb24G9ObbDmTLriZEkuG\n\
cYG27bGXGeAx1qayRfdihhw35nyoLf/Tu1MfaMyhJfzxv63HxbpTZe9dYMPjDRW5\n\
XsT92iddKaw1R3+8vThm8WBiDIPrmDNQAwhW6AECgYB49YMETbr/UEroLAlnHJ9j\n\
ryI85tyO1QJvmjKaa+ifF/ySuAcWbHJMDziTBNv/VotM+XhkwcklQd9NwDspdYf2\n\
nZffJ/dDRto1TtUTtk7eV1CyPhbGxLgZKWYcyYJ0BUYSXwV+qMtqeEQHM76gOqEJ\n\
5zjmulh07msaagAcIVaqzA==\n\
-----END PRIVATE KEY-----\n";

    const TEST_RSA_PUBLIC: &str = "\
-----BEGIN PUBLIC KEY-----\n\
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAjM1FwR4876UyOOAMHFZ2\n\
KvcPOpHzQL+Y4Hjg4QO1HOXZBFrRdJSrpE9isjdPL9SgxrYniSvbxkFTCZIsF1Xi\n\
RGTOFpaiaqjv0KudLnpXwlZZbcCi8Ev5FIdqlx7CEjnXWD86PnARAW/hlD3MbVkk\n\
/QVo+iDqnLip69hUzQhzrS47akJEY6I40eak3OuePJa7K9zEkgtNmGQ6JINsVoXs\n\
JzbMsxDQahXPipgNwBcZf+7xRzsgGrplJS+LL0LM1NynyVxTzzTr218Gs7IRM281\n\
7kYXwtOv9Mwe3OvYCeFKnv6wXz8a03dlvqZWxWpNp9X5fmUjeG1GW6jBG+SY2nia\n\
9wIDAQAB\n\
-----END PUBLIC KEY-----\n";

    const TEST_EC_PRIVATE: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQggrF1ri1VsQL/YS/B\n\
+LU/U8Z3sZoSOt846bnFj3FI7mahRANCAATqy/NU4LVVQq/jzD1apdOcnfgn3mj5\n\
HxF4Mr/SxD1+XjvIdVuEg/xeLTbTv8ETzifOcGjVhk+w8MZRttyyKFFd\n\
-----END PRIVATE KEY-----\n";

    const TEST_EC_PUBLIC: &str = "\
-----BEGIN PUBLIC KEY-----\n\
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE6svzVOC1VUKv48w9WqXTnJ34J95o\n\
+R8ReDK/0sQ9fl47yHVbhIP8Xi0207/BE84nznBo1YZPsPDGUbbcsihRXQ==\n\
-----END PUBLIC KEY-----\n";

    fn hmac_config() -> TokenConfig {
        TokenConfig {
            hmac_secret_key: SECRET.into(),
            ..TokenConfig::default()
        }
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn at(offset: i64) -> i64 {
        1_700_000_000 + offset
    }

    fn sign_with(alg: Algorithm, key: &EncodingKey, claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
    }

    fn hs(claims: serde_json::Value) -> String {
        sign_hs256(&claims, SECRET).unwrap()
    }

    fn verify(token: &str) -> Result<ConnectionClaims, TokenError> {
        blocking_verify_connection_token(token, &hmac_config(), now())
    }

    fn b64url(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn hs256_token_is_valid() {
        let token = generate_token(
            "42",
            Some(Duration::from_secs(3600)),
            SECRET,
            Some(&json!({"name": "Alice"})),
        )
        .unwrap();
        let claims =
            blocking_verify_connection_token(&token, &hmac_config(), SystemTime::now()).unwrap();
        assert_eq!(claims.sub, "42");
        assert_eq!(claims.info.as_ref().unwrap().get(), r#"{"name":"Alice"}"#);
        assert_eq!(claims.info_bytes().unwrap(), br#"{"name":"Alice"}"#);
        let exp = claims.exp.unwrap();
        assert_eq!(claims.expires_at(), Some(exp as u64));
        assert!(claims.iat.is_some());

        // Anonymous, no expiry.
        let token = generate_token("", None, SECRET, None).unwrap();
        let claims = verify(&token).unwrap();
        assert_eq!(claims.sub, "");
        assert_eq!(claims.expires_at(), None);
    }

    #[test]
    fn hs384_and_hs512_are_accepted() {
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        for alg in [Algorithm::HS384, Algorithm::HS512] {
            let token = sign_with(alg, &key, &json!({"sub": "u", "exp": at(60)}));
            assert_eq!(verify(&token).unwrap().sub, "u", "{alg:?}");
        }
    }

    #[test]
    fn expired_and_not_yet_valid_tokens_are_expired() {
        assert_eq!(
            verify(&hs(json!({"sub": "u", "exp": at(-10)}))).unwrap_err(),
            TokenError::Expired
        );
        // exp == now is already expired.
        assert_eq!(
            verify(&hs(json!({"sub": "u", "exp": at(0)}))).unwrap_err(),
            TokenError::Expired
        );
        assert!(verify(&hs(json!({"sub": "u", "exp": at(1)}))).is_ok());
        assert_eq!(
            verify(&hs(json!({"sub": "u", "exp": -5}))).unwrap_err(),
            TokenError::Expired
        );
        assert_eq!(
            verify(&hs(json!({"sub": "u", "nbf": at(30)}))).unwrap_err(),
            TokenError::Expired
        );
        assert!(verify(&hs(json!({"sub": "u", "nbf": at(0)}))).is_ok());
        // Fractional NumericDate.
        assert!(verify(&hs(json!({"sub": "u", "exp": 1_700_000_100.5}))).is_ok());
        // decode_* skips only the time checks.
        let v = TokenVerifier::new(&hmac_config()).unwrap();
        let expired = hs(json!({"sub": "old", "exp": at(-10)}));
        assert_eq!(
            v.decode_connection_token_blocking(&expired, now())
                .unwrap()
                .sub,
            "old"
        );
    }

    #[test]
    fn forged_tokens_are_invalid() {
        let forged = sign_hs256(&json!({"sub": "admin"}), "another-secret").unwrap();
        let err = verify(&forged).unwrap_err();
        assert_eq!(err, TokenError::Invalid("signature does not match".into()));

        // Payload swapped under a genuine signature.
        let genuine = hs(json!({"sub": "bob"}));
        let parts: Vec<&str> = genuine.split('.').collect();
        let tampered = format!("{}.{}.{}", parts[0], b64url(r#"{"sub":"admin"}"#), parts[2]);
        assert!(matches!(verify(&tampered), Err(TokenError::Invalid(_))));

        for garbage in ["", "abc", "a.b", "a.b.c.d", "!!.e30.x", "e30.e30.e30"] {
            assert!(
                matches!(verify(garbage), Err(TokenError::Invalid(_))),
                "{garbage:?}"
            );
        }
        // A valid signature over claims that are not an object.
        assert!(matches!(
            verify(&hs(json!([1, 2]))),
            Err(TokenError::Invalid(_))
        ));
        assert!(matches!(
            verify(&hs(json!({"sub": 5}))),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn alg_none_is_refused() {
        for alg in ["none", "None", "NONE"] {
            let header = b64url(&format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
            let token = format!("{header}.{}.", b64url(r#"{"sub":"admin"}"#));
            let err = verify(&token).unwrap_err();
            assert!(
                matches!(&err, TokenError::Invalid(r) if r.contains("none")),
                "{err}"
            );
        }
        let header = b64url(r#"{"typ":"JWT"}"#);
        let token = format!("{header}.{}.sig", b64url(r#"{"sub":"a"}"#));
        assert!(matches!(verify(&token), Err(TokenError::Invalid(_))));
    }

    #[test]
    fn algorithm_must_match_a_configured_key() {
        // RS256 token, only an HMAC secret configured.
        let rsa_key = EncodingKey::from_rsa_pem(TEST_RSA_PRIVATE.as_bytes()).unwrap();
        let token = sign_with(Algorithm::RS256, &rsa_key, &json!({"sub": "u"}));
        let err = verify(&token).unwrap_err();
        assert!(
            matches!(&err, TokenError::Invalid(r) if r.contains("rsa_public_key")),
            "{err}"
        );

        // Classic confusion attack: HS256 signed with the RSA *public* key as the secret, sent
        // to a server configured with only that RSA public key.
        let rsa_only = TokenConfig {
            rsa_public_key: TEST_RSA_PUBLIC.into(),
            ..TokenConfig::default()
        };
        let forged = sign_hs256(&json!({"sub": "admin"}), TEST_RSA_PUBLIC).unwrap();
        let err = blocking_verify_connection_token(&forged, &rsa_only, now()).unwrap_err();
        assert!(
            matches!(&err, TokenError::Invalid(r) if r.contains("hmac_secret_key")),
            "{err}"
        );

        // PS256 is not a Centrifugo algorithm.
        let token = sign_with(Algorithm::PS256, &rsa_key, &json!({"sub": "u"}));
        assert!(matches!(
            blocking_verify_connection_token(&token, &rsa_only, now()),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn rs256_and_es256_tokens_verify_with_public_keys() {
        let cfg = TokenConfig {
            rsa_public_key: TEST_RSA_PUBLIC.into(),
            ecdsa_public_key: TEST_EC_PUBLIC.into(),
            ..TokenConfig::default()
        };
        let v = TokenVerifier::new(&cfg).unwrap();
        let rsa_key = EncodingKey::from_rsa_pem(TEST_RSA_PRIVATE.as_bytes()).unwrap();
        let ec_key = EncodingKey::from_ec_pem(TEST_EC_PRIVATE.as_bytes()).unwrap();
        let claims = json!({"sub": "u", "exp": at(60)});
        for alg in [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512] {
            let token = sign_with(alg, &rsa_key, &claims);
            assert_eq!(
                v.verify_connection_token_blocking(&token, now())
                    .unwrap()
                    .sub,
                "u"
            );
        }
        let token = sign_with(Algorithm::ES256, &ec_key, &claims);
        assert_eq!(
            v.verify_connection_token_blocking(&token, now())
                .unwrap()
                .sub,
            "u"
        );
        // ES256 signature presented as RS256 fails.
        let parts: Vec<&str> = token.split('.').collect();
        let relabeled = format!("{}.{}.{}", b64url(r#"{"alg":"RS256"}"#), parts[1], parts[2]);
        assert!(matches!(
            v.verify_connection_token_blocking(&relabeled, now()),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn connection_token_with_channel_is_invalid() {
        let err = verify(&hs(json!({"sub": "u", "channel": "news"}))).unwrap_err();
        assert!(
            matches!(&err, TokenError::Invalid(r) if r.contains("channel")),
            "{err}"
        );
        // Centrifugo only refuses a non-empty channel.
        assert!(verify(&hs(json!({"sub": "u", "channel": ""}))).is_ok());
    }

    #[test]
    fn expire_at_semantics() {
        let c = |exp: Option<i64>, expire_at: Option<i64>| ConnectionClaims {
            exp,
            expire_at,
            ..ConnectionClaims::default()
        };
        assert_eq!(c(Some(100), None).expires_at(), Some(100));
        assert_eq!(c(Some(100), Some(0)).expires_at(), None);
        assert_eq!(c(Some(100), Some(250)).expires_at(), Some(250));
        assert_eq!(c(None, Some(200)).expires_at(), Some(200));
        assert_eq!(c(None, Some(-5)).expires_at(), None);
        assert_eq!(c(None, None).expires_at(), None);
        assert_eq!(c(Some(0), None).expires_at(), None);

        // Through verification: the token is valid (exp in future), the connection never expires.
        let claims = verify(&hs(json!({"sub": "u", "exp": at(60), "expire_at": 0}))).unwrap();
        assert_eq!(claims.expire_at, Some(0));
        assert_eq!(claims.expires_at(), None);
        // expire_at does not stop a token whose exp passed from being expired.
        assert_eq!(
            verify(&hs(json!({"sub": "u", "exp": at(-1), "expire_at": 0}))).unwrap_err(),
            TokenError::Expired
        );
    }

    #[test]
    fn all_connection_claims_parse() {
        let token = hs(json!({
            "sub": "u1", "exp": at(60), "iat": at(-5), "nbf": at(-5), "jti": "t-1",
            "iss": "me", "aud": ["a", "b"],
            "info": {"name": "U"}, "b64info": "aGk=",
            "channels": ["news", "chat:1"],
            "subs": {"chat:2": {"info": {"r": 1}, "b64data": "eA==",
                                "override": {"presence": {"value": true}}}},
            "meta": {"plan": "pro"},
        }));
        let c = verify(&token).unwrap();
        assert_eq!(c.channels, vec!["news", "chat:1"]);
        assert_eq!(c.info_bytes().unwrap(), b"hi"); // b64info wins
        assert_eq!(c.meta.as_ref().unwrap().get(), r#"{"plan":"pro"}"#);
        let sub = &c.subs["chat:2"];
        assert_eq!(sub.info.as_ref().unwrap().get(), r#"{"r":1}"#);
        assert_eq!(
            sub.override_.as_ref().unwrap().presence,
            Some(BoolValue { value: true })
        );
        assert_eq!(c.aud, Some(Audience::Many(vec!["a".into(), "b".into()])));
        assert_eq!(c.jti.as_deref(), Some("t-1"));

        let err = verify(&hs(json!({"sub": "u", "b64info": "%%%"}))).unwrap_err();
        assert!(
            matches!(&err, TokenError::Invalid(r) if r.contains("b64info")),
            "{err}"
        );
        let err = verify(&hs(json!({"sub": "u", "subs": {"c": {"b64data": "%"}}}))).unwrap_err();
        assert!(
            matches!(&err, TokenError::Invalid(r) if r.contains("b64data")),
            "{err}"
        );
    }

    #[test]
    fn audience_and_issuer_are_checked_when_configured() {
        let cfg = TokenConfig {
            audience: "herald".into(),
            issuer: "backend".into(),
            ..hmac_config()
        };
        let check = |claims| blocking_verify_connection_token(&hs(claims), &cfg, now());
        assert!(check(json!({"sub": "u", "aud": "herald", "iss": "backend"})).is_ok());
        assert!(check(json!({"sub": "u", "aud": ["x", "herald"], "iss": "backend"})).is_ok());
        assert!(matches!(
            check(json!({"sub": "u", "iss": "backend"})),
            Err(TokenError::Invalid(_))
        ));
        assert!(matches!(
            check(json!({"sub": "u", "aud": "other", "iss": "backend"})),
            Err(TokenError::Invalid(_))
        ));
        assert!(matches!(
            check(json!({"sub": "u", "aud": "herald", "iss": "evil"})),
            Err(TokenError::Invalid(_))
        ));
        // Not configured: aud/iss are ignored.
        assert!(verify(&hs(json!({"sub": "u", "aud": "whatever", "iss": "x"}))).is_ok());
    }

    #[test]
    fn previous_hmac_key_works_until_its_deadline() {
        let old = sign_hs256(&json!({"sub": "u"}), "old-secret").unwrap();
        let mut cfg = TokenConfig {
            hmac_previous_secret_key: "old-secret".into(),
            hmac_previous_secret_key_valid_until: at(100),
            ..hmac_config()
        };
        assert!(blocking_verify_connection_token(&old, &cfg, now()).is_ok());
        assert!(blocking_verify_connection_token(&hs(json!({"sub": "u"})), &cfg, now()).is_ok());
        cfg.hmac_previous_secret_key_valid_until = at(-1);
        assert!(matches!(
            blocking_verify_connection_token(&old, &cfg, now()),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn user_id_claim_reads_another_claim() {
        let cfg = TokenConfig {
            user_id_claim: "user.id".into(),
            ..hmac_config()
        };
        let token = hs(json!({"sub": "ignored", "user": {"id": 77}}));
        assert_eq!(
            blocking_verify_connection_token(&token, &cfg, now())
                .unwrap()
                .sub,
            "77"
        );
    }

    #[test]
    fn subscription_tokens() {
        let cfg = hmac_config();
        let token = hs(json!({
            "sub": "u", "channel": "chat:1", "client": "c1", "exp": at(60),
            "info": {"role": "mod"}, "data": {"welcome": true},
            "override": {"join_leave": {"value": false}},
        }));
        let claims = blocking_verify_subscription_token(&token, &cfg, now()).unwrap();
        assert_eq!(claims.channel, "chat:1");
        assert_eq!(claims.expires_at(), Some(at(60) as u64));
        assert_eq!(claims.data.as_ref().unwrap().get(), r#"{"welcome":true}"#);
        assert_eq!(claims.info_bytes().unwrap(), br#"{"role":"mod"}"#);
        claims.check_for("u", "chat:1", "c1").unwrap();
        assert!(claims.check_for("u", "chat:2", "c1").is_err());
        assert!(claims.check_for("v", "chat:1", "c1").is_err());
        assert!(claims.check_for("u", "chat:1", "c2").is_err());

        let no_channel = hs(json!({"sub": "u"}));
        assert!(matches!(
            blocking_verify_subscription_token(&no_channel, &cfg, now()),
            Err(TokenError::Invalid(_))
        ));
        let expired = hs(json!({"sub": "u", "channel": "c", "exp": at(-1)}));
        assert_eq!(
            blocking_verify_subscription_token(&expired, &cfg, now()).unwrap_err(),
            TokenError::Expired
        );
        let never = hs(json!({"sub": "u", "channel": "c", "exp": at(60), "expire_at": 0}));
        assert_eq!(
            blocking_verify_subscription_token(&never, &cfg, now())
                .unwrap()
                .expires_at(),
            None
        );
    }

    #[test]
    fn verifier_refuses_unusable_settings() {
        let bad_pem = TokenConfig {
            rsa_public_key: "not a key".into(),
            ..TokenConfig::default()
        };
        let err = TokenVerifier::new(&bad_pem).unwrap_err();
        assert_eq!(err.option, "rsa_public_key");
        let jwks = TokenConfig {
            jwks_public_endpoint: "ftp://example.com/jwks".into(),
            ..TokenConfig::default()
        };
        assert_eq!(
            TokenVerifier::new(&jwks).unwrap_err().option,
            "jwks_public_endpoint"
        );
        // A JWKS endpoint alone is a key; nothing is fetched when the verifier is built.
        let jwks = TokenConfig {
            jwks_public_endpoint: "https://example.com/jwks".into(),
            ..TokenConfig::default()
        };
        assert!(TokenVerifier::new(&jwks).unwrap().has_key());
        let both = TokenConfig {
            audience: "a".into(),
            audience_regex: "^a$".into(),
            ..hmac_config()
        };
        let err = TokenVerifier::new(&both).unwrap_err();
        assert_eq!(err.option, "audience_regex");
        assert!(err.message.contains("not both"), "{err}");
        let both = TokenConfig {
            issuer: "a".into(),
            issuer_regex: "^a$".into(),
            ..hmac_config()
        };
        assert_eq!(
            TokenVerifier::new(&both).unwrap_err().option,
            "issuer_regex"
        );
        let bad = TokenConfig {
            issuer_regex: "(unclosed".into(),
            ..hmac_config()
        };
        let err = TokenVerifier::new(&bad).unwrap_err();
        assert_eq!(err.option, "issuer_regex");
        assert!(err.message.contains("regular expression"), "{err}");
        let none = TokenVerifier::new(&TokenConfig::default()).unwrap();
        assert!(!none.has_key());
        let err = none
            .verify_connection_token_blocking(&hs(json!({"sub": "u"})), now())
            .unwrap_err();
        assert!(
            matches!(&err, TokenError::Invalid(r) if r.contains("hmac_secret_key")),
            "{err}"
        );
        // Debug output never shows secrets.
        let shown = format!("{:?}", TokenVerifier::new(&hmac_config()).unwrap());
        assert!(!shown.contains(SECRET), "{shown}");
    }

    #[test]
    fn hmac_and_rsa_together_each_alg_uses_its_own_key_type() {
        let cfg = TokenConfig {
            rsa_public_key: TEST_RSA_PUBLIC.into(),
            ..hmac_config()
        };
        let v = TokenVerifier::new(&cfg).unwrap();
        let rsa_key = EncodingKey::from_rsa_pem(TEST_RSA_PRIVATE.as_bytes()).unwrap();
        let rs = sign_with(Algorithm::RS256, &rsa_key, &json!({"sub": "r"}));
        assert_eq!(
            v.verify_connection_token_blocking(&rs, now()).unwrap().sub,
            "r"
        );
        assert_eq!(
            v.verify_connection_token_blocking(&hs(json!({"sub": "h"})), now())
                .unwrap()
                .sub,
            "h"
        );
        // HS256 with the RSA public key as the secret: checked against the HMAC secret only.
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let forged = sign_with(
                alg,
                &EncodingKey::from_secret(TEST_RSA_PUBLIC.as_bytes()),
                &json!({"sub": "admin"}),
            );
            assert_eq!(
                v.verify_connection_token_blocking(&forged, now())
                    .unwrap_err(),
                TokenError::Invalid("signature does not match".into()),
                "{alg:?}"
            );
        }
        // An RS256 signature relabelled HS256 is not accepted either.
        let parts: Vec<&str> = rs.split('.').collect();
        let relabeled = format!("{}.{}.{}", b64url(r#"{"alg":"HS256"}"#), parts[1], parts[2]);
        assert!(matches!(
            v.verify_connection_token_blocking(&relabeled, now()),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn audience_and_issuer_regexes() {
        let cfg = TokenConfig {
            audience_regex: r"^https://app\.example\.(com|org)$".into(),
            issuer_regex: r"^tenant-[0-9]+$".into(),
            ..hmac_config()
        };
        let check = |claims| blocking_verify_connection_token(&hs(claims), &cfg, now());
        let good = json!({"sub": "u", "aud": "https://app.example.org", "iss": "tenant-7"});
        assert!(check(good).is_ok());
        assert!(
            check(json!({"sub": "u", "aud": ["x", "https://app.example.com"], "iss": "tenant-1"}))
                .is_ok()
        );
        for bad in [
            json!({"sub": "u", "aud": "https://app.example.net", "iss": "tenant-7"}),
            json!({"sub": "u", "iss": "tenant-7"}),
            json!({"sub": "u", "aud": "https://app.example.com", "iss": "tenant-x"}),
            json!({"sub": "u", "aud": "https://app.example.com"}),
        ] {
            let err = check(bad.clone()).unwrap_err();
            assert!(
                matches!(&err, TokenError::Invalid(r) if r.contains("regex")),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn jwks_key_selection() {
        // Nothing listens on this port: every JWKS lookup fails to fetch.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let cfg = TokenConfig {
            jwks_public_endpoint: format!("http://127.0.0.1:{port}/jwks"),
            ..hmac_config()
        };
        let v = TokenVerifier::new(&cfg).unwrap();
        let rsa_key = EncodingKey::from_rsa_pem(TEST_RSA_PRIVATE.as_bytes()).unwrap();
        let with_kid = |alg, kid: &str| {
            let mut header = Header::new(alg);
            header.kid = Some(kid.into());
            jsonwebtoken::encode(&header, &json!({"sub": "u"}), &rsa_key).unwrap()
        };
        // RS256 with a kid goes to the JWKS, which cannot be fetched.
        let err = v
            .verify_connection_token_blocking(&with_kid(Algorithm::RS256, "k1"), now())
            .unwrap_err();
        assert!(
            matches!(&err, TokenError::Invalid(r) if r.contains("k1") && r.contains("cannot be fetched")),
            "{err}"
        );
        // Without a kid (and no PEM key) the token can not name its key.
        let no_kid = sign_with(Algorithm::RS256, &rsa_key, &json!({"sub": "u"}));
        let err = v
            .verify_connection_token_blocking(&no_kid, now())
            .unwrap_err();
        assert!(
            matches!(&err, TokenError::Invalid(r) if r.contains("no kid")),
            "{err}"
        );
        // HS256 tokens never use the JWKS, kid or not.
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        let hs_kid = jsonwebtoken::encode(
            &header,
            &json!({"sub": "h"}),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            v.verify_connection_token_blocking(&hs_kid, now())
                .unwrap()
                .sub,
            "h"
        );
        // With a PEM key too, a token without kid uses the PEM key.
        let cfg = TokenConfig {
            rsa_public_key: TEST_RSA_PUBLIC.into(),
            ..cfg
        };
        let v = TokenVerifier::new(&cfg).unwrap();
        assert_eq!(
            v.verify_connection_token_blocking(&no_kid, now())
                .unwrap()
                .sub,
            "u"
        );
        // EdDSA needs a JWKS.
        let ed = format!(
            "{}.{}.c2ln",
            b64url(r#"{"alg":"EdDSA"}"#),
            b64url(r#"{"sub":"u"}"#)
        );
        let err = blocking_verify_connection_token(&ed, &hmac_config(), now()).unwrap_err();
        assert!(
            matches!(&err, TokenError::Invalid(r) if r.contains("jwks_public_endpoint")),
            "{err}"
        );
    }

    #[test]
    fn signing_needs_a_secret() {
        assert!(generate_token("u", None, "", None).is_err());
        assert!(generate_token("u", Some(Duration::from_secs(u64::MAX)), SECRET, None).is_err());
    }

    #[test]
    fn api_key_comparison() {
        assert!(api_key_matches("k3y", "k3y"));
        assert!(!api_key_matches("k3y", "k3z"));
        assert!(!api_key_matches("k3", "k3y"));
        assert!(!api_key_matches("", ""));
        assert!(!api_key_matches("anything", ""));
    }
}
