//! Maps between the generated Protobuf types ([`pb`]) and the protocol types the server works
//! with: inbound commands by value (their strings and payload bytes move, nothing is copied),
//! outbound replies by reference (strings copied, payloads shared by reference count).
//!
//! Proto3 cannot tell an absent `bytes` field from an empty one, so an empty payload reads as
//! none — what the Centrifugo SDKs mean by it too.
//!
//! The reverse directions (commands to Protobuf, replies from it) are what a Rust client
//! needs; the tests use them to prove that every message round-trips.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use super::pb;
use crate::protocol::Payload;
use crate::protocol::{
    ClientInfo, Command, ConnectRequest, ConnectResult, DisconnectPush, Error, FilterNode,
    HistoryRequest, HistoryResult, JoinPush, LeavePush, MessagePush, PingRequest, PingResult,
    PresenceRequest, PresenceResult, PresenceStatsRequest, PresenceStatsResult, Publication,
    PublishRequest, PublishResult, Push, RefreshPush, RefreshRequest, RefreshResult, Reply,
    RpcRequest, RpcResult, SendRequest, StreamPosition, SubRefreshRequest, SubRefreshResult,
    SubscribePush, SubscribeRequest, SubscribeResult, UnsubscribePush, UnsubscribeRequest,
    UnsubscribeResult,
};

/// A payload from a `bytes` field: none when empty.
fn payload(bytes: Bytes) -> Option<Payload> {
    (!bytes.is_empty()).then(|| Payload::from_stored(bytes))
}

/// A payload into a `bytes` field, shared.
fn bytes(payload: &Option<Payload>) -> Bytes {
    payload
        .as_ref()
        .map(|p| p.bytes().clone())
        .unwrap_or_default()
}

// ---- inbound: Protobuf command -> Command ----

/// A decoded command.
pub(super) fn command(c: pb::Command) -> Command {
    Command {
        id: c.id,
        connect: c.connect.map(|r| ConnectRequest {
            token: r.token,
            data: payload(r.data),
            subs: r
                .subs
                .into_iter()
                .map(|(channel, s)| (channel, subscribe_request(s)))
                .collect(),
            name: r.name,
            version: r.version,
            headers: r.headers,
            flag: r.flag,
            dict: r.dict,
            profile: r.profile,
        }),
        subscribe: c.subscribe.map(subscribe_request),
        unsubscribe: c
            .unsubscribe
            .map(|r| UnsubscribeRequest { channel: r.channel }),
        publish: c.publish.map(|r| PublishRequest {
            channel: r.channel,
            data: payload(r.data),
            kind: r.r#type,
            key: r.key,
            removed: r.removed,
        }),
        presence: c.presence.map(|r| PresenceRequest { channel: r.channel }),
        presence_stats: c
            .presence_stats
            .map(|r| PresenceStatsRequest { channel: r.channel }),
        history: c.history.map(|r| HistoryRequest {
            channel: r.channel,
            limit: r.limit,
            since: r.since.map(|s| StreamPosition {
                offset: s.offset,
                epoch: s.epoch,
            }),
            reverse: r.reverse,
        }),
        ping: c.ping.map(|_| PingRequest {}),
        send: c.send.map(|r| SendRequest {
            data: payload(r.data),
        }),
        rpc: c.rpc.map(|r| RpcRequest {
            data: payload(r.data),
            method: r.method,
        }),
        refresh: c.refresh.map(|r| RefreshRequest { token: r.token }),
        sub_refresh: c.sub_refresh.map(|r| SubRefreshRequest {
            channel: r.channel,
            token: r.token,
            kind: r.r#type,
        }),
    }
}

fn subscribe_request(r: pb::SubscribeRequest) -> SubscribeRequest {
    SubscribeRequest {
        channel: r.channel,
        token: r.token,
        recover: r.recover,
        epoch: r.epoch,
        offset: r.offset,
        data: payload(r.data),
        positioned: r.positioned,
        recoverable: r.recoverable,
        join_leave: r.join_leave,
        delta: r.delta,
        tf: r.tf.map(filter_node),
        flag: r.flag,
        kind: r.r#type,
    }
}

fn filter_node(n: pb::FilterNode) -> FilterNode {
    FilterNode {
        op: n.op,
        key: n.key,
        cmp: n.cmp,
        val: n.val,
        vals: n.vals,
        nodes: n.nodes.into_iter().map(filter_node).collect(),
    }
}

// ---- outbound: Reply -> Protobuf ----

/// A reply to encode.
pub(super) fn reply(r: &Reply) -> pb::Reply {
    pb::Reply {
        id: r.id,
        error: r.error.as_ref().map(|e| pb::Error {
            code: e.code,
            message: e.message.to_string(),
            temporary: e.temporary,
        }),
        push: r.push.as_ref().map(push),
        connect: r.connect.as_ref().map(connect_result),
        subscribe: r.subscribe.as_ref().map(subscribe_result),
        unsubscribe: r.unsubscribe.as_ref().map(|_| pb::UnsubscribeResult {}),
        publish: r.publish.as_ref().map(|_| pb::PublishResult {}),
        presence: r.presence.as_ref().map(|p| pb::PresenceResult {
            presence: p
                .presence
                .iter()
                .map(|(id, info)| (id.clone(), client_info(info)))
                .collect(),
        }),
        presence_stats: r.presence_stats.as_ref().map(|s| pb::PresenceStatsResult {
            num_clients: s.num_clients,
            num_users: s.num_users,
        }),
        history: r.history.as_ref().map(|h| pb::HistoryResult {
            publications: h.publications.iter().map(publication).collect(),
            epoch: h.epoch.clone(),
            offset: h.offset,
        }),
        ping: r.ping.as_ref().map(|_| pb::PingResult {}),
        rpc: r.rpc.as_ref().map(|r| pb::RpcResult {
            data: bytes(&r.data),
        }),
        refresh: r.refresh.as_ref().map(|r| pb::RefreshResult {
            client: r.client.clone(),
            version: r.version.clone(),
            expires: r.expires,
            ttl: r.ttl,
        }),
        sub_refresh: r.sub_refresh.as_ref().map(|r| pb::SubRefreshResult {
            expires: r.expires,
            ttl: r.ttl,
        }),
    }
}

/// A push to encode.
pub(super) fn push(p: &Push) -> pb::Push {
    pb::Push {
        id: p.id,
        channel: p.channel.clone(),
        r#pub: p.publication.as_ref().map(publication),
        join: p.join.as_ref().map(|j| pb::Join {
            info: Some(client_info(&j.info)),
        }),
        leave: p.leave.as_ref().map(|l| pb::Leave {
            info: Some(client_info(&l.info)),
        }),
        unsubscribe: p.unsubscribe.as_ref().map(|u| pb::Unsubscribe {
            code: u.code,
            reason: u.reason.clone(),
        }),
        message: p.message.as_ref().map(|m| pb::Message {
            data: bytes(&m.data),
        }),
        subscribe: p.subscribe.as_ref().map(|s| pb::Subscribe {
            recoverable: s.recoverable,
            epoch: s.epoch.clone(),
            offset: s.offset,
            positioned: s.positioned,
            data: bytes(&s.data),
        }),
        connect: p.connect.as_ref().map(|c| pb::Connect {
            client: c.client.clone(),
            version: c.version.clone(),
            data: bytes(&c.data),
            subs: subscribe_results(&c.subs),
            expires: c.expires,
            ttl: c.ttl,
            ping: c.ping,
            pong: c.pong,
            session: c.session.clone(),
            node: c.node.clone(),
            time: c.time,
        }),
        disconnect: p.disconnect.as_ref().map(|d| pb::Disconnect {
            code: d.code,
            reason: d.reason.clone(),
            reconnect: d.reconnect,
        }),
        refresh: p.refresh.as_ref().map(|r| pb::Refresh {
            expires: r.expires,
            ttl: r.ttl,
        }),
    }
}

fn connect_result(c: &ConnectResult) -> pb::ConnectResult {
    pb::ConnectResult {
        client: c.client.clone(),
        version: c.version.clone(),
        expires: c.expires,
        ttl: c.ttl,
        data: bytes(&c.data),
        subs: subscribe_results(&c.subs),
        ping: c.ping,
        pong: c.pong,
        session: c.session.clone(),
        node: c.node.clone(),
        time: c.time,
        flag: c.flag,
    }
}

fn subscribe_results(
    subs: &HashMap<String, SubscribeResult>,
) -> HashMap<String, pb::SubscribeResult> {
    subs.iter()
        .map(|(channel, s)| (channel.clone(), subscribe_result(s)))
        .collect()
}

fn subscribe_result(s: &SubscribeResult) -> pb::SubscribeResult {
    pb::SubscribeResult {
        expires: s.expires,
        ttl: s.ttl,
        recoverable: s.recoverable,
        epoch: s.epoch.clone(),
        publications: s.publications.iter().map(publication).collect(),
        recovered: s.recovered,
        offset: s.offset,
        positioned: s.positioned,
        data: bytes(&s.data),
        was_recovering: s.was_recovering,
        delta: s.delta,
        id: s.id,
    }
}

/// A publication to encode: the fan-out path's one conversion per publication.
pub(super) fn publication(p: &Publication) -> pb::Publication {
    pb::Publication {
        data: bytes(&p.data),
        info: p.info.as_ref().map(client_info),
        offset: p.offset,
        tags: p.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        delta: p.delta,
        time: p.time,
        channel: p.channel.clone(),
        key: p.key.clone(),
        removed: p.removed,
        score: p.score,
        epoch: p.epoch.clone(),
        version: p.version,
    }
}

fn client_info(i: &ClientInfo) -> pb::ClientInfo {
    pb::ClientInfo {
        user: i.user.clone(),
        client: i.client.clone(),
        conn_info: bytes(&i.conn_info),
        chan_info: bytes(&i.chan_info),
    }
}

// ---- the reverse directions, for Rust clients and the round-trip tests ----

/// A command to send (what a client encodes).
pub(crate) fn command_to_pb(c: &Command) -> pb::Command {
    pb::Command {
        id: c.id,
        connect: c.connect.as_ref().map(|r| pb::ConnectRequest {
            token: r.token.clone(),
            data: bytes(&r.data),
            subs: r
                .subs
                .iter()
                .map(|(channel, s)| (channel.clone(), subscribe_request_to_pb(s)))
                .collect(),
            name: r.name.clone(),
            version: r.version.clone(),
            headers: r.headers.clone(),
            flag: r.flag,
            dict: r.dict.clone(),
            profile: r.profile.clone(),
        }),
        subscribe: c.subscribe.as_ref().map(subscribe_request_to_pb),
        unsubscribe: c.unsubscribe.as_ref().map(|r| pb::UnsubscribeRequest {
            channel: r.channel.clone(),
        }),
        publish: c.publish.as_ref().map(|r| pb::PublishRequest {
            channel: r.channel.clone(),
            data: bytes(&r.data),
            r#type: r.kind,
            key: r.key.clone(),
            removed: r.removed,
        }),
        presence: c.presence.as_ref().map(|r| pb::PresenceRequest {
            channel: r.channel.clone(),
        }),
        presence_stats: c.presence_stats.as_ref().map(|r| pb::PresenceStatsRequest {
            channel: r.channel.clone(),
        }),
        history: c.history.as_ref().map(|r| pb::HistoryRequest {
            channel: r.channel.clone(),
            limit: r.limit,
            since: r.since.as_ref().map(|s| pb::StreamPosition {
                offset: s.offset,
                epoch: s.epoch.clone(),
            }),
            reverse: r.reverse,
        }),
        ping: c.ping.as_ref().map(|_| pb::PingRequest {}),
        send: c.send.as_ref().map(|r| pb::SendRequest {
            data: bytes(&r.data),
        }),
        rpc: c.rpc.as_ref().map(|r| pb::RpcRequest {
            data: bytes(&r.data),
            method: r.method.clone(),
        }),
        refresh: c.refresh.as_ref().map(|r| pb::RefreshRequest {
            token: r.token.clone(),
        }),
        sub_refresh: c.sub_refresh.as_ref().map(|r| pb::SubRefreshRequest {
            channel: r.channel.clone(),
            token: r.token.clone(),
            r#type: r.kind,
        }),
    }
}

fn subscribe_request_to_pb(r: &SubscribeRequest) -> pb::SubscribeRequest {
    pb::SubscribeRequest {
        channel: r.channel.clone(),
        token: r.token.clone(),
        recover: r.recover,
        epoch: r.epoch.clone(),
        offset: r.offset,
        data: bytes(&r.data),
        positioned: r.positioned,
        recoverable: r.recoverable,
        join_leave: r.join_leave,
        delta: r.delta.clone(),
        tf: r.tf.as_ref().map(filter_node_to_pb),
        flag: r.flag,
        r#type: r.kind,
    }
}

fn filter_node_to_pb(n: &FilterNode) -> pb::FilterNode {
    pb::FilterNode {
        op: n.op.clone(),
        key: n.key.clone(),
        cmp: n.cmp.clone(),
        val: n.val.clone(),
        vals: n.vals.clone(),
        nodes: n.nodes.iter().map(filter_node_to_pb).collect(),
    }
}

/// A received reply (what a client decodes).
pub(crate) fn reply_from_pb(r: pb::Reply) -> Reply {
    Reply {
        id: r.id,
        error: r.error.map(|e| Error {
            code: e.code,
            message: e.message.into(),
            temporary: e.temporary,
        }),
        push: r.push.map(push_from_pb),
        connect: r.connect.map(|c| ConnectResult {
            client: c.client,
            version: c.version,
            expires: c.expires,
            ttl: c.ttl,
            data: payload(c.data),
            subs: subscribe_results_from_pb(c.subs),
            ping: c.ping,
            pong: c.pong,
            session: c.session,
            node: c.node,
            time: c.time,
            flag: c.flag,
        }),
        subscribe: r.subscribe.map(subscribe_result_from_pb),
        unsubscribe: r.unsubscribe.map(|_| UnsubscribeResult {}),
        publish: r.publish.map(|_| PublishResult {}),
        presence: r.presence.map(|p| PresenceResult {
            presence: p
                .presence
                .into_iter()
                .map(|(id, info)| (id, client_info_from_pb(info)))
                .collect(),
        }),
        presence_stats: r.presence_stats.map(|s| PresenceStatsResult {
            num_clients: s.num_clients,
            num_users: s.num_users,
        }),
        history: r.history.map(|h| HistoryResult {
            publications: h
                .publications
                .into_iter()
                .map(publication_from_pb)
                .collect(),
            epoch: h.epoch,
            offset: h.offset,
        }),
        ping: r.ping.map(|_| PingResult {}),
        rpc: r.rpc.map(|r| RpcResult {
            data: payload(r.data),
        }),
        refresh: r.refresh.map(|r| RefreshResult {
            client: r.client,
            version: r.version,
            expires: r.expires,
            ttl: r.ttl,
        }),
        sub_refresh: r.sub_refresh.map(|r| SubRefreshResult {
            expires: r.expires,
            ttl: r.ttl,
        }),
    }
}

fn push_from_pb(p: pb::Push) -> Push {
    Push {
        id: p.id,
        channel: p.channel,
        publication: p.r#pub.map(publication_from_pb),
        join: p.join.map(|j| JoinPush {
            info: j.info.map(client_info_from_pb).unwrap_or_default(),
        }),
        leave: p.leave.map(|l| LeavePush {
            info: l.info.map(client_info_from_pb).unwrap_or_default(),
        }),
        unsubscribe: p.unsubscribe.map(|u| UnsubscribePush {
            code: u.code,
            reason: u.reason,
        }),
        message: p.message.map(|m| MessagePush {
            data: payload(m.data),
        }),
        subscribe: p.subscribe.map(|s| SubscribePush {
            recoverable: s.recoverable,
            epoch: s.epoch,
            offset: s.offset,
            positioned: s.positioned,
            data: payload(s.data),
        }),
        connect: p.connect.map(|c| ConnectResult {
            client: c.client,
            version: c.version,
            data: payload(c.data),
            subs: subscribe_results_from_pb(c.subs),
            expires: c.expires,
            ttl: c.ttl,
            ping: c.ping,
            pong: c.pong,
            session: c.session,
            node: c.node,
            time: c.time,
            // The connect push has no `flag` field.
            flag: 0,
        }),
        disconnect: p.disconnect.map(|d| DisconnectPush {
            code: d.code,
            reason: d.reason,
            reconnect: d.reconnect,
        }),
        refresh: p.refresh.map(|r| RefreshPush {
            expires: r.expires,
            ttl: r.ttl,
        }),
    }
}

fn subscribe_results_from_pb(
    subs: HashMap<String, pb::SubscribeResult>,
) -> HashMap<String, SubscribeResult> {
    subs.into_iter()
        .map(|(channel, s)| (channel, subscribe_result_from_pb(s)))
        .collect()
}

fn subscribe_result_from_pb(s: pb::SubscribeResult) -> SubscribeResult {
    SubscribeResult {
        expires: s.expires,
        ttl: s.ttl,
        recoverable: s.recoverable,
        epoch: s.epoch,
        publications: s
            .publications
            .into_iter()
            .map(publication_from_pb)
            .collect(),
        recovered: s.recovered,
        offset: s.offset,
        positioned: s.positioned,
        data: payload(s.data),
        was_recovering: s.was_recovering,
        delta: s.delta,
        id: s.id,
    }
}

fn publication_from_pb(p: pb::Publication) -> Publication {
    Publication {
        data: payload(p.data),
        info: p.info.map(client_info_from_pb),
        offset: p.offset,
        tags: p.tags.into_iter().collect::<BTreeMap<_, _>>(),
        delta: p.delta,
        time: p.time,
        channel: p.channel,
        key: p.key,
        removed: p.removed,
        score: p.score,
        epoch: p.epoch,
        version: p.version,
    }
}

fn client_info_from_pb(i: pb::ClientInfo) -> ClientInfo {
    ClientInfo {
        user: i.user,
        client: i.client,
        conn_info: payload(i.conn_info),
        chan_info: payload(i.chan_info),
    }
}
