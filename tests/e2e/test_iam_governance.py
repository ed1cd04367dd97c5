"""IAM records that governance tools read (Prowler, Config-style checks):
login profiles and the password policy, virtual MFA devices, the account
alias, GetAccountSummary and the credential report, through boto3 and the
AWS CLI. TOTP codes are computed here from the seed (RFC 6238, HMAC-SHA-1)."""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import json
import struct
import time
from datetime import datetime, timezone

from conftest import ACCOUNT, allow, expect_error, trust_for, unique

GOOD = "Good-Pass-123"


def totp(seed_b32: bytes | str, step: int) -> str:
    key = base64.b32decode(seed_b32 + b"=" * (-len(seed_b32) % 8) if isinstance(seed_b32, bytes) else seed_b32)
    h = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    off = h[-1] & 0x0F
    return f"{(struct.unpack('>I', h[off:off + 4])[0] & 0x7FFFFFFF) % 1_000_000:06d}"


def two_codes(seed, later=False):
    """Two consecutive codes ending now (or starting now, for a resync)."""
    s = int(time.time()) // 30
    if later:
        return totp(seed, s), totp(seed, s + 1)
    return totp(seed, s - 1), totp(seed, s)


def new_mfa(iam, name=None):
    d = iam.create_virtual_mfa_device(VirtualMFADeviceName=name or unique("mfa"))["VirtualMFADevice"]
    return d["SerialNumber"], d["Base32StringSeed"]


def enable_mfa(iam, user):
    serial, seed = new_mfa(iam)
    c1, c2 = two_codes(seed)
    iam.enable_mfa_device(UserName=user, SerialNumber=serial, AuthenticationCode1=c1, AuthenticationCode2=c2)
    return serial, seed


# ------------------------------------------------------------- login profiles


def test_login_profile_lifecycle_and_errors(keycard):
    iam = keycard.client("iam")
    name = unique("console")
    iam.create_user(UserName=name)
    expect_error("NoSuchEntity", iam.get_login_profile, UserName=name)
    expect_error("NoSuchEntity", iam.create_login_profile, UserName=unique("ghost"), Password=GOOD)
    # Without an account policy AWS's default applies: 8+ chars, 3 of 4 kinds.
    expect_error("PasswordPolicyViolation", iam.create_login_profile, UserName=name, Password="short")
    expect_error("PasswordPolicyViolation", iam.create_login_profile, UserName=name, Password="alllowercase")
    lp = iam.create_login_profile(UserName=name, Password=GOOD, PasswordResetRequired=True)["LoginProfile"]
    assert lp["UserName"] == name and lp["PasswordResetRequired"] is True
    expect_error("EntityAlreadyExists", iam.create_login_profile, UserName=name, Password=GOOD)
    got = iam.get_login_profile(UserName=name)["LoginProfile"]
    assert got["CreateDate"] == lp["CreateDate"] and got["PasswordResetRequired"] is True
    iam.update_login_profile(UserName=name, PasswordResetRequired=False)
    assert iam.get_login_profile(UserName=name)["LoginProfile"]["PasswordResetRequired"] is False
    expect_error("PasswordPolicyViolation", iam.update_login_profile, UserName=name, Password="weak")
    iam.update_login_profile(UserName=name, Password="Another-Pass-456")
    # A user with a password cannot be deleted.
    expect_error("DeleteConflict", iam.delete_user, UserName=name)
    iam.delete_login_profile(UserName=name)
    expect_error("NoSuchEntity", iam.delete_login_profile, UserName=name)
    expect_error("NoSuchEntity", iam.update_login_profile, UserName=name, PasswordResetRequired=True)
    iam.delete_user(UserName=name)


def test_passwords_never_reach_the_audit_trail(keycard):
    iam = keycard.client("iam")
    name = unique("secretive")
    iam.create_user(UserName=name)
    secret = "Xyzzy-Plugh-" + unique("p")
    iam.create_login_profile(UserName=name, Password=secret)
    ct = keycard.client("cloudtrail")
    deadline = time.monotonic() + 10
    found = []
    while time.monotonic() < deadline and not found:
        evs = ct.lookup_events(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "CreateLoginProfile"}])
        found = [e for e in evs["Events"] if name in e["CloudTrailEvent"]]
    assert found, "CreateLoginProfile was recorded"
    assert secret not in found[0]["CloudTrailEvent"]
    assert secret not in keycard.log_tail(400)


def test_password_policy_lifecycle_and_enforcement(keycard_fresh):
    kc = keycard_fresh
    iam = kc.client("iam")
    expect_error("NoSuchEntity", iam.get_account_password_policy)
    expect_error("NoSuchEntity", iam.delete_account_password_policy)
    iam.update_account_password_policy(
        MinimumPasswordLength=12, RequireSymbols=True, RequireNumbers=True, RequireUppercaseCharacters=True,
        RequireLowercaseCharacters=True, AllowUsersToChangePassword=True, MaxPasswordAge=90,
        PasswordReusePrevention=3,
    )
    pp = iam.get_account_password_policy()["PasswordPolicy"]
    assert pp == {
        "MinimumPasswordLength": 12, "RequireSymbols": True, "RequireNumbers": True,
        "RequireUppercaseCharacters": True, "RequireLowercaseCharacters": True,
        "AllowUsersToChangePassword": True, "ExpirePasswords": True, "MaxPasswordAge": 90,
        "PasswordReusePrevention": 3,
    }
    name = unique("pp")
    iam.create_user(UserName=name)
    for weak in ("Short-1a", "nouppercase-123!", "NOLOWERCASE-123!", "NoNumbers-Here!", "NoSymbols12345a"):
        expect_error("PasswordPolicyViolation", iam.create_login_profile, UserName=name, Password=weak)
    iam.create_login_profile(UserName=name, Password="Strong-Pass-123")
    expect_error("PasswordPolicyViolation", iam.update_login_profile, UserName=name, Password="Strong-Pass")

    # Survives a restart.
    assert kc.restart() == 0
    iam = kc.client("iam")
    assert iam.get_account_password_policy()["PasswordPolicy"]["MinimumPasswordLength"] == 12
    assert iam.get_login_profile(UserName=name)["LoginProfile"]["UserName"] == name

    # Omitted parameters return to AWS's defaults.
    iam.update_account_password_policy(MinimumPasswordLength=6)
    pp = iam.get_account_password_policy()["PasswordPolicy"]
    assert pp["RequireSymbols"] is False and pp["ExpirePasswords"] is False and "MaxPasswordAge" not in pp
    iam.delete_account_password_policy()
    expect_error("NoSuchEntity", iam.get_account_password_policy)


def test_change_password_by_the_user_itself(keycard_fresh):
    kc = keycard_fresh
    iam = kc.client("iam")
    user, creds = kc.new_user(name=unique("changer"))
    name = user["UserName"]
    iam.create_login_profile(UserName=name, Password="First-Pass-111")
    mine = kc.client("iam", creds=creds)
    # No permission and the policy does not let users change: refused.
    expect_error("AccessDenied", mine.change_password, OldPassword="First-Pass-111", NewPassword="Second-Pass-222")
    iam.update_account_password_policy(MinimumPasswordLength=10, AllowUsersToChangePassword=True,
                                       PasswordReusePrevention=2)
    expect_error("AccessDenied", mine.change_password, OldPassword="Wrong-Pass-000", NewPassword="Second-Pass-222")
    expect_error("PasswordPolicyViolation", mine.change_password, OldPassword="First-Pass-111", NewPassword="short")
    expect_error("PasswordPolicyViolation", mine.change_password, OldPassword="First-Pass-111",
                 NewPassword="First-Pass-111")
    mine.change_password(OldPassword="First-Pass-111", NewPassword="Second-Pass-222")
    expect_error("AccessDenied", mine.change_password, OldPassword="First-Pass-111", NewPassword="Third-Pass-333")
    # A required reset is cleared by changing the password.
    iam.update_login_profile(UserName=name, PasswordResetRequired=True)
    mine.change_password(OldPassword="Second-Pass-222", NewPassword="Third-Pass-333")
    assert iam.get_login_profile(UserName=name)["LoginProfile"]["PasswordResetRequired"] is False
    # The root user has no password to change this way.
    expect_error("InvalidUserType", iam.change_password, OldPassword="x", NewPassword="Fourth-Pass-444")
    # The decision on the caller's own user is in the event, overridden by the account policy.
    ct = kc.client("cloudtrail")
    evs = ct.lookup_events(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "ChangePassword"}])
    bodies = [e["CloudTrailEvent"] for e in evs["Events"]]
    assert any(user["Arn"] in b and "AllowUsersToChangePassword" in b for b in bodies)
    assert not any("Third-Pass-333" in b or "Second-Pass-222" in b for b in bodies)


# ------------------------------------------------------------------------ MFA


def test_virtual_mfa_lifecycle(keycard):
    iam = keycard.client("iam")
    name = unique("mfa-user")
    iam.create_user(UserName=name)
    dev_name = unique("token")
    out = iam.create_virtual_mfa_device(VirtualMFADeviceName=dev_name, Tags=[{"Key": "team", "Value": "sec"}])
    dev = out["VirtualMFADevice"]
    serial, seed = dev["SerialNumber"], dev["Base32StringSeed"]
    assert serial == f"arn:aws:iam::{ACCOUNT}:mfa/{dev_name}"
    assert len(base64.b32decode(seed)) >= 10
    assert dev["QRCodePNG"].startswith(b"\x89PNG\r\n\x1a\n")
    expect_error("EntityAlreadyExists", iam.create_virtual_mfa_device, VirtualMFADeviceName=dev_name)

    unassigned = iam.list_virtual_mfa_devices(AssignmentStatus="Unassigned")["VirtualMFADevices"]
    assert serial in [d["SerialNumber"] for d in unassigned]
    assert "Base32StringSeed" not in unassigned[0]

    c1, c2 = two_codes(seed)
    expect_error("InvalidAuthenticationCode", iam.enable_mfa_device, UserName=name, SerialNumber=serial,
                 AuthenticationCode1=c2, AuthenticationCode2=c1)
    expect_error("NoSuchEntity", iam.enable_mfa_device, UserName=name, SerialNumber=serial + "x",
                 AuthenticationCode1=c1, AuthenticationCode2=c2)
    iam.enable_mfa_device(UserName=name, SerialNumber=serial, AuthenticationCode1=c1, AuthenticationCode2=c2)
    other = unique("other")
    iam.create_user(UserName=other)
    expect_error("EntityAlreadyExists", iam.enable_mfa_device, UserName=other, SerialNumber=serial,
                 AuthenticationCode1=c1, AuthenticationCode2=c2)

    assigned = iam.list_virtual_mfa_devices(AssignmentStatus="Assigned")["VirtualMFADevices"]
    mine = [d for d in assigned if d["SerialNumber"] == serial]
    assert mine and mine[0]["User"]["UserName"] == name and "EnableDate" in mine[0]
    assert serial not in [d["SerialNumber"] for d in
                          iam.list_virtual_mfa_devices(AssignmentStatus="Unassigned")["VirtualMFADevices"]]
    devices = iam.list_mfa_devices(UserName=name)["MFADevices"]
    assert [(d["UserName"], d["SerialNumber"]) for d in devices] == [(name, serial)]
    # The AWS CLI sees the same.
    cli = keycard.aws("iam", "list-mfa-devices", "--user-name", name)
    assert [d["SerialNumber"] for d in cli["MFADevices"]] == [serial]

    expect_error("DeleteConflict", iam.delete_virtual_mfa_device, SerialNumber=serial)
    expect_error("DeleteConflict", iam.delete_user, UserName=name)
    r1, r2 = two_codes(seed, later=True)
    iam.resync_mfa_device(UserName=name, SerialNumber=serial, AuthenticationCode1=r1, AuthenticationCode2=r2)
    expect_error("InvalidAuthenticationCode", iam.resync_mfa_device, UserName=name, SerialNumber=serial,
                 AuthenticationCode1="000000", AuthenticationCode2="000000")

    iam.deactivate_mfa_device(UserName=name, SerialNumber=serial)
    expect_error("NoSuchEntity", iam.deactivate_mfa_device, UserName=name, SerialNumber=serial)
    assert iam.list_mfa_devices(UserName=name)["MFADevices"] == []
    iam.delete_virtual_mfa_device(SerialNumber=serial)
    expect_error("NoSuchEntity", iam.delete_virtual_mfa_device, SerialNumber=serial)
    expect_error("NoSuchEntity", iam.list_mfa_devices, UserName=unique("ghost"))


def test_mfa_survives_restart_and_the_seed_stays_secret(keycard_fresh):
    kc = keycard_fresh
    iam = kc.client("iam")
    iam.create_user(UserName="mfa-keeper")
    serial, seed = enable_mfa(iam, "mfa-keeper")
    assert kc.restart() == 0
    iam = kc.client("iam")
    assert [d["SerialNumber"] for d in iam.list_mfa_devices(UserName="mfa-keeper")["MFADevices"]] == [serial]
    # The sealed seed still opens: a resync with fresh codes works.
    r1, r2 = two_codes(seed, later=True)
    iam.resync_mfa_device(UserName="mfa-keeper", SerialNumber=serial, AuthenticationCode1=r1,
                          AuthenticationCode2=r2)
    seed_text = seed.decode()
    assert seed_text not in kc.log_tail(400)
    db = b"".join(p.read_bytes() for p in kc.data_dir.rglob("*") if p.is_file() and p.name != "master.key")
    assert seed_text.encode() not in db, "the seed is stored sealed only"
    ct = kc.client("cloudtrail")
    evs = ct.lookup_events(LookupAttributes=[{"AttributeKey": "EventName",
                                              "AttributeValue": "CreateVirtualMFADevice"}])["Events"]
    assert evs and all(seed_text not in e["CloudTrailEvent"] for e in evs)


# ---------------------------------------------------------------- alias, summary


def test_account_alias(keycard_fresh):
    kc = keycard_fresh
    iam = kc.client("iam")
    assert iam.list_account_aliases()["AccountAliases"] == []
    expect_error("ValidationError", iam.create_account_alias, AccountAlias="Bad_Alias")
    expect_error("ValidationError", iam.create_account_alias, AccountAlias="double--dash")
    iam.create_account_alias(AccountAlias="corp-a")
    expect_error("EntityAlreadyExists", iam.create_account_alias, AccountAlias="corp-a")
    # One alias per account: a new one replaces the old.
    kc.aws("iam", "create-account-alias", "--account-alias", "corp-b")
    assert iam.list_account_aliases()["AccountAliases"] == ["corp-b"]
    assert kc.restart() == 0
    iam = kc.client("iam")
    assert iam.list_account_aliases()["AccountAliases"] == ["corp-b"]
    expect_error("NoSuchEntity", iam.delete_account_alias, AccountAlias="corp-a")
    iam.delete_account_alias(AccountAlias="corp-b")
    assert iam.list_account_aliases()["AccountAliases"] == []


SUMMARY_KEYS = {
    "Users", "UsersQuota", "Groups", "GroupsQuota", "ServerCertificates", "ServerCertificatesQuota",
    "UserPolicySizeQuota", "GroupPolicySizeQuota", "GroupsPerUserQuota", "SigningCertificatesPerUserQuota",
    "AccessKeysPerUserQuota", "MFADevices", "MFADevicesInUse", "AccountMFAEnabled", "AccountAccessKeysPresent",
    "AccountPasswordPresent", "AccountSigningCertificatesPresent", "AttachedPoliciesPerGroupQuota",
    "AttachedPoliciesPerRoleQuota", "AttachedPoliciesPerUserQuota", "Policies", "PoliciesQuota",
    "PolicySizeQuota", "PolicyVersionsInUse", "PolicyVersionsInUseQuota", "VersionsPerPolicyQuota",
    "GlobalEndpointTokenVersion", "AssumeRolePolicySizeQuota", "InstanceProfiles", "InstanceProfilesQuota",
    "Providers", "RolePolicySizeQuota", "Roles", "RolesQuota",
}


def test_account_summary_counts(keycard_fresh):
    iam = keycard_fresh.client("iam")
    before = iam.get_account_summary()["SummaryMap"]
    assert SUMMARY_KEYS <= set(before), SUMMARY_KEYS - set(before)
    assert before["UsersQuota"] == 5000 and before["AccessKeysPerUserQuota"] == 2
    iam.create_user(UserName="sum-a")
    iam.create_user(UserName="sum-b")
    enable_mfa(iam, "sum-a")
    new_mfa(iam)
    after = iam.get_account_summary()["SummaryMap"]
    assert after["Users"] == before["Users"] + 2
    assert after["MFADevices"] == before["MFADevices"] + 2
    assert after["MFADevicesInUse"] == before["MFADevicesInUse"] + 1
    assert after["AccountAccessKeysPresent"] == 1


# --------------------------------------------------------------- credential report


def iso(s: str) -> datetime:
    assert s.endswith("+00:00"), s
    return datetime.fromisoformat(s)


def test_credential_report(keycard_fresh):
    kc = keycard_fresh
    iam = kc.client("iam")
    expect_error("ReportNotPresent", iam.get_credential_report)

    # Seeded estate.
    iam.create_user(UserName="cr-console")
    iam.create_login_profile(UserName="cr-console", Password=GOOD)
    enable_mfa(iam, "cr-console")
    iam.create_user(UserName="cr-keys")
    k1 = iam.create_access_key(UserName="cr-keys")["AccessKey"]
    k2 = iam.create_access_key(UserName="cr-keys")["AccessKey"]
    keys = sorted([k1, k2], key=lambda k: (k["CreateDate"], k["AccessKeyId"]))
    used, unused = keys
    kc.client("sts", creds=used).get_caller_identity()
    iam.update_access_key(UserName="cr-keys", AccessKeyId=unused["AccessKeyId"], Status="Inactive")
    iam.create_user(UserName="cr-nothing")
    iam.update_account_password_policy(MinimumPasswordLength=8, MaxPasswordAge=30)

    assert iam.generate_credential_report()["State"] == "STARTED"
    assert iam.generate_credential_report()["State"] == "COMPLETE"
    rep = iam.get_credential_report()
    assert rep["ReportFormat"] == "text/csv"
    text = rep["Content"].decode()
    rows = list(csv.reader(io.StringIO(text)))
    header = rows[0]
    assert header == [
        "user", "arn", "user_creation_time", "password_enabled", "password_last_used", "password_last_changed",
        "password_next_rotation", "mfa_active", "access_key_1_active", "access_key_1_last_rotated",
        "access_key_1_last_used_date", "access_key_1_last_used_region", "access_key_1_last_used_service",
        "access_key_2_active", "access_key_2_last_rotated", "access_key_2_last_used_date",
        "access_key_2_last_used_region", "access_key_2_last_used_service", "cert_1_active", "cert_1_last_rotated",
        "cert_2_active", "cert_2_last_rotated",
    ]
    recs = {r[0]: dict(zip(header, r)) for r in rows[1:]}
    assert rows[1][0] == "<root_account>"
    assert set(recs) == {"<root_account>", "cr-console", "cr-keys", "cr-nothing"}
    assert all(len(r) == len(header) for r in rows[1:])

    root = recs["<root_account>"]
    assert root["arn"] == f"arn:aws:iam::{ACCOUNT}:root"
    iso(root["user_creation_time"])
    assert root["password_enabled"] == "not_supported"
    assert root["password_last_changed"] == "not_supported"
    assert root["password_next_rotation"] == "not_supported"
    assert root["mfa_active"] == "false"
    assert root["access_key_1_active"] == "true"
    assert root["cert_1_active"] == "false" and root["cert_1_last_rotated"] == "N/A"

    con = recs["cr-console"]
    user = iam.get_user(UserName="cr-console")["User"]
    assert con["arn"] == user["Arn"]
    assert iso(con["user_creation_time"]) == user["CreateDate"]
    assert con["password_enabled"] == "true"
    assert con["password_last_used"] == "no_information"
    changed = iso(con["password_last_changed"])
    assert (iso(con["password_next_rotation"]) - changed).days == 30
    assert con["mfa_active"] == "true"
    for n in (1, 2):
        assert con[f"access_key_{n}_active"] == "false"
        for col in ("last_rotated", "last_used_date", "last_used_region", "last_used_service"):
            assert con[f"access_key_{n}_{col}"] == "N/A"

    ks = recs["cr-keys"]
    assert ks["password_enabled"] == "false"
    assert ks["password_last_used"] == "N/A" and ks["password_last_changed"] == "N/A"
    assert ks["password_next_rotation"] == "N/A"
    assert ks["mfa_active"] == "false"
    last = iam.get_access_key_last_used(AccessKeyId=used["AccessKeyId"])["AccessKeyLastUsed"]
    assert ks["access_key_1_active"] == "true"
    assert iso(ks["access_key_1_last_rotated"]) == used["CreateDate"]
    assert iso(ks["access_key_1_last_used_date"]) == last["LastUsedDate"]
    assert ks["access_key_1_last_used_region"] == last["Region"] == "us-east-1"
    assert ks["access_key_1_last_used_service"] == last["ServiceName"] == "sts"
    assert ks["access_key_2_active"] == "false"
    assert iso(ks["access_key_2_last_rotated"]) == unused["CreateDate"]
    assert ks["access_key_2_last_used_date"] == "N/A"
    assert ks["access_key_2_last_used_region"] == "N/A"
    assert ks["access_key_2_last_used_service"] == "N/A"

    none = recs["cr-nothing"]
    assert [none[c] for c in header[3:]] == [
        "false", "N/A", "N/A", "N/A", "false",
        "false", "N/A", "N/A", "N/A", "N/A",
        "false", "N/A", "N/A", "N/A", "N/A",
        "false", "N/A", "false", "N/A",
    ]

    # A fresh report is returned as is, also after a restart, and from the CLI.
    generated = rep["GeneratedTime"]
    iam.create_user(UserName="cr-later")
    assert kc.restart() == 0
    iam = kc.client("iam")
    again = iam.get_credential_report()
    assert again["GeneratedTime"] == generated and "cr-later" not in again["Content"].decode()
    cli = kc.aws("iam", "get-credential-report")
    assert base64.b64decode(cli["Content"]).decode() == text


# ------------------------------------------------------------ managed policies

GOVERNANCE_MANAGED = {
    "SecurityAudit": "/", "ReadOnlyAccess": "/", "ViewOnlyAccess": "/job-function/", "AWSSupportAccess": "/",
    "AWSCloudShellFullAccess": "/", "AdministratorAccess": "/", "PowerUserAccess": "/", "IAMFullAccess": "/",
    "AmazonS3FullAccess": "/", "AmazonS3ReadOnlyAccess": "/", "AmazonEC2FullAccess": "/",
    "AmazonEC2ReadOnlyAccess": "/", "AmazonSSMManagedInstanceCore": "/",
}


def test_aws_managed_policies_tools_look_up(keycard):
    iam = keycard.client("iam")
    for name, path in GOVERNANCE_MANAGED.items():
        arn = f"arn:aws:iam::aws:policy{path}{name}"
        pol = iam.get_policy(PolicyArn=arn)["Policy"]
        assert pol["PolicyName"] == name and pol["Path"] == path
        d = iam.get_policy_version(PolicyArn=arn, VersionId=pol["DefaultVersionId"])["PolicyVersion"]["Document"]
        assert d["Version"] == "2012-10-17" and d["Statement"], name
    sec = iam.get_policy_version(PolicyArn="arn:aws:iam::aws:policy/SecurityAudit", VersionId="v1")
    actions = {a for s in sec["PolicyVersion"]["Document"]["Statement"] for a in
               ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert "iam:GenerateCredentialReport" in actions
    # A user with SecurityAudit can read the governance records.
    _, creds = keycard.new_user(managed=["arn:aws:iam::aws:policy/SecurityAudit"])
    auditor = keycard.client("iam", creds=creds)
    auditor.list_virtual_mfa_devices()
    auditor.get_account_summary()
    auditor.generate_credential_report()
    auditor.get_credential_report()
    expect_error("AccessDenied", auditor.create_account_alias, AccountAlias="not-allowed")


# ------------------------------------------------------ service last accessed


def job(iam, arn, granularity="SERVICE_LEVEL"):
    jid = iam.generate_service_last_accessed_details(Arn=arn, Granularity=granularity)["JobId"]
    out = iam.get_service_last_accessed_details(JobId=jid)
    assert out["JobStatus"] == "COMPLETED" and out["JobType"] == granularity
    return jid, {s["ServiceNamespace"]: s for s in out["ServicesLastAccessed"]}


def test_service_last_accessed_from_the_audit_trail(keycard_fresh):
    kc = keycard_fresh
    iam = kc.client("iam")
    policy = allow(["s3:ListAllMyBuckets", "ec2:RunInstances", "iam:GetUser", "sts:AssumeRole",
                    "iam:GetServiceLastAccessedDetails"])
    user, creds = kc.new_user(name="sla-user", policy=policy)
    kc.client("s3", creds=creds).list_buckets()
    expect_error("UnauthorizedOperation", kc.client("ec2", creds=creds).describe_instances)
    role = kc.new_role(trust_for(user["Arn"]), name="sla-role", policy=allow("s3:ListAllMyBuckets"))
    got = kc.client("sts", creds=creds).assume_role(RoleArn=role["Arn"], RoleSessionName="sla")["Credentials"]
    kc.client("s3", creds=got).list_buckets()
    iam.create_group(GroupName="sla-group")
    iam.put_group_policy(GroupName="sla-group", PolicyName="p", PolicyDocument=json.dumps(allow("s3:ListBucket")))
    iam.add_user_to_group(GroupName="sla-group", UserName="sla-user")
    now = datetime.now(timezone.utc)

    jid, svc = job(iam, user["Arn"])
    assert set(svc) == {"s3", "ec2", "iam", "sts"}
    assert svc["s3"]["ServiceName"] == "Amazon S3"
    assert svc["s3"]["LastAuthenticatedEntity"] == user["Arn"]
    assert svc["s3"]["LastAuthenticatedRegion"] == "us-east-1"
    assert abs((svc["s3"]["LastAuthenticated"] - now).total_seconds()) < 120
    assert svc["s3"]["TotalAuthenticatedEntities"] == 1
    assert "LastAuthenticated" in svc["ec2"], "denied attempts count"
    assert "LastAuthenticated" not in svc["iam"], "granted but not used"
    assert "TrackedActionsLastAccessed" not in svc["s3"]

    _, act = job(iam, user["Arn"], "ACTION_LEVEL")
    names = {a["ActionName"] for a in act["s3"]["TrackedActionsLastAccessed"]}
    assert "ListBuckets" in names

    _, rsvc = job(iam, role["Arn"])
    assert set(rsvc) == {"s3"} and rsvc["s3"]["LastAuthenticatedEntity"] == role["Arn"]
    _, gsvc = job(iam, f"arn:aws:iam::{ACCOUNT}:group/sla-group")
    assert set(gsvc) == {"s3"} and gsvc["s3"]["LastAuthenticatedEntity"] == user["Arn"]

    # Only the principal that generated the job may read it.
    mine = kc.client("iam", creds=creds)
    expect_error("NoSuchEntity", mine.get_service_last_accessed_details, JobId=jid)
    expect_error("NoSuchEntity", iam.get_service_last_accessed_details, JobId="00000000-0000-0000-0000-000000000000")
    expect_error("NoSuchEntity", iam.generate_service_last_accessed_details, Arn=f"arn:aws:iam::{ACCOUNT}:user/ghost")
    expect_error("InvalidInput", iam.generate_service_last_accessed_details, Arn="arn:aws:s3:::some-bucket")


def test_rename_keeps_password_and_mfa(keycard):
    iam = keycard.client("iam")
    old, new = unique("before"), unique("after")
    iam.create_user(UserName=old)
    iam.create_login_profile(UserName=old, Password=GOOD)
    serial, _ = enable_mfa(iam, old)
    iam.update_user(UserName=old, NewUserName=new)
    assert iam.get_login_profile(UserName=new)["LoginProfile"]["UserName"] == new
    assert [d["SerialNumber"] for d in iam.list_mfa_devices(UserName=new)["MFADevices"]] == [serial]
    listed = iam.list_virtual_mfa_devices(AssignmentStatus="Assigned")["VirtualMFADevices"]
    assert [d["User"]["UserName"] for d in listed if d["SerialNumber"] == serial] == [new]
