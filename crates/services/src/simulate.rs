//! The IAM policy simulator (`SimulatePrincipalPolicy`, `SimulateCustomPolicy`,
//! `GetContextKeysFor*Policy`). Decisions come from the live server's engine
//! over the live server's collection of a principal's policies
//! (`auth::collect_user` & co.), so the simulator and enforcement cannot
//! disagree; this module only adds the simulator's inputs and reporting.

use std::sync::Arc;

use keycard_policy::{
    Context, Decision, Evaluation, Policy, PolicyKind, PolicyRef, PolicySet, Principal,
    PrincipalKind, Request, Span, evaluate, missing_context_keys,
};

use crate::Keycard;
use crate::auth::{Collected, boundary_of, collect_user, push_inline, push_managed};
use crate::error::{Result, ServiceError};
use crate::state::State;

/// One `ContextEntries` member.
#[derive(Clone, Debug, Default)]
pub struct ContextEntry {
    pub name: String,
    pub values: Vec<String>,
    /// `string`, `stringList`, `numeric`, … (`None`: as given).
    pub kind: Option<String>,
}

/// The parameters both Simulate operations share. `source` is
/// `PolicySourceArn` (None for `SimulateCustomPolicy`).
#[derive(Clone, Debug, Default)]
pub struct SimulationInput {
    pub source: Option<String>,
    pub policy_inputs: Vec<String>,
    pub boundary_inputs: Vec<String>,
    pub actions: Vec<String>,
    pub resources: Vec<String>,
    pub resource_policy: Option<String>,
    pub resource_owner: Option<String>,
    pub caller_arn: Option<String>,
    pub context: Vec<ContextEntry>,
}

/// A matched statement as the simulator reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatementRef {
    /// Inline policy name, managed policy name, `PolicyInputList.N`, …
    pub source_policy_id: String,
    /// `user`, `group`, `role`, `aws-managed`, `user-managed`, `resource`, or
    /// `IAM Policy` for policies given in the request (as AWS answers).
    pub source_policy_type: String,
    /// The statement's braces in the policy text.
    pub span: Option<Span>,
}

/// One (action, resource) of a simulation.
#[derive(Clone, Debug, PartialEq)]
pub struct SimResult {
    pub action: String,
    pub resource: String,
    pub decision: Decision,
    pub matched: Vec<StatementRef>,
    pub missing_context: Vec<String>,
    /// `Some` when a permissions boundary takes part.
    pub allowed_by_boundary: Option<bool>,
    /// Per policy type, for cross-account simulations (`EvalDecisionDetails`).
    pub details: Vec<(&'static str, Decision)>,
    /// The resource is in another account than the caller.
    pub cross_account: bool,
}

/// The policies of a simulation: engine id → how the simulator names it.
struct Sources {
    collected: Collected,
    resource: Option<(String, Arc<Policy>)>,
    names: Vec<(String, StatementLabel)>,
}

#[derive(Clone)]
struct StatementLabel {
    id: String,
    kind: &'static str,
}

/// What `PolicySourceArn` names.
enum Source {
    User(String),
    Group(String),
    Role(String),
}

/// The type AWS reports for policies passed in the request (observed:
/// `PolicyInputList.1` with type `IAM Policy`; not in the model's enum).
const INPUT_TYPE: &str = "IAM Policy";

fn invalid(msg: impl Into<String>) -> ServiceError {
    ServiceError::InvalidInput(msg.into())
}

fn parse_source(arn: &str, account: &str) -> Result<Source> {
    let no_such = || {
        ServiceError::NoSuchEntity(format!(
            "Could not find the entity specified by PolicySourceArn {arn}"
        ))
    };
    let (acct, res) = crate::iam_access::split_iam_arn(arn)
        .ok_or_else(|| invalid(format!("Invalid ARN {arn}.")))?;
    if acct != account {
        return Err(no_such());
    }
    let (kind, rest) = res.split_once('/').ok_or_else(no_such)?;
    let name = rest.rsplit('/').next().unwrap_or(rest).to_string();
    match kind {
        "user" => Ok(Source::User(name)),
        "group" => Ok(Source::Group(name)),
        "role" => Ok(Source::Role(name)),
        _ => Err(invalid(format!(
            "PolicySourceArn {arn} must name a user, group or role."
        ))),
    }
}

/// How the simulator names a policy the live collection calls `id`.
fn label_of(id: &str) -> StatementLabel {
    if let Some((owner, name)) = id.split_once("#inline/") {
        let kind = if owner.contains(":group/") {
            "group"
        } else if owner.contains(":role/") {
            "role"
        } else {
            "user"
        };
        return StatementLabel {
            id: name.to_string(),
            kind,
        };
    }
    let kind = if id.starts_with("arn:aws:iam::aws:policy/") {
        "aws-managed"
    } else {
        "user-managed"
    };
    StatementLabel {
        id: id.rsplit('/').next().unwrap_or(id).to_string(),
        kind,
    }
}

fn parse_input(text: &str, kind: PolicyKind, what: &str) -> Result<Arc<Policy>> {
    Policy::parse_unchecked_size(text, kind)
        .map(Arc::new)
        .map_err(|e| invalid(format!("{what}: {}", e.message)))
}

/// The principal's own policies, collected exactly as `authorize` does.
fn collect_source(st: &State, account: &str, source: &Source) -> Result<(Collected, String)> {
    let mut col = Collected {
        identity: Vec::new(),
        boundary: None,
        session: Vec::new(),
    };
    let arn = match source {
        Source::User(name) => {
            let u = st
                .user(account, name)
                .ok_or_else(|| crate::iam::no_such("user", name))?;
            collect_user(st, account, name, &mut col);
            u.arn()
        }
        Source::Group(name) => {
            let g = st
                .group(account, name)
                .ok_or_else(|| crate::iam::no_such("group", name))?;
            push_inline(&g.arn(), &g.inline, &mut col.identity);
            push_managed(st, &g.attached, &mut col.identity);
            g.arn()
        }
        Source::Role(name) => {
            let r = st
                .role(account, name)
                .ok_or_else(|| crate::iam::no_such("role", name))?;
            push_inline(&r.arn(), &r.inline, &mut col.identity);
            push_managed(st, &r.attached, &mut col.identity);
            col.boundary = boundary_of(st, r.boundary.as_ref());
            r.arn()
        }
    };
    Ok((col, arn))
}

impl Sources {
    fn label(&self, id: &str) -> StatementLabel {
        self.names
            .iter()
            .find(|(k, _)| k == id)
            .map(|(_, l)| l.clone())
            .unwrap_or_else(|| label_of(id))
    }

    fn set(&self) -> PolicySet<'_> {
        PolicySet {
            identity: refs(&self.collected.identity),
            resource: self
                .resource
                .as_ref()
                .map(|(id, p)| PolicyRef { id, policy: p }),
            trust: None,
            boundary: self
                .collected
                .boundary
                .as_ref()
                .map(|(id, p)| PolicyRef { id, policy: p }),
            session: refs(&self.collected.session),
            scps: Vec::new(),
        }
    }
}

/// The request context from `ContextEntries`, each value checked against its type.
pub fn context_of(entries: &[ContextEntry]) -> Result<Context> {
    let mut ctx = Context::new();
    for e in entries {
        let kind = e.kind.as_deref().unwrap_or("string");
        let base = kind.strip_suffix("List").unwrap_or(kind);
        for v in &e.values {
            if !value_fits(base, v) {
                return Err(invalid(format!(
                    "Invalid value {v} for context key {} of type {kind}.",
                    e.name
                )));
            }
        }
        if kind.ends_with("List") || e.values.len() != 1 {
            ctx.insert_multi(&e.name, e.values.clone());
        } else if let Some(v) = e.values.first() {
            ctx.insert(&e.name, v.clone());
        }
    }
    Ok(ctx)
}

fn value_fits(base: &str, v: &str) -> bool {
    match base {
        "numeric" => v.trim().parse::<f64>().is_ok_and(|n| !n.is_nan()),
        "boolean" => v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false"),
        "ip" => {
            let addr = v.split_once('/').map_or(v, |(a, _)| a);
            addr.trim().parse::<std::net::IpAddr>().is_ok()
        }
        "string" | "date" | "binary" => true,
        _ => false,
    }
}

fn resource_account<'a>(resource: &'a str, owner: Option<&'a str>) -> Option<&'a str> {
    match resource.split(':').nth(4) {
        Some(a) if !a.is_empty() => Some(a),
        _ => owner,
    }
}

/// `ResourceOwner`: an account ARN (`arn:aws:iam::ACCT:root`) or an account id.
fn owner_account(owner: &str) -> Result<String> {
    let acct = owner
        .strip_prefix("arn:aws:iam::")
        .and_then(|r| r.strip_suffix(":root"))
        .unwrap_or(owner);
    if acct.len() == 12 && acct.bytes().all(|b| b.is_ascii_digit()) {
        Ok(acct.to_string())
    } else {
        Err(invalid(format!(
            "ResourceOwner {owner} must be an account ARN such as arn:aws:iam::123456789012:root."
        )))
    }
}

/// The simulated caller: `CallerArn` (an IAM user), else the source user, else
/// the source role's session; with neither, an unnamed federated principal of
/// the account (so `aws:username` stays missing, as on AWS).
fn caller_of(
    input: &SimulationInput,
    account: &str,
    source: Option<(&Source, &str)>,
) -> Result<Principal> {
    if let Some(c) = &input.caller_arn {
        let p = Principal::from_arn(c).map_err(|e| invalid(e.message))?;
        if p.kind != PrincipalKind::User {
            return Err(invalid(format!(
                "CallerArn {c} must be the ARN of an IAM user."
            )));
        }
        return Ok(p);
    }
    match source {
        Some((Source::User(_), arn)) => Ok(Principal {
            arn: arn.to_string(),
            account: account.to_string(),
            kind: PrincipalKind::User,
        }),
        Some((Source::Role(name), arn)) => Ok(Principal {
            arn: format!("arn:aws:sts::{account}:assumed-role/{name}/{name}"),
            account: account.to_string(),
            kind: PrincipalKind::AssumedRole {
                role_arn: arn.to_string(),
            },
        }),
        _ => {
            if input.resource_policy.is_some() {
                return Err(invalid(
                    "CallerArn is required with a ResourcePolicy when the policy source is not an IAM user.",
                ));
            }
            Ok(Principal {
                arn: format!("arn:aws:sts::{account}:federated-user/PolicySimulator"),
                account: account.to_string(),
                kind: PrincipalKind::FederatedUser,
            })
        }
    }
}

impl Keycard {
    /// Everything a simulation evaluates: the source's policies (as the live
    /// server collects them), then the request's inputs.
    fn sources(
        &self,
        account: &str,
        input: &SimulationInput,
    ) -> Result<(Sources, Option<(Source, String)>)> {
        let (mut collected, source) = match &input.source {
            Some(arn) => {
                let src = parse_source(arn, account)?;
                let st = self.state();
                let (col, arn) = collect_source(&st, account, &src)?;
                (col, Some((src, arn)))
            }
            None => (
                Collected {
                    identity: Vec::new(),
                    boundary: None,
                    session: Vec::new(),
                },
                None,
            ),
        };
        let mut names = Vec::new();
        for (i, text) in input.policy_inputs.iter().enumerate() {
            let id = format!("PolicyInputList.{}", i + 1);
            let p = parse_input(text, PolicyKind::Identity, &id)?;
            names.push((id.clone(), input_label(&id)));
            collected.identity.push((id, p));
        }
        match input.boundary_inputs.as_slice() {
            [] => {}
            [text] => {
                let id = "PermissionsBoundaryPolicyInputList.1".to_string();
                let p = parse_input(text, PolicyKind::Boundary, &id)?;
                names.push((id.clone(), input_label(&id)));
                collected.boundary = Some((id, p));
            }
            _ => {
                return Err(invalid(
                    "PermissionsBoundaryPolicyInputList may contain at most one policy.",
                ));
            }
        }
        let resource = match &input.resource_policy {
            Some(text) => {
                let id = "ResourcePolicy".to_string();
                let p = parse_input(text, PolicyKind::Resource, &id)?;
                names.push((
                    id.clone(),
                    StatementLabel {
                        id: id.clone(),
                        kind: "resource",
                    },
                ));
                Some((id, p))
            }
            None => None,
        };
        Ok((
            Sources {
                collected,
                resource,
                names,
            },
            source,
        ))
    }

    /// `SimulatePrincipalPolicy` / `SimulateCustomPolicy`: one result per
    /// action and resource, in that order.
    pub fn simulate(&self, account: &str, input: &SimulationInput) -> Result<Vec<SimResult>> {
        if input.actions.is_empty() {
            return Err(invalid("ActionNames must contain at least one action."));
        }
        if input.source.is_none() && input.policy_inputs.is_empty() {
            return Err(invalid("PolicyInputList must contain at least one policy."));
        }
        let (sources, source) = self.sources(account, input)?;
        let caller = caller_of(
            input,
            account,
            source.as_ref().map(|(s, a)| (s, a.as_str())),
        )?;
        let owner = input
            .resource_owner
            .as_deref()
            .map(owner_account)
            .transpose()?;
        let ctx = context_of(&input.context)?;
        let star = ["*".to_string()];
        let resources = if input.resources.is_empty() {
            &star[..]
        } else {
            &input.resources[..]
        };
        let set = sources.set();
        let mut out = Vec::with_capacity(input.actions.len() * resources.len());
        for action in &input.actions {
            for resource in resources {
                let req = Request {
                    principal: &caller,
                    action,
                    resource,
                    resource_account: resource_account(resource, owner.as_deref()),
                    context: &ctx,
                };
                out.push(result_of(&sources, &set, &req));
            }
        }
        Ok(out)
    }

    /// `GetContextKeysForPrincipalPolicy` / `GetContextKeysForCustomPolicy`:
    /// every condition key and variable the policies reference, each once.
    pub fn simulation_context_keys(
        &self,
        account: &str,
        source: Option<&str>,
        inputs: &[String],
    ) -> Result<Vec<String>> {
        let input = SimulationInput {
            source: source.map(str::to_string),
            policy_inputs: inputs.to_vec(),
            ..Default::default()
        };
        let (sources, _) = self.sources(account, &input)?;
        let c = &sources.collected;
        let mut keys: Vec<String> = Vec::new();
        for (_, p) in c.identity.iter().chain(&c.boundary) {
            for k in p.context_keys() {
                if !keys.iter().any(|x| x.eq_ignore_ascii_case(k)) {
                    keys.push(k.clone());
                }
            }
        }
        Ok(keys)
    }
}

fn refs(v: &[(String, Arc<Policy>)]) -> Vec<PolicyRef<'_>> {
    v.iter()
        .map(|(id, p)| PolicyRef { id, policy: p })
        .collect()
}

fn input_label(id: &str) -> StatementLabel {
    StatementLabel {
        id: id.to_string(),
        kind: INPUT_TYPE,
    }
}

fn result_of(sources: &Sources, set: &PolicySet<'_>, req: &Request<'_>) -> SimResult {
    let ev = evaluate(req, set);
    let matched = ev
        .matched
        .iter()
        .map(|m| {
            let l = sources.label(&m.policy_id);
            StatementRef {
                source_policy_id: l.id,
                source_policy_type: l.kind.to_string(),
                span: m.span,
            }
        })
        .collect();
    let allowed_by_boundary = set.boundary.as_ref().map(|b| {
        let alone = PolicySet {
            identity: vec![*b],
            ..Default::default()
        };
        evaluate(req, &alone).is_allowed()
    });
    let cross_account = req
        .resource_account
        .is_some_and(|a| a != req.principal.account);
    SimResult {
        action: req.action.to_string(),
        resource: req.resource.to_string(),
        decision: ev.decision,
        matched,
        missing_context: missing_context_keys(req, set),
        allowed_by_boundary,
        details: if cross_account {
            cross_details(&ev)
        } else {
            Vec::new()
        },
        cross_account,
    }
}

/// Each side of a cross-account decision, from the one evaluation.
fn cross_details(ev: &Evaluation) -> Vec<(&'static str, Decision)> {
    let side = |kinds: &[PolicyKind]| {
        if ev.decision == Decision::ExplicitDeny
            && ev.matched.iter().any(|m| kinds.contains(&m.kind))
        {
            Decision::ExplicitDeny
        } else if ev.decision == Decision::ExplicitDeny
            || ev.missing.iter().any(|k| kinds.contains(k))
        {
            // The other side's explicit deny ends evaluation before this side's allow is known.
            Decision::ImplicitDeny
        } else {
            Decision::Allow
        }
    };
    vec![
        (
            "IAM Policy",
            side(&[
                PolicyKind::Identity,
                PolicyKind::Boundary,
                PolicyKind::Session,
            ]),
        ),
        ("Resource Policy", side(&[PolicyKind::Resource])),
    ]
}

#[cfg(test)]
mod tests;
