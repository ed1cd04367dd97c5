"""S3 versioning, lifecycle and GetObjectAttributes with the real AWS CLI
and boto3: version ids, delete markers, null versions, versioned copies,
tags and deletes, ListObjectVersions paging, the version actions in
authorization, lifecycle configuration and its expiration sweep."""

import base64
import hashlib
import json
import time

import pytest

from conftest import allow, expect_error, raw_http, unique


@pytest.fixture(scope="module")
def s3(keycard):
    return keycard.client("s3")


def versioned_bucket(s3, status="Enabled") -> str:
    name = unique("ver")
    s3.create_bucket(Bucket=name)
    if status:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": status})
    return name


def body(s3, b, k, **kw) -> bytes:
    return s3.get_object(Bucket=b, Key=k, **kw)["Body"].read()


def headers(err) -> dict:
    return err.response["ResponseMetadata"]["HTTPHeaders"]


def all_versions(s3, b):
    out = s3.list_object_versions(Bucket=b)
    return out.get("Versions", []), out.get("DeleteMarkers", [])


def empty_bucket(s3, b):
    vs, ms = all_versions(s3, b)
    for v in vs + ms:
        s3.delete_object(Bucket=b, Key=v["Key"], VersionId=v["VersionId"])


def test_versioning_status_is_real(keycard, s3):
    b = versioned_bucket(s3, status=None)
    assert "Status" not in s3.get_bucket_versioning(Bucket=b)
    keycard.aws("s3api", "put-bucket-versioning", "--bucket", b, "--versioning-configuration", "Status=Enabled")
    assert keycard.aws("s3api", "get-bucket-versioning", "--bucket", b)["Status"] == "Enabled"
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Suspended"})
    assert s3.get_bucket_versioning(Bucket=b)["Status"] == "Suspended"
    expect_error("MalformedXML", s3.put_bucket_versioning, Bucket=b, VersioningConfiguration={"Status": "On"})
    # MFA delete needs the root's MFA code; without it S3 refuses.
    expect_error(
        "AccessDenied",
        s3.put_bucket_versioning,
        Bucket=b,
        VersioningConfiguration={"Status": "Enabled", "MFADelete": "Enabled"},
    )
    assert s3.get_bucket_versioning(Bucket=b)["Status"] == "Suspended"


def test_versions_and_delete_markers(s3):
    b = versioned_bucket(s3)
    v1 = s3.put_object(Bucket=b, Key="k", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=b, Key="k", Body=b"two")["VersionId"]
    assert len(v1) == 32 and len(v2) == 32 and v1 != v2
    assert body(s3, b, "k") == b"two"
    assert body(s3, b, "k", VersionId=v1) == b"one"
    assert s3.head_object(Bucket=b, Key="k", VersionId=v1)["VersionId"] == v1
    assert s3.get_object(Bucket=b, Key="k")["VersionId"] == v2

    d = s3.delete_object(Bucket=b, Key="k")
    assert d["DeleteMarker"] is True and len(d["VersionId"]) == 32
    marker = d["VersionId"]
    e = expect_error("NoSuchKey", s3.get_object, Bucket=b, Key="k")
    assert headers(e)["x-amz-delete-marker"] == "true"
    assert headers(e)["x-amz-version-id"] == marker
    e = expect_error("405", s3.head_object, Bucket=b, Key="k", VersionId=marker)
    e = expect_error("MethodNotAllowed", s3.get_object, Bucket=b, Key="k", VersionId=marker)
    assert headers(e)["x-amz-delete-marker"] == "true"
    assert s3.list_objects_v2(Bucket=b)["KeyCount"] == 0

    vs, ms = all_versions(s3, b)
    assert [(v["VersionId"], v["IsLatest"]) for v in vs] == [(v2, False), (v1, False)]
    assert [(m["VersionId"], m["IsLatest"]) for m in ms] == [(marker, True)]

    # Removing the marker brings the object back.
    r = s3.delete_object(Bucket=b, Key="k", VersionId=marker)
    assert r["DeleteMarker"] is True and r["VersionId"] == marker
    assert body(s3, b, "k") == b"two"
    # Removing the current version makes the older one current.
    s3.delete_object(Bucket=b, Key="k", VersionId=v2)
    assert body(s3, b, "k") == b"one"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=b)["Contents"]] == ["k"]

    e = expect_error("InvalidArgument", s3.get_object, Bucket=b, Key="k", VersionId="not-a-version")
    assert e.response["Error"]["Message"] == "Invalid version id specified"
    expect_error("NoSuchVersion", s3.get_object, Bucket=b, Key="k", VersionId="A" * 32)
    expect_error("BucketNotEmpty", s3.delete_bucket, Bucket=b)
    s3.delete_object(Bucket=b, Key="k")
    expect_error("BucketNotEmpty", s3.delete_bucket, Bucket=b)
    empty_bucket(s3, b)
    s3.delete_bucket(Bucket=b)


def test_null_versions_of_unversioned_and_suspended_buckets(s3):
    b = versioned_bucket(s3, status=None)
    r = s3.put_object(Bucket=b, Key="k", Body=b"plain")
    assert "VersionId" not in r
    assert body(s3, b, "k", VersionId="null") == b"plain"
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    v = s3.put_object(Bucket=b, Key="k", Body=b"versioned")["VersionId"]
    vs, _ = all_versions(s3, b)
    assert [x["VersionId"] for x in vs] == [v, "null"]

    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Suspended"})
    assert s3.put_object(Bucket=b, Key="k", Body=b"s1")["VersionId"] == "null"
    s3.put_object(Bucket=b, Key="k", Body=b"s2")
    vs, _ = all_versions(s3, b)
    # The null version was overwritten, the Enabled-era version kept.
    assert [(x["VersionId"], x["IsLatest"]) for x in vs] == [("null", True), (v, False)]
    assert body(s3, b, "k", VersionId="null") == b"s2"
    d = s3.delete_object(Bucket=b, Key="k")
    assert d["DeleteMarker"] is True and d["VersionId"] == "null"
    vs, ms = all_versions(s3, b)
    assert [x["VersionId"] for x in vs] == [v]
    assert [m["VersionId"] for m in ms] == ["null"]


def test_copy_tags_and_acl_by_version(keycard, s3):
    b = versioned_bucket(s3)
    v1 = s3.put_object(Bucket=b, Key="src", Body=b"old", Tagging="gen=1")["VersionId"]
    s3.put_object(Bucket=b, Key="src", Body=b"new")
    out = s3.copy_object(Bucket=b, Key="dst", CopySource={"Bucket": b, "Key": "src", "VersionId": v1})
    assert out["CopySourceVersionId"] == v1 and len(out["VersionId"]) == 32
    assert body(s3, b, "dst") == b"old"
    # The CLI spells the source with ?versionId= itself.
    keycard.aws("s3api", "copy-object", "--bucket", b, "--key", "dst2", "--copy-source", f"{b}/src?versionId={v1}")
    assert body(s3, b, "dst2") == b"old"

    t = s3.get_object_tagging(Bucket=b, Key="src", VersionId=v1)
    assert t["TagSet"] == [{"Key": "gen", "Value": "1"}] and t["VersionId"] == v1
    assert s3.get_object_tagging(Bucket=b, Key="src")["TagSet"] == []
    s3.put_object_tagging(Bucket=b, Key="src", VersionId=v1, Tagging={"TagSet": [{"Key": "gen", "Value": "old"}]})
    assert s3.get_object_tagging(Bucket=b, Key="src", VersionId=v1)["TagSet"] == [{"Key": "gen", "Value": "old"}]
    s3.delete_object_tagging(Bucket=b, Key="src", VersionId=v1)
    assert s3.get_object_tagging(Bucket=b, Key="src", VersionId=v1)["TagSet"] == []
    assert s3.get_object_acl(Bucket=b, Key="src", VersionId=v1)["Grants"]

    marker = s3.delete_object(Bucket=b, Key="src")["VersionId"]
    expect_error(
        "InvalidRequest",
        s3.copy_object,
        Bucket=b,
        Key="dst3",
        CopySource={"Bucket": b, "Key": "src", "VersionId": marker},
    )


def test_delete_objects_with_versions(s3):
    b = versioned_bucket(s3)
    v = s3.put_object(Bucket=b, Key="a", Body=b"a")["VersionId"]
    s3.put_object(Bucket=b, Key="b", Body=b"b")
    out = s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "a", "VersionId": v}, {"Key": "b"}]})
    deleted = {d["Key"]: d for d in out["Deleted"]}
    assert deleted["a"]["VersionId"] == v and "DeleteMarker" not in deleted["a"]
    assert deleted["b"]["DeleteMarker"] is True and len(deleted["b"]["DeleteMarkerVersionId"]) == 32
    vs, ms = all_versions(s3, b)
    assert [x["Key"] for x in vs] == ["b"] and [m["Key"] for m in ms] == ["b"]
    out = s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "b", "VersionId": "bad"}]})
    assert out["Errors"][0]["Code"] == "InvalidArgument"


def test_list_object_versions_pages_and_prefixes(keycard, s3):
    b = versioned_bucket(s3)
    want = []
    for k in ["a", "b", "dir/x", "dir/y", "z"]:
        for i in range(2):
            want.append((k, s3.put_object(Bucket=b, Key=k, Body=f"{k}{i}".encode())["VersionId"]))
    expected = sorted(want, key=lambda kv: (kv[0], -[v for kk, v in want if kk == kv[0]].index(kv[1])))
    got, kw = [], {}
    while True:
        page = s3.list_object_versions(Bucket=b, MaxKeys=3, **kw)
        got += [(v["Key"], v["VersionId"]) for v in page.get("Versions", [])]
        if not page["IsTruncated"]:
            break
        kw = {"KeyMarker": page["NextKeyMarker"], "VersionIdMarker": page["NextVersionIdMarker"]}
    assert got == expected
    cli = keycard.aws("s3api", "list-object-versions", "--bucket", b, "--page-size", "2")
    assert [(v["Key"], v["VersionId"]) for v in cli["Versions"]] == expected
    page = s3.list_object_versions(Bucket=b, Delimiter="/")
    assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["dir/"]
    assert {v["Key"] for v in page["Versions"]} == {"a", "b", "z"}
    page = s3.list_object_versions(Bucket=b, Prefix="dir/", KeyMarker="dir/x")
    assert {v["Key"] for v in page["Versions"]} == {"dir/y"}
    expect_error("InvalidArgument", s3.list_object_versions, Bucket=b, VersionIdMarker=want[0][1])


def test_version_actions_are_authorized(keycard, s3):
    b = versioned_bucket(s3)
    v1 = s3.put_object(Bucket=b, Key="k", Body=b"one")["VersionId"]
    s3.put_object(Bucket=b, Key="k", Body=b"two")
    _, plain = keycard.new_user(policy=allow(["s3:GetObject", "s3:DeleteObject", "s3:PutObject"], f"arn:aws:s3:::{b}/*"))
    c = keycard.client("s3", creds=plain)
    assert c.get_object(Bucket=b, Key="k")["Body"].read() == b"two"
    expect_error("AccessDenied", c.get_object, Bucket=b, Key="k", VersionId=v1)
    expect_error("AccessDenied", c.delete_object, Bucket=b, Key="k", VersionId=v1)
    expect_error("AccessDenied", c.copy_object, Bucket=b, Key="c", CopySource={"Bucket": b, "Key": "k", "VersionId": v1})
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:GetObjectVersion"],
                "Resource": f"arn:aws:s3:::{b}/*",
                "Condition": {"StringEquals": {"s3:versionid": v1}},
            }
        ],
    }
    _, versioned = keycard.new_user(policy=policy)
    c = keycard.client("s3", creds=versioned)
    assert c.get_object(Bucket=b, Key="k", VersionId=v1)["Body"].read() == b"one"
    expect_error("AccessDenied", c.get_object, Bucket=b, Key="k")


def test_multipart_and_attributes(s3):
    b = versioned_bucket(s3)
    up = s3.create_multipart_upload(Bucket=b, Key="mp")["UploadId"]
    part = b"x" * (5 * 1024 * 1024)
    e1 = s3.upload_part(Bucket=b, Key="mp", UploadId=up, PartNumber=1, Body=part)["ETag"]
    e2 = s3.upload_part(Bucket=b, Key="mp", UploadId=up, PartNumber=2, Body=b"tail")["ETag"]
    done = s3.complete_multipart_upload(
        Bucket=b,
        Key="mp",
        UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]},
    )
    assert len(done["VersionId"]) == 32
    a = s3.get_object_attributes(
        Bucket=b, Key="mp", ObjectAttributes=["ETag", "ObjectParts", "StorageClass", "ObjectSize"]
    )
    assert a["ObjectSize"] == len(part) + 4 and a["StorageClass"] == "STANDARD"
    assert a["ObjectParts"]["TotalPartsCount"] == 2 and a["ETag"].endswith("-2")
    assert a["VersionId"] == done["VersionId"]

    data = b"checksummed"
    v = s3.put_object(Bucket=b, Key="c", Body=data, ChecksumAlgorithm="SHA256")["VersionId"]
    s3.put_object(Bucket=b, Key="c", Body=b"newer")
    a = s3.get_object_attributes(Bucket=b, Key="c", VersionId=v, ObjectAttributes=["Checksum", "ETag", "ObjectSize"])
    assert a["Checksum"]["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert a["ETag"] == hashlib.md5(data).hexdigest() and a["ObjectSize"] == len(data)
    expect_error("InvalidArgument", s3.get_object_attributes, Bucket=b, Key="c", ObjectAttributes=["Colour"])
    e = expect_error("InvalidRequest", s3.get_object_attributes, Bucket=b, Key="c", ObjectAttributes=[])
    assert "x-amz-object-attributes header" in e.response["Error"]["Message"]
    expect_error("NoSuchKey", s3.get_object_attributes, Bucket=b, Key="none", ObjectAttributes=["ETag"])


RULE = {"ID": "expire-logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"}, "Expiration": {"Days": 30}}


def test_lifecycle_configuration(keycard, s3):
    b = versioned_bucket(s3, status=None)
    expect_error("NoSuchLifecycleConfiguration", s3.get_bucket_lifecycle_configuration, Bucket=b)
    rules = [
        RULE,
        {
            "ID": "tidy",
            "Status": "Disabled",
            "Filter": {"And": {"Prefix": "tmp/", "Tags": [{"Key": "t", "Value": "1"}], "ObjectSizeGreaterThan": 10}},
            "NoncurrentVersionExpiration": {"NoncurrentDays": 7, "NewerNoncurrentVersions": 2},
        },
        {"ID": "mpu", "Status": "Enabled", "Filter": {}, "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 3}},
    ]
    s3.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration={"Rules": rules})
    got = keycard.aws("s3api", "get-bucket-lifecycle-configuration", "--bucket", b)["Rules"]
    assert got[0] == RULE
    assert got[1]["Filter"]["And"]["Tags"] == [{"Key": "t", "Value": "1"}]
    assert got[1]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 7, "NewerNoncurrentVersions": 2}
    assert got[2]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 3}

    bad = [
        ("InvalidArgument", {"ID": "x" * 256, "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 1}}),
        ("InvalidRequest", {"ID": "none", "Status": "Enabled", "Filter": {}}),
        ("InvalidArgument", {"ID": "zero", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 0}}),
        ("MalformedXML", {"ID": "s", "Status": "Maybe", "Filter": {}, "Expiration": {"Days": 1}}),
        ("MalformedXML", {"ID": "both", "Status": "Enabled", "Filter": {}, "Prefix": "a", "Expiration": {"Days": 1}}),
    ]
    for code, rule in bad:
        expect_error(code, s3.put_bucket_lifecycle_configuration, Bucket=b, LifecycleConfiguration={"Rules": [rule]})
    expect_error(
        "InvalidArgument",
        s3.put_bucket_lifecycle_configuration,
        Bucket=b,
        LifecycleConfiguration={"Rules": [RULE, RULE]},
    )
    # Nothing bad was stored.
    assert len(s3.get_bucket_lifecycle_configuration(Bucket=b)["Rules"]) == 3
    keycard.aws("s3api", "delete-bucket-lifecycle", "--bucket", b)
    expect_error("NoSuchLifecycleConfiguration", s3.get_bucket_lifecycle_configuration, Bucket=b)


def sweep(kc):
    token = (kc.data_dir / "admin.token").read_text().strip()
    status, _, out = raw_http(
        "POST", kc.endpoint + "/_keycard/admin/s3/lifecycle", headers={"Authorization": f"Bearer {token}"}
    )
    assert status == 200, out
    return json.loads(out)["applied"]


def advance_days(kc, days):
    token = (kc.data_dir / "admin.token").read_text().strip()
    status, _, out = raw_http(
        "POST",
        kc.endpoint + "/_keycard/admin/clock",
        body=json.dumps({"advanceSeconds": days * 86400}).encode(),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert status == 200, out


def test_lifecycle_expiration_sweep(make_keycard):
    kc = make_keycard("--test-clock")
    s3 = kc.client("s3")
    plain = versioned_bucket(s3, status=None)
    for k in ["old/a", "old/b", "keep/c"]:
        s3.put_object(Bucket=plain, Key=k, Body=b"x")
    s3.put_object(Bucket=plain, Key="old/big", Body=b"x" * 100)
    s3.put_object(Bucket=plain, Key="tagged/t", Body=b"x", Tagging="expire=yes")
    s3.put_object(Bucket=plain, Key="tagged/u", Body=b"x", Tagging="expire=no")
    up = s3.create_multipart_upload(Bucket=plain, Key="mp")["UploadId"]
    rules = [
        {
            "ID": "past",
            "Status": "Enabled",
            "Filter": {"And": {"Prefix": "old/", "ObjectSizeLessThan": 50}},
            "Expiration": {"Date": "2020-01-01T00:00:00Z"},
        },
        {"ID": "tags", "Status": "Enabled", "Filter": {"Tag": {"Key": "expire", "Value": "yes"}}, "Expiration": {"Days": 1}},
        {"ID": "mpu", "Status": "Enabled", "Filter": {"Prefix": ""}, "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}},
    ]
    s3.put_bucket_lifecycle_configuration(Bucket=plain, LifecycleConfiguration={"Rules": rules})
    done = sweep(kc)
    assert sorted(a["key"] for a in done) == ["old/a", "old/b"]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=plain)["Contents"]]
    assert keys == ["keep/c", "old/big", "tagged/t", "tagged/u"]
    assert s3.list_multipart_uploads(Bucket=plain).get("Uploads")
    advance_days(kc, 3)
    done = sweep(kc)
    assert sorted((a["action"], a["key"]) for a in done) == [
        ("AbortIncompleteMultipartUpload", "mp"),
        ("Expiration", "tagged/t"),
    ]
    assert not s3.list_multipart_uploads(Bucket=plain).get("Uploads")
    expect_error("NoSuchUpload", s3.list_parts, Bucket=plain, Key="mp", UploadId=up)

    # On a versioned bucket expiry adds a delete marker; the noncurrent
    # version then expires, and the lone marker after it.
    ver = versioned_bucket(s3)
    v = s3.put_object(Bucket=ver, Key="doc", Body=b"x")["VersionId"]
    s3.put_bucket_lifecycle_configuration(
        Bucket=ver,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "all",
                    "Status": "Enabled",
                    "Filter": {},
                    "Expiration": {"Days": 1},
                    "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
                }
            ]
        },
    )
    done = [a for a in sweep(kc) if a["bucket"] == ver]
    assert [a["action"] for a in done] == ["Expiration"]
    vs, ms = all_versions(s3, ver)
    assert [x["VersionId"] for x in vs] == [v] and len(ms) == 1 and ms[0]["IsLatest"]
    advance_days(kc, 2)
    assert [a["action"] for a in sweep(kc) if a["bucket"] == ver] == ["NoncurrentVersionExpiration"]
    assert [a["action"] for a in sweep(kc) if a["bucket"] == ver] == ["ExpiredObjectDeleteMarker"]
    assert all_versions(s3, ver) == ([], [])
    s3.delete_bucket(Bucket=ver)

    # Each lifecycle action is audited as an S3 service event.
    ct = kc.client("cloudtrail")
    lookup = [{"AttributeKey": "EventName", "AttributeValue": "LifecycleExpiration"}]
    deadline = time.monotonic() + 10
    while True:
        recorded = [json.loads(e["CloudTrailEvent"]) for e in ct.lookup_events(LookupAttributes=lookup)["Events"]]
        if len(recorded) >= 7 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(recorded) == 7
    assert all(e["userIdentity"] == {"type": "AWSService", "invokedBy": "s3.amazonaws.com"} for e in recorded)
    assert {e["requestParameters"]["lifecycleAction"] for e in recorded} == {
        "Expiration",
        "AbortIncompleteMultipartUpload",
        "NoncurrentVersionExpiration",
        "ExpiredObjectDeleteMarker",
    }


def test_lifecycle_interval_flag_sweeps_in_background(make_keycard):
    kc = make_keycard("--lifecycle-interval", "1s")
    s3 = kc.client("s3")
    b = versioned_bucket(s3, status=None)
    s3.put_object(Bucket=b, Key="gone", Body=b"x")
    s3.put_bucket_lifecycle_configuration(
        Bucket=b,
        LifecycleConfiguration={
            "Rules": [{"ID": "past", "Status": "Enabled", "Filter": {}, "Expiration": {"Date": "2020-01-01T00:00:00Z"}}]
        },
    )
    deadline = time.monotonic() + 20
    while s3.list_objects_v2(Bucket=b)["KeyCount"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert s3.list_objects_v2(Bucket=b)["KeyCount"] == 0
