"""Audit you can trust: an answered call has a committed event, even when
keycard is killed (SIGKILL) in the middle of a stream of calls; LookupEvents
pages are full; authentication failures belong to the key's account."""

import json
import signal
import sqlite3
import struct
import threading
import time
import zlib

from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.exceptions import ConnectionClosedError, ReadTimeoutError

from conftest import ACCOUNT, create_account, error_code, unique

CALLS_BEFORE_KILL = 400
THREADS = 4


def answered_request_id(call):
    """Run ``call``; the RequestId of its answer (success or AWS error), or
    None when no answer came (the server died under it)."""
    try:
        return call()["ResponseMetadata"]["RequestId"]
    except ClientError as e:
        return e.response["ResponseMetadata"]["RequestId"]
    except (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError, ConnectionError):
        return None
    except Exception as e:  # noqa: BLE001  (urllib3 errors wrapped otherwise)
        if "Connection" in type(e).__name__ or "Connection" in str(e):
            return None
        raise


def journal_body(data_dir, seg, off, length):
    """The body of the journal record a row points at: the record is
    [payload length u32][crc32 u32][payload], the body its last string."""
    with open(data_dir / f"audit-journal.{seg}", "rb") as f:
        f.seek(off)
        rec = f.read(length)
    n, crc = struct.unpack_from("<II", rec)
    payload = rec[8 : 8 + n]
    assert len(payload) == n and zlib.crc32(payload) == crc, f"bad record at {seg}:{off}"
    # Walk the fields: id, time, name, source, user, key id, account,
    # read-only flag, resource names, body.
    at = 0

    def string():
        nonlocal at
        (k,) = struct.unpack_from("<I", payload, at)
        at += 4 + k
        return payload[at - k : at].decode()

    string()
    at += 8
    for _ in range(5):
        string()
    at += 1
    (names,) = struct.unpack_from("<I", payload, at)
    at += 4
    for _ in range(names):
        string()
    return string()


def stored_request_ids(data_dir):
    """Request ids of every event in the data dir (read with SQLite itself,
    and from the journal files for the bodies the table points at); fails
    on an event stored twice."""
    db = sqlite3.connect(data_dir / "keycard.db")
    try:
        rows = db.execute("SELECT body, seg, seg_off, seg_len FROM audit").fetchall()
    finally:
        db.close()
    ids = [
        json.loads(journal_body(data_dir, seg, off, n) if seg is not None else body)["requestID"]
        for (body, seg, off, n) in rows
    ]
    assert len(ids) == len(set(ids)), "an event is stored twice"
    return set(ids)


def test_sigkill_loses_no_event_of_an_answered_call(keycard_fresh):
    kc = keycard_fresh
    kc.client("iam").create_user(UserName="reader")
    answered = []  # (request id, operation, user name or None)
    lock = threading.Lock()
    stop = threading.Event()

    def worker(n, iam):
        i = 0
        while not stop.is_set():
            i += 1
            if i % 2:
                name = f"w{n}-{i}"
                rid = answered_request_id(lambda: iam.create_user(UserName=name))
                entry = (rid, "CreateUser", name)
            else:
                rid = answered_request_id(lambda: iam.get_user(UserName="reader"))
                entry = (rid, "GetUser", None)
            if rid is None:
                return  # the server is gone
            with lock:
                answered.append(entry)

    clients = [kc.client("iam") for _ in range(THREADS)]
    threads = [threading.Thread(target=worker, args=(n, c), daemon=True) for n, c in enumerate(clients)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while len(answered) < CALLS_BEFORE_KILL and time.monotonic() < deadline:
        assert any(t.is_alive() for t in threads), "every client thread stopped before the kill"
        time.sleep(0.02)
    # Killed with calls in flight: no shutdown, no flush.
    kc.proc.send_signal(signal.SIGKILL)
    kc.proc.wait()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert len(answered) >= CALLS_BEFORE_KILL, f"only {len(answered)} calls answered before the deadline"

    # Events not yet moved into the table are in the journal; a restart
    # replays it before the server listens.
    left = {f.name: f.stat().st_size for f in kc.data_dir.glob("audit-journal.[0-9]*")}
    journaled = sum(left.values())
    kc.proc = None
    kc.start()
    stored = stored_request_ids(kc.data_dir)
    missing = [a for a in answered if a[0] not in stored]
    assert not missing, (
        f"{len(missing)} of {len(answered)} answered calls have no event "
        f"({journaled} journal bytes were left): {missing[:5]}"
    )
    # The replayed files stay, as the bodies' segments, and a new file
    # is appended to: nothing is replayed twice (checked above).
    now = {f.name for f in kc.data_dir.glob("audit-journal.[0-9]*")}
    kept = {name for name, size in left.items() if size}
    assert kept <= now and now - kept, (left, now)

    # Every answered CreateUser's user is there, and its event is found
    # through LookupEvents.
    iam = kc.client("iam")
    users = set()
    for page in iam.get_paginator("list_users").paginate():
        users |= {u["UserName"] for u in page["Users"]}
    created = [a for a in answered if a[1] == "CreateUser"]
    assert created
    # An answered CreateUser that failed (it never does here) would have no user.
    lost = [a[2] for a in created if a[2] not in users]
    assert not lost, f"answered CreateUser calls whose user is gone: {lost[:5]}"
    last_rid, _, last_name = created[-1]
    events = kc.client("cloudtrail").lookup_events(
        LookupAttributes=[{"AttributeKey": "ResourceName", "AttributeValue": last_name}]
    )["Events"]
    assert [json.loads(e["CloudTrailEvent"])["requestID"] for e in events] == [last_rid]


def pages(ct, max_results=50, **kw):
    """Every page of LookupEvents: a list of (events, next token)."""
    out, token = [], None
    for _ in range(100):
        args = dict(kw, MaxResults=max_results)
        if token:
            args["NextToken"] = token
        page = ct.lookup_events(**args)
        token = page.get("NextToken")
        out.append((page["Events"], token))
        if not token:
            return out
    raise AssertionError("LookupEvents never stopped paginating")


def test_lookup_events_pages_are_full_and_per_account(keycard_fresh):
    kc = keycard_fresh
    b, b_root = create_account(kc)
    c, c_root = create_account(kc)
    sts_a, sts_b, sts_c = kc.client("sts"), kc.client("sts", b_root), kc.client("sts", c_root)
    # B's events interleaved with the default account's, so that filtering
    # after the limit would leave pages short.
    for _ in range(60):
        sts_a.get_caller_identity()
        sts_a.get_caller_identity()
        sts_b.get_caller_identity()
    for _ in range(50):
        sts_c.get_caller_identity()

    got = pages(kc.client("cloudtrail", b_root))
    sizes = [len(events) for events, _ in got]
    assert sizes == [50, 10], sizes
    events = [e for evs, _ in got for e in evs]
    assert {json.loads(e["CloudTrailEvent"])["recipientAccountId"] for e in events} == {b}
    assert {e["EventName"] for e in events} == {"GetCallerIdentity"}
    assert len({e["EventId"] for e in events}) == 60

    # Exactly 50 events: one full page and no NextToken.
    got = pages(kc.client("cloudtrail", c_root))
    assert [len(evs) for evs, _ in got] == [50]
    assert got[0][1] is None

    # A filter on top of the account still fills its pages.
    got = pages(
        kc.client("cloudtrail"),
        max_results=25,
        LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "GetCallerIdentity"}],
    )
    assert [len(evs) for evs, _ in got][:4] == [25, 25, 25, 25]
    assert all(
        json.loads(e["CloudTrailEvent"])["recipientAccountId"] == ACCOUNT for evs, _ in got for e in evs
    )


def test_auth_failures_belong_to_the_key_account(keycard_fresh):
    kc = keycard_fresh
    b, b_root = create_account(kc)
    bad_secret = dict(b_root, SecretAccessKey="x" * 40)
    err = None
    try:
        kc.client("iam", bad_secret).list_users()
    except ClientError as e:
        err = e
    assert err is not None and error_code(err) == "SignatureDoesNotMatch"
    bad_rid = err.response["ResponseMetadata"]["RequestId"]

    # A session key of B with a wrong secret: attributed through its token.
    sess = kc.client("sts", b_root).get_session_token()["Credentials"]
    bad_session = dict(sess, SecretAccessKey="y" * 40)
    try:
        kc.client("iam", bad_session).list_users()
        raise AssertionError("a wrong session secret was accepted")
    except ClientError as e:
        assert error_code(e) == "SignatureDoesNotMatch"
        bad_session_rid = e.response["ResponseMetadata"]["RequestId"]

    # An unknown key id belongs to no account.
    unknown = {"AccessKeyId": "AKIA" + "Z" * 16, "SecretAccessKey": "z" * 40}
    try:
        kc.client("iam", unknown).list_users()
        raise AssertionError("an unknown key was accepted")
    except ClientError as e:
        assert error_code(e) == "InvalidClientTokenId"
        unknown_rid = e.response["ResponseMetadata"]["RequestId"]

    def failures(creds):
        events = [
            json.loads(e["CloudTrailEvent"])
            for evs, _ in pages(
                kc.client("cloudtrail", creds),
                LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "Unauthenticated"}],
            )
            for e in evs
        ]
        return {e["requestID"]: e for e in events}

    seen_by_b = failures(b_root)
    assert bad_rid in seen_by_b and bad_session_rid in seen_by_b
    assert seen_by_b[bad_rid]["errorCode"] == "SignatureDoesNotMatch"
    assert seen_by_b[bad_rid]["recipientAccountId"] == b
    # The key id it claimed (never its secret) is recorded, and findable.
    claimed = seen_by_b[bad_rid]["userIdentity"]
    assert claimed == {"type": "Unknown", "accountId": b, "accessKeyId": b_root["AccessKeyId"]}
    by_key = kc.client("cloudtrail", b_root).lookup_events(
        LookupAttributes=[{"AttributeKey": "AccessKeyId", "AttributeValue": b_root["AccessKeyId"]}])["Events"]
    assert bad_rid in {json.loads(e["CloudTrailEvent"])["requestID"] for e in by_key}
    assert unknown_rid not in seen_by_b
    seen_by_a = failures(kc.root_creds)
    assert bad_rid not in seen_by_a and unknown_rid not in seen_by_a


def test_user_data_and_passwords_are_redacted(keycard_fresh):
    kc = keycard_fresh
    name = unique("pw")
    kc.client("iam").create_user(UserName=name)
    try:  # recorded with its parameters whether or not keycard serves it
        kc.client("iam").create_login_profile(UserName=name, Password="Sup3r-Secret-Pw!")
    except ClientError:
        pass
    inst = kc.run_instance(UserData="#!/bin/sh\necho top-secret-user-data\n")
    ct = kc.client("cloudtrail")
    events = [json.loads(e["CloudTrailEvent"]) for evs, _ in pages(ct) for e in evs]
    text = json.dumps(events)
    assert "Sup3r-Secret-Pw!" not in text
    assert "top-secret-user-data" not in text
    run = [e for e in events if e["eventName"] == "RunInstances"]
    assert run and run[0]["requestParameters"]["userData"] == "<sensitiveDataRemoved>"
    login = [e for e in events if e["eventName"] == "CreateLoginProfile"]
    assert login and login[0]["requestParameters"]["password"] == "HIDDEN_DUE_TO_SECURITY_REASONS"
    assert inst["InstanceId"]
