"""Authorization by construction, driven through boto3.

- Every row of every operation table (``keycard operations --json``) is
  called by a principal with no permissions: it is refused, and the refusal
  names the row's action and the resource.
- The StopInstances bypass (one instance's tags leaking into the next
  instance's check) is a regression test, and the same shape is checked for
  every multi-resource operation: a call is allowed exactly when each
  single-resource call would be.
- Every decision of a call reaches its audit event.
- EC2's encoded authorization failure message opens with
  sts:DecodeAuthorizationMessage.
- Calls to operations and services keycard does not serve are recorded
  under their real source and name, and answered in their own protocol.
"""

from __future__ import annotations

import base64
import json
import random
import struct
import subprocess
import time

import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT, EC2_TRUST, REGION, allow, doc, error_code, expect_error, keycard_bin, unique

AMI = "ami-0abcdef1234567890"
# An OpenSSH ED25519 public key (ImportKeyPair's sample).
ED25519_PUB = b"ssh-ed25519 " + base64.b64encode(
    struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + bytes(range(32))
)


def operations():
    out = subprocess.run([str(keycard_bin()), "operations", "--json"], capture_output=True, text=True, check=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def events(kc, name, *, source=None, want=1, timeout=10.0):
    """Audit events named ``name`` (newest first), polling until ``want`` exist."""
    ct = kc.client("cloudtrail")
    deadline = time.monotonic() + timeout
    while True:
        found = ct.lookup_events(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": name}], MaxResults=50)[
            "Events"
        ]
        bodies = [json.loads(e["CloudTrailEvent"]) for e in found]
        if source:
            bodies = [b for b in bodies if b["eventSource"] == source]
        if len(bodies) >= want or time.monotonic() > deadline:
            return bodies
        time.sleep(0.1)


def event_for(kc, name, request_id):
    deadline = time.monotonic() + 10
    while True:
        for b in events(kc, name, timeout=0):
            if b.get("requestID") == request_id:
                return b
        if time.monotonic() > deadline:
            raise AssertionError(f"no {name} event with request id {request_id}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def estate(keycard):
    """Resources for every operation to act on, made by root, and a user
    with no permissions at all."""
    iam, s3, ec2 = keycard.client("iam"), keycard.client("s3"), keycard.client("ec2")
    e = {
        "user": unique("target"),
        "group": unique("group"),
        "role": unique("role"),
        "profile": unique("profile"),
        "bucket": unique("authz"),
        "key": "obj.txt",
    }
    iam.create_user(UserName=e["user"])
    iam.create_group(GroupName=e["group"])
    iam.create_role(RoleName=e["role"], AssumeRolePolicyDocument=doc(EC2_TRUST))
    iam.put_role_policy(RoleName=e["role"], PolicyName="p", PolicyDocument=doc(allow("s3:ListBucket")))
    e["policy_arn"] = iam.create_policy(PolicyName=unique("pol"), PolicyDocument=doc(allow("s3:GetObject")))["Policy"][
        "Arn"
    ]
    iam.create_instance_profile(InstanceProfileName=e["profile"])
    iam.add_role_to_instance_profile(InstanceProfileName=e["profile"], RoleName=e["role"])
    e["key_id"] = iam.create_access_key(UserName=e["user"])["AccessKey"]["AccessKeyId"]
    e["detector"] = keycard.client("guardduty").list_detectors()["DetectorIds"][0]
    s3.create_bucket(Bucket=e["bucket"])
    s3.put_object(Bucket=e["bucket"], Key=e["key"], Body=b"hello")
    e["upload"] = s3.create_multipart_upload(Bucket=e["bucket"], Key="mp.bin")["UploadId"]
    inst = keycard.run_instance(profile=e["profile"])
    e["instance"] = inst["InstanceId"]
    e["association"] = ec2.describe_iam_instance_profile_associations()["IamInstanceProfileAssociations"][0][
        "AssociationId"
    ]
    e["vpc"] = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    e["subnet"] = ec2.create_subnet(VpcId=e["vpc"], CidrBlock="10.42.1.0/24")["Subnet"]["SubnetId"]
    e["sg"] = ec2.create_security_group(GroupName=unique("authz-group"), Description="authz", VpcId=e["vpc"])["GroupId"]
    e["keypair"] = unique("authz-key")
    ec2.create_key_pair(KeyName=e["keypair"])
    e["image"] = ec2.register_image(Name=unique("authz-image"))["ImageId"]
    e["lt"] = ec2.create_launch_template(LaunchTemplateName=unique("authz-lt"), LaunchTemplateData={})["LaunchTemplate"][
        "LaunchTemplateId"
    ]
    e["volume"] = ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=1)["VolumeId"]
    e["eni"] = ec2.create_network_interface(SubnetId=e["subnet"])["NetworkInterface"]["NetworkInterfaceId"]
    primary = ec2.describe_instances(InstanceIds=[e["instance"]])["Reservations"][0]["Instances"][0]
    e["eni_attachment"] = primary["NetworkInterfaces"][0]["Attachment"]["AttachmentId"]
    nobody, creds = keycard.new_user(name=unique("nobody"))
    e["nobody"] = nobody
    e["creds"] = creds
    return e


def samples(e):
    """One call per operation: (client, boto3 method, params, resource the
    refusal must name). A row without a sample fails the test."""
    a = ACCOUNT
    u, g, r, b, k = e["user"], e["group"], e["role"], e["bucket"], e["key"]
    user_arn = f"arn:aws:iam::{a}:user/{u}"
    group_arn = f"arn:aws:iam::{a}:group/{g}"
    role_arn = f"arn:aws:iam::{a}:role/{r}"
    oidc = f"arn:aws:iam::{a}:oidc-provider/idp.example.com"
    saml = f"arn:aws:iam::{a}:saml-provider/idp"
    prof_arn = f"arn:aws:iam::{a}:instance-profile/{e['profile']}"
    pol = e["policy_arn"]
    inst_arn = f"arn:aws:ec2:{REGION}:{a}:instance/{e['instance']}"
    lt_arn = f"arn:aws:ec2:{REGION}:{a}:launch-template/{e['lt']}"
    vol_arn = f"arn:aws:ec2:{REGION}:{a}:volume/{e['volume']}"
    eni_arn = f"arn:aws:ec2:{REGION}:{a}:network-interface/{e['eni']}"
    obj = f"arn:aws:s3:::{b}/{k}"
    bucket = f"arn:aws:s3:::{b}"
    hub = f"arn:aws:securityhub:{REGION}:{a}:hub/default"
    trail = f"arn:aws:cloudtrail:{REGION}:{a}:trail/trail1"
    detector = f"arn:aws:guardduty:{REGION}:{a}:detector/{e['detector']}"
    doc_text = doc(allow("s3:GetObject"))
    mfa = f"arn:aws:iam::{a}:mfa/dev1"
    srv = f"arn:aws:iam::{a}:server-certificate/cert1"
    tags = [{"Key": "k", "Value": "v"}]
    ssh_id, cert_id, cred_id = "APKAEXAMPLEEXAMPLE12", "A" * 24, "ACCAEXAMPLEEXAMPLE123"
    job, deleg = "12345678-1234-1234-1234-123456789012", "deleg-0123456789ab"
    return {
        # IAM
        "CreateUser": ("iam", "create_user", {"UserName": "newuser"}, f"arn:aws:iam::{a}:user/newuser"),
        "GetUser": ("iam", "get_user", {"UserName": u}, user_arn),
        "ListUsers": ("iam", "list_users", {}, f"arn:aws:iam::{a}:user/"),
        "UpdateUser": ("iam", "update_user", {"UserName": u, "NewPath": "/x/"}, user_arn),
        "DeleteUser": ("iam", "delete_user", {"UserName": u}, user_arn),
        "CreateAccessKey": ("iam", "create_access_key", {"UserName": u}, user_arn),
        "ListAccessKeys": ("iam", "list_access_keys", {"UserName": u}, user_arn),
        "UpdateAccessKey": (
            "iam",
            "update_access_key",
            {"UserName": u, "AccessKeyId": e["key_id"], "Status": "Inactive"},
            user_arn,
        ),
        "DeleteAccessKey": ("iam", "delete_access_key", {"UserName": u, "AccessKeyId": e["key_id"]}, user_arn),
        "GetAccessKeyLastUsed": ("iam", "get_access_key_last_used", {"AccessKeyId": e["key_id"]}, user_arn),
        "CreateGroup": ("iam", "create_group", {"GroupName": "g2"}, f"arn:aws:iam::{a}:group/g2"),
        "GetGroup": ("iam", "get_group", {"GroupName": g}, group_arn),
        "ListGroups": ("iam", "list_groups", {}, f"arn:aws:iam::{a}:group/"),
        "ListGroupsForUser": ("iam", "list_groups_for_user", {"UserName": u}, user_arn),
        "DeleteGroup": ("iam", "delete_group", {"GroupName": g}, group_arn),
        "AddUserToGroup": ("iam", "add_user_to_group", {"GroupName": g, "UserName": u}, group_arn),
        "RemoveUserFromGroup": ("iam", "remove_user_from_group", {"GroupName": g, "UserName": u}, group_arn),
        "CreateRole": (
            "iam",
            "create_role",
            {"RoleName": "r2", "AssumeRolePolicyDocument": doc(EC2_TRUST)},
            f"arn:aws:iam::{a}:role/r2",
        ),
        "GetRole": ("iam", "get_role", {"RoleName": r}, role_arn),
        "ListRoles": ("iam", "list_roles", {}, f"arn:aws:iam::{a}:role/"),
        "UpdateRole": ("iam", "update_role", {"RoleName": r, "Description": "d"}, role_arn),
        "UpdateRoleDescription": ("iam", "update_role_description", {"RoleName": r, "Description": "d"}, role_arn),
        "UpdateAssumeRolePolicy": (
            "iam",
            "update_assume_role_policy",
            {"RoleName": r, "PolicyDocument": doc(EC2_TRUST)},
            role_arn,
        ),
        "DeleteRole": ("iam", "delete_role", {"RoleName": r}, role_arn),
        "TagUser": ("iam", "tag_user", {"UserName": u, "Tags": [{"Key": "k", "Value": "v"}]}, user_arn),
        "UntagUser": ("iam", "untag_user", {"UserName": u, "TagKeys": ["k"]}, user_arn),
        "ListUserTags": ("iam", "list_user_tags", {"UserName": u}, user_arn),
        "TagRole": ("iam", "tag_role", {"RoleName": r, "Tags": [{"Key": "k", "Value": "v"}]}, role_arn),
        "UntagRole": ("iam", "untag_role", {"RoleName": r, "TagKeys": ["k"]}, role_arn),
        "ListRoleTags": ("iam", "list_role_tags", {"RoleName": r}, role_arn),
        "CreatePolicy": (
            "iam",
            "create_policy",
            {"PolicyName": "p2", "PolicyDocument": doc_text},
            f"arn:aws:iam::{a}:policy/p2",
        ),
        "GetPolicy": ("iam", "get_policy", {"PolicyArn": pol}, pol),
        "ListPolicies": ("iam", "list_policies", {}, f"arn:aws:iam::{a}:policy/"),
        "CreatePolicyVersion": ("iam", "create_policy_version", {"PolicyArn": pol, "PolicyDocument": doc_text}, pol),
        "GetPolicyVersion": ("iam", "get_policy_version", {"PolicyArn": pol, "VersionId": "v1"}, pol),
        "ListPolicyVersions": ("iam", "list_policy_versions", {"PolicyArn": pol}, pol),
        "SetDefaultPolicyVersion": ("iam", "set_default_policy_version", {"PolicyArn": pol, "VersionId": "v1"}, pol),
        "DeletePolicyVersion": ("iam", "delete_policy_version", {"PolicyArn": pol, "VersionId": "v1"}, pol),
        "DeletePolicy": ("iam", "delete_policy", {"PolicyArn": pol}, pol),
        "ListEntitiesForPolicy": ("iam", "list_entities_for_policy", {"PolicyArn": pol}, pol),
        "AttachUserPolicy": ("iam", "attach_user_policy", {"UserName": u, "PolicyArn": pol}, user_arn),
        "AttachGroupPolicy": ("iam", "attach_group_policy", {"GroupName": g, "PolicyArn": pol}, group_arn),
        "AttachRolePolicy": ("iam", "attach_role_policy", {"RoleName": r, "PolicyArn": pol}, role_arn),
        "DetachUserPolicy": ("iam", "detach_user_policy", {"UserName": u, "PolicyArn": pol}, user_arn),
        "DetachGroupPolicy": ("iam", "detach_group_policy", {"GroupName": g, "PolicyArn": pol}, group_arn),
        "DetachRolePolicy": ("iam", "detach_role_policy", {"RoleName": r, "PolicyArn": pol}, role_arn),
        "ListAttachedUserPolicies": ("iam", "list_attached_user_policies", {"UserName": u}, user_arn),
        "ListAttachedGroupPolicies": ("iam", "list_attached_group_policies", {"GroupName": g}, group_arn),
        "ListAttachedRolePolicies": ("iam", "list_attached_role_policies", {"RoleName": r}, role_arn),
        "PutUserPolicy": (
            "iam",
            "put_user_policy",
            {"UserName": u, "PolicyName": "i", "PolicyDocument": doc_text},
            user_arn,
        ),
        "PutGroupPolicy": (
            "iam",
            "put_group_policy",
            {"GroupName": g, "PolicyName": "i", "PolicyDocument": doc_text},
            group_arn,
        ),
        "PutRolePolicy": (
            "iam",
            "put_role_policy",
            {"RoleName": r, "PolicyName": "i", "PolicyDocument": doc_text},
            role_arn,
        ),
        "GetUserPolicy": ("iam", "get_user_policy", {"UserName": u, "PolicyName": "i"}, user_arn),
        "GetGroupPolicy": ("iam", "get_group_policy", {"GroupName": g, "PolicyName": "i"}, group_arn),
        "GetRolePolicy": ("iam", "get_role_policy", {"RoleName": r, "PolicyName": "p"}, role_arn),
        "DeleteUserPolicy": ("iam", "delete_user_policy", {"UserName": u, "PolicyName": "i"}, user_arn),
        "DeleteGroupPolicy": ("iam", "delete_group_policy", {"GroupName": g, "PolicyName": "i"}, group_arn),
        "DeleteRolePolicy": ("iam", "delete_role_policy", {"RoleName": r, "PolicyName": "p"}, role_arn),
        "ListUserPolicies": ("iam", "list_user_policies", {"UserName": u}, user_arn),
        "ListGroupPolicies": ("iam", "list_group_policies", {"GroupName": g}, group_arn),
        "ListRolePolicies": ("iam", "list_role_policies", {"RoleName": r}, role_arn),
        "PutUserPermissionsBoundary": (
            "iam",
            "put_user_permissions_boundary",
            {"UserName": u, "PermissionsBoundary": pol},
            user_arn,
        ),
        "PutRolePermissionsBoundary": (
            "iam",
            "put_role_permissions_boundary",
            {"RoleName": r, "PermissionsBoundary": pol},
            role_arn,
        ),
        "DeleteUserPermissionsBoundary": ("iam", "delete_user_permissions_boundary", {"UserName": u}, user_arn),
        "DeleteRolePermissionsBoundary": ("iam", "delete_role_permissions_boundary", {"RoleName": r}, role_arn),
        "CreateInstanceProfile": (
            "iam",
            "create_instance_profile",
            {"InstanceProfileName": "ip2"},
            f"arn:aws:iam::{a}:instance-profile/ip2",
        ),
        "GetInstanceProfile": ("iam", "get_instance_profile", {"InstanceProfileName": e["profile"]}, prof_arn),
        "DeleteInstanceProfile": ("iam", "delete_instance_profile", {"InstanceProfileName": e["profile"]}, prof_arn),
        "AddRoleToInstanceProfile": (
            "iam",
            "add_role_to_instance_profile",
            {"InstanceProfileName": e["profile"], "RoleName": r},
            prof_arn,
        ),
        "RemoveRoleFromInstanceProfile": (
            "iam",
            "remove_role_from_instance_profile",
            {"InstanceProfileName": e["profile"], "RoleName": r},
            prof_arn,
        ),
        "ListInstanceProfiles": ("iam", "list_instance_profiles", {}, f"arn:aws:iam::{a}:instance-profile/"),
        "ListInstanceProfilesForRole": ("iam", "list_instance_profiles_for_role", {"RoleName": r}, role_arn),
        "GetAccountSummary": ("iam", "get_account_summary", {}, "*"),
        "GetAccountAuthorizationDetails": ("iam", "get_account_authorization_details", {}, "*"),
        # IAM governance records
        "CreateLoginProfile": ("iam", "create_login_profile", {"UserName": u, "Password": "Aa1!aaaaaa"}, user_arn),
        "GetLoginProfile": ("iam", "get_login_profile", {"UserName": u}, user_arn),
        "UpdateLoginProfile": ("iam", "update_login_profile", {"UserName": u, "Password": "Aa1!aaaaaa"}, user_arn),
        "DeleteLoginProfile": ("iam", "delete_login_profile", {"UserName": u}, user_arn),
        "ChangePassword": (
            "iam",
            "change_password",
            {"OldPassword": "Aa1!aaaaaa", "NewPassword": "Bb2@bbbbbb"},
            e["nobody"]["Arn"],
        ),
        "UpdateAccountPasswordPolicy": ("iam", "update_account_password_policy", {"MinimumPasswordLength": 8}, "*"),
        "GetAccountPasswordPolicy": ("iam", "get_account_password_policy", {}, "*"),
        "DeleteAccountPasswordPolicy": ("iam", "delete_account_password_policy", {}, "*"),
        "CreateVirtualMFADevice": (
            "iam",
            "create_virtual_mfa_device",
            {"VirtualMFADeviceName": "dev1"},
            f"arn:aws:iam::{a}:mfa/dev1",
        ),
        "EnableMFADevice": (
            "iam",
            "enable_mfa_device",
            {"UserName": u, "SerialNumber": f"arn:aws:iam::{a}:mfa/dev1", "AuthenticationCode1": "123456",
             "AuthenticationCode2": "654321"},
            user_arn,
        ),
        "ResyncMFADevice": (
            "iam",
            "resync_mfa_device",
            {"UserName": u, "SerialNumber": f"arn:aws:iam::{a}:mfa/dev1", "AuthenticationCode1": "123456",
             "AuthenticationCode2": "654321"},
            user_arn,
        ),
        "DeactivateMFADevice": (
            "iam",
            "deactivate_mfa_device",
            {"UserName": u, "SerialNumber": f"arn:aws:iam::{a}:mfa/dev1"},
            user_arn,
        ),
        "DeleteVirtualMFADevice": (
            "iam",
            "delete_virtual_mfa_device",
            {"SerialNumber": f"arn:aws:iam::{a}:mfa/dev1"},
            f"arn:aws:iam::{a}:mfa/dev1",
        ),
        "ListVirtualMFADevices": ("iam", "list_virtual_mfa_devices", {}, "*"),
        "ListMFADevices": ("iam", "list_mfa_devices", {"UserName": u}, user_arn),
        "CreateAccountAlias": ("iam", "create_account_alias", {"AccountAlias": "no-such-corp"}, "*"),
        "DeleteAccountAlias": ("iam", "delete_account_alias", {"AccountAlias": "no-such-corp"}, "*"),
        "ListAccountAliases": ("iam", "list_account_aliases", {}, "*"),
        "GenerateCredentialReport": ("iam", "generate_credential_report", {}, "*"),
        "GetCredentialReport": ("iam", "get_credential_report", {}, "*"),
        "GenerateServiceLastAccessedDetails": (
            "iam",
            "generate_service_last_accessed_details",
            {"Arn": user_arn},
            user_arn,
        ),
        "GetServiceLastAccessedDetails": (
            "iam",
            "get_service_last_accessed_details",
            {"JobId": "00000000-0000-0000-0000-000000000000"},
            "*",
        ),
        # the policy simulator
        "SimulatePrincipalPolicy": (
            "iam",
            "simulate_principal_policy",
            {"PolicySourceArn": user_arn, "ActionNames": ["s3:GetObject"]},
            user_arn,
        ),
        "SimulateCustomPolicy": (
            "iam",
            "simulate_custom_policy",
            {"PolicyInputList": [doc_text], "ActionNames": ["s3:GetObject"]},
            "*",
        ),
        "GetContextKeysForPrincipalPolicy": (
            "iam",
            "get_context_keys_for_principal_policy",
            {"PolicySourceArn": role_arn},
            role_arn,
        ),
        "GetContextKeysForCustomPolicy": (
            "iam",
            "get_context_keys_for_custom_policy",
            {"PolicyInputList": [doc_text]},
            "*",
        ),
        # STS (AWS requires no permission for the first two)
        "GetCallerIdentity": ("sts", "get_caller_identity", {}, None),
        "GetSessionToken": ("sts", "get_session_token", {}, None),
        "AssumeRole": ("sts", "assume_role", {"RoleArn": role_arn, "RoleSessionName": "sess"}, role_arn),
        "GetAccessKeyInfo": ("sts", "get_access_key_info", {"AccessKeyId": e["key_id"]}, "*"),
        "DecodeAuthorizationMessage": ("sts", "decode_authorization_message", {"EncodedMessage": "abc"}, "*"),
        # Unsigned in AWS: the token is the credential, the trust policy decides.
        "AssumeRoleWithWebIdentity": (
            "sts",
            "assume_role_with_web_identity",
            {"RoleArn": role_arn, "RoleSessionName": "sess", "WebIdentityToken": "not-a-token"},
            "UNSIGNED",
        ),
        "AssumeRoleWithSAML": (
            "sts",
            "assume_role_with_saml",
            {"RoleArn": role_arn, "PrincipalArn": saml, "SAMLAssertion": "PHNhbWw+"},
            "UNSIGNED",
        ),
        "GetWebIdentityToken": (
            "sts",
            "get_web_identity_token",
            {"Audience": ["a"], "SigningAlgorithm": "ES384"},
            "*",
        ),
        "GetFederationToken": ("sts", "get_federation_token", {"Name": "fed"}, f"arn:aws:sts::{a}:federated-user/fed"),
        "AssumeRoot": (
            "sts",
            "assume_root",
            {
                "TargetPrincipal": a,
                "TaskPolicyArn": {"arn": "arn:aws:iam::aws:policy/root-task/IAMAuditRootUserCredentials"},
            },
            f"arn:aws:iam::{a}:root",
        ),
        "GetDelegatedAccessToken": ("sts", "get_delegated_access_token", {"TradeInToken": "x" * 16}, "*"),
        # EC2
        "RunInstances": (
            "ec2",
            "run_instances",
            {"ImageId": AMI, "MinCount": 1, "MaxCount": 1},
            f"arn:aws:ec2:{REGION}:{a}:instance/*",
        ),
        "DescribeInstances": ("ec2", "describe_instances", {}, "*"),
        "CreateVpc": ("ec2", "create_vpc", {"CidrBlock": "10.43.0.0/16"}, f"arn:aws:ec2:{REGION}:{a}:vpc/*"),
        "DeleteVpc": ("ec2", "delete_vpc", {"VpcId": e["vpc"]}, f"arn:aws:ec2:{REGION}:{a}:vpc/{e['vpc']}"),
        "CreateSubnet": (
            "ec2",
            "create_subnet",
            {"VpcId": e["vpc"], "CidrBlock": "10.42.2.0/24"},
            f"arn:aws:ec2:{REGION}:{a}:subnet/*",
        ),
        "DeleteSubnet": (
            "ec2",
            "delete_subnet",
            {"SubnetId": e["subnet"]},
            f"arn:aws:ec2:{REGION}:{a}:subnet/{e['subnet']}",
        ),
        "CreateSecurityGroup": (
            "ec2",
            "create_security_group",
            {"GroupName": "authz-new", "Description": "d"},
            f"arn:aws:ec2:{REGION}:{a}:security-group/*",
        ),
        "DeleteSecurityGroup": (
            "ec2",
            "delete_security_group",
            {"GroupId": e["sg"]},
            f"arn:aws:ec2:{REGION}:{a}:security-group/{e['sg']}",
        ),
        "DescribeInstanceStatus": ("ec2", "describe_instance_status", {}, "*"),
        "StartInstances": ("ec2", "start_instances", {"InstanceIds": [e["instance"]]}, inst_arn),
        "StopInstances": ("ec2", "stop_instances", {"InstanceIds": [e["instance"]]}, inst_arn),
        "TerminateInstances": ("ec2", "terminate_instances", {"InstanceIds": [e["instance"]]}, inst_arn),
        "AssociateIamInstanceProfile": (
            "ec2",
            "associate_iam_instance_profile",
            {"InstanceId": e["instance"], "IamInstanceProfile": {"Name": e["profile"]}},
            inst_arn,
        ),
        "DisassociateIamInstanceProfile": (
            "ec2",
            "disassociate_iam_instance_profile",
            {"AssociationId": e["association"]},
            inst_arn,
        ),
        "ReplaceIamInstanceProfileAssociation": (
            "ec2",
            "replace_iam_instance_profile_association",
            {"AssociationId": e["association"], "IamInstanceProfile": {"Name": e["profile"]}},
            inst_arn,
        ),
        "DescribeIamInstanceProfileAssociations": ("ec2", "describe_iam_instance_profile_associations", {}, "*"),
        "ModifyInstanceMetadataOptions": (
            "ec2",
            "modify_instance_metadata_options",
            {"InstanceId": e["instance"], "HttpTokens": "required"},
            inst_arn,
        ),
        "DescribeInstanceAttribute": (
            "ec2",
            "describe_instance_attribute",
            {"InstanceId": e["instance"], "Attribute": "instanceType"},
            inst_arn,
        ),
        "CreateTags": (
            "ec2",
            "create_tags",
            {"Resources": [e["instance"]], "Tags": [{"Key": "k", "Value": "v"}]},
            inst_arn,
        ),
        "DeleteTags": ("ec2", "delete_tags", {"Resources": [e["instance"]], "Tags": [{"Key": "k"}]}, inst_arn),
        "DescribeTags": ("ec2", "describe_tags", {}, "*"),
        "ModifyInstanceAttribute": (
            "ec2",
            "modify_instance_attribute",
            {"InstanceId": e["instance"], "DisableApiTermination": {"Value": False}},
            inst_arn,
        ),
        "RebootInstances": ("ec2", "reboot_instances", {"InstanceIds": [e["instance"]]}, inst_arn),
        "DescribeInstanceTypes": ("ec2", "describe_instance_types", {}, "*"),
        "DescribeInstanceCreditSpecifications": ("ec2", "describe_instance_credit_specifications", {}, "*"),
        "ModifyInstanceCreditSpecification": (
            "ec2",
            "modify_instance_credit_specification",
            {"InstanceCreditSpecifications": [{"InstanceId": e["instance"], "CpuCredits": "standard"}]},
            inst_arn,
        ),
        # EBS volumes
        "CreateVolume": (
            "ec2",
            "create_volume",
            {"AvailabilityZone": f"{REGION}a", "Size": 1},
            f"arn:aws:ec2:{REGION}:{a}:volume/*",
        ),
        "AttachVolume": (
            "ec2",
            "attach_volume",
            {"VolumeId": e["volume"], "InstanceId": e["instance"], "Device": "/dev/sdf"},
            inst_arn,
        ),
        "DetachVolume": ("ec2", "detach_volume", {"VolumeId": e["volume"]}, vol_arn),
        "DeleteVolume": ("ec2", "delete_volume", {"VolumeId": e["volume"]}, vol_arn),
        # Network interfaces
        "CreateNetworkInterface": (
            "ec2",
            "create_network_interface",
            {"SubnetId": e["subnet"]},
            f"arn:aws:ec2:{REGION}:{a}:network-interface/*",
        ),
        "DeleteNetworkInterface": ("ec2", "delete_network_interface", {"NetworkInterfaceId": e["eni"]}, eni_arn),
        "AttachNetworkInterface": (
            "ec2",
            "attach_network_interface",
            {"NetworkInterfaceId": e["eni"], "InstanceId": e["instance"], "DeviceIndex": 1},
            inst_arn,
        ),
        "DetachNetworkInterface": ("ec2", "detach_network_interface", {"AttachmentId": e["eni_attachment"]}, inst_arn),
        "ModifyNetworkInterfaceAttribute": (
            "ec2",
            "modify_network_interface_attribute",
            {"NetworkInterfaceId": e["eni"], "Description": {"Value": "x"}},
            eni_arn,
        ),
        "DescribeNetworkInterfaceAttribute": (
            "ec2",
            "describe_network_interface_attribute",
            {"NetworkInterfaceId": e["eni"], "Attribute": "description"},
            "*",
        ),
        # EC2 network (read-only, on *)
        "DescribeRegions": ("ec2", "describe_regions", {}, "*"),
        "DescribeAvailabilityZones": ("ec2", "describe_availability_zones", {}, "*"),
        "DescribeVpcs": ("ec2", "describe_vpcs", {}, "*"),
        "DescribeSubnets": ("ec2", "describe_subnets", {}, "*"),
        "DescribeSecurityGroups": ("ec2", "describe_security_groups", {}, "*"),
        "DescribeNetworkAcls": ("ec2", "describe_network_acls", {}, "*"),
        "DescribeNetworkInterfaces": ("ec2", "describe_network_interfaces", {}, "*"),
        "DescribeRouteTables": ("ec2", "describe_route_tables", {}, "*"),
        "DescribeInternetGateways": ("ec2", "describe_internet_gateways", {}, "*"),
        "DescribeVolumes": ("ec2", "describe_volumes", {}, "*"),
        "DescribeSnapshots": ("ec2", "describe_snapshots", {}, "*"),
        "DescribeImages": ("ec2", "describe_images", {}, "*"),
        "DescribeAddresses": ("ec2", "describe_addresses", {}, "*"),
        "DescribeLaunchTemplates": ("ec2", "describe_launch_templates", {}, "*"),
        "DescribeLaunchTemplateVersions": ("ec2", "describe_launch_template_versions", {"LaunchTemplateId": "lt-0123456789abcdef0"}, "*"),
        "CreateKeyPair": ("ec2", "create_key_pair", {"KeyName": "authz-new"}, f"arn:aws:ec2:{REGION}:{a}:key-pair/*"),
        "ImportKeyPair": (
            "ec2",
            "import_key_pair",
            {"KeyName": "authz-imp", "PublicKeyMaterial": ED25519_PUB},
            f"arn:aws:ec2:{REGION}:{a}:key-pair/*",
        ),
        "DescribeKeyPairs": ("ec2", "describe_key_pairs", {}, "*"),
        "DeleteKeyPair": ("ec2", "delete_key_pair", {"KeyName": e["keypair"]}, f"arn:aws:ec2:{REGION}:{a}:key-pair/{e['keypair']}"),
        "RegisterImage": ("ec2", "register_image", {"Name": "authz-new-image"}, f"arn:aws:ec2:{REGION}::image/*"),
        "DeregisterImage": ("ec2", "deregister_image", {"ImageId": e["image"]}, f"arn:aws:ec2:{REGION}::image/{e['image']}"),
        "CreateLaunchTemplate": (
            "ec2",
            "create_launch_template",
            {"LaunchTemplateName": "authz-new-lt", "LaunchTemplateData": {}},
            f"arn:aws:ec2:{REGION}:{a}:launch-template/*",
        ),
        "CreateLaunchTemplateVersion": (
            "ec2",
            "create_launch_template_version",
            {"LaunchTemplateId": e["lt"], "LaunchTemplateData": {}},
            lt_arn,
        ),
        "ModifyLaunchTemplate": ("ec2", "modify_launch_template", {"LaunchTemplateId": e["lt"], "DefaultVersion": "1"}, lt_arn),
        "DeleteLaunchTemplate": ("ec2", "delete_launch_template", {"LaunchTemplateId": e["lt"]}, lt_arn),
        "DeleteLaunchTemplateVersions": (
            "ec2",
            "delete_launch_template_versions",
            {"LaunchTemplateId": e["lt"], "Versions": ["2"]},
            lt_arn,
        ),
        "GetLaunchTemplateData": ("ec2", "get_launch_template_data", {"InstanceId": e["instance"]}, "*"),
        "DescribeVpcEndpoints": ("ec2", "describe_vpc_endpoints", {}, "*"),
        "DescribeVpcPeeringConnections": ("ec2", "describe_vpc_peering_connections", {}, "*"),
        "DescribeVpnConnections": ("ec2", "describe_vpn_connections", {}, "*"),
        "DescribeClientVpnEndpoints": ("ec2", "describe_client_vpn_endpoints", {}, "*"),
        "DescribeTransitGateways": ("ec2", "describe_transit_gateways", {}, "*"),
        "DescribeFlowLogs": ("ec2", "describe_flow_logs", {}, "*"),
        "DescribeVpcEndpointServices": ("ec2", "describe_vpc_endpoint_services", {}, "*"),
        "GetEbsEncryptionByDefault": ("ec2", "get_ebs_encryption_by_default", {}, "*"),
        "GetInstanceMetadataDefaults": ("ec2", "get_instance_metadata_defaults", {}, "*"),
        "GetSnapshotBlockPublicAccessState": ("ec2", "get_snapshot_block_public_access_state", {}, "*"),
        "GetImageBlockPublicAccessState": ("ec2", "get_image_block_public_access_state", {}, "*"),
        # S3
        "ListBuckets": ("s3", "list_buckets", {}, "*"),
        "CreateBucket": ("s3", "create_bucket", {"Bucket": "newbucket-authz"}, "arn:aws:s3:::newbucket-authz"),
        "HeadBucket": ("s3", "head_bucket", {"Bucket": b}, None),
        "DeleteBucket": ("s3", "delete_bucket", {"Bucket": b}, bucket),
        "GetBucketLocation": ("s3", "get_bucket_location", {"Bucket": b}, bucket),
        "GetBucketPolicy": ("s3", "get_bucket_policy", {"Bucket": b}, bucket),
        "PutBucketPolicy": (
            "s3",
            "put_bucket_policy",
            {"Bucket": b, "Policy": doc(allow("s3:GetObject", f"{bucket}/*", Principal="*"))},
            bucket,
        ),
        "DeleteBucketPolicy": ("s3", "delete_bucket_policy", {"Bucket": b}, bucket),
        "GetBucketAcl": ("s3", "get_bucket_acl", {"Bucket": b}, bucket),
        "GetBucketVersioning": ("s3", "get_bucket_versioning", {"Bucket": b}, bucket),
        "PutBucketVersioning": (
            "s3",
            "put_bucket_versioning",
            {"Bucket": b, "VersioningConfiguration": {"Status": "Enabled"}},
            bucket,
        ),
        "GetBucketLifecycleConfiguration": ("s3", "get_bucket_lifecycle_configuration", {"Bucket": b}, bucket),
        "PutBucketLifecycleConfiguration": (
            "s3",
            "put_bucket_lifecycle_configuration",
            {
                "Bucket": b,
                "LifecycleConfiguration": {
                    "Rules": [{"ID": "r", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 1}}]
                },
            },
            bucket,
        ),
        "DeleteBucketLifecycle": ("s3", "delete_bucket_lifecycle", {"Bucket": b}, bucket),
        "GetObjectAttributes": (
            "s3",
            "get_object_attributes",
            {"Bucket": b, "Key": k, "ObjectAttributes": ["ETag"]},
            obj,
        ),
        "GetBucketEncryption": ("s3", "get_bucket_encryption", {"Bucket": b}, bucket),
        "GetBucketRequestPayment": ("s3", "get_bucket_request_payment", {"Bucket": b}, bucket),
        "ListObjects": ("s3", "list_objects", {"Bucket": b}, bucket),
        "ListObjectsV2": ("s3", "list_objects_v2", {"Bucket": b}, bucket),
        "ListObjectVersions": ("s3", "list_object_versions", {"Bucket": b}, bucket),
        "ListMultipartUploads": ("s3", "list_multipart_uploads", {"Bucket": b}, bucket),
        "GetObject": ("s3", "get_object", {"Bucket": b, "Key": k}, obj),
        "HeadObject": ("s3", "head_object", {"Bucket": b, "Key": k}, None),
        "GetObjectAcl": ("s3", "get_object_acl", {"Bucket": b, "Key": k}, obj),
        "GetObjectTagging": ("s3", "get_object_tagging", {"Bucket": b, "Key": k}, obj),
        "PutObjectTagging": (
            "s3",
            "put_object_tagging",
            {"Bucket": b, "Key": k, "Tagging": {"TagSet": [{"Key": "class", "Value": "public"}]}},
            obj,
        ),
        "DeleteObjectTagging": ("s3", "delete_object_tagging", {"Bucket": b, "Key": k}, obj),
        "GetBucketTagging": ("s3", "get_bucket_tagging", {"Bucket": b}, bucket),
        "PutBucketTagging": (
            "s3",
            "put_bucket_tagging",
            {"Bucket": b, "Tagging": {"TagSet": [{"Key": "team", "Value": "blue"}]}},
            bucket,
        ),
        "DeleteBucketTagging": ("s3", "delete_bucket_tagging", {"Bucket": b}, bucket),
        # S3 bucket settings
        "GetBucketCors": ("s3", "get_bucket_cors", {"Bucket": b}, bucket),
        "PutBucketCors": (
            "s3",
            "put_bucket_cors",
            {"Bucket": b, "CORSConfiguration": {"CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]}]}},
            bucket,
        ),
        "DeleteBucketCors": ("s3", "delete_bucket_cors", {"Bucket": b}, bucket),
        "PutBucketEncryption": (
            "s3",
            "put_bucket_encryption",
            {
                "Bucket": b,
                "ServerSideEncryptionConfiguration": {
                    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                },
            },
            bucket,
        ),
        "DeleteBucketEncryption": ("s3", "delete_bucket_encryption", {"Bucket": b}, bucket),
        "GetPublicAccessBlock": ("s3", "get_public_access_block", {"Bucket": b}, bucket),
        "PutPublicAccessBlock": (
            "s3",
            "put_public_access_block",
            {"Bucket": b, "PublicAccessBlockConfiguration": {"BlockPublicAcls": False}},
            bucket,
        ),
        "DeletePublicAccessBlock": ("s3", "delete_public_access_block", {"Bucket": b}, bucket),
        "GetBucketPolicyStatus": ("s3", "get_bucket_policy_status", {"Bucket": b}, bucket),
        "GetBucketOwnershipControls": ("s3", "get_bucket_ownership_controls", {"Bucket": b}, bucket),
        "PutBucketOwnershipControls": (
            "s3",
            "put_bucket_ownership_controls",
            {"Bucket": b, "OwnershipControls": {"Rules": [{"ObjectOwnership": "ObjectWriter"}]}},
            bucket,
        ),
        "DeleteBucketOwnershipControls": ("s3", "delete_bucket_ownership_controls", {"Bucket": b}, bucket),
        "PutBucketAcl": ("s3", "put_bucket_acl", {"Bucket": b, "ACL": "public-read"}, bucket),
        "PutObjectAcl": ("s3", "put_object_acl", {"Bucket": b, "Key": k, "ACL": "public-read"}, obj),
        "GetBucketWebsite": ("s3", "get_bucket_website", {"Bucket": b}, bucket),
        "PutBucketWebsite": (
            "s3",
            "put_bucket_website",
            {"Bucket": b, "WebsiteConfiguration": {"IndexDocument": {"Suffix": "index.html"}}},
            bucket,
        ),
        "DeleteBucketWebsite": ("s3", "delete_bucket_website", {"Bucket": b}, bucket),
        "GetBucketLogging": ("s3", "get_bucket_logging", {"Bucket": b}, bucket),
        "PutBucketLogging": ("s3", "put_bucket_logging", {"Bucket": b, "BucketLoggingStatus": {}}, bucket),
        "GetBucketNotificationConfiguration": ("s3", "get_bucket_notification_configuration", {"Bucket": b}, bucket),
        "PutBucketNotificationConfiguration": (
            "s3",
            "put_bucket_notification_configuration",
            {"Bucket": b, "NotificationConfiguration": {}},
            bucket,
        ),
        "PutObject": ("s3", "put_object", {"Bucket": b, "Key": "new.txt", "Body": b"x"}, f"{bucket}/new.txt"),
        "CopyObject": (
            "s3",
            "copy_object",
            {"Bucket": b, "Key": "copy.txt", "CopySource": {"Bucket": b, "Key": k}},
            f"{bucket}/copy.txt",
        ),
        "DeleteObject": ("s3", "delete_object", {"Bucket": b, "Key": k}, obj),
        "DeleteObjects": ("s3", "delete_objects", {"Bucket": b, "Delete": {"Objects": [{"Key": k}]}}, "PARTIAL"),
        "CreateMultipartUpload": ("s3", "create_multipart_upload", {"Bucket": b, "Key": "m2"}, f"{bucket}/m2"),
        "UploadPart": (
            "s3",
            "upload_part",
            {"Bucket": b, "Key": "mp.bin", "UploadId": e["upload"], "PartNumber": 1, "Body": b"x"},
            f"{bucket}/mp.bin",
        ),
        "UploadPartCopy": (
            "s3",
            "upload_part_copy",
            {
                "Bucket": b,
                "Key": "mp.bin",
                "UploadId": e["upload"],
                "PartNumber": 1,
                "CopySource": {"Bucket": b, "Key": k},
            },
            f"{bucket}/mp.bin",
        ),
        "CompleteMultipartUpload": (
            "s3",
            "complete_multipart_upload",
            {
                "Bucket": b,
                "Key": "mp.bin",
                "UploadId": e["upload"],
                "MultipartUpload": {"Parts": [{"ETag": '"x"', "PartNumber": 1}]},
            },
            f"{bucket}/mp.bin",
        ),
        "AbortMultipartUpload": (
            "s3",
            "abort_multipart_upload",
            {"Bucket": b, "Key": "mp.bin", "UploadId": e["upload"]},
            f"{bucket}/mp.bin",
        ),
        "ListParts": ("s3", "list_parts", {"Bucket": b, "Key": "mp.bin", "UploadId": e["upload"]}, f"{bucket}/mp.bin"),
        "ListSAMLProviders": ("iam", "list_saml_providers", {}, "*"),
        "CreateSAMLProvider": (
            "iam",
            "create_saml_provider",
            {"Name": "idp", "SAMLMetadataDocument": "<EntityDescriptor>" + "x" * 1000 + "</EntityDescriptor>"},
            saml,
        ),
        "GetSAMLProvider": ("iam", "get_saml_provider", {"SAMLProviderArn": saml}, saml),
        "UpdateSAMLProvider": ("iam", "update_saml_provider", {"SAMLProviderArn": saml}, saml),
        "DeleteSAMLProvider": ("iam", "delete_saml_provider", {"SAMLProviderArn": saml}, saml),
        "TagSAMLProvider": (
            "iam",
            "tag_saml_provider",
            {"SAMLProviderArn": saml, "Tags": [{"Key": "k", "Value": "v"}]},
            saml,
        ),
        "UntagSAMLProvider": ("iam", "untag_saml_provider", {"SAMLProviderArn": saml, "TagKeys": ["k"]}, saml),
        "ListSAMLProviderTags": ("iam", "list_saml_provider_tags", {"SAMLProviderArn": saml}, saml),
        "ListOpenIDConnectProviders": ("iam", "list_open_id_connect_providers", {}, "*"),
        "CreateOpenIDConnectProvider": (
            "iam",
            "create_open_id_connect_provider",
            {"Url": "https://idp.example.com", "ClientIDList": ["a"]},
            oidc,
        ),
        "GetOpenIDConnectProvider": ("iam", "get_open_id_connect_provider", {"OpenIDConnectProviderArn": oidc}, oidc),
        "DeleteOpenIDConnectProvider": (
            "iam",
            "delete_open_id_connect_provider",
            {"OpenIDConnectProviderArn": oidc},
            oidc,
        ),
        "AddClientIDToOpenIDConnectProvider": (
            "iam",
            "add_client_id_to_open_id_connect_provider",
            {"OpenIDConnectProviderArn": oidc, "ClientID": "b"},
            oidc,
        ),
        "RemoveClientIDFromOpenIDConnectProvider": (
            "iam",
            "remove_client_id_from_open_id_connect_provider",
            {"OpenIDConnectProviderArn": oidc, "ClientID": "a"},
            oidc,
        ),
        "UpdateOpenIDConnectProviderThumbprint": (
            "iam",
            "update_open_id_connect_provider_thumbprint",
            {"OpenIDConnectProviderArn": oidc, "ThumbprintList": ["a" * 40]},
            oidc,
        ),
        "TagOpenIDConnectProvider": (
            "iam",
            "tag_open_id_connect_provider",
            {"OpenIDConnectProviderArn": oidc, "Tags": [{"Key": "k", "Value": "v"}]},
            oidc,
        ),
        "UntagOpenIDConnectProvider": (
            "iam",
            "untag_open_id_connect_provider",
            {"OpenIDConnectProviderArn": oidc, "TagKeys": ["k"]},
            oidc,
        ),
        "ListOpenIDConnectProviderTags": (
            "iam",
            "list_open_id_connect_provider_tags",
            {"OpenIDConnectProviderArn": oidc},
            oidc,
        ),
        "EnableOutboundWebIdentityFederation": ("iam", "enable_outbound_web_identity_federation", {}, "*"),
        "DisableOutboundWebIdentityFederation": ("iam", "disable_outbound_web_identity_federation", {}, "*"),
        "GetOutboundWebIdentityFederationInfo": ("iam", "get_outbound_web_identity_federation_info", {}, "*"),
        "ListServerCertificates": ("iam", "list_server_certificates", {}, "*"),
        "ListServiceSpecificCredentials": ("iam", "list_service_specific_credentials", {"UserName": u}, user_arn),
        # Tags, credentials, certificates, service-linked roles
        "UpdateGroup": ("iam", "update_group", {"GroupName": g, "NewPath": "/x/"}, group_arn),
        "GetMFADevice": ("iam", "get_mfa_device", {"SerialNumber": mfa, "UserName": u}, user_arn),
        "TagPolicy": ("iam", "tag_policy", {"PolicyArn": pol, "Tags": tags}, pol),
        "UntagPolicy": ("iam", "untag_policy", {"PolicyArn": pol, "TagKeys": ["k"]}, pol),
        "ListPolicyTags": ("iam", "list_policy_tags", {"PolicyArn": pol}, pol),
        "TagInstanceProfile": ("iam", "tag_instance_profile", {"InstanceProfileName": e["profile"], "Tags": tags},
                               prof_arn),
        "UntagInstanceProfile": ("iam", "untag_instance_profile",
                                 {"InstanceProfileName": e["profile"], "TagKeys": ["k"]}, prof_arn),
        "ListInstanceProfileTags": ("iam", "list_instance_profile_tags", {"InstanceProfileName": e["profile"]},
                                    prof_arn),
        "TagMFADevice": ("iam", "tag_mfa_device", {"SerialNumber": mfa, "Tags": tags}, mfa),
        "UntagMFADevice": ("iam", "untag_mfa_device", {"SerialNumber": mfa, "TagKeys": ["k"]}, mfa),
        "ListMFADeviceTags": ("iam", "list_mfa_device_tags", {"SerialNumber": mfa}, mfa),
        "TagServerCertificate": ("iam", "tag_server_certificate", {"ServerCertificateName": "cert1", "Tags": tags},
                                 srv),
        "UntagServerCertificate": ("iam", "untag_server_certificate",
                                   {"ServerCertificateName": "cert1", "TagKeys": ["k"]}, srv),
        "ListServerCertificateTags": ("iam", "list_server_certificate_tags", {"ServerCertificateName": "cert1"}, srv),
        "UploadSSHPublicKey": ("iam", "upload_ssh_public_key", {"UserName": u, "SSHPublicKeyBody": "ssh-ed25519 AA"},
                               user_arn),
        "GetSSHPublicKey": ("iam", "get_ssh_public_key", {"UserName": u, "SSHPublicKeyId": ssh_id, "Encoding": "SSH"},
                            user_arn),
        "ListSSHPublicKeys": ("iam", "list_ssh_public_keys", {"UserName": u}, user_arn),
        "UpdateSSHPublicKey": ("iam", "update_ssh_public_key",
                               {"UserName": u, "SSHPublicKeyId": ssh_id, "Status": "Inactive"}, user_arn),
        "DeleteSSHPublicKey": ("iam", "delete_ssh_public_key", {"UserName": u, "SSHPublicKeyId": ssh_id}, user_arn),
        "UploadSigningCertificate": ("iam", "upload_signing_certificate", {"UserName": u, "CertificateBody": "x"},
                                     user_arn),
        "ListSigningCertificates": ("iam", "list_signing_certificates", {"UserName": u}, user_arn),
        "UpdateSigningCertificate": ("iam", "update_signing_certificate",
                                     {"UserName": u, "CertificateId": cert_id, "Status": "Inactive"}, user_arn),
        "DeleteSigningCertificate": ("iam", "delete_signing_certificate", {"UserName": u, "CertificateId": cert_id},
                                     user_arn),
        "UploadServerCertificate": ("iam", "upload_server_certificate",
                                    {"ServerCertificateName": "cert1", "CertificateBody": "x", "PrivateKey": "y"}, srv),
        "GetServerCertificate": ("iam", "get_server_certificate", {"ServerCertificateName": "cert1"}, srv),
        "UpdateServerCertificate": ("iam", "update_server_certificate",
                                    {"ServerCertificateName": "cert1", "NewPath": "/x/"}, srv),
        "DeleteServerCertificate": ("iam", "delete_server_certificate", {"ServerCertificateName": "cert1"}, srv),
        "CreateServiceSpecificCredential": ("iam", "create_service_specific_credential",
                                            {"UserName": u, "ServiceName": "codecommit.amazonaws.com"}, user_arn),
        "ResetServiceSpecificCredential": ("iam", "reset_service_specific_credential",
                                           {"UserName": u, "ServiceSpecificCredentialId": cred_id}, user_arn),
        "UpdateServiceSpecificCredential": ("iam", "update_service_specific_credential",
                                            {"UserName": u, "ServiceSpecificCredentialId": cred_id,
                                             "Status": "Inactive"}, user_arn),
        "DeleteServiceSpecificCredential": ("iam", "delete_service_specific_credential",
                                            {"UserName": u, "ServiceSpecificCredentialId": cred_id}, user_arn),
        "CreateServiceLinkedRole": ("iam", "create_service_linked_role", {"AWSServiceName": "autoscaling.amazonaws.com"},
                                    f"arn:aws:iam::{a}:role/aws-service-role/autoscaling.amazonaws.com/*"),
        "DeleteServiceLinkedRole": ("iam", "delete_service_linked_role", {"RoleName": r}, role_arn),
        "GetServiceLinkedRoleDeletionStatus": (
            "iam",
            "get_service_linked_role_deletion_status",
            {"DeletionTaskId": f"task/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling/{job}"},
            f"arn:aws:iam::{a}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling",
        ),
        # Account-level operations
        "SetSecurityTokenServicePreferences": ("iam", "set_security_token_service_preferences",
                                               {"GlobalEndpointTokenVersion": "v2Token"}, "*"),
        "ListPoliciesGrantingServiceAccess": ("iam", "list_policies_granting_service_access",
                                              {"Arn": user_arn, "ServiceNamespaces": ["s3"]}, user_arn),
        "GetServiceLastAccessedDetailsWithEntities": ("iam", "get_service_last_accessed_details_with_entities",
                                                      {"JobId": job, "ServiceNamespace": "s3"}, "*"),
        "EnableOrganizationsRootCredentialsManagement": ("iam", "enable_organizations_root_credentials_management",
                                                         {}, "*"),
        "DisableOrganizationsRootCredentialsManagement": ("iam", "disable_organizations_root_credentials_management",
                                                          {}, "*"),
        "EnableOrganizationsRootSessions": ("iam", "enable_organizations_root_sessions", {}, "*"),
        "DisableOrganizationsRootSessions": ("iam", "disable_organizations_root_sessions", {}, "*"),
        "GenerateOrganizationsAccessReport": ("iam", "generate_organizations_access_report",
                                              {"EntityPath": "o-abcdefghij/r-abcd"}, "*"),
        "GetOrganizationsAccessReport": ("iam", "get_organizations_access_report", {"JobId": job}, "*"),
        "CreateDelegationRequest": (
            "iam",
            "create_delegation_request",
            {"Description": "d", "Permissions": {}, "RequestorWorkflowId": "wf-12345",
             "NotificationChannel": f"arn:aws:sns:{REGION}:{a}:topic", "SessionDuration": 3600},
            "*",
        ),
        "GetDelegationRequest": ("iam", "get_delegation_request", {"DelegationRequestId": deleg}, "*"),
        "ListDelegationRequests": ("iam", "list_delegation_requests", {}, "*"),
        "AcceptDelegationRequest": ("iam", "accept_delegation_request", {"DelegationRequestId": deleg}, "*"),
        "RejectDelegationRequest": ("iam", "reject_delegation_request", {"DelegationRequestId": deleg}, "*"),
        "UpdateDelegationRequest": ("iam", "update_delegation_request", {"DelegationRequestId": deleg}, "*"),
        "AssociateDelegationRequest": ("iam", "associate_delegation_request", {"DelegationRequestId": deleg}, "*"),
        "SendDelegationToken": ("iam", "send_delegation_token", {"DelegationRequestId": deleg}, "*"),
        "GetHumanReadableSummary": ("iam", "get_human_readable_summary",
                                    {"EntityArn": f"arn:aws:iam::{a}:delegation-request/{deleg}"}, "*"),
        "ListOrganizationsFeatures": ("iam", "list_organizations_features", {}, "*"),
        # CloudTrail
        "LookupEvents": ("cloudtrail", "lookup_events", {}, "*"),
        "CreateTrail": ("cloudtrail", "create_trail", {"Name": "trail1", "S3BucketName": b}, trail),
        "UpdateTrail": ("cloudtrail", "update_trail", {"Name": "trail1", "S3BucketName": b}, trail),
        "DeleteTrail": ("cloudtrail", "delete_trail", {"Name": "trail1"}, trail),
        "GetTrail": ("cloudtrail", "get_trail", {"Name": "trail1"}, trail),
        "GetTrailStatus": ("cloudtrail", "get_trail_status", {"Name": "trail1"}, trail),
        "StartLogging": ("cloudtrail", "start_logging", {"Name": "trail1"}, trail),
        "StopLogging": ("cloudtrail", "stop_logging", {"Name": "trail1"}, trail),
        "DescribeTrails": ("cloudtrail", "describe_trails", {}, "*"),
        "ListTrails": ("cloudtrail", "list_trails", {}, "*"),
        "GetEventSelectors": ("cloudtrail", "get_event_selectors", {"TrailName": "trail1"}, trail),
        "PutEventSelectors": (
            "cloudtrail",
            "put_event_selectors",
            {"TrailName": "trail1", "EventSelectors": [{"ReadWriteType": "All"}]},
            trail,
        ),
        "AddTags": ("cloudtrail", "add_tags", {"ResourceId": trail, "TagsList": [{"Key": "k", "Value": "v"}]}, trail),
        "RemoveTags": ("cloudtrail", "remove_tags", {"ResourceId": trail, "TagsList": [{"Key": "k"}]}, trail),
        "ListTags": ("cloudtrail", "list_tags", {"ResourceIdList": [trail]}, trail),
        "ListPublicKeys": ("cloudtrail", "list_public_keys", {}, "*"),
        "GetInsightSelectors": ("cloudtrail", "get_insight_selectors", {"TrailName": "trail1"}, trail),
        "ListEventDataStores": ("cloudtrail", "list_event_data_stores", {}, "*"),
        "ListChannels": ("cloudtrail", "list_channels", {}, "*"),
        # Organizations (keycard accounts are in none)
        "DescribeOrganization": ("organizations", "describe_organization", {}, "*"),
        "ListAccounts": ("organizations", "list_accounts", {}, "*"),
        "ListRoots": ("organizations", "list_roots", {}, "*"),
        # (Same name as IAM's: qualified by the service.)
        "organizations.ListPolicies": ("organizations", "list_policies", {"Filter": "SERVICE_CONTROL_POLICY"}, "*"),
        "ListDelegatedAdministrators": ("organizations", "list_delegated_administrators", {}, "*"),
        "DescribeAccount": ("organizations", "describe_account", {"AccountId": ACCOUNT}, "*"),
        # Security Hub
        "DescribeHub": ("securityhub", "describe_hub", {}, hub),
        "GetFindings": ("securityhub", "get_findings", {}, hub),
        "BatchUpdateFindings": (
            "securityhub",
            "batch_update_findings",
            {"FindingIdentifiers": [{"Id": "x", "ProductArn": "y"}], "Workflow": {"Status": "NOTIFIED"}},
            hub,
        ),
        # GuardDuty
        "ListDetectors": ("guardduty", "list_detectors", {}, "*"),
        "GetDetector": ("guardduty", "get_detector", {"DetectorId": e["detector"]}, detector),
        "ListFindings": ("guardduty", "list_findings", {"DetectorId": e["detector"]}, detector),
        "guardduty.GetFindings": ("guardduty", "get_findings", {"DetectorId": e["detector"], "FindingIds": ["x"]}, detector),
        # IAM Access Analyzer
        "ValidatePolicy": (
            "accessanalyzer",
            "validate_policy",
            {"policyDocument": '{"Statement":[]}', "policyType": "IDENTITY_POLICY"},
            "*",
        ),
        "StartPolicyGeneration": (
            "accessanalyzer",
            "start_policy_generation",
            {"policyGenerationDetails": {"principalArn": f"arn:aws:iam::{ACCOUNT}:role/x"}},
            "*",
        ),
        "GetGeneratedPolicy": ("accessanalyzer", "get_generated_policy", {"jobId": "x"}, "*"),
        "ListPolicyGenerations": ("accessanalyzer", "list_policy_generations", {}, "*"),
        "CancelPolicyGeneration": ("accessanalyzer", "cancel_policy_generation", {"jobId": "x"}, "*"),
    }


def sample_key(row, table):
    """A row's sample: by operation name, or `service.Name` where two
    services share the name."""
    qualified = f"{row['eventSource'].split('.')[0]}.{row['operation']}"
    return qualified if qualified in table else row["operation"]


def test_every_operation_refuses_a_principal_without_permissions(keycard, estate):
    rows = operations()
    table = samples(estate)
    assert {sample_key(r, table) for r in rows} == set(table), "every row needs a sample call, and only rows"
    clients = {}
    refused = 0
    for row in rows:
        service, method, params, resource = table[sample_key(row, table)]
        c = clients.setdefault(service, keycard.client(service, creds=estate["creds"]))
        call = getattr(c, method)
        if not row["actions"]:
            call(**params)  # AWS requires no permission for these
            continue
        action = row["actions"][0]
        if resource == "UNSIGNED":
            # No caller to refuse: a token that proves nothing is refused.
            expect_error("InvalidIdentityToken", call, **params)
            refused += 1
            continue
        if resource == "PARTIAL":
            # DeleteObjects answers 200 with a per-key AccessDenied.
            out = call(**params)
            assert [x["Code"] for x in out.get("Errors", [])] == ["AccessDenied"], out
            assert not out.get("Deleted")
            refused += 1
            continue
        try:
            out = call(**params)
        except ClientError as e:
            code = error_code(e)
            want = {"ec2": "UnauthorizedOperation", "organizations": "AccessDeniedException",
                    "securityhub": "AccessDeniedException", "guardduty": "AccessDeniedException",
                    "accessanalyzer": "AccessDeniedException"}.get(service, "AccessDenied")
            if resource is None:  # HEAD: no body, so the code is the status
                assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 403, row
            else:
                assert code == want, (row["operation"], code, e.response["Error"].get("Message"))
                msg = e.response["Error"]["Message"]
                assert f"perform: {action} on resource: {resource} " in msg, (row["operation"], msg)
            refused += 1
            continue
        raise AssertionError(f"{row['operation']} succeeded for a principal with no permissions: {out}")
    assert refused == sum(1 for r in rows if r["actions"])
    # Nothing was changed by the refused calls.
    iam = keycard.client("iam")
    iam.get_user(UserName=estate["user"])
    iam.get_role(RoleName=estate["role"])
    assert keycard.client("s3").get_object(Bucket=estate["bucket"], Key=estate["key"])["Body"].read() == b"hello"
    st = keycard.client("ec2").describe_instances(InstanceIds=[estate["instance"]])
    assert st["Reservations"][0]["Instances"][0]["State"]["Name"] == "running"


# ---------------------------------------------------------------- multi-resource


def stop_dev_only_user(kc):
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["ec2:StopInstances", "ec2:StartInstances", "ec2:TerminateInstances", "ec2:CreateTags",
                           "ec2:DeleteTags"],
                "Resource": "*",
                "Condition": {"StringEquals": {"ec2:ResourceTag/env": "dev"}},
            }
        ],
    }
    _, creds = kc.new_user(policy=policy)
    return kc.client("ec2", creds=creds)


def test_stop_instances_bypass_is_closed(keycard):
    """The issue's reproduction: a tag on the first instance must not
    authorize the second."""
    ec2 = stop_dev_only_user(keycard)
    dev = keycard.run_instance(TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "env", "Value": "dev"}]}])
    bare = keycard.run_instance()
    ids = [dev["InstanceId"], bare["InstanceId"]]
    e = expect_error("UnauthorizedOperation", ec2.stop_instances, InstanceIds=ids)
    assert f"instance/{bare['InstanceId']}" in e.response["Error"]["Message"]
    states = keycard.client("ec2").describe_instances(InstanceIds=ids)["Reservations"]
    names = {i["InstanceId"]: i["State"]["Name"] for r in states for i in r["Instances"]}
    assert names == {ids[0]: "running", ids[1]: "running"}, "a refused call changed nothing"
    expect_error("UnauthorizedOperation", ec2.stop_instances, InstanceIds=[bare["InstanceId"]])
    ec2.stop_instances(InstanceIds=[dev["InstanceId"]])


@pytest.mark.parametrize("seed", range(3))
def test_multi_resource_calls_equal_the_conjunction_of_single_calls(keycard, seed):
    """For every multi-instance operation and random tag layouts, DryRun of
    the whole call is allowed exactly when DryRun of each instance alone is."""
    rng = random.Random(seed)
    ec2 = stop_dev_only_user(keycard)
    root = keycard.client("ec2")
    pool = []
    for _ in range(5):
        env = rng.choice(["dev", "prod", None])
        tags = [{"ResourceType": "instance", "Tags": [{"Key": "env", "Value": env}]}] if env else []
        pool.append(keycard.run_instance(**({"TagSpecifications": tags} if tags else {}))["InstanceId"])

    def dry(op, ids):
        kw = {"DryRun": True}
        if op in ("create_tags", "delete_tags"):
            kw.update(Resources=ids, Tags=[{"Key": "owner", "Value": "x"}])
        else:
            kw.update(InstanceIds=ids)
        try:
            getattr(ec2, op)(**kw)
        except ClientError as e:
            code = error_code(e)
            assert code in ("DryRunOperation", "UnauthorizedOperation"), code
            return code == "DryRunOperation"
        raise AssertionError("DryRun never succeeds")

    for _ in range(8):
        op = rng.choice(["stop_instances", "start_instances", "terminate_instances", "create_tags", "delete_tags"])
        ids = rng.sample(pool, rng.randint(2, len(pool)))
        singles = [dry(op, [i]) for i in ids]
        assert dry(op, ids) == all(singles), (op, ids, singles)
    assert root.describe_instances(InstanceIds=pool)["Reservations"]


def test_delete_objects_decides_each_key(keycard):
    s3 = keycard.client("s3")
    b = unique("multi")
    s3.create_bucket(Bucket=b)
    for k in ("open/a", "open/b", "closed/c"):
        s3.put_object(Bucket=b, Key=k, Body=b"1")
    _, creds = keycard.new_user(policy=allow("s3:DeleteObject", f"arn:aws:s3:::{b}/open/*"))
    out = keycard.client("s3", creds=creds).delete_objects(
        Bucket=b, Delete={"Objects": [{"Key": "open/a"}, {"Key": "closed/c"}, {"Key": "open/b"}]}
    )
    assert sorted(d["Key"] for d in out["Deleted"]) == ["open/a", "open/b"]
    assert [(x["Key"], x["Code"]) for x in out["Errors"]] == [("closed/c", "AccessDenied")]
    rid = out["ResponseMetadata"]["RequestId"]
    ev = event_for(keycard, "DeleteObjects", rid)
    got = [(d["resource"].rsplit("/", 1)[-1], d["decision"]) for d in ev["keycardAuthorization"]]
    assert got == [("a", "Allow"), ("c", "ImplicitDeny"), ("b", "Allow")]


# ---------------------------------------------------------------- every decision


def test_copy_object_records_source_and_destination(keycard):
    s3 = keycard.client("s3")
    b = unique("copy")
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="src", Body=b"data")
    out = s3.copy_object(Bucket=b, Key="dst", CopySource={"Bucket": b, "Key": "src"})
    ev = event_for(keycard, "CopyObject", out["ResponseMetadata"]["RequestId"])
    pairs = {(d["action"], d["resource"]) for d in ev["keycardAuthorization"]}
    assert (f"s3:GetObject", f"arn:aws:s3:::{b}/src") in pairs
    assert (f"s3:PutObject", f"arn:aws:s3:::{b}/dst") in pairs


def test_run_instances_records_pass_role(keycard):
    role, prof = keycard.instance_profile(name=unique("passrole"))
    ec2 = keycard.client("ec2")
    out = ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1, IamInstanceProfile={"Name": prof["InstanceProfileName"]})
    ev = event_for(keycard, "RunInstances", out["ResponseMetadata"]["RequestId"])
    actions = [d["action"] for d in ev["keycardAuthorization"]]
    # The instance, the image, the subnet and the default security group.
    assert actions.count("ec2:RunInstances") == 4
    assert ("iam:PassRole", role["Arn"]) in {(d["action"], d["resource"]) for d in ev["keycardAuthorization"]}


def test_assume_role_records_the_trust_decision(keycard):
    user, creds = keycard.new_user(policy=allow("sts:AssumeRole"))
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Sid": "TrustUser", "Effect": "Allow", "Principal": {"AWS": user["Arn"]}, "Action": "sts:AssumeRole"}],
    }
    role = keycard.new_role(trust)
    sts = keycard.client("sts", creds=creds)
    out = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="audit")
    ev = event_for(keycard, "AssumeRole", out["ResponseMetadata"]["RequestId"])
    [d] = ev["keycardAuthorization"]
    assert (d["action"], d["resource"], d["decision"]) == ("sts:AssumeRole", role["Arn"], "Allow")
    kinds = {m["policyType"] for m in d["matchedStatements"]}
    assert {"Trust", "Identity"} <= kinds, d
    # A refused AssumeRole records its decision too.
    other = keycard.new_role(EC2_TRUST)
    e = expect_error("AccessDenied", sts.assume_role, RoleArn=other["Arn"], RoleSessionName="xx")
    ev = event_for(keycard, "AssumeRole", e.response["ResponseMetadata"]["RequestId"])
    assert [d["decision"] for d in ev["keycardAuthorization"]] == ["ImplicitDeny"]


def test_root_override_of_a_denying_bucket_policy_is_recorded(keycard):
    s3 = keycard.client("s3")
    b = unique("lockout")
    s3.create_bucket(Bucket=b)
    deny_all = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": [f"arn:aws:s3:::{b}", f"arn:aws:s3:::{b}/*"]}],
    }
    s3.put_bucket_policy(Bucket=b, Policy=doc(deny_all))
    out = s3.get_bucket_policy(Bucket=b)
    ev = event_for(keycard, "GetBucketPolicy", out["ResponseMetadata"]["RequestId"])
    [d] = ev["keycardAuthorization"]
    assert d["decision"] == "ExplicitDeny" and d["overriddenBy"] == "bucket owner's root user"
    s3.delete_bucket_policy(Bucket=b)


# ---------------------------------------------------------------- EC2's encoded message


def test_decode_authorization_message(keycard):
    _, creds = keycard.new_user(policy=allow("ec2:DescribeInstances"))
    inst = keycard.run_instance()
    ec2 = keycard.client("ec2", creds=creds)
    e = expect_error("UnauthorizedOperation", ec2.stop_instances, InstanceIds=[inst["InstanceId"]])
    msg = e.response["Error"]["Message"]
    assert msg.startswith("You are not authorized to perform this operation. User: ")
    encoded = msg.split("Encoded authorization failure message: ", 1)[1]
    # The user may not decode it; root may.
    expect_error("AccessDenied", keycard.client("sts", creds=creds).decode_authorization_message, EncodedMessage=encoded)
    decoded = json.loads(keycard.client("sts").decode_authorization_message(EncodedMessage=encoded)["DecodedMessage"])
    assert decoded["allowed"] is False and decoded["explicitDeny"] is False
    assert decoded["context"]["action"] == "ec2:StopInstances"
    assert decoded["context"]["resource"].endswith(f"instance/{inst['InstanceId']}")
    keys = {c["key"] for c in decoded["context"]["conditions"]["items"]}
    assert "ec2:instancetype" in keys and "aws:sourceip" in keys
    expect_error(
        "InvalidAuthorizationMessageException",
        keycard.client("sts").decode_authorization_message,
        EncodedMessage="bm90IGEgbWVzc2FnZQ",
    )


# ---------------------------------------------------------------- what keycard doesn't serve


def test_unknown_operations_and_services_are_recorded_in_their_own_shape(keycard):
    user, creds = keycard.new_user(name=unique("scanner"))
    ec2 = keycard.client("ec2", creds=creds)
    e = expect_error("InvalidAction", ec2.describe_placement_groups)
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    ev = events(keycard, "DescribePlacementGroups", source="ec2.amazonaws.com")
    assert ev and ev[0]["userIdentity"]["userName"] == user["UserName"]
    assert ev[0]["recipientAccountId"] == ACCOUNT and ev[0]["errorCode"] == "InvalidAction"
    ddb = keycard.client("dynamodb", creds=creds)
    e = expect_error("UnknownOperationException", ddb.list_tables)
    ev = events(keycard, "ListTables", source="dynamodb.amazonaws.com")
    assert ev and ev[0]["userIdentity"]["arn"] == user["Arn"]
    assert ev[0]["recipientAccountId"] == ACCOUNT


# ---------------------------------------------------------------- tags and ABAC on IAM


def test_iam_resource_tags_decide_per_resource(keycard):
    """aws:ResourceTag / iam:ResourceTag come from the resource the check is
    about: a blue role is readable, a red one is not, in one session."""
    iam = keycard.client("iam")
    blue = keycard.new_role(EC2_TRUST, Tags=[{"Key": "team", "Value": "blue"}])
    red = keycard.new_role(EC2_TRUST, Tags=[{"Key": "team", "Value": "red"}])
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iam:GetRole", "Resource": "*",
             "Condition": {"StringEquals": {"iam:ResourceTag/team": "blue"}}},
            {"Effect": "Allow", "Action": "iam:ListRoleTags", "Resource": "*",
             "Condition": {"StringEquals": {"aws:ResourceTag/team": "blue"}}},
        ],
    }
    _, creds = keycard.new_user(policy=policy)
    me = keycard.client("iam", creds=creds)
    assert me.get_role(RoleName=blue["RoleName"])["Role"]["Arn"] == blue["Arn"]
    expect_error("AccessDenied", me.get_role, RoleName=red["RoleName"])
    me.list_role_tags(RoleName=blue["RoleName"])
    expect_error("AccessDenied", me.list_role_tags, RoleName=red["RoleName"])
    # Managed policies and instance profiles carry their tags into checks too.
    pol = iam.create_policy(PolicyName=unique("tagged"), PolicyDocument=doc(allow("s3:GetObject")),
                            Tags=[{"Key": "team", "Value": "blue"}])["Policy"]
    _, creds2 = keycard.new_user(policy={"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["iam:GetPolicy", "iam:GetInstanceProfile"], "Resource": "*",
         "Condition": {"StringEquals": {"aws:ResourceTag/team": "blue"}}}]})
    me2 = keycard.client("iam", creds=creds2)
    me2.get_policy(PolicyArn=pol["Arn"])
    plain = iam.create_policy(PolicyName=unique("plain"), PolicyDocument=doc(allow("s3:GetObject")))["Policy"]
    expect_error("AccessDenied", me2.get_policy, PolicyArn=plain["Arn"])
    prof = iam.create_instance_profile(InstanceProfileName=unique("tp"), Tags=[{"Key": "team", "Value": "blue"}])
    me2.get_instance_profile(InstanceProfileName=prof["InstanceProfile"]["InstanceProfileName"])


def test_creating_with_tags_needs_the_tag_action_and_request_tags(keycard):
    """CreateUser with Tags also decides iam:TagUser; aws:RequestTag and
    aws:TagKeys are the request's tags."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iam:CreateUser", "Resource": "*"},
            {"Effect": "Allow", "Action": "iam:TagUser", "Resource": "*",
             "Condition": {"StringEquals": {"aws:RequestTag/team": "blue"},
                           "ForAllValues:StringEquals": {"aws:TagKeys": ["team"]}}},
        ],
    }
    _, creds = keycard.new_user(policy=policy)
    me = keycard.client("iam", creds=creds)
    me.create_user(UserName=unique("plain"))
    me.create_user(UserName=unique("blue"), Tags=[{"Key": "team", "Value": "blue"}])
    e = expect_error("AccessDenied", me.create_user, UserName="redone", Tags=[{"Key": "team", "Value": "red"}])
    assert "iam:TagUser" in e.response["Error"]["Message"]
    expect_error("AccessDenied", me.create_user, UserName="extra",
                 Tags=[{"Key": "team", "Value": "blue"}, {"Key": "cost", "Value": "1"}])
    expect_error("NoSuchEntity", keycard.client("iam").get_user, UserName="redone")
    # Tagging an existing user: the same keys.
    target = unique("t")
    keycard.client("iam").create_user(UserName=target)
    me.tag_user(UserName=target, Tags=[{"Key": "team", "Value": "blue"}])
    expect_error("AccessDenied", me.tag_user, UserName=target, Tags=[{"Key": "team", "Value": "red"}])
