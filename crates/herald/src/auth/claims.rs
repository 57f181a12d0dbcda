//! The claims of connection and subscription tokens, as Centrifugo defines them, and how
//! they read (audiences, expiry, base64 info, overrides).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use super::*;

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

pub(super) fn expiry(expire_at: Option<i64>, exp: Option<i64>) -> Option<u64> {
    match expire_at {
        Some(at) => u64::try_from(at).ok().filter(|at| *at > 0),
        None => exp.and_then(|e| u64::try_from(e).ok()).filter(|e| *e > 0),
    }
}

pub(super) fn info_bytes(b64: Option<&str>, raw: Option<&RawValue>) -> Option<Vec<u8>> {
    match b64.filter(|s| !s.is_empty()) {
        Some(b64) => STANDARD.decode(b64).ok(),
        None => raw.map(|r| r.get().as_bytes().to_vec()),
    }
}

/// JWT NumericDate: an integer or a fractional number of seconds (fraction dropped), or null.
pub(super) fn numeric_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    pub(super) enum Num {
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
pub(super) trait CommonClaims {
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
