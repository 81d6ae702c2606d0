#!/usr/bin/env bash
# make bench: throughput through real Traefik with and without the plugin (same run), then the
# in-guest micro benchmarks. Arguments are passed to the bench binary (e.g. --secs 3 --reps 5).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target/bench
cargo run -q --locked -p oidc-guard-testhost --bin bench -- "$@" | tee target/bench/traefik.md
