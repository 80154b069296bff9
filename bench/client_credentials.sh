#!/usr/bin/env bash
# Load test of POST /oauth/token (client_credentials) on SQLite, against 127.0.0.1 only.
# Usage: bench/client_credentials.sh [duration=20s] [connections=64]
# Needs wrk (apt-get install wrk). Prints wrk's report with latency percentiles.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-20s}"
CONNECTIONS="${2:-64}"
PORT="${PORT:-18480}"

# AUTH_SERVER_BIN: measure another build (e.g. the previous commit's) with the same script.
if [[ -z "${AUTH_SERVER_BIN:-}" ]]; then cargo build --release -q -p auth-server; fi
BIN="${AUTH_SERVER_BIN:-$PWD/target/release/auth-server}"
WORK="$(mktemp -d)"
trap 'kill "$SERVER" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
export DATABASE_URL="sqlite:$WORK/auth.db" AUTH_SECRETS="$(head -c 32 /dev/urandom | base64)" RUST_LOG=warn

"$BIN" scopes create transcriptions:write >/dev/null
CREDS="$("$BIN" clients create --name bench --scopes transcriptions:write --json)"
export CLIENT_ID="$(sed -n 's/.*"client_id": "\(.*\)".*/\1/p' <<<"$CREDS")"
export CLIENT_SECRET="$(sed -n 's/.*"client_secret": "\(.*\)".*/\1/p' <<<"$CREDS")"

"$BIN" serve --bind "127.0.0.1:$PORT" &
SERVER=$!
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
curl -sf -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=client_credentials "http://127.0.0.1:$PORT/oauth/token" >/dev/null

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
wrk -t1 -c10 -d3s -s bench/client_credentials.lua "http://127.0.0.1:$PORT/oauth/token" >/dev/null  # warm-up
wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/client_credentials.lua "http://127.0.0.1:$PORT/oauth/token"
