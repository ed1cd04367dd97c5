//! The S3 REST-XML API: route (path-style or virtual-hosted), authorize in
//! the bucket owner's account with the bucket policy, execute, render.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use keycard_proto::chunked::{
    ChunkDecoder, ChunkMode, DecodedBody, body_framing, decode_aws_chunked, decode_body,
    length_mismatch,
};
use keycard_proto::sigv4;
use keycard_proto::xml::{S3_XMLNS, XmlNode, XmlWriter, parse_xml};
use keycard_services::ServiceError;
use keycard_services::auth::{Check, ResourcePolicy};
use keycard_services::model::{Bucket, ObjectMeta};
use keycard_services::object_cache::MAX_CACHED_OBJECT;
use keycard_services::s3 as svc;
use keycard_services::s3_versions as svc_versions;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde_json::{Map, Value};

use crate::Req;

pub(crate) mod versions;
pub(crate) use versions::names_version;

type R = Result<Response<Body>, ServiceError>;

/// Most keys one DeleteObjects request may name.
const MAX_DELETE_KEYS: usize = 1000;
/// Most user metadata (names and values) an object may carry.
const MAX_METADATA: usize = 2048;

/// What `encoding-type=url` leaves unescaped.
const URL_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Query parameters that select an S3 sub-resource (anything else is a
/// plain parameter: list options, presign fields, response overrides …).
const SUBRESOURCES: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "attributes",
    "cors",
    "delete",
    "encryption",
    "intelligent-tiering",
    "inventory",
    "legal-hold",
    "lifecycle",
    "location",
    "logging",
    "metadataTable",
    "metrics",
    "notification",
    "object-lock",
    "ownershipControls",
    "policy",
    "policyStatus",
    "publicAccessBlock",
    "renameObject",
    "replication",
    "requestPayment",
    "restore",
    "retention",
    "select",
    "session",
    "tagging",
    "torrent",
    "uploads",
    "versioning",
    "versions",
    "website",
];

pub(crate) const CANNED_ACLS: &[&str] = &[
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
    "log-delivery-write",
];

/// Object headers stored with the object and returned on GET/HEAD.
const STORED_HEADERS: &[&str] = &[
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "expires",
    "x-amz-website-redirect-location",
];

// ------------------------------------------------------------------ query

/// The decoded query string, in order; keys without `=` have empty values.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Query {
        Query(
            form_urlencoded::parse(q.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    pub(crate) fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn has(&self, k: &str) -> bool {
        self.0.iter().any(|(key, _)| key == k)
    }

    /// The sub-resource the request names, if any.
    fn subresource(&self) -> Option<&str> {
        self.0
            .iter()
            .map(|(k, _)| k.as_str())
            .find(|k| SUBRESOURCES.contains(k))
    }
}

// ---------------------------------------------------------------- routing

/// Extra virtual-host base domains (`KEYCARD_S3_DOMAIN`, comma-separated),
/// e.g. `s3.example.test` makes `bucket.s3.example.test` virtual-hosted.
fn configured_bases() -> &'static [String] {
    static BASES: OnceLock<Vec<String>> = OnceLock::new();
    BASES.get_or_init(|| {
        std::env::var("KEYCARD_S3_DOMAIN")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().trim_matches('.').to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect()
    })
}

/// `127.0.0.1.nip.io`, `s3.10.0.0.1.sslip.io`, `127-0-0-1.nip.io`: wildcard
/// DNS names that resolve to the IP they spell.
fn is_ip_dns_name(rest: &str) -> bool {
    let Some(ip_part) = rest
        .strip_suffix(".nip.io")
        .or_else(|| rest.strip_suffix(".sslip.io"))
    else {
        return false;
    };
    let labels: Vec<&str> = ip_part.split('.').collect();
    if let Some(last4) = labels.len().checked_sub(4).and_then(|s| labels.get(s..)) {
        let tail = last4.join(".");
        if tail.parse::<std::net::Ipv4Addr>().is_ok() {
            return true;
        }
    }
    labels
        .last()
        .is_some_and(|l| l.replace('-', ".").parse::<std::net::Ipv4Addr>().is_ok())
}

/// The bucket a Host header names, if it is a virtual-hosted style host.
fn virtual_bucket(host: &str) -> Option<String> {
    for base in configured_bases() {
        if let Some(b) = host
            .strip_suffix(base.as_str())
            .and_then(|h| h.strip_suffix('.'))
            && svc::validate_bucket_name(b).is_ok()
        {
            return Some(b.to_string());
        }
    }
    let (first, rest) = host.split_once('.')?;
    svc::validate_bucket_name(first).ok()?;
    let local = rest == "localhost" || rest.ends_with(".localhost");
    (local || is_ip_dns_name(rest)).then(|| first.to_string())
}

/// The Host, lower-cased, without the port.
pub(crate) fn host_of(parts: &Parts) -> String {
    let raw = parts
        .headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.as_str().to_string()))
        .unwrap_or_default();
    let raw = raw.trim().to_ascii_lowercase();
    if raw.starts_with('[') {
        return raw;
    }
    match raw.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h.to_string(),
        _ => raw,
    }
}

fn decode_path(s: &str) -> Result<String, ServiceError> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| ServiceError::InvalidArgument("Couldn't parse the specified URI.".into()))
}

/// (bucket, key) from the Host and path.
pub(crate) fn route(
    parts: &Parts,
    host: &str,
) -> Result<(Option<String>, Option<String>), ServiceError> {
    let path = parts.uri.path();
    let path = path.strip_prefix('/').unwrap_or(path);
    if let Some(b) = virtual_bucket(host) {
        let key = (!path.is_empty()).then(|| decode_path(path)).transpose()?;
        return Ok((Some(b), key));
    }
    if path.is_empty() {
        return Ok((None, None));
    }
    let (b, k) = match path.split_once('/') {
        Some((b, k)) => (b, (!k.is_empty()).then_some(k)),
        None => (path, None),
    };
    let bucket = decode_path(b)?;
    let key = k.map(decode_path).transpose()?;
    Ok((Some(bucket), key))
}

// -------------------------------------------------------------- responses

pub(crate) fn put_header(r: &mut Response<Body>, name: &str, value: &str) {
    let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
        return;
    };
    if let Ok(v) = HeaderValue::from_bytes(value.as_bytes()) {
        r.headers_mut().append(name, v);
    }
}

pub(crate) fn response(req: &Req, status: u16, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    put_header(&mut r, "x-amz-request-id", &req.request_id);
    put_header(&mut r, "x-amz-id-2", &req.request_id);
    r
}

pub(crate) fn empty(req: &Req, status: u16) -> Response<Body> {
    response(req, status, Body::empty())
}

pub(crate) fn xml(req: &Req, w: XmlWriter) -> Response<Body> {
    let mut r = response(req, 200, Body::from(w.finish()));
    put_header(&mut r, "content-type", "application/xml");
    r
}

fn fmt_ms(ms: i64, f: &[time::format_description::BorrowedFormatItem<'_>]) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(f).unwrap_or_default()
}

/// `2009-10-12T17:50:30.000Z`, as S3 lists times.
fn iso_ms(ms: i64) -> String {
    fmt_ms(
        ms,
        time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ),
    )
}

/// RFC 1123 (`Last-Modified`).
fn http_date(ms: i64) -> String {
    fmt_ms(
        ms,
        time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        ),
    )
}

/// The canonical user id S3 shows for an account.
pub(crate) fn canonical_id(account: &str) -> String {
    keycard_proto::sha256_hex(format!("keycard-canonical-user:{account}").as_bytes())
}

pub(crate) fn owner_xml(w: &mut XmlWriter, tag: &str, account: &str) {
    w.start(tag)
        .elem("ID", &canonical_id(account))
        .elem("DisplayName", account)
        .end(tag);
}

pub(crate) fn bucket_arn(bucket: &str) -> String {
    format!("arn:aws:s3:::{bucket}")
}

pub(crate) fn object_arn(bucket: &str, key: &str) -> String {
    format!("arn:aws:s3:::{bucket}/{key}")
}

pub(crate) fn malformed_xml() -> ServiceError {
    ServiceError::MalformedXML(
        "The XML you provided was not well-formed or did not validate against our published schema"
            .into(),
    )
}

pub(crate) fn access_denied() -> ServiceError {
    ServiceError::AccessDenied("Access Denied".into())
}

// ---------------------------------------------------------- authorization

/// The account acting: the caller's, or (auth off, unsigned) the default.
pub(crate) fn acting_account(req: &Req) -> String {
    if req.caller.account.is_empty() && !req.enforce {
        keycard_services::DEFAULT_ACCOUNT.to_string()
    } else {
        req.caller.account.clone()
    }
}

/// Authorize `action` on the bucket (or an object in it) in the bucket
/// owner's account with the bucket policy. A missing bucket is reported as
/// such only to callers who would have been allowed.
pub(crate) fn authorize_on(
    req: &mut Req,
    action: &str,
    bucket: &str,
    key: Option<&str>,
) -> Result<Arc<Bucket>, ServiceError> {
    authorize_in(req, action, bucket, key, "x-amz-expected-bucket-owner")
}

/// [`authorize_on`], checking the expected-owner header `owner_header`
/// (`x-amz-source-expected-bucket-owner` for a copy source).
fn authorize_in(
    req: &mut Req,
    action: &str,
    bucket: &str,
    key: Option<&str>,
    owner_header: &str,
) -> Result<Arc<Bucket>, ServiceError> {
    let arn = match key {
        Some(k) => object_arn(bucket, k),
        None => bucket_arn(bucket),
    };
    match req.kc.bucket(bucket).ok() {
        Some(b) => {
            let effective = crate::s3_settings::effective_policy(req, &b, key);
            let rp = crate::s3_settings::resource_policy(&b, &effective);
            let mut check = Check::new(action, arn)
                .account(b.account.clone())
                .key("s3:ResourceAccount", b.account.clone())
                .key("aws:ResourceAccount", b.account.clone())
                .policy(rp);
            check = match key {
                // The object's own tags, when it exists.
                Some(_) if action == "s3:PutObject" => check,
                Some(k) => req
                    .kc
                    .object_tags(bucket, k)
                    .into_iter()
                    .fold(check, |c, (tk, tv)| {
                        c.key(format!("s3:ExistingObjectTag/{tk}"), tv)
                    }),
                None => b.tags.iter().fold(check, |c, (tk, tv)| {
                    c.key(format!("aws:ResourceTag/{tk}"), tv.clone())
                }),
            };
            match req.check(check) {
                Ok(()) => match req.header(owner_header) {
                    Some(o) if o.trim() != b.account => Err(access_denied()),
                    _ => Ok(b),
                },
                // S3 explains a denial only to callers of the bucket's own
                // account; others (and anonymous callers) get the bare text.
                Err(ServiceError::AccessDenied(_)) if req.caller.account != b.account => {
                    Err(access_denied())
                }
                Err(e) => Err(e),
            }
        }
        None => {
            req.authorize(action, &arn, None, ResourcePolicy::None)?;
            Err(ServiceError::NoSuchBucket(
                "The specified bucket does not exist".into(),
            ))
        }
    }
}

/// Whether the caller may list the bucket (decides NoSuchKey vs
/// AccessDenied for a missing key), without touching the audit record.
fn may_list(req: &Req, b: &Bucket) -> bool {
    let effective = crate::s3_settings::effective_policy(req, b, None);
    let rp = crate::s3_settings::resource_policy(b, &effective);
    req.would_allow(
        &Check::new("s3:ListBucket", bucket_arn(&b.name))
            .account(b.account.clone())
            .key("s3:ResourceAccount", b.account.clone())
            .key("aws:ResourceAccount", b.account.clone())
            .policy(rp),
    )
}

pub(crate) fn add_bucket_resource(req: &mut Req, bucket: &str) {
    req.audit
        .resources
        .push((bucket_arn(bucket), "AWS::S3::Bucket".into()));
}

pub(crate) fn add_object_resource(req: &mut Req, bucket: &str, key: &str) {
    req.audit
        .resources
        .push((object_arn(bucket, key), "AWS::S3::Object".into()));
}

/// Request context keys S3 adds from the headers and signature.
fn add_request_context(req: &mut Req) {
    if let Some(a) = &req.auth {
        let presigned = a.is_presigned();
        let age_ms = (time::OffsetDateTime::now_utc() - a.timestamp)
            .whole_milliseconds()
            .max(0);
        req.request_key("s3:signatureversion", "AWS4-HMAC-SHA256");
        req.request_key(
            "s3:authType",
            if presigned {
                "REST-QUERY-STRING"
            } else {
                "REST-HEADER"
            },
        );
        req.request_key("s3:signatureAge", age_ms.to_string());
    }
    for h in [
        "x-amz-content-sha256",
        "x-amz-acl",
        "x-amz-server-side-encryption",
        "x-amz-server-side-encryption-aws-kms-key-id",
        "x-amz-storage-class",
        "x-amz-metadata-directive",
        "x-amz-copy-source",
        "x-amz-grant-full-control",
        "x-amz-grant-read",
        "x-amz-grant-write",
        "x-amz-object-ownership",
    ] {
        if let Some(v) = req.header(h).map(str::to_string) {
            req.request_key(&format!("s3:{h}"), v);
        }
    }
}

// -------------------------------------------------------------- dispatch

/// Whether the request names a bucket, and a key in it, without decoding
/// them (a bad encoding is the handler's error to report).
fn shape(parts: &Parts, host: &str) -> (bool, bool) {
    let path = parts.uri.path();
    let path = path.strip_prefix('/').unwrap_or(path);
    if virtual_bucket(host).is_some() {
        return (true, !path.is_empty());
    }
    match path.split_once('/') {
        _ if path.is_empty() => (false, false),
        Some((_, k)) => (true, !k.is_empty()),
        None => (true, false),
    }
}

/// The operation an S3 request is: its row's name, or for a sub-resource
/// keycard doesn't serve, the name AWS gives it (`GetBucketCors`).
pub(crate) fn op_name(parts: &Parts) -> String {
    let host = host_of(parts);
    let q = Query::parse(parts.uri.query());
    let method = parts.method.as_str();
    let sub = q.subresource();
    let copy = parts.headers.contains_key("x-amz-copy-source");
    let name = match shape(parts, &host) {
        (false, _) => match method {
            "GET" => "ListBuckets",
            _ => "Unknown",
        },
        (true, false) => match (method, sub) {
            ("GET", None) if q.get("list-type") == Some("2") => "ListObjectsV2",
            ("GET", None) => "ListObjects",
            ("GET", Some("location")) => "GetBucketLocation",
            ("GET", Some("policy")) => "GetBucketPolicy",
            ("GET", Some("uploads")) => "ListMultipartUploads",
            ("GET", Some("versions")) => "ListObjectVersions",
            ("GET", Some("acl")) => "GetBucketAcl",
            ("GET", Some("versioning")) => "GetBucketVersioning",
            ("GET", Some("lifecycle")) => "GetBucketLifecycleConfiguration",
            ("PUT", Some("lifecycle")) => "PutBucketLifecycleConfiguration",
            ("GET", Some("encryption")) => "GetBucketEncryption",
            ("GET", Some("requestPayment")) => "GetBucketRequestPayment",
            ("HEAD", _) => "HeadBucket",
            ("PUT", None) => "CreateBucket",
            ("PUT", Some("policy")) => "PutBucketPolicy",
            ("DELETE", None) => "DeleteBucket",
            ("DELETE", Some("policy")) => "DeleteBucketPolicy",
            ("POST", Some("delete")) => "DeleteObjects",
            ("POST", None) => "PostObject",
            (m, Some(s)) => return sub_name(m, "Bucket", s),
            _ => "Unknown",
        },
        (true, true) => match (method, sub) {
            ("GET", None) if q.has("uploadId") => "ListParts",
            ("GET", None) => "GetObject",
            ("HEAD", None) => "HeadObject",
            ("GET", Some("acl")) => "GetObjectAcl",
            ("GET", Some("tagging")) => "GetObjectTagging",
            ("PUT", None) if q.has("uploadId") || q.has("partNumber") => {
                if copy {
                    "UploadPartCopy"
                } else {
                    "UploadPart"
                }
            }
            ("PUT", None) if copy => "CopyObject",
            ("PUT", None) => "PutObject",
            ("POST", Some("uploads")) => "CreateMultipartUpload",
            ("POST", None) if q.has("uploadId") => "CompleteMultipartUpload",
            ("DELETE", None) if q.has("uploadId") => "AbortMultipartUpload",
            ("DELETE", None) => "DeleteObject",
            (m, Some(s)) => return sub_name(m, "Object", s),
            _ => "Unknown",
        },
    };
    name.to_string()
}

/// AWS's name for a sub-resource operation: `GET ?cors` on a bucket is
/// `GetBucketCors`.
fn sub_name(method: &str, level: &str, sub: &str) -> String {
    let mut s = sub.chars();
    let sub_name = match s.next() {
        Some(c) => c.to_ascii_uppercase().to_string() + s.as_str(),
        None => String::new(),
    };
    let verb = match method {
        "GET" | "HEAD" => "Get",
        "PUT" => "Put",
        "DELETE" => "Delete",
        _ => "Post",
    };
    crate::s3_settings::aws_name(format!("{verb}{level}{sub_name}"))
}

pub async fn handle(req: &mut Req) -> R {
    let host = host_of(&req.parts);
    let q = Query::parse(req.parts.uri.query());
    let (bucket, key) = route(&req.parts, &host)?;
    add_request_context(req);

    let mut params = Map::new();
    if let Some(b) = &bucket {
        params.insert("bucketName".into(), Value::String(b.clone()));
    }
    if let Some(k) = &key {
        params.insert("key".into(), Value::String(k.clone()));
    }
    let raw_host = req.header("host").unwrap_or(&host).to_string();
    params.insert("Host".into(), Value::String(raw_host));
    for (k, v) in &q.0 {
        if !k.to_ascii_lowercase().starts_with("x-amz-") {
            params.insert(k.clone(), Value::String(v.clone()));
        }
    }
    req.audit.params = Value::Object(params);

    let b = bucket.as_deref().unwrap_or("");
    let k = key.as_deref().unwrap_or("");
    if let Some(r) = crate::s3_settings::handle(req, b, k, &q).await {
        return r;
    }
    match req.op.name {
        "ListBuckets" => list_buckets(req, &q).await,
        "ListObjectsV2" => list_objects(req, b, &q, true).await,
        "ListObjects" => list_objects(req, b, &q, false).await,
        "GetBucketLocation" => get_bucket_location(req, b).await,
        "GetBucketPolicy" => get_bucket_policy(req, b).await,
        "ListMultipartUploads" => list_uploads(req, b, &q).await,
        "ListObjectVersions" => versions::list_versions(req, b, &q).await,
        "GetBucketVersioning" => versions::get_bucket_versioning(req, b).await,
        "PutBucketVersioning" => versions::put_bucket_versioning(req, b).await,
        "GetBucketLifecycleConfiguration" => versions::get_lifecycle(req, b).await,
        "PutBucketLifecycleConfiguration" => versions::put_lifecycle(req, b).await,
        "DeleteBucketLifecycle" => versions::delete_lifecycle(req, b).await,
        "GetObjectAttributes" => versions::get_object_attributes(req, b, k, &q).await,
        "GetBucketRequestPayment" => get_request_payment(req, b).await,
        "HeadBucket" => head_bucket(req, b).await,
        "CreateBucket" => create_bucket(req, b, &host).await,
        "PutBucketPolicy" => put_bucket_policy(req, b).await,
        "DeleteBucket" => delete_bucket(req, b).await,
        "DeleteBucketPolicy" => delete_bucket_policy(req, b).await,
        "DeleteObjects" => delete_objects(req, b).await,
        "ListParts" => list_parts(req, b, k, &q).await,
        "GetObject" => get_object(req, b, k, &q, false).await,
        "HeadObject" => get_object(req, b, k, &q, true).await,
        "GetObjectTagging" => get_object_tagging(req, b, k, &q).await,
        "PutObjectTagging" => put_object_tagging(req, b, k, &q).await,
        "DeleteObjectTagging" => delete_object_tagging(req, b, k, &q).await,
        "GetBucketTagging" => get_bucket_tagging(req, b).await,
        "PutBucketTagging" => put_bucket_tagging(req, b).await,
        "DeleteBucketTagging" => delete_bucket_tagging(req, b).await,
        "UploadPartCopy" => upload_part_copy(req, b, k, &q).await,
        "UploadPart" => upload_part(req, b, k, &q).await,
        "CopyObject" => copy_object(req, b, k).await,
        "PutObject" => put_object(req, b, k).await,
        "CreateMultipartUpload" => create_multipart(req, b, k).await,
        "CompleteMultipartUpload" => complete_multipart(req, b, k, &q, &host).await,
        "AbortMultipartUpload" => abort_multipart(req, b, k, &q).await,
        "DeleteObject" => delete_object(req, b, k, &q).await,
        // A row without an arm: the table and this match disagree.
        other => Err(ServiceError::Internal(format!(
            "operation {other} has a row but no handler"
        ))),
    }
}

// ------------------------------------------------------------ body helpers

/// The payload, aws-chunked decoded (signatures verified) as needed.
pub(crate) async fn decoded_body(req: &mut Req) -> Result<DecodedBody, ServiceError> {
    req.load_body().await?;
    let streaming = matches!(
        sigv4::declared_payload_hash(&req.parts),
        Some(sigv4::STREAMING_PAYLOAD | sigv4::STREAMING_PAYLOAD_TRAILER)
    );
    if streaming && !req.enforce && req.verified.is_none() {
        // Auth off (moto compat) and the signature didn't verify: decode
        // the framing only.
        return decode_aws_chunked(&req.body, ChunkMode::Unsigned).map_err(crate::auth_error);
    }
    decode_body(
        &req.parts,
        req.body.clone(),
        req.auth.as_ref(),
        req.verified.as_ref(),
    )
    .map_err(crate::auth_error)
}

/// The algorithm the client names for its checksum, if any.
fn declared_algorithm(req: &Req) -> Option<String> {
    req.header("x-amz-sdk-checksum-algorithm")
        .or_else(|| req.header("x-amz-checksum-algorithm"))
        .map(str::to_ascii_lowercase)
}

/// The flexible checksums a request carries or announces: headers,
/// trailers named in `x-amz-trailer`, and the declared algorithm.
fn requested_checksums(req: &Req) -> Vec<String> {
    let announced = req
        .header("x-amz-trailer")
        .unwrap_or("")
        .to_ascii_lowercase();
    let declared = declared_algorithm(req);
    svc::CHECKSUM_ALGORITHMS
        .iter()
        .filter(|alg| {
            let name = format!("x-amz-checksum-{alg}");
            req.header(&name).is_some()
                || announced.split(',').any(|t| t.trim() == name)
                || declared.as_deref() == Some(**alg)
        })
        .map(|a| a.to_string())
        .collect()
}

/// The digests of a small (in-memory) body.
fn digest_small(req: &Req, body: &DecodedBody) -> svc::Digested {
    let mut checksums = requested_checksums(req);
    for (name, _) in &body.trailers {
        if let Some(alg) = name.strip_prefix("x-amz-checksum-")
            && !checksums.iter().any(|c| c == alg)
        {
            checksums.push(alg.to_string());
        }
    }
    let spec = svc::DigestSpec {
        md5: true,
        sha256: false,
        checksums,
    };
    let mut d = svc::Digests::new(&spec);
    d.update(&body.data);
    d.finish()
}

/// Check Content-MD5 and flexible checksums (headers or trailers) against
/// what was computed; returns the checksum headers to keep with the object.
fn integrity(
    req: &Req,
    digested: &svc::Digested,
    trailers: &[(String, String)],
) -> Result<BTreeMap<String, String>, ServiceError> {
    if let Some(md5) = req.header("content-md5") {
        let computed = digested.md5.ok_or_else(|| {
            ServiceError::Internal("Content-MD5 given but no MD5 computed".into())
        })?;
        svc::check_content_md5_digest(md5, computed)?;
    }
    let mut out = BTreeMap::new();
    let declared = declared_algorithm(req);
    for alg in svc::CHECKSUM_ALGORITHMS {
        let name = format!("x-amz-checksum-{alg}");
        let given = req.header(&name).map(str::to_string).or_else(|| {
            trailers
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        });
        let computed = digested.checksums.get(alg).cloned();
        match (given, computed) {
            (Some(g), Some(c)) => {
                if g.trim() != c {
                    return Err(ServiceError::BadDigest(format!(
                        "The {} you specified did not match the calculated checksum.",
                        alg.to_ascii_uppercase()
                    )));
                }
                out.insert(name, c);
            }
            // keycard doesn't compute SHA-1: it keeps the client's.
            (Some(g), None) if alg == "sha1" => {
                out.insert(name, g.trim().to_string());
            }
            (Some(_), None) => {
                return Err(ServiceError::InvalidRequest(format!(
                    "The trailer {name} was not declared in x-amz-trailer"
                )));
            }
            (None, Some(c)) if declared.as_deref() == Some(alg) => {
                out.insert(name, c);
            }
            _ => {}
        }
    }
    Ok(out)
}

/// [`integrity`] for a body read into memory.
pub(crate) fn integrity_small(
    req: &Req,
    body: &DecodedBody,
) -> Result<BTreeMap<String, String>, ServiceError> {
    integrity(req, &digest_small(req, body), &body.trailers)
}

// ------------------------------------------------------------ streaming

/// An object body received into a staged file.
struct Received {
    staged: svc::Staged,
    digested: svc::Digested,
    trailers: Vec<(String, String)>,
}

fn entity_too_large() -> ServiceError {
    ServiceError::EntityTooLarge("Your proposed upload exceeds the maximum allowed size".into())
}

fn incomplete_body() -> ServiceError {
    ServiceError::IncompleteBody(
        "You did not provide the number of bytes specified by the Content-Length HTTP header"
            .into(),
    )
}

/// How the object body is framed: aws-chunked (mode, decoded length) or
/// plain. With auth off (moto compat) and no verified signature, only the
/// framing of a signed stream is decoded.
fn chunk_framing(req: &Req) -> Result<Option<(ChunkMode, u64)>, ServiceError> {
    let signed_stream = matches!(
        sigv4::declared_payload_hash(&req.parts),
        Some(sigv4::STREAMING_PAYLOAD | sigv4::STREAMING_PAYLOAD_TRAILER)
    );
    if signed_stream && !req.enforce && req.verified.is_none() {
        let n = req
            .header("x-amz-decoded-content-length")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                ServiceError::InvalidRequest(
                    "Missing required header for this request: x-amz-decoded-content-length".into(),
                )
            })?;
        return Ok(Some((ChunkMode::Unsigned, n)));
    }
    body_framing(&req.parts, req.auth.as_ref(), req.verified.as_ref()).map_err(crate::auth_error)
}

/// Stream the request's object data from the socket into a staged file in
/// bounded memory: aws-chunked framing decoded with each chunk's signature
/// checked as it completes; MD5, the signed SHA-256 and the requested
/// checksums computed on the way. Any failure removes the file.
async fn receive(req: &mut Req) -> Result<Received, ServiceError> {
    let framing = chunk_framing(req)?;
    let expected = framing.as_ref().map(|(_, n)| *n);
    if expected.is_some_and(|n| n > svc::MAX_PUT) {
        return Err(entity_too_large());
    }
    let (body, declared_hash) = req.take_body();
    // A request signed without x-amz-content-sha256 had its (small) body
    // read to verify it.
    let body = body.unwrap_or_else(|| Body::from(std::mem::take(&mut req.body)));
    let spec = svc::DigestSpec {
        md5: true,
        sha256: declared_hash.is_some(),
        checksums: requested_checksums(req),
    };
    let mut w = req.kc.object_writer(&spec)?;
    let mut decoder = framing.map(|(mode, _)| ChunkDecoder::new(mode));
    let mut decoded = Vec::new();
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| incomplete_body())?.into_data() else {
            continue;
        };
        match decoder.as_mut() {
            Some(d) => {
                decoded.clear();
                d.feed(&data, &mut decoded).map_err(crate::auth_error)?;
                w.write(&decoded).await?;
            }
            None => w.write(&data).await?,
        }
        if w.size() > svc::MAX_PUT {
            return Err(entity_too_large());
        }
        if expected.is_some_and(|n| w.size() > n) {
            return Err(crate::auth_error(length_mismatch()));
        }
    }
    let trailers = match decoder {
        Some(d) => d.finish().map_err(crate::auth_error)?,
        None => Vec::new(),
    };
    if expected.is_some_and(|n| w.size() != n) {
        return Err(crate::auth_error(length_mismatch()));
    }
    let (staged, digested) = w.finish().await?;
    if let Some(h) = declared_hash
        && digested.sha256_hex() != Some(h.to_ascii_lowercase())
    {
        return Err(ServiceError::XAmzContentSHA256Mismatch(
            "The provided 'x-amz-content-sha256' header does not match what was computed.".into(),
        ));
    }
    Ok(Received {
        staged,
        digested,
        trailers,
    })
}

/// An object's bytes as a response body streamed from its file, a block
/// at a time, without a thread held for a slow reader.
struct FileBody {
    file: tokio::fs::File,
    left: u64,
    buf: Box<[u8]>,
}

/// How much of an object a download reads at a time.
const DOWNLOAD_BLOCK: usize = 256 * 1024;

impl axum::body::HttpBody for FileBody {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, std::io::Error>>> {
        use tokio::io::AsyncRead;
        let this = &mut *self;
        if this.left == 0 {
            return Poll::Ready(None);
        }
        let n = usize::try_from(this.left)
            .unwrap_or(usize::MAX)
            .min(this.buf.len());
        let Some(window) = this.buf.get_mut(..n) else {
            return Poll::Ready(None);
        };
        let mut rb = tokio::io::ReadBuf::new(window);
        match Pin::new(&mut this.file).poll_read(cx, &mut rb) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) if rb.filled().is_empty() => Poll::Ready(Some(Err(
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "object data is short"),
            ))),
            Poll::Ready(Ok(())) => {
                let got = rb.filled();
                this.left -= got.len() as u64;
                Poll::Ready(Some(Ok(hyper::body::Frame::data(
                    bytes::Bytes::copy_from_slice(got),
                ))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.left)
    }
}

/// `x-amz-meta-*` headers (names lower-cased, prefix removed).
fn user_metadata(req: &Req) -> Result<BTreeMap<String, String>, ServiceError> {
    let mut m: BTreeMap<String, String> = BTreeMap::new();
    let mut size = 0usize;
    for (name, value) in req.parts.headers.iter() {
        let Some(k) = name.as_str().strip_prefix("x-amz-meta-") else {
            continue;
        };
        let v = String::from_utf8_lossy(value.as_bytes()).trim().to_string();
        size += k.len() + v.len();
        m.entry(k.to_string())
            .and_modify(|e| {
                e.push(',');
                e.push_str(&v);
            })
            .or_insert(v);
    }
    if size > MAX_METADATA {
        return Err(ServiceError::InvalidArgument(format!(
            "Your metadata headers exceed the maximum allowed metadata size ({MAX_METADATA} bytes)."
        )));
    }
    Ok(m)
}

/// Content headers kept with an object.
fn stored_headers(req: &Req) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for h in STORED_HEADERS {
        let Some(v) = req.header(h) else { continue };
        let v = if *h == "content-encoding" {
            v.split(',')
                .map(str::trim)
                .filter(|e| !e.eq_ignore_ascii_case("aws-chunked") && !e.is_empty())
                .collect::<Vec<_>>()
                .join(",")
        } else {
            v.to_string()
        };
        if !v.is_empty() {
            m.insert(h.to_string(), v);
        }
    }
    m
}

fn check_acl_header(req: &Req) -> Result<(), ServiceError> {
    match req.header("x-amz-acl") {
        Some(a) if !CANNED_ACLS.contains(&a) => {
            Err(ServiceError::InvalidArgument("Invalid canned ACL".into()))
        }
        _ => Ok(()),
    }
}

fn content_type(req: &Req) -> Option<String> {
    req.header("content-type")
        .map(str::to_string)
        .filter(|s| !s.is_empty())
}

pub(crate) fn parse_body_xml(data: &[u8], root: &str) -> Result<XmlNode, ServiceError> {
    let n = parse_xml(data).map_err(|_| malformed_xml())?;
    if n.local_name() != root {
        return Err(malformed_xml());
    }
    Ok(n)
}

fn etag_matches(list: &str, etag: &str) -> bool {
    let etag = etag.trim_matches('"');
    list.split(',')
        .map(str::trim)
        .any(|e| e == "*" || e.strip_prefix("W/").unwrap_or(e).trim_matches('"') == etag)
}

fn parse_date(s: &str) -> Option<i64> {
    sigv4::parse_http_date(s.trim())
        .or_else(|| sigv4::parse_amz_date(s.trim()))
        .map(|t| t.unix_timestamp())
}

enum Precondition {
    Ok,
    NotModified,
    Failed,
}

/// RFC 7232 as S3 applies it to GET/HEAD (and, with the copy-source
/// header names, to a copy's source).
fn preconditions(req: &Req, meta: &ObjectMeta, prefix: &str) -> Precondition {
    let h = |n: &str| req.header(&format!("{prefix}{n}")).map(str::to_string);
    let lm = meta.last_modified_ms.div_euclid(1000);
    if let Some(v) = h("if-match") {
        if !etag_matches(&v, &meta.etag) {
            return Precondition::Failed;
        }
    } else if let Some(t) = h("if-unmodified-since").and_then(|v| parse_date(&v))
        && lm > t
    {
        return Precondition::Failed;
    }
    if let Some(v) = h("if-none-match") {
        if etag_matches(&v, &meta.etag) {
            return Precondition::NotModified;
        }
    } else if let Some(t) = h("if-modified-since").and_then(|v| parse_date(&v))
        && lm <= t
    {
        return Precondition::NotModified;
    }
    Precondition::Ok
}

fn precondition_failed() -> ServiceError {
    ServiceError::PreconditionFailed(
        "At least one of the pre-conditions you specified did not hold".into(),
    )
}

enum Range {
    Full,
    Part(u64, u64),
    Unsatisfiable,
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n`. Syntax S3 doesn't understand is
/// ignored (the whole object), as S3 does; a range past the end is 416.
fn parse_range(h: &str, size: u64) -> Range {
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return Range::Full;
    };
    if spec.contains(',') {
        return Range::Full;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Range::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let Ok(n) = b.parse::<u64>() else {
            return Range::Full;
        };
        if n == 0 || size == 0 {
            return Range::Unsatisfiable;
        }
        return Range::Part(size.saturating_sub(n), size - 1);
    }
    let Ok(start) = a.parse::<u64>() else {
        return Range::Full;
    };
    let end = if b.is_empty() {
        u64::MAX
    } else {
        match b.parse::<u64>() {
            Ok(e) => e,
            Err(_) => return Range::Full,
        }
    };
    if end < start {
        return Range::Full;
    }
    if start >= size {
        return Range::Unsatisfiable;
    }
    Range::Part(start, end.min(size - 1))
}

/// The body for `len` bytes at `start` of an opened object file: small
/// ranges are read on the request's own task (page-cache reads take
/// microseconds, cheaper than hand-offs to the blocking pool); larger ones
/// stream.
fn object_body(mut f: std::fs::File, start: u64, len: u64) -> std::io::Result<Body> {
    use std::io::{Read, Seek};
    if start > 0 {
        f.seek(std::io::SeekFrom::Start(start))?;
    }
    if len <= SMALL_READ {
        let n = usize::try_from(len).map_err(|_| std::io::Error::other("range too large"))?;
        let mut buf = vec![0u8; n];
        f.read_exact(&mut buf)?;
        return Ok(Body::from(buf));
    }
    Ok(Body::new(FileBody {
        file: tokio::fs::File::from_std(f),
        left: len,
        buf: vec![0u8; DOWNLOAD_BLOCK].into_boxed_slice(),
    }))
}

/// The object's bytes for `range` (all of them without one): from memory
/// when kept there, else from its data file (a small object is then kept).
fn read_object(
    req: &Req,
    (bucket, key): (&str, &str),
    meta: ObjectMeta,
    versioned: bool,
    range: Option<(u64, u64)>,
) -> Result<(ObjectMeta, Body), ServiceError> {
    if let Some(bytes) = req.kc.object_cache.get(&meta.file) {
        let (start, len) = range.unwrap_or((0, meta.size));
        return Ok((meta, Body::from(cut(bytes, start, len)?)));
    }
    let (meta, f) = if versioned {
        let f = versions::open_version(req, &meta)?;
        (meta, f)
    } else {
        open_object(req, bucket, key, meta, range.is_some())?
    };
    let (start, len) = range.unwrap_or((0, meta.size));
    let read_error =
        |e: std::io::Error| ServiceError::Internal(format!("reading object data: {e}"));
    if meta.size <= MAX_CACHED_OBJECT {
        let bytes = read_whole(f, meta.size).map_err(read_error)?;
        req.kc.object_cache.insert(&meta.file, bytes.clone());
        return Ok((meta, Body::from(cut(bytes, start, len)?)));
    }
    let body = object_body(f, start, len).map_err(read_error)?;
    Ok((meta, body))
}

/// All `size` bytes of a small object's data file.
fn read_whole(mut f: std::fs::File, size: u64) -> std::io::Result<Bytes> {
    use std::io::Read;
    let n = usize::try_from(size).map_err(|_| std::io::Error::other("object too large"))?;
    let mut buf = vec![0u8; n];
    f.read_exact(&mut buf)?;
    Ok(Bytes::from(buf))
}

/// `len` bytes of `bytes` from `start`, without copying.
fn cut(bytes: Bytes, start: u64, len: u64) -> Result<Bytes, ServiceError> {
    let start = usize::try_from(start).ok();
    let end = start
        .zip(usize::try_from(len).ok())
        .and_then(|(s, l)| s.checked_add(l));
    match (start, end) {
        (Some(s), Some(e)) if e <= bytes.len() => Ok(bytes.slice(s..e)),
        _ => Err(ServiceError::Internal(
            "object data shorter than its size".into(),
        )),
    }
}

/// Reads up to this size happen on the request's own task.
const SMALL_READ: u64 = 256 * 1024;

/// An object's metadata and its data file, opened, retrying when a
/// concurrent overwrite replaced the file under us (once open, the bytes
/// stay readable whatever happens to the name).
fn open_object(
    req: &Req,
    bucket: &str,
    key: &str,
    mut meta: ObjectMeta,
    ranged: bool,
) -> Result<(ObjectMeta, std::fs::File), ServiceError> {
    for _ in 0..3 {
        match std::fs::File::open(req.kc.object_path(&meta.file)) {
            Ok(f) => return Ok((meta, f)),
            Err(e) => {
                let fresh = req.kc.get_object_meta(bucket, key)?;
                if fresh.file == meta.file {
                    return Err(ServiceError::Internal(format!("reading object data: {e}")));
                }
                if ranged && fresh.size != meta.size {
                    // The object changed size: the range no longer means
                    // the same bytes.
                    return Err(precondition_failed());
                }
                meta = fresh;
            }
        }
    }
    Err(ServiceError::ServiceUnavailable(
        "Please reduce your request rate.".into(),
    ))
}

fn parse_max(q: &Query, name: &str, default: usize) -> Result<usize, ServiceError> {
    match q.get(name) {
        None | Some("") => Ok(default),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX).min(default))
            .ok_or_else(|| {
                ServiceError::InvalidArgument(format!(
                    "Provided {name} not an integer or within integer range"
                ))
            }),
    }
}

// ---------------------------------------------------------------- buckets

async fn list_buckets(req: &mut Req, q: &Query) -> R {
    req.authorize("s3:ListAllMyBuckets", "*", None, ResourcePolicy::None)?;
    let account = acting_account(req);
    let prefix = q.get("prefix").unwrap_or("");
    let max = parse_max(q, "max-buckets", 10_000)?;
    let after = match q.get("continuation-token") {
        Some(t) => Some(
            svc::b64_decode(t)
                .and_then(|d| String::from_utf8(d).ok())
                .ok_or_else(|| {
                    ServiceError::InvalidArgument(
                        "The continuation token provided is incorrect".into(),
                    )
                })?,
        ),
        None => None,
    };
    let mut buckets: Vec<Bucket> = req
        .kc
        .list_buckets(&account)
        .into_iter()
        .filter(|b| b.name.starts_with(prefix))
        .filter(|b| after.as_deref().is_none_or(|a| b.name.as_str() > a))
        .filter(|b| q.get("bucket-region").is_none_or(|r| b.region == r))
        .collect();
    buckets.sort_by(|a, b| a.name.cmp(&b.name));
    let truncated = buckets.len() > max;
    buckets.truncate(max);
    let mut w = XmlWriter::new();
    w.start_ns("ListAllMyBucketsResult", S3_XMLNS);
    owner_xml(&mut w, "Owner", &account);
    w.start("Buckets");
    for b in &buckets {
        w.start("Bucket")
            .elem("Name", &b.name)
            .elem("CreationDate", &iso_ms(b.created * 1000))
            .elem("BucketRegion", &b.region)
            .end("Bucket");
    }
    w.end("Buckets");
    if truncated && let Some(last) = buckets.last() {
        w.elem("ContinuationToken", &svc::b64_encode(last.name.as_bytes()));
    }
    if q.has("prefix") {
        w.elem("Prefix", prefix);
    }
    w.end("ListAllMyBucketsResult");
    Ok(xml(req, w))
}

async fn create_bucket(req: &mut Req, b: &str, _host: &str) -> R {
    add_bucket_resource(req, b);
    req.authorize(
        "s3:CreateBucket",
        &bucket_arn(b),
        None,
        ResourcePolicy::None,
    )?;
    svc::validate_bucket_name(b)?;
    check_acl_header(req)?;
    let body = decoded_body(req).await?;
    let mut region = req.region.clone();
    if !body.data.iter().all(u8::is_ascii_whitespace) {
        let n = parse_body_xml(&body.data, "CreateBucketConfiguration")?;
        if let Some(lc) = n.child_text("LocationConstraint").map(str::trim)
            && !lc.is_empty()
        {
            if !lc
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                && lc != "EU"
            {
                return Err(ServiceError::InvalidArgument(
                    "The specified location-constraint is not valid".into(),
                ));
            }
            region = if lc == "EU" {
                "eu-west-1".into()
            } else {
                lc.to_string()
            };
        }
    }
    if region.is_empty() {
        region = req.kc.config.region.clone();
    }
    let account = acting_account(req);
    if account.is_empty() {
        return Err(access_denied());
    }
    let settings = crate::s3_settings::create_settings(req, b)?;
    match req
        .kc
        .create_bucket_with(&account, b, &region, settings)
        .await
    {
        Ok(_) => {}
        // us-east-1 keeps S3's legacy answer: re-creating a bucket you own
        // there is a 200 that changes nothing.
        Err(ServiceError::BucketAlreadyOwnedByYou(_))
            if region == "us-east-1" && req.kc.bucket(b).is_ok_and(|x| x.region == "us-east-1") => {
        }
        Err(e) => return Err(e),
    }
    let mut r = empty(req, 200);
    put_header(&mut r, "location", &format!("/{b}"));
    Ok(r)
}

async fn head_bucket(req: &mut Req, b: &str) -> R {
    add_bucket_resource(req, b);
    let bucket = authorize_on(req, "s3:ListBucket", b, None)?;
    let mut r = empty(req, 200);
    put_header(&mut r, "x-amz-bucket-region", &bucket.region);
    put_header(&mut r, "x-amz-access-point-alias", "false");
    Ok(r)
}

async fn delete_bucket(req: &mut Req, b: &str) -> R {
    add_bucket_resource(req, b);
    authorize_on(req, "s3:DeleteBucket", b, None)?;
    req.kc.delete_bucket(b).await?;
    Ok(empty(req, 204))
}

async fn get_bucket_location(req: &mut Req, b: &str) -> R {
    add_bucket_resource(req, b);
    let bucket = authorize_on(req, "s3:GetBucketLocation", b, None)?;
    let mut w = XmlWriter::new();
    let region = if bucket.region == "us-east-1" {
        ""
    } else {
        bucket.region.as_str()
    };
    w.start_ns("LocationConstraint", S3_XMLNS)
        .text(region)
        .end("LocationConstraint");
    Ok(xml(req, w))
}

/// Bucket policy operations: only the owner account's identities may call
/// them (others get 405), and the owner's root always may (lock-out
/// recovery), as in S3.
fn authorize_policy_op(req: &mut Req, action: &str, b: &str) -> Result<Arc<Bucket>, ServiceError> {
    match authorize_on(req, action, b, None) {
        Ok(bucket) => {
            if req.enforce && bucket.account != req.caller.account {
                return Err(ServiceError::MethodNotAllowed(
                    "The specified method is not allowed against this resource.".into(),
                ));
            }
            Ok(bucket)
        }
        Err(ServiceError::AccessDenied(m)) => match req.kc.bucket(b) {
            // The owner's root user can always manage the bucket policy
            // (AWS's lock-out protection); the event says so.
            Ok(bucket) if req.caller.is_root() && bucket.account == req.caller.account => {
                if let Some(d) = req.audit.decided.last_mut() {
                    d.overridden_by = Some("bucket owner's root user");
                }
                Ok(bucket)
            }
            _ => Err(ServiceError::AccessDenied(m)),
        },
        Err(e) => Err(e),
    }
}

async fn get_bucket_policy(req: &mut Req, b: &str) -> R {
    add_bucket_resource(req, b);
    let bucket = authorize_policy_op(req, "s3:GetBucketPolicy", b)?;
    let Some(p) = &bucket.policy else {
        return Err(ServiceError::NoSuchBucketPolicy(
            "The bucket policy does not exist".into(),
        ));
    };
    let mut r = response(req, 200, Body::from(p.text.clone()));
    put_header(&mut r, "content-type", "application/json");
    Ok(r)
}

async fn put_bucket_policy(req: &mut Req, b: &str) -> R {
    add_bucket_resource(req, b);
    authorize_policy_op(req, "s3:PutBucketPolicy", b)?;
    let body = decoded_body(req).await?;
    integrity_small(req, &body)?;
    let text = std::str::from_utf8(&body.data)
        .map_err(|_| ServiceError::MalformedPolicyDocument("Policies must be valid JSON".into()))?;
    if text.trim().is_empty() {
        return Err(ServiceError::MalformedPolicyDocument(
            "Policies must be valid JSON and the first byte must be '{'".into(),
        ));
    }
    crate::s3_settings::check_policy_allowed(req, b, text)?;
    req.kc.put_bucket_policy(b, text).await?;
    Ok(empty(req, 204))
}

async fn delete_bucket_policy(req: &mut Req, b: &str) -> R {
    add_bucket_resource(req, b);
    authorize_policy_op(req, "s3:DeleteBucketPolicy", b)?;
    req.kc.delete_bucket_policy(b).await?;
    Ok(empty(req, 204))
}

async fn get_request_payment(req: &mut Req, b: &str) -> R {
    add_bucket_resource(req, b);
    authorize_on(req, "s3:GetBucketRequestPayment", b, None)?;
    let mut w = XmlWriter::new();
    w.start_ns("RequestPaymentConfiguration", S3_XMLNS)
        .elem("Payer", "BucketOwner")
        .end("RequestPaymentConfiguration");
    Ok(xml(req, w))
}

// ---------------------------------------------------------------- listing

struct ListParams {
    prefix: String,
    delimiter: Option<String>,
    max_keys: usize,
    url: bool,
}

fn list_params(req: &mut Req, q: &Query) -> Result<ListParams, ServiceError> {
    let url = match q.get("encoding-type") {
        None => false,
        Some(e) if e.eq_ignore_ascii_case("url") => true,
        Some(_) => {
            return Err(ServiceError::InvalidArgument(
                "Invalid Encoding Method specified in Request".into(),
            ));
        }
    };
    let max_keys = match q.get("max-keys") {
        None | Some("") => 1000,
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (0..=i64::from(i32::MAX)).contains(n))
            .map(|n| usize::try_from(n).unwrap_or(1000).min(1000))
            .ok_or_else(|| {
                ServiceError::InvalidArgument(
                    "Argument maxKeys must be an integer between 0 and 2147483647".into(),
                )
            })?,
    };
    for (param, ctx_key) in [
        ("prefix", "s3:prefix"),
        ("delimiter", "s3:delimiter"),
        ("max-keys", "s3:max-keys"),
    ] {
        if let Some(v) = q.get(param) {
            req.request_key(ctx_key, v.to_string());
        }
    }
    Ok(ListParams {
        prefix: q.get("prefix").unwrap_or("").to_string(),
        delimiter: q.get("delimiter").map(str::to_string),
        max_keys,
        url,
    })
}

fn enc(url: bool, s: &str) -> String {
    if url {
        utf8_percent_encode(s, URL_SET).to_string()
    } else {
        s.to_string()
    }
}

fn decode_token(t: &str) -> Result<String, ServiceError> {
    svc::b64_decode(t)
        .and_then(|d| String::from_utf8(d).ok())
        .ok_or_else(|| {
            ServiceError::InvalidArgument("The continuation token provided is incorrect".into())
        })
}

async fn list_objects(req: &mut Req, b: &str, q: &Query, v2: bool) -> R {
    add_bucket_resource(req, b);
    let p = list_params(req, q)?;
    let bucket = authorize_on(req, "s3:ListBucket", b, None)?;
    let token = if v2 {
        q.get("continuation-token").map(decode_token).transpose()?
    } else {
        None
    };
    let after = if v2 {
        token
            .clone()
            .or_else(|| q.get("start-after").map(str::to_string))
    } else {
        q.get("marker").map(str::to_string)
    }
    .filter(|a| !a.is_empty());
    let listing = req.kc.list_objects(
        b,
        &p.prefix,
        p.delimiter.as_deref(),
        after.as_deref(),
        p.max_keys,
    )?;
    let fetch_owner = !v2 || q.get("fetch-owner") == Some("true");
    let u = p.url;
    let mut w = XmlWriter::new();
    w.start_ns("ListBucketResult", S3_XMLNS)
        .elem("Name", b)
        .elem("Prefix", &enc(u, &p.prefix));
    if v2 {
        if let Some(t) = q.get("continuation-token") {
            w.elem("ContinuationToken", t);
        }
        if let Some(sa) = q.get("start-after") {
            w.elem("StartAfter", &enc(u, sa));
        }
        w.elem_display(
            "KeyCount",
            listing.objects.len() + listing.common_prefixes.len(),
        );
    } else {
        w.elem("Marker", &enc(u, q.get("marker").unwrap_or("")));
    }
    w.elem_display("MaxKeys", p.max_keys);
    if let Some(d) = &p.delimiter {
        w.elem("Delimiter", &enc(u, d));
    }
    if u {
        w.elem("EncodingType", "url");
    }
    w.elem(
        "IsTruncated",
        if listing.truncated { "true" } else { "false" },
    );
    if listing.truncated
        && let Some(next) = &listing.next
    {
        if v2 {
            w.elem("NextContinuationToken", &svc::b64_encode(next.as_bytes()));
        } else if p.delimiter.is_some() {
            w.elem("NextMarker", &enc(u, next));
        }
    }
    for o in &listing.objects {
        w.start("Contents")
            .elem("Key", &enc(u, &o.key))
            .elem("LastModified", &iso_ms(o.last_modified_ms))
            .elem("ETag", &o.etag);
        for alg in svc::CHECKSUM_ALGORITHMS {
            if o.headers.contains_key(&format!("x-amz-checksum-{alg}")) {
                w.elem("ChecksumAlgorithm", &alg.to_ascii_uppercase());
            }
        }
        w.elem_display("Size", o.size);
        if fetch_owner {
            owner_xml(&mut w, "Owner", &bucket.account);
        }
        w.elem("StorageClass", "STANDARD").end("Contents");
    }
    for cp in &listing.common_prefixes {
        w.start("CommonPrefixes")
            .elem("Prefix", &enc(u, cp))
            .end("CommonPrefixes");
    }
    w.end("ListBucketResult");
    Ok(xml(req, w))
}

// ---------------------------------------------------------------- objects

fn object_headers(r: &mut Response<Body>, meta: &ObjectMeta, with_checksums: bool) {
    put_header(r, "etag", &meta.etag);
    put_header(r, "last-modified", &http_date(meta.last_modified_ms));
    put_header(r, "accept-ranges", "bytes");
    if !meta.headers.contains_key("x-amz-server-side-encryption") {
        put_header(r, "x-amz-server-side-encryption", "AES256");
    }
    for (k, v) in &meta.metadata {
        put_header(r, &format!("x-amz-meta-{k}"), v);
    }
    for (k, v) in &meta.headers {
        if k.starts_with("x-amz-checksum-") {
            if with_checksums {
                put_header(r, k, v);
            }
            continue;
        }
        put_header(r, k, v);
    }
    if with_checksums
        && meta
            .headers
            .keys()
            .any(|k| k.starts_with("x-amz-checksum-"))
    {
        put_header(r, "x-amz-checksum-type", "FULL_OBJECT");
    }
}

async fn get_object(req: &mut Req, b: &str, k: &str, q: &Query, head: bool) -> R {
    add_bucket_resource(req, b);
    add_object_resource(req, b, k);
    let version = versions::requested_version(req, q)?;
    let bucket = authorize_on(req, versions::action(req), b, Some(k))?;
    let meta = versions::object_for_read(req, &bucket, k, version.as_deref())?;
    match preconditions(req, &meta, "") {
        Precondition::Ok => {}
        Precondition::Failed => return Err(precondition_failed()),
        Precondition::NotModified => {
            let mut r = empty(req, 304);
            put_header(&mut r, "etag", &meta.etag);
            put_header(&mut r, "last-modified", &http_date(meta.last_modified_ms));
            return Ok(r);
        }
    }
    if let Some(pn) = q.get("partNumber") {
        let n = pn.parse::<u32>().ok().filter(|n| (1..=10_000).contains(n));
        let parts = meta.parts_count.unwrap_or(1);
        match n {
            Some(n) if n <= parts && parts == 1 => {}
            Some(_) if meta.parts_count.is_some() => {
                return Err(ServiceError::NotImplemented(
                    "keycard does not serve single parts of multipart objects".into(),
                ));
            }
            _ => {
                return Err(ServiceError::InvalidRange(
                    "The requested partnumber is not satisfiable".into(),
                ));
            }
        }
    }
    let range = match req.header("range") {
        Some(h) => parse_range(h, meta.size),
        None => Range::Full,
    };
    let range = match range {
        Range::Unsatisfiable => {
            return Err(ServiceError::InvalidRange(
                "The requested range is not satisfiable".into(),
            ));
        }
        Range::Full => None,
        Range::Part(s, e) => Some((s, e - s + 1)),
    };
    let checksum_mode = range.is_none()
        && req
            .header("x-amz-checksum-mode")
            .is_some_and(|v| v.eq_ignore_ascii_case("enabled"));
    let (meta, body) = if head {
        (meta, Body::empty())
    } else {
        read_object(req, (b, k), meta, version.is_some(), range)?
    };
    let len = match range {
        Some((_, l)) => l,
        None => meta.size,
    };
    let status = if range.is_some() { 206 } else { 200 };
    let mut r = response(req, status, body);
    object_headers(&mut r, &meta, checksum_mode);
    versions::version_header(req, &mut r, &meta);
    put_header(
        &mut r,
        "content-type",
        meta.content_type
            .as_deref()
            .unwrap_or("binary/octet-stream"),
    );
    put_header(&mut r, "content-length", &len.to_string());
    if let Some((s, l)) = range {
        put_header(
            &mut r,
            "content-range",
            &format!("bytes {s}-{}/{}", s + l - 1, meta.size),
        );
    }
    if q.has("partNumber") {
        put_header(&mut r, "x-amz-mp-parts-count", "1");
    }
    if !head && !meta.tags.is_empty() {
        put_header(&mut r, "x-amz-tagging-count", &meta.tags.len().to_string());
    }
    if !head {
        for (param, header) in [
            ("response-content-type", "content-type"),
            ("response-content-language", "content-language"),
            ("response-expires", "expires"),
            ("response-cache-control", "cache-control"),
            ("response-content-disposition", "content-disposition"),
            ("response-content-encoding", "content-encoding"),
        ] {
            if let Some(v) = q.get(param)
                && let Ok(v) = HeaderValue::from_str(v)
            {
                r.headers_mut().insert(header, v);
            }
        }
    }
    Ok(r)
}

/// The ETag of a single-part object: its MD5.
fn etag_of(d: &svc::Digested) -> Result<String, ServiceError> {
    d.etag()
        .ok_or_else(|| ServiceError::Internal("no MD5 computed".into()))
}

/// `If-None-Match: *` / `If-Match` on writes (conditional writes).
fn write_preconditions(req: &Req, b: &str, k: &str) -> Result<(), ServiceError> {
    let existing = req.kc.get_object_meta(b, k).ok();
    if let Some(v) = req.header("if-none-match")
        && v.trim() == "*"
        && existing.is_some()
    {
        return Err(precondition_failed());
    }
    if let Some(v) = req.header("if-match") {
        match &existing {
            Some(m) if etag_matches(v, &m.etag) => {}
            Some(_) => return Err(precondition_failed()),
            None => {
                return Err(ServiceError::NoSuchKey(
                    "The specified key does not exist.".into(),
                ));
            }
        }
    }
    Ok(())
}

async fn put_object(req: &mut Req, b: &str, k: &str) -> R {
    add_bucket_resource(req, b);
    add_object_resource(req, b, k);
    let tags = header_tags(req)?.unwrap_or_default();
    request_object_tags(req, &tags);
    let bucket = authorize_on(req, "s3:PutObject", b, Some(k))?;
    svc::validate_key(k)?;
    check_acl_header(req)?;
    let acl = crate::s3_settings::object_write_acl(req, &bucket, k)?;
    let encryption = crate::s3_settings::object_encryption(req, &bucket)?;
    let metadata = user_metadata(req)?;
    // Refused before any byte is received; checked again at the end.
    write_preconditions(req, b, k)?;
    let got = receive(req).await?;
    let checksums = integrity(req, &got.digested, &got.trailers)?;
    let mut headers = stored_headers(req);
    headers.extend(checksums.clone());
    headers.extend(encryption);
    write_preconditions(req, b, k)?;
    let etag = etag_of(&got.digested)?;
    let object = svc::NewObject {
        bucket: b.to_string(),
        key: k.to_string(),
        content_type: content_type(req),
        metadata,
        headers,
        tags,
        acl,
    };
    let meta = req.kc.put_object_staged(got.staged, etag, object).await?;
    let mut r = empty(req, 200);
    put_header(&mut r, "etag", &meta.etag);
    versions::version_header(req, &mut r, &meta);
    crate::s3_settings::sse_headers(&mut r, &meta.headers);
    for (k, v) in &checksums {
        put_header(&mut r, k, v);
    }
    if !checksums.is_empty() {
        put_header(&mut r, "x-amz-checksum-type", "FULL_OBJECT");
    }
    Ok(r)
}

async fn delete_object(req: &mut Req, b: &str, k: &str, q: &Query) -> R {
    add_bucket_resource(req, b);
    add_object_resource(req, b, k);
    let version = versions::requested_version(req, q)?;
    authorize_on(req, versions::action(req), b, Some(k))?;
    if let Some(v) = req.header("if-match")
        && let Ok(m) = req.kc.get_object_meta(b, k)
        && !etag_matches(v, &m.etag)
    {
        return Err(precondition_failed());
    }
    let d = req
        .kc
        .delete_object_version(b, k, version.as_deref())
        .await?;
    let mut r = empty(req, 204);
    if d.delete_marker {
        put_header(&mut r, "x-amz-delete-marker", "true");
    }
    if let Some(v) = &d.version_id {
        put_header(&mut r, "x-amz-version-id", v);
    }
    Ok(r)
}

async fn delete_objects(req: &mut Req, b: &str) -> R {
    add_bucket_resource(req, b);
    let body = decoded_body(req).await?;
    integrity_small(req, &body)?;
    let n = parse_body_xml(&body.data, "Delete")?;
    let quiet = n
        .child_text("Quiet")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let mut keys = Vec::new();
    for o in n.children_named("Object") {
        let key = o.child_text("Key").ok_or_else(malformed_xml)?;
        let version = o.child_text("VersionId").map(|v| v.trim().to_string());
        keys.push((key.to_string(), version));
    }
    if keys.is_empty() || keys.len() > MAX_DELETE_KEYS {
        return Err(malformed_xml());
    }
    // Every entry names a version: the row's version action is the one.
    req.names_version = keys.iter().all(|(_, v)| v.is_some());
    if req.kc.bucket(b).is_err() {
        // Missing bucket: AccessDenied or NoSuchBucket, as for any call.
        let first = keys.first().map(|(k, _)| k.as_str());
        authorize_on(req, versions::action(req), b, first)?;
    }
    let mut w = XmlWriter::new();
    w.start_ns("DeleteResult", S3_XMLNS);
    for (key, version) in &keys {
        let outcome = delete_entry(req, b, key, version.as_deref()).await;
        match outcome {
            Ok(d) => {
                if !quiet {
                    w.start("Deleted").elem("Key", key);
                    if let Some(v) = version {
                        w.elem("VersionId", v);
                    }
                    if d.delete_marker {
                        w.elem("DeleteMarker", "true");
                        if let Some(v) = d.version_id.as_deref().filter(|_| version.is_none()) {
                            w.elem("DeleteMarkerVersionId", v);
                        }
                    }
                    w.end("Deleted");
                }
            }
            Err(e) => {
                let (code, msg) = match &e {
                    ServiceError::AccessDenied(_) => ("AccessDenied", "Access Denied".to_string()),
                    ServiceError::Internal(_) => (
                        "InternalError",
                        "We encountered an internal error. Please try again.".to_string(),
                    ),
                    other => (other.code(), other.message()),
                };
                w.start("Error").elem("Key", key);
                if let Some(v) = version {
                    w.elem("VersionId", v);
                }
                w.elem("Code", code).elem("Message", &msg).end("Error");
            }
        }
    }
    w.end("DeleteResult");
    Ok(xml(req, w))
}

/// One DeleteObjects entry, authorized as its own DeleteObject would be.
async fn delete_entry(
    req: &mut Req,
    b: &str,
    key: &str,
    version: Option<&str>,
) -> Result<svc_versions::Deleted, ServiceError> {
    let action = req.op.action(version.is_some());
    authorize_on(req, action, b, Some(key))?;
    if let Some(v) = version {
        svc_versions::check_version_id(v)?;
    }
    req.kc.delete_object_version(b, key, version).await
}

/// `x-amz-copy-source`: (bucket, key, version), URL-decoded.
fn copy_source(req: &Req) -> Result<(String, String, Option<String>), ServiceError> {
    let bad = || {
        ServiceError::InvalidArgument(
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey".into(),
        )
    };
    let raw = req.header("x-amz-copy-source").ok_or_else(bad)?;
    let (raw, query) = raw.split_once('?').unwrap_or((raw, ""));
    let version = Query::parse(Some(query))
        .get("versionId")
        .map(str::to_string);
    if let Some(v) = &version {
        svc_versions::check_version_id(v)?;
    }
    let decoded = decode_path(raw)?;
    let decoded = decoded.strip_prefix('/').unwrap_or(&decoded);
    let (sb, sk) = decoded.split_once('/').ok_or_else(bad)?;
    if sb.is_empty() || sk.is_empty() {
        return Err(bad());
    }
    Ok((sb.to_string(), sk.to_string(), version))
}

/// Authorize reading the copy source and fetch its metadata.
/// A versioned source needs `s3:GetObjectVersion` (the row's conditional
/// action) and may not be a delete marker.
fn copy_source_meta(req: &mut Req) -> Result<ObjectMeta, ServiceError> {
    let (sb, sk, version) = copy_source(req)?;
    add_object_resource(req, &sb, &sk);
    let action = if version.is_some() {
        "s3:GetObjectVersion"
    } else {
        "s3:GetObject"
    };
    let bucket = authorize_in(
        req,
        action,
        &sb,
        Some(&sk),
        "x-amz-source-expected-bucket-owner",
    )?;
    let meta = match versions::object_for_read(req, &bucket, &sk, version.as_deref()) {
        Err(ServiceError::MethodNotAllowed(_)) => {
            req.error_headers.clear();
            return Err(ServiceError::InvalidRequest(
                "The source of a copy request may not specifically refer to a delete marker by version id.".into(),
            ));
        }
        other => other?,
    };
    match preconditions(req, &meta, "x-amz-copy-source-") {
        Precondition::Ok => Ok(meta),
        _ => Err(precondition_failed()),
    }
}

/// Open a copy source's data: a named version as it is, the current
/// object through [`open_object`].
fn open_source(
    req: &Req,
    src: ObjectMeta,
    ranged: bool,
) -> Result<(ObjectMeta, std::fs::File), ServiceError> {
    if src.version_id.is_some() {
        let f = versions::open_version(req, &src)?;
        return Ok((src, f));
    }
    let (sb, sk) = (src.bucket.clone(), src.key.clone());
    open_object(req, &sb, &sk, src, ranged)
}

async fn copy_object(req: &mut Req, b: &str, k: &str) -> R {
    add_bucket_resource(req, b);
    add_object_resource(req, b, k);
    let new_tags = header_tags(req)?;
    if let Some(t) = &new_tags {
        request_object_tags(req, t);
    }
    let bucket = authorize_on(req, "s3:PutObject", b, Some(k))?;
    svc::validate_key(k)?;
    check_acl_header(req)?;
    let acl = crate::s3_settings::object_write_acl(req, &bucket, k)?;
    let encryption = crate::s3_settings::object_encryption(req, &bucket)?;
    let src = copy_source_meta(req)?;
    let replace = match req.header("x-amz-metadata-directive") {
        None => false,
        Some(d) if d.eq_ignore_ascii_case("COPY") => false,
        Some(d) if d.eq_ignore_ascii_case("REPLACE") => true,
        Some(_) => {
            return Err(ServiceError::InvalidArgument(
                "Unknown metadata directive.".into(),
            ));
        }
    };
    let changes_something = replace
        || req.header("x-amz-storage-class").is_some()
        || req.header("x-amz-server-side-encryption").is_some()
        || req.header("x-amz-website-redirect-location").is_some();
    if src.bucket == b && src.key == k && !changes_something {
        return Err(ServiceError::InvalidRequest("This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.".into()));
    }
    let (ct, metadata, mut headers) = if replace {
        (content_type(req), user_metadata(req)?, stored_headers(req))
    } else {
        (
            src.content_type.clone(),
            src.metadata.clone(),
            src.headers
                .iter()
                .filter(|(k, _)| !k.starts_with("x-amz-checksum-"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    };
    write_preconditions(req, b, k)?;
    let tags = match req.header("x-amz-tagging-directive") {
        None => src.tags.clone(),
        Some(d) if d.eq_ignore_ascii_case("COPY") => src.tags.clone(),
        Some(d) if d.eq_ignore_ascii_case("REPLACE") => new_tags.unwrap_or_default(),
        Some(_) => {
            return Err(ServiceError::InvalidArgument(
                "Unknown tagging directive.".into(),
            ));
        }
    };
    let (src, f) = open_source(req, src, false)?;
    for (hk, v) in &src.headers {
        if hk.starts_with("x-amz-checksum-") {
            headers.insert(hk.clone(), v.clone());
        }
    }
    let alg = req
        .header("x-amz-checksum-algorithm")
        .map(str::to_ascii_lowercase);
    // A single-part source's ETag is already the MD5 of these bytes.
    let reuse_etag = !src.etag.contains('-');
    let spec = svc::DigestSpec {
        md5: !reuse_etag,
        sha256: false,
        checksums: alg.iter().cloned().collect(),
    };
    let mut w = req.kc.object_writer(&spec)?;
    w.copy_from(f, 0, src.size).await?;
    let (staged, digested) = w.finish().await?;
    if let Some(alg) = &alg
        && let Some(c) = digested.checksums.get(alg)
    {
        headers.retain(|k, _| !k.starts_with("x-amz-checksum-"));
        headers.insert(format!("x-amz-checksum-{alg}"), c.clone());
    }
    let etag = if reuse_etag {
        src.etag.clone()
    } else {
        etag_of(&digested)?
    };
    headers.retain(|k, _| !k.starts_with("x-amz-server-side-encryption"));
    headers.extend(encryption);
    let object = svc::NewObject {
        bucket: b.to_string(),
        key: k.to_string(),
        content_type: ct,
        metadata,
        headers,
        tags,
        acl,
    };
    let meta = req.kc.put_object_staged(staged, etag, object).await?;
    let mut w = XmlWriter::new();
    w.start_ns("CopyObjectResult", S3_XMLNS)
        .elem("ETag", &meta.etag)
        .elem("LastModified", &iso_ms(meta.last_modified_ms));
    for (hk, v) in &meta.headers {
        if let Some(alg) = hk.strip_prefix("x-amz-checksum-") {
            w.elem(&checksum_tag(alg), v);
        }
    }
    w.end("CopyObjectResult");
    let mut r = xml(req, w);
    crate::s3_settings::sse_headers(&mut r, &meta.headers);
    if let Some(v) = &src.version_id {
        put_header(&mut r, "x-amz-copy-source-version-id", v);
    }
    versions::version_header(req, &mut r, &meta);
    Ok(r)
}

/// `crc32c` -> `ChecksumCRC32C`.
fn checksum_tag(alg: &str) -> String {
    format!("Checksum{}", alg.to_ascii_uppercase())
}

// ---------------------------------------------------------------- tagging

/// Most tags an object may carry.
const MAX_OBJECT_TAGS: usize = 10;
/// Most tags a bucket may carry.
const MAX_BUCKET_TAGS: usize = 50;

fn invalid_tag(msg: &str) -> ServiceError {
    ServiceError::InvalidTag(msg.into())
}

/// AWS's rules for a tag set: key 1–128 characters, value up to 256, no
/// `aws:` prefix, no key twice, at most `max` tags.
fn validate_tags(tags: &[(String, String)], max: usize) -> Result<(), ServiceError> {
    if tags.len() > max {
        return Err(if max == MAX_OBJECT_TAGS {
            ServiceError::InvalidTag("Object tags cannot be greater than 10".into())
        } else {
            ServiceError::InvalidTag("Bucket tag count cannot be greater than 50".into())
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 {
            return Err(invalid_tag("The TagKey you have provided is invalid"));
        }
        if v.chars().count() > 256 {
            return Err(invalid_tag("The TagValue you have provided is invalid"));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(invalid_tag("Your TagKey cannot be prefixed with aws:"));
        }
        if !seen.insert(k.as_str()) {
            return Err(invalid_tag(
                "Cannot provide multiple Tags with the same key",
            ));
        }
    }
    Ok(())
}

/// The `x-amz-tagging` header (`k1=v1&k2=v2`), validated.
fn header_tags(req: &Req) -> Result<Option<BTreeMap<String, String>>, ServiceError> {
    let Some(h) = req.header("x-amz-tagging") else {
        return Ok(None);
    };
    let tags: Vec<(String, String)> = form_urlencoded::parse(h.as_bytes()).into_owned().collect();
    validate_tags(&tags, MAX_OBJECT_TAGS)?;
    Ok(Some(tags.into_iter().collect()))
}

/// A `<Tagging><TagSet><Tag>` body, validated.
fn body_tags(data: &[u8], max: usize) -> Result<BTreeMap<String, String>, ServiceError> {
    let n = parse_body_xml(data, "Tagging")?;
    let set = n.child("TagSet").ok_or_else(malformed_xml)?;
    let mut tags = Vec::new();
    for t in set.children_named("Tag") {
        let k = t.child_text("Key").ok_or_else(malformed_xml)?;
        let v = t.child_text("Value").unwrap_or("");
        tags.push((k.to_string(), v.to_string()));
    }
    validate_tags(&tags, max)?;
    Ok(tags.into_iter().collect())
}

/// The request keys of object tags being written: `s3:RequestObjectTag/…`
/// and `s3:RequestObjectTagKeys`, with `aws:RequestTag/…` and `aws:TagKeys`.
fn request_object_tags(req: &mut Req, tags: &BTreeMap<String, String>) {
    for (k, v) in tags {
        req.request_key(&format!("s3:RequestObjectTag/{k}"), v.clone());
    }
    if !tags.is_empty() {
        req.request_key_multi("s3:RequestObjectTagKeys", tags.keys().cloned().collect());
    }
    req.request_tags(tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
}

fn tagging_xml(req: &Req, tags: &BTreeMap<String, String>) -> Response<Body> {
    let mut w = XmlWriter::new();
    w.start_ns("Tagging", S3_XMLNS).start("TagSet");
    for (k, v) in tags {
        w.start("Tag").elem("Key", k).elem("Value", v).end("Tag");
    }
    w.end("TagSet").end("Tagging");
    xml(req, w)
}

/// An existing object's metadata, as S3 reports a missing one to this caller.
pub(crate) fn existing_object(
    req: &Req,
    bucket: &Bucket,
    k: &str,
) -> Result<ObjectMeta, ServiceError> {
    match req.kc.get_object_meta(&bucket.name, k) {
        Ok(m) => Ok(m),
        Err(ServiceError::NoSuchKey(m)) if may_list(req, bucket) => Err(ServiceError::NoSuchKey(m)),
        Err(ServiceError::NoSuchKey(_)) => Err(access_denied()),
        Err(e) => Err(e),
    }
}

async fn get_object_tagging(req: &mut Req, b: &str, k: &str, q: &Query) -> R {
    add_bucket_resource(req, b);
    add_object_resource(req, b, k);
    let version = versions::requested_version(req, q)?;
    let bucket = authorize_on(req, versions::action(req), b, Some(k))?;
    let meta = versions::object_for_read(req, &bucket, k, version.as_deref())?;
    let mut r = tagging_xml(req, &meta.tags);
    versions::version_header(req, &mut r, &meta);
    Ok(r)
}

async fn put_object_tagging(req: &mut Req, b: &str, k: &str, q: &Query) -> R {
    add_bucket_resource(req, b);
    add_object_resource(req, b, k);
    let body = decoded_body(req).await?;
    integrity_small(req, &body)?;
    let tags = body_tags(&body.data, MAX_OBJECT_TAGS)?;
    request_object_tags(req, &tags);
    let version = versions::requested_version(req, q)?;
    let bucket = authorize_on(req, versions::action(req), b, Some(k))?;
    let meta = versions::object_for_read(req, &bucket, k, version.as_deref())?;
    req.kc
        .put_object_tags(b, k, Some(meta.version()), tags)
        .await?;
    let mut r = empty(req, 200);
    versions::version_header(req, &mut r, &meta);
    Ok(r)
}

async fn delete_object_tagging(req: &mut Req, b: &str, k: &str, q: &Query) -> R {
    add_bucket_resource(req, b);
    add_object_resource(req, b, k);
    let version = versions::requested_version(req, q)?;
    let bucket = authorize_on(req, versions::action(req), b, Some(k))?;
    let meta = versions::object_for_read(req, &bucket, k, version.as_deref())?;
    req.kc
        .put_object_tags(b, k, Some(meta.version()), BTreeMap::new())
        .await?;
    let mut r = empty(req, 204);
    versions::version_header(req, &mut r, &meta);
    Ok(r)
}

async fn get_bucket_tagging(req: &mut Req, b: &str) -> R {
    add_bucket_resource(req, b);
    let bucket = authorize_on(req, "s3:GetBucketTagging", b, None)?;
    if bucket.tags.is_empty() {
        return Err(ServiceError::NoSuchTagSet(
            "The TagSet does not exist".into(),
        ));
    }
    Ok(tagging_xml(req, &bucket.tags))
}

async fn put_bucket_tagging(req: &mut Req, b: &str) -> R {
    add_bucket_resource(req, b);
    let body = decoded_body(req).await?;
    integrity_small(req, &body)?;
    let tags = body_tags(&body.data, MAX_BUCKET_TAGS)?;
    req.request_tags(tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    authorize_on(req, "s3:PutBucketTagging", b, None)?;
    req.kc.put_bucket_tags(b, tags).await?;
    Ok(empty(req, 204))
}

/// DeleteBucketTagging is authorized as `s3:PutBucketTagging`, as on AWS.
async fn delete_bucket_tagging(req: &mut Req, b: &str) -> R {
    add_bucket_resource(req, b);
    authorize_on(req, "s3:PutBucketTagging", b, None)?;
    req.kc.put_bucket_tags(b, BTreeMap::new()).await?;
    Ok(empty(req, 204))
}

// -------------------------------------------------------------- multipart

fn upload_id(q: &Query) -> Result<&str, ServiceError> {
    q.get("uploadId").filter(|u| !u.is_empty()).ok_or_else(|| {
        ServiceError::NoSuchUpload("The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.".into())
    })
}

fn part_number(q: &Query) -> Result<u32, ServiceError> {
    q.get("partNumber")
        .and_then(|p| p.parse::<u32>().ok())
        .filter(|n| (1..=10_000).contains(n))
        .ok_or_else(|| {
            ServiceError::InvalidArgument(
                "Part number must be an integer between 1 and 10000, inclusive".into(),
            )
        })
}

async fn create_multipart(req: &mut Req, b: &str, k: &str) -> R {
    add_bucket_resource(req, b);
    add_object_resource(req, b, k);
    let tags = header_tags(req)?.unwrap_or_default();
    request_object_tags(req, &tags);
    let bucket = authorize_on(req, "s3:PutObject", b, Some(k))?;
    svc::validate_key(k)?;
    check_acl_header(req)?;
    crate::s3_settings::object_write_acl(req, &bucket, k)?;
    let metadata = user_metadata(req)?;
    let mut account = acting_account(req);
    if account.is_empty() {
        account = bucket.account.clone();
    }
    let u = req
        .kc
        .create_multipart(&account, b, k, content_type(req), metadata, tags)
        .await?;
    let mut w = XmlWriter::new();
    w.start_ns("InitiateMultipartUploadResult", S3_XMLNS)
        .elem("Bucket", b)
        .elem("Key", k)
        .elem("UploadId", &u.id)
        .end("InitiateMultipartUploadResult");
    let mut r = xml(req, w);
    put_header(&mut r, "x-amz-server-side-encryption", "AES256");
    for h in ["x-amz-checksum-algorithm", "x-amz-checksum-type"] {
        if let Some(v) = req.header(h).map(str::to_string) {
            put_header(&mut r, h, &v);
        }
    }
    req.audit.response = serde_json::json!({ "uploadId": u.id });
    Ok(r)
}

async fn upload_part(req: &mut Req, b: &str, k: &str, q: &Query) -> R {
    add_bucket_resource(req, b);
    add_object_resource(req, b, k);
    authorize_on(req, "s3:PutObject", b, Some(k))?;
    let n = part_number(q)?;
    let id = upload_id(q)?.to_string();
    req.kc.list_parts(b, k, &id)?;
    let got = receive(req).await?;
    let checksums = integrity(req, &got.digested, &got.trailers)?;
    let md5 = got
        .digested
        .md5
        .ok_or_else(|| ServiceError::Internal("no MD5 computed".into()))?;
    let part = req
        .kc
        .upload_part_staged(b, k, &id, n, got.staged, md5)
        .await?;
    let mut r = empty(req, 200);
    put_header(&mut r, "etag", &part.etag);
    put_header(&mut r, "x-amz-server-side-encryption", "AES256");
    for (k, v) in &checksums {
        put_header(&mut r, k, v);
    }
    Ok(r)
}

async fn upload_part_copy(req: &mut Req, b: &str, k: &str, q: &Query) -> R {
    add_bucket_resource(req, b);
    add_object_resource(req, b, k);
    authorize_on(req, "s3:PutObject", b, Some(k))?;
    let n = part_number(q)?;
    let id = upload_id(q)?.to_string();
    let src = copy_source_meta(req)?;
    let range = match req.header("x-amz-copy-source-range") {
        None => None,
        Some(h) => {
            let bad = || {
                ServiceError::InvalidArgument(format!(
                    "Range specified is not valid for source object of size: {}",
                    src.size
                ))
            };
            let spec = h.trim().strip_prefix("bytes=").ok_or_else(bad)?;
            let (a, e) = spec.split_once('-').ok_or_else(bad)?;
            let a = a.trim().parse::<u64>().map_err(|_| bad())?;
            let e = e.trim().parse::<u64>().map_err(|_| bad())?;
            if e < a || e >= src.size {
                return Err(bad());
            }
            Some((a, e - a + 1))
        }
    };
    req.kc.list_parts(b, k, &id)?;
    let (src, f) = open_source(req, src, range.is_some())?;
    let (start, len) = range.unwrap_or((0, src.size));
    let spec = svc::DigestSpec {
        md5: true,
        ..Default::default()
    };
    let mut w = req.kc.object_writer(&spec)?;
    w.copy_from(f, start, len).await?;
    let (staged, digested) = w.finish().await?;
    let md5 = digested
        .md5
        .ok_or_else(|| ServiceError::Internal("no MD5 computed".into()))?;
    let part = req.kc.upload_part_staged(b, k, &id, n, staged, md5).await?;
    let mut w = XmlWriter::new();
    w.start_ns("CopyPartResult", S3_XMLNS)
        .elem("LastModified", &iso_ms(part.last_modified_ms))
        .elem("ETag", &part.etag)
        .end("CopyPartResult");
    Ok(xml(req, w))
}

async fn complete_multipart(req: &mut Req, b: &str, k: &str, q: &Query, host: &str) -> R {
    add_bucket_resource(req, b);
    add_object_resource(req, b, k);
    authorize_on(req, "s3:PutObject", b, Some(k))?;
    let id = upload_id(q)?.to_string();
    let body = decoded_body(req).await?;
    integrity_small(req, &body)?;
    let n = parse_body_xml(&body.data, "CompleteMultipartUpload")?;
    let mut parts = Vec::new();
    for p in n.children_named("Part") {
        let num = p
            .child_text("PartNumber")
            .and_then(|v| v.trim().parse::<u32>().ok())
            .ok_or_else(malformed_xml)?;
        let etag = p.child_text("ETag").ok_or_else(malformed_xml)?;
        parts.push((num, etag.trim().to_string()));
    }
    write_preconditions(req, b, k)?;
    let meta = req.kc.complete_multipart(b, k, &id, &parts).await?;
    let host = req
        .header("host")
        .map(str::to_string)
        .unwrap_or_else(|| host.to_string());
    let location = format!("http://{host}/{b}/{}", utf8_percent_encode(k, URL_SET));
    let mut w = XmlWriter::new();
    w.start_ns("CompleteMultipartUploadResult", S3_XMLNS)
        .elem("Location", &location)
        .elem("Bucket", b)
        .elem("Key", k)
        .elem("ETag", &meta.etag)
        .end("CompleteMultipartUploadResult");
    let mut r = xml(req, w);
    put_header(&mut r, "x-amz-server-side-encryption", "AES256");
    versions::version_header(req, &mut r, &meta);
    Ok(r)
}

async fn abort_multipart(req: &mut Req, b: &str, k: &str, q: &Query) -> R {
    add_bucket_resource(req, b);
    add_object_resource(req, b, k);
    authorize_on(req, "s3:AbortMultipartUpload", b, Some(k))?;
    let id = upload_id(q)?.to_string();
    req.kc.abort_multipart(b, k, &id).await?;
    Ok(empty(req, 204))
}

async fn list_parts(req: &mut Req, b: &str, k: &str, q: &Query) -> R {
    add_bucket_resource(req, b);
    add_object_resource(req, b, k);
    let bucket = authorize_on(req, "s3:ListMultipartUploadParts", b, Some(k))?;
    let id = upload_id(q)?.to_string();
    let max = parse_max(q, "max-parts", 1000)?;
    let marker = match q.get("part-number-marker") {
        None | Some("") => 0,
        Some(v) => v.parse::<u32>().map_err(|_| {
            ServiceError::InvalidArgument(
                "Provided part-number-marker not an integer or within integer range".into(),
            )
        })?,
    };
    let u = req.kc.list_parts(b, k, &id)?;
    let parts: Vec<_> = u.parts.values().filter(|p| p.number > marker).collect();
    let truncated = parts.len() > max;
    let page = parts.get(..max).unwrap_or(parts.as_slice());
    let mut w = XmlWriter::new();
    w.start_ns("ListPartsResult", S3_XMLNS)
        .elem("Bucket", b)
        .elem("Key", k)
        .elem("UploadId", &id);
    owner_xml(&mut w, "Initiator", &u.owner_account);
    owner_xml(&mut w, "Owner", &bucket.account);
    w.elem("StorageClass", "STANDARD")
        .elem_display("PartNumberMarker", marker)
        .elem_display(
            "NextPartNumberMarker",
            page.last().map_or(marker, |p| p.number),
        )
        .elem_display("MaxParts", max)
        .elem("IsTruncated", if truncated { "true" } else { "false" });
    for p in page {
        w.start("Part")
            .elem_display("PartNumber", p.number)
            .elem("LastModified", &iso_ms(p.last_modified_ms))
            .elem("ETag", &p.etag)
            .elem_display("Size", p.size)
            .end("Part");
    }
    w.end("ListPartsResult");
    Ok(xml(req, w))
}

async fn list_uploads(req: &mut Req, b: &str, q: &Query) -> R {
    add_bucket_resource(req, b);
    let p = list_params(req, q)?;
    let bucket = authorize_on(req, "s3:ListBucketMultipartUploads", b, None)?;
    let max = parse_max(q, "max-uploads", 1000)?;
    let key_marker = q.get("key-marker").unwrap_or("");
    let id_marker = q.get("upload-id-marker").unwrap_or("");
    let mut uploads = req.kc.list_uploads(b)?;
    uploads.retain(|u| u.key.starts_with(&p.prefix));
    uploads.sort_by(|x, y| {
        (x.key.as_str(), x.initiated_ms, x.id.as_str()).cmp(&(
            y.key.as_str(),
            y.initiated_ms,
            y.id.as_str(),
        ))
    });
    if !key_marker.is_empty() {
        let pos = if id_marker.is_empty() {
            uploads
                .iter()
                .position(|u| u.key.as_str() > key_marker)
                .unwrap_or(uploads.len())
        } else {
            uploads
                .iter()
                .position(|u| u.key == key_marker && u.id == id_marker)
                .map(|i| i + 1)
                .unwrap_or_else(|| {
                    uploads
                        .iter()
                        .position(|u| u.key.as_str() > key_marker)
                        .unwrap_or(uploads.len())
                })
        };
        uploads.drain(..pos);
    }
    // Roll up by delimiter.
    let delim = p.delimiter.as_deref().filter(|d| !d.is_empty());
    let mut entries = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut truncated = false;
    for u in &uploads {
        if entries.len() + prefixes.len() >= max {
            truncated = true;
            break;
        }
        if let Some(d) = delim
            && let Some(i) = u.key[p.prefix.len()..].find(d)
        {
            let cp = u.key[..p.prefix.len() + i + d.len()].to_string();
            if prefixes.last() != Some(&cp) {
                prefixes.push(cp);
            }
            continue;
        }
        entries.push(u);
    }
    let u = p.url;
    let mut w = XmlWriter::new();
    w.start_ns("ListMultipartUploadsResult", S3_XMLNS)
        .elem("Bucket", b)
        .elem("KeyMarker", &enc(u, key_marker))
        .elem("UploadIdMarker", id_marker)
        .elem("Prefix", &enc(u, &p.prefix));
    if let Some(d) = &p.delimiter {
        w.elem("Delimiter", &enc(u, d));
    }
    if truncated && let Some(last) = entries.last() {
        w.elem("NextKeyMarker", &enc(u, &last.key))
            .elem("NextUploadIdMarker", &last.id);
    }
    w.elem_display("MaxUploads", max)
        .elem("IsTruncated", if truncated { "true" } else { "false" });
    if u {
        w.elem("EncodingType", "url");
    }
    for x in &entries {
        w.start("Upload")
            .elem("Key", &enc(u, &x.key))
            .elem("UploadId", &x.id);
        owner_xml(&mut w, "Initiator", &x.owner_account);
        owner_xml(&mut w, "Owner", &bucket.account);
        w.elem("StorageClass", "STANDARD")
            .elem("Initiated", &iso_ms(x.initiated_ms))
            .end("Upload");
    }
    for cp in &prefixes {
        w.start("CommonPrefixes")
            .elem("Prefix", &enc(u, cp))
            .end("CommonPrefixes");
    }
    w.end("ListMultipartUploadsResult");
    Ok(xml(req, w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_hosts() {
        assert_eq!(
            virtual_bucket("my-bucket.localhost").as_deref(),
            Some("my-bucket")
        );
        assert_eq!(
            virtual_bucket("my-bucket.s3.localhost").as_deref(),
            Some("my-bucket")
        );
        assert_eq!(
            virtual_bucket("my-bucket.127.0.0.1.nip.io").as_deref(),
            Some("my-bucket")
        );
        assert_eq!(virtual_bucket("localhost"), None);
        assert_eq!(virtual_bucket("s3.localhost"), None);
        assert_eq!(virtual_bucket("127.0.0.1"), None);
        assert_eq!(virtual_bucket("127.0.0.1.nip.io"), None);
        assert_eq!(virtual_bucket("my-bucket.example.com"), None);
        assert_eq!(virtual_bucket("Bad_Name.localhost"), None);
    }

    #[test]
    fn ranges() {
        assert!(matches!(parse_range("bytes=0-4", 10), Range::Part(0, 4)));
        assert!(matches!(parse_range("bytes=5-", 10), Range::Part(5, 9)));
        assert!(matches!(parse_range("bytes=-3", 10), Range::Part(7, 9)));
        assert!(matches!(parse_range("bytes=-30", 10), Range::Part(0, 9)));
        assert!(matches!(parse_range("bytes=2-100", 10), Range::Part(2, 9)));
        assert!(matches!(parse_range("bytes=10-", 10), Range::Unsatisfiable));
        assert!(matches!(parse_range("bytes=-0", 10), Range::Unsatisfiable));
        assert!(matches!(parse_range("bytes=0-", 0), Range::Unsatisfiable));
        assert!(matches!(parse_range("bytes=5-2", 10), Range::Full));
        assert!(matches!(parse_range("bytes=a-b", 10), Range::Full));
        assert!(matches!(parse_range("items=0-1", 10), Range::Full));
        assert!(matches!(parse_range("bytes=0-1,3-4", 10), Range::Full));
    }

    #[test]
    fn dates() {
        assert_eq!(iso_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(
            http_date(1_700_000_000_123),
            "Tue, 14 Nov 2023 22:13:20 GMT"
        );
    }

    #[test]
    fn etags() {
        assert!(etag_matches("\"abc\"", "\"abc\""));
        assert!(etag_matches("abc", "\"abc\""));
        assert!(etag_matches("\"x\", \"abc\"", "\"abc\""));
        assert!(etag_matches("*", "\"abc\""));
        assert!(!etag_matches("\"abd\"", "\"abc\""));
    }
}
