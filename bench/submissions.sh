#!/usr/bin/env bash
# Load test of POST /transcriptions (202, record + outbox entry + enqueue) on SQLite with the
# embedded queue, against 127.0.0.1 only.
# Usage: bench/submissions.sh [duration=15s] [connections=32]
# API_BIN / AUTH_SERVER_BIN: measure other builds (e.g. the previous commit's) with the same
# script; without them the release builds of this tree are used (built first).
# Needs wrk (apt-get install wrk). Prints wrk's report with latency percentiles.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-15s}"
CONNECTIONS="${2:-32}"
AUTH_PORT="${AUTH_PORT:-18492}"
API_PORT="${API_PORT:-18493}"

if [[ -z "${API_BIN:-}" || -z "${AUTH_SERVER_BIN:-}" ]]; then
    cargo build --release -q -p auth-server -p transcription-api
fi
AUTH="${AUTH_SERVER_BIN:-$PWD/target/release/auth-server}"
API="${API_BIN:-$PWD/target/release/transcription-api}"
WORK="$(mktemp -d)"
trap 'kill $PIDS 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
export KEYS_DIR="$WORK/keys" RUST_LOG=warn
export JOB_SIGNING_KEY="bench-only-job-signing-key-0123456789abcdef"

export DATABASE_URL="sqlite:$WORK/auth.db"
"$AUTH" scopes create transcriptions:write >/dev/null
CREDS="$("$AUTH" clients create --name bench --scopes transcriptions:write --json)"
CLIENT_ID="$(sed -n 's/.*"client_id": "\(.*\)".*/\1/p' <<<"$CREDS")"
CLIENT_SECRET="$(sed -n 's/.*"client_secret": "\(.*\)".*/\1/p' <<<"$CREDS")"
"$AUTH" serve --bind "127.0.0.1:$AUTH_PORT" &
PIDS="$!"
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$AUTH_PORT/healthz" >/dev/null && break; sleep 0.1; done

DATABASE_URL="sqlite:$WORK/api.db" QUEUE_DATABASE_URL="sqlite:$WORK/queue.db" \
    AUTH_ISSUER="http://127.0.0.1:$AUTH_PORT" "$API" serve --bind "127.0.0.1:$API_PORT" &
PIDS="$PIDS $!"
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$API_PORT/healthz" >/dev/null && break; sleep 0.1; done

TOKEN="$(curl -sf -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=client_credentials \
    "http://127.0.0.1:$AUTH_PORT/oauth/token" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')"
export TOKEN
curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"email":"bench@example.com","audio_url":"https://cdn.example.com/a.wav"}' \
    "http://127.0.0.1:$API_PORT/transcriptions"

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "== POST /transcriptions ($API)"
wrk -t1 -c10 -d3s -s bench/submissions.lua "http://127.0.0.1:$API_PORT/transcriptions" >/dev/null  # warm-up
wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/submissions.lua \
    "http://127.0.0.1:$API_PORT/transcriptions"
