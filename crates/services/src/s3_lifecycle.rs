//! S3 lifecycle: the rules (validated as S3 does) and the sweep that
//! applies their expirations. Transitions are kept and returned but not
//! applied (keycard has one storage class). A sweep runs on one node only
//! (the first live one, as trail delivery) and reports what it did.

use serde::{Deserialize, Serialize};

use crate::error::{Result, ServiceError};
use crate::model::*;
use crate::s3_versions::{Plan, Status, all_versions, plan_delete, plan_remove_version};
use crate::state::State;
use crate::{Keycard, now_ms};

const DAY_MS: i64 = 86_400_000;

/// Which objects a rule applies to (all given conditions must hold).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Filter {
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    #[serde(default)]
    pub size_greater_than: Option<u64>,
    #[serde(default)]
    pub size_less_than: Option<u64>,
    /// Given as `<And>` (rendered back the same way).
    #[serde(default)]
    pub and: bool,
}

impl Filter {
    fn matches(&self, o: &ObjectMeta) -> bool {
        self.prefix.as_deref().is_none_or(|p| o.key.starts_with(p))
            && self
                .tags
                .iter()
                .all(|(k, v)| o.tags.get(k).is_some_and(|x| x == v))
            && self.size_greater_than.is_none_or(|n| o.size > n)
            && self.size_less_than.is_none_or(|n| o.size < n)
    }
}

/// A `Transition` or `NoncurrentVersionTransition` (kept, not applied).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Transition {
    pub days: Option<u32>,
    pub date: Option<String>,
    pub newer_noncurrent: Option<u32>,
    pub storage_class: String,
}

/// One lifecycle rule.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    pub enabled: bool,
    /// The deprecated rule-level `<Prefix>` (instead of `<Filter>`).
    #[serde(default)]
    pub legacy_prefix: Option<String>,
    #[serde(default)]
    pub filter: Filter,
    /// `Expiration/Date` as given, and in milliseconds.
    #[serde(default)]
    pub expiration_date: Option<(String, i64)>,
    #[serde(default)]
    pub expiration_days: Option<u32>,
    #[serde(default)]
    pub expired_object_delete_marker: Option<bool>,
    #[serde(default)]
    pub noncurrent_days: Option<u32>,
    #[serde(default)]
    pub newer_noncurrent: Option<u32>,
    #[serde(default)]
    pub abort_days: Option<u32>,
    #[serde(default)]
    pub transitions: Vec<Transition>,
    #[serde(default)]
    pub noncurrent_transitions: Vec<Transition>,
}

impl Rule {
    fn prefix(&self) -> &str {
        self.legacy_prefix
            .as_deref()
            .or(self.filter.prefix.as_deref())
            .unwrap_or("")
    }

    fn matches(&self, o: &ObjectMeta) -> bool {
        o.key.starts_with(self.prefix()) && self.filter.matches(o)
    }

    fn has_expiration(&self) -> bool {
        self.expiration_date.is_some()
            || self.expiration_days.is_some()
            || self.expired_object_delete_marker.is_some()
    }
}

fn invalid(m: &str) -> ServiceError {
    ServiceError::InvalidArgument(m.into())
}

fn invalid_request(m: &str) -> ServiceError {
    ServiceError::InvalidRequest(m.into())
}

/// Check a whole configuration as S3 does before storing any of it.
pub fn validate(rules: &[Rule]) -> Result<()> {
    if rules.is_empty() || rules.len() > 1000 {
        return Err(ServiceError::MalformedXML(
            "The XML you provided was not well-formed or did not validate against our published schema".into(),
        ));
    }
    for (i, r) in rules.iter().enumerate() {
        if r.id.len() > 255 {
            return Err(invalid("ID length should not exceed allowed limit of 255"));
        }
        if rules.iter().skip(i + 1).any(|o| o.id == r.id) {
            return Err(invalid(
                "Rule ID must be unique. Found same ID for more than one rule",
            ));
        }
        validate_rule(r)?;
    }
    Ok(())
}

fn validate_rule(r: &Rule) -> Result<()> {
    if !r.has_expiration()
        && r.noncurrent_days.is_none()
        && r.abort_days.is_none()
        && r.transitions.is_empty()
        && r.noncurrent_transitions.is_empty()
    {
        return Err(invalid_request(
            "At least one action needs to be specified in a rule",
        ));
    }
    if r.expiration_days == Some(0) {
        return Err(invalid(
            "'Days' for Expiration action must be a positive integer",
        ));
    }
    if r.noncurrent_days == Some(0) {
        return Err(invalid(
            "'NoncurrentDays' for NoncurrentVersionExpiration action must be a positive integer",
        ));
    }
    if r.abort_days == Some(0) {
        return Err(invalid(
            "'DaysAfterInitiation' for AbortIncompleteMultipartUpload action must be a positive integer",
        ));
    }
    if r.newer_noncurrent.is_some_and(|n| !(1..=100).contains(&n)) {
        return Err(invalid(
            "'NewerNoncurrentVersions' for NoncurrentVersionExpiration action must be a positive integer up to 100",
        ));
    }
    if r.expiration_date
        .as_ref()
        .is_some_and(|(_, ms)| ms.rem_euclid(DAY_MS) != 0)
    {
        return Err(invalid("'Date' must be at midnight GMT"));
    }
    let tagged = !r.filter.tags.is_empty();
    if tagged && r.expired_object_delete_marker.is_some() {
        return Err(invalid_request(
            "ExpiredObjectDeleteMarker cannot be specified with object tag filters.",
        ));
    }
    if tagged && r.abort_days.is_some() {
        return Err(invalid_request(
            "AbortIncompleteMultipartUpload cannot be specified with Tags.",
        ));
    }
    if let (Some(gt), Some(lt)) = (r.filter.size_greater_than, r.filter.size_less_than)
        && gt >= lt
    {
        return Err(invalid(
            "ObjectSizeGreaterThan must be less than ObjectSizeLessThan in the same filter",
        ));
    }
    Ok(())
}

/// When an object made at `ms` expires after `days`: S3 adds the days and
/// rounds up to the next midnight UTC.
pub fn expiry_after(ms: i64, days: u32) -> i64 {
    let t = ms.saturating_add(i64::from(days).saturating_mul(DAY_MS));
    t.div_euclid(DAY_MS)
        .saturating_add(1)
        .saturating_mul(DAY_MS)
}

/// One thing a sweep did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    pub bucket: String,
    pub key: String,
    /// `Expiration`, `NoncurrentVersionExpiration`,
    /// `ExpiredObjectDeleteMarker` or `AbortIncompleteMultipartUpload`.
    pub action: &'static str,
    pub rule_id: String,
    /// The version removed, the delete marker made, or the upload aborted.
    pub id: Option<String>,
}

/// A planned removal: which version (or upload) and why.
struct Candidate {
    bucket: String,
    key: String,
    action: &'static str,
    rule_id: String,
    /// The version to remove; `None`: expire the current version.
    version: Option<String>,
    /// The version the current must still be for "expire current".
    expect_seq: i64,
    upload: Option<String>,
}

/// The candidates one rule yields for one key's versions.
fn key_candidates(st: &State, b: &Bucket, r: &Rule, key: &str, now: i64, out: &mut Vec<Candidate>) {
    let versions: Vec<&ObjectMeta> = all_versions(st, &b.name, key).collect();
    let Some(latest) = versions.first() else {
        return;
    };
    let mk = |action, version: Option<String>, seq| Candidate {
        bucket: b.name.clone(),
        key: key.to_string(),
        action,
        rule_id: r.id.clone(),
        version,
        expect_seq: seq,
        upload: None,
    };
    if !latest.delete_marker && r.matches(latest) {
        let due = r.expiration_date.as_ref().is_some_and(|(_, d)| now >= *d)
            || r.expiration_days
                .is_some_and(|d| now >= expiry_after(latest.last_modified_ms, d));
        if due {
            out.push(mk("Expiration", None, latest.seq));
        }
    }
    if latest.delete_marker
        && versions.len() == 1
        && r.matches(latest)
        && (r.expired_object_delete_marker == Some(true) || r.expiration_days.is_some())
    {
        out.push(mk(
            "ExpiredObjectDeleteMarker",
            Some(latest.version().to_string()),
            latest.seq,
        ));
    }
    if let Some(days) = r.noncurrent_days {
        let keep = r.newer_noncurrent.unwrap_or(0) as usize;
        // A version became noncurrent when the next newer one was made.
        for (n, pair) in versions.windows(2).enumerate() {
            let [newer, v] = pair else { continue };
            if n >= keep && r.matches(v) && now >= expiry_after(newer.last_modified_ms, days) {
                out.push(mk(
                    "NoncurrentVersionExpiration",
                    Some(v.version().to_string()),
                    v.seq,
                ));
            }
        }
    }
}

fn candidates(st: &State, now: i64) -> Vec<Candidate> {
    let mut out = Vec::new();
    for b in st.buckets.values() {
        let Some(rules) = &b.lifecycle else { continue };
        let mut keys: Vec<&String> = st
            .objects
            .get(&b.name)
            .into_iter()
            .flat_map(|m| m.keys())
            .chain(st.versions.get(&b.name).into_iter().flat_map(|m| m.keys()))
            .collect();
        keys.sort();
        keys.dedup();
        for r in rules.iter().filter(|r| r.enabled) {
            for k in keys.iter().filter(|k| k.starts_with(r.prefix())) {
                key_candidates(st, b, r, k, now, &mut out);
            }
            if let Some(days) = r.abort_days {
                for u in st.uploads.values().filter(|u| {
                    u.bucket == b.name
                        && u.key.starts_with(r.prefix())
                        && now >= expiry_after(u.initiated_ms, days)
                }) {
                    out.push(Candidate {
                        bucket: b.name.clone(),
                        key: u.key.clone(),
                        action: "AbortIncompleteMultipartUpload",
                        rule_id: r.id.clone(),
                        version: None,
                        expect_seq: 0,
                        upload: Some(u.id.clone()),
                    });
                }
            }
        }
    }
    out
}

/// Plan one candidate against the state now (it may have changed since
/// the candidates were chosen: then nothing).
fn plan_candidate(st: &State, c: &Candidate) -> Option<(Plan, Option<String>)> {
    let b = st.buckets.get(&c.bucket)?;
    if let Some(id) = &c.upload {
        let u = st.uploads.get(id)?;
        let plan = Plan {
            changes: vec![Change::Delete("upload", id.clone())],
            files: u.parts.values().map(|p| p.file.clone()).collect(),
        };
        return Some((plan, Some(id.clone())));
    }
    match &c.version {
        Some(v) => {
            let still = all_versions(st, &c.bucket, &c.key)
                .any(|o| o.version() == v && o.seq == c.expect_seq);
            if !still {
                return None;
            }
            plan_remove_version(st, &c.bucket, &c.key, v).map(|(p, _)| (p, Some(v.clone())))
        }
        None => {
            let cur = st.objects.get(&c.bucket)?.get(&c.key)?;
            if cur.seq != c.expect_seq {
                return None;
            }
            let (plan, d) = plan_delete(st, b, &c.key, None);
            let id = match Status::of(b) {
                Status::Unversioned => Some(cur.version().to_string()),
                _ => d.version_id,
            };
            Some((plan, id))
        }
    }
}

impl Keycard {
    /// PutBucketLifecycleConfiguration (validated first).
    pub async fn put_bucket_lifecycle(&self, bucket: &str, rules: Vec<Rule>) -> Result<()> {
        validate(&rules)?;
        self.set_lifecycle(bucket, Some(rules)).await
    }

    /// Store (or with `None` remove) a bucket's rules.
    pub async fn set_lifecycle(&self, bucket: &str, rules: Option<Vec<Rule>>) -> Result<()> {
        self.mutate(|st| {
            let mut b = st
                .buckets
                .get(bucket)
                .map(|b| Bucket::clone(b))
                .ok_or_else(|| {
                    ServiceError::NoSuchBucket("The specified bucket does not exist".into())
                })?;
            b.lifecycle = rules.clone();
            Ok((vec![Change::Put(Entity::Bucket(b))], ()))
        })
        .await
    }

    /// Apply every bucket's lifecycle expirations due at the keycard's
    /// clock (moved by `--test-clock`); each removal commits on its own.
    /// Only the first live node sweeps (see `delivers_trails`).
    pub async fn lifecycle_sweep(&self) -> Result<Vec<Applied>> {
        if !self.leads_background_work() {
            return Ok(Vec::new());
        }
        let now = now_ms() + self.governance_now().saturating_sub(crate::now()) * 1000;
        let todo = candidates(&self.state(), now);
        let mut done = Vec::new();
        for c in todo {
            let res = self
                .mutate(|st| {
                    Ok(match plan_candidate(st, &c) {
                        Some((plan, id)) => (plan.changes, Some((plan.files, id))),
                        None => (Vec::new(), None),
                    })
                })
                .await?;
            if let Some((files, id)) = res {
                self.remove_data(files);
                let applied = Applied {
                    bucket: c.bucket,
                    key: c.key,
                    action: c.action,
                    rule_id: c.rule_id,
                    id,
                };
                self.record_lifecycle(&applied).await;
                done.push(applied);
            }
        }
        Ok(done)
    }

    /// Audit one lifecycle action as a service event (`eventName`
    /// `LifecycleExpiration`, `userIdentity` the S3 service). CloudTrail
    /// logs none; keycard keeps the record so a vanished object is
    /// explained. A failure to record is logged: the change stands.
    async fn record_lifecycle(&self, a: &Applied) {
        let caller = crate::auth::Caller::service("s3.amazonaws.com");
        let account = self
            .state()
            .buckets
            .get(&a.bucket)
            .map(|b| b.account.clone())
            .unwrap_or_default();
        let object = format!("arn:aws:s3:::{}/{}", a.bucket, a.key);
        let recorded = self.audit.record(crate::audit::EventInput {
            caller: Some(&caller),
            event_source: "s3.amazonaws.com",
            event_name: "LifecycleExpiration",
            region: &self.config.region,
            source_ip: "s3.amazonaws.com",
            user_agent: "s3.amazonaws.com",
            request_parameters: serde_json::json!({
                "bucketName": a.bucket,
                "key": a.key,
                "lifecycleAction": a.action,
                "ruleId": a.rule_id,
                "id": a.id,
            }),
            response_elements: serde_json::Value::Null,
            error_code: None,
            error_message: None,
            request_id: &uuid::Uuid::new_v4().to_string(),
            read_only: false,
            resources: vec![
                (
                    format!("arn:aws:s3:::{}", a.bucket),
                    "AWS::S3::Bucket".into(),
                ),
                (object, "AWS::S3::Object".into()),
            ],
            decided: &[],
            data_event: true,
            recipient_account: &account,
            instance_credentials: None,
        });
        if recorded.await.is_err() {
            tracing::warn!(bucket = %a.bucket, key = %a.key, "lifecycle event not recorded");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> Rule {
        Rule {
            id: "r".into(),
            enabled: true,
            expiration_days: Some(1),
            ..Rule::default()
        }
    }

    #[test]
    fn expiry_rounds_to_next_midnight() {
        // 2024-01-01T10:00Z + 1 day -> 2024-01-03T00:00Z.
        let t = 1_704_103_200_000;
        assert_eq!(expiry_after(t, 1), 1_704_240_000_000);
    }

    #[test]
    fn validation_follows_s3() {
        assert!(validate(&[rule()]).is_ok());
        assert!(validate(&[]).is_err());
        let none = Rule {
            expiration_days: None,
            ..rule()
        };
        assert!(matches!(
            validate(&[none]),
            Err(ServiceError::InvalidRequest(_))
        ));
        let long = Rule {
            id: "x".repeat(256),
            ..rule()
        };
        assert!(validate(&[long]).is_err());
        assert!(validate(&[rule(), rule()]).is_err());
        let zero = Rule {
            expiration_days: Some(0),
            ..rule()
        };
        assert!(validate(&[zero]).is_err());
        let noon = Rule {
            expiration_days: None,
            expiration_date: Some(("x".into(), DAY_MS / 2)),
            ..rule()
        };
        assert!(validate(&[noon]).is_err());
    }

    #[test]
    fn filters_match_prefix_tags_and_size() {
        let o = ObjectMeta {
            key: "logs/a".into(),
            size: 10,
            tags: [("k".to_string(), "v".to_string())].into(),
            ..ObjectMeta::default()
        };
        let mut r = rule();
        r.filter.prefix = Some("logs/".into());
        assert!(r.matches(&o));
        r.filter.tags = vec![("k".into(), "w".into())];
        assert!(!r.matches(&o));
        r.filter.tags = vec![("k".into(), "v".into())];
        r.filter.size_greater_than = Some(10);
        assert!(!r.matches(&o));
        r.filter.size_greater_than = Some(9);
        r.filter.size_less_than = Some(11);
        assert!(r.matches(&o));
    }
}
