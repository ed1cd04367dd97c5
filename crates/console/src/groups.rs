//! IAM groups (list, members, attached policies; create a group, add a
//! user) and instance profiles (the roles in them).

use maud::html;

use crate::layout::{api_error, csrf_field, flash, frame, refused};
use crate::xml::Find;
use crate::{Ctx, Page, enc};

pub async fn route(ctx: &Ctx<'_>, segs: &[&str], post: bool) -> Option<Page> {
    let page = match (segs, post) {
        (["iam", "groups"], false) => list(ctx).await,
        (["iam", "groups", "create"], true) => create(ctx).await,
        (["iam", "groups", name], false) => group(ctx, &crate::decode(name)).await,
        (["iam", "groups", name, "add-user"], true) => add_user(ctx, &crate::decode(name)).await,
        (["iam", "instance-profiles"], false) => profiles(ctx).await,
        _ => return None,
    };
    Some(page)
}

async fn list(ctx: &Ctx<'_>) -> Page {
    let doc = page!(
        ctx.fetch("iam", "ListGroups", &[("MaxItems", "1000")], "User groups")
            .await
    );
    let groups = doc.list("Groups", "member");
    Page::ok(frame(
        ctx,
        "User groups",
        html! {
            h1 { "User groups " span.muted { "(" (groups.len()) ")" } }
            (flash(ctx))
            form method="post" action="/console/iam/groups/create" id="create-group" {
                (csrf_field(ctx))
                label for="group-name-input" { "New group name" }
                input type="text" id="group-name-input" name="name" maxlength="128";
                " "
                button.primary type="submit" id="create-group-submit" { "Create group" }
            }
            table id="groups" {
                thead { tr { th { "Group name" } th { "ARN" } th { "Created" } } }
                tbody {
                    @for g in &groups {
                        @let name = g.text_of("GroupName");
                        tr {
                            td { a href={ "/console/iam/groups/" (enc(&name)) } { (name) } }
                            td { code { (g.text_of("Arn")) } }
                            td { (g.text_of("CreateDate")) }
                        }
                    }
                }
            }
        },
    ))
}

async fn create(ctx: &Ctx<'_>) -> Page {
    let name = ctx.field("name");
    match ctx
        .call("iam", "CreateGroup", &[("GroupName", &name)])
        .await
    {
        Ok(_) => Page::redirect(format!(
            "/console/iam/groups/{}?done=group-created",
            enc(&name)
        )),
        Err(e) => api_error(ctx, "Create group", &e),
    }
}

async fn group(ctx: &Ctx<'_>, name: &str) -> Page {
    let n = [("GroupName", name)];
    let doc = page!(ctx.fetch("iam", "GetGroup", &n, name).await);
    let attached = ctx.call("iam", "ListAttachedGroupPolicies", &n).await;
    let users = ctx.call("iam", "ListUsers", &[("MaxItems", "1000")]).await;
    let members: Vec<String> = doc
        .list("Users", "member")
        .iter()
        .map(|u| u.text_of("UserName"))
        .collect();
    Page::ok(frame(
        ctx,
        name,
        html! {
            p.steps { a href="/console/iam/groups" { "User groups" } " › " (name) }
            h1 id="group-name" { (name) }
            (flash(ctx))
            p { "ARN " code { (doc.text_of("Arn")) } }
            h2 { "Users in this group" }
            ul id="group-members" { @for m in &members { li { (m) } } }
            @if let Ok(u) = &users {
                form method="post" action={ "/console/iam/groups/" (enc(name)) "/add-user" } id="add-user" {
                    (csrf_field(ctx))
                    label for="add-user-select" { "Add user" }
                    select id="add-user-select" name="user" {
                        @for x in u.list("Users", "member") {
                            @let un = x.text_of("UserName");
                            @if !members.contains(&un) { option value=(un) { (un) } }
                        }
                    }
                    " "
                    button.primary type="submit" id="add-user-submit" { "Add user" }
                }
            }
            h2 { "Permissions policies" }
            @match &attached {
                Ok(d) => table id="group-policies" {
                    thead { tr { th { "Policy name" } th { "ARN" } } }
                    tbody {
                        @for p in d.list("AttachedPolicies", "member") {
                            @let arn = p.text_of("PolicyArn");
                            tr {
                                td { a href={ "/console/iam/policies/view?arn=" (enc(&arn)) } { (p.text_of("PolicyName")) } }
                                td { code { (arn) } }
                            }
                        }
                    }
                },
                Err(e) => (refused(e)),
            }
        },
    ))
}

async fn add_user(ctx: &Ctx<'_>, group: &str) -> Page {
    let user = ctx.field("user");
    let p = [("GroupName", group), ("UserName", user.as_str())];
    match ctx.call("iam", "AddUserToGroup", &p).await {
        Ok(_) => Page::redirect(format!(
            "/console/iam/groups/{}?done=user-added",
            enc(group)
        )),
        Err(e) => api_error(ctx, "Add user to group", &e),
    }
}

async fn profiles(ctx: &Ctx<'_>) -> Page {
    let doc = page!(
        ctx.fetch(
            "iam",
            "ListInstanceProfiles",
            &[("MaxItems", "1000")],
            "Instance profiles"
        )
        .await
    );
    let list = doc.list("InstanceProfiles", "member");
    Page::ok(frame(
        ctx,
        "Instance profiles",
        html! {
            h1 { "Instance profiles " span.muted { "(" (list.len()) ")" } }
            table id="instance-profiles" {
                thead { tr { th { "Name" } th { "ARN" } th { "Roles" } th { "Created" } } }
                tbody {
                    @for p in &list {
                        @let name = p.text_of("InstanceProfileName");
                        tr data-profile=(name) {
                            td { (name) }
                            td { code { (p.text_of("Arn")) } }
                            td {
                                @for r in p.list("Roles", "member") {
                                    @let rn = r.text_of("RoleName");
                                    a href={ "/console/iam/roles/" (enc(&rn)) } { (rn) } " "
                                }
                            }
                            td { (p.text_of("CreateDate")) }
                        }
                    }
                }
            }
        },
    ))
}
