//! `client`: real-time client connections: tokens, origins, ping/pong, limits and the
//! personal channel.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ClientProxies;
use super::duration::go_duration;
use super::flat::flat_options;
use crate::glob::Glob;

flat_options! {
    /// `client.token`: how connection JWTs are verified (see [`crate::auth`]).
    ///
    /// A token's `alg` must match a configured key: HS* needs `hmac_secret_key`, RS* needs
    /// `rsa_public_key`, ES* needs `ecdsa_public_key`; RS*, ES* and EdDSA tokens with a `kid`
    /// use `jwks_public_endpoint` when it is set.
    options TokenConfig;
    /// `client.subscription_token`: a separate key set for subscription JWTs; when not `enabled`,
    /// subscription tokens are verified with `client.token`.
    wrapper SubscriptionTokenConfig {
        /// Verify subscription tokens with these settings instead of `client.token`.
        enabled: bool, token
    }
    via RawSubscriptionToken = "RawSubscriptionToken";
    fields {
        /// Shared secret for HS256/HS384/HS512 tokens.
        hmac_secret_key: String,
        /// The previous HMAC secret, still accepted during a key rotation.
        hmac_previous_secret_key: String,
        /// Unix seconds after which `hmac_previous_secret_key` is no longer accepted; 0 = forever.
        hmac_previous_secret_key_valid_until: i64,
        /// PEM public key for RS256/RS384/RS512 tokens.
        rsa_public_key: String,
        /// PEM public key (P-256 or P-384) for ES256/ES384 tokens.
        ecdsa_public_key: String,
        /// JWKS (RFC 7517) URL to fetch RSA, EC and Ed25519 verification keys from, by the
        /// token's `kid`: fetched at startup and hourly, and again (at most every 10 s) when a
        /// token names an unknown `kid`. http(s) only; no per-tenant templates.
        jwks_public_endpoint: String,
        /// When set, a token's `aud` must contain this value.
        audience: String,
        /// When set, some value of a token's `aud` must match this regex (unanchored, as in
        /// Centrifugo: write `^…$`). Not together with `audience`.
        audience_regex: String,
        /// When set, a token's `iss` must equal this value.
        issuer: String,
        /// When set, a token's `iss` must match this regex (unanchored). Not together with
        /// `issuer`.
        issuer_regex: String,
        /// Read the user id from this claim (dotted path) instead of `sub`.
        user_id_claim: String,
        /// Centrifugo's safety switch for templated (per-tenant) JWKS endpoints. Accepted; no
        /// effect, since Herald refuses templated endpoints.
        insecure_skip_jwks_endpoint_safety_check: bool,
    }
}

impl TokenConfig {
    /// Whether any verification key is configured (so tokens can be checked at all).
    pub fn has_key(&self) -> bool {
        !self.hmac_secret_key.is_empty()
            || !self.rsa_public_key.is_empty()
            || !self.ecdsa_public_key.is_empty()
            || !self.jwks_public_endpoint.is_empty()
    }
}

/// `client.subscribe_to_user_personal_channel`: subscribe every authenticated connection to its
/// user's personal channel server-side.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PersonalChannelConfig {
    /// Turn the feature on: on connect, a user's connections are subscribed to `ns:#user`.
    pub enabled: bool,
    /// Namespace of the personal channel (`ns:#user`); empty = no namespace.
    pub personal_channel_namespace: String,
    /// Keep a single connection per user: a new connection closes the user's others with
    /// 3504 (connection limit), as Centrifugo does.
    pub single_connection: bool,
}

/// `client`: real-time client connections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// The connect and refresh proxies.
    pub proxy: ClientProxies,
    /// Browser origins allowed to connect (`Origin` header); `"*"` allows all. Empty = only
    /// same-origin and non-browser clients (no `Origin` header).
    pub allowed_origins: Vec<String>,
    /// Connection token verification.
    pub token: TokenConfig,
    /// Subscription token verification (falls back to `token` unless enabled).
    pub subscription_token: SubscriptionTokenConfig,
    /// Allow a connect without any token, as an anonymous user.
    pub allow_anonymous_connect_without_token: bool,
    /// Refuse connection tokens with an empty `sub`.
    pub disallow_anonymous_connection_tokens: bool,
    /// How often the server pings an idle client. Default 25s.
    #[serde(with = "go_duration")]
    pub ping_interval: Duration,
    /// How long the server waits for a pong after a ping before disconnecting. Default 8s.
    #[serde(with = "go_duration")]
    pub pong_timeout: Duration,
    /// Extra time given to a client whose connection expired before it is closed. Default 25s.
    #[serde(with = "go_duration")]
    pub expired_close_delay: Duration,
    /// Same for an expired subscription. Default 25s.
    #[serde(with = "go_duration")]
    pub expired_sub_close_delay: Duration,
    /// A connection that sends no `connect` within this time is closed (3502). Default 10s.
    #[serde(with = "go_duration")]
    pub stale_close_delay: Duration,
    /// Maximum channels per connection (3505 beyond). Default 128.
    pub channel_limit: usize,
    /// Maximum bytes queued for one slow client before it is disconnected (3008). Default 1 MiB.
    pub queue_max_size: usize,
    /// How often presence entries are refreshed. Default 27s.
    #[serde(with = "go_duration")]
    pub presence_update_interval: Duration,
    /// Centrifugo command concurrency per connection. Not implemented (warned about): Herald
    /// handles a connection's commands in order.
    pub concurrency: usize,
    /// How often a positioned subscription's stream position is checked. Default 40s.
    #[serde(with = "go_duration")]
    pub channel_position_check_delay: Duration,
    /// Centrifugo position-check lag tolerance. Accepted.
    #[serde(with = "go_duration")]
    pub channel_position_max_time_lag: Duration,
    /// Maximum open WebSocket connections on this node (a handshake beyond gets HTTP 503; see
    /// [`crate::limits`]); 0 = unlimited.
    pub connection_limit: usize,
    /// Maximum connections of one user on this node; 0 = unlimited.
    pub user_connection_limit: usize,
    /// Maximum new WebSocket connections per second on this node (beyond: HTTP 503; see
    /// [`crate::limits`]); 0 = unlimited.
    pub connection_rate_limit: usize,
    /// Include the server time in the connect reply.
    pub connect_include_server_time: bool,
    /// Maximum publications returned by one history call. Default 300.
    pub history_max_publication_limit: usize,
    /// Maximum publications a recovering subscription may receive. Default 300.
    pub recovery_max_publication_limit: usize,
    /// DANGEROUS: accept tokens without checking their signature. Accepted; development only.
    pub insecure_skip_token_signature_verify: bool,
    /// Take the user id from this HTTP header (behind an authenticating proxy).
    pub user_id_http_header: String,
    /// DANGEROUS, development only: Centrifugo's insecure client mode. Clients connect without
    /// a token (anonymous) and may subscribe to every channel but private ones, publish, and
    /// read presence and history; connections never expire. Logged as a WARN at start-up.
    pub insecure: bool,
    /// Server-side subscription to the user's personal channel.
    pub subscribe_to_user_personal_channel: PersonalChannelConfig,
    /// The disconnect a unidirectional client is sent for a connect refused with an error.
    pub connect_code_to_unidirectional_disconnect: ConnectCodeToUnidirectionalDisconnect,
}

/// `client.connect_code_to_unidirectional_disconnect`: a unidirectional client reads no error
/// replies, so a connect refused with an error is said as a disconnect; these transforms choose
/// which (the built-in mapping otherwise: 101 → 3500, 109 → 3005, …, see docs/protocol.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectCodeToUnidirectionalDisconnect {
    /// Turn the transforms on.
    pub enabled: bool,
    /// Error code → disconnect; the first match wins.
    pub transforms: Vec<UnidirectionalDisconnectTransform>,
}

/// One entry of [`ConnectCodeToUnidirectionalDisconnect::transforms`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UnidirectionalDisconnectTransform {
    /// The connect error code (101 unauthorized, 109 token expired…).
    pub code: u32,
    /// The disconnect it becomes.
    pub to: DisconnectTransform,
}

/// A disconnect's code and reason, as configured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DisconnectTransform {
    /// The disconnect code (3000–4999; 3500–3999 and 4500–4999 tell the client not to
    /// reconnect).
    pub code: u16,
    /// The reason (ASCII, at most 123 bytes: it also goes into a WebSocket close frame).
    pub reason: String,
}

impl ConnectCodeToUnidirectionalDisconnect {
    /// The configured disconnect for a connect refused with error `code`, when enabled.
    pub fn disconnect_for(&self, code: u32) -> Option<&DisconnectTransform> {
        if !self.enabled {
            return None;
        }
        self.transforms
            .iter()
            .find(|t| t.code == code)
            .map(|t| &t.to)
    }

    /// What is wrong with the transforms, each problem naming its option.
    pub(super) fn problems(&self, problems: &mut Vec<String>) {
        let at = "client.connect_code_to_unidirectional_disconnect.transforms";
        for (i, t) in self.transforms.iter().enumerate() {
            if t.code == 0 {
                problems.push(format!("{at}[{i}].code must be set"));
            }
            if !(3000..=4999).contains(&t.to.code) {
                problems.push(format!(
                    "{at}[{i}].to.code must be a disconnect code (3000-4999), got {}",
                    t.to.code
                ));
            }
            if !t.to.reason.is_ascii() || t.to.reason.len() > 123 {
                problems.push(format!(
                    "{at}[{i}].to.reason must be ASCII and at most 123 bytes"
                ));
            }
        }
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            proxy: ClientProxies::default(),
            allowed_origins: Vec::new(),
            token: TokenConfig::default(),
            subscription_token: SubscriptionTokenConfig::default(),
            allow_anonymous_connect_without_token: false,
            disallow_anonymous_connection_tokens: false,
            ping_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(8),
            expired_close_delay: Duration::from_secs(25),
            expired_sub_close_delay: Duration::from_secs(25),
            stale_close_delay: Duration::from_secs(10),
            channel_limit: 128,
            queue_max_size: 1_048_576,
            presence_update_interval: Duration::from_secs(27),
            concurrency: 0,
            channel_position_check_delay: Duration::from_secs(40),
            channel_position_max_time_lag: Duration::ZERO,
            connection_limit: 0,
            user_connection_limit: 0,
            connection_rate_limit: 0,
            connect_include_server_time: false,
            history_max_publication_limit: 300,
            recovery_max_publication_limit: 300,
            insecure_skip_token_signature_verify: false,
            user_id_http_header: String::new(),
            insecure: false,
            subscribe_to_user_personal_channel: PersonalChannelConfig::default(),
            connect_code_to_unidirectional_disconnect:
                ConnectCodeToUnidirectionalDisconnect::default(),
        }
    }
}

impl ClientConfig {
    /// Whether a browser page from `origin` may connect. Entries are matched ignoring ASCII
    /// case, and `*` in an entry matches any run of characters (as Centrifugo's glob patterns):
    /// `"*"` allows all, `"https://*.example.com"` allows every subdomain.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        self.allowed_origins
            .iter()
            .any(|allowed| Glob::stars(&allowed.to_ascii_lowercase()).matches(&origin))
    }
}
