//! Validation: whether the options make sense together, and whether any option is set that
//! Herald would ignore to the user's harm (refused by [`super::audit`]) or harmlessly (warned).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use super::{Config, ConfigError, MAX_WORKERS, NamespaceOptions, RecoveryMode, format_duration};

/// The longest `websocket.write_max_hold`: write pacing counts the busy connections over 250 ms
/// periods, and one held longer than a period would go uncounted.
const MAX_WRITE_HOLD: Duration = Duration::from_millis(200);

impl Config {
    /// Checks that the options make sense together and that no option is set that Herald would
    /// ignore to the user's harm (the "refused" ones of [`crate::config::audit`]). Every message
    /// names the option at fault, and all problems are reported at once
    /// ([`ConfigError::Problems`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems: Vec<String> = Vec::new();
        let c = &self.client;
        for (name, d) in [
            ("client.ping_interval", c.ping_interval),
            ("client.pong_timeout", c.pong_timeout),
            ("client.stale_close_delay", c.stale_close_delay),
            ("websocket.write_timeout", self.websocket.write_timeout),
            (
                "http_server.body_read_timeout",
                self.http_server.body_read_timeout,
            ),
        ] {
            if d.is_zero() {
                problems.push(format!("{name} must be greater than zero"));
            }
        }
        if c.pong_timeout >= c.ping_interval {
            problems.push(format!(
                "client.pong_timeout ({}) must be shorter than client.ping_interval ({})",
                format_duration(c.pong_timeout),
                format_duration(c.ping_interval)
            ));
        }
        for (name, n) in [
            ("client.queue_max_size", c.queue_max_size),
            ("client.channel_limit", c.channel_limit),
            (
                "websocket.message_size_limit",
                self.websocket.message_size_limit,
            ),
            ("channel.max_length", self.channel.max_length),
        ] {
            if n == 0 {
                problems.push(format!("{name} must be greater than zero"));
            }
        }
        if self.workers > MAX_WORKERS {
            problems.push(format!(
                "workers must be at most {MAX_WORKERS} (0 = one per CPU core), got {}",
                self.workers
            ));
        }
        if self.websocket.write_budget == 0 {
            problems.push(
                "websocket.write_budget must be greater than zero (to turn write pacing off, \
                 set websocket.write_coalesce: 0s)"
                    .to_string(),
            );
        }
        let hold = self.websocket.write_max_hold;
        if hold.is_zero() || hold > MAX_WRITE_HOLD {
            problems.push(format!(
                "websocket.write_max_hold must be greater than zero and at most {}, got {}",
                format_duration(MAX_WRITE_HOLD),
                format_duration(hold)
            ));
        }
        if self.websocket.compression_level > 9 {
            problems.push(format!(
                "websocket.compression_level must be between 0 and 9, got {}",
                self.websocket.compression_level
            ));
        }
        for (name, prefix) in [
            ("http_api.handler_prefix", &self.http_api.handler_prefix),
            ("websocket.handler_prefix", &self.websocket.handler_prefix),
            ("prometheus.handler_prefix", &self.prometheus.handler_prefix),
            ("health.handler_prefix", &self.health.handler_prefix),
        ] {
            if !prefix.starts_with('/') {
                problems.push(format!("{name} must start with \"/\", got \"{prefix}\""));
            }
        }
        super::streaming::problems(self, &mut problems);
        c.connect_code_to_unidirectional_disconnect
            .problems(&mut problems);
        if !self.admin.handler_prefix.is_empty() && !self.admin.handler_prefix.starts_with('/') {
            problems.push(format!(
                "admin.handler_prefix must be empty or start with \"/\", got \"{}\"",
                self.admin.handler_prefix
            ));
        }
        if let Some(i) = c.allowed_origins.iter().position(|o| o.trim().is_empty()) {
            problems.push(format!("client.allowed_origins[{i}] is empty"));
        }
        if self.admin.enabled
            && !self.admin.insecure
            && (self.admin.password.is_empty() || self.admin.secret.is_empty())
        {
            problems.push(
                "admin.enabled needs admin.password and admin.secret (or admin.insecure)"
                    .to_string(),
            );
        }
        if self.channel.namespace_boundary.is_empty() {
            problems.push("channel.namespace_boundary must not be empty".to_string());
        }
        if self.demo && self.channel.naming() != crate::channel::DEFAULT_NAMING {
            problems.push(
                "demo: the demo chat names its channels with the default channel.private_prefix, \
                 namespace_boundary, user_boundary and user_separator: remove those options or \
                 demo"
                    .to_string(),
            );
        }
        if self.demo
            && self.websocket.handler_prefix.trim_end_matches('/') != crate::server::WEBSOCKET_PATH
        {
            problems.push(
                "demo: the demo chat connects to /connection/websocket: remove \
                 websocket.handler_prefix or demo"
                    .to_string(),
            );
        }
        if self.channel.history_meta_ttl.is_zero() {
            problems.push("channel.history_meta_ttl must be greater than zero".to_string());
        }
        problems.extend(self.http_server.tls.problems());
        let mut redis_sections = Vec::new();
        if self.engine.kind == crate::config::EngineType::Redis {
            redis_sections.push(("engine.redis", &self.engine.redis));
        }
        if self.presence_manager.uses_redis() {
            redis_sections.push(("presence_manager.redis", &self.presence_manager.redis));
        }
        for (at, redis) in redis_sections {
            problems.extend(redis.problems(at));
            // Each node re-adds its presence entries every presence_update_interval: a TTL not
            // above it would drop live clients from presence between two refreshes.
            let (ttl, every) = (redis.presence_ttl, c.presence_update_interval);
            if every.is_zero() || ttl <= every {
                problems.push(format!(
                    "{at}.presence_ttl ({ttl:?}) must be longer than \
                     client.presence_update_interval ({every:?}, which must be above zero): \
                     nodes refresh their clients' presence at that interval, and entries not \
                     refreshed within the TTL expire (Centrifugo's defaults: 60s and 27s)"
                ));
            }
        }
        problems.extend(self.webhooks.problems());
        problems.extend(crate::webhooks::cluster_problems(self));

        if let Err(e) = crate::auth::TokenVerifier::new(&c.token) {
            problems.push(format!("client.token: {e}"));
        }
        if c.subscription_token.enabled {
            if !c.subscription_token.token.has_key() {
                problems.push(
                    "client.subscription_token.enabled needs a key \
                     (client.subscription_token.hmac_secret_key, rsa_public_key, ecdsa_public_key \
                     or jwks_public_endpoint)"
                        .to_string(),
                );
            }
            if let Err(e) = crate::auth::TokenVerifier::new(&c.subscription_token.token) {
                problems.push(format!("client.subscription_token: {e}"));
            }
        }

        validate_namespace_options(
            "channel.without_namespace",
            &self.channel.without_namespace,
            self.channel.history_meta_ttl,
            &mut problems,
        );
        let mut seen = BTreeSet::new();
        for (i, ns) in self.channel.namespaces.iter().enumerate() {
            let at = format!("channel.namespaces[{i}]");
            if ns.name.is_empty() {
                problems.push(format!("{at}.name is missing"));
            }
            if !ns
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            {
                problems.push(format!(
                    "{at}.name \"{}\" may only contain letters, digits, '_', '-' and '.'",
                    ns.name
                ));
            }
            let boundary = self.channel.namespace_boundary.as_str();
            if !boundary.is_empty() && ns.name.contains(boundary) {
                problems.push(format!(
                    "{at}.name \"{}\" contains channel.namespace_boundary \"{boundary}\", so no \
                     channel name can reach it: rename the namespace or change the boundary",
                    ns.name
                ));
            }
            if !seen.insert(ns.name.as_str()) {
                problems.push(format!("{at}.name \"{}\" is used twice", ns.name));
            }
            validate_namespace_options(
                &format!("{at} (\"{}\")", ns.name),
                &ns.options,
                self.channel.history_meta_ttl,
                &mut problems,
            );
        }
        let personal = &c.subscribe_to_user_personal_channel;
        if personal.enabled
            && !personal.personal_channel_namespace.is_empty()
            && self
                .namespace(&personal.personal_channel_namespace)
                .is_none()
        {
            problems.push(format!(
                "client.subscribe_to_user_personal_channel.personal_channel_namespace \"{}\" \
                 is not in channel.namespaces",
                personal.personal_channel_namespace
            ));
        }
        problems.extend(super::proxy::problems(self));
        problems.extend(
            crate::config::audit::audit(self)
                .into_iter()
                .filter(|f| f.severity == crate::config::audit::Severity::Refused)
                .map(|f| f.to_string()),
        );
        ConfigError::from_problems(problems.into_iter().map(ConfigError::Invalid).collect())
    }

    /// Options that are set but that Herald does not implement and that are harmless to
    /// ignore, each as `path: what happens` (the "warned" ones of [`crate::config::audit`]), for
    /// `main` to log as warnings at start-up and `checkconfig` to list.
    pub fn warnings(&self) -> Vec<String> {
        crate::config::audit::audit(self)
            .into_iter()
            .filter(|f| f.severity == crate::config::audit::Severity::Warned)
            .map(|f| f.to_string())
            .collect()
    }
}

/// Whether an opaque section's value turns something on (so ignoring it matters): `false`, `0`,
/// `""`, empty lists/objects and objects of only such values do not.
pub(crate) fn is_active(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => m.values().any(is_active),
    }
}

fn validate_namespace_options(
    at: &str,
    o: &NamespaceOptions,
    global_meta_ttl: Duration,
    out: &mut Vec<String>,
) {
    let mut problems: Vec<String> = Vec::new();
    if o.history_ttl.subsec_nanos() != 0 || o.history_meta_ttl.subsec_nanos() != 0 {
        problems.push("history_ttl and history_meta_ttl must be whole seconds".to_string());
    }
    if (o.history_size == 0) != o.history_ttl.is_zero() {
        problems.push("history needs both history_size and history_ttl (or neither)".to_string());
    }
    let meta_ttl = if o.history_meta_ttl.is_zero() {
        global_meta_ttl
    } else {
        o.history_meta_ttl
    };
    if o.history_ttl > meta_ttl {
        problems.push(format!(
            "history_ttl ({}) can not be longer than history_meta_ttl ({})",
            format_duration(o.history_ttl),
            format_duration(meta_ttl)
        ));
    }
    if o.force_recovery && !o.history_enabled() {
        problems.push("force_recovery needs history (history_size and history_ttl)".to_string());
    }
    if o.force_positioning && !o.history_enabled() {
        problems.push("force_positioning needs history (history_size and history_ttl)".to_string());
    }
    if o.auto_cache_recover && (!o.force_recovery || o.force_recovery_mode != RecoveryMode::Cache) {
        problems.push(
            "auto_cache_recover needs force_recovery and force_recovery_mode \"cache\"".to_string(),
        );
    }
    if let Some(t) = o
        .allowed_delta_types
        .iter()
        .find(|t| t.as_str() != "fossil")
    {
        problems.push(format!(
            "allowed_delta_types: unknown delta type \"{t}\" (only \"fossil\")"
        ));
    }
    out.extend(problems.into_iter().map(|m| format!("{at}: {m}")));
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;

    use crate::config::*;

    #[test]
    fn workers_default_to_the_cores_and_are_bounded() {
        assert_eq!(Config::default().workers, 0, "0 = one per CPU core");
        let c = Config::load_with_env(None, env(&[("HERALD_WORKERS", "1")])).unwrap();
        assert_eq!(c.workers, 1);
        let path = write_temp("w.json", r#"{"workers": 5000}"#);
        let err = Config::load_with_env(Some(&path), no_env()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: workers must be at most 1024 (0 = one per CPU core), got 5000"
        );
    }

    #[test]
    fn the_presence_ttl_must_outlast_the_refresh_interval() {
        let redis = r#"{"engine": {"type": "redis", "redis": {"presence_ttl": "3s"}},
                        "client": {"presence_update_interval": "1s"}}"#;
        let c = Config::load_with_env(Some(&write_temp("p.json", redis)), no_env()).unwrap();
        assert_eq!(
            c.engine.redis.presence_ttl,
            std::time::Duration::from_secs(3)
        );
        for bad in [
            r#"{"engine": {"type": "redis", "redis": {"presence_ttl": "20s"}}}"#,
            r#"{"engine": {"type": "redis"}, "client": {"presence_update_interval": "0s"}}"#,
        ] {
            let err = Config::load_with_env(Some(&write_temp("p.json", bad)), no_env())
                .unwrap_err()
                .to_string();
            assert!(err.contains("engine.redis.presence_ttl"), "{err}");
            assert!(err.contains("client.presence_update_interval"), "{err}");
        }
        // The same for a Redis presence manager, named where it is.
        let bad = r#"{"presence_manager": {"enabled": true, "type": "redis",
                                           "redis": {"presence_ttl": "20s"}}}"#;
        let err = Config::load_with_env(Some(&write_temp("p.json", bad)), no_env())
            .unwrap_err()
            .to_string();
        assert!(err.contains("presence_manager.redis.presence_ttl"), "{err}");
        // Without the Redis engine neither is looked at.
        let embedded = r#"{"client": {"presence_update_interval": "0s"}}"#;
        assert!(Config::load_with_env(Some(&write_temp("p.json", embedded)), no_env()).is_ok());
    }

    #[test]
    fn tls_options_are_checked_and_the_unimplemented_ones_reported() {
        let refused = [
            (
                r#"{"http_server": {"tls": {"enabled": true}}}"#,
                "needs a certificate",
            ),
            (
                r#"{"http_server": {"tls": {"enabled": true, "cert_pem_file": "c"}}}"#,
                "needs a key",
            ),
            (
                r#"{"http_server": {"tls": {"enabled": true, "cert_pem_file": "c",
                   "cert_pem": "x", "key_pem_file": "k"}}}"#,
                "http_server.tls.cert_pem_file and http_server.tls.cert_pem",
            ),
            (
                r#"{"http_server": {"tls": {"enabled": true, "cert_pem_file": "c",
                   "key_pem_file": "k", "client_ca_pem": "x"}}}"#,
                "http_server.tls.client_ca_pem: client certificates",
            ),
            (
                r#"{"http_server": {"tls_autocert": {"enabled": true}}}"#,
                "http_server.tls_autocert",
            ),
        ];
        for (text, expected) in refused {
            let err = json(text).unwrap().validate().unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
        let c = json(
            r#"{"http_server": {"tls": {"enabled": true, "cert_pem_file": "c",
               "key_pem_file": "k", "server_name": "x", "insecure_skip_verify": true}}}"#,
        )
        .unwrap();
        c.validate().unwrap();
        let warned: Vec<String> = c
            .warnings()
            .into_iter()
            .map(|w| w.split(':').next().unwrap_or_default().to_string())
            .collect();
        assert_eq!(
            warned,
            [
                "http_server.tls.insecure_skip_verify",
                "http_server.tls.server_name"
            ]
        );
        assert_eq!(c.http_server.tls.cert_pem_file, "c");
        // Client certificates while TLS is off: harmless, warned.
        let c = json(r#"{"http_server": {"tls": {"client_ca_pem_file": "ca.pem"}}}"#).unwrap();
        c.validate().unwrap();
        assert!(
            c.warnings()[0].starts_with("http_server.tls.client_ca_pem_file"),
            "{:?}",
            c.warnings()
        );
    }

    #[test]
    fn validate_catches_inconsistent_options() {
        let cases = [
            (
                r#"{"channel": {"namespaces": [{"name": "a"}, {"name": "a"}]}}"#,
                "used twice",
            ),
            (
                r#"{"websocket": {"write_budget": 0}}"#,
                "websocket.write_budget must be greater than zero",
            ),
            (
                r#"{"websocket": {"write_max_hold": "250ms"}}"#,
                "websocket.write_max_hold must be greater than zero and at most 200ms",
            ),
            (
                r#"{"websocket": {"write_max_hold": "0s"}}"#,
                "websocket.write_max_hold",
            ),
            (
                r#"{"channel": {"namespaces": [{"name": "a b"}]}}"#,
                "may only contain",
            ),
            (
                r#"{"channel": {"namespaces": [{"presence": true}]}}"#,
                "name is missing",
            ),
            (
                r#"{"channel": {"namespaces": [{"name": "a", "history_size": 10}]}}"#,
                "history_ttl",
            ),
            (
                r#"{"channel": {"namespaces": [{"name": "a", "force_recovery": true}]}}"#,
                "force_recovery needs history",
            ),
            (
                r#"{"channel": {"without_namespace": {"history_size": 1, "history_ttl": "1000h"}}}"#,
                "history_meta_ttl",
            ),
            (
                r#"{"channel": {"without_namespace": {"channel_regex": "^a$"}}}"#,
                "channel_regex",
            ),
            (
                r#"{"http_server": {"body_read_timeout": "0s"}}"#,
                "http_server.body_read_timeout must be greater than zero",
            ),
            (
                r#"{"client": {"ping_interval": "0s"}}"#,
                "client.ping_interval must be greater than zero",
            ),
            (
                r#"{"client": {"pong_timeout": "30s"}}"#,
                "client.pong_timeout (30s) must be shorter",
            ),
            (
                r#"{"client": {"queue_max_size": 0}}"#,
                "client.queue_max_size",
            ),
            (
                r#"{"http_api": {"handler_prefix": "api"}}"#,
                "http_api.handler_prefix",
            ),
            (r#"{"admin": {"enabled": true}}"#, "admin.password"),
            (
                r#"{"client": {"token": {"jwks_public_endpoint": "ftp://x/jwks"}}}"#,
                "client.token: jwks_public_endpoint",
            ),
            (
                r#"{"client": {"token": {"audience": "a", "audience_regex": "^a$"}}}"#,
                "client.token: audience_regex",
            ),
            (
                r#"{"client": {"token": {"issuer_regex": "("}}}"#,
                "client.token: issuer_regex",
            ),
            (
                r#"{"client": {"token": {"rsa_public_key": "not a pem"}}}"#,
                "client.token",
            ),
            (
                r#"{"client": {"subscribe_to_user_personal_channel": {"enabled": true, "personal_channel_namespace": "p"}}}"#,
                "personal_channel_namespace",
            ),
            (
                r#"{"channel": {"namespace_boundary": ".", "namespaces": [{"name": "a.b"}]}}"#,
                "contains channel.namespace_boundary",
            ),
            (
                r#"{"demo": true, "channel": {"user_boundary": "@"}}"#,
                "demo: the demo chat names its channels",
            ),
            (
                r#"{"demo": true, "websocket": {"handler_prefix": "/ws"}}"#,
                "demo: the demo chat connects",
            ),
        ];
        for (text, want) in cases {
            let c = json(text).unwrap();
            let err = c.validate().expect_err(text).to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
        let c = json(r#"{"channel": {"namespaces": [{"name": "a.b-c_1"}]}}"#).unwrap();
        c.validate().unwrap();
    }
}
