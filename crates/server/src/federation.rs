//! Federation on the wire: IAM's OIDC provider and outbound federation
//! operations, STS's `AssumeRoleWithWebIdentity` (unsigned, as in AWS) and
//! `GetWebIdentityToken`, and keycard's issuer documents
//! (`/_keycard/oidc/ID/.well-known/openid-configuration` and `jwks.json`).
//! Parse, authorize, call `keycard_services::federation`, render.

use axum::body::Body;
use bytes::Bytes;
use http::Response;
use http::request::Parts;
use keycard_proto::query::Params;
use keycard_proto::secret::SecretKey;
use keycard_proto::xml::{IAM_XMLNS, STS_XMLNS, XmlWriter, query_response};
use keycard_services::federation::{
    ISSUER_PATH, NewOidcProvider, OidcProvider, TokenRequest, WebIdentityInput,
};
use keycard_services::saml::SamlInput;
use keycard_services::sts::iso8601;
use keycard_services::{Keycard, ServiceError};
use serde_json::{Value, json};

use crate::iam::{need, paginate, tag_page_xml, tags_in, tags_xml};
use crate::iam_governance::authz;
use crate::sts::{assumed_audit, assumed_xml, credentials_audit, credentials_xml, duration};
use crate::{Req, xml_response};

type R = Result<Response<Body>, ServiceError>;

/// The IAM operations this module serves (the IAM match delegates them here).
pub(crate) const IAM_OPS: &[&str] = &[
    "CreateOpenIDConnectProvider",
    "GetOpenIDConnectProvider",
    "DeleteOpenIDConnectProvider",
    "ListOpenIDConnectProviders",
    "AddClientIDToOpenIDConnectProvider",
    "RemoveClientIDFromOpenIDConnectProvider",
    "UpdateOpenIDConnectProviderThumbprint",
    "TagOpenIDConnectProvider",
    "UntagOpenIDConnectProvider",
    "ListOpenIDConnectProviderTags",
    "EnableOutboundWebIdentityFederation",
    "DisableOutboundWebIdentityFederation",
    "GetOutboundWebIdentityFederationInfo",
    "CreateSAMLProvider",
    "GetSAMLProvider",
    "UpdateSAMLProvider",
    "DeleteSAMLProvider",
    "ListSAMLProviders",
    "TagSAMLProvider",
    "UntagSAMLProvider",
    "ListSAMLProviderTags",
];

/// STS operations AWS serves without a signature: the token or assertion
/// is the credential, the role's trust policy the authorization.
pub(crate) const UNSIGNED_STS_OPS: &[&str] = &["AssumeRoleWithWebIdentity", "AssumeRoleWithSAML"];

/// Largest unsigned body read to find its Action (a 100,000-character
/// SAML assertion, URL-encoded, fits).
pub(crate) const UNSIGNED_LIMIT: usize = 160 * 1024;

/// Whether a request declares a body small enough to peek at (a body
/// without a declared length is read up to the limit).
pub(crate) fn small_body(parts: &Parts) -> bool {
    parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_none_or(|n| n <= UNSIGNED_LIMIT)
}

/// Whether an unsigned query request names one of [`UNSIGNED_STS_OPS`].
pub(crate) fn is_unsigned_sts(parts: &Parts, body: &Bytes) -> bool {
    let action = (parts.method == http::Method::POST)
        .then(|| crate::query_action(body))
        .flatten()
        .or_else(|| crate::query_action(parts.uri.query().unwrap_or("").as_bytes()));
    action.is_some_and(|a| UNSIGNED_STS_OPS.contains(&a.as_str()))
}

fn strings(p: &Params, prefix: &str) -> Vec<String> {
    p.list(prefix).into_iter().map(str::to_string).collect()
}

fn provider_xml(w: &mut XmlWriter, p: &OidcProvider) {
    w.elem("Url", &p.url);
    w.start("ClientIDList");
    for c in &p.client_ids {
        w.elem("member", c);
    }
    w.end("ClientIDList");
    w.start("ThumbprintList");
    for t in &p.thumbprints {
        w.elem("member", t);
    }
    w.end("ThumbprintList");
    w.elem("CreateDate", &iso8601(p.created));
    tags_xml(w, &p.tags);
}

/// The IAM side: OIDC providers and outbound federation.
pub(crate) async fn iam(req: &mut Req, p: &Params) -> R {
    let action = req.op.name;
    let kc = req.kc.clone();
    let acct = req.caller.account.clone();
    let rid = req.request_id.clone();
    let respond = |f: &dyn Fn(&mut XmlWriter)| -> R {
        Ok(xml_response(
            200,
            query_response(action, IAM_XMLNS, &rid, |w| f(w)),
        ))
    };
    if action.contains("SAML") {
        return saml_iam(req, p).await;
    }
    let arn = || need(p, "OpenIDConnectProviderArn").map(str::to_string);
    match action {
        "CreateOpenIDConnectProvider" => {
            let input = NewOidcProvider {
                url: need(p, "Url")?.to_string(),
                client_ids: strings(p, "ClientIDList.member"),
                thumbprints: strings(p, "ThumbprintList.member"),
                tags: tags_in(p)?,
            };
            let url = keycard_services::federation::provider_url(&input.url)?;
            let target = keycard_services::federation::oidc_arn(&acct, &url);
            authz(req, target.clone())?;
            if !input.tags.is_empty() {
                req.request_tags(
                    input
                        .tags
                        .iter()
                        .map(|t| (t.key.as_str(), t.value.as_str())),
                );
                authz_as(req, "iam:TagOpenIDConnectProvider", target)?;
            }
            let (arn, prov) = kc.create_oidc_provider(&acct, input).await?;
            respond(&|w| {
                w.elem("OpenIDConnectProviderArn", &arn);
                tags_xml(w, &prov.tags);
            })
        }
        "GetOpenIDConnectProvider" => {
            let a = arn()?;
            authz(req, a.clone())?;
            let prov = kc.get_oidc_provider(&acct, &a)?;
            respond(&|w| provider_xml(w, &prov))
        }
        "DeleteOpenIDConnectProvider" => {
            let a = arn()?;
            authz(req, a.clone())?;
            kc.delete_oidc_provider(&acct, &a).await?;
            respond(&|_| {})
        }
        "ListOpenIDConnectProviders" => {
            authz(req, "*".into())?;
            let list = kc.list_oidc_providers(&acct);
            respond(&|w| {
                w.start("OpenIDConnectProviderList");
                for (a, _) in &list {
                    w.start("member").elem("Arn", a).end("member");
                }
                w.end("OpenIDConnectProviderList");
            })
        }
        "AddClientIDToOpenIDConnectProvider" | "RemoveClientIDFromOpenIDConnectProvider" => {
            let a = arn()?;
            let id = need(p, "ClientID")?.to_string();
            authz(req, a.clone())?;
            if action.starts_with("Add") {
                kc.add_oidc_client_id(&acct, &a, &id).await?;
            } else {
                kc.remove_oidc_client_id(&acct, &a, &id).await?;
            }
            respond(&|_| {})
        }
        "UpdateOpenIDConnectProviderThumbprint" => {
            let a = arn()?;
            let list = strings(p, "ThumbprintList.member");
            authz(req, a.clone())?;
            kc.update_oidc_thumbprints(&acct, &a, list).await?;
            respond(&|_| {})
        }
        "TagOpenIDConnectProvider"
        | "UntagOpenIDConnectProvider"
        | "ListOpenIDConnectProviderTags" => {
            provider_tags(req, p, "OpenIDConnectProviderArn").await
        }
        "EnableOutboundWebIdentityFederation" => {
            authz(req, "*".into())?;
            let host = req.header("host").unwrap_or("localhost").to_string();
            let issuer = kc.enable_outbound(&acct, &host).await?;
            respond(&|w| {
                w.elem("IssuerIdentifier", &issuer);
            })
        }
        "DisableOutboundWebIdentityFederation" => {
            authz(req, "*".into())?;
            kc.disable_outbound(&acct).await?;
            respond(&|_| {})
        }
        "GetOutboundWebIdentityFederationInfo" => {
            authz(req, "*".into())?;
            let issuer = kc.outbound_info(&acct)?;
            respond(&|w| {
                w.elem("IssuerIdentifier", &issuer)
                    .elem("JwtVendingEnabled", "true");
            })
        }
        other => Err(ServiceError::Internal(format!(
            "operation {other} has a row but no handler"
        ))),
    }
}

/// Decide an IAM action other than the operation's own on one resource.
fn authz_as(req: &mut Req, action: &str, res: String) -> Result<(), ServiceError> {
    let acct = req.caller.account.clone();
    req.check(keycard_services::auth::Check::new(action, res).account(acct))
}

/// The event of a federated AssumeRole names the role and belongs to the
/// role's account, even when refused.
fn record_role(req: &mut Req, role_arn: &str) {
    req.audit
        .resources
        .push((role_arn.to_string(), "AWS::IAM::Role".into()));
    if let Some((acct, _)) = keycard_services::sts::parse_role_arn(role_arn) {
        req.caller.account = acct;
    }
}

/// `PolicyArns.member.N.arn` of a federated AssumeRole call.
fn policy_arns(p: &Params) -> Vec<String> {
    p.structs("PolicyArns.member")
        .iter()
        .filter_map(|x| x.get("arn").or_else(|| x.get("Arn")).map(str::to_string))
        .collect()
}

/// STS AssumeRoleWithWebIdentity. The caller arrives anonymous; once the
/// token is verified the event records the web identity user.
pub(crate) async fn assume_role_with_web_identity(req: &mut Req, p: &Params) -> R {
    let input = WebIdentityInput {
        role_arn: need(p, "RoleArn")?.to_string(),
        session_name: need(p, "RoleSessionName")?.to_string(),
        token: SecretKey::new(need(p, "WebIdentityToken")?.to_string()),
        provider_id: p.get("ProviderId").map(str::to_string),
        duration: duration(p)?,
        policy: p.get("Policy").map(str::to_string),
        policy_arns: policy_arns(p),
    };
    record_role(req, &input.role_arn);
    let kc = req.kc.clone();
    let mut decided = Vec::new();
    let r = kc
        .assume_role_with_web_identity(input, &req.ctx, req.enforce, &mut decided)
        .await;
    req.audit.decided.append(&mut decided);
    let r = r?;
    req.caller = r.caller.clone();
    let mut audited = assumed_audit(&r.assumed);
    audited.insert("subjectFromWebIdentityToken".into(), json!(r.subject));
    audited.insert("provider".into(), json!(r.provider));
    audited.insert("audience".into(), json!(r.audience));
    req.audit.response = Value::Object(audited);
    let body = query_response(req.op.name, STS_XMLNS, &req.request_id, |w| {
        credentials_xml(w, &r.assumed.credentials);
        w.elem("SubjectFromWebIdentityToken", &r.subject);
        assumed_xml(w, &r.assumed);
        w.elem("Provider", &r.provider)
            .elem("Audience", &r.audience);
    });
    Ok(xml_response(200, body))
}

/// STS GetWebIdentityToken: a JWT from the account's issuer.
pub(crate) async fn get_web_identity_token(req: &mut Req, p: &Params) -> R {
    let r = TokenRequest {
        audiences: strings(p, "Audience.member"),
        duration: duration(p)?,
        algorithm: need(p, "SigningAlgorithm")?.to_string(),
        tags: tags_in(p)?,
    };
    let kc = req.kc.clone();
    let d = kc.check_token_request(&r)?;
    let check = |action| {
        keycard_services::auth::Check::new(action, "*")
            .key_multi("sts:IdentityTokenAudience", r.audiences.clone())
            .key("sts:DurationSeconds", d.to_string())
            .key("sts:SigningAlgorithm", r.algorithm.clone())
    };
    if !r.tags.is_empty() {
        req.request_tags(r.tags.iter().map(|t| (t.key.as_str(), t.value.as_str())));
    }
    req.check(check("sts:GetWebIdentityToken"))?;
    if !r.tags.is_empty() {
        req.check(check("sts:TagGetWebIdentityToken"))?;
    }
    let (token, exp) = kc
        .get_web_identity_token(&req.caller, &req.region, &r)
        .await?;
    req.audit.response = json!({"expiration": iso8601(exp)});
    let body = query_response(req.op.name, STS_XMLNS, &req.request_id, |w| {
        w.elem("WebIdentityToken", &token)
            .elem("Expiration", &iso8601(exp));
    });
    Ok(xml_response(200, body))
}

// ------------------------------------------------------- issuer documents

fn json_response(status: u16, v: &Value) -> Response<Body> {
    let mut r = Response::new(Body::from(v.to_string()));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// `/_keycard/oidc/ID/.well-known/openid-configuration` and
/// `/_keycard/oidc/ID/.well-known/jwks.json`: public, unauthenticated, as
/// an issuer's discovery documents are.
pub(crate) async fn issuer_document(kc: &Keycard, path: &str) -> Response<Body> {
    let not_found = || json_response(404, &json!({"error": "unknown issuer"}));
    let Some(rest) = path.strip_prefix(ISSUER_PATH) else {
        return not_found();
    };
    let Some((id, doc)) = rest.split_once('/') else {
        return not_found();
    };
    let Some(issuer) = kc.issuer_by_id(id) else {
        return not_found();
    };
    match doc {
        ".well-known/openid-configuration" => json_response(
            200,
            &json!({
                "issuer": issuer,
                "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256", "ES384"],
                "claims_supported": ["aud", "exp", "iat", "iss", "sub", "nbf", "jti"],
            }),
        ),
        ".well-known/jwks.json" => match kc.issuer_jwks().await {
            Ok(j) => json_response(200, &j),
            Err(e) => json_response(500, &json!({"error": e.message()})),
        },
        _ => not_found(),
    }
}

/// keycard admin: `POST /_keycard/admin/oidc/jwks` with
/// `{"account", "providerArn", "jwks"}` sets the keys a provider's tokens
/// are verified with (keycard fetches nothing from the network).
pub(crate) async fn admin_jwks(kc: &Keycard, body: &[u8]) -> (u16, Value) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let arn = v.get("providerArn").and_then(Value::as_str).unwrap_or("");
    let account = match v.get("account").and_then(Value::as_str) {
        Some(a) => a.to_string(),
        None => keycard_services::federation::parse_oidc_arn(arn)
            .map(|(a, _)| a)
            .unwrap_or_default(),
    };
    let jwks = match v.get("jwks") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    match kc.set_oidc_jwks(&account, arn, &jwks).await {
        Ok(n) => (200, json!({"providerArn": arn, "keys": n})),
        Err(e) => (
            e.status(),
            json!({"error": e.code(), "message": e.message()}),
        ),
    }
}

// ------------------------------------------------ federated users, root

/// STS GetFederationToken: a federated-user session.
pub(crate) async fn get_federation_token(req: &mut Req, p: &Params) -> R {
    let input = keycard_services::federation::FederationInput {
        name: need(p, "Name")?.to_string(),
        policy: p.get("Policy").map(str::to_string),
        policy_arns: p
            .structs("PolicyArns.member")
            .iter()
            .filter_map(|x| x.get("arn").or_else(|| x.get("Arn")).map(str::to_string))
            .collect(),
        duration: duration(p)?,
        tags: tags_in(p)?,
    };
    let kc = req.kc.clone();
    kc.check_federation_input(&req.caller, &input)?;
    let arn = keycard_services::federation::federated_user_arn(&req.caller.account, &input.name);
    req.request_tags(
        input
            .tags
            .iter()
            .map(|t| (t.key.as_str(), t.value.as_str())),
    );
    let acct = req.caller.account.clone();
    req.check(
        keycard_services::auth::Check::new("sts:GetFederationToken", arn.clone())
            .account(acct.clone()),
    )?;
    if !input.tags.is_empty() {
        req.check(keycard_services::auth::Check::new("sts:TagSession", arn).account(acct))?;
    }
    let f = kc.get_federation_token(&req.caller, input)?;
    req.audit.response = json!({
        "credentials": credentials_audit(&f.credentials),
        "federatedUser": {"federatedUserId": f.id, "arn": f.arn},
    });
    let body = query_response(req.op.name, STS_XMLNS, &req.request_id, |w| {
        credentials_xml(w, &f.credentials);
        w.start("FederatedUser")
            .elem("FederatedUserId", &f.id)
            .elem("Arn", &f.arn)
            .end("FederatedUser");
        if let Some(n) = f.packed_policy_size {
            w.elem_display("PackedPolicySize", n);
        }
    });
    Ok(xml_response(200, body))
}

/// STS AssumeRoot: privileged root tasks on a member account need an
/// organization with centralized root access; keycard accounts are in
/// none, so an authorized call is refused.
pub(crate) fn assume_root(req: &mut Req, p: &Params) -> R {
    let target = need(p, "TargetPrincipal")?.to_string();
    let task = p
        .structs("TaskPolicyArn")
        .first()
        .and_then(|x| x.get("arn").map(str::to_string))
        .or_else(|| p.get("TaskPolicyArn.arn").map(str::to_string))
        .ok_or_else(|| {
            ServiceError::ValidationError(
                "1 validation error detected: Value null at 'taskPolicyArn' failed to satisfy constraint: Member must not be null".into(),
            )
        })?;
    if !task.starts_with("arn:aws:iam::aws:policy/root-task/") {
        return Err(ServiceError::ValidationError(format!(
            "The TaskPolicyArn {task} is not a root task policy."
        )));
    }
    let resource = format!("arn:aws:iam::{target}:root");
    let acct = req.caller.account.clone();
    req.check(
        keycard_services::auth::Check::new("sts:AssumeRoot", resource.clone()).account(acct),
    )?;
    Err(ServiceError::AccessDenied(format!(
        "User: {} is not authorized to perform: sts:AssumeRoot on resource: {resource} because centralized root access is not enabled: the account is not in an organization",
        req.caller.principal.arn
    )))
}

/// STS GetDelegatedAccessToken: keycard issues no trade-in tokens, so
/// none can be exchanged.
pub(crate) fn get_delegated_access_token(req: &mut Req, p: &Params) -> R {
    need(p, "TradeInToken")?;
    let acct = req.caller.account.clone();
    req.check(
        keycard_services::auth::Check::new("sts:GetDelegatedAccessToken", "*").account(acct),
    )?;
    Err(ServiceError::Modeled(
        "ExpiredTradeInTokenException",
        400,
        "The trade-in token provided in the request has expired and can no longer be exchanged for credentials. Request a new token and retry the operation.".into(),
    ))
}

// ------------------------------------------------------------------ SAML

fn saml_list_entry(w: &mut XmlWriter, arn: &str, p: &keycard_services::saml::SamlProvider) {
    w.start("member").elem("Arn", arn);
    if let Some(v) = &p.valid_until {
        w.elem("ValidUntil", v);
    }
    w.elem("CreateDate", &iso8601(p.created)).end("member");
}

/// IAM's SAML provider operations (the records only: see
/// [`assume_role_with_saml`]).
async fn saml_iam(req: &mut Req, p: &Params) -> R {
    let action = req.op.name;
    let kc = req.kc.clone();
    let acct = req.caller.account.clone();
    let rid = req.request_id.clone();
    let respond = |f: &dyn Fn(&mut XmlWriter)| -> R {
        Ok(xml_response(
            200,
            query_response(action, IAM_XMLNS, &rid, |w| f(w)),
        ))
    };
    let arn = || need(p, "SAMLProviderArn").map(str::to_string);
    match action {
        "CreateSAMLProvider" => {
            let name = need(p, "Name")?.to_string();
            let target = keycard_services::saml::saml_arn(&acct, &name);
            let tags = tags_in(p)?;
            authz(req, target.clone())?;
            if !tags.is_empty() {
                req.request_tags(tags.iter().map(|t| (t.key.as_str(), t.value.as_str())));
                authz_as(req, "iam:TagSAMLProvider", target)?;
            }
            let (arn, prov) = kc
                .create_saml_provider(
                    &acct,
                    &name,
                    need(p, "SAMLMetadataDocument")?,
                    tags,
                    p.get("AssertionEncryptionMode"),
                )
                .await?;
            respond(&|w| {
                w.elem("SAMLProviderArn", &arn);
                tags_xml(w, &prov.tags);
            })
        }
        "GetSAMLProvider" => {
            let a = arn()?;
            authz(req, a.clone())?;
            let prov = kc.get_saml_provider(&acct, &a)?;
            respond(&|w| {
                w.elem("SAMLProviderUUID", &prov.uuid)
                    .elem("SAMLMetadataDocument", &prov.metadata)
                    .elem("CreateDate", &iso8601(prov.created));
                if let Some(v) = &prov.valid_until {
                    w.elem("ValidUntil", v);
                }
                tags_xml(w, &prov.tags);
                if let Some(m) = &prov.encryption_mode {
                    w.elem("AssertionEncryptionMode", m);
                }
            })
        }
        "UpdateSAMLProvider" => {
            let a = arn()?;
            authz(req, a.clone())?;
            kc.set_saml_metadata(
                &acct,
                &a,
                p.get("SAMLMetadataDocument"),
                p.get("AssertionEncryptionMode"),
            )
            .await?;
            respond(&|w| {
                w.elem("SAMLProviderArn", &a);
            })
        }
        "DeleteSAMLProvider" => {
            let a = arn()?;
            authz(req, a.clone())?;
            kc.delete_saml_provider(&acct, &a).await?;
            respond(&|_| {})
        }
        "ListSAMLProviders" => {
            authz(req, "*".into())?;
            let list = kc.list_saml_providers(&acct);
            respond(&|w| {
                w.start("SAMLProviderList");
                for (a, prov) in &list {
                    saml_list_entry(w, a, prov);
                }
                w.end("SAMLProviderList");
            })
        }
        "TagSAMLProvider" | "UntagSAMLProvider" | "ListSAMLProviderTags" => {
            provider_tags(req, p, "SAMLProviderArn").await
        }
        other => Err(ServiceError::Internal(format!(
            "operation {other} has a row but no handler"
        ))),
    }
}

/// Tag, Untag and List…Tags of an OIDC or a SAML provider (named by
/// `arn_param`): the same flow for both.
async fn provider_tags(req: &mut Req, p: &Params, arn_param: &str) -> R {
    let action = req.op.name;
    let saml = arn_param == "SAMLProviderArn";
    let a = need(p, arn_param)?.to_string();
    let kc = req.kc.clone();
    let acct = req.caller.account.clone();
    let respond = |req: &Req, f: &dyn Fn(&mut XmlWriter)| -> R {
        Ok(xml_response(
            200,
            query_response(action, IAM_XMLNS, &req.request_id, |w| f(w)),
        ))
    };
    if action.starts_with("Tag") {
        let tags = tags_in(p)?;
        req.request_tags(tags.iter().map(|t| (t.key.as_str(), t.value.as_str())));
        authz(req, a.clone())?;
        if saml {
            kc.tag_saml_provider(&acct, &a, tags).await?;
        } else {
            kc.tag_oidc_provider(&acct, &a, tags).await?;
        }
        return respond(req, &|_| {});
    }
    if action.starts_with("Untag") {
        let keys = strings(p, "TagKeys.member");
        req.request_key_multi("aws:TagKeys", keys.clone());
        authz(req, a.clone())?;
        if saml {
            kc.untag_saml_provider(&acct, &a, keys).await?;
        } else {
            kc.untag_oidc_provider(&acct, &a, keys).await?;
        }
        return respond(req, &|_| {});
    }
    authz(req, a.clone())?;
    let tags = if saml {
        kc.get_saml_provider(&acct, &a)?.tags
    } else {
        kc.get_oidc_provider(&acct, &a)?.tags
    };
    let (page, next) = paginate(tags, p)?;
    respond(req, &|w| tag_page_xml(w, &page, &next))
}

/// STS AssumeRoleWithSAML (unsigned, as in AWS). The caller arrives
/// anonymous; once the assertion's signature verifies with the
/// provider's metadata the event records the SAML user.
pub(crate) async fn assume_role_with_saml(req: &mut Req, p: &Params) -> R {
    let assertion = need(p, "SAMLAssertion")?;
    if assertion.len() < 4 || assertion.len() > 100_000 {
        return Err(ServiceError::ValidationError(
            "1 validation error detected: Value at 'sAMLAssertion' failed to satisfy constraint: Member must have length less than or equal to 100000".into(),
        ));
    }
    let input = SamlInput {
        role_arn: need(p, "RoleArn")?.to_string(),
        principal_arn: need(p, "PrincipalArn")?.to_string(),
        assertion: SecretKey::new(assertion.to_string()),
        duration: duration(p)?,
        policy: p.get("Policy").map(str::to_string),
        policy_arns: policy_arns(p),
    };
    record_role(req, &input.role_arn);
    let kc = req.kc.clone();
    let mut decided = Vec::new();
    let r = kc
        .assume_role_with_saml(input, &req.ctx, req.enforce, &mut decided)
        .await;
    req.audit.decided.append(&mut decided);
    let r = r?;
    req.caller = r.caller.clone();
    let a = &r.assertion;
    let mut audited = assumed_audit(&r.assumed);
    for (k, v) in [
        ("subject", &a.subject),
        ("subjectType", &a.subject_type),
        ("issuer", &a.issuer),
        ("audience", &a.recipient),
        ("nameQualifier", &r.name_qualifier),
    ] {
        audited.insert(k.into(), json!(v));
    }
    req.audit.response = Value::Object(audited);
    let body = query_response(req.op.name, STS_XMLNS, &req.request_id, |w| {
        credentials_xml(w, &r.assumed.credentials);
        assumed_xml(w, &r.assumed);
        w.elem("Subject", &a.subject)
            .elem("SubjectType", &a.subject_type)
            .elem("Issuer", &a.issuer)
            .elem("Audience", &a.recipient)
            .elem("NameQualifier", &r.name_qualifier);
        if let Some(s) = &a.source_identity {
            w.elem("SourceIdentity", s);
        }
    });
    Ok(xml_response(200, body))
}
