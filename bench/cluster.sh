#!/usr/bin/env bash
# Herald over Redis or NATS, measured: three nodes sharing one Redis (engine.type redis) or one
# NATS (broker.type nats, history on JetStream) against one embedded node at the same load,
# alternating, each run on freshly started processes.
#
#   bench/cluster.sh                       # everything below (~10 minutes)
#   SETS=fanout ROUNDS=2 bench/cluster.sh  # only the fan-out comparison
#   KINDS="nats3 redis3 embedded" PUBLISH_KINDS="nats3 redis3" bench/cluster.sh  # with NATS
#
# Sets (SETS, default "fanout publish recover idle"):
#   fanout   SCENARIOS (subs x msg/s) with the subscribers spread over the three nodes
#            (herald-bench --url given three times, one worker process per node), published
#            through node 1's API; then the same against one embedded node (bench/config.json),
#            same bench, same worker processes. ROUNDS rounds, the order of the two swapped
#            every round.
#   publish  durable publications/s through node 1's API with history in Redis (closed loop,
#            64 and 1024 in flight), and the ack latency at 10,000/s open loop.
#   recover  RECOVER_SUBS clients over the three nodes each recover RECOVER_MESSAGES missed
#            publications, all coming back at once.
#   idle     server memory per connection of one Redis-engine node (IDLE_SUBS / 5 and
#            IDLE_SUBS idle clients: the difference is the marginal cost).
#
# Environment knobs: ROUNDS=3 FIRST_ROUND=1 DURATION=8 SCENARIOS="1000x1000 10000x100" MODEL=fast
#   KINDS="redis3 embedded" (fan-out: redis3, nats3 and/or embedded; rotated every round) NODES=3
#   PUBLISH_KINDS="redis3" (publish: redis3 and/or nats3, history in Redis or in JetStream)
#   PUBLISHERS (fan-out publisher connections, each one request in flight; default: the
#   bench's, sized for a 2 ms publish, too few when a publish through Redis takes longer)
#   PUBLISH_DURATION=8 RECOVER_SUBS=15000 RECOVER_MESSAGES=100 IDLE_SUBS=15000
#   RECOVER_ARGS (more herald-bench recover options, e.g. "--reconnect-concurrency 1000")
#   WORK=bench/out/cluster (raw output) HERALD_BIN / BENCH_BIN (prebuilt binaries; otherwise
#   both are built in release mode).
#
# Redis is a private redis-server on a free port in a temp dir, without persistence
# (--save '' --appendonly no): an acknowledged publication is in Redis's memory only. NATS is a
# private nats-server -js on a free port with its store in a temp dir (JetStream's default
# sync: an acknowledged publication is in the OS's page cache, flushed every 2 minutes). Each
# node gets its own port and data directory, and the same token secret and API key. Every
# process started here is killed at exit. Traffic goes to 127.0.0.1 only; every run is
# bounded in time. Besides herald-bench's JSON result lines ($WORK/results.jsonl) it writes
# $WORK/cluster.tsv: per run, the CPU of all nodes and of the broker (Redis or NATS; % of one
# core, over the whole bench command including set-up) and what Redis carried (commands, bytes
# in and out; zeros with NATS).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
ROUNDS=${ROUNDS:-3}
# The first round's number: orders rotate with it, so that runs split over several invocations
# (one locked run each) still alternate.
FIRST_ROUND=${FIRST_ROUND:-1}
DURATION=${DURATION:-8}
SCENARIOS=${SCENARIOS:-1000x1000 10000x100}
MODEL=${MODEL:-fast}
SETS=${SETS:-fanout publish recover idle}
PUBLISH_DURATION=${PUBLISH_DURATION:-8}
RECOVER_SUBS=${RECOVER_SUBS:-15000}
RECOVER_MESSAGES=${RECOVER_MESSAGES:-100}
IDLE_SUBS=${IDLE_SUBS:-15000}
PUBLISHERS=${PUBLISHERS:-}
read -r -a RECOVER_EXTRA <<<"${RECOVER_ARGS:-}"
WORK=${WORK:-bench/out/cluster}
NODES=${NODES:-3} # nodes of a cluster run (redis3, nats3 keep their names whatever it is)
REDIS_SERVER=${REDIS_SERVER:-redis-server}
REDIS_CLI=${REDIS_CLI:-redis-cli}
NATS_SERVER=${NATS_SERVER:-nats-server}
KINDS=${KINDS:-redis3 embedded}
PUBLISH_KINDS=${PUBLISH_KINDS:-redis3}
want() { case " $SETS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
short() { if [ $(($1 % 1000)) -eq 0 ]; then echo "$(($1 / 1000))k"; else echo "$1"; fi; }

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_credentials bench/config.json
for f in bench/config-redis.json bench/config-redis-history.json bench/config-nats.json \
    bench/config-nats-history.json; do
    grep -q "\"$SECRET\"" "$f" && grep -q "\"$API_KEY\"" "$f" ||
        { echo "cluster.sh: $f must have the secret and API key of bench/config.json" >&2; exit 1; }
done

bench_binaries

# Every node and worker holds one descriptor per connection (at most ~19,900 per process here).
ulimit -n "$(ulimit -Hn)"
mkdir -p "$WORK"
RESULTS="$WORK/results.jsonl"
CLUSTER_TSV="$WORK/cluster.tsv"
COMMANDS="$WORK/commands.txt"
: >"$RESULTS"
: >"$COMMANDS"
printf 'label\tnodes_cpu_pct\tbroker_cpu_pct\twall_s\tredis_commands\tredis_in_bytes\tredis_out_bytes\n' >"$CLUSTER_TSV"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/herald-cluster.XXXXXX")
PIDS=()
REDIS_PID="" REDIS_PORT=""
NATS_PID="" NATS_PORT=""
NODE_PIDS=() NODE_PORTS=()

stop_all() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=() NODE_PIDS=() NODE_PORTS=() REDIS_PID="" REDIS_PORT="" NATS_PID="" NATS_PORT=""
    rm -rf -- "${TMP:?}"/run.* 2>/dev/null || true
}
cleanup() { stop_all; rm -rf -- "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
NEXT_PORT=${PORT:-18100}
free_port() {
    while port_in_use "$NEXT_PORT"; do NEXT_PORT=$((NEXT_PORT + 1)); done
    echo "$NEXT_PORT"
    NEXT_PORT=$((NEXT_PORT + 1))
}

start_redis() {
    local dir
    dir=$(mktemp -d "$TMP/run.redis.XXXXXX")
    REDIS_PORT=$(free_port)
    "$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
        >>"$WORK/redis.log" 2>&1 &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    for _ in $(seq 1 100); do
        if [ "$(timeout 2 "$REDIS_CLI" -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; then return 0; fi
        sleep 0.1
    done
    echo "cluster.sh: redis-server did not start; see $WORK/redis.log" >&2
    exit 1
}

start_nats() {
    local dir
    dir=$(mktemp -d "$TMP/run.nats.XXXXXX")
    NATS_PORT=$(free_port)
    "$NATS_SERVER" -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$dir" >>"$WORK/nats.log" 2>&1 &
    NATS_PID=$!
    PIDS+=("$NATS_PID")
    for _ in $(seq 1 100); do
        if port_in_use "$NATS_PORT"; then return 0; fi
        sleep 0.1
    done
    echo "cluster.sh: nats-server did not start; see $WORK/nats.log" >&2
    exit 1
}

# start_node CONFIG: one herald on a free port with its own data directory; waits for /health
# (200 once its engine is ready, i.e. Redis reached).
start_node() {
    local config=$1 port dir pid
    port=$(free_port)
    dir=$(mktemp -d "$TMP/run.node.XXXXXX")
    # The configs name an unreachable Redis or NATS: only this script's own is ever used.
    env -u HERALD_BIN ${REDIS_PORT:+HERALD_ENGINE_REDIS_ADDRESS="redis://127.0.0.1:$REDIS_PORT"} \
        ${NATS_PORT:+HERALD_BROKER_NATS_URL="nats://127.0.0.1:$NATS_PORT"} \
        "$HERALD" -c "$config" --port "$port" --data-dir "$dir" >>"$WORK/server.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    NODE_PIDS+=("$pid")
    NODE_PORTS+=("$port")
    for _ in $(seq 1 100); do
        if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$port/health")" = 200 ]; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "cluster.sh: herald ($config, port $port) did not become healthy; see $WORK/server.log" >&2
    exit 1
}

# start_cluster CONFIG: a fresh Redis and NODES nodes on it.
start_cluster() {
    start_redis
    for _ in $(seq 1 "$NODES"); do start_node "$1"; done
}
# start_nats_cluster CONFIG: a fresh nats-server -js and NODES nodes on it.
start_nats_cluster() {
    start_nats
    for _ in $(seq 1 "$NODES"); do start_node "$1"; done
}
# start_embedded: one node with the embedded engine (bench/config.json).
start_embedded() { start_node bench/config.json; }

urls() {
    local port
    for port in "${NODE_PORTS[@]}"; do printf -- '--url\nws://127.0.0.1:%s/connection/websocket\n' "$port"; done
}
api() { echo "http://127.0.0.1:${NODE_PORTS[0]}/api"; }

cpu_ticks() { # sum of utime + stime of the given pids
    local t=0 pid
    for pid in "$@"; do
        t=$((t + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
    done
    echo "$t"
}
redis_stats() { # commands in-bytes out-bytes (0 0 0 without Redis)
    if [ -z "$REDIS_PORT" ]; then echo "0 0 0"; return; fi
    timeout 5 "$REDIS_CLI" -p "$REDIS_PORT" info stats | tr -d '\r' | awk -F: '
        $1 == "total_commands_processed" {c = $2} $1 == "total_net_input_bytes" {i = $2}
        $1 == "total_net_output_bytes" {o = $2} END {print c + 0, i + 0, o + 0}'
}

# execute LABEL ARGS...: herald-bench ARGS --label LABEL against what is running; the result
# line goes to $RESULTS, the CPU of nodes and Redis and Redis's traffic to $CLUSTER_TSV.
execute() {
    local label=$1
    shift
    echo "== $label: herald-bench $*" >&2
    echo "herald-bench $* --label $label" | sed "s/$SECRET/\$SECRET/g; s/$API_KEY/\$API_KEY/g" >>"$COMMANDS"
    local hz t0 n0 r0 s0 t1 n1 r1 s1
    hz=$(getconf CLK_TCK)
    t0=$(date +%s.%N) n0=$(cpu_ticks "${NODE_PIDS[@]}") r0=$(cpu_ticks $REDIS_PID $NATS_PID) s0=$(redis_stats)
    if "$BENCH" "$@" --label "$label" | tee "$WORK/$label.txt"; then
        tail -n 1 "$WORK/$label.txt" >>"$RESULTS"
    else
        echo "cluster.sh: $label failed" >&2
        echo "{\"scenario\":\"failed\",\"label\":\"$label\"}" >>"$RESULTS"
    fi
    t1=$(date +%s.%N) n1=$(cpu_ticks "${NODE_PIDS[@]}") r1=$(cpu_ticks $REDIS_PID $NATS_PID) s1=$(redis_stats)
    python3 - "$label" "$hz" "$t0" "$t1" "$n0" "$n1" "$r0" "$r1" "$s0" "$s1" >>"$CLUSTER_TSV" <<'EOF'
import sys
label, hz, t0, t1, n0, n1, r0, r1, s0, s1 = sys.argv[1:]
wall = float(t1) - float(t0)
pct = lambda a, b: 100.0 * (int(b) - int(a)) / int(hz) / wall
d = [int(b) - int(a) for a, b in zip(s0.split(), s1.split())]
print(f"{label}\t{pct(n0, n1):.1f}\t{pct(r0, r1):.1f}\t{wall:.2f}\t{d[0]}\t{d[1]}\t{d[2]}")
EOF
}

START=$(date -u +%Y-%m-%dT%H:%M:%SZ)
if want fanout; then
    read -r -a kinds <<<"$KINDS"
    for round in $(seq "$FIRST_ROUND" $((FIRST_ROUND + ROUNDS - 1))); do
        # Rotate the kinds by one each round, so that none always runs first.
        shift_by=$(((round - 1) % ${#kinds[@]}))
        order="${kinds[*]:shift_by} ${kinds[*]:0:shift_by}"
        for scenario in $SCENARIOS; do
            subs=${scenario%x*} rate=${scenario#*x}
            name="fanout-$(short "$subs")x$(short "$rate")"
            for kind in $order; do
                case $kind in
                redis3) start_cluster bench/config-redis.json ;;
                nats3) start_nats_cluster bench/config-nats.json ;;
                embedded) start_embedded ;;
                *) echo "cluster.sh: unknown kind $kind in KINDS" >&2; exit 1 ;;
                esac
                mapfile -t url_args < <(urls)
                extra=()
                [ -n "$PUBLISHERS" ] && extra=(--publishers "$PUBLISHERS")
                execute "$name-$kind" fanout "${url_args[@]}" --procs "$NODES" --api "$(api)" \
                    --hmac-secret "$SECRET" --api-key "$API_KEY" --server-pid "${NODE_PIDS[0]}" \
                    --subs "$subs" --rate "$rate" --duration "$DURATION" --payload-size 64 \
                    --client-model "$MODEL" --publish-via api "${extra[@]}"
                stop_all
                sleep 1
            done
        done
    done
fi
if want publish; then
    # start_history_cluster KIND: three nodes keeping history in Redis or JetStream.
    start_history_cluster() {
        case $1 in
        redis3) start_cluster bench/config-redis-history.json ;;
        nats3) start_nats_cluster bench/config-nats-history.json ;;
        *) echo "cluster.sh: unknown kind $1 in PUBLISH_KINDS" >&2; exit 1 ;;
        esac
    }
    for round in $(seq "$FIRST_ROUND" $((FIRST_ROUND + ROUNDS - 1))); do
        for kind in $PUBLISH_KINDS; do
            for c in 64 1024; do
                start_history_cluster "$kind"
                execute "publish-closed-$c-$kind" publish --api "$(api)" --api-key "$API_KEY" \
                    --server-pid "${NODE_PIDS[0]}" --channels 100 --concurrency "$c" \
                    --duration "$PUBLISH_DURATION" --payload-size 64
                stop_all
                sleep 1
            done
            start_history_cluster "$kind"
            execute "publish-open-10k-$kind" publish --api "$(api)" --api-key "$API_KEY" \
                --server-pid "${NODE_PIDS[0]}" --channels 100 --concurrency 64 --rate 10000 \
                --duration "$PUBLISH_DURATION" --payload-size 64
            stop_all
            sleep 1
        done
    done
fi
if want recover; then
    for round in $(seq "$FIRST_ROUND" $((FIRST_ROUND + ROUNDS - 1))); do
        start_cluster bench/config-redis-history.json
        mapfile -t url_args < <(urls)
        execute "recover-$RECOVER_SUBS-x$RECOVER_MESSAGES-redis3" recover "${url_args[@]}" --procs "$NODES" \
            --api "$(api)" --hmac-secret "$SECRET" --api-key "$API_KEY" --server-pid "${NODE_PIDS[0]}" --channel bench:recover \
            --subs "$RECOVER_SUBS" --messages "$RECOVER_MESSAGES" "${RECOVER_EXTRA[@]}"
        stop_all
        sleep 1
    done
fi
if want idle; then
    # One Redis-engine node, so that its RSS is divided by its own connections.
    for subs in $((IDLE_SUBS / 5)) "$IDLE_SUBS"; do
        start_redis
        start_node bench/config-redis.json
        execute "idle-$subs-redis1" idle --url "ws://127.0.0.1:${NODE_PORTS[0]}/connection/websocket" \
            --hmac-secret "$SECRET" --server-pid "${NODE_PIDS[0]}" --subs "$subs" --hold 15
        stop_all
        sleep 1
    done
fi
END=$(date -u +%Y-%m-%dT%H:%M:%SZ)

echo "== $START .. $END; raw output in $WORK" >&2
"$BENCH" table "$RESULTS"
echo
echo "Per run: CPU of all nodes and of the broker (% of one core over the whole bench command), Redis traffic:"
echo
column -t -s $'\t' "$CLUSTER_TSV"
