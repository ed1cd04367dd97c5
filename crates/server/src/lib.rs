//! The HTTP front of keycard: one port for every AWS API, routed by the
//! SigV4 credential scope's service. A request flows one way:
//! route -> authenticate -> parse -> authorize -> execute -> audit -> render.

mod cloudtrail;
mod ec2;
mod iam;
mod moto;
mod render;
mod s3;
mod sts;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use keycard_policy::{Context, Evaluation};
use keycard_proto::sigv4::{self, AuthError, AuthErrorCode, ParsedAuth, Verified};
use keycard_services::audit::EventInput;
use keycard_services::auth::{Caller, ResourcePolicy};
use keycard_services::{Keycard, ServiceError};
use serde_json::Value;

pub use render::Protocol;

/// Where the container credentials endpoint answers
/// (`AWS_CONTAINER_CREDENTIALS_FULL_URI`).
pub const CONTAINER_CREDENTIALS_PATH: &str = "/_keycard/container-credentials";

/// Largest body for the query / JSON APIs (policies are at most 10 KiB).
pub const MAX_API_BODY: usize = 1024 * 1024;
/// Largest S3 body keycard buffers (one PUT or part).
pub const MAX_S3_BODY: usize = 1024 * 1024 * 1024;

/// Build the router.
pub fn router(kc: Arc<Keycard>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(kc)
}

/// Serve on `listener` until `shutdown` resolves.
pub async fn serve(
    kc: Arc<Keycard>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(kc).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Everything a handler knows about the request it serves.
pub struct Req {
    pub kc: Arc<Keycard>,
    pub parts: Parts,
    pub body: Bytes,
    pub caller: Caller,
    pub auth: Option<ParsedAuth>,
    pub verified: Option<Verified>,
    pub request_id: String,
    pub source_ip: String,
    pub user_agent: String,
    pub region: String,
    /// Request context keys for policy conditions.
    pub ctx: Context,
    /// Whether policies are enforced (moto compat can turn it off).
    pub enforce: bool,
    pub audit: AuditInfo,
}

/// What the handler tells the audit trail.
#[derive(Default)]
pub struct AuditInfo {
    pub event_name: String,
    pub read_only: bool,
    pub params: Value,
    pub response: Value,
    pub resources: Vec<(String, String)>,
    pub eval: Option<Evaluation>,
}

impl Req {
    /// Authorize `action` on `resource`: the decision and the statements
    /// that made it go to the audit record; a denial becomes AWS's error.
    pub fn authorize(
        &mut self,
        action: &str,
        resource: &str,
        resource_account: Option<&str>,
        rp: ResourcePolicy<'_>,
    ) -> Result<(), ServiceError> {
        if !self.enforce {
            return Ok(());
        }
        let eval = self.kc.authorize(
            &self.caller,
            action,
            resource,
            resource_account,
            &self.ctx,
            rp,
        );
        let allowed = eval.is_allowed();
        let msg =
            (!allowed).then(|| Keycard::denied_message(&self.caller, action, resource, &eval));
        self.audit.eval = Some(eval);
        match msg {
            None => Ok(()),
            Some(m) => Err(ServiceError::AccessDenied(m)),
        }
    }

    /// The caller's account (the account a request acts in).
    pub fn account(&self) -> &str {
        &self.caller.account
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.parts.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Map a signature-layer error to the service error of the API.
fn auth_error(e: AuthError) -> ServiceError {
    use AuthErrorCode as C;
    let m = e.message;
    match e.code {
        C::SignatureDoesNotMatch => ServiceError::SignatureDoesNotMatch(m),
        C::IncompleteSignature => ServiceError::IncompleteSignature(m),
        C::MissingAuthenticationToken => ServiceError::MissingAuthenticationToken(m),
        C::InvalidClientTokenId => ServiceError::InvalidClientTokenId(m),
        C::RequestTimeTooSkewed => ServiceError::RequestTimeTooSkewed(m),
        C::RequestExpired => ServiceError::RequestExpired(m),
        C::AccessDenied => ServiceError::AccessDenied(m),
        C::XAmzContentSHA256Mismatch => ServiceError::XAmzContentSHA256Mismatch(m),
        C::InvalidRequest => ServiceError::InvalidRequest(m),
        C::InvalidArgument => ServiceError::InvalidArgument(m),
        C::AuthorizationHeaderMalformed => ServiceError::AuthorizationHeaderMalformed(m),
        C::AuthorizationQueryParametersError => ServiceError::AuthorizationQueryParametersError(m),
        C::IncompleteBody => ServiceError::IncompleteBody(m),
    }
}

/// Which API a request is for, when it carries no signature.
fn guess_service(parts: &Parts) -> &'static str {
    if parts.headers.contains_key("x-amz-target") {
        return "cloudtrail";
    }
    let ct = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let q = parts.uri.query().unwrap_or("");
    if (parts.method == http::Method::POST && ct.starts_with("application/x-www-form-urlencoded"))
        || q.starts_with("Action=")
        || q.contains("&Action=")
    {
        // A query API without a signature: IAM's error shape fits all.
        return "iam";
    }
    "s3"
}

async fn handle(
    State(kc): State<Arc<Keycard>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request<Body>,
) -> Response<Body> {
    let rid = request_id();
    let (parts, body) = req.into_parts();
    if kc.config.compat_moto && parts.uri.path().starts_with("/moto-api/") {
        return moto::handle(&kc, &parts, body).await;
    }
    if parts.uri.path() == "/_keycard/health" {
        return Response::new(Body::from("ok"));
    }
    if parts.uri.path() == CONTAINER_CREDENTIALS_PATH {
        return keycard_imds::handler::container(&kc, &parts.headers).map(Body::new);
    }
    if parts.uri.path().starts_with("/_keycard/admin/") {
        return admin(&kc, &parts, body).await;
    }
    // Route.
    let parsed = sigv4::parse_auth(&parts);
    let service = match &parsed {
        Ok(Some(a)) => a.scope.service.clone(),
        _ => guess_service(&parts).to_string(),
    };
    let protocol = Protocol::for_service(&service);
    let user_agent = parts
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(256)
        .collect::<String>();
    let source_ip = peer.ip().to_string();
    let region = match &parsed {
        Ok(Some(a)) => a.scope.region.clone(),
        _ => kc.config.region.clone(),
    };
    // A refusal before a caller is known; `account` owns the key id when
    // that is known. Answered only once its event is committed (else 503).
    let fail = async |e: ServiceError, account: &str, name: &str| {
        let recorded = kc.audit.record(EventInput {
            caller: None,
            event_source: protocol.event_source(),
            event_name: name,
            region: &region,
            source_ip: &source_ip,
            user_agent: &user_agent,
            request_parameters: Value::Null,
            response_elements: Value::Null,
            error_code: Some(e.code()),
            error_message: Some(&e.message()),
            request_id: &rid,
            read_only: false,
            resources: Vec::new(),
            evaluation: None,
            recipient_account: account,
        });
        match recorded.await {
            Ok(()) => render::error(protocol, &e, &rid, parts.uri.path()),
            Err(u) => render::error(protocol, &ServiceError::from(u), &rid, parts.uri.path()),
        }
    };
    let auth = match parsed {
        Ok(a) => a,
        Err(e) => return fail(auth_error(e), "", "Unauthenticated").await,
    };
    if !matches!(
        service.as_str(),
        "iam" | "sts" | "s3" | "cloudtrail" | "ec2"
    ) {
        return fail(
            ServiceError::InvalidAction(format!("keycard does not serve the {service} API")),
            "",
            "Unknown",
        )
        .await;
    }
    // Read the body within the service's limit; a declared length over it
    // is refused before anything is read.
    let limit = if protocol == Protocol::S3 {
        MAX_S3_BODY
    } else {
        MAX_API_BODY
    };
    let too_large = || {
        if protocol == Protocol::S3 {
            ServiceError::EntityTooLarge(
                "Your proposed upload exceeds the maximum allowed size".into(),
            )
        } else {
            ServiceError::ValidationError(format!(
                "Request body exceeds the maximum size of {limit} bytes"
            ))
        }
    };
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return fail(too_large(), "", "Unauthenticated").await;
    }
    let body = match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => return fail(too_large(), "", "Unauthenticated").await,
    };
    // Authenticate.
    let enforce = !kc.enforcement_off();
    let (caller, verified) = match authenticate(&kc, &parts, auth.as_ref(), &body, enforce) {
        Ok(x) => x,
        Err(e) => {
            let account = auth
                .as_ref()
                .and_then(|a| kc.key_account(&a.access_key_id, a.session_token.as_deref()))
                .unwrap_or_default();
            return fail(e, &account, "Unauthenticated").await;
        }
    };
    if auth.is_none() && protocol != Protocol::S3 && enforce {
        return fail(
            ServiceError::MissingAuthenticationToken(
                "Request is missing Authentication Token".into(),
            ),
            "",
            "Unauthenticated",
        )
        .await;
    }
    let mut ctx = Context::new();
    let now = time::OffsetDateTime::now_utc();
    ctx.insert("aws:SourceIp", source_ip.clone());
    ctx.insert("aws:SecureTransport", "false");
    ctx.insert(
        "aws:CurrentTime",
        keycard_services::sts::iso8601(now.unix_timestamp()),
    );
    ctx.insert("aws:EpochTime", now.unix_timestamp().to_string());
    ctx.insert("aws:RequestedRegion", region.clone());
    ctx.insert("aws:ViaAWSService", "false");
    ctx.insert("aws:PrincipalIsAWSService", "false");
    if !user_agent.is_empty() {
        ctx.insert("aws:UserAgent", user_agent.clone());
    }
    kc.add_caller_context(&caller, &mut ctx);
    if !caller.access_key_id.is_empty() && !caller.access_key_id.starts_with("ASIA") {
        kc.touch_access_key(&caller.access_key_id, &service, &region);
    }
    let mut req = Req {
        kc: kc.clone(),
        parts,
        body,
        caller,
        auth,
        verified,
        request_id: rid.clone(),
        source_ip,
        user_agent,
        region,
        ctx,
        enforce,
        audit: AuditInfo::default(),
    };
    let result = match protocol {
        Protocol::Iam => iam::handle(&mut req).await,
        Protocol::Sts => sts::handle(&mut req).await,
        Protocol::S3 => s3::handle(&mut req).await,
        Protocol::CloudTrail => cloudtrail::handle(&mut req).await,
        Protocol::Ec2 => ec2::handle(&mut req).await,
    };
    let (response, error) = match result {
        Ok(r) => (r, None),
        Err(e) => (
            render::error(protocol, &e, &rid, req.parts.uri.path()),
            Some(e),
        ),
    };
    let name = if req.audit.event_name.is_empty() {
        "Unknown".to_string()
    } else {
        req.audit.event_name.clone()
    };
    let msg = error.as_ref().map(|e| e.message());
    let recorded = kc.audit.record(EventInput {
        caller: Some(&req.caller),
        event_source: protocol.event_source(),
        event_name: &name,
        region: &req.region,
        source_ip: &req.source_ip,
        user_agent: &req.user_agent,
        request_parameters: std::mem::take(&mut req.audit.params),
        response_elements: std::mem::take(&mut req.audit.response),
        error_code: error.as_ref().map(|e| e.code()),
        error_message: msg.as_deref(),
        request_id: &rid,
        read_only: req.audit.read_only,
        resources: std::mem::take(&mut req.audit.resources),
        evaluation: req.audit.eval.as_ref(),
        recipient_account: &req.caller.account,
    });
    // Fail closed: no answer for a request whose event is not committed.
    if let Err(u) = recorded.await {
        return render::error(protocol, &ServiceError::from(u), &rid, req.parts.uri.path());
    }
    response
}

/// Verify the signature and find the caller. Anonymous requests get the
/// anonymous caller (S3 may still allow them through a bucket policy).
fn authenticate(
    kc: &Keycard,
    parts: &Parts,
    auth: Option<&ParsedAuth>,
    body: &[u8],
    enforce: bool,
) -> Result<(Caller, Option<Verified>), ServiceError> {
    let Some(auth) = auth else {
        return Ok((Caller::anonymous(), None));
    };
    let lookup = kc.credentials(&auth.access_key_id, auth.session_token.as_deref());
    let (secret, caller) = match lookup {
        Ok(x) => x,
        Err(e) => {
            if !enforce {
                // moto compat: unknown keys act as the default account's root.
                return Ok((
                    Caller::root(keycard_services::DEFAULT_ACCOUNT, &auth.access_key_id),
                    None,
                ));
            }
            return Err(e);
        }
    };
    let payload = sigv4::payload_hash(parts, auth, body).map_err(auth_error)?;
    match sigv4::verify(
        parts,
        auth,
        &secret,
        &payload,
        time::OffsetDateTime::now_utc(),
    ) {
        Ok(v) => Ok((caller, Some(v))),
        Err(_) if !enforce => Ok((caller, None)),
        Err(e) => Err(auth_error(e)),
    }
}

/// Shorthand for an XML response.
pub(crate) fn xml_response(status: u16, body: String) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/xml"),
    );
    r
}

/// The local admin endpoint (`keycard accounts create` against a running
/// server), guarded by the bearer token in `<data-dir>/admin.token`.
async fn admin(kc: &Keycard, parts: &Parts, body: Body) -> Response<Body> {
    let reply = |status: u16, v: Value| {
        let mut r = Response::new(Body::from(v.to_string()));
        *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
        r
    };
    let token = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !kc.check_admin_token(token) {
        return reply(403, serde_json::json!({"error": "bad admin token"}));
    }
    if parts.method == http::Method::GET
        && let Some(id) = parts.uri.path().strip_prefix("/_keycard/admin/instances/")
    {
        return match instance_access(kc, id) {
            Some(v) => reply(200, v),
            None => reply(
                404,
                serde_json::json!({"error": "InvalidInstanceID.NotFound",
                    "message": format!("The instance ID '{id}' does not exist")}),
            ),
        };
    }
    if parts.method != http::Method::POST || parts.uri.path() != "/_keycard/admin/accounts" {
        return reply(404, serde_json::json!({"error": "unknown admin path"}));
    }
    let bytes = match http_body_util::Limited::new(body, 4096).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => return reply(400, serde_json::json!({"error": "body too large"})),
    };
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let id = v.get("accountId").and_then(Value::as_str);
    match kc.create_account(id).await {
        Ok((id, key, secret)) => reply(
            200,
            serde_json::json!({"accountId": id, "accessKeyId": key, "secretAccessKey": secret}),
        ),
        Err(e) => reply(
            e.status(),
            serde_json::json!({"error": e.code(), "message": e.message()}),
        ),
    }
}

/// How a process reaches an instance's identity: what `keycard exec`
/// puts in the child's environment.
fn instance_access(kc: &Keycard, id: &str) -> Option<Value> {
    let inst = kc.state().instances.get(id).cloned()?;
    let rt = kc.runtime.read().unwrap_or_else(|e| e.into_inner()).clone();
    let api = rt.api_addr?;
    let api_url = if rt.netns {
        format!("http://127.0.0.1:{}", api.port())
    } else {
        format!("http://{api}")
    };
    let imds = if rt.netns {
        "http://169.254.169.254/".to_string()
    } else {
        format!("http://{}:{}/", inst.imds_addr(), rt.imds_port?)
    };
    Some(serde_json::json!({
        "instanceId": inst.id,
        "state": inst.state,
        "region": inst.region,
        "apiEndpoint": api_url,
        "imdsEndpoint": imds,
        "netns": rt.netns.then(|| keycard_imds::netns::name(kc, &inst.id)),
        "containerCredentialsFullUri": format!("{api_url}{CONTAINER_CREDENTIALS_PATH}"),
        "containerAuthorizationToken": keycard_imds::token::mint_container(kc, &inst.id),
    }))
}
