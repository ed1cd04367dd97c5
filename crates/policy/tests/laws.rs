//! Property tests: the laws of policy evaluation.

use keycard_policy::{
    Context, Decision, Policy, PolicyKind, PolicyRef, PolicySet, Principal, Request, evaluate,
};
use proptest::prelude::*;
use serde_json::{Value, json};

const ACTIONS: &[&str] = &[
    "s3:GetObject",
    "s3:PutObject",
    "s3:*",
    "s3:Get*",
    "S3:?etObject",
    "ec2:DescribeInstances",
    "ec2:*",
    "*",
    "iam:GetUser",
    "*:Describe*",
];
const REQ_ACTIONS: &[&str] = &[
    "s3:GetObject",
    "s3:PutObject",
    "ec2:DescribeInstances",
    "iam:GetUser",
    "kms:Decrypt",
];
const RESOURCES: &[&str] = &[
    "*",
    "arn:aws:s3:::b/*",
    "arn:aws:s3:::b/k",
    "arn:aws:s3:::c/*",
    "arn:aws:s3:::b/${aws:username}/*",
    "arn:aws:ec2:*:*:instance/*",
    "arn:aws:iam::111111111111:user/alice",
];
const REQ_RESOURCES: &[&str] = &[
    "arn:aws:s3:::b/k",
    "arn:aws:s3:::b/alice/x",
    "arn:aws:s3:::c/k",
    "arn:aws:ec2:us-east-1:111111111111:instance/i-1",
    "arn:aws:iam::111111111111:user/alice",
];

fn conditions() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        3 => Just(None),
        1 => Just(Some(json!({"StringEquals": {"aws:PrincipalTag/team": "red"}}))),
        1 => Just(Some(json!({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}))),
        1 => Just(Some(json!({"BoolIfExists": {"aws:SecureTransport": "true"}}))),
        1 => Just(Some(json!({"ForAnyValue:StringLike": {"aws:CalledVia": "cloud*"}}))),
        1 => Just(Some(json!({"Null": {"aws:TokenIssueTime": "true"}}))),
    ]
}

fn statement(effect: &'static str) -> impl Strategy<Value = Value> {
    (
        prop::sample::subsequence(ACTIONS, 1..3),
        any::<bool>(),
        prop::sample::subsequence(RESOURCES, 1..3),
        any::<bool>(),
        conditions(),
    )
        .prop_map(move |(actions, not_a, resources, not_r, cond)| {
            let mut s = serde_json::Map::new();
            s.insert("Effect".into(), json!(effect));
            s.insert(
                if not_a { "NotAction" } else { "Action" }.into(),
                json!(actions),
            );
            s.insert(
                if not_r { "NotResource" } else { "Resource" }.into(),
                json!(resources),
            );
            if let Some(c) = cond {
                s.insert("Condition".into(), c);
            }
            Value::Object(s)
        })
}

fn any_statement() -> impl Strategy<Value = Value> {
    prop_oneof![3 => statement("Allow"), 1 => statement("Deny")]
}

fn doc(stmts: Vec<Value>) -> String {
    json!({"Version": "2012-10-17", "Statement": stmts}).to_string()
}

fn policy_docs() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop::collection::vec(any_statement(), 1..4).prop_map(doc),
        0..4,
    )
}

#[derive(Debug, Clone)]
struct Req {
    principal: usize,
    action: &'static str,
    resource: &'static str,
    team: bool,
    ip: bool,
}

fn requests() -> impl Strategy<Value = Req> {
    (
        0usize..3,
        prop::sample::select(REQ_ACTIONS),
        prop::sample::select(REQ_RESOURCES),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(principal, action, resource, team, ip)| Req {
            principal,
            action,
            resource,
            team,
            ip,
        })
}

fn principal(i: usize) -> Principal {
    let arn = [
        "arn:aws:iam::111111111111:user/alice",
        "arn:aws:sts::111111111111:assumed-role/app/s1",
        "arn:aws:sts::111111111111:federated-user/fed",
    ][i % 3];
    Principal::from_arn(arn).expect("principal")
}

fn run(req: &Req, identity: &[Policy], boundary: Option<&Policy>) -> Decision {
    let p = principal(req.principal);
    let mut ctx = Context::new();
    if req.team {
        ctx.insert("aws:PrincipalTag/team", "red");
    }
    if req.ip {
        ctx.insert("aws:SourceIp", "10.9.8.7");
    }
    let set = PolicySet {
        identity: identity
            .iter()
            .map(|policy| PolicyRef { id: "p", policy })
            .collect(),
        boundary: boundary.map(|policy| PolicyRef { id: "b", policy }),
        ..Default::default()
    };
    let r = Request {
        principal: &p,
        action: req.action,
        resource: req.resource,
        resource_account: None,
        context: &ctx,
    };
    evaluate(&r, &set).decision
}

fn parse_all(docs: &[String]) -> Vec<Policy> {
    docs.iter()
        .map(|d| Policy::parse(d, PolicyKind::Identity).expect("generated policy parses"))
        .collect()
}

fn single(effect: &str, action: &str, resource: &str) -> Policy {
    Policy::parse(
        &json!({"Version": "2012-10-17", "Statement": [{"Effect": effect, "Action": action, "Resource": resource}]})
            .to_string(),
        PolicyKind::Identity,
    )
    .expect("parses")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn explicit_deny_wins(docs in policy_docs(), req in requests()) {
        let mut ps = parse_all(&docs);
        ps.push(single("Deny", req.action, req.resource));
        prop_assert_eq!(run(&req, &ps, None), Decision::ExplicitDeny);
        // Also from a boundary.
        let b = single("Deny", "*", "*");
        prop_assert_eq!(run(&req, &parse_all(&docs), Some(&b)), Decision::ExplicitDeny);
    }

    #[test]
    fn adding_allow_never_turns_allow_into_deny(docs in policy_docs(), extra in prop::collection::vec(statement("Allow"), 1..4), req in requests()) {
        let ps = parse_all(&docs);
        let before = run(&req, &ps, None);
        let mut more = ps.clone();
        more.push(Policy::parse(&doc(extra), PolicyKind::Identity).expect("parses"));
        let after = run(&req, &more, None);
        if before == Decision::Allow {
            prop_assert_eq!(after, Decision::Allow);
        }
        // Adding an Allow never turns an explicit deny into anything else.
        if before == Decision::ExplicitDeny {
            prop_assert_eq!(after, Decision::ExplicitDeny);
        }
    }

    #[test]
    fn adding_deny_never_turns_deny_into_allow(docs in policy_docs(), extra in prop::collection::vec(statement("Deny"), 1..4), req in requests()) {
        let ps = parse_all(&docs);
        let before = run(&req, &ps, None);
        let mut more = ps.clone();
        more.push(Policy::parse(&doc(extra), PolicyKind::Identity).expect("parses"));
        let after = run(&req, &more, None);
        if before != Decision::Allow {
            prop_assert_ne!(after, Decision::Allow);
        }
    }

    #[test]
    fn empty_policy_set_denies(req in requests()) {
        prop_assert_eq!(run(&req, &[], None), Decision::ImplicitDeny);
    }

    #[test]
    fn wildcard_allow_covers_every_narrower_allow(stmts in prop::collection::vec(statement("Allow"), 1..4), req in requests()) {
        let narrow = Policy::parse(&doc(stmts), PolicyKind::Identity).expect("parses");
        let wide = single("Allow", "*", "*");
        if run(&req, std::slice::from_ref(&narrow), None) == Decision::Allow {
            prop_assert_eq!(run(&req, std::slice::from_ref(&wide), None), Decision::Allow);
            // Service wildcard too.
            let svc = req.action.split(':').next().unwrap_or("*");
            let svc_wide = single("Allow", &format!("{svc}:*"), "*");
            prop_assert_eq!(run(&req, &[svc_wide], None), Decision::Allow);
        }
        // A boundary of "*" never changes the decision.
        prop_assert_eq!(run(&req, std::slice::from_ref(&narrow), Some(&wide)), run(&req, &[narrow], None));
    }

    #[test]
    fn evaluation_is_deterministic_and_explained(docs in policy_docs(), req in requests()) {
        let ps = parse_all(&docs);
        prop_assert_eq!(run(&req, &ps, None), run(&req, &ps, None));
    }

    #[test]
    fn parse_never_panics_on_arbitrary_strings(s in ".{0,300}") {
        for kind in [PolicyKind::Identity, PolicyKind::Resource, PolicyKind::Trust, PolicyKind::Scp] {
            let _ = Policy::parse(&s, kind);
        }
        let _ = Principal::from_arn(&s);
        let _ = keycard_policy::cli::evaluate_json(&s);
    }

    #[test]
    fn parse_never_panics_on_arbitrary_json(v in arb_json()) {
        let s = v.to_string();
        for kind in [PolicyKind::Identity, PolicyKind::Resource, PolicyKind::Trust, PolicyKind::Session] {
            let _ = Policy::parse(&s, kind);
        }
        let _ = keycard_policy::cli::evaluate_json(&s);
    }

    #[test]
    fn policy_shaped_json_never_panics(v in arb_policyish(), action in ".{0,20}", resource in ".{0,40}", ctxv in ".{0,20}") {
        let s = v.to_string();
        for kind in [PolicyKind::Identity, PolicyKind::Resource, PolicyKind::Trust, PolicyKind::Scp] {
            if let Ok(p) = Policy::parse(&s, kind) {
                let princ = principal(0);
                let mut ctx = Context::new();
                for k in ["aws:SourceIp", "aws:CurrentTime", "aws:username", "s3:max-keys", "aws:TagKeys"] {
                    ctx.insert(k, ctxv.clone());
                }
                let set = PolicySet { identity: vec![PolicyRef { id: "x", policy: &p }], resource: Some(PolicyRef { id: "r", policy: &p }), ..Default::default() };
                let r = Request { principal: &princ, action: &action, resource: &resource, resource_account: None, context: &ctx };
                let e = evaluate(&r, &set);
                let _ = e.reason(&action);
            }
        }
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// JSON that looks like a policy, with random values in every slot.
fn arb_policyish() -> impl Strategy<Value = Value> {
    let s = prop_oneof![
        Just("*".to_string()),
        Just("s3:Get*".to_string()),
        Just("arn:aws:s3:::b/${aws:username}/*".to_string()),
        Just("${aws:PrincipalTag/x, 'd'}${*}${".to_string()),
        Just("arn:aws:iam::111111111111:root".to_string()),
        Just("10.0.0.0/8".to_string()),
        Just("2020-01-01T00:00:00Z".to_string()),
        ".{0,16}",
    ];
    let sv = prop_oneof![
        s.clone().prop_map(Value::String),
        prop::collection::vec(s.clone().prop_map(Value::String), 0..3).prop_map(Value::Array),
        any::<i32>().prop_map(|n| json!(n)),
    ];
    let ops = prop::sample::select(vec![
        "StringLike",
        "StringEquals",
        "NumericLessThan",
        "DateGreaterThan",
        "IpAddress",
        "ArnLike",
        "Null",
        "Bool",
        "ForAllValues:StringEquals",
        "ForAnyValue:StringNotLike",
        "StringEqualsIfExists",
        "Bogus",
    ]);
    let keys = prop::sample::select(vec![
        "aws:SourceIp",
        "aws:CurrentTime",
        "aws:username",
        "s3:max-keys",
        "aws:TagKeys",
    ]);
    let cond = prop::collection::btree_map(
        ops,
        prop::collection::btree_map(keys, sv.clone(), 1..3),
        0..3,
    )
    .prop_map(|m| {
        Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        Value::Object(v.into_iter().map(|(k, v)| (k.to_string(), v)).collect()),
                    )
                })
                .collect(),
        )
    });
    let principal = prop_oneof![
        Just(json!("*")),
        Just(json!({"AWS": "111111111111"})),
        sv.clone().prop_map(|v| json!({"AWS": v})),
        sv.clone().prop_map(|v| json!({"Service": v})),
    ];
    let stmt = (
        prop::sample::select(vec!["Allow", "Deny", "allow"]),
        sv.clone(),
        sv.clone(),
        prop::option::of(principal),
        prop::option::of(cond),
        any::<bool>(),
    )
        .prop_map(|(e, a, r, p, c, not)| {
            let mut m = serde_json::Map::new();
            m.insert("Effect".into(), json!(e));
            m.insert(if not { "NotAction" } else { "Action" }.into(), a);
            m.insert(if not { "NotResource" } else { "Resource" }.into(), r);
            if let Some(p) = p {
                m.insert(if not { "NotPrincipal" } else { "Principal" }.into(), p);
            }
            if let Some(c) = c {
                m.insert("Condition".into(), c);
            }
            Value::Object(m)
        });
    (
        prop::sample::select(vec!["2012-10-17", "2008-10-17"]),
        prop::collection::vec(stmt, 1..4),
    )
        .prop_map(|(v, s)| json!({"Version": v, "Statement": s}))
}
