"""Two keycard servers on one machine: their instances' metadata services
never collide (the second server's listener moves to another loopback
address and ``keycard exec`` / the admin lookup follow it), and an instance
whose metadata service cannot open shows as impaired in
DescribeInstanceStatus, as AWS reports a failed reachability check."""

import socket
import time

import pytest

from conftest import allow, free_port

READ = allow(["iam:ListUsers"])


def identity_of(kc, instance_id):
    """(instance id, role name) as the instance's own metadata service tells."""
    token = kc.imds_token(instance_id)
    status, _, iid = kc.imds(instance_id, "/latest/meta-data/instance-id", token=token)
    assert status == 200, iid
    status, _, role = kc.imds(instance_id, "/latest/meta-data/iam/security-credentials/", token=token)
    assert status == 200, role
    return iid.decode(), role.decode().strip()


def instance_status(kc, instance_id, **kw):
    out = kc.client("ec2").describe_instance_status(InstanceIds=[instance_id], **kw)["InstanceStatuses"]
    assert len(out) == 1, out
    return out[0]


def wait_status(kc, instance_id, want, timeout=10.0):
    """Poll until the instance status is ``want`` (listeners open
    asynchronously after launch); returns the last status seen."""
    deadline = time.monotonic() + timeout
    while True:
        st = instance_status(kc, instance_id)
        if st["InstanceStatus"]["Status"] == want or time.monotonic() > deadline:
            return st
        time.sleep(0.05)


def test_two_servers_same_imds_port_each_instance_answers_for_itself(make_keycard):
    port = str(free_port())
    kcs = [make_keycard("--imds-port", port), make_keycard("--imds-port", port)]
    launched = []
    for kc in kcs:
        role, prof = kc.instance_profile(policy=READ)
        iid = kc.run_instance(prof["InstanceProfileName"])["InstanceId"]
        launched.append((kc, iid, role["RoleName"]))

    endpoints = [kc.instance_access(iid)["imdsEndpoint"] for kc, iid, _ in launched]
    # Both fresh servers gave their first instance the same slot; the
    # second server's listener had to move.
    assert endpoints[0] != endpoints[1], endpoints
    assert all(e.endswith(f":{port}/") for e in endpoints), endpoints

    for kc, iid, role in launched:
        assert identity_of(kc, iid) == (iid, role)
        assert wait_status(kc, iid, "ok")["InstanceStatus"]["Status"] == "ok"
        # `keycard exec` reaches the same instance's identity.
        ident = kc.exec_aws(iid, "sts", "get-caller-identity")
        assert ident["Arn"].endswith(f":assumed-role/{role}/{iid}"), ident


@pytest.fixture
def blocked_port():
    """A port held by a wildcard listener: no loopback address can take it."""
    s = socket.socket()
    s.bind(("0.0.0.0", 0))
    s.listen()
    yield s
    s.close()


def test_instance_whose_imds_cannot_open_is_impaired(make_keycard, blocked_port):
    port = blocked_port.getsockname()[1]
    kc = make_keycard("--imds-port", str(port))
    iid = kc.run_instance()["InstanceId"]

    st = wait_status(kc, iid, "impaired")
    assert st["InstanceState"]["Name"] == "running"
    assert st["SystemStatus"]["Status"] == "ok"
    inst = st["InstanceStatus"]
    assert inst["Status"] == "impaired", st
    [detail] = inst["Details"]
    assert detail["Name"] == "reachability" and detail["Status"] == "failed", detail
    assert "ImpairedSince" in detail
    assert "cannot open the instance's metadata service" in kc.log_tail(200)

    ec2 = kc.client("ec2")
    impaired = ec2.describe_instance_status(Filters=[{"Name": "instance-status.status", "Values": ["impaired"]}])
    assert [s["InstanceId"] for s in impaired["InstanceStatuses"]] == [iid]
    ok = ec2.describe_instance_status(Filters=[{"Name": "instance-status.status", "Values": ["ok"]}])
    assert ok["InstanceStatuses"] == []

    # Once the port is free, the next reconciliation opens it: ok again.
    blocked_port.close()
    kc.run_instance()
    st = wait_status(kc, iid, "ok")
    assert st["InstanceStatus"]["Status"] == "ok", st
    assert "ImpairedSince" not in st["InstanceStatus"]["Details"][0]
    token = kc.imds_token(iid)
    status, _, body = kc.imds(iid, "/latest/meta-data/instance-id", token=token)
    assert (status, body.decode()) == (200, iid)
