//! Network interfaces (crates/services/src/eni.rs): CreateNetworkInterface,
//! DeleteNetworkInterface, AttachNetworkInterface, DetachNetworkInterface,
//! ModifyNetworkInterfaceAttribute and DescribeNetworkInterfaceAttribute
//! (DescribeNetworkInterfaces is ec2_network.rs). Authorized as the IAM
//! service authorization reference lists them: create on
//! `network-interface/*`, its subnet and its groups; the others on the
//! interface's ARN with its tags, subnet, VPC and zone as keys; attach
//! and detach also on the instance's ARN.

use keycard_proto::query::Params;
use keycard_proto::xml::XmlWriter;
use keycard_services::ServiceError;
use keycard_services::auth::Check;
use keycard_services::eni::{CreateEniInput, EniChange, EniPlacement};
use keycard_services::vpc::NetworkInterface;

use crate::Req;
use crate::ec2::{bool_param, dry_run_ok, ids, required};
use crate::ec2_network::{attachment_xml, eni_xml, flag, group_set, respond};
use crate::ec2_vpc::tag_specs;

type Out = Result<String, ServiceError>;

const NAMES: &[&str] = &[
    "CreateNetworkInterface",
    "DeleteNetworkInterface",
    "AttachNetworkInterface",
    "DetachNetworkInterface",
    "ModifyNetworkInterfaceAttribute",
    "DescribeNetworkInterfaceAttribute",
];

pub(crate) fn handles(name: &str) -> bool {
    NAMES.contains(&name)
}

pub(crate) async fn handle(req: &mut Req, p: &Params, dry: bool) -> Out {
    match req.op.name {
        "CreateNetworkInterface" => create(req, p, dry).await,
        "DeleteNetworkInterface" => delete(req, p, dry).await,
        "AttachNetworkInterface" => attach(req, p, dry).await,
        "DetachNetworkInterface" => detach(req, p, dry).await,
        "ModifyNetworkInterfaceAttribute" => modify(req, p, dry).await,
        "DescribeNetworkInterfaceAttribute" => describe_attribute(req, p, dry),
        other => Err(ServiceError::Internal(format!(
            "operation {other} has a row but no handler"
        ))),
    }
}

/// Request fields for what keycard interfaces do not have (more than one
/// private IPv4 address, IPv6, prefixes, EFA/trunk types).
const UNSUPPORTED: &[&str] = &[
    "PrivateIpAddresses",
    "SecondaryPrivateIpAddressCount",
    "Ipv6Addresses",
    "Ipv6AddressCount",
    "Ipv4Prefix",
    "Ipv4PrefixCount",
    "Ipv6Prefix",
    "Ipv6PrefixCount",
    "EnablePrimaryIpv6",
];

fn create_input(p: &Params) -> Result<CreateEniInput, ServiceError> {
    let subnet_id = required(p, "SubnetId")?.to_string();
    if let Some((k, _)) = p
        .iter()
        .find(|(k, _)| UNSUPPORTED.iter().any(|u| k.starts_with(u)))
    {
        return Err(ServiceError::UnsupportedOperation(format!(
            "keycard network interfaces have one private IPv4 address; {k} is not supported"
        )));
    }
    if let Some(t) = p.get("InterfaceType").filter(|t| *t != "interface") {
        return Err(ServiceError::UnsupportedOperation(format!(
            "keycard does not create '{t}' network interfaces"
        )));
    }
    Ok(CreateEniInput {
        subnet_id,
        description: p.get("Description").map(str::to_string),
        group_ids: ids(p, "SecurityGroupId"),
        private_ip: p.get("PrivateIpAddress").map(str::to_string),
        tags: tag_specs(p, "network-interface")?,
    })
}

impl Req {
    /// An action on an interface: its tags, subnet, VPC and zone as keys
    /// of this check alone.
    fn authorize_eni(&mut self, action: &str, e: &NetworkInterface) -> Result<(), ServiceError> {
        self.audit
            .resources
            .push((e.arn(), "AWS::EC2::NetworkInterface".into()));
        let c = Check::new(action, e.arn())
            .account(e.account.clone())
            .tags(Some("ec2"), &e.tags)
            .key("ec2:NetworkInterfaceID", e.id.clone())
            .key("ec2:Subnet", self.ec2_resource("subnet", &e.subnet_id))
            .key("ec2:Vpc", self.ec2_resource("vpc", &e.vpc_id))
            .key("ec2:AvailabilityZone", e.zone.clone())
            .key("ec2:Region", self.region.clone());
        self.check(c)
    }

    /// CreateNetworkInterface on `network-interface/*`, its subnet and each
    /// group, then ec2:CreateTags when tags come with it.
    fn authorize_create_eni(
        &mut self,
        pl: &EniPlacement,
        input: &CreateEniInput,
    ) -> Result<(), ServiceError> {
        let action = "ec2:CreateNetworkInterface";
        let account = self.caller.account.clone();
        let region = self.region.clone();
        let vpc = pl.vpc.arn();
        self.request_tag_list(&input.tags);
        let any = self.ec2_resource("network-interface", "*");
        self.check(
            Check::new(action, any.clone())
                .account(account.clone())
                .key("ec2:Subnet", pl.subnet.arn())
                .key("ec2:Vpc", vpc.clone())
                .key("ec2:AvailabilityZone", pl.subnet.zone.clone())
                .key("ec2:Region", region.clone()),
        )?;
        self.check(
            Check::new(action, pl.subnet.arn())
                .account(pl.subnet.account.clone())
                .tags(Some("ec2"), &pl.subnet.tags)
                .key("ec2:SubnetID", pl.subnet.id.clone())
                .key("ec2:Vpc", vpc.clone())
                .key("ec2:AvailabilityZone", pl.subnet.zone.clone())
                .key("ec2:Region", region.clone()),
        )?;
        for g in &pl.groups {
            self.check(
                Check::new(action, g.arn())
                    .account(g.account.clone())
                    .tags(Some("ec2"), &g.tags)
                    .key("ec2:SecurityGroupID", g.id.clone())
                    .key("ec2:Vpc", vpc.clone())
                    .key("ec2:Region", region.clone()),
            )?;
        }
        if !input.tags.is_empty() {
            self.check(
                Check::new("ec2:CreateTags", any)
                    .account(account)
                    .key("ec2:CreateAction", "CreateNetworkInterface"),
            )?;
        }
        Ok(())
    }
}

async fn create(req: &mut Req, p: &Params, dry: bool) -> Out {
    let input = create_input(p)?;
    let (account, region) = (req.caller.account.clone(), req.region.clone());
    let pl = req.kc.place_interface(&account, &region, &input)?;
    req.authorize_create_eni(&pl, &input)?;
    if dry {
        return Err(dry_run_ok());
    }
    let e = req
        .kc
        .create_network_interface(&account, &region, &input)
        .await?;
    req.audit
        .resources
        .push((e.arn(), "AWS::EC2::NetworkInterface".into()));
    req.audit.response = serde_json::json!({"networkInterface": {
        "networkInterfaceId": e.id, "subnetId": e.subnet_id, "privateIpAddress": e.private_ip}});
    Ok(respond(req, |w| eni_xml(w, "networkInterface", &e, true)))
}

async fn delete(req: &mut Req, p: &Params, dry: bool) -> Out {
    let id = required(p, "NetworkInterfaceId")?.to_string();
    let (account, region) = (req.caller.account.clone(), req.region.clone());
    let e = req.kc.network_interface(&account, &region, &id)?;
    req.authorize_eni("ec2:DeleteNetworkInterface", &e)?;
    if dry {
        return Err(dry_run_ok());
    }
    req.kc
        .delete_network_interface(&account, &region, &id)
        .await?;
    Ok(respond(req, |w| {
        w.elem("return", "true");
    }))
}

/// DeviceIndex: a whole number, as the model's Integer.
fn device_index(p: &Params) -> Result<u32, ServiceError> {
    let v = required(p, "DeviceIndex")?;
    v.parse::<u32>().map_err(|_| {
        ServiceError::InvalidParameterValue(format!(
            "Value ({v}) for parameter deviceIndex is invalid."
        ))
    })
}

async fn attach(req: &mut Req, p: &Params, dry: bool) -> Out {
    let eni_id = required(p, "NetworkInterfaceId")?.to_string();
    let iid = required(p, "InstanceId")?.to_string();
    let index = device_index(p)?;
    if p.get("NetworkCardIndex").is_some_and(|n| n != "0") {
        return Err(ServiceError::UnsupportedOperation(
            "keycard instances have one network card (NetworkCardIndex 0)".into(),
        ));
    }
    let (account, region) = (req.caller.account.clone(), req.region.clone());
    let e = req.kc.network_interface(&account, &region, &eni_id)?;
    req.authorize_instance_id("ec2:AttachNetworkInterface", &iid)?;
    req.authorize_eni("ec2:AttachNetworkInterface", &e)?;
    if dry {
        return Err(dry_run_ok());
    }
    let e = req
        .kc
        .attach_network_interface(&account, &region, &eni_id, &iid, index)
        .await?;
    let attachment = e.attachment.map(|a| a.id).unwrap_or_default();
    req.audit.response = serde_json::json!({"attachmentId": attachment});
    Ok(respond(req, |w| {
        w.elem("attachmentId", &attachment)
            .elem("networkCardIndex", "0");
    }))
}

async fn detach(req: &mut Req, p: &Params, dry: bool) -> Out {
    let attachment = required(p, "AttachmentId")?.to_string();
    // Force changes nothing here: keycard detaches at once.
    bool_param(p, "Force")?;
    let (account, region) = (req.caller.account.clone(), req.region.clone());
    let e = req
        .kc
        .interface_attachment(&account, &region, &attachment)?;
    if let Some(a) = &e.attachment {
        let iid = a.instance_id.clone();
        req.authorize_instance_id("ec2:DetachNetworkInterface", &iid)?;
    }
    req.authorize_eni("ec2:DetachNetworkInterface", &e)?;
    if dry {
        return Err(dry_run_ok());
    }
    req.kc
        .detach_network_interface(&account, &region, &attachment)
        .await?;
    Ok(respond(req, |w| {
        w.elem("return", "true");
    }))
}

/// The attribute name a change sets, as `ec2:Attribute` and AWS's
/// messages say it.
fn change_name(c: &EniChange) -> &'static str {
    match c {
        EniChange::Description(_) => "description",
        EniChange::SourceDestCheck(_) => "sourceDestCheck",
        EniChange::Groups(_) => "groupSet",
        EniChange::DeleteOnTermination(..) => "attachment",
    }
}

/// ModifyNetworkInterfaceAttribute's one change (AWS takes one attribute
/// per call).
fn eni_change(p: &Params) -> Result<EniChange, ServiceError> {
    let mut out = Vec::new();
    if let Some(d) = p.sub("Description").get("Value") {
        out.push(EniChange::Description(d.to_string()));
    }
    if p.sub("SourceDestCheck").get("Value").is_some() {
        let b = bool_param(&p.sub("SourceDestCheck"), "Value")?;
        out.push(EniChange::SourceDestCheck(b));
    }
    let groups = ids(p, "SecurityGroupId");
    if !groups.is_empty() {
        out.push(EniChange::Groups(groups));
    }
    let a = p.sub("Attachment");
    if a.get("AttachmentId").is_some() || a.get("DeleteOnTermination").is_some() {
        let id = required(&a, "AttachmentId")?.to_string();
        let dot = required(&a, "DeleteOnTermination")?;
        let flag = bool_param(&a, "DeleteOnTermination").map_err(|_| {
            ServiceError::InvalidParameterValue(format!(
                "Value ({dot}) for parameter deleteOnTermination is invalid."
            ))
        })?;
        out.push(EniChange::DeleteOnTermination(id, flag));
    }
    crate::ec2::one_attribute(&out, change_name)
}

async fn modify(req: &mut Req, p: &Params, dry: bool) -> Out {
    let id = required(p, "NetworkInterfaceId")?.to_string();
    let change = eni_change(p)?;
    let (account, region) = (req.caller.account.clone(), req.region.clone());
    let e = req.kc.network_interface(&account, &region, &id)?;
    req.request_key("ec2:Attribute", change_name(&change));
    req.authorize_eni("ec2:ModifyNetworkInterfaceAttribute", &e)?;
    if let EniChange::Groups(g) = &change {
        req.authorize_groups("ec2:ModifyNetworkInterfaceAttribute", g)?;
    }
    if dry {
        return Err(dry_run_ok());
    }
    req.kc
        .modify_network_interface(&account, &region, &id, &change)
        .await?;
    Ok(respond(req, |w| {
        w.elem("return", "true");
    }))
}

/// The attributes DescribeNetworkInterfaceAttribute answers.
const ATTRIBUTES: &[&str] = &[
    "description",
    "groupSet",
    "sourceDestCheck",
    "attachment",
    "associatePublicIpAddress",
];

fn describe_attribute(req: &mut Req, p: &Params, dry: bool) -> Out {
    req.authorize_describe(dry)?;
    let id = required(p, "NetworkInterfaceId")?.to_string();
    let attr = required(p, "Attribute")?.to_string();
    if !ATTRIBUTES.contains(&attr.as_str()) {
        return Err(ServiceError::InvalidParameterValue(format!(
            "Value ({attr}) for parameter attribute is invalid. Unknown attribute."
        )));
    }
    let e = req
        .kc
        .network_interface(&req.caller.account, &req.region, &id)?;
    Ok(respond(req, |w| {
        w.elem("networkInterfaceId", &e.id);
        attribute_xml(w, &e, &attr);
    }))
}

/// One attribute's element (an absent attachment shows nothing).
fn attribute_xml(w: &mut XmlWriter, e: &NetworkInterface, attr: &str) {
    match attr {
        "description" => {
            w.start("description")
                .elem("value", &e.description)
                .end("description");
        }
        "groupSet" => group_set(w, &e.groups),
        "sourceDestCheck" => {
            w.start("sourceDestCheck")
                .elem("value", flag(e.source_dest_check))
                .end("sourceDestCheck");
        }
        "attachment" => {
            if let Some(a) = &e.attachment {
                attachment_xml(w, e, a, true, "attached");
            }
        }
        // No public addresses in keycard.
        _ => {
            w.elem("associatePublicIpAddress", "false");
        }
    }
}
