//! The keycard console: server-rendered pages at `/console` for seed 002's
//! flows. It knows the HTTP server only through [`Api`]: every page and
//! action is an API call made with the signed-in principal's STS session
//! credentials, so it passes the same authentication, authorization and
//! audit as the CLI's calls.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

/// The value of a `Result<T, Page>`, or return the page (an error page).
macro_rules! page {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(p) => return p,
        }
    };
}

mod ec2;
mod events;
mod groups;
mod iam;
mod layout;
pub mod multipart;
mod password;
mod policies;
mod posture;
mod s3;
pub mod session;
mod signin;
pub mod xml;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode};
use keycard_services::Keycard;
use keycard_services::sts::Credentials;

use session::{Session, Sessions};
use xml::{Find, Node};

/// The console's user agent in audit events (followed by the browser's).
pub const USER_AGENT: &str = "keycard-console/1.0";

/// What a call sends: query-protocol parameters (IAM, EC2, STS) or a
/// JSON-protocol target and document (CloudTrail).
pub enum ApiInput {
    Query(Vec<(String, String)>),
    Json {
        target: String,
        body: String,
    },
    /// A REST call (S3, Access Analyzer): method, path (already
    /// percent-encoded), query string, content type, body.
    Rest {
        method: Method,
        path: String,
        query: String,
        content_type: Option<String>,
        body: Bytes,
    },
}

/// One API call, signed by the server side with `credentials` and run
/// through the API's own dispatcher.
pub struct ApiCall {
    /// `iam`, `ec2`, `sts`, `cloudtrail`, `s3`, `access-analyzer`: the
    /// signing scope's service.
    pub service: &'static str,
    pub input: ApiInput,
    pub credentials: Credentials,
    pub user_agent: String,
    pub peer: SocketAddr,
}

/// The API's answer, as the wire carried it.
pub struct ApiReply {
    pub status: u16,
    pub body: Bytes,
}

/// A body streamed from the API to the browser (S3 downloads).
pub type Streamed =
    http_body_util::combinators::UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// What the console answers with: a rendered page, or an object streamed
/// through from the API.
pub enum ConsoleBody {
    Full(Bytes),
    Stream(Streamed),
}

/// The narrow interface to the server: run one API call, or read the
/// account's governance posture (no AWS API carries it: the admin
/// endpoint's report, which the console shows to the account's root).
#[async_trait::async_trait]
pub trait Api: Send + Sync {
    async fn call(&self, call: ApiCall) -> ApiReply;
    /// Run a call whose successful answer is streamed, not buffered
    /// (GetObject); an error answer comes back whole.
    async fn stream(&self, call: ApiCall) -> Result<Streamed, ApiReply>;
    /// `(status, body)` of the posture report (`keycard posture --json`).
    async fn posture(&self, account: &str) -> (u16, serde_json::Value);
}

/// A browser request, as the server hands it over.
pub struct ConsoleRequest {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub peer: SocketAddr,
    /// Whether the browser reached us over TLS (cookies get `Secure`).
    pub secure: bool,
}

/// The console: sessions plus the way to the API.
pub struct Console {
    kc: Arc<Keycard>,
    api: Arc<dyn Api>,
    sessions: Sessions,
    lockout: session::Lockout,
}

/// Largest form the console reads.
pub const MAX_FORM: usize = 64 * 1024;
/// Largest upload form (S3 objects through the console).
pub const MAX_UPLOAD: usize = 16 * 1024 * 1024;

/// How much of a request body the console reads at `path`.
pub fn body_limit(path: &str) -> usize {
    if path.starts_with("/console/s3/") && path.ends_with("/upload") {
        MAX_UPLOAD
    } else {
        MAX_FORM
    }
}

/// An API error: the code and message AWS would give.
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl ApiError {
    fn denied(&self) -> bool {
        matches!(
            self.code.as_str(),
            "AccessDenied" | "UnauthorizedOperation" | "AccessDeniedException"
        )
    }
}

/// What a page handler sees: the request, its session, the console.
pub struct Ctx<'a> {
    console: &'a Console,
    req: &'a ConsoleRequest,
    session: Session,
    /// Decoded form fields (POST) or query parameters (GET).
    form: Vec<(String, String)>,
    /// Uploaded files of a multipart form.
    files: Vec<multipart::Part>,
}

impl Ctx<'_> {
    /// The first value of a form or query field ("" when absent).
    pub fn field(&self, name: &str) -> String {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    /// Every value of a repeated field.
    pub fn fields(&self, name: &str) -> Vec<String> {
        self.form
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The first uploaded file of a multipart field.
    pub fn file(&self, name: &str) -> Option<&multipart::Part> {
        self.files.iter().find(|p| p.name == name)
    }

    /// Whether htmx sent this request (answer with a fragment).
    pub fn partial(&self) -> bool {
        self.req.headers.contains_key("hx-request")
    }

    pub fn csrf(&self) -> &str {
        &self.session.csrf
    }

    pub fn label(&self) -> String {
        self.session.label()
    }

    /// [`Ctx::call`], its error rendered as the page for `what`.
    pub async fn fetch(
        &self,
        service: &'static str,
        action: &str,
        params: &[(&str, &str)],
        what: &str,
    ) -> Result<Node, Page> {
        self.call(service, action, params)
            .await
            .map_err(|e| layout::api_error(self, what, &e))
    }

    /// Call an operation as the signed-in principal.
    pub async fn call(
        &self,
        service: &'static str,
        action: &str,
        params: &[(&str, &str)],
    ) -> Result<Node, ApiError> {
        let version = match service {
            "ec2" => "2016-11-15",
            "sts" => "2011-06-15",
            _ => "2010-05-08",
        };
        let mut p = vec![
            ("Action".to_string(), action.to_string()),
            ("Version".to_string(), version.to_string()),
        ];
        p.extend(params.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let reply = self.send(service, ApiInput::Query(p)).await;
        xml_reply(reply)
    }

    /// A REST GET whose answer streams through (S3 GetObject).
    pub async fn download(&self, service: &'static str, path: &str) -> Result<Streamed, ApiError> {
        let input = ApiInput::Rest {
            method: Method::GET,
            path: path.to_string(),
            query: String::new(),
            content_type: None,
            body: Bytes::new(),
        };
        let call = self.api_call(service, input);
        match self.console.api.stream(call).await {
            Ok(s) => Ok(s),
            Err(reply) => Err(xml_reply(reply).err().unwrap_or(ApiError {
                status: 500,
                code: "InternalFailure".into(),
                message: String::new(),
            })),
        }
    }

    /// A REST-XML call (S3): the answer's bytes, or its error.
    pub async fn rest(
        &self,
        service: &'static str,
        method: Method,
        path: &str,
        query: &str,
        body: Option<(String, Bytes)>,
    ) -> Result<Bytes, ApiError> {
        let (content_type, body) = match body {
            Some((t, b)) => (Some(t), b),
            None => (None, Bytes::new()),
        };
        let input = ApiInput::Rest {
            method,
            path: path.to_string(),
            query: query.to_string(),
            content_type,
            body,
        };
        let reply = self.send(service, input).await;
        if reply.status >= 300 {
            return xml_reply(reply).map(|_| Bytes::new());
        }
        Ok(reply.body)
    }
}

/// An XML answer, or the error it carries.
fn xml_reply(reply: ApiReply) -> Result<Node, ApiError> {
    let doc = Node::parse(&reply.body);
    if reply.status >= 300 {
        let mut code = doc.text_of("Code");
        if code.is_empty() {
            // A HEAD or an empty error body: the status says it.
            code = StatusCode::from_u16(reply.status)
                .map(|s| s.canonical_reason().unwrap_or("Error").replace(' ', ""))
                .unwrap_or_default();
        }
        return Err(ApiError {
            status: reply.status,
            code,
            message: doc.text_of("Message"),
        });
    }
    Ok(doc)
}

impl Ctx<'_> {
    fn api_call(&self, service: &'static str, input: ApiInput) -> ApiCall {
        let browser = self
            .req
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        ApiCall {
            service,
            input,
            credentials: self.session.credentials.clone(),
            user_agent: format!("{USER_AGENT} {browser}").trim().to_string(),
            peer: self.req.peer,
        }
    }

    async fn send(&self, service: &'static str, input: ApiInput) -> ApiReply {
        self.console.api.call(self.api_call(service, input)).await
    }

    /// Call a JSON-protocol operation (`target` is the X-Amz-Target) as
    /// the signed-in principal.
    pub async fn call_json(
        &self,
        service: &'static str,
        target: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, ApiError> {
        let input = ApiInput::Json {
            target: target.to_string(),
            body: body.to_string(),
        };
        json_reply(self.send(service, input).await)
    }

    /// A REST-JSON call (Access Analyzer): POST `path` with `body`.
    pub async fn call_rest_json(
        &self,
        service: &'static str,
        path: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, ApiError> {
        let input = ApiInput::Rest {
            method: Method::POST,
            path: path.to_string(),
            query: String::new(),
            content_type: Some("application/json".into()),
            body: Bytes::from(body.to_string()),
        };
        json_reply(self.send(service, input).await)
    }
}

/// A JSON answer, or the error it carries (`__type` / `message`, either case).
fn json_reply(reply: ApiReply) -> Result<serde_json::Value, ApiError> {
    let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
    if reply.status < 300 {
        return Ok(v);
    }
    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
    let message = match field("message") {
        m if m.is_empty() => field("Message"),
        m => m,
    };
    let code = match field("__type") {
        // REST-JSON carries the code in a header the bridge does not pass.
        c if c.is_empty() && reply.status == 403 => "AccessDeniedException".to_string(),
        c if c.is_empty() => "ValidationException".to_string(),
        c => c,
    };
    Err(ApiError {
        status: reply.status,
        code: code.rsplit('#').next().unwrap_or(&code).to_string(),
        message,
    })
}

/// A rendered answer before the console's headers are added.
pub struct Page {
    pub status: StatusCode,
    pub body: ConsoleBody,
    pub cookies: Vec<String>,
    pub content_type: &'static str,
    /// `Location`, `Content-Disposition` (downloads), a `Cache-Control`
    /// other than `no-store` (embedded assets).
    pub headers: Vec<(http::HeaderName, String)>,
}

impl Page {
    pub fn html(status: StatusCode, body: maud::Markup) -> Page {
        Page::bytes(
            status,
            "text/html; charset=utf-8",
            Bytes::from(body.into_string()),
        )
    }

    pub fn ok(body: maud::Markup) -> Page {
        Page::html(StatusCode::OK, body)
    }

    /// A body that is not a page (assets, bare statuses).
    pub fn plain(status: StatusCode, content_type: &'static str, body: &str) -> Page {
        Page::bytes(status, content_type, Bytes::from(body.to_string()))
    }

    pub fn bytes(status: StatusCode, content_type: &'static str, body: Bytes) -> Page {
        Page::body(status, content_type, ConsoleBody::Full(body))
    }

    pub fn body(status: StatusCode, content_type: &'static str, body: ConsoleBody) -> Page {
        Page {
            status,
            body,
            cookies: Vec::new(),
            content_type,
            headers: Vec::new(),
        }
    }

    /// 303 See Other: after a POST, or to the sign-in page.
    pub fn redirect(to: impl Into<String>) -> Page {
        let mut p = Page::plain(StatusCode::SEE_OTHER, "text/plain", "");
        p.headers.push((http::header::LOCATION, to.into()));
        p
    }
}

impl Console {
    pub fn new(kc: Arc<Keycard>, api: Arc<dyn Api>) -> Console {
        Console {
            kc,
            api,
            sessions: Sessions::default(),
            lockout: session::Lockout::default(),
        }
    }

    /// The console's clock (governance's, so tests can move it).
    fn now(&self) -> i64 {
        self.kc.governance_now()
    }

    /// Answer one browser request under `/console`.
    pub async fn handle(&self, req: ConsoleRequest) -> Response<ConsoleBody> {
        let page = self.route(&req).await;
        finish(page)
    }

    /// The answer to a body over [`body_limit`]: 413, nothing read further.
    pub fn too_large(&self, limit: usize) -> Response<ConsoleBody> {
        let msg = format!(
            "The request is larger than the console accepts ({} KiB).",
            limit / 1024
        );
        finish(Page::plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            "text/plain; charset=utf-8",
            &msg,
        ))
    }

    async fn route(&self, req: &ConsoleRequest) -> Page {
        if ![Method::GET, Method::HEAD, Method::POST].contains(&req.method) {
            return Page::plain(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "");
        }
        let path = req.path.trim_end_matches('/');
        if let Some(asset) = path
            .strip_prefix("/console/static/")
            .or_else(|| path.strip_prefix("/console/assets/"))
        {
            return layout::asset(asset);
        }
        if path == "/console/signin" {
            return signin::page(self, req).await;
        }
        let sid = session::cookie(&req.headers, session::COOKIE).unwrap_or("");
        let Some(session) = self.session(sid) else {
            return Page::redirect("/console/signin");
        };
        let (form, files) = match req.method {
            Method::POST => match multipart::boundary(&req.headers) {
                Some(b) => multipart::split(multipart::parse(&req.body, &b)),
                None => (parse_form(&req.body), Vec::new()),
            },
            _ => (parse_form(req.query.as_bytes()), Vec::new()),
        };
        let ctx = Ctx {
            console: self,
            req,
            session,
            form,
            files,
        };
        if req.method == Method::POST && !ctx.session.csrf_ok(&ctx.field("csrf")) {
            return layout::error_page(
                &ctx,
                StatusCode::FORBIDDEN,
                "Request refused",
                "The form's security token is missing or does not match this session. Reload the page and try again.",
            );
        }
        if path == "/console/signout" && req.method == Method::POST {
            self.sessions.end(sid);
            let mut p = Page::redirect("/console/signin");
            p.cookies.push(session::set_cookie(
                session::COOKIE,
                "",
                req.secure,
                Some(0),
            ));
            return p;
        }
        self.pages(&ctx, path).await
    }

    /// Whether the signed-in user must set a new password first.
    fn must_change_password(&self, ctx: &Ctx<'_>) -> bool {
        let keycard_services::auth::CallerKind::User { name, .. } = &ctx.session.caller.kind else {
            return false;
        };
        self.kc
            .state()
            .user(&ctx.session.caller.account, name)
            .and_then(|u| u.login_profile.as_ref().map(|lp| lp.reset_required))
            .unwrap_or(false)
    }

    async fn pages(&self, ctx: &Ctx<'_>, path: &str) -> Page {
        let segs: Vec<&str> = path.split('/').skip(2).collect();
        let post = ctx.req.method == Method::POST;
        if self.must_change_password(ctx) {
            return match (segs.as_slice(), post) {
                (["password"], true) => password::change(ctx).await,
                (["password"], false) => password::form(ctx, StatusCode::OK, None),
                _ => Page::redirect(password::PATH),
            };
        }
        if let Some(p) = policies::route(ctx, &segs, post).await {
            return p;
        }
        if let Some(p) = groups::route(ctx, &segs, post).await {
            return p;
        }
        if let Some(p) = ec2::route(ctx, &segs, post).await {
            return p;
        }
        if let Some(p) = s3::route(ctx, &segs, post).await {
            return p;
        }
        if let Some(p) = posture::route(ctx, &segs, post).await {
            return p;
        }
        match (segs.as_slice(), post) {
            ([] | [""], false) => Page::redirect("/console/iam/roles"),
            (["iam", "roles"], false) => iam::roles(ctx).await,
            (["iam", "roles", "create"], false) => iam::create_step1(ctx),
            (["iam", "roles", "create", "permissions"], false) => iam::create_step2(ctx).await,
            (["iam", "roles", "create", "review"], false) => iam::create_step3(ctx),
            (["iam", "roles", "create"], true) => iam::create(ctx).await,
            (["iam", "roles", name], false) => iam::role(ctx, &decode(name)).await,
            (["iam", "roles", name, "detach"], true) => iam::detach(ctx, &decode(name)).await,
            (["iam", "users"], false) => iam::users(ctx).await,
            (["ec2", "instances"], false) => ec2::instances(ctx).await,
            (["events"], false) => events::history(ctx).await,
            (["ec2", "instances", id], false) => ec2::instance(ctx, &decode(id)).await,
            (["ec2", "instances", id, "modify-iam-role"], false) => {
                ec2::modify_role_form(ctx, &decode(id)).await
            }
            (["ec2", "instances", id, "modify-iam-role"], true) => {
                ec2::modify_role(ctx, &decode(id)).await
            }
            _ => layout::error_page(
                ctx,
                StatusCode::NOT_FOUND,
                "Not found",
                "There is no console page at this address.",
            ),
        }
    }

    /// The live session a cookie names, its credentials renewed when
    /// they are about to expire (root sessions last an hour).
    fn session(&self, sid: &str) -> Option<Session> {
        if sid.is_empty() {
            return None;
        }
        let mut s = self.sessions.get(sid, self.now())?;
        if s.credentials.expiration - keycard_services::now() < 300
            && let Ok(c) = self.kc.console_renew(&s.caller, s.mfa)
        {
            self.sessions.renew(sid, c.clone());
            s.credentials = c;
        }
        Some(s)
    }
}

/// Decode a percent-encoded path segment.
fn decode(seg: &str) -> String {
    form_urlencoded::parse(format!("x={seg}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Percent-encode one path segment or query value.
pub fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn parse_form(bytes: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(bytes).into_owned().collect()
}

/// The console's headers on every answer: no inline script, no framing,
/// no caching of pages that show account data.
fn finish(page: Page) -> Response<ConsoleBody> {
    let mut r = Response::new(page.body);
    *r.status_mut() = page.status;
    let h = r.headers_mut();
    let fixed: [(&str, &str); 6] = [
        (
            "content-security-policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        ("cache-control", "no-store"),
        ("content-type", page.content_type),
    ];
    for (k, v) in fixed {
        h.insert(k, HeaderValue::from_static(v));
    }
    for (k, v) in page.headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    for c in page.cookies {
        if let Ok(v) = HeaderValue::from_str(&c) {
            h.append(http::header::SET_COOKIE, v);
        }
    }
    r
}

/// Percent-encode for a URI path (RFC 3986 unreserved kept; `/` kept
/// when `keep_slash`): S3 object keys in the API call's path.
pub fn uri_enc(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/');
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
