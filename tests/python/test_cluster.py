"""Three herald nodes on one Redis (`engine.type: "redis"`), driven by the PyPI `cent` server
API client and the `centrifuge-python` SDK (JSON): a client on one node receives what the API
of another publishes, presence asked anywhere lists it, the API of a third node disconnects
it, and a node killed with SIGKILL leaves `info` and presence by itself.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
import requests
from cent import (
    Client as Cent,
    DisconnectRequest,
    Disconnect,
    InfoRequest,
    PresenceRequest,
    PresenceStatsRequest,
    PublishRequest,
)
from centrifuge import Client, DisconnectedContext, ClientEventHandler, PublicationContext
from centrifuge import SubscriptionEventHandler

from conftest import Herald

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    """A throwaway redis-server on a free port, without persistence (never the shared one)."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="herald-redis-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("redis-server did not start (is it installed?)")
                time.sleep(0.02)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def cent(node: Herald) -> Cent:
    session = requests.Session()
    session.trust_env = False
    return Cent(node.api_url, node.api_key, timeout=5, session=session)


def until(condition, what: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def cluster():
    redis = RedisServer()
    secret, api_key = secrets.token_hex(24), secrets.token_hex(24)
    extra = {
        "engine": {"type": "redis", "redis": {"address": f"redis://127.0.0.1:{redis.port}",
                                              "presence_ttl": "3s"}},
        "client": {"token": {"hmac_secret_key": secret}, "presence_update_interval": "1s"},
    }
    nodes: list[Herald] = []
    try:
        for _ in range(3):
            nodes.append(Herald(extra, secret=secret, api_key=api_key))
        for node in nodes:
            until(lambda: len(cent(node).info(InfoRequest()).nodes) == 3, "three nodes in info", 10)
        yield nodes
    finally:
        for node in nodes:
            node.stop()
        redis.stop()


class Recorder(SubscriptionEventHandler):
    def __init__(self) -> None:
        self.pubs: list = []

    async def on_publication(self, ctx: PublicationContext) -> None:
        self.pubs.append(ctx.pub)


class Disconnects(ClientEventHandler):
    def __init__(self) -> None:
        self.codes: list[int] = []

    async def on_disconnected(self, ctx: DisconnectedContext) -> None:
        self.codes.append(ctx.code)


async def wait(condition, what: str, timeout: float = 5) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def test_cent_and_the_sdk_across_three_nodes(cluster):
    n1, n2, n3 = cluster
    channel = "room:cluster"

    async def scenario() -> None:
        events = Disconnects()
        client = Client(n3.ws_url, token=n3.token("alice"), events=events, proxy=None)
        recorder = Recorder()
        sub = client.new_subscription(channel, events=recorder)
        try:
            await client.connect()
            await sub.subscribe()
            await sub.ready(timeout=5)
            # cent on node 1 publishes: the SDK on node 3 receives it.
            await asyncio.to_thread(
                cent(n1).publish, PublishRequest(channel=channel, data={"from": "node 1"})
            )
            await wait(lambda: len(recorder.pubs) == 1, "the publication from node 1")
            assert recorder.pubs[0].data == {"from": "node 1"}
            # cent on node 2 sees the client on node 3 in presence.
            presence = await asyncio.to_thread(
                cent(n2).presence, PresenceRequest(channel=channel)
            )
            assert [info.user for info in presence.presence.values()] == ["alice"]
            stats = await asyncio.to_thread(
                cent(n1).presence_stats, PresenceStatsRequest(channel=channel)
            )
            assert (stats.num_clients, stats.num_users) == (1, 1)
            # cent on node 1 disconnects the user on node 3.
            await asyncio.to_thread(
                cent(n1).disconnect,
                DisconnectRequest(user="alice", disconnect=Disconnect(code=4501, reason="bye")),
            )
            await wait(lambda: events.codes == [4501], "the disconnect from node 1")
        finally:
            await client.disconnect()

    asyncio.run(scenario())


def test_a_killed_node_leaves_info_and_presence(cluster):
    n1, n2, n3 = cluster
    channel = "room:crash"
    client = None

    async def subscribe_on_node_3() -> Client:
        c = Client(n3.ws_url, token=n3.token("bob"), proxy=None)
        sub = c.new_subscription(channel)
        await c.connect()
        await sub.subscribe()
        await sub.ready(timeout=5)
        return c

    loop = asyncio.new_event_loop()
    try:
        client = loop.run_until_complete(subscribe_on_node_3())
        presence = cent(n1).presence(PresenceRequest(channel=channel)).presence
        assert [info.user for info in presence.values()] == ["bob"]
        n3.kill()
        # The SDK would keep trying the dead node: the application moves it (not tested here).
        loop.run_until_complete(client.disconnect())
        client = None
        # Its client leaves presence within the TTL (3 s), the node leaves info within three
        # missed announcements (3 s each).
        until(
            lambda: not cent(n2).presence(PresenceRequest(channel=channel)).presence,
            "bob to leave presence",
            timeout=6,
        )
        until(lambda: len(cent(n1).info(InfoRequest()).nodes) == 2, "two nodes in info", 15)
    finally:
        if client is not None:
            loop.run_until_complete(client.disconnect())
        loop.close()
