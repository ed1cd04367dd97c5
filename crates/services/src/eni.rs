//! Network interfaces an account creates (CreateNetworkInterface), kept
//! beside the primary interface every instance has (vpc.rs: derived from
//! the instance, never stored). A created interface is `available` until
//! AttachNetworkInterface puts it on an instance at a device index; it
//! then shows `in-use` until detached. Terminating the instance deletes
//! the interfaces attached with DeleteOnTermination (false for ones
//! attached later, as on AWS) and leaves the others available. A primary
//! interface cannot be detached or deleted on its own; its attributes
//! are the instance's (instance_attrs.rs), so ModifyNetworkInterfaceAttribute
//! changes the instance record.

use std::collections::BTreeSet;

use crate::ec2::{Instance, hex_id, lookup_one, private_dns_name, validate_tags};
use crate::error::{Result, ServiceError};
use crate::model::{Change, Entity, Tag};
use crate::network::{self, GroupRef, SecurityGroup, Subnet};
use crate::state::State;
use crate::volume::ec2_error;
use crate::vpc::{self, EniAttachment, NetworkInterface};
use crate::{Keycard, now};

/// Longest description AWS takes.
const MAX_DESCRIPTION: usize = 255;

/// `eni-` plus 8 or 17 hex digits.
pub fn valid_eni_id(id: &str) -> bool {
    id.strip_prefix("eni-").is_some_and(|h| {
        (h.len() == 8 || h.len() == 17) && h.bytes().all(|c| c.is_ascii_hexdigit())
    })
}

fn not_found(id: &str) -> ServiceError {
    ServiceError::InvalidNetworkInterfaceIdNotFound(format!(
        "The networkInterface ID '{id}' does not exist"
    ))
}

/// One interface of the account in `region` (primary or created), with
/// its tags: malformed, then unknown, as EC2 says.
pub fn find_interface(
    st: &State,
    account: &str,
    region: &str,
    id: &str,
) -> Result<NetworkInterface> {
    if !valid_eni_id(id) {
        return Err(ec2_error(
            "InvalidNetworkInterfaceID.Malformed",
            format!("Invalid id: \"{id}\" (expecting \"eni-...\")"),
        ));
    }
    vpc::network_interfaces(st, account, region)
        .into_iter()
        .find(|e| e.id == id)
        .ok_or_else(|| not_found(id))
}

fn attachment_not_found(id: &str) -> ServiceError {
    ec2_error(
        "InvalidAttachmentID.NotFound",
        format!("The interface attachment '{id}' does not exist."),
    )
}

/// The interface an attachment id names.
pub fn find_attachment(
    st: &State,
    account: &str,
    region: &str,
    attachment_id: &str,
) -> Result<NetworkInterface> {
    vpc::network_interfaces(st, account, region)
        .into_iter()
        .find(|e| e.attachment.as_ref().is_some_and(|a| a.id == attachment_id))
        .ok_or_else(|| attachment_not_found(attachment_id))
}

/// Private addresses held by created interfaces.
pub(crate) fn interface_addresses(st: &State) -> impl Iterator<Item = &String> {
    st.network_interfaces.values().map(|e| &e.private_ip)
}

/// Created interfaces attached to an instance.
pub(crate) fn attached_to<'a>(
    st: &'a State,
    instance_id: &'a str,
) -> impl Iterator<Item = &'a NetworkInterface> {
    st.network_interfaces.values().filter(move |e| {
        e.attachment
            .as_ref()
            .is_some_and(|a| a.instance_id == instance_id)
    })
}

/// CreateNetworkInterface's input.
#[derive(Debug, Clone, Default)]
pub struct CreateEniInput {
    pub subnet_id: String,
    pub description: Option<String>,
    pub group_ids: Vec<String>,
    pub private_ip: Option<String>,
    pub tags: Vec<Tag>,
}

/// Where a new interface goes: its subnet (and VPC) and groups.
#[derive(Debug, Clone)]
pub struct EniPlacement {
    pub subnet: Subnet,
    pub vpc: network::Vpc,
    pub groups: Vec<SecurityGroup>,
}

fn check_description(d: &str) -> Result<()> {
    if d.chars().count() > MAX_DESCRIPTION {
        return Err(ServiceError::InvalidParameterValue(format!(
            "Value for parameter description is invalid. The description must be at most {MAX_DESCRIPTION} characters."
        )));
    }
    Ok(())
}

/// Groups by id, each in `vpc_id` (the subnet's network).
fn groups_in(
    st: &State,
    account: &str,
    region: &str,
    ids: &[String],
    vpc_id: &str,
    subnet_id: &str,
) -> Result<Vec<SecurityGroup>> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for id in ids {
        let g = network::find_group(st, account, region, id)?;
        if g.vpc_id != vpc_id {
            return Err(ServiceError::InvalidParameter(format!(
                "Security group {} and subnet {subnet_id} belong to different networks.",
                g.id
            )));
        }
        if seen.insert(g.id.clone()) {
            out.push(g);
        }
    }
    Ok(out)
}

fn refs(groups: &[SecurityGroup]) -> Vec<GroupRef> {
    groups
        .iter()
        .map(|g| GroupRef {
            id: g.id.clone(),
            name: g.name.clone(),
        })
        .collect()
}

/// Check a CreateNetworkInterface request: the subnet, its groups (the
/// VPC's `default` when none), the description, tags and address.
pub fn place(
    st: &State,
    account: &str,
    region: &str,
    input: &CreateEniInput,
) -> Result<EniPlacement> {
    let subnet = network::find_subnet(st, account, region, &input.subnet_id)?;
    let vpc = network::find_vpc(st, account, region, &subnet.vpc_id)?;
    let mut groups = groups_in(st, account, region, &input.group_ids, &vpc.id, &subnet.id)?;
    if groups.is_empty() {
        groups.push(network::find_group(
            st,
            account,
            region,
            &vpc.security_group_id,
        )?);
    }
    if let Some(d) = &input.description {
        check_description(d)?;
    }
    validate_tags(&input.tags)?;
    if let Some(ip) = &input.private_ip {
        network::check_requested_address(ip, &subnet.cidr)?;
        if crate::ec2::live_addresses(st).contains(ip) {
            return Err(ServiceError::InvalidIpAddressInUse(format!(
                "Address {ip} is in use."
            )));
        }
    }
    Ok(EniPlacement {
        subnet,
        vpc,
        groups,
    })
}

/// A MAC address for a new interface, from its id's digits.
fn mac_of(id: &str) -> String {
    let hex = id.trim_start_matches("eni-");
    let pairs: Vec<&str> = (0..5)
        .filter_map(|n| hex.get(n * 2 + 1..n * 2 + 3))
        .collect();
    format!("0e:{}", pairs.join(":"))
}

/// The interface a checked request makes: the asked-for address or the
/// subnet's first free one.
fn new_interface(
    st: &State,
    account: &str,
    region: &str,
    input: &CreateEniInput,
    pl: &EniPlacement,
) -> Result<NetworkInterface> {
    let ip = match &input.private_ip {
        Some(ip) => ip.clone(),
        None => network::free_address_in(&pl.subnet.cidr, &crate::ec2::live_addresses(st))
            .ok_or_else(|| {
                ServiceError::InsufficientFreeAddressesInSubnet(format!(
                    "There are not enough free addresses in subnet '{}' to satisfy the requested number of private IP addresses.",
                    pl.subnet.id
                ))
            })?,
    };
    let id = hex_id("eni-");
    let groups = refs(&pl.groups);
    Ok(NetworkInterface {
        mac: mac_of(&id),
        id,
        account: account.to_string(),
        region: region.to_string(),
        vpc_id: pl.vpc.id.clone(),
        subnet_id: pl.subnet.id.clone(),
        zone: pl.subnet.zone.clone(),
        zone_id: pl.subnet.zone_id.clone(),
        group_id: groups.first().map(|g| g.id.clone()).unwrap_or_default(),
        groups,
        vpc_cidr: pl.vpc.cidr.clone(),
        subnet_cidr: pl.subnet.cidr.clone(),
        private_dns: private_dns_name(region, &ip),
        private_ip: ip,
        description: input.description.clone().unwrap_or_default(),
        tags: input.tags.clone(),
        source_dest_check: true,
        attachment: None,
        primary: false,
    })
}

/// Why an interface may not go on an instance at `device_index`: in use,
/// the instance gone, another zone, the index taken, or the type's limit
/// reached.
fn check_attach(st: &State, e: &NetworkInterface, i: &Instance, device_index: u32) -> Result<()> {
    if e.attachment.is_some() {
        return Err(ec2_error(
            "InvalidNetworkInterface.InUse",
            format!("Interface: [{}] in use.", e.id),
        ));
    }
    let bad_state = || {
        ServiceError::IncorrectInstanceState(format!(
            "The instance '{}' is not in a valid state for this operation.",
            i.id
        ))
    };
    if !matches!(i.state.as_str(), "running" | "stopped") {
        return Err(bad_state());
    }
    let primary = vpc::interface_of(i).ok_or_else(bad_state)?;
    if primary.zone != e.zone {
        return Err(ServiceError::InvalidParameterCombination(
            "You may not attach a network interface to an instance if they are not in the same availability zone".into(),
        ));
    }
    let mut taken: BTreeSet<u32> = attached_to(st, &i.id)
        .filter_map(|x| x.attachment.as_ref().map(|a| a.device_index))
        .collect();
    taken.insert(0);
    if taken.contains(&device_index) {
        return Err(ServiceError::InvalidParameterValue(format!(
            "Instance '{}' already has an interface attached at device index '{device_index}'.",
            i.id
        )));
    }
    let limit = crate::instance_types::CATALOGUE
        .iter()
        .find(|t| t.name == i.instance_type)
        .map(|t| t.max_enis);
    let count = u32::try_from(taken.len())
        .unwrap_or(u32::MAX)
        .saturating_add(1);
    if limit.is_some_and(|l| count > l) {
        return Err(ec2_error(
            "AttachmentLimitExceeded",
            format!(
                "Interface count {count} exceeds the limit for {}",
                i.instance_type
            ),
        ));
    }
    Ok(())
}

/// One ModifyNetworkInterfaceAttribute change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EniChange {
    Description(String),
    SourceDestCheck(bool),
    Groups(Vec<String>),
    /// The attachment named and its new DeleteOnTermination.
    DeleteOnTermination(String, bool),
}

/// A change to a created interface: the record as it becomes.
fn modify_created(st: &State, e: &NetworkInterface, c: &EniChange) -> Result<NetworkInterface> {
    let mut n = e.clone();
    match c {
        EniChange::Description(d) => n.description = d.clone(),
        EniChange::SourceDestCheck(b) => n.source_dest_check = *b,
        EniChange::Groups(ids) => {
            let g = groups_in(st, &e.account, &e.region, ids, &e.vpc_id, &e.subnet_id)?;
            n.groups = refs(&g);
            n.group_id = n.groups.first().map(|g| g.id.clone()).unwrap_or_default();
        }
        EniChange::DeleteOnTermination(id, flag) => match &mut n.attachment {
            Some(a) if a.id == *id => a.delete_on_termination = *flag,
            _ => return Err(attachment_not_found(id)),
        },
    }
    Ok(n)
}

/// A change to a primary interface: the instance record as it becomes.
fn modify_primary(
    st: &State,
    e: &NetworkInterface,
    i: &Instance,
    c: &EniChange,
) -> Result<Instance> {
    let mut n = i.clone();
    match c {
        EniChange::Description(d) => n.attrs.eni_description = d.clone(),
        EniChange::SourceDestCheck(b) => n.attrs.source_dest_check = *b,
        EniChange::Groups(ids) => {
            let g = groups_in(st, &e.account, &e.region, ids, &e.vpc_id, &e.subnet_id)?;
            let mut net = match &i.network {
                Some(x) => x.clone(),
                None => vpc::DefaultNetwork::new(&i.account, &i.region)
                    .instance_network()
                    .ok_or_else(|| ServiceError::Internal("no default subnet".into()))?,
            };
            net.groups = refs(&g);
            n.network = Some(net);
        }
        EniChange::DeleteOnTermination(id, flag) => {
            if e.attachment.as_ref().is_none_or(|a| a.id != *id) {
                return Err(attachment_not_found(id));
            }
            n.attrs.eni_delete_on_termination = *flag;
        }
    }
    Ok(n)
}

/// Check a change on its own.
fn check_change(c: &EniChange) -> Result<()> {
    match c {
        EniChange::Description(d) => check_description(d),
        EniChange::Groups(g) if g.is_empty() => Err(ServiceError::MissingParameter(
            "The request must contain the parameter groupId".into(),
        )),
        _ => Ok(()),
    }
}

/// What terminating an instance does to its interfaces: created ones
/// marked DeleteOnTermination go, the others become available; the
/// primary one goes unless its DeleteOnTermination was turned off, when
/// it stays as an available interface of its own.
pub fn on_terminate(st: &State, i: &Instance) -> Vec<Change> {
    let mut out: Vec<Change> = attached_to(st, &i.id)
        .map(|e| {
            if e.attachment
                .as_ref()
                .is_some_and(|a| a.delete_on_termination)
            {
                Change::Delete("network_interface", e.id.clone())
            } else {
                let mut n = e.clone();
                n.attachment = None;
                Change::Put(Entity::NetworkInterface(n))
            }
        })
        .collect();
    if let Some(mut p) = vpc::interface_of(i)
        && !i.attrs.eni_delete_on_termination
    {
        p.tags = crate::tags::derived_tags(st, &p.id);
        p.attachment = None;
        p.primary = false;
        out.push(Change::Put(Entity::NetworkInterface(p)));
    }
    out
}

impl Keycard {
    /// The created interfaces attached to each of `ids`, by device index.
    pub fn instance_interfaces(&self, ids: &[&str]) -> Vec<(String, Vec<NetworkInterface>)> {
        let st = self.state();
        ids.iter()
            .map(|id| {
                let mut v: Vec<NetworkInterface> = attached_to(&st, id).cloned().collect();
                v.sort_by_key(|e| e.attachment.as_ref().map(|a| a.device_index));
                (id.to_string(), v)
            })
            .collect()
    }

    /// One interface (primary or created), checked.
    pub fn network_interface(
        &self,
        account: &str,
        region: &str,
        id: &str,
    ) -> Result<NetworkInterface> {
        find_interface(&self.state(), account, region, id)
    }

    /// The interface an attachment id names.
    pub fn interface_attachment(
        &self,
        account: &str,
        region: &str,
        attachment_id: &str,
    ) -> Result<NetworkInterface> {
        find_attachment(&self.state(), account, region, attachment_id)
    }

    /// CreateNetworkInterface's checks, for authorization before the write.
    pub fn place_interface(
        &self,
        account: &str,
        region: &str,
        input: &CreateEniInput,
    ) -> Result<EniPlacement> {
        place(&self.state(), account, region, input)
    }

    pub async fn create_network_interface(
        &self,
        account: &str,
        region: &str,
        input: &CreateEniInput,
    ) -> Result<NetworkInterface> {
        self.mutate(|st| {
            let pl = place(st, account, region, input)?;
            let e = new_interface(st, account, region, input, &pl)?;
            Ok((vec![Change::Put(Entity::NetworkInterface(e.clone()))], e))
        })
        .await
    }

    /// AttachNetworkInterface: the interface, attached.
    pub async fn attach_network_interface(
        &self,
        account: &str,
        region: &str,
        eni_id: &str,
        instance_id: &str,
        device_index: u32,
    ) -> Result<NetworkInterface> {
        self.mutate(|st| {
            let e = find_interface(st, account, region, eni_id)?;
            let i = lookup_one(st, account, instance_id)?;
            check_attach(st, &e, i, device_index)?;
            let mut n = e;
            n.attachment = Some(EniAttachment {
                id: hex_id("eni-attach-"),
                instance_id: i.id.clone(),
                device_index,
                attach_time: now(),
                delete_on_termination: false,
            });
            Ok((vec![Change::Put(Entity::NetworkInterface(n.clone()))], n))
        })
        .await
    }

    /// DetachNetworkInterface: a primary interface stays.
    pub async fn detach_network_interface(
        &self,
        account: &str,
        region: &str,
        attachment_id: &str,
    ) -> Result<()> {
        self.mutate(|st| {
            let e = find_attachment(st, account, region, attachment_id)?;
            if e.primary {
                return Err(ec2_error(
                    "OperationNotPermitted",
                    "The network interface at device index 0 and networkCard index 0 cannot be detached.",
                ));
            }
            let mut n = e;
            n.attachment = None;
            Ok((vec![Change::Put(Entity::NetworkInterface(n))], ()))
        })
        .await
    }

    /// DeleteNetworkInterface: only an available one.
    pub async fn delete_network_interface(
        &self,
        account: &str,
        region: &str,
        id: &str,
    ) -> Result<()> {
        self.mutate(|st| {
            let e = find_interface(st, account, region, id)?;
            if e.attachment.is_some() {
                return Err(ec2_error(
                    "InvalidNetworkInterface.InUse",
                    format!("Network interface '{}' is currently in use.", e.id),
                ));
            }
            Ok((vec![Change::Delete("network_interface", e.id)], ()))
        })
        .await
    }

    /// ModifyNetworkInterfaceAttribute: one attribute, checked, written
    /// to the interface (or, for a primary one, its instance).
    pub async fn modify_network_interface(
        &self,
        account: &str,
        region: &str,
        id: &str,
        change: &EniChange,
    ) -> Result<()> {
        check_change(change)?;
        self.mutate(|st| {
            let e = find_interface(st, account, region, id)?;
            let write = match e.attachment.as_ref().filter(|_| e.primary) {
                Some(a) => {
                    let i = lookup_one(st, account, &a.instance_id)?;
                    Change::Put(Entity::Instance(modify_primary(st, &e, i, change)?))
                }
                None => Change::Put(Entity::NetworkInterface(modify_created(st, &e, change)?)),
            };
            Ok((vec![write], ()))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_macs() {
        assert!(valid_eni_id("eni-0123456789abcdef0"));
        assert!(valid_eni_id("eni-01234567"));
        assert!(!valid_eni_id("eni-xyz"));
        assert!(!valid_eni_id("i-0123456789abcdef0"));
        assert_eq!(mac_of("eni-0123456789abcdef0"), "0e:12:34:56:78:9a");
        assert_eq!(
            private_dns_name("us-east-1", "10.0.1.4"),
            "ip-10-0-1-4.ec2.internal"
        );
        assert_eq!(
            private_dns_name("eu-west-1", "10.0.1.4"),
            "ip-10-0-1-4.eu-west-1.compute.internal"
        );
    }
}
