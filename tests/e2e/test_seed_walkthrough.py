"""The user stories' walkthroughs, typed as a person would type them, with
the real AWS CLI.

Seed 000: least-privilege S3 read policy, EC2 role, instance profile.
Seed 002: IAMReadOnlyAccess demo (with an IAM user's keys in place of an
instance, until EC2 lands): read works, write is denied, and detaching the
policy takes effect immediately.
"""

import json

import pytest

from conftest import ACCOUNT, EC2_TRUST, IAM_READ_ONLY, SEED_POLICY


@pytest.fixture(scope="module")
def seed000(keycard):
    """Run seed 000's steps 1-3 once; the tests below check the results."""
    work = keycard.workdir
    # The files exactly as the walkthrough shows them (indented JSON).
    (work / "policy.json").write_text(json.dumps(SEED_POLICY, indent=2))
    (work / "trust-policy.json").write_text(json.dumps(EC2_TRUST, indent=2))
    out = {}
    out["policy"] = keycard.aws(
        "iam", "create-policy", "--policy-name", "EC2S3ReadPolicy", "--policy-document", "file://policy.json"
    )
    out["role"] = keycard.aws(
        "iam",
        "create-role",
        "--role-name",
        "EC2S3AccessRole",
        "--assume-role-policy-document",
        "file://trust-policy.json",
    )
    out["attach"] = keycard.aws(
        "iam",
        "attach-role-policy",
        "--role-name",
        "EC2S3AccessRole",
        "--policy-arn",
        f"arn:aws:iam::{ACCOUNT}:policy/EC2S3ReadPolicy",
    )
    out["profile"] = keycard.aws("iam", "create-instance-profile", "--instance-profile-name", "EC2S3InstanceProfile")
    out["add"] = keycard.aws(
        "iam",
        "add-role-to-instance-profile",
        "--instance-profile-name",
        "EC2S3InstanceProfile",
        "--role-name",
        "EC2S3AccessRole",
    )
    return out


def test_create_policy_shape(seed000):
    p = seed000["policy"]["Policy"]
    assert p["PolicyName"] == "EC2S3ReadPolicy"
    assert p["Arn"] == f"arn:aws:iam::{ACCOUNT}:policy/EC2S3ReadPolicy"
    assert p["PolicyId"].startswith("ANPA")
    assert p["Path"] == "/"
    assert p["DefaultVersionId"] == "v1"
    assert p["AttachmentCount"] == 0
    assert p["IsAttachable"] is True
    assert "CreateDate" in p


def test_create_role_shape(seed000, keycard):
    r = seed000["role"]["Role"]
    assert r["RoleName"] == "EC2S3AccessRole"
    assert r["Arn"] == f"arn:aws:iam::{ACCOUNT}:role/EC2S3AccessRole"
    assert r["RoleId"].startswith("AROA")
    assert r["Path"] == "/"
    assert "CreateDate" in r
    # botocore decodes the URL-encoded document into an object.
    assert r["AssumeRolePolicyDocument"] == EC2_TRUST

    got = keycard.aws("iam", "get-role", "--role-name", "EC2S3AccessRole")["Role"]
    assert got["RoleId"] == r["RoleId"]
    assert got["Arn"] == r["Arn"]
    assert got["AssumeRolePolicyDocument"] == EC2_TRUST
    assert got["MaxSessionDuration"] == 3600


def test_attached_role_policies(seed000, keycard):
    assert seed000["attach"] is None  # attach-role-policy prints nothing
    att = keycard.aws("iam", "list-attached-role-policies", "--role-name", "EC2S3AccessRole")
    assert att["AttachedPolicies"] == [
        {"PolicyName": "EC2S3ReadPolicy", "PolicyArn": f"arn:aws:iam::{ACCOUNT}:policy/EC2S3ReadPolicy"}
    ]
    pol = keycard.aws("iam", "get-policy", "--policy-arn", f"arn:aws:iam::{ACCOUNT}:policy/EC2S3ReadPolicy")
    assert pol["Policy"]["AttachmentCount"] == 1
    ver = keycard.aws(
        "iam",
        "get-policy-version",
        "--policy-arn",
        f"arn:aws:iam::{ACCOUNT}:policy/EC2S3ReadPolicy",
        "--version-id",
        "v1",
    )["PolicyVersion"]
    assert ver["Document"] == SEED_POLICY
    assert ver["IsDefaultVersion"] is True


def test_instance_profile(seed000, keycard):
    ip = seed000["profile"]["InstanceProfile"]
    assert ip["InstanceProfileName"] == "EC2S3InstanceProfile"
    assert ip["Arn"] == f"arn:aws:iam::{ACCOUNT}:instance-profile/EC2S3InstanceProfile"
    assert ip["InstanceProfileId"].startswith("AIPA")
    assert ip["Path"] == "/"
    assert ip["Roles"] == []
    assert seed000["add"] is None

    got = keycard.aws("iam", "get-instance-profile", "--instance-profile-name", "EC2S3InstanceProfile")
    roles = got["InstanceProfile"]["Roles"]
    assert [r["RoleName"] for r in roles] == ["EC2S3AccessRole"]
    assert roles[0]["Arn"] == f"arn:aws:iam::{ACCOUNT}:role/EC2S3AccessRole"

    for_role = keycard.aws("iam", "list-instance-profiles-for-role", "--role-name", "EC2S3AccessRole")
    assert [p["InstanceProfileName"] for p in for_role["InstanceProfiles"]] == ["EC2S3InstanceProfile"]


def test_instance_profile_holds_one_role(seed000, keycard):
    keycard.aws(
        "iam",
        "create-role",
        "--role-name",
        "SecondRole",
        "--assume-role-policy-document",
        "file://trust-policy.json",
    )
    err = keycard.aws_error(
        "iam",
        "add-role-to-instance-profile",
        "--instance-profile-name",
        "EC2S3InstanceProfile",
        "--role-name",
        "SecondRole",
        code="LimitExceeded",
    )
    assert "InstanceSessionsPerInstanceProfile" in err.stderr
    got = keycard.aws("iam", "get-instance-profile", "--instance-profile-name", "EC2S3InstanceProfile")
    assert [r["RoleName"] for r in got["InstanceProfile"]["Roles"]] == ["EC2S3AccessRole"]


def test_seed002_iam_read_only_demo(keycard):
    user = keycard.aws("iam", "create-user", "--user-name", "demo")["User"]
    assert user["UserName"] == "demo"
    assert user["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/demo"
    assert user["UserId"].startswith("AIDA")

    key = keycard.aws("iam", "create-access-key", "--user-name", "demo")["AccessKey"]
    assert key["UserName"] == "demo"
    assert key["AccessKeyId"].startswith("AKIA")
    assert key["Status"] == "Active"
    assert len(key["SecretAccessKey"]) == 40
    demo = {"AccessKeyId": key["AccessKeyId"], "SecretAccessKey": key["SecretAccessKey"]}

    # Before any policy: nothing is allowed.
    keycard.aws_error("iam", "list-users", creds=demo, code="AccessDenied")

    keycard.aws("iam", "attach-user-policy", "--user-name", "demo", "--policy-arn", IAM_READ_ONLY)

    users = keycard.aws("iam", "list-users", creds=demo)["Users"]
    assert "demo" in [u["UserName"] for u in users]
    roles = keycard.aws("iam", "list-roles", creds=demo)
    assert isinstance(roles["Roles"], list)

    err = keycard.aws_error("iam", "create-user", "--user-name", "x", creds=demo, code="AccessDenied")
    assert "is not authorized to perform: iam:CreateUser" in err.stderr
    assert f"arn:aws:iam::{ACCOUNT}:user/demo" in err.stderr
    keycard.aws_error("iam", "get-user", "--user-name", "x", code="NoSuchEntity")

    keycard.aws("iam", "detach-user-policy", "--user-name", "demo", "--policy-arn", IAM_READ_ONLY)
    err = keycard.aws_error("iam", "list-users", creds=demo, code="AccessDenied")
    assert "is not authorized to perform: iam:ListUsers" in err.stderr
