#!/usr/bin/env bash
# Runs Herald's standard benchmarks with herald-bench and writes their tables to
# bench/out/results.md (not in git; bench/RESULTS.md is the kept record, to which a run's
# tables are copied with the context they need).
#
#   bench/run.sh              # the standard set (~12 minutes)
#   QUICK=1 bench/run.sh      # one small run of each kind (smoke test, ~1 minute)
#   SETS=history OUT=bench/out/history.md bench/run.sh   # only the durable-history runs
#
# Environment knobs:
#   RUNS=3            runs of each fan-out scenario
#   DURATION=10       seconds of publishing per fan-out run
#   IDLE_SUBS=15000   connections of the idle scenario (client + server sockets: keep the
#                     server process under its open-file limit)
#   PUBLISH_VIA=auto  api | client | auto (api when /api/publish works, else client publish)
#   PORT=8000         first port tried for the server (the next free one is used)
#   HERALD_WORKERS    passed on to the server like any HERALD_* option: its worker threads
#                     (default one per core; the machine table says which was used)
#   OUT=bench/out/results.md
#   QUIET_IDLE=0      if > 0: before each run wait (at most QUIET_WAIT=300 s) until the CPUs
#                     were at least this many percent idle over 2 s (for shared machines)
#   SETS="fanout features history"  which sets to run: fanout (fanout with both client
#                     models, idle, connect on bench/config.json), features (fan-out with fossil
#                     deltas and with a tags filter, against plain, on bench/config.json) and
#                     history (publish, recover on bench/config-history.json)
#   CLIENT_MODELS="fast tungstenite"  the subscribers' client models of the fan-out runs
#                     (both by default: see crates/herald-bench/src/typical.rs)
#   PUBLISH_DURATION=10 seconds of each publish run
#   PUBLISH_CHANNELS=100 channels the publish runs spread over (bench:0 … bench:99)
#   RECOVER_SUBS=15000 RECOVER_PROCS=3 RECOVER_MESSAGES=100   the recover run
#
# Every scenario gets a freshly started server, so memory and state do not carry over. The
# history runs give each server a new data directory (mktemp -d under ${TMPDIR:-/tmp}, on the
# same disk as the data a production server would use if TMPDIR is not a tmpfs), removed when
# that server stops.
# Traffic goes to 127.0.0.1 only; every run is bounded in time.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
CONFIG=bench/config.json
HISTORY_CONFIG=bench/config-history.json
OUT=${OUT:-bench/out/results.md}
RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
IDLE_SUBS=${IDLE_SUBS:-15000}
PUBLISH_VIA=${PUBLISH_VIA:-auto}
QUICK=${QUICK:-0}
PORT=${PORT:-8000}
SETS=${SETS:-fanout features history}
PUBLISH_DURATION=${PUBLISH_DURATION:-10}
PUBLISH_CHANNELS=${PUBLISH_CHANNELS:-100}
RECOVER_SUBS=${RECOVER_SUBS:-15000}
RECOVER_PROCS=${RECOVER_PROCS:-3}
RECOVER_MESSAGES=${RECOVER_MESSAGES:-100}
CLIENT_MODELS=${CLIENT_MODELS:-fast tungstenite}
# short N: 1000 -> 1k, 5000 -> 5k, 100 -> 100 (run labels).
short() { if [ $(($1 % 1000)) -eq 0 ]; then echo "$(($1 / 1000))k"; else echo "$1"; fi; }
want() { case " $SETS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
WORK=${WORK:-bench/out}
mkdir -p "$WORK" "$(dirname "$OUT")"
RESULTS="$WORK/results.jsonl"
COMMANDS="$WORK/commands.txt"
: >"$RESULTS"
: >"$COMMANDS"

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_credentials "$CONFIG"

# HERALD_BIN / BENCH_BIN: run prebuilt binaries (e.g. a saved baseline, for a side-by-side
# comparison) instead of building; CARGO_TARGET_DIR is honoured.
bench_binaries

# The server and each worker hold one descriptor per connection.
ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
while port_in_use "$PORT"; do PORT=$((PORT + 1)); done
URL="ws://127.0.0.1:$PORT/connection/websocket"
API="http://127.0.0.1:$PORT/api"

SERVER_PID=""
SERVER_CONFIG=$CONFIG
DATA_DIR=""
# start_server: $SERVER_CONFIG on $PORT (with --data-dir $DATA_DIR when set).
start_server() {
    local extra=()
    if [ -n "$DATA_DIR" ]; then extra=(--data-dir "$DATA_DIR"); fi
    "$HERALD" -c "$SERVER_CONFIG" --port "$PORT" "${extra[@]}" >>"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
        if port_in_use "$PORT"; then return 0; fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
        sleep 0.1
    done
    echo "run.sh: herald did not start; see $WORK/server.log" >&2
    exit 1
}
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
    if [ -n "$DATA_DIR" ]; then
        rm -rf -- "$DATA_DIR"
        DATA_DIR=""
    fi
}
trap stop_server EXIT

# api_works: does POST /api/publish answer with a result?
api_works() {
    local body
    body=$(exec 3<>"/dev/tcp/127.0.0.1/$PORT" && {
        local data='{"channel":"bench-probe","data":{}}'
        printf 'POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
            "$API_KEY" "${#data}" "$data" >&3
        timeout 5 cat <&3
    }) || return 1
    printf '%s' "$body" | grep -q '"result"'
}

if { want fanout || want features; } && [ "$PUBLISH_VIA" = auto ]; then
    start_server
    if api_works; then PUBLISH_VIA=api; else PUBLISH_VIA=client; fi
    stop_server
    echo "== publishing through: $PUBLISH_VIA" >&2
fi

QUIET_IDLE=${QUIET_IDLE:-0}
QUIET_WAIT=${QUIET_WAIT:-300}
# cpu_idle_pct: percentage of CPU time idle over the next 2 s (all CPUs).
cpu_idle_pct() {
    local a b
    a=($(head -n 1 /proc/stat))
    sleep 2
    b=($(head -n 1 /proc/stat))
    local total=0 i
    for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
    local idle=$((b[4] - a[4] + b[5] - a[5]))
    echo $((total > 0 ? 100 * idle / total : 0))
}
wait_quiet() {
    [ "$QUIET_IDLE" -gt 0 ] || return 0
    local waited=0 idle
    while idle=$(cpu_idle_pct); [ "$idle" -lt "$QUIET_IDLE" ]; do
        if [ "$waited" -ge "$QUIET_WAIT" ]; then
            echo "== CPUs only ${idle}% idle after waiting ${waited} s; running anyway" >&2
            return 0
        fi
        sleep 3
        waited=$((waited + 5))
    done
}

# execute LABEL ARGS...: herald-bench ARGS against the running server; the result line goes to
# $RESULTS.
execute() {
    local label=$1
    shift
    echo "== $label: herald-bench $*" >&2
    echo "herald-bench $*" | sed "s/$SECRET/\$SECRET/g; s/$API_KEY/\$API_KEY/g" >>"$COMMANDS"
    if "$BENCH" "$@" | tee "$WORK/$label.txt"; then
        tail -n 1 "$WORK/$label.txt" >>"$RESULTS"
    else
        echo "run.sh: $label failed" >&2
        echo "{\"scenario\":\"failed\",\"label\":\"$label\"}" >>"$RESULTS"
    fi
}

# run LABEL SCENARIO ARGS...: one run on a fresh server (bench/config.json).
run() {
    local label=$1 scenario=$2
    shift 2
    wait_quiet
    start_server
    local args=("$scenario" --url "$URL" --hmac-secret "$SECRET" --server-pid "$SERVER_PID" --label "$label" "$@")
    if [ "$scenario" = fanout ]; then
        args+=(--api "$API" --api-key "$API_KEY" --publish-via "$PUBLISH_VIA")
    fi
    execute "$label" "${args[@]}"
    stop_server
    sleep 1
}

# run_history LABEL SCENARIO ARGS...: one run on a fresh server with durable history
# (bench/config-history.json) in a new data directory, removed afterwards.
run_history() {
    local label=$1 scenario=$2
    shift 2
    wait_quiet
    SERVER_CONFIG=$HISTORY_CONFIG
    DATA_DIR=$(mktemp -d "${TMPDIR:-/tmp}/herald-bench-data.XXXXXX")
    start_server
    local args=("$scenario" --api "$API" --api-key "$API_KEY" --server-pid "$SERVER_PID" --label "$label")
    if [ "$scenario" = recover ]; then
        args+=(--url "$URL" --hmac-secret "$SECRET")
    fi
    execute "$label" "${args[@]}" "$@"
    stop_server
    SERVER_CONFIG=$CONFIG
    sleep 1
}

START=$(date -u +%Y-%m-%dT%H:%M:%SZ)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
PSI_START=$(sed -n 's/^some avg10=\([^ ]*\) avg60=\([^ ]*\) avg300=\([^ ]*\).*/\1 \2 \3/p' /proc/pressure/cpu 2>/dev/null || echo "n/a")
if [ "$QUICK" = 1 ]; then
    if want fanout; then
        for model in $CLIENT_MODELS; do
            run "fanout-100x100-$model" fanout --subs 100 --rate 100 --duration 3 --payload-size 64 \
                --client-model "$model"
        done
    fi
    if want features && [ "$PUBLISH_VIA" = api ]; then
        run "features-100x100-delta" fanout --subs 100 --rate 100 --duration 3 --payload-size 64 \
            --client-model tungstenite --delta
        run "features-100x100-tags" fanout --subs 100 --rate 100 --duration 3 --payload-size 64 \
            --client-model tungstenite --tags-filter 0.5
    fi
    if want history; then
        run_history publish-closed-16 publish --channels 10 --concurrency 16 --duration 2 --payload-size 64
        run_history recover-500x20 recover --channel bench:recover --subs 500 --messages 20
    fi
else
    if want fanout; then
        # Both client models, always (see crates/herald-bench/src/typical.rs): alternated
        # within each round so that both see the same machine.
        for scenario in 1000x1000 1000x5000 10000x100; do
            subs=${scenario%x*} rate=${scenario#*x}
            name="fanout-$((subs / 1000))k-subs-$(short "$rate")-msg"
            for i in $(seq 1 "$RUNS"); do
                for model in $CLIENT_MODELS; do
                    run "$name-$model" fanout --subs "$subs" --rate "$rate" --duration "$DURATION" \
                        --payload-size 64 --client-model "$model" --plot "$WORK/$name-$model-$i.svg"
                done
            done
        done
        # A fifth as many clients too: the two runs give the marginal memory per connection
        # (without the one-time cost of the first connections; see the idle table).
        run "idle-$((IDLE_SUBS / 5))" idle --subs "$((IDLE_SUBS / 5))" --hold 15
        run "idle-$IDLE_SUBS" idle --subs "$IDLE_SUBS" --hold 15
        run "connect-5k" connect --subs 5000 --concurrency 100
    fi
    if want features && [ "$PUBLISH_VIA" = api ]; then
        # Channel features against plain fan-out, same clients (the tungstenite model decodes
        # deltas as an SDK does): fossil deltas on every subscriber, and a tags filter that
        # half of the subscribers match.
        for i in $(seq 1 "$RUNS"); do
            for mode in plain delta tags; do
                extra=()
                case $mode in delta) extra=(--delta) ;; tags) extra=(--tags-filter 0.5) ;; esac
                run "features-1k-subs-1k-msg-$mode" fanout --subs 1000 --rate 1000 --duration "$DURATION" \
                    --payload-size 64 --client-model tungstenite "${extra[@]}"
            done
        done
    fi
    if want history; then
        # Closed loop: as many publications as the connections can get acknowledged; more
        # connections give group commit more publications per flush.
        for c in 64 1024; do
            for i in $(seq 1 "$RUNS"); do
                run_history "publish-closed-$c" publish --channels "$PUBLISH_CHANNELS" --concurrency "$c" \
                    --duration "$PUBLISH_DURATION" --payload-size 64 --plot "$WORK/publish-closed-$c-$i.svg"
            done
        done
        # Open loop at 10,000/s: the acknowledgement latency at a moderate load.
        for i in $(seq 1 "$RUNS"); do
            run_history "publish-open-10k" publish --channels "$PUBLISH_CHANNELS" --concurrency 64 --rate 10000 \
                --duration "$PUBLISH_DURATION" --payload-size 64 --plot "$WORK/publish-open-10k-$i.svg"
        done
        # Every client misses RECOVER_MESSAGES publications, then all come back at once.
        for i in $(seq 1 "$RUNS"); do
            run_history "recover-$RECOVER_SUBS-x$RECOVER_MESSAGES" recover --channel bench:recover \
                --subs "$RECOVER_SUBS" --procs "$RECOVER_PROCS" --messages "$RECOVER_MESSAGES" \
                --plot "$WORK/recover-$i.svg"
        done
    fi
fi
END=$(date -u +%Y-%m-%dT%H:%M:%SZ)

{
    echo "# Herald benchmark results"
    echo
    echo "Written by \`bench/run.sh\` from $START to $END (UTC). Raw output: \`$WORK/\` (one"
    echo "\`.txt\` per run, \`results.jsonl\` with the JSON result lines, latency plots as SVG)."
    echo
    echo "## Machine"
    echo
    echo "| | |"
    echo "|---|---|"
    echo "| CPUs (nproc) | $(nproc) |"
    echo "| CPU model | $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1) |"
    echo "| kernel | $(uname -r) |"
    echo "| memory | $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) |"
    echo "| open-file limit (ulimit -n) | $NOFILE |"
    echo "| load average (1, 5, 15 min) at start | $LOAD_START |"
    echo "| CPU pressure (PSI some avg10/60/300) at start | $PSI_START |"
    echo "| rustc | $(rustc --version) |"
    echo "| server worker threads (HERALD_WORKERS) | ${HERALD_WORKERS:-one per core (default)} |"
    echo "| herald commit | $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- crates 2>/dev/null || echo ' (with uncommitted changes)') |"
    echo
    echo "Server and load generator share this machine (and its cores): the numbers measure both"
    echo "together. \`bench CPU %\` and \`server CPU %\` are percentages of one core. \`CPU pressure %\`"
    echo "is Linux PSI (\`/proc/pressure/cpu\`, some avg10) at the end of the run: the share of time"
    echo "in which some runnable task waited for a CPU. Well above what server + bench explain"
    echo "(or a load average above the core count) means other work competed for the CPUs, and"
    echo "latency then measures that contention more than the server."
    echo
    echo "## Set-up"
    echo
    if want fanout; then
    echo "* server: \`target/release/herald -c bench/config.json --port $PORT\`, restarted for every run"
    echo "  (config: HMAC connection tokens, API key, \`channel.without_namespace.allow_subscribe_for_client\`,"
    echo "  \`allowed_delta_types: [fossil]\` and \`allow_tags_filter\` (used only by subscribers that ask),"
    echo "  \`client.queue_max_size\` 64 MiB, log level warn)"
    echo "* publications: $PUBLISH_VIA ($( [ "$PUBLISH_VIA" = api ] && echo "POST /api/publish over keep-alive HTTP/1.1" || echo "client \`publish\` command over WebSocket"  )),"
    echo "  64-byte data objects \`{\"ts\":…,\"seq\":…,\"pad\":\"…\"}\` at a fixed rate; latency = receive time − \`ts\`"
    echo "  (both from CLOCK_MONOTONIC of this machine)"
    echo "* subscribers: one user per connection (HS256 token signed by the bench), one channel;"
    echo "  two client models, each fan-out scenario run with both (label suffix): \`fast\`, the bench's"
    echo "  own client (one \`recv\` per wake-up, \`ts\` found without building JSON), and \`tungstenite\`, a"
    echo "  typical client (tokio-tungstenite, default config, a task per connection taking one message"
    echo "  at a time, serde parsing; latency taken when the task handles the publication)"
    fi
    if want features; then
        echo "* \`features-*\` runs: 1,000 tungstenite-model subscribers × 1,000 msg/s, \`plain\`, \`delta\`"
        echo "  (subscribe \`delta: \"fossil\"\`, publish \`delta: true\`; each subscriber applies the Fossil"
        echo "  delta to the previous payload, then reads \`ts\` from the rebuilt payload) and \`tags\` (publish"
        echo "  \`tags: {bench: on}\`; every subscriber has a \`tf\` filter, half of them matching)"
    fi
    if want history; then
        echo "* durable history runs (\`publish\`, \`recover\`): \`target/release/herald -c bench/config-history.json"
        echo "  --port $PORT --data-dir <new mktemp -d under ${TMPDIR:-/tmp}>\`, restarted (with a new, empty data"
        echo "  directory) for every run. Namespace \`bench\`: \`history_size\` 1000, \`history_ttl\` 300s,"
        echo "  \`force_recovery\`; \`history.durability\` fsync (an acknowledged publication has been"
        echo "  fdatasync'ed); \`client.recovery_max_publication_limit\` 1000. Data directory filesystem:"
        echo "  $(df -T "${TMPDIR:-/tmp}" | awk 'NR == 2 {print $2 " on " $1}')."
        echo "* \`publish\`: $PUBLISH_CHANNELS channels \`bench:0\` … round-robin, 64-byte data, one request in"
        echo "  flight per keep-alive connection; ack latency = response received − request sent. Closed"
        echo "  loop = each connection publishes again as soon as it is acknowledged; open loop = a fixed"
        echo "  schedule (\`late\` counts publications sent > 2 ms after their due time)."
        echo "* \`recover\`: clients subscribe to \`bench:recover\` and keep the epoch + offset of the reply,"
        echo "  close their sockets, publications are made through the API (\`missed\`), then after 1 s"
        echo "  all reconnect at the same moment and subscribe with \`recover: true\` from their position."
        echo "  Latency = recovered subscribe reply − the reconnect signal; \`all done s\` = the last"
        echo "  client's. A client counts as recovered only with \`recovered: true\`, the same epoch and"
        echo "  exactly the missed publications (consecutive offsets after its position)."
    fi
    echo
    echo "## Commands"
    echo
    echo '```'
    echo "ulimit -n $NOFILE"
    cat "$COMMANDS"
    echo '```'
    echo
    echo "## Results"
    echo
    "$BENCH" table "$RESULTS"
    if grep -q '"scenario":"failed"' "$RESULTS"; then
        echo "Failed runs: $(grep '"scenario":"failed"' "$RESULTS" | sed 's/.*"label":"\([^"]*\)".*/\1/' | tr '\n' ' ')"
        echo
    fi
} >"$OUT"
echo "== wrote $OUT" >&2
