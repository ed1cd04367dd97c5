"""IAM list operations page with Marker / MaxItems / IsTruncated as AWS does
(driven through boto3's own paginators), and GetPolicy counts the users and
roles that use a policy as their permissions boundary."""

import json

import pytest

from conftest import ACCOUNT, allow, doc, trust_for

N = 3  # items per list; pages of 2 make every list take two pages


@pytest.fixture(scope="module")
def world(make_keycard_module):
    """A fresh server where each list below holds a known number of items."""
    kc = make_keycard_module()
    iam = kc.client("iam")
    arn = iam.create_policy(PolicyName="shared", PolicyDocument=doc(allow("iam:ListUsers")))["Policy"]["Arn"]
    for v in range(N - 1):
        iam.create_policy_version(PolicyArn=arn, PolicyDocument=doc(allow(f"iam:GetUser{v}")))
    extra = [
        iam.create_policy(PolicyName=f"extra{i}", PolicyDocument=doc(allow("iam:GetRole")))["Policy"]["Arn"]
        for i in range(N)
    ]
    trust = doc(trust_for(f"arn:aws:iam::{ACCOUNT}:root"))
    for i in range(N):
        iam.create_user(UserName=f"u{i}", Path="/pg/")
        iam.create_group(GroupName=f"g{i}", Path="/pg/")
        iam.create_role(RoleName=f"r{i}", Path="/pg/", AssumeRolePolicyDocument=trust)
        iam.create_instance_profile(InstanceProfileName=f"ip{i}", Path="/pg/")
    for i in range(N):
        # ListEntitiesForPolicy: N users, N groups, N roles.
        iam.attach_user_policy(UserName=f"u{i}", PolicyArn=arn)
        iam.attach_group_policy(GroupName=f"g{i}", PolicyArn=arn)
        iam.attach_role_policy(RoleName=f"r{i}", PolicyArn=arn)
        # GetGroup g0: N users; ListGroupsForUser u0: N groups.
        iam.add_user_to_group(UserName=f"u{i}", GroupName="g0")
        if i:
            iam.add_user_to_group(UserName="u0", GroupName=f"g{i}")
        # ListAttached*Policies of u1 / g1 / r1: N + 1.
        iam.attach_user_policy(UserName="u1", PolicyArn=extra[i])
        iam.attach_group_policy(GroupName="g1", PolicyArn=extra[i])
        iam.attach_role_policy(RoleName="r1", PolicyArn=extra[i])
        # List*Policies of u0 / g0 / r0: N inline policies.
        inline = doc(allow("iam:GetUser"))
        iam.put_user_policy(UserName="u0", PolicyName=f"in{i}", PolicyDocument=inline)
        iam.put_group_policy(GroupName="g0", PolicyName=f"in{i}", PolicyDocument=inline)
        iam.put_role_policy(RoleName="r0", PolicyName=f"in{i}", PolicyDocument=inline)
        # ListUserTags u2 / ListRoleTags r2: N tags.
        iam.tag_user(UserName="u2", Tags=[{"Key": f"t{i}", "Value": "v"}])
        iam.tag_role(RoleName="r2", Tags=[{"Key": f"t{i}", "Value": "v"}])
        # ListInstanceProfilesForRole r0: N profiles.
        iam.add_role_to_instance_profile(InstanceProfileName=f"ip{i}", RoleName="r0")
    # ListAccessKeys u2: two (AWS's limit per user).
    for _ in range(2):
        iam.create_access_key(UserName="u2")
    return kc, arn


# (paginator, arguments (None: the shared policy's ARN), result key (None:
# every list of the answer), page size, items expected at least)
CASES = [
    ("list_users", {"PathPrefix": "/pg/"}, "Users", 2, N),
    ("list_groups", {"PathPrefix": "/pg/"}, "Groups", 2, N),
    ("list_roles", {"PathPrefix": "/pg/"}, "Roles", 2, N),
    ("list_instance_profiles", {"PathPrefix": "/pg/"}, "InstanceProfiles", 2, N),
    ("list_instance_profiles_for_role", {"RoleName": "r0"}, "InstanceProfiles", 2, N),
    ("list_access_keys", {"UserName": "u2"}, "AccessKeyMetadata", 1, 2),
    ("list_policies", {"Scope": "Local"}, "Policies", 2, N + 1),
    ("list_policy_versions", {"PolicyArn": None}, "Versions", 2, N),
    ("get_group", {"GroupName": "g0"}, "Users", 2, N),
    ("list_groups_for_user", {"UserName": "u0"}, "Groups", 2, N),
    ("list_attached_user_policies", {"UserName": "u1"}, "AttachedPolicies", 2, N + 1),
    ("list_attached_group_policies", {"GroupName": "g1"}, "AttachedPolicies", 2, N + 1),
    ("list_attached_role_policies", {"RoleName": "r1"}, "AttachedPolicies", 2, N + 1),
    ("list_user_policies", {"UserName": "u0"}, "PolicyNames", 2, N),
    ("list_group_policies", {"GroupName": "g0"}, "PolicyNames", 2, N),
    ("list_role_policies", {"RoleName": "r0"}, "PolicyNames", 2, N),
    ("list_user_tags", {"UserName": "u2"}, "Tags", 2, N),
    ("list_role_tags", {"RoleName": "r2"}, "Tags", 2, N),
    ("list_entities_for_policy", {"PolicyArn": None}, None, 2, 3 * N),
    ("get_account_authorization_details", {}, None, 2, 4 * N + 1),
]


def fill(args, arn):
    return {k: (arn if v is None else v) for k, v in args.items()}


@pytest.mark.parametrize("op,args,key,size,n", CASES, ids=[c[0] for c in CASES])
def test_paginator_walks_every_item(world, op, args, key, size, n):
    kc, arn = world
    iam = kc.client("iam")
    args = fill(args, arn)
    pages = list(iam.get_paginator(op).paginate(**args, PaginationConfig={"PageSize": size}))
    whole = getattr(iam, op)(**args)
    assert whole["IsTruncated"] is False
    assert "Marker" not in whole

    def items(resp):
        if key:
            return resp[key]
        return [json.dumps(x, sort_keys=True, default=str) for k, v in sorted(resp.items())
                if isinstance(v, list) for x in v]

    assert len(pages) >= 2, pages
    for p in pages[:-1]:
        assert p["IsTruncated"] is True and p["Marker"], p
        assert len(items(p)) == size
    assert pages[-1]["IsTruncated"] is False and "Marker" not in pages[-1]
    walked = [x for p in pages for x in items(p)]
    assert len(walked) >= n
    assert sorted(map(str, walked)) == sorted(map(str, items(whole)))


def test_cli_pages_entities_for_policy(world):
    """The CLI's --page-size walks the Marker pages and merges them."""
    kc, arn = world
    out = kc.aws("iam", "list-entities-for-policy", "--policy-arn", arn, "--page-size", "2")
    got = out["PolicyGroups"] + out["PolicyUsers"] + out["PolicyRoles"]
    names = sorted(e.get("UserName") or e.get("GroupName") or e.get("RoleName") for e in got)
    assert names == sorted([f"{k}{i}" for k in "ugr" for i in range(N)])
    one = kc.client("iam").list_entities_for_policy(PolicyArn=arn, MaxItems=2)
    assert one["IsTruncated"] is True and one["Marker"]
    assert len(one["PolicyGroups"] + one["PolicyUsers"] + one["PolicyRoles"]) == 2


def test_permissions_boundary_usage_count(keycard_fresh):
    kc = keycard_fresh
    iam = kc.client("iam")
    arn = iam.create_policy(PolicyName="bound", PolicyDocument=doc(allow("s3:*")))["Policy"]["Arn"]
    assert iam.get_policy(PolicyArn=arn)["Policy"]["PermissionsBoundaryUsageCount"] == 0

    for u in ("b1", "b2"):
        iam.create_user(UserName=u)
        kc.aws("iam", "put-user-permissions-boundary", "--user-name", u, "--permissions-boundary", arn)
    iam.create_role(RoleName="br", AssumeRolePolicyDocument=doc(trust_for(f"arn:aws:iam::{ACCOUNT}:root")))
    kc.aws("iam", "put-role-permissions-boundary", "--role-name", "br", "--permissions-boundary", arn)
    iam.attach_user_policy(UserName="b1", PolicyArn=arn)

    pol = kc.aws("iam", "get-policy", "--policy-arn", arn)["Policy"]
    assert pol["PermissionsBoundaryUsageCount"] == 3
    assert pol["AttachmentCount"] == 1
    listed = [p for p in iam.list_policies(Scope="Local")["Policies"] if p["Arn"] == arn]
    assert listed[0]["PermissionsBoundaryUsageCount"] == 3

    iam.delete_user_permissions_boundary(UserName="b2")
    iam.delete_role_permissions_boundary(RoleName="br")
    assert iam.get_policy(PolicyArn=arn)["Policy"]["PermissionsBoundaryUsageCount"] == 1
