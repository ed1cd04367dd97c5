"""Everything lives in the data dir: a graceful restart keeps identities,
keys, policies, buckets, objects and issued session credentials."""

import hashlib
import json
import os
import signal

from conftest import ACCOUNT, allow, doc, trust_for


def test_restart_keeps_everything(keycard_fresh):
    kc = keycard_fresh
    iam = kc.client("iam")
    s3 = kc.client("s3")
    root_before = dict(kc.root_creds)

    user, creds = kc.new_user(name="persist-user", policy=allow(["sts:AssumeRole", "s3:ListAllMyBuckets"]))
    pol = iam.create_policy(PolicyName="PersistRead", PolicyDocument=doc(allow("iam:ListUsers")))["Policy"]
    iam.attach_user_policy(UserName="persist-user", PolicyArn=pol["Arn"])
    role = kc.new_role(trust_for(f"arn:aws:iam::{ACCOUNT}:root"), name="persist-role",
                       policy=allow("s3:ListAllMyBuckets"))
    iam.create_instance_profile(InstanceProfileName="persist-profile")
    iam.add_role_to_instance_profile(InstanceProfileName="persist-profile", RoleName="persist-role")

    s3.create_bucket(Bucket="persist-bucket")
    blob = os.urandom(100_000)
    s3.put_object(Bucket="persist-bucket", Key="dir/blob.bin", Body=blob)
    policy = doc({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": user["Arn"]}, "Action": "s3:GetObject",
                       "Resource": "arn:aws:s3:::persist-bucket/*"}],
    })
    s3.put_bucket_policy(Bucket="persist-bucket", Policy=policy)

    assumed = kc.client("sts", creds).assume_role(RoleArn=role["Arn"], RoleSessionName="before-restart")
    sess = {k: assumed["Credentials"][k] for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")}
    tok = kc.client("sts", creds).get_session_token(DurationSeconds=900)
    user_sess = {k: tok["Credentials"][k] for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")}

    rc = kc.restart()
    assert rc == 0, f"SIGTERM should stop keycard cleanly, exit code {rc}\n{kc.log_tail()}"
    assert kc.root_creds == root_before

    iam = kc.client("iam")
    s3 = kc.client("s3")
    got = iam.get_user(UserName="persist-user")["User"]
    assert got["UserId"] == user["UserId"]
    assert got["Arn"] == user["Arn"]
    assert [k["AccessKeyId"] for k in iam.list_access_keys(UserName="persist-user")["AccessKeyMetadata"]] == [
        creds["AccessKeyId"]
    ]
    assert iam.list_user_policies(UserName="persist-user")["PolicyNames"] == ["inline"]
    attached = iam.list_attached_user_policies(UserName="persist-user")["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [pol["Arn"]]
    assert iam.get_role(RoleName="persist-role")["Role"]["RoleId"] == role["RoleId"]
    prof = iam.get_instance_profile(InstanceProfileName="persist-profile")["InstanceProfile"]
    assert [r["RoleName"] for r in prof["Roles"]] == ["persist-role"]

    assert "persist-bucket" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    body = s3.get_object(Bucket="persist-bucket", Key="dir/blob.bin")["Body"].read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(blob).digest()
    assert s3.get_bucket_policy(Bucket="persist-bucket")["Policy"]

    # The user's old key still works, with its permissions.
    ident = kc.aws("sts", "get-caller-identity", creds=creds)
    assert ident["Arn"] == user["Arn"]
    assert "persist-user" in [u["UserName"] for u in kc.client("iam", creds).list_users()["Users"]]
    assert kc.client("s3", creds).get_object(Bucket="persist-bucket", Key="dir/blob.bin")["Body"].read() == blob

    # Session credentials issued before the restart still work.
    ident = kc.client("sts", sess).get_caller_identity()
    assert ident["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/persist-role/before-restart"
    kc.client("s3", sess).list_buckets()
    ident = kc.client("sts", user_sess).get_caller_identity()
    assert ident["Arn"] == user["Arn"]

    # The audit trail from before the restart is still there.
    events = kc.client("cloudtrail").lookup_events(
        LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "CreateUser"}]
    )["Events"]
    assert "persist-user" in [json.loads(e["CloudTrailEvent"])["requestParameters"]["userName"] for e in events]


def test_restart_twice_and_keep_writing(keycard_fresh):
    kc = keycard_fresh
    kc.client("iam").create_user(UserName="first")
    kc.restart()
    kc.client("iam").create_user(UserName="second")
    kc.restart()
    names = sorted(u["UserName"] for u in kc.client("iam").list_users()["Users"])
    assert names == ["first", "second"]


def test_sigkill_keeps_acknowledged_writes(keycard_fresh):
    """A write that got its 200 survives a crash (SIGKILL, no shutdown)."""
    kc = keycard_fresh
    kc.client("iam").create_user(UserName="durable")
    kc.client("s3").create_bucket(Bucket="durable-bucket")
    kc.client("s3").put_object(Bucket="durable-bucket", Key="k", Body=b"durable")
    kc.stop(sig=signal.SIGKILL)
    kc.start()
    assert kc.client("iam").get_user(UserName="durable")["User"]["UserName"] == "durable"
    assert kc.client("s3").get_object(Bucket="durable-bucket", Key="k")["Body"].read() == b"durable"
