//! CloudTrail trails: a trail names an S3 bucket, and while it logs, the
//! account's events are delivered there as gzipped `{"Records": […]}` log
//! files under AWS's key layout, so tools that read trails from S3 work
//! unchanged. CloudTrail writes as the service principal
//! `cloudtrail.amazonaws.com`, so the bucket's policy must let it (checked
//! at CreateTrail / UpdateTrail, as AWS does, and again at every delivery).
//!
//! Trails are store records of kind [`KIND`], read from the store on each
//! call (no in-memory model), so every node of a shared store sees them.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::Duration;

use keycard_policy::Context;
use keycard_store::{AuditQuery, Op};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{Result, ServiceError, TrailError};
use crate::trail_digest::{DigestChain, LogFile};
use crate::{Keycard, now_ms};

/// The record kind trails are stored under.
pub const KIND: &str = "cloudtrail_trail";
/// AWS's quota: five trails per region.
pub const MAX_TRAILS: usize = 5;
/// Events are delivered once their sequence number has been visible this
/// long: by then an append with a lower number that was still committing
/// (a shared store) has landed, and a request's final event has replaced
/// its draft.
const SETTLE: Duration = Duration::from_secs(2);
/// At most this many events go into one log file.
const PER_FILE: u32 = 5_000;

/// One trail.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Trail {
    pub account: String,
    pub name: String,
    /// The home region (where it was created).
    pub region: String,
    pub bucket: String,
    pub prefix: Option<String>,
    pub sns_topic: Option<String>,
    pub include_global: bool,
    pub multi_region: bool,
    pub log_file_validation: bool,
    pub cloudwatch_logs_group: Option<String>,
    pub cloudwatch_logs_role: Option<String>,
    pub kms_key: Option<String>,
    pub logging: bool,
    pub start_logging_ms: Option<i64>,
    pub stop_logging_ms: Option<i64>,
    /// The audit sequence number of the last event delivered.
    pub cursor: i64,
    pub latest_delivery_ms: Option<i64>,
    pub latest_delivery_attempt_ms: Option<i64>,
    pub latest_delivery_error: Option<String>,
    /// `PutEventSelectors`' basic selectors, as given (None: the default,
    /// every management event).
    pub event_selectors: Option<Value>,
    pub advanced_event_selectors: Option<Value>,
    pub tags: BTreeMap<String, String>,
    /// Log file validation: each region's digest chain (empty while
    /// validation or logging is off).
    #[serde(default)]
    pub digests: BTreeMap<String, DigestChain>,
    #[serde(default)]
    pub latest_digest_ms: Option<i64>,
    #[serde(default)]
    pub latest_digest_error: Option<String>,
}

impl Trail {
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:cloudtrail:{}:{}:trail/{}",
            self.region, self.account, self.name
        )
    }

    /// The S3 key prefix of this trail's log files of `region` on a day.
    fn log_prefix(&self, region: &str, day: &str) -> String {
        let base = match &self.prefix {
            Some(p) if !p.is_empty() => format!("{p}/"),
            _ => String::new(),
        };
        format!("{base}AWSLogs/{}/CloudTrail/{region}/{day}/", self.account)
    }

    /// Start the home region's digest chain when validation and logging
    /// are on and it has none; drop every chain when either is off (AWS
    /// digests nothing delivered while validation or logging was off, so
    /// the chain breaks there).
    pub fn restart_digests(&mut self) {
        if self.log_file_validation && self.logging {
            let home = self.region.clone();
            self.digests
                .entry(home)
                .or_insert_with(|| DigestChain::starting(crate::now()));
        } else {
            self.digests.clear();
        }
    }

    /// Whether an event (its CloudTrail body) goes to this trail.
    pub fn selects(&self, event: &Value) -> bool {
        let region = event.get("awsRegion").and_then(Value::as_str).unwrap_or("");
        let global = matches!(
            event.get("eventSource").and_then(Value::as_str),
            Some("iam.amazonaws.com" | "sts.amazonaws.com" | "signin.amazonaws.com")
        );
        let here = self.multi_region || region == self.region;
        if !(here || (global && self.include_global)) {
            return false;
        }
        if let Some(adv) = &self.advanced_event_selectors {
            return crate::trail_selectors::matches(adv, event);
        }
        let data = event.get("eventCategory").and_then(Value::as_str) == Some("Data");
        let read_only = event
            .get("readOnly")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        match &self.event_selectors {
            None => !data,
            Some(Value::Array(sels)) => sels
                .iter()
                .any(|s| selector_matches(s, event, data, read_only)),
            Some(_) => false,
        }
    }
}

/// One basic event selector against an event.
fn selector_matches(sel: &Value, event: &Value, data: bool, read_only: bool) -> bool {
    let rw = sel
        .get("ReadWriteType")
        .and_then(Value::as_str)
        .unwrap_or("All");
    let rw_ok = match rw {
        "ReadOnly" => read_only,
        "WriteOnly" => !read_only,
        _ => true,
    };
    if !rw_ok {
        return false;
    }
    if !data {
        let source = event
            .get("eventSource")
            .and_then(Value::as_str)
            .unwrap_or("");
        let excluded = sel
            .get("ExcludeManagementEventSources")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|s| s.as_str() == Some(source)));
        return sel
            .get("IncludeManagementEvents")
            .and_then(Value::as_bool)
            .unwrap_or(true)
            && !excluded;
    }
    let arns: Vec<&str> = event
        .get("resources")
        .and_then(Value::as_array)
        .map(|rs| {
            rs.iter()
                .filter_map(|r| r.get("ARN").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    sel.get("DataResources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|d| d.get("Type").and_then(Value::as_str) == Some("AWS::S3::Object"))
        .flat_map(|d| {
            d.get("Values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter_map(Value::as_str)
        .any(|v| v == "arn:aws:s3" || v == "arn:aws:s3:::" || arns.iter().any(|a| a.starts_with(v)))
}

/// CreateTrail / UpdateTrail input.
#[derive(Debug, Clone, Default)]
pub struct TrailSpec {
    pub bucket: Option<String>,
    pub prefix: Option<String>,
    pub sns_topic: Option<String>,
    pub include_global: Option<bool>,
    pub multi_region: Option<bool>,
    pub log_file_validation: Option<bool>,
    pub cloudwatch_logs_group: Option<String>,
    pub cloudwatch_logs_role: Option<String>,
    pub kms_key: Option<String>,
    pub organization: Option<bool>,
    pub tags: BTreeMap<String, String>,
}

fn err(kind: TrailError, msg: impl Into<String>) -> ServiceError {
    ServiceError::Trail(kind, msg.into())
}

/// AWS's trail-name rules: 3–128 characters of letters, digits, `.`, `_`
/// and `-`, starting and ending with a letter or digit, no two of `._-`
/// in a row, not an IP address.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = || {
        err(
            TrailError::InvalidTrailName,
            format!(
                "Trail name {name} is invalid. Trail names must contain only ASCII letters (a-z, A-Z), numbers (0-9), periods (.), underscores (_), or dashes (-); start with a letter or number and end with a letter or number; be between 3 and 128 characters; have no adjacent periods, underscores or dashes; and not be in IP address format."
            ),
        )
    };
    let b = name.as_bytes();
    let special = |c: u8| matches!(c, b'.' | b'_' | b'-');
    let ok_chars = b.iter().all(|c| c.is_ascii_alphanumeric() || special(*c));
    let ends = b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric);
    let adjacent = b.windows(2).any(|w| w.iter().all(|c| special(*c)));
    if !(3..=128).contains(&b.len())
        || !ok_chars
        || !ends
        || adjacent
        || name.parse::<std::net::Ipv4Addr>().is_ok()
    {
        return Err(bad());
    }
    Ok(())
}

/// A trail given by name or ARN: its name, checked.
pub fn name_of(name_or_arn: &str) -> Result<String> {
    if let Some(rest) = name_or_arn.strip_prefix("arn:") {
        let name = rest
            .split_once(":trail/")
            .map(|(_, n)| n)
            .filter(|_| rest.starts_with("aws:cloudtrail:"))
            .ok_or_else(|| {
                err(
                    TrailError::CloudTrailArnInvalid,
                    format!("Invalid trail ARN: {name_or_arn}"),
                )
            })?;
        validate_name(name)?;
        return Ok(name.to_string());
    }
    validate_name(name_or_arn)?;
    Ok(name_or_arn.to_string())
}

fn record_key(account: &str, name: &str) -> String {
    format!("{account}/{name}")
}

fn not_found(account: &str, name: &str, region: &str) -> ServiceError {
    err(
        TrailError::TrailNotFound,
        format!(
            "Unknown trail: arn:aws:cloudtrail:{region}:{account}:trail/{name} for the user: {account}"
        ),
    )
}

impl Keycard {
    /// Every trail of `account`, by name.
    pub async fn trails(&self, account: &str) -> Result<Vec<Trail>> {
        let mut out: Vec<Trail> = self
            .all_trails()
            .await?
            .into_iter()
            .filter(|t| t.account == account)
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// One trail by name or ARN.
    pub async fn trail(&self, account: &str, name_or_arn: &str) -> Result<Trail> {
        let name = name_of(name_or_arn)?;
        self.trails(account)
            .await?
            .into_iter()
            .find(|t| t.name == name)
            .ok_or_else(|| not_found(account, &name, &self.config.region))
    }

    /// The newest audit event's sequence number (0 when there is none).
    async fn last_audit_seq(&self) -> Result<i64> {
        let q = AuditQuery {
            limit: 1,
            ..AuditQuery::default()
        };
        Ok(self
            .store()
            .query_audit(&q)
            .await?
            .first()
            .map_or(0, |r| r.seq))
    }

    async fn save_trail(&self, t: &Trail) -> Result<()> {
        let value = serde_json::to_string(t).map_err(|e| ServiceError::Internal(e.to_string()))?;
        self.store()
            .commit(
                &[Op::put(KIND, record_key(&t.account, &t.name), value)],
                &[],
            )
            .await?;
        Ok(())
    }

    pub async fn create_trail(&self, account: &str, name: &str, spec: TrailSpec) -> Result<Trail> {
        validate_name(name)?;
        let existing = self.trails(account).await?;
        if existing.iter().any(|t| t.name == name) {
            return Err(err(
                TrailError::TrailAlreadyExists,
                format!("Trail {name} already exists for customer: {account}"),
            ));
        }
        if existing.len() >= MAX_TRAILS {
            return Err(err(
                TrailError::MaximumNumberOfTrailsExceeded,
                format!(
                    "User: {account} already has {MAX_TRAILS} trails in {}.",
                    self.config.region
                ),
            ));
        }
        let bucket = spec
            .bucket
            .clone()
            .ok_or_else(|| err(TrailError::InvalidParameter, "S3BucketName is required"))?;
        reject_unsupported(&spec)?;
        let t = Trail {
            account: account.into(),
            name: name.into(),
            region: self.config.region.clone(),
            bucket,
            prefix: spec.prefix.clone().filter(|p| !p.is_empty()),
            sns_topic: spec.sns_topic.clone(),
            include_global: spec.include_global.unwrap_or(true),
            multi_region: spec.multi_region.unwrap_or(false),
            log_file_validation: spec.log_file_validation.unwrap_or(false),
            cloudwatch_logs_group: spec.cloudwatch_logs_group.clone(),
            cloudwatch_logs_role: spec.cloudwatch_logs_role.clone(),
            kms_key: spec.kms_key.clone(),
            logging: false,
            start_logging_ms: None,
            stop_logging_ms: None,
            // Logging starts with StartLogging: nothing before it is sent.
            cursor: i64::MAX,
            latest_delivery_ms: None,
            latest_delivery_attempt_ms: None,
            latest_delivery_error: None,
            event_selectors: None,
            advanced_event_selectors: None,
            tags: spec.tags.clone(),
            digests: BTreeMap::new(),
            latest_digest_ms: None,
            latest_digest_error: None,
        };
        validate_trail(&t)?;
        self.check_bucket_for_trail(&t)?;
        self.save_trail(&t).await?;
        Ok(t)
    }

    pub async fn update_trail(&self, account: &str, name: &str, spec: TrailSpec) -> Result<Trail> {
        let mut t = self.trail(account, name).await?;
        reject_unsupported(&spec)?;
        if let Some(b) = spec.bucket {
            t.bucket = b;
        }
        if let Some(p) = spec.prefix {
            t.prefix = Some(p).filter(|p| !p.is_empty());
        }
        if spec.sns_topic.is_some() {
            t.sns_topic = spec.sns_topic;
        }
        t.include_global = spec.include_global.unwrap_or(t.include_global);
        t.multi_region = spec.multi_region.unwrap_or(t.multi_region);
        t.log_file_validation = spec.log_file_validation.unwrap_or(t.log_file_validation);
        t.restart_digests();
        validate_trail(&t)?;
        self.check_bucket_for_trail(&t)?;
        self.save_trail(&t).await?;
        Ok(t)
    }

    pub async fn delete_trail(&self, account: &str, name: &str) -> Result<()> {
        let t = self.trail(account, name).await?;
        self.store()
            .commit(&[Op::delete(KIND, record_key(account, &t.name))], &[])
            .await?;
        Ok(())
    }

    /// StartLogging / StopLogging. Starting delivers events from now on.
    pub async fn set_trail_logging(&self, account: &str, name: &str, on: bool) -> Result<Trail> {
        let mut t = self.trail(account, name).await?;
        let now = now_ms();
        if on && !t.logging {
            t.logging = true;
            t.start_logging_ms = Some(now);
            t.cursor = self.last_audit_seq().await?;
        } else if !on && t.logging {
            t.logging = false;
            t.stop_logging_ms = Some(now);
        }
        t.restart_digests();
        self.save_trail(&t).await?;
        Ok(t)
    }

    pub async fn put_event_selectors(
        &self,
        account: &str,
        name: &str,
        basic: Option<Value>,
        advanced: Option<Value>,
    ) -> Result<Trail> {
        let mut t = self.trail(account, name).await?;
        match (&basic, &advanced) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(err(
                    TrailError::InvalidParameterCombination,
                    "Specify either EventSelectors or AdvancedEventSelectors, but not both.",
                ));
            }
            _ => {}
        }
        if let Some(b) = &basic {
            validate_selectors(b)?;
        }
        if let Some(a) = &advanced {
            crate::trail_selectors::validate(a)?;
        }
        t.event_selectors = basic;
        t.advanced_event_selectors = advanced;
        self.save_trail(&t).await?;
        Ok(t)
    }

    pub async fn tag_trail(
        &self,
        account: &str,
        arn: &str,
        add: BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<()> {
        let mut t = self.trail(account, arn).await?;
        for k in remove {
            t.tags.remove(k);
        }
        t.tags.extend(add);
        if t.tags.len() > 50 {
            return Err(err(
                TrailError::TagsLimitExceeded,
                "The number of tags exceeds the limit of 50.",
            ));
        }
        self.save_trail(&t).await
    }

    /// Whether the bucket exists and its policy lets CloudTrail check its
    /// ACL and write the trail's log files, as CreateTrail checks.
    fn check_bucket_for_trail(&self, t: &Trail) -> Result<()> {
        let bucket = self.bucket(&t.bucket).map_err(|_| {
            err(
                TrailError::S3BucketDoesNotExist,
                format!("S3 bucket {} does not exist.", t.bucket),
            )
        })?;
        let insufficient = || {
            err(
                TrailError::InsufficientS3BucketPolicy,
                format!(
                    "Incorrect S3 bucket policy is detected for bucket: {}",
                    t.bucket
                ),
            )
        };
        let object = format!(
            "arn:aws:s3:::{}/{}AWSLogs/{}/",
            t.bucket,
            t.prefix
                .as_ref()
                .map(|p| format!("{p}/"))
                .unwrap_or_default(),
            t.account
        );
        let acl_ok = cloudtrail_allowed(
            &bucket.policy,
            &bucket.account,
            "s3:GetBucketAcl",
            &format!("arn:aws:s3:::{}", t.bucket),
            t,
        );
        let put_ok = cloudtrail_allowed(
            &bucket.policy,
            &bucket.account,
            "s3:PutObject",
            &format!("{object}probe.json.gz"),
            t,
        );
        if acl_ok && put_ok {
            Ok(())
        } else {
            Err(insufficient())
        }
    }

    /// Whether this node delivers trails: with several nodes over one
    /// store, only the first live one by name does, so events are not
    /// delivered twice (a node that dies hands over within the node
    /// timeout; the cursor in the trail record says where to go on).
    pub(crate) fn delivers_trails(&self) -> bool {
        self.leads_background_work()
    }

    /// Deliver every logging trail's new events (one pass). Returns how
    /// many log files were written.
    pub async fn deliver_trails(&self) -> Result<usize> {
        if !self.delivers_trails() {
            return Ok(0);
        }
        // Sequence order is not time order (concurrent requests; SQLite
        // numbers journaled events when it ingests them, after a write's
        // events committed directly), so "events older than two seconds"
        // cannot say what has settled: up to the highest number among them
        // it skipped younger events with lower numbers for good. What was
        // visible at the start of the pass is delivered once it has settled.
        let horizon = self.last_audit_seq().await?;
        let behind = self.logging_trails().await?;
        if behind.is_empty() || behind.iter().all(|t| t.cursor >= horizon) {
            return self.deliver_all(behind, horizon).await;
        }
        tokio::time::sleep(SETTLE).await;
        // Read again: a trail may have been stopped or changed meanwhile.
        let logging = self.logging_trails().await?;
        self.deliver_all(logging, horizon).await
    }

    /// Every stored trail, of every account.
    async fn all_trails(&self) -> Result<Vec<Trail>> {
        Ok(self
            .store()
            .load_kind(KIND)
            .await?
            .iter()
            .filter_map(|r| serde_json::from_str::<Trail>(&r.value).ok())
            .collect())
    }

    async fn logging_trails(&self) -> Result<Vec<Trail>> {
        let mut all = self.all_trails().await?;
        all.retain(|t| t.logging);
        Ok(all)
    }

    async fn deliver_all(&self, logging: Vec<Trail>, horizon: i64) -> Result<usize> {
        let mut files = 0;
        for mut t in logging {
            if t.cursor < horizon {
                files += self.deliver_trail(&mut t, horizon).await?;
            }
            self.deliver_digests(&mut t).await?;
        }
        Ok(files)
    }

    /// Deliver a trail's events after its cursor up to `horizon`, in
    /// sequence order, so the cursor never passes an undelivered event.
    async fn deliver_trail(&self, t: &mut Trail, horizon: i64) -> Result<usize> {
        let mut files = 0;
        loop {
            let q = AuditQuery {
                account: Some(t.account.clone()),
                after_seq: Some(t.cursor),
                before_seq: Some(horizon.saturating_add(1)),
                limit: PER_FILE,
                ..AuditQuery::default()
            };
            let rows = self.store().query_audit(&q).await?;
            let Some(last) = rows.iter().map(|r| r.seq).max() else {
                break;
            };
            let mut by_region: BTreeMap<String, Vec<Value>> = BTreeMap::new();
            for r in &rows {
                let Ok(ev) = serde_json::from_str::<Value>(&r.body) else {
                    continue;
                };
                if t.selects(&ev) {
                    let region = ev
                        .get("awsRegion")
                        .and_then(Value::as_str)
                        .unwrap_or(&t.region)
                        .to_string();
                    by_region.entry(region).or_default().push(ev);
                }
            }
            t.latest_delivery_attempt_ms = Some(now_ms());
            let mut failed = None;
            for (region, records) in by_region {
                match self.write_log_file(t, &region, records).await {
                    Ok(file) => {
                        files += 1;
                        if t.log_file_validation {
                            t.digests
                                .entry(region)
                                .or_insert_with(|| DigestChain::starting(crate::now()))
                                .files
                                .push(file);
                        }
                    }
                    Err(e) => failed = Some(e),
                }
            }
            if let Some(e) = failed {
                // The cursor stays: the same events go out once the bucket
                // lets CloudTrail write again.
                t.latest_delivery_error = Some(e);
                self.save_trail(t).await?;
                return Ok(files);
            }
            t.cursor = last;
            t.latest_delivery_error = None;
            t.latest_delivery_ms = Some(now_ms());
            if rows.len() < PER_FILE as usize {
                break;
            }
            self.save_trail(t).await?;
        }
        // Nothing of this account is left up to the horizon: the cursor
        // moves there so the next pass does not wait for others' events.
        t.cursor = horizon;
        self.save_trail(t).await?;
        Ok(files)
    }

    /// Every digest chain of a logging trail with validation on whose
    /// period is over gets its digest; a failed one is retried next pass
    /// (its log files stay in the chain).
    async fn deliver_digests(&self, t: &mut Trail) -> Result<()> {
        if !(t.logging && t.log_file_validation) {
            return Ok(());
        }
        t.restart_digests();
        let now = crate::now();
        let due_ms = self.config.trail_digest_interval_ms;
        let mut chains = std::mem::take(&mut t.digests);
        let mut changed = false;
        for (region, chain) in chains.iter_mut() {
            if (now - chain.start) * 1000 < due_ms || now <= chain.start {
                continue;
            }
            changed = true;
            match self.deliver_digest(t, region, chain, now).await {
                Ok(()) => {
                    t.latest_digest_ms = Some(now_ms());
                    t.latest_digest_error = None;
                }
                Err(e) => t.latest_digest_error = Some(e),
            }
        }
        t.digests = chains;
        if changed {
            self.save_trail(t).await?;
        }
        Ok(())
    }

    /// An object CloudTrail writes into the trail's bucket: allowed by
    /// the bucket policy for `cloudtrail.amazonaws.com`, else the
    /// delivery error text.
    pub(crate) async fn put_trail_object(
        &self,
        t: &Trail,
        key: &str,
        data: &[u8],
        metadata: BTreeMap<String, String>,
    ) -> std::result::Result<(), String> {
        let bucket = self
            .bucket(&t.bucket)
            .map_err(|_| "NoSuchBucket".to_string())?;
        let arn = format!("arn:aws:s3:::{}/{key}", t.bucket);
        if !cloudtrail_allowed(&bucket.policy, &bucket.account, "s3:PutObject", &arn, t) {
            return Err("AccessDenied".into());
        }
        self.put_object_bytes_with(&t.bucket, key, data, "application/json", metadata)
            .await
            .map(|_| ())
            .map_err(|e| e.code().to_string())
    }

    /// One gzipped log file into the trail's bucket, written as CloudTrail
    /// (the bucket policy must allow it); Err is the delivery error text.
    async fn write_log_file(
        &self,
        t: &Trail,
        region: &str,
        records: Vec<Value>,
    ) -> std::result::Result<LogFile, String> {
        let now = time::OffsetDateTime::now_utc();
        let day = format!(
            "{:04}/{:02}/{:02}",
            now.year(),
            u8::from(now.month()),
            now.day()
        );
        let stamp = format!(
            "{:04}{:02}{:02}T{:02}{:02}Z",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute()
        );
        let key = format!(
            "{}{}_CloudTrail_{region}_{stamp}_{}.json.gz",
            t.log_prefix(region, &day),
            t.account,
            random_suffix()
        );
        let body =
            serde_json::to_vec(&json!({ "Records": &records })).map_err(|e| e.to_string())?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&body).map_err(|e| e.to_string())?;
        let data = gz.finish().map_err(|e| e.to_string())?;
        self.put_trail_object(t, &key, &data, BTreeMap::new())
            .await?;
        Ok(LogFile::of(&t.bucket, &key, &body, &records))
    }
}

/// Unsupported destinations keycard cannot deliver to (it serves no SNS,
/// CloudWatch Logs or KMS): refused rather than silently ignored.
fn reject_unsupported(spec: &TrailSpec) -> Result<()> {
    if spec.organization == Some(true) {
        return Err(err(
            TrailError::OrganizationsNotInUse,
            "This account is not a member of an organization.",
        ));
    }
    if spec.kms_key.as_deref().is_some_and(|k| !k.is_empty()) {
        return Err(err(
            TrailError::KmsKeyNotFound,
            "keycard serves no KMS: the key does not exist.",
        ));
    }
    if spec
        .cloudwatch_logs_group
        .as_deref()
        .is_some_and(|k| !k.is_empty())
    {
        return Err(err(
            TrailError::InvalidCloudWatchLogsLogGroupArn,
            "keycard serves no CloudWatch Logs: the log group does not exist.",
        ));
    }
    if spec.sns_topic.as_deref().is_some_and(|k| !k.is_empty()) {
        return Err(err(
            TrailError::InsufficientSnsTopicPolicy,
            "keycard serves no SNS: the topic does not exist.",
        ));
    }
    Ok(())
}

fn validate_trail(t: &Trail) -> Result<()> {
    if let Some(p) = &t.prefix
        && (p.len() > 200 || p.starts_with('/') || p.ends_with('/'))
    {
        return Err(err(
            TrailError::InvalidS3Prefix,
            format!("Invalid S3 prefix: {p}"),
        ));
    }
    if crate::s3::validate_bucket_name(&t.bucket).is_err() {
        return Err(err(
            TrailError::InvalidS3BucketName,
            format!("Bucket name {} is not valid.", t.bucket),
        ));
    }
    Ok(())
}

/// Basic selectors: at most five, each with a known ReadWriteType and only
/// S3 object data resources (the data events keycard records).
fn validate_selectors(v: &Value) -> Result<()> {
    let bad = |m: &str| err(TrailError::InvalidEventSelectors, m.to_string());
    let sels = v
        .as_array()
        .ok_or_else(|| bad("EventSelectors must be a list."))?;
    if sels.len() > 5 {
        return Err(bad(
            "You can specify at most 5 event selectors for a trail.",
        ));
    }
    for s in sels {
        if let Some(rw) = s.get("ReadWriteType")
            && !matches!(rw.as_str(), Some("ReadOnly" | "WriteOnly" | "All"))
        {
            return Err(bad("ReadWriteType must be ReadOnly, WriteOnly or All."));
        }
        for d in s
            .get("DataResources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let ty = d.get("Type").and_then(Value::as_str).unwrap_or("");
            if ty != "AWS::S3::Object" {
                return Err(bad(&format!(
                    "Value {ty} for DataResources.Type is invalid."
                )));
            }
            let values = d
                .get("Values")
                .and_then(Value::as_array)
                .map(Vec::len)
                .unwrap_or(0);
            if values > 250 {
                return Err(bad("You can specify at most 250 data resource values."));
            }
        }
    }
    Ok(())
}

/// Whether a bucket policy lets `cloudtrail.amazonaws.com` do `action` on
/// `resource` for this trail (`aws:SourceArn` / `aws:SourceAccount` in the
/// context, and the canned ACL CloudTrail sends on PutObject).
fn cloudtrail_allowed(
    policy: &Option<crate::model::PolicyDoc>,
    bucket_account: &str,
    action: &str,
    resource: &str,
    t: &Trail,
) -> bool {
    let Some(compiled) = policy.as_ref().and_then(|p| p.compiled.clone()) else {
        return false;
    };
    let mut ctx = Context::new();
    ctx.insert("aws:SourceArn", t.arn());
    ctx.insert("aws:SourceAccount", t.account.clone());
    if action == "s3:PutObject" {
        ctx.insert("s3:x-amz-acl", "bucket-owner-full-control");
    }
    crate::auth::service_allowed(
        "cloudtrail.amazonaws.com",
        &compiled,
        false,
        (action, resource, bucket_account),
        ctx,
    )
}

/// 16 characters as in CloudTrail's log file names.
fn random_suffix() -> String {
    use rand::RngExt as _;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..16)
        .filter_map(|_| {
            ALPHABET
                .get(rng.random_range(0..ALPHABET.len()))
                .map(|c| *c as char)
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn names_follow_aws_rules() {
        for ok in ["abc", "my-trail", "a.b_c-d", "Trail1"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "-abc",
            "abc-",
            "a--b",
            "a._b",
            "10.0.0.1",
            "a b c",
            &"a".repeat(129),
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn arns_name_their_trail() {
        assert_eq!(
            name_of("arn:aws:cloudtrail:us-east-1:123456789012:trail/trail1").ok(),
            Some("trail1".into())
        );
        assert!(name_of("arn:aws:s3:::bucket").is_err());
    }

    pub(crate) fn trail() -> Trail {
        Trail {
            account: "123456789012".into(),
            name: "t".into(),
            region: "us-east-1".into(),
            bucket: "b".into(),
            prefix: None,
            sns_topic: None,
            include_global: true,
            multi_region: false,
            log_file_validation: false,
            cloudwatch_logs_group: None,
            cloudwatch_logs_role: None,
            kms_key: None,
            logging: true,
            start_logging_ms: None,
            stop_logging_ms: None,
            cursor: 0,
            latest_delivery_ms: None,
            latest_delivery_attempt_ms: None,
            latest_delivery_error: None,
            event_selectors: None,
            advanced_event_selectors: None,
            tags: BTreeMap::new(),
            digests: BTreeMap::new(),
            latest_digest_ms: None,
            latest_digest_error: None,
        }
    }

    #[test]
    fn default_selection_is_management_events_of_the_region() {
        let t = trail();
        let mgmt = json!({"awsRegion": "us-east-1", "eventSource": "ec2.amazonaws.com", "eventCategory": "Management"});
        let other = json!({"awsRegion": "eu-west-1", "eventSource": "ec2.amazonaws.com", "eventCategory": "Management"});
        let global = json!({"awsRegion": "eu-west-1", "eventSource": "iam.amazonaws.com", "eventCategory": "Management"});
        let data = json!({"awsRegion": "us-east-1", "eventSource": "s3.amazonaws.com", "eventCategory": "Data"});
        assert!(t.selects(&mgmt));
        assert!(!t.selects(&other));
        assert!(t.selects(&global));
        assert!(!t.selects(&data));
    }

    #[test]
    fn data_selectors_pick_their_buckets_and_rw_type() {
        let mut t = trail();
        t.event_selectors = Some(json!([{
            "ReadWriteType": "WriteOnly", "IncludeManagementEvents": false,
            "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3:::logs/"]}]
        }]));
        let put = json!({"awsRegion": "us-east-1", "eventCategory": "Data", "readOnly": false,
                         "resources": [{"ARN": "arn:aws:s3:::logs/a.txt"}]});
        let get = json!({"awsRegion": "us-east-1", "eventCategory": "Data", "readOnly": true,
                         "resources": [{"ARN": "arn:aws:s3:::logs/a.txt"}]});
        let elsewhere = json!({"awsRegion": "us-east-1", "eventCategory": "Data", "readOnly": false,
                               "resources": [{"ARN": "arn:aws:s3:::other/a.txt"}]});
        let mgmt = json!({"awsRegion": "us-east-1", "eventSource": "iam.amazonaws.com", "eventCategory": "Management"});
        assert!(t.selects(&put));
        assert!(!t.selects(&get));
        assert!(!t.selects(&elsewhere));
        assert!(!t.selects(&mgmt));
    }
}
