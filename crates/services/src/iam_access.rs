//! Service last accessed details (IAM access advisor), computed from the
//! audit trail: for a user, role, group or managed policy, every service
//! its policies grant, with the last time an entity it covers called it
//! (denied attempts count, as on AWS), and per action at ACTION_LEVEL.
//! No HTTP here.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use keycard_store::AuditQuery;
use serde_json::Value;

use crate::error::{Result, ServiceError};
use crate::model::*;
use crate::state::State;
use crate::{Keycard, now};

/// How many audit events one job reads at most (newest first).
const MAX_EVENTS: usize = 200_000;
const PAGE: u32 = 5_000;

/// `SERVICE_LEVEL` or `ACTION_LEVEL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Service,
    Action,
}

impl Granularity {
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Service => "SERVICE_LEVEL",
            Granularity::Action => "ACTION_LEVEL",
        }
    }
}

/// The last access to one action of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionAccess {
    pub action: String,
    pub entity: String,
    pub time: Epoch,
    pub region: String,
}

/// One service in the report. `last` is `None` for a granted service
/// nobody covered by the entity has called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccess {
    pub namespace: String,
    pub name: String,
    pub last: Option<ActionAccess>,
    pub total_entities: usize,
    /// ACTION_LEVEL only.
    pub actions: Vec<ActionAccess>,
}

/// A finished job, readable only by the principal that generated it.
#[derive(Debug, Clone)]
pub struct AccessJob {
    pub owner: String,
    pub granularity: Granularity,
    pub created: Epoch,
    pub completed: Epoch,
    pub services: Vec<ServiceAccess>,
    /// The users and roles the job's entity covers, for
    /// GetServiceLastAccessedDetailsWithEntities.
    pub covered: Vec<EntityRef>,
    /// Per service namespace: each covered principal's last access.
    pub by_entity: BTreeMap<String, BTreeMap<String, Epoch>>,
}

/// A user or role a job covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityRef {
    pub arn: String,
    pub name: String,
    /// `USER` or `ROLE`.
    pub kind: &'static str,
    pub id: String,
    pub path: String,
}

impl AccessJob {
    /// Every covered entity with its last access to `namespace`.
    pub fn entities(&self, namespace: &str) -> Vec<(EntityRef, Option<Epoch>)> {
        let seen = self.by_entity.get(namespace);
        self.covered
            .iter()
            .map(|e| (e.clone(), seen.and_then(|m| m.get(&e.arn)).copied()))
            .collect()
    }
}

/// One policy that grants a service, as ListPoliciesGrantingServiceAccess
/// lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantingPolicy {
    pub name: String,
    /// `INLINE` or `MANAGED`.
    pub kind: &'static str,
    /// Managed policies only.
    pub arn: Option<String>,
    /// Inline policies only: `USER`, `GROUP` or `ROLE`, and its name.
    pub entity: Option<(&'static str, String)>,
}

/// Jobs by id (in memory: a job is a computed view of the audit trail).
pub type AccessJobs = std::sync::Mutex<HashMap<String, AccessJob>>;

/// Services keycard serves, listed for an `Action: "*"` grant.
const SERVED: &[&str] = &["cloudtrail", "ec2", "iam", "s3", "sts"];

/// AWS's display name of a service namespace.
pub fn service_name(ns: &str) -> String {
    match ns {
        "iam" => "AWS Identity and Access Management",
        "sts" => "AWS Security Token Service",
        "s3" => "Amazon S3",
        "ec2" => "Amazon EC2",
        "cloudtrail" => "AWS CloudTrail",
        other => other,
    }
    .to_string()
}

/// Service prefixes an identity policy's Allow statements name.
fn granted(doc: &str, out: &mut BTreeSet<String>) {
    let Ok(v) = serde_json::from_str::<Value>(doc) else {
        return;
    };
    let stmts = match v.get("Statement") {
        Some(Value::Array(a)) => a.clone(),
        Some(s) => vec![s.clone()],
        None => Vec::new(),
    };
    for s in stmts {
        if s.get("Effect").and_then(Value::as_str) != Some("Allow") {
            continue;
        }
        let actions = match s.get("Action").or_else(|| s.get("NotAction")) {
            Some(Value::String(a)) => vec![a.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect(),
            _ => Vec::new(),
        };
        let not = s.get("NotAction").is_some();
        for a in actions {
            match a.split_once(':') {
                Some((svc, _)) if !not && !svc.contains('*') => {
                    out.insert(svc.to_ascii_lowercase());
                }
                _ => out.extend(SERVED.iter().map(|s| s.to_string())),
            }
        }
    }
}

/// The entity an ARN names: the principals it covers and the policy
/// documents that grant to it.
struct Subject {
    principals: BTreeSet<String>,
    docs: Vec<String>,
}

fn docs_of(st: &State, inline: &BTreeMap<String, PolicyDoc>, attached: &[String]) -> Vec<String> {
    inline
        .values()
        .map(|d| d.text.clone())
        .chain(
            attached
                .iter()
                .filter_map(|a| st.policies.get(a).and_then(|p| p.default_doc()))
                .map(|d| d.text.clone()),
        )
        .collect()
}

fn not_found(arn: &str) -> ServiceError {
    ServiceError::NoSuchEntity(format!("The entity {arn} cannot be found."))
}

/// The account and resource (`user/PATH/NAME`, …) of an IAM ARN.
pub(crate) fn split_iam_arn(arn: &str) -> Option<(&str, &str)> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_), Some("iam"), Some(_), Some(acct), Some(rest)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    Some((acct, rest))
}

fn subject(st: &State, account: &str, arn: &str) -> Result<Subject> {
    let invalid = || ServiceError::InvalidInput(format!("ARN {arn} is not valid."));
    let (acct, rest) = split_iam_arn(arn).ok_or_else(invalid)?;
    let name = rest.rsplit('/').next().unwrap_or("");
    let kind = rest.split('/').next().unwrap_or("");
    if kind == "policy" {
        if acct != account && acct != "aws" {
            return Err(not_found(arn));
        }
        let p = st.policies.get(arn).ok_or_else(|| not_found(arn))?;
        let mut principals = BTreeSet::new();
        for u in st.users.values().filter(|u| u.account == account) {
            let via_group = u.groups.iter().any(|g| {
                st.group(account, g)
                    .is_some_and(|g| g.attached.iter().any(|a| a == arn))
            });
            if via_group || u.attached.iter().any(|a| a == arn) {
                principals.insert(u.arn());
            }
        }
        for r in st.roles.values().filter(|r| r.account == account) {
            if r.attached.iter().any(|a| a == arn) {
                principals.insert(r.arn());
            }
        }
        let docs = p
            .default_doc()
            .map(|d| d.text.clone())
            .into_iter()
            .collect();
        return Ok(Subject { principals, docs });
    }
    if acct != account {
        return Err(not_found(arn));
    }
    match kind {
        "user" => {
            let u = st
                .user(account, name)
                .filter(|u| u.arn() == arn)
                .ok_or_else(|| not_found(arn))?;
            let mut docs = docs_of(st, &u.inline, &u.attached);
            for g in &u.groups {
                if let Some(g) = st.group(account, g) {
                    docs.extend(docs_of(st, &g.inline, &g.attached));
                }
            }
            Ok(Subject {
                principals: BTreeSet::from([u.arn()]),
                docs,
            })
        }
        "role" => {
            let r = st
                .role(account, name)
                .filter(|r| r.arn() == arn)
                .ok_or_else(|| not_found(arn))?;
            Ok(Subject {
                principals: BTreeSet::from([r.arn()]),
                docs: docs_of(st, &r.inline, &r.attached),
            })
        }
        "group" => {
            let g = st
                .group(account, name)
                .filter(|g| g.arn() == arn)
                .ok_or_else(|| not_found(arn))?;
            let principals = st
                .users
                .values()
                .filter(|u| {
                    u.account == account && u.groups.iter().any(|x| x.eq_ignore_ascii_case(&g.name))
                })
                .map(User::arn)
                .collect();
            Ok(Subject {
                principals,
                docs: docs_of(st, &g.inline, &g.attached),
            })
        }
        _ => Err(invalid()),
    }
}

/// The principal an event was made by: the user, or the role behind a
/// role session.
fn event_principal(body: &Value) -> Option<String> {
    let id = body.get("userIdentity")?;
    if let Some(issuer) = id
        .get("sessionContext")
        .and_then(|s| s.get("sessionIssuer"))
        .and_then(|s| s.get("arn"))
        .and_then(Value::as_str)
    {
        return Some(issuer.to_string());
    }
    id.get("arn").and_then(Value::as_str).map(String::from)
}

/// Fold one event into the per-service (and per-action) latest access.
#[derive(Default)]
struct Tally {
    last: BTreeMap<String, ActionAccess>,
    by_entity: BTreeMap<String, BTreeMap<String, Epoch>>,
    entities: BTreeMap<String, BTreeSet<String>>,
    actions: BTreeMap<String, BTreeMap<String, ActionAccess>>,
}

impl Tally {
    fn add(&mut self, ns: &str, a: ActionAccess) {
        let newer = |old: &ActionAccess| a.time > old.time;
        let e = self
            .by_entity
            .entry(ns.to_string())
            .or_default()
            .entry(a.entity.clone())
            .or_insert(a.time);
        *e = (*e).max(a.time);
        self.entities
            .entry(ns.to_string())
            .or_default()
            .insert(a.entity.clone());
        let per = self.actions.entry(ns.to_string()).or_default();
        if per.get(&a.action).is_none_or(newer) {
            per.insert(a.action.clone(), a.clone());
        }
        if self.last.get(ns).is_none_or(newer) {
            self.last.insert(ns.to_string(), a);
        }
    }
}

/// The users and roles behind principal ARNs.
fn covered_refs(st: &State, account: &str, principals: &BTreeSet<String>) -> Vec<EntityRef> {
    let users = st
        .users
        .values()
        .filter(|u| u.account == account && principals.contains(&u.arn()))
        .map(|u| EntityRef {
            arn: u.arn(),
            name: u.name.clone(),
            kind: "USER",
            id: u.id.clone(),
            path: u.path.clone(),
        });
    let roles = st
        .roles
        .values()
        .filter(|r| r.account == account && principals.contains(&r.arn()))
        .map(|r| EntityRef {
            arn: r.arn(),
            name: r.name.clone(),
            kind: "ROLE",
            id: r.id.clone(),
            path: r.path.clone(),
        });
    users.chain(roles).collect()
}

/// An identity holding policies: its kind, name, inline and attached.
type PolicyHolder<'a> = (
    &'static str,
    &'a str,
    &'a BTreeMap<String, PolicyDoc>,
    &'a [String],
);

/// The policies of one holder (inline and attached) that grant `ns`.
fn holder_grants(
    st: &State,
    ns: &str,
    (kind, name): (&'static str, &str),
    inline: &BTreeMap<String, PolicyDoc>,
    attached: &[String],
    out: &mut Vec<GrantingPolicy>,
) {
    let grants = |doc: &str| {
        let mut s = BTreeSet::new();
        granted(doc, &mut s);
        s.contains(ns)
    };
    for (n, d) in inline {
        if grants(&d.text) {
            out.push(GrantingPolicy {
                name: n.clone(),
                kind: "INLINE",
                arn: None,
                entity: Some((kind, name.to_string())),
            });
        }
    }
    for a in attached {
        if let Some(p) = st.policies.get(a)
            && p.default_doc().is_some_and(|d| grants(&d.text))
            && !out.iter().any(|g| g.arn.as_deref() == Some(a))
        {
            out.push(GrantingPolicy {
                name: p.name.clone(),
                kind: "MANAGED",
                arn: Some(a.clone()),
                entity: None,
            });
        }
    }
}

impl Keycard {
    /// ListPoliciesGrantingServiceAccess: per namespace, the policies of
    /// a user (with its groups'), group or role that grant it.
    pub fn policies_granting(
        &self,
        account: &str,
        arn: &str,
        namespaces: &[String],
    ) -> Result<Vec<(String, Vec<GrantingPolicy>)>> {
        let st = self.state();
        let invalid = || ServiceError::InvalidInput(format!("ARN {arn} is not valid."));
        let (acct, rest) = split_iam_arn(arn).ok_or_else(invalid)?;
        if acct != account {
            return Err(not_found(arn));
        }
        let name = rest.rsplit('/').next().unwrap_or("");
        // The holders whose policies count: (kind, name, inline, attached).
        let mut holders: Vec<PolicyHolder> = Vec::new();
        match rest.split('/').next().unwrap_or("") {
            "user" => {
                let u = st
                    .user(account, name)
                    .filter(|u| u.arn() == arn)
                    .ok_or_else(|| not_found(arn))?;
                holders.push(("USER", &u.name, &u.inline, &u.attached));
                for g in u.groups.iter().filter_map(|g| st.group(account, g)) {
                    holders.push(("GROUP", &g.name, &g.inline, &g.attached));
                }
            }
            "group" => {
                let g = st
                    .group(account, name)
                    .filter(|g| g.arn() == arn)
                    .ok_or_else(|| not_found(arn))?;
                holders.push(("GROUP", &g.name, &g.inline, &g.attached));
            }
            "role" => {
                let r = st
                    .role(account, name)
                    .filter(|r| r.arn() == arn)
                    .ok_or_else(|| not_found(arn))?;
                holders.push(("ROLE", &r.name, &r.inline, &r.attached));
            }
            _ => return Err(invalid()),
        }
        Ok(namespaces
            .iter()
            .map(|ns| {
                let mut list = Vec::new();
                for (kind, n, inline, attached) in &holders {
                    holder_grants(&st, ns, (kind, n), inline, attached, &mut list);
                }
                (ns.clone(), list)
            })
            .collect())
    }

    /// GenerateServiceLastAccessedDetails: compute the report now and keep
    /// it under a new job id for `owner` (the calling principal's ARN).
    pub async fn generate_service_last_accessed(
        &self,
        account: &str,
        arn: &str,
        granularity: Granularity,
        owner: &str,
    ) -> Result<String> {
        let created = now();
        let subject = subject(&self.state(), account, arn)?;
        let mut services = BTreeSet::new();
        for d in &subject.docs {
            granted(d, &mut services);
        }
        let tally = self.tally(account, &subject.principals).await?;
        let services = services
            .into_iter()
            .map(|ns| ServiceAccess {
                name: service_name(&ns),
                last: tally.last.get(&ns).cloned(),
                total_entities: tally.entities.get(&ns).map_or(0, BTreeSet::len),
                actions: match granularity {
                    Granularity::Action => tally
                        .actions
                        .get(&ns)
                        .map(|m| m.values().cloned().collect())
                        .unwrap_or_default(),
                    Granularity::Service => Vec::new(),
                },
                namespace: ns,
            })
            .collect();
        let id = uuid::Uuid::new_v4().to_string();
        let covered = covered_refs(&self.state(), account, &subject.principals);
        let job = AccessJob {
            owner: owner.to_string(),
            granularity,
            created,
            completed: now(),
            services,
            covered,
            by_entity: tally.by_entity,
        };
        self.access_jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), job);
        Ok(id)
    }

    /// GetServiceLastAccessedDetails: only the generating principal sees
    /// the job; to anyone else it does not exist.
    pub fn get_service_last_accessed(&self, job_id: &str, caller: &str) -> Result<AccessJob> {
        self.access_jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(job_id)
            .filter(|j| j.owner == caller)
            .cloned()
            .ok_or_else(|| {
                ServiceError::NoSuchEntity(format!("The job with id {job_id} cannot be found."))
            })
    }

    /// Read the account's audit trail, newest first, keeping the events
    /// of `principals`.
    async fn tally(&self, account: &str, principals: &BTreeSet<String>) -> Result<Tally> {
        let mut t = Tally::default();
        if principals.is_empty() {
            return Ok(t);
        }
        let mut before = None;
        let mut seen = 0usize;
        while seen < MAX_EVENTS {
            let q = AuditQuery {
                account: Some(account.to_string()),
                before_seq: before,
                limit: PAGE,
                ..AuditQuery::default()
            };
            let rows = self.store().query_audit(&q).await?;
            let Some(last) = rows.last() else { break };
            before = Some(last.seq);
            seen += rows.len();
            for r in &rows {
                let Ok(body) = serde_json::from_str::<Value>(&r.body) else {
                    continue;
                };
                let Some(who) = event_principal(&body).filter(|p| principals.contains(p)) else {
                    continue;
                };
                let ns = r.event_source.split('.').next().unwrap_or("").to_string();
                let region = body.get("awsRegion").and_then(Value::as_str).unwrap_or("");
                t.add(
                    &ns,
                    ActionAccess {
                        action: r.event_name.clone(),
                        entity: who,
                        time: r.event_time_ms / 1000,
                        region: region.to_string(),
                    },
                );
            }
            if rows.len() < PAGE as usize {
                break;
            }
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_name_their_services() {
        let mut s = BTreeSet::new();
        granted(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:Get*","EC2:Describe*"],"Resource":"*"},{"Effect":"Deny","Action":"iam:*","Resource":"*"}]}"#,
            &mut s,
        );
        assert_eq!(s.into_iter().collect::<Vec<_>>(), ["ec2", "s3"]);
        let mut all = BTreeSet::new();
        granted(
            r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#,
            &mut all,
        );
        assert!(all.contains("iam") && all.contains("sts"));
    }
}
