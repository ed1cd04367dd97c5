"""AssumeRoleWithSAML, end to end, with a real XML-DSig signer as the IdP.

A test identity provider (an RSA or EC key and a self-signed certificate,
its SAML metadata uploaded with the AWS CLI) issues SAML 2.0 responses
signed by ``signxml`` (the Python XML Signature library, exclusive C14N,
enveloped signature, as Okta, Entra ID, ADFS and Keycloak sign). keycard
verifies the signature with the provider's metadata certificate and the
unmodified AWS CLI and boto3 get credentials for the role the assertion's
``Role`` attribute names, with the trust policy's ``saml:*`` condition
keys decided. Refusals come in AWS's words: a tampered or re-signed
assertion, a signature wrapped around another assertion, an assertion
older than five minutes, an expired or mis-addressed one, a role the
assertion doesn't grant, an unknown provider, a DTD. The audit event
records the SAML user as CloudTrail does, never the assertion.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import json
import time
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml import XMLSigner, methods

from conftest import ACCOUNT, allow, expect_error, unique
from test_federation import event_of, unsigned_sts

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
AWS_SIGNIN = "https://signin.aws.amazon.com/saml"
ATTR = "https://aws.amazon.com/SAML/Attributes/"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Idp:
    """A SAML identity provider: a signing key, its certificate and metadata."""

    def __init__(self, entity="https://idp.example.test/saml", kind="rsa"):
        self.entity = entity
        self.kind = kind
        self.key = (rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "rsa"
                    else ec.generate_private_key(ec.SECP256R1()))
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keycard test idp")])
        now = dt.datetime.now(dt.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=365))
                     .sign(self.key, hashes.SHA256()))
        self.cert_pem = self.cert.public_bytes(serialization.Encoding.PEM)
        self.key_pem = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())

    def metadata(self) -> str:
        der = base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()
        return (
            f'<?xml version="1.0"?>\n<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
            f'entityID="{self.entity}" validUntil="2035-01-01T00:00:00Z">\n'
            '  <md:IDPSSODescriptor WantAuthnRequestsSigned="false" '
            'protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">\n'
            '    <md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#">'
            f"<ds:X509Data><ds:X509Certificate>\n{der}\n</ds:X509Certificate></ds:X509Data></ds:KeyInfo>"
            "</md:KeyDescriptor>\n"
            "    <md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>\n"
            '    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" '
            'Location="https://idp.example.test/sso"/>\n'
            "  </md:IDPSSODescriptor>\n</md:EntityDescriptor>\n"
        )

    def response(self, roles, subject="alice", session_name="alice@example.test", issued=None, ttl=300,
                 audience="urn:amazon:webservices", recipient=AWS_SIGNIN, extra_attrs=(),
                 name_format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"):
        """An unsigned samlp:Response (lxml tree) with one assertion."""
        t = time.time() if issued is None else issued
        rid, aid = f"_{uuid.uuid4().hex}", f"_{uuid.uuid4().hex}"
        attrs = [(ATTR + "Role", roles), (ATTR + "RoleSessionName", [session_name]), *extra_attrs]
        attr_xml = "".join(
            f'<saml:Attribute Name="{n}">'
            + "".join(f'<saml:AttributeValue xmlns:xs="http://www.w3.org/2001/XMLSchema" '
                      f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="xs:string">{v}'
                      "</saml:AttributeValue>" for v in vals)
            + "</saml:Attribute>"
            for n, vals in attrs
        )
        xml = f"""<samlp:Response xmlns:samlp="{SAMLP}" xmlns:saml="{SAML}" ID="{rid}" Version="2.0"
  IssueInstant="{iso(t)}" Destination="{recipient}">
  <saml:Issuer>{self.entity}</saml:Issuer>
  <samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>
  <saml:Assertion ID="{aid}" Version="2.0" IssueInstant="{iso(t)}">
    <saml:Issuer>{self.entity}</saml:Issuer>
    <saml:Subject>
      <saml:NameID Format="{name_format}">{subject}</saml:NameID>
      <saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">
        <saml:SubjectConfirmationData NotOnOrAfter="{iso(t + ttl)}" Recipient="{recipient}"/>
      </saml:SubjectConfirmation>
    </saml:Subject>
    <saml:Conditions NotBefore="{iso(t - 5)}" NotOnOrAfter="{iso(t + ttl)}">
      <saml:AudienceRestriction><saml:Audience>{audience}</saml:Audience></saml:AudienceRestriction>
    </saml:Conditions>
    <saml:AuthnStatement AuthnInstant="{iso(t)}" SessionIndex="{aid}">
      <saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext>
    </saml:AuthnStatement>
    <saml:AttributeStatement>{attr_xml}</saml:AttributeStatement>
  </saml:Assertion>
</samlp:Response>"""
        return etree.fromstring(xml.encode())

    def sign(self, el, key=None, cert=None):
        """Sign ``el`` in place (enveloped, exclusive C14N), the signature
        placed after its Issuer as SAML requires; returns ``el``."""
        alg = "rsa-sha256" if self.kind == "rsa" else "ecdsa-sha256"
        signer = XMLSigner(method=methods.enveloped, signature_algorithm=alg, digest_algorithm="sha256",
                           c14n_algorithm=EXC_C14N)
        issuer = el.find(f"{{{SAML}}}Issuer")
        placeholder = etree.Element(f"{{{DS}}}Signature", Id="placeholder", nsmap={"ds": DS})
        issuer.addnext(placeholder)
        signed = signer.sign(el, key=key or self.key_pem, cert=cert or self.cert_pem,
                             reference_uri=el.get("ID"), id_attribute="ID")
        return signed

    def signed_assertion(self, roles, **kw) -> str:
        """A response whose assertion is signed, base64 as the IdP posts it."""
        resp = self.response(roles, **kw)
        a = resp.find(f"{{{SAML}}}Assertion")
        signed = self.sign(a)
        resp.replace(a, signed)
        return b64(resp)

    def signed_response(self, roles, **kw) -> str:
        return b64(self.sign(self.response(roles, **kw)))


def b64(el) -> str:
    return base64.b64encode(etree.tostring(el)).decode()


def saml_trust(provider_arn, **cond):
    stmt = {"Effect": "Allow", "Principal": {"Federated": provider_arn},
            "Action": ["sts:AssumeRoleWithSAML", "sts:TagSession"]}
    if cond:
        stmt["Condition"] = {"StringEquals": cond}
    return {"Version": "2012-10-17", "Statement": [stmt]}


@pytest.fixture(scope="module")
def setup(keycard, tmp_path_factory):
    """An RSA IdP registered as a SAML provider, a role trusting it for
    subject ``alice`` at AWS's sign-in endpoint, and an EC IdP."""
    out = {}
    d = tmp_path_factory.mktemp("saml")
    for kind in ("rsa", "ec"):
        idp = Idp(entity=f"https://idp-{kind}.example.test/saml", kind=kind)
        name = unique(f"idp-{kind}")
        (d / f"{kind}.xml").write_text(idp.metadata())
        arn = keycard.aws("iam", "create-saml-provider", "--name", name, "--saml-metadata-document",
                          f"file://{d / f'{kind}.xml'}")["SAMLProviderArn"]
        role = keycard.new_role(saml_trust(arn, **{"SAML:aud": AWS_SIGNIN, "saml:sub": "alice"}),
                                policy=allow("s3:ListAllMyBuckets"))
        out[kind] = {"idp": idp, "arn": arn, "name": name, "role": role,
                     "pair": f"{role['Arn']},{arn}"}
    out["dir"] = d
    return out


def test_signed_assertion_gets_credentials_through_boto3_and_the_cli(keycard, setup):
    s = setup["rsa"]
    idp = s["idp"]
    got = unsigned_sts(keycard).assume_role_with_saml(
        RoleArn=s["role"]["Arn"], PrincipalArn=s["arn"], SAMLAssertion=idp.signed_assertion([s["pair"]]))
    c = got["Credentials"]
    assert c["AccessKeyId"].startswith("ASIA")
    assert got["AssumedRoleUser"]["Arn"] == (
        f"arn:aws:sts::{ACCOUNT}:assumed-role/{s['role']['RoleName']}/alice@example.test")
    assert got["Subject"] == "alice" and got["SubjectType"] == "persistent"
    assert got["Issuer"] == idp.entity and got["Audience"] == AWS_SIGNIN
    nq = base64.b64encode(hashlib.sha1(f"{idp.entity}{ACCOUNT}/{s['name']}".encode()).digest()).decode()
    assert got["NameQualifier"] == nq
    creds = {"AccessKeyId": c["AccessKeyId"], "SecretAccessKey": c["SecretAccessKey"],
             "SessionToken": c["SessionToken"]}
    who = keycard.client("sts", creds=creds).get_caller_identity()
    assert who["Arn"] == got["AssumedRoleUser"]["Arn"]
    keycard.client("s3", creds=creds).list_buckets()
    expect_error("AccessDenied", keycard.client("iam", creds=creds).list_users)

    # The unmodified AWS CLI, assertion from a file as IdP tooling writes it.
    f = setup["dir"] / "assertion.b64"
    f.write_text(idp.signed_assertion([s["pair"]]))
    out = keycard.aws("sts", "assume-role-with-saml", "--role-arn", s["role"]["Arn"], "--principal-arn",
                      s["arn"], "--saml-assertion", f"file://{f}", "--duration-seconds", "900",
                      "--no-sign-request")
    assert out["AssumedRoleUser"]["Arn"] == got["AssumedRoleUser"]["Arn"]
    exp = dt.datetime.fromisoformat(out["Credentials"]["Expiration"].replace("Z", "+00:00"))
    assert 800 < (exp - dt.datetime.now(dt.timezone.utc)).total_seconds() <= 905


def test_signed_response_and_ecdsa_keys_are_accepted(keycard, setup):
    for kind in ("rsa", "ec"):
        s = setup[kind]
        got = unsigned_sts(keycard).assume_role_with_saml(
            RoleArn=s["role"]["Arn"], PrincipalArn=s["arn"],
            SAMLAssertion=s["idp"].signed_response([s["pair"]]))
        assert got["Subject"] == "alice"


def test_trust_policy_conditions_and_the_role_attribute_decide(keycard, setup):
    s = setup["rsa"]
    idp, sts = s["idp"], unsigned_sts(keycard)
    # saml:sub is "alice" in the trust policy: bob is refused.
    e = expect_error("AccessDenied", sts.assume_role_with_saml, RoleArn=s["role"]["Arn"], PrincipalArn=s["arn"],
                     SAMLAssertion=idp.signed_assertion([s["pair"]], subject="bob"))
    assert e.response["Error"]["Message"] == "Not authorized to perform sts:AssumeRoleWithSAML"
    # A role the assertion's Role attribute does not grant.
    other = keycard.new_role(saml_trust(s["arn"]))
    expect_error("AccessDenied", sts.assume_role_with_saml, RoleArn=other["Arn"], PrincipalArn=s["arn"],
                 SAMLAssertion=idp.signed_assertion([s["pair"]]))
    # Provider, role order reversed in the attribute is accepted, as AWS does.
    got = sts.assume_role_with_saml(RoleArn=other["Arn"], PrincipalArn=s["arn"],
                                    SAMLAssertion=idp.signed_assertion([f"{s['arn']},{other['Arn']}"]))
    assert got["AssumedRoleUser"]["Arn"].endswith(f"/{other['RoleName']}/alice@example.test")
    # Session tags from PrincipalTag attributes need sts:TagSession.
    no_tags = keycard.new_role({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Federated": s["arn"]}, "Action": "sts:AssumeRoleWithSAML"}]})
    tagged = [(ATTR + "PrincipalTag:team", ["blue"])]
    expect_error("AccessDenied", sts.assume_role_with_saml, RoleArn=no_tags["Arn"], PrincipalArn=s["arn"],
                 SAMLAssertion=idp.signed_assertion([f"{no_tags['Arn']},{s['arn']}"], extra_attrs=tagged))
    sts.assume_role_with_saml(RoleArn=no_tags["Arn"], PrincipalArn=s["arn"],
                              SAMLAssertion=idp.signed_assertion([f"{no_tags['Arn']},{s['arn']}"]))


def test_refusals_in_aws_words(keycard, setup):
    s = setup["rsa"]
    idp, sts = s["idp"], unsigned_sts(keycard)

    def refused(code, assertion, principal=None):
        return expect_error(code, sts.assume_role_with_saml, RoleArn=s["role"]["Arn"],
                            PrincipalArn=principal or s["arn"], SAMLAssertion=assertion)

    def msg(e):
        return e.response["Error"]["Message"]

    # Tampered after signing: the subject changed.
    resp = etree.fromstring(base64.b64decode(idp.signed_assertion([s["pair"]])))
    resp.find(f".//{{{SAML}}}NameID").text = "mallory"
    assert msg(refused("InvalidIdentityToken", b64(resp))) == "Response signature invalid"
    # Signed by a key the metadata doesn't hold (a certificate of its own in KeyInfo).
    assert msg(refused("InvalidIdentityToken", Idp(entity=idp.entity).signed_assertion([s["pair"]]))) == (
        "Response signature invalid")
    # Not signed at all.
    refused("InvalidIdentityToken", b64(idp.response([s["pair"]])))
    # Signature wrapping: the genuine signed assertion (for alice, another
    # role) is kept inside an Extensions element; the response carries an
    # unsigned assertion for mallory with the same ID.
    genuine = etree.fromstring(base64.b64decode(idp.signed_assertion([s["pair"]])))
    signed_a = genuine.find(f"{{{SAML}}}Assertion")
    evil = copy.deepcopy(signed_a)
    evil.remove(evil.find(f"{{{DS}}}Signature"))
    evil.find(f".//{{{SAML}}}NameID").text = "mallory"
    ext = etree.SubElement(genuine, f"{{{SAMLP}}}Extensions")
    genuine.replace(signed_a, evil)
    ext.append(signed_a)
    refused("InvalidIdentityToken", b64(genuine))
    # Older than five minutes.
    e = refused("ExpiredTokenException", idp.signed_assertion([s["pair"]], issued=time.time() - 600, ttl=3600))
    assert msg(e) == "Token must be redeemed within 5 minutes of issuance"
    # Expired conditions.
    refused("ExpiredTokenException", idp.signed_assertion([s["pair"]], issued=time.time() - 120, ttl=60))
    # Addressed to someone else.
    refused("InvalidIdentityToken", idp.signed_assertion([s["pair"]], audience="https://sp.example.test"))
    refused("InvalidIdentityToken", idp.signed_assertion([s["pair"]], recipient="https://sp.example.test/acs"))
    # Issuer that is not the provider's entity.
    refused("InvalidIdentityToken", _reissued(idp, s["pair"]))
    # Unknown provider.
    e = refused("InvalidIdentityToken", idp.signed_assertion([s["pair"]]),
                principal=f"arn:aws:iam::{ACCOUNT}:saml-provider/nope")
    assert msg(e) == "Specified provider doesn't exist"
    # A DTD (entity expansion) and garbage.
    dtd = base64.b64encode(b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><samlp:Response '
                           b'xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol">&x;</samlp:Response>').decode()
    refused("InvalidIdentityToken", dtd)
    refused("InvalidIdentityToken", "bm90IHhtbA==")


def _reissued(idp, pair):
    """A correctly signed assertion whose Issuer is not the provider's entity."""
    other = Idp(entity="https://other.example.test/saml")
    other.key, other.cert, other.cert_pem, other.key_pem = idp.key, idp.cert, idp.cert_pem, idp.key_pem
    return other.signed_assertion([pair])


def test_the_audit_event_names_the_saml_user_and_not_the_assertion(keycard, setup):
    s = setup["rsa"]
    assertion = s["idp"].signed_assertion([s["pair"]])
    got = unsigned_sts(keycard).assume_role_with_saml(RoleArn=s["role"]["Arn"], PrincipalArn=s["arn"],
                                                      SAMLAssertion=assertion)
    ev = event_of(keycard, "AssumeRoleWithSAML", got)
    ui = ev["userIdentity"]
    assert ui["type"] == "SAMLUser"
    assert ui["identityProvider"] == got["NameQualifier"]
    assert ui["principalId"] == f"{got['NameQualifier']}:alice" and ui["userName"] == "alice"
    assert ev["responseElements"]["subject"] == "alice"
    assert assertion not in json.dumps(ev)
