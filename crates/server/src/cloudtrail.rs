//! CloudTrail (JSON 1.1 protocol): `LookupEvents` over the audit trail,
//! and trails (`crates/services/src/trails.rs`) that deliver it to S3.

use axum::body::Body;
use http::Response;
use keycard_services::ServiceError;
use keycard_services::auth::ResourcePolicy;
use keycard_store::AuditQuery;
use serde_json::{Value, json};

use crate::Req;

fn invalid(m: impl Into<String>) -> ServiceError {
    ServiceError::ValidationError(m.into())
}

pub(crate) fn epoch_ms(v: &Value) -> Result<i64, ServiceError> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .map(|f| (f * 1000.0) as i64)
            .ok_or_else(|| invalid("invalid timestamp")),
        Value::String(s) => {
            let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map_err(|_| invalid(format!("invalid timestamp {s}")))?;
            Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
        }
        _ => Err(invalid("invalid timestamp")),
    }
}

pub async fn handle(req: &mut Req) -> Result<Response<Body>, ServiceError> {
    let body: Value = if req.body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&req.body).map_err(|e| invalid(format!("invalid JSON body: {e}")))?
    };
    req.audit.params = body.clone();
    if req.op.name == "LookupEvents" {
        return lookup_events(req, body).await;
    }
    let out = crate::trails::handle(req, &body).await?;
    let mut r = Response::new(Body::from(out.to_string()));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    Ok(r)
}

async fn lookup_events(req: &mut Req, body: Value) -> Result<Response<Body>, ServiceError> {
    req.authorize("cloudtrail:LookupEvents", "*", None, ResourcePolicy::None)?;
    let mut q = AuditQuery::default();
    if let Some(attrs) = body.get("LookupAttributes").and_then(Value::as_array) {
        if attrs.len() > 1 {
            return Err(ServiceError::InvalidInput(
                "You cannot specify more than one lookup attribute.".into(),
            ));
        }
        for a in attrs {
            let key = a.get("AttributeKey").and_then(Value::as_str).unwrap_or("");
            let val = a
                .get("AttributeValue")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            match key {
                "EventName" => q.event_name = Some(val),
                "Username" => q.username = Some(val),
                "AccessKeyId" => q.access_key_id = Some(val),
                "ResourceName" => q.resource_name = Some(val),
                "EventSource" => q.event_source = Some(val),
                "EventId" => q.event_id = Some(val),
                "ReadOnly" => q.read_only = Some(val == "true"),
                other => return Err(invalid(format!("Unsupported lookup attribute key {other}"))),
            }
        }
    }
    if let Some(v) = body.get("StartTime") {
        q.start_ms = Some(epoch_ms(v)?);
    }
    if let Some(v) = body.get("EndTime") {
        q.end_ms = Some(epoch_ms(v)?);
    }
    let max = body.get("MaxResults").and_then(Value::as_u64).unwrap_or(50);
    if !(1..=50).contains(&max) {
        return Err(invalid("MaxResults must be between 1 and 50"));
    }
    q.limit = max as u32 + 1;
    if let Some(t) = body.get("NextToken").and_then(Value::as_str) {
        q.before_seq = Some(
            t.parse()
                .map_err(|_| ServiceError::InvalidInput("Invalid NextToken".into()))?,
        );
    }
    // Everything recorded before this request is visible.
    req.kc.audit.flush().await;
    // The account filter and the page limit both run in SQL, so a page is
    // full whenever more events exist, and NextToken means there are more.
    q.account = Some(req.caller.account.clone());
    let mut rows = req.kc.store().query_audit(&q).await?;
    let next = if rows.len() > max as usize {
        rows.truncate(max as usize);
        rows.last().map(|r| r.seq.to_string())
    } else {
        None
    };
    let events: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "EventId": r.event_id,
                "EventName": r.event_name,
                "ReadOnly": if r.read_only { "true" } else { "false" },
                "AccessKeyId": r.access_key_id,
                "EventTime": r.event_time_ms as f64 / 1000.0,
                "EventSource": r.event_source,
                "Username": r.username,
                "Resources": r.resource_names.iter().map(|n| json!({"ResourceName": n})).collect::<Vec<_>>(),
                "CloudTrailEvent": r.body,
            })
        })
        .collect();
    let mut out = json!({"Events": events});
    if let (Some(n), Some(obj)) = (next, out.as_object_mut()) {
        obj.insert("NextToken".into(), Value::String(n));
    }
    let mut r = Response::new(Body::from(out.to_string()));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    Ok(r)
}
