"""aws-sdk-rust on an instance: ``sdk-probe`` (crates/sdk-probe, the SDK's
default chain and IMDS client, unmodified) run through ``keycard exec``."""

import json
import os
import time
from pathlib import Path

import pytest

from conftest import ACCOUNT, REPO, allow

READ = allow(["s3:ListAllMyBuckets"])


def probe_bin() -> Path:
    p = Path(os.environ.get("SDK_PROBE_BIN", REPO / "target/debug/sdk-probe"))
    if not p.is_absolute():
        p = REPO / p
    if not p.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{p} is missing: build it with cargo build -p keycard-sdk-probe")
        pytest.skip(f"{p} is missing: build it with cargo build -p keycard-sdk-probe")
    return p


def probe(kc, iid, *args, via="imds", timeout=300):
    p = kc.exec(iid, probe_bin(), *args, via=via, timeout=timeout)
    assert p.returncode == 0, f"sdk-probe {args} failed: {p.stderr}"
    return json.loads(p.stdout)


@pytest.fixture(scope="module")
def inst(keycard):
    role, prof = keycard.instance_profile(policy=READ)
    iid = keycard.run_instance(prof["InstanceProfileName"], MetadataOptions={"HttpTokens": "required"})["InstanceId"]
    return iid, role, prof


def test_default_chain_finds_the_instance_role(keycard, inst):
    iid, role, _ = inst
    out = probe(keycard, iid, "once")
    assert out["arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{role['RoleName']}/{iid}"
    assert out["userId"] == f"{role['RoleId']}:{iid}"
    assert out["accessKeyId"].startswith("ASIA")


def test_imds_client(keycard, inst):
    iid, _, prof = inst
    out = probe(keycard, iid, "imds")
    assert out["instanceId"] == iid
    assert out["region"] == "us-east-1"
    assert out["info"]["InstanceProfileArn"] == prof["Arn"]
    assert out["document"]["instanceId"] == iid and out["document"]["accountId"] == ACCOUNT


def test_container_endpoint(keycard, inst):
    iid, role, _ = inst
    out = probe(keycard, iid, "once", via="container")
    assert out["arn"].endswith(f"/{role['RoleName']}/{iid}")


def test_no_role_no_credentials(keycard):
    iid = keycard.run_instance()["InstanceId"]
    p = keycard.exec(iid, probe_bin(), "once")
    assert p.returncode != 0


def _keys_used(kc, arn):
    """Distinct access keys a session signed GetCallerIdentity with, in
    order, from the audit trail."""
    ct = kc.client("cloudtrail")
    keys, token = [], None
    while True:
        kw = {"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "GetCallerIdentity"}], "MaxResults": 50}
        if token:
            kw["NextToken"] = token
        out = ct.lookup_events(**kw)
        for e in out["Events"]:
            b = json.loads(e["CloudTrailEvent"])
            if b["userIdentity"].get("arn") == arn and not b.get("errorCode"):
                keys.append((b["eventTime"], b["userIdentity"]["accessKeyId"]))
        token = out.get("NextToken")
        if not token:
            break
    distinct = []
    for _, k in sorted(keys):
        if k not in distinct:
            distinct.append(k)
    return distinct


@pytest.mark.soak
def test_long_running_program_across_rotations(make_keycard):
    """30 s credentials, renewed when < 20 s remain: one SDK client keeps
    calling for 100 s and never sees an error, while the audit trail shows
    it signing with at least four successive sets (three rotations)."""
    kc = make_keycard("--instance-credential-lifetime", "30", "--instance-credential-refresh", "20")
    role, prof = kc.instance_profile(policy=READ)
    iid = kc.run_instance(prof["InstanceProfileName"])["InstanceId"]
    out = probe(kc, iid, "soak", "100", "300", timeout=300)
    assert out["errors"] == []
    assert out["calls"] > 100
    time.sleep(0.5)
    used = _keys_used(kc, f"arn:aws:sts::{ACCOUNT}:assumed-role/{role['RoleName']}/{iid}")
    assert len(used) >= 4, used
