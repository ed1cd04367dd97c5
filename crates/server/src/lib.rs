//! The HTTP front of keycard: one port for every AWS API, routed by the
//! SigV4 credential scope's service. A request flows one way:
//! route -> authenticate -> parse -> authorize -> execute -> audit -> render.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

mod aa_generation;
mod access_analyzer;
mod admin_keys;
mod cloudtrail;
mod console_api;
mod ec2;
mod ec2_eni;
mod ec2_instance;
mod ec2_launch;
mod ec2_network;
mod ec2_run;
mod ec2_tags;
mod ec2_volume;
mod ec2_vpc;
mod federation;
pub mod governance;
mod guardduty;
mod iam;
mod iam_account;
mod iam_governance;
mod iam_more;
mod iam_simulate;
mod metrics;
mod moto;
mod nodes_admin;
pub mod ops;
mod organizations;
mod qr;
mod render;
mod s3;
mod s3_settings;
mod securityhub;
mod sts;
mod trails;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use keycard_policy::Context;
use keycard_proto::sigv4::{self, AuthError, AuthErrorCode, ParsedAuth, Verified};
use keycard_services::audit::{self, EventInput, PendingEvent};
use keycard_services::auth::{Caller, Check, Decided, ResourcePolicy};
use keycard_services::binding::{self, BindingMode, NetworkPath, Use};
use keycard_services::{Keycard, ServiceError, Wire};
use serde_json::Value;

pub use ops::OpDef;
pub use render::Protocol;

/// Where the container credentials endpoint answers
/// (`AWS_CONTAINER_CREDENTIALS_FULL_URI`).
pub const CONTAINER_CREDENTIALS_PATH: &str = "/_keycard/container-credentials";

/// Largest body for the query / JSON APIs (policies are at most 10 KiB).
pub const MAX_API_BODY: usize = 1024 * 1024;
/// Largest unread body drained (discarded) before answering.
const DRAIN_LIMIT: usize = 64 * 1024;

/// Largest S3 request body: a 5 GiB object (or part) and its aws-chunked
/// framing. Object data streams to disk ([`Req::take_body`]); other S3
/// bodies are read into memory up to [`MAX_API_BODY`].
pub const MAX_S3_BODY: u64 = keycard_services::s3::MAX_PUT + keycard_services::s3::MAX_PUT / 8;

/// Build the router.
pub fn router(kc: Arc<Keycard>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(kc)
}

/// The address of the instance a listener belongs to: requests arriving
/// on an instance's own API listener (inside its network namespace) come
/// from the instance's private address, as in a VPC, whatever the socket
/// says (it says 127.0.0.1).
#[derive(Clone, Debug)]
pub struct InstanceSource(pub NetworkPath);

/// Serve an instance's own API listener until `shutdown` resolves.
pub async fn serve_instance(
    kc: Arc<Keycard>,
    listener: tokio::net::TcpListener,
    source: NetworkPath,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(kc)
            .layer(axum::Extension(InstanceSource(source)))
            .into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Serve on `listener` until `shutdown` resolves.
pub async fn serve(
    kc: Arc<Keycard>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let console = console_api::console(kc.clone());
    axum::serve(
        listener,
        router(kc)
            .layer(axum::Extension(console))
            .into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Everything a handler knows about the request it serves.
pub struct Req {
    pub kc: Arc<Keycard>,
    pub parts: Parts,
    /// The body, once read. S3 bodies are read only when a handler asks
    /// ([`Req::load_body`]), after the call is authorized.
    pub body: Bytes,
    /// (A mutex only so `&Req` stays `Sync`; nothing contends for it.)
    pending: std::sync::Mutex<Option<Body>>,
    /// The hex SHA-256 the S3 request was signed with, checked when the
    /// body is read.
    declared_hash: Option<String>,
    pub caller: Caller,
    pub auth: Option<ParsedAuth>,
    pub verified: Option<Verified>,
    pub request_id: String,
    pub source_ip: String,
    pub user_agent: String,
    pub region: String,
    /// The operation's row in its service's table.
    pub op: &'static OpDef,
    /// The request's context keys, shared by every check of the call. A
    /// check's resource keys are layered on top, never written here.
    pub ctx: Arc<Context>,
    /// Whether policies are enforced (moto compat can turn it off).
    pub enforce: bool,
    pub audit: AuditInfo,
    /// Headers an error answer carries too (S3's `x-amz-delete-marker` on
    /// the 404 for a deleted key).
    pub error_headers: Vec<(&'static str, String)>,
    /// Whether the call names an object version (S3 `?versionId=`, or a
    /// DeleteObjects whose every entry does): its row's `versioned`
    /// actions are the ones it must decide.
    pub names_version: bool,
}

/// What the handler tells the audit trail.
#[derive(Default)]
pub struct AuditInfo {
    pub params: Value,
    pub response: Value,
    pub resources: Vec<(String, String)>,
    /// Every authorization decided for the call, in order.
    pub decided: Vec<Decided>,
    /// The context the first denial was decided in (EC2 encodes it into
    /// its authorization failure message).
    pub denied_context: Option<Context>,
}

impl Req {
    /// Decide one check with the request's context plus the check's own
    /// keys. The decision goes to the audit event; a denial becomes AWS's
    /// error.
    pub fn check(&mut self, check: Check<'_>) -> Result<(), ServiceError> {
        let (d, msg) = self
            .kc
            .decide_enforced(&self.caller, &self.ctx, &check, self.enforce);
        if msg.is_some() && self.audit.denied_context.is_none() {
            let mut c = (*self.ctx).clone();
            for (k, v) in check.keys {
                c.insert_multi(&k, v);
            }
            self.audit.denied_context = Some(c);
        }
        self.audit.decided.push(d);
        match msg {
            None => Ok(()),
            Some(m) => Err(ServiceError::AccessDenied(m)),
        }
    }

    /// [`Req::check`] for a resource with no resource keys.
    pub fn authorize(
        &mut self,
        action: &str,
        resource: &str,
        resource_account: Option<&str>,
        rp: ResourcePolicy<'_>,
    ) -> Result<(), ServiceError> {
        let mut c = Check::new(action, resource).policy(rp);
        if let Some(a) = resource_account {
            c = c.account(a);
        }
        self.check(c)
    }

    /// Whether a check would be allowed, without recording it (S3 asks
    /// whether a caller may list a bucket to choose between NoSuchKey and
    /// AccessDenied).
    pub fn would_allow(&self, check: &Check<'_>) -> bool {
        !self.enforce
            || self.kc.decide(&self.caller, &self.ctx, check).permits()
            || self.kc.is_soft(&self.caller)
    }

    /// A request-wide condition key derived from the input
    /// (`aws:RequestTag/…`, `iam:PassedToService` is per check instead).
    pub fn request_key(&mut self, key: &str, value: impl Into<String>) {
        Arc::make_mut(&mut self.ctx).insert(key, value);
    }

    pub fn request_key_multi(&mut self, key: &str, values: Vec<String>) {
        Arc::make_mut(&mut self.ctx).insert_multi(key, values);
    }

    /// `aws:RequestTag/K` for each tag and `aws:TagKeys`, as every
    /// operation that takes tags sets them.
    pub fn request_tags<'t>(&mut self, tags: impl IntoIterator<Item = (&'t str, &'t str)>) {
        let mut keys = Vec::new();
        let ctx = Arc::make_mut(&mut self.ctx);
        for (k, v) in tags {
            ctx.insert(&format!("aws:RequestTag/{k}"), v);
            keys.push(k.to_string());
        }
        if !keys.is_empty() {
            ctx.insert_multi("aws:TagKeys", keys);
        }
    }

    /// Read the body (S3), within the limit, and check it against the hash
    /// it was signed with.
    pub async fn load_body(&mut self) -> Result<(), ServiceError> {
        let pending = self
            .pending
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(body) = pending else {
            return Ok(());
        };
        // Object data streams (take_body); XML request bodies are small.
        self.body = read_limited(body, MAX_API_BODY, Protocol::S3).await?;
        if let Some(h) = &self.declared_hash {
            sigv4::check_body_hash(h, &self.body).map_err(auth_error)?;
        }
        Ok(())
    }

    /// The unread S3 body and the hex SHA-256 it was signed with, for a
    /// handler that streams it (object data) instead of loading it.
    pub fn take_body(&mut self) -> (Option<Body>, Option<String>) {
        let pending = self
            .pending
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        (pending, self.declared_hash.clone())
    }

    /// Discard a small body the handler left unread (a call refused before
    /// its body mattered): a connection closed with unread bytes is reset,
    /// and the client can lose the answer. Large bodies stay unread.
    async fn drain_small_body(&mut self) {
        let small = self
            .header("content-length")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n <= DRAIN_LIMIT as u64);
        let (Some(body), _) = self.take_body() else {
            return;
        };
        if small {
            let read = read_limited(body, DRAIN_LIMIT, Protocol::S3);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), read).await;
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
    if render::shape_of(parts) == keycard_services::Wire::Query {
        // A query API without a signature: IAM's error shape fits all.
        return "iam";
    }
    "s3"
}

fn too_large(protocol: Protocol, limit: u64) -> ServiceError {
    if protocol == Protocol::S3 {
        ServiceError::EntityTooLarge("Your proposed upload exceeds the maximum allowed size".into())
    } else {
        ServiceError::ValidationError(format!(
            "Request body exceeds the maximum size of {limit} bytes"
        ))
    }
}

/// The request's declared `Content-Length`, if any.
fn declared_length(parts: &Parts) -> Option<u64> {
    parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Read a body, refusing past `limit` without buffering more than that.
async fn read_limited(body: Body, limit: usize, protocol: Protocol) -> Result<Bytes, ServiceError> {
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(_) => Err(too_large(protocol, limit as u64)),
    }
}

/// The facts about a request known before it is authenticated.
struct Envelope {
    /// When the request arrived (latency metrics).
    started: std::time::Instant,
    rid: String,
    protocol: Protocol,
    /// `iam.amazonaws.com`, or the real source of a service keycard doesn't serve.
    event_source: String,
    region: String,
    source_ip: String,
    user_agent: String,
    /// Instance credentials used away from their instance: the event says so.
    mark: Option<Value>,
}

impl Envelope {
    /// Record a call that ends before its handler runs, and render its
    /// error once the event is committed (503 if it cannot be). `account`
    /// attributes a failure whose caller is unknown to the key's owner.
    #[expect(clippy::too_many_arguments, reason = "one call site per refusal kind")]
    async fn fail(
        &self,
        kc: &Keycard,
        e: ServiceError,
        caller: Option<&Caller>,
        account: &str,
        name: &str,
        path: &str,
        params: Value,
    ) -> Response<Body> {
        let code = e.wire(self.protocol.wire()).code;
        metrics::record(&self.event_source, name, Some(code), self.started.elapsed());
        let recorded = kc.audit.record(EventInput {
            caller,
            event_source: &self.event_source,
            event_name: name,
            region: &self.region,
            source_ip: &self.source_ip,
            user_agent: &self.user_agent,
            request_parameters: params,
            response_elements: Value::Null,
            error_code: Some(e.wire(self.protocol.wire()).code),
            error_message: Some(&e.message()),
            request_id: &self.rid,
            read_only: is_read_name(name),
            data_event: false,
            resources: Vec::new(),
            decided: &[],
            recipient_account: caller.map(|c| c.account.as_str()).unwrap_or(account),
            instance_credentials: self.mark.clone(),
        });
        match recorded.await {
            Ok(()) => render::error(self.protocol, &e, &self.rid, path),
            Err(u) => render::error(self.protocol, &ServiceError::from(u), &self.rid, path),
        }
    }
    /// A refusal before the caller is known (`Unauthenticated`),
    /// attributed to `account` when the key's owner is known.
    async fn refuse(
        &self,
        kc: &Keycard,
        e: ServiceError,
        account: &str,
        path: &str,
    ) -> Response<Body> {
        self.fail(kc, e, None, account, "Unauthenticated", path, Value::Null)
            .await
    }
}

/// Read-only by AWS's naming, for calls that have no row.
fn is_read_name(name: &str) -> bool {
    ["Get", "List", "Describe", "Head", "Lookup"]
        .iter()
        .any(|p| name.starts_with(p))
}

async fn handle(
    State(kc): State<Arc<Keycard>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    source: Option<axum::Extension<InstanceSource>>,
    console: Option<axum::Extension<Arc<keycard_console::Console>>>,
    req: Request<Body>,
) -> Response<Body> {
    let path = source.map(|axum::Extension(InstanceSource(p))| p);
    let peer = match &path {
        Some(p) => SocketAddr::new(p.private_ip, peer.port()),
        None => peer,
    };
    let (parts, body) = req.into_parts();
    if kc.config.compat_moto && parts.uri.path().starts_with("/moto-api/") {
        return Box::pin(moto::handle(&kc, &parts, body)).await;
    }
    if parts.uri.path() == "/_keycard/health" {
        return Response::new(Body::from("ok"));
    }
    if parts.uri.path() == CONTAINER_CREDENTIALS_PATH {
        // Credentials are answered only once their issue is recorded.
        return keycard_services::delivery::delivered(|| {
            keycard_imds::handler::container(&kc, &parts.headers)
        })
        .await
        .unwrap_or_else(|_| keycard_imds::handler::unavailable())
        .map(Body::new);
    }
    if parts.uri.path().starts_with("/_keycard/admin/") {
        return Box::pin(admin(&kc, &parts, body)).await;
    }
    if parts
        .uri
        .path()
        .starts_with(keycard_services::federation::ISSUER_PATH)
        && parts.method == http::Method::GET
    {
        return Box::pin(federation::issuer_document(&kc, parts.uri.path())).await;
    }
    if parts.uri.path() == "/metrics" && parts.method == http::Method::GET {
        return metrics_endpoint(&kc, &parts);
    }
    if let Some(axum::Extension(c)) = console
        && console_api::is_console(parts.uri.path())
    {
        return Box::pin(console_api::serve(&c, peer, parts, body)).await;
    }
    if parts.method == http::Method::OPTIONS && guess_service(&parts) == "s3" {
        return s3_settings::preflight(&kc, &parts);
    }
    dispatch(kc, peer, path, parts, body).await
}

/// route -> authenticate -> parse -> authorize -> execute -> audit -> render.
async fn dispatch(
    kc: Arc<Keycard>,
    peer: SocketAddr,
    path_in: Option<NetworkPath>,
    parts: Parts,
    body: Body,
) -> Response<Body> {
    let parsed = sigv4::parse_auth(&parts);
    // AssumeRoleWithWebIdentity / WithSAML are unsigned in AWS: peek at
    // the Action of a small unsigned query request; anything else
    // unsigned is refused below, as before.
    let (body, unsigned_sts, peek_error) = match &parsed {
        Ok(None) if render::shape_of(&parts) == Wire::Query && federation::small_body(&parts) => {
            match read_limited(body, federation::UNSIGNED_LIMIT, Protocol::Sts).await {
                Ok(b) => {
                    let yes = federation::is_unsigned_sts(&parts, &b);
                    (Body::from(b), yes, None)
                }
                Err(e) => (Body::empty(), false, Some(e)),
            }
        }
        _ => (body, false, None),
    };
    let service = match &parsed {
        Ok(Some(a)) => a.scope.service.clone(),
        _ if unsigned_sts => "sts".to_string(),
        _ => guess_service(&parts).to_string(),
    };
    let protocol = Protocol::for_service(&service, &parts);
    let mut env = Envelope {
        mark: None,
        started: std::time::Instant::now(),
        rid: request_id(),
        protocol,
        event_source: match protocol {
            Protocol::Other(_) => format!("{service}.amazonaws.com"),
            p => p.event_source().to_string(),
        },
        region: match &parsed {
            Ok(Some(a)) => a.scope.region.clone(),
            _ => kc.config.region.clone(),
        },
        source_ip: peer.ip().to_string(),
        user_agent: parts
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .chars()
            .take(256)
            .collect(),
    };
    let path = parts.uri.path().to_string();
    if kc.is_stale() {
        // Authorizing on state that may miss other nodes' changes (a
        // detached policy, a deleted key) is worse than a retry.
        // Not audited: the event could not be stored either, and waiting
        // for the store would hold the refusal until its timeout.
        let e = ServiceError::ServiceUnavailable(
            "this node has lost touch with the store; retry".into(),
        );
        return render::error(env.protocol, &e, &env.rid, &path);
    }
    let auth = match parsed {
        Ok(a) => a,
        Err(e) => return env.refuse(&kc, auth_error(e), "", &path).await,
    };
    if let Some(e) = peek_error {
        return env.refuse(&kc, e, "", &path).await;
    }
    let enforce = !kc.enforcement_off();
    // Nothing unauthenticated is read beyond that peek: a request with no
    // signature outside S3 and the unsigned STS calls, or a declared length
    // over the limit, is refused here.
    if auth.is_none() && protocol != Protocol::S3 && enforce && !unsigned_sts {
        let e = ServiceError::MissingAuthenticationToken(
            "Request is missing Authentication Token".into(),
        );
        return env.refuse(&kc, e, "", &path).await;
    }
    let limit = if protocol == Protocol::S3 {
        MAX_S3_BODY
    } else {
        MAX_API_BODY as u64
    };
    if declared_length(&parts).is_some_and(|n| n > limit) {
        return env.refuse(&kc, too_large(protocol, limit), "", &path).await;
    }
    let authn = match authenticate(&kc, &parts, auth.as_ref(), body, protocol, enforce).await {
        Ok(a) => a,
        Err(e) => {
            let account = auth
                .as_ref()
                .and_then(|a| kc.key_account(&a.access_key_id, a.session_token.as_deref()))
                .unwrap_or_default();
            if let Some(a) = &auth {
                note_stale_session(&kc, a, &mut env).await;
            }
            // The key id it claimed (not its secret) makes the failure
            // findable by AccessKeyId, as a leaked key's misuse should be.
            let claimed = auth
                .as_ref()
                .filter(|a| {
                    keycard_proto::ids::account_from_access_key_id(&a.access_key_id).is_some()
                })
                .map(|a| Caller::unverified(&a.access_key_id, &account));
            return env
                .fail(
                    &kc,
                    e,
                    claimed.as_ref(),
                    &account,
                    "Unauthenticated",
                    &path,
                    Value::Null,
                )
                .await;
        }
    };
    // Route: the operation's row.
    let name = match op_name(protocol, &parts, &authn.body) {
        Ok(n) => n,
        Err(e) => {
            return env
                .fail(
                    &kc,
                    e,
                    Some(&authn.caller),
                    "",
                    "Unknown",
                    &path,
                    Value::Null,
                )
                .await;
        }
    };
    let Some(op) = ops::find(protocol, &name) else {
        let e = unknown_operation(protocol, &name);
        // The call's parameters, redacted, as CloudTrail records them.
        let params = match protocol.wire() {
            Wire::Query | Wire::Ec2 => {
                keycard_proto::query::Params::from_request(&parts, &authn.body)
                    .map(|p| iam::audit_params(&p))
                    .unwrap_or(Value::Null)
            }
            _ => Value::Null,
        };
        return env
            .fail(&kc, e, Some(&authn.caller), "", &name, &path, params)
            .await;
    };
    if authn.caller.account.is_empty() && protocol != Protocol::S3 && !unsigned_sts {
        let e = ServiceError::MissingAuthenticationToken(
            "Request is missing Authentication Token".into(),
        );
        return env
            .fail(&kc, e, None, "", op.name, &path, Value::Null)
            .await;
    }
    let credential_use = kc.instance_credential_use(&authn.caller, path_in.as_ref());
    if let Some(u) = credential_use.as_ref().filter(|u| **u != Use::OnInstance) {
        env.mark = Some(use_mark(&authn.caller, u));
        let bound = kc.config.instance_credentials == BindingMode::Bound;
        kc.record_sighting(&authn.caller, u, None, &env.source_ip, op.name, bound)
            .await;
        if bound {
            let e = bound_refusal(&authn.caller, op, protocol);
            return env
                .fail(&kc, e, Some(&authn.caller), "", op.name, &path, Value::Null)
                .await;
        }
    }
    let mut ctx = request_context(&kc, &authn.caller, &env);
    if let Some(p) = &path_in {
        kc.add_network_context(p, &mut ctx);
    }
    kc.touch_credentials(&authn.caller, &service, &env.region, &env.source_ip);
    let names_version = protocol == Protocol::S3 && s3::names_version(&parts);
    let mut req = Req {
        kc: kc.clone(),
        parts,
        body: authn.body,
        pending: std::sync::Mutex::new(authn.pending),
        declared_hash: authn.declared_hash,
        caller: authn.caller,
        auth,
        verified: authn.verified,
        request_id: env.rid.clone(),
        source_ip: env.source_ip.clone(),
        user_agent: env.user_agent.clone(),
        region: env.region.clone(),
        op,
        ctx: Arc::new(ctx),
        enforce,
        audit: AuditInfo::default(),
        error_headers: Vec::new(),
        names_version,
    };
    // A write's draft event commits in the same transaction as its
    // changes, so a crash between the two still leaves the call's event.
    let pending = (!op.read_only).then(|| {
        PendingEvent::new(EventInput {
            caller: Some(&req.caller),
            event_source: &env.event_source,
            event_name: op.name,
            region: &req.region,
            source_ip: &req.source_ip,
            user_agent: &req.user_agent,
            request_parameters: Value::Null,
            response_elements: Value::Null,
            error_code: None,
            error_message: None,
            request_id: &env.rid,
            read_only: op.read_only,
            data_event: op.data_event,
            resources: Vec::new(),
            decided: &[],
            recipient_account: &req.caller.account,
            instance_credentials: env.mark.clone(),
        })
    });
    // Each service's future is boxed: inline, this one would be as large
    // as the largest of them (tens of KB), copied whenever it moves.
    let run = async {
        match protocol {
            Protocol::Iam => Box::pin(iam::handle(&mut req)).await,
            Protocol::Sts => Box::pin(sts::handle(&mut req)).await,
            Protocol::S3 => Box::pin(s3::handle(&mut req)).await,
            Protocol::CloudTrail => Box::pin(cloudtrail::handle(&mut req)).await,
            Protocol::Ec2 => Box::pin(ec2::handle(&mut req)).await,
            Protocol::Organizations => organizations::handle(&mut req),
            Protocol::SecurityHub => Box::pin(securityhub::handle(&mut req)).await,
            Protocol::GuardDuty => Box::pin(guardduty::handle(&mut req)).await,
            Protocol::AccessAnalyzer => Box::pin(access_analyzer::handle(&mut req)).await,
            Protocol::Other(_) => Err(unknown_operation(protocol, &name)),
        }
    };
    let mut result = match &pending {
        Some(p) => audit::with_pending(p.clone(), run).await,
        None => run.await,
    };
    // The guard: a call that succeeded without deciding every action its
    // row requires is withheld. Walking the tables in the tests finds it.
    if result.is_ok()
        && let Some(a) = ops::missing_action(
            op,
            req.names_version,
            req.audit.decided.iter().map(|d| d.action.as_str()),
        )
    {
        tracing::error!(
            operation = op.name,
            action = a,
            "answered without authorizing"
        );
        result = Err(ServiceError::Internal(
            "We encountered an internal error. Please try again.".into(),
        ));
    }
    if protocol == Protocol::Ec2 {
        result = result.map_err(|e| ec2_denial(&kc, &req, e));
    }
    req.drain_small_body().await;
    let (mut response, error) = match result {
        Ok(r) => (r, None),
        Err(e) => {
            let mut r = render::error(protocol, &e, &env.rid, &path);
            for (name, value) in &req.error_headers {
                if let Ok(v) = http::HeaderValue::from_str(value) {
                    r.headers_mut().insert(*name, v);
                }
            }
            (r, Some(e))
        }
    };
    if protocol == Protocol::S3 {
        s3_settings::add_cors(&kc, &req.parts, &mut response);
    }
    let msg = error.as_ref().map(|e| e.message());
    let event = EventInput {
        caller: Some(&req.caller),
        event_source: &env.event_source,
        event_name: op.name,
        region: &req.region,
        source_ip: &req.source_ip,
        user_agent: &req.user_agent,
        request_parameters: std::mem::take(&mut req.audit.params),
        response_elements: std::mem::take(&mut req.audit.response),
        error_code: error.as_ref().map(|e| e.wire(protocol.wire()).code),
        error_message: msg.as_deref(),
        request_id: &env.rid,
        read_only: op.read_only,
        data_event: op.data_event,
        resources: std::mem::take(&mut req.audit.resources),
        decided: &req.audit.decided,
        recipient_account: &req.caller.account,
        instance_credentials: env.mark.clone(),
    };
    let recorded = match &pending {
        Some(p) => kc.audit.record_final(p, event).await,
        None => kc.audit.record(event).await,
    };
    metrics::record(
        &env.event_source,
        op.name,
        error.as_ref().map(|e| e.wire(protocol.wire()).code),
        env.started.elapsed(),
    );
    // Fail closed: no answer for a call whose event is not committed.
    match recorded {
        Ok(()) => response,
        Err(u) => render::error(protocol, &ServiceError::from(u), &env.rid, &path),
    }
}

/// The audit event's note that instance credentials were used away from
/// their instance.
fn use_mark(caller: &Caller, u: &Use) -> Value {
    let instance = match &caller.kind {
        keycard_services::auth::CallerKind::Session(s) => {
            s.claims.instance.as_ref().map(|i| i.id.clone())
        }
        _ => None,
    };
    let (finding, over) = match u {
        Use::OtherInstance { instance_id, .. } => (binding::INSIDE_AWS, Some(instance_id.clone())),
        _ => (binding::OUTSIDE_AWS, None),
    };
    serde_json::json!({
        "deliveredTo": instance,
        "arrivedOver": over,
        "findingType": finding,
    })
}

/// `--instance-credentials bound`: the refusal, in AWS's words for a
/// denial, with why in keycard's.
fn bound_refusal(caller: &Caller, op: &ops::OpDef, protocol: Protocol) -> ServiceError {
    let action = op.actions.first().copied().unwrap_or(op.name);
    let instance = match &caller.kind {
        keycard_services::auth::CallerKind::Session(s) => s
            .claims
            .instance
            .as_ref()
            .map(|i| i.id.clone())
            .unwrap_or_default(),
        _ => String::new(),
    };
    let m = format!(
        "User: {} is not authorized to perform: {action} because these credentials belong to instance {instance} and the request did not come from it",
        caller.principal.arn
    );
    match protocol {
        Protocol::Ec2 => ServiceError::UnauthorizedOperation(format!(
            "You are not authorized to perform this operation. {m}"
        )),
        Protocol::S3 => ServiceError::AccessDenied("Access Denied".into()),
        _ => ServiceError::AccessDenied(m),
    }
}

/// A refused call signed with the credentials of an instance that has
/// stopped, terminated or changed role: somebody kept a copy.
async fn note_stale_session(kc: &Keycard, a: &ParsedAuth, env: &mut Envelope) {
    let Some((caller, reason)) =
        kc.stale_instance_caller(&a.access_key_id, a.session_token.as_deref())
    else {
        return;
    };
    kc.record_sighting(
        &caller,
        &Use::Outside,
        Some(&reason),
        &env.source_ip,
        "Unauthenticated",
        true,
    )
    .await;
    env.mark = Some(serde_json::json!({
        "findingType": binding::AFTER_INSTANCE,
        "reason": reason,
    }));
}

/// EC2 words a denial its own way and appends the encoded authorization
/// failure message that `sts:DecodeAuthorizationMessage` opens.
fn ec2_denial(kc: &Keycard, req: &Req, e: ServiceError) -> ServiceError {
    let ServiceError::AccessDenied(m) = &e else {
        return e;
    };
    let Some(d) = req.audit.decided.iter().find(|d| !d.permits()) else {
        return e;
    };
    let ctx = req.audit.denied_context.as_ref().unwrap_or(&req.ctx);
    let encoded = kc.encode_authorization_message(&req.caller, d, ctx);
    ServiceError::UnauthorizedOperation(format!(
        "You are not authorized to perform this operation. {m}. Encoded authorization failure message: {encoded}"
    ))
}

/// The request's own condition keys, shared by every check of the call.
fn request_context(kc: &Keycard, caller: &Caller, env: &Envelope) -> Context {
    // Global keys, the caller's, and the service's request keys: a map
    // sized for 16 holds 28 before it grows (32 cost more than it saved).
    let mut ctx = Context::with_capacity(16);
    let now = time::OffsetDateTime::now_utc();
    ctx.insert("aws:SourceIp", env.source_ip.clone());
    ctx.insert("aws:SecureTransport", "false");
    ctx.insert(
        "aws:CurrentTime",
        keycard_services::sts::iso8601(now.unix_timestamp()),
    );
    ctx.insert("aws:EpochTime", now.unix_timestamp().to_string());
    ctx.insert("aws:RequestedRegion", env.region.clone());
    ctx.insert("aws:ViaAWSService", "false");
    ctx.insert("aws:PrincipalIsAWSService", "false");
    if !env.user_agent.is_empty() {
        ctx.insert("aws:UserAgent", env.user_agent.clone());
    }
    kc.add_caller_context(caller, &mut ctx);
    ctx
}

/// The operation a request names: the query `Action`, the JSON target,
/// or S3's method and sub-resource.
fn op_name(protocol: Protocol, parts: &Parts, body: &[u8]) -> Result<String, ServiceError> {
    match protocol {
        Protocol::Iam | Protocol::Sts | Protocol::Ec2 | Protocol::Other(Wire::Query) => {
            let from_body = (parts.method == http::Method::POST)
                .then(|| query_action(body))
                .flatten();
            from_body
                .or_else(|| query_action(parts.uri.query().unwrap_or("").as_bytes()))
                .ok_or_else(|| {
                    ServiceError::MissingAction(if protocol == Protocol::Ec2 {
                        "The request must contain the parameter Action".into()
                    } else {
                        "Missing Action".into()
                    })
                })
        }
        Protocol::S3 => Ok(s3::op_name(parts).to_string()),
        Protocol::SecurityHub => Ok(securityhub::op_name(parts)),
        Protocol::GuardDuty => Ok(guardduty::op_name(parts)),
        Protocol::AccessAnalyzer => Ok(access_analyzer::op_name(parts)),
        Protocol::CloudTrail | Protocol::Organizations | Protocol::Other(_) => {
            match parts
                .headers
                .get("x-amz-target")
                .and_then(|v| v.to_str().ok())
            {
                Some(t) => Ok(t.rsplit('.').next().unwrap_or(t).to_string()),
                // REST-JSON: no operation name on the wire without the model.
                None => Ok(format!("{} {}", parts.method, parts.uri.path())
                    .chars()
                    .take(128)
                    .collect()),
            }
        }
    }
}

/// The `Action` of a form-encoded body or query string.
fn query_action(bytes: &[u8]) -> Option<String> {
    form_urlencoded::parse(bytes)
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.into_owned())
}

/// Each service's own words for an operation it doesn't have.
fn unknown_operation(protocol: Protocol, name: &str) -> ServiceError {
    match protocol {
        Protocol::Iam => ServiceError::InvalidAction(format!(
            "Could not find operation {name} for version 2010-05-08"
        )),
        Protocol::Sts => ServiceError::InvalidAction(format!(
            "Could not find operation {name} for version 2011-06-15"
        )),
        Protocol::Ec2 | Protocol::Other(Wire::Query) => ServiceError::InvalidAction(format!(
            "The action {name} is not valid for this web service."
        )),
        Protocol::S3 if name == "Unknown" => ServiceError::MethodNotAllowed(
            "The specified method is not allowed against this resource.".into(),
        ),
        Protocol::S3 => ServiceError::NotImplemented(
            "A header you provided implies functionality that is not implemented".into(),
        ),
        Protocol::CloudTrail
        | Protocol::Organizations
        | Protocol::SecurityHub
        | Protocol::GuardDuty
        | Protocol::AccessAnalyzer
        | Protocol::Other(_) => ServiceError::InvalidAction(format!("Unknown operation {name}")),
    }
}

/// What authentication found.
struct Authenticated {
    caller: Caller,
    verified: Option<Verified>,
    body: Bytes,
    pending: Option<Body>,
    declared_hash: Option<String>,
}

/// Find the caller and verify the signature. The key is looked up before
/// any body is read; S3 requests are verified from their headers alone and
/// keep their body unread; other APIs read at most [`MAX_API_BODY`].
/// Anonymous requests get the anonymous caller (S3 may still allow them
/// through a bucket policy).
async fn authenticate(
    kc: &Keycard,
    parts: &Parts,
    auth: Option<&ParsedAuth>,
    body: Body,
    protocol: Protocol,
    enforce: bool,
) -> Result<Authenticated, ServiceError> {
    let unread =
        |caller: Caller, verified: Option<Verified>, declared: Option<String>| Authenticated {
            caller,
            verified,
            body: Bytes::new(),
            pending: None,
            declared_hash: declared,
        };
    let Some(auth) = auth else {
        let mut a = unread(Caller::anonymous(), None, None);
        if protocol == Protocol::S3 {
            a.pending = Some(body);
        } else {
            a.body = read_limited(body, MAX_API_BODY, protocol).await?;
        }
        return Ok(a);
    };
    let (secret, caller) = match kc.credentials(&auth.access_key_id, auth.session_token.as_deref())
    {
        Ok(x) => (Some(x.0), x.1),
        // moto compat: unknown keys act as the default account's root.
        Err(_) if !enforce => (
            None,
            Caller::root(keycard_services::DEFAULT_ACCOUNT, &auth.access_key_id),
        ),
        Err(e) => return Err(e),
    };
    let header_hash = sigv4::header_payload_hash(parts, auth).map_err(auth_error)?;
    let (mut out, payload) = match header_hash {
        Some(h) => {
            let mut a = unread(caller, None, None);
            a.pending = Some(body);
            if !sigv4::is_special_payload_hash(&h) {
                a.declared_hash = Some(h.clone());
            }
            (a, h)
        }
        None => {
            let bytes = read_limited(body, MAX_API_BODY, protocol).await?;
            let payload = sigv4::payload_hash(parts, auth, &bytes).map_err(auth_error)?;
            let mut a = unread(caller, None, None);
            a.body = bytes;
            (a, payload)
        }
    };
    let Some(secret) = secret else {
        return Ok(out);
    };
    match sigv4::verify(
        parts,
        auth,
        &secret,
        &payload,
        time::OffsetDateTime::now_utc(),
    ) {
        Ok(v) => {
            out.verified = Some(v);
            Ok(out)
        }
        Err(_) if !enforce => Ok(out),
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

/// Whether the request carries the admin endpoint's bearer token.
fn admin_bearer_ok(kc: &Keycard, parts: &Parts) -> bool {
    let token = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    kc.check_admin_token(token)
}

/// Prometheus scrape, with the admin bearer token (counts and findings
/// are not for anyone who can reach the port).
fn metrics_endpoint(kc: &Keycard, parts: &Parts) -> Response<Body> {
    let mut r = if admin_bearer_ok(kc, parts) {
        Response::new(Body::from(metrics::render(kc)))
    } else {
        let mut r = Response::new(Body::from("bearer token required\n"));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        r
    };
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4"),
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
    if !admin_bearer_ok(kc, parts) {
        return reply(403, serde_json::json!({"error": "bad admin token"}));
    }
    if parts.uri.path().starts_with("/_keycard/admin/governance/")
        || parts.uri.path() == "/_keycard/admin/clock"
        || parts.uri.path() == "/_keycard/admin/audit/denials"
        || parts.uri.path() == "/_keycard/admin/policy/generate"
        || parts.uri.path() == "/_keycard/admin/s3/lifecycle"
    {
        let bytes = match http_body_util::Limited::new(body, 64 * 1024)
            .collect()
            .await
        {
            Ok(c) => c.to_bytes(),
            Err(_) => return reply(400, serde_json::json!({"error": "body too large"})),
        };
        return match governance::admin(kc, parts, &bytes).await {
            Some((status, v)) => reply(status, v),
            None => reply(404, serde_json::json!({"error": "unknown admin path"})),
        };
    }
    if let Some((status, v)) = nodes_admin::admin(kc, parts).await {
        return reply(status, v);
    }
    if parts.method == http::Method::POST && parts.uri.path() == "/_keycard/admin/oidc/jwks" {
        let bytes = match http_body_util::Limited::new(body, 256 * 1024)
            .collect()
            .await
        {
            Ok(c) => c.to_bytes(),
            Err(_) => return reply(400, serde_json::json!({"error": "body too large"})),
        };
        let (status, v) = federation::admin_jwks(kc, &bytes).await;
        return reply(status, v);
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
    if parts.method == http::Method::GET
        && let Some(id) = parts
            .uri
            .path()
            .strip_prefix("/_keycard/admin/access-keys/")
    {
        return admin_keys::found_key(kc, id).await;
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
    if !kc.serves(&inst) {
        // Its metadata service runs on its own node: ask that one.
        return Some(serde_json::json!({
            "instanceId": inst.id,
            "state": inst.state,
            "node": inst.owner(),
        }));
    }
    let rt = kc.runtime.read().unwrap_or_else(|e| e.into_inner()).clone();
    let api = rt.api_addr?;
    // The instance's own network path to the API: in its namespace, or
    // its loopback address (the main API's port unless that was taken).
    let api_url = if rt.netns {
        format!("http://127.0.0.1:{}", api.port())
    } else {
        let port = rt.instance_api_port.unwrap_or(api.port());
        format!("http://{}:{port}", inst.imds_addr())
    };
    // The SDKs take container credentials only from 127.0.0.1 / localhost
    // (the JS SDK refuses other loopback addresses): the main listener.
    let container_base = if rt.netns {
        api_url.clone()
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
        "node": inst.owner(),
        "region": inst.region,
        "apiEndpoint": api_url,
        "imdsEndpoint": imds,
        "netns": rt.netns.then(|| keycard_imds::netns::name(kc, &inst.id)),
        "containerCredentialsFullUri": format!("{container_base}{CONTAINER_CREDENTIALS_PATH}"),
        "containerAuthorizationToken": keycard_imds::token::mint_container(kc, &inst.id),
        "credentialDelivery": kc.instance_delivery_status(&inst.id),
    }))
}
