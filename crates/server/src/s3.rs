//! The S3 REST-XML API.

use axum::body::Body;
use http::Response;
use keycard_services::ServiceError;

use crate::Req;

pub async fn handle(req: &mut Req) -> Result<Response<Body>, ServiceError> {
    req.audit.event_name = "Unknown".into();
    Err(ServiceError::NotImplemented("S3 is not wired yet".into()))
}
