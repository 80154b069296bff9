#!/usr/bin/env bash
# Start-up time and idle memory of the one-process stack (release build, SQLite, embedded
# queue). Start-up = from exec until the welcome is printed and both /healthz answer, on a first start (fresh data: key
# generation, migrations, demo client and user with an argon2id hash) and on a restart.
# Idle RSS is read from /proc after 10 s without traffic. Usage: bench/stack_startup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p stack
BIN="$PWD/target/release/stack"
WORK="$(mktemp -d)"
trap 'kill $PID 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
export AUTH_BIND=127.0.0.1:18580 API_BIND=127.0.0.1:18581 DATA_DIR="$WORK/data" KEYS_DIR="$WORK/keys" RUST_LOG=warn

PID=""
start_and_wait() {  # sets PID and READY_MS
    local start end
    start=$(date +%s%N)
    "$BIN" >"$WORK/out.txt" 2>"$WORK/err.txt" &
    PID=$!
    # Ready: the welcome (printed once every part runs) is out and both /healthz answer.
    until grep -q '^4\.' "$WORK/out.txt" && curl -sf -o /dev/null "http://$AUTH_BIND/healthz" \
        && curl -sf -o /dev/null "http://$API_BIND/healthz"; do
        sleep 0.005
    done
    end=$(date +%s%N)
    READY_MS=$(( (end - start) / 1000000 ))
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
start_and_wait
echo "first start: $READY_MS ms to ready"
sleep 10
echo "idle RSS after first start: $(awk '/VmRSS/ {print $2, $3}' /proc/$PID/status)"
kill -INT $PID; wait $PID || true
for i in 1 2 3; do
    start_and_wait
    echo "restart $i: $READY_MS ms to ready"
    sleep 10
    echo "idle RSS after restart $i: $(awk '/VmRSS/ {print $2, $3}' /proc/$PID/status)"
    kill -INT $PID; wait $PID || true
done
