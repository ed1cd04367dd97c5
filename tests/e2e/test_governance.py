"""Governance (issue 9): every rule's bad state is made through boto3 or
the AWS CLI, the finding appears in ``keycard posture``, the state is
fixed, and the finding resolves. Age-based rules use the server's test
clock (``--test-clock``, moved through the admin endpoint), never sleeps."""

import gzip
import json
import subprocess

import pytest

from conftest import ACCOUNT, doc, keycard_bin, raw_http

DAY = 86400
ADMIN = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


@pytest.fixture
def kc(make_keycard):
    return make_keycard("--test-clock")


def posture(kc, *extra):
    p = subprocess.run(
        [str(keycard_bin()), "posture", "--data-dir", str(kc.data_dir), "--json", *extra],
        capture_output=True, text=True, timeout=60,
    )
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def findings(kc, rule, *extra):
    return [f for f in posture(kc, *extra)["findings"] if f["rule"] == rule]


def on(fs, suffix):
    return [f for f in fs if f["resource"].endswith(suffix)]


def admin_post(kc, path, body):
    token = (kc.data_dir / "admin.token").read_text().strip()
    status, _, out = raw_http("POST", kc.endpoint + path, body=json.dumps(body).encode(),
                              headers={"Authorization": f"Bearer {token}"})
    return status, json.loads(out)


def advance(kc, days):
    status, out = admin_post(kc, "/_keycard/admin/clock", {"advanceSeconds": int(days * DAY)})
    assert status == 200, out


def test_instance_without_role_then_associated_resolves_and_times_it(kc):
    iid = kc.run_instance()["InstanceId"]
    f = on(findings(kc, "KC-EC2-001"), f"instance/{iid}")
    assert len(f) == 1 and f[0]["workflow"] == "NEW" and f[0]["severity"] == "MEDIUM"
    assert f[0]["awsConfigRule"] == "ec2-instance-profile-attached"
    k = posture(kc)["kpis"]
    assert (k["runningInstances"], k["runningInstancesWithRole"], k["pctInstancesWithRole"]) == (1, 0, 0.0)
    assert k["mttrNoRoleSeconds"] is None
    _, prof = kc.instance_profile()
    advance(kc, 0.5)  # remediation takes half a day
    kc.client("ec2").associate_iam_instance_profile(InstanceId=iid, IamInstanceProfile={"Name": prof["InstanceProfileName"]})
    assert on(findings(kc, "KC-EC2-001"), f"instance/{iid}") == []
    resolved = on(findings(kc, "KC-EC2-001", "--all"), f"instance/{iid}")
    # Half a day on the test clock, plus the seconds the test itself took.
    took = resolved[0]["resolvedAt"] - resolved[0]["firstObserved"]
    assert resolved[0]["workflow"] == "RESOLVED" and DAY // 2 <= took < DAY // 2 + 120
    k = posture(kc)["kpis"]
    assert k["pctInstancesWithRole"] == 100.0 and k["mttrNoRoleSeconds"] == took


def test_imdsv1_and_hop_limit_then_enforced(kc):
    iid = kc.run_instance(MetadataOptions={"HttpTokens": "optional", "HttpPutResponseHopLimit": 2})["InstanceId"]
    assert on(findings(kc, "KC-EC2-002"), iid)[0]["securityHubControl"] == "EC2.8"
    assert on(findings(kc, "KC-EC2-003"), iid)
    kc.aws("ec2", "modify-instance-metadata-options", "--instance-id", iid, "--http-tokens", "required",
           "--http-put-response-hop-limit", "1")
    assert on(findings(kc, "KC-EC2-002"), iid) == [] and on(findings(kc, "KC-EC2-003"), iid) == []


def test_live_key_in_gzipped_user_data_is_critical(kc):
    user, creds = kc.new_user()
    script = f"#!/bin/bash\nexport AWS_ACCESS_KEY_ID={creds['AccessKeyId']}\n"
    # cloud-init accepts gzipped user data; boto3 base64-encodes it.
    iid = kc.run_instance(UserData=gzip.compress(script.encode()))["InstanceId"]
    f = on(findings(kc, "KC-EC2-005"), iid)
    assert f and f[0]["severity"] == "CRITICAL", f
    assert creds["SecretAccessKey"] not in json.dumps(posture(kc))
    k = posture(kc)["kpis"]
    assert k["exposedCredentialFindings"] >= 1
    # Deactivating the key lowers it to HIGH; terminating resolves it.
    kc.client("iam").update_access_key(UserName=user["UserName"], AccessKeyId=creds["AccessKeyId"], Status="Inactive")
    assert on(findings(kc, "KC-EC2-005"), iid)[0]["severity"] == "HIGH"
    kc.client("ec2").terminate_instances(InstanceIds=[iid])
    assert on(findings(kc, "KC-EC2-005"), iid) == []


def test_key_age_and_unused_follow_the_test_clock(kc):
    user, creds = kc.new_user()
    key = creds["AccessKeyId"]
    assert on(findings(kc, "KC-IAM-001"), key) == []
    advance(kc, 50)
    assert on(findings(kc, "KC-IAM-002"), key), "unused 45 days"
    advance(kc, 41)
    assert on(findings(kc, "KC-IAM-001"), key)[0]["prowlerCheck"] == "iam_rotate_access_key_90_days"
    assert on(findings(kc, "KC-IAM-003"), key) and on(findings(kc, "KC-IAM-002"), key) == []
    kc.client("iam").delete_access_key(UserName=user["UserName"], AccessKeyId=key)
    assert on(findings(kc, "KC-IAM-001"), key) == [] and on(findings(kc, "KC-IAM-003"), key) == []


def test_admin_instance_role_is_critical_and_passrole_star(kc):
    role, prof = kc.instance_profile(policy=ADMIN)
    kc.run_instance(profile=prof["InstanceProfileName"])
    f = on(findings(kc, "KC-IAM-005"), f"role/{role['RoleName']}")
    assert f and f[0]["severity"] == "CRITICAL"
    kc.client("iam").put_role_policy(RoleName=role["RoleName"], PolicyName="inline", PolicyDocument=doc(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}]}))
    assert on(findings(kc, "KC-IAM-005"), f"role/{role['RoleName']}") == []
    assert on(findings(kc, "KC-IAM-007"), f"role/{role['RoleName']}")
    kc.client("iam").put_role_policy(RoleName=role["RoleName"], PolicyName="inline", PolicyDocument=doc(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*",
                                                 "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}}]}))
    assert on(findings(kc, "KC-IAM-007"), f"role/{role['RoleName']}") == [], "PassRole scoped to a service"
    user, _ = kc.new_user(managed=["arn:aws:iam::aws:policy/AdministratorAccess"])
    f = on(findings(kc, "KC-IAM-005"), f"user/{user['UserName']}")
    assert f and f[0]["severity"] == "HIGH"
    kc.client("iam").detach_user_policy(UserName=user["UserName"], PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
    assert on(findings(kc, "KC-IAM-005"), f"user/{user['UserName']}") == []


def test_shared_role_across_owners_and_broad_role_on_many(kc):
    role, prof = kc.instance_profile(policy=ADMIN)
    name = prof["InstanceProfileName"]
    ids = [kc.run_instance(profile=name, TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Owner", "Value": owner}]}])["InstanceId"]
           for owner in ["team-a", "team-b", "team-a"]]
    assert on(findings(kc, "KC-IAM-008"), f"role/{role['RoleName']}")
    assert on(findings(kc, "KC-IAM-009"), f"role/{role['RoleName']}")
    # team-b's instance leaves: one owner, two instances.
    kc.client("ec2").terminate_instances(InstanceIds=[ids[1]])
    assert on(findings(kc, "KC-IAM-008"), f"role/{role['RoleName']}") == []
    assert on(findings(kc, "KC-IAM-009"), f"role/{role['RoleName']}") == []


def test_root_key_and_suppression_workflow(kc):
    f = on(findings(kc, "KC-IAM-004"), ":root")
    assert f and f[0]["severity"] == "CRITICAL"
    fid = f[0]["id"]
    status, out = admin_post(kc, f"/_keycard/admin/governance/findings/{fid}/workflow", {"status": "SUPPRESSED"})
    assert status == 400, "suppressing needs a reason"
    status, out = admin_post(kc, f"/_keycard/admin/governance/findings/{fid}/workflow",
                             {"status": "SUPPRESSED", "note": "bootstrap key of a local dev server"})
    assert status == 200 and out["workflow"] == "SUPPRESSED"
    again = on(findings(kc, "KC-IAM-004"), ":root")[0]
    assert again["workflow"] == "SUPPRESSED" and again["note"].startswith("bootstrap")
    assert posture(kc)["kpis"]["openFindings"]["CRITICAL"] == 0, "suppressed findings are not counted"
    # The fix: an admin user takes over and the root key is deactivated
    # (keycard keeps the bootstrap key itself: DeleteConflict).
    kc.new_user(managed=["arn:aws:iam::aws:policy/AdministratorAccess"])
    kc.client("iam").update_access_key(AccessKeyId=kc.root_creds["AccessKeyId"], Status="Inactive")
    assert on(findings(kc, "KC-IAM-004", "--all"), ":root")[0]["workflow"] == "RESOLVED"


def test_findings_and_trend_survive_a_restart(kc):
    iid = kc.run_instance()["InstanceId"]
    before = on(findings(kc, "KC-EC2-001"), iid)[0]
    advance(kc, 1)
    posture(kc)
    kc.restart()
    advance(kc, 2)
    after = on(findings(kc, "KC-EC2-001"), iid)[0]
    assert after["id"] == before["id"] and after["firstObserved"] == before["firstObserved"]
    trend = posture(kc)["trend"]
    assert len(trend) >= 2, trend  # one point per evaluated day


def test_clock_only_moves_with_the_flag(keycard_fresh):
    status, out = admin_post(keycard_fresh, "/_keycard/admin/clock", {"advanceSeconds": 60})
    assert status == 403


def test_posture_table_and_metrics(kc):
    kc.run_instance()
    p = subprocess.run([str(keycard_bin()), "posture", "--data-dir", str(kc.data_dir)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "running instances with a role" in p.stdout and "KC-EC2-001" in p.stdout
    # Metrics: a denial is counted, and governance gauges are exported.
    _, creds = kc.new_user()
    with pytest.raises(Exception):
        kc.client("iam", creds=creds).list_users()
    token = (kc.data_dir / "admin.token").read_text().strip()
    status, _, body = raw_http("GET", kc.endpoint + "/metrics")
    assert status == 401
    status, _, body = raw_http("GET", kc.endpoint + "/metrics", headers={"Authorization": f"Bearer {token}"})
    text = body.decode()
    assert status == 200
    assert 'keycard_denials_total{service="iam",operation="ListUsers"} 1' in text
    assert 'keycard_requests_total{service="ec2",operation="RunInstances",code=""} 1' in text
    assert f'keycard_instances_with_role_ratio{{account="{ACCOUNT}"}} 0' in text
    assert 'keycard_request_duration_seconds_count{service="iam"}' in text


def test_console_password_without_mfa_and_unused(kc):
    from test_iam_governance import two_codes

    iam = kc.client("iam")
    user, _ = kc.new_user()
    name = user["UserName"]
    iam.create_login_profile(UserName=name, Password="Corr3ct-horse-battery!")
    f = on(findings(kc, "KC-IAM-013"), f"user/{name}")
    assert f and f[0]["securityHubControl"] == "IAM.5" and f[0]["severity"] == "HIGH"
    dev = iam.create_virtual_mfa_device(VirtualMFADeviceName=f"mfa-{name}")["VirtualMFADevice"]
    c1, c2 = two_codes(dev["Base32StringSeed"])
    iam.enable_mfa_device(UserName=name, SerialNumber=dev["SerialNumber"], AuthenticationCode1=c1, AuthenticationCode2=c2)
    assert on(findings(kc, "KC-IAM-013"), f"user/{name}") == []
    assert on(findings(kc, "KC-IAM-014"), f"user/{name}") == []
    advance(kc, 46)
    assert on(findings(kc, "KC-IAM-014"), f"user/{name}")
    kc.aws("iam", "delete-login-profile", "--user-name", name)
    assert on(findings(kc, "KC-IAM-014"), f"user/{name}") == []


def test_role_unreachable_owner_tags_and_service_wide_grants(kc):
    iam = kc.client("iam")
    role, prof = kc.instance_profile(policy={"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iam:*", "Resource": "*"}]})
    name = role["RoleName"]
    iid = kc.run_instance(profile=prof["InstanceProfileName"],
                          MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "disabled"})["InstanceId"]
    assert on(findings(kc, "KC-EC2-004"), iid)
    assert on(findings(kc, "KC-EC2-006"), iid), "no Owner tag on the instance"
    assert on(findings(kc, "KC-IAM-011"), f"role/{name}"), "no Owner tag on the role"
    assert on(findings(kc, "KC-IAM-006"), f"role/{name}"), "iam:* on *"
    kc.client("ec2").modify_instance_metadata_options(InstanceId=iid, HttpEndpoint="enabled", HttpTokens="required")
    kc.client("ec2").create_tags(Resources=[iid], Tags=[{"Key": "Owner", "Value": "team-a"}])
    iam.tag_role(RoleName=name, Tags=[{"Key": "owner", "Value": "team-a"}])
    iam.put_role_policy(RoleName=name, PolicyName="inline", PolicyDocument=doc(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:GetRole", "Resource": "*"}]}))
    for rule, res in [("KC-EC2-004", iid), ("KC-EC2-006", iid), ("KC-IAM-011", f"role/{name}"),
                      ("KC-IAM-006", f"role/{name}")]:
        assert on(findings(kc, rule), res) == [], rule


def test_unused_role_after_90_days(kc):
    from conftest import EC2_TRUST

    role = kc.new_role(EC2_TRUST, Tags=[{"Key": "Owner", "Value": "x"}])
    assert on(findings(kc, "KC-IAM-010"), f"role/{role['RoleName']}") == []
    advance(kc, 91)
    assert on(findings(kc, "KC-IAM-010"), f"role/{role['RoleName']}")
    kc.client("iam").delete_role(RoleName=role["RoleName"])
    assert on(findings(kc, "KC-IAM-010"), f"role/{role['RoleName']}") == []


def test_kpis_of_a_seeded_estate(kc):
    """Known answers: 4 running instances, 3 with a role, one stopped one
    without (not counted); keys: root + 2 users' + 1 inactive."""
    _, prof = kc.instance_profile()
    for _ in range(3):
        kc.run_instance(profile=prof["InstanceProfileName"], MetadataOptions={"HttpTokens": "required"})
    kc.run_instance(MetadataOptions={"HttpTokens": "required"})
    stopped = kc.run_instance()["InstanceId"]
    kc.client("ec2").stop_instances(InstanceIds=[stopped])
    kc.new_user()
    user, creds = kc.new_user()
    kc.client("iam").update_access_key(UserName=user["UserName"], AccessKeyId=creds["AccessKeyId"], Status="Inactive")
    kc.new_user()
    k = posture(kc)["kpis"]
    assert (k["runningInstances"], k["runningInstancesWithRole"]) == (4, 3)
    assert k["pctInstancesWithRole"] == 75.0
    assert k["activeLongTermKeys"] == 3  # root + two active user keys
    assert k["openFindings"]["CRITICAL"] == 1  # the root key
    assert k["exposedCredentialFindings"] == 1


def test_scan_findings_join_the_posture(kc, tmp_path):
    user, creds = kc.new_user()
    key = creds["AccessKeyId"]
    repo = tmp_path / "app"
    repo.mkdir()
    (repo / "settings.py").write_text(f'AWS_ACCESS_KEY_ID = "{key}"\nAWS_SECRET_ACCESS_KEY = "{creds["SecretAccessKey"]}"\n')
    scan = subprocess.run([str(keycard_bin()), "scan", str(repo), "--data-dir", str(kc.data_dir), "--format", "json"],
                          capture_output=True, text=True, timeout=60)
    assert scan.returncode == 1, scan.stderr  # a critical finding
    f = on(findings(kc, "KC-SCAN-001"), key)
    assert f and f[0]["severity"] == "CRITICAL" and "settings.py:1" in f[0]["detail"], f
    assert creds["SecretAccessKey"] not in json.dumps(posture(kc))
    trend = posture(kc)["trend"]
    assert trend[-1]["exposedCredentialFindings"] >= 2  # the root key and this one
    # Deactivated: still exposed, lower; deleted: resolved.
    kc.client("iam").update_access_key(UserName=user["UserName"], AccessKeyId=key, Status="Inactive")
    assert on(findings(kc, "KC-SCAN-001"), key)[0]["severity"] == "HIGH"
    kc.client("iam").delete_access_key(UserName=user["UserName"], AccessKeyId=key)
    assert on(findings(kc, "KC-SCAN-001"), key) == []


def test_a_rescan_without_the_key_resolves_it(kc, tmp_path):
    _, creds = kc.new_user()
    key = creds["AccessKeyId"]
    tree = tmp_path / "ops"  # not tmp_path itself: the data dir lives there
    tree.mkdir()
    f = tree / "deploy.sh"
    f.write_text(f"export AWS_ACCESS_KEY_ID={key}\n")
    run = lambda: subprocess.run([str(keycard_bin()), "scan", str(tree), "--data-dir", str(kc.data_dir)],
                                 capture_output=True, text=True, timeout=60)
    run()
    assert on(findings(kc, "KC-SCAN-001"), key)
    f.write_text("# credentials come from the instance role now\n")
    assert run().returncode == 0
    assert on(findings(kc, "KC-SCAN-001"), key) == []
