//! CloudTrail's trail operations: parse, authorize the trail ARN, call
//! the trails service, render AWS's JSON shapes.

use std::collections::BTreeMap;

use keycard_services::ServiceError;
use keycard_services::auth::ResourcePolicy;
use keycard_services::error::TrailError;
use keycard_services::sts::iso8601;
use keycard_services::trails::{Trail, TrailSpec, name_of};
use serde_json::{Value, json};

use crate::Req;

fn bad(kind: TrailError, m: impl Into<String>) -> ServiceError {
    ServiceError::Trail(kind, m.into())
}

fn string(body: &Value, key: &str) -> Result<Option<String>, ServiceError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(
            TrailError::InvalidParameter,
            format!("{key} must be a string."),
        )),
    }
}

fn need(body: &Value, key: &str) -> Result<String, ServiceError> {
    string(body, key)?.ok_or_else(|| {
        let kind = if key == "Name" || key == "TrailName" {
            TrailError::InvalidTrailName
        } else {
            TrailError::InvalidParameter
        };
        bad(kind, format!("{key} is required."))
    })
}

fn flag(body: &Value, key: &str) -> Result<Option<bool>, ServiceError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad(
            TrailError::InvalidParameter,
            format!("{key} must be a boolean."),
        )),
    }
}

/// `TagsList`: `[{Key, Value}]`, keys 1–128, values up to 256 characters.
fn tags(body: &Value) -> Result<BTreeMap<String, String>, ServiceError> {
    let mut out = BTreeMap::new();
    let list = match body.get("TagsList") {
        None | Some(Value::Null) => return Ok(out),
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(bad(
                TrailError::InvalidTagParameter,
                "TagsList must be a list.",
            ));
        }
    };
    for t in list {
        let key = t.get("Key").and_then(Value::as_str).unwrap_or("");
        let value = t.get("Value").and_then(Value::as_str).unwrap_or("");
        if key.is_empty() || key.len() > 128 || value.len() > 256 || key.starts_with("aws:") {
            return Err(bad(
                TrailError::InvalidTagParameter,
                format!("Tag key or value is invalid: {key}"),
            ));
        }
        out.insert(key.to_string(), value.to_string());
    }
    if out.len() > 50 {
        return Err(bad(
            TrailError::TagsLimitExceeded,
            "The number of tags exceeds the limit of 50.",
        ));
    }
    Ok(out)
}

fn spec(body: &Value) -> Result<TrailSpec, ServiceError> {
    Ok(TrailSpec {
        bucket: string(body, "S3BucketName")?,
        prefix: string(body, "S3KeyPrefix")?,
        sns_topic: string(body, "SnsTopicName")?,
        include_global: flag(body, "IncludeGlobalServiceEvents")?,
        multi_region: flag(body, "IsMultiRegionTrail")?,
        log_file_validation: flag(body, "EnableLogFileValidation")?,
        cloudwatch_logs_group: string(body, "CloudWatchLogsLogGroupArn")?,
        cloudwatch_logs_role: string(body, "CloudWatchLogsRoleArn")?,
        kms_key: string(body, "KmsKeyId")?,
        organization: flag(body, "IsOrganizationTrail")?,
        tags: tags(body)?,
    })
}

/// The trail shape of CreateTrail / UpdateTrail answers.
fn created(t: &Trail) -> Value {
    let mut v = json!({
        "Name": t.name,
        "S3BucketName": t.bucket,
        "IncludeGlobalServiceEvents": t.include_global,
        "IsMultiRegionTrail": t.multi_region,
        "TrailARN": t.arn(),
        "LogFileValidationEnabled": t.log_file_validation,
        "IsOrganizationTrail": false,
    });
    if let (Some(p), Some(o)) = (&t.prefix, v.as_object_mut()) {
        o.insert("S3KeyPrefix".into(), json!(p));
    }
    v
}

/// The `Trail` shape of DescribeTrails / GetTrail.
fn described(t: &Trail) -> Value {
    let mut v = created(t);
    if let Some(o) = v.as_object_mut() {
        o.insert("HomeRegion".into(), json!(t.region));
        o.insert(
            "HasCustomEventSelectors".into(),
            json!(t.event_selectors.is_some() || t.advanced_event_selectors.is_some()),
        );
        o.insert("HasInsightSelectors".into(), json!(false));
    }
    v
}

fn status(t: &Trail) -> Value {
    let secs = |ms: Option<i64>| ms.map(|m| m as f64 / 1000.0);
    let text = |ms: Option<i64>| ms.map(|m| iso8601(m / 1000)).unwrap_or_default();
    let mut v = json!({
        "IsLogging": t.logging,
        "LatestDeliveryAttemptTime": text(t.latest_delivery_attempt_ms),
        "LatestDeliveryAttemptSucceeded": if t.latest_delivery_error.is_none() { text(t.latest_delivery_ms) } else { String::new() },
        "LatestNotificationAttemptTime": "",
        "LatestNotificationAttemptSucceeded": "",
        "TimeLoggingStarted": text(t.start_logging_ms),
        "TimeLoggingStopped": text(t.stop_logging_ms),
    });
    if let Some(o) = v.as_object_mut() {
        for (k, val) in [
            ("LatestDeliveryTime", secs(t.latest_delivery_ms)),
            ("StartLoggingTime", secs(t.start_logging_ms)),
            ("StopLoggingTime", secs(t.stop_logging_ms)),
            ("LatestDigestDeliveryTime", secs(t.latest_digest_ms)),
        ] {
            if let Some(x) = val {
                o.insert(k.into(), json!(x));
            }
        }
        if let Some(e) = &t.latest_delivery_error {
            o.insert("LatestDeliveryError".into(), json!(e));
        }
        if let Some(e) = &t.latest_digest_error {
            o.insert("LatestDigestDeliveryError".into(), json!(e));
        }
    }
    v
}

fn selectors(t: &Trail) -> Value {
    if let Some(adv) = &t.advanced_event_selectors {
        return json!({"TrailARN": t.arn(), "AdvancedEventSelectors": adv});
    }
    let basic = t.event_selectors.clone().unwrap_or_else(|| {
        json!([{"ReadWriteType": "All", "IncludeManagementEvents": true,
                "DataResources": [], "ExcludeManagementEventSources": []}])
    });
    json!({"TrailARN": t.arn(), "EventSelectors": basic})
}

fn arn_of(req: &Req, name: &str) -> String {
    format!(
        "arn:aws:cloudtrail:{}:{}:trail/{name}",
        req.kc.config.region, req.caller.account
    )
}

/// Authorize `action` on the trail the input names (by name or ARN).
fn authorize_trail(req: &mut Req, action: &str, name_or_arn: &str) -> Result<String, ServiceError> {
    let name = name_of(name_or_arn)?;
    let arn = arn_of(req, &name);
    req.authorize(action, &arn, None, ResourcePolicy::None)?;
    Ok(name)
}

pub async fn handle(req: &mut Req, body: &Value) -> Result<Value, ServiceError> {
    let op = req.op.name;
    let action = format!("cloudtrail:{op}");
    let kc = req.kc.clone();
    let acct = req.caller.account.clone();
    match op {
        "CreateTrail" => {
            let name = authorize_trail(req, &action, &need(body, "Name")?)?;
            if body.get("S3BucketName").is_none() {
                return Err(bad(
                    TrailError::InvalidParameter,
                    "S3BucketName is required.",
                ));
            }
            let s = spec(body)?;
            if !s.tags.is_empty() {
                req.request_tags(s.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                let arn = arn_of(req, &name);
                req.authorize("cloudtrail:AddTags", &arn, None, ResourcePolicy::None)?;
            }
            Ok(created(&kc.create_trail(&acct, &name, s).await?))
        }
        "UpdateTrail" => {
            let name = authorize_trail(req, &action, &need(body, "Name")?)?;
            Ok(created(&kc.update_trail(&acct, &name, spec(body)?).await?))
        }
        "DeleteTrail" => {
            let name = authorize_trail(req, &action, &need(body, "Name")?)?;
            kc.delete_trail(&acct, &name).await?;
            Ok(json!({}))
        }
        "GetTrail" => {
            let name = authorize_trail(req, &action, &need(body, "Name")?)?;
            Ok(json!({"Trail": described(&kc.trail(&acct, &name).await?)}))
        }
        "GetTrailStatus" => {
            let name = authorize_trail(req, &action, &need(body, "Name")?)?;
            Ok(status(&kc.trail(&acct, &name).await?))
        }
        "StartLogging" | "StopLogging" => {
            let name = authorize_trail(req, &action, &need(body, "Name")?)?;
            kc.set_trail_logging(&acct, &name, op == "StartLogging")
                .await?;
            Ok(json!({}))
        }
        "GetEventSelectors" => {
            let name = authorize_trail(req, &action, &need(body, "TrailName")?)?;
            Ok(selectors(&kc.trail(&acct, &name).await?))
        }
        "PutEventSelectors" => {
            let name = authorize_trail(req, &action, &need(body, "TrailName")?)?;
            let basic = body.get("EventSelectors").cloned().filter(|v| !v.is_null());
            let advanced = body
                .get("AdvancedEventSelectors")
                .cloned()
                .filter(|v| !v.is_null());
            Ok(selectors(
                &kc.put_event_selectors(&acct, &name, basic, advanced)
                    .await?,
            ))
        }
        "DescribeTrails" => describe(req, body, &action).await,
        "ListTrails" => {
            req.authorize(&action, "*", None, ResourcePolicy::None)?;
            let trails = kc.trails(&acct).await?;
            Ok(json!({"Trails": trails.iter().map(|t| json!({
                "TrailARN": t.arn(), "Name": t.name, "HomeRegion": t.region,
            })).collect::<Vec<_>>()}))
        }
        "AddTags" | "RemoveTags" => {
            let id = need(body, "ResourceId")?;
            let name = authorize_trail(req, &action, &id)?;
            let given = tags(body)?;
            let missing = |e: ServiceError| match e {
                ServiceError::Trail(TrailError::TrailNotFound, _) => bad(
                    TrailError::ResourceNotFound,
                    format!("Resource {id} not found."),
                ),
                e => e,
            };
            if op == "AddTags" {
                req.request_tags(given.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                kc.tag_trail(&acct, &name, given, &[])
                    .await
                    .map_err(missing)?;
            } else {
                let keys: Vec<String> = given.into_keys().collect();
                kc.tag_trail(&acct, &name, BTreeMap::new(), &keys)
                    .await
                    .map_err(missing)?;
            }
            Ok(json!({}))
        }
        "ListTags" => list_tags(req, body, &action).await,
        "ListPublicKeys" => list_public_keys(req, body, &action).await,
        "GetInsightSelectors" => {
            let name = authorize_trail(req, &action, &need(body, "TrailName")?)?;
            let t = kc.trail(&acct, &name).await?;
            Err(bad(
                TrailError::InsightNotEnabled,
                format!(
                    "Trail {} does not have Insights enabled. Edit the trail settings to enable Insights, and then try the operation again.",
                    t.arn()
                ),
            ))
        }
        "ListEventDataStores" | "ListChannels" => {
            req.authorize(&action, "*", None, ResourcePolicy::None)?;
            page_params(body)?;
            let key = if op == "ListChannels" {
                "Channels"
            } else {
                "EventDataStores"
            };
            Ok(json!({ key: [] }))
        }
        other => Err(ServiceError::InvalidAction(format!(
            "The action {other} is not valid for this web service."
        ))),
    }
}

async fn describe(req: &mut Req, body: &Value, action: &str) -> Result<Value, ServiceError> {
    req.authorize(action, "*", None, ResourcePolicy::None)?;
    let all = req.kc.trails(&req.caller.account).await?;
    let wanted: Option<Vec<String>> = match body.get("trailNameList") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) if a.is_empty() => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|v| name_of(v.as_str().unwrap_or("")))
                .collect::<Result<_, _>>()?,
        ),
        Some(_) => {
            return Err(bad(
                TrailError::InvalidParameter,
                "trailNameList must be a list.",
            ));
        }
    };
    let list: Vec<Value> = all
        .iter()
        .filter(|t| wanted.as_ref().is_none_or(|w| w.contains(&t.name)))
        .map(described)
        .collect();
    Ok(json!({"trailList": list}))
}

async fn list_tags(req: &mut Req, body: &Value, action: &str) -> Result<Value, ServiceError> {
    let ids = body
        .get("ResourceIdList")
        .and_then(Value::as_array)
        .ok_or_else(|| bad(TrailError::InvalidParameter, "ResourceIdList is required."))?
        .clone();
    let mut out = Vec::new();
    for id in ids {
        let id = id.as_str().unwrap_or("").to_string();
        let name = authorize_trail(req, action, &id)?;
        let t = req
            .kc
            .trail(&req.caller.account, &name)
            .await
            .map_err(|_| {
                bad(
                    TrailError::ResourceNotFound,
                    format!("Resource {id} not found."),
                )
            })?;
        out.push(json!({
            "ResourceId": t.arn(),
            "TagsList": t.tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>(),
        }));
    }
    Ok(json!({"ResourceTagList": out}))
}

/// `MaxResults` / `NextToken` of the list operations that have nothing to
/// page through: a token keycard did not hand out is refused.
fn page_params(body: &Value) -> Result<(), ServiceError> {
    if let Some(m) = body.get("MaxResults").filter(|v| !v.is_null())
        && m.as_i64().is_none_or(|n| !(1..=1000).contains(&n))
    {
        return Err(bad(
            TrailError::InvalidMaxResults,
            "MaxResults must be between 1 and 1000.",
        ));
    }
    if body.get("NextToken").is_some_and(|v| !v.is_null()) {
        return Err(bad(
            TrailError::InvalidNextToken,
            "The NextToken is not valid.",
        ));
    }
    Ok(())
}

/// ListPublicKeys: the region's digest signing keys valid in the range
/// (default: now). `Value` is the PKCS#1 DER (a blob: base64 on the wire,
/// which awscli's validate-logs decodes itself).
async fn list_public_keys(
    req: &mut Req,
    body: &Value,
    action: &str,
) -> Result<Value, ServiceError> {
    req.authorize(action, "*", None, ResourcePolicy::None)?;
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let now = keycard_services::now();
    let time = |key: &str| -> Result<Option<i64>, ServiceError> {
        match body.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => crate::cloudtrail::epoch_ms(v)
                .map(|ms| Some(ms.div_euclid(1000)))
                .map_err(|_| {
                    bad(
                        TrailError::InvalidTimeRange,
                        format!("{key} is not a valid timestamp."),
                    )
                }),
        }
    };
    let start = time("StartTime")?.unwrap_or(now);
    let end = time("EndTime")?.unwrap_or(now);
    if start > end {
        return Err(bad(
            TrailError::InvalidTimeRange,
            "Start time must be before end time.",
        ));
    }
    if body.get("NextToken").is_some_and(|v| !v.is_null()) {
        return Err(bad(TrailError::InvalidToken, "Reserved for future use."));
    }
    let keys = req.kc.digest_public_keys(start, end).await?;
    Ok(json!({"PublicKeyList": keys.iter().map(|k| json!({
        "Value": b64.encode(&k.der),
        "ValidityStartTime": k.start,
        "ValidityEndTime": k.end,
        "Fingerprint": k.fingerprint,
    })).collect::<Vec<_>>()}))
}
