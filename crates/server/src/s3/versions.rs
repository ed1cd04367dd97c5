//! S3 versioning, lifecycle and GetObjectAttributes on the wire. Which
//! action a call decides comes from its row: `versioned` when the request
//! names a version (`Req::names_version`).

use keycard_services::s3_lifecycle::{self as lc, Filter, Rule, Transition};
use keycard_services::s3_versions::{self as ver, Status, VersionQuery};

use super::*;

/// Whether the request names a version (`?versionId=`).
pub(crate) fn names_version(parts: &Parts) -> bool {
    Query::parse(parts.uri.query()).has("versionId")
}

/// The action this call decides on the object (its row, per version).
pub(crate) fn action(req: &Req) -> &'static str {
    req.op.action(req.names_version)
}

/// The request's version id, checked, with `s3:versionid` in the context.
pub(crate) fn requested_version(req: &mut Req, q: &Query) -> Result<Option<String>, ServiceError> {
    let Some(v) = q.get("versionId") else {
        return Ok(None);
    };
    req.request_key("s3:versionid", v.to_string());
    ver::check_version_id(v)?;
    Ok(Some(v.to_string()))
}

fn method_not_allowed() -> ServiceError {
    ServiceError::MethodNotAllowed(
        "The specified method is not allowed against this resource.".into(),
    )
}

/// The version a read names, or the current object: a delete marker is
/// 405 by version and 404 (with `x-amz-delete-marker`) as the current.
pub(crate) fn object_for_read(
    req: &mut Req,
    bucket: &Bucket,
    k: &str,
    version: Option<&str>,
) -> Result<ObjectMeta, ServiceError> {
    let hidden = |req: &Req, e: ServiceError| {
        if may_list(req, bucket) {
            e
        } else {
            access_denied()
        }
    };
    match version {
        Some(v) => {
            let meta = req
                .kc
                .object_version(&bucket.name, k, v)
                .map_err(|e| hidden(req, e))?;
            if meta.delete_marker {
                marker_headers(req, &meta);
                return Err(method_not_allowed());
            }
            Ok(meta)
        }
        None => match req.kc.get_object_meta(&bucket.name, k) {
            Ok(m) => Ok(m),
            Err(e @ ServiceError::NoSuchKey(_)) => {
                if may_list(req, bucket)
                    && let Some(m) = req.kc.latest_delete_marker(&bucket.name, k)
                {
                    marker_headers(req, &m);
                }
                Err(hidden(req, e))
            }
            Err(e) => Err(e),
        },
    }
}

fn marker_headers(req: &mut Req, m: &ObjectMeta) {
    req.error_headers
        .push(("x-amz-delete-marker", "true".into()));
    req.error_headers
        .push(("x-amz-version-id", m.version().to_string()));
    req.error_headers
        .push(("last-modified", http_date(m.last_modified_ms)));
}

/// Open a named version's data (versions are never rewritten in place).
pub(super) fn open_version(req: &Req, meta: &ObjectMeta) -> Result<std::fs::File, ServiceError> {
    std::fs::File::open(req.kc.object_path(&meta.file)).map_err(|_| {
        ServiceError::Modeled(
            "NoSuchVersion",
            404,
            "The specified version does not exist.".into(),
        )
    })
}

/// `x-amz-version-id` on an answer about `meta`, when its bucket has (or
/// had) versioning.
pub(super) fn version_header(req: &Req, r: &mut Response<Body>, meta: &ObjectMeta) {
    let versioned = meta.version_id.is_some()
        || req
            .kc
            .bucket(&meta.bucket)
            .is_ok_and(|b| Status::of(&b) != Status::Unversioned);
    if versioned {
        put_header(r, "x-amz-version-id", meta.version());
    }
}

// ------------------------------------------------------------ versioning

pub(super) async fn get_bucket_versioning(req: &mut Req, b: &str) -> R {
    add_bucket_resource(req, b);
    let bucket = authorize_on(req, action(req), b, None)?;
    let mut w = XmlWriter::new();
    w.start_ns("VersioningConfiguration", S3_XMLNS);
    if let Some(s) = &bucket.versioning {
        w.elem("Status", s);
    }
    w.end("VersioningConfiguration");
    Ok(xml(req, w))
}

pub(super) async fn put_bucket_versioning(req: &mut Req, b: &str) -> R {
    add_bucket_resource(req, b);
    let body = decoded_body(req).await?;
    integrity_small(req, &body)?;
    let n = parse_body_xml(&body.data, "VersioningConfiguration")?;
    let status = match n.child_text("Status").map(str::trim) {
        Some(s @ ("Enabled" | "Suspended")) => s.to_string(),
        _ => return Err(malformed_xml()),
    };
    let mfa_delete = n.child_text("MfaDelete").map(str::trim);
    if !matches!(mfa_delete, None | Some("Enabled" | "Disabled")) {
        return Err(malformed_xml());
    }
    authorize_on(req, action(req), b, None)?;
    if mfa_delete == Some("Enabled") {
        // S3 changes MFA delete only with the root user's MFA code
        // (`x-amz-mfa`); keycard keeps no root MFA device to check it.
        return Err(match req.header("x-amz-mfa") {
            None => ServiceError::AccessDenied(
                "Mfa Authentication must be used for this request".into(),
            ),
            Some(_) => ServiceError::NotImplemented("keycard does not support MFA delete".into()),
        });
    }
    req.kc.put_bucket_versioning(b, &status).await?;
    Ok(empty(req, 200))
}

pub(super) async fn list_versions(req: &mut Req, b: &str, q: &Query) -> R {
    add_bucket_resource(req, b);
    let p = list_params(req, q)?;
    let key_marker = q.get("key-marker").filter(|m| !m.is_empty());
    let version_marker = q.get("version-id-marker").filter(|m| !m.is_empty());
    if let Some(v) = version_marker {
        if key_marker.is_none() {
            return Err(ServiceError::InvalidArgument(
                "A version-id marker cannot be specified without a key marker.".into(),
            ));
        }
        ver::check_version_id(v)?;
    }
    let bucket = authorize_on(req, action(req), b, None)?;
    let page = req.kc.list_object_versions(
        b,
        &VersionQuery {
            prefix: &p.prefix,
            delimiter: p.delimiter.as_deref(),
            key_marker,
            version_marker,
            max: p.max_keys,
        },
    )?;
    let u = p.url;
    let mut w = XmlWriter::new();
    w.start_ns("ListVersionsResult", S3_XMLNS)
        .elem("Name", b)
        .elem("Prefix", &enc(u, &p.prefix))
        .elem("KeyMarker", &enc(u, key_marker.unwrap_or("")))
        .elem("VersionIdMarker", version_marker.unwrap_or(""))
        .elem_display("MaxKeys", p.max_keys);
    if let Some(d) = &p.delimiter {
        w.elem("Delimiter", &enc(u, d));
    }
    if u {
        w.elem("EncodingType", "url");
    }
    w.elem("IsTruncated", if page.truncated { "true" } else { "false" });
    if page.truncated {
        if let Some(k) = &page.next_key {
            w.elem("NextKeyMarker", &enc(u, k));
        }
        if let Some(v) = &page.next_version {
            w.elem("NextVersionIdMarker", v);
        }
    }
    for (o, latest) in &page.entries {
        let tag = if o.delete_marker {
            "DeleteMarker"
        } else {
            "Version"
        };
        w.start(tag)
            .elem("Key", &enc(u, &o.key))
            .elem("VersionId", o.version())
            .elem("IsLatest", if *latest { "true" } else { "false" })
            .elem("LastModified", &iso_ms(o.last_modified_ms));
        if !o.delete_marker {
            w.elem("ETag", &o.etag).elem_display("Size", o.size);
        }
        owner_xml(&mut w, "Owner", &bucket.account);
        if !o.delete_marker {
            w.elem("StorageClass", "STANDARD");
        }
        w.end(tag);
    }
    for cp in &page.common_prefixes {
        w.start("CommonPrefixes")
            .elem("Prefix", &enc(u, cp))
            .end("CommonPrefixes");
    }
    w.end("ListVersionsResult");
    Ok(xml(req, w))
}

// ------------------------------------------------------------- lifecycle

fn no_lifecycle() -> ServiceError {
    ServiceError::Modeled(
        "NoSuchLifecycleConfiguration",
        404,
        "The lifecycle configuration does not exist".into(),
    )
}

pub(super) async fn get_lifecycle(req: &mut Req, b: &str) -> R {
    add_bucket_resource(req, b);
    let bucket = authorize_on(req, action(req), b, None)?;
    let rules = bucket.lifecycle.clone().ok_or_else(no_lifecycle)?;
    let mut w = XmlWriter::new();
    w.start_ns("LifecycleConfiguration", S3_XMLNS);
    for r in &rules {
        rule_xml(&mut w, r);
    }
    w.end("LifecycleConfiguration");
    let mut resp = xml(req, w);
    put_header(
        &mut resp,
        "x-amz-transition-default-minimum-object-size",
        "all_storage_classes_128K",
    );
    Ok(resp)
}

pub(super) async fn put_lifecycle(req: &mut Req, b: &str) -> R {
    add_bucket_resource(req, b);
    let body = decoded_body(req).await?;
    integrity_small(req, &body)?;
    let n = parse_body_xml(&body.data, "LifecycleConfiguration")?;
    let rules = n
        .children_named("Rule")
        .map(parse_rule)
        .collect::<Result<Vec<_>, _>>()?;
    lc::validate(&rules)?;
    authorize_on(req, action(req), b, None)?;
    req.kc.put_bucket_lifecycle(b, rules).await?;
    let mut r = empty(req, 200);
    put_header(
        &mut r,
        "x-amz-transition-default-minimum-object-size",
        "all_storage_classes_128K",
    );
    Ok(r)
}

pub(super) async fn delete_lifecycle(req: &mut Req, b: &str) -> R {
    add_bucket_resource(req, b);
    authorize_on(req, action(req), b, None)?;
    req.kc.set_lifecycle(b, None).await?;
    Ok(empty(req, 204))
}

fn uint<T: std::str::FromStr>(n: &XmlNode, name: &str) -> Result<Option<T>, ServiceError> {
    n.child_text(name)
        .map(|t| t.trim().parse::<T>().map_err(|_| malformed_xml()))
        .transpose()
}

fn tag_of(n: &XmlNode) -> Result<(String, String), ServiceError> {
    let k = n.child_text("Key").ok_or_else(malformed_xml)?;
    let v = n.child_text("Value").unwrap_or("");
    Ok((k.to_string(), v.to_string()))
}

fn parse_filter(n: &XmlNode) -> Result<Filter, ServiceError> {
    let direct = [
        "Prefix",
        "Tag",
        "ObjectSizeGreaterThan",
        "ObjectSizeLessThan",
        "And",
    ]
    .iter()
    .filter(|c| n.child(c).is_some())
    .count();
    if direct > 1 {
        return Err(malformed_xml());
    }
    let (src, and) = match n.child("And") {
        Some(a) => (a, true),
        None => (n, false),
    };
    let mut tags = Vec::new();
    for t in src.children_named("Tag") {
        tags.push(tag_of(t)?);
    }
    Ok(Filter {
        prefix: src.child_text("Prefix").map(str::to_string),
        tags,
        size_greater_than: uint(src, "ObjectSizeGreaterThan")?,
        size_less_than: uint(src, "ObjectSizeLessThan")?,
        and,
    })
}

fn parse_date_midnight(text: &str) -> Result<(String, i64), ServiceError> {
    let t = text.trim();
    let ms = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .ok()
        .or_else(|| {
            time::PrimitiveDateTime::parse(
                t,
                time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
            )
            .ok()
            .map(time::PrimitiveDateTime::assume_utc)
        })
        .map(|d| (d.unix_timestamp_nanos() / 1_000_000) as i64)
        .ok_or_else(|| ServiceError::InvalidArgument("Invalid date format".into()))?;
    Ok((iso_ms(ms), ms))
}

fn parse_transition(n: &XmlNode, noncurrent: bool) -> Result<Transition, ServiceError> {
    let days_tag = if noncurrent { "NoncurrentDays" } else { "Days" };
    Ok(Transition {
        days: uint(n, days_tag)?,
        date: n.child_text("Date").map(|d| d.trim().to_string()),
        newer_noncurrent: uint(n, "NewerNoncurrentVersions")?,
        storage_class: n
            .child_text("StorageClass")
            .ok_or_else(malformed_xml)?
            .trim()
            .to_string(),
    })
}

fn parse_rule(n: &XmlNode) -> Result<Rule, ServiceError> {
    let enabled = match n.child_text("Status").map(str::trim) {
        Some("Enabled") => true,
        Some("Disabled") => false,
        _ => return Err(malformed_xml()),
    };
    let legacy_prefix = n.child_text("Prefix").map(str::to_string);
    let filter = match (n.child("Filter"), &legacy_prefix) {
        (Some(_), Some(_)) | (None, None) => return Err(malformed_xml()),
        (Some(f), None) => parse_filter(f)?,
        (None, Some(_)) => Filter::default(),
    };
    let id = match n.child_text("ID") {
        Some(i) => i.to_string(),
        // S3 names a rule without an ID itself.
        None => ver::new_version_id(),
    };
    let mut r = Rule {
        id,
        enabled,
        legacy_prefix,
        filter,
        ..Rule::default()
    };
    if let Some(e) = n.child("Expiration") {
        r.expiration_date = e.child_text("Date").map(parse_date_midnight).transpose()?;
        r.expiration_days = uint(e, "Days")?;
        r.expired_object_delete_marker =
            match e.child_text("ExpiredObjectDeleteMarker").map(str::trim) {
                None => None,
                Some("true") => Some(true),
                Some("false") => Some(false),
                Some(_) => return Err(malformed_xml()),
            };
        let given = [
            r.expiration_date.is_some(),
            r.expiration_days.is_some(),
            r.expired_object_delete_marker.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(malformed_xml());
        }
    }
    if let Some(e) = n.child("NoncurrentVersionExpiration") {
        r.noncurrent_days = Some(uint(e, "NoncurrentDays")?.ok_or_else(malformed_xml)?);
        r.newer_noncurrent = uint(e, "NewerNoncurrentVersions")?;
    }
    if let Some(a) = n.child("AbortIncompleteMultipartUpload") {
        r.abort_days = Some(uint(a, "DaysAfterInitiation")?.ok_or_else(malformed_xml)?);
    }
    for t in n.children_named("Transition") {
        r.transitions.push(parse_transition(t, false)?);
    }
    for t in n.children_named("NoncurrentVersionTransition") {
        r.noncurrent_transitions.push(parse_transition(t, true)?);
    }
    Ok(r)
}

fn filter_xml(w: &mut XmlWriter, f: &Filter) {
    w.start("Filter");
    if f.and {
        w.start("And");
    }
    if let Some(p) = &f.prefix {
        w.elem("Prefix", p);
    }
    for (k, v) in &f.tags {
        w.start("Tag").elem("Key", k).elem("Value", v).end("Tag");
    }
    if let Some(n) = f.size_greater_than {
        w.elem_display("ObjectSizeGreaterThan", n);
    }
    if let Some(n) = f.size_less_than {
        w.elem_display("ObjectSizeLessThan", n);
    }
    if f.and {
        w.end("And");
    }
    w.end("Filter");
}

fn transition_xml(w: &mut XmlWriter, tag: &str, t: &Transition, noncurrent: bool) {
    w.start(tag);
    if let Some(d) = &t.date {
        w.elem("Date", d);
    }
    if let Some(d) = t.days {
        w.elem_display(if noncurrent { "NoncurrentDays" } else { "Days" }, d);
    }
    if let Some(n) = t.newer_noncurrent {
        w.elem_display("NewerNoncurrentVersions", n);
    }
    w.elem("StorageClass", &t.storage_class).end(tag);
}

fn rule_xml(w: &mut XmlWriter, r: &Rule) {
    w.start("Rule").elem("ID", &r.id);
    match &r.legacy_prefix {
        Some(p) => {
            w.elem("Prefix", p);
        }
        None => filter_xml(w, &r.filter),
    }
    w.elem("Status", if r.enabled { "Enabled" } else { "Disabled" });
    if r.expiration_date.is_some()
        || r.expiration_days.is_some()
        || r.expired_object_delete_marker.is_some()
    {
        w.start("Expiration");
        if let Some((d, _)) = &r.expiration_date {
            w.elem("Date", d);
        }
        if let Some(d) = r.expiration_days {
            w.elem_display("Days", d);
        }
        if let Some(m) = r.expired_object_delete_marker {
            w.elem_display("ExpiredObjectDeleteMarker", m);
        }
        w.end("Expiration");
    }
    for t in &r.transitions {
        transition_xml(w, "Transition", t, false);
    }
    for t in &r.noncurrent_transitions {
        transition_xml(w, "NoncurrentVersionTransition", t, true);
    }
    if let Some(d) = r.noncurrent_days {
        w.start("NoncurrentVersionExpiration")
            .elem_display("NoncurrentDays", d);
        if let Some(n) = r.newer_noncurrent {
            w.elem_display("NewerNoncurrentVersions", n);
        }
        w.end("NoncurrentVersionExpiration");
    }
    if let Some(d) = r.abort_days {
        w.start("AbortIncompleteMultipartUpload")
            .elem_display("DaysAfterInitiation", d)
            .end("AbortIncompleteMultipartUpload");
    }
    w.end("Rule");
}

// --------------------------------------------------- GetObjectAttributes

const ATTRIBUTES: &[&str] = &[
    "ETag",
    "Checksum",
    "ObjectParts",
    "StorageClass",
    "ObjectSize",
];

pub(super) async fn get_object_attributes(req: &mut Req, b: &str, k: &str, q: &Query) -> R {
    add_bucket_resource(req, b);
    add_object_resource(req, b, k);
    let version = requested_version(req, q)?;
    let wanted: Vec<String> = req
        .header("x-amz-object-attributes")
        .unwrap_or("")
        .split(',')
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    if wanted.is_empty() {
        return Err(ServiceError::InvalidRequest(
            "The x-amz-object-attributes header specifying the attributes to be retrieved is either missing or empty".into(),
        ));
    }
    if wanted.iter().any(|a| !ATTRIBUTES.contains(&a.as_str())) {
        return Err(ServiceError::InvalidArgument(
            "Invalid attribute name specified.".into(),
        ));
    }
    let bucket = authorize_on(req, action(req), b, Some(k))?;
    let meta = object_for_read(req, &bucket, k, version.as_deref())?;
    let has = |a: &str| wanted.iter().any(|w| w == a);
    let mut w = XmlWriter::new();
    w.start_ns("GetObjectAttributesResponse", S3_XMLNS);
    if has("ETag") {
        w.elem("ETag", meta.etag.trim_matches('"'));
    }
    let checksums: Vec<(&String, &String)> = meta
        .headers
        .iter()
        .filter(|(h, _)| h.starts_with("x-amz-checksum-") && *h != "x-amz-checksum-type")
        .collect();
    if has("Checksum") && !checksums.is_empty() {
        w.start("Checksum");
        for (h, v) in checksums {
            if let Some(alg) = h.strip_prefix("x-amz-checksum-") {
                w.elem(&checksum_tag(alg), v);
            }
        }
        w.elem("ChecksumType", "FULL_OBJECT").end("Checksum");
    }
    if has("ObjectParts")
        && let Some(n) = meta.parts_count
    {
        w.start("ObjectParts")
            .elem_display("PartsCount", n)
            .end("ObjectParts");
    }
    if has("StorageClass") {
        w.elem("StorageClass", "STANDARD");
    }
    if has("ObjectSize") {
        w.elem_display("ObjectSize", meta.size);
    }
    w.end("GetObjectAttributesResponse");
    let mut r = xml(req, w);
    put_header(&mut r, "last-modified", &http_date(meta.last_modified_ms));
    version_header(req, &mut r, &meta);
    Ok(r)
}
