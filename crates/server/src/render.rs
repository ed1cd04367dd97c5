//! Error rendering per protocol: a service error becomes AWS's wire format
//! for the API that was called. Which code and status each protocol uses
//! is decided in one table, `ServiceError::wire`.

use axum::body::Body;
use http::request::Parts;
use http::{Response, StatusCode};
use keycard_proto::xml;
use keycard_services::{ServiceError, Wire};

/// The wire protocols keycard speaks, and the shapes of those it doesn't.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Iam,
    Sts,
    S3,
    Ec2,
    CloudTrail,
    /// AWS Organizations (JSON 1.1): answered as for an account in no organization.
    Organizations,
    /// Security Hub (REST-JSON): keycard's findings in ASFF.
    SecurityHub,
    /// GuardDuty (REST-JSON): instance-credential sightings as findings.
    GuardDuty,
    /// IAM Access Analyzer (REST-JSON): policy validation.
    AccessAnalyzer,
    /// A service keycard does not serve, answered in its own family's shape.
    Other(Wire),
}

impl Protocol {
    /// The protocol of a signed request's service (`scope.service`); for a
    /// service keycard does not serve, guessed from the request's shape.
    pub fn for_service(service: &str, parts: &Parts) -> Protocol {
        match service {
            "iam" => Protocol::Iam,
            "sts" => Protocol::Sts,
            "s3" => Protocol::S3,
            "ec2" => Protocol::Ec2,
            "cloudtrail" => Protocol::CloudTrail,
            "organizations" => Protocol::Organizations,
            "securityhub" => Protocol::SecurityHub,
            "guardduty" => Protocol::GuardDuty,
            "access-analyzer" => Protocol::AccessAnalyzer,
            _ => Protocol::Other(shape_of(parts)),
        }
    }

    pub fn event_source(self) -> &'static str {
        match self {
            Protocol::Iam => "iam.amazonaws.com",
            Protocol::Sts => "sts.amazonaws.com",
            Protocol::S3 => "s3.amazonaws.com",
            Protocol::Ec2 => "ec2.amazonaws.com",
            Protocol::CloudTrail => "cloudtrail.amazonaws.com",
            Protocol::Organizations => "organizations.amazonaws.com",
            Protocol::SecurityHub => "securityhub.amazonaws.com",
            Protocol::GuardDuty => "guardduty.amazonaws.com",
            Protocol::AccessAnalyzer => "access-analyzer.amazonaws.com",
            Protocol::Other(_) => "",
        }
    }

    /// The error family this protocol answers in.
    pub fn wire(self) -> Wire {
        match self {
            Protocol::Iam | Protocol::Sts => Wire::Query,
            Protocol::Ec2 => Wire::Ec2,
            Protocol::S3 => Wire::S3,
            Protocol::CloudTrail => Wire::CloudTrail,
            Protocol::Organizations
            | Protocol::SecurityHub
            | Protocol::GuardDuty
            | Protocol::AccessAnalyzer => Wire::Json,
            Protocol::Other(w) => w,
        }
    }
}

/// JSON services carry `X-Amz-Target`; query services a form body or an
/// `Action` parameter; REST-XML is S3's; everything else is REST-JSON.
pub fn shape_of(parts: &Parts) -> Wire {
    if parts.headers.contains_key("x-amz-target") {
        return Wire::Json;
    }
    let ct = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let q = parts.uri.query().unwrap_or("");
    if ct.starts_with("application/x-www-form-urlencoded")
        || q.starts_with("Action=")
        || q.contains("&Action=")
    {
        return Wire::Query;
    }
    Wire::Json
}

pub fn error(protocol: Protocol, e: &ServiceError, request_id: &str, path: &str) -> Response<Body> {
    if matches!(e, ServiceError::Internal(_)) {
        tracing::error!(request_id, error = %e, "internal error");
    }
    let namespace = match protocol {
        Protocol::Sts => xml::STS_XMLNS,
        _ => xml::IAM_XMLNS,
    };
    let w = e.wire(protocol.wire());
    let (body, ctype) = match protocol.wire() {
        Wire::Query => {
            let fault = if w.status < 500 { "Sender" } else { "Receiver" };
            (
                xml::query_error(namespace, fault, w.code, &w.message, request_id),
                "text/xml",
            )
        }
        Wire::Ec2 => (xml::ec2_error(w.code, &w.message, request_id), "text/xml"),
        Wire::S3 => (
            xml::s3_error(w.code, &w.message, Some(path), request_id),
            "application/xml",
        ),
        Wire::CloudTrail | Wire::Json => (
            serde_json::json!({"__type": w.code, "message": w.message}).to_string(),
            "application/x-amz-json-1.1",
        ),
    };
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(w.status).unwrap_or(StatusCode::BAD_REQUEST);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(ctype),
    );
    if protocol.wire() == Wire::Json
        && let Ok(v) = http::HeaderValue::from_str(w.code)
    {
        r.headers_mut().insert("x-amzn-errortype", v);
    }
    if let Ok(v) = http::HeaderValue::from_str(request_id) {
        r.headers_mut().insert("x-amz-request-id", v.clone());
        r.headers_mut().insert("x-amzn-requestid", v);
    }
    r
}

/// A REST-JSON success: the body with `Content-Type: application/json`.
pub fn json_ok(v: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Body::from(v.to_string()));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}
