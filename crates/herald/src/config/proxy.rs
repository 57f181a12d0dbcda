//! Backend proxies (Centrifugo v6 names): `client.proxy.connect` / `client.proxy.refresh`,
//! `channel.proxy.subscribe` / `publish` / `sub_refresh`, `rpc.proxy`, the named `proxies[]`
//! that namespaces reference by `*_proxy_name`, and the `rpc` section that routes RPC methods to
//! them. What the proxies do is [`crate::policy::proxy`]; this is only their settings.
//!
//! One struct, [`ProxyConfig`], serves every place a proxy is configured: Centrifugo's are one
//! type too, plus `enabled` (connect and refresh only) and `name` (`proxies[]` only), which
//! [`crate::config::Config::validate`] refuses where Centrifugo has no such option.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Opaque;
use super::duration::go_duration;

/// One HTTP proxy: where Herald sends an event and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// Turns the proxy on (`client.proxy.connect` and `client.proxy.refresh` only: channel and
    /// RPC proxies are turned on per namespace).
    pub enabled: bool,
    /// The name namespaces use to pick it (`proxies[]` entries only; the sections' own proxies
    /// are named `default`).
    pub name: String,
    /// The backend's URL (`http://` or `https://`). Centrifugo's gRPC endpoints (`host:port`)
    /// are refused.
    pub endpoint: String,
    /// How long Herald waits for the backend's answer. Default 1s.
    #[serde(with = "go_duration")]
    pub timeout: Duration,
    /// Headers of the client's HTTP request (the WebSocket upgrade, the streaming request) sent
    /// on to the backend with every proxied event of the connection.
    pub http_headers: Vec<String>,
    /// Centrifugo: gRPC metadata keys to forward. Refused (no gRPC transport in Herald).
    pub grpc_metadata: Vec<String>,
    /// Headers from the connect command's `headers` (the SDKs' header emulation) sent on to
    /// the backend; client-controlled values.
    pub emulated_headers: Vec<String>,
    /// Send payloads as base64 (`b64data`) rather than as JSON (`data`).
    pub binary_encoding: bool,
    /// Send the connection's `meta` (from the connect proxy's result) with every event.
    pub include_connection_meta: bool,
    /// HTTP settings.
    pub http: ProxyHttpConfig,
    /// Centrifugo gRPC proxy settings. Refused when set.
    pub grpc: Opaque,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            enabled: false,
            name: String::new(),
            endpoint: String::new(),
            timeout: Duration::from_secs(1),
            http_headers: Vec::new(),
            grpc_metadata: Vec::new(),
            emulated_headers: Vec::new(),
            binary_encoding: false,
            include_connection_meta: false,
            http: ProxyHttpConfig::default(),
            grpc: None,
        }
    }
}

/// `*.http` of a proxy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyHttpConfig {
    /// Centrifugo: a client TLS config (certificates, CA) for `https` endpoints. Refused when
    /// enabled; an `https` endpoint is verified against the system's CA store.
    pub tls: Opaque,
    /// Headers sent with every request (the client's forwarded headers win).
    pub static_headers: BTreeMap<String, String>,
    /// What a backend's non-200 status means for the client: an error or a disconnect.
    pub status_to_code_transforms: Vec<StatusToCodeTransform>,
}

/// One `status_to_code_transforms` entry: a backend answering `status_code` gives the client
/// `to_error` (when its code is set) or else `to_disconnect`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatusToCodeTransform {
    /// The HTTP status of the backend's answer.
    pub status_code: u16,
    /// The error reply the client gets.
    pub to_error: TransformError,
    /// The disconnect the client gets (when `to_error.code` is 0).
    pub to_disconnect: TransformDisconnect,
}

/// An error reply of a status transform.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransformError {
    /// Protocol error code; 0 = no error transform.
    pub code: u32,
    /// Its message.
    pub message: String,
    /// Whether the SDK may retry.
    pub temporary: bool,
}

/// A disconnect of a status transform.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransformDisconnect {
    /// Disconnect code; 0 = none.
    pub code: u32,
    /// Its reason.
    pub reason: String,
}

/// `client.proxy`: the connection-wide proxies.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientProxies {
    /// Asked who a connection without a token is.
    pub connect: ProxyConfig,
    /// Asked, when a connection expires, whether it lives on (server-side refresh).
    pub refresh: ProxyConfig,
}

/// `channel.proxy`: the channel proxies named `default`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelProxies {
    /// Asked whether a client may subscribe (without a subscription token).
    pub subscribe: ProxyConfig,
    /// Asked whether a client's publication goes out, and as what.
    pub publish: ProxyConfig,
    /// Asked, when a subscription expires, whether it lives on.
    pub sub_refresh: ProxyConfig,
    /// Centrifugo subscribe-stream proxy. Refused when set.
    pub subscribe_stream: Opaque,
    /// Centrifugo map publish proxy. Refused when set.
    pub map_publish: Opaque,
    /// Centrifugo map remove proxy. Refused when set.
    pub map_remove: Opaque,
    /// Centrifugo shared-poll refresh proxy. Refused when set.
    pub shared_poll_refresh: Opaque,
}

/// `rpc`: which RPC methods a backend answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RpcConfig {
    /// The RPC proxy named `default`.
    pub proxy: ProxyConfig,
    /// Options of methods without a namespace (no `:` in the method).
    pub without_namespace: RpcOptions,
    /// RPC namespaces: a method `ns:rest` takes the options of namespace `ns`.
    pub namespaces: Vec<RpcNamespace>,
    /// Centrifugo's built-in `ping` method. Refused when enabled.
    pub ping: Opaque,
    /// Separates an RPC namespace from the rest of a method. Default `:`.
    pub namespace_boundary: String,
}

impl Default for RpcConfig {
    fn default() -> Self {
        RpcConfig {
            proxy: ProxyConfig::default(),
            without_namespace: RpcOptions::default(),
            namespaces: Vec::new(),
            ping: None,
            namespace_boundary: ":".into(),
        }
    }
}

impl RpcConfig {
    /// The options for `method`: its namespace's (the part before the boundary), or
    /// `without_namespace`'s; `None` for a namespace that is not configured.
    pub fn options_for(&self, method: &str) -> Option<RpcOptions> {
        if !self.namespace_boundary.is_empty()
            && let Some((ns, _)) = method.split_once(self.namespace_boundary.as_str())
        {
            return self
                .namespaces
                .iter()
                .find(|n| n.name == ns)
                .map(|n| RpcOptions {
                    proxy_enabled: n.proxy_enabled,
                    proxy_name: n.proxy_name.clone(),
                });
        }
        Some(self.without_namespace.clone())
    }
}

/// Options of RPC methods.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RpcOptions {
    /// Send these methods to a proxy (otherwise: 108, not available).
    pub proxy_enabled: bool,
    /// Which proxy: `default` (`rpc.proxy`, also when empty) or a `proxies[]` name.
    pub proxy_name: String,
}

/// One `rpc.namespaces` entry: a name and the [`RpcOptions`] fields, written flat as in
/// Centrifugo (serde's `flatten` cannot be combined with refusing unknown fields).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RpcNamespace {
    /// The namespace: the `ns` in method `ns:rest`.
    pub name: String,
    /// As [`RpcOptions::proxy_enabled`].
    pub proxy_enabled: bool,
    /// As [`RpcOptions::proxy_name`].
    pub proxy_name: String,
}

/// Every proxy section with its option path: the sections' own (`default`) proxies and the
/// named ones.
pub(crate) fn all_proxies(config: &super::Config) -> Vec<(String, &ProxyConfig)> {
    let mut all = vec![
        (
            "client.proxy.connect".to_string(),
            &config.client.proxy.connect,
        ),
        (
            "client.proxy.refresh".to_string(),
            &config.client.proxy.refresh,
        ),
        (
            "channel.proxy.subscribe".to_string(),
            &config.channel.proxy.subscribe,
        ),
        (
            "channel.proxy.publish".to_string(),
            &config.channel.proxy.publish,
        ),
        (
            "channel.proxy.sub_refresh".to_string(),
            &config.channel.proxy.sub_refresh,
        ),
        ("rpc.proxy".to_string(), &config.rpc.proxy),
    ];
    for (i, p) in config.proxies.iter().enumerate() {
        all.push((format!("proxies[{i}]"), p));
    }
    all
}

/// A proxy that a namespace or the RPC section references: `""` or `default` names the
/// section's own proxy (`default`), anything else a `proxies[]` entry.
pub fn resolve<'a>(
    config: &'a super::Config,
    default: &'a ProxyConfig,
    name: &str,
) -> Option<&'a ProxyConfig> {
    if name.is_empty() || name == "default" {
        return Some(default);
    }
    config.proxies.iter().find(|p| p.name == name)
}

/// What is wrong with the proxy options taken together: an endpoint that is not an HTTP URL, a
/// namespace that names a proxy nobody configured, `enabled` or `name` where they mean
/// nothing. Each message names the option and says what to do.
pub(super) fn problems(config: &super::Config) -> Vec<String> {
    let mut problems = Vec::new();
    for (at, p) in all_proxies(config) {
        if !p.endpoint.is_empty()
            && let Err(e) = crate::auth::jwks::check_endpoint(&p.endpoint)
        {
            problems.push(format!(
                "{at}.endpoint: {e} (Herald's proxies speak HTTP; gRPC proxies are not \
                 implemented)"
            ));
        }
        if p.timeout.is_zero() {
            problems.push(format!("{at}.timeout must be greater than zero"));
        }
        let named = at.starts_with("proxies[");
        if p.enabled && !at.starts_with("client.proxy.") {
            problems.push(format!(
                "{at}.enabled is an option of client.proxy.connect and client.proxy.refresh \
                 only: channel and RPC proxies are turned on per namespace \
                 (subscribe_proxy_enabled, publish_proxy_enabled, sub_refresh_proxy_enabled, \
                 rpc.namespaces[].proxy_enabled); remove it"
            ));
        }
        for (i, t) in p.http.status_to_code_transforms.iter().enumerate() {
            let at = format!("{at}.http.status_to_code_transforms[{i}]");
            if t.to_error.code == 0 && t.to_disconnect.code == 0 {
                problems.push(format!(
                    "{at}: set to_error.code or to_disconnect.code (what status {} gives the \
                     client)",
                    t.status_code
                ));
            }
            if t.to_disconnect.code != 0 && !(3000..=4999).contains(&t.to_disconnect.code) {
                problems.push(format!(
                    "{at}.to_disconnect.code {} is outside 3000..=4999, which a close frame \
                     cannot carry",
                    t.to_disconnect.code
                ));
            }
            if t.to_disconnect.reason.len() > 123 {
                problems.push(format!(
                    "{at}.to_disconnect.reason is longer than the 123 bytes a close frame holds"
                ));
            }
        }
        if named && p.name.is_empty() {
            problems.push(format!("{at}.name is missing"));
        }
        if !named && !p.name.is_empty() {
            problems.push(format!(
                "{at}.name: only proxies[] entries have a name (this one is \"default\"); \
                 remove it"
            ));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, p) in config.proxies.iter().enumerate() {
        if p.name == "default" {
            problems.push(format!(
                "proxies[{i}].name \"default\" is taken by the sections' own proxies \
                 (channel.proxy.*, rpc.proxy): choose another"
            ));
        }
        if !p.name.is_empty() && !seen.insert(p.name.as_str()) {
            problems.push(format!("proxies[{i}].name \"{}\" is used twice", p.name));
        }
    }
    for (at, p) in [
        ("client.proxy.connect", &config.client.proxy.connect),
        ("client.proxy.refresh", &config.client.proxy.refresh),
    ] {
        if p.enabled && p.endpoint.is_empty() {
            problems.push(format!(
                "{at}.enabled needs {at}.endpoint (the backend's URL)"
            ));
        }
    }
    let channel = &config.channel.proxy;
    let mut namespaces = vec![(
        "channel.without_namespace".to_string(),
        &config.channel.without_namespace,
    )];
    for (i, ns) in config.channel.namespaces.iter().enumerate() {
        namespaces.push((format!("channel.namespaces[{i}]"), &ns.options));
    }
    for (at, o) in namespaces {
        for (kind, enabled, name, default, section) in [
            (
                "subscribe",
                o.subscribe_proxy_enabled,
                &o.subscribe_proxy_name,
                &channel.subscribe,
                "channel.proxy.subscribe",
            ),
            (
                "publish",
                o.publish_proxy_enabled,
                &o.publish_proxy_name,
                &channel.publish,
                "channel.proxy.publish",
            ),
            (
                "sub_refresh",
                o.sub_refresh_proxy_enabled,
                &o.sub_refresh_proxy_name,
                &channel.sub_refresh,
                "channel.proxy.sub_refresh",
            ),
        ] {
            if enabled {
                check_reference(
                    config,
                    &mut problems,
                    &format!("{at}.{kind}_proxy_enabled"),
                    default,
                    section,
                    name,
                );
            }
        }
    }
    let rpc = &config.rpc;
    let mut rpc_namespaces = vec![(
        "rpc.without_namespace".to_string(),
        rpc.without_namespace.proxy_enabled,
        &rpc.without_namespace.proxy_name,
    )];
    let mut seen = std::collections::BTreeSet::new();
    for (i, ns) in rpc.namespaces.iter().enumerate() {
        let at = format!("rpc.namespaces[{i}]");
        if ns.name.is_empty() {
            problems.push(format!("{at}.name is missing"));
        } else if !seen.insert(ns.name.as_str()) {
            problems.push(format!("{at}.name \"{}\" is used twice", ns.name));
        }
        rpc_namespaces.push((at, ns.proxy_enabled, &ns.proxy_name));
    }
    for (at, enabled, name) in rpc_namespaces {
        if enabled {
            check_reference(
                config,
                &mut problems,
                &format!("{at}.proxy_enabled"),
                &rpc.proxy,
                "rpc.proxy",
                name,
            );
        }
    }
    problems
}

/// Checks that the proxy `name` that option `at` turns on exists and has an endpoint.
fn check_reference(
    config: &super::Config,
    problems: &mut Vec<String>,
    at: &str,
    default: &ProxyConfig,
    section: &str,
    name: &str,
) {
    match resolve(config, default, name) {
        None => problems.push(format!(
            "{at}: no proxy named \"{name}\": add it to proxies[] (with an endpoint) or use \
             \"default\" ({section})"
        )),
        Some(p) if p.endpoint.is_empty() => {
            let which = if name.is_empty() || name == "default" {
                format!("{section}.endpoint")
            } else {
                format!("the endpoint of proxies[] entry \"{name}\"")
            };
            problems.push(format!("{at} needs {which} (the backend's URL)"));
        }
        Some(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigFormat};

    fn config(json: &str) -> Config {
        Config::from_str_with_format(json, ConfigFormat::Json).expect("parses")
    }

    #[test]
    fn rpc_methods_take_their_namespace_options() {
        let c = config(
            r#"{"rpc": {"without_namespace": {"proxy_enabled": true},
                "namespaces": [{"name": "admin", "proxy_enabled": true, "proxy_name": "adm"}]}}"#,
        );
        let plain = c.rpc.options_for("sum").unwrap();
        assert!(plain.proxy_enabled && plain.proxy_name.is_empty());
        assert_eq!(c.rpc.options_for("admin:kick").unwrap().proxy_name, "adm");
        assert!(c.rpc.options_for("other:x").is_none());
    }

    #[test]
    fn references_endpoints_and_misplaced_options_are_problems() {
        let c = config(
            r#"{"channel": {"proxy": {"publish": {"endpoint": "http://127.0.0.1:1/p", "enabled": true}},
                "namespaces": [{"name": "a", "subscribe_proxy_enabled": true},
                               {"name": "b", "publish_proxy_enabled": true, "publish_proxy_name": "x"}]},
                "client": {"proxy": {"connect": {"enabled": true, "name": "c"}}},
                "proxies": [{"endpoint": "ftp://h/"}, {"name": "default", "endpoint": "http://h/"}]}"#,
        );
        let problems = super::problems(&c).join("\n");
        for expected in [
            "channel.namespaces[0].subscribe_proxy_enabled needs channel.proxy.subscribe.endpoint",
            "channel.namespaces[1].publish_proxy_enabled: no proxy named \"x\"",
            "channel.proxy.publish.enabled is an option of client.proxy.connect",
            "client.proxy.connect.name: only proxies[] entries have a name",
            "client.proxy.connect.enabled needs client.proxy.connect.endpoint",
            "proxies[0].endpoint",
            "proxies[0].name is missing",
            "proxies[1].name \"default\" is taken",
        ] {
            assert!(
                problems.contains(expected),
                "missing {expected:?} in:\n{problems}"
            );
        }
        assert!(config("{}").validate().is_ok());
    }
}
