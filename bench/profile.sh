#!/usr/bin/env bash
# Profiles a server during one fan-out run: where its CPU time goes (perf, call graphs), and
# how that time splits over its threads (/proc/<pid>/task/*/stat). Used to compare Herald with
# the minimal broadcast server (crates/herald-bench/examples/broadcast_reference.rs) under the
# same load and client model.
#
#   SERVER=target/release/herald bench/profile.sh
#   SERVER=target/release/examples/broadcast_reference MODEL=tungstenite SUBS=10000 RATE=100 bench/profile.sh
#
# Knobs: SERVER (binary taking -c/--port), MODEL=tungstenite|fast, SUBS=10000, RATE=100,
# DURATION=10, VIA=api|client (how the bench publishes), PORT=8125, OUT=bench/out/profile-<server>-<model>-<subs>x<rate>, PERF_FREQ=499.
# Writes OUT.perf.data, OUT.report.txt (flat profile, then callers of the top symbols),
# OUT.threads.txt, OUT.syscalls.txt (system calls while publishing) and OUT.json (the bench's result line). Traffic goes to 127.0.0.1 only; the
# run and the recording are bounded in time.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVER=${SERVER:-$ROOT/target/release/herald}
BENCH=${BENCH:-$ROOT/target/release/herald-bench}
MODEL=${MODEL:-tungstenite}
SUBS=${SUBS:-10000}
RATE=${RATE:-100}
DURATION=${DURATION:-10}
PORT=${PORT:-8125}
PERF_FREQ=${PERF_FREQ:-499}
# api, or client for the minimal broadcast server (its API falls behind under fan-out).
VIA=${VIA:-api}
NAME=$(basename "$SERVER")
OUT=${OUT:-$ROOT/bench/out/profile-$NAME-$MODEL-${SUBS}x$RATE}
SECRET=herald-bench-secret-not-for-production
API_KEY=herald-bench-api-key
mkdir -p "$(dirname "$OUT")"
command -v perf >/dev/null || { echo "profile.sh: perf is not installed" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"

SERVER_PID=""
PERF_PID=""
cleanup() {
    [ -n "$PERF_PID" ] && kill -INT "$PERF_PID" 2>/dev/null || true
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
}
trap cleanup EXIT

"$SERVER" -c "$ROOT/bench/config.json" --port "$PORT" >"$OUT.server.log" 2>&1 &
SERVER_PID=$!
sleep 0.7

# thread_cpu: "<thread name> <CPU ticks>" for every thread of the server.
thread_cpu() {
    for t in /proc/"$SERVER_PID"/task/*; do
        # After "pid (name": field 1 is "name)", so stat field k is f[k - 1] (utime 14, stime 15).
        awk '{ sub(/^[^(]*\(/, ""); name = $0; sub(/\).*/, "", name); n = split($0, f, " ");
               print name, f[13] + f[14] }' "$t/stat" 2>/dev/null
    done | awk '{ ticks[$1] += $2 } END { for (n in ticks) print n, ticks[n] }' | sort
}

# The recording starts once the clients are set up (the bench prints "set up …" then) and
# lasts the publishing time.
"$BENCH" fanout --url "ws://127.0.0.1:$PORT/connection/websocket" \
    --api "http://127.0.0.1:$PORT/api" --api-key "$API_KEY" --hmac-secret "$SECRET" \
    --server-pid "$SERVER_PID" --subs "$SUBS" --rate "$RATE" --duration "$DURATION" \
    --payload-size 64 --client-model "$MODEL" --label "$NAME-$MODEL" --publish-via "$VIA" \
    2> >(while IFS= read -r line; do
        echo "$line" >&2
        case $line in
        "set up "*)
            thread_cpu >"$OUT.threads.before"
            timeout "$((DURATION + 2))" perf record -F "$PERF_FREQ" -g -p "$SERVER_PID" \
                -o "$OUT.perf.data" >/dev/null 2>&1 &
            # System calls of the publishing time: how many writes (and wake-ups) a delivery
            # costs the server.
            timeout --signal=INT "$DURATION" perf stat -p "$SERVER_PID" -o "$OUT.syscalls.txt" \
                -e syscalls:sys_enter_sendmsg,syscalls:sys_enter_writev,syscalls:sys_enter_write \
                -e syscalls:sys_enter_sendto,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex \
                -e context-switches >/dev/null 2>&1 &
            ;;
        "published "*)
            thread_cpu >"$OUT.threads.after"
            ;;
        esac
    done) | tee "$OUT.txt" | grep '^{' >"$OUT.json" || true
sleep "$((DURATION > 0 ? 3 : 0))"
awk 'NR == FNR { before[$1] = $2; next }
     { printf "%-24s %6.2f s CPU while publishing\n", $1, ($2 - before[$1]) / 100 }' \
    "$OUT.threads.before" "$OUT.threads.after" >"$OUT.threads.txt" 2>/dev/null || true
kill "$SERVER_PID" 2>/dev/null || true
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=""
{
    echo "== flat profile (self time), $NAME, $MODEL client model, $SUBS x $RATE"
    perf report -i "$OUT.perf.data" --no-children --sort comm,dso,sym --percent-limit 0.7 --stdio 2>/dev/null |
        grep -v '^$' | grep -v '^#' | grep '%' | head -60
    echo
    echo "== inclusive (children), top entries"
    perf report -i "$OUT.perf.data" --children --sort sym --percent-limit 3 --stdio -g none 2>/dev/null |
        grep -v '^$' | grep -v '^#' | grep '%' | head -50
} >"$OUT.report.txt"
echo "== $OUT.report.txt"
head -40 "$OUT.report.txt"
echo "== threads"
cat "$OUT.threads.txt"
echo "== system calls while publishing ($DURATION s)"
grep -E 'syscalls|context' "$OUT.syscalls.txt" 2>/dev/null || true
cat "$OUT.json"
