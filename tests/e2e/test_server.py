"""The binary's contract: start-up, the credentials file it writes, root
keys given on the command line, routing by the signing scope's service,
graceful shutdown."""

import configparser
import os
import stat
import time

from conftest import ACCOUNT, Keycard, expect_error, signed

FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}


def test_credentials_file(keycard):
    path = keycard.credentials_file
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode & 0o077 == 0, f"credentials file is readable by others: {oct(mode)}"
    cp = configparser.ConfigParser()
    cp.read(path)
    sec = cp["default"]
    assert sec["aws_access_key_id"].startswith("AKIA")
    assert len(sec["aws_access_key_id"]) == 20
    assert len(sec["aws_secret_access_key"]) == 40
    assert sec.get("region") == "us-east-1"


def test_cli_with_only_the_credentials_file(keycard):
    """As the README tells a user: point the CLI at the file, nothing else."""
    p = keycard.aws_raw("sts", "get-caller-identity",
                        env_extra={"AWS_DEFAULT_REGION": None, "AWS_CONFIG_FILE": "/dev/null"})
    assert p.returncode == 0, p.stderr
    assert f"arn:aws:iam::{ACCOUNT}:root" in p.stdout


def test_root_keys_from_flags(make_keycard):
    key, secret = "AKIAKEYCARDTESTROOT1", "keycardTestRootSecretKey0123456789abcdef"
    kc = make_keycard("--root-access-key-id", key, "--root-secret-access-key", secret)
    assert kc.root_creds == {"AccessKeyId": key, "SecretAccessKey": secret}
    ident = kc.client("sts").get_caller_identity()
    assert ident["Arn"] == f"arn:aws:iam::{ACCOUNT}:root"


def test_graceful_shutdown_and_fast_start(tmp_path):
    kc = Keycard(tmp_path)
    t0 = time.monotonic()
    kc.start()
    started = time.monotonic() - t0
    try:
        assert "listening on" in kc.log_tail()
        kc.client("iam").create_user(UserName="before-stop")
    finally:
        rc = kc.stop()
    assert rc == 0, kc.log_tail()
    assert started < 10, f"start-up took {started:.1f}s"
    # A second start on the same dir keeps the same root key.
    first = dict(kc.root_creds)
    kc.start()
    try:
        assert kc.root_creds == first
        assert kc.client("iam").get_user(UserName="before-stop")["User"]["UserName"] == "before-stop"
    finally:
        kc.stop()


def test_unknown_service_is_4xx(keycard):
    status, _, body = signed("POST", keycard.endpoint + "/", keycard.root_creds, "dynamodb",
                             b'{"TableName": "t"}', {"Content-Type": "application/x-amz-json-1.0",
                                                     "X-Amz-Target": "DynamoDB_20120810.DescribeTable"})
    assert 400 <= status < 500, (status, body)


def test_same_port_serves_every_api(keycard):
    assert keycard.client("iam").list_users()["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert keycard.client("sts").get_caller_identity()["Account"] == ACCOUNT
    assert keycard.client("cloudtrail").lookup_events(MaxResults=1)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert keycard.client("s3").list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200
    expect_error("NoSuchEntity", keycard.client("iam").get_role, RoleName="nope")
