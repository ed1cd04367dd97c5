"""The audit trail, read back with `aws cloudtrail lookup-events`: every
call, allowed or denied, as a CloudTrail event; never a secret."""

import datetime
import json
import time

import pytest

from conftest import ACCOUNT, allow, trust_for


def lookup(keycard, key, value):
    return keycard.aws(
        "cloudtrail", "lookup-events", "--lookup-attributes", f"AttributeKey={key},AttributeValue={value}"
    )["Events"]


def wait_for(fn, timeout=5.0):
    """Poll ``fn`` until it returns something truthy (the trail is written
    in batches)."""
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def all_events(keycard):
    ct = keycard.client("cloudtrail")
    events, token = [], None
    for _ in range(200):
        kw = {"MaxResults": 50}
        if token:
            kw["NextToken"] = token
        page = ct.lookup_events(**kw)
        events += page["Events"]
        token = page.get("NextToken")
        if not token:
            break
    return events


@pytest.fixture(scope="module")
def activity(keycard):
    """Some calls to audit: root creates a user with a key, the user is
    denied, the user assumes a role."""
    keycard.aws("iam", "create-user", "--user-name", "audited")
    key = keycard.aws("iam", "create-access-key", "--user-name", "audited")["AccessKey"]
    creds = {"AccessKeyId": key["AccessKeyId"], "SecretAccessKey": key["SecretAccessKey"]}
    keycard.aws_error("iam", "list-users", creds=creds, code="AccessDenied")

    keycard.client("iam").put_user_policy(
        UserName="audited", PolicyName="assume", PolicyDocument=json.dumps(allow("sts:AssumeRole"))
    )
    role = keycard.new_role(trust_for(f"arn:aws:iam::{ACCOUNT}:root"), name="audited-role",
                            policy=allow("iam:ListRoles"))
    resp = keycard.aws("sts", "assume-role", "--role-arn", role["Arn"], "--role-session-name", "audit-sess",
                       creds=creds)
    sess = resp["Credentials"]
    keycard.aws("iam", "list-roles", creds=sess)
    secrets = [key["SecretAccessKey"], sess["SecretAccessKey"], sess["SessionToken"],
               keycard.root_creds["SecretAccessKey"]]
    return {"creds": creds, "secrets": secrets, "session": sess}


def test_create_user_event(keycard, activity):
    events = wait_for(lambda: lookup(keycard, "EventName", "CreateUser"))
    assert events, "no CreateUser event"
    ev = next(e for e in events if json.loads(e["CloudTrailEvent"]).get("requestParameters", {}).get("userName")
              == "audited")
    assert ev["EventName"] == "CreateUser"
    assert ev["EventSource"] == "iam.amazonaws.com"
    assert ev["ReadOnly"] == "false"
    assert ev["Username"] == "root"
    assert ev["AccessKeyId"] == keycard.root_creds["AccessKeyId"]
    assert "EventTime" in ev and ev["EventId"]
    ct = json.loads(ev["CloudTrailEvent"])
    assert ct["eventVersion"]
    assert ct["eventName"] == "CreateUser"
    assert ct["eventSource"] == "iam.amazonaws.com"
    assert ct["userIdentity"]["type"] == "Root"
    assert ct["userIdentity"]["arn"] == f"arn:aws:iam::{ACCOUNT}:root"
    assert ct["userIdentity"]["accountId"] == ACCOUNT
    assert ct["requestParameters"]["userName"] == "audited"
    assert ct["recipientAccountId"] == ACCOUNT
    assert ct["eventID"] == ev["EventId"]
    assert "errorCode" not in ct
    assert ct["sourceIPAddress"] == "127.0.0.1"
    assert "aws-cli" in ct["userAgent"]


def test_denied_event(keycard, activity):
    def denied():
        return [e for e in lookup(keycard, "Username", "audited")
                if e["EventName"] == "ListUsers"]
    events = wait_for(denied)
    assert events, "no ListUsers event for the user"
    ct = json.loads(events[0]["CloudTrailEvent"])
    assert ct["errorCode"] == "AccessDenied"
    assert "iam:ListUsers" in ct["errorMessage"]
    assert ct["userIdentity"]["type"] == "IAMUser"
    assert ct["userIdentity"]["userName"] == "audited"
    assert ct["userIdentity"]["arn"] == f"arn:aws:iam::{ACCOUNT}:user/audited"
    assert ct["userIdentity"]["accessKeyId"] == activity["creds"]["AccessKeyId"]


def test_assumed_role_events(keycard, activity):
    events = wait_for(lambda: lookup(keycard, "EventName", "AssumeRole"))
    assert events
    ct = json.loads(events[0]["CloudTrailEvent"])
    assert ct["eventSource"] == "sts.amazonaws.com"
    assert ct["userIdentity"]["userName"] == "audited"
    assert ct["requestParameters"]["roleSessionName"] == "audit-sess"

    def listed():
        return [e for e in lookup(keycard, "EventName", "ListRoles")
                if json.loads(e["CloudTrailEvent"])["userIdentity"]["type"] == "AssumedRole"]
    events = wait_for(listed)
    assert events, "no ListRoles event by the assumed role"
    ident = json.loads(events[0]["CloudTrailEvent"])["userIdentity"]
    assert ident["arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/audited-role/audit-sess"
    assert ident["accessKeyId"] == activity["session"]["AccessKeyId"]
    assert ident["sessionContext"]["sessionIssuer"]["arn"] == f"arn:aws:iam::{ACCOUNT}:role/audited-role"
    assert ident["sessionContext"]["sessionIssuer"]["type"] == "Role"


def test_lookup_by_resource_name(keycard, activity):
    events = wait_for(lambda: lookup(keycard, "ResourceName", "audited"))
    names = {e["EventName"] for e in events}
    assert "CreateUser" in names, names
    assert "CreateAccessKey" in names, names
    for e in events:
        assert any(r.get("ResourceName") == "audited" for r in e.get("Resources", [])), e


def test_lookup_by_access_key(keycard, activity):
    events = wait_for(lambda: lookup(keycard, "AccessKeyId", activity["creds"]["AccessKeyId"]))
    assert events
    assert all(e["AccessKeyId"] == activity["creds"]["AccessKeyId"] for e in events)


def test_no_secret_in_any_event(keycard, activity):
    wait_for(lambda: lookup(keycard, "EventName", "ListRoles"))
    events = all_events(keycard)
    assert len(events) >= 8
    blob = json.dumps(events, default=str)
    for secret in activity["secrets"]:
        assert secret not in blob
    create_key = [e for e in events if e["EventName"] == "CreateAccessKey"]
    assert create_key
    ct = json.loads(create_key[0]["CloudTrailEvent"])
    # The key id is recorded; its secret is not.
    assert activity["creds"]["AccessKeyId"] in json.dumps(ct)


def test_pagination(keycard, activity):
    wait_for(lambda: lookup(keycard, "EventName", "ListRoles"))
    # The CLI, one page of one event.
    page = keycard.aws("cloudtrail", "lookup-events", "--max-results", "1", "--no-paginate")
    assert len(page["Events"]) == 1
    assert page.get("NextToken")

    ct = keycard.client("cloudtrail")
    seen, token = [], None
    for _ in range(6):
        kw = {"MaxResults": 1}
        if token:
            kw["NextToken"] = token
        page = ct.lookup_events(**kw)
        assert len(page["Events"]) == 1
        seen.append(page["Events"][0]["EventId"])
        token = page["NextToken"]
    assert len(set(seen)) == 6, "pages repeat events"
    times = [e["EventTime"] for e in ct.lookup_events(MaxResults=10)["Events"]]
    assert times == sorted(times, reverse=True), "events come newest first"


def test_lookup_by_event_source_and_time(keycard, activity):
    wait_for(lambda: lookup(keycard, "EventName", "ListRoles"))
    ct = keycard.client("cloudtrail")
    sts_events = ct.lookup_events(
        LookupAttributes=[{"AttributeKey": "EventSource", "AttributeValue": "sts.amazonaws.com"}]
    )["Events"]
    assert sts_events
    assert all(e["EventSource"] == "sts.amazonaws.com" for e in sts_events)
    future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    assert ct.lookup_events(StartTime=future)["Events"] == []
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    assert ct.lookup_events(EndTime=past)["Events"] == []


def test_s3_calls_audited(keycard, activity):
    s3 = keycard.client("s3")
    s3.create_bucket(Bucket="audited-bucket")
    s3.put_object(Bucket="audited-bucket", Key="k.txt", Body=b"x")

    def created():
        return [e for e in lookup(keycard, "EventName", "CreateBucket")]
    events = wait_for(created)
    assert events, "no CreateBucket event"
    ct = json.loads(events[0]["CloudTrailEvent"])
    assert ct["eventSource"] == "s3.amazonaws.com"
    assert ct["requestParameters"]["bucketName"] == "audited-bucket"
    assert ct["userIdentity"]["type"] == "Root"
