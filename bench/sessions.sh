#!/usr/bin/env bash
# Issue-4 measurements on SQLite, against 127.0.0.1 only (needs wrk):
#   1. wrong password vs unknown user: latency of each, one connection, 10 s
#   2. password logins/s
#   3. refresh grants/s
#   4. introspections/s
#   5. client_credentials p99 while a login flood saturates the hashing pool
# Usage: bench/sessions.sh [seconds=15]   (SECTIONS=timing,logins,refresh,introspect,flood to pick)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-15}"
SECTIONS="${SECTIONS:-timing,logins,refresh,introspect,flood}"
want() { [[ ",$SECTIONS," == *",$1,"* ]]; }
PORT="${PORT:-18481}"
URL="http://127.0.0.1:$PORT"

# AUTH_SERVER_BIN: measure another build (e.g. the previous commit's) with the same script.
if [[ -z "${AUTH_SERVER_BIN:-}" ]]; then cargo build --release -q -p auth-server; fi
BIN="${AUTH_SERVER_BIN:-$PWD/target/release/auth-server}"
WORK="$(mktemp -d)"
trap 'kill "$SERVER" 2>/dev/null || true; kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
export DATABASE_URL="sqlite:$WORK/auth.db" AUTH_SECRETS="$(head -c 32 /dev/urandom | base64)" RUST_LOG=warn
# Lock-outs off for the measurement: the timing runs repeat one wrong password thousands of times.
export LOGIN_MAX_FAILURES=1000000000 LOGIN_MAX_FAILURES_PER_ADDRESS=1000000000

"$BIN" scopes create a >/dev/null
"$BIN" scopes create oauth:introspect >/dev/null
CREDS="$("$BIN" clients create --name bench --scopes "a oauth:introspect" --grant password --grant client_credentials --json)"
export CLIENT_ID="$(sed -n 's/.*"client_id": "\(.*\)".*/\1/p' <<<"$CREDS")"
export CLIENT_SECRET="$(sed -n 's/.*"client_secret": "\(.*\)".*/\1/p' <<<"$CREDS")"
echo "correct horse battery staple" | "$BIN" users create --email bench@example.com --permissions a >/dev/null

"$BIN" serve --bind "127.0.0.1:$PORT" &
SERVER=$!
for _ in $(seq 1 50); do curl -sf "$URL/healthz" >/dev/null && break; sleep 0.1; done

run() { # name, connections, duration, script, [url path]
  echo "== $1"
  wrk -t1 -c"$2" -d"$3" --latency -s "bench/$4" "$URL${5:-/oauth/token}" | grep -E "Latency|50%|90%|99%|Requests/sec|Non-2xx|requests in"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
# Interleaved, twice each, so drift in machine load hits both cases alike.
want timing && for round in 1 2; do
  USERNAME=bench@example.com PASSWORD="wrong password!" run "wrong password, round $round (1 connection)" 1 8s password.lua
  USERNAME=nobody@example.com PASSWORD="wrong password!" run "unknown user, round $round (1 connection)" 1 8s password.lua
done
want logins && USERNAME=bench@example.com PASSWORD="correct horse battery staple" run "password logins" 4 "${SECS}s" password.lua

if want refresh; then
: > "$WORK/refresh_tokens"
for _ in $(seq 1 48); do  # 3 per connection: wrk builds two requests per connection at start
  curl -s -w '\n' -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=password -d username=bench@example.com \
    --data-urlencode "password=correct horse battery staple" "$URL/oauth/token" \
    | sed -n 's/.*"refresh_token":"\([^"]*\)".*/\1/p' >> "$WORK/refresh_tokens"
done
echo "refresh tokens in the pool: $(wc -l < "$WORK/refresh_tokens")"
REFRESH_TOKENS_FILE="$WORK/refresh_tokens" run "refresh grants (16 connections)" 16 "${SECS}s" refresh.lua
fi

export ACCESS_TOKEN="$(curl -s -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=client_credentials "$URL/oauth/token" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')"
want introspect && run "introspections (32 connections)" 32 "${SECS}s" introspect.lua /oauth/introspect
want flood || exit 0

run "client_credentials alone (8 connections)" 8 "${SECS}s" client_credentials.lua
echo "== login flood (16 connections) in the background, then client_credentials beside it"
USERNAME=bench@example.com PASSWORD="correct horse battery staple" \
  wrk -t1 -c16 -d"$((SECS + 6))s" -s bench/password.lua "$URL/oauth/token" > "$WORK/flood.txt" &
FLOOD=$!
sleep 3
run "client_credentials during the login flood (8 connections)" 8 "${SECS}s" client_credentials.lua
wait "$FLOOD" || true
echo "== the login flood itself"
grep -E "Requests/sec|Non-2xx|requests in" "$WORK/flood.txt"
