//! IAM policies: the list (customer and AWS managed, by scope), a
//! policy's versions and default document, and the JSON editor for a new
//! policy or version. The editor validates as you type: htmx posts the
//! text to `/console/iam/policies/validate`, which calls Access
//! Analyzer's ValidatePolicy as the signed-in principal and answers the
//! findings as a fragment. Without JavaScript the "Validate" button posts
//! the same form and the findings come back on the page.

use http::StatusCode;
use maud::{Markup, html};
use serde_json::{Value, json};

use crate::layout::{api_error, csrf_field, flash, frame, policy_json, refused};
use crate::xml::Find;
use crate::{ApiError, Ctx, Page, enc};

const VALIDATE: &str = "/console/iam/policies/validate";
const SCOPES: &[(&str, &str)] = &[
    ("All", "All types"),
    ("Local", "Customer managed"),
    ("AWS", "AWS managed"),
];
/// What the editor starts with.
const STARTER: &str = "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [\n    {\n      \"Effect\": \"Allow\",\n      \"Action\": \"s3:ListAllMyBuckets\",\n      \"Resource\": \"*\"\n    }\n  ]\n}";

pub async fn route(ctx: &Ctx<'_>, segs: &[&str], post: bool) -> Option<Page> {
    let page = match (segs, post) {
        (["iam", "policies"], false) => list(ctx).await,
        (["iam", "policies", "view"], false) => detail(ctx).await,
        (["iam", "policies", "create"], false) => create_form(ctx),
        (["iam", "policies", "create"], true) => create(ctx).await,
        (["iam", "policies", "version"], false) => version_form(ctx).await,
        (["iam", "policies", "version"], true) => new_version(ctx).await,
        (["iam", "policies", "validate"], true) => validate(ctx).await,
        _ => return None,
    };
    Some(page)
}

async fn list(ctx: &Ctx<'_>) -> Page {
    let scope = match ctx.field("scope").as_str() {
        s @ ("AWS" | "Local") => s.to_string(),
        _ => "All".to_string(),
    };
    let doc = page!(
        ctx.fetch(
            "iam",
            "ListPolicies",
            &[("Scope", &scope), ("MaxItems", "1000")],
            "Policies"
        )
        .await
    );
    let policies = doc.list("Policies", "member");
    Page::ok(frame(
        ctx,
        "Policies",
        html! {
            h1 { "Policies " span.muted { "(" (policies.len()) ")" } }
            p { a.btn href="/console/iam/policies/create" id="create-policy" { "Create policy" } }
            form method="get" action="/console/iam/policies" id="scope-filter" {
                label.inline for="scope" { "Filter by type " }
                select id="scope" name="scope" {
                    @for (k, label) in SCOPES { option value=(k) selected[*k == scope] { (label) } }
                }
                " "
                button.link type="submit" id="scope-submit" { "Apply" }
            }
            table id="policies" {
                thead { tr { th { "Policy name" } th { "Type" } th { "Attachments" } th { "Description" } } }
                tbody {
                    @for p in &policies {
                        @let arn = p.text_of("Arn");
                        tr {
                            td { a href={ "/console/iam/policies/view?arn=" (enc(&arn)) } { (p.text_of("PolicyName")) } }
                            td { (kind(&arn)) }
                            td { (p.text_of("AttachmentCount")) }
                            td { (p.text_of("Description")) }
                        }
                    }
                }
            }
        },
    ))
}

fn kind(arn: &str) -> &'static str {
    if arn.starts_with("arn:aws:iam::aws:") {
        "AWS managed"
    } else {
        "Customer managed"
    }
}

async fn detail(ctx: &Ctx<'_>) -> Page {
    let arn = ctx.field("arn");
    let a = [("PolicyArn", arn.as_str())];
    let policy = page!(ctx.fetch("iam", "GetPolicy", &a, "Policy").await);
    let name = policy.text_of("PolicyName");
    let default = policy.text_of("DefaultVersionId");
    let versions = ctx.call("iam", "ListPolicyVersions", &a).await;
    let shown = match ctx.field("version") {
        v if v.is_empty() => default.clone(),
        v => v,
    };
    let doc = ctx
        .call(
            "iam",
            "GetPolicyVersion",
            &[("PolicyArn", &arn), ("VersionId", &shown)],
        )
        .await;
    Page::ok(frame(
        ctx,
        &name,
        html! {
            p.steps { a href="/console/iam/policies" { "Policies" } " › " (name) }
            h1 id="policy-name" { (name) }
            (flash(ctx))
            table {
                tr { th { "ARN" } td id="policy-arn" { code { (arn) } } }
                tr { th { "Type" } td { (kind(&arn)) } }
                tr { th { "Description" } td id="policy-description" { (policy.text_of("Description")) } }
                tr { th { "Default version" } td id="default-version" { (default) } }
                tr { th { "Attachments" } td { (policy.text_of("AttachmentCount")) } }
            }
            @if kind(&arn) == "Customer managed" {
                p { a.btn id="new-version" href={ "/console/iam/policies/version?arn=" (enc(&arn)) } { "Edit (new version)" } }
            }
            h2 { "Versions" }
            @match &versions {
                Ok(v) => table id="versions" {
                    thead { tr { th { "Version" } th { "Default" } th { "Created" } } }
                    tbody {
                        @for m in v.list("Versions", "member") {
                            @let id = m.text_of("VersionId");
                            tr {
                                td { a href={ "/console/iam/policies/view?arn=" (enc(&arn)) "&version=" (enc(&id)) } { (id) } }
                                td { (if m.text_of("IsDefaultVersion") == "true" { "Default" } else { "" }) }
                                td { (m.text_of("CreateDate")) }
                            }
                        }
                    }
                },
                Err(e) => (refused(e)),
            }
            h2 { "Policy document " span.muted { "(" (shown) ")" } }
            @match &doc {
                Ok(d) => pre id="policy-document" { (policy_json(&d.text_of("Document"))) },
                Err(e) => (refused(e)),
            }
        },
    ))
}

fn create_form(ctx: &Ctx<'_>) -> Page {
    editor_page(ctx, StatusCode::OK, &Editor::default(), None)
}

/// What the editor form holds (a new policy, or a new version of `arn`).
#[derive(Default)]
struct Editor {
    arn: String,
    name: String,
    description: String,
    document: String,
    set_default: bool,
}

impl Editor {
    fn from_form(ctx: &Ctx<'_>) -> Editor {
        Editor {
            arn: ctx.field("arn"),
            name: ctx.field("name"),
            description: ctx.field("description"),
            document: ctx.field("document"),
            set_default: ctx.field("set_default") == "1",
        }
    }
}

/// The editor page; `findings` when the form was validated or refused.
fn editor_page(ctx: &Ctx<'_>, status: StatusCode, e: &Editor, findings: Option<Markup>) -> Page {
    let new = e.arn.is_empty();
    let title = if new {
        "Create policy"
    } else {
        "Create policy version"
    };
    let action = if new {
        "/console/iam/policies/create"
    } else {
        "/console/iam/policies/version"
    };
    let doc = if e.document.is_empty() {
        STARTER
    } else {
        e.document.as_str()
    };
    Page::html(
        status,
        frame(
            ctx,
            title,
            html! {
                p.steps { a href="/console/iam/policies" { "Policies" } " › " (title) }
                h1 { (title) }
                form method="post" action=(action) id="policy-editor" {
                    (csrf_field(ctx))
                    @if new {
                        label for="policy-name-input" { "Policy name" }
                        input type="text" id="policy-name-input" name="name" value=(e.name) maxlength="128";
                        label for="policy-description-input" { "Description" }
                        input type="text" id="policy-description-input" name="description" value=(e.description) maxlength="1000";
                    } @else {
                        input type="hidden" name="arn" value=(e.arn);
                        p { "Policy " code { (e.arn) } }
                        label.inline { input type="checkbox" name="set_default" value="1" id="set-default" checked[e.set_default]; " Set as default version" }
                    }
                    label for="policy-document-input" { "Policy editor (JSON)" }
                    textarea id="policy-document-input" name="document" rows="18" cols="90" spellcheck="false"
                        hx-post=(VALIDATE) hx-trigger="input changed delay:400ms" hx-target="#findings" hx-swap="innerHTML" { (doc) }
                    div id="findings" aria-live="polite" { @if let Some(f) = findings { (f) } }
                    p {
                        button.link type="submit" formaction=(VALIDATE) id="validate-policy" { "Validate" }
                        " "
                        button.primary type="submit" id="create-policy-submit" { (if new { "Create policy" } else { "Save version" }) }
                    }
                }
            },
        ),
    )
}

/// ValidatePolicy on the document, as the signed-in principal.
async fn findings(ctx: &Ctx<'_>, document: &str) -> Result<Vec<Value>, ApiError> {
    let out = ctx
        .call_rest_json(
            "access-analyzer",
            "/policy/validation",
            json!({"policyDocument": document, "policyType": "IDENTITY_POLICY"}),
        )
        .await?;
    Ok(out
        .get("findings")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

fn s<'v>(v: &'v Value, k: &str) -> &'v str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// Where a finding is: "line L, column C" of its first location.
fn at(f: &Value) -> String {
    let start = f.pointer("/locations/0/span/start");
    let n = |k: &str| start.and_then(|p| p.get(k)).and_then(Value::as_u64);
    match (n("line"), n("column")) {
        (Some(l), Some(c)) => format!("line {l}, column {c}"),
        _ => String::new(),
    }
}

/// The findings as the editor shows them (or why there are none).
fn findings_markup(r: &Result<Vec<Value>, ApiError>) -> Markup {
    match r {
        Err(e) => {
            html! { div.denied id="validation-refused" { p { "Validation refused: " code { (e.code) } ": " (e.message) } } }
        }
        Ok(list) if list.is_empty() => {
            html! { div.ok id="no-findings" { p { "No findings: the policy is valid." } } }
        }
        Ok(list) => html! {
            table id="policy-findings" {
                thead { tr { th { "Type" } th { "Issue" } th { "Details" } th { "Where" } } }
                tbody {
                    @for f in list {
                        tr.finding data-type=(s(f, "findingType")) data-issue=(s(f, "issueCode")) {
                            td { (s(f, "findingType")) }
                            td { code { (s(f, "issueCode")) } }
                            td { (s(f, "findingDetails")) " " a href=(s(f, "learnMoreLink")) rel="noopener noreferrer" { "Learn more" } }
                            td { (at(f)) }
                        }
                    }
                }
            }
        },
    }
}

fn has_errors(r: &Result<Vec<Value>, ApiError>) -> bool {
    r.as_ref()
        .is_ok_and(|l| l.iter().any(|f| s(f, "findingType") == "ERROR"))
}

/// The editor's live check (htmx: a fragment), or the form again with
/// the findings (no JavaScript).
async fn validate(ctx: &Ctx<'_>) -> Page {
    let e = Editor::from_form(ctx);
    let r = findings(ctx, &e.document).await;
    if ctx.partial() {
        return Page::ok(findings_markup(&r));
    }
    editor_page(ctx, StatusCode::OK, &e, Some(findings_markup(&r)))
}

/// The editor again with its findings when the document has errors;
/// otherwise None (go ahead).
async fn blocked(ctx: &Ctx<'_>, e: &Editor) -> Option<Page> {
    let r = findings(ctx, &e.document).await;
    has_errors(&r).then(|| {
        editor_page(
            ctx,
            StatusCode::BAD_REQUEST,
            e,
            Some(html! {
                div.error id="editor-error" { p { "Fix the errors in the policy before saving it." } }
                (findings_markup(&r))
            }),
        )
    })
}

async fn create(ctx: &Ctx<'_>) -> Page {
    let e = Editor::from_form(ctx);
    if let Some(p) = blocked(ctx, &e).await {
        return p;
    }
    let mut params = vec![
        ("PolicyName", e.name.as_str()),
        ("PolicyDocument", e.document.as_str()),
    ];
    if !e.description.is_empty() {
        params.push(("Description", e.description.as_str()));
    }
    match ctx.call("iam", "CreatePolicy", &params).await {
        Ok(d) => Page::redirect(format!(
            "/console/iam/policies/view?arn={}&done=policy-created",
            enc(&d.text_of("Arn"))
        )),
        Err(err) => api_error(ctx, "Create policy", &err),
    }
}

async fn version_form(ctx: &Ctx<'_>) -> Page {
    let arn = ctx.field("arn");
    let policy = page!(
        ctx.fetch(
            "iam",
            "GetPolicy",
            &[("PolicyArn", &arn)],
            "Create policy version"
        )
        .await
    );
    let v = policy.text_of("DefaultVersionId");
    let doc = page!(
        ctx.fetch(
            "iam",
            "GetPolicyVersion",
            &[("PolicyArn", &arn), ("VersionId", &v)],
            "Create policy version"
        )
        .await
    );
    let e = Editor {
        arn,
        document: policy_json(&doc.text_of("Document")),
        set_default: true,
        ..Editor::default()
    };
    editor_page(ctx, StatusCode::OK, &e, None)
}

async fn new_version(ctx: &Ctx<'_>) -> Page {
    let e = Editor::from_form(ctx);
    if let Some(p) = blocked(ctx, &e).await {
        return p;
    }
    let set = if e.set_default { "true" } else { "false" };
    let params = [
        ("PolicyArn", e.arn.as_str()),
        ("PolicyDocument", e.document.as_str()),
        ("SetAsDefault", set),
    ];
    match ctx.call("iam", "CreatePolicyVersion", &params).await {
        Ok(_) => Page::redirect(format!(
            "/console/iam/policies/view?arn={}&done=version-created",
            enc(&e.arn)
        )),
        Err(err) => api_error(ctx, "Create policy version", &err),
    }
}
