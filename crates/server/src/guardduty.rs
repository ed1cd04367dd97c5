//! GuardDuty's finding API (REST-JSON) over keycard's instance-credential
//! sightings: ListDetectors, GetDetector, ListFindings (criteria on type,
//! instance and access key; pagination) and GetFindings. keycard always
//! watches instance credentials, so every account has one detector, with
//! an id derived from account and region (AWS makes you create it).

use axum::body::Body;
use http::Response;
use keycard_services::ServiceError;
use keycard_services::auth::ResourcePolicy;
use keycard_services::binding::Sighting;
use serde_json::{Map, Value, json};

use crate::Req;

/// Most findings one ListFindings page returns (AWS: 50).
const MAX_PAGE: usize = 50;

/// The REST route of a GuardDuty call.
pub fn op_name(parts: &http::request::Parts) -> String {
    let path = parts.uri.path().trim_end_matches('/');
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    match (parts.method.as_str(), segs.as_slice()) {
        ("GET", ["detector"]) => "ListDetectors".into(),
        ("GET", ["detector", _]) => "GetDetector".into(),
        ("POST", ["detector", _, "findings"]) => "ListFindings".into(),
        ("POST", ["detector", _, "findings", "get"]) => "GetFindings".into(),
        (m, _) => format!("{m} {path}").chars().take(128).collect(),
    }
}

/// A 32-hex-digit id, as GuardDuty's detector and finding ids are.
fn hex_id(parts: &[&str]) -> String {
    let mut s = keycard_proto::sha256_hex(parts.join("\0").as_bytes());
    s.truncate(32);
    s
}

fn detector_id(req: &Req) -> String {
    hex_id(&["keycard detector", &req.caller.account, &req.region])
}

fn finding_id(s: &Sighting) -> String {
    hex_id(&["keycard finding", &s.key()])
}

use crate::render::json_ok as ok;

fn bad(m: impl Into<String>) -> ServiceError {
    ServiceError::BadRequest(m.into())
}

pub async fn handle(req: &mut Req) -> Result<Response<Body>, ServiceError> {
    let body: Value = if req.body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&req.body).map_err(|_| bad("The request body is not valid JSON."))?
    };
    req.audit.params = body.clone();
    let detector = detector_id(req);
    let account = req.caller.account.clone();
    let arn = format!(
        "arn:aws:guardduty:{}:{account}:detector/{detector}",
        req.region
    );
    let action = req.op.actions.first().copied().unwrap_or("guardduty:*");
    let resource = if req.op.name == "ListDetectors" {
        "*"
    } else {
        arn.as_str()
    };
    req.authorize(action, resource, Some(&account), ResourcePolicy::None)?;
    if req.op.name != "ListDetectors" {
        let given = req.parts.uri.path().split('/').nth(2).unwrap_or_default();
        if given != detector {
            return Err(bad(
                "The request is rejected because the input detectorId is not owned by the current account.",
            ));
        }
    }
    match req.op.name {
        "ListDetectors" => Ok(ok(json!({ "detectorIds": [detector] }))),
        "GetDetector" => Ok(ok(detector_json(req))),
        "ListFindings" => list_findings(req, &body),
        "GetFindings" => get_findings(req, &body),
        other => Err(ServiceError::InvalidAction(format!(
            "Unknown operation {other}"
        ))),
    }
}

fn detector_json(req: &Req) -> Value {
    let created = req
        .kc
        .state()
        .accounts
        .get(&req.caller.account)
        .map(|a| a.created)
        .unwrap_or(0);
    let at = keycard_services::sts::iso8601(created);
    json!({
        "createdAt": at,
        "findingPublishingFrequency": "FIFTEEN_MINUTES",
        "serviceRole": format!("arn:aws:iam::{}:role/aws-service-role/guardduty.amazonaws.com/AWSServiceRoleForAmazonGuardDuty", req.caller.account),
        "status": "ENABLED",
        "updatedAt": at,
        "tags": {},
    })
}

/// This account's sightings in this region, newest first.
fn mine(req: &Req) -> Vec<Sighting> {
    req.kc
        .sightings()
        .into_iter()
        .filter(|s| s.account == req.caller.account && s.region == req.region)
        .collect()
}

/// The value a criterion names, for the fields keycard can filter on.
fn field(s: &Sighting, name: &str) -> Option<Vec<String>> {
    Some(match name {
        "type" => vec![s.finding_type.clone()],
        "id" => vec![finding_id(s)],
        "resource.instanceDetails.instanceId" => vec![s.instance_id.clone()],
        "resource.accessKeyDetails.accessKeyId" => vec![s.access_key_id.clone()],
        "resource.accessKeyDetails.userName" => vec![
            s.role_arn
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string(),
        ],
        "resource.resourceType" => vec!["AccessKey".into()],
        "service.action.awsApiCallAction.remoteIpDetails.ipAddressV4" => {
            s.sources.keys().cloned().collect()
        }
        "service.action.awsApiCallAction.api" => s.calls.keys().cloned().collect(),
        "service.archived" => vec!["false".into()],
        "severity" => vec!["8".into()],
        "accountId" => vec![s.account.clone()],
        "region" => vec![s.region.clone()],
        _ => return None,
    })
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|x| match x {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One criterion on one sighting (wire names `eq`, `neq`, `gt`, … and
/// `equals`, `notEquals`, …): equality matches any value, inequality none;
/// the comparisons are numeric (severity).
fn matches(s: &Sighting, name: &str, cond: &Map<String, Value>) -> Result<bool, ServiceError> {
    let have = field(s, name)
        .ok_or_else(|| bad(format!("The request is rejected because an invalid or out-of-range value is specified as an input parameter: {name}")))?;
    for (op, v) in cond {
        let pass = match op.to_ascii_lowercase().as_str() {
            "eq" | "equals" => strings(v).iter().any(|w| have.contains(w)),
            "neq" | "notequals" => !strings(v).iter().any(|w| have.contains(w)),
            cmp @ ("gt" | "greaterthan" | "gte" | "greaterthanorequal" | "lt" | "lessthan"
            | "lte" | "lessthanorequal") => {
                let n = v
                    .as_f64()
                    .ok_or_else(|| bad(format!("{op} needs a number")))?;
                let h: f64 = have.first().and_then(|x| x.parse().ok()).unwrap_or(0.0);
                match cmp {
                    "gt" | "greaterthan" => h > n,
                    "gte" | "greaterthanorequal" => h >= n,
                    "lt" | "lessthan" => h < n,
                    _ => h <= n,
                }
            }
            _ => return Err(bad(format!("Unknown condition operator {op}"))),
        };
        if !pass {
            return Ok(false);
        }
    }
    Ok(true)
}

fn list_findings(req: &Req, body: &Value) -> Result<Response<Body>, ServiceError> {
    let criteria = body
        .pointer("/findingCriteria/criterion")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let max = match body.get("maxResults") {
        None => MAX_PAGE,
        Some(v) => match v.as_u64() {
            Some(n @ 1..=50) => n as usize,
            _ => return Err(bad("maxResults must be between 1 and 50.")),
        },
    };
    let start = match body.get("nextToken").and_then(Value::as_str) {
        None | Some("") => 0,
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| bad("The nextToken is not valid."))?,
    };
    let mut ids = Vec::new();
    for s in mine(req) {
        let mut keep = true;
        for (name, cond) in &criteria {
            let cond = cond
                .as_object()
                .ok_or_else(|| bad(format!("criterion {name} must be an object")))?;
            keep &= matches(&s, name, cond)?;
        }
        if keep {
            ids.push(finding_id(&s));
        }
    }
    let page: Vec<&String> = ids.iter().skip(start).take(max).collect();
    let mut out = json!({ "findingIds": page });
    if start + max < ids.len()
        && let Some(o) = out.as_object_mut()
    {
        o.insert("nextToken".into(), json!((start + max).to_string()));
    }
    Ok(ok(out))
}

fn get_findings(req: &Req, body: &Value) -> Result<Response<Body>, ServiceError> {
    let want = strings(body.get("findingIds").unwrap_or(&Value::Null));
    if want.is_empty() || want.len() > 50 {
        return Err(bad("findingIds must list 1 to 50 finding ids."));
    }
    let findings: Vec<Value> = mine(req)
        .iter()
        .filter_map(|s| {
            let id = finding_id(s);
            want.contains(&id)
                .then(|| lower_camel(s.guardduty_json(&id)))
        })
        .collect();
    Ok(ok(json!({ "findings": findings })))
}

/// GuardDuty's wire names are the model's member names with a lower-case
/// first letter (`AccessKeyDetails` -> `accessKeyDetails`).
fn lower_camel(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let mut c = k.chars();
                    let k = match c.next() {
                        Some(f) => f.to_lowercase().chain(c).collect(),
                        None => k,
                    };
                    (k, lower_camel(v))
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(lower_camel).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_are_lower_camel() {
        let v = lower_camel(json!({"AccessKeyDetails": {"IpAddressV4": "1.2.3.4"}, "Id": "x"}));
        assert_eq!(
            v,
            json!({"accessKeyDetails": {"ipAddressV4": "1.2.3.4"}, "id": "x"})
        );
    }

    #[test]
    fn ids_are_32_hex() {
        let id = hex_id(&["a", "b"]);
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(id, hex_id(&["ab", ""]));
    }
}
