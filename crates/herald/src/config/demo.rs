//! Demo mode (`--demo`): the namespaces and admin login the demo chat app needs, added to
//! whatever the config already says.

use std::time::Duration;

use super::{ChannelNamespace, Config, NamespaceOptions, random_secret};

/// Namespace of the demo chat's rooms (`rooms:general`…).
pub const DEMO_ROOMS_NAMESPACE: &str = "rooms";
/// Namespace of the demo chat's private inboxes (`inbox:#bob`).
pub const DEMO_INBOX_NAMESPACE: &str = "inbox";

impl Config {
    /// Turns on what the demo chat app needs when `demo` is set (`--demo` or `"demo": true`),
    /// leaving alone whatever the config already says:
    ///
    /// * namespace `rooms` (unless configured): anyone signed in may subscribe; subscribers may
    ///   publish, read history and presence; durable history with forced recovery; presence
    ///   and join/leave;
    /// * namespace `inbox` (unless configured): user-limited channels (`inbox:#bob` is bob's),
    ///   any signed-in user may publish into any inbox; durable history with forced recovery;
    /// * HTTP-streaming and SSE (with their emulation endpoint), always: the chat falls back to
    ///   them where no WebSocket gets through;
    /// * the admin UI, always (a demo shows its admin, even from a `herald genconfig` config,
    ///   which writes `admin.enabled: false`): with the configured password, else the one from
    ///   the demo's secrets file (`crate::demo_secrets`, filled in before this by
    ///   `Cli::load_config`), else a password and session secret generated here (the password
    ///   is then in [`Config::load_warnings`]).
    ///
    /// Call it after the flags are applied and before [`Config::validate`]. Does nothing when
    /// `demo` is off.
    pub fn apply_demo(&mut self) {
        if !self.demo {
            return;
        }
        let history = |size: usize| NamespaceOptions {
            history_size: size,
            history_ttl: Duration::from_secs(720 * 3600),
            force_recovery: true,
            allow_history_for_subscriber: true,
            ..NamespaceOptions::default()
        };
        if self.namespace(DEMO_ROOMS_NAMESPACE).is_none() {
            self.channel.namespaces.push(ChannelNamespace {
                name: DEMO_ROOMS_NAMESPACE.to_owned(),
                options: NamespaceOptions {
                    allow_subscribe_for_client: true,
                    allow_publish_for_subscriber: true,
                    presence: true,
                    join_leave: true,
                    force_push_join_leave: true,
                    allow_presence_for_subscriber: true,
                    ..history(500)
                },
            });
        }
        if self.namespace(DEMO_INBOX_NAMESPACE).is_none() {
            self.channel.namespaces.push(ChannelNamespace {
                name: DEMO_INBOX_NAMESPACE.to_owned(),
                options: NamespaceOptions {
                    allow_user_limited_channels: true,
                    allow_publish_for_client: true,
                    ..history(1000)
                },
            });
        }
        // The chat falls back to these where no WebSocket gets through.
        self.http_stream.enabled = true;
        self.sse.enabled = true;
        if self.client.recovery_max_publication_limit < 1000 {
            self.client.recovery_max_publication_limit = 1000;
        }
        let admin = &mut self.admin;
        admin.enabled = true;
        if admin.password.is_empty() && !admin.insecure {
            admin.password = random_secret(16);
            let path = match admin.handler_prefix.trim_end_matches('/') {
                "" => "/admin",
                prefix => prefix,
            };
            self.load_warnings.push(format!(
                "demo: admin UI at {path}/, password for this run: {} (set admin.password to \
                 choose one)",
                admin.password
            ));
        }
        if admin.enabled && admin.secret.is_empty() {
            admin.secret = random_secret(32);
        }
    }
}

#[cfg(test)]
mod demo_tests {

    use super::*;
    use crate::config::*;

    #[test]
    fn demo_off_changes_nothing() {
        let mut c = Config::default();
        c.apply_demo();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn demo_adds_the_chat_namespaces_and_an_admin_login() {
        let mut c = Config {
            demo: true,
            ..Config::default()
        };
        c.apply_demo();
        let rooms = c.namespace(DEMO_ROOMS_NAMESPACE).unwrap();
        assert!(rooms.history_enabled() && rooms.force_recovery && rooms.presence);
        assert!(rooms.join_leave && rooms.allow_subscribe_for_client);
        assert!(rooms.allow_publish_for_subscriber && rooms.allow_presence_for_subscriber);
        let inbox = c.namespace(DEMO_INBOX_NAMESPACE).unwrap();
        assert!(inbox.history_enabled() && inbox.force_recovery);
        assert!(inbox.allow_user_limited_channels && inbox.allow_publish_for_client);
        assert!(!inbox.allow_subscribe_for_client);
        assert!(c.admin.enabled && !c.admin.password.is_empty() && !c.admin.secret.is_empty());
        assert!(
            c.http_stream.enabled && c.sse.enabled,
            "the chat's fallbacks"
        );
        assert!(
            c.load_warnings
                .iter()
                .any(|w| w.contains(&c.admin.password))
        );
        c.validate().unwrap();
        // Twice is the same as once.
        let once = c.clone();
        c.apply_demo();
        assert_eq!(c.channel.namespaces, once.channel.namespaces);
    }

    #[test]
    fn demo_keeps_what_the_config_says() {
        let mut c = Config::from_str_with_format(
            r#"{"demo": true, "channel": {"namespaces": [{"name": "rooms"}]},
                "admin": {"enabled": true, "password": "pw", "secret": "s"}}"#,
            ConfigFormat::Json,
        )
        .unwrap();
        c.apply_demo();
        assert!(!c.namespace("rooms").unwrap().presence);
        assert!(c.namespace("inbox").is_some());
        assert_eq!(
            (c.admin.password.as_str(), c.admin.secret.as_str()),
            ("pw", "s")
        );
        assert!(c.load_warnings.is_empty());

        // A `herald genconfig` config writes the admin off; the demo shows it anyway, with the
        // config's password.
        let mut c = Config::from_str_with_format(
            r#"{"demo": true, "admin": {"enabled": false, "password": "pw", "secret": "s"}}"#,
            ConfigFormat::Json,
        )
        .unwrap();
        c.apply_demo();
        assert!(c.admin.enabled);
        assert_eq!(c.admin.password, "pw");
    }
}
