//! `GET /_keycard/admin/access-keys/{id}`: what keycard knows about an
//! access key id found outside it (`keycard scan`): status, owner, account,
//! dates. Behind the same admin token as the other admin paths.

use axum::body::Body;
use http::{Response, StatusCode};
use keycard_services::Keycard;

/// Access key ids are 16 to 128 characters of `A-Z0-9` (IAM's constraint).
fn valid_id(id: &str) -> bool {
    (16..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

fn json(status: StatusCode, v: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Body::from(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

pub(crate) async fn found_key(kc: &Keycard, id: &str) -> Response<Body> {
    if !valid_id(id) {
        return json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "ValidationError",
                "message": "an access key id is 16 to 128 characters of A-Z and 0-9"}),
        );
    }
    match kc.found_key(id).await {
        Ok(k) => json(
            StatusCode::OK,
            serde_json::to_value(k).unwrap_or(serde_json::Value::Null),
        ),
        Err(e) => json(
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            serde_json::json!({"error": e.code(), "message": e.message()}),
        ),
    }
}
