"""`--compat moto`: moto server's control endpoints, so suites written
against `moto_server` run unchanged: enforcement off at start,
/moto-api/reset-auth to turn it on after N requests, /moto-api/reset to
wipe state. Without the flag none of this exists."""

import json

import pytest
from botocore.exceptions import ClientError

from conftest import allow, doc, error_code, raw_http

UNKNOWN = {"AccessKeyId": "AKIAIOSFODNN7EXAMPLE", "SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}


@pytest.fixture
def moto_kc(make_keycard):
    return make_keycard("--compat", "moto")


def test_reset_auth_enforces_after_count(moto_kc):
    kc = moto_kc
    # Enforcement is off at start: any key works.
    kc.client("iam", UNKNOWN).create_user(UserName="early")

    status, headers, body = raw_http("POST", kc.endpoint + "/moto-api/reset-auth", b"4")
    assert status == 200, body
    out = json.loads(body)
    assert out["status"] == "ok"
    assert "PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT" in out

    iam = kc.client("iam", UNKNOWN)
    iam.create_user(UserName="bob")  # 1
    key = iam.create_access_key(UserName="bob")["AccessKey"]  # 2
    iam.put_user_policy(UserName="bob", PolicyName="read", PolicyDocument=doc(allow("iam:ListUsers")))  # 3
    assert "bob" in [u["UserName"] for u in iam.list_users()["Users"]]  # 4

    with pytest.raises(ClientError) as ei:
        iam.list_users()  # 5: enforced now
    assert error_code(ei.value) == "InvalidClientTokenId"

    bob = kc.client("iam", {"AccessKeyId": key["AccessKeyId"], "SecretAccessKey": key["SecretAccessKey"]})
    names = [u["UserName"] for u in bob.list_users()["Users"]]
    assert {"early", "bob"} <= set(names)
    with pytest.raises(ClientError) as ei:
        bob.create_user(UserName="mallory")
    assert error_code(ei.value) == "AccessDenied"

    # Root (from the credentials file) is still root.
    kc.client("iam").create_user(UserName="by-root")

    # The CLI sees the same enforcement.
    kc.aws_error("iam", "list-users", creds=UNKNOWN, code="InvalidClientTokenId")


def test_reset_wipes_state(moto_kc):
    kc = moto_kc
    iam = kc.client("iam", UNKNOWN)
    s3 = kc.client("s3", UNKNOWN)
    iam.create_user(UserName="to-wipe")
    s3.create_bucket(Bucket="wipe-bucket")
    s3.put_object(Bucket="wipe-bucket", Key="k", Body=b"x")
    assert "to-wipe" in [u["UserName"] for u in iam.list_users()["Users"]]

    status, _, body = raw_http("POST", kc.endpoint + "/moto-api/reset", b"")
    assert status == 200, body

    assert "to-wipe" not in [u["UserName"] for u in iam.list_users()["Users"]]
    assert "wipe-bucket" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    # Still usable after the reset.
    iam.create_user(UserName="to-wipe")


def test_moto_api_absent_without_flag(keycard):
    keycard.client("iam").create_user(UserName="survivor")
    for path, body in (("/moto-api/reset", b""), ("/moto-api/reset-auth", b"0")):
        status, _, resp = raw_http("POST", keycard.endpoint + path, body)
        assert 400 <= status < 500, (path, status, resp)
    assert keycard.client("iam").get_user(UserName="survivor")["User"]["UserName"] == "survivor"
    with pytest.raises(ClientError) as ei:
        keycard.client("iam", UNKNOWN).list_users()
    assert error_code(ei.value) == "InvalidClientTokenId"


def _reset_auth(kc, value):
    """POST /moto-api/reset-auth exactly as moto's
    ``set_initial_no_auth_action_count`` does: ``str(value)`` as the body,
    returning the previous count it reads back."""
    status, _, body = raw_http("POST", kc.endpoint + "/moto-api/reset-auth", str(value).encode("utf-8"))
    assert status == 200, body
    return json.loads(body)["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"]


def test_reset_auth_round_trip_restores_no_enforcement(moto_kc):
    """moto's decorator sets a count, runs the test, then posts back the
    previous value it read (``inf`` at start); enforcement is off again."""
    kc = moto_kc
    iam = kc.client("iam", UNKNOWN)

    original = _reset_auth(kc, 0)  # the decorator's first call
    assert original == "inf"
    with pytest.raises(ClientError) as ei:
        iam.list_users()
    assert error_code(ei.value) == "InvalidClientTokenId"

    assert _reset_auth(kc, original) == "0"  # the decorator's `finally`
    iam.create_user(UserName="after-restore")
    assert "after-restore" in [u["UserName"] for u in iam.list_users()["Users"]]

    # moto's own spelling of infinity after float() round trips too.
    _reset_auth(kc, 3)
    assert _reset_auth(kc, float("inf")) == "3"
    assert _reset_auth(kc, "Infinity") == "inf"
    iam.get_user(UserName="after-restore")
