//! [`ConfigPolicy`]: the decisions the configuration makes — tokens signed with the
//! configured keys, and the namespaces' permission options.

use std::time::SystemTime;

use super::{ConnectContext, Credentials, PolicyFuture, PublishGrant, Refusal, SubscribeGrant};
use crate::auth::{SubscribeOptions, TokenError};
use crate::config::NamespaceOptions;
use crate::hub::ClientHandle;
use crate::node::Node;
use crate::protocol::{ConnectRequest, Disconnect, Error, Payload};

/// The default [`Policy`](super::Policy): JWT connection and subscription tokens (verified
/// with `client.token` / `client.subscription_token`), the namespaces' `allow_*` options,
/// private (`$`) and user-limited (`#`) channels, and `client.insecure`, as Centrifugo
/// applies them without proxies. RPC is not available.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConfigPolicy;

impl super::Policy for ConfigPolicy {
    fn connect<'a>(
        &'a self,
        node: &'a Node,
        request: &'a ConnectRequest,
        _context: ConnectContext<'a>,
    ) -> PolicyFuture<'a, Result<Credentials, Refusal>> {
        Box::pin(connect(node, request))
    }

    fn refresh<'a>(
        &'a self,
        node: &'a Node,
        client: &'a ClientHandle,
        token: &'a str,
    ) -> PolicyFuture<'a, Result<Option<u64>, Refusal>> {
        Box::pin(async move {
            let claims = match node
                .tokens()
                .verify_connection_token(token, SystemTime::now())
                .await
            {
                Ok(claims) => claims,
                Err(e) => return Err(refresh_refused(e, client, "refresh")),
            };
            if claims.sub != *client.user {
                return Err(Refusal::Disconnect(Disconnect::INVALID_TOKEN));
            }
            Ok(claims.expires_at())
        })
    }

    fn subscribe<'a>(
        &'a self,
        node: &'a Node,
        client: &'a ClientHandle,
        channel: &'a str,
        token: &'a str,
    ) -> PolicyFuture<'a, Result<SubscribeGrant, Refusal>> {
        Box::pin(subscribe(node, client, channel, token))
    }

    fn sub_refresh<'a>(
        &'a self,
        node: &'a Node,
        client: &'a ClientHandle,
        channel: &'a str,
        token: &'a str,
    ) -> PolicyFuture<'a, Result<Option<u64>, Refusal>> {
        Box::pin(async move {
            let claims = match node
                .subscription_tokens()
                .verify_subscription_token(token, SystemTime::now())
                .await
            {
                Ok(claims) => claims,
                Err(e) => return Err(refresh_refused(e, client, "sub_refresh")),
            };
            if client
                .id
                .with_str(|id| claims.check_for(&client.user, channel, id))
                .is_err()
            {
                return Err(Refusal::Disconnect(Disconnect::INVALID_TOKEN));
            }
            Ok(claims.expires_at())
        })
    }

    fn publish<'a>(
        &'a self,
        node: &'a Node,
        client: &'a ClientHandle,
        channel: &'a str,
        _data: &'a Payload,
    ) -> PolicyFuture<'a, Result<PublishGrant, Refusal>> {
        let decision = match node.resolve_channel(channel) {
            Err(error) => Err(Refusal::Error(error)),
            Ok((parsed, options)) => {
                let subscribed = client.is_subscribed(channel);
                // `allow_publish_for_anonymous` extends the other two to users without an
                // id; a private channel needs a subscription whatever the options say.
                let allowed = ((options.allow_publish_for_client
                    || (options.allow_publish_for_subscriber && subscribed))
                    && (!client.user.is_empty() || options.allow_publish_for_anonymous)
                    && (!parsed.private || subscribed))
                    || node.config().client.insecure;
                if allowed {
                    Ok(PublishGrant::default())
                } else {
                    Err(Refusal::Error(Error::PERMISSION_DENIED))
                }
            }
        };
        Box::pin(std::future::ready(decision))
    }

    fn history(
        &self,
        node: &Node,
        client: &ClientHandle,
        channel: &str,
        options: &NamespaceOptions,
    ) -> Result<(), Error> {
        let subscribed = client.is_subscribed(channel);
        let allowed = ((options.allow_history_for_client
            || (options.allow_history_for_subscriber && subscribed))
            && (!client.user.is_empty() || options.allow_history_for_anonymous))
            || node.config().client.insecure;
        if allowed {
            Ok(())
        } else {
            Err(Error::PERMISSION_DENIED)
        }
    }

    fn presence(
        &self,
        node: &Node,
        client: &ClientHandle,
        channel: &str,
        options: &NamespaceOptions,
    ) -> Result<(), Error> {
        let subscribed = client.is_subscribed(channel);
        let allowed = ((options.allow_presence_for_client
            || (options.allow_presence_for_subscriber && subscribed))
            && (!client.user.is_empty() || options.allow_presence_for_anonymous))
            || node.config().client.insecure;
        if allowed {
            Ok(())
        } else {
            Err(Error::PERMISSION_DENIED)
        }
    }
}

/// `connect`: no token is an anonymous connection where the configuration allows one; a
/// token is verified and gives the user, expiry, info and server-side subscriptions.
pub(super) async fn connect(node: &Node, request: &ConnectRequest) -> Result<Credentials, Refusal> {
    let config = &node.config().client;
    if request.token.is_empty() {
        // `client.insecure` (development only) lets anyone in as an anonymous user.
        if !config.allow_anonymous_connect_without_token && !config.insecure {
            tracing::debug!("connect without a token refused");
            return Err(Refusal::Disconnect(Disconnect::BAD_REQUEST));
        }
        return Ok(Credentials::default());
    }
    match node
        .tokens()
        .verify_connection_token(&request.token, SystemTime::now())
        .await
    {
        Ok(claims) => {
            if claims.sub.is_empty() && config.disallow_anonymous_connection_tokens {
                return Err(Refusal::Disconnect(Disconnect::INVALID_TOKEN));
            }
            Ok(Credentials {
                // As in Centrifugo, insecure mode never expires a connection.
                expires_at: claims.expires_at().filter(|_| !config.insecure),
                user: claims.sub,
                info: claims.info.map(Payload::from),
                subscriptions: server_side_subscriptions(claims.channels, claims.subs),
                data: None,
            })
        }
        Err(TokenError::Expired) => Err(Refusal::Error(Error::TOKEN_EXPIRED)),
        Err(TokenError::Invalid(reason)) => {
            tracing::info!("invalid connection token: {reason}");
            Err(Refusal::Disconnect(Disconnect::INVALID_TOKEN))
        }
    }
}

/// `subscribe`: a subscription token grants the channel (and is the only way into a private
/// one); without one, the namespace's options decide.
pub(super) async fn subscribe(
    node: &Node,
    client: &ClientHandle,
    channel: &str,
    token: &str,
) -> Result<SubscribeGrant, Refusal> {
    let (parsed, options) = node.resolve_channel(channel)?;
    if !token.is_empty() {
        let claims = node
            .subscription_tokens()
            .verify_subscription_token(token, SystemTime::now())
            .await
            .map_err(|e| match e {
                TokenError::Expired => Refusal::Error(Error::TOKEN_EXPIRED),
                // As in Centrifugo: a token that is not valid (malformed, a bad signature, a
                // wrong audience or issuer, no channel claim) only fails this subscribe; the
                // connection stays.
                TokenError::Invalid(reason) => {
                    tracing::info!(client = %client.id, "invalid subscription token: {reason}");
                    Refusal::Error(Error::PERMISSION_DENIED)
                }
            })?;
        // A valid token for another channel, user or connection is a client that
        // misbehaves: closed, as Centrifugo does.
        client
            .id
            .with_str(|id| claims.check_for(&client.user, channel, id))
            .map_err(|e| {
                tracing::info!(client = %client.id, "subscription token mismatch: {e}");
                Refusal::Disconnect(Disconnect::INVALID_TOKEN)
            })?;
        return Ok(SubscribeGrant {
            expires_at: claims.expires_at(),
            data: claims.data.map(Payload::from),
            override_: claims.override_,
            chan_info: claims.info.map(Payload::from),
        });
    }
    if parsed.private {
        return Err(Refusal::Error(Error::PERMISSION_DENIED));
    }
    // `client.insecure` (development only) opens every channel but private ones.
    let insecure = node.config().client.insecure;
    if options.allow_user_limited_channels && parsed.is_user_limited() {
        return if parsed.allows_user(&client.user) || insecure {
            Ok(SubscribeGrant::default())
        } else {
            Err(Refusal::Error(Error::PERMISSION_DENIED))
        };
    }
    // As in Centrifugo v6: `allow_subscribe_for_anonymous` extends
    // `allow_subscribe_for_client` to users without an id.
    let allowed = (options.allow_subscribe_for_client
        && (!client.user.is_empty() || options.allow_subscribe_for_anonymous))
        || insecure;
    if allowed {
        Ok(SubscribeGrant::default())
    } else {
        Err(Refusal::Error(Error::PERMISSION_DENIED))
    }
}

/// The server-side subscriptions of a connection token: `channels` with namespace defaults,
/// and `subs` with options, which win for a channel in both.
pub(super) fn server_side_subscriptions(
    channels: Vec<String>,
    subs: std::collections::BTreeMap<String, SubscribeOptions>,
) -> Vec<(String, SubscribeOptions)> {
    let mut all: Vec<(String, SubscribeOptions)> = channels
        .into_iter()
        .filter(|c| !subs.contains_key(c))
        .map(|c| (c, SubscribeOptions::default()))
        .collect();
    all.extend(subs);
    all
}

/// How a refresh or sub-refresh token that fails verification is answered: an expired one with
/// 109 (the SDK fetches a fresh token and tries again), any other by closing the connection
/// (3500), as in Centrifugo. `command` names it in the log.
fn refresh_refused(error: TokenError, client: &ClientHandle, command: &str) -> Refusal {
    match error {
        TokenError::Expired => Refusal::Error(Error::TOKEN_EXPIRED),
        TokenError::Invalid(reason) => {
            tracing::info!(client = %client.id, "invalid {command} token: {reason}");
            Refusal::Disconnect(Disconnect::INVALID_TOKEN)
        }
    }
}
