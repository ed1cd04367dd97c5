//! IAM Access Analyzer (REST-JSON, signing name `access-analyzer`): policy
//! validation, and policy generation (`aa_generation`). Routes are a (method, path) table; an operation is one row
//! there, one row in `ops::ACCESS_ANALYZER` and one arm in [`handle`].

use axum::body::Body;
use http::Response;
use keycard_policy::lint::{self, LintPolicyType};
use keycard_services::ServiceError;
use keycard_services::auth::ResourcePolicy;
use serde_json::{Value, json};

use crate::{Req, aa_generation};

/// Findings one page holds when the caller gives no maxResults.
const DEFAULT_PAGE: usize = 100;

/// `validatePolicyResourceType` values the model allows.
const RESOURCE_TYPES: [&str; 6] = [
    "AWS::S3::Bucket",
    "AWS::S3::AccessPoint",
    "AWS::S3::MultiRegionAccessPoint",
    "AWS::S3ObjectLambda::AccessPoint",
    "AWS::IAM::AssumeRolePolicyDocument",
    "AWS::DynamoDB::Table",
];

const LOCALES: [&str; 10] = [
    "DE", "EN", "ES", "FR", "IT", "JA", "KO", "PT_BR", "ZH_CN", "ZH_TW",
];

/// One REST route: method, path segments (`*` = any one segment), operation.
type Route = (&'static str, &'static [&'static str], &'static str);

/// The REST routes; a new operation is a row here.
const ROUTES: &[Route] = &[
    ("POST", &["policy", "validation"], "ValidatePolicy"),
    ("PUT", &["policy", "generation"], "StartPolicyGeneration"),
    ("GET", &["policy", "generation", "*"], "GetGeneratedPolicy"),
    ("GET", &["policy", "generation"], "ListPolicyGenerations"),
    (
        "PUT",
        &["policy", "generation", "*"],
        "CancelPolicyGeneration",
    ),
];

/// The REST route of an Access Analyzer call.
pub fn op_name(parts: &http::request::Parts) -> String {
    let path = parts.uri.path().trim_end_matches('/');
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    ROUTES
        .iter()
        .find(|(m, pat, _)| {
            *m == parts.method.as_str()
                && pat.len() == segs.len()
                && pat.iter().zip(&segs).all(|(p, s)| *p == "*" || p == s)
        })
        .map(|(_, _, name)| (*name).to_string())
        .unwrap_or_else(|| {
            format!("{} {path}", parts.method)
                .chars()
                .take(128)
                .collect()
        })
}

/// Access Analyzer's `ValidationException` (400).
fn invalid(m: impl Into<String>) -> ServiceError {
    ServiceError::ValidationError(m.into())
}

use crate::render::json_ok as ok;

pub async fn handle(req: &mut Req) -> Result<Response<Body>, ServiceError> {
    let body: Value = if req.body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&req.body)
            .map_err(|_| invalid("The request body is not valid JSON."))?
    };
    if !body.is_object() {
        return Err(invalid("The request body must be a JSON object."));
    }
    req.audit.params = body.clone();
    let account = req.caller.account.clone();
    let action = req
        .op
        .actions
        .first()
        .copied()
        .unwrap_or("access-analyzer:*");
    req.authorize(action, "*", Some(&account), ResourcePolicy::None)?;
    match req.op.name {
        "ValidatePolicy" => validate_policy(req, &body),
        "StartPolicyGeneration" => Ok(ok(aa_generation::start(req, &body).await?)),
        "GetGeneratedPolicy" => Ok(ok(aa_generation::get(req, job_id(req)).await?)),
        "ListPolicyGenerations" => Ok(ok(aa_generation::list(req).await?)),
        "CancelPolicyGeneration" => Ok(ok(aa_generation::cancel(req, job_id(req)).await?)),
        other => Err(ServiceError::InvalidAction(format!(
            "Unknown operation {other}"
        ))),
    }
}

/// The `{jobId}` of `/policy/generation/{jobId}`.
fn job_id(req: &Req) -> &str {
    req.parts.uri.path().split('/').nth(3).unwrap_or_default()
}

/// The query string's value of `name`, decoded.
pub(crate) fn query(req: &Req, name: &str) -> Option<String> {
    form_urlencoded::parse(req.parts.uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn str_field<'a>(body: &'a Value, name: &str) -> Result<Option<&'a str>, ServiceError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(format!("Invalid type for field {name}."))),
    }
}

/// A page token binds the offset to the request it continues.
fn token(offset: usize, fingerprint: &str) -> String {
    format!("{offset}.{fingerprint}")
}

fn validate_policy(req: &Req, body: &Value) -> Result<Response<Body>, ServiceError> {
    let doc =
        str_field(body, "policyDocument")?.ok_or_else(|| invalid("policyDocument is required."))?;
    let ty_name =
        str_field(body, "policyType")?.ok_or_else(|| invalid("policyType is required."))?;
    let ty = LintPolicyType::from_wire(ty_name).ok_or_else(|| {
        invalid(format!(
            "1 validation error detected: Value '{ty_name}' at 'policyType' failed to satisfy constraint: Member must satisfy enum value set: [IDENTITY_POLICY, RESOURCE_POLICY, SERVICE_CONTROL_POLICY, RESOURCE_CONTROL_POLICY]"
        ))
    })?;
    let rt = str_field(body, "validatePolicyResourceType")?;
    if let Some(r) = rt
        && !RESOURCE_TYPES.contains(&r)
    {
        return Err(invalid(format!(
            "1 validation error detected: Value '{r}' at 'validatePolicyResourceType' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            RESOURCE_TYPES.join(", ")
        )));
    }
    if let Some(l) = str_field(body, "locale")?
        && !LOCALES.contains(&l)
    {
        return Err(invalid(format!(
            "1 validation error detected: Value '{l}' at 'locale' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            LOCALES.join(", ")
        )));
    }
    let page = match query(req, "maxResults") {
        None => DEFAULT_PAGE,
        Some(m) => m.parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(|| {
            invalid(format!(
                "Invalid maxResults: {m}. It must be a positive integer."
            ))
        })?,
    };
    let mut fp = keycard_proto::sha256_hex(
        format!("{ty_name}\0{}\0{doc}", rt.unwrap_or_default()).as_bytes(),
    );
    fp.truncate(16);
    let start = match query(req, "nextToken") {
        None => 0,
        Some(t) => t
            .split_once('.')
            .filter(|(_, f)| *f == fp)
            .and_then(|(o, _)| o.parse::<usize>().ok())
            .ok_or_else(|| invalid("The nextToken is not valid for this request."))?,
    };
    let findings = lint::validate(doc, ty, rt);
    let end = start.saturating_add(page).min(findings.len());
    let slice = findings.get(start.min(end)..end).unwrap_or_default();
    let out = if end < findings.len() {
        json!({ "findings": slice, "nextToken": token(end, &fp) })
    } else {
        json!({ "findings": slice })
    };
    Ok(ok(out))
}
