//! Unit tests, one group per rule of the checklist (/work/shared/spec/policy-evaluation.md).
//! Policies are taken (or adapted) from the examples in the AWS IAM user guide.

use crate::*;

const ACCT: &str = "111111111111";
const OTHER: &str = "222222222222";
const ALICE: &str = "arn:aws:iam::111111111111:user/alice";
const ROLE: &str = "arn:aws:iam::111111111111:role/app";
const SESSION: &str = "arn:aws:sts::111111111111:assumed-role/app/i-0123";

fn pol(kind: PolicyKind, json: &str) -> Policy {
    match Policy::parse(json, kind) {
        Ok(p) => p,
        Err(e) => panic!("policy should parse: {e}\n{json}"),
    }
}

fn err(kind: PolicyKind, json: &str) -> PolicyError {
    match Policy::parse(json, kind) {
        Ok(_) => panic!("policy should be rejected:\n{json}"),
        Err(e) => e,
    }
}

fn allow(action: &str, resource: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"{action}","Resource":"{resource}"}}]}}"#
    )
}

fn deny(action: &str, resource: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Deny","Action":"{action}","Resource":"{resource}"}}]}}"#
    )
}

fn res_policy(effect: &str, principal: &str, action: &str, resource: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"{effect}","Principal":{principal},"Action":"{action}","Resource":"{resource}"}}]}}"#
    )
}

fn trust_doc(principal: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{principal},"Action":"sts:AssumeRole"}}]}}"#
    )
}

fn p(arn: &str) -> Principal {
    Principal::from_arn(arn).expect("principal")
}

fn session() -> Principal {
    Principal::assumed_role(SESSION, ROLE).expect("session")
}

/// Builder for one evaluation.
#[derive(Default)]
struct Case {
    identity: Vec<Policy>,
    resource: Option<Policy>,
    trust: Option<Policy>,
    boundary: Option<Policy>,
    session: Vec<Policy>,
    scps: Vec<Vec<Policy>>,
    ctx: Context,
    resource_account: Option<String>,
}

impl Case {
    fn new() -> Case {
        Case::default()
    }
    fn id(mut self, json: &str) -> Case {
        self.identity.push(pol(PolicyKind::Identity, json));
        self
    }
    fn res(mut self, json: &str) -> Case {
        self.resource = Some(pol(PolicyKind::Resource, json));
        self
    }
    fn trust(mut self, json: &str) -> Case {
        self.trust = Some(pol(PolicyKind::Trust, json));
        self
    }
    fn boundary(mut self, json: &str) -> Case {
        self.boundary = Some(pol(PolicyKind::Boundary, json));
        self
    }
    fn sess(mut self, json: &str) -> Case {
        self.session.push(pol(PolicyKind::Session, json));
        self
    }
    fn scp_level(mut self, docs: &[&str]) -> Case {
        self.scps
            .push(docs.iter().map(|d| pol(PolicyKind::Scp, d)).collect());
        self
    }
    fn ctx(mut self, k: &str, v: &str) -> Case {
        self.ctx.insert(k, v);
        self
    }
    fn ctx_multi(mut self, k: &str, v: &[&str]) -> Case {
        self.ctx
            .insert_multi(k, v.iter().map(|s| s.to_string()).collect());
        self
    }
    fn in_account(mut self, a: &str) -> Case {
        self.resource_account = Some(a.to_string());
        self
    }
    fn run(&self, principal: &Principal, action: &str, resource: &str) -> Evaluation {
        let ids: Vec<String> = (0..self.identity.len()).map(|i| format!("id{i}")).collect();
        let set = PolicySet {
            identity: self
                .identity
                .iter()
                .zip(&ids)
                .map(|(policy, id)| PolicyRef { id, policy })
                .collect(),
            resource: self
                .resource
                .as_ref()
                .map(|policy| PolicyRef { id: "res", policy }),
            trust: self.trust.as_ref().map(|policy| PolicyRef {
                id: "trust",
                policy,
            }),
            boundary: self
                .boundary
                .as_ref()
                .map(|policy| PolicyRef { id: "pb", policy }),
            session: self
                .session
                .iter()
                .map(|policy| PolicyRef { id: "sess", policy })
                .collect(),
            scps: self
                .scps
                .iter()
                .map(|l| {
                    l.iter()
                        .map(|policy| PolicyRef { id: "scp", policy })
                        .collect()
                })
                .collect(),
        };
        let req = Request {
            principal,
            action,
            resource,
            resource_account: self.resource_account.as_deref(),
            context: &self.ctx,
        };
        evaluate(&req, &set)
    }
    fn decide(&self, principal: &Principal, action: &str, resource: &str) -> Decision {
        self.run(principal, action, resource).decision
    }
}

const OBJ: &str = "arn:aws:s3:::bucket/key";

// ---------------------------------------------------------------- decision order

#[test]
fn empty_set_is_implicit_deny() {
    let e = Case::new().run(&p(ALICE), "s3:GetObject", OBJ);
    assert_eq!(e.decision, Decision::ImplicitDeny);
    assert_eq!(e.missing, vec![PolicyKind::Identity]);
    assert_eq!(
        e.reason("s3:GetObject"),
        "because no identity-based policy allows the s3:GetObject action"
    );
}

#[test]
fn identity_allow() {
    let e = Case::new()
        .id(&allow("s3:GetObject", "arn:aws:s3:::bucket/*"))
        .run(&p(ALICE), "s3:GetObject", OBJ);
    assert!(e.is_allowed());
    assert_eq!(e.matched.len(), 1);
    assert_eq!(e.matched[0].kind, PolicyKind::Identity);
    assert_eq!(e.matched[0].policy_id, "id0");
    assert_eq!(e.matched[0].effect, Effect::Allow);
}

#[test]
fn explicit_deny_wins_in_every_kind() {
    let a = allow("*", "*");
    let d = deny("s3:*", "*");
    let user = p(ALICE);
    let cases: Vec<(Case, PolicyKind, &str)> = vec![
        (
            Case::new().id(&a).id(&d),
            PolicyKind::Identity,
            "an identity-based policy",
        ),
        (
            Case::new().id(&a).boundary(&a).boundary(&d),
            PolicyKind::Boundary,
            "a permissions boundary",
        ),
        (
            Case::new().id(&a).sess(&d),
            PolicyKind::Session,
            "a session policy",
        ),
        (
            Case::new().id(&a).scp_level(&[&a, &d]),
            PolicyKind::Scp,
            "a service control policy",
        ),
        (
            Case::new()
                .id(&a)
                .res(&res_policy("Deny", r#""*""#, "s3:*", "*")),
            PolicyKind::Resource,
            "a resource-based policy",
        ),
    ];
    for (c, kind, words) in cases {
        let e = c.run(&user, "s3:GetObject", OBJ);
        assert_eq!(e.decision, Decision::ExplicitDeny, "{kind:?}");
        assert!(e.matched.iter().all(|m| m.effect == Effect::Deny));
        assert_eq!(e.matched[0].kind, kind);
        assert_eq!(
            e.reason("s3:GetObject"),
            format!("with an explicit deny in {words}")
        );
    }
}

#[test]
fn deny_in_trust_policy_wins() {
    let trust = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111111111111:user/alice"},"Action":"sts:AssumeRole"},
        {"Effect":"Deny","Principal":"*","Action":"sts:AssumeRole"}]}"#;
    let c = Case::new().id(&allow("sts:AssumeRole", "*")).trust(trust);
    assert_eq!(
        c.decide(&p(ALICE), "sts:AssumeRole", ROLE),
        Decision::ExplicitDeny
    );
}

#[test]
fn scp_every_level_must_allow() {
    let a = allow("*", "*");
    let s3only = allow("s3:*", "*");
    let c = Case::new().id(&a).scp_level(&[&a]).scp_level(&[&s3only]);
    assert!(c.decide(&p(ALICE), "s3:GetObject", OBJ) == Decision::Allow);
    let e = c.run(&p(ALICE), "ec2:RunInstances", "*");
    assert_eq!(e.decision, Decision::ImplicitDeny);
    assert_eq!(e.missing, vec![PolicyKind::Scp]);
    assert_eq!(
        e.reason("ec2:RunInstances"),
        "because no service control policy allows the ec2:RunInstances action"
    );
    // A level allows if any of its policies allows.
    let c = Case::new()
        .id(&a)
        .scp_level(&[&allow("ec2:*", "*"), &s3only]);
    assert_eq!(c.decide(&p(ALICE), "s3:GetObject", OBJ), Decision::Allow);
    // SCPs alone never grant.
    let c = Case::new().scp_level(&[&a]);
    assert_eq!(
        c.decide(&p(ALICE), "s3:GetObject", OBJ),
        Decision::ImplicitDeny
    );
}

#[test]
fn root_is_allowed_everything_in_own_account_unless_scp() {
    let root = p("arn:aws:iam::111111111111:root");
    assert_eq!(root.kind, PrincipalKind::Root);
    let e = Case::new().run(
        &root,
        "iam:DeleteUser",
        "arn:aws:iam::111111111111:user/bob",
    );
    assert!(e.is_allowed());
    assert_eq!(
        e.reason("iam:DeleteUser"),
        "because the account root user is allowed the iam:DeleteUser action"
    );
    let c = Case::new().scp_level(&[&allow("s3:*", "*")]);
    assert_eq!(c.decide(&root, "s3:GetObject", OBJ), Decision::Allow);
    assert_eq!(
        c.decide(&root, "ec2:RunInstances", "*"),
        Decision::ImplicitDeny
    );
    let c = Case::new().scp_level(&[&allow("*", "*"), &deny("s3:*", "*")]);
    assert_eq!(c.decide(&root, "s3:GetObject", OBJ), Decision::ExplicitDeny);
    let c = Case::new().res(&res_policy("Deny", r#""*""#, "s3:*", "*"));
    assert_eq!(c.decide(&root, "s3:GetObject", OBJ), Decision::ExplicitDeny);
    // Cross-account: the other account's resource policy must allow.
    let c = Case::new().in_account(OTHER);
    assert_eq!(c.decide(&root, "s3:GetObject", OBJ), Decision::ImplicitDeny);
    let c = Case::new().in_account(OTHER).res(&res_policy(
        "Allow",
        r#"{"AWS":"111111111111"}"#,
        "s3:GetObject",
        "*",
    ));
    assert_eq!(c.decide(&root, "s3:GetObject", OBJ), Decision::Allow);
}

#[test]
fn resource_policy_naming_user_allows_without_identity_and_ignores_boundary() {
    let rp = res_policy(
        "Allow",
        &format!(r#"{{"AWS":"{ALICE}"}}"#),
        "s3:GetObject",
        "arn:aws:s3:::bucket/*",
    );
    let c = Case::new().res(&rp);
    let e = c.run(&p(ALICE), "s3:GetObject", OBJ);
    assert!(e.is_allowed());
    assert_eq!(e.matched[0].kind, PolicyKind::Resource);
    assert_eq!(
        e.reason("s3:GetObject"),
        "because a resource-based policy allows the s3:GetObject action"
    );
    // Boundary implicit deny does not limit a user ARN named in a resource policy.
    let c = Case::new().res(&rp).boundary(&allow("ec2:*", "*"));
    assert_eq!(c.decide(&p(ALICE), "s3:GetObject", OBJ), Decision::Allow);
    // But an explicit deny in the boundary does.
    let c = Case::new().res(&rp).boundary(&deny("s3:*", "*"));
    assert_eq!(
        c.decide(&p(ALICE), "s3:GetObject", OBJ),
        Decision::ExplicitDeny
    );
    // Another user is not named.
    assert_eq!(
        Case::new().res(&rp).decide(
            &p("arn:aws:iam::111111111111:user/bob"),
            "s3:GetObject",
            OBJ
        ),
        Decision::ImplicitDeny
    );
}

#[test]
fn resource_policy_naming_session_is_not_limited_by_boundary_or_session_policy() {
    let rp = res_policy(
        "Allow",
        &format!(r#"{{"AWS":"{SESSION}"}}"#),
        "s3:GetObject",
        "*",
    );
    let c = Case::new()
        .res(&rp)
        .boundary(&allow("ec2:*", "*"))
        .sess(&allow("ec2:*", "*"));
    assert_eq!(c.decide(&session(), "s3:GetObject", OBJ), Decision::Allow);
}

#[test]
fn resource_policy_naming_role_is_limited_by_boundary_and_session_policy() {
    let rp = res_policy(
        "Allow",
        &format!(r#"{{"AWS":"{ROLE}"}}"#),
        "s3:GetObject",
        "*",
    );
    // No identity allow needed.
    assert_eq!(
        Case::new().res(&rp).decide(&session(), "s3:GetObject", OBJ),
        Decision::Allow
    );
    let e =
        Case::new()
            .res(&rp)
            .boundary(&allow("ec2:*", "*"))
            .run(&session(), "s3:GetObject", OBJ);
    assert_eq!(e.decision, Decision::ImplicitDeny);
    assert_eq!(e.missing, vec![PolicyKind::Boundary]);
    assert_eq!(
        e.reason("s3:GetObject"),
        "because no permissions boundary allows the s3:GetObject action"
    );
    let e = Case::new()
        .res(&rp)
        .sess(&allow("ec2:*", "*"))
        .run(&session(), "s3:GetObject", OBJ);
    assert_eq!(e.missing, vec![PolicyKind::Session]);
    assert_eq!(
        e.reason("s3:GetObject"),
        "because no session policy allows the s3:GetObject action"
    );
    let c = Case::new()
        .res(&rp)
        .boundary(&allow("s3:*", "*"))
        .sess(&allow("s3:Get*", "*"));
    assert_eq!(c.decide(&session(), "s3:GetObject", OBJ), Decision::Allow);
}

#[test]
fn resource_policy_naming_account_defers_to_identity() {
    for principal in [
        r#"{"AWS":"111111111111"}"#,
        r#"{"AWS":"arn:aws:iam::111111111111:root"}"#,
    ] {
        let rp = res_policy("Allow", principal, "s3:GetObject", "*");
        assert_eq!(
            Case::new().res(&rp).decide(&p(ALICE), "s3:GetObject", OBJ),
            Decision::ImplicitDeny
        );
        assert_eq!(
            Case::new().res(&rp).id(&allow("s3:GetObject", "*")).decide(
                &p(ALICE),
                "s3:GetObject",
                OBJ
            ),
            Decision::Allow
        );
    }
}

#[test]
fn cross_account_needs_both_sides() {
    let user = p(ALICE);
    let rp = res_policy(
        "Allow",
        &format!(r#"{{"AWS":"{ALICE}"}}"#),
        "s3:GetObject",
        "*",
    );
    let id = allow("s3:GetObject", "*");
    let e = Case::new()
        .in_account(OTHER)
        .id(&id)
        .run(&user, "s3:GetObject", OBJ);
    assert_eq!(e.missing, vec![PolicyKind::Resource]);
    assert_eq!(
        e.reason("s3:GetObject"),
        "because no resource-based policy allows the s3:GetObject action"
    );
    let e = Case::new()
        .in_account(OTHER)
        .res(&rp)
        .run(&user, "s3:GetObject", OBJ);
    assert_eq!(e.missing, vec![PolicyKind::Identity]);
    assert_eq!(
        Case::new()
            .in_account(OTHER)
            .res(&rp)
            .id(&id)
            .decide(&user, "s3:GetObject", OBJ),
        Decision::Allow
    );
    // Account principal in the other account's policy is enough for the resource side.
    let rp = res_policy("Allow", r#"{"AWS":"111111111111"}"#, "s3:GetObject", "*");
    assert_eq!(
        Case::new()
            .in_account(OTHER)
            .res(&rp)
            .id(&id)
            .decide(&user, "s3:GetObject", OBJ),
        Decision::Allow
    );
    // Boundary still limits the principal side.
    assert_eq!(
        Case::new()
            .in_account(OTHER)
            .res(&rp)
            .id(&id)
            .boundary(&allow("ec2:*", "*"))
            .decide(&user, "s3:GetObject", OBJ),
        Decision::ImplicitDeny
    );
    // Same account given explicitly behaves as same account.
    let rp = res_policy(
        "Allow",
        &format!(r#"{{"AWS":"{ALICE}"}}"#),
        "s3:GetObject",
        "*",
    );
    assert_eq!(
        Case::new()
            .in_account(ACCT)
            .res(&rp)
            .decide(&user, "s3:GetObject", OBJ),
        Decision::Allow
    );
}

#[test]
fn trust_policy_must_allow_even_in_same_account() {
    let user = p(ALICE);
    let id = allow("sts:AssumeRole", ROLE);
    // Identity allow alone is not enough.
    let e = Case::new()
        .id(&id)
        .trust(&trust_doc(
            r#"{"AWS":"arn:aws:iam::111111111111:user/bob"}"#,
        ))
        .run(&user, "sts:AssumeRole", ROLE);
    assert_eq!(e.decision, Decision::ImplicitDeny);
    assert_eq!(e.missing, vec![PolicyKind::Trust]);
    assert_eq!(
        e.reason("sts:AssumeRole"),
        "because no resource-based policy allows the sts:AssumeRole action"
    );
    // Trust naming the account: identity must allow too.
    let t = trust_doc(r#"{"AWS":"arn:aws:iam::111111111111:root"}"#);
    assert_eq!(
        Case::new().trust(&t).decide(&user, "sts:AssumeRole", ROLE),
        Decision::ImplicitDeny
    );
    assert_eq!(
        Case::new()
            .trust(&t)
            .id(&id)
            .decide(&user, "sts:AssumeRole", ROLE),
        Decision::Allow
    );
    // Trust naming the user ARN in the same account: identity need not allow.
    let t = trust_doc(&format!(r#"{{"AWS":"{ALICE}"}}"#));
    assert_eq!(
        Case::new().trust(&t).decide(&user, "sts:AssumeRole", ROLE),
        Decision::Allow
    );
    // Cross-account: identity allow needed as well.
    let other = p("arn:aws:iam::222222222222:user/carol");
    let t = trust_doc(r#"{"AWS":"arn:aws:iam::222222222222:user/carol"}"#);
    let c = Case::new().trust(&t).in_account(ACCT);
    assert_eq!(
        c.decide(&other, "sts:AssumeRole", ROLE),
        Decision::ImplicitDeny
    );
    let c = Case::new().trust(&t).in_account(ACCT).id(&id);
    assert_eq!(c.decide(&other, "sts:AssumeRole", ROLE), Decision::Allow);
}

#[test]
fn trust_policy_for_service_principal() {
    let ec2 = p("ec2.amazonaws.com");
    assert_eq!(ec2.kind, PrincipalKind::Service);
    assert_eq!(ec2.account, "");
    let t = trust_doc(r#"{"Service":"ec2.amazonaws.com"}"#);
    let c = Case::new().trust(&t).in_account(ACCT);
    assert_eq!(c.decide(&ec2, "sts:AssumeRole", ROLE), Decision::Allow);
    let t = trust_doc(r#"{"Service":["lambda.amazonaws.com"]}"#);
    let c = Case::new().trust(&t).in_account(ACCT);
    assert_eq!(
        c.decide(&ec2, "sts:AssumeRole", ROLE),
        Decision::ImplicitDeny
    );
}

#[test]
fn anonymous_and_wildcard_principal() {
    let anon = Principal::anonymous();
    let rp = res_policy("Allow", r#""*""#, "s3:GetObject", "arn:aws:s3:::bucket/*");
    let c = Case::new().res(&rp).in_account(ACCT);
    assert_eq!(c.decide(&anon, "s3:GetObject", OBJ), Decision::Allow);
    assert_eq!(c.decide(&anon, "s3:PutObject", OBJ), Decision::ImplicitDeny);
    let rp = res_policy("Allow", r#"{"AWS":"111111111111"}"#, "s3:GetObject", "*");
    assert_eq!(
        Case::new().res(&rp).decide(&anon, "s3:GetObject", OBJ),
        Decision::ImplicitDeny
    );
    // Same-account user with Principal "*" is allowed by the bucket policy.
    let rp = res_policy("Allow", r#"{"AWS":"*"}"#, "s3:GetObject", "*");
    assert_eq!(
        Case::new().res(&rp).decide(&p(ALICE), "s3:GetObject", OBJ),
        Decision::Allow
    );
}

#[test]
fn session_policies_union_and_empty_means_no_limit() {
    let s = session();
    let id = allow("s3:*", "*");
    assert_eq!(
        Case::new().id(&id).decide(&s, "s3:GetObject", OBJ),
        Decision::Allow
    );
    let c = Case::new()
        .id(&id)
        .sess(&allow("s3:PutObject", "*"))
        .sess(&allow("s3:GetObject", "*"));
    assert_eq!(c.decide(&s, "s3:GetObject", OBJ), Decision::Allow);
    assert_eq!(c.decide(&s, "s3:DeleteObject", OBJ), Decision::ImplicitDeny);
    // Session policy cannot grant beyond identity.
    let c = Case::new().sess(&allow("*", "*"));
    assert_eq!(c.decide(&s, "s3:GetObject", OBJ), Decision::ImplicitDeny);
}

#[test]
fn boundary_intersects_identity() {
    let c = Case::new()
        .id(&allow("s3:*", "*"))
        .boundary(&allow("s3:Get*", "*"));
    assert_eq!(c.decide(&p(ALICE), "s3:GetObject", OBJ), Decision::Allow);
    let e = c.run(&p(ALICE), "s3:PutObject", OBJ);
    assert_eq!(e.missing, vec![PolicyKind::Boundary]);
    let c = Case::new().boundary(&allow("*", "*"));
    let e = c.run(&p(ALICE), "s3:GetObject", OBJ);
    assert_eq!(e.missing, vec![PolicyKind::Identity]);
}

// ---------------------------------------------------------------- grammar & validation

#[test]
fn version_and_statement_shapes() {
    let p1 = pol(
        PolicyKind::Identity,
        r#"{"Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}}"#,
    );
    assert_eq!(p1.version(), "2008-10-17");
    assert_eq!(p1.statement_count(), 1);
    let p2 = pol(PolicyKind::Identity, &allow("s3:GetObject", "*"));
    assert_eq!(p2.version(), "2012-10-17");
    let e = err(
        PolicyKind::Identity,
        r#"{"Version":"2012-10-18","Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}}"#,
    );
    assert_eq!(e.code, ErrorCode::MalformedPolicyDocument);
    assert!(e.message.contains("legacy parsing"));
    let e = err(PolicyKind::Identity, "not json");
    assert_eq!(e.message, "This policy contains invalid Json");
    assert_eq!(e.to_string(), e.message);
    err(PolicyKind::Identity, r#"{"Version":"2012-10-17"}"#);
    err(PolicyKind::Identity, r#"[1,2]"#);
    err(
        PolicyKind::Identity,
        r#"{"Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"*","Bogus":1}}"#,
    );
    err(
        PolicyKind::Identity,
        r#"{"Statement":{"Effect":"allow","Action":"s3:GetObject","Resource":"*"}}"#,
    );
    err(
        PolicyKind::Identity,
        r#"{"Statement":{"Action":"s3:GetObject","Resource":"*"}}"#,
    );
}

#[test]
fn string_or_array_everywhere() {
    let d = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject","s3:ListBucket"],
        "Resource":["arn:aws:s3:::my-app-bucket","arn:aws:s3:::my-app-bucket/*"],
        "Condition":{"StringEquals":{"aws:RequestedRegion":["us-east-1","eu-west-1"]}}}]}"#;
    let c = Case::new().id(d).ctx("aws:RequestedRegion", "eu-west-1");
    assert_eq!(
        c.decide(&p(ALICE), "s3:ListBucket", "arn:aws:s3:::my-app-bucket"),
        Decision::Allow
    );
    assert_eq!(
        c.decide(&p(ALICE), "s3:GetObject", "arn:aws:s3:::my-app-bucket/a/b"),
        Decision::Allow
    );
    err(
        PolicyKind::Identity,
        r#"{"Statement":{"Effect":"Allow","Action":[1],"Resource":"*"}}"#,
    );
}

#[test]
fn actions_required_and_exclusive() {
    let e = err(
        PolicyKind::Identity,
        r#"{"Statement":[{"Effect":"Allow","Resource":"*"}]}"#,
    );
    assert!(
        e.message
            .starts_with("Policy statement must contain actions."),
        "{}",
        e.message
    );
    assert!(e.message.contains("Statement[0]"));
    let e = err(
        PolicyKind::Identity,
        r#"{"Statement":[{"Effect":"Allow","Action":[],"Resource":"*"}]}"#,
    );
    assert!(
        e.message
            .starts_with("Policy statement must contain actions.")
    );
    err(
        PolicyKind::Identity,
        r#"{"Statement":[{"Effect":"Allow","Action":"s3:*","NotAction":"s3:Get*","Resource":"*"}]}"#,
    );
    let e = err(
        PolicyKind::Identity,
        r#"{"Statement":[{"Effect":"Allow","Action":"GetObject","Resource":"*"}]}"#,
    );
    assert!(e.message.contains("prefixed by a vendor"));
    let e = err(
        PolicyKind::Identity,
        r#"{"Statement":[{"Effect":"Allow","Action":"s3:*"}]}"#,
    );
    assert!(
        e.message
            .starts_with("Policy statement must contain resources.")
    );
}

#[test]
fn sid_rules() {
    let dup = r#"{"Version":"2012-10-17","Statement":[
        {"Sid":"A1","Effect":"Allow","Action":"s3:*","Resource":"*"},
        {"Sid":"A1","Effect":"Deny","Action":"ec2:*","Resource":"*"}]}"#;
    let e = err(PolicyKind::Identity, dup);
    assert!(
        e.message
            .starts_with("Statement IDs (SID) in a single policy must be unique.")
    );
    assert!(e.message.contains("Statement[1]"));
    let e = err(
        PolicyKind::Identity,
        r#"{"Statement":[{"Sid":"has space","Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#,
    );
    assert!(e.message.contains("alpha-numeric"));
    // Bucket policies may use free-form Sids.
    let bp = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Public read - 1","Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]}"#;
    let bp = pol(PolicyKind::Resource, bp);
    assert_eq!(bp.sids().collect::<Vec<_>>(), vec![Some("Public read - 1")]);
}

#[test]
fn principal_rules_per_kind() {
    let with_principal = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"*"}]}"#;
    for kind in [
        PolicyKind::Identity,
        PolicyKind::Boundary,
        PolicyKind::Session,
        PolicyKind::Scp,
    ] {
        let e = err(kind, with_principal);
        assert!(
            e.message
                .starts_with("Policy document should not specify a principal.")
        );
    }
    pol(PolicyKind::Resource, with_principal);
    let e = err(PolicyKind::Resource, &allow("s3:GetObject", "*"));
    assert!(e.message.contains("Principal"));
    let e = err(
        PolicyKind::Trust,
        r#"{"Statement":[{"Effect":"Allow","Action":"sts:AssumeRole"}]}"#,
    );
    assert!(e.message.contains("Principal"));
    err(
        PolicyKind::Trust,
        r#"{"Statement":[{"Effect":"Deny","NotPrincipal":{"AWS":"111111111111"},"Action":"sts:AssumeRole"}]}"#,
    );
    let e = err(
        PolicyKind::Trust,
        r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"111111111111"},"Action":"s3:GetObject"}]}"#,
    );
    assert!(e.message.contains("STS"));
    pol(
        PolicyKind::Trust,
        r#"{"Statement":[{"Effect":"Allow","Principal":{"Federated":"cognito-identity.amazonaws.com"},"Action":["sts:AssumeRoleWithWebIdentity","sts:TagSession"]}]}"#,
    );
    // Invalid principals.
    for bad in [
        r#""bob""#,
        r#"{"AWS":"bob"}"#,
        r#"{"AWS":"arn:aws:iam::*:user/bob"}"#,
        r#"{"Unknown":"x"}"#,
        r#"{}"#,
        r#"{"AWS":[]}"#,
        r#"{"Service":"*"}"#,
    ] {
        let d = res_policy("Allow", bad, "s3:GetObject", "*");
        let e = err(PolicyKind::Resource, &d);
        assert!(
            e.message.contains("principal") || e.message.contains("Principal"),
            "{bad}: {}",
            e.message
        );
    }
    let d = res_policy(
        "Allow",
        r#"{"CanonicalUser":"79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"}"#,
        "s3:GetObject",
        "*",
    );
    pol(PolicyKind::Resource, &d);
}

#[test]
fn size_quotas_exclude_whitespace() {
    assert_eq!(policy_size(" a b\n\tc "), 3);
    let big_sid = "A".repeat(6200);
    let d = format!(
        r#"{{"Statement":[{{"Sid":"{big_sid}","Effect":"Allow","Action":"s3:*","Resource":"*"}}]}}"#
    );
    let e = err(PolicyKind::Identity, &d);
    assert_eq!(e.code, ErrorCode::LimitExceeded);
    assert_eq!(e.message, "Cannot exceed quota for PolicySize: 6144");
    assert_eq!(e.code.as_str(), "LimitExceeded");
    pol(
        PolicyKind::Resource,
        &d.replace("\"Effect\"", "\"Principal\":\"*\",\"Effect\""),
    );
    // Whitespace doesn't count.
    let padded = format!("{}{}", allow("s3:*", "*"), " ".repeat(10_000));
    pol(PolicyKind::Identity, &padded);
    for (kind, q) in [
        (PolicyKind::Identity, 6144),
        (PolicyKind::Trust, 2048),
        (PolicyKind::Session, 2048),
        (PolicyKind::Boundary, 6144),
        (PolicyKind::Scp, 5120),
        (PolicyKind::Resource, 20480),
    ] {
        assert_eq!(kind.size_quota(), q);
        let e = err(kind, &"x".repeat(q + 1));
        assert_eq!(e.code, ErrorCode::LimitExceeded);
        assert_eq!(
            e.message,
            format!("Cannot exceed quota for PolicySize: {q}")
        );
    }
}

#[test]
fn allowed_characters() {
    let d = allow("s3:GetObject", "arn:aws:s3:::b/\u{263A}");
    let e = err(PolicyKind::Identity, &d);
    assert_eq!(e.code, ErrorCode::MalformedPolicyDocument);
    assert!(e.message.contains("characters"));
    pol(
        PolicyKind::Identity,
        &allow("s3:GetObject", "arn:aws:s3:::b/\u{e9}"),
    );
}

#[test]
fn resource_format_rules() {
    let e = err(PolicyKind::Identity, &allow("s3:*", "bucket"));
    assert!(e.message.contains("must be in ARN format"));
    let e = err(PolicyKind::Identity, &allow("s3:*", "arn:aws:s3:bucket"));
    assert!(e.message.contains("must be in ARN format"));
    let e = err(PolicyKind::Identity, &allow("s3:*", "arn:aws:s3*:::bucket"));
    assert!(e.message.contains("vendor"));
    let e = err(
        PolicyKind::Identity,
        &allow("iam:*", "arn:aws:iam:us-east-1:111111111111:user/x"),
    );
    assert!(e.message.contains("cannot contain region information"));
    pol(
        PolicyKind::Identity,
        &allow("iam:*", "arn:aws:iam::*:user/${aws:username}"),
    );
    pol(PolicyKind::Identity, &allow("s3:*", "arn:*:s3:::b"));
}

#[test]
fn condition_operator_validation() {
    let d = |op: &str| {
        format!(
            r#"{{"Statement":[{{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{{"{op}":{{"aws:SourceIp":"10.0.0.0/8"}}}}}}]}}"#
        )
    };
    let e = err(PolicyKind::Identity, &d("StringEqualz"));
    assert!(e.message.contains("Invalid Condition type : StringEqualz"));
    err(PolicyKind::Identity, &d("NullIfExists"));
    for op in [
        "StringEquals",
        "StringNotEquals",
        "StringEqualsIgnoreCase",
        "StringNotEqualsIgnoreCase",
        "StringLike",
        "StringNotLike",
        "NumericEquals",
        "NumericNotEquals",
        "NumericLessThan",
        "NumericLessThanEquals",
        "NumericGreaterThan",
        "NumericGreaterThanEquals",
        "DateEquals",
        "DateNotEquals",
        "DateLessThan",
        "DateLessThanEquals",
        "DateGreaterThan",
        "DateGreaterThanEquals",
        "Bool",
        "BinaryEquals",
        "IpAddress",
        "NotIpAddress",
        "ArnEquals",
        "ArnLike",
        "ArnNotEquals",
        "ArnNotLike",
        "Null",
        "StringEqualsIfExists",
        "ForAllValues:StringLike",
        "ForAnyValue:StringEqualsIfExists",
    ] {
        pol(PolicyKind::Identity, &d(op));
    }
}

#[test]
fn validate_json_and_kind_names() {
    assert!(validate_json(&allow("s3:*", "*"), PolicyKind::Identity).is_ok());
    assert!(cli::validate_json(&allow("s3:*", "*"), PolicyKind::Resource).is_err());
    assert_eq!("scp".parse::<PolicyKind>().unwrap(), PolicyKind::Scp);
    assert_eq!(
        serde_json::to_string(&PolicyKind::Boundary).unwrap(),
        "\"boundary\""
    );
    assert_eq!(
        serde_json::to_string(&Decision::ExplicitDeny).unwrap(),
        "\"ExplicitDeny\""
    );
    assert_eq!(
        ErrorCode::MalformedPolicyDocument.as_str(),
        "MalformedPolicyDocument"
    );
}

// ---------------------------------------------------------------- matching

#[test]
fn action_matching_case_insensitive_with_wildcards() {
    let c = Case::new().id(&allow("S3:Get*", "*"));
    assert_eq!(c.decide(&p(ALICE), "s3:getobject", OBJ), Decision::Allow);
    assert_eq!(c.decide(&p(ALICE), "S3:GETOBJECTACL", OBJ), Decision::Allow);
    assert_eq!(
        c.decide(&p(ALICE), "s3:PutObject", OBJ),
        Decision::ImplicitDeny
    );
    let c = Case::new().id(&allow("iam:???User", "*"));
    assert_eq!(c.decide(&p(ALICE), "iam:GetUser", "*"), Decision::Allow);
    assert_eq!(
        c.decide(&p(ALICE), "iam:CreateUser", "*"),
        Decision::ImplicitDeny
    );
    let c = Case::new().id(&allow("*", "*"));
    assert_eq!(c.decide(&p(ALICE), "anything:AtAll", "*"), Decision::Allow);
    let c = Case::new().id(&allow("*:Describe*", "*"));
    assert_eq!(
        c.decide(&p(ALICE), "ec2:DescribeInstances", "*"),
        Decision::Allow
    );
    assert_eq!(
        c.decide(&p(ALICE), "rds:DescribeDBInstances", "*"),
        Decision::Allow
    );
    assert_eq!(
        c.decide(&p(ALICE), "rds:DeleteDBInstance", "*"),
        Decision::ImplicitDeny
    );
}

#[test]
fn resource_matching_case_sensitive_part_by_part() {
    let c = Case::new().id(&allow("s3:*", "arn:aws:s3:::Bucket/*"));
    assert_eq!(
        c.decide(&p(ALICE), "s3:GetObject", "arn:aws:s3:::Bucket/k"),
        Decision::Allow
    );
    assert_eq!(
        c.decide(&p(ALICE), "s3:GetObject", "arn:aws:s3:::bucket/k"),
        Decision::ImplicitDeny
    );
    let c = Case::new().id(&allow("s3:*", "arn:aws:s3:::b/file?.txt"));
    assert_eq!(
        c.decide(&p(ALICE), "s3:GetObject", "arn:aws:s3:::b/file1.txt"),
        Decision::Allow
    );
    assert_eq!(
        c.decide(&p(ALICE), "s3:GetObject", "arn:aws:s3:::b/file12.txt"),
        Decision::ImplicitDeny
    );
    let c = Case::new().id(&allow("ec2:*", "arn:aws:ec2:*:111111111111:instance/*"));
    assert_eq!(
        c.decide(
            &p(ALICE),
            "ec2:StartInstances",
            "arn:aws:ec2:us-east-1:111111111111:instance/i-1"
        ),
        Decision::Allow
    );
    assert_eq!(
        c.decide(
            &p(ALICE),
            "ec2:StartInstances",
            "arn:aws:ec2:us-east-1:222222222222:instance/i-1"
        ),
        Decision::ImplicitDeny
    );
    // The bucket ARN and the object ARN are different resources.
    let c = Case::new().id(&allow("s3:*", "arn:aws:s3:::b"));
    assert_eq!(
        c.decide(&p(ALICE), "s3:GetObject", "arn:aws:s3:::b/k"),
        Decision::ImplicitDeny
    );
}

#[test]
fn not_action_and_not_resource() {
    // AWS example: allow everything except IAM.
    let d = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","NotAction":"iam:*","Resource":"*"}]}"#;
    let c = Case::new().id(d);
    assert_eq!(c.decide(&p(ALICE), "s3:GetObject", OBJ), Decision::Allow);
    assert_eq!(
        c.decide(&p(ALICE), "iam:CreateUser", "*"),
        Decision::ImplicitDeny
    );
    // Deny + NotResource denies everything else.
    let d = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"s3:*","NotResource":["arn:aws:s3:::HRBucket/Payroll","arn:aws:s3:::HRBucket/Payroll/*"]}]}"#;
    let c = Case::new().id(&allow("*", "*")).id(d);
    assert_eq!(
        c.decide(&p(ALICE), "s3:GetObject", "arn:aws:s3:::HRBucket/Payroll/x"),
        Decision::Allow
    );
    assert_eq!(
        c.decide(&p(ALICE), "s3:GetObject", "arn:aws:s3:::Other/x"),
        Decision::ExplicitDeny
    );
    assert_eq!(
        c.decide(&p(ALICE), "ec2:RunInstances", "*"),
        Decision::Allow
    );
    // Deny NotAction: "deny all except" used with MFA.
    let d = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","NotAction":["iam:ChangePassword","sts:GetSessionToken"],"Resource":"*","Condition":{"BoolIfExists":{"aws:MultiFactorAuthPresent":"false"}}}]}"#;
    let c = Case::new().id(&allow("*", "*")).id(d);
    assert_eq!(
        c.decide(&p(ALICE), "s3:GetObject", OBJ),
        Decision::ExplicitDeny
    );
    assert_eq!(
        c.decide(&p(ALICE), "iam:ChangePassword", "*"),
        Decision::Allow
    );
    let c = c.ctx("aws:MultiFactorAuthPresent", "true");
    assert_eq!(c.decide(&p(ALICE), "s3:GetObject", OBJ), Decision::Allow);
}

#[test]
fn not_principal_with_deny() {
    // AWS example: deny everyone except Bob (user + account listed).
    let bob = "arn:aws:iam::444455556666:user/Bob";
    let d = format!(
        r#"{{"Version":"2012-10-17","Statement":[
            {{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}},
            {{"Effect":"Deny","NotPrincipal":{{"AWS":["{bob}","arn:aws:iam::444455556666:root"]}},"Action":"s3:*","Resource":"*"}}]}}"#
    );
    let c = Case::new().res(&d).in_account("444455556666");
    assert_eq!(c.decide(&p(bob), "s3:GetObject", OBJ), Decision::Allow);
    assert_eq!(
        c.decide(
            &p("arn:aws:iam::444455556666:user/Eve"),
            "s3:GetObject",
            OBJ
        ),
        Decision::ExplicitDeny
    );
    // Only the user listed (no account): the account identity is not excluded -> denied.
    let d = format!(
        r#"{{"Version":"2012-10-17","Statement":[
            {{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}},
            {{"Effect":"Deny","NotPrincipal":{{"AWS":"{bob}"}},"Action":"s3:*","Resource":"*"}}]}}"#
    );
    let c = Case::new().res(&d).in_account("444455556666");
    assert_eq!(
        c.decide(&p(bob), "s3:GetObject", OBJ),
        Decision::ExplicitDeny
    );
    // Role session: session ARN, role ARN and account must all be listed.
    let d = format!(
        r#"{{"Version":"2012-10-17","Statement":[
            {{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}},
            {{"Effect":"Deny","NotPrincipal":{{"AWS":["{SESSION}","{ROLE}","{ACCT}"]}},"Action":"s3:*","Resource":"*"}}]}}"#
    );
    let c = Case::new().res(&d);
    assert_eq!(c.decide(&session(), "s3:GetObject", OBJ), Decision::Allow);
    assert_eq!(
        c.decide(&p(ALICE), "s3:GetObject", OBJ),
        Decision::ExplicitDeny
    );
}

// ---------------------------------------------------------------- conditions

fn cond(op: &str, key: &str, values: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{{"{op}":{{"{key}":{values}}}}}}}]}}"#
    )
}

/// Evaluate a single-condition allow with the given context.
fn check(op: &str, key: &str, values: &str, ctx: &[(&str, &[&str])]) -> bool {
    let mut c = Case::new().id(&cond(op, key, values));
    for (k, v) in ctx {
        if v.len() == 1 {
            c = c.ctx(k, v[0]);
        } else {
            c = c.ctx_multi(k, v);
        }
    }
    c.decide(&p(ALICE), "s3:GetObject", OBJ) == Decision::Allow
}

#[test]
fn string_operators() {
    let k = "aws:PrincipalTag/team";
    assert!(check("StringEquals", k, r#""dev""#, &[(k, &["dev"])]));
    assert!(!check("StringEquals", k, r#""dev""#, &[(k, &["Dev"])]));
    assert!(check(
        "StringEquals",
        k,
        r#"["ops","dev"]"#,
        &[(k, &["dev"])]
    ));
    assert!(!check(
        "StringNotEquals",
        k,
        r#"["ops","dev"]"#,
        &[(k, &["dev"])]
    ));
    assert!(check(
        "StringNotEquals",
        k,
        r#"["ops","dev"]"#,
        &[(k, &["qa"])]
    ));
    assert!(check(
        "StringEqualsIgnoreCase",
        k,
        r#""DEV""#,
        &[(k, &["dev"])]
    ));
    assert!(!check(
        "StringNotEqualsIgnoreCase",
        k,
        r#""DEV""#,
        &[(k, &["dEv"])]
    ));
    assert!(check("StringLike", k, r#""d?v*""#, &[(k, &["devops"])]));
    assert!(!check("StringLike", k, r#""d?v*""#, &[(k, &["dv"])]));
    assert!(check("StringNotLike", k, r#""prod-*""#, &[(k, &["dev"])]));
    // Condition keys are case-insensitive.
    assert!(check(
        "StringEquals",
        "AWS:PRINCIPALTAG/TEAM",
        r#""dev""#,
        &[(k, &["dev"])]
    ));
    // Missing key: positive false, negated true.
    assert!(!check("StringEquals", k, r#""dev""#, &[]));
    assert!(check("StringNotEquals", k, r#""dev""#, &[]));
    assert!(check("StringNotLike", k, r#""dev""#, &[]));
}

#[test]
fn numeric_operators() {
    // AWS example: s3:max-keys <= 10.
    let k = "s3:max-keys";
    assert!(check(
        "NumericLessThanEquals",
        k,
        r#""10""#,
        &[(k, &["10"])]
    ));
    assert!(!check(
        "NumericLessThanEquals",
        k,
        r#""10""#,
        &[(k, &["11"])]
    ));
    assert!(check("NumericLessThan", k, "10", &[(k, &["9.5"])]));
    assert!(check("NumericGreaterThan", k, "10", &[(k, &["11"])]));
    assert!(check(
        "NumericGreaterThanEquals",
        k,
        "10",
        &[(k, &["10.0"])]
    ));
    assert!(check("NumericEquals", k, "10", &[(k, &["10"])]));
    assert!(check("NumericNotEquals", k, "10", &[(k, &["11"])]));
    assert!(!check("NumericNotEquals", k, "10", &[(k, &["10"])]));
    assert!(!check("NumericEquals", k, "10", &[(k, &["ten"])]));
    assert!(!check("NumericEquals", k, r#""ten""#, &[(k, &["10"])]));
}

#[test]
fn date_operators_iso_and_epoch() {
    let k = "aws:CurrentTime";
    let window = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*",
        "Condition":{"DateGreaterThan":{"aws:CurrentTime":"2020-04-01T00:00:00Z"},
                     "DateLessThan":{"aws:CurrentTime":"2020-06-30T23:59:59Z"}}}]}"#;
    let inside = Case::new().id(window).ctx(k, "2020-05-01T12:00:00Z");
    assert_eq!(
        inside.decide(&p(ALICE), "s3:GetObject", OBJ),
        Decision::Allow
    );
    let outside = Case::new().id(window).ctx(k, "2020-07-01T00:00:00Z");
    assert_eq!(
        outside.decide(&p(ALICE), "s3:GetObject", OBJ),
        Decision::ImplicitDeny
    );
    // Epoch seconds on either side.
    let e = "aws:EpochTime";
    assert!(check(
        "DateGreaterThan",
        e,
        r#""2020-01-01T00:00:00Z""#,
        &[(e, &["1600000000"])]
    ));
    assert!(check(
        "DateLessThan",
        k,
        "1600000000",
        &[(k, &["2020-01-01T00:00:00Z"])]
    ));
    assert!(check(
        "DateEquals",
        k,
        r#""2020-01-01T00:00:00Z""#,
        &[(k, &["1577836800"])]
    ));
    assert!(check(
        "DateNotEquals",
        k,
        r#""2020-01-01""#,
        &[(k, &["2020-01-02"])]
    ));
    assert!(check(
        "DateLessThanEquals",
        k,
        r#""2020-01-01""#,
        &[(k, &["2020-01-01T00:00:00Z"])]
    ));
    assert!(check(
        "DateGreaterThanEquals",
        k,
        r#""2020-01-01""#,
        &[(k, &["2020-01-01"])]
    ));
    assert!(!check(
        "DateGreaterThan",
        k,
        r#""2020-01-01""#,
        &[(k, &["garbage"])]
    ));
}

#[test]
fn bool_binary_null() {
    let k = "aws:SecureTransport";
    assert!(check("Bool", k, r#""true""#, &[(k, &["true"])]));
    assert!(check("Bool", k, "true", &[(k, &["TRUE"])]));
    assert!(!check("Bool", k, r#""true""#, &[(k, &["false"])]));
    assert!(!check("Bool", k, r#""true""#, &[]));
    assert!(check("BoolIfExists", k, r#""true""#, &[]));
    let b = "s3:x-amz-content-sha256";
    assert!(check(
        "BinaryEquals",
        b,
        r#""QmluYXJ5VmFsdWU=""#,
        &[(b, &["QmluYXJ5VmFsdWU="])]
    ));
    assert!(!check(
        "BinaryEquals",
        b,
        r#""QmluYXJ5VmFsdWU=""#,
        &[(b, &["eA=="])]
    ));
    // Null: true means the key is absent.
    let t = "aws:TokenIssueTime";
    assert!(check("Null", t, r#""true""#, &[]));
    assert!(!check(
        "Null",
        t,
        r#""true""#,
        &[(t, &["2020-01-01T00:00:00Z"])]
    ));
    assert!(check("Null", t, "false", &[(t, &["2020-01-01T00:00:00Z"])]));
    assert!(!check("Null", t, "false", &[]));
}

#[test]
fn ip_operators_v4_v6() {
    let k = "aws:SourceIp";
    let nets = r#"["192.0.2.0/24","203.0.113.0/24","2001:DB8:1234:5678::/64"]"#;
    assert!(check("IpAddress", k, nets, &[(k, &["192.0.2.44"])]));
    assert!(check(
        "IpAddress",
        k,
        nets,
        &[(k, &["2001:db8:1234:5678::1"])]
    ));
    assert!(!check("IpAddress", k, nets, &[(k, &["198.51.100.1"])]));
    assert!(check("NotIpAddress", k, nets, &[(k, &["198.51.100.1"])]));
    assert!(!check("NotIpAddress", k, nets, &[(k, &["203.0.113.9"])]));
    assert!(check(
        "IpAddress",
        k,
        r#""10.1.2.3""#,
        &[(k, &["10.1.2.3"])]
    ));
    assert!(!check("IpAddress", k, nets, &[(k, &["not-an-ip"])]));
    // AWS example: deny outside the corporate ranges unless via an AWS service.
    let d = r#"{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"*","Resource":"*",
        "Condition":{"NotIpAddress":{"aws:SourceIp":["192.0.2.0/24","203.0.113.0/24"]},
                     "Bool":{"aws:ViaAWSService":"false"}}}}"#;
    let c = Case::new()
        .id(&allow("*", "*"))
        .id(d)
        .ctx(k, "198.51.100.7")
        .ctx("aws:ViaAWSService", "false");
    assert_eq!(
        c.decide(&p(ALICE), "s3:GetObject", OBJ),
        Decision::ExplicitDeny
    );
    let c = c.ctx("aws:ViaAWSService", "true");
    assert_eq!(c.decide(&p(ALICE), "s3:GetObject", OBJ), Decision::Allow);
}

#[test]
fn arn_operators_part_by_part() {
    let k = "aws:SourceArn";
    assert!(check(
        "ArnLike",
        k,
        r#""arn:aws:sns:*:111111111111:topic-*""#,
        &[(k, &["arn:aws:sns:us-east-1:111111111111:topic-a"])]
    ));
    assert!(!check(
        "ArnLike",
        k,
        r#""arn:aws:sns:*:111111111111:topic-*""#,
        &[(k, &["arn:aws:sns:us-east-1:222222222222:topic-a"])]
    ));
    assert!(check(
        "ArnEquals",
        k,
        r#""arn:aws:s3:::b""#,
        &[(k, &["arn:aws:s3:::b"])]
    ));
    assert!(check(
        "ArnNotEquals",
        k,
        r#""arn:aws:s3:::b""#,
        &[(k, &["arn:aws:s3:::c"])]
    ));
    assert!(!check(
        "ArnNotLike",
        k,
        r#""arn:aws:s3:::*""#,
        &[(k, &["arn:aws:s3:::c"])]
    ));
    // `*` does not cross a colon in a non-resource part.
    assert!(!check(
        "ArnLike",
        k,
        r#""arn:aws:sns:*::x""#,
        &[(k, &["arn:aws:sns:us-east-1:111111111111:x"])]
    ));
    assert!(!check(
        "ArnLike",
        k,
        r#""arn:aws:s3:::b""#,
        &[(k, &["not-an-arn"])]
    ));
}

#[test]
fn if_exists() {
    let k = "ec2:InstanceType";
    assert!(check("StringEqualsIfExists", k, r#"["t2.micro"]"#, &[]));
    assert!(check(
        "StringEqualsIfExists",
        k,
        r#"["t2.micro"]"#,
        &[(k, &["t2.micro"])]
    ));
    assert!(!check(
        "StringEqualsIfExists",
        k,
        r#"["t2.micro"]"#,
        &[(k, &["m5.large"])]
    ));
    assert!(check("NumericLessThanIfExists", "s3:max-keys", "5", &[]));
    assert!(check(
        "ArnLikeIfExists",
        "aws:SourceArn",
        r#""arn:aws:s3:::x""#,
        &[]
    ));
}

#[test]
fn set_operators_and_empty_sets() {
    let k = "aws:TagKeys";
    let allowed = r#"["environment","cost-center"]"#;
    // ForAllValues: every request value must be in the list; absent or empty -> true.
    assert!(check(
        "ForAllValues:StringEquals",
        k,
        allowed,
        &[(k, &["environment", "cost-center"])]
    ));
    assert!(!check(
        "ForAllValues:StringEquals",
        k,
        allowed,
        &[(k, &["environment", "owner"])]
    ));
    assert!(check("ForAllValues:StringEquals", k, allowed, &[]));
    assert!(check("ForAllValues:StringEquals", k, allowed, &[(k, &[])]));
    // ForAnyValue: at least one; absent or empty -> false.
    assert!(check(
        "ForAnyValue:StringEquals",
        k,
        allowed,
        &[(k, &["owner", "environment"])]
    ));
    assert!(!check(
        "ForAnyValue:StringEquals",
        k,
        allowed,
        &[(k, &["owner", "x"])]
    ));
    assert!(!check("ForAnyValue:StringEquals", k, allowed, &[]));
    assert!(!check("ForAnyValue:StringEquals", k, allowed, &[(k, &[])]));
    assert!(check("ForAnyValue:StringEqualsIfExists", k, allowed, &[]));
    // Negated with set operators.
    assert!(check(
        "ForAllValues:StringNotEquals",
        k,
        allowed,
        &[(k, &["a", "b"])]
    ));
    assert!(!check(
        "ForAllValues:StringNotEquals",
        k,
        allowed,
        &[(k, &["a", "environment"])]
    ));
    assert!(check(
        "ForAnyValue:StringNotEquals",
        k,
        allowed,
        &[(k, &["a", "environment"])]
    ));
    assert!(check(
        "ForAnyValue:StringLike",
        "aws:CalledVia",
        r#""cloudformation.*""#,
        &[(
            "aws:CalledVia",
            &["athena.amazonaws.com", "cloudformation.amazonaws.com"]
        )]
    ));
    // Multi-valued key without a qualifier: any value matches.
    assert!(check(
        "StringEquals",
        k,
        allowed,
        &[(k, &["owner", "environment"])]
    ));
}

#[test]
fn operators_and_keys_and_values_or() {
    let d = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*",
        "Condition":{"StringEquals":{"aws:PrincipalTag/a":["1","2"],"aws:PrincipalTag/b":"x"},
                     "Bool":{"aws:SecureTransport":"true"}}}]}"#;
    let base = Case::new()
        .id(d)
        .ctx("aws:PrincipalTag/a", "2")
        .ctx("aws:PrincipalTag/b", "x");
    assert_eq!(
        base.decide(&p(ALICE), "s3:GetObject", OBJ),
        Decision::ImplicitDeny
    );
    let ok = base.ctx("aws:SecureTransport", "true");
    assert_eq!(ok.decide(&p(ALICE), "s3:GetObject", OBJ), Decision::Allow);
    let bad = ok.ctx("aws:PrincipalTag/b", "y");
    assert_eq!(
        bad.decide(&p(ALICE), "s3:GetObject", OBJ),
        Decision::ImplicitDeny
    );
}

// ---------------------------------------------------------------- variables

#[test]
fn variables_in_resource() {
    // AWS example: manage own credentials.
    let d = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["iam:*AccessKey*","iam:ChangePassword","iam:GetUser"],"Resource":"arn:aws:iam::*:user/${aws:username}"}]}"#;
    let c = Case::new().id(d);
    assert_eq!(
        c.decide(&p(ALICE), "iam:CreateAccessKey", ALICE),
        Decision::Allow
    );
    assert_eq!(
        c.decide(
            &p(ALICE),
            "iam:CreateAccessKey",
            "arn:aws:iam::111111111111:user/bob"
        ),
        Decision::ImplicitDeny
    );
    // Context value overrides the derived one.
    let c = Case::new().id(d).ctx("aws:username", "bob");
    assert_eq!(
        c.decide(
            &p(ALICE),
            "iam:GetUser",
            "arn:aws:iam::111111111111:user/bob"
        ),
        Decision::Allow
    );
    // Role sessions have no aws:username: the element does not match.
    let c = Case::new().id(d);
    assert_eq!(
        c.decide(
            &session(),
            "iam:GetUser",
            "arn:aws:iam::111111111111:user/app"
        ),
        Decision::ImplicitDeny
    );
}

#[test]
fn variables_only_in_2012_10_17() {
    let old = r#"{"Version":"2008-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::b/${aws:username}/*"}]}"#;
    let c = Case::new().id(old);
    assert_eq!(
        c.decide(&p(ALICE), "s3:GetObject", "arn:aws:s3:::b/alice/x"),
        Decision::ImplicitDeny
    );
    assert_eq!(
        c.decide(
            &p(ALICE),
            "s3:GetObject",
            "arn:aws:s3:::b/${aws:username}/x"
        ),
        Decision::Allow
    );
}

#[test]
fn variable_defaults_escapes_and_literal_values() {
    let d = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::b/${aws:PrincipalTag/team, 'shared'}/*"}]}"#;
    let c = Case::new().id(d);
    assert_eq!(
        c.decide(&p(ALICE), "s3:GetObject", "arn:aws:s3:::b/shared/x"),
        Decision::Allow
    );
    let c = Case::new().id(d).ctx("aws:PrincipalTag/team", "red");
    assert_eq!(
        c.decide(&p(ALICE), "s3:GetObject", "arn:aws:s3:::b/red/x"),
        Decision::Allow
    );
    assert_eq!(
        c.decide(&p(ALICE), "s3:GetObject", "arn:aws:s3:::b/shared/x"),
        Decision::ImplicitDeny
    );
    // Substituted values are literal: a tag value of "*" does not become a wildcard.
    let c = Case::new().id(d).ctx("aws:PrincipalTag/team", "*");
    assert_eq!(
        c.decide(&p(ALICE), "s3:GetObject", "arn:aws:s3:::b/red/x"),
        Decision::ImplicitDeny
    );
    assert_eq!(
        c.decide(&p(ALICE), "s3:GetObject", "arn:aws:s3:::b/*/x"),
        Decision::Allow
    );
    // ${*} ${?} ${$} are literal characters.
    let d = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::b/a${*}b${?}${$}"}]}"#;
    let c = Case::new().id(d);
    assert_eq!(
        c.decide(&p(ALICE), "s3:GetObject", "arn:aws:s3:::b/a*b?$"),
        Decision::Allow
    );
    assert_eq!(
        c.decide(&p(ALICE), "s3:GetObject", "arn:aws:s3:::b/axbx$"),
        Decision::ImplicitDeny
    );
}

#[test]
fn variables_in_condition_values() {
    // AWS example: list only your home folder.
    let d = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::b",
        "Condition":{"StringLike":{"s3:prefix":["","home/","home/${aws:username}/*"]}}}]}"#;
    let run = |prefix: &str| {
        Case::new().id(d).ctx("s3:prefix", prefix).decide(
            &p(ALICE),
            "s3:ListBucket",
            "arn:aws:s3:::b",
        )
    };
    assert_eq!(run("home/alice/docs"), Decision::Allow);
    assert_eq!(run("home/"), Decision::Allow);
    assert_eq!(run(""), Decision::Allow);
    assert_eq!(run("home/bob/"), Decision::ImplicitDeny);
    // StringEquals with a tag variable: resource tag must equal principal tag.
    let d = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ec2:*","Resource":"*",
        "Condition":{"StringEquals":{"aws:ResourceTag/project":"${aws:PrincipalTag/project}"}}}]}"#;
    let c = Case::new()
        .id(d)
        .ctx("aws:ResourceTag/project", "x")
        .ctx("aws:PrincipalTag/project", "x");
    assert_eq!(
        c.decide(&p(ALICE), "ec2:StartInstances", "*"),
        Decision::Allow
    );
    let c = Case::new().id(d).ctx("aws:ResourceTag/project", "x");
    assert_eq!(
        c.decide(&p(ALICE), "ec2:StartInstances", "*"),
        Decision::ImplicitDeny
    );
}

#[test]
fn unresolved_variable_invalidates_not_resource_and_negated_conditions() {
    // "not present means that the value is not in the current request information, and any
    // attempt to match it fails and causes the statement to be invalid" (IAM User Guide,
    // policy variables). Role sessions have no aws:username.
    let d = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iam:*",
        "NotResource":"arn:aws:iam::111111111111:user/${aws:username}"}]}"#;
    let c = Case::new().id(d);
    // Resolved: everything except the caller's own user.
    assert_eq!(
        c.decide(
            &p(ALICE),
            "iam:GetUser",
            "arn:aws:iam::111111111111:user/bob"
        ),
        Decision::Allow
    );
    assert_eq!(
        c.decide(&p(ALICE), "iam:GetUser", ALICE),
        Decision::ImplicitDeny
    );
    // Unresolved: the statement does not apply (it must not grant everything).
    assert_eq!(
        c.decide(
            &session(),
            "iam:GetUser",
            "arn:aws:iam::111111111111:user/bob"
        ),
        Decision::ImplicitDeny
    );
    // A default value resolves it.
    let d = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iam:*",
        "NotResource":"arn:aws:iam::111111111111:user/${aws:username, 'nobody'}"}]}"#;
    assert_eq!(
        Case::new().id(d).decide(
            &session(),
            "iam:GetUser",
            "arn:aws:iam::111111111111:user/bob"
        ),
        Decision::Allow
    );
    // Negated operator whose value can't be resolved: the condition fails (key present).
    let d = cond(
        "StringNotEquals",
        "aws:PrincipalTag/team",
        r#""${aws:username}""#,
    );
    let c = Case::new().id(&d).ctx("aws:PrincipalTag/team", "red");
    assert_eq!(
        c.decide(&session(), "s3:GetObject", OBJ),
        Decision::ImplicitDeny
    );
    assert_eq!(c.decide(&p(ALICE), "s3:GetObject", OBJ), Decision::Allow);
    let c = Case::new().id(&d).ctx("aws:PrincipalTag/team", "alice");
    assert_eq!(
        c.decide(&p(ALICE), "s3:GetObject", OBJ),
        Decision::ImplicitDeny
    );
    // Key absent: a negated operator still matches, as without variables.
    let c = Case::new().id(&d);
    assert_eq!(c.decide(&session(), "s3:GetObject", OBJ), Decision::Allow);
}

#[test]
fn deny_not_principal_always_applies_with_a_permissions_boundary() {
    // "The NotPrincipal element with a Deny effect will always deny any IAM principal that has
    // a permissions boundary policy attached, regardless of the values specified in the
    // NotPrincipal element." (IAM User Guide, NotPrincipal)
    let d = format!(
        r#"{{"Version":"2012-10-17","Statement":[
            {{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}},
            {{"Effect":"Deny","NotPrincipal":{{"AWS":["{ALICE}","{ACCT}"]}},"Action":"s3:*","Resource":"*"}}]}}"#
    );
    let c = Case::new().res(&d).id(&allow("s3:*", "*"));
    assert_eq!(c.decide(&p(ALICE), "s3:GetObject", OBJ), Decision::Allow);
    let c = c.boundary(&allow("s3:*", "*"));
    assert_eq!(
        c.decide(&p(ALICE), "s3:GetObject", OBJ),
        Decision::ExplicitDeny
    );
    // Still only for the statement's actions.
    assert_eq!(
        c.decide(
            &p(ALICE),
            "sqs:SendMessage",
            "arn:aws:sqs:us-east-1:111111111111:q"
        ),
        Decision::ImplicitDeny
    );
}

// ---------------------------------------------------------------- principals, context, index

#[test]
fn principal_from_arn() {
    let u = p("arn:aws:iam::111111111111:user/division/alice");
    assert_eq!(u.kind, PrincipalKind::User);
    assert_eq!(u.account, ACCT);
    assert_eq!(u.username(), Some("alice"));
    let s = p(SESSION);
    assert_eq!(
        s.kind,
        PrincipalKind::AssumedRole {
            role_arn: ROLE.to_string()
        }
    );
    assert_eq!(s.principal_arn(), ROLE);
    let f = p("arn:aws:sts::111111111111:federated-user/bob");
    assert_eq!(f.kind, PrincipalKind::FederatedUser);
    assert_eq!(p("*").kind, PrincipalKind::Anonymous);
    for bad in [
        "",
        "arn:aws:iam::111111111111:role/x",
        "arn:aws:iam::abc:user/x",
        "arn:aws:sts::111111111111:assumed-role/x",
        "arn:aws:iam:us-east-1:111111111111:user/x",
        "not a principal",
        "arn:aws:s3:::bucket",
    ] {
        let e = Principal::from_arn(bad).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidInput, "{bad}");
    }
}

#[test]
fn context_is_case_insensitive() {
    let mut c = Context::new();
    c.insert("AWS:SourceIp", "10.0.0.1");
    assert_eq!(c.get("aws:sourceip"), Some(&["10.0.0.1".to_string()][..]));
    c.insert_multi("aws:CalledVia", vec!["a".into(), "b".into()]);
    assert_eq!(c.get("AWS:CALLEDVIA").map(<[String]>::len), Some(2));
    assert_eq!(c.len(), 2);
    assert!(c.remove("aws:calledvia").is_some());
    assert!(c.get("nope").is_none());
}

#[test]
fn derived_principal_keys() {
    let d = cond("StringEquals", "aws:PrincipalArn", &format!(r#""{ROLE}""#));
    assert_eq!(
        Case::new().id(&d).decide(&session(), "s3:GetObject", OBJ),
        Decision::Allow
    );
    let d = cond("StringEquals", "aws:PrincipalAccount", r#""111111111111""#);
    assert_eq!(
        Case::new().id(&d).decide(&p(ALICE), "s3:GetObject", OBJ),
        Decision::Allow
    );
    let d = cond("StringEquals", "aws:PrincipalType", r#""AssumedRole""#);
    assert_eq!(
        Case::new().id(&d).decide(&session(), "s3:GetObject", OBJ),
        Decision::Allow
    );
}

#[test]
fn service_index_keeps_statement_order_and_wildcards() {
    let d = r#"{"Version":"2012-10-17","Statement":[
        {"Sid":"S0","Effect":"Allow","Action":"ec2:Describe*","Resource":"*"},
        {"Sid":"S1","Effect":"Allow","Action":"*","Resource":"*"},
        {"Sid":"S2","Effect":"Allow","Action":["s3:GetObject","ec2:StartInstances"],"Resource":"*"},
        {"Sid":"S3","Effect":"Allow","NotAction":"iam:*","Resource":"*"},
        {"Sid":"S4","Effect":"Allow","Action":"s?:Get*","Resource":"*"}]}"#;
    let e = Case::new().id(d).run(&p(ALICE), "S3:GetObject", OBJ);
    let sids: Vec<_> = e.matched.iter().map(|m| m.sid.clone().unwrap()).collect();
    assert_eq!(sids, ["S1", "S2", "S3", "S4"]);
    let e = Case::new().id(d).run(&p(ALICE), "ec2:DescribeVpcs", "*");
    let idx: Vec<_> = e.matched.iter().map(|m| m.index).collect();
    assert_eq!(idx, [0, 1, 3]);
    let e = Case::new().id(d).run(&p(ALICE), "iam:GetUser", "*");
    let idx: Vec<_> = e.matched.iter().map(|m| m.index).collect();
    assert_eq!(idx, [1]);
}

// ---------------------------------------------------------------- cli

#[test]
fn cli_evaluate_json() {
    let input = r#"{"principal":"arn:aws:iam::111111111111:user/alice","action":"s3:GetObject",
        "resource":"arn:aws:s3:::bucket/key","resourceAccount":"111111111111",
        "context":{"aws:SourceIp":"10.1.2.3","aws:CalledVia":["a","b"]},
        "identityPolicies":[{"Version":"2012-10-17","Statement":[{"Sid":"Read","Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::bucket/*",
            "Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}]}]}"#;
    let out = cli::evaluate_json(input).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["decision"], "Allow");
    assert_eq!(v["matchedStatements"][0]["sid"], "Read");
    assert_eq!(v["matchedStatements"][0]["kind"], "identity");
    assert_eq!(v["matchedStatements"][0]["index"], 0);
    assert_eq!(v["matchedStatements"][0]["effect"], "Allow");
    assert_eq!(v["matchedStatements"][0]["policyId"], "identityPolicies[0]");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("identity-based policy")
    );

    let arr = format!(
        r#"[{input}, {{"principal":"{ALICE}","action":"s3:PutObject","resource":"arn:aws:s3:::b/k",
            "serviceControlPolicies":[[{{"Statement":{{"Effect":"Deny","Action":"s3:*","Resource":"*"}}}}]]}}]"#
    );
    let out = cli::evaluate_json(&arr).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["decision"], "Allow");
    assert_eq!(v[1]["decision"], "ExplicitDeny");
    assert_eq!(
        v[1]["reason"],
        "with an explicit deny in a service control policy"
    );

    assert!(cli::evaluate_json("nope").is_err());
    assert!(
        cli::evaluate_json(r#"{"action":"s3:GetObject","resource":"*"}"#)
            .unwrap_err()
            .contains("principal")
    );
    let bad_policy = format!(
        r#"{{"principal":"{ALICE}","action":"s3:GetObject","resource":"*","identityPolicies":[{{"Statement":[{{"Effect":"Allow","Resource":"*"}}]}}]}}"#
    );
    let e = cli::evaluate_json(&bad_policy).unwrap_err();
    assert!(e.contains("Policy statement must contain actions."), "{e}");
    assert!(
        cli::evaluate_json(r#"{"principal":"x","action":"a","resource":"r","bogus":1}"#).is_err()
    );
}
