#!/usr/bin/env python3
"""A webhook backend for Herald's tests (crates/herald/tests/webhooks.rs): a real HTTP server
process that receives Herald's event batches, checks their signature, and records them.

    webhook_backend.py --secret SECRET --record FILE [--port N]

It prints `listening on PORT` on stdout once it accepts connections (`--port 0`, the default,
picks a free port). Every POST is checked as docs/configuration.md says (HMAC-SHA256 of
`<X-Herald-Timestamp>.<raw body>` under SECRET, hex, in `X-Herald-Signature: sha256=<hex>`;
a timestamp more than 5 minutes off is refused); each event of a good batch becomes one line
of FILE (its JSON), appended and flushed before the 200 answer, so an event in FILE was
acknowledged. A batch with a bad signature is answered 401 and recorded as one line
`{"rejected": "signature"}`.

`POST /control` with `{"fail": N}` makes it answer the next N event batches with 503 (without
recording them), to test retries without stopping the process; stopping the process tests a
backend that is down.
"""

import argparse
import hashlib
import hmac
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_SKEW = 300  # seconds


def verify(secret: bytes, headers, body: bytes) -> bool:
    """Whether `body` carries a valid, recent Herald signature."""
    timestamp = headers.get("X-Herald-Timestamp", "")
    signature = headers.get("X-Herald-Signature", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > MAX_SKEW:
        return False
    expected = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(signature, "sha256=" + expected)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--secret", required=True)
    parser.add_argument("--record", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    secret = args.secret.encode()
    lock = threading.Lock()
    state = {"fail": 0}
    record = open(args.record, "a", encoding="utf-8")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def answer(self, status: int, text: str = "") -> None:
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            if self.path == "/control":
                with lock:
                    state.update(json.loads(body))
                self.answer(200, "ok")
                return
            with lock:
                if state["fail"] > 0:
                    state["fail"] -= 1
                    self.answer(503, "told to fail")
                    return
                if not verify(secret, self.headers, body):
                    record.write(json.dumps({"rejected": "signature"}) + "\n")
                    record.flush()
                    self.answer(401, "bad signature")
                    return
                for event in json.loads(body)["events"]:
                    record.write(json.dumps(event) + "\n")
                record.flush()
            self.answer(200, "ok")

        def log_message(self, *_args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"listening on {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
