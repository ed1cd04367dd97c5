//! CreateTags, DeleteTags and DescribeTags over every taggable resource
//! keycard has (crates/services/src/tags.rs). Each resource is checked
//! on its own ARN with its current tags as `aws:ResourceTag/…` and the
//! request's as `aws:RequestTag/…` and `aws:TagKeys`; one refusal or one
//! unknown id changes nothing.

use keycard_proto::query::Params;
use keycard_services::ServiceError;
use keycard_services::auth::Check;
use keycard_services::ec2::{self, Filter};
use keycard_services::tags::{TagEdit, Tagged};
use keycard_services::vpc;

use crate::Req;
use crate::ec2::{dry_run_ok, filters, ids, tags};
use crate::ec2_network::respond;

type Out = Result<String, ServiceError>;

const NAMES: &[&str] = &["CreateTags", "DeleteTags", "DescribeTags"];

pub(crate) fn handles(name: &str) -> bool {
    NAMES.contains(&name)
}

pub(crate) async fn handle(req: &mut Req, p: &Params, dry: bool) -> Out {
    match req.op.name {
        "CreateTags" | "DeleteTags" => edit(req, p, dry).await,
        "DescribeTags" => describe(req, p, dry),
        other => Err(ServiceError::Internal(format!(
            "operation {other} has a row but no handler"
        ))),
    }
}

/// What the request does to the tags.
fn tag_edit(req: &mut Req, p: &Params) -> Result<TagEdit, ServiceError> {
    let list = p.structs("Tag");
    if req.op.name == "CreateTags" {
        let t = tags(list)?;
        if t.is_empty() {
            return Err(ServiceError::MissingParameter(
                "The request must contain the parameter tagSet".into(),
            ));
        }
        ec2::validate_tags(&t)?;
        req.request_tags(t.iter().map(|x| (x.key.as_str(), x.value.as_str())));
        return Ok(TagEdit::Set(t));
    }
    let keys: Vec<(String, Option<String>)> = list
        .iter()
        .filter_map(|x| {
            x.get("Key")
                .map(|k| (k.to_string(), x.get("Value").map(str::to_string)))
        })
        .collect();
    if !keys.is_empty() {
        req.request_key_multi("aws:TagKeys", keys.iter().map(|(k, _)| k.clone()).collect());
    }
    Ok(TagEdit::Remove(keys))
}

/// The CloudFormation-style type CloudTrail records a resource as.
fn audit_type(t: &Tagged) -> &'static str {
    match t.resource_type {
        "instance" => "AWS::EC2::Instance",
        "volume" => "AWS::EC2::Volume",
        "vpc" => "AWS::EC2::VPC",
        "subnet" => "AWS::EC2::Subnet",
        "security-group" => "AWS::EC2::SecurityGroup",
        "network-interface" => "AWS::EC2::NetworkInterface",
        _ => "AWS::EC2::Resource",
    }
}

async fn edit(req: &mut Req, p: &Params, dry: bool) -> Out {
    let resources = ids(p, "ResourceId");
    if resources.is_empty() {
        return Err(ServiceError::MissingParameter(
            "The request must contain the parameter resourceIdSet".into(),
        ));
    }
    let e = tag_edit(req, p)?;
    let (account, region) = (req.caller.account.clone(), req.region.clone());
    let found = req.kc.taggables(&account, &region, &resources)?;
    let action = format!("ec2:{}", req.op.name);
    for t in &found {
        req.audit
            .resources
            .push((t.arn.clone(), audit_type(t).into()));
        req.check(
            Check::new(&action, t.arn.clone())
                .account(account.clone())
                .tags(Some("ec2"), &t.tags)
                .key("ec2:Region", region.clone()),
        )?;
    }
    if dry {
        return Err(dry_run_ok());
    }
    req.kc.edit_tags(&account, &region, &resources, &e).await?;
    Ok(respond(req, |w| {
        w.elem("return", "true");
    }))
}

/// DescribeTags' rows: one per resource and tag.
struct Row {
    id: String,
    resource_type: &'static str,
    key: String,
    value: String,
}

const TAG_FILTERS: &[&str] = &["key", "value", "resource-id", "resource-type"];

fn row_matches(r: &Row, f: &Filter) -> bool {
    let any = |v: &str| f.values.iter().any(|p| ec2::wildcard(p, v));
    match f.name.as_str() {
        "key" => any(&r.key),
        "value" => any(&r.value),
        "resource-id" => any(&r.id),
        "resource-type" => any(r.resource_type),
        n => n
            .strip_prefix("tag:")
            .is_some_and(|k| k == r.key && any(&r.value)),
    }
}

fn describe(req: &mut Req, p: &Params, dry: bool) -> Out {
    req.authorize_describe(dry)?;
    let fs = filters(p);
    ec2::check_filters(&fs, TAG_FILTERS)?;
    let limit = ec2::max_results(p.get("MaxResults"), 5, 1000)?;
    let after = p.get("NextToken").map(ec2::parse_next_token).transpose()?;
    let rows: Vec<Row> = req
        .kc
        .tagged_resources(&req.caller.account, &req.region)
        .into_iter()
        .flat_map(|t| {
            t.tags.into_iter().map(move |x| Row {
                id: t.id.clone(),
                resource_type: t.resource_type,
                key: x.key,
                value: x.value,
            })
        })
        .filter(|r| fs.iter().all(|f| row_matches(r, f)))
        .collect();
    // Pages go by resource id and key: a resource's tags may span pages.
    let (rows, next) = vpc::page(rows_keyed(rows), after.as_deref(), limit, |(k, _)| k);
    Ok(respond(req, |w| {
        w.start("tagSet");
        for (_, r) in &rows {
            w.start("item")
                .elem("resourceId", &r.id)
                .elem("resourceType", r.resource_type)
                .elem("key", &r.key)
                .elem("value", &r.value)
                .end("item");
        }
        w.end("tagSet");
        if let Some(n) = &next {
            w.elem("nextToken", n);
        }
    }))
}

/// Each row with its sort key, `<resource id> <tag key>`.
fn rows_keyed(rows: Vec<Row>) -> Vec<(String, Row)> {
    rows.into_iter()
        .map(|r| (format!("{} {}", r.id, r.key), r))
        .collect()
}
