"""STS with the real CLI and boto3: caller identity, AssumeRole (trust,
identity policy, ExternalId, durations, chaining, session policies),
GetSessionToken, and cross-account access (seed 004) when the binary can
create a second account."""

import json
import subprocess

import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT, allow, doc, error_code, keycard_bin, trust_for, unique

ROOT_ARN = f"arn:aws:iam::{ACCOUNT}:root"


@pytest.fixture(scope="module")
def assumer(keycard):
    """Credentials of a user allowed to call sts:AssumeRole on any role (AWS
    refuses AssumeRole with root credentials)."""
    _, creds = keycard.new_user(name="assumer", policy=allow("sts:AssumeRole"))
    return creds


def session_creds(resp):
    c = resp["Credentials"]
    return {"AccessKeyId": c["AccessKeyId"], "SecretAccessKey": c["SecretAccessKey"], "SessionToken": c["SessionToken"]}


def test_caller_identity_root(keycard):
    ident = keycard.aws("sts", "get-caller-identity")
    assert ident == {"UserId": ACCOUNT, "Account": ACCOUNT, "Arn": ROOT_ARN}


def test_caller_identity_user(keycard):
    user, creds = keycard.new_user()
    ident = keycard.aws("sts", "get-caller-identity", creds=creds)
    assert ident["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/{user['UserName']}"
    assert ident["Account"] == ACCOUNT
    assert ident["UserId"] == user["UserId"]
    assert ident["UserId"].startswith("AIDA")


def test_assume_role_with_identity_policy(keycard):
    role = keycard.new_role(
        trust_for(ROOT_ARN),
        policy=allow("s3:ListAllMyBuckets"),
    )
    user, creds = keycard.new_user(policy=allow("sts:AssumeRole", role["Arn"]))

    resp = keycard.aws(
        "sts",
        "assume-role",
        "--role-arn",
        role["Arn"],
        "--role-session-name",
        "app-session",
        creds=creds,
    )
    c = resp["Credentials"]
    assert c["AccessKeyId"].startswith("ASIA")
    assert len(c["SecretAccessKey"]) >= 40
    assert c["SessionToken"]
    assert "Expiration" in c
    aru = resp["AssumedRoleUser"]
    assert aru["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{role['RoleName']}/app-session"
    assert aru["AssumedRoleId"] == f"{role['RoleId']}:app-session"

    sess = session_creds(resp)
    ident = keycard.aws("sts", "get-caller-identity", creds=sess)
    assert ident["Arn"] == aru["Arn"]
    assert ident["UserId"] == aru["AssumedRoleId"]
    assert ident["Account"] == ACCOUNT

    # The role's policy decides what the session may do, not the user's.
    buckets = keycard.aws("s3api", "list-buckets", creds=sess)
    assert "Buckets" in buckets
    err = keycard.aws_error("iam", "create-user", "--user-name", unique("nope"), creds=sess, code="AccessDenied")
    assert aru["Arn"] in err.stderr
    assert "iam:CreateUser" in err.stderr


def test_trust_naming_user_needs_no_identity_policy(keycard):
    """Same account: a trust policy naming the user's ARN is enough."""
    user, creds = keycard.new_user()
    role = keycard.new_role(trust_for(user["Arn"]))
    resp = keycard.client("sts", creds).assume_role(RoleArn=role["Arn"], RoleSessionName="direct")
    assert resp["AssumedRoleUser"]["Arn"].endswith(f"assumed-role/{role['RoleName']}/direct")


def test_assume_denied_without_identity_allow(keycard):
    """Trust names only the account root: the user also needs an identity
    policy allowing sts:AssumeRole."""
    role = keycard.new_role(trust_for(ROOT_ARN))
    user, creds = keycard.new_user()
    err = keycard.aws_error(
        "sts", "assume-role", "--role-arn", role["Arn"], "--role-session-name", "sess", creds=creds, code="AccessDenied"
    )
    assert "sts:AssumeRole" in err.stderr
    assert user["Arn"] in err.stderr


def test_assume_denied_when_trust_does_not_name_caller(keycard):
    other, _ = keycard.new_user()
    role = keycard.new_role(trust_for(other["Arn"]))
    _, creds = keycard.new_user(policy=allow("sts:AssumeRole", "*"))
    with pytest.raises(ClientError) as ei:
        keycard.client("sts", creds).assume_role(RoleArn=role["Arn"], RoleSessionName="sess")
    assert error_code(ei.value) == "AccessDenied"


def test_assume_missing_role_is_access_denied(keycard):
    _, creds = keycard.new_user(policy=allow("sts:AssumeRole", "*"))
    with pytest.raises(ClientError) as ei:
        keycard.client("sts", creds).assume_role(
            RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{unique('missing')}", RoleSessionName="sess"
        )
    assert error_code(ei.value) == "AccessDenied"


def test_root_cannot_assume_role(keycard):
    role = keycard.new_role(trust_for(ROOT_ARN))
    err = keycard.aws_error(
        "sts", "assume-role", "--role-arn", role["Arn"], "--role-session-name", "sess", code="AccessDenied"
    )
    assert "Roles may not be assumed by root accounts" in err.stderr


def test_duration_over_role_max_is_validation_error(keycard, assumer):
    role = keycard.new_role(trust_for(ROOT_ARN))  # MaxSessionDuration defaults to 3600
    sts = keycard.client("sts", assumer)
    assert sts.assume_role(RoleArn=role["Arn"], RoleSessionName="ok", DurationSeconds=3600)
    with pytest.raises(ClientError) as ei:
        sts.assume_role(RoleArn=role["Arn"], RoleSessionName="long", DurationSeconds=7200)
    assert error_code(ei.value) == "ValidationError"
    assert "MaxSessionDuration" in ei.value.response["Error"]["Message"]

    long_role = keycard.new_role(trust_for(ROOT_ARN), MaxSessionDuration=43200)
    resp = sts.assume_role(RoleArn=long_role["Arn"], RoleSessionName="long", DurationSeconds=43200)
    assert resp["Credentials"]["AccessKeyId"].startswith("ASIA")


def test_role_chaining_limited_to_one_hour(keycard, assumer):
    first = keycard.new_role(trust_for(ROOT_ARN), policy=allow("sts:AssumeRole"))
    second = keycard.new_role(trust_for(first["Arn"]), MaxSessionDuration=43200)
    sts = keycard.client("sts", assumer)
    s1 = session_creds(sts.assume_role(RoleArn=first["Arn"], RoleSessionName="one"))
    sts1 = keycard.client("sts", s1)
    with pytest.raises(ClientError) as ei:
        sts1.assume_role(RoleArn=second["Arn"], RoleSessionName="two", DurationSeconds=7200)
    assert error_code(ei.value) == "ValidationError"
    resp = sts1.assume_role(RoleArn=second["Arn"], RoleSessionName="two", DurationSeconds=3600)
    ident = keycard.client("sts", session_creds(resp)).get_caller_identity()
    assert ident["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{second['RoleName']}/two"


def test_external_id_condition(keycard, assumer):
    role = keycard.new_role(trust_for(ROOT_ARN, StringEquals={"sts:ExternalId": "ext-12345"}))
    base = ["sts", "assume-role", "--role-arn", role["Arn"], "--role-session-name", "sess"]
    keycard.aws_error(*base, creds=assumer, code="AccessDenied")
    keycard.aws_error(*base, "--external-id", "wrong-id", creds=assumer, code="AccessDenied")
    ok = keycard.aws(*base, "--external-id", "ext-12345", creds=assumer)
    assert ok["Credentials"]["AccessKeyId"].startswith("ASIA")


def test_session_policy_narrows(keycard, assumer):
    role = keycard.new_role(
        trust_for(ROOT_ARN),
        policy=allow(["s3:ListAllMyBuckets", "iam:ListUsers"]),
    )
    # Without a session policy the role can do both.
    full = keycard.aws("sts", "assume-role", "--role-arn", role["Arn"], "--role-session-name", "full", creds=assumer)
    keycard.aws("iam", "list-users", creds=session_creds(full))
    keycard.aws("s3api", "list-buckets", creds=session_creds(full))

    narrow = keycard.aws(
        "sts",
        "assume-role",
        "--role-arn",
        role["Arn"],
        "--role-session-name",
        "narrow",
        "--policy",
        doc(allow("s3:ListAllMyBuckets")),
        creds=assumer,
    )
    assert "PackedPolicySize" in narrow
    sess = session_creds(narrow)
    keycard.aws("s3api", "list-buckets", creds=sess)
    keycard.aws_error("iam", "list-users", creds=sess, code="AccessDenied")

    # A session policy never widens: iam:CreateUser is in neither.
    wide = keycard.client("sts", assumer).assume_role(
        RoleArn=role["Arn"], RoleSessionName="wide", Policy=doc(allow("*"))
    )
    with pytest.raises(ClientError) as ei:
        keycard.client("iam", session_creds(wide)).create_user(UserName=unique("u"))
    assert error_code(ei.value) == "AccessDenied"


def test_get_session_token_for_user(keycard):
    user, creds = keycard.new_user(policy=allow("s3:ListAllMyBuckets"))
    resp = keycard.aws("sts", "get-session-token", "--duration-seconds", "900", creds=creds)
    c = resp["Credentials"]
    assert c["AccessKeyId"].startswith("ASIA")
    assert c["SessionToken"]
    sess = session_creds(resp)
    ident = keycard.aws("sts", "get-caller-identity", creds=sess)
    assert ident["Arn"] == user["Arn"]
    assert ident["Account"] == ACCOUNT
    keycard.aws("s3api", "list-buckets", creds=sess)


def test_session_token_tampered_is_refused(keycard, assumer):
    role = keycard.new_role(trust_for(ROOT_ARN))
    sess = session_creds(keycard.client("sts", assumer).assume_role(RoleArn=role["Arn"], RoleSessionName="tamper"))
    tok = sess["SessionToken"]
    mid = len(tok) // 2
    sess["SessionToken"] = tok[:mid] + ("A" if tok[mid] != "A" else "B") + tok[mid + 1 :]
    with pytest.raises(ClientError) as ei:
        keycard.client("sts", sess).get_caller_identity()
    assert error_code(ei.value) == "InvalidClientTokenId"
    # Without its token an ASIA key is no credential at all.
    del sess["SessionToken"]
    with pytest.raises(ClientError) as ei:
        keycard.client("sts", sess).get_caller_identity()
    assert error_code(ei.value) == "InvalidClientTokenId"


# ---- cross-account (seed 004) -------------------------------------------------


def create_account(keycard):
    """`keycard accounts create --data-dir DIR` -> JSON
    {accountId, accessKeyId, secretAccessKey}. A failure fails the test."""
    p = subprocess.run(
        [str(keycard_bin()), "accounts", "create", "--data-dir", str(keycard.data_dir)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert p.returncode == 0, f"keycard accounts create failed: {p.stderr.strip()[:300]}"
    out = json.loads(p.stdout)
    return out["accountId"], {"AccessKeyId": out["accessKeyId"], "SecretAccessKey": out["secretAccessKey"]}


def test_cross_account_assume_role(keycard):
    b_account, b_root = create_account(keycard)
    assert b_account != ACCOUNT
    ident = keycard.client("sts", b_root).get_caller_identity()
    assert ident["Arn"] == f"arn:aws:iam::{b_account}:root"

    # Account B: a role trusting account A (the default account).
    iam_b = keycard.client("iam", b_root)
    role_name = unique("xacct")
    role_arn = iam_b.create_role(RoleName=role_name, AssumeRolePolicyDocument=doc(trust_for(ROOT_ARN)))["Role"]["Arn"]
    assert role_arn == f"arn:aws:iam::{b_account}:role/{role_name}"
    iam_b.put_role_policy(RoleName=role_name, PolicyName="p", PolicyDocument=doc(allow("s3:ListAllMyBuckets")))

    # Account A: a user without an identity allow is refused ...
    _, plain = keycard.new_user()
    with pytest.raises(ClientError) as ei:
        keycard.client("sts", plain).assume_role(RoleArn=role_arn, RoleSessionName="sess")
    assert error_code(ei.value) == "AccessDenied"

    # ... one with it gets in, and acts as the role in account B.
    _, creds = keycard.new_user(policy=allow("sts:AssumeRole", role_arn))
    resp = keycard.aws("sts", "assume-role", "--role-arn", role_arn, "--role-session-name", "xs", creds=creds)
    assert resp["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{b_account}:assumed-role/{role_name}/xs"
    ident = keycard.aws("sts", "get-caller-identity", creds=session_creds(resp))
    assert ident["Account"] == b_account

    # A role in B that trusts only B's own root refuses account A's user.
    other = unique("bonly")
    arn2 = iam_b.create_role(
        RoleName=other, AssumeRolePolicyDocument=doc(trust_for(f"arn:aws:iam::{b_account}:root"))
    )["Role"]["Arn"]
    _, wide = keycard.new_user(policy=allow("sts:AssumeRole", "*"))
    with pytest.raises(ClientError) as ei:
        keycard.client("sts", wide).assume_role(RoleArn=arn2, RoleSessionName="sess")
    assert error_code(ei.value) == "AccessDenied"
