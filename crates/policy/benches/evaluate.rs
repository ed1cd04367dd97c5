//! Evaluation benchmarks.
//!
//! `cargo bench -p keycard-policy --bench evaluate`
//!
//! - `seed_s3_read`: the seed's one-statement S3 read policy (goal: p50 < 1 µs).
//! - `large_set_*`: 10 policies x 20 statements with conditions across several services
//!   (goal < 10 µs; cost should not grow with statements for other services).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use keycard_policy::{
    Context, Policy, PolicyKind, PolicyRef, PolicySet, Principal, Request, evaluate,
};
use serde_json::json;

const SEED: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [{
    "Effect": "Allow",
    "Action": ["s3:GetObject", "s3:ListBucket"],
    "Resource": ["arn:aws:s3:::my-app-bucket", "arn:aws:s3:::my-app-bucket/*"]
  }]
}"#;

const SERVICES: &[&str] = &[
    "ec2", "iam", "kms", "dynamodb", "sqs", "sns", "lambda", "logs", "rds", "s3",
];

/// Policy `p` of the large set: 20 statements, mostly for services other than s3,
/// with conditions; the last policy carries the s3 statements.
fn large_policy(p: usize, s3_statements: usize) -> String {
    let mut stmts = Vec::new();
    for i in 0..20 {
        let svc = if p == 9 && i < s3_statements {
            "s3"
        } else {
            SERVICES[(p + i) % 9]
        };
        let cond = match i % 4 {
            0 => json!({"StringEquals": {"aws:PrincipalTag/team": ["red", "blue"]}}),
            1 => json!({"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "192.168.0.0/16"]}}),
            2 => {
                json!({"Bool": {"aws:SecureTransport": "true"}, "DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}})
            }
            _ => json!({"StringLike": {"s3:prefix": ["home/${aws:username}/*", "public/*"]}}),
        };
        let (action, resource) = if svc == "s3" {
            (
                json!([format!("s3:Get{i}*"), "s3:GetObject", "s3:ListBucket"]),
                json!(format!("arn:aws:s3:::bucket-{i}/*")),
            )
        } else {
            (
                json!([format!("{svc}:Describe*"), format!("{svc}:Get{i}")]),
                json!(format!(
                    "arn:aws:{svc}:{}:111111111111:thing/{i}/*",
                    if svc == "iam" { "" } else { "us-east-1" }
                )),
            )
        };
        stmts.push(json!({
            "Sid": format!("P{p}S{i}"),
            "Effect": if i == 19 { "Deny" } else { "Allow" },
            "Action": action,
            "Resource": resource,
            "Condition": cond,
        }));
    }
    json!({"Version": "2012-10-17", "Statement": stmts}).to_string()
}

fn bench(c: &mut Criterion) {
    let seed = Policy::parse(SEED, PolicyKind::Identity).expect("seed parses");
    let alice = Principal::from_arn("arn:aws:iam::111111111111:user/alice").expect("principal");
    let empty = Context::new();
    let set = PolicySet {
        identity: vec![PolicyRef {
            id: "arn:aws:iam::111111111111:policy/S3Read",
            policy: &seed,
        }],
        ..Default::default()
    };
    let req = Request {
        principal: &alice,
        action: "s3:GetObject",
        resource: "arn:aws:s3:::my-app-bucket/reports/2024.csv",
        resource_account: None,
        context: &empty,
    };
    assert!(evaluate(&req, &set).is_allowed());
    c.bench_function("seed_s3_read_allow", |b| {
        b.iter(|| evaluate(black_box(&req), black_box(&set)))
    });
    let deny_req = Request {
        action: "s3:PutObject",
        ..req
    };
    c.bench_function("seed_s3_read_implicit_deny", |b| {
        b.iter(|| evaluate(black_box(&deny_req), black_box(&set)))
    });
    c.bench_function("parse_seed", |b| {
        b.iter(|| Policy::parse(black_box(SEED), PolicyKind::Identity))
    });

    let mut ctx = Context::new();
    ctx.insert("aws:PrincipalTag/team", "red");
    ctx.insert("aws:SourceIp", "10.1.2.3");
    ctx.insert("aws:SecureTransport", "true");
    ctx.insert("aws:CurrentTime", "2025-06-01T12:00:00Z");
    ctx.insert("s3:prefix", "home/alice/docs");
    for s3_statements in [2usize, 10] {
        let docs: Vec<Policy> = (0..10)
            .map(|p| {
                Policy::parse(&large_policy(p, s3_statements), PolicyKind::Identity)
                    .expect("large policy parses")
            })
            .collect();
        let ids: Vec<String> = (0..10).map(|i| format!("policy-{i}")).collect();
        let set = PolicySet {
            identity: docs
                .iter()
                .zip(&ids)
                .map(|(policy, id)| PolicyRef { id, policy })
                .collect(),
            ..Default::default()
        };
        let req = Request {
            principal: &alice,
            action: "s3:GetObject",
            resource: "arn:aws:s3:::bucket-0/home/alice/docs/x",
            resource_account: None,
            context: &ctx,
        };
        assert!(evaluate(&req, &set).is_allowed());
        c.bench_function(
            &format!("large_set_10x20_s3_allow_{s3_statements}_s3_stmts"),
            |b| b.iter(|| evaluate(black_box(&req), black_box(&set))),
        );
        let ec2 = Request {
            action: "ec2:DescribeInstances",
            resource: "arn:aws:ec2:us-east-1:111111111111:thing/3/x",
            ..req
        };
        c.bench_function(
            &format!("large_set_10x20_ec2_{s3_statements}_s3_stmts"),
            |b| b.iter(|| evaluate(black_box(&ec2), black_box(&set))),
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
