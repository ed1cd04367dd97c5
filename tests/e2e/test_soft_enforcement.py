"""Soft enforcement and the denial report (issue 11, first part).

``--enforcement soft`` lets a call that would be denied go ahead; its audit
event and a log line say it would have been denied and why. Per principal:
``--soft-principal ARN`` or the IAM tag ``keycard:enforcement=soft`` on the
user or role (never a session tag). ``keycard audit denials`` groups every
denial and would-be denial by principal and action."""

import json
import subprocess

import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT, EC2_TRUST, allow, creds_env, doc, keycard_bin, unique

NOTHING = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "ec2:RunInstances", "Resource": "*"}]}


def denials(kc, *extra):
    p = subprocess.run(
        [str(keycard_bin()), "audit", "denials", "--data-dir", str(kc.data_dir), "--json", *extra],
        capture_output=True, text=True, timeout=60,
    )
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)["principals"]


def action_of(report, principal, action):
    for p in report:
        if p["principal"] == principal:
            for a in p["actions"]:
                if a["action"] == action:
                    return a
    return None


def events_of(kc, key_id):
    return [json.loads(e["CloudTrailEvent"]) for e in kc.client("cloudtrail").lookup_events(
        LookupAttributes=[{"AttributeKey": "AccessKeyId", "AttributeValue": key_id}])["Events"]]


@pytest.fixture(scope="module")
def soft(make_keycard_module):
    return make_keycard_module("--enforcement", "soft")


def test_soft_lets_denied_calls_through_and_says_why(soft):
    user, creds = soft.new_user()
    arn = user["Arn"]
    # The AWS CLI and boto3, with no permission at all: the calls go ahead.
    users = soft.aws("iam", "list-users", env_extra=creds_env(creds))["Users"]
    assert any(u["UserName"] == user["UserName"] for u in users)
    soft.client("s3", creds=creds).create_bucket(Bucket=unique("soft"))
    ev = [e for e in events_of(soft, creds["AccessKeyId"]) if e["eventName"] == "ListUsers"][0]
    assert "errorCode" not in ev
    d = ev["keycardAuthorization"][0]
    assert d["action"] == "iam:ListUsers" and d["decision"] == "ImplicitDeny"
    assert d["overriddenBy"] == "soft enforcement"
    assert d["missing"] == ["identity-based policy"]
    a = action_of(denials(soft, "--principal", arn), arn, "iam:ListUsers")
    assert a and a["wouldBeDenied"] >= 1 and a["denied"] == 0 and "ListUsers" in a["operations"]
    assert action_of(denials(soft, "--principal", arn), arn, "s3:CreateBucket")["wouldBeDenied"] == 1
    assert "soft enforcement: would be denied" in soft.log_tail(200)
    assert "iam:ListUsers" in soft.log_tail(200)


def test_soft_still_names_explicit_denies(soft):
    user, creds = soft.new_user(policy=NOTHING)
    ec2 = soft.client("ec2", creds=creds)
    ec2.run_instances(ImageId="ami-0abcdef1234567890", InstanceType="t3.micro", MinCount=1, MaxCount=1)
    a = action_of(denials(soft), user["Arn"], "ec2:RunInstances")
    # (RunInstances decides each of its resources: every one was denied.)
    assert list(a["decisions"]) == ["ExplicitDeny"] and a["wouldBeDenied"] == a["decisions"]["ExplicitDeny"]
    assert a["denyingStatements"] and a["denyingStatements"][0].endswith(f"user/{user['UserName']}#inline/inline#")


def test_enforced_is_the_default_and_the_report_lists_real_denials(keycard):
    user, creds = keycard.new_user()
    keycard.aws_error("iam", "list-users", code="AccessDenied", env_extra=creds_env(creds))
    a = action_of(denials(keycard, "--principal", user["Arn"]), user["Arn"], "iam:ListUsers")
    assert a["denied"] == 1 and a["wouldBeDenied"] == 0
    assert denials(keycard, "--principal", "arn:aws:iam::123456789012:user/nobody") == []
    p = subprocess.run([str(keycard_bin()), "audit", "denials", "--data-dir", str(keycard.data_dir),
                        "--principal", user["Arn"]], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "iam:ListUsers" in p.stdout and "identity-based policy" in p.stdout
    p = subprocess.run([str(keycard_bin()), "audit", "denials", "--data-dir", str(keycard.data_dir),
                        "--since", "3w"], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "unit" in p.stderr


@pytest.fixture(scope="module")
def per_principal(make_keycard_module, tmp_path_factory):
    return make_keycard_module("--soft-principal", f"arn:aws:iam::{ACCOUNT}:user/listed")


def test_tagged_role_is_soft_untagged_is_not(per_principal):
    kc = per_principal
    iam = kc.client("iam")
    soft_role, soft_prof = kc.instance_profile()
    iam.tag_role(RoleName=soft_role["RoleName"], Tags=[{"Key": "keycard:enforcement", "Value": "soft"}])
    hard_role, hard_prof = kc.instance_profile()
    a = kc.run_instance(soft_prof["InstanceProfileName"])["InstanceId"]
    b = kc.run_instance(hard_prof["InstanceProfileName"])["InstanceId"]
    kc.exec_aws(a, "iam", "list-roles")
    p = kc.exec_aws(b, "iam", "list-roles", check=False)
    assert p.returncode != 0 and "AccessDenied" in p.stderr
    session = f"arn:aws:sts::{ACCOUNT}:assumed-role/{soft_role['RoleName']}/{a}"
    assert action_of(denials(kc, "--principal", session), session, "iam:ListRoles")["wouldBeDenied"] == 1


def test_listed_principal_is_soft(per_principal):
    kc = per_principal
    iam = kc.client("iam")
    iam.create_user(UserName="listed")
    key = iam.create_access_key(UserName="listed")["AccessKey"]
    kc.client("iam", creds=key).list_users()
    _, other = kc.new_user()
    with pytest.raises(ClientError) as e:
        kc.client("iam", creds=other).list_users()
    assert e.value.response["Error"]["Code"] == "AccessDenied"


def test_a_session_tag_cannot_make_a_session_soft(per_principal):
    kc = per_principal
    user, creds = kc.new_user(policy=allow(["sts:AssumeRole", "sts:TagSession"]))
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": user["Arn"]}, "Action": ["sts:AssumeRole", "sts:TagSession"]}]}
    role = kc.new_role(trust)
    out = kc.client("sts", creds=creds).assume_role(
        RoleArn=role["Arn"], RoleSessionName="sess", Tags=[{"Key": "keycard:enforcement", "Value": "soft"}])
    c = out["Credentials"]
    with pytest.raises(ClientError) as e:
        kc.client("iam", creds=c).list_users()
    assert e.value.response["Error"]["Code"] == "AccessDenied"


def test_the_report_names_the_context_keys_a_denial_lacked(keycard):
    # Allowed only from a VPC: a call from outside lacks aws:SourceVpc.
    policy = allow("iam:ListUsers", Condition={"StringEquals": {"aws:SourceVpc": "vpc-0abc"}})
    user, creds = keycard.new_user(policy=policy)
    with pytest.raises(ClientError):
        keycard.client("iam", creds=creds).list_users()
    a = action_of(denials(keycard, "--principal", user["Arn"]), user["Arn"], "iam:ListUsers")
    assert a["missingContextKeys"] == ["aws:SourceVpc"]
    # A plain denial (no condition involved) lacks no key.
    user2, creds2 = keycard.new_user()
    with pytest.raises(ClientError):
        keycard.client("iam", creds=creds2).list_users()
    assert action_of(denials(keycard, "--principal", user2["Arn"]), user2["Arn"], "iam:ListUsers")["missingContextKeys"] == []
