#!/usr/bin/env bash
# Load benchmark: keycard vs moto_server on the same signed workloads.
#
#   ./scripts/bench.sh
#
# Builds release binaries (keycard, keycard-loadgen), makes sure .venv has
# moto[server] and boto3 (tests/requirements.txt), starts keycard on a free
# loopback port with a temp data dir, sets up the fixture with boto3 (bucket
# bench-bucket, 1 KiB object k, role bench-role, IAM user bench with an access
# key and an inline policy), runs keycard-loadgen for each workload at each
# concurrency, measures start-up time and idle RSS, then does the same against
# moto_server, prints a markdown report and writes it into docs/benchmarks.md
# (between the bench:begin/bench:end markers).
#
# Environment (all optional):
#   BENCH_DURATION=5          measured seconds per keycard run
#   BENCH_WARMUP=1            warm-up seconds per keycard run
#   BENCH_MOTO_DURATION=2     measured seconds per moto run
#   BENCH_MOTO_WARMUP=0.5     warm-up seconds per moto run
#   BENCH_CONCURRENCIES="1 16 64"
#   BENCH_WORKLOADS="get-object get-caller-identity get-role"
#   BENCH_STARTUP_RUNS=5      fresh start-ups to time
#   BENCH_PIN=1               pin server to CPU 0 and loadgen to CPU 1 (taskset)
#   BENCH_MOTO=1              0 skips moto
#   BENCH_WRITE_DOC=1         0 leaves docs/benchmarks.md alone
#   BENCH_SKIP_BUILD=0        1 uses the binaries already built
#   BENCH_CALIBRATE=1         also load GET /_keycard/health (harness ceiling)
#   BENCH_WAIT_IDLE=300       wait up to this many seconds for the machine to
#                             be quiet (< 10% CPU busy) before measuring
#   CARGO_TARGET_DIR          default: target-bench (kept apart from target/)
#
# All traffic goes to 127.0.0.1 and every run is bounded in time.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

DURATION=${BENCH_DURATION:-5}
WARMUP=${BENCH_WARMUP:-1}
MOTO_DURATION=${BENCH_MOTO_DURATION:-2}
MOTO_WARMUP=${BENCH_MOTO_WARMUP:-0.5}
CONCURRENCIES=${BENCH_CONCURRENCIES:-"1 16 64"}
WORKLOADS=${BENCH_WORKLOADS:-"get-object get-caller-identity get-role"}
STARTUP_RUNS=${BENCH_STARTUP_RUNS:-5}
PIN=${BENCH_PIN:-1}
RUN_MOTO=${BENCH_MOTO:-1}
WRITE_DOC=${BENCH_WRITE_DOC:-1}
SKIP_BUILD=${BENCH_SKIP_BUILD:-0}
WAIT_IDLE=${BENCH_WAIT_IDLE:-300}
CALIBRATE=${BENCH_CALIBRATE:-1}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target-bench}

KEYCARD_BIN=$CARGO_TARGET_DIR/release/keycard
LOADGEN_BIN=$CARGO_TARGET_DIR/release/keycard-loadgen
VENV=$REPO/.venv
PY=$VENV/bin/python

log() { printf '[bench] %s\n' "$*" >&2; }

# ---------------------------------------------------------------- build
if [ "$SKIP_BUILD" != 1 ]; then
    log "building release binaries (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    cargo build --release -p keycard -p keycard-loadgen >&2
fi
[ -x "$KEYCARD_BIN" ] && [ -x "$LOADGEN_BIN" ] || { log "missing $KEYCARD_BIN or $LOADGEN_BIN"; exit 1; }

# ---------------------------------------------------------------- python venv
if [ ! -x "$PY" ]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
fi
if ! "$PY" -c 'import boto3, moto, flask' 2>/dev/null || [ ! -x "$VENV/bin/moto_server" ]; then
    log "installing tests/requirements.txt (moto[server]==5.2.1, boto3, awscli) into $VENV"
    "$PY" -m pip install --quiet -r tests/requirements.txt >&2
fi
MOTO_VERSION=$("$PY" -c 'import moto; print(moto.__version__)')

# ---------------------------------------------------------------- pinning
SERVER_PIN=()
LOADGEN_PIN=()
SERVER_CPUS=""
NPROC=$(nproc)
if [ "$PIN" = 1 ] && command -v taskset >/dev/null && [ "$NPROC" -ge 2 ]; then
    SERVER_PIN=(taskset -c 0)
    LOADGEN_PIN=(taskset -c 1)
    SERVER_CPUS=0
    PINNING="server (keycard or moto_server) pinned to CPU 0, keycard-loadgen pinned to CPU 1 (taskset)"
else
    PINNING="no CPU pinning: server and load generator share all $NPROC CPUs"
fi
log "$PINNING"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/keycard-bench.XXXXXX")
RESULTS=$WORK/results.jsonl
: >"$RESULTS"
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do
        [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # port timeout_s
    "$PY" - "$1" "$2" <<'EOF'
import socket, sys, time
port, deadline = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)
EOF
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# Fixture: bucket, 1 KiB object, role, user + key + inline policy. Prints the
# user's key and a check of each workload (as that user) as JSON. A failing S3
# part is recorded, not fatal, so IAM and STS can still be measured.
fixture() { # endpoint access_key secret_key
    "$PY" - "$@" <<'EOF'
import json, sys
import boto3
from botocore.config import Config

endpoint, ak, sk = sys.argv[1:4]
kw = dict(endpoint_url=endpoint, aws_access_key_id=ak, aws_secret_access_key=sk,
          region_name="us-east-1",
          config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
s3 = boto3.client("s3", **kw)
iam = boto3.client("iam", **kw)
sts = boto3.client("sts", **kw)
account = sts.get_caller_identity()["Account"]

s3_setup = None
try:
    s3.create_bucket(Bucket="bench-bucket")
    s3.put_object(Bucket="bench-bucket", Key="k", Body=bytes(range(256)) * 4)  # 1 KiB
except Exception as e:  # noqa: BLE001  (S3 may not be served yet)
    s3_setup = f"setup failed: {type(e).__name__}: {e}"
trust = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
    "Action": "sts:AssumeRole"}]}
role = iam.create_role(RoleName="bench-role", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
iam.create_user(UserName="bench")
policy = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bench-bucket/*"},
    {"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"},
    {"Effect": "Allow", "Action": "iam:GetRole", "Resource": role["Arn"]},
]}
iam.put_user_policy(UserName="bench", PolicyName="bench", PolicyDocument=json.dumps(policy))
key = iam.create_access_key(UserName="bench")["AccessKey"]

# Check the user's key works for every workload before loading it.
ukw = dict(kw, aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
checks = {}
try:
    if s3_setup:
        raise RuntimeError(s3_setup)
    body = boto3.client("s3", **ukw).get_object(Bucket="bench-bucket", Key="k")["Body"].read()
    checks["get-object"] = "ok" if len(body) == 1024 else f"bad length {len(body)}"
except Exception as e:  # noqa: BLE001
    checks["get-object"] = f"{type(e).__name__}: {e}"
try:
    boto3.client("sts", **ukw).get_caller_identity()
    checks["get-caller-identity"] = "ok"
except Exception as e:  # noqa: BLE001
    checks["get-caller-identity"] = f"{type(e).__name__}: {e}"
try:
    boto3.client("iam", **ukw).get_role(RoleName="bench-role")
    checks["get-role"] = "ok"
except Exception as e:  # noqa: BLE001
    checks["get-role"] = f"{type(e).__name__}: {e}"
print(json.dumps({"access_key": key["AccessKeyId"], "secret_key": key["SecretAccessKey"], "checks": checks}))
EOF
}

run_loads() { # target endpoint access_key secret_key duration warmup server_pid
    local target=$1 endpoint=$2 ak=$3 sk=$4 dur=$5 warm=$6 spid=$7
    for w in $WORKLOADS; do
        for c in $CONCURRENCIES; do
            log "$target $w c=$c (${dur}s + ${warm}s warm-up)"
            "${LOADGEN_PIN[@]}" "$LOADGEN_BIN" --endpoint "$endpoint" \
                --access-key "$ak" --secret-key "$sk" --target "$target" \
                --workload "$w" --bucket bench-bucket --key k --role-name bench-role \
                --concurrency "$c" --duration "$dur" --warmup "$warm" --server-pid "$spid" \
                2> >(sed "s/^/[loadgen] /" >&2) | tee -a "$RESULTS" >&2
        done
    done
}

# Busy share of all CPUs over the next 2 s, in percent.
cpu_busy_pct() {
    local a b
    a=($(head -1 /proc/stat)); sleep 2; b=($(head -1 /proc/stat))
    local tot=0 idle i
    for i in 1 2 3 4 5 6 7 8; do tot=$((tot + b[i] - a[i])); done
    idle=$((b[4] - a[4] + b[5] - a[5]))
    echo $(( tot > 0 ? (100 * (tot - idle)) / tot : 0 ))
}
log "waiting up to ${WAIT_IDLE}s for a quiet machine (< 10% CPU busy)"
WAIT_START=$SECONDS
BG_BUSY=$(cpu_busy_pct)
while [ "$BG_BUSY" -ge 10 ] && [ $((SECONDS - WAIT_START)) -lt "$WAIT_IDLE" ]; do
    BG_BUSY=$(cpu_busy_pct)
done
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
log "background CPU busy before the run: ${BG_BUSY}% (load average $LOADAVG)"

# ---------------------------------------------------------------- keycard
KC_PORT=$(free_port)
KC_DATA=$WORK/keycard-data
KC_LOG=$WORK/keycard.log
log "starting keycard on 127.0.0.1:$KC_PORT"
"${SERVER_PIN[@]}" "$KEYCARD_BIN" serve --listen "127.0.0.1:$KC_PORT" --data-dir "$KC_DATA" \
    >"$KC_LOG" 2>&1 </dev/null &
KC_PID=$!
PIDS+=("$KC_PID")
wait_port "$KC_PORT" 20 || { cat "$KC_LOG" >&2; exit 1; }
for _ in $(seq 100); do [ -s "$KC_DATA/credentials" ] && break; sleep 0.05; done
ROOT_AK=$(awk -F' = ' '/^aws_access_key_id/ {print $2}' "$KC_DATA/credentials")
ROOT_SK=$(awk -F' = ' '/^aws_secret_access_key/ {print $2}' "$KC_DATA/credentials")
KC_ENDPOINT=http://127.0.0.1:$KC_PORT

log "fixture on keycard"
KC_FIX=$(fixture "$KC_ENDPOINT" "$ROOT_AK" "$ROOT_SK") || {
    log "fixture failed on keycard; keycard log:"; tail -20 "$KC_LOG" >&2; exit 1; }
KC_AK=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["access_key"])' "$KC_FIX")
KC_SK=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["secret_key"])' "$KC_FIX")
KC_CHECKS=$("$PY" -c 'import json,sys; print(json.dumps(json.loads(sys.argv[1])["checks"]))' "$KC_FIX")
log "keycard fixture checks (as user bench): $KC_CHECKS"

KC_RSS_IDLE_FIXTURE=$(rss_kb "$KC_PID")
run_loads keycard "$KC_ENDPOINT" "$KC_AK" "$KC_SK" "$DURATION" "$WARMUP" "$KC_PID"
sleep 2
# Calibration: signed GET /_keycard/health (no authentication, policy or
# audit on the server side) shows what the generator and HTTP stack reach.
if [ "$CALIBRATE" = 1 ]; then
    WORKLOADS=health run_loads keycard "$KC_ENDPOINT" "$KC_AK" "$KC_SK" "$DURATION" "$WARMUP" "$KC_PID"
    sleep 2
fi
KC_RSS_AFTER=$(rss_kb "$KC_PID")
KC_HWM=$(awk '/^VmHWM:/ {print $2}' "/proc/$KC_PID/status")
kill "$KC_PID"; wait "$KC_PID" 2>/dev/null || true

# ---------------------------------------------------------------- start-up
log "start-up: $STARTUP_RUNS fresh data dirs"
STARTUP_ARGS=(startup --keycard-bin "$KEYCARD_BIN" --runs "$STARTUP_RUNS")
[ -n "$SERVER_CPUS" ] && STARTUP_ARGS+=(--server-cpus "$SERVER_CPUS")
STARTUP_JSON=$("${LOADGEN_PIN[@]}" "$LOADGEN_BIN" "${STARTUP_ARGS[@]}")
log "$STARTUP_JSON"

# ---------------------------------------------------------------- moto
MOTO_CHECKS="{}"
if [ "$RUN_MOTO" = 1 ]; then
    MOTO_PORT=$(free_port)
    MOTO_LOG=$WORK/moto.log
    log "starting moto_server $MOTO_VERSION on 127.0.0.1:$MOTO_PORT"
    "${SERVER_PIN[@]}" "$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$MOTO_LOG" 2>&1 </dev/null &
    MOTO_PID=$!
    PIDS+=("$MOTO_PID")
    wait_port "$MOTO_PORT" 60 || { cat "$MOTO_LOG" >&2; exit 1; }
    MOTO_ENDPOINT=http://127.0.0.1:$MOTO_PORT
    log "fixture on moto"
    MOTO_FIX=$(fixture "$MOTO_ENDPOINT" testing testing)
    MOTO_AK=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["access_key"])' "$MOTO_FIX")
    MOTO_SK=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["secret_key"])' "$MOTO_FIX")
    MOTO_CHECKS=$("$PY" -c 'import json,sys; print(json.dumps(json.loads(sys.argv[1])["checks"]))' "$MOTO_FIX")
    log "moto fixture checks: $MOTO_CHECKS"
    run_loads moto "$MOTO_ENDPOINT" "$MOTO_AK" "$MOTO_SK" "$MOTO_DURATION" "$MOTO_WARMUP" "$MOTO_PID"
    kill "$MOTO_PID"; wait "$MOTO_PID" 2>/dev/null || true
fi

# ---------------------------------------------------------------- report
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
MEM_TOTAL=$(awk '/^MemTotal:/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)
KC_VERSION=$("$KEYCARD_BIN" --version 2>/dev/null || echo keycard)
GIT_REV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$REPO" status --porcelain 2>/dev/null)" ]; then GIT_REV="$GIT_REV (with uncommitted changes)"; fi

REPORT=$WORK/report.md
"$PY" - "$RESULTS" >"$REPORT" <<EOF
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
startup = json.loads('''$STARTUP_JSON''')
kc_checks = json.loads('''$KC_CHECKS''')
moto_checks = json.loads('''$MOTO_CHECKS''')
rss_fixture_kb = int("$KC_RSS_IDLE_FIXTURE" or 0)
rss_after_kb = int("$KC_RSS_AFTER" or 0)
hwm_kb = int("$KC_HWM" or 0)
by = {(r["target"], r["workload"], r["concurrency"]): r for r in rows}
workloads = "$WORKLOADS".split()
concs = [int(c) for c in "$CONCURRENCIES".split()]

def ms(us): return f"{us/1000:.2f}"
def usable(r): return r is not None and r["requests"] > 0 and r["errors"] == 0

out = []
p = out.append
p("- Date: $(date -u '+%Y-%m-%d %H:%M UTC')")
p("- Machine: $NPROC CPUs ($CPU_MODEL), $MEM_TOTAL RAM, $(uname -sr)")
p("- Build: \`$KC_VERSION\`, git $GIT_REV, release profile; moto_server $MOTO_VERSION (moto[server], Python $("$PY" -c 'import platform; print(platform.python_version())'))")
p("- Command: \`./scripts/bench.sh\` (keycard: ${DURATION} s measured + ${WARMUP} s warm-up per cell; moto: ${MOTO_DURATION} s + ${MOTO_WARMUP} s)")
p("- Placement: $PINNING")
p("- Background: ${BG_BUSY}% of all CPUs busy just before the run (load average $LOADAVG); the 'other CPU' column below is what the rest of the machine used during each measured window")
p("- Load: closed loop, one keep-alive HTTP/1.1 connection per worker, every request SigV4-signed by aws-sigv4 (a worker signs once per second and resends that request for the rest of the second; the server verifies each) with the IAM user bench's access key (inline policy: s3:GetObject on bench-bucket/*, sts:GetCallerIdentity, iam:GetRole on bench-role). Latency: signing through last body byte, as seen by the client.")
p("")
p("| workload | conc. | keycard req/s | keycard p50 ms | keycard p99 ms | moto req/s | moto p50 ms | moto p99 ms | keycard / moto |")
p("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
pending = set()
for w in workloads:
    for c in concs:
        k = by.get(("keycard", w, c)); m = by.get(("moto", w, c))
        def cells(r):
            if r is None: return ["–"] * 3
            if not usable(r):
                return [f"errors {r['errors']}/{r['requests']}", "–", "–"]
            return [f"{r['rps']:,.0f}", ms(r["p50_us"]), ms(r["p99_us"])]
        kc, mc = cells(k), cells(m)
        if not usable(k): pending.add(w)
        ratio = f"{k['rps']/m['rps']:.0f}×" if usable(k) and usable(m) and m["rps"] > 0 else "–"
        p(f"| {w} | {c} | " + " | ".join(kc) + " | " + " | ".join(mc) + f" | {ratio} |")
p("")
p(f"Fixture checks as user bench (boto3): keycard {kc_checks}; moto {moto_checks}.")
p("")
p("Where the CPU went (per request, from /proc during each measured window; 'other CPU' is the share of all CPUs used by neither server nor generator):")
p("")
p("| workload | conc. | keycard CPU µs/req | keycard CPU % of one core | loadgen CPU µs/req | other CPU % | moto CPU µs/req | other CPU % (moto run) |")
p("|---|---:|---:|---:|---:|---:|---:|---:|")
def g(r, k, fmt="{:.0f}"):
    return fmt.format(r[k]) if r is not None and k in r else "–"
for w in workloads:
    for c in concs:
        k = by.get(("keycard", w, c)); m = by.get(("moto", w, c))
        p(f"| {w} | {c} | {g(k,'server_cpu_us_per_req')} | {g(k,'server_cpu_pct_of_one')} | {g(k,'loadgen_cpu_us_per_req')} | {g(k,'other_cpu_pct','{:.1f}')} | {g(m,'server_cpu_us_per_req')} | {g(m,'other_cpu_pct','{:.1f}')} |")
cal = [by.get(("keycard", "health", c)) for c in concs]
cal = [r for r in cal if r is not None]
if cal:
    p("")
    p("Harness ceiling: the same generator sending signed GET /_keycard/health, which keycard answers without authentication, policy or audit:")
    p("")
    p("| conc. | req/s | p50 ms | p99 ms | keycard CPU µs/req | loadgen CPU µs/req | other CPU % |")
    p("|---:|---:|---:|---:|---:|---:|---:|")
    for r in cal:
        p(f"| {r['concurrency']} | {r['rps']:,.0f} | {ms(r['p50_us'])} | {ms(r['p99_us'])} | {g(r,'server_cpu_us_per_req')} | {g(r,'loadgen_cpu_us_per_req')} | {g(r,'other_cpu_pct','{:.1f}')} |")
p("")
p("| start-up and memory | value |")
p("|---|---:|")
p(f"| spawn → first answered GET /_keycard/health, fresh data dir (median of {startup['runs']}) | {startup['startup_ms_median']:.1f} ms (max {startup['startup_ms_max']:.1f} ms) |")
p(f"| idle RSS {startup['idle_ms']} ms after start-up (median) | {startup['idle_rss_mb_median']:.1f} MB |")
p(f"| RSS after the fixture, before load | {rss_fixture_kb/1024:.1f} MB |")
p(f"| RSS idle 2 s after all keycard load runs (peak during load) | {rss_after_kb/1024:.1f} MB ({hwm_kb/1024:.1f} MB) |")
p("")
# Goals.
p("Goals (from the issue):")
go = [by.get(("keycard", "get-object", c)) for c in concs]
go = [r for r in go if usable(r)]
if go:
    best = max(go, key=lambda r: r["rps"])
    ok_both = [r for r in go if r["rps"] >= 20000 and r["p99_us"] < 5000]
    verdict = "met" if ok_both else "missed"
    # The cell that meets both when one does, else the fastest.
    shown = max(ok_both, key=lambda r: r["rps"]) if ok_both else best
    p(f"- ≥ 20,000 authorized GetObject/s with p99 < 5 ms: **{verdict}** — {'' if ok_both else 'best '}{shown['rps']:,.0f} req/s at concurrency {shown['concurrency']} (p99 {ms(shown['p99_us'])} ms)"
      + ("" if ok_both else f"; {best['rps']/20000*100:.0f}% of the throughput goal"))
    ratios = []
    for r in go:
        m = by.get(("moto", "get-object", r["concurrency"]))
        if usable(m) and m["rps"] > 0: ratios.append((r["rps"]/m["rps"], r["concurrency"]))
    if ratios:
        lo = min(ratios); hi = max(ratios)
        verdict = "met" if lo[0] >= 50 else ("met at some concurrencies" if hi[0] >= 50 else "missed")
        p(f"- 50× moto on GetObject: **{verdict}** — {lo[0]:.0f}× (c={lo[1]}) to {hi[0]:.0f}× (c={hi[1]})")
    else:
        p("- 50× moto on GetObject: not measured (moto run missing or failed)")
else:
    p("- ≥ 20,000 authorized GetObject/s with p99 < 5 ms: **pending** — GetObject did not succeed against this keycard build (see the error counts above)")
    p("- 50× moto on GetObject: **pending**")
sm = startup["startup_ms_median"]
p(f"- start-up to first answered request < 100 ms: **{'met' if sm < 100 else 'missed'}** — {sm:.1f} ms median" + ("" if sm < 100 else f", {sm-100:.1f} ms over"))
rm = startup["idle_rss_mb_median"]
p(f"- idle memory < 40 MB after start-up: **{'met' if rm < 40 else 'missed'}** — {rm:.1f} MB" + ("" if rm < 40 else f", {rm-40:.1f} MB over"))
ra = rss_after_kb / 1024
p(f"- idle memory < 40 MB after serving the load above: **{'met' if ra < 40 else 'missed'}** — {ra:.1f} MB 2 s after the last cell" + ("" if ra < 40 else f", {ra-40:.1f} MB over"))
print("\n".join(out))
EOF

cat "$REPORT"

if [ "$WRITE_DOC" = 1 ]; then
    DOC=$REPO/docs/benchmarks.md
    "$PY" - "$DOC" "$REPORT" <<'EOF'
import sys
from pathlib import Path
doc, report = Path(sys.argv[1]), Path(sys.argv[2]).read_text().rstrip("\n")
begin, end = "<!-- bench:begin (written by scripts/bench.sh) -->", "<!-- bench:end -->"
text = doc.read_text() if doc.exists() else f"# Benchmarks\n\n{begin}\n{end}\n"
if begin not in text or end not in text:
    text = text.rstrip("\n") + f"\n\n{begin}\n{end}\n"
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
doc.write_text(f"{head}{begin}\n{report}\n{end}{tail}")
EOF
    log "wrote results into docs/benchmarks.md"
fi
