"""Least privilege as a workflow, end to end (issue 11): an application runs
on an instance whose role has no permissions, under soft enforcement; the
policy it needs is generated from what it did; the policy is attached with
the AWS CLI and enforcement switched on; the application runs again with
zero denials, and every action and resource the policy grants was used."""

import json
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone

import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT, keycard_bin, unique

BUCKET = unique("loop-data")

# The application: reads its inputs, writes a result, looks at itself.
APP = textwrap.dedent(
    """
    import json, sys, boto3
    bucket, instance = sys.argv[1], sys.argv[2]
    s3 = boto3.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="in/")["Contents"]]
    total = sum(len(s3.get_object(Bucket=bucket, Key=k)["Body"].read()) for k in keys)
    s3.put_object(Bucket=bucket, Key="out/result.json", Body=json.dumps({"bytes": total}).encode())
    boto3.client("ec2").describe_instances(InstanceIds=[instance])
    who = boto3.client("sts").get_caller_identity()["Arn"]
    print(json.dumps({"keys": len(keys), "bytes": total, "arn": who}))
    """
)

USED = {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "ec2:DescribeInstances"}


def keycard_cli(kc, *args):
    p = subprocess.run([str(keycard_bin()), *args, "--data-dir", str(kc.data_dir)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


def run_app(kc, instance_id):
    script = kc.workdir / "app.py"
    script.write_text(APP)
    p = kc.exec(instance_id, sys.executable, str(script), BUCKET, instance_id)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def session_events(kc, role_arn, since):
    """Audit events of the role's sessions since `since`, oldest first."""
    out = []
    for page in kc.client("cloudtrail").get_paginator("lookup_events").paginate(StartTime=since):
        for e in page["Events"]:
            ev = json.loads(e["CloudTrailEvent"])
            issuer = ev.get("userIdentity", {}).get("sessionContext", {}).get("sessionIssuer", {})
            if issuer.get("arn") == role_arn:
                out.append(ev)
    return out[::-1]


@pytest.fixture(scope="module")
def loop(make_keycard_module):
    kc = make_keycard_module()
    s3 = kc.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    for i in range(3):
        s3.put_object(Bucket=BUCKET, Key=f"in/{i}.txt", Body=b"x" * (i + 1))
    s3.put_object(Bucket=BUCKET, Key="private/secret.txt", Body=b"no")
    role, prof = kc.instance_profile()
    # Soft enforcement for this role only: the rest of the server enforces.
    kc.client("iam").tag_role(RoleName=role["RoleName"], Tags=[{"Key": "keycard:enforcement", "Value": "soft"}])
    instance_id = kc.run_instance(prof["InstanceProfileName"])["InstanceId"]
    return kc, role, instance_id


def test_the_whole_loop(loop):
    kc, role, instance_id = loop
    name, role_arn = role["RoleName"], role["Arn"]
    iam = kc.client("iam")

    # 1. Soft mode: the role has no permission, the application still works,
    #    and every call it made is a would-be denial.
    out = run_app(kc, instance_id)
    assert out == {"keys": 3, "bytes": 6, "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/{instance_id}"}
    report = json.loads(keycard_cli(kc, "audit", "denials", "--json", "--since", "1h"))["principals"]
    session = out["arn"]
    mine = {a["action"]: a for p in report if p["principal"] == session for a in p["actions"]}
    assert set(mine) == USED
    assert all(a["wouldBeDenied"] >= 1 and a["denied"] == 0 for a in mine.values())

    # 2. Generate the policy from what it did.
    generated = json.loads(keycard_cli(kc, "policy", "generate", "--principal", role_arn, "--since", "1h"))
    granted = {(a, r) for st in generated["Statement"]
               for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])
               for r in (st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]])}
    assert {a for a, _ in granted} == USED, "no more and no fewer actions than it used (no iam:PassRole)"
    assert all(st["Effect"] == "Allow" for st in generated["Statement"])
    assert ("s3:ListBucket", f"arn:aws:s3:::{BUCKET}") in granted
    assert ("s3:PutObject", f"arn:aws:s3:::{BUCKET}/out/result.json") in granted
    assert {r for a, r in granted if a == "s3:GetObject"} == {f"arn:aws:s3:::{BUCKET}/in/{i}.txt" for i in range(3)}
    assert not any("private" in r for _, r in granted)

    path = kc.workdir / "generated.json"
    path.write_text(json.dumps(generated, indent=2))

    # The same generation through Access Analyzer's API (boto3 and the CLI).
    aa = kc.client("accessanalyzer")
    job = aa.start_policy_generation(
        policyGenerationDetails={"principalArn": role_arn},
        cloudTrailDetails={"trails": [{"cloudTrailArn": f"arn:aws:cloudtrail:us-east-1:{ACCOUNT}:trail/keycard",
                                       "allRegions": True}],
                           "accessRole": f"arn:aws:iam::{ACCOUNT}:role/AccessAnalyzerMonitorServiceRole",
                           "startTime": datetime.now(timezone.utc) - timedelta(hours=1)},
        clientToken="loop-1")["jobId"]
    assert aa.start_policy_generation(policyGenerationDetails={"principalArn": role_arn},
                                      clientToken="loop-1")["jobId"] == job, "idempotent"
    got = aa.get_generated_policy(jobId=job)
    assert got["jobDetails"]["status"] == "SUCCEEDED"
    props = got["generatedPolicyResult"]["properties"]
    assert props["principalArn"] == role_arn and props["isComplete"] is True
    assert props["cloudTrailProperties"]["trailProperties"][0]["cloudTrailArn"].endswith(":trail/keycard")
    assert json.loads(got["generatedPolicyResult"]["generatedPolicies"][0]["policy"]) == generated
    cli = kc.aws("accessanalyzer", "get-generated-policy", "--job-id", job, "--include-resource-placeholders")
    templated = json.loads(cli["generatedPolicyResult"]["generatedPolicies"][0]["policy"])
    resources = {r for st in templated["Statement"]
                 for r in (st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]])}
    assert "arn:aws:s3:::${BucketName}/${ObjectName}" in resources
    assert "arn:aws:s3:::${BucketName}" in resources
    assert "*" in resources, "DescribeInstances has no resource types"
    assert not [r for r in resources if BUCKET in r], "no concrete names left"
    listed = aa.list_policy_generations(principalArn=role_arn)["policyGenerations"]
    assert [g["jobId"] for g in listed] == [job]
    aa.cancel_policy_generation(jobId=job)
    with pytest.raises(ClientError) as e:
        aa.get_generated_policy(jobId="00000000-0000-4000-8000-000000000000")
    assert e.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as e:
        aa.start_policy_generation(policyGenerationDetails={"principalArn": role_arn},
                                   cloudTrailDetails={"trails": [], "accessRole": f"arn:aws:iam::{ACCOUNT}:role/r",
                                                      "startTime": datetime.now(timezone.utc) - timedelta(days=91)})
    assert e.value.response["Error"]["Code"] == "ValidationException"

    # 3. Lint it (no errors or security warnings) and simulate it before
    #    attaching: used actions allowed, others not.
    lint = subprocess.run([str(keycard_bin()), "policy", "lint", str(path), "--format", "json"],
                          capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert not [f for f in json.loads(lint.stdout)["findings"]
                if f["findingType"] in ("ERROR", "SECURITY_WARNING")]
    # (A list parameter: the CLI would read file:// as one character per item.)
    sim = kc.aws("iam", "simulate-custom-policy", "--policy-input-list", json.dumps(generated),
                 "--action-names", "s3:GetObject", "s3:DeleteObject",
                 "--resource-arns", f"arn:aws:s3:::{BUCKET}/in/0.txt")["EvaluationResults"]
    assert {r["EvalActionName"]: r["EvalDecision"] for r in sim} == {
        "s3:GetObject": "allowed", "s3:DeleteObject": "implicitDeny"}

    # 4. Attach it with the AWS CLI, switch enforcement on for the role.
    kc.aws("iam", "put-role-policy", "--role-name", name, "--policy-name", "generated",
           "--policy-document", f"file://{path}")
    iam.untag_role(RoleName=name, TagKeys=["keycard:enforcement"])
    started = datetime.now(timezone.utc)
    time.sleep(1)  # event times have second resolution: keep the runs apart

    # 5. Enforced: the application works again, with zero denials.
    assert run_app(kc, instance_id)["bytes"] == 6
    events = session_events(kc, role_arn, started)
    assert events, "the second run is in the audit trail"
    checks = [c for ev in events for c in ev.get("keycardAuthorization", [])]
    assert not [ev for ev in events if ev.get("errorCode")]
    assert [c for c in checks if c["decision"] != "Allow"] == []
    assert not [c for c in checks if c.get("overriddenBy")], "enforced: nothing let through"

    # 6. Every statement, action and resource it grants was exercised.
    used = {(c["action"], c["resource"]) for c in checks}
    assert granted <= used, granted - used
    statements = {m["index"] for c in checks for m in c["matchedStatements"]
                  if m["policyId"] == f"{role_arn}#inline/generated"}
    assert statements == set(range(len(generated["Statement"])))

    # And a call it never made is denied.
    p = kc.exec(instance_id, sys.executable, "-m", "awscli", "s3api", "get-object", "--bucket", BUCKET,
                "--key", "private/secret.txt", str(kc.workdir / "x"))
    assert p.returncode != 0 and "AccessDenied" in p.stderr


def test_generate_needs_a_principal_and_reads_nothing_for_a_stranger(loop):
    kc, _, _ = loop
    p = subprocess.run([str(keycard_bin()), "policy", "generate", "--data-dir", str(kc.data_dir)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "--principal" in p.stderr
    p = subprocess.run([str(keycard_bin()), "policy", "generate", "--data-dir", str(kc.data_dir),
                        "--principal", f"arn:aws:iam::{ACCOUNT}:role/nobody"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"Version": "2012-10-17", "Statement": []}
    assert "no calls" in p.stderr
