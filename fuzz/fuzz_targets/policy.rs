//! Fuzz target: parse + validate a policy of every kind, then evaluate requests
//! built from the same input against it. Nothing may panic.
//!
//! Input layout: `kind_byte | policy text | 0x00 | action | 0x00 | resource | 0x00 | context value`.
#![no_main]

use keycard_policy::{
    Context, Policy, PolicyKind, PolicyRef, PolicySet, Principal, Request, cli, evaluate,
    policy_size,
};
use libfuzzer_sys::fuzz_target;

const KINDS: [PolicyKind; 6] = [
    PolicyKind::Identity,
    PolicyKind::Resource,
    PolicyKind::Trust,
    PolicyKind::Boundary,
    PolicyKind::Session,
    PolicyKind::Scp,
];

fuzz_target!(|data: &[u8]| {
    let Some((&kind_byte, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let mut parts = text.split('\0');
    let doc = parts.next().unwrap_or("");
    let action = parts.next().unwrap_or("s3:GetObject");
    let resource = parts.next().unwrap_or("arn:aws:s3:::bucket/key");
    let ctx_value = parts.next().unwrap_or("10.0.0.1");

    let _ = policy_size(doc);
    let _ = cli::evaluate_json(doc);
    let _ = Principal::from_arn(action);
    let kind = KINDS[usize::from(kind_byte) % KINDS.len()];
    let _ = cli::validate_json(doc, kind);
    let Ok(policy) = Policy::parse(doc, kind) else {
        return;
    };
    let mut ctx = Context::new();
    for key in [
        "aws:SourceIp",
        "aws:CurrentTime",
        "aws:username",
        "aws:PrincipalTag/team",
        "s3:prefix",
        "s3:max-keys",
        "aws:SecureTransport",
    ] {
        ctx.insert(key, ctx_value);
    }
    ctx.insert_multi("aws:TagKeys", vec![ctx_value.to_string(), String::new()]);
    let principals = [
        "arn:aws:iam::111111111111:user/alice",
        "arn:aws:sts::111111111111:assumed-role/app/s",
        "arn:aws:iam::111111111111:root",
        "ec2.amazonaws.com",
        "*",
    ];
    let pr = PolicyRef { id: "fuzz", policy: &policy };
    let sets = [
        PolicySet { identity: vec![pr], ..Default::default() },
        PolicySet { resource: Some(pr), ..Default::default() },
        PolicySet { trust: Some(pr), identity: vec![pr], ..Default::default() },
        PolicySet { boundary: Some(pr), session: vec![pr], scps: vec![vec![pr]], identity: vec![pr], ..Default::default() },
    ];
    for p in principals {
        let Ok(principal) = Principal::from_arn(p) else { continue };
        for account in [None, Some("222222222222")] {
            for set in &sets {
                let req = Request {
                    principal: &principal,
                    action,
                    resource,
                    resource_account: account,
                    context: &ctx,
                };
                let e = evaluate(&req, set);
                let _ = e.reason(action);
            }
        }
    }
});
