"""The EC2 API (instances, instance-profile associations, metadata
options) with boto3 and the AWS CLI: shapes, filters, pagination, state
changes, errors, DryRun, and iam:PassRole."""

import json

import pytest

from conftest import ACCOUNT, allow, expect_error

AMI = "ami-0abcdef1234567890"


def ids_of(resp):
    return sorted(i["InstanceId"] for r in resp["Reservations"] for i in r["Instances"])


def test_run_instances_shape(keycard):
    ec2 = keycard.client("ec2")
    ec2.create_key_pair(KeyName="k")
    out = ec2.run_instances(ImageId=AMI, InstanceType="t3.micro", MinCount=2, MaxCount=2, KeyName="k")
    assert out["ReservationId"].startswith("r-") and out["OwnerId"] == ACCOUNT
    assert len(out["Instances"]) == 2
    for n, i in enumerate(out["Instances"]):
        assert i["InstanceId"].startswith("i-") and len(i["InstanceId"]) == 19
        assert i["State"] == {"Code": 0, "Name": "pending"}
        assert i["AmiLaunchIndex"] == n
        assert i["Placement"]["AvailabilityZone"] == "us-east-1a"
        assert i["PrivateIpAddress"].startswith("172.31.")
        assert i["MetadataOptions"]["HttpTokens"] == "optional"
        assert i["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    assert out["Instances"][0]["PrivateIpAddress"] != out["Instances"][1]["PrivateIpAddress"]
    d = ec2.describe_instances(InstanceIds=[out["Instances"][0]["InstanceId"]])
    assert d["Reservations"][0]["ReservationId"] == out["ReservationId"]
    assert d["Reservations"][0]["Instances"][0]["State"] == {"Code": 16, "Name": "running"}
    ec2.get_waiter("instance_running").wait(InstanceIds=[i["InstanceId"] for i in out["Instances"]])


@pytest.mark.parametrize(
    "kwargs,code",
    [
        ({"ImageId": "ami-nothex"}, "InvalidAMIID.Malformed"),
        ({"ImageId": "bogus"}, "InvalidAMIID.Malformed"),
        ({"InstanceType": "huge"}, "InvalidParameterValue"),
        ({"MinCount": 3, "MaxCount": 2}, "InvalidParameterValue"),
        ({"MinCount": 0, "MaxCount": 0}, "InvalidParameterValue"),
        ({"MinCount": 1001, "MaxCount": 1001}, "InstanceLimitExceeded"),
        ({"IamInstanceProfile": {"Name": "no-such-profile"}}, "InvalidParameterValue"),
        ({"IamInstanceProfile": {"Arn": "arn:aws:iam::999999999999:instance-profile/x"}}, "InvalidParameterValue"),
        ({"UserData": "!!!not base64!!!"}, "InvalidParameterValue"),
        ({"MetadataOptions": {"HttpPutResponseHopLimit": 65}}, "InvalidParameterValue"),
        ({"MetadataOptions": {"HttpTokens": "sometimes"}}, "InvalidParameterValue"),
        ({"PrivateIpAddress": "999.1.1.1"}, "InvalidParameterValue"),
        ({"PrivateIpAddress": "10.0.0.5", "MinCount": 1, "MaxCount": 2}, "InvalidParameterCombination"),
        ({"TagSpecifications": [{"ResourceType": "instance", "Tags": [{"Key": "aws:x", "Value": "y"}]}]}, "InvalidParameterValue"),
    ],
)
def test_run_instances_rejects_bad_input_and_launches_nothing(keycard_fresh, kwargs, code):
    ec2 = keycard_fresh.client("ec2")
    args = {"ImageId": AMI, "InstanceType": "t3.micro", "MinCount": 1, "MaxCount": 1}
    args.update(kwargs)
    if "UserData" in kwargs:
        # boto3 and the CLI base64-encode UserData themselves: send the
        # garbage in a signed request of our own.
        from urllib.parse import urlencode

        from conftest import signed

        form = urlencode({"Action": "RunInstances", "Version": "2016-11-15", "ImageId": AMI, "MinCount": "1", "MaxCount": "1", "UserData": kwargs["UserData"]})
        status, _, body = signed("POST", keycard_fresh.endpoint + "/", keycard_fresh.root_creds, "ec2", body=form.encode(), headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 400 and f"<Code>{code}</Code>".encode() in body, body
    else:
        expect_error(code, ec2.run_instances, **args)
    assert ec2.describe_instances()["Reservations"] == []


def test_private_ip_in_use(keycard_fresh):
    ec2 = keycard_fresh.client("ec2")
    # Requested addresses must lie in the default subnet (172.31.0.0/20).
    expect_error("InvalidParameterValue", ec2.run_instances, ImageId=AMI, MinCount=1, MaxCount=1, PrivateIpAddress="10.1.2.3")
    expect_error("InvalidParameterValue", ec2.run_instances, ImageId=AMI, MinCount=1, MaxCount=1, PrivateIpAddress="172.31.0.1")
    ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1, PrivateIpAddress="172.31.0.5")
    expect_error("InvalidIPAddress.InUse", ec2.run_instances, ImageId=AMI, MinCount=1, MaxCount=1, PrivateIpAddress="172.31.0.5")
    # The next automatic address (172.31.0.5) is taken: another free one in the subnet.
    auto = ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1)["Instances"][0]
    assert auto["PrivateIpAddress"] == "172.31.0.4"


def test_client_token_is_idempotent(keycard_fresh):
    ec2 = keycard_fresh.client("ec2")
    a = ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1, ClientToken="tok-1")
    b = ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1, ClientToken="tok-1")
    assert a["Instances"][0]["InstanceId"] == b["Instances"][0]["InstanceId"]
    assert len(ids_of(ec2.describe_instances())) == 1


def test_describe_filters(keycard_fresh):
    kc = keycard_fresh
    ec2 = kc.client("ec2")
    role, prof = kc.instance_profile()
    web = kc.run_instance(prof["InstanceProfileName"], TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "web-1"}]}])["InstanceId"]
    db = kc.run_instance(InstanceType="m5.large", TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "db-1"}]}])["InstanceId"]
    ec2.stop_instances(InstanceIds=[db])
    f = lambda name, *values: ids_of(ec2.describe_instances(Filters=[{"Name": name, "Values": list(values)}]))  # noqa: E731
    assert f("tag:Name", "web-*") == [web]
    assert f("tag-key", "Name") == sorted([web, db])
    assert f("instance-state-name", "stopped") == [db]
    assert f("instance-state-name", "running") == [web]
    assert f("iam-instance-profile.arn", prof["Arn"]) == [web]
    assert f("instance-id", db) == [db]
    assert f("instance-type", "m5.*") == [db]
    assert ids_of(ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": ["web-1", "db-1"]}, {"Name": "instance-state-name", "Values": ["running"]}])) == [web]
    expect_error("InvalidParameterValue", ec2.describe_instances, Filters=[{"Name": "no-such-filter", "Values": ["x"]}])
    # The CLI's --query over the same call.
    out = kc.aws("ec2", "describe-instances", "--filters", "Name=tag:Name,Values=db-1", "--query", "Reservations[].Instances[].State.Name")
    assert out == ["stopped"]


def test_describe_unknown_and_malformed_ids(keycard):
    ec2 = keycard.client("ec2")
    e = expect_error("InvalidInstanceID.NotFound", ec2.describe_instances, InstanceIds=["i-0123456789abcdef0"])
    assert "i-0123456789abcdef0" in e.response["Error"]["Message"]
    expect_error("InvalidInstanceID.Malformed", ec2.describe_instances, InstanceIds=["not-an-id"])
    expect_error("InvalidInstanceID.NotFound", ec2.stop_instances, InstanceIds=["i-0123456789abcdef0"])


def test_pagination(keycard_fresh):
    ec2 = keycard_fresh.client("ec2")
    ec2.run_instances(ImageId=AMI, MinCount=12, MaxCount=12)
    pages = list(ec2.get_paginator("describe_instances").paginate(PaginationConfig={"PageSize": 5}))
    assert [len([i for r in p["Reservations"] for i in r["Instances"]]) for p in pages] == [5, 5, 2]
    seen = [i["InstanceId"] for p in pages for r in p["Reservations"] for i in r["Instances"]]
    assert len(set(seen)) == 12
    expect_error("InvalidParameterValue", ec2.describe_instances, MaxResults=3)
    expect_error("InvalidParameterValue", ec2.describe_instances, MaxResults=5, NextToken="garbage!")
    # The CLI pages on its own.
    out = keycard_fresh.aws("ec2", "describe-instances", "--page-size", "5", "--query", "Reservations[].Instances[].InstanceId")
    assert sorted(out) == sorted(seen)


def test_state_transitions(keycard):
    ec2 = keycard.client("ec2")
    iid = keycard.run_instance()["InstanceId"]
    out = ec2.stop_instances(InstanceIds=[iid])["StoppingInstances"][0]
    assert out["PreviousState"]["Name"] == "running" and out["CurrentState"]["Name"] == "stopping"
    ec2.get_waiter("instance_stopped").wait(InstanceIds=[iid])
    out = ec2.start_instances(InstanceIds=[iid])["StartingInstances"][0]
    assert (out["PreviousState"]["Name"], out["CurrentState"]["Name"]) == ("stopped", "pending")
    out = ec2.terminate_instances(InstanceIds=[iid])["TerminatingInstances"][0]
    assert (out["PreviousState"]["Name"], out["CurrentState"]["Name"]) == ("running", "shutting-down")
    ec2.get_waiter("instance_terminated").wait(InstanceIds=[iid])
    expect_error("IncorrectInstanceState", ec2.start_instances, InstanceIds=[iid])
    out = ec2.terminate_instances(InstanceIds=[iid])["TerminatingInstances"][0]
    assert (out["PreviousState"]["Name"], out["CurrentState"]["Name"]) == ("terminated", "terminated")
    st = ec2.describe_instance_status(InstanceIds=[iid], IncludeAllInstances=True)["InstanceStatuses"][0]
    assert st["InstanceState"]["Name"] == "terminated"


def test_describe_instance_status(keycard_fresh):
    ec2 = keycard_fresh.client("ec2")
    a = keycard_fresh.run_instance()["InstanceId"]
    b = keycard_fresh.run_instance()["InstanceId"]
    ec2.stop_instances(InstanceIds=[b])
    ec2.get_waiter("instance_status_ok").wait(InstanceIds=[a], WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    st = ec2.describe_instance_status()["InstanceStatuses"]
    assert [s["InstanceId"] for s in st] == [a]
    assert st[0]["InstanceStatus"]["Status"] == "ok" and st[0]["SystemStatus"]["Status"] == "ok"
    st = ec2.describe_instance_status(IncludeAllInstances=True)["InstanceStatuses"]
    assert sorted(s["InstanceId"] for s in st) == sorted([a, b])


def test_second_association_fails_with_incorrect_state(keycard):
    ec2 = keycard.client("ec2")
    _, p1 = keycard.instance_profile()
    _, p2 = keycard.instance_profile()
    iid = keycard.run_instance(p1["InstanceProfileName"])["InstanceId"]
    e = expect_error("IncorrectState", ec2.associate_iam_instance_profile, InstanceId=iid, IamInstanceProfile={"Name": p2["InstanceProfileName"]})
    assert iid in e.response["Error"]["Message"]
    assocs = ec2.describe_iam_instance_profile_associations(Filters=[{"Name": "instance-id", "Values": [iid]}])["IamInstanceProfileAssociations"]
    assert len(assocs) == 1 and assocs[0]["IamInstanceProfile"]["Arn"] == p1["Arn"]
    assert assocs[0]["State"] == "associated" and assocs[0]["AssociationId"].startswith("iip-assoc-")
    expect_error("InvalidAssociationID.NotFound", ec2.disassociate_iam_instance_profile, AssociationId="iip-assoc-0123456789abcdef0")
    expect_error("InvalidParameterValue", ec2.associate_iam_instance_profile, InstanceId=keycard.run_instance()["InstanceId"], IamInstanceProfile={"Name": "nope"})


def test_modify_metadata_options(keycard):
    ec2 = keycard.client("ec2")
    iid = keycard.run_instance()["InstanceId"]
    out = ec2.modify_instance_metadata_options(InstanceId=iid, HttpTokens="required", HttpPutResponseHopLimit=2)
    assert out["InstanceId"] == iid
    m = out["InstanceMetadataOptions"]
    assert (m["State"], m["HttpTokens"], m["HttpPutResponseHopLimit"], m["HttpEndpoint"]) == ("pending", "required", 2, "enabled")
    for bad in ({"HttpPutResponseHopLimit": 65}, {"HttpPutResponseHopLimit": 0}, {"HttpTokens": "maybe"}, {"HttpEndpoint": "off"}, {"HttpTokens": "optional", "HttpPutResponseHopLimit": 99}):
        expect_error("InvalidParameterValue", ec2.modify_instance_metadata_options, InstanceId=iid, **bad)
    m = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["MetadataOptions"]
    assert (m["HttpTokens"], m["HttpPutResponseHopLimit"]) == ("required", 2), "a refused change must change nothing"
    f = ec2.describe_instances(Filters=[{"Name": "metadata-options.http-tokens", "Values": ["required"]}])
    assert iid in ids_of(f)


def test_dry_run(keycard):
    ec2 = keycard.client("ec2")
    expect_error("DryRunOperation", ec2.run_instances, ImageId=AMI, MinCount=1, MaxCount=1, DryRun=True)
    assert keycard.aws_error("ec2", "describe-instances", "--dry-run", code="DryRunOperation")
    _, creds = keycard.new_user(policy=allow("ec2:DescribeInstances"))
    user_ec2 = keycard.client("ec2", creds=creds)
    expect_error("DryRunOperation", user_ec2.describe_instances, DryRun=True)
    expect_error("UnauthorizedOperation", user_ec2.run_instances, ImageId=AMI, MinCount=1, MaxCount=1, DryRun=True)
    before = len(ids_of(ec2.describe_instances()))
    expect_error("UnauthorizedOperation", user_ec2.run_instances, ImageId=AMI, MinCount=1, MaxCount=1)
    assert len(ids_of(ec2.describe_instances())) == before


def test_pass_role_is_checked(keycard):
    """Launching with (or attaching) a profile passes its role to EC2:
    iam:PassRole on the role is required, with iam:PassedToService."""
    role, prof = keycard.instance_profile()
    ec2_all = allow(["ec2:RunInstances", "ec2:AssociateIamInstanceProfile", "ec2:DescribeInstances", "ec2:DescribeIamInstanceProfileAssociations"])
    _, creds = keycard.new_user(policy=ec2_all)
    ec2 = keycard.client("ec2", creds=creds)
    e = expect_error("UnauthorizedOperation", ec2.run_instances, ImageId=AMI, MinCount=1, MaxCount=1, IamInstanceProfile={"Name": prof["InstanceProfileName"]})
    assert "iam:PassRole" in e.response["Error"]["Message"]
    bare = ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    expect_error("UnauthorizedOperation", ec2.associate_iam_instance_profile, InstanceId=bare, IamInstanceProfile={"Name": prof["InstanceProfileName"]})
    # PassRole, but only to another service: still denied.
    wrong = {"Version": "2012-10-17", "Statement": [ec2_all["Statement"][0], {"Effect": "Allow", "Action": "iam:PassRole", "Resource": role["Arn"], "Condition": {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}}}]}
    _, creds2 = keycard.new_user(policy=wrong)
    expect_error("UnauthorizedOperation", keycard.client("ec2", creds=creds2).run_instances, ImageId=AMI, MinCount=1, MaxCount=1, IamInstanceProfile={"Name": prof["InstanceProfileName"]})
    right = {"Version": "2012-10-17", "Statement": [ec2_all["Statement"][0], {"Effect": "Allow", "Action": "iam:PassRole", "Resource": role["Arn"], "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}}]}
    _, creds3 = keycard.new_user(policy=right)
    ec2_ok = keycard.client("ec2", creds=creds3)
    iid = ec2_ok.run_instances(ImageId=AMI, MinCount=1, MaxCount=1, IamInstanceProfile={"Name": prof["InstanceProfileName"]})["Instances"][0]["InstanceId"]
    assert ec2_ok.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["IamInstanceProfile"]["Arn"] == prof["Arn"]
    ec2_ok.associate_iam_instance_profile(InstanceId=bare, IamInstanceProfile={"Arn": prof["Arn"]})


def test_resource_tag_conditions(keycard):
    """ec2:ResourceTag lets a policy stop only its team's instances."""
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ec2:StopInstances", "Resource": "*", "Condition": {"StringEquals": {"ec2:ResourceTag/team": "blue"}}}]}
    _, creds = keycard.new_user(policy=policy)
    blue = keycard.run_instance(TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "team", "Value": "blue"}]}])["InstanceId"]
    red = keycard.run_instance(TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "team", "Value": "red"}]}])["InstanceId"]
    ec2 = keycard.client("ec2", creds=creds)
    ec2.stop_instances(InstanceIds=[blue])
    expect_error("UnauthorizedOperation", ec2.stop_instances, InstanceIds=[red])
    expect_error("UnauthorizedOperation", ec2.stop_instances, InstanceIds=[blue, red])


def test_tags_api(keycard):
    ec2 = keycard.client("ec2")
    iid = keycard.run_instance()["InstanceId"]
    ec2.create_tags(Resources=[iid], Tags=[{"Key": "env", "Value": "dev"}, {"Key": "owner", "Value": "me"}])
    tags = {t["Key"]: t["Value"] for t in ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["Tags"]}
    assert tags == {"env": "dev", "owner": "me"}
    ec2.delete_tags(Resources=[iid], Tags=[{"Key": "env"}])
    inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert inst["Tags"] == [{"Key": "owner", "Value": "me"}]


def test_unknown_action(keycard):
    from conftest import signed

    status, _, body = signed("POST", keycard.endpoint + "/", keycard.root_creds, "ec2", body=b"Action=FlyToTheMoon&Version=2016-11-15", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 400
    assert b"<Response><Errors><Error><Code>InvalidAction</Code>" in body


def test_audit_records_ec2_calls(keycard):
    iid = keycard.run_instance()["InstanceId"]
    ct = keycard.client("cloudtrail")
    import time

    deadline = time.time() + 5
    while True:
        ev = ct.lookup_events(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "RunInstances"}])["Events"]
        found = [e for e in ev if any(r.get("ResourceName", "").endswith(iid) for r in e.get("Resources", []))]
        if found or time.time() > deadline:
            break
        time.sleep(0.1)
    assert found
    body = json.loads(found[0]["CloudTrailEvent"])
    assert body["eventSource"] == "ec2.amazonaws.com" and body["readOnly"] is False


def test_instances_survive_restart(keycard_fresh):
    kc = keycard_fresh
    _, prof = kc.instance_profile()
    iid = kc.run_instance(prof["InstanceProfileName"], TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "k", "Value": "v"}]}])["InstanceId"]
    before = kc.client("ec2").describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    kc.restart()
    after = kc.client("ec2").describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    for k in ("InstanceId", "PrivateIpAddress", "IamInstanceProfile", "Tags", "MetadataOptions", "LaunchTime", "State"):
        assert before[k] == after[k], k
