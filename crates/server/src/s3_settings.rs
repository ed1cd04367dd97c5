//! S3 bucket settings over REST-XML: CORS (configuration, preflight and
//! the headers on actual requests), default encryption, Block Public
//! Access, policy status, Object Ownership, ACLs, and the stored-only
//! website, logging and notification configurations. s3.rs routes here.

use std::sync::Arc;

use axum::body::Body;
use http::request::Parts;
use http::{Response, StatusCode};
use keycard_proto::xml::{S3_XMLNS, XmlNode, XmlWriter};
use keycard_services::Keycard;
use keycard_services::ServiceError;
use keycard_services::auth::ResourcePolicy;
use keycard_services::model::{Bucket, PolicyDoc};
use keycard_services::s3_settings::{
    self as cfg, ALL_USERS, AUTHENTICATED_USERS, BucketSettings, CorsRule, Encryption, Grant,
    Grantee, LOG_DELIVERY, PublicAccessBlock,
};

use crate::Req;
use crate::s3::{
    CANNED_ACLS, Query, access_denied, acting_account, add_bucket_resource, add_object_resource,
    authorize_on, canonical_id, decoded_body, empty, existing_object, host_of, integrity_small,
    malformed_xml, owner_xml, parse_body_xml, put_header, route, versions, xml,
};

type R = Result<Response<Body>, ServiceError>;

/// Most CORS rules a bucket may have.
const MAX_CORS_RULES: usize = 100;
const CORS_METHODS: &[&str] = &["GET", "PUT", "POST", "DELETE", "HEAD"];
const SSE_ALGORITHMS: &[&str] = &["AES256", "aws:kms", "aws:kms:dsse"];
const VARY: &str = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method";
const NOT_ALLOWED: &str = "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.";
const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

fn modeled(code: &'static str, status: u16, msg: &str) -> ServiceError {
    ServiceError::Modeled(code, status, msg.to_string())
}

fn invalid_argument(msg: &str) -> ServiceError {
    ServiceError::InvalidArgument(msg.to_string())
}

fn acls_not_supported() -> ServiceError {
    modeled(
        "AccessControlListNotSupported",
        400,
        "The bucket does not allow ACLs",
    )
}

/// AWS's operation name for a sub-resource request whose generic name
/// (`GetBucketPublicAccessBlock`) differs from the model's.
pub(crate) fn aws_name(name: String) -> String {
    match name.as_str() {
        "GetBucketPublicAccessBlock" => "GetPublicAccessBlock".into(),
        "PutBucketPublicAccessBlock" => "PutPublicAccessBlock".into(),
        "DeleteBucketPublicAccessBlock" => "DeletePublicAccessBlock".into(),
        "GetBucketNotification" => "GetBucketNotificationConfiguration".into(),
        "PutBucketNotification" => "PutBucketNotificationConfiguration".into(),
        _ => name,
    }
}

/// Run the operation if it is a settings operation.
pub(crate) async fn handle(req: &mut Req, b: &str, k: &str, q: &Query) -> Option<R> {
    let r = match req.op.name {
        "GetBucketCors" => get_cors(req, b).await,
        "PutBucketCors" => put_cors(req, b).await,
        "DeleteBucketCors" => delete_setting(req, b, "s3:PutBucketCORS", |s| s.cors.clear()).await,
        "GetBucketEncryption" => get_encryption(req, b).await,
        "PutBucketEncryption" => put_encryption(req, b).await,
        "DeleteBucketEncryption" => {
            delete_setting(req, b, "s3:PutEncryptionConfiguration", |s| {
                s.encryption = None
            })
            .await
        }
        "GetPublicAccessBlock" => get_pab(req, b).await,
        "PutPublicAccessBlock" => put_pab(req, b).await,
        "DeletePublicAccessBlock" => {
            delete_setting(req, b, "s3:PutBucketPublicAccessBlock", |s| {
                s.public_access_block = None
            })
            .await
        }
        "GetBucketPolicyStatus" => get_policy_status(req, b).await,
        "GetBucketOwnershipControls" => get_ownership(req, b).await,
        "PutBucketOwnershipControls" => put_ownership(req, b).await,
        "DeleteBucketOwnershipControls" => {
            delete_setting(req, b, "s3:PutBucketOwnershipControls", |s| {
                s.ownership = None
            })
            .await
        }
        "GetBucketAcl" => get_acl(req, b, None).await,
        "GetObjectAcl" => get_acl(req, b, Some((k, q))).await,
        "PutBucketAcl" => put_bucket_acl(req, b).await,
        "PutObjectAcl" => put_object_acl(req, b, k, q).await,
        "GetBucketWebsite" => get_stored(req, b, Stored::Website).await,
        "PutBucketWebsite" => put_stored(req, b, Stored::Website).await,
        "DeleteBucketWebsite" => {
            delete_setting(req, b, "s3:DeleteBucketWebsite", |s| s.website = None).await
        }
        "GetBucketLogging" => get_stored(req, b, Stored::Logging).await,
        "PutBucketLogging" => put_stored(req, b, Stored::Logging).await,
        "GetBucketNotificationConfiguration" => get_stored(req, b, Stored::Notification).await,
        "PutBucketNotificationConfiguration" => put_stored(req, b, Stored::Notification).await,
        _ => return None,
    };
    Some(r)
}

/// Authorize a bucket-level settings call.
fn on_bucket(req: &mut Req, action: &str, b: &str) -> Result<Arc<Bucket>, ServiceError> {
    add_bucket_resource(req, b);
    authorize_on(req, action, b, None)
}

/// The request's XML body (Content-MD5 and checksums checked), parsed
/// with root `root`; an empty body is MissingRequestBodyError.
async fn body_xml(req: &mut Req, root: &str) -> Result<XmlNode, ServiceError> {
    let body = decoded_body(req).await?;
    integrity_small(req, &body)?;
    if body.data.iter().all(u8::is_ascii_whitespace) {
        return Err(modeled(
            "MissingRequestBodyError",
            400,
            "Request Body is empty",
        ));
    }
    parse_body_xml(&body.data, root)
}

async fn delete_setting(
    req: &mut Req,
    b: &str,
    action: &str,
    change: impl Fn(&mut BucketSettings),
) -> R {
    on_bucket(req, action, b)?;
    req.kc.update_bucket_settings(b, change).await?;
    Ok(empty(req, 204))
}

fn texts<'a>(n: &'a XmlNode, name: &'a str) -> Vec<String> {
    n.children_named(name)
        .map(|c| c.text.trim().to_string())
        .collect()
}

fn parse_bool(n: &XmlNode, name: &str) -> Result<bool, ServiceError> {
    match n.child_text(name).map(str::trim) {
        None => Ok(false),
        Some(t) if t.eq_ignore_ascii_case("true") => Ok(true),
        Some(t) if t.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(malformed_xml()),
    }
}

// ------------------------------------------------------------------ CORS

fn one_wildcard(kind: &str, values: &[String]) -> Result<(), ServiceError> {
    match values.iter().find(|v| v.matches('*').count() > 1) {
        Some(v) => Err(ServiceError::InvalidRequest(format!(
            "{kind} \"{v}\" can not have more than one wildcard."
        ))),
        None => Ok(()),
    }
}

fn parse_cors_rule(n: &XmlNode) -> Result<CorsRule, ServiceError> {
    let rule = CorsRule {
        id: n.child_text("ID").map(|s| s.trim().to_string()),
        methods: texts(n, "AllowedMethod"),
        origins: texts(n, "AllowedOrigin"),
        headers: texts(n, "AllowedHeader"),
        expose: texts(n, "ExposeHeader"),
        max_age: match n.child_text("MaxAgeSeconds") {
            Some(t) => Some(t.trim().parse::<i64>().map_err(|_| malformed_xml())?),
            None => None,
        },
    };
    if rule.methods.is_empty() || rule.origins.is_empty() {
        return Err(malformed_xml());
    }
    if rule.id.as_ref().is_some_and(|i| i.len() > 255) {
        return Err(invalid_argument(
            "The ID of a CORS rule must be at most 255 characters long.",
        ));
    }
    if let Some(m) = rule
        .methods
        .iter()
        .find(|m| !CORS_METHODS.contains(&m.as_str()))
    {
        return Err(ServiceError::InvalidRequest(format!(
            "Found unsupported HTTP method in CORS config. Unsupported method is {m}"
        )));
    }
    one_wildcard("AllowedOrigin", &rule.origins)?;
    one_wildcard("AllowedHeader", &rule.headers)?;
    Ok(rule)
}

async fn put_cors(req: &mut Req, b: &str) -> R {
    on_bucket(req, "s3:PutBucketCORS", b)?;
    let n = body_xml(req, "CORSConfiguration").await?;
    let rules = n
        .children_named("CORSRule")
        .map(parse_cors_rule)
        .collect::<Result<Vec<_>, _>>()?;
    if rules.is_empty() || rules.len() > MAX_CORS_RULES {
        return Err(malformed_xml());
    }
    req.kc
        .update_bucket_settings(b, |s| s.cors = rules.clone())
        .await?;
    Ok(empty(req, 200))
}

async fn get_cors(req: &mut Req, b: &str) -> R {
    let bucket = on_bucket(req, "s3:GetBucketCORS", b)?;
    if bucket.settings.cors.is_empty() {
        return Err(modeled(
            "NoSuchCORSConfiguration",
            404,
            "The CORS configuration does not exist",
        ));
    }
    let mut w = XmlWriter::new();
    w.start_ns("CORSConfiguration", S3_XMLNS);
    for r in &bucket.settings.cors {
        w.start("CORSRule");
        w.opt_elem("ID", r.id.as_deref());
        for (tag, list) in [
            ("AllowedHeader", &r.headers),
            ("AllowedMethod", &r.methods),
            ("AllowedOrigin", &r.origins),
            ("ExposeHeader", &r.expose),
        ] {
            for v in list {
                w.elem(tag, v);
            }
        }
        if let Some(m) = r.max_age {
            w.elem_display("MaxAgeSeconds", m);
        }
        w.end("CORSRule");
    }
    w.end("CORSConfiguration");
    Ok(xml(req, w))
}

/// `pattern` with at most one `*` matches `value`.
fn wildcard_match(pattern: &str, value: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == value,
        Some((pre, post)) => {
            value.len() >= pre.len() + post.len() && value.starts_with(pre) && value.ends_with(post)
        }
    }
}

/// The first rule allowing `origin`, `method` and every requested header.
fn matching_rule<'a>(
    rules: &'a [CorsRule],
    origin: &str,
    method: &str,
    headers: &[String],
) -> Option<&'a CorsRule> {
    rules.iter().find(|r| {
        r.origins.iter().any(|o| wildcard_match(o, origin))
            && r.methods.iter().any(|m| m == method)
            && headers.iter().all(|h| {
                r.headers
                    .iter()
                    .any(|a| wildcard_match(&a.to_ascii_lowercase(), h))
            })
    })
}

/// The Access-Control-* headers a matching rule answers with.
fn cors_headers(rule: &CorsRule, origin: &str, headers: &[String]) -> Vec<(&'static str, String)> {
    let any = rule.origins.iter().any(|o| o == "*");
    let mut out = vec![(
        "access-control-allow-origin",
        if any { "*".into() } else { origin.to_string() },
    )];
    out.push(("access-control-allow-methods", rule.methods.join(", ")));
    if !headers.is_empty() {
        out.push(("access-control-allow-headers", headers.join(", ")));
    }
    if !rule.expose.is_empty() {
        out.push(("access-control-expose-headers", rule.expose.join(", ")));
    }
    if let Some(m) = rule.max_age {
        out.push(("access-control-max-age", m.to_string()));
    }
    if !any {
        out.push(("access-control-allow-credentials", "true".into()));
    }
    out.push(("vary", VARY.into()));
    out
}

fn header<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

fn requested_headers(parts: &Parts) -> Vec<String> {
    header(parts, "access-control-request-headers")
        .unwrap_or("")
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect()
}

fn bare(status: u16, ctype: Option<&str>, body: String) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
    if let Some(c) = ctype {
        put_header(&mut r, "content-type", c);
    }
    r
}

fn preflight_error(code: &str, message: &str, extra: &[(&str, &str)], rid: &str) -> Response<Body> {
    let mut w = XmlWriter::new();
    w.start("Error").elem("Code", code).elem("Message", message);
    for (k, v) in extra {
        w.elem(k, v);
    }
    w.elem("RequestId", rid).elem("HostId", rid).end("Error");
    let status = if code == "BadRequest" { 400 } else { 403 };
    bare(status, Some("application/xml"), w.finish())
}

/// Answer an unauthenticated CORS preflight (`OPTIONS`) from the bucket's
/// rules. Not an API call: CloudTrail records no event for it.
pub(crate) fn preflight(kc: &Keycard, parts: &Parts) -> Response<Body> {
    let rid = uuid::Uuid::new_v4().to_string();
    let host = host_of(parts);
    let Ok((Some(bucket), key)) = route(parts, &host) else {
        return preflight_error("BadRequest", "Insufficient information.", &[], &rid);
    };
    let Some(origin) = header(parts, "origin") else {
        return preflight_error(
            "BadRequest",
            "Insufficient information. Origin request header needed.",
            &[],
            &rid,
        );
    };
    let method = header(parts, "access-control-request-method").unwrap_or("null");
    if !CORS_METHODS.contains(&method) {
        let m = format!("Invalid Access-Control-Request-Method: {method}");
        return preflight_error("BadRequest", &m, &[], &rid);
    }
    let kind = if key.is_some() { "OBJECT" } else { "BUCKET" };
    let extra = [("Method", method), ("ResourceType", kind)];
    let rules = match kc.bucket(&bucket) {
        Ok(b) => b.settings.cors.clone(),
        Err(_) => {
            let m = "CORSResponse: Bucket not found";
            return preflight_error("AccessForbidden", m, &extra, &rid);
        }
    };
    if rules.is_empty() {
        let m = "CORSResponse: CORS is not enabled for this bucket.";
        return preflight_error("AccessForbidden", m, &extra, &rid);
    }
    let headers = requested_headers(parts);
    let Some(rule) = matching_rule(&rules, origin, method, &headers) else {
        return preflight_error("AccessForbidden", NOT_ALLOWED, &extra, &rid);
    };
    let mut r = bare(200, None, String::new());
    for (k, v) in cors_headers(rule, origin, &headers) {
        put_header(&mut r, k, &v);
    }
    put_header(&mut r, "x-amz-request-id", &rid);
    r
}

/// Add the Access-Control-* headers of the rule matching an actual
/// request's Origin (and method, or the Access-Control-Request-Method it
/// names), on success and on error alike.
pub(crate) fn add_cors(kc: &Keycard, parts: &Parts, r: &mut Response<Body>) {
    let Some(origin) = header(parts, "origin") else {
        return;
    };
    let host = host_of(parts);
    let Ok((Some(bucket), _)) = route(parts, &host) else {
        return;
    };
    let Ok(b) = kc.bucket(&bucket) else { return };
    let method = header(parts, "access-control-request-method").unwrap_or(parts.method.as_str());
    if let Some(rule) = matching_rule(&b.settings.cors, origin, method, &[]) {
        for (k, v) in cors_headers(rule, origin, &[]) {
            put_header(r, k, &v);
        }
    }
}

// ------------------------------------------------------------ encryption

fn parse_encryption(n: &XmlNode) -> Result<Encryption, ServiceError> {
    let rules: Vec<&XmlNode> = n.children_named("Rule").collect();
    let [rule] = rules.as_slice() else {
        return Err(malformed_xml());
    };
    let by_default = rule
        .child("ApplyServerSideEncryptionByDefault")
        .ok_or_else(malformed_xml)?;
    let algorithm = by_default
        .child_text("SSEAlgorithm")
        .map(str::trim)
        .filter(|a| SSE_ALGORITHMS.contains(a))
        .ok_or_else(malformed_xml)?
        .to_string();
    let kms_key = by_default
        .child_text("KMSMasterKeyID")
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty());
    if kms_key.is_some() && algorithm == "AES256" {
        return Err(invalid_argument(
            "a KMSMasterKeyID is not applicable if the default sse algorithm is not aws:kms or aws:kms:dsse",
        ));
    }
    Ok(Encryption {
        algorithm,
        kms_key,
        bucket_key: parse_bool(rule, "BucketKeyEnabled")?,
    })
}

async fn put_encryption(req: &mut Req, b: &str) -> R {
    on_bucket(req, "s3:PutEncryptionConfiguration", b)?;
    let n = body_xml(req, "ServerSideEncryptionConfiguration").await?;
    let e = parse_encryption(&n)?;
    req.kc
        .update_bucket_settings(b, |s| s.encryption = Some(e.clone()))
        .await?;
    Ok(empty(req, 200))
}

async fn get_encryption(req: &mut Req, b: &str) -> R {
    let bucket = on_bucket(req, "s3:GetEncryptionConfiguration", b)?;
    let e = bucket.settings.default_encryption();
    let mut w = XmlWriter::new();
    w.start_ns("ServerSideEncryptionConfiguration", S3_XMLNS)
        .start("Rule")
        .start("ApplyServerSideEncryptionByDefault")
        .elem("SSEAlgorithm", &e.algorithm)
        .opt_elem("KMSMasterKeyID", e.kms_key.as_deref())
        .end("ApplyServerSideEncryptionByDefault")
        .elem(
            "BucketKeyEnabled",
            if e.bucket_key { "true" } else { "false" },
        )
        .end("Rule")
        .end("ServerSideEncryptionConfiguration");
    Ok(xml(req, w))
}

/// The encryption headers an object written now keeps: the request's
/// `x-amz-server-side-encryption…` headers, or the bucket's default.
/// keycard stores objects unencrypted whatever the answer says.
pub(crate) fn object_encryption(
    req: &Req,
    bucket: &Bucket,
) -> Result<Vec<(String, String)>, ServiceError> {
    let asked = req.header("x-amz-server-side-encryption").map(str::trim);
    let key = req
        .header("x-amz-server-side-encryption-aws-kms-key-id")
        .map(str::trim);
    let e = match asked {
        Some(a) if !SSE_ALGORITHMS.contains(&a) => {
            return Err(invalid_argument(
                "The encryption method specified is not supported",
            ));
        }
        Some(a) => Encryption {
            algorithm: a.to_string(),
            kms_key: key.map(str::to_string),
            bucket_key: req
                .header("x-amz-server-side-encryption-bucket-key-enabled")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        },
        None => bucket.settings.default_encryption(),
    };
    if key.is_some() && e.algorithm == "AES256" {
        return Err(invalid_argument(
            "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms",
        ));
    }
    let mut out = vec![(
        "x-amz-server-side-encryption".to_string(),
        e.algorithm.clone(),
    )];
    if e.algorithm != "AES256" {
        let key = e.kms_key.unwrap_or_else(|| {
            format!(
                "arn:aws:kms:{}:{}:alias/aws/s3",
                bucket.region, bucket.account
            )
        });
        out.push(("x-amz-server-side-encryption-aws-kms-key-id".into(), key));
        if e.bucket_key {
            out.push((
                "x-amz-server-side-encryption-bucket-key-enabled".into(),
                "true".into(),
            ));
        }
    }
    Ok(out)
}

/// Echo an object's stored encryption headers on a write's answer.
pub(crate) fn sse_headers(
    r: &mut Response<Body>,
    stored: &std::collections::BTreeMap<String, String>,
) {
    for (k, v) in stored {
        if k.starts_with("x-amz-server-side-encryption") {
            put_header(r, k, v);
        }
    }
}

// ------------------------------------------------- Block Public Access

async fn put_pab(req: &mut Req, b: &str) -> R {
    on_bucket(req, "s3:PutBucketPublicAccessBlock", b)?;
    let n = body_xml(req, "PublicAccessBlockConfiguration").await?;
    let pab = PublicAccessBlock {
        block_public_acls: parse_bool(&n, "BlockPublicAcls")?,
        ignore_public_acls: parse_bool(&n, "IgnorePublicAcls")?,
        block_public_policy: parse_bool(&n, "BlockPublicPolicy")?,
        restrict_public_buckets: parse_bool(&n, "RestrictPublicBuckets")?,
    };
    req.kc
        .update_bucket_settings(b, |s| s.public_access_block = Some(pab))
        .await?;
    Ok(empty(req, 200))
}

fn bool_text(v: bool) -> &'static str {
    if v { "true" } else { "false" }
}

async fn get_pab(req: &mut Req, b: &str) -> R {
    let bucket = on_bucket(req, "s3:GetBucketPublicAccessBlock", b)?;
    let Some(p) = bucket.settings.public_access_block else {
        return Err(modeled(
            "NoSuchPublicAccessBlockConfiguration",
            404,
            "The public access block configuration was not found",
        ));
    };
    let mut w = XmlWriter::new();
    w.start_ns("PublicAccessBlockConfiguration", S3_XMLNS)
        .elem("BlockPublicAcls", bool_text(p.block_public_acls))
        .elem("IgnorePublicAcls", bool_text(p.ignore_public_acls))
        .elem("BlockPublicPolicy", bool_text(p.block_public_policy))
        .elem(
            "RestrictPublicBuckets",
            bool_text(p.restrict_public_buckets),
        )
        .end("PublicAccessBlockConfiguration");
    Ok(xml(req, w))
}

/// PutBucketPolicy under BlockPublicPolicy: a public policy is refused.
pub(crate) fn check_policy_allowed(req: &Req, b: &str, text: &str) -> Result<(), ServiceError> {
    let blocked = req
        .kc
        .bucket(b)
        .is_ok_and(|x| x.settings.pab().block_public_policy);
    if blocked && cfg::policy_is_public(text) {
        return Err(ServiceError::AccessDenied(format!(
            "User: {} is not authorized to perform: s3:PutBucketPolicy on resource: \"arn:aws:s3:::{b}\" because public policies are blocked by the BlockPublicPolicy block public access setting.",
            req.caller.principal.arn
        )));
    }
    Ok(())
}

async fn get_policy_status(req: &mut Req, b: &str) -> R {
    let bucket = on_bucket(req, "s3:GetBucketPolicyStatus", b)?;
    let Some(p) = &bucket.policy else {
        return Err(ServiceError::NoSuchBucketPolicy(
            "The bucket policy does not exist".into(),
        ));
    };
    let mut w = XmlWriter::new();
    w.start_ns("PolicyStatus", S3_XMLNS)
        .elem("IsPublic", bool_text(cfg::policy_is_public(&p.text)))
        .end("PolicyStatus");
    Ok(xml(req, w))
}

// ------------------------------------------------------- Object Ownership

async fn put_ownership(req: &mut Req, b: &str) -> R {
    let bucket = on_bucket(req, "s3:PutBucketOwnershipControls", b)?;
    let n = body_xml(req, "OwnershipControls").await?;
    let rules: Vec<&XmlNode> = n.children_named("Rule").collect();
    let [rule] = rules.as_slice() else {
        return Err(malformed_xml());
    };
    let value = rule
        .child_text("ObjectOwnership")
        .map(str::trim)
        .filter(|v| cfg::OWNERSHIP_VALUES.contains(v))
        .ok_or_else(malformed_xml)?
        .to_string();
    if value == cfg::OWNER_ENFORCED && bucket.settings.acl.as_ref().is_some_and(|a| !a.is_empty()) {
        return Err(bucket_acl_with_ownership());
    }
    req.kc
        .update_bucket_settings(b, |s| s.ownership = Some(value.clone()))
        .await?;
    Ok(empty(req, 200))
}

fn bucket_acl_with_ownership() -> ServiceError {
    modeled(
        "InvalidBucketAclWithObjectOwnership",
        400,
        "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting",
    )
}

async fn get_ownership(req: &mut Req, b: &str) -> R {
    let bucket = on_bucket(req, "s3:GetBucketOwnershipControls", b)?;
    let Some(o) = bucket.settings.ownership.clone() else {
        return Err(modeled(
            "OwnershipControlsNotFoundError",
            404,
            "The bucket ownership controls were not found",
        ));
    };
    let mut w = XmlWriter::new();
    w.start_ns("OwnershipControls", S3_XMLNS)
        .start("Rule")
        .elem("ObjectOwnership", &o)
        .end("Rule")
        .end("OwnershipControls");
    Ok(xml(req, w))
}

// ------------------------------------------------------------------ ACLs

fn group(uri: &str, permission: &str) -> Grant {
    Grant {
        grantee: Grantee::Group(uri.into()),
        permission: permission.into(),
    }
}

/// A canned ACL's grants besides the owner's FULL_CONTROL. keycard keeps
/// no separate object owner, so the bucket-owner-* ACLs add nothing, and
/// aws-exec-read's grant to EC2 is not kept.
fn canned_grants(acl: &str) -> Vec<Grant> {
    match acl {
        "public-read" => vec![group(ALL_USERS, "READ")],
        "public-read-write" => vec![group(ALL_USERS, "READ"), group(ALL_USERS, "WRITE")],
        "authenticated-read" => vec![group(AUTHENTICATED_USERS, "READ")],
        "log-delivery-write" => vec![
            group(LOG_DELIVERY, "WRITE"),
            group(LOG_DELIVERY, "READ_ACP"),
        ],
        _ => Vec::new(),
    }
}

/// The account a canonical user id stands for.
fn account_of_canonical(kc: &Keycard, id: &str) -> Result<String, ServiceError> {
    kc.account_ids()
        .into_iter()
        .find(|a| canonical_id(a) == id)
        .ok_or_else(|| invalid_argument("Invalid id"))
}

fn unresolvable_email() -> ServiceError {
    modeled(
        "UnresolvableGrantByEmailAddress",
        400,
        "The e-mail address you provided does not match any account on record.",
    )
}

fn grantee_of(kc: &Keycard, kind: &str, value: &str) -> Result<Grantee, ServiceError> {
    match kind {
        "id" => Ok(Grantee::Account {
            id: value.to_string(),
            account: account_of_canonical(kc, value)?,
        }),
        "uri" if [ALL_USERS, AUTHENTICATED_USERS, LOG_DELIVERY].contains(&value) => {
            Ok(Grantee::Group(value.to_string()))
        }
        "uri" => Err(invalid_argument("Invalid group uri")),
        "emailAddress" => Err(unresolvable_email()),
        _ => Err(invalid_argument("Argument format not recognized")),
    }
}

/// `x-amz-grant-*` headers: `id="…", uri="…"` lists.
fn header_grants(req: &Req) -> Result<Option<Vec<Grant>>, ServiceError> {
    let mut out = Vec::new();
    let mut any = false;
    for (h, perm) in [
        ("x-amz-grant-read", "READ"),
        ("x-amz-grant-write", "WRITE"),
        ("x-amz-grant-read-acp", "READ_ACP"),
        ("x-amz-grant-write-acp", "WRITE_ACP"),
        ("x-amz-grant-full-control", "FULL_CONTROL"),
    ] {
        let Some(v) = req.header(h) else { continue };
        any = true;
        for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (kind, value) = item
                .split_once('=')
                .ok_or_else(|| invalid_argument("Argument format not recognized"))?;
            let value = value.trim().trim_matches('"');
            let grantee = grantee_of(&req.kc, kind.trim(), value)?;
            out.push(Grant {
                grantee,
                permission: perm.into(),
            });
        }
    }
    Ok(any.then_some(out))
}

/// An `AccessControlPolicy` body's grants.
fn body_grants(kc: &Keycard, n: &XmlNode) -> Result<Vec<Grant>, ServiceError> {
    let list = n.child("AccessControlList").ok_or_else(malformed_xml)?;
    let mut out = Vec::new();
    for g in list.children_named("Grant") {
        let permission = g
            .child_text("Permission")
            .map(str::trim)
            .filter(|p| cfg::PERMISSIONS.contains(p))
            .ok_or_else(malformed_xml)?;
        let ge = g.child("Grantee").ok_or_else(malformed_xml)?;
        let xsi_type = ge
            .attrs
            .iter()
            .find(|(k, _)| k.ends_with(":type") || k == "type")
            .map(|(_, v)| v.as_str());
        let grantee = match xsi_type {
            Some("CanonicalUser") => {
                grantee_of(kc, "id", ge.child_text("ID").unwrap_or("").trim())?
            }
            Some("Group") => grantee_of(kc, "uri", ge.child_text("URI").unwrap_or("").trim())?,
            Some("AmazonCustomerByEmail") => return Err(unresolvable_email()),
            _ => return Err(malformed_xml()),
        };
        out.push(Grant {
            grantee,
            permission: permission.into(),
        });
    }
    Ok(out)
}

/// What an ACL request asked for.
struct AclAsked {
    canned: Option<String>,
    grants: Vec<Grant>,
}

/// The canned ACL or grant headers of a request, if any.
fn header_acl(req: &Req) -> Result<Option<AclAsked>, ServiceError> {
    let canned = req.header("x-amz-acl").map(|a| a.trim().to_string());
    let grants = header_grants(req)?;
    match (canned, grants) {
        (Some(_), Some(_)) => Err(ServiceError::InvalidRequest(
            "Specifying both Canned ACLs and Header Grants is not allowed".into(),
        )),
        (Some(c), None) if !CANNED_ACLS.contains(&c.as_str()) => {
            Err(invalid_argument("Invalid canned ACL"))
        }
        (Some(c), None) => Ok(Some(AclAsked {
            grants: canned_grants(&c),
            canned: Some(c),
        })),
        (None, Some(g)) => Ok(Some(AclAsked {
            canned: None,
            grants: g,
        })),
        (None, None) => Ok(None),
    }
}

/// Grants that do more than the owner's own FULL_CONTROL.
fn others(grants: &[Grant], owner: &str) -> Vec<Grant> {
    grants
        .iter()
        .filter(|g| !matches!(&g.grantee, Grantee::Account { account, .. } if account == owner))
        .cloned()
        .collect()
}

/// Refuse an ACL the bucket's settings don't allow: any but the owner's
/// own with ACLs disabled (`bucket-owner-full-control` for objects,
/// `private` for the bucket), a public one under BlockPublicAcls.
fn check_acl(bucket: &Bucket, asked: &AclAsked, object: bool) -> Result<Vec<Grant>, ServiceError> {
    let grants = others(&asked.grants, &bucket.account);
    if bucket.settings.acls_disabled() {
        let owner_only = if object {
            "bucket-owner-full-control"
        } else {
            "private"
        };
        let ok = match &asked.canned {
            Some(c) => c == owner_only,
            None => grants.is_empty(),
        };
        if !ok {
            return Err(acls_not_supported());
        }
    }
    if bucket.settings.pab().block_public_acls && grants.iter().any(cfg::grant_is_public) {
        return Err(access_denied());
    }
    Ok(grants)
}

/// The ACL an object write (`PutObject`, `CopyObject`,
/// `CreateMultipartUpload`) asks for, checked; asking for one also needs
/// `s3:PutObjectAcl`.
pub(crate) fn object_write_acl(
    req: &mut Req,
    bucket: &Bucket,
    key: &str,
) -> Result<Vec<Grant>, ServiceError> {
    let Some(asked) = header_acl(req)? else {
        return Ok(Vec::new());
    };
    authorize_on(req, "s3:PutObjectAcl", &bucket.name, Some(key))?;
    check_acl(bucket, &asked, true)
}

/// The settings CreateBucket's `x-amz-object-ownership` and ACL headers
/// give the new bucket; each needs its own permission too.
pub(crate) fn create_settings(req: &mut Req, b: &str) -> Result<BucketSettings, ServiceError> {
    let arn = format!("arn:aws:s3:::{b}");
    let ownership = req
        .header("x-amz-object-ownership")
        .map(|o| o.trim().to_string());
    if let Some(o) = &ownership {
        if !cfg::OWNERSHIP_VALUES.contains(&o.as_str()) {
            return Err(invalid_argument(&format!(
                "Invalid x-amz-object-ownership header: {o}"
            )));
        }
        req.authorize(
            "s3:PutBucketOwnershipControls",
            &arn,
            None,
            ResourcePolicy::None,
        )?;
    }
    let mut settings = BucketSettings::new_bucket(ownership.as_deref());
    let Some(asked) = header_acl(req)? else {
        return Ok(settings);
    };
    req.authorize("s3:PutBucketAcl", &arn, None, ResourcePolicy::None)?;
    let account = acting_account(req);
    let grants = others(&asked.grants, &account);
    if settings.acls_disabled()
        && (asked.canned.as_deref().is_none_or(|c| c != "private") || !grants.is_empty())
    {
        return Err(bucket_acl_with_ownership());
    }
    if grants.iter().any(cfg::grant_is_public) {
        return Err(modeled(
            "InvalidBucketAclWithBlockPublicAccessError",
            400,
            "Bucket cannot have public ACLs set with BlockPublicAccess enabled",
        ));
    }
    settings.acl = (!grants.is_empty()).then_some(grants);
    Ok(settings)
}

/// The grants a PutBucketAcl / PutObjectAcl asks for: headers or body.
async fn asked_acl(req: &mut Req) -> Result<AclAsked, ServiceError> {
    if let Some(a) = header_acl(req)? {
        return Ok(a);
    }
    let n = body_xml(req, "AccessControlPolicy").await?;
    Ok(AclAsked {
        canned: None,
        grants: body_grants(&req.kc, &n)?,
    })
}

async fn put_bucket_acl(req: &mut Req, b: &str) -> R {
    let bucket = on_bucket(req, "s3:PutBucketAcl", b)?;
    let asked = asked_acl(req).await?;
    let grants = check_acl(&bucket, &asked, false)?;
    req.kc
        .update_bucket_settings(b, |s| s.acl = (!grants.is_empty()).then(|| grants.clone()))
        .await?;
    Ok(empty(req, 200))
}

/// An object's ACL. keycard keeps ACLs on the current version only: a
/// request naming a version is answered `NotImplemented` (documented).
async fn put_object_acl(req: &mut Req, b: &str, k: &str, q: &Query) -> R {
    if q.has("versionId") {
        return Err(ServiceError::NotImplemented(
            "keycard does not set ACLs on object versions other than through the current object."
                .into(),
        ));
    }
    add_bucket_resource(req, b);
    add_object_resource(req, b, k);
    let bucket = authorize_on(req, "s3:PutObjectAcl", b, Some(k))?;
    existing_object(req, &bucket, k)?;
    let asked = asked_acl(req).await?;
    let grants = check_acl(&bucket, &asked, true)?;
    req.kc.put_object_acl(b, k, grants).await?;
    Ok(empty(req, 200))
}

fn grant_xml(w: &mut XmlWriter, g: &Grant) {
    w.start("Grant");
    match &g.grantee {
        Grantee::Account { id, account } => {
            w.start_attrs(
                "Grantee",
                &[("xmlns:xsi", XSI), ("xsi:type", "CanonicalUser")],
            )
            .elem("ID", id)
            .elem("DisplayName", account);
        }
        Grantee::Group(uri) => {
            w.start_attrs("Grantee", &[("xmlns:xsi", XSI), ("xsi:type", "Group")])
                .elem("URI", uri);
        }
    }
    w.end("Grantee")
        .elem("Permission", &g.permission)
        .end("Grant");
}

async fn get_acl(req: &mut Req, b: &str, key: Option<(&str, &Query)>) -> R {
    add_bucket_resource(req, b);
    let (bucket, grants) = match key {
        None => {
            let bucket = authorize_on(req, "s3:GetBucketAcl", b, None)?;
            let g = bucket.settings.acl.clone().unwrap_or_default();
            (bucket, g)
        }
        Some((k, q)) => {
            add_object_resource(req, b, k);
            let version = versions::requested_version(req, q)?;
            let bucket = authorize_on(req, versions::action(req), b, Some(k))?;
            let meta = versions::object_for_read(req, &bucket, k, version.as_deref())?;
            (bucket, meta.acl)
        }
    };
    let owner = Grant {
        grantee: Grantee::Account {
            id: canonical_id(&bucket.account),
            account: bucket.account.clone(),
        },
        permission: "FULL_CONTROL".into(),
    };
    let mut w = XmlWriter::new();
    w.start_ns("AccessControlPolicy", S3_XMLNS);
    owner_xml(&mut w, "Owner", &bucket.account);
    w.start("AccessControlList");
    for g in std::iter::once(&owner).chain(grants.iter()) {
        grant_xml(&mut w, g);
    }
    w.end("AccessControlList").end("AccessControlPolicy");
    Ok(xml(req, w))
}

/// The resource policy a request on `bucket` is decided with: the bucket
/// policy together with the ACL grants in force, as Block Public Access
/// leaves them (see [`cfg::effective_policy`]).
pub(crate) fn effective_policy(
    req: &Req,
    bucket: &Bucket,
    key: Option<&str>,
) -> Option<Option<PolicyDoc>> {
    let object_acl = match key {
        Some(k) if !bucket.settings.acls_disabled() => req.kc.object_acl(&bucket.name, k),
        _ => Vec::new(),
    };
    let object = key.map(|k| (k, object_acl.as_slice()));
    cfg::effective_policy(bucket, object, &req.caller.account)
}

/// [`effective_policy`]'s answer as the check's resource policy.
pub(crate) fn resource_policy<'a>(
    bucket: &'a Bucket,
    effective: &'a Option<Option<PolicyDoc>>,
) -> ResourcePolicy<'a> {
    let doc = match effective {
        None => bucket.policy.as_ref(),
        Some(d) => d.as_ref(),
    };
    doc.map_or(ResourcePolicy::None, ResourcePolicy::Resource)
}

// ------------------------------------ website, logging, notification

/// The configurations keycard stores and returns but does not act on.
#[derive(Clone, Copy)]
enum Stored {
    Website,
    Logging,
    Notification,
}

impl Stored {
    fn root(self) -> &'static str {
        match self {
            Stored::Website => "WebsiteConfiguration",
            Stored::Logging => "BucketLoggingStatus",
            Stored::Notification => "NotificationConfiguration",
        }
    }

    fn actions(self) -> (&'static str, &'static str) {
        match self {
            Stored::Website => ("s3:GetBucketWebsite", "s3:PutBucketWebsite"),
            Stored::Logging => ("s3:GetBucketLogging", "s3:PutBucketLogging"),
            Stored::Notification => ("s3:GetBucketNotification", "s3:PutBucketNotification"),
        }
    }

    fn get(self, s: &BucketSettings) -> Option<&String> {
        match self {
            Stored::Website => s.website.as_ref(),
            Stored::Logging => s.logging.as_ref(),
            Stored::Notification => s.notification.as_ref(),
        }
    }

    fn set(self, s: &mut BucketSettings, v: Option<String>) {
        match self {
            Stored::Website => s.website = v,
            Stored::Logging => s.logging = v,
            Stored::Notification => s.notification = v,
        }
    }
}

/// Re-serialize a parsed element (namespace prefixes dropped; `xsi:type`
/// kept, as grantees need it).
fn node_xml(w: &mut XmlWriter, n: &XmlNode) {
    let xsi: Vec<(&str, &str)> = n
        .attrs
        .iter()
        .filter(|(k, _)| k.ends_with(":type"))
        .map(|(_, v)| v.as_str())
        .flat_map(|v| [("xmlns:xsi", XSI), ("xsi:type", v)])
        .collect();
    let name = n.local_name();
    if xsi.is_empty() {
        w.start(name);
    } else {
        w.start_attrs(name, &xsi);
    }
    if n.children.is_empty() {
        w.text(n.text.trim());
    }
    for c in &n.children {
        node_xml(w, c);
    }
    w.end(name);
}

fn validate_website(n: &XmlNode) -> Result<(), ServiceError> {
    let redirect_all = n.child("RedirectAllRequestsTo");
    if let Some(r) = redirect_all {
        if n.children.len() > 1 {
            return Err(invalid_argument(
                "RedirectAllRequestsTo cannot be provided in conjunction with other Routing/Redirect configurations.",
            ));
        }
        if r.child_text("HostName").is_none_or(|h| h.trim().is_empty()) {
            return Err(malformed_xml());
        }
        return Ok(());
    }
    let suffix = n
        .child("IndexDocument")
        .and_then(|i| i.child_text("Suffix"))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            invalid_argument(
                "A value for IndexDocument Suffix must be provided if RedirectAllRequestsTo is empty",
            )
        })?;
    if suffix.contains('/') {
        return Err(invalid_argument(
            "The IndexDocument Suffix is not well formed",
        ));
    }
    if let Some(e) = n.child("ErrorDocument")
        && e.child_text("Key").is_none_or(|k| k.trim().is_empty())
    {
        return Err(malformed_xml());
    }
    Ok(())
}

fn validate_logging(kc: &Keycard, owner: &str, n: &XmlNode) -> Result<(), ServiceError> {
    let Some(le) = n.child("LoggingEnabled") else {
        return Ok(());
    };
    let target = le
        .child_text("TargetBucket")
        .map(str::trim)
        .ok_or_else(malformed_xml)?;
    le.child_text("TargetPrefix").ok_or_else(malformed_xml)?;
    match kc.bucket(target) {
        Ok(t) if t.account == owner => Ok(()),
        Ok(_) => Err(modeled(
            "InvalidTargetBucketForLogging",
            400,
            "The owner for the bucket to be logged and the target bucket must be the same.",
        )),
        Err(_) => Err(modeled(
            "InvalidTargetBucketForLogging",
            400,
            "The target bucket for logging does not exist",
        )),
    }
}

/// Notification destinations are not contacted (keycard has no SNS, SQS
/// or Lambda): each configuration needs a destination ARN of the right
/// service and `s3:` events.
fn validate_notification(n: &XmlNode) -> Result<(), ServiceError> {
    for (tag, arn_tag, service) in [
        ("TopicConfiguration", "Topic", "sns"),
        ("QueueConfiguration", "Queue", "sqs"),
        ("CloudFunctionConfiguration", "CloudFunction", "lambda"),
    ] {
        for c in n.children_named(tag) {
            let arn = c.child_text(arn_tag).map(str::trim).unwrap_or("");
            let events = texts(c, "Event");
            let ok_arn = arn.starts_with(&format!("arn:aws:{service}:"));
            if !ok_arn || events.is_empty() || events.iter().any(|e| !e.starts_with("s3:")) {
                return Err(invalid_argument(
                    "Unable to validate the following destination configurations",
                ));
            }
        }
    }
    if n.children.iter().any(|c| {
        ![
            "TopicConfiguration",
            "QueueConfiguration",
            "CloudFunctionConfiguration",
            "EventBridgeConfiguration",
        ]
        .contains(&c.local_name())
    }) {
        return Err(malformed_xml());
    }
    Ok(())
}

async fn put_stored(req: &mut Req, b: &str, which: Stored) -> R {
    let bucket = on_bucket(req, which.actions().1, b)?;
    let n = body_xml(req, which.root()).await?;
    match which {
        Stored::Website => validate_website(&n)?,
        Stored::Logging => validate_logging(&req.kc, &bucket.account, &n)?,
        Stored::Notification => validate_notification(&n)?,
    }
    let mut w = XmlWriter::fragment();
    for c in &n.children {
        node_xml(&mut w, c);
    }
    let inner = w.finish();
    let value = (!inner.is_empty() || matches!(which, Stored::Website)).then_some(inner);
    req.kc
        .update_bucket_settings(b, |s| which.set(s, value.clone()))
        .await?;
    Ok(empty(req, 200))
}

async fn get_stored(req: &mut Req, b: &str, which: Stored) -> R {
    let bucket = on_bucket(req, which.actions().0, b)?;
    let inner = which.get(&bucket.settings).cloned();
    if inner.is_none() && matches!(which, Stored::Website) {
        return Err(modeled(
            "NoSuchWebsiteConfiguration",
            404,
            "The specified bucket does not have a website configuration",
        ));
    }
    let mut w = XmlWriter::new();
    w.start_ns(which.root(), S3_XMLNS)
        .raw(inner.as_deref().unwrap_or(""))
        .end(which.root());
    Ok(xml(req, w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cors_rules_match_origin_method_and_headers() {
        let r = CorsRule {
            methods: vec!["GET".into(), "PUT".into()],
            origins: vec!["https://*.example.com".into()],
            headers: vec!["x-amz-*".into(), "Content-Type".into()],
            ..Default::default()
        };
        let rules = [r];
        let h = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(matching_rule(&rules, "https://app.example.com", "GET", &[]).is_some());
        assert!(matching_rule(&rules, "https://app.example.org", "GET", &[]).is_none());
        assert!(matching_rule(&rules, "https://app.example.com", "DELETE", &[]).is_none());
        let ok = h(&["content-type", "x-amz-meta-a"]);
        assert!(matching_rule(&rules, "https://a.example.com", "PUT", &ok).is_some());
        let bad = h(&["authorization"]);
        assert!(matching_rule(&rules, "https://a.example.com", "PUT", &bad).is_none());
    }

    #[test]
    fn operation_names_follow_the_model() {
        assert_eq!(
            aws_name("GetBucketPublicAccessBlock".into()),
            "GetPublicAccessBlock"
        );
        assert_eq!(aws_name("GetBucketCors".into()), "GetBucketCors");
    }
}
