//! Authentication: connection and subscription JWTs (protocol.md §9) and the server API key.
//!
//! Connection tokens are verified the way Centrifugo verifies them, so tokens minted by an
//! application's backend for Centrifugo work unchanged:
//!
//! * the token's `alg` must be one of HS256/384/512 (with `client.token.hmac_secret_key`),
//!   RS256/384/512 (with `client.token.rsa_public_key`) or ES256/384
//!   (with `client.token.ecdsa_public_key`); `alg: none`, or an algorithm whose key is not
//!   configured, is refused — so an RSA public key can never be used as an HMAC secret;
//! * a bad signature, a malformed token, a wrong `aud`/`iss`, or a connection token carrying a
//!   `channel` claim is [`TokenError::Invalid`] (the server disconnects with 3500);
//! * an `exp` in the past, or an `nbf` in the future, is [`TokenError::Expired`] (the server
//!   answers error 109 so that the client SDK fetches a fresh token).
//!
//! Build one [`TokenVerifier`] at startup (it parses the keys once); the free functions
//! [`verify_connection_token`] and [`verify_subscription_token`] are conveniences that build one
//! per call.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use subtle::ConstantTimeEq;

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
/// [`TokenVerifier::new`]; verifying is then cheap and needs no locking (`Send + Sync`, clone it
/// or share it in an `Arc`).
#[derive(Clone)]
pub struct TokenVerifier {
    hmac: Option<DecodingKey>,
    hmac_previous: Option<DecodingKey>,
    hmac_previous_valid_until: i64,
    rsa: Option<DecodingKey>,
    ecdsa: Option<DecodingKey>,
    audience: String,
    issuer: String,
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
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("user_id_claim", &self.user_id_claim)
            .finish()
    }
}

fn non_empty(s: &str) -> Option<&str> {
    Some(s.trim()).filter(|s| !s.is_empty())
}

impl TokenVerifier {
    /// Parses the keys of `cfg`. Fails on a key that is not valid PEM, and on options Herald does
    /// not implement yet (`jwks_public_endpoint`, `audience_regex`, `issuer_regex`) rather than
    /// silently ignoring them.
    pub fn new(cfg: &TokenConfig) -> Result<TokenVerifier, TokenConfigError> {
        let unsupported = |option: &'static str| TokenConfigError {
            option,
            message: "is not supported by Herald yet; remove it".into(),
        };
        if non_empty(&cfg.jwks_public_endpoint).is_some() {
            return Err(unsupported("jwks_public_endpoint"));
        }
        if non_empty(&cfg.audience_regex).is_some() {
            return Err(unsupported("audience_regex"));
        }
        if non_empty(&cfg.issuer_regex).is_some() {
            return Err(unsupported("issuer_regex"));
        }
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
                    message: format!("not an ECDSA public key in PEM format ({e})"),
                })
            })
            .transpose()?;
        let secret = |s: &str| (!s.is_empty()).then(|| DecodingKey::from_secret(s.as_bytes()));
        Ok(TokenVerifier {
            hmac: secret(&cfg.hmac_secret_key),
            hmac_previous: secret(&cfg.hmac_previous_secret_key),
            hmac_previous_valid_until: cfg.hmac_previous_secret_key_valid_until,
            rsa,
            ecdsa,
            audience: cfg.audience.clone(),
            issuer: cfg.issuer.clone(),
            user_id_claim: cfg.user_id_claim.clone(),
        })
    }

    /// Whether any key is configured; without one every token is refused.
    pub fn has_key(&self) -> bool {
        self.hmac.is_some() || self.rsa.is_some() || self.ecdsa.is_some()
    }

    /// Verifies a connection token at time `now`: signature, algorithm, `aud`/`iss`, no
    /// `channel` claim, then `exp`/`nbf` ([`TokenError::Expired`]).
    pub fn verify_connection_token(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<ConnectionClaims, TokenError> {
        let claims = self.decode_connection_token(token, now)?;
        check_time(claims.exp, claims.nbf, now)?;
        Ok(claims)
    }

    /// Everything [`TokenVerifier::verify_connection_token`] checks except `exp`/`nbf`: for tools
    /// (`herald checktoken`) that want to show who an expired token was for. Never use it to
    /// admit a connection.
    pub fn decode_connection_token(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<ConnectionClaims, TokenError> {
        let claims: ConnectionClaims = self.decode(token, now)?;
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
    pub fn verify_subscription_token(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<SubscriptionClaims, TokenError> {
        let claims: SubscriptionClaims = self.decode(token, now)?;
        check_time(claims.exp, claims.nbf, now)?;
        if claims.channel.is_empty() {
            return Err(TokenError::invalid(
                "a subscription token needs a channel claim",
            ));
        }
        Ok(claims)
    }

    /// Signature, algorithm and claim-format checks shared by both token kinds.
    fn decode<T: DeserializeOwned + CommonClaims>(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<T, TokenError> {
        let alg = header_algorithm(token)?;
        let (keys, option): (Vec<&DecodingKey>, &str) = match alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                let mut keys: Vec<&DecodingKey> = self.hmac.iter().collect();
                let previous_valid = self.hmac_previous_valid_until <= 0
                    || unix_seconds(now) <= self.hmac_previous_valid_until;
                if previous_valid {
                    keys.extend(self.hmac_previous.iter());
                }
                (keys, "hmac_secret_key")
            }
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => {
                (self.rsa.iter().collect(), "rsa_public_key")
            }
            Algorithm::ES256 | Algorithm::ES384 => {
                (self.ecdsa.iter().collect(), "ecdsa_public_key")
            }
            other => {
                return Err(TokenError::invalid(format!(
                    "algorithm {other:?} is not accepted (use HS256/384/512, RS256/384/512 or ES256/384)"
                )));
            }
        };
        if keys.is_empty() {
            return Err(TokenError::invalid(format!(
                "token is signed with {alg:?} but no {option} is configured"
            )));
        }
        let mut validation = Validation::new(alg);
        // Time, audience and issuer are checked below against the caller's `now` and the
        // Centrifugo rules, not jsonwebtoken's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        validation.leeway = 0;

        let mut last_error = None;
        let mut payload = None;
        for key in keys {
            match jsonwebtoken::decode::<Box<RawValue>>(token, key, &validation) {
                Ok(data) => {
                    payload = Some(data.claims);
                    break;
                }
                Err(e) => last_error = Some(e),
            }
        }
        let Some(payload) = payload else {
            let reason = match last_error {
                Some(e)
                    if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature) =>
                {
                    "signature does not match".to_string()
                }
                Some(e) => e.to_string(),
                None => "cannot be verified".to_string(),
            };
            return Err(TokenError::Invalid(reason));
        };
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
        if let Some(issuer) = non_empty(&self.issuer)
            && claims.iss() != Some(issuer)
        {
            return Err(TokenError::invalid(
                "iss does not match the configured issuer",
            ));
        }
        for (name, value) in claims.base64_fields() {
            if !value.is_empty() && STANDARD.decode(value).is_err() {
                return Err(TokenError::invalid(format!("{name} is not valid base64")));
            }
        }
        Ok(claims)
    }
}

/// The `alg` of a token's header, refusing `none` and unknown algorithms with a clear reason.
fn header_algorithm(token: &str) -> Result<Algorithm, TokenError> {
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
    alg.parse::<Algorithm>()
        .map_err(|_| TokenError::invalid(format!("unknown algorithm \"{alg}\"")))
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

/// Verifies a connection token against `cfg` at time `now` (builds a [`TokenVerifier`] per call:
/// prefer one built at startup on hot paths). An unusable key configuration gives
/// [`TokenError::Invalid`].
pub fn verify_connection_token(
    token: &str,
    cfg: &TokenConfig,
    now: SystemTime,
) -> Result<ConnectionClaims, TokenError> {
    TokenVerifier::new(cfg)
        .map_err(|e| TokenError::Invalid(format!("server token settings: {e}")))?
        .verify_connection_token(token, now)
}

/// Verifies a subscription token against `cfg` at time `now` (see
/// [`verify_connection_token`]).
pub fn verify_subscription_token(
    token: &str,
    cfg: &TokenConfig,
    now: SystemTime,
) -> Result<SubscriptionClaims, TokenError> {
    TokenVerifier::new(cfg)
        .map_err(|e| TokenError::Invalid(format!("server token settings: {e}")))?
        .verify_subscription_token(token, now)
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
        verify_connection_token(token, &hmac_config(), now())
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
        let claims = verify_connection_token(&token, &hmac_config(), SystemTime::now()).unwrap();
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
            v.decode_connection_token(&expired, now()).unwrap().sub,
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
        let err = verify_connection_token(&forged, &rsa_only, now()).unwrap_err();
        assert!(
            matches!(&err, TokenError::Invalid(r) if r.contains("hmac_secret_key")),
            "{err}"
        );

        // PS256 is not a Centrifugo algorithm.
        let token = sign_with(Algorithm::PS256, &rsa_key, &json!({"sub": "u"}));
        assert!(matches!(
            verify_connection_token(&token, &rsa_only, now()),
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
            assert_eq!(v.verify_connection_token(&token, now()).unwrap().sub, "u");
        }
        let token = sign_with(Algorithm::ES256, &ec_key, &claims);
        assert_eq!(v.verify_connection_token(&token, now()).unwrap().sub, "u");
        // ES256 signature presented as RS256 fails.
        let parts: Vec<&str> = token.split('.').collect();
        let relabeled = format!("{}.{}.{}", b64url(r#"{"alg":"RS256"}"#), parts[1], parts[2]);
        assert!(matches!(
            v.verify_connection_token(&relabeled, now()),
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
        let check = |claims| verify_connection_token(&hs(claims), &cfg, now());
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
        assert!(verify_connection_token(&old, &cfg, now()).is_ok());
        assert!(verify_connection_token(&hs(json!({"sub": "u"})), &cfg, now()).is_ok());
        cfg.hmac_previous_secret_key_valid_until = at(-1);
        assert!(matches!(
            verify_connection_token(&old, &cfg, now()),
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
            verify_connection_token(&token, &cfg, now()).unwrap().sub,
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
        let claims = verify_subscription_token(&token, &cfg, now()).unwrap();
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
            verify_subscription_token(&no_channel, &cfg, now()),
            Err(TokenError::Invalid(_))
        ));
        let expired = hs(json!({"sub": "u", "channel": "c", "exp": at(-1)}));
        assert_eq!(
            verify_subscription_token(&expired, &cfg, now()).unwrap_err(),
            TokenError::Expired
        );
        let never = hs(json!({"sub": "u", "channel": "c", "exp": at(60), "expire_at": 0}));
        assert_eq!(
            verify_subscription_token(&never, &cfg, now())
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
            jwks_public_endpoint: "https://example.com/jwks".into(),
            ..TokenConfig::default()
        };
        assert_eq!(
            TokenVerifier::new(&jwks).unwrap_err().option,
            "jwks_public_endpoint"
        );
        let none = TokenVerifier::new(&TokenConfig::default()).unwrap();
        assert!(!none.has_key());
        let err = none
            .verify_connection_token(&hs(json!({"sub": "u"})), now())
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
