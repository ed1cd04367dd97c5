//! IAM pages: roles (list, detail, detach), seed 002's create-role
//! wizard, users with their keys.

use maud::{Markup, html};

use crate::layout::{api_error, csrf_field, flash, frame, policy_json};
use crate::xml::{Find, Node};
use crate::{Ctx, Page, enc};

/// The wizard's use cases: the service a role is for.
/// (form key, label, service principal).
type UseCase = (&'static str, &'static str, &'static str);

const USE_CASES: &[UseCase] = &[
    ("ec2", "EC2", "ec2.amazonaws.com"),
    ("lambda", "Lambda", "lambda.amazonaws.com"),
];

fn use_case(key: &str) -> Option<&'static UseCase> {
    USE_CASES.iter().find(|(k, _, _)| *k == key)
}

/// The use case the wizard's form names, or the page saying to choose one.
fn chosen_use_case(ctx: &Ctx<'_>) -> Result<&'static UseCase, Page> {
    use_case(&ctx.field("service")).ok_or_else(|| {
        crate::layout::error_page(
            ctx,
            http::StatusCode::BAD_REQUEST,
            "Create role",
            "Choose a use case.",
        )
    })
}

/// The trust policy the wizard writes for a service.
fn trust_policy(service: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": service},
            "Action": "sts:AssumeRole"
        }]
    })
    .to_string()
}

/// Who a trust policy trusts, in a line.
fn trusted(doc: &str) -> String {
    let raw = policy_json(doc);
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&raw) else {
        return String::new();
    };
    let mut out = Vec::new();
    let stmts = match v.get("Statement") {
        Some(serde_json::Value::Array(a)) => a.clone(),
        Some(s) => vec![s.clone()],
        None => Vec::new(),
    };
    for s in stmts {
        if let Some(serde_json::Value::Object(p)) = s.get("Principal") {
            for (kind, who) in p {
                let names = match who {
                    serde_json::Value::Array(a) => a
                        .iter()
                        .filter_map(|x| x.as_str())
                        .map(String::from)
                        .collect(),
                    x => vec![x.as_str().unwrap_or("").to_string()],
                };
                for n in names {
                    out.push(format!("{kind}: {n}"));
                }
            }
        }
    }
    out.join(", ")
}

pub async fn roles(ctx: &Ctx<'_>) -> Page {
    let doc = page!(
        ctx.fetch("iam", "ListRoles", &[("MaxItems", "1000")], "Roles")
            .await
    );
    let roles = doc.list("Roles", "member");
    Page::ok(frame(
        ctx,
        "Roles",
        html! {
            h1 { "Roles " span.muted { "(" (roles.len()) ")" } }
            p { a.btn href="/console/iam/roles/create" id="create-role" { "Create role" } }
            table id="roles" {
                thead { tr { th { "Role name" } th { "Trusted entities" } th { "Created" } } }
                tbody {
                    @for r in &roles {
                        @let name = r.text_of("RoleName");
                        tr {
                            td { a href={ "/console/iam/roles/" (enc(&name)) } { (name) } }
                            td { (trusted(&r.text_of("AssumeRolePolicyDocument"))) }
                            td { (r.text_of("CreateDate")) }
                        }
                    }
                }
            }
        },
    ))
}

pub async fn role(ctx: &Ctx<'_>, name: &str) -> Page {
    let n = [("RoleName", name)];
    let role = page!(ctx.fetch("iam", "GetRole", &n, name).await);
    let attached = ctx.call("iam", "ListAttachedRolePolicies", &n).await;
    let inline = ctx.call("iam", "ListRolePolicies", &n).await;
    let profiles = ctx.call("iam", "ListInstanceProfilesForRole", &n).await;
    Page::ok(frame(
        ctx,
        name,
        html! {
            p.steps { a href="/console/iam/roles" { "Roles" } " › " (name) }
            h1 id="role-name" { (name) }
            (flash(ctx))
            table {
                tr { th { "ARN" } td id="role-arn" { (role.text_of("Arn")) } }
                tr { th { "Description" } td { (role.text_of("Description")) } }
                tr { th { "Created" } td { (role.text_of("CreateDate")) } }
                tr { th { "Maximum session duration" } td { (role.text_of("MaxSessionDuration")) " seconds" } }
            }
            h2 { "Permissions policies" }
            (attached_table(ctx, name, &attached))
            h2 { "Inline policies" }
            (section(&inline, |d| html! {
                ul { @for p in d.list("PolicyNames", "member") { li { (p.text) } } }
            }))
            h2 { "Instance profiles" }
            (section(&profiles, |d| html! {
                ul id="instance-profiles" {
                    @for p in d.list("InstanceProfiles", "member") { li { (p.text_of("InstanceProfileName")) } }
                }
            }))
            h2 { "Tags" }
            table id="role-tags" {
                @for t in role.list("Tags", "member") { tr { th { (t.text_of("Key")) } td { (t.text_of("Value")) } } }
            }
            h2 { "Trust relationships" }
            pre id="trust-policy" { (policy_json(&role.text_of("AssumeRolePolicyDocument"))) }
        },
    ))
}

/// A section from a call that may be refused: the refusal shows in place.
fn section(r: &Result<Node, crate::ApiError>, ok: impl Fn(&Node) -> Markup) -> Markup {
    match r {
        Ok(d) => ok(d),
        Err(e) => crate::layout::refused(e),
    }
}

fn attached_table(ctx: &Ctx<'_>, role: &str, r: &Result<Node, crate::ApiError>) -> Markup {
    section(r, |d| {
        html! {
            table id="attached-policies" {
                thead { tr { th { "Policy name" } th { "ARN" } th {} } }
                tbody {
                    @for p in d.list("AttachedPolicies", "member") {
                        @let arn = p.text_of("PolicyArn");
                        tr {
                            td { (p.text_of("PolicyName")) }
                            td { code { (arn) } }
                            td {
                                form method="post" action={ "/console/iam/roles/" (enc(role)) "/detach" } {
                                    (csrf_field(ctx))
                                    input type="hidden" name="policy_arn" value=(arn);
                                    button.link type="submit" data-policy=(p.text_of("PolicyName")) { "Detach" }
                                }
                            }
                        }
                    }
                }
            }
        }
    })
}

pub async fn detach(ctx: &Ctx<'_>, role: &str) -> Page {
    let arn = ctx.field("policy_arn");
    let r = ctx
        .call(
            "iam",
            "DetachRolePolicy",
            &[("RoleName", role), ("PolicyArn", &arn)],
        )
        .await;
    match r {
        Ok(_) => Page::redirect(format!("/console/iam/roles/{}?done=detached", enc(role))),
        Err(e) => api_error(ctx, "Detach policy", &e),
    }
}

/// Step 1: trusted entity type and use case.
pub fn create_step1(ctx: &Ctx<'_>) -> Page {
    Page::ok(frame(
        ctx,
        "Create role",
        html! {
            p.steps { "Step 1: Select trusted entity › Step 2: Add permissions › Step 3: Name, review, and create" }
            h1 { "Select trusted entity" }
            form method="get" action="/console/iam/roles/create/permissions" id="wizard-1" {
                fieldset {
                    legend { "Trusted entity type" }
                    label { input type="radio" name="entity" value="service" checked; " AWS service" }
                    p.muted { "Allow AWS services like EC2 or Lambda to perform actions in this account." }
                }
                label for="use-case" { "Use case" }
                select id="use-case" name="service" {
                    @for (k, label, _) in USE_CASES { option value=(k) { (label) } }
                }
                p { button.primary type="submit" id="wizard-next-1" { "Next" } }
            }
        },
    ))
}

/// Step 2: managed policies to attach, from ListPolicies.
pub async fn create_step2(ctx: &Ctx<'_>) -> Page {
    let (key, label, _) = page!(chosen_use_case(ctx));
    let doc = page!(
        ctx.fetch(
            "iam",
            "ListPolicies",
            &[("Scope", "All"), ("MaxItems", "1000")],
            "Add permissions"
        )
        .await
    );
    Page::ok(frame(
        ctx,
        "Create role",
        html! {
            p.steps { "Step 1: Trusted entity: AWS service, " (label) " › " strong { "Step 2: Add permissions" } " › Step 3" }
            h1 { "Add permissions" }
            form method="get" action="/console/iam/roles/create/review" id="wizard-2" {
                input type="hidden" name="service" value=(key);
                table id="policies" {
                    thead { tr { th {} th { "Policy name" } th { "Type" } } }
                    tbody {
                        @for p in doc.list("Policies", "member") {
                            @let arn = p.text_of("Arn");
                            @let name = p.text_of("PolicyName");
                            tr {
                                td { input type="checkbox" name="policy" value=(arn) id={ "policy-" (name) }; }
                                td { label for={ "policy-" (name) } { (name) } }
                                td { @if arn.starts_with("arn:aws:iam::aws:") { "AWS managed" } @else { "Customer managed" } }
                            }
                        }
                    }
                }
                p { button.primary type="submit" id="wizard-next-2" { "Next" } }
            }
        },
    ))
}

/// Step 3: name, review, create.
pub fn create_step3(ctx: &Ctx<'_>) -> Page {
    let (key, label, principal) = page!(chosen_use_case(ctx));
    let policies = ctx.fields("policy");
    let trust = serde_json::from_str::<serde_json::Value>(&trust_policy(principal))
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_default();
    Page::ok(frame(
        ctx,
        "Create role",
        html! {
            p.steps { "Step 1 › Step 2 › " strong { "Step 3: Name, review, and create" } }
            h1 { "Name, review, and create" }
            form method="post" action="/console/iam/roles/create" id="wizard-3" {
                (csrf_field(ctx))
                input type="hidden" name="service" value=(key);
                @for p in &policies { input type="hidden" name="policy" value=(p); }
                label for="role-name-input" { "Role name" }
                input type="text" id="role-name-input" name="name" maxlength="64";
                label for="role-description" { "Description" }
                input type="text" id="role-description" name="description" value={ "Allows " (label) " instances to call AWS services on your behalf." };
                h2 { "Trust policy" }
                pre { (trust) }
                h2 { "Permissions" }
                ul id="review-policies" { @for p in &policies { li { code { (p) } } } }
                @if *key == "ec2" {
                    p.muted { "An instance profile of the same name is created with the role, so it can be attached to instances." }
                }
                p { button.primary type="submit" id="create-role-submit" { "Create role" } }
            }
        },
    ))
}

/// Create the role, attach its policies, and for EC2 its instance
/// profile: each an API call of its own, each authorized and audited.
pub async fn create(ctx: &Ctx<'_>) -> Page {
    let (key, _, principal) = page!(chosen_use_case(ctx));
    let name = ctx.field("name");
    let desc = ctx.field("description");
    let trust = trust_policy(principal);
    let mut params = vec![
        ("RoleName", name.as_str()),
        ("AssumeRolePolicyDocument", trust.as_str()),
    ];
    if !desc.is_empty() {
        params.push(("Description", desc.as_str()));
    }
    if let Err(e) = ctx.call("iam", "CreateRole", &params).await {
        return api_error(ctx, "Create role", &e);
    }
    for arn in ctx.fields("policy") {
        let r = ctx
            .call(
                "iam",
                "AttachRolePolicy",
                &[("RoleName", &name), ("PolicyArn", &arn)],
            )
            .await;
        if let Err(e) = r {
            return api_error(ctx, "Attach policy", &e);
        }
    }
    if *key == "ec2" {
        let p = [("InstanceProfileName", name.as_str())];
        if let Err(e) = ctx.call("iam", "CreateInstanceProfile", &p).await {
            return api_error(ctx, "Create instance profile", &e);
        }
        let add = [
            ("InstanceProfileName", name.as_str()),
            ("RoleName", name.as_str()),
        ];
        if let Err(e) = ctx.call("iam", "AddRoleToInstanceProfile", &add).await {
            return api_error(ctx, "Add role to instance profile", &e);
        }
    }
    Page::redirect(format!("/console/iam/roles/{}?done=created", enc(&name)))
}

/// Users with their access keys' age and last use.
pub async fn users(ctx: &Ctx<'_>) -> Page {
    let doc = page!(
        ctx.fetch("iam", "ListUsers", &[("MaxItems", "1000")], "Users")
            .await
    );
    let mut rows = Vec::new();
    for u in doc.list("Users", "member") {
        let name = u.text_of("UserName");
        let keys = ctx
            .call("iam", "ListAccessKeys", &[("UserName", &name)])
            .await;
        let mut ks = Vec::new();
        if let Ok(k) = &keys {
            for m in k.list("AccessKeyMetadata", "member") {
                let id = m.text_of("AccessKeyId");
                let used = ctx
                    .call("iam", "GetAccessKeyLastUsed", &[("AccessKeyId", &id)])
                    .await
                    .map(|d| d.text_of("LastUsedDate"))
                    .unwrap_or_default();
                ks.push((id, m.text_of("Status"), m.text_of("CreateDate"), used));
            }
        }
        rows.push((name, u.text_of("CreateDate"), keys.err(), ks));
    }
    Page::ok(frame(
        ctx,
        "Users",
        html! {
            h1 { "Users" }
            table id="users" {
                thead { tr { th { "User name" } th { "Created" } th { "Access keys (status, created, last used)" } } }
                tbody {
                    @for (name, created, err, ks) in &rows {
                        tr {
                            td { (name) }
                            td { (created) }
                            td {
                                @if let Some(e) = err { span.muted { (e.code) } }
                                @for (id, st, cr, used) in ks {
                                    div { code { (id) } " " (st) ", created " (cr) ", last used " (if used.is_empty() { "never" } else { used.as_str() }) }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}
