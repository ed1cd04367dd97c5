"""Security Hub's finding API over keycard's findings (ASFF), and
Organizations answered as AWS answers an account in no organization."""

from conftest import ACCOUNT, REGION, expect_error


def hub_findings(kc, **kw):
    return kc.client("securityhub").get_findings(**kw)


def test_organizations_not_in_use(keycard):
    org = keycard.client("organizations")
    e = expect_error("AWSOrganizationsNotInUseException", org.describe_organization)
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    expect_error("AWSOrganizationsNotInUseException", org.list_accounts)
    p = keycard.aws_raw("organizations", "describe-organization")
    assert p.returncode != 0 and "AWSOrganizationsNotInUseException" in p.stderr


def test_describe_hub(keycard):
    hub = keycard.client("securityhub").describe_hub()
    assert hub["HubArn"] == f"arn:aws:securityhub:{REGION}:{ACCOUNT}:hub/default"


def test_get_findings_filters_pages_and_workflow(keycard_fresh):
    kc = keycard_fresh
    ids = [kc.run_instance()["InstanceId"] for _ in range(3)]
    got = hub_findings(kc, Filters={"GeneratorId": [{"Value": "KC-EC2-001", "Comparison": "EQUALS"}],
                                    "RecordState": [{"Value": "ACTIVE", "Comparison": "EQUALS"}]})["Findings"]
    assert sorted(f["Resources"][0]["Id"].rsplit("/", 1)[1] for f in got) == sorted(ids)
    f = got[0]
    assert f["SchemaVersion"] == "2018-10-08" and f["AwsAccountId"] == ACCOUNT
    assert f["Severity"]["Label"] == "MEDIUM" and f["Resources"][0]["Type"] == "AwsEc2Instance"
    assert f["Compliance"]["Status"] == "FAILED" and f["Workflow"]["Status"] == "NEW"
    # Pages of one, then everything seen exactly once.
    seen, token = [], None
    while True:
        kw = {"Filters": {"GeneratorId": [{"Value": "KC-EC2-001", "Comparison": "EQUALS"}]}, "MaxResults": 1}
        if token:
            kw["NextToken"] = token
        page = hub_findings(kc, **kw)
        seen += [x["Id"] for x in page["Findings"]]
        token = page.get("NextToken")
        if not token:
            break
    assert len(seen) == 3 and len(set(seen)) == 3
    # Severity and negative filters.
    crit = hub_findings(kc, Filters={"SeverityLabel": [{"Value": "CRITICAL", "Comparison": "EQUALS"}]})["Findings"]
    assert crit and all(x["Severity"]["Label"] == "CRITICAL" for x in crit)
    not_ec2 = hub_findings(kc, Filters={"ResourceType": [{"Value": "AwsEc2Instance", "Comparison": "NOT_EQUALS"}]})["Findings"]
    assert all(x["Resources"][0]["Type"] != "AwsEc2Instance" for x in not_ec2)
    # Workflow through BatchUpdateFindings; an unknown id is reported, not fatal.
    out = kc.client("securityhub").batch_update_findings(
        FindingIdentifiers=[{"Id": f["Id"], "ProductArn": f["ProductArn"]},
                            {"Id": "arn:aws:securityhub:us-east-1:123456789012:keycard/finding/nope", "ProductArn": f["ProductArn"]}],
        Workflow={"Status": "SUPPRESSED"}, Note={"Text": "test fleet", "UpdatedBy": "ops"})
    assert [p["Id"] for p in out["ProcessedFindings"]] == [f["Id"]]
    assert out["UnprocessedFindings"][0]["ErrorCode"] == "FindingNotFound"
    again = hub_findings(kc, Filters={"Id": [{"Value": f["Id"], "Comparison": "EQUALS"}]})["Findings"][0]
    assert again["Workflow"]["Status"] == "SUPPRESSED" and again["Note"]["Text"] == "test fleet"
    # Bad input is refused with AWS's code.
    expect_error("InvalidInputException", hub_findings, kc, MaxResults=500)
