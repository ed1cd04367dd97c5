//! The network every account has in every region, as a new AWS account
//! finds it: the default VPC with a default subnet per zone, its default
//! security group, network ACL, main route table and internet gateway,
//! and one network interface per instance. Nothing here is stored: ids
//! are derived from account and region (and the instance id for its
//! interface), so they are the same after every restart and differ
//! between accounts. What accounts create beside it (VPCs, subnets,
//! security groups) is stored: network.rs.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Keycard;
use crate::ec2::{Filter, Instance, check_filters, next_token, wildcard};
use crate::error::{Result, ServiceError};
use crate::model::Tag;
use crate::network::{GroupRef, SecurityGroup, Subnet as NetSubnet, Vpc};
use crate::state::State;

/// The default VPC's block, as on AWS.
pub const VPC_CIDR: &str = "172.31.0.0/16";
/// Zone letters with AWS's default-subnet blocks, in the order AWS
/// creates them. Instances launch into the first.
const ZONES: [(char, &str); 3] = [
    ('a', "172.31.0.0/20"),
    ('b', "172.31.16.0/20"),
    ('c', "172.31.32.0/20"),
];
/// The instance subnet (`<region>a`, 172.31.0.0/20) as a number range:
/// AWS reserves the first four addresses and the last.
const FIRST_HOST: u32 = u32::from_be_bytes([172, 31, 0, 4]);
const LAST_HOST: u32 = u32::from_be_bytes([172, 31, 15, 254]);
/// Addresses a /20 default subnet offers (4096 less AWS's five).
#[cfg(test)]
const SUBNET_ADDRESSES: u32 = 4091;

/// `prefix` + 17 hex digits derived from the parts.
fn derived(prefix: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let mut hex = hex::encode(h.finalize());
    hex.truncate(17);
    format!("{prefix}{hex}")
}

/// AWS's zone id, e.g. `use1-az1` for `us-east-1a`.
pub fn zone_id(region: &str, index: usize) -> String {
    let mut parts = region.split('-');
    let area = parts.next().unwrap_or("");
    let direction = parts.next().unwrap_or("");
    let number = parts.next().unwrap_or("");
    let mut short = String::new();
    let mut rest = direction;
    for d in ["north", "south"] {
        if let Some(r) = rest.strip_prefix(d) {
            short.push_str(&d[..1]);
            rest = r;
        }
    }
    short.push_str(rest.get(..1).unwrap_or(""));
    format!("{area}{short}{number}-az{}", index + 1)
}

/// One default subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    pub id: String,
    pub zone: String,
    pub zone_id: String,
    pub cidr: &'static str,
    /// `aclassoc-…`: its association with the default network ACL.
    pub acl_association: String,
}

/// The default network of one account in one region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultNetwork {
    pub account: String,
    pub region: String,
    pub vpc_id: String,
    pub cidr_association: String,
    pub dhcp_options_id: String,
    pub subnets: Vec<Subnet>,
    pub security_group_id: String,
    pub network_acl_id: String,
    pub route_table_id: String,
    pub main_association: String,
    pub internet_gateway_id: String,
}

/// The default security group's name, as on AWS.
pub const DEFAULT_GROUP: &str = "default";
pub const DEFAULT_GROUP_DESCRIPTION: &str = "default VPC security group";

impl DefaultNetwork {
    pub fn new(account: &str, region: &str) -> DefaultNetwork {
        let id = |prefix: &str, what: &str| derived(prefix, &[account, region, what]);
        let subnets = ZONES
            .iter()
            .enumerate()
            .map(|(n, (letter, cidr))| {
                let zone = format!("{region}{letter}");
                Subnet {
                    id: id("subnet-", &zone),
                    zone_id: zone_id(region, n),
                    acl_association: id("aclassoc-", &zone),
                    zone,
                    cidr,
                }
            })
            .collect();
        DefaultNetwork {
            account: account.to_string(),
            region: region.to_string(),
            vpc_id: id("vpc-", "vpc"),
            cidr_association: id("vpc-cidr-assoc-", "cidr"),
            dhcp_options_id: id("dopt-", "dhcp"),
            subnets,
            security_group_id: id("sg-", "sg"),
            network_acl_id: id("acl-", "acl"),
            route_table_id: id("rtb-", "rtb"),
            main_association: id("rtbassoc-", "main"),
            internet_gateway_id: id("igw-", "igw"),
        }
    }

    /// The subnet instances launch into (`<region>a`).
    pub fn instance_subnet(&self) -> Option<&Subnet> {
        self.subnets.first()
    }

    pub fn subnet_arn(&self, s: &Subnet) -> String {
        format!(
            "arn:aws:ec2:{}:{}:subnet/{}",
            self.region, self.account, s.id
        )
    }

    pub fn security_group_arn(&self) -> String {
        format!(
            "arn:aws:ec2:{}:{}:security-group/{}",
            self.region, self.account, self.security_group_id
        )
    }
}

/// The private address of the instance in `slot` (1-based), inside the
/// instance subnet; `None` when the subnet has no address left for it.
pub fn slot_address(slot: u32) -> Option<String> {
    let n = FIRST_HOST.checked_add(slot.checked_sub(1)?)?;
    (n <= LAST_HOST).then(|| Ipv4Addr::from(n).to_string())
}

/// Where a network interface is attached.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EniAttachment {
    /// `eni-attach-…`.
    pub id: String,
    pub instance_id: String,
    pub device_index: u32,
    pub attach_time: i64,
    pub delete_on_termination: bool,
}

/// A network interface: an instance's primary one (derived from the
/// instance, never stored) or one CreateNetworkInterface made (stored:
/// eni.rs).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetworkInterface {
    pub id: String,
    pub account: String,
    pub region: String,
    pub vpc_id: String,
    pub subnet_id: String,
    pub zone: String,
    pub zone_id: String,
    /// The first of `groups` (the one the default network gives).
    pub group_id: String,
    /// Its security groups, in launch order.
    pub groups: Vec<GroupRef>,
    pub vpc_cidr: String,
    pub subnet_cidr: String,
    pub private_ip: String,
    pub private_dns: String,
    pub mac: String,
    #[serde(default)]
    pub description: String,
    /// Its tags (a primary interface's are stored beside it: tags.rs).
    #[serde(default)]
    pub tags: Vec<Tag>,
    pub source_dest_check: bool,
    #[serde(default)]
    pub attachment: Option<EniAttachment>,
    /// An instance's primary interface (device index 0): derived, it
    /// cannot be detached or deleted on its own.
    #[serde(default)]
    pub primary: bool,
}

impl NetworkInterface {
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:ec2:{}:{}:network-interface/{}",
            self.region, self.account, self.id
        )
    }

    /// `in-use` while attached, else `available`.
    pub fn status(&self) -> &'static str {
        if self.attachment.is_some() {
            "in-use"
        } else {
            "available"
        }
    }
}

/// The primary interface of an instance: its VPC, subnet, groups and
/// private address. None once it is terminated (AWS deletes it with the
/// instance). The one place that says where an instance is.
pub fn interface_of(i: &Instance) -> Option<NetworkInterface> {
    if i.is_terminated() {
        return None;
    }
    let net = match &i.network {
        Some(n) => n.clone(),
        None => DefaultNetwork::new(&i.account, &i.region).instance_network()?,
    };
    Some(NetworkInterface {
        id: derived("eni-", &[&i.id]),
        account: i.account.clone(),
        region: i.region.clone(),
        group_id: net.groups.first().map(|g| g.id.clone()).unwrap_or_default(),
        vpc_id: net.vpc_id,
        subnet_id: net.subnet_id,
        zone: net.zone,
        zone_id: net.zone_id,
        groups: net.groups,
        vpc_cidr: net.vpc_cidr,
        subnet_cidr: net.subnet_cidr,
        private_ip: i.private_ip.clone().unwrap_or_default(),
        private_dns: i.private_dns(),
        mac: i.mac(),
        description: i.attrs.eni_description.clone(),
        tags: Vec::new(),
        source_dest_check: i.attrs.source_dest_check,
        attachment: Some(EniAttachment {
            id: derived("eni-attach-", &[&i.id]),
            instance_id: i.id.clone(),
            device_index: 0,
            attach_time: i.launch_time,
            delete_on_termination: i.attrs.eni_delete_on_termination,
        }),
        primary: true,
    })
}

/// One interface's values for a `network-interface.<field>` filter.
fn eni_fact(e: &NetworkInterface, field: &str) -> Option<Vec<String>> {
    Some(match field {
        "vpc-id" => vec![e.vpc_id.clone()],
        "subnet-id" => vec![e.subnet_id.clone()],
        "group-id" => group_ids(e),
        "group-name" => group_names(e),
        "network-interface-id" => vec![e.id.clone()],
        "mac-address" => vec![e.mac.clone()],
        "attachment.attachment-id" => vec![e.attachment.as_ref()?.id.clone()],
        _ => return None,
    })
}

/// The network facts of an instance that DescribeInstances filters on:
/// `network-interface.*` ones over all its interfaces (`secondary`: those
/// attached beside the primary), the others of the primary one.
pub fn instance_fact(
    i: &Instance,
    secondary: &[NetworkInterface],
    name: &str,
) -> Option<Vec<String>> {
    let eni = interface_of(i)?;
    if let Some(field) = name.strip_prefix("network-interface.") {
        let mut out = eni_fact(&eni, field)?;
        for s in secondary {
            out.extend(eni_fact(s, field).unwrap_or_default());
        }
        return Some(out);
    }
    let field = match name {
        "vpc-id" | "subnet-id" => name,
        "instance.group-id" => "group-id",
        "instance.group-name" => "group-name",
        _ => return None,
    };
    eni_fact(&eni, field)
}

fn group_ids(e: &NetworkInterface) -> Vec<String> {
    e.groups.iter().map(|g| g.id.clone()).collect()
}

fn group_names(e: &NetworkInterface) -> Vec<String> {
    e.groups.iter().map(|g| g.name.clone()).collect()
}

/// Instance filter names this module answers.
pub const INSTANCE_NETWORK_FILTERS: &[&str] = &[
    "vpc-id",
    "subnet-id",
    "instance.group-id",
    "instance.group-name",
    "network-interface.vpc-id",
    "network-interface.subnet-id",
    "network-interface.group-id",
    "network-interface.group-name",
    "network-interface.network-interface-id",
    "network-interface.mac-address",
    "network-interface.attachment.attachment-id",
];

/// A resource's filterable values by filter name.
pub type Facts = Vec<(&'static str, Vec<String>)>;

fn one(name: &'static str, v: impl Into<String>) -> (&'static str, Vec<String>) {
    (name, vec![v.into()])
}

/// Keep the items every filter matches. Unknown filter names are
/// refused; resources without tags match no `tag:` filter.
pub fn select<T>(
    items: Vec<T>,
    filters: &[Filter],
    known: &[&str],
    facts: impl Fn(&T) -> Facts,
) -> Result<Vec<T>> {
    select_tagged(items, filters, known, facts, |_| &[])
}

/// [`select`] for resources with tags: `tag:K`, `tag-key` and
/// `tag-value` match them.
pub fn select_tagged<T>(
    items: Vec<T>,
    filters: &[Filter],
    known: &[&str],
    facts: impl Fn(&T) -> Facts,
    tags: impl Fn(&T) -> &[Tag],
) -> Result<Vec<T>> {
    check_filters(filters, known)?;
    Ok(items
        .into_iter()
        .filter(|item| {
            let f = facts(item);
            let t = tags(item);
            filters.iter().all(|flt| {
                let any = |v: &str| flt.values.iter().any(|p| wildcard(p, v));
                match flt.name.as_str() {
                    "tag-key" => t.iter().any(|x| any(&x.key)),
                    "tag-value" => t.iter().any(|x| any(&x.value)),
                    n => match n.strip_prefix("tag:") {
                        Some(k) => t.iter().any(|x| x.key == k && any(&x.value)),
                        None => f
                            .iter()
                            .any(|(name, values)| *name == n && values.iter().any(|v| any(v))),
                    },
                }
            })
        })
        .collect())
}

/// Keep the items named in `ids`; every id must exist.
pub fn pick<T>(
    items: Vec<T>,
    ids: &[String],
    id_of: impl Fn(&T) -> &str,
    missing: impl Fn(&[&str]) -> ServiceError,
) -> Result<Vec<T>> {
    if ids.is_empty() {
        return Ok(items);
    }
    let absent: Vec<&str> = ids
        .iter()
        .map(String::as_str)
        .filter(|id| !items.iter().any(|i| id_of(i) == *id))
        .collect();
    if !absent.is_empty() {
        return Err(missing(&absent));
    }
    Ok(items
        .into_iter()
        .filter(|i| ids.iter().any(|id| id == id_of(i)))
        .collect())
}

/// One page of items sorted by id: those after `after`, at most `limit`,
/// and the token for the rest.
pub fn page<T>(
    mut items: Vec<T>,
    after: Option<&str>,
    limit: Option<usize>,
    id_of: impl Fn(&T) -> &str,
) -> (Vec<T>, Option<String>) {
    items.sort_by(|a, b| id_of(a).cmp(id_of(b)));
    let mut rest: Vec<T> = items
        .into_iter()
        .filter(|i| after.is_none_or(|a| id_of(i) > a))
        .collect();
    let mut next = None;
    if let Some(l) = limit
        && rest.len() > l
    {
        rest.truncate(l);
        next = rest.last().map(|i| next_token(id_of(i)));
    }
    (rest, next)
}

/// `The vpc ID 'x' does not exist` in AWS's wording for one or several.
pub fn not_found_message(kind: &str, ids: &[&str]) -> String {
    match ids {
        [id] => format!("The {kind} ID '{id}' does not exist"),
        _ => format!("The {kind} IDs '{}' do not exist", ids.join(", ")),
    }
}

pub const VPC_FILTERS: &[&str] = &[
    "vpc-id",
    "cidr",
    "cidr-block-association.cidr-block",
    "cidr-block-association.association-id",
    "cidr-block-association.state",
    "dhcp-options-id",
    "is-default",
    "isDefault",
    "owner-id",
    "state",
    "tag-key",
    "tag-value",
];

fn flag(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

pub fn vpc_facts(v: &Vpc) -> Facts {
    vec![
        one("vpc-id", &v.id),
        one("cidr", &v.cidr),
        one("cidr-block-association.cidr-block", &v.cidr),
        one("cidr-block-association.association-id", &v.cidr_association),
        one("cidr-block-association.state", "associated"),
        one("dhcp-options-id", &v.dhcp_options_id),
        one("is-default", flag(v.is_default)),
        one("isDefault", flag(v.is_default)),
        one("owner-id", &v.account),
        one("state", "available"),
    ]
}

pub const SUBNET_FILTERS: &[&str] = &[
    "subnet-id",
    "subnet-arn",
    "vpc-id",
    "availability-zone",
    "availabilityZone",
    "availability-zone-id",
    "cidr",
    "cidr-block",
    "cidrBlock",
    "default-for-az",
    "defaultForAz",
    "map-public-ip-on-launch",
    "owner-id",
    "state",
    "tag-key",
    "tag-value",
];

pub fn subnet_facts(s: &NetSubnet) -> Facts {
    let mut f = vec![
        one("subnet-id", &s.id),
        one("subnet-arn", s.arn()),
        one("vpc-id", &s.vpc_id),
        one("availability-zone-id", &s.zone_id),
        one("default-for-az", flag(s.default_for_az)),
        one("defaultForAz", flag(s.default_for_az)),
        one("map-public-ip-on-launch", flag(s.default_for_az)),
        one("owner-id", &s.account),
        one("state", "available"),
    ];
    for name in ["availability-zone", "availabilityZone"] {
        f.push(one(name, &s.zone));
    }
    for name in ["cidr", "cidr-block", "cidrBlock"] {
        f.push(one(name, &s.cidr));
    }
    f
}

pub const GROUP_FILTERS: &[&str] = &[
    "group-id",
    "group-name",
    "description",
    "vpc-id",
    "owner-id",
    "ip-permission.protocol",
    "ip-permission.group-id",
    "ip-permission.group-name",
    "ip-permission.user-id",
    "egress.ip-permission.protocol",
    "egress.ip-permission.cidr",
    "tag-key",
    "tag-value",
];

/// A `default` group lets its own members in; every group lets all
/// traffic out (AWS's rules for new groups).
pub fn group_facts(g: &SecurityGroup) -> Facts {
    let mut f = vec![
        one("group-id", &g.id),
        one("group-name", &g.name),
        one("description", &g.description),
        one("vpc-id", &g.vpc_id),
        one("owner-id", &g.account),
        one("egress.ip-permission.protocol", "-1"),
        one("egress.ip-permission.cidr", "0.0.0.0/0"),
    ];
    if g.is_default() {
        f.extend([
            one("ip-permission.protocol", "-1"),
            one("ip-permission.group-id", &g.id),
            one("ip-permission.group-name", &g.name),
            one("ip-permission.user-id", &g.account),
        ]);
    }
    f
}

pub const ACL_FILTERS: &[&str] = &[
    "network-acl-id",
    "vpc-id",
    "default",
    "owner-id",
    "association.association-id",
    "association.network-acl-id",
    "association.subnet-id",
    "entry.cidr",
    "entry.egress",
    "entry.protocol",
    "entry.rule-action",
    "entry.rule-number",
    "tag-key",
    "tag-value",
];

/// A VPC's default ACL, associated with every subnet of the VPC.
pub fn acl_facts(v: &Vpc, subnets: &[NetSubnet]) -> Facts {
    vec![
        one("network-acl-id", &v.network_acl_id),
        one("vpc-id", &v.id),
        one("default", "true"),
        one("owner-id", &v.account),
        (
            "association.association-id",
            subnets.iter().map(|s| s.acl_association.clone()).collect(),
        ),
        one("association.network-acl-id", &v.network_acl_id),
        (
            "association.subnet-id",
            subnets.iter().map(|s| s.id.clone()).collect(),
        ),
        one("entry.cidr", "0.0.0.0/0"),
        ("entry.egress", vec!["true".into(), "false".into()]),
        one("entry.protocol", "-1"),
        ("entry.rule-action", vec!["allow".into(), "deny".into()]),
        ("entry.rule-number", vec!["100".into(), "32767".into()]),
    ]
}

pub const ROUTE_TABLE_FILTERS: &[&str] = &[
    "route-table-id",
    "vpc-id",
    "owner-id",
    "association.main",
    "association.route-table-association-id",
    "association.route-table-id",
    // Only explicit associations carry a subnet or gateway: default
    // subnets use the main table implicitly, so these match nothing here
    // (as on AWS, where tools then fall back to the main table).
    "association.subnet-id",
    "association.gateway-id",
    "route.destination-cidr-block",
    "route.gateway-id",
    "route.origin",
    "route.state",
    "tag-key",
    "tag-value",
];

/// A main route table's routes: the VPC's block stays local; the
/// default VPC's table also sends the rest to its internet gateway.
pub fn routes(v: &Vpc) -> Vec<(String, String, &'static str)> {
    let mut r = vec![(v.cidr.clone(), "local".to_string(), "CreateRouteTable")];
    if let Some(igw) = &v.internet_gateway_id {
        r.push(("0.0.0.0/0".into(), igw.clone(), "CreateRoute"));
    }
    r
}

pub fn route_table_facts(v: &Vpc) -> Facts {
    let r = routes(v);
    let col = |f: fn(&(String, String, &'static str)) -> String| -> Vec<String> {
        r.iter().map(f).collect()
    };
    vec![
        one("route-table-id", &v.route_table_id),
        one("vpc-id", &v.id),
        one("owner-id", &v.account),
        one("association.main", "true"),
        one(
            "association.route-table-association-id",
            &v.main_association,
        ),
        one("association.route-table-id", &v.route_table_id),
        ("route.destination-cidr-block", col(|x| x.0.clone())),
        ("route.gateway-id", col(|x| x.1.clone())),
        ("route.origin", col(|x| x.2.to_string())),
        one("route.state", "active"),
    ]
}

pub const GATEWAY_FILTERS: &[&str] = &[
    "internet-gateway-id",
    "attachment.vpc-id",
    "attachment.state",
    "owner-id",
    "tag-key",
    "tag-value",
];

pub fn gateway_facts(n: &DefaultNetwork) -> Facts {
    vec![
        one("internet-gateway-id", &n.internet_gateway_id),
        one("attachment.vpc-id", &n.vpc_id),
        one("attachment.state", "available"),
        one("owner-id", &n.account),
    ]
}

pub const INTERFACE_FILTERS: &[&str] = &[
    "network-interface-id",
    "vpc-id",
    "subnet-id",
    "group-id",
    "group-name",
    "availability-zone",
    "attachment.instance-id",
    "attachment.instance-owner-id",
    "attachment.attachment-id",
    "attachment.device-index",
    "attachment.status",
    "attachment.delete-on-termination",
    "private-ip-address",
    "addresses.private-ip-address",
    "addresses.primary",
    "private-dns-name",
    "mac-address",
    "owner-id",
    "status",
    "interface-type",
    "requester-managed",
    "source-dest-check",
    "description",
    "tag-key",
    "tag-value",
];

pub fn interface_facts(e: &NetworkInterface) -> Facts {
    let mut f = vec![
        one("network-interface-id", &e.id),
        one("vpc-id", &e.vpc_id),
        one("subnet-id", &e.subnet_id),
        ("group-id", group_ids(e)),
        ("group-name", group_names(e)),
        one("availability-zone", &e.zone),
        one("private-ip-address", &e.private_ip),
        one("addresses.private-ip-address", &e.private_ip),
        one("addresses.primary", "true"),
        one("private-dns-name", &e.private_dns),
        one("mac-address", &e.mac),
        one("owner-id", &e.account),
        one("status", e.status()),
        one("interface-type", "interface"),
        one("requester-managed", "false"),
        one("source-dest-check", flag(e.source_dest_check)),
        one("description", &e.description),
    ];
    if let Some(a) = &e.attachment {
        f.extend([
            one("attachment.instance-id", &a.instance_id),
            one("attachment.instance-owner-id", &e.account),
            one("attachment.attachment-id", &a.id),
            one("attachment.device-index", a.device_index.to_string()),
            one("attachment.status", "attached"),
            one(
                "attachment.delete-on-termination",
                flag(a.delete_on_termination),
            ),
        ]);
    }
    f
}

/// A region and whether a new account has it enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub name: String,
    /// `opt-in-not-required` or `not-opted-in`.
    pub opt_in: &'static str,
}

/// Regions enabled in every new account.
const STANDARD_REGIONS: &[&str] = &[
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "ca-central-1",
    "eu-central-1",
    "eu-north-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
];

/// Regions a new account must opt in to (shown with `AllRegions`).
const OPT_IN_REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-south-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-7",
    "ca-west-1",
    "eu-central-2",
    "eu-south-1",
    "eu-south-2",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
];

/// The regions DescribeRegions lists. The region keycard serves is
/// always enabled, also when it is not one of AWS's names.
pub fn regions(served: &str, all: bool) -> Vec<Region> {
    let mut out: Vec<Region> = STANDARD_REGIONS
        .iter()
        .map(|r| Region {
            name: (*r).to_string(),
            opt_in: "opt-in-not-required",
        })
        .collect();
    if !served.is_empty() && !out.iter().any(|r| r.name == served) {
        out.push(Region {
            name: served.to_string(),
            opt_in: "opt-in-not-required",
        });
    }
    if all {
        out.extend(
            OPT_IN_REGIONS
                .iter()
                .filter(|r| **r != served)
                .map(|r| Region {
                    name: (*r).to_string(),
                    opt_in: "not-opted-in",
                }),
        );
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

pub const REGION_FILTERS: &[&str] = &["region-name", "endpoint", "opt-in-status"];

pub fn region_endpoint(name: &str) -> String {
    format!("ec2.{name}.amazonaws.com")
}

pub fn region_facts(r: &Region) -> Facts {
    vec![
        one("region-name", &r.name),
        one("endpoint", region_endpoint(&r.name)),
        one("opt-in-status", r.opt_in),
    ]
}

pub const ZONE_FILTERS: &[&str] = &[
    "zone-name",
    "zone-id",
    "region-name",
    "state",
    "zone-type",
    "group-name",
    "opt-in-status",
];

pub fn zone_facts(region: &str, s: &Subnet) -> Facts {
    vec![
        one("zone-name", &s.zone),
        one("zone-id", &s.zone_id),
        one("region-name", region),
        one("state", "available"),
        one("zone-type", "availability-zone"),
        one("group-name", region),
        one("opt-in-status", "opt-in-not-required"),
    ]
}

/// The account's interfaces in `region`: its live instances' primary ones
/// (with their tags; a terminated instance has none left), then the
/// created ones. Each holds an address of its subnet and keeps its subnet
/// and groups in use.
pub fn network_interfaces(st: &State, account: &str, region: &str) -> Vec<NetworkInterface> {
    let mut out: Vec<NetworkInterface> = st
        .instances
        .values()
        .filter(|i| i.account == account && i.region == region)
        .filter_map(|i| interface_of(i))
        .map(|mut e| {
            e.tags = crate::tags::derived_tags(st, &e.id);
            e
        })
        .collect();
    out.extend(
        st.network_interfaces
            .values()
            .filter(|e| e.account == account && e.region == region)
            .cloned(),
    );
    out
}

impl Keycard {
    /// The account's interfaces in `region`.
    pub fn network_interfaces(&self, account: &str, region: &str) -> Vec<NetworkInterface> {
        network_interfaces(&self.state(), account, region)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_per_account() {
        let a = DefaultNetwork::new("111111111111", "us-east-1");
        assert_eq!(a, DefaultNetwork::new("111111111111", "us-east-1"));
        assert_ne!(
            a.vpc_id,
            DefaultNetwork::new("222222222222", "us-east-1").vpc_id
        );
        assert_ne!(
            a.vpc_id,
            DefaultNetwork::new("111111111111", "eu-west-1").vpc_id
        );
        assert_eq!(a.vpc_id.len(), "vpc-".len() + 17);
        assert_eq!(a.subnets.len(), 3);
    }

    fn filter(name: &str, v: &str) -> Filter {
        Filter {
            name: name.into(),
            values: vec![v.into()],
        }
    }

    #[test]
    fn filters_ids_and_pages() {
        let n = DefaultNetwork::new("111111111111", "us-east-1");
        let subnets = || n.subnet_records();
        let facts = subnet_facts;
        let got = select(
            subnets(),
            &[filter("cidr-block", "172.31.16.*")],
            SUBNET_FILTERS,
            facts,
        )
        .expect("select");
        assert_eq!(got.len(), 1);
        assert_eq!(got.first().map(|s| s.zone.as_str()), Some("us-east-1b"));
        let tagged = select(subnets(), &[filter("tag:Name", "*")], SUBNET_FILTERS, facts);
        assert_eq!(tagged.expect("tag filter").len(), 0);
        assert!(select(subnets(), &[filter("bogus", "x")], SUBNET_FILTERS, facts).is_err());
        let missing = pick(
            subnets(),
            &["subnet-0".into()],
            |s| &s.id,
            |x| ServiceError::InvalidSubnetIdNotFound(not_found_message("subnet", x)),
        );
        assert_eq!(
            missing.map_err(|e| e.code()).err(),
            Some("InvalidSubnetID.NotFound")
        );
        let (first, next) = page(subnets(), None, Some(2), |s| &s.id);
        assert_eq!(first.len(), 2);
        let after = next.map(|t| crate::ec2::parse_next_token(&t).expect("token"));
        let (rest, none) = page(subnets(), after.as_deref(), Some(2), |s| &s.id);
        assert_eq!((rest.len(), none), (1, None));
    }

    #[test]
    fn zone_ids_follow_aws() {
        assert_eq!(zone_id("us-east-1", 0), "use1-az1");
        assert_eq!(zone_id("ap-southeast-2", 1), "apse2-az2");
        assert_eq!(zone_id("eu-central-1", 2), "euc1-az3");
    }

    #[test]
    fn slot_addresses_stay_in_the_subnet() {
        assert_eq!(slot_address(1).as_deref(), Some("172.31.0.4"));
        assert_eq!(
            slot_address(SUBNET_ADDRESSES).as_deref(),
            Some("172.31.15.254")
        );
        assert_eq!(slot_address(SUBNET_ADDRESSES + 1), None);
        let check = |ip| crate::network::check_requested_address(ip, "172.31.0.0/20");
        assert!(check("172.31.9.9").is_ok());
        assert!(check("172.31.0.1").is_err());
        assert!(check("10.1.2.3").is_err());
    }
}
