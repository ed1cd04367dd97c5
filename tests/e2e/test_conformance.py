"""Conformance with botocore's service models (the pinned botocore of the
test environment).

For every operation keycard serves (``keycard operations --json``), a call
is generated from the operation's input shape in the model: every required
member, each value built from the member's shape (enums, lengths, ranges,
patterns) or, where the member names a resource, one that exists. The call
goes through boto3 as the account root and:

- if it succeeds, its parsed response has every member the output shape
  marks required, at every depth;
- if it fails, the error is one the operation can answer for valid input in
  a given state (``NoSuchEntity``, ``DeleteConflict``, ``EntityAlreadyExists``
  …): declared by the model for that operation with the HTTP status the
  model gives it, or, for EC2 and S3 whose models declare no errors, one of
  the documented state errors of that service. An error saying the input
  itself is invalid fails the test: the generated input is valid.

Destructive operations run after the others so that reads and updates
meet the resources they name.
"""

from __future__ import annotations

import base64
import datetime
import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import botocore.session
import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT, EC2_TRUST, allow, doc, keycard_bin, unique

# keycard's event source → botocore's service name.
SERVICES = {
    "iam.amazonaws.com": "iam",
    "sts.amazonaws.com": "sts",
    "ec2.amazonaws.com": "ec2",
    "s3.amazonaws.com": "s3",
    "cloudtrail.amazonaws.com": "cloudtrail",
    "organizations.amazonaws.com": "organizations",
    "securityhub.amazonaws.com": "securityhub",
    "guardduty.amazonaws.com": "guardduty",
    "access-analyzer.amazonaws.com": "accessanalyzer",
}

# Operations whose generated call cannot be made meaningfully from the model
# alone, with the reason; they are exercised by their own test files.
NOT_GENERATED = {
    # Needs a token or assertion minted by someone else.
    "AssumeRoleWithWebIdentity": "needs a signed web identity token (test_federation.py)",
    "AssumeRoleWithSAML": "needs a signed SAML assertion",
    # Multipart bodies that must follow an upload in progress.
    "CompleteMultipartUpload": "needs uploaded parts (test_s3.py)",
}

# State errors EC2 documents (its model declares none): the input was
# valid, the resources it names are not in a state to allow it.
EC2_STATE = re.compile(
    r"^(Invalid[A-Za-z]+(ID|Id)?\.(NotFound|Duplicate|InUse|NotAssociated)|IncorrectState|IncorrectInstanceState"
    r"|DependencyViolation|Resource\.AlreadyAssociated|InvalidAssociationID\.NotFound|OperationNotPermitted"
    r"|UnsupportedOperation|InvalidLaunchTemplateName\.(NotFoundException|AlreadyExistsException)"
    r"|InvalidLaunchTemplateId\.VersionNotFound|InvalidAMIID\.Unavailable|InvalidAMIName\.Duplicate"
    r"|VolumeInUse)$"
)

# S3's documented state errors (its model declares a handful only).
S3_STATE = {
    "NoSuchBucket": 404,
    "NoSuchKey": 404,
    "NoSuchUpload": 404,
    "NoSuchBucketPolicy": 404,
    "NoSuchTagSet": 404,
    "NoSuchLifecycleConfiguration": 404,
    "NoSuchCORSConfiguration": 404,
    "ServerSideEncryptionConfigurationNotFoundError": 404,
    "NoSuchPublicAccessBlockConfiguration": 404,
    "OwnershipControlsNotFoundError": 404,
    "NoSuchWebsiteConfiguration": 404,
    "BucketNotEmpty": 409,
    "BucketAlreadyOwnedByYou": 409,
    "BucketAlreadyExists": 409,
}

DESTRUCTIVE = re.compile(
    r"^(Delete|Detach|Remove|Terminate|Deactivate|Disassociate|Stop|Cancel|Abort|Untag|Disable|Deregister)"
)


def served():
    out = subprocess.run([str(keycard_bin()), "operations", "--json"], capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    calls = [(SERVICES[r["eventSource"]], r["operation"]) for r in rows if r["eventSource"] in SERVICES]
    return sorted(calls, key=lambda c: (bool(DESTRUCTIVE.match(c[1])), c[0], c[1]))


MODELS = botocore.session.get_session()


def model(service):
    return MODELS.get_service_model(service)


# Members EC2 documents as required that its model leaves optional (AWS
# answers MissingParameter without them).
DOC_REQUIRED = {
    ("ec2", "CreateVpc"): {"CidrBlock": "10.78.0.0/16"},
    ("ec2", "CreateSubnet"): {"CidrBlock": "10.77.2.0/24"},
    ("ec2", "RunInstances"): {"ImageId": "ami-0abcdef1234567890", "InstanceType": "t3.micro"},
    ("ec2", "ModifyInstanceMetadataOptions"): {"HttpTokens": "optional"},
    # A real OpenSSH public key (the model's blob is any bytes).
    ("ec2", "ImportKeyPair"): {
        "PublicKeyMaterial": b"ssh-ed25519 "
        + base64.b64encode(struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + bytes(range(32)))
    },
    ("ec2", "CreateVolume"): {"AvailabilityZone": "us-east-1a", "Size": 1},
    ("ec2", "AttachVolume"): {"Device": "/dev/sdz"},
    ("ec2", "ModifyInstanceCreditSpecification"): {
        "InstanceCreditSpecifications": [{"InstanceId": "i-0123456789abcdef0", "CpuCredits": "standard"}]
    },
    # One attribute per call (the model lists them all as optional).
    ("ec2", "ModifyInstanceAttribute"): {"DisableApiStop": {"Value": False}},
    ("ec2", "ModifyNetworkInterfaceAttribute"): {"Description": {"Value": "conformance"}},
    ("ec2", "DescribeNetworkInterfaceAttribute"): {"Attribute": "description"},
    # S3 answers MalformedXML without a body's status / rules.
    ("s3", "PutBucketVersioning"): {"VersioningConfiguration": {"Status": "Suspended"}},
    ("s3", "PutBucketLifecycleConfiguration"): {
        "LifecycleConfiguration": {"Rules": [{"ID": "conf", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 1}}]}
    },
    # Optional in the model only for AssumeRoot sessions.
    ("iam", "CreateLoginProfile"): {"Password": "Conformance-1-pass!"},
    # S3 settings whose model leaves optional (or free-form) what AWS
    # requires: a valid method, an index document, a default algorithm.
    ("s3", "PutBucketCors"): {"CORSConfiguration": {"CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]}},
    ("s3", "PutBucketWebsite"): {"WebsiteConfiguration": {"IndexDocument": {"Suffix": "index.html"}}},
    ("s3", "PutBucketEncryption"): {
        "ServerSideEncryptionConfiguration": {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
    },
    # Without a canned ACL, grant headers or a body there is nothing to set.
    ("s3", "PutBucketAcl"): {"ACL": "private"},
    ("s3", "PutObjectAcl"): {"ACL": "bucket-owner-full-control"},
}


@pytest.fixture(scope="module")
def estate(keycard):
    """Resources the generated calls name, made by root, per service, and
    an administrator (an IAM user allowed everything) who makes the calls:
    root may not assume roles."""
    iam, s3, ec2 = keycard.client("iam"), keycard.client("s3"), keycard.client("ec2")
    i = {
        "UserName": unique("conf-user"),
        "GroupName": unique("conf-group"),
        "RoleName": unique("conf-role"),
        "InstanceProfileName": unique("conf-profile"),
        "PolicyName": "conf-inline",
        "AWSServiceName": "elasticbeanstalk.amazonaws.com",
        "EntityPath": "o-a1b2c3d4e5/r-ab12",
        "EntityArn": f"arn:aws:iam::{ACCOUNT}:delegation-request/conf",
        "DeletionTaskId": f"task/aws-service-role/elasticbeanstalk.amazonaws.com/{SLR}/00000000-0000-0000-0000-000000000000",
    }
    iam.create_user(UserName=i["UserName"])
    iam.create_login_profile(UserName=i["UserName"], Password="Conformance-1-pass!")
    iam.create_group(GroupName=i["GroupName"])
    iam.add_user_to_group(GroupName=i["GroupName"], UserName=i["UserName"])
    iam.create_role(RoleName=i["RoleName"], AssumeRolePolicyDocument=doc(EC2_TRUST))
    for kind in ("role", "user", "group"):
        getattr(iam, f"put_{kind}_policy")(
            **{f"{kind.capitalize()}Name": i[f"{kind.capitalize()}Name"]},
            PolicyName=i["PolicyName"],
            PolicyDocument=doc(allow("s3:*")),
        )
    i["PolicyArn"] = iam.create_policy(PolicyName=unique("conf-pol"), PolicyDocument=doc(allow("s3:GetObject")))[
        "Policy"
    ]["Arn"]
    iam.create_instance_profile(InstanceProfileName=i["InstanceProfileName"])
    iam.add_role_to_instance_profile(InstanceProfileName=i["InstanceProfileName"], RoleName=i["RoleName"])
    i["AccessKeyId"] = iam.create_access_key(UserName=i["UserName"])["AccessKey"]["AccessKeyId"]
    i["SerialNumber"] = iam.create_virtual_mfa_device(VirtualMFADeviceName=unique("conf-mfa"))["VirtualMFADevice"][
        "SerialNumber"
    ]
    i["Url"] = "https://conf.example.com/oidc"
    i["ClientIDList"] = ["sts.amazonaws.com"]
    i["ThumbprintList"] = ["a" * 40]
    i["SAMLMetadataDocument"] = SAML_METADATA
    i["OpenIDConnectProviderArn"] = iam.create_open_id_connect_provider(
        Url=i["Url"], ClientIDList=i["ClientIDList"], ThumbprintList=i["ThumbprintList"]
    )["OpenIDConnectProviderArn"]
    i["SAMLProviderArn"] = iam.create_saml_provider(Name=unique("conf-saml"), SAMLMetadataDocument=SAML_METADATA)[
        "SAMLProviderArn"
    ]
    admin, creds = keycard.new_user(name=unique("conf-admin"), policy=allow("*"))
    assumable = keycard.new_role(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"AWS": admin["Arn"]}, "Action": "sts:AssumeRole"}],
        },
        name=unique("conf-assumable"),
    )
    b = {"Bucket": unique("conf-bucket"), "Key": "conf/object.txt"}
    s3.create_bucket(Bucket=b["Bucket"])
    s3.put_object(Bucket=b["Bucket"], Key=b["Key"], Body=b"conformance")
    b["UploadId"] = s3.create_multipart_upload(Bucket=b["Bucket"], Key=b["Key"])["UploadId"]
    b["CopySource"] = f"{b['Bucket']}/{b['Key']}"
    b["Policy"] = doc(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": admin["Arn"]},
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{b['Bucket']}/*",
                }
            ],
        }
    )
    e = {"InstanceId": keycard.run_instance(profile=i["InstanceProfileName"])["InstanceId"]}
    e["AssociationId"] = ec2.describe_iam_instance_profile_associations()["IamInstanceProfileAssociations"][0][
        "AssociationId"
    ]
    e["VpcId"] = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
    e["SubnetId"] = ec2.create_subnet(VpcId=e["VpcId"], CidrBlock="10.77.1.0/24")["Subnet"]["SubnetId"]
    e["GroupId"] = ec2.create_security_group(GroupName=unique("conf-sg"), Description="conf", VpcId=e["VpcId"])[
        "GroupId"
    ]
    e["KeyName"] = unique("conf-key")
    e["KeyPairId"] = ec2.create_key_pair(KeyName=e["KeyName"])["KeyPairId"]
    e["ImageId"] = ec2.register_image(Name=unique("conf-image"))["ImageId"]
    e["LaunchTemplateId"] = ec2.create_launch_template(LaunchTemplateName=unique("conf-lt"), LaunchTemplateData={})[
        "LaunchTemplate"
    ]["LaunchTemplateId"]
    e["VolumeId"] = ec2.create_volume(AvailabilityZone="us-east-1a", Size=1)["VolumeId"]
    e["NetworkInterfaceId"] = ec2.create_network_interface(SubnetId=e["SubnetId"])["NetworkInterface"][
        "NetworkInterfaceId"
    ]
    # An attachment to detach, on an instance of its own (a t3.micro takes
    # one interface beside its primary: AttachNetworkInterface's).
    other = keycard.run_instance()["InstanceId"]
    spare = ec2.create_network_interface(SubnetId=e["SubnetId"])["NetworkInterface"]["NetworkInterfaceId"]
    e["AttachmentId"] = ec2.attach_network_interface(NetworkInterfaceId=spare, InstanceId=other, DeviceIndex=1)[
        "AttachmentId"
    ]
    e["Resources"] = [e["InstanceId"]]
    e["IamInstanceProfile"] = {"Name": i["InstanceProfileName"]}
    return {
        "creds": creds,
        "iam": i,
        "sts": {
            "RoleArn": assumable["Arn"],
            "RoleSessionName": "conformance",
            "AccessKeyId": i["AccessKeyId"],
            "SigningAlgorithm": "RS256",
            "Audience": ["conformance"],
            "TargetPrincipal": ACCOUNT,
            "TaskPolicyArn": {"arn": "arn:aws:iam::aws:policy/root-task/IAMAuditRootUserCredentials"},
        },
        "s3": b,
        "ec2": e,
        "guardduty": {"DetectorId": keycard.client("guardduty").list_detectors()["DetectorIds"][0]},
    }


class Generator:
    """Builds valid input for one operation from its model."""

    def __init__(self, service, op, estate):
        self.service, self.op = service, op
        self.e = estate.get(service, {})
        self.fresh = unique("conf").replace("_", "-")[:40]

    def params(self, shape):
        """Required members, documented-required members, and optional
        members that name a resource of the estate."""
        out = {}
        for m, s in shape.members.items():
            named = m in self.e or (m.endswith("Ids") and m[:-1] in self.e)
            if m in shape.required_members or (named and not self.creates(m)):
                out[m] = self.value(m, s)
        out.update(DOC_REQUIRED.get((self.service, self.op), {}))
        return out

    def creates(self, name):
        """Whether `name` is the name of the thing this operation creates
        (CreateUser's UserName): it must be fresh."""
        noun = self.op[len("Create") :] if self.op.startswith("Create") else None
        if self.op in ("CreateKeyPair", "ImportKeyPair") and name == "KeyName":
            return True
        return noun is not None and name in (f"{noun}Name", "Bucket" if noun == "Bucket" else "")

    def value(self, name, shape, depth=0):
        special = self.special(name, shape)
        if special is not None:
            return special
        t = shape.type_name
        if t == "structure":
            return {m: self.value(m, s, depth + 1) for m, s in shape.members.items() if m in shape.required_members}
        if t == "list":
            n = max(1, shape.metadata.get("min", 1))
            return [self.value(name, shape.member, depth + 1) for _ in range(n)]
        if t == "map":
            return {self.value("Key", shape.key, depth + 1): self.value("Value", shape.value, depth + 1)}
        if t in ("integer", "long"):
            return max(1, int(shape.metadata.get("min", 1)))
        if t in ("float", "double"):
            return 1.0
        if t == "boolean":
            return False
        if t == "timestamp":
            return datetime.datetime.now(datetime.timezone.utc)
        if t == "blob":
            return b"conformance"
        return self.string(name, shape)

    def string(self, name, shape):
        if shape.enum:
            return shape.enum[0]
        meta = shape.metadata
        lo, hi = meta.get("min", 1), meta.get("max", 64)
        pattern = meta.get("pattern")
        candidates = [self.fresh, "conf1", "a" * max(lo, 1), "1" * max(lo, 1), "arn:aws:iam::123456789012:user/x", "/"]
        for c in candidates:
            if lo <= len(c) <= hi and (not pattern or _matches(pattern, c)):
                return c
        return ("conf" * 20)[: max(lo, min(hi, 8))]

    def special(self, name, shape):
        """Values the model alone cannot make valid: resources that exist,
        documents, ARNs."""
        e = self.e
        if self.creates(name) or name in ("VirtualMFADeviceName",):
            return self.fresh
        if self.op == "CopyObject" and name == "Key":
            return "conf/copy.txt"
        if self.op == "DeleteServiceLinkedRole" and name == "RoleName":
            return SLR if self.e.get("RoleName", "").startswith("conf-role") else SLR + "-missing"
        if self.op == "UpdateAssumeRolePolicy" and name == "PolicyDocument":
            return doc(EC2_TRUST)
        if name in e:
            return e[name]
        if name.endswith("Ids") and name[:-1] in e and shape.type_name == "list":
            return [e[name[:-1]]]
        if name in ("PolicyDocument", "AssumeRolePolicyDocument", "Policy", "PolicyInputList"):
            text = doc(EC2_TRUST) if name == "AssumeRolePolicyDocument" else doc(allow("s3:GetObject"))
            return [text] if shape.type_name == "list" else text
        if name == "ActionNames":
            return ["s3:GetObject"]
        if name in ("PolicySourceArn", "Arn") and self.service == "iam":
            return f"arn:aws:iam::{ACCOUNT}:user/{e['UserName']}"
        if name == "PermissionsBoundary":
            return e["PolicyArn"]
        if name == "AccountAlias":
            return self.fresh.lower()
        if name in ("Password", "NewPassword", "OldPassword"):
            return "Conformance-1-pass!"
        if name == "VersionId" and self.service == "iam":
            return "v1"
        if name == "JobId":
            return "00000000-0000-0000-0000-000000000000"
        if name == "Tags" and shape.type_name == "list":
            return [{"Key": "conformance", "Value": "yes"}]
        if name == "TagKeys" and shape.type_name == "list":
            return ["conformance"]
        return None


def _matches(pattern, value):
    try:
        return re.fullmatch(pattern, value) is not None
    except re.error:
        return True


def missing_required(shape, value, path="$"):
    """Paths of required output members absent from a parsed response."""
    if shape is None or value is None:
        return []
    t = shape.type_name
    out = []
    if t == "structure" and isinstance(value, dict):
        for m in shape.required_members:
            if m not in value:
                out.append(f"{path}.{m}")
        for m, s in shape.members.items():
            if m in value:
                out += missing_required(s, value[m], f"{path}.{m}")
    elif t == "list" and isinstance(value, list):
        for i, v in enumerate(value):
            out += missing_required(shape.member, v, f"{path}[{i}]")
    elif t == "map" and isinstance(value, dict):
        for k, v in value.items():
            out += missing_required(shape.value, v, f"{path}.{k}")
    return out


def declared_errors(op_model):
    """Error code → HTTP status the model declares for the operation."""
    out = {}
    for s in op_model.error_shapes:
        err = s.metadata.get("error", {})
        out[err.get("code", s.name)] = err.get("httpStatusCode")
    return out


# Errors that say the input itself is wrong: the generated input is valid,
# so these fail the test even where the model declares them …
INPUT_ERRORS = {
    "InvalidInput",
    "ValidationError",
    "ValidationException",
    "MalformedPolicyDocument",
    "InvalidParameterValue",
    "InvalidParameterCombination",
    "MissingParameter",
    "InvalidArgument",
    "MalformedXML",
    "InvalidRequest",
    "MalformedPolicy",
}
# … except where the model gives the operation no other way to say that a
# resource the input names does not exist.
STATE_AS_VALIDATION = {
    ("accessanalyzer", "GetGeneratedPolicy"),
    ("accessanalyzer", "CancelPolicyGeneration"),
    # Only partners AWS onboarded may create delegation requests.
    ("iam", "CreateDelegationRequest"),
}
# Values that are not resources: the missing-resource run keeps them.
NOT_RESOURCES = {
    "AWSServiceName",
    "EntityPath",
    "Policy",
    "CopySource",
    "Url",
    "ClientIDList",
    "ThumbprintList",
    "SAMLMetadataDocument",
    "SigningAlgorithm",
    "Audience",
    "TaskPolicyArn",
    "TargetPrincipal",
}
SAML_METADATA = (
    '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp.example.com">'
    '<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
    + "<!-- padding -->" * 80
    + "</md:IDPSSODescriptor></md:EntityDescriptor>"
)
SLR = "AWSServiceRoleForElasticBeanstalk"


def check_error(service, op_model, exc: ClientError):
    code = exc.response["Error"]["Code"]
    status = exc.response["ResponseMetadata"]["HTTPStatusCode"]
    if code in INPUT_ERRORS and (service, op_model.name) not in STATE_AS_VALIDATION:
        raise AssertionError(f"valid input refused: {exc}")
    if code == "AccessDenied" and status == 403 and service in ("iam", "sts"):
        return  # the query services' common authorization error
    if service == "s3" and op_model.http["method"] == "HEAD" and code == str(status) and status in (403, 404):
        return  # a HEAD answer has no body to name its error
    declared = declared_errors(op_model)
    if code in declared:
        want = declared[code]
        assert want is None or want == status, f"{code} answered with {status}, the model says {want}"
        return
    if service == "ec2":
        assert EC2_STATE.match(code), f"{code} ({status}) is not an EC2 state error: {exc}"
        return
    if service == "s3":
        assert S3_STATE.get(code) == status, f"{code} ({status}) is not an S3 state error: {exc}"
        return
    raise AssertionError(f"{code} ({status}) is not declared for {op_model.name}: {exc}")


CALLS = [c for c in served() if c[1] not in NOT_GENERATED]


def test_every_served_operation_is_in_the_model():
    unknown = [(s, o) for s, o in served() if o not in model(s).operation_names]
    assert unknown == []


def test_operations_left_out_exist():
    """The operations the generator leaves out are real ones (so the list
    cannot hide a typo)."""
    names = {o for s in ("sts", "s3") for o in model(s).operation_names}
    assert set(NOT_GENERATED) <= names


@pytest.mark.parametrize("service,op", CALLS, ids=[f"{s}.{o}" for s, o in CALLS])
def test_generated_call_conforms(keycard, estate, service, op):
    call_and_check(keycard, estate, estate, service, op)


def call_and_check(keycard, estate, resources, service, op):
    """Call `op` with input generated over `resources` (as the estate's
    administrator) and check the answer against the model."""
    op_model = model(service).operation_model(op)
    params = Generator(service, op, resources).params(op_model.input_shape) if op_model.input_shape else {}
    clients = estate.setdefault("clients", {})
    if service not in clients:
        clients[service] = keycard.client(service, creds=estate["creds"])
    try:
        resp = clients[service]._make_api_call(op, params)
    except ClientError as exc:
        check_error(service, op_model, exc)
        return
    resp.pop("ResponseMetadata", None)
    if "Body" in resp and hasattr(resp["Body"], "read"):
        resp["Body"].read()
    assert missing_required(op_model.output_shape, resp) == [], f"{op}({params}) → {resp}"


def test_api_coverage_doc_is_current():
    """docs/api-coverage.md's counts and tables are those of the running
    binary's operation tables."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "gen-api-coverage.py"
    out = subprocess.run(
        [sys.executable, str(script), "--check", "--keycard", str(keycard_bin())], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr


def missing(value):
    """A well-formed name, id or ARN of a resource that does not exist."""
    if isinstance(value, list):
        return [missing(v) for v in value]
    if isinstance(value, dict):
        return {k: missing(v) for k, v in value.items()}
    if not isinstance(value, str) or value.startswith("{"):
        return value
    if value.startswith("arn:"):
        head, _, _ = value.rpartition("/")
        return f"{head}/conf-missing"
    m = re.fullmatch(r"([a-z]+(?:-[a-z]+)*)-([0-9a-f]{8,17})", value)
    if m:
        return f"{m.group(1)}-{'0' * len(m.group(2))}"
    if re.fullmatch(r"AKIA[A-Z0-9]{16}", value):
        return "AKIA" + "Z" * 16
    return (value + "-missing")[:64]


@pytest.fixture(scope="module")
def absent(estate):
    """The estate with every resource replaced by one that does not exist."""
    out = {
        k: (
            {n: (v if n in NOT_RESOURCES else missing(v)) for n, v in e.items()}
            if isinstance(e, dict) and k in SERVICES.values()
            else e
        )
        for k, e in estate.items()
    }
    out["sts"] = estate["sts"]
    return out


@pytest.mark.parametrize("service,op", CALLS, ids=[f"{s}.{o}" for s, o in CALLS])
def test_call_on_missing_resources_conforms(keycard, estate, absent, service, op):
    """The same generated call naming resources that do not exist: answered,
    when refused, with an error the model declares for the operation."""
    call_and_check(keycard, estate, absent, service, op)
