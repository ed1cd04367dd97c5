"""Instance credentials that cannot be used elsewhere (issue 10).

An instance's role credentials are copied out of its metadata service and
used from the host with boto3 and the AWS CLI:

- ``detect`` (the default): the call works, and a GuardDuty-shaped finding
  (``InstanceCredentialExfiltration.OutsideAWS``) appears with the instance,
  role, session, source and calls; the calls' audit events are marked;
- ``--instance-credentials bound``: the call is refused;
- AWS's documented binding policy (``aws:SourceVpc`` /
  ``aws:VpcSourceIp`` against ``${aws:Ec2InstanceSource…}``) refuses it as
  AWS would, with no keycard mode.

The same credentials keep working on the instance itself (``keycard exec``
points the SDKs at the instance's own network path).
"""

import json
import subprocess
import sys

import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT, allow, creds_env, doc, keycard_bin

OUTSIDE = "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS"
INSIDE = "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.InsideAWS"
AFTER = "Keycard:IAMUser/InstanceCredentialUse.AfterInstance"

READ = allow(["s3:ListAllMyBuckets", "iam:ListRoles"])

# AWS's documented policy (IAM User Guide, aws:Ec2InstanceSourceVpc /
# aws:Ec2InstanceSourcePrivateIPv4), word for word.
AWS_BINDING_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {
                "StringNotEquals": {"aws:SourceVpc": "${aws:Ec2InstanceSourceVpc}"},
                "Null": {"ec2:SourceInstanceARN": "false"},
                "BoolIfExists": {"aws:ViaAWSService": "false"},
            },
        },
        {
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {
                "StringNotEquals": {"aws:VpcSourceIp": "${aws:Ec2InstanceSourcePrivateIPv4}"},
                "Null": {"ec2:SourceInstanceARN": "false"},
                "BoolIfExists": {"aws:ViaAWSService": "false"},
            },
        },
    ],
}


def launch(kc, policy=READ):
    role, prof = kc.instance_profile(policy=policy)
    iid = kc.run_instance(prof["InstanceProfileName"], MetadataOptions={"HttpTokens": "required"})["InstanceId"]
    return iid, role


def stolen(kc, iid, role):
    """The instance's credentials, copied out of its metadata service."""
    tok = kc.imds_token(iid)
    status, _, body = kc.imds(iid, f"/latest/meta-data/iam/security-credentials/{role['RoleName']}", token=tok)
    assert status == 200, body
    c = json.loads(body)
    return {"AccessKeyId": c["AccessKeyId"], "SecretAccessKey": c["SecretAccessKey"], "SessionToken": c["Token"]}


def sightings(kc):
    p = subprocess.run(
        [str(keycard_bin()), "audit", "exfiltration", "--data-dir", str(kc.data_dir), "--json"],
        capture_output=True, text=True, timeout=60,
    )
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)["Findings"]


def of(findings, iid, kind):
    return [f for f in findings if f["Resource"]["InstanceDetails"]["InstanceId"] == iid and f["Type"] == kind]


def posture_findings(kc, rule):
    p = subprocess.run(
        [str(keycard_bin()), "posture", "--data-dir", str(kc.data_dir), "--json"],
        capture_output=True, text=True, timeout=60,
    )
    assert p.returncode == 0, p.stderr
    return [f for f in json.loads(p.stdout)["findings"] if f["rule"] == rule]


def code(e: ClientError) -> str:
    return e.response["Error"]["Code"]


def test_detect_allows_the_stolen_call_and_reports_it(keycard):
    iid, role = launch(keycard)
    creds = stolen(keycard, iid, role)
    # From the host, boto3 and the AWS CLI: allowed (detect mode).
    keycard.client("s3", creds=creds).list_buckets()
    keycard.client("iam", creds=creds).list_roles()
    keycard.aws("s3api", "list-buckets", env_extra=creds_env(creds))
    f = of(sightings(keycard), iid, OUTSIDE)
    assert len(f) == 1, sightings(keycard)
    f = f[0]
    assert f["AccountId"] == ACCOUNT and f["Severity"] == 8
    assert f["Resource"]["AccessKeyDetails"]["AccessKeyId"] == creds["AccessKeyId"]
    assert f["Resource"]["AccessKeyDetails"]["UserName"] == role["RoleName"]
    assert f["Resource"]["AccessKeyDetails"]["UserType"] == "AssumedRole"
    assert f["Service"]["Action"]["AwsApiCallAction"]["RemoteIpDetails"]["IpAddressV4"] == "127.0.0.1"
    assert f["Service"]["Count"] == 3
    extra = json.loads(f["Service"]["AdditionalInfo"]["Value"])
    assert extra["calls"] == {"ListBuckets": 2, "ListRoles": 1}
    assert extra["sessionArn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{role['RoleName']}/{iid}"
    assert extra["deniedCalls"] == 0
    assert f["Service"]["EventFirstSeen"] <= f["Service"]["EventLastSeen"]
    # It joins the governance findings (and so posture, KPIs, Security Hub).
    g = [x for x in posture_findings(keycard, "KC-EC2-007") if x["resource"].endswith(f"instance/{iid}")]
    assert len(g) == 1 and g[0]["severity"] == "HIGH", g
    assert creds["AccessKeyId"] in g[0]["detail"]
    # The calls' audit events say so.
    events = keycard.client("cloudtrail").lookup_events(
        LookupAttributes=[{"AttributeKey": "AccessKeyId", "AttributeValue": creds["AccessKeyId"]}]
    )["Events"]
    marked = [json.loads(e["CloudTrailEvent"]).get("keycardInstanceCredentials") for e in events]
    assert len(marked) == 3 and all(m and m["findingType"] == OUTSIDE and m["deliveredTo"] == iid for m in marked)


def test_the_same_credentials_work_on_the_instance_and_are_not_reported(keycard):
    iid, role = launch(keycard)
    out = keycard.exec_aws(iid, "sts", "get-caller-identity")
    assert out["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{role['RoleName']}/{iid}"
    keycard.exec_aws(iid, "s3api", "list-buckets")
    p = keycard.exec(iid, sys.executable, "-c", "import boto3; print(len(boto3.client('iam').list_roles()['Roles']))")
    assert p.returncode == 0, p.stderr
    assert of(sightings(keycard), iid, OUTSIDE) == []
    # Calls made on the instance carry the VPC keys: the instance's own
    # path is where aws:SourceVpc and aws:VpcSourceIp come from.
    events = keycard.client("cloudtrail").lookup_events(
        LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "ListBuckets"}]
    )["Events"]
    inst = keycard.client("ec2").describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    mine = [json.loads(e["CloudTrailEvent"]) for e in events]
    mine = [e for e in mine if e["userIdentity"].get("arn", "").endswith(f"/{iid}")]
    assert mine and all(e["sourceIPAddress"] == inst["PrivateIpAddress"] for e in mine)
    assert all("keycardInstanceCredentials" not in e for e in mine)


def test_aws_documented_deny_policy_binds_the_credentials(keycard):
    policy = {"Version": "2012-10-17", "Statement": READ["Statement"] + AWS_BINDING_POLICY["Statement"]}
    iid, role = launch(keycard, policy=policy)
    creds = stolen(keycard, iid, role)
    with pytest.raises(ClientError) as e:
        keycard.client("s3", creds=creds).list_buckets()
    assert code(e.value) == "AccessDenied"
    with pytest.raises(ClientError) as e:
        keycard.client("iam", creds=creds).list_roles()
    assert code(e.value) == "AccessDenied"
    assert "explicit deny in an identity-based policy" in e.value.response["Error"]["Message"]
    keycard.aws_error("iam", "list-roles", code="AccessDenied", env_extra=creds_env(creds))
    # On the instance, the same policy allows the same calls.
    keycard.exec_aws(iid, "s3api", "list-buckets")
    keycard.exec_aws(iid, "iam", "list-roles")
    # Refused calls from elsewhere are still reported.
    f = of(sightings(keycard), iid, OUTSIDE)
    assert len(f) == 1 and f[0]["Service"]["Count"] == 3


def test_a_user_key_is_not_affected_by_the_binding_policy(keycard):
    """The policy's Null ec2:SourceInstanceARN condition: only instance
    credentials are bound; a user with the same policy is not."""
    policy = {"Version": "2012-10-17", "Statement": READ["Statement"] + AWS_BINDING_POLICY["Statement"]}
    _, creds = keycard.new_user(policy=policy)
    keycard.client("iam", creds=creds).list_roles()


def test_credentials_used_over_another_instance_path_are_inside_aws(keycard):
    a, role_a = launch(keycard)
    b, _ = launch(keycard)
    creds = stolen(keycard, a, role_a)
    b_api = keycard.instance_access(b)["apiEndpoint"]
    assert b_api != keycard.endpoint
    iam = keycard.session(creds).client("iam", endpoint_url=b_api, region_name="us-east-1")
    iam.list_roles()
    f = of(sightings(keycard), a, INSIDE)
    assert len(f) == 1
    extra = json.loads(f[0]["Service"]["AdditionalInfo"]["Value"])
    assert extra["remoteInstanceId"] == b
    inst_b = keycard.client("ec2").describe_instances(InstanceIds=[b])["Reservations"][0]["Instances"][0]
    assert f[0]["Service"]["Action"]["AwsApiCallAction"]["RemoteIpDetails"]["IpAddressV4"] == inst_b["PrivateIpAddress"]
    assert f[0]["Service"]["Action"]["AwsApiCallAction"]["RemoteAccountDetails"]["AccountId"] == ACCOUNT
    assert [x for x in posture_findings(keycard, "KC-EC2-008") if x["resource"].endswith(f"instance/{a}")]


def test_use_after_the_instance_stopped_is_refused_and_reported(keycard):
    iid, role = launch(keycard)
    creds = stolen(keycard, iid, role)
    keycard.client("ec2").stop_instances(InstanceIds=[iid])
    with pytest.raises(ClientError) as e:
        keycard.client("iam", creds=creds).list_roles()
    assert code(e.value) == "ExpiredToken"
    f = of(sightings(keycard), iid, AFTER)
    assert len(f) == 1
    extra = json.loads(f[0]["Service"]["AdditionalInfo"]["Value"])
    assert extra["reason"] == "the instance was stopped" and extra["deniedCalls"] == 1
    assert [x for x in posture_findings(keycard, "KC-EC2-009") if x["resource"].endswith(f"instance/{iid}")]


def test_audit_exfiltration_table(keycard):
    iid, role = launch(keycard)
    creds = stolen(keycard, iid, role)
    keycard.client("s3", creds=creds).list_buckets()
    p = subprocess.run(
        [str(keycard_bin()), "audit", "exfiltration", "--data-dir", str(keycard.data_dir)],
        capture_output=True, text=True, timeout=60,
    )
    assert p.returncode == 0, p.stderr
    assert OUTSIDE in p.stdout and iid in p.stdout and "ListBuckets×1" in p.stdout


@pytest.fixture(scope="module")
def bound(make_keycard_module):
    return make_keycard_module("--instance-credentials", "bound")


def test_bound_refuses_use_away_from_the_instance(bound):
    iid, role = launch(bound)
    creds = stolen(bound, iid, role)
    with pytest.raises(ClientError) as e:
        bound.client("iam", creds=creds).list_roles()
    assert code(e.value) == "AccessDenied"
    assert f"belong to instance {iid}" in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        bound.client("s3", creds=creds).list_buckets()
    assert code(e.value) == "AccessDenied"
    with pytest.raises(ClientError) as e:
        bound.client("ec2", creds=creds).describe_instances()
    assert code(e.value) == "UnauthorizedOperation"
    bound.aws_error("iam", "list-roles", code="AccessDenied", env_extra=creds_env(creds))
    f = of(sightings(bound), iid, OUTSIDE)
    assert len(f) == 1 and json.loads(f[0]["Service"]["AdditionalInfo"]["Value"])["deniedCalls"] == 4
    # Nothing that was refused happened: the audit events say denied.
    events = bound.client("cloudtrail").lookup_events(
        LookupAttributes=[{"AttributeKey": "AccessKeyId", "AttributeValue": creds["AccessKeyId"]}]
    )["Events"]
    assert events and all(json.loads(e["CloudTrailEvent"]).get("errorCode") for e in events)


def test_bound_keeps_working_on_the_instance(bound):
    iid, role = launch(bound)
    out = bound.exec_aws(iid, "sts", "get-caller-identity")
    assert out["Arn"].endswith(f"/{role['RoleName']}/{iid}")
    bound.exec_aws(iid, "iam", "list-roles")
    p = bound.exec(iid, sys.executable, "-c", "import boto3; boto3.client('s3').list_buckets(); print('ok')")
    assert p.returncode == 0 and "ok" in p.stdout, p.stderr
    # A user's own key is not an instance credential: unaffected.
    _, creds = bound.new_user(policy=READ)
    bound.client("iam", creds=creds).list_roles()
    assert of(sightings(bound), iid, OUTSIDE) == []


def test_guardduty_api_shows_the_finding(keycard):
    """Tools that read GuardDuty (boto3, the AWS CLI) find the sighting
    as GuardDuty would show it."""
    iid, role = launch(keycard)
    creds = stolen(keycard, iid, role)
    keycard.client("s3", creds=creds).list_buckets()
    gd = keycard.client("guardduty")
    det = gd.list_detectors()["DetectorIds"]
    assert len(det) == 1 and len(det[0]) == 32
    assert gd.get_detector(DetectorId=det[0])["Status"] == "ENABLED"
    crit = {"Criterion": {"type": {"Eq": [OUTSIDE]}, "resource.instanceDetails.instanceId": {"Eq": [iid]}}}
    ids = gd.list_findings(DetectorId=det[0], FindingCriteria=crit)["FindingIds"]
    assert len(ids) == 1
    f = gd.get_findings(DetectorId=det[0], FindingIds=ids)["Findings"][0]
    assert f["Type"] == OUTSIDE and f["Id"] == ids[0] and f["Severity"] == 8.0
    assert f["Resource"]["InstanceDetails"]["InstanceId"] == iid
    assert f["Resource"]["AccessKeyDetails"]["AccessKeyId"] == creds["AccessKeyId"]
    assert f["Service"]["Action"]["AwsApiCallAction"]["RemoteIpDetails"]["IpAddressV4"] == "127.0.0.1"
    assert f["Service"]["Count"] == 1 and f["Service"]["Archived"] is False
    # Criteria that match nothing, pagination, and bad input.
    none = {"Criterion": {"resource.instanceDetails.instanceId": {"Eq": ["i-00000000000000000"]}}}
    assert gd.list_findings(DetectorId=det[0], FindingCriteria=none)["FindingIds"] == []
    pages = list(gd.get_paginator("list_findings").paginate(DetectorId=det[0], PaginationConfig={"PageSize": 1}))
    assert sum(len(p["FindingIds"]) for p in pages) == len(sightings(keycard))
    with pytest.raises(ClientError) as e:
        gd.list_findings(DetectorId="0" * 32)
    assert code(e.value) == "BadRequestException"
    with pytest.raises(ClientError) as e:
        gd.list_findings(DetectorId=det[0], FindingCriteria={"Criterion": {"nope": {"Eq": ["x"]}}})
    assert code(e.value) == "BadRequestException"
    out = keycard.aws("guardduty", "list-findings", "--detector-id", det[0])
    assert ids[0] in out["FindingIds"]


def test_an_instance_in_its_own_vpc_carries_that_vpc(keycard):
    """An instance launched into a created VPC's subnet: its private IP is
    from the subnet, its metadata shows the subnet, and its calls carry
    that VPC as aws:SourceVpc (a policy keyed on it allows them)."""
    ec2 = keycard.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.1.0/24")["Subnet"]["SubnetId"]
    only_from_vpc = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iam:ListRoles", "Resource": "*",
         "Condition": {"StringEquals": {"aws:SourceVpc": vpc, "aws:Ec2InstanceSourceVpc": vpc}}}]}
    role, prof = keycard.instance_profile(policy=only_from_vpc)
    inst = keycard.run_instance(prof["InstanceProfileName"], SubnetId=subnet)
    iid = inst["InstanceId"]
    assert inst["VpcId"] == vpc and inst["PrivateIpAddress"].startswith("10.42.1.")
    keycard.exec_aws(iid, "iam", "list-roles")
    tok = keycard.imds_token(iid)
    mac = keycard.imds(iid, "/latest/meta-data/mac", token=tok)[2].decode()
    base = f"/latest/meta-data/network/interfaces/macs/{mac}/"
    assert keycard.imds(iid, base + "subnet-ipv4-cidr-block", token=tok)[2].decode() == "10.42.1.0/24"
    assert keycard.imds(iid, base + "vpc-ipv4-cidr-block", token=tok)[2].decode() == "10.42.0.0/16"
    assert keycard.imds(iid, base + "vpc-id", token=tok)[2].decode() == vpc
    # From the host the same credentials have no aws:SourceVpc: refused.
    with pytest.raises(ClientError) as e:
        keycard.client("iam", creds=stolen(keycard, iid, role)).list_roles()
    assert code(e.value) == "AccessDenied"
