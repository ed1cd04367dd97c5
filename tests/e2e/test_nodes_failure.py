"""Failures of nodes over one PostgreSQL store (issue 12), under a load of
writes from boto3 threads: PostgreSQL restarting gives clients only
retryable errors (5xx, as botocore's retry modes retry) and loses no
answered write; ``kill -9`` of a node loses no answered write nor its audit
event. Every answered CreateUser is then checked on the surviving node:
the user exists and LookupEvents has its event.

Needs ``KEYCARD_TEST_PG`` (scripts/with-postgres.sh, which also says where
the cluster is so the test can restart it); ``KEYCARD_SKIP_PG=1`` skips.
"""

import os
import secrets
import shlex
import signal
import subprocess
import threading
import time

import pytest
from botocore.exceptions import ClientError, ConnectionError as BotoConnectionError, HTTPClientError

from conftest import error_code, require_pg_database, unique

# Statuses botocore's standard and legacy retry modes retry.
RETRYABLE = {500, 502, 503, 504}
WORKERS = 4


@pytest.fixture(scope="module")
def pair(make_keycard_module, tmp_path_factory):
    url = require_pg_database()
    key_file = tmp_path_factory.mktemp("nodes-failure") / "master.key"
    key_file.write_text(secrets.token_hex(32))
    common = ("--store", url, "--master-key-file", str(key_file), "--max-staleness", "2s", "--node-timeout", "3s")
    a = make_keycard_module("--node", "a", *common)
    b = make_keycard_module("--node", "b", *common)
    return a, b


class Load:
    """Threads creating users until stopped, a fresh name per call, with
    the suite's botocore client (standard retry mode: one retry of a 5xx
    or a broken connection). A 409 for a fresh name would be the retry
    meeting a write that took effect but was answered as failed: the
    wrong 4xx these tests rule out. Every outcome is kept."""

    def __init__(self, nodes, per_node=WORKERS // 2):
        self.answered = []
        self.errors = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.progress = threading.Condition(self.lock)
        self.threads = [
            threading.Thread(target=self._work, args=(kc,), daemon=True) for kc in nodes for _ in range(per_node)
        ]
        for t in self.threads:
            t.start()

    def _work(self, kc):
        iam = kc.client("iam")
        while not self.stopped.is_set():
            name = unique("load")
            try:
                iam.create_user(UserName=name)
                outcome = ("ok", name)
            except ClientError as e:
                outcome = ("error", (e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"], name))
            except (BotoConnectionError, HTTPClientError) as e:
                # The node died with the request in flight: not answered.
                outcome = ("error", ("connection", type(e).__name__, name))
            with self.lock:
                (self.answered if outcome[0] == "ok" else self.errors).append(outcome[1])
                self.progress.notify_all()
            if outcome[0] == "error" and (kc.proc is None or kc.proc.poll() is not None):
                return

    def wait_answered(self, n, limit=60):
        """Block until at least n writes were answered in all."""
        self._wait(lambda: len(self.answered) >= n, f"{n} answered writes", limit)

    def wait_errors(self, n, limit=60):
        """Block until at least n writes were refused in all."""
        self._wait(lambda: len(self.errors) >= n, f"{n} refused writes", limit)

    def answered_count(self):
        with self.lock:
            return len(self.answered)

    def _wait(self, done, what, limit):
        deadline = time.monotonic() + limit
        with self.lock:
            while not done():
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"not {what} within {limit}s: {len(self.answered)} answered, errors {self.errors[-5:]}")
                self.progress.wait(left)

    def stop(self):
        self.stopped.set()
        for t in self.threads:
            t.join(timeout=60)
        return list(self.answered), list(self.errors)


def created_events(kc):
    """User names of every CreateUser event in the audit trail."""
    ct = kc.client("cloudtrail")
    names, kw = set(), {"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "CreateUser"}]}
    while True:
        page = ct.lookup_events(MaxResults=50, **kw)
        for e in page["Events"]:
            names.update(r["ResourceName"] for r in e.get("Resources", []))
        if not page.get("NextToken"):
            return names
        kw["NextToken"] = page["NextToken"]


def all_users(kc):
    return {u["UserName"] for page in kc.client("iam").get_paginator("list_users").paginate() for u in page["Users"]}


def when_in_touch(kc, read, timeout=30):
    """`read(kc)` once the node answers again: right after an outage it may
    still refuse every call with a retryable 503 until it has caught up
    with the store, as it must rather than answer from stale state."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return read(kc)
        except ClientError as e:
            if error_code(e) != "ServiceUnavailable" or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def assert_kept(kc, answered):
    """Every answered write exists on `kc`, with its audit event (a final
    event the store refused during the outage is stored once it is back;
    the call's draft event stood for it meanwhile)."""
    users = when_in_touch(kc, all_users)
    assert not [n for n in answered if n not in users], "answered CreateUser lost"
    deadline = time.monotonic() + 20
    while missing := set(answered) - when_in_touch(kc, created_events):
        assert time.monotonic() < deadline, f"answered CreateUser without its audit event: {missing}"
        time.sleep(0.2)


def pg_ctl(*args):
    """Run pg_ctl on the scripts/with-postgres.sh cluster (as its owner)."""
    data, pgbin = os.environ.get("KEYCARD_TEST_PG_DATA"), os.environ.get("KEYCARD_TEST_PG_BIN")
    if not data or not pgbin:
        pytest.skip("KEYCARD_TEST_PG names a server this test does not control (no KEYCARD_TEST_PG_DATA)")
    cmd = [f"{pgbin}/pg_ctl", "-D", data, "-l", os.environ["KEYCARD_TEST_PG_LOG"], "-w", *args]
    if os.getuid() == 0:
        cmd = ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(cmd)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)


def test_restarting_postgres_under_load_gives_retryable_errors_and_loses_nothing(pair):
    a, b = pair
    load = Load((a, b))
    try:
        load.wait_answered(20)
        # Down long enough for writes to be refused, then up again.
        pg_ctl("-m", "fast", "stop")
        try:
            load.wait_errors(1, limit=40)
        finally:
            pg_ctl("-o", os.environ["KEYCARD_TEST_PG_OPTS"], "start")
        # Both nodes write again after the restart.
        load.wait_answered(load.answered_count() + 20)
    finally:
        answered, errors = load.stop()
    print(f"answered {len(answered)}, refused {len(errors)}: {sorted({e[:2] for e in errors})}")
    wrong = [e for e in errors if e[0] not in RETRYABLE]
    assert not wrong, f"non-retryable answers during a PostgreSQL restart: {wrong}"
    assert_kept(a, answered)
    assert_kept(b, answered)


def test_kill_9_of_a_node_under_load_loses_no_answered_write_or_event(pair):
    a, b = pair
    load = Load((a, b))
    try:
        load.wait_answered(30)
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait()
        # B keeps answering afterwards.
        load.wait_answered(load.answered_count() + 10)
    finally:
        answered, errors = load.stop()
    a.proc = None
    print(f"answered {len(answered)}, refused {len(errors)}: {sorted({e[:2] for e in errors})}")
    assert not [e for e in errors if e[0] != "connection" and e[0] not in RETRYABLE], errors
    assert_kept(b, answered)
    # A comes back on the same store with everything.
    a.start()
    assert_kept(a, answered)
