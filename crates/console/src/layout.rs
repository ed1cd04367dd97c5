//! The page frame, error and denial pages, and the embedded assets.

use http::StatusCode;
use maud::{DOCTYPE, Markup, html};

use crate::{ApiError, Ctx, Page};

/// The stylesheet, embedded (no inline styles or scripts anywhere).
const CSS: &str = include_str!("../static/console.css");
/// htmx 2.0.4 (npm `htmx.org`, `dist/htmx.min.js`, 0BSD: static/htmx-LICENSE),
/// vendored unmodified: sha256
/// e209dda5c8235479f3166defc7750e1dbcd5a5c1808b7792fc2e6733768fb447.
/// Versioned name, so it is cached for a year.
const HTMX: &str = include_str!("../static/htmx-2.0.4.min.js");
pub const HTMX_PATH: &str = "/console/assets/htmx-2.0.4.min.js";

/// A page with the console's navigation and the sign-out form.
pub fn frame(ctx: &Ctx<'_>, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header {
                    a.brand href="/console" { "keycard" }
                    a href="/console/iam/roles" { "Roles" }
                    a href="/console/iam/users" { "Users" }
                    a href="/console/iam/groups" { "Groups" }
                    a href="/console/iam/policies" { "Policies" }
                    a href="/console/iam/instance-profiles" { "Instance profiles" }
                    a href="/console/iam/simulator" { "Simulator" }
                    a href="/console/ec2/instances" { "EC2" }
                    a href="/console/s3" { "S3" }
                    a href="/console/events" { "Event history" }
                    a href="/console/posture" { "Posture" }
                    span.who id="signed-in-as" { (ctx.label()) }
                    form method="post" action="/console/signout" {
                        input type="hidden" name="csrf" value=(ctx.csrf());
                        button type="submit" id="signout" { "Sign out" }
                    }
                }
                main { (body) }
            }
        }
    }
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            title { (title) " | keycard console" }
            link rel="stylesheet" href="/console/static/console.css";
            // No inline indicator styles (CSP style-src 'self'), no eval.
            meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false}"#;
            script src=(HTMX_PATH) defer {}
        }
    }
}

/// A page outside a session (sign-in).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header { span.brand { "keycard" } }
                main.signin { (body) }
            }
        }
    }
}

/// A plain error page in the frame.
pub fn error_page(ctx: &Ctx<'_>, status: StatusCode, title: &str, message: &str) -> Page {
    Page::html(
        status,
        frame(
            ctx,
            title,
            html! { h1 { (title) } div.error id="error" { p { (message) } } },
        ),
    )
}

/// An API error as a page. A denial shows AWS's explanation, as the
/// console does: who was refused which action on which resource, and why.
pub fn api_error(ctx: &Ctx<'_>, what: &str, e: &ApiError) -> Page {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    if e.denied() {
        return Page::html(
            StatusCode::FORBIDDEN,
            frame(
                ctx,
                "Access denied",
                html! {
                    h1 { (what) }
                    div.denied id="access-denied" {
                        p { strong { "You don't have permission to do this." } }
                        p { "Ask your administrator to add permissions. The request was refused with " code { (e.code) } ":" }
                        pre id="denial-message" { (e.message) }
                    }
                },
            ),
        );
    }
    Page::html(
        status,
        frame(
            ctx,
            what,
            html! {
                h1 { (what) }
                div.error id="error" { p { code { (e.code) } ": " (e.message) } }
            },
        ),
    )
}

/// A refused call inside a page (one section of several): its code and message.
pub fn refused(e: &ApiError) -> Markup {
    html! { div.denied { p { code { (e.code) } ": " (e.message) } } }
}

/// `/console/static/<name>`: embedded files only.
pub fn asset(name: &str) -> Page {
    match name {
        "console.css" => Page::plain(StatusCode::OK, "text/css; charset=utf-8", CSS),
        "htmx-2.0.4.min.js" => {
            let mut p = Page::plain(StatusCode::OK, "text/javascript; charset=utf-8", HTMX);
            p.headers.push((
                http::header::CACHE_CONTROL,
                "public, max-age=31536000, immutable".into(),
            ));
            p
        }
        _ => Page::plain(StatusCode::NOT_FOUND, "text/plain", "not found"),
    }
}

/// The outcome of the action that redirected here (`?done=…`), if any:
/// a fixed message per outcome, so a link cannot put its own words here.
pub fn flash(ctx: &Ctx<'_>) -> Markup {
    let msg = match ctx.field("done").as_str() {
        "created" => "Role created.",
        "detached" => "Detached the policy from the role.",
        "updated" => "Successfully updated the IAM role.",
        "policy-created" => "Policy created.",
        "version-created" => "Policy version created.",
        "group-created" => "Group created.",
        "user-added" => "Added the user to the group.",
        "launched" => "Successfully launched the instance.",
        "metadata" => "Successfully modified the instance metadata options.",
        "uploaded" => "Upload succeeded.",
        _ => "",
    };
    html! { @if !msg.is_empty() { div.ok id="flash" { p { (msg) } } } }
}

/// The hidden CSRF field every POST form carries.
pub fn csrf_field(ctx: &Ctx<'_>) -> Markup {
    html! { input type="hidden" name="csrf" value=(ctx.csrf()); }
}

/// A policy document from IAM (URL-encoded JSON), pretty-printed.
pub fn policy_json(encoded: &str) -> String {
    let raw: String = percent_decode(encoded);
    serde_json::from_str::<serde_json::Value>(&raw)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or(raw)
}

fn percent_decode(s: &str) -> String {
    // IAM encodes with %XX (and never '+' for space in documents).
    let plus_safe = s.replace('+', "%2B");
    crate::decode(&plus_safe)
}
