//! Who is calling (from an access key and optional session token) and may
//! they do it (the policy engine over everything that applies).

use std::sync::Arc;

use keycard_policy::{
    Context, Evaluation, Policy, PolicyRef, PolicySet, Principal, PrincipalKind, Request,
};
use keycard_proto::secret::SecretKey;

use crate::error::{Result, ServiceError};
use crate::model::{KeyStatus, PolicyDoc, Tag};
use crate::state::State;
use crate::sts::Session;
use crate::{Keycard, now};

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub account: String,
    pub access_key_id: String,
    pub kind: CallerKind,
}

#[derive(Debug, Clone)]
pub enum CallerKind {
    Root,
    User {
        name: String,
        id: String,
    },
    Session(Arc<Session>),
    Anonymous,
    /// The presenter of a verified web identity token
    /// (AssumeRoleWithWebIdentity), decided by the role's trust policy.
    WebIdentity(Arc<crate::federation::WebIdentity>),
}

impl Caller {
    pub fn root(account: &str, key: &str) -> Caller {
        Caller {
            principal: Principal {
                arn: format!("arn:aws:iam::{account}:root"),
                account: account.into(),
                kind: PrincipalKind::Root,
            },
            account: account.into(),
            access_key_id: key.into(),
            kind: CallerKind::Root,
        }
    }

    pub fn anonymous() -> Caller {
        Caller {
            principal: Principal {
                arn: "*".into(),
                account: String::new(),
                kind: PrincipalKind::Anonymous,
            },
            account: String::new(),
            access_key_id: String::new(),
            kind: CallerKind::Anonymous,
        }
    }

    /// A caller that claimed `key_id` but did not prove it (a failed
    /// signature): anonymous, carrying only the key id for the audit trail.
    pub fn unverified(key_id: &str, account: &str) -> Caller {
        Caller {
            access_key_id: key_id.to_string(),
            account: account.to_string(),
            ..Caller::anonymous()
        }
    }

    /// CloudTrail `userIdentity.type`.
    /// An AWS service acting on its own (EC2 delivering instance roles).
    pub fn service(name: &str) -> Caller {
        Caller {
            principal: Principal {
                arn: name.into(),
                account: String::new(),
                kind: PrincipalKind::Service,
            },
            account: String::new(),
            access_key_id: String::new(),
            kind: CallerKind::Anonymous,
        }
    }

    pub fn identity_type(&self) -> &'static str {
        if self.principal.kind == PrincipalKind::Service {
            return "AWSService";
        }
        match &self.kind {
            CallerKind::Root => "Root",
            CallerKind::User { .. } => "IAMUser",
            CallerKind::Session(s) if s.claims.federated.is_some() => "FederatedUser",
            CallerKind::Session(s) if s.claims.role.is_some() => "AssumedRole",
            CallerKind::Session(s) if s.claims.user.is_some() => "IAMUser",
            CallerKind::Session(_) => "Root",
            CallerKind::Anonymous => "AWSAccount",
            CallerKind::WebIdentity(w) if w.saml => "SAMLUser",
            CallerKind::WebIdentity(_) => "WebIdentityUser",
        }
    }

    /// `aws:userid` / CloudTrail principalId.
    pub fn user_id(&self) -> String {
        match &self.kind {
            CallerKind::Root => self.account.clone(),
            CallerKind::User { id, .. } => id.clone(),
            CallerKind::Session(s) => s.user_id(),
            CallerKind::Anonymous => "anonymous".into(),
            CallerKind::WebIdentity(w) if w.saml => format!("{}:{}", w.provider, w.sub),
            CallerKind::WebIdentity(w) => format!("{}:{}:{}", w.provider, w.aud, w.sub),
        }
    }

    /// The name CloudTrail's Username attribute matches.
    pub fn username(&self) -> String {
        match &self.kind {
            CallerKind::Root => "root".into(),
            CallerKind::User { name, .. } => name.clone(),
            CallerKind::Session(s) if s.claims.federated.is_some() => {
                s.claims.federated.clone().unwrap_or_default()
            }
            CallerKind::Session(s) => match (&s.claims.role, &s.claims.user) {
                (Some(_), _) => s.claims.session_name.clone(),
                (None, Some(u)) => u.clone(),
                (None, None) => "root".into(),
            },
            CallerKind::Anonymous => String::new(),
            CallerKind::WebIdentity(w) => w.sub.clone(),
        }
    }

    pub fn session(&self) -> Option<&Arc<Session>> {
        match &self.kind {
            CallerKind::Session(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_root(&self) -> bool {
        matches!(self.kind, CallerKind::Root)
            || matches!(&self.kind, CallerKind::Session(s) if s.claims.role.is_none() && s.claims.user.is_none() && s.claims.federated.is_none())
    }
}

/// What resource-side policy takes part.
#[derive(Clone, Copy, Debug)]
pub enum ResourcePolicy<'a> {
    None,
    Resource(&'a PolicyDoc),
    Trust(&'a PolicyDoc),
}

/// One authorization a call needs: an action on one resource, with that
/// resource's own condition keys. The keys are layered on the request's
/// context for this check only, so nothing leaks to the next resource.
#[derive(Debug)]
pub struct Check<'a> {
    pub action: &'a str,
    pub resource: String,
    /// Account owning the resource; `None` = the caller's.
    pub account: Option<String>,
    pub keys: Vec<(String, Vec<String>)>,
    pub policy: ResourcePolicy<'a>,
}

impl<'a> Check<'a> {
    pub fn new(action: &'a str, resource: impl Into<String>) -> Check<'a> {
        Check {
            action,
            resource: resource.into(),
            account: None,
            keys: Vec::new(),
            policy: ResourcePolicy::None,
        }
    }

    pub fn account(mut self, account: impl Into<String>) -> Self {
        self.account = Some(account.into());
        self
    }

    /// A single-valued resource key.
    pub fn key(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.keys.push((key.into(), vec![value.into()]));
        self
    }

    /// A multi-valued resource key.
    pub fn key_multi(mut self, key: impl Into<String>, values: Vec<String>) -> Self {
        self.keys.push((key.into(), values));
        self
    }

    /// `aws:ResourceTag/K` (and the service's own prefix, e.g.
    /// `iam:ResourceTag/K`, `ec2:ResourceTag/K`) for each tag.
    pub fn tags(mut self, service_prefix: Option<&str>, tags: &[Tag]) -> Self {
        for t in tags {
            self.keys
                .push((format!("aws:ResourceTag/{}", t.key), vec![t.value.clone()]));
            if let Some(p) = service_prefix {
                self.keys
                    .push((format!("{p}:ResourceTag/{}", t.key), vec![t.value.clone()]));
            }
        }
        self
    }

    pub fn policy(mut self, policy: ResourcePolicy<'a>) -> Self {
        self.policy = policy;
        self
    }
}

/// What one authorization asks: an action on a resource, in a context,
/// against the resource-side policy.
#[derive(Clone, Copy)]
struct Query<'a> {
    action: &'a str,
    resource: &'a str,
    resource_account: Option<&'a str>,
    ctx: &'a Context,
    rp: ResourcePolicy<'a>,
}

/// A decided check, as the audit event lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub action: String,
    pub resource: String,
    pub evaluation: Evaluation,
    /// Condition keys the deciding statements needed that the request
    /// lacked (empty when allowed).
    pub missing_context: Vec<String>,
    /// Set when the call went ahead although the evaluation denied (the
    /// bucket owner's root managing its bucket policy, enforcement off).
    pub overridden_by: Option<&'static str>,
}

impl Decided {
    /// Whether this check lets the call go ahead.
    pub fn permits(&self) -> bool {
        self.evaluation.is_allowed() || self.overridden_by.is_some()
    }
}

/// `overriddenBy` of a denial soft enforcement let through.
pub const SOFT: &str = "soft enforcement";
/// The IAM tag that puts one user or role under soft enforcement.
pub const SOFT_TAG: &str = "keycard:enforcement";

fn invalid_token() -> ServiceError {
    ServiceError::InvalidClientTokenId(
        "The security token included in the request is invalid.".into(),
    )
}

pub(crate) struct Collected {
    pub(crate) identity: Vec<(String, Arc<Policy>)>,
    pub(crate) boundary: Option<(String, Arc<Policy>)>,
    pub(crate) session: Vec<(String, Arc<Policy>)>,
}

pub(crate) fn push_managed(st: &State, arns: &[String], out: &mut Vec<(String, Arc<Policy>)>) {
    for arn in arns {
        if let Some(c) = st
            .policies
            .get(arn)
            .and_then(|p| p.default_doc())
            .and_then(|d| d.compiled.clone())
        {
            out.push((arn.clone(), c));
        }
    }
}

pub(crate) fn push_inline(
    owner_arn: &str,
    m: &std::collections::BTreeMap<String, PolicyDoc>,
    out: &mut Vec<(String, Arc<Policy>)>,
) {
    for (name, d) in m {
        if let Some(c) = &d.compiled {
            out.push((format!("{owner_arn}#inline/{name}"), c.clone()));
        }
    }
}

pub(crate) fn boundary_of(st: &State, arn: Option<&String>) -> Option<(String, Arc<Policy>)> {
    let arn = arn?;
    match st
        .policies
        .get(arn)
        .and_then(|p| p.default_doc())
        .and_then(|d| d.compiled.clone())
    {
        Some(c) => Some((arn.clone(), c)),
        // A boundary that no longer resolves allows nothing.
        None => Some((
            arn.clone(),
            Arc::new(
                Policy::parse(
                    "{\"Version\":\"2012-10-17\",\"Statement\":[]}",
                    keycard_policy::PolicyKind::Boundary,
                )
                .ok()?,
            ),
        )),
    }
}

pub(crate) fn collect_user(st: &State, account: &str, name: &str, out: &mut Collected) {
    if let Some(u) = st.user(account, name) {
        let arn = u.arn();
        push_inline(&arn, &u.inline, &mut out.identity);
        push_managed(st, &u.attached, &mut out.identity);
        for g in &u.groups {
            if let Some(g) = st.group(account, g) {
                push_inline(&g.arn(), &g.inline, &mut out.identity);
                push_managed(st, &g.attached, &mut out.identity);
            }
        }
        out.boundary = boundary_of(st, u.boundary.as_ref());
    }
}

impl Keycard {
    /// Resolve an access key (and session token) to its secret and caller.
    /// Temporary keys need no store read: the token carries everything.
    pub fn credentials(&self, key_id: &str, token: Option<&str>) -> Result<(SecretKey, Caller)> {
        if key_id.starts_with("ASIA") {
            let token = token.ok_or_else(invalid_token)?;
            let session = self.open_session(token)?;
            if session.claims.access_key_id != key_id {
                return Err(invalid_token());
            }
            if session.claims.expires <= now() {
                return Err(ServiceError::ExpiredToken(
                    "The security token included in the request is expired".into(),
                ));
            }
            self.check_instance_session(&session)?;
            let caller = self.session_caller(session.clone());
            return Ok((session.secret.clone(), caller));
        }
        let st = self.state();
        let key = st.access_keys.get(key_id).ok_or_else(invalid_token)?;
        if key.status != KeyStatus::Active {
            return Err(invalid_token());
        }
        let secret = st.secrets.get(key_id).cloned().ok_or_else(invalid_token)?;
        let caller = match &key.user {
            None => Caller::root(&key.account, key_id),
            Some(name) => {
                let u = st.user(&key.account, name).ok_or_else(invalid_token)?;
                Caller {
                    principal: Principal {
                        arn: u.arn(),
                        account: key.account.clone(),
                        kind: PrincipalKind::User,
                    },
                    account: key.account.clone(),
                    access_key_id: key_id.into(),
                    kind: CallerKind::User {
                        name: u.name.clone(),
                        id: u.id.clone(),
                    },
                }
            }
        };
        Ok((secret, caller))
    }

    pub(crate) fn session_caller(&self, s: Arc<Session>) -> Caller {
        let c = &s.claims;
        let principal = match (&c.role, &c.user) {
            _ if c.federated.is_some() => Principal {
                arn: format!(
                    "arn:aws:sts::{}:federated-user/{}",
                    c.account,
                    c.federated.as_deref().unwrap_or_default()
                ),
                account: c.account.clone(),
                kind: PrincipalKind::FederatedUser,
            },
            (Some(r), _) => Principal {
                arn: format!(
                    "arn:aws:sts::{}:assumed-role/{}/{}",
                    c.account, r.name, c.session_name
                ),
                account: c.account.clone(),
                kind: PrincipalKind::AssumedRole {
                    role_arn: r.arn.clone(),
                },
            },
            (None, Some(u)) => Principal {
                arn: self
                    .state()
                    .user(&c.account, u)
                    .map(|u| u.arn())
                    .unwrap_or_else(|| format!("arn:aws:iam::{}:user/{u}", c.account)),
                account: c.account.clone(),
                kind: PrincipalKind::User,
            },
            (None, None) => Principal {
                arn: format!("arn:aws:iam::{}:root", c.account),
                account: c.account.clone(),
                kind: PrincipalKind::Root,
            },
        };
        Caller {
            principal,
            account: c.account.clone(),
            access_key_id: c.access_key_id.clone(),
            kind: CallerKind::Session(s),
        }
    }

    /// The caller's principal keys, added to a request context.
    pub fn add_caller_context(&self, caller: &Caller, ctx: &mut Context) {
        ctx.insert("aws:PrincipalAccount", caller.account.clone());
        ctx.insert("aws:userid", caller.user_id());
        let st = self.state();
        let mut tags: Vec<Tag> = Vec::new();
        match &caller.kind {
            CallerKind::Root => {
                ctx.insert("aws:PrincipalArn", caller.principal.arn.clone());
                ctx.insert("aws:PrincipalType", "Account");
            }
            CallerKind::User { name, .. } => {
                ctx.insert("aws:PrincipalArn", caller.principal.arn.clone());
                ctx.insert("aws:PrincipalType", "User");
                ctx.insert("aws:username", name.clone());
                if let Some(u) = st.user(&caller.account, name) {
                    tags = u.tags.clone();
                }
            }
            CallerKind::Session(s) => {
                let c = &s.claims;
                ctx.insert("aws:MultiFactorAuthPresent", c.mfa.to_string());
                if c.mfa {
                    let age = crate::now().saturating_sub(c.issued);
                    ctx.insert("aws:MultiFactorAuthAge", age.to_string());
                }
                ctx.insert("aws:TokenIssueTime", crate::sts::iso8601(c.issued));
                if let Some(si) = &c.source_identity {
                    ctx.insert("aws:SourceIdentity", si.clone());
                }
                match (&c.role, &c.user) {
                    (Some(r), _) => {
                        ctx.insert("aws:PrincipalArn", r.arn.clone());
                        ctx.insert("aws:PrincipalType", "AssumedRole");
                        if let Some(role) = st.role(&c.account, &r.name) {
                            tags = role.tags.clone();
                        }
                    }
                    (None, Some(u)) => {
                        ctx.insert("aws:PrincipalArn", caller.principal.arn.clone());
                        ctx.insert("aws:PrincipalType", "User");
                        ctx.insert("aws:username", u.clone());
                        if let Some(u) = st.user(&c.account, u) {
                            tags = u.tags.clone();
                        }
                    }
                    (None, None) => {
                        ctx.insert("aws:PrincipalArn", caller.principal.arn.clone());
                        ctx.insert("aws:PrincipalType", "Account");
                    }
                }
                if c.federated.is_some() {
                    ctx.insert("aws:PrincipalArn", caller.principal.arn.clone());
                    ctx.insert("aws:PrincipalType", "FederatedUser");
                }
                // Session tags override the identity's tags of the same key.
                for t in &c.tags {
                    tags.retain(|x| !x.key.eq_ignore_ascii_case(&t.key));
                    tags.push(t.clone());
                }
                if let Some(i) = &c.instance {
                    ctx.insert(
                        "ec2:SourceInstanceARN",
                        format!(
                            "arn:aws:ec2:{}:{}:instance/{}",
                            self.config.region, c.account, i.id
                        ),
                    );
                    ctx.insert("ec2:RoleDelivery", i.delivery.clone());
                    if let Some(ip) = &i.private_ip {
                        ctx.insert("aws:Ec2InstanceSourcePrivateIPv4", ip.clone());
                    }
                    if let Some(vpc) = crate::binding::instance_vpc(&st, &i.id) {
                        ctx.insert("aws:Ec2InstanceSourceVpc", vpc);
                    }
                }
            }
            CallerKind::Anonymous => {
                ctx.insert("aws:PrincipalType", "Anonymous");
            }
            CallerKind::WebIdentity(_) => {
                ctx.insert("aws:PrincipalType", caller.identity_type());
            }
        }
        for t in tags {
            ctx.insert(&format!("aws:PrincipalTag/{}", t.key), t.value);
        }
    }

    /// A call was made with the caller's credentials: a long-term key's
    /// last use moves, and a call signed with a role session is the role
    /// being used (its `RoleLastUsed` moves), with service and region.
    pub fn touch_credentials(&self, caller: &Caller, service: &str, region: &str, source_ip: &str) {
        match &caller.kind {
            CallerKind::Session(s) => {
                if let Some(role) = &s.claims.role {
                    self.touch_role(&s.claims.account, &role.name, &role.id, region);
                }
            }
            _ if !caller.access_key_id.is_empty() => {
                self.touch_access_key(&caller.access_key_id, service, region);
                self.note_key_source(&caller.access_key_id, source_ip);
            }
            _ => {}
        }
    }

    /// Decide a request: the caller's identity policies, boundary and
    /// session policies against the resource-side policy.
    pub fn authorize(
        &self,
        caller: &Caller,
        action: &str,
        resource: &str,
        resource_account: Option<&str>,
        ctx: &Context,
        rp: ResourcePolicy<'_>,
    ) -> Evaluation {
        let q = Query {
            action,
            resource,
            resource_account,
            ctx,
            rp,
        };
        self.evaluate_with(caller, q, keycard_policy::evaluate)
    }

    /// [`Keycard::authorize`], plus, when it does not allow, the condition
    /// keys its statements needed that the request lacked (the denial
    /// report's `missingContextKeys`). Computed only on denial: the
    /// allowed path stays one evaluation.
    fn authorize_explained(&self, caller: &Caller, q: Query<'_>) -> (Evaluation, Vec<String>) {
        self.evaluate_with(caller, q, |req, set| {
            let e = keycard_policy::evaluate(req, set);
            let missing = if e.is_allowed() {
                Vec::new()
            } else {
                keycard_policy::missing_context_keys(req, set)
            };
            (e, missing)
        })
    }

    /// Collect the caller's policies and hand the request and the policy
    /// set to `f`.
    fn evaluate_with<T>(
        &self,
        caller: &Caller,
        q: Query<'_>,
        f: impl FnOnce(&Request<'_>, &PolicySet<'_>) -> T,
    ) -> T {
        let Query {
            action,
            resource,
            resource_account,
            ctx,
            rp,
        } = q;
        let mut col = Collected {
            identity: Vec::new(),
            boundary: None,
            session: Vec::new(),
        };
        let rp_compiled: Option<Arc<Policy>> = match rp {
            ResourcePolicy::None => None,
            ResourcePolicy::Resource(d) | ResourcePolicy::Trust(d) => d.compiled.clone(),
        };
        {
            let st = self.state();
            match &caller.kind {
                CallerKind::Root | CallerKind::Anonymous | CallerKind::WebIdentity(_) => {}
                CallerKind::User { name, .. } => collect_user(&st, &caller.account, name, &mut col),
                CallerKind::Session(s) => {
                    let c = &s.claims;
                    match (&c.role, &c.user) {
                        (Some(r), _) => {
                            // The role as it is now: detaching a policy takes
                            // effect on the very next request.
                            if let Some(role) =
                                st.role(&c.account, &r.name).filter(|x| x.id == r.id)
                            {
                                let arn = role.arn();
                                push_inline(&arn, &role.inline, &mut col.identity);
                                push_managed(&st, &role.attached, &mut col.identity);
                                col.boundary = boundary_of(&st, role.boundary.as_ref());
                            }
                        }
                        (None, Some(u)) => collect_user(&st, &c.account, u, &mut col),
                        // A federated user of the root: the root's all, cut
                        // down by the session policies.
                        (None, None) if c.federated.is_some() => {
                            if let Some(p) = crate::federation::allow_all() {
                                col.identity.push(("root".into(), p));
                            }
                        }
                        (None, None) => {}
                    }
                    if let Some(p) = &s.session_policy {
                        col.session.push(("session-policy".into(), p.clone()));
                    }
                    push_managed(&st, &c.policy_arns, &mut col.session);
                    if (s.session_policy.is_some() || !c.policy_arns.is_empty())
                        && col.session.is_empty()
                    {
                        // Session policies were given but none resolves: allow nothing.
                        if let Ok(p) = Policy::parse(
                            "{\"Version\":\"2012-10-17\",\"Statement\":[]}",
                            keycard_policy::PolicyKind::Session,
                        ) {
                            col.session.push(("session-policy".into(), Arc::new(p)));
                        }
                    }
                }
            }
        }
        let identity: Vec<PolicyRef<'_>> = col
            .identity
            .iter()
            .map(|(id, p)| PolicyRef { id, policy: p })
            .collect();
        let session: Vec<PolicyRef<'_>> = col
            .session
            .iter()
            .map(|(id, p)| PolicyRef { id, policy: p })
            .collect();
        let boundary = col
            .boundary
            .as_ref()
            .map(|(id, p)| PolicyRef { id, policy: p });
        let rp_ref = rp_compiled.as_ref().map(|p| PolicyRef {
            id: if matches!(rp, ResourcePolicy::Trust(_)) {
                "trust-policy"
            } else {
                "resource-policy"
            },
            policy: p,
        });
        let (resource_policy, trust) = match rp {
            ResourcePolicy::Trust(_) => (None, rp_ref),
            _ => (rp_ref, None),
        };
        let set = PolicySet {
            identity,
            resource: resource_policy,
            trust,
            boundary,
            session,
            scps: Vec::new(),
        };
        let req = Request {
            principal: &caller.principal,
            action,
            resource,
            resource_account,
            context: ctx,
        };
        f(&req, &set)
    }

    /// Decide one check: the request's context with the check's own keys
    /// layered on top.
    pub fn decide(&self, caller: &Caller, base: &Arc<Context>, check: &Check<'_>) -> Decided {
        let mut ctx = Context::over(base.clone());
        ctx.reserve(check.keys.len());
        for (k, v) in &check.keys {
            ctx.insert_multi(k, v.clone());
        }
        let q = Query {
            action: check.action,
            resource: &check.resource,
            resource_account: check.account.as_deref(),
            ctx: &ctx,
            rp: check.policy,
        };
        let (evaluation, missing_context) = self.authorize_explained(caller, q);
        Decided {
            action: check.action.to_string(),
            resource: check.resource.clone(),
            evaluation,
            missing_context,
            overridden_by: None,
        }
    }

    /// [`Keycard::decide`] for a call that goes ahead only if allowed, unless
    /// enforcement is off (moto compat): then a denial is kept in the
    /// decision and marked as overridden. Returns the decision and, when
    /// it refuses the call, AWS's AccessDenied message.
    pub fn decide_enforced(
        &self,
        caller: &Caller,
        base: &Arc<Context>,
        check: &Check<'_>,
        enforce: bool,
    ) -> (Decided, Option<String>) {
        let mut d = self.decide(caller, base, check);
        if !enforce && !d.evaluation.is_allowed() {
            d.overridden_by = Some("enforcement off");
        } else if !d.evaluation.is_allowed() && self.is_soft(caller) {
            d.overridden_by = Some(SOFT);
            self.explain_soft(caller, &d);
        }
        let msg = (!d.permits())
            .then(|| Self::denied_message(caller, &d.action, &d.resource, &d.evaluation));
        (d, msg)
    }

    /// [`Keycard::decide_enforced`] of `check` once per action (a session
    /// request with tags or a source identity is also a TagSession /
    /// SetSourceIdentity), every decision kept in `decided` for the audit
    /// event. Stops at the first refusal and returns its message.
    pub fn decide_each(
        &self,
        caller: &Caller,
        base: &Arc<Context>,
        mut check: Check<'_>,
        actions: &[&'static str],
        enforce: bool,
        decided: &mut Vec<Decided>,
    ) -> Option<String> {
        for action in actions {
            check.action = action;
            let (d, refused) = self.decide_enforced(caller, base, &check, enforce);
            decided.push(d);
            if refused.is_some() {
                return refused;
            }
        }
        None
    }

    /// Whether soft enforcement applies to the caller: everyone with
    /// `--enforcement soft`, else principals listed with `--soft-principal`
    /// or whose IAM user / role carries the tag `keycard:enforcement=soft`.
    /// Read from the entity, never from session tags, so a caller cannot
    /// tag its own session out of enforcement.
    pub fn is_soft(&self, caller: &Caller) -> bool {
        if self.config.soft_enforcement {
            return true;
        }
        let st = self.state();
        let (arn, tags) = match &caller.kind {
            CallerKind::User { name, .. } => (
                caller.principal.arn.clone(),
                st.user(&caller.account, name).map(|u| u.tags.clone()),
            ),
            CallerKind::Session(s) => match &s.claims.role {
                Some(r) => (
                    r.arn.clone(),
                    st.role(&s.claims.account, &r.name).map(|x| x.tags.clone()),
                ),
                None => (caller.principal.arn.clone(), None),
            },
            _ => (caller.principal.arn.clone(), None),
        };
        self.config.soft_principals.contains(&arn)
            || tags.unwrap_or_default().iter().any(|t| {
                t.key.eq_ignore_ascii_case(SOFT_TAG) && t.value.eq_ignore_ascii_case("soft")
            })
    }

    /// LocalStack's "explainable IAM", for a call soft enforcement let
    /// through: what was needed, and what denied it.
    fn explain_soft(&self, caller: &Caller, d: &Decided) {
        let e = &d.evaluation;
        let denied_by: Vec<String> = e
            .matched
            .iter()
            .filter(|m| m.effect == keycard_policy::Effect::Deny)
            .map(|m| format!("{}#{}", m.policy_id, m.sid.as_deref().unwrap_or("")))
            .collect();
        let missing: Vec<&str> = e.missing.iter().map(|k| k.description()).collect();
        tracing::warn!(
            principal = %caller.principal.arn,
            action = %d.action,
            resource = %d.resource,
            decision = e.decision.as_str(),
            explicitly_denied_by = ?denied_by,
            not_allowed_by = ?missing,
            "soft enforcement: would be denied ({})",
            e.reason(&d.action)
        );
    }

    /// AWS's AccessDenied message for a denied evaluation.
    pub fn denied_message(
        caller: &Caller,
        action: &str,
        resource: &str,
        eval: &Evaluation,
    ) -> String {
        format!(
            "User: {} is not authorized to perform: {action} on resource: {resource} {}",
            caller.principal.arn,
            eval.reason(action)
        )
    }
}

/// Whether the AWS service principal `service` may do `action` on
/// `resource` under one policy: a role's trust policy (`as_trust`) or a
/// resource's policy. Used where keycard acts as the service itself (EC2
/// assuming an instance's role, CloudTrail writing to a bucket).
pub(crate) fn service_allowed(
    service: &str,
    policy: &Policy,
    as_trust: bool,
    req: (&str, &str, &str),
    mut ctx: Context,
) -> bool {
    let (action, resource, resource_account) = req;
    let principal = Principal {
        arn: service.into(),
        account: String::new(),
        kind: PrincipalKind::Service,
    };
    ctx.insert("aws:PrincipalServiceName", service);
    ctx.insert("aws:PrincipalIsAWSService", "true");
    let one = Some(PolicyRef {
        id: if as_trust {
            "trust-policy"
        } else {
            "resource-policy"
        },
        policy,
    });
    let set = PolicySet {
        identity: Vec::new(),
        resource: if as_trust { None } else { one },
        trust: if as_trust { one } else { None },
        boundary: None,
        session: Vec::new(),
        scps: Vec::new(),
    };
    keycard_policy::evaluate(
        &Request {
            principal: &principal,
            action,
            resource,
            resource_account: Some(resource_account),
            context: &ctx,
        },
        &set,
    )
    .is_allowed()
}

#[cfg(test)]
mod secret_tests {
    use super::*;
    use crate::Config;
    use crate::sts::{Credentials, RoleRef, SessionClaims};

    const ROOT_SECRET: &str = "rootSecretwJalrXUtnFEMIK7MDENGbPxRfiCY";
    const SESSION_SECRET: &str = "sessionSecretZZtnFEMIK7MDENGbPxRfiCYab";
    const SESSION_TOKEN: &str = "FwoGZXIvYXdzEXAMPLEsessiontoken";

    fn claims(role: Option<RoleRef>, user: Option<String>) -> SessionClaims {
        SessionClaims {
            access_key_id: "ASIAEXAMPLE".into(),
            secret: SecretKey::new(SESSION_SECRET.into()),
            account: "123456789012".into(),
            issued: 0,
            expires: 3600,
            role,
            user,
            session_name: "s".into(),
            policy: None,
            policy_arns: Vec::new(),
            tags: Vec::new(),
            source_identity: None,
            chained: false,
            instance: None,
            mfa: false,
            federated: None,
        }
    }

    fn session_caller(claims: SessionClaims) -> Caller {
        let mut c = Caller::root("123456789012", "ASIAEXAMPLE");
        c.kind = CallerKind::Session(Arc::new(Session {
            secret: claims.secret.clone(),
            claims,
            session_policy: None,
        }));
        c
    }

    fn assert_no_secret(what: &str, text: &str) {
        for secret in [ROOT_SECRET, SESSION_SECRET, SESSION_TOKEN] {
            assert!(!text.contains(secret), "{what} shows a secret: {text}");
        }
    }

    #[test]
    fn debug_of_every_caller_kind_and_config_shows_no_secret() {
        let role = RoleRef {
            name: "r".into(),
            id: "AROAEXAMPLE".into(),
            arn: "arn:aws:iam::123456789012:role/r".into(),
        };
        let mut user = Caller::root("123456789012", "AKIAEXAMPLE");
        user.kind = CallerKind::User {
            name: "alice".into(),
            id: "AIDAEXAMPLE".into(),
        };
        let callers = [
            ("root", Caller::root("123456789012", "AKIAEXAMPLE")),
            ("user", user),
            ("role session", session_caller(claims(Some(role), None))),
            (
                "user session",
                session_caller(claims(None, Some("alice".into()))),
            ),
            ("root session", session_caller(claims(None, None))),
            ("anonymous", Caller::anonymous()),
            ("service", Caller::service("ec2.amazonaws.com")),
        ];
        for (what, caller) in &callers {
            assert_no_secret(what, &format!("{caller:?}"));
            assert_no_secret(what, &format!("{caller:#?}"));
        }
        // The session callers do carry the secret, only not in Debug.
        let (_, role_session) = &callers[2];
        let session = role_session.session().expect("session");
        assert_eq!(session.secret.expose(), SESSION_SECRET);
        assert_eq!(session.claims.secret.expose(), SESSION_SECRET);

        let mut config = Config::new("/tmp/kc");
        config.root_access_key_id = Some("AKIAEXAMPLE".into());
        config.root_secret_access_key = Some(SecretKey::new(ROOT_SECRET.into()));
        let text = format!("{config:?}");
        assert_no_secret("config", &text);
        assert!(text.contains("root_secret_access_key: Some(***)"), "{text}");

        let creds = Credentials {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: SecretKey::new(SESSION_SECRET.into()),
            session_token: SESSION_TOKEN.into(),
            expiration: 0,
        };
        assert_no_secret("credentials", &format!("{creds:?}"));
    }

    #[test]
    fn session_claims_keep_their_wire_format() {
        let c = claims(None, None);
        let json = serde_json::to_value(&c).expect("ser");
        assert_eq!(json["s"], SESSION_SECRET);
        let back: SessionClaims = serde_json::from_value(json).expect("de");
        assert_eq!(back.secret.expose(), SESSION_SECRET);
    }
}
