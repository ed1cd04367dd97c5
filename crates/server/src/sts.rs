//! The STS query API.

use axum::body::Body;
use http::Response;
use keycard_proto::xml::{STS_XMLNS, XmlWriter, query_response};
use keycard_services::ServiceError;
use keycard_services::model::Tag;
use keycard_services::sts::{AssumeRoleInput, AssumedRole, Credentials, iso8601};
use serde_json::{Map, Value, json};

use crate::iam::{audit_params, need, params};
use crate::{Req, xml_response};

/// What CloudTrail records of a role session handed out: the key id and
/// expiry (never the secret or the token) and the assumed-role user.
pub(crate) fn assumed_audit(r: &AssumedRole) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("credentials".into(), credentials_audit(&r.credentials));
    m.insert(
        "assumedRoleUser".into(),
        json!({"assumedRoleId": r.assumed_role_id, "arn": r.arn}),
    );
    m
}

/// Credentials as CloudTrail records them: the key id and expiry only.
pub(crate) fn credentials_audit(c: &Credentials) -> Value {
    json!({"accessKeyId": c.access_key_id, "expiration": iso8601(c.expiration)})
}

/// The assumed-role user and packed policy size of a role session answer.
pub(crate) fn assumed_xml(w: &mut XmlWriter, r: &AssumedRole) {
    w.start("AssumedRoleUser")
        .elem("AssumedRoleId", &r.assumed_role_id)
        .elem("Arn", &r.arn)
        .end("AssumedRoleUser");
    if let Some(n) = r.packed_policy_size {
        w.elem_display("PackedPolicySize", n);
    }
}

pub(crate) fn credentials_xml(w: &mut XmlWriter, c: &Credentials) {
    w.start("Credentials")
        .elem("AccessKeyId", &c.access_key_id)
        .elem("SecretAccessKey", c.secret_access_key.expose())
        .elem("SessionToken", &c.session_token)
        .elem("Expiration", &iso8601(c.expiration))
        .end("Credentials");
}

pub(crate) fn duration(p: &keycard_proto::query::Params) -> Result<Option<i64>, ServiceError> {
    match p.get("DurationSeconds") {
        None => Ok(None),
        Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
            ServiceError::ValidationError(format!(
                "1 validation error detected: Value '{v}' at 'durationSeconds' failed to satisfy constraint: Member must be a number"
            ))
        }),
    }
}

pub async fn handle(req: &mut Req) -> Result<Response<Body>, ServiceError> {
    let p = params(req)?;
    let action = req.op.name;
    req.audit.params = audit_params(&p);
    let kc = req.kc.clone();
    let rid = req.request_id.clone();
    let body = match action {
        // Always allowed, even under an explicit deny, as in AWS.
        "GetCallerIdentity" => {
            let c = &req.caller;
            query_response(action, STS_XMLNS, &rid, |w| {
                w.elem("UserId", &c.user_id())
                    .elem("Account", &c.account)
                    .elem("Arn", &c.principal.arn);
            })
        }
        "AssumeRole" => {
            let tags = p
                .structs("Tags.member")
                .into_iter()
                .map(|t| {
                    Ok(Tag {
                        key: need(&t, "Key")?.to_string(),
                        value: t.get("Value").unwrap_or("").to_string(),
                    })
                })
                .collect::<Result<Vec<_>, ServiceError>>()?;
            let input = AssumeRoleInput {
                role_arn: need(&p, "RoleArn")?.to_string(),
                session_name: need(&p, "RoleSessionName")?.to_string(),
                duration: duration(&p)?,
                policy: p.get("Policy").map(str::to_string),
                policy_arns: p
                    .structs("PolicyArns.member")
                    .iter()
                    .filter_map(|x| x.get("arn").or_else(|| x.get("Arn")).map(str::to_string))
                    .collect(),
                tags,
                source_identity: p.get("SourceIdentity").map(str::to_string),
                external_id: p.get("ExternalId").map(str::to_string),
            };
            req.audit
                .resources
                .push((input.role_arn.clone(), "AWS::IAM::Role".into()));
            let mut decided = Vec::new();
            let r = kc.assume_role(&req.caller, input, &req.ctx, req.enforce, &mut decided);
            req.audit.decided.append(&mut decided);
            let r = r?;
            req.audit.response = Value::Object(assumed_audit(&r));
            query_response(action, STS_XMLNS, &rid, |w| {
                credentials_xml(w, &r.credentials);
                assumed_xml(w, &r);
                if let Some(s) = &r.source_identity {
                    w.elem("SourceIdentity", s);
                }
            })
        }
        "GetSessionToken" => {
            let c = kc.get_session_token(&req.caller, duration(&p)?)?;
            req.audit.response = json!({ "credentials": credentials_audit(&c) });
            query_response(action, STS_XMLNS, &rid, |w| credentials_xml(w, &c))
        }
        "GetAccessKeyInfo" => {
            let id = need(&p, "AccessKeyId")?;
            let account = keycard_proto::ids::account_from_access_key_id(id).ok_or_else(|| {
                ServiceError::ValidationError(format!(
                    "1 validation error detected: Value '{id}' at 'accessKeyId' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w]*"
                ))
            })?;
            req.authorize(
                "sts:GetAccessKeyInfo",
                "*",
                None,
                keycard_services::auth::ResourcePolicy::None,
            )?;
            query_response(action, STS_XMLNS, &rid, |w| {
                w.elem("Account", &account);
            })
        }
        "AssumeRoleWithWebIdentity" => {
            return crate::federation::assume_role_with_web_identity(req, &p).await;
        }
        "GetWebIdentityToken" => return crate::federation::get_web_identity_token(req, &p).await,
        "GetFederationToken" => return crate::federation::get_federation_token(req, &p).await,
        "AssumeRoot" => return crate::federation::assume_root(req, &p),
        "AssumeRoleWithSAML" => return crate::federation::assume_role_with_saml(req, &p).await,
        "GetDelegatedAccessToken" => return crate::federation::get_delegated_access_token(req, &p),
        "DecodeAuthorizationMessage" => {
            let msg = need(&p, "EncodedMessage")?;
            req.authorize(
                "sts:DecodeAuthorizationMessage",
                "*",
                None,
                keycard_services::auth::ResourcePolicy::None,
            )?;
            let decoded = kc.decode_authorization_message(&req.caller, msg)?;
            query_response(action, STS_XMLNS, &rid, |w| {
                w.elem("DecodedMessage", &decoded);
            })
        }
        other => {
            return Err(ServiceError::Internal(format!(
                "operation {other} has a row but no handler"
            )));
        }
    };
    Ok(xml_response(200, body))
}
