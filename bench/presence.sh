#!/usr/bin/env bash
# What presence and join/leave cost: herald-bench fanout at 1,000 subscribers × 1,000 msg/s
# with presence + join/leave (+ force_push_join_leave) on versus off, alternating, RUNS times;
# then the time to list the presence of a channel with 10,000 members (/api/presence and
# /api/presence_stats while `herald-bench idle` holds 10,000 subscribed clients).
#
#   bench/presence.sh            # release builds of herald and herald-bench in target/release
#   RUNS=3 DURATION=10 MEMBERS=10000 HERALD=… BENCH=… bench/presence.sh
#
# Prints one JSON result line per fanout run and a summary of the presence timings.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HERALD=${HERALD:-$ROOT/target/release/herald}
BENCH=${BENCH:-$ROOT/target/release/herald-bench}
RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
MEMBERS=${MEMBERS:-10000}
PORT=${PORT:-8100}
SECRET=herald-bench-secret-not-for-production
API_KEY=herald-bench-api-key
WORK=$(mktemp -d "${TMPDIR:-/tmp}/herald-presence-bench.XXXXXX")
SERVER_PID=""

[ -x "$HERALD" ] && [ -x "$BENCH" ] || {
    echo "build first: cargo build --release -p herald -p herald-bench (or set HERALD/BENCH)" >&2
    exit 1
}

cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# Two configs from bench/config.json: presence off (as is) and on.
python3 - "$ROOT/bench/config.json" "$WORK" <<'EOF'
import json, sys
base = json.load(open(sys.argv[1]))
json.dump(base, open(f"{sys.argv[2]}/off.json", "w"))
base["channel"]["without_namespace"].update({
    "presence": True, "join_leave": True, "force_push_join_leave": True,
    "allow_presence_for_client": True,
})
json.dump(base, open(f"{sys.argv[2]}/on.json", "w"))
EOF

start_server() {
    "$HERALD" -c "$WORK/$1.json" --port "$PORT" >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "herald did not start:" >&2
    cat "$WORK/server.log" >&2
    exit 1
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    sleep 1
}

api() {
    curl -s -o /dev/null -w '%{time_total}\n' -X POST "http://127.0.0.1:$PORT/api/$1" \
        -H "X-API-Key: $API_KEY" -d "$2"
}

echo "== fanout 1,000 subs × 1,000 msg/s, presence + join/leave off vs on, $RUNS × $DURATION s"
for i in $(seq "$RUNS"); do
    for mode in off on; do
        start_server "$mode"
        "$BENCH" fanout --url "ws://127.0.0.1:$PORT/connection/websocket" --hmac-secret "$SECRET" \
            --api "http://127.0.0.1:$PORT/api" --api-key "$API_KEY" --server-pid "$SERVER_PID" \
            --subs 1000 --rate 1000 --duration "$DURATION" --payload-size 64 \
            --label "presence-$mode-$i" | tail -n 1
        stop_server
    done
done

echo "== presence of a channel with $MEMBERS members"
start_server on
"$BENCH" idle --url "ws://127.0.0.1:$PORT/connection/websocket" --hmac-secret "$SECRET" \
    --subs "$MEMBERS" --hold 40 --server-pid "$SERVER_PID" >"$WORK/idle.txt" 2>&1 &
IDLE=$!
for _ in $(seq 600); do
    n=$(curl -s -X POST "http://127.0.0.1:$PORT/api/presence_stats" -H "X-API-Key: $API_KEY" \
        -d '{"channel":"bench"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["num_clients"])' 2>/dev/null || echo 0)
    [ "$n" -ge "$MEMBERS" ] && break
    sleep 0.1
done
echo "members present: $n"
bytes=$(curl -s -X POST "http://127.0.0.1:$PORT/api/presence" -H "X-API-Key: $API_KEY" \
    -d '{"channel":"bench"}' | wc -c)
echo "presence reply: $bytes bytes"
for method in presence presence_stats; do
    for _ in $(seq 20); do api "$method" '{"channel":"bench"}'; done | sort -n |
        awk -v m="$method" '{t[NR]=$1} END {printf "%s: 20 calls, median %.1f ms, max %.1f ms (curl time_total)\n", m, 1000*t[int((NR+1)/2)], 1000*t[NR]}'
done
kill "$IDLE" 2>/dev/null || true
wait "$IDLE" 2>/dev/null || true
stop_server
