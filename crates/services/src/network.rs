//! The VPCs, subnets and security groups an account creates, stored like
//! every other entity, beside the default network every account has
//! (vpc.rs, derived and never stored, so old data dirs keep working).
//! Listings merge both: the default VPC, its subnets and group come
//! first, then the stored ones. An instance keeps the facts of where it
//! launched ([`InstanceNetwork`]): AWS never moves an instance between
//! subnets, and group names never change.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::ec2::{hex_id, validate_tags};
use crate::error::{Result, ServiceError};
use crate::model::{Change, Entity, Tag};
use crate::state::State;
use crate::tags::derived_tags;
use crate::vpc::{DEFAULT_GROUP, DEFAULT_GROUP_DESCRIPTION, DefaultNetwork, VPC_CIDR};
use crate::{Keycard, vpc};

/// An IPv4 block, `base/prefix`, with `base` aligned to the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub base: u32,
    pub prefix: u8,
}

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

impl Cidr {
    /// `10.0.0.0/16`; `None` unless it is a well-formed, aligned block.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (ip, len) = s.split_once('/')?;
        let base = u32::from(ip.parse::<Ipv4Addr>().ok()?);
        let prefix = len.parse::<u8>().ok().filter(|p| *p <= 32)?;
        (base & mask(prefix) == base).then_some(Cidr { base, prefix })
    }

    pub fn last(&self) -> u32 {
        self.base | !mask(self.prefix)
    }

    pub fn has(&self, ip: u32) -> bool {
        ip & mask(self.prefix) == self.base
    }

    pub fn contains(&self, other: &Cidr) -> bool {
        other.prefix >= self.prefix && self.has(other.base)
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other) || other.contains(self)
    }

    /// The addresses instances may get: AWS reserves the first four and
    /// the last of every subnet.
    pub fn hosts(&self) -> std::ops::RangeInclusive<u32> {
        self.base.saturating_add(4)..=self.last().saturating_sub(1)
    }

    /// How many addresses [`Cidr::hosts`] holds.
    pub fn host_count(&self) -> u32 {
        (self.last() - self.base).saturating_sub(4)
    }
}

/// A VPC: the default one (derived) or one CreateVpc made (stored).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Vpc {
    pub id: String,
    pub account: String,
    pub region: String,
    pub cidr: String,
    pub cidr_association: String,
    pub dhcp_options_id: String,
    /// Its `default` security group.
    pub security_group_id: String,
    /// Its default network ACL.
    pub network_acl_id: String,
    /// Its main route table and that table's main association.
    pub route_table_id: String,
    pub main_association: String,
    /// Only the default VPC comes with an attached internet gateway.
    #[serde(default)]
    pub internet_gateway_id: Option<String>,
    #[serde(default)]
    pub is_default: bool,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

impl Vpc {
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:ec2:{}:{}:vpc/{}",
            self.region, self.account, self.id
        )
    }
}

/// A subnet of a VPC.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Subnet {
    pub id: String,
    pub account: String,
    pub region: String,
    pub vpc_id: String,
    pub cidr: String,
    pub zone: String,
    pub zone_id: String,
    /// `aclassoc-…`: its association with the VPC's default network ACL.
    pub acl_association: String,
    /// The default VPC's subnets; they also map public IPs on launch.
    #[serde(default)]
    pub default_for_az: bool,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

impl Subnet {
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:ec2:{}:{}:subnet/{}",
            self.region, self.account, self.id
        )
    }

    pub fn block(&self) -> Option<Cidr> {
        Cidr::parse(&self.cidr)
    }
}

/// A security group. Each VPC has one named `default`, which cannot be
/// deleted; no other group may take that name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SecurityGroup {
    pub id: String,
    pub account: String,
    pub region: String,
    pub vpc_id: String,
    pub name: String,
    pub description: String,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

impl SecurityGroup {
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:ec2:{}:{}:security-group/{}",
            self.region, self.account, self.id
        )
    }

    pub fn is_default(&self) -> bool {
        self.name == DEFAULT_GROUP
    }
}

/// A security group as an instance or interface names it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GroupRef {
    pub id: String,
    pub name: String,
}

/// Where an instance launched: kept on the instance record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InstanceNetwork {
    pub vpc_id: String,
    pub vpc_cidr: String,
    pub subnet_id: String,
    pub subnet_cidr: String,
    pub zone: String,
    pub zone_id: String,
    pub groups: Vec<GroupRef>,
}

impl DefaultNetwork {
    /// The default VPC as a [`Vpc`].
    pub fn vpc(&self) -> Vpc {
        Vpc {
            id: self.vpc_id.clone(),
            account: self.account.clone(),
            region: self.region.clone(),
            cidr: VPC_CIDR.into(),
            cidr_association: self.cidr_association.clone(),
            dhcp_options_id: self.dhcp_options_id.clone(),
            security_group_id: self.security_group_id.clone(),
            network_acl_id: self.network_acl_id.clone(),
            route_table_id: self.route_table_id.clone(),
            main_association: self.main_association.clone(),
            internet_gateway_id: Some(self.internet_gateway_id.clone()),
            is_default: true,
            tags: Vec::new(),
        }
    }

    /// The default subnets as [`Subnet`]s, in zone order.
    pub fn subnet_records(&self) -> Vec<Subnet> {
        self.subnets
            .iter()
            .map(|s| Subnet {
                id: s.id.clone(),
                account: self.account.clone(),
                region: self.region.clone(),
                vpc_id: self.vpc_id.clone(),
                cidr: s.cidr.into(),
                zone: s.zone.clone(),
                zone_id: s.zone_id.clone(),
                acl_association: s.acl_association.clone(),
                default_for_az: true,
                tags: Vec::new(),
            })
            .collect()
    }

    /// The default VPC's `default` group.
    pub fn group(&self) -> SecurityGroup {
        SecurityGroup {
            id: self.security_group_id.clone(),
            account: self.account.clone(),
            region: self.region.clone(),
            vpc_id: self.vpc_id.clone(),
            name: DEFAULT_GROUP.into(),
            description: DEFAULT_GROUP_DESCRIPTION.into(),
            tags: Vec::new(),
        }
    }

    /// Where an instance launched without a subnet or group goes.
    pub fn instance_network(&self) -> Option<InstanceNetwork> {
        let s = self.instance_subnet()?;
        Some(InstanceNetwork {
            vpc_id: self.vpc_id.clone(),
            vpc_cidr: VPC_CIDR.into(),
            subnet_id: s.id.clone(),
            subnet_cidr: s.cidr.into(),
            zone: s.zone.clone(),
            zone_id: s.zone_id.clone(),
            groups: vec![GroupRef {
                id: self.security_group_id.clone(),
                name: DEFAULT_GROUP.into(),
            }],
        })
    }
}

fn mine(account: &str, region: &str, a: &str, r: &str) -> bool {
    a == account && r == region
}

/// The account's VPCs in a region: the default one first.
pub fn vpcs(st: &State, account: &str, region: &str) -> Vec<Vpc> {
    let mut d = DefaultNetwork::new(account, region).vpc();
    d.tags = derived_tags(st, &d.id);
    let mut out = vec![d];
    out.extend(
        st.vpcs
            .values()
            .filter(|v| mine(account, region, &v.account, &v.region))
            .cloned(),
    );
    out
}

/// The account's subnets in a region: the default ones first.
pub fn subnets(st: &State, account: &str, region: &str) -> Vec<Subnet> {
    let mut out = DefaultNetwork::new(account, region).subnet_records();
    for s in &mut out {
        s.tags = derived_tags(st, &s.id);
    }
    out.extend(
        st.subnets
            .values()
            .filter(|s| mine(account, region, &s.account, &s.region))
            .cloned(),
    );
    out
}

/// The account's security groups in a region: the default VPC's first.
pub fn security_groups(st: &State, account: &str, region: &str) -> Vec<SecurityGroup> {
    let mut d = DefaultNetwork::new(account, region).group();
    d.tags = derived_tags(st, &d.id);
    let mut out = vec![d];
    out.extend(
        st.security_groups
            .values()
            .filter(|g| mine(account, region, &g.account, &g.region))
            .cloned(),
    );
    out
}

fn check_id(id: &str, prefix: &str, malformed: fn(String) -> ServiceError) -> Result<()> {
    let ok = id.strip_prefix(prefix).is_some_and(|h| {
        (h.len() == 8 || h.len() == 17) && h.bytes().all(|c| c.is_ascii_hexdigit())
    });
    if ok {
        Ok(())
    } else {
        Err(malformed(format!(
            "Invalid id: \"{id}\" (expecting \"{prefix}...\")"
        )))
    }
}

/// One VPC of the account by id.
pub fn find_vpc(st: &State, account: &str, region: &str, id: &str) -> Result<Vpc> {
    check_id(id, "vpc-", ServiceError::InvalidVpcIdMalformed)?;
    vpcs(st, account, region)
        .into_iter()
        .find(|v| v.id == id)
        .ok_or_else(|| {
            ServiceError::InvalidVpcIdNotFound(format!("The vpc ID '{id}' does not exist"))
        })
}

/// One subnet of the account by id.
pub fn find_subnet(st: &State, account: &str, region: &str, id: &str) -> Result<Subnet> {
    check_id(id, "subnet-", ServiceError::InvalidSubnetIdMalformed)?;
    subnets(st, account, region)
        .into_iter()
        .find(|s| s.id == id)
        .ok_or_else(|| {
            ServiceError::InvalidSubnetIdNotFound(format!("The subnet ID '{id}' does not exist"))
        })
}

/// One security group of the account by id.
pub fn find_group(st: &State, account: &str, region: &str, id: &str) -> Result<SecurityGroup> {
    check_id(id, "sg-", ServiceError::InvalidGroupIdMalformed)?;
    security_groups(st, account, region)
        .into_iter()
        .find(|g| g.id == id)
        .ok_or_else(|| {
            ServiceError::InvalidGroupNotFound(format!("The security group '{id}' does not exist"))
        })
}

/// A group by name in one VPC (names are unique per VPC).
fn group_named(st: &State, vpc: &Vpc, name: &str) -> Result<SecurityGroup> {
    security_groups(st, &vpc.account, &vpc.region)
        .into_iter()
        .find(|g| g.vpc_id == vpc.id && g.name == name)
        .ok_or_else(|| {
            let which = if vpc.is_default { "default VPC" } else { "VPC" };
            ServiceError::InvalidGroupNotFound(format!(
                "The security group '{name}' does not exist in {which} '{}'",
                vpc.id
            ))
        })
}

fn bad_block(cidr: &str) -> ServiceError {
    ServiceError::InvalidParameterValue(format!(
        "Value ({cidr}) for parameter cidrBlock is invalid. This is not a valid CIDR block."
    ))
}

/// A VPC block: well formed, /16 to /28, as AWS allows.
pub fn check_vpc_block(cidr: &str) -> Result<Cidr> {
    let c = Cidr::parse(cidr).ok_or_else(|| bad_block(cidr))?;
    if !(16..=28).contains(&c.prefix) {
        return Err(ServiceError::InvalidVpcRange(format!(
            "The CIDR '{cidr}' is invalid."
        )));
    }
    Ok(c)
}

/// A subnet block: /16 to /28, inside its VPC's, overlapping none of
/// the VPC's other subnets.
pub fn check_subnet_block(cidr: &str, vpc: &Vpc, siblings: &[Subnet]) -> Result<Cidr> {
    let c = Cidr::parse(cidr).ok_or_else(|| bad_block(cidr))?;
    let inside = Cidr::parse(&vpc.cidr).is_some_and(|v| v.contains(&c));
    if !(16..=28).contains(&c.prefix) || !inside {
        return Err(ServiceError::InvalidSubnetRange(format!(
            "The CIDR '{cidr}' is invalid."
        )));
    }
    let clash = siblings
        .iter()
        .filter(|s| s.vpc_id == vpc.id)
        .any(|s| s.block().is_some_and(|b| b.overlaps(&c)));
    if clash {
        return Err(ServiceError::InvalidSubnetConflict(format!(
            "The CIDR '{cidr}' conflicts with another subnet"
        )));
    }
    Ok(c)
}

/// Whether a requested private address may be used in a subnet: inside
/// it and not one of AWS's five reserved addresses.
pub fn check_requested_address(ip: &str, subnet_cidr: &str) -> Result<()> {
    let n = ip
        .parse::<Ipv4Addr>()
        .map(u32::from)
        .map_err(|_| ServiceError::InvalidParameterValue(format!("Invalid value '{ip}'")))?;
    let c = Cidr::parse(subnet_cidr).ok_or_else(|| bad_block(subnet_cidr))?;
    if !c.has(n) {
        return Err(ServiceError::InvalidParameterValue(format!(
            "Address {ip} does not fall within the subnet's address range"
        )));
    }
    if !c.hosts().contains(&n) {
        return Err(ServiceError::InvalidParameterValue(format!(
            "Address {ip} is in subnet's reserved address range"
        )));
    }
    Ok(())
}

/// The first address of the subnet not in `used`.
pub fn free_address_in(subnet_cidr: &str, used: &BTreeSet<String>) -> Option<String> {
    Cidr::parse(subnet_cidr)?
        .hosts()
        .map(|n| Ipv4Addr::from(n).to_string())
        .find(|a| !used.contains(a))
}

/// The zones subnets may be created in: the ones DescribeAvailabilityZones
/// lists (those of the default subnets).
fn resolve_zone(
    region: &str,
    zone: Option<&str>,
    zone_id: Option<&str>,
) -> Result<(String, String)> {
    let zones: Vec<(String, String)> = DefaultNetwork::new("", region)
        .subnets
        .iter()
        .map(|s| (s.zone.clone(), s.zone_id.clone()))
        .collect();
    let names = || {
        zones
            .iter()
            .map(|(z, _)| z.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let found = match (zone, zone_id) {
        (Some(_), Some(_)) => {
            return Err(ServiceError::InvalidParameterCombination(
                "The parameters AvailabilityZone and AvailabilityZoneId cannot be used together"
                    .into(),
            ));
        }
        (Some(z), None) => zones.iter().find(|(n, _)| n == z).ok_or_else(|| {
            ServiceError::InvalidParameterValue(format!(
                "Value ({z}) for parameter availabilityZone is invalid. Subnets can currently only be created in the following availability zones: {}.",
                names()
            ))
        })?,
        (None, Some(z)) => zones.iter().find(|(_, i)| i == z).ok_or_else(|| {
            ServiceError::InvalidParameterValue(format!(
                "Value ({z}) for parameter availabilityZoneId is invalid."
            ))
        })?,
        (None, None) => zones.first().ok_or_else(|| {
            ServiceError::Internal("the region has no availability zone".into())
        })?,
    };
    Ok(found.clone())
}

/// CreateSubnet's input.
#[derive(Debug, Clone, Default)]
pub struct SubnetInput {
    pub vpc_id: String,
    pub cidr: String,
    pub zone: Option<String>,
    pub zone_id: Option<String>,
    pub tags: Vec<Tag>,
}

/// CreateSecurityGroup's input.
#[derive(Debug, Clone, Default)]
pub struct GroupInput {
    pub name: String,
    pub description: String,
    /// `None`: the default VPC.
    pub vpc_id: Option<String>,
    pub tags: Vec<Tag>,
}

/// A security group a request names: by id, or by name in the default VPC.
#[derive(Debug, Clone)]
pub enum GroupSel {
    Id(String),
    Name(String),
}

fn check_group_input(g: &GroupInput) -> Result<()> {
    if g.name.is_empty() {
        return Err(ServiceError::MissingParameter(
            "The request must contain the parameter groupName".into(),
        ));
    }
    if g.description.is_empty() {
        return Err(ServiceError::MissingParameter(
            "The request must contain the parameter groupDescription".into(),
        ));
    }
    if g.name.chars().count() > 255 || g.description.chars().count() > 255 {
        return Err(ServiceError::InvalidParameterValue(
            "Group name and description are limited to 255 characters".into(),
        ));
    }
    if g.name.to_ascii_lowercase().starts_with("sg-") {
        return Err(ServiceError::InvalidParameterValue(
            "Group names may not be in the format sg-*".into(),
        ));
    }
    if g.name == DEFAULT_GROUP {
        return Err(ServiceError::InvalidGroupReserved(
            "The security group 'default' is reserved".into(),
        ));
    }
    validate_tags(&g.tags)
}

fn dependency(kind: &str, id: &str) -> ServiceError {
    ServiceError::DependencyViolation(format!(
        "The {kind} '{id}' has dependencies and cannot be deleted."
    ))
}

/// Where an instance goes, resolved from RunInstances' network fields.
#[derive(Debug, Clone)]
pub struct Placement {
    pub vpc: Vpc,
    pub subnet: Subnet,
    pub groups: Vec<SecurityGroup>,
}

impl Placement {
    pub fn network(&self) -> InstanceNetwork {
        InstanceNetwork {
            vpc_id: self.vpc.id.clone(),
            vpc_cidr: self.vpc.cidr.clone(),
            subnet_id: self.subnet.id.clone(),
            subnet_cidr: self.subnet.cidr.clone(),
            zone: self.subnet.zone.clone(),
            zone_id: self.subnet.zone_id.clone(),
            groups: self
                .groups
                .iter()
                .map(|g| GroupRef {
                    id: g.id.clone(),
                    name: g.name.clone(),
                })
                .collect(),
        }
    }
}

/// RunInstances' network fields.
#[derive(Debug, Clone, Default)]
pub struct LaunchNetwork {
    pub subnet_id: Option<String>,
    pub group_ids: Vec<String>,
    pub group_names: Vec<String>,
}

/// The subnet (default: the default VPC's first) and groups (default:
/// the VPC's `default`) an instance launches with. Groups must be in the
/// subnet's VPC; names are looked up in the default VPC only, as on AWS.
pub fn place(st: &State, account: &str, region: &str, n: &LaunchNetwork) -> Result<Placement> {
    let subnet = match &n.subnet_id {
        Some(id) => find_subnet(st, account, region, id)?,
        None => DefaultNetwork::new(account, region)
            .subnet_records()
            .into_iter()
            .next()
            .ok_or_else(|| ServiceError::Internal("no default subnet".into()))?,
    };
    let vpc = find_vpc(st, account, region, &subnet.vpc_id)?;
    let mut groups: Vec<SecurityGroup> = Vec::new();
    for id in &n.group_ids {
        let g = find_group(st, account, region, id)?;
        if g.vpc_id != vpc.id {
            return Err(ServiceError::InvalidParameter(format!(
                "Security group {} and subnet {} belong to different networks.",
                g.id, subnet.id
            )));
        }
        groups.push(g);
    }
    if !n.group_names.is_empty() && !vpc.is_default {
        return Err(ServiceError::InvalidParameterCombination(
            "The parameter groupName cannot be used with the parameter subnet".into(),
        ));
    }
    for name in &n.group_names {
        groups.push(group_named(st, &vpc, name)?);
    }
    if groups.is_empty() {
        groups.push(group_named(st, &vpc, DEFAULT_GROUP)?);
    }
    let mut seen = BTreeSet::new();
    groups.retain(|g| seen.insert(g.id.clone()));
    Ok(Placement {
        vpc,
        subnet,
        groups,
    })
}

impl Keycard {
    /// The account's VPCs in `region`, the default one first.
    pub fn vpcs(&self, account: &str, region: &str) -> Vec<Vpc> {
        vpcs(&self.state(), account, region)
    }

    /// The account's subnets in `region`, the default ones first.
    pub fn subnets(&self, account: &str, region: &str) -> Vec<Subnet> {
        subnets(&self.state(), account, region)
    }

    /// The account's security groups in `region`, the default one first.
    pub fn security_groups(&self, account: &str, region: &str) -> Vec<SecurityGroup> {
        security_groups(&self.state(), account, region)
    }

    /// Addresses left in a subnet for new instances.
    pub fn free_addresses_in(&self, s: &Subnet) -> u32 {
        let st = self.state();
        let used = vpc::network_interfaces(&st, &s.account, &s.region)
            .into_iter()
            .filter(|e| e.subnet_id == s.id)
            .count();
        let total = s.block().map_or(0, |c| c.host_count());
        total.saturating_sub(u32::try_from(used).unwrap_or(u32::MAX))
    }

    /// A security group a request names, for authorization before a change.
    pub fn find_group(&self, account: &str, region: &str, sel: &GroupSel) -> Result<SecurityGroup> {
        let st = self.state();
        select_group(&st, account, region, sel)
    }

    /// CreateVpc: the VPC with its default security group, main route
    /// table and default network ACL, in one write.
    pub async fn create_vpc(
        &self,
        account: &str,
        region: &str,
        cidr: &str,
        tags: Vec<Tag>,
    ) -> Result<Vpc> {
        check_vpc_block(cidr)?;
        validate_tags(&tags)?;
        let dhcp = DefaultNetwork::new(account, region).dhcp_options_id;
        let v = Vpc {
            id: hex_id("vpc-"),
            account: account.into(),
            region: region.into(),
            cidr: cidr.into(),
            cidr_association: hex_id("vpc-cidr-assoc-"),
            dhcp_options_id: dhcp,
            security_group_id: hex_id("sg-"),
            network_acl_id: hex_id("acl-"),
            route_table_id: hex_id("rtb-"),
            main_association: hex_id("rtbassoc-"),
            internet_gateway_id: None,
            is_default: false,
            tags,
        };
        let g = SecurityGroup {
            id: v.security_group_id.clone(),
            account: account.into(),
            region: region.into(),
            vpc_id: v.id.clone(),
            name: DEFAULT_GROUP.into(),
            description: DEFAULT_GROUP_DESCRIPTION.into(),
            tags: Vec::new(),
        };
        let out = v.clone();
        self.mutate(move |_| {
            Ok((
                vec![
                    Change::Put(Entity::Vpc(v.clone())),
                    Change::Put(Entity::SecurityGroup(g.clone())),
                ],
                out.clone(),
            ))
        })
        .await
    }

    /// The VPC DeleteVpc would delete, checked (for authorization first).
    pub fn find_vpc(&self, account: &str, region: &str, id: &str) -> Result<Vpc> {
        find_vpc(&self.state(), account, region, id)
    }

    /// DeleteVpc: refused while it has subnets or groups other than its
    /// `default` (the default VPC always has its default subnets).
    pub async fn delete_vpc(&self, account: &str, region: &str, id: &str) -> Result<()> {
        self.mutate(|st| {
            let v = find_vpc(st, account, region, id)?;
            let busy = v.is_default
                || subnets(st, account, region)
                    .iter()
                    .any(|s| s.vpc_id == v.id)
                || security_groups(st, account, region)
                    .iter()
                    .any(|g| g.vpc_id == v.id && !g.is_default());
            if busy {
                return Err(dependency("vpc", id));
            }
            Ok((
                vec![
                    Change::Delete("vpc", v.id.clone()),
                    Change::Delete("security_group", v.security_group_id.clone()),
                ],
                (),
            ))
        })
        .await
    }

    /// The subnet DeleteSubnet would delete, checked.
    pub fn find_subnet(&self, account: &str, region: &str, id: &str) -> Result<Subnet> {
        find_subnet(&self.state(), account, region, id)
    }

    /// CreateSubnet.
    pub async fn create_subnet(
        &self,
        account: &str,
        region: &str,
        input: SubnetInput,
    ) -> Result<Subnet> {
        validate_tags(&input.tags)?;
        let (zone, zone_id) =
            resolve_zone(region, input.zone.as_deref(), input.zone_id.as_deref())?;
        self.mutate(|st| {
            let v = find_vpc(st, account, region, &input.vpc_id)?;
            check_subnet_block(&input.cidr, &v, &subnets(st, account, region))?;
            let s = Subnet {
                id: hex_id("subnet-"),
                account: account.into(),
                region: region.into(),
                vpc_id: v.id,
                cidr: input.cidr.clone(),
                zone: zone.clone(),
                zone_id: zone_id.clone(),
                acl_association: hex_id("aclassoc-"),
                default_for_az: false,
                tags: input.tags.clone(),
            };
            Ok((vec![Change::Put(Entity::Subnet(s.clone()))], s))
        })
        .await
    }

    /// DeleteSubnet: refused while a live instance is in it. keycard
    /// keeps the default subnets.
    pub async fn delete_subnet(&self, account: &str, region: &str, id: &str) -> Result<()> {
        self.mutate(|st| {
            let s = find_subnet(st, account, region, id)?;
            if s.default_for_az {
                return Err(ServiceError::UnsupportedOperation(format!(
                    "The default subnet '{id}' cannot be deleted in keycard."
                )));
            }
            if vpc::network_interfaces(st, account, region)
                .into_iter()
                .any(|e| e.subnet_id == s.id)
            {
                return Err(dependency("subnet", id));
            }
            Ok((vec![Change::Delete("subnet", s.id)], ()))
        })
        .await
    }

    /// CreateSecurityGroup (in the default VPC unless one is named).
    pub async fn create_security_group(
        &self,
        account: &str,
        region: &str,
        input: GroupInput,
    ) -> Result<SecurityGroup> {
        check_group_input(&input)?;
        self.mutate(|st| {
            let v = match &input.vpc_id {
                Some(id) => find_vpc(st, account, region, id)?,
                None => DefaultNetwork::new(account, region).vpc(),
            };
            if group_named(st, &v, &input.name).is_ok() {
                return Err(ServiceError::InvalidGroupDuplicate(format!(
                    "The security group '{}' already exists for VPC '{}'",
                    input.name, v.id
                )));
            }
            let g = SecurityGroup {
                id: hex_id("sg-"),
                account: account.into(),
                region: region.into(),
                vpc_id: v.id,
                name: input.name.clone(),
                description: input.description.clone(),
                tags: input.tags.clone(),
            };
            Ok((vec![Change::Put(Entity::SecurityGroup(g.clone()))], g))
        })
        .await
    }

    /// DeleteSecurityGroup: a VPC's `default` cannot be deleted, nor a
    /// group a live instance uses.
    pub async fn delete_security_group(
        &self,
        account: &str,
        region: &str,
        sel: &GroupSel,
    ) -> Result<String> {
        self.mutate(|st| {
            let g = select_group(st, account, region, sel)?;
            if g.is_default() {
                return Err(ServiceError::CannotDelete(format!(
                    "the specified group: \"{}\" name: \"{}\" cannot be deleted by a user",
                    g.id, g.name
                )));
            }
            let used = vpc::network_interfaces(st, account, region)
                .into_iter()
                .any(|e| e.groups.iter().any(|r| r.id == g.id));
            if used {
                return Err(ServiceError::DependencyViolation(format!(
                    "resource {} has a dependent object",
                    g.id
                )));
            }
            Ok((vec![Change::Delete("security_group", g.id.clone())], g.id))
        })
        .await
    }
}

fn select_group(st: &State, account: &str, region: &str, sel: &GroupSel) -> Result<SecurityGroup> {
    match sel {
        GroupSel::Id(id) => find_group(st, account, region, id),
        GroupSel::Name(n) => group_named(st, &DefaultNetwork::new(account, region).vpc(), n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vpc_of(cidr: &str) -> Vpc {
        let mut v = DefaultNetwork::new("111111111111", "us-east-1").vpc();
        v.id = "vpc-00000000000000001".into();
        v.cidr = cidr.into();
        v.is_default = false;
        v
    }

    fn subnet_of(v: &Vpc, cidr: &str) -> Subnet {
        Subnet {
            id: "subnet-00000000000000001".into(),
            account: v.account.clone(),
            region: v.region.clone(),
            vpc_id: v.id.clone(),
            cidr: cidr.into(),
            zone: "us-east-1a".into(),
            zone_id: "use1-az1".into(),
            acl_association: "aclassoc-1".into(),
            default_for_az: false,
            tags: Vec::new(),
        }
    }

    fn code<T: std::fmt::Debug>(r: Result<T>) -> &'static str {
        r.map_err(|e| e.code()).err().unwrap_or("ok")
    }

    #[test]
    fn cidr_blocks() {
        let c = Cidr::parse("10.0.0.0/16").expect("parse");
        assert_eq!(c.last(), u32::from(Ipv4Addr::new(10, 0, 255, 255)));
        assert!(Cidr::parse("10.0.0.1/16").is_none());
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("nope").is_none());
        assert_eq!(Cidr::parse("0.0.0.0/0").map(|c| c.last()), Some(u32::MAX));
        let small = Cidr::parse("10.0.1.0/24").expect("parse");
        assert!(c.contains(&small) && !small.contains(&c) && small.overlaps(&c));
        assert_eq!(small.host_count(), 251);
        assert_eq!(Cidr::parse("10.0.0.0/28").map(|c| c.host_count()), Some(11));
    }

    #[test]
    fn vpc_block_range() {
        assert_eq!(code(check_vpc_block("10.0.0.0/16")), "ok");
        assert_eq!(code(check_vpc_block("10.0.0.0/28")), "ok");
        assert_eq!(code(check_vpc_block("10.0.0.0/8")), "InvalidVpc.Range");
        assert_eq!(code(check_vpc_block("10.0.0.0/29")), "InvalidVpc.Range");
        assert_eq!(
            code(check_vpc_block("10.0.0.1/16")),
            "InvalidParameterValue"
        );
    }

    #[test]
    fn subnet_block_inside_and_apart() {
        let v = vpc_of("10.0.0.0/16");
        let taken = [subnet_of(&v, "10.0.1.0/24")];
        assert_eq!(code(check_subnet_block("10.0.2.0/24", &v, &taken)), "ok");
        assert_eq!(
            code(check_subnet_block("10.1.0.0/24", &v, &taken)),
            "InvalidSubnet.Range"
        );
        assert_eq!(
            code(check_subnet_block("10.0.0.0/29", &v, &taken)),
            "InvalidSubnet.Range"
        );
        assert_eq!(
            code(check_subnet_block("10.0.0.0/23", &v, &taken)),
            "InvalidSubnet.Conflict"
        );
        assert_eq!(
            code(check_subnet_block("10.0.1.128/25", &v, &taken)),
            "InvalidSubnet.Conflict"
        );
        // Another VPC's subnet does not conflict.
        let other = vpc_of("10.0.0.0/16");
        let mut elsewhere = subnet_of(&other, "10.0.2.0/24");
        elsewhere.vpc_id = "vpc-00000000000000002".into();
        assert_eq!(
            code(check_subnet_block("10.0.2.0/24", &v, &[elsewhere])),
            "ok"
        );
    }

    #[test]
    fn addresses_in_a_subnet() {
        assert_eq!(
            code(check_requested_address("10.0.1.4", "10.0.1.0/24")),
            "ok"
        );
        assert_eq!(
            code(check_requested_address("10.0.1.254", "10.0.1.0/24")),
            "ok"
        );
        for reserved in ["10.0.1.0", "10.0.1.3", "10.0.1.255"] {
            assert_eq!(
                code(check_requested_address(reserved, "10.0.1.0/24")),
                "InvalidParameterValue"
            );
        }
        assert_eq!(
            code(check_requested_address("10.0.2.9", "10.0.1.0/24")),
            "InvalidParameterValue"
        );
        let mut used = BTreeSet::new();
        assert_eq!(
            free_address_in("10.0.1.0/28", &used).as_deref(),
            Some("10.0.1.4")
        );
        for n in 4..=14 {
            used.insert(format!("10.0.1.{n}"));
        }
        assert_eq!(free_address_in("10.0.1.0/28", &used), None);
    }

    #[test]
    fn zones_and_groups_validate() {
        assert_eq!(
            resolve_zone("us-east-1", Some("us-east-1b"), None)
                .map(|z| z.1)
                .ok(),
            Some("use1-az2".into())
        );
        assert_eq!(
            resolve_zone("us-east-1", None, Some("use1-az3"))
                .map(|z| z.0)
                .ok(),
            Some("us-east-1c".into())
        );
        assert_eq!(
            code(resolve_zone("us-east-1", Some("us-east-1z"), None)),
            "InvalidParameterValue"
        );
        let g = |name: &str, description: &str| GroupInput {
            name: name.into(),
            description: description.into(),
            ..Default::default()
        };
        assert_eq!(code(check_group_input(&g("web", "d"))), "ok");
        assert_eq!(
            code(check_group_input(&g("default", "d"))),
            "InvalidGroup.Reserved"
        );
        assert_eq!(
            code(check_group_input(&g("sg-1", "d"))),
            "InvalidParameterValue"
        );
        assert_eq!(code(check_group_input(&g("", "d"))), "MissingParameter");
        assert_eq!(code(check_group_input(&g("web", ""))), "MissingParameter");
    }
}
