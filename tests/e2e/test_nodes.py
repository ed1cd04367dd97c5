"""Three keycard nodes over one PostgreSQL store (issue 12): what one node
writes is visible and enforced on the others, conflicting writes on two
nodes leave one winner, session credentials from one node work on another,
a node cut off from the database refuses (503) instead of serving stale
state, then recovers; instances belong to the node that launched them,
which runs their metadata service, show impaired when it dies, and move
with ``keycard node adopt`` / ``drain``.

Needs ``KEYCARD_TEST_PG`` (scripts/with-postgres.sh); ``KEYCARD_SKIP_PG=1``
skips. Node C reaches PostgreSQL through a TCP proxy the test can cut.
"""

import json
import secrets
import signal
import subprocess
import socket
import threading
import time
from urllib.parse import urlsplit, urlunsplit

import pytest

from conftest import (
    ACCOUNT,
    allow,
    doc,
    error_code,
    expect_error,
    require_pg_database,
    keycard_bin,
    trust_for,
    unique,
)
from botocore.exceptions import ClientError

# How long a change may take to reach another node before the test gives
# up (not a timing assertion: the measured times are printed).
PROPAGATION_LIMIT = 10.0
STALENESS = "1s"
NODE_TIMEOUT = "2s"


class Proxy:
    """A TCP forwarder to PostgreSQL that can be cut (every connection
    closed, new ones refused) and restored on the same port."""

    def __init__(self, target_host, target_port):
        self.target = (target_host, target_port)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.conns = []
        self.lock = threading.Lock()
        self.server = None
        self.restore()

    def restore(self):
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(64)
        self.server = srv
        threading.Thread(target=self._accept, args=(srv,), daemon=True).start()

    def cut(self):
        srv, self.server = self.server, None
        srv.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()
            self.conns.clear()

    def _accept(self, srv):
        while True:
            try:
                client, _ = srv.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture(scope="module")
def nodes(make_keycard_module, tmp_path_factory):
    url = require_pg_database()
    parts = urlsplit(url)
    proxy = Proxy(parts.hostname, parts.port or 5432)
    netloc = parts.netloc.rsplit(":", 1)[0] if parts.port else parts.netloc
    proxied = urlunsplit(parts._replace(netloc=f"{netloc}:{proxy.port}"))
    key_file = tmp_path_factory.mktemp("nodes") / "master.key"
    key_file.write_text(secrets.token_hex(32))
    common = ("--master-key-file", str(key_file), "--max-staleness", STALENESS, "--node-timeout", NODE_TIMEOUT)
    # One after another: the first creates the account and the token key ring.
    a = make_keycard_module("--store", url, "--node", "a", *common)
    b = make_keycard_module("--store", url, "--node", "b", *common)
    c = make_keycard_module("--store", proxied, "--node", "c", *common)
    yield a, b, c, proxy
    if proxy.server is None:
        proxy.restore()


def until(what, fn, limit=PROPAGATION_LIMIT):
    """Poll fn until it returns a true value; print and return the time taken."""
    start = time.monotonic()
    while True:
        try:
            if fn():
                took = time.monotonic() - start
                print(f"{what}: {took * 1000:.0f} ms")
                return took
        except ClientError:
            pass
        if time.monotonic() - start > limit:
            pytest.fail(f"{what}: not within {limit}s")
        time.sleep(0.01)


def user_with_managed_policy(kc, prefix):
    """A user with a managed policy allowing iam:ListUsers attached, made on
    ``kc``: (name, credentials, policy ARN)."""
    name = unique(prefix)
    _, creds = kc.new_user(name)
    iam = kc.client("iam")
    arn = iam.create_policy(PolicyName=unique("p"), PolicyDocument=doc(allow("iam:ListUsers")))["Policy"]["Arn"]
    iam.attach_user_policy(UserName=name, PolicyArn=arn)
    return name, creds, arn


def test_the_nodes_share_one_account(nodes):
    a, b, c, _ = nodes
    # The same root key on every node (sealed with the shared master key).
    assert a.root_creds == b.root_creds == c.root_creds
    for kc in nodes[:3]:
        assert kc.client("sts").get_caller_identity()["Account"] == ACCOUNT


def test_a_user_and_policy_created_on_a_are_enforced_on_b_and_c(nodes):
    a, b, c, _ = nodes
    name, creds, arn = user_with_managed_policy(a, "node-user")
    for kc, label in ((b, "B"), (c, "C")):
        iam = kc.client("iam", creds=creds)
        until(f"attach on A enforced on {label}", lambda iam=iam: iam.list_users()["Users"] is not None)
        assert kc.client("iam").get_user(UserName=name)["User"]["UserName"] == name
    # Detach on A: C refuses.
    on_c = c.client("iam", creds=creds)
    a.client("iam").detach_user_policy(UserName=name, PolicyArn=arn)

    def denied_on_c():
        try:
            on_c.list_users()
        except ClientError as e:
            return error_code(e) == "AccessDenied"
        return False

    until("detach on A denies on C", denied_on_c)
    expect_error("AccessDenied", b.client("iam", creds=creds).list_users)


def test_concurrent_create_user_on_two_nodes_has_one_winner(nodes):
    a, b, _, _ = nodes
    for _ in range(8):
        name = unique("race")
        results = {}
        barrier = threading.Barrier(2)

        def create(kc, label):
            iam = kc.client("iam")
            barrier.wait()
            try:
                iam.create_user(UserName=name)
                results[label] = "ok"
            except ClientError as e:
                results[label] = error_code(e)

        threads = [threading.Thread(target=create, args=(kc, label)) for kc, label in ((a, "A"), (b, "B"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results.values()) == ["EntityAlreadyExists", "ok"], results
        # Both nodes agree on the one user.
        for kc in (a, b):
            assert kc.client("iam").get_user(UserName=name)["User"]["UserName"] == name


def test_session_credentials_from_a_work_on_b(nodes):
    a, b, _, _ = nodes
    _, creds = a.new_user(policy=allow("sts:AssumeRole"))
    role = a.new_role(trust_for(f"arn:aws:iam::{ACCOUNT}:root"), policy=allow("iam:ListRoles"))
    iam_b = b.client("iam")
    until("role visible on B", lambda: iam_b.get_role(RoleName=role["RoleName"]))
    sts_a = a.client("sts", creds=creds)

    def assume():
        return sts_a.assume_role(RoleArn=role["Arn"], RoleSessionName="node-a")["Credentials"]

    until("user and policy visible on A", assume)
    cr = assume()
    session = {
        "AccessKeyId": cr["AccessKeyId"],
        "SecretAccessKey": cr["SecretAccessKey"],
        "SessionToken": cr["SessionToken"],
    }
    ident = b.client("sts", creds=session).get_caller_identity()
    assert ident["Arn"].endswith(f":assumed-role/{role['RoleName']}/node-a")
    assert b.client("iam", creds=session).list_roles()["Roles"]
    expect_error("AccessDenied", b.client("iam", creds=session).list_users)


def test_a_node_cut_off_from_the_database_refuses_then_recovers(nodes):
    a, _, c, proxy = nodes
    sts = c.client("sts")
    assert sts.get_caller_identity()["Account"] == ACCOUNT
    name, creds, arn = user_with_managed_policy(a, "cut-user")
    user_on_c = c.client("iam", creds=creds)
    until("policy enforced on C", lambda: user_on_c.list_users()["Users"] is not None)
    proxy.cut()
    try:

        def refused():
            try:
                sts.get_caller_identity()
            except ClientError as e:
                return e.response["ResponseMetadata"]["HTTPStatusCode"] == 503 and error_code(e) == "ServiceUnavailable"
            return False

        # A request that came in before the bound passed waits for its
        # audit event to be stored (up to the pool's 10 s timeout); those
        # after it are refused at once.
        until("cut-off node refuses", refused, limit=30)
        # The other nodes keep serving, and writing: a detach C cannot
        # see does not leave C authorizing on its stale copy.
        a.client("iam").detach_user_policy(UserName=name, PolicyArn=arn)
        e = expect_error("ServiceUnavailable", user_on_c.list_users)
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        created = unique("while-cut")
        a.client("iam").create_user(UserName=created)
    finally:
        proxy.restore()
    until("cut-off node recovers", lambda: sts.get_caller_identity()["Account"] == ACCOUNT)
    # It caught up with what happened meanwhile.
    assert c.client("iam").get_user(UserName=created)["User"]["UserName"] == created
    expect_error("AccessDenied", user_on_c.list_users)


# ---- instances belong to nodes (runs last: it kills node A) -----------------


def node_cli(kc, *args):
    """``keycard node ARGS`` through the node ``kc``."""
    p = subprocess.run(
        [str(keycard_bin()), "node", *args, "--data-dir", str(kc.data_dir)], capture_output=True, text=True, timeout=30
    )
    assert p.returncode == 0, p.stderr
    return p.stdout


def imds_creds(kc, iid):
    """Role credentials from the instance's metadata service, as the SDKs
    fetch them (IMDSv2), through the node ``kc``."""
    token = kc.imds_token(iid)
    status, _, body = kc.imds(iid, "/latest/meta-data/iam/security-credentials/", token=token)
    assert status == 200, body
    status, _, body = kc.imds(iid, f"/latest/meta-data/iam/security-credentials/{body.decode()}", token=token)
    assert status == 200, body
    c = json.loads(body)
    return {"AccessKeyId": c["AccessKeyId"], "SecretAccessKey": c["SecretAccessKey"], "SessionToken": c["Token"]}


def serving(kc, iid):
    """Whether node ``kc`` runs the instance's metadata service (False while
    it has not yet heard of the instance)."""
    try:
        return "imdsEndpoint" in kc.instance_access(iid)
    except AssertionError:
        return False


def status_of(kc, iid):
    return kc.client("ec2").describe_instance_status(InstanceIds=[iid])["InstanceStatuses"][0]


def test_instances_follow_their_node_through_death_adoption_and_drain(nodes):
    a, b, c, _ = nodes
    role, prof = a.instance_profile(policy=allow("iam:ListUsers"))
    iid = a.run_instance(prof["InstanceProfileName"])["InstanceId"]
    # A launched it: A runs its metadata service, B only knows whose it is.
    assert a.instance_access(iid)["node"] == "a"
    until("instance visible on B", lambda: b.client("ec2").describe_instances(InstanceIds=[iid]))
    on_b = b.instance_access(iid)
    assert on_b["node"] == "a" and "imdsEndpoint" not in on_b
    issued_by_a = imds_creds(a, iid)
    until("instance role usable on B", lambda: b.client("iam", creds=issued_by_a).list_users()["Users"] is not None)
    # A launch tag places an instance on another live node.
    placed = a.run_instance(
        prof["InstanceProfileName"],
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "keycard:node", "Value": "b"}]}],
    )["InstanceId"]
    assert a.instance_access(placed)["node"] == "b"
    until("placed instance served by B", lambda: serving(b, placed))
    assert b.client("iam", creds=imds_creds(b, placed)).list_users()["Users"] is not None
    expect_error(
        "InvalidParameterValue",
        a.client("ec2").run_instances,
        ImageId="ami-0abcdef1234567890",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "keycard:node", "Value": "nowhere"}]}],
    )
    until("A's instance ok on B", lambda: status_of(b, iid)["InstanceStatus"]["Status"] == "ok")

    # A dies: on B its instance goes impaired, with when it stopped answering.
    a.stop(signal.SIGKILL)
    until("A's instance impaired on B", lambda: status_of(b, iid)["SystemStatus"]["Status"] == "impaired")
    st = status_of(b, iid)
    assert st["InstanceStatus"]["Status"] == "impaired"
    for check in (st["SystemStatus"], st["InstanceStatus"]):
        assert check["Details"][0]["Name"] == "reachability"
        assert check["Details"][0]["Status"] == "failed"
        assert "ImpairedSince" in check["Details"][0]
    impaired = b.client("ec2").describe_instance_status(Filters=[{"Name": "system-status.status", "Values": ["impaired"]}])
    assert [s["InstanceId"] for s in impaired["InstanceStatuses"]] == [iid]
    listed = {n["name"]: n for n in json.loads(node_cli(b, "list", "--json"))["nodes"]}
    assert not listed["a"]["live"] and listed["b"]["live"] and listed["c"]["live"]
    assert listed["a"]["instances"] == 1 and listed["b"]["instances"] >= 1
    # Credentials A handed out keep working.
    assert b.client("iam", creds=issued_by_a).list_users()["Users"] is not None
    # A live node is drained, not adopted.
    p = subprocess.run(
        [str(keycard_bin()), "node", "adopt", "c", "--data-dir", str(b.data_dir)], capture_output=True, text=True
    )
    assert p.returncode != 0 and "live" in p.stderr

    # B adopts A's instance: B's metadata service answers it, with
    # credentials that work, and the real AWS CLI on the instance finds them.
    assert iid in node_cli(b, "adopt", "a")
    assert b.instance_access(iid)["node"] == "b"
    issued_by_b = imds_creds(b, iid)
    assert b.client("iam", creds=issued_by_b).list_users()["Users"] is not None
    ident = b.exec_aws(iid, "sts", "get-caller-identity")
    assert ident["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{role['RoleName']}/{iid}"
    until("adopted instance ok on B", lambda: status_of(b, iid)["InstanceStatus"]["Status"] == "ok")

    # Draining B moves both its instances to C, the only other live node.
    out = node_cli(c, "drain", "b")
    assert f"{iid} -> c" in out and f"{placed} -> c" in out
    until("drained instance served by C", lambda: serving(c, iid))
    assert c.client("iam", creds=imds_creds(c, iid)).list_users()["Users"] is not None
    until("B closed its listener", lambda: not serving(b, iid))
    assert status_of(c, iid)["SystemStatus"]["Status"] == "ok"
