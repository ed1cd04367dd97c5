#!/usr/bin/env bash
# IMDS benchmark: IMDSv2 token + credential fetch latency with 1,000
# instances polling keycard's per-instance metadata listeners.
#
#   ./scripts/bench-imds.sh
#
# Builds release binaries (keycard, keycard-loadgen), starts keycard on a temp
# data dir (`--listen 127.0.0.1:0 --imds-port 0`), sets up with boto3 a role
# that EC2 may assume, an instance profile holding it and 1,000 running
# instances with that profile, then runs `keycard-loadgen imds`:
#
#   - cold passes: each instance's first fetch (keycard issues the instance's
#     role session on it), once per BENCH_IMDS_COLD_CONCURRENCIES entry — each
#     on a fresh set of instances (the previous set is terminated first);
#   - warm runs: closed loop over all instances round-robin, for each
#     connection mode (fresh TCP connection per fetch; pooled keep-alive) and
#     concurrency, checking that every answer is the set the cold pass got.
#
# It prints a markdown report and writes it into docs/benchmarks.md between
# the imds-bench:begin / imds-bench:end markers.
#
# Environment (all optional):
#   BENCH_IMDS_INSTANCES=1000               instances polling
#   BENCH_IMDS_COLD_CONCURRENCIES="1 64"    one cold pass (fresh instance set) each
#   BENCH_IMDS_CONNECTIONS="fresh keep-alive"
#   BENCH_CONCURRENCIES="1 16 64"           warm-run concurrencies
#   BENCH_DURATION=5                        measured seconds per warm run
#   BENCH_WARMUP=1                          warm-up seconds per warm run
#   BENCH_PIN=1                             pin keycard to CPU 0, loadgen to CPU 1 (taskset)
#   BENCH_WRITE_DOC=1                       0 leaves docs/benchmarks.md alone
#   BENCH_SKIP_BUILD=0                      1 uses the binaries already built
#   BENCH_WAIT_IDLE=300                     wait up to this many seconds for a
#                                           quiet machine (< 10% CPU busy) before starting
#   BENCH_WAIT_IDLE_CELL=120                ... and up to this many before each pass
#   BENCH_RETRY_NOISY=2                     rerun a warm run up to this many times when
#                                           other processes used > 10% of the machine
#                                           during it (the least disturbed one is kept)
#   CARGO_TARGET_DIR                        default: target-bench (kept apart from target/)
#
# All traffic goes to loopback (127.0.0.1 and 127.77.x.y) and every run is
# bounded in time.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

INSTANCES=${BENCH_IMDS_INSTANCES:-1000}
COLD_CONCURRENCIES=${BENCH_IMDS_COLD_CONCURRENCIES:-"1 64"}
CONNECTIONS=${BENCH_IMDS_CONNECTIONS:-"fresh keep-alive"}
CONCURRENCIES=${BENCH_CONCURRENCIES:-"1 16 64"}
DURATION=${BENCH_DURATION:-5}
WARMUP=${BENCH_WARMUP:-1}
PIN=${BENCH_PIN:-1}
WRITE_DOC=${BENCH_WRITE_DOC:-1}
SKIP_BUILD=${BENCH_SKIP_BUILD:-0}
WAIT_IDLE=${BENCH_WAIT_IDLE:-300}
WAIT_IDLE_CELL=${BENCH_WAIT_IDLE_CELL:-120}
RETRY_NOISY=${BENCH_RETRY_NOISY:-2}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target-bench}

KEYCARD_BIN=$CARGO_TARGET_DIR/release/keycard
LOADGEN_BIN=$CARGO_TARGET_DIR/release/keycard-loadgen
VENV=$REPO/.venv
PY=$VENV/bin/python
ROLE=bench-imds-role
PROFILE=bench-imds-profile

# The exact command, for the report.
COMMAND=""
for v in $(compgen -v | grep '^BENCH_' || true); do
    COMMAND="$COMMAND$v=\"${!v}\" "
done
COMMAND="${COMMAND}./scripts/bench-imds.sh"

log() { printf '[bench-imds] %s\n' "$*" >&2; }

case "$INSTANCES" in ''|*[!0-9]*) log "BENCH_IMDS_INSTANCES must be a number"; exit 2 ;; esac
if [ "$INSTANCES" -lt 1 ] || [ "$INSTANCES" -gt 10000 ]; then
    log "BENCH_IMDS_INSTANCES must be in 1..10000"; exit 2
fi

# ---------------------------------------------------------------- build
if [ "$SKIP_BUILD" != 1 ]; then
    log "building release binaries (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    cargo build --release -p keycard -p keycard-loadgen >&2
fi
[ -x "$KEYCARD_BIN" ] && [ -x "$LOADGEN_BIN" ] || { log "missing $KEYCARD_BIN or $LOADGEN_BIN"; exit 1; }

# ---------------------------------------------------------------- python venv (boto3 for the fixture)
if [ ! -x "$PY" ]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
fi
if ! "$PY" -c 'import boto3' 2>/dev/null; then
    log "installing tests/requirements.txt into $VENV"
    "$PY" -m pip install --quiet -r tests/requirements.txt >&2
fi

# ---------------------------------------------------------------- pinning
SERVER_PIN=()
LOADGEN_PIN=()
NPROC=$(nproc)
if [ "$PIN" = 1 ] && command -v taskset >/dev/null && [ "$NPROC" -ge 2 ]; then
    SERVER_PIN=(taskset -c 0)
    LOADGEN_PIN=(taskset -c 1)
    PINNING="keycard pinned to CPU 0, keycard-loadgen pinned to CPU 1 (taskset)"
else
    PINNING="no CPU pinning: keycard and the load generator share all $NPROC CPUs"
fi
log "$PINNING"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/keycard-bench-imds.XXXXXX")
RESULTS=$WORK/results.jsonl
: >"$RESULTS"
KC_PID=""
cleanup() {
    if [ -n "$KC_PID" ]; then
        kill "$KC_PID" 2>/dev/null && wait "$KC_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

# Busy share of all CPUs over the next 2 s, in percent.
cpu_busy_pct() {
    local a b
    a=($(head -1 /proc/stat)); sleep 2; b=($(head -1 /proc/stat))
    local tot=0 idle i
    for i in 1 2 3 4 5 6 7 8; do tot=$((tot + b[i] - a[i])); done
    idle=$((b[4] - a[4] + b[5] - a[5]))
    echo $(( tot > 0 ? (100 * (tot - idle)) / tot : 0 ))
}

# Fixture through boto3 with the root key: `setup` (role + profile),
# `launch N FILE` (N running instances with the profile, ids into FILE),
# `terminate FILE`.
fixture() { # endpoint access_key secret_key action args...
    "$PY" - "$@" <<'EOF'
import json, sys
import boto3
from botocore.config import Config

endpoint, ak, sk, action = sys.argv[1:5]
args = sys.argv[5:]
kw = dict(endpoint_url=endpoint, aws_access_key_id=ak, aws_secret_access_key=sk,
          region_name="us-east-1", config=Config(retries={"max_attempts": 1},
                                                 read_timeout=120))
ROLE, PROFILE = "bench-imds-role", "bench-imds-profile"
if action == "setup":
    iam = boto3.client("iam", **kw)
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
        "Action": "sts:AssumeRole"}]}
    iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(trust))
    iam.create_instance_profile(InstanceProfileName=PROFILE)
    iam.add_role_to_instance_profile(InstanceProfileName=PROFILE, RoleName=ROLE)
elif action == "launch":
    n, out = int(args[0]), args[1]
    ec2 = boto3.client("ec2", **kw)
    ids = []
    while len(ids) < n:
        k = min(1000, n - len(ids))
        r = ec2.run_instances(ImageId="ami-0abcdef1234567890", InstanceType="t3.micro",
                              MinCount=k, MaxCount=k,
                              IamInstanceProfile={"Name": PROFILE})
        ids += [i["InstanceId"] for i in r["Instances"]]
    states = {i["State"]["Name"] for i in r["Instances"]}
    with open(out, "w") as f:
        f.write("\n".join(ids) + "\n")
    print(f"launched {len(ids)} instances (states {sorted(states)})", file=sys.stderr)
elif action == "terminate":
    ids = [l.strip() for l in open(args[0]) if l.strip()]
    ec2 = boto3.client("ec2", **kw)
    for j in range(0, len(ids), 1000):
        ec2.terminate_instances(InstanceIds=ids[j:j + 1000])
    print(f"terminated {len(ids)} instances", file=sys.stderr)
else:
    sys.exit(f"unknown fixture action {action}")
EOF
}

# Wait up to $1 seconds for the machine to be < 10% busy; sets BG_BUSY.
wait_quiet() {
    local start=$SECONDS
    BG_BUSY=$(cpu_busy_pct)
    while [ "$BG_BUSY" -ge 10 ] && [ $((SECONDS - start)) -lt "$1" ]; do
        BG_BUSY=$(cpu_busy_pct)
    done
    if [ "$BG_BUSY" -ge 10 ]; then log "machine still ${BG_BUSY}% busy after ${1}s; measuring anyway"; fi
}
log "waiting up to ${WAIT_IDLE}s for a quiet machine (< 10% CPU busy)"
wait_quiet "$WAIT_IDLE"
START_BUSY=$BG_BUSY
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
log "background CPU busy before the run: ${START_BUSY}% (load average $LOADAVG)"

# ---------------------------------------------------------------- keycard
KC_DATA=$WORK/keycard-data
KC_LOG=$WORK/keycard.log
log "starting keycard (listen 127.0.0.1:0, imds-port 0)"
"${SERVER_PIN[@]}" "$KEYCARD_BIN" serve --listen 127.0.0.1:0 --data-dir "$KC_DATA" --imds-port 0 \
    >"$KC_LOG" 2>&1 </dev/null &
KC_PID=$!
for _ in $(seq 400); do
    [ -s "$KC_DATA/server.addr" ] && [ -s "$KC_DATA/credentials" ] && [ -s "$KC_DATA/admin.token" ] && break
    kill -0 "$KC_PID" 2>/dev/null || { cat "$KC_LOG" >&2; exit 1; }
    sleep 0.05
done
[ -s "$KC_DATA/server.addr" ] || { log "keycard did not write server.addr"; cat "$KC_LOG" >&2; exit 1; }
KC_ENDPOINT=http://$(cat "$KC_DATA/server.addr")
ROOT_AK=$(awk -F' = ' '/^aws_access_key_id/ {print $2}' "$KC_DATA/credentials")
ROOT_SK=$(awk -F' = ' '/^aws_secret_access_key/ {print $2}' "$KC_DATA/credentials")
log "keycard at $KC_ENDPOINT (pid $KC_PID)"

fixture "$KC_ENDPOINT" "$ROOT_AK" "$ROOT_SK" setup
RSS_BEFORE=$(rss_kb "$KC_PID")
FD_BEFORE=$(fd_count "$KC_PID")

IDS=$WORK/instances.txt
KEYS=$WORK/keys.txt
# Keep the less disturbed of two JSON results (the second may be empty).
pick_best() { # new old attempt
    "$PY" - "$@" <<'EOF'
import json, sys
new = json.loads(sys.argv[1])
new["attempts"] = int(sys.argv[3])
old = json.loads(sys.argv[2]) if sys.argv[2] else None
if old is not None and old.get("other_cpu_pct", 0) <= new.get("other_cpu_pct", 0):
    old["attempts"] = new["attempts"]
    new = old
print(json.dumps(new))
EOF
}

# One keycard-loadgen imds run; appends its JSON line (plus "attempts") to
# $RESULTS. A warm run (first argument "retry") is repeated, up to
# RETRY_NOISY more times, while other processes used > 10% of the machine
# during it; the least disturbed attempt is kept. A cold pass runs once.
imds() { # retry|once args...
    local mode=$1 attempt=0 best="" out other
    shift
    while :; do
        attempt=$((attempt + 1))
        wait_quiet "$WAIT_IDLE_CELL"
        out=$("${LOADGEN_PIN[@]}" "$LOADGEN_BIN" imds --endpoint "$KC_ENDPOINT" --data-dir "$KC_DATA" \
            --instances-file "$IDS" --instances "$INSTANCES" --role "$ROLE" --server-pid "$KC_PID" "$@" \
            2> >(sed "s/^/[loadgen] /" >&2))
        printf '%s\n' "$out" >&2
        best=$(pick_best "$out" "$best" "$attempt")
        other=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1]).get("other_cpu_pct", 0))' "$best")
        if [ "$mode" != retry ] || [ "$attempt" -gt "$RETRY_NOISY" ] \
            || awk -v o="$other" 'BEGIN {exit !(o <= 10)}'; then
            break
        fi
        log "other processes used ${other}% of the machine during that run; running it again"
    done
    printf '%s\n' "$best" >>"$RESULTS"
}

# ---------------------------------------------------------------- cold passes
j=0
RSS_INSTANCES=""
FD_INSTANCES=""
LAUNCH_S=""
for c in $COLD_CONCURRENCIES; do
    if [ "$j" -gt 0 ]; then
        fixture "$KC_ENDPOINT" "$ROOT_AK" "$ROOT_SK" terminate "$IDS"
        # Let keycard close the old listeners before their addresses are reused.
        sleep 2
    fi
    t0=$(date +%s.%N)
    fixture "$KC_ENDPOINT" "$ROOT_AK" "$ROOT_SK" launch "$INSTANCES" "$IDS"
    t1=$(date +%s.%N)
    LAUNCH_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')
    if [ "$j" -eq 0 ]; then
        sleep 1
        RSS_INSTANCES=$(rss_kb "$KC_PID")
        FD_INSTANCES=$(fd_count "$KC_PID")
    fi
    log "cold pass: $INSTANCES first fetches, concurrency $c"
    imds once --pass cold --connection fresh --concurrency "$c" --keys-out "$KEYS"
    j=$((j + 1))
    sleep 1
done

# ---------------------------------------------------------------- warm runs
for conn in $CONNECTIONS; do
    for c in $CONCURRENCIES; do
        log "warm: $conn connections, concurrency $c (${DURATION}s + ${WARMUP}s warm-up)"
        imds retry --pass warm --connection "$conn" --concurrency "$c" \
            --duration "$DURATION" --warmup "$WARMUP" --keys-in "$KEYS"
        sleep 1
    done
done
sleep 2
RSS_AFTER=$(rss_kb "$KC_PID")
HWM=$(awk '/^VmHWM:/ {print $2}' "/proc/$KC_PID/status")
FD_AFTER=$(fd_count "$KC_PID")
THREADS=$(awk '/^Threads:/ {print $2}' "/proc/$KC_PID/status")
kill "$KC_PID"; wait "$KC_PID" 2>/dev/null || true
KC_PID=""
KC_ERRORS=$(grep -ciE ' (error|warn)' "$KC_LOG" || true)
KC_ERROR_SAMPLE=$(grep -iE ' (error|warn)' "$KC_LOG" | head -3 | cut -c1-300 || true)

# ---------------------------------------------------------------- report
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
MEM_TOTAL=$(awk '/^MemTotal:/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)
KC_VERSION=$("$KEYCARD_BIN" --version 2>/dev/null || echo keycard)
GIT_REV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$REPO" status --porcelain 2>/dev/null)" ]; then GIT_REV="$GIT_REV (with uncommitted changes)"; fi

REPORT=$WORK/report.md
export BI_DATE BI_NPROC BI_CPU BI_MEM BI_KERNEL BI_VERSION BI_GIT BI_COMMAND BI_PINNING \
    BI_BUSY BI_LOADAVG BI_INSTANCES BI_DURATION BI_WARMUP BI_RSS_BEFORE BI_RSS_INSTANCES \
    BI_RSS_AFTER BI_HWM BI_FD_BEFORE BI_FD_INSTANCES BI_FD_AFTER BI_THREADS BI_LAUNCH_S \
    BI_KC_ERRORS BI_KC_ERROR_SAMPLE BI_WAIT_CELL BI_RETRY
BI_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
BI_NPROC=$NPROC BI_CPU=$CPU_MODEL BI_MEM=$MEM_TOTAL BI_KERNEL=$(uname -sr)
BI_VERSION=$KC_VERSION BI_GIT=$GIT_REV BI_COMMAND=$COMMAND BI_PINNING=$PINNING
BI_BUSY=$START_BUSY BI_LOADAVG=$LOADAVG BI_INSTANCES=$INSTANCES BI_DURATION=$DURATION BI_WARMUP=$WARMUP
BI_RSS_BEFORE=$RSS_BEFORE BI_RSS_INSTANCES=$RSS_INSTANCES BI_RSS_AFTER=$RSS_AFTER BI_HWM=$HWM
BI_FD_BEFORE=$FD_BEFORE BI_FD_INSTANCES=$FD_INSTANCES BI_FD_AFTER=$FD_AFTER BI_THREADS=$THREADS
BI_LAUNCH_S=$LAUNCH_S BI_KC_ERRORS=$KC_ERRORS BI_KC_ERROR_SAMPLE=$KC_ERROR_SAMPLE
BI_WAIT_CELL=$WAIT_IDLE_CELL BI_RETRY=$RETRY_NOISY
"$PY" - "$RESULTS" >"$REPORT" <<'EOF'
import json, os, sys
e = os.environ.get
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
n = int(e("BI_INSTANCES"))

def ms(us): return f"{us / 1000:.2f}"
def num(v, fmt="{:,.0f}"): return "–" if v is None else fmt.format(v)

out = []
p = out.append
p(f"## IMDS: credential fetch latency with {n:,} instances polling")
p("")
p("How long an instance takes to get its role credentials from keycard's instance metadata")
p("service (IMDSv2), with {:,} running instances each polling its own metadata listener.".format(n))
p("This section is written by `scripts/bench-imds.sh`; rerun it to refresh the numbers.")
p("")
p("**What is measured.** `keycard-loadgen imds` reads the instance ids, resolves each instance's")
p("metadata endpoint (`http://127.77.A.B:PORT/`, one loopback address per instance) through")
p("`GET /_keycard/admin/instances/ID`, and then runs a closed loop of C workers. Each iteration")
p("takes the next instance round-robin (so every instance polls) and does one *fetch*, what an")
p("SDK's instance-profile credential provider does: `PUT /latest/api/token`")
p("(`X-aws-ec2-metadata-token-ttl-seconds: 21600`), then")
p("`GET /latest/meta-data/iam/security-credentials/ROLE` with that token. A fetch is an error")
p("unless both answer 200 and the document has `Code: Success` and a full key set. Latency is")
p("per fetch (connect + PUT + GET, to the last body byte), into an HDR histogram; the parts are")
p("recorded too. Connections: **fresh** — a new TCP connection per fetch, both requests over")
p("it, then closed (an SDK in a newly started process; SDKs on separate machines never share")
p("one); **keep-alive** — one idle connection per instance in a pool the workers share (a")
p("long-running SDK client that reuses its connection; it still asks for a new token each time).")
p("")
p("- **cold**: each instance's *first* fetch, once per instance, then stop. keycard has no")
p("  credentials for the instance yet: it checks that EC2 may assume the role (trust policy),")
p("  mints a role session (STS) and audits it as EC2's `AssumeRole`. Each cold pass runs on a")
p("  fresh set of instances (the previous set is terminated first).")
p("- **warm**: the timed closed loop after the cold pass; keycard serves each instance's cached")
p("  set. The generator checks that every answer carries the AccessKeyId the cold pass got for")
p("  that instance (no re-issuing).")
p("")
p("**moto**: not compared; moto's IMDS is not comparable. moto_server answers `/latest/...` on its")
p("own port for every caller: `PUT /latest/api/token` returns the fixed string `fake-imdsv2-token`,")
p("which is never checked, and the credentials path returns the same fake keys (`test-key`) for any")
p("role name. There is no per-instance endpoint, no instance or role lookup and no role session, so")
p("timing it would measure a static route, not credential delivery.")
p("")
p(f"- Date: {e('BI_DATE')}")
p(f"- Machine: {e('BI_NPROC')} CPUs ({e('BI_CPU')}), {e('BI_MEM')} RAM, {e('BI_KERNEL')}")
p(f"- Build: `{e('BI_VERSION')}`, git {e('BI_GIT')}, release profile")
p(f"- Command: `{e('BI_COMMAND')}` ({n:,} instances; warm runs {e('BI_DURATION')} s measured + {e('BI_WARMUP')} s warm-up)")
p(f"- Placement: {e('BI_PINNING')}")
p(f"- Background: {e('BI_BUSY')}% of all CPUs busy just before the run (load average {e('BI_LOADAVG')}); 'other CPU' below is what the rest of the machine used during each measured window")
p(f"- Noise control: before each pass the script waits (up to {e('BI_WAIT_CELL')} s) for the machine to be < 10% busy, and it repeats a warm run (up to {e('BI_RETRY')} more times, keeping the least disturbed attempt) when other processes used > 10% of the machine during it")
p("")
p("| pass | connection | conc. | fetches | errors | fetches/s | p50 ms | p90 ms | p99 ms | max ms |")
p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    p(f"| {r['pass']} | {r['connection']} | {r['concurrency']} | {r['fetches']:,} | {r['errors']} | "
      f"{r['fetches_per_s']:,.0f} | {ms(r['p50_us'])} | {ms(r['p90_us'])} | {ms(r['p99_us'])} | {ms(r['max_us'])} |")
p("")
p("Parts of a fetch (p50 / p99, ms; 'connect' only for fetches that opened a connection) and CPU per fetch:")
p("")
p("| pass | connection | conc. | connect | token PUT | credentials GET | keycard CPU µs/fetch | keycard CPU % of one core | loadgen CPU µs/fetch | other CPU % |")
p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    conn = f"{ms(r['connect_p50_us'])} / {ms(r['connect_p99_us'])}" if r["connects"] else "–"
    p(f"| {r['pass']} | {r['connection']} | {r['concurrency']} | {conn} | "
      f"{ms(r['token_p50_us'])} / {ms(r['token_p99_us'])} | {ms(r['creds_p50_us'])} / {ms(r['creds_p99_us'])} | "
      f"{num(r.get('server_cpu_us_per_fetch'))} | {num(r.get('server_cpu_pct_of_one'))} | "
      f"{num(r.get('loadgen_cpu_us_per_fetch'))} | {num(r.get('other_cpu_pct'), '{:.1f}')} |")
p("")
p("Checks (from the generator's JSON):")
p("")
p("| pass | connection | conc. | instances polled | polls per instance (min–max) | distinct AccessKeyIds | key changes | answers ≠ cold pass's key | connections opened | keycard RSS after, MB | attempts |")
p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    mism = r.get("key_mismatches")
    p(f"| {r['pass']} | {r['connection']} | {r['concurrency']} | {r['instances_polled']:,} / {r['instances']:,} | "
      f"{r['polls_per_instance_min']}–{r['polls_per_instance_max']} | {r['distinct_access_keys']:,} | {r['key_changes']} | "
      f"{'–' if mism is None else mism} | {r['connects']:,} | {num(r.get('server_rss_kb') and r['server_rss_kb'] / 1024, '{:.1f}')} | {r.get('attempts', 1)} |")
p("")
def find(pass_, conn, c):
    return next((r for r in rows if (r["pass"], r["connection"], r["concurrency"]) == (pass_, conn, c)), None)
def usable(r): return r is not None and r["fetches"] > 0 and r["errors"] == 0
lines = []
for r in rows:
    if r["errors"]:
        lines.append(f"**{r['errors']} of {r['fetches']:,} fetches failed** in the {r['pass']} {r['connection']} c={r['concurrency']} run (the generator prints the first error).")
cold1, warm1 = find("cold", "fresh", 1), find("warm", "fresh", 1)
if usable(cold1) and usable(warm1):
    t = (f"First fetch vs cached set (fresh connection, c=1): median {ms(cold1['p50_us'])} vs {ms(warm1['p50_us'])} ms, "
         f"p99 {ms(cold1['p99_us'])} vs {ms(warm1['p99_us'])} ms")
    if "server_cpu_us_per_fetch" in cold1 and "server_cpu_us_per_fetch" in warm1:
        d = cold1["server_cpu_us_per_fetch"] - warm1["server_cpu_us_per_fetch"]
        t += (f"; keycard CPU {cold1['server_cpu_us_per_fetch']:.0f} vs {warm1['server_cpu_us_per_fetch']:.0f} µs per fetch, "
              f"so issuing an instance's role session (trust-policy check, session token, audit row) costs about {d:.0f} µs")
    lines.append(t + ".")
colds = [r for r in rows if r["pass"] == "cold" and usable(r)]
if colds:
    b = max(colds, key=lambda r: r["fetches_per_s"])
    lines.append(f"Boot storm: {b['instances']:,} instances fetching their first credentials at once (c={b['concurrency']}) "
                 f"are all served in {b['duration_s']:.2f} s ({b['fetches_per_s']:,.0f} first fetches/s, p99 {ms(b['p99_us'])} ms).")
for conn in ("fresh", "keep-alive"):
    ws = [r for r in rows if r["pass"] == "warm" and r["connection"] == conn and usable(r)]
    if ws:
        b = max(ws, key=lambda r: r["fetches_per_s"])
        lines.append(f"Warm, {conn} connections: best {b['fetches_per_s']:,.0f} fetches/s (= {2 * b['fetches_per_s']:,.0f} IMDS requests/s) "
                     f"at c={b['concurrency']}, p50 {ms(b['p50_us'])} / p99 {ms(b['p99_us'])} ms.")
cs = sorted({r["concurrency"] for r in rows if r["pass"] == "warm"})
for c in reversed(cs):
    f, k = find("warm", "fresh", c), find("warm", "keep-alive", c)
    if usable(f) and usable(k) and "server_cpu_us_per_fetch" in f and "server_cpu_us_per_fetch" in k:
        lines.append(f"A new TCP connection per fetch costs keycard about {f['server_cpu_us_per_fetch'] - k['server_cpu_us_per_fetch']:.0f} µs "
                     f"of CPU per fetch over a kept-alive one (c={c}: {f['server_cpu_us_per_fetch']:.0f} vs {k['server_cpu_us_per_fetch']:.0f} µs).")
        break
noisy = [r for r in rows if r.get("other_cpu_pct", 0) > 10]
if noisy:
    lines.append("Disturbed runs (other processes used > 10% of the machine; their numbers are pessimistic): "
                 + ", ".join(f"{r['pass']} {r['connection']} c={r['concurrency']} ({r['other_cpu_pct']:.0f}%)" for r in noisy) + ".")
if lines:
    p("Reading the numbers:")
    p("")
    for l in lines:
        p(f"- {l}")
    p("")
kb = lambda k: int(e(k) or 0) / 1024
p(f"keycard process: RSS {kb('BI_RSS_BEFORE'):.1f} MB before any instance, {kb('BI_RSS_INSTANCES'):.1f} MB with "
  f"{n:,} idle running instances, {kb('BI_RSS_AFTER'):.1f} MB after all runs (peak {kb('BI_HWM'):.1f} MB); "
  f"open file descriptors {e('BI_FD_BEFORE')} → {e('BI_FD_INSTANCES')} → {e('BI_FD_AFTER')}; {e('BI_THREADS')} threads. "
  f"RunInstances of {n:,} (boto3, last launch): {e('BI_LAUNCH_S')} s. keycard log lines with error/warn: {e('BI_KC_ERRORS')}"
  + (f" (first: `{e('BI_KC_ERROR_SAMPLE').splitlines()[0]}`)" if e("BI_KC_ERROR_SAMPLE") else "") + ".")
print("\n".join(out))
EOF

cat "$REPORT"

if [ "$WRITE_DOC" = 1 ]; then
    DOC=$REPO/docs/benchmarks.md
    "$PY" - "$DOC" "$REPORT" <<'EOF'
import sys
from pathlib import Path
doc, report = Path(sys.argv[1]), Path(sys.argv[2]).read_text().rstrip("\n")
begin, end = "<!-- imds-bench:begin -->", "<!-- imds-bench:end -->"
text = doc.read_text() if doc.exists() else "# Benchmarks\n"
if begin not in text or end not in text:
    text = text.rstrip("\n") + f"\n\n{begin}\n{end}\n"
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
doc.write_text(f"{head}{begin}\n{report}\n{end}{tail}")
EOF
    log "wrote results into docs/benchmarks.md"
fi
