//! Access Analyzer's policy generation (REST-JSON) over keycard's own audit
//! trail: StartPolicyGeneration, GetGeneratedPolicy, ListPolicyGenerations
//! and CancelPolicyGeneration. The work is done by
//! `keycard_services::generate`; this is the wire.
//!
//! Where keycard differs from AWS (documented in docs/least-privilege.md):
//! a job completes at once, the trail named in `cloudTrailDetails` is
//! recorded but keycard reads its own, and resources are the concrete
//! ARNs the principal touched unless placeholders are asked for.

use keycard_services::ServiceError;
use keycard_services::generate::{self, Job};
use keycard_services::sts::iso8601;
use serde_json::{Value, json};

use crate::Req;
use crate::access_analyzer::query;

/// Most generations one ListPolicyGenerations page returns.
const MAX_PAGE: usize = 100;

fn invalid(m: impl Into<String>) -> ServiceError {
    ServiceError::ValidationError(m.into())
}

/// An ISO 8601 timestamp (or epoch seconds) as epoch seconds.
fn timestamp(v: &Value, field: &str) -> Result<i64, ServiceError> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .map(|f| f as i64)
            .ok_or_else(|| invalid(format!("Invalid {field}."))),
        Value::String(s) => {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map(|t| t.unix_timestamp())
                .map_err(|_| invalid(format!("Invalid {field}: {s}.")))
        }
        _ => Err(invalid(format!("Invalid {field}."))),
    }
}

fn text<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// The trails of `cloudTrailDetails`, as `trailProperties` echoes them.
fn trails(details: &Value) -> Result<Vec<String>, ServiceError> {
    let Some(list) = details.get("trails") else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or_else(|| invalid("cloudTrailDetails.trails must be a list."))?;
    list.iter()
        .map(|t| {
            text(t, "/cloudTrailArn")
                .filter(|a| a.starts_with("arn:") && a.contains(":cloudtrail:"))
                .map(str::to_string)
                .ok_or_else(|| invalid("Each trail needs a cloudTrailArn."))
        })
        .collect()
}

/// StartPolicyGeneration: `{jobId}`.
pub async fn start(req: &Req, body: &Value) -> Result<Value, ServiceError> {
    let principal = text(body, "/policyGenerationDetails/principalArn")
        .ok_or_else(|| invalid("policyGenerationDetails.principalArn is required."))?;
    let details = body.get("cloudTrailDetails").cloned().unwrap_or(json!({}));
    let start = match details.get("startTime") {
        Some(t) => timestamp(t, "startTime")?,
        // No trail details: the longest window AWS allows.
        None => keycard_services::now() - generate::MAX_WINDOW_SECS,
    };
    let end = details
        .get("endTime")
        .map(|t| timestamp(t, "endTime"))
        .transpose()?;
    let token = text(body, "/clientToken").map(str::to_string);
    let job = req
        .kc
        .start_policy_generation(
            &req.caller.account,
            principal,
            (start, end),
            trails(&details)?,
            token,
        )
        .await?;
    Ok(json!({ "jobId": job.job_id }))
}

fn job_details(j: &Job) -> Value {
    json!({
        "jobId": j.job_id,
        "status": j.status,
        "startedOn": iso8601(j.started_on),
        "completedOn": iso8601(j.completed_on),
    })
}

/// GetGeneratedPolicy: the job and its policy.
pub async fn get(req: &Req, job_id: &str) -> Result<Value, ServiceError> {
    let job = req
        .kc
        .policy_generation(&req.caller.account, job_id)
        .await?;
    let placeholders =
        query(req, "includeResourcePlaceholders").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let policy = generate::policy_with(&job.observed, placeholders);
    let trails: Vec<Value> = job
        .trails
        .iter()
        .map(|t| json!({"cloudTrailArn": t, "allRegions": true}))
        .collect();
    let mut policies = Vec::new();
    if job.status == "SUCCEEDED" && !job.observed.is_empty() {
        policies.push(json!({ "policy": policy.to_string() }));
    }
    Ok(json!({
        "jobDetails": job_details(&job),
        "generatedPolicyResult": {
            "properties": {
                "isComplete": job.is_complete,
                "principalArn": job.principal_arn,
                "cloudTrailProperties": {
                    "trailProperties": trails,
                    "startTime": iso8601(job.start_time),
                    "endTime": iso8601(job.end_time),
                },
            },
            "generatedPolicies": policies,
        },
    }))
}

/// ListPolicyGenerations: newest first, paginated by position.
pub async fn list(req: &Req) -> Result<Value, ServiceError> {
    let principal = query(req, "principalArn");
    let max = match query(req, "maxResults").as_deref() {
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| invalid("maxResults must be at least 1."))?,
        None => MAX_PAGE,
    }
    .min(MAX_PAGE);
    let from = match query(req, "nextToken") {
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| invalid("Invalid nextToken."))?,
        None => 0,
    };
    let jobs: Vec<Job> = req
        .kc
        .policy_generations(&req.caller.account)
        .await?
        .into_iter()
        .filter(|j| principal.as_deref().is_none_or(|p| p == j.principal_arn))
        .collect();
    let page: Vec<Value> = jobs
        .iter()
        .skip(from)
        .take(max)
        .map(|j| {
            let mut v = job_details(j);
            if let Some(o) = v.as_object_mut() {
                o.insert("principalArn".into(), j.principal_arn.clone().into());
            }
            v
        })
        .collect();
    let mut out = json!({ "policyGenerations": page });
    if from + max < jobs.len()
        && let Some(o) = out.as_object_mut()
    {
        o.insert("nextToken".into(), (from + max).to_string().into());
    }
    Ok(out)
}

/// CancelPolicyGeneration: jobs finish when they start, so there is
/// nothing to stop; an unknown job is still an error.
pub async fn cancel(req: &Req, job_id: &str) -> Result<Value, ServiceError> {
    req.kc
        .policy_generation(&req.caller.account, job_id)
        .await?;
    Ok(json!({}))
}
