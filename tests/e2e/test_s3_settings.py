"""S3 bucket settings with the real CLI and boto3: CORS (configuration,
preflight, headers on actual requests), default encryption, Block Public
Access, policy status, Object Ownership, ACLs (stored, enforced, taking part
in authorization) and the stored website, logging and notification
configurations."""

import json

import pytest

from conftest import allow, create_account, doc, expect_error, raw_http, unique


@pytest.fixture(scope="module")
def s3(keycard):
    return keycard.client("s3")


def fresh(s3, **kw) -> str:
    name = unique("cfg")
    s3.create_bucket(Bucket=name, **kw)
    return name


def anonymous_get(keycard, b, k):
    status, _, body = raw_http("GET", f"{keycard.endpoint}/{b}/{k}")
    return status, body


PUBLIC_READ = lambda b: doc(  # noqa: E731
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{b}/*"}],
    }
)


def test_new_bucket_defaults(keycard, s3):
    b = fresh(s3)
    enc = s3.get_bucket_encryption(Bucket=b)["ServerSideEncryptionConfiguration"]["Rules"]
    assert enc == [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": False}]
    pab = s3.get_public_access_block(Bucket=b)["PublicAccessBlockConfiguration"]
    assert pab == {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
    own = s3.get_bucket_ownership_controls(Bucket=b)["OwnershipControls"]["Rules"]
    assert own == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    assert "LoggingEnabled" not in s3.get_bucket_logging(Bucket=b)
    n = s3.get_bucket_notification_configuration(Bucket=b)
    assert not any(k in n for k in ("TopicConfigurations", "QueueConfigurations", "LambdaFunctionConfigurations"))
    expect_error("NoSuchCORSConfiguration", s3.get_bucket_cors, Bucket=b)
    expect_error("NoSuchWebsiteConfiguration", s3.get_bucket_website, Bucket=b)
    expect_error("NoSuchBucketPolicy", s3.get_bucket_policy_status, Bucket=b)
    acl = s3.get_bucket_acl(Bucket=b)
    assert [g["Permission"] for g in acl["Grants"]] == ["FULL_CONTROL"]
    # The CLI reads the same.
    out = keycard.aws("s3api", "get-public-access-block", "--bucket", b)
    assert out["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True


CORS = {
    "CORSRules": [
        {
            "ID": "site",
            "AllowedOrigins": ["https://*.example.com"],
            "AllowedMethods": ["GET", "PUT"],
            "AllowedHeaders": ["x-amz-*", "Content-Type"],
            "ExposeHeaders": ["ETag"],
            "MaxAgeSeconds": 600,
        },
        {"AllowedOrigins": ["*"], "AllowedMethods": ["HEAD"]},
    ]
}


def test_cors_configuration(keycard, s3, tmp_path):
    b = fresh(s3)
    f = tmp_path / "cors.json"
    f.write_text(json.dumps(CORS))
    keycard.aws("s3api", "put-bucket-cors", "--bucket", b, "--cors-configuration", f"file://{f}")
    got = keycard.aws("s3api", "get-bucket-cors", "--bucket", b)["CORSRules"]
    assert got == CORS["CORSRules"]
    bad = {"CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]}]}
    e = expect_error("InvalidRequest", s3.put_bucket_cors, Bucket=b, CORSConfiguration=bad)
    assert "Unsupported method is PATCH" in e.response["Error"]["Message"]
    two = {"CORSRules": [{"AllowedOrigins": ["https://*.*.com"], "AllowedMethods": ["GET"]}]}
    expect_error("InvalidRequest", s3.put_bucket_cors, Bucket=b, CORSConfiguration=two)
    expect_error("MalformedXML", s3.put_bucket_cors, Bucket=b, CORSConfiguration={"CORSRules": []})
    many = {"CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]}] * 101}
    expect_error("MalformedXML", s3.put_bucket_cors, Bucket=b, CORSConfiguration=many)
    # Refused input changed nothing.
    assert s3.get_bucket_cors(Bucket=b)["CORSRules"] == CORS["CORSRules"]
    keycard.aws("s3api", "delete-bucket-cors", "--bucket", b)
    expect_error("NoSuchCORSConfiguration", s3.get_bucket_cors, Bucket=b)


def preflight(keycard, path, origin=None, method=None, headers=None):
    h = {}
    if origin:
        h["Origin"] = origin
    if method:
        h["Access-Control-Request-Method"] = method
    if headers:
        h["Access-Control-Request-Headers"] = headers
    return raw_http("OPTIONS", f"{keycard.endpoint}{path}", headers=h)


def test_cors_preflight_and_actual_requests(keycard, s3):
    b = fresh(s3)
    plain = fresh(s3)
    s3.put_bucket_cors(Bucket=b, CORSConfiguration=CORS)
    s3.put_object(Bucket=b, Key="k", Body=b"data")
    origin = "https://app.example.com"

    status, h, _ = preflight(keycard, f"/{b}/k", origin, "PUT", "Content-Type, X-Amz-Meta-Name")
    assert status == 200
    assert h["access-control-allow-origin"] == origin
    assert h["access-control-allow-methods"] == "GET, PUT"
    assert h["access-control-allow-headers"] == "content-type, x-amz-meta-name"
    assert h["access-control-expose-headers"] == "ETag"
    assert h["access-control-max-age"] == "600"
    assert h["access-control-allow-credentials"] == "true"

    status, h, _ = preflight(keycard, f"/{b}", "https://other.org", "HEAD")
    assert status == 200 and h["access-control-allow-origin"] == "*"

    for path, o, m, hdr, code, text in [
        (f"/{b}/k", origin, "DELETE", None, "AccessForbidden", "This CORS request is not allowed"),
        (f"/{b}/k", origin, "GET", "authorization", "AccessForbidden", "This CORS request is not allowed"),
        (f"/{plain}/k", origin, "GET", None, "AccessForbidden", "CORS is not enabled for this bucket"),
        (f"/{b}/k", None, "GET", None, "BadRequest", "Origin request header needed"),
    ]:
        status, h, body = preflight(keycard, path, o, m, hdr)
        assert status == (400 if code == "BadRequest" else 403), (path, m, body)
        assert f"<Code>{code}</Code>".encode() in body and text.encode() in body
        assert "access-control-allow-origin" not in h

    # Actual requests: the matching rule's headers, on errors too.
    status, h, body = raw_http("GET", f"{keycard.endpoint}/{b}/k", headers={"Origin": origin})
    assert status == 403 and h["access-control-allow-origin"] == origin
    resp = s3.get_object(Bucket=b, Key="k")  # no Origin: no CORS headers
    assert "access-control-allow-origin" not in resp["ResponseMetadata"]["HTTPHeaders"]

    def with_origin(request, **_):
        request.headers["Origin"] = origin

    s3o = keycard.client("s3")
    s3o.meta.events.register("before-sign.s3.GetObject", with_origin)
    got = s3o.get_object(Bucket=b, Key="k")["ResponseMetadata"]["HTTPHeaders"]
    assert got["access-control-allow-origin"] == origin
    assert got["access-control-expose-headers"] == "ETag"


def test_default_encryption(keycard, s3):
    b = fresh(s3)
    r = s3.put_object(Bucket=b, Key="plain", Body=b"x")
    assert r["ServerSideEncryption"] == "AES256"
    key = "arn:aws:kms:us-east-1:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    keycard.aws(
        "s3api", "put-bucket-encryption", "--bucket", b, "--server-side-encryption-configuration",
        json.dumps({"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key},
                               "BucketKeyEnabled": True}]}),
    )
    rule = s3.get_bucket_encryption(Bucket=b)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule == {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key},
                    "BucketKeyEnabled": True}
    r = s3.put_object(Bucket=b, Key="kms", Body=b"x")
    assert r["ServerSideEncryption"] == "aws:kms" and r["SSEKMSKeyId"] == key and r["BucketKeyEnabled"] is True
    h = s3.head_object(Bucket=b, Key="kms")
    assert h["ServerSideEncryption"] == "aws:kms" and h["SSEKMSKeyId"] == key
    # Objects written before keep what they were written with.
    assert s3.head_object(Bucket=b, Key="plain")["ServerSideEncryption"] == "AES256"
    # The request's own choice wins over the default.
    r = s3.put_object(Bucket=b, Key="s3", Body=b"x", ServerSideEncryption="AES256")
    assert r["ServerSideEncryption"] == "AES256" and "SSEKMSKeyId" not in r
    expect_error("InvalidArgument", s3.put_object, Bucket=b, Key="bad", Body=b"x", ServerSideEncryption="rot13")
    bad = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "rot13"}}]}
    expect_error("MalformedXML", s3.put_bucket_encryption, Bucket=b, ServerSideEncryptionConfiguration=bad)
    mixed = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256", "KMSMasterKeyID": key}}]}
    expect_error("InvalidArgument", s3.put_bucket_encryption, Bucket=b, ServerSideEncryptionConfiguration=mixed)
    s3.delete_bucket_encryption(Bucket=b)
    rule = s3.get_bucket_encryption(Bucket=b)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}


def test_block_public_policy_and_policy_status(keycard, s3):
    b = fresh(s3)
    s3.put_object(Bucket=b, Key="k", Body=b"data")
    e = expect_error("AccessDenied", s3.put_bucket_policy, Bucket=b, Policy=PUBLIC_READ(b))
    assert "BlockPublicPolicy" in e.response["Error"]["Message"]
    expect_error("NoSuchBucketPolicy", s3.get_bucket_policy, Bucket=b)
    # A policy naming an account is not public: allowed, and reported so.
    acct = s3.get_bucket_acl(Bucket=b)["Owner"]["DisplayName"]
    private = allow("s3:GetObject", f"arn:aws:s3:::{b}/*", Principal={"AWS": f"arn:aws:iam::{acct}:root"})
    s3.put_bucket_policy(Bucket=b, Policy=doc(private))
    assert s3.get_bucket_policy_status(Bucket=b)["PolicyStatus"] == {"IsPublic": False}

    keycard.aws("s3api", "delete-public-access-block", "--bucket", b)
    expect_error("NoSuchPublicAccessBlockConfiguration", s3.get_public_access_block, Bucket=b)
    s3.put_bucket_policy(Bucket=b, Policy=PUBLIC_READ(b))
    assert s3.get_bucket_policy_status(Bucket=b)["PolicyStatus"] == {"IsPublic": True}
    assert anonymous_get(keycard, b, "k") == (200, b"data")

    # RestrictPublicBuckets: the public policy no longer lets outsiders in.
    s3.put_public_access_block(Bucket=b, PublicAccessBlockConfiguration={"RestrictPublicBuckets": True})
    status, body = anonymous_get(keycard, b, "k")
    assert status == 403 and b"AccessDenied" in body
    # …while the owner's own access is unchanged.
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b"data"
    pab = s3.get_public_access_block(Bucket=b)["PublicAccessBlockConfiguration"]
    assert pab == {"BlockPublicAcls": False, "IgnorePublicAcls": False, "BlockPublicPolicy": False,
                   "RestrictPublicBuckets": True}


def test_acls_are_disabled_by_default(keycard, s3):
    b = fresh(s3)
    e = expect_error("AccessControlListNotSupported", s3.put_bucket_acl, Bucket=b, ACL="public-read")
    assert e.response["Error"]["Message"] == "The bucket does not allow ACLs"
    expect_error("AccessControlListNotSupported", s3.put_object, Bucket=b, Key="k", Body=b"x", ACL="public-read")
    s3.put_object(Bucket=b, Key="k", Body=b"x", ACL="bucket-owner-full-control")
    err = keycard.aws_error("s3api", "create-bucket", "--bucket", unique("cfg"), "--acl", "public-read")
    assert err.code == "InvalidBucketAclWithObjectOwnership"
    err = keycard.aws_error("s3api", "create-bucket", "--bucket", unique("cfg"), "--acl", "public-read",
                            "--object-ownership", "ObjectWriter")
    assert err.code == "InvalidBucketAclWithBlockPublicAccessError"


def test_acl_grants_authorize_and_public_access_block_governs_them(keycard, s3):
    b = fresh(s3, ObjectOwnership="ObjectWriter")
    assert s3.get_bucket_ownership_controls(Bucket=b)["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "ObjectWriter"}]
    s3.put_object(Bucket=b, Key="k", Body=b"data")
    # BlockPublicAcls (on by default) refuses public ACLs.
    expect_error("AccessDenied", s3.put_object_acl, Bucket=b, Key="k", ACL="public-read")
    expect_error("AccessDenied", s3.put_object, Bucket=b, Key="p", Body=b"x", ACL="public-read")
    s3.delete_public_access_block(Bucket=b)
    keycard.aws("s3api", "put-object-acl", "--bucket", b, "--key", "k", "--acl", "public-read")
    grants = s3.get_object_acl(Bucket=b, Key="k")["Grants"]
    assert {"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"},
            "Permission": "READ"} in grants
    assert anonymous_get(keycard, b, "k") == (200, b"data")
    # IgnorePublicAcls: the grant stays but no longer counts.
    s3.put_public_access_block(Bucket=b, PublicAccessBlockConfiguration={"IgnorePublicAcls": True})
    assert anonymous_get(keycard, b, "k")[0] == 403
    assert len(s3.get_object_acl(Bucket=b, Key="k")["Grants"]) == 2
    # Back to BucketOwnerEnforced: ACLs stop counting at all.
    s3.delete_public_access_block(Bucket=b)
    assert anonymous_get(keycard, b, "k")[0] == 200
    s3.put_bucket_ownership_controls(Bucket=b, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})
    assert anonymous_get(keycard, b, "k")[0] == 403


def test_acl_grant_to_another_account(keycard, s3):
    other_id, other = create_account(keycard)
    b = fresh(s3, ObjectOwnership="BucketOwnerPreferred")
    s3.put_object(Bucket=b, Key="k", Body=b"data")
    theirs = keycard.client("s3", creds=other)
    expect_error("AccessDenied", theirs.get_object, Bucket=b, Key="k")
    expect_error("AccessDenied", theirs.list_objects_v2, Bucket=b)
    canonical = theirs.list_buckets()["Owner"]["ID"]
    s3.put_bucket_acl(Bucket=b, GrantRead=f'id="{canonical}"', GrantFullControl=f'id="{s3.get_bucket_acl(Bucket=b)["Owner"]["ID"]}"')
    assert [o["Key"] for o in theirs.list_objects_v2(Bucket=b)["Contents"]] == ["k"]
    s3.put_object_acl(
        Bucket=b, Key="k",
        AccessControlPolicy={
            "Owner": s3.get_bucket_acl(Bucket=b)["Owner"],
            "Grants": [{"Grantee": {"Type": "CanonicalUser", "ID": canonical}, "Permission": "READ"}],
        },
    )
    assert theirs.get_object(Bucket=b, Key="k")["Body"].read() == b"data"
    grantees = [g["Grantee"].get("ID") for g in s3.get_object_acl(Bucket=b, Key="k")["Grants"]]
    assert canonical in grantees
    # An explicit deny in the bucket policy still wins over the grant.
    deny = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::{other_id}:root"},
                                                    "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{b}/*"}]}
    s3.put_bucket_policy(Bucket=b, Policy=doc(deny))
    expect_error("AccessDenied", theirs.get_object, Bucket=b, Key="k")
    expect_error("InvalidArgument", s3.put_bucket_acl, Bucket=b, GrantRead='id="0000"')
    expect_error("UnresolvableGrantByEmailAddress", s3.put_bucket_acl, Bucket=b, GrantRead='emailAddress="a@example.com"')


def test_website_logging_and_notification(keycard, s3):
    b = fresh(s3)
    logs = fresh(s3)
    site = {"IndexDocument": {"Suffix": "index.html"}, "ErrorDocument": {"Key": "error.html"}}
    keycard.aws("s3api", "put-bucket-website", "--bucket", b, "--website-configuration", json.dumps(site))
    got = s3.get_bucket_website(Bucket=b)
    assert got["IndexDocument"] == {"Suffix": "index.html"} and got["ErrorDocument"] == {"Key": "error.html"}
    expect_error("InvalidArgument", s3.put_bucket_website, Bucket=b, WebsiteConfiguration={"ErrorDocument": {"Key": "e"}})
    expect_error("InvalidArgument", s3.put_bucket_website, Bucket=b,
                 WebsiteConfiguration={"IndexDocument": {"Suffix": "a/b"}})
    s3.delete_bucket_website(Bucket=b)
    expect_error("NoSuchWebsiteConfiguration", s3.get_bucket_website, Bucket=b)

    status = {"LoggingEnabled": {"TargetBucket": logs, "TargetPrefix": "logs/"}}
    s3.put_bucket_logging(Bucket=b, BucketLoggingStatus=status)
    assert s3.get_bucket_logging(Bucket=b)["LoggingEnabled"] == {"TargetBucket": logs, "TargetPrefix": "logs/"}
    missing = {"LoggingEnabled": {"TargetBucket": unique("nope"), "TargetPrefix": "x/"}}
    expect_error("InvalidTargetBucketForLogging", s3.put_bucket_logging, Bucket=b, BucketLoggingStatus=missing)
    s3.put_bucket_logging(Bucket=b, BucketLoggingStatus={})
    assert "LoggingEnabled" not in s3.get_bucket_logging(Bucket=b)

    queue = {"QueueConfigurations": [{"Id": "q", "QueueArn": "arn:aws:sqs:us-east-1:000000000000:events",
                                      "Events": ["s3:ObjectCreated:*"]}]}
    s3.put_bucket_notification_configuration(Bucket=b, NotificationConfiguration=queue)
    got = s3.get_bucket_notification_configuration(Bucket=b)["QueueConfigurations"]
    assert got == queue["QueueConfigurations"]
    bad = {"QueueConfigurations": [{"QueueArn": "arn:aws:sns:us-east-1:000000000000:t", "Events": ["s3:ObjectCreated:*"]}]}
    expect_error("InvalidArgument", s3.put_bucket_notification_configuration, Bucket=b, NotificationConfiguration=bad)
    assert s3.get_bucket_notification_configuration(Bucket=b)["QueueConfigurations"] == queue["QueueConfigurations"]


def test_settings_go_with_the_bucket(keycard, s3):
    b = fresh(s3)
    s3.put_bucket_cors(Bucket=b, CORSConfiguration=CORS)
    s3.delete_public_access_block(Bucket=b)
    s3.delete_bucket(Bucket=b)
    s3.create_bucket(Bucket=b)
    expect_error("NoSuchCORSConfiguration", s3.get_bucket_cors, Bucket=b)
    assert s3.get_public_access_block(Bucket=b)["PublicAccessBlockConfiguration"]["BlockPublicAcls"] is True


def test_settings_actions(keycard, s3):
    """Each operation decides its own IAM action; a Delete… of a setting is
    its Put… action (AWS's service authorization reference)."""
    b = fresh(s3)
    s3.put_bucket_cors(Bucket=b, CORSConfiguration=CORS)
    _, creds = keycard.new_user(policy=allow(["s3:PutBucketCORS", "s3:PutBucketPublicAccessBlock"], f"arn:aws:s3:::{b}"))
    theirs = keycard.client("s3", creds=creds)
    expect_error("AccessDenied", theirs.get_bucket_cors, Bucket=b)
    theirs.delete_bucket_cors(Bucket=b)
    theirs.delete_public_access_block(Bucket=b)
    expect_error("AccessDenied", theirs.get_public_access_block, Bucket=b)
    expect_error("AccessDenied", theirs.delete_bucket_encryption, Bucket=b)
