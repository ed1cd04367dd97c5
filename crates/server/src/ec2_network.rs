//! The EC2 network surface governance tools read: regions and zones, the
//! default VPC and what hangs off it (crates/services/src/vpc.rs), the
//! instances' network interfaces, and true empty answers for resources
//! keycard has none of (volumes, snapshots, images, addresses, launch
//! templates, endpoints, peering, VPN, transit gateways, flow logs).
//! All read-only; each is authorized as `ec2:<Operation>` on `*`, as AWS
//! does for Describe calls.

use keycard_proto::query::Params;
use keycard_proto::xml::{XmlWriter, ec2_response};
use keycard_services::ServiceError;
use keycard_services::auth::ResourcePolicy;
use keycard_services::ec2::{self, Instance};
use keycard_services::vpc::{
    self, DEFAULT_GROUP, DEFAULT_GROUP_DESCRIPTION, DefaultNetwork, NetworkInterface, Subnet,
    VPC_CIDR,
};

use crate::Req;
use crate::ec2::{dry_run_ok, filters, ids, iso8601_ms};

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
    "DescribeVolumes",
    "DescribeSnapshots",
    "DescribeImages",
    "DescribeAddresses",
    "DescribeLaunchTemplates",
    "DescribeLaunchTemplateVersions",
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
        "DescribeVpcs" => vpcs(req, p, &net),
        "DescribeSubnets" => subnets(req, p, &net),
        "DescribeSecurityGroups" => groups(req, p, &net),
        "DescribeNetworkAcls" => acls(req, p, &net),
        "DescribeNetworkInterfaces" => interfaces(req, p),
        "DescribeRouteTables" => route_tables(req, p, &net),
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

fn respond(req: &Req, body: impl FnOnce(&mut XmlWriter)) -> String {
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
    let list: Vec<&Subnet> = net
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

fn vpcs(req: &Req, p: &Params, net: &DefaultNetwork) -> Out {
    let (show, next) = only_default(
        p,
        net,
        Kind {
            id_param: "VpcId",
            filters: vpc::VPC_FILTERS,
            max: 1000,
        },
        &net.vpc_id,
        |x| ServiceError::InvalidVpcIdNotFound(vpc::not_found_message("vpc", x)),
        vpc::vpc_facts,
    )?;
    Ok(respond(req, |w| {
        w.start("vpcSet");
        if show {
            vpc_xml(w, net);
        }
        w.end("vpcSet");
        next_xml(w, &next);
    }))
}

fn vpc_xml(w: &mut XmlWriter, n: &DefaultNetwork) {
    w.start("item")
        .elem("vpcId", &n.vpc_id)
        .elem("ownerId", &n.account)
        .elem("state", "available")
        .elem("cidrBlock", VPC_CIDR)
        .start("cidrBlockAssociationSet")
        .start("item")
        .elem("cidrBlock", VPC_CIDR)
        .elem("associationId", &n.cidr_association)
        .start("cidrBlockState")
        .elem("state", "associated")
        .end("cidrBlockState")
        .end("item")
        .end("cidrBlockAssociationSet")
        .empty("ipv6CidrBlockAssociationSet")
        .elem("dhcpOptionsId", &n.dhcp_options_id)
        .elem("instanceTenancy", "default")
        .elem("isDefault", "true")
        .start("blockPublicAccessStates")
        .elem("internetGatewayBlockMode", "off")
        .end("blockPublicAccessStates")
        .end("item");
}

fn subnets(req: &Req, p: &Params, net: &DefaultNetwork) -> Out {
    let wanted = ids(p, "SubnetId");
    let (after, limit) = paging(p, 1000)?;
    let items: Vec<(usize, &Subnet)> = net.subnets.iter().enumerate().collect();
    let items = vpc::pick(
        items,
        &wanted,
        |(_, s)| &s.id,
        |x| ServiceError::InvalidSubnetIdNotFound(vpc::not_found_message("subnet", x)),
    )?;
    let items = vpc::select(items, &filters(p), vpc::SUBNET_FILTERS, |(_, s)| {
        vpc::subnet_facts(net, s)
    })?;
    let (items, next) = vpc::page(items, after.as_deref(), limit, |(_, s)| &s.id);
    let free: Vec<u32> = items
        .iter()
        .map(|(n, _)| req.kc.free_addresses(&net.account, &net.region, *n))
        .collect();
    Ok(respond(req, |w| {
        w.start("subnetSet");
        for ((_, s), free) in items.iter().zip(free) {
            subnet_xml(w, net, s, free);
        }
        w.end("subnetSet");
        next_xml(w, &next);
    }))
}

fn subnet_xml(w: &mut XmlWriter, n: &DefaultNetwork, s: &Subnet, free: u32) {
    let off = |w: &mut XmlWriter, tag: &str| {
        w.elem(tag, "false");
    };
    w.start("item")
        .elem("subnetId", &s.id)
        .elem("subnetArn", &n.subnet_arn(s))
        .elem("state", "available")
        .elem("vpcId", &n.vpc_id)
        .elem("ownerId", &n.account)
        .elem("cidrBlock", s.cidr)
        .empty("ipv6CidrBlockAssociationSet")
        .elem_display("availableIpAddressCount", free)
        .elem("availabilityZone", &s.zone)
        .elem("availabilityZoneId", &s.zone_id)
        .elem("defaultForAz", "true")
        .elem("mapPublicIpOnLaunch", "true");
    for tag in [
        "mapCustomerOwnedIpOnLaunch",
        "assignIpv6AddressOnCreation",
        "enableDns64",
        "ipv6Native",
    ] {
        off(w, tag);
    }
    w.start("privateDnsNameOptionsOnLaunch")
        .elem("hostnameType", "ip-name")
        .elem("enableResourceNameDnsARecord", "false")
        .elem("enableResourceNameDnsAAAARecord", "false")
        .end("privateDnsNameOptionsOnLaunch")
        .start("blockPublicAccessStates")
        .elem("internetGatewayBlockMode", "off")
        .end("blockPublicAccessStates")
        .end("item");
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
    if let Some(n) = names.iter().find(|n| n.as_str() != DEFAULT_GROUP) {
        return Err(ServiceError::InvalidGroupNotFound(format!(
            "The security group '{n}' does not exist in default VPC '{}'",
            net.vpc_id
        )));
    }
    let (show, next) = only_default(
        p,
        net,
        Kind {
            id_param: "GroupId",
            filters: vpc::GROUP_FILTERS,
            max: 1000,
        },
        &net.security_group_id,
        |x| match x {
            [id] => ServiceError::InvalidGroupNotFound(format!(
                "The security group '{id}' does not exist"
            )),
            _ => ServiceError::InvalidGroupNotFound(format!(
                "The security groups '{}' do not exist",
                x.join(", ")
            )),
        },
        vpc::group_facts,
    )?;
    Ok(respond(req, |w| {
        w.start("securityGroupInfo");
        if show {
            group_xml(w, net);
        }
        w.end("securityGroupInfo");
        next_xml(w, &next);
    }))
}

/// The default group's rules: all traffic in from members of the
/// group itself, all traffic out to anywhere.
fn group_xml(w: &mut XmlWriter, n: &DefaultNetwork) {
    w.start("item")
        .elem("ownerId", &n.account)
        .elem("groupId", &n.security_group_id)
        .elem("groupName", DEFAULT_GROUP)
        .elem("groupDescription", DEFAULT_GROUP_DESCRIPTION)
        .elem("vpcId", &n.vpc_id)
        .elem("securityGroupArn", &n.security_group_arn())
        .start("ipPermissions")
        .start("item")
        .elem("ipProtocol", "-1")
        .start("groups")
        .start("item")
        .elem("userId", &n.account)
        .elem("groupId", &n.security_group_id)
        .end("item")
        .end("groups")
        .empty("ipRanges")
        .empty("ipv6Ranges")
        .empty("prefixListIds")
        .end("item")
        .end("ipPermissions")
        .start("ipPermissionsEgress")
        .start("item")
        .elem("ipProtocol", "-1")
        .empty("groups")
        .start("ipRanges")
        .start("item")
        .elem("cidrIp", "0.0.0.0/0")
        .end("item")
        .end("ipRanges")
        .empty("ipv6Ranges")
        .empty("prefixListIds")
        .end("item")
        .end("ipPermissionsEgress")
        .end("item");
}

fn acls(req: &Req, p: &Params, net: &DefaultNetwork) -> Out {
    let (show, next) = only_default(
        p,
        net,
        Kind {
            id_param: "NetworkAclId",
            filters: vpc::ACL_FILTERS,
            max: 1000,
        },
        &net.network_acl_id,
        |x| ServiceError::InvalidNetworkAclIdNotFound(vpc::not_found_message("network ACL", x)),
        vpc::acl_facts,
    )?;
    Ok(respond(req, |w| {
        w.start("networkAclSet");
        if show {
            acl_xml(w, net);
        }
        w.end("networkAclSet");
        next_xml(w, &next);
    }))
}

/// The default ACL: rule 100 allows everything each way, the `*` rule
/// (32767) denies what no rule matched.
fn acl_xml(w: &mut XmlWriter, n: &DefaultNetwork) {
    w.start("item")
        .elem("networkAclId", &n.network_acl_id)
        .elem("vpcId", &n.vpc_id)
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
    for s in &n.subnets {
        w.start("item")
            .elem("networkAclAssociationId", &s.acl_association)
            .elem("networkAclId", &n.network_acl_id)
            .elem("subnetId", &s.id)
            .end("item");
    }
    w.end("associationSet")
        .empty("tagSet")
        .elem("ownerId", &n.account)
        .end("item");
}

fn route_tables(req: &Req, p: &Params, net: &DefaultNetwork) -> Out {
    let (show, next) = only_default(
        p,
        net,
        Kind {
            id_param: "RouteTableId",
            filters: vpc::ROUTE_TABLE_FILTERS,
            max: 100,
        },
        &net.route_table_id,
        |x| ServiceError::InvalidRouteTableIdNotFound(vpc::not_found_message("route table", x)),
        vpc::route_table_facts,
    )?;
    Ok(respond(req, |w| {
        w.start("routeTableSet");
        if show {
            route_table_xml(w, net);
        }
        w.end("routeTableSet");
        next_xml(w, &next);
    }))
}

/// The main table: the VPC's own block stays local, the rest goes out
/// through the internet gateway. Default subnets use it implicitly.
fn route_table_xml(w: &mut XmlWriter, n: &DefaultNetwork) {
    w.start("item")
        .elem("routeTableId", &n.route_table_id)
        .elem("vpcId", &n.vpc_id)
        .elem("ownerId", &n.account)
        .start("routeSet");
    for (dest, gw, origin) in [
        (VPC_CIDR, "local", "CreateRouteTable"),
        ("0.0.0.0/0", n.internet_gateway_id.as_str(), "CreateRoute"),
    ] {
        w.start("item")
            .elem("destinationCidrBlock", dest)
            .elem("gatewayId", gw)
            .elem("state", "active")
            .elem("origin", origin)
            .end("item");
    }
    w.end("routeSet")
        .start("associationSet")
        .start("item")
        .elem("routeTableAssociationId", &n.main_association)
        .elem("routeTableId", &n.route_table_id)
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
    let items = vpc::select(
        items,
        &filters(p),
        vpc::INTERFACE_FILTERS,
        vpc::interface_facts,
    )?;
    let (items, next) = vpc::page(items, after.as_deref(), limit, |e| &e.id);
    Ok(respond(req, |w| {
        w.start("networkInterfaceSet");
        for e in &items {
            eni_xml(w, e, true);
        }
        w.end("networkInterfaceSet");
        next_xml(w, &next);
    }))
}

fn group_set(w: &mut XmlWriter, group_id: &str) {
    w.start("groupSet")
        .start("item")
        .elem("groupId", group_id)
        .elem("groupName", DEFAULT_GROUP)
        .end("item")
        .end("groupSet");
}

/// An interface as DescribeNetworkInterfaces (`full`) or an instance's
/// networkInterfaceSet shows it.
fn eni_xml(w: &mut XmlWriter, e: &NetworkInterface, full: bool) {
    w.start("item")
        .elem("networkInterfaceId", &e.id)
        .elem("subnetId", &e.subnet_id)
        .elem("vpcId", &e.vpc_id);
    if full {
        w.elem("availabilityZone", &e.zone)
            .elem("availabilityZoneId", &e.zone_id)
            .elem("requesterManaged", "false");
    }
    w.elem("description", "")
        .elem("ownerId", &e.account)
        .elem("status", "in-use")
        .elem("macAddress", &e.mac)
        .elem("privateIpAddress", &e.private_ip)
        .elem("privateDnsName", &e.private_dns)
        .elem("sourceDestCheck", "true")
        .elem("interfaceType", "interface");
    group_set(w, &e.group_id);
    w.start("attachment").elem("attachmentId", &e.attachment_id);
    if full {
        w.elem("instanceId", &e.instance_id)
            .elem("instanceOwnerId", &e.account);
    }
    w.elem("deviceIndex", "0")
        .elem("networkCardIndex", "0")
        .elem("status", "attached")
        .elem("attachTime", &iso8601_ms(e.attach_time))
        .elem("deleteOnTermination", "true")
        .end("attachment")
        .start("privateIpAddressesSet")
        .start("item")
        .elem("privateIpAddress", &e.private_ip)
        .elem("privateDnsName", &e.private_dns)
        .elem("primary", "true")
        .end("item")
        .end("privateIpAddressesSet")
        .empty("ipv6AddressesSet")
        .empty("tagSet")
        .end("item");
}

/// An instance's VPC, subnet, security groups and primary interface;
/// a terminated instance has none of them, as on AWS.
pub(crate) fn instance_network_xml(w: &mut XmlWriter, i: &Instance) {
    let Some(e) = vpc::interface_of(i) else {
        w.empty("groupSet");
        return;
    };
    w.elem("vpcId", &e.vpc_id)
        .elem("subnetId", &e.subnet_id)
        .elem("sourceDestCheck", "true");
    group_set(w, &e.group_id);
    w.start("networkInterfaceSet");
    eni_xml(w, &e, false);
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
        "DescribeVolumes" => (
            "volumeSet",
            &[("VolumeId", ServiceError::InvalidVolumeNotFound as Missing)],
            true,
        ),
        "DescribeSnapshots" => (
            "snapshotSet",
            &[(
                "SnapshotId",
                ServiceError::InvalidSnapshotNotFound as Missing,
            )],
            true,
        ),
        "DescribeImages" => (
            "imagesSet",
            &[("ImageId", ServiceError::InvalidAmiIdNotFound as Missing)],
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
        "DescribeLaunchTemplates" => (
            "launchTemplates",
            &[
                (
                    "LaunchTemplateId",
                    ServiceError::InvalidLaunchTemplateIdNotFound as Missing,
                ),
                (
                    "LaunchTemplateName",
                    ServiceError::InvalidLaunchTemplateNameNotFound as Missing,
                ),
            ],
            true,
        ),
        "DescribeLaunchTemplateVersions" => ("launchTemplateVersionSet", &[], true),
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
        "VolumeId" => format!("The volume '{id}' does not exist."),
        "SnapshotId" => format!("The snapshot '{id}' does not exist."),
        "ImageId" => format!("The image id '[{id}]' does not exist"),
        "PublicIp" => format!("Address '{id}' not found."),
        "AllocationId" => format!("The allocation ID '{id}' does not exist"),
        "LaunchTemplateId" | "LaunchTemplateName" => {
            "At least one of the launch templates specified in the request does not exist.".into()
        }
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
    if op == "DescribeLaunchTemplateVersions" {
        launch_template_versions(p)?;
    }
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

/// DescribeLaunchTemplateVersions names one template by id or name;
/// keycard has none, so a named one does not exist.
fn launch_template_versions(p: &Params) -> Result<(), ServiceError> {
    match (p.get("LaunchTemplateId"), p.get("LaunchTemplateName")) {
        (Some(_), Some(_)) => Err(ServiceError::InvalidParameterCombination(
            "The parameters LaunchTemplateId and LaunchTemplateName cannot be used together."
                .into(),
        )),
        (Some(id), None) => Err(ServiceError::InvalidLaunchTemplateIdNotFound(format!(
            "The specified launch template, with template ID {id}, does not exist."
        ))),
        (None, Some(name)) => Err(ServiceError::InvalidLaunchTemplateNameNotFound(format!(
            "The specified launch template, with template name {name}, does not exist."
        ))),
        (None, None) => Ok(()),
    }
}
