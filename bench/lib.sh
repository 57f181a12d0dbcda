# Shared by the benchmark scripts (sourced, not run): the bench's credentials and the
# binaries to measure. Expects ROOT (the repository) to be set and the working directory to
# be ROOT.

# bench_credentials CONFIG: sets SECRET (the HMAC secret clients sign their tokens with) and
# API_KEY (the server API's key) from CONFIG, or exits saying what is missing.
bench_credentials() {
    SECRET=$(sed -n 's/.*"hmac_secret_key": *"\([^"]*\)".*/\1/p' "$1")
    API_KEY=$(sed -n 's/.*"key": *"\([^"]*\)".*/\1/p' "$1")
    [ -n "$SECRET" ] && [ -n "$API_KEY" ] ||
        { echo "$(basename "$0"): cannot read the secret and API key from $1" >&2; exit 1; }
}

# bench_binaries: sets HERALD and BENCH to HERALD_BIN / BENCH_BIN (prebuilt binaries, e.g. a
# saved baseline for a side-by-side run) or, unless both are given, builds both in release
# mode (CARGO_TARGET_DIR honoured) and uses those.
bench_binaries() {
    local target=${CARGO_TARGET_DIR:-$ROOT/target}
    case "$target" in /*) ;; *) target="$ROOT/$target" ;; esac
    if [ -z "${HERALD_BIN:-}" ] || [ -z "${BENCH_BIN:-}" ]; then
        echo "== building (release)" >&2
        cargo build --release -p herald --bin herald >&2
        cargo build --release -p herald-bench >&2
    fi
    HERALD=${HERALD_BIN:-$target/release/herald}
    BENCH=${BENCH_BIN:-$target/release/herald-bench}
}
