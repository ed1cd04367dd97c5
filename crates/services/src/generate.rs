//! Policy generation from the audit trail: what a principal did in a time
//! window, as an identity policy that grants exactly that. Access
//! Analyzer's StartPolicyGeneration / GetGeneratedPolicy and
//! `keycard policy generate` both come here.
//!
//! Every authorization check an event records counts, allowed or not (a
//! call soft enforcement let through is exactly what the generator is for),
//! so the policy covers the calls the application made and nothing else:
//! no action is added that was not checked, `iam:PassRole` included.
//! Resources stay the concrete ARNs that were touched (AWS gives `*` or
//! placeholders; keycard knows the ARNs), except where one bucket saw more
//! than [`MAX_OBJECTS`] object keys: those become their common prefix and
//! `*`, as a person would write it.

use std::collections::{BTreeMap, BTreeSet};

use keycard_store::{AuditRow, Op};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Keycard;
use crate::error::{Result, ServiceError};

/// Object keys of one bucket listed one by one before they are folded
/// into a prefix wildcard.
pub const MAX_OBJECTS: usize = 10;

/// IAM's quota for an inline role policy (characters, whitespace excluded).
pub const INLINE_ROLE_POLICY_QUOTA: usize = 10_240;

/// The longest window, as Access Analyzer allows.
pub const MAX_WINDOW_SECS: i64 = 90 * 86_400;

/// The record kind generation jobs are stored under.
pub const KIND: &str = "policy_generation";

/// Action → the resources it was checked on.
pub type Observed = BTreeMap<String, BTreeSet<String>>;

/// Whether an event was made by `principal`: a user's own ARN, or a role's
/// ARN matching the sessions it issued.
fn made_by(ev: &Value, principal: &str) -> bool {
    let own = ev.pointer("/userIdentity/arn").and_then(Value::as_str);
    let issuer = ev
        .pointer("/userIdentity/sessionContext/sessionIssuer/arn")
        .and_then(Value::as_str);
    own == Some(principal) || issuer == Some(principal)
}

/// The actions and resources `principal` was checked for in these events.
pub fn observe(rows: &[AuditRow], principal: &str) -> Observed {
    let mut out = Observed::new();
    for r in rows {
        let Ok(ev) = serde_json::from_str::<Value>(&r.body) else {
            continue;
        };
        if !made_by(&ev, principal) {
            continue;
        }
        let checks = ev.get("keycardAuthorization").and_then(Value::as_array);
        for c in checks.into_iter().flatten() {
            let action = c.get("action").and_then(Value::as_str).unwrap_or("");
            let resource = c.get("resource").and_then(Value::as_str).unwrap_or("");
            if action.contains(':') && !resource.is_empty() {
                out.entry(action.to_string())
                    .or_default()
                    .insert(resource.to_string());
            }
        }
    }
    out
}

/// How far resources are generalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    /// Concrete ARNs, many object keys of a bucket folded to a prefix.
    Concrete,
    /// Every object ARN folded to its bucket's `/*`.
    Buckets,
    /// `*` everywhere: the last resort to fit the quota.
    Star,
}

/// `arn:aws:s3:::bucket/key` → (`bucket`, `key`).
fn s3_object(arn: &str) -> Option<(&str, &str)> {
    arn.strip_prefix("arn:aws:s3:::")?.split_once('/')
}

/// The common prefix of these keys, cut back to its last `/`.
fn folder_prefix<'a>(keys: impl Iterator<Item = &'a str>) -> String {
    let mut prefix: Option<&str> = None;
    for k in keys {
        prefix = Some(match prefix {
            None => k,
            Some(p) => {
                let n = p
                    .char_indices()
                    .zip(k.chars())
                    .take_while(|((_, a), b)| a == b)
                    .last()
                    .map_or(0, |((i, c), _)| i + c.len_utf8());
                p.get(..n).unwrap_or("")
            }
        });
    }
    let p = prefix.unwrap_or("");
    p.rfind('/')
        .and_then(|i| p.get(..=i))
        .unwrap_or("")
        .to_string()
}

/// The resources of one action at one level of generalisation.
fn generalise(resources: &BTreeSet<String>, level: Level) -> BTreeSet<String> {
    if level == Level::Star || resources.contains("*") {
        return BTreeSet::from(["*".to_string()]);
    }
    let mut out = BTreeSet::new();
    let mut by_bucket: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in resources {
        match s3_object(r) {
            Some((b, k)) => by_bucket.entry(b).or_default().push(k),
            None => {
                out.insert(r.clone());
            }
        }
    }
    for (bucket, keys) in by_bucket {
        if level == Level::Concrete && keys.len() <= MAX_OBJECTS {
            out.extend(keys.iter().map(|k| format!("arn:aws:s3:::{bucket}/{k}")));
        } else {
            let prefix = match level {
                Level::Concrete => folder_prefix(keys.iter().copied()),
                _ => String::new(),
            };
            out.insert(format!("arn:aws:s3:::{bucket}/{prefix}*"));
        }
    }
    out
}

/// Whether AWS's catalogue knows `action` and gives it no resource types:
/// such an action is only ever granted on `*` (DescribeInstances), so a
/// named ARN would not work against AWS.
fn unscoped(action: &str) -> bool {
    let cat = keycard_policy::catalogue::catalogue();
    cat.action_exists(action) && cat.resource_types(action).is_empty()
}

/// One string, or an array of several, as policies write them.
fn one_or_many(items: &BTreeSet<String>) -> Value {
    match items.iter().next() {
        Some(one) if items.len() == 1 => one.clone().into(),
        _ => items.iter().cloned().collect::<Vec<_>>().into(),
    }
}

/// The policy document at one level: per service, the actions that share
/// a resource set in one statement.
fn document(observed: &Observed, level: Level) -> Value {
    let mut groups: BTreeMap<(String, BTreeSet<String>), BTreeSet<String>> = BTreeMap::new();
    for (action, resources) in observed {
        let service = action.split(':').next().unwrap_or("").to_lowercase();
        let resources = if unscoped(action) {
            BTreeSet::from(["*".to_string()])
        } else {
            generalise(resources, level)
        };
        groups
            .entry((service, resources))
            .or_default()
            .insert(action.clone());
    }
    let statements: Vec<Value> = groups
        .into_iter()
        .map(|((_, resources), actions)| {
            json!({
                "Effect": "Allow",
                "Action": one_or_many(&actions),
                "Resource": one_or_many(&resources),
            })
        })
        .collect();
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// Characters IAM counts against its quota.
fn quota_size(doc: &Value) -> usize {
    doc.to_string()
        .chars()
        .filter(|c| !c.is_whitespace())
        .count()
}

/// The generated policy: the most concrete document that fits an inline
/// role policy.
pub fn policy(observed: &Observed) -> Value {
    let mut doc = Value::Null;
    for level in [Level::Concrete, Level::Buckets, Level::Star] {
        doc = document(observed, level);
        if quota_size(&doc) <= INLINE_ROLE_POLICY_QUOTA {
            break;
        }
    }
    doc
}

/// [`policy`], or with `placeholders` AWS's template form: each ARN
/// becomes its resource type's ARN format with the names left as
/// `${…}` (`arn:aws:s3:::${BucketName}`), as Access Analyzer's
/// `includeResourcePlaceholders` gives.
pub fn policy_with(observed: &Observed, placeholders: bool) -> Value {
    if !placeholders {
        return policy(observed);
    }
    let templated: Observed = observed
        .iter()
        .map(|(action, resources)| {
            let t = resources
                .iter()
                .map(|r| placeholder(action, r).unwrap_or_else(|| r.clone()))
                .collect();
            (action.clone(), t)
        })
        .collect();
    policy(&templated)
}

/// A stored generation: what was asked and what was observed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub job_id: String,
    pub account: String,
    pub principal_arn: String,
    /// Window (epoch seconds).
    pub start_time: i64,
    pub end_time: i64,
    pub trails: Vec<String>,
    pub started_on: i64,
    pub completed_on: i64,
    pub status: String,
    /// Every event of the window was read (false when capped).
    pub is_complete: bool,
    /// StartPolicyGeneration's idempotency token.
    #[serde(default)]
    pub client_token: Option<String>,
    pub observed: Observed,
}

fn validation(msg: impl Into<String>) -> ServiceError {
    ServiceError::ValidationError(msg.into())
}

/// Whether `arn` names an IAM user or role of `account`.
fn check_principal(arn: &str, account: &str) -> Result<()> {
    let rest = arn
        .strip_prefix("arn:aws:iam::")
        .and_then(|r| r.strip_prefix(account))
        .and_then(|r| r.strip_prefix(':'));
    match rest {
        Some(r) if r.starts_with("role/") || r.starts_with("user/") => Ok(()),
        _ => Err(validation(format!(
            "Invalid principalArn: {arn}. Provide the ARN of an IAM user or role in account {account}."
        ))),
    }
}

/// Check a window (epoch seconds) as Access Analyzer does.
fn check_window(start: i64, end: i64, now: i64) -> Result<()> {
    if start >= end {
        return Err(validation("startTime must be before endTime."));
    }
    if start > now {
        return Err(validation("startTime cannot be in the future."));
    }
    if end - start > MAX_WINDOW_SECS {
        return Err(validation(
            "The time range between startTime and endTime cannot exceed 90 days.",
        ));
    }
    Ok(())
}

impl Keycard {
    /// What `principal` was checked for in a window (epoch seconds, both
    /// ends inclusive: the end second counts whole, so a job started in the
    /// same second as the calls it reads still sees them).
    pub async fn observe_principal(
        &self,
        account: &str,
        principal: &str,
        start: i64,
        end: i64,
    ) -> Result<(Observed, bool)> {
        let (rows, complete) = self
            .audit_window(
                account,
                start.saturating_mul(1000),
                Some(end.saturating_mul(1000).saturating_add(999)),
            )
            .await?;
        Ok((observe(&rows, principal), complete))
    }

    /// StartPolicyGeneration: read the window now and keep the result as a
    /// finished job (the trail is local, so there is nothing to wait for).
    pub async fn start_policy_generation(
        &self,
        account: &str,
        principal_arn: &str,
        window: (i64, Option<i64>),
        trails: Vec<String>,
        client_token: Option<String>,
    ) -> Result<Job> {
        check_principal(principal_arn, account)?;
        // The same client token answers with the job it started.
        if let Some(t) = &client_token
            && let Some(j) = self
                .policy_generations(account)
                .await?
                .into_iter()
                .find(|j| j.client_token.as_ref() == Some(t))
        {
            return Ok(j);
        }
        let now = crate::now();
        let (start, end) = (window.0, window.1.unwrap_or(now).min(now));
        check_window(start, end, now)?;
        let (observed, is_complete) = self
            .observe_principal(account, principal_arn, start, end)
            .await?;
        let job = Job {
            job_id: uuid(),
            account: account.to_string(),
            principal_arn: principal_arn.to_string(),
            start_time: start,
            end_time: end,
            trails,
            started_on: now,
            completed_on: crate::now(),
            status: "SUCCEEDED".into(),
            is_complete,
            client_token,
            observed,
        };
        let value = serde_json::to_string(&job)
            .map_err(|e| ServiceError::Internal(format!("policy generation job: {e}")))?;
        self.store()
            .commit(&[Op::put(KIND, job_key(account, &job.job_id), value)], &[])
            .await?;
        Ok(job)
    }

    /// The generations of `account`, newest first.
    pub async fn policy_generations(&self, account: &str) -> Result<Vec<Job>> {
        let prefix = format!("{account}/");
        let mut jobs: Vec<Job> = self
            .store()
            .load_kind(KIND)
            .await?
            .into_iter()
            .filter(|r| r.key.starts_with(&prefix))
            .filter_map(|r| serde_json::from_str(&r.value).ok())
            .collect();
        jobs.sort_by_key(|j| std::cmp::Reverse((j.started_on, j.job_id.clone())));
        Ok(jobs)
    }

    /// One generation of `account`. An unknown id is a validation error:
    /// the model declares no not-found error for these operations.
    pub async fn policy_generation(&self, account: &str, job_id: &str) -> Result<Job> {
        self.policy_generations(account)
            .await?
            .into_iter()
            .find(|j| j.job_id == job_id)
            .ok_or_else(|| {
                ServiceError::ValidationError(format!("Job with id {job_id} does not exist."))
            })
    }
}

/// The ARN template of the resource type `arn` is of, for `action`, from
/// the shipped catalogue: `arn:aws:s3:::b/k` for `s3:GetObject` is
/// `arn:aws:s3:::${BucketName}/${ObjectName}`. The partition stays.
fn placeholder(action: &str, arn: &str) -> Option<String> {
    let cat = keycard_policy::catalogue::catalogue();
    let (prefix, _) = action.split_once(':')?;
    let service = cat.service(prefix)?;
    let partition = arn.strip_prefix("arn:")?.split(':').next()?;
    cat.resource_types(action)
        .iter()
        .filter_map(|(rt, _)| service.resource_types.get(rt))
        .find(|fmt| template_matches(fmt.as_bytes(), arn.as_bytes()))
        .map(|fmt| fmt.replace("${Partition}", partition))
}

/// Whether `arn` fits `fmt`, each `${Name}` standing for one or more
/// characters.
fn template_matches(fmt: &[u8], arn: &[u8]) -> bool {
    match fmt.strip_prefix(b"${") {
        Some(rest) => {
            let Some(close) = rest.iter().position(|&b| b == b'}') else {
                return false;
            };
            let after = rest.get(close + 1..).unwrap_or_default();
            if after.is_empty() {
                return !arn.is_empty();
            }
            // Only where the literal after the name could start: keeps
            // long object keys linear per name.
            let next = after.first().copied();
            (1..arn.len())
                .filter(|&n| next == Some(b'$') || arn.get(n).copied() == next)
                .any(|n| template_matches(after, arn.get(n..).unwrap_or_default()))
        }
        None => match (fmt.split_first(), arn.split_first()) {
            (None, None) => true,
            (Some((f, fr)), Some((a, ar))) if f == a => template_matches(fr, ar),
            _ => false,
        },
    }
}

fn job_key(account: &str, id: &str) -> String {
    format!("{account}/{id}")
}

/// A random RFC 4122 version-4 UUID, as Access Analyzer's job ids are.
fn uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    if let Some(x) = b.get_mut(6) {
        *x = (*x & 0x0f) | 0x40;
    }
    if let Some(x) = b.get_mut(8) {
        *x = (*x & 0x3f) | 0x80;
    }
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let part = |r: std::ops::Range<usize>| h.get(r).unwrap_or("");
    format!(
        "{}-{}-{}-{}-{}",
        part(0..8),
        part(8..12),
        part(12..16),
        part(16..20),
        part(20..32)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::denials::tests::row;

    const ROLE: &str = "arn:aws:iam::123456789012:role/App";

    fn session_event(checks: Value) -> AuditRow {
        row(json!({
            "userIdentity": {
                "arn": "arn:aws:sts::123456789012:assumed-role/App/i-1",
                "sessionContext": {"sessionIssuer": {"arn": ROLE}},
            },
            "keycardAuthorization": checks,
        }))
    }

    #[test]
    fn observes_the_roles_sessions_allowed_or_not() {
        let rows = vec![
            session_event(json!([
                {"action": "s3:GetObject", "resource": "arn:aws:s3:::b/k", "decision": "ImplicitDeny"},
                {"action": "s3:ListBucket", "resource": "arn:aws:s3:::b", "decision": "Allow"},
            ])),
            row(json!({
                "userIdentity": {"arn": "arn:aws:iam::123456789012:user/other"},
                "keycardAuthorization": [{"action": "iam:ListUsers", "resource": "*"}],
            })),
            row(json!("not an event")),
        ];
        let o = observe(&rows, ROLE);
        assert_eq!(o.len(), 2);
        assert!(
            o.get("s3:GetObject")
                .is_some_and(|r| r.contains("arn:aws:s3:::b/k"))
        );
        assert!(!o.contains_key("iam:ListUsers"));
        let user = observe(&rows, "arn:aws:iam::123456789012:user/other");
        assert_eq!(user.keys().collect::<Vec<_>>(), ["iam:ListUsers"]);
    }

    #[test]
    fn groups_actions_sharing_resources_per_service() {
        let mut o = Observed::new();
        let b = BTreeSet::from(["arn:aws:s3:::b/k".to_string()]);
        o.insert("s3:GetObject".into(), b.clone());
        o.insert("s3:PutObject".into(), b);
        // No resource types in AWS's catalogue: `*`, whatever was checked.
        o.insert(
            "ec2:DescribeInstances".into(),
            BTreeSet::from(["arn:aws:ec2:us-east-1:123456789012:instance/i-1".into()]),
        );
        let doc = policy(&o);
        let st = doc["Statement"].as_array().unwrap();
        assert_eq!(st.len(), 2);
        assert_eq!(st[0]["Action"], json!("ec2:DescribeInstances"));
        assert_eq!(st[0]["Resource"], json!("*"));
        assert_eq!(st[1]["Action"], json!(["s3:GetObject", "s3:PutObject"]));
        assert_eq!(st[1]["Resource"], json!("arn:aws:s3:::b/k"));
        assert!(
            keycard_policy::Policy::parse(&doc.to_string(), keycard_policy::PolicyKind::Identity)
                .is_ok()
        );
    }

    #[test]
    fn many_keys_of_a_bucket_fold_to_their_folder() {
        let keys: BTreeSet<String> = (0..=MAX_OBJECTS)
            .map(|i| format!("arn:aws:s3:::b/logs/2026/{i}.json"))
            .chain(["arn:aws:s3:::other/one".to_string()])
            .collect();
        let g = generalise(&keys, Level::Concrete);
        assert_eq!(
            g,
            BTreeSet::from([
                "arn:aws:s3:::b/logs/2026/*".to_string(),
                "arn:aws:s3:::other/one".to_string()
            ])
        );
        let few: BTreeSet<String> = keys.iter().take(3).cloned().collect();
        assert_eq!(generalise(&few, Level::Concrete), few);
        assert_eq!(
            generalise(&few, Level::Buckets),
            BTreeSet::from(["arn:aws:s3:::b/*".to_string()])
        );
    }

    #[test]
    fn folder_prefix_stops_at_a_slash_and_handles_unicode() {
        assert_eq!(folder_prefix(["a/bc", "a/bd"].into_iter()), "a/");
        assert_eq!(folder_prefix(["ab", "ac"].into_iter()), "");
        assert_eq!(folder_prefix(["é/x", "é/y"].into_iter()), "é/");
        assert_eq!(folder_prefix(["éa", "éb"].into_iter()), "");
    }

    #[test]
    fn an_oversized_policy_falls_back_to_fit_the_quota() {
        let mut o = Observed::new();
        for i in 0..400 {
            o.insert(
                format!("iam:Get{i}"),
                BTreeSet::from([format!("arn:aws:iam::123456789012:role/role-number-{i}")]),
            );
        }
        let doc = policy(&o);
        assert!(quota_size(&doc) <= INLINE_ROLE_POLICY_QUOTA);
        assert_eq!(doc["Statement"][0]["Resource"], json!("*"));
    }

    #[test]
    fn windows_and_principals_are_checked() {
        assert!(check_window(10, 5, 100).is_err());
        assert!(check_window(200, 300, 100).is_err());
        assert!(check_window(0, MAX_WINDOW_SECS + 1, MAX_WINDOW_SECS + 1).is_err());
        assert!(check_window(0, 100, 100).is_ok());
        assert!(check_principal(ROLE, "123456789012").is_ok());
        assert!(check_principal("arn:aws:iam::123456789012:user/u", "123456789012").is_ok());
        assert!(check_principal("arn:aws:iam::999999999999:role/App", "123456789012").is_err());
        assert!(check_principal("arn:aws:iam::123456789012:group/g", "123456789012").is_err());
        assert!(check_principal("garbage", "123456789012").is_err());
    }

    #[test]
    fn placeholders_follow_the_catalogue() {
        assert_eq!(
            placeholder("s3:GetObject", "arn:aws:s3:::b/dir/k").as_deref(),
            Some("arn:aws:s3:::${BucketName}/${ObjectName}")
        );
        assert_eq!(
            placeholder("s3:ListBucket", "arn:aws:s3:::b").as_deref(),
            Some("arn:aws:s3:::${BucketName}")
        );
        assert_eq!(
            placeholder("iam:GetRole", "arn:aws:iam::123456789012:role/a/b").as_deref(),
            Some("arn:aws:iam::${Account}:role/${RoleNameWithPath}")
        );
        assert_eq!(placeholder("s3:GetObject", "*"), None);
        assert_eq!(placeholder("nosuch:Thing", "arn:aws:s3:::b"), None);
        // A long key with many separators stays quick (no blow-up).
        let long = format!("arn:aws:s3:::b/{}", "a/".repeat(500));
        assert!(placeholder("s3:GetObject", &long).is_some());
    }

    #[test]
    fn template_matching_needs_every_name_filled() {
        assert!(template_matches(b"a:${X}:b", b"a:x:b"));
        assert!(!template_matches(b"a:${X}:b", b"a::b"));
        assert!(!template_matches(b"a:${X}", b"a:"));
        assert!(template_matches(b"${A}/${B}", b"x/y/z"));
        assert!(!template_matches(b"${A", b"x"));
    }

    #[test]
    fn job_ids_are_uuids() {
        let id = uuid();
        assert_eq!(id.len(), 36);
        assert_eq!(id.as_bytes()[14], b'4');
        assert_ne!(id, uuid());
    }
}
