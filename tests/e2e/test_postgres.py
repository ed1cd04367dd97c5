"""keycard on the PostgreSQL store (`serve --store postgres://…`): what the
AWS CLI and boto3 create survives a restart, is still enforced, and its audit
events are found with LookupEvents.

Needs a PostgreSQL server: ``KEYCARD_TEST_PG`` (a superuser URL, set by
``scripts/with-postgres.sh``, which scripts/e2e.sh runs the suite under).
Without it the test fails, unless ``KEYCARD_SKIP_PG=1`` says to skip.
"""

import json
import os
import subprocess

import pytest

from conftest import ACCOUNT, allow, doc, expect_error, fresh_pg_database, keycard_bin, trust_for


@pytest.fixture
def pg_url():
    """A fresh database on the test server, as a URL for --store."""
    if not os.environ.get("KEYCARD_TEST_PG"):
        if os.environ.get("KEYCARD_SKIP_PG") == "1":
            pytest.skip("KEYCARD_SKIP_PG=1")
        pytest.fail("KEYCARD_TEST_PG is not set: run under scripts/with-postgres.sh (or set KEYCARD_SKIP_PG=1)")
    return fresh_pg_database()


def event_names(keycard, **kw):
    ct = keycard.client("cloudtrail")
    return [e["EventName"] for e in ct.lookup_events(MaxResults=50, **kw)["Events"]]


def test_state_and_audit_survive_a_restart_on_postgres(make_keycard, pg_url):
    # Retention runs at start (and hourly): today's events are kept.
    kc = make_keycard("--store", pg_url, "--audit-retention", "90d")
    # Entities live in PostgreSQL: no SQLite database in the data dir.
    assert not (kc.data_dir / "keycard.db").exists()

    kc.aws("iam", "create-user", "--user-name", "pg-alice")
    key = kc.aws("iam", "create-access-key", "--user-name", "pg-alice")["AccessKey"]
    alice = {"AccessKeyId": key["AccessKeyId"], "SecretAccessKey": key["SecretAccessKey"]}
    policy_arn = kc.aws(
        "iam", "create-policy", "--policy-name", "pg-read-users", "--policy-document", doc(allow("iam:GetUser"))
    )["Policy"]["Arn"]
    kc.aws("iam", "attach-user-policy", "--user-name", "pg-alice", "--policy-arn", policy_arn)
    kc.new_role(trust_for(f"arn:aws:iam::{ACCOUNT}:root"), name="pg-role", policy=allow("iam:ListRoles"))
    assert kc.aws("iam", "get-user", "--user-name", "pg-alice", creds=alice)["User"]["UserName"] == "pg-alice"

    kc.restart()
    assert not (kc.data_dir / "keycard.db").exists()

    iam = kc.client("iam")
    assert iam.get_user(UserName="pg-alice")["User"]["UserName"] == "pg-alice"
    assert iam.get_role(RoleName="pg-role")["Role"]["RoleName"] == "pg-role"
    attached = iam.list_attached_user_policies(UserName="pg-alice")["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [policy_arn]
    # Still enforced: the key works for what the policy allows, and only that.
    assert kc.aws("iam", "get-user", "--user-name", "pg-alice", creds=alice)["User"]["UserName"] == "pg-alice"
    kc.aws_error("iam", "list-users", creds=alice, code="AccessDenied")
    expect_error("AccessDenied", kc.client("iam", creds=alice).list_roles)

    # The audit trail is in PostgreSQL too, from before and after the restart.
    for name in ("CreateUser", "CreatePolicy", "AttachUserPolicy", "CreateRole"):
        assert name in event_names(
            kc, LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": name}]
        ), name
    denied = kc.client("cloudtrail").lookup_events(
        LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "ListUsers"}]
    )["Events"]
    assert any(key["AccessKeyId"] == e.get("AccessKeyId") for e in denied)
    by_user = event_names(kc, LookupAttributes=[{"AttributeKey": "Username", "AttributeValue": "pg-alice"}])
    assert "GetUser" in by_user and "ListUsers" in by_user


def offline(kc, *args):
    """A keycard command on the server's data dir (KEYCARD_STORE unset)."""
    env = {k: v for k, v in os.environ.items() if k != "KEYCARD_STORE"}
    return subprocess.run(
        [str(keycard_bin()), *args, "--data-dir", str(kc.data_dir)],
        capture_output=True, text=True, timeout=60, env=env,
    )


def test_offline_commands_read_the_same_store(make_keycard, pg_url):
    kc = make_keycard("--store", pg_url)
    kc.aws("iam", "create-user", "--user-name", "pg-tail")
    tail = offline(kc, "audit", "tail", "--no-follow", "--last", "100", "--store", pg_url)
    assert tail.returncode == 0, tail.stderr
    names = [json.loads(line)["eventName"] for line in tail.stdout.splitlines()]
    assert "CreateUser" in names
    # Without --store the data dir says where its state is, instead of
    # showing an empty SQLite database.
    refused = offline(kc, "audit", "exfiltration")
    assert refused.returncode != 0
    assert "pass --store" in refused.stderr
    assert pg_url.rsplit("/", 1)[-1] in refused.stderr


def test_a_bad_store_url_or_retention_refuses_to_start(make_keycard):
    with pytest.raises(RuntimeError, match="takes a postgres"):
        make_keycard("--store", "mysql://nowhere/db")
    with pytest.raises(RuntimeError, match="expected a positive duration"):
        make_keycard("--audit-retention", "0d")
