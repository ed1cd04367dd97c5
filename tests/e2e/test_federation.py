"""Federation, end to end with nothing outside the machine.

- IAM OIDC providers through the real AWS CLI: create (AWS's ARN and
  validation), get, client ids, thumbprints, tags, list, delete.
- keycard as an OIDC issuer: outbound web identity federation is enabled,
  an instance's role gets a JWT with STS GetWebIdentityToken (credentials
  from IMDS), the issuer is registered as an OIDC provider, and
  AssumeRoleWithWebIdentity (unsigned, as in AWS) enters a role whose trust
  policy is conditioned on the provider's ``aud`` and ``sub``: through
  boto3, the AWS CLI and boto3's web identity credential provider
  (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN).
- Refusals in AWS's words: wrong audience, wrong subject, expired,
  not-yet-valid, tampered and unsigned tokens, unknown issuers.
- An external provider whose JWKS the administrator gives keycard.
- The audit event records the web identity user as CloudTrail does, and
  never the token.
"""

from __future__ import annotations

import base64
import json
import time

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from conftest import ACCOUNT, REGION, allow, doc, expect_error, raw_http, unique

THUMB = "9e99a48a9960b14926bb7f3b02e22da2b0ab7280"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_of(token: str) -> dict:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def unsigned_sts(kc):
    """An STS client that sends no signature (as boto3 does for
    AssumeRoleWithWebIdentity anyway)."""
    cfg = Config(signature_version=UNSIGNED, retries={"max_attempts": 1, "mode": "standard"})
    return boto3.session.Session(region_name=REGION).client("sts", endpoint_url=kc.endpoint, config=cfg)


def event_of(kc, name, answer):
    """The CloudTrail event (LookupEvents) of the call that gave ``answer``."""
    rid = answer["ResponseMetadata"]["RequestId"]
    ct = kc.client("cloudtrail")
    deadline = time.monotonic() + 10
    while True:
        found = ct.lookup_events(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": name}])["Events"]
        ev = next((b for b in (json.loads(e["CloudTrailEvent"]) for e in found) if b.get("requestID") == rid), None)
        if ev:
            return ev
        assert time.monotonic() < deadline, f"no {name} event for request {rid}"
        time.sleep(0.1)


def admin_post(kc, path, body):
    token = (kc.data_dir / "admin.token").read_text().strip()
    status, _, out = raw_http(
        "POST", kc.endpoint + path, body=json.dumps(body).encode(), headers={"Authorization": f"Bearer {token}"}
    )
    return status, json.loads(out)


class Idp:
    """A test identity provider: an RSA and an EC key, and a JWKS."""

    def __init__(self):
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        n = self.rsa.public_key().public_numbers()
        p = self.ec.public_key().public_numbers()
        self.jwks = {
            "keys": [
                {"kty": "RSA", "kid": "r1", "alg": "RS256", "use": "sig",
                 "n": b64(n.n.to_bytes(256, "big")), "e": b64(n.e.to_bytes(3, "big"))},
                {"kty": "EC", "kid": "e1", "crv": "P-256", "alg": "ES256",
                 "x": b64(p.x.to_bytes(32, "big")), "y": b64(p.y.to_bytes(32, "big"))},
            ]
        }

    def token(self, claims, alg="RS256"):
        kid = "r1" if alg == "RS256" else "e1"
        head = b64(json.dumps({"alg": alg, "kid": kid, "typ": "JWT"}).encode())
        body = b64(json.dumps(claims).encode())
        msg = f"{head}.{body}".encode()
        if alg == "RS256":
            sig = self.rsa.sign(msg, padding.PKCS1v15(), hashes.SHA256())
        else:
            r, s = decode_dss_signature(self.ec.sign(msg, ec.ECDSA(hashes.SHA256())))
            sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return f"{head}.{body}.{b64(sig)}"


def web_trust(provider_arn, url, **cond):
    stmt = {"Effect": "Allow", "Principal": {"Federated": provider_arn}, "Action": "sts:AssumeRoleWithWebIdentity"}
    if cond:
        stmt["Condition"] = {"StringEquals": {f"{url}:{k}": v for k, v in cond.items()}}
    return {"Version": "2012-10-17", "Statement": [stmt]}


# ------------------------------------------------------------ OIDC providers


def test_oidc_provider_lifecycle_through_the_cli(keycard):
    host = f"{unique('idp')}.example.com"
    url = f"https://{host}/tenant"
    arn = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{host}/tenant"
    out = keycard.aws("iam", "create-open-id-connect-provider", "--url", url, "--client-id-list", "app-1", "app-2",
                      "--thumbprint-list", THUMB, "--tags", "Key=team,Value=ci")
    assert out["OpenIDConnectProviderArn"] == arn
    assert out["Tags"] == [{"Key": "team", "Value": "ci"}]
    keycard.aws_error("iam", "create-open-id-connect-provider", "--url", url, code="EntityAlreadyExists")
    keycard.aws_error("iam", "create-open-id-connect-provider", "--url", f"http://{host}", code="InvalidInput")
    keycard.aws_error("iam", "create-open-id-connect-provider", "--url", f"https://x.{host}",
                      "--thumbprint-list", *[f"{i}" * 40 for i in range(6)], code="LimitExceeded")

    got = keycard.aws("iam", "get-open-id-connect-provider", "--open-id-connect-provider-arn", arn)
    assert got["Url"] == f"{host}/tenant"
    assert got["ClientIDList"] == ["app-1", "app-2"]
    assert got["ThumbprintList"] == [THUMB]
    assert "CreateDate" in got

    keycard.aws("iam", "add-client-id-to-open-id-connect-provider", "--open-id-connect-provider-arn", arn,
                "--client-id", "app-3")
    keycard.aws("iam", "remove-client-id-from-open-id-connect-provider", "--open-id-connect-provider-arn", arn,
                "--client-id", "app-1")
    other = "a" * 40
    keycard.aws("iam", "update-open-id-connect-provider-thumbprint", "--open-id-connect-provider-arn", arn,
                "--thumbprint-list", other)
    keycard.aws("iam", "tag-open-id-connect-provider", "--open-id-connect-provider-arn", arn,
                "--tags", "Key=env,Value=prod")
    keycard.aws("iam", "untag-open-id-connect-provider", "--open-id-connect-provider-arn", arn, "--tag-keys", "team")
    tags = keycard.aws("iam", "list-open-id-connect-provider-tags", "--open-id-connect-provider-arn", arn)
    assert tags["Tags"] == [{"Key": "env", "Value": "prod"}]
    got = keycard.aws("iam", "get-open-id-connect-provider", "--open-id-connect-provider-arn", arn)
    assert got["ClientIDList"] == ["app-2", "app-3"] and got["ThumbprintList"] == [other]

    listed = keycard.aws("iam", "list-open-id-connect-providers")["OpenIDConnectProviderList"]
    assert {"Arn": arn} in listed
    keycard.aws("iam", "delete-open-id-connect-provider", "--open-id-connect-provider-arn", arn)
    keycard.aws_error("iam", "get-open-id-connect-provider", "--open-id-connect-provider-arn", arn,
                      code="NoSuchEntity")
    keycard.aws_error("iam", "delete-open-id-connect-provider", "--open-id-connect-provider-arn", arn,
                      code="NoSuchEntity")


def test_a_user_without_permission_changes_no_provider(keycard):
    _, creds = keycard.new_user()
    iam = keycard.client("iam", creds=creds)
    url = f"https://{unique('idp')}.example.com"
    expect_error("AccessDenied", iam.create_open_id_connect_provider, Url=url, ClientIDList=["a"])
    assert all(url[8:] not in p["Arn"] for p in keycard.client("iam").list_open_id_connect_providers()[
        "OpenIDConnectProviderList"])


# ----------------------------------------------------- keycard as an issuer


@pytest.fixture(scope="module")
def issuer(keycard):
    """keycard's own issuer, registered as an OIDC provider."""
    iam = keycard.client("iam")
    issuer = iam.enable_outbound_web_identity_federation()["IssuerIdentifier"]
    url = issuer.removeprefix("https://")
    provider = iam.create_open_id_connect_provider(Url=issuer, ClientIDList=["fed-aud"])["OpenIDConnectProviderArn"]
    return {"issuer": issuer, "url": url, "provider": provider}


@pytest.fixture(scope="module")
def workload(keycard, issuer):
    """An instance whose role may get web identity tokens, its credentials
    (from IMDS), and a target role trusting that role's tokens."""
    role, prof = keycard.instance_profile(policy=allow("sts:GetWebIdentityToken"))
    iid = keycard.run_instance(profile=prof["InstanceProfileName"])["InstanceId"]
    tok = keycard.imds_token(iid)
    path = f"/latest/meta-data/iam/security-credentials/{role['RoleName']}"
    deadline = time.monotonic() + 10
    while True:
        status, _, body = keycard.imds(iid, path, token=tok)
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert status == 200, body
    raw = json.loads(body)
    creds = {"AccessKeyId": raw["AccessKeyId"], "SecretAccessKey": raw["SecretAccessKey"], "SessionToken": raw["Token"]}
    target = keycard.new_role(
        web_trust(issuer["provider"], issuer["url"], aud="fed-aud", sub=role["Arn"]),
        policy=allow("s3:ListAllMyBuckets"),
    )
    return {"role": role, "creds": creds, "target": target, "instance": iid}


def test_outbound_federation_info_and_discovery_documents(keycard, issuer):
    iam = keycard.client("iam")
    expect_error("FeatureEnabled", iam.enable_outbound_web_identity_federation)
    info = iam.get_outbound_web_identity_federation_info()
    assert info["IssuerIdentifier"] == issuer["issuer"] and info["JwtVendingEnabled"] is True
    path = issuer["url"].split("/", 1)[1]
    status, headers, body = raw_http("GET", f"{keycard.endpoint}/{path}/.well-known/openid-configuration")
    assert status == 200 and headers["content-type"] == "application/json"
    conf = json.loads(body)
    assert conf["issuer"] == issuer["issuer"]
    assert conf["jwks_uri"] == issuer["issuer"] + "/.well-known/jwks.json"
    status, _, body = raw_http("GET", f"{keycard.endpoint}/{path}/.well-known/jwks.json")
    keys = json.loads(body)["keys"]
    assert status == 200 and {k["alg"] for k in keys} == {"RS256", "ES384"}
    assert all("d" not in k for k in keys), "private key material in the JWKS"
    status, _, _ = raw_http("GET", f"{keycard.endpoint}/_keycard/oidc/nope/.well-known/jwks.json")
    assert status == 404


def test_instance_token_assumes_a_role_by_web_identity(keycard, issuer, workload):
    sts = keycard.client("sts", creds=workload["creds"])
    for alg in ("ES384", "RS256"):
        out = sts.get_web_identity_token(Audience=["fed-aud"], SigningAlgorithm=alg, DurationSeconds=300)
        c = claims_of(out["WebIdentityToken"])
        assert c["iss"] == issuer["issuer"] and c["sub"] == workload["role"]["Arn"] and c["aud"] == "fed-aud"
        assert c["exp"] - c["iat"] == 300
        got = unsigned_sts(keycard).assume_role_with_web_identity(
            RoleArn=workload["target"]["Arn"], RoleSessionName=f"wi-{alg}", WebIdentityToken=out["WebIdentityToken"]
        )
        target = workload["target"]["RoleName"]
        assert got["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{target}/wi-{alg}"
        assert got["SubjectFromWebIdentityToken"] == workload["role"]["Arn"]
        assert got["Provider"] == issuer["issuer"] and got["Audience"] == "fed-aud"
        me = keycard.client("sts", creds=got["Credentials"]).get_caller_identity()
        assert me["Arn"] == got["AssumedRoleUser"]["Arn"]
        keycard.client("s3", creds=got["Credentials"]).list_buckets()


def test_the_cli_and_boto3s_credential_provider(keycard, issuer, workload, tmp_path):
    token = keycard.client("sts", creds=workload["creds"]).get_web_identity_token(
        Audience=["fed-aud"], SigningAlgorithm="RS256")["WebIdentityToken"]
    out = keycard.aws("sts", "assume-role-with-web-identity", "--role-arn", workload["target"]["Arn"],
                      "--role-session-name", "cli", "--web-identity-token", token,
                      env_extra={"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None,
                                 "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")})
    assert out["AssumedRoleUser"]["Arn"].endswith("/cli")
    token_file = tmp_path / "token"
    token_file.write_text(token)
    env = {"AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file), "AWS_ROLE_ARN": workload["target"]["Arn"],
           "AWS_ROLE_SESSION_NAME": "provider", "AWS_ENDPOINT_URL": keycard.endpoint,
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(tmp_path / "none")}
    me = keycard.aws("sts", "get-caller-identity", env_extra=env)
    assert me["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{workload['target']['RoleName']}/provider"


def test_refusals_in_aws_words(keycard, issuer, workload):
    sts = keycard.client("sts", creds=workload["creds"])
    anon = unsigned_sts(keycard)
    target = workload["target"]["Arn"]

    def assume(token, code):
        return expect_error(code, anon.assume_role_with_web_identity, RoleArn=target, RoleSessionName="sess",
                            WebIdentityToken=token)

    # An audience the provider does not list.
    wrong_aud = sts.get_web_identity_token(Audience=["elsewhere"], SigningAlgorithm="ES384")["WebIdentityToken"]
    e = assume(wrong_aud, "InvalidIdentityToken")
    assert e.response["Error"]["Message"] == "Incorrect token audience"
    # Another subject: the trust policy's sub condition refuses it.
    user, ucreds = keycard.new_user(policy=allow("sts:GetWebIdentityToken"))
    other = keycard.client("sts", creds=ucreds).get_web_identity_token(
        Audience=["fed-aud"], SigningAlgorithm="ES384")["WebIdentityToken"]
    assert claims_of(other)["sub"] == user["Arn"]
    e = assume(other, "AccessDenied")
    assert e.response["Error"]["Message"] == "Not authorized to perform sts:AssumeRoleWithWebIdentity"
    # Tampered: the payload changed under the signature.
    good = sts.get_web_identity_token(Audience=["fed-aud"], SigningAlgorithm="ES384")["WebIdentityToken"]
    h, p, s = good.split(".")
    forged = dict(claims_of(good), sub=workload["role"]["Arn"] + "x")
    assume(f"{h}.{b64(json.dumps(forged).encode())}.{s}", "InvalidIdentityToken")
    # Unsigned (alg none) and garbage.
    none = b64(json.dumps({"alg": "none"}).encode())
    assume(f"{none}.{p}.", "InvalidIdentityToken")
    assume("not-a-token", "InvalidIdentityToken")
    # No role of that name: the same refusal as a trust policy's.
    expect_error("AccessDenied", anon.assume_role_with_web_identity, RoleArn=target + "-gone",
                 RoleSessionName="sess", WebIdentityToken=good)
    # A caller without sts:GetWebIdentityToken gets no token.
    _, bare = keycard.new_user()
    expect_error("AccessDenied", keycard.client("sts", creds=bare).get_web_identity_token,
                 Audience=["fed-aud"], SigningAlgorithm="ES384")
    expect_error("ValidationError", sts.get_web_identity_token, Audience=["fed-aud"], SigningAlgorithm="HS256")


def test_disabled_outbound_federation_issues_no_tokens(keycard_fresh):
    iam = keycard_fresh.client("iam")
    expect_error("FeatureDisabled", iam.get_outbound_web_identity_federation_info)
    expect_error("FeatureDisabled", iam.disable_outbound_web_identity_federation)
    _, creds = keycard_fresh.new_user(policy=allow("sts:GetWebIdentityToken"))
    sts = keycard_fresh.client("sts", creds=creds)
    expect_error("OutboundWebIdentityFederationDisabledException", sts.get_web_identity_token,
                 Audience=["a"], SigningAlgorithm="ES384")
    first = iam.enable_outbound_web_identity_federation()["IssuerIdentifier"]
    iam.disable_outbound_web_identity_federation()
    expect_error("OutboundWebIdentityFederationDisabledException", sts.get_web_identity_token,
                 Audience=["a"], SigningAlgorithm="ES384")
    assert iam.enable_outbound_web_identity_federation()["IssuerIdentifier"] == first


# ------------------------------------------------- an external provider


@pytest.fixture(scope="module")
def external(keycard):
    idp = Idp()
    host = f"{unique('ext')}.example.com"
    iam = keycard.client("iam")
    arn = iam.create_open_id_connect_provider(Url=f"https://{host}", ClientIDList=["ext-app"])[
        "OpenIDConnectProviderArn"]
    role = keycard.new_role(web_trust(arn, host, aud="ext-app", sub="repo:acme/app:ref:refs/heads/main"))
    return {"idp": idp, "host": host, "arn": arn, "role": role}


def ext_claims(ext, **over):
    now = int(time.time())
    c = {"iss": f"https://{ext['host']}", "aud": "ext-app", "sub": "repo:acme/app:ref:refs/heads/main",
         "iat": now, "exp": now + 600}
    c.update(over)
    return c


def test_external_provider_with_a_jwks_from_the_administrator(keycard, external):
    anon = unsigned_sts(keycard)
    idp, role = external["idp"], external["role"]["Arn"]
    token = idp.token(ext_claims(external))
    # No keys yet: keycard cannot verify the token.
    expect_error("IDPCommunicationError", anon.assume_role_with_web_identity, RoleArn=role,
                 RoleSessionName="gh", WebIdentityToken=token)
    status, out = admin_post(keycard, "/_keycard/admin/oidc/jwks", {"providerArn": external["arn"], "jwks": idp.jwks})
    assert status == 200 and out["keys"] == 2, out
    for alg in ("RS256", "ES256"):
        got = anon.assume_role_with_web_identity(RoleArn=role, RoleSessionName="gh",
                                                 WebIdentityToken=idp.token(ext_claims(external), alg))
        assert got["SubjectFromWebIdentityToken"] == "repo:acme/app:ref:refs/heads/main"
    now = int(time.time())
    e = expect_error("ExpiredTokenException", anon.assume_role_with_web_identity, RoleArn=role,
                     RoleSessionName="gh", WebIdentityToken=idp.token(ext_claims(external, exp=now - 10)))
    assert e.response["Error"]["Message"].startswith("Token expired: current date/time")
    expect_error("IDPRejectedClaim", anon.assume_role_with_web_identity, RoleArn=role, RoleSessionName="gh",
                 WebIdentityToken=idp.token(ext_claims(external, nbf=now + 3600)))
    e = expect_error("InvalidIdentityToken", anon.assume_role_with_web_identity, RoleArn=role, RoleSessionName="gh",
                     WebIdentityToken=idp.token(ext_claims(external, iss="https://unknown.example.com")))
    assert "No OpenIDConnect provider found in your account for https://unknown.example.com" in e.response[
        "Error"]["Message"]
    # Signed by a key the JWKS doesn't hold.
    expect_error("InvalidIdentityToken", anon.assume_role_with_web_identity, RoleArn=role, RoleSessionName="gh",
                 WebIdentityToken=Idp().token(ext_claims(external)))


def test_the_audit_event_names_the_web_identity_user_and_not_the_token(keycard, external):
    anon = unsigned_sts(keycard)
    token = external["idp"].token(ext_claims(external))
    status, _ = admin_post(keycard, "/_keycard/admin/oidc/jwks", {"providerArn": external["arn"],
                                                                  "jwks": external["idp"].jwks})
    assert status == 200
    got = anon.assume_role_with_web_identity(RoleArn=external["role"]["Arn"], RoleSessionName="audited",
                                             WebIdentityToken=token)
    ev = event_of(keycard, "AssumeRoleWithWebIdentity", got)
    ui = ev["userIdentity"]
    assert ui["type"] == "WebIdentityUser"
    assert ui["identityProvider"] == external["host"]
    assert ui["userName"] == "repo:acme/app:ref:refs/heads/main"
    assert ev["eventSource"] == "sts.amazonaws.com" and ev["recipientAccountId"] == ACCOUNT
    assert token not in json.dumps(ev)
    assert ev["responseElements"]["subjectFromWebIdentityToken"] == ui["userName"]


# ------------------------------------------------ federated users and root


def test_federation_token_is_the_intersection_of_user_and_session_policy(keycard):
    s3 = keycard.client("s3")
    names = [unique("fed-a"), unique("fed-b")]
    for b in names:
        s3.create_bucket(Bucket=b)
    user_policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "sts:GetFederationToken", "Resource": "*"},
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": [f"arn:aws:s3:::{b}" for b in names]},
    ]}
    _, creds = keycard.new_user(policy=user_policy)
    session_policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:CreateBucket"], "Resource": "*"}]}
    out = keycard.aws("sts", "get-federation-token", "--name", "Bob", "--policy", doc(session_policy), creds=creds)
    assert out["FederatedUser"]["Arn"] == f"arn:aws:sts::{ACCOUNT}:federated-user/Bob"
    assert out["FederatedUser"]["FederatedUserId"] == f"{ACCOUNT}:Bob"
    assert "PackedPolicySize" in out
    fed = out["Credentials"]
    me = keycard.client("sts", creds=fed).get_caller_identity()
    assert me["Arn"] == f"arn:aws:sts::{ACCOUNT}:federated-user/Bob"
    fs3 = keycard.client("s3", creds=fed)
    fs3.list_objects_v2(Bucket=names[0])  # both allow
    # The session policy allows CreateBucket, the user's policies do not.
    expect_error("AccessDenied", fs3.create_bucket, Bucket=unique("fed-c"))
    # No session policy: no permissions at all.
    bare = keycard.client("sts", creds=creds).get_federation_token(Name="NoPolicy")["Credentials"]
    expect_error("AccessDenied", keycard.client("s3", creds=bare).list_objects_v2, Bucket=names[0])
    # Session credentials cannot federate.
    expect_error("AccessDenied", keycard.client("sts", creds=fed).get_federation_token, Name="Again")
    expect_error("ValidationError", keycard.client("sts", creds=creds).get_federation_token, Name="has space")


def test_assume_root_and_delegated_access_answer_as_aws_outside_an_organization(keycard):
    sts = keycard.client("sts")
    e = expect_error("AccessDenied", sts.assume_root, TargetPrincipal=ACCOUNT,
                     TaskPolicyArn={"arn": "arn:aws:iam::aws:policy/root-task/IAMAuditRootUserCredentials"})
    assert "sts:AssumeRoot" in e.response["Error"]["Message"]
    expect_error("ExpiredTradeInTokenException", sts.get_delegated_access_token, TradeInToken="x" * 32)


# ------------------------------------------------------------------ SAML

METADATA = (
    '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp.example.com" '
    'validUntil="2035-01-01T00:00:00Z"><md:IDPSSODescriptor protocolSupportEnumeration='
    '"urn:oasis:names:tc:SAML:2.0:protocol">' + "<!-- padding -->" * 80 + "</md:IDPSSODescriptor></md:EntityDescriptor>"
)


def test_saml_provider_records_and_the_refused_assertion(keycard, tmp_path):
    name = unique("okta")
    arn = f"arn:aws:iam::{ACCOUNT}:saml-provider/{name}"
    (tmp_path / "md.xml").write_text(METADATA)
    out = keycard.aws("iam", "create-saml-provider", "--name", name, "--saml-metadata-document",
                      f"file://{tmp_path / 'md.xml'}", "--tags", "Key=k,Value=v")
    assert out["SAMLProviderArn"] == arn
    keycard.aws_error("iam", "create-saml-provider", "--name", name, "--saml-metadata-document",
                      f"file://{tmp_path / 'md.xml'}", code="EntityAlreadyExists")
    got = keycard.aws("iam", "get-saml-provider", "--saml-provider-arn", arn)
    assert got["SAMLMetadataDocument"] == METADATA and got["Tags"] == [{"Key": "k", "Value": "v"}]
    assert got["ValidUntil"].startswith("2035-01-01")
    listed = keycard.aws("iam", "list-saml-providers")["SAMLProviderList"]
    assert [x["Arn"] for x in listed if x["Arn"] == arn] == [arn]
    keycard.aws("iam", "update-saml-provider", "--saml-provider-arn", arn, "--saml-metadata-document",
                f"file://{tmp_path / 'md.xml'}")
    keycard.aws("iam", "untag-saml-provider", "--saml-provider-arn", arn, "--tag-keys", "k")
    assert keycard.aws("iam", "list-saml-provider-tags", "--saml-provider-arn", arn)["Tags"] == []
    role = keycard.new_role({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Federated": arn}, "Action": "sts:AssumeRoleWithSAML"}]})
    expect_error("InvalidIdentityToken", unsigned_sts(keycard).assume_role_with_saml, RoleArn=role["Arn"],
                 PrincipalArn=arn, SAMLAssertion=base64.b64encode(b"<samlp:Response/>").decode())
    keycard.aws("iam", "delete-saml-provider", "--saml-provider-arn", arn)
    keycard.aws_error("iam", "get-saml-provider", "--saml-provider-arn", arn, code="NoSuchEntity")
