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
mod iam;
mod layout;
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
    Json { target: String, body: String },
}

/// One API call, signed by the server side with `credentials` and run
/// through the API's own dispatcher.
pub struct ApiCall {
    /// `iam`, `ec2`, `sts`, `cloudtrail`: the signing scope's service.
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

/// The narrow interface to the server: run one API call.
#[async_trait::async_trait]
pub trait Api: Send + Sync {
    async fn call(&self, call: ApiCall) -> ApiReply;
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
        let doc = Node::parse(&reply.body);
        if reply.status >= 300 {
            return Err(ApiError {
                status: reply.status,
                code: doc.text_of("Code"),
                message: doc.text_of("Message"),
            });
        }
        Ok(doc)
    }
}

impl Ctx<'_> {
    async fn send(&self, service: &'static str, input: ApiInput) -> ApiReply {
        let browser = self
            .req
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        self.console
            .api
            .call(ApiCall {
                service,
                input,
                credentials: self.session.credentials.clone(),
                user_agent: format!("{USER_AGENT} {browser}").trim().to_string(),
                peer: self.req.peer,
            })
            .await
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
        let reply = self.send(service, input).await;
        let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
        if reply.status >= 300 {
            let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
            let code = field("__type");
            return Err(ApiError {
                status: reply.status,
                code: code.rsplit('#').next().unwrap_or(&code).to_string(),
                message: field("message"),
            });
        }
        Ok(v)
    }
}

/// A rendered answer before the console's headers are added.
pub struct Page {
    pub status: StatusCode,
    pub body: String,
    pub location: Option<String>,
    pub cookies: Vec<String>,
    pub content_type: &'static str,
}

impl Page {
    pub fn html(status: StatusCode, body: maud::Markup) -> Page {
        Page {
            status,
            body: body.into_string(),
            location: None,
            cookies: Vec::new(),
            content_type: "text/html; charset=utf-8",
        }
    }

    pub fn ok(body: maud::Markup) -> Page {
        Page::html(StatusCode::OK, body)
    }

    /// A body that is not a page (assets, bare statuses).
    pub fn plain(status: StatusCode, content_type: &'static str, body: &str) -> Page {
        Page {
            status,
            body: body.to_string(),
            location: None,
            cookies: Vec::new(),
            content_type,
        }
    }

    /// 303 See Other: after a POST, or to the sign-in page.
    pub fn redirect(to: impl Into<String>) -> Page {
        let mut p = Page::plain(StatusCode::SEE_OTHER, "text/plain", "");
        p.location = Some(to.into());
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
    pub async fn handle(&self, req: ConsoleRequest) -> Response<Bytes> {
        let page = self.route(&req).await;
        finish(page)
    }

    async fn route(&self, req: &ConsoleRequest) -> Page {
        if ![Method::GET, Method::HEAD, Method::POST].contains(&req.method) {
            return Page::plain(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "");
        }
        let path = req.path.trim_end_matches('/');
        if let Some(asset) = path.strip_prefix("/console/static/") {
            return layout::asset(asset);
        }
        if path == "/console/signin" {
            return signin::page(self, req).await;
        }
        let sid = session::cookie(&req.headers, session::COOKIE).unwrap_or("");
        let Some(session) = self.session(sid) else {
            return Page::redirect("/console/signin");
        };
        let form = match req.method {
            Method::POST => parse_form(&req.body),
            _ => parse_form(req.query.as_bytes()),
        };
        let ctx = Ctx {
            console: self,
            req,
            session,
            form,
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

    async fn pages(&self, ctx: &Ctx<'_>, path: &str) -> Page {
        let segs: Vec<&str> = path.split('/').skip(2).collect();
        let post = ctx.req.method == Method::POST;
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
fn finish(page: Page) -> Response<Bytes> {
    let mut r = Response::new(Bytes::from(page.body));
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
    if let Some(l) = page.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        h.insert(http::header::LOCATION, l);
    }
    for c in page.cookies {
        if let Ok(v) = HeaderValue::from_str(&c) {
            h.append(http::header::SET_COOKIE, v);
        }
    }
    r
}
