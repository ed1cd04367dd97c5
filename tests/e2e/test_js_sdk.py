"""The unmodified AWS SDK for JavaScript v3 (from npm, versions pinned in
tests/js/package-lock.json) run "on" an instance through ``keycard exec``:
its default credential chain finds the instance role through the instance's
metadata service (IMDSv2) or, with ``--via container``, through the container
credentials endpoint, and keeps working across credential rotations.

The Node side is tests/js/caller.mjs. The module installs its dependencies
with ``npm ci`` once; without node/npm the module is skipped, unless
``CI=true``, where it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from conftest import ACCOUNT, REPO, raw_http

JS_DIR = REPO / "tests" / "js"
CALLER = JS_DIR / "caller.mjs"
MIN_NODE = 20  # @aws-sdk/client-sts 3.1173.0 requires node >= 20

# Rotation soak: each credential set lives 30 s and the metadata service
# serves a new one once the cached set has < 20 s left, i.e. a new set about
# every 10 s. 100 s of calls should therefore see ~10 sets; we require at
# least 4 (a slow machine sees fewer, never more) and at most 12: the SDK asks
# the metadata service again before almost every call (a 30 s set is always
# within its 5-minute refresh window), so a service that minted a new set per
# request instead of serving its cached one would show up as ~200 keys.
SOAK_LIFETIME = 30
SOAK_REFRESH = 20
SOAK_SECONDS = 100
SOAK_INTERVAL_MS = 500
SOAK_MIN_KEYS = 4
SOAK_MAX_KEYS = SOAK_SECONDS // (SOAK_LIFETIME - SOAK_REFRESH) + 2


def _unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: required, not skipping)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module", autouse=True)
def node():
    """The node binary, after ``npm ci`` in tests/js."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    if not node or not npm:
        _unavailable("node and npm are needed for the JavaScript SDK tests (not on PATH)")
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    try:
        major = int(version.lstrip("v").split(".")[0])
    except ValueError:
        major = 0
    if major < MIN_NODE:
        _unavailable(f"node >= {MIN_NODE} is needed for the JavaScript SDK tests, found {version or 'none'}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    p = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=JS_DIR, env=env, capture_output=True, text=True, timeout=600,
    )
    assert p.returncode == 0, f"npm ci failed in {JS_DIR} ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    return node


def run_js(kc, node, iid, *args, via="imds", timeout=120) -> subprocess.CompletedProcess:
    return kc.exec(iid, node, CALLER, *args, via=via, timeout=timeout)


def js_json(kc, node, iid, *args, via="imds", timeout=120) -> dict:
    p = run_js(kc, node, iid, *args, via=via, timeout=timeout)
    assert p.returncode == 0, (
        f"node caller.mjs {' '.join(args)} (via {via}) exited {p.returncode}\n"
        f"stderr: {p.stderr.strip()}\nstdout: {p.stdout.strip()[:4000]}\nkeycard log:\n{kc.log_tail(30)}"
    )
    return json.loads(p.stdout)


def instance_with_role(kc):
    role, prof = kc.instance_profile()
    inst = kc.run_instance(profile=prof["InstanceProfileName"])
    return role, inst["InstanceId"]


def assumed_role_arn(role, iid) -> str:
    return f"arn:aws:sts::{ACCOUNT}:assumed-role/{role['RoleName']}/{iid}"


def imds_current_key(kc, iid, role) -> str:
    """The access key id the instance's metadata service serves right now."""
    token = kc.imds_token(iid)
    status, _, body = kc.imds(iid, f"/latest/meta-data/iam/security-credentials/{role['RoleName']}", token=token)
    assert status == 200, body
    return json.loads(body)["AccessKeyId"]


def container_current_key(kc, iid) -> str:
    """The access key id the container credentials endpoint serves right now."""
    acc = kc.instance_access(iid)
    status, _, body = raw_http(
        "GET", acc["containerCredentialsFullUri"], headers={"Authorization": acc["containerAuthorizationToken"]}
    )
    assert status == 200, body
    return json.loads(body)["AccessKeyId"]


def check_identity(out, kc, role, iid):
    assert out["arn"] == assumed_role_arn(role, iid), out
    assert out["account"] == ACCOUNT, out
    assert out["userId"] == f"{role['RoleId']}:{iid}", out
    key = out["accessKeyId"]
    assert key and key.startswith("ASIA"), out
    assert key != kc.root_creds["AccessKeyId"], "the SDK signed with the root key: exec did not strip it"
    assert out["providerAccessKeyId"] == key, out


def test_default_chain_and_imds_provider_find_the_instance_role(keycard, node):
    role, iid = instance_with_role(keycard)

    out = js_json(keycard, node, iid, "once")
    check_identity(out, keycard, role, iid)
    # The default lifetime (6 h) means one cached set: the SDK signed with
    # exactly what the metadata service hands out.
    assert out["accessKeyId"] == imds_current_key(keycard, iid, role)

    direct = js_json(keycard, node, iid, "imds-direct")
    check_identity(direct, keycard, role, iid)
    assert direct["accessKeyId"] == out["accessKeyId"]


def test_container_endpoint_finds_the_instance_role(keycard, node):
    role, iid = instance_with_role(keycard)
    expected_key = container_current_key(keycard, iid)

    # Default chain: with AWS_CONTAINER_CREDENTIALS_FULL_URI set it uses
    # fromHttp (then fromContainerMetadata); IMDS is disabled by exec.
    out = js_json(keycard, node, iid, "once", via="container")
    check_identity(out, keycard, role, iid)
    assert out["accessKeyId"] == expected_key

    for mode in ("container-direct", "container-metadata"):
        direct = js_json(keycard, node, iid, mode, via="container")
        check_identity(direct, keycard, role, iid)
        assert direct["accessKeyId"] == expected_key, (mode, direct)


@pytest.mark.soak
def test_one_client_keeps_working_across_rotations(make_keycard, node):
    kc = make_keycard(
        "--instance-credential-lifetime", str(SOAK_LIFETIME),
        "--instance-credential-refresh", str(SOAK_REFRESH),
    )
    role, iid = instance_with_role(kc)

    out = js_json(kc, node, iid, "soak", SOAK_SECONDS, SOAK_INTERVAL_MS, timeout=SOAK_SECONDS + 60)
    summary = {k: v for k, v in out.items() if k != "trace"}

    assert out["errors"] == [], f"calls failed during the soak: {json.dumps(summary, indent=1)}"
    # 500 ms apart for 100 s: ~200 calls (each call is local and fast).
    assert out["calls"] >= SOAK_SECONDS * 1000 // SOAK_INTERVAL_MS // 2, summary
    assert out["arns"] == [assumed_role_arn(role, iid)], summary
    keys = out["keys"]
    assert all(k.startswith("ASIA") for k in keys), keys
    assert len(keys) >= SOAK_MIN_KEYS, f"only {len(keys)} credential sets used in {SOAK_SECONDS} s: {summary}"
    assert len(keys) <= SOAK_MAX_KEYS, f"{len(keys)} credential sets in {SOAK_SECONDS} s: not cached? {summary}"

    # Every call was signed, and with a set no older than the previous
    # call's: once the SDK moved on to a new set it never went back.
    signed = [row["signed"] for row in out["trace"]]
    assert None not in signed, "a call was sent without a recorded signing key"
    order = {k: i for i, k in enumerate(keys)}
    positions = [order[k] for k in signed]
    assert positions == sorted(positions), f"signing keys went back to an older set: {signed}"
    # More than one distinct set actually signed requests (not only seen by
    # the provider after the last call).
    assert len(set(signed)) >= SOAK_MIN_KEYS - 1, signed


def test_instance_without_a_role_has_no_credentials(keycard, node):
    iid = keycard.run_instance()["InstanceId"]
    p = run_js(keycard, node, iid, "once")
    assert p.returncode != 0, f"caller.mjs succeeded on an instance without a role: {p.stdout}"
    assert "Could not load credentials from any providers" in p.stderr, p.stderr
    assert p.stdout.strip() == "", p.stdout
