"""The real Python server API client `cent` against Herald: publications it makes reach
WebSocket subscribers."""

import time

import pytest
import requests
from websockets.exceptions import ConnectionClosed

from cent import (
    BatchRequest,
    BroadcastRequest,
    CentApiResponseError,
    CentUnauthorizedError,
    ChannelsRequest,
    Client,
    DisconnectRequest,
    InfoRequest,
    PresenceRequest,
    PresenceStatsRequest,
    PublishRequest,
    RefreshRequest,
    StreamPosition,
    SubscribeRequest,
    UnsubscribeRequest,
)


def test_publish_reaches_a_websocket_subscriber(api, ws_client):
    sub = ws_client("alice")
    sub.subscribe("news")
    result = api.publish(PublishRequest(channel="news", data={"text": "hello from cent"}))
    # No history in this namespace: offset and epoch are absent (0 and "").
    assert result.offset == 0 and result.epoch == ""
    pub = sub.publication("news")
    assert pub["data"] == {"text": "hello from cent"}


def test_publish_with_tags(api, ws_client):
    sub = ws_client("alice")
    sub.subscribe("tagged")
    api.publish(PublishRequest(channel="tagged", data=[1, 2, 3], tags={"kind": "list"}))
    pub = sub.publication("tagged")
    assert pub["data"] == [1, 2, 3]
    assert pub.get("tags") == {"kind": "list"}


def test_broadcast_reaches_subscribers_of_every_channel(api, ws_client):
    a = ws_client("alice")
    b = ws_client("bob")
    a.subscribe("room-1")
    b.subscribe("room-2")
    result = api.broadcast(BroadcastRequest(channels=["room-1", "room-2"], data={"n": 7}))
    assert len(result.responses) == 2
    assert all(r.error is None for r in result.responses), result.responses
    assert a.publication("room-1")["data"] == {"n": 7}
    assert b.publication("room-2")["data"] == {"n": 7}


def test_every_subscriber_gets_the_publication(api, ws_client):
    subs = [ws_client(f"user{i}") for i in range(5)]
    for s in subs:
        s.subscribe("fanout")
    api.publish(PublishRequest(channel="fanout", data={"to": "all"}))
    for s in subs:
        assert s.publication("fanout")["data"] == {"to": "all"}


def test_publish_to_an_unknown_namespace_is_error_102(api):
    with pytest.raises(CentApiResponseError) as err:
        api.publish(PublishRequest(channel="nosuchns:x", data={}))
    assert err.value.code == 102


def test_broadcast_reports_errors_per_channel(api, ws_client):
    sub = ws_client("alice")
    sub.subscribe("ok-channel")
    result = api.broadcast(BroadcastRequest(channels=["ok-channel", "nosuchns:x"], data={"m": 1}))
    assert len(result.responses) == 2
    assert result.responses[0].error is None
    assert result.responses[1].error is not None and result.responses[1].error.code == 102
    assert sub.publication("ok-channel")["data"] == {"m": 1}


def test_a_wrong_api_key_is_refused(herald):
    session = requests.Session()
    session.trust_env = False
    client = Client(herald.api_url, "wrong-key", timeout=5, session=session)
    with pytest.raises(CentUnauthorizedError):
        client.publish(PublishRequest(channel="news", data={}))


def test_the_raw_client_is_refused_a_locked_namespace(ws_client):
    client = ws_client("alice")
    reply = client.call({"subscribe": {"channel": "locked:room"}})
    assert reply.get("error", {}).get("code") == 103, reply


def test_batch_of_publishes(api, ws_client):
    sub = ws_client("alice")
    sub.subscribe("batched")
    result = api.batch(
        BatchRequest(
            requests=[
                PublishRequest(channel="batched", data={"i": 1}),
                PublishRequest(channel="batched", data={"i": 2}),
            ]
        )
    )
    assert len(result.replies) == 2
    assert sub.publication("batched")["data"] == {"i": 1}
    assert sub.publication("batched")["data"] == {"i": 2}


def test_info_and_channels_count_clients(api, ws_client):
    sub = ws_client("carol")
    sub.subscribe("py-counted")
    info = api.info(InfoRequest())
    assert len(info.nodes) == 1
    assert info.nodes[0].num_clients >= 1
    channels = api.channels(ChannelsRequest(pattern="py-count*"))
    assert list(channels.channels) == ["py-counted"]
    assert channels.channels["py-counted"].num_clients == 1


def test_presence_is_108_where_the_namespace_keeps_none(api):
    with pytest.raises(CentApiResponseError) as err:
        api.presence(PresenceRequest(channel="news"))
    assert err.value.code == 108


def test_presence_and_presence_stats_list_the_subscribers(api, ws_client):
    alice = ws_client("alice")
    alice2 = ws_client("alice")
    bob = ws_client("bob")
    for client in (alice, alice2, bob):
        client.subscribe("room:py")
    presence = api.presence(PresenceRequest(channel="room:py")).presence
    assert sorted(info.user for info in presence.values()) == ["alice", "alice", "bob"]
    assert set(presence) == {alice.client_id, alice2.client_id, bob.client_id}
    assert presence[bob.client_id].client == bob.client_id
    stats = api.presence_stats(PresenceStatsRequest(channel="room:py"))
    assert (stats.num_clients, stats.num_users) == (3, 2)
    bob.close()
    deadline = time.monotonic() + 5
    while api.presence_stats(PresenceStatsRequest(channel="room:py")).num_users != 1:
        assert time.monotonic() < deadline, "bob is still present after closing"
        time.sleep(0.05)


def test_api_subscribe_and_unsubscribe_act_on_live_connections(api, ws_client):
    carol = ws_client("carol")
    api.subscribe(SubscribeRequest(user="carol", channel="room:srv"))
    api.publish(PublishRequest(channel="room:srv", data={"n": 1}))
    assert carol.publication("room:srv")["data"] == {"n": 1}
    presence = api.presence(PresenceRequest(channel="room:srv")).presence
    assert [info.user for info in presence.values()] == ["carol"]
    api.unsubscribe(UnsubscribeRequest(user="carol", channel="room:srv"))
    assert api.presence_stats(PresenceStatsRequest(channel="room:srv")).num_clients == 0


def closed_with(client, timeout: float = 5) -> int:
    """Reads until the server closes the connection; returns the close code."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            client.ws.recv(timeout=deadline - time.monotonic())
    except ConnectionClosed as closed:
        return closed.rcvd.code
    except TimeoutError:
        pass
    raise AssertionError("the connection was not closed")


def alive(client) -> bool:
    """Whether the connection still answers commands (any reply, even an error, will do)."""
    return "id" in client.call({"presence_stats": {"channel": "room:x"}})


def test_disconnect_by_user_keeps_the_whitelist_and_other_users(api, ws_client):
    phone = ws_client("dave")
    laptop = ws_client("dave")
    other = ws_client("erin")
    api.disconnect(DisconnectRequest(user="dave", whitelist=[laptop.client_id]))
    assert closed_with(phone) == 3503
    assert alive(laptop)
    assert alive(other)


def test_refresh_expired_closes_the_users_connections(api, ws_client):
    frank = ws_client("frank")
    grace = ws_client("grace")
    api.refresh(RefreshRequest(user="frank", expired=True))
    assert closed_with(frank) == 3005
    assert alive(grace)


def test_session_targets_one_connection(api, ws_client):
    """`session` (Centrifugo's per-connection session id, the connect reply's `session`)
    narrows subscribe, unsubscribe, refresh and disconnect to that connection; one that names
    no connection is answered `{}`, as Centrifugo does."""
    a = ws_client("sally")
    b = ws_client("sally")
    assert a.session and b.session and a.session != b.session
    api.subscribe(SubscribeRequest(user="sally", channel="sessions", session="nope"))
    api.unsubscribe(UnsubscribeRequest(user="sally", channel="sessions", session="nope"))
    api.refresh(RefreshRequest(user="sally", session="nope", expired=True))
    api.disconnect(DisconnectRequest(user="sally", session="nope"))
    a.no_push()
    b.no_push()
    api.subscribe(SubscribeRequest(user="sally", channel="sessions", session=b.session))
    assert b.push("sessions", "subscribe") == {}
    a.no_push()
    api.unsubscribe(UnsubscribeRequest(user="sally", channel="sessions", session=b.session))
    assert b.push("sessions", "unsubscribe")["code"] == 2000
    api.disconnect(DisconnectRequest(user="sally", session=b.session))
    with pytest.raises(ConnectionClosed) as closed:
        b.call({"presence": {"channel": "sessions"}}, timeout=2)
    assert closed.value.rcvd.code == 3503
    a.no_push()


def test_subscribe_recover_since_delivers_the_missed_publications(api, ws_client):
    """`recover_since` recovers the server-side subscription: the subscribe push carries the
    position, the publications after it follow, then the live ones."""
    channel = "feed:recover"
    epoch = ""
    for n in range(1, 5):
        epoch = api.publish(PublishRequest(channel=channel, data={"n": n})).epoch
    sub = ws_client("rita")
    api.subscribe(
        SubscribeRequest(
            user="rita",
            channel=channel,
            session=sub.session,
            recover_since=StreamPosition(offset=2, epoch=epoch),
        )
    )
    push = sub.push(channel, "subscribe")
    assert push["recoverable"] and push["positioned"], push
    assert (push["offset"], push["epoch"]) == (2, epoch), push
    api.publish(PublishRequest(channel=channel, data={"n": 5}))
    got = [sub.publication(channel) for _ in range(3)]
    assert [(p["offset"], p["data"]["n"]) for p in got] == [(3, 3), (4, 4), (5, 5)]
