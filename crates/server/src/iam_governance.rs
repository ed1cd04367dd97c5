//! IAM operations governance tools read: login profiles and the password
//! policy, virtual MFA devices, the account alias, the credential report.
//! Parse, authorize, call `keycard_services::iam_governance`, render.

use axum::body::Body;
use base64::Engine;
use http::Response;
use keycard_policy::Decision;
use keycard_proto::query::Params;
use keycard_proto::xml::{IAM_XMLNS, XmlWriter, query_response};
use keycard_services::ServiceError;
use keycard_services::auth::Check;
use keycard_services::iam_access::{Granularity, ServiceAccess};
use keycard_services::iam_governance::{PasswordPolicy, VirtualMfa};
use keycard_services::model::User;
use keycard_services::sts::iso8601;

use crate::iam::{
    arn, bool_param, need, paginate, resource_tags, tags_in, tags_xml, truncation, user_xml,
};
use crate::{Req, xml_response};

type R = Result<Response<Body>, ServiceError>;

/// The operations this module serves (the IAM match delegates them here).
pub(crate) const OPS: &[&str] = &[
    "CreateLoginProfile",
    "GetLoginProfile",
    "UpdateLoginProfile",
    "DeleteLoginProfile",
    "ChangePassword",
    "UpdateAccountPasswordPolicy",
    "GetAccountPasswordPolicy",
    "DeleteAccountPasswordPolicy",
    "CreateVirtualMFADevice",
    "EnableMFADevice",
    "DeactivateMFADevice",
    "DeleteVirtualMFADevice",
    "ListVirtualMFADevices",
    "ListMFADevices",
    "ResyncMFADevice",
    "CreateAccountAlias",
    "DeleteAccountAlias",
    "ListAccountAliases",
    "GenerateCredentialReport",
    "GetCredentialReport",
    "GenerateServiceLastAccessedDetails",
    "GetServiceLastAccessedDetails",
    "ListOrganizationsFeatures",
];

/// Decide `iam:<op>` on one resource, with that resource's tags.
pub(crate) fn authz(req: &mut Req, res: String) -> Result<(), ServiceError> {
    let action = format!("iam:{}", req.op.name);
    authz_as(req, &action, res)
}

/// Decide `action` on one resource, with that resource's tags.
pub(crate) fn authz_as(req: &mut Req, action: &str, res: String) -> Result<(), ServiceError> {
    let acct = req.caller.account.clone();
    req.audit
        .resources
        .push((res.clone(), "AWS::IAM::Resource".into()));
    let tags = resource_tags(&req.kc, &acct, &res);
    req.check(
        Check::new(action, res)
            .account(acct)
            .tags(Some("iam"), &tags),
    )
}

/// The user ARN for `name` (with its path when it exists).
pub(crate) fn user_arn(req: &Req, name: &str) -> String {
    let acct = &req.caller.account;
    let path = req
        .kc
        .state()
        .user(acct, name)
        .map(|u| u.path.clone())
        .unwrap_or_else(|| "/".into());
    arn(acct, "user", &path, name)
}

/// `UserName`, or the calling IAM user's own name when it is left out.
fn user_or_caller(req: &Req, p: &Params) -> Result<String, ServiceError> {
    match p.get("UserName") {
        Some(u) => Ok(u.to_string()),
        None if req.caller.is_root() => Err(ServiceError::ValidationError(
            "Must specify userName when calling with non-User credentials".into(),
        )),
        None => Ok(req.caller.username()),
    }
}

fn int_param(
    p: &Params,
    key: &str,
    field: &str,
    lo: u32,
    hi: u32,
) -> Result<Option<u32>, ServiceError> {
    let Some(v) = p.get(key) else {
        return Ok(None);
    };
    v.parse::<u32>()
        .ok()
        .filter(|n| (lo..=hi).contains(n))
        .map(Some)
        .ok_or_else(|| {
            ServiceError::ValidationError(format!(
                "1 validation error detected: Value '{v}' at '{field}' failed to satisfy constraint: Member must have value {}",
                if v.parse::<i64>().is_ok_and(|n| n < i64::from(lo)) {
                    format!("greater than or equal to {lo}")
                } else {
                    format!("less than or equal to {hi}")
                }
            ))
        })
}

fn password_policy_in(p: &Params) -> Result<PasswordPolicy, ServiceError> {
    let d = PasswordPolicy::default();
    let b = |k: &str, dflt: bool| bool_param(p, k).map(|v| v.unwrap_or(dflt));
    Ok(PasswordPolicy {
        minimum_length: int_param(p, "MinimumPasswordLength", "minimumPasswordLength", 6, 128)?
            .unwrap_or(d.minimum_length),
        require_symbols: b("RequireSymbols", false)?,
        require_numbers: b("RequireNumbers", false)?,
        require_uppercase: b("RequireUppercaseCharacters", false)?,
        require_lowercase: b("RequireLowercaseCharacters", false)?,
        allow_users_to_change: b("AllowUsersToChangePassword", false)?,
        max_age_days: int_param(p, "MaxPasswordAge", "maxPasswordAge", 1, 1095)?.filter(|n| *n > 0),
        reuse_prevention: int_param(
            p,
            "PasswordReusePrevention",
            "passwordReusePrevention",
            1,
            24,
        )?,
        hard_expiry: bool_param(p, "HardExpiry")?,
    })
}

fn password_policy_xml(w: &mut XmlWriter, pp: &PasswordPolicy) {
    let tf = |b: bool| if b { "true" } else { "false" };
    w.start("PasswordPolicy")
        .elem_display("MinimumPasswordLength", pp.minimum_length)
        .elem("RequireSymbols", tf(pp.require_symbols))
        .elem("RequireNumbers", tf(pp.require_numbers))
        .elem("RequireUppercaseCharacters", tf(pp.require_uppercase))
        .elem("RequireLowercaseCharacters", tf(pp.require_lowercase))
        .elem("AllowUsersToChangePassword", tf(pp.allow_users_to_change))
        .elem("ExpirePasswords", tf(pp.max_age_days.is_some()));
    if let Some(a) = pp.max_age_days {
        w.elem_display("MaxPasswordAge", a);
    }
    if let Some(r) = pp.reuse_prevention {
        w.elem_display("PasswordReusePrevention", r);
    }
    if let Some(h) = pp.hard_expiry {
        w.elem("HardExpiry", tf(h));
    }
    w.end("PasswordPolicy");
}

fn virtual_mfa_xml(w: &mut XmlWriter, d: &VirtualMfa, user: Option<&User>) {
    w.elem("SerialNumber", &d.serial);
    if let Some(u) = user {
        w.start("User");
        user_xml(w, u);
        w.end("User");
    }
    if let Some(e) = d.enabled {
        w.elem("EnableDate", &iso8601(e));
    }
    tags_xml(w, &d.tags);
}

fn code_param<'a>(p: &'a Params, key: &str, field: &str) -> Result<&'a str, ServiceError> {
    let c = need(p, key)?;
    if c.len() != 6 || !c.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ServiceError::ValidationError(format!(
            "1 validation error detected: Value at '{field}' failed to satisfy constraint: Member must have length less than or equal to 6 and match [\\d]+"
        )));
    }
    Ok(c)
}

fn serial_param(p: &Params) -> Result<&str, ServiceError> {
    let s = need(p, "SerialNumber")?;
    if !(9..=256).contains(&s.len()) {
        return Err(ServiceError::ValidationError(format!(
            "1 validation error detected: Value '{s}' at 'serialNumber' failed to satisfy constraint: Member must have length between 9 and 256"
        )));
    }
    Ok(s)
}

/// ChangePassword's decision: an implicit deny is overridden when the
/// account password policy lets users change their own password (AWS
/// grants that at account level), or when a reset is required.
fn authorize_change_password(req: &mut Req, me: String, allowed: bool) -> Result<(), ServiceError> {
    match authz(req, me) {
        Err(ServiceError::AccessDenied(m)) => {
            let implicit = req
                .audit
                .decided
                .last()
                .is_some_and(|d| d.evaluation.decision == Decision::ImplicitDeny);
            if !(allowed && implicit) {
                return Err(ServiceError::AccessDenied(m));
            }
            if let Some(d) = req.audit.decided.last_mut() {
                d.overridden_by = Some("account password policy (AllowUsersToChangePassword)");
            }
            Ok(())
        }
        other => other,
    }
}

fn service_access_xml(w: &mut XmlWriter, s: &ServiceAccess, g: Granularity) {
    w.start("member")
        .elem("ServiceName", &s.name)
        .elem("ServiceNamespace", &s.namespace);
    if let Some(l) = &s.last {
        w.elem("LastAuthenticated", &iso8601(l.time))
            .elem("LastAuthenticatedEntity", &l.entity)
            .elem("LastAuthenticatedRegion", &l.region);
    }
    w.elem_display("TotalAuthenticatedEntities", s.total_entities);
    if g == Granularity::Action {
        w.start("TrackedActionsLastAccessed");
        for a in &s.actions {
            w.start("member")
                .elem("ActionName", &a.action)
                .elem("LastAccessedEntity", &a.entity)
                .elem("LastAccessedTime", &iso8601(a.time))
                .elem("LastAccessedRegion", &a.region)
                .end("member");
        }
        w.end("TrackedActionsLastAccessed");
    }
    w.end("member");
}

/// Handle one of [`OPS`]; `p` are the request's parameters.
pub(crate) async fn handle(req: &mut Req, p: &Params) -> R {
    let kc = req.kc.clone();
    let acct = req.caller.account.clone();
    let action = req.op.name;
    let rid = req.request_id.clone();
    let ok = |f: &dyn Fn(&mut XmlWriter)| -> R {
        Ok(xml_response(
            200,
            query_response(action, IAM_XMLNS, &rid, |w| f(w)),
        ))
    };
    let empty = |_: &mut XmlWriter| {};
    match action {
        // ------------------------------------------------- login profiles
        "CreateLoginProfile" => {
            let user = user_or_caller(req, p)?;
            authz(req, user_arn(req, &user))?;
            let password = need(p, "Password")?;
            let reset = bool_param(p, "PasswordResetRequired")?.unwrap_or(false);
            let (u, lp) = kc
                .create_login_profile(&acct, &user, password, reset)
                .await?;
            ok(&|w| {
                w.start("LoginProfile")
                    .elem("UserName", &u.name)
                    .elem("CreateDate", &iso8601(lp.created))
                    .elem(
                        "PasswordResetRequired",
                        if lp.reset_required { "true" } else { "false" },
                    )
                    .end("LoginProfile");
            })
        }
        "GetLoginProfile" => {
            let user = user_or_caller(req, p)?;
            authz(req, user_arn(req, &user))?;
            let (u, lp) = kc.get_login_profile(&acct, &user)?;
            ok(&|w| {
                w.start("LoginProfile")
                    .elem("UserName", &u.name)
                    .elem("CreateDate", &iso8601(lp.created))
                    .elem(
                        "PasswordResetRequired",
                        if lp.reset_required { "true" } else { "false" },
                    )
                    .end("LoginProfile");
            })
        }
        "UpdateLoginProfile" => {
            let user = need(p, "UserName")?.to_string();
            authz(req, user_arn(req, &user))?;
            let reset = bool_param(p, "PasswordResetRequired")?;
            kc.update_login_profile(&acct, &user, p.get("Password"), reset)
                .await?;
            ok(&empty)
        }
        "DeleteLoginProfile" => {
            let user = user_or_caller(req, p)?;
            authz(req, user_arn(req, &user))?;
            kc.delete_login_profile(&acct, &user).await?;
            ok(&empty)
        }
        "ChangePassword" => {
            let old = need(p, "OldPassword")?;
            let new = need(p, "NewPassword")?;
            // An IAM user, with its own keys or a GetSessionToken session
            // of them (the console's): not root, roles or federated users.
            if req.caller.principal.kind != keycard_policy::PrincipalKind::User {
                return Err(ServiceError::InvalidUserType(
                    "Only IAM users can change their own password.".into(),
                ));
            }
            let me = req.caller.username();
            let reset = kc
                .get_login_profile(&acct, &me)
                .map(|(_, lp)| lp.reset_required);
            let allowed = reset.unwrap_or(false)
                || kc
                    .password_policy(&acct)
                    .is_some_and(|pp| pp.allow_users_to_change);
            let arn = req.caller.principal.arn.clone();
            authorize_change_password(req, arn, allowed)?;
            kc.change_password(&acct, &me, old, new).await?;
            ok(&empty)
        }
        "UpdateAccountPasswordPolicy" => {
            authz(req, "*".into())?;
            let pp = password_policy_in(p)?;
            kc.update_password_policy(&acct, pp).await?;
            ok(&empty)
        }
        "GetAccountPasswordPolicy" => {
            authz(req, "*".into())?;
            let pp = kc.get_password_policy(&acct)?;
            ok(&|w| password_policy_xml(w, &pp))
        }
        "DeleteAccountPasswordPolicy" => {
            authz(req, "*".into())?;
            kc.delete_password_policy(&acct).await?;
            ok(&empty)
        }
        // ------------------------------------------------------------ MFA
        "CreateVirtualMFADevice" => {
            let name = need(p, "VirtualMFADeviceName")?;
            let path = p.get("Path").unwrap_or("/");
            keycard_services::validate::path("path", path)?;
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
            {
                return Err(ServiceError::ValidationError(format!(
                    "1 validation error detected: Value '{name}' at 'virtualMFADeviceName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+"
                )));
            }
            let tags = tags_in(p)?;
            authz(req, arn(&acct, "mfa", path, name))?;
            if !tags.is_empty() {
                // Creating with tags also needs iam:TagMFADevice.
                req.request_tags(tags.iter().map(|t| (t.key.as_str(), t.value.as_str())));
                authz_as(req, "iam:TagMFADevice", arn(&acct, "mfa", path, name))?;
            }
            let (d, seed) = kc.create_virtual_mfa(&acct, path, name, tags).await?;
            let qr = crate::qr::otpauth_png(name, &acct, seed.expose());
            ok(&|w| {
                w.start("VirtualMFADevice")
                    .elem("SerialNumber", &d.serial)
                    .elem(
                        "Base32StringSeed",
                        &base64::engine::general_purpose::STANDARD.encode(seed.expose()),
                    );
                if let Some(png) = &qr {
                    w.elem(
                        "QRCodePNG",
                        &base64::engine::general_purpose::STANDARD.encode(png),
                    );
                }
                tags_xml(w, &d.tags);
                w.end("VirtualMFADevice");
            })
        }
        "EnableMFADevice" | "ResyncMFADevice" => {
            let user = need(p, "UserName")?.to_string();
            let serial = serial_param(p)?;
            let c1 = code_param(p, "AuthenticationCode1", "authenticationCode1")?;
            let c2 = code_param(p, "AuthenticationCode2", "authenticationCode2")?;
            authz(req, user_arn(req, &user))?;
            let resync = action == "ResyncMFADevice";
            kc.enable_mfa(&acct, &user, serial, (c1, c2), resync)
                .await?;
            ok(&empty)
        }
        "DeactivateMFADevice" => {
            let user = user_or_caller(req, p)?;
            let serial = serial_param(p)?;
            authz(req, user_arn(req, &user))?;
            kc.deactivate_mfa(&acct, &user, serial).await?;
            ok(&empty)
        }
        "DeleteVirtualMFADevice" => {
            let serial = serial_param(p)?;
            authz(req, serial.to_string())?;
            kc.delete_virtual_mfa(&acct, serial).await?;
            ok(&empty)
        }
        "ListVirtualMFADevices" => {
            let assigned = match p.get("AssignmentStatus") {
                None | Some("Any") => None,
                Some("Assigned") => Some(true),
                Some("Unassigned") => Some(false),
                Some(v) => {
                    return Err(ServiceError::ValidationError(format!(
                        "1 validation error detected: Value '{v}' at 'assignmentStatus' failed to satisfy constraint: Member must satisfy enum value set: [Assigned, Unassigned, Any]"
                    )));
                }
            };
            authz(req, "*".into())?;
            let (page, next) = paginate(kc.list_virtual_mfa(&acct, assigned), p)?;
            ok(&|w| {
                w.start("VirtualMFADevices");
                for (d, u) in &page {
                    w.start("member");
                    virtual_mfa_xml(w, d, u.as_ref());
                    w.end("member");
                }
                w.end("VirtualMFADevices");
                truncation(w, &next);
            })
        }
        "ListMFADevices" => {
            let user = user_or_caller(req, p)?;
            authz(req, user_arn(req, &user))?;
            let (page, next) = paginate(kc.list_mfa(&acct, &user)?, p)?;
            ok(&|w| {
                w.start("MFADevices");
                for (u, s, e) in &page {
                    w.start("member")
                        .elem("UserName", u)
                        .elem("SerialNumber", s)
                        .elem("EnableDate", &iso8601(*e))
                        .end("member");
                }
                w.end("MFADevices");
                truncation(w, &next);
            })
        }
        // ---------------------------------------------------------- alias
        "CreateAccountAlias" => {
            let alias = need(p, "AccountAlias")?;
            authz(req, "*".into())?;
            kc.create_account_alias(&acct, alias).await?;
            ok(&empty)
        }
        "DeleteAccountAlias" => {
            let alias = need(p, "AccountAlias")?;
            authz(req, "*".into())?;
            kc.delete_account_alias(&acct, alias).await?;
            ok(&empty)
        }
        "ListAccountAliases" => {
            authz(req, "*".into())?;
            let (page, next) = paginate(kc.account_aliases(&acct), p)?;
            ok(&|w| {
                w.start("AccountAliases");
                for a in &page {
                    w.elem("member", a);
                }
                w.end("AccountAliases");
                truncation(w, &next);
            })
        }
        // ---------------------------------------------- credential report
        "GenerateCredentialReport" => {
            authz(req, "*".into())?;
            let state = kc.generate_credential_report(&acct).await?;
            let desc = match state {
                keycard_services::iam_governance::ReportState::Started => {
                    "No report exists. Starting a new report generation task"
                }
                keycard_services::iam_governance::ReportState::Complete => {
                    "Report generation is complete"
                }
            };
            ok(&|w| {
                w.elem("State", state.as_str()).elem("Description", desc);
            })
        }
        "GetCredentialReport" => {
            authz(req, "*".into())?;
            let r = kc.get_credential_report(&acct)?;
            ok(&|w| {
                w.elem(
                    "Content",
                    &base64::engine::general_purpose::STANDARD.encode(&r.csv),
                )
                .elem("ReportFormat", "text/csv")
                .elem("GeneratedTime", &iso8601(r.generated));
            })
        }
        // ------------------------------------------ service last accessed
        "GenerateServiceLastAccessedDetails" => {
            let target = need(p, "Arn")?.to_string();
            let granularity = match p.get("Granularity") {
                None | Some("SERVICE_LEVEL") => Granularity::Service,
                Some("ACTION_LEVEL") => Granularity::Action,
                Some(v) => {
                    return Err(ServiceError::ValidationError(format!(
                        "1 validation error detected: Value '{v}' at 'granularity' failed to satisfy constraint: Member must satisfy enum value set: [SERVICE_LEVEL, ACTION_LEVEL]"
                    )));
                }
            };
            authz(req, target.clone())?;
            let owner = req.caller.principal.arn.clone();
            let id = kc
                .generate_service_last_accessed(&acct, &target, granularity, &owner)
                .await?;
            ok(&|w| {
                w.elem("JobId", &id);
            })
        }
        "GetServiceLastAccessedDetails" => {
            let id = need(p, "JobId")?;
            authz(req, "*".into())?;
            let job = kc.get_service_last_accessed(id, &req.caller.principal.arn)?;
            let (page, next) = paginate(job.services.clone(), p)?;
            ok(&|w| {
                w.elem("JobStatus", "COMPLETED")
                    .elem("JobType", job.granularity.as_str())
                    .elem("JobCreationDate", &iso8601(job.created));
                w.start("ServicesLastAccessed");
                for s in &page {
                    service_access_xml(w, s, job.granularity);
                }
                w.end("ServicesLastAccessed");
                w.elem("JobCompletionDate", &iso8601(job.completed));
                truncation(w, &next);
            })
        }
        // Centralized root access needs an organization; keycard accounts
        // are in none.
        "ListOrganizationsFeatures" => {
            authz(req, "*".into())?;
            Err(ServiceError::OrganizationNotFound(
                "The request was rejected because no organization is associated with your account."
                    .into(),
            ))
        }
        other => Err(ServiceError::Internal(format!(
            "operation {other} has a row but no handler"
        ))),
    }
}
