//! `channel`: channel naming and namespaces, with the options each namespace gives its
//! channels ([`NamespaceOptions`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration::go_duration;
use super::flat::flat_options;
use super::{ChannelProxies, Opaque};

/// How a recovering subscription catches up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecoveryMode {
    /// Replay every missed publication from history (default; Centrifugo's `""` means this).
    #[default]
    #[serde(alias = "")]
    Stream,
    /// Only the latest publication is returned.
    Cache,
}

flat_options! {
    /// Options of a channel namespace (and of channels without a namespace). All Centrifugo
    /// names; everything is off by default, as in Centrifugo.
    options NamespaceOptions;
    /// One entry of `channel.namespaces`: a `name` plus its options, written flat.
    wrapper ChannelNamespace {
        /// The namespace name: the `ns` in channel `ns:rest`.
        name: String, options
    }
    via RawNamespace = "RawNamespace";
    fields {
        /// Keep presence (who is subscribed) for channels.
        presence: bool,
        /// Send join/leave pushes to subscribers who ask for them.
        join_leave: bool,
        /// Send join/leave pushes to all subscribers.
        force_push_join_leave: bool,
        /// Centrifugo map-presence channel prefix. Not implemented.
        map_clients_presence_channel_prefix: String,
        /// Centrifugo map-presence channel prefix. Not implemented.
        map_users_presence_channel_prefix: String,
        /// How many publications a channel's history keeps; 0 = no history.
        history_size: usize,
        /// How long publications stay in history; 0 = no history.
        #[serde(with = "go_duration")]
        history_ttl: Duration,
        /// How long a stream's meta (offset, epoch) outlives its last publication; 0 = use
        /// `channel.history_meta_ttl`.
        #[serde(with = "go_duration")]
        history_meta_ttl: Duration,
        /// Track every subscriber's stream position (needs history).
        force_positioning: bool,
        /// Let clients ask for position tracking.
        allow_positioning: bool,
        /// Recover missed publications on every resubscribe (needs history).
        force_recovery: bool,
        /// Let clients ask for recovery.
        allow_recovery: bool,
        /// `stream` (default) or `cache`.
        force_recovery_mode: RecoveryMode,
        /// Centrifugo cache auto-recovery. Accepted.
        auto_cache_recover: bool,
        /// Delta compression types clients may ask for in subscribe (`fossil`, the only one).
        allowed_delta_types: Vec<String>,
        /// Let subscribers filter publications by tags.
        allow_tags_filter: bool,
        /// Every publication is sent as a delta to subscribers that negotiated deltas (not only
        /// publishes with `delta: true`).
        delta_publish: bool,
        /// Anonymous users may subscribe without a subscription token.
        allow_subscribe_for_anonymous: bool,
        /// Any authenticated client may subscribe without a subscription token.
        allow_subscribe_for_client: bool,
        /// Anonymous users may publish.
        allow_publish_for_anonymous: bool,
        /// Subscribers of a channel may publish to it.
        allow_publish_for_subscriber: bool,
        /// Any authenticated client may publish.
        allow_publish_for_client: bool,
        /// Anonymous users may ask for presence.
        allow_presence_for_anonymous: bool,
        /// Subscribers may ask for presence.
        allow_presence_for_subscriber: bool,
        /// Any authenticated client may ask for presence.
        allow_presence_for_client: bool,
        /// Anonymous users may read history.
        allow_history_for_anonymous: bool,
        /// Subscribers may read history.
        allow_history_for_subscriber: bool,
        /// Any authenticated client may read history.
        allow_history_for_client: bool,
        /// Channels ending in `#user1,user2` may be subscribed by those users only.
        allow_user_limited_channels: bool,
        /// Centrifugo channel-name regex. Not implemented yet: refused by validation.
        channel_regex: String,
        /// Centrifugo publication data format. Accepted.
        publication_data_format: String,
        /// Ask a proxy whether a client may subscribe (when it has no subscription token).
        subscribe_proxy_enabled: bool,
        /// Which proxy: `default` (`channel.proxy.subscribe`, also when empty) or a
        /// `proxies[]` name.
        subscribe_proxy_name: String,
        /// Ask a proxy whether a client's publication goes out, and as what.
        publish_proxy_enabled: bool,
        /// Which proxy: `default` (`channel.proxy.publish`, also when empty) or a `proxies[]`
        /// name.
        publish_proxy_name: String,
        /// Ask a proxy, when a subscription expires, whether it lives on (server-side).
        sub_refresh_proxy_enabled: bool,
        /// Which proxy: `default` (`channel.proxy.sub_refresh`, also when empty) or a
        /// `proxies[]` name.
        sub_refresh_proxy_name: String,
        /// Centrifugo subscribe-stream proxy. Not implemented.
        subscribe_stream_proxy_enabled: bool,
        /// Centrifugo subscribe-stream proxy name.
        subscribe_stream_proxy_name: String,
        /// Centrifugo bidirectional subscribe-stream proxy. Not implemented.
        subscribe_stream_proxy_bidirectional: bool,
        /// Centrifugo subscription type (map, shared poll). Not implemented.
        subscription_type: String,
        /// Centrifugo map subscription settings. Not implemented.
        map: Opaque,
        /// Centrifugo shared-poll settings. Not implemented.
        shared_poll: Opaque,
    }
}

impl NamespaceOptions {
    /// Whether channels with these options keep a history (both size and TTL set).
    pub fn history_enabled(&self) -> bool {
        self.history_size > 0 && !self.history_ttl.is_zero()
    }
}

/// `channel`: channel naming and namespaces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelConfig {
    /// The channel proxies named `default` (subscribe, publish, sub_refresh).
    pub proxy: ChannelProxies,
    /// Options of channels without a namespace (no `:` in the name).
    pub without_namespace: NamespaceOptions,
    /// Named namespaces (`ns:…` channels).
    pub namespaces: Vec<ChannelNamespace>,
    /// Default lifetime of a stream's meta after its last publication. Default 720h (30 days).
    #[serde(with = "go_duration")]
    pub history_meta_ttl: Duration,
    /// Centrifugo publication data format. Accepted.
    pub publication_data_format: String,
    /// Longest channel name accepted, in bytes. Default 255.
    pub max_length: usize,
    /// A channel name starting with this needs a subscription token; empty = no private
    /// channels. Default `$`. (Applied by [`crate::channel`], as the three below.)
    pub private_prefix: String,
    /// Separates namespace from the rest of a channel name. Default `:`; must not be empty.
    pub namespace_boundary: String,
    /// Starts the user list of a user-limited channel; empty = no user-limited channels.
    /// Default `#`.
    pub user_boundary: String,
    /// Separates users in a user-limited channel; empty = the list is one user id. Default `,`.
    pub user_separator: String,
}

impl ChannelConfig {
    /// The strings that structure channel names (`private_prefix`, `namespace_boundary`,
    /// `user_boundary`, `user_separator`), for [`crate::channel::parse_with`].
    pub fn naming(&self) -> crate::channel::Naming<'_> {
        crate::channel::Naming {
            private_prefix: &self.private_prefix,
            namespace_boundary: &self.namespace_boundary,
            user_boundary: &self.user_boundary,
            user_separator: &self.user_separator,
        }
    }
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            proxy: ChannelProxies::default(),
            without_namespace: NamespaceOptions::default(),
            namespaces: Vec::new(),
            history_meta_ttl: Duration::from_secs(720 * 3600),
            publication_data_format: String::new(),
            max_length: 255,
            private_prefix: "$".into(),
            namespace_boundary: ":".into(),
            user_boundary: "#".into(),
            user_separator: ",".into(),
        }
    }
}
