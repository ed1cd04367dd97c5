"""``--instance-network netns``: each running instance is a Linux network
namespace with its private address and 169.254.169.254:80, so the seed's
literal ``curl http://169.254.169.254/...`` works with no environment at
all. Needs root and ``ip netns`` (CI has both; elsewhere the module is
skipped unless CI=true)."""

import json
import os
import shutil
import subprocess
import time

import pytest

from conftest import ACCOUNT, EC2_TRUST, keycard_bin


def _netns_available() -> bool:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    return subprocess.run(["ip", "netns", "list"], capture_output=True).returncode == 0


if not _netns_available():
    if os.environ.get("CI") == "true":
        raise RuntimeError("CI must run the netns tests: root and iproute2 are required")
    pytest.skip("needs root and `ip netns`", allow_module_level=True)


def namespaces() -> set:
    """keycard's namespaces on this host (of any server)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    names = {line.split()[0] for line in out.splitlines() if line.strip()}
    return {n for n in names if n.startswith("kc") and "-i-" in n}


def has_ns(iid) -> bool:
    return any(n.endswith(f"-{iid}") for n in namespaces())


def wait_until_serving(kc, iid):
    """What a user does before logging in: `aws ec2 wait instance-status-ok`
    (the status stays `initializing` until the metadata service listens)."""
    kc.client("ec2").get_waiter("instance_status_ok").wait(InstanceIds=[iid], WaiterConfig={"Delay": 1, "MaxAttempts": 30})


def wait_for(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


@pytest.fixture(scope="module")
def kc(make_keycard_module):
    return make_keycard_module("--instance-network", "netns")


@pytest.fixture(scope="module")
def seed_instance(kc):
    work = kc.workdir
    (work / "trust-policy.json").write_text(json.dumps(EC2_TRUST, indent=2))
    kc.aws("iam", "create-role", "--role-name", "EC2S3AccessRole", "--assume-role-policy-document", "file://trust-policy.json")
    kc.aws("iam", "attach-role-policy", "--role-name", "EC2S3AccessRole", "--policy-arn", "arn:aws:iam::aws:policy/IAMReadOnlyAccess")
    kc.aws("iam", "create-instance-profile", "--instance-profile-name", "EC2S3InstanceProfile")
    kc.aws("iam", "add-role-to-instance-profile", "--instance-profile-name", "EC2S3InstanceProfile", "--role-name", "EC2S3AccessRole")
    iid = kc.aws(
        "ec2", "run-instances", "--image-id", "ami-0abcdef1234567890", "--instance-type", "t3.micro",
        "--iam-instance-profile", "Name=EC2S3InstanceProfile",
    )["Instances"][0]["InstanceId"]
    assert wait_for(lambda: has_ns(iid))
    wait_until_serving(kc, iid)
    return iid


def test_seed_curl_works_with_no_environment(kc, seed_instance):
    curl = shutil.which("curl")
    p = kc.exec(seed_instance, "env", "-i", curl, "-s", "http://169.254.169.254/latest/meta-data/iam/security-credentials/EC2S3AccessRole")
    assert p.returncode == 0, p.stderr
    c = json.loads(p.stdout)
    assert c["Code"] == "Success" and c["AccessKeyId"].startswith("ASIA")
    ident = kc.client("sts", creds={"AccessKeyId": c["AccessKeyId"], "SecretAccessKey": c["SecretAccessKey"], "SessionToken": c["Token"]}).get_caller_identity()
    assert ident["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/EC2S3AccessRole/{seed_instance}"


def test_imdsv2_and_private_address_inside_the_namespace(kc, seed_instance):
    script = (
        'T=$(curl -s -X PUT http://169.254.169.254/latest/api/token -H "X-aws-ec2-metadata-token-ttl-seconds: 60") && '
        'curl -s -H "X-aws-ec2-metadata-token: $T" http://169.254.169.254/latest/meta-data/local-ipv4'
    )
    p = kc.exec(seed_instance, "sh", "-c", script)
    inst = kc.client("ec2").describe_instances(InstanceIds=[seed_instance])["Reservations"][0]["Instances"][0]
    assert p.stdout == inst["PrivateIpAddress"]
    p = kc.exec(seed_instance, "ip", "-4", "addr", "show", "dev", "lo")
    assert inst["PrivateIpAddress"] in p.stdout


def test_cli_in_the_namespace_uses_the_role(kc, seed_instance):
    out = kc.exec_aws(seed_instance, "sts", "get-caller-identity")
    assert out["Arn"].endswith(f"/EC2S3AccessRole/{seed_instance}")
    kc.exec_aws(seed_instance, "iam", "list-users")
    p = kc.exec_aws(seed_instance, "iam", "create-user", "--user-name", "x", check=False)
    assert p.returncode != 0 and "AccessDenied" in p.stderr


def test_namespaces_are_isolated(kc, seed_instance):
    other = kc.run_instance()["InstanceId"]
    assert wait_for(lambda: has_ns(other))
    wait_until_serving(kc, other)
    p = kc.exec(other, "curl", "-s", "http://169.254.169.254/latest/meta-data/instance-id")
    assert p.stdout == other
    p = kc.exec(seed_instance, "curl", "-s", "http://169.254.169.254/latest/meta-data/instance-id")
    assert p.stdout == seed_instance
    # The other instance has no role: nothing of the first one's leaks.
    p = kc.exec(other, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://169.254.169.254/latest/meta-data/iam/security-credentials/EC2S3AccessRole")
    assert p.stdout == "404"
    # Nothing outside the namespace is reachable (the host's keycard port).
    p = kc.exec(other, "curl", "-s", "-m", "2", f"http://127.0.0.1:{kc.port + 1}/")
    assert p.returncode != 0


def test_terminate_removes_the_namespace(kc):
    iid = kc.run_instance()["InstanceId"]
    assert wait_for(lambda: has_ns(iid))
    kc.client("ec2").stop_instances(InstanceIds=[iid])
    assert wait_for(lambda: not has_ns(iid))
    kc.client("ec2").start_instances(InstanceIds=[iid])
    assert wait_for(lambda: has_ns(iid))
    kc.client("ec2").terminate_instances(InstanceIds=[iid])
    assert wait_for(lambda: not has_ns(iid))


def test_shutdown_removes_all_and_restart_recreates(kc, seed_instance):
    ns = kc.instance_access(seed_instance)["netns"]
    assert ns in namespaces() and ns.endswith(seed_instance)
    prefix = ns[: -len(seed_instance)]
    kc.stop()
    assert not [n for n in namespaces() if n.startswith(prefix)], namespaces()
    kc.start()
    assert wait_for(lambda: has_ns(seed_instance))
    # The namespace appears a moment before its metadata listener binds.
    curl = ("curl", "-s", "http://169.254.169.254/latest/meta-data/instance-id")
    assert wait_for(lambda: kc.exec(seed_instance, *curl).stdout == seed_instance)


def test_user_key_used_on_an_instance_with_a_role_is_a_finding(kc, seed_instance):
    """KC-IAM-012: the workload moved to an instance role but still signs
    with an IAM user's key; keycard sees the key's calls come from the
    instance's private address."""
    import sys

    user, creds = kc.new_user(policy={"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}]})
    p = kc.exec(seed_instance, "env", f"AWS_ACCESS_KEY_ID={creds['AccessKeyId']}",
                f"AWS_SECRET_ACCESS_KEY={creds['SecretAccessKey']}",
                sys.executable, "-m", "awscli", "--output", "json", "sts", "get-caller-identity")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["Arn"].endswith(f"user/{user['UserName']}")

    def finding():
        out = subprocess.run([str(keycard_bin()), "posture", "--data-dir", str(kc.data_dir), "--json"],
                             capture_output=True, text=True, timeout=60, check=True)
        return [f for f in json.loads(out.stdout)["findings"]
                if f["rule"] == "KC-IAM-012" and f["resource"].endswith(creds["AccessKeyId"])]

    found = finding()
    assert found and seed_instance in found[0]["detail"] and found[0]["severity"] == "HIGH"
    kc.client("iam").delete_access_key(UserName=user["UserName"], AccessKeyId=creds["AccessKeyId"])
    assert finding() == []


def test_instance_credentials_are_bound_by_aws_policy_in_netns(kc):
    """Issue 10 in netns mode: with AWS's documented binding policy on the
    role, the role's credentials work inside the instance's namespace and
    are refused (and reported) from the host."""
    from botocore.exceptions import ClientError

    from test_instance_binding import AWS_BINDING_POLICY, OUTSIDE, of, sightings

    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iam:ListRoles", "Resource": "*"}] + AWS_BINDING_POLICY["Statement"]}
    role, prof = kc.instance_profile(policy=policy)
    iid = kc.run_instance(prof["InstanceProfileName"])["InstanceId"]
    assert wait_for(lambda: has_ns(iid))
    wait_until_serving(kc, iid)
    kc.exec_aws(iid, "iam", "list-roles")
    # Copied out of the instance's metadata service, from inside it.
    p = kc.exec(iid, "curl", "-s", f"http://169.254.169.254/latest/meta-data/iam/security-credentials/{role['RoleName']}")
    c = json.loads(p.stdout)
    creds = {"AccessKeyId": c["AccessKeyId"], "SecretAccessKey": c["SecretAccessKey"], "SessionToken": c["Token"]}
    with pytest.raises(ClientError) as e:
        kc.client("iam", creds=creds).list_roles()
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    f = of(sightings(kc), iid, OUTSIDE)
    assert len(f) == 1 and f[0]["Service"]["Count"] == 1
