//! `webhooks`: Herald's own section (Centrifugo has none) for the events it POSTs to a backend:
//! user online/offline, channel occupied/vacated, and a publication into a user-limited channel
//! for a user with no subscription to it (see [`crate::webhooks`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration::go_duration;

/// The kinds of event, by the names `webhooks.events` and the event bodies use.
pub const EVENT_KINDS: &[&str] = &[
    "user_online",
    "user_offline",
    "channel_occupied",
    "channel_vacated",
    "offline_publication",
];

/// `webhooks`: where events go, how they are signed, how long they may wait and how many may.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Send events (off by default).
    pub enabled: bool,
    /// The backend's URL (`http://` or `https://`); every batch of events is POSTed to it.
    pub endpoint: String,
    /// The HMAC-SHA256 key of the `X-Herald-Signature` header. Required when enabled.
    pub secret: String,
    /// Deadline of one POST (connect, send, answer). Default 5s.
    #[serde(with = "go_duration")]
    pub timeout: Duration,
    /// Which kinds of event to send (see [`EVENT_KINDS`]). Default: all of them.
    pub events: Vec<String>,
    /// How long after a user's last connection closed `user_offline` waits: a connection of
    /// the user within it cancels it (and no `user_online` follows). Default 10s.
    #[serde(with = "go_duration")]
    pub offline_grace: Duration,
    /// The same for `channel_vacated`: a subscriber within it cancels it. Default 0s.
    #[serde(with = "go_duration")]
    pub vacated_grace: Duration,
    /// Most events waiting for delivery (in the queue file and on their way to it); more are
    /// dropped, counted and logged. Default 100000.
    pub max_queue: usize,
    /// Most bytes of events waiting for delivery; more are dropped, counted and logged.
    /// Default 64 MiB.
    pub max_queue_bytes: usize,
    /// Most events in one POST. Default 100.
    pub max_batch: usize,
    /// First wait before a failed POST is retried; it doubles on each failure. Default 500ms.
    #[serde(with = "go_duration")]
    pub retry_min_backoff: Duration,
    /// Longest wait between retries. Default 30s.
    #[serde(with = "go_duration")]
    pub retry_max_backoff: Duration,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            enabled: false,
            endpoint: String::new(),
            secret: String::new(),
            timeout: Duration::from_secs(5),
            events: EVENT_KINDS.iter().map(|k| (*k).to_owned()).collect(),
            offline_grace: Duration::from_secs(10),
            vacated_grace: Duration::ZERO,
            max_queue: 100_000,
            max_queue_bytes: 64 << 20,
            max_batch: 100,
            retry_min_backoff: Duration::from_millis(500),
            retry_max_backoff: Duration::from_secs(30),
        }
    }
}

impl WebhooksConfig {
    /// Whether events of `kind` are sent.
    pub fn sends(&self, kind: &str) -> bool {
        self.enabled && self.events.iter().any(|k| k == kind)
    }

    /// What is wrong with the section, each naming its option (nothing when it is off).
    pub(super) fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (i, kind) in self.events.iter().enumerate() {
            if !EVENT_KINDS.contains(&kind.as_str()) {
                problems.push(format!(
                    "webhooks.events[{i}]: unknown event \"{kind}\" (the events are {})",
                    EVENT_KINDS.join(", ")
                ));
            }
        }
        if !self.enabled {
            return problems;
        }
        if self.endpoint.trim().is_empty() {
            problems.push(
                "webhooks.enabled needs webhooks.endpoint (the http:// or https:// URL of your \
                 backend that events are POSTed to)"
                    .to_owned(),
            );
        } else if let Err(e) = crate::webhooks::check_endpoint(&self.endpoint) {
            problems.push(format!("webhooks.endpoint: {e}"));
        }
        if self.secret.is_empty() {
            problems.push(
                "webhooks.enabled needs webhooks.secret (the key your backend checks \
                 X-Herald-Signature with: a long random string, e.g. from `openssl rand -hex 32`)"
                    .to_owned(),
            );
        }
        for (name, d) in [
            ("webhooks.timeout", self.timeout),
            ("webhooks.retry_min_backoff", self.retry_min_backoff),
            ("webhooks.retry_max_backoff", self.retry_max_backoff),
        ] {
            if d.is_zero() {
                problems.push(format!("{name} must be greater than zero"));
            }
        }
        if self.retry_min_backoff > self.retry_max_backoff {
            problems.push(
                "webhooks.retry_min_backoff must not be longer than webhooks.retry_max_backoff"
                    .to_owned(),
            );
        }
        for (name, n) in [
            ("webhooks.max_queue", self.max_queue),
            ("webhooks.max_queue_bytes", self.max_queue_bytes),
            ("webhooks.max_batch", self.max_batch),
        ] {
            if n == 0 {
                problems.push(format!("{name} must be greater than zero"));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_problems_name_their_option() {
        let c = WebhooksConfig::default();
        assert!(!c.sends("user_online") && c.problems().is_empty());
        let c = WebhooksConfig {
            enabled: true,
            endpoint: "ftp://x".into(),
            events: vec!["user_online".into(), "user_gone".into()],
            max_batch: 0,
            ..WebhooksConfig::default()
        };
        let problems = c.problems().join("\n");
        for option in [
            "webhooks.events[1]",
            "webhooks.endpoint",
            "webhooks.secret",
            "webhooks.max_batch",
        ] {
            assert!(problems.contains(option), "{option} in {problems}");
        }
        assert!(c.sends("user_online") && !c.sends("user_offline"));
    }
}
