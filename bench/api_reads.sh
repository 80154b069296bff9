#!/usr/bin/env bash
# Cost of token verification in transcription-api: requests/s of an authorized
# GET /transcriptions/{id} against the unauthenticated GET /healthz, same servers, same run.
# SQLite + embedded queue, 127.0.0.1 only. Usage: bench/api_reads.sh [duration=15s] [connections=32]
# Needs wrk (apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-15s}"
CONNECTIONS="${2:-32}"
AUTH_PORT="${AUTH_PORT:-18490}"
API_PORT="${API_PORT:-18491}"

cargo build --release -q -p auth-server -p transcription-api
AUTH="$PWD/target/release/auth-server"
API="$PWD/target/release/transcription-api"
WORK="$(mktemp -d)"
trap 'kill $PIDS 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
export AUTH_SECRETS="$(head -c 32 /dev/urandom | base64)" RUST_LOG=warn
export JOB_SIGNING_KEY="bench-only-job-signing-key-0123456789abcdef"

export DATABASE_URL="sqlite:$WORK/auth.db"
for scope in transcriptions:write transcriptions:read; do "$AUTH" scopes create "$scope" >/dev/null; done
CREDS="$("$AUTH" clients create --name bench --scopes transcriptions:write,transcriptions:read --json)"
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
ID="$(curl -sf -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"email":"bench@example.com","audio_url":"https://cdn.example.com/a.wav"}' \
    "http://127.0.0.1:$API_PORT/transcriptions" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')"
curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$API_PORT/transcriptions/$ID"

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
wrk -t1 -c10 -d3s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$API_PORT/transcriptions/$ID" >/dev/null
echo "== GET /healthz (no token)"
wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "http://127.0.0.1:$API_PORT/healthz"
echo "== GET /transcriptions/not-a-uuid (Bearer token; 404 before any storage: verification alone)"
wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -H "Authorization: Bearer $TOKEN" \
    "http://127.0.0.1:$API_PORT/transcriptions/not-a-uuid"
echo "== GET /transcriptions/$ID (Bearer token, transcriptions:read)"
wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -H "Authorization: Bearer $TOKEN" \
    "http://127.0.0.1:$API_PORT/transcriptions/$ID"
