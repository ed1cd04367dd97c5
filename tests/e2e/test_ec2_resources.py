"""EC2 resources around an instance, with boto3 and the AWS CLI: root and
created EBS volumes (attach, detach, delete, DeleteOnTermination), tags
on every resource kind (CreateTags, DeleteTags, DescribeTags), instance
attributes and the protections they switch on, RebootInstances, the
instance type catalogue and CPU credit options."""

import base64

import pytest

from conftest import ACCOUNT, REGION, expect_error, unique

AMI = "ami-0abcdef1234567890"


@pytest.fixture(scope="module")
def ec2(keycard):
    return keycard.client("ec2")


def run(ec2, **kw):
    args = {"ImageId": AMI, "InstanceType": "t3.micro", "MinCount": 1, "MaxCount": 1}
    args.update(kw)
    return ec2.run_instances(**args)["Instances"][0]["InstanceId"]


def instance(ec2, iid):
    return ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]


def volumes_of(ec2, iid):
    out = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [iid]}])["Volumes"]
    return {v["Attachments"][0]["Device"]: v for v in out}


# Volumes


def test_every_instance_gets_a_root_volume(ec2):
    iid = run(ec2)
    i = instance(ec2, iid)
    assert i["RootDeviceName"] == "/dev/xvda" and i["RootDeviceType"] == "ebs"
    (m,) = i["BlockDeviceMappings"]
    assert m["DeviceName"] == "/dev/xvda"
    assert m["Ebs"]["Status"] == "attached" and m["Ebs"]["DeleteOnTermination"] is True
    vid = m["Ebs"]["VolumeId"]
    assert vid.startswith("vol-") and len(vid) == 21
    (v,) = ec2.describe_volumes(VolumeIds=[vid])["Volumes"]
    assert v["Size"] == 8 and v["VolumeType"] == "gp3" and v["Iops"] == 3000 and v["Throughput"] == 125
    assert v["State"] == "in-use" and v["AvailabilityZone"] == f"{REGION}a" and v["Encrypted"] is False
    (a,) = v["Attachments"]
    assert (a["InstanceId"], a["Device"], a["State"], a["DeleteOnTermination"]) == (iid, "/dev/xvda", "attached", True)


def test_block_device_mappings_are_honoured_and_termination_follows_them(ec2):
    iid = run(
        ec2,
        BlockDeviceMappings=[
            {"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 20, "VolumeType": "gp2", "DeleteOnTermination": False}},
            {"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 5, "VolumeType": "io1", "Iops": 200}},
        ],
    )
    vols = volumes_of(ec2, iid)
    assert sorted(vols) == ["/dev/sdf", "/dev/xvda"]
    root, data = vols["/dev/xvda"], vols["/dev/sdf"]
    assert (root["Size"], root["VolumeType"], root["Iops"]) == (20, "gp2", 100)
    assert root["Attachments"][0]["DeleteOnTermination"] is False
    assert (data["Size"], data["VolumeType"], data["Iops"]) == (5, "io1", 200)
    assert data["Attachments"][0]["DeleteOnTermination"] is True
    assert [m["DeviceName"] for m in instance(ec2, iid)["BlockDeviceMappings"]] == ["/dev/xvda", "/dev/sdf"]
    ec2.terminate_instances(InstanceIds=[iid])
    (kept,) = ec2.describe_volumes(VolumeIds=[root["VolumeId"]])["Volumes"]
    assert kept["State"] == "available" and kept["Attachments"] == []
    expect_error("InvalidVolume.NotFound", ec2.describe_volumes, VolumeIds=[data["VolumeId"]])
    ec2.delete_volume(VolumeId=root["VolumeId"])


@pytest.mark.parametrize(
    "mappings,code",
    [
        ([{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 20000}}], "InvalidParameterValue"),
        ([{"DeviceName": "/dev/xvda", "Ebs": {"VolumeType": "fast"}}], "InvalidParameterValue"),
        ([{"DeviceName": "/dev/sdf", "Ebs": {"VolumeType": "gp2"}}], "MissingParameter"),
        ([{"DeviceName": "bogus", "Ebs": {"VolumeSize": 5}}], "InvalidBlockDeviceMapping"),
        (
            [{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 5}}, {"DeviceName": "sdf", "Ebs": {"VolumeSize": 6}}],
            "InvalidBlockDeviceMapping",
        ),
    ],
)
def test_bad_mappings_launch_nothing(keycard_fresh, mappings, code):
    ec2 = keycard_fresh.client("ec2")
    expect_error(code, run, ec2, BlockDeviceMappings=mappings)
    assert ec2.describe_instances()["Reservations"] == []
    assert ec2.describe_volumes()["Volumes"] == []


def test_volume_lifecycle_with_the_cli(keycard, ec2):
    iid = run(ec2)
    v = keycard.aws(
        "ec2", "create-volume", "--availability-zone", f"{REGION}a", "--size", "10", "--volume-type", "gp3",
        "--tag-specifications", "ResourceType=volume,Tags=[{Key=Name,Value=data}]",
    )
    vid = v["VolumeId"]
    assert v["State"] == "creating" and v["Size"] == 10 and v["Tags"] == [{"Key": "Name", "Value": "data"}]
    ec2.get_waiter("volume_available").wait(VolumeIds=[vid])
    att = keycard.aws("ec2", "attach-volume", "--volume-id", vid, "--instance-id", iid, "--device", "/dev/sdh")
    assert (att["State"], att["Device"], att["InstanceId"]) == ("attaching", "/dev/sdh", iid)
    ec2.get_waiter("volume_in_use").wait(VolumeIds=[vid])
    assert volumes_of(ec2, iid)["/dev/sdh"]["Attachments"][0]["DeleteOnTermination"] is False
    expect_error("VolumeInUse", ec2.attach_volume, VolumeId=vid, InstanceId=iid, Device="/dev/sdi")
    expect_error("VolumeInUse", ec2.delete_volume, VolumeId=vid)
    root = volumes_of(ec2, iid)["/dev/xvda"]["VolumeId"]
    expect_error("IncorrectState", ec2.detach_volume, VolumeId=root)
    det = keycard.aws("ec2", "detach-volume", "--volume-id", vid)
    assert det["State"] == "detaching" and det["InstanceId"] == iid
    ec2.get_waiter("volume_available").wait(VolumeIds=[vid])
    expect_error("IncorrectState", ec2.detach_volume, VolumeId=vid)
    keycard.aws("ec2", "delete-volume", "--volume-id", vid)
    ec2.get_waiter("volume_deleted").wait(VolumeIds=[vid])


def test_attach_rules(ec2):
    iid = run(ec2)
    root = volumes_of(ec2, iid)["/dev/xvda"]["VolumeId"]
    other_zone = ec2.create_volume(AvailabilityZone=f"{REGION}b", Size=1)["VolumeId"]
    e = expect_error("InvalidVolume.ZoneMismatch", ec2.attach_volume, VolumeId=other_zone, InstanceId=iid, Device="/dev/sdf")
    assert other_zone in e.response["Error"]["Message"]
    vid = ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=1)["VolumeId"]
    expect_error("InvalidParameterValue", ec2.attach_volume, VolumeId=vid, InstanceId=iid, Device="/dev/xvda")
    expect_error("InvalidParameterValue", ec2.attach_volume, VolumeId=vid, InstanceId=iid, Device="nvme0")
    expect_error("InvalidVolumeID.Malformed", ec2.attach_volume, VolumeId="vol-zz", InstanceId=iid, Device="/dev/sdf")
    expect_error("InvalidVolume.NotFound", ec2.attach_volume, VolumeId="vol-0123456789abcdef0", InstanceId=iid, Device="/dev/sdf")
    expect_error("InvalidInstanceID.NotFound", ec2.attach_volume, VolumeId=vid, InstanceId="i-0123456789abcdef0", Device="/dev/sdf")
    # A stopped instance's root volume may be detached and attached again.
    ec2.stop_instances(InstanceIds=[iid])
    ec2.detach_volume(VolumeId=root)
    assert instance(ec2, iid)["BlockDeviceMappings"] == []
    ec2.attach_volume(VolumeId=root, InstanceId=iid, Device="/dev/xvda")
    ec2.attach_volume(VolumeId=vid, InstanceId=iid, Device="/dev/sdf")
    ec2.terminate_instances(InstanceIds=[iid])
    assert ec2.describe_volumes(VolumeIds=[vid])["Volumes"][0]["State"] == "available"
    ec2.delete_volume(VolumeId=vid)
    ec2.delete_volume(VolumeId=other_zone)


@pytest.mark.parametrize(
    "kwargs,code",
    [
        ({"Size": 1}, "MissingParameter"),
        ({"AvailabilityZone": "us-east-1z", "Size": 1}, "InvalidZone.NotFound"),
        ({"AvailabilityZone": f"{REGION}a"}, "MissingParameter"),
        ({"AvailabilityZone": f"{REGION}a", "Size": 20000}, "InvalidParameterValue"),
        ({"AvailabilityZone": f"{REGION}a", "Size": 10, "VolumeType": "gp2", "Iops": 300}, "InvalidParameterCombination"),
        ({"AvailabilityZone": f"{REGION}a", "Size": 10, "VolumeType": "io1"}, "MissingParameter"),
        ({"AvailabilityZone": f"{REGION}a", "Size": 10, "VolumeType": "st1"}, "InvalidParameterValue"),
        ({"AvailabilityZone": f"{REGION}a", "SnapshotId": "snap-0123456789abcdef0"}, "InvalidSnapshot.NotFound"),
        (
            {"AvailabilityZone": f"{REGION}a", "Size": 1, "TagSpecifications": [{"ResourceType": "instance", "Tags": [{"Key": "a", "Value": "b"}]}]},
            "InvalidParameterValue",
        ),
    ],
)
def test_create_volume_refuses_bad_input(keycard_fresh, kwargs, code):
    ec2 = keycard_fresh.client("ec2")
    expect_error(code, ec2.create_volume, **kwargs)
    assert ec2.describe_volumes()["Volumes"] == []


def test_describe_volumes_filters_and_pages(keycard_fresh):
    ec2 = keycard_fresh.client("ec2")
    made = [
        ec2.create_volume(
            AvailabilityZone=f"{REGION}a", Size=n + 1,
            TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "batch", "Value": "odd" if n % 2 else "even"}]}],
        )["VolumeId"]
        for n in range(7)
    ]
    iid = run(ec2)
    seen, token = [], None
    while True:
        kw = {"MaxResults": 5} | ({"NextToken": token} if token else {})
        page = ec2.describe_volumes(**kw)
        assert len(page["Volumes"]) <= 5
        seen += [v["VolumeId"] for v in page["Volumes"]]
        token = page.get("NextToken")
        if not token:
            break
    assert len(seen) == 8 and set(made) <= set(seen)
    f = lambda name, *v: {"Filters": [{"Name": name, "Values": list(v)}]}  # noqa: E731
    assert len(ec2.describe_volumes(**f("tag:batch", "odd"))["Volumes"]) == 3
    assert len(ec2.describe_volumes(**f("status", "available"))["Volumes"]) == 7
    assert len(ec2.describe_volumes(**f("status", "in-use"))["Volumes"]) == 1
    assert [v["Size"] for v in ec2.describe_volumes(**f("size", "3"))["Volumes"]] == [3]
    assert len(ec2.describe_volumes(**f("attachment.device", "/dev/xvda"))["Volumes"]) == 1
    assert ec2.describe_volumes(**f("volume-id", made[0]))["Volumes"][0]["VolumeId"] == made[0]
    assert len(ec2.describe_volumes(**f("volume-type", "gp2"))["Volumes"]) == 7
    expect_error("InvalidParameterValue", ec2.describe_volumes, **f("bogus", "x"))
    expect_error("InvalidParameterCombination", ec2.describe_volumes, VolumeIds=made[:1], MaxResults=5)
    paginated = ec2.get_paginator("describe_volumes").paginate(PaginationConfig={"PageSize": 5})
    assert sum(len(p["Volumes"]) for p in paginated) == 8
    del iid


# Tags


def test_tags_on_every_resource_kind(keycard_fresh):
    ec2 = keycard_fresh.client("ec2")
    iid = run(ec2)
    i = instance(ec2, iid)
    vol = i["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    eni = i["NetworkInterfaces"][0]["NetworkInterfaceId"]
    default_vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    default_subnet = i["SubnetId"]
    default_sg = i["SecurityGroups"][0]["GroupId"]
    vpc = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.7.1.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="tagged", Description="t", VpcId=vpc)["GroupId"]
    every = [iid, vol, eni, default_vpc, default_subnet, default_sg, vpc, subnet, sg]
    ec2.create_tags(Resources=every, Tags=[{"Key": "team", "Value": "blue"}, {"Key": "Name", "Value": "x"}])
    rows = ec2.describe_tags(Filters=[{"Name": "key", "Values": ["team"]}])["Tags"]
    assert sorted(r["ResourceId"] for r in rows) == sorted(every)
    types = {r["ResourceId"]: r["ResourceType"] for r in rows}
    assert types[iid] == "instance" and types[vol] == "volume" and types[eni] == "network-interface"
    assert types[default_vpc] == types[vpc] == "vpc" and types[sg] == "security-group" and types[subnet] == "subnet"
    # Each kind's own Describe shows the tags, the derived default ones too.
    tagged = {"Key": "team", "Value": "blue"}
    assert tagged in ec2.describe_vpcs(VpcIds=[default_vpc])["Vpcs"][0]["Tags"]
    assert tagged in ec2.describe_subnets(SubnetIds=[default_subnet])["Subnets"][0]["Tags"]
    assert tagged in ec2.describe_security_groups(GroupIds=[default_sg])["SecurityGroups"][0]["Tags"]
    assert tagged in ec2.describe_network_interfaces(NetworkInterfaceIds=[eni])["NetworkInterfaces"][0]["TagSet"]
    assert tagged in ec2.describe_volumes(VolumeIds=[vol])["Volumes"][0]["Tags"]
    got = ec2.describe_network_interfaces(Filters=[{"Name": "tag:team", "Values": ["blue"]}])["NetworkInterfaces"]
    assert [e["NetworkInterfaceId"] for e in got] == [eni]
    # Filters and pages.
    one = ec2.describe_tags(Filters=[{"Name": "resource-type", "Values": ["volume"]}])["Tags"]
    assert sorted((r["Key"], r["Value"]) for r in one) == [("Name", "x"), ("team", "blue")]
    by_id = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [sg]}, {"Name": "value", "Values": ["bl*"]}])
    assert [(r["ResourceId"], r["Key"]) for r in by_id["Tags"]] == [(sg, "team")]
    pages = list(ec2.get_paginator("describe_tags").paginate(PaginationConfig={"PageSize": 5}))
    assert sum(len(p["Tags"]) for p in pages) == 2 * len(every) and len(pages) == 4
    expect_error("InvalidParameterValue", ec2.describe_tags, Filters=[{"Name": "bogus", "Values": ["x"]}])
    # DeleteTags by key, by key and value, and all.
    ec2.delete_tags(Resources=[vpc], Tags=[{"Key": "team", "Value": "red"}])
    assert len(ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"][0]["Tags"]) == 2
    ec2.delete_tags(Resources=[vpc, default_vpc], Tags=[{"Key": "team"}])
    assert ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"][0]["Tags"] == [{"Key": "Name", "Value": "x"}]
    ec2.delete_tags(Resources=[eni])
    assert ec2.describe_network_interfaces(NetworkInterfaceIds=[eni])["NetworkInterfaces"][0]["TagSet"] == []


def test_create_tags_is_all_or_nothing_with_aws_errors(keycard, ec2):
    iid = run(ec2)
    tag = [{"Key": "k", "Value": "v"}]
    cases = [
        ("foo-123", "InvalidID"),
        ("vol-0123456789abcdef0", "InvalidVolume.NotFound"),
        ("vol-xyz", "InvalidVolumeID.Malformed"),
        ("vpc-0123456789abcdef0", "InvalidVpcID.NotFound"),
        ("subnet-0123456789abcdef0", "InvalidSubnetID.NotFound"),
        ("sg-0123456789abcdef0", "InvalidGroup.NotFound"),
        ("eni-0123456789abcdef0", "InvalidNetworkInterfaceID.NotFound"),
        ("i-0123456789abcdef0", "InvalidInstanceID.NotFound"),
    ]
    for bad, code in cases:
        expect_error(code, ec2.create_tags, Resources=[iid, bad], Tags=tag)
    assert instance(ec2, iid).get("Tags", []) == []
    e = keycard.aws_error("ec2", "create-tags", "--resources", iid, "foo-123", "--tags", "Key=k,Value=v")
    assert e.code == "InvalidID" and "The ID 'foo-123' is not valid" in str(e)
    expect_error("InvalidParameterValue", ec2.create_tags, Resources=[iid], Tags=[{"Key": "aws:x", "Value": "y"}])
    expect_error("MissingParameter", ec2.create_tags, Resources=[iid], Tags=[])


def test_tag_permissions_use_resource_and_request_tags(keycard, ec2):
    mine = run(ec2, TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "team", "Value": "a"}]}])
    theirs = run(ec2, TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "team", "Value": "b"}]}])
    policy = {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": "ec2:CreateTags",
            "Resource": "*",
            "Condition": {
                "StringEquals": {"aws:ResourceTag/team": "a", "aws:RequestTag/env": "dev"},
                "ForAllValues:StringEquals": {"aws:TagKeys": ["env"]},
            },
        }],
    }
    _, creds = keycard.new_user(name=unique("tagger"), policy=policy)
    user = keycard.client("ec2", creds=creds)
    user.create_tags(Resources=[mine], Tags=[{"Key": "env", "Value": "dev"}])
    expect_error("UnauthorizedOperation", user.create_tags, Resources=[mine], Tags=[{"Key": "env", "Value": "prod"}])
    expect_error("UnauthorizedOperation", user.create_tags, Resources=[mine], Tags=[{"Key": "owner", "Value": "dev"}])
    # One refused resource refuses the call: the allowed one is not tagged either.
    expect_error("UnauthorizedOperation", user.create_tags, Resources=[mine, theirs], Tags=[{"Key": "env", "Value": "dev"}])
    assert {"Key": "env", "Value": "dev"} not in instance(ec2, theirs)["Tags"]
    expect_error("UnauthorizedOperation", user.delete_tags, Resources=[mine], Tags=[{"Key": "env"}])


# Instance attributes


ATTRIBUTES = {
    "instanceType": ("InstanceType", {"Value": "t3.micro"}),
    "kernel": ("KernelId", {}),
    "ramdisk": ("RamdiskId", {}),
    "disableApiTermination": ("DisableApiTermination", {"Value": False}),
    "disableApiStop": ("DisableApiStop", {"Value": False}),
    "instanceInitiatedShutdownBehavior": ("InstanceInitiatedShutdownBehavior", {"Value": "stop"}),
    "rootDeviceName": ("RootDeviceName", {"Value": "/dev/xvda"}),
    "productCodes": ("ProductCodes", []),
    "sourceDestCheck": ("SourceDestCheck", {"Value": True}),
    "ebsOptimized": ("EbsOptimized", {"Value": False}),
    "sriovNetSupport": ("SriovNetSupport", {}),
    "enaSupport": ("EnaSupport", {"Value": True}),
    "enclaveOptions": ("EnclaveOptions", {"Enabled": False}),
}


def test_describe_every_instance_attribute(ec2):
    iid = run(ec2)
    for attr, (key, want) in ATTRIBUTES.items():
        got = ec2.describe_instance_attribute(InstanceId=iid, Attribute=attr)
        assert got["InstanceId"] == iid and got[key] == want, (attr, got)
    (m,) = ec2.describe_instance_attribute(InstanceId=iid, Attribute="blockDeviceMapping")["BlockDeviceMappings"]
    assert m["DeviceName"] == "/dev/xvda" and m["Ebs"]["VolumeId"].startswith("vol-")
    groups = ec2.describe_instance_attribute(InstanceId=iid, Attribute="groupSet")["Groups"]
    assert [g["GroupName"] for g in groups] == ["default"]
    expect_error("InvalidParameterValue", ec2.describe_instance_attribute, InstanceId=iid, Attribute="colour")


def test_termination_and_stop_protection(keycard, ec2):
    iid = run(ec2, DisableApiTermination=True)
    assert ec2.describe_instance_attribute(InstanceId=iid, Attribute="disableApiTermination")["DisableApiTermination"] == {"Value": True}
    e = expect_error("OperationNotPermitted", ec2.terminate_instances, InstanceIds=[iid])
    assert "disableApiTermination" in e.response["Error"]["Message"]
    keycard.aws("ec2", "modify-instance-attribute", "--instance-id", iid, "--disable-api-stop", "Value=true")
    expect_error("OperationNotPermitted", ec2.stop_instances, InstanceIds=[iid])
    assert instance(ec2, iid)["State"]["Name"] == "running"
    ec2.modify_instance_attribute(InstanceId=iid, DisableApiStop={"Value": False})
    ec2.modify_instance_attribute(InstanceId=iid, Attribute="disableApiTermination", Value="false")
    ec2.terminate_instances(InstanceIds=[iid])
    assert instance(ec2, iid)["State"]["Name"] == "terminated"


def test_user_data_and_type_change_only_when_stopped(keycard, ec2):
    iid = run(ec2, UserData="#!/bin/sh\necho one\n")
    new = b"#!/bin/sh\necho two\n"
    expect_error("IncorrectInstanceState", ec2.modify_instance_attribute, InstanceId=iid, UserData={"Value": new})
    expect_error("IncorrectInstanceState", ec2.modify_instance_attribute, InstanceId=iid, InstanceType={"Value": "m5.large"})
    ec2.stop_instances(InstanceIds=[iid])
    ec2.modify_instance_attribute(InstanceId=iid, UserData={"Value": new})
    keycard.aws("ec2", "modify-instance-attribute", "--instance-id", iid, "--instance-type", "Value=m5.large")
    expect_error("InvalidParameterValue", ec2.modify_instance_attribute, InstanceId=iid, InstanceType={"Value": "huge"})
    ec2.start_instances(InstanceIds=[iid])
    got = ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")["UserData"]["Value"]
    assert base64.b64decode(got) == new
    assert instance(ec2, iid)["InstanceType"] == "m5.large"
    status, _, body = keycard.imds(iid, "/latest/user-data")
    assert (status, body) == (200, new)


def test_other_attributes(keycard, ec2):
    iid = run(ec2)
    ec2.modify_instance_attribute(InstanceId=iid, SourceDestCheck={"Value": False})
    i = instance(ec2, iid)
    assert i["SourceDestCheck"] is False and i["NetworkInterfaces"][0]["SourceDestCheck"] is False
    ec2.modify_instance_attribute(InstanceId=iid, InstanceInitiatedShutdownBehavior={"Value": "terminate"})
    got = ec2.describe_instance_attribute(InstanceId=iid, Attribute="instanceInitiatedShutdownBehavior")
    assert got["InstanceInitiatedShutdownBehavior"] == {"Value": "terminate"}
    expect_error("InvalidParameterValue", ec2.modify_instance_attribute, InstanceId=iid,
                 InstanceInitiatedShutdownBehavior={"Value": "explode"})
    expect_error("InvalidParameterCombination", ec2.modify_instance_attribute, InstanceId=iid,
                 SourceDestCheck={"Value": True}, DisableApiStop={"Value": True})
    e = expect_error("InvalidParameterCombination", ec2.modify_instance_attribute, InstanceId=iid)
    assert e.response["Error"]["Message"] == "No attributes specified."
    assert ec2.describe_instance_attribute(InstanceId=iid, Attribute="disableApiStop")["DisableApiStop"] == {"Value": False}
    # Groups: replaced as a set, each checked against the instance's VPC.
    web = unique("web")
    sg = ec2.create_security_group(GroupName=web, Description="web")["GroupId"]
    names = {sg: web}
    default = i["SecurityGroups"][0]["GroupId"]
    ec2.modify_instance_attribute(InstanceId=iid, Groups=[sg, default])
    assert sorted(g["GroupId"] for g in instance(ec2, iid)["SecurityGroups"]) == sorted([sg, default])
    status, _, body = keycard.imds(iid, "/latest/meta-data/security-groups")
    assert status == 200 and sorted(body.decode().split("\n")) == sorted(["default", names[sg]])
    other_vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    elsewhere = ec2.create_security_group(GroupName=unique("far"), Description="far", VpcId=other_vpc)["GroupId"]
    expect_error("InvalidParameter", ec2.modify_instance_attribute, InstanceId=iid, Groups=[elsewhere])
    expect_error("InvalidGroup.NotFound", ec2.modify_instance_attribute, InstanceId=iid, Groups=["sg-0123456789abcdef0"])
    # DeleteOnTermination of the root volume.
    ec2.modify_instance_attribute(
        InstanceId=iid, BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"DeleteOnTermination": False}}]
    )
    assert volumes_of(ec2, iid)["/dev/xvda"]["Attachments"][0]["DeleteOnTermination"] is False
    expect_error("InvalidInstanceID.NotFound", ec2.modify_instance_attribute, InstanceId="i-0123456789abcdef0",
                 SourceDestCheck={"Value": True})


# Reboot, types, credits


def test_reboot_instances(keycard, ec2):
    iid = run(ec2)
    keycard.aws("ec2", "reboot-instances", "--instance-ids", iid)
    assert instance(ec2, iid)["State"]["Name"] == "running"
    expect_error("DryRunOperation", ec2.reboot_instances, InstanceIds=[iid], DryRun=True)
    ec2.stop_instances(InstanceIds=[iid])
    expect_error("IncorrectInstanceState", ec2.reboot_instances, InstanceIds=[iid])
    expect_error("InvalidInstanceID.Malformed", ec2.reboot_instances, InstanceIds=["i-nope"])


def test_describe_instance_types(keycard, ec2):
    (t,) = ec2.describe_instance_types(InstanceTypes=["t3.micro"])["InstanceTypes"]
    assert t["VCpuInfo"]["DefaultVCpus"] == 2 and t["MemoryInfo"]["SizeInMiB"] == 1024
    assert t["BurstablePerformanceSupported"] is True and t["FreeTierEligible"] is True
    assert t["ProcessorInfo"]["SupportedArchitectures"] == ["x86_64"] and t["Hypervisor"] == "nitro"
    assert t["NetworkInfo"]["MaximumNetworkInterfaces"] == 2
    m5 = keycard.aws("ec2", "describe-instance-types", "--instance-types", "m5.large")["InstanceTypes"][0]
    assert (m5["VCpuInfo"]["DefaultVCpus"], m5["MemoryInfo"]["SizeInMiB"]) == (2, 8192)
    e = expect_error("InvalidInstanceType", ec2.describe_instance_types, InstanceTypes=["t3.micro", "x9.huge"])
    assert "x9.huge" in e.response["Error"]["Message"]
    burst = ec2.describe_instance_types(Filters=[{"Name": "burstable-performance-supported", "Values": ["true"]}])
    assert all(x["InstanceType"].startswith("t") for x in burst["InstanceTypes"]) and burst["InstanceTypes"]
    arm = ec2.describe_instance_types(Filters=[{"Name": "processor-info.supported-architecture", "Values": ["arm64"]}])
    assert [x["InstanceType"] for x in arm["InstanceTypes"]] == ["t4g.micro"]
    pages = list(ec2.get_paginator("describe_instance_types").paginate(PaginationConfig={"PageSize": 5}))
    names = [x["InstanceType"] for p in pages for x in p["InstanceTypes"]]
    assert len(pages) > 1 and len(names) == len(set(names)) and "t3.small" in names


def test_credit_specifications(keycard, ec2):
    t3 = run(ec2)
    t2 = run(ec2, InstanceType="t2.micro")
    m5 = run(ec2, InstanceType="m5.large", CreditSpecification={"CpuCredits": "standard"})
    got = ec2.describe_instance_credit_specifications(InstanceIds=[t3, t2, m5])["InstanceCreditSpecifications"]
    assert {g["InstanceId"]: g["CpuCredits"] for g in got} == {t3: "unlimited", t2: "standard"}
    out = ec2.modify_instance_credit_specification(
        InstanceCreditSpecifications=[{"InstanceId": t3, "CpuCredits": "standard"}, {"InstanceId": m5, "CpuCredits": "standard"}]
    )
    assert [s["InstanceId"] for s in out["SuccessfulInstanceCreditSpecifications"]] == [t3]
    (bad,) = out["UnsuccessfulInstanceCreditSpecifications"]
    assert bad["InstanceId"] == m5 and bad["Error"]["Code"] == "InstanceCreditSpecification.NotSupported"
    got = ec2.describe_instance_credit_specifications(Filters=[{"Name": "instance-id", "Values": [t3]}])
    assert got["InstanceCreditSpecifications"] == [{"InstanceId": t3, "CpuCredits": "standard"}]
    expect_error("InvalidParameterValue", run, ec2, CreditSpecification={"CpuCredits": "lots"})


def test_interfaces_of_instances(ec2):
    iid = run(ec2)
    (eni,) = ec2.describe_network_interfaces(
        Filters=[{"Name": "attachment.instance-id", "Values": [iid]}]
    )["NetworkInterfaces"]
    i = instance(ec2, iid)
    assert eni["NetworkInterfaceId"] == i["NetworkInterfaces"][0]["NetworkInterfaceId"]
    assert eni["PrivateIpAddress"] == i["PrivateIpAddress"] and eni["Attachment"]["DeviceIndex"] == 0
    assert eni["OwnerId"] == ACCOUNT and eni["Status"] == "in-use"
    same = ec2.describe_network_interfaces(
        Filters=[{"Name": "private-ip-address", "Values": [i["PrivateIpAddress"]]}, {"Name": "subnet-id", "Values": [i["SubnetId"]]}]
    )["NetworkInterfaces"]
    assert [e["NetworkInterfaceId"] for e in same] == [eni["NetworkInterfaceId"]]
