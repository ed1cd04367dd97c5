//! Creating and deleting VPCs, subnets and security groups
//! (crates/services/src/network.rs). Each is authorized as AWS does: the
//! create action on `<kind>/*` (plus the VPC it goes in), with
//! `aws:RequestTag/…` and `ec2:CreateTags` (`ec2:CreateAction`) when
//! TagSpecifications tag it; a delete on the resource's own ARN with its
//! tags as `aws:ResourceTag/…`.

use keycard_proto::query::Params;
use keycard_services::ServiceError;
use keycard_services::auth::Check;
use keycard_services::model::Tag;
use keycard_services::network::{GroupInput, GroupSel, SubnetInput, Vpc};

use crate::Req;
use crate::ec2::{dry_run_ok, required, tags};
use crate::ec2_network::{respond, subnet_xml, vpc_xml};

type Out = Result<String, ServiceError>;

/// The operations this module answers.
const NAMES: &[&str] = &[
    "CreateVpc",
    "DeleteVpc",
    "CreateSubnet",
    "DeleteSubnet",
    "CreateSecurityGroup",
    "DeleteSecurityGroup",
];

pub(crate) fn handles(name: &str) -> bool {
    NAMES.contains(&name)
}

pub(crate) async fn handle(req: &mut Req, p: &Params, dry: bool) -> Out {
    match req.op.name {
        "CreateVpc" => create_vpc(req, p, dry).await,
        "DeleteVpc" => delete_vpc(req, p, dry).await,
        "CreateSubnet" => create_subnet(req, p, dry).await,
        "DeleteSubnet" => delete_subnet(req, p, dry).await,
        "CreateSecurityGroup" => create_group(req, p, dry).await,
        "DeleteSecurityGroup" => delete_group(req, p, dry).await,
        other => Err(ServiceError::Internal(format!(
            "operation {other} has a row but no handler"
        ))),
    }
}

/// The tags TagSpecifications give a resource of type `kind`.
pub(crate) fn tag_specs(p: &Params, kind: &str) -> Result<Vec<Tag>, ServiceError> {
    let mut out = Vec::new();
    for spec in p.structs("TagSpecification") {
        let rt = spec.get("ResourceType").unwrap_or("");
        if rt != kind {
            return Err(ServiceError::InvalidParameterValue(format!(
                "'{rt}' is not a valid taggable resource type for this operation."
            )));
        }
        out.extend(tags(spec.structs("Tag"))?);
    }
    Ok(out)
}

impl Req {
    /// The create action on `<kind>/*`, then on `parent` (the VPC, with
    /// its tags), then ec2:CreateTags when tags come with the request.
    pub(crate) fn authorize_create(
        &mut self,
        kind: &str,
        new_tags: &[Tag],
        parent: Option<&Vpc>,
    ) -> Result<(), ServiceError> {
        let action = format!("ec2:{}", self.op.name);
        let account = self.caller.account.clone();
        let any = self.ec2_resource(kind, "*");
        self.request_tag_list(new_tags);
        let region = self.region.clone();
        self.check(
            Check::new(&action, any.clone())
                .account(account.clone())
                .key("ec2:Region", region.clone()),
        )?;
        if let Some(v) = parent {
            self.check(
                Check::new(&action, v.arn())
                    .account(v.account.clone())
                    .tags(Some("ec2"), &v.tags)
                    .key("ec2:Vpc", v.arn())
                    .key("ec2:Region", region),
            )?;
        }
        if !new_tags.is_empty() {
            let create = self.op.name;
            self.check(
                Check::new("ec2:CreateTags", any)
                    .account(account)
                    .key("ec2:CreateAction", create),
            )?;
        }
        Ok(())
    }

    /// The delete action on one resource, its tags as resource keys.
    fn authorize_delete(
        &mut self,
        arn: String,
        tags: &[Tag],
        kind: &str,
    ) -> Result<(), ServiceError> {
        let action = format!("ec2:{}", self.op.name);
        self.audit.resources.push((arn.clone(), kind.into()));
        let c = Check::new(&action, arn)
            .account(self.caller.account.clone())
            .tags(Some("ec2"), tags)
            .key("ec2:Region", self.region.clone());
        self.check(c)
    }
}

async fn create_vpc(req: &mut Req, p: &Params, dry: bool) -> Out {
    let cidr = required(p, "CidrBlock")?.to_string();
    let t = tag_specs(p, "vpc")?;
    keycard_services::network::check_vpc_block(&cidr)?;
    keycard_services::ec2::validate_tags(&t)?;
    req.authorize_create("vpc", &t, None)?;
    if dry {
        return Err(dry_run_ok());
    }
    let (account, region) = (req.caller.account.clone(), req.region.clone());
    let v = req.kc.create_vpc(&account, &region, &cidr, t).await?;
    req.audit.resources.push((v.arn(), "AWS::EC2::VPC".into()));
    req.audit.response = serde_json::json!({"vpc": {"vpcId": v.id, "cidrBlock": v.cidr}});
    Ok(respond(req, |w| vpc_xml(w, "vpc", &v, "pending")))
}

async fn delete_vpc(req: &mut Req, p: &Params, dry: bool) -> Out {
    let id = required(p, "VpcId")?;
    let (account, region) = (req.caller.account.clone(), req.region.clone());
    let v = req.kc.find_vpc(&account, &region, id)?;
    req.authorize_delete(v.arn(), &v.tags, "AWS::EC2::VPC")?;
    if dry {
        return Err(dry_run_ok());
    }
    req.kc.delete_vpc(&account, &region, id).await?;
    Ok(respond(req, |w| {
        w.elem("return", "true");
    }))
}

async fn create_subnet(req: &mut Req, p: &Params, dry: bool) -> Out {
    let input = SubnetInput {
        vpc_id: required(p, "VpcId")?.to_string(),
        cidr: required(p, "CidrBlock")?.to_string(),
        zone: p.get("AvailabilityZone").map(str::to_string),
        zone_id: p.get("AvailabilityZoneId").map(str::to_string),
        tags: tag_specs(p, "subnet")?,
    };
    let (account, region) = (req.caller.account.clone(), req.region.clone());
    let v = req.kc.find_vpc(&account, &region, &input.vpc_id)?;
    keycard_services::ec2::validate_tags(&input.tags)?;
    req.authorize_create("subnet", &input.tags, Some(&v))?;
    if dry {
        return Err(dry_run_ok());
    }
    let s = req.kc.create_subnet(&account, &region, input).await?;
    req.audit
        .resources
        .push((s.arn(), "AWS::EC2::Subnet".into()));
    req.audit.response = serde_json::json!({"subnet": {"subnetId": s.id, "vpcId": s.vpc_id}});
    let free = req.kc.free_addresses_in(&s);
    Ok(respond(req, |w| subnet_xml(w, "subnet", &s, free)))
}

async fn delete_subnet(req: &mut Req, p: &Params, dry: bool) -> Out {
    let id = required(p, "SubnetId")?;
    let (account, region) = (req.caller.account.clone(), req.region.clone());
    let s = req.kc.find_subnet(&account, &region, id)?;
    req.authorize_delete(s.arn(), &s.tags, "AWS::EC2::Subnet")?;
    if dry {
        return Err(dry_run_ok());
    }
    req.kc.delete_subnet(&account, &region, id).await?;
    Ok(respond(req, |w| {
        w.elem("return", "true");
    }))
}

async fn create_group(req: &mut Req, p: &Params, dry: bool) -> Out {
    let input = GroupInput {
        name: p.get("GroupName").unwrap_or("").to_string(),
        description: p.get("GroupDescription").unwrap_or("").to_string(),
        vpc_id: p.get("VpcId").map(str::to_string),
        tags: tag_specs(p, "security-group")?,
    };
    let (account, region) = (req.caller.account.clone(), req.region.clone());
    let v = match &input.vpc_id {
        Some(id) => req.kc.find_vpc(&account, &region, id)?,
        None => keycard_services::vpc::DefaultNetwork::new(&account, &region).vpc(),
    };
    keycard_services::ec2::validate_tags(&input.tags)?;
    req.authorize_create("security-group", &input.tags, Some(&v))?;
    if dry {
        return Err(dry_run_ok());
    }
    let g = req
        .kc
        .create_security_group(&account, &region, input)
        .await?;
    req.audit
        .resources
        .push((g.arn(), "AWS::EC2::SecurityGroup".into()));
    req.audit.response = serde_json::json!({"groupId": g.id});
    Ok(respond(req, |w| {
        w.elem("return", "true").elem("groupId", &g.id);
        crate::ec2::tag_set(w, &g.tags);
        w.elem("securityGroupArn", &g.arn());
    }))
}

async fn delete_group(req: &mut Req, p: &Params, dry: bool) -> Out {
    let sel = match (p.get("GroupId"), p.get("GroupName")) {
        (Some(id), _) => GroupSel::Id(id.to_string()),
        (None, Some(n)) => GroupSel::Name(n.to_string()),
        (None, None) => {
            return Err(ServiceError::MissingParameter(
                "The request must contain the parameter groupName or groupId".into(),
            ));
        }
    };
    let (account, region) = (req.caller.account.clone(), req.region.clone());
    let g = req.kc.find_group(&account, &region, &sel)?;
    req.authorize_delete(g.arn(), &g.tags, "AWS::EC2::SecurityGroup")?;
    if dry {
        return Err(dry_run_ok());
    }
    let id = req
        .kc
        .delete_security_group(&account, &region, &sel)
        .await?;
    Ok(respond(req, |w| {
        w.elem("return", "true").elem("groupId", &id);
    }))
}
