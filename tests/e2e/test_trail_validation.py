"""CloudTrail log file integrity validation and advanced event selectors.

A trail with log file validation delivers signed, chained digest files
next to its log files; the unmodified ``aws cloudtrail validate-logs``
(its S3 client reaching keycard through ``AWS_ENDPOINT_URL``) finds them
all valid, then reports a tampered log file and a deleted digest. Advanced
event selectors choose which events reach the bucket."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import time
from datetime import datetime, timedelta, timezone

import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT, REGION, error_code, unique
from test_trails import cloudtrail_bucket_policy, records, wait_for

DIGEST_KEY = re.compile(
    rf"^AWSLogs/{ACCOUNT}/CloudTrail-Digest/{REGION}/\d{{4}}/\d{{2}}/\d{{2}}/"
    rf"{ACCOUNT}_CloudTrail-Digest_{REGION}_(?P<name>[^_]+)_{REGION}_\d{{8}}T\d{{6}}Z\.json\.gz$"
)
DIGEST_FIELDS = {
    "awsAccountId", "digestStartTime", "digestEndTime", "digestS3Bucket", "digestS3Object",
    "digestPublicKeyFingerprint", "digestSignatureAlgorithm", "newestEventTime", "oldestEventTime",
    "previousDigestS3Bucket", "previousDigestS3Object", "previousDigestHashValue",
    "previousDigestHashAlgorithm", "previousDigestSignature", "logFiles",
}


@pytest.fixture(scope="module")
def kc(make_keycard_module):
    return make_keycard_module("--trail-delivery-interval", "300ms", "--trail-digest-interval", "2s")


def digests(s3, bucket):
    """Every digest in the bucket, oldest first: (key, raw, document, metadata)."""
    out = []
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"AWSLogs/{ACCOUNT}/CloudTrail-Digest/")
    for o in sorted(listed.get("Contents", []), key=lambda o: o["Key"]):
        got = s3.get_object(Bucket=bucket, Key=o["Key"])
        raw = gzip.decompress(got["Body"].read())
        out.append((o["Key"], raw, json.loads(raw), got["Metadata"]))
    return out


def validate_logs(kc, arn, start):
    """``aws cloudtrail validate-logs`` as shipped; its S3 client has no
    --endpoint-url, so AWS_ENDPOINT_URL points it at keycard."""
    return kc.aws_raw(
        "cloudtrail", "validate-logs", "--trail-arn", arn, "--start-time", start, "--verbose",
        env_extra={"AWS_ENDPOINT_URL": kc.endpoint},
    )


def test_validate_logs_finds_tampering_and_gaps(kc):
    ct, s3, iam = kc.client("cloudtrail"), kc.client("s3"), kc.client("iam")
    bucket, name = unique("trail-valid"), unique("valid")
    arn = f"arn:aws:cloudtrail:{REGION}:{ACCOUNT}:trail/{name}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_policy(Bucket=bucket, Policy=cloudtrail_bucket_policy(bucket, name))
    created = kc.aws(
        "cloudtrail", "create-trail", "--name", name, "--s3-bucket-name", bucket, "--enable-log-file-validation"
    )
    assert created["LogFileValidationEnabled"] is True
    assert ct.get_trail(Name=name)["Trail"]["LogFileValidationEnabled"] is True
    start = (datetime.now(timezone.utc) - timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    ct.start_logging(Name=name)
    users = [unique("digested") for _ in range(3)]
    for u in users:
        iam.create_user(UserName=u)

    def chain_with_logs():
        ds = digests(s3, bucket)
        listed = [f for _, _, d, _ in ds for f in d["logFiles"]]
        return ds if len(ds) >= 3 and listed and not ds[-1][2]["logFiles"] else None

    wait_for(chain_with_logs, "three digests, one listing log files, the newest empty", timeout=30)
    ct.stop_logging(Name=name)
    time.sleep(0.6)  # a delivery pass in flight when logging stopped
    ds = digests(s3, bucket)
    assert ct.get_trail_status(Name=name).get("LatestDigestDeliveryTime")

    # AWS's layout, fields, metadata and chain.
    keys = [k for k, *_ in ds]
    assert all(DIGEST_KEY.match(k) and DIGEST_KEY.match(k)["name"] == name for k in keys), keys
    first = ds[0][2]
    assert set(first) == DIGEST_FIELDS
    assert first["previousDigestS3Object"] is None and first["previousDigestSignature"] is None
    for (pkey, praw, _, pmeta), (key, _, doc, meta) in zip(ds, ds[1:]):
        assert set(doc) == DIGEST_FIELDS
        assert doc["digestS3Bucket"] == bucket and doc["digestS3Object"] == key
        assert doc["awsAccountId"] == ACCOUNT and doc["digestSignatureAlgorithm"] == "SHA256withRSA"
        assert meta["signature-algorithm"] == "SHA256withRSA" and re.fullmatch(r"[0-9a-f]{512}", meta["signature"])
        assert doc["previousDigestS3Object"] == pkey and doc["previousDigestSignature"] == pmeta["signature"]
        assert doc["previousDigestHashValue"] == hashlib.sha256(praw).hexdigest()
        assert doc["previousDigestHashAlgorithm"] == "SHA-256"
        assert doc["digestStartTime"] < doc["digestEndTime"] and key.endswith(
            doc["digestEndTime"].replace("-", "").replace(":", "") + ".json.gz"
        )
    listed = [f for _, _, d, _ in ds for f in d["logFiles"]]
    log_keys = [k for k in records(s3, bucket, prefix=f"AWSLogs/{ACCOUNT}/CloudTrail/")[0]]
    assert sorted(f["s3Object"] for f in listed) == sorted(log_keys), "every log file is in one digest"
    for f in listed:
        body = gzip.decompress(s3.get_object(Bucket=bucket, Key=f["s3Object"])["Body"].read())
        assert f["hashValue"] == hashlib.sha256(body).hexdigest() and f["hashAlgorithm"] == "SHA-256"
        assert f["oldestEventTime"] <= f["newestEventTime"]
    empty = ds[-1][2]
    assert empty["logFiles"] == [] and empty["newestEventTime"] is None

    keys_out = kc.aws("cloudtrail", "list-public-keys")["PublicKeyList"]
    assert {k["Fingerprint"] for k in keys_out} >= {d["digestPublicKeyFingerprint"] for _, _, d, _ in ds}

    ok = validate_logs(kc, arn, start)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"{len(ds)}/{len(ds)} digest files valid" in ok.stdout, ok.stdout
    assert f"{len(listed)}/{len(listed)} log files valid" in ok.stdout, ok.stdout
    assert "INVALID" not in ok.stdout + ok.stderr

    # Overwrite a delivered log file: its hash no longer matches.
    tampered = listed[0]["s3Object"]
    body = json.loads(gzip.decompress(s3.get_object(Bucket=bucket, Key=tampered)["Body"].read()))
    body["Records"][0]["eventName"] = "Nothing"
    s3.put_object(Bucket=bucket, Key=tampered, Body=gzip.compress(json.dumps(body).encode()))
    bad = validate_logs(kc, arn, start)
    assert bad.returncode == 1
    assert f"Log file\ts3://{bucket}/{tampered}\tINVALID: hash value doesn't match" in bad.stderr, bad.stderr
    assert f"{len(listed) - 1}/{len(listed)} log files valid, 1/{len(listed)} log files INVALID" in bad.stdout

    # Delete a digest inside the chain: the next one names it, it is gone.
    gone = keys[1]
    s3.delete_object(Bucket=bucket, Key=gone)
    bad = validate_logs(kc, arn, start)
    assert bad.returncode == 1
    assert f"Digest file\ts3://{bucket}/{gone}\tINVALID: not found" in bad.stderr, bad.stderr


def test_validation_errors_and_public_keys(kc):
    ct = kc.client("cloudtrail")
    with pytest.raises(ClientError) as e:
        ct.list_public_keys(StartTime=datetime(2030, 1, 2), EndTime=datetime(2030, 1, 1))
    assert error_code(e.value) == "InvalidTimeRangeException"
    now = ct.list_public_keys()["PublicKeyList"]
    assert len(now) >= 1
    k = now[-1]
    der = k["Value"]  # PKCS#1 RSAPublicKey, DER (botocore decodes the blob)
    assert der[:1] == b"\x30" and k["Fingerprint"] == hashlib.md5(der).hexdigest()
    assert k["ValidityStartTime"] < k["ValidityEndTime"]
    assert ct.list_public_keys(StartTime=datetime(2001, 1, 1), EndTime=datetime(2001, 1, 2))["PublicKeyList"] == []
    assert ct.list_event_data_stores()["EventDataStores"] == []
    assert ct.list_channels()["Channels"] == []


def test_advanced_event_selectors_choose_what_is_delivered(kc):
    ct, s3, iam = kc.client("cloudtrail"), kc.client("s3"), kc.client("iam")
    logs, data, name = unique("trail-adv"), unique("trail-advdata"), unique("adv")
    for b in (logs, data):
        s3.create_bucket(Bucket=b)
    s3.put_bucket_policy(Bucket=logs, Policy=cloudtrail_bucket_policy(logs, name))
    ct.create_trail(Name=name, S3BucketName=logs)
    with pytest.raises(ClientError) as e:
        ct.get_insight_selectors(TrailName=name)
    assert error_code(e.value) == "InsightNotEnabledException"
    selectors = [
        {
            "Name": "writes under keep/",
            "FieldSelectors": [
                {"Field": "eventCategory", "Equals": ["Data"]},
                {"Field": "resources.type", "Equals": ["AWS::S3::Object"]},
                {"Field": "readOnly", "Equals": ["false"]},
                {"Field": "resources.ARN", "StartsWith": [f"arn:aws:s3:::{data}/keep/"], "NotEndsWith": [".tmp"]},
            ],
        },
        {
            "Name": "IAM writes",
            "FieldSelectors": [
                {"Field": "eventCategory", "Equals": ["Management"]},
                {"Field": "readOnly", "Equals": ["false"]},
            ],
        },
    ]
    for bad in (
        [{"FieldSelectors": [{"Field": "readOnly", "Equals": ["true"]}]}],
        [{"FieldSelectors": [{"Field": "eventCategory", "StartsWith": ["Data"]}]}],
        [{"FieldSelectors": [{"Field": "eventCategory", "Equals": ["Data"]}]}],
        [{"FieldSelectors": [{"Field": "eventCategory", "Equals": ["Management"]},
                             {"Field": "eventName", "Equals": ["CreateUser"]}]}],
        [{"FieldSelectors": [{"Field": "eventCategory", "Equals": ["Data"]},
                             {"Field": "resources.type", "Equals": ["S3 objects"]}]}],
    ):
        with pytest.raises(ClientError) as e:
            ct.put_event_selectors(TrailName=name, AdvancedEventSelectors=bad)
        assert error_code(e.value) == "InvalidEventSelectorsException", bad
    with pytest.raises(ClientError) as e:
        ct.put_event_selectors(
            TrailName=name, AdvancedEventSelectors=selectors, EventSelectors=[{"ReadWriteType": "All"}]
        )
    assert error_code(e.value) == "InvalidParameterCombinationException"
    assert ct.get_trail(Name=name)["Trail"]["HasCustomEventSelectors"] is False, "a refused call changes nothing"

    put = ct.put_event_selectors(TrailName=name, AdvancedEventSelectors=selectors)
    assert put["AdvancedEventSelectors"] == selectors and "EventSelectors" not in put
    got = ct.get_event_selectors(TrailName=name)
    assert got["AdvancedEventSelectors"] == selectors and "EventSelectors" not in got
    assert ct.get_trail(Name=name)["Trail"]["HasCustomEventSelectors"] is True

    ct.start_logging(Name=name)
    skipped_user = unique("adv-read")
    iam.get_account_summary()  # a management read: not selected
    for key in ("drop/a.txt", "keep/b.tmp"):
        s3.put_object(Bucket=data, Key=key, Body=b"x")
    s3.put_object(Bucket=data, Key="keep/c.txt", Body=b"x")
    s3.get_object(Bucket=data, Key="keep/c.txt")["Body"].read()
    iam.create_user(UserName=skipped_user)

    def delivered():
        _, recs = records(s3, logs, prefix="AWSLogs/")
        return recs if any(r["eventName"] == "CreateUser" for r in recs) else None

    recs = wait_for(delivered, "the CreateUser event")
    data_events = [(r["eventName"], r["requestParameters"]["key"]) for r in recs if r["eventCategory"] == "Data"]
    assert data_events == [("PutObject", "keep/c.txt")], data_events
    mgmt = [r for r in recs if r["eventCategory"] == "Management"]
    assert mgmt and all(r["readOnly"] is False for r in mgmt), [r["eventName"] for r in mgmt]

    # Basic selectors replace the advanced ones.
    back = ct.put_event_selectors(TrailName=name, EventSelectors=[{"ReadWriteType": "All"}])
    assert "AdvancedEventSelectors" not in back and back["EventSelectors"][0]["ReadWriteType"] == "All"
    ct.delete_trail(Name=name)
