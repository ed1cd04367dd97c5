//! Differential test against `@cloud-copilot/iam-simulate` (npm; version pinned in
//! `tests/oracle/package.json` + `package-lock.json`), for the whole cross-policy flow:
//! identity policies, resource policies (same- and cross-account principals, NotPrincipal),
//! role trust policies, permissions boundaries, session policies and SCP levels.
//!
//! A seeded generator builds `KEYCARD_SIM_CASES` (default 2000) random but well-formed
//! requests in the input format of `keycard policy evaluate` (`keycard_policy::cli`). Keycard
//! evaluates each one in-process; all of them go to ONE `node tests/oracle/simulate.mjs`
//! process (JSON array on stdin), which maps them onto iam-simulate's `runSimulation`.
//!
//! Every disagreement must belong to a known divergence class: a named predicate (the
//! feature is present in the case) plus a *neutralizer* (the same case with that feature
//! removed or made unambiguous). A disagreement is attributed to a class only if the
//! neutralized case makes the engines agree, so a class can't silently swallow unrelated bugs.
//! docs/policy.md ("Differential testing against iam-simulate") lists each class with the AWS
//! documentation that decides it. An unexplained disagreement fails the test and is printed
//! minimized (policies, statements, conditions and context keys removed while it persists).
//!
//! Set-up: if `tests/oracle/node_modules` is missing the test runs
//! `npm ci --prefix tests/oracle`. Without node/npm (or if the install fails) the test fails,
//! saying why: a comparison that did not run is not a pass. `KEYCARD_SIM_SEED` (decimal) changes the
//! seed; `KEYCARD_SIM_DUMP=1` prints every disagreement with its class.

use keycard_policy::cli::evaluate_json;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

// ---------------------------------------------------------------------------------------------
// Seeded generator
// ---------------------------------------------------------------------------------------------

/// splitmix64: small, seeded, reproducible (same as tests/differential_iam_rs.rs).
mod common;
use common::Rng;

const ACCT_A: &str = "111111111111";
const ACCT_B: &str = "222222222222";
const ALICE: &str = "arn:aws:iam::111111111111:user/alice";
const BOB: &str = "arn:aws:iam::222222222222:user/bob";
const SESSION: &str = "arn:aws:sts::111111111111:assumed-role/R/s1";
const ROLE: &str = "arn:aws:iam::111111111111:role/R";
const ROOT_A: &str = "arn:aws:iam::111111111111:root";
const SERVICE: &str = "sns.amazonaws.com";
const TRUST_ROLE: &str = "arn:aws:iam::111111111111:role/T";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Who {
    Alice,
    Session,
    Bob,
    Root,
    Service,
    Anonymous,
}

impl Who {
    fn arn(self) -> &'static str {
        match self {
            Who::Alice => ALICE,
            Who::Session => SESSION,
            Who::Bob => BOB,
            Who::Root => ROOT_A,
            Who::Service => SERVICE,
            Who::Anonymous => "anonymous",
        }
    }
    fn identity_side(self) -> bool {
        matches!(self, Who::Alice | Who::Session | Who::Bob | Who::Root)
    }
}

/// (action, resource, resource account) of the requests; `None` = the principal's account.
const REQUESTS: &[(&str, &str, Option<&str>)] = &[
    ("s3:GetObject", "arn:aws:s3:::b/k", Some(ACCT_A)),
    ("s3:GetObject", "arn:aws:s3:::b/alice/doc", Some(ACCT_A)),
    ("s3:PutObject", "arn:aws:s3:::b/bob/doc", Some(ACCT_A)),
    ("s3:PutObject", "arn:aws:s3:::b/k", Some(ACCT_A)),
    ("s3:GetObject", "arn:aws:s3:::c/k", Some(ACCT_B)),
    ("s3:ListBucket", "arn:aws:s3:::b", Some(ACCT_A)),
    ("s3:ListBucket", "arn:aws:s3:::c", Some(ACCT_B)),
    (
        "sqs:SendMessage",
        "arn:aws:sqs:us-east-1:111111111111:q1",
        Some(ACCT_A),
    ),
    (
        "sqs:ReceiveMessage",
        "arn:aws:sqs:us-east-1:222222222222:q2",
        Some(ACCT_B),
    ),
    (
        "dynamodb:GetItem",
        "arn:aws:dynamodb:us-east-1:111111111111:table/t",
        Some(ACCT_A),
    ),
    ("ec2:DescribeInstances", "*", None),
    (
        "iam:GetUser",
        "arn:aws:iam::111111111111:user/alice",
        Some(ACCT_A),
    ),
    (
        "iam:GetUser",
        "arn:aws:iam::111111111111:user/bob",
        Some(ACCT_A),
    ),
];

const ACTIONS: &[&str] = &[
    "s3:GetObject",
    "s3:PutObject",
    "s3:*",
    "s3:Get*",
    "s3:?etObject",
    "S3:getobject",
    "s3:List*",
    "sqs:*",
    "sqs:SendMessage",
    "dynamodb:GetItem",
    "dynamodb:*",
    "ec2:Describe*",
    "ec2:DescribeInstances",
    "*",
    "iam:GetUser",
    "iam:*User",
    "sts:AssumeRole",
    "sts:*",
];

const TRUST_ACTIONS: &[&str] = &["sts:AssumeRole", "sts:*", "sts:Assume*", "sts:TagSession"];

const RESOURCES: &[&str] = &[
    "*",
    "*",
    "arn:aws:s3:::b/*",
    "arn:aws:s3:::b/k",
    "arn:aws:s3:::b",
    "arn:aws:s3:::*/k",
    "arn:aws:s3:::b/?",
    "arn:aws:s3:::c/*",
    "arn:aws:s3:::c",
    "arn:aws:s3:::b/${aws:username}/*",
    "arn:aws:s3:::b/${aws:PrincipalTag/team, 'alice'}/*",
    "arn:aws:sqs:*:111111111111:*",
    "arn:aws:sqs:us-east-1:*:q?",
    "arn:aws:dynamodb:us-east-1:111111111111:table/*",
    "arn:aws:iam::111111111111:user/${aws:username}",
    "arn:aws:iam::111111111111:user/*",
    "arn:aws:iam::111111111111:role/T",
    "arn:aws:ec2:*:*:instance/*",
];

fn principal_element(r: &mut Rng) -> Value {
    const AWS: &[&str] = &[
        ACCT_A,
        ROOT_A,
        ALICE,
        BOB,
        ROLE,
        SESSION,
        ACCT_B,
        "arn:aws:iam::222222222222:root",
    ];
    match r.weighted(&[10, 5, 70, 8, 7]) {
        0 => json!("*"),
        1 => json!({"AWS": "*"}),
        2 => {
            let n = 1 + r.below(2);
            let v: Vec<&str> = (0..n).map(|_| *r.pick(AWS)).collect();
            if n == 1 && r.chance(50) {
                json!({ "AWS": v[0] })
            } else {
                json!({ "AWS": v })
            }
        }
        3 => json!({"Service": SERVICE}),
        _ => json!({"AWS": r.pick(AWS), "Service": SERVICE}),
    }
}

/// (operator, key, policy values).
fn conditions() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        ("StringEquals", "aws:PrincipalTag/team", json!("red")),
        (
            "StringEquals",
            "aws:PrincipalTag/team",
            json!(["red", "blue"]),
        ),
        ("StringNotEquals", "aws:PrincipalTag/team", json!("red")),
        (
            "StringEqualsIgnoreCase",
            "aws:PrincipalTag/team",
            json!("RED"),
        ),
        (
            "StringNotEqualsIgnoreCase",
            "aws:PrincipalTag/team",
            json!("RED"),
        ),
        ("StringLike", "aws:PrincipalTag/team", json!("r*")),
        (
            "StringNotLike",
            "aws:PrincipalTag/team",
            json!(["b*", "?ed"]),
        ),
        (
            "StringEqualsIfExists",
            "aws:PrincipalTag/team",
            json!("red"),
        ),
        (
            "StringNotEqualsIfExists",
            "aws:PrincipalTag/team",
            json!("blue"),
        ),
        (
            "StringLike",
            "aws:PrincipalTag/team",
            json!("${aws:username}*"),
        ),
        (
            "StringEquals",
            "aws:PrincipalTag/team",
            json!("${aws:PrincipalTag/other, 'red'}"),
        ),
        ("StringEquals", "aws:PrincipalAccount", json!(ACCT_A)),
        ("StringNotEquals", "aws:PrincipalAccount", json!(ACCT_A)),
        ("StringEquals", "aws:PrincipalType", json!("AssumedRole")),
        ("StringEquals", "aws:username", json!("alice")),
        ("NumericLessThan", "aws:MultiFactorAuthAge", json!("3600")),
        (
            "NumericLessThanEquals",
            "aws:MultiFactorAuthAge",
            json!(3600),
        ),
        ("NumericGreaterThan", "aws:MultiFactorAuthAge", json!("300")),
        (
            "NumericGreaterThanEquals",
            "aws:MultiFactorAuthAge",
            json!("30"),
        ),
        (
            "NumericEquals",
            "aws:MultiFactorAuthAge",
            json!(["30", "7200"]),
        ),
        ("NumericNotEquals", "aws:MultiFactorAuthAge", json!("30")),
        (
            "NumericLessThanIfExists",
            "aws:MultiFactorAuthAge",
            json!("100"),
        ),
        (
            "DateGreaterThan",
            "aws:CurrentTime",
            json!("2020-01-01T00:00:00Z"),
        ),
        (
            "DateLessThan",
            "aws:CurrentTime",
            json!("2030-01-01T00:00:00Z"),
        ),
        (
            "DateLessThanEquals",
            "aws:CurrentTime",
            json!("2025-06-01T00:00:00Z"),
        ),
        (
            "DateGreaterThanEquals",
            "aws:CurrentTime",
            json!("2025-06-01"),
        ),
        (
            "DateEquals",
            "aws:TokenIssueTime",
            json!("2025-06-01T00:00:00Z"),
        ),
        (
            "DateNotEquals",
            "aws:TokenIssueTime",
            json!("2025-06-01T00:00:00Z"),
        ),
        (
            "DateGreaterThanIfExists",
            "aws:TokenIssueTime",
            json!("2025-01-01T00:00:00Z"),
        ),
        ("Bool", "aws:SecureTransport", json!("true")),
        ("Bool", "aws:SecureTransport", json!("false")),
        ("BoolIfExists", "aws:MultiFactorAuthPresent", json!("false")),
        ("Bool", "aws:MultiFactorAuthPresent", json!(true)),
        ("IpAddress", "aws:SourceIp", json!("10.0.0.0/8")),
        (
            "IpAddress",
            "aws:SourceIp",
            json!(["192.0.2.0/24", "2001:db8::/32"]),
        ),
        ("NotIpAddress", "aws:SourceIp", json!("10.0.0.0/8")),
        ("IpAddressIfExists", "aws:SourceIp", json!("203.0.113.5")),
        (
            "ArnLike",
            "aws:SourceArn",
            json!("arn:aws:sns:*:111111111111:*"),
        ),
        (
            "ArnEquals",
            "aws:SourceArn",
            json!("arn:aws:sns:us-east-1:111111111111:t"),
        ),
        (
            "ArnNotLike",
            "aws:SourceArn",
            json!("arn:aws:sns:*:222222222222:*"),
        ),
        (
            "ArnNotEquals",
            "aws:SourceArn",
            json!("arn:aws:sns:us-east-1:111111111111:t"),
        ),
        (
            "ArnLike",
            "aws:PrincipalArn",
            json!("arn:aws:iam::111111111111:*"),
        ),
        ("ArnEquals", "aws:PrincipalArn", json!(ROLE)),
        ("Null", "aws:TokenIssueTime", json!("true")),
        ("Null", "aws:TokenIssueTime", json!("false")),
        ("Null", "aws:PrincipalTag/team", json!("false")),
        (
            "ForAnyValue:StringEquals",
            "aws:TagKeys",
            json!(["env", "cost"]),
        ),
        (
            "ForAllValues:StringEquals",
            "aws:TagKeys",
            json!(["env", "cost"]),
        ),
        ("ForAllValues:StringLike", "aws:TagKeys", json!("e*")),
        ("ForAnyValue:StringNotEquals", "aws:TagKeys", json!("env")),
        (
            "ForAllValues:StringNotEquals",
            "aws:TagKeys",
            json!("owner"),
        ),
        (
            "ForAnyValue:StringLike",
            "aws:CalledVia",
            json!("*.amazonaws.com"),
        ),
        ("StringEquals", "aws:TagKeys", json!("env")),
        ("StringNotEquals", "aws:TagKeys", json!(["env", "cost"])),
        (
            "StringNotEquals",
            "aws:PrincipalTag/team",
            json!("${aws:username}"),
        ),
        (
            "StringNotLike",
            "aws:PrincipalTag/team",
            json!(["${aws:PrincipalTag/other}", "x*"]),
        ),
        ("StringEquals", "AWS:principaltag/TEAM", json!("red")),
        (
            "ArnLike",
            "aws:SourceArn",
            json!("arn:aws:sns:*:${aws:PrincipalAccount}:*"),
        ),
        ("DateLessThan", "aws:EpochTime", json!("1735689600")),
        (
            "DateGreaterThan",
            "aws:EpochTime",
            json!("2024-01-01T00:00:00Z"),
        ),
        ("DateLessThan", "aws:CurrentTime", json!("1735689600")),
        ("NumericLessThan", "aws:MultiFactorAuthAge", json!("3.6e3")),
        ("BinaryEquals", "aws:PrincipalTag/team", json!("cmVk")),
        ("StringLikeIfExists", "aws:SourceVpc", json!("vpc-1*")),
        ("Null", "aws:SourceVpc", json!("true")),
        ("StringEqualsIgnoreCase", "aws:SourceVpc", json!("VPC-111")),
    ]
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Identity,
    Resource,
    Trust,
    Boundary,
    Session,
    Scp,
}

/// Action and resource patterns that match the request (so that cases exercise the decision
/// logic rather than only implicit denies).
struct Target {
    actions: Vec<String>,
    resources: Vec<String>,
}

fn target_for(action: &str, resource: &str) -> Target {
    let (svc, name) = action.split_once(':').unwrap_or((action, ""));
    let mut actions = vec![
        action.to_string(),
        format!("{svc}:*"),
        action.to_lowercase(),
        action.to_uppercase(),
        format!("{svc}:{}*", &name[..name.len().min(3)]),
        format!("{svc}:*{}", &name[name.len().saturating_sub(4)..]),
        format!("{svc}:?{}", &name[1.min(name.len())..]),
    ];
    actions.dedup();
    let mut resources = vec!["*".to_string()];
    let parts: Vec<&str> = resource.splitn(6, ':').collect();
    if let [_, _, _, _, _, res] = parts[..]
        && !res.is_empty()
    {
        let head = &resource[..resource.len() - res.len()];
        resources.push(resource.to_string());
        resources.push(format!("{head}*"));
        if let Some((dir, _)) = res.rsplit_once('/') {
            resources.push(format!("{head}{dir}/*"));
        }
        resources.push(format!("{head}{}?", &res[..res.len() - 1]));
        resources.push(format!("{head}{}*", &res[..res.len().div_ceil(2)]));
        // Region and account wildcards (empty for S3 and IAM ARNs).
        if !parts[3].is_empty() {
            resources.push(format!("arn:aws:{}:*:{}:{res}", parts[2], parts[4]));
        }
        if !parts[4].is_empty() {
            resources.push(format!("arn:aws:{}:{}:*:{res}", parts[2], parts[3]));
        }
    }
    Target { actions, resources }
}

fn gen_statement(r: &mut Rng, kind: Kind, conds: &[(&str, &str, Value)], target: &Target) -> Value {
    let mut st = Map::new();
    let deny_pct = if kind == Kind::Scp { 25 } else { 20 };
    let mut effect = if r.chance(deny_pct) { "Deny" } else { "Allow" };
    if matches!(kind, Kind::Resource | Kind::Trust) {
        // NotPrincipal is not allowed in trust policies; AWS supports it only with Deny
        // (keycard still accepts Allow, so a few are generated).
        if kind == Kind::Resource && r.chance(12) {
            effect = if r.chance(80) { "Deny" } else { "Allow" };
            st.insert("NotPrincipal".into(), principal_element(r));
        } else {
            st.insert("Principal".into(), principal_element(r));
        }
    }
    st.insert("Effect".into(), json!(effect));
    let pool = if kind == Kind::Trust {
        TRUST_ACTIONS
    } else {
        ACTIONS
    };
    let acts: Vec<&str> = (0..1 + r.below(2))
        .map(|_| {
            if kind != Kind::Trust && r.chance(45) {
                r.pick(&target.actions).as_str()
            } else {
                *r.pick(pool)
            }
        })
        .collect();
    let acts = if acts.len() == 1 && r.chance(50) {
        json!(acts[0])
    } else {
        json!(acts)
    };
    if kind != Kind::Trust && r.chance(12) {
        st.insert("NotAction".into(), acts);
    } else {
        st.insert("Action".into(), acts);
    }
    if kind != Kind::Trust {
        let ress: Vec<&str> = (0..1 + r.below(2))
            .map(|_| {
                if r.chance(45) {
                    r.pick(&target.resources).as_str()
                } else {
                    *r.pick(RESOURCES)
                }
            })
            .collect();
        if r.chance(12) {
            st.insert("NotResource".into(), json!(ress));
        } else {
            st.insert("Resource".into(), json!(ress));
        }
    }
    if r.chance(45) {
        let mut block = Map::new();
        for _ in 0..1 + r.below(2) {
            let (op, key, vals) = r.pick(conds).clone();
            let entry = block.entry(op.to_string()).or_insert_with(|| json!({}));
            if let Some(o) = entry.as_object_mut() {
                o.insert(key.to_string(), vals);
            }
        }
        st.insert("Condition".into(), Value::Object(block));
    }
    Value::Object(st)
}

fn gen_policy(r: &mut Rng, kind: Kind, conds: &[(&str, &str, Value)], target: &Target) -> Value {
    let n = 1 + r.weighted(&[50, 35, 15]);
    let stmts: Vec<Value> = (0..n)
        .map(|j| {
            let mut st = gen_statement(r, kind, conds, target);
            if r.chance(10) {
                st["Sid"] = json!(format!("S{j}"));
            }
            st
        })
        .collect();
    let mut doc = Map::new();
    match r.weighted(&[88, 7, 5]) {
        0 => {
            doc.insert("Version".into(), json!("2012-10-17"));
        }
        1 => {
            doc.insert("Version".into(), json!("2008-10-17"));
        }
        _ => {}
    }
    if stmts.len() == 1 && r.chance(30) {
        doc.insert("Statement".into(), stmts[0].clone());
    } else {
        doc.insert("Statement".into(), json!(stmts));
    }
    Value::Object(doc)
}

fn allow_all() -> Value {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
}

fn gen_context(r: &mut Rng, who: Who) -> Map<String, Value> {
    let mut ctx = Map::new();
    // Keys AWS derives from the principal (keycard derives them too when absent).
    if who.identity_side() && r.chance(92) {
        let (arn, ty) = match who {
            Who::Alice => (ALICE, "User"),
            Who::Bob => (BOB, "User"),
            Who::Session => (ROLE, "AssumedRole"),
            _ => (ROOT_A, "Account"),
        };
        ctx.insert("aws:PrincipalArn".into(), json!(arn));
        ctx.insert(
            "aws:PrincipalAccount".into(),
            json!(if who == Who::Bob { ACCT_B } else { ACCT_A }),
        );
        ctx.insert("aws:PrincipalType".into(), json!(ty));
        match who {
            Who::Alice => {
                ctx.insert("aws:username".into(), json!("alice"));
            }
            Who::Bob => {
                ctx.insert("aws:username".into(), json!("bob"));
            }
            _ => {}
        }
    }
    let options: &[(&str, &[&str])] = &[
        ("aws:PrincipalTag/team", &["red", "blue", "Red", "alice"]),
        ("aws:PrincipalTag/other", &["red", "blue"]),
        ("aws:MultiFactorAuthAge", &["30", "3600", "7200"]),
        ("aws:SecureTransport", &["true", "false"]),
        ("aws:MultiFactorAuthPresent", &["true", "false"]),
        (
            "aws:SourceIp",
            &["10.1.2.3", "192.0.2.9", "2001:db8::1", "203.0.113.5"],
        ),
        (
            "aws:CurrentTime",
            &[
                "2019-06-01T00:00:00Z",
                "2025-06-01T00:00:00Z",
                "2031-01-01T00:00:00Z",
            ],
        ),
        (
            "aws:TokenIssueTime",
            &["2025-06-01T00:00:00Z", "2024-12-31T23:59:59Z"],
        ),
        ("aws:EpochTime", &["1700000000", "1740000000"]),
        ("aws:SourceVpc", &["vpc-111", "vpc-222"]),
        (
            "aws:SourceArn",
            &[
                "arn:aws:sns:us-east-1:111111111111:t",
                "arn:aws:sns:us-east-1:222222222222:t",
            ],
        ),
    ];
    for (k, vals) in options {
        if r.chance(45) {
            ctx.insert((*k).into(), json!(r.pick(vals)));
        }
    }
    let multi: &[(&str, &[&str])] = &[
        ("aws:TagKeys", &["env", "cost", "owner"]),
        (
            "aws:CalledVia",
            &["athena.amazonaws.com", "cloudformation.amazonaws.com"],
        ),
    ];
    for (k, vals) in multi {
        if r.chance(40) {
            let n = r.below(3);
            let v: Vec<&str> = (0..n).map(|_| *r.pick(vals)).collect();
            ctx.insert((*k).into(), json!(v));
        }
    }
    ctx
}

fn gen_case(r: &mut Rng) -> Value {
    let conds = conditions();
    let who = [
        Who::Alice,
        Who::Session,
        Who::Bob,
        Who::Root,
        Who::Service,
        Who::Anonymous,
    ][r.weighted(&[34, 30, 20, 5, 5, 6])];
    let mut case = Map::new();
    case.insert("principal".into(), json!(who.arn()));
    let trust_case = who.identity_side() && r.chance(10);
    let (action, resource, account) = if trust_case {
        ("sts:AssumeRole", TRUST_ROLE, Some(ACCT_A))
    } else {
        *r.pick(REQUESTS)
    };
    let target = target_for(action, resource);
    case.insert("action".into(), json!(action));
    case.insert("resource".into(), json!(resource));
    let account = account.unwrap_or(match who {
        Who::Bob => ACCT_B,
        _ => ACCT_A,
    });
    case.insert("resourceAccount".into(), json!(account));
    let ctx = gen_context(r, who);
    if !ctx.is_empty() {
        case.insert("context".into(), Value::Object(ctx));
    }
    if who.identity_side() {
        let n = r.weighted(&[10, 50, 30, 10]);
        let ids: Vec<Value> = (0..n)
            .map(|_| gen_policy(r, Kind::Identity, &conds, &target))
            .collect();
        if !ids.is_empty() {
            case.insert("identityPolicies".into(), json!(ids));
        }
        if who != Who::Root && r.chance(20) {
            case.insert(
                "permissionsBoundary".into(),
                gen_policy(r, Kind::Boundary, &conds, &target),
            );
        }
        if who == Who::Session && r.chance(30) {
            case.insert(
                "sessionPolicy".into(),
                gen_policy(r, Kind::Session, &conds, &target),
            );
        }
    }
    if trust_case {
        case.insert(
            "trustPolicy".into(),
            gen_policy(r, Kind::Trust, &conds, &target),
        );
    } else if !who.identity_side() || r.chance(50) {
        case.insert(
            "resourcePolicy".into(),
            gen_policy(r, Kind::Resource, &conds, &target),
        );
    }
    let scp_pct = if who.identity_side() { 25 } else { 10 };
    if who != Who::Anonymous && r.chance(scp_pct) {
        let levels: Vec<Value> = (0..1 + r.below(3))
            .map(|_| {
                let mut level = Vec::new();
                level.push(if r.chance(70) {
                    allow_all()
                } else {
                    gen_policy(r, Kind::Scp, &conds, &target)
                });
                if r.chance(40) {
                    level.push(gen_policy(r, Kind::Scp, &conds, &target));
                }
                json!(level)
            })
            .collect();
        case.insert("serviceControlPolicies".into(), json!(levels));
    }
    Value::Object(case)
}

// ---------------------------------------------------------------------------------------------
// The two engines
// ---------------------------------------------------------------------------------------------

/// A decision in a common vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum D {
    Allow,
    ExplicitDeny,
    ImplicitDeny,
}

fn keycard(case: &Value) -> D {
    let out = evaluate_json(&case.to_string())
        .unwrap_or_else(|e| panic!("keycard rejected a generated case: {e}\n{case}"));
    let v: Value = serde_json::from_str(&out).expect("keycard output is JSON");
    match v["decision"].as_str() {
        Some("Allow") => D::Allow,
        Some("ExplicitDeny") => D::ExplicitDeny,
        Some("ImplicitDeny") => D::ImplicitDeny,
        other => panic!("unexpected keycard decision {other:?}"),
    }
}

/// iam-simulate's answer for one case: a decision, or why it has none.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Oracle {
    Decision(D),
    /// iam-simulate rejected the input (validation error message).
    Rejected(String),
}

fn oracle_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle")
}

fn pinned_version(dir: &Path) -> Option<String> {
    let pkg: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("package.json")).ok()?).ok()?;
    pkg["dependencies"]["@cloud-copilot/iam-simulate"]
        .as_str()
        .map(str::to_string)
}

fn installed_version(dir: &Path) -> Option<String> {
    let p = dir.join("node_modules/@cloud-copilot/iam-simulate/package.json");
    let pkg: Value = serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()?;
    pkg["version"].as_str().map(str::to_string)
}

/// Make sure node and the pinned iam-simulate are available; `Err` says why not.
fn setup_oracle() -> Result<String, String> {
    let dir = oracle_dir();
    let node = Command::new("node")
        .arg("--version")
        .output()
        .map_err(|e| format!("node is not available: {e}"))?;
    if !node.status.success() {
        return Err("`node --version` failed".into());
    }
    let pinned = pinned_version(&dir).ok_or("tests/oracle/package.json has no pinned version")?;
    if installed_version(&dir).as_deref() != Some(pinned.as_str()) {
        let out = Command::new("npm")
            .args(["ci", "--prefix"])
            .arg(&dir)
            .args(["--silent", "--no-audit", "--no-fund"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("npm is not available: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "`npm ci --prefix {}` failed ({}): {}{}",
                dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    match installed_version(&dir) {
        Some(v) if v == pinned => Ok(v),
        other => Err(format!(
            "@cloud-copilot/iam-simulate {other:?} installed, {pinned} pinned"
        )),
    }
}

/// Run a batch through ONE node process.
fn oracle(cases: &[Value]) -> Vec<Oracle> {
    if cases.is_empty() {
        return Vec::new();
    }
    let dir = oracle_dir();
    let mut child = Command::new("node")
        .arg(dir.join("simulate.mjs"))
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let input = Value::Array(cases.to_vec()).to_string();
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read node stdout");
    let mut stderr = String::new();
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr);
    let status = child.wait().expect("wait for node");
    writer
        .join()
        .expect("writer thread")
        .expect("write node stdin");
    assert!(
        status.success(),
        "simulate.mjs failed ({status}):\n{stderr}"
    );
    let results: Vec<Value> = serde_json::from_str(stdout.trim()).expect("simulate.mjs output");
    assert_eq!(results.len(), cases.len(), "simulate.mjs result count");
    results
        .into_iter()
        .map(|r| {
            if let Some(e) = r["error"].as_str() {
                return Oracle::Rejected(format!("{e} {}", r["details"]));
            }
            let ignored = r["ignoredContextKeys"].as_array().map_or(0, Vec::len);
            if ignored > 0 {
                // The generator only uses keys valid for every action: a harness bug.
                return Oracle::Rejected(format!("ignoredContextKeys {}", r["ignoredContextKeys"]));
            }
            match r["result"].as_str() {
                Some("Allowed") => Oracle::Decision(D::Allow),
                Some("ExplicitlyDenied") => Oracle::Decision(D::ExplicitDeny),
                Some("ImplicitlyDenied") => Oracle::Decision(D::ImplicitDeny),
                other => Oracle::Rejected(format!("unexpected result {other:?}")),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Case surgery (used by neutralizers and the minimizer)
// ---------------------------------------------------------------------------------------------

/// JSON pointers of every policy document in a case.
fn policy_pointers(case: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in case["identityPolicies"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        out.push(format!("/identityPolicies/{i}"));
    }
    for k in [
        "resourcePolicy",
        "trustPolicy",
        "permissionsBoundary",
        "sessionPolicy",
    ] {
        if case.get(k).is_some() {
            out.push(format!("/{k}"));
        }
    }
    for (l, level) in case["serviceControlPolicies"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        for (i, _) in level.as_array().into_iter().flatten().enumerate() {
            out.push(format!("/serviceControlPolicies/{l}/{i}"));
        }
    }
    out
}

/// JSON pointers of every statement of the policy at `policy`.
fn statement_pointers(case: &Value, policy: &str) -> Vec<String> {
    match case.pointer(&format!("{policy}/Statement")) {
        Some(Value::Array(a)) => (0..a.len())
            .map(|j| format!("{policy}/Statement/{j}"))
            .collect(),
        Some(Value::Object(_)) => vec![format!("{policy}/Statement")],
        _ => Vec::new(),
    }
}

/// Remove the value at a JSON pointer (array element or object member).
fn remove_at(v: &mut Value, pointer: &str) -> bool {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return false;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    match v.pointer_mut(parent) {
        Some(Value::Array(a)) => match last.parse::<usize>() {
            Ok(i) if i < a.len() => {
                a.remove(i);
                true
            }
            _ => false,
        },
        Some(Value::Object(o)) => o.remove(&last).is_some(),
        _ => false,
    }
}

fn escape_token(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// Every policy document of a case, mutably.
fn for_each_policy(case: &mut Value, mut f: impl FnMut(&mut Value)) {
    for p in policy_pointers(case) {
        if let Some(doc) = case.pointer_mut(&p) {
            f(doc);
        }
    }
}

/// Every statement of a case, mutably, with the pointer of its policy.
fn for_each_statement(case: &mut Value, mut f: impl FnMut(&str, &mut Value)) {
    for p in policy_pointers(case) {
        for s in statement_pointers(case, &p) {
            if let Some(st) = case.pointer_mut(&s) {
                f(&p, st);
            }
        }
    }
}

/// Values of a string-or-array element.
fn strings(v: Option<&Value>) -> Vec<&str> {
    match v {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// One-step reductions of a case, for the minimizer.
fn reductions(case: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    let mut push_removed = |ptr: &str| {
        let mut c = case.clone();
        if remove_at(&mut c, ptr) {
            out.push(c);
        }
    };
    for p in policy_pointers(case) {
        push_removed(&p);
    }
    for (l, _) in case["serviceControlPolicies"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        push_removed(&format!("/serviceControlPolicies/{l}"));
    }
    for p in policy_pointers(case) {
        let stmts = statement_pointers(case, &p);
        if stmts.len() > 1 {
            for s in &stmts {
                push_removed(s);
            }
        }
        for s in &stmts {
            let Some(st) = case.pointer(s) else { continue };
            if st.get("Condition").is_some() {
                push_removed(&format!("{s}/Condition"));
            }
            for (op, keys) in st["Condition"].as_object().into_iter().flatten() {
                push_removed(&format!("{s}/Condition/{}", escape_token(op)));
                for k in keys.as_object().into_iter().flatten().map(|(k, _)| k) {
                    push_removed(&format!(
                        "{s}/Condition/{}/{}",
                        escape_token(op),
                        escape_token(k)
                    ));
                }
            }
            for elem in ["Action", "NotAction", "Resource", "NotResource"] {
                if let Some(Value::Array(a)) = st.get(elem)
                    && a.len() > 1
                {
                    for j in 0..a.len() {
                        push_removed(&format!("{s}/{elem}/{j}"));
                    }
                }
            }
            for elem in ["Principal", "NotPrincipal"] {
                if let Some(Value::Object(o)) = st.get(elem) {
                    for (k, v) in o {
                        if o.len() > 1 {
                            push_removed(&format!("{s}/{elem}/{k}"));
                        }
                        if let Value::Array(a) = v
                            && a.len() > 1
                        {
                            for j in 0..a.len() {
                                push_removed(&format!("{s}/{elem}/{k}/{j}"));
                            }
                        }
                    }
                }
            }
        }
    }
    for k in case["context"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
    {
        push_removed(&format!("/context/{}", escape_token(k)));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Known divergence classes
// ---------------------------------------------------------------------------------------------

/// A known way in which iam-simulate and keycard differ. `applies` says the case has the
/// feature; `neutralize` returns the case with the feature taken out (or made explicit) so
/// that both engines should agree. docs/policy.md has the AWS documentation for each.
struct Class {
    name: &'static str,
    /// Who is right, per which AWS document.
    decided_by: &'static str,
    applies: fn(&Value) -> bool,
    neutralize: fn(&Value) -> Value,
}

fn principal_of(case: &Value) -> &str {
    case["principal"].as_str().unwrap_or("")
}

/// Every identity AWS checks for the caller, normalized (accounts as 12-digit ids).
fn caller_identities(case: &Value) -> Vec<&'static str> {
    match principal_of(case) {
        ALICE => vec![ALICE, ACCT_A],
        BOB => vec![BOB, ACCT_B],
        SESSION => vec![SESSION, ROLE, ACCT_A],
        ROOT_A => vec![ACCT_A],
        SERVICE => vec![SERVICE],
        _ => Vec::new(),
    }
}

/// The entries of a Principal / NotPrincipal element, accounts normalized to ids.
fn principal_entries(p: &Value) -> Vec<String> {
    let norm = |s: &str| -> String {
        match s
            .strip_prefix("arn:aws:iam::")
            .and_then(|r| r.strip_suffix(":root"))
        {
            Some(acct) => acct.to_string(),
            None => s.to_string(),
        }
    };
    match p {
        Value::String(s) => vec![s.clone()],
        Value::Object(o) => o
            .values()
            .flat_map(|v| strings(Some(v)))
            .map(norm)
            .collect(),
        _ => Vec::new(),
    }
}

/// The resource-side policy: the trust policy when there is one, else the resource policy.
fn resource_side(case: &Value) -> Option<&'static str> {
    if case.get("trustPolicy").is_some() {
        Some("/trustPolicy")
    } else if case.get("resourcePolicy").is_some() {
        Some("/resourcePolicy")
    } else {
        None
    }
}

fn statements_of<'a>(case: &'a Value, policy: &str) -> Vec<&'a Value> {
    statement_pointers(case, policy)
        .iter()
        .filter_map(|s| case.pointer(s))
        .collect()
}

/// NotPrincipal lists at least one, but not every, identity of the caller.
fn partial_not_principal(case: &Value, st: &Value) -> bool {
    let Some(np) = st.get("NotPrincipal") else {
        return false;
    };
    let listed = principal_entries(np);
    let ids = caller_identities(case);
    ids.iter().any(|i| listed.iter().any(|l| l == i))
        && !ids.iter().all(|i| listed.iter().any(|l| l == i))
}

/// Append a statement to a policy document (turning a single statement into an array).
fn add_statement(doc: &mut Value, st: Value) {
    let stmts = match doc.get_mut("Statement") {
        Some(Value::Array(a)) => a,
        Some(other) => {
            let one = other.take();
            *other = json!([one]);
            other.as_array_mut().expect("array")
        }
        None => return,
    };
    stmts.push(st);
}

/// Keys AWS puts in every signed request's context, as keycard derives them from the caller.
fn derived_principal_keys(case: &Value) -> Vec<(&'static str, &'static str)> {
    let mut keys = match principal_of(case) {
        ALICE => vec![
            ("aws:PrincipalArn", ALICE),
            ("aws:PrincipalAccount", ACCT_A),
            ("aws:PrincipalType", "User"),
            ("aws:username", "alice"),
        ],
        BOB => vec![
            ("aws:PrincipalArn", BOB),
            ("aws:PrincipalAccount", ACCT_B),
            ("aws:PrincipalType", "User"),
            ("aws:username", "bob"),
        ],
        SESSION => vec![
            ("aws:PrincipalArn", ROLE),
            ("aws:PrincipalAccount", ACCT_A),
            ("aws:PrincipalType", "AssumedRole"),
        ],
        ROOT_A => vec![
            ("aws:PrincipalArn", ROOT_A),
            ("aws:PrincipalAccount", ACCT_A),
            ("aws:PrincipalType", "Account"),
        ],
        _ => Vec::new(),
    };
    keys.retain(|(k, _)| {
        !case["context"]
            .as_object()
            .is_some_and(|o| o.keys().any(|ck| ck.eq_ignore_ascii_case(k)))
    });
    keys
}

fn is_2012(doc: &Value) -> bool {
    doc["Version"] == "2012-10-17"
}

/// Policy variables `${key}` (without a default) in a string, keys as written.
fn variables_without_default(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(pos) = rest.find("${") {
        let after = &rest[pos + 2..];
        let Some(end) = after.find('}') else { break };
        let inner = &after[..end];
        if !inner.contains(',') && !matches!(inner, "*" | "?" | "$") {
            out.push(inner);
        }
        rest = &after[end + 1..];
    }
    out
}

/// A NotResource entry of a 2012-10-17 policy uses a variable the request has no value for.
fn unresolved_not_resource(case: &Value) -> bool {
    let ctx_has = |k: &str| {
        case["context"]
            .as_object()
            .is_some_and(|o| o.keys().any(|ck| ck.eq_ignore_ascii_case(k)))
            || (k.eq_ignore_ascii_case("aws:username") && matches!(principal_of(case), ALICE | BOB))
    };
    policy_pointers(case).iter().any(|p| {
        case.pointer(p).is_some_and(is_2012)
            && statements_of(case, p).iter().any(|st| {
                strings(st.get("NotResource"))
                    .iter()
                    .any(|r| variables_without_default(r).iter().any(|k| !ctx_has(k)))
            })
    })
}

/// Keys of the context given as JSON arrays (multivalued in the request).
fn array_keys(case: &Value) -> Vec<String> {
    case["context"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, v)| v.is_array())
        .map(|(k, _)| k.to_lowercase())
        .collect()
}

/// Operator names of a Condition block that have no set qualifier and use a key the request
/// has as an array.
fn unqualified_on_multivalued(case: &Value, st: &Value) -> bool {
    let arrays = array_keys(case);
    st["Condition"]
        .as_object()
        .into_iter()
        .flatten()
        .any(|(op, keys)| {
            !op.contains(':')
                && !op.eq_ignore_ascii_case("Null")
                && keys
                    .as_object()
                    .into_iter()
                    .flatten()
                    .any(|(k, _)| arrays.contains(&k.to_lowercase()))
        })
}

const DATE_KEYS: &[&str] = &["aws:currenttime", "aws:epochtime", "aws:tokenissuetime"];

fn is_epoch(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Epoch seconds -> ISO 8601 (UTC), for the date neutralizer.
fn epoch_to_iso(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Date conditions of the case mix epoch seconds and ISO 8601 (policy vs request values).
fn mixed_date_formats(case: &Value) -> bool {
    let ctx = case["context"].as_object();
    policy_pointers(case).iter().any(|p| {
        statements_of(case, p).iter().any(|st| {
            st["Condition"]
                .as_object()
                .into_iter()
                .flatten()
                .any(|(op, keys)| {
                    op.to_lowercase().contains("date")
                        && keys.as_object().into_iter().flatten().any(|(k, vals)| {
                            let req = ctx.and_then(|o| {
                                o.iter()
                                    .find(|(ck, _)| ck.eq_ignore_ascii_case(k))
                                    .and_then(|(_, v)| v.as_str())
                            });
                            let Some(req) = req else { return false };
                            strings(Some(vals))
                                .iter()
                                .any(|v| is_epoch(v) != is_epoch(req))
                        })
                })
        })
    })
}

/// The single value keycard substitutes for `${key}` (context first, then derived keys).
fn variable_value(case: &Value, key: &str) -> Option<String> {
    let from_ctx = case["context"].as_object().and_then(|o| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str().map(str::to_string))
    });
    match from_ctx {
        Some(v) => v,
        None => derived_principal_keys(case)
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.to_string()),
    }
}

/// An Arn* condition value of a 2012-10-17 policy contains `${…:…}`.
fn arn_condition_with_variable(case: &Value) -> bool {
    policy_pointers(case).iter().any(|p| {
        case.pointer(p).is_some_and(is_2012)
            && statements_of(case, p).iter().any(|st| {
                st["Condition"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .any(|(op, keys)| {
                        op.to_lowercase().contains("arn")
                            && keys.as_object().into_iter().flatten().any(|(_, vals)| {
                                strings(Some(vals)).iter().any(|v| {
                                    variables_without_default(v).iter().any(|k| k.contains(':'))
                                })
                            })
                    })
            })
    })
}

const CLASSES: &[Class] = &[
    Class {
        name: "root user has every identity-side permission",
        decided_by: "keycard: AWS Account Management Reference Guide, AWS account root user \
                     (\"complete access to all AWS services and resources\"); it has no identity \
                     policies, only SCPs, explicit denies and (cross-account) the resource policy \
                     limit it",
        applies: |c| principal_of(c) == ROOT_A,
        neutralize: |c| {
            // Give iam-simulate the identity-side allow that the root user has implicitly.
            let mut c = c.clone();
            let ids = c
                .as_object_mut()
                .expect("case object")
                .entry("identityPolicies")
                .or_insert_with(|| json!([]));
            if let Some(a) = ids.as_array_mut() {
                a.push(allow_all());
            }
            c
        },
    },
    Class {
        name: "NotPrincipal lists some but not all identities of the caller",
        decided_by: "keycard: IAM User Guide, NotPrincipal: \"you must also specify the account \
                     ARN of the not-denied principal ... AWS might validate the account first, \
                     then the role, and then the assumed-role user\"; iam-simulate exempts the \
                     caller as soon as one identity is listed",
        applies: |c| {
            resource_side(c).is_some_and(|p| {
                statements_of(c, p)
                    .iter()
                    .any(|st| partial_not_principal(c, st))
            })
        },
        neutralize: |c| {
            // List every identity of the caller, so that both readings exempt it.
            let ids = caller_identities(c);
            let mut out = c.clone();
            for_each_statement(&mut out, |_, st| {
                if partial_not_principal(c, st) {
                    let mut listed: Vec<String> = strings(st["NotPrincipal"].get("AWS"))
                        .iter()
                        .map(|s| s.to_string())
                        .collect();
                    listed.extend(ids.iter().map(|s| s.to_string()));
                    st["NotPrincipal"]["AWS"] = json!(listed);
                }
            });
            out
        },
    },
    Class {
        name: "resource-side allow naming the session is not limited by the session policy",
        decided_by: "keycard: IAM User Guide, Session policies: \"A resource-based policy can \
                     specify the ARN of the session as a principal ... The resource-based policy \
                     permissions are not limited by the session policy\"; iam-simulate applies \
                     the session policy's implicit deny to every grant",
        applies: |c| {
            principal_of(c) == SESSION
                && c.get("sessionPolicy").is_some()
                && resource_side(c).is_some_and(|p| {
                    statements_of(c, p).iter().any(|st| {
                        st["Effect"] == "Allow"
                            && (st.get("NotPrincipal").is_some()
                                || st.get("Principal").is_some_and(|pr| {
                                    principal_entries(pr)
                                        .iter()
                                        .any(|e| e == "*" || e == SESSION)
                                }))
                    })
                })
        },
        neutralize: |c| {
            // Make the session policy allow the request, keeping its denies.
            let mut c = c.clone();
            if let Some(doc) = c.get_mut("sessionPolicy") {
                add_statement(
                    doc,
                    json!({"Effect": "Allow", "Action": "*", "Resource": "*"}),
                );
            }
            c
        },
    },
    Class {
        name: "SCPs do not apply to service principals",
        decided_by: "keycard: AWS Organizations User Guide, SCPs: \"SCPs affect only IAM users \
                     and roles that are managed by accounts that are part of the organization\"; \
                     iam-simulate applies the SCP levels to service principals too",
        applies: |c| principal_of(c) == SERVICE && c.get("serviceControlPolicies").is_some(),
        neutralize: |c| {
            let mut c = c.clone();
            if let Some(o) = c.as_object_mut() {
                o.remove("serviceControlPolicies");
            }
            c
        },
    },
    Class {
        name: "unqualified operator on a multivalued key",
        decided_by: "not decided by AWS documentation: \"Multivalued context keys require a \
                     condition set operator\" (IAM User Guide, Single-valued vs. multivalued \
                     context keys) and IAM Access Analyzer reports the missing qualifier as an \
                     error, but the runtime result is undocumented; iam-simulate never matches, \
                     keycard matches like ForAnyValue (negated: like ForAllValues)",
        applies: |c| {
            policy_pointers(c).iter().any(|p| {
                statements_of(c, p)
                    .iter()
                    .any(|st| unqualified_on_multivalued(c, st))
            })
        },
        neutralize: |c| {
            // Spell out the qualifier that reproduces keycard's reading.
            let arrays = array_keys(c);
            let mut out = c.clone();
            for_each_statement(&mut out, |_, st| {
                let Some(block) = st.get_mut("Condition").and_then(Value::as_object_mut) else {
                    return;
                };
                let ops: Vec<String> = block.keys().cloned().collect();
                for op in ops {
                    if op.contains(':') || op.eq_ignore_ascii_case("Null") {
                        continue;
                    }
                    let Some(keys) = block.get_mut(&op).and_then(Value::as_object_mut) else {
                        continue;
                    };
                    let multi: Vec<String> = keys
                        .keys()
                        .filter(|k| arrays.contains(&k.to_lowercase()))
                        .cloned()
                        .collect();
                    if multi.is_empty() {
                        continue;
                    }
                    let negated = op.to_lowercase().contains("not");
                    let qualified = format!(
                        "{}:{op}",
                        if negated {
                            "ForAllValues"
                        } else {
                            "ForAnyValue"
                        }
                    );
                    let moved: Map<String, Value> = multi
                        .iter()
                        .filter_map(|k| keys.remove(k).map(|v| (k.clone(), v)))
                        .collect();
                    if keys.is_empty() {
                        block.remove(&op);
                    }
                    let entry = block.entry(qualified).or_insert_with(|| json!({}));
                    if let Some(o) = entry.as_object_mut() {
                        o.extend(moved);
                    }
                }
            });
            out
        },
    },
    Class {
        name: "date compared across epoch seconds and ISO 8601",
        decided_by: "keycard: IAM User Guide, Date condition operators: \"You must specify \
                     date/time values with one of the W3C implementations of the ISO 8601 date \
                     formats or in epoch (UNIX) time\"; iam-simulate compares epoch seconds with \
                     ISO dates converted to milliseconds",
        applies: mixed_date_formats,
        neutralize: |c| {
            // Write every epoch value as ISO 8601 (same instant), policy and request side.
            let iso = |v: &Value| -> Value {
                match v.as_str() {
                    Some(s) if is_epoch(s) => json!(epoch_to_iso(s.parse().unwrap_or(0))),
                    _ => v.clone(),
                }
            };
            let mut out = c.clone();
            if let Some(ctx) = out.get_mut("context").and_then(Value::as_object_mut) {
                for (k, v) in ctx.iter_mut() {
                    if DATE_KEYS.contains(&k.to_lowercase().as_str()) {
                        *v = iso(v);
                    }
                }
            }
            for_each_statement(&mut out, |_, st| {
                for (op, keys) in st
                    .get_mut("Condition")
                    .and_then(Value::as_object_mut)
                    .into_iter()
                    .flatten()
                {
                    if !op.to_lowercase().contains("date") {
                        continue;
                    }
                    for (_, vals) in keys.as_object_mut().into_iter().flatten() {
                        let fixed = match &*vals {
                            Value::Array(a) => Value::Array(a.iter().map(iso).collect()),
                            other => iso(other),
                        };
                        *vals = fixed;
                    }
                }
            });
            out
        },
    },
    Class {
        name: "policy variable in an Arn* condition value",
        decided_by: "keycard: IAM User Guide, policy variables: \"You can use a policy variable \
                     for Condition values in any condition that involves the string operators or \
                     the ARN operators\"; iam-simulate splits the ARN at ':' before substituting, \
                     which cuts ${aws:PrincipalAccount} in two",
        applies: arn_condition_with_variable,
        neutralize: |c| {
            // Substitute the variables in the case itself (the value keycard would use).
            let mut out = c.clone();
            for_each_statement(&mut out, |_, st| {
                for (op, keys) in st
                    .get_mut("Condition")
                    .and_then(Value::as_object_mut)
                    .into_iter()
                    .flatten()
                {
                    if !op.to_lowercase().contains("arn") {
                        continue;
                    }
                    for (_, vals) in keys.as_object_mut().into_iter().flatten() {
                        let subst = |v: &Value| -> Value {
                            let Some(s) = v.as_str() else {
                                return v.clone();
                            };
                            let mut out = s.to_string();
                            for k in variables_without_default(s) {
                                if let Some(val) = variable_value(c, k) {
                                    out = out.replace(&format!("${{{k}}}"), &val);
                                }
                            }
                            json!(out)
                        };
                        let fixed = match &*vals {
                            Value::Array(a) => Value::Array(a.iter().map(subst).collect()),
                            other => subst(other),
                        };
                        *vals = fixed;
                    }
                }
            });
            out
        },
    },
    Class {
        name: "variables in a 2008-10-17 (or Version-less) policy",
        decided_by: "keycard: IAM User Guide, policy variables: \"Variables were introduced in \
                     version 2012-10-17. Earlier versions of the policy language don't support \
                     policy variables ... variables like ${aws:username} are treated as literal \
                     strings\"; iam-simulate substitutes them regardless of Version",
        applies: |c| {
            policy_pointers(c).iter().any(|p| {
                c.pointer(p)
                    .is_some_and(|d| !is_2012(d) && d.to_string().contains("${"))
            })
        },
        neutralize: |c| {
            let mut c = c.clone();
            for_each_policy(&mut c, |d| {
                if !is_2012(d) && d.to_string().contains("${") {
                    d["Version"] = json!("2012-10-17");
                }
            });
            c
        },
    },
    Class {
        name: "principal keys absent from the request context",
        decided_by: "keycard: IAM User Guide, global condition context keys: aws:PrincipalArn, \
                     aws:PrincipalAccount and aws:PrincipalType are \"included in the request \
                     context for all signed requests\", aws:username for IAM users; keycard \
                     derives them from the caller, iam-simulate only uses what the request lists",
        applies: |c| !derived_principal_keys(c).is_empty(),
        neutralize: |c| {
            let keys = derived_principal_keys(c);
            let mut c = c.clone();
            let ctx = c
                .as_object_mut()
                .expect("case object")
                .entry("context")
                .or_insert_with(|| json!({}));
            for (k, v) in keys {
                ctx[k] = json!(v);
            }
            c
        },
    },
    Class {
        name: "NotResource with an unresolvable variable, other ARN parts not matching",
        decided_by: "keycard: IAM User Guide, policy variables: a key that is not present \
                     means \"any attempt to match it fails and causes the statement to be \
                     invalid\"; keycard drops the statement, iam-simulate only notices the \
                     variable when the service/region/account/resource type already match",
        applies: unresolved_not_resource,
        neutralize: |c| {
            // Give the variables a default so that neither engine has an unresolved value.
            let mut c = c.clone();
            for_each_statement(&mut c, |_, st| {
                if let Some(nr) = st.get_mut("NotResource") {
                    let fix = |s: &str| -> String {
                        let mut out = s.to_string();
                        for k in variables_without_default(s) {
                            out = out.replace(&format!("${{{k}}}"), &format!("${{{k}, 'unset'}}"));
                        }
                        out
                    };
                    let fixed = match &*nr {
                        Value::String(s) => json!(fix(s)),
                        Value::Array(a) => json!(
                            a.iter()
                                .map(|v| v.as_str().map_or(v.clone(), |s| json!(fix(s))))
                                .collect::<Vec<_>>()
                        ),
                        other => other.clone(),
                    };
                    *nr = fixed;
                }
            });
            c
        },
    },
];

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

/// Features present in a case, for the coverage line of the report.
fn features(case: &Value) -> Vec<&'static str> {
    let mut f = Vec::new();
    let who = principal_of(case);
    f.push(match who {
        ALICE | BOB => "IAM user",
        SESSION => "role session",
        ROOT_A => "root user",
        SERVICE => "service principal",
        _ => "anonymous",
    });
    let own = match who {
        BOB => ACCT_B,
        _ => ACCT_A,
    };
    if matches!(who, ALICE | BOB | SESSION | ROOT_A) && case["resourceAccount"] != own {
        f.push("cross-account");
    }
    for (k, name) in [
        ("resourcePolicy", "resource policy"),
        ("trustPolicy", "trust policy"),
        ("permissionsBoundary", "permissions boundary"),
        ("sessionPolicy", "session policy"),
        ("serviceControlPolicies", "SCPs"),
    ] {
        if case.get(k).is_some() {
            f.push(name);
        }
    }
    let text = case.to_string();
    for (needle, name) in [
        ("\"NotPrincipal\"", "NotPrincipal"),
        ("\"NotAction\"", "NotAction"),
        ("\"NotResource\"", "NotResource"),
        ("${", "policy variable"),
        ("\"String", "String*"),
        ("\"Numeric", "Numeric*"),
        ("\"Date", "Date*"),
        ("\"Bool", "Bool"),
        ("\"BinaryEquals", "BinaryEquals"),
        ("IpAddress", "IpAddress/NotIpAddress"),
        ("\"Arn", "Arn*"),
        ("\"Null\"", "Null"),
        ("IfExists", "...IfExists"),
        ("ForAllValues:", "ForAllValues"),
        ("ForAnyValue:", "ForAnyValue"),
    ] {
        if text.contains(needle) {
            f.push(name);
        }
    }
    if policy_pointers(case)
        .iter()
        .any(|p| case.pointer(p).is_some_and(|d| !is_2012(d)))
    {
        f.push("2008-10-17 / no Version");
    }
    f
}

/// Evaluate many cases with both engines; `None` where iam-simulate rejected the input.
fn both(cases: &[Value]) -> Vec<(D, Option<D>)> {
    let theirs = oracle(cases);
    cases
        .iter()
        .zip(theirs)
        .map(|(c, t)| {
            (
                keycard(c),
                match t {
                    Oracle::Decision(d) => Some(d),
                    Oracle::Rejected(_) => None,
                },
            )
        })
        .collect()
}

/// Attribute each disagreeing case to a class (or a combination of classes) whose
/// neutralization makes the engines agree; `None` = unexplained.
fn classify(cases: &[&Value]) -> Vec<Option<String>> {
    let mut variants: Vec<Value> = Vec::new();
    // Per case: (label, index into variants)
    let mut plans: Vec<Vec<(String, usize)>> = Vec::new();
    for c in cases {
        let applicable: Vec<&Class> = CLASSES.iter().filter(|k| (k.applies)(c)).collect();
        let mut plan = Vec::new();
        for k in &applicable {
            plan.push((k.name.to_string(), variants.len()));
            variants.push((k.neutralize)(c));
        }
        if applicable.len() > 1 {
            let mut all = (*c).clone();
            for k in &applicable {
                all = (k.neutralize)(&all);
            }
            let label = applicable
                .iter()
                .map(|k| k.name)
                .collect::<Vec<_>>()
                .join(" + ");
            plan.push((label, variants.len()));
            variants.push(all);
        }
        plans.push(plan);
    }
    let results = both(&variants);
    plans
        .into_iter()
        .map(|plan| {
            plan.into_iter()
                .find(|(_, i)| matches!(results[*i], (a, Some(b)) if a == b))
                .map(|(label, _)| label)
        })
        .collect()
}

/// Greedy minimization of unexplained disagreements (batched: one node run per round).
fn minimize(cases: Vec<Value>) -> Vec<Value> {
    let mut cur = cases;
    let mut target: Vec<(D, Option<D>)> = both(&cur);
    let mut done = vec![false; cur.len()];
    for _round in 0..200 {
        if done.iter().all(|d| *d) {
            break;
        }
        let mut batch = Vec::new();
        let mut owner = Vec::new();
        for (i, c) in cur.iter().enumerate() {
            if done[i] {
                continue;
            }
            for r in reductions(c) {
                owner.push(i);
                batch.push(r);
            }
        }
        let results = both(&batch);
        let mut progressed = vec![false; cur.len()];
        for ((i, cand), res) in owner.into_iter().zip(batch).zip(results) {
            if progressed[i] || res != target[i] {
                continue;
            }
            cur[i] = cand;
            target[i] = res;
            progressed[i] = true;
        }
        for (i, p) in progressed.iter().enumerate() {
            if !p {
                done[i] = true;
            }
        }
    }
    cur
}

#[test]
fn differential_against_iam_simulate() {
    let version = match setup_oracle() {
        Ok(v) => v,
        // Without the oracle there is no comparison: that is a failure,
        // never a silent pass.
        Err(why) => panic!("iam-simulate oracle unavailable (node/npm needed): {why}"),
    };
    let cases: usize = std::env::var("KEYCARD_SIM_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let seed: u64 = std::env::var("KEYCARD_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x6b65_7963_6172_6421);
    let mut r = Rng(seed);
    let generated: Vec<Value> = (0..cases).map(|_| gen_case(&mut r)).collect();
    let ours: Vec<D> = generated.iter().map(keycard).collect();
    let theirs = oracle(&generated);

    let mut agree = 0usize;
    let mut rejected: BTreeMap<String, usize> = BTreeMap::new();
    let mut disagree: Vec<usize> = Vec::new();
    let mut by_outcome: BTreeMap<(D, D), usize> = BTreeMap::new();
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        match b {
            Oracle::Rejected(why) => *rejected.entry(why.clone()).or_default() += 1,
            Oracle::Decision(b) => {
                *by_outcome.entry((*a, *b)).or_default() += 1;
                if a == b {
                    agree += 1;
                } else {
                    disagree.push(i);
                }
            }
        }
    }
    let labels = classify(&disagree.iter().map(|&i| &generated[i]).collect::<Vec<_>>());
    let mut by_class: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut unexplained = Vec::new();
    for (&i, label) in disagree.iter().zip(&labels) {
        match label {
            Some(l) => {
                let e = by_class.entry(l.clone()).or_insert((0, i));
                e.0 += 1;
            }
            None => unexplained.push(i),
        }
    }

    let compared = agree + disagree.len();
    println!(
        "iam-simulate {version}: {cases} cases (seed {seed:#x}), {compared} compared, {agree} agree \
         ({:.2}%), {} disagree ({} explained, {} unexplained), {} rejected by iam-simulate",
        100.0 * agree as f64 / compared.max(1) as f64,
        disagree.len(),
        disagree.len() - unexplained.len(),
        unexplained.len(),
        rejected.values().sum::<usize>()
    );
    for ((a, b), n) in &by_outcome {
        println!("  keycard {a:?} / iam-simulate {b:?}: {n}");
    }
    let mut coverage: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &generated {
        for f in features(c) {
            *coverage.entry(f).or_default() += 1;
        }
    }
    println!(
        "  coverage (cases with): {}",
        coverage
            .iter()
            .map(|(f, n)| format!("{f} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (why, n) in &rejected {
        println!("  rejected x{n}: {why}");
    }
    for (class, (n, first)) in &by_class {
        let decided = CLASSES
            .iter()
            .find(|k| k.name == class)
            .map_or("(combination; see each class)", |k| k.decided_by);
        println!("  class [{class}] x{n} (first: case {first})\n    decided by: {decided}");
    }
    if std::env::var_os("KEYCARD_SIM_DUMP").is_some() {
        for (&i, label) in disagree.iter().zip(&labels) {
            let b = &theirs[i];
            println!(
                "case {i} keycard={:?} iam-simulate={b:?} [{}]: {}",
                ours[i],
                label.as_deref().unwrap_or("UNEXPLAINED"),
                generated[i]
            );
        }
    }

    // Some rejections are expected (iam-simulate validates more strictly), but they must stay rare.
    let n_rejected: usize = rejected.values().sum();
    assert!(
        n_rejected * 20 <= cases,
        "iam-simulate rejected {n_rejected}/{cases} cases: {rejected:#?}"
    );
    assert!(
        agree * 10 >= compared * 9,
        "too few agreeing cases: {agree}/{compared}"
    );
    if !unexplained.is_empty() {
        let shown: Vec<usize> = unexplained.iter().copied().take(5).collect();
        let minimized = minimize(shown.iter().map(|&i| generated[i].clone()).collect());
        let results = both(&minimized);
        let mut msg = format!(
            "{} unexplained disagreements with iam-simulate",
            unexplained.len()
        );
        for ((i, m), (a, b)) in shown.iter().zip(&minimized).zip(results) {
            msg.push_str(&format!(
                "\n\ncase {i}: keycard={a:?} iam-simulate={b:?}\n  minimized: {}\n  original:  {}",
                serde_json::to_string(m).unwrap_or_default(),
                generated[*i]
            ));
        }
        panic!("{msg}");
    }
}
