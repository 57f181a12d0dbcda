#!/usr/bin/env bash
# The whole Herald test suite, as CI runs it (.ci/run calls this script).
#
#   scripts/test.sh
#
# On a fresh Debian machine with Rust stable, Node 20 and Python 3.11 (as root or not), it
# installs what the tests need (npm packages of tests/js and tests/browser, PyPI packages of
# tests/python, Debian's chromium for the browser tests when it is missing and we are root),
# installs Debian's redis-server and nats-server when missing (as root) and starts them when not running, then runs:
#
#   1. cargo fmt --check, cargo clippy -D warnings
#   2. cargo test --workspace
#   3. the Autobahn conformance suite (fast profile) against the WebSocket layer (echo example)
#   4. the JavaScript tests: the real `centrifuge` SDK under Node against the herald binary
#   5. the browser tests: the chat app and the admin UI in headless Chromium (playwright-core)
#   6. the Python tests: the real `cent` server API client against the herald binary
#
# Every step runs even if an earlier one failed (so one run shows everything that is wrong);
# the script exits non-zero if any failed. Set HERALD_TEST_SKIP="autobahn js" (space-separated
# step names: lint test autobahn js browser python) to skip steps while iterating locally.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
AUTOBAHN="$(cd "$ROOT/.." && pwd)/shared/tools/autobahn"

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export NO_COLOR=1
export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_ROOT_USER_ACTION=ignore
export npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false

START=$(date +%s)
FAILED=()
SKIP=" ${HERALD_TEST_SKIP:-} "

section() {
  printf '\n==== %s ====  (+%ss)\n' "$*" "$(($(date +%s) - START))"
}

skipped() {
  case "$SKIP" in *" $1 "*) echo "(skipped: HERALD_TEST_SKIP)"; return 0 ;; esac
  return 1
}

# Runs a command; records its name when it fails, and goes on.
check() {
  local name="$1"
  shift
  if ! "$@"; then
    echo "!!!! FAILED: $name" >&2
    FAILED+=("$name")
  fi
}

# A TCP port nobody listens on now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Whether something accepts TCP connections on 127.0.0.1:$1.
listening() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Waits (up to $2 seconds) for a listener on port $1.
wait_for_port() {
  local port="$1" deadline=$((SECONDS + $2))
  until listening "$port"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

ECHO_PID=""
cleanup() {
  if [ -n "$ECHO_PID" ]; then
    kill "$ECHO_PID" 2>/dev/null || true
    wait "$ECHO_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT

# ------------------------------------------------------------------------------------------
section "toolchain"
cargo --version
rustc --version
echo "node $(node --version), npm $(npm --version)"
python3 --version

# ------------------------------------------------------------------------------------------
section "services (Redis, NATS: installed when missing and we are root, started when not running)"
# The engine tests start their own redis-server (and redis-cli to make a Redis Cluster) /
# nats-server on free ports; a fresh machine gets Debian's packages here so that a missing
# install fails in CI, not for a user.
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
[ -x /usr/sbin/nats-server ] || command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing Debian's ${missing[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null) ||
      echo "could not install ${missing[*]}" >&2
  else
    echo "${missing[*]} not installed (run: sudo apt-get install -y ${missing[*]})" >&2
  fi
fi
if command -v redis-server >/dev/null 2>&1; then
  if listening 6379; then
    echo "redis: already running on 127.0.0.1:6379"
  else
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no >/dev/null
    wait_for_port 6379 10 && echo "redis: started on 127.0.0.1:6379" || echo "redis: did not start on 6379 (the tests start their own; this one only serves the README examples)"
  fi
else
  echo "!!!! FAILED: redis-server is not installed; the Redis engine tests need it (apt-get install redis-server redis-tools)" >&2
  FAILED+=("redis-server")
fi
NATS_SERVER="$(command -v nats-server || echo /usr/sbin/nats-server)"
if [ -x "$NATS_SERVER" ]; then
  if listening 4222; then
    echo "nats: already running on 127.0.0.1:4222"
  else
    mkdir -p /var/lib/nats-server 2>/dev/null || true
    start-stop-daemon --start --oknodo --background --exec "$NATS_SERVER" -- \
      -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server || true
    wait_for_port 4222 10 && echo "nats: started on 127.0.0.1:4222" || echo "nats: did not start on 4222 (the tests start their own; this one only serves the README examples)"
  fi
else
  echo "!!!! FAILED: nats-server is not installed; the NATS engine tests need it (apt-get install nats-server)" >&2
  FAILED+=("nats-server")
fi

# ------------------------------------------------------------------------------------------
section "install test dependencies (npm ci in tests/js and tests/browser, pip install -r tests/python/requirements.txt, chromium, make/gcc, openssl)"
(cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
if [ ! -x /usr/bin/chromium ] && ! skipped browser; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing Debian's chromium for the browser tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ||
      echo "could not install chromium: the browser tests will fail" >&2
  else
    echo "chromium is not installed (run: sudo apt-get install -y chromium): the browser tests will fail" >&2
  fi
fi
python3 -m pip install --quiet -r tests/python/requirements.txt
# The herald binary links jemalloc, which tikv-jemalloc-sys builds from C with make and cc.
if ! command -v make >/dev/null 2>&1 || ! command -v cc >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing make and gcc (jemalloc is built from source)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq make gcc >/dev/null) ||
      echo "could not install make and gcc: building herald will fail" >&2
  else
    echo "make or cc is missing (run: sudo apt-get install -y make gcc): building herald will fail" >&2
  fi
fi
# The TLS tests (crates/herald/tests/tls.rs, tests/js/tls.test.mjs) make their certificates
# with the openssl command.
if ! command -v openssl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing openssl (the TLS tests make their certificates with it)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null) ||
      echo "could not install openssl: the TLS tests will fail" >&2
  else
    echo "openssl is missing (run: sudo apt-get install -y openssl): the TLS tests will fail" >&2
  fi
fi

# ------------------------------------------------------------------------------------------
section "lint: cargo fmt --check, cargo clippy -D warnings"
if ! skipped lint; then
  check "cargo fmt" cargo fmt --all -- --check --color never
  check "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
fi

# ------------------------------------------------------------------------------------------
section "cargo test --workspace"
if ! skipped test; then
  check "cargo test" cargo test --workspace
fi

# ------------------------------------------------------------------------------------------
section "build: herald and the echo example (release)"
BUILT=1
if ! cargo build --release -p herald --bin herald --example echo; then
  echo "!!!! FAILED: cargo build --release (the steps that need the binaries are not run)" >&2
  FAILED+=("cargo build --release")
  BUILT=0
fi
HERALD_BIN="$ROOT/target/release/herald"
ECHO_BIN="$ROOT/target/release/examples/echo"
export HERALD_BIN

# Whether a step that needs the release binaries can run (never on stale binaries).
needs_build() {
  [ "$BUILT" = 1 ] && return 0
  echo "(not run: the release build failed)"
  FAILED+=("$1 (not run)")
  return 1
}

# ------------------------------------------------------------------------------------------
section "Autobahn conformance suite (fast profile) against the WebSocket layer"
if ! skipped autobahn && needs_build autobahn; then
  if [ ! -x "$AUTOBAHN" ] && [ ! -f "$AUTOBAHN" ]; then
    echo "autobahn tool not found at $AUTOBAHN" >&2
    FAILED+=("autobahn")
  else
    PORT="$(free_port)"
    ECHO_LOG="$(mktemp "${TMPDIR:-/tmp}/herald-echo.XXXXXX.log")"
    "$ECHO_BIN" "127.0.0.1:$PORT" >"$ECHO_LOG" 2>&1 &
    ECHO_PID=$!
    if wait_for_port "$PORT" 20; then
      AUTOBAHN_OUT="$(mktemp -d "${TMPDIR:-/tmp}/herald-autobahn.XXXXXX")"
      if bash "$AUTOBAHN" "ws://127.0.0.1:$PORT" --fast --out "$AUTOBAHN_OUT"; then
        rm -rf "$AUTOBAHN_OUT"
      else
        echo "!!!! FAILED: autobahn (report kept in $AUTOBAHN_OUT)" >&2
        FAILED+=("autobahn")
      fi
    else
      echo "the echo server did not listen on port $PORT:" >&2
      tail -n 20 "$ECHO_LOG" >&2
      FAILED+=("autobahn")
    fi
    cleanup
    ECHO_PID=""
    rm -f "$ECHO_LOG"
  fi
fi

# ------------------------------------------------------------------------------------------
section "JavaScript: the centrifuge SDK under Node (tests/js, HERALD_BIN=$HERALD_BIN)"
if ! skipped js && needs_build "js tests"; then
  check "js tests" bash -c 'cd tests/js && npm test --silent'
fi

# ------------------------------------------------------------------------------------------
section "Browser: the chat app and the admin UI in headless Chromium (tests/browser)"
if ! skipped browser && needs_build "browser tests"; then
  # One retry, said loudly: polish.test.mjs failed once in four runs on a loaded 2-core machine
  # (bob's page showed none of alice's private messages); until that is understood, a second
  # failure in a row fails the step, and a first one is reported, not hidden.
  if ! bash -c 'cd tests/browser && npm test --silent'; then
    echo "!!!! browser tests failed once; running them again (a known flake under investigation)" >&2
    check "browser tests" bash -c 'cd tests/browser && npm test --silent'
  fi
  echo "screenshots: $ROOT/target/browser-artifacts/"
fi

# ------------------------------------------------------------------------------------------
section "Python: the cent server API client, and bench/write-schedule.py (tests/python)"
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "earlier failures: ${FAILED[*]}" >&2
fi
if ! skipped python && needs_build "python tests"; then
  check "python tests" python3 -m pytest tests/python -q -p no:cacheprovider
fi

ELAPSED=$(($(date +%s) - START))
if [ ${#FAILED[@]} -gt 0 ]; then
  printf '\nscripts/test.sh: FAILED after %ss: %s\n' "$ELAPSED" "${FAILED[*]}" >&2
  exit 1
fi
# Success: the last line printed is pytest's summary.
