//! EC2 pages: instances, an instance's detail with its Actions menu, and
//! Actions → Security → Modify IAM role.

use maud::{Markup, html};

use crate::layout::{api_error, csrf_field, flash, frame};
use crate::xml::{Find, Node};
use crate::{Ctx, Page, enc};

/// The pages added to the instance list and detail: launch, and
/// Actions → Instance settings → Modify instance metadata options.
pub async fn route(ctx: &Ctx<'_>, segs: &[&str], post: bool) -> Option<Page> {
    let page = match (segs, post) {
        (["ec2", "launch"], false) => launch_form(ctx).await,
        (["ec2", "launch"], true) => launch(ctx).await,
        (["ec2", "instances", id, "metadata-options"], false) => {
            metadata_form(ctx, &crate::decode(id)).await
        }
        (["ec2", "instances", id, "metadata-options"], true) => {
            modify_metadata(ctx, &crate::decode(id)).await
        }
        _ => return None,
    };
    Some(page)
}

/// The instance types the launch form offers.
const TYPES: &[&str] = &["t3.micro", "t3.small", "t3.medium", "m5.large"];
/// The image the launch form starts with (Amazon Linux 2023 of the built-in catalogue).
const DEFAULT_IMAGE: &str = "ami-0abcdef1234567890";

/// The metadata options fields, shared by the launch and modify forms.
fn metadata_fields(tokens: &str, hops: &str) -> Markup {
    html! {
        fieldset id="metadata-options" {
            legend { "Metadata options" }
            label for="http-tokens" { "IMDSv2" }
            select id="http-tokens" name="http_tokens" {
                option value="required" selected[tokens == "required"] { "Required" }
                option value="optional" selected[tokens == "optional"] { "Optional" }
            }
            label for="hop-limit" { "Metadata response hop limit" }
            input type="text" id="hop-limit" name="hop_limit" value=(hops) inputmode="numeric";
        }
    }
}

async fn launch_form(ctx: &Ctx<'_>) -> Page {
    let profiles = page!(
        ctx.fetch(
            "iam",
            "ListInstanceProfiles",
            &[("MaxItems", "1000")],
            "Launch an instance"
        )
        .await
    );
    Page::ok(frame(
        ctx,
        "Launch an instance",
        html! {
            p.steps { a href="/console/ec2/instances" { "Instances" } " › Launch an instance" }
            h1 { "Launch an instance" }
            form method="post" action="/console/ec2/launch" id="launch" {
                (csrf_field(ctx))
                label for="launch-name" { "Name" }
                input type="text" id="launch-name" name="name" maxlength="256";
                label for="launch-image" { "Image (AMI ID)" }
                input type="text" id="launch-image" name="image" value=(DEFAULT_IMAGE);
                label for="launch-type" { "Instance type" }
                select id="launch-type" name="type" { @for t in TYPES { option value=(t) { (t) } } }
                label for="launch-profile" { "IAM instance profile" }
                select id="launch-profile" name="profile" {
                    option value="" { "None" }
                    @for p in profiles.list("InstanceProfiles", "member") {
                        @let n = p.text_of("InstanceProfileName");
                        option value=(n) { (n) }
                    }
                }
                (metadata_fields("required", "2"))
                p { button.primary type="submit" id="launch-submit" { "Launch instance" } }
            }
        },
    ))
}

async fn launch(ctx: &Ctx<'_>) -> Page {
    let (name, image, ty) = (ctx.field("name"), ctx.field("image"), ctx.field("type"));
    let (profile, tokens, hops) = (
        ctx.field("profile"),
        ctx.field("http_tokens"),
        ctx.field("hop_limit"),
    );
    let mut p: Vec<(&str, &str)> = vec![
        ("ImageId", &image),
        ("InstanceType", &ty),
        ("MinCount", "1"),
        ("MaxCount", "1"),
        ("MetadataOptions.HttpTokens", &tokens),
        ("MetadataOptions.HttpPutResponseHopLimit", &hops),
    ];
    if !profile.is_empty() {
        p.push(("IamInstanceProfile.Name", &profile));
    }
    if !name.is_empty() {
        p.extend([
            ("TagSpecification.1.ResourceType", "instance"),
            ("TagSpecification.1.Tag.1.Key", "Name"),
            ("TagSpecification.1.Tag.1.Value", &name),
        ]);
    }
    match ctx.call("ec2", "RunInstances", &p).await {
        Ok(d) => Page::redirect(format!(
            "/console/ec2/instances/{}?done=launched",
            enc(&d.text_of("instanceId"))
        )),
        Err(e) => api_error(ctx, "Launch an instance", &e),
    }
}

async fn metadata_form(ctx: &Ctx<'_>, id: &str) -> Page {
    let doc = page!(
        ctx.fetch(
            "ec2",
            "DescribeInstances",
            &[("InstanceId.1", id)],
            "Modify instance metadata options"
        )
        .await
    );
    let m = instances_of(&doc)
        .into_iter()
        .next()
        .and_then(|i| i.find("metadataOptions").cloned())
        .unwrap_or_default();
    Page::ok(frame(
        ctx,
        "Modify instance metadata options",
        html! {
            p.steps { a href="/console/ec2/instances" { "Instances" } " › " a href={ "/console/ec2/instances/" (enc(id)) } { (id) } " › Modify instance metadata options" }
            h1 { "Modify instance metadata options" }
            form method="post" action={ "/console/ec2/instances/" (enc(id)) "/metadata-options" } id="modify-metadata" {
                (csrf_field(ctx))
                (metadata_fields(&m.text_of("httpTokens"), &m.text_of("httpPutResponseHopLimit")))
                p { button.primary type="submit" id="save-metadata" { "Save" } }
            }
        },
    ))
}

async fn modify_metadata(ctx: &Ctx<'_>, id: &str) -> Page {
    let (tokens, hops) = (ctx.field("http_tokens"), ctx.field("hop_limit"));
    let p = [
        ("InstanceId", id),
        ("HttpTokens", tokens.as_str()),
        ("HttpPutResponseHopLimit", hops.as_str()),
    ];
    match ctx.call("ec2", "ModifyInstanceMetadataOptions", &p).await {
        Ok(_) => Page::redirect(format!("/console/ec2/instances/{}?done=metadata", enc(id))),
        Err(e) => api_error(ctx, "Modify instance metadata options", &e),
    }
}

/// The instance's role credentials as delivered: which channel, when
/// issued, when last fetched. Shown after DescribeInstances allowed the
/// caller to see the instance (no AWS API reports this; the admin
/// endpoint's `/_keycard/admin/instances/ID` carries the same).
fn credentials_status(ctx: &Ctx<'_>, id: &str) -> Markup {
    let list = ctx.console.kc.instance_delivery_status(id);
    let t = |s: i64| keycard_services::sts::iso8601(s);
    html! {
        h2 { "Role credentials" }
        @if list.is_empty() {
            p id="credentials-status" { "Not delivered: the instance has not fetched role credentials." }
        } @else {
            table id="credentials-status" {
                thead { tr { th { "Delivered by" } th { "Access key" } th { "Issued" } th { "Last fetched" } th { "Expires" } } }
                tbody {
                    @for d in &list {
                        tr data-delivery=(d.delivery) {
                            td { (match d.delivery.as_str() { "ImdsV1" => "IMDSv1", "ImdsV2" => "IMDSv2", _ => "Container endpoint" }) }
                            td { code { (d.access_key_id) } }
                            td { (t(d.issued)) }
                            td { (t(d.last_fetched)) }
                            td { (t(d.expiration)) }
                        }
                    }
                }
            }
        }
    }
}

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

/// The role inside an instance profile: what AWS's console shows as the
/// instance's "IAM Role" (the profile's name when it can't be read).
async fn role_of_profile(ctx: &Ctx<'_>, profile: &str) -> String {
    if profile.is_empty() {
        return String::new();
    }
    ctx.call(
        "iam",
        "GetInstanceProfile",
        &[("InstanceProfileName", profile)],
    )
    .await
    .ok()
    .map(|doc| doc.text_of("RoleName"))
    .filter(|r| !r.is_empty())
    .unwrap_or_else(|| profile.to_string())
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
            p { a.btn href="/console/ec2/launch" id="launch-instance" { "Launch instances" } }
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
    let role = role_of_profile(ctx, &profile_of(i)).await;
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
                    li { strong { "Instance settings" } }
                    li { a id="modify-metadata-options" href={ "/console/ec2/instances/" (enc(id)) "/metadata-options" } { "Modify instance metadata options" } }
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
                tr { th { "IAM Role" } td id="iam-role" { @if role.is_empty() { span.muted { "–" } } @else { a href={ "/console/iam/roles/" (enc(&role)) } { (role) } } } }
                tr { th { "Instance profile ARN" } td { (i.find("iamInstanceProfile").map(|p| p.text_of("arn")).unwrap_or_default()) } }
                @if let Some(m) = meta {
                    tr { th { "IMDSv2" } td id="http-tokens-value" { (m.text_of("httpTokens")) } }
                    tr { th { "Metadata hop limit" } td id="hop-limit-value" { (m.text_of("httpPutResponseHopLimit")) } }
                }
            }
            (credentials_status(ctx, id))
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
