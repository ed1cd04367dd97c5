"""CloudTrail trails, driven through the AWS CLI and boto3: a logging trail
delivers the account's events as gzipped ``{"Records": [...]}`` files
into its bucket under AWS's key layout, authorized by the bucket policy
AWS documents for CloudTrail; event selectors choose management and S3
data events; a bucket that stops allowing CloudTrail gets nothing, and
the events wait (GetTrailStatus says why) until it allows it again."""

from __future__ import annotations

import gzip
import json
import re
import secrets
import time

import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT, REGION, doc, error_code, require_pg_database, unique

KEY = re.compile(
    rf"^(?:(?P<prefix>.+)/)?AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/\d{{4}}/\d{{2}}/\d{{2}}/"
    rf"{ACCOUNT}_CloudTrail_{REGION}_\d{{8}}T\d{{4}}Z_[A-Za-z0-9]{{16}}\.json\.gz$"
)


def cloudtrail_bucket_policy(bucket, trail_name, prefix=""):
    """The bucket policy AWS documents for a trail's bucket."""
    source = f"arn:aws:cloudtrail:{REGION}:{ACCOUNT}:trail/{trail_name}"
    path = f"{prefix}/" if prefix else ""
    return doc(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "AWSCloudTrailAclCheck",
                    "Effect": "Allow",
                    "Principal": {"Service": "cloudtrail.amazonaws.com"},
                    "Action": "s3:GetBucketAcl",
                    "Resource": f"arn:aws:s3:::{bucket}",
                    "Condition": {"StringEquals": {"aws:SourceArn": source}},
                },
                {
                    "Sid": "AWSCloudTrailWrite",
                    "Effect": "Allow",
                    "Principal": {"Service": "cloudtrail.amazonaws.com"},
                    "Action": "s3:PutObject",
                    "Resource": f"arn:aws:s3:::{bucket}/{path}AWSLogs/{ACCOUNT}/*",
                    "Condition": {
                        "StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control", "aws:SourceArn": source}
                    },
                },
            ],
        }
    )


@pytest.fixture(scope="module")
def kc(make_keycard_module):
    return make_keycard_module("--trail-delivery-interval", "500ms")


def records(s3, bucket, prefix=""):
    """Every record of every log file in the bucket, with the keys."""
    keys, out = [], []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            keys.append(o["Key"])
            body = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            out += json.loads(gzip.decompress(body))["Records"]
    return keys, out


def wait_for(fn, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


def test_trail_needs_a_bucket_that_lets_cloudtrail_write(kc):
    ct, s3 = kc.client("cloudtrail"), kc.client("s3")
    name = unique("t")
    with pytest.raises(ClientError) as e:
        ct.create_trail(Name=name, S3BucketName=unique("nobucket"))
    assert error_code(e.value) == "S3BucketDoesNotExistException"
    bucket = unique("trail-nopolicy")
    s3.create_bucket(Bucket=bucket)
    with pytest.raises(ClientError) as e:
        ct.create_trail(Name=name, S3BucketName=bucket)
    assert error_code(e.value) == "InsufficientS3BucketPolicyException"
    # A policy for another trail's ARN does not do.
    s3.put_bucket_policy(Bucket=bucket, Policy=cloudtrail_bucket_policy(bucket, "other-trail"))
    with pytest.raises(ClientError) as e:
        ct.create_trail(Name=name, S3BucketName=bucket)
    assert error_code(e.value) == "InsufficientS3BucketPolicyException"
    for bad in ("ab", "-abc", "a..b", "10.0.0.1"):
        with pytest.raises(ClientError) as e:
            ct.create_trail(Name=bad, S3BucketName=bucket)
        assert error_code(e.value) == "InvalidTrailNameException"
    assert ct.describe_trails()["trailList"] == []


def test_logging_trail_delivers_events_to_s3(kc):
    ct, s3, iam = kc.client("cloudtrail"), kc.client("s3"), kc.client("iam")
    bucket, name, prefix = unique("trail-logs"), unique("audit"), "org/audit"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_policy(Bucket=bucket, Policy=cloudtrail_bucket_policy(bucket, name, prefix))
    created = kc.aws(
        "cloudtrail", "create-trail", "--name", name, "--s3-bucket-name", bucket, "--s3-key-prefix", prefix,
        "--tags-list", "Key=team,Value=sec",
    )
    arn = f"arn:aws:cloudtrail:{REGION}:{ACCOUNT}:trail/{name}"
    assert created["TrailARN"] == arn and created["S3KeyPrefix"] == prefix
    assert created["IncludeGlobalServiceEvents"] is True and created["IsMultiRegionTrail"] is False
    assert ct.get_trail_status(Name=name)["IsLogging"] is False
    before = unique("before-logging")
    iam.create_user(UserName=before)
    kc.aws("cloudtrail", "start-logging", "--name", name)
    user = unique("logged")
    iam.create_user(UserName=user)

    def delivered():
        _, recs = records(s3, bucket)
        return [r for r in recs if r["eventName"] == "CreateUser"] or None

    found = wait_for(delivered, "the CreateUser event in the bucket")
    keys, recs = records(s3, bucket)
    assert keys and all(KEY.match(k) and k.startswith(prefix + "/") for k in keys), keys
    names = [r["requestParameters"]["userName"] for r in found]
    assert user in names and before not in names, "only events after StartLogging"
    ev = next(r for r in found if r["requestParameters"]["userName"] == user)
    assert ev["eventSource"] == "iam.amazonaws.com" and ev["recipientAccountId"] == ACCOUNT
    assert ev["userIdentity"]["type"] == "Root" and ev["eventID"]
    assert all(r["eventCategory"] == "Management" for r in recs), "no data events without selectors"
    status = ct.get_trail_status(Name=name)
    assert status["IsLogging"] is True and "LatestDeliveryTime" in status and "LatestDeliveryError" not in status
    # Each event is delivered once.
    ids = [r["eventID"] for r in recs]
    assert len(ids) == len(set(ids))
    assert [t["Name"] for t in ct.describe_trails(trailNameList=[arn])["trailList"]] == [name]
    assert ct.get_trail(Name=arn)["Trail"]["HomeRegion"] == REGION
    assert {"TrailARN": arn, "Name": name, "HomeRegion": REGION} in ct.list_trails()["Trails"]
    tags = ct.list_tags(ResourceIdList=[arn])["ResourceTagList"][0]["TagsList"]
    assert tags == [{"Key": "team", "Value": "sec"}]


def test_data_event_selectors_and_a_bucket_that_stops_allowing(kc):
    ct, s3 = kc.client("cloudtrail"), kc.client("s3")
    logs, data, name = unique("trail-dest"), unique("trail-data"), unique("data")
    for b in (logs, data):
        s3.create_bucket(Bucket=b)
    policy = cloudtrail_bucket_policy(logs, name)
    s3.put_bucket_policy(Bucket=logs, Policy=policy)
    ct.create_trail(Name=name, S3BucketName=logs)
    sel = ct.put_event_selectors(
        TrailName=name,
        EventSelectors=[
            {
                "ReadWriteType": "WriteOnly",
                "IncludeManagementEvents": False,
                "DataResources": [{"Type": "AWS::S3::Object", "Values": [f"arn:aws:s3:::{data}/"]}],
            }
        ],
    )
    assert sel["EventSelectors"][0]["ReadWriteType"] == "WriteOnly"
    with pytest.raises(ClientError) as e:
        ct.put_event_selectors(TrailName=name, EventSelectors=[{"ReadWriteType": "Sometimes"}])
    assert error_code(e.value) == "InvalidEventSelectorsException"
    ct.start_logging(Name=name)
    s3.put_object(Bucket=data, Key="a.txt", Body=b"x")
    s3.get_object(Bucket=data, Key="a.txt")["Body"].read()
    s3.put_object(Bucket=logs, Key="elsewhere.txt", Body=b"x")

    def puts():
        _, recs = records(s3, logs, prefix="AWSLogs/")
        return [r for r in recs if r["eventName"] == "PutObject"] or None

    got = wait_for(puts, "the PutObject data event")
    _, recs = records(s3, logs, prefix="AWSLogs/")
    assert [r["requestParameters"]["key"] for r in got] == ["a.txt"], "only the selected bucket's writes"
    assert all(r["eventCategory"] == "Data" for r in recs), "no management events, no reads"

    # The bucket stops allowing CloudTrail: nothing is written, the trail says why.
    s3.delete_bucket_policy(Bucket=logs)
    s3.put_object(Bucket=data, Key="while-denied.txt", Body=b"x")
    wait_for(lambda: ct.get_trail_status(Name=name).get("LatestDeliveryError") == "AccessDenied", "a delivery error")
    s3.put_bucket_policy(Bucket=logs, Policy=policy)
    wait_for(
        lambda: any(r["requestParameters"]["key"] == "while-denied.txt" for r in (puts() or [])),
        "the held-back event after the policy came back",
    )
    assert "LatestDeliveryError" not in ct.get_trail_status(Name=name)

    ct.stop_logging(Name=name)
    status = ct.get_trail_status(Name=name)
    assert status["IsLogging"] is False and "StopLoggingTime" in status
    count = len(records(s3, logs, prefix="AWSLogs/")[1])
    s3.put_object(Bucket=data, Key="after-stop.txt", Body=b"x")
    time.sleep(3)  # several delivery intervals: a stopped trail delivers nothing
    assert len(records(s3, logs, prefix="AWSLogs/")[1]) == count
    ct.delete_trail(Name=name)
    with pytest.raises(ClientError) as e:
        ct.get_trail_status(Name=name)
    assert error_code(e.value) == "TrailNotFoundException"


def test_two_nodes_deliver_each_event_once(make_keycard, tmp_path):
    """Over one PostgreSQL store, only one node delivers: every event of a
    trail lands in the bucket once, whichever node answered the call."""
    url = require_pg_database()
    key = tmp_path / "master.key"
    key.write_text(secrets.token_hex(32))
    common = ("--store", url, "--master-key-file", str(key), "--trail-delivery-interval", "300ms")
    a = make_keycard(*common, "--node", "a")
    b = make_keycard(*common, "--node", "b")
    bucket, name = unique("trail-nodes"), unique("nodes")
    a.client("s3").create_bucket(Bucket=bucket)
    a.client("s3").put_bucket_policy(Bucket=bucket, Policy=cloudtrail_bucket_policy(bucket, name))
    ct = a.client("cloudtrail")
    ct.create_trail(Name=name, S3BucketName=bucket)
    ct.start_logging(Name=name)
    made = [unique("via-a") for _ in range(5)] + [unique("via-b") for _ in range(5)]
    for user in made:
        (a if user.startswith("via-a") else b).client("iam").create_user(UserName=user)

    def all_delivered():
        _, recs = records(a.client("s3"), bucket)
        got = [r["requestParameters"]["userName"] for r in recs if r["eventName"] == "CreateUser"]
        return got if set(made) <= set(got) else None

    got = wait_for(all_delivered, "every CreateUser event")
    time.sleep(1.5)  # further delivery rounds on both nodes
    _, recs = records(a.client("s3"), bucket)
    ids = [r["eventID"] for r in recs]
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    assert sorted(got) == sorted(made)
