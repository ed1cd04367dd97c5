//! Error rendering per protocol: the one place where a service error
//! becomes AWS's wire format for the API that was called.

use axum::body::Body;
use http::{Response, StatusCode};
use keycard_proto::xml;
use keycard_services::ServiceError;

/// The wire protocols keycard speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Iam,
    Sts,
    S3,
    Ec2,
    CloudTrail,
}

impl Protocol {
    pub fn for_service(service: &str) -> Protocol {
        match service {
            "sts" => Protocol::Sts,
            "s3" => Protocol::S3,
            "ec2" => Protocol::Ec2,
            "cloudtrail" => Protocol::CloudTrail,
            _ => Protocol::Iam,
        }
    }

    pub fn event_source(self) -> &'static str {
        match self {
            Protocol::Iam => "iam.amazonaws.com",
            Protocol::Sts => "sts.amazonaws.com",
            Protocol::S3 => "s3.amazonaws.com",
            Protocol::Ec2 => "ec2.amazonaws.com",
            Protocol::CloudTrail => "cloudtrail.amazonaws.com",
        }
    }
}

/// S3 names some authentication failures differently.
fn s3_code(e: &ServiceError) -> (&'static str, u16, String) {
    match e {
        ServiceError::InvalidClientTokenId(_) => (
            "InvalidAccessKeyId",
            403,
            "The AWS Access Key Id you provided does not exist in our records.".into(),
        ),
        ServiceError::ExpiredToken(_) => (
            "ExpiredToken",
            400,
            "The provided token has expired.".into(),
        ),
        ServiceError::MissingAuthenticationToken(m) => ("AccessDenied", 403, m.clone()),
        ServiceError::IncompleteSignature(m) => ("AccessDenied", 403, m.clone()),
        ServiceError::ValidationError(m) => ("InvalidArgument", 400, m.clone()),
        ServiceError::InvalidInput(m) => ("InvalidArgument", 400, m.clone()),
        ServiceError::MalformedPolicyDocument(m) => ("MalformedPolicy", 400, m.clone()),
        other => (other.code(), other.status(), other.message()),
    }
}

pub fn error(protocol: Protocol, e: &ServiceError, request_id: &str, path: &str) -> Response<Body> {
    if matches!(e, ServiceError::Internal(_)) {
        tracing::error!(request_id, error = %e, "internal error");
    }
    let (status, body, ctype) = match protocol {
        Protocol::Iam | Protocol::Sts => {
            let ns = if protocol == Protocol::Iam {
                xml::IAM_XMLNS
            } else {
                xml::STS_XMLNS
            };
            let fault = if e.is_sender_fault() {
                "Sender"
            } else {
                "Receiver"
            };
            (
                e.status(),
                xml::query_error(ns, fault, e.code(), &e.message(), request_id),
                "text/xml",
            )
        }
        Protocol::Ec2 => {
            let (code, status) = match e {
                ServiceError::AccessDenied(_) => ("UnauthorizedOperation", 403),
                ServiceError::InvalidClientTokenId(_) | ServiceError::SignatureDoesNotMatch(_) => {
                    ("AuthFailure", 401)
                }
                other => (other.code(), other.status()),
            };
            (
                status,
                xml::ec2_error(code, &e.message(), request_id),
                "text/xml",
            )
        }
        Protocol::S3 => {
            let (code, status, msg) = s3_code(e);
            (
                status,
                xml::s3_error(code, &msg, Some(path), request_id),
                "application/xml",
            )
        }
        Protocol::CloudTrail => {
            let code = match e {
                ServiceError::ValidationError(_) | ServiceError::InvalidInput(_) => {
                    "InvalidLookupAttributesException"
                }
                other => other.code(),
            };
            let body = serde_json::json!({"__type": code, "message": e.message()}).to_string();
            (e.status(), body, "application/x-amz-json-1.1")
        }
    };
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(ctype),
    );
    if let Ok(v) = http::HeaderValue::from_str(request_id) {
        r.headers_mut().insert("x-amz-request-id", v.clone());
        r.headers_mut().insert("x-amzn-requestid", v);
    }
    r
}
