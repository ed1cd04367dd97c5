"""The EC2 launch path with boto3 and the AWS CLI: key pairs (created and
imported, fingerprints as AWS computes them, private keys never stored
or audited), images (the built-in catalogue and registered ones) and
launch templates with their versions, and RunInstances from a template:
its defaults, the request's overrides, iam:PassRole, IMDSv2, and the
launch-template authorization keys."""

import base64
import hashlib
import json
import shutil
import subprocess

import pytest

from conftest import ACCOUNT, REGION, allow, doc, expect_error, unique

AMI = "ami-0abcdef1234567890"


def events(kc, name):
    ct = kc.client("cloudtrail")
    found = ct.lookup_events(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": name}], MaxResults=50)
    return [json.loads(e["CloudTrailEvent"]) for e in found["Events"]]


def tool(name):
    if shutil.which(name) is None:
        pytest.skip(f"{name} is not installed")


def run(cmd, cwd, data=None):
    return subprocess.run(cmd, cwd=cwd, input=data, capture_output=True, check=True).stdout


# ---- key pairs -------------------------------------------------------------------------


def test_created_rsa_key_is_a_real_key_with_aws_fingerprint(keycard):
    tool("openssl")
    tool("ssh-keygen")
    name = unique("rsa")
    out = keycard.aws("ec2", "create-key-pair", "--key-name", name)
    assert out["KeyPairId"].startswith("key-") and len(out["KeyPairId"]) == 21
    pem = out["KeyMaterial"]
    assert pem.startswith("-----BEGIN RSA PRIVATE KEY-----")
    work = keycard.workdir
    key = work / f"{name}.pem"
    key.write_text(pem + "\n")
    key.chmod(0o600)
    # AWS: SHA-1 of the PKCS#8 DER private key, for keys EC2 created.
    der = run(["openssl", "pkcs8", "-topk8", "-nocrypt", "-in", str(key), "-outform", "DER"], work)
    sha1 = hashlib.sha1(der).hexdigest()
    assert out["KeyFingerprint"] == ":".join(sha1[i : i + 2] for i in range(0, 40, 2))
    # The stored public key is the private key's.
    public = run(["ssh-keygen", "-y", "-f", str(key)], work).decode().split()[:2]
    d = keycard.client("ec2").describe_key_pairs(KeyNames=[name], IncludePublicKey=True)["KeyPairs"][0]
    assert d["PublicKey"].split()[:2] == public and d["PublicKey"].split()[2] == name
    assert d["KeyType"] == "rsa" and d["KeyFingerprint"] == out["KeyFingerprint"] and "KeyMaterial" not in d
    assert "PublicKey" not in keycard.client("ec2").describe_key_pairs(KeyNames=[name])["KeyPairs"][0]


def test_created_ed25519_key_matches_ssh_keygen(keycard):
    tool("ssh-keygen")
    name = unique("ed")
    out = keycard.client("ec2").create_key_pair(KeyName=name, KeyType="ed25519")
    assert out["KeyMaterial"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    key = keycard.workdir / f"{name}.key"
    key.write_text(out["KeyMaterial"] + "\n")
    key.chmod(0o600)
    fp = run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(key)], keycard.workdir).decode().split()[1]
    # ssh-keygen prints SHA256:<base64 without padding>; AWS keeps the padding.
    assert out["KeyFingerprint"] == fp.removeprefix("SHA256:") + "="
    assert keycard.client("ec2").describe_key_pairs(KeyNames=[name])["KeyPairs"][0]["KeyType"] == "ed25519"


def test_ppk_format(keycard):
    out = keycard.client("ec2").create_key_pair(KeyName=unique("ppk"), KeyFormat="ppk")
    assert out["KeyMaterial"].startswith("PuTTY-User-Key-File-2: ssh-rsa")


def test_import_key_pair_fingerprint_and_errors(keycard):
    tool("ssh-keygen")
    tool("openssl")
    work = keycard.workdir
    name = unique("imp")
    key = work / name
    run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-C", "me@host", "-f", str(key)], work)
    out = keycard.aws("ec2", "import-key-pair", "--key-name", name, "--public-key-material", f"fileb://{key}.pub")
    # AWS: MD5 of the DER public key, for imported RSA keys.
    pkcs8 = run(["ssh-keygen", "-e", "-m", "PKCS8", "-f", f"{key}.pub"], work)
    der = run(["openssl", "pkey", "-pubin", "-outform", "DER"], work, data=pkcs8)
    md5 = hashlib.md5(der).hexdigest()
    assert out["KeyFingerprint"] == ":".join(md5[i : i + 2] for i in range(0, 32, 2))
    assert out["KeyName"] == name and out["KeyPairId"].startswith("key-")
    ec2 = keycard.client("ec2")
    expect_error("InvalidKeyPair.Duplicate", ec2.import_key_pair, KeyName=name, PublicKeyMaterial=(work / f"{name}.pub").read_bytes())
    expect_error("InvalidKeyPair.Duplicate", ec2.create_key_pair, KeyName=name)
    for bad in (b"not a key", b"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQ==", b"ssh-dss AAAA"):
        expect_error("InvalidKey.Format", ec2.import_key_pair, KeyName=unique("bad"), PublicKeyMaterial=bad)
    # ED25519, imported: SHA-256 like created ones.
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key) + "-ed"], work)
    pub = (work / f"{name}-ed.pub").read_bytes()
    out = ec2.import_key_pair(KeyName=name + "-ed", PublicKeyMaterial=pub)
    blob = base64.b64decode(pub.split()[1])
    assert out["KeyFingerprint"] == base64.b64encode(hashlib.sha256(blob).digest()).decode()


def test_describe_filters_delete_and_idempotence(keycard_fresh):
    ec2 = keycard_fresh.client("ec2")
    a = ec2.create_key_pair(KeyName="alpha", TagSpecifications=[{"ResourceType": "key-pair", "Tags": [{"Key": "team", "Value": "blue"}]}])
    ec2.create_key_pair(KeyName="beta", KeyType="ed25519")
    names = lambda **kw: [k["KeyName"] for k in ec2.describe_key_pairs(**kw)["KeyPairs"]]
    assert names() == ["alpha", "beta"]
    assert names(Filters=[{"Name": "key-type", "Values": ["ed25519"]}]) == ["beta"]
    assert names(Filters=[{"Name": "tag:team", "Values": ["blue"]}]) == ["alpha"]
    assert names(Filters=[{"Name": "key-name", "Values": ["a*"]}]) == ["alpha"]
    assert names(KeyPairIds=[a["KeyPairId"]]) == ["alpha"]
    expect_error("InvalidKeyPair.NotFound", ec2.describe_key_pairs, KeyNames=["gamma"])
    expect_error("InvalidParameterValue", ec2.describe_key_pairs, Filters=[{"Name": "colour", "Values": ["x"]}])
    expect_error("InvalidParameterValue", ec2.create_key_pair, KeyName="x", KeyType="dsa")
    expect_error("DryRunOperation", ec2.delete_key_pair, KeyName="alpha", DryRun=True)
    out = ec2.delete_key_pair(KeyPairId=a["KeyPairId"])
    assert out["Return"] is True and out["KeyPairId"] == a["KeyPairId"]
    # Deleting what is not there succeeds, as on AWS.
    assert ec2.delete_key_pair(KeyName="alpha")["Return"] is True
    assert names() == ["beta"]


def test_private_key_reaches_neither_audit_nor_log(keycard):
    name = unique("secret")
    out = keycard.client("ec2").create_key_pair(KeyName=name)
    body = out["KeyMaterial"].splitlines()[5]
    evs = [e for e in events(keycard, "CreateKeyPair") if e["requestParameters"].get("keyName") == name]
    assert evs and all(body not in json.dumps(e) for e in evs)
    assert evs[0]["responseElements"]["keyFingerprint"] == out["KeyFingerprint"]
    assert body not in keycard.log_tail(2000)


def test_run_instances_needs_an_existing_key_and_imds_serves_it(keycard):
    ec2 = keycard.client("ec2")
    expect_error("InvalidKeyPair.NotFound", ec2.run_instances, ImageId=AMI, MinCount=1, MaxCount=1, KeyName=unique("none"))
    name = unique("login")
    ec2.create_key_pair(KeyName=name, KeyType="ed25519")
    public = ec2.describe_key_pairs(KeyNames=[name], IncludePublicKey=True)["KeyPairs"][0]["PublicKey"]
    iid = keycard.run_instance(KeyName=name)["InstanceId"]
    assert keycard.imds(iid, "/latest/meta-data/public-keys")[2].decode() == f"0={name}"
    assert keycard.imds(iid, "/latest/meta-data/public-keys/0/")[2].decode() == "openssh-key"
    assert keycard.imds(iid, "/latest/meta-data/public-keys/0/openssh-key")[2].decode() == public
    assert "public-keys/" in keycard.imds(iid, "/latest/meta-data/")[2].decode().split("\n")
    # The instance keeps its key when the pair is deleted.
    ec2.delete_key_pair(KeyName=name)
    assert keycard.imds(iid, "/latest/meta-data/public-keys/0/openssh-key")[2].decode() == public
    other = keycard.run_instance()["InstanceId"]
    assert keycard.imds(other, "/latest/meta-data/public-keys/0/openssh-key")[0] == 404


# ---- images ----------------------------------------------------------------------------


def test_catalogue_and_filters(keycard):
    ec2 = keycard.client("ec2")
    amazon = ec2.describe_images(Owners=["amazon"])["Images"]
    assert AMI in [i["ImageId"] for i in amazon]
    assert all(i["ImageOwnerAlias"] == "amazon" and i["Public"] and i["State"] == "available" for i in amazon)
    al = ec2.describe_images(Owners=["amazon"], Filters=[{"Name": "name", "Values": ["al2023-ami-*"]}, {"Name": "architecture", "Values": ["arm64"]}])["Images"]
    assert [i["Architecture"] for i in al] == ["arm64"]
    ubuntu = ec2.describe_images(Owners=["099720109477"], Filters=[{"Name": "name", "Values": ["ubuntu/images/*noble*amd64*"]}])["Images"]
    assert len(ubuntu) == 1 and "ImageOwnerAlias" not in ubuntu[0]
    i = ec2.describe_images(ImageIds=[AMI])["Images"][0]
    assert i["RootDeviceName"] == "/dev/xvda" and i["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] == 8
    expect_error("InvalidAMIID.NotFound", ec2.describe_images, ImageIds=["ami-00000000000000000"])
    expect_error("InvalidAMIID.Malformed", ec2.describe_images, ImageIds=["ami-xyz"])
    expect_error("InvalidParameterValue", ec2.describe_images, Filters=[{"Name": "colour", "Values": ["x"]}])
    expect_error("InvalidParameterValue", ec2.describe_images, Owners=["somebody"])


def test_register_describe_launch_deregister(keycard_fresh):
    ec2 = keycard_fresh.client("ec2")
    img = ec2.register_image(
        Name="my-app (v1)", Architecture="arm64", RootDeviceName="/dev/xvda", VirtualizationType="hvm",
        TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "app", "Value": "web"}]}],
    )["ImageId"]
    assert img.startswith("ami-") and len(img) == 21
    mine = ec2.describe_images(Owners=["self"])["Images"]
    assert [(i["ImageId"], i["Name"], i["OwnerId"], i["Public"]) for i in mine] == [(img, "my-app (v1)", ACCOUNT, False)]
    assert ec2.describe_images(Filters=[{"Name": "tag:app", "Values": ["web"]}])["Images"][0]["ImageId"] == img
    assert [i["ImageId"] for i in ec2.describe_images(ExecutableUsers=["self"], Owners=["self"])["Images"]] == [img]
    expect_error("InvalidAMIName.Duplicate", ec2.register_image, Name="my-app (v1)")
    expect_error("InvalidAMIName.Malformed", ec2.register_image, Name="no*stars")
    expect_error("InvalidParameterValue", ec2.register_image, Name="ok-name", Architecture="sparc")
    iid = ec2.run_instances(ImageId=img, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    assert ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["ImageId"] == img
    expect_error("InvalidAMIID.Unavailable", ec2.deregister_image, ImageId=AMI)
    assert ec2.deregister_image(ImageId=img)["Return"] is True
    expect_error("InvalidAMIID.NotFound", ec2.describe_images, ImageIds=[img])
    expect_error("InvalidAMIID.NotFound", ec2.run_instances, ImageId=img, MinCount=1, MaxCount=1)
    expect_error("InvalidAMIID.NotFound", ec2.deregister_image, ImageId=img)
    # Instances launched from it keep running.
    assert ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"] == "running"


def test_images_page(keycard_fresh):
    ec2 = keycard_fresh.client("ec2")
    for n in range(4):
        ec2.register_image(Name=f"page-{n}")
    seen, token = [], None
    while True:
        kw = {"MaxResults": 5} | ({"NextToken": token} if token else {})
        out = ec2.describe_images(**kw)
        assert len(out["Images"]) <= 5
        seen += [i["ImageId"] for i in out["Images"]]
        token = out.get("NextToken")
        if not token:
            break
    assert len(seen) == len(set(seen)) == len(ec2.describe_images()["Images"]) >= 9
    pages = list(ec2.get_paginator("describe_images").paginate(Owners=["self"], PaginationConfig={"PageSize": 5}))
    assert sum(len(p["Images"]) for p in pages) == 4


def test_unknown_image_is_refused_at_launch(keycard):
    ec2 = keycard.client("ec2")
    expect_error("InvalidAMIID.NotFound", ec2.run_instances, ImageId="ami-0123456789abcdef0", MinCount=1, MaxCount=1)
    expect_error("InvalidAMIID.Malformed", ec2.run_instances, ImageId="ami-12", MinCount=1, MaxCount=1)


# ---- launch templates ------------------------------------------------------------------


def test_template_lifecycle_with_the_cli(keycard_fresh):
    kc = keycard_fresh
    data = {"ImageId": AMI, "InstanceType": "t3.micro", "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 2}}
    lt = kc.aws(
        "ec2", "create-launch-template", "--launch-template-name", "web", "--version-description", "first",
        "--launch-template-data", json.dumps(data),
        "--tag-specifications", "ResourceType=launch-template,Tags=[{Key=env,Value=prod}]",
    )["LaunchTemplate"]
    lid = lt["LaunchTemplateId"]
    assert lid.startswith("lt-") and len(lid) == 20
    assert (lt["DefaultVersionNumber"], lt["LatestVersionNumber"]) == (1, 1)
    assert lt["CreatedBy"] == f"arn:aws:iam::{ACCOUNT}:root" and lt["Tags"] == [{"Key": "env", "Value": "prod"}]
    err = kc.aws_error("ec2", "create-launch-template", "--launch-template-name", "web", "--launch-template-data", "{}")
    assert err.code == "InvalidLaunchTemplateName.AlreadyExistsException"
    # A new version from version 1: its data, with the type replaced.
    v2 = kc.aws(
        "ec2", "create-launch-template-version", "--launch-template-id", lid, "--source-version", "1",
        "--launch-template-data", json.dumps({"InstanceType": "t3.large"}),
    )["LaunchTemplateVersion"]
    assert v2["VersionNumber"] == 2 and v2["DefaultVersion"] is False
    assert v2["LaunchTemplateData"]["ImageId"] == AMI and v2["LaunchTemplateData"]["InstanceType"] == "t3.large"
    assert v2["LaunchTemplateData"]["MetadataOptions"]["HttpTokens"] == "required"
    v3 = kc.aws("ec2", "create-launch-template-version", "--launch-template-name", "web", "--launch-template-data", json.dumps({"InstanceType": "t3.small"}))
    assert "ImageId" not in v3["LaunchTemplateVersion"]["LaunchTemplateData"]
    ec2 = kc.client("ec2")
    vers = lambda **kw: [v["VersionNumber"] for v in ec2.describe_launch_template_versions(**kw)["LaunchTemplateVersions"]]
    assert vers(LaunchTemplateId=lid) == [3, 2, 1]
    assert vers(LaunchTemplateName="web", Versions=["$Latest"]) == [3]
    assert vers(LaunchTemplateName="web", Versions=["$Default"]) == [1]
    assert vers(LaunchTemplateId=lid, MinVersion="2", MaxVersion="2") == [2]
    assert vers(LaunchTemplateId=lid, Filters=[{"Name": "instance-type", "Values": ["t3.large"]}]) == [2]
    assert vers(Versions=["$Latest"]) == [3]
    expect_error("InvalidLaunchTemplateId.VersionNotFound", ec2.describe_launch_template_versions, LaunchTemplateId=lid, Versions=["9"])
    m = ec2.modify_launch_template(LaunchTemplateId=lid, DefaultVersion="2")["LaunchTemplate"]
    assert (m["DefaultVersionNumber"], m["LatestVersionNumber"]) == (2, 3)
    expect_error("InvalidLaunchTemplateId.VersionNotFound", ec2.modify_launch_template, LaunchTemplateId=lid, DefaultVersion="7")
    out = ec2.delete_launch_template_versions(LaunchTemplateId=lid, Versions=["1", "2", "8"])
    assert [v["VersionNumber"] for v in out["SuccessfullyDeletedLaunchTemplateVersions"]] == [1]
    failed = {v["VersionNumber"]: v["ResponseError"]["Code"] for v in out["UnsuccessfullyDeletedLaunchTemplateVersions"]}
    assert failed == {2: "unexpectedError", 8: "launchTemplateVersionDoesNotExist"}
    assert vers(LaunchTemplateId=lid) == [3, 2]
    d = ec2.delete_launch_template(LaunchTemplateName="web")["LaunchTemplate"]
    assert d["LaunchTemplateId"] == lid
    expect_error("InvalidLaunchTemplateName.NotFoundException", ec2.describe_launch_templates, LaunchTemplateNames=["web"])
    expect_error("InvalidLaunchTemplateId.NotFound", ec2.describe_launch_template_versions, LaunchTemplateId=lid)
    # The name is free again.
    ec2.create_launch_template(LaunchTemplateName="web", LaunchTemplateData={})


def test_template_errors_change_nothing(keycard_fresh):
    ec2 = keycard_fresh.client("ec2")
    bad = [
        ({"LaunchTemplateName": "x*y", "LaunchTemplateData": {}}, "InvalidLaunchTemplateName.MalformedException"),
        ({"LaunchTemplateName": "has space", "LaunchTemplateData": {}}, "InvalidLaunchTemplateName.MalformedException"),
        ({"LaunchTemplateName": "t-1", "LaunchTemplateData": {"InstanceType": "huge"}}, "InvalidParameterValue"),
        ({"LaunchTemplateName": "t-1", "LaunchTemplateData": {"MetadataOptions": {"HttpTokens": "sometimes"}}}, "InvalidParameterValue"),
        ({"LaunchTemplateName": "t-1", "LaunchTemplateData": {"IamInstanceProfile": {"Arn": "a", "Name": "b"}}}, "InvalidParameterCombination"),
        ({"LaunchTemplateName": "t-1", "LaunchTemplateData": {"TagSpecifications": [{"ResourceType": "bucket", "Tags": [{"Key": "a", "Value": "b"}]}]}}, "InvalidParameterValue"),
    ]
    for kw, code in bad:
        expect_error(code, ec2.create_launch_template, **kw)
    assert ec2.describe_launch_templates()["LaunchTemplates"] == []
    expect_error("InvalidLaunchTemplateId.Malformed", ec2.describe_launch_template_versions, LaunchTemplateId="lt-1")
    expect_error("InvalidLaunchTemplateId.NotFound", ec2.describe_launch_templates, LaunchTemplateIds=["lt-0123456789abcdef0"])
    expect_error("InvalidParameterCombination", ec2.describe_launch_template_versions, LaunchTemplateId="lt-0123456789abcdef0", LaunchTemplateName="nnn")
    # An image that does not exist is a warning, not an error.
    out = ec2.create_launch_template(LaunchTemplateName="warned", LaunchTemplateData={"ImageId": "ami-00000000000000000"})
    assert out["Warning"]["Errors"][0]["Code"] == "InvalidAMIID.NotFound"


def test_describe_templates_filters_and_pages(keycard_fresh):
    ec2 = keycard_fresh.client("ec2")
    made = []
    for n in range(5):
        tags = [{"ResourceType": "launch-template", "Tags": [{"Key": "tier", "Value": "web" if n % 2 else "db"}]}]
        made.append(ec2.create_launch_template(LaunchTemplateName=f"lt-page-{n}", LaunchTemplateData={}, TagSpecifications=tags)["LaunchTemplate"]["LaunchTemplateId"])
    names = lambda **kw: sorted(t["LaunchTemplateName"] for t in ec2.describe_launch_templates(**kw)["LaunchTemplates"])
    assert names(Filters=[{"Name": "tag:tier", "Values": ["web"]}]) == ["lt-page-1", "lt-page-3"]
    assert names(Filters=[{"Name": "launch-template-name", "Values": ["*-4"]}]) == ["lt-page-4"]
    assert names(LaunchTemplateIds=[made[0]], LaunchTemplateNames=["lt-page-2"]) == ["lt-page-0", "lt-page-2"]
    pages = list(ec2.get_paginator("describe_launch_templates").paginate(PaginationConfig={"PageSize": 2}))
    assert [len(p["LaunchTemplates"]) for p in pages] == [2, 2, 1]
    assert sorted(t["LaunchTemplateId"] for p in pages for t in p["LaunchTemplates"]) == sorted(made)


def test_run_instances_from_template(keycard):
    kc = keycard
    ec2 = kc.client("ec2")
    _, prof = kc.instance_profile(policy=allow("s3:ListAllMyBuckets"))
    key = unique("ltkey")
    ec2.create_key_pair(KeyName=key, KeyType="ed25519")
    script = "#!/bin/sh\necho from the template\n"
    name = unique("launch")
    data = {
        "ImageId": AMI,
        "InstanceType": "t3.small",
        "KeyName": key,
        "IamInstanceProfile": {"Name": prof["InstanceProfileName"]},
        "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 2, "InstanceMetadataTags": "enabled"},
        "UserData": base64.b64encode(script.encode()).decode(),
        "TagSpecifications": [{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "from-lt"}, {"Key": "team", "Value": "blue"}]}],
    }
    lid = ec2.create_launch_template(LaunchTemplateName=name, LaunchTemplateData=data)["LaunchTemplate"]["LaunchTemplateId"]
    out = kc.aws(
        "ec2", "run-instances", "--launch-template", f"LaunchTemplateName={name}",
        "--tag-specifications", "ResourceType=instance,Tags=[{Key=team,Value=red}]",
    )["Instances"][0]
    iid = out["InstanceId"]
    i = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert (i["ImageId"], i["InstanceType"], i["KeyName"]) == (AMI, "t3.small", key)
    assert i["IamInstanceProfile"]["Arn"] == prof["Arn"]
    assert i["MetadataOptions"]["HttpTokens"] == "required" and i["MetadataOptions"]["HttpPutResponseHopLimit"] == 2
    assert sorted((t["Key"], t["Value"]) for t in i["Tags"]) == [("Name", "from-lt"), ("team", "red")]
    # IMDSv2 only: v1 is refused, v2 delivers user data, tags and the role.
    assert kc.imds(iid, "/latest/meta-data/instance-id")[0] == 401
    tok = kc.imds_token(iid)
    assert kc.imds(iid, "/latest/user-data", token=tok)[2].decode() == script
    assert kc.imds(iid, "/latest/meta-data/tags/instance/Name", token=tok)[2].decode() == "from-lt"
    assert kc.imds(iid, f"/latest/meta-data/iam/security-credentials/{prof['InstanceProfileName']}", token=tok)[0] == 200
    assert kc.imds(iid, "/latest/meta-data/public-keys/0/openssh-key", token=tok)[0] == 200
    # The request's own parameters win; a version can be named.
    ec2.create_launch_template_version(LaunchTemplateId=lid, SourceVersion="1", LaunchTemplateData={"InstanceType": "t3.large"})
    j = ec2.run_instances(MinCount=1, MaxCount=1, LaunchTemplate={"LaunchTemplateId": lid, "Version": "$Latest"})["Instances"][0]
    assert j["InstanceType"] == "t3.large"
    k = ec2.run_instances(MinCount=1, MaxCount=1, InstanceType="m5.large", MetadataOptions={"HttpTokens": "optional"}, LaunchTemplate={"LaunchTemplateId": lid})["Instances"][0]
    assert k["InstanceType"] == "m5.large" and k["MetadataOptions"]["HttpTokens"] == "optional"
    expect_error("InvalidLaunchTemplateId.VersionNotFound", ec2.run_instances, MinCount=1, MaxCount=1, LaunchTemplate={"LaunchTemplateId": lid, "Version": "5"})
    expect_error("InvalidLaunchTemplateName.NotFoundException", ec2.run_instances, MinCount=1, MaxCount=1, LaunchTemplate={"LaunchTemplateName": "nope-nope"})
    # A template without an image needs one from the request.
    bare = ec2.create_launch_template(LaunchTemplateName=unique("bare"), LaunchTemplateData={"InstanceType": "t3.micro"})["LaunchTemplate"]["LaunchTemplateId"]
    expect_error("MissingParameter", ec2.run_instances, MinCount=1, MaxCount=1, LaunchTemplate={"LaunchTemplateId": bare})
    assert ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1, LaunchTemplate={"LaunchTemplateId": bare})["Instances"][0]["InstanceType"] == "t3.micro"
    # GetLaunchTemplateData gives the instance's parameters back.
    got = ec2.get_launch_template_data(InstanceId=iid)["LaunchTemplateData"]
    assert got["ImageId"] == AMI and got["KeyName"] == key and got["MetadataOptions"]["HttpTokens"] == "required"
    assert got["IamInstanceProfile"]["Arn"] == prof["Arn"]


def test_template_launch_authorization(keycard):
    kc = keycard
    ec2 = kc.client("ec2")
    _, prof = kc.instance_profile()
    name = unique("authlt")
    lt = ec2.create_launch_template(
        LaunchTemplateName=name,
        LaunchTemplateData={"ImageId": AMI, "IamInstanceProfile": {"Arn": prof["Arn"]}},
        TagSpecifications=[{"ResourceType": "launch-template", "Tags": [{"Key": "approved", "Value": "yes"}]}],
    )["LaunchTemplate"]
    lt_arn = f"arn:aws:ec2:{REGION}:{ACCOUNT}:launch-template/{lt['LaunchTemplateId']}"
    spec = {"LaunchTemplateName": name}
    # RunInstances on everything but no iam:PassRole: the template's
    # profile is refused as a direct launch's would be.
    _, creds = kc.new_user(policy=allow("ec2:RunInstances"))
    user = kc.client("ec2", creds=creds)
    e = expect_error("UnauthorizedOperation", user.run_instances, MinCount=1, MaxCount=1, LaunchTemplate=spec)
    decoded = kc.client("sts").decode_authorization_message(EncodedMessage=e.response["Error"]["Message"].split(": ")[-1])
    assert "iam:PassRole" in decoded["DecodedMessage"]
    # Only launches through an approved template, whose image came from it.
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"},
            {"Effect": "Allow", "Action": "ec2:RunInstances", "Resource": "*",
             "Condition": {"ArnLike": {"ec2:LaunchTemplate": lt_arn}, "Bool": {"ec2:IsLaunchTemplateResource": "true"}}},
            {"Effect": "Allow", "Action": "ec2:RunInstances", "Resource": [lt_arn, f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/*", f"arn:aws:ec2:{REGION}:{ACCOUNT}:subnet/*", f"arn:aws:ec2:{REGION}:{ACCOUNT}:security-group/*"],
             "Condition": {"ArnLike": {"ec2:LaunchTemplate": lt_arn}}},
        ],
    }
    _, creds = kc.new_user(policy=policy)
    user = kc.client("ec2", creds=creds)
    assert user.run_instances(MinCount=1, MaxCount=1, LaunchTemplate=spec)["Instances"][0]["ImageId"] == AMI
    # Without the template, or with an image the request chose: refused.
    expect_error("UnauthorizedOperation", user.run_instances, ImageId=AMI, MinCount=1, MaxCount=1)
    expect_error("UnauthorizedOperation", user.run_instances, ImageId=AMI, MinCount=1, MaxCount=1, LaunchTemplate=spec)
    # The template itself is a resource of the call.
    deny = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["ec2:RunInstances", "iam:PassRole"], "Resource": "*"},
        {"Effect": "Deny", "Action": "ec2:RunInstances", "Resource": lt_arn, "Condition": {"StringEquals": {"aws:ResourceTag/approved": "yes"}}},
    ]}
    _, creds = kc.new_user(policy=deny)
    user = kc.client("ec2", creds=creds)
    expect_error("UnauthorizedOperation", user.run_instances, MinCount=1, MaxCount=1, LaunchTemplate=spec)
    assert user.run_instances(ImageId=AMI, MinCount=1, MaxCount=1)["Instances"]


def test_key_pair_is_a_resource_of_the_launch(keycard):
    kc = keycard
    ec2 = kc.client("ec2")
    key = unique("guarded")
    ec2.create_key_pair(KeyName=key)
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ec2:RunInstances", "Resource": "*"},
        {"Effect": "Deny", "Action": "ec2:RunInstances", "Resource": f"arn:aws:ec2:{REGION}:{ACCOUNT}:key-pair/{key}"},
    ]}
    _, creds = kc.new_user(policy=policy)
    user = kc.client("ec2", creds=creds)
    expect_error("UnauthorizedOperation", user.run_instances, ImageId=AMI, MinCount=1, MaxCount=1, KeyName=key)
    assert user.run_instances(ImageId=AMI, MinCount=1, MaxCount=1)["Instances"]


def test_creates_need_their_permission_and_tag_permission(keycard):
    kc = keycard
    _, creds = kc.new_user(policy=allow(["ec2:CreateKeyPair", "ec2:CreateLaunchTemplate"]))
    user = kc.client("ec2", creds=creds)
    user.create_key_pair(KeyName=unique("u"))
    tagged = [{"ResourceType": "key-pair", "Tags": [{"Key": "a", "Value": "b"}]}]
    expect_error("UnauthorizedOperation", user.create_key_pair, KeyName=unique("u"), TagSpecifications=tagged)
    user.create_launch_template(LaunchTemplateName=unique("u"), LaunchTemplateData={})
    expect_error("UnauthorizedOperation", user.register_image, Name=unique("img"))
    expect_error("UnauthorizedOperation", user.describe_key_pairs)


def test_create_tags_and_describe_tags_reach_templates_keys_and_own_images(keycard_fresh):
    ec2 = keycard_fresh.client("ec2")
    lt = ec2.create_launch_template(LaunchTemplateName=unique("tag-lt"), LaunchTemplateData={})[
        "LaunchTemplate"]["LaunchTemplateId"]
    key = ec2.create_key_pair(KeyName=unique("tag-key"))["KeyPairId"]
    ami = ec2.register_image(Name=unique("tag-image"))["ImageId"]
    ec2.create_tags(Resources=[lt, key, ami], Tags=[{"Key": "team", "Value": "blue"}])
    got = ec2.describe_tags(Filters=[{"Name": "key", "Values": ["team"]}])["Tags"]
    assert sorted((t["ResourceId"], t["ResourceType"]) for t in got) == sorted(
        [(lt, "launch-template"), (key, "key-pair"), (ami, "image")])
    assert ec2.describe_key_pairs(KeyPairIds=[key])["KeyPairs"][0]["Tags"] == [{"Key": "team", "Value": "blue"}]
    assert ec2.describe_images(ImageIds=[ami])["Images"][0]["Tags"] == [{"Key": "team", "Value": "blue"}]
    ec2.delete_tags(Resources=[lt], Tags=[{"Key": "team"}])
    assert ec2.describe_launch_templates(LaunchTemplateIds=[lt])["LaunchTemplates"][0].get("Tags", []) == []
    # Amazon's catalogue images are not the account's to tag; nothing changes.
    expect_error("InvalidAMIID.NotFound", ec2.create_tags, Resources=[key, "ami-0abcdef1234567890"],
                 Tags=[{"Key": "x", "Value": "y"}])
    assert [t["Key"] for t in ec2.describe_key_pairs(KeyPairIds=[key])["KeyPairs"][0]["Tags"]] == ["team"]
    expect_error("InvalidKeyPair.NotFound", ec2.create_tags, Resources=["key-0123456789abcdef0"],
                 Tags=[{"Key": "x", "Value": "y"}])
