"""The EC2 network surface governance tools read (Prowler and the like),
with boto3 and the AWS CLI: the default VPC and its subnets, security
group, network ACL, route table and internet gateway with AWS's values;
an instance's VPC, subnet, interface and group agreeing across calls;
filters, ids and their not-found errors; empty answers for what keycard
has none of; per-account and per-region ids."""

import pytest

from conftest import ACCOUNT, REGION, create_account, expect_error

AMI = "ami-0abcdef1234567890"


@pytest.fixture(scope="module")
def ec2(keycard):
    return keycard.client("ec2")


@pytest.fixture(scope="module")
def vpc(ec2):
    vpcs = ec2.describe_vpcs()["Vpcs"]
    assert len(vpcs) == 1
    return vpcs[0]


def test_default_vpc(ec2, vpc):
    assert vpc["VpcId"].startswith("vpc-") and len(vpc["VpcId"]) == 21
    assert vpc["CidrBlock"] == "172.31.0.0/16"
    assert vpc["IsDefault"] is True and vpc["State"] == "available"
    assert vpc["OwnerId"] == ACCOUNT and vpc["InstanceTenancy"] == "default"
    assert vpc["CidrBlockAssociationSet"][0]["CidrBlock"] == "172.31.0.0/16"
    assert vpc["CidrBlockAssociationSet"][0]["CidrBlockState"]["State"] == "associated"
    assert vpc["DhcpOptionsId"].startswith("dopt-")
    # Stable: the same answer again.
    assert ec2.describe_vpcs()["Vpcs"] == [vpc]


def test_default_subnets(ec2, vpc):
    subnets = sorted(ec2.describe_subnets()["Subnets"], key=lambda s: s["AvailabilityZone"])
    assert [(s["AvailabilityZone"], s["CidrBlock"]) for s in subnets] == [
        (f"{REGION}a", "172.31.0.0/20"),
        (f"{REGION}b", "172.31.16.0/20"),
        (f"{REGION}c", "172.31.32.0/20"),
    ]
    assert [s["AvailabilityZoneId"] for s in subnets] == ["use1-az1", "use1-az2", "use1-az3"]
    for s in subnets:
        assert s["SubnetId"].startswith("subnet-") and len(s["SubnetId"]) == 24
        assert s["VpcId"] == vpc["VpcId"] and s["OwnerId"] == ACCOUNT
        assert s["DefaultForAz"] is True and s["MapPublicIpOnLaunch"] is True
        assert s["State"] == "available"
        assert s["SubnetArn"] == f"arn:aws:ec2:{REGION}:{ACCOUNT}:subnet/{s['SubnetId']}"
        assert 0 < s["AvailableIpAddressCount"] <= 4091


def test_default_security_group(ec2, vpc):
    groups = ec2.describe_security_groups()["SecurityGroups"]
    assert len(groups) == 1
    g = groups[0]
    assert g["GroupName"] == "default" and g["GroupId"].startswith("sg-")
    assert g["Description"] == "default VPC security group"
    assert g["VpcId"] == vpc["VpcId"] and g["OwnerId"] == ACCOUNT
    inbound, = g["IpPermissions"]
    assert inbound["IpProtocol"] == "-1" and inbound["IpRanges"] == []
    assert inbound["UserIdGroupPairs"] == [{"UserId": ACCOUNT, "GroupId": g["GroupId"]}]
    outbound, = g["IpPermissionsEgress"]
    assert outbound["IpProtocol"] == "-1"
    assert outbound["IpRanges"] == [{"CidrIp": "0.0.0.0/0"}] and outbound["UserIdGroupPairs"] == []


def test_default_network_acl(ec2, vpc):
    acls = ec2.describe_network_acls()["NetworkAcls"]
    assert len(acls) == 1
    acl = acls[0]
    assert acl["IsDefault"] is True and acl["VpcId"] == vpc["VpcId"] and acl["NetworkAclId"].startswith("acl-")
    entries = sorted((e["Egress"], e["RuleNumber"], e["RuleAction"], e["Protocol"], e["CidrBlock"]) for e in acl["Entries"])
    assert entries == [
        (False, 100, "allow", "-1", "0.0.0.0/0"),
        (False, 32767, "deny", "-1", "0.0.0.0/0"),
        (True, 100, "allow", "-1", "0.0.0.0/0"),
        (True, 32767, "deny", "-1", "0.0.0.0/0"),
    ]
    subnets = {s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]}
    assert {a["SubnetId"] for a in acl["Associations"]} == subnets


def test_main_route_table_and_gateway(ec2, vpc):
    igws = ec2.describe_internet_gateways()["InternetGateways"]
    assert len(igws) == 1
    igw = igws[0]
    assert igw["InternetGatewayId"].startswith("igw-")
    assert igw["Attachments"] == [{"State": "available", "VpcId": vpc["VpcId"]}]
    rtbs = ec2.describe_route_tables()["RouteTables"]
    assert len(rtbs) == 1
    rtb = rtbs[0]
    assert rtb["VpcId"] == vpc["VpcId"]
    routes = {(r["DestinationCidrBlock"], r["GatewayId"], r["State"]) for r in rtb["Routes"]}
    assert routes == {("172.31.0.0/16", "local", "active"), ("0.0.0.0/0", igw["InternetGatewayId"], "active")}
    assoc, = rtb["Associations"]
    assert assoc["Main"] is True and assoc["RouteTableId"] == rtb["RouteTableId"]
    main = ec2.describe_route_tables(Filters=[{"Name": "association.main", "Values": ["true"]}])["RouteTables"]
    assert main == rtbs


def test_instance_network_agrees_across_calls(keycard, ec2, vpc):
    inst = keycard.run_instance()
    iid = inst["InstanceId"]
    d = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    sg = ec2.describe_security_groups()["SecurityGroups"][0]
    subnet, = ec2.describe_subnets(Filters=[{"Name": "availability-zone", "Values": [f"{REGION}a"]}])["Subnets"]
    assert d["VpcId"] == vpc["VpcId"] and d["SubnetId"] == subnet["SubnetId"]
    assert d["SecurityGroups"] == [{"GroupId": sg["GroupId"], "GroupName": "default"}]
    # The private address lies in the subnet's block (172.31.0.0/20).
    octets = [int(x) for x in d["PrivateIpAddress"].split(".")]
    assert octets[:2] == [172, 31] and octets[2] < 16
    eni, = d["NetworkInterfaces"]
    assert eni["NetworkInterfaceId"].startswith("eni-")
    assert eni["SubnetId"] == subnet["SubnetId"] and eni["VpcId"] == vpc["VpcId"]
    assert eni["PrivateIpAddress"] == d["PrivateIpAddress"] and eni["Status"] == "in-use"
    assert eni["Attachment"]["DeviceIndex"] == 0 and eni["Attachment"]["Status"] == "attached"
    assert eni["Groups"] == d["SecurityGroups"]
    # The metadata service reports the same MAC, address and zone id.
    tok = keycard.imds_token(iid)
    imds = lambda p: keycard.imds(iid, p, token=tok)[2].decode()  # noqa: E731
    assert imds("/latest/meta-data/mac") == eni["MacAddress"]
    assert imds("/latest/meta-data/local-ipv4") == d["PrivateIpAddress"]
    assert imds("/latest/meta-data/placement/availability-zone-id") == subnet["AvailabilityZoneId"]
    base = f"/latest/meta-data/network/interfaces/macs/{eni['MacAddress']}/"
    assert imds("/latest/meta-data/network/interfaces/macs/") == eni["MacAddress"] + "/"
    assert imds(base + "interface-id") == eni["NetworkInterfaceId"]
    assert imds(base + "subnet-id") == subnet["SubnetId"]
    assert imds(base + "vpc-id") == vpc["VpcId"]
    assert imds(base + "security-group-ids") == sg["GroupId"]
    assert imds(base + "subnet-ipv4-cidr-block") == subnet["CidrBlock"]
    assert imds(base + "local-ipv4s") == d["PrivateIpAddress"]

    found = ec2.describe_network_interfaces(Filters=[{"Name": "attachment.instance-id", "Values": [iid]}])
    n, = found["NetworkInterfaces"]
    assert n["NetworkInterfaceId"] == eni["NetworkInterfaceId"]
    assert n["Attachment"]["InstanceId"] == iid and n["Attachment"]["InstanceOwnerId"] == ACCOUNT
    assert n["AvailabilityZone"] == f"{REGION}a" and n["MacAddress"] == eni["MacAddress"]
    assert n["PrivateIpAddress"] == d["PrivateIpAddress"] and n["Groups"] == d["SecurityGroups"]
    by_id = ec2.describe_network_interfaces(NetworkInterfaceIds=[n["NetworkInterfaceId"]])["NetworkInterfaces"]
    assert by_id == [n]

    # DescribeInstances filters on the network.
    for name, value in [
        ("vpc-id", vpc["VpcId"]),
        ("subnet-id", subnet["SubnetId"]),
        ("instance.group-id", sg["GroupId"]),
        ("network-interface.network-interface-id", n["NetworkInterfaceId"]),
    ]:
        got = ec2.describe_instances(Filters=[{"Name": name, "Values": [value]}, {"Name": "instance-id", "Values": [iid]}])
        assert [i["InstanceId"] for r in got["Reservations"] for i in r["Instances"]] == [iid], name
    none = ec2.describe_instances(Filters=[{"Name": "subnet-id", "Values": ["subnet-00000000000000000"]}])
    assert none["Reservations"] == []

    # Termination removes the interface.
    ec2.terminate_instances(InstanceIds=[iid])
    gone = ec2.describe_network_interfaces(Filters=[{"Name": "attachment.instance-id", "Values": [iid]}])
    assert gone["NetworkInterfaces"] == []
    expect_error("InvalidNetworkInterfaceID.NotFound", ec2.describe_network_interfaces,
                 NetworkInterfaceIds=[n["NetworkInterfaceId"]])


def test_ids_filters_and_not_found(ec2, vpc):
    vid = vpc["VpcId"]
    assert ec2.describe_vpcs(VpcIds=[vid])["Vpcs"] == [vpc]
    assert ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"] == [vpc]
    assert ec2.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": ["vpc-nope*"]}])["Vpcs"] == []
    assert ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": ["x"]}])["Vpcs"] == []
    e = expect_error("InvalidVpcID.NotFound", ec2.describe_vpcs, VpcIds=["vpc-0123456789abcdef0"])
    assert "vpc-0123456789abcdef0" in e.response["Error"]["Message"]
    expect_error("InvalidParameterValue", ec2.describe_vpcs, Filters=[{"Name": "no-such-filter", "Values": ["x"]}])

    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vid]}])["Subnets"]
    assert len(subnets) == 3
    one = subnets[0]["SubnetId"]
    assert [s["SubnetId"] for s in ec2.describe_subnets(SubnetIds=[one])["Subnets"]] == [one]
    assert len(ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]) == 3
    expect_error("InvalidSubnetID.NotFound", ec2.describe_subnets, SubnetIds=["subnet-0123456789abcdef0"])

    sg = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]
    assert ec2.describe_security_groups(GroupIds=[sg["GroupId"]])["SecurityGroups"] == [sg]
    assert ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["default"]}])["SecurityGroups"] == [sg]
    assert ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vid]}])["SecurityGroups"] == [sg]
    expect_error("InvalidGroup.NotFound", ec2.describe_security_groups, GroupIds=["sg-0123456789abcdef0"])
    expect_error("InvalidGroup.NotFound", ec2.describe_security_groups, GroupNames=["web"])

    expect_error("InvalidNetworkAclID.NotFound", ec2.describe_network_acls, NetworkAclIds=["acl-0123456789abcdef0"])
    expect_error("InvalidRouteTableID.NotFound", ec2.describe_route_tables, RouteTableIds=["rtb-0123456789abcdef0"])
    expect_error("InvalidInternetGatewayID.NotFound", ec2.describe_internet_gateways,
                 InternetGatewayIds=["igw-0123456789abcdef0"])
    gw = ec2.describe_internet_gateways(Filters=[{"Name": "attachment.vpc-id", "Values": [vid]}])
    assert len(gw["InternetGateways"]) == 1


def test_pagination(keycard_fresh):
    ec2 = keycard_fresh.client("ec2")
    first = ec2.describe_subnets(MaxResults=5)
    assert len(first["Subnets"]) == 3 and "NextToken" not in first
    expect_error("InvalidParameterValue", ec2.describe_subnets, NextToken="garbage")
    ec2.run_instances(ImageId=AMI, MinCount=7, MaxCount=7)
    page = ec2.describe_network_interfaces(MaxResults=5)
    assert len(page["NetworkInterfaces"]) == 5 and page["NextToken"]
    rest = ec2.describe_network_interfaces(MaxResults=5, NextToken=page["NextToken"])
    assert len(rest["NetworkInterfaces"]) == 2 and "NextToken" not in rest
    ids = [n["NetworkInterfaceId"] for n in page["NetworkInterfaces"] + rest["NetworkInterfaces"]]
    assert len(set(ids)) == 7
    expect_error("InvalidParameterCombination", ec2.describe_network_interfaces, NetworkInterfaceIds=ids[:1], MaxResults=5)
    vpc_id = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    assert [v["VpcId"] for v in ec2.describe_vpcs(VpcIds=[vpc_id], MaxResults=5)["Vpcs"]] == [vpc_id]
    pages = ec2.get_paginator("describe_network_interfaces").paginate(PaginationConfig={"PageSize": 5})
    assert sorted(n["NetworkInterfaceId"] for p in pages for n in p["NetworkInterfaces"]) == sorted(ids)
    subnet = [s for s in ec2.describe_subnets()["Subnets"] if s["AvailabilityZone"] == f"{REGION}a"][0]
    assert subnet["AvailableIpAddressCount"] == 4091 - 7


def test_regions_and_zones(ec2):
    regions = ec2.describe_regions()["Regions"]
    names = {r["RegionName"] for r in regions}
    assert REGION in names and "eu-west-1" in names and "af-south-1" not in names
    assert all(r["OptInStatus"] == "opt-in-not-required" for r in regions)
    every = {r["RegionName"]: r["OptInStatus"] for r in ec2.describe_regions(AllRegions=True)["Regions"]}
    assert every["af-south-1"] == "not-opted-in"
    one = ec2.describe_regions(RegionNames=["eu-west-1"])["Regions"]
    assert one == [{"Endpoint": "ec2.eu-west-1.amazonaws.com", "RegionName": "eu-west-1", "OptInStatus": "opt-in-not-required"}]
    zones = ec2.describe_availability_zones()["AvailabilityZones"]
    assert [z["ZoneName"] for z in zones] == [f"{REGION}a", f"{REGION}b", f"{REGION}c"]
    assert all(z["State"] == "available" and z["RegionName"] == REGION for z in zones)
    got = ec2.describe_availability_zones(Filters=[{"Name": "zone-id", "Values": ["use1-az2"]}])
    assert [z["ZoneName"] for z in got["AvailabilityZones"]] == [f"{REGION}b"]


@pytest.mark.parametrize(
    "method,key,kwargs",
    [
        ("describe_snapshots", "Snapshots", {"OwnerIds": ["self"]}),
        ("describe_images", "Images", {"Owners": ["self"]}),
        ("describe_addresses", "Addresses", {}),
        ("describe_launch_templates", "LaunchTemplates", {}),
        ("describe_vpc_endpoints", "VpcEndpoints", {}),
        ("describe_vpc_peering_connections", "VpcPeeringConnections", {}),
        ("describe_vpn_connections", "VpnConnections", {}),
        ("describe_client_vpn_endpoints", "ClientVpnEndpoints", {}),
        ("describe_transit_gateways", "TransitGateways", {}),
        ("describe_flow_logs", "FlowLogs", {}),
    ],
)
def test_empty_lists(ec2, method, key, kwargs):
    out = getattr(ec2, method)(**kwargs)
    assert out[key] == [], out


@pytest.mark.parametrize(
    "method,kwargs,code",
    [
        ("describe_volumes", {"VolumeIds": ["vol-0123456789abcdef0"]}, "InvalidVolume.NotFound"),
        ("describe_snapshots", {"SnapshotIds": ["snap-0123456789abcdef0"]}, "InvalidSnapshot.NotFound"),
        ("describe_images", {"ImageIds": ["ami-0123456789abcdef0"]}, "InvalidAMIID.NotFound"),
        ("describe_launch_templates", {"LaunchTemplateNames": ["my-template"]}, "InvalidLaunchTemplateName.NotFoundException"),
        ("describe_launch_template_versions", {"LaunchTemplateId": "lt-0123456789abcdef0"},
         "InvalidLaunchTemplateId.NotFound"),
        ("describe_launch_template_versions", {"LaunchTemplateName": "my-template"},
         "InvalidLaunchTemplateName.NotFoundException"),
        ("describe_vpc_endpoints", {"VpcEndpointIds": ["vpce-0123456789abcdef0"]}, "InvalidVpcEndpointId.NotFound"),
    ],
)
def test_named_resources_do_not_exist(ec2, method, kwargs, code):
    expect_error(code, getattr(ec2, method), **kwargs)


def test_account_settings(ec2):
    assert ec2.get_ebs_encryption_by_default()["EbsEncryptionByDefault"] is False
    assert ec2.get_instance_metadata_defaults()["AccountLevel"] == {}
    assert ec2.get_snapshot_block_public_access_state()["State"] == "unblocked"
    assert ec2.get_image_block_public_access_state()["ImageBlockPublicAccessState"] == "block-new-sharing"


def test_dry_run(ec2):
    expect_error("DryRunOperation", ec2.describe_vpcs, DryRun=True)


def test_accounts_and_regions_have_their_own_network(keycard, vpc):
    other_account, root = create_account(keycard)
    other = keycard.client("ec2", creds=root)
    theirs = other.describe_vpcs()["Vpcs"]
    assert len(theirs) == 1 and theirs[0]["OwnerId"] == other_account
    assert theirs[0]["VpcId"] != vpc["VpcId"] and theirs[0]["CidrBlock"] == "172.31.0.0/16"
    expect_error("InvalidVpcID.NotFound", other.describe_vpcs, VpcIds=[vpc["VpcId"]])
    mine = {s["SubnetId"] for s in keycard.client("ec2").describe_subnets()["Subnets"]}
    assert not mine & {s["SubnetId"] for s in other.describe_subnets()["Subnets"]}
    # An instance of the other account is not among this account's interfaces.
    iid = other.run_instances(ImageId=AMI, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    got = keycard.client("ec2").describe_network_interfaces(
        Filters=[{"Name": "attachment.instance-id", "Values": [iid]}])["NetworkInterfaces"]
    assert got == []
    # Another region: another VPC.
    eu = keycard.client("ec2", region_name="eu-west-1").describe_vpcs()["Vpcs"]
    assert len(eu) == 1 and eu[0]["VpcId"] != vpc["VpcId"]


def test_ids_survive_a_restart(keycard_fresh):
    before = keycard_fresh.client("ec2").describe_vpcs()["Vpcs"][0]["VpcId"]
    keycard_fresh.restart()
    assert keycard_fresh.client("ec2").describe_vpcs()["Vpcs"][0]["VpcId"] == before


def test_cli_describe_vpcs_and_security_groups(keycard, vpc):
    out = keycard.aws("ec2", "describe-vpcs", "--filters", "Name=is-default,Values=true")
    assert [v["VpcId"] for v in out["Vpcs"]] == [vpc["VpcId"]]
    sg = keycard.aws("ec2", "describe-security-groups", "--group-names", "default")
    assert sg["SecurityGroups"][0]["VpcId"] == vpc["VpcId"]
    err = keycard.aws_error("ec2", "describe-subnets", "--subnet-ids", "subnet-0123456789abcdef0")
    assert err.code == "InvalidSubnetID.NotFound"


# ---------------------------------------------------------------- created VPCs, subnets, groups


def net_client(keycard):
    """EC2 as the root of a new account: its network is its own."""
    _, creds = create_account(keycard)
    return keycard.client("ec2", creds=creds)


def tagged(kind, **tags):
    return [{"ResourceType": kind, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]


def test_vpc_subnet_group_and_instances(keycard):
    ec2 = net_client(keycard)
    new = ec2.create_vpc(CidrBlock="10.0.0.0/16", TagSpecifications=tagged("vpc", Name="app"))["Vpc"]
    vid = new["VpcId"]
    assert vid.startswith("vpc-") and len(vid) == 21
    assert (new["CidrBlock"], new["IsDefault"], new["State"]) == ("10.0.0.0/16", False, "pending")
    assert new["Tags"] == [{"Key": "Name", "Value": "app"}]
    assert len(ec2.describe_vpcs()["Vpcs"]) == 2
    for f in ({"Name": "is-default", "Values": ["false"]}, {"Name": "tag:Name", "Values": ["ap*"]},
              {"Name": "tag-key", "Values": ["Name"]}, {"Name": "cidr", "Values": ["10.0.0.0/16"]}):
        got = ec2.describe_vpcs(Filters=[f])["Vpcs"]
        assert [v["VpcId"] for v in got] == [vid], f
        assert got[0]["State"] == "available"
    # AWS gives a new VPC its default group, main route table and default ACL.
    by_vpc = [{"Name": "vpc-id", "Values": [vid]}]
    [dflt] = ec2.describe_security_groups(Filters=by_vpc)["SecurityGroups"]
    assert dflt["GroupName"] == "default"
    [rtb] = ec2.describe_route_tables(Filters=by_vpc)["RouteTables"]
    assert [(r["DestinationCidrBlock"], r["GatewayId"]) for r in rtb["Routes"]] == [("10.0.0.0/16", "local")]
    assert rtb["Associations"][0]["Main"] is True

    sub = ec2.create_subnet(VpcId=vid, CidrBlock="10.0.1.0/24", AvailabilityZone=f"{REGION}b",
                            TagSpecifications=tagged("subnet", tier="web"))["Subnet"]
    sid = sub["SubnetId"]
    assert (sub["VpcId"], sub["CidrBlock"], sub["AvailabilityZoneId"]) == (vid, "10.0.1.0/24", "use1-az2")
    assert sub["DefaultForAz"] is False and sub["AvailableIpAddressCount"] == 251
    [acl] = ec2.describe_network_acls(Filters=by_vpc)["NetworkAcls"]
    assert [a["SubnetId"] for a in acl["Associations"]] == [sid]
    assert [s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "tag:tier", "Values": ["web"]}])["Subnets"]] == [sid]

    web = ec2.create_security_group(GroupName="web", Description="web tier", VpcId=vid,
                                    TagSpecifications=tagged("security-group", tier="web"))
    gid = web["GroupId"]
    assert web["SecurityGroupArn"] == f"arn:aws:ec2:{REGION}:{ec2_account(ec2)}:security-group/{gid}"
    g = ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]
    assert (g["VpcId"], g["Description"], g["IpPermissions"]) == (vid, "web tier", [])
    assert g["IpPermissionsEgress"][0]["IpRanges"] == [{"CidrIp": "0.0.0.0/0"}]
    expect_error("InvalidGroup.Duplicate", ec2.create_security_group, GroupName="web", Description="x", VpcId=vid)
    expect_error("InvalidGroup.Reserved", ec2.create_security_group, GroupName="default", Description="x", VpcId=vid)

    run = dict(ImageId=AMI, MinCount=1, MaxCount=1)
    i1 = ec2.run_instances(SubnetId=sid, SecurityGroupIds=[gid], **run)["Instances"][0]
    assert (i1["VpcId"], i1["SubnetId"], i1["PrivateIpAddress"]) == (vid, sid, "10.0.1.4")
    assert i1["SecurityGroups"] == [{"GroupId": gid, "GroupName": "web"}]
    assert i1["Placement"]["AvailabilityZone"] == f"{REGION}b"
    i2 = ec2.run_instances(NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": sid, "PrivateIpAddress": "10.0.1.50"}],
                           **run)["Instances"][0]
    assert (i2["SubnetId"], i2["PrivateIpAddress"]) == (sid, "10.0.1.50")
    assert i2["SecurityGroups"] == [{"GroupId": dflt["GroupId"], "GroupName": "default"}]
    expect_error("InvalidIPAddress.InUse", ec2.run_instances, SubnetId=sid, PrivateIpAddress="10.0.1.50", **run)
    expect_error("InvalidParameterValue", ec2.run_instances, SubnetId=sid, PrivateIpAddress="10.0.2.5", **run)
    expect_error("InvalidParameterValue", ec2.run_instances, SubnetId=sid, PrivateIpAddress="10.0.1.255", **run)
    default_sg = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["GroupId"]
    expect_error("InvalidParameter", ec2.run_instances, SubnetId=sid, SecurityGroupIds=[default_sg], **run)
    expect_error("InvalidSubnetID.NotFound", ec2.run_instances, SubnetId="subnet-0123456789abcdef0", **run)
    expect_error("InvalidGroup.NotFound", ec2.run_instances, SubnetId=sid, SecurityGroupIds=["sg-0123456789abcdef0"], **run)

    found = ec2.describe_instances(Filters=[{"Name": "subnet-id", "Values": [sid]}])["Reservations"]
    assert sorted(i["InstanceId"] for r in found for i in r["Instances"]) == sorted([i1["InstanceId"], i2["InstanceId"]])
    named = ec2.describe_instances(Filters=[{"Name": "instance.group-name", "Values": ["web"]}])["Reservations"]
    assert [i["InstanceId"] for r in named for i in r["Instances"]] == [i1["InstanceId"]]
    [eni] = ec2.describe_network_interfaces(Filters=[{"Name": "group-id", "Values": [gid]}])["NetworkInterfaces"]
    assert (eni["SubnetId"], eni["VpcId"], eni["PrivateIpAddress"]) == (sid, vid, "10.0.1.4")
    assert eni["Attachment"]["InstanceId"] == i1["InstanceId"]
    assert ec2.describe_subnets(SubnetIds=[sid])["Subnets"][0]["AvailableIpAddressCount"] == 249

    # Dependencies hold until the instances are gone.
    expect_error("DependencyViolation", ec2.delete_vpc, VpcId=vid)
    expect_error("DependencyViolation", ec2.delete_subnet, SubnetId=sid)
    expect_error("DependencyViolation", ec2.delete_security_group, GroupId=gid)
    expect_error("CannotDelete", ec2.delete_security_group, GroupId=dflt["GroupId"])
    ec2.terminate_instances(InstanceIds=[i1["InstanceId"], i2["InstanceId"]])
    expect_error("DependencyViolation", ec2.delete_vpc, VpcId=vid)  # the subnet and the group
    ec2.delete_security_group(GroupId=gid)
    ec2.delete_subnet(SubnetId=sid)
    ec2.delete_vpc(VpcId=vid)
    expect_error("InvalidVpcID.NotFound", ec2.describe_vpcs, VpcIds=[vid])
    expect_error("InvalidGroup.NotFound", ec2.describe_security_groups, GroupIds=[dflt["GroupId"]])
    assert len(ec2.describe_vpcs()["Vpcs"]) == 1
    assert len(ec2.describe_route_tables()["RouteTables"]) == 1


def ec2_account(ec2):
    return ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["OwnerId"]


def test_vpc_and_subnet_validation(keycard):
    ec2 = net_client(keycard)
    for cidr, code in (("10.0.0.0/8", "InvalidVpc.Range"), ("10.0.0.0/29", "InvalidVpc.Range"),
                       ("10.0.0.1/16", "InvalidParameterValue"), ("nonsense", "InvalidParameterValue")):
        expect_error(code, ec2.create_vpc, CidrBlock=cidr)
    expect_error("DryRunOperation", ec2.create_vpc, CidrBlock="10.0.0.0/16", DryRun=True)
    assert len(ec2.describe_vpcs()["Vpcs"]) == 1, "nothing was created"
    vid = ec2.create_vpc(CidrBlock="10.5.0.0/16")["Vpc"]["VpcId"]
    ec2.create_subnet(VpcId=vid, CidrBlock="10.5.0.0/20", AvailabilityZoneId="use1-az3")
    for cidr, code in (("10.6.0.0/24", "InvalidSubnet.Range"), ("10.5.0.0/29", "InvalidSubnet.Range"),
                       ("10.5.1.0/24", "InvalidSubnet.Conflict"), ("10.5.0.0/16", "InvalidSubnet.Conflict")):
        expect_error(code, ec2.create_subnet, VpcId=vid, CidrBlock=cidr)
    expect_error("InvalidParameterValue", ec2.create_subnet, VpcId=vid, CidrBlock="10.5.16.0/24",
                 AvailabilityZone=f"{REGION}z")
    expect_error("InvalidVpcID.NotFound", ec2.create_subnet, VpcId="vpc-0123456789abcdef0", CidrBlock="10.5.16.0/24")
    # A subnet of its own in the default VPC, beside the default ones.
    dflt = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    expect_error("InvalidSubnet.Conflict", ec2.create_subnet, VpcId=dflt, CidrBlock="172.31.0.0/24")
    extra = ec2.create_subnet(VpcId=dflt, CidrBlock="172.31.48.0/20")["Subnet"]
    assert extra["DefaultForAz"] is False and extra["AvailabilityZone"] == f"{REGION}a"
    # Security groups without a VpcId go to the default VPC; delete by name there.
    gid = ec2.create_security_group(GroupName="ops", Description="ops")["GroupId"]
    assert ec2.describe_security_groups(GroupNames=["ops"])["SecurityGroups"][0]["VpcId"] == dflt
    i = ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1, SecurityGroups=["ops", "default"])["Instances"][0]
    assert {g["GroupName"] for g in i["SecurityGroups"]} == {"ops", "default"}
    assert i["PrivateIpAddress"].startswith("172.31.")
    expect_error("DependencyViolation", ec2.delete_security_group, GroupName="ops")
    ec2.terminate_instances(InstanceIds=[i["InstanceId"]])
    assert ec2.delete_security_group(GroupName="ops")["GroupId"] == gid
    expect_error("InvalidGroup.NotFound", ec2.delete_security_group, GroupId=gid)
    expect_error("DependencyViolation", ec2.delete_vpc, VpcId=dflt)
    default_subnet = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"][0]
    expect_error("UnsupportedOperation", ec2.delete_subnet, SubnetId=default_subnet["SubnetId"])


def test_create_vpc_request_tags_are_authorized(keycard):
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "ec2:CreateVpc", "Resource": "*",
             "Condition": {"StringEquals": {"aws:RequestTag/team": "blue"}}},
            {"Effect": "Allow", "Action": "ec2:CreateTags", "Resource": "*",
             "Condition": {"StringEquals": {"ec2:CreateAction": "CreateVpc"}}},
            {"Effect": "Allow", "Action": "ec2:DeleteVpc", "Resource": "*",
             "Condition": {"StringEquals": {"ec2:ResourceTag/team": "blue"}}},
        ],
    }
    _, creds = keycard.new_user(policy=policy)
    ec2 = keycard.client("ec2", creds=creds)
    expect_error("UnauthorizedOperation", ec2.create_vpc, CidrBlock="10.7.0.0/16")
    expect_error("UnauthorizedOperation", ec2.create_vpc, CidrBlock="10.7.0.0/16",
                 TagSpecifications=tagged("vpc", team="red"))
    vid = ec2.create_vpc(CidrBlock="10.7.0.0/16", TagSpecifications=tagged("vpc", team="blue"))["Vpc"]["VpcId"]
    root = keycard.client("ec2")
    other = root.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    expect_error("UnauthorizedOperation", ec2.delete_vpc, VpcId=other)
    ec2.delete_vpc(VpcId=vid)
    root.delete_vpc(VpcId=other)


def test_cli_vpc_flow_survives_restart(keycard_fresh):
    import ipaddress

    kc = keycard_fresh
    vpc = kc.aws("ec2", "create-vpc", "--cidr-block", "10.20.0.0/16",
                 "--tag-specifications", "ResourceType=vpc,Tags=[{Key=Name,Value=cli}]")["Vpc"]
    vid = vpc["VpcId"]
    sub = kc.aws("ec2", "create-subnet", "--vpc-id", vid, "--cidr-block", "10.20.3.0/24",
                 "--availability-zone", f"{REGION}c")["Subnet"]
    sid = sub["SubnetId"]
    gid = kc.aws("ec2", "create-security-group", "--group-name", "cli-web", "--description", "cli",
                 "--vpc-id", vid)["GroupId"]
    run = kc.aws("ec2", "run-instances", "--image-id", AMI, "--count", "1", "--subnet-id", sid,
                 "--security-group-ids", gid)
    iid = run["Instances"][0]["InstanceId"]
    inst = kc.aws("ec2", "describe-instances", "--instance-ids", iid)["Reservations"][0]["Instances"][0]
    assert (inst["SubnetId"], inst["VpcId"]) == (sid, vid)
    assert ipaddress.ip_address(inst["PrivateIpAddress"]) in ipaddress.ip_network("10.20.3.0/24")
    assert inst["NetworkInterfaces"][0]["Groups"] == [{"GroupId": gid, "GroupName": "cli-web"}]
    assert kc.aws_error("ec2", "delete-subnet", "--subnet-id", sid).code == "DependencyViolation"
    assert kc.aws_error("ec2", "delete-vpc", "--vpc-id", vid).code == "DependencyViolation"

    kc.restart()
    vpcs = kc.aws("ec2", "describe-vpcs", "--filters", "Name=tag:Name,Values=cli")["Vpcs"]
    assert [v["VpcId"] for v in vpcs] == [vid]
    assert kc.aws("ec2", "describe-subnets", "--subnet-ids", sid)["Subnets"][0]["AvailabilityZone"] == f"{REGION}c"
    assert kc.aws("ec2", "describe-security-groups", "--group-ids", gid)["SecurityGroups"][0]["GroupName"] == "cli-web"
    after = kc.aws("ec2", "describe-instances", "--instance-ids", iid)["Reservations"][0]["Instances"][0]
    assert (after["SubnetId"], after["PrivateIpAddress"]) == (sid, inst["PrivateIpAddress"])

    kc.aws("ec2", "terminate-instances", "--instance-ids", iid)
    kc.aws("ec2", "delete-security-group", "--group-id", gid)
    kc.aws("ec2", "delete-subnet", "--subnet-id", sid)
    kc.aws("ec2", "delete-vpc", "--vpc-id", vid)
    kc.restart()
    assert kc.aws_error("ec2", "describe-vpcs", "--vpc-ids", vid).code == "InvalidVpcID.NotFound"
    assert len(kc.aws("ec2", "describe-vpcs")["Vpcs"]) == 1
