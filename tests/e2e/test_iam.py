"""IAM authorization as AWS evaluates it, observed through boto3: explicit
deny, groups, policy variables, conditions, permissions boundaries,
managed policy versions, changes taking effect at once, and list
pagination."""

import pytest

from conftest import ACCOUNT, allow, doc, expect_error, trust_for, unique


def stmt(effect, action, resource="*", **extra):
    s = {"Effect": effect, "Action": action, "Resource": resource}
    s.update(extra)
    return s


def policy(*statements):
    return {"Version": "2012-10-17", "Statement": list(statements)}


def test_explicit_deny_beats_allow(keycard):
    user, creds = keycard.new_user(policy=policy(stmt("Allow", "iam:*"), stmt("Deny", "iam:CreateUser")))
    iam = keycard.client("iam", creds)
    iam.list_users()
    e = expect_error("AccessDenied", iam.create_user, UserName=unique("x"))
    msg = e.response["Error"]["Message"]
    assert f"User: {user['Arn']} is not authorized to perform: iam:CreateUser" in msg
    assert "explicit deny" in msg
    e = expect_error("AccessDenied", keycard.client("iam", keycard.new_user()[1]).list_users)
    assert "no identity-based policy allows" in e.response["Error"]["Message"]


def test_get_caller_identity_never_denied(keycard):
    user, creds = keycard.new_user(policy=policy(stmt("Deny", "*")))
    assert keycard.client("sts", creds).get_caller_identity()["Arn"] == user["Arn"]


def test_group_policies_apply_to_members(keycard):
    root = keycard.client("iam")
    group = unique("readers")
    root.create_group(GroupName=group)
    root.put_group_policy(GroupName=group, PolicyName="read", PolicyDocument=doc(allow("iam:ListUsers")))
    user, creds = keycard.new_user()
    iam = keycard.client("iam", creds)
    expect_error("AccessDenied", iam.list_users)
    root.add_user_to_group(GroupName=group, UserName=user["UserName"])
    assert [u["UserName"] for u in root.get_group(GroupName=group)["Users"]] == [user["UserName"]]
    iam.list_users()
    root.remove_user_from_group(GroupName=group, UserName=user["UserName"])
    expect_error("AccessDenied", iam.list_users)


def test_policy_variable_username(keycard):
    """Each user may manage only their own access keys."""
    own = policy(stmt("Allow", ["iam:ListAccessKeys", "iam:CreateAccessKey"],
                      f"arn:aws:iam::{ACCOUNT}:user/${{aws:username}}"))
    alice, creds = keycard.new_user(policy=own)
    bob, _ = keycard.new_user()
    iam = keycard.client("iam", creds)
    keys = iam.list_access_keys(UserName=alice["UserName"])["AccessKeyMetadata"]
    assert [k["AccessKeyId"] for k in keys] == [creds["AccessKeyId"]]
    # Without UserName the caller's own keys are meant.
    assert [k["AccessKeyId"] for k in iam.list_access_keys()["AccessKeyMetadata"]] == [creds["AccessKeyId"]]
    expect_error("AccessDenied", iam.list_access_keys, UserName=bob["UserName"])


def test_condition_on_source_ip(keycard):
    _, creds = keycard.new_user(policy=policy(
        stmt("Allow", "iam:ListUsers", Condition={"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}),
        stmt("Allow", "iam:ListRoles", Condition={"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}}),
    ))
    iam = keycard.client("iam", creds)
    iam.list_users()
    expect_error("AccessDenied", iam.list_roles)


def test_permissions_boundary_caps_identity_policy(keycard):
    root = keycard.client("iam")
    boundary = root.create_policy(PolicyName=unique("Boundary"),
                                  PolicyDocument=doc(allow(["iam:ListUsers", "iam:GetUser"])))["Policy"]
    user, creds = keycard.new_user(policy=allow("iam:*"))
    iam = keycard.client("iam", creds)
    iam.list_roles()
    root.put_user_permissions_boundary(UserName=user["UserName"], PermissionsBoundary=boundary["Arn"])
    got = root.get_user(UserName=user["UserName"])["User"]
    assert got["PermissionsBoundary"]["PermissionsBoundaryArn"] == boundary["Arn"]
    iam.list_users()
    expect_error("AccessDenied", iam.list_roles)
    root.delete_user_permissions_boundary(UserName=user["UserName"])
    iam.list_roles()


def test_managed_policy_versions(keycard):
    root = keycard.client("iam")
    pol = root.create_policy(PolicyName=unique("Versioned"), PolicyDocument=doc(allow("iam:ListUsers")))["Policy"]
    user, creds = keycard.new_user(managed=[pol["Arn"]])
    iam = keycard.client("iam", creds)
    iam.list_users()
    expect_error("AccessDenied", iam.list_roles)

    v2 = root.create_policy_version(PolicyArn=pol["Arn"], PolicyDocument=doc(allow("iam:ListRoles")),
                                    SetAsDefault=True)["PolicyVersion"]
    assert v2["VersionId"] == "v2"
    assert v2["IsDefaultVersion"] is True
    iam.list_roles()
    expect_error("AccessDenied", iam.list_users)

    root.set_default_policy_version(PolicyArn=pol["Arn"], VersionId="v1")
    iam.list_users()
    versions = root.list_policy_versions(PolicyArn=pol["Arn"])["Versions"]
    assert sorted((v["VersionId"], v["IsDefaultVersion"]) for v in versions) == [("v1", True), ("v2", False)]
    expect_error("DeleteConflict", root.delete_policy_version, PolicyArn=pol["Arn"], VersionId="v1")
    root.delete_policy_version(PolicyArn=pol["Arn"], VersionId="v2")

    for i in range(4):
        root.create_policy_version(PolicyArn=pol["Arn"], PolicyDocument=doc(allow("iam:ListUsers")))
    expect_error("LimitExceeded", root.create_policy_version, PolicyArn=pol["Arn"],
                 PolicyDocument=doc(allow("iam:ListUsers")))


def test_role_session_follows_role_policy_changes(keycard):
    root = keycard.client("iam")
    _, creds = keycard.new_user(policy=allow("sts:AssumeRole"))
    role = keycard.new_role(trust_for(f"arn:aws:iam::{ACCOUNT}:root"))
    pol = root.create_policy(PolicyName=unique("RoleRead"), PolicyDocument=doc(allow("iam:ListUsers")))["Policy"]
    root.attach_role_policy(RoleName=role["RoleName"], PolicyArn=pol["Arn"])
    c = keycard.client("sts", creds).assume_role(RoleArn=role["Arn"], RoleSessionName="live")["Credentials"]
    sess = keycard.client("iam", {k: c[k] for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")})
    sess.list_users()
    root.detach_role_policy(RoleName=role["RoleName"], PolicyArn=pol["Arn"])
    expect_error("AccessDenied", sess.list_users)


def test_session_credentials_cannot_get_session_token(keycard):
    _, creds = keycard.new_user()
    c = keycard.client("sts", creds).get_session_token()["Credentials"]
    sess = {k: c[k] for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")}
    expect_error("AccessDenied", keycard.client("sts", sess).get_session_token)


def test_invalid_role_session_name(keycard):
    _, creds = keycard.new_user(policy=allow("sts:AssumeRole"))
    role = keycard.new_role(trust_for(f"arn:aws:iam::{ACCOUNT}:root"))
    expect_error("ValidationError", keycard.client("sts", creds).assume_role, RoleArn=role["Arn"],
                 RoleSessionName="bad session!")


def test_get_access_key_info(keycard):
    _, creds = keycard.new_user()
    out = keycard.client("sts").get_access_key_info(AccessKeyId=creds["AccessKeyId"])
    assert out["Account"] == ACCOUNT


def test_list_pagination(keycard):
    root = keycard.client("iam")
    prefix = "/pager/"
    names = sorted(unique("pg") for _ in range(5))
    for n in names:
        root.create_user(UserName=n, Path=prefix)
    seen, marker, pages = [], None, 0
    while True:
        kw = {"PathPrefix": prefix, "MaxItems": 2}
        if marker:
            kw["Marker"] = marker
        page = root.list_users(**kw)
        pages += 1
        seen += [u["UserName"] for u in page["Users"]]
        if not page["IsTruncated"]:
            assert "Marker" not in page
            break
        marker = page["Marker"]
        assert pages < 10
    assert pages == 3
    assert sorted(seen) == names
    # boto3's paginator joins the pages too.
    pag = root.get_paginator("list_users").paginate(PathPrefix=prefix, PaginationConfig={"PageSize": 1})
    assert sorted(u["UserName"] for p in pag for u in p["Users"]) == names


def test_user_tags(keycard):
    root = keycard.client("iam")
    user, _ = keycard.new_user()
    root.tag_user(UserName=user["UserName"], Tags=[{"Key": "team", "Value": "blue"}])
    tags = root.list_user_tags(UserName=user["UserName"])["Tags"]
    assert tags == [{"Key": "team", "Value": "blue"}]
    root.untag_user(UserName=user["UserName"], TagKeys=["team"])
    assert root.list_user_tags(UserName=user["UserName"])["Tags"] == []


def test_tag_condition_on_principal(keycard):
    """aws:PrincipalTag in a policy condition."""
    root = keycard.client("iam")
    rule = policy(stmt("Allow", "iam:ListUsers", Condition={"StringEquals": {"aws:PrincipalTag/team": "blue"}}))
    user, creds = keycard.new_user(policy=rule)
    iam = keycard.client("iam", creds)
    expect_error("AccessDenied", iam.list_users)
    root.tag_user(UserName=user["UserName"], Tags=[{"Key": "team", "Value": "blue"}])
    iam.list_users()


@pytest.mark.parametrize("managed", ["arn:aws:iam::aws:policy/IAMReadOnlyAccess",
                                     "arn:aws:iam::aws:policy/AdministratorAccess"])
def test_aws_managed_policies_exist(keycard, managed):
    pol = keycard.client("iam").get_policy(PolicyArn=managed)["Policy"]
    assert pol["Arn"] == managed
    assert pol["IsAttachable"] is True
