//! Cross-policy evaluation: AWS's decision logic over a [`PolicySet`].

use serde::{Deserialize, Serialize};

use crate::PolicyKind;
use crate::condition::{Lookup, Values};
use crate::context::Context;
use crate::glob::{ArnPattern, arn_parts};
use crate::parse::{Effect, Policy, PrincipalSpec, ResItem, Statement};
use crate::principal::{Principal, PrincipalKind};
use crate::span::Span;
use crate::template::Vars;

/// One authorization request.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The authenticated caller.
    pub principal: &'a Principal,
    /// `service:Action`, case-insensitive.
    pub action: &'a str,
    /// Resource ARN (case-sensitive) or `*`.
    pub resource: &'a str,
    /// Account owning the resource; `None` means the principal's own account.
    pub resource_account: Option<&'a str>,
    /// Condition keys.
    pub context: &'a Context,
}

/// A policy with the id it is reported under.
#[derive(Clone, Copy, Debug)]
pub struct PolicyRef<'a> {
    /// e.g. `arn:aws:iam::aws:policy/ReadOnlyAccess` or `arn:aws:iam::1:role/R#inline/Name`.
    pub id: &'a str,
    /// The compiled policy.
    pub policy: &'a Policy,
}

/// Every policy that applies to a request.
#[derive(Clone, Debug, Default)]
pub struct PolicySet<'a> {
    /// Identity-based policies of the principal (inline + attached + groups').
    pub identity: Vec<PolicyRef<'a>>,
    /// Resource-based policy of the resource's account.
    pub resource: Option<PolicyRef<'a>>,
    /// Role trust policy: when `Some`, the request is an `AssumeRole*` check and the trust
    /// policy must allow explicitly (even in the same account).
    pub trust: Option<PolicyRef<'a>>,
    /// Permissions boundary of the principal.
    pub boundary: Option<PolicyRef<'a>>,
    /// Session policies (the union must allow); empty = no session limit.
    pub session: Vec<PolicyRef<'a>>,
    /// SCPs, one list per organization level; each level must allow.
    pub scps: Vec<Vec<PolicyRef<'a>>>,
}

/// The outcome of an evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Decision {
    /// Allowed.
    Allow,
    /// Denied by an explicit `Deny` statement.
    ExplicitDeny,
    /// Denied because nothing (or not every required policy) allowed.
    ImplicitDeny,
}

impl Decision {
    /// `"Allow"`, `"ExplicitDeny"`, `"ImplicitDeny"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Decision::Allow => "Allow",
            Decision::ExplicitDeny => "ExplicitDeny",
            Decision::ImplicitDeny => "ImplicitDeny",
        }
    }
}

/// A statement that matched the request.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchedStatement {
    /// The [`PolicyRef::id`] of the policy.
    pub policy_id: String,
    /// The role the policy played.
    pub kind: PolicyKind,
    /// The statement's Sid.
    pub sid: Option<String>,
    /// Zero-based statement index in the document.
    pub index: usize,
    /// The statement's effect.
    pub effect: Effect,
    /// Where the statement is in the policy text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span: Option<Span>,
}

/// Decision plus the statements that decided it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The decision.
    pub decision: Decision,
    /// On explicit deny: the matching Deny statements; otherwise the matching Allow statements.
    pub matched: Vec<MatchedStatement>,
    /// On implicit deny: the kinds that failed to allow, most significant first.
    pub missing: Vec<PolicyKind>,
}

fn article(desc: &str) -> &'static str {
    if desc.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

impl Evaluation {
    /// True when the decision is [`Decision::Allow`].
    pub fn is_allowed(&self) -> bool {
        self.decision == Decision::Allow
    }

    /// AWS's wording for why, e.g. "because no identity-based policy allows the s3:PutObject action".
    pub fn reason(&self, action: &str) -> String {
        match self.decision {
            Decision::Allow => match self.matched.first() {
                Some(m) => {
                    let d = m.kind.description();
                    format!("because {} {d} allows the {action} action", article(d))
                }
                None => format!("because the account root user is allowed the {action} action"),
            },
            Decision::ExplicitDeny => {
                let d = self
                    .matched
                    .first()
                    .map_or("policy", |m| m.kind.description());
                format!("with an explicit deny in {} {d}", article(d))
            }
            Decision::ImplicitDeny => {
                let d = self
                    .missing
                    .first()
                    .map_or("applicable policy", PolicyKind::description);
                format!("because no {d} allows the {action} action")
            }
        }
    }
}

/// The request, prepared once: lower-cased action, ARN parts of the resource.
struct Env<'a> {
    principal: &'a Principal,
    action_lc: String,
    service_len: usize,
    resource: &'a str,
    res_parts: Option<[&'a str; 6]>,
    ctx: &'a Context,
    /// The caller is an IAM principal with a permissions boundary attached.
    has_boundary: bool,
}

impl<'a> Env<'a> {
    fn new(request: &Request<'a>, set: &PolicySet<'_>) -> Env<'a> {
        let action_lc = request.action.to_lowercase();
        let service_len = action_lc.find(':').unwrap_or(action_lc.len());
        Env {
            principal: request.principal,
            action_lc,
            service_len,
            resource: request.resource,
            res_parts: arn_parts(request.resource),
            ctx: request.context,
            has_boundary: set.boundary.is_some() && request.principal.has_identity_side(),
        }
    }

    fn service(&self) -> &str {
        self.action_lc.get(..self.service_len).unwrap_or("")
    }

    /// Keys derived from the principal when the context doesn't carry them.
    fn derived(&self, key_lc: &str) -> Option<&str> {
        let p = self.principal;
        if !p.has_identity_side() {
            return None;
        }
        match key_lc {
            "aws:principalarn" => Some(p.principal_arn()),
            "aws:principalaccount" => Some(p.account.as_str()),
            "aws:principaltype" => Some(p.principal_type()),
            "aws:username" => p.username(),
            _ => None,
        }
    }
}

impl Vars for Env<'_> {
    fn var(&self, key_lc: &str) -> Option<&str> {
        match self.ctx.get_lc(key_lc) {
            Some([one]) => Some(one.as_str()),
            Some(_) => None,
            None => self.derived(key_lc),
        }
    }
}

impl Lookup for Env<'_> {
    fn values(&self, key_lc: &str) -> Option<Values<'_>> {
        match self.ctx.get_lc(key_lc) {
            Some(v) => Some(Values::Many(v)),
            None => self.derived(key_lc).map(Values::One),
        }
    }
}

/// How a statement's Principal element named the caller (higher is more specific).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum PMatch {
    /// Named the caller's account (or no Principal element at all).
    Account,
    /// Named the role of a role session.
    Role,
    /// Named the caller itself (user / session / federated user / service ARN) or `*`.
    Direct,
}

fn principal_match(spec: &PrincipalSpec, p: &Principal) -> Option<PMatch> {
    if spec.not {
        // NotPrincipal: the statement applies unless every identity of the caller is listed
        // (user + account; session + role + account), as AWS documents.
        return (!all_identities_listed(spec, p)).then_some(PMatch::Direct);
    }
    if spec.any {
        return Some(PMatch::Direct);
    }
    match &p.kind {
        PrincipalKind::Service => spec.services.contains(&p.arn).then_some(PMatch::Direct),
        PrincipalKind::Anonymous => None,
        kind => {
            if spec.aws_arns.contains(&p.arn) || spec.federated.contains(&p.arn) {
                return Some(PMatch::Direct);
            }
            if let PrincipalKind::AssumedRole { role_arn } = kind
                && spec.aws_arns.contains(role_arn)
            {
                return Some(PMatch::Role);
            }
            if spec.accounts.contains(&p.account) {
                return Some(if *kind == PrincipalKind::Root {
                    PMatch::Direct
                } else {
                    PMatch::Account
                });
            }
            None
        }
    }
}

fn all_identities_listed(spec: &PrincipalSpec, p: &Principal) -> bool {
    if spec.any {
        return true;
    }
    match &p.kind {
        PrincipalKind::Service => spec.services.contains(&p.arn),
        PrincipalKind::Anonymous => false,
        PrincipalKind::Root => spec.accounts.contains(&p.account),
        PrincipalKind::AssumedRole { role_arn } => {
            spec.aws_arns.contains(&p.arn)
                && spec.aws_arns.contains(role_arn)
                && spec.accounts.contains(&p.account)
        }
        PrincipalKind::User | PrincipalKind::FederatedUser => {
            (spec.aws_arns.contains(&p.arn) || spec.federated.contains(&p.arn))
                && spec.accounts.contains(&p.account)
        }
    }
}

/// Does the statement apply to the request? Returns how the principal matched.
fn statement_applies(st: &Statement, env: &Env<'_>) -> Option<PMatch> {
    if !action_matches(st, env) || !resource_matches(st, env) {
        return None;
    }
    let pm = match &st.principal {
        // "The NotPrincipal element with a Deny effect will always deny any IAM principal
        // that has a permissions boundary policy attached, regardless of the values specified
        // in the NotPrincipal element." (IAM User Guide, NotPrincipal)
        Some(spec) if spec.not && st.effect == Effect::Deny && env.has_boundary => PMatch::Direct,
        Some(spec) => principal_match(spec, env.principal)?,
        None => PMatch::Account,
    };
    if !st.conditions.iter().all(|c| c.eval(env)) {
        return None;
    }
    Some(pm)
}

#[inline]
fn action_matches(st: &Statement, env: &Env<'_>) -> bool {
    st.actions.iter().any(|g| g.matches(&env.action_lc)) != st.not_action
}

#[inline]
fn resource_matches(st: &Statement, env: &Env<'_>) -> bool {
    if let Some(spec) = &st.resource {
        // A variable with no value in NotResource makes the statement invalid (it does not
        // apply) rather than "not matching" and so granting or denying everything else: IAM
        // User Guide, policy variables: "any attempt to match it fails and causes the
        // statement to be invalid".
        if spec.not
            && spec.items.iter().any(|item| match item {
                ResItem::Tpl(t) => t.resolve_tokens(env).is_none(),
                ResItem::Pat(_) => false,
            })
        {
            return false;
        }
        let hit = spec.items.iter().any(|item| match item {
            ResItem::Pat(p) => p.matches(env.resource, env.res_parts.as_ref()),
            ResItem::Tpl(t) => t.resolve_tokens(env).is_some_and(|ts| {
                ArnPattern::from_tokens(&ts).matches(env.resource, env.res_parts.as_ref())
            }),
        });
        if hit == spec.not {
            return false;
        }
    }
    true
}

struct Hit<'a> {
    kind: PolicyKind,
    id: &'a str,
    sid: Option<&'a str>,
    index: usize,
    effect: Effect,
    span: Option<Span>,
}

impl Hit<'_> {
    fn to_matched(&self) -> MatchedStatement {
        MatchedStatement {
            policy_id: self.id.to_string(),
            kind: self.kind,
            sid: self.sid.map(str::to_string),
            index: self.index,
            effect: self.effect,
            span: self.span,
        }
    }
}

/// Evaluate one policy: records hits, returns the best Allow principal match.
fn eval_policy<'a>(
    pr: &PolicyRef<'a>,
    kind: PolicyKind,
    env: &Env<'_>,
    hits: &mut Vec<Hit<'a>>,
) -> Option<PMatch> {
    let policy: &'a Policy = pr.policy;
    let stmts = policy.statements();
    let mut allow = None;
    for &i in policy.candidates(env.service()) {
        let i = i as usize;
        let Some(st) = stmts.get(i) else { continue };
        if let Some(pm) = statement_applies(st, env) {
            hits.push(Hit {
                kind,
                id: pr.id,
                sid: st.sid.as_deref(),
                index: i,
                effect: st.effect,
                span: policy.span(i),
            });
            if st.effect == Effect::Allow {
                allow = allow.max(Some(pm));
            }
        }
    }
    allow
}

/// Evaluate a request against every applicable policy, following AWS's decision logic.
pub fn evaluate(request: &Request<'_>, set: &PolicySet<'_>) -> Evaluation {
    let principal = request.principal;
    let env = Env::new(request, set);
    let identity_side = principal.has_identity_side();
    let cross = identity_side
        && request
            .resource_account
            .is_some_and(|a| a != principal.account);

    let mut hits: Vec<Hit<'_>> = Vec::new();

    // SCPs (principal's account): every level must allow. They don't apply to services
    // or anonymous callers.
    let mut scp_ok = true;
    if identity_side {
        for level in &set.scps {
            let mut level_allows = false;
            for p in level {
                level_allows |= eval_policy(p, PolicyKind::Scp, &env, &mut hits).is_some();
            }
            scp_ok &= level_allows;
        }
    }
    let resource_allow = set
        .resource
        .as_ref()
        .and_then(|p| eval_policy(p, PolicyKind::Resource, &env, &mut hits));
    let trust_allow = set
        .trust
        .as_ref()
        .and_then(|p| eval_policy(p, PolicyKind::Trust, &env, &mut hits));
    let mut identity_allow = principal.kind == PrincipalKind::Root;
    let mut boundary_ok = true;
    let mut session_ok = true;
    if identity_side {
        for p in &set.identity {
            identity_allow |= eval_policy(p, PolicyKind::Identity, &env, &mut hits).is_some();
        }
        if let Some(b) = &set.boundary {
            boundary_ok = eval_policy(b, PolicyKind::Boundary, &env, &mut hits).is_some();
        }
        if !set.session.is_empty() {
            session_ok = false;
            for p in &set.session {
                session_ok |= eval_policy(p, PolicyKind::Session, &env, &mut hits).is_some();
            }
        }
    }

    if hits.iter().any(|h| h.effect == Effect::Deny) {
        return Evaluation {
            decision: Decision::ExplicitDeny,
            matched: hits
                .iter()
                .filter(|h| h.effect == Effect::Deny)
                .map(Hit::to_matched)
                .collect(),
            missing: Vec::new(),
        };
    }

    let mut missing = Vec::new();
    if !scp_ok {
        missing.push(PolicyKind::Scp);
    }
    // With a trust policy the request is an AssumeRole* check: the trust policy is the
    // resource side (a resource policy given as well can only add denies).
    let (res_kind, res_allow) = if set.trust.is_some() {
        (PolicyKind::Trust, trust_allow)
    } else {
        (PolicyKind::Resource, resource_allow)
    };
    let require_principal_side = |missing: &mut Vec<PolicyKind>, identity: bool| {
        if identity && !identity_allow {
            missing.push(PolicyKind::Identity);
        }
        if !boundary_ok {
            missing.push(PolicyKind::Boundary);
        }
        if !session_ok {
            missing.push(PolicyKind::Session);
        }
    };
    if !identity_side {
        // Services and anonymous callers: only the resource side can grant.
        if res_allow.is_none() {
            missing.push(res_kind);
        }
    } else if cross {
        if res_allow.is_none() {
            missing.push(res_kind);
        }
        require_principal_side(&mut missing, true);
    } else if principal.kind == PrincipalKind::Root {
        if set.trust.is_some() && res_allow.is_none() {
            missing.push(PolicyKind::Trust);
        }
    } else {
        if set.trust.is_some() && res_allow.is_none() {
            missing.push(PolicyKind::Trust);
        }
        match res_allow {
            // Names the user / session ARN: not limited by boundary or session policies.
            Some(PMatch::Direct) => {}
            // Names the role ARN: still limited by the boundary and the session policy.
            Some(PMatch::Role) => require_principal_side(&mut missing, false),
            // Names the account (or nothing allowed): the identity side decides.
            Some(PMatch::Account) | None => require_principal_side(&mut missing, true),
        }
    }
    let decision = if missing.is_empty() {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    };
    Evaluation {
        decision,
        matched: hits.iter().map(Hit::to_matched).collect(),
        missing,
    }
}

/// The condition keys a request leaves out that decide whether a statement
/// applies: keys of the conditions (and variables of the resource) of every
/// statement whose action and literal resources match, absent from the context
/// and not derived from the principal. For the simulator's
/// `MissingContextValues`; the decision itself comes from [`evaluate`].
pub fn missing_context_keys(request: &Request<'_>, set: &PolicySet<'_>) -> Vec<String> {
    let env = Env::new(request, set);
    let mut out: Vec<String> = Vec::new();
    let policies = set
        .identity
        .iter()
        .chain(&set.resource)
        .chain(&set.trust)
        .chain(&set.boundary)
        .chain(&set.session)
        .chain(set.scps.iter().flatten());
    for pr in policies {
        let stmts = pr.policy.statements();
        for &i in pr.policy.candidates(env.service()) {
            let Some(st) = stmts.get(i as usize) else {
                continue;
            };
            if action_matches(st, &env) {
                missing_of_statement(st, &env, &mut out);
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|k| seen.insert(k.to_lowercase()));
    out
}

fn missing_of_statement(st: &Statement, env: &Env<'_>, out: &mut Vec<String>) {
    let absent = |name: &str| env.values(&name.to_lowercase()).is_none();
    let mut resource_vars = Vec::new();
    if let Some(spec) = &st.resource {
        for item in &spec.items {
            if let ResItem::Tpl(t) = item {
                resource_vars.extend(t.variable_names().filter(|n| absent(n)));
            }
        }
    }
    // A resource that cannot match whatever the keys are makes the keys moot.
    if resource_vars.is_empty() && !resource_matches(st, env) {
        return;
    }
    out.extend(resource_vars.into_iter().map(str::to_string));
    for c in &st.conditions {
        if absent(&c.key) {
            out.push(c.key.clone());
        }
        out.extend(c.variable_names().filter(|n| absent(n)).map(str::to_string));
    }
}
