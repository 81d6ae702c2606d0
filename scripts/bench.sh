#!/usr/bin/env bash
# make bench: throughput through real Traefik with and without the plugin (same run, ratios to the
# no-middleware route), then the in-guest micro benchmarks in the wasmtime host. Arguments are
# passed to the Traefik bench binary (e.g. --secs 3 --reps 5 --only bearer,session).
# Results are also written to target/bench/.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target/bench
export OIDC_GUARD_WASM="$PWD/dist/oidc-guard/plugin.wasm"
export OIDC_GUARD_BRIDGE_WASM="$PWD/dist/oidc-guard-bridge.wasm"

case "${1:-}" in
  -h|--help) exec cargo run -q --locked -p oidc-guard-testhost --bin bench -- --help ;;
esac

echo "# Real Traefik 3.7.15 on 127.0.0.1"
cargo run -q --locked -p oidc-guard-testhost --bin bench -- "$@" | tee target/bench/traefik.md

echo
echo "# Native cost of the plugin's hot paths (whole pipeline, fake exchange: the guest's own compute)"
cargo test -q --locked --release --lib auth::bearer::tests::hot_path_cost -- --ignored --nocapture 2>&1 \
  | grep 'µs/request' | tee target/bench/native.txt

echo
echo "# In-guest benchmarks (wasmtime/Cranelift: relative figures carry over to Traefik's wazero, absolute ones do not)"
{
  cargo test -q --locked -p oidc-guard-testhost --test bearer_wasm -- \
    --ignored --nocapture --exact bench_first_sight_and_cache_hit_per_algorithm
  OIDC_GUARD_WASM_OPS=1 cargo test -q --locked -p oidc-guard-testhost --test bearer_wasm -- \
    --ignored --nocapture --exact bench_wasm_ops_per_request
  STORE_BENCH_N=2000 STORE_BENCH_ITERS=200000 \
    cargo test -q --locked -p oidc-guard-testhost --test redis_wasm -- \
    --nocapture --exact in_guest_benchmarks
  cargo test -q --locked -p oidc-guard-testhost --test bearer_traefik -- \
    --ignored --nocapture --exact bench_one_time_token_round_trip
} 2>&1 | grep -v '^running \|^test result\|^$\|^\.*$' | tee target/bench/in-guest.txt
