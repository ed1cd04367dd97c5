"""The IAM policy simulator through the real AWS CLI and boto3:
SimulatePrincipalPolicy, SimulateCustomPolicy, GetContextKeysFor*Policy, and
`keycard policy simulate`. Decisions must be the live server's decisions."""

import json
import subprocess

from botocore.exceptions import ClientError

from conftest import ACCOUNT, allow, doc, error_code, expect_error, keycard_bin, unique

# AWS's documented simulate-custom-policy example (its answer: columns 38 and 167).
DYNAMO = (
    '{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"dynamodb:*","Resource":"*",'
    '"Condition":{"DateGreaterThan":{"aws:CurrentTime":"2018-08-16T12:00:00Z"}}}}'
)

READ_TEXT = """{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "ListAll",
      "Effect": "Allow",
      "Action": ["iam:ListUsers", "iam:GetUser"],
      "Resource": "*"
    },
    {
      "Sid": "ReadHome",
      "Effect": "Allow",
      "Action": "s3:GetObject",
      "Resource": "arn:aws:s3:::shared/${aws:username}/*",
      "Condition": {"StringLike": {"s3:prefix": "home/*"}}
    }
  ]
}"""


def char_at(text, pos, offset):
    """The character AWS's position points just past (columns are one past the brace)."""
    line = text.split("\n")[pos["Line"] - 1]
    return line[pos["Column"] - 1 + offset]


def assert_points_at_statement(text, st):
    assert char_at(text, st["StartPosition"], -1) == "{", st
    assert char_at(text, st["EndPosition"], -1) == "}", st
    # The span is one statement: it parses as JSON on its own.
    lines = text.split("\n")
    s, e = st["StartPosition"], st["EndPosition"]
    if s["Line"] == e["Line"]:
        body = lines[s["Line"] - 1][s["Column"] - 2 : e["Column"] - 1]
    else:
        body = "\n".join(
            [lines[s["Line"] - 1][s["Column"] - 2 :]]
            + lines[s["Line"] : e["Line"] - 1]
            + [lines[e["Line"] - 1][: e["Column"] - 1]]
        )
    return json.loads(body)


def user_with_policies(kc):
    iam = kc.client("iam")
    name = unique("simuser")
    user = iam.create_user(UserName=name)["User"]
    iam.put_user_policy(UserName=name, PolicyName="ReadStuff", PolicyDocument=READ_TEXT)
    group = unique("simgroup")
    iam.create_group(GroupName=group)
    iam.add_user_to_group(GroupName=group, UserName=name)
    iam.put_group_policy(
        GroupName=group,
        PolicyName="NoDelete",
        PolicyDocument=doc({"Version": "2012-10-17", "Statement": [
            {"Effect": "Deny", "Action": "iam:DeleteUser", "Resource": "*"}]}),
    )
    iam.attach_user_policy(UserName=name, PolicyArn="arn:aws:iam::aws:policy/IAMReadOnlyAccess")
    return name, user["Arn"]


def test_cli_simulate_principal_policy_reports_the_deciding_statements(keycard):
    name, arn = user_with_policies(keycard)
    out = keycard.aws(
        "iam", "simulate-principal-policy", "--policy-source-arn", arn,
        "--action-names", "iam:ListUsers", "iam:DeleteUser", "iam:CreateUser",
    )
    by = {r["EvalActionName"]: r for r in out["EvaluationResults"]}
    assert [r["EvalResourceName"] for r in out["EvaluationResults"]] == ["*", "*", "*"]
    listed = by["iam:ListUsers"]
    assert listed["EvalDecision"] == "allowed"
    ids = {(m["SourcePolicyId"], m["SourcePolicyType"]) for m in listed["MatchedStatements"]}
    assert ids == {("ReadStuff", "user"), ("IAMReadOnlyAccess", "aws-managed")}
    mine = next(m for m in listed["MatchedStatements"] if m["SourcePolicyId"] == "ReadStuff")
    stmt = assert_points_at_statement(READ_TEXT, mine)
    assert stmt["Sid"] == "ListAll"
    assert (mine["StartPosition"], mine["EndPosition"]) == ({"Line": 4, "Column": 6}, {"Line": 9, "Column": 6})

    denied = by["iam:DeleteUser"]
    assert denied["EvalDecision"] == "explicitDeny"
    assert [(m["SourcePolicyId"], m["SourcePolicyType"]) for m in denied["MatchedStatements"]] == [
        ("NoDelete", "group")
    ]
    assert by["iam:CreateUser"]["EvalDecision"] == "implicitDeny"
    assert by["iam:CreateUser"]["MatchedStatements"] == []


def test_missing_context_values_and_resource_specific_results(keycard):
    name, arn = user_with_policies(keycard)
    obj = f"arn:aws:s3:::shared/{name}/home/a.txt"
    out = keycard.aws(
        "iam", "simulate-principal-policy", "--policy-source-arn", arn,
        "--action-names", "s3:GetObject", "--resource-arns", obj,
    )
    r = out["EvaluationResults"][0]
    assert r["EvalDecision"] == "implicitDeny"
    assert r["EvalResourceName"] == obj
    assert r["MissingContextValues"] == []
    [specific] = r["ResourceSpecificResults"]
    assert specific["EvalResourceName"] == obj
    assert specific["EvalResourceDecision"] == "implicitDeny"
    assert specific["MissingContextValues"] == ["s3:prefix"]

    out = keycard.aws(
        "iam", "simulate-principal-policy", "--policy-source-arn", arn,
        "--action-names", "s3:GetObject", "--resource-arns", obj,
        "--context-entries", "ContextKeyName=s3:prefix,ContextKeyValues=home/a,ContextKeyType=string",
    )
    r = out["EvaluationResults"][0]
    assert r["EvalDecision"] == "allowed"
    [m] = r["MatchedStatements"]
    assert assert_points_at_statement(READ_TEXT, m)["Sid"] == "ReadHome"


def test_cli_simulate_custom_policy_matches_awss_documented_answer(keycard):
    args = ["iam", "simulate-custom-policy", "--policy-input-list", DYNAMO,
            "--action-names", "dynamodb:CreateBackup"]
    out = keycard.aws(*args, "--context-entries",
                      "ContextKeyName=aws:CurrentTime,ContextKeyValues=2019-04-25T11:00:00Z,ContextKeyType=date")
    [r] = out["EvaluationResults"]
    assert r["EvalDecision"] == "allowed"
    assert r["MatchedStatements"] == [{
        "SourcePolicyId": "PolicyInputList.1",
        "SourcePolicyType": "IAM Policy",
        "StartPosition": {"Line": 1, "Column": 38},
        "EndPosition": {"Line": 1, "Column": 167},
    }]
    assert r["MissingContextValues"] == []

    out = keycard.aws(*args, "--context-entries",
                      "ContextKeyName=aws:CurrentTime,ContextKeyValues=2014-04-25T11:00:00Z,ContextKeyType=date")
    assert out["EvaluationResults"][0]["EvalDecision"] == "implicitDeny"
    assert out["EvaluationResults"][0]["MatchedStatements"] == []

    out = keycard.aws(*args)
    assert out["EvaluationResults"][0]["EvalDecision"] == "implicitDeny"
    assert out["EvaluationResults"][0]["MissingContextValues"] == ["aws:CurrentTime"]


def test_permissions_boundary_detail(keycard):
    iam = keycard.client("iam")
    name = unique("bounded")
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="all", PolicyDocument=doc(allow(["s3:*", "iam:*"])))
    b = iam.create_policy(PolicyName=unique("edge"), PolicyDocument=doc(allow("s3:*")))["Policy"]["Arn"]
    iam.put_user_permissions_boundary(UserName=name, PermissionsBoundary=b)
    arn = f"arn:aws:iam::{ACCOUNT}:user/{name}"
    out = iam.simulate_principal_policy(PolicySourceArn=arn, ActionNames=["s3:GetObject", "iam:ListUsers"])
    s3, listing = out["EvaluationResults"]
    assert s3["EvalDecision"] == "allowed"
    assert s3["PermissionsBoundaryDecisionDetail"] == {"AllowedByPermissionsBoundary": True}
    assert listing["EvalDecision"] == "implicitDeny"
    assert listing["PermissionsBoundaryDecisionDetail"] == {"AllowedByPermissionsBoundary": False}
    # A boundary given in the request replaces the attached one.
    out = iam.simulate_principal_policy(
        PolicySourceArn=arn, ActionNames=["iam:ListUsers"],
        PermissionsBoundaryPolicyInputList=[doc(allow("iam:List*"))],
    )
    r = out["EvaluationResults"][0]
    assert r["EvalDecision"] == "allowed"
    assert ("PermissionsBoundaryPolicyInputList.1", "IAM Policy") in {
        (m["SourcePolicyId"], m["SourcePolicyType"]) for m in r["MatchedStatements"]
    }


def test_pagination_with_max_items_and_marker(keycard):
    iam = keycard.client("iam")
    actions = [f"s3:{a}" for a in ("GetObject", "PutObject", "DeleteObject", "ListBucket", "CreateBucket")]
    policy = doc(allow(["s3:GetObject", "s3:ListBucket"]))
    first = iam.simulate_custom_policy(PolicyInputList=[policy], ActionNames=actions, MaxItems=2)
    assert first["IsTruncated"] is True and len(first["EvaluationResults"]) == 2
    second = iam.simulate_custom_policy(PolicyInputList=[policy], ActionNames=actions, MaxItems=2,
                                        Marker=first["Marker"])
    assert [r["EvalActionName"] for r in second["EvaluationResults"]] == actions[2:4]
    pages = iam.get_paginator("simulate_custom_policy").paginate(
        PolicyInputList=[policy], ActionNames=actions, PaginationConfig={"PageSize": 2})
    results = [r for p in pages for r in p["EvaluationResults"]]
    assert [r["EvalActionName"] for r in results] == actions
    assert [r["EvalDecision"] for r in results] == [
        "allowed", "implicitDeny", "implicitDeny", "allowed", "implicitDeny"]


def test_get_context_keys(keycard):
    out = keycard.aws("iam", "get-context-keys-for-custom-policy", "--policy-input-list", DYNAMO)
    assert out["ContextKeyNames"] == ["aws:CurrentTime"]
    name, arn = user_with_policies(keycard)
    keys = keycard.client("iam").get_context_keys_for_principal_policy(
        PolicySourceArn=arn, PolicyInputList=[DYNAMO])["ContextKeyNames"]
    assert {"aws:username", "s3:prefix", "aws:CurrentTime"} <= set(keys)


def test_errors(keycard):
    iam = keycard.client("iam")
    expect_error("NoSuchEntity", iam.simulate_principal_policy,
                 PolicySourceArn=f"arn:aws:iam::{ACCOUNT}:user/no-such-user", ActionNames=["s3:GetObject"])
    expect_error("NoSuchEntity", iam.get_context_keys_for_principal_policy,
                 PolicySourceArn=f"arn:aws:iam::{ACCOUNT}:role/no-such-role")
    expect_error("InvalidInput", iam.simulate_custom_policy,
                 PolicyInputList=['{"Version": "2012-10-17", "Statement": ['], ActionNames=["s3:GetObject"])
    expect_error("InvalidInput", iam.simulate_custom_policy,
                 PolicyInputList=[doc({"Version": "2012-10-17", "Statement": [{"Effect": "Allow"}]})],
                 ActionNames=["s3:GetObject"])
    expect_error("InvalidInput", iam.simulate_custom_policy,
                 PolicyInputList=[doc(allow("s3:*"))], ActionNames=["s3:*"])
    expect_error("InvalidInput", iam.simulate_custom_policy,
                 PolicyInputList=[doc(allow("s3:*"))], ActionNames=["s3:GetObject"],
                 ContextEntries=[{"ContextKeyName": "s3:max-keys", "ContextKeyValues": ["ten"],
                                  "ContextKeyType": "numeric"}])
    err = keycard.aws_error("iam", "simulate-custom-policy", "--policy-input-list", "{not json",
                            "--action-names", "s3:GetObject", code="InvalidInput")
    assert "InvalidInput" in err.stderr


def test_a_principal_without_permissions_is_refused(keycard):
    name, arn = user_with_policies(keycard)
    _, nobody = keycard.new_user()
    err = keycard.aws_error("iam", "simulate-principal-policy", "--policy-source-arn", arn,
                            "--action-names", "s3:GetObject", creds=nobody, code="AccessDenied")
    assert f"iam:SimulatePrincipalPolicy on resource: {arn}" in err.stderr
    keycard.aws_error("iam", "simulate-custom-policy", "--policy-input-list", DYNAMO,
                      "--action-names", "dynamodb:CreateBackup", creds=nobody, code="AccessDenied")
    # Allowed on that one principal only.
    _, scoped = keycard.new_user(policy=allow("iam:SimulatePrincipalPolicy", arn))
    out = keycard.aws("iam", "simulate-principal-policy", "--policy-source-arn", arn,
                      "--action-names", "iam:ListUsers", creds=scoped)
    assert out["EvaluationResults"][0]["EvalDecision"] == "allowed"
    keycard.aws_error("iam", "simulate-principal-policy", "--policy-source-arn",
                      f"arn:aws:iam::{ACCOUNT}:user/{name}-other", "--action-names", "iam:ListUsers",
                      creds=scoped, code="AccessDenied")


def test_simulation_agrees_with_real_calls(keycard):
    """Differential: what the simulator says a principal may do is what the
    live server lets it do."""
    root = keycard.client("iam")
    target = unique("target")
    root.create_user(UserName=target)
    role = unique("role")
    root.create_role(RoleName=role, AssumeRolePolicyDocument=doc({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                       "Action": "sts:AssumeRole"}]}))
    bucket = unique("simbucket")
    s3root = keycard.client("s3")
    s3root.create_bucket(Bucket=bucket)
    s3root.put_object(Bucket=bucket, Key="pub/a", Body=b"x")
    s3root.put_object(Bucket=bucket, Key="priv/a", Body=b"x")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["iam:Get*", "iam:List*"], "Resource": "*"},
            {"Effect": "Deny", "Action": "iam:GetRole", "Resource": f"arn:aws:iam::{ACCOUNT}:role/{role}"},
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/pub/*"},
        ],
    }
    user, creds = keycard.new_user(policy=policy)
    iam = keycard.client("iam", creds=creds)
    s3 = keycard.client("s3", creds=creds)
    calls = [
        ("iam:GetUser", f"arn:aws:iam::{ACCOUNT}:user/{target}", lambda: iam.get_user(UserName=target)),
        ("iam:ListUsers", f"arn:aws:iam::{ACCOUNT}:user/", lambda: iam.list_users()),
        ("iam:GetRole", f"arn:aws:iam::{ACCOUNT}:role/{role}", lambda: iam.get_role(RoleName=role)),
        ("iam:ListRoles", f"arn:aws:iam::{ACCOUNT}:role/", lambda: iam.list_roles()),
        ("iam:CreateGroup", f"arn:aws:iam::{ACCOUNT}:group/g-{target}",
         lambda: iam.create_group(GroupName=f"g-{target}")),
        ("s3:GetObject", f"arn:aws:s3:::{bucket}/pub/a", lambda: s3.get_object(Bucket=bucket, Key="pub/a")),
        ("s3:GetObject", f"arn:aws:s3:::{bucket}/priv/a", lambda: s3.get_object(Bucket=bucket, Key="priv/a")),
    ]
    decisions = []
    for action, resource, call in calls:
        sim = root.simulate_principal_policy(PolicySourceArn=user["Arn"], ActionNames=[action],
                                             ResourceArns=[resource])["EvaluationResults"][0]
        try:
            call()
            live = "allowed"
        except ClientError as e:
            assert error_code(e) == "AccessDenied", e.response
            live = "denied"
        simulated = "allowed" if sim["EvalDecision"] == "allowed" else "denied"
        assert simulated == live, (action, resource, sim)
        decisions.append(live)
    assert decisions == ["allowed", "allowed", "denied", "allowed", "denied", "allowed", "denied"]


def test_keycard_policy_simulate_command(keycard):
    name, arn = user_with_policies(keycard)
    base = [str(keycard_bin()), "policy", "simulate", "--data-dir", str(keycard.data_dir), "--principal", arn,
            "--action", "iam:ListUsers", "--action", "iam:DeleteUser"]
    p = subprocess.run([*base, "--json"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    decisions = {r["EvalActionName"]: r["EvalDecision"] for r in out["EvaluationResults"]}
    assert decisions == {"iam:ListUsers": "allowed", "iam:DeleteUser": "explicitDeny"}
    mine = next(m for m in out["EvaluationResults"][0]["MatchedStatements"] if m["SourcePolicyId"] == "ReadStuff")
    assert mine["StartPosition"] == {"Line": 4, "Column": 6}

    obj = f"arn:aws:s3:::shared/{name}/home/x"
    p = subprocess.run([*base, "--action", "s3:GetObject", "--resource", obj, "--context", "s3:prefix=home/x"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "statement of ReadStuff (user), lines 10-16" in p.stdout, p.stdout
    assert "explicitDeny" in p.stdout and "NoDelete (group)" in p.stdout, p.stdout

    p = subprocess.run([str(keycard_bin()), "policy", "simulate", "--data-dir", str(keycard.data_dir),
                        "--principal", f"arn:aws:iam::{ACCOUNT}:user/nobody-here", "--action", "s3:GetObject"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "NoSuchEntity" in p.stderr, p.stderr
