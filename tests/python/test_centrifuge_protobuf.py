"""The PyPI `centrifuge-python` SDK with `use_protobuf=True` (WebSocket subprotocol
`centrifuge-protobuf`, binary frames) against the herald binary: connect, subscribe, a
server API publication, a publication to and from a JSON client in the same channel, history
and presence. In Protobuf the SDK hands payloads over as bytes.
"""

from __future__ import annotations

import asyncio
import base64
import json

from cent import PublishRequest
from centrifuge import Client, PublicationContext, SubscriptionEventHandler


class Recorder(SubscriptionEventHandler):
    """Keeps the publications a subscription receives."""

    def __init__(self) -> None:
        self.pubs: list = []

    async def on_publication(self, ctx: PublicationContext) -> None:
        self.pubs.append(ctx.pub)


async def until(condition, what: str, timeout: float = 5) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def test_protobuf_sdk_with_a_json_client_in_one_channel(herald, api, ws_client):
    channel = "pbsdk:mixed"
    json_client = ws_client("bob")
    json_client.subscribe(channel)

    async def scenario() -> None:
        client = Client(herald.ws_url, token=herald.token("alice"), use_protobuf=True, proxy=None)
        recorder = Recorder()
        sub = client.new_subscription(channel, events=recorder)
        try:
            await client.connect()
            await sub.subscribe()
            await sub.ready(timeout=5)

            # The server API's publication reaches the Protobuf SDK as the bytes of its JSON.
            api.publish(PublishRequest(channel=channel, data={"from": "api"}))
            await until(lambda: len(recorder.pubs) == 1, "the API publication")
            assert isinstance(recorder.pubs[0].data, bytes)
            assert json.loads(recorder.pubs[0].data) == {"from": "api"}

            # The SDK's publication reaches the JSON client as JSON.
            await sub.publish(data=json.dumps({"from": "python"}).encode())
            await until(lambda: len(recorder.pubs) == 2, "its own publication")

            history = await sub.history(limit=-1)
            assert [json.loads(p.data) for p in history.publications] == [
                {"from": "api"},
                {"from": "python"},
            ]
            assert history.offset == 2
            presence = await sub.presence()
            assert sorted(info.user for info in presence.clients.values()) == ["alice", "bob"]
            stats = await sub.presence_stats()
            assert (stats.num_clients, stats.num_users) == (2, 2)
        finally:
            await client.disconnect()

    asyncio.run(scenario())
    assert json_client.publication(channel)["data"] == {"from": "api"}
    received = json_client.publication(channel)
    assert received["data"] == {"from": "python"}
    assert received["info"]["user"] == "alice"


def test_cent_b64data_reaches_the_protobuf_sdk_as_its_bytes(herald, api):
    """cent's `b64data` is decoded by the server: the Protobuf SDK receives the exact bytes,
    live and from history (and `b64data` wins over `data`, as in Centrifugo)."""
    channel = "pbsdk:b64"
    raw = bytes([0xFF, 0x00, 0x0A, 0x80, 0x7B])

    async def scenario() -> None:
        client = Client(herald.ws_url, token=herald.token("alice"), use_protobuf=True, proxy=None)
        recorder = Recorder()
        sub = client.new_subscription(channel, events=recorder)
        try:
            await client.connect()
            await sub.subscribe()
            await sub.ready(timeout=5)
            api.publish(
                PublishRequest(
                    channel=channel, data={"ignored": True}, b64data=base64.b64encode(raw).decode()
                )
            )
            await until(lambda: len(recorder.pubs) == 1, "the b64data publication")
            assert recorder.pubs[0].data == raw
            history = await sub.history(limit=-1)
            assert [p.data for p in history.publications] == [raw]
        finally:
            await client.disconnect()

    asyncio.run(scenario())
