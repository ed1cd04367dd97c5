//! IAM operations beyond the core: UpdateGroup, tags on policies,
//! instance profiles, MFA devices and server certificates; SSH public
//! keys, signing and server certificates, service-specific credentials;
//! service-linked roles; and the account-level operations keycard answers
//! as AWS answers an account outside an organization. Parse, authorize,
//! call `keycard_services`, render.

use axum::body::Body;
use http::Response;
use keycard_proto::query::Params;
use keycard_proto::secret::SecretKey;
use keycard_proto::xml::{IAM_XMLNS, XmlWriter, query_response};
use keycard_services::ServiceError;
use keycard_services::iam_creds::{
    CredKind, NewServerCert, ServerCert, ServiceCred, SigningCert, SshKey, check_id,
};
use keycard_services::iam_more::Tagged;
use keycard_services::model::KeyStatus;
use keycard_services::sts::iso8601;

use crate::iam::{arn, need, paginate, tag_page_xml, tags_in, tags_xml, truncation};
use crate::iam_governance::{authz, authz_as, user_arn};
use crate::{Req, xml_response};

type R = Result<Response<Body>, ServiceError>;

/// The operations this module serves (the IAM match delegates them here).
pub(crate) const OPS: &[&str] = &[
    "UpdateGroup",
    "GetMFADevice",
    "TagPolicy",
    "UntagPolicy",
    "ListPolicyTags",
    "TagInstanceProfile",
    "UntagInstanceProfile",
    "ListInstanceProfileTags",
    "TagMFADevice",
    "UntagMFADevice",
    "ListMFADeviceTags",
    "TagServerCertificate",
    "UntagServerCertificate",
    "ListServerCertificateTags",
    "UploadSSHPublicKey",
    "GetSSHPublicKey",
    "ListSSHPublicKeys",
    "UpdateSSHPublicKey",
    "DeleteSSHPublicKey",
    "UploadSigningCertificate",
    "ListSigningCertificates",
    "UpdateSigningCertificate",
    "DeleteSigningCertificate",
    "UploadServerCertificate",
    "GetServerCertificate",
    "ListServerCertificates",
    "UpdateServerCertificate",
    "DeleteServerCertificate",
    "CreateServiceSpecificCredential",
    "ListServiceSpecificCredentials",
    "ResetServiceSpecificCredential",
    "UpdateServiceSpecificCredential",
    "DeleteServiceSpecificCredential",
    "CreateServiceLinkedRole",
    "DeleteServiceLinkedRole",
    "GetServiceLinkedRoleDeletionStatus",
    "SetSecurityTokenServicePreferences",
    "ListPoliciesGrantingServiceAccess",
    "GetServiceLastAccessedDetailsWithEntities",
    "EnableOrganizationsRootCredentialsManagement",
    "DisableOrganizationsRootCredentialsManagement",
    "EnableOrganizationsRootSessions",
    "DisableOrganizationsRootSessions",
    "GenerateOrganizationsAccessReport",
    "GetOrganizationsAccessReport",
    "CreateDelegationRequest",
    "GetDelegationRequest",
    "ListDelegationRequests",
    "AcceptDelegationRequest",
    "RejectDelegationRequest",
    "UpdateDelegationRequest",
    "AssociateDelegationRequest",
    "SendDelegationToken",
    "GetHumanReadableSummary",
];

/// `UserName`, or the calling IAM user's own name when it is left out.
fn user_or_caller(req: &Req, p: &Params) -> Result<String, ServiceError> {
    match p.get("UserName") {
        Some(u) => {
            keycard_services::validate::name("userName", u, 64)?;
            Ok(u.to_string())
        }
        None if !matches!(
            req.caller.kind,
            keycard_services::auth::CallerKind::User { .. }
        ) =>
        {
            Err(ServiceError::ValidationError(
                "Must specify userName when calling with non-User credentials".into(),
            ))
        }
        None => Ok(req.caller.username()),
    }
}

/// A `Status` parameter: Active or Inactive (Expired is AWS's to set).
fn status_param(p: &Params) -> Result<KeyStatus, ServiceError> {
    match need(p, "Status")? {
        "Active" => Ok(KeyStatus::Active),
        "Inactive" => Ok(KeyStatus::Inactive),
        "Expired" => Err(ServiceError::InvalidInput(
            "Status Expired cannot be set; only Active or Inactive.".into(),
        )),
        other => Err(ServiceError::ValidationError(format!(
            "1 validation error detected: Value '{other}' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [Active, Inactive, Expired]"
        ))),
    }
}

/// `TagKeys.member.N`, checked as the model constrains them.
fn tag_keys(p: &Params) -> Result<Vec<String>, ServiceError> {
    let keys: Vec<String> = p
        .list("TagKeys.member")
        .into_iter()
        .map(str::to_string)
        .collect();
    if keys.len() > 50 {
        return Err(ServiceError::ValidationError(
            "1 validation error detected: Value at 'tagKeys' failed to satisfy constraint: Member must have length less than or equal to 50".into(),
        ));
    }
    if keys.iter().any(|k| k.is_empty() || k.chars().count() > 128) {
        return Err(ServiceError::ValidationError(
            "1 validation error detected: Value at 'tagKeys' failed to satisfy constraint: Member must satisfy constraint: [Member must have length less than or equal to 128, Member must have length greater than or equal to 1]".into(),
        ));
    }
    Ok(keys)
}

fn ssh_meta_xml(w: &mut XmlWriter, user: &str, k: &SshKey) {
    w.elem("UserName", user)
        .elem("SSHPublicKeyId", &k.id)
        .elem("Status", k.status.as_str())
        .elem("UploadDate", &iso8601(k.uploaded));
}

fn signing_cert_xml(w: &mut XmlWriter, user: &str, c: &SigningCert) {
    w.elem("UserName", user)
        .elem("CertificateId", &c.id)
        .elem("CertificateBody", &c.body)
        .elem("Status", c.status.as_str())
        .elem("UploadDate", &iso8601(c.uploaded));
}

fn server_cert_meta_xml(w: &mut XmlWriter, acct: &str, c: &ServerCert) {
    w.start("ServerCertificateMetadata");
    server_cert_meta_xml_inner(w, acct, c);
    w.end("ServerCertificateMetadata");
}

fn is_bedrock(c: &ServiceCred) -> bool {
    c.service == "bedrock.amazonaws.com"
}

/// A service-specific credential; `secret` only when just made or reset.
fn service_cred_xml(w: &mut XmlWriter, user: &str, c: &ServiceCred, secret: Option<&SecretKey>) {
    w.elem("CreateDate", &iso8601(c.created));
    if let Some(e) = c.expires {
        w.elem("ExpirationDate", &iso8601(e));
    }
    w.elem("ServiceName", &c.service);
    if is_bedrock(c) {
        w.elem("ServiceCredentialAlias", &c.service_user_name);
        if let Some(s) = secret {
            w.elem("ServiceCredentialSecret", &format!("ABSK{}", s.expose()));
        }
    } else {
        w.elem("ServiceUserName", &c.service_user_name);
        if let Some(s) = secret {
            w.elem("ServicePassword", s.expose());
        }
    }
    w.elem("ServiceSpecificCredentialId", &c.id)
        .elem("UserName", user)
        .elem("Status", c.status.as_str());
}

/// What a tag operation acts on, and the ARN its decision names.
fn tag_target<'a>(req: &Req, p: &'a Params) -> Result<(Tagged<'a>, String), ServiceError> {
    let acct = &req.caller.account;
    let op = req.op.name;
    if op.contains("Policy") {
        let a = need(p, "PolicyArn")?;
        if a.len() < 20 {
            return Err(ServiceError::ValidationError(format!(
                "1 validation error detected: Value '{a}' at 'policyArn' failed to satisfy constraint: Member must have length greater than or equal to 20"
            )));
        }
        keycard_services::validate::policy_arn(a)?;
        return Ok((Tagged::Policy(a), a.to_string()));
    }
    if op.contains("ServerCertificate") {
        let n = need(p, "ServerCertificateName")?;
        keycard_services::validate::name("serverCertificateName", n, 128)?;
        return Ok((Tagged::ServerCertificate(n), server_cert_arn(req, n)));
    }
    if op.contains("InstanceProfile") {
        let n = need(p, "InstanceProfileName")?;
        keycard_services::validate::name("instanceProfileName", n, 128)?;
        let path = req
            .kc
            .state()
            .instance_profile(acct, n)
            .map(|x| x.path.clone())
            .unwrap_or_else(|| "/".into());
        return Ok((
            Tagged::InstanceProfile(n),
            arn(acct, "instance-profile", &path, n),
        ));
    }
    let s = need(p, "SerialNumber")?;
    if !(9..=256).contains(&s.len())
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=/:,.@-".contains(c))
    {
        return Err(ServiceError::ValidationError(format!(
            "1 validation error detected: Value '{s}' at 'serialNumber' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=/:,.@-]+"
        )));
    }
    Ok((Tagged::MfaDevice(s), s.to_string()))
}

/// The server certificate ARN for `name` (with its path when it exists).
fn server_cert_arn(req: &Req, name: &str) -> String {
    let acct = &req.caller.account;
    let path = req
        .kc
        .get_server_cert(acct, name)
        .map(|c| c.path)
        .unwrap_or_else(|_| "/".into());
    arn(acct, "server-certificate", &path, name)
}

/// Handle one of [`OPS`]; `p` are the request's parameters.
pub(crate) async fn handle(req: &mut Req, p: &Params) -> R {
    let action = req.op.name;
    if let Some(spec) = credential_spec(action) {
        return update_or_delete_credential(req, p, spec).await;
    }
    match action {
        "UpdateGroup" => update_group(req, p).await,
        "GetMFADevice" => get_mfa_device(req, p),
        a if a.starts_with("Tag") || a.starts_with("Untag") || a.ends_with("Tags") => {
            resource_tags_op(req, p).await
        }
        a if a.contains("SSHPublicKey") => ssh_keys(req, p).await,
        a if a.contains("SigningCertificate") => signing_certs(req, p).await,
        a if a.contains("ServerCertificate") => server_certs(req, p).await,
        a if a.contains("ServiceSpecificCredential") => service_creds(req, p).await,
        a if a.contains("ServiceLinkedRole") => service_linked_roles(req, p).await,
        _ => crate::iam_account::handle(req, p).await,
    }
}

/// Render a result with the operation's wrapper.
pub(crate) fn ok(req: &Req, f: &dyn Fn(&mut XmlWriter)) -> R {
    Ok(xml_response(
        200,
        query_response(req.op.name, IAM_XMLNS, &req.request_id, |w| f(w)),
    ))
}

async fn update_group(req: &mut Req, p: &Params) -> R {
    let name = need(p, "GroupName")?;
    keycard_services::validate::name("groupName", name, 128)?;
    let acct = req.caller.account.clone();
    let path = req
        .kc
        .state()
        .group(&acct, name)
        .map(|g| g.path.clone())
        .unwrap_or_else(|| "/".into());
    authz(req, arn(&acct, "group", &path, name))?;
    req.kc
        .update_group(&acct, name, p.get("NewGroupName"), p.get("NewPath"))
        .await?;
    ok(req, &|_| {})
}

fn get_mfa_device(req: &mut Req, p: &Params) -> R {
    let serial = need(p, "SerialNumber")?;
    let user = match p.get("UserName") {
        Some(u) => Some(u.to_string()),
        None if req.caller.is_root() => None,
        None => Some(req.caller.username()),
    };
    let res = match &user {
        Some(u) => user_arn(req, u),
        None => req.caller.principal.arn.clone(),
    };
    authz(req, res)?;
    let acct = req.caller.account.clone();
    let d = req.kc.get_mfa_device(&acct, serial, user.as_deref())?;
    ok(req, &|w| {
        if let Some(u) = &d.user {
            w.elem("UserName", u);
        }
        w.elem("SerialNumber", &d.serial);
        if let Some(e) = d.enabled {
            w.elem("EnableDate", &iso8601(e));
        }
    })
}

/// Tag/Untag/List*Tags of managed policies, instance profiles and MFA
/// devices, with `aws:RequestTag`/`aws:TagKeys` and the resource's tags.
async fn resource_tags_op(req: &mut Req, p: &Params) -> R {
    let (what, res) = tag_target(req, p)?;
    let acct = req.caller.account.clone();
    let op = req.op.name;
    if op.starts_with("Tag") {
        let tags = tags_in(p)?;
        req.request_tags(tags.iter().map(|t| (t.key.as_str(), t.value.as_str())));
        authz(req, res)?;
        req.kc.tag_resource(&acct, what, tags).await?;
        ok(req, &|_| {})
    } else if op.starts_with("Untag") {
        let keys = tag_keys(p)?;
        req.request_key_multi("aws:TagKeys", keys.clone());
        authz(req, res)?;
        req.kc.untag_resource(&acct, what, &keys).await?;
        ok(req, &|_| {})
    } else {
        authz(req, res)?;
        let (page, next) = paginate(req.kc.resource_tags_of(&acct, what)?, p)?;
        ok(req, &|w| tag_page_xml(w, &page, &next))
    }
}

/// The Update/Delete operations on a user's credentials: which list, the
/// id parameter with its model field and minimum length, and whether
/// `UserName` is required.
type CredSpec = (CredKind, &'static str, &'static str, usize, bool);

fn credential_spec(op: &str) -> Option<CredSpec> {
    let what = op
        .strip_prefix("Update")
        .or_else(|| op.strip_prefix("Delete"))?;
    match what {
        "SSHPublicKey" => Some((
            CredKind::SshKey,
            "SSHPublicKeyId",
            "sSHPublicKeyId",
            20,
            true,
        )),
        "SigningCertificate" => Some((
            CredKind::SigningCert,
            "CertificateId",
            "certificateId",
            24,
            false,
        )),
        "ServiceSpecificCredential" => Some((
            CredKind::ServiceCred,
            "ServiceSpecificCredentialId",
            "serviceSpecificCredentialId",
            20,
            false,
        )),
        _ => None,
    }
}

/// A required `UserName`, checked as the model constrains it.
fn named_user(p: &Params) -> Result<String, ServiceError> {
    let u = need(p, "UserName")?;
    keycard_services::validate::name("userName", u, 64)?;
    Ok(u.to_string())
}

/// Update the status of, or delete, an SSH key, signing certificate or
/// service-specific credential.
async fn update_or_delete_credential(req: &mut Req, p: &Params, spec: CredSpec) -> R {
    let (kind, param, field, min, required) = spec;
    let user = if required {
        named_user(p)?
    } else {
        user_or_caller(req, p)?
    };
    let id = need(p, param)?;
    check_id(field, id, min)?;
    let acct = req.caller.account.clone();
    let res = user_arn(req, &user);
    if req.op.name.starts_with("Update") {
        let status = status_param(p)?;
        authz(req, res)?;
        req.kc
            .set_credential_status(&acct, &user, kind, id, status)
            .await?;
    } else {
        authz(req, res)?;
        req.kc.delete_credential(&acct, &user, kind, id).await?;
    }
    ok(req, &|_| {})
}

async fn ssh_keys(req: &mut Req, p: &Params) -> R {
    let op = req.op.name;
    let acct = req.caller.account.clone();
    let user = if op == "ListSSHPublicKeys" {
        user_or_caller(req, p)?
    } else {
        named_user(p)?
    };
    let res = user_arn(req, &user);
    match op {
        "UploadSSHPublicKey" => {
            let body = need(p, "SSHPublicKeyBody")?;
            authz(req, res)?;
            let k = req.kc.upload_ssh_key(&acct, &user, body).await?;
            ok(req, &|w| ssh_key_xml(w, &user, &k, &k.body))
        }
        "GetSSHPublicKey" => {
            let id = need(p, "SSHPublicKeyId")?;
            check_id("sSHPublicKeyId", id, 20)?;
            let pem = match need(p, "Encoding")? {
                "SSH" => false,
                "PEM" => true,
                other => {
                    return Err(ServiceError::ValidationError(format!(
                        "1 validation error detected: Value '{other}' at 'encoding' failed to satisfy constraint: Member must satisfy enum value set: [SSH, PEM]"
                    )));
                }
            };
            authz(req, res)?;
            let (k, parsed) = req.kc.get_ssh_key(&acct, &user, id)?;
            let body = if pem {
                parsed.pem()
            } else if k.body.starts_with("-----") {
                parsed.openssh()
            } else {
                k.body.clone()
            };
            ok(req, &|w| ssh_key_xml(w, &user, &k, &body))
        }
        _ => {
            authz(req, res)?;
            let (page, next) = paginate(req.kc.list_ssh_keys(&acct, &user)?, p)?;
            ok(req, &|w| {
                w.start("SSHPublicKeys");
                for k in &page {
                    w.start("member");
                    ssh_meta_xml(w, &user, k);
                    w.end("member");
                }
                w.end("SSHPublicKeys");
                truncation(w, &next);
            })
        }
    }
}

/// The whole SSHPublicKey, with `body` in the encoding asked for.
fn ssh_key_xml(w: &mut XmlWriter, user: &str, k: &SshKey, body: &str) {
    w.start("SSHPublicKey");
    ssh_meta_xml(w, user, k);
    w.elem("Fingerprint", &k.fingerprint)
        .elem("SSHPublicKeyBody", body)
        .end("SSHPublicKey");
}

async fn signing_certs(req: &mut Req, p: &Params) -> R {
    let acct = req.caller.account.clone();
    let user = user_or_caller(req, p)?;
    let res = user_arn(req, &user);
    if req.op.name == "UploadSigningCertificate" {
        let body = need(p, "CertificateBody")?;
        authz(req, res)?;
        let c = req.kc.upload_signing_cert(&acct, &user, body).await?;
        return ok(req, &|w| {
            w.start("Certificate");
            signing_cert_xml(w, &user, &c);
            w.end("Certificate");
        });
    }
    authz(req, res)?;
    let (page, next) = paginate(req.kc.list_signing_certs(&acct, &user)?, p)?;
    ok(req, &|w| {
        w.start("Certificates");
        for c in &page {
            w.start("member");
            signing_cert_xml(w, &user, c);
            w.end("member");
        }
        w.end("Certificates");
        truncation(w, &next);
    })
}

async fn server_certs(req: &mut Req, p: &Params) -> R {
    let op = req.op.name;
    let acct = req.caller.account.clone();
    if op == "ListServerCertificates" {
        let prefix = p.get("PathPrefix").unwrap_or("/");
        keycard_services::validate::path_prefix("pathPrefix", prefix)?;
        authz(req, "*".into())?;
        let (page, next) = paginate(req.kc.list_server_certs(&acct, prefix), p)?;
        return ok(req, &|w| {
            w.start("ServerCertificateMetadataList");
            for c in &page {
                w.start("member");
                server_cert_meta_xml_inner(w, &acct, c);
                w.end("member");
            }
            w.end("ServerCertificateMetadataList");
            truncation(w, &next);
        });
    }
    let name = need(p, "ServerCertificateName")?;
    keycard_services::validate::name("serverCertificateName", name, 128)?;
    match op {
        "UploadServerCertificate" => {
            let path = p.get("Path").unwrap_or("/");
            let res = arn(&acct, "server-certificate", path, name);
            let tags = tags_in(p)?;
            let input = NewServerCert {
                name,
                path,
                body: need(p, "CertificateBody")?,
                chain: p.get("CertificateChain"),
                private_key: SecretKey::new(need(p, "PrivateKey")?.to_string()),
                tags: tags.clone(),
            };
            authz(req, res.clone())?;
            if !tags.is_empty() {
                req.request_tags(tags.iter().map(|t| (t.key.as_str(), t.value.as_str())));
                authz_as(req, "iam:TagServerCertificate", res)?;
            }
            let c = req.kc.upload_server_cert(&acct, input).await?;
            ok(req, &|w| {
                server_cert_meta_xml(w, &acct, &c);
                tags_xml(w, &c.tags);
            })
        }
        "GetServerCertificate" => {
            authz(req, server_cert_arn(req, name))?;
            let c = req.kc.get_server_cert(&acct, name)?;
            ok(req, &|w| {
                w.start("ServerCertificate");
                server_cert_meta_xml(w, &acct, &c);
                w.elem("CertificateBody", &c.body)
                    .opt_elem("CertificateChain", c.chain.as_deref());
                tags_xml(w, &c.tags);
                w.end("ServerCertificate");
            })
        }
        "UpdateServerCertificate" => {
            authz(req, server_cert_arn(req, name))?;
            req.kc
                .update_server_cert(
                    &acct,
                    name,
                    p.get("NewServerCertificateName"),
                    p.get("NewPath"),
                )
                .await?;
            ok(req, &|_| {})
        }
        _ => {
            authz(req, server_cert_arn(req, name))?;
            req.kc.delete_server_cert(&acct, name).await?;
            ok(req, &|_| {})
        }
    }
}

/// The metadata's members without its wrapper (list members).
fn server_cert_meta_xml_inner(w: &mut XmlWriter, acct: &str, c: &ServerCert) {
    w.elem("Path", &c.path)
        .elem("ServerCertificateName", &c.name)
        .elem("ServerCertificateId", &c.id)
        .elem("Arn", &c.arn(acct))
        .elem("UploadDate", &iso8601(c.uploaded))
        .elem("Expiration", &iso8601(c.expiration));
}

async fn service_creds(req: &mut Req, p: &Params) -> R {
    let op = req.op.name;
    let acct = req.caller.account.clone();
    if op == "ListServiceSpecificCredentials" {
        let all = crate::iam::bool_param(p, "AllUsers")?.unwrap_or(false);
        let user = if all {
            None
        } else {
            Some(user_or_caller(req, p)?)
        };
        let res = match &user {
            Some(u) => user_arn(req, u),
            None => arn(&acct, "user", "/", "*"),
        };
        authz(req, res)?;
        let service = p.get("ServiceName");
        if let Some(s) = service
            && !keycard_services::iam_creds::CRED_SERVICES.contains(&s)
        {
            return Err(ServiceError::ServiceNotSupported(format!(
                "The specified service {s} does not support service-specific credentials."
            )));
        }
        let (page, next) = paginate(
            req.kc.list_service_creds(&acct, user.as_deref(), service)?,
            p,
        )?;
        return ok(req, &|w| {
            w.start("ServiceSpecificCredentials");
            for (u, c) in &page {
                w.start("member");
                service_cred_xml(w, u, c, None);
                w.end("member");
            }
            w.end("ServiceSpecificCredentials");
            truncation(w, &next);
        });
    }
    let user = if op == "CreateServiceSpecificCredential" {
        named_user(p)?
    } else {
        user_or_caller(req, p)?
    };
    let res = user_arn(req, &user);
    let (c, secret) = if op == "CreateServiceSpecificCredential" {
        let service = need(p, "ServiceName")?;
        let age = match p.get("CredentialAgeDays") {
            None => None,
            Some(v) => Some(v.parse::<u32>().ok().filter(|n| (1..=36600).contains(n)).ok_or_else(|| {
                ServiceError::ValidationError(format!(
                    "1 validation error detected: Value '{v}' at 'credentialAgeDays' failed to satisfy constraint: Member must have value between 1 and 36600"
                ))
            })?),
        };
        authz(req, res)?;
        req.kc
            .create_service_cred(&acct, &user, service, age)
            .await?
    } else {
        let id = need(p, "ServiceSpecificCredentialId")?;
        check_id("serviceSpecificCredentialId", id, 20)?;
        authz(req, res)?;
        req.kc.reset_service_cred(&acct, &user, id).await?
    };
    ok(req, &|w| {
        w.start("ServiceSpecificCredential");
        service_cred_xml(w, &user, &c, Some(&secret));
        w.end("ServiceSpecificCredential");
    })
}

async fn service_linked_roles(req: &mut Req, p: &Params) -> R {
    let op = req.op.name;
    let acct = req.caller.account.clone();
    match op {
        "CreateServiceLinkedRole" => {
            let service = need(p, "AWSServiceName")?;
            let description = p.get("Description");
            if description.is_some_and(|d| d.chars().count() > 1000) {
                return Err(ServiceError::ValidationError(
                    "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to 1000".into(),
                ));
            }
            req.request_key("iam:AWSServiceName", service);
            let res = arn(&acct, "role", &format!("/aws-service-role/{service}/"), "*");
            authz(req, res)?;
            let r = req
                .kc
                .create_service_linked_role(&acct, service, description, p.get("CustomSuffix"))
                .await?;
            ok(req, &|w| {
                w.start("Role");
                crate::iam::role_xml(w, &r);
                w.end("Role");
            })
        }
        "DeleteServiceLinkedRole" => {
            let name = need(p, "RoleName")?;
            keycard_services::validate::name("roleName", name, 64)?;
            let path = req
                .kc
                .state()
                .role(&acct, name)
                .map(|r| r.path.clone())
                .unwrap_or_else(|| "/".into());
            authz(req, arn(&acct, "role", &path, name))?;
            let id = req.kc.delete_service_linked_role(&acct, name).await?;
            ok(req, &|w| {
                w.elem("DeletionTaskId", &id);
            })
        }
        _ => {
            let id = need(p, "DeletionTaskId")?;
            if id.is_empty() || id.len() > 1000 {
                return Err(ServiceError::ValidationError(
                    "1 validation error detected: Value at 'deletionTaskId' failed to satisfy constraint: Member must have length between 1 and 1000".into(),
                ));
            }
            // The task id names the role: task/aws-service-role/SVC/NAME/UUID.
            let parts: Vec<&str> = id.split('/').collect();
            let res = match parts.as_slice() {
                ["task", "aws-service-role", svc, name, _] => {
                    arn(&acct, "role", &format!("/aws-service-role/{svc}/"), name)
                }
                _ => "*".to_string(),
            };
            authz(req, res)?;
            let t = req.kc.deletion_status(&acct, id)?;
            ok(req, &|w| {
                w.elem("Status", &t.status);
                if let Some(r) = &t.reason {
                    w.start("Reason").elem("Reason", r).end("Reason");
                }
            })
        }
    }
}
