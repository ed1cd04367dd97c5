//! JSON front-end for `keycard policy evaluate` / `keycard policy validate`.
//!
//! Input: one request object or an array of them:
//!
//! ```json
//! {"principal": "arn:aws:iam::111111111111:user/alice", "action": "s3:GetObject",
//!  "resource": "arn:aws:s3:::bucket/key", "resourceAccount": "111111111111",
//!  "context": {"aws:SourceIp": "10.1.2.3", "aws:CalledVia": ["a", "b"]},
//!  "identityPolicies": [{...}], "resourcePolicy": {...}, "trustPolicy": {...},
//!  "permissionsBoundary": {...}, "sessionPolicy": {...} or [{...}],
//!  "serviceControlPolicies": [[{...}], [{...}]]}
//! ```
//!
//! Output: one result object (or an array, in input order):
//! `{"decision": "Allow"|"ExplicitDeny"|"ImplicitDeny", "matchedStatements": [...], "reason": "..."}`.
//! A matched statement's `span` (line and column of its braces) refers to the policy text: the
//! string as given when a policy is passed as a JSON string, the compact re-serialization of an
//! object otherwise.

use serde_json::{Map, Value, json};

use crate::{
    Context, Policy, PolicyError, PolicyKind, PolicyRef, PolicySet, Principal, Request, evaluate,
};

pub use crate::validate_json;

const FIELDS: &[&str] = &[
    "principal",
    "action",
    "resource",
    "resourceAccount",
    "context",
    "identityPolicies",
    "resourcePolicy",
    "trustPolicy",
    "permissionsBoundary",
    "sessionPolicy",
    "serviceControlPolicies",
];

/// Evaluate one request object or an array of them; returns pretty-printed JSON.
pub fn evaluate_json(input: &str) -> Result<String, String> {
    let v: Value = serde_json::from_str(input).map_err(|e| format!("invalid JSON input: {e}"))?;
    let out = match &v {
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, r)| evaluate_one(r).map_err(|e| format!("request[{i}]: {e}")))
                .collect::<Result<_, _>>()?,
        ),
        other => evaluate_one(other)?,
    };
    serde_json::to_string_pretty(&out).map_err(|e| e.to_string())
}

fn doc_text(v: &Value, what: &str) -> Result<String, String> {
    match v {
        Value::Object(_) => Ok(v.to_string()),
        // A policy may also be given as a JSON string holding the document.
        Value::String(s) => Ok(s.clone()),
        _ => Err(format!("{what} must be a policy document object")),
    }
}

fn parse_doc(v: &Value, kind: PolicyKind, what: &str) -> Result<Policy, String> {
    let text = doc_text(v, what)?;
    Policy::parse(&text, kind).map_err(|e: PolicyError| format!("{what}: {}: {e}", e.code))
}

fn str_field<'a>(o: &'a Map<String, Value>, name: &str) -> Result<&'a str, String> {
    match o.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("\"{name}\" must be a string")),
        None => Err(format!("missing required field \"{name}\"")),
    }
}

fn docs_array(o: &Map<String, Value>, name: &str, kind: PolicyKind) -> Result<Vec<Policy>, String> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, d)| parse_doc(d, kind, &format!("{name}[{i}]")))
            .collect(),
        Some(d @ Value::Object(_)) => Ok(vec![parse_doc(d, kind, name)?]),
        Some(_) => Err(format!("\"{name}\" must be an array of policy documents")),
    }
}

fn opt_doc(o: &Map<String, Value>, name: &str, kind: PolicyKind) -> Result<Option<Policy>, String> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(d) => parse_doc(d, kind, name).map(Some),
    }
}

fn context_of(o: &Map<String, Value>) -> Result<Context, String> {
    let mut ctx = Context::new();
    let Some(c) = o.get("context") else {
        return Ok(ctx);
    };
    if c.is_null() {
        return Ok(ctx);
    }
    let c = c.as_object().ok_or("\"context\" must be an object")?;
    fn scalar(v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
    for (k, v) in c {
        match v {
            Value::Array(a) => {
                let vals = a
                    .iter()
                    .map(scalar)
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| format!("context key {k}: values must be strings"))?;
                ctx.insert_multi(k, vals);
            }
            other => ctx.insert(
                k,
                scalar(other).ok_or_else(|| format!("context key {k}: value must be a string"))?,
            ),
        }
    }
    Ok(ctx)
}

fn evaluate_one(v: &Value) -> Result<Value, String> {
    let o = v.as_object().ok_or("a request must be a JSON object")?;
    for k in o.keys() {
        if !FIELDS.contains(&k.as_str()) {
            return Err(format!("unknown request field \"{k}\""));
        }
    }
    let principal =
        Principal::from_arn(str_field(o, "principal")?).map_err(|e| format!("principal: {e}"))?;
    let action = str_field(o, "action")?;
    let resource = str_field(o, "resource")?;
    let resource_account = match o.get("resourceAccount") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err("\"resourceAccount\" must be a string".into()),
    };
    let context = context_of(o)?;
    let identity = docs_array(o, "identityPolicies", PolicyKind::Identity)?;
    let resource_policy = opt_doc(o, "resourcePolicy", PolicyKind::Resource)?;
    let trust = opt_doc(o, "trustPolicy", PolicyKind::Trust)?;
    let boundary = opt_doc(o, "permissionsBoundary", PolicyKind::Boundary)?;
    let session = docs_array(o, "sessionPolicy", PolicyKind::Session)?;
    let scps: Vec<Vec<Policy>> = match o.get("serviceControlPolicies") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(levels)) => levels
            .iter()
            .enumerate()
            .map(|(l, level)| match level {
                Value::Array(docs) => docs
                    .iter()
                    .enumerate()
                    .map(|(i, d)| {
                        parse_doc(
                            d,
                            PolicyKind::Scp,
                            &format!("serviceControlPolicies[{l}][{i}]"),
                        )
                    })
                    .collect(),
                _ => Err(format!(
                    "serviceControlPolicies[{l}] must be an array of policy documents"
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("\"serviceControlPolicies\" must be an array of arrays".into()),
    };

    let identity_ids: Vec<String> = (0..identity.len())
        .map(|i| format!("identityPolicies[{i}]"))
        .collect();
    let session_ids: Vec<String> = (0..session.len())
        .map(|i| format!("sessionPolicy[{i}]"))
        .collect();
    let scp_ids: Vec<Vec<String>> = scps
        .iter()
        .enumerate()
        .map(|(l, level)| {
            (0..level.len())
                .map(|i| format!("serviceControlPolicies[{l}][{i}]"))
                .collect()
        })
        .collect();
    let set = PolicySet {
        identity: identity
            .iter()
            .zip(&identity_ids)
            .map(|(policy, id)| PolicyRef { id, policy })
            .collect(),
        resource: resource_policy.as_ref().map(|policy| PolicyRef {
            id: "resourcePolicy",
            policy,
        }),
        trust: trust.as_ref().map(|policy| PolicyRef {
            id: "trustPolicy",
            policy,
        }),
        boundary: boundary.as_ref().map(|policy| PolicyRef {
            id: "permissionsBoundary",
            policy,
        }),
        session: session
            .iter()
            .zip(&session_ids)
            .map(|(policy, id)| PolicyRef { id, policy })
            .collect(),
        scps: scps
            .iter()
            .zip(&scp_ids)
            .map(|(level, ids)| {
                level
                    .iter()
                    .zip(ids)
                    .map(|(policy, id)| PolicyRef { id, policy })
                    .collect()
            })
            .collect(),
    };
    let request = Request {
        principal: &principal,
        action,
        resource,
        resource_account,
        context: &context,
    };
    let ev = evaluate(&request, &set);
    Ok(json!({
        "decision": ev.decision.as_str(),
        "matchedStatements": ev.matched,
        "reason": ev.reason(action),
    }))
}
