"""Access-key and role last-used data (GetAccessKeyLastUsed, GetRole's
RoleLastUsed): set when the key or a role session makes a call, with the
service and region, and still there after a restart."""

from conftest import ACCOUNT, REGION, allow, trust_for


def key_last_used(kc, key_id):
    return kc.client("iam").get_access_key_last_used(AccessKeyId=key_id)["AccessKeyLastUsed"]


def test_access_key_last_used_survives_restart(keycard_fresh):
    kc = keycard_fresh
    user, creds = kc.new_user(policy=allow("iam:GetUser"))
    before = key_last_used(kc, creds["AccessKeyId"])
    assert before["ServiceName"] == "N/A" and before["Region"] == "N/A"
    assert "LastUsedDate" not in before

    kc.client("iam", creds).get_user(UserName=user["UserName"])
    used = key_last_used(kc, creds["AccessKeyId"])
    assert used["ServiceName"] == "iam" and used["Region"] == REGION, used
    assert "LastUsedDate" in used

    assert kc.restart() == 0
    after = key_last_used(kc, creds["AccessKeyId"])
    assert after == used

    # The CLI sees the same.
    out = kc.aws("iam", "get-access-key-last-used", "--access-key-id", creds["AccessKeyId"])
    assert out["UserName"] == user["UserName"]
    assert out["AccessKeyLastUsed"]["ServiceName"] == "iam"


def test_role_last_used_after_session_call_and_restart(keycard_fresh):
    kc = keycard_fresh
    user, creds = kc.new_user(policy=allow("sts:AssumeRole"))
    role = kc.new_role(trust_for(user["Arn"]), policy=allow("iam:ListUsers"))
    iam = kc.client("iam")
    assert iam.get_role(RoleName=role["RoleName"])["Role"]["RoleLastUsed"] == {}

    # Assuming the role is the user's call, not the role's.
    c = kc.client("sts", creds).assume_role(RoleArn=role["Arn"], RoleSessionName="last-used")["Credentials"]
    assert iam.get_role(RoleName=role["RoleName"])["Role"]["RoleLastUsed"] == {}

    sess = {k: c[k] for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")}
    boto = kc.session(sess).client("iam", region_name="eu-west-1", endpoint_url=kc.endpoint)
    boto.list_users()
    last = iam.get_role(RoleName=role["RoleName"])["Role"]["RoleLastUsed"]
    assert last["Region"] == "eu-west-1", last
    assert "LastUsedDate" in last

    assert kc.restart() == 0
    assert kc.client("iam").get_role(RoleName=role["RoleName"])["Role"]["RoleLastUsed"] == last
    cli = kc.aws("iam", "get-role", "--role-name", role["RoleName"])
    assert cli["Role"]["RoleLastUsed"]["Region"] == "eu-west-1"
    assert cli["Role"]["Arn"] == f"arn:aws:iam::{ACCOUNT}:role/{role['RoleName']}"
