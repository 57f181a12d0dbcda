//! What Herald does with each option it accepts but does not implement, so that no option is
//! silently ignored.
//!
//! Herald accepts Centrifugo v6 config files as they are, so its config knows options it does
//! not implement. Each such option, when set to something other than its default, is one of:
//!
//! * **refused** ([`Severity::Refused`]): ignoring it would change who may connect or
//!   subscribe, where traffic goes or whether publications are delivered (a Redis engine,
//!   client certificates, proxies, an internal port…). [`crate::config::Config::validate`] turns
//!   these into errors, so the server does not start and `checkconfig` fails, with a message
//!   that names the option and says what to do;
//! * **warned** ([`Severity::Warned`]): ignoring it is harmless (a tuning knob with no
//!   counterpart, a transport nobody can reach so nobody is misled). `main` logs each as a
//!   WARN line at start-up and `checkconfig` lists them.
//!
//! Options Herald implements, and options Centrifugo itself ignores in the same situation
//! (e.g. `engine.redis` while `engine.type` is `memory`), are not listed.
//!
//! The one list here is the whole audit: every option of the config schema that is neither
//! implemented nor listed here is a bug (see the test `every_option_is_implemented_or_audited`
//! in this module).

use std::fmt;

use serde_json::Value;

use crate::config::{Config, NamespaceOptions, Opaque, is_active};

/// What happens to a config that sets an option Herald does not implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The config is refused: the server does not start, `checkconfig` fails.
    Refused,
    /// The server starts and logs a warning naming the option.
    Warned,
}

/// One option that is set but not implemented: where, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Refused or warned.
    pub severity: Severity,
    /// The option's full path, e.g. `engine.type` or `channel.namespaces[0].delta_publish`.
    pub path: String,
    /// What Herald does instead, and what the user should do.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Collects findings; `refuse` and `warn` take the option path and the message.
#[derive(Default)]
struct Audit(Vec<Finding>);

impl Audit {
    fn refuse(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Finding {
            severity: Severity::Refused,
            path: path.into(),
            message: message.into(),
        });
    }

    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Finding {
            severity: Severity::Warned,
            path: path.into(),
            message: message.into(),
        });
    }
}

/// Whether an opaque section turns something on: `enabled: true` anywhere inside it (Centrifugo
/// sections such as `tls_autocert`, `grpc_api`, `client.proxy.connect` are off until then).
fn enabled_inside(v: &Opaque) -> bool {
    fn walk(v: &Value) -> bool {
        match v {
            Value::Object(map) => map.iter().any(|(k, v)| {
                (k == "enabled" && v.as_bool() == Some(true)) || (k != "enabled" && walk(v))
            }),
            Value::Array(items) => items.iter().any(walk),
            _ => false,
        }
    }
    v.as_ref().is_some_and(walk)
}

/// Whether an opaque section is set to anything but empty/false/zero values.
fn set(v: &Opaque) -> bool {
    v.as_ref().is_some_and(is_active)
}

const NOT_YET: &str = "not implemented in Herald yet";

/// `engine.redis` options the Redis engine does not implement (only while `engine.type` is
/// `redis`: Centrifugo ignores them under another engine too), or the same under `at` =
/// `presence_manager.redis` for a Redis presence manager (which keeps no history).
fn audit_redis(a: &mut Audit, at: &str, r: &crate::config::RedisConfig) {
    if r.history_use_lists {
        if at == "engine.redis" {
            a.refuse(
                format!("{at}.history_use_lists"),
                "Herald keeps history in Redis streams only (they read a range by offset and \
                 in reverse); remove it",
            );
        } else {
            a.warn(
                format!("{at}.history_use_lists"),
                "a presence manager keeps no history: ignored",
            );
        }
    }
    if r.sentinel_tls.enabled {
        a.refuse(
            format!("{at}.sentinel_tls.enabled"),
            format!("TLS to the sentinels is {NOT_YET}: reach them without TLS, or remove it"),
        );
    }
    // Whether or not `tls.enabled`: a `rediss://` address speaks TLS without it.
    if !r.tls.server_name.is_empty() {
        a.refuse(
            format!("{at}.tls.server_name"),
            format!(
                "{NOT_YET}: Herald verifies the host name of the address; use that name in \
                 {at}.address, or remove it"
            ),
        );
    }
    for (name, value) in [
        ("client_ca_pem", &r.tls.client_ca_pem),
        ("client_ca_pem_b64", &r.tls.client_ca_pem_b64),
        ("client_ca_pem_file", &r.tls.client_ca_pem_file),
    ] {
        if !value.is_empty() {
            a.warn(
                format!("{at}.tls.{name}"),
                "verifies clients of a TLS server; Herald is Redis's client here: ignored",
            );
        }
    }
    for (name, value) in [
        ("client_name", &r.client_name),
        ("sentinel_client_name", &r.sentinel_client_name),
    ] {
        if !value.is_empty() {
            a.warn(
                format!("{at}.{name}"),
                format!("naming connections (CLIENT SETNAME) is {NOT_YET}: ignored"),
            );
        }
    }
    if r.presence_hash_field_ttl {
        a.warn(
            format!("{at}.presence_hash_field_ttl"),
            "Herald's presence entries always expire one by one (a sorted set of expiries, \
             any Redis version); nothing to turn on: ignored",
        );
    }
    if r.presence_user_mapping {
        a.warn(
            format!("{at}.presence_user_mapping"),
            "Herald always keeps a per-channel count of users beside the entries, so \
             presence_stats never scans them; nothing to turn on: ignored",
        );
    }
}

/// Every option of `config` that is set but not implemented, refused ones first in config
/// order, then warned ones.
pub fn audit(config: &Config) -> Vec<Finding> {
    let mut a = Audit::default();
    let c = config;
    let defaults = Config::default();

    // Engines: the ones Herald cannot build yet (the engine module owns the message, so
    // `checkconfig` and start-up say the same).
    for missing in crate::engine::unimplemented(c) {
        a.refuse(missing.option, missing.message);
    }
    if c.engine.kind == crate::config::EngineType::Redis {
        audit_redis(&mut a, "engine.redis", &c.engine.redis);
    }
    if c.presence_manager.uses_redis() {
        audit_redis(&mut a, "presence_manager.redis", &c.presence_manager.redis);
    }

    // The HTTP server.
    let http = &c.http_server;
    if !http.internal_address.is_empty() {
        a.refuse(
            "http_server.internal_address",
            format!(
                "{NOT_YET}: the API, admin and metrics are served on http_server.address; remove \
                 it and keep those paths private in front of Herald"
            ),
        );
    }
    if !http.internal_port.is_empty() {
        a.refuse(
            "http_server.internal_port",
            format!(
                "{NOT_YET}: the API, admin and metrics are served on http_server.port; remove it \
                 and keep those paths private in front of Herald"
            ),
        );
    }
    if enabled_inside(&http.tls_autocert) {
        a.refuse(
            "http_server.tls_autocert",
            format!(
                "automatic (ACME) certificates are {NOT_YET}: remove it, get a certificate \
                 (e.g. with certbot) and set http_server.tls.cert_pem_file and key_pem_file \
                 (reloaded when renewed)"
            ),
        );
    }
    if enabled_inside(&http.internal_tls) {
        a.refuse(
            "http_server.internal_tls",
            format!(
                "{NOT_YET} (there is no internal port): remove it; http_server.tls covers \
                 every route"
            ),
        );
    }
    let tls = &http.tls;
    for (name, value) in [
        ("client_ca_pem", &tls.client_ca_pem),
        ("client_ca_pem_b64", &tls.client_ca_pem_b64),
        ("client_ca_pem_file", &tls.client_ca_pem_file),
    ] {
        if value.is_empty() {
            continue;
        }
        let message = format!(
            "client certificates (mutual TLS) are {NOT_YET}: remove it, or terminate mutual \
             TLS in a proxy in front of Herald"
        );
        let path = format!("http_server.tls.{name}");
        if tls.enabled {
            a.refuse(path, message);
        } else {
            // Off, as in Centrifugo while http_server.tls is off: nobody is misled.
            a.warn(
                path,
                format!("{message} (ignored while http_server.tls is off)"),
            );
        }
    }

    // Client connections.
    let cl = &c.client;
    if cl.insecure_skip_token_signature_verify {
        a.refuse(
            "client.insecure_skip_token_signature_verify",
            format!("{NOT_YET}: tokens are always verified; remove it"),
        );
    }
    if !cl.user_id_http_header.is_empty() {
        a.refuse(
            "client.user_id_http_header",
            format!("{NOT_YET}: clients authenticate with connection tokens; remove it"),
        );
    }
    // Proxies: Herald's are HTTP ones; the gRPC options and the proxy kinds it lacks would
    // change who may subscribe or what a channel carries.
    for (at, p) in crate::config::proxy::all_proxies(c) {
        audit_proxy(&mut a, &at, p);
    }
    for (name, v) in [
        ("subscribe_stream", &c.channel.proxy.subscribe_stream),
        ("map_publish", &c.channel.proxy.map_publish),
        ("map_remove", &c.channel.proxy.map_remove),
        ("shared_poll_refresh", &c.channel.proxy.shared_poll_refresh),
    ] {
        if set(v) {
            a.refuse(
                format!("channel.proxy.{name}"),
                format!(
                    "the {name} proxy is {NOT_YET} (Herald has the subscribe, publish and \
                     sub_refresh channel proxies); remove it"
                ),
            );
        }
    }
    if set(&c.consumers) {
        a.refuse(
            "consumers",
            format!(
                "{NOT_YET}: nothing would be consumed and delivered; remove it and publish \
                 through the server API"
            ),
        );
    }

    // Namespaces: proxies decide permissions, so ignoring them would change who may subscribe
    // or publish.
    for (at, o) in namespaces(c) {
        if !o.channel_regex.is_empty() {
            a.refuse(
                format!("{at}.channel_regex"),
                format!("{NOT_YET}: channel names would not be checked against it; remove it"),
            );
        }
        if o.subscribe_stream_proxy_enabled {
            a.refuse(
                format!("{at}.subscribe_stream_proxy_enabled"),
                format!(
                    "the subscribe stream proxy is {NOT_YET}: the namespace's other options \
                     would decide instead; remove it"
                ),
            );
        }
    }

    // ---- Warned: harmless to ignore. ----
    for (name, on) in [
        ("server_ca_pem", !tls.server_ca_pem.is_empty()),
        ("server_ca_pem_b64", !tls.server_ca_pem_b64.is_empty()),
        ("server_ca_pem_file", !tls.server_ca_pem_file.is_empty()),
        ("insecure_skip_verify", tls.insecure_skip_verify),
        ("server_name", !tls.server_name.is_empty()),
    ] {
        if on {
            a.warn(
                format!("http_server.tls.{name}"),
                "configures outgoing connections in Centrifugo and does nothing on a \
                 listener; ignored",
            );
        }
    }
    for (path, v) in [("http_server.http3", &http.http3)] {
        if set(v) {
            a.warn(path, format!("{NOT_YET}; ignored"));
        }
    }
    for (path, on) in [
        ("http_server.tls_external", http.tls_external),
        ("http_server.h2c_external", http.h2c_external),
    ] {
        if on {
            a.warn(path, format!("{NOT_YET}; ignored"));
        }
    }
    let dc = &defaults.client;
    if cl.concurrency != dc.concurrency {
        a.warn(
            "client.concurrency",
            "Herald handles a connection's commands in order, one at a time; ignored",
        );
    }
    if cl.presence_update_interval != dc.presence_update_interval
        && c.engine.kind != crate::config::EngineType::Redis
    {
        a.warn(
            "client.presence_update_interval",
            "the embedded engine's presence needs no refresh (the Redis engine's does); \
             ignored",
        );
    }
    if cl.expired_sub_close_delay != dc.expired_sub_close_delay {
        a.warn(
            "client.expired_sub_close_delay",
            "an expired subscription is ended with unsubscribe 2501 at once; ignored",
        );
    }
    if cl.channel_position_check_delay != dc.channel_position_check_delay {
        a.warn(
            "client.channel_position_check_delay",
            "Herald does not run the periodic stream position check yet; ignored",
        );
    }
    if cl.channel_position_max_time_lag != dc.channel_position_max_time_lag {
        a.warn(
            "client.channel_position_max_time_lag",
            "Herald does not run the periodic stream position check yet; ignored",
        );
    }
    for (path, token) in [
        ("client.token", &cl.token),
        ("client.subscription_token", &cl.subscription_token.token),
    ] {
        if token.insecure_skip_jwks_endpoint_safety_check {
            a.warn(
                format!("{path}.insecure_skip_jwks_endpoint_safety_check"),
                "Herald does not support templated JWKS endpoints, so there is nothing to skip; \
                 ignored",
            );
        }
    }
    let format_ok = |f: &str| f.is_empty() || f == "json";
    if !format_ok(&c.channel.publication_data_format) {
        a.warn(
            "channel.publication_data_format",
            "Herald speaks JSON only: publication data is always JSON; ignored",
        );
    }
    for (at, o) in namespaces(c) {
        warn_namespace(&mut a, &at, o, &format_ok);
    }
    let ws = &c.websocket;
    let dws = &defaults.websocket;
    for (name, on) in [
        (
            "read_buffer_size",
            ws.read_buffer_size != dws.read_buffer_size,
        ),
        (
            "write_buffer_size",
            ws.write_buffer_size != dws.write_buffer_size,
        ),
        ("use_write_buffer_pool", ws.use_write_buffer_pool),
    ] {
        if on {
            a.warn(
                format!("websocket.{name}"),
                "Herald sizes its WebSocket buffers itself; ignored",
            );
        }
    }
    for (path, on) in [
        ("admin.web_path", !c.admin.web_path.is_empty()),
        (
            "admin.web_proxy_address",
            !c.admin.web_proxy_address.is_empty(),
        ),
    ] {
        if on {
            a.warn(
                path,
                format!("{NOT_YET}: the embedded admin UI is served; ignored"),
            );
        }
    }
    let uni = &c.uni_websocket;
    let duni = &defaults.uni_websocket;
    for (name, on) in [
        (
            "read_buffer_size",
            uni.read_buffer_size != duni.read_buffer_size,
        ),
        (
            "write_buffer_size",
            uni.write_buffer_size != duni.write_buffer_size,
        ),
        ("use_write_buffer_pool", uni.use_write_buffer_pool),
    ] {
        if on {
            a.warn(
                format!("uni_websocket.{name}"),
                "Herald sizes its WebSocket buffers itself; ignored",
            );
        }
    }
    if uni.join_push_messages {
        a.warn(
            "uni_websocket.join_push_messages",
            "Herald sends each push in a frame of its own, many frames per system call (a client \
             that splits joined frames reads them alike); ignored",
        );
    }
    if uni.disable_closing_handshake {
        a.warn(
            "uni_websocket.disable_closing_handshake",
            "Herald always ends a WebSocket with a close frame (with the disconnect's code and \
             reason); ignored",
        );
    }
    let p = &c.prometheus;
    for (name, on) in [
        ("instrument_http_handlers", p.instrument_http_handlers),
        (
            "recovered_publications_histogram",
            p.recovered_publications_histogram,
        ),
        ("native_histograms", p.native_histograms),
    ] {
        if on {
            a.warn(format!("prometheus.{name}"), format!("{NOT_YET}; ignored"));
        }
    }
    if c.enable_unreleased_features {
        a.warn(
            "enable_unreleased_features",
            "Herald has no unreleased features; ignored",
        );
    }
    let transports = "not implemented in Herald yet; clients must use the WebSocket endpoint";
    let sections: [(&str, &Opaque, &str); 14] = [
        ("map_broker", &c.map_broker, NOT_YET),
        ("controller", &c.controller, NOT_YET),
        ("shared_poll", &c.shared_poll, NOT_YET),
        (
            "rpc.ping",
            &c.rpc.ping,
            "the built-in ping method is not implemented in Herald yet; an rpc call to it \
             answers 108 unless a proxy takes it",
        ),
        (
            "grpc_api",
            &c.grpc_api,
            "not implemented in Herald yet; use the HTTP API",
        ),
        ("webtransport", &c.webtransport, transports),
        ("uni_grpc", &c.uni_grpc, transports),
        ("swagger", &c.swagger, NOT_YET),
        ("debug", &c.debug, NOT_YET),
        ("init", &c.init, NOT_YET),
        ("opentelemetry", &c.opentelemetry, NOT_YET),
        ("graphite", &c.graphite, NOT_YET),
        ("node", &c.node, NOT_YET),
        (
            "shutdown",
            &c.shutdown,
            "not implemented in Herald yet: shutdown waits 5 s for clients to go",
        ),
    ];
    for (path, v, what) in sections {
        if set(v) {
            a.warn(path, format!("{what}; ignored"));
        }
    }

    let mut findings = a.0;
    findings.sort_by_key(|f| f.severity == Severity::Warned);
    findings
}

/// The warned options of one namespace.
fn warn_namespace(a: &mut Audit, at: &str, o: &NamespaceOptions, format_ok: &dyn Fn(&str) -> bool) {
    if !format_ok(&o.publication_data_format) {
        a.warn(
            format!("{at}.publication_data_format"),
            "Herald speaks JSON only: publication data is always JSON; ignored",
        );
    }
    if o.subscribe_stream_proxy_bidirectional {
        a.warn(
            format!("{at}.subscribe_stream_proxy_bidirectional"),
            format!("{NOT_YET}; ignored"),
        );
    }
    for (name, on) in [
        (
            "map_clients_presence_channel_prefix",
            !o.map_clients_presence_channel_prefix.is_empty(),
        ),
        (
            "map_users_presence_channel_prefix",
            !o.map_users_presence_channel_prefix.is_empty(),
        ),
        (
            "subscription_type",
            !o.subscription_type.is_empty() && o.subscription_type != "stream",
        ),
        ("map", set(&o.map)),
        ("shared_poll", set(&o.shared_poll)),
    ] {
        if on {
            a.warn(
                format!("{at}.{name}"),
                "map and shared-poll subscriptions are not implemented in Herald yet: channels \
                 are plain streams",
            );
        }
    }
    if !o.subscribe_stream_proxy_name.is_empty() {
        a.warn(
            format!("{at}.subscribe_stream_proxy_name"),
            format!("the subscribe stream proxy is {NOT_YET}; ignored"),
        );
    }
}

/// The refused parts of one proxy section (`at`): Centrifugo's gRPC proxies and the HTTP
/// client's own TLS settings.
fn audit_proxy(a: &mut Audit, at: &str, p: &crate::config::ProxyConfig) {
    if set(&p.grpc) {
        a.refuse(
            format!("{at}.grpc"),
            format!("gRPC proxies are {NOT_YET} (Herald's proxies speak HTTP); remove it"),
        );
    }
    if !p.grpc_metadata.is_empty() {
        a.refuse(
            format!("{at}.grpc_metadata"),
            format!(
                "gRPC proxies and transports are {NOT_YET}, so there is no metadata to forward; \
                 remove it (http_headers forwards HTTP headers)"
            ),
        );
    }
    if enabled_inside(&p.http.tls) {
        a.refuse(
            format!("{at}.http.tls"),
            format!(
                "a proxy's own TLS settings (client certificate, CA) are {NOT_YET}: an https \
                 endpoint is verified against the system's CA store (SSL_CERT_FILE or \
                 SSL_CERT_DIR can name another); remove it"
            ),
        );
    }
}

/// `channel.without_namespace` and each `channel.namespaces[i]`, with their paths.
fn namespaces(c: &Config) -> Vec<(String, &NamespaceOptions)> {
    let mut out = vec![(
        "channel.without_namespace".to_string(),
        &c.channel.without_namespace,
    )];
    for (i, ns) in c.channel.namespaces.iter().enumerate() {
        out.push((format!("channel.namespaces[{i}]"), &ns.options));
    }
    out
}

/// Whether `path` (dotted, list indices as `[i]`) is an option of Centrifugo v6 (OSS or PRO)
/// that Herald's config does not have: such an option is ignored with a warning, so that a
/// Centrifugo config loads as it is, while a key that is no option at all stays an error (a
/// typo). See [`CENTRIFUGO_OPTIONS`].
pub fn is_centrifugo_option(path: &str) -> bool {
    let mut normalized = String::with_capacity(path.len());
    let mut in_index = false;
    for ch in path.chars() {
        match ch {
            '[' => {
                in_index = true;
                normalized.push_str("[]");
            }
            ']' => in_index = false,
            _ if in_index => {}
            _ => normalized.push(ch),
        }
    }
    CENTRIFUGO_OPTIONS
        .binary_search(&normalized.as_str())
        .is_ok()
        || CENTRIFUGO_OPTIONS
            .iter()
            .any(|known| known.ends_with(".*") && normalized.starts_with(&known[..known.len() - 1]))
}

/// Option paths (sorted; `[]` for any list index; a trailing `.*` for everything under a
/// path) of Centrifugo v6 that Herald's config schema does not have. Herald's schema has every
/// OSS option of Centrifugo's `internal/configtypes` (checked against its sources), so these
/// are Centrifugo PRO options from its documentation: per-namespace engines, channel
/// patterns, publish debouncing.
pub const CENTRIFUGO_OPTIONS: &[&str] = &[
    "brokers",
    "channel.namespaces[].broker_name",
    "channel.namespaces[].client_publish_debounce_interval",
    "channel.namespaces[].pattern",
    "channel.namespaces[].presence_manager_name",
    "channel.patterns",
    "channel.without_namespace.broker_name",
    "channel.without_namespace.client_publish_debounce_interval",
    "channel.without_namespace.presence_manager_name",
    "presence_managers",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigFormat;

    /// Options Herald implements (namespace options under `channel.without_namespace`; the
    /// same struct serves `channel.namespaces[]`), and options Centrifugo ignores too in the
    /// configuration where Herald ignores them (an engine's settings while another engine is
    /// selected, `external` without an internal port, which is refused).
    const IMPLEMENTED: &[&str] = &[
        // Proxies (config/proxy.rs, policy/proxy).
        "client.proxy.connect.enabled",
        "client.proxy.connect.name",
        "client.proxy.connect.endpoint",
        "client.proxy.connect.timeout",
        "client.proxy.connect.http_headers",
        "client.proxy.connect.emulated_headers",
        "client.proxy.connect.binary_encoding",
        "client.proxy.connect.include_connection_meta",
        "client.proxy.connect.http.status_to_code_transforms",
        "client.proxy.refresh.enabled",
        "client.proxy.refresh.name",
        "client.proxy.refresh.endpoint",
        "client.proxy.refresh.timeout",
        "client.proxy.refresh.http_headers",
        "client.proxy.refresh.emulated_headers",
        "client.proxy.refresh.binary_encoding",
        "client.proxy.refresh.include_connection_meta",
        "client.proxy.refresh.http.status_to_code_transforms",
        "channel.proxy.subscribe.enabled",
        "channel.proxy.subscribe.name",
        "channel.proxy.subscribe.endpoint",
        "channel.proxy.subscribe.timeout",
        "channel.proxy.subscribe.http_headers",
        "channel.proxy.subscribe.emulated_headers",
        "channel.proxy.subscribe.binary_encoding",
        "channel.proxy.subscribe.include_connection_meta",
        "channel.proxy.subscribe.http.status_to_code_transforms",
        "channel.proxy.publish.enabled",
        "channel.proxy.publish.name",
        "channel.proxy.publish.endpoint",
        "channel.proxy.publish.timeout",
        "channel.proxy.publish.http_headers",
        "channel.proxy.publish.emulated_headers",
        "channel.proxy.publish.binary_encoding",
        "channel.proxy.publish.include_connection_meta",
        "channel.proxy.publish.http.status_to_code_transforms",
        "channel.proxy.sub_refresh.enabled",
        "channel.proxy.sub_refresh.name",
        "channel.proxy.sub_refresh.endpoint",
        "channel.proxy.sub_refresh.timeout",
        "channel.proxy.sub_refresh.http_headers",
        "channel.proxy.sub_refresh.emulated_headers",
        "channel.proxy.sub_refresh.binary_encoding",
        "channel.proxy.sub_refresh.include_connection_meta",
        "channel.proxy.sub_refresh.http.status_to_code_transforms",
        "rpc.proxy.enabled",
        "rpc.proxy.name",
        "rpc.proxy.endpoint",
        "rpc.proxy.timeout",
        "rpc.proxy.http_headers",
        "rpc.proxy.emulated_headers",
        "rpc.proxy.binary_encoding",
        "rpc.proxy.include_connection_meta",
        "rpc.proxy.http.status_to_code_transforms",
        "channel.without_namespace.subscribe_proxy_enabled",
        "channel.without_namespace.subscribe_proxy_name",
        "channel.without_namespace.publish_proxy_enabled",
        "channel.without_namespace.publish_proxy_name",
        "channel.without_namespace.sub_refresh_proxy_enabled",
        "channel.without_namespace.sub_refresh_proxy_name",
        "proxies",
        "rpc.namespaces",
        "rpc.namespace_boundary",
        "rpc.without_namespace.proxy_enabled",
        "rpc.without_namespace.proxy_name",
        "admin.enabled",
        "admin.external",
        "admin.handler_prefix",
        "admin.insecure",
        "admin.password",
        "admin.secret",
        "broker.enabled",
        // NATS settings: the refused ones are refused only where NATS is selected
        // (engine::nats_config).
        "broker.nats.allow_wildcards",
        "broker.nats.dial_timeout",
        "broker.nats.jetstream.enabled",
        "broker.nats.prefix",
        "broker.nats.raw_mode",
        "broker.nats.tls.cert_pem",
        "broker.nats.tls.cert_pem_b64",
        "broker.nats.tls.cert_pem_file",
        "broker.nats.tls.client_ca_pem",
        "broker.nats.tls.client_ca_pem_b64",
        "broker.nats.tls.client_ca_pem_file",
        "broker.nats.tls.enabled",
        "broker.nats.tls.insecure_skip_verify",
        "broker.nats.tls.key_pem",
        "broker.nats.tls.key_pem_b64",
        "broker.nats.tls.key_pem_file",
        "broker.nats.tls.server_ca_pem",
        "broker.nats.tls.server_ca_pem_b64",
        "broker.nats.tls.server_ca_pem_file",
        "broker.nats.tls.server_name",
        "broker.nats.url",
        "broker.nats.write_timeout",
        "broker.postgres",
        "broker.redis",
        "broker.redisnats",
        "broker.type",
        "channel.history_meta_ttl",
        "channel.max_length",
        "channel.namespace_boundary",
        "channel.namespaces",
        "channel.private_prefix",
        "channel.user_boundary",
        "channel.user_separator",
        "channel.without_namespace.allow_history_for_anonymous",
        "channel.without_namespace.allow_history_for_client",
        "channel.without_namespace.allow_history_for_subscriber",
        "channel.without_namespace.allow_positioning",
        "channel.without_namespace.allow_presence_for_anonymous",
        "channel.without_namespace.allow_presence_for_client",
        "channel.without_namespace.allow_presence_for_subscriber",
        "channel.without_namespace.allow_publish_for_anonymous",
        "channel.without_namespace.allow_publish_for_client",
        "channel.without_namespace.allow_publish_for_subscriber",
        "channel.without_namespace.allow_recovery",
        "channel.without_namespace.allow_tags_filter",
        "channel.without_namespace.allowed_delta_types",
        "channel.without_namespace.auto_cache_recover",
        "channel.without_namespace.allow_subscribe_for_anonymous",
        "channel.without_namespace.allow_subscribe_for_client",
        "channel.without_namespace.allow_user_limited_channels",
        "channel.without_namespace.delta_publish",
        "channel.without_namespace.force_positioning",
        "channel.without_namespace.force_push_join_leave",
        "channel.without_namespace.force_recovery",
        "channel.without_namespace.force_recovery_mode",
        "channel.without_namespace.history_meta_ttl",
        "channel.without_namespace.history_size",
        "channel.without_namespace.history_ttl",
        "channel.without_namespace.join_leave",
        "channel.without_namespace.presence",
        "client.allow_anonymous_connect_without_token",
        "client.allowed_origins",
        "client.channel_limit",
        "client.connect_code_to_unidirectional_disconnect.enabled",
        "client.connect_code_to_unidirectional_disconnect.transforms",
        "client.connect_include_server_time",
        "client.connection_limit",
        "client.connection_rate_limit",
        "client.disallow_anonymous_connection_tokens",
        "client.expired_close_delay",
        "client.history_max_publication_limit",
        "client.insecure",
        "client.ping_interval",
        "client.pong_timeout",
        "client.queue_max_size",
        "client.recovery_max_publication_limit",
        "client.stale_close_delay",
        "client.subscribe_to_user_personal_channel.enabled",
        "client.subscribe_to_user_personal_channel.personal_channel_namespace",
        "client.subscribe_to_user_personal_channel.single_connection",
        "client.subscription_token.audience",
        "client.subscription_token.audience_regex",
        "client.subscription_token.ecdsa_public_key",
        "client.subscription_token.enabled",
        "client.subscription_token.hmac_previous_secret_key",
        "client.subscription_token.hmac_previous_secret_key_valid_until",
        "client.subscription_token.hmac_secret_key",
        "client.subscription_token.issuer",
        "client.subscription_token.issuer_regex",
        "client.subscription_token.jwks_public_endpoint",
        "client.subscription_token.rsa_public_key",
        "client.subscription_token.user_id_claim",
        "client.token.audience",
        "client.token.audience_regex",
        "client.token.ecdsa_public_key",
        "client.token.hmac_previous_secret_key",
        "client.token.hmac_previous_secret_key_valid_until",
        "client.token.hmac_secret_key",
        "client.token.issuer",
        "client.token.issuer_regex",
        "client.token.jwks_public_endpoint",
        "client.token.rsa_public_key",
        "client.token.user_id_claim",
        "client.user_connection_limit",
        "data_dir",
        "demo",
        "emulation.handler_prefix",
        "emulation.max_request_body_size",
        "engine.nats.allow_wildcards",
        "engine.nats.dial_timeout",
        "engine.nats.jetstream.enabled",
        "engine.nats.prefix",
        "engine.nats.raw_mode",
        "engine.nats.tls.cert_pem",
        "engine.nats.tls.cert_pem_b64",
        "engine.nats.tls.cert_pem_file",
        "engine.nats.tls.client_ca_pem",
        "engine.nats.tls.client_ca_pem_b64",
        "engine.nats.tls.client_ca_pem_file",
        "engine.nats.tls.enabled",
        "engine.nats.tls.insecure_skip_verify",
        "engine.nats.tls.key_pem",
        "engine.nats.tls.key_pem_b64",
        "engine.nats.tls.key_pem_file",
        "engine.nats.tls.server_ca_pem",
        "engine.nats.tls.server_ca_pem_b64",
        "engine.nats.tls.server_ca_pem_file",
        "engine.nats.tls.server_name",
        "engine.nats.url",
        "engine.nats.write_timeout",
        "engine.redis.address",
        "engine.redis.client_name",
        "engine.redis.cluster_address",
        "engine.redis.connect_timeout",
        "engine.redis.db",
        "engine.redis.force_resp2",
        "engine.redis.history_use_lists",
        "engine.redis.io_timeout",
        "engine.redis.password",
        "engine.redis.prefix",
        "engine.redis.presence_hash_field_ttl",
        "engine.redis.presence_ttl",
        "engine.redis.presence_user_mapping",
        "engine.redis.sentinel_address",
        "engine.redis.sentinel_client_name",
        "engine.redis.sentinel_master_name",
        "engine.redis.sentinel_password",
        "engine.redis.sentinel_tls.cert_pem",
        "engine.redis.sentinel_tls.cert_pem_b64",
        "engine.redis.sentinel_tls.cert_pem_file",
        "engine.redis.sentinel_tls.client_ca_pem",
        "engine.redis.sentinel_tls.client_ca_pem_b64",
        "engine.redis.sentinel_tls.client_ca_pem_file",
        "engine.redis.sentinel_tls.enabled",
        "engine.redis.sentinel_tls.insecure_skip_verify",
        "engine.redis.sentinel_tls.key_pem",
        "engine.redis.sentinel_tls.key_pem_b64",
        "engine.redis.sentinel_tls.key_pem_file",
        "engine.redis.sentinel_tls.server_ca_pem",
        "engine.redis.sentinel_tls.server_ca_pem_b64",
        "engine.redis.sentinel_tls.server_ca_pem_file",
        "engine.redis.sentinel_tls.server_name",
        "engine.redis.sentinel_user",
        "engine.redis.tls.cert_pem",
        "engine.redis.tls.cert_pem_b64",
        "engine.redis.tls.cert_pem_file",
        "engine.redis.tls.client_ca_pem",
        "engine.redis.tls.client_ca_pem_b64",
        "engine.redis.tls.client_ca_pem_file",
        "engine.redis.tls.enabled",
        "engine.redis.tls.insecure_skip_verify",
        "engine.redis.tls.key_pem",
        "engine.redis.tls.key_pem_b64",
        "engine.redis.tls.key_pem_file",
        "engine.redis.tls.server_ca_pem",
        "engine.redis.tls.server_ca_pem_b64",
        "engine.redis.tls.server_ca_pem_file",
        "engine.redis.tls.server_name",
        "engine.redis.user",
        "engine.type",
        "health.enabled",
        "health.handler_prefix",
        "history.durability",
        "http_api.disabled",
        "http_api.error_mode",
        "http_api.external",
        "http_api.handler_prefix",
        "http_api.insecure",
        "http_api.key",
        "http_server.address",
        "http_server.body_read_timeout",
        "http_server.port",
        "http_server.tls.cert_pem",
        "http_server.tls.cert_pem_b64",
        "http_server.tls.cert_pem_file",
        "http_server.tls.enabled",
        "http_server.tls.key_pem",
        "http_server.tls.key_pem_b64",
        "http_server.tls.key_pem_file",
        "http_server.unauthenticated_request_limit",
        "http_stream.enabled",
        "http_stream.handler_prefix",
        "http_stream.max_request_body_size",
        "log.file",
        "log.format",
        "log.level",
        "pid_file",
        "presence_manager.enabled",
        "presence_manager.redis.address",
        "presence_manager.redis.client_name",
        "presence_manager.redis.cluster_address",
        "presence_manager.redis.connect_timeout",
        "presence_manager.redis.db",
        "presence_manager.redis.force_resp2",
        "presence_manager.redis.history_use_lists",
        "presence_manager.redis.io_timeout",
        "presence_manager.redis.password",
        "presence_manager.redis.prefix",
        "presence_manager.redis.presence_hash_field_ttl",
        "presence_manager.redis.presence_ttl",
        "presence_manager.redis.presence_user_mapping",
        "presence_manager.redis.sentinel_address",
        "presence_manager.redis.sentinel_client_name",
        "presence_manager.redis.sentinel_master_name",
        "presence_manager.redis.sentinel_password",
        "presence_manager.redis.sentinel_tls.cert_pem",
        "presence_manager.redis.sentinel_tls.cert_pem_b64",
        "presence_manager.redis.sentinel_tls.cert_pem_file",
        "presence_manager.redis.sentinel_tls.client_ca_pem",
        "presence_manager.redis.sentinel_tls.client_ca_pem_b64",
        "presence_manager.redis.sentinel_tls.client_ca_pem_file",
        "presence_manager.redis.sentinel_tls.enabled",
        "presence_manager.redis.sentinel_tls.insecure_skip_verify",
        "presence_manager.redis.sentinel_tls.key_pem",
        "presence_manager.redis.sentinel_tls.key_pem_b64",
        "presence_manager.redis.sentinel_tls.key_pem_file",
        "presence_manager.redis.sentinel_tls.server_ca_pem",
        "presence_manager.redis.sentinel_tls.server_ca_pem_b64",
        "presence_manager.redis.sentinel_tls.server_ca_pem_file",
        "presence_manager.redis.sentinel_tls.server_name",
        "presence_manager.redis.sentinel_user",
        "presence_manager.redis.tls.cert_pem",
        "presence_manager.redis.tls.cert_pem_b64",
        "presence_manager.redis.tls.cert_pem_file",
        "presence_manager.redis.tls.client_ca_pem",
        "presence_manager.redis.tls.client_ca_pem_b64",
        "presence_manager.redis.tls.client_ca_pem_file",
        "presence_manager.redis.tls.enabled",
        "presence_manager.redis.tls.insecure_skip_verify",
        "presence_manager.redis.tls.key_pem",
        "presence_manager.redis.tls.key_pem_b64",
        "presence_manager.redis.tls.key_pem_file",
        "presence_manager.redis.tls.server_ca_pem",
        "presence_manager.redis.tls.server_ca_pem_b64",
        "presence_manager.redis.tls.server_ca_pem_file",
        "presence_manager.redis.tls.server_name",
        "presence_manager.redis.user",
        "presence_manager.type",
        "prometheus.enabled",
        "prometheus.handler_prefix",
        "sse.enabled",
        "sse.handler_prefix",
        "sse.max_request_body_size",
        "uni_http_stream.connect_code_to_http_response.enabled",
        "uni_http_stream.connect_code_to_http_response.transforms",
        "uni_http_stream.enabled",
        "uni_http_stream.handler_prefix",
        "uni_http_stream.max_request_body_size",
        "uni_sse.connect_code_to_http_response.enabled",
        "uni_sse.connect_code_to_http_response.transforms",
        "uni_sse.enabled",
        "uni_sse.handler_prefix",
        "uni_sse.max_request_body_size",
        "uni_websocket.compression",
        "uni_websocket.compression_level",
        "uni_websocket.compression_min_size",
        "uni_websocket.decompressed_message_size_limit",
        "uni_websocket.disable_disconnect_push",
        "uni_websocket.enabled",
        "uni_websocket.handler_prefix",
        "uni_websocket.message_size_limit",
        "uni_websocket.write_timeout",
        "usage_stats",
        "websocket.compression",
        "websocket.compression_level",
        "websocket.compression_min_size",
        "websocket.decompressed_message_size_limit",
        "websocket.disabled",
        "websocket.handler_prefix",
        "websocket.message_size_limit",
        "websocket.write_budget",
        "websocket.write_coalesce",
        "websocket.write_max_hold",
        "websocket.write_timeout",
        "webhooks.enabled",
        "webhooks.endpoint",
        "webhooks.events",
        "webhooks.max_batch",
        "webhooks.max_queue",
        "webhooks.max_queue_bytes",
        "webhooks.offline_grace",
        "webhooks.retry_max_backoff",
        "webhooks.retry_min_backoff",
        "webhooks.secret",
        "webhooks.timeout",
        "webhooks.vacated_grace",
        "workers",
    ];

    fn leaves(v: &Value, path: &str, out: &mut Vec<(String, Value)>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    let child = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    leaves(v, &child, out);
                }
            }
            other => out.push((path.to_string(), other.clone())),
        }
    }

    fn tree_with(path: &str, value: Value) -> Value {
        path.rsplit('.')
            .fold(value, |inner, key| serde_json::json!({ key: inner }))
    }

    /// Every option of the schema, set to something other than its default, is either in
    /// [`IMPLEMENTED`] or reported by [`audit`] under its own path: adding an option to the
    /// config without implementing or auditing it fails here.
    #[test]
    fn every_option_is_implemented_or_audited() {
        let mut all = Vec::new();
        leaves(
            &serde_json::to_value(Config::default()).unwrap(),
            "",
            &mut all,
        );
        let mut unaccounted = Vec::new();
        for (path, default) in all {
            if IMPLEMENTED.contains(&path.as_str()) {
                continue;
            }
            let candidates: Vec<Value> = match &default {
                Value::Bool(b) => vec![Value::Bool(!b)],
                Value::Number(_) => vec![Value::from(7)],
                Value::String(_) => ["7s", "x", "redis", "cache"]
                    .iter()
                    .map(|s| Value::from(*s))
                    .collect(),
                Value::Null => vec![serde_json::json!({"enabled": true, "x": 1})],
                Value::Array(_) => vec![serde_json::json!(["x"])],
                Value::Object(_) => unreachable!(),
            };
            let config = candidates.into_iter().find_map(|v| {
                let text = tree_with(&path, v).to_string();
                Config::from_str_with_format(&text, ConfigFormat::Json)
                    .ok()
                    .filter(|c| *c != Config::default())
            });
            let Some(config) = config else {
                unaccounted.push(format!("{path} (no test value)"));
                continue;
            };
            if !audit(&config).iter().any(|f| f.path == path) {
                unaccounted.push(path);
            }
        }
        assert!(
            unaccounted.is_empty(),
            "options neither implemented nor audited: {unaccounted:?}"
        );
    }

    /// A Redis presence manager's unimplemented options are named under its own section;
    /// history options mean nothing there and are only warned about.
    #[test]
    fn a_redis_presence_managers_options_are_named_under_it() {
        let c = Config::from_str_with_format(
            r#"{"presence_manager": {"enabled": true, "type": "redis", "redis": {
                "history_use_lists": true, "tls": {"server_name": "r"}}}}"#,
            ConfigFormat::Json,
        )
        .unwrap();
        let found: Vec<(Severity, String)> = audit(&c)
            .into_iter()
            .map(|f| (f.severity, f.path))
            .collect();
        assert_eq!(
            found,
            [
                (
                    Severity::Refused,
                    "presence_manager.redis.tls.server_name".into()
                ),
                (
                    Severity::Warned,
                    "presence_manager.redis.history_use_lists".into()
                ),
            ]
        );
    }

    /// Under `engine.type: redis`, the `engine.redis` options the engine does not implement
    /// are refused or warned by name (under another engine they are ignored, as in
    /// Centrifugo, which is why [`IMPLEMENTED`] lists them all).
    #[test]
    fn unimplemented_redis_options_are_named_under_the_redis_engine() {
        let c = Config::from_str_with_format(
            r#"{"engine": {"type": "redis", "redis": {"history_use_lists": true,
                "client_name": "x", "sentinel_tls": {"enabled": true},
                "tls": {"enabled": true, "server_name": "r", "client_ca_pem": "x"},
                "presence_hash_field_ttl": true, "presence_user_mapping": true}}}"#,
            ConfigFormat::Json,
        )
        .unwrap();
        let mut found: Vec<(Severity, String)> = audit(&c)
            .into_iter()
            .map(|f| (f.severity, f.path))
            .collect();
        found.sort_by(|a, b| a.1.cmp(&b.1));
        let r = |p: &str| (Severity::Refused, format!("engine.redis.{p}"));
        let w = |p: &str| (Severity::Warned, format!("engine.redis.{p}"));
        assert_eq!(
            found,
            [
                w("client_name"),
                r("history_use_lists"),
                w("presence_hash_field_ttl"),
                w("presence_user_mapping"),
                r("sentinel_tls.enabled"),
                w("tls.client_ca_pem"),
                r("tls.server_name"),
            ]
        );
        let plain = Config::from_str_with_format(
            r#"{"engine": {"type": "redis", "redis": {"address": "redis://127.0.0.1:6379"}}}"#,
            ConfigFormat::Json,
        )
        .unwrap();
        assert_eq!(audit(&plain), []);
    }

    #[test]
    fn defaults_have_no_findings() {
        assert_eq!(audit(&Config::default()), []);
    }

    #[test]
    fn refused_options_come_first_and_name_their_path() {
        let c = Config::from_str_with_format(
            r#"{"engine": {"type": "nats", "nats": {"allow_wildcards": true}}, "client": {"user_id_http_header": "X-User", "concurrency": 4},
                "channel": {"namespaces": [{"name": "a", "subscribe_stream_proxy_enabled": true}]}}"#,
            ConfigFormat::Json,
        )
        .unwrap();
        let found: Vec<(Severity, String)> = audit(&c)
            .into_iter()
            .map(|f| (f.severity, f.path))
            .collect();
        assert_eq!(
            found,
            [
                (Severity::Refused, "engine.nats.allow_wildcards".to_string()),
                (Severity::Refused, "client.user_id_http_header".to_string()),
                (
                    Severity::Refused,
                    "channel.namespaces[0].subscribe_stream_proxy_enabled".to_string()
                ),
                (Severity::Warned, "client.concurrency".to_string()),
            ]
        );
        // A TLS section that is not enabled is Centrifugo's default: nothing to say.
        let c = Config::from_str_with_format(
            r#"{"http_server": {"tls": {"enabled": false, "cert_pem_file": "x"}}}"#,
            ConfigFormat::Json,
        )
        .unwrap();
        assert_eq!(audit(&c), []);
    }

    #[test]
    fn centrifugo_pro_options_are_known() {
        assert!(CENTRIFUGO_OPTIONS.windows(2).all(|w| w[0] < w[1]), "sorted");
        assert!(is_centrifugo_option(
            "channel.namespaces[12].client_publish_debounce_interval"
        ));
        assert!(is_centrifugo_option("brokers"));
        assert!(is_centrifugo_option("channel.patterns"));
        assert!(!is_centrifugo_option("channel.namespaces[0].presense"));
        assert!(!is_centrifugo_option("client.pingg_interval"));
    }
}
