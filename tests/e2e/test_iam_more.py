"""IAM beyond the core, through boto3 and the real AWS CLI: UpdateGroup,
tags on policies / instance profiles / MFA devices / server certificates,
SSH public keys, signing and server certificates, service-specific
credentials, service-linked roles, and the account-level operations
keycard answers as AWS answers an account outside an organization.
Keys and certificates are generated here with `cryptography`."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from conftest import ACCOUNT, allow, doc, expect_error, unique
from test_iam_governance import new_mfa, two_codes


def rsa_key(bits=2048):
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def cert_for(key, cn="keycard.test", days=30):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )


def pem_cert(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def pem_key(key, fmt=serialization.PrivateFormat.TraditionalOpenSSL):
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()


def openssh(key):
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def md5_fingerprint(openssh_line):
    blob = base64.b64decode(openssh_line.split()[1])
    return ":".join(f"{b:02x}" for b in hashlib.md5(blob).digest())


@pytest.fixture(scope="module")
def iam(keycard):
    return keycard.client("iam")


# ------------------------------------------------------------ UpdateGroup


def test_update_group_renames_and_keeps_members(keycard, iam):
    g, u = unique("grp"), unique("member")
    iam.create_group(GroupName=g)
    iam.create_user(UserName=u)
    iam.add_user_to_group(GroupName=g, UserName=u)
    new = g + "-renamed"
    keycard.aws("iam", "update-group", "--group-name", g, "--new-group-name", new, "--new-path", "/team/")
    out = keycard.aws("iam", "get-group", "--group-name", new)
    assert out["Group"]["Path"] == "/team/"
    assert out["Group"]["Arn"] == f"arn:aws:iam::{ACCOUNT}:group/team/{new}"
    assert [x["UserName"] for x in out["Users"]] == [u]
    assert [x["GroupName"] for x in iam.list_groups_for_user(UserName=u)["Groups"]] == [new]
    expect_error("NoSuchEntity", iam.get_group, GroupName=g)
    other = unique("grp")
    iam.create_group(GroupName=other)
    expect_error("EntityAlreadyExists", iam.update_group, GroupName=other, NewGroupName=new)
    expect_error("ValidationError", iam.update_group, GroupName=other, NewPath="no-slash")
    expect_error("NoSuchEntity", iam.update_group, GroupName=unique("nope"), NewPath="/x/")


# ------------------------------------------------------------------ tags


def test_tags_on_policies_profiles_and_mfa_devices(keycard, iam):
    pol = iam.create_policy(PolicyName=unique("pol"), PolicyDocument=doc(allow("s3:GetObject")),
                            Tags=[{"Key": "team", "Value": "blue"}])["Policy"]["Arn"]
    prof = unique("prof")
    iam.create_instance_profile(InstanceProfileName=prof)
    serial, _ = new_mfa(iam)
    targets = [
        (iam.tag_policy, iam.untag_policy, iam.list_policy_tags, {"PolicyArn": pol}),
        (iam.tag_instance_profile, iam.untag_instance_profile, iam.list_instance_profile_tags,
         {"InstanceProfileName": prof}),
        (iam.tag_mfa_device, iam.untag_mfa_device, iam.list_mfa_device_tags, {"SerialNumber": serial}),
    ]
    for tag, untag, list_tags, ident in targets:
        tag(**ident, Tags=[{"Key": "env", "Value": "dev"}, {"Key": "team", "Value": "red"}])
        got = {t["Key"]: t["Value"] for t in list_tags(**ident)["Tags"]}
        assert got == {"env": "dev", "team": "red"}, ident
        page = list_tags(**ident, MaxItems=1)
        assert len(page["Tags"]) == 1 and page["IsTruncated"]
        untag(**ident, TagKeys=["env"])
        assert [t["Key"] for t in list_tags(**ident)["Tags"]] == ["team"]
        expect_error("InvalidInput", tag, **ident, Tags=[{"Key": "aws:x", "Value": "v"}])
    assert iam.get_policy(PolicyArn=pol)["Policy"]["Tags"] == [{"Key": "team", "Value": "red"}]
    expect_error("NoSuchEntity", iam.list_policy_tags, PolicyArn=f"arn:aws:iam::{ACCOUNT}:policy/missing")
    expect_error("NoSuchEntity", iam.tag_instance_profile, InstanceProfileName=unique("nope"),
                 Tags=[{"Key": "a", "Value": "b"}])
    expect_error("NoSuchEntity", iam.list_mfa_device_tags, SerialNumber=f"arn:aws:iam::{ACCOUNT}:mfa/nope-nope")
    expect_error("LimitExceeded", iam.tag_policy, PolicyArn=pol,
                 Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(50)])
    out = keycard.aws("iam", "list-instance-profile-tags", "--instance-profile-name", prof)
    assert out["Tags"] == [{"Key": "team", "Value": "red"}]


def test_tag_conditions_decide(keycard, iam):
    prof = unique("prof")
    iam.create_instance_profile(InstanceProfileName=prof, Tags=[{"Key": "team", "Value": "blue"}])
    pol = iam.create_policy(PolicyName=unique("pol"), PolicyDocument=doc(allow("s3:GetObject")))["Policy"]["Arn"]
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iam:TagInstanceProfile", "Resource": "*",
         "Condition": {"StringEquals": {"aws:RequestTag/env": "dev"}}},
        {"Effect": "Allow", "Action": "iam:ListInstanceProfileTags", "Resource": "*",
         "Condition": {"StringEquals": {"iam:ResourceTag/team": "blue"}}},
        {"Effect": "Allow", "Action": "iam:UntagPolicy", "Resource": "*",
         "Condition": {"ForAllValues:StringEquals": {"aws:TagKeys": ["scratch"]}}},
    ]}
    _, creds = keycard.new_user(policy=policy)
    me = keycard.client("iam", creds=creds)
    me.tag_instance_profile(InstanceProfileName=prof, Tags=[{"Key": "env", "Value": "dev"}])
    expect_error("AccessDenied", me.tag_instance_profile, InstanceProfileName=prof,
                 Tags=[{"Key": "env", "Value": "prod"}])
    assert len(me.list_instance_profile_tags(InstanceProfileName=prof)["Tags"]) == 2
    iam.tag_instance_profile(InstanceProfileName=prof, Tags=[{"Key": "team", "Value": "red"}])
    expect_error("AccessDenied", me.list_instance_profile_tags, InstanceProfileName=prof)
    me.untag_policy(PolicyArn=pol, TagKeys=["scratch"])
    expect_error("AccessDenied", me.untag_policy, PolicyArn=pol, TagKeys=["owner"])


# -------------------------------------------------------------- GetMFADevice


def test_get_mfa_device(keycard, iam):
    u = unique("mfauser")
    iam.create_user(UserName=u)
    serial, seed = new_mfa(iam)
    c1, c2 = two_codes(seed)
    iam.enable_mfa_device(UserName=u, SerialNumber=serial, AuthenticationCode1=c1, AuthenticationCode2=c2)
    out = iam.get_mfa_device(SerialNumber=serial, UserName=u)
    assert out["UserName"] == u and out["SerialNumber"] == serial and "EnableDate" in out
    other = unique("other")
    iam.create_user(UserName=other)
    expect_error("NoSuchEntity", iam.get_mfa_device, SerialNumber=serial, UserName=other)
    expect_error("NoSuchEntity", iam.get_mfa_device, SerialNumber=f"arn:aws:iam::{ACCOUNT}:mfa/absent-x")


# ------------------------------------------------------------ SSH public keys


def test_ssh_public_keys(keycard, iam):
    u = unique("sshuser")
    iam.create_user(UserName=u)
    key = rsa_key()
    line = openssh(key)
    up = keycard.aws("iam", "upload-ssh-public-key", "--user-name", u, "--ssh-public-key-body", line)["SSHPublicKey"]
    kid = up["SSHPublicKeyId"]
    assert kid.startswith("APKA") and len(kid) == 20
    assert up["Fingerprint"] == md5_fingerprint(line)
    assert up["Status"] == "Active"
    got = iam.get_ssh_public_key(UserName=u, SSHPublicKeyId=kid, Encoding="SSH")["SSHPublicKey"]
    assert got["SSHPublicKeyBody"].split()[:2] == line.split()[:2]
    pem = iam.get_ssh_public_key(UserName=u, SSHPublicKeyId=kid, Encoding="PEM")["SSHPublicKey"]["SSHPublicKeyBody"]
    loaded = serialization.load_pem_public_key(pem.encode())
    assert loaded.public_numbers() == key.public_key().public_numbers()
    ed = ed25519.Ed25519PrivateKey.generate()
    ed_line = openssh(ed)
    ed_up = iam.upload_ssh_public_key(UserName=u, SSHPublicKeyBody=ed_line)["SSHPublicKey"]
    assert ed_up["Fingerprint"] == md5_fingerprint(ed_line)
    listed = iam.list_ssh_public_keys(UserName=u)["SSHPublicKeys"]
    assert {k["SSHPublicKeyId"] for k in listed} == {kid, ed_up["SSHPublicKeyId"]}
    assert all("SSHPublicKeyBody" not in k for k in listed)
    iam.update_ssh_public_key(UserName=u, SSHPublicKeyId=kid, Status="Inactive")
    assert iam.get_ssh_public_key(UserName=u, SSHPublicKeyId=kid, Encoding="SSH")["SSHPublicKey"]["Status"] == "Inactive"
    expect_error("DuplicateSSHPublicKey", iam.upload_ssh_public_key, UserName=u, SSHPublicKeyBody=line)
    expect_error("UnrecognizedPublicKeyEncoding", iam.upload_ssh_public_key, UserName=u,
                 SSHPublicKeyBody="not a key")
    expect_error("InvalidPublicKey", iam.upload_ssh_public_key, UserName=u,
                 SSHPublicKeyBody="ssh-rsa " + base64.b64encode(b"garbage").decode())
    expect_error("InvalidPublicKey", iam.upload_ssh_public_key, UserName=u, SSHPublicKeyBody=openssh(rsa_key(1024)))
    expect_error("ValidationError", iam.get_ssh_public_key, UserName=u, SSHPublicKeyId="APKA-not-a-valid-id!!", Encoding="SSH")
    expect_error("NoSuchEntity", iam.upload_ssh_public_key, UserName=unique("nobody"), SSHPublicKeyBody=line)
    expect_error("DeleteConflict", iam.delete_user, UserName=u)
    for k in (kid, ed_up["SSHPublicKeyId"]):
        iam.delete_ssh_public_key(UserName=u, SSHPublicKeyId=k)
    expect_error("NoSuchEntity", iam.get_ssh_public_key, UserName=u, SSHPublicKeyId=kid, Encoding="SSH")
    iam.delete_user(UserName=u)


# ------------------------------------------------------- signing certificates


def test_signing_certificates(keycard, iam):
    u, v = unique("signer"), unique("signer")
    iam.create_user(UserName=u)
    iam.create_user(UserName=v)
    body = pem_cert(cert_for(rsa_key()))
    c = iam.upload_signing_certificate(UserName=u, CertificateBody=body)["Certificate"]
    assert len(c["CertificateId"]) >= 24 and c["Status"] == "Active" and c["UserName"] == u
    listed = keycard.aws("iam", "list-signing-certificates", "--user-name", u)["Certificates"]
    assert [x["CertificateId"] for x in listed] == [c["CertificateId"]]
    iam.generate_credential_report()
    report = iam.get_credential_report()["Content"].decode().splitlines()
    header = report[0].split(",")
    row = dict(zip(header, next(r for r in report if r.startswith(u + ",")).split(",")))
    assert row["cert_1_active"] == "true" and row["cert_2_active"] == "false"
    iam.update_signing_certificate(UserName=u, CertificateId=c["CertificateId"], Status="Inactive")
    assert iam.list_signing_certificates(UserName=u)["Certificates"][0]["Status"] == "Inactive"
    expect_error("DuplicateCertificate", iam.upload_signing_certificate, UserName=v, CertificateBody=body)
    expect_error("MalformedCertificate", iam.upload_signing_certificate, UserName=u, CertificateBody="garbage")
    iam.upload_signing_certificate(UserName=u, CertificateBody=pem_cert(cert_for(rsa_key())))
    expect_error("LimitExceeded", iam.upload_signing_certificate, UserName=u,
                 CertificateBody=pem_cert(cert_for(rsa_key())))
    expect_error("NoSuchEntity", iam.delete_signing_certificate, UserName=u, CertificateId="X" * 28)
    iam.delete_signing_certificate(UserName=u, CertificateId=c["CertificateId"])
    assert len(iam.list_signing_certificates(UserName=u)["Certificates"]) == 1


# -------------------------------------------------------- server certificates


def test_server_certificates(keycard, iam, tmp_path):
    key = rsa_key()
    cert = cert_for(key, days=40)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    chain = pem_cert(cert_for(ca_key, cn="ca.test"))
    name = unique("web")
    (tmp_path / "cert.pem").write_text(pem_cert(cert))
    (tmp_path / "key.pem").write_text(pem_key(key))
    (tmp_path / "chain.pem").write_text(chain)
    up = keycard.aws(
        "iam", "upload-server-certificate", "--server-certificate-name", name, "--path", "/cloudfront/",
        "--certificate-body", f"file://{tmp_path / 'cert.pem'}", "--private-key", f"file://{tmp_path / 'key.pem'}",
        "--certificate-chain", f"file://{tmp_path / 'chain.pem'}", "--tags", "Key=env,Value=prod",
    )
    meta = up["ServerCertificateMetadata"]
    assert meta["ServerCertificateId"].startswith("ASCA") and len(meta["ServerCertificateId"]) == 21
    assert meta["Arn"] == f"arn:aws:iam::{ACCOUNT}:server-certificate/cloudfront/{name}"
    exp = datetime.datetime.fromisoformat(meta["Expiration"].replace("Z", "+00:00"))
    assert abs((exp - cert.not_valid_after_utc).total_seconds()) < 2
    assert up["Tags"] == [{"Key": "env", "Value": "prod"}]
    got = iam.get_server_certificate(ServerCertificateName=name)["ServerCertificate"]
    assert got["CertificateBody"].strip() == pem_cert(cert).strip()
    assert got["CertificateChain"].strip() == chain.strip()
    assert "PrivateKey" not in json.dumps(got, default=str)
    assert [m["ServerCertificateName"] for m in
            iam.list_server_certificates(PathPrefix="/cloudfront/")["ServerCertificateMetadataList"]] == [name]
    assert iam.list_server_certificates(PathPrefix="/elsewhere/")["ServerCertificateMetadataList"] == []
    summary = iam.get_account_summary()["SummaryMap"]
    assert summary["ServerCertificates"] >= 1
    # Errors: a key of another certificate, a malformed body, a taken name.
    other = rsa_key()
    expect_error("KeyPairMismatch", iam.upload_server_certificate, ServerCertificateName=unique("bad"),
                 CertificateBody=pem_cert(cert), PrivateKey=pem_key(other))
    expect_error("MalformedCertificate", iam.upload_server_certificate, ServerCertificateName=unique("bad"),
                 CertificateBody="-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
                 PrivateKey=pem_key(key))
    expect_error("EntityAlreadyExists", iam.upload_server_certificate, ServerCertificateName=name,
                 CertificateBody=pem_cert(cert), PrivateKey=pem_key(key))
    # PKCS#8 RSA and SEC1 EC keys are matched too.
    iam.upload_server_certificate(ServerCertificateName=unique("p8"), CertificateBody=pem_cert(cert),
                                  PrivateKey=pem_key(key, serialization.PrivateFormat.PKCS8))
    eck = ec.generate_private_key(ec.SECP256R1())
    iam.upload_server_certificate(ServerCertificateName=unique("ec"), CertificateBody=pem_cert(cert_for(eck)),
                                  PrivateKey=pem_key(eck))
    expect_error("KeyPairMismatch", iam.upload_server_certificate, ServerCertificateName=unique("ec"),
                 CertificateBody=pem_cert(cert_for(eck)), PrivateKey=pem_key(ca_key))
    # Tags, rename, delete.
    iam.tag_server_certificate(ServerCertificateName=name, Tags=[{"Key": "team", "Value": "web"}])
    iam.untag_server_certificate(ServerCertificateName=name, TagKeys=["env"])
    assert iam.list_server_certificate_tags(ServerCertificateName=name)["Tags"] == [{"Key": "team", "Value": "web"}]
    new = name + "-2"
    iam.update_server_certificate(ServerCertificateName=name, NewServerCertificateName=new, NewPath="/")
    assert iam.get_server_certificate(ServerCertificateName=new)["ServerCertificate"]["ServerCertificateMetadata"][
        "Path"] == "/"
    expect_error("NoSuchEntity", iam.get_server_certificate, ServerCertificateName=name)
    iam.delete_server_certificate(ServerCertificateName=new)
    expect_error("NoSuchEntity", iam.delete_server_certificate, ServerCertificateName=new)
    # The private key is in no audit record and not in clear on disk.
    secret_line = pem_key(key).splitlines()[5]
    events = keycard.client("cloudtrail").lookup_events(
        LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "UploadServerCertificate"}])["Events"]
    assert events and all(secret_line not in e["CloudTrailEvent"] for e in events)
    assert any("HIDDEN_DUE_TO_SECURITY_REASONS" in e["CloudTrailEvent"] for e in events)
    for f in keycard.data_dir.rglob("*"):
        if f.is_file():
            assert secret_line.encode() not in f.read_bytes(), f


# ------------------------------------------------ service-specific credentials


def test_service_specific_credentials(keycard, iam):
    u = unique("git")
    iam.create_user(UserName=u)
    made = keycard.aws("iam", "create-service-specific-credential", "--user-name", u,
                       "--service-name", "codecommit.amazonaws.com")["ServiceSpecificCredential"]
    cid, password = made["ServiceSpecificCredentialId"], made["ServicePassword"]
    assert cid.startswith("ACCA") and made["ServiceUserName"] == f"{u}-at-{ACCOUNT}"
    assert len(password) == 44 and made["Status"] == "Active"
    listed = iam.list_service_specific_credentials(UserName=u)["ServiceSpecificCredentials"]
    assert [c["ServiceSpecificCredentialId"] for c in listed] == [cid]
    assert "ServicePassword" not in listed[0]
    reset = iam.reset_service_specific_credential(UserName=u, ServiceSpecificCredentialId=cid)
    assert reset["ServiceSpecificCredential"]["ServicePassword"] not in ("", password)
    iam.update_service_specific_credential(UserName=u, ServiceSpecificCredentialId=cid, Status="Inactive")
    assert iam.list_service_specific_credentials(UserName=u)["ServiceSpecificCredentials"][0]["Status"] == "Inactive"
    iam.create_service_specific_credential(UserName=u, ServiceName="codecommit.amazonaws.com")
    expect_error("LimitExceeded", iam.create_service_specific_credential, UserName=u,
                 ServiceName="codecommit.amazonaws.com")
    expect_error("NotSupportedService", iam.create_service_specific_credential, UserName=u,
                 ServiceName="s3.amazonaws.com")
    bedrock = iam.create_service_specific_credential(UserName=u, ServiceName="bedrock.amazonaws.com",
                                                     CredentialAgeDays=30)["ServiceSpecificCredential"]
    assert bedrock["ServiceCredentialSecret"].startswith("ABSK") and "ExpirationDate" in bedrock
    everyone = iam.list_service_specific_credentials(AllUsers=True)["ServiceSpecificCredentials"]
    assert sum(1 for c in everyone if c["UserName"] == u) == 3
    only = iam.list_service_specific_credentials(UserName=u, ServiceName="bedrock.amazonaws.com")
    assert len(only["ServiceSpecificCredentials"]) == 1
    expect_error("NoSuchEntity", iam.delete_service_specific_credential, UserName=u,
                 ServiceSpecificCredentialId="ACCA" + "Z" * 17)
    iam.delete_service_specific_credential(UserName=u, ServiceSpecificCredentialId=cid)
    events = keycard.client("cloudtrail").lookup_events(
        LookupAttributes=[{"AttributeKey": "Username", "AttributeValue": "root"}], MaxResults=50)["Events"]
    for e in events:
        assert password not in e["CloudTrailEvent"]


# ------------------------------------------------------ service-linked roles


def test_service_linked_roles(keycard, iam):
    role = keycard.aws("iam", "create-service-linked-role", "--aws-service-name",
                       "autoscaling.amazonaws.com")["Role"]
    assert role["RoleName"] == "AWSServiceRoleForAutoScaling"
    assert role["Path"] == "/aws-service-role/autoscaling.amazonaws.com/"
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Principal"] == {"Service": ["autoscaling.amazonaws.com"]}
    assert trust["Statement"][0]["Action"] == ["sts:AssumeRole"]
    expect_error("InvalidInput", iam.create_service_linked_role, AWSServiceName="autoscaling.amazonaws.com")
    custom = iam.create_service_linked_role(AWSServiceName="autoscaling.amazonaws.com", CustomSuffix="blue",
                                            Description="second")["Role"]
    assert custom["RoleName"] == "AWSServiceRoleForAutoScaling_blue" and custom["Description"] == "second"
    e = expect_error("InvalidInput", iam.create_service_linked_role,
                     AWSServiceName="elasticloadbalancing.amazonaws.com", CustomSuffix="x")
    assert "Custom suffix is not allowed" in e.response["Error"]["Message"]
    expect_error("InvalidInput", iam.create_service_linked_role, AWSServiceName="example.com")
    err = expect_error("UnmodifiableEntity", iam.delete_role, RoleName="AWSServiceRoleForAutoScaling")
    assert "protected role" in err.response["Error"]["Message"]
    expect_error("UnmodifiableEntity", iam.update_assume_role_policy, RoleName="AWSServiceRoleForAutoScaling",
                 PolicyDocument=json.dumps(trust))
    task = iam.delete_service_linked_role(RoleName="AWSServiceRoleForAutoScaling")["DeletionTaskId"]
    assert task.startswith("task/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling/")
    status = keycard.aws("iam", "get-service-linked-role-deletion-status", "--deletion-task-id", task)
    assert status["Status"] == "SUCCEEDED"
    expect_error("NoSuchEntity", iam.get_role, RoleName="AWSServiceRoleForAutoScaling")
    expect_error("NoSuchEntity", iam.get_service_linked_role_deletion_status,
                 DeletionTaskId=task.rsplit("/", 1)[0] + "/00000000-0000-0000-0000-000000000000")
    expect_error("InvalidInput", iam.get_service_linked_role_deletion_status, DeletionTaskId="nonsense")
    plain = unique("plain")
    iam.create_role(RoleName=plain, AssumeRolePolicyDocument=json.dumps(trust))
    expect_error("InvalidInput", iam.delete_service_linked_role, RoleName=plain)
    iam.delete_role(RoleName=plain)


# --------------------------------------------------- account-level operations


def test_organization_operations_answer_as_outside_an_organization(keycard, iam):
    for op in ("enable_organizations_root_credentials_management", "disable_organizations_root_credentials_management",
               "enable_organizations_root_sessions", "disable_organizations_root_sessions"):
        expect_error("OrganizationNotFoundException", getattr(iam, op))
    keycard.aws_error("iam", "enable-organizations-root-sessions", code="OrganizationNotFoundException")
    job = iam.generate_organizations_access_report(EntityPath="o-abcdefghij/r-abcd")["JobId"]
    rep = iam.get_organizations_access_report(JobId=job)
    assert rep["JobStatus"] == "FAILED" and rep["ErrorDetails"]["Code"] == "OrganizationNotFoundException"
    expect_error("ValidationError", iam.generate_organizations_access_report, EntityPath="o-x/r-y-not-valid-path")
    expect_error("NoSuchEntity", iam.get_organizations_access_report, JobId="12345678-1234-1234-1234-123456789012")
    assert iam.list_delegation_requests()["DelegationRequests"] == []
    for op in ("get_delegation_request", "accept_delegation_request", "reject_delegation_request",
               "update_delegation_request", "associate_delegation_request", "send_delegation_token"):
        expect_error("NoSuchEntity", getattr(iam, op), DelegationRequestId="deleg-0123456789ab")
    expect_error("ValidationError", iam.get_delegation_request, DelegationRequestId="not a valid id at all")
    expect_error("NoSuchEntity", iam.get_human_readable_summary,
                 EntityArn=f"arn:aws:iam::{ACCOUNT}:delegation-request/deleg-0123456789ab")
    expect_error("InvalidInput", iam.get_human_readable_summary, EntityArn=f"arn:aws:iam::{ACCOUNT}:user/someone")


def test_security_token_service_preferences(keycard, iam):
    assert iam.get_account_summary()["SummaryMap"]["GlobalEndpointTokenVersion"] == 1
    keycard.aws("iam", "set-security-token-service-preferences", "--global-endpoint-token-version", "v2Token")
    assert iam.get_account_summary()["SummaryMap"]["GlobalEndpointTokenVersion"] == 2
    iam.set_security_token_service_preferences(GlobalEndpointTokenVersion="v1Token")
    assert iam.get_account_summary()["SummaryMap"]["GlobalEndpointTokenVersion"] == 1
    expect_error("ValidationError", iam.set_security_token_service_preferences, GlobalEndpointTokenVersion="v3Token")


def test_policies_granting_service_access_and_last_accessed_entities(keycard, iam):
    g = unique("readers")
    iam.create_group(GroupName=g)
    iam.put_group_policy(GroupName=g, PolicyName="s3read", PolicyDocument=doc(allow("s3:GetObject")))
    pol = iam.create_policy(PolicyName=unique("ec2"), PolicyDocument=doc(allow("ec2:Describe*")))["Policy"]["Arn"]
    user, creds = keycard.new_user(policy=allow("s3:ListAllMyBuckets"))
    iam.add_user_to_group(GroupName=g, UserName=user["UserName"])
    iam.attach_user_policy(UserName=user["UserName"], PolicyArn=pol)
    out = iam.list_policies_granting_service_access(Arn=user["Arn"], ServiceNamespaces=["s3", "ec2", "sts"])
    by_ns = {e["ServiceNamespace"]: e["Policies"] for e in out["PoliciesGrantingServiceAccess"]}
    s3 = sorted((p["PolicyName"], p["PolicyType"], p.get("EntityType")) for p in by_ns["s3"])
    assert s3 == [("inline", "INLINE", "USER"), ("s3read", "INLINE", "GROUP")]
    assert [(p["PolicyType"], p["PolicyArn"]) for p in by_ns["ec2"]] == [("MANAGED", pol)]
    assert by_ns["sts"] == []
    expect_error("NoSuchEntity", iam.list_policies_granting_service_access,
                 Arn=f"arn:aws:iam::{ACCOUNT}:user/absent", ServiceNamespaces=["s3"])
    # The user calls S3; the group's job lists the user with that access.
    keycard.client("s3", creds=creds).list_buckets()
    group_arn = iam.get_group(GroupName=g)["Group"]["Arn"]
    job = iam.generate_service_last_accessed_details(Arn=group_arn)["JobId"]
    deadline = time.time() + 10
    while True:
        det = iam.get_service_last_accessed_details_with_entities(JobId=job, ServiceNamespace="s3")
        if det["EntityDetailsList"] and "LastAuthenticated" in det["EntityDetailsList"][0] or time.time() > deadline:
            break
        job = iam.generate_service_last_accessed_details(Arn=group_arn)["JobId"]
    assert det["JobStatus"] == "COMPLETED"
    [ent] = det["EntityDetailsList"]
    assert ent["EntityInfo"]["Arn"] == user["Arn"] and ent["EntityInfo"]["Type"] == "USER"
    assert "LastAuthenticated" in ent
    expect_error("NoSuchEntity", iam.get_service_last_accessed_details_with_entities,
                 JobId="12345678-1234-1234-1234-123456789012", ServiceNamespace="s3")
