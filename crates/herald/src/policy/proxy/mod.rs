//! [`ProxyPolicy`]: the decisions a backend makes over HTTP — Centrifugo v6's connect,
//! refresh, subscribe, publish, sub-refresh and RPC proxies, in its JSON format
//! ([`wire`], docs/protocol.md §11) — and the configuration's ([`ConfigPolicy`]) wherever
//! Centrifugo does not ask a proxy:
//!
//! * `connect` goes to `client.proxy.connect` only when the client sends no token;
//! * `subscribe` goes to the namespace's subscribe proxy only without a subscription token,
//!   and not for private or user-limited channels;
//! * `publish` goes to the namespace's publish proxy, which decides alone (the `allow_publish_*`
//!   options do not apply) and may rewrite the data, skip history, set an idempotency key,
//!   tags, delta and version;
//! * `refresh` and `sub_refresh` are asked by the server when a connection or subscription
//!   expires (see [`super::refresher`]); a backend that fails then gives 60 more seconds, as
//!   Centrifugo does;
//! * `rpc` goes to the proxy of the method's RPC namespace (`rpc.namespaces`, or
//!   `rpc.without_namespace`); 104 for a namespace not configured, 108 where no proxy is on.
//!
//! A backend that is down, slow (beyond the proxy's `timeout`), answers another status than
//! 200 or something that is not the expected JSON gives the client 100 (internal, temporary:
//! the SDK retries) unless `status_to_code_transforms` maps the status, and is logged.

mod connections;
mod http;
mod wire;

use std::collections::HashMap;
use std::sync::Arc;

use ::http::{HeaderName, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;

use self::connections::{ConnectionInfo, Connections};
use self::http::HttpProxy;
use super::config as by_config;
use super::{
    ConfigPolicy, ConnectContext, Credentials, Policy, PolicyFuture, PublishGrant, Refusal,
    SubscribeGrant,
};
use crate::config::{Config, NamespaceOptions, ProxyConfig};
use crate::hub::ClientHandle;
use crate::node::{Node, unix_now};
use crate::protocol::{
    ConnectRequest, Disconnect, Encoding, Error, Payload, RpcRequest, RpcResult,
};
use crate::ws::Outbox;

pub use self::http::MAX_RESPONSE;

/// How many seconds a connection or subscription lives on when its refresh proxy fails
/// (Centrifugo's choice: a backend hiccup must not disconnect everyone).
const REFRESH_RETRY_SECS: u64 = 60;

/// The proxies of a configuration, and the connections they know (see the module
/// documentation).
pub struct ProxyPolicy {
    connect: Option<Arc<HttpProxy>>,
    refresh: Option<Arc<HttpProxy>>,
    subscribe: Option<Arc<HttpProxy>>,
    publish: Option<Arc<HttpProxy>>,
    sub_refresh: Option<Arc<HttpProxy>>,
    rpc: Option<Arc<HttpProxy>>,
    /// `proxies[]`, by name.
    named: HashMap<String, Arc<HttpProxy>>,
    /// The union of every proxy's `http_headers`: what the server keeps of the request that
    /// opens a connection.
    wanted_headers: Vec<HeaderName>,
    /// The union of every proxy's `emulated_headers`.
    wanted_emulated: Vec<String>,
    connections: Connections,
}

/// Which channel proxy a namespace option turns on.
#[derive(Clone, Copy)]
enum ChannelKind {
    Subscribe,
    Publish,
    SubRefresh,
}

impl ProxyPolicy {
    /// The policy of `config` when it turns a proxy on (`client.proxy.*.enabled`, a
    /// namespace's `*_proxy_enabled`, an RPC namespace's `proxy_enabled`); `None` when it
    /// turns none on. The config is assumed validated (endpoints are http(s) URLs).
    pub fn from_config(config: &Config) -> Result<Option<ProxyPolicy>, String> {
        let namespaces = std::iter::once(&config.channel.without_namespace)
            .chain(config.channel.namespaces.iter().map(|ns| &ns.options));
        let channel_proxies = namespaces.clone().any(|o| {
            o.subscribe_proxy_enabled || o.publish_proxy_enabled || o.sub_refresh_proxy_enabled
        });
        let rpc = &config.rpc;
        let rpc_proxies =
            rpc.without_namespace.proxy_enabled || rpc.namespaces.iter().any(|ns| ns.proxy_enabled);
        let client = &config.client.proxy;
        if !(client.connect.enabled || client.refresh.enabled || channel_proxies || rpc_proxies) {
            return Ok(None);
        }
        let build = |p: &ProxyConfig| -> Result<Option<Arc<HttpProxy>>, String> {
            if p.endpoint.is_empty() {
                return Ok(None);
            }
            HttpProxy::new("default", p).map(Some)
        };
        let enabled = |p: &ProxyConfig| if p.enabled { build(p) } else { Ok(None) };
        let mut named = HashMap::new();
        for p in &config.proxies {
            named.insert(p.name.clone(), HttpProxy::new(&p.name, p)?);
        }
        let mut policy = ProxyPolicy {
            connect: enabled(&client.connect)?,
            refresh: enabled(&client.refresh)?,
            subscribe: build(&config.channel.proxy.subscribe)?,
            publish: build(&config.channel.proxy.publish)?,
            sub_refresh: build(&config.channel.proxy.sub_refresh)?,
            rpc: build(&rpc.proxy)?,
            named,
            wanted_headers: Vec::new(),
            wanted_emulated: Vec::new(),
            connections: Connections::default(),
        };
        let all: Vec<Arc<HttpProxy>> = [
            &policy.connect,
            &policy.refresh,
            &policy.subscribe,
            &policy.publish,
            &policy.sub_refresh,
            &policy.rpc,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .chain(policy.named.values().cloned())
        .collect();
        for p in all {
            for h in &p.http_headers {
                if !policy.wanted_headers.contains(h) {
                    policy.wanted_headers.push(h.clone());
                }
            }
            for h in &p.emulated_headers {
                if !policy.wanted_emulated.contains(h) {
                    policy.wanted_emulated.push(h.clone());
                }
            }
        }
        Ok(Some(policy))
    }

    /// The proxy `name` (`""`/`default`: the section's own, `default`).
    fn pick(&self, default: &Option<Arc<HttpProxy>>, name: &str) -> Option<Arc<HttpProxy>> {
        if name.is_empty() || name == "default" {
            return default.clone();
        }
        self.named.get(name).cloned()
    }

    /// The channel proxy of `kind` the namespace `options` turns on, if it turns one on:
    /// `Err(108)` when it names one that is not configured (config validation prevents it).
    fn channel_proxy(
        &self,
        options: &NamespaceOptions,
        kind: ChannelKind,
    ) -> Option<Result<Arc<HttpProxy>, Error>> {
        let (on, name, default) = match kind {
            ChannelKind::Subscribe => (
                options.subscribe_proxy_enabled,
                &options.subscribe_proxy_name,
                &self.subscribe,
            ),
            ChannelKind::Publish => (
                options.publish_proxy_enabled,
                &options.publish_proxy_name,
                &self.publish,
            ),
            ChannelKind::SubRefresh => (
                options.sub_refresh_proxy_enabled,
                &options.sub_refresh_proxy_name,
                &self.sub_refresh,
            ),
        };
        on.then(|| self.pick(default, name).ok_or(Error::NOT_AVAILABLE))
    }

    /// What is known of `client`'s connection (empty if nothing: a connection made before
    /// the table knew it cannot happen, but a missing entry only loses headers and meta).
    fn info_of(&self, outbox: &Arc<Outbox>) -> Arc<ConnectionInfo> {
        self.connections.get(outbox).unwrap_or_default()
    }

    /// The headers a call to `proxy` forwards for connection `info`: the emulated ones it
    /// lists, then the transport's (which win, as in Centrifugo).
    fn forwarded(proxy: &HttpProxy, info: &ConnectionInfo) -> Vec<(HeaderName, HeaderValue)> {
        let mut out: Vec<(HeaderName, HeaderValue)> = Vec::new();
        for (name, value) in &info.emulated {
            if proxy.emulated_headers.contains(name)
                && let (Ok(n), Ok(v)) = (
                    HeaderName::try_from(name.as_str()),
                    HeaderValue::try_from(value.as_str()),
                )
            {
                out.push((n, v));
            }
        }
        for (name, value) in &info.headers {
            if proxy.http_headers.contains(name) {
                out.retain(|(n, _)| n != name);
                out.push((name.clone(), value.clone()));
            }
        }
        out
    }

    /// Sends `request` to `proxy` for a connection (`info`) and decodes the answer, whose
    /// `error` and `disconnect` become refusals; a failed call gives `Err(Err(call error))`
    /// so that the caller decides what it means (100, or more time for a refresh).
    async fn ask<Req: Serialize, Res: DeserializeOwned>(
        proxy: &HttpProxy,
        kind: &str,
        info: &ConnectionInfo,
        request: &Req,
    ) -> Result<Option<Res>, Result<Refusal, http::CallError>> {
        let body = serde_json::to_vec(request).map_err(|e| {
            Err(http::CallError::BadAnswer(format!(
                "the request could not be encoded: {e}"
            )))
        })?;
        let answer = proxy
            .call(body, &Self::forwarded(proxy, info))
            .await
            .map_err(Err)?;
        let response: wire::Response<Res> = serde_json::from_slice(&answer).map_err(|e| {
            Err(http::CallError::BadAnswer(format!(
                "not a {kind} proxy response ({e})"
            )))
        })?;
        if let Some(d) = response.disconnect {
            return Err(Ok(Refusal::Disconnect(http::backend_disconnect(
                &proxy.name,
                d.code,
                &d.reason,
            ))));
        }
        if let Some(e) = response.error {
            return Err(Ok(Refusal::Error(Error {
                code: e.code,
                message: e.message.into(),
                temporary: e.temporary,
            })));
        }
        Ok(response.result)
    }

    /// [`ProxyPolicy::ask`] where a failed call is a refusal (100, or a status transform).
    async fn ask_or_refuse<Req: Serialize, Res: DeserializeOwned>(
        proxy: &HttpProxy,
        kind: &str,
        info: &ConnectionInfo,
        request: &Req,
    ) -> Result<Option<Res>, Refusal> {
        Self::ask(proxy, kind, info, request)
            .await
            .map_err(|e| e.unwrap_or_else(|call| proxy.refusal(kind, &call)))
    }

    /// The connection-level fields of a request about `client`.
    fn conn<'a>(
        proxy: &'a HttpProxy,
        client: &'a ClientHandle,
        id: &'a str,
        info: &'a ConnectionInfo,
    ) -> wire::Conn<'a> {
        wire::Conn {
            base: wire::Base {
                client: id,
                transport: info.transport,
                protocol: protocol_name(client.encoding),
                encoding: proxy.encoding(),
            },
            user: &client.user,
            meta: info.meta.as_deref().filter(|_| proxy.include_meta),
        }
    }

    async fn connect_via(
        &self,
        proxy: &HttpProxy,
        request: &ConnectRequest,
        context: ConnectContext<'_>,
        mut info: ConnectionInfo,
    ) -> Result<Credentials, Refusal> {
        let body = wire::ConnectRequest {
            base: wire::Base {
                client: "",
                transport: context.transport,
                protocol: protocol_name(context.encoding),
                encoding: proxy.encoding(),
            },
            data: wire::Data::of(request.data.as_ref(), proxy.binary),
            name: &request.name,
            version: &request.version,
        };
        let result: Option<wire::ConnectResult> =
            Self::ask_or_refuse(proxy, "connect", &info, &body).await?;
        let Some(result) = result else {
            tracing::info!(proxy = %proxy.name, "connect proxy gave no result: connection refused (3501)");
            return Err(Refusal::Disconnect(Disconnect::BAD_REQUEST));
        };
        if result.caps.as_ref().is_some_and(|c| !c.is_null()) {
            tracing::error!(
                proxy = %proxy.name,
                "the connect proxy's result has caps (channel capabilities), which Herald does \
                 not implement: the connection is refused (100) rather than given other rights; \
                 answer with channels/subs instead"
            );
            return Err(Refusal::Error(Error::INTERNAL));
        }
        let bad = |what: &str, e: String| {
            tracing::error!(proxy = %proxy.name, "connect proxy result: {what}: {e}");
            Refusal::Error(Error::INTERNAL)
        };
        let conn_info =
            wire::payload(result.info, &result.b64info).map_err(|e| bad("b64info", e))?;
        let data = wire::payload(result.data, &result.b64data).map_err(|e| bad("b64data", e))?;
        let expires_at = match u64::try_from(result.expire_at) {
            Ok(0) | Err(_) => None,
            Ok(at) if at <= unix_now() => return Err(Refusal::Error(Error::EXPIRED)),
            Ok(at) => Some(at),
        };
        // A channel Herald has no namespace for is refused by the client's connect, as
        // Centrifugo refuses it.
        let subscriptions = by_config::server_side_subscriptions(result.channels, result.subs);
        info.meta = result.meta.map(Arc::from);
        self.connections.insert(context.outbox, info);
        Ok(Credentials {
            user: result.user,
            expires_at,
            info: conn_info,
            subscriptions,
            data,
        })
    }

    /// What refresh and sub_refresh results mean: a new expiry, never, or expired.
    fn refreshed(
        result: Option<wire::RefreshResult>,
        proxy: &HttpProxy,
        kind: &str,
    ) -> Result<Option<u64>, ()> {
        let Some(result) = result else {
            tracing::error!(proxy = %proxy.name, "{kind} proxy gave no result: taken as expired");
            return Err(());
        };
        if result.expired {
            return Err(());
        }
        Ok(u64::try_from(result.expire_at).ok().filter(|at| *at > 0))
    }
}

/// Centrifugo's name of an encoding in proxy requests (`protocol`).
fn protocol_name(encoding: Encoding) -> &'static str {
    match encoding {
        Encoding::Protobuf => "protobuf",
        _ => "json",
    }
}

impl Policy for ProxyPolicy {
    fn connect<'a>(
        &'a self,
        node: &'a Node,
        request: &'a ConnectRequest,
        context: ConnectContext<'a>,
    ) -> PolicyFuture<'a, Result<Credentials, Refusal>> {
        Box::pin(async move {
            // The headers kept at the upgrade, and what the connect itself tells.
            let kept = self.connections.get(context.outbox);
            let info = ConnectionInfo {
                transport: context.transport,
                headers: kept.map(|k| k.headers.clone()).unwrap_or_default(),
                emulated: request
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                    .filter(|(k, _)| self.wanted_emulated.contains(k))
                    .collect(),
                meta: None,
            };
            match &self.connect {
                Some(proxy) if request.token.is_empty() => {
                    self.connect_via(proxy, request, context, info).await
                }
                _ => {
                    self.connections.insert(context.outbox, info);
                    by_config::connect(node, request).await
                }
            }
        })
    }

    fn refresh<'a>(
        &'a self,
        node: &'a Node,
        client: &'a ClientHandle,
        token: &'a str,
    ) -> PolicyFuture<'a, Result<Option<u64>, Refusal>> {
        let Some(proxy) = &self.refresh else {
            return ConfigPolicy.refresh(node, client, token);
        };
        Box::pin(async move {
            let info = self.info_of(&client.outbox);
            let id = client.id.to_string();
            let body = wire::RefreshRequest {
                conn: Self::conn(proxy, client, &id, &info),
            };
            match Self::ask::<_, wire::RefreshResult>(proxy, "refresh", &info, &body).await {
                Ok(result) => {
                    let meta = result
                        .as_ref()
                        .and_then(|r| r.meta.as_deref())
                        .map(|m| Arc::<serde_json::value::RawValue>::from(m.to_owned()));
                    let refreshed = Self::refreshed(result, proxy, "refresh")
                        .map_err(|()| Refusal::Disconnect(Disconnect::EXPIRED))?;
                    if let Some(meta) = meta {
                        self.connections
                            .update(&client.outbox, |info| info.meta = Some(meta));
                    }
                    Ok(refreshed)
                }
                Err(Ok(refusal)) => Err(refusal),
                Err(Err(call)) => {
                    proxy.log_failure("refresh", &call, "the connection lives 60 s more");
                    Ok(Some(unix_now() + REFRESH_RETRY_SECS))
                }
            }
        })
    }

    fn subscribe<'a>(
        &'a self,
        node: &'a Node,
        client: &'a ClientHandle,
        channel: &'a str,
        token: &'a str,
    ) -> PolicyFuture<'a, Result<SubscribeGrant, Refusal>> {
        let proxy = match node.resolve_channel(channel) {
            Ok((parsed, options))
                if token.is_empty()
                    && !parsed.private
                    && !(options.allow_user_limited_channels && parsed.is_user_limited()) =>
            {
                self.channel_proxy(options, ChannelKind::Subscribe)
            }
            _ => None,
        };
        let proxy = match proxy {
            None => return Box::pin(by_config::subscribe(node, client, channel, token)),
            Some(Err(error)) => return Box::pin(std::future::ready(Err(error.into()))),
            Some(Ok(proxy)) => proxy,
        };
        Box::pin(async move {
            let info = self.info_of(&client.outbox);
            let id = client.id.to_string();
            let body = wire::SubscribeRequest {
                conn: Self::conn(&proxy, client, &id, &info),
                channel,
                token,
            };
            let result: Option<wire::SubscribeResult> =
                Self::ask_or_refuse(&proxy, "subscribe", &info, &body).await?;
            let Some(result) = result else {
                return Ok(SubscribeGrant::default());
            };
            let bad = |e: String| {
                tracing::error!(proxy = %proxy.name, channel, "subscribe proxy result: {e}");
                Refusal::Error(Error::INTERNAL)
            };
            Ok(SubscribeGrant {
                expires_at: u64::try_from(result.expire_at).ok().filter(|at| *at > 0),
                data: wire::payload(result.data, &result.b64data).map_err(bad)?,
                override_: result.override_,
                chan_info: wire::payload(result.info, &result.b64info).map_err(bad)?,
            })
        })
    }

    fn sub_refresh<'a>(
        &'a self,
        node: &'a Node,
        client: &'a ClientHandle,
        channel: &'a str,
        token: &'a str,
    ) -> PolicyFuture<'a, Result<Option<u64>, Refusal>> {
        let proxy = match node.resolve_channel(channel) {
            Ok((_, options)) if token.is_empty() => {
                self.channel_proxy(options, ChannelKind::SubRefresh)
            }
            _ => None,
        };
        let proxy = match proxy {
            None => return ConfigPolicy.sub_refresh(node, client, channel, token),
            Some(Err(error)) => return Box::pin(std::future::ready(Err(error.into()))),
            Some(Ok(proxy)) => proxy,
        };
        Box::pin(async move {
            let info = self.info_of(&client.outbox);
            let id = client.id.to_string();
            let body = wire::SubRefreshRequest {
                conn: Self::conn(&proxy, client, &id, &info),
                channel,
            };
            match Self::ask(&proxy, "sub_refresh", &info, &body).await {
                Ok(result) => Self::refreshed(result, &proxy, "sub_refresh")
                    .map_err(|()| Refusal::Error(Error::EXPIRED)),
                Err(Ok(refusal)) => Err(refusal),
                Err(Err(call)) => {
                    proxy.log_failure("sub_refresh", &call, "the subscription lives 60 s more");
                    Ok(Some(unix_now() + REFRESH_RETRY_SECS))
                }
            }
        })
    }

    fn publish<'a>(
        &'a self,
        node: &'a Node,
        client: &'a ClientHandle,
        channel: &'a str,
        data: &'a Payload,
    ) -> PolicyFuture<'a, Result<PublishGrant, Refusal>> {
        let proxy = match node.resolve_channel(channel) {
            Ok((_, options)) => self.channel_proxy(options, ChannelKind::Publish),
            Err(_) => None,
        };
        let proxy = match proxy {
            None => return ConfigPolicy.publish(node, client, channel, data),
            Some(Err(error)) => return Box::pin(std::future::ready(Err(error.into()))),
            Some(Ok(proxy)) => proxy,
        };
        Box::pin(async move {
            let info = self.info_of(&client.outbox);
            let id = client.id.to_string();
            let body = wire::PublishRequest {
                conn: Self::conn(&proxy, client, &id, &info),
                channel,
                data: wire::Data::of(Some(data), proxy.binary),
            };
            let result: Option<wire::PublishResult> =
                Self::ask_or_refuse(&proxy, "publish", &info, &body).await?;
            let Some(result) = result else {
                return Ok(PublishGrant::default());
            };
            let data = wire::payload(result.data, &result.b64data).map_err(|e| {
                tracing::error!(proxy = %proxy.name, channel, "publish proxy result: {e}");
                Refusal::Error(Error::INTERNAL)
            })?;
            Ok(PublishGrant {
                data,
                skip_history: result.skip_history,
                idempotency_key: Some(result.idempotency_key).filter(|k| !k.is_empty()),
                tags: result.tags,
                delta: result.delta,
                version: result.version,
                version_epoch: result.version_epoch,
            })
        })
    }

    fn rpc<'a>(
        &'a self,
        node: &'a Node,
        client: &'a ClientHandle,
        request: &'a RpcRequest,
    ) -> PolicyFuture<'a, Result<RpcResult, Refusal>> {
        let rpc = &node.config().rpc;
        let proxy = match rpc.options_for(&request.method) {
            None => Err(Error::METHOD_NOT_FOUND),
            Some(options) if !options.proxy_enabled => Err(Error::NOT_AVAILABLE),
            Some(options) => self
                .pick(&self.rpc, &options.proxy_name)
                .ok_or(Error::NOT_AVAILABLE),
        };
        let proxy = match proxy {
            Ok(proxy) => proxy,
            Err(error) => return Box::pin(std::future::ready(Err(error.into()))),
        };
        Box::pin(async move {
            let info = self.info_of(&client.outbox);
            let id = client.id.to_string();
            let body = wire::RpcRequest {
                conn: Self::conn(&proxy, client, &id, &info),
                method: &request.method,
                data: wire::Data::of(request.data.as_ref(), proxy.binary),
            };
            let result: Option<wire::RpcResult> =
                Self::ask_or_refuse(&proxy, "rpc", &info, &body).await?;
            let Some(result) = result else {
                return Ok(RpcResult::default());
            };
            let data = wire::payload(result.data, &result.b64data).map_err(|e| {
                tracing::error!(proxy = %proxy.name, method = %request.method, "rpc proxy result: {e}");
                Refusal::Error(Error::INTERNAL)
            })?;
            Ok(RpcResult { data })
        })
    }

    fn refreshes_connections(&self) -> bool {
        self.refresh.is_some()
    }

    fn refreshes_subscriptions(&self, node: &Node, channel: &str) -> bool {
        node.resolve_channel(channel)
            .is_ok_and(|(_, options)| options.sub_refresh_proxy_enabled)
    }

    fn wanted_headers(&self) -> &[HeaderName] {
        &self.wanted_headers
    }

    fn keep_headers(&self, outbox: &Arc<Outbox>, headers: Vec<(HeaderName, HeaderValue)>) {
        self.connections.insert(
            outbox,
            ConnectionInfo {
                headers,
                ..ConnectionInfo::default()
            },
        );
    }

    fn history(
        &self,
        node: &Node,
        client: &ClientHandle,
        channel: &str,
        options: &NamespaceOptions,
    ) -> Result<(), Error> {
        ConfigPolicy.history(node, client, channel, options)
    }

    fn presence(
        &self,
        node: &Node,
        client: &ClientHandle,
        channel: &str,
        options: &NamespaceOptions,
    ) -> Result<(), Error> {
        ConfigPolicy.presence(node, client, channel, options)
    }
}

#[cfg(test)]
mod tests;
