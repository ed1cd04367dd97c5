#!/usr/bin/env python3
"""Benchmark of keycard over PostgreSQL against keycard over SQLite, and of
several nodes (issue 12), measured in one run on this machine:

- server CPU per authorized GetObject (1 KiB) and GetCallerIdentity, on an
  SQLite-backed and on a PostgreSQL-backed node (reads are served from
  memory: the two should be close);
- CreateUser/s with one SQLite node, one PostgreSQL node, and three
  PostgreSQL nodes loaded at once (writes serialize across nodes);
- cross-node propagation: a user created on node A, polled on node B until
  it is there, p50 / p99 over many rounds.

Run it on a quiet machine, with a throwaway PostgreSQL:

    scripts/with-postgres.sh .venv/bin/python scripts/bench-nodes.py

It uses target/release/keycard and target/release/keycard-loadgen (build
them first: cargo build --release -p keycard -p keycard-loadgen) and
prints a markdown report; --write puts it into docs/benchmarks.md between
the nodes-bench markers.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from conftest import Keycard, allow, doc, fresh_pg_database  # noqa: E402

LOADGEN = Path(os.environ.get("LOADGEN_BIN", ROOT / "target" / "release" / "keycard-loadgen"))
BEGIN, END = "<!-- nodes-bench:begin -->", "<!-- nodes-bench:end -->"


def start(base: Path, *args) -> Keycard:
    kc = Keycard(base, args)
    kc.start()
    return kc


def fixture(kc: Keycard) -> dict:
    """Bucket with a 1 KiB object and a user allowed what the loads do."""
    _, creds = kc.new_user(
        name="bench",
        policy={
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "iam:CreateUser"], "Resource": "*"}],
        },
    )
    s3 = kc.client("s3")
    s3.create_bucket(Bucket="bench-bucket")
    s3.put_object(Bucket="bench-bucket", Key="k", Body=b"x" * 1024)
    return creds


def load(kc: Keycard, creds: dict, workload: str, concurrency: int, duration: float, pin: str | None = None,
         rate: float = 0) -> dict:
    cmd = [
        str(LOADGEN),
        "--endpoint", kc.endpoint,
        "--access-key", creds["AccessKeyId"],
        "--secret-key", creds["SecretAccessKey"],
        "--workload", workload,
        "--concurrency", str(concurrency),
        "--duration", str(duration),
        "--warmup", "1",
        "--server-pid", str(kc.proc.pid),
        "--rate", str(rate),
    ]
    if pin:
        cmd = ["taskset", "-c", pin, *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def propagation(a: Keycard, b: Keycard, rounds: int) -> list[float]:
    ia, ib = a.client("iam"), b.client("iam")
    took = []
    for i in range(rounds):
        name = f"prop-{secrets.token_hex(4)}-{i}"
        ia.create_user(UserName=name)
        t0 = time.monotonic()
        while True:
            try:
                ib.get_user(UserName=name)
                break
            except ib.exceptions.NoSuchEntityException:
                if time.monotonic() - t0 > 10:
                    raise
        took.append((time.monotonic() - t0) * 1000)
    return took


def median_run(runs: list[dict]) -> dict:
    """The run with the median server CPU per request (rps etc. from it)."""
    runs = sorted(runs, key=lambda r: r.get("server_cpu_us_per_req", 0))
    return runs[len(runs) // 2]


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--reps", type=int, default=3,
                    help="rounds of the single-node runs (each cell reports its median)")
    ap.add_argument("--rate", type=float, default=2000,
                    help="the fixed load (requests/s) at which both engines are also compared")
    a = ap.parse_args()
    if "KEYCARD_TEST_PG" not in os.environ:
        print("run under scripts/with-postgres.sh", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="kc-bench-nodes-"))
    rows, started = [], []
    try:
        # CPU per authorized read: one node per engine, same fixture, same
        # load; --reps rounds, the engines' order alternating, so a noisy
        # minute weighs on both (the report takes each cell's median).
        reads: dict = {}
        for rep in range(a.reps):
            order = ("sqlite", "postgres") if rep % 2 == 0 else ("postgres", "sqlite")
            for engine in order:
                extra = ("--store", fresh_pg_database()) if engine == "postgres" else ()
                kc = start(tmp / f"{engine}-{rep}", *extra)
                started.append(kc)
                creds = fixture(kc)
                for wl in ("get-object", "get-caller-identity"):
                    reads.setdefault((engine, wl), []).append(load(kc, creds, wl, 16, a.duration))
                    reads.setdefault((engine, wl, "rate"), []).append(
                        load(kc, creds, wl, 16, a.duration, rate=a.rate))
                reads.setdefault((engine, "create-user"), []).append(
                    load(kc, creds, "create-user", 16, a.duration))
                kc.stop()
        reads = {k: median_run(v) for k, v in reads.items()}
        # Three nodes over one database.
        url = fresh_pg_database()
        key = tmp / "master.key"
        key.write_text(secrets.token_hex(32))
        common = ("--store", url, "--master-key-file", str(key))
        nodes = [start(tmp / f"node-{n}", *common, "--node", n) for n in "abc"]
        started += nodes
        creds = fixture(nodes[0])
        time.sleep(1)  # the fixture reaches b and c
        procs = []
        for kc in nodes:
            cmd = [
                str(LOADGEN), "--endpoint", kc.endpoint, "--access-key", creds["AccessKeyId"],
                "--secret-key", creds["SecretAccessKey"], "--workload", "create-user",
                "--concurrency", "16", "--duration", str(a.duration), "--warmup", "1",
            ]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
        three = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
        prop = propagation(nodes[0], nodes[1], a.rounds)
    finally:
        for kc in started:
            kc.stop()

    def cpu(engine, wl, *at):
        return reads[(engine, wl, *at)].get("server_cpu_us_per_req", 0)

    lines = [
        BEGIN,
        f"Measured {time.strftime('%Y-%m-%d')} with `scripts/bench-nodes.py` on this machine "
        f"({os.cpu_count()} CPUs), keycard-loadgen at 16 connections, {a.duration:g} s per run, "
        f"PostgreSQL on the same machine. Single-node cells: the median of {a.reps} rounds, the "
        "engines' order alternating between rounds.",
        "",
        "| load | SQLite node | PostgreSQL node | PostgreSQL / SQLite |",
        "|---|---:|---:|---:|",
    ]
    for wl in ("get-object", "get-caller-identity"):
        s, p = cpu("sqlite", wl), cpu("postgres", wl)
        lines.append(
            f"| {wl}: server CPU per request, as fast as it goes | {s:.0f} µs ({reads[('sqlite', wl)]['rps']:,.0f}/s) "
            f"| {p:.0f} µs ({reads[('postgres', wl)]['rps']:,.0f}/s) | {p / max(s, 1):.2f} |"
        )
    for wl in ("get-object", "get-caller-identity"):
        s, p = cpu("sqlite", wl, "rate"), cpu("postgres", wl, "rate")
        lines.append(
            f"| {wl}: server CPU per request at a fixed {a.rate:,.0f}/s | {s:.0f} µs "
            f"({reads[('sqlite', wl, 'rate')]['rps']:,.0f}/s) | {p:.0f} µs "
            f"({reads[('postgres', wl, 'rate')]['rps']:,.0f}/s) | {p / max(s, 1):.2f} |"
        )
    lines += [
        "",
        "| writes (CreateUser, 16 connections per node) | requests/s | p50 | p99 | errors |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, r in (("1 SQLite node", reads[("sqlite", "create-user")]),
                     ("1 PostgreSQL node", reads[("postgres", "create-user")])):
        lines.append(f"| {label} | {r['rps']:,.0f} | {r['p50_us'] / 1000:.1f} ms | {r['p99_us'] / 1000:.1f} ms | {r['errors']} |")
    total = sum(r["rps"] for r in three)
    lines.append(
        f"| 3 PostgreSQL nodes (sum) | {total:,.0f} | {statistics.median(r['p50_us'] for r in three) / 1000:.1f} ms "
        f"| {max(r['p99_us'] for r in three) / 1000:.1f} ms | {sum(r['errors'] for r in three)} |"
    )
    lines += [
        "",
        f"Cross-node propagation (CreateUser answered on node A → GetUser finds it on node B, boto3, "
        f"{len(prop)} rounds): p50 {pct(prop, 50):.1f} ms, p99 {pct(prop, 99):.1f} ms, max {max(prop):.1f} ms.",
        END,
    ]
    report = "\n".join(lines)
    print(report)
    if a.write:
        docp = ROOT / "docs" / "benchmarks.md"
        text = docp.read_text()
        if BEGIN in text:
            head, rest = text.split(BEGIN, 1)
            text = head + report + rest.split(END, 1)[1]
        else:
            text = text.rstrip() + "\n\n## Several nodes over PostgreSQL\n\n" + report + "\n"
        docp.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
