#!/usr/bin/env bash
# Issues 21 and 22 side by side: subscribers of each wire format and transport on one build,
# a fresh server per run, alternated within each round so that all see the same machine.
#
#   SETS="protobuf sse idle" ROUNDS=3 DURATION=8 bench/formats.sh
#
# * protobuf: fan-out 1k × 1k and 1k × 5k with all-JSON, all-Protobuf (`centrifuge-protobuf`)
#   and half/half subscribers (`--protobuf-share 0.5`, alternate connections) in one channel.
# * sse: fan-out 1k × 1k over WebSocket, SSE and HTTP-streaming (JSON).
# * idle: IDLE_SUBS (10,000) idle subscribed clients over WebSocket JSON, WebSocket Protobuf,
#   SSE and HTTP-streaming: server RSS per connection (idle-streams: SSE and HTTP-streaming
#   only, e.g. for HERALD=<an older build>).
#
# Each bench command runs under `flock $LOCK` (a machine-wide benchmark lock, when the file
# exists). JSON result lines go to $OUT/results.jsonl; `herald-bench table` makes Markdown of
# them. Client model: `fast` (MODEL=tungstenite for the typical client; WebSocket only).
set -euo pipefail

ROOT=${ROOT:-"$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"}
HERALD=${HERALD:-$ROOT/target/release/herald}
BENCH=${BENCH:-$ROOT/target/release/herald-bench}
SETS=${SETS:-protobuf sse idle}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
IDLE_SUBS=${IDLE_SUBS:-10000}
HOLD=${HOLD:-10}
MODEL=${MODEL:-fast}
PORT=${PORT:-8124}
LOCK=${LOCK:-}
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/herald-formats.XXXXXX")}
SECRET=herald-bench-secret-not-for-production
API_KEY=herald-bench-api-key
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"
mkdir -p "$OUT"
SUMMARY='
import json, sys
j = json.loads(sys.stdin.read())
print("%28s: %5.2f M/s  loss %d  p50 %7.2f  p99 %7.2f ms  server CPU %5.1f %%  bench CPU %5.1f %%  load %s" % (
    j["label"], j["deliveries_per_s"] / 1e6, j["lost"], j["p50_ms"], j["p99_ms"],
    j["server_cpu_pct"] or 0, j["bench_cpu_pct"], j["loadavg"]))
'
locked() { if [ -n "$LOCK" ] && [ -e "$LOCK" ]; then flock "$LOCK" "$@"; else "$@"; fi; }

start() {
    HERALD_HTTP_STREAM_ENABLED=true HERALD_SSE_ENABLED=true \
        "$HERALD" -c "$ROOT/bench/config.json" --port "$PORT" >"$OUT/server.log" 2>&1 &
    SERVER_PID=$!
    sleep 0.7
}
stop() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}
# url TRANSPORT: the endpoint of a transport.
url() {
    case $1 in
        websocket) echo "ws://127.0.0.1:$PORT/connection/websocket" ;;
        sse) echo "http://127.0.0.1:$PORT/connection/sse" ;;
        http-stream) echo "http://127.0.0.1:$PORT/connection/http_stream" ;;
    esac
}
# fanout LABEL SUBS RATE TRANSPORT SHARE
fanout() {
    start
    locked "$BENCH" fanout --url "$(url "$4")" --transport "$4" --protobuf-share "$5" \
        --api "http://127.0.0.1:$PORT/api" --api-key "$API_KEY" --hmac-secret "$SECRET" \
        --server-pid "$SERVER_PID" --subs "$2" --rate "$3" --duration "$DURATION" \
        --payload-size 64 --client-model "$MODEL" --label "$1" 2>"$OUT/$1.err" \
        | tee -a "$OUT/$1.txt" | grep '^{' >>"$OUT/results.jsonl" || true
    stop
    tail -n 1 "$OUT/results.jsonl" | python3 -c "$SUMMARY" || true
}
# idle LABEL TRANSPORT SHARE
idle() {
    start
    locked "$BENCH" idle --url "$(url "$2")" --transport "$2" --protobuf-share "$3" \
        --hmac-secret "$SECRET" --server-pid "$SERVER_PID" --subs "$IDLE_SUBS" --hold "$HOLD" \
        --label "$1" 2>"$OUT/$1.err" \
        | tee -a "$OUT/$1.txt" | grep '^{' >>"$OUT/results.jsonl" || true
    stop
    grep -h "server memory per connection" "$OUT/$1.txt" | tail -n 1 | sed "s/^/$1: /" || true
}

for round in $(seq 1 "$ROUNDS"); do
    for set in $SETS; do
        case $set in
            protobuf)
                for scenario in 1000x1000 1000x5000; do
                    subs=${scenario%x*} rate=${scenario#*x}
                    fanout "pb-$scenario-json" "$subs" "$rate" websocket 0
                    fanout "pb-$scenario-protobuf" "$subs" "$rate" websocket 1
                    fanout "pb-$scenario-half" "$subs" "$rate" websocket 0.5
                done
                ;;
            sse)
                fanout "tr-1000x1000-websocket" 1000 1000 websocket 0
                fanout "tr-1000x1000-sse" 1000 1000 sse 0
                fanout "tr-1000x1000-http-stream" 1000 1000 http-stream 0
                ;;
            idle)
                idle "idle-websocket-json" websocket 0
                idle "idle-websocket-protobuf" websocket 1
                idle "idle-sse" sse 0
                idle "idle-http-stream" http-stream 0
                ;;
            idle-streams)
                idle "idle-sse" sse 0
                idle "idle-http-stream" http-stream 0
                ;;
        esac
    done
done
echo "results in $OUT/results.jsonl"
