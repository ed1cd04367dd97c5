"""Network interfaces with boto3 and the AWS CLI: CreateNetworkInterface,
AttachNetworkInterface, DetachNetworkInterface, DeleteNetworkInterface,
ModifyNetworkInterfaceAttribute and DescribeNetworkInterfaceAttribute,
how DescribeNetworkInterfaces and DescribeInstances show them, what
TerminateInstances does to them, and that refused calls change nothing."""

import re

import pytest

from conftest import ACCOUNT, REGION, allow, expect_error, unique

AMI = "ami-0abcdef1234567890"
ENI_ID = re.compile(r"^eni-[0-9a-f]{17}$")


@pytest.fixture(scope="module")
def ec2(keycard):
    return keycard.client("ec2")


@pytest.fixture(scope="module")
def net(ec2):
    """The default VPC's subnets by zone letter, and a group in it."""
    subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    by_zone = {s["AvailabilityZone"][-1]: s for s in subnets}
    vpc = by_zone["a"]["VpcId"]
    sg = ec2.create_security_group(GroupName=unique("eni-sg"), Description="eni tests", VpcId=vpc)["GroupId"]
    other_vpc = ec2.create_vpc(CidrBlock="10.61.0.0/16")["Vpc"]["VpcId"]
    other_sg = ec2.create_security_group(GroupName=unique("eni-far"), Description="far", VpcId=other_vpc)["GroupId"]
    return {"a": by_zone["a"], "b": by_zone["b"], "vpc": vpc, "sg": sg, "other_sg": other_sg}


def run(ec2, **kw):
    args = {"ImageId": AMI, "InstanceType": "t3.medium", "MinCount": 1, "MaxCount": 1}
    args.update(kw)
    return ec2.run_instances(**args)["Instances"][0]["InstanceId"]


def eni(ec2, eid):
    (e,) = ec2.describe_network_interfaces(NetworkInterfaceIds=[eid])["NetworkInterfaces"]
    return e


def all_ids(ec2):
    return {e["NetworkInterfaceId"] for e in ec2.describe_network_interfaces()["NetworkInterfaces"]}


def primary_of(ec2, iid):
    i = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    return next(n for n in i["NetworkInterfaces"] if n["Attachment"]["DeviceIndex"] == 0)


def test_create_describe_and_delete(ec2, net):
    out = ec2.create_network_interface(
        SubnetId=net["a"]["SubnetId"],
        Description="web tier",
        Groups=[net["sg"]],
        TagSpecifications=[{"ResourceType": "network-interface", "Tags": [{"Key": "Name", "Value": "web"}]}],
    )["NetworkInterface"]
    eid = out["NetworkInterfaceId"]
    assert ENI_ID.match(eid), eid
    assert out["Status"] == "available" and "Attachment" not in out
    assert (out["SubnetId"], out["VpcId"], out["AvailabilityZone"]) == (
        net["a"]["SubnetId"],
        net["vpc"],
        f"{REGION}a",
    )
    assert out["Description"] == "web tier" and out["OwnerId"] == ACCOUNT and out["SourceDestCheck"] is True
    assert [g["GroupId"] for g in out["Groups"]] == [net["sg"]]
    assert out["TagSet"] == [{"Key": "Name", "Value": "web"}] and out["InterfaceType"] == "interface"
    assert out["PrivateIpAddress"].startswith("172.31.") and out["PrivateIpAddresses"][0]["Primary"] is True
    assert eni(ec2, eid) == out
    for f in (
        {"Name": "status", "Values": ["available"]},
        {"Name": "tag:Name", "Values": ["web"]},
        {"Name": "description", "Values": ["web*"]},
        {"Name": "group-id", "Values": [net["sg"]]},
    ):
        got = ec2.describe_network_interfaces(Filters=[f])["NetworkInterfaces"]
        assert eid in [e["NetworkInterfaceId"] for e in got], f
    # Pages of MaxResults together hold every interface once.
    seen, token = [], None
    while True:
        kw = {"MaxResults": 5} | ({"NextToken": token} if token else {})
        page = ec2.describe_network_interfaces(**kw)
        seen += [e["NetworkInterfaceId"] for e in page["NetworkInterfaces"]]
        token = page.get("NextToken")
        if not token:
            break
    assert sorted(seen) == sorted(all_ids(ec2)) and eid in seen
    # The CLI deletes it; a second delete finds nothing.
    ec2.get_waiter("network_interface_available").wait(NetworkInterfaceIds=[eid])
    ec2.delete_network_interface(NetworkInterfaceId=eid)
    assert eid not in all_ids(ec2)
    expect_error("InvalidNetworkInterfaceID.NotFound", ec2.delete_network_interface, NetworkInterfaceId=eid)
    expect_error("InvalidNetworkInterfaceID.NotFound", ec2.describe_network_interfaces, NetworkInterfaceIds=[eid])
    expect_error("InvalidNetworkInterfaceID.Malformed", ec2.delete_network_interface, NetworkInterfaceId="eni-xyz")


def test_default_group_and_requested_address(ec2, net):
    e = ec2.create_network_interface(SubnetId=net["b"]["SubnetId"], PrivateIpAddress="172.31.20.20")[
        "NetworkInterface"
    ]
    assert e["PrivateIpAddress"] == "172.31.20.20" and e["AvailabilityZone"] == f"{REGION}b"
    assert [g["GroupName"] for g in e["Groups"]] == ["default"]
    # The address is taken now, for interfaces and instances alike.
    expect_error(
        "InvalidIPAddress.InUse",
        ec2.create_network_interface,
        SubnetId=net["b"]["SubnetId"],
        PrivateIpAddress="172.31.20.20",
    )
    expect_error("InvalidIPAddress.InUse", run, ec2, SubnetId=net["b"]["SubnetId"], PrivateIpAddress="172.31.20.20")
    ec2.delete_network_interface(NetworkInterfaceId=e["NetworkInterfaceId"])


@pytest.mark.parametrize(
    "kwargs,code",
    [
        ({"SubnetId": "subnet-0123456789abcdef0"}, "InvalidSubnetID.NotFound"),
        ({"SubnetId": "subnet-nope"}, "InvalidSubnetID.Malformed"),
        ({"Groups": ["sg-0123456789abcdef0"]}, "InvalidGroup.NotFound"),
        ({"Groups": ["OTHER"]}, "InvalidParameter"),
        ({"PrivateIpAddress": "10.9.9.9"}, "InvalidParameterValue"),
        ({"PrivateIpAddress": "172.31.0.1"}, "InvalidParameterValue"),
        ({"Description": "x" * 256}, "InvalidParameterValue"),
        ({"TagSpecifications": [{"ResourceType": "volume", "Tags": [{"Key": "k", "Value": "v"}]}]}, "InvalidParameterValue"),
        ({"TagSpecifications": [{"ResourceType": "network-interface", "Tags": [{"Key": "aws:x", "Value": "v"}]}]}, "InvalidParameterValue"),
        ({"SecondaryPrivateIpAddressCount": 2}, "UnsupportedOperation"),
    ],
)
def test_create_refuses_bad_input_and_makes_nothing(ec2, net, kwargs, code):
    before = all_ids(ec2)
    args = {"SubnetId": net["a"]["SubnetId"]} | kwargs
    if args.get("Groups") == ["OTHER"]:
        args["Groups"] = [net["other_sg"]]
    expect_error(code, ec2.create_network_interface, **args)
    assert all_ids(ec2) == before


def test_attach_detach_with_the_cli(keycard, ec2, net):
    iid = run(ec2)
    eid = ec2.create_network_interface(SubnetId=net["a"]["SubnetId"], Groups=[net["sg"]])["NetworkInterface"][
        "NetworkInterfaceId"
    ]
    att = keycard.aws(
        "ec2", "attach-network-interface", "--network-interface-id", eid, "--instance-id", iid, "--device-index", "1"
    )
    aid = att["AttachmentId"]
    assert re.match(r"^eni-attach-[0-9a-f]{17}$", aid) and att["NetworkCardIndex"] == 0
    e = eni(ec2, eid)
    assert e["Status"] == "in-use"
    a = e["Attachment"]
    assert (a["AttachmentId"], a["InstanceId"], a["DeviceIndex"], a["Status"]) == (aid, iid, 1, "attached")
    assert a["DeleteOnTermination"] is False and a["InstanceOwnerId"] == ACCOUNT
    by_instance = ec2.describe_network_interfaces(Filters=[{"Name": "attachment.instance-id", "Values": [iid]}])
    assert sorted(x["Attachment"]["DeviceIndex"] for x in by_instance["NetworkInterfaces"]) == [0, 1]
    # DescribeInstances lists it beside the primary.
    i = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert [n["Attachment"]["DeviceIndex"] for n in i["NetworkInterfaces"]] == [0, 1]
    assert i["NetworkInterfaces"][1]["NetworkInterfaceId"] == eid
    for name, value in (("network-interface.network-interface-id", eid), ("network-interface.attachment.attachment-id", aid)):
        found = ec2.describe_instances(Filters=[{"Name": name, "Values": [value]}])["Reservations"]
        assert [x["InstanceId"] for r in found for x in r["Instances"]] == [iid], name
    # The metadata service lists both interfaces by MAC.
    primary = primary_of(ec2, iid)
    tok = keycard.imds_token(iid)
    imds = lambda p: keycard.imds(iid, "/latest/meta-data/network/interfaces/macs/" + p, token=tok)[2].decode()  # noqa: E731
    assert imds("").split("\n") == [primary["MacAddress"] + "/", e["MacAddress"] + "/"]
    assert imds(f"{e['MacAddress']}/interface-id") == eid and imds(f"{e['MacAddress']}/device-number") == "1"
    assert imds(f"{e['MacAddress']}/security-group-ids") == net["sg"]
    assert imds(f"{e['MacAddress']}/local-ipv4s") == e["PrivateIpAddress"]
    # Refusals, each changing nothing.
    spare = ec2.create_network_interface(SubnetId=net["a"]["SubnetId"])["NetworkInterface"]["NetworkInterfaceId"]
    far = ec2.create_network_interface(SubnetId=net["b"]["SubnetId"])["NetworkInterface"]["NetworkInterfaceId"]
    attach = ec2.attach_network_interface
    expect_error("InvalidNetworkInterface.InUse", attach, NetworkInterfaceId=eid, InstanceId=iid, DeviceIndex=2)
    err = expect_error("InvalidParameterValue", attach, NetworkInterfaceId=spare, InstanceId=iid, DeviceIndex=1)
    assert err.response["Error"]["Message"] == f"Instance '{iid}' already has an interface attached at device index '1'."
    expect_error("InvalidParameterValue", attach, NetworkInterfaceId=spare, InstanceId=iid, DeviceIndex=0)
    expect_error("InvalidParameterCombination", attach, NetworkInterfaceId=far, InstanceId=iid, DeviceIndex=2)
    expect_error("InvalidInstanceID.NotFound", attach, NetworkInterfaceId=spare, InstanceId="i-0123456789abcdef0", DeviceIndex=2)
    expect_error("InvalidNetworkInterface.InUse", ec2.delete_network_interface, NetworkInterfaceId=eid)
    expect_error("InvalidNetworkInterface.InUse", ec2.delete_network_interface, NetworkInterfaceId=primary["NetworkInterfaceId"])
    err = expect_error("OperationNotPermitted", ec2.detach_network_interface, AttachmentId=primary["Attachment"]["AttachmentId"])
    assert "device index 0" in err.response["Error"]["Message"]
    expect_error("InvalidAttachmentID.NotFound", ec2.detach_network_interface, AttachmentId="eni-attach-0123456789abcdef0")
    assert eni(ec2, spare)["Status"] == eni(ec2, far)["Status"] == "available"
    assert eni(ec2, eid)["Attachment"]["AttachmentId"] == aid
    # A t3.medium takes three interfaces: a fourth is over its limit.
    attach(NetworkInterfaceId=spare, InstanceId=iid, DeviceIndex=2)
    extra = ec2.create_network_interface(SubnetId=net["a"]["SubnetId"])["NetworkInterface"]["NetworkInterfaceId"]
    expect_error("AttachmentLimitExceeded", attach, NetworkInterfaceId=extra, InstanceId=iid, DeviceIndex=3)
    # Detach with the CLI: available again, and deletable.
    keycard.aws("ec2", "detach-network-interface", "--attachment-id", aid)
    ec2.get_waiter("network_interface_available").wait(NetworkInterfaceIds=[eid])
    assert "Attachment" not in eni(ec2, eid)
    expect_error("InvalidAttachmentID.NotFound", ec2.detach_network_interface, AttachmentId=aid)
    keycard.aws("ec2", "delete-network-interface", "--network-interface-id", eid)
    for x in (far, extra):
        ec2.delete_network_interface(NetworkInterfaceId=x)
    ec2.terminate_instances(InstanceIds=[iid])


def test_modify_and_describe_attributes(ec2, net):
    iid = run(ec2)
    eid = ec2.create_network_interface(SubnetId=net["a"]["SubnetId"])["NetworkInterface"]["NetworkInterfaceId"]
    modify, describe = ec2.modify_network_interface_attribute, ec2.describe_network_interface_attribute
    modify(NetworkInterfaceId=eid, Description={"Value": "changed"})
    modify(NetworkInterfaceId=eid, SourceDestCheck={"Value": False})
    modify(NetworkInterfaceId=eid, Groups=[net["sg"]])
    assert describe(NetworkInterfaceId=eid, Attribute="description")["Description"] == {"Value": "changed"}
    assert describe(NetworkInterfaceId=eid, Attribute="sourceDestCheck")["SourceDestCheck"] == {"Value": False}
    got = describe(NetworkInterfaceId=eid, Attribute="groupSet")["Groups"]
    assert [g["GroupId"] for g in got] == [net["sg"]]
    assert "Attachment" not in describe(NetworkInterfaceId=eid, Attribute="attachment")
    aid = ec2.attach_network_interface(NetworkInterfaceId=eid, InstanceId=iid, DeviceIndex=1)["AttachmentId"]
    modify(NetworkInterfaceId=eid, Attachment={"AttachmentId": aid, "DeleteOnTermination": True})
    a = describe(NetworkInterfaceId=eid, Attribute="attachment")["Attachment"]
    assert (a["AttachmentId"], a["DeleteOnTermination"], a["DeviceIndex"]) == (aid, True, 1)
    # Refusals change nothing.
    before = eni(ec2, eid)
    expect_error("InvalidParameterCombination", modify, NetworkInterfaceId=eid, Description={"Value": "x"}, SourceDestCheck={"Value": True})
    expect_error("InvalidGroup.NotFound", modify, NetworkInterfaceId=eid, Groups=["sg-0123456789abcdef0"])
    expect_error("InvalidParameter", modify, NetworkInterfaceId=eid, Groups=[net["other_sg"]])
    expect_error("InvalidAttachmentID.NotFound", modify, NetworkInterfaceId=eid, Attachment={"AttachmentId": "eni-attach-0123456789abcdef0", "DeleteOnTermination": False})
    expect_error("InvalidParameterCombination", modify, NetworkInterfaceId=eid)
    expect_error("InvalidParameterValue", describe, NetworkInterfaceId=eid, Attribute="bogus")
    assert eni(ec2, eid) == before
    # A primary interface's attributes are its instance's.
    p = primary_of(ec2, iid)["NetworkInterfaceId"]
    modify(NetworkInterfaceId=p, SourceDestCheck={"Value": False})
    modify(NetworkInterfaceId=p, Description={"Value": "primary"})
    modify(NetworkInterfaceId=p, Groups=[net["sg"]])
    assert ec2.describe_instance_attribute(InstanceId=iid, Attribute="sourceDestCheck")["SourceDestCheck"]["Value"] is False
    i = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert [g["GroupId"] for g in i["SecurityGroups"]] == [net["sg"]]
    assert eni(ec2, p)["Description"] == "primary"
    ec2.terminate_instances(InstanceIds=[iid])
    expect_error("InvalidNetworkInterfaceID.NotFound", eni, ec2, eid)  # DeleteOnTermination was set


def test_termination_keeps_or_deletes_interfaces(ec2, net):
    iid, kept_primary_of = run(ec2), run(ec2)
    stays = ec2.create_network_interface(
        SubnetId=net["a"]["SubnetId"],
        TagSpecifications=[{"ResourceType": "network-interface", "Tags": [{"Key": "keep", "Value": "yes"}]}],
    )["NetworkInterface"]["NetworkInterfaceId"]
    goes = ec2.create_network_interface(SubnetId=net["a"]["SubnetId"])["NetworkInterface"]["NetworkInterfaceId"]
    ec2.attach_network_interface(NetworkInterfaceId=stays, InstanceId=iid, DeviceIndex=1)
    aid = ec2.attach_network_interface(NetworkInterfaceId=goes, InstanceId=iid, DeviceIndex=2)["AttachmentId"]
    ec2.modify_network_interface_attribute(NetworkInterfaceId=goes, Attachment={"AttachmentId": aid, "DeleteOnTermination": True})
    primary = primary_of(ec2, iid)["NetworkInterfaceId"]
    # The other instance's primary interface outlives it.
    p2 = primary_of(ec2, kept_primary_of)
    ec2.modify_network_interface_attribute(
        NetworkInterfaceId=p2["NetworkInterfaceId"],
        Attachment={"AttachmentId": p2["Attachment"]["AttachmentId"], "DeleteOnTermination": False},
    )
    ec2.create_tags(Resources=[p2["NetworkInterfaceId"]], Tags=[{"Key": "role", "Value": "spare"}])
    ec2.terminate_instances(InstanceIds=[iid, kept_primary_of])
    left = eni(ec2, stays)
    assert left["Status"] == "available" and "Attachment" not in left and left["TagSet"] == [{"Key": "keep", "Value": "yes"}]
    ids = all_ids(ec2)
    assert goes not in ids and primary not in ids
    kept = eni(ec2, p2["NetworkInterfaceId"])
    assert kept["Status"] == "available" and kept["PrivateIpAddress"] == p2["PrivateIpAddress"]
    assert kept["TagSet"] == [{"Key": "role", "Value": "spare"}]
    for x in (stays, p2["NetworkInterfaceId"]):
        ec2.delete_network_interface(NetworkInterfaceId=x)


def test_permissions_follow_the_reference(keycard, net):
    """CreateNetworkInterface needs the subnet and the new interface; tags
    need ec2:CreateTags. A refused call makes nothing."""
    ec2 = keycard.client("ec2")
    subnet_arn = f"arn:aws:ec2:{REGION}:{ACCOUNT}:subnet/{net['a']['SubnetId']}"
    _, creds = keycard.new_user(
        policy={
            "Version": "2012-10-17",
            "Statement": [
                allow("ec2:CreateNetworkInterface", f"arn:aws:ec2:{REGION}:{ACCOUNT}:network-interface/*")["Statement"][0],
                allow("ec2:CreateNetworkInterface", f"arn:aws:ec2:{REGION}:{ACCOUNT}:security-group/*")["Statement"][0],
                allow("ec2:DescribeNetworkInterfaces")["Statement"][0],
            ],
        }
    )
    user = keycard.client("ec2", creds=creds)
    before = all_ids(ec2)
    err = expect_error("UnauthorizedOperation", user.create_network_interface, SubnetId=net["a"]["SubnetId"])
    assert f"on resource: {subnet_arn}" in err.response["Error"]["Message"]
    assert all_ids(ec2) == before
    _, tagger = keycard.new_user(policy=allow("ec2:CreateNetworkInterface", "*"))
    tagged = keycard.client("ec2", creds=tagger)
    spec = [{"ResourceType": "network-interface", "Tags": [{"Key": "k", "Value": "v"}]}]
    expect_error("UnauthorizedOperation", tagged.create_network_interface, SubnetId=net["a"]["SubnetId"], TagSpecifications=spec)
    assert all_ids(ec2) == before
    made = tagged.create_network_interface(SubnetId=net["a"]["SubnetId"])["NetworkInterface"]["NetworkInterfaceId"]
    expect_error("UnauthorizedOperation", tagged.delete_network_interface, NetworkInterfaceId=made)
    ec2.delete_network_interface(NetworkInterfaceId=made)


def test_run_instances_tags_volumes_and_the_primary_interface(ec2):
    iid = run(
        ec2,
        BlockDeviceMappings=[{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 1}}],
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "web"}]},
            {"ResourceType": "volume", "Tags": [{"Key": "disk", "Value": "web"}]},
            {"ResourceType": "network-interface", "Tags": [{"Key": "nic", "Value": "web"}]},
        ],
    )
    vols = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [iid]}])["Volumes"]
    assert len(vols) == 2 and all(v["Tags"] == [{"Key": "disk", "Value": "web"}] for v in vols)
    p = primary_of(ec2, iid)
    assert eni(ec2, p["NetworkInterfaceId"])["TagSet"] == [{"Key": "nic", "Value": "web"}]
    found = ec2.describe_network_interfaces(Filters=[{"Name": "tag:nic", "Values": ["web"]}])["NetworkInterfaces"]
    assert [e["NetworkInterfaceId"] for e in found] == [p["NetworkInterfaceId"]]
    i = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert i["Tags"] == [{"Key": "Name", "Value": "web"}]
    # Bad tags for the volumes launch nothing.
    before = ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["running"]}])
    n = sum(len(r["Instances"]) for r in before["Reservations"])
    expect_error(
        "InvalidParameterValue",
        run,
        ec2,
        TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "aws:reserved", "Value": "x"}]}],
    )
    after = ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["running"]}])
    assert sum(len(r["Instances"]) for r in after["Reservations"]) == n
    ec2.terminate_instances(InstanceIds=[iid])


def test_interfaces_keep_their_subnet_and_groups(ec2):
    vpc = ec2.create_vpc(CidrBlock="10.62.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.62.1.0/28")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName=unique("eni-dep"), Description="dep", VpcId=vpc)["GroupId"]
    free = ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["AvailableIpAddressCount"]
    e = ec2.create_network_interface(SubnetId=subnet, Groups=[sg])["NetworkInterface"]
    assert e["PrivateIpAddress"] == "10.62.1.4" and e["VpcId"] == vpc
    assert ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["AvailableIpAddressCount"] == free - 1
    expect_error("DependencyViolation", ec2.delete_security_group, GroupId=sg)
    expect_error("DependencyViolation", ec2.delete_subnet, SubnetId=subnet)
    ec2.delete_network_interface(NetworkInterfaceId=e["NetworkInterfaceId"])
    ec2.delete_security_group(GroupId=sg)
    ec2.delete_subnet(SubnetId=subnet)
    ec2.delete_vpc(VpcId=vpc)
