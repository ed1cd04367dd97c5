use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use keycard_policy::{Decision, Position};
use keycard_store::{SqliteStore, Store};
use proptest::prelude::*;

use super::*;
use crate::auth::{Caller, CallerKind, ResourcePolicy};
use crate::iam::Holder;
use crate::{Config, DEFAULT_ACCOUNT};

const A: &str = DEFAULT_ACCOUNT;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn keycard() -> Arc<Keycard> {
    let dir = std::env::temp_dir().join(format!("keycard-sim-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("k.db")).await.unwrap());
    Keycard::open(Config::new(&dir), store).await.unwrap()
}

fn user_caller(kc: &Keycard, name: &str) -> Caller {
    let u = kc.get_user(A, name).unwrap();
    let mut c = Caller::root(A, "AKIASIMULATED");
    c.principal = Principal {
        arn: u.arn(),
        account: A.into(),
        kind: PrincipalKind::User,
    };
    c.kind = CallerKind::User {
        name: u.name.clone(),
        id: u.id.clone(),
    };
    c
}

const S3_READ: &str = "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [\n    {\n      \"Sid\": \"Read\",\n      \"Effect\": \"Allow\",\n      \"Action\": \"s3:Get*\",\n      \"Resource\": \"*\"\n    }\n  ]\n}";
const DENY_SECRET: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"s3:GetObject","Resource":"arn:aws:s3:::secret/*"}]}"#;
const BOUNDARY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*","iam:Get*"],"Resource":"*"}]}"#;

#[test]
fn a_users_inline_group_and_managed_policies_and_boundary_are_simulated() {
    let rt = runtime();
    rt.block_on(async {
        let kc = keycard().await;
        kc.create_user(A, "ann", "/", vec![], None).await.unwrap();
        kc.put_inline(A, Holder::User, "ann", "S3Read", S3_READ)
            .await
            .unwrap();
        kc.create_group(A, "ops", "/").await.unwrap();
        kc.add_user_to_group(A, "ops", "ann").await.unwrap();
        kc.put_inline(A, Holder::Group, "ops", "NoSecret", DENY_SECRET)
            .await
            .unwrap();
        let arn = format!("arn:aws:iam::{A}:policy/Edge");
        kc.create_policy(A, "Edge", "/", BOUNDARY, None, vec![])
            .await
            .unwrap();
        kc.attach_policy(A, Holder::User, "ann", "arn:aws:iam::aws:policy/IAMReadOnlyAccess")
            .await
            .unwrap();
        kc.set_boundary(A, Holder::User, "ann", Some(arn.as_str()))
            .await
            .unwrap();
        let input = SimulationInput {
            source: Some(format!("arn:aws:iam::{A}:user/ann")),
            actions: vec![
                "s3:GetObject".into(),
                "iam:GetUser".into(),
                "iam:ListUsers".into(),
            ],
            resources: vec!["arn:aws:s3:::pub/k".into(), "arn:aws:s3:::secret/k".into()],
            ..Default::default()
        };
        let r = kc.simulate(A, &input).unwrap();
        assert_eq!(r.len(), 6);
        let get_pub = &r[0];
        assert_eq!(get_pub.decision, Decision::Allow);
        assert_eq!(get_pub.allowed_by_boundary, Some(true));
        let read = get_pub
            .matched
            .iter()
            .find(|m| m.source_policy_id == "S3Read")
            .unwrap();
        assert_eq!(read.source_policy_type, "user");
        let span = read.span.unwrap();
        assert_eq!(span.start, Position { line: 4, column: 5 });
        assert_eq!(span.end, Position { line: 9, column: 5 });
        assert!(get_pub.matched.iter().any(|m| m.source_policy_id == "Edge"
            && m.source_policy_type == "user-managed"));
        let get_secret = &r[1];
        assert_eq!(get_secret.decision, Decision::ExplicitDeny);
        assert_eq!(get_secret.matched.len(), 1);
        assert_eq!(get_secret.matched[0].source_policy_id, "NoSecret");
        assert_eq!(get_secret.matched[0].source_policy_type, "group");
        // IAMReadOnlyAccess allows iam:GetUser and the boundary allows iam:Get*.
        assert_eq!(r[2].decision, Decision::Allow);
        assert!(r[2].matched.iter().any(|m| m.source_policy_id == "IAMReadOnlyAccess"
            && m.source_policy_type == "aws-managed"));
        // iam:ListUsers: allowed by the identity policy, not by the boundary.
        assert_eq!(r[4].decision, Decision::ImplicitDeny);
        assert_eq!(r[4].allowed_by_boundary, Some(false));

        // A boundary given in the request replaces the attached one.
        let mut with_input = input.clone();
        with_input.boundary_inputs =
            vec![r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iam:*","Resource":"*"}}"#.into()];
        let r = kc.simulate(A, &with_input).unwrap();
        assert_eq!(r[0].decision, Decision::ImplicitDeny);
        assert_eq!(r[4].decision, Decision::Allow);
        assert!(r[4].matched.iter().any(|m| m.source_policy_id
            == "PermissionsBoundaryPolicyInputList.1"
            && m.source_policy_type == INPUT_TYPE));
    });
}

#[test]
fn custom_policies_missing_context_and_errors() {
    let rt = runtime();
    rt.block_on(async {
        let kc = keycard().await;
        let doc = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"dynamodb:*","Resource":"*","Condition":{"DateGreaterThan":{"aws:CurrentTime":"2018-08-16T12:00:00Z"}}}}"#;
        let mut input = SimulationInput {
            policy_inputs: vec![doc.into()],
            actions: vec!["dynamodb:CreateBackup".into()],
            ..Default::default()
        };
        let r = kc.simulate(A, &input).unwrap();
        assert_eq!(r[0].decision, Decision::ImplicitDeny);
        assert_eq!(r[0].missing_context, ["aws:CurrentTime"]);
        input.context = vec![ContextEntry {
            name: "aws:CurrentTime".into(),
            values: vec!["2019-04-25T11:00:00Z".into()],
            kind: Some("date".into()),
        }];
        let r = kc.simulate(A, &input).unwrap();
        assert_eq!(r[0].decision, Decision::Allow);
        assert_eq!(r[0].matched[0].source_policy_id, "PolicyInputList.1");
        // AWS's documented positions for this very document: 38 and 167,
        // one past each brace; the engine reports the braces themselves.
        let span = r[0].matched[0].span.unwrap();
        assert_eq!((span.start.column, span.end.column), (37, 166));
        assert!(r[0].missing_context.is_empty());

        let keys = kc
            .simulation_context_keys(A, None, &[doc.to_string()])
            .unwrap();
        assert_eq!(keys, ["aws:CurrentTime"]);

        let bad = SimulationInput {
            policy_inputs: vec!["{not json".into()],
            actions: vec!["s3:GetObject".into()],
            ..Default::default()
        };
        assert_eq!(kc.simulate(A, &bad).unwrap_err().code(), "InvalidInput");
        let unknown = SimulationInput {
            source: Some(format!("arn:aws:iam::{A}:user/nobody")),
            actions: vec!["s3:GetObject".into()],
            ..Default::default()
        };
        assert_eq!(kc.simulate(A, &unknown).unwrap_err().code(), "NoSuchEntity");
        let typed = SimulationInput {
            context: vec![ContextEntry {
                name: "s3:max-keys".into(),
                values: vec!["ten".into()],
                kind: Some("numeric".into()),
            }],
            ..input
        };
        assert_eq!(kc.simulate(A, &typed).unwrap_err().code(), "InvalidInput");
    });
}

/// One of the given strings (a `&str` strategy would be a regex).
fn one(values: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
    prop::sample::select(values)
}

fn statement() -> impl Strategy<Value = String> {
    let effect = one(&["Allow", "Deny"]);
    let action = one(&[
        "s3:*",
        "s3:Get*",
        "s3:GetObject",
        "iam:*",
        "*",
        "s3:Put?bject",
    ]);
    let resource = one(&[
        "*",
        "arn:aws:s3:::b/*",
        "arn:aws:s3:::b/${aws:username}/*",
        "arn:aws:s3:::c/k",
    ]);
    let condition = prop_oneof![
        Just(String::new()),
        Just(r#","Condition":{"StringEquals":{"aws:RequestTag/env":"dev"}}"#.to_string()),
        Just(r#","Condition":{"StringNotLikeIfExists":{"s3:prefix":"home/*"}}"#.to_string()),
        Just(r#","Condition":{"Null":{"aws:RequestTag/env":"true"}}"#.to_string()),
    ];
    (effect, any::<bool>(), action, resource, condition).prop_map(|(e, not, a, r, c)| {
        let field = if not { "NotAction" } else { "Action" };
        format!(r#"{{"Effect":"{e}","{field}":"{a}","Resource":"{r}"{c}}}"#)
    })
}

fn policy() -> impl Strategy<Value = String> {
    prop::collection::vec(statement(), 1..4).prop_map(|s| {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{}]}}"#,
            s.join(",")
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// The simulator's decision is the live server's decision for the same
    /// principal, action, resource and context.
    #[test]
    fn simulation_agrees_with_authorize(
        inline in prop::collection::vec(policy(), 0..3),
        boundary in prop::option::of(policy()),
        action in one(&["s3:GetObject", "s3:PutObject", "iam:GetUser", "ec2:RunInstances"]),
        resource in one(&["*", "arn:aws:s3:::b/u0/k", "arn:aws:s3:::b/x", "arn:aws:s3:::c/k"]),
        env in prop::option::of(one(&["dev", "prod"])),
        prefix in prop::option::of(one(&["home/a", "etc"])),
    ) {
        static RT: std::sync::OnceLock<(tokio::runtime::Runtime, Arc<Keycard>)> = std::sync::OnceLock::new();
        static N: AtomicUsize = AtomicUsize::new(0);
        let (rt, kc) = RT.get_or_init(|| {
            let rt = runtime();
            let kc = rt.block_on(keycard());
            (rt, kc)
        });
        let name = format!("u{}", N.fetch_add(1, Ordering::Relaxed));
        rt.block_on(async {
            kc.create_user(A, &name, "/", vec![], None).await.unwrap();
            for (i, doc) in inline.iter().enumerate() {
                kc.put_inline(A, Holder::User, &name, &format!("P{i}"), doc).await.unwrap();
            }
            if let Some(b) = &boundary {
                let p = kc.create_policy(A, &format!("B{name}"), "/", b, None, vec![]).await.unwrap();
                kc.set_boundary(A, Holder::User, &name, Some(p.arn().as_str())).await.unwrap();
            }
        });
        let mut context = Vec::new();
        if let Some(e) = &env {
            context.push(ContextEntry { name: "aws:RequestTag/env".into(), values: vec![e.to_string()], kind: Some("string".into()) });
        }
        if let Some(p) = &prefix {
            context.push(ContextEntry { name: "s3:prefix".into(), values: vec![p.to_string()], kind: None });
        }
        let input = SimulationInput {
            source: Some(format!("arn:aws:iam::{A}:user/{name}")),
            actions: vec![action.to_string()],
            resources: vec![resource.to_string()],
            context: context.clone(),
            ..Default::default()
        };
        let sim = kc.simulate(A, &input).unwrap();
        let ctx = context_of(&context).unwrap();
        let live = kc.authorize(&user_caller(kc, &name), action, resource, None, &ctx, ResourcePolicy::None);
        prop_assert_eq!(sim[0].decision, live.decision);
        prop_assert_eq!(sim[0].matched.len(), live.matched.len());
        let spans: Vec<_> = live.matched.iter().map(|m| m.span).collect();
        prop_assert_eq!(sim[0].matched.iter().map(|m| m.span).collect::<Vec<_>>(), spans);
    }
}
