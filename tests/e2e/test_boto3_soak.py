"""A long-running boto3 process on an instance across credential
rotations, with no error (KEYCARD_SOAK=1; ``scripts/test.sh`` runs it in
the background while the rest of the suite runs, since it takes minutes).

Why minutes: botocore's IMDS fetcher extends any set that expires within
17-25 minutes and refreshes 2-10 minutes (random) after each fetch, so it
may use a set for up to 10 minutes after receiving it. keycard is started
with 660 s sets renewed once < 630 s remain: every set botocore receives
outlives its use by at least 30 s, and every botocore refresh receives a
new set. Three rotations take 6-30 minutes of botocore's own timing."""

import json
import os
import sys
from pathlib import Path

import pytest

from conftest import ACCOUNT, allow

pytestmark = [
    pytest.mark.soak,
    pytest.mark.skipif(os.environ.get("KEYCARD_SOAK") != "1", reason="set KEYCARD_SOAK=1 (takes up to 35 minutes)"),
]


def test_boto3_keeps_working_across_three_rotations(make_keycard):
    kc = make_keycard("--instance-credential-lifetime", "660", "--instance-credential-refresh", "630")
    role, prof = kc.instance_profile(policy=allow(["s3:ListAllMyBuckets"]))
    iid = kc.run_instance(prof["InstanceProfileName"], MetadataOptions={"HttpTokens": "required"})["InstanceId"]
    client = Path(__file__).with_name("soak_client.py")
    p = kc.exec(iid, sys.executable, client, "4", str(35 * 60), "2", timeout=36 * 60)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    print(p.stderr)
    assert out["errors"] == []
    assert len(out["keys"]) >= 4, out
    # The audit trail agrees: successive sets, all of this instance's role.
    ev = kc.client("cloudtrail").lookup_events(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "GetCallerIdentity"}], MaxResults=50)
    arns = {json.loads(e["CloudTrailEvent"])["userIdentity"]["arn"] for e in ev["Events"]}
    assert arns == {f"arn:aws:sts::{ACCOUNT}:assumed-role/{role['RoleName']}/{iid}"}
