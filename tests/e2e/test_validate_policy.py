"""IAM Access Analyzer's ValidatePolicy (POST /policy/validation) through the
real AWS CLI and boto3, and `keycard policy lint` offline: findings in AWS's
shape, their locations, pagination, ValidationException, authorization."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import expect_error, keycard_bin, unique

# Line 5 holds the Action array; "s3:GetObjekt" starts at column 31.
PASS_ROLE_DOC = """{
  "Version": "2012-10-17",
  "Statement": [{
    "Effect": "Allow",
    "Action": ["s3:GetObject", "s3:GetObjekt", "iam:PassRole"],
    "Resource": "*"
  }]
}"""


def by_code(findings):
    return {f["issueCode"]: f for f in findings}


def test_cli_validate_policy_reports_findings_with_locations(keycard):
    out = keycard.aws(
        "accessanalyzer", "validate-policy", "--policy-type", "IDENTITY_POLICY",
        "--policy-document", PASS_ROLE_DOC,
    )
    got = by_code(out["findings"])
    assert set(got) == {"INVALID_ACTION", "PASS_ROLE_WITH_STAR_IN_RESOURCE"}
    bad = got["INVALID_ACTION"]
    assert bad["findingType"] == "ERROR"
    assert bad["findingDetails"] == "The action s3:GetObjekt does not exist."
    assert bad["learnMoreLink"].endswith("#access-analyzer-reference-policy-checks-error-invalid-action")
    loc = bad["locations"][0]
    assert loc["path"] == [{"value": "Statement"}, {"index": 0}, {"value": "Action"}, {"index": 1}]
    start = PASS_ROLE_DOC.index('"s3:GetObjekt"')
    assert loc["span"]["start"] == {"line": 5, "column": 31, "offset": start}
    assert loc["span"]["end"] == {"line": 5, "column": 45, "offset": start + 14}
    pr = got["PASS_ROLE_WITH_STAR_IN_RESOURCE"]
    assert pr["findingType"] == "SECURITY_WARNING"
    assert [l["path"][-1] for l in pr["locations"]] == [{"index": 2}, {"value": "Resource"}]


def test_boto3_validate_policy_resource_policy_and_json_syntax(keycard):
    aa = keycard.client("accessanalyzer")
    bucket_policy = json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "A", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"},
            {"Sid": "A", "Effect": "Allow", "NotPrincipal": {"AWS": "arn:aws:iam::111122223333:root"},
             "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*",
             "Condition": {"StringEquals": {"aws:SourceIpp": "x"}}},
        ],
    })
    out = aa.validate_policy(
        policyDocument=bucket_policy, policyType="RESOURCE_POLICY", validatePolicyResourceType="AWS::S3::Bucket"
    )
    got = by_code(out["findings"])
    assert got["MISSING_PRINCIPAL"]["locations"][0]["path"] == [{"value": "Statement"}, {"index": 0}]
    assert got["UNIQUE_SIDS_REQUIRED"]["findingType"] == "ERROR"
    assert got["ALLOW_WITH_NOT_PRINCIPAL"]["findingType"] == "SECURITY_WARNING"
    assert got["INVALID_GLOBAL_CONDITION_KEY"]["locations"][0]["path"][-1] == {"key": "aws:SourceIpp"}
    # A trust policy needs no Resource.
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
    out = aa.validate_policy(policyDocument=trust, policyType="RESOURCE_POLICY",
                             validatePolicyResourceType="AWS::IAM::AssumeRolePolicyDocument")
    assert out["findings"] == []
    out = aa.validate_policy(policyDocument='{"Version": "2012-10-17",\n "Statement": [}', policyType="IDENTITY_POLICY")
    [f] = out["findings"]
    assert f["issueCode"] == "JSON_SYNTAX_ERROR"
    assert f["locations"][0]["span"]["start"] == {"line": 2, "column": 15, "offset": 41}


def test_pagination_with_next_token(keycard):
    aa = keycard.client("accessanalyzer")
    actions = [f"s3:Nope{i}" for i in range(7)]
    doc = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]})
    everything = aa.validate_policy(policyDocument=doc, policyType="IDENTITY_POLICY")["findings"]
    assert len(everything) == 7 and "nextToken" not in aa.validate_policy(policyDocument=doc, policyType="IDENTITY_POLICY")
    first = aa.validate_policy(policyDocument=doc, policyType="IDENTITY_POLICY", maxResults=3)
    assert len(first["findings"]) == 3 and first["nextToken"]
    second = aa.validate_policy(policyDocument=doc, policyType="IDENTITY_POLICY", maxResults=3,
                                nextToken=first["nextToken"])
    pages = [p["findings"] for p in aa.get_paginator("validate_policy").paginate(
        policyDocument=doc, policyType="IDENTITY_POLICY", PaginationConfig={"PageSize": 2})]
    assert [len(p) for p in pages] == [2, 2, 2, 1]
    assert [f for p in pages for f in p] == everything
    assert first["findings"] + second["findings"] == everything[:6]
    # The CLI follows the tokens itself.
    out = keycard.aws("accessanalyzer", "validate-policy", "--policy-type", "IDENTITY_POLICY",
                      "--policy-document", doc, "--page-size", "2")
    assert out["findings"] == everything
    # A token belongs to the request it continues.
    other = doc.replace("Nope0", "Nope9")
    expect_error("ValidationException", aa.validate_policy, policyDocument=other,
                 policyType="IDENTITY_POLICY", nextToken=first["nextToken"])


def test_validation_exception_for_bad_input(keycard):
    aa = keycard.client("accessanalyzer")
    e = expect_error("ValidationException", aa.validate_policy, policyDocument="{}", policyType="NOT_A_TYPE")
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    expect_error("ValidationException", aa.validate_policy, policyDocument="{}", policyType="IDENTITY_POLICY",
                 maxResults=0)
    expect_error("ValidationException", aa.validate_policy, policyDocument="{}", policyType="RESOURCE_POLICY",
                 validatePolicyResourceType="AWS::Nope")
    keycard.aws_error("accessanalyzer", "validate-policy", "--policy-type", "BAD",
                      "--policy-document", "{}", code="ValidationException")
    # Missing policyDocument, sent without client-side validation.
    raw = keycard.client("accessanalyzer", parameter_validation=False)
    expect_error("ValidationException", raw.validate_policy, policyType="IDENTITY_POLICY")


def test_a_principal_needs_access_analyzer_validate_policy(keycard):
    iam = keycard.client("iam")
    user = unique("lint")
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    creds = {"AccessKeyId": key["AccessKeyId"], "SecretAccessKey": key["SecretAccessKey"]}
    aa = keycard.client("accessanalyzer", creds=creds)
    e = expect_error("AccessDeniedException", aa.validate_policy, policyDocument="{}", policyType="IDENTITY_POLICY")
    assert "access-analyzer:ValidatePolicy" in e.response["Error"]["Message"]
    iam.put_user_policy(UserName=user, PolicyName="lint", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "access-analyzer:ValidatePolicy", "Resource": "*"}]}))
    out = aa.validate_policy(policyDocument='{"Version":"2012-10-17"}', policyType="IDENTITY_POLICY")
    assert [f["issueCode"] for f in out["findings"]] == ["MISSING_STATEMENT"]


# ------------------------------------------------------------------ offline CLI


def lint(tmp_path, *args, doc=PASS_ROLE_DOC, stdin=False):
    path = tmp_path / "policy.json"
    path.write_text(doc)
    target = "-" if stdin else str(path)
    return subprocess.run([str(keycard_bin()), "policy", "lint", target, *args],
                          input=doc if stdin else None, capture_output=True, text=True, timeout=60)


def test_lint_human_output_and_exit_codes(tmp_path):
    p = lint(tmp_path)
    assert p.returncode == 1, p.stderr
    lines = p.stdout.strip().splitlines()
    assert f"{tmp_path / 'policy.json'}:5:32: ERROR INVALID_ACTION The action s3:GetObjekt does not exist." in lines
    assert any(" SECURITY_WARNING PASS_ROLE_WITH_STAR_IN_RESOURCE " in l for l in lines)
    clean = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*","Sid":""}]}'
    p = lint(tmp_path, doc=clean, stdin=True)
    assert p.returncode == 0, p.stdout
    assert p.stdout.strip() == "-:1:101: SUGGESTION EMPTY_SID_VALUE Add a value to the empty string in the Sid element."
    p = subprocess.run([str(keycard_bin()), "policy", "lint", str(tmp_path / "missing.json")],
                       capture_output=True, text=True)
    assert p.returncode == 2
    p = subprocess.run([str(keycard_bin()), "policy", "lint", "x", "--format", "yaml"], capture_output=True, text=True)
    assert p.returncode == 2


def test_lint_json_is_the_validate_policy_body(tmp_path, keycard):
    p = lint(tmp_path, "--format", "json")
    offline = json.loads(p.stdout)
    online = keycard.client("accessanalyzer").validate_policy(policyDocument=PASS_ROLE_DOC,
                                                              policyType="IDENTITY_POLICY")
    assert offline["findings"] == online["findings"]
    p = lint(tmp_path, "--format", "json", "--type", "resource", "--resource-type", "AWS::S3::Bucket")
    assert "MISSING_PRINCIPAL" in {f["issueCode"] for f in json.loads(p.stdout)["findings"]}


def test_lint_sarif(tmp_path):
    p = lint(tmp_path, "--format", "sarif")
    assert p.returncode == 1
    sarif = json.loads(p.stdout)
    assert sarif["version"] == "2.1.0"
    run = sarif["runs"][0]
    rules = {r["id"]: r for r in run["tool"]["driver"]["rules"]}
    assert rules["INVALID_ACTION"]["helpUri"].endswith("-error-invalid-action")
    res = {r["ruleId"]: r for r in run["results"]}
    assert res["INVALID_ACTION"]["level"] == "error"
    region = res["INVALID_ACTION"]["locations"][0]["physicalLocation"]["region"]
    assert (region["startLine"], region["startColumn"], region["endLine"], region["endColumn"]) == (5, 32, 5, 46)
    assert res["PASS_ROLE_WITH_STAR_IN_RESOURCE"]["level"] == "error"
