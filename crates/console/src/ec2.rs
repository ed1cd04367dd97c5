//! EC2 pages: instances, an instance's detail with its Actions menu, and
//! Actions → Security → Modify IAM role.

use maud::html;

use crate::layout::{api_error, csrf_field, flash, frame};
use crate::xml::{Find, Node};
use crate::{Ctx, Page, enc};

/// The instances of a DescribeInstances answer, across reservations.
fn instances_of(doc: &Node) -> Vec<&Node> {
    doc.list("reservationSet", "item")
        .into_iter()
        .flat_map(|r| r.list("instancesSet", "item"))
        .collect()
}

fn tag(i: &Node, key: &str) -> String {
    i.list("tagSet", "item")
        .into_iter()
        .find(|t| t.text_of("key") == key)
        .map(|t| t.text_of("value"))
        .unwrap_or_default()
}

/// The instance profile's name from its ARN (`…:instance-profile/path/NAME`).
fn profile_name(arn: &str) -> String {
    arn.rsplit('/').next().unwrap_or("").to_string()
}

fn profile_of(i: &Node) -> String {
    i.find("iamInstanceProfile")
        .map(|p| profile_name(&p.text_of("arn")))
        .unwrap_or_default()
}

pub async fn instances(ctx: &Ctx<'_>) -> Page {
    let doc = page!(
        ctx.fetch("ec2", "DescribeInstances", &[], "Instances")
            .await
    );
    let list = instances_of(&doc);
    Page::ok(frame(
        ctx,
        "Instances",
        html! {
            h1 { "Instances " span.muted { "(" (list.len()) ")" } }
            table id="instances" {
                thead { tr { th { "Name" } th { "Instance ID" } th { "State" } th { "Type" } th { "Private IP" } th { "IAM role" } } }
                tbody {
                    @for i in &list {
                        @let id = i.text_of("instanceId");
                        tr {
                            td { (tag(i, "Name")) }
                            td { a href={ "/console/ec2/instances/" (enc(&id)) } { (id) } }
                            td { (i.find("instanceState").map(|s| s.text_of("name")).unwrap_or_default()) }
                            td { (i.text_of("instanceType")) }
                            td { (i.text_of("privateIpAddress")) }
                            td { (profile_of(i)) }
                        }
                    }
                }
            }
        },
    ))
}

pub async fn instance(ctx: &Ctx<'_>, id: &str) -> Page {
    let doc = page!(
        ctx.fetch("ec2", "DescribeInstances", &[("InstanceId.1", id)], id)
            .await
    );
    let Some(i) = instances_of(&doc).into_iter().next() else {
        return crate::layout::error_page(
            ctx,
            http::StatusCode::NOT_FOUND,
            id,
            "No such instance.",
        );
    };
    let profile = profile_of(i);
    let meta = i.find("metadataOptions");
    Page::ok(frame(
        ctx,
        id,
        html! {
            p.steps { a href="/console/ec2/instances" { "Instances" } " › " (id) }
            h1 { "Instance summary for " (id) " " span.muted { (tag(i, "Name")) } }
            (flash(ctx))
            details.actions id="actions" {
                summary { "Actions ▾" }
                ul {
                    li { strong { "Security" } }
                    li { a id="modify-iam-role" href={ "/console/ec2/instances/" (enc(id)) "/modify-iam-role" } { "Modify IAM role" } }
                }
            }
            h2 { "Details" }
            table {
                tr { th { "State" } td { (i.find("instanceState").map(|s| s.text_of("name")).unwrap_or_default()) } }
                tr { th { "Instance type" } td { (i.text_of("instanceType")) } }
                tr { th { "AMI" } td { (i.text_of("imageId")) } }
                tr { th { "Private IP" } td { (i.text_of("privateIpAddress")) } }
                tr { th { "Subnet" } td { (i.text_of("subnetId")) } }
            }
            h2 { "Security" }
            table {
                tr { th { "IAM Role" } td id="iam-role" { @if profile.is_empty() { span.muted { "–" } } @else { a href={ "/console/iam/roles/" (enc(&profile)) } { (profile) } } } }
                tr { th { "Instance profile ARN" } td { (i.find("iamInstanceProfile").map(|p| p.text_of("arn")).unwrap_or_default()) } }
                @if let Some(m) = meta {
                    tr { th { "IMDSv2" } td { (m.text_of("httpTokens")) } }
                    tr { th { "Metadata hop limit" } td { (m.text_of("httpPutResponseHopLimit")) } }
                }
            }
        },
    ))
}

/// The instance's current association (id, profile name), if any.
async fn association(ctx: &Ctx<'_>, id: &str) -> Result<Option<(String, String)>, crate::ApiError> {
    let doc = ctx
        .call(
            "ec2",
            "DescribeIamInstanceProfileAssociations",
            &[("Filter.1.Name", "instance-id"), ("Filter.1.Value.1", id)],
        )
        .await?;
    Ok(doc
        .list("iamInstanceProfileAssociationSet", "item")
        .into_iter()
        .find(|a| matches!(a.text_of("state").as_str(), "associated" | "associating"))
        .map(|a| {
            (
                a.text_of("associationId"),
                a.find("iamInstanceProfile")
                    .map(|p| profile_name(&p.text_of("arn")))
                    .unwrap_or_default(),
            )
        }))
}

pub async fn modify_role_form(ctx: &Ctx<'_>, id: &str) -> Page {
    let current = match association(ctx, id).await {
        Ok(a) => a.map(|(_, p)| p).unwrap_or_default(),
        Err(e) => return api_error(ctx, "Modify IAM role", &e),
    };
    let profiles = page!(
        ctx.fetch(
            "iam",
            "ListInstanceProfiles",
            &[("MaxItems", "1000")],
            "Modify IAM role"
        )
        .await
    );
    Page::ok(frame(
        ctx,
        "Modify IAM role",
        html! {
            p.steps { a href="/console/ec2/instances" { "Instances" } " › " a href={ "/console/ec2/instances/" (enc(id)) } { (id) } " › Modify IAM role" }
            h1 { "Modify IAM role" }
            p { "Attach an IAM role to your instance. Current role: " strong id="current-role" { @if current.is_empty() { "none" } @else { (current) } } }
            form method="post" action={ "/console/ec2/instances/" (enc(id)) "/modify-iam-role" } id="modify-role" {
                (csrf_field(ctx))
                label for="profile" { "IAM role" }
                select id="profile" name="profile" {
                    option value="" { "No IAM Role" }
                    @for p in profiles.list("InstanceProfiles", "member") {
                        @let n = p.text_of("InstanceProfileName");
                        option value=(n) selected[n == current] { (n) }
                    }
                }
                p { button.primary type="submit" id="update-iam-role" { "Update IAM role" } }
            }
        },
    ))
}

/// Associate, replace or remove the instance's profile, as the console's
/// "Update IAM role" does.
pub async fn modify_role(ctx: &Ctx<'_>, id: &str) -> Page {
    let want = ctx.field("profile");
    let current = match association(ctx, id).await {
        Ok(a) => a,
        Err(e) => return api_error(ctx, "Modify IAM role", &e),
    };
    let r = match (&current, want.is_empty()) {
        (None, true) => Ok(Node::default()),
        (Some((assoc, _)), true) => {
            ctx.call(
                "ec2",
                "DisassociateIamInstanceProfile",
                &[("AssociationId", assoc)],
            )
            .await
        }
        (Some((assoc, _)), false) => {
            ctx.call(
                "ec2",
                "ReplaceIamInstanceProfileAssociation",
                &[("AssociationId", assoc), ("IamInstanceProfile.Name", &want)],
            )
            .await
        }
        (None, false) => {
            ctx.call(
                "ec2",
                "AssociateIamInstanceProfile",
                &[("InstanceId", id), ("IamInstanceProfile.Name", &want)],
            )
            .await
        }
    };
    match r {
        Ok(_) => Page::redirect(format!("/console/ec2/instances/{}?done=updated", enc(id))),
        Err(e) => api_error(ctx, "Modify IAM role", &e),
    }
}
