"""The real Python server API client `cent` against Herald: publications it makes reach
WebSocket subscribers."""

import pytest
import requests

from cent import (
    BatchRequest,
    BroadcastRequest,
    CentApiResponseError,
    CentUnauthorizedError,
    ChannelsRequest,
    Client,
    InfoRequest,
    PresenceRequest,
    PublishRequest,
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


def test_presence_is_not_available_yet(api):
    with pytest.raises(CentApiResponseError) as err:
        api.presence(PresenceRequest(channel="news"))
    assert err.value.code == 108
