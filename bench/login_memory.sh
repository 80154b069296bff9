#!/usr/bin/env bash
# Memory of `auth-server serve` under a password-login flood, on SQLite, 127.0.0.1 only (needs
# wrk and python3). Records VmRSS/VmHWM (/proc/PID/status), the thread count, the threads named
# argon2-* and the glibc malloc arena heaps (64 MiB-aligned anonymous heap mappings in
# /proc/PID/maps) idle, during a wrk password-login flood at 4 and then 64 connections, and
# SETTLE seconds after each flood.
# Usage: bench/login_memory.sh [seconds=5]  (PASSWORD_HASH_THREADS, MALLOC_ARENA_MAX pass through;
#        AUTH_SERVER_BIN=path measures that binary instead of building this tree's release one)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-5}"
SETTLE="${SETTLE:-5}"

if [[ -z "${AUTH_SERVER_BIN:-}" ]]; then cargo build --release -q -p auth-server; fi
BIN="${AUTH_SERVER_BIN:-$PWD/target/release/auth-server}"
WORK="$(mktemp -d)"
SERVER=""
trap '[[ -n "$SERVER" ]] && kill "$SERVER" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
export DATABASE_URL="sqlite:$WORK/auth.db" AUTH_SECRETS="$(head -c 32 /dev/urandom | base64)" RUST_LOG=warn
# Lock-outs off: the flood repeats one login thousands of times.
export LOGIN_MAX_FAILURES=1000000000 LOGIN_MAX_FAILURES_PER_ADDRESS=1000000000
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
URL="http://127.0.0.1:$PORT"

"$BIN" scopes create a >/dev/null
CREDS="$("$BIN" clients create --name bench --scopes a --grant password --json)"
export CLIENT_ID="$(sed -n 's/.*"client_id": "\(.*\)".*/\1/p' <<<"$CREDS")"
export CLIENT_SECRET="$(sed -n 's/.*"client_secret": "\(.*\)".*/\1/p' <<<"$CREDS")"
echo "correct horse battery staple" | "$BIN" users create --email bench@example.com --permissions a >/dev/null
export USERNAME=bench@example.com PASSWORD="correct horse battery staple"

"$BIN" serve --bind "127.0.0.1:$PORT" &
SERVER=$!
for _ in $(seq 1 100); do curl -sf "$URL/healthz" >/dev/null && break; sleep 0.1; done

# One sample: "rss_mb hwm_mb threads argon2_threads arenas".
sample() {
  python3 - "$SERVER" <<'EOF'
import glob, sys
pid = sys.argv[1]
status = dict(l.split(":", 1) for l in open(f"/proc/{pid}/status"))
kb = lambda k: int(status[k].split()[0])
argon2 = 0
for comm in glob.glob(f"/proc/{pid}/task/*/comm"):
    try:
        argon2 += open(comm).read().startswith("argon2-")
    except OSError:
        pass
# A glibc thread arena is a heap reserved as one 64 MiB-aligned 64 MiB anonymous mapping
# (rw-p for the part in use, ---p for the rest).
HEAP = 64 << 20
maps = [l.split() for l in open(f"/proc/{pid}/maps")]
arenas = 0
for i, m in enumerate(maps):
    start, end = (int(x, 16) for x in m[0].split("-"))
    if len(m) > 5 or start % HEAP or m[1] != "rw-p":
        continue
    if end - start == HEAP:
        arenas += 1
    elif i + 1 < len(maps):
        n = maps[i + 1]
        nstart, nend = (int(x, 16) for x in n[0].split("-"))
        if len(n) == 5 and n[1] == "---p" and nstart == end and nend - start == HEAP:
            arenas += 1
print(f"{kb('VmRSS') / 1024:.0f} {kb('VmHWM') / 1024:.0f} {kb('Threads') if 'Threads' in status else 0} {argon2} {arenas}")
EOF
}
row() { # phase, sample, [logins/s, non-2xx]
  read -r rss hwm threads argon2 arenas <<<"$2"
  printf "| %s | %s MB | %s MB | %s | %s | %s | %s |\n" "$1" "$rss" "$hwm" "$threads" "$argon2" "$arenas" "${3:-}"
}
flood() { # connections: runs wrk for SECS, samples every 0.5 s, prints the row of the peak
  wrk -t1 -c"$1" -d"${SECS}s" -s bench/password.lua "$URL/oauth/token" > "$WORK/wrk.txt" &
  local wrk=$! peak="0 0 0 0 0" now
  while kill -0 "$wrk" 2>/dev/null; do
    now="$(sample)"
    if (( ${now%% *} > ${peak%% *} )); then peak="$now"; fi
    sleep 0.5
  done
  wait "$wrk" || true
  local rate non2xx
  rate="$(sed -n 's/Requests\/sec: *\([0-9.]*\)/\1/p' "$WORK/wrk.txt")"
  non2xx="$(sed -n 's/.*Non-2xx or 3xx responses: *\([0-9]*\)/\1/p' "$WORK/wrk.txt")"
  row "during login flood, $1 connections (peak)" "$peak" "${rate:-?} logins/s, ${non2xx:-0} non-2xx"
  sleep "$SETTLE"
  row "${SETTLE} s after the $1-connection flood" "$(sample)"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "PASSWORD_HASH_THREADS=${PASSWORD_HASH_THREADS:-default} MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-default}, ${SECS} s floods"
echo
echo "| phase | VmRSS | VmHWM | threads | argon2-* threads | malloc arenas | wrk |"
echo "|---|---|---|---|---|---|---|"
row "idle" "$(sample)"
flood 4
flood 64
