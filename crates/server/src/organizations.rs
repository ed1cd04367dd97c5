//! AWS Organizations (JSON 1.1). keycard accounts belong to no
//! organization, so after authorization every call answers what AWS
//! answers such an account: `AWSOrganizationsNotInUseException`.

use axum::body::Body;
use http::Response;
use keycard_services::ServiceError;
use keycard_services::auth::ResourcePolicy;

use crate::Req;

pub fn handle(req: &mut Req) -> Result<Response<Body>, ServiceError> {
    req.audit.params = serde_json::from_slice(&req.body).unwrap_or(serde_json::Value::Null);
    let action = req.op.actions.first().copied().unwrap_or("organizations:*");
    req.authorize(action, "*", None, ResourcePolicy::None)?;
    Err(ServiceError::OrganizationsNotInUse(
        "Your account is not a member of an organization.".into(),
    ))
}
