//! Differential test against the `iam-rs` crate for single-policy-set (identity policies only)
//! evaluation, with a seeded random generator.
//!
//! iam-rs is a second opinion for the core matcher (actions, resources, NotAction/NotResource,
//! conditions, variables). Cases whose outcome depends on a feature where the two engines are
//! known to disagree are classified, counted and printed; docs/policy.md lists each with the
//! AWS documentation that decides it. Any *unclassified* disagreement fails the test.

use iam_rs::{Arn, ContextValue, IAMPolicy, IAMRequest, PrincipalId};
use keycard_policy::{
    Context, Decision, Policy, PolicyKind, PolicyRef, PolicySet, Principal, Request, evaluate,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// splitmix64: small, seeded, reproducible.
mod common;
use common::Rng;

const ACTIONS: &[&str] = &[
    "s3:GetObject",
    "s3:PutObject",
    "s3:*",
    "s3:Get*",
    "s3:?etObject",
    "S3:getobject",
    "ec2:DescribeInstances",
    "ec2:Describe*",
    "*",
    "iam:GetUser",
    "iam:*User",
];
const REQ_ACTIONS: &[&str] = &[
    "s3:GetObject",
    "s3:PutObject",
    "s3:ListBucket",
    "ec2:DescribeInstances",
    "iam:GetUser",
    "iam:CreateUser",
];
const RESOURCES: &[&str] = &[
    "*",
    "arn:aws:s3:::b/*",
    "arn:aws:s3:::b/k",
    "arn:aws:s3:::b",
    "arn:aws:s3:::*/k",
    "arn:aws:s3:::b/?",
    "arn:aws:s3:::c/*",
    "arn:aws:ec2:*:111111111111:instance/*",
    "arn:aws:ec2:us-east-1:*:instance/i-1",
    "arn:aws:iam::111111111111:user/*",
    "arn:aws:iam::111111111111:user/${aws:username}",
    "arn:aws:s3:::b/${aws:username}/*",
];
const REQ_RESOURCES: &[&str] = &[
    "arn:aws:s3:::b/k",
    "arn:aws:s3:::b",
    "arn:aws:s3:::b/x",
    "arn:aws:s3:::c/k",
    "arn:aws:s3:::b/alice/doc",
    "arn:aws:ec2:us-east-1:111111111111:instance/i-1",
    "arn:aws:ec2:eu-west-1:222222222222:instance/i-1",
    "arn:aws:iam::111111111111:user/alice",
    "arn:aws:iam::111111111111:user/bob",
];

/// (operator, key, policy values) and the feature tag used to classify disagreements.
fn conditions() -> Vec<(&'static str, &'static str, Value, &'static str)> {
    vec![
        (
            "StringEquals",
            "aws:PrincipalTag/team",
            json!("red"),
            "string",
        ),
        (
            "StringEquals",
            "aws:PrincipalTag/team",
            json!(["red", "blue"]),
            "string",
        ),
        (
            "StringNotEquals",
            "aws:PrincipalTag/team",
            json!("red"),
            "negated-missing",
        ),
        (
            "StringEqualsIgnoreCase",
            "aws:PrincipalTag/team",
            json!("RED"),
            "string",
        ),
        ("StringLike", "aws:PrincipalTag/team", json!("r*"), "string"),
        (
            "StringNotLike",
            "aws:PrincipalTag/team",
            json!("b*"),
            "negated-missing",
        ),
        (
            "StringEqualsIfExists",
            "aws:PrincipalTag/team",
            json!("red"),
            "ifexists",
        ),
        ("NumericLessThan", "s3:max-keys", json!("10"), "numeric"),
        (
            "NumericGreaterThanEquals",
            "s3:max-keys",
            json!(5),
            "numeric",
        ),
        ("Bool", "aws:SecureTransport", json!("true"), "bool"),
        (
            "BoolIfExists",
            "aws:MultiFactorAuthPresent",
            json!("false"),
            "ifexists",
        ),
        ("IpAddress", "aws:SourceIp", json!("10.0.0.0/8"), "ip"),
        (
            "IpAddress",
            "aws:SourceIp",
            json!(["192.0.2.0/24", "2001:db8::/32"]),
            "ip",
        ),
        (
            "NotIpAddress",
            "aws:SourceIp",
            json!("10.0.0.0/8"),
            "negated-missing",
        ),
        (
            "DateGreaterThan",
            "aws:CurrentTime",
            json!("2020-01-01T00:00:00Z"),
            "date",
        ),
        (
            "DateLessThan",
            "aws:CurrentTime",
            json!("2030-01-01T00:00:00Z"),
            "date",
        ),
        ("Null", "aws:TokenIssueTime", json!("true"), "null"),
        ("Null", "aws:TokenIssueTime", json!("false"), "null"),
        (
            "ArnLike",
            "aws:SourceArn",
            json!("arn:aws:sns:*:111111111111:*"),
            "arn",
        ),
        (
            "ArnEquals",
            "aws:SourceArn",
            json!("arn:aws:sns:us-east-1:111111111111:t"),
            "arn",
        ),
        (
            "ForAnyValue:StringEquals",
            "aws:TagKeys",
            json!(["env", "cost"]),
            "set",
        ),
        (
            "ForAllValues:StringEquals",
            "aws:TagKeys",
            json!(["env", "cost"]),
            "set-forall-missing",
        ),
        (
            "StringLike",
            "s3:prefix",
            json!(["home/${aws:username}/*", ""]),
            "variable",
        ),
    ]
}

struct Generated {
    docs: Vec<String>,
}

fn gen_policies(r: &mut Rng) -> Generated {
    let conds = conditions();
    let n_pol = 1 + r.below(2);
    let mut docs = Vec::new();
    for _ in 0..n_pol {
        let n_st = 1 + r.below(3);
        let mut stmts = Vec::new();
        for _ in 0..n_st {
            let effect = if r.chance(25) { "Deny" } else { "Allow" };
            let acts: Vec<&str> = (0..1 + r.below(2)).map(|_| *r.pick(ACTIONS)).collect();
            let ress: Vec<&str> = (0..1 + r.below(2)).map(|_| *r.pick(RESOURCES)).collect();
            let mut st = serde_json::Map::new();
            st.insert("Effect".into(), json!(effect));
            if r.chance(15) {
                st.insert("NotAction".into(), json!(acts));
            } else {
                st.insert("Action".into(), json!(acts));
            }
            if r.chance(15) {
                st.insert("NotResource".into(), json!(ress));
            } else {
                st.insert("Resource".into(), json!(ress));
            }
            if r.chance(50) {
                let mut block = serde_json::Map::new();
                for _ in 0..1 + r.below(2) {
                    let (op, key, vals, _tag) = r.pick(&conds).clone();
                    let entry = block.entry(op.to_string()).or_insert_with(|| json!({}));
                    if let Some(o) = entry.as_object_mut() {
                        o.insert(key.to_string(), vals);
                    }
                }
                st.insert("Condition".into(), Value::Object(block));
            }
            stmts.push(Value::Object(st));
        }
        docs.push(json!({"Version": "2012-10-17", "Statement": stmts}).to_string());
    }
    Generated { docs }
}

fn gen_context(r: &mut Rng) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut ctx = Vec::new();
    let options: &[(&str, &[&str])] = &[
        ("aws:PrincipalTag/team", &["red", "blue", "Red"]),
        ("s3:max-keys", &["3", "10", "50"]),
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
        ("aws:TokenIssueTime", &["2025-06-01T00:00:00Z"]),
        (
            "aws:SourceArn",
            &[
                "arn:aws:sns:us-east-1:111111111111:t",
                "arn:aws:sns:us-east-1:222222222222:t",
            ],
        ),
        ("s3:prefix", &["home/alice/x", "home/bob/x", ""]),
    ];
    for (k, vals) in options {
        if r.chance(60) {
            ctx.push((*k, vec![*r.pick(vals)]));
        }
    }
    if r.chance(50) {
        let tags = ["env", "cost", "owner"];
        let n = 1 + r.below(2);
        ctx.push(("aws:TagKeys", (0..n).map(|_| *r.pick(&tags)).collect()));
    }
    ctx
}

fn ours(docs: &[String], action: &str, resource: &str, ctx_kv: &[(&str, Vec<&str>)]) -> Decision {
    let policies: Vec<Policy> = docs
        .iter()
        .map(|d| Policy::parse(d, PolicyKind::Identity).expect("generated policy parses"))
        .collect();
    let principal = Principal::from_arn("arn:aws:iam::111111111111:user/alice").expect("principal");
    let mut ctx = Context::new();
    // aws:username is given explicitly to both engines.
    ctx.insert("aws:username", "alice");
    for (k, v) in ctx_kv {
        if *k == "aws:TagKeys" {
            ctx.insert_multi(k, v.iter().map(|s| s.to_string()).collect());
        } else {
            ctx.insert(k, v[0]);
        }
    }
    let set = PolicySet {
        identity: policies
            .iter()
            .map(|policy| PolicyRef { id: "p", policy })
            .collect(),
        ..Default::default()
    };
    let req = Request {
        principal: &principal,
        action,
        resource,
        resource_account: None,
        context: &ctx,
    };
    evaluate(&req, &set).decision
}

fn theirs(
    docs: &[String],
    action: &str,
    resource: &str,
    ctx_kv: &[(&str, Vec<&str>)],
) -> Option<Decision> {
    let policies: Vec<IAMPolicy> = docs
        .iter()
        .map(|d| IAMPolicy::from_json(d).ok())
        .collect::<Option<_>>()?;
    let mut ctx = iam_rs::Context::new();
    ctx.insert("aws:username".into(), ContextValue::String("alice".into()));
    for (k, v) in ctx_kv {
        let val = if *k == "aws:TagKeys" {
            ContextValue::StringList(v.iter().map(|s| s.to_string()).collect())
        } else if v[0] == "true" || v[0] == "false" {
            ContextValue::Boolean(v[0] == "true")
        } else if let (true, Ok(n)) = (*k == "s3:max-keys", v[0].parse::<f64>()) {
            ContextValue::Number(n)
        } else {
            ContextValue::String(v[0].to_string())
        };
        ctx.insert((*k).to_string(), val);
    }
    let req = IAMRequest::new_with_context(
        iam_rs::Principal::Aws(PrincipalId::String(
            "arn:aws:iam::111111111111:user/alice".into(),
        )),
        action,
        Arn::parse(resource).ok()?,
        ctx,
    );
    match iam_rs::evaluate_policies(&policies, &req).ok()? {
        iam_rs::Decision::Allow => Some(Decision::Allow),
        iam_rs::Decision::Deny => Some(Decision::ExplicitDeny),
        iam_rs::Decision::NotApplicable => Some(Decision::ImplicitDeny),
    }
}

/// Find the smallest piece responsible for a disagreement: evaluate each statement alone
/// (as an Allow), then each of its conditions alone, and name the first piece on which the
/// two engines differ.
fn classify(g: &Generated, action: &str, resource: &str, ctx: &[(&str, Vec<&str>)]) -> String {
    let differs = |st: &Value| {
        let d = vec![json!({"Version": "2012-10-17", "Statement": [st]}).to_string()];
        theirs(&d, action, resource, ctx).is_some_and(|t| t != ours(&d, action, resource, ctx))
    };
    for doc in &g.docs {
        let v: Value = serde_json::from_str(doc).unwrap_or(Value::Null);
        for st in v["Statement"].as_array().into_iter().flatten() {
            let mut st = st.clone();
            st["Effect"] = json!("Allow");
            if !differs(&st) {
                continue;
            }
            let conds = st.get("Condition").cloned();
            let mut bare = st.clone();
            if let Some(o) = bare.as_object_mut() {
                o.remove("Condition");
            }
            if differs(&bare) {
                let mut tags = Vec::new();
                if st.get("NotAction").is_some() {
                    tags.push("notaction");
                }
                if st.get("NotResource").is_some() {
                    tags.push("notresource");
                }
                if st.to_string().contains("${") {
                    tags.push("resource-variable");
                }
                return format!("match:{}", tags.join("+"));
            }
            for (op, keys) in conds.iter().flat_map(|c| c.as_object()).flatten() {
                for (k, vals) in keys.as_object().into_iter().flatten() {
                    let mut one = bare.clone();
                    one["Condition"] = json!({ op.clone(): { k.clone(): vals.clone() } });
                    if differs(&one) {
                        let present = ctx.iter().any(|(ck, _)| ck.eq_ignore_ascii_case(k));
                        let var = if vals.to_string().contains("${") {
                            "+variable"
                        } else {
                            ""
                        };
                        return format!(
                            "condition:{op}{var}:{}",
                            if present { "key-present" } else { "key-absent" }
                        );
                    }
                }
            }
            return "combination".into();
        }
    }
    "cross-statement".into()
}

#[test]
fn differential_against_iam_rs() {
    let cases: usize = std::env::var("KEYCARD_DIFF_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000);
    let mut r = Rng(0x006b_6579_6361_7264);
    let mut agree = 0usize;
    let mut skipped = 0usize;
    let mut by_class: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut unexplained = Vec::new();
    for case in 0..cases {
        let g = gen_policies(&mut r);
        let action = *r.pick(REQ_ACTIONS);
        let resource = *r.pick(REQ_RESOURCES);
        let ctx = gen_context(&mut r);
        let a = ours(&g.docs, action, resource, &ctx);
        let Some(b) = theirs(&g.docs, action, resource, &ctx) else {
            skipped += 1;
            continue;
        };
        if a == b {
            agree += 1;
            continue;
        }
        let class = classify(&g, action, resource, &ctx);
        let known = KNOWN.iter().any(|k| class.starts_with(k));
        let sample = format!(
            "case {case}: ours={a:?} iam-rs={b:?} action={action} resource={resource} ctx={ctx:?}\n  {}",
            g.docs.join("\n  ")
        );
        let e = by_class.entry(class.clone()).or_insert((0, sample.clone()));
        e.0 += 1;
        if !known {
            unexplained.push(sample);
        }
    }
    println!("iam-rs differential: {cases} cases, {agree} agree, {skipped} skipped (iam-rs error)");
    for (class, (n, sample)) in &by_class {
        println!("disagreement class [{class}] x{n}; first:\n{sample}\n");
    }
    assert!(
        agree * 10 >= cases * 8,
        "too few agreeing cases: {agree}/{cases}"
    );
    assert!(
        unexplained.is_empty(),
        "{} unexplained disagreements, first:\n{}",
        unexplained.len(),
        unexplained[0]
    );
}

/// Feature tags where iam-rs is known to diverge from AWS (see docs/policy.md).
const KNOWN: &[&str] = &[
    // iam-rs substitutes policy variables only in Resource, not in condition values.
    // AWS: "You can use policy variables in the Resource element and in string comparisons
    // in the Condition element" (IAM User Guide, "IAM policy elements: Variables and tags").
    "condition:StringLike+variable",
];
