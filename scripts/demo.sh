#!/usr/bin/env bash
# make demo: real Traefik 3.7.15 with the freshly built plugin in front of a demo backend, logging
# in at a demo OpenID provider (npm oidc-provider). Everything on 127.0.0.1; Ctrl-C stops it all.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
run=target/demo
rm -rf "$run" && mkdir -p "$run/plugins-local/src/oidc-guard"
cp dist/oidc-guard/plugin.wasm dist/oidc-guard/.traefik.yml "$run/plugins-local/src/oidc-guard/"
cp examples/demo/traefik.yml examples/demo/dynamic.yml "$run/"

for port in 8080 8081 9090; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port on 127.0.0.1 is in use; stop what uses it and run make demo again" >&2
    exit 1
  fi
done

pids=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "demo stopped"
}
trap cleanup INT TERM EXIT

cargo build -q --locked --release -p oidc-guard-backend
"$root/target/release/echo-backend" 127.0.0.1:8081 >"$run/backend.log" 2>&1 &
pids+=($!)

IDP_LOGIN_PAGE=form \
IDP_POST_LOGOUT_REDIRECT_URIS=http://127.0.0.1:8080/public/,http://localhost:8080/public/ \
  node tests/idp/server.mjs --port 9090 >"$run/idp.log" 2>&1 &
pids+=($!)

# A fresh session key for this run (the plugin has no default key, ever).
export DEMO_SESSION_KEY
DEMO_SESSION_KEY=$(head -c 32 /dev/urandom | base64 | tr -d '\n')
(cd "$run" && exec "$root/.venv/bin/traefik" --configfile=traefik.yml >traefik.log 2>&1) &
pids+=($!)

for _ in $(seq 1 100); do
  code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/public/ || true)
  [ "$code" = 200 ] && break
  sleep 0.2
done
if [ "${code:-}" != 200 ]; then
  echo "the demo did not come up; logs are in $run/" >&2
  tail -n 20 "$run"/*.log >&2
  exit 1
fi

cat <<MSG

  oidc-guard demo is running.

  Open  http://127.0.0.1:8080/        (protected: you are sent to the demo provider to log in;
                                       pick alice, bob or large, any password)
        http://127.0.0.1:8080/public/ (excluded: no login)
        http://127.0.0.1:8080/oauth2/logout
        http://127.0.0.1:8080/.oidc-guard/health

  Logs: $run/traefik.log, $run/idp.log, $run/backend.log
  Stop: Ctrl-C

MSG
wait
