#!/usr/bin/env bash
# Two Herald builds side by side on the standard fan-out scenarios: for each round and
# scenario, a fresh server of BEFORE, then of AFTER, each measured by the same herald-bench,
# alternating so that both see the same machine. Prints one line per run and the median
# p99 per scenario and build.
#
#   BEFORE=/path/to/old/herald AFTER=target/release/herald bench/compare.sh
#   ROUNDS=3 DURATION=8 BENCH=target/release/herald-bench SCENARIOS="1000x1000 1000x5000 10000x100"
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
PORT=${PORT:-8123}
SECRET=herald-bench-secret-not-for-production
API_KEY=herald-bench-api-key
OUT=$(mktemp "${TMPDIR:-/tmp}/herald-compare.XXXXXX")
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

# run BUILD SUBS RATE: one fan-out run against a fresh server; prints its JSON result line.
run() {
    "$1" -c "$ROOT/bench/config.json" --port "$PORT" >/dev/null 2>&1 &
    SERVER_PID=$!
    sleep 0.7
    "$BENCH" fanout --url "ws://127.0.0.1:$PORT/connection/websocket" \
        --api "http://127.0.0.1:$PORT/api" --api-key "$API_KEY" --hmac-secret "$SECRET" \
        --server-pid "$SERVER_PID" --subs "$2" --rate "$3" --duration "$DURATION" \
        --payload-size 64 2>/dev/null | grep '^{' || true
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

for round in $(seq 1 "$ROUNDS"); do
    for scenario in $SCENARIOS; do
        for build in before after; do
            bin=$BEFORE
            [ "$build" = after ] && bin=$AFTER
            line=$(run "$bin" "${scenario%x*}" "${scenario#*x}")
            echo "$round $scenario $build $line" >>"$OUT"
            python3 - "$round" "$scenario" "$build" "$line" <<'EOF'
import json, sys
r, s, b, line = sys.argv[1:5]
try:
    j = json.loads(line)
except ValueError:
    print(f"round {r} {s} {b}: no result"); sys.exit()
print(f"round {r} {s:>10} {b:6} published/s {j['publish_rate']:8.1f}  deliveries/s {j['deliveries_per_s']/1e6:5.2f} M"
      f"  loss {j['lost']}  p50 {j['p50_ms']:7.2f}  p99 {j['p99_ms']:7.2f} ms"
      f"  server CPU {j['server_cpu_pct']:5.1f} %  bench CPU {j['bench_cpu_pct']:5.1f} %")
EOF
        done
    done
done

echo
echo "median p99 (ms) per scenario and build:"
python3 - "$OUT" <<'EOF'
import json, statistics, sys
runs = {}
for raw in open(sys.argv[1]):
    r, s, b, line = raw.split(" ", 3)
    try:
        runs.setdefault((s, b), []).append(json.loads(line)["p99_ms"])
    except ValueError:
        pass
for (s, b), p99 in sorted(runs.items()):
    print(f"  {s:>10} {b:6} {statistics.median(p99):8.2f}   ({' / '.join(f'{v:.1f}' for v in p99)})")
EOF
rm -f "$OUT"
