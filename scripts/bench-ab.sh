#!/usr/bin/env bash
# A/B two keycard builds through this machine's noise: the same workload
# against each binary in turn, ROUNDS times, each on a fresh data dir with
# the bench fixture, reporting the server's CPU per request (from /proc,
# via keycard-loadgen --server-pid). Identical runs here differ by ±20% in
# req/s from one minute to the next; alternating builds and comparing CPU
# µs per request is what separated real changes from drift (session 12).
#
#   scripts/bench-ab.sh OLD_BIN NEW_BIN [WORKLOAD] [CONC] [SECONDS] [ROUNDS]
#   (defaults: get-object 16 5 3; LOADGEN_BIN defaults to
#   target/release/keycard-loadgen; needs .venv with boto3, see bench.sh)
#
# Output: one line per run: label, req/s, server CPU µs/req, p99 µs, the
# generator's CPU µs/req, the share of the machine other processes used, and
# the server's RSS after.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
[ $# -ge 2 ] || { sed -n 2,14p "$0" >&2; exit 2; }
A=$1 B=$2 W=${3:-get-object} C=${4:-16} D=${5:-5} N=${6:-3}
LG=${LOADGEN_BIN:-$REPO/target/release/keycard-loadgen}
PY=$REPO/.venv/bin/python
eval "$(sed -n '/^fixture() {/,/^}/p' scripts/bench.sh)"

run() { # label binary
    local work port kp ak sk fix uak usk out rss
    work=$(mktemp -d)
    port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$2" serve --listen "127.0.0.1:$port" --data-dir "$work/d" >"$work/log" 2>&1 &
    kp=$!
    for _ in $(seq 600); do [ -s "$work/d/credentials" ] && break; sleep 0.1; done
    sleep 0.5
    ak=$(awk -F' = ' '/^aws_access_key_id/ {print $2}' "$work/d/credentials")
    sk=$(awk -F' = ' '/^aws_secret_access_key/ {print $2}' "$work/d/credentials")
    fix=$(fixture "http://127.0.0.1:$port" "$ak" "$sk")
    uak=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["access_key"])' "$fix")
    usk=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["secret_key"])' "$fix")
    out=$("$LG" --endpoint "http://127.0.0.1:$port" --access-key "$uak" --secret-key "$usk" \
        --target keycard --workload "$W" --bucket bench-bucket --key k --role-name bench-role \
        --concurrency "$C" --duration "$D" --warmup 1 --server-pid "$kp" 2>/dev/null | tail -1)
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$kp/status")
    kill "$kp"; wait "$kp" 2>/dev/null || true
    rm -rf "$work"
    "$PY" - "$1" "$out" "$rss" <<'PYEOF'
import json, sys
j = json.loads(sys.argv[2])
print(f"{sys.argv[1]:4} {j['rps']:>9} req/s  {j['server_cpu_us_per_req']:>6} µs/req  "
      f"p99 {j['p99_us']:>6} µs  loadgen {j['loadgen_cpu_us_per_req']:>5} µs/req  "
      f"other {j['other_cpu_pct']:>4}%  rss {int(sys.argv[3]) / 1024:.1f} MB")
PYEOF
}

echo "# $W, $C connections, ${D} s per run, $N rounds; A=$A B=$B"
for _ in $(seq "$N"); do
    run A "$A"
    run B "$B"
done
