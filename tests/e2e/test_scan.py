"""`keycard scan`: hardcoded keys in files, user-data blobs and git history,
each key id checked against the running keycard (active / deleted / unknown
and whose), in human, JSON and SARIF output, without ever printing a secret.
"""

from __future__ import annotations

import base64
import gzip
import json
import secrets
import subprocess

import pytest

from conftest import ACCOUNT, keycard_bin, trust_for, unique

UNKNOWN_ACCOUNT = "999988887777"


def fake_key_id(account: str, prefix: str = "AKIA") -> str:
    """A key id in AWS's format carrying `account` (as trufflehog decodes it)."""
    r = secrets.token_bytes(5)
    x = ((r[0] & 0x80) << 40) | (int(account) << 7) | (r[0] & 0x7F)
    raw = x.to_bytes(6, "big") + r[1:]
    return prefix + base64.b32encode(raw).decode().rstrip("=")


def fake_secret() -> str:
    while True:
        s = base64.b64encode(secrets.token_bytes(30)).decode()
        if "EXAMPLE" not in s:
            return s


def run_scan(kc, *args, cwd):
    return subprocess.run(
        [str(keycard_bin()), "scan", *args, "--data-dir", str(kc.data_dir)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def git(repo, *args):
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def estate(keycard, tmp_path_factory):
    """Keys in keycard and a fixture tree that leaks them."""
    iam = keycard.client("iam")
    users = {}
    for role in ("active", "deleted", "history"):
        name = unique(f"scan-{role}")
        iam.create_user(UserName=name, Path="/apps/")
        k = iam.create_access_key(UserName=name)["AccessKey"]
        users[role] = (name, k["AccessKeyId"], k["SecretAccessKey"])
    name, kid, _ = users["deleted"]
    iam.delete_access_key(UserName=name, AccessKeyId=kid)
    unknown = (fake_key_id(UNKNOWN_ACCOUNT), fake_secret())

    base = tmp_path_factory.mktemp("scan")
    tree = base / "tree"
    (tree / "app").mkdir(parents=True)
    (tree / "deploy").mkdir()
    (tree / "docs").mkdir()
    (tree / "assets").mkdir()
    _, aid, asec = users["active"]
    (tree / "app/settings.py").write_text(
        f'import boto3\n\nAWS_ACCESS_KEY_ID = "{aid}"\nAWS_SECRET_ACCESS_KEY = "{asec}"\n'
    )
    _, did, dsec = users["deleted"]
    (tree / "deploy/credentials").write_text(
        f"[default]\naws_access_key_id = {did}\naws_secret_access_key = {dsec}\n"
    )
    (tree / "deploy/vendor.env").write_text(f"AWS_ACCESS_KEY_ID={unknown[0]}\nAWS_SECRET_ACCESS_KEY={unknown[1]}\n")
    (tree / "docs/README.md").write_text(
        "Configure:\n\n    aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"
        "    aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"
    )
    (tree / "assets/checksums.txt").write_text(f"bundle.js {fake_secret()}\n{secrets.token_hex(20)}\n")
    script = f"#!/bin/bash\nexport AWS_ACCESS_KEY_ID={aid}\nexport AWS_SECRET_ACCESS_KEY={asec}\n"
    (tree / "deploy/user-data.b64").write_text(base64.b64encode(gzip.compress(script.encode())).decode() + "\n")
    (tree / "assets/logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00" + f"{unknown[0]}".encode())

    repo = base / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    _, hid, hsec = users["history"]
    (repo / "ci.env").write_text(f"# ci\naws_access_key_id={hid}\naws_secret_access_key={hsec}\n")
    git(repo, "add", "ci.env")
    git(repo, "commit", "-q", "-m", "add ci")
    leak_commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    (repo / "ci.env").write_text("# ci: credentials come from the role now\n")
    git(repo, "commit", "-q", "-am", "remove key")

    all_secrets = [asec, dsec, hsec, unknown[1]]
    return {
        "base": base,
        "users": users,
        "unknown": unknown,
        "secrets": all_secrets,
        "leak_commit": leak_commit,
    }


def by_path(findings, path):
    return [f for f in findings if f["path"] == path]


def one(findings, path, kind, via=()):
    got = [f for f in by_path(findings, path) if f["kind"] == kind and tuple(f["via"]) == tuple(via)]
    assert len(got) == 1, (path, kind, findings)
    return got[0]


def test_tree_findings_statuses_owners_and_severities(keycard, estate):
    p = run_scan(keycard, "tree", "--format", "json", cwd=estate["base"])
    assert p.returncode == 1, p.stderr
    report = json.loads(p.stdout)
    assert report["version"] == 1 and report["verified"] is True
    f = report["findings"]

    name, aid, _ = estate["users"]["active"]
    arn = f"arn:aws:iam::{ACCOUNT}:user/apps/{name}"
    kid = one(f, "tree/app/settings.py", "access-key-id")
    assert (kid["status"], kid["severity"], kid["ownerArn"]) == ("active", "critical", arn)
    assert (kid["accessKeyId"], kid["account"], kid["ownerAccount"]) == (aid, ACCOUNT, ACCOUNT)
    assert (kid["line"], kid["column"], kid["paired"]) == (3, 22, True)
    assert kid["createdDate"].endswith("Z")
    sk = one(f, "tree/app/settings.py", "secret-access-key")
    assert (sk["accessKeyId"], sk["severity"], sk["line"]) == (aid, "critical", 4)

    name, did, _ = estate["users"]["deleted"]
    d = one(f, "tree/deploy/credentials", "access-key-id")
    assert (d["status"], d["severity"]) == ("deleted", "low")
    assert d["ownerArn"] == f"arn:aws:iam::{ACCOUNT}:user/apps/{name}"
    assert d["deletedDate"].endswith("Z")

    uid, _ = estate["unknown"]
    u = one(f, "tree/deploy/vendor.env", "access-key-id")
    assert (u["status"], u["severity"], u["account"], u.get("ownerArn")) == ("unknown", "high", UNKNOWN_ACCOUNT, None)

    blob = one(f, "tree/deploy/user-data.b64", "access-key-id", via=("base64", "gzip"))
    assert (blob["status"], blob["severity"], blob["accessKeyId"]) == ("active", "critical", aid)
    one(f, "tree/deploy/user-data.b64", "secret-access-key", via=("base64", "gzip"))

    # Allow-listed documentation keys, a high-entropy checksum and a binary file: nothing.
    for quiet in ("tree/docs/README.md", "tree/assets/checksums.txt", "tree/assets/logo.png"):
        assert by_path(f, quiet) == [], quiet
    assert report["summary"]["total"] == len(f) == 8
    assert report["summary"]["critical"] == 4


def test_git_history_finds_the_removed_key(keycard, estate):
    p = run_scan(keycard, "repo", "--git", "--format", "json", cwd=estate["base"])
    assert p.returncode == 1, p.stderr
    f = json.loads(p.stdout)["findings"]
    name, hid, _ = estate["users"]["history"]
    kid = one(f, "ci.env", "access-key-id")
    assert kid["commit"] == estate["leak_commit"]
    assert (kid["line"], kid["status"], kid["severity"], kid["accessKeyId"]) == (2, "active", "critical", hid)
    assert kid["ownerArn"] == f"arn:aws:iam::{ACCOUNT}:user/apps/{name}"
    assert one(f, "ci.env", "secret-access-key")["commit"] == estate["leak_commit"]
    # The working tree no longer has it.
    p = run_scan(keycard, "repo", "--format", "json", cwd=estate["base"])
    assert (p.returncode, json.loads(p.stdout)["findings"]) == (0, [])


def test_sarif_has_the_required_fields(keycard, estate):
    p = run_scan(keycard, "tree", "repo", "--git", "--format", "sarif", cwd=estate["base"])
    assert p.returncode == 1, p.stderr
    log = json.loads(p.stdout)
    assert log["version"] == "2.1.0" and log["$schema"].endswith("sarif-2.1.0.json")
    run = log["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["name"] == "keycard"
    rule_ids = [r["id"] for r in driver["rules"]]
    assert {"aws-access-key-id", "aws-secret-access-key", "aws-session-token", "private-key"} <= set(rule_ids)
    for r in driver["rules"]:
        assert r["shortDescription"]["text"] and float(r["properties"]["security-severity"]) > 0
    assert len(run["results"]) == 10
    for res in run["results"]:
        assert res["ruleId"] in rule_ids and rule_ids[res["ruleIndex"]] == res["ruleId"]
        assert res["level"] in ("error", "warning", "note") and res["message"]["text"]
        loc = res["locations"][0]["physicalLocation"]
        assert loc["artifactLocation"]["uri"] and not loc["artifactLocation"]["uri"].startswith("/")
        assert loc["region"]["startLine"] >= 1 and loc["region"]["startColumn"] >= 1
        assert res["partialFingerprints"]


def test_no_secret_in_any_output(keycard, estate):
    outs = []
    for fmt in ("human", "json", "sarif"):
        p = run_scan(keycard, "tree", "repo", "--git", "--format", fmt, cwd=estate["base"])
        assert p.returncode == 1
        outs.append(p.stdout + p.stderr)
    human = outs[0]
    assert "CRITICAL" in human and "LOW" in human and "HIGH" in human
    for out in outs:
        for s in estate["secrets"]:
            assert s not in out
            assert s[4:24] not in out


def test_exit_codes_and_unverified(keycard, estate, tmp_path):
    base = estate["base"]
    # Nothing found: 0.
    p = run_scan(keycard, "tree/docs", "tree/assets", cwd=base)
    assert p.returncode == 0, p.stdout + p.stderr
    # Only a deleted key (low): below the default threshold, above --fail-on low.
    assert run_scan(keycard, "tree/deploy/credentials", cwd=base).returncode == 0
    assert run_scan(keycard, "tree/deploy/credentials", "--fail-on", "low", cwd=base).returncode == 1
    # Unknown key with its secret is high; not critical.
    assert run_scan(keycard, "tree/deploy/vendor.env", "--fail-on", "critical", cwd=base).returncode == 0
    assert run_scan(keycard, "tree/deploy/vendor.env", cwd=base).returncode == 1
    # A missing path is an error (2).
    assert run_scan(keycard, "no-such-dir", cwd=base).returncode == 2
    # No server for the data dir: key ids are unverified.
    p = subprocess.run(
        [str(keycard_bin()), "scan", "tree/app", "--format", "json", "--data-dir", str(tmp_path)],
        cwd=base,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 1
    report = json.loads(p.stdout)
    assert report["verified"] is False
    assert {f["status"] for f in report["findings"]} == {"unverified"}
    assert {f["severity"] for f in report["findings"]} == {"high"}


def test_admin_endpoint_answers_for_key_ids(keycard, estate):
    _, aid, _ = estate["users"]["active"]
    v = keycard.admin_get(f"/_keycard/admin/access-keys/{aid}")
    assert v["status"] == "active" and v["accessKeyId"] == aid and "secretAccessKey" not in v
    assert keycard.admin_get(f"/_keycard/admin/access-keys/{estate['unknown'][0]}")["status"] == "unknown"


def test_session_key_is_attributed_to_its_role_session(keycard, tmp_path):
    user, creds = keycard.new_user()
    role = keycard.new_role(trust_for(user["Arn"]))
    sts = keycard.client("sts", creds=creds)
    out = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="leaky")
    c = out["Credentials"]
    (tmp_path / "session.env").write_text(
        f"AWS_ACCESS_KEY_ID={c['AccessKeyId']}\nAWS_SECRET_ACCESS_KEY={c['SecretAccessKey']}\n"
        f"AWS_SESSION_TOKEN={c['SessionToken']}\n"
    )
    p = run_scan(keycard, "session.env", "--format", "json", cwd=tmp_path)
    assert p.returncode == 1, p.stderr
    f = json.loads(p.stdout)["findings"]
    assert {x["kind"] for x in f} == {"access-key-id", "secret-access-key", "session-token"}
    kid = one(f, "session.env", "access-key-id")
    assert (kid["status"], kid["severity"]) == ("active", "critical")
    assert kid["ownerArn"] == out["AssumedRoleUser"]["Arn"]
    assert kid["expiration"].endswith("Z")
    tok = one(f, "session.env", "session-token")
    assert tok["accessKeyId"] == c["AccessKeyId"] and tok["severity"] == "critical"
    for secret in (c["SecretAccessKey"], c["SessionToken"]):
        assert secret not in p.stdout
