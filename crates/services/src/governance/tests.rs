//! Rules and lifecycle at chosen times: the clock is a parameter.

use serde_json::json;

use super::rules::*;
use super::*;
use crate::model::Entity;

const ACCT: &str = "123456789012";
const DAY: i64 = 86_400;
const T0: i64 = 1_750_000_000;

fn put(st: &mut State, kind: &str, v: serde_json::Value) {
    st.put(Entity::from_record(kind, &v.to_string()).unwrap());
}

fn estate() -> State {
    let mut st = State::default();
    put(
        &mut st,
        "account",
        json!({"id": ACCT, "created": T0, "root_key_id": "AKIAROOTROOTROOTROOT"}),
    );
    put(
        &mut st,
        "user",
        json!({"account": ACCT, "name": "alice", "id": "AIDAALICE", "path": "/", "created": T0}),
    );
    put(
        &mut st,
        "access_key",
        json!({"account": ACCT, "user": "alice", "id": "AKIAALICEALICEALICE2", "sealed_secret": "", "status": "Active", "created": T0}),
    );
    st
}

fn instance(id: &str, tags: serde_json::Value) -> serde_json::Value {
    json!({"id": id, "account": ACCT, "state": "running", "region": "us-east-1", "tags": tags,
           "metadata": {"http_tokens": "required", "http_endpoint": "enabled", "hop_limit": 1, "instance_metadata_tags": "disabled"}})
}

fn rules_at(st: &State, now: i64) -> Vec<(&'static str, String)> {
    evaluate(st, now, &Facts::default(), user_data_secrets)
        .into_iter()
        .map(|o| (o.rule, o.resource))
        .collect()
}

fn has(v: &[(&'static str, String)], rule: &str) -> bool {
    v.iter().any(|(r, _)| *r == rule)
}

#[test]
fn key_age_and_idleness_follow_the_clock() {
    let st = estate();
    let day10 = rules_at(&st, T0 + 10 * DAY);
    assert!(!has(&day10, IAM_KEY_OLD) && !has(&day10, IAM_KEY_UNUSED_45));
    let day50 = rules_at(&st, T0 + 50 * DAY);
    assert!(has(&day50, IAM_KEY_UNUSED_45) && !has(&day50, IAM_KEY_UNUSED_90));
    let day91 = rules_at(&st, T0 + 91 * DAY);
    assert!(
        has(&day91, IAM_KEY_OLD)
            && has(&day91, IAM_KEY_UNUSED_90)
            && !has(&day91, IAM_KEY_UNUSED_45)
    );
}

#[test]
fn instances_without_role_imdsv1_and_owner() {
    let mut st = estate();
    let mut i = instance("i-0aaaaaaaaaaaaaaa1", json!([]));
    i["metadata"]["http_tokens"] = json!("optional");
    i["metadata"]["hop_limit"] = json!(3);
    put(&mut st, "instance", i);
    put(
        &mut st,
        "instance",
        instance(
            "i-0aaaaaaaaaaaaaaa2",
            json!([{"key": "Owner", "value": "team-a"}]),
        ),
    );
    let found = rules_at(&st, T0);
    let on = |rule: &str, id: &str| found.iter().any(|(r, res)| *r == rule && res.ends_with(id));
    assert!(on(EC2_NO_PROFILE, "i-0aaaaaaaaaaaaaaa1") && on(EC2_NO_PROFILE, "i-0aaaaaaaaaaaaaaa2"));
    assert!(on(EC2_IMDSV1, "i-0aaaaaaaaaaaaaaa1") && !on(EC2_IMDSV1, "i-0aaaaaaaaaaaaaaa2"));
    assert!(on(EC2_HOP_LIMIT, "i-0aaaaaaaaaaaaaaa1"));
    assert!(on(EC2_NO_OWNER, "i-0aaaaaaaaaaaaaaa1") && !on(EC2_NO_OWNER, "i-0aaaaaaaaaaaaaaa2"));
}

#[test]
fn admin_and_passrole_probed_through_the_evaluator() {
    let mut st = estate();
    let admin = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "NotAction": "s3:GetObject", "Resource": "*"}]});
    let pass = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}]});
    let pass_scoped = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*",
        "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}}]});
    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
    for (name, doc) in [
        ("adminish", &admin),
        ("passer", &pass),
        ("scoped", &pass_scoped),
    ] {
        put(
            &mut st,
            "role",
            json!({"account": ACCT, "name": name, "id": format!("AROA{name}"), "path": "/", "created": T0,
            "trust": {"text": trust.to_string()}, "max_session_duration": 3600,
            "inline": {"p": {"text": doc.to_string()}}, "tags": [{"key": "owner", "value": "x"}]}),
        );
    }
    let found = rules_at(&st, T0);
    let on = |rule: &str, role: &str| {
        found
            .iter()
            .any(|(r, res)| *r == rule && res.ends_with(&format!("role/{role}")))
    };
    assert!(
        on(IAM_ADMIN, "adminish"),
        "NotAction s3:GetObject on * is administrator access: {found:?}"
    );
    assert!(on(IAM_PASSROLE_ANY, "passer") && !on(IAM_ADMIN, "passer"));
    assert!(
        !on(IAM_PASSROLE_ANY, "scoped"),
        "a PassedToService condition scopes PassRole"
    );
}

#[test]
fn user_data_keys_plain_and_base64_but_not_examples() {
    use base64::Engine;
    let script =
        "#!/bin/sh\nexport AWS_ACCESS_KEY_ID=AKIAQWERTYUIOPASDFGH\nexport X=AKIAIOSFODNN7EXAMPLE\n";
    let b64 = base64::engine::general_purpose::STANDARD.encode(script);
    assert_eq!(user_data_secrets(b64.as_bytes()), ["AKIAQWERTYUIOPASDFGH"]);
    assert_eq!(
        user_data_secrets(script.as_bytes()),
        ["AKIAQWERTYUIOPASDFGH"]
    );
    assert!(
        user_data_secrets(b"XAKIAQWERTYUIOPASDFGH").is_empty(),
        "word-bounded"
    );
    assert_eq!(
        user_data_secrets(
            b"-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n-----END RSA PRIVATE KEY-----\n"
        ),
        ["private-key"]
    );
}

#[test]
fn lifecycle_opens_resolves_reopens_and_times_remediation() {
    let mut book = BTreeMap::new();
    let o = |r: &str| Observation {
        rule: EC2_NO_PROFILE,
        account: ACCT.into(),
        resource: format!("arn:aws:ec2:us-east-1:{ACCT}:instance/{r}"),
        severity: Severity::Medium,
        detail: "d".into(),
    };
    let (_, d) = reconcile(&mut book, vec![o("i-1"), o("i-2")], T0);
    assert_eq!(
        d,
        Delta {
            opened: 2,
            reopened: 0,
            resolved: 0
        }
    );
    let (ops, d) = reconcile(&mut book, vec![o("i-1"), o("i-2")], T0 + 60);
    assert_eq!(d, Delta::default());
    assert!(
        ops.is_empty(),
        "seeing the same thing again within the hour writes nothing"
    );
    let (_, d) = reconcile(&mut book, vec![o("i-2")], T0 + 600);
    assert_eq!(d.resolved, 1);
    let f1 = book
        .get(&finding_id(EC2_NO_PROFILE, &o("i-1").resource))
        .unwrap()
        .clone();
    assert_eq!(
        (f1.resolved_at, f1.workflow),
        (Some(T0 + 600), Workflow::Resolved)
    );
    let input = KpiInput {
        per_account: [(ACCT.to_string(), (2, 1, 1))].into(),
    };
    let k = kpis(&book, &input, T0 + 600);
    assert_eq!(k[0].mttr_no_role_seconds, Some(600.0));
    assert_eq!(k[0].pct_instances_with_role, 50.0);
    assert_eq!(k[0].open_findings["MEDIUM"], 1);
    let (_, d) = reconcile(&mut book, vec![o("i-1"), o("i-2")], T0 + 900);
    assert_eq!(d.reopened, 1);
    let f1 = book.get(&f1.id).unwrap();
    assert_eq!(
        (f1.occurrences, f1.first_observed, f1.workflow),
        (2, T0 + 900, Workflow::New)
    );
}

#[test]
fn shared_role_across_owners() {
    let mut st = estate();
    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
    put(
        &mut st,
        "role",
        json!({"account": ACCT, "name": "web", "id": "AROAWEB", "path": "/", "created": T0,
        "trust": {"text": trust.to_string()}, "max_session_duration": 3600}),
    );
    put(
        &mut st,
        "instance_profile",
        json!({"account": ACCT, "name": "web", "id": "AIPAWEB", "path": "/", "created": T0, "roles": ["web"]}),
    );
    let profile = json!({"id": "iip-assoc-1", "profile_arn": format!("arn:aws:iam::{ACCT}:instance-profile/web"), "profile_id": "AIPAWEB", "state": "associated"});
    for (id, owner) in [
        ("i-0bbbbbbbbbbbbbbb1", "team-a"),
        ("i-0bbbbbbbbbbbbbbb2", "team-b"),
    ] {
        let mut i = instance(id, json!([{"key": "Owner", "value": owner}]));
        i["profile"] = profile.clone();
        put(&mut st, "instance", i);
    }
    let found = rules_at(&st, T0);
    assert!(
        found
            .iter()
            .any(|(r, res)| *r == IAM_ROLE_SHARED && res.ends_with("role/web")),
        "{found:?}"
    );
    assert!(!has(&found, EC2_NO_PROFILE));
}
