"""Fixtures: a real `herald` process on a free port, and a minimal raw WebSocket client that
speaks the Centrifugo client protocol (JSON) to it.

The binary is $HERALD_BIN, else target/debug/herald of this repository
(build it with `cargo build -p herald`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests
from websockets.sync.client import connect as ws_connect

from cent import Client

REPO = Path(__file__).resolve().parents[2]
HERALD_BIN = Path(os.environ.get("HERALD_BIN") or REPO / "target" / "debug" / "herald").resolve()
LISTENING = re.compile(r"listening on http://\S*:(\d+)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_hs256(claims: dict, secret: str) -> str:
    """An HS256 JWT, as an application backend makes one for its users."""
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64url(sig)}"


def merge(base: dict, extra: dict) -> None:
    """Deep-merges `extra` into `base` (dicts key by key; anything else replaces)."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value


class Herald:
    """A running herald process with a temporary config."""

    def __init__(
        self, extra: dict | None = None, secret: str | None = None, api_key: str | None = None
    ) -> None:
        """`extra` is merged over the default config (a cluster node's `engine` or `broker`);
        `secret` and `api_key` are shared by the nodes of one cluster (or come in `extra`)."""
        if not HERALD_BIN.is_file():
            raise RuntimeError(
                f"herald binary not found at {HERALD_BIN}: build it with "
                "`cargo build -p herald` or set HERALD_BIN"
            )
        self.dir = Path(tempfile.mkdtemp(prefix="herald-py-"))
        self.secret = secret or secrets.token_hex(24)
        self.api_key = api_key or secrets.token_hex(24)
        config = {
            "http_server": {"address": "127.0.0.1", "port": 0},
            "data_dir": str(self.dir / "data"),
            "client": {"token": {"hmac_secret_key": self.secret}},
            "http_api": {"key": self.api_key},
            "channel": {
                "without_namespace": {"allow_subscribe_for_client": True},
                "namespaces": [
                    {"name": "locked"},
                    {
                        "name": "room",
                        "allow_subscribe_for_client": True,
                        "presence": True,
                        "join_leave": True,
                        "allow_presence_for_subscriber": True,
                    },
                    {
                        # test_centrifuge_protobuf.py: the Protobuf SDK and a JSON client.
                        "name": "pbsdk",
                        "allow_subscribe_for_client": True,
                        "allow_publish_for_client": True,
                        "allow_history_for_client": True,
                        "allow_presence_for_client": True,
                        "presence": True,
                        "history_size": 10,
                        "history_ttl": "300s",
                        "force_recovery": True,
                    },
                    {
                        "name": "feed",
                        "history_size": 5,
                        "history_ttl": "300s",
                        "force_recovery": True,
                    },
                ],
            },
        }
        merge(config, extra or {})
        self.secret = config["client"]["token"]["hmac_secret_key"]
        self.api_key = config["http_api"]["key"]
        self.config_path = self.dir / "config.json"
        self.config_path.write_text(json.dumps(config, indent=2))
        self.log: list[str] = []
        self.proc = subprocess.Popen(
            [str(HERALD_BIN), "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1"},
            text=True,
        )
        self.port = self._wait_for_port(timeout=10)
        # Keep draining the log so the pipe never fills up.
        threading.Thread(target=self._drain, daemon=True).start()

    def _wait_for_port(self, timeout: float) -> int:
        result: dict = {}

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.log.append(line)
                m = LISTENING.search(ANSI.sub("", line))
                if m:
                    result["port"] = int(m.group(1))
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout)
        if "port" not in result:
            self.stop()
            raise RuntimeError("herald did not start listening:\n" + "".join(self.log))
        return result["port"]

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/connection/websocket"

    def token(self, user: str) -> str:
        return sign_hs256({"sub": user, "exp": int(time.time()) + 3600}, self.secret)

    def kill(self) -> None:
        """SIGKILL: a crash, nothing said to anyone."""
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=8)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class WsClient:
    """A minimal Centrifugo protocol v2 client over a raw WebSocket (JSON, one command per frame)."""

    def __init__(self, url: str, token: str) -> None:
        # Used as a context manager, as websockets >= 17 asks.
        self._connection = ws_connect(url, proxy=None, open_timeout=5, close_timeout=2)
        self.ws = self._connection.__enter__()
        self.next_id = 0
        self.pushes: list[dict] = []
        reply = self.call({"connect": {"token": token, "name": "pytest"}})
        assert "error" not in reply, reply
        self.client_id = reply["connect"]["client"]
        self.session = reply["connect"].get("session", "")

    def send(self, command: dict) -> int:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, **command}))
        return self.next_id

    def _messages(self, timeout: float):
        """Yields incoming replies/pushes until the deadline; answers server pings."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                frame = self.ws.recv(timeout=left)
            except TimeoutError:
                return
            for line in frame.splitlines():
                if not line.strip():
                    continue
                message = json.loads(line)
                if message == {}:
                    self.ws.send("{}")  # pong
                    continue
                yield message

    def call(self, command: dict, timeout: float = 5) -> dict:
        """Sends a command and returns its reply (pushes seen meanwhile are kept)."""
        cid = self.send(command)
        for message in self._messages(timeout):
            if message.get("id") == cid:
                return message
            if "push" in message:
                self.pushes.append(message["push"])
        raise AssertionError(f"no reply to command {cid} within {timeout}s")

    def subscribe(self, channel: str) -> None:
        reply = self.call({"subscribe": {"channel": channel}})
        assert "error" not in reply, reply

    def publication(self, channel: str, timeout: float = 5) -> dict:
        """The next publication pushed in `channel`."""
        for i, push in enumerate(self.pushes):
            if push.get("channel") == channel and "pub" in push:
                del self.pushes[i]
                return push["pub"]
        for message in self._messages(timeout):
            push = message.get("push", {})
            if push.get("channel") == channel and "pub" in push:
                return push["pub"]
            if push:
                self.pushes.append(push)
        raise AssertionError(f"no publication in {channel!r} within {timeout}s")

    def push(self, channel: str, kind: str, timeout: float = 5) -> dict:
        """The next push of `kind` (`subscribe`, `unsubscribe`, `pub`…) in `channel`."""
        for i, push in enumerate(self.pushes):
            if push.get("channel") == channel and kind in push:
                del self.pushes[i]
                return push[kind]
        for message in self._messages(timeout):
            push = message.get("push", {})
            if push.get("channel") == channel and kind in push:
                return push[kind]
            if push:
                self.pushes.append(push)
        raise AssertionError(f"no {kind} push in {channel!r} within {timeout}s")

    def no_push(self, timeout: float = 0.3) -> None:
        """Asserts that no push (other than server pings) arrives within `timeout`."""
        assert not self.pushes, self.pushes
        for message in self._messages(timeout):
            raise AssertionError(f"unexpected {message}")

    def close(self) -> None:
        self._connection.__exit__(None, None, None)


@pytest.fixture(scope="session")
def herald():
    server = Herald()
    yield server
    server.stop()


@pytest.fixture
def api(herald):
    """The real `cent` client pointed at the running herald."""
    session = requests.Session()
    session.trust_env = False  # never send 127.0.0.1 traffic through an environment proxy
    client = Client(herald.api_url, herald.api_key, timeout=5, session=session)
    yield client
    session.close()


@pytest.fixture
def ws_client(herald):
    """A factory of connected raw WebSocket clients, closed after the test."""
    clients: list[WsClient] = []

    def make(user: str = "alice") -> WsClient:
        client = WsClient(herald.ws_url, herald.token(user))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
