//! `--compat moto`: the reset endpoints that suites written for
//! `moto_server` call, so they run against keycard unchanged.

use axum::body::Body;
use http::request::Parts;
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use keycard_services::Keycard;

fn json(status: StatusCode, v: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Body::from(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// The body of `reset-auth`: a request count, or `inf` / `Infinity` (what
/// moto's client posts back when restoring the count it read, meaning
/// "never enforce").
fn parse_count(text: &str) -> Option<u64> {
    let t = text.trim().trim_matches('"').trim();
    if ["inf", "infinity", "+inf", "+infinity"].contains(&t.to_ascii_lowercase().as_str()) {
        return Some(u64::MAX);
    }
    if let Ok(n) = t.parse::<u64>() {
        return Some(n);
    }
    // moto keeps the count as a float, so `4.0` is what it may echo back.
    let f: f64 = t.parse().ok()?;
    (f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f < 1e18).then_some(f as u64)
}

pub async fn handle(kc: &Keycard, parts: &Parts, body: Body) -> Response<Body> {
    if parts.method != http::Method::POST {
        return json(
            StatusCode::METHOD_NOT_ALLOWED,
            serde_json::json!({"status": "error", "message": "use POST"}),
        );
    }
    match parts.uri.path() {
        "/moto-api/reset" => match kc.reset().await {
            Ok(()) => json(StatusCode::OK, serde_json::json!({"status": "ok"})),
            Err(e) => json(
                StatusCode::INTERNAL_SERVER_ERROR,
                serde_json::json!({"status": "error", "message": e.to_string()}),
            ),
        },
        "/moto-api/reset-auth" => {
            let bytes = match http_body_util::Limited::new(body, 1024).collect().await {
                Ok(c) => c.to_bytes(),
                Err(_) => {
                    return json(
                        StatusCode::BAD_REQUEST,
                        serde_json::json!({"status": "error", "message": "body too large"}),
                    );
                }
            };
            let text = String::from_utf8_lossy(&bytes);
            let n = match parse_count(&text) {
                Some(n) => n,
                None => {
                    return json(
                        StatusCode::BAD_REQUEST,
                        serde_json::json!({"status": "error", "message": "body must be a number of requests"}),
                    );
                }
            };
            let prev = kc.set_no_auth_count(n);
            let prev = if prev == u64::MAX {
                "inf".to_string()
            } else {
                prev.to_string()
            };
            json(
                StatusCode::OK,
                serde_json::json!({"status": "ok", "PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT": prev}),
            )
        }
        _ => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"status": "error", "message": "unknown moto-api path"}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_count;

    #[test]
    fn reset_auth_counts() {
        assert_eq!(parse_count("4"), Some(4));
        assert_eq!(parse_count("\"7\""), Some(7));
        assert_eq!(parse_count("inf"), Some(u64::MAX));
        assert_eq!(parse_count("Infinity"), Some(u64::MAX));
        assert_eq!(parse_count("\"inf\"\n"), Some(u64::MAX));
        assert_eq!(parse_count("4.0"), Some(4));
        assert_eq!(parse_count("-1"), None);
        assert_eq!(parse_count("2.5"), None);
        assert_eq!(parse_count("nan"), None);
        assert_eq!(parse_count("many"), None);
    }
}
