//! The EC2 network surface governance tools read: regions and zones, the
//! default VPC and what hangs off it (crates/services/src/vpc.rs), the
//! instances' network interfaces, and true empty answers for resources
//! keycard has none of (volumes, snapshots, addresses, endpoints,
//! peering, VPN, transit gateways, flow logs).
//! All read-only; each is authorized as `ec2:<Operation>` on `*`, as AWS
//! does for Describe calls.

use keycard_proto::query::Params;
use keycard_proto::xml::{XmlWriter, ec2_response};
use keycard_services::ServiceError;
use keycard_services::auth::ResourcePolicy;
use keycard_services::ec2::{self, Instance};
use keycard_services::network::{GroupRef, SecurityGroup, Subnet, Vpc};
use keycard_services::vpc::{
    self, DefaultNetwork, EniAttachment, NetworkInterface, Subnet as DefaultSubnet,
};

use crate::Req;
use crate::ec2::{dry_run_ok, filters, ids, iso8601_ms, tag_set};

type Out = Result<String, ServiceError>;

/// The operations this module answers.
const NAMES: &[&str] = &[
    "DescribeRegions",
    "DescribeAvailabilityZones",
    "DescribeVpcs",
    "DescribeSubnets",
    "DescribeSecurityGroups",
    "DescribeNetworkAcls",
    "DescribeNetworkInterfaces",
    "DescribeRouteTables",
    "DescribeInternetGateways",
    "DescribeSnapshots",
    "DescribeAddresses",
    "DescribeVpcEndpoints",
    "DescribeVpcPeeringConnections",
    "DescribeVpnConnections",
    "DescribeClientVpnEndpoints",
    "DescribeTransitGateways",
    "DescribeFlowLogs",
    "DescribeVpcEndpointServices",
    "GetEbsEncryptionByDefault",
    "GetInstanceMetadataDefaults",
    "GetSnapshotBlockPublicAccessState",
    "GetImageBlockPublicAccessState",
];

pub(crate) fn handles(name: &str) -> bool {
    NAMES.contains(&name)
}

pub(crate) fn handle(req: &mut Req, p: &Params, dry: bool) -> Out {
    let op = req.op.name;
    req.authorize(&format!("ec2:{op}"), "*", None, ResourcePolicy::None)?;
    if dry {
        return Err(dry_run_ok());
    }
    let net = DefaultNetwork::new(&req.caller.account, &req.region);
    match op {
        "DescribeRegions" => regions(req, p),
        "DescribeAvailabilityZones" => zones(req, p, &net),
        "DescribeVpcs" => vpcs(req, p),
        "DescribeSubnets" => subnets(req, p),
        "DescribeSecurityGroups" => groups(req, p, &net),
        "DescribeNetworkAcls" => acls(req, p),
        "DescribeNetworkInterfaces" => interfaces(req, p),
        "DescribeRouteTables" => route_tables(req, p),
        "DescribeInternetGateways" => gateways(req, p, &net),
        "GetEbsEncryptionByDefault" => Ok(respond(req, |w| {
            w.elem("ebsEncryptionByDefault", "false")
                .elem("sseType", "sse-ebs");
        })),
        // No account-level defaults set: an empty AccountLevel.
        "GetInstanceMetadataDefaults" => Ok(respond(req, |w| {
            w.empty("accountLevel");
        })),
        // A new account's snapshots may be shared publicly until the
        // owner blocks it: `unblocked` (EC2 API reference,
        // GetSnapshotBlockPublicAccessState).
        "GetSnapshotBlockPublicAccessState" => Ok(respond(req, |w| {
            w.elem("state", "unblocked").elem("managedBy", "account");
        })),
        // Block public access for AMIs is on by default for accounts
        // created since late 2023 (EC2 user guide, "Block public access
        // to your AMIs"): `block-new-sharing`.
        "GetImageBlockPublicAccessState" => Ok(respond(req, |w| {
            w.elem("imageBlockPublicAccessState", "block-new-sharing")
                .elem("managedBy", "account");
        })),
        other => empty(req, p, other),
    }
}

pub(crate) fn respond(req: &Req, body: impl FnOnce(&mut XmlWriter)) -> String {
    ec2_response(req.op.name, &req.request_id.clone(), body)
}

fn next_xml(w: &mut XmlWriter, next: &Option<String>) {
    if let Some(n) = next {
        w.elem("nextToken", n);
    }
}

/// MaxResults (5..`max`, as botocore models each operation) and
/// NextToken.
fn paging(p: &Params, max: usize) -> Result<(Option<String>, Option<usize>), ServiceError> {
    let limit = ec2::max_results(p.get("MaxResults"), 5, max)?;
    let after = p.get("NextToken").map(ec2::parse_next_token).transpose()?;
    Ok((after, limit))
}

fn bool_true(p: &Params, name: &str) -> bool {
    p.get(name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn regions(req: &Req, p: &Params) -> Out {
    let all = vpc::regions(&req.region, bool_true(p, "AllRegions"));
    let names = ids(p, "RegionName");
    let known = vpc::regions(&req.region, true);
    if let Some(bad) = names.iter().find(|n| !known.iter().any(|r| &r.name == *n)) {
        return Err(ServiceError::InvalidParameterValue(format!(
            "Invalid region: {bad}"
        )));
    }
    let list: Vec<vpc::Region> = if names.is_empty() {
        all
    } else {
        known
            .into_iter()
            .filter(|r| names.contains(&r.name))
            .collect()
    };
    let list = vpc::select(list, &filters(p), vpc::REGION_FILTERS, vpc::region_facts)?;
    Ok(respond(req, |w| {
        w.start("regionInfo");
        for r in &list {
            w.start("item")
                .elem("regionName", &r.name)
                .elem("regionEndpoint", &vpc::region_endpoint(&r.name))
                .elem("optInStatus", r.opt_in)
                .end("item");
        }
        w.end("regionInfo");
    }))
}

fn zones(req: &Req, p: &Params, net: &DefaultNetwork) -> Out {
    let region = net.region.clone();
    let names = ids(p, "ZoneName");
    let zone_ids = ids(p, "ZoneId");
    for n in &names {
        if !net.subnets.iter().any(|s| &s.zone == n) {
            return Err(ServiceError::InvalidParameterValue(format!(
                "The zone '{n}' does not exist."
            )));
        }
    }
    for z in &zone_ids {
        if !net.subnets.iter().any(|s| &s.zone_id == z) {
            return Err(ServiceError::InvalidParameterValue(format!(
                "The zone ID '{z}' does not exist."
            )));
        }
    }
    let list: Vec<&DefaultSubnet> = net
        .subnets
        .iter()
        .filter(|s| names.is_empty() || names.contains(&s.zone))
        .filter(|s| zone_ids.is_empty() || zone_ids.contains(&s.zone_id))
        .collect();
    let list = vpc::select(list, &filters(p), vpc::ZONE_FILTERS, |s| {
        vpc::zone_facts(&region, s)
    })?;
    Ok(respond(req, |w| {
        w.start("availabilityZoneInfo");
        for s in &list {
            w.start("item")
                .elem("zoneName", &s.zone)
                .elem("zoneId", &s.zone_id)
                .elem("zoneState", "available")
                .elem("optInStatus", "opt-in-not-required")
                .empty("messageSet")
                .elem("regionName", &region)
                .elem("groupName", &region)
                .elem("networkBorderGroup", &region)
                .elem("zoneType", "availability-zone")
                .end("item");
        }
        w.end("availabilityZoneInfo");
    }))
}

/// How one kind of default resource is asked for: its ids parameter,
/// its filter names, and its largest MaxResults.
struct Kind {
    id_param: &'static str,
    filters: &'static [&'static str],
    max: usize,
}

/// The one default resource of a kind, filtered by ids and filters:
/// whether it is shown, and the next token.
fn only_default(
    p: &Params,
    net: &DefaultNetwork,
    kind: Kind,
    id: &str,
    missing: impl Fn(&[&str]) -> ServiceError,
    facts: impl Fn(&DefaultNetwork) -> vpc::Facts,
) -> Result<(bool, Option<String>), ServiceError> {
    let wanted = ids(p, kind.id_param);
    let (after, limit) = paging(p, kind.max)?;
    let items = vpc::pick(vec![net], &wanted, |_| id, missing)?;
    let items = vpc::select(items, &filters(p), kind.filters, |n| facts(n))?;
    let (items, next) = vpc::page(items, after.as_deref(), limit, |_| id);
    Ok((!items.is_empty(), next))
}

fn vpcs(req: &Req, p: &Params) -> Out {
    let wanted = ids(p, "VpcId");
    let (after, limit) = paging(p, 1000)?;
    let items = req.kc.vpcs(&req.caller.account, &req.region);
    let items = vpc::pick(
        items,
        &wanted,
        |v| &v.id,
        |x| ServiceError::InvalidVpcIdNotFound(vpc::not_found_message("vpc", x)),
    )?;
    let items = vpc::select_tagged(items, &filters(p), vpc::VPC_FILTERS, vpc::vpc_facts, |v| {
        &v.tags
    })?;
    let (items, next) = vpc::page(items, after.as_deref(), limit, |v| &v.id);
    Ok(respond(req, |w| {
        w.start("vpcSet");
        for v in &items {
            vpc_xml(w, "item", v, "available");
        }
        w.end("vpcSet");
        next_xml(w, &next);
    }))
}

/// A VPC as DescribeVpcs (`item`) or CreateVpc (`vpc`) shows it.
pub(crate) fn vpc_xml(w: &mut XmlWriter, tag: &str, v: &Vpc, state: &str) {
    w.start(tag)
        .elem("vpcId", &v.id)
        .elem("ownerId", &v.account)
        .elem("state", state)
        .elem("cidrBlock", &v.cidr)
        .start("cidrBlockAssociationSet")
        .start("item")
        .elem("cidrBlock", &v.cidr)
        .elem("associationId", &v.cidr_association)
        .start("cidrBlockState")
        .elem("state", "associated")
        .end("cidrBlockState")
        .end("item")
        .end("cidrBlockAssociationSet")
        .empty("ipv6CidrBlockAssociationSet")
        .elem("dhcpOptionsId", &v.dhcp_options_id)
        .elem("instanceTenancy", "default")
        .elem("isDefault", if v.is_default { "true" } else { "false" });
    tag_set(w, &v.tags);
    w.start("blockPublicAccessStates")
        .elem("internetGatewayBlockMode", "off")
        .end("blockPublicAccessStates")
        .end(tag);
}

fn subnets(req: &Req, p: &Params) -> Out {
    let wanted = ids(p, "SubnetId");
    let (after, limit) = paging(p, 1000)?;
    let items = req.kc.subnets(&req.caller.account, &req.region);
    let items = vpc::pick(
        items,
        &wanted,
        |s| &s.id,
        |x| ServiceError::InvalidSubnetIdNotFound(vpc::not_found_message("subnet", x)),
    )?;
    let items = vpc::select_tagged(
        items,
        &filters(p),
        vpc::SUBNET_FILTERS,
        vpc::subnet_facts,
        |s| &s.tags,
    )?;
    let (items, next) = vpc::page(items, after.as_deref(), limit, |s| &s.id);
    let free: Vec<u32> = items.iter().map(|s| req.kc.free_addresses_in(s)).collect();
    Ok(respond(req, |w| {
        w.start("subnetSet");
        for (s, free) in items.iter().zip(free) {
            subnet_xml(w, "item", s, free);
        }
        w.end("subnetSet");
        next_xml(w, &next);
    }))
}

/// A subnet as DescribeSubnets (`item`) or CreateSubnet (`subnet`) shows it.
pub(crate) fn subnet_xml(w: &mut XmlWriter, tag: &str, s: &Subnet, free: u32) {
    let flag = |b: bool| if b { "true" } else { "false" };
    w.start(tag)
        .elem("subnetId", &s.id)
        .elem("subnetArn", &s.arn())
        .elem("state", "available")
        .elem("vpcId", &s.vpc_id)
        .elem("ownerId", &s.account)
        .elem("cidrBlock", &s.cidr)
        .empty("ipv6CidrBlockAssociationSet")
        .elem_display("availableIpAddressCount", free)
        .elem("availabilityZone", &s.zone)
        .elem("availabilityZoneId", &s.zone_id)
        .elem("defaultForAz", flag(s.default_for_az))
        .elem("mapPublicIpOnLaunch", flag(s.default_for_az));
    for off in [
        "mapCustomerOwnedIpOnLaunch",
        "assignIpv6AddressOnCreation",
        "enableDns64",
        "ipv6Native",
    ] {
        w.elem(off, "false");
    }
    tag_set(w, &s.tags);
    w.start("privateDnsNameOptionsOnLaunch")
        .elem("hostnameType", "ip-name")
        .elem("enableResourceNameDnsARecord", "false")
        .elem("enableResourceNameDnsAAAARecord", "false")
        .end("privateDnsNameOptionsOnLaunch")
        .start("blockPublicAccessStates")
        .elem("internetGatewayBlockMode", "off")
        .end("blockPublicAccessStates")
        .end(tag);
}

fn groups(req: &Req, p: &Params, net: &DefaultNetwork) -> Out {
    let wanted = ids(p, "GroupId");
    let names = ids(p, "GroupName");
    for id in &wanted {
        if !id.starts_with("sg-") {
            return Err(ServiceError::InvalidGroupIdMalformed(format!(
                "Invalid id: \"{id}\" (expecting \"sg-...\")"
            )));
        }
    }
    let (after, limit) = paging(p, 1000)?;
    let items = req.kc.security_groups(&req.caller.account, &req.region);
    // GroupName names groups of the default VPC only, as on AWS.
    if let Some(n) = names.iter().find(|n| {
        !items
            .iter()
            .any(|g| g.vpc_id == net.vpc_id && &g.name == *n)
    }) {
        return Err(ServiceError::InvalidGroupNotFound(format!(
            "The security group '{n}' does not exist in default VPC '{}'",
            net.vpc_id
        )));
    }
    let items: Vec<SecurityGroup> = items
        .into_iter()
        .filter(|g| names.is_empty() || g.vpc_id == net.vpc_id && names.contains(&g.name))
        .collect();
    let items = vpc::pick(
        items,
        &wanted,
        |g| &g.id,
        |x| match x {
            [id] => ServiceError::InvalidGroupNotFound(format!(
                "The security group '{id}' does not exist"
            )),
            _ => ServiceError::InvalidGroupNotFound(format!(
                "The security groups '{}' do not exist",
                x.join(", ")
            )),
        },
    )?;
    let items = vpc::select_tagged(
        items,
        &filters(p),
        vpc::GROUP_FILTERS,
        vpc::group_facts,
        |g| &g.tags,
    )?;
    let (items, next) = vpc::page(items, after.as_deref(), limit, |g| &g.id);
    Ok(respond(req, |w| {
        w.start("securityGroupInfo");
        for g in &items {
            group_xml(w, g);
        }
        w.end("securityGroupInfo");
        next_xml(w, &next);
    }))
}

fn no_rule_sources(w: &mut XmlWriter) {
    w.empty("ipv6Ranges").empty("prefixListIds");
}

/// A group's rules: a `default` group lets in all traffic from its own
/// members; every group lets all traffic out.
fn group_xml(w: &mut XmlWriter, g: &SecurityGroup) {
    w.start("item")
        .elem("ownerId", &g.account)
        .elem("groupId", &g.id)
        .elem("groupName", &g.name)
        .elem("groupDescription", &g.description)
        .elem("vpcId", &g.vpc_id)
        .elem("securityGroupArn", &g.arn())
        .start("ipPermissions");
    if g.is_default() {
        w.start("item")
            .elem("ipProtocol", "-1")
            .start("groups")
            .start("item")
            .elem("userId", &g.account)
            .elem("groupId", &g.id)
            .end("item")
            .end("groups")
            .empty("ipRanges");
        no_rule_sources(w);
        w.end("item");
    }
    w.end("ipPermissions")
        .start("ipPermissionsEgress")
        .start("item")
        .elem("ipProtocol", "-1")
        .empty("groups")
        .start("ipRanges")
        .start("item")
        .elem("cidrIp", "0.0.0.0/0")
        .end("item")
        .end("ipRanges");
    no_rule_sources(w);
    w.end("item").end("ipPermissionsEgress");
    tag_set(w, &g.tags);
    w.end("item");
}

/// Each VPC with its subnets (for its ACL's associations).
fn vpcs_with_subnets(req: &Req) -> Vec<(Vpc, Vec<Subnet>)> {
    let all = req.kc.subnets(&req.caller.account, &req.region);
    req.kc
        .vpcs(&req.caller.account, &req.region)
        .into_iter()
        .map(|v| {
            let mine = all.iter().filter(|s| s.vpc_id == v.id).cloned().collect();
            (v, mine)
        })
        .collect()
}

fn acls(req: &Req, p: &Params) -> Out {
    let wanted = ids(p, "NetworkAclId");
    let (after, limit) = paging(p, 1000)?;
    let items = vpc::pick(
        vpcs_with_subnets(req),
        &wanted,
        |(v, _)| &v.network_acl_id,
        |x| ServiceError::InvalidNetworkAclIdNotFound(vpc::not_found_message("network ACL", x)),
    )?;
    let items = vpc::select(items, &filters(p), vpc::ACL_FILTERS, |(v, s)| {
        vpc::acl_facts(v, s)
    })?;
    let (items, next) = vpc::page(items, after.as_deref(), limit, |(v, _)| &v.network_acl_id);
    Ok(respond(req, |w| {
        w.start("networkAclSet");
        for (v, s) in &items {
            acl_xml(w, v, s);
        }
        w.end("networkAclSet");
        next_xml(w, &next);
    }))
}

/// A VPC's default ACL: rule 100 allows everything each way, the `*`
/// rule (32767) denies what no rule matched; every subnet uses it.
fn acl_xml(w: &mut XmlWriter, v: &Vpc, subnets: &[Subnet]) {
    w.start("item")
        .elem("networkAclId", &v.network_acl_id)
        .elem("vpcId", &v.id)
        .elem("default", "true")
        .start("entrySet");
    for egress in ["true", "false"] {
        for (number, action) in [(100, "allow"), (32767, "deny")] {
            w.start("item")
                .elem_display("ruleNumber", number)
                .elem("protocol", "-1")
                .elem("ruleAction", action)
                .elem("egress", egress)
                .elem("cidrBlock", "0.0.0.0/0")
                .end("item");
        }
    }
    w.end("entrySet").start("associationSet");
    for s in subnets {
        w.start("item")
            .elem("networkAclAssociationId", &s.acl_association)
            .elem("networkAclId", &v.network_acl_id)
            .elem("subnetId", &s.id)
            .end("item");
    }
    w.end("associationSet")
        .empty("tagSet")
        .elem("ownerId", &v.account)
        .end("item");
}

fn route_tables(req: &Req, p: &Params) -> Out {
    let wanted = ids(p, "RouteTableId");
    let (after, limit) = paging(p, 100)?;
    let items = vpc::pick(
        req.kc.vpcs(&req.caller.account, &req.region),
        &wanted,
        |v| &v.route_table_id,
        |x| ServiceError::InvalidRouteTableIdNotFound(vpc::not_found_message("route table", x)),
    )?;
    let items = vpc::select(
        items,
        &filters(p),
        vpc::ROUTE_TABLE_FILTERS,
        vpc::route_table_facts,
    )?;
    let (items, next) = vpc::page(items, after.as_deref(), limit, |v| &v.route_table_id);
    Ok(respond(req, |w| {
        w.start("routeTableSet");
        for v in &items {
            route_table_xml(w, v);
        }
        w.end("routeTableSet");
        next_xml(w, &next);
    }))
}

/// A VPC's main table (vpc::routes). Subnets use it implicitly.
fn route_table_xml(w: &mut XmlWriter, v: &Vpc) {
    w.start("item")
        .elem("routeTableId", &v.route_table_id)
        .elem("vpcId", &v.id)
        .elem("ownerId", &v.account)
        .start("routeSet");
    for (dest, gw, origin) in vpc::routes(v) {
        w.start("item")
            .elem("destinationCidrBlock", &dest)
            .elem("gatewayId", &gw)
            .elem("state", "active")
            .elem("origin", origin)
            .end("item");
    }
    w.end("routeSet")
        .start("associationSet")
        .start("item")
        .elem("routeTableAssociationId", &v.main_association)
        .elem("routeTableId", &v.route_table_id)
        .elem("main", "true")
        .start("associationState")
        .elem("state", "associated")
        .end("associationState")
        .end("item")
        .end("associationSet")
        .empty("propagatingVgwSet")
        .empty("tagSet")
        .end("item");
}

fn gateways(req: &Req, p: &Params, net: &DefaultNetwork) -> Out {
    let (show, next) = only_default(
        p,
        net,
        Kind {
            id_param: "InternetGatewayId",
            filters: vpc::GATEWAY_FILTERS,
            max: 1000,
        },
        &net.internet_gateway_id,
        |x| {
            ServiceError::InvalidInternetGatewayIdNotFound(vpc::not_found_message(
                "internetGateway",
                x,
            ))
        },
        vpc::gateway_facts,
    )?;
    Ok(respond(req, |w| {
        w.start("internetGatewaySet");
        if show {
            w.start("item")
                .elem("internetGatewayId", &net.internet_gateway_id)
                .elem("ownerId", &net.account)
                .start("attachmentSet")
                .start("item")
                .elem("vpcId", &net.vpc_id)
                .elem("state", "available")
                .end("item")
                .end("attachmentSet")
                .empty("tagSet")
                .end("item");
        }
        w.end("internetGatewaySet");
        next_xml(w, &next);
    }))
}

fn interfaces(req: &Req, p: &Params) -> Out {
    let wanted = ids(p, "NetworkInterfaceId");
    // The one Describe here whose model forbids ids with MaxResults.
    if !wanted.is_empty() && p.contains("MaxResults") {
        return Err(ServiceError::InvalidParameterCombination(
            "The parameter NetworkInterfaceIds cannot be used with the parameter maxResults".into(),
        ));
    }
    let (after, limit) = paging(p, 1000)?;
    let items = req.kc.network_interfaces(&req.caller.account, &req.region);
    let items = vpc::pick(
        items,
        &wanted,
        |e| &e.id,
        |x| {
            ServiceError::InvalidNetworkInterfaceIdNotFound(vpc::not_found_message(
                "networkInterface",
                x,
            ))
        },
    )?;
    let items = vpc::select_tagged(
        items,
        &filters(p),
        vpc::INTERFACE_FILTERS,
        vpc::interface_facts,
        |e| &e.tags,
    )?;
    let (items, next) = vpc::page(items, after.as_deref(), limit, |e| &e.id);
    Ok(respond(req, |w| {
        w.start("networkInterfaceSet");
        for e in &items {
            eni_xml(w, "item", e, true);
        }
        w.end("networkInterfaceSet");
        next_xml(w, &next);
    }))
}

/// `true` or `false`, as EC2's XML says it.
pub(crate) fn flag(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

pub(crate) fn group_set(w: &mut XmlWriter, groups: &[GroupRef]) {
    w.start("groupSet");
    for g in groups {
        w.start("item")
            .elem("groupId", &g.id)
            .elem("groupName", &g.name)
            .end("item");
    }
    w.end("groupSet");
}

/// An interface as DescribeNetworkInterfaces and CreateNetworkInterface
/// (`full`) or an instance's networkInterfaceSet shows it.
pub(crate) fn eni_xml(w: &mut XmlWriter, tag: &str, e: &NetworkInterface, full: bool) {
    w.start(tag)
        .elem("networkInterfaceId", &e.id)
        .elem("subnetId", &e.subnet_id)
        .elem("vpcId", &e.vpc_id);
    if full {
        w.elem("availabilityZone", &e.zone)
            .elem("availabilityZoneId", &e.zone_id)
            .elem("requesterManaged", "false");
    }
    w.elem("description", &e.description)
        .elem("ownerId", &e.account)
        .elem("status", e.status())
        .elem("macAddress", &e.mac)
        .elem("privateIpAddress", &e.private_ip)
        .elem("privateDnsName", &e.private_dns)
        .elem("sourceDestCheck", flag(e.source_dest_check))
        .elem("interfaceType", "interface");
    group_set(w, &e.groups);
    if let Some(a) = &e.attachment {
        attachment_xml(w, e, a, full, "attached");
    }
    w.start("privateIpAddressesSet")
        .start("item")
        .elem("privateIpAddress", &e.private_ip)
        .elem("privateDnsName", &e.private_dns)
        .elem("primary", "true")
        .end("item")
        .end("privateIpAddressesSet")
        .empty("ipv6AddressesSet");
    if e.tags.is_empty() {
        w.empty("tagSet");
    }
    tag_set(w, &e.tags);
    w.end(tag);
}

/// An interface's `attachment` (NetworkInterfaceAttachment).
pub(crate) fn attachment_xml(
    w: &mut XmlWriter,
    e: &NetworkInterface,
    a: &EniAttachment,
    full: bool,
    status: &str,
) {
    w.start("attachment").elem("attachmentId", &a.id);
    if full {
        w.elem("instanceId", &a.instance_id)
            .elem("instanceOwnerId", &e.account);
    }
    w.elem_display("deviceIndex", a.device_index)
        .elem("networkCardIndex", "0")
        .elem("status", status)
        .elem("attachTime", &iso8601_ms(a.attach_time))
        .elem("deleteOnTermination", flag(a.delete_on_termination))
        .end("attachment");
}

/// An instance's VPC, subnet, security groups and interfaces (the
/// primary one, then those attached later); a terminated instance has
/// none of them, as on AWS.
pub(crate) fn instance_network_xml(
    w: &mut XmlWriter,
    i: &Instance,
    secondary: &[NetworkInterface],
) {
    let Some(e) = vpc::interface_of(i) else {
        w.empty("groupSet");
        return;
    };
    w.elem("vpcId", &e.vpc_id)
        .elem("subnetId", &e.subnet_id)
        .elem("sourceDestCheck", flag(e.source_dest_check));
    group_set(w, &e.groups);
    w.start("networkInterfaceSet");
    eni_xml(w, "item", &e, false);
    for s in secondary {
        eni_xml(w, "item", s, false);
    }
    w.end("networkInterfaceSet");
}

/// The ids parameter of an empty-list operation and the error AWS gives
/// for an id that does not exist.
type Missing = fn(String) -> ServiceError;

/// An empty-list operation: its list element, the ids parameters it
/// checks, and whether it pages.
type EmptySpec = (&'static str, &'static [(&'static str, Missing)], bool);

/// How keycard answers an operation it has nothing for.
fn empty_spec(op: &str) -> Option<EmptySpec> {
    Some(match op {
        "DescribeSnapshots" => (
            "snapshotSet",
            &[(
                "SnapshotId",
                ServiceError::InvalidSnapshotNotFound as Missing,
            )],
            true,
        ),
        "DescribeAddresses" => (
            "addressesSet",
            &[
                ("PublicIp", ServiceError::InvalidAddressNotFound as Missing),
                (
                    "AllocationId",
                    ServiceError::InvalidAllocationIdNotFound as Missing,
                ),
            ],
            false,
        ),
        "DescribeVpcEndpoints" => (
            "vpcEndpointSet",
            &[(
                "VpcEndpointId",
                ServiceError::InvalidVpcEndpointIdNotFound as Missing,
            )],
            true,
        ),
        "DescribeVpcPeeringConnections" => (
            "vpcPeeringConnectionSet",
            &[(
                "VpcPeeringConnectionId",
                ServiceError::InvalidVpcPeeringConnectionIdNotFound as Missing,
            )],
            true,
        ),
        "DescribeVpnConnections" => (
            "vpnConnectionSet",
            &[(
                "VpnConnectionId",
                ServiceError::InvalidVpnConnectionIdNotFound as Missing,
            )],
            false,
        ),
        "DescribeClientVpnEndpoints" => (
            "clientVpnEndpoint",
            &[(
                "ClientVpnEndpointId",
                ServiceError::InvalidClientVpnEndpointIdNotFound as Missing,
            )],
            true,
        ),
        "DescribeTransitGateways" => (
            "transitGatewaySet",
            &[(
                "TransitGatewayIds",
                ServiceError::InvalidTransitGatewayIdNotFound as Missing,
            )],
            true,
        ),
        // Unknown flow log ids are not an error on AWS: an empty set.
        "DescribeFlowLogs" => ("flowLogSet", &[], true),
        // keycard offers no endpoint services (and no AWS ones behind it).
        "DescribeVpcEndpointServices" => ("serviceNameSet", &[], true),
        _ => return None,
    })
}

/// AWS's message for an id of a kind that does not exist.
fn missing_message(param: &str, id: &str) -> String {
    match param {
        "SnapshotId" => format!("The snapshot '{id}' does not exist."),
        "PublicIp" => format!("Address '{id}' not found."),
        "AllocationId" => format!("The allocation ID '{id}' does not exist"),
        "VpcEndpointId" => format!("The Vpc Endpoint Id '{id}' does not exist"),
        "VpcPeeringConnectionId" => format!("The vpcPeeringConnection ID '{id}' does not exist"),
        "VpnConnectionId" => format!("The vpnConnection ID '{id}' does not exist"),
        "ClientVpnEndpointId" => format!("The Client VPN endpoint ID '{id}' does not exist"),
        "TransitGatewayIds" => format!("Transit Gateway {id} was deleted or does not exist."),
        _ => format!("The ID '{id}' does not exist"),
    }
}

fn empty(req: &Req, p: &Params, op: &str) -> Out {
    let Some((list, checks, paged)) = empty_spec(op) else {
        return Err(ServiceError::Internal(format!(
            "operation {op} has a row but no handler"
        )));
    };
    for (param, err) in checks {
        if let Some(id) = ids(p, param).first() {
            return Err(err(missing_message(param, id)));
        }
    }
    if paged && let Some(t) = p.get("NextToken") {
        // Nothing was ever handed out, so no token can continue a list.
        return Err(ServiceError::InvalidParameterValue(format!(
            "Invalid NextToken: {t}"
        )));
    }
    Ok(respond(req, |w| {
        w.empty(list);
        if op == "DescribeVpcEndpointServices" {
            w.empty("serviceDetailSet");
        }
    }))
}
