#!/usr/bin/env bash
# Instructions per request: keycard under valgrind's callgrind, loaded at a
# fixed rate by keycard-loadgen, counters zeroed after a warm-up and dumped
# after the measured window. Unlike requests/s or CPU time on a shared
# machine (±20% between identical runs here), the count repeats within
# about 0.5%, so it compares two builds of the request path.
#
#   scripts/bench-instructions.sh [WORKLOAD] [RATE] [SECONDS]
#   (defaults: get-object 100 10; KEYCARD_BIN / LOADGEN_BIN override the
#   binaries, default target/release/)
#
# Caveats: it counts user-space instructions only (no kernel, no cache
# misses), and under valgrind the sha2 crate falls back to its software
# SHA-256, so SigV4 weighs about 25% of the count where on the real CPU
# (SHA extensions) it is about 3%. At a low rate every request is its own
# audit group, so the count is a per-request upper bound.
# Needs valgrind (Debian package) and .venv with boto3 (scripts/bench.sh
# sets both up).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
W=${1:-get-object} RATE=${2:-100} D=${3:-10}
BIN=${KEYCARD_BIN:-$REPO/target/release/keycard}
LG=${LOADGEN_BIN:-$REPO/target/release/keycard-loadgen}
PY=$REPO/.venv/bin/python
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 2; }
WORK=$(mktemp -d)
KP=
cleanup() { [ -n "$KP" ] && kill "$KP" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out.%p" "$BIN" serve \
    --listen "127.0.0.1:$PORT" --data-dir "$WORK/d" >"$WORK/log" 2>&1 &
KP=$!
for _ in $(seq 1200); do [ -s "$WORK/d/credentials" ] && break; sleep 0.1; done
sleep 1
AK=$(awk -F' = ' '/^aws_access_key_id/ {print $2}' "$WORK/d/credentials")
SK=$(awk -F' = ' '/^aws_secret_access_key/ {print $2}' "$WORK/d/credentials")
# The same fixture as scripts/bench.sh (bucket, 1 KiB object, role, user).
eval "$(sed -n '/^fixture() {/,/^}/p' scripts/bench.sh)"
FIX=$(fixture "http://127.0.0.1:$PORT" "$AK" "$SK")
UAK=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["access_key"])' "$FIX")
USK=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["secret_key"])' "$FIX")
load() {
    "$LG" --endpoint "http://127.0.0.1:$PORT" --access-key "$UAK" --secret-key "$USK" \
        --target keycard --workload "$W" --bucket bench-bucket --key k --role-name bench-role \
        --concurrency 4 --duration "$1" --warmup 0 --rate "$RATE" 2>/dev/null
}
load 3 >/dev/null
sleep 1
callgrind_control -z "$KP" >/dev/null 2>&1
OUT=$(load "$D")
sleep 0.5
callgrind_control -d "$KP" >/dev/null 2>&1
sleep 1
N=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1].strip().splitlines()[-1])["requests"])' "$OUT")
F=$(ls -t "$WORK"/cg.out.*.1 | head -1)
IR=$(callgrind_annotate "$F" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1; exit}')
[ -n "${KEEP_PROFILE:-}" ] && cp "$F" "$KEEP_PROFILE"
echo "{\"workload\":\"$W\",\"requests\":$N,\"instructions\":$IR,\"instructions_per_request\":$((IR / N))}"
