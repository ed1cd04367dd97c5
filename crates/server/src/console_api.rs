//! The console's way to the API: each page's call is signed with the
//! console session's STS credentials and run through [`dispatch`], the
//! same route -> authenticate -> authorize -> execute -> audit path as a
//! CLI call. There is no second authorization path to keep in step.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use http::{HeaderValue, Request};
use http_body_util::BodyExt;
use keycard_console::{
    Api, ApiCall, ApiInput, ApiReply, Console, ConsoleBody, ConsoleRequest, Streamed,
};
use keycard_proto::sigv4;
use keycard_services::Keycard;

use crate::{MAX_API_BODY, dispatch};

/// Signs and dispatches the console's calls.
pub struct Bridge {
    kc: Arc<Keycard>,
}

/// The console a server answers `/console` with.
pub fn console(kc: Arc<Keycard>) -> Arc<Console> {
    let api = Arc::new(Bridge { kc: kc.clone() });
    Arc::new(Console::new(kc, api))
}

#[async_trait::async_trait]
impl Api for Bridge {
    async fn call(&self, call: ApiCall) -> ApiReply {
        match self.run(&call).await {
            Ok(resp) => collect(resp).await,
            Err(r) => r,
        }
    }

    async fn stream(&self, call: ApiCall) -> Result<Streamed, ApiReply> {
        let resp = self.run(&call).await?;
        if resp.status().as_u16() >= 300 {
            return Err(collect(resp).await);
        }
        Ok(resp
            .into_body()
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            .boxed_unsync())
    }

    async fn posture(&self, account: &str) -> (u16, serde_json::Value) {
        crate::governance::posture_value(&self.kc, account, false).await
    }
}

impl Bridge {
    /// Sign the call and run it through the dispatcher.
    async fn run(&self, call: &ApiCall) -> Result<http::Response<Body>, ApiReply> {
        let Some((parts, body)) = signed(&self.kc.config.region, call) else {
            return Err(ApiReply {
                status: 500,
                body: bytes::Bytes::from_static(b"<Error><Code>InternalFailure</Code><Message>could not sign the console request</Message></Error>"),
            });
        };
        Ok(dispatch(self.kc.clone(), call.peer, None, parts, Body::from(body)).await)
    }
}

/// A whole answer (API replies are bounded by the API's body limit).
async fn collect(resp: http::Response<Body>) -> ApiReply {
    let status = resp.status().as_u16();
    let body = http_body_util::Limited::new(resp.into_body(), 4 * MAX_API_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    ApiReply { status, body }
}

/// The request a call makes: method, path and query, content type, target, body.
struct Shape<'a> {
    method: http::Method,
    uri: String,
    content_type: Option<&'a str>,
    target: Option<&'a str>,
    body: bytes::Bytes,
}

fn shape(call: &ApiCall) -> Shape<'_> {
    match &call.input {
        ApiInput::Query(params) => Shape {
            method: http::Method::POST,
            uri: "/".into(),
            content_type: Some("application/x-www-form-urlencoded; charset=utf-8"),
            target: None,
            body: form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params)
                .finish()
                .into(),
        },
        ApiInput::Json { target, body } => Shape {
            method: http::Method::POST,
            uri: "/".into(),
            content_type: Some("application/x-amz-json-1.1"),
            target: Some(target.as_str()),
            body: body.clone().into(),
        },
        ApiInput::Rest {
            method,
            path,
            query,
            content_type,
            body,
        } => Shape {
            method: method.clone(),
            uri: if query.is_empty() {
                path.clone()
            } else {
                format!("{path}?{query}")
            },
            content_type: content_type.as_deref(),
            target: None,
            body: body.clone(),
        },
    }
}

/// The call as a request signed with SigV4 by the verifier's own
/// canonicalisation (placeholder signature, parsed, then signed). Every
/// header set here but the user agent is signed; REST calls declare
/// their payload hash, as S3 requires.
fn signed(region: &str, call: &ApiCall) -> Option<(http::request::Parts, bytes::Bytes)> {
    let s = shape(call);
    let now = time::OffsetDateTime::now_utc();
    let c = &call.credentials;
    let mut headers: Vec<(&str, String)> = vec![
        ("host", "console.keycard.internal".into()),
        ("x-amz-date", sigv4::format_amz_date(now)),
        ("x-amz-security-token", c.session_token.clone()),
    ];
    if let Some(t) = s.content_type {
        headers.push(("content-type", t.to_string()));
    }
    if let Some(t) = s.target {
        headers.push(("x-amz-target", t.to_string()));
    }
    if matches!(call.input, ApiInput::Rest { .. }) {
        headers.push(("x-amz-content-sha256", keycard_proto::sha256_hex(&s.body)));
    }
    headers.sort_by(|a, b| a.0.cmp(b.0));
    let signed_headers = headers.iter().map(|h| h.0).collect::<Vec<_>>().join(";");
    let auth = |sig: &str| {
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{}/{region}/{}/aws4_request, SignedHeaders={signed_headers}, Signature={sig}",
            c.access_key_id,
            sigv4::format_scope_date(now),
            call.service
        )
    };
    let mut builder = Request::builder().method(s.method.clone()).uri(&s.uri);
    for (k, v) in &headers {
        builder = builder.header(*k, v.as_str());
    }
    let req = builder
        .header("content-length", s.body.len())
        .header("user-agent", call.user_agent.as_str())
        .header("authorization", auth(&"0".repeat(64)))
        .body(())
        .ok()?;
    let (mut parts, ()) = req.into_parts();
    let parsed = sigv4::parse_auth(&parts).ok()??;
    let payload = sigv4::payload_hash(&parts, &parsed, &s.body).ok()?;
    let creq = sigv4::canonical_request(
        &parts,
        &parsed,
        &payload,
        sigv4::CanonicalRules::for_service(call.service),
    );
    let sts = sigv4::string_to_sign(parsed.timestamp, &parsed.scope, &creq);
    let sig = sigv4::sign(
        &sigv4::signing_key(&c.secret_access_key, &parsed.scope),
        &sts,
    );
    parts
        .headers
        .insert("authorization", HeaderValue::from_str(&auth(&sig)).ok()?);
    Some((parts, s.body))
}

/// Hand a `/console` request to the console (forms are small).
pub async fn serve(
    console: &Console,
    peer: SocketAddr,
    parts: http::request::Parts,
    body: Body,
) -> http::Response<Body> {
    let limit = keycard_console::body_limit(parts.uri.path());
    if crate::declared_length(&parts).is_some_and(|n| n > limit as u64) {
        return to_axum(console.too_large(limit));
    }
    let Ok(body) = http_body_util::Limited::new(body, limit).collect().await else {
        return to_axum(console.too_large(limit));
    };
    let body = body.to_bytes();
    let secure = parts.uri.scheme_str() == Some("https")
        || parts
            .headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes() == b"https");
    let req = ConsoleRequest {
        method: parts.method.clone(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts.headers,
        body,
        peer,
        secure,
    };
    to_axum(console.handle(req).await)
}

fn to_axum(r: http::Response<ConsoleBody>) -> http::Response<Body> {
    r.map(|b| match b {
        ConsoleBody::Full(bytes) => Body::from(bytes),
        ConsoleBody::Stream(s) => Body::new(s),
    })
}

/// Whether a path is the console's.
pub fn is_console(path: &str) -> bool {
    path == "/console" || path.starts_with("/console/")
}
