"""The instance metadata service: IMDSv1/v2 rules, the metadata tree, role
credentials and their rotation, isolation between instances, and the
container credentials endpoint. Requests are plain HTTP (as curl sends
them) to the instance's own IMDS address, or real SDKs run through
``keycard exec``."""

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import ACCOUNT, allow, expect_error, keycard_bin, raw_http, unique

READ_BUCKETS = allow(["s3:ListAllMyBuckets", "iam:ListUsers"])


@pytest.fixture(scope="module")
def two(keycard):
    """Two running instances with different roles."""
    role_a, prof_a = keycard.instance_profile(policy=READ_BUCKETS)
    role_b, prof_b = keycard.instance_profile(policy=READ_BUCKETS)
    a = keycard.run_instance(prof_a["InstanceProfileName"])["InstanceId"]
    b = keycard.run_instance(prof_b["InstanceProfileName"])["InstanceId"]
    return {"a": a, "b": b, "role_a": role_a["RoleName"], "role_b": role_b["RoleName"]}


def creds_of(body: bytes) -> dict:
    c = json.loads(body)
    return {"AccessKeyId": c["AccessKeyId"], "SecretAccessKey": c["SecretAccessKey"], "SessionToken": c["Token"]}


# ---- IMDSv2 tokens ------------------------------------------------------------


def test_token_put_returns_ttl_header(keycard, two):
    status, headers, body = keycard.imds(two["a"], "/latest/api/token", method="PUT", ttl=21600)
    assert status == 200
    assert headers["x-aws-ec2-metadata-token-ttl-seconds"] == "21600"
    assert len(body) > 20


@pytest.mark.parametrize("ttl", [None, "0", "-1", "21601", "abc", "1.5"])
def test_token_put_rejects_bad_ttl(keycard, two, ttl):
    h = {} if ttl is None else {"X-aws-ec2-metadata-token-ttl-seconds": ttl}
    status, _, _ = keycard.imds(two["a"], "/latest/api/token", method="PUT", headers=h)
    assert status == 400


def test_token_put_with_x_forwarded_for_is_refused(keycard, two):
    status, _, _ = keycard.imds(
        two["a"], "/latest/api/token", method="PUT", ttl=60, headers={"X-Forwarded-For": "203.0.113.9"}
    )
    assert status == 403


def test_token_put_on_versioned_path_is_refused(keycard, two):
    status, _, _ = keycard.imds(two["a"], "/2021-03-23/api/token", method="PUT", ttl=60)
    assert status == 403


def test_invalid_token_is_401_even_when_optional(keycard, two):
    status, _, _ = keycard.imds(two["a"], "/latest/meta-data/instance-id", token="not-a-token")
    assert status == 401
    status, _, body = keycard.imds(two["a"], "/latest/meta-data/instance-id")
    assert (status, body.decode()) == (200, two["a"])


def test_expired_token_is_401(keycard, two):
    tok = keycard.imds_token(two["a"], ttl=1)
    assert keycard.imds(two["a"], "/latest/meta-data/instance-id", token=tok)[0] == 200
    time.sleep(2.1)
    assert keycard.imds(two["a"], "/latest/meta-data/instance-id", token=tok)[0] == 401


def test_token_of_one_instance_is_rejected_by_another(keycard, two):
    tok_a = keycard.imds_token(two["a"])
    assert keycard.imds(two["a"], "/latest/meta-data/instance-id", token=tok_a)[0] == 200
    status, _, _ = keycard.imds(two["b"], "/latest/meta-data/instance-id", token=tok_a)
    assert status == 401


def test_dns_rebinding_host_is_refused(keycard, two):
    status, _, _ = keycard.imds(two["a"], "/latest/meta-data/instance-id", headers={"Host": "evil.example.com"})
    assert status == 403
    status, _, _ = keycard.imds(two["a"], "/latest/meta-data/instance-id", headers={"Host": "169.254.169.254"})
    assert status == 200


def test_other_methods_are_405(keycard, two):
    assert keycard.imds(two["a"], "/latest/meta-data/", method="POST")[0] == 405
    assert keycard.imds(two["a"], "/latest/meta-data/", method="DELETE")[0] == 405


# ---- isolation ----------------------------------------------------------------------


def test_each_instance_sees_only_itself(keycard, two):
    for me, role, other_role in (("a", "role_a", "role_b"), ("b", "role_b", "role_a")):
        iid = two[me]
        tok = keycard.imds_token(iid)
        assert keycard.imds(iid, "/latest/meta-data/instance-id", token=tok)[2].decode() == iid
        listed = keycard.imds(iid, "/latest/meta-data/iam/security-credentials/", token=tok)[2].decode()
        assert listed == two[role]
        # Asking for the other instance's role by name gets nothing.
        status, _, _ = keycard.imds(iid, f"/latest/meta-data/iam/security-credentials/{two[other_role]}", token=tok)
        assert status == 404
        status, _, body = keycard.imds(iid, f"/latest/meta-data/iam/security-credentials/{two[role]}", token=tok)
        assert status == 200
        ident = keycard.client("sts", creds=creds_of(body)).get_caller_identity()
        assert ident["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{two[role]}/{iid}"


def test_imds_addresses_differ_per_instance(keycard, two):
    ea = keycard.instance_access(two["a"])["imdsEndpoint"]
    eb = keycard.instance_access(two["b"])["imdsEndpoint"]
    assert ea != eb
    assert ea.startswith("http://127.77.") and eb.startswith("http://127.77.")


def test_admin_instance_info_needs_the_admin_token(keycard, two):
    status, _, _ = raw_http("GET", keycard.endpoint + f"/_keycard/admin/instances/{two['a']}")
    assert status == 403
    status, _, _ = raw_http(
        "GET", keycard.endpoint + f"/_keycard/admin/instances/{two['a']}", headers={"Authorization": "Bearer nope"}
    )
    assert status == 403


# ---- the metadata tree ---------------------------------------------------------------


def test_metadata_listing_and_leaves(keycard, two):
    iid = two["a"]
    tok = keycard.imds_token(iid)
    get = lambda p: keycard.imds(iid, p, token=tok)  # noqa: E731
    status, headers, body = get("/latest/meta-data/")
    assert status == 200
    entries = body.decode().split("\n")
    for e in ("ami-id", "instance-id", "instance-type", "local-ipv4", "placement/", "iam/", "mac", "hostname"):
        assert e in entries
    assert not body.endswith(b"\n")
    inst = keycard.client("ec2").describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert get("/latest/meta-data/ami-id")[2].decode() == inst["ImageId"]
    assert get("/latest/meta-data/instance-type")[2].decode() == inst["InstanceType"]
    assert get("/latest/meta-data/local-ipv4")[2].decode() == inst["PrivateIpAddress"]
    assert get("/latest/meta-data/hostname")[2].decode() == inst["PrivateDnsName"]
    assert get("/latest/meta-data/placement/region")[2].decode() == "us-east-1"
    # botocore asks with a trailing slash.
    assert get("/latest/meta-data/placement/availability-zone/")[2].decode() == "us-east-1a"
    assert get("/latest/meta-data/nonexistent")[0] == 404
    assert get("/latest/meta-data/iam/")[2].decode() == "info\nsecurity-credentials/"


def test_iam_info(keycard, two):
    iid = two["a"]
    status, _, body = keycard.imds(iid, "/latest/meta-data/iam/info")
    assert status == 200
    info = json.loads(body)
    prof = keycard.client("iam").get_instance_profile(InstanceProfileName=two["role_a"])["InstanceProfile"]
    assert info["Code"] == "Success"
    assert info["InstanceProfileArn"] == prof["Arn"]
    assert info["InstanceProfileId"] == prof["InstanceProfileId"]
    assert info["LastUpdated"].endswith("Z")


def test_credentials_body_shape(keycard, two):
    status, headers, body = keycard.imds(two["a"], f"/latest/meta-data/iam/security-credentials/{two['role_a']}")
    assert status == 200
    assert headers["content-type"] == "text/plain"
    c = json.loads(body)
    assert list(c) == ["Code", "LastUpdated", "Type", "AccessKeyId", "SecretAccessKey", "Token", "Expiration"]
    assert time.strptime(c["Expiration"], "%Y-%m-%dT%H:%M:%SZ")
    assert time.strptime(c["LastUpdated"], "%Y-%m-%dT%H:%M:%SZ")
    # Served again: the same set (rotation is time-driven, not per request).
    assert json.loads(keycard.imds(two["a"], f"/latest/meta-data/iam/security-credentials/{two['role_a']}")[2]) == c


def test_instance_without_role(keycard):
    iid = keycard.run_instance()["InstanceId"]
    status, _, body = keycard.imds(iid, "/latest/meta-data/")
    assert status == 200 and "iam/" not in body.decode().split("\n")
    assert keycard.imds(iid, "/latest/meta-data/iam/info")[0] == 404
    assert keycard.imds(iid, "/latest/meta-data/iam/security-credentials/")[0] == 404


def test_role_ec2_cannot_assume(keycard):
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    role, prof = keycard.instance_profile(trust=trust)
    iid = keycard.run_instance(prof["InstanceProfileName"])["InstanceId"]
    status, _, body = keycard.imds(iid, f"/latest/meta-data/iam/security-credentials/{role['RoleName']}")
    assert status == 200
    c = json.loads(body)
    assert c["Code"] == "AssumeRoleUnauthorizedAccess"
    assert "AccessKeyId" not in c


def test_user_data(keycard):
    script = "#!/bin/bash\necho hello from user data\n"
    iid = keycard.aws(
        "ec2", "run-instances", "--image-id", "ami-0abcdef1234567890", "--instance-type", "t3.micro",
        "--user-data", script,
    )["Instances"][0]["InstanceId"]
    status, _, body = keycard.imds(iid, "/latest/user-data")
    assert (status, body.decode()) == (200, script)
    attr = keycard.client("ec2").describe_instance_attribute(InstanceId=iid, Attribute="userData")
    assert base64.b64decode(attr["UserData"]["Value"]).decode() == script
    other = keycard.run_instance()["InstanceId"]
    assert keycard.imds(other, "/latest/user-data")[0] == 404


def test_tags_only_when_enabled(keycard):
    iid = keycard.run_instance(TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "web-1"}, {"Key": "team", "Value": "blue"}]}])["InstanceId"]
    assert keycard.imds(iid, "/latest/meta-data/tags/instance")[0] == 404
    keycard.client("ec2").modify_instance_metadata_options(InstanceId=iid, InstanceMetadataTags="enabled")
    status, _, body = keycard.imds(iid, "/latest/meta-data/tags/instance")
    assert status == 200 and sorted(body.decode().split("\n")) == ["Name", "team"]
    assert keycard.imds(iid, "/latest/meta-data/tags/instance/team")[2].decode() == "blue"


def test_identity_document_is_signed_by_keycard(keycard, two):
    iid = two["a"]
    status, _, doc = keycard.imds(iid, "/latest/dynamic/instance-identity/document")
    assert status == 200
    d = json.loads(doc)
    assert d["instanceId"] == iid and d["accountId"] == ACCOUNT and d["region"] == "us-east-1"
    assert d["version"] == "2017-09-30" and d["availabilityZone"] == "us-east-1a"
    status, _, sig = keycard.imds(iid, "/latest/dynamic/instance-identity/signature")
    assert status == 200
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    pem = subprocess.run([str(keycard_bin()), "identity-key", "--data-dir", str(keycard.data_dir)], capture_output=True, text=True, check=True).stdout
    work = keycard.workdir
    (work / "pub.pem").write_text(pem)
    (work / "doc.json").write_bytes(doc)
    (work / "doc.sig").write_bytes(base64.b64decode(sig))
    verify = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-in", "doc.json", "-sigfile", "doc.sig"]
    assert subprocess.run(verify, cwd=work, capture_output=True).returncode == 0
    (work / "doc.json").write_bytes(doc.replace(iid.encode(), b"i-0000000000000000f"))
    assert subprocess.run(verify, cwd=work, capture_output=True).returncode != 0


# ---- options -------------------------------------------------------------------------


def test_disabled_endpoint_is_403(keycard):
    iid = keycard.run_instance(MetadataOptions={"HttpEndpoint": "disabled"})["InstanceId"]
    assert keycard.imds(iid, "/latest/meta-data/instance-id")[0] == 403
    assert keycard.imds(iid, "/latest/api/token", method="PUT", ttl=60)[0] == 403
    keycard.client("ec2").modify_instance_metadata_options(InstanceId=iid, HttpEndpoint="enabled")
    assert keycard.imds(iid, "/latest/meta-data/instance-id")[0] == 200


def test_required_tokens_toggle(keycard):
    iid = keycard.run_instance()["InstanceId"]
    assert keycard.imds(iid, "/latest/meta-data/instance-id")[0] == 200
    keycard.client("ec2").modify_instance_metadata_options(InstanceId=iid, HttpTokens="required")
    assert keycard.imds(iid, "/latest/meta-data/instance-id")[0] == 401
    tok = keycard.imds_token(iid)
    assert keycard.imds(iid, "/latest/meta-data/instance-id", token=tok)[0] == 200


def _ttls_seen(port: int, action, timeout=3.0):
    """IP TTLs of the data segments leaving ``port`` on loopback while
    ``action`` runs (an AF_PACKET capture; needs root)."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
    s.bind(("lo", 0))
    s.settimeout(0.2)
    ttls = []
    stop = time.monotonic() + timeout

    def run():
        time.sleep(0.1)
        action()

    t = threading.Thread(target=run)
    t.start()
    while time.monotonic() < stop:
        try:
            frame = s.recv(65535)
        except socket.timeout:
            if not t.is_alive():
                break
            continue
        ip = frame[14:]
        if len(ip) < 24 or ip[0] >> 4 != 4 or ip[9] != 6:
            continue
        ihl = (ip[0] & 0xF) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        sport = struct.unpack("!H", ip[ihl : ihl + 2])[0]
        payload = total - ihl - (ip[ihl + 12] >> 4) * 4
        # Segments that carry the HTTP response (not the handshake).
        if sport == port and payload > 0:
            ttls.append(ip[8])
    t.join()
    s.close()
    return ttls


@pytest.mark.skipif(os.geteuid() != 0, reason="capturing packets needs root")
def test_hop_limit_sets_the_ip_ttl_of_responses(keycard):
    iid = keycard.run_instance(MetadataOptions={"HttpPutResponseHopLimit": 3})["InstanceId"]
    port = int(keycard.instance_access(iid)["imdsEndpoint"].rsplit(":", 1)[1].strip("/"))
    ttls = _ttls_seen(port, lambda: keycard.imds_token(iid))
    assert ttls and set(ttls) == {3}, ttls
    keycard.client("ec2").modify_instance_metadata_options(InstanceId=iid, HttpPutResponseHopLimit=1)
    ttls = _ttls_seen(port, lambda: keycard.imds_token(iid))
    assert ttls and set(ttls) == {1}, ttls


# ---- lifecycle ----------------------------------------------------------------------------


def test_stop_ends_credentials_and_imds(keycard):
    role, prof = keycard.instance_profile(policy=READ_BUCKETS)
    iid = keycard.run_instance(prof["InstanceProfileName"])["InstanceId"]
    body = keycard.imds(iid, f"/latest/meta-data/iam/security-credentials/{role['RoleName']}")[2]
    s3 = keycard.client("s3", creds=creds_of(body))
    s3.list_buckets()
    base = keycard.instance_access(iid)["imdsEndpoint"]
    keycard.client("ec2").stop_instances(InstanceIds=[iid])
    expect_error("ExpiredToken", s3.list_buckets)
    # A stopped machine answers nothing.
    time.sleep(0.2)
    with pytest.raises(OSError):
        raw_http("GET", base + "latest/meta-data/instance-id", timeout=2)
    keycard.client("ec2").start_instances(InstanceIds=[iid])
    body2 = keycard.imds(iid, f"/latest/meta-data/iam/security-credentials/{role['RoleName']}")[2]
    assert json.loads(body2)["AccessKeyId"] != json.loads(body)["AccessKeyId"]
    keycard.client("s3", creds=creds_of(body2)).list_buckets()
    # Terminating ends the set issued after the restart too.
    keycard.client("ec2").terminate_instances(InstanceIds=[iid])
    expect_error("ExpiredToken", keycard.client("s3", creds=creds_of(body2)).list_buckets)


def test_replace_association_switches_role_without_stop(keycard):
    role1, prof1 = keycard.instance_profile(policy=READ_BUCKETS)
    role2, prof2 = keycard.instance_profile(policy=READ_BUCKETS)
    iid = keycard.run_instance(prof1["InstanceProfileName"])["InstanceId"]
    assert keycard.exec_aws(iid, "sts", "get-caller-identity")["Arn"].endswith(f"/{role1['RoleName']}/{iid}")
    old = keycard.imds(iid, f"/latest/meta-data/iam/security-credentials/{role1['RoleName']}")[2]
    ec2 = keycard.client("ec2")
    assoc = ec2.describe_iam_instance_profile_associations(Filters=[{"Name": "instance-id", "Values": [iid]}])["IamInstanceProfileAssociations"][0]
    ec2.replace_iam_instance_profile_association(AssociationId=assoc["AssociationId"], IamInstanceProfile={"Name": prof2["InstanceProfileName"]})
    assert keycard.exec_aws(iid, "sts", "get-caller-identity")["Arn"].endswith(f"/{role2['RoleName']}/{iid}")
    expect_error("ExpiredToken", keycard.client("sts", creds=creds_of(old)).get_caller_identity)
    assert ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"] == "running"


def test_disassociate_ends_credentials(keycard):
    role, prof = keycard.instance_profile(policy=READ_BUCKETS)
    iid = keycard.run_instance(prof["InstanceProfileName"])["InstanceId"]
    body = keycard.imds(iid, f"/latest/meta-data/iam/security-credentials/{role['RoleName']}")[2]
    ec2 = keycard.client("ec2")
    assoc = ec2.describe_iam_instance_profile_associations(Filters=[{"Name": "instance-id", "Values": [iid]}])["IamInstanceProfileAssociations"][0]
    out = ec2.disassociate_iam_instance_profile(AssociationId=assoc["AssociationId"])
    assert out["IamInstanceProfileAssociation"]["State"] == "disassociating"
    expect_error("ExpiredToken", keycard.client("s3", creds=creds_of(body)).list_buckets)
    assert keycard.imds(iid, "/latest/meta-data/iam/security-credentials/")[0] == 404
    p = keycard.exec_aws(iid, "s3", "ls", check=False)
    assert p.returncode != 0 and "Unable to locate credentials" in p.stderr


def test_role_delivery_and_instance_condition_keys(keycard):
    """ec2:RoleDelivery tells IMDSv1 deliveries from v2, and
    ec2:SourceInstanceARN / aws:Ec2InstanceSourcePrivateIPv4 are set."""
    name = unique("ec2cond")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*",
             "Condition": {"NumericGreaterThanEquals": {"ec2:RoleDelivery": "2.0"}}},
            {"Effect": "Allow", "Action": "iam:ListUsers", "Resource": "*",
             "Condition": {"StringLike": {"ec2:SourceInstanceARN": "arn:aws:ec2:us-east-1:*:instance/i-*"},
                           "IpAddress": {"aws:Ec2InstanceSourcePrivateIPv4": "172.31.0.0/16"}}},
        ],
    }
    role, prof = keycard.instance_profile(policy=policy, name=name)
    iid = keycard.run_instance(prof["InstanceProfileName"])["InstanceId"]
    v1 = creds_of(keycard.imds(iid, f"/latest/meta-data/iam/security-credentials/{name}")[2])
    tok = keycard.imds_token(iid)
    v2 = creds_of(keycard.imds(iid, f"/latest/meta-data/iam/security-credentials/{name}", token=tok)[2])
    assert v1["AccessKeyId"] != v2["AccessKeyId"]
    expect_error("AccessDenied", keycard.client("s3", creds=v1).list_buckets)
    keycard.client("s3", creds=v2).list_buckets()
    keycard.client("iam", creds=v1).list_users()


def test_credentials_and_tokens_survive_restart(keycard_fresh):
    kc = keycard_fresh
    role, prof = kc.instance_profile(policy=READ_BUCKETS)
    iid = kc.run_instance(prof["InstanceProfileName"], MetadataOptions={"HttpTokens": "required"})["InstanceId"]
    tok = kc.imds_token(iid, ttl=600)
    body = kc.imds(iid, f"/latest/meta-data/iam/security-credentials/{role['RoleName']}", token=tok)[2]
    kc.restart()
    # Same instance, same association, same (stateless) token and credentials.
    assert kc.imds(iid, "/latest/meta-data/instance-id", token=tok)[2].decode() == iid
    kc.client("s3", creds=creds_of(body)).list_buckets()
    d = kc.client("ec2").describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert d["IamInstanceProfile"]["Arn"] == prof["Arn"] and d["MetadataOptions"]["HttpTokens"] == "required"


# ---- rotation ------------------------------------------------------------------------------


def test_rotation_keeps_old_sets_valid_until_their_expiration(make_keycard):
    kc = make_keycard("--instance-credential-lifetime", "20", "--instance-credential-refresh", "12")
    role, prof = kc.instance_profile(policy=READ_BUCKETS)
    iid = kc.run_instance(prof["InstanceProfileName"])["InstanceId"]
    path = f"/latest/meta-data/iam/security-credentials/{role['RoleName']}"
    first = json.loads(kc.imds(iid, path)[2])
    exp = time.mktime(time.strptime(first["Expiration"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert 15 <= exp - time.time() <= 21
    # The cached set is served while it has more than 12 s left ...
    assert json.loads(kc.imds(iid, path)[2])["AccessKeyId"] == first["AccessKeyId"]
    time.sleep(max(0.0, exp - 12 - time.time()) + 1)
    # ... then a new one, while the old one still works.
    second = json.loads(kc.imds(iid, path)[2])
    assert second["AccessKeyId"] != first["AccessKeyId"]
    kc.client("sts", creds=creds_of(json.dumps(first).encode())).get_caller_identity()
    time.sleep(max(0.0, exp - time.time()) + 1.5)
    e = expect_error("ExpiredToken", kc.client("sts", creds=creds_of(json.dumps(first).encode())).get_caller_identity)
    assert "expired" in e.response["Error"]["Message"]
    kc.client("sts", creds=creds_of(json.dumps(second).encode())).get_caller_identity()


# ---- container credentials ---------------------------------------------------------------------


def test_container_endpoint(keycard, two):
    acc = keycard.instance_access(two["a"])
    uri, tok = acc["containerCredentialsFullUri"], acc["containerAuthorizationToken"]
    status, _, body = raw_http("GET", uri, headers={"Authorization": tok})
    assert status == 200
    c = json.loads(body)
    assert set(c) == {"AccessKeyId", "SecretAccessKey", "Token", "Expiration", "AccountId"}
    assert c["AccountId"] == ACCOUNT
    ident = keycard.client("sts", creds={"AccessKeyId": c["AccessKeyId"], "SecretAccessKey": c["SecretAccessKey"], "SessionToken": c["Token"]}).get_caller_identity()
    assert ident["Arn"].endswith(f"/{two['role_a']}/{two['a']}")
    assert raw_http("GET", uri)[0] == 401
    assert raw_http("GET", uri, headers={"Authorization": tok[:-2] + "xx"})[0] == 403
    assert raw_http("GET", uri, headers={"Authorization": "garbage"})[0] == 403


def test_boto3_and_cli_through_container_endpoint(keycard, two):
    out = keycard.exec_aws(two["b"], "sts", "get-caller-identity", via="container")
    assert out["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{two['role_b']}/{two['b']}"
    p = keycard.exec(two["b"], "sh", "-c", "env | grep ^AWS_", via="container")
    assert "AWS_CONTAINER_AUTHORIZATION_TOKEN=" in p.stdout and "AWS_EC2_METADATA_DISABLED=true" in p.stdout


# ---- the audit trail -------------------------------------------------------------------------------


def test_audit_shows_ec2_assuming_the_role_without_secrets(keycard, two):
    body = keycard.imds(two["b"], f"/latest/meta-data/iam/security-credentials/{two['role_b']}")[2]
    secret = json.loads(body)["SecretAccessKey"]
    token = json.loads(body)["Token"]
    ct = keycard.client("cloudtrail")
    deadline = time.time() + 5
    while True:
        ev = ct.lookup_events(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "AssumeRole"}])["Events"]
        mine = [json.loads(e["CloudTrailEvent"]) for e in ev]
        mine = [e for e in mine if e["requestParameters"].get("roleSessionName") == two["b"]]
        if mine or time.time() > deadline:
            break
        time.sleep(0.1)
    assert mine, "no AssumeRole event for the instance"
    e = mine[0]
    assert e["userIdentity"] == {"type": "AWSService", "invokedBy": "ec2.amazonaws.com"}
    assert e["eventSource"] == "sts.amazonaws.com"
    text = json.dumps([json.loads(x["CloudTrailEvent"]) for x in ev])
    assert secret not in text and token not in text
