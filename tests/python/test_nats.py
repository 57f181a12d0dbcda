"""The real `cent` client against a cluster of two Herald nodes over one nats-server -js (the
NATS engine, history on JetStream): a publication made through node A's API reaches a
subscriber on node B, its offset is in the history node B reads from JetStream, `info` lists
both nodes, and `disconnect` through A closes a user's connection on B.

The nats-server is the test's own (Debian's, or $NATS_SERVER) on a free port with its store in
a temporary directory, never the machine's."""

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
import requests
from websockets.exceptions import ConnectionClosed

from cent import Client, DisconnectRequest, HistoryRequest, InfoRequest, PublishRequest

from conftest import Herald, WsClient

NATS_BIN = os.environ.get("NATS_SERVER") or shutil.which("nats-server") or "/usr/sbin/nats-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def until(check, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not {what} within {timeout}s"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def cluster():
    store = tempfile.mkdtemp(prefix="herald-nats-py-")
    port = free_port()
    nats = subprocess.Popen(
        [NATS_BIN, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", store],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    nodes = []
    try:
        until(listening, "nats-server listening")
        extra = {
            "client": {"token": {"hmac_secret_key": secrets.token_hex(24)}},
            "http_api": {"key": secrets.token_hex(24)},
            "health": {"enabled": True},
            "broker": {
                "enabled": True,
                "type": "nats",
                "nats": {"url": f"nats://127.0.0.1:{port}", "prefix": "py", "jetstream": {"enabled": True}},
            },
        }
        nodes = [Herald(extra), Herald(extra)]
        for node in nodes:
            health = f"http://127.0.0.1:{node.port}/health"
            until(lambda: requests.get(health, timeout=2).status_code == 200, "healthy")
        yield nodes
    finally:
        for node in nodes:
            node.stop()
        nats.kill()
        nats.wait()
        shutil.rmtree(store, ignore_errors=True)


def cent(node: Herald) -> Client:
    session = requests.Session()
    session.trust_env = False
    return Client(node.api_url, node.api_key, timeout=5, session=session)


def test_cent_on_one_node_reaches_and_controls_another(cluster):
    a, b = cluster
    sub = WsClient(b.ws_url, b.token("bob"))
    try:
        sub.subscribe("pbsdk:nats")
        result = cent(a).publish(PublishRequest(channel="pbsdk:nats", data={"via": "node A"}))
        assert result.offset == 1 and result.epoch
        pub = sub.publication("pbsdk:nats")
        assert pub["data"] == {"via": "node A"} and pub["offset"] == 1

        history = cent(b).history(HistoryRequest(channel="pbsdk:nats", limit=10))
        assert [p.offset for p in history.publications] == [1]
        assert history.epoch == result.epoch

        until(lambda: len(cent(a).info(InfoRequest()).nodes) == 2, "both nodes in info")

        cent(a).disconnect(DisconnectRequest(user="bob"))
        with pytest.raises(ConnectionClosed):
            for _ in range(50):
                sub.ws.recv(timeout=0.2)
    finally:
        sub.close()
