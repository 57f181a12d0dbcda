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

mod claims;
pub mod jwks;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use regex::Regex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use subtle::ConstantTimeEq;

use self::jwks::Jwks;
use crate::config::TokenConfig;
use claims::CommonClaims;
pub use claims::{
    Audience, BoolValue, ConnectionClaims, SubscribeOptions, SubscribeOverride, SubscriptionClaims,
};

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
