//! Sign-in and its page. The form carries a pre-session CSRF token
//! (double-submitted in a cookie); success starts a server-side session.

use http::{Method, StatusCode};
use keycard_proto::secret::ct_eq;
use keycard_services::console::{Origin, SignIn, SignInFailure};
use maud::{Markup, html};

use crate::session::{self, SIGNIN_COOKIE};
use crate::{Console, ConsoleRequest, Page, layout, parse_form};

/// The one message for every failed sign-in: it does not say which part
/// was wrong.
const FAILED: &str = "Your authentication information is incorrect. Please try again.";

pub async fn page(console: &Console, req: &ConsoleRequest) -> Page {
    let token = session::cookie(&req.headers, SIGNIN_COOKIE)
        .filter(|t| t.len() == 64)
        .map(str::to_string);
    if req.method != Method::POST {
        return form(req, token, StatusCode::OK, None, &[]);
    }
    let f = parse_form(&req.body);
    let get = |k: &str| {
        f.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let given = get("csrf");
    let valid = token
        .as_deref()
        .is_some_and(|t| ct_eq(t.as_bytes(), given.as_bytes()));
    if !valid {
        return form(
            req,
            None,
            StatusCode::FORBIDDEN,
            Some("The form's security token is missing or does not match. Please try again."),
            &f,
        );
    }
    let (account, user, password, mfa) =
        (get("account"), get("username"), get("password"), get("mfa"));
    let (key, secret) = (get("access_key_id"), get("secret_access_key"));
    let sign_in = if get("kind") == "root" {
        SignIn::Root {
            account: &account,
            access_key_id: &key,
            secret: &secret,
        }
    } else {
        SignIn::User {
            account: &account,
            user: &user,
            password: &password,
            mfa_code: Some(mfa.as_str()).filter(|m| !m.is_empty()),
        }
    };
    let ua = req
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin = Origin {
        source_ip: &req.peer.ip().to_string(),
        user_agent: &format!("{} {ua}", crate::USER_AGENT),
        region: &console.kc.config.region,
    };
    let is_root = get("kind") == "root";
    let who = format!(
        "{account}/{}",
        if is_root {
            "root".to_string()
        } else {
            user.to_lowercase()
        }
    );
    let now = console.now();
    if console.lockout.locked(&who, now) {
        let user = (!is_root).then_some(user.as_str());
        console
            .kc
            .console_login_refused(&account, user, &origin)
            .await;
        return form(req, token, StatusCode::UNAUTHORIZED, Some(FAILED), &f);
    }
    let outcome = console.kc.console_sign_in(&sign_in, &origin).await;
    match &outcome {
        Ok(_) => console.lockout.succeeded(&who),
        Err(SignInFailure::Failed) => console.lockout.failed(&who, now),
        Err(SignInFailure::MfaRequired) => {}
    }
    match outcome {
        Ok(s) => {
            let id = console
                .sessions
                .start(s.caller, s.credentials, s.mfa, console.now());
            let mut p = Page::redirect("/console/iam/roles");
            p.cookies
                .push(session::set_cookie(session::COOKIE, &id, req.secure, None));
            p.cookies
                .push(session::set_cookie(SIGNIN_COOKIE, "", req.secure, Some(0)));
            p
        }
        Err(SignInFailure::MfaRequired) => form(
            req,
            token,
            StatusCode::UNAUTHORIZED,
            Some(
                "This user signs in with an MFA device: enter the password and the device's current code.",
            ),
            &f,
        ),
        Err(SignInFailure::Failed) => form(req, token, StatusCode::UNAUTHORIZED, Some(FAILED), &f),
    }
}

/// The sign-in form, with a fresh pre-session token when there is none.
fn form(
    req: &ConsoleRequest,
    token: Option<String>,
    status: StatusCode,
    message: Option<&str>,
    prev: &[(String, String)],
) -> Page {
    let (token, fresh) = match token {
        Some(t) => (t, false),
        None => (session::token(), true),
    };
    let prev_of = |k: &str| {
        prev.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let body = html! {
        h1 { "Sign in" }
        @if let Some(m) = message { div.error id="signin-error" { p { (m) } } }
        (user_form(&token, &prev_of("account"), &prev_of("username")))
        h2 { "Root user" }
        (root_form(&token))
    };
    let mut p = Page::html(status, layout::bare("Sign in", body));
    if fresh {
        p.cookies
            .push(session::set_cookie(SIGNIN_COOKIE, &token, req.secure, None));
    }
    p
}

fn user_form(token: &str, account: &str, user: &str) -> Markup {
    html! {
        form method="post" action="/console/signin" id="user-signin" {
            input type="hidden" name="csrf" value=(token);
            input type="hidden" name="kind" value="user";
            label for="account" { "Account ID" }
            input type="text" id="account" name="account" value=(account) autocomplete="off";
            label for="username" { "IAM user name" }
            input type="text" id="username" name="username" value=(user);
            label for="password" { "Password" }
            input type="password" id="password" name="password";
            label for="mfa" { "MFA code " span.muted { "(if your user has an MFA device)" } }
            input type="text" id="mfa" name="mfa" inputmode="numeric" autocomplete="one-time-code";
            p { button.primary type="submit" id="signin-submit" { "Sign in" } }
        }
    }
}

fn root_form(token: &str) -> Markup {
    html! {
        form method="post" action="/console/signin" id="root-signin" {
            input type="hidden" name="csrf" value=(token);
            input type="hidden" name="kind" value="root";
            label for="root-account" { "Account ID" }
            input type="text" id="root-account" name="account" autocomplete="off";
            label for="root-key" { "Root access key ID" }
            input type="text" id="root-key" name="access_key_id" autocomplete="off";
            label for="root-secret" { "Secret access key" }
            input type="password" id="root-secret" name="secret_access_key";
            p { button.primary type="submit" id="root-signin-submit" { "Sign in as root" } }
        }
    }
}
