#!/usr/bin/env bash
# Two Herald builds side by side on the standard fan-out scenarios: for each round and
# scenario, a fresh server of BEFORE, then of AFTER, each measured by the same herald-bench,
# alternating so that both see the same machine. Every scenario is measured with both
# subscriber client models of herald-bench (`fast`, its own client, and `tungstenite`, a
# typical tokio-tungstenite client). Prints one line per run and the medians of p50, p99 and
# the publish rate per scenario, model and build.
#
#   BEFORE=/path/to/old/herald AFTER=target/release/herald bench/compare.sh
#   ROUNDS=3 DURATION=8 BENCH=target/release/herald-bench SCENARIOS="1000x1000 1000x5000 10000x100"
#   MODELS="fast tungstenite"
#
# BEFORE or AFTER may be examples/broadcast_reference (it takes the same -c/--port); publish
# to it through a client connection (VIA_BEFORE=client or VIA_AFTER=client): its HTTP API
# shares the runtime with the connections and falls far behind the asked rate under fan-out.
#
# BENCH_ARGS: more herald-bench fanout flags for every run (e.g. "--procs 2").
# ENV_BEFORE / ENV_AFTER: extra environment of that build's server, e.g.
# ENV_AFTER="HERALD_WORKERS=1" to compare two settings of one binary.
#
# Run it on a machine with nothing else busy: server and bench share the cores.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BEFORE=${BEFORE:?set BEFORE to the herald binary to compare against}
AFTER=${AFTER:-$ROOT/target/release/herald}
BENCH=${BENCH:-$ROOT/target/release/herald-bench}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
SCENARIOS=${SCENARIOS:-1000x1000 1000x5000 10000x100}
MODELS=${MODELS:-fast tungstenite}
VIA_BEFORE=${VIA_BEFORE:-api}
VIA_AFTER=${VIA_AFTER:-api}
ENV_BEFORE=${ENV_BEFORE:-}
ENV_AFTER=${ENV_AFTER:-}
BENCH_ARGS=${BENCH_ARGS:-}
PORT=${PORT:-8123}
SECRET=herald-bench-secret-not-for-production
API_KEY=herald-bench-api-key
OUT=$(mktemp "${TMPDIR:-/tmp}/herald-compare.XXXXXX")
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

# run BUILD SUBS RATE MODEL VIA ENV: one fan-out run against a fresh server; prints its JSON
# result line.
run() {
    # shellcheck disable=SC2086 # ENV is a list of NAME=value words
    env $6 "$1" -c "$ROOT/bench/config.json" --port "$PORT" >/dev/null 2>&1 &
    SERVER_PID=$!
    sleep 0.7
    "$BENCH" fanout --url "ws://127.0.0.1:$PORT/connection/websocket" \
        --api "http://127.0.0.1:$PORT/api" --api-key "$API_KEY" --hmac-secret "$SECRET" \
        --server-pid "$SERVER_PID" --subs "$2" --rate "$3" --duration "$DURATION" \
        --payload-size 64 --client-model "$4" --publish-via "$5" $BENCH_ARGS 2>/dev/null | grep '^{' || true
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

for round in $(seq 1 "$ROUNDS"); do
    for scenario in $SCENARIOS; do
        for model in $MODELS; do
            for build in before after; do
                bin=$BEFORE via=$VIA_BEFORE envs=$ENV_BEFORE
                [ "$build" = after ] && bin=$AFTER via=$VIA_AFTER envs=$ENV_AFTER
                line=$(run "$bin" "${scenario%x*}" "${scenario#*x}" "$model" "$via" "$envs")
                echo "$round $scenario/$model $build $line" >>"$OUT"
                python3 - "$round" "$scenario/$model" "$build" "$line" <<'EOF'
import json, sys
r, s, b, line = sys.argv[1:5]
try:
    j = json.loads(line)
except ValueError:
    print(f"round {r} {s} {b}: no result"); sys.exit()
print(f"round {r} {s:>21} {b:6} published/s {j['publish_rate']:8.1f} late {j.get('late', '?')}  deliveries/s {j['deliveries_per_s']/1e6:5.2f} M"
      f"  loss {j['lost']}  p50 {j['p50_ms']:7.2f}  p99 {j['p99_ms']:7.2f} ms"
      f"  server CPU {(j['server_cpu_pct'] or 0):5.1f} %  bench CPU {j['bench_cpu_pct']:5.1f} %"
      + (f"  arrival p50 {j['arrival_p50_ms']:7.2f}  p99 {j['arrival_p99_ms']:7.2f} ms" if j.get('arrival_p99_ms') is not None else ""))
EOF
            done
        done
    done
done

echo
echo "medians per scenario/model and build (the p99 of each run in brackets):"
python3 - "$OUT" <<'EOF'
import json, statistics, sys
runs = {}
for raw in open(sys.argv[1]):
    r, s, b, line = raw.split(" ", 3)
    try:
        runs.setdefault((s, b), []).append(json.loads(line))
    except ValueError:
        pass
print("  %21s %-6s %8s %8s %11s %6s  %s" % ("scenario/model", "build", "p50 ms", "p99 ms", "published/s", "late", "p99 of each run"))
for (s, b), js in sorted(runs.items()):
    med = lambda k: statistics.median(j[k] for j in js)
    each = " / ".join("%.1f" % j["p99_ms"] for j in js)
    late = sum(j.get("late", 0) or 0 for j in js)
    print("  %21s %-6s %8.2f %8.2f %11.1f %6d  (%s)" % (s, b, med("p50_ms"), med("p99_ms"), med("publish_rate"), late, each))
EOF
rm -f "$OUT"
