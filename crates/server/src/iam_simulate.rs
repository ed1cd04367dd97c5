//! The IAM policy simulator's query API: parse the parameters, authorize,
//! call `keycard_services::simulate`, render AWS's XML.

use axum::body::Body;
use http::Response;
use keycard_policy::{Decision, Position};
use keycard_proto::query::Params;
use keycard_proto::xml::{IAM_XMLNS, XmlWriter, query_response};
use keycard_services::ServiceError;
use keycard_services::simulate::{ContextEntry, SimResult, SimulationInput, StatementRef};

use crate::iam::{need, paginate, truncation};
use crate::iam_governance::authz;
use crate::{Req, xml_response};

type R = Result<Response<Body>, ServiceError>;

/// The operations this module serves (the IAM match delegates them here).
pub(crate) const OPS: &[&str] = &[
    "SimulatePrincipalPolicy",
    "SimulateCustomPolicy",
    "GetContextKeysForPrincipalPolicy",
    "GetContextKeysForCustomPolicy",
];

const CONTEXT_TYPES: &[&str] = &[
    "string",
    "stringList",
    "numeric",
    "numericList",
    "boolean",
    "booleanList",
    "ip",
    "ipList",
    "binary",
    "binaryList",
    "date",
    "dateList",
];

/// `ResourceHandlingOption` values AWS documents (EC2 scenarios); keycard
/// accepts them and evaluates each resource as given.
const HANDLING: &[&str] = &[
    "EC2-Classic-InstanceStore",
    "EC2-Classic-EBS",
    "EC2-VPC-InstanceStore",
    "EC2-VPC-InstanceStore-Subnet",
    "EC2-VPC-EBS",
    "EC2-VPC-EBS-Subnet",
];

const POLICY_MAX: usize = 131_072;

fn constraint(field: &str, value: &str, rule: &str) -> ServiceError {
    ServiceError::ValidationError(format!(
        "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {rule}"
    ))
}

fn length(field: &str, v: &str, min: usize, max: usize) -> Result<(), ServiceError> {
    let n = v.chars().count();
    if n < min || n > max {
        return Err(constraint(
            field,
            v,
            &format!("Member must have length between {min} and {max}"),
        ));
    }
    Ok(())
}

/// A required list parameter (`ActionNames`, `PolicyInputList`).
fn need_list(p: &Params, key: &str, field: &str) -> Result<Vec<String>, ServiceError> {
    let v: Vec<String> = p
        .list(&format!("{key}.member"))
        .into_iter()
        .map(str::to_string)
        .collect();
    if v.is_empty() {
        return Err(ServiceError::ValidationError(format!(
            "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
        )));
    }
    Ok(v)
}

fn policies(p: &Params, key: &str) -> Result<Vec<String>, ServiceError> {
    let v: Vec<String> = p
        .list(&format!("{key}.member"))
        .into_iter()
        .map(str::to_string)
        .collect();
    for d in &v {
        if d.is_empty() || d.chars().count() > POLICY_MAX {
            return Err(constraint(
                key,
                "…",
                &format!("Member must have length between 1 and {POLICY_MAX}"),
            ));
        }
    }
    Ok(v)
}

fn context_entries(p: &Params) -> Result<Vec<ContextEntry>, ServiceError> {
    p.structs("ContextEntries.member")
        .iter()
        .map(|e| {
            let name = need(e, "ContextKeyName")?.to_string();
            length("contextKeyName", &name, 5, 256)?;
            let kind = e.get("ContextKeyType").map(str::to_string);
            if let Some(k) = &kind
                && !CONTEXT_TYPES.contains(&k.as_str())
            {
                return Err(constraint(
                    "contextKeyType",
                    k,
                    &format!(
                        "Member must satisfy enum value set: [{}]",
                        CONTEXT_TYPES.join(", ")
                    ),
                ));
            }
            let values = e
                .list("ContextKeyValues.member")
                .into_iter()
                .map(str::to_string)
                .collect();
            Ok(ContextEntry { name, values, kind })
        })
        .collect()
}

/// The parameters both Simulate operations take.
fn simulation_input(p: &Params, source: Option<String>) -> Result<SimulationInput, ServiceError> {
    let actions = need_list(p, "ActionNames", "actionNames")?;
    for a in &actions {
        length("actionNames", a, 3, 128)?;
    }
    if let Some(h) = p.get("ResourceHandlingOption")
        && !HANDLING.contains(&h)
    {
        return Err(ServiceError::InvalidInput(format!(
            "Invalid ResourceHandlingOption {h}."
        )));
    }
    let policy_inputs = if source.is_some() {
        policies(p, "PolicyInputList")?
    } else {
        need_list(p, "PolicyInputList", "policyInputList")?;
        policies(p, "PolicyInputList")?
    };
    Ok(SimulationInput {
        source,
        policy_inputs,
        boundary_inputs: policies(p, "PermissionsBoundaryPolicyInputList")?,
        actions,
        resources: p
            .list("ResourceArns.member")
            .into_iter()
            .map(str::to_string)
            .collect(),
        resource_policy: p.get("ResourcePolicy").map(str::to_string),
        resource_owner: p.get("ResourceOwner").map(str::to_string),
        caller_arn: p.get("CallerArn").map(str::to_string),
        context: context_entries(p)?,
    })
}

fn source_arn(p: &Params) -> Result<String, ServiceError> {
    let arn = need(p, "PolicySourceArn")?;
    length("policySourceArn", arn, 20, 2048)?;
    Ok(arn.to_string())
}

/// Handle one simulator operation.
pub(crate) async fn handle(req: &mut Req, p: &Params) -> R {
    let action = req.op.name;
    let acct = req.caller.account.clone();
    let kc = req.kc.clone();
    let rid = req.request_id.clone();
    let body = match action {
        "SimulatePrincipalPolicy" | "SimulateCustomPolicy" => {
            let source = if action == "SimulatePrincipalPolicy" {
                Some(source_arn(p)?)
            } else {
                None
            };
            let input = simulation_input(p, source.clone())?;
            if source.is_none()
                && let Some(a) = input.actions.iter().find(|a| a.contains(['*', '?']))
            {
                return Err(ServiceError::InvalidInput(format!(
                    "Actions must not contain wildcards: {a}"
                )));
            }
            authz(req, source.unwrap_or_else(|| "*".into()))?;
            let results = kc.simulate(&acct, &input)?;
            let (page, next) = paginate(results, p)?;
            query_response(action, IAM_XMLNS, &rid, |w| {
                w.start("EvaluationResults");
                for r in &page {
                    result_xml(w, r);
                }
                w.end("EvaluationResults");
                truncation(w, &next);
            })
        }
        _ => {
            let source = if action == "GetContextKeysForPrincipalPolicy" {
                Some(source_arn(p)?)
            } else {
                need_list(p, "PolicyInputList", "policyInputList")?;
                None
            };
            let inputs = policies(p, "PolicyInputList")?;
            authz(req, source.clone().unwrap_or_else(|| "*".into()))?;
            let keys = kc.simulation_context_keys(&acct, source.as_deref(), &inputs)?;
            query_response(action, IAM_XMLNS, &rid, |w| {
                w.start("ContextKeyNames");
                for k in &keys {
                    w.elem("member", k);
                }
                w.end("ContextKeyNames");
            })
        }
    };
    Ok(xml_response(200, body))
}

/// AWS's `PolicyEvaluationDecisionType`.
fn decision_str(d: Decision) -> &'static str {
    match d {
        Decision::Allow => "allowed",
        Decision::ExplicitDeny => "explicitDeny",
        Decision::ImplicitDeny => "implicitDeny",
    }
}

/// AWS reports the column just past each brace (its documented example:
/// a statement whose `{` is the 37th character starts at column 38).
fn position_xml(w: &mut XmlWriter, tag: &str, p: Position) {
    w.start(tag)
        .elem_display("Line", p.line)
        .elem_display("Column", p.column + 1)
        .end(tag);
}

fn statements_xml(w: &mut XmlWriter, matched: &[StatementRef]) {
    w.start("MatchedStatements");
    for m in matched {
        w.start("member")
            .elem("SourcePolicyId", &m.source_policy_id)
            .elem("SourcePolicyType", &m.source_policy_type);
        if let Some(s) = m.span {
            position_xml(w, "StartPosition", s.start);
            position_xml(w, "EndPosition", s.end);
        }
        w.end("member");
    }
    w.end("MatchedStatements");
}

fn missing_xml(w: &mut XmlWriter, keys: &[String]) {
    w.start("MissingContextValues");
    for k in keys {
        w.elem("member", k);
    }
    w.end("MissingContextValues");
}

fn details_xml(w: &mut XmlWriter, r: &SimResult) {
    w.start("EvalDecisionDetails");
    for (k, d) in &r.details {
        w.start("entry")
            .elem("key", k)
            .elem("value", decision_str(*d))
            .end("entry");
    }
    w.end("EvalDecisionDetails");
}

fn boundary_xml(w: &mut XmlWriter, r: &SimResult) {
    if let Some(b) = r.allowed_by_boundary {
        w.start("PermissionsBoundaryDecisionDetail")
            .elem(
                "AllowedByPermissionsBoundary",
                if b { "true" } else { "false" },
            )
            .end("PermissionsBoundaryDecisionDetail");
    }
}

/// One `EvaluationResult`. With a specific resource, the statements and
/// missing keys also go under `ResourceSpecificResults` (AWS fills the
/// top-level `MissingContextValues` only for `*`).
fn result_xml(w: &mut XmlWriter, r: &SimResult) {
    let star = r.resource == "*";
    w.start("member")
        .elem("EvalActionName", &r.action)
        .elem("EvalResourceName", &r.resource)
        .elem("EvalDecision", decision_str(r.decision));
    statements_xml(w, &r.matched);
    missing_xml(
        w,
        if star {
            &r.missing_context[..]
        } else {
            &[][..]
        },
    );
    boundary_xml(w, r);
    if !star || r.cross_account {
        details_xml(w, r);
    }
    if !star {
        w.start("ResourceSpecificResults")
            .start("member")
            .elem("EvalResourceName", &r.resource)
            .elem("EvalResourceDecision", decision_str(r.decision));
        statements_xml(w, &r.matched);
        missing_xml(w, &r.missing_context);
        details_xml(w, r);
        boundary_xml(w, r);
        w.end("member").end("ResourceSpecificResults");
    }
    w.end("member");
}
