"""Failures as AWS reports them: bad signatures, unknown and inactive keys,
malformed policies, conflicts, validation, hostile or oversized requests,
and signature versions keycard refuses."""

import datetime
import random
import re
import socket
from urllib.parse import urlsplit

import pytest
from botocore.auth import HmacV1Auth, HmacV1QueryAuth, SigV2Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from conftest import ACCOUNT, allow, doc, error_code, expect_error, raw_http, signed, trust_for, unique

FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}


def xml_code(body: bytes):
    m = re.search(rb"<Code>([^<]+)</Code>", body)
    return m.group(1).decode() if m else None


def wrong_secret(creds):
    s = creds["SecretAccessKey"]
    return {"AccessKeyId": creds["AccessKeyId"], "SecretAccessKey": ("A" if s[0] != "A" else "B") + s[1:]}


UNKNOWN = {"AccessKeyId": "AKIAIOSFODNN7EXAMPLE", "SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}


def test_bad_signature(keycard):
    bad = wrong_secret(keycard.root_creds)
    for service, call in (
        ("iam", lambda c: c.list_users()),
        ("sts", lambda c: c.get_caller_identity()),
        ("s3", lambda c: c.list_buckets()),
    ):
        with pytest.raises(ClientError) as ei:
            call(keycard.client(service, bad))
        assert error_code(ei.value) == "SignatureDoesNotMatch", service
        assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    # The CLI says the same.
    keycard.aws_error("iam", "list-users", creds=bad, code="SignatureDoesNotMatch")


def test_unknown_access_key(keycard):
    for service, call, code in (
        ("iam", lambda c: c.list_users(), "InvalidClientTokenId"),
        ("sts", lambda c: c.get_caller_identity(), "InvalidClientTokenId"),
        ("s3", lambda c: c.list_buckets(), "InvalidAccessKeyId"),
    ):
        with pytest.raises(ClientError) as ei:
            call(keycard.client(service, UNKNOWN))
        assert error_code(ei.value) == code, service
        assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_inactive_and_deleted_key(keycard):
    user, creds = keycard.new_user()
    iam = keycard.client("iam")
    name, key_id = user["UserName"], creds["AccessKeyId"]
    sts = keycard.client("sts", creds)
    assert sts.get_caller_identity()["Arn"] == user["Arn"]

    keycard.aws("iam", "update-access-key", "--user-name", name, "--access-key-id", key_id, "--status", "Inactive")
    keys = iam.list_access_keys(UserName=name)["AccessKeyMetadata"]
    assert [(k["AccessKeyId"], k["Status"]) for k in keys] == [(key_id, "Inactive")]
    keycard.aws_error("sts", "get-caller-identity", creds=creds, code="InvalidClientTokenId")
    expect_error("InvalidClientTokenId", keycard.client("iam", creds).get_user)
    with pytest.raises(ClientError) as ei:
        keycard.client("s3", creds).list_buckets()
    assert error_code(ei.value) == "InvalidAccessKeyId"  # S3's name for an unknown or inactive key

    iam.update_access_key(UserName=name, AccessKeyId=key_id, Status="Active")
    assert sts.get_caller_identity()["Arn"] == user["Arn"]

    iam.delete_access_key(UserName=name, AccessKeyId=key_id)
    expect_error("InvalidClientTokenId", sts.get_caller_identity)


def local_policies(iam):
    return sorted(p["Arn"] for p in iam.list_policies(Scope="Local")["Policies"])


MALFORMED = {
    "not-json": "{not json",
    "no-statement": doc({"Version": "2012-10-17"}),
    "bad-effect": doc({"Version": "2012-10-17", "Statement": [{"Effect": "Maybe", "Action": "s3:*", "Resource": "*"}]}),
    "no-action": doc({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*"}]}),
    "bad-version": doc({"Version": "2099-01-01", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}),
    "no-resource": doc({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*"}]}),
    "principal-in-identity-policy": doc({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*"}]}),
}


def test_malformed_policy_creates_nothing(keycard):
    iam = keycard.client("iam")
    before = local_policies(iam)
    # The CLI, as a person would hit it.
    name = unique("Bad")
    keycard.aws_error("iam", "create-policy", "--policy-name", name, "--policy-document", "{not json",
                      code="MalformedPolicyDocument")
    for label, document in MALFORMED.items():
        name = unique("Bad")
        try:
            expect_error("MalformedPolicyDocument", iam.create_policy, PolicyName=name, PolicyDocument=document)
        except AssertionError as e:
            raise AssertionError(f"{label}: {e}") from None
        expect_error("NoSuchEntity", iam.get_policy, PolicyArn=f"arn:aws:iam::{ACCOUNT}:policy/{name}")
    assert local_policies(iam) == before


def test_malformed_trust_and_inline_policies(keycard):
    iam = keycard.client("iam")
    name = unique("role")
    keycard.aws_error("iam", "create-role", "--role-name", name, "--assume-role-policy-document", "{nope",
                      code="MalformedPolicyDocument")
    expect_error("NoSuchEntity", iam.get_role, RoleName=name)
    # A trust policy must name a principal.
    expect_error("MalformedPolicyDocument", iam.create_role, RoleName=name,
                 AssumeRolePolicyDocument=doc(allow("sts:AssumeRole")))
    expect_error("NoSuchEntity", iam.get_role, RoleName=name)

    user, _ = keycard.new_user()
    expect_error("MalformedPolicyDocument", iam.put_user_policy, UserName=user["UserName"], PolicyName="p",
                 PolicyDocument='{"Statement": 5}')
    assert iam.list_user_policies(UserName=user["UserName"])["PolicyNames"] == []


def test_entity_conflicts(keycard):
    iam = keycard.client("iam")
    name = unique("dup")
    iam.create_user(UserName=name)
    err = keycard.aws_error("iam", "create-user", "--user-name", name, code="EntityAlreadyExists")
    assert name in err.stderr
    e = expect_error("EntityAlreadyExists", iam.create_user, UserName=name)
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    # IAM names are unique regardless of case.
    expect_error("EntityAlreadyExists", iam.create_user, UserName=name.upper())

    keycard.aws_error("iam", "get-user", "--user-name", unique("ghost"), code="NoSuchEntity")
    e = expect_error("NoSuchEntity", iam.get_user, UserName=unique("ghost"))
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    expect_error("NoSuchEntity", iam.get_role, RoleName=unique("ghost"))
    expect_error("NoSuchEntity", iam.delete_user, UserName=unique("ghost"))

    pol = iam.create_policy(PolicyName=unique("P"), PolicyDocument=doc(allow("s3:ListAllMyBuckets")))["Policy"]
    expect_error("EntityAlreadyExists", iam.create_policy, PolicyName=pol["PolicyName"],
                 PolicyDocument=doc(allow("s3:ListAllMyBuckets")))
    iam.attach_user_policy(UserName=name, PolicyArn=pol["Arn"])
    keycard.aws_error("iam", "delete-policy", "--policy-arn", pol["Arn"], code="DeleteConflict")
    expect_error("DeleteConflict", iam.delete_user, UserName=name)
    iam.detach_user_policy(UserName=name, PolicyArn=pol["Arn"])
    iam.delete_policy(PolicyArn=pol["Arn"])
    iam.create_access_key(UserName=name)
    expect_error("DeleteConflict", iam.delete_user, UserName=name)
    for k in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]:
        iam.delete_access_key(UserName=name, AccessKeyId=k["AccessKeyId"])
    iam.delete_user(UserName=name)
    expect_error("NoSuchEntity", iam.get_user, UserName=name)

    # Two access keys per user at most.
    other = unique("keys")
    iam.create_user(UserName=other)
    iam.create_access_key(UserName=other)
    iam.create_access_key(UserName=other)
    expect_error("LimitExceeded", iam.create_access_key, UserName=other)


def test_validation_errors(keycard):
    iam = keycard.client("iam")
    err = keycard.aws_error("iam", "create-user", "--user-name", "bad name!", code="ValidationError")
    assert "userName" in err.stderr
    expect_error("ValidationError", iam.create_user, UserName="x" * 65)
    expect_error("ValidationError", iam.create_role, RoleName="bad/role",
                 AssumeRolePolicyDocument=doc(trust_for(f"arn:aws:iam::{ACCOUNT}:root")))
    expect_error("ValidationError", iam.create_user, UserName="ok-name", Path="no-slashes")


def test_unauthenticated_garbage_is_4xx_xml(keycard):
    status, headers, body = raw_http("POST", keycard.endpoint + "/", b"\x00\xff&&==garbage=%zz", FORM)
    assert 400 <= status < 500, (status, body)
    assert body.lstrip().startswith(b"<"), body
    assert xml_code(body), body

    status, _, body = raw_http("POST", keycard.endpoint + "/", b"Action=ListUsers&Version=2010-05-08", FORM)
    assert status == 403, (status, body)
    assert xml_code(body) == "MissingAuthenticationToken", body
    assert b"ListUsersResult" not in body


def test_signed_garbage_is_4xx_xml(keycard):
    url = keycard.endpoint + "/"
    for body in (b"\x00\xff&&==garbage=%zz", b"Action=NoSuchAction&Version=2010-05-08", b"Version=2010-05-08",
                 b"Action=CreateUser&Version=2010-05-08"):
        status, _, resp = signed("POST", url, keycard.root_creds, "iam", body, FORM)
        assert 400 <= status < 500, (body, status, resp)
        assert xml_code(resp), resp


def test_malformed_authorization_header(keycard):
    hdrs = dict(FORM, Authorization="AWS4-HMAC-SHA256 Credential=garbage", **{"X-Amz-Date": "20200101T000000Z"})
    status, _, body = raw_http("POST", keycard.endpoint + "/", b"Action=ListUsers&Version=2010-05-08", hdrs)
    assert 400 <= status < 500, (status, body)
    assert xml_code(body)


def send_then_read(endpoint, method, headers, body):
    """Write a request on a raw socket and read the answer even when the
    server stops reading the body early (it may answer and close while we
    are still writing). Returns (status, response bytes)."""
    u = urlsplit(endpoint)
    with socket.create_connection((u.hostname, u.port), timeout=30) as s:
        head = f"{method} / HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k.lower() not in ("content-length", "host"))
        s.sendall(head.encode() + b"\r\n")
        try:
            for i in range(0, len(body), 1 << 16):
                s.sendall(body[i : i + (1 << 16)])
        except OSError:
            pass  # the server answered early and closed: read the answer
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except OSError:
            pass
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    assert m, f"no HTTP response at all (connection dropped): {data[:200]!r}"
    return int(m.group(1)), data


def test_oversize_body_is_4xx(keycard):
    body = b"Action=ListUsers&Version=2010-05-08&Junk=" + b"x" * (20 * 1024 * 1024)
    req = AWSRequest(method="POST", url=keycard.endpoint + "/", data=body, headers=dict(FORM))
    SigV4Auth(Credentials(keycard.root_creds["AccessKeyId"], keycard.root_creds["SecretAccessKey"]), "iam",
              "us-east-1").add_auth(req)
    status, resp = send_then_read(keycard.endpoint, "POST", dict(req.prepare().headers), body)
    assert 400 <= status < 500, resp[:500]
    assert xml_code(resp.partition(b"\r\n\r\n")[2]), resp[:500]
    # And the server is still fine.
    assert keycard.client("iam").list_users()["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_clock_skew_refused(keycard, monkeypatch):
    import botocore.auth

    old = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(hours=1)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: old)
    status, _, body = signed("POST", keycard.endpoint + "/", keycard.root_creds, "iam",
                             b"Action=ListUsers&Version=2010-05-08", FORM)
    assert status == 403, (status, body)
    assert xml_code(body) == "SignatureDoesNotMatch", body  # IAM: "Signature expired: ..."
    status, _, body = signed("GET", keycard.endpoint + "/", keycard.root_creds, "s3",
                             headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
    assert status == 403, (status, body)
    assert xml_code(body) == "RequestTimeTooSkewed", body


def test_sigv2_refused(keycard):
    creds = Credentials(keycard.root_creds["AccessKeyId"], keycard.root_creds["SecretAccessKey"])

    # Query API, SigV2 query string with a correct V2 signature.
    req = AWSRequest(method="GET", url=keycard.endpoint + "/",
                     params={"Action": "ListUsers", "Version": "2010-05-08"})
    SigV2Auth(creds).add_auth(req)
    p = req.prepare()
    assert "AWSAccessKeyId=" in p.url and "Signature=" in p.url
    status, _, body = raw_http("GET", p.url, b"", dict(p.headers))
    assert 400 <= status < 500, (status, body)
    assert b"ListUsersResult" not in body

    # Same as a form POST.
    req = AWSRequest(method="POST", url=keycard.endpoint + "/",
                     data={"Action": "ListUsers", "Version": "2010-05-08"}, headers=FORM)
    SigV2Auth(creds).add_auth(req)
    p = req.prepare()
    status, _, body = raw_http("POST", p.url, p.body, dict(p.headers))
    assert 400 <= status < 500, (status, body)
    assert b"ListUsersResult" not in body

    # S3: a V2 presigned URL (what awscli v1 makes by default) ...
    s3 = keycard.client("s3")
    b = unique("v2")
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="k", Body=b"secret")
    req = AWSRequest(method="GET", url=f"{keycard.endpoint}/{b}/k")
    HmacV1QueryAuth(creds, expires=300).add_auth(req)
    p = req.prepare()
    assert "Signature=" in p.url and "AWSAccessKeyId=" in p.url
    status, _, body = raw_http("GET", p.url)
    assert status in (400, 403), (status, body)
    assert body != b"secret"

    # ... and a V2 Authorization header.
    req = AWSRequest(method="GET", url=f"{keycard.endpoint}/{b}/k")
    HmacV1Auth(creds).add_auth(req)
    p = req.prepare()
    assert p.headers["Authorization"].startswith("AWS ")
    status, _, body = raw_http("GET", p.url, b"", dict(p.headers))
    assert status in (400, 403), (status, body)
    assert body != b"secret"


def test_error_response_shape(keycard):
    """Query-protocol errors carry Type, Code, Message and a RequestId."""
    status, headers, body = signed("POST", keycard.endpoint + "/", keycard.root_creds, "iam",
                                   f"Action=GetUser&Version=2010-05-08&UserName={unique('ghost')}".encode(), FORM)
    assert status == 404
    assert b"<ErrorResponse" in body
    assert b"<Type>Sender</Type>" in body
    assert xml_code(body) == "NoSuchEntity"
    assert b"<Message>" in body
    assert b"<RequestId>" in body


def test_errors_never_5xx_on_random_bodies(keycard):
    """A few random bodies, signed and unsigned, get client errors."""
    rnd = random.Random(1234)
    for i in range(20):
        body = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 300)))
        if i % 2:
            status, _, resp = signed("POST", keycard.endpoint + "/", keycard.root_creds, "iam", body, FORM)
        else:
            status, _, resp = raw_http("POST", keycard.endpoint + "/", body, FORM)
        assert 400 <= status < 500, (body, status, resp[:300])
