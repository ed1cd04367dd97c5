//! The IAM query API: parse parameters, authorize, call the IAM service,
//! render AWS's XML.

use axum::body::Body;
use http::Response;
use keycard_proto::query::Params;
use keycard_proto::xml::{IAM_XMLNS, XmlWriter, query_empty_result, query_response};
use keycard_services::ServiceError;
use keycard_services::auth::Check;
use keycard_services::iam::{Holder, NewRole};
use keycard_services::model::*;
use keycard_services::sts::iso8601;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value};

use crate::{Req, xml_response};

type R = Result<Response<Body>, ServiceError>;

/// What IAM leaves unescaped in the URL-encoded policy documents it returns.
const DOC_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub(crate) fn encode_doc(doc: &str) -> String {
    utf8_percent_encode(doc, DOC_SET).to_string()
}

/// Parameters from the form body (POST) or the query string (GET).
pub(crate) fn params(req: &Req) -> Result<Params, ServiceError> {
    Params::from_request(&req.parts, &req.body).map_err(|e| match e.code {
        "MissingParameter" => ServiceError::MissingParameter(e.message),
        "InvalidQueryParameter" => ServiceError::InvalidQueryParameter(e.message),
        _ => ServiceError::ValidationError(e.message),
    })
}

/// Audit form of the parameters: camelCase keys as CloudTrail has them.
pub(crate) fn audit_params(p: &Params) -> Value {
    let mut m = Map::new();
    for (k, v) in p.iter() {
        if k == "Action" || k == "Version" {
            continue;
        }
        let mut key = k.to_string();
        if let Some(f) = key.get(0..1) {
            key = f.to_ascii_lowercase() + &key[1..];
        }
        m.insert(key, Value::String(v.to_string()));
    }
    Value::Object(m)
}

pub(crate) fn need<'a>(p: &'a Params, key: &str) -> Result<&'a str, ServiceError> {
    p.get(key).ok_or_else(|| {
        let mut field = key.to_string();
        if let Some(f) = field.get(0..1) {
            field = f.to_ascii_lowercase() + &field[1..];
        }
        ServiceError::ValidationError(format!(
            "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
        ))
    })
}

pub(crate) fn tags_in(p: &Params) -> Result<Vec<Tag>, ServiceError> {
    p.structs("Tags.member")
        .into_iter()
        .map(|t| {
            Ok(Tag {
                key: need(&t, "Key")?.to_string(),
                value: t.get("Value").unwrap_or("").to_string(),
            })
        })
        .collect()
}

pub(crate) fn bool_param(p: &Params, key: &str) -> Result<Option<bool>, ServiceError> {
    match p.get(key) {
        None => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(v) => Err(ServiceError::ValidationError(format!(
            "Invalid boolean value '{v}' for {key}"
        ))),
    }
}

/// Marker/MaxItems pagination: the marker is the offset of the next item.
pub(crate) fn paginate<T>(
    items: Vec<T>,
    p: &Params,
) -> Result<(Vec<T>, Option<String>), ServiceError> {
    let max = match p.get("MaxItems") {
        None => 100,
        Some(v) => v.parse::<usize>().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| {
            ServiceError::ValidationError(format!(
                "1 validation error detected: Value '{v}' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and 1000"
            ))
        })?,
    };
    let start = match p.get("Marker") {
        None => 0,
        Some(m) => m
            .parse::<usize>()
            .map_err(|_| ServiceError::ValidationError("Invalid Marker".into()))?,
    };
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(start).take(max).collect();
    let next = (start + page.len() < total).then(|| (start + page.len()).to_string());
    Ok((page, next))
}

pub(crate) fn truncation(w: &mut XmlWriter, next: &Option<String>) {
    w.elem("IsTruncated", if next.is_some() { "true" } else { "false" });
    if let Some(m) = next {
        w.elem("Marker", m);
    }
}

pub(crate) fn tags_xml(w: &mut XmlWriter, tags: &[Tag]) {
    if tags.is_empty() {
        return;
    }
    w.start("Tags");
    for t in tags {
        w.start("member")
            .elem("Key", &t.key)
            .elem("Value", &t.value)
            .end("member");
    }
    w.end("Tags");
}

/// A List…Tags answer: every tag of the page (none is `<Tags/>`, which
/// the model requires), then the truncation.
pub(crate) fn tag_page_xml(w: &mut XmlWriter, page: &[Tag], next: &Option<String>) {
    w.start("Tags");
    for t in page {
        w.start("member")
            .elem("Key", &t.key)
            .elem("Value", &t.value)
            .end("member");
    }
    w.end("Tags");
    truncation(w, next);
}

fn boundary_xml(w: &mut XmlWriter, b: &Option<String>) {
    if let Some(arn) = b {
        w.start("PermissionsBoundary")
            .elem("PermissionsBoundaryType", "PermissionsBoundaryPolicy")
            .elem("PermissionsBoundaryArn", arn)
            .end("PermissionsBoundary");
    }
}

pub(crate) fn user_xml(w: &mut XmlWriter, u: &User) {
    w.elem("Path", &u.path)
        .elem("UserName", &u.name)
        .elem("UserId", &u.id)
        .elem("Arn", &u.arn())
        .elem("CreateDate", &iso8601(u.created));
    boundary_xml(w, &u.boundary);
    tags_xml(w, &u.tags);
}

fn group_xml(w: &mut XmlWriter, g: &Group) {
    w.elem("Path", &g.path)
        .elem("GroupName", &g.name)
        .elem("GroupId", &g.id)
        .elem("Arn", &g.arn())
        .elem("CreateDate", &iso8601(g.created));
}

pub(crate) fn role_xml(w: &mut XmlWriter, r: &Role) {
    w.elem("Path", &r.path)
        .elem("RoleName", &r.name)
        .elem("RoleId", &r.id)
        .elem("Arn", &r.arn())
        .elem("CreateDate", &iso8601(r.created))
        .elem("AssumeRolePolicyDocument", &encode_doc(&r.trust.text))
        .opt_elem("Description", r.description.as_deref())
        .elem_display("MaxSessionDuration", r.max_session_duration);
    boundary_xml(w, &r.boundary);
    tags_xml(w, &r.tags);
    w.start("RoleLastUsed");
    if let Some(t) = r.last_used {
        w.elem("LastUsedDate", &iso8601(t));
    }
    if let Some(region) = &r.last_used_region {
        w.elem("Region", region);
    }
    w.end("RoleLastUsed");
}

fn policy_xml(w: &mut XmlWriter, p: &ManagedPolicy, usage: PolicyUsage) {
    w.elem("PolicyName", &p.name)
        .elem("PolicyId", &p.id)
        .elem("Arn", &p.arn())
        .elem("Path", &p.path)
        .elem("DefaultVersionId", &p.default_version)
        .elem_display("AttachmentCount", usage.attachments)
        .elem_display("PermissionsBoundaryUsageCount", usage.boundaries)
        .elem("IsAttachable", "true")
        .opt_elem("Description", p.description.as_deref())
        .elem("CreateDate", &iso8601(p.created))
        .elem("UpdateDate", &iso8601(p.updated));
    tags_xml(w, &p.tags);
}

fn version_xml(w: &mut XmlWriter, v: &PolicyVersion, is_default: bool, with_doc: bool) {
    if with_doc {
        w.elem("Document", &encode_doc(&v.doc.text));
    }
    w.elem("VersionId", &v.id)
        .elem(
            "IsDefaultVersion",
            if is_default { "true" } else { "false" },
        )
        .elem("CreateDate", &iso8601(v.created));
}

fn profile_xml(w: &mut XmlWriter, p: &InstanceProfile, roles: &[Role]) {
    w.elem("Path", &p.path)
        .elem("InstanceProfileName", &p.name)
        .elem("InstanceProfileId", &p.id)
        .elem("Arn", &p.arn())
        .elem("CreateDate", &iso8601(p.created));
    w.start("Roles");
    for r in roles {
        w.start("member");
        role_xml(w, r);
        w.end("member");
    }
    w.end("Roles");
    tags_xml(w, &p.tags);
}

fn access_key_xml(w: &mut XmlWriter, k: &AccessKey, user: &str) {
    w.elem("UserName", user)
        .elem("AccessKeyId", &k.id)
        .elem("Status", k.status.as_str())
        .elem("CreateDate", &iso8601(k.created));
}

pub(crate) fn arn(account: &str, kind: &str, path: &str, name: &str) -> String {
    format!("arn:aws:iam::{account}:{kind}{path}{name}")
}

fn holder_of(action: &str) -> Holder {
    if action.contains("Role") {
        Holder::Role
    } else if action.contains("Group") {
        Holder::Group
    } else {
        Holder::User
    }
}

/// The tags of the IAM resource an ARN names (users, roles, managed
/// policies and instance profiles carry tags), for `aws:ResourceTag/…` and
/// `iam:ResourceTag/…`.
pub(crate) fn resource_tags(kc: &keycard_services::Keycard, acct: &str, arn: &str) -> Vec<Tag> {
    let st = kc.state();
    let Some(rest) = arn.split(':').nth(5) else {
        return Vec::new();
    };
    let name = rest.rsplit('/').next().unwrap_or("");
    let tags = if rest.starts_with("user/") {
        st.user(acct, name).map(|u| u.tags.clone())
    } else if rest.starts_with("role/") {
        st.role(acct, name).map(|r| r.tags.clone())
    } else if rest.starts_with("policy/") {
        st.policies.get(arn).map(|p| p.tags.clone())
    } else if rest.starts_with("instance-profile/") {
        st.instance_profile(acct, name).map(|p| p.tags.clone())
    } else if rest.starts_with("server-certificate/") {
        st.accounts
            .get(acct)
            .and_then(|a| a.extras.server_certs.get(&name.to_ascii_lowercase()))
            .map(|c| c.tags.clone())
    } else if rest.starts_with("mfa/") {
        st.accounts
            .get(acct)
            .and_then(|a| a.governance.mfa.get(arn))
            .map(|d| d.tags.clone())
    } else {
        None
    };
    tags.unwrap_or_default()
}

/// Handle one IAM request: its row is `req.op`.
pub async fn handle(req: &mut Req) -> R {
    let p = params(req)?;
    let action = req.op.name;
    req.audit.params = audit_params(&p);
    let kc = req.kc.clone();
    let acct = req.caller.account.clone();
    let rid = req.request_id.clone();
    let ok = |body: String| -> R { Ok(xml_response(200, body)) };
    let respond = |f: &dyn Fn(&mut XmlWriter)| query_response(action, IAM_XMLNS, &rid, |w| f(w));
    let st_path = |h: Holder, name: &str| -> String {
        let st = kc.state();
        match h {
            Holder::User => st.user(&acct, name).map(|u| u.path.clone()),
            Holder::Group => st.group(&acct, name).map(|g| g.path.clone()),
            Holder::Role => st.role(&acct, name).map(|r| r.path.clone()),
        }
        .unwrap_or_else(|| "/".into())
    };
    let ent_arn = |h: Holder, name: &str| arn(&acct, h.label(), &st_path(h, name), name);
    let iam_action = format!("iam:{action}");
    // Each resource is one check with that resource's own tags.
    macro_rules! authz {
        ($res:expr) => {{ authz!($res, &iam_action) }};
        ($res:expr, $act:expr) => {{
            let res: String = $res;
            req.audit
                .resources
                .push((res.clone(), "AWS::IAM::Resource".into()));
            let tags = resource_tags(&kc, &acct, &res);
            req.check(
                Check::new($act, res)
                    .account(acct.clone())
                    .tags(Some("iam"), &tags),
            )?;
        }};
    }
    // Creating with tags also needs the Tag action, with the request tags.
    macro_rules! tag_on_create {
        ($tags:expr, $res:expr, $act:literal) => {{
            let tags: &[Tag] = $tags;
            if !tags.is_empty() {
                req.request_tags(tags.iter().map(|t| (t.key.as_str(), t.value.as_str())));
                authz!($res, $act);
            }
        }};
    }

    match action {
        fed if crate::federation::IAM_OPS.contains(&fed) => crate::federation::iam(req, &p).await,
        gov if crate::iam_governance::OPS.contains(&gov) => {
            crate::iam_governance::handle(req, &p).await
        }
        sim if crate::iam_simulate::OPS.contains(&sim) => {
            crate::iam_simulate::handle(req, &p).await
        }
        more if crate::iam_more::OPS.contains(&more) => crate::iam_more::handle(req, &p).await,
        // ------------------------------------------------------------ users
        "CreateUser" => {
            let name = need(&p, "UserName")?;
            let path = p.get("Path").unwrap_or("/");
            let tags = tags_in(&p)?;
            let boundary = p.get("PermissionsBoundary").map(str::to_string);
            if let Some(b) = &boundary {
                req.request_key("iam:PermissionsBoundary", b.clone());
            }
            authz!(arn(&acct, "user", path, name));
            tag_on_create!(&tags, arn(&acct, "user", path, name), "iam:TagUser");
            let u = kc.create_user(&acct, name, path, tags, boundary).await?;
            ok(respond(&|w| {
                w.start("User");
                user_xml(w, &u);
                w.end("User");
            }))
        }
        "GetUser" => {
            match p.get("UserName") {
                Some(name) => {
                    authz!(ent_arn(Holder::User, name));
                    let u = kc.get_user(&acct, name)?;
                    ok(respond(&|w| {
                        w.start("User");
                        user_xml(w, &u);
                        w.end("User");
                    }))
                }
                None => {
                    // The caller itself.
                    let me = req.caller.principal.arn.clone();
                    authz!(me.clone());
                    if req.caller.is_root() {
                        let created = kc
                            .state()
                            .accounts
                            .get(&acct)
                            .map(|a| a.created)
                            .unwrap_or(0);
                        return ok(respond(&|w| {
                            w.start("User")
                                .elem("UserId", &acct)
                                .elem("Arn", &me)
                                .elem("CreateDate", &iso8601(created))
                                .end("User");
                        }));
                    }
                    let name = req.caller.username();
                    let u = kc.get_user(&acct, &name).map_err(|_| {
                        ServiceError::ValidationError(
                            "Must specify userName when calling with non-User credentials".into(),
                        )
                    })?;
                    ok(respond(&|w| {
                        w.start("User");
                        user_xml(w, &u);
                        w.end("User");
                    }))
                }
            }
        }
        "ListUsers" => {
            let prefix = p.get("PathPrefix").unwrap_or("/");
            keycard_services::validate::path_prefix("pathPrefix", prefix)?;
            authz!(arn(&acct, "user", "/", ""));
            let (page, next) = paginate(kc.list_users(&acct, prefix), &p)?;
            ok(respond(&|w| {
                w.start("Users");
                for u in &page {
                    w.start("member");
                    user_xml(w, u);
                    w.end("member");
                }
                w.end("Users");
                truncation(w, &next);
            }))
        }
        "UpdateUser" => {
            let name = need(&p, "UserName")?;
            authz!(ent_arn(Holder::User, name));
            kc.update_user(&acct, name, p.get("NewUserName"), p.get("NewPath"))
                .await?;
            ok(respond(&|_| {}))
        }
        "DeleteUser" => {
            let name = need(&p, "UserName")?;
            authz!(ent_arn(Holder::User, name));
            kc.delete_user(&acct, name).await?;
            ok(respond(&|_| {}))
        }
        // ------------------------------------------------------ access keys
        "CreateAccessKey" | "ListAccessKeys" | "UpdateAccessKey" | "DeleteAccessKey" => {
            // Without UserName: the calling user's own keys (or root's).
            let user: Option<String> = match p.get("UserName") {
                Some(u) => Some(u.to_string()),
                None if req.caller.is_root() => None,
                None => Some(req.caller.username()),
            };
            let res = match &user {
                Some(u) => ent_arn(Holder::User, u),
                None => req.caller.principal.arn.clone(),
            };
            authz!(res);
            let display = user.clone().unwrap_or_default();
            match action {
                "CreateAccessKey" => {
                    let (k, secret) = kc.create_access_key(&acct, user.as_deref()).await?;
                    req.audit.response = serde_json::json!({"accessKey": {"accessKeyId": k.id, "status": "Active", "userName": display}});
                    ok(respond(&|w| {
                        w.start("AccessKey");
                        access_key_xml(w, &k, &display);
                        w.elem("SecretAccessKey", &secret);
                        w.end("AccessKey");
                    }))
                }
                "ListAccessKeys" => {
                    let (page, next) = paginate(kc.list_access_keys(&acct, user.as_deref())?, &p)?;
                    ok(respond(&|w| {
                        w.start("AccessKeyMetadata");
                        for k in &page {
                            w.start("member");
                            access_key_xml(w, k, &display);
                            w.end("member");
                        }
                        w.end("AccessKeyMetadata");
                        truncation(w, &next);
                    }))
                }
                "UpdateAccessKey" => {
                    let id = need(&p, "AccessKeyId")?;
                    let status = match need(&p, "Status")? {
                        "Active" => KeyStatus::Active,
                        "Inactive" => KeyStatus::Inactive,
                        other => {
                            return Err(ServiceError::ValidationError(format!(
                                "1 validation error detected: Value '{other}' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [Active, Inactive]"
                            )));
                        }
                    };
                    kc.update_access_key(&acct, user.as_deref(), id, status)
                        .await?;
                    ok(respond(&|_| {}))
                }
                _ => {
                    let id = need(&p, "AccessKeyId")?;
                    kc.delete_access_key(&acct, user.as_deref(), id).await?;
                    ok(respond(&|_| {}))
                }
            }
        }
        "GetAccessKeyLastUsed" => {
            let id = need(&p, "AccessKeyId")?;
            // AWS names no resource of the account for a key of another
            // account (or none): it refuses, it does not say "not found".
            let k = match kc.access_key_last_used(id) {
                Ok(k) if k.account == acct => k,
                Ok(_) | Err(ServiceError::NoSuchEntity(_)) => {
                    return Err(ServiceError::AccessDenied(format!(
                        "User: {} is not authorized to perform: iam:GetAccessKeyLastUsed on resource: access key {id}",
                        req.caller.principal.arn
                    )));
                }
                Err(e) => return Err(e),
            };
            let res = match &k.user {
                Some(u) => ent_arn(Holder::User, u),
                None => format!("arn:aws:iam::{acct}:root"),
            };
            authz!(res);
            ok(respond(&|w| {
                if let Some(u) = &k.user {
                    w.elem("UserName", u);
                }
                w.start("AccessKeyLastUsed");
                match &k.last_used {
                    Some(l) => {
                        w.elem("LastUsedDate", &iso8601(l.date))
                            .elem("ServiceName", &l.service)
                            .elem("Region", &l.region);
                    }
                    None => {
                        w.elem("ServiceName", "N/A").elem("Region", "N/A");
                    }
                }
                w.end("AccessKeyLastUsed");
            }))
        }
        // ----------------------------------------------------------- groups
        "CreateGroup" => {
            let name = need(&p, "GroupName")?;
            let path = p.get("Path").unwrap_or("/");
            authz!(arn(&acct, "group", path, name));
            let g = kc.create_group(&acct, name, path).await?;
            ok(respond(&|w| {
                w.start("Group");
                group_xml(w, &g);
                w.end("Group");
            }))
        }
        "GetGroup" => {
            let name = need(&p, "GroupName")?;
            authz!(ent_arn(Holder::Group, name));
            let (g, users) = kc.get_group(&acct, name)?;
            let (page, next) = paginate(users, &p)?;
            ok(respond(&|w| {
                w.start("Group");
                group_xml(w, &g);
                w.end("Group");
                w.start("Users");
                for u in &page {
                    w.start("member");
                    user_xml(w, u);
                    w.end("member");
                }
                w.end("Users");
                truncation(w, &next);
            }))
        }
        "ListGroups" | "ListGroupsForUser" => {
            let groups = if action == "ListGroups" {
                let prefix = p.get("PathPrefix").unwrap_or("/");
                authz!(arn(&acct, "group", "/", ""));
                kc.list_groups(&acct, prefix)
            } else {
                let user = need(&p, "UserName")?;
                authz!(ent_arn(Holder::User, user));
                kc.list_groups_for_user(&acct, user)?
            };
            let (page, next) = paginate(groups, &p)?;
            ok(respond(&|w| {
                w.start("Groups");
                for g in &page {
                    w.start("member");
                    group_xml(w, g);
                    w.end("member");
                }
                w.end("Groups");
                truncation(w, &next);
            }))
        }
        "DeleteGroup" => {
            let name = need(&p, "GroupName")?;
            authz!(ent_arn(Holder::Group, name));
            kc.delete_group(&acct, name).await?;
            ok(respond(&|_| {}))
        }
        "AddUserToGroup" | "RemoveUserFromGroup" => {
            let group = need(&p, "GroupName")?;
            let user = need(&p, "UserName")?;
            authz!(ent_arn(Holder::Group, group));
            if action == "AddUserToGroup" {
                kc.add_user_to_group(&acct, group, user).await?;
            } else {
                kc.remove_user_from_group(&acct, group, user).await?;
            }
            ok(respond(&|_| {}))
        }
        // ------------------------------------------------------------ roles
        "CreateRole" => {
            let name = need(&p, "RoleName")?;
            let path = p.get("Path").unwrap_or("/");
            let trust = need(&p, "AssumeRolePolicyDocument")?;
            let max = match p.get("MaxSessionDuration") {
                None => None,
                Some(v) => Some(v.parse::<u32>().map_err(|_| {
                    ServiceError::ValidationError(format!(
                        "Invalid value '{v}' for MaxSessionDuration"
                    ))
                })?),
            };
            let boundary = p.get("PermissionsBoundary").map(str::to_string);
            if let Some(b) = &boundary {
                req.request_key("iam:PermissionsBoundary", b.clone());
            }
            authz!(arn(&acct, "role", path, name));
            let tags = tags_in(&p)?;
            tag_on_create!(&tags, arn(&acct, "role", path, name), "iam:TagRole");
            let r = kc
                .create_role(
                    &acct,
                    NewRole {
                        name: name.into(),
                        path: path.into(),
                        trust: trust.into(),
                        description: p.get("Description").map(str::to_string),
                        max_session_duration: max,
                        tags,
                        boundary,
                    },
                )
                .await?;
            ok(respond(&|w| {
                w.start("Role");
                role_xml(w, &r);
                w.end("Role");
            }))
        }
        "GetRole" => {
            let name = need(&p, "RoleName")?;
            authz!(ent_arn(Holder::Role, name));
            let r = kc.get_role(&acct, name)?;
            ok(respond(&|w| {
                w.start("Role");
                role_xml(w, &r);
                w.end("Role");
            }))
        }
        "ListRoles" => {
            let prefix = p.get("PathPrefix").unwrap_or("/");
            keycard_services::validate::path_prefix("pathPrefix", prefix)?;
            authz!(arn(&acct, "role", "/", ""));
            let (page, next) = paginate(kc.list_roles(&acct, prefix), &p)?;
            ok(respond(&|w| {
                w.start("Roles");
                for r in &page {
                    w.start("member");
                    role_xml(w, r);
                    w.end("member");
                }
                w.end("Roles");
                truncation(w, &next);
            }))
        }
        "UpdateRole" | "UpdateRoleDescription" => {
            let name = need(&p, "RoleName")?;
            authz!(ent_arn(Holder::Role, name));
            let max = match p.get("MaxSessionDuration") {
                None => None,
                Some(v) => Some(v.parse::<u32>().map_err(|_| {
                    ServiceError::ValidationError(format!(
                        "Invalid value '{v}' for MaxSessionDuration"
                    ))
                })?),
            };
            kc.update_role(&acct, name, p.get("Description"), max)
                .await?;
            if action == "UpdateRoleDescription" {
                let r = kc.get_role(&acct, name)?;
                return ok(respond(&|w| {
                    w.start("Role");
                    role_xml(w, &r);
                    w.end("Role");
                }));
            }
            ok(query_empty_result(action, IAM_XMLNS, &rid))
        }
        "UpdateAssumeRolePolicy" => {
            let name = need(&p, "RoleName")?;
            let doc = need(&p, "PolicyDocument")?;
            authz!(ent_arn(Holder::Role, name));
            kc.update_assume_role_policy(&acct, name, doc).await?;
            ok(respond(&|_| {}))
        }
        "DeleteRole" => {
            let name = need(&p, "RoleName")?;
            authz!(ent_arn(Holder::Role, name));
            kc.delete_role(&acct, name).await?;
            ok(respond(&|_| {}))
        }
        // ------------------------------------------------------------- tags
        "TagUser" | "TagRole" | "UntagUser" | "UntagRole" | "ListUserTags" | "ListRoleTags" => {
            let h = holder_of(action);
            let key = if h == Holder::Role {
                "RoleName"
            } else {
                "UserName"
            };
            let name = need(&p, key)?;
            let tags = tags_in(&p)?;
            let untag: Vec<String> = p
                .list("TagKeys.member")
                .into_iter()
                .map(str::to_string)
                .collect();
            if action.starts_with("Tag") {
                req.request_tags(tags.iter().map(|t| (t.key.as_str(), t.value.as_str())));
            } else if action.starts_with("Untag") {
                req.request_key_multi("aws:TagKeys", untag.clone());
            }
            authz!(ent_arn(h, name));
            if action.starts_with("Tag") {
                kc.tag(&acct, h, name, tags).await?;
                ok(respond(&|_| {}))
            } else if action.starts_with("Untag") {
                kc.untag(&acct, h, name, untag).await?;
                ok(respond(&|_| {}))
            } else {
                let tags = if h == Holder::Role {
                    kc.get_role(&acct, name)?.tags
                } else {
                    kc.get_user(&acct, name)?.tags
                };
                let (page, next) = paginate(tags, &p)?;
                ok(respond(&|w| tag_page_xml(w, &page, &next)))
            }
        }
        // ------------------------------------------------- managed policies
        "CreatePolicy" => {
            let name = need(&p, "PolicyName")?;
            let path = p.get("Path").unwrap_or("/");
            let doc = need(&p, "PolicyDocument")?;
            authz!(arn(&acct, "policy", path, name));
            let tags = tags_in(&p)?;
            tag_on_create!(&tags, arn(&acct, "policy", path, name), "iam:TagPolicy");
            let pol = kc
                .create_policy(
                    &acct,
                    name,
                    path,
                    doc,
                    p.get("Description").map(str::to_string),
                    tags,
                )
                .await?;
            ok(respond(&|w| {
                w.start("Policy");
                policy_xml(w, &pol, PolicyUsage::default());
                w.end("Policy");
            }))
        }
        "GetPolicy" => {
            let a = need(&p, "PolicyArn")?.to_string();
            authz!(a.clone());
            let (pol, n) = kc.get_policy(&a)?;
            ok(respond(&|w| {
                w.start("Policy");
                policy_xml(w, &pol, n);
                w.end("Policy");
            }))
        }
        "ListPolicies" => {
            let scope = p.get("Scope").unwrap_or("All");
            if !matches!(scope, "All" | "AWS" | "Local") {
                return Err(ServiceError::ValidationError(format!(
                    "1 validation error detected: Value '{scope}' at 'scope' failed to satisfy constraint: Member must satisfy enum value set: [All, AWS, Local]"
                )));
            }
            let only = bool_param(&p, "OnlyAttached")?.unwrap_or(false);
            let prefix = p.get("PathPrefix").unwrap_or("/");
            authz!(arn(&acct, "policy", "/", ""));
            let (page, next) = paginate(kc.list_policies(&acct, scope, only, prefix), &p)?;
            ok(respond(&|w| {
                w.start("Policies");
                for (pol, n) in &page {
                    w.start("member");
                    policy_xml(w, pol, *n);
                    w.end("member");
                }
                w.end("Policies");
                truncation(w, &next);
            }))
        }
        "CreatePolicyVersion" => {
            let a = need(&p, "PolicyArn")?.to_string();
            let doc = need(&p, "PolicyDocument")?;
            let set = bool_param(&p, "SetAsDefault")?.unwrap_or(false);
            authz!(a.clone());
            let v = kc.create_policy_version(&acct, &a, doc, set).await?;
            ok(respond(&|w| {
                w.start("PolicyVersion");
                version_xml(w, &v, set, false);
                w.end("PolicyVersion");
            }))
        }
        "GetPolicyVersion" => {
            let a = need(&p, "PolicyArn")?.to_string();
            let vid = need(&p, "VersionId")?;
            authz!(a.clone());
            let (v, d) = kc.get_policy_version(&a, vid)?;
            ok(respond(&|w| {
                w.start("PolicyVersion");
                version_xml(w, &v, d, true);
                w.end("PolicyVersion");
            }))
        }
        "ListPolicyVersions" => {
            let a = need(&p, "PolicyArn")?.to_string();
            authz!(a.clone());
            let (pol, _) = kc.get_policy(&a)?;
            let mut versions = pol.versions.clone();
            versions.reverse();
            let (page, next) = paginate(versions, &p)?;
            ok(respond(&|w| {
                w.start("Versions");
                for v in &page {
                    w.start("member");
                    version_xml(w, v, v.id == pol.default_version, false);
                    w.end("member");
                }
                w.end("Versions");
                truncation(w, &next);
            }))
        }
        "SetDefaultPolicyVersion" | "DeletePolicyVersion" => {
            let a = need(&p, "PolicyArn")?.to_string();
            let vid = need(&p, "VersionId")?;
            authz!(a.clone());
            if action == "SetDefaultPolicyVersion" {
                kc.set_default_policy_version(&acct, &a, vid).await?;
            } else {
                kc.delete_policy_version(&acct, &a, vid).await?;
            }
            ok(respond(&|_| {}))
        }
        "DeletePolicy" => {
            let a = need(&p, "PolicyArn")?.to_string();
            authz!(a.clone());
            kc.delete_policy(&acct, &a).await?;
            ok(respond(&|_| {}))
        }
        "ListEntitiesForPolicy" => {
            let a = need(&p, "PolicyArn")?.to_string();
            authz!(a.clone());
            let (users, groups, roles) = kc.entities_for_policy(&a)?;
            /// One entity of the answer: the pages run over groups, users,
            /// then roles, as the three lists are rendered.
            enum Ent<'a> {
                Group(&'a Group),
                User(&'a User),
                Role(&'a Role),
            }
            let all: Vec<Ent> = groups
                .iter()
                .filter(|g| g.account == acct)
                .map(Ent::Group)
                .chain(users.iter().filter(|u| u.account == acct).map(Ent::User))
                .chain(roles.iter().filter(|r| r.account == acct).map(Ent::Role))
                .collect();
            let (page, next) = paginate(all, &p)?;
            ok(respond(&|w| {
                w.start("PolicyGroups");
                for e in &page {
                    if let Ent::Group(g) = e {
                        w.start("member")
                            .elem("GroupName", &g.name)
                            .elem("GroupId", &g.id)
                            .end("member");
                    }
                }
                w.end("PolicyGroups");
                w.start("PolicyUsers");
                for e in &page {
                    if let Ent::User(u) = e {
                        w.start("member")
                            .elem("UserName", &u.name)
                            .elem("UserId", &u.id)
                            .end("member");
                    }
                }
                w.end("PolicyUsers");
                w.start("PolicyRoles");
                for e in &page {
                    if let Ent::Role(r) = e {
                        w.start("member")
                            .elem("RoleName", &r.name)
                            .elem("RoleId", &r.id)
                            .end("member");
                    }
                }
                w.end("PolicyRoles");
                truncation(w, &next);
            }))
        }
        "AttachUserPolicy" | "AttachGroupPolicy" | "AttachRolePolicy" | "DetachUserPolicy"
        | "DetachGroupPolicy" | "DetachRolePolicy" => {
            let h = holder_of(action);
            let key = match h {
                Holder::User => "UserName",
                Holder::Group => "GroupName",
                Holder::Role => "RoleName",
            };
            let name = need(&p, key)?;
            let a = need(&p, "PolicyArn")?.to_string();
            req.request_key("iam:PolicyARN", a.clone());
            authz!(ent_arn(h, name));
            if action.starts_with("Attach") {
                kc.attach_policy(&acct, h, name, &a).await?;
            } else {
                kc.detach_policy(&acct, h, name, &a).await?;
            }
            ok(respond(&|_| {}))
        }
        "ListAttachedUserPolicies" | "ListAttachedGroupPolicies" | "ListAttachedRolePolicies" => {
            let h = holder_of(action);
            let key = match h {
                Holder::User => "UserName",
                Holder::Group => "GroupName",
                Holder::Role => "RoleName",
            };
            let name = need(&p, key)?;
            authz!(ent_arn(h, name));
            let (page, next) = paginate(kc.list_attached(&acct, h, name)?, &p)?;
            ok(respond(&|w| {
                w.start("AttachedPolicies");
                for (n, a) in &page {
                    w.start("member")
                        .elem("PolicyName", n)
                        .elem("PolicyArn", a)
                        .end("member");
                }
                w.end("AttachedPolicies");
                truncation(w, &next);
            }))
        }
        // -------------------------------------------------- inline policies
        "PutUserPolicy" | "PutGroupPolicy" | "PutRolePolicy" | "GetUserPolicy"
        | "GetGroupPolicy" | "GetRolePolicy" | "DeleteUserPolicy" | "DeleteGroupPolicy"
        | "DeleteRolePolicy" | "ListUserPolicies" | "ListGroupPolicies" | "ListRolePolicies" => {
            let h = holder_of(action);
            let key = match h {
                Holder::User => "UserName",
                Holder::Group => "GroupName",
                Holder::Role => "RoleName",
            };
            let name = need(&p, key)?.to_string();
            authz!(ent_arn(h, &name));
            if action.starts_with("List") {
                let (page, next) = paginate(kc.list_inline(&acct, h, &name)?, &p)?;
                return ok(respond(&|w| {
                    w.start("PolicyNames");
                    for n in &page {
                        w.elem("member", n);
                    }
                    w.end("PolicyNames");
                    truncation(w, &next);
                }));
            }
            let policy = need(&p, "PolicyName")?;
            if action.starts_with("Put") {
                let doc = need(&p, "PolicyDocument")?;
                kc.put_inline(&acct, h, &name, policy, doc).await?;
                ok(respond(&|_| {}))
            } else if action.starts_with("Get") {
                let doc = kc.get_inline(&acct, h, &name, policy)?;
                ok(respond(&|w| {
                    w.elem(key, &name)
                        .elem("PolicyName", policy)
                        .elem("PolicyDocument", &encode_doc(&doc));
                }))
            } else {
                kc.delete_inline(&acct, h, &name, policy).await?;
                ok(respond(&|_| {}))
            }
        }
        // -------------------------------------------- permissions boundary
        "PutUserPermissionsBoundary"
        | "PutRolePermissionsBoundary"
        | "DeleteUserPermissionsBoundary"
        | "DeleteRolePermissionsBoundary" => {
            let h = holder_of(action);
            let key = if h == Holder::Role {
                "RoleName"
            } else {
                "UserName"
            };
            let name = need(&p, key)?;
            let b = if action.starts_with("Put") {
                let b = need(&p, "PermissionsBoundary")?.to_string();
                req.request_key("iam:PermissionsBoundary", b.clone());
                Some(b)
            } else {
                None
            };
            authz!(ent_arn(h, name));
            kc.set_boundary(&acct, h, name, b.as_deref()).await?;
            ok(respond(&|_| {}))
        }
        // ----------------------------------------------- instance profiles
        "CreateInstanceProfile" => {
            let name = need(&p, "InstanceProfileName")?;
            let path = p.get("Path").unwrap_or("/");
            authz!(arn(&acct, "instance-profile", path, name));
            let tags = tags_in(&p)?;
            tag_on_create!(
                &tags,
                arn(&acct, "instance-profile", path, name),
                "iam:TagInstanceProfile"
            );
            let ip = kc.create_instance_profile(&acct, name, path, tags).await?;
            ok(respond(&|w| {
                w.start("InstanceProfile");
                profile_xml(w, &ip, &[]);
                w.end("InstanceProfile");
            }))
        }
        "GetInstanceProfile"
        | "DeleteInstanceProfile"
        | "AddRoleToInstanceProfile"
        | "RemoveRoleFromInstanceProfile" => {
            let name = need(&p, "InstanceProfileName")?;
            let path = kc
                .state()
                .instance_profile(&acct, name)
                .map(|x| x.path.clone())
                .unwrap_or_else(|| "/".into());
            authz!(arn(&acct, "instance-profile", &path, name));
            match action {
                "GetInstanceProfile" => {
                    let (ip, roles) = kc.get_instance_profile(&acct, name)?;
                    ok(respond(&|w| {
                        w.start("InstanceProfile");
                        profile_xml(w, &ip, &roles);
                        w.end("InstanceProfile");
                    }))
                }
                "DeleteInstanceProfile" => {
                    kc.delete_instance_profile(&acct, name).await?;
                    ok(respond(&|_| {}))
                }
                "AddRoleToInstanceProfile" => {
                    let role = need(&p, "RoleName")?;
                    kc.add_role_to_instance_profile(&acct, name, role).await?;
                    ok(respond(&|_| {}))
                }
                _ => {
                    let role = need(&p, "RoleName")?;
                    kc.remove_role_from_instance_profile(&acct, name, role)
                        .await?;
                    ok(respond(&|_| {}))
                }
            }
        }
        "ListInstanceProfiles" | "ListInstanceProfilesForRole" => {
            let role = if action == "ListInstanceProfilesForRole" {
                let r = need(&p, "RoleName")?;
                authz!(ent_arn(Holder::Role, r));
                Some(r)
            } else {
                authz!(arn(&acct, "instance-profile", "/", ""));
                None
            };
            let prefix = p.get("PathPrefix").unwrap_or("/");
            let (page, next) = paginate(kc.list_instance_profiles(&acct, prefix, role)?, &p)?;
            ok(respond(&|w| {
                w.start("InstanceProfiles");
                for (ip, roles) in &page {
                    w.start("member");
                    profile_xml(w, ip, roles);
                    w.end("member");
                }
                w.end("InstanceProfiles");
                truncation(w, &next);
            }))
        }
        // ---------------------------------------------------------- account
        "GetAccountSummary" => {
            authz!("*".to_string());
            let m = kc.account_summary(&acct);
            ok(respond(&|w| {
                w.start("SummaryMap");
                for (k, v) in &m {
                    w.start("entry")
                        .elem("key", k)
                        .elem_display("value", v)
                        .end("entry");
                }
                w.end("SummaryMap");
            }))
        }
        "GetAccountAuthorizationDetails" => {
            authz!("*".to_string());
            let (users, groups, roles, policies) = kc.authorization_details(&acct);
            let filters: Vec<&str> = p.list("Filter.member");
            let want = |f: &str| filters.is_empty() || filters.contains(&f);
            let inline_xml =
                |w: &mut XmlWriter,
                 tag: &str,
                 m: &std::collections::BTreeMap<String, PolicyDoc>| {
                    w.start(tag);
                    for (n, d) in m {
                        w.start("member")
                            .elem("PolicyName", n)
                            .elem("PolicyDocument", &encode_doc(&d.text))
                            .end("member");
                    }
                    w.end(tag);
                };
            let attached_xml = |w: &mut XmlWriter, list: &[String]| {
                w.start("AttachedManagedPolicies");
                for a in list {
                    let n = a.rsplit('/').next().unwrap_or(a);
                    w.start("member")
                        .elem("PolicyName", n)
                        .elem("PolicyArn", a)
                        .end("member");
                }
                w.end("AttachedManagedPolicies");
            };
            /// One entry of the answer: pages run over users, groups,
            /// roles, then policies, as the four lists are rendered.
            enum Detail<'a> {
                User(&'a User),
                Group(&'a Group),
                Role(&'a Role, &'a [InstanceProfile]),
                Policy(&'a ManagedPolicy, PolicyUsage),
            }
            let mut all: Vec<Detail> = Vec::new();
            if want("User") {
                all.extend(users.iter().map(Detail::User));
            }
            if want("Group") {
                all.extend(groups.iter().map(Detail::Group));
            }
            if want("Role") {
                all.extend(roles.iter().map(|(r, ips)| Detail::Role(r, ips)));
            }
            all.extend(
                policies
                    .iter()
                    .filter(|(pol, _)| {
                        want(if pol.account == "aws" {
                            "AWSManagedPolicy"
                        } else {
                            "LocalManagedPolicy"
                        })
                    })
                    .map(|(pol, n)| Detail::Policy(pol, *n)),
            );
            let (page, next) = paginate(all, &p)?;
            ok(respond(&|w| {
                w.start("UserDetailList");
                for d in &page {
                    if let Detail::User(u) = d {
                        w.start("member");
                        user_xml(w, u);
                        inline_xml(w, "UserPolicyList", &u.inline);
                        w.start("GroupList");
                        for g in &u.groups {
                            w.elem("member", g);
                        }
                        w.end("GroupList");
                        attached_xml(w, &u.attached);
                        w.end("member");
                    }
                }
                w.end("UserDetailList");
                w.start("GroupDetailList");
                for d in &page {
                    if let Detail::Group(g) = d {
                        w.start("member");
                        group_xml(w, g);
                        inline_xml(w, "GroupPolicyList", &g.inline);
                        attached_xml(w, &g.attached);
                        w.end("member");
                    }
                }
                w.end("GroupDetailList");
                w.start("RoleDetailList");
                for d in &page {
                    if let Detail::Role(r, profiles) = d {
                        w.start("member");
                        role_xml(w, r);
                        w.start("InstanceProfileList");
                        for ip in profiles.iter() {
                            w.start("member");
                            profile_xml(w, ip, std::slice::from_ref(*r));
                            w.end("member");
                        }
                        w.end("InstanceProfileList");
                        inline_xml(w, "RolePolicyList", &r.inline);
                        attached_xml(w, &r.attached);
                        w.end("member");
                    }
                }
                w.end("RoleDetailList");
                w.start("Policies");
                for d in &page {
                    if let Detail::Policy(pol, n) = d {
                        w.start("member");
                        policy_xml(w, pol, *n);
                        w.start("PolicyVersionList");
                        for v in &pol.versions {
                            w.start("member");
                            version_xml(w, v, v.id == pol.default_version, true);
                            w.end("member");
                        }
                        w.end("PolicyVersionList");
                        w.end("member");
                    }
                }
                w.end("Policies");
                truncation(w, &next);
            }))
        }
        // A row without an arm: the table and this match disagree.
        other => Err(ServiceError::Internal(format!(
            "operation {other} has a row but no handler"
        ))),
    }
}
