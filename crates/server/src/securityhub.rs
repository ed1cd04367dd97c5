//! Security Hub's finding API (REST-JSON) over keycard's governance
//! findings, in the AWS Security Finding Format: DescribeHub, GetFindings
//! (filters, pagination) and BatchUpdateFindings (workflow and notes), so
//! tools that read Security Hub read keycard.

use axum::body::Body;
use http::Response;
use keycard_services::ServiceError;
use keycard_services::auth::ResourcePolicy;
use keycard_services::governance::{Finding, Workflow};
use keycard_services::sts::iso8601;
use serde_json::{Value, json};

use crate::Req;

/// The REST route of a Security Hub call.
pub fn op_name(parts: &http::request::Parts) -> String {
    let path = parts.uri.path().trim_end_matches('/');
    match (parts.method.as_str(), path) {
        ("GET", "/accounts") => "DescribeHub".into(),
        ("POST", "/findings") => "GetFindings".into(),
        ("PATCH", "/findings/batchupdate") => "BatchUpdateFindings".into(),
        (m, p) => format!("{m} {p}").chars().take(128).collect(),
    }
}

fn invalid(m: impl Into<String>) -> ServiceError {
    ServiceError::InvalidInput(m.into())
}

fn hub_arn(req: &Req) -> String {
    format!(
        "arn:aws:securityhub:{}:{}:hub/default",
        req.region, req.caller.account
    )
}

fn product_arn(req: &Req) -> String {
    format!(
        "arn:aws:securityhub:{}:{}:product/{}/default",
        req.region, req.caller.account, req.caller.account
    )
}

use crate::render::json_ok as ok;

pub async fn handle(req: &mut Req) -> Result<Response<Body>, ServiceError> {
    let body: Value = if req.body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&req.body).map_err(|e| invalid(format!("Invalid JSON: {e}")))?
    };
    req.audit.params = body.clone();
    let arn = hub_arn(req);
    let action = req.op.actions.first().copied().unwrap_or("securityhub:*");
    req.authorize(
        action,
        &arn,
        Some(&req.caller.account.clone()),
        ResourcePolicy::None,
    )?;
    match req.op.name {
        "DescribeHub" => Ok(ok(json!({
            "HubArn": arn,
            "SubscribedAt": iso8601(req.kc.state().accounts.get(&req.caller.account).map(|a| a.created).unwrap_or(0)),
            "AutoEnableControls": true,
            "ControlFindingGenerator": "SECURITY_CONTROL",
        }))),
        "GetFindings" => get_findings(req, &body).await,
        "BatchUpdateFindings" => batch_update(req, &body).await,
        other => Err(ServiceError::InvalidAction(format!(
            "Unknown operation {other}"
        ))),
    }
}

/// One finding in ASFF.
fn asff(req: &Req, f: &Finding) -> Value {
    let r = f.rule_def();
    let resolved = f.resolved_at.is_some();
    let mut v = json!({
        "SchemaVersion": "2018-10-08",
        "Id": format!("arn:aws:securityhub:{}:{}:keycard/finding/{}", req.region, f.account, f.id),
        "ProductArn": product_arn(req),
        "ProductName": "keycard",
        "CompanyName": "keycard",
        "Region": req.region,
        "GeneratorId": f.rule,
        "AwsAccountId": f.account,
        "Types": ["Software and Configuration Checks/AWS Security Best Practices"],
        "FirstObservedAt": iso8601(f.first_observed),
        "LastObservedAt": iso8601(f.last_observed),
        "CreatedAt": iso8601(f.first_observed),
        "UpdatedAt": iso8601(f.updated_at),
        "Severity": {"Label": f.severity.as_str(), "Normalized": f.severity.normalized(), "Original": f.severity.as_str()},
        "Title": r.map(|r| r.title).unwrap_or(""),
        "Description": f.detail,
        "Remediation": {"Recommendation": {"Text": r.map(|r| r.remediation).unwrap_or("")}},
        "ProductFields": {
            "keycard/RuleId": f.rule,
            "keycard/Occurrences": f.occurrences.to_string(),
            "aws/config/ConfigRuleName": r.and_then(|r| r.config_rule).unwrap_or(""),
            "prowler/CheckId": r.and_then(|r| r.prowler).unwrap_or(""),
        },
        "Resources": [{
            "Type": r.map(|r| r.resource_type).unwrap_or("Other"),
            "Id": f.resource,
            "Partition": "aws",
            "Region": req.region,
        }],
        "Compliance": {"Status": if resolved { "PASSED" } else { "FAILED" }},
        "Workflow": {"Status": f.workflow.as_str()},
        "WorkflowState": if f.workflow == Workflow::New { "NEW" } else { "ASSIGNED" },
        "RecordState": if resolved { "ARCHIVED" } else { "ACTIVE" },
    });
    if let (Some(hub), Some(o)) = (
        r.and_then(|r| r.security_hub),
        v.get_mut("Compliance").and_then(Value::as_object_mut),
    ) {
        o.insert("SecurityControlId".into(), hub.into());
    }
    if let (Some(n), Some(o)) = (&f.note, v.as_object_mut()) {
        o.insert(
            "Note".into(),
            json!({"Text": n, "UpdatedBy": "keycard", "UpdatedAt": iso8601(f.updated_at)}),
        );
    }
    v
}

/// The string an ASFF filter key reads from a finding.
fn field<'a>(a: &'a Value, key: &str) -> Option<&'a str> {
    let ptr = match key {
        "Id" => "/Id",
        "GeneratorId" => "/GeneratorId",
        "AwsAccountId" => "/AwsAccountId",
        "SeverityLabel" => "/Severity/Label",
        "WorkflowStatus" => "/Workflow/Status",
        "RecordState" => "/RecordState",
        "ResourceId" => "/Resources/0/Id",
        "ResourceType" => "/Resources/0/Type",
        "ComplianceStatus" => "/Compliance/Status",
        "ComplianceSecurityControlId" => "/Compliance/SecurityControlId",
        "Title" => "/Title",
        "ProductName" => "/ProductName",
        "Region" => "/Region",
        _ => return None,
    };
    a.pointer(ptr).and_then(Value::as_str)
}

const FILTER_KEYS: &[&str] = &[
    "Id",
    "GeneratorId",
    "AwsAccountId",
    "SeverityLabel",
    "WorkflowStatus",
    "RecordState",
    "ResourceId",
    "ResourceType",
    "ComplianceStatus",
    "ComplianceSecurityControlId",
    "Title",
    "ProductName",
    "Region",
];

/// AWS's string filter semantics: within one key, the positive
/// comparisons are OR'ed and the negative ones AND'ed; keys are AND'ed.
fn matches(a: &Value, filters: &serde_json::Map<String, Value>) -> Result<bool, ServiceError> {
    for (key, list) in filters {
        let Some(list) = list.as_array() else {
            continue;
        };
        if list.is_empty() {
            continue;
        }
        if !FILTER_KEYS.contains(&key.as_str()) {
            return Err(invalid(format!(
                "Filter {key} is not supported by keycard's Security Hub"
            )));
        }
        let got = field(a, key).unwrap_or("");
        let (mut any_pos, mut pos_ok, mut neg_ok) = (false, false, true);
        for f in list {
            let want = f.get("Value").and_then(Value::as_str).unwrap_or("");
            let cmp = f
                .get("Comparison")
                .and_then(Value::as_str)
                .unwrap_or("EQUALS");
            match cmp {
                "EQUALS" => {
                    any_pos = true;
                    pos_ok |= got == want
                }
                "PREFIX" => {
                    any_pos = true;
                    pos_ok |= got.starts_with(want)
                }
                "CONTAINS" => {
                    any_pos = true;
                    pos_ok |= got.contains(want)
                }
                "NOT_EQUALS" => neg_ok &= got != want,
                "PREFIX_NOT_EQUALS" => neg_ok &= !got.starts_with(want),
                "NOT_CONTAINS" => neg_ok &= !got.contains(want),
                other => return Err(invalid(format!("Invalid Comparison {other}"))),
            }
        }
        if (any_pos && !pos_ok) || !neg_ok {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn get_findings(req: &mut Req, body: &Value) -> Result<Response<Body>, ServiceError> {
    let max = body
        .get("MaxResults")
        .and_then(Value::as_u64)
        .unwrap_or(100);
    if !(1..=100).contains(&max) {
        return Err(invalid("MaxResults must be between 1 and 100"));
    }
    let start: usize = match body.get("NextToken").and_then(Value::as_str) {
        Some(t) => t.parse().map_err(|_| invalid("Invalid NextToken"))?,
        None => 0,
    };
    req.kc.evaluate_governance().await?;
    let empty = serde_json::Map::new();
    let filters = body
        .get("Filters")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let account = req.caller.account.clone();
    let all: Vec<Value> = req
        .kc
        .governance
        .findings(|f| f.account == account)
        .iter()
        .map(|f| asff(req, f))
        .collect();
    let mut kept = Vec::new();
    for a in all {
        if matches(&a, filters)? {
            kept.push(a);
        }
    }
    let end = (start + max as usize).min(kept.len());
    let page: Vec<Value> = kept
        .get(start..end)
        .map(<[Value]>::to_vec)
        .unwrap_or_default();
    let mut out = json!({"Findings": page});
    if end < kept.len()
        && let Some(o) = out.as_object_mut()
    {
        o.insert("NextToken".into(), end.to_string().into());
    }
    Ok(ok(out))
}

async fn batch_update(req: &mut Req, body: &Value) -> Result<Response<Body>, ServiceError> {
    let ids = body
        .get("FindingIdentifiers")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty() && a.len() <= 100)
        .ok_or_else(|| invalid("FindingIdentifiers must list 1 to 100 findings"))?
        .clone();
    let status = match body.pointer("/Workflow/Status").and_then(Value::as_str) {
        Some(s) => Some(
            Workflow::parse(s).ok_or_else(|| invalid(format!("Invalid Workflow.Status {s}")))?,
        ),
        None => None,
    };
    let note = body
        .pointer("/Note/Text")
        .and_then(Value::as_str)
        .map(str::to_string);
    if status.is_none() && note.is_none() {
        return Err(invalid("Nothing to update: give Workflow.Status or Note"));
    }
    let prefix = format!(
        "arn:aws:securityhub:{}:{}:keycard/finding/",
        req.region, req.caller.account
    );
    let (mut done, mut failed) = (Vec::new(), Vec::new());
    let now = req.kc.governance_now();
    for ident in ids {
        let id = ident.get("Id").and_then(Value::as_str).unwrap_or("");
        let Some(fid) = id.strip_prefix(&prefix) else {
            failed.push(json!({"FindingIdentifier": ident, "ErrorCode": "FindingNotFound", "ErrorMessage": "Finding not found"}));
            continue;
        };
        let current = req
            .kc
            .governance
            .findings(|f| f.id == fid && f.account == req.caller.account);
        let Some(cur) = current.first() else {
            failed.push(json!({"FindingIdentifier": ident, "ErrorCode": "FindingNotFound", "ErrorMessage": "Finding not found"}));
            continue;
        };
        let st = status.unwrap_or(cur.workflow);
        let n = note.clone().or_else(|| cur.note.clone());
        match req.kc.governance.set_workflow(fid, &req.caller.account, st, n, now, req.kc.store().as_ref()).await {
            Ok(_) => done.push(ident),
            Err(e) => failed.push(json!({"FindingIdentifier": ident, "ErrorCode": "InvalidInput", "ErrorMessage": e.to_string()})),
        }
    }
    Ok(ok(
        json!({"ProcessedFindings": done, "UnprocessedFindings": failed}),
    ))
}
