"""S3 with the real CLI (high-level `aws s3` commands, presign) and boto3:
objects, listing, multipart, ranges, copies, errors, bucket policies and
the seed's least-privilege read policy."""

import hashlib
import json
import os
import time
import urllib.error
import urllib.request
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

import pytest
from botocore.exceptions import ClientError

from conftest import SEED_POLICY, allow, doc, error_code, unique

BUCKET = "my-app-bucket"



def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@pytest.fixture(scope="module")
def bucket(keycard):
    out = keycard.aws("s3", "mb", f"s3://{BUCKET}")
    assert f"make_bucket: {BUCKET}" in out
    return BUCKET


@pytest.fixture(scope="module")
def s3(keycard):
    return keycard.client("s3")


def fresh_bucket(s3) -> str:
    name = unique("bkt")
    s3.create_bucket(Bucket=name)
    return name


def test_cp_up_and_down(keycard, bucket, tmp_path):
    src = tmp_path / "hello.txt"
    src.write_bytes(b"hello from keycard\n" * 10)
    out = keycard.aws("s3", "cp", src, f"s3://{bucket}/docs/hello.txt")
    assert "upload:" in out
    dst = tmp_path / "back.txt"
    keycard.aws("s3", "cp", f"s3://{bucket}/docs/hello.txt", dst)
    assert dst.read_bytes() == src.read_bytes()

    listing = keycard.aws("s3", "ls", f"s3://{bucket}")
    assert "PRE docs/" in listing
    listing = keycard.aws("s3", "ls", f"s3://{bucket}/docs/")
    assert "hello.txt" in listing
    assert str(src.stat().st_size) in listing

    buckets = keycard.aws("s3", "ls")
    assert bucket in buckets


def test_sync_both_ways(keycard, bucket, tmp_path):
    up = tmp_path / "up"
    (up / "sub").mkdir(parents=True)
    files = {"a.txt": b"alpha", "b.bin": os.urandom(3000), "sub/c.txt": b"gamma" * 100}
    for rel, data in files.items():
        (up / rel).write_bytes(data)
    out = keycard.aws("s3", "sync", up, f"s3://{bucket}/synced")
    assert out.count("upload:") == 3

    # A second sync has nothing to do.
    again = keycard.aws("s3", "sync", up, f"s3://{bucket}/synced")
    assert not again or "upload:" not in again

    down = tmp_path / "down"
    out = keycard.aws("s3", "sync", f"s3://{bucket}/synced", down)
    assert out.count("download:") == 3
    for rel, data in files.items():
        assert (down / rel).read_bytes() == data


def test_multipart_cp_20mib(keycard, bucket, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(20 * 1024 * 1024))
    keycard.aws("s3", "cp", big, f"s3://{bucket}/big.bin")
    head = keycard.aws("s3api", "head-object", "--bucket", bucket, "--key", "big.bin")
    assert head["ContentLength"] == 20 * 1024 * 1024
    # awscli uses 8 MiB parts above its 8 MiB threshold: 3 parts.
    assert head["ETag"].strip('"').endswith("-3")
    back = tmp_path / "big.back"
    keycard.aws("s3", "cp", f"s3://{bucket}/big.bin", back)  # ranged, parallel GETs
    assert sha256(back) == sha256(big)


def test_presign(keycard, bucket, s3):
    s3.put_object(Bucket=bucket, Key="presigned.txt", Body=b"presigned body")
    url = keycard.aws("s3", "presign", f"s3://{bucket}/presigned.txt", "--expires-in", "300").strip()
    assert "X-Amz-Signature=" in url  # SigV4 (the harness's config sets s3v4)
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
        assert r.read() == b"presigned body"

    parts = urlsplit(url)
    q = parse_qsl(parts.query)
    bad = []
    for k, v in q:
        if k == "X-Amz-Signature":
            v = ("0" if v[0] != "0" else "1") + v[1:]
        bad.append((k, v))
    tampered = urlunsplit(parts._replace(query=urlencode(bad)))
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(tampered, timeout=10)
    assert ei.value.code == 403
    assert b"<Code>SignatureDoesNotMatch</Code>" in ei.value.read()

    # A presigned URL for another key does not open this one.
    other = urlunsplit(parts._replace(path=parts.path.replace("presigned.txt", "other.txt")))
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(other, timeout=10)
    assert ei.value.code == 403


def test_boto3_object_lifecycle(bucket, s3):
    put = s3.put_object(Bucket=bucket, Key="obj/one.txt", Body=b"0123456789", ContentType="text/plain",
                        Metadata={"owner": "tests"})
    assert put["ETag"] == '"%s"' % hashlib.md5(b"0123456789").hexdigest()
    head = s3.head_object(Bucket=bucket, Key="obj/one.txt")
    assert head["ContentLength"] == 10
    assert head["ContentType"] == "text/plain"
    assert head["Metadata"] == {"owner": "tests"}
    assert head["ETag"] == put["ETag"]
    got = s3.get_object(Bucket=bucket, Key="obj/one.txt")
    assert got["Body"].read() == b"0123456789"

    rng = s3.get_object(Bucket=bucket, Key="obj/one.txt", Range="bytes=2-5")
    assert rng["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert rng["ContentRange"] == "bytes 2-5/10"
    assert rng["Body"].read() == b"2345"
    tail = s3.get_object(Bucket=bucket, Key="obj/one.txt", Range="bytes=-3")
    assert tail["Body"].read() == b"789"

    cp = s3.copy_object(Bucket=bucket, Key="obj/copy.txt", CopySource={"Bucket": bucket, "Key": "obj/one.txt"})
    assert cp["CopyObjectResult"]["ETag"] == put["ETag"]
    assert s3.get_object(Bucket=bucket, Key="obj/copy.txt")["Body"].read() == b"0123456789"

    s3.delete_object(Bucket=bucket, Key="obj/one.txt")
    with pytest.raises(ClientError) as ei:
        s3.get_object(Bucket=bucket, Key="obj/one.txt")
    assert error_code(ei.value) == "NoSuchKey"
    with pytest.raises(ClientError) as ei:
        s3.head_object(Bucket=bucket, Key="obj/one.txt")
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    # Deleting a missing key is not an error in S3.
    s3.delete_object(Bucket=bucket, Key="obj/never-existed")


def test_list_objects_v2(s3):
    b = fresh_bucket(s3)
    keys = ["a/1.txt", "a/2.txt", "b/1.txt", "c.txt", "d.txt"]
    for k in keys:
        s3.put_object(Bucket=b, Key=k, Body=k.encode())

    all_ = s3.list_objects_v2(Bucket=b)
    assert [o["Key"] for o in all_["Contents"]] == keys
    assert all_["KeyCount"] == 5
    assert all_["IsTruncated"] is False

    d = s3.list_objects_v2(Bucket=b, Delimiter="/")
    assert [p["Prefix"] for p in d["CommonPrefixes"]] == ["a/", "b/"]
    assert [o["Key"] for o in d["Contents"]] == ["c.txt", "d.txt"]

    p = s3.list_objects_v2(Bucket=b, Prefix="a/")
    assert [o["Key"] for o in p["Contents"]] == ["a/1.txt", "a/2.txt"]
    assert p["Prefix"] == "a/"

    none = s3.list_objects_v2(Bucket=b, Prefix="zzz")
    assert "Contents" not in none
    assert none["KeyCount"] == 0

    # MaxKeys=2 over 5 keys: 3 pages joined by continuation tokens.
    seen, pages, token = [], 0, None
    while True:
        kw = {"Bucket": b, "MaxKeys": 2}
        if token:
            kw["ContinuationToken"] = token
        page = s3.list_objects_v2(**kw)
        pages += 1
        seen += [o["Key"] for o in page.get("Contents", [])]
        assert page["KeyCount"] == len(page.get("Contents", []))
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
        assert pages < 10
    assert pages == 3
    assert seen == keys

    # StartAfter.
    after = s3.list_objects_v2(Bucket=b, StartAfter="b/1.txt")
    assert [o["Key"] for o in after["Contents"]] == ["c.txt", "d.txt"]

    # The boto3 paginator with a delimiter.
    pag = s3.get_paginator("list_objects_v2")
    prefixes, contents = [], []
    for page in pag.paginate(Bucket=b, Delimiter="/", PaginationConfig={"PageSize": 1}):
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        contents += [o["Key"] for o in page.get("Contents", [])]
    assert prefixes == ["a/", "b/"]
    assert contents == ["c.txt", "d.txt"]


def test_bucket_errors(s3):
    b = fresh_bucket(s3)
    s3.put_object(Bucket=b, Key="k", Body=b"x")
    with pytest.raises(ClientError) as ei:
        s3.delete_bucket(Bucket=b)
    assert error_code(ei.value) == "BucketNotEmpty"
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409

    missing = unique("missing")
    with pytest.raises(ClientError) as ei:
        s3.get_object(Bucket=missing, Key="k")
    assert error_code(ei.value) == "NoSuchBucket"
    with pytest.raises(ClientError) as ei:
        s3.list_objects_v2(Bucket=missing)
    assert error_code(ei.value) == "NoSuchBucket"
    with pytest.raises(ClientError) as ei:
        s3.put_object(Bucket=missing, Key="k", Body=b"x")
    assert error_code(ei.value) == "NoSuchBucket"

    # us-east-1 keeps S3's legacy answer: re-creating your own bucket is a
    # 200 that changes nothing (other regions say BucketAlreadyOwnedByYou).
    s3.create_bucket(Bucket=b)
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b"x"

    with pytest.raises(ClientError) as ei:
        s3.create_bucket(Bucket="Bad_Bucket_Name")
    assert error_code(ei.value) == "InvalidBucketName"

    with pytest.raises(ClientError) as ei:
        s3.get_bucket_policy(Bucket=b)
    assert error_code(ei.value) == "NoSuchBucketPolicy"

    s3.delete_object(Bucket=b, Key="k")
    s3.delete_bucket(Bucket=b)
    assert b not in [x["Name"] for x in s3.list_buckets()["Buckets"]]


def test_bucket_policy_grants_and_denies(keycard, s3):
    b = fresh_bucket(s3)
    s3.put_object(Bucket=b, Key="public/readme.txt", Body=b"readme")
    s3.put_object(Bucket=b, Key="secret/plans.txt", Body=b"plans")

    user, creds = keycard.new_user()
    us3 = keycard.client("s3", creds)
    with pytest.raises(ClientError) as ei:
        us3.get_object(Bucket=b, Key="public/readme.txt")
    assert error_code(ei.value) == "AccessDenied"
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    # Same account: a bucket policy naming the user is enough.
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "UserReads",
                "Effect": "Allow",
                "Principal": {"AWS": user["Arn"]},
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{b}/*",
            }
        ],
    }
    s3.put_bucket_policy(Bucket=b, Policy=doc(policy))
    assert json.loads(s3.get_bucket_policy(Bucket=b)["Policy"]) == policy
    assert us3.get_object(Bucket=b, Key="public/readme.txt")["Body"].read() == b"readme"
    # Only what the policy names: no listing, no writes.
    with pytest.raises(ClientError) as ei:
        us3.list_objects_v2(Bucket=b)
    assert error_code(ei.value) == "AccessDenied"
    with pytest.raises(ClientError) as ei:
        us3.put_object(Bucket=b, Key="public/new.txt", Body=b"x")
    assert error_code(ei.value) == "AccessDenied"

    # An explicit Deny in the bucket policy beats the user's identity Allow.
    keycard.client("iam").put_user_policy(
        UserName=user["UserName"],
        PolicyName="all-s3",
        PolicyDocument=doc(allow("s3:*", [f"arn:aws:s3:::{b}", f"arn:aws:s3:::{b}/*"])),
    )
    policy["Statement"].append(
        {
            "Sid": "NoSecrets",
            "Effect": "Deny",
            "Principal": {"AWS": user["Arn"]},
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{b}/secret/*",
        }
    )
    s3.put_bucket_policy(Bucket=b, Policy=doc(policy))
    assert us3.get_object(Bucket=b, Key="public/readme.txt")["Body"].read() == b"readme"
    with pytest.raises(ClientError) as ei:
        us3.get_object(Bucket=b, Key="secret/plans.txt")
    assert error_code(ei.value) == "AccessDenied"
    us3.put_object(Bucket=b, Key="public/new.txt", Body=b"x")  # identity allow, no deny

    s3.delete_bucket_policy(Bucket=b)
    with pytest.raises(ClientError) as ei:
        s3.get_bucket_policy(Bucket=b)
    assert error_code(ei.value) == "NoSuchBucketPolicy"
    assert us3.get_object(Bucket=b, Key="secret/plans.txt")["Body"].read() == b"plans"


def test_malformed_bucket_policy(s3):
    b = fresh_bucket(s3)
    with pytest.raises(ClientError) as ei:
        s3.put_bucket_policy(Bucket=b, Policy="{not json")
    assert error_code(ei.value) == "MalformedPolicy"
    with pytest.raises(ClientError) as ei:
        s3.get_bucket_policy(Bucket=b)
    assert error_code(ei.value) == "NoSuchBucketPolicy"


def test_seed_read_policy_user(keycard, bucket, s3, tmp_path):
    s3.put_object(Bucket=bucket, Key="config/app.json", Body=b'{"ok": true}')
    other = fresh_bucket(s3)
    s3.put_object(Bucket=other, Key="x.txt", Body=b"x")

    iam = keycard.client("iam")
    pol = iam.create_policy(PolicyName=unique("SeedRead"), PolicyDocument=doc(SEED_POLICY))["Policy"]
    user, creds = keycard.new_user(managed=[pol["Arn"]])
    us3 = keycard.client("s3", creds)

    assert us3.get_object(Bucket=bucket, Key="config/app.json")["Body"].read() == b'{"ok": true}'
    keys = [o["Key"] for o in us3.list_objects_v2(Bucket=bucket, Prefix="config/")["Contents"]]
    assert keys == ["config/app.json"]

    for call in (
        lambda: us3.put_object(Bucket=bucket, Key="config/evil.json", Body=b"x"),
        lambda: us3.delete_object(Bucket=bucket, Key="config/app.json"),
        lambda: us3.get_object(Bucket=other, Key="x.txt"),
        lambda: us3.list_objects_v2(Bucket=other),
        lambda: us3.list_buckets(),
    ):
        with pytest.raises(ClientError) as ei:
            call()
        assert error_code(ei.value) == "AccessDenied"

    # The same through the CLI, as a person would try it.
    out = keycard.aws("s3", "ls", f"s3://{bucket}/config/", creds=creds)
    assert "app.json" in out
    dst = tmp_path / "app.json"
    keycard.aws("s3", "cp", f"s3://{bucket}/config/app.json", dst, creds=creds)
    assert dst.read_bytes() == b'{"ok": true}'
    src = tmp_path / "up.txt"
    src.write_text("nope")
    p = keycard.aws("s3", "cp", src, f"s3://{bucket}/config/up.txt", creds=creds, check=False)
    assert p.returncode != 0
    assert "AccessDenied" in p.stderr
    p = keycard.aws("s3", "ls", f"s3://{other}", creds=creds, check=False)
    assert p.returncode != 0
    assert "AccessDenied" in p.stderr


def test_anonymous_request_denied(keycard, bucket, s3):
    s3.put_object(Bucket=bucket, Key="anon.txt", Body=b"x")
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(f"{keycard.endpoint}/{bucket}/anon.txt", timeout=10)
    assert ei.value.code == 403
    assert b"<Code>AccessDenied</Code>" in ei.value.read()



def test_awkward_keys(s3):
    """Keys that stress SigV4 canonical URIs and XML listing."""
    b = fresh_bucket(s3)
    keys = ["with space.txt", "plus+sign.txt", "ünïcödé/日本.txt", "a=b&c.txt", "tilde~/x", "percent%20.txt",
            "deep/nested/path/to/file.txt", "quote'\"<>.txt"]
    for k in keys:
        s3.put_object(Bucket=b, Key=k, Body=k.encode())
    for k in keys:
        assert s3.get_object(Bucket=b, Key=k)["Body"].read() == k.encode(), k
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=b)["Contents"]]
    assert sorted(listed) == sorted(keys)
    # Asked for explicitly, the encoding is left to the caller to undo.
    enc = s3.list_objects_v2(Bucket=b, EncodingType="url")
    assert enc["EncodingType"] == "url"
    assert sorted(unquote_plus(o["Key"]) for o in enc["Contents"]) == sorted(keys)
    pre = s3.list_objects_v2(Bucket=b, Prefix="ünïcödé/")
    assert [o["Key"] for o in pre["Contents"]] == ["ünïcödé/日本.txt"]


def test_boto3_multipart_api(s3):
    b = fresh_bucket(s3)
    up = s3.create_multipart_upload(Bucket=b, Key="mp.bin")["UploadId"]
    p1 = os.urandom(5 * 1024 * 1024)
    p2 = os.urandom(5 * 1024 * 1024)
    e1 = s3.upload_part(Bucket=b, Key="mp.bin", UploadId=up, PartNumber=1, Body=p1)["ETag"]
    e2 = s3.upload_part(Bucket=b, Key="mp.bin", UploadId=up, PartNumber=2, Body=p2)["ETag"]
    parts = s3.list_parts(Bucket=b, Key="mp.bin", UploadId=up)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, len(p1)), (2, len(p2))]
    uploads = s3.list_multipart_uploads(Bucket=b).get("Uploads", [])
    assert [u["UploadId"] for u in uploads] == [up]

    with pytest.raises(ClientError) as ei:
        s3.complete_multipart_upload(Bucket=b, Key="mp.bin", UploadId=up, MultipartUpload={
            "Parts": [{"PartNumber": 2, "ETag": e2}, {"PartNumber": 1, "ETag": e1}]})
    assert error_code(ei.value) == "InvalidPartOrder"
    with pytest.raises(ClientError) as ei:
        s3.complete_multipart_upload(Bucket=b, Key="mp.bin", UploadId=up, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": e2}, {"PartNumber": 2, "ETag": e2}]})
    assert error_code(ei.value) == "InvalidPart"

    done = s3.complete_multipart_upload(Bucket=b, Key="mp.bin", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
    assert done["ETag"].strip('"').endswith("-2")
    assert s3.get_object(Bucket=b, Key="mp.bin")["Body"].read() == p1 + p2
    assert s3.list_multipart_uploads(Bucket=b).get("Uploads", []) == []

    # Parts below 5 MiB (except the last) are refused at completion.
    up = s3.create_multipart_upload(Bucket=b, Key="small.bin")["UploadId"]
    s1 = s3.upload_part(Bucket=b, Key="small.bin", UploadId=up, PartNumber=1, Body=b"a" * 1024)["ETag"]
    s2 = s3.upload_part(Bucket=b, Key="small.bin", UploadId=up, PartNumber=2, Body=b"b" * 1024)["ETag"]
    with pytest.raises(ClientError) as ei:
        s3.complete_multipart_upload(Bucket=b, Key="small.bin", UploadId=up, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": s1}, {"PartNumber": 2, "ETag": s2}]})
    assert error_code(ei.value) == "EntityTooSmall"
    s3.abort_multipart_upload(Bucket=b, Key="small.bin", UploadId=up)
    with pytest.raises(ClientError) as ei:
        s3.list_parts(Bucket=b, Key="small.bin", UploadId=up)
    assert error_code(ei.value) == "NoSuchUpload"
    with pytest.raises(ClientError) as ei:
        s3.head_object(Bucket=b, Key="small.bin")
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_conditional_and_range_errors(s3):
    b = fresh_bucket(s3)
    etag = s3.put_object(Bucket=b, Key="c.txt", Body=b"conditional")["ETag"]
    with pytest.raises(ClientError) as ei:
        s3.get_object(Bucket=b, Key="c.txt", IfNoneMatch=etag)
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    with pytest.raises(ClientError) as ei:
        s3.get_object(Bucket=b, Key="c.txt", IfMatch='"0000"')
    assert error_code(ei.value) == "PreconditionFailed"
    assert s3.get_object(Bucket=b, Key="c.txt", IfMatch=etag)["Body"].read() == b"conditional"
    with pytest.raises(ClientError) as ei:
        s3.get_object(Bucket=b, Key="c.txt", Range="bytes=100-200")
    assert error_code(ei.value) == "InvalidRange"


def test_delete_objects_and_v1_listing(s3):
    b = fresh_bucket(s3)
    for k in ("x/1", "x/2", "y"):
        s3.put_object(Bucket=b, Key=k, Body=b"1")
    out = s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "x/1"}, {"Key": "x/2"}, {"Key": "nope"}]})
    assert sorted(d["Key"] for d in out["Deleted"]) == ["nope", "x/1", "x/2"]
    v1 = s3.list_objects(Bucket=b)
    assert [o["Key"] for o in v1["Contents"]] == ["y"]
    s3.head_bucket(Bucket=b)
    with pytest.raises(ClientError) as ei:
        s3.head_bucket(Bucket=unique("nope"))
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    loc = s3.get_bucket_location(Bucket=b)
    assert loc["LocationConstraint"] in (None, "")  # us-east-1 is null


def test_presigned_put_with_boto3(keycard, s3):
    b = fresh_bucket(s3)
    url = s3.generate_presigned_url("put_object", Params={"Bucket": b, "Key": "up.txt"}, ExpiresIn=300)
    req = urllib.request.Request(url, data=b"uploaded via presigned PUT", method="PUT")
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200
    assert s3.get_object(Bucket=b, Key="up.txt")["Body"].read() == b"uploaded via presigned PUT"
    # An expired presigned URL is refused.
    old = s3.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "up.txt"}, ExpiresIn=1)
    time.sleep(2)
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(old, timeout=10)
    assert ei.value.code == 403
    assert b"expired" in ei.value.read().lower()


def test_session_credentials_with_s3(keycard, bucket, s3):
    """An assumed role's session reads the bucket as its policy allows."""
    s3.put_object(Bucket=bucket, Key="role/data.txt", Body=b"for the role")
    _, creds = keycard.new_user(policy=allow("sts:AssumeRole"))
    role = keycard.new_role(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                                                  "Action": "sts:AssumeRole"}]},
        policy=SEED_POLICY,
    )
    c = keycard.client("sts", creds).assume_role(RoleArn=role["Arn"], RoleSessionName="reader")["Credentials"]
    rs3 = keycard.client("s3", {k: c[k] for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")})
    assert rs3.get_object(Bucket=bucket, Key="role/data.txt")["Body"].read() == b"for the role"
    with pytest.raises(ClientError) as ei:
        rs3.put_object(Bucket=bucket, Key="role/evil.txt", Body=b"x")
    assert error_code(ei.value) == "AccessDenied"


# ---------------------------------------------------------------- tagging


def tagset(d):
    return [{"Key": k, "Value": v} for k, v in d.items()]


def test_object_tags_decide_get_object(keycard, s3):
    """A policy that allows GetObject only when s3:ExistingObjectTag/class
    is public: the object's stored tags decide, and retagging changes it."""
    b = fresh_bucket(s3)
    s3.put_object(Bucket=b, Key="pub.txt", Body=b"pub", Tagging="class=public&team=blue")
    s3.put_object(Bucket=b, Key="priv.txt", Body=b"priv", Tagging="class=private")
    s3.put_object(Bucket=b, Key="none.txt", Body=b"none")
    got = s3.get_object_tagging(Bucket=b, Key="pub.txt")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in got) == [("class", "public"), ("team", "blue")]
    assert s3.get_object(Bucket=b, Key="pub.txt")["TagCount"] == 2
    policy = allow(
        "s3:GetObject",
        f"arn:aws:s3:::{b}/*",
        Condition={"StringEquals": {"s3:ExistingObjectTag/class": "public"}},
    )
    _, creds = keycard.new_user(policy=policy)
    user = keycard.client("s3", creds=creds)
    assert user.get_object(Bucket=b, Key="pub.txt")["Body"].read() == b"pub"
    for key in ("priv.txt", "none.txt"):
        with pytest.raises(ClientError) as ei:
            user.get_object(Bucket=b, Key=key)
        assert error_code(ei.value) == "AccessDenied"
    # Retag: the decision follows the stored tags.
    s3.put_object_tagging(Bucket=b, Key="priv.txt", Tagging={"TagSet": tagset({"class": "public"})})
    assert user.get_object(Bucket=b, Key="priv.txt")["Body"].read() == b"priv"
    s3.delete_object_tagging(Bucket=b, Key="pub.txt")
    assert s3.get_object_tagging(Bucket=b, Key="pub.txt")["TagSet"] == []
    with pytest.raises(ClientError) as ei:
        user.get_object(Bucket=b, Key="pub.txt")
    assert error_code(ei.value) == "AccessDenied"
    # Copies keep the source's tags unless told to replace them.
    s3.copy_object(Bucket=b, Key="copy.txt", CopySource={"Bucket": b, "Key": "priv.txt"})
    assert s3.get_object_tagging(Bucket=b, Key="copy.txt")["TagSet"] == tagset({"class": "public"})
    s3.copy_object(
        Bucket=b, Key="copy2.txt", CopySource={"Bucket": b, "Key": "priv.txt"},
        TaggingDirective="REPLACE", Tagging="class=secret",
    )
    assert s3.get_object_tagging(Bucket=b, Key="copy2.txt")["TagSet"] == tagset({"class": "secret"})


def test_request_object_tags_decide_put(keycard, s3):
    """s3:RequestObjectTag/… and s3:RequestObjectTagKeys on PutObject and
    PutObjectTagging; multipart uploads keep their x-amz-tagging."""
    b = fresh_bucket(s3)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:PutObjectTagging"],
                "Resource": f"arn:aws:s3:::{b}/*",
                "Condition": {
                    "StringEquals": {"s3:RequestObjectTag/class": "public"},
                    "ForAllValues:StringEquals": {"s3:RequestObjectTagKeys": ["class"]},
                },
            }
        ],
    }
    _, creds = keycard.new_user(policy=policy)
    user = keycard.client("s3", creds=creds)
    user.put_object(Bucket=b, Key="ok.txt", Body=b"x", Tagging="class=public")
    for tagging in ("class=private", "class=public&team=blue", None):
        kw = {"Tagging": tagging} if tagging else {}
        with pytest.raises(ClientError) as ei:
            user.put_object(Bucket=b, Key="no.txt", Body=b"x", **kw)
        assert error_code(ei.value) == "AccessDenied", tagging
    user.put_object_tagging(Bucket=b, Key="ok.txt", Tagging={"TagSet": tagset({"class": "public"})})
    with pytest.raises(ClientError) as ei:
        user.put_object_tagging(Bucket=b, Key="ok.txt", Tagging={"TagSet": tagset({"class": "x"})})
    assert error_code(ei.value) == "AccessDenied"
    # Multipart: the completed object carries the upload's tags.
    up = s3.create_multipart_upload(Bucket=b, Key="mp.bin", Tagging="class=public")["UploadId"]
    etag = s3.upload_part(Bucket=b, Key="mp.bin", UploadId=up, PartNumber=1, Body=b"part")["ETag"]
    s3.complete_multipart_upload(
        Bucket=b, Key="mp.bin", UploadId=up, MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": 1}]}
    )
    assert s3.get_object_tagging(Bucket=b, Key="mp.bin")["TagSet"] == tagset({"class": "public"})


def test_tag_limits_and_errors(s3):
    b = fresh_bucket(s3)
    s3.put_object(Bucket=b, Key="k", Body=b"x")
    eleven = "&".join(f"k{i}=v" for i in range(11))
    for bad in (eleven, "aws:x=1", "a=1&a=2", "k=" + "v" * 257):
        with pytest.raises(ClientError) as ei:
            s3.put_object(Bucket=b, Key="t", Body=b"x", Tagging=bad)
        assert error_code(ei.value) == "InvalidTag", bad
    with pytest.raises(ClientError) as ei:
        s3.put_object_tagging(
            Bucket=b, Key="k", Tagging={"TagSet": tagset({f"k{i}": "v" for i in range(11)})}
        )
    assert error_code(ei.value) == "InvalidTag"
    with pytest.raises(ClientError) as ei:
        s3.put_object_tagging(Bucket=b, Key="missing", Tagging={"TagSet": tagset({"a": "b"})})
    assert error_code(ei.value) == "NoSuchKey"
    # Buckets: up to 50 tags, NoSuchTagSet when there are none.
    with pytest.raises(ClientError) as ei:
        s3.get_bucket_tagging(Bucket=b)
    assert error_code(ei.value) == "NoSuchTagSet"
    fifty = {f"k{i}": "v" for i in range(50)}
    s3.put_bucket_tagging(Bucket=b, Tagging={"TagSet": tagset(fifty)})
    assert len(s3.get_bucket_tagging(Bucket=b)["TagSet"]) == 50
    with pytest.raises(ClientError) as ei:
        s3.put_bucket_tagging(Bucket=b, Tagging={"TagSet": tagset({**fifty, "k50": "v"})})
    assert error_code(ei.value) == "InvalidTag"
    s3.delete_bucket_tagging(Bucket=b)
    with pytest.raises(ClientError) as ei:
        s3.get_bucket_tagging(Bucket=b)
    assert error_code(ei.value) == "NoSuchTagSet"


def test_bucket_tags_decide_bucket_checks(keycard, s3):
    """aws:ResourceTag/… on bucket checks, aws:RequestTag/… on PutBucketTagging."""
    b = fresh_bucket(s3)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": f"arn:aws:s3:::{b}",
                "Condition": {"StringEquals": {"aws:ResourceTag/team": "blue"}},
            },
            {
                "Effect": "Allow",
                "Action": "s3:PutBucketTagging",
                "Resource": f"arn:aws:s3:::{b}",
                "Condition": {"StringEquals": {"aws:RequestTag/team": "blue"}},
            },
        ],
    }
    _, creds = keycard.new_user(policy=policy)
    user = keycard.client("s3", creds=creds)
    with pytest.raises(ClientError) as ei:
        user.list_objects_v2(Bucket=b)
    assert error_code(ei.value) == "AccessDenied"
    with pytest.raises(ClientError) as ei:
        user.put_bucket_tagging(Bucket=b, Tagging={"TagSet": tagset({"team": "red"})})
    assert error_code(ei.value) == "AccessDenied"
    user.put_bucket_tagging(Bucket=b, Tagging={"TagSet": tagset({"team": "blue"})})
    assert user.list_objects_v2(Bucket=b)["KeyCount"] == 0
    # DeleteBucketTagging is s3:PutBucketTagging (with no request tags: denied here).
    with pytest.raises(ClientError) as ei:
        user.delete_bucket_tagging(Bucket=b)
    assert error_code(ei.value) == "AccessDenied"
    assert "s3:PutBucketTagging" in ei.value.response["Error"]["Message"]
