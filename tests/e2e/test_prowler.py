"""Prowler (PyPI `prowler`, 5.x), unmodified, pointed at keycard with
AWS_ENDPOINT_URL: the issue's acceptance test. Prowler turns a refused
call into a silent PASS or FAIL, so this checks what it did, not its exit
code: every IAM / EC2 / STS / Organizations call it made was answered
(the audit trail shows no unknown operation and no refusal), its checks
produced results, and wherever keycard has a rule for the same check,
the two agree resource by resource."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, doc

PROWLER = Path(os.environ.get("PROWLER_BIN", REPO / ".venv-prowler" / "bin" / "prowler"))
if not PROWLER.exists():
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"CI must run Prowler: {PROWLER} is missing (scripts/test.sh installs it)")
    pytest.skip("prowler not installed (scripts/test.sh installs it into .venv-prowler)", allow_module_level=True)

ADMIN = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
SERVED = {"iam.amazonaws.com", "ec2.amazonaws.com", "sts.amazonaws.com", "organizations.amazonaws.com"}

# keycard rule -> the Prowler check that judges the same thing.
AGREE = {
    "KC-EC2-001": "ec2_instance_profile_attached",
    "KC-EC2-002": "ec2_instance_imdsv2_enabled",
    "KC-EC2-005": "ec2_instance_secrets_user_data",
    "KC-IAM-004": "iam_no_root_access_key",
    "KC-IAM-013": "iam_user_mfa_enabled_console_access",
}


@pytest.fixture(scope="module")
def kc(make_keycard_module):
    return make_keycard_module()


@pytest.fixture(scope="module")
def estate(kc):
    """Good and bad resources of every kind the agreeing rules judge."""
    iam, ec2 = kc.client("iam"), kc.client("ec2")
    role, prof = kc.instance_profile(policy=ADMIN)
    good = kc.run_instance(profile=prof["InstanceProfileName"],
                           MetadataOptions={"HttpTokens": "required"})["InstanceId"]
    bare = kc.run_instance(MetadataOptions={"HttpTokens": "optional"})["InstanceId"]
    user, creds = kc.new_user()
    leaky = kc.run_instance(UserData=f"#!/bin/sh\nexport AWS_ACCESS_KEY_ID={creds['AccessKeyId']}\n"
                                     f"export AWS_SECRET_ACCESS_KEY={creds['SecretAccessKey']}\n")["InstanceId"]
    console = kc.new_user()[0]["UserName"]
    iam.create_login_profile(UserName=console, Password="Corr3ct-horse-battery!")
    iam.put_user_policy(UserName=user["UserName"], PolicyName="admin", PolicyDocument=doc(ADMIN))
    return {"good": good, "bare": bare, "leaky": leaky, "console": console, "role": role["RoleName"],
            "key": creds["AccessKeyId"], "secret": creds["SecretAccessKey"]}


@pytest.fixture(scope="module")
def prowler(kc, estate, tmp_path_factory):
    out = tmp_path_factory.mktemp("prowler")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(kc.env)
    env.update({
        "AWS_ENDPOINT_URL": kc.endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": kc.root_creds["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": kc.root_creds["SecretAccessKey"],
    })
    env.pop("AWS_PROFILE", None)
    p = subprocess.run(
        [str(PROWLER), "aws", "--services", "iam", "ec2", "-f", "us-east-1", "-M", "json-ocsf",
         "--output-directory", str(out), "--no-banner", "--ignore-exit-code-3"],
        env=env, capture_output=True, text=True, timeout=1200,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    files = list(out.glob("*.ocsf.json"))
    assert len(files) == 1, list(out.iterdir())
    results = json.loads(files[0].read_text())
    return [{"check": r["metadata"]["event_code"], "status": r["status_code"],
             "resource": (r.get("resources") or [{}])[0].get("uid", "")} for r in results]


def audit_events(kc):
    """Every event of the account, through CloudTrail's LookupEvents."""
    ct = kc.client("cloudtrail")
    events, token = [], None
    while True:
        kw = {"MaxResults": 50, **({"NextToken": token} if token else {})}
        page = ct.lookup_events(**kw)
        events += [json.loads(e["CloudTrailEvent"]) for e in page["Events"]]
        token = page.get("NextToken")
        if not token:
            return events


def test_every_call_prowler_made_to_a_served_service_was_answered(kc, prowler):
    refused = [
        (e["eventSource"], e["eventName"], e["errorCode"], e.get("errorMessage", "")[:120])
        for e in audit_events(kc)
        if e["eventSource"] in SERVED and e.get("errorCode") in
        {"InvalidAction", "UnknownOperationException", "AccessDenied", "AccessDeniedException",
         "UnauthorizedOperation", "InvalidParameterValue", "InvalidInput", "ValidationError", "MissingParameter"}
    ]
    assert not refused, refused


def test_checks_produce_results(prowler):
    checks = {r["check"] for r in prowler}
    for c in AGREE.values():
        assert c in checks, f"{c} produced no result"
    assert sum(1 for c in checks if c.startswith("iam_")) >= 25, sorted(checks)
    assert sum(1 for c in checks if c.startswith("ec2_")) >= 15, sorted(checks)


def test_prowler_and_keycard_agree(kc, estate, prowler):
    from test_governance import posture

    findings = posture(kc)["findings"]
    checked = 0
    for rule, check in AGREE.items():
        prow = [r for r in prowler if r["check"] == check and r["status"] in ("PASS", "FAIL")]
        assert prow, f"no verdict from {check}"
        for r in prow:
            ours = [f for f in findings if f["rule"] == rule and
                    (f["resource"] == r["resource"] or f["resource"].startswith(r["resource"] + "/"))]
            assert bool(ours) == (r["status"] == "FAIL"), (rule, check, r, ours)
            checked += 1
    # The seeded bad resources were judged bad by both.
    fails = {(r["check"], r["resource"].rsplit("/", 1)[-1]) for r in prowler if r["status"] == "FAIL"}
    assert ("ec2_instance_profile_attached", estate["bare"]) in fails
    assert ("ec2_instance_imdsv2_enabled", estate["bare"]) in fails
    assert ("ec2_instance_secrets_user_data", estate["leaky"]) in fails
    assert ("iam_user_mfa_enabled_console_access", estate["console"]) in fails
    assert checked >= 8


def test_no_secret_in_prowler_output_or_audit(kc, estate, prowler):
    dumped = json.dumps(audit_events(kc))
    assert estate["secret"] not in dumped
