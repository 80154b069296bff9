#!/usr/bin/env bash
# Load test of POST /transcriptions (202, record + outbox entry + enqueue) on SQLite with the
# embedded queue, or with BACKEND=postgres-redis on a fresh PostgreSQL database and Redis key
# prefix (PostgreSQL at 127.0.0.1:5432 as postgres, Redis at 127.0.0.1:6379), 127.0.0.1 only.
# Usage: [BACKEND=sqlite|postgres-redis] bench/submissions.sh [duration=15s] [connections=32]
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
BACKEND="${BACKEND:-sqlite}"
RUN_ID="bench_$(date +%s)_$$"
cleanup() {
    kill $PIDS 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
    if [[ "$BACKEND" == postgres-redis ]]; then
        psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $RUN_ID" >/dev/null 2>&1 || true
        redis-cli -h 127.0.0.1 --scan --pattern "$RUN_ID:*" | xargs -r redis-cli -h 127.0.0.1 del >/dev/null || true
    fi
}
trap cleanup EXIT
export AUTH_SECRETS="$(head -c 32 /dev/urandom | base64)" RUST_LOG=warn
export JOB_SIGNING_KEY="bench-only-job-signing-key-0123456789abcdef"

export DATABASE_URL="sqlite:$WORK/auth.db"
"$AUTH" scopes create transcriptions:write >/dev/null
CREDS="$("$AUTH" clients create --name bench --scopes transcriptions:write --json)"
CLIENT_ID="$(sed -n 's/.*"client_id": "\(.*\)".*/\1/p' <<<"$CREDS")"
CLIENT_SECRET="$(sed -n 's/.*"client_secret": "\(.*\)".*/\1/p' <<<"$CREDS")"
"$AUTH" serve --bind "127.0.0.1:$AUTH_PORT" &
PIDS="$!"
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$AUTH_PORT/healthz" >/dev/null && break; sleep 0.1; done

if [[ "$BACKEND" == postgres-redis ]]; then
    psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $RUN_ID" >/dev/null
    API_ENV=(DATABASE_URL="postgres://postgres@127.0.0.1:5432/$RUN_ID"
             REDIS_URL="redis://127.0.0.1:6379" QUEUE_PREFIX="$RUN_ID")
else
    API_ENV=(DATABASE_URL="sqlite:$WORK/api.db" QUEUE_DATABASE_URL="sqlite:$WORK/queue.db")
fi
env "${API_ENV[@]}" AUTH_ISSUER="http://127.0.0.1:$AUTH_PORT" \
    "$API" serve --bind "127.0.0.1:$API_PORT" &
PIDS="$PIDS $!"
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$API_PORT/healthz" >/dev/null && break; sleep 0.1; done

TOKEN="$(curl -sf -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=client_credentials \
    "http://127.0.0.1:$AUTH_PORT/oauth/token" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')"
export TOKEN
curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"email":"bench@example.com","audio_url":"https://cdn.example.com/a.wav"}' \
    "http://127.0.0.1:$API_PORT/transcriptions"

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "== POST /transcriptions ($API, $BACKEND)"
wrk -t1 -c10 -d3s -s bench/submissions.lua "http://127.0.0.1:$API_PORT/transcriptions" >/dev/null  # warm-up
wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/submissions.lua \
    "http://127.0.0.1:$API_PORT/transcriptions"
