#!/usr/bin/env python3
"""A scriptable backend for Herald's proxy tests: answers each POST by a scenario file and
records every request it gets.

    proxy_backend.py --scenario FILE --log FILE --port-file FILE

It listens on 127.0.0.1 on a free port, writes the port to --port-file once it listens, and
serves until killed. For each request it appends one JSON line to --log:
{"path": ..., "headers": {lower-case name: value}, "body": parsed JSON}. The scenario file
is read again on every request, so a test can change the answers as it goes. It maps a
request path to an action:

    {"status": 200, "body": {...}, "delay": 0.0}       answer with this JSON (default 200)
    {"raw": "text"}                                     answer with this text instead of JSON
    {"by": "data.case", "cases": {"a": ACTION}, "default": ACTION}
                                                        pick by a value of the request body
                                                        (a dotted path; "headers.x" reads a
                                                        request header)

A string "$req.PATH" anywhere in a body is replaced by that value of the request body (e.g.
"$req.data" echoes the data). A path missing from the scenario is answered 404.
"""

import argparse
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def lookup(value, path):
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        else:
            return None
    return value


def substitute(body, request):
    if isinstance(body, str) and body.startswith("$req."):
        return lookup(request, body[len("$req."):])
    if isinstance(body, dict):
        return {k: substitute(v, request) for k, v in body.items()}
    if isinstance(body, list):
        return [substitute(v, request) for v in body]
    return body


def choose(action, request):
    while isinstance(action, dict) and "by" in action:
        key = lookup(request, action["by"])
        action = action.get("cases", {}).get(str(key), action.get("default"))
    return action


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Herald's client expects

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = {"unparsable": raw.decode("utf-8", "replace")}
        headers = {k.lower(): v for k, v in self.headers.items()}
        with open(self.server.log_path, "a", encoding="utf-8") as log:
            log.write(json.dumps({"path": self.path, "headers": headers, "body": body}) + "\n")
        try:
            with open(self.server.scenario_path, encoding="utf-8") as f:
                scenario = json.load(f)
        except (OSError, ValueError):
            scenario = {}
        request = dict(body) if isinstance(body, dict) else {}
        request["headers"] = headers
        action = choose(scenario.get(self.path), request)
        if action is None:
            return self.answer(404, b"no scenario for this path", "text/plain")
        time.sleep(float(action.get("delay", 0)))
        if "raw" in action:
            payload = action["raw"].encode()
            kind = "text/plain"
        else:
            payload = json.dumps(substitute(action.get("body", {}), request)).encode()
            kind = "application/json"
        self.answer(int(action.get("status", 200)), payload, kind)

    def answer(self, status, payload, kind):
        try:
            self.send_response(status)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the caller gave up (a timeout test): nothing to answer

    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--port-file", required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.scenario_path = args.scenario
    server.log_path = args.log
    tmp = args.port_file + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, args.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
