#!/usr/bin/env bash
# Herald's backend hooks, measured (issue 23): one node, a backend that answers at once
# (bench/backend.mjs, one Node process), each run on a freshly started node.
#
#   bench/proxy.sh                        # everything below
#   SETS=connect ROUNDS=3 bench/proxy.sh  # only the connect comparison
#
# Sets (SETS, default "connect publish webhooks"):
#   connect   CONNECT_SUBS clients connect (no subscribe), CONNECT_CONCURRENCY at a time:
#             with a JWT each (herald-bench --hmac-secret) against without a token, so that
#             the connect proxy decides (client.proxy.connect, bench/config-proxy.json). The same
#             node config for both: a connect with a token never asks the proxy. Alternating.
#   publish   fan-out to PUBLISH_SUBS subscribers at PUBLISH_RATE msg/s, published by client
#             connections (herald-bench fanout --publish-via client), into a channel whose
#             namespace has publish_proxy_enabled (`pp:bench`) against one without (`bench`):
#             the delivery latency includes the proxy's round trip. Alternating.
#   webhooks  WEBHOOK_SUBS clients (users bench-0 … bench-N-1) subscribe, all disconnect, all
#             reconnect at once and recover (herald-bench recover) on a node with webhooks on
#             (bench/config-webhooks.json, offline_grace 0s, so every disconnect is a
#             user_offline and every reconnect a user_online); then the bench ends (all
#             disconnect again). The backend counts the events by id: each type's unique count
#             against what must come (2N user_online, 2N user_offline), and repeats; and the
#             time from the bench's end (N clients gone at once) to the last event delivered
#             ("drain": N user_offline events through the queue and the backend).
#
# Environment knobs: ROUNDS=3 FIRST_ROUND=1 CONNECT_SUBS=10000 CONNECT_CONCURRENCY=200 PUBLISH_SUBS=1000
#   PUBLISH_RATE=1000 PUBLISHERS=32 DURATION=8 WEBHOOK_SUBS=10000 WORK=bench/out/proxy
#   HERALD_BIN / BENCH_BIN (prebuilt binaries; otherwise both are built in release mode).
#
# Traffic goes to 127.0.0.1 only; every run is bounded in time; every process started here
# is killed at exit. Output: herald-bench's JSON lines ($WORK/results.jsonl), the backend's
# counts per webhook run ($WORK/webhooks.tsv) and per run the CPU of the node and of the backend
# ($WORK/cpu.tsv, % of one core over the bench command).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
ROUNDS=${ROUNDS:-3}
# The first round's number: orders rotate with it, so that runs split over several invocations
# (one locked run each) still alternate.
FIRST_ROUND=${FIRST_ROUND:-1}
SETS=${SETS:-connect publish webhooks}
CONNECT_SUBS=${CONNECT_SUBS:-10000}
CONNECT_CONCURRENCY=${CONNECT_CONCURRENCY:-200}
PUBLISH_SUBS=${PUBLISH_SUBS:-1000}
PUBLISH_RATE=${PUBLISH_RATE:-1000}
# Publisher connections, each with one publish in flight: enough for the rate when a publish
# waits for the proxy's round trip.
PUBLISHERS=${PUBLISHERS:-32}
DURATION=${DURATION:-8}
WEBHOOK_SUBS=${WEBHOOK_SUBS:-10000}
WORK=${WORK:-bench/out/proxy}
NODE=${NODE:-node}
want() { case " $SETS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_credentials bench/config.json
WEBHOOK_SECRET=$(sed -n 's/.*"secret": *"\([^"]*\)".*/\1/p' bench/config-webhooks.json)

bench_binaries

ulimit -n "$(ulimit -Hn)"
mkdir -p "$WORK"
RESULTS="$WORK/results.jsonl"
CPU_TSV="$WORK/cpu.tsv"
WEBHOOKS_TSV="$WORK/webhooks.tsv"
: >"$RESULTS"
printf 'label\tnode_cpu_pct\tbackend_cpu_pct\twall_s\n' >"$CPU_TSV"
printf 'label\tuser_online\tuser_offline\tchannel_occupied\tchannel_vacated\tunique\tduplicates\tbad_signatures\texpected_online\texpected_offline\tfirst_to_last_s\tlast_storm_drain_s\tlast_storm_events_per_s\n' >"$WEBHOOKS_TSV"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/herald-proxy.XXXXXX")
PIDS=()
BACKEND_PID="" BACKEND_PORT=""
NODE_PID="" NODE_PORT=""

stop_node() {
    if [ -n "$NODE_PID" ]; then
        kill "$NODE_PID" 2>/dev/null || true
        wait "$NODE_PID" 2>/dev/null || true
    fi
    NODE_PID="" NODE_PORT=""
    rm -rf -- "${TMP:?}"/run.* 2>/dev/null || true
}
cleanup() {
    stop_node
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf -- "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
NEXT_PORT=${PORT:-18300}
free_port() {
    while port_in_use "$NEXT_PORT"; do NEXT_PORT=$((NEXT_PORT + 1)); done
    echo "$NEXT_PORT"
    NEXT_PORT=$((NEXT_PORT + 1))
}

start_backend() {
    BACKEND_PORT=$(free_port)
    "$NODE" bench/backend.mjs --port "$BACKEND_PORT" --secret "$WEBHOOK_SECRET" >>"$WORK/backend.log" 2>&1 &
    BACKEND_PID=$!
    PIDS+=("$BACKEND_PID")
    for _ in $(seq 1 100); do
        if port_in_use "$BACKEND_PORT"; then return 0; fi
        sleep 0.1
    done
    echo "proxy.sh: the backend did not start; see $WORK/backend.log" >&2
    exit 1
}
backend() { curl -s --max-time 5 -X "$1" "http://127.0.0.1:$BACKEND_PORT$2"; }

# start_node CONFIG: one herald on a free port with its own data directory, its proxies and
# webhooks pointed at the backend; waits for /health.
start_node() {
    local config=$1 dir b="http://127.0.0.1:$BACKEND_PORT"
    NODE_PORT=$(free_port)
    dir=$(mktemp -d "$TMP/run.node.XXXXXX")
    env -u HERALD_BIN HERALD_CLIENT_PROXY_CONNECT_ENDPOINT="$b/connect" \
        HERALD_CHANNEL_PROXY_PUBLISH_ENDPOINT="$b/publish" HERALD_WEBHOOKS_ENDPOINT="$b/events" \
        "$HERALD" -c "$config" --port "$NODE_PORT" --data-dir "$dir" >>"$WORK/server.log" 2>&1 &
    NODE_PID=$!
    for _ in $(seq 1 100); do
        if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$NODE_PORT/health")" = 200 ]; then
            return 0
        fi
        kill -0 "$NODE_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "proxy.sh: herald ($config) did not become healthy; see $WORK/server.log" >&2
    exit 1
}
url() { echo "ws://127.0.0.1:$NODE_PORT/connection/websocket"; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

# execute LABEL ARGS...: herald-bench ARGS --label LABEL; its result line to $RESULTS, the CPU
# of the node and the backend to $CPU_TSV.
execute() {
    local label=$1
    shift
    echo "== $label: herald-bench $*" | sed "s/$SECRET/\$SECRET/g; s/$API_KEY/\$API_KEY/g" >&2
    local hz t0 n0 b0 t1 n1 b1
    hz=$(getconf CLK_TCK)
    t0=$(date +%s.%N) n0=$(cpu_ticks "$NODE_PID") b0=$(cpu_ticks "$BACKEND_PID")
    if "$BENCH" "$@" --label "$label" | tee "$WORK/$label.txt"; then
        tail -n 1 "$WORK/$label.txt" >>"$RESULTS"
    else
        echo "proxy.sh: $label failed" >&2
        echo "{\"scenario\":\"failed\",\"label\":\"$label\"}" >>"$RESULTS"
    fi
    t1=$(date +%s.%N) n1=$(cpu_ticks "$NODE_PID") b1=$(cpu_ticks "$BACKEND_PID")
    awk -v l="$label" -v hz="$hz" -v t0="$t0" -v t1="$t1" -v n0="$n0" -v n1="$n1" -v b0="$b0" -v b1="$b1" \
        'BEGIN { w = t1 - t0; printf "%s\t%.1f\t%.1f\t%.2f\n", l, 100 * (n1 - n0) / hz / w, 100 * (b1 - b0) / hz / w, w }' >>"$CPU_TSV"
}

start_backend
START=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for round in $(seq "$FIRST_ROUND" $((FIRST_ROUND + ROUNDS - 1))); do
    if want connect; then
        order="jwt proxy"
        [ $((round % 2)) -eq 0 ] && order="proxy jwt"
        for kind in $order; do
            start_node bench/config-proxy.json
            auth=()
            [ "$kind" = jwt ] && auth=(--hmac-secret "$SECRET")
            execute "connect-$kind" connect --url "$(url)" "${auth[@]}" --server-pid "$NODE_PID" \
                --subs "$CONNECT_SUBS" --concurrency "$CONNECT_CONCURRENCY" --no-subscribe
            stop_node
            sleep 1
        done
    fi
    if want publish; then
        order="plain proxied"
        [ $((round % 2)) -eq 0 ] && order="proxied plain"
        for kind in $order; do
            channel=bench
            [ "$kind" = proxied ] && channel=pp:bench
            start_node bench/config-proxy.json
            execute "publish-$kind" fanout --url "$(url)" --hmac-secret "$SECRET" \
                --api "http://127.0.0.1:$NODE_PORT/api" --api-key "$API_KEY" --server-pid "$NODE_PID" \
                --channel "$channel" --subs "$PUBLISH_SUBS" --rate "$PUBLISH_RATE" \
                --duration "$DURATION" --payload-size 64 --publish-via client --publishers "$PUBLISHERS"
            stop_node
            sleep 1
        done
    fi
    if want webhooks; then
        backend POST /reset >/dev/null
        start_node bench/config-webhooks.json
        label="webhooks-storm-$WEBHOOK_SUBS"
        execute "$label" recover --url "$(url)" --hmac-secret "$SECRET" \
            --api "http://127.0.0.1:$NODE_PORT/api" --api-key "$API_KEY" --server-pid "$NODE_PID" \
            --channel bench:recover --subs "$WEBHOOK_SUBS" --messages 10
        ended_ms=$(date +%s%3N) # all N clients just disconnected at once
        # The bench's clients are gone: wait (at most 60 s) until every offline event came.
        stats=""
        for _ in $(seq 1 600); do
            stats=$(backend GET /stats)
            off=$(echo "$stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["events"].get("user_offline", 0))')
            [ "$off" -ge $((2 * WEBHOOK_SUBS)) ] && break
            sleep 0.1
        done
        sleep 2 # late repeats, if any
        stats=$(backend GET /stats)
        echo "$stats" >"$WORK/$label-$round.stats.json"
        python3 - "$label" "$WEBHOOK_SUBS" "$stats" "$ended_ms" >>"$WEBHOOKS_TSV" <<'EOF'
import json, sys
label, n, stats, ended = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4])
e = stats["events"]
span = max(stats["last_event_ms"] - stats["first_event_ms"], 1) / 1000
# Events delivered before the bench process had exited leave no drain to measure ("-").
drain = (stats["last_event_ms"] - ended) / 1000
rate = f"{n / drain:.0f}" if drain > 0.05 else "-"
print("\t".join(str(x) for x in [
    label, e.get("user_online", 0), e.get("user_offline", 0), e.get("channel_occupied", 0),
    e.get("channel_vacated", 0), stats["unique"], stats["duplicates"], stats["bad_signatures"],
    2 * n, 2 * n, f"{span:.2f}", f"{drain:.2f}", rate]))
EOF
        stop_node
        sleep 1
    fi
done
END=$(date -u +%Y-%m-%dT%H:%M:%SZ)

echo "== $START .. $END; raw output in $WORK" >&2
"$BENCH" table "$RESULTS"
echo
echo "Per run: CPU of the node and of the backend (% of one core over the bench command):"
column -t -s $'\t' "$CPU_TSV"
if want webhooks; then
    echo
    echo "Webhook events counted by id at the backend:"
    column -t -s $'\t' "$WEBHOOKS_TSV"
fi
