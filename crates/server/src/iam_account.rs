//! Account-level IAM operations: the STS token preference, which
//! policies grant a service, access-advisor details per entity, and the
//! operations that need an organization or partner onboarding, answered
//! as AWS answers an account outside an organization.

use keycard_proto::query::Params;
use keycard_proto::xml::XmlWriter;
use keycard_services::ServiceError;
use keycard_services::sts::iso8601;

use crate::Req;
use crate::iam::{need, paginate, truncation};
use crate::iam_governance::authz;
use crate::iam_more::ok;

type R = Result<http::Response<axum::body::Body>, ServiceError>;

const NO_ORGANIZATION: &str =
    "The request was rejected because no organization is associated with your account.";

fn validation(field: &str, value: &str, constraint: &str) -> ServiceError {
    ServiceError::ValidationError(format!(
        "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {constraint}"
    ))
}

/// A delegation request id: `[\w-]+`, 16 to 128 characters.
fn delegation_id(p: &Params) -> Result<&str, ServiceError> {
    let id = need(p, "DelegationRequestId")?;
    let ok = (16..=128).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !ok {
        return Err(validation(
            "delegationRequestId",
            id,
            "Member must satisfy regular expression pattern: [\\w-]+ and have length between 16 and 128",
        ));
    }
    Ok(id)
}

/// A 36-character job id.
fn job_id(p: &Params) -> Result<&str, ServiceError> {
    let id = need(p, "JobId")?;
    if id.len() != 36 {
        return Err(validation(
            "jobId",
            id,
            "Member must have length between 36 and 36",
        ));
    }
    Ok(id)
}

/// A service namespace: `[\w-]*`, 1 to 64 characters.
fn namespace(field: &str, ns: &str) -> Result<(), ServiceError> {
    let ok = (1..=64).contains(&ns.len())
        && ns
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(validation(
            field,
            ns,
            "Member must satisfy regular expression pattern: [\\w-]*",
        ))
    }
}

/// `o-…/r-…[/ou-…][/ACCOUNT]`, as the model's pattern has it.
fn entity_path(path: &str) -> bool {
    let mut parts = path.split('/');
    let org = parts.next().and_then(|o| o.strip_prefix("o-"));
    let root = parts.next().and_then(|r| r.strip_prefix("r-"));
    let lower = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    };
    (19..=427).contains(&path.len())
        && org.is_some_and(|o| (10..=32).contains(&o.len()) && lower(o))
        && root.is_some_and(|r| (4..=32).contains(&r.len()) && lower(r))
}

/// Handle the account-level operations of `iam_more::OPS`.
pub(crate) async fn handle(req: &mut Req, p: &Params) -> R {
    let acct = req.caller.account.clone();
    match req.op.name {
        "SetSecurityTokenServicePreferences" => {
            let v = need(p, "GlobalEndpointTokenVersion")?;
            if !matches!(v, "v1Token" | "v2Token") {
                return Err(validation(
                    "globalEndpointTokenVersion",
                    v,
                    "Member must satisfy enum value set: [v1Token, v2Token]",
                ));
            }
            authz(req, "*".into())?;
            req.kc.set_token_version(&acct, v).await?;
            ok(req, &|_| {})
        }
        "ListPoliciesGrantingServiceAccess" => policies_granting(req, p),
        "GetServiceLastAccessedDetailsWithEntities" => last_accessed_entities(req, p),
        "EnableOrganizationsRootCredentialsManagement"
        | "DisableOrganizationsRootCredentialsManagement"
        | "EnableOrganizationsRootSessions"
        | "DisableOrganizationsRootSessions" => {
            authz(req, "*".into())?;
            Err(ServiceError::OrganizationNotFound(NO_ORGANIZATION.into()))
        }
        "GenerateOrganizationsAccessReport" => {
            let path = need(p, "EntityPath")?;
            if !entity_path(path) {
                return Err(validation(
                    "entityPath",
                    path,
                    "Member must satisfy regular expression pattern: ^o-[0-9a-z]{10,32}\\/r-[0-9a-z]{4,32}[0-9a-z-\\/]*",
                ));
            }
            authz(req, "*".into())?;
            let id = req.kc.start_org_report(&acct).await?;
            ok(req, &|w| {
                w.elem("JobId", &id);
            })
        }
        "GetOrganizationsAccessReport" => {
            let id = job_id(p)?;
            authz(req, "*".into())?;
            let created = req.kc.org_report(&acct, id)?;
            ok(req, &|w| {
                w.elem("JobStatus", "FAILED")
                    .elem("JobCreationDate", &iso8601(created))
                    .elem("JobCompletionDate", &iso8601(created))
                    .start("ErrorDetails")
                    .elem("Message", NO_ORGANIZATION)
                    .elem("Code", "OrganizationNotFoundException")
                    .end("ErrorDetails");
            })
        }
        "ListDelegationRequests" => {
            authz(req, "*".into())?;
            ok(req, &|w| {
                w.empty("DelegationRequests").elem("isTruncated", "false");
            })
        }
        "CreateDelegationRequest" => {
            need(p, "Description")?;
            need(p, "RequestorWorkflowId")?;
            need(p, "NotificationChannel")?;
            authz(req, "*".into())?;
            Err(ServiceError::InvalidInput(
                "Delegation requests can only be created by onboarded partners.".into(),
            ))
        }
        "GetHumanReadableSummary" => {
            let a = need(p, "EntityArn")?;
            authz(req, "*".into())?;
            if a.contains(":delegation-request/") {
                Err(ServiceError::NoSuchEntity(format!(
                    "The delegation request {a} cannot be found."
                )))
            } else {
                Err(ServiceError::InvalidInput(
                    "Only delegation-request entities are supported.".into(),
                ))
            }
        }
        // Get/Accept/Reject/Update/Associate/SendDelegationToken: keycard
        // holds no delegation requests.
        _ => {
            let id = delegation_id(p)?;
            authz(req, "*".into())?;
            Err(ServiceError::NoSuchEntity(format!(
                "The delegation request with id {id} cannot be found."
            )))
        }
    }
}

fn policies_granting(req: &mut Req, p: &Params) -> R {
    let target = need(p, "Arn")?.to_string();
    let namespaces: Vec<String> = p
        .list("ServiceNamespaces.member")
        .into_iter()
        .map(str::to_string)
        .collect();
    if namespaces.is_empty() || namespaces.len() > 200 {
        return Err(ServiceError::ValidationError(
            "1 validation error detected: Value at 'serviceNamespaces' failed to satisfy constraint: Member must have length between 1 and 200".into(),
        ));
    }
    for ns in &namespaces {
        namespace("serviceNamespaces.member", ns)?;
    }
    authz(req, target.clone())?;
    let acct = req.caller.account.clone();
    let entries = req.kc.policies_granting(&acct, &target, &namespaces)?;
    ok(req, &|w| {
        w.start("PoliciesGrantingServiceAccess");
        for (ns, list) in &entries {
            w.start("member")
                .elem("ServiceNamespace", ns)
                .start("Policies");
            for g in list {
                w.start("member")
                    .elem("PolicyName", &g.name)
                    .elem("PolicyType", g.kind)
                    .opt_elem("PolicyArn", g.arn.as_deref());
                if let Some((kind, name)) = &g.entity {
                    w.elem("EntityType", kind).elem("EntityName", name);
                }
                w.end("member");
            }
            w.end("Policies").end("member");
        }
        w.end("PoliciesGrantingServiceAccess");
        w.elem("IsTruncated", "false");
    })
}

fn last_accessed_entities(req: &mut Req, p: &Params) -> R {
    let id = job_id(p)?;
    let ns = need(p, "ServiceNamespace")?;
    namespace("serviceNamespace", ns)?;
    authz(req, "*".into())?;
    let job = req
        .kc
        .get_service_last_accessed(id, &req.caller.principal.arn)?;
    let (page, next) = paginate(job.entities(ns), p)?;
    ok(req, &|w: &mut XmlWriter| {
        w.elem("JobStatus", "COMPLETED")
            .elem("JobCreationDate", &iso8601(job.created))
            .elem("JobCompletionDate", &iso8601(job.completed));
        w.start("EntityDetailsList");
        for (e, last) in &page {
            w.start("member")
                .start("EntityInfo")
                .elem("Arn", &e.arn)
                .elem("Name", &e.name)
                .elem("Type", e.kind)
                .elem("Id", &e.id)
                .elem("Path", &e.path)
                .end("EntityInfo");
            if let Some(t) = last {
                w.elem("LastAuthenticated", &iso8601(*t));
            }
            w.end("member");
        }
        w.end("EntityDetailsList");
        truncation(w, &next);
    })
}
