"""The seeds' instance walkthroughs, end to end, with the real AWS CLI run
"on" the instance through ``keycard exec`` (no keys on disk, credentials
from the instance's metadata service).

Seed 000: least-privilege S3 read role -> instance profile -> RunInstances
-> IMDSv2 enforced -> v1 gets 401, token + curl get credentials,
``aws s3 ls`` / ``aws s3 cp`` work, another bucket and PutObject are denied.
Seed 002: an instance without a role gets "Unable to locate credentials";
attach IAMReadOnlyAccess to the running instance and list-users works,
create-user is denied, and detaching the policy denies at once.
"""

import json

import pytest

from conftest import ACCOUNT, EC2_TRUST, IAM_READ_ONLY, SEED_POLICY


@pytest.fixture(scope="module")
def seed(keycard):
    """Seed 000 steps 1-4, typed as the walkthrough types them."""
    work = keycard.workdir
    (work / "policy.json").write_text(json.dumps(SEED_POLICY, indent=2))
    (work / "trust-policy.json").write_text(json.dumps(EC2_TRUST, indent=2))
    aws = keycard.aws
    aws("iam", "create-policy", "--policy-name", "EC2S3ReadPolicy", "--policy-document", "file://policy.json")
    aws("iam", "create-role", "--role-name", "EC2S3AccessRole", "--assume-role-policy-document", "file://trust-policy.json")
    aws(
        "iam", "attach-role-policy", "--role-name", "EC2S3AccessRole",
        "--policy-arn", f"arn:aws:iam::{ACCOUNT}:policy/EC2S3ReadPolicy",
    )
    aws("iam", "create-instance-profile", "--instance-profile-name", "EC2S3InstanceProfile")
    aws(
        "iam", "add-role-to-instance-profile", "--instance-profile-name", "EC2S3InstanceProfile",
        "--role-name", "EC2S3AccessRole",
    )
    # Buckets and objects the instance will (and will not) reach.
    s3 = keycard.client("s3")
    s3.create_bucket(Bucket="my-app-bucket")
    s3.put_object(Bucket="my-app-bucket", Key="config/app.json", Body=b'{"ok": true}')
    s3.create_bucket(Bucket="other-bucket")
    s3.put_object(Bucket="other-bucket", Key="secret.txt", Body=b"no")
    aws("ec2", "create-key-pair", "--key-name", "my-key-pair")
    run = aws(
        "ec2", "run-instances", "--image-id", "ami-0abcdef1234567890", "--instance-type", "t3.micro",
        "--iam-instance-profile", "Name=EC2S3InstanceProfile", "--key-name", "my-key-pair",
    )
    iid = run["Instances"][0]["InstanceId"]
    aws("ec2", "modify-instance-metadata-options", "--instance-id", iid, "--http-tokens", "required", "--http-endpoint", "enabled")
    return iid


CURL_V1 = 'curl -s -o /dev/null -w "%{http_code}" "${AWS_EC2_METADATA_SERVICE_ENDPOINT}latest/meta-data/iam/security-credentials/EC2S3AccessRole"'
CURL_V2 = (
    'TOKEN=$(curl -s -X PUT "${AWS_EC2_METADATA_SERVICE_ENDPOINT}latest/api/token" '
    '-H "X-aws-ec2-metadata-token-ttl-seconds: 21600") && '
    'curl -s -H "X-aws-ec2-metadata-token: $TOKEN" '
    '"${AWS_EC2_METADATA_SERVICE_ENDPOINT}latest/meta-data/iam/security-credentials/EC2S3AccessRole"'
)


def test_run_instances_shows_profile_and_required_tokens(keycard, seed):
    d = keycard.aws("ec2", "describe-instances", "--instance-ids", seed)
    inst = d["Reservations"][0]["Instances"][0]
    assert inst["State"]["Name"] == "running"
    assert inst["IamInstanceProfile"]["Arn"] == f"arn:aws:iam::{ACCOUNT}:instance-profile/EC2S3InstanceProfile"
    assert inst["IamInstanceProfile"]["Id"].startswith("AIPA")
    assert inst["MetadataOptions"]["HttpTokens"] == "required"
    assert inst["KeyName"] == "my-key-pair"


def test_imdsv1_is_refused_when_tokens_required(keycard, seed):
    p = keycard.exec(seed, "sh", "-c", CURL_V1)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "401"


def test_token_then_curl_gets_the_role_credentials(keycard, seed):
    p = keycard.exec(seed, "sh", "-c", CURL_V2)
    assert p.returncode == 0, p.stderr
    creds = json.loads(p.stdout)
    assert creds["Code"] == "Success"
    assert creds["Type"] == "AWS-HMAC"
    assert creds["AccessKeyId"].startswith("ASIA")
    assert len(creds["SecretAccessKey"]) == 40
    assert creds["Expiration"].endswith("Z")
    # The credentials are real: STS says who they are.
    ident = keycard.client("sts", creds={
        "AccessKeyId": creds["AccessKeyId"], "SecretAccessKey": creds["SecretAccessKey"], "SessionToken": creds["Token"],
    }).get_caller_identity()
    assert ident["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/EC2S3AccessRole/{seed}"


def test_cli_on_the_instance_is_the_role(keycard, seed):
    ident = keycard.exec_aws(seed, "sts", "get-caller-identity")
    assert ident["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/EC2S3AccessRole/{seed}"
    role_id = keycard.client("iam").get_role(RoleName="EC2S3AccessRole")["Role"]["RoleId"]
    assert ident["UserId"] == f"{role_id}:{seed}"


def test_s3_read_on_the_target_bucket_works(keycard, seed):
    out = keycard.exec_aws(seed, "s3", "ls", "s3://my-app-bucket", "--recursive")
    assert "config/app.json" in out
    p = keycard.exec_aws(seed, "s3", "cp", "s3://my-app-bucket/config/app.json", "-", check=False)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"ok": True}


def test_other_bucket_and_writes_are_denied(keycard, seed):
    p = keycard.exec_aws(seed, "s3", "ls", "s3://other-bucket", check=False)
    assert p.returncode != 0 and "AccessDenied" in p.stderr, p.stderr
    p = keycard.exec_aws(seed, "s3", "cp", "s3://other-bucket/secret.txt", "-", check=False)
    assert p.returncode != 0 and ("403" in p.stderr or "AccessDenied" in p.stderr), p.stderr
    (keycard.workdir / "up.txt").write_text("x")
    p = keycard.exec_aws(seed, "s3", "cp", "up.txt", "s3://my-app-bucket/up.txt", check=False)
    assert p.returncode != 0 and "AccessDenied" in p.stderr, p.stderr
    p = keycard.exec_aws(seed, "s3api", "put-object", "--bucket", "my-app-bucket", "--key", "up.txt", check=False)
    assert p.returncode != 0 and "AccessDenied" in p.stderr, p.stderr
    keys = [o["Key"] for o in keycard.client("s3").list_objects_v2(Bucket="my-app-bucket").get("Contents", [])]
    assert "up.txt" not in keys


def test_exec_strips_static_credentials(keycard, seed):
    p = keycard.exec(seed, "sh", "-c", "env | grep '^AWS_' | sort")
    assert p.returncode == 0
    env = dict(line.split("=", 1) for line in p.stdout.splitlines())
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        assert k not in env
    assert env["AWS_SHARED_CREDENTIALS_FILE"] == "/dev/null"
    assert env["AWS_CONFIG_FILE"] == "/dev/null"
    assert env["AWS_EC2_METADATA_SERVICE_ENDPOINT"].startswith("http://127.77.")
    # The instance's own network path to the API: its metadata address,
    # the server's port (so keycard knows the call came from the instance).
    access = keycard.instance_access(seed)
    assert env["AWS_ENDPOINT_URL"] == access["apiEndpoint"]
    assert access["apiEndpoint"].startswith("http://" + env["AWS_EC2_METADATA_SERVICE_ENDPOINT"].split("//")[1].split(":")[0])
    assert access["apiEndpoint"].endswith(":" + keycard.endpoint.rsplit(":", 1)[1])


def test_instance_without_profile_then_attach_readonly(keycard):
    """Seed 002: no role -> no credentials; attach at run time -> works;
    read-only means create-user is denied; detach -> denied at once."""
    aws = keycard.aws
    iid = aws("ec2", "run-instances", "--image-id", "ami-0abcdef1234567890", "--instance-type", "t3.micro")["Instances"][0]["InstanceId"]
    p = keycard.exec_aws(iid, "iam", "list-users", check=False)
    assert p.returncode != 0
    assert "Unable to locate credentials" in p.stderr
    (keycard.workdir / "ec2-trust.json").write_text(json.dumps(EC2_TRUST))
    aws("iam", "create-role", "--role-name", "DemoRoleForEC2", "--assume-role-policy-document", "file://ec2-trust.json")
    aws("iam", "attach-role-policy", "--role-name", "DemoRoleForEC2", "--policy-arn", IAM_READ_ONLY)
    aws("iam", "create-instance-profile", "--instance-profile-name", "DemoRoleForEC2")
    aws("iam", "add-role-to-instance-profile", "--instance-profile-name", "DemoRoleForEC2", "--role-name", "DemoRoleForEC2")
    assoc = aws("ec2", "associate-iam-instance-profile", "--instance-id", iid, "--iam-instance-profile", "Name=DemoRoleForEC2")
    assert assoc["IamInstanceProfileAssociation"]["InstanceId"] == iid
    assert assoc["IamInstanceProfileAssociation"]["State"] == "associating"
    users = keycard.exec_aws(iid, "iam", "list-users")
    assert "Users" in users
    keycard.exec_aws(iid, "iam", "list-roles")
    p = keycard.exec_aws(iid, "iam", "create-user", "--user-name", "intruder", check=False)
    assert p.returncode != 0 and "AccessDenied" in p.stderr
    aws("iam", "detach-role-policy", "--role-name", "DemoRoleForEC2", "--policy-arn", IAM_READ_ONLY)
    p = keycard.exec_aws(iid, "iam", "list-users", check=False)
    assert p.returncode != 0 and "AccessDenied" in p.stderr, p.stderr
    # The curl of seed 002 names the role in the path.
    p = keycard.exec(iid, "sh", "-c", 'curl -s "${AWS_EC2_METADATA_SERVICE_ENDPOINT}latest/meta-data/iam/security-credentials/DemoRoleForEC2"')
    assert json.loads(p.stdout)["Code"] == "Success"
